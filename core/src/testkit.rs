//! A deterministic in-memory DC-net: a relay, N clients and M trustees wired together with a
//! fake clock and per-link latency, no sockets (feature `testkit`).
//!
//! The core's scenario tests and `dissent bench core` both drive this one harness. Frames
//! travel as bytes exactly as on a real link; the harness plays the shell of every role,
//! following each role's documented call order, and an echo exit.
//! [`epoch`] is the same for the epoch setup.
//!
//! Frames in flight wait in one queue in delivery order (arrival time, then send order).
//! Every link has the same latency and the clock never goes back, so a frame sent later
//! never arrives earlier: sending appends and delivering takes the head, each in constant
//! time, and a broadcast is one shared buffer. A frame on a link that has closed is
//! dropped when it reaches the head, without moving the clock, exactly as if it had been
//! removed when the link closed.
//!
//! Its few `expect`s are on the harness's own set-up (a configuration a test got wrong,
//! connections beyond a client's capacity), never on bytes from a network: the harness has
//! none. The role code it drives returns errors instead.

pub mod blame;
mod config;
mod ends;
pub mod epoch;
mod in_flight;
mod pump;

pub use config::{
    client_identity, pseudonym_secret, relay_dh_secret, secret, trustee_identity, NetConfig,
};
use config::{new_client, new_relay, relay_config};
use ends::deliver;
pub use ends::{App, Exit};
use in_flight::{InFlight, Wire};

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::string::String;
use std::vec;
use std::vec::Vec;

use crate::blame::{BlameKind, Culprit};
use crate::client::{Client, ClientEvent};
use crate::credit::ExitCredit;
use crate::crypto::{pad_public_key, IntervalKey, PairKey};
use crate::identity::identity_public_key;
use crate::relay::{Exclusion, LinkId, Peer, PeerId, Relay, RelayEvent, Stall};
use crate::trustee::{Trustee, TrusteeConfig};
use crate::wire::{self, ConnId, GoodbyeReason};
use crate::{Duration, Instant};

/// The first byte of a `BlameReveal` body (postcard's variant index).
const BLAME_REVEAL_VARIANT: u8 = 20;
/// The first byte of a `BlameDhRequest` body.
const BLAME_DH_REQUEST_VARIANT: u8 = 21;
/// The first byte of a `BlameDhProof` body.
const BLAME_DH_PROOF_VARIANT: u8 = 22;

/// Group id of every test net.
pub const GROUP: [u8; 16] = [7; 16];
/// Session id of every test net.
pub const SESSION: [u8; 16] = [8; 16];

/// What a tampering client knows when it answers an exchange.
#[derive(Debug)]
pub struct TamperView<'a> {
    /// The interval.
    pub interval: u32,
    /// The exchange.
    pub exchange: u64,
    /// The exchange's kind (whose slot, how long).
    pub kind: wire::Kind,
    /// The slot of the tampering client.
    pub own_slot: u16,
    /// The cell the client would send (its own ciphertext).
    pub cell: &'a [u8],
    /// Decoded cells the relay published in `Disrupted` frames so far.
    pub published: &'a [Vec<u8>],
}

/// The mask a tampering client XORs into its cell for an exchange.
pub type MaskFn = std::boxed::Box<dyn FnMut(&TamperView<'_>) -> Option<Vec<u8>>>;

/// A client that XORs a mask into its cells.
pub struct Tamper {
    /// The client.
    pub client: usize,
    /// The mask for an exchange (`None` or all zeros: the cell goes out as it is).
    pub mask: MaskFn,
    /// Decoded cells of `Disrupted` frames the client received.
    pub published: Vec<Vec<u8>>,
    /// Cells changed.
    pub tampered: usize,
}

impl core::fmt::Debug for Tamper {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tamper")
            .field("client", &self.client)
            .field("tampered", &self.tampered)
            .finish_non_exhaustive()
    }
}

/// A node of the net.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// Client by index.
    Client(usize),
    /// Trustee by index.
    Trustee(usize),
}

impl Node {
    /// The relay's name for this node.
    pub fn peer(self) -> PeerId {
        match self {
            Node::Client(i) => PeerId::Client(i as u16),
            Node::Trustee(j) => PeerId::Trustee(j as u16),
        }
    }
}

