//! setupcheck: times a device trustee's part in the dealer-free epoch setup (64 members),
//! then exits.
//!
//! One whole setup runs on the board, in memory, with the core's own state machines: a
//! relay (`SetupRelay`), two trustees (`SetupTrustee`) and 64 clients (`SetupClient`), every
//! frame going through the relay as on the network (the relay forwards each trustee frame
//! to every trustee, its author included). Trustee 1 is the one measured: it takes each
//! frame as a device does, in bounded steps (`begin`, then `work` until done, yielding
//! between), every call into it is timed, and its storage is what a device trustee would
//! hold. The other nodes are the stand-ins a network would provide: trustee 0 and the relay verify everything as well, and
//! each client verifies the trustees' keys, submits, and is then dropped (its storage is
//! reused by the next client), so the run fits the emulated board's RAM.
//!
//! Chunks are cut to fit the device's frames (`MAX_FRAME`, as its trustee firmware
//! declares). It prints the times, the storage and the stack peak; exits 0 when both
//! trustees established the same epoch over every member, 1 otherwise. No provisioning and
//! no network use: `DISSENT_ICOUNT=1 cargo run --release --bin setupcheck` (the board's
//! clock then counts instructions, one nanosecond each: a millisecond printed is a million
//! instructions, whatever the host's load; without it a loaded host can stretch one long
//! step past the watchdog's 8 s).
#![no_std]
#![no_main]

use core::task::Poll;
use dissent_core::epoch::message::{Stage, CHUNK_HEADER_LEN};

use dissent_core::epoch::{
    Event, Failure, RelayStep, SetupClient, SetupConfig, SetupRelay, SetupStorage,
    SetupStorageLens, SetupTrustee, Waiting,
};
use dissent_core::identity::IdentityKey;
use dissent_core::ristretto::shuffle::ProverSlot;
use dissent_embedded::{println, stack, Board, BoardRng};
use embassy_time::{Duration, Instant};
use rand_core::RngCore;
use static_cell::ConstStaticCell;

/// Members and trustees of the group set up.
const CLIENTS: usize = 64;
const TRUSTEES: usize = 2;
/// The largest frame body the device trustee takes (as its firmware declares).
const MAX_FRAME: usize = 4096;
/// Data bytes per chunk: the most a frame of `MAX_FRAME` carries.
const CHUNK_LEN: usize = MAX_FRAME - CHUNK_HEADER_LEN;
/// The measured trustee.
const DEVICE: usize = 1;

const fn lens() -> SetupStorageLens {
    SetupConfig {
        group: [0; 32],
        epoch: 0,
        trustees: &[[0; 32]; TRUSTEES],
        clients: &[[0; 32]; CLIENTS],
        min_trustees: TRUSTEES,
        chunk_len: CHUNK_LEN,
    }
    .storage_lens()
}
const LENS: SetupStorageLens = lens();
/// One node's setup storage, its three regions one after another.
const NODE_LEN: usize = LENS.participants + LENS.rows + LENS.stage;
/// The relay's collected submissions.
const COLLECTED_LEN: usize = 64 * 1024;

/// Storage of the two trustees, the relay and the one client alive at a time.
static NODES: ConstStaticCell<[[u8; NODE_LEN]; TRUSTEES + 2]> =
    ConstStaticCell::new([[0; NODE_LEN]; TRUSTEES + 2]);
static COLLECTED: ConstStaticCell<[u8; COLLECTED_LEN]> = ConstStaticCell::new([0; COLLECTED_LEN]);
static SLOTS: ConstStaticCell<[[ProverSlot; CLIENTS]; TRUSTEES]> =
    ConstStaticCell::new([[ProverSlot::EMPTY; CLIENTS]; TRUSTEES]);
