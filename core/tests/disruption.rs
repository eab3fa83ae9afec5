//! One member disrupts, everyone else is honest: what the relay hands its exit for a slot
//! is exactly what the slot's owner wrote, honest traffic completes byte-exact, and the
//! group keeps running. The disruptor is a client that XORs masks into its own cells,
//! chosen by a seeded search: random and sparse patterns, patterns aimed at other slots'
//! exchanges, at the fields an owner's cell always has, at reservation bits, and replays
//! of earlier ciphertexts and of the cells the relay published, over many seeds and
//! timings.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use dissent_core::testkit::{pattern, Net, NetConfig, Tamper, TamperView};
use dissent_core::wire::{self, ConnId, Kind};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const CLIENTS: usize = 6;
/// The disruptor.
const MALLORY: usize = 5;

/// What the disruptor aims at.
#[derive(Debug, Clone, Copy)]
enum Aim {
    /// Every byte of every data exchange random.
    Dense,
    /// A few random bits of a data exchange.
    Sparse,
    /// Other slots' exchanges only, a burst of random bytes.
    OtherSlots,
    /// The fields every owned cell has: the nonce, the `Next`, the first record header, the
    /// tag.
    Fields,
    /// Reservation exchanges: every other slot's bit inverted.
    Reservations,
    /// Its own earlier ciphertexts (the cell it sends is one it sent before).
    ReplayOwn,
    /// The decoded cells the relay published, XORed in (what a disrupted exchange showed).
    ReplayPublished,
}

const AIMS: [Aim; 7] = [
    Aim::Dense,
    Aim::Sparse,
    Aim::OtherSlots,
    Aim::Fields,
    Aim::Reservations,
    Aim::ReplayOwn,
    Aim::ReplayPublished,
];

/// What the disruptor did.
#[derive(Debug, Default)]
struct Tally {
    /// Data exchanges whose cell it changed.
    data: usize,
    /// Reservation exchanges whose cell it changed.
    reservations: usize,
}

/// The disruptor's mask for one exchange: `aim`, every `every`-th exchange from `phase`.
fn mask(
    aim: Aim,
    every: u64,
    phase: u64,
    rng: &mut ChaCha20Rng,
    earlier: &mut Vec<Vec<u8>>,
    v: &TamperView<'_>,
) -> Option<Vec<u8>> {
    let len = v.cell.len();
    let mine = earlier.iter().find(|c| c.len() == len).cloned();
    if earlier.len() < 64 {
        earlier.push(v.cell.to_vec());
    }
    // Reservations are jammed every time (a few exchanges of many).
    if v.exchange % every != phase % every && !matches!(aim, Aim::Reservations) {
        return None;
    }
    let mut m = vec![0u8; len];
    match (aim, v.kind) {
        (Aim::Reservations, Kind::Reserve) => {
            for s in 0..CLIENTS {
                if s != usize::from(v.own_slot) {
                    m[s / 8] ^= 1 << (s % 8);
                }
            }
        }
        (Aim::Reservations, _) | (_, Kind::Reserve) => return None,
        (Aim::Dense, _) => rng.fill_bytes(&mut m),
        (Aim::Sparse, _) => {
            for _ in 0..1 + rng.next_u32() % 4 {
                let bit = rng.next_u32() as usize % (len * 8);
                m[bit / 8] ^= 1 << (bit % 8);
            }
        }
        (Aim::OtherSlots, Kind::Slot { slot, .. }) => {
            if slot == v.own_slot {
                return None;
            }
            let at = rng.next_u32() as usize % len;
            let n = 1 + rng.next_u32() as usize % (len - at);
            rng.fill_bytes(&mut m[at..at + n]);
        }
        (Aim::Fields, _) => {
            let fields = [
                0..wire::SLOT_NONCE_LEN,
                wire::SLOT_NONCE_LEN..wire::SLOT_NONCE_LEN + wire::NEXT_LEN,
                wire::SLOT_NONCE_LEN + wire::NEXT_LEN..wire::SLOT_NONCE_LEN + wire::NEXT_LEN + 7,
                len.saturating_sub(wire::TAG_LEN)..len,
            ];
            let f = fields[rng.next_u32() as usize % fields.len()].clone();
            let byte = f.start + rng.next_u32() as usize % f.len().max(1);
            m[byte.min(len - 1)] = 1 << (rng.next_u32() % 8);
        }
        (Aim::ReplayOwn, _) => {
            // Send an earlier ciphertext of the same length instead of this one.
            let old = mine?;
            for ((b, o), c) in m.iter_mut().zip(&old).zip(v.cell) {
                *b = o ^ c;
            }
        }
        (Aim::ReplayPublished, _) => {
            let p = v.published.iter().rev().find(|p| p.len() == len)?;
            m.copy_from_slice(p);
        }
    }
    Some(m)
}

