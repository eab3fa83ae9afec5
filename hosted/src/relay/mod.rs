//! `dissent relay`: the hub. Accepts links, drives the core relay, runs the exit.
//!
//! Every link has a reader task (Noise handshake, then frames in) and a writer task (frames
//! out, batched into records); the main task owns the core relay, the admission policy and
//! the exits, and only moves events between them. With `--status` it also keeps the
//! status page's board ([`status`]) and publishes it once a second.

pub mod admission;
mod events;
mod links;
pub mod refusals;
mod report;
pub mod status;
pub mod timing;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use dissent_core::relay::{
    Destination, Exclusion, HelloOutcome, LinkId, Peer, PeerId, ProbeOutcome, Relay, RelayConfig,
    RelayEvent, RelayStorage, StallConfig, Waiting,
};
use dissent_core::wire::GoodbyeReason;
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use self::admission::{Admission, Limits, Verdict};
use self::links::{spawn_link, Link, LinkAuth, LinkEvent};
pub use self::report::human;
use self::report::{unix_ms, Reported, Snapshot, StatusFeed};
use self::status::{Board, Counters, ExchangeProbe, ExitFigures, Online, RelayInfo};
use self::timing::ResponseTimes;
use crate::clock;
use crate::config::addr::HostPort;
use crate::config::Group;
use crate::console::count;
use crate::exit::connections::{ExitConnections, ExitLimits};
use crate::exit::{ExitKind, ExitPolicy};
use crate::process;
use crate::setup::Leaving;

/// Options of the relay beyond the group configuration.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Address to listen on for clients and trustees.
    pub listen: SocketAddr,
    /// Where decoded connections go.
    pub exit: ExitKind,
    /// Which destinations the SOCKS5 exit may reach.
    pub exit_policy: ExitPolicy,
    /// Exchanges in flight ahead of the last decoded one.
    pub window: u16,
    /// Clients needed before an interval opens.
    pub min_clients: u16,
    /// Longest pause between exchanges while idle.
    pub idle_gap: Duration,
    /// Bytes per second of cells an idle net may cost (stretches the idle pause in large
    /// groups).
    pub idle_budget: u64,
    /// Peers silent this long in an exchange are dropped.
    pub exchange_timeout: Duration,
    /// How long newly connected clients wait for the running interval to end.
    pub join_delay: Duration,
    /// Largest downstream payload per exchange.
    pub downstream_len: usize,
    /// Seconds between stats lines.
    pub stats_every: u64,
    /// Exit connections with no traffic this long are closed.
    pub exit_idle: Duration,
    /// Open exit connections of one pseudonym slot.
    pub exit_per_slot: usize,
    /// Open exit connections in all (lowered to what the open-file limit leaves).
    pub exit_total: usize,
    /// A reservation exchange at least every this many exchanges.
    pub period: u16,
    /// Where to serve the status page, if anywhere.
    pub status: Option<HostPort>,
    /// Where to write the response times of client links ([`timing`]), if anywhere.
    pub response_times: Option<std::path::PathBuf>,
    /// The refusal list's file (`refused.json` beside the configuration), if kept.
    pub refusals: Option<std::path::PathBuf>,
    /// The least a straggler gets once all but a few clients answered.
    pub straggler_floor: Duration,
}

/// Frames a peer may have queued for sending before it counts as too slow.
const SEND_QUEUE: usize = 512;
/// Bytes of downstream log kept for clients that reconnect.
const LOG_LEN: usize = 32 * 1024 * 1024;
/// Bytes of cells one exchange may take in: cells of at most 32 KiB up to about 2,000
/// members, shorter beyond (6.5 KiB at 10,000).
const EXCHANGE_BUDGET: usize = 64 * 1024 * 1024;
/// Slots one reservation exchange admits.
const ADMIT: u16 = 64;
/// Pause after a failed accept before accepting again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
/// How long a connected node has to answer when a second process says hello as it.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

type HostRelay = Relay<Vec<Peer>, Vec<u8>>;

