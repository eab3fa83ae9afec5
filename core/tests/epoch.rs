//! The epoch setup over a simulated relay: N clients, M trustees, every message through the
//! relay's state machine, every node verifying everything. Cheating trustees are convicted
//! with evidence; a relay that drops, reorders, duplicates or alters messages is named and
//! never makes a node accept a wrong slot order.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use dissent_core::epoch::message::{signature_holds, SetupMessage, Stage, MAX_CHUNK_DATA};
use dissent_core::epoch::{
    Cheat, Conviction, Departure, Event, FailedCheck, Failure, Refusal, RelayFault, RelayStep,
    SetupClient, SetupStorage, Waiting,
};
use dissent_core::ristretto::shuffle::{Equation, ShuffleError};
use dissent_core::testkit::epoch::{
    identity, Client, Driver, EpochNet, EpochSpec, CLIENT, FRAME_ROOM, GROUP,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const EPOCH: u64 = 7;

/// Which node a frame goes to: trustees first, then clients.
type NodeId = usize;

/// What the relay does to the frames one node gets (everything else it forwards honestly).
#[derive(Debug, Clone, Copy)]
enum Misbehave {
    Drop,
    Duplicate,
    /// Holds the frame back and sends it after the next one.
    Reorder,
    /// Flips one bit (at the given position, modulo the frame's bits).
    Alter(usize),
}

/// The relay's broadcast through a misbehaviour plan, and the convictions nodes report.
#[derive(Default)]
struct Plan {
    /// (node, index of the frame in the broadcast stream, what to do).
    faults: Vec<(NodeId, usize, Misbehave)>,
    sent: usize,
    held: HashMap<NodeId, Vec<u8>>,
    convictions: Vec<(NodeId, Conviction)>,
}

impl Plan {
    fn give(&mut self, net: &mut Net, node: NodeId, frame: &[u8]) {
        if let Ok(Event::Restarting(c)) = net.give(node, frame) {
            self.convictions.push((node, c));
        }
    }
}

impl Driver<ChaCha20Rng> for Plan {
    /// The relay's broadcast of one frame, through the misbehaviour plan.
    fn broadcast(&mut self, net: &mut Net, frame: &[u8]) {
        let index = self.sent;
        self.sent += 1;
        for node in 0..net.nodes() {
            let fault = self
                .faults
                .iter()
                .find(|(n, i, _)| *n == node && *i == index)
                .map(|f| f.2);
            let held = self.held.remove(&node);
            match fault {
                None => self.give(net, node, frame),
                Some(Misbehave::Drop) => {}
                Some(Misbehave::Duplicate) => {
                    self.give(net, node, frame);
                    self.give(net, node, frame);
                }
                Some(Misbehave::Reorder) => {
                    self.held.insert(node, frame.to_vec());
                }
                Some(Misbehave::Alter(bit)) => {
                    let mut altered = frame.to_vec();
                    let bit = bit % (altered.len() * 8);
                    altered[bit / 8] ^= 1 << (bit % 8);
                    self.give(net, node, &altered);
                }
            }
            if let Some(h) = held {
                self.give(net, node, &h);
            }
        }
    }
}

type Net = EpochNet<ChaCha20Rng>;

struct Sim {
    net: Net,
    plan: Plan,
}

impl Sim {
    fn new(n: usize, m: usize, min_trustees: usize, seed: u64) -> Sim {
        Self::with(n, m, min_trustees, seed, &|_| true)
    }

    fn with(
        n: usize,
        m: usize,
        min_trustees: usize,
        seed: u64,
        participant: &dyn Fn(usize) -> bool,
    ) -> Sim {
        Self::with_spare(n, m, min_trustees, seed, participant, 0)
    }

    /// As [`Sim::with`], every node's storage `spare` bytes longer in each region.
    fn with_spare(
        n: usize,
        m: usize,
        min_trustees: usize,
        seed: u64,
        participant: &dyn Fn(usize) -> bool,
        spare: usize,
    ) -> Sim {
        let spec = EpochSpec {
            clients: n,
            trustees: m,
            min_trustees,
            epoch: EPOCH,
            chunk_len: MAX_CHUNK_DATA,
            spare,
        };
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Sim {
            net: EpochNet::new(spec, participant, ChaCha20Rng::from_seed(seed_bytes)),
            plan: Plan::default(),
        }
    }

    /// The relay's broadcast of one frame, through the misbehaviour plan.
    fn deliver(&mut self, frame: &[u8]) {
        self.plan.broadcast(&mut self.net, frame);
    }

    /// Runs until nothing moves; returns the relay's steps that refused or stopped.
    fn run(&mut self) -> Vec<RelayStep> {
        self.net.run(&mut self.plan)
    }

    /// Every node's outcome: its slot order, or its failure (after the shell's timeout).
    fn outcomes(&mut self) -> Vec<Result<Vec<Vec<u8>>, Failure>> {
        let mut out = Vec::new();
        for t in &mut self.net.trustees {
            out.push(match (t.established(), t.failure()) {
                (Some(_), _) => Ok(t.pseudonyms().map(<[u8]>::to_vec).collect()),
                (None, Some(f)) => Err(f),
                (None, None) => Err(t.stalled()),
            });
        }
        for c in &mut self.net.clients {
            out.push(match (c.established(), c.failure()) {
                (Some(_), _) => Ok(c.pseudonyms().map(<[u8]>::to_vec).collect()),
                (None, Some(f)) => Err(f),
                (None, None) => Err(c.stalled()),
            });
        }
        out
    }

    fn relay_list(&self) -> Vec<Vec<u8>> {
        self.net.relay.pseudonyms().map(<[u8]>::to_vec).collect()
    }
}

/// Every client's pseudonym key is in `list` exactly once, at its own slot.
fn every_key_once(sim: &Sim, list: &[Vec<u8>]) {
    for (i, c) in sim.net.clients.iter().enumerate() {
        let mine = c.pseudonym().unwrap().public_key().to_bytes();
        let at: Vec<usize> = (0..list.len()).filter(|&s| list[s] == mine).collect();
        assert_eq!(at.len(), 1, "client {i}");
        assert_eq!(c.slot(), Some(at[0] as u16), "client {i}");
    }
}

#[test]
fn a_full_setup_gives_every_client_one_slot_in_an_order_only_the_trustees_made() {
    let mut sim = Sim::new(12, 3, 3, 1);
    assert!(sim.run().is_empty());
    let relay = sim.net.relay.established().expect("relay established");
    assert_eq!((relay.epoch, relay.attempt, relay.slots), (EPOCH, 0, 12));
    let list = sim.relay_list();
    for outcome in sim.outcomes() {
        assert_eq!(
            outcome.as_ref().unwrap(),
            &list,
            "every node has the same list"
        );
    }
    every_key_once(&sim, &list);
    let slots: Vec<u16> = sim.net.clients.iter().map(|c| c.slot().unwrap()).collect();
    assert_ne!(
        slots,
        (0..12).collect::<Vec<u16>>(),
        "not the submission order"
    );

    // The same clients, trustees 0 and 1 with the same randomness, trustee 2 with other
    // randomness: another order. No trustee alone (nor the relay, nor the clients) fixes it.
    let order = |seed_for_trustee_2: u64| -> Vec<u16> {
        let mut sim = Sim::new(12, 3, 3, 1);
        // Run with a per-trustee RNG: give trustee 2 its own stream by consuming from the
        // shared one at its turn.
        sim.net.rng = ChaCha20Rng::seed_from_u64(1);
        let mut own = OwnStream {
            trustee: 2,
            rng: ChaCha20Rng::seed_from_u64(seed_for_trustee_2),
        };
        assert!(sim.net.run(&mut own).is_empty());
        assert!(sim.net.relay.established().is_some());
        sim.net.clients.iter().map(|c| c.slot().unwrap()).collect()
    };
    let a = order(100);
    let b = order(101);
    assert_ne!(a, b, "trustee 2's secret permutation changes the order");
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..12).collect::<Vec<u16>>(), "a permutation");
}

