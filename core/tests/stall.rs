//! Members that stall the group: one client withholds its acknowledgement, or answers every
//! request 9.5 s late, and dials again at once each time it is dropped. The relay cuts it
//! after the others answered (not after the 10 s timeout), backs it off for growing delays,
//! and another client's 8 MiB upload and a chat go on. An honest client that answers in
//! twice the typical time is never cut, and one that drops once comes back.
//!
//! Timings as hosted: 8 clients, 2 trustees, 10 s exchange timeout, window 16, 1 KiB cells
//! up to 8 KiB; 30 s simulated per run.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use dissent_core::client::DisruptorMode;
use dissent_core::relay::{PeerId, Stall, StallConfig};
use dissent_core::testkit::{pattern, Net, NetConfig, Node};
use dissent_core::wire::{ConnId, GoodbyeReason};
use dissent_core::{Duration, Instant};

const CLIENTS: usize = 8;
const STALLER: usize = 7;
const UPLOADER: usize = 1;
const CHATTER: usize = 2;
const UPLOAD: usize = 8 << 20;
const CHAT: usize = 200;
const RUN: Duration = Duration::from_millis(30_000);
/// How soon a stalling client dials again after its link ends, whatever it was told.
const REDIAL: Duration = Duration::from_millis(100);

fn hosted(seed: u64) -> NetConfig {
    let mut cfg = NetConfig::new(CLIENTS, 2, 1024);
    cfg.max_cell_len = 8192;
    cfg.window = 16;
    cfg.exchange_timeout = Duration::from_millis(10_000);
    cfg.join_delay = Duration::from_millis(100);
    cfg.idle_gap = Duration::from_millis(50);
    cfg.downstream_len = 8192;
    cfg.log_len = 8 << 20;
    cfg.policy.log_window.bytes = 4 << 20;
    // 0.2 ms to 2 ms one way.
    cfg.latency = Duration::from_micros(200 + (seed * 613) % 1800);
    cfg
}

/// The relay as it was before: a straggler waits out the timeout and is let back at once.
fn lenient(mut cfg: NetConfig) -> NetConfig {
    cfg.stall.cutoff_floor = cfg.exchange_timeout;
    cfg.stall.backoff_initial = Duration::default();
    cfg.stall.rejoins = u8::MAX;
    cfg
}

#[derive(Debug)]
struct Outcome {
    /// Simulated time the upload took, if it completed.
    upload: Option<Duration>,
    /// Chat round trips completed.
    trips: usize,
    /// The staller's penalties: when, why, for how long.
    penalties: Vec<(Instant, Stall, Duration)>,
    /// When the staller was admitted.
    joins: Vec<Instant>,
    /// The staller's Hellos refused while backed off.
    refused: usize,
    /// Penalties of anyone else.
    others: Vec<(Instant, PeerId, Stall, Duration)>,
}

fn since(a: Instant, b: Instant) -> Duration {
    Duration::from_micros(b.as_micros().saturating_sub(a.as_micros()))
}

/// Runs 30 s: the uploader sends 8 MiB, the chatter sends 200 B each 100 ms after the last
/// echo came back, and the staller (if any) misbehaves as `mode` says and dials again
/// [`REDIAL`] after each goodbye.
fn run(cfg: NetConfig, mode: Option<DisruptorMode>) -> Outcome {
    let mut net = Net::new(cfg);
    net.run_until(200_000, |s| {
        s.relay.interval().is_some_and(|(_, n)| n == CLIENTS)
    });
    if mode.is_some() {
        // It turns bad, and dials again.
        net.clients[STALLER].set_disruptor(mode);
        net.disconnect(Node::Client(STALLER));
    }
    let start = net.now;
    let joined = net.joins.len();
    let up = net.open(UPLOADER);
    let data = pattern(11, UPLOAD);
    // The upload starts once the staller is back in (at once if nobody stalls).
    let mut upload_from: Option<Instant> = None;
    let chat = net.open(CHATTER);
    let mut sent = 0usize;
    let mut next_chat = start;
    let mut trips = 0usize;
    let mut upload = None;
    let mut down_since: Option<Instant> = None;
    let end = start + RUN;
    for _ in 0..20_000_000 {
        if net.now >= end {
            break;
        }
        // The chat: the exit echoes; the next line goes 100 ms after the echo is back.
        let got = net.apps[CHATTER].received.get(&chat).map_or(0, Vec::len);
        if got >= sent && net.now >= next_chat {
            if sent > 0 {
                trips += 1;
            }
            net.send_bytes(CHATTER, chat, pattern(trips, CHAT));
            sent += CHAT;
            next_chat = net.now + Duration::from_millis(100);
        }
        if upload_from.is_none() && (mode.is_none() || net.joins.len() > joined) {
            net.send_bytes(UPLOADER, up, data.clone());
            upload_from = Some(net.now);
        }
        if let Some(from) = upload_from.filter(|_| upload.is_none()) {
            if net.exit.upstream.get(&up).map_or(0, Vec::len) == UPLOAD {
                assert_eq!(net.exit.upstream[&up], data, "upload bytes differ");
                upload = Some(since(from, net.now));
            }
        }
        // The staller dials again soon after it is dropped or refused.
        if mode.is_some() && !net.is_up(Node::Client(STALLER)) {
            let t = *down_since.get_or_insert(net.now);
            if net.now >= t + REDIAL {
                down_since = None;
                net.connect(Node::Client(STALLER));
                continue;
            }
        }
        if !net.step() {
            break;
        }
    }
    let staller = PeerId::Client(STALLER as u16);
    Outcome {
        upload,
        trips,
        penalties: net
            .penalties
            .iter()
            .filter(|p| p.1 == staller)
            .map(|&(t, _, why, d)| (t, why, d))
            .collect(),
        joins: net
            .joins
            .iter()
            .filter(|j| j.1 == staller)
            .map(|j| j.0)
            .collect(),
        refused: net
            .refused
            .iter()
            .filter(|r| r.0 >= start && r.1 == staller)
            .filter(|r| matches!(r.2, GoodbyeReason::BackOff { .. }))
            .count(),
        others: net
            .penalties
            .iter()
            .filter(|p| p.1 != staller)
            .copied()
            .collect(),
    }
}

