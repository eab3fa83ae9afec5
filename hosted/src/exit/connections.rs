//! The relay's exit side: one task per open Conn#, replies funnelled into one queue that the
//! core relay drains one downstream record per exchange.
//!
//! Exit connections are bounded, per pseudonym slot and in all, so one member opening a
//! connection in every exchange it owns cannot exhaust the relay's sockets: an OPEN beyond a
//! cap is refused with a downstream close and counted.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use dissent_core::relay::{DownChunk, Downstream};
use dissent_core::wire::ConnId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use crate::exit::{self, ExitKind, ExitPolicy};

/// Chunks buffered towards one exit connection before it is closed as too slow.
const EXIT_QUEUE: usize = 1024;
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

/// What an exit task reports for its connection.
enum Reply {
    Data(Bytes),
    /// The exit's side ended (or could not be opened).
    End,
}

/// One exit connection; `generation` tells its replies from those of an earlier
/// connection that used the same Conn#.
struct ExitConn {
    generation: u64,
    /// Upstream bytes; `None` once the client finished sending.
    tx: Option<mpsc::Sender<Bytes>>,
    task: AbortHandle,
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
}

/// The exit side of the relay.
pub struct Exits {
    kind: ExitKind,
    /// Which destinations the SOCKS5 exit may reach (and its refusal count).
    pub policy: ExitPolicy,
    limits: ExitLimits,
    open: HashMap<ConnId, ExitConn>,
    per_slot: HashMap<u16, usize>,
    next_generation: u64,
    down_tx: mpsc::Sender<(ConnId, u64, Reply)>,
    /// Replies of every exit connection.
    down_rx: mpsc::Receiver<(ConnId, u64, Reply)>,
    pending: Option<(ConnId, u64, Reply)>,
    /// Connections the relay gave up on or refused, whose owners still need a close record.
    closing: VecDeque<ConnId>,
    /// Counters.
    pub stats: ExitStats,
}

impl Exits {
    /// An exit of `kind` with these bounds.
    pub fn new(kind: ExitKind, policy: ExitPolicy, limits: ExitLimits) -> Self {
        let (down_tx, down_rx) = mpsc::channel(DOWNSTREAM_QUEUE);
        Exits {
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
            stats: ExitStats::default(),
        }
    }

    /// Open exit connections.
    pub fn open_connections(&self) -> usize {
        self.open.len()
    }

    /// Waits for the next reply of an exit connection (cancel-safe); call
    /// [`Exits::has_room`] first.
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
            let (tx, task) = spawn_exit(
                self.kind.clone(),
                self.policy.clone(),
                conn,
                generation,
                self.limits.chunk,
                self.limits.idle,
                self.down_tx.clone(),
            );
            *self.per_slot.entry(slot).or_insert(0) += 1;
            self.open.insert(
                conn,
                ExitConn {
                    generation,
                    tx: Some(tx),
                    task,
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
        let Some(tx) = &exit.tx else {
            debug!(%conn, "data after the client finished sending dropped");
            return;
        };
        if tx.try_send(Bytes::copy_from_slice(data)).is_err() {
            warn!(%conn, "exit connection not keeping up; closing it");
            if let Some(old) = self.forget(conn) {
                old.task.abort();
            }
            // The owner learns with the next downstream record.
            self.closing.push_back(conn);
        }
    }

    /// The client finished sending on `conn`: the exit sends a FIN and keeps reading.
    pub fn close(&mut self, conn: ConnId) {
        if let Some(exit) = self.open.get_mut(&conn) {
            exit.tx = None;
        }
    }

    fn is_current(&self, conn: ConnId, generation: u64) -> bool {
        self.open
            .get(&conn)
            .is_some_and(|e| e.generation == generation)
    }
}

impl Downstream for Exits {
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
            if !self.is_current(conn, generation) {
                // Replies of a connection already replaced or closed.
                continue;
            }
            let data = match reply {
                Reply::End => {
                    self.forget(conn);
                    return Some(DownChunk::Close { conn });
                }
                Reply::Data(d) => d,
            };
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            if n < data.len() {
                self.pending = Some((conn, generation, Reply::Data(data.slice(n..))));
            }
            self.stats.down_bytes += n as u64;
            return Some(DownChunk::Data { conn, len: n });
        }
    }
}

/// Starts the exit task of one connection; returns its upstream queue and its handle.
fn spawn_exit(
    kind: ExitKind,
    policy: ExitPolicy,
    conn: ConnId,
    generation: u64,
    chunk: usize,
    idle_limit: Duration,
    down: mpsc::Sender<(ConnId, u64, Reply)>,
) -> (mpsc::Sender<Bytes>, AbortHandle) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(EXIT_QUEUE);
    let task = tokio::spawn(async move {
        // Milliseconds since `start` of the last byte in either direction.
        let start = tokio::time::Instant::now();
        let last = std::sync::atomic::AtomicU64::new(0);
        let touch = || {
            last.store(
                start.elapsed().as_millis() as u64,
                std::sync::atomic::Ordering::Relaxed,
            )
        };
        let stream = match exit::open(&kind, policy).await {
            Ok(s) => s,
            Err(e) => {
                debug!(%conn, "exit failed: {e}");
                let _ = down.send((conn, generation, Reply::End)).await;
                return;
            }
        };
        let (mut r, mut w) = tokio::io::split(stream);
        let writer = async move {
            while let Some(data) = rx.recv().await {
                touch();
                if w.write_all(&data).await.is_err() {
                    return;
                }
            }
            // The client finished sending: pass the FIN on, keep reading replies.
            let _ = w.shutdown().await;
        };
        let reader = async {
            let mut buf = vec![0u8; chunk];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        touch();
                        let data = Bytes::copy_from_slice(&buf[..n]);
                        if down
                            .send((conn, generation, Reply::Data(data)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        };
        // A connection whose client went away for good is never closed by it: give up when
        // idle.
        let idle = async {
            loop {
                tokio::time::sleep(idle_limit / 4).await;
                let quiet = (start.elapsed().as_millis() as u64)
                    .saturating_sub(last.load(std::sync::atomic::Ordering::Relaxed));
                if quiet >= idle_limit.as_millis() as u64 {
                    info!(%conn, "exit connection idle for {idle_limit:?}; closing it");
                    return;
                }
            }
        };
        // The connection ends when the exit side does; a writer still blocked then
        // has nobody left to write to.
        tokio::select! {
            _ = reader => {}
            _ = async { writer.await; std::future::pending::<()>().await } => {}
            _ = idle => {}
        }
        let _ = down.send((conn, generation, Reply::End)).await;
    });
    (tx, task.abort_handle())
}
