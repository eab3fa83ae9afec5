//! `dissent bench`: how fast the DC-net runs on this machine. Prints numbers, never verdicts.
//!
//! - `dissent bench core` measures the protocol's CPU cost. A `dissent_core` relay, N clients
//!   and M trustees (real X25519 keys, so real pads) are wired together in this process with
//!   no sockets, no latency and a clock that never moves (`idle_gap` 0, a one-hour
//!   `exchange_timeout`). Every client keeps its slot full, so every cell carries data. It
//!   reports exchanges per second, decoded upstream MB/s, and nanoseconds per exchange spent
//!   in the calls of each role (all clients together, all trustees together, the relay) and
//!   in the harness around them (frame copies, the byte check). This is the number to compare
//!   across code changes. Each timed call also pays about one clock read (~20 ns).
//! - `dissent bench net` measures the real binary over loopback. It writes a configuration
//!   into a temporary folder, starts this executable as relay (with the echo exit), trustees
//!   and clients, waits until a byte makes it through the DC-net, then measures the
//!   round-trip time of small pings through client 0 and the throughput of K connections
//!   streaming pattern data into the echo exit and reading it back (checked byte for byte).
//!   Children log warnings to files in the temporary folder, which is kept (and named) only
//!   if something fails. They are stopped with SIGTERM, then killed after 5 s.
//! - `dissent bench` runs `core`, then `net`, with their defaults.
//!
//! The summary is `key: value` lines on stdout; progress goes to stderr and only when it is
//! a terminal. Every phase is bounded in time, and Ctrl-C stops early (children included).
//! Timings on a shared machine drift with everyone else's load: compare builds or settings
//! as ratios of numbers taken in one run (or in runs interleaved close together), not
//! against numbers from another day.

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::{Args, Subcommand};
use dissent_core::client::{Chunk, Client, ClientConfig, ClientEvent, ConnId, Upstream};
use dissent_core::relay::{Destination, NoDownstream, PeerId, Relay, RelayConfig, RelayEvent};
use dissent_core::trustee::{Trustee, TrusteeConfig};
use dissent_core::wire;
use dissent_core::OnlineSet;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use rand::seq::SliceRandom;
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio::task::JoinSet;

use crate::config;
use crate::net;

const CORE_CLIENTS: usize = 10;
const CORE_TRUSTEES: usize = 3;
const CORE_EXCHANGES: u64 = 20_000;
const NET_CLIENTS: usize = 3;
const NET_TRUSTEES: usize = 2;
const NET_BYTES: u64 = 8 << 20;
const NET_CONNECTIONS: usize = 2;
const NET_PINGS: usize = 200;
const NET_TIMEOUT_SECS: u64 = 120;
const CELL_LENGTH: usize = config::DEFAULT_CELL_LENGTH;

/// Bound on waiting for the DC-net to carry its first byte.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the whole ping phase.
const PING_PHASE: Duration = Duration::from_secs(60);
/// Bound on one ping.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes in one ping.
const PING_LEN: usize = 32;
/// Time children get between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Largest write or read of one throughput connection.
const IO_CHUNK: usize = 16 * 1024;
/// Length of the pattern every checked byte stream is cut from (a prime, so streams at
/// different offsets do not line up).
const PATTERN_LEN: usize = 65_521;

/// Arguments of `dissent bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Protocol CPU cost: every role in this process, in memory, no sockets.
    Core(CoreArgs),
    /// The real binary over loopback: ping latency and echo throughput.
    Net(NetArgs),
}

/// Arguments of `dissent bench core`.
#[derive(Args, Debug, Clone)]
struct CoreArgs {
    /// Clients (each keeps its slot full).
    #[arg(long, default_value_t = CORE_CLIENTS)]
    clients: usize,
    /// Trustees.
    #[arg(long, default_value_t = CORE_TRUSTEES)]
    trustees: usize,
    /// Cell length in bytes.
    #[arg(long, default_value_t = CELL_LENGTH)]
    cell_length: usize,
    /// Exchanges to time (after a short warm-up).
    #[arg(long, default_value_t = CORE_EXCHANGES)]
    exchanges: u64,
}

impl Default for CoreArgs {
    fn default() -> Self {
        CoreArgs {
            clients: CORE_CLIENTS,
            trustees: CORE_TRUSTEES,
            cell_length: CELL_LENGTH,
            exchanges: CORE_EXCHANGES,
        }
    }
}

/// Arguments of `dissent bench net`.
#[derive(Args, Debug, Clone)]
struct NetArgs {
    /// Clients.
    #[arg(long, default_value_t = NET_CLIENTS)]
    clients: usize,
    /// Trustees.
    #[arg(long, default_value_t = NET_TRUSTEES)]
    trustees: usize,
    /// Cell length in bytes.
    #[arg(long, default_value_t = CELL_LENGTH)]
    cell_length: usize,
    /// Bytes echoed in the throughput phase, over all connections (suffixes k, M, KiB, MiB).
    #[arg(long, default_value = "8MiB", value_parser = parse_bytes)]
    bytes: u64,
    /// Connections in the throughput phase, spread over the clients.
    #[arg(long, default_value_t = NET_CONNECTIONS)]
    connections: usize,
    /// Sequential 32-byte ping-pongs through client 0.
    #[arg(long, default_value_t = NET_PINGS)]
    pings: usize,
    /// Seconds the throughput phase may take before partial numbers are reported.
    #[arg(long, default_value_t = NET_TIMEOUT_SECS)]
    timeout: u64,
    /// Also print the result as one Markdown table row, for release notes.
    #[arg(long)]
    release_note: bool,
    /// Extra argument for the relay, repeatable (e.g. `--relay-arg=--client-window=8`).
    #[arg(long = "relay-arg", allow_hyphen_values = true)]
    relay_args: Vec<String>,
}

