//! An owner's accusation is taken whenever a round about it may still begin, however many
//! slots are disrupted at once: the relay keeps the fingerprint rows of its latest
//! `ANSWERED` disrupted exchanges (`relay/fingerprints.rs`, `blame::horizon`). A seeded
//! search over the shortest windows (1 to 4, where `keep_horizon(window)` is least), groups
//! of 7 to 24 clients with many busy slots and some that send now and then (whose owners
//! accuse late, once their slot is scheduled again), one or two garblers, rounds that wait
//! (reveals that reach the relay late) and rounds on owners' accusations alone (sprung
//! traps ignored). At every step, no row of a disrupted exchange goes while a round about
//! it may still begin (within its slot's keep horizon and fewer than `ANSWERED` exchanges
//! after it); no honest member is ever named, every byte arrives, and every garbler is
//! named within [`NAMED_WITHIN`] exchanges of its first garbled one. Accusations taken
//! while one round runs and four wait are dropped (`QueueFull`): the running round names
//! the garbler.
//!
//! `DISSENT_SEEDS` (and `DISSENT_SEED_FROM`) widen the search.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "disruptor")]

use dissent_core::blame::ANSWERED;
use dissent_core::client::DisruptorMode;
use dissent_core::relay::{BlameDropReason, PeerId};
use dissent_core::testkit::{pattern, Net, NetConfig, Tamper, TamperView};
use dissent_core::wire::Kind;
use dissent_core::Duration;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Exchanges from the first garbled one to the last garbler's exclusion, at most: the
/// bound the search holds every seed to.
const NAMED_WITHIN: u64 = 40_000;

/// What one seed of the search saw.
#[derive(Debug, Default)]
struct Seen {
    /// Exchanges the relay decoded from the garbling's start to the last garbler's
    /// exclusion.
    exchanges_to_named: u64,
    started: usize,
    accused: usize,
    /// Rounds dropped as `Forgotten` before the first exclusion (which ends the interval,
    /// and with it the rounds waiting).
    forgotten: usize,
    /// Rounds dropped as `QueueFull` before the first exclusion (while one round runs and
    /// four wait: the running one names the garbler).
    queue_full: usize,
    /// Rounds dropped as `PastHorizon` before the first exclusion.
    past_horizon: usize,
    /// Disrupted exchanges whose row the relay let go while a round about them could still
    /// begin (within their slot's keep horizon, fewer than `ANSWERED` exchanges after).
    rows_lost: usize,
    /// Of them, those whose owner's pending accusation named them when they went.
    pending_lost: usize,
    /// The first few of them: (interval, exchange, slot, exchanges decoded after it).
    first_lost: Vec<(u32, u64, u16, u64)>,
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// How the garblers disrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Garbling {
    /// One or two garblers of every other exchange of other slots.
    EveryOther,
    /// One garbler of every cell of the busy slots (whose owners can never accuse) and of
    /// every other cell of the trickling ones: the busy slots' disrupted exchanges flush
    /// the relay's rows while a trickling owner waits for its slot to accuse.
    Flush,
}

