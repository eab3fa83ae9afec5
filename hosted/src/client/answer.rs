//! The answering side of a client: the core client, its relay link, and the handles of the
//! local connections, on a thread of their own (or, in a process of many clients without
//! local ports, a task of the process's runtime).
//!
//! Owns the order of work on a request: the cell goes out first, then the local side gets
//! one turn (with the downstream bytes, if the record is for one of this client's
//! connections), then the next owned cell is prepared. New upstream bytes wake this side
//! only when the core client wants them at once ([`Client::wants_upstream`]: once between
//! two cells, so a first byte does not wait a whole exchange); otherwise the next
//! preparation pulls them. It must not read or write
//! local sockets, nor wait for the local side: it hands turns over with `try_send` on a
//! bounded queue and closes a connection that does not keep up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use dissent_core::client::{Client, ClientEvent, Delivery, IntervalError, PeerError};
use dissent_core::wire::{ConnId, GoodbyeReason};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::local::{
    spawn_local, Budget, FromLocal, Local, Outbox, Pending, ToLocal, Turn, LOCAL_QUEUED,
};
use super::{ClientOptions, NO_NET_GRACE};
use crate::clock;
use crate::config::{Group, NodeSecrets};
use crate::link::dial::{self, Connected, Dialer, End, LinkKeys};

/// How late a client built with the `disruptor` feature and run with `--disrupt slow`
/// answers each request (just under the relay's default 10 s timeout).
const SLOW_DISRUPTOR_DELAY: Duration = Duration::from_millis(9_500);

/// One client's answering side: the core state machine, its relay link, and the handles
/// of its local connections.
pub(super) struct ClientNode {
    id: String,
    client: Client<Vec<u8>>,
    dialer: Dialer,
    locals: HashMap<ConnId, Local>,
    pending: Pending,
    up_tx: mpsc::UnboundedSender<FromLocal>,
    origin: tokio::time::Instant,
    quiet: bool,
    intervals: u64,
    /// Local connections accepted so far (the last one's number in the log).
    accepted: u64,
    /// Local connections accepted on the local side, if this client has a port.
    from_listener: Option<mpsc::Receiver<(TcpStream, SocketAddr)>>,
    /// Where each answered request's downstream part goes, if this client has a port.
    turns: Option<mpsc::Sender<Turn>>,
    /// Local connections that do not read what they are sent.
    stuck: Option<mpsc::UnboundedReceiver<ConnId>>,
    /// The runtime the local connections' tasks run on.
    local: Handle,
}

impl ClientNode {
    /// A client with the local side `local`, or none (no local port).
    pub(super) fn new(
        group: &Group,
        node: &NodeSecrets,
        client: Client<Vec<u8>>,
        opts: ClientOptions,
        local: Option<LocalSide>,
    ) -> Self {
        let keys = LinkKeys {
            own: node.private_key,
            relay: group.relay_key,
            group_id: group.group_id,
            session_id: group.session_id,
        };
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let (up_tx, up_rx) = mpsc::unbounded_channel();
        let (runtime, from_listener, turns, stuck, budget) = match local {
            Some(l) => (
                l.runtime,
                Some(l.accepted),
                Some(l.turns),
                Some(l.stuck),
                l.budget,
            ),
            None => (Handle::current(), None, None, None, Arc::default()),
        };
        ClientNode {
            id: node.id.clone(),
            client,
            dialer: Dialer::new(opts.relay, keys, seed, opts.quiet),
            locals: HashMap::new(),
            pending: Pending::new(up_rx, budget),
            up_tx,
            origin: tokio::time::Instant::now(),
            quiet: opts.quiet,
            intervals: 0,
            accepted: 0,
            from_listener,
            turns,
            stuck,
            local: runtime,
        }
    }

    fn now(&self) -> dissent_core::Instant {
        clock::core_now(self.origin)
    }

