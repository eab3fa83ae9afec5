//! client: a DC-net client on the device, the same `dissent_core::client` as `dissent client`.
//!
//! It reads its node configuration from the provisioning blob (app `CLNT`, see
//! `dissent_core::provision`), listens on the provisioned local TCP port, and tunnels each
//! accepted connection (up to [`MAX_LOCAL`] at once) through the DC-net: each is a Conn# of
//! the client, its bytes go upstream in the client's slot, and the exit's replies come back
//! downstream to it. The link to the relay is redialled with backoff whenever it drops;
//! open connections survive that when the relay still has what they missed.
//!
//! Tasks: one for the relay link, which alone drives the `Client`, and one per local
//! connection, which moves bytes between its TCP socket and two pipes (upstream,
//! downstream). Storage is static and sized at compile time.
//!
//! Console: one line per link event, per interval and per local connection. The console
//! never names the client's pseudonym slot, nor a Conn# (whose high bits are the slot): a
//! log someone shares must not link this client to its slot. Local connections are named
//! by their place (0 to [`MAX_LOCAL`] - 1) instead.
#![no_std]
#![no_main]

use core::cell::{Cell, RefCell};

use dissent_core::client::{
    Chunk, Client, ClientConfig, ClientEvent, ClientStorage, Delivery, IntervalError, PeerError,
    SendCredits, Upstream,
};
use dissent_core::schedule::Schedule;
use dissent_core::wire::{ConnId, NodeRole};
use dissent_embedded::region::Region;
use dissent_embedded::stream::{frame_buffer_len, record_buffer_len, REVEAL_SLACK};
use dissent_embedded::uplink::{
    now, peer_keys, provisioned, send_frame, stop_if_replaced, transmit_all, LinkBuffers, Loss,
    NodeName, RoleError, Target, Uplink,
};
use dissent_embedded::{println, stack, Board};
use embassy_executor::Spawner;
use embassy_futures::select::{select, Either};
use embassy_net::tcp::TcpSocket;
use embassy_net::Stack;
use embassy_sync::blocking_mutex::raw::ThreadModeRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::pipe::Pipe;
use embassy_sync::signal::Signal;
use embassy_time::{with_timeout, Duration, Timer};
use embedded_io_async::Write;
use heapless::Vec;
use rand_core::RngCore;
use static_cell::{ConstStaticCell, StaticCell};

/// Local connections tunnelled at once.
const MAX_LOCAL: usize = 4;
// One socket per local connection, one to the relay, one for a board's DHCP client.
const _: () = assert!(MAX_LOCAL + 2 <= dissent_embedded::NET_SOCKETS);
/// Largest frame body this client takes or builds (declared in its Hello).
const MAX_FRAME: usize = 4096;
/// Most reserved slots the schedule table holds (the relay's `capacity` must not exceed it).
const MAX_RESERVED: u16 = 256;
/// Bytes of sent cells kept until the relay confirms them.
const RING_LEN: usize = 8 * 1024;
/// Bytes of downstream records taken back after a reconnect.
const REPLAY_LEN: usize = 4 * 1024;
/// The schedule table and the stage (one cell) of the client's storage.
const TABLE_LEN: usize = Schedule::table_len(MAX_RESERVED);
/// Bytes of a bitmap over the clients of a group (the anonymity set, the online set): groups
/// of up to 4096 clients (a larger one is refused at start, naming the region).
const BITMAP_LEN: usize = 4096 / 8;
const STAGE_LEN: usize = DeviceClient::max_cell(MAX_FRAME as u32);
/// The sealed cells' storage (`Client::set_pseudonym`).
const SEALED_LEN: usize =
    DeviceClient::sealed_len_keeping(MAX_FRAME as u32, dissent_core::client::DEVICE_KEPT);