impl Default for NetArgs {
    fn default() -> Self {
        NetArgs {
            clients: NET_CLIENTS,
            trustees: NET_TRUSTEES,
            cell_length: CELL_LENGTH,
            bytes: NET_BYTES,
            connections: NET_CONNECTIONS,
            pings: NET_PINGS,
            timeout: NET_TIMEOUT_SECS,
            release_note: false,
            relay_args: Vec::new(),
        }
    }
}

/// Parses a byte count such as `8388608`, `512k`, `8M`, `8MiB`.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        u => return Err(format!("unknown unit {u:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Runs the benchmark mode chosen on the command line.
pub async fn run(args: BenchArgs) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this dissent was built without --release; its numbers mean little");
    }
    println!("bench.build: {}", build_kind());
    match args.mode {
        Some(Mode::Core(a)) => {
            run_core(a).await?;
        }
        Some(Mode::Net(a)) => {
            run_net(&a).await?;
        }
        None => {
            if run_core(CoreArgs::default()).await? == Finish::Complete {
                run_net(&NetArgs::default()).await?;
            }
        }
    }
    Ok(())
}

fn build_kind() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// How a mode ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    Complete,
    Interrupted,
}

// ---------------------------------------------------------------------------------------
// Progress and statistics

/// A progress bar on stderr, or a hidden one when stderr is not a terminal.
fn progress(len: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0}/s", s.per_sec());
        })
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(10))
        .with_style(style)
}

/// A spinner on stderr for waits of unknown length, hidden when stderr is not a terminal.
fn spinner(msg: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10))
        .with_message(msg);
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64().max(1e-9)
}

/// Checked byte streams: stream offset `k` is byte `k mod PATTERN_LEN` of one fixed buffer.
struct Pattern(Vec<u8>);

impl Pattern {
    fn new() -> Pattern {
        // xorshift64: deterministic, no runs, cheap.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        Pattern(
            (0..PATTERN_LEN)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 32) as u8
                })
                .collect(),
        )
    }

    /// Where stream `id` starts in the pattern.
    fn origin(id: u64) -> u64 {
        id.wrapping_mul(7919) % PATTERN_LEN as u64
    }

    /// Writes the stream bytes at `offset` into `out`.
    fn fill(&self, offset: u64, out: &mut [u8]) {
        let mut at = (offset % PATTERN_LEN as u64) as usize;
        let mut done = 0;
        while done < out.len() {
            let n = (out.len() - done).min(PATTERN_LEN - at);
            out[done..done + n].copy_from_slice(&self.0[at..at + n]);
            done += n;
            at = 0;
        }
    }

    /// Whether `data` equals the stream bytes at `offset`.
    fn matches(&self, offset: u64, data: &[u8]) -> bool {
        let mut at = (offset % PATTERN_LEN as u64) as usize;
        let mut done = 0;
        while done < data.len() {
            let n = (data.len() - done).min(PATTERN_LEN - at);
            if data[done..done + n] != self.0[at..at + n] {
                return false;
            }
            done += n;
            at = 0;
        }
        true
    }
}

// ---------------------------------------------------------------------------------------
// core mode

/// Time spent inside each role's calls.
#[derive(Debug, Default, Clone, Copy)]
struct RoleTimes {
    client: Duration,
    trustee: Duration,
    relay: Duration,
}

/// Where a queued frame body goes.
#[derive(Debug, Clone, Copy)]
enum To {
    Relay(PeerId),
    Client(usize),
    Trustee(usize),
}

/// One client's application: a single connection that always has more bytes to send.
struct Source {
    conn: ConnId,
    stream: u64,
    offset: u64,
    /// Stop after this many bytes (`None`: never).
    limit: Option<u64>,
    pattern: Rc<Pattern>,
}

impl Upstream for Source {
    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<Chunk> {
        let left = self.limit.map_or(u64::MAX, |l| l - self.offset);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 {
            return None;
        }
        self.pattern
            .fill(Pattern::origin(self.stream) + self.offset, &mut buf[..n]);
        self.offset += n as u64;
        Some(Chunk::Data {
            conn: self.conn,
            len: n,
        })
    }
}

/// The relay's exit in core mode: checks every decoded byte against what was supplied.
#[derive(Default)]
struct Sink {
    /// Conn# to (stream id, bytes received).
    streams: HashMap<u32, (u64, u64)>,
    total: u64,
    mismatches: u64,
    garbled: u64,
    /// Time spent checking, to be taken out of the relay's share.
    time: Duration,
}

impl Sink {
    fn take(&mut self, pattern: &Pattern, conn: u32, data: &[u8]) {
        match self.streams.get_mut(&conn) {
            Some((stream, got)) => {
                if !pattern.matches(Pattern::origin(*stream) + *got, data) {
                    self.mismatches += 1;
                }
                *got += data.len() as u64;
                self.total += data.len() as u64;
            }
            None => self.mismatches += 1,
        }
    }
}

/// Who receives a staged frame.
#[derive(Debug, Clone, Copy)]
enum Route {
    Relay(PeerId),
    Trustees,
    Clients(OnlineSet),
}

/// Frames written during one timed delivery, queued only after the clock is read.
///
/// Roles write straight into `bytes` at increasing offsets, so a whole delivery (handle
/// the frame, drain events, drain frames) costs two clock reads and no copies.
struct Staged {
    bytes: Vec<u8>,
    used: usize,
    /// Room every role needs for one frame.
    frame_room: usize,
    frames: Vec<(Route, usize, usize)>,
}

impl Staged {
    fn new(frame_room: usize) -> Staged {
        Staged {
            bytes: vec![0u8; frame_room * 16],
            used: 0,
            frame_room,
            frames: Vec::with_capacity(64),
        }
    }

    /// Space for the next frame (grows once in a while, never shrinks).
    fn room(&mut self) -> &mut [u8] {
        if self.bytes.len() < self.used + self.frame_room {
            self.bytes.resize(self.used + self.frame_room, 0);
        }
        &mut self.bytes[self.used..]
    }

    /// Records that `len` bytes were written into [`Staged::room`].
    fn push(&mut self, route: Route, len: usize) {
        self.frames.push((route, self.used, len));
        self.used += len;
    }
}