/// Everything the main task owns.
struct Hub {
    relay: HostRelay,
    links: HashMap<u64, Link>,
    admission: Admission<PeerId>,
    exits: ExitConnections,
    origin: tokio::time::Instant,
    out: Vec<u8>,
    /// Counters already reported to the metrics.
    reported: Reported,
    /// Handshake requests refused (unknown node key, or not for this relay's key).
    handshakes_refused: u64,
    /// The status page's board, when one is served.
    status: Option<StatusFeed>,
    /// Response times of client links, when they are measured.
    times: Option<ResponseTimes>,
    /// The refusal list, when one is kept.
    refusals: Option<refusals::Refusals>,
    /// Where blame evidence is written (the refusal list's folder), when it is kept.
    evidence_dir: Option<std::path::PathBuf>,
}

/// Runs the relay until Ctrl-C.
pub async fn run(
    group: Group,
    relay_key: [u8; 32],
    relay_dh: [u8; 32],
    opts: RelayOptions,
) -> Result<()> {
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    serve(listener, group, relay_key, relay_dh, opts).await
}

/// Runs the relay on `listener` until Ctrl-C (`opts.listen` is not used).
pub(crate) async fn serve(
    listener: TcpListener,
    group: Group,
    relay_key: [u8; 32],
    relay_dh: [u8; 32],
    opts: RelayOptions,
) -> Result<()> {
    let never = std::future::pending::<()>();
    serve_epoch(listener, group, relay_key, relay_dh, opts, never, None).await?;
    Ok(())
}

/// Longest a switch waits for the running interval's exchanges in flight.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Runs one epoch of the relay until Ctrl-C (`Ok(None)`) or until `switch` resolves: then
/// the running interval drains (its exchanges in flight finish, at most [`DRAIN_LIMIT`]),
/// every node is told `Goodbye{Switch}` and its link closed, and the switch's value is
/// returned. `leaving` are the nodes of the epoch that ended at the switch into this one,
/// if there was one: they are served that switch all through this epoch, and the pause
/// until this epoch's first decoded exchange is logged.
pub async fn run_epoch<T>(
    group: Group,
    relay_key: [u8; 32],
    relay_dh: [u8; 32],
    opts: RelayOptions,
    switch: impl std::future::Future<Output = T>,
    leaving: Option<Arc<Leaving>>,
) -> Result<Option<T>> {
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    serve_epoch(listener, group, relay_key, relay_dh, opts, switch, leaving).await
}