/// The relay socket's buffers.
const SOCKET_BUF: usize = 4096;
/// A local socket's receive and send buffers.
const LOCAL_RX: usize = 1024;
const LOCAL_TX: usize = 2048;
/// Upstream bytes waiting per local connection (the socket is not read while it is full).
const UP_PIPE: usize = 1024;
/// Downstream bytes waiting per local connection.
const DOWN_PIPE: usize = 2048;
/// How long downstream may wait for a local application that does not read before its
/// connection is reset (the relay link waits meanwhile).
const DOWN_STALL: Duration = Duration::from_secs(2);
/// How long the slot stays reserved after the last data.
const LINGER: dissent_core::Duration = dissent_core::Duration::from_millis(200);

dissent_embedded::declare_capacity!(
    app: dissent_core::provision::CLIENT_APP,
    clients: dissent_core::MAX_CLIENTS,
    // The relay reserves up to `min(capacity, slots)` slots; the schedule table holds
    // MAX_RESERVED.
    slots: MAX_RESERVED,
    frame: MAX_FRAME,
);

type DeviceClient = Client<Region>;
type Shared<T> = Mutex<ThreadModeRawMutex, RefCell<T>>;

/// How a local connection's downstream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Down {
    /// Still open.
    Open,
    /// The exit closed it: send what is left, then close.
    Closed,
    /// Lost, or the application stopped reading: reset it.
    Reset,
}

/// What the link and a local connection's task share about it.
#[derive(Debug, Clone, Copy)]
struct Slot {
    conn: Option<ConnId>,
    /// The application finished sending (or its socket failed).
    up_eof: bool,
    /// The close went to the client.
    close_staged: bool,
    down: Down,
    /// Downstream bytes put into the connection's pipe, not yet reported to the client
    /// (which grants them back to the exit as credit; the pipe bounds what waits here).
    taken: u32,
}

impl Slot {
    const IDLE: Slot = Slot {
        conn: None,
        up_eof: false,
        close_staged: false,
        down: Down::Open,
        taken: 0,
    };
}

/// One local connection's shared state and pipes.
struct Local {
    slot: Mutex<ThreadModeRawMutex, Cell<Slot>>,
    up: Pipe<ThreadModeRawMutex, UP_PIPE>,
    down: Pipe<ThreadModeRawMutex, DOWN_PIPE>,
    /// Wakes the connection's task when `down` changes.
    kick: Signal<ThreadModeRawMutex, ()>,
}

impl Local {
    const fn new() -> Self {
        Local {
            slot: Mutex::new(Cell::new(Slot::IDLE)),
            up: Pipe::new(),
            down: Pipe::new(),
            kick: Signal::new(),
        }
    }

    fn get(&self) -> Slot {
        self.slot.lock(Cell::get)
    }

    fn update(&self, f: impl FnOnce(&mut Slot)) {
        self.slot.lock(|s| {
            let mut v = s.get();
            f(&mut v);
            s.set(v);
        });
    }

    /// Ends the downstream of this connection.
    fn end(&self, down: Down) {
        self.update(|s| {
            if s.down == Down::Open {
                s.down = down;
            }
        });
        self.kick.signal(());
    }
}

static LOCALS: [Local; MAX_LOCAL] = [const { Local::new() }; MAX_LOCAL];
/// Wakes the link task: a local connection opened, has bytes, or finished.
static WAKE: Signal<ThreadModeRawMutex, ()> = Signal::new();

fn local_of(conn: ConnId) -> Option<&'static Local> {
    LOCALS.iter().find(|l| l.get().conn == Some(conn))
}

#[cortex_m_rt::entry]
fn main() -> ! {
    dissent_embedded::run(start)
}