/// An honest relay, one trustee drawing from its own randomness.
struct OwnStream {
    trustee: NodeId,
    rng: ChaCha20Rng,
}

impl Driver<ChaCha20Rng> for OwnStream {
    fn broadcast(&mut self, net: &mut Net, frame: &[u8]) {
        for j in 0..net.trustees.len() {
            if j == self.trustee {
                net.trustees[j].receive(frame, &mut self.rng).unwrap();
            } else {
                net.trustees[j].receive(frame, &mut net.rng).unwrap();
            }
        }
        for c in &mut net.clients {
            c.receive(frame, &mut net.rng).unwrap();
        }
    }
}

fn cheat_check(cheat: Cheat, check: &FailedCheck) -> bool {
    match (cheat, check) {
        (Cheat::KeyProof, FailedCheck::KeyProof(_)) => true,
        (Cheat::Share, FailedCheck::Shares(_)) => true,
        (
            Cheat::Swap | Cheat::Replace | Cheat::Duplicate | Cheat::Reencryption,
            FailedCheck::Shuffle(e),
        ) => {
            matches!(
                e,
                ShuffleError::Equation(
                    Equation::Commitment | Equation::Reencryption(_) | Equation::Chain(_)
                )
            ) || matches!(e, ShuffleError::Equation(_))
        }
        _ => false,
    }
}