/// Runs one search: honest clients 0..5 each send `len` bytes on a connection (echoed by
/// the exit) while the disruptor tampers as `aim` says. Checks the property and returns
/// what the disruptor did and the exchanges the relay reported disrupted.
fn search(seed: u64, aim: Aim, len: usize) -> (Tally, usize) {
    let mut cfg = NetConfig::new(CLIENTS, 2, 256);
    cfg.max_cell_len = 1024;
    let mut net = Net::new(cfg);
    net.run_until(100_000, |s| {
        s.relay.interval().is_some_and(|(_, n)| n == CLIENTS)
    });
    // The first intervals settle who is in (joiners are batched).
    net.run_steps(100_000);
    let intervals = net.intervals.len();
    let mut expect: BTreeMap<ConnId, (usize, Vec<u8>)> = BTreeMap::new();
    for i in 0..MALLORY {
        let conn = net.open(i);
        let data = pattern(seed as usize * 31 + i, len);
        net.send_bytes(i, conn, data.clone());
        expect.insert(conn, (i, data));
    }
    let tally = Rc::new(RefCell::new(Tally::default()));
    let t = tally.clone();
    let stop = Rc::new(RefCell::new(false));
    let stopped = stop.clone();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    // Not every exchange: a disruptor that garbles every exchange of a slot blocks its
    // owner's accusations (the traps' job); see docs/security.md.
    let every = 3 + rng.next_u64() % 4;
    let phase = rng.next_u64() % every;
    let mut earlier = Vec::new();
    net.tamper = Some(Tamper {
        client: MALLORY,
        mask: Box::new(move |v| {
            if *stopped.borrow() {
                return None;
            }
            let m = mask(aim, every, phase, &mut rng, &mut earlier, v)?;
            if m.iter().any(|&b| b != 0) {
                let mut t = t.borrow_mut();
                match v.kind {
                    Kind::Reserve => t.reservations += 1,
                    Kind::Slot { .. } => t.data += 1,
                }
            }
            Some(m)
        }),
        published: Vec::new(),
        tampered: 0,
    });
    for _ in 0..3_000_000 {
        if expect.iter().all(|(c, (i, d))| {
            net.exit.upstream.get(c) == Some(d) && net.apps[*i].received.get(c) == Some(d)
        }) {
            break;
        }
        if !net.step() {
            break;
        }
    }
    // The disruptor stops; the exchanges it changed that are still in flight decode.
    *stop.borrow_mut() = true;
    net.run_steps(20_000);
    let what = format!("seed {seed}, {aim:?}, every {every} from {phase}");
    // Every record the exit got for a slot is one its owner wrote: nothing injected,
    // nothing altered, nothing opened twice, no connection nobody opened.
    for (c, (_, d)) in &expect {
        assert_eq!(net.exit.upstream.get(c), Some(d), "{what}");
        assert_eq!(
            net.exit.opened.get(c),
            Some(&1),
            "{what}: {c:?} opened again"
        );
    }
    assert_eq!(
        net.exit.upstream.len(),
        expect.len(),
        "{what}: a connection injected"
    );
    assert_eq!(
        net.exit.opened.len(),
        expect.len(),
        "{what}: a connection injected"
    );
    assert!(net.exit.closed.is_empty(), "{what}: a close injected");
    // The group kept running: nobody but the disruptor dropped (a blame round excludes it
    // once an owner accuses), no error anywhere else, no honest member ever excluded.
    let mallory = dissent_core::relay::PeerId::Client(MALLORY as u16);
    let excluded = net.dropped.contains(&mallory);
    assert!(
        net.dropped.iter().all(|p| *p == mallory),
        "{what}: {:?}",
        net.dropped
    );
    assert!(
        net.node_errors.iter().all(|(n, _)| n.peer() == mallory),
        "{what}: {:?}",
        net.node_errors
    );
    assert!(
        net.excluded.iter().all(|e| e.1 == mallory),
        "{what}: {:?}",
        net.excluded
    );
    assert!(
        net.relay_errors.is_empty(),
        "{what}: {:?}",
        net.relay_errors
    );
    if !excluded {
        assert_eq!(net.intervals.len(), intervals, "{what}: the interval ended");
    }
    for app in &net.apps {
        assert!(app.lost.is_empty(), "{what}: {:?}", app.lost);
    }
    let t = std::mem::take(&mut *tally.borrow_mut());
    // Every changed data exchange was reported disrupted or sprung a trap (a cell changed
    // only in trap bytes opens, and is delivered), and no other (once the disruptor is
    // excluded, the cells it changed that were in flight never decode).
    let mut noticed: std::collections::BTreeSet<(u32, u64)> =
        net.exit.garbled_at.iter().copied().collect();
    noticed.extend(net.exit.sprung.iter().map(|s| (s.0, s.1)));
    if excluded {
        assert!(noticed.len() <= t.data, "{what}");
    } else {
        assert_eq!(noticed.len(), t.data, "{what}");
    }
    // Each honest owner was told of exactly its disrupted cells (at most all of them).
    let told: usize = net.apps[..MALLORY].iter().map(|a| a.disrupted.len()).sum();
    assert!(told <= t.data, "{what}: {told} of {}", t.data);
    (t, net.exit.garbled)
}