/// Reads the provisioning, builds the client and spawns the tasks.
fn start(spawner: Spawner, mut board: Board) {
    let (node, name) = provisioned(board.provisioning, NodeRole::Client, "client");
    let trustee_keys = peer_keys(&node, name);
    println!(
        "{}: on {}, {} slots, {} trustees, {}-byte cells; relay {}:{}; local port {}",
        name,
        board.name,
        node.slots,
        node.trustees,
        node.cell_len,
        node.relay,
        node.relay_port,
        node.local_port
    );
    let mut seed = [0u8; 32];
    RngCore::fill_bytes(&mut board.rng, &mut seed);
    let config = ClientConfig {
        index: node.index,
        clients: node.clients,
        group_id: node.group_id,
        session_id: node.session_id,
        session_secret: node.session_secret,
        trustee_keys,
        slot: node.slot,
        slots: node.slots,
        cell_len: node.cell_len as usize,
        max_frame: MAX_FRAME as u32,
        max_reserved: node.slots.min(MAX_RESERVED),
        sent_len: RING_LEN,
        replay_len: REPLAY_LEN,
        min_clients: node.min_clients,
        policy: node.policy(),
        min_anonymity: 0,
        linger: LINGER,
        rng_seed: seed,
    };
    // Zeroed in place in .bss.
    static TABLE: ConstStaticCell<[u8; TABLE_LEN]> = ConstStaticCell::new([0; TABLE_LEN]);
    static STAGE: ConstStaticCell<[u8; STAGE_LEN]> = ConstStaticCell::new([0; STAGE_LEN]);
    static SENT: ConstStaticCell<[u8; RING_LEN]> = ConstStaticCell::new([0; RING_LEN]);
    static REPLAY: ConstStaticCell<[u8; REPLAY_LEN]> = ConstStaticCell::new([0; REPLAY_LEN]);
    static ANONYMITY: ConstStaticCell<[u8; BITMAP_LEN]> = ConstStaticCell::new([0; BITMAP_LEN]);
    static ONLINE: ConstStaticCell<[u8; BITMAP_LEN]> = ConstStaticCell::new([0; BITMAP_LEN]);
    let storage = ClientStorage {
        schedule: Region::Ram(&mut TABLE.take()[..]),
        stage: Region::Ram(&mut STAGE.take()[..]),
        sent: Region::Ram(&mut SENT.take()[..]),
        replay: Region::Ram(&mut REPLAY.take()[..]),
        anonymity: Region::Ram(&mut ANONYMITY.take()[..]),
        online: Region::Ram(&mut ONLINE.take()[..]),
    };
    let client = match Client::new(&config, storage) {
        Ok(c) => c,
        Err(e) => {
            println!("{}: {}", name, e);
            dissent_embedded::exit(1)
        }
    };
    let max_cell = DeviceClient::max_cell(capacity().frame);
    if node.max_cell_len as usize > max_cell {
        println!(
            "{}: cells capped at {} bytes by this device (the group allows {})",
            name, max_cell, node.max_cell_len
        );
    }
    static CLIENT: StaticCell<Shared<DeviceClient>> = StaticCell::new();
    let client: &'static Shared<DeviceClient> = CLIENT.init(Mutex::new(RefCell::new(client)));
    // The prepared cells of the next owned exchange (two of the longest) and the owned
    // cells the client keeps to answer for. The provisioning gives a client its pseudonym
    // (checked when the blob is read). Set on the client in its static, so the client is
    // not moved (and copied on the stack) once more.
    static SEALED: ConstStaticCell<[u8; SEALED_LEN]> = ConstStaticCell::new([0; SEALED_LEN]);
    if let Some((secret, relay_dh)) = node.pseudonym.and_then(|p| p.secret().zip(p.relay_dh())) {
        let set = client.lock(|c| {
            c.borrow_mut()
                .set_pseudonym(&secret, &relay_dh, Region::Ram(&mut SEALED.take()[..]))
        });
        if let Err(e) = set {
            println!("{}: pseudonym: {}", name, e);
            dissent_embedded::exit(1)
        }
    }
    // What it answers blame rounds with: its identity key, its pad key, the trustees' pad
    // and identity keys and every slot's pseudonym key, read where the provisioning has
    // them.
    let identities: &[[u8; 32]] =
        bytemuck::try_cast_slice(node.identity_keys()).unwrap_or_default();
    let set = client.lock(|c| {
        c.borrow_mut().set_blame_keys(
            &node.identity_secret,
            &node.session_secret,
            trustee_keys,
            identities,
            Region::Provisioned(node.pseudonym_keys()),
        )
    });
    if let Err(e) = set {
        println!("{}: blame keys: {}", name, e);
        dissent_embedded::exit(1)
    }

    static LOCAL_BUFFERS: ConstStaticCell<[LocalBuffers; MAX_LOCAL]> =
        ConstStaticCell::new([const { LocalBuffers::new() }; MAX_LOCAL]);
    for (i, buffers) in LOCAL_BUFFERS.take().iter_mut().enumerate() {
        // The pool has room for MAX_LOCAL tasks, spawned once each.
        spawner.spawn(local(i, name, client, board.net, node.local_port, buffers).unwrap());
    }
    RngCore::fill_bytes(&mut board.rng, &mut seed);
    let uplink = Uplink::new(name, board.net, Target::of(&node), seed);
    // The pool holds this one task, spawned once.
    spawner.spawn(link(name, client, uplink, board).unwrap());
}