/// A hosted-style trustee with vector storage.
pub type TestTrustee = Trustee<Vec<PairKey>, Vec<IntervalKey>, Vec<u8>>;

struct LinkState {
    node: Node,
    hello_done: bool,
}

/// The whole net.
pub struct Net {
    /// The fake clock.
    pub now: Instant,
    /// The parameters.
    pub cfg: NetConfig,
    /// The relay.
    pub relay: Relay<Vec<Peer>, Vec<u8>>,
    /// The clients.
    pub clients: Vec<Client<Vec<u8>>>,
    /// Their applications.
    pub apps: Vec<App>,
    /// The trustees.
    pub trustees: Vec<TestTrustee>,
    /// The exit.
    pub exit: Exit,
    /// Slot of each client (the harness knows; the relay does not).
    pub slots: Vec<u16>,
    /// Errors the relay reported, by peer.
    pub relay_errors: Vec<(PeerId, String)>,
    /// Errors the nodes reported (each drops its link).
    pub node_errors: Vec<(Node, String)>,
    /// Peers the relay dropped.
    pub dropped: Vec<PeerId>,
    /// Nodes the relay's shell dropped because their queue was full (`queue_limit`).
    pub too_slow: Vec<Node>,
    /// Replay frames the relay sent.
    pub replays: usize,
    /// Intervals started.
    pub intervals: Vec<u32>,
    /// Clients ignoring everything from the relay (but keeping their link).
    pub muted: Vec<bool>,
    /// Cell frames each client sent (interval, exchange, length), for comparing nodes.
    pub cell_log: Vec<Vec<(u32, u64, usize)>>,
    /// Record every cell frame length when set.
    pub log_cells: bool,
    /// A client whose next data-exchange cell (one longer than a reservation field) gets a
    /// byte of its first record's header flipped on the way, garbling that exchange.
    pub disrupt: Option<usize>,
    /// A client whose every cell is XORed with what a function of the exchange returns
    /// (a disruptor that sees what a member sees).
    pub tamper: Option<Tamper>,
    /// How much later than the latency each client's cells arrive (a slow link).
    pub late: Vec<Duration>,
    /// Penalties the relay gave: when, to whom, why and for how long.
    pub penalties: Vec<(Instant, PeerId, Stall, Duration)>,
    /// Hellos the relay refused: when, whose, and the goodbye.
    pub refused: Vec<(Instant, PeerId, GoodbyeReason)>,
    /// Hellos the relay admitted: when and whose.
    pub joins: Vec<(Instant, PeerId)>,
    /// Goodbyes the nodes received: when, who, why.
    pub goodbyes: Vec<(Instant, Node, GoodbyeReason)>,
    /// Blame rounds the relay started: when, interval, exchange.
    pub blame_started: Vec<(Instant, u32, u64)>,
    /// Blame rounds the relay ended: when, interval, exchange, the first verdict.
    pub blame_ended: Vec<(Instant, u32, u64, Verdict)>,
    /// Blame rounds the relay dropped: interval, exchange, why.
    pub blame_dropped: Vec<(u32, u64, crate::relay::BlameDropReason)>,
    /// Blame rounds that ended without every trustee's reveal: (time, interval, exchange,
    /// bitmap of the absent trustees).
    pub blame_incomplete: Vec<(Instant, u32, u64, u16)>,
    /// Blame rounds that parked at their deadline for members away: (time, interval,
    /// exchange, members awaited).
    pub blame_awaiting: Vec<(Instant, u32, u64, u16)>,
    /// Members that came back from a restart while a round waited for their reveal:
    /// (time, interval, exchange, client).
    pub blame_restarted: Vec<(Instant, u32, u64, u16)>,
    /// Parked rounds that gave up early, to park another: (time, interval, exchange,
    /// members it waited for).
    pub blame_gave_up: Vec<(Instant, u32, u64, u16)>,
    /// Client processes restarted ([`Net::restart_client`]).
    pub restarts: u32,
    /// Trustees that joined saying they take no part in blame rounds.
    pub without_blame: Vec<u16>,
    /// The evidence of each ended round that has one.
    pub evidence: Vec<Vec<u8>>,
    /// Nodes (and the exclusions) the relay named in `Excluded` events.
    pub excluded: Vec<(Instant, PeerId, Exclusion)>,
    /// `BlameReveal` frames the relay received, by sender.
    pub reveals: Vec<PeerId>,
    /// Nodes whose blame answers never reach the relay (they refuse blame).
    pub refuse_blame: Vec<Node>,
    /// `BlameDhRequest` bodies delivered to nodes, by receiver.
    pub dh_requests: Vec<(Node, Vec<u8>)>,
    /// `BlameDhProof` bodies nodes sent, by sender (recorded whether or not they reach the
    /// relay).
    pub dh_proofs: Vec<(Node, Vec<u8>)>,
    /// Whether `BlameDhProof` frames are dropped before the relay (a dispute then stays
    /// open until its deadline).
    pub drop_dh_proofs: bool,
    /// Nodes whose `BlameReveal` reaches the relay with its cell's last byte flipped.
    pub garble_reveal: Vec<Node>,
    /// How much later than the latency every `BlameReveal` reaches the relay (a reveal
    /// computed beside the exchanges, which go on meanwhile: a long round).
    pub reveal_late: Duration,
    /// Whether the relay's shell handles every frame that arrived at the same moment
    /// before it polls the relay's events and frames (as a busy hosted relay drains its
    /// links first): exchanges can then be complete but not yet decoded when a frame ends
    /// the interval.
    pub relay_batch: bool,
    links: HashMap<LinkId, LinkState>,
    node_link: HashMap<Node, LinkId>,
    /// Frames from the relay on their way on each link.
    queued: HashMap<LinkId, usize>,
    next_link: u64,
    wires: InFlight,
    seq: u64,
    out: Vec<u8>,
    relay_out: Vec<u8>,
    fanout: Vec<LinkId>,
}

