//! A member whose link is down at a blame round's deadline is never convicted for it: the
//! round waits for it (it owes the round, and is admitted to no interval until it
//! answers), and is judged with its reveal once it is back.
//!
//! A seeded search: honest members drop their links at random times, and some right as a
//! round starts, for longer than the round's deadline, while one or two garblers disrupt;
//! on every seed no honest member is ever named, every garbler is, and every byte of the
//! honest transfers arrives. Then the cases: a garbler that leaves mid-round is in no
//! interval until it answers, and is convicted when it comes back and answers, or comes
//! back and refuses.
//!
//! `DISSENT_SEEDS` (and `DISSENT_SEED_FROM`) widen the search.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "disruptor")]

use std::collections::{BTreeMap, BTreeSet};

use dissent_core::blame::{self, BlameKind, Culprit};
use dissent_core::client::DisruptorMode;
use dissent_core::relay::{Exclusion, PeerId};
use dissent_core::testkit::{pattern, Net, NetConfig, Node};
use dissent_core::wire::ConnId;
use dissent_core::{Duration, Instant};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const N: usize = 5;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// What one seed of the search saw.
#[derive(Debug, Default)]
struct Seen {
    /// Honest members' links cut, and those cut as a round started.
    drops: usize,
    drops_in_round: usize,
    /// Rounds begun, and those that waited for members away at their deadline.
    started: usize,
    parked: usize,
    /// Honest members' processes restarted.
    restarts: usize,
    /// Steps at which a garbler owed a round.
    owed: usize,
    /// Honest members named (excluded by a verdict or a refusal).
    honest_named: usize,
    /// Honest members' links ended on an error of theirs.
    honest_errors: usize,
    /// Whether every garbler was named.
    garblers_named: bool,
    /// Whether every byte arrived (of every transfer of a member that did not restart:
    /// `checked`).
    delivered: bool,
    checked: usize,
}