/// The frame being passed on, and the frames a client needs before it submits (the `Open`
/// and every trustee's key).
static FRAME: ConstStaticCell<[u8; MAX_FRAME]> = ConstStaticCell::new([0; MAX_FRAME]);
static EARLY: ConstStaticCell<[[u8; 512]; 1 + TRUSTEES]> =
    ConstStaticCell::new([[0; 512]; 1 + TRUSTEES]);
static IDENTITIES: ConstStaticCell<[[u8; 32]; CLIENTS + TRUSTEES]> =
    ConstStaticCell::new([[0; 32]; CLIENTS + TRUSTEES]);

#[cortex_m_rt::entry]
fn main() -> ! {
    dissent_embedded::run(|spawner, board| {
        // The pool holds this one task, spawned once.
        spawner.spawn(setupcheck(board).unwrap());
    })
}

fn storage(region: &mut [u8]) -> SetupStorage<&mut [u8]> {
    let (participants, rest) = region.split_at_mut(LENS.participants);
    let (rows, stage) = rest.split_at_mut(LENS.rows);
    SetupStorage {
        participants,
        rows,
        stage,
    }
}

/// What the setup waited for when a call into the measured trustee began: the phases its
/// time and stack are reported by.
const PHASES: [&str; 7] = [
    "the relay's Open",
    "the trustees' keys",
    "the submissions",
    "the shuffles",
    "the decryption shares",
    "the records",
    "nothing more",
];

fn phase(waiting: Waiting) -> usize {
    match waiting {
        Waiting::Open => 0,
        Waiting::Key(_) => 1,
        Waiting::Submit(_) => 2,
        Waiting::Chunk(_, Stage::Shuffle) | Waiting::Seal(_, Stage::Shuffle) => 3,
        Waiting::Chunk(_, Stage::Shares) | Waiting::Seal(_, Stage::Shares) => 4,
        Waiting::Record(_) => 5,
        Waiting::Nothing => 6,
    }
}

/// Time spent in the measured trustee's calls and the deepest stack any of them took below
/// its caller, by phase.
#[derive(Default)]
struct Meter {
    total: Duration,
    longest: Duration,
    calls: u32,
    /// Per phase: time, calls, deepest stack below the caller, longest call.
    phases: [(Duration, u32, usize, Duration); PHASES.len()],
    /// The deepest stack the callers themselves used.
    caller: usize,
}

impl Meter {
    #[inline(never)]
    fn time<T>(&mut self, waiting: Waiting, f: impl FnOnce() -> T) -> T {
        stack::repaint();
        let caller = stack::in_use();
        let started = Instant::now();
        let out = f();
        let took = started.elapsed();
        let below = stack::peak().saturating_sub(caller);
        self.caller = self.caller.max(caller);
        self.total += took;
        self.longest = self.longest.max(took);
        self.calls += 1;
        let p = &mut self.phases[phase(waiting)];
        p.0 += took;
        p.1 += 1;
        p.2 = p.2.max(below);
        p.3 = p.3.max(took);
        out
    }

    fn stack(&self) -> usize {
        self.phases.iter().map(|p| p.2).max().unwrap_or(0)
    }
}

fn fail(what: &str) -> ! {
    println!("setupcheck: FAILED: {}", what);
    dissent_embedded::exit(1)
}

/// The device trustee takes a frame as its firmware would: `begin`, then one bounded
/// `work` step at a time, yielding to the other tasks (the watchdog's) between steps; every
/// call is metered on its own.
async fn device_takes(
    meter: &mut Meter,
    trustee: &mut Trustee,
    frame: &[u8],
    rng: &mut BoardRng,
) -> Result<Event, Failure> {
    let mut polled = meter.time(trustee.waiting(), || trustee.begin(frame, rng));
    loop {
        match polled {
            Poll::Ready(result) => return result,
            Poll::Pending => {
                embassy_futures::yield_now().await;
                polled = meter.time(trustee.waiting(), || trustee.work(rng));
            }
        }
    }
}

type Trustee = SetupTrustee<'static, &'static mut [u8], &'static mut [ProverSlot], IdentityKey>;

