//! A trustee that does not answer: the relay leaves it out on its own word (nothing proves
//! silence) and the setup goes on, only in a group whose `min_trustees` is at least 2 and
//! while that many remain; nodes accept no more than that, and never take one back.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use dissent_core::epoch::message::{SetupMessage, MAX_CHUNK_DATA};
use dissent_core::epoch::{Departure, Event, Failure, RelayFault, Waiting};
use dissent_core::testkit::epoch::{Driver, EpochNet, EpochSpec, FRAME_ROOM};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

type Net = EpochNet<ChaCha20Rng>;

fn net(clients: usize, trustees: usize, min_trustees: usize, seed: u64) -> Net {
    let spec = EpochSpec {
        clients,
        trustees,
        min_trustees,
        epoch: 4,
        chunk_len: MAX_CHUNK_DATA,
        spare: 0,
    };
    EpochNet::new(spec, &|_| true, ChaCha20Rng::seed_from_u64(seed))
}

/// Every frame to every node; trustee `quiet` sends nothing more once `after` of its
/// seals went out: it went silent there (0: from the start).
struct Quiet {
    quiet: usize,
    after: usize,
    seals: usize,
}

impl Driver<ChaCha20Rng> for Quiet {
    fn broadcast(&mut self, net: &mut Net, frame: &[u8]) {
        if let Ok(SetupMessage::Seal(m)) = SetupMessage::parse(frame) {
            if usize::from(m.trustee) == self.quiet {
                self.seals += 1;
            }
        }
        for node in 0..net.nodes() {
            let _ = net.give(node, frame);
        }
    }

    fn transmit(
        &mut self,
        trustee: usize,
        make: &mut dyn FnMut() -> Option<usize>,
    ) -> Option<usize> {
        if trustee == self.quiet && self.seals >= self.after {
            // Silent: what it makes never leaves.
            while make().is_some() {}
            return None;
        }
        make()
    }
}

fn quiet(trustee: usize, after: usize) -> Quiet {
    Quiet {
        quiet: trustee,
        after,
        seals: 0,
    }
}

/// Every node's outcome.
fn outcomes(net: &mut Net) -> Vec<Result<Vec<Vec<u8>>, Failure>> {
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
fn a_silent_trustee_is_left_out_on_the_relays_word_and_the_setup_goes_on() {
    let mut net = net(5, 3, 2, 31);
    // Trustee 1 never sends its key: the setup waits for it, the relay's bound passes.
    let mut driver = quiet(1, 0);
    net.run(&mut driver);
    assert_eq!(net.relay.waiting(), Waiting::Key(1));
    // Only the trustee awaited can be named silent.
    assert_eq!(net.relay.silent(2), Departure::Ignored);
    assert_eq!(net.relay.silent(1), Departure::Restart { remaining: 5 });
    assert_eq!(net.relay.silenced(), 0b010);
    net.run(&mut driver);
    let established = net.relay.established().expect("established without it");
    assert_eq!((established.attempt, established.trustees), (1, 0b101));
    let list: Vec<Vec<u8>> = net.relay.pseudonyms().map(<[u8]>::to_vec).collect();
    for (node, outcome) in outcomes(&mut net).into_iter().enumerate() {
        match node {
            // It learns from the `Open` that it is left out.
            1 => assert_eq!(outcome, Err(Failure::Relay(RelayFault::Excluded))),
            _ => assert_eq!(outcome.unwrap(), list, "node {node}"),
        }
    }
    for c in &net.clients {
        assert_eq!(c.established(), Some(established));
        let mine = c.pseudonym().unwrap().public_key().to_bytes().to_vec();
        assert_eq!(list.iter().filter(|k| **k == mine).count(), 1);
    }
}

#[test]
fn a_trustee_silent_at_its_shares_is_left_out_and_the_next_attempt_runs_without_it() {
    let mut net = net(4, 3, 2, 32);
    // Trustee 2 sends its key and its shuffle, then nothing.
    let mut driver = quiet(2, 1);
    net.run(&mut driver);
    assert_eq!(driver.seals, 1);
    assert!(matches!(net.relay.waiting(), Waiting::Chunk(2, _)));
    assert_eq!(net.relay.silent(2), Departure::Restart { remaining: 4 });
    net.run(&mut driver);
    let established = net.relay.established().expect("established without it");
    assert_eq!((established.attempt, established.trustees), (1, 0b011));
    let list: Vec<Vec<u8>> = net.relay.pseudonyms().map(<[u8]>::to_vec).collect();
    for (node, outcome) in outcomes(&mut net).into_iter().enumerate() {
        match node {
            2 => assert_eq!(outcome, Err(Failure::Relay(RelayFault::Excluded))),
            _ => assert_eq!(outcome.unwrap(), list, "node {node}"),
        }
    }
}

#[test]
fn silence_stops_the_setup_when_the_minimum_is_one_or_would_not_remain() {
    for (m, minimum) in [(3usize, 1usize), (3, 3), (2, 2)] {
        let mut net = net(3, m, minimum, 33);
        net.run(&mut quiet(0, 0));
        assert_eq!(net.relay.waiting(), Waiting::Key(0));
        let stop = Failure::TrusteeSilent {
            trustee: 0,
            remaining: (m - 1) as u8,
            minimum: minimum as u8,
        };
        assert_eq!(net.relay.silent(0), Departure::Stop(stop));
        assert_eq!(net.relay.failure(), Some(stop));
        let mut buf = vec![0u8; FRAME_ROOM];
        assert_eq!(net.relay.poll_broadcast(&mut buf).unwrap(), None);
        assert!(stop.to_string().contains("nothing proves it"));
    }
}

#[test]
fn nodes_accept_trustees_left_out_unproven_only_as_the_group_allows() {
    // Three trustees, minimum 2: one left out is accepted, two are not, and one left out
    // is never taken back.
    let mut net = net(3, 3, 2, 34);
    let mut buf = vec![0u8; FRAME_ROOM];
    let len = net.relay.poll_broadcast(&mut buf).unwrap().unwrap();
    let open = buf[..len].to_vec();
    let variant = |attempt: u8, trustees: u16| {
        let mut o = open.clone();
        o[9] = attempt;
        o[42..44].copy_from_slice(&trustees.to_be_bytes());
        o
    };
    let client = 3;
    assert_eq!(
        net.give(client, &variant(1, 0b001)),
        Err(Failure::Relay(RelayFault::BadOpen))
    );
    let mut net = self::net(3, 3, 2, 34);
    assert_eq!(net.give(client, &variant(1, 0b101)), Ok(Event::Opened));
    assert_eq!(
        net.give(client, &variant(2, 0b111)),
        Err(Failure::Relay(RelayFault::BadOpen))
    );
    let mut net = self::net(3, 3, 2, 34);
    assert_eq!(net.give(client, &variant(1, 0b101)), Ok(Event::Opened));
    assert_eq!(
        net.give(client, &variant(2, 0b100)),
        Err(Failure::Relay(RelayFault::BadOpen))
    );
    // The trustee left out learns it from the `Open`.
    let mut net = self::net(3, 3, 2, 34);
    assert_eq!(
        net.give(1, &variant(1, 0b101)),
        Err(Failure::Relay(RelayFault::Excluded))
    );
    // With minimum 1, no trustee is left out unproven.
    let mut net = self::net(3, 3, 1, 34);
    assert_eq!(
        net.give(client, &variant(1, 0b101)),
        Err(Failure::Relay(RelayFault::BadOpen))
    );
}
