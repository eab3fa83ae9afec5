//! A malicious relay played by the test (issue 6): honest clients and trustees with real keys,
//! driven frame by frame with frames the relay builds itself.
//!
//! The relay here is written by hand, so it can show each node what it likes: another
//! history, another downstream record, an online set naming a client that is not there.
//! The test also holds every node's keys, so it can take a client's cell, remove the pads
//! that client computed (from what the relay showed it) and read exactly what the client
//! wrote. An exchange *decodes* when the XOR of all cells equals the XOR of what the members
//! wrote; only then does the relay see what an owner did.
//!
//! Each test says what protocol v1 did and first checks that the reaction it let the relay
//! watch is real (so the test fails against v1), then that v2 keeps it hidden.

// Test code: every index, unwrap() and expect() asserts on frames and state the test itself
// set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use dissent_core::bits;
use dissent_core::client::{
    Chunk, Client, ClientConfig, ClientEvent, Delivery, IntervalError, OpenError, PeerError,
    SendCredits, Upstream, MAX_CONNECTIONS,
};
use dissent_core::crypto::{
    pad_public_key, xor_into, IntervalKey, PadEngine, PadNonce, PairKey, SerialPads,
};
use dissent_core::policy::{LogWindow, Policy};
use dissent_core::schedule::Schedule;
use dissent_core::testkit::{
    frame_body, pattern, relay_dh_secret, secret, App, TestTrustee, GROUP, SESSION,
};
use dissent_core::transcript::{self, Transcript};
use dissent_core::trustee::{Trustee, TrusteeConfig, TrusteeEvent};
use dissent_core::wire::{
    self, CellView, ConnId, Down, Head, IntervalRecord, Kind, Message, OutputsView, Params, Record,
    Resume,
};
use dissent_core::{Duration, Instant, MAC_LEN, NONCE_LEN};

/// Clients in the group: enough for an 8-byte reservation bitmap, so that a noisy one equals
/// the intended one only by a 2^-64 chance.
const N: usize = 64;
/// Trustees in the group.
const M: usize = 2;
/// Base cell length.
const CELL: usize = 128;
/// Frame limit of every node.
const MAX_FRAME: u32 = 4096;
/// The relay instance.
const EPOCH: [u8; 16] = [0xE0; 16];
/// What the owner of the history tests sends.
const FIRST: &[u8] = b"first message";

/// Each client's slot: a permutation the relay does not know (the test does).
fn slot_of(client: usize) -> u16 {
    ((client * 5 + 3) % N) as u16
}

fn all() -> Vec<usize> {
    (0..N).collect()
}

fn params() -> Params {
    Params {
        base_len: CELL as u32,
        max_len: 256,
        downstream_len: 512,
        period: 4,
        admit: 4,
        capacity: 4,
    }
}

fn bitmap(members: impl IntoIterator<Item = usize>) -> Vec<u8> {
    let mut b = vec![0u8; N.div_ceil(8)];
    for i in members {
        bits::set(&mut b, i);
    }
    b
}

fn body_of(frame: &[u8]) -> &[u8] {
    wire::split_frame(frame)
        .expect("a node's frame")
        .expect("a whole frame")
        .0
}

/// The cell of a `Cell` frame, checked to answer `exchange` of `interval`.
fn cell_of(frame: &[u8], interval: u32, exchange: u64) -> Vec<u8> {
    match Message::parse(body_of(frame)).expect("a node's frame") {
        Message::Cell {
            interval: i,
            exchange: e,
            cell,
        } if (i, e) == (interval, exchange) => cell.to_vec(),
        other => panic!("expected the cell of exchange {exchange}, got {other:?}"),
    }
}

/// The group's policy in these tests: every client its own buddy group (the attacks here
/// are on the acknowledgement round, not on intersection), and a window longer than any
/// test.
fn policy() -> Policy {
    Policy {
        min_anonymity: 1,
        log_window: LogWindow {
            time: Duration::from_millis(3_600_000),
            bytes: 1 << 20,
        },
    }
}

fn trustee_keys() -> Vec<[u8; 32]> {
    (0..M).map(|t| pad_public_key(&secret(2, t))).collect()
}

fn client_config(
    i: usize,
    trustee_keys: &[[u8; 32]],
    min_clients: u16,
    rng_seed: [u8; 32],
) -> ClientConfig<'_> {
    ClientConfig {
        slot: slot_of(i),
        policy: policy(),
        ..world_config(i, trustee_keys, min_clients, rng_seed)
    }
}

/// [`client_config`] for the searching relay's worlds, which set `slot` and `policy`.
fn world_config(
    i: usize,
    trustee_keys: &[[u8; 32]],
    min_clients: u16,
    rng_seed: [u8; 32],
) -> ClientConfig<'_> {
    ClientConfig {
        index: i as u16,
        clients: N as u16,
        group_id: GROUP,
        session_id: SESSION,
        session_secret: secret(1, i),
        trustee_keys,
        slot: slot_of(i),
        slots: N as u16,
        cell_len: CELL,
        max_frame: MAX_FRAME,
        max_reserved: 8,
        sent_len: 4096,
        replay_len: 2048,
        min_clients,
        policy: policy(),
        min_anonymity: 0,
        linger: Duration::from_millis(5),
        rng_seed,
    }
}

fn new_client(cfg: &ClientConfig<'_>) -> Client<Vec<u8>> {
    let mut c = Client::with_vecs(cfg).expect("client config");
    let sealed = vec![0; c.sealed_len()];
    // A pseudonym key belongs to its slot (whoever holds it in a world).
    c.set_pseudonym(
        &secret(5, usize::from(cfg.slot)),
        &pad_public_key(&relay_dh_secret()),
        sealed,
    )
    .expect("pseudonym key");
    c
}

/// The key `slot`'s cells are sealed under.
fn slot_key(slot: u16) -> wire::SlotKey {
    let relay = pad_public_key(&relay_dh_secret());
    let secret = secret(5, usize::from(slot));
    wire::SlotKey::owner(&secret, &relay, &GROUP, &SESSION, slot).expect("slot key")
}

/// The trap secret a relay instance announces unless a test restarts it with another (the
/// same in every interval of one instance).
const TRAP_SECRET: [u8; 32] = [13; 32];

/// The plain body (`Next`, records, zeros) of a slot exchange's decoded cell, decrypted
/// with the slot's key as a relay that does not check tags would read it (the trap bytes
/// of `exchange` of `interval` taken out, then XChaCha20 from block 1, as
/// XChaCha20-Poly1305 encrypts; zeros stay zeros). `trap` is the relay instance's trap
/// secret.
fn unseal(x: &[u8], slot: u16, interval: u32, exchange: u64, trap: &[u8; 32]) -> Vec<u8> {
    use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
    let sealed_len = wire::sealed_len(x.len());
    let body_len = sealed_len.saturating_sub(wire::SLOT_OVERHEAD);
    if x.iter().all(|&b| b == 0) || x.len() < wire::MIN_OWNED_CELL {
        return vec![0; body_len];
    }
    let traps = wire::TrapKey::owner(
        &secret(5, usize::from(slot)),
        &pad_public_key(trap),
        &GROUP,
        &SESSION,
        interval,
        slot,
    )
    .expect("trap key");
    let mut x = x.to_vec();
    wire::gather(&mut x, &traps, exchange);
    let mut nonce = [0u8; wire::SLOT_NONCE_LEN];
    nonce.copy_from_slice(&x[..wire::SLOT_NONCE_LEN]);
    let mut body = x[wire::SLOT_NONCE_LEN..sealed_len - wire::TAG_LEN].to_vec();
    let mut cipher = chacha20::XChaCha20::new(slot_key(slot).as_bytes().into(), &nonce.into());
    cipher.seek(64u64);
    cipher.apply_keystream(&mut body);
    body
}

/// A downstream record, as the relay shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rec {
    None,
    Data(ConnId, Vec<u8>),
    Close(ConnId),
    Grant(ConnId, u32),
}

impl Rec {
    fn down(&self) -> Down<'_> {
        match self {
            Rec::None => Down::None,
            Rec::Data(conn, data) => Down::Data { conn: *conn, data },
            Rec::Close(conn) => Down::Close { conn: *conn },
            Rec::Grant(conn, bytes) => Down::Grant {
                conn: *conn,
                bytes: *bytes,
            },
        }
    }
}

/// An upstream record the relay decoded from a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Up {
    Data {
        conn: ConnId,
        open: bool,
        payload: Vec<u8>,
    },
    Close(ConnId),
    Abort(ConnId),
    Grant(ConnId, u32),
}

/// The records of a data exchange's plaintext (a sealed cell), as the relay takes them
/// (`None`: garbled).
fn upstream(
    cell: &[u8],
    slot: u16,
    interval: u32,
    exchange: u64,
    trap: &[u8; 32],
) -> Option<Vec<Up>> {
    let plain = unseal(cell, slot, interval, exchange, trap);
    let view = CellView::parse(&plain).ok()?;
    let mut ups = Vec::new();
    for r in view.records() {
        if r.conn().slot() != Some(slot) {
            return None;
        }
        ups.push(match r {
            Record::Data {
                conn,
                open,
                payload,
            } => Up::Data {
                conn,
                open,
                payload: payload.to_vec(),
            },
            Record::Close { conn } => Up::Close(conn),
            Record::Abort { conn } => Up::Abort(conn),
            Record::Grant { conn, bytes } => Up::Grant(conn, bytes),
            Record::Accuse { .. } => continue,
        });
    }
    Some(ups)
}

fn carries(ups: &[Up], conn: ConnId, bytes: &[u8]) -> bool {
    ups.iter()
        .any(|u| matches!(u, Up::Data { conn: c, payload, .. } if *c == conn && payload == bytes))
}

/// What a client put out, in order, as its shell would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    /// A frame from `poll_transmit` (Hello, ProbeReply), by length.
    Control(usize),
    /// A cell frame from `handle_frame`, by length.
    Cell(usize),
    /// An event.
    Event(ClientEvent),
    /// Downstream bytes or a close handed to the application.
    Delivery(ConnId),
    /// `handle_frame` refused the frame.
    Refused(PeerError),
}

fn deliver(app: &mut App, trace: &mut Vec<Out>, d: Delivery<'_>) {
    match d {
        Delivery::Data { conn, data } => {
            trace.push(Out::Delivery(conn));
            app.received
                .entry(conn)
                .or_default()
                .extend_from_slice(data);
        }
        Delivery::Close { conn } => {
            trace.push(Out::Delivery(conn));
            app.closed.push(conn);
        }
        Delivery::Grant { conn, bytes } => {
            trace.push(Out::Delivery(conn));
            *app.granted.entry(conn).or_default() += u64::from(bytes);
        }
    }
}

/// A client's latest Hello.
#[derive(Debug, Clone)]
struct Hello {
    nonce: [u8; NONCE_LEN],
    proofs: Vec<u8>,
    resume: Option<Resume>,
    /// The resume block its proofs cover.
    block: [u8; wire::RESUME_BLOCK_LEN],
}

/// A trustee's refusal of a member, as the relay gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refused {
    trustee: usize,
    client: usize,
}

/// One member as the relay lists it to the trustees.
#[derive(Debug, Clone)]
struct Entry {
    client: usize,
    nonce: [u8; NONCE_LEN],
    proofs: Vec<u8>,
    block: [u8; wire::RESUME_BLOCK_LEN],
}

/// What the relay showed one client, from which the test recomputes that client's pads.
#[derive(Debug, Clone)]
struct View {
    transcript: Transcript,
    head: Head,
    keys: Vec<IntervalKey>,
}

impl View {
    /// The client's cell with its pads removed: what it wrote.
    fn strip(&self, cell: &[u8]) -> Vec<u8> {
        let mut plain = cell.to_vec();
        SerialPads.xor_pads(&self.keys, &self.transcript.pad_nonce(), &mut plain);
        plain
    }
}

/// The fields of an `IntervalStart`.
#[derive(Debug, Clone)]
struct Start {
    interval: u32,
    /// The relay instance's trap secret (`R_I` is its point).
    trap: [u8; 32],
    online: Vec<usize>,
    nonces: Vec<[u8; NONCE_LEN]>,
    history: Vec<IntervalRecord>,
    head: Head,
    largest: u32,
    lost: Vec<usize>,
    oldest: u64,
}

impl Start {
    fn body(&self) -> Vec<u8> {
        frame_body(&Message::IntervalStart(wire::IntervalStart {
            interval: self.interval,
            epoch: EPOCH,
            online: &bitmap(self.online.iter().copied()),
            lost: &if self.lost.is_empty() {
                Vec::new()
            } else {
                bitmap(self.lost.iter().copied())
            },
            nonces: &self.nonces.concat(),
            trap: pad_public_key(&self.trap),
            window: 1,
            params: params(),
            history: self.history.iter().copied().collect(),
            head: self.head,
            oldest: self.oldest,
            largest: self.largest,
        }))
    }
}

/// Records how many pads a trustee applies, and over how many bytes.
struct Counting<'a>(&'a mut Vec<(usize, usize)>);

impl PadEngine for Counting<'_> {
    fn xor_pads(&mut self, keys: &[IntervalKey], nonce: &PadNonce, out: &mut [u8]) {
        self.0.push((keys.len(), out.len()));
        SerialPads.xor_pads(keys, nonce, out);
    }
}

/// An exchange issued: every answer the relay got.
#[derive(Debug, Clone)]
struct Issued {
    interval: u32,
    exchange: u64,
    trap: [u8; 32],
    kind: Kind,
    trustee_cells: Vec<Vec<u8>>,
    client_cells: BTreeMap<usize, Vec<u8>>,
    /// What each client that answered wrote (its cell without its pads).
    wrote: BTreeMap<usize, Vec<u8>>,
}

/// An exchange the relay combined.
#[derive(Debug, Clone)]
struct Decoded {
    interval: u32,
    exchange: u64,
    /// The trap secret of the relay instance that issued it.
    trap: [u8; 32],
    kind: Kind,
    /// The XOR of every cell the relay has: all it learns.
    xor: Vec<u8>,
    wrote: BTreeMap<usize, Vec<u8>>,
}

impl Decoded {
    /// The XOR of what the members wrote: in a data exchange, the owner's plaintext.
    fn intended(&self) -> Vec<u8> {
        let mut x = vec![0u8; self.xor.len()];
        for p in self.wrote.values() {
            xor_into(&mut x, p);
        }
        x
    }