/// Bytes moved since boot.
#[derive(Default)]
struct Stats {
    up: u64,
    down: u64,
}

/// The client's upstream: the local connections' pipes, taken in turn.
struct LocalUpstream<'a> {
    next: &'a mut usize,
    /// Connections to close for the client's own reasons (their application stalled).
    to_close: &'a mut Vec<ConnId, MAX_LOCAL>,
    stats: &'a mut Stats,
    /// Local connections this pull found with bytes but no upstream credit: they wait,
    /// and do not count as pending (a slot is not kept for bytes it may not send).
    blocked: [bool; MAX_LOCAL],
}

impl Upstream for LocalUpstream<'_> {
    fn next_chunk(&mut self, buf: &mut [u8], credit: SendCredits<'_>) -> Option<Chunk> {
        if let Some(conn) = self.to_close.pop() {
            return Some(Chunk::Close { conn });
        }
        for local in &LOCALS {
            let slot = local.get();
            if let (Some(conn), bytes @ 1..) = (slot.conn, slot.taken) {
                local.update(|s| s.taken = 0);
                return Some(Chunk::Read { conn, bytes });
            }
        }
        for k in 0..MAX_LOCAL {
            let i = (*self.next + k) % MAX_LOCAL;
            let local = &LOCALS[i];
            let slot = local.get();
            let Some(conn) = slot.conn else { continue };
            if slot.down != Down::Open || slot.close_staged {
                continue;
            }
            // Only within the connection's upstream credit: the rest waits in the pipe, and
            // the application's socket stops once the pipe is full.
            let room = credit.of(conn).min(buf.len());
            if room == 0 && !local.up.is_empty() {
                self.blocked[i] = true;
                continue;
            }
            if let Ok(n) = local.up.try_read(&mut buf[..room]) {
                *self.next = i + 1;
                self.stats.up += n as u64;
                return Some(Chunk::Data { conn, len: n });
            }
            if slot.up_eof {
                local.update(|s| s.close_staged = true);
                *self.next = i + 1;
                return Some(Chunk::Close { conn });
            }
        }
        None
    }

    fn pending(&self) -> usize {
        LOCALS
            .iter()
            .zip(self.blocked)
            .filter(|(l, blocked)| l.get().conn.is_some() && !blocked)
            .map(|(l, _)| l.up.len())
            .sum()
    }
}

/// The link's buffers.
type Buffers = LinkBuffers<
    SOCKET_BUF,
    { record_buffer_len(frame_buffer_len(MAX_FRAME)) },
    { frame_buffer_len(MAX_FRAME) },
    { record_buffer_len(frame_buffer_len(MAX_FRAME + REVEAL_SLACK)) },
>;

