//! Deterministic in-memory network: a relay, N clients and M trustees wired together with
//! a fake clock and per-link latency, no sockets. Every protocol behaviour that does not
//! need real I/O is tested here.

use std::collections::{BTreeMap, VecDeque};

use dissent_core::client::{Chunk, Client, ClientConfig, ClientEvent, ConnId, Upstream};
use dissent_core::crypto::public_key;
use dissent_core::relay::{
    Destination, Downstream, PeerError, PeerId, Relay, RelayConfig, RelayEvent,
};
use dissent_core::trustee::{Trustee, TrusteeConfig};
use dissent_core::wire::{self, Message};
use dissent_core::{Duration, Instant};

const GROUP: [u8; 16] = [7; 16];
const SESSION: [u8; 16] = [8; 16];

fn secret(tag: u8, i: usize) -> [u8; 32] {
    let mut s = [0u8; 32];
    for (k, b) in s.iter_mut().enumerate() {
        *b = tag ^ (i as u8).wrapping_mul(31) ^ (k as u8).wrapping_mul(17) ^ 0x5a;
    }
    s
}

/// Application side of one client: bytes waiting per connection.
#[derive(Default)]
struct App {
    pending: VecDeque<(ConnId, Vec<u8>)>,
    closing: VecDeque<ConnId>,
    received: BTreeMap<ConnId, Vec<u8>>,
    closed: Vec<ConnId>,
    lost: Vec<ConnId>,
}

impl Upstream for App {
    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<Chunk> {
        if let Some((conn, mut data)) = self.pending.pop_front() {
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            if n < data.len() {
                data.drain(..n);
                self.pending.push_front((conn, data));
            }
            return Some(Chunk::Data { conn, len: n });
        }
        self.closing.pop_front().map(|conn| Chunk::Close { conn })
    }
}

/// Exit side of the relay: an echo server.
#[derive(Default)]
struct Exit {
    upstream: BTreeMap<u32, Vec<u8>>,
    opened: BTreeMap<u32, usize>,
    closed: Vec<u32>,
    replies: VecDeque<(u32, Vec<u8>)>,
    echo: bool,
    garbled: usize,
}