/// The frames one whole attempt sends every node never exceed what
/// `SetupConfig::frames_per_attempt` says (a setup link's queue is sized from it), with
/// small and large chunks and any number of trustees.
#[test]
fn an_attempt_sends_no_more_frames_than_frames_per_attempt_says() {
    for (n, m, chunk_len) in [
        (3, 1, MAX_CHUNK_DATA),
        (12, 3, MAX_CHUNK_DATA),
        (40, 2, 200),
    ] {
        let spec = EpochSpec {
            clients: n,
            trustees: m,
            min_trustees: m,
            epoch: EPOCH,
            chunk_len,
            spare: 0,
        };
        let mut net = EpochNet::new(spec, &|_| true, ChaCha20Rng::from_seed([3; 32]));
        let mut plan = Plan::default();
        assert!(net.run(&mut plan).is_empty());
        let bound = net.config.frames_per_attempt();
        assert!(
            plan.sent <= bound && plan.sent + 2 * m >= bound,
            "{n} clients, {m} trustees, chunks of {chunk_len}: {} frames, bound {bound}",
            plan.sent
        );
    }
}

/// Storage longer than the group needs (a device sizes its regions for the largest group
/// it takes) changes nothing: with every client a participant or only some, every node
/// ends as it does with storage of the exact lengths (the same slot order, a latecomer the
/// same refusal), and no trustee is convicted.
#[test]
fn storage_longer_than_the_group_needs_changes_nothing() {
    let some = |i: usize| i % 3 != 1;
    let every = |_: usize| true;
    let choices: [&dyn Fn(usize) -> bool; 2] = [&every, &some];
    for (k, participant) in choices.into_iter().enumerate() {
        for seed in 0..3u64 {
            let exact = {
                let mut sim = Sim::with(7, 3, 3, seed, participant);
                assert!(sim.run().is_empty(), "seed {seed}");
                sim.outcomes()
            };
            for spare in [1, 64, 4096] {
                let mut sim = Sim::with_spare(7, 3, 3, seed, participant, spare);
                let refused = sim.run();
                assert!(
                    refused.is_empty(),
                    "seed {seed}, spare {spare}: {refused:?}"
                );
                let outcomes = sim.outcomes();
                // Trustees first: each of them established the epoch.
                let trustees = &outcomes[..3];
                assert!(
                    trustees.iter().all(Result::is_ok),
                    "participants {k}, seed {seed}, spare {spare}: {trustees:?}"
                );
                assert_eq!(
                    outcomes, exact,
                    "participants {k}, seed {seed}, spare {spare}"
                );
            }
        }
    }
}

#[test]
fn a_cheating_trustee_is_named_with_evidence_and_setup_recovers_without_it() {
    for cheat in [
        Cheat::Swap,
        Cheat::Replace,
        Cheat::Duplicate,
        Cheat::Reencryption,
        Cheat::Share,
        Cheat::KeyProof,
    ] {
        let mut sim = Sim::new(6, 3, 2, 2);
        sim.net.trustees[1].cheat(cheat);
        let notes = sim.run();
        assert!(notes.is_empty(), "{cheat:?}: {notes:?}");
        // Every node but the cheater convicted trustee 1 in attempt 0, for the right check,
        // with its own signed message as evidence.
        let convicted: Vec<NodeId> = sim.plan.convictions.iter().map(|(n, _)| *n).collect();
        // (A trustee does not re-check its own stages; it does check its own key.)
        let expected: Vec<NodeId> = (0..9)
            .filter(|&n| n != 1 || cheat == Cheat::KeyProof)
            .collect();
        assert_eq!(convicted, expected, "{cheat:?}");
        for (node, c) in &sim.plan.convictions {
            let evidence = if *node < 3 {
                sim.net.trustees[*node].evidence().to_vec()
            } else {
                sim.net.clients[*node - 3].evidence().to_vec()
            };
            assert_eq!((c.trustee, c.attempt), (1, 0), "{cheat:?}");
            assert!(cheat_check(cheat, &c.check), "{cheat:?}: {:?}", c.check);
            assert!(signature_holds(
                &evidence,
                &GROUP,
                &sim.net.config.trustees[1]
            ));
            match SetupMessage::parse(&evidence).unwrap() {
                SetupMessage::Key(k) => assert_eq!(k.trustee, 1),
                SetupMessage::Seal(s) => {
                    assert_eq!(s.trustee, 1);
                    let stage = if cheat == Cheat::Share {
                        Stage::Shares
                    } else {
                        Stage::Shuffle
                    };
                    assert_eq!(s.stage, stage);
                }
                other => panic!("evidence {other:?}"),
            }
            assert!(c.to_string().contains("trustee 1 cheated"));
        }
        // Attempt 1 ran without it and every honest node agrees on a list with every key.
        let relay = sim.net.relay.established().expect("recovered");
        assert_eq!(relay.attempt, 1, "{cheat:?}");
        assert_eq!(relay.trustees, 0b101, "{cheat:?}: the epoch's trustees");
        if cheat != Cheat::KeyProof {
            // The cheater does not re-check its own stages: it learns of its conviction from
            // the attempt that leaves it out.
            let failure = sim.net.trustees[1].failure().unwrap();
            assert_eq!(failure, Failure::Relay(RelayFault::Excluded), "{cheat:?}");
            assert!(failure.to_string().contains("convicted"));
        }
        let list = sim.relay_list();
        for (node, outcome) in sim.outcomes().into_iter().enumerate() {
            if node == 1 {
                continue;
            }
            assert_eq!(outcome.unwrap(), list, "{cheat:?} node {node}");
        }
        every_key_once(&sim, &list);
    }
}