fn show(what: &str, o: &Outcome) {
    let last = o.penalties.last().map(|p| p.2.as_micros() / 1000);
    println!(
        "{what}: upload {} ms, chat round trips in 30 s {}, staller penalties {}, admitted {}, \
         refused {}, last back-off {:?} ms",
        o.upload.map_or(-1, |d| (d.as_micros() / 1000) as i64),
        o.trips,
        o.penalties.len(),
        o.joins.len(),
        o.refused,
        last
    );
}

/// The staller's admissions are spaced by at least the back-off each penalty gave, and its
/// back-offs grow.
fn assert_backed_off(o: &Outcome, why: Stall) {
    assert!(o.penalties.len() >= 3, "{o:?}");
    assert!(o.penalties.iter().all(|p| p.1 == why), "{o:?}");
    for (&(t, _, back_off), next) in o.penalties.iter().zip(o.penalties.iter().skip(1)) {
        assert!(next.2 >= back_off, "back-offs shrank: {o:?}");
        // Its first admission after this penalty waited out the back-off.
        if let Some(&j) = o.joins.iter().find(|&&j| j > t) {
            assert!(
                since(t, j).as_micros() >= back_off.as_micros(),
                "admitted {} µs after a {} µs back-off",
                since(t, j).as_micros(),
                back_off.as_micros()
            );
        }
    }
    let first = o.penalties[0].2;
    let last = o.penalties.last().unwrap().2;
    assert!(last.as_micros() >= 4 * first.as_micros(), "{o:?}");
    // It kept dialing: most of its Hellos were refused.
    assert!(o.refused > o.joins.len(), "{o:?}");
    assert!(o.others.is_empty(), "an honest client was penalized: {o:?}");
}

#[test]
fn a_client_that_withholds_its_ack_is_backed_off_and_the_group_goes_on() {
    for seed in 0..3 {
        let before = run(lenient(hosted(seed)), Some(DisruptorMode::WithholdAck));
        let after = run(hosted(seed), Some(DisruptorMode::WithholdAck));
        let calm = run(hosted(seed), None);
        show(&format!("seed {seed} withhold-ack, before"), &before);
        show(&format!("seed {seed} withhold-ack, after"), &after);
        show(&format!("seed {seed} nobody stalls"), &calm);
        assert!(
            calm.penalties.is_empty() && calm.others.is_empty(),
            "{calm:?}"
        );
        assert!(
            after.upload.is_some(),
            "the upload did not complete: {after:?}"
        );
        assert_backed_off(&after, Stall::WithheldAck);
        assert!(after.trips > before.trips, "{before:?} {after:?}");
    }
}

#[test]
fn a_client_that_answers_late_is_cut_and_backed_off_and_the_group_goes_on() {
    for seed in 0..3 {
        if seed == 0 {
            show("nobody stalls", &run(hosted(seed), None));
        }
        let before = run(lenient(hosted(seed)), Some(DisruptorMode::Slow));
        let after = run(hosted(seed), Some(DisruptorMode::Slow));
        show(&format!("seed {seed} slow, before"), &before);
        show(&format!("seed {seed} slow, after"), &after);
        assert!(
            after.upload.is_some(),
            "the upload did not complete: {after:?}"
        );
        assert_backed_off(&after, Stall::Straggler);
        assert!(after.trips > before.trips, "{before:?} {after:?}");
    }
}

