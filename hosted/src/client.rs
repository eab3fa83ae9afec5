//! `dissent client`: a local TCP port whose connections are tunnelled through the DC-net.
//!
//! One task runs the core client: it dials the relay (the shared backoff policy), answers
//! every request with its cell at once (the cell goes out before anything else is done),
//! then hands downstream bytes to the local connections and prepares the next owned cell.
//! Each local connection has a reader task (bytes upstream) and a writer task (bytes
//! downstream). Connections survive a short loss of the relay link; a connection opened
//! while the net cannot carry traffic is closed after a few seconds, with the reason logged.
//!
//! Logs never name a Conn# or the slot: a Conn#'s high bits are the slot, and a log that
//! someone shares must not tell which slot is theirs. A local connection is named by a
//! number of its own, counted from 1 in this process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use dissent_core::client::{
    Chunk, Client, ClientConfig, ClientEvent, Delivery, PeerError, Upstream,
};
use dissent_core::wire::{ConnId, MAX_FRAME_BODY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use crate::clock;
use crate::config::{Group, NodeSecrets, Role};
use crate::link::dial::{self, Connected, Dialer, End, LinkKeys};
use crate::process;

/// Upstream chunks waiting for this client's slot, over all connections.
const UPSTREAM_QUEUE: usize = 256;
/// Downstream chunks buffered per local connection before it is aborted as not reading.
/// The bytes in them are bounded by the connection's credit window (256 KiB,
/// `dissent_core::credit`); this bounds their number.
const LOCAL_QUEUE: usize = 4096;
/// Bytes read from a local connection at a time.
const READ_CHUNK: usize = 16 * 1024;
/// How long a local connection waits for the net to carry traffic before it is closed.
const NO_NET_GRACE: Duration = Duration::from_secs(3);
/// Bytes kept for sent cells not yet confirmed (bounds data in flight).
const RING_LEN: usize = 2 * 1024 * 1024;
/// Bytes kept for downstream records missed during a short link drop.
const REPLAY_LEN: usize = 4 * 1024 * 1024;
/// How long a slot stays reserved after its last data.
const LINGER: Duration = Duration::from_millis(300);

/// What a local connection sends upstream.
enum FromLocal {
    Data(ConnId, Bytes),
    /// The application finished sending (EOF on the local socket): a half-close, the
    /// replies still come.
    Close(ConnId),
    /// The application is gone (the local socket was reset, or refused the replies): the
    /// exit drops the connection.
    Abort(ConnId),
}

/// Downstream bytes the applications took (written to their sockets) and the core has not
/// heard of yet, per connection: the core grants them back to the exit as credit. Apart
/// from the upstream queue, so a grant never waits behind the connection's uploads.
#[derive(Default)]
struct Taken {
    bytes: std::sync::Mutex<HashMap<ConnId, u32>>,
    added: tokio::sync::Notify,
}

impl Taken {
    fn add(&self, conn: ConnId, n: u32) {
        let mut b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        let e = b.entry(conn).or_insert(0);
        *e = e.saturating_add(n);
        drop(b);
        self.added.notify_one();
    }

    fn pop(&self) -> Option<(ConnId, u32)> {
        let mut b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        let conn = *b.keys().next()?;
        b.remove(&conn).map(|n| (conn, n))
    }
}

/// Downstream bytes handed to local writers and not yet written, over all connections (at
/// most the credit window per connection, `dissent_core::credit`).
static LOCAL_QUEUED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What goes down to a local connection.
enum ToLocal {
    Data(Bytes),
    /// The exit ended the connection.
    Close,
}

struct Local {
    /// The name in the log (never the Conn#, which tells the slot).
    number: u64,
    tx: mpsc::Sender<ToLocal>,
    reader: AbortHandle,
    accepted: tokio::time::Instant,
    /// An interval ran since the connection was accepted.
    carried: bool,
}

/// Upstream bytes from all local connections, in arrival order.
struct Pending {
    rx: mpsc::Receiver<FromLocal>,
    partial: Option<FromLocal>,
    /// Bytes in the queue (added by the readers, taken here).
    queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Downstream bytes the applications took, reported before any upstream chunk.
    taken: std::sync::Arc<Taken>,
}

impl Pending {
    /// Keeps a chunk just taken from the queue for the next pull.
    fn hold(&mut self, up: FromLocal) {
        if let FromLocal::Data(_, d) = &up {
            self.queued
                .fetch_sub(d.len(), std::sync::atomic::Ordering::Relaxed);
        }
        self.partial = Some(up);
    }
}

impl Upstream for Pending {
    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<Chunk> {
        if let Some((conn, bytes)) = self.taken.pop() {
            return Some(Chunk::Read { conn, bytes });
        }
        let item = match self.partial.take() {
            Some(p) => p,
            None => {
                let item = self.rx.try_recv().ok()?;
                if let FromLocal::Data(_, d) = &item {
                    self.queued
                        .fetch_sub(d.len(), std::sync::atomic::Ordering::Relaxed);
                }
                item
            }
        };
        match item {
            FromLocal::Close(conn) => Some(Chunk::Close { conn }),
            FromLocal::Abort(conn) => Some(Chunk::Abort { conn }),
            FromLocal::Data(conn, data) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                if n < data.len() {
                    self.partial = Some(FromLocal::Data(conn, data.slice(n..)));
                }
                Some(Chunk::Data { conn, len: n })
            }
        }
    }

    fn pending(&self) -> usize {
        let partial = match &self.partial {
            Some(FromLocal::Data(_, d)) => d.len(),
            _ => 0,
        };
        partial + self.queued.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What one client process needs to know beyond its configuration.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The relay's `host:port`.
    pub relay: String,
    /// Smallest interval this client sends in.
    pub min_clients: u16,
    /// This client's own anonymity minimum (0: the group's); it may only raise the
    /// group's.
    pub min_anonymity: u16,
    /// Log routine events at debug only (many clients in one process).
    pub quiet: bool,
}

/// Builds the core client of `node`.
fn core_client(
    group: &Group,
    node: &NodeSecrets,
    min_clients: u16,
    min_anonymity: u16,
) -> Result<Client<Vec<u8>>> {
    let Role::Client(index) = node.role else {
        bail!("{} is not a client", node.id);
    };
    let slot = node
        .slot()
        .context("the client's pseudonym key is not in pseudonym.json")?;
    let session_secret = node
        .session_private_key
        .context("the client has no session key")?;
    let mut rng_seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut rng_seed);
    let cfg = ClientConfig {
        index: index as u16,
        clients: group.clients.len() as u16,
        group_id: group.group_id,
        session_id: group.session_id,
        session_secret,
        trustee_keys: &group.trustee_session_keys,
        slot: slot as u16,
        slots: group.slots.len() as u16,
        cell_len: group.cell_length,
        max_frame: MAX_FRAME_BODY as u32,
        max_reserved: group
            .slots
            .len()
            .min(usize::from(crate::config::RESERVED_SLOTS)) as u16,
        sent_len: RING_LEN,
        replay_len: REPLAY_LEN,
        min_clients,
        policy: group.policy,
        min_anonymity,
        linger: dissent_core::Duration::from_micros(LINGER.as_micros() as u64),
        rng_seed,
    };
    Client::with_vecs(&cfg).map_err(|e| anyhow::anyhow!("client configuration: {e}"))
}