/// One seed: what it saw (the caller asserts).
fn search(seed: u64) -> (String, Seen) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut cfg = NetConfig::new(N, 2, 256);
    cfg.window = [4, 8, 16][rng.next_u64() as usize % 3];
    cfg.max_cell_len = 1024;
    cfg.latency = Duration::from_micros(50 + rng.next_u64() % 500);
    let garblers: Vec<usize> = if rng.next_u64().is_multiple_of(3) {
        vec![N - 1, N - 2]
    } else {
        vec![N - 1]
    };
    let honest: Vec<usize> = (0..N).filter(|i| !garblers.contains(i)).collect();
    let mode = [
        DisruptorMode::GarbleEveryOther,
        DisruptorMode::GarbleAll,
        DisruptorMode::GarbleData,
    ][rng.next_u64() as usize % 3];
    let timeout = cfg.exchange_timeout;
    let what = format!(
        "seed {seed}: window {}, latency {:?}, garblers {garblers:?} ({mode:?})",
        cfg.window, cfg.latency
    );
    let mut net = Net::new(cfg);
    net.run_until(200_000, |s| s.relay.interval().is_some_and(|(_, n)| n == N));
    assert!(
        net.relay.interval().is_some_and(|(_, n)| n == N),
        "{what}: the group did not start"
    );
    let mut expect: BTreeMap<ConnId, (usize, Vec<u8>)> = BTreeMap::new();
    for &i in &honest {
        let conn = net.open(i);
        let data = pattern(
            seed as usize * 13 + i,
            5_000 + rng.next_u64() as usize % 15_000,
        );
        net.send_bytes(i, conn, data.clone());
        expect.insert(conn, (i, data));
    }
    net.run_steps(rng.next_u64() as usize % 300);
    if seed.is_multiple_of(2) {
        net.reveal_late = Duration::from_micros(rng.next_u64() % 40_000);
    }
    // Some garblers lie about their pads (the round then needs every reveal and a
    // dispute to name them); some leave as their round starts, and come back later.
    let liar = rng.next_u64().is_multiple_of(2);
    // (One garbler: of two that leave together, the one whose reveal is not needed once
    // the other's convicts it is let go, as an honest member away would be.)
    let leaver = rng.next_u64().is_multiple_of(2) && garblers.len() == 1;
    for &g in &garblers {
        net.clients[g].set_disruptor(Some(mode));
        net.clients[g].set_lie_about_pads(liar);
    }
    let named = |s: &Net, i: usize| s.excluded.iter().any(|e| e.1 == PeerId::Client(i as u16));
    let mut seen = Seen::default();
    // Honest members down, and until when.
    let mut down: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut rounds_seen = 0;
    let mut cuts = [0usize; N];
    // Connections of members whose process restarted: they ended with it (not counted).
    let mut dead: BTreeSet<ConnId> = BTreeSet::new();
    let mut more = 0;
    for _ in 0..2_000_000 {
        // Members back once their time is up.
        let back: Vec<usize> = down
            .iter()
            .filter(|(_, &until)| net.now >= until)
            .map(|(&i, _)| i)
            .collect();
        for i in back {
            down.remove(&i);
            net.connect(Node::Client(i));
        }
        // A garbler in no interval because it owes a round disrupts nothing meanwhile.
        for &g in &garblers {
            if net.relay.owes_blame(g as u16) {
                seen.owed += 1;
                let running = net.relay.interval().map(|r| r.0);
                assert!(
                    running.is_none() || net.clients[g].interval() != running,
                    "{what}: garbler {g} owes a round but is a member of {running:?}"
                );
            }
        }
        // A round started: often an honest member's link goes down right then, for longer
        // than the round's deadline (or not: it comes back within it).
        let cut_now = if net.blame_started.len() > rounds_seen {
            rounds_seen = net.blame_started.len();
            if leaver {
                for &g in &garblers {
                    if net.is_up(Node::Client(g)) && !down.contains_key(&g) && cuts[g] < 2 {
                        let span = timeout.as_micros() * (1 + rng.next_u64() % 4);
                        net.disconnect(Node::Client(g));
                        down.insert(g, net.now + Duration::from_micros(span));
                        cuts[g] += 1;
                    }
                }
            }
            !rng.next_u64().is_multiple_of(3)
        } else {
            // Or at any time, now and then.
            rng.next_u64().is_multiple_of(20_000)
        };
        let honest_down = down.keys().filter(|i| honest.contains(i)).count();
        if cut_now && honest_down + 1 < honest.len() {
            // A few times each: more joins than the relay's rejoin limit are a penalty.
            let up: Vec<usize> = honest
                .iter()
                .copied()
                .filter(|i| !down.contains_key(i) && net.is_up(Node::Client(*i)) && cuts[*i] < 3)
                .collect();
            if !up.is_empty() {
                let i = up[rng.next_u64() as usize % up.len()];
                let span = rng.next_u64() % (3 * timeout.as_micros());
                let until = net.now + Duration::from_micros(span + timeout.as_micros() / 4);
                // One cut in four is a restart: the process comes back with nothing.
                if rng.next_u64().is_multiple_of(4) {
                    net.restart_client(i);
                    dead.extend(expect.iter().filter(|(_, (o, _))| *o == i).map(|(&c, _)| c));
                    seen.restarts += 1;
                } else {
                    net.disconnect(Node::Client(i));
                }
                down.insert(i, until);
                cuts[i] += 1;
                seen.drops += 1;
                if net.relay.blame_running() {
                    seen.drops_in_round += 1;
                }
            }
        }
        let all_named = garblers.iter().all(|&g| named(&net, g));
        let done = expect
            .iter()
            .filter(|(c, _)| !dead.contains(c))
            .all(|(c, (i, d))| {
                net.exit.upstream.get(c).map_or(0, Vec::len) >= d.len()
                    && net.apps[*i].received.get(c).map_or(0, Vec::len) >= d.len()
            });
        let quiet = !net.relay.blame_running() && net.relay.blame_parked() == 0;
        if done && !all_named && more < 8 && quiet {
            // A garbler disrupts only cells that carry something: more from an honest
            // member that is up (and in the group), as a busy group would (not while a
            // round runs or is parked: a garbler that owes one garbles nothing meanwhile,
            // and the few top-ups are kept for when it is back).
            let sender = honest
                .iter()
                .copied()
                .find(|&i| net.is_up(Node::Client(i)) && net.clients[i].interval().is_some());
            if let Some(i) = sender {
                more += 1;
                let live = expect
                    .iter()
                    .find(|(c, (o, _))| *o == i && !dead.contains(c))
                    .map(|(&c, _)| c);
                let conn = live.unwrap_or_else(|| net.open(i));
                let extra = pattern(seed as usize * 17 + more, 3_000);
                net.send_bytes(i, conn, extra.clone());
                expect
                    .entry(conn)
                    .or_insert((i, Vec::new()))
                    .1
                    .extend_from_slice(&extra);
                continue;
            }
        }
        if done && all_named && down.is_empty() {
            break;
        }
        if !net.step() {
            // Nothing in flight: time moves on to the next member's return.
            match down.values().min() {
                Some(&t) => net.now = net.now.max(t),
                None => break,
            }
        }
    }
    let is_honest = |p: &PeerId| !garblers.iter().any(|&g| *p == PeerId::Client(g as u16));
    seen.honest_named = net.excluded.iter().filter(|e| is_honest(&e.1)).count();
    // An honest member's link never ends on an error of its own (one back within an
    // interval a round holds takes that interval's frames on its new link).
    seen.honest_errors = net
        .node_errors
        .iter()
        .filter(|(n, _)| is_honest(&n.peer()))
        .count();
    seen.garblers_named = garblers.iter().all(|&g| named(&net, g));
    seen.checked = expect.iter().filter(|(c, _)| !dead.contains(c)).count();
    seen.delivered = expect
        .iter()
        .filter(|(c, _)| !dead.contains(c))
        .all(|(c, (i, d))| {
            net.exit.upstream.get(c).map_or(&[][..], Vec::as_slice) == &d[..]
                && net.apps[*i].received.get(c).map_or(&[][..], Vec::as_slice) == &d[..]
                && net.exit.opened.get(c) == Some(&1)
        })
        && net.apps.iter().all(|a| a.lost.is_empty());
    seen.started = net.blame_started.len();
    seen.parked = net.blame_awaiting.len();
    let what = format!(
        "{what}, liar {liar}, leaver {leaver}: {} drops ({} in a round), {} rounds, excluded {:?}, penalties {:?}, \
         node errors {:?}",
        seen.drops, seen.drops_in_round, seen.started, net.excluded, net.penalties, net.node_errors
    );
    (what, seen)
}