async fn serve_epoch<T>(
    listener: TcpListener,
    group: Group,
    relay_key: [u8; 32],
    relay_dh: [u8; 32],
    opts: RelayOptions,
    switch: impl std::future::Future<Output = T>,
    leaving: Option<Arc<Leaving>>,
) -> Result<Option<T>> {
    tokio::pin!(switch);
    let mut announced = leaving.as_ref().and_then(|l| l.found());
    let mut switched = None;
    // While a switch drains the running interval: when to end it anyway.
    let mut draining: Option<tokio::time::Instant> = None;
    let mut drained_or_late = false;
    let members_count = group.clients.len() + group.trustees.len();
    let nofile = match crate::platform::open_files::raise_limit() {
        Ok(n) => n,
        Err(e) => {
            warn!("{e}");
            1024
        }
    };
    let limits = Limits::within(nofile);
    let exit_room = limits.exit_descriptors(nofile, members_count);
    let exit_total = opts
        .exit_total
        .min(usize::try_from(exit_room).unwrap_or(usize::MAX));
    if exit_total < opts.exit_total {
        warn!(
            "the open-file limit ({nofile}) leaves room for {exit_total} exit connections, \
             fewer than the {} asked for; members always keep room to connect",
            opts.exit_total
        );
    }
    let mut epoch = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut epoch);
    let cfg = RelayConfig {
        group_id: group.group_id,
        session_id: group.session_id,
        clients: group.clients.len() as u16,
        trustees: group.trustees.len() as u16,
        slots: group.slots.len() as u16,
        cell_len: group.cell_length,
        max_cell_len: group.max_cell_length,
        window: opts.window,
        downstream_len: opts.downstream_len,
        min_clients: opts.min_clients,
        idle_gap: core_duration(opts.idle_gap),
        idle_budget: opts.idle_budget,
        exchange_budget: EXCHANGE_BUDGET,
        exchange_timeout: core_duration(opts.exchange_timeout),
        join_delay: core_duration(opts.join_delay),
        probe_timeout: core_duration(PROBE_TIMEOUT),
        period: opts.period,
        admit: ADMIT,
        capacity: crate::config::RESERVED_SLOTS,
        log_len: LOG_LEN,
        policy: group.policy,
        // Seconds since the epoch keep interval numbers fresh across restarts.
        first_interval: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0),
        epoch,
        stall: StallConfig {
            cutoff_floor: core_duration(opts.straggler_floor),
            ..StallConfig::DEFAULT
        },
    };
    // The log holds the group's log window, whatever its size.
    let cfg = RelayConfig {
        log_len: cfg.log_len.max(cfg.min_log_len()),
        ..cfg
    };
    let mut relay = Relay::new(cfg, RelayStorage::with_vecs(&cfg))
        .map_err(|e| anyhow::anyhow!("relay configuration: {e}"))?;
    relay
        .set_dh_secret(&relay_dh)
        .map_err(|e| anyhow::anyhow!("the relay's DH key: {e}"))?;
    // The key of the relay's commitments to members' cells: never written, never sent.
    let mut fingerprint_secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut fingerprint_secret);
    relay.set_fingerprint_secret(&fingerprint_secret);
    for (slot, key) in group.slots.iter().enumerate() {
        relay
            .set_pseudonym(slot as u16, key)
            .map_err(|e| anyhow::anyhow!("pseudonym key of slot {slot}: {e}"))?;
    }
    // Every node's identity and pad keys: what its blame reveals are checked with.
    let nodes = group
        .clients
        .iter()
        .zip(&group.client_session_keys)
        .enumerate()
        .map(|(i, (n, dh))| (PeerId::Client(i as u16), n, dh))
        .chain(
            group
                .trustees
                .iter()
                .zip(&group.trustee_session_keys)
                .enumerate()
                .map(|(j, (n, dh))| (PeerId::Trustee(j as u16), n, dh)),
        );
    for (peer, node, dh) in nodes {
        relay
            .set_node_keys(peer, &node.identity, dh)
            .map_err(|e| anyhow::anyhow!("keys of {peer}: {e}"))?;
    }
    let listening = listener.local_addr()?;
    info!(
        "relay listening on {listening} ({}, {}, cells {}..{} bytes, exit {}, up to {})",
        count(cfg.clients, "client"),
        count(cfg.trustees, "trustee"),
        cfg.cell_len,
        cfg.max_cell_len,
        opts.exit,
        count(exit_total as u64, "exit connection")
    );
    let status = match &opts.status {
        Some(addr) => {
            let board = Board::new(
                RelayInfo {
                    listen: listening.to_string(),
                    clients: u64::from(cfg.clients),
                    trustees: u64::from(cfg.trustees),
                    cell_length: cfg.cell_len as u64,
                    max_cell_length: cfg.max_cell_len as u64,
                    exit: opts.exit.to_string(),
                },
                unix_ms(),
            );
            let (publish, feed) = tokio::sync::watch::channel(Arc::from(board.json(unix_ms())));
            status::serve(addr, feed).await?;
            Some(StatusFeed {
                board,
                probe: ExchangeProbe::default(),
                publish,
            })
        }
        None => None,
    };

    let mut members = HashMap::new();
    for (i, c) in group.clients.iter().enumerate() {
        members.insert(c.key, PeerId::Client(i as u16));
    }
    for (j, t) in group.trustees.iter().enumerate() {
        members.insert(t.key, PeerId::Trustee(j as u16));
    }
    let mut ids = vec![(group.group_id, group.session_id)];
    if let Some(l) = &leaving {
        ids.extend_from_slice(l.ids());
    }
    let auth = Arc::new(LinkAuth {
        relay_key,
        ids,
        members,
        leaving,
    });
    let origin = tokio::time::Instant::now();
    let (ev_tx, mut ev_rx) = mpsc::channel::<LinkEvent>(4096);
    // Every link writer holds a clone; `recv` returns `None` once all have finished.
    let (writers_tx, mut writers_rx) = mpsc::channel::<()>(1);
    let mut hub = Hub {
        relay,
        links: HashMap::new(),
        admission: Admission::new(limits),
        exits: ExitConnections::new(
            opts.exit.clone(),
            opts.exit_policy.clone(),
            ExitLimits {
                per_slot: opts.exit_per_slot,
                total: exit_total,
                idle: opts.exit_idle,
                chunk: opts.downstream_len,
            },
        ),
        origin,
        out: vec![0u8; cfg.max_frame_len()],
        reported: Reported::default(),
        handshakes_refused: 0,
        status,
        times: match &opts.response_times {
            Some(path) => Some(ResponseTimes::create(path)?),
            None => None,
        },
        refusals: opts
            .refusals
            .clone()
            .map(|file| refusals::Refusals::new(file, group.clients.clone())),
        evidence_dir: opts.refusals.as_ref().map(|file| {
            file.parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default()
        }),
    };
    hub.read_refusals();
    let mut next_token = 0u64;
    let stats_every = Duration::from_secs(opts.stats_every.max(1));
    let mut stats = tokio::time::interval_at(origin + stats_every, stats_every);
    let mut last = Snapshot::take(&hub);
    let mut status_tick = tokio::time::interval_at(origin + status::PERIOD, status::PERIOD);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = process::shutdown_signal();
    tokio::pin!(shutdown);

    // Set after a failed accept: when to accept again.
    let mut accept_after: Option<tokio::time::Instant> = None;
    loop {
        let timeout = hub.relay.poll_timeout().map(|t| clock::tokio_at(origin, t));
        let adm_timeout = hub.admission.poll_timeout();
        // A member owed replays whose send queue is full: wake when it has room again.
        let room_wait = hub
            .relay
            .replay_waiting()
            .and_then(|LinkId(token)| hub.links.get(&token))
            .map(|link| (link.tx.clone(), cfg.link_reserve() + 1));
        tokio::select! {
            _ = &mut shutdown => {
                info!("relay shutting down");
                // A switch under way is dropped: the relay stops.
                switched = None;
                hub.relay.shutdown();
                hub.drive();
                break;
            }
            next = &mut switch, if switched.is_none() => {
                info!("switch: draining the running interval (no new exchange)");
                switched = Some(next);
                draining = Some(tokio::time::Instant::now() + DRAIN_LIMIT);
                hub.relay.drain(clock::core_now(origin));
            }
            _ = sleep_until(draining) => {
                warn!(
                    "switch: the running interval did not drain within {} s; ending it",
                    DRAIN_LIMIT.as_secs()
                );
                draining = None;
                drained_or_late = true;
            }
            accepted = listener.accept(), if accept_after.is_none() => {
                // Links that finished their handshake meanwhile are out of reach of eviction.
                while let Ok(ev) = ev_rx.try_recv() {
                    hub.link_event(ev);
                }
                match accepted {
                    Ok((stream, addr)) => {
                        next_token += 1;
                        hub.admission.handle_accept(std::time::Instant::now(), next_token, addr.ip());
                        let link = spawn_link(
                            next_token,
                            stream,
                            addr,
                            auth.clone(),
                            hub.admission.replays(),
                            ev_tx.clone(),
                            writers_tx.clone(),
                        );
                        hub.links.insert(next_token, link);
                        hub.close_drops();
                    }
                    Err(e) => {
                        // Out of file descriptors, say: accept again a little later, serving
                        // everything else meanwhile.
                        warn!("accept failed: {e}");
                        accept_after = Some(tokio::time::Instant::now() + ACCEPT_PAUSE);
                    }
                }
            }
            _ = sleep_until(accept_after) => accept_after = None,
            Some(ev) = ev_rx.recv() => {
                hub.link_event(ev);
                // Take whatever else already arrived before driving the core, so a burst
                // of cells costs one round of transmissions, not one per cell.
                for _ in 0..1024 {
                    let Ok(ev) = ev_rx.try_recv() else { break };
                    hub.link_event(ev);
                }
            }
            _ = hub.exits.recv(), if hub.exits.has_room() => {}
            _ = link_room(room_wait) => {}
            _ = sleep_until(timeout) => {
                hub.relay.handle_timeout(clock::core_now(origin));
            }
            _ = sleep_until_std(adm_timeout) => {
                hub.admission.handle_timeout(std::time::Instant::now());
                hub.close_drops();
            }
            _ = stats.tick() => {
                // An operator's `dissent relay admit` (or edit) takes effect here.
                hub.read_refusals();
                let now = Snapshot::take(&hub);
                hub.log_stats(&last, &now);
                last = now;
            }
            _ = status_tick.tick(), if hub.status.is_some() => hub.publish_status(),
        }
        hub.drive();
        hub.record_metrics(ev_rx.len());
        if switched.is_some() && (drained_or_late || hub.relay.drained()) {
            info!("switch announced: every node is told the epoch ends (Goodbye Switch)");
            hub.relay.shutdown_for(GoodbyeReason::Switch);
            hub.drive();
            break;
        }
        if let Some(at) = announced {
            if hub.relay.exchanges_decoded() > 0 {
                info!(
                    "switch pause: the first exchange of the new epoch decoded {:.3} s after \
                     the relay took the next version (the drain of the last interval included)",
                    at.elapsed().as_secs_f64()
                );
                announced = None;
            }
        }
    }
    // Closing every queue lets each writer flush its goodbye and end its link.
    for link in hub.links.values() {
        link.reader.abort();
    }
    if let Some(t) = &mut hub.times {
        t.flush();
    }
    drop(hub);
    drop(writers_tx);
    let _ = tokio::time::timeout(Duration::from_secs(1), writers_rx.recv()).await;
    Ok(switched)
}