/// A relay, N clients and M trustees wired together in memory with zero latency.
struct CoreNet {
    now: dissent_core::Instant,
    relay: Relay<Vec<u8>>,
    clients: Vec<Client<Vec<u8>>>,
    sources: Vec<Source>,
    trustees: Vec<Trustee>,
    /// Whether each client (then each trustee) has sent its Hello.
    greeted: Vec<bool>,
    queue: VecDeque<(To, Rc<[u8]>)>,
    staged: Staged,
    pattern: Rc<Pattern>,
    sink: Sink,
    times: RoleTimes,
}

fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    k
}

/// The body of a frame a role just emitted.
fn body_of(frame: &[u8]) -> Result<Rc<[u8]>> {
    match wire::split_frame(frame) {
        Ok(Some((body, _))) => Ok(Rc::from(body)),
        _ => bail!("a role emitted a malformed frame"),
    }
}

impl CoreNet {
    /// Builds the roles (one connection per client, `limit` bytes each) and connects them.
    fn new(n: usize, m: usize, cell_len: usize, limit: Option<u64>) -> Result<CoreNet> {
        ensure!(
            (1..=dissent_core::MAX_CLIENTS).contains(&n),
            "clients must be between 1 and {}",
            dissent_core::MAX_CLIENTS
        );
        ensure!(
            (1..=dissent_core::MAX_TRUSTEES).contains(&m),
            "trustees must be between 1 and {}",
            dissent_core::MAX_TRUSTEES
        );
        ensure!(
            dissent_core::cell_length_ok(cell_len),
            "cell length must be between {} and {} bytes",
            dissent_core::MIN_CELL_LENGTH,
            dissent_core::MAX_CELL_LENGTH
        );
        let group_id: [u8; 16] = random_key()[..16].try_into()?;
        let session_id: [u8; 16] = random_key()[..16].try_into()?;
        let client_secrets: Vec<_> = (0..n).map(|_| random_key()).collect();
        let trustee_secrets: Vec<_> = (0..m).map(|_| random_key()).collect();
        let client_pubs: Vec<_> = client_secrets
            .iter()
            .map(dissent_core::crypto::public_key)
            .collect();
        let trustee_pubs: Vec<_> = trustee_secrets
            .iter()
            .map(dissent_core::crypto::public_key)
            .collect();
        let mut slots: Vec<u16> = (0..n as u16).collect();
        slots.shuffle(&mut rand::thread_rng());
        let cfg = RelayConfig {
            group_id,
            session_id,
            clients: n as u16,
            trustees: m as u16,
            slots: n as u16,
            cell_len,
            // The hosted relay's defaults.
            client_window: 3,
            trustee_window: 8,
            downstream_len: 4096,
            min_clients: n as u16,
            idle_gap: dissent_core::Duration::from_micros(0),
            exchange_timeout: dissent_core::Duration::from_millis(3_600_000),
            first_interval: 1,
        };
        let relay = Relay::new(cfg, vec![0u8; cfg.storage_len()])
            .map_err(|e| anyhow!("relay configuration: {e}"))?;
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let c = Client::new(
                &ClientConfig {
                    index: i as u16,
                    group_id,
                    session_id,
                    session_secret: client_secrets[i],
                    trustee_keys: &trustee_pubs,
                    slot: slots[i],
                    slots: n as u16,
                    cell_len,
                    rng_seed: random_key(),
                },
                // As many unconfirmed cells as the hosted client keeps.
                vec![0u8; cell_len * 16],
            )
            .map_err(|e| anyhow!("client configuration: {e}"))?;
            clients.push(c);
        }
        let mut trustees = Vec::with_capacity(m);
        for (j, secret) in trustee_secrets.iter().enumerate() {
            let t = Trustee::new(&TrusteeConfig {
                index: j as u16,
                group_id,
                session_id,
                session_secret: *secret,
                client_keys: &client_pubs,
                cell_len,
                rng_seed: random_key(),
                min_clients: 1,
            })
            .map_err(|e| anyhow!("trustee configuration: {e}"))?;
            trustees.push(t);
        }
        let pattern = Rc::new(Pattern::new());
        let mut sink = Sink::default();
        let mut sources = Vec::with_capacity(n);
        for (i, c) in clients.iter_mut().enumerate() {
            let conn = c
                .open()
                .map_err(|e| anyhow!("cannot open a connection: {e}"))?;
            sink.streams.insert(conn, (i as u64, 0));
            sources.push(Source {
                conn,
                stream: i as u64,
                offset: 0,
                limit,
                pattern: pattern.clone(),
            });
        }
        let frame_room = cfg
            .max_frame_len()
            .max(cell_len + 256)
            .max(wire::MAX_CONTROL_FRAME);
        let mut net = CoreNet {
            now: dissent_core::Instant::from_micros(1_000_000),
            relay,
            clients,
            sources,
            trustees,
            greeted: vec![false; n + m],
            queue: VecDeque::new(),
            staged: Staged::new(frame_room),
            pattern,
            sink,
            times: RoleTimes::default(),
        };
        for j in 0..m {
            net.trustees[j].handle_connected(net.now);
            net.trustee_frames(j)?;
            net.queue_staged()?;
        }
        for i in 0..n {
            net.clients[i].handle_connected(net.now);
            net.client_frames(i)?;
            net.queue_staged()?;
        }
        Ok(net)
    }

    fn decoded(&self) -> u64 {
        self.relay.exchanges_decoded()
    }

    /// Delivers the oldest queued frame; false when nothing is queued.
    fn step(&mut self) -> Result<bool> {
        let Some((to, body)) = self.queue.pop_front() else {
            return Ok(false);
        };
        match to {
            To::Relay(peer) => self.deliver_to_relay(peer, &body)?,
            To::Client(i) => self.deliver_to_client(i, &body)?,
            To::Trustee(j) => self.deliver_to_trustee(j, &body)?,
        }
        Ok(true)
    }

    /// Runs until `done` holds; fails if the net stalls or after `max_steps` deliveries.
    #[cfg(test)]
    fn run_until(&mut self, max_steps: u64, mut done: impl FnMut(&CoreNet) -> bool) -> Result<()> {
        for _ in 0..max_steps {
            if done(self) {
                return Ok(());
            }
            ensure!(
                self.step()?,
                "the in-memory net stalled at exchange {}",
                self.decoded()
            );
        }
        bail!("condition not reached in {max_steps} deliveries")
    }

    /// Runs until `target` exchanges are decoded or `stop` is set; true if the target was met.
    fn drive(
        &mut self,
        target: u64,
        stop: &AtomicBool,
        pb: &ProgressBar,
        base: u64,
    ) -> Result<bool> {
        let mut steps = 0u32;
        while self.decoded() < target {
            ensure!(
                self.step()?,
                "the in-memory net stalled at exchange {}",
                self.decoded()
            );
            steps = steps.wrapping_add(1);
            if steps % 512 == 0 {
                if stop.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                pb.set_position(self.decoded().saturating_sub(base));
            }
        }
        Ok(true)
    }

    /// Moves the staged frames into the delivery queue.
    fn queue_staged(&mut self) -> Result<()> {
        for &(route, at, len) in &self.staged.frames {
            let body = body_of(&self.staged.bytes[at..at + len])?;
            match route {
                Route::Relay(peer) => self.queue.push_back((To::Relay(peer), body)),
                Route::Trustees => {
                    for j in 0..self.trustees.len() {
                        self.queue.push_back((To::Trustee(j), body.clone()));
                    }
                }
                Route::Clients(set) => {
                    for i in set.iter() {
                        self.queue.push_back((To::Client(i), body.clone()));
                    }
                }
            }
        }
        self.staged.frames.clear();
        self.staged.used = 0;
        Ok(())
    }

    fn deliver_to_relay(&mut self, peer: PeerId, body: &[u8]) -> Result<()> {
        let k = match peer {
            PeerId::Client(i) => usize::from(i),
            PeerId::Trustee(j) => self.clients.len() + usize::from(j),
        };
        let t = Instant::now();
        let r = if self.greeted[k] {
            self.relay
                .handle_frame(self.now, peer, body)
                .map_err(|e| anyhow!("the relay refused a frame from {peer}: {e}"))
        } else {
            match self.relay.handle_hello(self.now, body) {
                Ok(p) if p == peer => Ok(()),
                Ok(p) => Err(anyhow!("{peer} sent a hello naming {p}")),
                Err(e) => Err(anyhow!("the relay refused the hello of {peer}: {e}")),
            }
        };
        let r = r.and_then(|()| self.relay_outputs());
        let spent = t.elapsed();
        let checked = std::mem::take(&mut self.sink.time);
        self.times.relay += spent.saturating_sub(checked);
        r?;
        self.greeted[k] = true;
        self.queue_staged()
    }

    /// Drains the relay's events (checking decoded bytes) and stages its frames.
    fn relay_outputs(&mut self) -> Result<()> {
        while let Some(ev) = self.relay.poll_event(self.now) {
            match ev {
                RelayEvent::Upstream { conn, data, .. } => {
                    // The check is the harness's cost, not the relay's.
                    let t = Instant::now();
                    self.sink.take(&self.pattern, conn, data);
                    self.sink.time += t.elapsed();
                }
                RelayEvent::Garbled { .. } => self.sink.garbled += 1,
                RelayEvent::Evict { peer } => bail!("the relay evicted {peer}"),
                _ => {}
            }
        }
        loop {
            let out = self.staged.room();
            let sent = self
                .relay
                .poll_transmit(self.now, out, &mut NoDownstream)
                .map_err(|e| anyhow!("the relay cannot encode a frame: {e}"))?;
            let Some(tx) = sent else { return Ok(()) };
            let route = match tx.destination {
                Destination::Trustees => Route::Trustees,
                Destination::Clients(set) => Route::Clients(set),
            };
            self.staged.push(route, tx.len);
        }
    }

    fn deliver_to_client(&mut self, i: usize, body: &[u8]) -> Result<()> {
        let t = Instant::now();
        let r = match self.clients[i].handle_frame(self.now, body) {
            Ok(_) => self.client_frames(i),
            Err(e) => Err(anyhow!("client {i} refused a frame: {e}")),
        };
        self.times.client += t.elapsed();
        r?;
        self.queue_staged()
    }

    /// Drains a client's events and stages its frames.
    fn client_frames(&mut self, i: usize) -> Result<()> {
        while let Some(ev) = self.clients[i].poll_event() {
            if let ClientEvent::Lost { conn } = ev {
                bail!("client {i} lost connection {conn}");
            }
        }
        loop {
            let out = self.staged.room();
            let sent = self.clients[i]
                .poll_transmit(out, &mut self.sources[i])
                .map_err(|e| anyhow!("client {i} cannot send: {e}"))?;
            let Some(n) = sent else { return Ok(()) };
            self.staged.push(Route::Relay(PeerId::Client(i as u16)), n);
        }
    }

    fn deliver_to_trustee(&mut self, j: usize, body: &[u8]) -> Result<()> {
        let t = Instant::now();
        let r = match self.trustees[j].handle_frame(self.now, body) {
            Ok(()) => self.trustee_frames(j),
            Err(e) => Err(anyhow!("trustee {j} refused a frame: {e}")),
        };
        self.times.trustee += t.elapsed();
        r?;
        self.queue_staged()
    }

    /// Stages a trustee's frames.
    fn trustee_frames(&mut self, j: usize) -> Result<()> {
        loop {
            let out = self.staged.room();
            let sent = self.trustees[j]
                .poll_transmit(out)
                .map_err(|e| anyhow!("trustee {j} cannot send: {e}"))?;
            let Some(n) = sent else { return Ok(()) };
            self.staged.push(Route::Relay(PeerId::Trustee(j as u16)), n);
        }
    }
}

