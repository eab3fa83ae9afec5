//! The relay's side of its exit connections: one task per open Conn#, replies funnelled
//! into one queue that the core relay drains one downstream record per exchange.
//!
//! The task of a connection owns its destination socket. Upstream bytes reach it through
//! one buffer ([`UpQueue`]) that holds at most the owner's upstream credit
//! (`dissent_core::credit::UP_WINDOW`: the owner sends no more before the exit grants what
//! the destination took, and an owner that sends more loses the connection); the task
//! reports what the destination took, and the relay grants it back downstream in steps,
//! so a destination that stops reading stops its owner. The task reads replies in chunks of at most
//! [`ExitLimits::chunk`] bytes into the shared queue, waiting while it is full, and only
//! within the connection's downstream credit (the owner's grants, `dissent_core::credit`),
//! so a connection whose reader stopped holds at most its credit here; it closes a
//! connection without traffic for [`ExitLimits::idle`]. An abort drops the task, its
//! socket and whatever it queued. Memory per connection: at most the upstream window
//! queued towards the destination, and at most the downstream credit (the window for an
//! honest owner, `EXIT_CREDIT_CAP` for any) plus one chunk read from it. A SOCKS5 exit negotiates first,
//! in the same task, over those two queues ([`Tunnel`]); an echo exit has no socket and
//! sends its upstream chunks straight back.
//!
//! Exit connections are bounded, per pseudonym slot and in all, so one member opening a
//! connection in every exchange it owns cannot exhaust the relay's sockets: an OPEN beyond a
//! cap is refused with a downstream close and counted.
//!
//! This module moves bytes and counts; which destinations are allowed belongs to
//! [`ExitPolicy`], and the SOCKS5 protocol to `exit::socks5`.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dissent_core::credit::{Consumed, ExitCredit, ExitUpstream};
use dissent_core::relay::{DownChunk, Downstream};
use dissent_core::wire::ConnId;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{self, error::SendError, OwnedPermit};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use super::{connect_tcp, socks5, ExitKind, ExitPolicy};

/// Downstream chunks waiting for an exchange.
const DOWNSTREAM_QUEUE: usize = 256;

/// Bounds on exit connections.
#[derive(Debug, Clone, Copy)]
pub struct ExitLimits {
    /// Open connections of one pseudonym slot.
    pub per_slot: usize,
    /// Open connections in all.
    pub total: usize,
    /// Connections with no traffic this long are closed.
    pub idle: Duration,
    /// Largest downstream chunk read at once.
    pub chunk: usize,
}

/// A connection's downstream credit ([`dissent_core::credit`]), shared by its task (which
/// reads the destination only within it) and the relay (which adds the owner's grants).
#[derive(Default)]
struct CreditGate {
    credit: std::sync::Mutex<ExitCredit>,
    granted: tokio::sync::Notify,
    /// Upstream bytes the destination took, not yet granted back to the owner.
    taken: std::sync::Mutex<Consumed>,
}

impl CreditGate {
    /// Waits until some credit is left and returns it (at most `max`), spent.
    async fn take(&self, max: usize) -> usize {
        loop {
            let granted = self.granted.notified();
            {
                let mut c = self.credit.lock().unwrap_or_else(|e| e.into_inner());
                let n = (c.available() as usize).min(max);
                if n > 0 {
                    c.spend(n as u32);
                    return n;
                }
            }
            granted.await;
        }
    }

    /// Gives back what was taken and not used.
    fn untake(&self, n: usize) {
        let mut c = self.credit.lock().unwrap_or_else(|e| e.into_inner());
        c.grant(n as u32);
    }

    /// Spends `n` without waiting (a SOCKS5 reply: a few bytes, at the start).
    fn spend(&self, n: usize) {
        let mut c = self.credit.lock().unwrap_or_else(|e| e.into_inner());
        c.spend(n as u32);
    }

    fn grant(&self, bytes: u32) {
        let mut c = self.credit.lock().unwrap_or_else(|e| e.into_inner());
        c.grant(bytes);
        drop(c);
        self.granted.notify_one();
    }

    /// `n` upstream bytes were taken; they are granted with the next [`CreditGate::took`].
    fn count(&self, n: usize) {
        let mut t = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        t.took(n as u32);
    }

    /// The destination took `n` upstream bytes; returns the grant to send now, if any.
    fn took(&self, n: usize) -> Option<u32> {
        let mut t = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        t.took(n as u32);
        t.grant()
    }
}

/// Upstream bytes waiting for one exit connection's destination, in one buffer (so a
/// stream of one-byte records costs its bytes, not a chunk each). The relay checks each
/// record against the owner's credit before it queues it, so the buffer holds at most the
/// upstream window.
#[derive(Default)]
struct UpQueue {
    state: std::sync::Mutex<UpState>,
    ready: tokio::sync::Notify,
}

