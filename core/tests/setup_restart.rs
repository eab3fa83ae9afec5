//! The setup survives restarts: a relay that restarts mid-setup opens the next attempt and
//! every node follows it, with fresh keys and no second part in any attempt number; a
//! trustee or client started afresh after a conviction is shown the attempt that convicted,
//! checks it itself and follows the restart.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use dissent_core::bits::bitmap_len;
use dissent_core::epoch::message::{SetupMessage, MAX_CHUNK_DATA};
use dissent_core::epoch::{
    Cheat, Event, Failure, RelayFault, SetupClient, SetupRelay, SetupStorage, SetupTrustee, Waiting,
};
use dissent_core::ristretto::shuffle::ProverSlot;
use dissent_core::testkit::epoch::{
    identity, Driver, EpochNet, EpochSpec, CLIENT, FRAME_ROOM, TRUSTEE,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

type Net = EpochNet<ChaCha20Rng>;

fn net(clients: usize, trustees: usize, seed: u64) -> Net {
    let spec = EpochSpec {
        clients,
        trustees,
        min_trustees: 1,
        epoch: 9,
        chunk_len: MAX_CHUNK_DATA,
        spare: 0,
    };
    EpochNet::new(spec, &|_| true, ChaCha20Rng::seed_from_u64(seed))
}

/// The relay of `net`'s group as a fresh process makes it, over every client.
fn fresh_relay(net: &Net) -> SetupRelay<'static, Vec<u8>> {
    let config = net.config;
    let n = config.clients.len();
    let mut participants = vec![0u8; bitmap_len(n)];
    for i in 0..n {
        participants[i / 8] |= 1 << (i % 8);
    }
    SetupRelay::new(
        config,
        SetupStorage::with_vecs(&config),
        vec![0u8; SetupRelay::<Vec<u8>>::collected_len(&config)],
        &participants,
    )
    .unwrap()
}

fn tag(frame: &[u8]) -> u8 {
    frame[0]
}

fn attempt_of(frame: &[u8]) -> u8 {
    SetupMessage::parse(frame).unwrap().epoch_attempt().1
}

/// Delivers every frame to every node, keeps a copy, and (when `cut` is set) stops
/// delivering at the first frame with that tag in that attempt: the relay died there.
#[derive(Default)]
struct Recorder {
    frames: Vec<Vec<u8>>,
    cut: Option<(u8, u8)>,
    dead: bool,
    restarts: Vec<(usize, Event)>,
}

impl Driver<ChaCha20Rng> for Recorder {
    fn broadcast(&mut self, net: &mut Net, frame: &[u8]) {
        if self.dead || self.cut == Some((tag(frame), attempt_of(frame))) {
            self.dead = true;
            return;
        }
        self.frames.push(frame.to_vec());
        for node in 0..net.nodes() {
            if let Ok(e @ Event::Restarting(_)) = net.give(node, frame) {
                self.restarts.push((node, e));
            }
        }
    }
}

/// Every node's list, or its failure.
fn lists(net: &mut Net) -> Vec<Result<Vec<Vec<u8>>, Failure>> {
    let mut out = Vec::new();
    for t in &mut net.trustees {
        out.push(match (t.established(), t.failure()) {
            (Some(_), _) => Ok(t.pseudonyms().map(<[u8]>::to_vec).collect()),
            (None, Some(f)) => Err(f),
            (None, None) => Err(t.stalled()),
        });
    }
    for c in &mut net.clients {
        out.push(match (c.established(), c.failure()) {
            (Some(_), _) => Ok(c.pseudonyms().map(<[u8]>::to_vec).collect()),
            (None, Some(f)) => Err(f),
            (None, None) => Err(c.stalled()),
        });
    }
    out
}

