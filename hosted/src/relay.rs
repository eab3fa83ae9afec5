//! `dissent relay`: the hub. Accepts links, drives the core relay, runs the exit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use dissent_core::relay::{Destination, Downstream, PeerId, Relay, RelayConfig, RelayEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use crate::config::Group;
use crate::exit::{self, ExitKind, ExitPolicy};
use crate::link;
use crate::net;

/// Options of the relay beyond the group configuration.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Address to listen on for clients and trustees.
    pub listen: SocketAddr,
    /// Where decoded connections go.
    pub exit: ExitKind,
    /// Which destinations the SOCKS5 exit may reach.
    pub exit_policy: ExitPolicy,
    /// Exchanges clients are asked ahead.
    pub client_window: u16,
    /// Exchanges trustees are asked ahead.
    pub trustee_window: u16,
    /// Clients needed before an interval opens.
    pub min_clients: u16,
    /// Pause between exchanges while idle.
    pub idle_gap: Duration,
    /// Peers silent this long in an exchange are dropped.
    pub exchange_timeout: Duration,
    /// Largest downstream payload per exchange.
    pub downstream_len: usize,
    /// Seconds between stats lines (0 = none).
    pub stats_every: u64,
    /// Exit connections with no traffic this long are closed.
    pub exit_idle: Duration,
}

/// Chunks buffered towards one exit connection before it is closed as too slow.
const EXIT_QUEUE: usize = 1024;
/// Downstream chunks waiting for an exchange.
const DOWNSTREAM_QUEUE: usize = 64;
/// Most links at once that have not finished their handshake and Hello.
const MAX_PENDING_LINKS: usize = 128;
/// Time a new link has to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

enum LinkEvent {
    Admitted(u64, PeerId),
    Frame(u64, Bytes),
    Closed(u64, String),
}

struct Link {
    admitted: Option<PeerId>,
    peer: Option<PeerId>,
    addr: SocketAddr,
    tx: mpsc::Sender<Bytes>,
    reader: AbortHandle,
}

/// One exit connection; `generation` tells its replies from those of an earlier
/// connection that used the same Conn#.
struct ExitConn {
    generation: u64,
    /// Upstream bytes; `None` once the client finished sending.
    tx: Option<mpsc::Sender<Bytes>>,
    task: AbortHandle,
}

/// A downstream chunk: Conn#, generation, bytes (empty: the exit side finished).
type DownChunk = (u32, u64, Bytes);

/// The exit side: one task per open Conn#, replies funnelled into one queue.
struct Exits {
    kind: ExitKind,
    policy: ExitPolicy,
    open: HashMap<u32, ExitConn>,
    next_generation: u64,
    down_tx: mpsc::Sender<DownChunk>,
    down_rx: mpsc::Receiver<DownChunk>,
    pending: Option<DownChunk>,
    /// Connections the relay gave up on, whose owners still need a close record.
    closing: std::collections::VecDeque<u32>,
    downstream_len: usize,
    idle_limit: Duration,
    up_bytes: u64,
    down_bytes: u64,
}

impl Exits {
    fn new(
        kind: ExitKind,
        policy: ExitPolicy,
        downstream_len: usize,
        idle_limit: Duration,
    ) -> Self {
        let (down_tx, down_rx) = mpsc::channel(DOWNSTREAM_QUEUE);
        Exits {
            kind,
            policy,
            open: HashMap::new(),
            next_generation: 0,
            down_tx,
            down_rx,
            pending: None,
            closing: std::collections::VecDeque::new(),
            downstream_len,
            idle_limit,
            up_bytes: 0,
            down_bytes: 0,
        }
    }