impl Downstream for Exit {
    fn has_data(&self) -> bool {
        !self.replies.is_empty()
    }
    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<(u32, usize)> {
        let (conn, mut data) = self.replies.pop_front()?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        if n < data.len() {
            data.drain(..n);
            self.replies.push_front((conn, data));
        }
        Some((conn, n))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Client(usize),
    Trustee(usize),
}

struct Sim {
    now: Instant,
    latency: Duration,
    relay: Relay<Vec<u8>>,
    clients: Vec<Client<Vec<u8>>>,
    apps: Vec<App>,
    trustees: Vec<Trustee>,
    up: Vec<bool>,
    trustee_up: Vec<bool>,
    /// In-flight frames: (arrival, from, to-relay?, node, frame).
    wires: VecDeque<(Instant, bool, Node, Vec<u8>)>,
    exit: Exit,
    relay_errors: Vec<(PeerId, PeerError)>,
    evicted: Vec<PeerId>,
    evicted_log: Vec<PeerId>,
    muted: Vec<bool>,
    intervals: Vec<u32>,
    /// Slot of each client (the harness knows; the relay does not).
    slots: Vec<u16>,
}

impl Sim {
    fn new(n: usize, m: usize, cell_len: usize) -> Sim {
        let client_secrets: Vec<_> = (0..n).map(|i| secret(1, i)).collect();
        let trustee_secrets: Vec<_> = (0..m).map(|i| secret(2, i)).collect();
        let client_pubs: Vec<_> = client_secrets.iter().map(public_key).collect();
        let trustee_pubs: Vec<_> = trustee_secrets.iter().map(public_key).collect();
        // Slots in a permuted order, as a shuffled pseudonym list would give.
        let slots: Vec<u16> = (0..n).map(|i| ((i * 7 + 3) % n) as u16).collect();
        let cfg = RelayConfig {
            group_id: GROUP,
            session_id: SESSION,
            clients: n as u16,
            trustees: m as u16,
            slots: n as u16,
            cell_len,
            client_window: 3,
            trustee_window: 8,
            downstream_len: 4096,
            min_clients: 1,
            idle_gap: Duration::from_millis(1),
            exchange_timeout: Duration::from_millis(500),
            first_interval: 100,
        };
        let relay = Relay::new(cfg, vec![0u8; cfg.storage_len()]).unwrap();
        let clients = (0..n)
            .map(|i| {
                Client::new(
                    &ClientConfig {
                        index: i as u16,
                        group_id: GROUP,
                        session_id: SESSION,
                        session_secret: client_secrets[i],
                        trustee_keys: &trustee_pubs,
                        slot: slots[i],
                        slots: n as u16,
                        cell_len,
                        rng_seed: secret(4, i),
                    },
                    vec![0u8; cell_len * 4],
                )
                .unwrap()
            })
            .collect();
        let trustees = (0..m)
            .map(|j| {
                Trustee::new(&TrusteeConfig {
                    index: j as u16,
                    group_id: GROUP,
                    session_id: SESSION,
                    session_secret: trustee_secrets[j],
                    client_keys: &client_pubs,
                    cell_len,
                    rng_seed: secret(3, j),
                    min_clients: 1,
                })
                .unwrap()
            })
            .collect();
        let mut sim = Sim {
            now: Instant::from_micros(1_000_000),
            latency: Duration::from_micros(200),
            relay,
            clients,
            apps: (0..n).map(|_| App::default()).collect(),
            trustees,
            up: vec![false; n],
            trustee_up: vec![false; m],
            wires: VecDeque::new(),
            exit: Exit {
                echo: true,
                ..Exit::default()
            },
            relay_errors: Vec::new(),
            evicted: Vec::new(),
            evicted_log: Vec::new(),
            muted: vec![false; n],
            intervals: Vec::new(),
            slots,
        };
        for j in 0..m {
            sim.connect(Node::Trustee(j));
        }
        for i in 0..n {
            sim.connect(Node::Client(i));
        }
        sim
    }

    fn connect(&mut self, node: Node) {
        match node {
            Node::Client(i) => {
                self.up[i] = true;
                self.clients[i].handle_connected(self.now);
            }
            Node::Trustee(j) => {
                self.trustee_up[j] = true;
                self.trustees[j].handle_connected(self.now);
            }
        }
        self.flush_node(node);
    }

    fn disconnect(&mut self, node: Node) {
        let peer = match node {
            Node::Client(i) => {
                self.up[i] = false;
                self.clients[i].handle_disconnected(self.now);
                self.client_events(i);
                PeerId::Client(i as u16)
            }
            Node::Trustee(j) => {
                self.trustee_up[j] = false;
                self.trustees[j].handle_disconnected(self.now);
                PeerId::Trustee(j as u16)
            }
        };
        // Frames in flight on that link are gone.
        self.wires.retain(|(_, _, n, _)| *n != node);
        self.relay.handle_disconnected(self.now, peer);
        self.flush_relay();
    }

    fn node_up(&self, node: Node) -> bool {
        match node {
            Node::Client(i) => self.up[i],
            Node::Trustee(j) => self.trustee_up[j],
        }
    }

    fn send(&mut self, to_relay: bool, node: Node, frame: Vec<u8>) {
        self.wires
            .push_back((self.now + self.latency, to_relay, node, frame));
    }

    fn flush_node(&mut self, node: Node) {
        let mut out = vec![0u8; 70_000];
        loop {
            let n = match node {
                Node::Client(i) => self.clients[i]
                    .poll_transmit(&mut out, &mut self.apps[i])
                    .unwrap(),
                Node::Trustee(j) => self.trustees[j].poll_transmit(&mut out).unwrap(),
            };
            let Some(n) = n else { break };
            self.send(true, node, out[..n].to_vec());
        }
    }

