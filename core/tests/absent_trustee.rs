//! A trustee whose link drops during a blame round is not waited for: it forgot the round
//! with its link and is not asked again, so the round ends as soon as every other answer
//! is in, with exactly the verdict its deadline would have given.
//!
//! A seeded search: a garbler disrupts, a round starts, and trustee `t`'s link drops at a
//! chosen moment (before its reveal reaches the relay, while the members still answer or
//! after they all did; or right after its reveal arrived), then comes back at once or
//! later. Each such run is compared with a reference run of the same seed in which the
//! trustee stays connected: silent until the deadline when its reveal never arrived,
//! honest when it did. The verdict, the absent trustees, the evidence bytes and the
//! exclusions are the same; only the time differs: the round ends at the later of the drop
//! and the last member's reveal (well before the deadline) instead of at the deadline, and
//! a trustee that drops after revealing changes nothing, not even when the round ends.
//!
//! `DISSENT_SEEDS` (and `DISSENT_SEED_FROM`) widen the search.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "disruptor")]

use dissent_core::blame::{self, BlameKind, Culprit};
use dissent_core::client::DisruptorMode;
use dissent_core::relay::{Exclusion, PeerId};
use dissent_core::testkit::{pattern, Net, NetConfig, Node, Verdict};
use dissent_core::{Duration, Instant};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A seed's group: its size, timings, the garbler and the trustee whose link drops.
#[derive(Debug, Clone, Copy)]
struct Group {
    clients: usize,
    trustees: usize,
    window: u16,
    latency: Duration,
    reveal_late: Duration,
    mallory: usize,
    mode: DisruptorMode,
    trustee: usize,
}

impl Group {
    fn of(seed: u64) -> Group {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let clients = 5 + rng.next_u64() as usize % 3;
        let trustees = 2 + rng.next_u64() as usize % 2;
        Group {
            clients,
            trustees,
            window: [4, 8, 16][rng.next_u64() as usize % 3],
            latency: Duration::from_micros(50 + rng.next_u64() % 500),
            reveal_late: Duration::from_micros(rng.next_u64() % 400_000),
            mallory: rng.next_u64() as usize % clients,
            mode: [DisruptorMode::GarbleEveryOther, DisruptorMode::GarbleAll]
                [rng.next_u64() as usize % 2],
            trustee: rng.next_u64() as usize % trustees,
        }
    }
}

/// When the trustee's link drops, counted from the round's start.
#[derive(Debug, Clone, Copy)]
enum Drop {
    /// Never: it stays connected (a reference run).
    Never,
    /// At the first moment the net reaches this long after the round started.
    After(Duration),
    /// Right after its reveal reached the relay.
    OnItsReveal,
}

/// What the trustee does in a run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Its reveals never reach the relay (it holds the request unanswered).
    silent: bool,
    drop: Drop,
    /// How long after the drop it comes back (zero: at once).
    back_after: Duration,
}

/// What a run saw of its first round.
struct Run {
    round: (u32, u64),
    started: Instant,
    ended: Instant,
    verdict: Verdict,
    /// The absent trustees the round reported (one entry at most).
    incomplete: Vec<u16>,
    evidence: Option<Vec<u8>>,
    /// What the evidence, checked offline, names.
    verified: Option<(Culprit, BlameKind, bool)>,
    /// Exclusions for this round: (whom, why).
    excluded: Vec<(PeerId, Exclusion)>,
    /// When the relay had every member's reveal.
    members_in: Option<Instant>,
    /// When the trustee's link dropped, whether its reveal had reached the relay by then,
    /// and whether every member's had.
    dropped: Option<(Instant, bool, bool)>,
    /// Whether an interval with every trustee ran after the round.
    recovered: bool,
}

impl core::fmt::Debug for Run {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "round {:?} from {:?} to {:?}, verdict {:?}, incomplete {:?}, {} evidence bytes, \
             excluded {:?}, members in at {:?}, dropped {:?}",
            self.round,
            self.started,
            self.ended,
            self.verdict,
            self.incomplete,
            self.evidence.as_ref().map_or(0, Vec::len),
            self.excluded,
            self.members_in,
            self.dropped
        )
    }
}