/// The relay link: drives the client, dialling again whenever the link drops.
#[embassy_executor::task]
async fn link(
    name: NodeName,
    client: &'static Shared<DeviceClient>,
    mut uplink: Uplink,
    mut board: Board,
) {
    static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers::new());
    let (mut socket, mut inbound, mut out) = BUFFERS.take().parts(board.net);
    let mut next = 0;
    let mut to_close = Vec::new();
    let mut stats = Stats::default();
    board.net.wait_config_up().await;
    loop {
        let transport = uplink
            .connect(&mut socket, &mut inbound, &mut board.rng)
            .await;
        let (mut sealer, mut opener) = transport.split();
        client.lock(|c| c.borrow_mut().handle_connected(now()));
        let loss: Loss<RoleError<PeerError>> = loop {
            // Control frames, then stage what the applications have.
            let sent = transmit_all(&mut socket, &mut out, &mut sealer, |space| {
                client.lock(|c| c.borrow_mut().poll_transmit(space))
            });
            if let Err(loss) = sent.await {
                break loss;
            }
            let mut upstream = LocalUpstream {
                next: &mut next,
                to_close: &mut to_close,
                stats: &mut stats,
                blocked: [false; MAX_LOCAL],
            };
            client.lock(|c| c.borrow_mut().prepare(now(), &mut upstream));

            // The next frame from the relay; meanwhile, whatever the applications do.
            let body = loop {
                match inbound.next_frame(&mut opener) {
                    Ok(Some(body)) => break Ok(body),
                    Ok(None) => {}
                    Err(e) => break Err(Loss::from(e)),
                }
                match select(socket.read(inbound.space()), WAKE.wait()).await {
                    Either::First(Ok(0)) => break Err(Loss::Closed),
                    Either::First(Ok(n)) => inbound.filled(n),
                    Either::First(Err(e)) => break Err(Loss::Tcp(e)),
                    // New bytes, or a connection opened or finished: prepared at once
                    // only when the client wants them now (once between two cells, so a
                    // first byte does not wait a whole exchange); otherwise the
                    // preparation after the next frame takes them from the pipes.
                    Either::Second(()) => client.lock(|c| {
                        let mut c = c.borrow_mut();
                        if c.wants_upstream() {
                            let mut upstream = LocalUpstream {
                                next: &mut next,
                                to_close: &mut to_close,
                                stats: &mut stats,
                                blocked: [false; MAX_LOCAL],
                            };
                            c.prepare(now(), &mut upstream);
                        }
                    }),
                }
            };
            let body = match body {
                Ok(body) => body,
                Err(loss) => break loss,
            };
            let handled =
                client.lock(|c| c.borrow_mut().handle_frame(now(), body, out.frame_space()));
            let handled = match handled {
                Ok(h) => h,
                Err(e) => break Loss::Role(RoleError::Frame(e)),
            };
            // The cell first, then the delivery. The record is the client's once handled (its
            // downstream head moved past it), so it is delivered even if the cell could not
            // go out.
            let sent = match handled.cell {
                Some(n) => send_frame(&mut socket, &mut out, &mut sealer, n).await,
                None => Ok(()),
            };
            if let Some(delivery) = handled.delivery {
                deliver(delivery, &mut to_close, &mut stats).await;
            }
            client.lock(|c| {
                let mut c = c.borrow_mut();
                while let Some(delivery) = c.poll_replay() {
                    deliver_now(delivery, &mut to_close, &mut stats);
                }
            });
            events(name, client, &stats);
            if let Err(loss) = sent {
                break loss;
            }
        };
        client.lock(|c| c.borrow_mut().handle_disconnected(now()));
        events(name, client, &stats);
        if let Loss::Role(RoleError::Frame(PeerError::Interval(IntervalError::TooFewKept {
            window,
            kept,
            ..
        }))) = &loss
        {
            println!(
                "{}: the relay runs a window of {}; this device keeps its last {} sent cells for blame rounds, enough for a window of {} at most: run the relay with --window {}",
                name,
                window,
                kept,
                dissent_core::blame::largest_window(*kept),
                dissent_core::blame::largest_window(*kept)
            );
        }
        let goodbye = match &loss {
            Loss::Role(RoleError::Frame(e)) => e.goodbye(),
            _ => None,
        };
        stop_if_replaced(name, goodbye);
        uplink.lost(&mut socket, &loss, goodbye).await;
    }
}