#[test]
fn a_cheating_trustee_stops_setup_clearly_when_too_few_would_remain() {
    let mut sim = Sim::new(5, 3, 3, 3);
    sim.net.trustees[2].cheat(Cheat::Swap);
    let notes = sim.run();
    assert!(
        matches!(
            notes.as_slice(),
            [RelayStep::ForwardAndStop(Failure::TooFewTrustees {
                remaining: 2,
                minimum: 3,
                ..
            })]
        ),
        "{notes:?}"
    );
    assert!(sim.net.relay.established().is_none());
    for (node, outcome) in sim.outcomes().into_iter().enumerate() {
        if node == 2 {
            continue;
        }
        let failure = outcome.unwrap_err();
        match failure {
            Failure::TooFewTrustees {
                conviction,
                remaining: 2,
                minimum: 3,
            } => {
                assert_eq!(conviction.trustee, 2);
                assert!(matches!(conviction.check, FailedCheck::Shuffle(_)));
            }
            other => panic!("node {node}: {other:?}"),
        }
        let text = failure.to_string();
        assert!(
            text.contains("trustee 2 cheated") && text.contains("setup stops"),
            "{text}"
        );
    }
}

#[test]
fn a_relay_that_excludes_an_honest_trustee_is_refused() {
    // Nodes accept a new attempt only without exactly the trustees they convicted.
    let mut sim = Sim::new(4, 3, 1, 4);
    let mut buf = vec![0u8; 4096];
    let len = sim.net.relay.poll_broadcast(&mut buf).unwrap().unwrap();
    let mut open = buf[..len].to_vec();
    // trustees bitmap at bytes 42..44: drop trustee 0, next attempt.
    open[9] = 1;
    open[43] &= !1;
    let err = sim.net.clients[0]
        .receive(&open, &mut sim.net.rng)
        .unwrap_err();
    assert_eq!(err, Failure::Relay(RelayFault::BadOpen));
}

#[test]
fn a_client_whose_submission_was_replaced_refuses_the_epoch() {
    // Someone holding client 3's identity key submits in its place (the relay takes the
    // impostor's link): client 3 sees another submission under its name and refuses, since
    // its own pseudonym key cannot be in the list; the others go on.
    let mut sim = Sim::new(6, 2, 2, 5);
    let config = sim.net.config;
    let mut impostor: Client = SetupClient::new(
        config,
        3,
        identity(CLIENT, 3),
        SetupStorage::with_vecs(&config),
    )
    .unwrap();
    let mut buf = vec![0u8; FRAME_ROOM];
    let mut impostor_rng = ChaCha20Rng::seed_from_u64(99);
    // Open and keys reach everyone, the impostor too.
    loop {
        let mut frames = Vec::new();
        while let Some(len) = sim.net.relay.poll_broadcast(&mut buf).unwrap() {
            frames.push(buf[..len].to_vec());
        }
        for j in 0..2 {
            while let Some(len) = sim.net.trustees[j].poll_transmit(&mut buf).unwrap() {
                let f = buf[..len].to_vec();
                assert_eq!(
                    sim.net.relay.receive_trustee(j as u8, &f),
                    RelayStep::Forward
                );
                frames.push(f);
            }
        }
        if frames.is_empty() {
            break;
        }
        for f in &frames {
            sim.deliver(f);
            impostor.receive(f, &mut impostor_rng).unwrap();
        }
    }
    let forged = impostor.poll_transmit().unwrap().to_vec();
    sim.net.relay.receive_client(3, &forged).unwrap();
    for i in 0..6 {
        let f = sim.net.clients[i].poll_transmit().unwrap().to_vec();
        let r = sim.net.relay.receive_client(i as u16, &f);
        assert_eq!(r.is_err(), i == 3);
    }
    sim.run();
    let outcomes = sim.outcomes();
    assert_eq!(outcomes[2 + 3], Err(Failure::Refused(Refusal::KeyMissing)));
    assert!(Failure::Refused(Refusal::KeyMissing)
        .to_string()
        .contains("pseudonym key is not in the list"));
    let list = sim.relay_list();
    for (node, outcome) in outcomes.into_iter().enumerate() {
        if node != 5 {
            assert_eq!(outcome.unwrap(), list);
        }
    }
}