/// Runs a client with a local listening port until Ctrl-C.
pub async fn run(
    group: Group,
    node: NodeSecrets,
    listen: SocketAddr,
    opts: ClientOptions,
) -> Result<()> {
    let client = core_client(&group, &node, opts.min_clients, opts.min_anonymity)?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    info!(
        "{} listening on {} (relay {})",
        node.id,
        listener.local_addr()?,
        opts.relay
    );
    let shutdown = process::shutdown_signal();
    ClientNode::new(&group, &node, client, opts)
        .run(Some(listener), shutdown)
        .await
}

/// Runs many clients of one group in this process, without local ports (load for benchmarks).
pub async fn run_many(group: Group, nodes: Vec<NodeSecrets>, opts: ClientOptions) -> Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for node in &nodes {
        let client = core_client(&group, node, opts.min_clients, opts.min_anonymity)?;
        let mut o = opts.clone();
        o.quiet = true;
        let cn = ClientNode::new(&group, node, client, o);
        set.spawn(async move { cn.run(None, process::shutdown_signal()).await });
    }
    info!(
        "{} running",
        crate::console::count(nodes.len() as u64, "client")
    );
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("a client stopped: {e:#}"),
            Err(e) => warn!("a client task failed: {e}"),
        }
    }
    Ok(())
}

/// One client: the core state machine and its local connections.
struct ClientNode {
    id: String,
    client: Client<Vec<u8>>,
    dialer: Dialer,
    locals: HashMap<ConnId, Local>,
    pending: Pending,
    up_tx: mpsc::Sender<FromLocal>,
    origin: tokio::time::Instant,
    quiet: bool,
    intervals: u64,
    /// Local connections accepted so far (the last one's number in the log).
    accepted: u64,
}