#[test]
fn a_searching_disruptor_never_writes_in_another_slot_and_never_stops_the_group() {
    let mut disrupted = 0;
    let mut reservations = 0;
    for seed in 0..28u64 {
        let aim = AIMS[seed as usize % AIMS.len()];
        let (t, garbled) = search(seed, aim, 3000);
        disrupted += garbled;
        reservations += t.reservations;
    }
    // The search did disrupt, and jammed reservations (a jammer is excluded once an owner
    // accuses its first forged request), and still every byte went through.
    assert!(disrupted > 50, "{disrupted} exchanges disrupted");
    assert!(reservations > 5, "{reservations} reservations jammed");
}

#[test]
fn an_owner_whose_every_cell_is_garbled_for_a_while_loses_no_byte() {
    // Every exchange for a stretch, then nothing: the owners' records disrupted meanwhile
    // are sent again, in order, once it stops.
    let mut cfg = NetConfig::new(CLIENTS, 2, 256);
    cfg.max_cell_len = 1024;
    let mut net = Net::new(cfg);
    net.run_until(100_000, |s| s.relay.interval().is_some());
    let conn = net.open(0);
    let data = pattern(77, 40_000);
    net.send_bytes(0, conn, data.clone());
    net.run_until(400_000, |s| {
        s.exit.upstream.get(&conn).map_or(0, Vec::len) > 2000
    });
    // Garbled for a while: a sprung trap would have the disruptor excluded at once.
    net.relay.set_ignore_traps(true);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let stop = Rc::new(RefCell::new(false));
    let stopped = stop.clone();
    net.tamper = Some(Tamper {
        client: MALLORY,
        mask: Box::new(move |v| {
            if *stopped.borrow() || matches!(v.kind, Kind::Reserve) {
                return None;
            }
            let mut m = vec![0u8; v.cell.len()];
            rng.fill_bytes(&mut m);
            Some(m)
        }),
        published: Vec::new(),
        tampered: 0,
    });
    net.run_steps(20_000);
    let during = net.exit.upstream[&conn].len();
    assert!(net.exit.garbled > 20, "{} disrupted", net.exit.garbled);
    assert!(!net.apps[0].disrupted.is_empty());
    *stop.borrow_mut() = true;
    net.run_until(3_000_000, |s| s.apps[0].received.get(&conn) == Some(&data));
    assert!(during < data.len(), "the disruption held nothing back");
    assert_eq!(net.exit.upstream[&conn], data);
    assert_eq!(net.exit.opened[&conn], 1);
    assert!(net.apps[0].lost.is_empty());
    // Only the disruptor is told to go (a blame round convicts it).
    let mallory = dissent_core::relay::PeerId::Client(MALLORY as u16);
    assert!(
        net.node_errors.iter().all(|(n, _)| n.peer() == mallory),
        "{:?}",
        net.node_errors
    );
}