/// Acts on the client's events.
fn events(name: NodeName, client: &Shared<DeviceClient>, stats: &Stats) {
    client.lock(|c| {
        let mut c = c.borrow_mut();
        while let Some(event) = c.poll_event() {
            match event {
                ClientEvent::IntervalStarted { interval, clients } => println!(
                    "{}: interval {} with {} clients; {} connections open; {} B up, {} B down so far; stack peak {} B",
                    name,
                    interval,
                    clients,
                    c.connections(),
                    stats.up,
                    stats.down,
                    stack::peak()
                ),
                ClientEvent::Lost { conn } => {
                    if let Some(i) = LOCALS.iter().position(|l| l.get().conn == Some(conn)) {
                        println!("{}: local connection {} lost", name, i);
                        LOCALS[i].end(Down::Reset);
                    }
                }
                _ => {}
            }
        }
    });
}

/// Hands downstream bytes to their local connection, waiting for room up to [`DOWN_STALL`].
async fn deliver(delivery: Delivery<'_>, to_close: &mut Vec<ConnId, MAX_LOCAL>, stats: &mut Stats) {
    match delivery {
        Delivery::Data { conn, data } => {
            let Some(local) = local_of(conn) else { return };
            stats.down += data.len() as u64;
            if with_timeout(DOWN_STALL, local.down.write_all(data))
                .await
                .is_err()
            {
                stalled(conn, local, to_close);
            } else {
                local.update(|s| s.taken = s.taken.saturating_add(data.len() as u32));
            }
        }
        Delivery::Close { conn } => {
            if let Some(local) = local_of(conn) {
                local.end(Down::Closed);
            }
        }
        // Upstream credit: the client holds it, and `LocalUpstream` reads within it.
        Delivery::Grant { .. } => {}
    }
}

/// Hands downstream bytes to their local connection if they fit now.
fn deliver_now(delivery: Delivery<'_>, to_close: &mut Vec<ConnId, MAX_LOCAL>, stats: &mut Stats) {
    match delivery {
        Delivery::Data { conn, data } => {
            let Some(local) = local_of(conn) else { return };
            stats.down += data.len() as u64;
            if local.down.free_capacity() < data.len() {
                stalled(conn, local, to_close);
            } else {
                // Room was checked just above, in the same turn of the executor.
                let _ = local.down.try_write(data);
                local.update(|s| s.taken = s.taken.saturating_add(data.len() as u32));
            }
        }
        Delivery::Close { conn } => {
            if let Some(local) = local_of(conn) {
                local.end(Down::Closed);
            }
        }
        // Upstream credit: the client holds it, and `LocalUpstream` reads within it.
        Delivery::Grant { .. } => {}
    }
}

/// The application of `conn` does not take its downstream: reset it and close it upstream.
fn stalled(conn: ConnId, local: &Local, to_close: &mut Vec<ConnId, MAX_LOCAL>) {
    if let Some(i) = LOCALS.iter().position(|l| core::ptr::eq(l, local)) {
        println!(
            "local connection {}: the application stopped reading; reset",
            i
        );
    }
    local.end(Down::Reset);
    if !local.get().close_staged && !to_close.contains(&conn) {
        // At most MAX_LOCAL connections are open, each listed at most once.
        let _ = to_close.push(conn);
    }
    local.update(|s| s.close_staged = true);
}

/// One local connection's socket buffers.
struct LocalBuffers {
    rx: [u8; LOCAL_RX],
    tx: [u8; LOCAL_TX],
}