/// What `bench core` measured.
#[derive(Debug)]
struct CoreReport {
    args: CoreArgs,
    setup: Duration,
    exchanges: u64,
    bytes: u64,
    wall: Duration,
    times: RoleTimes,
    finish: Finish,
}

impl CoreReport {
    fn print(&self) {
        let a = &self.args;
        let ex = self.exchanges.max(1) as f64;
        let ns = |d: Duration| d.as_nanos() as f64 / ex;
        let roles = self.times.client + self.times.trustee + self.times.relay;
        println!(
            "# core: {} clients, {} trustees, cell {} bytes, in memory, one thread",
            a.clients, a.trustees, a.cell_length
        );
        if self.finish == Finish::Interrupted {
            println!("core.interrupted: yes");
        }
        println!("core.setup_ms: {:.1}", self.setup.as_secs_f64() * 1e3);
        println!("core.exchanges: {}", self.exchanges);
        println!("core.seconds: {:.3}", self.wall.as_secs_f64());
        println!(
            "core.exchanges_per_s: {:.0}",
            self.exchanges as f64 / self.wall.as_secs_f64().max(1e-9)
        );
        println!("core.upstream_mb_s: {:.2}", mb_per_s(self.bytes, self.wall));
        println!("core.client_ns_per_exchange: {:.0}", ns(self.times.client));
        println!(
            "core.client_ns_per_cell: {:.0}",
            ns(self.times.client) / a.clients as f64
        );
        println!(
            "core.trustee_ns_per_exchange: {:.0}",
            ns(self.times.trustee)
        );
        println!(
            "core.trustee_ns_per_cell: {:.0}",
            ns(self.times.trustee) / a.trustees as f64
        );
        println!("core.relay_ns_per_exchange: {:.0}", ns(self.times.relay));
        println!(
            "core.harness_ns_per_exchange: {:.0}",
            ns(self.wall.saturating_sub(roles))
        );
        println!("core.verified: yes");
    }
}