fn run(g: Group, seed: u64, plan: Plan) -> Run {
    let mut cfg = NetConfig::new(g.clients, g.trustees, 256);
    cfg.max_cell_len = 1024;
    cfg.window = g.window;
    cfg.latency = g.latency;
    cfg.exchange_timeout = Duration::from_millis(2_000);
    let mut net = Net::new(cfg);
    let n = g.clients;
    net.run_until(400_000, |s| s.relay.interval().is_some_and(|(_, m)| m == n));
    net.reveal_late = g.reveal_late;
    let t = Node::Trustee(g.trustee);
    let tid = PeerId::Trustee(g.trustee as u16);
    if plan.silent {
        net.refuse_blame.push(t);
    }
    net.clients[g.mallory].set_disruptor(Some(g.mode));
    for i in (0..n).filter(|&i| i != g.mallory) {
        let conn = net.open(i);
        net.send_bytes(i, conn, pattern(seed as usize * 100 + i, 3_000 + 97 * i));
    }
    net.run_until(1_000_000, |s| !s.blame_started.is_empty());
    let (started, interval, exchange) = net.blame_started[0];
    // Reveals of this round reach the relay after this point (none is under way yet: the
    // request has not even arrived).
    let first = net.reveals.len();
    let members = |s: &Net| {
        s.reveals[first..]
            .iter()
            .filter(|p| matches!(p, PeerId::Client(_)))
            .count()
    };
    let mut members_in = None;
    let mut dropped = None;
    let mut back_at = None;
    for _ in 0..2_000_000 {
        if members_in.is_none() && members(&net) == n {
            members_in = Some(net.now);
        }
        if !net.blame_ended.is_empty() {
            break;
        }
        // (A silent trustee's reveal is recorded as sent, but never reaches the relay.)
        let revealed = !plan.silent && net.reveals[first..].contains(&tid);
        let due = match plan.drop {
            Drop::Never => false,
            Drop::After(d) => net.now >= started + d,
            Drop::OnItsReveal => revealed,
        };
        if due && dropped.is_none() {
            dropped = Some((net.now, revealed, members(&net) == n));
            net.disconnect(t);
            back_at = Some(net.now + plan.back_after);
        }
        if back_at.is_some_and(|at| net.now >= at) && !net.is_up(t) {
            net.connect(t);
        }
        assert!(net.step(), "seed {seed}: the net stalled in the round");
    }
    let &(ended, i, e, verdict) = net.blame_ended.first().expect("the round ended");
    assert_eq!((i, e), (interval, exchange), "seed {seed}");
    let excluded = net
        .excluded
        .iter()
        .filter(|x| {
            matches!(x.2, Exclusion::Convicted { interval: i, exchange: e, .. }
                if (i, e) == (interval, exchange))
        })
        .map(|x| (x.1, x.2))
        .collect();
    let incomplete = net
        .blame_incomplete
        .iter()
        .filter(|r| (r.1, r.2) == (interval, exchange))
        .map(|r| r.3)
        .collect();
    let evidence = net
        .relay
        .evidence()
        .and_then(|(i, e, bytes)| ((i, e) == (interval, exchange)).then(|| bytes.to_vec()));
    let verified = evidence
        .as_ref()
        .and_then(|bytes| blame::verify(bytes, &net.directory()).ok())
        .map(|v| (v.who, v.kind, v.offline));
    // The group goes on: the trustee back, an interval with every trustee runs after the
    // round.
    if !net.is_up(t) {
        net.connect(t);
    }
    let before = net.intervals.len();
    let trustees = g.trustees;
    net.run_until(1_000_000, |s| {
        s.intervals.len() > before && s.relay.connected_trustees() == trustees
    });
    Run {
        round: (interval, exchange),
        started,
        ended,
        verdict,
        incomplete,
        evidence,
        verified,
        excluded,
        members_in,
        dropped,
        recovered: net.relay.interval().is_some(),
    }
}

/// The cases one drop run fell in.
#[derive(Debug, Default)]
struct Cases {
    /// Dropped before its reveal arrived, with members still answering.
    before_members: usize,
    /// Dropped before its reveal arrived (it held it), after every member answered.
    after_members: usize,
    /// Dropped after its reveal arrived, with members still answering.
    after_reveal: usize,
}

