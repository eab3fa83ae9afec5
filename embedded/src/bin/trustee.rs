//! trustee: a DC-net trustee on the device, the same `dissent_core::trustee` as hosted ones.
//!
//! It reads its node configuration from the provisioning blob (app `TRST`, see
//! `dissent_core::provision`), dials the relay (redialling with backoff whenever the link
//! drops), and serves pads for every exchange of every interval. On a real board, a blob
//! that names no epoch yet hands the board to the setup image (`trustee-setup`), which
//! sets it up and hands the board back. The group may have up to
//! [`MAX_CLIENTS`] clients; all storage is static and sized at compile time.
//!
//! Console: one line per link event and one per interval.
#![no_std]
#![no_main]

use dissent_core::bits::bitmap_len;
use dissent_core::crypto::{IntervalKey, PairKey};
use dissent_core::schedule::Schedule;
use dissent_core::trustee::{PeerError, Trustee, TrusteeConfig, TrusteeEvent, TrusteeStorage};
use dissent_core::wire::NodeRole;
use dissent_embedded::region::Region;
use dissent_embedded::stream::{frame_buffer_len, record_buffer_len, REVEAL_SLACK};
use dissent_embedded::uplink::{
    fill, now, peer_keys, provisioned, stop_if_replaced, transmit_all, LinkBuffers, Loss, NodeName,
    RoleError, Target, Uplink,
};
use dissent_embedded::{println, stack, Board};
use embassy_executor::Spawner;
use rand_core::RngCore;
use static_cell::{ConstStaticCell, StaticCell};

/// Most clients in a group this firmware serves.
const MAX_CLIENTS: usize = 64;
/// Most pseudonym slots in such a group.
const MAX_SLOTS: usize = 256;
/// Largest frame body this trustee takes or builds (declared in its Hello).
const MAX_FRAME: usize = 4096;
/// Plaintext bytes of the largest record accepted: one whole frame.
const MAX_RECORD_PLAINTEXT: usize = frame_buffer_len(MAX_FRAME);
/// The TCP socket's buffers.
const SOCKET_BUF: usize = 4096;
/// The online set and the schedule table.
const ONLINE_LEN: usize = bitmap_len(MAX_CLIENTS);
const TABLE_LEN: usize = Schedule::table_len(MAX_SLOTS as u16);

dissent_embedded::declare_capacity!(
    app: dissent_core::provision::TRUSTEE_APP,
    clients: MAX_CLIENTS,
    slots: MAX_SLOTS,
    frame: MAX_FRAME,
);

type DeviceTrustee = Trustee<&'static mut [PairKey], &'static mut [IntervalKey], Region>;

#[cortex_m_rt::entry]
fn main() -> ! {
    dissent_embedded::run(start)
}

/// Reads the provisioning, agrees the keys and spawns the link task.
fn start(spawner: Spawner, mut board: Board) {
    let (node, name) = provisioned(board.provisioning, NodeRole::Trustee, "trustee");
    // A dealer-free group's trustee whose blob names no epoch yet (the host writes its
    // session id zero): on a real board, the setup image sets the epoch up and hands the
    // board back (`dissent qemu` boots the emulated board's setup image itself).
    #[cfg(not(feature = "mps2-an385"))]
    if node.session_id == [0; 16] {
        // The setup image says only that a blob does not decode: the words are here.
        if let Err(e) =
            dissent_core::provision::EpochSetup::parse(dissent_embedded::handover::setup_area())
        {
            println!("{}: no epoch in the blob, and the setup blob: {}", name, e);
            dissent_embedded::exit(1)
        }
        println!("{}: no epoch in the blob; starting the setup image", name);
        dissent_embedded::handover::to_setup_image(&mut board.rng);
        println!(
            "{}: no setup image flashed: flash `trustee-setup` (README.md)",
            name
        );
        dissent_embedded::exit(1)
    }
    let capacity = capacity();
    if u32::from(node.clients) > capacity.clients || u32::from(node.slots) > capacity.slots {
        println!(
            "{}: the group has {} clients and {} slots; this firmware serves up to {} and {}",
            name, node.clients, node.slots, capacity.clients, capacity.slots
        );
        dissent_embedded::exit(1)
    }
    let client_keys = peer_keys(&node, name);
    println!(
        "{}: on {}, group of {} clients, {} trustees, {}-byte cells; relay {}:{}",
        name, board.name, node.clients, node.trustees, node.cell_len, node.relay, node.relay_port
    );

    let mut seed = [0u8; 32];
    RngCore::fill_bytes(&mut board.rng, &mut seed);
    let config = TrusteeConfig {
        index: node.index,
        trustees: node.trustees,
        group_id: node.group_id,
        session_id: node.session_id,
        session_secret: node.session_secret,
        client_keys,
        slots: node.slots,
        cell_len: node.cell_len as usize,
        max_reserved: node.slots,
        max_frame: MAX_FRAME as u32,
        rng_seed: seed,
        min_clients: node.min_clients,
        policy: node.policy(),
    };
    // Zeroed in place in .bss.
    static PAIRS: ConstStaticCell<[PairKey; MAX_CLIENTS]> =
        ConstStaticCell::new([PairKey::EMPTY; MAX_CLIENTS]);
    static KEYS: ConstStaticCell<[IntervalKey; MAX_CLIENTS]> =
        ConstStaticCell::new([IntervalKey::EMPTY; MAX_CLIENTS]);
    static ONLINE: ConstStaticCell<[u8; ONLINE_LEN]> = ConstStaticCell::new([0; ONLINE_LEN]);
    static TABLE: ConstStaticCell<[u8; TABLE_LEN]> = ConstStaticCell::new([0; TABLE_LEN]);
    static TRUSTEE: StaticCell<DeviceTrustee> = StaticCell::new();
    let started = embassy_time::Instant::now();
    let made = Trustee::new(
        &config,
        TrusteeStorage {
            pairs: &mut PAIRS.take()[..],
            interval_keys: &mut KEYS.take()[..],
            online: Region::Ram(&mut ONLINE.take()[..]),
            schedule: Region::Ram(&mut TABLE.take()[..]),
        },
    );
    let trustee = match made {
        Ok(t) => TRUSTEE.init(t),
        Err(e) => {
            println!("{}: {}", name, e);
            dissent_embedded::exit(1)
        }
    };
    // What it answers blame rounds with: its identity key, its pad key, and every client's
    // pad key, every slot's pseudonym key and every client's identity key, read where the
    // provisioning has them.
    let blame_keys = Region::Provisioned(node.peer_keys.as_bytes());
    if let Err(e) = trustee.set_blame_keys(&node.identity_secret, &node.session_secret, blame_keys)
    {
        println!("{}: blame keys: {}", name, e);
        dissent_embedded::exit(1)
    }
    println!(
        "{}: keys agreed with {} clients in {} ms; stack peak {} B",
        name,
        client_keys.len(),
        started.elapsed().as_millis(),
        stack::peak()
    );

    RngCore::fill_bytes(&mut board.rng, &mut seed);
    let uplink = Uplink::new(name, board.net, Target::of(&node), seed);
    // The pool holds this one task, spawned once.
    spawner.spawn(link(name, trustee, uplink, board).unwrap());
}

