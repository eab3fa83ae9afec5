//! trustee-setup: a device trustee's part in the dealer-free epoch setup, as an image of its
//! own beside the DC-net `trustee` image.
//!
//! It reads two blobs: the DC-net node's (app `TRST`, in `PROVISION`: the trustee's index,
//! link and identity secrets, the relay, and the clients' identity keys) and its own (app
//! `TSET`, in `SETUP`: the group's fingerprint, the epoch, the group's fewest trustees and
//! the trustees' identity keys; `dissent_core::provision::EpochSetup`). It links to the
//! relay under the epoch's setup session id and runs the core's `SetupTrustee` over the
//! link: its key, every other node's proofs and signatures checked, its shuffle and proof,
//! its decryption shares, its epoch record, each proof in bounded steps with the other
//! tasks (the watchdog's, the network's) run between them. A link that drops is dialled
//! again, and the setup goes on where the relay takes it up.
//!
//! Once the epoch is established it completes the DC-net node's blob with what it verified
//! itself (the epoch's session id and the pseudonym keys in slot order) and hands the board
//! to the DC-net image (`dissent_embedded::handover`). The DC-net blob is written by the host
//! for every member of the group: an epoch that leaves out a client or convicts a trustee
//! does not fit it, and this image stops and says so.
//!
//! All storage is static, sized for groups of [`MAX_CLIENTS`] clients.
#![no_std]
#![no_main]

use core::task::Poll;

use dissent_core::epoch::message::{CHUNK_HEADER_LEN, MAX_CHUNK_DATA};
use dissent_core::epoch::rejoin::Rejoin;
use dissent_core::epoch::session;
use dissent_core::epoch::{
    Established, Event, Failure, SetupConfig, SetupStorage, SetupStorageLens, SetupTrustee,
};
use dissent_core::error::ConfigError;
use dissent_core::identity::IdentityKey;
use dissent_core::provision::{Blob, EpochSetup, Node, FORMAT, TRUSTEE_APP};
use dissent_core::ristretto::shuffle::ProverSlot;
use dissent_core::wire::{NodeRole, WireError};
use dissent_embedded::handover;
use dissent_embedded::stream::{frame_buffer_len, record_buffer_len, Outbound};
use dissent_embedded::uplink::{fill, send_frame, LinkBuffers, Loss, NodeName, Target, Uplink};
use dissent_embedded::{println, stack, Board, BoardRng};
use embassy_executor::Spawner;
use rand_core::RngCore;
use static_cell::{ConstStaticCell, StaticCell};

/// Most clients in a group this image sets up.
const MAX_CLIENTS: usize = 64;
/// Most trustees in such a group.
const MAX_TRUSTEES: usize = 16;
/// Largest frame body this image takes or builds: the largest setup chunk fits it.
const MAX_FRAME: usize = 4096;
const _: () = assert!(CHUNK_HEADER_LEN + MAX_CHUNK_DATA <= MAX_FRAME);
/// Longest wait for the relay's next setup frame before the setup is given up (a hosted
/// node's `setup::STALL`); a link that drops is dialled again instead.
const STALL: embassy_time::Duration = embassy_time::Duration::from_secs(120);
/// The TCP socket's buffers: small, for RAM; a setup moves little (about 60 KiB in to a
/// trustee of 64 members), and the record buffers hold whole frames.
const SOCKET_BUF: usize = 256;

dissent_embedded::declare_capacity!(
    app: dissent_core::provision::SETUP_APP,
    clients: MAX_CLIENTS,
    slots: MAX_CLIENTS,
    frame: MAX_FRAME,
);

/// A group of the most clients this image sets up, for the storage's lengths.
const LARGEST: SetupConfig<'static> = SetupConfig {
    group: [0; 32],
    epoch: 0,
    trustees: &[[0; 32]; 1],
    clients: &[[0; 32]; MAX_CLIENTS],
    min_trustees: 1,
    chunk_len: MAX_CHUNK_DATA,
};
/// The setup storage's regions for the largest group (they depend on the clients only).
const LENS: SetupStorageLens = LARGEST.storage_lens();