impl LocalBuffers {
    const fn new() -> Self {
        LocalBuffers {
            rx: [0; LOCAL_RX],
            tx: [0; LOCAL_TX],
        }
    }
}

/// Accepts local connections on `port`, one at a time, and tunnels each.
#[embassy_executor::task(pool_size = MAX_LOCAL)]
async fn local(
    i: usize,
    name: NodeName,
    client: &'static Shared<DeviceClient>,
    net: Stack<'static>,
    port: u16,
    buffers: &'static mut LocalBuffers,
) {
    let local = &LOCALS[i];
    let mut socket = TcpSocket::new(net, &mut buffers.rx, &mut buffers.tx);
    net.wait_config_up().await;
    loop {
        if let Err(e) = socket.accept(port).await {
            println!("{}: accept on port {}: {:?}", name, port, e);
            socket.abort();
            Timer::after_millis(100).await;
            continue;
        }
        let opened = client.lock(|c| c.borrow_mut().open());
        let conn = match opened {
            Ok(conn) => conn,
            Err(e) => {
                println!("{}: local connection refused: {}", name, e);
                socket.abort();
                let _ = with_timeout(Duration::from_millis(100), socket.flush()).await;
                continue;
            }
        };
        local.up.clear();
        local.down.clear();
        local.kick.reset();
        local.update(|s| {
            *s = Slot {
                conn: Some(conn),
                ..Slot::IDLE
            }
        });
        WAKE.signal(());
        println!("{}: local connection {} open", name, i);
        let moved = tunnel(&mut socket, local).await;
        local.update(|s| *s = Slot::IDLE);
        if moved.end == Down::Closed {
            // Our FIN, then the application's, before the socket is reused.
            socket.close();
            let _ = with_timeout(Duration::from_secs(2), async {
                let _ = socket.flush().await;
                let mut sink = [0u8; 64];
                while let Ok(n) = socket.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        }
        socket.abort();
        let _ = with_timeout(Duration::from_millis(100), socket.flush()).await;
        println!(
            "{}: local connection {} {} ({} B up, {} B down)",
            name,
            i,
            if moved.end == Down::Closed {
                "closed"
            } else {
                "reset"
            },
            moved.up,
            moved.down
        );
    }
}

/// What one local connection moved, and how it ended.
struct Moved {
    up: u64,
    down: u64,
    end: Down,
}

/// Moves bytes between the local socket and the pipes until the downstream ends.
async fn tunnel(socket: &mut TcpSocket<'_>, local: &Local) -> Moved {
    let (mut reader, mut writer) = socket.split();
    let mut up_bytes = 0u64;
    let mut down_bytes = 0u64;
    let up = async {
        let mut buf = [0u8; 256];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    up_bytes += n as u64;
                    local.up.write_all(&buf[..n]).await;
                    WAKE.signal(());
                }
            }
        }
        local.update(|s| s.up_eof = true);
        WAKE.signal(());
        core::future::pending::<()>().await
    };
    let down = async {
        let mut buf = [0u8; 256];
        let mut broken = false;
        loop {
            if let Either::First(n) = select(local.down.read(&mut buf), local.kick.wait()).await {
                down_bytes += n as u64;
                if !broken && writer.write_all(&buf[..n]).await.is_err() {
                    // The application is gone: drop its downstream, close its upstream.
                    broken = true;
                    local.update(|s| s.up_eof = true);
                    WAKE.signal(());
                }
            }
            let slot = local.get();
            if slot.down != Down::Open && local.down.is_empty() {
                if !broken {
                    let _ = writer.flush().await;
                }
                return slot.down;
            }
        }
    };
    let end = match select(down, up).await {
        Either::First(end) => end,
        // `up` never finishes.
        Either::Second(()) => Down::Reset,
    };
    Moved {
        up: up_bytes,
        down: down_bytes,
        end,
    }
}