/// One seed: the property, asserted; what it saw.
fn search(seed: u64, garbling: Garbling) -> Seen {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    // Flushing takes more busy slots than the old ring's rows between a cell and its
    // owner's next one.
    let clients = match garbling {
        Garbling::EveryOther => 7 + (rng.next_u64() % 6) as usize,
        Garbling::Flush => 16 + (rng.next_u64() % 9) as usize,
    };
    let mut cfg = NetConfig::new(clients, 2 + (rng.next_u64() % 2) as usize, 256);
    cfg.window = 1 + (seed % 4) as u16;
    cfg.max_cell_len = [1024, 2048][rng.next_u64() as usize % 2];
    cfg.latency = Duration::from_micros(50 + rng.next_u64() % 1000);
    cfg.kept_cells = None;
    let two = rng.next_u64() % 2 == 0 && garbling == Garbling::EveryOther;
    let garblers: Vec<usize> = if two {
        vec![clients - 1, clients - 2]
    } else {
        vec![clients - 1]
    };
    let owners = clients - garblers.len();
    // Owners accuse in their own cells: a garbler of every other exchange leaves them
    // room; traps ignored, only their accusations can name it.
    let mode = DisruptorMode::GarbleEveryOther;
    let what = format!(
        "seed {seed}: {clients} clients, window {}, cells up to {}, latency {:?}, \
         garblers {garblers:?} ({garbling:?}), {owners} owners",
        cfg.window, cfg.max_cell_len, cfg.latency
    );
    let mut net = Net::new(cfg);
    net.run_until(400_000, |s| {
        s.relay.interval().is_some_and(|(_, n)| n == clients)
    });
    assert!(
        net.relay.interval().is_some_and(|(_, n)| n == clients),
        "{what}: the group did not start"
    );
    net.run_steps(rng.next_u64() as usize % 2_000);
    // Most owners busy: their slots' exchanges carry data, and are garbled. Some (odd
    // ones, or one in three when flushing) trickle: a few hundred bytes now and then, so their slots go idle between, and an
    // owner whose last cell was garbled accuses it only once its slot is scheduled again,
    // late within its horizon (its slot has no exchanges meanwhile), while the busy slots'
    // exchanges are disrupted.
    let trickles = |i: usize| match garbling {
        Garbling::EveryOther => i % 2 == 1,
        Garbling::Flush => i % 3 == 1,
    };
    let trickle_every = 100 + rng.next_u64() as usize % 900;
    let mut expect = net.send_patterns(owners, seed as usize, |i| {
        if trickles(i) {
            100 + rng.next_u64() as usize % 300
        } else {
            20_000 + rng.next_u64() as usize % 30_000
        }
    });
    net.run_steps(rng.next_u64() as usize % 300);
    net.relay.set_ignore_traps(true);
    // Most seeds: rounds take long, so they wait behind one another and owners' later
    // accusations begin late within their horizon.
    if seed % 3 != 2 {
        net.reveal_late = Duration::from_micros(rng.next_u64() % 30_000);
    }
    net.relay_batch = rng.next_u64() % 2 == 0;
    let decoded = net.relay.exchanges_decoded();
    for &g in &garblers {
        match garbling {
            Garbling::EveryOther => net.clients[g].set_disruptor(Some(mode)),
            Garbling::Flush => {
                let busy: Vec<u16> = (0..owners)
                    .filter(|&i| !trickles(i))
                    .map(|i| net.slots[i])
                    .collect();
                let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x5eed);
                net.tamper = Some(Tamper {
                    client: g,
                    mask: Box::new(move |v: &TamperView<'_>| {
                        let Kind::Slot { slot, .. } = v.kind else {
                            return None;
                        };
                        if slot == v.own_slot
                            || !(busy.contains(&slot) || v.exchange.is_multiple_of(2))
                        {
                            return None;
                        }
                        let mut mask = vec![0u8; v.cell.len()];
                        rng.fill_bytes(&mut mask);
                        Some(mask)
                    }),
                    published: Vec::new(),
                    tampered: 0,
                });
            }
        }
    }
    let named = |s: &Net| {
        garblers
            .iter()
            .all(|&g| s.excluded.iter().any(|e| e.1 == PeerId::Client(g as u16)))
    };
    let mut at_named = None;
    let mut dropped_before = None;
    let mut more = 0;
    let mut trickled = 0;
    // The disrupted exchanges whose rows the relay keeps within their slot's horizon:
    // (interval, exchange, slot, exchanges decoded when it was seen).
    let mut tracked: Vec<(u32, u64, u16, u64)> = Vec::new();
    let mut garbled_seen = net.exit.garbled_at.len();
    let mut rows_lost: Vec<(u32, u64, u16, u64)> = Vec::new();
    let mut pending_lost = 0;
    let (mut last_decoded, mut jump) = (net.relay.exchanges_decoded(), 0);
    for step in 0..4_000_000usize {
        if at_named.is_none() && step % trickle_every == 0 && trickled < 400 {
            trickled += 1;
            let sends: Vec<_> = expect
                .iter_mut()
                .filter(|(_, (i, _))| trickles(*i))
                .map(|(&c, (i, d))| {
                    let more = pattern(seed as usize * 19 + trickled * 7 + *i, 100 + step % 300);
                    d.extend_from_slice(&more);
                    (*i, c, more)
                })
                .collect();
            for (i, c, d) in sends {
                net.send_bytes(i, c, d);
            }
        }
        let now_decoded = net.relay.exchanges_decoded();
        jump = jump.max(now_decoded - last_decoded);
        last_decoded = now_decoded;
        let running = net.relay.interval().map(|r| r.0);
        for &(interval, exchange) in &net.exit.garbled_at[garbled_seen..] {
            if running != Some(interval) {
                continue;
            }
            let slot = (0..clients as u16)
                .find(|&s| net.relay.within_keep_horizon(interval, exchange, s) == Some(true));
            if let Some(slot) = slot {
                tracked.push((interval, exchange, slot, now_decoded));
            }
        }
        garbled_seen = net.exit.garbled_at.len();
        tracked.retain(|&(interval, exchange, slot, at)| {
            if running != Some(interval) {
                return false;
            }
            match net.relay.within_keep_horizon(interval, exchange, slot) {
                Some(true) => true,
                Some(false) => false,
                None => {
                    // Gone within the slot's horizon: only past `ANSWERED` exchanges of
                    // the interval after it may a round no longer begin. `at` is at most
                    // `jump` decodes past the exchange's own.
                    if now_decoded - at + jump < ANSWERED as u64 {
                        rows_lost.push((interval, exchange, slot, now_decoded - at));
                        // Its owner still means to accuse it: the relay will refuse that.
                        let owner = net.slots.iter().position(|&s| s == slot);
                        if owner.is_some_and(|o| {
                            o < owners
                                && net.clients[o]
                                    .pending_accusation()
                                    .is_some_and(|p| (p.0, p.1) == (interval, exchange))
                        }) {
                            pending_lost += 1;
                        }
                    }
                    false
                }
            }
        });
        if at_named.is_none() && named(&net) {
            at_named = Some(net.relay.exchanges_decoded());
        }
        if dropped_before.is_none() && !net.excluded.is_empty() {
            dropped_before = Some(net.blame_dropped.clone());
        }
        if at_named.is_none() && net.relay.exchanges_decoded() - decoded > NAMED_WITHIN {
            break;
        }
        let done = net.delivered(&expect);
        if done && at_named.is_none() && more < 16 {
            // Every byte so far went through and a garbler is not yet named: every owner
            // sends more, as a busy group would.
            more += 1;
            for (k, (_, (_, data))) in expect.iter_mut().enumerate() {
                data.extend_from_slice(&pattern(seed as usize * 17 + more * 31 + k, 5_000));
            }
            let sends: Vec<_> = expect
                .iter()
                .map(|(&c, (i, d))| (*i, c, d[d.len() - 5_000..].to_vec()))
                .collect();
            for (i, c, d) in sends {
                net.send_bytes(i, c, d);
            }
            continue;
        }
        if (done && at_named.is_some()) || !net.step() {
            break;
        }
    }
    let seen = Seen {
        exchanges_to_named: at_named.map_or(u64::MAX, |n| n - decoded),
        started: net.blame_started.len(),
        accused: net.exit.accused.len(),
        forgotten: dropped_before
            .iter()
            .flatten()
            .filter(|d| d.2 == BlameDropReason::Forgotten)
            .count(),
        queue_full: dropped_before
            .iter()
            .flatten()
            .filter(|d| d.2 == BlameDropReason::QueueFull)
            .count(),
        past_horizon: dropped_before
            .iter()
            .flatten()
            .filter(|d| d.2 == BlameDropReason::PastHorizon)
            .count(),
        rows_lost: rows_lost.len(),
        pending_lost,
        first_lost: rows_lost.iter().take(4).copied().collect(),
    };
    let what = format!("{what}: {seen:?}");
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
    // Every garbler named within the bound.
    assert!(
        at_named.is_some(),
        "{what}: a garbler was not named within {NAMED_WITHIN} exchanges"
    );
    // Every byte arrives, once and in order, at the exit and back at its owner.
    net.assert_delivered(&expect, &what);
    seen
}