    fn upstream(&mut self, conn: u32, open: bool, data: &[u8]) {
        self.up_bytes += data.len() as u64;
        if open {
            if let Some(old) = self.open.remove(&conn) {
                // A client that restarted reuses its Conn#s; the old connection is over.
                debug!(conn, "connection opened again; closing the previous one");
                old.task.abort();
            }
            self.next_generation += 1;
            let generation = self.next_generation;
            let (tx, task) = spawn_exit(
                self.kind.clone(),
                self.policy.clone(),
                conn,
                generation,
                self.downstream_len,
                self.idle_limit,
                self.down_tx.clone(),
            );
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
            debug!(conn, "data for a connection that is not open dropped");
            return;
        };
        let Some(tx) = &exit.tx else {
            debug!(conn, "data after the client finished sending dropped");
            return;
        };
        if tx.try_send(Bytes::copy_from_slice(data)).is_err() {
            warn!(conn, "exit connection not keeping up; closing it");
            if let Some(old) = self.open.remove(&conn) {
                old.task.abort();
            }
            // The owner learns with the next downstream record.
            self.closing.push_back(conn);
        }
    }

    /// The client finished sending on `conn`: the exit sends a FIN and keeps reading.
    fn close(&mut self, conn: u32) {
        if let Some(exit) = self.open.get_mut(&conn) {
            exit.tx = None;
        }
    }

    fn is_current(&self, conn: u32, generation: u64) -> bool {
        self.open
            .get(&conn)
            .is_some_and(|e| e.generation == generation)
    }
}

impl Downstream for Exits {
    fn has_data(&self) -> bool {
        self.pending.is_some() || !self.closing.is_empty() || !self.down_rx.is_empty()
    }

    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<(u32, usize)> {
        if let Some(conn) = self.closing.pop_front() {
            return Some((conn, 0));
        }
        loop {
            let (conn, generation, data) = match self.pending.take() {
                Some(p) => p,
                None => self.down_rx.try_recv().ok()?,
            };
            if !self.is_current(conn, generation) {
                // Replies of a connection already replaced or closed.
                continue;
            }
            if data.is_empty() {
                self.open.remove(&conn);
                return Some((conn, 0));
            }
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            if n < data.len() {
                self.pending = Some((conn, generation, data.slice(n..)));
            }
            self.down_bytes += n as u64;
            return Some((conn, n));
        }
    }
}