#[test]
fn a_relay_restarted_mid_setup_opens_the_next_attempt_and_every_node_follows_it() {
    let mut net = net(6, 3, 21);
    // Attempt 0 runs until its list is decrypted (every node holds it); the relay dies
    // before the records.
    let mut first = Recorder {
        cut: Some((6, 0)),
        ..Recorder::default()
    };
    net.run(&mut first);
    assert!(first.dead);
    let list0: Vec<Vec<u8>> = net.relay.pseudonyms().map(<[u8]>::to_vec).collect();
    assert_eq!(list0.len(), 6);
    let keys0: Vec<Vec<u8>> = first
        .frames
        .iter()
        .filter(|f| tag(f) == 2)
        .map(|f| f[11..43].to_vec())
        .collect();
    assert_eq!(keys0.len(), 3);
    let kept = net.relay.attempt().unwrap() + 1;

    // A relay that forgot its attempts opens attempt 0 again, the same `Open`: every node
    // follows it but takes no part in an attempt number twice. No trustee makes a second
    // key or shuffles again, no client submits a second key: the setup waits.
    net.relay = fresh_relay(&net);
    let mut forgetful = Recorder::default();
    let notes = net.run(&mut forgetful);
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(forgetful.frames.len(), 1, "only the relay's Open");
    assert_eq!(attempt_of(&forgetful.frames[0]), 0);
    assert_eq!(net.relay.waiting(), Waiting::Key(0));
    assert_eq!(net.relay.counts().0, 0);
    for t in &net.trustees {
        assert!(t.witnessing());
        assert!(t.failure().is_none());
    }
    for c in &net.clients {
        assert!(c.failure().is_none());
    }

    // The relay restarted with the attempt it kept: attempt 1 opens, every node follows.
    net.relay = fresh_relay(&net);
    net.relay.resume(kept, 0);
    let mut second = Recorder::default();
    let notes = net.run(&mut second);
    assert!(notes.is_empty(), "{notes:?}");
    let established = net
        .relay
        .established()
        .expect("established after the restart");
    assert_eq!(
        (established.attempt, established.slots, established.trustees),
        (1, 6, 0b111)
    );
    let list1: Vec<Vec<u8>> = net.relay.pseudonyms().map(<[u8]>::to_vec).collect();
    for outcome in lists(&mut net) {
        assert_eq!(outcome.unwrap(), list1);
    }
    // Fresh keys in the new attempt: no pseudonym key of the decrypted attempt 0 is in the
    // epoch's list, so the earlier list (known to everyone) says nothing about the epoch's,
    // whichever participants each attempt had. The trustees' keys are fresh too.
    for c in &net.clients {
        let mine = c.pseudonym().unwrap().public_key().to_bytes().to_vec();
        assert_eq!(list1.iter().filter(|k| **k == mine).count(), 1);
        assert!(!list0.contains(&mine));
    }
    assert!(list1.iter().all(|k| !list0.contains(k)));
    let keys1: Vec<Vec<u8>> = second
        .frames
        .iter()
        .filter(|f| tag(f) == 2)
        .map(|f| f[11..43].to_vec())
        .collect();
    assert_eq!(keys1.len(), 3);
    assert!(keys1.iter().all(|k| !keys0.contains(k)));
}

#[test]
fn a_restarted_relay_with_other_participants_in_a_used_attempt_is_refused() {
    // A relay that forgot its attempts and opens attempt 0 again over other participants:
    // an `Open` that is neither later nor the same is refused.
    let mut net = net(4, 2, 22);
    let mut first = Recorder {
        cut: Some((3, 0)),
        ..Recorder::default()
    };
    net.run(&mut first);
    let config = net.config;
    let mut relay = SetupRelay::new(
        config,
        SetupStorage::with_vecs(&config),
        vec![0u8; SetupRelay::<Vec<u8>>::collected_len(&config)],
        &[0b0111],
    )
    .unwrap();
    let mut buf = vec![0u8; FRAME_ROOM];
    let len = relay.poll_broadcast(&mut buf).unwrap().unwrap();
    let err = net.clients[0]
        .receive(&buf[..len], &mut net.rng)
        .unwrap_err();
    assert_eq!(err, Failure::Relay(RelayFault::BadOpen));
}

/// Replaces trustee `j` and client `i` with fresh ones (processes started afresh) just
/// before the relay's `Open` of attempt 1 reaches them; with `show`, each is first shown
/// the frames of attempt 0 (the attempt that convicted), as the relay shows every node
/// that links.
struct Afresh {
    trustee: usize,
    client: usize,
    show: bool,
    record: Vec<Vec<u8>>,
    replaced: bool,
    /// What the fresh nodes made of the record: their events' restarts.
    restarts: usize,
    refused: Vec<Failure>,
    /// What the fresh trustee sent while it was shown the attempt.
    shown_made: Vec<Vec<u8>>,
}

impl Driver<ChaCha20Rng> for Afresh {
    fn broadcast(&mut self, net: &mut Net, frame: &[u8]) {
        if tag(frame) == 1 && attempt_of(frame) == 1 && !self.replaced {
            self.replaced = true;
            let config = net.config;
            let n = config.clients.len();
            let (j, i) = (self.trustee, self.client);
            net.trustees[j] = SetupTrustee::new(
                config,
                j as u8,
                identity(TRUSTEE, j),
                SetupStorage::with_vecs(&config),
                vec![ProverSlot::EMPTY; n],
            )
            .unwrap();
            net.clients[i] = SetupClient::new(
                config,
                i as u16,
                identity(CLIENT, i),
                SetupStorage::with_vecs(&config),
            )
            .unwrap();
            if self.show {
                let mut buf = vec![0u8; FRAME_ROOM];
                for f in &self.record {
                    let t = net.trustees[j].receive(f, &mut net.rng);
                    let c = net.clients[i].receive(f, &mut net.rng);
                    for e in [t, c] {
                        match e {
                            Ok(Event::Restarting(_)) => self.restarts += 1,
                            Ok(_) => {}
                            Err(f) => self.refused.push(f),
                        }
                    }
                    while let Some(len) = net.trustees[j].poll_transmit(&mut buf).unwrap() {
                        self.shown_made.push(buf[..len].to_vec());
                    }
                    if tag(f) == 2 && f[10] == j as u8 {
                        // Its key of the earlier process: it holds no secret for it.
                        assert!(net.trustees[j].witnessing());
                    }
                }
            }
        } else if !self.replaced {
            self.record.push(frame.to_vec());
        }
        for node in 0..net.nodes() {
            let _ = net.give(node, frame);
        }
    }
}