/// The first node a blame round named, and why (`None`: no verdict).
pub type Verdict = Option<(Culprit, BlameKind)>;

/// The public keys of a net's group, for checking its evidence offline.
#[derive(Debug, Clone)]
pub struct NetDirectory {
    clients: usize,
    trustees: usize,
    slots: Vec<u16>,
}

impl crate::blame::Directory for NetDirectory {
    fn client(&self, index: u16) -> Option<crate::blame::MemberKeys> {
        let i = usize::from(index);
        (i < self.clients).then(|| crate::blame::MemberKeys {
            identity: identity_public_key(&client_identity(i)),
            dh: pad_public_key(&secret(1, i)),
        })
    }
    fn trustee(&self, index: u16) -> Option<crate::blame::MemberKeys> {
        let j = usize::from(index);
        (j < self.trustees).then(|| crate::blame::MemberKeys {
            identity: identity_public_key(&trustee_identity(j)),
            dh: pad_public_key(&secret(2, j)),
        })
    }
    fn pseudonym(&self, slot: u16) -> Option<[u8; 32]> {
        let i = self.slots.iter().position(|&s| s == slot)?;
        Some(pad_public_key(&pseudonym_secret(i)))
    }
}

impl Net {
    /// A running group of `clients` clients and two trustees, 256-byte cells up to 1 KiB
    /// and a window of `window`: returned once every client is in the running interval.
    pub fn running_group(clients: usize, window: u16) -> Net {
        let mut cfg = NetConfig::new(clients, 2, 256);
        cfg.max_cell_len = 1024;
        cfg.window = window;
        let mut net = Net::new(cfg);
        net.run_until(400_000, |s| {
            s.relay.interval().is_some_and(|(_, n)| n == clients)
        });
        net
    }

    /// The group's public keys.
    pub fn directory(&self) -> NetDirectory {
        NetDirectory {
            clients: self.cfg.clients,
            trustees: self.cfg.trustees,
            slots: self.slots.clone(),
        }
    }

    /// Sends `body` from the relay to `node` (a relay that says what it likes).
    pub fn relay_says(&mut self, node: Node, body: &[u8]) {
        let Some(link) = self.link_of(node) else {
            return;
        };
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.send_then(false, link, Rc::from(frame), false);
    }

    /// Builds a net and connects every trustee and client.
    pub fn new(cfg: NetConfig) -> Net {
        let mut net = Net::unconnected(cfg);
        net.connect_all();
        net
    }

    /// Connects every trustee, then every client.
    pub fn connect_all(&mut self) {
        for j in 0..self.cfg.trustees {
            self.connect(Node::Trustee(j));
        }
        for i in 0..self.cfg.clients {
            self.connect(Node::Client(i));
        }
    }