#[test]
fn an_honest_member_absent_at_a_rounds_deadline_is_never_convicted() {
    let from = env("DISSENT_SEED_FROM", 0);
    let seeds = env("DISSENT_SEEDS", 8);
    let (mut drops, mut in_round, mut started, mut parked, mut checked) = (0, 0, 0, 0, 0);
    let mut owed = 0;
    let mut restarts = 0;
    let mut errors = 0;
    let mut failed = Vec::new();
    for seed in from..from + seeds {
        let (what, seen) = search(seed);
        if seen.honest_named > 0
            || seen.honest_errors > 0
            || !seen.garblers_named
            || !seen.delivered
        {
            failed.push(format!("{what} ({seen:?})"));
        }
        drops += seen.drops;
        in_round += seen.drops_in_round;
        started += seen.started;
        parked += seen.parked;
        checked += seen.checked;
        owed += seen.owed;
        restarts += seen.restarts;
        errors += seen.honest_errors;
    }
    eprintln!(
        "{seeds} seeds: {drops} links of honest members cut ({in_round} during a round, \
         {restarts} restarts), \
         {started} rounds begun ({parked} waited for members away), {checked} transfers \
         checked byte for byte, garblers owing a round for {owed} steps, honest links ended \
         on an error {errors}; {} seeds failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(in_round > 0, "no link was cut during a round");
    assert!(parked > 0, "no round waited for a member");
}

/// A garbler leaves as its round starts and stays away past the deadline: it is not
/// convicted on the relay's word, it owes the round and is a member of no interval while
/// it does (not even when the group starts a new one beside it), and it is convicted when
/// it comes back: by its own reveal, or for refusing if it will not answer.
fn garbler_leaves_mid_round(refuses: bool) {
    let mut net = Net::running_group(N, 8);
    let g = N - 1;
    let conn = net.open(0);
    net.send_bytes(0, conn, pattern(7, 20_000));
    net.clients[g].set_disruptor(Some(DisruptorMode::GarbleAll));
    net.run_until(400_000, |s| !s.blame_started.is_empty());
    let started = net.now;
    net.disconnect(Node::Client(g));
    let timeout = net.cfg.exchange_timeout;
    net.run_until(400_000, |s| s.now >= started + timeout + timeout);
    assert_eq!(net.blame_awaiting.len(), 1, "{:?}", net.blame_ended);
    assert!(net.excluded.is_empty(), "{:?}", net.excluded);
    assert!(net.relay.owes_blame(g as u16));
    // Back, owing: a new interval starts (another member leaves and comes back) without it.
    if refuses {
        net.refuse_blame.push(Node::Client(g));
    }
    net.connect(Node::Client(g));
    let back = net.now;
    let first = net.intervals.len();
    net.disconnect(Node::Client(0));
    net.connect(Node::Client(0));
    let mut in_interval = false;
    for _ in 0..400_000 {
        if !net.excluded.is_empty() || !net.step() {
            break;
        }
        in_interval |= net.clients[g].interval().is_some();
    }
    assert!(
        !in_interval,
        "the garbler joined an interval while it owed a round"
    );
    // One that refuses has the round's timeout to answer: the group went on meanwhile.
    assert!(
        !refuses || net.intervals.len() > first,
        "no interval started meanwhile"
    );
    let &(at, who, why) = net.excluded.first().expect("the garbler was not convicted");
    assert_eq!(who, PeerId::Client(g as u16));
    assert!(at >= back);
    let kind = if refuses {
        BlameKind::RefusedBlame
    } else {
        BlameKind::Disrupted
    };
    assert!(
        matches!(why, Exclusion::Convicted { kind: k, .. } if k == kind),
        "{why:?}"
    );
    assert_eq!(net.excluded.len(), 1, "{:?}", net.excluded);
    let evidence = net.evidence.last().expect("evidence");
    let v = blame::verify(evidence, &net.directory()).expect("evidence checks offline");
    assert_eq!((v.who, v.kind), (Culprit::Client(g as u16), kind));
}

#[test]
fn a_garbler_that_leaves_mid_round_is_convicted_by_its_reveal_when_back() {
    garbler_leaves_mid_round(false);
}

#[test]
fn a_garbler_that_leaves_mid_round_and_refuses_when_back_is_convicted() {
    garbler_leaves_mid_round(true);
}

/// An honest member away at its round's deadline whose process then restarts comes back
/// with nothing to reveal: it is taken at its word (no resume point in its Hello), not
/// convicted, penalized, and joins the group again; the round goes on without its reveal
/// and still waits for the garbler, which left as well: back, its reveal convicts it.
#[test]
fn an_honest_member_that_restarts_while_it_owes_a_round_is_not_convicted() {
    let mut net = Net::running_group(N, 8);
    let g = N - 1;
    let conn = net.open(0);
    net.send_endless(0, conn);
    net.clients[g].set_disruptor(Some(DisruptorMode::GarbleAll));
    net.run_until(400_000, |s| !s.blame_started.is_empty());
    let started = net.now;
    net.disconnect(Node::Client(1));
    net.disconnect(Node::Client(g));
    let timeout = net.cfg.exchange_timeout;
    net.run_until(400_000, |s| s.now >= started + timeout + timeout);
    // The round waits for both.
    assert_eq!(net.blame_awaiting.len(), 1, "{:?}", net.blame_ended);
    assert_eq!(net.blame_awaiting[0].3, 2);
    assert!(net.relay.owes_blame(1) && net.relay.owes_blame(g as u16));
    net.restart_client(1);
    net.connect(Node::Client(1));
    net.run_until(400_000, |s| !s.blame_restarted.is_empty());
    assert_eq!(net.blame_restarted[0].3, 1);
    assert!(!net.relay.owes_blame(1) && net.relay.owes_blame(g as u16));
    assert!(net
        .penalties
        .iter()
        .any(|p| p.1 == PeerId::Client(1) && p.2 == dissent_core::relay::Stall::Restarted));
    // Back in the group while the garbler still owes the round.
    net.run_until(400_000, |s| s.clients[1].interval().is_some());
    assert!(net.excluded.is_empty(), "{:?}", net.excluded);
    net.connect(Node::Client(g));
    let g_named = |s: &Net| s.excluded.iter().any(|e| e.1 == PeerId::Client(g as u16));
    net.run_until(400_000, g_named);
    assert_eq!(net.excluded.len(), 1, "{:?}", net.excluded);
    let Exclusion::Convicted { kind, .. } = net.excluded[0].2 else {
        panic!("{:?}", net.excluded);
    };
    assert_eq!(kind, BlameKind::Disrupted);
    let evidence = net.evidence.last().expect("evidence");
    let v = blame::verify(evidence, &net.directory()).expect("evidence checks offline");
    assert_eq!(
        (v.who, v.kind),
        (Culprit::Client(g as u16), BlameKind::Disrupted)
    );
}

/// An owned cell disrupted while its owner's link is down (the relay's `Disrupted` frame
/// never reaches it): the owner learns of it from the interval's history when it is back,
/// and sends that cell's records again, with those of its later cells the relay withheld;
/// every byte arrives once, in order.
#[test]
fn an_owned_cell_disrupted_while_its_owner_is_away_arrives_once_it_is_back() {
    let mut net = Net::running_group(N, 8);
    let conn = net.open(0);
    let data = pattern(11, 6_000);
    net.send_bytes(0, conn, data.clone());
    // Client 0's next owned cell is garbled on its way; its link goes down as soon as the
    // relay decoded it, before the `Disrupted` frame can arrive.
    net.disrupt = Some(0);
    net.run_until(400_000, |s| !s.exit.garbled_at.is_empty());
    let (interval, exchange) = net.exit.garbled_at[0];
    net.disconnect(Node::Client(0));
    let before = net.exit.upstream.get(&conn).map_or(0, Vec::len);
    assert!(before < data.len(), "every byte arrived before the cut");
    // The others go on without it; then it is back.
    let away = net.intervals.len();
    net.run_until(400_000, |s| s.intervals.len() > away);
    assert!(net.clients[0].interval().is_none());
    net.connect(Node::Client(0));
    net.run_until(400_000, |s| {
        s.exit.upstream.get(&conn).map_or(0, Vec::len) >= data.len()
    });
    assert_eq!(net.exit.garbled_at, [(interval, exchange)]);
    assert_eq!(
        net.exit.upstream.get(&conn).map(Vec::as_slice),
        Some(&data[..])
    );
    assert_eq!(net.exit.opened.get(&conn), Some(&1));
    assert!(net.apps[0].lost.is_empty(), "{:?}", net.apps[0].lost);
    assert!(
        net.excluded.is_empty() && net.node_errors.is_empty(),
        "{:?}",
        net.node_errors
    );
}

/// The bound: a disruptor is excluded within 5 s of its first disruption (at 64
/// clients; the net here is smaller).
const NAMED_WITHIN: Duration = Duration::from_millis(5_000);

/// What one seed of the parked-round search saw.
#[derive(Debug, Default)]
struct Aside {
    /// Rounds parked when the present disruptor started, and the most at once.
    parked_at_start: usize,
    most_parked: usize,
    /// How long after it started the present disruptor was named (`None`: not by the end).
    named_after: Option<Duration>,
    /// Honest members named.
    honest_named: usize,
    /// Garblers that left named once back (every one that left must be).
    leavers_named: bool,
    /// A leaver's round did not begin while it garbled.
    held_up: bool,
    delivered: bool,
    checked: usize,
}

/// Rounds parked now: those that parked and have not ended.
fn parked_now(net: &Net) -> usize {
    net.blame_awaiting
        .iter()
        .filter(|a| {
            !net.blame_ended
                .iter()
                .any(|e| (e.1, e.2) == (a.1, a.2) && e.0 >= a.0)
        })
        .count()
}

/// One seed: garblers garble one after the other and leave as their round starts, with an
/// honest member or two (one of them sometimes restarted, or a garbler restarted instead
/// of away), so that up to two rounds park waiting for them; then a disruptor that stayed
/// starts garbling. It must be named within [`NAMED_WITHIN`] of its start though the
/// rounds before it are parked; the ones away come back later, answer (or, restarted,
/// cannot), and every byte of every honest transfer arrives.
fn search_aside(seed: u64) -> (String, Aside) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x5eed_a51d);
    let n = 6 + rng.next_u64() as usize % 3;
    let mut cfg = NetConfig::new(n, 2, 256);
    cfg.window = [4, 8, 16][rng.next_u64() as usize % 3];
    cfg.max_cell_len = 1024;
    cfg.latency = Duration::from_micros(50 + rng.next_u64() % 500);
    // Members away for seconds miss what the others' transfers echo meanwhile: room to
    // replay it all (a member that missed more than it can take is lost by design,
    // protocol.md §5.10; not what this search is about).
    cfg.replay_len = 1 << 20;
    cfg.log_len = 2 << 20;
    cfg.policy.log_window.bytes = 1 << 20;
    let leavers: Vec<usize> = if rng.next_u64().is_multiple_of(2) {
        vec![n - 1, n - 3]
    } else {
        vec![n - 1]
    };
    // A leaver that restarts instead (its round then waits for the honest member alone).
    let restarter = rng.next_u64().is_multiple_of(3);
    let stayer = n - 2;
    let honest: Vec<usize> = (0..n)
        .filter(|i| !leavers.contains(i) && *i != stayer)
        .collect();
    let modes = [
        DisruptorMode::GarbleEveryOther,
        DisruptorMode::GarbleAll,
        DisruptorMode::GarbleData,
    ];
    let mode = modes[rng.next_u64() as usize % 3];
    let liar = rng.next_u64().is_multiple_of(2);
    let away_for = Duration::from_millis(10_000 + rng.next_u64() % 30_000);
    let what = format!(
        "seed {seed}: {n} clients, window {}, latency {:?}, leavers {leavers:?} (restarter \
         {restarter}), stayer {stayer} ({mode:?}, liar {liar}), away {away_for:?}",
        cfg.window, cfg.latency
    );
    let mut net = Net::new(cfg);
    net.run_until(200_000, |s| s.relay.interval().is_some_and(|(_, m)| m == n));
    let mut expect: BTreeMap<ConnId, (usize, Vec<u8>)> = BTreeMap::new();
    let send = |net: &mut Net,
                expect: &mut BTreeMap<ConnId, (usize, Vec<u8>)>,
                i: usize,
                len: usize,
                salt: usize| {
        let conn = net.open(i);
        let data = pattern(seed as usize * 13 + salt, len);
        net.send_bytes(i, conn, data.clone());
        expect.insert(conn, (i, data));
    };
    for &i in &honest {
        send(
            &mut net,
            &mut expect,
            i,
            4_000 + rng.next_u64() as usize % 8_000,
            i,
        );
    }
    let named = |s: &Net, i: usize| s.excluded.iter().any(|e| e.1 == PeerId::Client(i as u16));
    // Honest members away, and until when; connections that ended with a restart.
    let mut down: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut dead: BTreeSet<ConnId> = BTreeSet::new();
    let mut seen = Aside::default();
    let mut away: Vec<usize> = Vec::new();
    let mut excused: Vec<usize> = Vec::new();
    if restarter {
        // It restarted instead of leaving: taken at its word (security.md, "A restart").
        excused.push(leavers[0]);
    }
    for (k, &g) in leavers.iter().enumerate() {
        net.clients[g].set_disruptor(Some(DisruptorMode::GarbleAll));
        net.clients[g].set_lie_about_pads(liar);
        let started = net.blame_started.len();
        let parked = net.blame_awaiting.len();
        for _ in 0..400_000 {
            if net.blame_started.len() > started || !net.step() {
                break;
            }
        }
        if net.blame_started.len() == started {
            // Held up behind a parked round: recorded, the search goes on.
            seen.held_up = true;
        }
        // It leaves as its round starts, with an honest member (or two).
        let h = honest[(k + rng.next_u64() as usize) % honest.len()];
        if restarter && k == 0 {
            net.restart_client(g);
            net.connect(Node::Client(g));
        } else {
            net.disconnect(Node::Client(g));
            down.insert(g, net.now + away_for);
        }
        if let std::collections::btree_map::Entry::Vacant(slot) = down.entry(h) {
            if rng.next_u64().is_multiple_of(4) {
                net.restart_client(h);
                dead.extend(expect.iter().filter(|(_, (o, _))| *o == h).map(|(&c, _)| c));
                // Its round then convicts only members whose own reveals convict them: a
                // leaver that lies about its pads is let go (security.md, "A restart").
                if liar {
                    excused.push(g);
                }
            } else {
                net.disconnect(Node::Client(h));
            }
            slot.insert(net.now + away_for + Duration::from_millis(k as u64 * 1_000));
            away.push(h);
        }
        for _ in 0..400_000 {
            if net.blame_awaiting.len() > parked || net.blame_ended.len() >= net.blame_started.len()
            {
                break;
            }
            if !net.step() {
                break;
            }
        }
        // Honest traffic goes on from a member still there.
        if let Some(&i) = honest.iter().find(|i| !down.contains_key(i)) {
            send(&mut net, &mut expect, i, 3_000, 100 + k);
        }
    }
    seen.parked_at_start = parked_now(&net);
    // The disruptor that stayed starts now, while the honest member(s) are away.
    let t0 = net.now;
    net.clients[stayer].set_disruptor(Some(mode));
    net.clients[stayer].set_lie_about_pads(liar);
    if let Some(&i) = honest.iter().find(|i| !down.contains_key(i)) {
        send(&mut net, &mut expect, i, 20_000, 200);
    }
    let mut others_done = false;
    for _ in 0..3_000_000 {
        seen.most_parked = seen.most_parked.max(parked_now(&net));
        if seen.named_after.is_none() && named(&net, stayer) {
            seen.named_after = Some(net.now - t0);
        }
        let back: Vec<usize> = down
            .iter()
            .filter(|(_, &until)| net.now >= until)
            .map(|(&i, _)| i)
            .collect();
        for i in back {
            down.remove(&i);
            net.connect(Node::Client(i));
        }
        let done = expect
            .iter()
            .filter(|(c, _)| !dead.contains(c))
            .all(|(c, (i, d))| {
                net.exit.upstream.get(c).map_or(0, Vec::len) >= d.len()
                    && net.apps[*i].received.get(c).map_or(0, Vec::len) >= d.len()
            });
        let leavers_settled = leavers
            .iter()
            .all(|&g| named(&net, g) || excused.contains(&g));
        others_done = done && leavers_settled && parked_now(&net) == 0;
        if others_done && named(&net, stayer) && down.is_empty() {
            break;
        }
        if !net.step() {
            match down.values().min() {
                Some(&t) => net.now = net.now.max(t),
                None => break,
            }
        }
    }
    let is_honest = |p: &PeerId| honest.iter().any(|&h| *p == PeerId::Client(h as u16));
    seen.honest_named = net.excluded.iter().filter(|e| is_honest(&e.1)).count();
    seen.leavers_named = others_done;
    seen.checked = expect.iter().filter(|(c, _)| !dead.contains(c)).count();
    seen.delivered = expect
        .iter()
        .filter(|(c, _)| !dead.contains(c))
        .all(|(c, (i, d))| {
            net.exit.upstream.get(c).map_or(&[][..], Vec::as_slice) == &d[..]
                && net.apps[*i].received.get(c).map_or(&[][..], Vec::as_slice) == &d[..]
                && net.exit.opened.get(c) == Some(&1)
        })
        && net.apps.iter().all(|a| a.lost.is_empty());
    let what = format!(
        "{what}, honest away {away:?} (let go {excused:?}), short {:?}, now {:?}, relay \
         interval {:?}, theirs {:?}, owes {:?}, up {:?}, dropped {:?}, penalties {:?}: rounds {:?}, parked {:?}, ended {:?}, restarted {:?}, \
         excluded {:?}, node errors {:?}",
        expect
            .iter()
            .filter(|(c, (i, d))| !dead.contains(c)
                && (net.exit.upstream.get(c).map_or(0, Vec::len) < d.len()
                    || net.apps[*i].received.get(c).map_or(0, Vec::len) < d.len()))
            .map(|(c, (i, d))| (*c, *i, d.len(), net.exit.upstream.get(c).map_or(0, Vec::len),
                net.apps[*i].received.get(c).map_or(0, Vec::len)))
            .collect::<Vec<_>>(),
        net.now,
        net.relay.interval(),
        (0..n).map(|i| net.clients[i].interval()).collect::<Vec<_>>(),
        (0..n).filter(|&i| net.relay.owes_blame(i as u16)).collect::<Vec<_>>(),
        (0..n).filter(|&i| net.is_up(Node::Client(i))).collect::<Vec<_>>(),
        net.dropped,
        net.penalties,
        net.blame_started,
        net.blame_awaiting,
        net.blame_ended,
        net.blame_restarted,
        net.excluded,
        net.node_errors
    );
    (what, seen)
}