/// Starts the exit task of one connection; returns its upstream queue and its handle.
fn spawn_exit(
    kind: ExitKind,
    policy: ExitPolicy,
    conn: u32,
    generation: u64,
    chunk: usize,
    idle_limit: Duration,
    down: mpsc::Sender<DownChunk>,
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
                info!(conn, "exit failed: {e}");
                let _ = down.send((conn, generation, Bytes::new())).await;
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
                        if down.send((conn, generation, data)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        };
        // A connection whose client died is never closed by it: give up when idle.
        let idle = async {
            loop {
                tokio::time::sleep(idle_limit / 4).await;
                let quiet = (start.elapsed().as_millis() as u64)
                    .saturating_sub(last.load(std::sync::atomic::Ordering::Relaxed));
                if quiet >= idle_limit.as_millis() as u64 {
                    info!(conn, "exit connection idle for {idle_limit:?}; closing it");
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
        let _ = down.send((conn, generation, Bytes::new())).await;
    });
    (tx, task.abort_handle())
}

/// Runs the relay until Ctrl-C.
pub async fn run(group: Group, relay_key: [u8; 32], opts: RelayOptions) -> Result<()> {
    let cfg = RelayConfig {
        group_id: group.group_id,
        session_id: group.session_id,
        clients: group.clients.len() as u16,
        trustees: group.trustees.len() as u16,
        slots: group.slots.len() as u16,
        cell_len: group.cell_length,
        client_window: opts.client_window,
        trustee_window: opts.trustee_window,
        downstream_len: opts.downstream_len,
        min_clients: opts.min_clients.min(group.clients.len() as u16),
        idle_gap: dissent_core::Duration::from_micros(opts.idle_gap.as_micros() as u64),
        exchange_timeout: dissent_core::Duration::from_micros(
            opts.exchange_timeout.as_micros() as u64
        ),
        // Seconds since the epoch keep interval numbers fresh across restarts.
        first_interval: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0),
    };
    let mut relay = Relay::new(cfg, vec![0u8; cfg.storage_len()])
        .map_err(|e| anyhow::anyhow!("relay configuration: {e}"))?;
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    info!(
        "relay listening on {} ({} clients, {} trustees, cell {} bytes, exit {})",
        listener.local_addr()?,
        cfg.clients,
        cfg.trustees,
        cfg.cell_len,
        opts.exit
    );

    let mut members: Vec<([u8; 32], PeerId)> = Vec::new();
    for (i, c) in group.clients.iter().enumerate() {
        members.push((c.key, PeerId::Client(i as u16)));
    }
    for (j, t) in group.trustees.iter().enumerate() {
        members.push((t.key, PeerId::Trustee(j as u16)));
    }
    let auth = std::sync::Arc::new(LinkAuth {
        relay_key,
        group_id: group.group_id,
        session_id: group.session_id,
        members,
    });
    let origin = tokio::time::Instant::now();
    let (ev_tx, mut ev_rx) = mpsc::channel::<LinkEvent>(4096);
    let mut links: HashMap<u64, Link> = HashMap::new();
    let mut by_peer: HashMap<PeerId, u64> = HashMap::new();
    let mut next_token = 0u64;
    let mut exits = Exits::new(
        opts.exit.clone(),
        opts.exit_policy,
        opts.downstream_len,
        opts.exit_idle,
    );
    let mut out = vec![0u8; cfg.max_frame_len()];
    let stats_every = Duration::from_secs(opts.stats_every.max(1));
    let mut stats = tokio::time::interval_at(origin + stats_every, stats_every);
    let mut last = (origin, 0u64, 0u64, 0u64);
    let shutdown = net::shutdown_signal();
    tokio::pin!(shutdown);

    loop {
        let timeout = relay.poll_timeout().map(|t| net::tokio_at(origin, t));
        tokio::select! {
            _ = &mut shutdown => {
                info!("relay shutting down");
                break;
            }
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, addr)) => {
                        // Links still in their handshake are bounded, so a flood of idle
                        // connections cannot exhaust the relay; members retry.
                        let pending = links.values().filter(|l| l.peer.is_none()).count();
                        if pending >= MAX_PENDING_LINKS {
                            warn!("refusing link from {addr}: {pending} links already in their handshake");
                            continue;
                        }
                        next_token += 1;
                        let link = spawn_link(next_token, stream, addr, auth.clone(), ev_tx.clone());
                        links.insert(next_token, link);
                    }
                    Err(e) => {
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            Some(ev) = ev_rx.recv() => {
                let now = net::core_now(origin);
                handle_link_event(&mut relay, &mut links, &mut by_peer, now, ev);
                // Take whatever else already arrived before driving the core, so a burst
                // of cells costs one round of transmissions, not one per cell.
                for _ in 0..256 {
                    let Ok(ev) = ev_rx.try_recv() else { break };
                    handle_link_event(&mut relay, &mut links, &mut by_peer, now, ev);
                }
            }
            Some(chunk) = exits.down_rx.recv(), if exits.pending.is_none() => {
                exits.pending = Some(chunk);
            }
            _ = async { tokio::time::sleep_until(timeout.unwrap_or_else(tokio::time::Instant::now)).await }, if timeout.is_some() => {
                relay.handle_timeout(net::core_now(origin));
            }
            _ = stats.tick() => {
                let now = tokio::time::Instant::now();
                let secs = (now - last.0).as_secs_f64().max(1e-6);
                let ex = relay.exchanges_decoded();
                let refused = exits.policy.refused();
                info!(
                    "{:.0} exchanges/s, up {}/s, down {}/s, {} clients, {} trustees{}{}",
                    (ex - last.1) as f64 / secs,
                    human((exits.up_bytes - last.2) as f64 / secs),
                    human((exits.down_bytes - last.3) as f64 / secs),
                    relay.connected_clients().len(),
                    relay.connected_trustees(),
                    relay.interval().map(|(i, o)| format!(", interval {i} with {} clients", o.len())).unwrap_or_default(),
                    if refused > 0 { format!(", {refused} refused by exit policy (allow with --allow-private-exit)") } else { String::new() },
                );
                last = (now, ex, exits.up_bytes, exits.down_bytes);
            }
        }
        drive(
            &mut relay,
            origin,
            &mut exits,
            &mut out,
            &mut links,
            &mut by_peer,
        );
    }
    Ok(())
}