#[test]
fn latecomers_are_not_participants_and_missing_submitters_are_dropped() {
    // Client 4 is not among the participants; client 2 never submits: the relay gives up on
    // it and opens attempt 1 without it.
    let mut sim = Sim::with(6, 2, 2, 6, &|i| i != 4);
    let mut buf = vec![0u8; FRAME_ROOM];
    loop {
        let mut frames = Vec::new();
        while let Some(len) = sim.net.relay.poll_broadcast(&mut buf).unwrap() {
            frames.push(buf[..len].to_vec());
        }
        for j in 0..2 {
            while let Some(len) = sim.net.trustees[j].poll_transmit(&mut buf).unwrap() {
                let f = buf[..len].to_vec();
                sim.net.relay.receive_trustee(j as u8, &f);
                frames.push(f);
            }
        }
        if frames.is_empty() {
            break;
        }
        for f in &frames {
            sim.deliver(f);
        }
    }
    assert_eq!(
        sim.net.clients[4].failure(),
        Some(Failure::Refused(Refusal::NotParticipant))
    );
    for i in [0, 1, 3, 5] {
        let f = sim.net.clients[i].poll_transmit().unwrap().to_vec();
        sim.net.relay.receive_client(i as u16, &f).unwrap();
    }
    assert_eq!(sim.net.relay.counts(), (4, 5));
    assert_eq!(
        sim.net.relay.drop_missing(),
        Departure::Restart { remaining: 4 }
    );
    sim.net.clients[2].poll_transmit();
    sim.run();
    let relay = sim.net.relay.established().unwrap();
    assert_eq!((relay.attempt, relay.slots), (1, 4));
    assert_eq!(
        sim.net.clients[2].failure(),
        Some(Failure::Refused(Refusal::NotParticipant))
    );
    let list = sim.relay_list();
    for i in [0, 1, 3, 5] {
        let mine = sim.net.clients[i]
            .pseudonym()
            .unwrap()
            .public_key()
            .to_bytes();
        assert_eq!(list.iter().filter(|k| **k == mine).count(), 1);
    }
}

/// Seeded search over relay misbehaviours: one to three faults (drop, duplicate, reorder,
/// flipped bit) on frames to chosen nodes. Every node either establishes the one correct
/// list (every key once, the same everywhere) or fails naming the relay (or stalls); no
/// honest trustee is ever convicted.
#[test]
fn a_misbehaving_relay_is_caught_and_never_makes_a_node_accept_a_wrong_order() {
    let (n, m) = (5, 2);
    let mut outcomes_seen: HashMap<&'static str, usize> = HashMap::new();
    for seed in 0..150u64 {
        let mut plan = ChaCha20Rng::seed_from_u64(1000 + seed);
        let mut sim = Sim::new(n, m, 1, seed);
        // Frames in an honest run: 1 open + m keys + n submits + stages; pick among the first 40.
        for _ in 0..1 + plan.next_u32() % 3 {
            let node = (plan.next_u32() as usize) % (n + m);
            let index = (plan.next_u32() as usize) % 40;
            let fault = match plan.next_u32() % 4 {
                0 => Misbehave::Drop,
                1 => Misbehave::Duplicate,
                2 => Misbehave::Reorder,
                _ => Misbehave::Alter(plan.next_u32() as usize),
            };
            sim.plan.faults.push((node, index, fault));
        }
        sim.run();
        assert!(
            sim.plan.convictions.is_empty(),
            "seed {seed}: an honest trustee convicted"
        );
        let relay_list = sim.relay_list();
        let outcomes = sim.outcomes();
        for (node, outcome) in outcomes.iter().enumerate() {
            match outcome {
                Ok(list) => {
                    assert!(sim.net.relay.established().is_some(), "seed {seed}");
                    assert_eq!(list, &relay_list, "seed {seed} node {node}");
                    *outcomes_seen.entry("established").or_default() += 1;
                }
                Err(Failure::Relay(_)) => *outcomes_seen.entry("relay").or_default() += 1,
                Err(Failure::Stalled(_)) => *outcomes_seen.entry("stalled").or_default() += 1,
                Err(f) => panic!("seed {seed} node {node}: {f:?} {:?}", sim.plan.faults),
            }
        }
        for (i, c) in sim.net.clients.iter().enumerate() {
            if c.established().is_some() {
                let mine = c.pseudonym().unwrap().public_key().to_bytes();
                let count = relay_list.iter().filter(|k| **k == mine).count();
                assert_eq!(count, 1, "seed {seed} client {i}");
            }
        }
    }
    // The search reached each kind of outcome.
    for kind in ["established", "relay", "stalled"] {
        assert!(
            outcomes_seen.get(kind).copied().unwrap_or(0) > 0,
            "{kind}: {outcomes_seen:?}"
        );
    }
}