    /// Runs until `shutdown` resolves.
    pub(super) async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut link: Option<Connected> = None;
        loop {
            // New upstream bytes (or bytes the application took) prepare a cell at once
            // only when the core client wants them now.
            let armed = self.client.wants_upstream();
            let wake = tokio::select! {
                _ = &mut shutdown => Wake::Shutdown,
                w = link_event(&mut link, &mut self.dialer) => w,
                Some((stream, addr)) = accepted(&mut self.from_listener) => Wake::Accepted(stream, addr),
                Some(conn) = stuck(&mut self.stuck) => Wake::Stuck(conn),
                Some(up) = self.pending.rx.recv(), if armed && self.pending.partial.is_none() => Wake::Upstream(up),
                _ = self.pending.taken.added.notified(), if armed => Wake::Taken,
                _ = tick.tick() => Wake::Tick,
            };
            let end = match wake {
                Wake::Shutdown => End::Shutdown,
                Wake::Dialed(mut l) => {
                    self.client.handle_connected(self.now());
                    match self.send_control(&mut l).await {
                        Err(e) => End::Lost(e),
                        Ok(()) => {
                            link = Some(l);
                            continue;
                        }
                    }
                }
                Wake::Frame(f) => {
                    let Some(l) = link.as_mut() else { continue };
                    match f {
                        Ok(Some(body)) => match self.frames(l, body).await {
                            Ok(()) => continue,
                            Err(End::Lost(e)) => l.ended(e).await,
                            Err(end) => end,
                        },
                        Ok(None) => End::Lost("closed by the relay".into()),
                        Err(e) => End::Lost(e.to_string()),
                    }
                }
                Wake::Accepted(stream, addr) => {
                    self.accepted(stream, addr);
                    continue;
                }
                Wake::Stuck(conn) => {
                    self.not_reading(conn);
                    continue;
                }
                Wake::Upstream(up) => {
                    self.pending.hold(up);
                    self.prepare();
                    continue;
                }
                Wake::Taken => {
                    self.prepare();
                    continue;
                }
                Wake::Tick => {
                    self.close_stranded(link.is_some());
                    self.forget_aborted();
                    continue;
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
            if let End::Goodbye(GoodbyeReason::Switch) = end {
                self.close_for_switch();
            }
            dial::after_link(&self.id, &end, self.quiet && !had_link)?;
            self.dialer.lost(&end);
        }
    }

    /// Handles a frame and every other frame already buffered. For each: its cell goes out
    /// first, then its downstream bytes to the application, then the next owned cell is
    /// prepared, so every cell is computed the same way, owner or not.
    async fn frames(&mut self, link: &mut Connected, first: Bytes) -> Result<(), End> {
        let mut body = Some(first);
        while let Some(b) = body.take() {
            // The test hook: nothing more is handled.
            #[cfg(feature = "disruptor")]
            if crate::test_hooks::holds_blame_request(&b) {
                std::future::pending::<()>().await;
            }
            let now = self.now();
            let mut answered = false;
            let mut grant = None;
            let delivery = match self.client.handle_frame(now, &b, link.sink.room()) {
                Ok(h) => {
                    if let Some(n) = h.cell {
                        answered = true;
                        link.sink.commit(n);
                        crate::metrics::exchanges(1);
                    }
                    match h.delivery {
                        Some(Delivery::Data { conn, data }) => {
                            Some((conn, Some(b.slice_ref(data))))
                        }
                        Some(Delivery::Close { conn }) => Some((conn, None)),
                        Some(Delivery::Grant { conn, bytes }) => {
                            grant = Some((conn, bytes));
                            None
                        }
                        None => None,
                    }
                }
                Err(PeerError::Goodbye(r)) => return Err(End::Goodbye(r)),
                Err(PeerError::Interval(e @ IntervalError::TooFewKept { .. })) => {
                    return Err(End::Lost(format!(
                        "refusing the relay's interval: {e}; in a blame round this client \
                         could not give back a cell it sent (the relay's --window is too large)"
                    )))
                }
                Err(e) => return Err(End::Lost(format!("dropping the relay link: {e}"))),
            };
            if answered && self.client.disrupts_slowly() {
                // `--disrupt slow`: every request is answered this late.
                tokio::time::sleep(SLOW_DISRUPTOR_DELAY).await;
            }
            let flushed = link.sink.flush().await;
            // After the cell, as the bytes of a record are.
            if let Some((conn, bytes)) = grant {
                self.grant(conn, bytes);
            }
            // The record is the client's now (its downstream head moved past it), so it is
            // delivered even when the cell could not go out. Every request gives the local
            // side one turn, with or without bytes for it.
            match delivery {
                Some((conn, data)) => self.deliver(conn, data),
                None => {
                    self.hand_over(None);
                }
            }
            self.deliver_replays();
            flushed.map_err(|e| End::Lost(e.to_string()))?;
            self.events();
            self.send_control(link).await.map_err(End::Lost)?;
            self.prepare();
            body = link
                .frames
                .next_buffered()
                .map_err(|e| End::Lost(e.to_string()))?;
        }
        Ok(())
    }

    /// Prepares the next owned cell: after a cell went out, or for bytes the core client
    /// wants at once.
    fn prepare(&mut self) {
        self.client.prepare(self.now(), &mut self.pending);
    }

    /// Hands the application the replayed records the client accepted.
    fn deliver_replays(&mut self) {
        while let Some(d) = self.client.poll_replay() {
            let (conn, data) = match d {
                Delivery::Data { conn, data } => (conn, Some(Bytes::copy_from_slice(data))),
                Delivery::Close { conn } => (conn, None),
                Delivery::Grant { conn, bytes } => {
                    self.grant(conn, bytes);
                    continue;
                }
            };
            self.deliver(conn, data);
        }
    }

    /// The exit granted upstream credit on `conn`: its reader may read that much more of
    /// the application's socket.
    fn grant(&self, conn: ConnId, bytes: u32) {
        if let Some(l) = self.locals.get(&conn) {
            l.gate.grant(bytes);
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
                // Its bytes are sent again; which slot is this client's stays unsaid.
                ClientEvent::Disrupted { .. } => {
                    warn!("a cell of this client was disrupted; its bytes are sent again");
                }
                ClientEvent::Blamed {
                    interval,
                    exchange,
                    who,
                    kind,
                } => warn!(
                    "blame: {who} {kind} (exchange {exchange} of interval {interval}) and is \
                     excluded"
                ),
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

    /// Opens a connection for a local connection the local side accepted; its tasks run
    /// on the local side.
    fn accepted(&mut self, stream: TcpStream, addr: SocketAddr) {
        match self.client.open() {
            Ok(conn) => {
                self.accepted += 1;
                debug!("local connection {} from {addr}", self.accepted);
                let carried = self.client.interval().is_some();
                let local = Local {
                    number: self.accepted,
                    ..spawn_local(
                        &self.local,
                        conn,
                        stream,
                        self.up_tx.clone(),
                        self.pending.budget.clone(),
                        self.pending.taken.clone(),
                        carried,
                    )
                };
                self.locals.insert(conn, local);
                if self.client.wants_upstream() {
                    self.prepare();
                }
            }
            Err(e) => warn!("refusing local connection from {addr}: {e}"),
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
                self.hand_over(Some((conn, l.out, ToLocal::Close)));
            }
            // The core forgets a connection it never announced.
            let _ = self.up_tx.send(FromLocal::Close(conn));
        }
    }

    /// The epoch ends at a switch: every local connection is closed (its application reads
    /// the end of the stream), since the next epoch's pseudonym must not carry it on.
    fn close_for_switch(&mut self) {
        let locals: Vec<(ConnId, Local)> = self.locals.drain().collect();
        if !locals.is_empty() {
            info!(
                "closing {} local connection(s): the group switches to a new version, and a \
                 connection does not outlive its epoch's pseudonym",
                locals.len()
            );
        }
        for (conn, l) in locals {
            l.reader.abort();
            self.hand_over(Some((conn, l.out, ToLocal::Close)));
        }
    }

    /// Hands downstream bytes (or the end) for `conn` to the local side, which has them
    /// if the connection is this client's.
    fn deliver(&mut self, conn: ConnId, data: Option<Bytes>) {
        let down = self.locals.get(&conn).map(|local| {
            let down = match data {
                Some(d) => {
                    crate::metrics::bytes_down(d.len() as u64);
                    ToLocal::Data(d)
                }
                None => {
                    debug!("local connection {}: closed by the exit", local.number);
                    ToLocal::Close
                }
            };
            (conn, local.out.clone(), down)
        });
        let closing = matches!(down, Some((_, _, ToLocal::Close)));
        if !self.hand_over(down) {
            self.not_reading(conn);
            return;
        }
        if closing {
            if let Some(l) = self.locals.remove(&conn) {
                l.reader.abort();
            }
        }
    }

    /// Gives the local side one turn; false if bytes for a local connection could not be
    /// queued.
    fn hand_over(&mut self, down: Option<(ConnId, Arc<Outbox>, ToLocal)>) -> bool {
        match &self.turns {
            Some(turns) => match turns.try_send(Turn(down)) {
                Ok(()) => true,
                Err(e) => e.into_inner().0.is_none(),
            },
            // No local port, so no local connections.
            None => down.is_none(),
        }
    }

    /// Aborts a local connection that does not read what it is sent.
    fn not_reading(&mut self, conn: ConnId) {
        if let Some(l) = self.locals.remove(&conn) {
            warn!(
                "local connection {}: the application is not reading; aborting it",
                l.number
            );
            l.reader.abort();
            let _ = self.up_tx.send(FromLocal::Abort(conn));
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
}

/// The local side of a client with a local port, as the answering side sees it.
pub(super) struct LocalSide {
    /// The runtime the local connections' tasks run on.
    pub(super) runtime: Handle,
    /// Local connections accepted by the listener.
    pub(super) accepted: mpsc::Receiver<(TcpStream, SocketAddr)>,
    /// To [`super::local::dispatch`].
    pub(super) turns: mpsc::Sender<Turn>,
    /// From [`super::local::dispatch`].
    pub(super) stuck: mpsc::UnboundedReceiver<ConnId>,
    /// The upstream queue's bounds, shared with the readers.
    pub(super) budget: Arc<Budget>,
}

/// What woke the answering side.
enum Wake {
    Shutdown,
    /// A link to the relay is up.
    Dialed(Connected),
    /// A frame from the relay (or the link's end).
    Frame(std::io::Result<Option<Bytes>>),
    Accepted(TcpStream, SocketAddr),
    /// A local connection did not keep up.
    Stuck(ConnId),
    /// Upstream bytes while the last preparation found nothing to send.
    Upstream(FromLocal),
    /// Downstream bytes taken by an application, while nothing else is to send.
    Taken,
    Tick,
}

/// The next event of the relay link: a frame, or, with no link, a new one.
async fn link_event(link: &mut Option<Connected>, dialer: &mut Dialer) -> Wake {
    match link {
        Some(l) => Wake::Frame(l.frames.next().await),
        None => Wake::Dialed(dialer.dial().await),
    }
}

/// The next local connection that did not keep up; never, for a client without a port.
async fn stuck(from: &mut Option<mpsc::UnboundedReceiver<ConnId>>) -> Option<ConnId> {
    match from {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next local connection the local side accepted; never, for a client without a port.
async fn accepted(
    from: &mut Option<mpsc::Receiver<(TcpStream, SocketAddr)>>,
) -> Option<(TcpStream, SocketAddr)> {
    match from {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs `node` on a thread of its own, on a runtime of its own, until `stop` resolves (or
/// its sender is gone); the receiver gets how it ended.
pub(super) fn spawn_thread(
    node: ClientNode,
    stop: oneshot::Receiver<()>,
) -> Result<oneshot::Receiver<Result<()>>> {
    let (done_tx, done_rx) = oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the client's answering runtime")?;
    std::thread::Builder::new()
        .name("answer".into())
        .spawn(move || {
            let end = rt.block_on(node.run(async {
                let _ = stop.await;
            }));
            let _ = done_tx.send(end);
        })
        .context("cannot start the client's answering thread")?;
    Ok(done_rx)
}