    /// Builds a net with nobody connected yet.
    pub fn unconnected(cfg: NetConfig) -> Net {
        let n = cfg.clients;
        let m = cfg.trustees;
        let client_secrets: Vec<_> = (0..n).map(|i| secret(1, i)).collect();
        let trustee_secrets: Vec<_> = (0..m).map(|i| secret(2, i)).collect();
        let client_pubs: Vec<_> = client_secrets.iter().map(pad_public_key).collect();
        let trustee_pubs: Vec<_> = trustee_secrets.iter().map(pad_public_key).collect();
        // Slots in a permuted order, as a shuffled pseudonym list would give.
        let step = (1..n.max(2))
            .find(|s| gcd(*s, n) == 1 && *s > 1)
            .unwrap_or(1);
        let slots: Vec<u16> = (0..n)
            .map(|i| ((i * step + cfg.slot_shift) % n) as u16)
            .collect();
        let relay = new_relay(&cfg, &slots, 100);
        let relay_frame_len = relay_config(&cfg, 100).max_frame_len();
        // Every slot's pseudonym public key, in slot order.
        let mut pseudonyms = vec![0u8; n * 32];
        for (i, &slot) in slots.iter().enumerate() {
            let at = usize::from(slot) * 32;
            pseudonyms[at..at + 32].copy_from_slice(&pad_public_key(&pseudonym_secret(i)));
        }
        let identity = |s: [u8; 32]| crate::identity::IdentityKey::from_bytes(&s).public();
        let client_ids: Vec<[u8; 32]> = (0..n).map(|i| identity(client_identity(i))).collect();
        let trustee_ids: Vec<[u8; 32]> = (0..m).map(|j| identity(trustee_identity(j))).collect();
        let clients = (0..n)
            .map(|i| {
                let seed = secret(4, i);
                let mut c = new_client(&cfg, i, client_secrets[i], &trustee_pubs, slots[i], seed);
                c.set_blame_keys(
                    &client_identity(i),
                    &client_secrets[i],
                    &trustee_pubs,
                    &trustee_ids,
                    pseudonyms.clone(),
                )
                .expect("blame keys");
                c
            })
            .collect();
        let trustees = (0..m)
            .map(|j| {
                let t = TrusteeConfig {
                    index: j as u16,
                    trustees: m as u16,
                    group_id: GROUP,
                    session_id: SESSION,
                    session_secret: trustee_secrets[j],
                    client_keys: &client_pubs,
                    slots: n as u16,
                    cell_len: cfg.cell_len,
                    max_reserved: cfg.capacity,
                    max_frame: cfg.max_frame,
                    rng_seed: secret(3, j),
                    min_clients: cfg.min_clients,
                    policy: cfg.policy,
                };
                // Harness set-up only (never bytes from a network): a failure is a test's mistake.
                let mut trustee = Trustee::with_vecs(&t).expect("trustee configuration");
                let mut keys: Vec<u8> = client_pubs.iter().flatten().copied().collect();
                keys.extend_from_slice(&pseudonyms);
                keys.extend(client_ids.iter().flatten());
                trustee
                    .set_blame_keys(&trustee_identity(j), &trustee_secrets[j], keys)
                    .expect("blame keys");
                trustee
            })
            .collect();
        Net {
            now: Instant::from_micros(1_000_000),
            cfg,
            relay,
            clients,
            apps: (0..n).map(|_| App::default()).collect(),
            trustees,
            exit: Exit {
                echo: true,
                ..Exit::default()
            },
            slots,
            relay_errors: Vec::new(),
            node_errors: Vec::new(),
            dropped: Vec::new(),
            too_slow: Vec::new(),
            replays: 0,
            intervals: Vec::new(),
            muted: vec![false; n],
            cell_log: vec![Vec::new(); n],
            log_cells: false,
            disrupt: None,
            tamper: None,
            late: vec![Duration::default(); n],
            penalties: Vec::new(),
            refused: Vec::new(),
            joins: Vec::new(),
            goodbyes: Vec::new(),
            blame_started: Vec::new(),
            blame_ended: Vec::new(),
            blame_dropped: Vec::new(),
            blame_incomplete: Vec::new(),
            blame_awaiting: Vec::new(),
            blame_restarted: Vec::new(),
            blame_gave_up: Vec::new(),
            restarts: 0,
            without_blame: Vec::new(),
            evidence: Vec::new(),
            excluded: Vec::new(),
            reveals: Vec::new(),
            refuse_blame: Vec::new(),
            dh_requests: Vec::new(),
            dh_proofs: Vec::new(),
            drop_dh_proofs: false,
            garble_reveal: Vec::new(),
            reveal_late: Duration::default(),
            relay_batch: false,
            links: HashMap::new(),
            node_link: HashMap::new(),
            queued: HashMap::new(),
            next_link: 0,
            wires: InFlight::default(),
            seq: 0,
            out: vec![0u8; cfg.max_frame as usize + 64],
            relay_out: vec![0u8; relay_frame_len],
            fanout: Vec::new(),
        }
    }