/// Applies one event of a link to the core and the link tables.
fn handle_link_event(
    relay: &mut Relay<Vec<u8>>,
    links: &mut HashMap<u64, Link>,
    by_peer: &mut HashMap<PeerId, u64>,
    now: dissent_core::Instant,
    ev: LinkEvent,
) {
    match ev {
        LinkEvent::Admitted(token, peer) => {
            if let Some(link) = links.get_mut(&token) {
                link.admitted = Some(peer);
            }
        }
        LinkEvent::Frame(token, body) => {
            let Some(link) = links.get_mut(&token) else {
                return;
            };
            match link.peer {
                None => {
                    match relay.check_hello(&body).and_then(|p| {
                        if link.admitted == Some(p) {
                            relay.handle_hello(now, &body)
                        } else {
                            Ok(p)
                        }
                    }) {
                        Ok(peer) if link.admitted != Some(peer) => {
                            warn!("rejecting link from {}: authenticated as {:?} but says it is {peer}", link.addr, link.admitted);
                            drop_link(links, by_peer, relay, now, token);
                        }
                        Ok(peer) => {
                            link.peer = Some(peer);
                            info!("{peer} connected from {}", link.addr);
                            if let Some(old) = by_peer.insert(peer, token) {
                                if let Some(l) = links.remove(&old) {
                                    info!("{peer}: new link replaces the old one");
                                    l.reader.abort();
                                }
                            }
                        }
                        Err(e) => {
                            warn!("rejecting link from {}: {e}", link.addr);
                            drop_link(links, by_peer, relay, now, token);
                        }
                    }
                }
                Some(peer) => {
                    if let Err(e) = relay.handle_frame(now, peer, &body) {
                        warn!("dropping {peer}: {e}");
                        drop_link(links, by_peer, relay, now, token);
                    }
                }
            }
        }
        LinkEvent::Closed(token, reason) => {
            if let Some(link) = links.get(&token) {
                match link.peer {
                    Some(peer) => info!("{peer} disconnected: {reason}"),
                    None if reason.starts_with("rejected") => {
                        warn!("link from {} {reason}", link.addr)
                    }
                    None => debug!("link from {} closed: {reason}", link.addr),
                }
            }
            drop_link(links, by_peer, relay, now, token);
        }
    }
}

/// Drains the core's events and frames after an input.
fn drive(
    relay: &mut Relay<Vec<u8>>,
    origin: tokio::time::Instant,
    exits: &mut Exits,
    out: &mut [u8],
    links: &mut HashMap<u64, Link>,
    by_peer: &mut HashMap<PeerId, u64>,
) {
    loop {
        let now = net::core_now(origin);
        let mut evict = Vec::new();
        while let Some(ev) = relay.poll_event(now) {
            match ev {
                RelayEvent::Upstream { conn, open, data } => exits.upstream(conn, open, data),
                RelayEvent::Close { conn } => exits.close(conn),
                RelayEvent::Garbled { interval, exchange } => {
                    warn!("exchange {exchange} of interval {interval} decoded to garbage (disruption or bug)")
                }
                RelayEvent::IntervalStarted { interval, clients } => {
                    info!("interval {interval} started with {clients} clients")
                }
                RelayEvent::IntervalEnded { interval, done } => {
                    debug!("interval {interval} ended after {done} exchanges")
                }
                RelayEvent::Evict { peer } => evict.push(peer),
                _ => {}
            }
        }
        for peer in evict {
            if let Some(&token) = by_peer.get(&peer) {
                warn!("dropping {peer}: no answer within the exchange timeout");
                drop_link(links, by_peer, relay, now, token);
            }
        }
        let mut sent = false;
        loop {
            let t = match relay.poll_transmit(now, out, exits) {
                Ok(Some(t)) => t,
                Ok(None) => break,
                Err(e) => {
                    warn!("cannot encode a frame: {e}");
                    break;
                }
            };
            sent = true;
            let frame = Bytes::copy_from_slice(&out[..t.len]);
            // Peers whose queue is full; allocated only if there are any.
            let mut slow = Vec::new();
            let mut send = |peer: PeerId| {
                if let Some(link) = by_peer.get(&peer).and_then(|t| links.get(t)) {
                    if link.tx.try_send(frame.clone()).is_err() {
                        slow.push(peer);
                    }
                }
            };
            match t.destination {
                Destination::Trustees => {
                    for j in 0..relay.trustee_count() {
                        send(PeerId::Trustee(j));
                    }
                }
                Destination::Clients(set) => {
                    for i in set.iter() {
                        send(PeerId::Client(i as u16));
                    }
                }
            }
            for peer in slow {
                if let Some(&token) = by_peer.get(&peer) {
                    warn!("dropping {peer}: not reading its link");
                    drop_link(links, by_peer, relay, now, token);
                }
            }
        }
        // Dropping peers may end an interval and produce more events.
        if !sent {
            break;
        }
    }
}

