//! Times the epoch setup: N members, M trustees, every message through the relay's state
//! machine, in one process.
//!
//!     cargo bench -p dissent-core --bench epoch
//!
//! `DISSENT_EPOCH_SIZES=100,1000` picks the sizes (default 100 and 1,000);
//! `DISSENT_EPOCH_TRUSTEES` the trustees (default 3). Every member makes and submits its
//! key; one member (client 0) follows and checks the whole setup, as every member would in
//! parallel on its own machine. Printed per size: the whole setup's wall time on one thread
//! (the relay, every trustee, one member, the others' submissions), each trustee's own time
//! (its key, its checks of the stages before it, its shuffle + proof, its shares, its
//! record), the part of that spent shuffling and proving, and the member's time checking
//! every signature and proof. Prints numbers only.
// Test code: its indexing and unwraps are on fixtures it made itself.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use dissent_core::epoch::message::{SetupMessage, Stage, MAX_CHUNK_DATA};
use dissent_core::epoch::{RelayStep, Waiting};
use dissent_core::testkit::epoch::{Driver, EpochNet, EpochSpec};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn main() {
    let sizes: Vec<usize> = std::env::var("DISSENT_EPOCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1_000]);
    let m: usize = std::env::var("DISSENT_EPOCH_TRUSTEES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    println!("epoch setup, {m} trustees, one thread");
    println!(
        "{:>6} {:>9} {:>15} {:>23} {:>15} {:>30}",
        "N",
        "setup s",
        "trustee s",
        "shuffle+proof s (each)",
        "member check s",
        "(submissions shuffles shares rest)"
    );
    for n in sizes {
        run(n, m);
    }
}

type Net = EpochNet<ChaCha20Rng>;

/// Each role's time.
struct Timing {
    trustee_time: Vec<Duration>,
    prove_time: Vec<Duration>,
    member_time: Duration,
    /// A member's time by what it checked: submissions, shuffles, shares, the rest.
    member_parts: [Duration; 4],
    /// Until the submissions, every member follows (to make its submission).
    all_follow: bool,
}

impl Driver<ChaCha20Rng> for Timing {
    fn broadcast(&mut self, net: &mut Net, frame: &[u8]) {
        let mut took = Vec::with_capacity(net.trustees.len());
        for t in net.trustees.iter_mut() {
            let began = Instant::now();
            t.receive(frame, &mut net.rng).unwrap();
            took.push(began.elapsed());
        }
        let began = Instant::now();
        net.clients[0].receive(frame, &mut net.rng).unwrap();
        let member = began.elapsed();
        self.member_time += member;
        let part = match SetupMessage::parse(frame) {
            Ok(SetupMessage::Submit(_)) => 0,
            Ok(SetupMessage::Seal(seal)) if seal.stage == Stage::Shuffle => 1,
            Ok(SetupMessage::Seal(_)) => 2,
            _ => 3,
        };
        self.member_parts[part] += member;
        for (j, t) in net.trustees.iter().enumerate() {
            self.trustee_time[j] += took[j];
            // The frame that hands a trustee its shuffle turn: its time, less a member's
            // check of the same frame, is its shuffle + proof.
            if t.waiting() == Waiting::Chunk(j as u8, Stage::Shuffle) {
                self.prove_time[j] += took[j].saturating_sub(member);
            }
        }
        if self.all_follow {
            for c in net.clients.iter_mut().skip(1) {
                c.receive(frame, &mut net.rng).unwrap();
            }
        }
    }

    fn transmit(
        &mut self,
        trustee: usize,
        make: &mut dyn FnMut() -> Option<usize>,
    ) -> Option<usize> {
        let began = Instant::now();
        let made = make();
        if made.is_some() {
            self.trustee_time[trustee] += began.elapsed();
        }
        made
    }

    fn submitted(&mut self, _client: usize) {
        self.all_follow = false;
    }
}

fn run(n: usize, m: usize) {
    let spec = EpochSpec {
        clients: n,
        trustees: m,
        min_trustees: m,
        epoch: 1,
        // As the hosted setup sends them: the most a chunk carries.
        chunk_len: MAX_CHUNK_DATA,
        spare: 0,
    };
    let start = Instant::now();
    let mut net = EpochNet::new(spec, &|_| true, ChaCha20Rng::from_seed([9; 32]));
    let mut s = Timing {
        trustee_time: vec![Duration::ZERO; m],
        prove_time: vec![Duration::ZERO; m],
        member_time: Duration::ZERO,
        member_parts: [Duration::ZERO; 4],
        all_follow: true,
    };
    let notes = net.run(&mut s);
    let setup = start.elapsed();
    assert!(
        !notes
            .iter()
            .any(|step| matches!(step, RelayStep::Refuse(_))),
        "{notes:?}"
    );
    assert!(net.relay.established().is_some(), "setup did not establish");
    assert!(net.clients[0].established().is_some());
    let each = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "{:>6} {:>9.2} {:>15} {:>23} {:>15.2} {:>30}",
        n,
        setup.as_secs_f64(),
        each(&s.trustee_time),
        each(&s.prove_time),
        s.member_time.as_secs_f64(),
        each(&s.member_parts)
    );
}