    /// Replaces client `i` (before it connects) with one holding another session key, which
    /// no trustee knows: its proofs and acknowledgements do not check.
    pub fn rekey_client(&mut self, i: usize, session_secret: [u8; 32]) {
        let trustee_pubs: Vec<_> = (0..self.cfg.trustees)
            .map(|j| pad_public_key(&secret(2, j)))
            .collect();
        let seed = secret(4, i);
        self.clients[i] = new_client(
            &self.cfg,
            i,
            session_secret,
            &trustee_pubs,
            self.slots[i],
            seed,
        );
    }

    /// Client `i`'s process restarts: its link is cut (if up) and it comes back as a new
    /// process with the same keys and nothing else (no interval, no cells kept, no
    /// connections: its application starts afresh too). Call [`Net::connect`] to bring it
    /// back.
    pub fn restart_client(&mut self, i: usize) {
        self.disconnect(Node::Client(i));
        self.restarts += 1;
        let n = self.cfg.clients;
        let trustee_pubs: Vec<_> = (0..self.cfg.trustees)
            .map(|j| pad_public_key(&secret(2, j)))
            .collect();
        let mut pseudonyms = vec![0u8; n * 32];
        for (c, &slot) in self.slots.iter().enumerate() {
            let at = usize::from(slot) * 32;
            pseudonyms[at..at + 32].copy_from_slice(&pad_public_key(&pseudonym_secret(c)));
        }
        let identity = |s: [u8; 32]| crate::identity::IdentityKey::from_bytes(&s).public();
        let trustee_ids: Vec<[u8; 32]> = (0..self.cfg.trustees)
            .map(|j| identity(trustee_identity(j)))
            .collect();
        // Another seed: a new process draws new link nonces.
        let mut seed = secret(4, i);
        seed[31] ^= self.restarts as u8;
        seed[30] ^= (self.restarts >> 8) as u8;
        let mut c = new_client(
            &self.cfg,
            i,
            secret(1, i),
            &trustee_pubs,
            self.slots[i],
            seed,
        );
        c.set_blame_keys(
            &client_identity(i),
            &secret(1, i),
            &trustee_pubs,
            &trustee_ids,
            pseudonyms,
        )
        .expect("blame keys");
        self.clients[i] = c;
        self.apps[i] = App::default();
    }

    /// The relay restarts: every link is cut (every node notices; frames in flight are
    /// lost), a new relay instance `epoch` (its own trap secrets) starts at interval
    /// `first`, and every trustee and client connects to it again.
    pub fn restart_relay(&mut self, epoch: [u8; 16], first: u32) {
        let nodes: Vec<Node> = self.node_link.keys().copied().collect();
        for node in nodes {
            let Some(link) = self.node_link.remove(&node) else {
                continue;
            };
            self.links.remove(&link);
            self.queued.remove(&link);
            match node {
                Node::Client(i) => {
                    self.clients[i].handle_disconnected(self.now);
                    self.client_events(i);
                }
                Node::Trustee(j) => self.trustees[j].handle_disconnected(self.now),
            }
        }
        self.cfg.epoch = epoch;
        self.relay = new_relay(&self.cfg, &self.slots, first);
        self.connect_all();
    }

    /// Whether `node` has a link up.
    pub fn is_up(&self, node: Node) -> bool {
        self.node_link.contains_key(&node)
    }