    fn decodes(&self) -> bool {
        self.xor == self.intended()
    }

    fn slot(&self) -> Option<u16> {
        match self.kind {
            Kind::Slot { slot, .. } => Some(slot),
            Kind::Reserve => None,
        }
    }

    /// What the relay hands its exit from this exchange (`None`: not a well-formed cell).
    fn records(&self) -> Option<Vec<Up>> {
        upstream(
            &self.xor,
            self.slot()?,
            self.interval,
            self.exchange,
            &self.trap,
        )
    }

    fn carries(&self, conn: ConnId, bytes: &[u8]) -> bool {
        self.records().is_some_and(|r| carries(&r, conn, bytes))
    }
}

/// The slots whose exchanges carried records.
fn active_slots(run: &[Decoded]) -> BTreeSet<u16> {
    run.iter()
        .filter(|d| d.records().is_some_and(|r| !r.is_empty()))
        .filter_map(Decoded::slot)
        .collect()
}

/// The relay's state within an interval.
#[derive(Debug)]
struct Run {
    interval: u32,
    members: Vec<usize>,
    schedule: Schedule,
    table: Vec<u8>,
    /// Outputs to report in the next request (window 1: the previous exchange's).
    outputs: Vec<u8>,
    next: u64,
    done: u64,
}

/// The relay, hand-written, with every node it drives.
struct Mallory {
    now: Instant,
    clients: Vec<Client<Vec<u8>>>,
    trustees: Vec<TestTrustee>,
    apps: Vec<App>,
    /// Pair keys of every (client, trustee): the test's knowledge, never the relay's.
    pairs: Vec<Vec<PairKey>>,
    hellos: Vec<Option<Hello>>,
    /// Each client's latest acknowledgement (one MAC per trustee), which the relay may replay.
    acks: Vec<Option<Vec<u8>>>,
    views: Vec<Option<View>>,
    traces: Vec<Vec<Out>>,
    /// (keys, bytes) of every pad computation of the trustees.
    trustee_pads: Vec<(usize, usize)>,
    /// The downstream log (record `seq` at `seq - 1`) and its head.
    log: Vec<Rec>,
    head: Head,
    history: Vec<IntervalRecord>,
    /// Records the exit has for the downstream.
    exit: VecDeque<Rec>,
    /// Upstream records that reached the exit, by slot.
    upstream: Vec<(u16, Up)>,
    run: Option<Run>,
    /// This relay instance's trap secret.
    trap: [u8; 32],
    out: Vec<u8>,
    /// Members the start being confirmed marks lost: they are owed no replays.
    marked: BTreeSet<usize>,
    /// `BlameReveal` bodies clients sent while the harness played their shell: (client,
    /// body).
    reveals: Vec<(usize, Vec<u8>)>,
}

impl Mallory {
    /// A group with every trustee and client connected; `min` is everyone's minimum.
    fn new(min: u16) -> Self {
        Self::with_minimums(min, min)
    }

    fn with_minimums(client_min: u16, trustee_min: u16) -> Self {
        Self::build(client_min, trustee_min, policy(), &|i| {
            client_config(i, &[], client_min, secret(4, i))
        })
    }

    /// A group whose client `i` has the configuration `config(i)` (its trustee keys aside).
    fn build(
        client_min: u16,
        trustee_min: u16,
        policy: Policy,
        config: &dyn Fn(usize) -> ClientConfig<'static>,
    ) -> Self {
        let _ = client_min;
        let tkeys = trustee_keys();
        let ckeys: Vec<[u8; 32]> = (0..N).map(|i| pad_public_key(&secret(1, i))).collect();
        let clients = (0..N)
            .map(|i| {
                new_client(&ClientConfig {
                    trustee_keys: &tkeys,
                    ..config(i)
                })
            })
            .collect();
        let trustees = (0..M)
            .map(|t| {
                let cfg = TrusteeConfig {
                    index: t as u16,
                    trustees: M as u16,
                    group_id: GROUP,
                    session_id: SESSION,
                    session_secret: secret(2, t),
                    client_keys: &ckeys,
                    slots: N as u16,
                    cell_len: CELL,
                    max_reserved: 8,
                    max_frame: MAX_FRAME,
                    rng_seed: secret(3, t),
                    min_clients: trustee_min,
                    policy,
                };
                Trustee::with_vecs(&cfg).expect("trustee config")
            })
            .collect();
        let pairs = (0..N)
            .map(|i| {
                tkeys
                    .iter()
                    .map(|k| PairKey::agree(&secret(1, i), k, true, &GROUP, &SESSION).unwrap())
                    .collect()
            })
            .collect();
        let mut m = Mallory {
            now: Instant::from_micros(1_000_000),
            clients,
            trustees,
            apps: (0..N).map(|_| App::default()).collect(),
            pairs,
            hellos: vec![None; N],
            acks: vec![None; N],
            views: vec![None; N],
            traces: vec![Vec::new(); N],
            trustee_pads: Vec::new(),
            log: Vec::new(),
            head: transcript::genesis(&EPOCH),
            history: Vec::new(),
            exit: VecDeque::new(),
            upstream: Vec::new(),
            run: None,
            trap: TRAP_SECRET,
            out: vec![0u8; MAX_FRAME as usize + 64],
            marked: BTreeSet::new(),
            reveals: Vec::new(),
        };
        for t in 0..M {
            m.reconnect_trustee(t);
        }
        for i in 0..N {
            m.connect(i);
        }
        m
    }

    /// Trustee `t`'s link comes up (again); it forgets any interval it had.
    fn reconnect_trustee(&mut self, t: usize) {
        let trustee = &mut self.trustees[t];
        trustee.handle_connected(self.now);
        let n = trustee
            .poll_transmit(&mut self.out)
            .unwrap()
            .expect("Hello");
        assert!(matches!(
            Message::parse(body_of(&self.out[..n])),
            Ok(Message::Hello(wire::Hello { .. }))
        ));
    }

    /// Client `i`'s link comes up; returns its Hello.
    fn connect(&mut self, i: usize) -> Hello {
        self.clients[i].handle_connected(self.now);
        let n = self.clients[i]
            .poll_transmit(&mut self.out)
            .unwrap()
            .expect("Hello");
        self.traces[i].push(Out::Control(n));
        let Ok(Message::Hello(wire::Hello {
            nonce,
            proofs,
            resume,
            capacity,
            ..
        })) = Message::parse(body_of(&self.out[..n]))
        else {
            panic!("client {i} did not start with a Hello");
        };
        let hello = Hello {
            nonce,
            proofs: proofs.to_vec(),
            resume,
            block: wire::resume_block(capacity, resume.as_ref()),
        };
        self.hellos[i] = Some(hello.clone());
        hello
    }

    /// Client `i`'s link drops (the relay cuts it, or the client gives up after an error).
    fn disconnect(&mut self, i: usize) {
        self.clients[i].handle_disconnected(self.now);
        while let Some(ev) = self.clients[i].poll_event() {
            self.traces[i].push(Out::Event(ev));
        }
    }

    /// Hands client `i` one frame body and plays its shell: the cell first, then deliveries,
    /// events, control frames, and `prepare`.
    fn feed(&mut self, i: usize, body: &[u8]) -> Result<Option<Vec<u8>>, PeerError> {
        let handled = match self.clients[i].handle_frame(self.now, body, &mut self.out) {
            Ok(h) => h,
            Err(e) => {
                self.traces[i].push(Out::Refused(e));
                return Err(e);
            }
        };
        let cell = handled.cell.map(|n| {
            self.traces[i].push(Out::Cell(n));
            self.out[..n].to_vec()
        });
        if let Some(d) = handled.delivery {
            deliver(&mut self.apps[i], &mut self.traces[i], d);
        }
        while let Some(d) = self.clients[i].poll_replay() {
            deliver(&mut self.apps[i], &mut self.traces[i], d);
        }
        while let Some(ev) = self.clients[i].poll_event() {
            if let ClientEvent::Lost { conn } = ev {
                self.apps[i].lost.push(conn);
            }
            self.traces[i].push(Out::Event(ev));
        }
        while let Some(n) = self.clients[i].poll_transmit(&mut self.out).unwrap() {
            self.traces[i].push(Out::Control(n));
            match Message::parse(body_of(&self.out[..n])) {
                Ok(Message::Ack { macs, .. }) => self.acks[i] = Some(macs.to_vec()),
                Ok(Message::BlameReveal { .. }) => {
                    self.reveals.push((i, body_of(&self.out[..n]).to_vec()));
                }
                _ => {}
            }
        }
        self.clients[i].prepare(self.now, &mut self.apps[i]);
        Ok(cell)
    }

    /// Opens a connection at client `i`.
    fn open_conn(&mut self, i: usize) -> ConnId {
        let conn = self.clients[i].open().expect("room for a connection");
        self.clients[i].prepare(self.now, &mut self.apps[i]);
        conn
    }

    /// The application of client `i` writes `bytes` on `conn`.
    fn send(&mut self, i: usize, conn: ConnId, bytes: &[u8]) {
        self.apps[i].pending.push_back((conn, bytes.to_vec()));
        self.clients[i].prepare(self.now, &mut self.apps[i]);
    }

    /// The members as their latest Hellos list them.
    fn entries(&self, members: &[usize]) -> Vec<Entry> {
        members
            .iter()
            .map(|&i| {
                let h = self.hellos[i].as_ref().expect("said hello");
                Entry {
                    client: i,
                    nonce: h.nonce,
                    proofs: h.proofs.clone(),
                    block: h.block,
                }
            })
            .collect()
    }

    /// `IntervalOpen` and `Members` to every trustee; returns their interval nonces, or the
    /// first refusal.
    fn open(&mut self, interval: u32, entries: &[Entry]) -> Result<Vec<[u8; 16]>, Refused> {
        let online = bitmap(entries.iter().map(|e| e.client));
        let open = frame_body(&Message::IntervalOpen {
            interval,
            online: &online,
        });
        let mut nonces = Vec::new();
        for (t, trustee) in self.trustees.iter_mut().enumerate() {
            trustee
                .handle_frame(self.now, &open)
                .expect("the trustee takes the open");
            let mut list = Vec::new();
            for e in entries {
                list.extend_from_slice(&e.nonce);
                list.extend_from_slice(&e.proofs[t * MAC_LEN..(t + 1) * MAC_LEN]);
                list.extend_from_slice(&e.block);
            }
            let members = frame_body(&Message::Members {
                interval,
                first: 0,
                entries: &list,
            });
            trustee
                .handle_frame(self.now, &members)
                .expect("the trustee takes the members");
            let _ = trustee.poll_event();
            let n = trustee
                .poll_transmit(&mut self.out)
                .unwrap()
                .expect("an answer");
            match Message::parse(body_of(&self.out[..n])) {
                Ok(Message::IntervalReady { interval: i, nonce }) if i == interval => {
                    nonces.push(nonce)
                }
                Ok(Message::Refuse {
                    interval: i,
                    client,
                }) if i == interval => {
                    return Err(Refused {
                        trustee: t,
                        client: usize::from(client),
                    })
                }
                other => panic!("trustee {t} answered {other:?}"),
            }
        }
        Ok(nonces)
    }