/// The relay link: serves the trustee's frames, dialling again whenever the link drops.
#[embassy_executor::task]
async fn link(
    name: NodeName,
    trustee: &'static mut DeviceTrustee,
    mut uplink: Uplink,
    mut board: Board,
) {
    static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers::new());
    let (mut socket, mut inbound, mut out) = BUFFERS.take().parts(board.net);
    board.net.wait_config_up().await;
    let mut stats = Stats::default();
    loop {
        let transport = uplink
            .connect(&mut socket, &mut inbound, &mut board.rng)
            .await;
        let (mut sealer, mut opener) = transport.split();
        trustee.handle_connected(now());
        let loss: Loss<RoleError<PeerError>> = loop {
            // Everything the trustee has to send, then the next frame from the relay.
            let sent = transmit_all(&mut socket, &mut out, &mut sealer, |space| {
                let polled = trustee.poll_transmit(space);
                if let Ok(Some(n)) = polled {
                    stats.frames += 1;
                    stats.bytes += n as u64;
                }
                polled
            });
            if let Err(loss) = sent.await {
                break loss;
            }
            let body = loop {
                match inbound.next_frame(&mut opener) {
                    Ok(Some(body)) => break Ok(body),
                    Ok(None) => {}
                    Err(e) => break Err(Loss::from(e)),
                }
                if let Err(loss) = fill(&mut socket, &mut inbound).await {
                    break Err(loss);
                }
            };
            let handled = body.and_then(|body| {
                trustee
                    .handle_frame(now(), body)
                    .map_err(|e| Loss::Role(RoleError::Frame(e)))
            });
            if let Err(loss) = handled {
                break loss;
            }
            while let Some(event) = trustee.poll_event() {
                match event {
                    TrusteeEvent::IntervalStarted { interval, clients } => println!(
                        "{}: interval {} with {} clients; {} frames, {} KiB sent so far; stack peak {} B",
                        name,
                        interval,
                        clients,
                        stats.frames,
                        stats.bytes / 1024,
                        stack::peak()
                    ),
                    TrusteeEvent::LogWindow {
                        interval, oldest, required,
                    } => println!(
                        "{}: refused interval {}: the relay claims to hold records from {} only, the log window needs {}",
                        name, interval, oldest, required
                    ),
                    TrusteeEvent::SecretProven {
                        interval, exchange, client,
                    } => println!(
                        "{}: dispute with client {} about exchange {} of interval {}: proving the pair's secret",
                        name, client, exchange, interval
                    ),
                    TrusteeEvent::Refused {
                        interval, client, ..
                    } => println!(
                        "{}: refused interval {}: client {}'s proof or acknowledgement",
                        name, interval, client
                    ),
                    _ => {}
                }
            }
        };
        trustee.handle_disconnected(now());
        let goodbye = match &loss {
            Loss::Role(RoleError::Frame(e)) => e.goodbye(),
            _ => None,
        };
        stop_if_replaced(name, goodbye);
        uplink.lost(&mut socket, &loss, goodbye).await;
    }
}

/// Frames and bytes sent since boot.
#[derive(Default)]
struct Stats {
    frames: u64,
    bytes: u64,
}

/// The link's buffers.
type Buffers = LinkBuffers<
    SOCKET_BUF,
    { record_buffer_len(MAX_RECORD_PLAINTEXT) },
    { frame_buffer_len(MAX_FRAME) },
    { record_buffer_len(frame_buffer_len(MAX_FRAME + REVEAL_SLACK)) },
>;