/// Runs `bench core` on a blocking thread; Ctrl-C stops it early with partial numbers.
async fn run_core(args: CoreArgs) -> Result<Finish> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let job = args.clone();
    let mut task = tokio::task::spawn_blocking(move || bench_core(&job, &flag));
    let report = tokio::select! {
        r = &mut task => r,
        _ = net::shutdown_signal() => {
            stop.store(true, Ordering::Relaxed);
            task.await
        }
    }
    .context("the core benchmark thread failed")??;
    report.print();
    Ok(report.finish)
}

fn bench_core(args: &CoreArgs, stop: &AtomicBool) -> Result<CoreReport> {
    ensure!(args.exchanges > 0, "--exchanges must be at least 1");
    let setup = Instant::now();
    let mut net = CoreNet::new(args.clients, args.trustees, args.cell_length, None)?;
    let setup = setup.elapsed();
    let warm = (args.exchanges / 20).clamp(10, 1000);
    net.drive(warm, stop, &ProgressBar::hidden(), 0)?;
    net.times = RoleTimes::default();
    let (d0, b0) = (net.decoded(), net.sink.total);
    let pb = progress(
        args.exchanges,
        "core  [{bar:40}] {pos}/{len} exchanges  {rate}  eta {eta}",
    );
    let start = Instant::now();
    let done = net.drive(d0 + args.exchanges, stop, &pb, d0)?;
    let wall = start.elapsed();
    pb.finish_and_clear();
    ensure!(
        net.sink.mismatches == 0 && net.sink.garbled == 0,
        "the pipeline is broken: {} chunks decoded wrong, {} garbled exchanges",
        net.sink.mismatches,
        net.sink.garbled
    );
    Ok(CoreReport {
        args: args.clone(),
        setup,
        exchanges: net.decoded() - d0,
        bytes: net.sink.total - b0,
        wall,
        times: net.times,
        finish: if done {
            Finish::Complete
        } else {
            Finish::Interrupted
        },
    })
}

// ---------------------------------------------------------------------------------------
// net mode

/// A temporary folder, removed on drop unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create() -> Result<WorkDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("dissent-bench-{}-{nanos:09}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(WorkDir { path, keep: false })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Distinct free loopback ports (bound together, then released).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot find free loopback ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// The child processes of one benchmark, in start order: relay, trustees, clients.
struct Cluster {
    children: Vec<(String, Child)>,
}