    /// Opens a link for `node` (its Hello goes out).
    pub fn connect(&mut self, node: Node) {
        self.next_link += 1;
        let link = LinkId(self.next_link);
        self.links.insert(
            link,
            LinkState {
                node,
                hello_done: false,
            },
        );
        self.node_link.insert(node, link);
        match node {
            Node::Client(i) => self.clients[i].handle_connected(self.now),
            Node::Trustee(j) => self.trustees[j].handle_connected(self.now),
        }
        self.flush_node(node);
    }

    /// Cuts `node`'s link; both ends notice.
    pub fn disconnect(&mut self, node: Node) {
        let Some(link) = self.node_link.remove(&node) else {
            return;
        };
        self.links.remove(&link);
        self.queued.remove(&link);
        match node {
            Node::Client(i) => {
                self.clients[i].handle_disconnected(self.now);
                self.client_events(i);
            }
            Node::Trustee(j) => self.trustees[j].handle_disconnected(self.now),
        }
        // Frames in flight on that link are gone: `step` drops them (the link id is never
        // used again).
        self.relay.handle_link_closed(self.now, link, node.peer());
        self.flush_relay();
    }

    fn send(&mut self, to_relay: bool, link: LinkId, frame: Rc<[u8]>) {
        self.send_then(to_relay, link, frame, false);
    }

    /// A frame to the relay that arrives `late` after the latency.
    fn send_late(&mut self, link: LinkId, frame: Rc<[u8]>, late: Duration) {
        self.seq += 1;
        self.wires.push(Wire {
            at: self.now + self.cfg.latency + late,
            seq: self.seq,
            to_relay: true,
            link,
            frame,
            close_after: false,
        });
    }

    fn send_then(&mut self, to_relay: bool, link: LinkId, frame: Rc<[u8]>, close_after: bool) {
        self.seq += 1;
        if !to_relay {
            *self.queued.entry(link).or_default() += 1;
        }
        self.wires.push(Wire {
            at: self.now + self.cfg.latency,
            seq: self.seq,
            to_relay,
            link,
            frame,
            close_after,
        });
    }

    /// Queues bytes on connection `conn` of client `i`.
    pub fn send_bytes(&mut self, i: usize, conn: ConnId, data: Vec<u8>) {
        self.apps[i].pending.push_back((conn, data));
        self.offer(i);
    }

    /// Makes connection `conn` of client `i` a bulk sender that always has more to send.
    pub fn send_endless(&mut self, i: usize, conn: ConnId) {
        self.apps[i].endless = Some(conn);
        self.offer(i);
    }

    /// Opens a connection on each of clients `0..owners` and queues `len(i)` bytes of
    /// `pattern(seed * 13 + i, ..)` on client `i`'s: what each sent, by connection (for
    /// [`Net::delivered`] and [`Net::assert_delivered`]).
    pub fn send_patterns(
        &mut self,
        owners: usize,
        seed: usize,
        mut len: impl FnMut(usize) -> usize,
    ) -> BTreeMap<ConnId, (usize, Vec<u8>)> {
        let mut expect = BTreeMap::new();
        for i in 0..owners {
            let conn = self.open(i);
            let data = pattern(seed * 13 + i, len(i));
            self.send_bytes(i, conn, data.clone());
            expect.insert(conn, (i, data));
        }
        expect
    }

    /// Whether as many bytes as `expect` holds (connection → its client and the bytes it
    /// sent) reached the exit and came back to the client, on every connection.
    pub fn delivered(&self, expect: &BTreeMap<ConnId, (usize, Vec<u8>)>) -> bool {
        expect.iter().all(|(c, (i, d))| {
            self.exit.upstream.get(c).map_or(0, Vec::len) >= d.len()
                && self
                    .apps
                    .get(*i)
                    .and_then(|a| a.received.get(c))
                    .map_or(0, Vec::len)
                    >= d.len()
        })
    }