/// A net in which client `slow` answers `extra` after the latency, with no floor: the cut
/// is the factor alone. Returns the penalties given and whether the transfer completed.
fn slow_honest(seed: u64, extra_latencies: u64) -> (Vec<(PeerId, Stall)>, bool) {
    let mut cfg = hosted(seed);
    cfg.stall.cutoff_floor = Duration::default();
    let latency = cfg.latency;
    let mut net = Net::new(cfg);
    // Everyone answers about two latencies after a request was issued; this one later.
    net.late[3] = Duration::from_micros(extra_latencies * latency.as_micros());
    net.run_until(200_000, |s| {
        s.relay.interval().is_some_and(|(_, n)| n == CLIENTS)
    });
    let conn: ConnId = net.open(3);
    let data = pattern(3, 200_000);
    net.send_bytes(3, conn, data.clone());
    let done = |s: &Net| s.exit.upstream.get(&conn).map(Vec::len) == Some(data.len());
    for _ in 0..3_000_000 {
        if done(&net) || !net.penalties.is_empty() || !net.step() {
            break;
        }
    }
    let penalties = net.penalties.iter().map(|p| (p.1, p.2)).collect();
    (penalties, done(&net))
}

#[test]
fn an_honest_client_answering_in_twice_the_typical_time_is_not_cut() {
    for seed in 0..4 {
        // Two latencies more: twice the typical answer time.
        let (penalties, done) = slow_honest(seed, 2);
        assert!(penalties.is_empty(), "seed {seed}: {penalties:?}");
        assert!(done, "seed {seed}");
        // Far beyond the factor (twelve times the typical time): cut.
        let (penalties, _) = slow_honest(seed, 22);
        assert_eq!(
            penalties,
            vec![(PeerId::Client(3), Stall::Straggler)],
            "seed {seed}"
        );
    }
}

#[test]
fn an_honest_client_dropped_once_comes_back_and_is_not_starved() {
    for seed in 0..3 {
        let mut net = Net::new(hosted(seed));
        net.run_until(200_000, |s| {
            s.relay.interval().is_some_and(|(_, n)| n == CLIENTS)
        });
        let conn = net.open(4);
        let data = pattern(4, 100_000);
        net.send_bytes(4, conn, data[..30_000].to_vec());
        net.run_until(2_000_000, |s| {
            s.exit.upstream.get(&conn).map(Vec::len) == Some(30_000)
        });
        // Its link hangs: it reads nothing, the others go on without it.
        net.muted[4] = true;
        net.run_until(2_000_000, |s| !s.is_up(Node::Client(4)));
        net.muted[4] = false;
        let (_, peer, why, back_off) = *net.penalties.last().expect("a penalty");
        assert_eq!(peer, PeerId::Client(4));
        assert_eq!(back_off, StallConfig::DEFAULT.backoff_initial, "{why:?}");
        // It dials again at once, is told to back off, and waits that long (its shell's
        // dial schedule honours the goodbye).
        net.connect(Node::Client(4));
        net.run_until(100_000, |s| !s.is_up(Node::Client(4)));
        let Some(&(t, Node::Client(4), GoodbyeReason::BackOff { millis })) = net.goodbyes.last()
        else {
            panic!("no back-off goodbye: {:?}", net.goodbyes);
        };
        assert!(millis > 0 && u64::from(millis) <= back_off.as_micros() / 1000);
        let until = t + Duration::from_millis(u64::from(millis));
        net.run_until(10_000_000, |s| s.now >= until);
        net.connect(Node::Client(4));
        net.send_bytes(4, conn, data[30_000..].to_vec());
        net.run_until(10_000_000, |s| {
            s.exit.upstream.get(&conn).map(Vec::len) == Some(data.len())
        });
        assert_eq!(net.exit.upstream[&conn], data, "seed {seed}");
        assert_eq!(net.penalties.len(), 1, "seed {seed}: {:?}", net.penalties);
        assert!(net.apps[4].lost.is_empty(), "seed {seed}");
    }
}

#[test]
fn an_excluded_client_is_refused_until_readmitted() {
    let mut net = Net::new(hosted(0));
    net.run_until(200_000, |s| {
        s.relay.interval().is_some_and(|(_, n)| n == CLIENTS)
    });
    let now = net.now;
    assert!(net
        .relay
        .exclude(now, 5, dissent_core::relay::Exclusion::Listed));
    net.flush_relay();
    net.run_until(100_000, |s| !s.is_up(Node::Client(5)));
    assert!(net.relay.is_excluded(5));
    for _ in 0..3 {
        net.connect(Node::Client(5));
        net.run_until(100_000, |s| !s.is_up(Node::Client(5)));
        assert_eq!(
            net.goodbyes.last().map(|g| g.2),
            Some(GoodbyeReason::Excluded)
        );
    }
    // The others run without it.
    net.run_until(200_000, |s| {
        s.relay.interval().is_some_and(|(_, n)| n == CLIENTS - 1)
    });
    assert!(net.relay.readmit(5));
    assert!(!net.relay.is_excluded(5));
    net.connect(Node::Client(5));
    net.run_until(1_000_000, |s| {
        s.relay.interval().is_some_and(|(_, n)| n == CLIENTS)
    });
    let conn = net.open(5);
    net.send_bytes(5, conn, pattern(5, 5000));
    net.run_until(1_000_000, |s| {
        s.exit.upstream.get(&conn).map(Vec::len) == Some(5000)
    });
}