/// One drop run against its reference: `Err` says what differed.
fn check(seed: u64, g: Group, plan: Plan, cases: &mut Cases) -> Result<(), String> {
    let what = format!("seed {seed}, {g:?}, {plan:?}");
    let a = run(g, seed, plan);
    let (drop_at, revealed, all_in) = a
        .dropped
        .ok_or_else(|| format!("{what}: the round ended before the drop: {a:?}"))?;
    // The reference: the trustee stays connected, silent if its reveal never arrived.
    let reference = Plan {
        silent: plan.silent || !revealed,
        drop: Drop::Never,
        back_after: Duration::default(),
    };
    let b = run(g, seed, reference);
    let what = format!("{what}: dropped at {drop_at:?}, {a:?} against {b:?}");
    let same = a.round == b.round
        && a.started == b.started
        && a.verdict == b.verdict
        && a.incomplete == b.incomplete
        && a.evidence == b.evidence
        && a.excluded == b.excluded;
    if !same {
        return Err(format!("{what}: not the reference's verdict"));
    }
    // The disruptor reveals the cell it sent: convicted on its own reveal, offline.
    let culprit = Culprit::Client(g.mallory as u16);
    if a.verdict != Some((culprit, BlameKind::Disrupted)) {
        return Err(format!("{what}: not the garbler's conviction"));
    }
    if a.verified != Some((culprit, BlameKind::Disrupted, true)) {
        return Err(format!(
            "{what}: the evidence does not convict the garbler offline"
        ));
    }
    let members_in = a
        .members_in
        .ok_or(format!("{what}: a member never answered"))?;
    let deadline = a.started + Duration::from_millis(2_000);
    if revealed {
        // Nothing changes, not even when the round ends.
        cases.after_reveal += usize::from(!all_in);
        if a.ended != b.ended || !a.incomplete.is_empty() {
            return Err(format!(
                "{what}: its drop after its reveal changed the round"
            ));
        }
    } else {
        if all_in {
            cases.after_members += 1;
        } else {
            cases.before_members += 1;
        }
        // It ends as soon as nothing more can come: at the drop or at the last member's
        // reveal, whichever is later; the reference waits for its deadline.
        if a.ended != drop_at.max(members_in) || a.ended >= deadline || b.ended < deadline {
            return Err(format!("{what}: not ended at once"));
        }
        if a.incomplete != [1 << g.trustee] {
            return Err(format!(
                "{what}: not reported without trustee {}",
                g.trustee
            ));
        }
    }
    if !a.recovered {
        return Err(format!("{what}: no interval after the round"));
    }
    Ok(())
}

/// A trustee's link drops in a round, before its reveal reaches the relay (while members
/// still answer, or after they all did while it held the request): the round ends at once
/// with the deadline's verdict; a trustee that drops right after its reveal arrived changes
/// nothing. Over seeds: group sizes, windows, latencies, slow reveals, two garbling modes,
/// which trustee, when it drops and when it comes back.
#[test]
fn a_trustee_whose_link_drops_in_a_round_is_not_waited_for_and_the_verdict_is_the_deadlines() {
    let from = env("DISSENT_SEED_FROM", 0);
    let seeds = env("DISSENT_SEEDS", 6);
    let mut cases = Cases::default();
    let mut failed = Vec::new();
    for seed in from..from + seeds {
        let g = Group::of(seed);
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x7e57);
        let back_after = |rng: &mut ChaCha20Rng| {
            if rng.next_u64().is_multiple_of(2) {
                Duration::default()
            } else {
                Duration::from_micros(rng.next_u64() % 3_000_000)
            }
        };
        // The request reaches the trustee one latency after the round starts, its reveal
        // one more latency and `reveal_late` after that.
        let asked = g.latency.as_micros() * 2;
        let answered = asked + g.reveal_late.as_micros();
        let plans = [
            // Honest, its link drops while the request is on its way to it, or its reveal
            // (and the members') are.
            Plan {
                silent: false,
                drop: Drop::After(Duration::from_micros(rng.next_u64() % answered)),
                back_after: back_after(&mut rng),
            },
            // It holds the request; its link drops at any time before the deadline.
            Plan {
                silent: true,
                drop: Drop::After(Duration::from_micros(
                    asked + rng.next_u64() % (1_600_000 - asked),
                )),
                back_after: back_after(&mut rng),
            },
            // Its link drops right after its reveal arrived.
            Plan {
                silent: false,
                drop: Drop::OnItsReveal,
                back_after: back_after(&mut rng),
            },
        ];
        for plan in plans {
            if let Err(e) = check(seed, g, plan, &mut cases) {
                failed.push(e);
            }
        }
    }
    eprintln!("{seeds} seeds: {cases:?}; {} runs failed", failed.len());
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(cases.before_members > 0, "no drop while members answered");
    assert!(
        cases.after_members > 0,
        "no drop after every member answered"
    );
    assert!(cases.after_reveal > 0, "no drop after its reveal");
}