#[test]
fn waiting_names_what_a_stalled_setup_waits_for() {
    let mut sim = Sim::new(3, 2, 2, 8);
    // The relay never forwards trustee 1's key.
    let mut buf = vec![0u8; 4096];
    let len = sim.net.relay.poll_broadcast(&mut buf).unwrap().unwrap();
    let open = buf[..len].to_vec();
    sim.deliver(&open);
    let len = sim.net.trustees[0]
        .poll_transmit(&mut buf)
        .unwrap()
        .unwrap();
    let key0 = buf[..len].to_vec();
    assert_eq!(sim.net.relay.receive_trustee(0, &key0), RelayStep::Forward);
    sim.deliver(&key0);
    assert_eq!(sim.net.clients[0].waiting(), Waiting::Key(1));
    assert_eq!(
        sim.net.clients[0].stalled(),
        Failure::Stalled(Waiting::Key(1))
    );
    // A trustee sending out of turn is refused by the relay, not forwarded.
    let len = sim.net.trustees[1]
        .poll_transmit(&mut buf)
        .unwrap()
        .unwrap();
    let key1 = buf[..len].to_vec();
    assert_eq!(
        sim.net.relay.receive_trustee(0, &key1),
        RelayStep::Refuse(Failure::Relay(RelayFault::Unexpected))
    );
    assert_eq!(sim.net.relay.receive_trustee(1, &key1), RelayStep::Forward);
}

/// A bounded, deterministic version of the `epoch` fuzz target: random bytes, and honest
/// frames cut short or with random bytes appended, never panic a role and never establish.
#[test]
fn random_frames_never_panic_a_setup_role() {
    let mut sim = Sim::new(3, 2, 1, 9);
    let mut honest = Vec::new();
    let mut buf = vec![0u8; FRAME_ROOM];
    let len = sim.net.relay.poll_broadcast(&mut buf).unwrap().unwrap();
    honest.push(buf[..len].to_vec());
    let open = honest[0].clone();
    sim.deliver(&open);
    let len = sim.net.trustees[0]
        .poll_transmit(&mut buf)
        .unwrap()
        .unwrap();
    honest.push(buf[..len].to_vec());
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    for round in 0..2_000 {
        let frame: Vec<u8> = match round % 3 {
            0 => {
                let mut f = vec![0u8; (rng.next_u32() % 300) as usize];
                rng.fill_bytes(&mut f);
                if let Some(b) = f.first_mut() {
                    *b = (*b % 7) + 1;
                }
                f
            }
            1 => {
                let h = &honest[round % honest.len()];
                h[..(rng.next_u32() as usize) % h.len()].to_vec()
            }
            _ => {
                let mut f = honest[round % honest.len()].clone();
                let at = (rng.next_u32() as usize) % f.len();
                f[at] = rng.next_u32() as u8;
                f
            }
        };
        let _ = sim.net.relay.receive_trustee((round % 2) as u8, &frame);
        let _ = sim.net.relay.receive_client((round % 3) as u16, &frame);
        let _ = sim.net.trustees[1].receive(&frame, &mut sim.net.rng);
        let _ = sim.net.clients[round % 3].receive(&frame, &mut sim.net.rng);
    }
    assert!(sim.net.relay.established().is_none());
    assert!(sim.net.clients.iter().all(|c| c.established().is_none()));
}