#[derive(Default)]
struct UpState {
    bytes: BytesMut,
    /// The owner finished sending.
    closed: bool,
}

impl UpQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, UpState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, data: &[u8]) {
        self.state().bytes.extend_from_slice(data);
        self.ready.notify_one();
    }

    fn close(&self) {
        self.state().closed = true;
        self.ready.notify_one();
    }

    /// Every byte waiting, once there is one; `None` once the owner finished and every
    /// byte was taken.
    async fn recv(&self) -> Option<Bytes> {
        loop {
            let ready = self.ready.notified();
            {
                let mut s = self.state();
                if !s.bytes.is_empty() {
                    return Some(s.bytes.split().freeze());
                }
                if s.closed {
                    return None;
                }
            }
            ready.await;
        }
    }
}

/// A reply of an exit connection, tagged with its Conn# and generation.
type Envelope = (ConnId, u64, Reply);

/// What an exit task reports for its connection.
enum Reply {
    Data(Bytes),
    /// The destination took this many more upstream bytes: a grant for the owner.
    Grant(u32),
    /// The exit's side ended (or could not be opened).
    End,
}

/// One exit connection; `generation` tells its replies from those of an earlier
/// connection that used the same Conn#.
struct ExitConn {
    generation: u64,
    /// Upstream bytes for the task.
    up: std::sync::Arc<UpQueue>,
    /// The client finished sending.
    finished: bool,
    /// What the owner may still send.
    up_credit: ExitUpstream,
    task: AbortHandle,
    credit: std::sync::Arc<CreditGate>,
}

/// Counters for the stats line.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExitStats {
    /// Decoded upstream bytes.
    pub up_bytes: u64,
    /// Downstream bytes handed to the core.
    pub down_bytes: u64,
    /// Connections refused at a cap.
    pub refused_cap: u64,
    /// Connections their owners aborted.
    pub aborted: u64,
    /// Connections closed because their owner sent beyond its upstream credit.
    pub overdrawn: u64,
}

/// The relay's open exit connections.
pub struct ExitConnections {
    kind: ExitKind,
    /// Which destinations the SOCKS5 exit may reach (and its refusal count).
    pub policy: ExitPolicy,
    limits: ExitLimits,
    open: HashMap<ConnId, ExitConn>,
    per_slot: HashMap<u16, usize>,
    next_generation: u64,
    down_tx: mpsc::Sender<Envelope>,
    /// Replies of every exit connection.
    down_rx: mpsc::Receiver<Envelope>,
    pending: Option<Envelope>,
    /// Connections the relay gave up on or refused, whose owners still need a close record.
    closing: VecDeque<ConnId>,
    /// Bytes in replies queued for the core (read from destinations, not yet sent).
    queued: std::sync::Arc<AtomicU64>,
    /// Counters.
    pub stats: ExitStats,
}

impl ExitConnections {
    /// An exit of `kind` with these bounds.
    pub fn new(kind: ExitKind, policy: ExitPolicy, limits: ExitLimits) -> Self {
        let (down_tx, down_rx) = mpsc::channel(DOWNSTREAM_QUEUE);
        ExitConnections {
            kind,
            policy,
            limits,
            open: HashMap::new(),
            per_slot: HashMap::new(),
            next_generation: 0,
            down_tx,
            down_rx,
            pending: None,
            closing: VecDeque::new(),
            queued: std::sync::Arc::default(),
            stats: ExitStats::default(),
        }
    }

    /// Open exit connections.
    pub fn open_connections(&self) -> usize {
        self.open.len()
    }

    /// Waits for the next reply of an exit connection (cancel-safe); call
    /// [`ExitConnections::has_room`] first.
    pub async fn recv(&mut self) {
        if let Some(r) = self.down_rx.recv().await {
            self.pending = Some(r);
        }
    }

    /// Whether a reply can be taken from the queue now.
    pub fn has_room(&self) -> bool {
        self.pending.is_none()
    }

    fn slot_of(conn: ConnId) -> u16 {
        conn.slot().unwrap_or(u16::MAX)
    }

    fn forget(&mut self, conn: ConnId) -> Option<ExitConn> {
        let old = self.open.remove(&conn)?;
        if let Some(n) = self.per_slot.get_mut(&Self::slot_of(conn)) {
            *n = n.saturating_sub(1);
        }
        Some(old)
    }