    fn flush_relay(&mut self) {
        while let Some(ev) = self.relay.poll_event(self.now) {
            match ev {
                RelayEvent::Upstream { conn, open, data } => {
                    if open {
                        *self.exit.opened.entry(conn).or_default() += 1;
                    }
                    // Every connection's first cell opens it.
                    assert!(self.exit.opened.contains_key(&conn), "data before open");
                    self.exit
                        .upstream
                        .entry(conn)
                        .or_default()
                        .extend_from_slice(data);
                    if self.exit.echo && !data.is_empty() {
                        self.exit.replies.push_back((conn, data.to_vec()));
                    }
                }
                RelayEvent::Close { conn } => {
                    self.exit.closed.push(conn);
                    if self.exit.echo {
                        self.exit.replies.push_back((conn, Vec::new()));
                    }
                }
                RelayEvent::Garbled { .. } => self.exit.garbled += 1,
                RelayEvent::IntervalStarted { interval, .. } => self.intervals.push(interval),
                RelayEvent::Evict { peer } => self.evicted.push(peer),
                _ => {}
            }
        }
        let mut out = vec![0u8; 70_000];
        while let Some(t) = self
            .relay
            .poll_transmit(self.now, &mut out, &mut self.exit)
            .unwrap()
        {
            let frame = out[..t.len].to_vec();
            match t.destination {
                Destination::Trustees => {
                    for j in 0..self.trustees.len() {
                        if self.trustee_up[j] {
                            self.send(false, Node::Trustee(j), frame.clone());
                        }
                    }
                }
                Destination::Clients(set) => {
                    for i in set.iter() {
                        if self.up[i] {
                            self.send(false, Node::Client(i), frame.clone());
                        }
                    }
                }
            }
        }
        // Evicted peers are dropped by the shell.
        for peer in std::mem::take(&mut self.evicted) {
            let node = match peer {
                PeerId::Client(i) => Node::Client(usize::from(i)),
                PeerId::Trustee(j) => Node::Trustee(usize::from(j)),
            };
            if self.node_up(node) {
                self.evicted_log.push(peer);
                self.disconnect(node);
            }
        }
    }