fn drop_link(
    links: &mut HashMap<u64, Link>,
    by_peer: &mut HashMap<PeerId, u64>,
    relay: &mut Relay<Vec<u8>>,
    now: dissent_core::Instant,
    token: u64,
) {
    if let Some(link) = links.remove(&token) {
        link.reader.abort();
        if let Some(peer) = link.peer {
            if by_peer.get(&peer) == Some(&token) {
                by_peer.remove(&peer);
                relay.handle_disconnected(now, peer);
            }
        }
    }
}

/// What the relay needs to run handshakes.
struct LinkAuth {
    relay_key: [u8; 32],
    group_id: [u8; 16],
    session_id: [u8; 16],
    members: Vec<([u8; 32], PeerId)>,
}

fn spawn_link(
    token: u64,
    stream: TcpStream,
    addr: SocketAddr,
    auth: std::sync::Arc<LinkAuth>,
    ev: mpsc::Sender<LinkEvent>,
) -> Link {
    let _ = stream.set_nodelay(true);
    let (tx, rx) = mpsc::channel(net::SEND_QUEUE);
    let reader = tokio::spawn(async move {
        let (r, w) = stream.into_split();
        let accepted = link::accept(
            r,
            w,
            &auth.relay_key,
            &auth.group_id,
            &auth.session_id,
            |k| auth.members.iter().find(|(m, _)| m == k).map(|(_, p)| *p),
        )
        .await;
        let (peer, mut frames, writer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                let _ = ev
                    .send(LinkEvent::Closed(
                        token,
                        format!("rejected in the handshake: {e}"),
                    ))
                    .await;
                return;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = writer.run(rx).await {
                debug!("write to {addr} failed: {e}");
            }
        });
        if ev.send(LinkEvent::Admitted(token, peer)).await.is_err() {
            return;
        }
        let reason = match frames.next_within(HELLO_TIMEOUT).await {
            Ok(Some(hello)) => {
                if ev.send(LinkEvent::Frame(token, hello)).await.is_err() {
                    return;
                }
                loop {
                    match frames.next().await {
                        Ok(Some(body)) => {
                            if ev.send(LinkEvent::Frame(token, body)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break "closed by peer".to_string(),
                        Err(e) => break e.to_string(),
                    }
                }
            }
            Ok(None) => "closed before hello".to_string(),
            Err(e) => e.to_string(),
        };
        let _ = ev.send(LinkEvent::Closed(token, reason)).await;
    });
    Link {
        admitted: None,
        peer: None,
        addr,
        tx,
        reader: reader.abort_handle(),
    }
}

/// Formats a byte rate.
pub fn human(bytes_per_sec: f64) -> String {
    if bytes_per_sec >= 1e6 {
        format!("{:.1} MB", bytes_per_sec / 1e6)
    } else if bytes_per_sec >= 1e3 {
        format!("{:.1} kB", bytes_per_sec / 1e3)
    } else {
        format!("{bytes_per_sec:.0} B")
    }
}