/// An honest relay; the trustees take each frame in bounded steps (`begin`, then `work`
/// until it is done), as a device does.
#[derive(Default)]
struct Stepped {
    /// Frames whose work took more than the one call, and the most steps one took.
    deferred: usize,
    most_steps: usize,
    convictions: Vec<(NodeId, Conviction)>,
}

impl Driver<ChaCha20Rng> for Stepped {
    fn broadcast(&mut self, net: &mut Net, frame: &[u8]) {
        for j in 0..net.trustees.len() {
            let t = &mut net.trustees[j];
            let mut polled = t.begin(frame, &mut net.rng);
            let mut steps = 0;
            while polled.is_pending() {
                assert!(t.working());
                steps += 1;
                polled = t.work(&mut net.rng);
            }
            assert!(!t.working());
            if steps > 0 {
                self.deferred += 1;
                self.most_steps = self.most_steps.max(steps);
            }
            if let std::task::Poll::Ready(Ok(Event::Restarting(c))) = polled {
                self.convictions.push((j, c));
            }
        }
        for (i, c) in net.clients.iter_mut().enumerate() {
            if let Ok(Event::Restarting(conviction)) = c.receive(frame, &mut net.rng) {
                self.convictions.push((net.trustees.len() + i, conviction));
            }
        }
    }
}

#[test]
fn trustees_in_bounded_steps_send_the_same_bytes_and_convict_the_same_cheats() {
    for cheat in [
        None,
        Some(Cheat::Swap),
        Some(Cheat::Reencryption),
        Some(Cheat::Share),
    ] {
        let run = |stepped: bool| {
            let mut sim = Sim::new(20, 3, 2, 5);
            if let Some(cheat) = cheat {
                sim.net.trustees[1].cheat(cheat);
            }
            let mut driver = Stepped::default();
            let notes = if stepped {
                sim.net.run(&mut driver)
            } else {
                let mut honest = Plan::default();
                let notes = sim.net.run(&mut honest);
                driver.convictions = honest.convictions;
                notes
            };
            assert!(notes.is_empty(), "{cheat:?}: {notes:?}");
            let relay = sim.net.relay.established().expect("established");
            (relay, sim.relay_list(), driver)
        };
        let (relay, list, whole) = run(false);
        let (stepped_relay, stepped_list, steps) = run(true);
        // The same randomness gives the same transcript, hence the same bytes on the wire.
        assert_eq!(stepped_relay, relay, "{cheat:?}");
        assert_eq!(stepped_list, list, "{cheat:?}");
        assert_eq!(steps.convictions, whole.convictions, "{cheat:?}");
        assert_eq!(
            steps.convictions.len(),
            cheat.map_or(0, |_| 22),
            "{cheat:?}"
        );
        // Each shuffle's check at the 2 other trustees, and each trustee's own shuffle, took
        // more than the one call: 7 frames for 3 trustees (a trustee that checks the shuffle
        // before its own makes its own in the same frame's work); the shares 6 more (the first
        // trustee makes its shares in the work of the last shuffle's frame).
        if cheat.is_none() {
            assert_eq!(steps.deferred, 7 + 6);
        }
        assert!(steps.most_steps > 3, "{cheat:?}");
    }
}

/// An honest relay whose participant `client` drops its link when the relay forwards the
/// first frame tagged `tag` (4: a shuffle chunk, 6: an epoch record): from then on the client
/// gets nothing, and the relay is told it left.
struct Departs {
    client: usize,
    tag: u8,
    gone: bool,
    departure: Option<Departure>,
}

impl Driver<ChaCha20Rng> for Departs {
    fn broadcast(&mut self, net: &mut Net, frame: &[u8]) {
        if !self.gone && frame.first() == Some(&self.tag) {
            self.gone = true;
            self.departure = Some(net.relay.leave(self.client as u16));
        }
        let m = net.trustees.len();
        for node in 0..net.nodes() {
            if !(self.gone && node == m + self.client) {
                let _ = net.give(node, frame);
            }
        }
    }
}