    /// Delivers one due frame, or advances the clock; false when nothing can happen.
    fn step(&mut self) -> bool {
        if let Some(pos) = self
            .wires
            .iter()
            .enumerate()
            .min_by_key(|(k, w)| (w.0, *k))
            .map(|(k, _)| k)
        {
            let (at, to_relay, node, frame) = self.wires.remove(pos).unwrap();
            if at > self.now {
                self.now = at;
                self.timeout();
            }
            let (body, _) = wire::split_frame(&frame).unwrap().unwrap();
            if to_relay {
                self.deliver_to_relay(node, body.to_vec());
            } else {
                self.deliver_to_node(node, body.to_vec());
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

    fn deliver_to_relay(&mut self, node: Node, body: Vec<u8>) {
        let peer = match node {
            Node::Client(i) => PeerId::Client(i as u16),
            Node::Trustee(j) => PeerId::Trustee(j as u16),
        };
        if matches!(Message::parse(&body), Ok(Message::Hello { .. })) {
            assert_eq!(self.relay.handle_hello(self.now, &body).unwrap(), peer);
        } else if let Err(e) = self.relay.handle_frame(self.now, peer, &body) {
            self.relay_errors.push((peer, e));
            self.disconnect(node);
        }
        self.flush_relay();
    }

    fn client_events(&mut self, i: usize) {
        while let Some(e) = self.clients[i].poll_event() {
            if let ClientEvent::Lost { conn } = e {
                self.apps[i].lost.push(conn);
            }
        }
    }

    fn mute(&mut self, i: usize) {
        self.muted[i] = true;
    }

    fn deliver_to_node(&mut self, node: Node, body: Vec<u8>) {
        if let Node::Client(i) = node {
            if self.muted[i] {
                return;
            }
        }
        match node {
            Node::Client(i) => {
                if let Some(d) = self.clients[i].handle_frame(self.now, &body).unwrap() {
                    if d.data.is_empty() {
                        self.apps[i].closed.push(d.conn);
                    } else {
                        self.apps[i]
                            .received
                            .entry(d.conn)
                            .or_default()
                            .extend_from_slice(d.data);
                    }
                }
                self.client_events(i);
            }
            Node::Trustee(j) => self.trustees[j].handle_frame(self.now, &body).unwrap(),
        }
        self.flush_node(node);
    }

    /// Runs until `done` holds, failing after `max_steps`.
    fn run_until(&mut self, max_steps: usize, mut done: impl FnMut(&Sim) -> bool) {
        for _ in 0..max_steps {
            if done(self) {
                return;
            }
            assert!(self.step(), "simulation stalled");
        }
        panic!("condition not reached in {max_steps} steps");
    }

    fn all_delivered(&self, expect: &BTreeMap<u32, Vec<u8>>) -> bool {
        expect
            .iter()
            .all(|(c, d)| self.exit.upstream.get(c).map(|v| v.len()) == Some(d.len()))
    }
}

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (k * 131 + seed * 7 + k / 251) as u8)
        .collect()
}

/// Opens one connection per client and queues `len` bytes on each.
fn load(sim: &mut Sim, len: usize) -> BTreeMap<u32, Vec<u8>> {
    let mut expect = BTreeMap::new();
    for i in 0..sim.clients.len() {
        let conn = sim.clients[i].open().unwrap();
        assert_eq!(conn >> 16, u32::from(sim.slots[i]) + 1);
        let data = pattern(i, len);
        sim.apps[i].pending.push_back((conn, data.clone()));
        expect.insert(conn, data);
    }
    expect
}

#[test]
fn every_slot_decodes_exactly_and_replies_reach_only_the_owner() {
    for &(n, m, cell) in &[(1usize, 1usize, 64usize), (3, 2, 128), (5, 3, 1024)] {
        let mut sim = Sim::new(n, m, cell);
        let expect = load(&mut sim, 5000);
        sim.run_until(200_000, |s| {
            s.all_delivered(&expect)
                && expect.keys().all(|c| {
                    s.apps
                        .iter()
                        .any(|a| a.received.get(c).map(|v| v.len()) == Some(5000))
                })
        });
        assert_eq!(sim.exit.upstream, expect, "n={n} m={m}");
        assert!(sim.exit.opened.values().all(|&n| n == 1));
        assert_eq!(sim.exit.garbled, 0);
        assert!(sim.relay_errors.is_empty());
        for (i, app) in sim.apps.iter().enumerate() {
            // Each client got back exactly its own connection's bytes and nobody else's.
            assert_eq!(app.received.len(), 1, "client {i}");
            let (conn, data) = app.received.iter().next().unwrap();
            assert_eq!(data, &expect[conn]);
        }
    }
}

#[test]
fn closes_travel_both_ways() {
    let mut sim = Sim::new(3, 2, 64);
    let conn = sim.clients[1].open().unwrap();
    sim.apps[1].pending.push_back((conn, b"bye".to_vec()));
    sim.apps[1].closing.push_back(conn);
    // The echo exit answers a close with a close, after echoing everything.
    sim.run_until(100_000, |s| s.apps[1].closed.contains(&conn));
    assert_eq!(sim.exit.upstream[&conn], b"bye");
    assert_eq!(sim.apps[1].received[&conn], b"bye");
    assert_eq!(sim.exit.opened[&conn], 1);
    assert!(!sim.clients[1].is_open(conn));
    let other = sim.clients[2].open().unwrap();
    sim.exit.replies.push_back((other, Vec::new()));
    sim.run_until(100_000, |s| s.apps[2].closed.contains(&other));
    assert!(!sim.clients[2].is_open(other));
}

#[test]
fn a_half_closed_connection_still_gets_its_replies() {
    let mut sim = Sim::new(2, 1, 64);
    sim.exit.echo = false;
    let conn = sim.clients[0].open().unwrap();
    sim.apps[0].pending.push_back((conn, b"request".to_vec()));
    sim.apps[0].closing.push_back(conn);
    sim.run_until(100_000, |s| s.exit.closed.contains(&conn));
    // The exit answers only after the client finished sending.
    assert!(sim.clients[0].is_open(conn));
    let reply = pattern(3, 5000);
    sim.exit.replies.push_back((conn, reply.clone()));
    sim.exit.replies.push_back((conn, Vec::new()));
    sim.run_until(100_000, |s| s.apps[0].closed.contains(&conn));
    assert_eq!(sim.apps[0].received[&conn], reply);
    assert!(!sim.clients[0].is_open(conn));
}

#[test]
fn a_connection_without_data_is_still_opened() {
    let mut sim = Sim::new(2, 1, 64);
    let conn = sim.clients[1].open().unwrap();
    sim.run_until(100_000, |s| s.exit.opened.contains_key(&conn));
    assert_eq!(sim.exit.upstream[&conn], b"");
    // A server that speaks first reaches it.
    sim.exit.replies.push_back((conn, b"220 hello".to_vec()));
    sim.run_until(100_000, |s| s.apps[1].received.contains_key(&conn));
    assert_eq!(sim.apps[1].received[&conn], b"220 hello");
}

#[test]
fn a_client_leaving_loses_nothing_for_anyone() {
    let mut sim = Sim::new(4, 2, 128);
    let expect = load(&mut sim, 20_000);
    // Let data start flowing, then kill client 2's link mid-transfer.
    sim.run_until(100_000, |s| {
        s.exit.upstream.values().map(Vec::len).sum::<usize>() > 8000
    });
    let before = sim.intervals.len();
    sim.disconnect(Node::Client(2));
    let others: BTreeMap<_, _> = expect
        .iter()
        .filter(|(c, _)| **c >> 16 != u32::from(sim.slots[2]) + 1)
        .map(|(c, d)| (*c, d.clone()))
        .collect();
    sim.run_until(400_000, |s| s.all_delivered(&others));
    assert!(
        sim.intervals.len() > before,
        "a new interval excluded the client"
    );
    for (c, d) in &others {
        assert_eq!(&sim.exit.upstream[c], d);
    }
    // Its own connection may have missed downstream bytes while it was away, so it is
    // closed: the exit got an exact prefix of what was sent, then the close.
    let mine = *expect
        .keys()
        .find(|c| **c >> 16 == u32::from(sim.slots[2]) + 1)
        .unwrap();
    assert_eq!(sim.apps[2].lost, vec![mine]);
    sim.connect(Node::Client(2));
    sim.run_until(400_000, |s| s.exit.closed.contains(&mine));
    let got = sim.exit.upstream.get(&mine).cloned().unwrap_or_default();
    assert_eq!(&expect[&mine][..got.len()], &got[..]);
    // A new connection after rejoining works end to end.
    let fresh = sim.clients[2].open().unwrap();
    let data = pattern(9, 3000);
    sim.apps[2].pending.push_back((fresh, data.clone()));
    sim.run_until(400_000, |s| {
        s.apps[2].received.get(&fresh).map(Vec::len) == Some(data.len())
    });
    assert_eq!(sim.exit.upstream[&fresh], data);
    assert_eq!(sim.apps[2].received[&fresh], data);
    assert_eq!(sim.exit.garbled, 0);
}

#[test]
fn a_trustee_restart_loses_nothing() {
    let mut sim = Sim::new(3, 3, 64);
    let expect = load(&mut sim, 6000);
    sim.run_until(100_000, |s| {
        s.exit.upstream.values().map(Vec::len).sum::<usize>() > 3000
    });
    sim.disconnect(Node::Trustee(1));
    for _ in 0..50 {
        sim.step();
    }
    sim.connect(Node::Trustee(1));
    sim.run_until(400_000, |s| s.all_delivered(&expect));
    assert_eq!(sim.exit.upstream, expect);
}

#[test]
fn a_silent_client_is_evicted_and_the_rest_continue() {
    let mut sim = Sim::new(3, 2, 64);
    let expect = load(&mut sim, 3000);
    sim.run_until(100_000, |s| !s.exit.upstream.is_empty());
    // Client 0 stops answering but keeps its link open: only the timeout can help.
    sim.mute(0);
    let others: BTreeMap<_, _> = expect
        .iter()
        .filter(|(c, _)| **c >> 16 != u32::from(sim.slots[0]) + 1)
        .map(|(c, d)| (*c, d.clone()))
        .collect();
    sim.run_until(400_000, |s| s.all_delivered(&others));
    assert!(sim.evicted_log.contains(&PeerId::Client(0)));
    for (c, d) in &others {
        assert_eq!(&sim.exit.upstream[c], d);
    }
}

#[test]
fn bad_frames_cost_only_their_sender() {
    let mut sim = Sim::new(3, 2, 64);
    let expect = load(&mut sim, 2000);
    let mut out = vec![0u8; 1024];
    for case in 0..4 {
        // Wait until client 1 is back in a running interval.
        sim.run_until(100_000, |s| {
            s.relay.interval().is_some_and(|(_, o)| o.contains(1))
                && s.clients[1].interval().is_some()
        });
        let (interval, _) = sim.relay.interval().unwrap();
        let body = match case {
            0 => vec![0xFF, 0x00, 0x13],
            1 => {
                let n = Message::Cell {
                    interval,
                    exchange: 0,
                    cell: &[0u8; 10],
                }
                .emit_frame(&mut out)
                .unwrap();
                out[4..n].to_vec()
            }
            2 => {
                let n = Message::Cell {
                    interval,
                    exchange: 1 << 40,
                    cell: &[0u8; 64],
                }
                .emit_frame(&mut out)
                .unwrap();
                out[4..n].to_vec()
            }
            _ => {
                let n = Message::Cell {
                    interval: interval + 5,
                    exchange: 0,
                    cell: &[0u8; 64],
                }
                .emit_frame(&mut out)
                .unwrap();
                out[4..n].to_vec()
            }
        };
        sim.relay_errors.clear();
        sim.deliver_to_relay(Node::Client(1), body);
        assert_eq!(sim.relay_errors.len(), 1);
        assert_eq!(sim.relay_errors[0].0, PeerId::Client(1));
        assert!(!sim.up[1]);
        sim.connect(Node::Client(1));
    }
    // Everyone else's bytes arrive in full; client 1's connection was closed at its first
    // disconnect after an exact prefix.
    let mine = u32::from(sim.slots[1]) + 1;
    let (ours, others): (BTreeMap<_, _>, BTreeMap<_, _>) =
        expect.into_iter().partition(|(c, _)| *c >> 16 == mine);
    sim.run_until(400_000, |s| s.all_delivered(&others));
    for (c, d) in &others {
        assert_eq!(&sim.exit.upstream[c], d);
    }
    for (c, d) in &ours {
        // Closed at the exit if it had been opened there at all.
        sim.run_until(400_000, |s| {
            s.exit.closed.contains(c) || !s.exit.opened.contains_key(c)
        });
        let got = sim.exit.upstream.get(c).cloned().unwrap_or_default();
        assert_eq!(&d[..got.len()], &got[..]);
    }
}

#[test]
fn relay_rejects_hellos_from_strangers() {
    let sim = Sim::new(2, 1, 64);
    let mut relay = sim.relay;
    let mut out = [0u8; 128];
    let mut hello = |group: [u8; 16], role, index| {
        let n = Message::Hello {
            version: wire::PROTOCOL_VERSION,
            group_id: group,
            session_id: SESSION,
            role,
            index,
            nonce: [0; 16],
        }
        .emit_frame(&mut out)
        .unwrap();
        out[4..n].to_vec()
    };
    let now = Instant::from_micros(0);
    assert!(relay
        .handle_hello(now, &hello([0; 16], wire::NodeRole::Client, 0))
        .is_err());
    assert!(relay
        .handle_hello(now, &hello(GROUP, wire::NodeRole::Client, 2))
        .is_err());
    assert!(relay
        .handle_hello(now, &hello(GROUP, wire::NodeRole::Trustee, 1))
        .is_err());
    assert!(relay.handle_hello(now, &[1, 2, 3]).is_err());
    assert_eq!(
        relay.handle_hello(now, &hello(GROUP, wire::NodeRole::Client, 1)),
        Ok(PeerId::Client(1))
    );
}

/// A client driven by hand-written relay frames.
fn lone_client() -> Client<Vec<u8>> {
    let trustee_pub = [public_key(&secret(2, 0))];
    Client::new(
        &ClientConfig {
            index: 0,
            group_id: GROUP,
            session_id: SESSION,
            session_secret: secret(1, 0),
            trustee_keys: &trustee_pub,
            slot: 0,
            slots: 2,
            cell_len: 64,
            rng_seed: secret(4, 0),
        },
        vec![0u8; 64 * 4],
    )
    .unwrap()
}

fn body(msg: &Message<'_>) -> Vec<u8> {
    let mut out = vec![0u8; 8192];
    let n = msg.emit_frame(&mut out).unwrap();
    out[4..n].to_vec()
}

fn start(interval: u32) -> Vec<u8> {
    body(&Message::IntervalStart {
        interval,
        nonces: [[3u8; 16]].into_iter().collect(),
        window: 3,
        history: heapless::Vec::new(),
    })
}

fn request(interval: u32, exchange: u64, slot: u16) -> Vec<u8> {
    body(&Message::ClientRequest {
        interval,
        exchange,
        slot,
        conn: 0,
        data: &[],
    })
}

fn cell_of(client: &mut Client<Vec<u8>>) -> Vec<u8> {
    let mut out = vec![0u8; 256];
    let n = client
        .poll_transmit(&mut out, &mut dissent_core::client::NoUpstream)
        .unwrap()
        .unwrap();
    out[..n].to_vec()
}

#[test]
fn a_replayed_interval_never_reuses_a_pad() {
    let now = Instant::from_micros(0);
    let mut c = lone_client();
    c.handle_connected(now);
    let _hello = cell_of(&mut c);
    c.handle_frame(now, &start(5)).unwrap();
    c.handle_frame(now, &request(5, 0, 0)).unwrap();
    let first = cell_of(&mut c);
    // The same announcement again on this link is refused.
    assert_eq!(
        c.handle_frame(now, &start(5)),
        Err(dissent_core::client::ClientError::StaleInterval(5))
    );
    assert_eq!(
        c.handle_frame(now, &start(4)),
        Err(dissent_core::client::ClientError::StaleInterval(4))
    );
    // On a new link the relay may replay it, but the client's link nonce is fresh.
    c.handle_disconnected(now);
    c.handle_connected(now);
    let _hello = cell_of(&mut c);
    c.handle_frame(now, &start(5)).unwrap();
    c.handle_frame(now, &request(5, 0, 0)).unwrap();
    let second = cell_of(&mut c);
    assert_eq!(first.len(), second.len());
    assert_ne!(first, second);
}

#[test]
fn a_client_refuses_requests_off_the_schedule() {
    let now = Instant::from_micros(0);
    let mut c = lone_client();
    c.handle_connected(now);
    let _hello = cell_of(&mut c);
    c.handle_frame(now, &start(1)).unwrap();
    assert!(c.handle_frame(now, &request(1, 0, 0)).is_ok());
    assert_eq!(
        c.handle_frame(now, &request(1, 1, 0)),
        Err(dissent_core::client::ClientError::WrongSlot {
            exchange: 1,
            got: 0
        })
    );
    assert!(matches!(
        c.handle_frame(now, &request(1, 5, 1)),
        Err(dissent_core::client::ClientError::OutOfOrder { .. })
    ));
    assert!(matches!(
        c.handle_frame(now, &request(2, 1, 1)),
        Err(dissent_core::client::ClientError::WrongInterval { .. })
    ));
    // Garbage is an error, never a panic.
    for junk in [&[][..], &[0xFF][..], &[5, 1, 1][..], &[3, 1, 200, 1][..]] {
        assert!(c.handle_frame(now, junk).is_err());
    }
}

#[test]
fn an_idle_net_slows_down_and_data_wakes_it_up() {
    let mut sim = Sim::new(3, 2, 64);
    sim.run_until(100_000, |s| s.relay.interval().is_some());
    let (t0, e0) = (sim.now, sim.relay.exchanges_decoded());
    sim.run_until(1_000_000, |s| s.now >= t0 + Duration::from_millis(1000));
    let idle = sim.relay.exchanges_decoded() - e0;
    // The longest idle gap is 1 ms, so an idle second holds about a thousand exchanges.
    assert!((500..=1100).contains(&idle), "{idle} idle exchanges");
    let expect = load(&mut sim, 20_000);
    let (t1, e1) = (sim.now, sim.relay.exchanges_decoded());
    sim.run_until(1_000_000, |s| s.all_delivered(&expect));
    let busy = sim.relay.exchanges_decoded() - e1;
    let secs = (sim.now - t1).as_micros() as f64 / 1e6;
    assert!(
        busy as f64 / secs > 3.0 * idle as f64,
        "{busy} exchanges in {secs} s under load"
    );
    assert_eq!(sim.exit.upstream, expect);
}

/// Random and mutated frames thrown at every role: errors are fine, panics are not.
#[test]
fn random_frames_never_panic() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut sim = Sim::new(3, 2, 64);
    sim.run_until(100_000, |s| s.relay.interval().is_some());
    // Valid frames to mutate, taken from the live exchange.
    let mut samples: Vec<Vec<u8>> = Vec::new();
    for (_, _, _, frame) in sim.wires.iter() {
        samples.push(frame[4..].to_vec());
    }
    samples.push(start(7));
    samples.push(request(7, 0, 0));
    let now = sim.now;
    let mut trustee = Trustee::new(&TrusteeConfig {
        index: 0,
        group_id: GROUP,
        session_id: SESSION,
        session_secret: secret(2, 0),
        client_keys: &[public_key(&secret(1, 0)), public_key(&secret(1, 1))],
        cell_len: 64,
        rng_seed: [1; 32],
        min_clients: 1,
    })
    .unwrap();
    trustee.handle_connected(now);
    let mut client = lone_client();
    client.handle_connected(now);
    let mut out = vec![0u8; 70_000];
    for round in 0..20_000 {
        let mut body = if round % 2 == 0 && !samples.is_empty() {
            samples[(rand() as usize) % samples.len()].clone()
        } else {
            (0..(rand() % 80) as usize).map(|_| rand() as u8).collect()
        };
        if !body.is_empty() {
            for _ in 0..(rand() % 4) {
                let i = (rand() as usize) % body.len();
                body[i] ^= 1 << (rand() % 8);
            }
        }
        let _ = sim.relay.check_hello(&body);
        let _ = sim
            .relay
            .handle_frame(now, PeerId::Client((rand() % 3) as u16), &body);
        let _ = sim
            .relay
            .handle_frame(now, PeerId::Trustee((rand() % 2) as u16), &body);
        while sim.relay.poll_event(now).is_some() {}
        while let Ok(Some(_)) = sim.relay.poll_transmit(now, &mut out, &mut sim.exit) {}
        let _ = trustee.handle_frame(now, &body);
        while let Ok(Some(_)) = trustee.poll_transmit(&mut out) {}
        let _ = client.handle_frame(now, &body);
        while let Ok(Some(_)) =
            client.poll_transmit(&mut out, &mut dissent_core::client::NoUpstream)
        {}
        let _ = dissent_core::wire::CellRepr::parse(&body);
    }
}

#[test]
fn a_trustee_refuses_an_interval_below_its_anonymity_minimum() {
    let now = Instant::from_micros(0);
    let keys: Vec<_> = (0..3).map(|i| public_key(&secret(1, i))).collect();
    let mut trustee = Trustee::new(&TrusteeConfig {
        index: 0,
        group_id: GROUP,
        session_id: SESSION,
        session_secret: secret(2, 0),
        client_keys: &keys,
        cell_len: 64,
        rng_seed: [1; 32],
        min_clients: 2,
    })
    .unwrap();
    trustee.handle_connected(now);
    let open = |members: &[usize]| {
        let mut online = dissent_core::OnlineSet::new();
        for &m in members {
            online.insert(m);
        }
        body(&Message::IntervalOpen {
            interval: 9,
            online,
            client_nonces: members.iter().map(|_| [0u8; 16]).collect(),
        })
    };
    // A relay that isolates one client gets no pads for it.
    assert_eq!(
        trustee.handle_frame(now, &open(&[1])),
        Err(dissent_core::trustee::TrusteeError::TooFewClients { online: 1, min: 2 })
    );
    assert_eq!(trustee.interval(), None);
    assert_eq!(trustee.handle_frame(now, &open(&[0, 2])), Ok(()));
    assert_eq!(trustee.interval(), Some(9));
}