impl Cluster {
    fn start(exe: &Path, work: &Path, args: &NetArgs, ports: &[u16]) -> Result<Cluster> {
        let cfg = work.join("cfg");
        let dir = cfg.display().to_string();
        let relay = format!("127.0.0.1:{}", ports[0]);
        let mut specs: Vec<(String, Vec<String>)> = vec![(
            "relay".into(),
            vec![
                "relay".into(),
                "-p".into(),
                ports[0].to_string(),
                "--exit".into(),
                "echo".into(),
                "--min-clients".into(),
                args.clients.to_string(),
                "--stats-secs".into(),
                "3600".into(),
            ],
        )];
        specs[0].1.extend(args.relay_args.iter().cloned());
        specs[0].1.push(dir.clone());
        for j in 0..args.trustees {
            let id = format!("trustee-{j}");
            specs.push((
                id.clone(),
                vec![
                    "trustee".into(),
                    "--relay".into(),
                    relay.clone(),
                    dir.clone(),
                    cfg.join(format!("{id}.json")).display().to_string(),
                ],
            ));
        }
        for (i, port) in ports[1..].iter().enumerate() {
            let id = format!("client-{i}");
            specs.push((
                id.clone(),
                vec![
                    "client".into(),
                    "-p".into(),
                    port.to_string(),
                    "--relay".into(),
                    relay.clone(),
                    dir.clone(),
                    cfg.join(format!("{id}.json")).display().to_string(),
                ],
            ));
        }
        let mut cluster = Cluster {
            children: Vec::new(),
        };
        for (name, argv) in specs {
            let log_path = work.join(format!("{name}.log"));
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("cannot create {}", log_path.display()))?;
            let mut cmd = crate::net::child_command(exe);
            cmd.args(&argv)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log));
            let child = cmd
                .spawn()
                .with_context(|| format!("cannot start {name}"))?;
            cluster.children.push((name, child));
        }
        Ok(cluster)
    }

    /// Name and process id of every child still running.
    fn pids(&self) -> Vec<(String, u32)> {
        self.children
            .iter()
            .filter_map(|(name, child)| Some((name.clone(), child.id()?)))
            .collect()
    }

    /// Resolves when any child has exited, naming it.
    async fn first_exit(&mut self) -> String {
        loop {
            for (name, child) in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    return format!("{name} exited ({status})");
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops clients, then trustees, then the relay: SIGTERM, then SIGKILL after a grace.
    async fn stop(&mut self) {
        let tiers: [&dyn Fn(&str) -> bool; 3] = [
            &|n| n.starts_with("client"),
            &|n| n.starts_with("trustee"),
            &|n| n == "relay",
        ];
        for tier in tiers {
            let mut group: Vec<&mut (String, Child)> =
                self.children.iter_mut().filter(|(n, _)| tier(n)).collect();
            for (_, child) in group.iter_mut() {
                if let Some(pid) = child.id() {
                    // SAFETY: sends a signal to our own, not yet reaped, child by its id.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                }
            }
            let deadline = tokio::time::Instant::now() + STOP_GRACE;
            for (name, child) in group {
                if tokio::time::timeout_at(deadline, child.wait())
                    .await
                    .is_err()
                {
                    eprintln!("bench: {name} did not stop within {STOP_GRACE:?}; killing it");
                    let _ = child.kill().await;
                }
            }
        }
    }
}

/// What `bench net` measured so far.
#[derive(Debug, Default)]
struct NetReport {
    ready: Option<Duration>,
    /// Round trips of the pings that completed.
    pings: Vec<Duration>,
    pings_partial: bool,
    throughput: Option<Throughput>,
}

#[derive(Debug)]
struct ConnResult {
    client: usize,
    target: u64,
    echoed: u64,
    /// Time from the start of the phase until its last byte came back.
    elapsed: Option<Duration>,
    error: Option<String>,
}

#[derive(Debug)]
struct Throughput {
    conns: Vec<ConnResult>,
    wall: Duration,
    timed_out: bool,
    /// CPU time used during the phase, per role group (relay, trustees, clients, bench).
    cpu: Vec<(&'static str, Duration)>,
}

/// CPU time (user plus system, all threads) process `pid` has used so far, from /proc.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions; it only reads a system setting.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    Some(Duration::from_micros(ticks.saturating_mul(1_000_000) / hz))
}

/// The role group a child's name belongs to.
fn group_of(name: &str) -> &'static str {
    if name.starts_with("client") {
        "clients"
    } else if name.starts_with("trustee") {
        "trustees"
    } else {
        "relay"
    }
}

/// CPU time so far of every child and of this process, by role group.
fn cpu_by_group(pids: &[(String, u32)]) -> Vec<(&'static str, Duration)> {
    let mut out: Vec<(&'static str, Duration)> = Vec::new();
    let own = (String::from("bench"), std::process::id());
    for (name, pid) in pids.iter().chain(std::iter::once(&own)) {
        let group = if *pid == own.1 {
            "bench"
        } else {
            group_of(name)
        };
        let t = cpu_time(*pid).unwrap_or_default();
        match out.iter_mut().find(|(g, _)| *g == group) {
            Some((_, sum)) => *sum += t,
            None => out.push((group, t)),
        }
    }
    out
}

impl NetReport {
    fn print(&self, args: &NetArgs, note: Option<&str>) {
        println!(
            "# net: {} clients, {} trustees, cell {} bytes, echo exit, loopback, separate processes",
            args.clients, args.trustees, args.cell_length
        );
        if !args.relay_args.is_empty() {
            println!("# relay arguments: {}", args.relay_args.join(" "));
        }
        if let Some(note) = note {
            println!("net.stopped: {note}");
        }
        if let Some(r) = self.ready {
            println!("net.ready_s: {:.2}", r.as_secs_f64());
        }
        let mut ms: Vec<f64> = self.pings.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        if !ms.is_empty() {
            println!("net.ping_count: {}", ms.len());
            if self.pings_partial {
                println!("net.ping_partial: yes ({} asked)", args.pings);
            }
            println!("net.ping_ms_min: {:.3}", ms[0]);
            println!("net.ping_ms_median: {:.3}", percentile(&ms, 0.5));
            println!("net.ping_ms_p90: {:.3}", percentile(&ms, 0.9));
            println!("net.ping_ms_p99: {:.3}", percentile(&ms, 0.99));
            println!("net.ping_ms_max: {:.3}", ms[ms.len() - 1]);
        }
        if let Some(t) = &self.throughput {
            let echoed: u64 = t.conns.iter().map(|c| c.echoed).sum();
            let target: u64 = t.conns.iter().map(|c| c.target).sum();
            println!("net.throughput_connections: {}", t.conns.len());
            println!("net.throughput_bytes: {echoed}");
            if echoed < target {
                println!(
                    "net.throughput_partial: yes ({echoed} of {target} bytes{})",
                    if t.timed_out {
                        format!(" after the {} s timeout", args.timeout)
                    } else {
                        String::new()
                    }
                );
            }
            println!("net.throughput_seconds: {:.3}", t.wall.as_secs_f64());
            println!("net.throughput_mb_s: {:.3}", mb_per_s(echoed, t.wall));
            for (k, c) in t.conns.iter().enumerate() {
                let time = c.elapsed.unwrap_or(t.wall);
                println!(
                    "net.conn{k}_mb_s: {:.3} (client {}, {} bytes{})",
                    mb_per_s(c.echoed, time),
                    c.client,
                    c.echoed,
                    c.error
                        .as_deref()
                        .map(|e| format!(", {e}"))
                        .unwrap_or_default()
                );
            }
            for (group, cpu) in &t.cpu {
                println!(
                    "net.cpu_{group}_pct: {:.0}",
                    cpu.as_secs_f64() / t.wall.as_secs_f64().max(1e-9) * 100.0
                );
            }
            let bad = t.conns.iter().any(|c| c.error.is_some());
            println!("net.verified: {}", if bad { "no" } else { "yes" });
        }
    }

    fn release_note(&self, args: &NetArgs) {
        let mut ms: Vec<f64> = self.pings.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let tp = self
            .throughput
            .as_ref()
            .map(|t| mb_per_s(t.conns.iter().map(|c| c.echoed).sum(), t.wall));
        println!(
            "| build | clients | trustees | cell | ping median ms | ping p99 ms | echo MB/s |"
        );
        println!("|---|---|---|---|---|---|---|");
        println!(
            "| {} {} | {} | {} | {} | {:.2} | {:.2} | {} |",
            env!("CARGO_PKG_VERSION"),
            build_kind(),
            args.clients,
            args.trustees,
            args.cell_length,
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            tp.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
        );
    }
}

/// Runs `bench net`: starts the children, measures, stops them, prints.
async fn run_net(args: &NetArgs) -> Result<Finish> {
    ensure!(
        (1..=config::MAX_CLIENTS).contains(&args.clients),
        "--clients must be between 1 and {}",
        config::MAX_CLIENTS
    );
    ensure!(
        (1..=64).contains(&args.connections),
        "--connections must be between 1 and 64"
    );
    ensure!(
        args.bytes >= args.connections as u64,
        "--bytes must be at least one per connection"
    );
    let mut work = WorkDir::create()?;
    let ports = free_ports(1 + args.clients)?;
    config::generate(
        &work.path.join("cfg"),
        &config::GenerateOptions {
            clients: args.clients,
            trustees: args.trustees,
            cell_length: args.cell_length,
            relay: format!("127.0.0.1:{}", ports[0]),
            force: false,
        },
    )?;
    let exe = std::env::current_exe().context("cannot find the dissent executable")?;
    if !std::io::stderr().is_terminal() {
        eprintln!(
            "bench net: starting {} clients and {} trustees",
            args.clients, args.trustees
        );
    }
    let mut cluster = match Cluster::start(&exe, &work.path, args, &ports) {
        Ok(c) => c,
        Err(e) => {
            work.keep = true;
            return Err(e.context(format!("logs in {}", work.path.display())));
        }
    };
    let mut report = NetReport::default();
    let pids = cluster.pids();
    enum End {
        Done(Result<()>),
        Exited(String),
        Interrupted,
    }
    let end = tokio::select! {
        r = measure(args, &ports[1..], &pids, &mut report) => End::Done(r),
        why = cluster.first_exit() => End::Exited(why),
        _ = net::shutdown_signal() => End::Interrupted,
    };
    cluster.stop().await;
    let broken = report
        .throughput
        .iter()
        .flat_map(|t| &t.conns)
        .find_map(|c| c.error.clone());
    let (note, failure) = match end {
        End::Done(Ok(())) => match broken {
            Some(e) => (None, Some(anyhow!("an echo connection failed: {e}"))),
            None => (None, None),
        },
        End::Done(Err(e)) => (Some(format!("{e:#}")), Some(e)),
        End::Exited(why) => (Some(why.clone()), Some(anyhow!(why))),
        End::Interrupted => (Some("interrupted".to_string()), None),
    };
    report.print(args, note.as_deref());
    if args.release_note {
        report.release_note(args);
    }
    if let Some(e) = failure {
        work.keep = true;
        eprintln!(
            "bench net: the children's logs are in {}",
            work.path.display()
        );
        return Err(e);
    }
    Ok(if note.is_some() {
        Finish::Interrupted
    } else {
        Finish::Complete
    })
}

/// The three phases of `bench net`, recording into `report` as they go.
async fn measure(
    args: &NetArgs,
    ports: &[u16],
    pids: &[(String, u32)],
    report: &mut NetReport,
) -> Result<()> {
    let start = Instant::now();
    let pb = spinner("waiting for the DC-net to carry a byte");
    let ready = wait_ready(ports).await;
    pb.finish_and_clear();
    ready?;
    report.ready = Some(start.elapsed());
    ping(ports[0], args.pings, report).await?;
    throughput(args, ports, pids, report).await
}

/// Waits until every client port accepts and one byte comes back through client 0.
async fn wait_ready(ports: &[u16]) -> Result<()> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    for &port in ports {
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .is_ok()
            {
                break;
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "client port {port} did not open within {READY_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    loop {
        let probe = async {
            let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, ports[0])).await?;
            s.write_all(&[0x5a]).await?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await?;
            std::io::Result::Ok(b[0] == 0x5a)
        };
        match tokio::time::timeout_at(deadline, probe).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => bail!("the echo through client 0 returned a wrong byte"),
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => bail!("no byte came back through the DC-net within {READY_TIMEOUT:?}"),
        }
    }
}