/// Each mode of the `disruptor` feature, one client of six: the exit gets nothing but
/// what owners wrote (a prefix of each honest stream, nothing injected, nothing opened
/// twice), the group keeps decoding exchanges, and where the mode leaves the owners'
/// cells alone their transfers complete.
#[cfg(feature = "disruptor")]
#[test]
fn every_disruptor_mode_is_noticed_and_injects_nothing() {
    use dissent_core::client::DisruptorMode;
    use dissent_core::testkit::Node;
    for (name, mode) in DisruptorMode::ALL {
        let mut cfg = NetConfig::new(CLIENTS, 2, 256);
        cfg.max_cell_len = 1024;
        let mut net = Net::new(cfg);
        net.run_until(100_000, |s| {
            s.relay.interval().is_some_and(|(_, n)| n == CLIENTS)
        });
        net.run_steps(100_000);
        net.clients[MALLORY].set_disruptor(Some(mode));
        if mode == DisruptorMode::WithholdAck {
            // A new interval, whose view the disruptor does not acknowledge.
            net.disconnect(Node::Client(0));
            net.connect(Node::Client(0));
        }
        let mut expect = BTreeMap::new();
        for i in 0..MALLORY {
            let conn = net.open(i);
            let data = pattern(1000 + i, 2000);
            net.send_bytes(i, conn, data.clone());
            expect.insert(conn, (i, data));
        }
        let decoded = net.relay.exchanges_decoded();
        let complete = |s: &Net| {
            expect.iter().all(|(c, (i, d))| {
                s.exit.upstream.get(c) == Some(d) && s.apps[*i].received.get(c) == Some(d)
            })
        };
        for _ in 0..300_000 {
            if complete(&net) || !net.step() {
                break;
            }
        }
        for (c, (_, d)) in &expect {
            let got = net.exit.upstream.get(c).map_or(&[][..], Vec::as_slice);
            assert!(d.starts_with(got), "{name}: the exit's bytes differ");
            assert!(net.exit.opened.get(c).is_none_or(|&k| k == 1), "{name}");
        }
        assert!(
            net.exit.upstream.keys().all(|c| expect.contains_key(c)),
            "{name}: a connection injected"
        );
        assert!(net.exit.closed.is_empty(), "{name}: a close injected");
        assert!(
            complete(&net) || net.relay.exchanges_decoded() > decoded + 100,
            "{name}: the group stopped"
        );
        match mode {
            DisruptorMode::GarbleAll
            | DisruptorMode::GarbleEveryOther
            | DisruptorMode::FlipPayload
            | DisruptorMode::Inject => assert!(net.exit.garbled > 0, "{name}"),
            DisruptorMode::InvertReservations | DisruptorMode::WithholdAck => {
                assert!(complete(&net), "{name}: honest transfers did not complete")
            }
            _ => {}
        }
    }
}