/// A round parked for members away steps aside: a disruptor that stayed is named within
/// the bound while it waits, no honest member is named, the leavers are convicted once
/// back, and every honest byte arrives.
#[test]
fn a_disruptor_present_is_named_within_the_bound_while_a_round_waits_for_the_absent() {
    let from = env("DISSENT_SEED_FROM", 0);
    let seeds = env("DISSENT_SEEDS", 8);
    let mut failed = Vec::new();
    let (mut parked, mut most, mut slowest, mut checked) = (0, 0, Duration::default(), 0);
    for seed in from..from + seeds {
        let (what, seen) = search_aside(seed);
        let within = seen.named_after.is_some_and(|t| t <= NAMED_WITHIN);
        if !within
            || seen.held_up
            || seen.honest_named > 0
            || !seen.leavers_named
            || !seen.delivered
        {
            failed.push(format!("{what} ({seen:?})"));
        }
        parked += seen.parked_at_start;
        most = most.max(seen.most_parked);
        slowest = slowest.max(seen.named_after.unwrap_or(Duration::from_micros(u64::MAX)));
        checked += seen.checked;
    }
    eprintln!(
        "{seeds} seeds: {parked} rounds parked as the present disruptor started (at most {most} \
         at once), the slowest named after {slowest:?}, {checked} transfers checked byte for \
         byte; {} seeds failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(parked > 0, "no round was parked when the disruptor started");
}

/// The relay holds at most `MAX_PARKED` parked rounds: five garblers leave one after the
/// other as their rounds start, each round parks for its own, and the fifth to park makes
/// the oldest give up (reported, no verdict): its garbler owes nothing more and may join
/// again; the other four still owe theirs, and nobody is convicted while away.
#[test]
fn the_oldest_parked_round_gives_up_when_one_more_parks() {
    use dissent_core::relay::MAX_PARKED;
    let n = 3 + MAX_PARKED + 1;
    let mut net = Net::running_group(n, 8);
    let conn = net.open(0);
    net.send_endless(0, conn);
    let leavers: Vec<usize> = (3..n).collect();
    for &g in &leavers {
        let parked = net.blame_awaiting.len();
        net.clients[g].set_disruptor(Some(DisruptorMode::GarbleAll));
        let started = net.blame_started.len();
        net.run_until(400_000, |s| s.blame_started.len() > started);
        net.disconnect(Node::Client(g));
        net.run_until(400_000, |s| s.blame_awaiting.len() > parked);
        assert!(net.relay.owes_blame(g as u16));
    }
    assert_eq!(net.relay.blame_parked(), MAX_PARKED);
    assert_eq!(net.blame_gave_up.len(), 1, "{:?}", net.blame_gave_up);
    let (_, interval, exchange, members) = net.blame_gave_up[0];
    assert_eq!(
        (interval, exchange),
        (net.blame_awaiting[0].1, net.blame_awaiting[0].2)
    );
    assert_eq!(members, 1);
    assert!(net
        .blame_ended
        .iter()
        .any(|e| (e.1, e.2) == (interval, exchange) && e.3.is_none()));
    assert!(!net.relay.owes_blame(leavers[0] as u16));
    for &g in &leavers[1..] {
        assert!(net.relay.owes_blame(g as u16), "{g}");
    }
    assert!(net.excluded.is_empty(), "{:?}", net.excluded);
}