#[embassy_executor::task]
async fn setupcheck(mut board: Board) {
    let start_stack = stack::peak();
    let rng: &mut BoardRng = &mut board.rng;
    let ids = IDENTITIES.take();
    let mut secrets = [[0u8; 32]; TRUSTEES];
    for s in secrets.iter_mut() {
        RngCore::fill_bytes(rng, s);
    }
    for (j, s) in secrets.iter().enumerate() {
        ids[j] = IdentityKey::from_bytes(s).public();
    }
    let mut client_seed = [0u8; 32];
    RngCore::fill_bytes(rng, &mut client_seed);
    let client_key = |i: usize| {
        let mut s = client_seed;
        s[..2].copy_from_slice(&(i as u16).to_le_bytes());
        IdentityKey::from_bytes(&s)
    };
    for i in 0..CLIENTS {
        ids[TRUSTEES + i] = client_key(i).public();
    }
    let ids: &'static [[u8; 32]] = ids;
    let mut group = [0u8; 32];
    RngCore::fill_bytes(rng, &mut group);
    let config = SetupConfig {
        group,
        epoch: 1,
        trustees: &ids[..TRUSTEES],
        clients: &ids[TRUSTEES..],
        min_trustees: TRUSTEES,
        chunk_len: CHUNK_LEN,
    };
    let [t0, t1, relay_region, client_region] = NODES.take();
    let [slots0, slots1] = SLOTS.take();
    let (frame, early) = (FRAME.take(), EARLY.take());
    let mut meter = Meter::default();
    let started = Instant::now();
    let trustee = |j: usize, region: &'static mut [u8], slots: &'static mut [ProverSlot]| {
        SetupTrustee::new(
            config,
            j as u8,
            IdentityKey::from_bytes(&secrets[j]),
            storage(region),
            slots,
        )
    };
    let t0 = trustee(0, t0, slots0);
    let t1 = meter.time(Waiting::Open, || trustee(1, t1, slots1));
    let (Ok(mut t0), Ok(mut t1)) = (t0, t1) else {
        fail("a trustee refused its configuration")
    };
    let all = [0xffu8; CLIENTS / 8];
    let Ok(mut relay) = SetupRelay::new(
        config,
        storage(relay_region),
        &mut COLLECTED.take()[..],
        &all,
    ) else {
        fail("the relay refused its configuration")
    };
    let mut early_lens = [0usize; 1 + TRUSTEES];
    let mut submitted = false;
    let mut established = [false; TRUSTEES];
    let mut frames = 0u32;
    let mut bytes = 0usize;
    let mut after_keys = None;
    // Every node gets every frame the relay sends, in the relay's order.
    loop {
        let mut moved = false;
        // The relay's own frames: an `Open`, the collected submissions.
        while let Some(n) = relay
            .poll_broadcast(frame)
            .unwrap_or_else(|_| fail("relay frame"))
        {
            moved = true;
            frames += 1;
            bytes += n;
            embassy_futures::yield_now().await;
            if early_lens[0] == 0 && n <= 512 {
                early[0][..n].copy_from_slice(&frame[..n]);
                early_lens[0] = n;
            }
            if t0.receive(&frame[..n], rng).is_err() {
                fail("trustee 0 refused the relay's frame");
            }
            if device_takes(&mut meter, &mut t1, &frame[..n], rng)
                .await
                .is_err()
            {
                fail("the device trustee refused the relay's frame");
            }
        }
        // Each trustee's frames, forwarded by the relay to every trustee.
        for j in 0..TRUSTEES {
            loop {
                let polled = if j == DEVICE {
                    meter.time(t1.waiting(), || t1.poll_transmit(frame))
                } else {
                    t0.poll_transmit(frame)
                };
                let n = match polled {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(_) => fail("a trustee could not build a frame"),
                };
                moved = true;
                frames += 1;
                bytes += n;
                // The watchdog's task runs between frames.
                embassy_futures::yield_now().await;
                match relay.receive_trustee(j as u8, &frame[..n]) {
                    RelayStep::Forward | RelayStep::ForwardEstablished => {}
                    _ => fail("the relay refused a trustee's frame"),
                }
                if early_lens[1 + j] == 0 && n <= 512 {
                    early[1 + j][..n].copy_from_slice(&frame[..n]);
                    early_lens[1 + j] = n;
                }
                let first = t0.receive(&frame[..n], rng);
                let second = device_takes(&mut meter, &mut t1, &frame[..n], rng).await;
                for (k, event) in [first, second].into_iter().enumerate() {
                    match event {
                        Ok(Event::Established) => established[k] = true,
                        Ok(Event::KeysComplete) if after_keys.is_none() => {
                            after_keys = Some(Instant::now())
                        }
                        Ok(_) => {}
                        Err(_) => fail("a trustee refused a forwarded frame"),
                    }
                }
            }
        }
        // Once every key is in: each client checks the keys and submits.
        if !submitted && early_lens.iter().all(|&n| n > 0) {
            submitted = true;
            for i in 0..CLIENTS {
                let Ok(mut client) = SetupClient::new(
                    config,
                    i as u16,
                    client_key(i),
                    storage(&mut client_region[..]),
                ) else {
                    fail("a client refused its configuration")
                };
                for (f, &n) in early.iter().zip(early_lens.iter()) {
                    if client.receive(&f[..n], rng).is_err() {
                        fail("a client refused the Open or a key");
                    }
                }
                let Some(submission) = client.poll_transmit() else {
                    fail("a client did not submit")
                };
                bytes += submission.len();
                frames += 1;
                if relay.receive_client(i as u16, submission).is_err() {
                    fail("the relay refused a submission");
                }
                embassy_futures::yield_now().await;
            }
            moved = true;
        }
        if established.iter().all(|&e| e) {
            break;
        }
        if !moved {
            fail("the setup stopped before the epoch was established");
        }
    }
    let total = started.elapsed();
    let (Some(e0), Some(e1)) = (t0.established(), t1.established()) else {
        fail("no epoch")
    };
    if e0 != e1 || e1.slots != CLIENTS || !t0.pseudonyms().eq(t1.pseudonyms()) {
        fail("the trustees disagree on the epoch");
    }
    let since_keys = after_keys.map_or(0, |at| at.elapsed().as_millis());
    println!(
        "setupcheck: {} members, {} trustees, {}-byte chunks: epoch established in {} ms ({} ms after the keys), {} frames, {} KiB",
        CLIENTS,
        TRUSTEES,
        CHUNK_LEN,
        total.as_millis(),
        since_keys,
        frames,
        bytes / 1024
    );
    println!(
        "setupcheck: the device trustee: {} ms in {} calls, the longest {} ms",
        meter.total.as_millis(),
        meter.calls,
        meter.longest.as_millis()
    );
    println!(
        "setupcheck: the device trustee's storage {} B (participants {}, rows {}, stage {}; prover slots {}), state {} B",
        NODE_LEN + core::mem::size_of::<[ProverSlot; CLIENTS]>(),
        LENS.participants,
        LENS.rows,
        LENS.stage,
        core::mem::size_of::<[ProverSlot; CLIENTS]>(),
        core::mem::size_of_val(&t1)
    );
    for (name, (took, calls, below, longest)) in PHASES.iter().zip(meter.phases.iter()) {
        if *calls > 0 {
            println!(
                "setupcheck: the device trustee waiting for {}: {} ms in {} calls (the longest {} ms), stack {} B below the caller",
                name,
                took.as_millis(),
                calls,
                longest.as_millis(),
                below
            );
        }
    }
    println!(
        "setupcheck: stack peak {} B at start; the device trustee's calls take {} B below their caller ({} B in use there)",
        start_stack,
        meter.stack(),
        meter.caller
    );
    println!("setupcheck: ok");
    dissent_embedded::exit(0)
}