impl Hub {
    /// Reads the refusal list again: clients listed are excluded, clients taken off it are
    /// let back in.
    fn read_refusals(&mut self) {
        let Some(listed) = self.refusals.as_ref().and_then(|r| r.listed()) else {
            return;
        };
        let now = clock::core_now(self.origin);
        let clients = self.relay.clients();
        for i in 0..clients {
            let on_list = listed.contains(&i);
            if on_list && !self.relay.is_excluded(i) {
                info!("client {i} is on the refusal list; refusing it");
                self.relay.exclude(now, i, Exclusion::Listed);
            } else if !on_list && self.relay.is_excluded(i) {
                info!("client {i} was taken off the refusal list; admitting it again");
                self.relay.readmit(i);
            }
        }
    }
}

fn core_duration(d: Duration) -> dissent_core::Duration {
    dissent_core::Duration::from_micros(d.as_micros() as u64)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Returns once `tx` (if any) has room for `frames` frames.
async fn link_room(wait: Option<(mpsc::Sender<Bytes>, usize)>) {
    match wait {
        Some((tx, frames)) => {
            // The permits are given back at once: only the wake-up matters.
            let _ = tx.reserve_many(frames.min(SEND_QUEUE)).await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until_std(at: Option<std::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

impl Hub {
    fn now(&self) -> dissent_core::Instant {
        clock::core_now(self.origin)
    }

    /// Closes the links the admission policy gave up on.
    fn close_drops(&mut self) {
        while let Some(d) = self.admission.poll_drop() {
            if let Some(link) = self.links.remove(&d.token) {
                debug!("dropping link from {}: {}", link.addr, d.reason);
                link.reader.abort();
                if let (Some(peer), true) = (link.peer, link.hello_done) {
                    let now = self.now();
                    self.relay.handle_link_closed(now, LinkId(d.token), peer);
                }
            }
        }
    }

    /// Applies one event of a link to the core and the link tables.
    fn link_event(&mut self, ev: LinkEvent) {
        let now = self.now();
        match ev {
            LinkEvent::Admitted {
                token,
                peer,
                ephemeral,
                max_record,
            } => {
                let verdict = self.admission.handle_handshake(
                    std::time::Instant::now(),
                    token,
                    peer,
                    ephemeral,
                );
                match verdict {
                    Verdict::Admit => {
                        if let Some(link) = self.links.get_mut(&token) {
                            link.peer = Some(peer);
                            link.max_record = Some(max_record);
                        }
                    }
                    Verdict::Refuse { reason } => {
                        crate::metrics::link_events("refused");
                        if let Some(link) = self.links.remove(&token) {
                            debug!("refusing link from {} ({peer}): {reason}", link.addr);
                            link.reader.abort();
                        }
                    }
                }
                self.close_drops();
            }
            LinkEvent::Frame(token, body, read_at) => {
                let Some(link) = self.links.get_mut(&token) else {
                    return;
                };
                let Some(peer) = link.peer else {
                    return;
                };
                if let Some(t) = &mut self.times {
                    t.read(token, peer, &body, read_at);
                }
                if !link.hello_done {
                    link.hello_done = true;
                    self.admission.handle_joined(token);
                    let addr = link.addr;
                    match self.relay.handle_hello(now, LinkId(token), peer, &body) {
                        Ok(HelloOutcome::Admitted) => {
                            crate::metrics::link_events("joined");
                            info!("{peer} connected from {addr}");
                            self.status_event(
                                "joined",
                                "info",
                                format!("{peer} connected"),
                                Some(peer),
                            );
                            self.set_record_limit(token, peer);
                        }
                        Ok(HelloOutcome::Probing) => info!(
                            "{peer}: a second process says hello from {addr}; checking whether \
                             the first one is still alive"
                        ),
                        Err(e) => warn!("refusing {peer} from {addr}: {e}"),
                    }
                } else if let Err(e) = self.relay.handle_frame(now, LinkId(token), peer, &body) {
                    warn!("dropping {peer}: {e}");
                }
            }
            LinkEvent::HandshakeRefused(token, reason) => {
                self.handshakes_refused += 1;
                self.status_event(
                    "refused",
                    "warn",
                    "a handshake was refused (a node of another configuration?)".into(),
                    None,
                );
                crate::metrics::link_events("handshake_refused");
                self.link_event(LinkEvent::Closed(token, reason));
            }
            LinkEvent::Closed(token, reason) => {
                self.admission.handle_closed(token);
                if let Some(t) = &mut self.times {
                    t.closed(token);
                }
                if let Some(link) = self.links.remove(&token) {
                    match (link.peer, link.hello_done) {
                        (Some(peer), true) => {
                            if self.relay.link_of(peer) == Some(LinkId(token)) {
                                crate::metrics::link_events("lost");
                                info!("{peer} disconnected: {reason}");
                                self.status_event(
                                    "left",
                                    "info",
                                    format!("{peer} disconnected: {reason}"),
                                    Some(peer),
                                );
                            }
                            self.relay.handle_link_closed(now, LinkId(token), peer);
                        }
                        _ => debug!("link from {} closed: {reason}", link.addr),
                    }
                }
            }
        }
    }

    /// Seals records no larger than the frame limit the peer declared.
    fn set_record_limit(&mut self, token: u64, peer: PeerId) {
        let limit = self.relay.max_frame_of(peer);
        if let (Some(link), Some(limit)) = (self.links.get(&token), limit) {
            if let Some(m) = &link.max_record {
                m.store(limit as usize, Ordering::Relaxed);
            }
        }
    }
}
