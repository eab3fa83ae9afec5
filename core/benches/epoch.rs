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

use dissent_core::bits::bitmap_len;
use dissent_core::epoch::identity::Ed25519Identity;
use dissent_core::epoch::message::{SetupMessage, Stage, CHUNK_HEADER_LEN};
use dissent_core::epoch::{
    RelayStep, SetupClient, SetupConfig, SetupRelay, SetupStorage, SetupTrustee, Waiting,
};
use dissent_core::ristretto::shuffle::ProverSlot;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn identity(role: u8, i: usize) -> Ed25519Identity {
    let mut seed = [role; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Ed25519Identity::from_seed(&seed)
}

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

type Trustee = SetupTrustee<'static, Vec<u8>, Vec<ProverSlot>, Ed25519Identity>;
type Client = SetupClient<'static, Vec<u8>, Ed25519Identity>;

struct State {
    trustees: Vec<Trustee>,
    clients: Vec<Client>,
    rng: ChaCha20Rng,
    trustee_time: Vec<Duration>,
    prove_time: Vec<Duration>,
    member_time: Duration,
    /// A member's time by what it checked: submissions, shuffles, shares, the rest.
    member_parts: [Duration; 4],
    /// Until the submissions, every member follows (to make its submission).
    all_follow: bool,
}

impl State {
    fn deliver(&mut self, frame: &[u8]) {
        let mut took = Vec::with_capacity(self.trustees.len());
        for t in self.trustees.iter_mut() {
            let began = Instant::now();
            t.receive(frame, &mut self.rng).unwrap();
            took.push(began.elapsed());
        }
        let began = Instant::now();
        self.clients[0].receive(frame, &mut self.rng).unwrap();
        let member = began.elapsed();
        self.member_time += member;
        let part = match SetupMessage::parse(frame) {
            Ok(SetupMessage::Submit(_)) => 0,
            Ok(SetupMessage::Seal(seal)) if seal.stage == Stage::Shuffle => 1,
            Ok(SetupMessage::Seal(_)) => 2,
            _ => 3,
        };
        self.member_parts[part] += member;
        for (j, t) in self.trustees.iter().enumerate() {
            self.trustee_time[j] += took[j];
            // The frame that hands a trustee its shuffle turn: its time, less a member's
            // check of the same frame, is its shuffle + proof.
            if t.waiting() == Waiting::Chunk(j as u8, Stage::Shuffle) {
                self.prove_time[j] += took[j].saturating_sub(member);
            }
        }
        if self.all_follow {
            for c in self.clients.iter_mut().skip(1) {
                c.receive(frame, &mut self.rng).unwrap();
            }
        }
    }
}

fn run(n: usize, m: usize) {
    let trustee_ids: Vec<[u8; 32]> = (0..m).map(|j| identity(1, j).public()).collect();
    let client_ids: Vec<[u8; 32]> = (0..n).map(|i| identity(2, i).public()).collect();
    let config = SetupConfig {
        group: [0x47; 32],
        epoch: 1,
        trustees: Box::leak(trustee_ids.into_boxed_slice()),
        clients: Box::leak(client_ids.into_boxed_slice()),
        min_trustees: m,
        chunk_len: 16 * 1024,
    };
    let mut participants = vec![0xffu8; bitmap_len(n)];
    if !n.is_multiple_of(8) {
        *participants.last_mut().unwrap() = (1u8 << (n % 8)) - 1;
    }
    let start = Instant::now();
    let mut relay = SetupRelay::new(
        config,
        SetupStorage::with_vecs(&config),
        vec![0u8; SetupRelay::<Vec<u8>>::collected_len(&config)],
        &participants,
    )
    .unwrap();
    let mut s = State {
        trustees: (0..m)
            .map(|j| {
                SetupTrustee::new(
                    config,
                    j as u8,
                    identity(1, j),
                    SetupStorage::with_vecs(&config),
                    vec![ProverSlot::EMPTY; n],
                )
                .unwrap()
            })
            .collect(),
        clients: (0..n)
            .map(|i| {
                SetupClient::new(
                    config,
                    i as u16,
                    identity(2, i),
                    SetupStorage::with_vecs(&config),
                )
                .unwrap()
            })
            .collect(),
        rng: ChaCha20Rng::from_seed([9; 32]),
        trustee_time: vec![Duration::ZERO; m],
        prove_time: vec![Duration::ZERO; m],
        member_time: Duration::ZERO,
        member_parts: [Duration::ZERO; 4],
        all_follow: true,
    };
    let mut buf = vec![0u8; CHUNK_HEADER_LEN + 32 * 1024];
    loop {
        let mut progress = false;
        while let Some(len) = relay.poll_broadcast(&mut buf).unwrap() {
            let frame = buf[..len].to_vec();
            s.deliver(&frame);
            progress = true;
        }
        for j in 0..m {
            loop {
                let began = Instant::now();
                let Some(len) = s.trustees[j].poll_transmit(&mut buf).unwrap() else {
                    break;
                };
                s.trustee_time[j] += began.elapsed();
                let frame = buf[..len].to_vec();
                let step = relay.receive_trustee(j as u8, &frame);
                assert!(!matches!(step, RelayStep::Refuse(_)), "{step:?}");
                s.deliver(&frame);
                progress = true;
            }
        }
        for i in 0..n {
            if let Some(frame) = s.clients[i].poll_transmit() {
                let frame = frame.to_vec();
                relay.receive_client(i as u16, &frame).unwrap();
                s.all_follow = false;
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    let setup = start.elapsed();
    assert!(relay.established().is_some(), "setup did not establish");
    assert!(s.clients[0].established().is_some());
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