    /// The start an honest relay would send now.
    fn start(&self, interval: u32, members: &[usize], nonces: &[[u8; 16]]) -> Start {
        let largest = self
            .log
            .iter()
            .map(|r| match r {
                Rec::Data(_, d) => d.len() as u32,
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        Start {
            interval,
            trap: self.trap,
            online: members.to_vec(),
            nonces: nonces.to_vec(),
            history: self.history.clone(),
            head: self.head,
            largest,
            lost: Vec::new(),
            oldest: 1,
        }
    }

    /// Trustee `t` gets `bodies[t]`, then each member's latest acknowledgement (zeros for a
    /// member that never sent one); returns every member's confirmations in trustee order,
    /// or every trustee's refusal.
    fn confirm(&mut self, bodies: &[&[u8]]) -> Result<BTreeMap<usize, Vec<u8>>, Vec<Refused>> {
        assert_eq!(bodies.len(), M);
        let mut macs: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut refused = Vec::new();
        for (t, (trustee, body)) in self.trustees.iter_mut().zip(bodies).enumerate() {
            let Ok(Message::IntervalStart(wire::IntervalStart {
                interval, online, ..
            })) = Message::parse(body)
            else {
                panic!("not a start");
            };
            let members: Vec<usize> = (0..N).filter(|&i| bits::test(online, i)).collect();
            trustee
                .handle_frame(self.now, body)
                .expect("the trustee takes the start");
            let column: Vec<u8> = members
                .iter()
                .flat_map(|&i| match &self.acks[i] {
                    Some(a) => a[t * MAC_LEN..(t + 1) * MAC_LEN].to_vec(),
                    None => vec![0; MAC_LEN],
                })
                .collect();
            let acks = frame_body(&Message::Acks {
                interval,
                first: 0,
                macs: &column,
            });
            trustee
                .handle_frame(self.now, &acks)
                .expect("the trustee takes the acknowledgements");
            let _ = trustee.poll_event();
            while let Some(n) = trustee.poll_transmit(&mut self.out).unwrap() {
                match Message::parse(body_of(&self.out[..n])) {
                    Ok(Message::Confirm {
                        first, macs: list, ..
                    }) => {
                        for (k, mac) in list.chunks_exact(MAC_LEN).enumerate() {
                            let member = members[first as usize + k];
                            macs.entry(member).or_default().extend_from_slice(mac);
                        }
                    }
                    Ok(Message::Refuse { client, .. }) => refused.push(Refused {
                        trustee: t,
                        client: usize::from(client),
                    }),
                    other => panic!("trustee {t} answered {other:?}"),
                }
            }
        }
        if refused.is_empty() {
            Ok(macs)
        } else {
            Err(refused)
        }
    }

    /// Client `i` is shown a start; the test keeps what it was shown.
    fn show(&mut self, i: usize, body: &[u8]) -> Result<(), PeerError> {
        let cell = self.feed(i, body)?;
        assert_eq!(cell, None);
        let Ok(Message::IntervalStart(wire::IntervalStart {
            interval,
            nonces,
            head,
            ..
        })) = Message::parse(body)
        else {
            panic!("not a start");
        };
        let link = self.hellos[i].as_ref().expect("said hello").nonce;
        let keys = self.pairs[i]
            .iter()
            .zip(nonces.chunks_exact(NONCE_LEN))
            .map(|(pair, n)| pair.interval_key(interval, n.try_into().unwrap(), &link))
            .collect();
        self.views[i] = Some(View {
            transcript: Transcript::start(body),
            head,
            keys,
        });
        Ok(())
    }

    /// Client `i` gets its confirmations, then the records it missed, if it asked for any.
    fn confirmed(&mut self, i: usize, interval: u32, macs: &[u8]) -> Result<(), PeerError> {
        self.feed(i, &frame_body(&Message::Confirmed { interval, macs }))?;
        let resume = self.hellos[i].as_mut().and_then(|h| h.resume.take());
        if let Some(r) = resume.filter(|r| r.epoch == EPOCH && !self.marked.contains(&i)) {
            for seq in r.seq + 1..=self.head.seq {
                let rec = self.log[(seq - 1) as usize].clone();
                self.feed(
                    i,
                    &frame_body(&Message::Replay {
                        seq,
                        down: rec.down(),
                    }),
                )?;
            }
        }
        Ok(())
    }

    /// Client `i`'s acknowledgements of `body`, made with its MAC keys: what no relay can
    /// make.
    fn forge_acks(&self, i: usize, body: &[u8]) -> Vec<u8> {
        let view = Transcript::start(body);
        self.pairs[i]
            .iter()
            .flat_map(|p| p.acknowledgement(view.hash()))
            .collect()
    }

    /// The confirmations of `body` for client `i`, made with the trustees' MAC keys: what
    /// no relay can make.
    fn forge_confirmations(&self, i: usize, body: &[u8]) -> Vec<u8> {
        let view = Transcript::start(body);
        self.pairs[i]
            .iter()
            .flat_map(|p| p.confirmation(view.hash()))
            .collect()
    }

    /// The relay's side of a started interval (window 1, fresh schedule).
    fn begin(&mut self, interval: u32, members: &[usize]) {
        let p = params();
        let len = Schedule::table_len(p.capacity);
        self.run = Some(Run {
            interval,
            members: members.to_vec(),
            schedule: Schedule::new(N as u16, &p, len).unwrap(),
            table: vec![0u8; len],
            outputs: Vec::new(),
            next: 0,
            done: 0,
        });
    }

    /// An interval of `members`, run as an honest relay would start it.
    fn run_interval(&mut self, interval: u32, members: &[usize]) {
        let entries = self.entries(members);
        let nonces = self.open(interval, &entries).expect("the trustees open it");
        let body = self.start(interval, members, &nonces).body();
        for &i in members {
            self.show(i, &body).expect("a member takes the start");
        }
        let macs = self
            .confirm(&[&body, &body])
            .expect("the trustees confirm it");
        for &i in members {
            self.confirmed(i, interval, &macs[&i])
                .expect("a member takes its confirmations");
        }
        self.begin(interval, members);
    }

    /// The honest relay's two candidate starts of `interval` for everyone: the truth, and
    /// the lie that the last interval decoded nothing.
    fn two_starts(&mut self, interval: u32) -> (Vec<u8>, Vec<u8>) {
        let members = all();
        let entries = self.entries(&members);
        let nonces = self.open(interval, &entries).expect("the trustees open it");
        let honest = self.start(interval, &members, &nonces);
        let mut lying = honest.clone();
        lying.history.last_mut().expect("a past interval").done = 0;
        (honest.body(), lying.body())
    }

    /// Ends the interval; the history records how far it got.
    fn end_interval(&mut self) {
        let run = self.run.take().expect("an interval runs");
        self.history.push(IntervalRecord {
            interval: run.interval,
            done: run.done,
            disrupted: 0,
        });
        if self.history.len() > wire::MAX_HISTORY {
            self.history.remove(0);
        }
    }

    /// The kind of the next exchange.
    fn peek(&self) -> Kind {
        let run = self.run.as_ref().expect("an interval runs");
        let mut schedule = run.schedule;
        schedule.next(&run.table)
    }

    /// Issues the next exchange: the trustees are given the head after `trustee_rec`, client
    /// `i` (of `to`) is shown `shown(i)`.
    fn issue_with(
        &mut self,
        to: &[usize],
        shown: &dyn Fn(usize) -> Rec,
        trustee_rec: &Rec,
    ) -> Issued {
        self.now = self.now + Duration::from_millis(1);
        let run = self.run.as_mut().expect("an interval runs");
        let (interval, exchange) = (run.interval, run.next);
        let kind = run.schedule.next(&run.table);
        run.next += 1;
        let outputs = core::mem::take(&mut run.outputs);
        if *trustee_rec != Rec::None {
            self.log.push(trustee_rec.clone());
        }
        transcript::append(&mut self.head, &trustee_rec.down());
        let request = frame_body(&Message::TrusteeRequest(wire::TrusteeRequest {
            interval,
            exchange,
            kind,
            outputs: &outputs,
            head: self.head,
        }));
        let mut trustee_cells = Vec::new();
        for (t, trustee) in self.trustees.iter_mut().enumerate() {
            trustee
                .handle_frame(self.now, &request)
                .unwrap_or_else(|e| panic!("trustee {t} refused exchange {exchange}: {e}"));
            let n = trustee
                .poll_transmit_with(&mut self.out, &mut Counting(&mut self.trustee_pads))
                .unwrap()
                .expect("a cell");
            trustee_cells.push(cell_of(&self.out[..n], interval, exchange));
        }
        let mut client_cells = BTreeMap::new();
        let mut wrote = BTreeMap::new();
        for &i in to {
            let rec = shown(i);
            let body = frame_body(&Message::ClientRequest(wire::ClientRequest {
                interval,
                exchange,
                kind,
                outputs: &outputs,
                down: rec.down(),
            }));
            let frame = self
                .feed(i, &body)
                .unwrap_or_else(|e| panic!("client {i} refused exchange {exchange}: {e}"))
                .expect("a cell");
            let cell = cell_of(&frame, interval, exchange);
            let view = self.views[i].as_mut().expect("shown a start");
            transcript::append(&mut view.head, &rec.down());
            view.transcript
                .advance(exchange, kind, &outputs, &view.head.hash);
            wrote.insert(i, view.strip(&cell));
            client_cells.insert(i, cell);
        }
        Issued {
            interval,
            exchange,
            trap: self.trap,
            kind,
            trustee_cells,
            client_cells,
            wrote,
        }
    }

    /// Issues the next exchange to every member, with the exit's next record.
    fn issue(&mut self) -> Issued {
        let rec = self.exit.pop_front().unwrap_or(Rec::None);
        let members = self.run.as_ref().expect("an interval runs").members.clone();
        self.issue_with(&members, &|_| rec.clone(), &rec)
    }

    /// XORs the cells the relay has (a missing member counts as zeros), hands the records to
    /// the exit and reports the output in the next request, as an honest relay would.
    fn decode(&mut self, issued: Issued) -> Decoded {
        let len = issued.kind.cell_len(N as u16);
        let mut x = vec![0u8; len];
        for c in issued
            .trustee_cells
            .iter()
            .chain(issued.client_cells.values())
        {
            xor_into(&mut x, c);
        }
        let mut buf = [0u8; 16];
        let end = match issued.kind {
            Kind::Reserve => {
                let mut requests = x.clone();
                for s in N..requests.len() * 8 {
                    bits::clear(&mut requests, s);
                }
                wire::emit_requests_output(&mut buf, 0, &requests)
            }
            Kind::Slot { slot, .. } => {
                let ups = upstream(&x, slot, issued.interval, issued.exchange, &issued.trap);
                let next = match &ups {
                    Some(ups) => {
                        self.upstream.extend(ups.iter().map(|u| (slot, u.clone())));
                        CellView::parse(&unseal(
                            &x,
                            slot,
                            issued.interval,
                            issued.exchange,
                            &issued.trap,
                        ))
                        .map_or(0, |v| v.next())
                    }
                    None => 0,
                };
                wire::emit_next_output(&mut buf, 0, next)
            }
        }
        .expect("an output fits");
        let run = self.run.as_mut().expect("an interval runs");
        assert_eq!((run.interval, run.done), (issued.interval, issued.exchange));
        let outputs = OutputsView::parse(&buf[..end], N as u16).expect("own output");
        for o in outputs.iter() {
            run.schedule
                .apply(&mut run.table, issued.kind, &o)
                .expect("the output fits its exchange");
        }
        run.outputs.extend_from_slice(&buf[..end]);
        run.done += 1;
        Decoded {
            interval: issued.interval,
            exchange: issued.exchange,
            trap: issued.trap,
            kind: issued.kind,
            xor: x,
            wrote: issued.wrote,
        }
    }

    fn exchange(&mut self) -> Decoded {
        let issued = self.issue();
        self.decode(issued)
    }

    fn exchanges(&mut self, n: usize) -> Vec<Decoded> {
        (0..n).map(|_| self.exchange()).collect()
    }

    /// Runs exchanges until `done` holds (checked before each), at most `max`.
    fn exchanges_until(&mut self, max: usize, done: impl Fn(&Mallory) -> bool) {
        for _ in 0..max {
            if done(self) {
                return;
            }
            self.exchange();
        }
        assert!(done(self), "condition not reached in {max} exchanges");
    }

    /// Whether the exit got `bytes` on `conn` in one record.
    fn reached_exit(&self, conn: ConnId, bytes: &[u8]) -> bool {
        self.upstream
            .iter()
            .any(|(_, u)| carries(std::slice::from_ref(u), conn, bytes))
    }

    /// Whether the exit saw `conn` opened.
    fn opened(&self, conn: ConnId) -> bool {
        self.upstream
            .iter()
            .any(|(_, u)| matches!(u, Up::Data { conn: c, open: true, .. } if *c == conn))
    }

    /// The trustees' pads for client `c` (listed but silent) in the last exchange, of
    /// `len` bytes, under the view member `like` shares with the trustees: what the relay
    /// would need to cancel them without `c`.
    fn pads_of(&self, c: usize, nonces: &[[u8; 16]], like: usize, len: usize) -> Vec<u8> {
        let view = self.views[like].as_ref().expect("shown a start");
        let interval = self.run.as_ref().expect("an interval runs").interval;
        let link = self.hellos[c].as_ref().expect("said hello").nonce;
        let keys: Vec<IntervalKey> = self.pairs[c]
            .iter()
            .zip(nonces)
            .map(|(p, n)| p.interval_key(interval, n, &link))
            .collect();
        let mut pads = vec![0u8; len];
        SerialPads.xor_pads(&keys, &view.transcript.pad_nonce(), &mut pads);
        pads
    }
}

// ---------------------------------------------------------------------------------------
// 1. History equivocation

/// A group (everyone's minimum `min`) in which `owner` just had [`FIRST`] decoded in its
/// slot, in the last exchange of interval 10. With window 1 no later request vouched for
/// that cell, so the owner still holds it, and the next history decides whether it sends
/// it again.
fn after_first_message(owner: usize, min: u16) -> (Mallory, ConnId) {
    let mut m = Mallory::new(min);
    m.run_interval(10, &all());
    let conn = m.open_conn(owner);
    m.send(owner, conn, FIRST);
    m.exchanges_until(16, |m| m.reached_exit(conn, FIRST));
    m.end_interval();
    assert_eq!(
        m.history,
        [IntervalRecord {
            interval: 10,
            done: 2,
            disrupted: 0,
        }]
    );
    (m, conn)
}

#[test]
fn history_equivocation_is_refused_before_the_owner_acts() {
    let owner = 0;
    let slot = slot_of(owner);

    // The premise: the owner acts on history. Told that interval 10 decoded nothing, it
    // sends its last cell again; told the truth, its slot stays silent. In v1 nothing
    // authenticated `history` and each client could be shown its own: shown `(10, 0)` to
    // half the clients, the slot repeated its plaintext only if its owner was in that half,
    // and about log2 n intervals found the owner.
    for lie in [false, true] {
        let (mut m, conn) = after_first_message(owner, 1);
        if lie {
            m.history[0].done = 0;
        }
        m.run_interval(11, &all());
        let run = m.exchanges(8);
        assert!(run.iter().all(Decoded::decodes));
        assert_eq!(
            run.iter().any(|d| d.carries(conn, FIRST)),
            lie,
            "lie: {lie}"
        );
    }

    // v2: each half is shown its own history in an otherwise identical start; the trustees
    // get one of the two. Every client acknowledges the view it was shown, and each trustee
    // finds that the other half's acknowledgements do not match its own view: it refuses the
    // interval, naming one of them, and confirms nobody. No client is confirmed, so none
    // acts on what it was shown: nothing after its acknowledgement, and (below) no resend.
    let halves: [Vec<usize>; 2] = [(0..N / 2).collect(), (N / 2..N).collect()];
    for lied in &halves {
        for trustees_lied_to in [false, true] {
            let (mut m, _) = after_first_message(owner, 1);
            let (honest, lying) = m.two_starts(11);
            let confirmed = if trustees_lied_to { &lying } else { &honest };
            let mut acked = Vec::new();
            for i in all() {
                let body = if lied.contains(&i) { &lying } else { &honest };
                m.show(i, body).unwrap();
                assert!(m.acks[i].is_some(), "client {i} acknowledged");
                acked.push(m.traces[i].len());
            }
            let refused = m.confirm(&[confirmed, confirmed]).unwrap_err();
            assert_eq!(refused.len(), M);
            for r in &refused {
                let shown_lie = lied.contains(&r.client);
                assert_ne!(shown_lie, trustees_lied_to, "{r:?}");
            }
            // The relay has no confirmation to give: a confirmation of the view the trustees
            // hold (forged here with their keys) is refused by a client shown the other.
            let other = refused[0].client;
            let theirs = m.forge_confirmations(other, confirmed);
            assert_eq!(
                m.confirmed(other, 11, &theirs),
                Err(PeerError::Interval(IntervalError::Unconfirmed {
                    trustee: 0
                }))
            );
            for i in all().into_iter().filter(|&i| i != other) {
                assert_eq!(m.traces[i][acked[i]..], [], "client {i} did something");
            }
            // Nobody acted: back in an honest interval (the refused client on a new link),
            // the owner's slot stays silent.
            m.disconnect(other);
            m.connect(other);
            m.run_interval(12, &all());
            let run = m.exchanges(8);
            assert!(run.iter().all(Decoded::decodes));
            assert_eq!(active_slots(&run), BTreeSet::new());
        }
    }

    // Trustees split between the two views: both refuse.
    let (mut m, _) = after_first_message(owner, 1);
    let (honest, lying) = m.two_starts(11);
    for i in all() {
        m.show(i, if i % 2 == 1 { &lying } else { &honest })
            .unwrap();
    }
    let refused = m.confirm(&[&honest, &lying]).unwrap_err();
    assert_eq!(
        refused,
        [
            Refused {
                trustee: 0,
                client: 1
            },
            Refused {
                trustee: 1,
                client: 0
            }
        ]
    );

    // The second line: were the acknowledgements and confirmations forged (with keys no
    // relay holds), mixed views would still decode to noise, whatever the owner does.
    for lied in &halves {
        let (mut m, conn) = after_first_message(owner, 1);
        let (honest, lying) = m.two_starts(11);
        for i in all() {
            if lied.contains(&i) {
                m.show(i, &lying).unwrap();
                m.acks[i] = Some(m.forge_acks(i, &honest));
            } else {
                m.show(i, &honest).unwrap();
            }
        }
        let macs = m.confirm(&[&honest, &honest]).unwrap();
        for i in all() {
            if lied.contains(&i) {
                let forged = m.forge_confirmations(i, &lying);
                m.confirmed(i, 11, &forged).unwrap();
            } else {
                m.confirmed(i, 11, &macs[&i]).unwrap();
            }
        }
        m.begin(11, &all());
        let run = m.exchanges(16);
        for d in &run {
            assert!(!d.decodes(), "exchange {} decoded", d.exchange);
            if d.slot() == Some(slot) {
                assert_ne!(d.xor, d.wrote[&owner]);
            }
        }
        assert!(!run.iter().any(|d| d.carries(conn, FIRST)));
        // The owner did react where lied to: it asked for its slot to send the message again.
        assert_eq!(run[0].kind, Kind::Reserve);
        let asked = bits::test(&run[0].wrote[&owner], usize::from(slot));
        assert_eq!(asked, lied.contains(&owner));
    }
}

/// The relay gives the trustees the lie `(10, done = 0)` and shows it to client `k` alone;
/// every other member is shown the truth. In v1 of this design `k` acted as soon as its own
/// confirmations checked, and its slot sent the message again in the next (honest)
/// interval exactly when `k` owned it. Now the trustees confirm only a view every member
/// acknowledged, so `k` never gets a confirmation and the next interval looks the same
/// whoever `k` is.
#[test]
fn a_history_shown_to_one_client_does_not_show_in_the_next_interval() {
    let owner = 0;
    let mut seen = Vec::new();
    for k in [owner, 5] {
        let (mut m, _) = after_first_message(owner, 1);
        let (honest, lying) = m.two_starts(11);
        for i in all() {
            m.show(i, if i == k { &lying } else { &honest }).unwrap();
        }
        let refused = m.confirm(&[&lying, &lying]).unwrap_err();
        assert!(refused.iter().all(|r| r.client != k), "{refused:?}");
        m.run_interval(12, &all());
        let run = m.exchanges(8);
        assert!(run.iter().all(Decoded::decodes));
        seen.push(active_slots(&run));
    }
    assert_eq!(
        seen[0],
        seen[1],
        "the relay sees slot {} send again only when the lied-to client owns it",
        slot_of(owner)
    );
    assert_eq!(seen[0], BTreeSet::new());
}

// ---------------------------------------------------------------------------------------
// 2. Downstream equivocation

/// A group in which `owner` has `conn` open, its first bytes decoded, mid interval 10.
fn with_open_connection(owner: usize) -> (Mallory, ConnId) {
    let mut m = Mallory::new(1);
    m.run_interval(10, &all());
    let conn = m.open_conn(owner);
    m.send(owner, conn, b"hello");
    m.exchanges_until(16, |m| m.opened(conn));
    (m, conn)
}

/// The next exchange shows client `i` the record `shown(i)` and the trustees the head after
/// `trustee_rec`; then the owner's application writes "more" on `conn`. Returns that
/// exchange and the 15 after it.
fn close_then_more(
    m: &mut Mallory,
    owner: usize,
    conn: ConnId,
    shown: &dyn Fn(usize) -> Rec,
    trustee_rec: &Rec,
) -> Vec<Decoded> {
    let issued = m.issue_with(&all(), shown, trustee_rec);
    let mut run = vec![m.decode(issued)];
    m.send(owner, conn, b"more");
    run.extend(m.exchanges(15));
    run
}

#[test]
fn downstream_equivocation_garbles_the_rest_of_the_interval() {
    let owner = 0;
    let slot = slot_of(owner);

    // The premise: the owner reacts to a downstream close. Shown `Close{conn}`, it forgets
    // the connection and drops the bytes written on it afterwards; shown nothing, it sends
    // them. In v1 records were unauthenticated and could differ per client: a close shown
    // to half the clients silenced the slot only if its owner was in that half.
    for close in [false, true] {
        let (mut m, conn) = with_open_connection(owner);
        let rec = if close { Rec::Close(conn) } else { Rec::None };
        let run = close_then_more(&mut m, owner, conn, &|_| rec.clone(), &rec);
        assert!(run.iter().all(Decoded::decodes));
        assert_eq!(run.iter().any(|d| d.carries(conn, b"more")), !close);
        assert_eq!(m.clients[owner].is_open(conn), !close);
    }

    // v2: half the clients are shown the close, the other half nothing, and the trustees the
    // head of either half. That exchange and every later one decode to noise (the pads are
    // keyed by transcripts that differ), wherever the owner is: its reaction never shows.
    let halves: [Vec<usize>; 2] = [(0..N / 2).collect(), (N / 2..N).collect()];
    for closed_half in &halves {
        for trustees_see_close in [false, true] {
            let (mut m, conn) = with_open_connection(owner);
            let shown = |i: usize| {
                if closed_half.contains(&i) {
                    Rec::Close(conn)
                } else {
                    Rec::None
                }
            };
            let trustee_rec = if trustees_see_close {
                Rec::Close(conn)
            } else {
                Rec::None
            };
            let run = close_then_more(&mut m, owner, conn, &shown, &trustee_rec);
            for d in &run {
                assert!(!d.decodes(), "exchange {} decoded", d.exchange);
                if d.slot() == Some(slot) {
                    assert_ne!(d.xor, d.wrote[&owner]);
                }
            }
            assert!(!run.iter().any(|d| d.carries(conn, b"more")));
            // The owner did react, where it was shown the close.
            let owner_saw_close = closed_half.contains(&owner);
            assert_eq!(m.clients[owner].is_open(conn), !owner_saw_close);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. Forced drop

#[test]
fn a_forced_drop_ends_no_connection_and_sends_no_close() {
    let mut m = Mallory::new(2);
    m.run_interval(20, &all());
    let dropped: Vec<usize> = (0..N / 2).collect();
    let stayed: Vec<usize> = (N / 2..N).collect();
    let owner = 0;

    // Clients 0 and 1 (both to be dropped) have connections the exit knows: in v1, every
    // client that rejoined after a link drop sent a Close for each of these at once, so the
    // slots that burst Closes belonged to the dropped subset.
    let a = m.open_conn(owner);
    let b = m.open_conn(owner);
    let c = m.open_conn(1);
    m.send(owner, a, b"alpha");
    m.send(1, c, b"beta");
    m.exchanges_until(32, |m| m.opened(a) && m.opened(b) && m.opened(c));
    m.exit.push_back(Rec::Data(a, b"reply".to_vec()));
    m.exchanges_until(8, |m| m.apps[owner].received.contains_key(&a));

    // The owner writes more on `a`; its slot comes up; the relay issues that exchange and
    // cuts half the links before it decodes, so the exchange is abandoned.
    m.send(owner, a, b"gamma");
    m.exchanges_until(
        16,
        |m| matches!(m.peek(), Kind::Slot { slot, .. } if slot == slot_of(owner)),
    );
    let abandoned = m.issue();
    let wrote = upstream(
        &abandoned.wrote[&owner],
        slot_of(owner),
        abandoned.interval,
        abandoned.exchange,
        &abandoned.trap,
    )
    .expect("a well-formed cell");
    assert!(carries(&wrote, a, b"gamma"));
    for &i in &dropped {
        m.disconnect(i);
    }
    m.end_interval();
    let done = abandoned.exchange;
    assert_eq!(
        m.history.last(),
        Some(&IntervalRecord {
            interval: 20,
            done,
            disrupted: 0
        })
    );

    // Interval 21 runs without them; meanwhile the exit sends on `a`, closes `b` and sends
    // on `c`.
    m.run_interval(21, &stayed);
    m.exit.extend([
        Rec::Data(a, b" while away".to_vec()),
        Rec::Close(b),
        Rec::Data(c, b"for c".to_vec()),
    ]);
    m.exchanges_until(8, |m| m.exit.is_empty());
    m.end_interval();

    // They come back. Every client that reconnects asks for what it missed, owner or not.
    for &i in &dropped {
        let hello = m.connect(i);
        let resume = hello.resume.expect("a returning client resumes");
        assert_eq!((resume.epoch, resume.seq), (EPOCH, 1), "client {i}");
    }
    m.run_interval(22, &all());
    // The missed records were replayed and delivered; the connections stay open, but for
    // the one the exit closed.
    assert_eq!(m.apps[owner].received[&a], b"reply while away");
    assert_eq!(m.apps[owner].closed, [b]);
    assert_eq!(m.apps[1].received[&c], b"for c");
    assert!(m.clients[owner].is_open(a) && !m.clients[owner].is_open(b));
    assert!(m.clients[1].is_open(c));
    for &i in &dropped {
        assert!(
            m.apps[i].lost.is_empty(),
            "client {i} lost {:?}",
            m.apps[i].lost
        );
    }

    // The next exchanges: no close from anyone. The owner's slot carries its abandoned cell
    // again, then the bytes it writes now, and nothing else; no other slot carries anything.
    m.send(owner, a, b"delta");
    let run = m.exchanges(24);
    assert!(run.iter().all(Decoded::decodes));
    let mut sent: BTreeMap<u16, Vec<Up>> = BTreeMap::new();
    for d in &run {
        if let (Some(slot), Some(records)) = (d.slot(), d.records()) {
            sent.entry(slot).or_default().extend(records);
        }
    }
    sent.retain(|_, r| !r.is_empty());
    let again = Up::Data {
        conn: a,
        open: false,
        payload: b"gamma".to_vec(),
    };
    let new = Up::Data {
        conn: a,
        open: false,
        payload: b"delta".to_vec(),
    };
    assert_eq!(sent, BTreeMap::from([(slot_of(owner), vec![again, new])]));
    assert!(m.upstream.iter().all(|(_, u)| !matches!(u, Up::Close(_))));
}

// ---------------------------------------------------------------------------------------
// 4. Isolation

#[test]
fn an_isolated_client_never_gets_an_exchange_decoded() {
    // In v1 a trustee's minimum counted the online set, nothing proved that a listed client
    // was online and clients never saw the set: the relay ran the target alone with invented
    // members, and the trustees served it.
    let target = 0;
    let (p, q) = (N - 2, N - 1);
    let mut m = Mallory::new(3);
    m.run_interval(30, &all());
    m.end_interval();
    // Clients p and q said hello earlier and are gone now.
    m.disconnect(p);
    m.disconnect(q);
    let replayed = m.entries(&[target, p, q]);

    // An invented member (a nonce and a proof q never sent) is refused by every trustee.
    let mut invented = replayed.clone();
    invented[2].nonce = [0x42; NONCE_LEN];
    invented[2].proofs = vec![0x42; M * MAC_LEN];
    let bad = Refused {
        trustee: 0,
        client: q,
    };
    assert_eq!(m.open(31, &invented), Err(bad));
    // So is q's real nonce with a proof made for another trustee.
    let mut swapped = replayed.clone();
    swapped[2].proofs.rotate_left(MAC_LEN);
    assert_eq!(m.open(32, &swapped), Err(bad));

    // Replayed proofs check (they carry no freshness), but p and q cannot acknowledge a view
    // with fresh trustee nonces: their replayed acknowledgements of interval 30 do not
    // check, and every trustee refuses the interval. The target is never confirmed.
    let nonces = m.open(33, &replayed).expect("old proofs still check");
    let body = m.start(33, &[target, p, q], &nonces).body();
    m.show(target, &body).unwrap();
    let refused = m.confirm(&[&body, &body]).unwrap_err();
    let at_p = (0..M).map(|trustee| Refused { trustee, client: p });
    assert_eq!(refused, at_p.collect::<Vec<_>>());

    // The second line: were p and q colluding (their acknowledgements forged here with keys
    // no relay holds), nothing would decode: the trustees' pads for p and q are cancelled
    // by nobody.
    let nonces = m.open(34, &replayed).expect("old proofs still check");
    let body = m.start(34, &[target, p, q], &nonces).body();
    m.show(target, &body).unwrap();
    m.acks[p] = Some(m.forge_acks(p, &body));
    m.acks[q] = Some(m.forge_acks(q, &body));
    let macs = m.confirm(&[&body, &body]).unwrap();
    m.confirmed(target, 34, &macs[&target]).unwrap();
    m.begin(34, &[target, p, q]);
    let conn = m.open_conn(target);
    m.send(target, conn, b"isolated");
    for _ in 0..16 {
        // p and q send nothing: their cells count as zeros.
        let issued = m.issue_with(&[target], &|_| Rec::None, &Rec::None);
        let len = issued.kind.cell_len(N as u16);
        let d = m.decode(issued);
        assert!(!d.decodes(), "exchange {} decoded", d.exchange);
        if d.slot() == Some(slot_of(target)) {
            assert_ne!(d.xor, d.wrote[&target]);
        }
        // What stands between the relay and the target's plaintext is exactly the trustees'
        // pads for p and q, under keys only they and the trustees hold.
        let mut residue = d.xor.clone();
        xor_into(&mut residue, &d.intended());
        let mut absent = m.pads_of(p, &nonces, target, len);
        xor_into(&mut absent, &m.pads_of(q, &nonces, target, len));
        assert_eq!(residue, absent);
    }
    assert!(!m.opened(conn));

    // The trustees were opened with a small set and the client is shown a large one: its
    // acknowledgement does not match the trustees' view, and they refuse it.
    let mut m = Mallory::new(2);
    let small = [0, 1];
    let entries = m.entries(&small);
    let nonces = m.open(40, &entries).unwrap();
    let opened = m.start(40, &small, &nonces).body();
    let shown = m.start(40, &all(), &nonces).body();
    m.show(0, &shown).unwrap();
    m.show(1, &opened).unwrap();
    let refused = m.confirm(&[&opened, &opened]).unwrap_err();
    let at_0 = (0..M).map(|trustee| Refused { trustee, client: 0 });
    assert_eq!(refused, at_0.collect::<Vec<_>>());
    // Confirmations of the trustees' view (forged) do not check at the client either.
    let theirs = m.forge_confirmations(0, &opened);
    assert_eq!(
        m.confirmed(0, 40, &theirs),
        Err(PeerError::Interval(IntervalError::Unconfirmed {
            trustee: 0
        }))
    );

    // A set below the client's own minimum is refused as soon as it is shown, whatever the
    // trustees accept.
    let mut m = Mallory::with_minimums(3, 1);
    let entries = m.entries(&small);
    let nonces = m.open(41, &entries).expect("the trustees' minimum is 1");
    let body = m.start(41, &small, &nonces).body();
    assert_eq!(
        m.show(0, &body),
        Err(PeerError::Interval(IntervalError::TooFewClients {
            online: 2,
            min: 3
        }))
    );
}

/// Clients p and q said hello and left; the relay replays their proofs to list them beside
/// client `k` in interval 11 (three members: everyone's minimum), and tells it that interval
/// 10 decoded nothing. Were `k` to act on that history, its slot would send its message
/// again in the next honest interval exactly when `k` owns it. But p and q cannot
/// acknowledge interval 11, so no trustee confirms it and `k` never acts.
#[test]
fn an_isolated_client_does_not_carry_a_lie_into_the_next_interval() {
    let owner = 0;
    let (p, q) = (N - 2, N - 1);
    let mut seen = Vec::new();
    for k in [owner, 5] {
        let (mut m, _) = after_first_message(owner, 3);
        m.disconnect(p);
        m.disconnect(q);
        let entries = m.entries(&[k, p, q]);
        let nonces = m.open(11, &entries).expect("old proofs still check");
        let mut start = m.start(11, &[k, p, q], &nonces);
        start.history[0].done = 0;
        let body = start.body();
        m.show(k, &body).unwrap();
        let refused = m.confirm(&[&body, &body]).unwrap_err();
        assert!(refused.iter().all(|r| r.client == p), "{refused:?}");
        m.connect(p);
        m.connect(q);
        m.run_interval(12, &all());
        let run = m.exchanges(8);
        assert!(run.iter().all(Decoded::decodes));
        seen.push(active_slots(&run));
    }
    assert_eq!(
        seen[0],
        seen[1],
        "the relay sees slot {} send again only when the isolated client owns it",
        slot_of(owner)
    );
    assert_eq!(seen[0], BTreeSet::new());
}

// ---------------------------------------------------------------------------------------
// 5. Conn# after a restart

/// Closes one connection before anything was sent on it (so the client just forgets it).
struct CloseFirst(Option<ConnId>);

impl Upstream for CloseFirst {
    fn next_chunk(&mut self, _buf: &mut [u8], _credit: SendCredits<'_>) -> Option<Chunk> {
        self.0.take().map(|conn| Chunk::Close { conn })
    }
}

/// The low 16 bits of the first `n` Conn#s a client process opens (each forgotten before
/// the next), given the platform randomness it started with.
fn conn_lows(client: usize, rng_seed: [u8; 32], n: usize) -> Vec<u16> {
    let keys = trustee_keys();
    let mut c = new_client(&client_config(client, &keys, 1, rng_seed));
    let now = Instant::from_micros(0);
    (0..n)
        .map(|_| {
            let conn = c.open().unwrap();
            assert_eq!(conn.slot(), Some(slot_of(client)));
            c.prepare(now, &mut CloseFirst(Some(conn)));
            assert!(!c.is_open(conn));
            conn.0 as u16
        })
        .collect()
}

/// What the relay exploited in v1: two runs of one client start alike, or the numbers count
/// up, or they cover a narrow range.
fn predictable(before: &[u16], after: &[u16]) -> bool {
    let steps = |v: &[u16]| {
        v.windows(2)
            .filter(|w| w[1] == w[0].wrapping_add(1))
            .count()
    };
    let spread = |v: &[u16]| v.iter().map(|l| l >> 8).collect::<BTreeSet<_>>().len();
    let pairs = |v: &[u16]| v.windows(2).map(|w| (w[0], w[1])).collect::<BTreeSet<_>>();
    before[0] == after[0]
        || steps(before) > 2
        || steps(after) > 2
        || spread(before) < 200
        || spread(after) < 200
        || !pairs(before).is_disjoint(&pairs(after))
}

#[test]
fn conn_numbers_are_not_a_counter_and_a_restart_does_not_repeat_them() {
    const OPENS: usize = 1000;
    let client = 7;
    // v1: a counter from 1 in every process, so the relay saw client 7 reconnect and then
    // slot s open `(s + 1) << 16 | 1`. The check below catches exactly that.
    let counter: Vec<u16> = (1..=OPENS as u16).collect();
    assert!(predictable(&counter, &counter));

    // v2: the same configuration started twice, each time with fresh platform randomness.
    let before = conn_lows(client, secret(4, client), OPENS);
    let after = conn_lows(client, secret(5, client), OPENS);
    assert!(before.iter().chain(&after).all(|&l| l != 0));
    assert_ne!(before[0], after[0]);
    assert!(
        !predictable(&before, &after),
        "{:?} / {:?}",
        &before[..8],
        &after[..8]
    );
    // That rests on the shell: a process restarted with the seed it had before repeats
    // every number (the platform must give a fresh seed per start, as documented).
    assert_eq!(conn_lows(client, secret(4, client), OPENS), before);

    // Open at once, the numbers are distinct, up to the limit.
    let keys = trustee_keys();
    let mut c = new_client(&client_config(client, &keys, 1, secret(6, client)));
    let open: BTreeSet<ConnId> = (0..MAX_CONNECTIONS).map(|_| c.open().unwrap()).collect();
    assert_eq!(open.len(), MAX_CONNECTIONS);
    assert_eq!(c.open(), Err(OpenError::TooManyConnections));
}

// ---------------------------------------------------------------------------------------
// 6. Owner and non-owner emit the same

#[test]
fn owner_and_non_owner_emit_the_same() {
    // v1: the owner did extra work before answering an exchange. Here a client owning the
    // slot of the requested exchanges and one that does not get the very same frames (the
    // same start, the same requests; their `Confirmed` differ only in MAC bytes) and must put
    // out the same sequence: frames of the same lengths, the same events, nothing extra.
    let (a, b) = (0, 1);
    let mut m = Mallory::new(1);
    m.run_interval(10, &all());
    let conn = m.open_conn(a);
    m.send(a, conn, &pattern(1, 900));
    for k in 0..6 {
        m.exit.push_back(Rec::Data(conn, pattern(10 + k, 40)));
    }
    let pads_before = m.trustee_pads.len();
    let run = m.exchanges(48);
    assert!(run.iter().all(Decoded::decodes));
    let owned = run.iter().filter(|d| d.slot() == Some(slot_of(a))).count();
    assert!(owned >= 4, "client {a} owned {owned} exchanges");
    // Reservation bitmaps, base cells and long cells, so equal lengths mean something.
    let lengths: BTreeSet<usize> = run.iter().map(|d| d.xor.len()).collect();
    assert!(lengths.len() >= 3, "cell lengths {lengths:?}");
    assert_eq!(m.apps[a].received[&conn].len(), 6 * 40);

    // The same outputs, in the same order, but for deliveries to the owner's own connection.
    let without_deliveries = |t: &[Out]| -> Vec<Out> {
        t.iter()
            .filter(|o| !matches!(o, Out::Delivery(_)))
            .cloned()
            .collect()
    };
    let (ta, tb) = (&m.traces[a], &m.traces[b]);
    assert_eq!(without_deliveries(ta), without_deliveries(tb));
    let delivered: Vec<&Out> = ta
        .iter()
        .filter(|o| matches!(o, Out::Delivery(_)))
        .collect();
    assert_eq!(delivered, vec![&Out::Delivery(conn); 6]);
    assert!(!tb.iter().any(|o| matches!(o, Out::Delivery(_))));
    // Nothing but one cell per request after the Hello and the acknowledgement: no frame
    // that depends on ownership.
    assert_eq!(
        ta.iter().filter(|o| matches!(o, Out::Control(_))).count(),
        2
    );
    let cells = |t: &[Out]| t.iter().filter(|o| matches!(o, Out::Cell(_))).count();
    assert_eq!((cells(ta), cells(tb)), (run.len(), run.len()));

    // The work, counted without a clock. The client has no pad-engine hook, so its pads are
    // counted through their effect: removing exactly M pads of the cell's length from each
    // cell leaves what it wrote, all zeros for the non-owner (a pad skipped or applied twice
    // would leave keystream). So both apply M pads over the whole cell, every exchange.
    for d in &run {
        assert!(
            d.wrote[&b].iter().all(|&x| x == 0),
            "exchange {}",
            d.exchange
        );
        if d.slot() == Some(slot_of(a)) {
            assert!(upstream(&d.wrote[&a], slot_of(a), d.interval, d.exchange, &d.trap).is_some());
        }
    }
    // The owner's cells are sealed (a fresh nonce each), and so cost it the same copy
    // whatever they carry: it sealed them in `prepare`, before the request came.
    let nonces: BTreeSet<Vec<u8>> = run
        .iter()
        .filter(|d| d.slot() == Some(slot_of(a)))
        .map(|d| &d.wrote[&a])
        .filter(|w| w.iter().any(|&x| x != 0))
        .map(|w| w[..wire::SLOT_NONCE_LEN].to_vec())
        .collect();
    let sealed = run
        .iter()
        .filter(|d| d.slot() == Some(slot_of(a)) && d.wrote[&a].iter().any(|&x| x != 0))
        .count();
    assert!(sealed >= 4, "{sealed} sealed cells");
    assert_eq!(nonces.len(), sealed, "a nonce used twice");
    // Each trustee computes one pad per member over each cell, whoever owns it.
    let pads = &m.trustee_pads[pads_before..];
    assert_eq!(pads.len(), M * run.len());
    for (d, per) in run.iter().zip(pads.chunks_exact(M)) {
        assert_eq!(per, [(N, d.xor.len()); M]);
    }
    // What still differs, and is not observable here: on the cell path, the owner copies its
    // prepared, already signed cell (one memcpy of the cell length) where the non-owner
    // zeroes it, and `confirm_up_to` walks the owner's ring of sent cells
    // (empty for a client that sent nothing) before the cell is computed; in reservation
    // exchanges, `wants_reservation` walks the ring and the connection table. Off the cell
    // path, `prepare` after each cell pulls the owner's next bytes from the application.
}

// ---------------------------------------------------------------------------------------
// 7. Numbers only the relay chooses

#[test]
fn an_impossible_log_head_costs_the_client_its_connections_not_a_crash() {
    // After a reconnect the relay claims a downstream log head far beyond anything it could
    // replay. The client cannot resume: it ends its connections and goes on, as after any
    // gap longer than the log, and never computes with the relay's number unchecked.
    let (mut m, conn) = with_open_connection(0);
    m.end_interval();
    m.disconnect(0);
    m.connect(0);
    let entries = m.entries(&all());
    let nonces = m.open(11, &entries).expect("the trustees open interval 11");
    let mut start = m.start(11, &all(), &nonces);
    start.head.seq = u64::MAX;
    start.head.bytes = u64::MAX;
    // Unless the start says so, the client is not lost: it refuses the start instead of
    // losing its connections where no one else can see it.
    let body = start.body();
    m.show(0, &body).expect("a start with a far head is taken");
    let macs = m.forge_confirmations(0, &body);
    assert_eq!(
        m.confirmed(0, 11, &macs),
        Err(PeerError::Interval(IntervalError::Lost))
    );
    assert!(
        m.clients[0].is_open(conn),
        "a refused start cost the connection"
    );
    m.disconnect(0);
    m.connect(0);
    let entries = m.entries(&all());
    let nonces = m.open(12, &entries).expect("the trustees open interval 12");
    let mut start = m.start(12, &all(), &nonces);
    start.head.seq = u64::MAX;
    start.head.bytes = u64::MAX;
    start.lost = vec![0];
    let body = start.body();
    m.show(0, &body).expect("a start with a far head is taken");
    let macs = m.forge_confirmations(0, &body);
    assert_eq!(m.confirmed(0, 12, &macs), Ok(()));
    assert!(!m.clients[0].is_open(conn), "the connection was kept");
}

// ---------------------------------------------------------------------------------------
// 8. The log window

#[test]
fn a_start_that_forgets_records_within_the_log_window_is_not_confirmed() {
    // Attack 1 of protocol v2 began with a start claiming the log holds nothing before the
    // head: every client away when the last records went out then lost its connections.
    // The trustees hold the relay to the group's log window: that start is not confirmed.
    let (mut m, conn) = with_open_connection(0);
    m.exit.push_back(Rec::Data(conn, b"reply".to_vec()));
    m.exchanges_until(8, |m| m.exit.is_empty());
    m.end_interval();
    let head = m.head.seq;
    assert!(head >= 1);
    let entries = m.entries(&all());
    let nonces = m.open(11, &entries).expect("the trustees open interval 11");
    let mut start = m.start(11, &all(), &nonces);
    start.oldest = head + 1;
    let body = start.body();
    for (t, trustee) in m.trustees.iter_mut().enumerate() {
        trustee
            .handle_frame(m.now, &body)
            .expect("the link is kept");
        assert_eq!(
            trustee.poll_event(),
            Some(TrusteeEvent::LogWindow {
                interval: 11,
                oldest: head + 1,
                required: 1,
            }),
            "trustee {t}"
        );
        // Nothing is confirmed, and every acknowledgement is refused from now on.
        assert_eq!(trustee.poll_transmit(&mut m.out).unwrap(), None);
    }
    // The truth is confirmed.
    m.run_interval(12, &all());
    m.exchanges(4);
    assert!(m.clients[0].is_open(conn));
}

// ---------------------------------------------------------------------------------------
// 9. A relay that searches
//
// The relay here plays strategies built from everything it controls: which connected
// clients it lists, which links it cuts, claiming the last interval decoded nothing (so an
// owner sends its cells again), lying about `oldest` (to everyone, or in a start shown only
// to some), and pushing downstream records while some clients are away. Named strategies
// search adaptively (a binary search on what they saw: attacks 1 and 2 of protocol v2
// among them); the rest are seeded random strategies.
//
// **What the relay observes**: every decoded output (the XOR of all cells: which slots
// transmit and what), the length of every frame each client sends, every Hello's resume
// point, whether each client took each start, confirmation and request (a refusal is an
// error and a redial), and each trustee's confirmation or refusal. Not ciphertext bytes.
//
// **Worlds.** The same strategy runs in worlds that differ only in which client holds the
// target slot: in world `c`, clients `c` and 0 swap slots, and RNG seeds and the workload
// belong to slots. The candidate set of world `c` is the worlds whose observation trace
// equals `c`'s: the owners a relay that saw `c`'s trace cannot rule out. Connection numbers
// are random and new to the relay in every world, so it tells them apart only by their
// order of appearance (a slot that opened a connection it never used draws different
// numbers later, which no relay can see).

/// The slot the relay hunts (client 0's in `slot_of`).
const TARGET: u16 = 3;

/// Owners of the target slot the worlds try: four whole buddy groups of two.
const WORLDS: [usize; 8] = [0, 1, 16, 17, 32, 33, 62, 63];

/// Intervals each search runs.
const ROUNDS: usize = 14;

/// Exchanges of each interval.
const ROUND_EXCHANGES: usize = 8;

/// The slot of client `i` in the world where `owner` holds the target slot.
fn world_slot(owner: usize, i: usize) -> u16 {
    if i == owner {
        TARGET
    } else if i == 0 {
        slot_of(owner)
    } else {
        slot_of(i)
    }
}

/// The group's policy with anonymity minimum `k` and log window `window`.
fn policy_of(k: u16, window: LogWindow) -> Policy {
    Policy {
        min_anonymity: k,
        log_window: window,
    }
}

/// The window of the protected runs: longer than any search.
const LONG_WINDOW: LogWindow = LogWindow {
    time: Duration::from_millis(3_600_000),
    bytes: 1 << 20,
};

/// What the relay does in one interval.
#[derive(Debug, Clone, Default)]
struct Action {
    /// Connected clients not listed.
    leave_out: BTreeSet<usize>,
    /// Clients whose links are cut before the interval (they say hello again after it).
    cut: BTreeSet<usize>,
    /// The start says the last interval decoded nothing.
    resend: bool,
    /// A start that claims the log holds nothing before its head: `Some(None)` to everyone
    /// (trustees included), `Some(Some(set))` only to those clients.
    forget: Option<Option<BTreeSet<usize>>>,
    /// A downstream record goes out in this interval (while the cut clients are away).
    push: bool,
}

/// What the relay saw of the target slot in one interval.
#[derive(Debug, Clone, Default)]
struct Seen {
    members: BTreeSet<usize>,
    /// The slot asked for a reservation or sent a cell other than zeros.
    transmitted: bool,
    /// The slot opened a connection.
    opened: bool,
}

/// A strategy of the relay.
#[derive(Debug, Clone, Copy)]
enum Strategy {
    /// Attack 2 (with `resend`): list half the suspects, claim the last cell was not
    /// decoded, see whether the slot sends. Without `resend`: online sets alone.
    Halve { resend: bool },
    /// As `Halve`, cutting the other half's links instead of leaving them out.
    HalveByCut,
    /// Attack 1: cut half the suspects, push a record while they are away, then one start
    /// to everyone claiming the log holds nothing before its head; see whether the slot's
    /// connection died (its owner opens a new one).
    ForcedDrop,
    /// As `ForcedDrop`, the lying start shown only to the cut half.
    ForgetToSome,
    /// Each interval a random mix of everything above, from this seed.
    Random(u64),
}

/// A small deterministic generator for the random strategies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }
}

/// The relay's side of one world's search: what it knows and has done.
struct Search {
    strategy: Strategy,
    rng: Rng,
    suspects: BTreeSet<usize>,
    /// The clients cut in the last interval.
    last_cut: BTreeSet<usize>,
}

impl Search {
    fn new(strategy: Strategy) -> Self {
        let seed = match strategy {
            Strategy::Random(s) => s.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            _ => 1,
        };
        Search {
            strategy,
            rng: Rng(seed),
            suspects: all().into_iter().collect(),
            last_cut: BTreeSet::new(),
        }
    }

    /// Half of the suspects (the lower half by index).
    fn half(&self) -> BTreeSet<usize> {
        let n = self.suspects.len().div_ceil(2);
        self.suspects.iter().copied().take(n).collect()
    }

    fn action(&mut self, round: usize) -> Action {
        let mut a = Action::default();
        if round == 0 {
            // Everyone, so the owner opens its connection.
            return a;
        }
        let others = |half: &BTreeSet<usize>, s: &BTreeSet<usize>| -> BTreeSet<usize> {
            s.difference(half).copied().collect()
        };
        match self.strategy {
            Strategy::Halve { resend } => {
                a.leave_out = others(&self.half(), &self.suspects);
                a.resend = resend;
            }
            Strategy::HalveByCut => a.cut = others(&self.half(), &self.suspects),
            Strategy::ForcedDrop | Strategy::ForgetToSome => {
                if round % 2 == 1 {
                    a.cut = self.half();
                    a.push = true;
                } else {
                    a.forget = Some(match self.strategy {
                        Strategy::ForgetToSome => Some(self.last_cut.clone()),
                        _ => None,
                    });
                }
            }
            Strategy::Random(_) => {
                let rng = &mut self.rng;
                for &i in &self.suspects {
                    if rng.chance(3) {
                        a.leave_out.insert(i);
                    }
                }
                for i in 0..N {
                    if rng.chance(10) {
                        a.cut.insert(i);
                    }
                }
                a.resend = rng.chance(2);
                a.push = rng.chance(2);
                a.forget = match rng.next() % 8 {
                    0 | 1 => Some(None),
                    2 => Some(Some(self.last_cut.clone())),
                    _ => None,
                };
            }
        }
        a
    }

    /// Narrows the suspects on what the interval showed.
    fn learn(&mut self, a: &Action, seen: &Seen) {
        let before = self.suspects.clone();
        match self.strategy {
            Strategy::ForcedDrop | Strategy::ForgetToSome if a.forget.is_some() => {
                // A new connection: its owner was among the cut, and lost the old one.
                if seen.opened {
                    self.suspects.retain(|i| self.last_cut.contains(i));
                } else {
                    self.suspects.retain(|i| !self.last_cut.contains(i));
                }
            }
            Strategy::ForcedDrop | Strategy::ForgetToSome => {}
            _ => {
                if seen.transmitted {
                    self.suspects.retain(|i| seen.members.contains(i));
                } else {
                    self.suspects.retain(|i| !seen.members.contains(i));
                }
            }
        }
        if self.suspects.is_empty() {
            // The inference was misled: start over.
            self.suspects = before;
        }
        self.last_cut = a.cut.clone();
    }
}

/// One world: the group, the relay's bookkeeping, and what the relay observed.
struct World {
    m: Mallory,
    owner: usize,
    k: u16,
    connected: BTreeSet<usize>,
    /// What each client holds of the log (none before its first interval).
    pos: Vec<Option<Head>>,
    /// The last interval each client answered an exchange in.
    answered: Vec<Option<u32>>,
    /// Clients lost whose buddy group has not all been shown so yet.
    pending: BTreeSet<usize>,
    /// The owner's application's connection.
    conn: Option<ConnId>,
    interval: u32,
    trace: Vec<String>,
    /// Connection numbers the relay has seen, in order of appearance.
    conns: Vec<ConnId>,
}

impl World {
    fn new(owner: usize, policy: Policy) -> Self {
        let m = Mallory::build(1, 1, policy, &|i| {
            let slot = world_slot(owner, i);
            ClientConfig {
                slot,
                policy,
                ..world_config(i, &[], 1, secret(4, usize::from(slot)))
            }
        });
        World {
            m,
            owner,
            k: policy.min_anonymity,
            connected: all().into_iter().collect(),
            pos: vec![None; N],
            answered: vec![None; N],
            pending: BTreeSet::new(),
            conn: None,
            interval: 100,
            trace: Vec::new(),
            conns: Vec::new(),
        }
    }

    /// A connection number as the relay tells it apart: by its order of appearance (the
    /// numbers are random and new to the relay in every world).
    fn conn_number(&mut self, conn: ConnId) -> usize {
        match self.conns.iter().position(|&c| c == conn) {
            Some(n) => n,
            None => {
                self.conns.push(conn);
                self.conns.len() - 1
            }
        }
    }

    fn see(&mut self, what: String) {
        self.trace.push(what);
    }

    /// Whether member `i` lost its connections by the rule every client applies, at a
    /// start of `start`.
    fn newly_lost(&self, i: usize, start: &Start) -> bool {
        let Some(p) = self.pos[i] else {
            return false;
        };
        let head = start.head;
        let size = (head.bytes - p.bytes) + (head.seq - p.seq) * wire::REPLAY_OVERHEAD as u64;
        let gap = p.seq < head.seq
            && !(p.seq + 1 >= start.oldest
                && size <= 2048
                && u64::from(start.largest) + wire::REPLAY_FRAME_OVERHEAD as u64
                    <= u64::from(MAX_FRAME));
        let forgotten =
            self.answered[i].is_some_and(|a| !start.history.iter().any(|h| h.interval == a));
        gap || forgotten
    }

    fn lost_of(&self, start: &Start) -> Vec<usize> {
        start
            .online
            .iter()
            .copied()
            .filter(|&i| self.pending.contains(&i) || self.newly_lost(i, start))
            .collect()
    }

    /// The trustees take `body` and the members' acknowledgements; the members'
    /// confirmations, or what went wrong.
    fn confirm(
        &mut self,
        body: &[u8],
        members: &[usize],
    ) -> Result<BTreeMap<usize, Vec<u8>>, String> {
        let m = &mut self.m;
        let mut macs: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut refused = Vec::new();
        for (t, trustee) in m.trustees.iter_mut().enumerate() {
            if let Err(e) = trustee.handle_frame(m.now, body) {
                return Err(format!("trustee {t} refused the start: {e:?}"));
            }
            if let Some(ev) = trustee.poll_event() {
                if matches!(ev, TrusteeEvent::LogWindow { .. }) {
                    return Err(format!("trustee {t}: {ev:?}"));
                }
            }
            let column: Vec<u8> = members
                .iter()
                .flat_map(|&i| match &m.acks[i] {
                    Some(a) => a[t * MAC_LEN..(t + 1) * MAC_LEN].to_vec(),
                    None => vec![0; MAC_LEN],
                })
                .collect();
            let acks = frame_body(&Message::Acks {
                interval: self.interval,
                first: 0,
                macs: &column,
            });
            if let Err(e) = trustee.handle_frame(m.now, &acks) {
                return Err(format!("trustee {t} refused the acknowledgements: {e:?}"));
            }
            let _ = trustee.poll_event();
            while let Some(n) = trustee.poll_transmit(&mut m.out).unwrap() {
                match Message::parse(body_of(&m.out[..n])) {
                    Ok(Message::Confirm {
                        first, macs: list, ..
                    }) => {
                        for (k, mac) in list.chunks_exact(MAC_LEN).enumerate() {
                            macs.entry(members[first as usize + k])
                                .or_default()
                                .extend_from_slice(mac);
                        }
                    }
                    Ok(Message::Refuse { client, .. }) => refused.push((t, client)),
                    other => return Err(format!("trustee {t} answered {other:?}")),
                }
            }
        }
        if refused.is_empty() {
            Ok(macs)
        } else {
            Err(format!("refused {refused:?}"))
        }
    }

    fn drop_client(&mut self, i: usize) {
        if self.connected.remove(&i) {
            self.m.disconnect(i);
        }
    }

    /// One interval as `a` says; what the relay saw of the target slot.
    fn round(&mut self, round: usize, a: &Action) -> Seen {
        self.interval += 1;
        let interval = self.interval;
        let mut seen = Seen::default();
        for &i in &a.cut {
            if self.connected.contains(&i) {
                self.see(format!("cut {i}"));
                self.drop_client(i);
            }
        }
        for i in 0..N {
            if !self.connected.contains(&i) && !a.cut.contains(&i) {
                let hello = self.m.connect(i);
                self.connected.insert(i);
                if let (Some(r), Some(p)) = (hello.resume, self.pos[i]) {
                    assert_eq!(
                        (r.seq, r.bytes),
                        (p.seq, p.bytes),
                        "client {i}'s resume point"
                    );
                }
                self.see(format!("hello {i} {:?}", hello.resume));
            }
        }
        if a.push {
            // To the slot's connection if the relay has seen it, else to anyone's.
            let conn = self
                .m
                .upstream
                .iter()
                .rev()
                .find_map(|(s, u)| match u {
                    Up::Data { conn, .. } if *s == TARGET => Some(*conn),
                    _ => None,
                })
                .unwrap_or(ConnId(u32::from(TARGET + 1) << 16));
            self.m.exit.push_back(Rec::Data(conn, b"pushed".to_vec()));
        }
        let members: Vec<usize> = self
            .connected
            .iter()
            .copied()
            .filter(|i| !a.leave_out.contains(i))
            .collect();
        seen.members = members.iter().copied().collect();
        if members.is_empty() {
            self.see("nobody".into());
            return seen;
        }
        let entries = self.m.entries(&members);
        let nonces = match self.m.open(interval, &entries) {
            Ok(n) => n,
            Err(r) => {
                self.see(format!("open refused {r:?}"));
                return seen;
            }
        };
        let mut honest = self.m.start(interval, &members, &nonces);
        if a.resend {
            if let Some(h) = honest.history.last_mut() {
                h.done = 0;
            }
        }
        let mut lie = honest.clone();
        lie.oldest = self.m.head.seq + 1;
        honest.lost = self.lost_of(&honest);
        lie.lost = self.lost_of(&lie);
        let (trusted, shown_lie): (Start, BTreeSet<usize>) = match &a.forget {
            None => (honest.clone(), BTreeSet::new()),
            Some(None) => (lie.clone(), members.iter().copied().collect()),
            Some(Some(some)) => (honest.clone(), some.clone()),
        };
        let (honest_body, lie_body) = (honest.body(), lie.body());
        let mut took = Vec::new();
        for &i in &members {
            let body = if shown_lie.contains(&i) {
                &lie_body
            } else {
                &honest_body
            };
            match self.m.show(i, body) {
                Ok(()) => took.push(i),
                Err(e) => {
                    self.see(format!("start refused by {i}: {e:?}"));
                    self.drop_client(i);
                }
            }
        }
        let body = trusted.body();
        let macs = match self.confirm(&body, &members) {
            Ok(macs) => macs,
            Err(e) => {
                self.see(format!("not confirmed: {e}"));
                return seen;
            }
        };
        self.see(format!("confirmed {interval}"));
        let lost: BTreeSet<usize> = trusted.lost.iter().copied().collect();
        let lost_map = bitmap(lost.iter().copied());
        let online_map = bitmap(members.iter().copied());
        let head = self.m.head;
        let mut accepted = Vec::new();
        for &i in &took {
            let newly = self.newly_lost(i, &trusted);
            let r = self.m.feed(
                i,
                &frame_body(&Message::Confirmed {
                    interval,
                    macs: &macs[&i],
                }),
            );
            let mut result = r.map(|_| ());
            // A member lost just now holds the head; one still marked for an older loss
            // is owed its replays like anyone.
            if result.is_ok() && !newly {
                if let Some(p) = self.pos[i] {
                    for seq in p.seq + 1..=head.seq {
                        let rec = self.m.log[(seq - 1) as usize].clone();
                        let r = self.m.feed(
                            i,
                            &frame_body(&Message::Replay {
                                seq,
                                down: rec.down(),
                            }),
                        );
                        if let Err(e) = r {
                            result = Err(e);
                            break;
                        }
                    }
                }
            }
            if let Some(h) = self.m.hellos[i].as_mut() {
                h.resume = None;
            }
            match result {
                Ok(()) => {
                    accepted.push(i);
                    if newly {
                        self.pending.insert(i);
                        self.answered[i] = None;
                    }
                    let (n, k) = (N as u16, self.k);
                    if dissent_core::buddies::group_online(&online_map, i as u16, n, k)
                        && !lost.is_empty()
                        && dissent_core::buddies::group_touches(&lost_map, i as u16, n, k)
                    {
                        self.pending.remove(&i);
                    }
                    self.pos[i] = Some(head);
                }
                Err(e) => {
                    self.see(format!("confirmation refused by {i}: {e:?}"));
                    self.drop_client(i);
                }
            }
        }
        self.m.begin(interval, &accepted);
        // The workload, which belongs to the slot: a message every interval, on a new
        // connection if the last one is gone.
        let owner = self.owner;
        let conn = match self.conn {
            Some(c) if self.m.clients[owner].is_open(c) => c,
            _ => {
                let c = self.m.open_conn(owner);
                self.conn = Some(c);
                c
            }
        };
        self.m
            .send(owner, conn, format!("round {round}").as_bytes());
        for _ in 0..ROUND_EXCHANGES {
            let d = self.m.exchange();
            let transmitted = match d.kind {
                Kind::Reserve => bits::test(&d.xor, usize::from(TARGET)),
                Kind::Slot { slot, .. } => slot == TARGET && d.xor.iter().any(|&b| b != 0),
            };
            seen.transmitted |= transmitted;
            if d.slot() == Some(TARGET) {
                seen.opened |= d
                    .records()
                    .is_some_and(|r| r.iter().any(|u| matches!(u, Up::Data { open: true, .. })));
            }
            let shown = match d.records() {
                Some(records) if d.slot().is_some() => {
                    let next =
                        CellView::parse(&unseal(&d.xor, TARGET, d.interval, d.exchange, &d.trap))
                            .map_or(0, |v| v.next());
                    let records: Vec<String> = records
                        .iter()
                        .map(|u| match u {
                            Up::Data {
                                conn,
                                open,
                                payload,
                            } => format!("data #{} {open} {payload:02x?}", self.conn_number(*conn)),
                            Up::Close(conn) => format!("close #{}", self.conn_number(*conn)),
                            Up::Abort(conn) => format!("abort #{}", self.conn_number(*conn)),
                            Up::Grant(conn, n) => {
                                format!("grant #{} {n}", self.conn_number(*conn))
                            }
                        })
                        .collect();
                    format!("{:?} {records:?} next {next}", d.kind)
                }
                _ => format!("{:?} {:02x?}", d.kind, d.xor),
            };
            self.see(shown);
        }
        for &i in &accepted {
            self.answered[i] = Some(interval);
            self.pos[i] = Some(self.m.head);
        }
        self.m.end_interval();
        seen
    }

    /// Everything the relay observed: its own notes, then each client's frames by length
    /// and its refusals.
    fn observed(&self) -> Vec<String> {
        let mut t = self.trace.clone();
        for (i, trace) in self.m.traces.iter().enumerate() {
            let frames: Vec<&Out> = trace
                .iter()
                .filter(|o| matches!(o, Out::Control(_) | Out::Cell(_) | Out::Refused(_)))
                .collect();
            t.push(format!("client {i}: {frames:?}"));
        }
        t
    }
}

/// Runs `strategy` in every world under `policy`; each world's candidate set.
fn search(policy: Policy, strategy: Strategy) -> BTreeMap<usize, BTreeSet<usize>> {
    let traces: BTreeMap<usize, Vec<String>> = WORLDS
        .iter()
        .map(|&owner| {
            let mut w = World::new(owner, policy);
            let mut s = Search::new(strategy);
            for round in 0..ROUNDS {
                let a = s.action(round);
                let seen = w.round(round, &a);
                s.learn(&a, &seen);
            }
            (owner, w.observed())
        })
        .collect();
    traces
        .iter()
        .map(|(&w, t)| {
            let same = traces
                .iter()
                .filter(|(_, u)| *u == t)
                .map(|(&v, _)| v)
                .collect();
            (w, same)
        })
        .collect()
}

fn named_strategies() -> Vec<Strategy> {
    vec![
        Strategy::Halve { resend: true },
        Strategy::Halve { resend: false },
        Strategy::HalveByCut,
        Strategy::ForcedDrop,
        Strategy::ForgetToSome,
    ]
}

#[test]
fn a_searching_relay_never_narrows_an_owner_below_its_buddy_group() {
    let policies = [
        policy_of(2, LONG_WINDOW),
        // Without the log window, fate sharing alone holds.
        policy_of(2, LogWindow::NONE),
    ];
    let strategies: Vec<Strategy> = named_strategies()
        .into_iter()
        .chain((0..6).map(Strategy::Random))
        .collect();
    for policy in policies {
        for &strategy in &strategies {
            let candidates = search(policy, strategy);
            for (&world, found) in &candidates {
                let group = dissent_core::buddies::group_of(world as u16, N as u16, 2);
                for buddy in group {
                    assert!(
                        found.contains(&usize::from(buddy)),
                        "{strategy:?} under {policy:?}: world {world} told from {buddy} \
                         ({found:?})"
                    );
                }
                assert!(found.len() >= 2, "{strategy:?}: {found:?}");
            }
        }
    }
}

#[test]
fn with_the_policy_off_the_same_search_finds_the_owner() {
    // The harness has teeth: with every client its own buddy group and no log window, the
    // same strategies single the owner out, attacks 1 and 2 of protocol v2 among them.
    let off = policy_of(1, LogWindow::NONE);
    for strategy in [
        Strategy::Halve { resend: true },
        Strategy::Halve { resend: false },
        Strategy::HalveByCut,
        Strategy::ForcedDrop,
    ] {
        let candidates = search(off, strategy);
        for (&world, found) in &candidates {
            assert_eq!(
                found,
                &BTreeSet::from([world]),
                "{strategy:?}: world {world} not singled out"
            );
        }
    }
}

#[test]
fn a_relay_that_grants_absurd_upstream_credit_is_held_to_the_owners_cap() {
    use dissent_core::credit::{OWNER_CREDIT_CAP, UP_WINDOW};
    let (mut m, conn) = with_open_connection(0);
    assert_eq!(m.clients[0].send_credit(conn), UP_WINDOW - 5);
    m.exit.push_back(Rec::Grant(conn, u32::MAX));
    m.exit.push_back(Rec::Grant(conn, u32::MAX));
    // A grant for a connection the client does not have adds nothing anywhere.
    let stranger = ConnId::new(slot_of(0), 0x7777);
    m.exit.push_back(Rec::Grant(stranger, u32::MAX));
    m.exchanges_until(8, |m| m.exit.is_empty());
    m.exchanges(2);
    assert_eq!(m.clients[0].send_credit(conn), OWNER_CREDIT_CAP);
    assert_eq!(
        m.apps[0].granted[&conn],
        u64::from(OWNER_CREDIT_CAP - (UP_WINDOW - 5))
    );
    assert_eq!(m.clients[0].send_credit(stranger), 0);
    assert!(!m.apps[0].granted.contains_key(&stranger));
}

// ---------------------------------------------------------------------------------------
// A relay restarted within one interval number, and what its blame requests get
//
// A restarted relay (or one that pretends to be) announces an interval number again with
// another trap point `R_I` and numbers its exchanges from 0 again, while every member still
// holds what it answered before. The relay then starts blame rounds on trap grounds it makes
// itself (it holds `r_I`, so any slot, exchange and trap bit will do) and sees what members
// reveal. Three things must hold of every reveal, whatever the relay did before:
//
// - it is the cell the member sent on the link and in the interval the round is about (the
//   running one, or the one its last link left), so the relay's fingerprint of that cell
//   matches and an honest member is never refused or convicted;
// - the member wrote 0 at the bit (cell bit = XOR of its pad bits), so owner and non-owner
//   reveal alike and the judge convicts neither;
// - the grounds' trap point is the one in force when the member answered that exchange
//   (grounds under another instance's point get nothing: they may name bits the owner's
//   cell did not keep at zero).

/// Trap secret number `k` of the searching relay's instances.
/// The identity public key of an identity secret.
fn identity_public(secret: &[u8; 32]) -> [u8; 32] {
    dissent_core::identity::IdentityKey::from_bytes(secret).public()
}

fn trap_secret(k: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&k.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    s[8] = 0x5a;
    s
}

/// A cell a member sent, as the test knows it.
#[derive(Debug, Clone)]
struct SentCell {
    client: usize,
    /// The test's count of the member's links when it sent it.
    link: usize,
    interval: u32,
    exchange: u64,
    /// The trap secret of the instance it answered.
    trap: [u8; 32],
    cell: Vec<u8>,
    wrote: Vec<u8>,
}

/// What the searching relay tracks of each client besides the harness.
#[derive(Debug, Default, Clone)]
struct Member {
    link: usize,
    /// (link, interval) it runs, once confirmed.
    running: Option<(usize, u32)>,
    /// (link, interval) it was running when a link of its dropped, until it is shown a
    /// start.
    left: Option<(usize, u32)>,
}

/// Tallies of one search, so that it is seen to exercise what it claims.
#[derive(Debug, Default)]
struct Tally {
    restarts_same_number: usize,
    asks: usize,
    reveals: usize,
    owner_reveals: usize,
    left_reveals: usize,
    refused_other_point: usize,
    trustee_reveals: usize,
}

/// A request a client took: (client, interval, exchange, bit, the grounds' trap secret, the
/// link whose record it is about, if any).
type Asked = (usize, u32, u64, u32, [u8; 32], Option<usize>);

/// The searching relay's world: the harness, the cells each client sent, its members.
struct Restarts {
    m: Mallory,
    sent: Vec<SentCell>,
    members: Vec<Member>,
    /// Every trap secret an instance used, the running one last.
    traps: Vec<[u8; 32]>,
    /// Slot exchanges issued: (interval, exchange, slot, len, trap).
    issued: Vec<(u32, u64, u16, usize, [u8; 32])>,
    /// Each trustee's cells of the running interval: exchange → cell.
    trustee_cells: Vec<BTreeMap<u64, Vec<u8>>>,
    owner: usize,
    conn: Option<ConnId>,
    rng: Rng,
    tally: Tally,
    /// Requests clients took and may still answer: (client, interval, exchange, bit, the
    /// grounds' trap secret, the link whose record the request is about, if any).
    asked: Vec<Asked>,
}

impl Restarts {
    fn new(seed: u64) -> Self {
        let mut m = Mallory::new(1);
        let tkeys = trustee_keys();
        let ckeys: Vec<[u8; 32]> = (0..N).map(|i| pad_public_key(&secret(1, i))).collect();
        let mut pseudonyms = vec![0u8; N * 32];
        for s in 0..N {
            pseudonyms[s * 32..s * 32 + 32].copy_from_slice(&pad_public_key(&secret(5, s)));
        }
        let tids: Vec<[u8; 32]> = (0..M).map(|t| identity_public(&secret(11, t))).collect();
        for i in 0..N {
            m.clients[i]
                .set_blame_keys(
                    &secret(10, i),
                    &secret(1, i),
                    &tkeys,
                    &tids,
                    pseudonyms.clone(),
                )
                .expect("blame keys");
        }
        for t in 0..M {
            let mut keys: Vec<u8> = ckeys.iter().flatten().copied().collect();
            keys.extend_from_slice(&pseudonyms);
            for i in 0..N {
                keys.extend_from_slice(&identity_public(&secret(10, i)));
            }
            m.trustees[t]
                .set_blame_keys(&secret(11, t), &secret(2, t), keys)
                .expect("blame keys");
        }
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let owner = (rng.next() % N as u64) as usize;
        m.trap = trap_secret(seed << 16);
        let mut r = Restarts {
            traps: vec![m.trap],
            m,
            sent: Vec::new(),
            members: vec![
                Member {
                    link: 1,
                    ..Member::default()
                };
                N
            ],
            issued: Vec::new(),
            trustee_cells: vec![BTreeMap::new(); M],
            owner,
            conn: None,
            rng,
            tally: Tally::default(),
            asked: Vec::new(),
        };
        r.start(20);
        r
    }

    /// Interval `interval` starts for everyone connected, under the running instance.
    fn start(&mut self, interval: u32) {
        if self.m.run.is_some() {
            self.m.end_interval();
        }
        self.m.run_interval(interval, &all());
        for (i, mem) in self.members.iter_mut().enumerate() {
            let _ = i;
            mem.running = Some((mem.link, interval));
            mem.left = None;
        }
        self.trustee_cells = vec![BTreeMap::new(); M];
    }

    /// `k` exchanges; the owner has bytes to send in each.
    fn run(&mut self, k: usize) {
        if self
            .conn
            .is_none_or(|c| !self.m.clients[self.owner].is_open(c))
        {
            self.conn = Some(self.m.open_conn(self.owner));
        }
        let conn = self.conn.expect("opened");
        let n = (self.rng.next() % 40 + 1) as usize;
        self.m.send(self.owner, conn, &pattern(n, 20 + n));
        for _ in 0..k {
            let issued = self.m.issue();
            for (&i, cell) in &issued.client_cells {
                self.sent.push(SentCell {
                    client: i,
                    link: self.members[i].link,
                    interval: issued.interval,
                    exchange: issued.exchange,
                    trap: issued.trap,
                    cell: cell.clone(),
                    wrote: issued.wrote[&i].clone(),
                });
            }
            for (t, cell) in issued.trustee_cells.iter().enumerate() {
                self.trustee_cells[t].insert(issued.exchange, cell.clone());
            }
            if let Kind::Slot { slot, len } = issued.kind {
                self.issued.push((
                    issued.interval,
                    issued.exchange,
                    slot,
                    len as usize,
                    issued.trap,
                ));
            }
            self.m.decode(issued);
        }
    }

    /// The relay restarts with a new trap secret: every link drops and comes back, and
    /// it announces `interval` (the same number, or another).
    fn restart(&mut self, interval: u32) {
        if self.m.run.is_some() {
            self.m.end_interval();
        }
        let trap = trap_secret(self.rng.next());
        self.m.trap = trap;
        self.traps.push(trap);
        for i in 0..N {
            self.drop_link(i);
        }
        for t in 0..M {
            self.m.trustees[t].handle_disconnected(self.m.now);
            self.m.reconnect_trustee(t);
        }
        self.start(interval);
    }

    /// Client `i`'s link drops and comes back; it is out of the running interval.
    fn drop_link(&mut self, i: usize) {
        self.m.disconnect(i);
        let mem = &mut self.members[i];
        if mem.running.is_some() {
            mem.left = mem.running.take();
        }
        mem.link += 1;
        self.m.connect(i);
        if let Some(run) = self.m.run.as_mut() {
            run.members.retain(|&c| c != i);
        }
    }

    /// A blame request on trap grounds the relay makes under `trap` for `bit` of
    /// `exchange` (slot `slot`) of `interval`.
    fn grounds(trap: &[u8; 32], interval: u32, slot: u16) -> Vec<u8> {
        let secret = dissent_core::crypto::pad_secret(trap).expect("a trap secret");
        let mut rng = <rand_chacha::ChaCha20Rng as rand_chacha::rand_core::SeedableRng>::from_seed(
            [interval as u8; 32],
        );
        let g = dissent_core::blame::trap::TrapGrounds::prove(
            &secret,
            &pad_public_key(&secret_of_slot(slot)),
            &GROUP,
            &SESSION,
            interval,
            slot,
            &mut rng,
        )
        .expect("a valid pseudonym key");
        let mut out = vec![0u8; dissent_core::blame::grounds::MAX_GROUNDS_LEN];
        let n = dissent_core::blame::grounds::Grounds::Trap(g)
            .emit(&mut out)
            .expect("room");
        out.truncate(n);
        out
    }

    /// One request to a member or a trustee, chosen by the generator; checks the answer.
    fn ask(&mut self) {
        let Some(&(interval, exchange, slot, len, issued_trap)) = ({
            let mut pick = None;
            // Mostly an exchange of the owner's slot.
            for _ in 0..8 {
                let k = (self.rng.next() % self.issued.len().max(1) as u64) as usize;
                pick = self.issued.get(k);
                if pick.is_some_and(|p| p.2 == slot_of(self.owner)) {
                    break;
                }
            }
            pick
        }) else {
            return;
        };
        let trap = match self.rng.next() % 10 {
            0..=4 => issued_trap,
            5..=7 => self.m.trap,
            _ => self.traps[(self.rng.next() % self.traps.len() as u64) as usize],
        };
        let key = wire::TrapKey::owner(
            &secret_of_slot(slot),
            &pad_public_key(&trap),
            &GROUP,
            &SESSION,
            interval,
            slot,
        )
        .expect("trap key");
        let traps: Vec<u32> = (0..(len * 8) as u32)
            .filter(|&b| key.is_trap_bit(exchange, len, b))
            .collect();
        let bit = if self.rng.chance(5) || traps.is_empty() {
            (self.rng.next() % (len * 8) as u64) as u32
        } else {
            traps[(self.rng.next() % traps.len() as u64) as usize]
        };
        let grounds = Self::grounds(&trap, interval, slot);
        let request = frame_body(&Message::BlameRequest {
            interval,
            exchange,
            bit,
            slot,
            grounds: &grounds,
        });
        self.tally.asks += 1;
        if self.rng.chance(4) {
            let t = (self.rng.next() % M as u64) as usize;
            self.ask_trustee(t, &request, interval, exchange, bit);
            return;
        }
        let i = if self.rng.chance(2) {
            self.owner
        } else {
            (self.rng.next() % N as u64) as usize
        };
        let what = format!("client {i} asked {interval}/{exchange} bit {bit} slot {slot}");
        let handled = self.m.clients[i]
            .handle_frame(self.m.now, &request, &mut self.m.out)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(handled.cell.is_none(), "{what}");
        // The round is about the running interval of its link, or the one its last link
        // left: the record of that link, if the client has one.
        let mem = &self.members[i];
        let link = [mem.running, mem.left]
            .into_iter()
            .flatten()
            .find(|&(_, iv)| iv == interval)
            .map(|(l, _)| l);
        self.asked.push((i, interval, exchange, bit, trap, link));
        // Answered now, or left pending across whatever the relay does next.
        if !self.rng.chance(3) {
            self.answer(i);
        }
    }

    /// Client `i`'s answers: every reveal is checked against the request it answers.
    fn answer(&mut self, i: usize) {
        let mut out = vec![0u8; MAX_FRAME as usize + 64];
        while let Some(n) = self.m.clients[i].poll_transmit(&mut out).unwrap() {
            if let Ok(Message::BlameReveal { .. }) = Message::parse(body_of(&out[..n])) {
                self.m.reveals.push((i, body_of(&out[..n]).to_vec()));
            }
        }
        self.check_reveals();
        // Requests under another instance's point than the record's: refused (a reveal of
        // one would have failed the check above).
        for a in self.asked.iter().filter(|a| a.0 == i) {
            let other = a.5.is_some_and(|l| {
                self.sent
                    .iter()
                    .rev()
                    .find(|s| (s.client, s.link, s.interval, s.exchange) == (i, l, a.1, a.2))
                    .is_some_and(|s| s.trap != a.4)
            });
            self.tally.refused_other_point += usize::from(other);
        }
        self.asked.retain(|a| a.0 != i);
    }

    /// Checks every reveal the clients sent since the last check.
    fn check_reveals(&mut self) {
        for (i, body) in core::mem::take(&mut self.m.reveals) {
            let Ok(Message::BlameReveal {
                interval,
                exchange,
                bit,
                pad_bits,
                cell,
                ..
            }) = Message::parse(&body)
            else {
                unreachable!("a reveal")
            };
            let what = format!(
                "client {i} revealed {interval}/{exchange} bit {bit} (owner {}), {:?}",
                self.owner, self.members[i]
            );
            let &(_, _, _, _, trap, link) = self
                .asked
                .iter()
                .rev()
                .find(|a| (a.0, a.1, a.2, a.3) == (i, interval, exchange, bit))
                .unwrap_or_else(|| panic!("{what}: never asked"));
            let link = link.unwrap_or_else(|| panic!("{what}: not in that interval when asked"));
            let sent = self
                .sent
                .iter()
                .rev()
                .find(|s| {
                    (s.client, s.link, s.interval, s.exchange) == (i, link, interval, exchange)
                })
                .unwrap_or_else(|| panic!("{what}: revealed a cell it did not send"));
            assert_eq!(
                cell,
                &sent.cell[..],
                "{what}: not the cell it sent on that link"
            );
            assert_eq!(
                sent.trap, trap,
                "{what}: grounds under another trap point than its cell's"
            );
            assert!(!bits::test(&sent.wrote, bit as usize), "{what}: wrote 1");
            let pads = (0..M).fold(false, |x, t| x ^ bits::test(pad_bits, t));
            assert_eq!(
                bits::test(cell, bit as usize),
                pads,
                "{what}: convicts itself"
            );
            self.tally.reveals += 1;
            self.tally.owner_reveals += usize::from(i == self.owner);
            let mem = &self.members[i];
            self.tally.left_reveals += usize::from(mem.running.is_none_or(|r| r.0 != link));
        }
    }

    /// Trustee `t` is sent `request`: it reveals only the running interval's cells.
    fn ask_trustee(&mut self, t: usize, request: &[u8], interval: u32, exchange: u64, bit: u32) {
        self.m.trustees[t]
            .handle_frame(self.m.now, request)
            .expect("a request is taken");
        let mut out = vec![0u8; MAX_FRAME as usize + 64];
        while let Some(n) = self.m.trustees[t].poll_transmit(&mut out).unwrap() {
            if let Ok(Message::BlameReveal { cell, .. }) = Message::parse(body_of(&out[..n])) {
                let run = self.m.run.as_ref().expect("an interval runs");
                assert_eq!(run.interval, interval, "trustee {t}: another interval");
                assert_eq!(
                    Some(&cell.to_vec()),
                    self.trustee_cells[t].get(&exchange),
                    "trustee {t}: {interval}/{exchange} bit {bit}: not the cell it sent"
                );
                self.tally.trustee_reveals += 1;
            }
        }
    }
}

/// The pseudonym secret of `slot` (each slot's key belongs to its slot here).
fn secret_of_slot(slot: u16) -> [u8; 32] {
    secret(5, usize::from(slot))
}

/// One world of the search: a random sequence of restarts (mostly re-announcing the same
/// interval number), new intervals, dropped links, exchanges and blame requests.
fn restart_search(seed: u64) -> Tally {
    let mut r = Restarts::new(seed);
    let mut interval = 20;
    for _ in 0..40 {
        match r.rng.next() % 13 {
            0..=3 => {
                let k = (r.rng.next() % 6 + 1) as usize;
                r.run(k);
            }
            4..=7 => r.ask(),
            8 => {
                let same = !r.rng.chance(4);
                if !same {
                    interval += 1;
                }
                r.tally.restarts_same_number += usize::from(same);
                r.restart(interval);
            }
            9 => {
                interval += 1;
                r.start(interval);
            }
            10 => {
                // Pending answers go out (or not) now, after whatever happened since.
                let i = if r.rng.chance(2) {
                    r.owner
                } else {
                    (r.rng.next() % N as u64) as usize
                };
                r.answer(i);
            }
            _ => {
                let i = if r.rng.chance(2) {
                    r.owner
                } else {
                    (r.rng.next() % N as u64) as usize
                };
                r.drop_link(i);
            }
        }
        r.check_reveals();
        // Asked while in the middle of things: a few more requests.
        if r.rng.chance(3) {
            r.ask();
        }
    }
    for i in 0..N {
        r.answer(i);
    }
    r.tally
}

/// Regression: a relay restarted within one interval number with a new trap point. The
/// owner lays out its cells for the new point (what it sent decodes), and a request about
/// an exchange it answered under the old point, on grounds under the new one, gets nothing;
/// grounds under the point in force when it answered get the cell it sent, at a bit where
/// it wrote 0.
#[test]
fn a_relay_restarted_within_one_interval_number_learns_nothing_from_blame() {
    let mut r = Restarts::new(7);
    let owner = r.owner;
    r.run(12);
    let old = r.m.trap;
    let before: Vec<_> = r
        .issued
        .iter()
        .filter(|x| x.2 == slot_of(owner))
        .copied()
        .collect();
    assert!(!before.is_empty());
    r.restart(20);
    r.run(12);
    let new = r.m.trap;
    assert_ne!(old, new);
    // The owner's cells after the restart decode under the new point.
    let conn = r.conn.expect("a connection");
    assert!(
        r.m.upstream.iter().any(|(s, _)| *s == slot_of(owner)),
        "nothing of the owner decoded"
    );
    let _ = conn;
    // Old exchanges asked on grounds under the new point: nothing.
    for &(interval, exchange, slot, len, _) in &before {
        let key = wire::TrapKey::owner(
            &secret_of_slot(slot),
            &pad_public_key(&new),
            &GROUP,
            &SESSION,
            interval,
            slot,
        )
        .unwrap();
        let grounds = Restarts::grounds(&new, interval, slot);
        for bit in (0..(len * 8) as u32).filter(|&b| key.is_trap_bit(exchange, len, b)) {
            // Only exchanges the new instance has not issued again are about the old cell.
            if r.issued
                .iter()
                .filter(|x| x.4 == new)
                .any(|x| (x.0, x.1) == (interval, exchange))
            {
                continue;
            }
            let request = frame_body(&Message::BlameRequest {
                interval,
                exchange,
                bit,
                slot,
                grounds: &grounds,
            });
            let handled = r.m.clients[owner]
                .handle_frame(r.m.now, &request, &mut r.m.out)
                .unwrap();
            assert!(handled.cell.is_none());
            assert_eq!(
                r.m.clients[owner].poll_transmit(&mut r.m.out).unwrap(),
                None,
                "{interval}/{exchange} bit {bit}: answered under the new point"
            );
        }
    }
}

/// The search: over many seeds, no request of a restarting, re-announcing relay gets a
/// reveal that shows the owner, misstates a cell, or convicts an honest member.
#[test]
fn a_restarting_relay_searching_with_blame_requests_learns_nothing() {
    let mut total = Tally::default();
    for seed in 0..24 {
        let t = restart_search(seed);
        total.restarts_same_number += t.restarts_same_number;
        total.asks += t.asks;
        total.reveals += t.reveals;
        total.owner_reveals += t.owner_reveals;
        total.left_reveals += t.left_reveals;
        total.refused_other_point += t.refused_other_point;
        total.trustee_reveals += t.trustee_reveals;
    }
    println!("{total:?}");
    // The search reached what it is about.
    assert!(total.restarts_same_number > 10, "{total:?}");
    assert!(total.owner_reveals > 10, "{total:?}");
    assert!(total.left_reveals > 0, "{total:?}");
    assert!(total.trustee_reveals > 0, "{total:?}");
    assert!(total.refused_other_point > 0, "{total:?}");
}