impl ClientNode {
    fn new(
        group: &Group,
        node: &NodeSecrets,
        client: Client<Vec<u8>>,
        opts: ClientOptions,
    ) -> Self {
        let keys = LinkKeys {
            own: node.private_key,
            relay: group.relay_key,
            group_id: group.group_id,
            session_id: group.session_id,
        };
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let (up_tx, up_rx) = mpsc::channel(UPSTREAM_QUEUE);
        ClientNode {
            id: node.id.clone(),
            client,
            dialer: Dialer::new(opts.relay, keys, seed, opts.quiet),
            locals: HashMap::new(),
            pending: Pending {
                rx: up_rx,
                partial: None,
                queued: std::sync::Arc::default(),
                taken: std::sync::Arc::default(),
            },
            up_tx,
            origin: tokio::time::Instant::now(),
            quiet: opts.quiet,
            intervals: 0,
            accepted: 0,
        }
    }

    fn now(&self) -> dissent_core::Instant {
        clock::core_now(self.origin)
    }

    async fn run(
        mut self,
        listener: Option<TcpListener>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut link: Option<Connected> = None;
        loop {
            let end = match link.as_mut() {
                None => {
                    tokio::select! {
                        _ = &mut shutdown => End::Shutdown,
                        l = self.dialer.dial() => {
                            self.client.handle_connected(self.now());
                            let mut l = l;
                            if let Err(e) = self.send_control(&mut l).await {
                                End::Lost(e)
                            } else {
                                link = Some(l);
                                continue;
                            }
                        }
                        a = accept(&listener) => { self.accepted(a); continue; }
                        Some(up) = self.pending.rx.recv(), if self.pending.partial.is_none() => {
                            self.pending.hold(up);
                            self.client.prepare(self.now(), &mut self.pending);
                            continue;
                        }
                        _ = self.pending.taken.added.notified() => {
                            self.client.prepare(self.now(), &mut self.pending);
                            continue;
                        }
                        _ = tick.tick() => {
                            self.close_stranded(false);
                            self.forget_aborted();
                            continue;
                        }
                    }
                }
                Some(l) => {
                    tokio::select! {
                        _ = &mut shutdown => End::Shutdown,
                        f = l.frames.next() => match f {
                            Ok(Some(body)) => match self.frames(l, body).await {
                                Ok(()) => continue,
                                Err(End::Lost(e)) => l.ended(e).await,
                                Err(end) => end,
                            },
                            Ok(None) => End::Lost("closed by the relay".into()),
                            Err(e) => End::Lost(e.to_string()),
                        },
                        a = accept(&listener) => { self.accepted(a); continue; }
                        Some(up) = self.pending.rx.recv(), if self.pending.partial.is_none() => {
                            self.pending.hold(up);
                            self.client.prepare(self.now(), &mut self.pending);
                            continue;
                        }
                        _ = self.pending.taken.added.notified() => {
                            self.client.prepare(self.now(), &mut self.pending);
                            continue;
                        }
                        _ = tick.tick() => {
                            self.close_stranded(true);
                            self.forget_aborted();
                            continue;
                        }
                    }
                }
            };
            let had_link = link.take().is_some();
            self.client.handle_disconnected(self.now());
            if let End::Shutdown = end {
                if !self.quiet {
                    info!("client shutting down");
                }
                return Ok(());
            }
            dial::after_link(&self.id, &end, self.quiet && !had_link)?;
            self.dialer.lost();
        }
    }

    /// Handles a frame and every other frame already buffered. For each: its cell goes out
    /// first, then its downstream bytes to the application, then the next owned cell is
    /// prepared, so every cell is computed the same way, owner or not.
    async fn frames(&mut self, link: &mut Connected, first: Bytes) -> Result<(), End> {
        let mut body = Some(first);
        while let Some(b) = body.take() {
            let now = self.now();
            let delivery = match self.client.handle_frame(now, &b, link.sink.room()) {
                Ok(h) => {
                    if let Some(n) = h.cell {
                        link.sink.commit(n);
                        crate::metrics::exchanges(1);
                    }
                    match h.delivery {
                        Some(Delivery::Data { conn, data }) => {
                            Some((conn, Some(b.slice_ref(data))))
                        }
                        Some(Delivery::Close { conn }) => Some((conn, None)),
                        None => None,
                    }
                }
                Err(PeerError::Goodbye(r)) => return Err(End::Goodbye(r)),
                Err(e) => return Err(End::Lost(format!("dropping the relay link: {e}"))),
            };
            let flushed = link.sink.flush().await;
            // The record is the client's now (its downstream head moved past it), so it is
            // delivered even when the cell could not go out.
            if let Some((conn, data)) = delivery {
                self.deliver(conn, data);
            }
            self.deliver_replays();
            flushed.map_err(|e| End::Lost(e.to_string()))?;
            self.events();
            self.send_control(link).await.map_err(End::Lost)?;
            self.client.prepare(self.now(), &mut self.pending);
            body = link
                .frames
                .next_buffered()
                .map_err(|e| End::Lost(e.to_string()))?;
        }
        Ok(())
    }

