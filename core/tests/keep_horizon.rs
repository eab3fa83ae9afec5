//! No honest owner is convicted for a cell it let go: the relay begins no blame round about
//! an exchange of a slot once `keep_horizon(window)` exchanges of the slot were issued
//! after it, and every owner keeps its last `keep_horizon(window)` owned cells
//! (`blame::horizon`). A seeded search over windows up to the largest, owners that keep
//! only what the window needs (a device's storage at its window), one or two garblers, two
//! or three owners disrupted at once, rounds that wait (reveals that reach the relay late)
//! and rounds on owners' accusations alone (sprung traps ignored): no honest member is
//! ever named, every byte arrives, and every garbler is named.
//!
//! `DISSENT_SEEDS` (and `DISSENT_SEED_FROM`) widen the search.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "disruptor")]

use dissent_core::blame::keep_horizon;
use dissent_core::client::DisruptorMode;
use dissent_core::relay::{BlameDropReason, PeerId};
use dissent_core::testkit::{pattern, Net, NetConfig};
use dissent_core::{Duration, MAX_WINDOW};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const N: usize = 5;

/// What one seed of the search saw.
#[derive(Debug, Default)]
struct Seen {
    /// Exchanges the relay decoded from the garbling's start to the last garbler's
    /// exclusion.
    exchanges_to_named: u64,
    started: usize,
    past_horizon: usize,
    /// Rounds dropped as `Forgotten`: their exchange gone from what every node keeps (or
    /// their fingerprints from the relay's ring, or the interval ended).
    forgotten: usize,
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// One seed: the property, asserted; what it saw.
fn search(seed: u64) -> Seen {
    search_at(seed, None)
}

/// One seed, at `accused_window` with rounds on owners' accusations alone if given.
fn search_at(seed: u64, accused_window: Option<u16>) -> Seen {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut cfg = NetConfig::new(N, 2, 256);
    let accusations_only = rng.next_u64() % 3 == 0 || accused_window.is_some();
    cfg.window = match seed % 4 {
        // The hosted relay's default, which a device serves.
        0 => 16,
        1 => MAX_WINDOW as u16,
        _ => 1 + (rng.next_u64() % MAX_WINDOW as u64) as u16,
    };
    if let Some(window) = accused_window {
        cfg.window = window;
    }
    cfg.max_cell_len = [1024, 2048, 4096][rng.next_u64() as usize % 3];
    cfg.latency = Duration::from_micros(50 + rng.next_u64() % 1000);
    // Every owner keeps only what the window needs: the least the rule allows.
    cfg.kept_cells = None;
    let garblers: Vec<usize> = if rng.next_u64() % 3 == 0 {
        vec![N - 1, N - 2]
    } else {
        vec![N - 1]
    };
    let owners = N - garblers.len();
    let mode = if accusations_only {
        // Owners accuse in their own cells: a garbler of every cell would silence them.
        DisruptorMode::GarbleEveryOther
    } else {
        [
            DisruptorMode::GarbleEveryOther,
            DisruptorMode::GarbleAll,
            DisruptorMode::GarbleData,
        ][rng.next_u64() as usize % 3]
    };
    let what = format!(
        "seed {seed}: window {}, cells up to {}, latency {:?}, garblers {garblers:?} \
         ({mode:?}), {owners} owners, accusations only {accusations_only}",
        cfg.window, cfg.max_cell_len, cfg.latency
    );
    let mut net = Net::new(cfg);
    net.run_until(200_000, |s| s.relay.interval().is_some_and(|(_, n)| n == N));
    assert!(
        net.relay.interval().is_some_and(|(_, n)| n == N),
        "{what}: the group did not start"
    );
    net.run_steps(rng.next_u64() as usize % 5_000);
    let mut expect = net.send_patterns(owners, seed as usize, |_| {
        10_000 + rng.next_u64() as usize % 30_000
    });
    net.run_steps(rng.next_u64() as usize % 300);
    net.relay.set_ignore_traps(accusations_only);
    // Most seeds: rounds take long (reveals reach the relay late, the exchanges go on
    // meanwhile), so rounds wait behind one another and start late.
    if seed % 4 != 3 {
        net.reveal_late = Duration::from_micros(rng.next_u64() % 60_000);
    }
    net.relay_batch = rng.next_u64() % 2 == 0;
    let decoded = net.relay.exchanges_decoded();
    for &g in &garblers {
        net.clients[g].set_disruptor(Some(mode));
    }
    let named = |s: &Net| {
        garblers
            .iter()
            .all(|&g| s.excluded.iter().any(|e| e.1 == PeerId::Client(g as u16)))
    };
    let mut at_named = None;
    // A garbler disrupts only cells that carry something: while one is not yet named and
    // every byte so far went through, owner 0 sends more (a few times at most), as a busy
    // group would.
    let mut more = 0;
    for _ in 0..3_000_000 {
        if at_named.is_none() && named(&net) {
            at_named = Some(net.relay.exchanges_decoded());
        }
        let done = net.delivered(&expect);
        if done && at_named.is_none() && more < 8 {
            more += 1;
            if let Some((&conn, (i, data))) = expect.iter_mut().find(|(_, (i, _))| *i == 0) {
                let extra = pattern(seed as usize * 17 + more, 5_000);
                net.send_bytes(*i, conn, extra.clone());
                data.extend_from_slice(&extra);
            }
            continue;
        }
        if (done && at_named.is_some()) || !net.step() {
            break;
        }
    }
    // No honest member named, ever: by a verdict, a refusal or an error.
    let honest = |p: &PeerId| !garblers.iter().any(|&g| *p == PeerId::Client(g as u16));
    let wrongly: Vec<_> = net.excluded.iter().filter(|e| honest(&e.1)).collect();
    assert!(
        wrongly.is_empty(),
        "{what}: honest members excluded: {wrongly:?}"
    );
    assert!(
        net.node_errors.iter().all(|(n, _)| !honest(&n.peer())),
        "{what}: {:?}",
        net.node_errors
    );
    // Every byte arrives, once and in order, at the exit and back at its owner.
    net.assert_delivered(&expect, &what);
    // Every garbler named.
    let at_named = at_named.unwrap_or_else(|| panic!("{what}: a garbler was never named"));
    Seen {
        exchanges_to_named: at_named - decoded,
        started: net.blame_started.len(),
        past_horizon: net
            .blame_dropped
            .iter()
            .filter(|d| d.2 == BlameDropReason::PastHorizon)
            .count(),
        forgotten: net
            .blame_dropped
            .iter()
            .filter(|d| d.2 == BlameDropReason::Forgotten)
            .count(),
    }
}

#[test]
fn no_honest_owner_is_convicted_for_a_cell_it_let_go() {
    let from = env("DISSENT_SEED_FROM", 0);
    let seeds = env("DISSENT_SEEDS", 8);
    let mut most = 0;
    let (mut started, mut past, mut forgotten) = (0, 0, 0);
    for seed in from..from + seeds {
        let seen = search(seed);
        most = most.max(seen.exchanges_to_named);
        started += seen.started;
        past += seen.past_horizon;
        forgotten += seen.forgotten;
    }
    eprintln!(
        "{seeds} seeds: {started} rounds begun, {past} dropped past the keep horizon, \
         {forgotten} forgotten; every garbler named within {most} exchanges"
    );
    assert!(started > 0);
}

/// Traps ignored, a garbler of every other exchange is named through its victims'
/// accusations at the smallest window (the accused exchange's fingerprints are still
/// kept when the accusation comes) and at the largest (the round begins within the pad
/// nonces every node keeps).
#[test]
fn owners_accusations_name_the_garbler_at_the_smallest_and_largest_window() {
    for window in [1, MAX_WINDOW as u16] {
        for seed in 0..2 {
            let seen = search_at(seed, Some(window));
            assert!(seen.started > 0, "window {window}, seed {seed}: no round");
        }
    }
}

/// The relay's decision whether a round about an exchange may still begin is the same
/// whoever owns the exchange's slot: two nets alike but for which client owns the busy
/// slot, the same garbling, and the decisions about every kept exchange, step by step,
/// are equal (and some of them refuse: the search is not empty).
#[test]
fn the_relays_horizon_decision_is_the_same_whoever_owns_the_slot() {
    let decisions = |shift: usize| {
        let mut cfg = NetConfig::new(N, 2, 256);
        cfg.window = 4;
        cfg.max_cell_len = 1024;
        cfg.slot_shift = shift;
        let mut net = Net::new(cfg);
        net.run_until(200_000, |s| s.relay.interval().is_some_and(|(_, n)| n == N));
        // Slot 1 is busy, whichever client owns it; client 4 (which owns neither slot 1
        // here nor there) garbles.
        let owner = net.slots.iter().position(|&s| s == 1).unwrap();
        assert_ne!(owner, N - 1);
        let conn = net.open(owner);
        net.send_endless(owner, conn);
        net.run_steps(500);
        net.relay.set_ignore_traps(true);
        // Rounds last long: exchanges of the slot go by while one runs.
        net.reveal_late = Duration::from_millis(200);
        net.clients[N - 1].set_disruptor(Some(DisruptorMode::GarbleEveryOther));
        let mut seen = Vec::new();
        let interval = net.relay.interval().unwrap().0;
        for _ in 0..20_000 {
            if !net.step() {
                break;
            }
            let row: Vec<_> = net
                .exit
                .garbled_at
                .iter()
                .filter(|g| g.0 == interval)
                .map(|&(i, e)| net.relay.within_keep_horizon(i, e, 1))
                .collect();
            seen.push(row);
        }
        (owner, seen, net.blame_started.clone().len())
    };
    let (a, first, _) = decisions(4);
    let (b, second, _) = decisions(2);
    assert_ne!(a, b, "the same owner twice");
    assert_eq!(first, second);
    let refused = first
        .iter()
        .flatten()
        .filter(|d| **d == Some(false))
        .count();
    let allowed = first.iter().flatten().filter(|d| **d == Some(true)).count();
    assert!(
        refused > 0 && allowed > 0,
        "{refused} refused, {allowed} allowed"
    );
}

/// A client whose storage keeps fewer owned cells than the window's keep horizon refuses
/// the interval with its own error, naming the window it serves, rather than run and be
/// convicted in the first round about its slot.
#[test]
fn a_client_that_keeps_too_few_cells_refuses_the_interval() {
    let mut cfg = NetConfig::new(3, 2, 256);
    cfg.window = 16;
    cfg.kept_cells = Some(keep_horizon(16) - 1);
    let mut net = Net::new(cfg);
    net.run_steps(20_000);
    assert!(net.relay.interval().is_none(), "an interval ran");
    let (_, why) = net
        .node_errors
        .iter()
        .find(|(n, _)| *n == dissent_core::testkit::Node::Client(0))
        .expect("client 0 refused");
    assert!(
        why.contains("a window of 16 needs the last 40 sent cells")
            && why.contains("keeps 39 (window 15 at most)"),
        "{why}"
    );
}