    /// Decoded upstream bytes (an OPEN first opens the connection).
    pub fn upstream(&mut self, conn: ConnId, open: bool, data: &[u8]) {
        self.stats.up_bytes += data.len() as u64;
        if open {
            if let Some(old) = self.forget(conn) {
                // The same Conn# opened again: the old connection is over.
                debug!(%conn, "connection opened again; closing the previous one");
                old.task.abort();
            }
            let slot = Self::slot_of(conn);
            let in_slot = self.per_slot.get(&slot).copied().unwrap_or(0);
            if in_slot >= self.limits.per_slot || self.open.len() >= self.limits.total {
                self.stats.refused_cap += 1;
                if self.stats.refused_cap.is_power_of_two() {
                    warn!(
                        %conn,
                        "refusing an exit connection: {} open in its slot (at most {}), {} in \
                         all (at most {}); {} refused so far",
                        in_slot,
                        self.limits.per_slot,
                        self.open.len(),
                        self.limits.total,
                        self.stats.refused_cap
                    );
                }
                self.closing.push_back(conn);
                return;
            }
            self.next_generation += 1;
            let generation = self.next_generation;
            let credit = std::sync::Arc::new(CreditGate::default());
            let up = std::sync::Arc::new(UpQueue::default());
            let exit = ExitTask {
                kind: self.kind.clone(),
                policy: self.policy.clone(),
                replies: Replies {
                    down: self.down_tx.clone(),
                    conn,
                    generation,
                    credit: credit.clone(),
                    queued: self.queued.clone(),
                },
                chunk: self.limits.chunk,
                idle: self.limits.idle,
            };
            let task = tokio::spawn(exit.run(up.clone())).abort_handle();
            *self.per_slot.entry(slot).or_insert(0) += 1;
            self.open.insert(
                conn,
                ExitConn {
                    generation,
                    up,
                    finished: false,
                    up_credit: ExitUpstream::new(),
                    task,
                    credit,
                },
            );
        }
        if data.is_empty() {
            return;
        }
        let Some(exit) = self.open.get_mut(&conn) else {
            debug!(%conn, "data for a connection that is not open dropped");
            return;
        };
        if exit.finished {
            debug!(%conn, "data after the client finished sending dropped");
            return;
        }
        if !exit.up_credit.received(data.len() as u32) {
            // An honest owner never sends beyond what it was granted.
            self.stats.overdrawn += 1;
            warn!(%conn, "owner sent beyond its upstream credit; closing the connection");
            if let Some(old) = self.forget(conn) {
                old.task.abort();
            }
            // The owner learns with the next downstream record.
            self.closing.push_back(conn);
            return;
        }
        exit.up.push(data);
    }

    /// The client finished sending on `conn`: the exit sends a FIN and keeps reading.
    pub fn close(&mut self, conn: ConnId) {
        if let Some(exit) = self.open.get_mut(&conn) {
            exit.finished = true;
            exit.up.close();
        }
    }

    /// The owner granted `bytes` more downstream credit on `conn`.
    pub fn grant(&mut self, conn: ConnId, bytes: u32) {
        if let Some(exit) = self.open.get(&conn) {
            exit.credit.grant(bytes);
        }
    }

    /// Downstream bytes read from destinations and not yet handed to the core.
    pub fn queued_bytes(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// The client is done with `conn` in both directions: the task and its socket go at
    /// once (nothing more is read from the destination), what it queued is discarded (its
    /// generation is no longer current), and nothing more goes downstream for it.
    pub fn abort(&mut self, conn: ConnId) {
        if let Some(old) = self.forget(conn) {
            debug!(%conn, "connection aborted by its owner");
            old.task.abort();
            self.stats.aborted += 1;
        }
        self.closing.retain(|&c| c != conn);
    }

    fn is_current(&self, conn: ConnId, generation: u64) -> bool {
        self.open
            .get(&conn)
            .is_some_and(|e| e.generation == generation)
    }
}

impl Downstream for ExitConnections {
    fn has_data(&self) -> bool {
        self.pending.is_some() || !self.closing.is_empty() || !self.down_rx.is_empty()
    }

    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<DownChunk> {
        if let Some(conn) = self.closing.pop_front() {
            return Some(DownChunk::Close { conn });
        }
        loop {
            let (conn, generation, reply) = match self.pending.take() {
                Some(p) => p,
                None => self.down_rx.try_recv().ok()?,
            };
            if let Reply::Data(d) = &reply {
                self.queued.fetch_sub(d.len() as u64, Ordering::Relaxed);
            }
            if !self.is_current(conn, generation) {
                // Replies of a connection already replaced or closed.
                continue;
            }
            let data = match reply {
                Reply::End => {
                    self.forget(conn);
                    return Some(DownChunk::Close { conn });
                }
                Reply::Grant(bytes) => {
                    if let Some(exit) = self.open.get_mut(&conn) {
                        exit.up_credit.granted(bytes);
                    }
                    return Some(DownChunk::Grant { conn, bytes });
                }
                Reply::Data(d) => d,
            };
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            if n < data.len() {
                let rest = data.slice(n..);
                self.queued.fetch_add(rest.len() as u64, Ordering::Relaxed);
                self.pending = Some((conn, generation, Reply::Data(rest)));
            }
            self.stats.down_bytes += n as u64;
            return Some(DownChunk::Data { conn, len: n });
        }
    }
}

/// Where one exit connection's replies go.
#[derive(Clone)]
struct Replies {
    down: mpsc::Sender<Envelope>,
    conn: ConnId,
    generation: u64,
    credit: std::sync::Arc<CreditGate>,
    queued: std::sync::Arc<AtomicU64>,
}

impl Replies {
    /// Queues `data`, waiting while the queue is full; false once the relay is gone.
    async fn data(&self, data: Bytes) -> bool {
        self.queued.fetch_add(data.len() as u64, Ordering::Relaxed);
        let reply = (self.conn, self.generation, Reply::Data(data));
        self.down.send(reply).await.is_ok()
    }