#[test]
fn accusations_are_taken_however_many_slots_are_disrupted() {
    run(Garbling::EveryOther);
}

/// A garbler that flushes the relay's rows with the disrupted exchanges of slots whose
/// owners cannot accuse is named all the same, through a trickling owner's late
/// accusation.
#[test]
fn a_garbler_that_flushes_the_rows_is_named() {
    run(Garbling::Flush);
}

/// The search over seeds, `DISSENT_SEEDS` of them from `DISSENT_SEED_FROM`.
fn run(garbling: Garbling) {
    let from = env("DISSENT_SEED_FROM", 0);
    let seeds = env("DISSENT_SEEDS", 8);
    let mut most = 0;
    let (mut started, mut accused, mut forgotten, mut lost, mut pending) = (0, 0, 0, 0, 0);
    let (mut queue_full, mut past_horizon) = (0, 0);
    let mut failed = Vec::new();
    for seed in from..from + seeds {
        // Every seed runs: the failures are counted, then reported together.
        let seen = match std::panic::catch_unwind(|| search(seed, garbling)) {
            Ok(seen) => seen,
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(why);
                continue;
            }
        };
        if seen.rows_lost > 0 {
            failed.push(format!(
                "seed {seed}: {} rows let go while a round could begin about them ({} \
                 with its owner's accusation pending), first (interval, exchange, slot, \
                 exchanges decoded after): {:?}",
                seen.rows_lost, seen.pending_lost, seen.first_lost
            ));
        }
        most = most.max(seen.exchanges_to_named);
        started += seen.started;
        accused += seen.accused;
        forgotten += seen.forgotten;
        queue_full += seen.queue_full;
        past_horizon += seen.past_horizon;
        lost += seen.rows_lost;
        pending += seen.pending_lost;
    }
    eprintln!(
        "{garbling:?}, {seeds} seeds, {} failed: {accused} accusations taken, {started} rounds begun, \
         before the first exclusion {forgotten} dropped as forgotten, {queue_full} as the \
         queue was full, {past_horizon} past the horizon; {lost} rows let go within the \
         horizon ({pending} with an accusation pending); every garbler named within {most} exchanges",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {seeds} seeds failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert!(started > 0);
}