/// Sequential small round trips on one connection through the client at `port`.
async fn ping(port: u16, count: usize, report: &mut NetReport) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let pattern = Pattern::new();
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .context("cannot connect to client 0")?;
    s.set_nodelay(true)?;
    let deadline = tokio::time::Instant::now() + PING_PHASE;
    let pb = progress(count as u64, "ping  [{bar:40}] {pos}/{len}  {rate}");
    let mut msg = [0u8; PING_LEN];
    let mut back = [0u8; PING_LEN];
    // One unrecorded round trip opens the connection through the net.
    for k in 0..=count {
        let offset = Pattern::origin(1_000_003) + (k * PING_LEN) as u64;
        pattern.fill(offset, &mut msg);
        let t = Instant::now();
        let round = async {
            s.write_all(&msg).await?;
            s.read_exact(&mut back).await?;
            std::io::Result::Ok(())
        };
        let limit = (tokio::time::Instant::now() + PING_TIMEOUT).min(deadline);
        match tokio::time::timeout_at(limit, round).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("ping {k} failed: {e}"),
            Err(_) => {
                pb.finish_and_clear();
                report.pings_partial = true;
                if tokio::time::Instant::now() >= deadline {
                    return Ok(());
                }
                bail!("ping {k} got no answer within {PING_TIMEOUT:?}");
            }
        }
        let rtt = t.elapsed();
        ensure!(back == msg, "ping {k} came back changed");
        if k > 0 {
            report.pings.push(rtt);
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    Ok(())
}