    /// The destination took `n` upstream bytes; a grant goes to the owner once they make
    /// a step. False once the relay is gone.
    async fn took(&self, n: usize) -> bool {
        match self.credit.took(n) {
            Some(bytes) => self
                .down
                .send((self.conn, self.generation, Reply::Grant(bytes)))
                .await
                .is_ok(),
            None => true,
        }
    }

    /// Tells the relay that the connection has ended.
    async fn end(&self) {
        let _ = self
            .down
            .send((self.conn, self.generation, Reply::End))
            .await;
    }
}

/// When an exit connection last carried a byte, in either direction.
struct Activity {
    start: tokio::time::Instant,
    /// Milliseconds since `start` of the last byte.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: tokio::time::Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    /// Resolves once no byte has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            tokio::time::sleep(limit / 4).await;
            let quiet = (self.start.elapsed().as_millis() as u64)
                .saturating_sub(self.last.load(Ordering::Relaxed));
            if quiet >= limit.as_millis() as u64 {
                return;
            }
        }
    }
}

/// The task of one exit connection, before it starts.
struct ExitTask {
    kind: ExitKind,
    policy: ExitPolicy,
    replies: Replies,
    /// Largest reply chunk read at once.
    chunk: usize,
    /// Closes the connection after this long without traffic.
    idle: Duration,
}

impl ExitTask {
    /// Opens the destination, carries bytes both ways until its side ends or the
    /// connection is idle too long, then reports the end.
    async fn run(self, up: std::sync::Arc<UpQueue>) {
        let conn = self.replies.conn;
        let activity = Activity::new();
        let carry = async {
            match &self.kind {
                ExitKind::Echo => self.echo(&up, &activity).await,
                ExitKind::Tcp(addr) => match connect_tcp(addr).await {
                    Ok(socket) => self.carry(socket, Bytes::new(), up, &activity).await,
                    Err(e) => {
                        self.policy.count_failure();
                        debug!(%conn, "exit failed: {e}");
                    }
                },
                ExitKind::Socks5 => {
                    let tunnel = Tunnel::new(up, self.replies.clone(), &activity);
                    match socks5::negotiate(tunnel, &self.policy).await {
                        Ok((tunnel, socket)) => {
                            let (up, unread) = tunnel.into_parts();
                            self.carry(socket, unread, up, &activity).await
                        }
                        Err(e) => debug!(%conn, error = %e, "tunnelled socks5 session ended"),
                    }
                }
            }
        };
        // A connection whose client went away for good is never closed by it: give up when
        // idle.
        tokio::select! {
            _ = carry => {}
            _ = activity.idle_for(self.idle) => {
                info!(%conn, "exit connection idle for {:?}; closing it", self.idle);
            }
        }
        self.replies.end().await;
    }

    /// Moves bytes between the relay's queues and `socket`, `unread` first, until the
    /// destination's side ends.
    async fn carry(
        &self,
        mut socket: TcpStream,
        unread: Bytes,
        up: std::sync::Arc<UpQueue>,
        activity: &Activity,
    ) {
        let (reading, mut to_destination) = socket.split();
        let from_destination = reading.as_ref();
        let upstream = async {
            if !unread.is_empty() {
                if to_destination.write_all(&unread).await.is_err() {
                    return;
                }
                if !self.replies.took(unread.len()).await {
                    return;
                }
            }
            while let Some(data) = up.recv().await {
                activity.touch();
                if to_destination.write_all(&data).await.is_err() {
                    return;
                }
                // Taken by the destination (its socket buffer): the owner may send more.
                if !self.replies.took(data.len()).await {
                    return;
                }
            }
            // The client finished sending: pass the FIN on, keep reading replies.
            let _ = to_destination.shutdown().await;
        };
        let downstream = async {
            loop {
                if from_destination.readable().await.is_err() {
                    return;
                }
                // A buffer only while there is something to read, so a quiet connection
                // holds none; a short read is copied out, so a queued reply holds at most
                // twice its length.
                // Only within the owner's credit: a reader that stops stops this read.
                let allowed = self.replies.credit.take(self.chunk).await;
                let data = {
                    let mut buf = BytesMut::with_capacity(allowed);
                    let read = from_destination.try_read_buf(&mut buf);
                    let n = *read.as_ref().unwrap_or(&0);
                    self.replies.credit.untake(allowed - n);
                    match read {
                        Ok(0) => return,
                        Ok(n) if n > allowed / 2 => buf.freeze(),
                        Ok(_) => Bytes::copy_from_slice(&buf),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(_) => return,
                    }
                };
                activity.touch();
                if !self.replies.data(data).await {
                    return;
                }
            }
        };
        // The connection ends when the destination's side does; an upstream still blocked
        // then has nobody left to write to.
        tokio::select! {
            _ = downstream => {}
            _ = async { upstream.await; std::future::pending::<()>().await } => {}
        }
    }