#[test]
fn a_trustee_and_a_client_started_afresh_after_a_conviction_check_it_and_follow_the_restart() {
    for show in [false, true] {
        let mut net = net(5, 3, 23);
        net.trustees[1].cheat(Cheat::Swap);
        let mut driver = Afresh {
            // Trustee 0 shuffles before the cheater: shown the attempt, it must not
            // shuffle its inputs again.
            trustee: 0,
            client: 0,
            show,
            record: Vec::new(),
            replaced: false,
            restarts: 0,
            refused: Vec::new(),
            shown_made: Vec::new(),
        };
        net.run(&mut driver);
        assert!(driver.replaced);
        let outcomes = lists(&mut net);
        if !show {
            // Without the attempt that convicted, a fresh node cannot tell the relay's
            // `Open` without trustee 1 from a relay dropping an honest trustee.
            assert_eq!(outcomes[0], Err(Failure::Relay(RelayFault::BadOpen)));
            assert_eq!(outcomes[3], Err(Failure::Relay(RelayFault::BadOpen)));
            continue;
        }
        // Shown the attempt, each convicted trustee 1 itself.
        assert!(driver.refused.is_empty(), "{:?}", driver.refused);
        assert_eq!(driver.restarts, 2);
        // The fresh trustee made a key for the attempt it was shown (before it saw its
        // earlier one there), and nothing else: no shuffle of the attempt's inputs again.
        let made: Vec<u8> = driver.shown_made.iter().map(|f| tag(f)).collect();
        assert_eq!(made, vec![2]);
        assert_ne!(
            driver.shown_made[0], driver.record[1],
            "a fresh key, not a copy"
        );
        let established = net.relay.established().expect("established");
        assert_eq!((established.attempt, established.trustees), (1, 0b101));
        let list: Vec<Vec<u8>> = net.relay.pseudonyms().map(<[u8]>::to_vec).collect();
        for (node, outcome) in outcomes.into_iter().enumerate() {
            match node {
                1 => assert_eq!(outcome, Err(Failure::Relay(RelayFault::Excluded))),
                _ => assert_eq!(outcome.unwrap(), list, "node {node}"),
            }
        }
        let mine = net.clients[0].pseudonym().unwrap().public_key().to_bytes();
        assert_eq!(list.iter().filter(|k| **k == mine).count(), 1);
    }
}

#[test]
fn a_relay_restarted_after_a_conviction_knows_it_from_its_record_and_nodes_ignore_the_replay() {
    let mut net = net(5, 3, 24);
    net.trustees[0].cheat(Cheat::Share);
    // Attempt 0 convicts trustee 0; attempt 1 opens; the relay dies at attempt 1's first
    // shuffle chunk.
    let mut first = Recorder {
        cut: Some((4, 1)),
        ..Recorder::default()
    };
    net.run(&mut first);
    assert!(first.dead);
    let record: Vec<Vec<u8>> = first
        .frames
        .iter()
        .filter(|f| attempt_of(f) == 0)
        .cloned()
        .collect();
    assert!(matches!(
        first.restarts.first(),
        Some((_, Event::Restarting(c))) if c.trustee == 0
    ));
    let kept = net.relay.attempt().unwrap() + 1;
    assert_eq!(kept, 2);

    // The restarted relay checks its record (convicting trustee 0 again), resumes, and
    // shows the record to every node as they link: they went past it, and ignore it.
    net.relay = fresh_relay(&net);
    let mut convicted = None;
    for f in &record {
        if let Event::Restarting(c) = net.relay.witness(f).unwrap() {
            convicted = Some(c.trustee);
        }
    }
    assert_eq!(convicted, Some(0));
    net.relay.resume(kept, 0);
    for f in &record {
        for node in 1..net.nodes() {
            assert_eq!(net.give(node, f), Ok(Event::Progress), "node {node}");
        }
    }
    let mut second = Recorder::default();
    net.run(&mut second);
    let established = net.relay.established().expect("established");
    assert_eq!((established.attempt, established.trustees), (2, 0b110));
    let list: Vec<Vec<u8>> = net.relay.pseudonyms().map(<[u8]>::to_vec).collect();
    for (node, outcome) in lists(&mut net).into_iter().enumerate().skip(1) {
        assert_eq!(outcome.unwrap(), list, "node {node}");
    }
}