    /// Hands the application the replayed records the client accepted.
    fn deliver_replays(&mut self) {
        while let Some(d) = self.client.poll_replay() {
            let (conn, data) = match d {
                Delivery::Data { conn, data } => (conn, Some(Bytes::copy_from_slice(data))),
                Delivery::Close { conn } => (conn, None),
            };
            self.deliver(conn, data);
        }
    }

    async fn send_control(&mut self, link: &mut Connected) -> Result<(), String> {
        loop {
            match self.client.poll_transmit(link.sink.room()) {
                Ok(Some(n)) => link.sink.commit(n),
                Ok(None) => break,
                Err(e) => return Err(format!("cannot encode a frame: {e}")),
            }
        }
        link.sink.flush().await.map_err(|e| e.to_string())
    }

    fn events(&mut self) {
        while let Some(ev) = self.client.poll_event() {
            match ev {
                ClientEvent::IntervalStarted { interval, clients } => {
                    self.intervals += 1;
                    if !self.quiet {
                        crate::metrics::interval(u64::from(interval));
                        crate::metrics::online_clients(clients as u64);
                        crate::metrics::anonymity_set(self.client.anonymity_set() as u64);
                    }
                    if self.intervals == 1 && !self.quiet {
                        info!(
                            "sending in interval {interval} with {}",
                            crate::console::count(clients as u64, "client")
                        );
                    } else {
                        debug!(
                            "interval {interval} started with {}",
                            crate::console::count(clients as u64, "client")
                        );
                    }
                    for l in self.locals.values_mut() {
                        l.carried = true;
                    }
                }
                ClientEvent::Lost { conn } => {
                    if let Some(l) = self.locals.get(&conn) {
                        warn!(
                            "local connection {}: lost (bytes of it are gone for good); \
                             closing it",
                            l.number
                        );
                    }
                    self.deliver(conn, None);
                }
                // Every connection of the slot is hidden among these clients.
                ClientEvent::AnonymitySet { size } if !self.quiet => {
                    crate::metrics::anonymity_set(size as u64);
                    info!(
                        "this client's connections are hidden among {} (the anonymity set)",
                        crate::console::count(size as u64, "client")
                    );
                }
                _ => {}
            }
        }
    }

    fn accepted(&mut self, accepted: std::io::Result<(TcpStream, SocketAddr)>) {
        match accepted {
            Ok((stream, addr)) => match self.client.open() {
                Ok(conn) => {
                    self.accepted += 1;
                    debug!("local connection {} from {addr}", self.accepted);
                    let carried = self.client.interval().is_some();
                    let local = spawn_local(
                        conn,
                        self.accepted,
                        stream,
                        self.up_tx.clone(),
                        self.pending.queued.clone(),
                        self.pending.taken.clone(),
                        carried,
                    );
                    self.locals.insert(conn, local);
                    self.client.prepare(self.now(), &mut self.pending);
                }
                Err(e) => warn!("refusing local connection from {addr}: {e}"),
            },
            Err(e) => warn!("accept failed: {e}"),
        }
    }

    /// Closes local connections that have waited too long for the net to carry them.
    fn close_stranded(&mut self, linked: bool) {
        if self.client.interval().is_some() {
            return;
        }
        let now = tokio::time::Instant::now();
        let stranded: Vec<ConnId> = self
            .locals
            .iter()
            .filter(|(_, l)| !l.carried && now >= l.accepted + NO_NET_GRACE)
            .map(|(c, _)| *c)
            .collect();
        if stranded.is_empty() {
            return;
        }
        let why = if !linked {
            self.dialer.unlinked_because()
        } else {
            "the relay has not started an interval with this client yet (too few clients or \
             trustees connected? see the relay's log)"
                .to_string()
        };
        warn!(
            "closing {} local connection(s) after {} s: {why}",
            stranded.len(),
            NO_NET_GRACE.as_secs()
        );
        for conn in stranded {
            if let Some(l) = self.locals.remove(&conn) {
                l.reader.abort();
                let _ = l.tx.try_send(ToLocal::Close);
            }
            // The core forgets a connection it never announced.
            let _ = self.up_tx.try_send(FromLocal::Close(conn));
        }
    }