type DeviceSetup = SetupTrustee<'static, &'static mut [u8], &'static mut [ProverSlot], IdentityKey>;
type DeviceRejoin = Rejoin<'static, &'static mut [u8]>;

/// What the link task needs to take the epoch back or set it up.
struct Setup {
    trustee: &'static mut DeviceSetup,
    config: SetupConfig<'static>,
    /// This trustee's index in the group.
    index: u8,
    dcnet: DcnetBlob,
    name: NodeName,
    /// The relay, under the setup's session id.
    target: Target,
}

#[cortex_m_rt::entry]
fn main() -> ! {
    dissent_embedded::run(start)
}

fn fail(what: core::fmt::Arguments<'_>) -> ! {
    say(what);
    dissent_embedded::exit(1)
}

/// A line of the setup's progress on the console.
fn say(what: core::fmt::Arguments<'_>) {
    println!("trustee setup: {}", what);
}

/// The DC-net node's blob, decoded without the field checks the DC-net image makes when it
/// boots (`Node::parse`; their code does not fit this image): what this image uses of it is
/// checked where it is used.
///
/// A blob that does not decode is said in this image's words, not with the provisioning
/// errors' `Display` (1.4 KiB of flash with the setup blob's, below): on a real board the
/// DC-net image, which boots first, has said what is wrong with either blob before it
/// hands over; on the emulated board `dissent qemu` wrote both.
fn dcnet_node(area: &'static [u8]) -> Node<'static> {
    let decoded = Blob::parse(area).and_then(|b| b.decode::<(u16, Node<'static>)>(TRUSTEE_APP));
    match decoded {
        Ok((FORMAT, node)) if node.role == NodeRole::Trustee => node,
        _ => unreadable("the node's blob"),
    }
}

/// A blob that does not decode: says which, and stops.
fn unreadable(which: &str) -> ! {
    fail(format_args!(
        "{} is not one this firmware reads: write the blobs `dissent device provision` made for it",
        which
    ))
}

/// Reads both blobs, builds the setup and spawns the link task.
fn start(spawner: Spawner, board: Board) {
    let node = dcnet_node(board.provisioning);
    let name = NodeName {
        role: "trustee",
        index: node.index,
    };
    let setup = match EpochSetup::parse(handover::setup_area()) {
        Ok(s) => s,
        Err(_) => unreadable("the setup blob"),
    };
    let capacity = capacity();
    if u32::from(node.clients) > capacity.clients || setup.trustees.len() > MAX_TRUSTEES {
        fail(format_args!(
            "{} clients and {} trustees; this image serves up to {} and {}",
            node.clients,
            setup.trustees.len(),
            capacity.clients,
            MAX_TRUSTEES
        ));
    }
    // The two blobs must be of one group: the node's group id is the fingerprint's.
    if node.group_id != session::group_id(&setup.group)
        || usize::from(node.trustees) != setup.trustees.len()
    {
        fail(format_args!(
            "the setup blob is of another group than the node's blob"
        ));
    }
    let as_keys = |bytes: &'static [u8]| -> &'static [[u8; 32]] {
        match bytemuck::try_cast_slice::<u8, [u8; 32]>(bytes) {
            Ok(keys) => keys,
            Err(_) => fail(format_args!("identity keys are not whole keys")),
        }
    };
    let clients = as_keys(node.identity_keys());
    let trustees = as_keys(setup.trustees.as_bytes());
    if clients.len() != usize::from(node.clients)
        || node.pseudonym_keys().len() != usize::from(node.slots) * 32
    {
        fail(format_args!(
            "the node's blob does not list its group's keys"
        ));
    }
    let config = SetupConfig {
        group: setup.group,
        epoch: setup.epoch,
        trustees,
        clients,
        min_trustees: usize::from(setup.min_trustees),
        chunk_len: MAX_CHUNK_DATA,
    };
    println!(
        "{}: setup of epoch {} on {}: {} clients, {} trustees; relay {}:{}",
        name,
        setup.epoch,
        board.name,
        clients.len(),
        trustees.len(),
        node.relay,
        node.relay_port
    );
    // Zeroed in place in .bss.
    static PARTICIPANTS: ConstStaticCell<[u8; LENS.participants]> =
        ConstStaticCell::new([0; LENS.participants]);
    static ROWS: ConstStaticCell<[u8; LENS.rows]> = ConstStaticCell::new([0; LENS.rows]);
    static STAGE: ConstStaticCell<[u8; LENS.stage]> = ConstStaticCell::new([0; LENS.stage]);
    static SLOTS: ConstStaticCell<[ProverSlot; MAX_CLIENTS]> =
        ConstStaticCell::new([ProverSlot::EMPTY; MAX_CLIENTS]);
    static TRUSTEE: StaticCell<Result<DeviceSetup, ConfigError>> = StaticCell::new();
    let lens = config.storage_lens();
    // Built where it stays, as the result `new` returns: a copy on the stack would cost its
    // 6 KiB again (taking the trustee out of the result in the closure kept one in this
    // frame, 11.7 KiB then, 8.4 KiB now). Built here, before the link task runs: built
    // there, this frame would lie on the task's.
    let built = TRUSTEE.init_with(|| {
        SetupTrustee::new(
            config,
            node.index as u8,
            IdentityKey::from_bytes(&node.identity_secret),
            // Each region cut to this group's length: the core reads some of them whole.
            SetupStorage {
                participants: &mut PARTICIPANTS.take()[..lens.participants],
                rows: &mut ROWS.take()[..lens.rows],
                stage: &mut STAGE.take()[..lens.stage],
            },
            &mut SLOTS.take()[..],
        )
    });
    let trustee = match built {
        Ok(t) => t,
        Err(e) => unbuilt(*e),
    };
    let target = Target {
        session_id: session::setup_session(&setup.group, setup.epoch),
        ..Target::of(&node)
    };
    let setup = Setup {
        trustee,
        config,
        index: node.index as u8,
        dcnet: DcnetBlob {
            group: config.group,
            clients: node.clients,
            trustees: node.trustees,
            slots: node.slots,
            session_at: node.session_id_offset(),
            keys_at: node.pseudonym_keys().as_ptr() as usize - board.provisioning.as_ptr() as usize,
        },
        name,
        target,
    };
    // The pool holds this one task, spawned once.
    spawner.spawn(link(setup, board).unwrap());
}

/// Which link the setup image is on.
enum Phase {
    /// The rejoin link: its storage is the output buffer, idle while the device only
    /// listens; the setup waits.
    Rejoin(DeviceRejoin, &'static mut DeviceSetup),
    /// The setup link, with its output buffer.
    Setup(&'static mut DeviceSetup, Outbound<'static>),
}

/// The link to the relay: first a rejoin link, which gives the epoch back when the relay
/// established it already (this trustee signed its record, then the board was reset
/// before the epoch was written into flash); when the relay closes it before any frame it
/// is setting the epoch up, and the setup link follows: the trustee's frames out, the
/// relay's in, until the epoch is established. Then the hand-over.
#[embassy_executor::task]
async fn link(setup: Setup, mut board: Board) {
    static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers::new());
    let (mut socket, mut inbound, out) = BUFFERS.take().split(board.net);
    board.net.wait_config_up().await;
    let started = embassy_time::Instant::now();
    let group = setup.config.group;
    let mut seed = [0u8; 32];
    RngCore::fill_bytes(&mut board.rng, &mut seed);
    let mut uplink = Uplink::new(
        setup.name,
        board.net,
        Target {
            session_id: session::rejoin_session(&group, setup.config.epoch),
            ..setup.target
        },
        seed,
    );
    let mut phase = match Rejoin::new(setup.config, setup.index, &mut out[..]) {
        Ok(r) => Phase::Rejoin(r, setup.trustee),
        Err(e) => unbuilt(e),
    };
    loop {
        let transport = uplink
            .connect(&mut socket, &mut inbound, &mut board.rng)
            .await;
        let (mut sealer, mut opener) = transport.split();
        let mut framed = false;
        let loss: Loss<&'static str> = 'link: loop {
            // Everything the trustee has to send, then the next frame from the relay.
            while let Phase::Setup(trustee, out) = &mut phase {
                // A frame is its length (u32 BE) and the setup message.
                let (head, body) = out.frame_space().split_at_mut(4);
                let n = match transmit(trustee, body) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(e) => fail(format_args!("cannot build a setup frame: {}", e)),
                };
                head.copy_from_slice(&(n as u32).to_be_bytes());
                if let Err(loss) = send_frame(&mut socket, out, &mut sealer, 4 + n).await {
                    break 'link loss;
                }
            }
            let frame = loop {
                match inbound.next_frame(&mut opener) {
                    Ok(Some(body)) => break body,
                    Ok(None) => {}
                    Err(e) => break 'link Loss::from(e),
                }
                match embassy_time::with_timeout(STALL, fill(&mut socket, &mut inbound)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(loss)) => break 'link loss,
                    Err(_) => match &mut phase {
                        Phase::Setup(trustee, _) => failed(trustee.stalled()),
                        // As a link that ended (below).
                        Phase::Rejoin(..) => break 'link Loss::Closed,
                    },
                }
            };
            framed = true;
            let trustee = match &mut phase {
                Phase::Setup(trustee, _) => trustee,
                Phase::Rejoin(rejoin, _) => {
                    take_back(rejoin, frame, &setup.dcnet, started, &mut board);
                    continue;
                }
            };
            let mut polled = begin(trustee, frame, &mut board.rng);
            // The proofs in bounded steps, the other tasks run between them.
            let result = loop {
                match polled {
                    Poll::Ready(result) => break result,
                    Poll::Pending => {
                        embassy_futures::yield_now().await;
                        polled = work(trustee, &mut board.rng);
                    }
                }
            };
            match result {
                Ok(Event::Opened) => say(format_args!("attempt opened")),
                Ok(Event::KeysComplete) => say(format_args!("every trustee's key is in")),
                Ok(Event::ListReady) => say(format_args!("pseudonym list decrypted")),
                Ok(Event::Restarting(c)) => say(format_args!(
                    "CONVICTED trustee {}: {}; the relay restarts without it",
                    c.trustee, c
                )),
                Ok(Event::Established) => {
                    socket.abort();
                    let _ = embassy_time::with_timeout(
                        embassy_time::Duration::from_millis(100),
                        socket.flush(),
                    )
                    .await;
                    set_up(trustee, &setup.dcnet, started, &mut board)
                }
                Ok(_) => {}
                Err(f) => failed(f),
            }
        };
        match &phase {
            // Closed before any frame: the relay is setting the epoch up. The setup link
            // is dialled at once.
            Phase::Rejoin(..) if !framed => {
                socket.abort();
                say(format_args!("no epoch to take back"));
                phase = match phase {
                    Phase::Rejoin(rejoin, trustee) => {
                        Phase::Setup(trustee, Outbound::new(rejoin.into_storage()))
                    }
                    setup => setup,
                };
                uplink.set_session(setup.target.session_id);
            }
            Phase::Rejoin(..) => rejoin_failed(),
            Phase::Setup(..) => uplink.lost(&mut socket, &loss, None).await,
        }
    }
}

/// What the relay sent on the rejoin link does not give the epoch back: says so, and stops
/// (the board resets and its setup image asks again). In the image's own words, not with
/// `RejoinError`'s `Display` (its text and code take flash this image does not have), so
/// without naming the check that failed.
fn rejoin_failed() -> ! {
    fail(format_args!(
        "the epoch on the rejoin link did not come whole, or does not verify with this \
         trustee's own record signature"
    ))
}

/// Says why the setup could not be built, and stops. Written out here rather than with
/// `ConfigError`'s `Display`, whose messages for the DC-net's settings this image never
/// shows (their text and code took about 600 B of flash).
fn unbuilt(e: ConfigError) -> ! {
    match e {
        ConfigError::StorageTooSmall(what) => fail(format_args!("storage too small: `{}`", what)),
        ConfigError::FrameLimit => fail(format_args!("the setup's chunks do not fit a frame")),
        _ => fail(format_args!("client or trustee count out of range")),
    }
}

/// Says why the setup failed, and stops. Written out here rather than with `Failure`'s
/// `Display`, whose relay faults are shown with `Debug` (its formatting code is 2 KiB of
/// flash this image does not have).
fn failed(f: Failure) -> ! {
    match f {
        Failure::TooFewTrustees {
            conviction,
            remaining,
            minimum,
        } => fail(format_args!(
            "setup failed: {}; {} trustees remain, the group needs {}",
            conviction, remaining, minimum
        )),
        Failure::Relay(_) => fail(format_args!(
            "setup failed: the relay broke the protocol, or left this trustee out"
        )),
        Failure::Disagreement { trustee } => fail(format_args!(
            "setup failed: trustee {} signed another record (it or the relay lies)",
            trustee
        )),
        Failure::TooFewClients { remaining, minimum } => fail(format_args!(
            "setup failed: {} participants remain, the group needs {}",
            remaining, minimum
        )),
        Failure::TooManyAttempts { attempts } => fail(format_args!(
            "setup failed: participants left in all {} attempts",
            attempts
        )),
        Failure::Stalled(_) => fail(format_args!(
            "setup failed: nothing came from the relay for {} s",
            STALL.as_secs()
        )),
        _ => fail(format_args!("setup failed")),
    }
}

// The trustee's calls, each out of line: inlined into the link task, their locals (the
// signature checks', the proofs') would stay in its frame, beneath whatever it calls next.

#[inline(never)]
fn begin(
    trustee: &mut DeviceSetup,
    frame: &[u8],
    rng: &mut BoardRng,
) -> Poll<Result<Event, Failure>> {
    trustee.begin(frame, rng)
}

#[inline(never)]
fn work(trustee: &mut DeviceSetup, rng: &mut BoardRng) -> Poll<Result<Event, Failure>> {
    trustee.work(rng)
}

#[inline(never)]
fn transmit(trustee: &mut DeviceSetup, out: &mut [u8]) -> Result<Option<usize>, WireError> {
    trustee.poll_transmit(out)
}

/// What the setup image needs of the DC-net node's blob once the epoch is established: the
/// group it is for, and where its session id and its slots' pseudonym keys lie.
struct DcnetBlob {
    /// The group's fingerprint.
    group: [u8; 32],
    clients: u16,
    trustees: u16,
    slots: u16,
    /// The session id's offset in the provisioning area.
    session_at: usize,
    /// The first pseudonym key's offset in the provisioning area.
    keys_at: usize,
}

/// The rejoin link's next frame; once the epoch is back, the hand-over. Out of line:
/// inlined into the link task, the signature check's locals would stay in its frame.
#[inline(never)]
fn take_back(
    rejoin: &mut DeviceRejoin,
    frame: &[u8],
    node: &DcnetBlob,
    started: embassy_time::Instant,
    board: &mut Board,
) {
    match rejoin.receive(frame) {
        Ok(Some(epoch)) => established(
            node,
            epoch,
            (
                "taken back from the relay, established",
                "this trustee's own signature on it",
            ),
            rejoin.participants(),
            &|at, chunk, to| {
                for (slot, key) in rejoin.pseudonyms().enumerate() {
                    overlay(at, chunk, to + slot * 32, key);
                }
            },
            started,
            board,
        ),
        Ok(None) => {}
        Err(_) => rejoin_failed(),
    }
}

/// The setup established the epoch: the hand-over.
#[inline(never)]
fn set_up(
    trustee: &DeviceSetup,
    node: &DcnetBlob,
    started: embassy_time::Instant,
    board: &mut Board,
) -> ! {
    let Some(epoch) = trustee.established() else {
        fail(format_args!("no epoch"))
    };
    established(
        node,
        epoch,
        ("established", "every proof and signature checked"),
        trustee.participants(),
        &|at, chunk, to| {
            for (slot, key) in trustee.pseudonyms().enumerate() {
                overlay(at, chunk, to + slot * 32, key);
            }
        },
        started,
        board,
    )
}

/// The epoch is established (`how`: set up here, or taken back from the relay, and why it
/// is this trustee's): checks it
/// fits the node's blob, completes the blob with it (`keys` writes the pseudonym keys, the
/// first at the given offset, into the part of the blob at `at`) and hands the board over.
fn established(
    node: &DcnetBlob,
    epoch: Established,
    how: (&str, &str),
    participants: &[u8],
    keys: &dyn Fn(usize, &mut [u8], usize),
    started: embassy_time::Instant,
    board: &mut Board,
) -> ! {
    let area = board.provisioning;
    let clients = usize::from(node.clients);
    let all_clients = (0..clients).all(|i| dissent_core::bits::test(participants, i));
    let all_trustees = (0..node.trustees).all(|j| epoch.trustees & (1 << j) != 0);
    if !all_clients || !all_trustees || epoch.slots != clients || node.slots != node.clients {
        fail(format_args!(
            "epoch {} has {} slots and {} trustees; the DC-net blob names every member: \
             provision the next epoch",
            epoch.epoch,
            epoch.slots,
            epoch.trustees.count_ones(),
        ));
    }
    let session_id = session::session_id(&node.group, &epoch);
    say(format_args!(
        "epoch {} {} in attempt {} in {} ms: {} slots; {}; stack peak {} B",
        epoch.epoch,
        how.0,
        epoch.attempt,
        started.elapsed().as_millis(),
        epoch.slots,
        how.1,
        stack::peak()
    ));
    // The node's blob with its session id and its slots' pseudonym keys at their places.
    let len =
        Blob::parse(area).map_or(0, |b| dissent_core::provision::HEADER_LEN + b.payload.len());
    let mut patch = |at: usize, chunk: &mut [u8]| {
        overlay(at, chunk, node.session_at, &session_id);
        keys(at, chunk, node.keys_at);
    };
    // SAFETY: nothing reads the blob's bytes as they were after this (the blob is parsed
    // again once written).
    if let Err(e) = unsafe { handover::complete_blob(len, &mut patch) } {
        fail(format_args!(
            "the DC-net blob cannot be completed: {}",
            why(e)
        ));
    }
    // The stack peak again: the blob's update runs below the link task's frame.
    say(format_args!(
        "handing over to the DC-net trustee; stack peak {} B",
        stack::peak()
    ));
    handover::hand_over(&mut board.rng)
}

/// Why a blob write failed, in words.
fn why(e: handover::BlobWrite) -> &'static str {
    match e {
        handover::BlobWrite::OutOfArea => "it does not lie in the provisioning area",
        handover::BlobWrite::Mismatch => "it does not read back as written",
        handover::BlobWrite::Flash => "the flash refused a write",
    }
}

/// Copies the part of `bytes` (at blob offset `to`) that falls in `chunk` (at blob offset
/// `at`).
fn overlay(at: usize, chunk: &mut [u8], to: usize, bytes: &[u8]) {
    let from = to.max(at);
    let end = (to + bytes.len()).min(at + chunk.len());
    if let (Some(dst), Some(src)) = (
        chunk.get_mut(from.wrapping_sub(at)..end.wrapping_sub(at)),
        bytes.get(from.wrapping_sub(to)..end.wrapping_sub(to)),
    ) {
        dst.copy_from_slice(src);
    }
}

/// The link's buffers: records and frames of up to one largest frame. The output buffer is
/// the rejoin link's storage first.
type Buffers = LinkBuffers<
    SOCKET_BUF,
    { record_buffer_len(frame_buffer_len(MAX_FRAME)) },
    { frame_buffer_len(MAX_FRAME) },
    { record_buffer_len(frame_buffer_len(MAX_FRAME)) },
>;
const _: () = assert!(
    record_buffer_len(frame_buffer_len(MAX_FRAME)) >= Rejoin::<&mut [u8]>::storage_len(&LARGEST)
);