    /// Sends every upstream byte back until the client finishes sending. Replies take
    /// whatever is queued, up to `chunk` bytes each, as a read of a socket would; a byte is
    /// taken (and granted back upstream) once its reply is queued, so the echo goes only as
    /// fast as the owner reads.
    async fn echo(&self, up: &UpQueue, activity: &Activity) {
        while let Some(mut pending) = up.recv().await {
            activity.touch();
            while !pending.is_empty() {
                let n = pending.len().min(self.chunk.max(1));
                let n = self.replies.credit.take(n).await;
                if !self.replies.data(pending.split_to(n)).await {
                    return;
                }
                if !self.replies.took(n).await {
                    return;
                }
                activity.touch();
            }
        }
    }
}

/// The client's side of a SOCKS5 exit connection as a byte stream, for the negotiation:
/// reads take the upstream chunks, writes queue replies.
struct Tunnel<'a> {
    up: std::sync::Arc<UpQueue>,
    /// Waits for upstream bytes.
    receiving: Option<Receiving>,
    /// The rest of the upstream chunk read last.
    unread: Bytes,
    replies: Replies,
    /// A reply waiting for room in the queue.
    reserving: Option<Reserving>,
    activity: &'a Activity,
}

/// Waits for upstream bytes.
type Receiving = Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>;

/// Waits for room in the reply queue.
type Reserving = Pin<Box<dyn Future<Output = Result<OwnedPermit<Envelope>, SendError<()>>> + Send>>;

impl<'a> Tunnel<'a> {
    fn new(up: std::sync::Arc<UpQueue>, replies: Replies, activity: &'a Activity) -> Self {
        Tunnel {
            up,
            receiving: None,
            unread: Bytes::new(),
            replies,
            reserving: None,
            activity,
        }
    }

    /// The upstream queue, and what the client sent after its request.
    fn into_parts(self) -> (std::sync::Arc<UpQueue>, Bytes) {
        (self.up, self.unread)
    }
}