/// K connections streaming pattern bytes into the echo exit and checking what comes back.
async fn throughput(
    args: &NetArgs,
    ports: &[u16],
    pids: &[(String, u32)],
    report: &mut NetReport,
) -> Result<()> {
    let k = args.connections;
    let pattern = Arc::new(Pattern::new());
    let mut streams = Vec::with_capacity(k);
    for c in 0..k {
        let port = ports[c % ports.len()];
        let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .with_context(|| format!("cannot connect to client {}", c % ports.len()))?;
        s.set_nodelay(true)?;
        streams.push(s);
    }
    let targets: Vec<u64> = (0..k as u64)
        .map(|c| args.bytes / k as u64 + u64::from(c < args.bytes % k as u64))
        .collect();
    let echoed: Arc<Vec<AtomicU64>> = Arc::new((0..k).map(|_| AtomicU64::new(0)).collect());
    let pb = progress(
        args.bytes,
        "echo  [{bar:40}] {bytes}/{total_bytes}  {bytes_per_sec}  eta {eta}",
    );
    let cpu_before = cpu_by_group(pids);
    let start = Instant::now();
    let mut set = JoinSet::new();
    for (c, s) in streams.into_iter().enumerate() {
        let (pattern, echoed, target) = (pattern.clone(), echoed.clone(), targets[c]);
        set.spawn(async move {
            let r = stream_one(s, c, target, &pattern, &echoed[c]).await;
            (c, start.elapsed(), r)
        });
    }
    let conns = (0..k)
        .map(|c| ConnResult {
            client: c % ports.len(),
            target: targets[c],
            echoed: 0,
            elapsed: None,
            error: None,
        })
        .collect();
    // Kept up to date in the report, so an interrupted phase still shows its numbers.
    let t = report.throughput.insert(Throughput {
        conns,
        wall: Duration::ZERO,
        timed_out: false,
        cpu: Vec::new(),
    });
    let sync = |t: &mut Throughput| {
        t.wall = start.elapsed();
        for (c, r) in t.conns.iter_mut().enumerate() {
            r.echoed = echoed[c].load(Ordering::Relaxed);
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            joined = set.join_next() => match joined {
                None => break,
                Some(Ok((c, at, r))) => {
                    t.conns[c].elapsed = Some(at);
                    t.conns[c].error = r.err();
                }
                Some(Err(e)) => bail!("a throughput task failed: {e}"),
            },
            _ = tick.tick() => {
                sync(t);
                pb.set_position(t.conns.iter().map(|c| c.echoed).sum());
            }
            _ = tokio::time::sleep_until(deadline) => {
                t.timed_out = true;
                set.abort_all();
                break;
            }
        }
    }
    sync(t);
    t.cpu = cpu_by_group(pids);
    for (group, used) in &mut t.cpu {
        if let Some((_, before)) = cpu_before.iter().find(|(g, _)| g == group) {
            *used = used.saturating_sub(*before);
        }
    }
    pb.finish_and_clear();
    Ok(())
}

/// Writes `target` pattern bytes of stream `id` and reads them back, checking each byte.
async fn stream_one(
    s: TcpStream,
    id: usize,
    target: u64,
    pattern: &Pattern,
    echoed: &AtomicU64,
) -> Result<(), String> {
    let origin = Pattern::origin(id as u64);
    let (mut r, mut w) = s.into_split();
    let write = async {
        let mut buf = vec![0u8; IO_CHUNK];
        let mut sent = 0u64;
        while sent < target {
            let n = (target - sent).min(IO_CHUNK as u64) as usize;
            pattern.fill(origin + sent, &mut buf[..n]);
            w.write_all(&buf[..n]).await?;
            sent += n as u64;
        }
        std::io::Result::Ok(())
    };
    let read = async {
        let mut buf = vec![0u8; IO_CHUNK];
        let mut got = 0u64;
        while got < target {
            let n = r.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!("closed after {got} bytes"));
            }
            if got + n as u64 > target || !pattern.matches(origin + got, &buf[..n]) {
                return Err(format!("echoed bytes differ at offset {got}"));
            }
            got += n as u64;
            echoed.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(())
    };
    // The write half stays open until everything came back, so no close races the data.
    let (wrote, read) = tokio::join!(write, read);
    wrote.map_err(|e| format!("write failed: {e}"))?;
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_driver_decodes_every_byte_in_order() {
        let cell = 128;
        let cap = wire::CellRepr::capacity(cell) as u64;
        // Two full-slot clients for about 200 exchanges.
        let limit = 100 * cap + 17;
        let mut net = CoreNet::new(2, 1, cell, Some(limit)).unwrap();
        net.run_until(200_000, |n| n.sink.total == 2 * limit)
            .unwrap();
        assert!(net.decoded() >= 200, "{} exchanges", net.decoded());
        assert_eq!(net.sink.mismatches, 0);
        assert_eq!(net.sink.garbled, 0);
        for (_, got) in net.sink.streams.values() {
            assert_eq!(*got, limit);
        }
        for s in &net.sources {
            assert_eq!(s.offset, limit);
        }
    }

    #[test]
    fn byte_counts_parse() {
        assert_eq!(parse_bytes("8MiB"), Ok(8 << 20));
        assert_eq!(parse_bytes("512k"), Ok(512_000));
        assert_eq!(parse_bytes("42"), Ok(42));
        assert!(parse_bytes("lots").is_err());
    }
}