    /// Panics, naming `what`, unless every byte of `expect` arrived once and in order at the
    /// exit and back at its client, each connection was opened once at the exit, and no
    /// client lost a connection.
    pub fn assert_delivered(&self, expect: &BTreeMap<ConnId, (usize, Vec<u8>)>, what: &str) {
        for (c, (i, d)) in expect {
            let up = self.exit.upstream.get(c).map_or(&[][..], Vec::as_slice);
            let down = self
                .apps
                .get(*i)
                .and_then(|a| a.received.get(c))
                .map_or(&[][..], Vec::as_slice);
            assert!(
                up == &d[..],
                "{what}: client {i}: {} of {} at the exit",
                up.len(),
                d.len()
            );
            assert!(
                down == &d[..],
                "{what}: client {i}: {} of {} back",
                down.len(),
                d.len()
            );
            assert_eq!(self.exit.opened.get(c), Some(&1), "{what}");
        }
        for app in &self.apps {
            assert!(app.lost.is_empty(), "{what}: {:?}", app.lost);
        }
    }

    /// Closes connection `conn` of client `i` once its bytes are sent.
    pub fn close(&mut self, i: usize, conn: ConnId) {
        self.apps[i].closing.push_back(conn);
        self.offer(i);
    }

    /// Aborts `conn` of client `i` once its queued bytes are sent (its application left).
    pub fn abort(&mut self, i: usize, conn: ConnId) {
        self.apps[i].aborting.push_back(conn);
        self.offer(i);
    }

    /// Opens a connection at client `i`.
    pub fn open(&mut self, i: usize) -> ConnId {
        // Harness set-up only (never bytes from a network): a failure is a test's mistake.
        let conn = self.clients[i].open().expect("connection capacity");
        self.offer(i);
        conn
    }

    /// Client `i`'s application has something new for it: as a shell does, it is
    /// prepared at once only if the client wants it now ([`Client::wants_upstream`]);
    /// otherwise the preparation after the client's next cell takes it.
    fn offer(&mut self, i: usize) {
        if self.clients[i].wants_upstream() {
            self.clients[i].prepare(self.now, &mut self.apps[i]);
        }
    }

    /// Runs until `done` holds, failing after `max_steps`.
    pub fn run_until(&mut self, max_steps: usize, mut done: impl FnMut(&Net) -> bool) {
        for _ in 0..max_steps {
            if done(self) {
                return;
            }
            assert!(
                self.step(),
                "simulation stalled: {:?} relay errors {:?} node errors {:?} dropped {:?}",
                self.relay,
                self.relay_errors,
                self.node_errors,
                self.dropped
            );
        }
        panic!("condition not reached in {max_steps} steps");
    }

    /// Runs `steps` steps (or until nothing can happen).
    pub fn run_steps(&mut self, steps: usize) {
        for _ in 0..steps {
            if !self.step() {
                return;
            }
        }
    }

    /// Whether every connection in `expect` delivered exactly its bytes to the exit.
    pub fn all_delivered(&self, expect: &BTreeMap<ConnId, Vec<u8>>) -> bool {
        expect
            .iter()
            .all(|(c, d)| self.exit.upstream.get(c).map(|v| v.len()) == Some(d.len()))
    }

    /// The node that holds `link`, if it is up.
    pub fn node_of(&self, link: LinkId) -> Option<Node> {
        self.links.get(&link).map(|l| l.node)
    }

    /// The current link of `node`.
    pub fn link_of(&self, node: Node) -> Option<LinkId> {
        self.node_link.get(&node).copied()
    }

    /// Frames in flight to or from `node`'s link, as bodies.
    pub fn in_flight(&self, node: Node) -> Vec<(bool, Vec<u8>)> {
        let Some(link) = self.link_of(node) else {
            return Vec::new();
        };
        self.wires
            .iter()
            .filter(|w| w.link == link)
            .filter_map(|w| {
                let (b, _) = wire::split_frame(&w.frame).ok().flatten()?;
                Some((w.to_relay, b.to_vec()))
            })
            .collect()
    }
}

/// The body of `msg`'s frame (the bytes after the frame header), as a node hands it to
/// its role.
pub fn frame_body(msg: &crate::wire::Message<'_>) -> Vec<u8> {
    let mut out = vec![0u8; msg.frame_len()];
    // Harness set-up only (never bytes from a network): a failure is a test's mistake.
    let n = msg.emit_frame(&mut out).expect("the test's frames fit");
    out[crate::wire::FRAME_HEADER_LEN..n].to_vec()
}

/// `len` deterministic bytes in which no short run repeats (xorshift64), different per
/// `seed`: a piece delivered out of place cannot pass for another.
pub fn pattern(seed: usize, len: usize) -> Vec<u8> {
    let mut x = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