impl AsyncRead for Tunnel<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.unread.is_empty() {
            let up = this.up.clone();
            let receiving = this
                .receiving
                .get_or_insert_with(|| Box::pin(async move { up.recv().await }));
            let received = ready!(receiving.as_mut().poll(cx));
            this.receiving = None;
            match received {
                Some(data) => {
                    this.activity.touch();
                    this.unread = data;
                }
                // The client finished sending: end of stream.
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread.split_to(n));
        // Taken by the negotiation: granted back with the destination's first bytes.
        this.replies.credit.count(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tunnel<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        let down = &this.replies.down;
        let reserving = this
            .reserving
            .get_or_insert_with(|| Box::pin(down.clone().reserve_owned()));
        let permit = ready!(reserving.as_mut().poll(cx));
        this.reserving = None;
        let Ok(permit) = permit else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        this.activity.touch();
        this.replies.credit.spend(buf.len());
        this.replies
            .queued
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        let data = Reply::Data(Bytes::copy_from_slice(buf));
        permit.send((this.replies.conn, this.replies.generation, data));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::net::TcpListener;

    use super::*;
    use crate::exit::tests::{
        closed_port, connect_domain, connect_ipv4, greet, pattern, read_reply, round_trip,
        spawn_target, GREETING,
    };

    const LIMITS: ExitLimits = ExitLimits {
        per_slot: 4,
        total: 8,
        idle: Duration::from_secs(600),
        chunk: 4096,
    };

    /// One exit connection of a fresh [`ExitConnections`] as a byte stream, driven the way
    /// the relay drives it: bytes written go in through `upstream`, the end of writing is a
    /// `close`, and whatever `next_chunk` hands out comes back, a close as end of stream.
    fn open(kind: ExitKind, policy: ExitPolicy) -> DuplexStream {
        let (near, far) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut exits = ExitConnections::new(kind, policy, LIMITS);
            let conn = ConnId::new(1, 1);
            exits.upstream(conn, true, &[]);
            let (mut from_client, mut to_client) = tokio::io::split(far);
            let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; LIMITS.chunk]);
            let mut client_sending = true;
            loop {
                while let Some(chunk) = exits.next_chunk(&mut down) {
                    match chunk {
                        DownChunk::Data { len, .. } => {
                            if to_client.write_all(&down[..len]).await.is_err() {
                                return;
                            }
                        }
                        DownChunk::Close { .. } => {
                            let _ = to_client.shutdown().await;
                            return;
                        }
                        DownChunk::Grant { .. } => {}
                    }
                }
                tokio::select! {
                    read = from_client.read(&mut up), if client_sending => match read {
                        Ok(0) | Err(_) => {
                            exits.close(conn);
                            client_sending = false;
                        }
                        Ok(n) => exits.upstream(conn, false, &up[..n]),
                    },
                    _ = exits.recv(), if exits.has_room() => {}
                }
            }
        });
        near
    }

    /// Runs a full CONNECT with `request` and checks both directions and the close.
    async fn connect_and_talk(request: &[u8]) -> io::Result<()> {
        let mut s = open(ExitKind::Socks5, ExitPolicy::new(true, Vec::new()));
        greet(&mut s).await?;
        s.write_all(request).await?;
        assert_eq!(read_reply(&mut s).await?, 0x00);

        s.write_all(b"ping").await?;
        let mut pong = [0u8; 9];
        s.read_exact(&mut pong).await?;
        assert_eq!(&pong, b"pong:ping");

        s.write_all(b"more bytes").await?;
        s.shutdown().await?;
        let mut tail = Vec::new();
        s.read_to_end(&mut tail).await?;
        assert_eq!(tail, b"more bytes");
        Ok(())
    }

    #[tokio::test]
    async fn echo_returns_100_kib_unchanged() -> io::Result<()> {
        let data = pattern(100 * 1024);
        let back = round_trip(
            open(ExitKind::Echo, ExitPolicy::new(true, Vec::new())),
            &data,
        )
        .await?;
        assert_eq!(back.len(), data.len());
        assert!(back == data);
        Ok(())
    }

    #[tokio::test]
    async fn socks5_connect_ipv4() -> io::Result<()> {
        let target = spawn_target().await?;
        connect_and_talk(&connect_ipv4(0x01, target)).await
    }

    #[tokio::test]
    async fn socks5_connect_domain() -> io::Result<()> {
        let target = spawn_target().await?;
        connect_and_talk(&connect_domain("localhost", target.port())).await
    }

    #[tokio::test]
    async fn socks5_pipelined_request_and_data() -> io::Result<()> {
        let target = spawn_target().await?;
        let mut all = GREETING.to_vec();
        all.extend_from_slice(&connect_ipv4(0x01, target));
        all.extend_from_slice(b"ping");
        let mut s = open(ExitKind::Socks5, ExitPolicy::new(true, Vec::new()));
        s.write_all(&all).await?;
        let mut choice = [0u8; 2];
        s.read_exact(&mut choice).await?;
        assert_eq!(choice, [0x05, 0x00]);
        assert_eq!(read_reply(&mut s).await?, 0x00);
        let mut pong = [0u8; 9];
        s.read_exact(&mut pong).await?;
        assert_eq!(&pong, b"pong:ping");
        Ok(())
    }

    #[tokio::test]
    async fn socks5_refused_port_replies_0x05() -> io::Result<()> {
        let port = closed_port().await?;
        let mut s = open(ExitKind::Socks5, ExitPolicy::new(true, Vec::new()));
        greet(&mut s).await?;
        s.write_all(&connect_ipv4(0x01, (Ipv4Addr::LOCALHOST, port).into()))
            .await?;
        assert_eq!(read_reply(&mut s).await?, 0x05);
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await?;
        assert!(rest.is_empty(), "stream closes after the error reply");
        Ok(())
    }

    #[tokio::test]
    async fn socks5_to_a_private_address_is_not_allowed_by_default() -> io::Result<()> {
        let target = spawn_target().await?;
        let requests = [
            connect_ipv4(0x01, target),
            connect_domain("localhost", target.port()),
        ];
        for request in requests {
            let mut s = open(ExitKind::Socks5, ExitPolicy::new(false, Vec::new()));
            greet(&mut s).await?;
            s.write_all(&request).await?;
            assert_eq!(read_reply(&mut s).await?, 0x02, "connection not allowed");
        }
        // The same target is reachable when private addresses are allowed.
        connect_and_talk(&connect_ipv4(0x01, target)).await
    }

    #[tokio::test]
    async fn refusals_are_counted_and_shared_by_clones() -> io::Result<()> {
        let policy = ExitPolicy::with_host_addresses(false, Vec::new(), Vec::new());
        assert_eq!(policy.refused(), 0);
        for request in [
            connect_ipv4(0x01, (Ipv4Addr::new(127, 0, 0, 2), 80).into()),
            connect_domain("localhost", 80),
        ] {
            let mut s = open(ExitKind::Socks5, policy.clone());
            greet(&mut s).await?;
            s.write_all(&request).await?;
            assert_eq!(read_reply(&mut s).await?, 0x02, "connection not allowed");
        }
        assert_eq!(policy.refused(), 2);
        Ok(())
    }

    #[tokio::test]
    async fn socks5_bind_replies_0x07() -> io::Result<()> {
        let mut s = open(ExitKind::Socks5, ExitPolicy::new(true, Vec::new()));
        greet(&mut s).await?;
        s.write_all(&connect_ipv4(0x02, (Ipv4Addr::LOCALHOST, 80).into()))
            .await?;
        assert_eq!(read_reply(&mut s).await?, 0x07);
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await?;
        assert!(rest.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn socks5_unknown_command_replies_0x07() -> io::Result<()> {
        let mut s = open(ExitKind::Socks5, ExitPolicy::new(true, Vec::new()));
        greet(&mut s).await?;
        s.write_all(&connect_ipv4(0x09, (Ipv4Addr::LOCALHOST, 80).into()))
            .await?;
        assert_eq!(read_reply(&mut s).await?, 0x07);
        Ok(())
    }

    #[tokio::test]
    async fn socks5_unknown_address_type_replies_0x08() -> io::Result<()> {
        let mut s = open(ExitKind::Socks5, ExitPolicy::new(true, Vec::new()));
        greet(&mut s).await?;
        s.write_all(&[0x05, 0x01, 0x00, 0x05, 1, 2, 3, 4, 0, 80])
            .await?;
        assert_eq!(read_reply(&mut s).await?, 0x08);
        Ok(())
    }

    #[tokio::test]
    async fn socks5_garbage_greeting_closes() -> io::Result<()> {
        let mut s = open(ExitKind::Socks5, ExitPolicy::new(true, Vec::new()));
        s.write_all(&[0x04, 0x01, 0x00, 0x50, 0x7f, 0, 0, 1])
            .await?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await?;
        assert!(rest.is_empty(), "no reply to a SOCKS4 greeting");
        Ok(())
    }

    #[tokio::test]
    async fn socks5_without_no_auth_method_is_rejected() -> io::Result<()> {
        let mut s = open(ExitKind::Socks5, ExitPolicy::new(true, Vec::new()));
        s.write_all(&[0x05, 0x01, 0x02]).await?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await?;
        assert_eq!(rest, [0x05, 0xff]);
        Ok(())
    }

    #[tokio::test]
    async fn socks5_truncated_request_closes() -> io::Result<()> {
        let mut s = open(ExitKind::Socks5, ExitPolicy::new(true, Vec::new()));
        greet(&mut s).await?;
        s.write_all(&[0x05, 0x01, 0x00, 0x03, 200, b'x']).await?;
        s.shutdown().await?;
        // Whatever the server says, it must end the stream rather than hang or panic.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await?;
        Ok(())
    }

    #[tokio::test]
    async fn tcp_exit_bridges_to_listener() -> io::Result<()> {
        let target = spawn_target().await?;
        let kind = ExitKind::Tcp(target.to_string().parse().unwrap());
        let mut s = open(kind, ExitPolicy::new(true, Vec::new()));
        s.write_all(b"ping").await?;
        let mut pong = [0u8; 9];
        s.read_exact(&mut pong).await?;
        assert_eq!(&pong, b"pong:ping");
        let back = round_trip(s, &pattern(100 * 1024)).await?;
        assert!(back == pattern(100 * 1024));
        Ok(())
    }

    #[tokio::test]
    async fn tcp_exit_to_closed_port_closes_and_counts_a_failure() -> io::Result<()> {
        let port = closed_port().await?;
        let policy = ExitPolicy::new(true, Vec::new());
        let kind = ExitKind::Tcp(format!("127.0.0.1:{port}").parse().unwrap());
        let mut s = open(kind, policy.clone());
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await?;
        assert!(rest.is_empty());
        assert_eq!(policy.failed(), 1);
        Ok(())
    }

    /// A destination that takes no bytes holds its owner to the upstream window: the
    /// window is queued and the connection kept, a byte more (an owner that ignores its
    /// credit) closes it; the close goes to the owner and the connection no longer counts.
    #[tokio::test]
    async fn a_destination_that_takes_no_bytes_holds_its_owner_to_the_window() -> io::Result<()> {
        use dissent_core::credit::UP_WINDOW;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let target = listener.local_addr()?;
        // Accepts and holds the connection, never reading.
        let held = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
        let kind = ExitKind::Tcp(target.to_string().parse().unwrap());
        let mut exits = ExitConnections::new(kind, ExitPolicy::new(true, Vec::new()), LIMITS);
        let conn = ConnId::new(1, 1);
        exits.upstream(conn, true, &[]);
        let mut down = vec![0u8; LIMITS.chunk];
        // The destination's socket buffers take some: those are granted back, the rest
        // stays queued.
        let mut granted = 0u64;
        // The window, one byte per record: kept, whatever the destination does.
        for _ in 0..UP_WINDOW / 4096 {
            for _ in 0..4096 {
                exits.upstream(conn, false, b"x");
            }
            tokio::task::yield_now().await;
            while let Some(chunk) = exits.next_chunk(&mut down) {
                match chunk {
                    DownChunk::Grant { bytes, .. } => granted += u64::from(bytes),
                    other => panic!("within the window: {other:?}"),
                }
            }
        }
        assert_eq!(exits.open_connections(), 1);
        // A byte beyond the window and the grants closes the connection.
        let mut left = granted;
        while left > 0 {
            let n = left.min(16 * 1024);
            exits.upstream(conn, false, &pattern(n as usize));
            left -= n;
        }
        assert_eq!(exits.open_connections(), 1, "closed within its grants");
        exits.upstream(conn, false, b"x");
        assert_eq!(exits.stats.overdrawn, 1);
        assert_eq!(exits.open_connections(), 0);
        assert!(matches!(
            exits.next_chunk(&mut down),
            Some(DownChunk::Close { conn: c }) if c == conn
        ));
        drop(held);
        Ok(())
    }

    /// What the destination takes goes back to the owner as grants, in steps: after it took
    /// a window, all but less than a step of it is granted.
    #[tokio::test]
    async fn what_the_destination_takes_is_granted_back() -> io::Result<()> {
        use dissent_core::credit::{GRANT_STEP, UP_WINDOW};
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let target = listener.local_addr()?;
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await?;
            let mut all = Vec::new();
            s.read_to_end(&mut all).await?;
            io::Result::Ok(all)
        });
        let kind = ExitKind::Tcp(target.to_string().parse().unwrap());
        let mut exits = ExitConnections::new(kind, ExitPolicy::new(true, Vec::new()), LIMITS);
        let conn = ConnId::new(1, 1);
        exits.upstream(conn, true, &[]);
        let data = pattern(UP_WINDOW as usize);
        for part in data.chunks(16 * 1024) {
            exits.upstream(conn, false, part);
        }
        let mut down = vec![0u8; LIMITS.chunk];
        let mut granted = 0u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while granted + u64::from(GRANT_STEP) <= u64::from(UP_WINDOW) {
            assert!(tokio::time::Instant::now() < deadline, "granted {granted}");
            if exits.has_room() {
                tokio::select! {
                    _ = exits.recv() => {}
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
            while let Some(chunk) = exits.next_chunk(&mut down) {
                match chunk {
                    DownChunk::Grant { conn: c, bytes } => {
                        assert_eq!(c, conn);
                        assert!(bytes >= GRANT_STEP);
                        granted += u64::from(bytes);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert!(granted <= u64::from(UP_WINDOW));
        exits.close(conn);
        assert_eq!(reader.await.unwrap()?, data);
        Ok(())
    }

    #[tokio::test]
    async fn opens_beyond_a_cap_are_closed_and_counted() -> io::Result<()> {
        let mut exits =
            ExitConnections::new(ExitKind::Echo, ExitPolicy::new(true, Vec::new()), LIMITS);
        let mut down = vec![0u8; LIMITS.chunk];
        // Slot 1 takes its cap; one more in slot 1 is refused.
        for low in 1..=LIMITS.per_slot as u16 + 1 {
            exits.upstream(ConnId::new(1, low), true, b"x");
        }
        assert_eq!(exits.open_connections(), LIMITS.per_slot);
        assert_eq!(exits.stats.refused_cap, 1);
        let refused = ConnId::new(1, LIMITS.per_slot as u16 + 1);
        assert!(matches!(
            exits.next_chunk(&mut down),
            Some(DownChunk::Close { conn }) if conn == refused
        ));
        // Other slots fill the total; the next one is refused too.
        for slot in 2..=3 {
            for low in 1..=LIMITS.per_slot as u16 {
                exits.upstream(ConnId::new(slot, low), true, b"x");
            }
        }
        assert_eq!(exits.open_connections(), LIMITS.total);
        assert_eq!(exits.stats.refused_cap, 1 + LIMITS.per_slot as u64);
        Ok(())
    }
}
