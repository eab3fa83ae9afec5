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
    /// Blame rounds the relay dropped: interval, exchange.
    pub blame_dropped: Vec<(u32, u64)>,
    /// Blame rounds that ended without every trustee's reveal: (time, interval, exchange,
    /// bitmap of the absent trustees).
    pub blame_incomplete: Vec<(Instant, u32, u64, u16)>,
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
        let slots: Vec<u16> = (0..n).map(|i| ((i * step + 3) % n) as u16).collect();
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
                let mut c = new_client(&cfg, i, client_secrets[i], &trustee_pubs, slots[i]);
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
            without_blame: Vec::new(),
            evidence: Vec::new(),
            excluded: Vec::new(),
            reveals: Vec::new(),
            refuse_blame: Vec::new(),
            dh_requests: Vec::new(),
            dh_proofs: Vec::new(),
            drop_dh_proofs: false,
            garble_reveal: Vec::new(),
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
        self.clients[i] = new_client(&self.cfg, i, session_secret, &trustee_pubs, self.slots[i]);
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
        self.clients[i].prepare(self.now, &mut self.apps[i]);
    }

    /// Makes connection `conn` of client `i` a bulk sender that always has more to send.
    pub fn send_endless(&mut self, i: usize, conn: ConnId) {
        self.apps[i].endless = Some(conn);
        self.clients[i].prepare(self.now, &mut self.apps[i]);
    }

    /// Closes connection `conn` of client `i` once its bytes are sent.
    pub fn close(&mut self, i: usize, conn: ConnId) {
        self.apps[i].closing.push_back(conn);
        self.clients[i].prepare(self.now, &mut self.apps[i]);
    }

    /// Aborts `conn` of client `i` once its queued bytes are sent (its application left).
    pub fn abort(&mut self, i: usize, conn: ConnId) {
        self.apps[i].aborting.push_back(conn);
        self.clients[i].prepare(self.now, &mut self.apps[i]);
    }

    /// Opens a connection at client `i`.
    pub fn open(&mut self, i: usize) -> ConnId {
        // Harness set-up only (never bytes from a network): a failure is a test's mistake.
        let conn = self.clients[i].open().expect("connection capacity");
        self.clients[i].prepare(self.now, &mut self.apps[i]);
        conn
    }

    fn flush_node(&mut self, node: Node) {
        let Some(&link) = self.node_link.get(&node) else {
            return;
        };
        let mut out = core::mem::take(&mut self.out);
        loop {
            let n = match node {
                Node::Client(i) => self.clients[i].poll_transmit(&mut out),
                Node::Trustee(j) => self.trustees[j].poll_transmit(&mut out),
            };
            match n {
                Ok(Some(n)) => self.send(true, link, Rc::from(&out[..n])),
                Ok(None) => break,
                Err(e) => {
                    self.node_errors.push((node, std::format!("{e}")));
                    break;
                }
            }
        }
        self.out = out;
    }

    /// Delivers every event and frame the relay has, like a shell.
    pub fn flush_relay(&mut self) {
        let now = self.now;
        while let Some(ev) = self.relay.poll_event(now) {
            match ev {
                RelayEvent::Upstream { conn, open, data } => {
                    if open {
                        *self.exit.opened.entry(conn).or_default() += 1;
                        self.exit.credit.insert(conn, ExitCredit::new());
                        self.exit.opened_up(conn);
                        self.exit.upstream.entry(conn).or_default();
                    }
                    if let Some(up) = self.exit.upstream.get_mut(&conn) {
                        up.extend_from_slice(data);
                        self.exit.arrived(conn, data.len());
                        if self.exit.echo && !data.is_empty() {
                            self.exit.replies.push_back((conn, Some(data.to_vec())));
                        }
                    }
                }
                RelayEvent::Close { conn } => {
                    self.exit.closed.push(conn);
                    if self.exit.echo {
                        self.exit.replies.push_back((conn, None));
                    }
                }
                RelayEvent::Grant { conn, bytes } => self.exit.grant(conn, bytes),
                RelayEvent::Abort { conn } => {
                    self.exit.aborted.push(conn);
                    self.exit.replies.retain(|(c, _)| *c != conn);
                }
                RelayEvent::Garbled { interval, exchange } => {
                    self.exit.garbled += 1;
                    self.exit.garbled_at.push((interval, exchange));
                }
                RelayEvent::Accused {
                    interval,
                    exchange,
                    bit,
                } => self.exit.accused.push((interval, exchange, bit)),
                RelayEvent::TrapSprung {
                    interval,
                    exchange,
                    slot,
                    bit,
                    sprung,
                } => self
                    .exit
                    .sprung
                    .push((interval, exchange, slot, bit, sprung)),
                RelayEvent::IntervalStarted { interval, .. } => self.intervals.push(interval),
                RelayEvent::Dropped { peer, .. } => self.dropped.push(peer),
                RelayEvent::Penalized {
                    peer,
                    why,
                    back_off,
                } => self.penalties.push((now, peer, why, back_off)),
                RelayEvent::Refused { peer, reason } => self.refused.push((now, peer, reason)),
                RelayEvent::Joined { peer } => self.joins.push((now, peer)),
                RelayEvent::Excluded { peer, reason } => self.excluded.push((now, peer, reason)),
                RelayEvent::BlameStarted { interval, exchange } => {
                    self.blame_started.push((now, interval, exchange))
                }
                RelayEvent::BlameDropped { interval, exchange } => {
                    self.blame_dropped.push((interval, exchange))
                }
                RelayEvent::BlameIncomplete {
                    interval,
                    exchange,
                    absent,
                    ..
                } => self
                    .blame_incomplete
                    .push((now, interval, exchange, absent)),
                RelayEvent::TrusteeWithoutBlame { trustee } => self.without_blame.push(trustee),
                RelayEvent::BlameEnded {
                    interval,
                    exchange,
                    verdict,
                } => {
                    self.blame_ended.push((now, interval, exchange, verdict));
                    if let Some((i, e, bytes)) = self.relay.evidence() {
                        if (i, e) == (interval, exchange) {
                            self.evidence.push(bytes.to_vec());
                        }
                    }
                }
                _ => {}
            }
        }
        let mut out = core::mem::take(&mut self.relay_out);
        let mut slow: Vec<LinkId> = Vec::new();
        loop {
            let t = match self.relay.poll_transmit(now, &mut out, &mut self.exit) {
                Ok(Some(t)) => t,
                Ok(None) => {
                    // Replays wait for room: the shell says how much each link's queue has.
                    if self.give_room() {
                        continue;
                    }
                    break;
                }
                Err(e) => panic!("relay cannot encode a frame: {e}"),
            };
            let frame: Rc<[u8]> = Rc::from(&out[..t.len]);
            if let Ok(Some((body, _))) = wire::split_frame(&frame) {
                if body.first() == Some(&10) {
                    self.replays += 1;
                }
            }
            let mut links = core::mem::take(&mut self.fanout);
            links.extend(self.relay.links(t.destination));
            for &link in &links {
                if self.links.contains_key(&link) {
                    let full = self
                        .cfg
                        .queue_limit
                        .is_some_and(|limit| self.queued.get(&link).copied().unwrap_or(0) >= limit);
                    if full && !t.close_after {
                        // A hosted relay's full send queue: the node is dropped as too slow.
                        if !slow.contains(&link) {
                            slow.push(link);
                        }
                        continue;
                    }
                    // A goodbye reaches the node, then its link closes.
                    self.send_then(false, link, frame.clone(), t.close_after);
                }
            }
            links.clear();
            self.fanout = links;
        }
        self.relay_out = out;
        let dropped = !slow.is_empty();
        for link in slow {
            if let Some(node) = self.node_of(link) {
                self.too_slow.push(node);
                self.relay
                    .drop_peer(now, node.peer(), GoodbyeReason::TooSlow);
            }
        }
        if dropped {
            // Their goodbyes, and whatever the drops changed.
            self.flush_relay();
        }
    }

    /// Reports room on the link a replay waits for; false if there is none to report.
    fn give_room(&mut self) -> bool {
        let Some(link) = self.relay.replay_waiting() else {
            return false;
        };
        let queued = self.queued.get(&link).copied().unwrap_or(0);
        let room = match self.cfg.queue_limit {
            Some(limit) => limit.saturating_sub(queued),
            None => 1 << 20,
        };
        if room == 0 || !self.links.contains_key(&link) {
            return false;
        }
        self.relay.handle_link_room(link, room);
        // Still waiting: the room is what the interval's own frames need.
        self.relay.replay_waiting() != Some(link)
    }

    /// Delivers the next due frame, or advances the clock to the relay's next timeout;
    /// false when nothing can happen any more.
    pub fn step(&mut self) -> bool {
        // Frames of links that closed while they travelled are gone.
        while self
            .wires
            .front()
            .is_some_and(|w| !self.links.contains_key(&w.link))
        {
            let _ = self.wires.pop();
        }
        if let Some(at) = self.wires.front().map(|w| w.at) {
            if let Some(t) = self.relay.poll_timeout().filter(|t| *t < at) {
                // A timeout falls before this frame: handle it first.
                self.now = self.now.max(t);
                self.timeout();
                return true;
            }
            // Harness set-up only (never bytes from a network): a failure is a test's mistake.
            let w = self.wires.pop().expect("the queue has a head");
            if w.at > self.now {
                self.now = w.at;
            }
            self.timeout();
            let Ok(Some((body, _))) = wire::split_frame(&w.frame) else {
                panic!("harness sent a broken frame");
            };
            if w.to_relay {
                self.deliver_to_relay(w.link, body);
            } else {
                if let Some(q) = self.queued.get_mut(&w.link) {
                    *q = q.saturating_sub(1);
                }
                self.deliver_to_node(w.link, body, w.close_after);
                if self.relay.replay_waiting() == Some(w.link) {
                    // Its queue drained a little: the replay goes on.
                    self.flush_relay();
                }
            }
            return true;
        }
        match self.relay.poll_timeout() {
            Some(t) => {
                self.now = self.now.max(t);
                self.timeout();
                true
            }
            None => false,
        }
    }

    fn timeout(&mut self) {
        if let Some(t) = self.relay.poll_timeout() {
            if t <= self.now {
                self.relay.handle_timeout(self.now);
                self.flush_relay();
            }
        }
    }

    fn deliver_to_relay(&mut self, link: LinkId, body: &[u8]) {
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        let node = state.node;
        let peer = node.peer();
        let mut garbled;
        let mut body = body;
        if state.hello_done && body.first() == Some(&BLAME_REVEAL_VARIANT) {
            self.reveals.push(peer);
            if self.refuse_blame.contains(&node) {
                return;
            }
            if self.garble_reveal.contains(&node) {
                garbled = body.to_vec();
                if let Some(b) = garbled.last_mut() {
                    *b ^= 1;
                }
                body = &garbled;
            }
        }
        if body.first() == Some(&BLAME_DH_PROOF_VARIANT) {
            self.dh_proofs.push((node, body.to_vec()));
            if self.drop_dh_proofs || self.refuse_blame.contains(&node) {
                return;
            }
        }
        let state = self.links.get_mut(&link).expect("the link is known");
        if !state.hello_done {
            state.hello_done = true;
            if let Err(e) = self.relay.handle_hello(self.now, link, peer, body) {
                self.relay_errors.push((peer, std::format!("{e}")));
            }
        } else if let Err(e) = self.relay.handle_frame(self.now, link, peer, body) {
            self.relay_errors.push((peer, std::format!("{e}")));
        }
        self.flush_relay();
    }

    fn deliver_to_node(&mut self, link: LinkId, body: &[u8], close_after: bool) {
        let Some(state) = self.links.get(&link) else {
            return;
        };
        let node = state.node;
        if let Some(reason) = wire::goodbye_reason(body) {
            self.goodbyes.push((self.now, node, reason));
        }
        if let Node::Client(i) = node {
            if self.muted[i] {
                // It reads nothing, but a link the relay closes is closed.
                if close_after {
                    self.disconnect(node);
                }
                return;
            }
        }
        if body.first() == Some(&BLAME_DH_REQUEST_VARIANT) {
            self.dh_requests.push((node, body.to_vec()));
        }
        let failed = match node {
            Node::Client(i) => self.deliver_to_client(i, link, body),
            Node::Trustee(j) => self.trustees[j]
                .handle_frame(self.now, body)
                .map_err(|e| std::format!("{e}"))
                .err(),
        };
        if let Some(e) = failed {
            self.node_errors.push((node, e));
            self.disconnect(node);
            return;
        }
        self.flush_node(node);
        if close_after {
            self.disconnect(node);
        }
    }

    fn deliver_to_client(&mut self, i: usize, link: LinkId, body: &[u8]) -> Option<String> {
        self.note_published(i, body);
        let mut out = core::mem::take(&mut self.out);
        let handled = self.clients[i].handle_frame(self.now, body, &mut out);
        let res = match handled {
            Ok(h) => {
                // The cell goes out first, then the delivery.
                if let Some(n) = h.cell {
                    if self.log_cells {
                        let (b, _) = wire::split_frame(&out[..n])
                            .ok()
                            .flatten()
                            .unwrap_or((&[], 0));
                        if let Ok(wire::Message::Cell {
                            interval,
                            exchange,
                            cell,
                        }) = wire::Message::parse(b)
                        {
                            self.cell_log[i].push((interval, exchange, cell.len()));
                        }
                    }
                    let mut frame = out[..n].to_vec();
                    if self.disrupt == Some(i) && self.flip_record_byte(&mut frame) {
                        self.disrupt = None;
                    }
                    self.tamper_cell(i, body, &mut frame);
                    let mut late = self.late.get(i).copied().unwrap_or_default();
                    if self.clients[i].disrupts_slowly() {
                        late = Duration::from_micros(
                            late.as_micros() + self.cfg.slow_delay.as_micros(),
                        );
                    }
                    self.send_late(link, Rc::from(frame), late);
                }
                if let Some(d) = h.delivery {
                    deliver(&mut self.apps[i], d);
                }
                None
            }
            Err(e) => Some(std::format!("{e}")),
        };
        self.out = out;
        while let Some(d) = self.clients[i].poll_replay() {
            deliver(&mut self.apps[i], d);
        }
        self.client_events(i);
        if res.is_none() {
            self.clients[i].prepare(self.now, &mut self.apps[i]);
        }
        res
    }

    /// Flips the first byte of the first record's header in a data-exchange cell frame;
    /// false for any other frame.
    fn flip_record_byte(&self, frame: &mut [u8]) -> bool {
        let reservation = self.cfg.clients.div_ceil(8);
        let at = match wire::split_frame(frame) {
            Ok(Some((body, _))) => match wire::Message::parse(body) {
                Ok(wire::Message::Cell { cell, .. })
                    if cell.len() > reservation.max(wire::NEXT_LEN) =>
                {
                    cell.as_ptr() as usize - frame.as_ptr() as usize + wire::NEXT_LEN
                }
                _ => return false,
            },
            _ => return false,
        };
        frame[at] ^= 0x80;
        true
    }

    fn client_events(&mut self, i: usize) {
        while let Some(e) = self.clients[i].poll_event() {
            match e {
                ClientEvent::Lost { conn } => self.apps[i].lost.push(conn),
                ClientEvent::Disrupted { interval, exchange } => {
                    self.apps[i].disrupted.push((interval, exchange))
                }
                ClientEvent::Blamed {
                    interval,
                    exchange,
                    who,
                    kind,
                } => self.apps[i].blamed.push((interval, exchange, who, kind)),
                _ => {}
            }
        }
    }

    /// Keeps the `Disrupted` frames a tampering client receives, and XORs its mask into
    /// the cell it answers a request with.
    fn tamper_cell(&mut self, i: usize, request: &[u8], frame: &mut [u8]) {
        let slot = self.slots[i];
        let Some(t) = self.tamper.as_mut().filter(|t| t.client == i) else {
            return;
        };
        let Ok(wire::Message::ClientRequest(req)) = wire::Message::parse(request) else {
            return;
        };
        let Ok(Some((body, _))) = wire::split_frame(frame) else {
            return;
        };
        let Ok(wire::Message::Cell { cell, .. }) = wire::Message::parse(body) else {
            return;
        };
        let at = cell.as_ptr() as usize - frame.as_ptr() as usize;
        let len = cell.len();
        let view = TamperView {
            interval: req.interval,
            exchange: req.exchange,
            kind: req.kind,
            own_slot: slot,
            cell,
            published: &t.published,
        };
        let Some(mask) = (t.mask)(&view) else {
            return;
        };
        if mask.iter().all(|&b| b == 0) {
            return;
        }
        t.tampered += 1;
        for (b, m) in frame[at..at + len].iter_mut().zip(mask) {
            *b ^= m;
        }
    }

    fn note_published(&mut self, i: usize, body: &[u8]) {
        if let Some(t) = self.tamper.as_mut().filter(|t| t.client == i) {
            if let Ok(wire::Message::Disrupted { cell, .. }) = wire::Message::parse(body) {
                t.published.push(cell.to_vec());
            }
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