/// A client that garbles every other exchange (`garble-every-other`) from a moment chosen
/// by the seed, while two owners echo bulk transfers through their slots, over seeds,
/// window sizes, cell lengths and latencies: a blame round names and excludes it, and
/// every honest byte arrives, once and in order, at the exit and back at its owner.
#[cfg(feature = "disruptor")]
#[test]
fn owners_next_to_a_garbler_of_every_other_exchange_lose_no_byte() {
    use dissent_core::client::DisruptorMode;
    use dissent_core::relay::PeerId;
    use dissent_core::testkit::Node;
    const N: usize = 4;
    const GARBLER: usize = 3;
    let seeds: u64 = std::env::var("DISSENT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let from: u64 = std::env::var("DISSENT_SEED_FROM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for seed in from..seeds {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut cfg = NetConfig::new(N, 2, 256);
        cfg.max_cell_len = [1024, 2048, 8192][rng.next_u64() as usize % 3];
        cfg.window = [4, 8, 16, 32][rng.next_u64() as usize % 4];
        if seed % 3 == 2 {
            // A hosted group's lengths: 1 KiB cells up to 32 KiB, a window of 16.
            cfg.cell_len = 1024;
            cfg.max_cell_len = 32 * 1024;
            cfg.window = 16;
            cfg.max_frame = wire::MAX_FRAME_BODY as u32;
            cfg.downstream_len = dissent_core::MAX_DOWNSTREAM;
            cfg.ring_len = 2 * 1024 * 1024;
            cfg.replay_len = 2 * 1024 * 1024;
            cfg.log_len = 8 * 1024 * 1024;
        }
        cfg.latency = dissent_core::Duration::from_micros(50 + rng.next_u64() % 1000);
        let what = format!(
            "seed {seed}: window {}, cells up to {}, latency {:?}",
            cfg.window, cfg.max_cell_len, cfg.latency
        );
        // Buddy groups of two, as a generated group's (the garbler's buddy is client 2).
        cfg.policy.min_anonymity = 2;
        let mut net = Net::new(cfg);
        net.run_until(100_000, |s| s.relay.interval().is_some_and(|(_, n)| n == N));
        if seed % 2 == 0 {
            // It comes back (as a process started again would), its buddy group lost.
            net.disconnect(Node::Client(GARBLER));
            net.run_steps(rng.next_u64() as usize % 2_000);
            net.connect(Node::Client(GARBLER));
            net.run_until(100_000, |s| s.relay.interval().is_some_and(|(_, n)| n == N));
        }
        net.run_steps(rng.next_u64() as usize % 20_000);
        let mut expect: BTreeMap<ConnId, (usize, Vec<u8>)> = BTreeMap::new();
        for i in 0..2 {
            let conn = net.open(i);
            let data = pattern(
                seed as usize * 17 + i,
                100_000 + rng.next_u64() as usize % 200_000,
            );
            net.send_bytes(i, conn, data.clone());
            expect.insert(conn, (i, data));
        }
        net.run_steps(rng.next_u64() as usize % 300);
        net.clients[GARBLER].set_disruptor(Some(DisruptorMode::GarbleEveryOther));
        // Most seeds: its rounds take long (reveals reach the relay late, as with real
        // processes, and the exchanges go on meanwhile), so many disrupted exchanges are
        // in flight when its verdict ends the interval.
        // Most seeds: the relay reads every frame that arrived before it decodes, as a
        // busy hosted relay does.
        net.relay_batch = seed % 4 != 3;
        if seed % 4 != 0 {
            net.reveal_late = dissent_core::Duration::from_micros(rng.next_u64() % 40_000);
        }
        for _ in 0..3_000_000 {
            let done = expect.iter().all(|(c, (i, d))| {
                net.exit.upstream.get(c).map_or(0, Vec::len) >= d.len()
                    && net.apps[*i].received.get(c).map_or(0, Vec::len) >= d.len()
            });
            if done || !net.step() {
                break;
            }
        }
        for (c, (i, d)) in &expect {
            let up = net.exit.upstream.get(c).map_or(&[][..], Vec::as_slice);
            let down = net.apps[*i].received.get(c).map_or(&[][..], Vec::as_slice);
            let first = |got: &[u8]| got.iter().zip(d).position(|(a, b)| a != b);
            assert!(
                up == &d[..],
                "{what}: client {i}'s bytes at the exit: {} of {}, first difference at {:?}",
                up.len(),
                d.len(),
                first(up)
            );
            assert!(
                down == &d[..],
                "{what}: client {i}'s echo: {} of {}, first difference at {:?}",
                down.len(),
                d.len(),
                first(down)
            );
            assert_eq!(net.exit.opened.get(c), Some(&1), "{what}");
        }
        assert!(net.exit.garbled > 0, "{what}: nothing garbled");
        // Named and excluded (if the transfers outran its round, once that round ends).
        let garbler = PeerId::Client(GARBLER as u16);
        net.run_until(2_000_000, |s| s.excluded.iter().any(|e| e.1 == garbler));
        assert!(
            net.excluded.iter().all(|e| e.1 == garbler),
            "{what}: an honest member excluded: {:?}",
            net.excluded
        );
        assert!(
            net.node_errors
                .iter()
                .all(|(n, _)| *n == Node::Client(GARBLER)),
            "{what}: {:?}",
            net.node_errors
        );
        for app in &net.apps {
            assert!(app.lost.is_empty(), "{what}: {:?}", app.lost);
        }
    }
}