    /// Drops the local connections the core has forgotten (their application left and
    /// the abort went upstream).
    fn forget_aborted(&mut self) {
        if !self.quiet {
            crate::metrics::queue_depth(
                "client_local_bytes",
                LOCAL_QUEUED.load(std::sync::atomic::Ordering::Relaxed),
            );
        }
        let client = &self.client;
        self.locals.retain(|&conn, l| {
            let open = client.is_open(conn);
            if !open {
                l.reader.abort();
            }
            open
        });
    }

    /// Hands downstream bytes (or the end) to a local connection.
    fn deliver(&mut self, conn: ConnId, data: Option<Bytes>) {
        let Some(local) = self.locals.get(&conn) else {
            return;
        };
        let number = local.number;
        let down = match data {
            Some(d) => ToLocal::Data(d),
            None => {
                debug!("local connection {number}: closed by the exit");
                ToLocal::Close
            }
        };
        if let ToLocal::Data(d) = &down {
            crate::metrics::bytes_down(d.len() as u64);
            LOCAL_QUEUED.fetch_add(d.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        let closing = matches!(down, ToLocal::Close);
        if let Err(e) = local.tx.try_send(down) {
            if let mpsc::error::TrySendError::Full(_) = e {
                warn!("local connection {number}: the application is not reading; aborting it");
            } else {
                // The writer saw the application leave and sent the abort itself.
                debug!("local connection {number}: the application left");
            }
            if let Some(l) = self.locals.remove(&conn) {
                l.reader.abort();
            }
            let _ = self.up_tx.try_send(FromLocal::Abort(conn));
            return;
        }
        if closing {
            if let Some(l) = self.locals.remove(&conn) {
                l.reader.abort();
            }
        }
    }
}

async fn accept(listener: &Option<TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Pumps one local connection: reads go upstream, downstream bytes get written.
///
/// How the application's end is told apart: EOF on read is a shutdown of its sending only
/// (`shutdown(SHUT_WR)`, or a close whose FIN arrived first): a half-close upstream, and
/// the replies keep coming. A read or write that fails (a reset; a write into a socket
/// the application closed, which the kernel answers with a reset) means it is gone in
/// both directions: an abort upstream, so the exit stops reading the destination. An
/// application that closed entirely is thus found out at the latest by the first reply
/// written after its FIN.
fn spawn_local(
    conn: ConnId,
    number: u64,
    stream: TcpStream,
    up: mpsc::Sender<FromLocal>,
    queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    taken: std::sync::Arc<Taken>,
    carried: bool,
) -> Local {
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<ToLocal>(LOCAL_QUEUE);
    let aborts = up.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match r.read(&mut buf).await {
                Ok(0) => break,
                Err(_) => {
                    let _ = up.send(FromLocal::Abort(conn)).await;
                    return;
                }
                Ok(n) => {
                    crate::metrics::bytes_up(n as u64);
                    queued.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    if up.send(FromLocal::Data(conn, chunk)).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = up.send(FromLocal::Close(conn)).await;
    });
    let reader_abort = reader.abort_handle();
    tokio::spawn(async move {
        while let Some(down) = rx.recv().await {
            match down {
                ToLocal::Data(d) => {
                    let written = w.write_all(&d).await;
                    LOCAL_QUEUED.fetch_sub(d.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    if written.is_ok() {
                        taken.add(conn, d.len() as u32);
                    } else {
                        // The application is gone: nothing more to write or read.
                        reader_abort.abort();
                        rx.close();
                        while let Ok(left) = rx.try_recv() {
                            if let ToLocal::Data(d) = left {
                                LOCAL_QUEUED.fetch_sub(
                                    d.len() as u64,
                                    std::sync::atomic::Ordering::Relaxed,
                                );
                            }
                        }
                        let _ = aborts.send(FromLocal::Abort(conn)).await;
                        return;
                    }
                }
                ToLocal::Close => break,
            }
        }
        // The exit closed: finish and close the local side entirely.
        let _ = w.shutdown().await;
        reader_abort.abort();
    });
    Local {
        number,
        tx,
        reader: reader.abort_handle(),
        accepted: tokio::time::Instant::now(),
        carried,
    }
}