#[test]
fn a_participant_that_leaves_mid_setup_restarts_it_without_it() {
    for tag in [4u8, 6] {
        let mut sim = Sim::new(6, 2, 2, 11);
        let mut driver = Departs {
            client: 2,
            tag,
            gone: false,
            departure: None,
        };
        let notes = sim.net.run(&mut driver);
        assert_eq!(driver.departure, Some(Departure::Restart { remaining: 5 }));
        // The trustees' frames of the abandoned attempt are refused, never forwarded.
        assert!(
            notes
                .iter()
                .all(|n| *n == RelayStep::Refuse(Failure::Relay(RelayFault::Unexpected))),
            "{notes:?}"
        );
        let relay = sim.net.relay.established().expect("established without it");
        assert_eq!((relay.attempt, relay.slots, relay.trustees), (1, 5, 0b11));
        assert_eq!(sim.net.relay.participants(), &[0b11_1011]);
        let list = sim.relay_list();
        for (i, c) in sim.net.clients.iter().enumerate() {
            if i == 2 {
                assert!(c.established().is_none());
                continue;
            }
            assert_eq!(c.participants(), &[0b11_1011]);
            let mine = c.pseudonym().unwrap().public_key().to_bytes();
            assert_eq!(list.iter().filter(|k| **k == mine).count(), 1, "client {i}");
            assert_eq!(c.pseudonyms().map(<[u8]>::to_vec).collect::<Vec<_>>(), list);
        }
        for t in &sim.net.trustees {
            assert_eq!(t.established(), Some(relay));
        }
    }
}

#[test]
fn departures_stop_the_setup_below_the_minimum_or_after_the_last_attempt() {
    // Five participants, the group needs five: one leaving stops the setup.
    let mut sim = Sim::new(5, 2, 2, 12);
    sim.net.relay.limit(5, 8);
    let mut buf = vec![0u8; FRAME_ROOM];
    let open = sim.net.relay.poll_broadcast(&mut buf).unwrap();
    assert!(open.is_some());
    let stop = Failure::TooFewClients {
        remaining: 4,
        minimum: 5,
    };
    assert_eq!(sim.net.relay.leave(3), Departure::Stop(stop));
    assert_eq!(sim.net.relay.failure(), Some(stop));
    assert_eq!(sim.net.relay.poll_broadcast(&mut buf).unwrap(), None);
    assert!(stop.to_string().contains("setup stops"));

    // At most two attempts: the first departure opens attempt 1, the second stops.
    let mut sim = Sim::new(5, 2, 2, 13);
    sim.net.relay.limit(1, 2);
    assert!(sim.net.relay.poll_broadcast(&mut buf).unwrap().is_some());
    assert_eq!(sim.net.relay.leave(0), Departure::Restart { remaining: 4 });
    // Leaving again, or a client that is no participant, changes nothing.
    assert_eq!(sim.net.relay.leave(0), Departure::Ignored);
    let len = sim.net.relay.poll_broadcast(&mut buf).unwrap().unwrap();
    match SetupMessage::parse(&buf[..len]).unwrap() {
        SetupMessage::Open(o) => {
            assert_eq!((o.attempt, o.participants), (1, &[0b1_1110u8][..]));
        }
        other => panic!("{other:?}"),
    }
    let stop = Failure::TooManyAttempts { attempts: 2 };
    assert_eq!(sim.net.relay.leave(1), Departure::Stop(stop));
    assert_eq!(sim.net.relay.poll_broadcast(&mut buf).unwrap(), None);

    // Once established, a departure changes nothing.
    let mut sim = Sim::new(4, 2, 2, 14);
    assert!(sim.run().is_empty());
    assert_eq!(sim.net.relay.leave(1), Departure::Ignored);
    assert!(sim.net.relay.established().is_some());
}

/// An honest relay whose trustee's link drops and comes back when the relay forwards the
/// first frame tagged `tag`: the relay opens a new attempt over the same participants.
struct Relinks {
    tag: u8,
    done: Option<Departure>,
}

impl Driver<ChaCha20Rng> for Relinks {
    fn broadcast(&mut self, net: &mut Net, frame: &[u8]) {
        if self.done.is_none() && frame.first() == Some(&self.tag) {
            self.done = Some(net.relay.reopen());
        }
        for node in 0..net.nodes() {
            let _ = net.give(node, frame);
        }
    }
}

#[test]
fn a_trustee_that_links_again_gets_a_new_attempt_with_every_participant() {
    let mut sim = Sim::new(5, 3, 3, 15);
    let mut driver = Relinks { tag: 5, done: None };
    sim.net.run(&mut driver);
    assert_eq!(driver.done, Some(Departure::Restart { remaining: 5 }));
    let relay = sim.net.relay.established().expect("established");
    assert_eq!((relay.attempt, relay.slots, relay.trustees), (1, 5, 0b111));
    let list = sim.relay_list();
    every_key_once(&sim, &list);
    // Once established, reopening does nothing.
    assert_eq!(sim.net.relay.reopen(), Departure::Ignored);
}
