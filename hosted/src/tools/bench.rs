//! `dissent bench`: how fast the DC-net runs on this machine. Prints numbers, never verdicts.
//!
//! - `dissent bench [--clients N] [--trustees M] [--cell-length L] [--seconds S] [--json]`
//!   runs a whole DC-net on loopback with real TCP links: a relay process (echo exit),
//!   trustee processes, client 0 as a `dissent client` process with a local port (the one
//!   measured), and the other clients in load processes (`dissent clients`, up to
//!   [`CLIENTS_PER_PROCESS`] each; `--separate` gives every client its own process), started
//!   as the end-to-end tests start theirs (`dissent_harness`): each node listens on a port
//!   the system picks and names it in its log, the others are told the relay's. Phases:
//!   the net idles (exchanges/s and CPU of the whole net), a first echo on a new connection
//!   after the idle spell, 32-byte echoes one at a time on a warm connection (RTT), then one
//!   sender streaming through client 0 for S seconds, every echoed byte checked (goodput).
//!   The pad limit is this machine's pad rate (XChaCha12), measured here, times the cores, over
//!   the pad bytes the whole net computes per goodput byte.
//! - `dissent bench core` measures the protocol's CPU cost in memory with the core's own
//!   test network (`dissent_core::testkit`), every client keeping its slot busy.
//! - `dissent bench load --rate R --seconds S --size BYTES` runs the prototype's
//!   `test_client.py` test: HTTP requests at a fixed rate through the clients' SOCKS5 ports.
//! - `dissent bench timing` compares what the relay sees of the slot's owner and of another
//!   client: the delay from request to cell ([`super::timing`]).
//!
//! Results are `key: value` lines on stdout (with `--json`, the last line is one JSON
//! object); progress goes to stderr. Every phase is bounded in time, and Ctrl-C stops early
//! (children included). On a shared machine compare numbers as ratios taken in one run.

use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::{Args, Subcommand};
use dissent_core::crypto::{PairKey, PAD_NONCE_LEN};
use dissent_core::testkit::{Net, NetConfig};
use dissent_harness::group::{args, Group};
use dissent_harness::pattern::Pattern;
use dissent_harness::ports;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;

use crate::config;
use crate::console::{self, count};
use crate::platform::process_stats;
use crate::process;

/// Clients one load process hosts (a process here may hold 20,000 files; each client
/// holds one link).
pub const CLIENTS_PER_PROCESS: usize = 2500;
/// Bytes in one ping.
const PING_LEN: usize = 32;
/// Time children get between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Largest write or read of the goodput stream.
const IO_CHUNK: usize = 64 * 1024;
/// Period of the pattern every checked byte stream repeats (a prime, so streams at
/// different offsets do not line up).
pub(super) const PATTERN_LEN: usize = 65_521;
/// How long a node of the cluster may take to name the port it listens on.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Log levels of the nodes: warnings, and the lines that name the ports they got.
const RELAY_LOG: &str = "warn,dissent::relay=info,dissent::metrics=info";
const CLIENT_LOG: &str = "warn,dissent::client=info";
const NODE_LOG: &str = "warn";
/// The relay's counter of decoded exchanges on its metrics endpoint.
const EXCHANGES_METRIC: &str = "dissent_exchanges_total";
/// How long the net idles before the idle numbers and the first echo.
const IDLE_SPELL: Duration = Duration::from_secs(4);

/// Arguments of `dissent bench`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    net: NetArgs,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Protocol CPU cost: the core's in-memory test network, no sockets.
    Core(CoreArgs),
    /// HTTP requests at a fixed rate through the clients' SOCKS5 ports, against a local
    /// server (the prototype's test_client.py).
    Load(LoadArgs),
    /// What a relay sees of who owns a slot: request-to-cell delays of the owner (a local
    /// application streaming through it) and of a client with no local traffic.
    Timing(super::timing::TimingArgs),
}

/// Arguments of `dissent bench load`.
#[derive(Args, Debug, Clone)]
struct LoadArgs {
    /// Requests started per second (open loop: on schedule, whatever the latency).
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Response body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: u64,
    /// Clients, each its own process with a SOCKS5 port; requests go to them in turn.
    #[arg(short, long, value_name = "N", default_value_t = 4)]
    clients: usize,
    /// Trustees.
    #[arg(short, long, value_name = "N", default_value_t = 3)]
    trustees: usize,
    /// Base cell length in bytes.
    #[arg(long, default_value_t = 256)]
    cell_length: usize,
    /// Print the result as one JSON object on the last line of standard output.
    #[arg(long)]
    json: bool,
}

/// Arguments of `dissent bench core`.
#[derive(Args, Debug, Clone)]
struct CoreArgs {
    /// Clients (each keeps its slot busy), 1-65535.
    #[arg(short, long, value_name = "N", default_value_t = 16, value_parser = crate::clients())]
    clients: usize,
    /// Trustees, 1-16.
    #[arg(short, long, value_name = "N", default_value_t = 3, value_parser = crate::trustees())]
    trustees: usize,
    /// Cell length in bytes (every exchange has this length), 16-65535.
    #[arg(long, value_name = "BYTES", default_value_t = 1024, value_parser = crate::cell_length())]
    cell_length: usize,
    /// Seconds to measure.
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = crate::seconds())]
    seconds: u64,
}

/// Arguments of the network benchmark (`dissent bench`).
#[derive(Args, Debug, Clone)]
struct NetArgs {
    /// Clients, 1-65535.
    #[arg(short, long, value_name = "N", default_value_t = 16)]
    clients: usize,
    /// Trustees, 1-16.
    #[arg(short, long, value_name = "N", default_value_t = 3)]
    trustees: usize,
    /// Base cell length in bytes.
    #[arg(long, default_value_t = 256)]
    cell_length: usize,
    /// Longest cell a sender may ask for.
    #[arg(long, default_value_t = config::DEFAULT_MAX_CELL_LENGTH)]
    max_cell_length: usize,
    /// Seconds of the goodput phase (the other phases take about as long together).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Most 32-byte echoes in the RTT phase.
    #[arg(long, default_value_t = 500)]
    pings: usize,
    /// Every client in its own process (default: client 0 alone, the rest in load processes).
    #[arg(long)]
    separate: bool,
    /// Print the result as one JSON object on the last line of standard output.
    #[arg(long)]
    json: bool,
    /// Extra argument for the relay, repeatable (e.g. `--relay-arg=--idle-ms=10`).
    #[arg(long = "relay-arg", allow_hyphen_values = true)]
    relay_args: Vec<String>,
}

/// Runs the benchmark mode chosen on the command line.
pub async fn run(args: BenchArgs) -> Result<()> {
    if cfg!(debug_assertions) {
        console::complain(format_args!(
            "warning: this dissent was built without --release; its numbers mean little"
        ));
    }
    match args.mode {
        Some(Mode::Core(a)) => bench_core(&a),
        Some(Mode::Load(a)) => run_load(&a).await,
        Some(Mode::Timing(a)) => super::timing::run(&a).await,
        None => run_net(&args.net).await,
    }
}

// ---------------------------------------------------------------------------------------
// Progress, statistics and checked streams

/// A spinner on stderr, or a plain line when stderr is not a terminal.
pub(super) fn phase(msg: String) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        console::complain(format_args!("bench: {msg}"));
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10))
        .with_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        )
        .with_message(msg);
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// Milliseconds at a quantile of a histogram of microseconds.
fn ms_at(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

// ---------------------------------------------------------------------------------------
// core mode

fn bench_core(args: &CoreArgs) -> Result<()> {
    // The command line checks these; a caller in code gets the same refusal.
    ensure!(
        (1..=dissent_core::MAX_CLIENTS).contains(&args.clients),
        "--clients must be between 1 and {}",
        dissent_core::MAX_CLIENTS
    );
    ensure!(
        (1..=dissent_core::MAX_TRUSTEES).contains(&args.trustees),
        "--trustees must be between 1 and {}",
        dissent_core::MAX_TRUSTEES
    );
    ensure!(
        (dissent_core::MIN_CELL_LENGTH..=dissent_core::MAX_CELL_LENGTH).contains(&args.cell_length),
        "--cell-length must be between {} and {}",
        dissent_core::MIN_CELL_LENGTH,
        dissent_core::MAX_CELL_LENGTH
    );
    let mut cfg = NetConfig::new(args.clients, args.trustees, args.cell_length);
    cfg.max_cell_len = args.cell_length;
    cfg.max_frame =
        (args.cell_length + 4096).clamp(16 * 1024, dissent_core::wire::MAX_FRAME_BODY) as u32;
    cfg.latency = dissent_core::Duration::from_micros(1);
    cfg.period = 1024;
    cfg.capacity = args.clients.min(1024) as u16;
    cfg.admit = cfg.capacity;
    cfg.window = 16;
    // Room for a window of the longest cells in each client's ring of sent cells.
    cfg.ring_len = cfg
        .ring_len
        .max(usize::from(cfg.window) * (args.cell_length + 64));
    // Everyone in the first interval: no joiners to wait for.
    cfg.min_clients = args.clients.min(u16::MAX as usize) as u16;
    cfg.join_delay = dissent_core::Duration::from_micros(0);
    let mut net = Net::new(cfg);
    let pb = phase(format!(
        "core: {}, {}, {}-byte cells",
        count(args.clients as u64, "client"),
        count(args.trustees as u64, "trustee"),
        args.cell_length
    ));
    net.run_until(10_000_000, |n| n.relay.interval().is_some());
    // Every client keeps its slot busy, with a connection that always has more to send.
    for i in 0..args.clients {
        let conn = net.open(i);
        net.send_endless(i, conn);
    }
    // Runs a batch of steps; the upstream bytes that reached the exit in it. The exit keeps
    // a count, not the bytes, and echoes are dropped (the bench measures upstream only).
    // A batch is an exchange or two (a step per cell in and out), at least 1,000 steps.
    let steps = (2 * (args.clients + args.trustees)).max(1_000);
    let batch = |net: &mut Net| -> usize {
        net.run_steps(steps);
        let mut bytes = 0;
        for data in net.exit.upstream.values_mut() {
            bytes += data.len();
            data.clear();
        }
        net.exit.replies.clear();
        for app in net.apps.iter_mut() {
            app.received.clear();
        }
        bytes
    };
    // Warm up until every slot is reserved.
    let target = args.clients.min(1024);
    for _ in 0..50_000_000 / steps {
        if net.relay.reserved_slots() >= target {
            break;
        }
        batch(&mut net);
    }
    ensure!(
        net.relay.reserved_slots() >= target,
        "the test network reserved {} of {target} slots",
        net.relay.reserved_slots()
    );
    let start = Instant::now();
    let e0 = net.relay.exchanges_decoded();
    let limit = Duration::from_secs(args.seconds);
    let mut bytes = 0;
    while start.elapsed() < limit {
        bytes += batch(&mut net);
    }
    let secs = start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let exchanges = net.relay.exchanges_decoded() - e0;
    println!(
        "# core: {}, {}, cell {} bytes, one thread, in-memory test network",
        count(args.clients as u64, "client"),
        count(args.trustees as u64, "trustee"),
        args.cell_length
    );
    println!("core.seconds: {secs:.2}");
    println!("core.exchanges: {exchanges}");
    println!("core.exchanges_per_sec: {:.1}", exchanges as f64 / secs);
    println!(
        "core.upstream_bytes_per_sec: {:.0} ({})",
        bytes as f64 / secs,
        human_rate(bytes as f64 / secs)
    );
    let us = secs * 1e6 / exchanges.max(1) as f64;
    println!("core.us_per_exchange: {us:.1}");
    println!(
        "core.us_per_exchange_per_client: {:.3}",
        us / args.clients as f64
    );
    ensure!(
        net.exit.garbled == 0,
        "{} exchanges decoded to garbage",
        net.exit.garbled
    );
    Ok(())
}

/// A rate in bytes per second with a unit that keeps three significant digits.
fn human_rate(bytes_per_sec: f64) -> String {
    let (value, unit) = if bytes_per_sec >= 1e9 {
        (bytes_per_sec / 1e9, "GB/s")
    } else if bytes_per_sec >= 1e6 {
        (bytes_per_sec / 1e6, "MB/s")
    } else if bytes_per_sec >= 1e3 {
        (bytes_per_sec / 1e3, "kB/s")
    } else {
        (bytes_per_sec, "B/s")
    };
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$} {unit}")
}

// ---------------------------------------------------------------------------------------
// net mode

/// The child processes of one benchmark: relay, trustees, clients, each logging to
/// `NAME.log` in the benchmark's folder.
pub(super) struct Cluster {
    children: Vec<(String, Child)>,
}

impl Cluster {
    fn spawn(
        &mut self,
        exe: &Path,
        work: &Path,
        name: &str,
        level: &str,
        argv: &[String],
    ) -> Result<u32> {
        let log_path = work.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut cmd = process::child_command(exe);
        cmd.args(argv)
            .env("RUST_LOG", level)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pid = child.id().unwrap_or(0);
        self.children.push((name.to_string(), child));
        Ok(pid)
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|(_, c)| c.id()).collect()
    }

    /// The port child `name`, started on port 0, names in its log after `marker`.
    async fn logged_port(&mut self, work: &Path, name: &str, marker: &str) -> Result<u16> {
        let log_path = work.join(format!("{name}.log"));
        let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
        loop {
            let log = tokio::fs::read_to_string(&log_path)
                .await
                .unwrap_or_default();
            if let Some(port) = ports::port_after(&log, marker) {
                return Ok(port);
            }
            if let Some((_, child)) = self.children.iter_mut().find(|(n, _)| n == name) {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("{name} exited ({status}) before naming its port");
                }
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "{name} did not name its port ({marker:?}) within {LISTEN_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resolves when any child has exited, naming it.
    pub(super) async fn first_exit(&mut self) -> String {
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
    pub(super) async fn stop(&mut self) {
        let tiers: [&dyn Fn(&str) -> bool; 3] = [
            &|n| n.starts_with("client"),
            &|n| n.starts_with("trustee"),
            &|n| n == "relay",
        ];
        for tier in tiers {
            let group: Vec<&mut (String, Child)> =
                self.children.iter_mut().filter(|(n, _)| tier(n)).collect();
            for (_, child) in group.iter() {
                crate::process::terminate(child);
            }
            let deadline = tokio::time::Instant::now() + STOP_GRACE;
            for (name, child) in group {
                if tokio::time::timeout_at(deadline, child.wait())
                    .await
                    .is_err()
                {
                    console::complain(format_args!(
                        "bench: {name} did not stop within {STOP_GRACE:?}; killing it"
                    ));
                    let _ = child.kill().await;
                }
            }
        }
    }
}

/// CPU seconds the processes `pids` have used so far; `None` where the platform cannot
/// tell, or one of them cannot be read.
fn total_cpu(pids: &[u32]) -> Option<f64> {
    pids.iter().map(|&p| process_stats::cpu_seconds(p)).sum()
}

/// A figure as printed: its value, or `unavailable` where the platform cannot tell.
fn shown(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "unavailable".to_string(), |v| v.to_string())
}

/// Reads the relay's decoded-exchange counter from its metrics endpoint.
async fn exchanges(metrics: u16) -> Result<u64> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, metrics)).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut text = String::new();
    s.read_to_string(&mut text).await?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.split_once(' ')?;
            (name == EXCHANGES_METRIC).then(|| value.trim().parse::<f64>().ok())?
        })
        .map(|v| v as u64)
        .ok_or_else(|| anyhow!("the relay's metrics have no {EXCHANGES_METRIC}"))
}

/// What the network benchmark measured (the JSON object of `--json`).
#[derive(Debug, Default, Serialize)]
struct Report {
    clients: usize,
    trustees: usize,
    cell_length: usize,
    max_cell_length: usize,
    seconds: u64,
    separate_processes: bool,
    exchanges_per_sec: Rates,
    goodput_bytes_per_sec: f64,
    rtt_ms: Quantiles,
    pings: usize,
    first_byte_ms: f64,
    pad_limit_goodput_bytes_per_sec: f64,
    pad_bytes_per_sec_per_core: f64,
    cores: usize,
    /// `None` (null) where the platform cannot tell, as for the next two.
    relay_rss_bytes: Option<u64>,
    cpu_seconds: Option<f64>,
    idle_cpu_percent: Option<f64>,
    ready_seconds: f64,
    verified: bool,
}

#[derive(Debug, Default, Serialize)]
struct Rates {
    idle: f64,
    /// While one client sends 32-byte echoes one at a time.
    pings: f64,
    one_sender: f64,
}

#[derive(Debug, Default, Serialize)]
struct Quantiles {
    p50: f64,
    p95: f64,
    p99: f64,
}

impl Report {
    fn print(&self, json: bool) {
        println!(
            "# net: {}, {}, cells {}..{} bytes, echo exit, loopback, {}",
            count(self.clients as u64, "client"),
            count(self.trustees as u64, "trustee"),
            self.cell_length,
            self.max_cell_length,
            if self.separate_processes {
                "every node its own process"
            } else {
                "clients 1.. in load processes"
            }
        );
        println!("ready_seconds: {:.2}", self.ready_seconds);
        println!("exchanges_per_sec.idle: {:.1}", self.exchanges_per_sec.idle);
        println!(
            "exchanges_per_sec.pings: {:.1}",
            self.exchanges_per_sec.pings
        );
        println!(
            "exchanges_per_sec.one_sender: {:.1}",
            self.exchanges_per_sec.one_sender
        );
        println!(
            "idle_cpu_percent: {}",
            shown(self.idle_cpu_percent.map(|p| format!("{p:.1}")))
        );
        println!("first_byte_ms: {:.2}", self.first_byte_ms);
        println!(
            "rtt_ms: p50 {:.2}, p95 {:.2}, p99 {:.2} ({} echoes)",
            self.rtt_ms.p50, self.rtt_ms.p95, self.rtt_ms.p99, self.pings
        );
        println!(
            "goodput_bytes_per_sec: {:.0} ({:.2} MB/s, verified: {})",
            self.goodput_bytes_per_sec,
            self.goodput_bytes_per_sec / 1e6,
            if self.verified { "yes" } else { "no" }
        );
        println!(
            "pad_limit_goodput_bytes_per_sec: {:.0} ({:.2} MB/s; pads {:.0} MB/s per core, {} cores)",
            self.pad_limit_goodput_bytes_per_sec,
            self.pad_limit_goodput_bytes_per_sec / 1e6,
            self.pad_bytes_per_sec_per_core / 1e6,
            self.cores
        );
        println!("relay_rss_bytes: {}", shown(self.relay_rss_bytes));
        println!(
            "cpu_seconds: {}",
            shown(self.cpu_seconds.map(|s| format!("{s:.1}")))
        );
        if json {
            match serde_json::to_string(self) {
                Ok(j) => println!("{j}"),
                Err(e) => console::complain(format_args!("bench: cannot write JSON: {e}")),
            }
        }
    }
}

/// This machine's pad rate on one core (XChaCha12, `apply_pad`), in bytes per second.
fn pad_rate() -> f64 {
    let key = PairKey::from_shared(&[1; 32], &[2; 16], &[3; 16], &[4; 32], &[5; 32])
        .interval_key(1, &[6; 16], &[7; 16]);
    let mut buf = vec![0u8; 16 * 1024];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < Duration::from_millis(300) {
        for k in 0..64u8 {
            key.apply_pad(&[k; PAD_NONCE_LEN], &mut buf);
            bytes += buf.len() as u64;
        }
    }
    bytes as f64 / start.elapsed().as_secs_f64()
}

/// A DC-net of separate processes on loopback, as a benchmark runs it.
pub(super) struct ClusterSpec {
    pub(super) clients: usize,
    pub(super) trustees: usize,
    pub(super) cell_length: usize,
    pub(super) max_cell_length: usize,
    /// The relay's exit: `echo` or `socks5`.
    pub(super) exit: &'static str,
    /// Clients that get their own `dissent client` process with a local port (the first
    /// ones); the rest run in load processes.
    pub(super) with_ports: usize,
    /// Every client in its own process.
    pub(super) separate: bool,
    pub(super) relay_args: Vec<String>,
}

/// A running cluster and what a benchmark needs of it.
pub(super) struct Running {
    pub(super) cluster: Cluster,
    pub(super) work: tempfile::TempDir,
    relay_pid: u32,
    pub(super) client_ports: Vec<u16>,
    metrics_port: u16,
}

pub(super) async fn start_cluster(spec: &ClusterSpec) -> Result<Running> {
    ensure!(
        (1..=dissent_core::MAX_CLIENTS).contains(&spec.clients),
        "--clients must be between 1 and {}",
        dissent_core::MAX_CLIENTS
    );
    ensure!(
        (1..=dissent_core::MAX_TRUSTEES).contains(&spec.trustees),
        "--trustees must be between 1 and {}",
        dissent_core::MAX_TRUSTEES
    );
    let work = tempfile::Builder::new()
        .prefix("dissent-bench-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let with_ports = spec.with_ports.min(spec.clients);
    // Every node listens on port 0 and names the port it got; the nodes are told the
    // relay's. The configuration's relay address is a reserved port that nobody uses.
    let config_relay = ports::reserve_port().context("cannot reserve a loopback port")?;
    let cfg_dir = work.path().join("cfg");
    let pb = phase(format!(
        "writing a configuration for {} and {}",
        count(spec.clients as u64, "client"),
        count(spec.trustees as u64, "trustee")
    ));
    config::generate(
        &cfg_dir,
        &config::GenerateOptions {
            clients: spec.clients,
            trustees: spec.trustees,
            cell_length: spec.cell_length,
            max_cell_length: spec.max_cell_length.max(spec.cell_length),
            relay: format!("127.0.0.1:{config_relay}"),
            force: false,
            min_anonymity: config::default_min_anonymity(spec.clients),
            ..config::GenerateOptions::default()
        },
    )?;
    pb.finish_and_clear();
    let exe = std::env::current_exe().context("cannot find the dissent executable")?;
    let small: Vec<String> = if spec.clients < 2 {
        vec!["--allow-small-anonymity-set".into()]
    } else {
        Vec::new()
    };
    let min = spec.clients.to_string();
    let mut cluster = Cluster {
        children: Vec::new(),
    };
    let work_dir = work.path().to_path_buf();
    let group = Group::new(&cfg_dir);
    let mut common = vec!["--min-clients".to_string(), min.clone()];
    common.extend(small.iter().cloned());
    let started = async {
        let mut relay = args(&["--exit", spec.exit]);
        relay.extend(args(&["--stats-secs", "3600", "--timeout-ms", "60000"]));
        if spec.exit == "socks5" {
            relay.push("--allow-private-exit".into());
        }
        relay.extend(common.iter().cloned());
        relay.extend(spec.relay_args.iter().cloned());
        let relay_pid = cluster.spawn(&exe, &work_dir, "relay", RELAY_LOG, &group.relay(&relay))?;
        let relay_port = (cluster.logged_port(&work_dir, "relay", ports::RELAY_LISTENING)).await?;
        let metrics_port =
            (cluster.logged_port(&work_dir, "relay", ports::SERVING_METRICS)).await?;
        for j in 0..spec.trustees {
            let argv = group.trustee(relay_port, j, &common);
            cluster.spawn(&exe, &work_dir, &format!("trustee-{j}"), NODE_LOG, &argv)?;
        }
        for i in 0..with_ports {
            let argv = group.client(relay_port, i, 0, &common);
            cluster.spawn(&exe, &work_dir, &format!("client-{i}"), CLIENT_LOG, &argv)?;
        }
        let mut client_ports = Vec::with_capacity(with_ports);
        for i in 0..with_ports {
            let name = format!("client-{i}");
            client_ports.push(
                cluster
                    .logged_port(&work_dir, &name, ports::CLIENT_LISTENING)
                    .await?,
            );
        }
        let per = if spec.separate {
            1
        } else {
            CLIENTS_PER_PROCESS
        };
        let mut from = with_ports;
        while from < spec.clients {
            let to = (from + per).min(spec.clients);
            let argv = group.clients(relay_port, from, to, &common);
            cluster.spawn(&exe, &work_dir, &format!("clients-{from}"), NODE_LOG, &argv)?;
            from = to;
        }
        anyhow::Ok((relay_pid, client_ports, metrics_port))
    }
    .await;
    match started {
        Ok((relay_pid, client_ports, metrics_port)) => Ok(Running {
            cluster,
            work,
            relay_pid,
            client_ports,
            metrics_port,
        }),
        Err(e) => {
            cluster.stop().await;
            Err(e)
        }
    }
}

/// How a benchmark's measuring ended.
pub(super) enum End {
    Done(Result<()>),
    Exited(String),
    Interrupted,
}

impl End {
    pub(super) fn failure(self) -> Option<anyhow::Error> {
        match self {
            End::Done(Ok(())) => None,
            End::Done(Err(e)) => Some(e),
            End::Exited(why) => Some(anyhow!(why)),
            End::Interrupted => Some(anyhow!("interrupted")),
        }
    }
}

/// Keeps the children's logs when a benchmark failed, and says where.
pub(super) fn keep_logs(work: tempfile::TempDir) {
    let kept = work.keep();
    console::complain(format_args!(
        "bench: the children's logs are in {}",
        kept.display()
    ));
}

async fn run_net(args: &NetArgs) -> Result<()> {
    // Measured before the net starts, so its processes do not slow the measurement.
    let pad_rate = pad_rate();
    let mut running = start_cluster(&ClusterSpec {
        clients: args.clients,
        trustees: args.trustees,
        cell_length: args.cell_length,
        max_cell_length: args.max_cell_length,
        exit: "echo",
        with_ports: 1,
        separate: args.separate,
        relay_args: args.relay_args.clone(),
    })
    .await?;
    let mut report = Report {
        clients: args.clients,
        trustees: args.trustees,
        cell_length: args.cell_length,
        max_cell_length: args.max_cell_length.max(args.cell_length),
        seconds: args.seconds,
        separate_processes: args.separate,
        pad_bytes_per_sec_per_core: pad_rate,
        ..Report::default()
    };
    let pids = running.cluster.pids();
    let (port, metrics) = (running.client_ports[0], running.metrics_port);
    let end = tokio::select! {
        r = measure(args, port, metrics, &pids, &mut report) => End::Done(r),
        why = running.cluster.first_exit() => End::Exited(why),
        _ = process::shutdown_signal() => End::Interrupted,
    };
    report.relay_rss_bytes = process_stats::peak_rss(running.relay_pid);
    report.cpu_seconds = total_cpu(&pids);
    running.cluster.stop().await;
    let failure = end.failure();
    report.print(args.json && failure.is_none());
    if let Some(e) = failure {
        keep_logs(running.work);
        return Err(e);
    }
    Ok(())
}

async fn run_load(args: &LoadArgs) -> Result<()> {
    ensure!(args.rate >= 1, "--rate must be at least 1");
    let server = crate::tools::load::serve_http().await?;
    let mut running = start_cluster(&ClusterSpec {
        clients: args.clients,
        trustees: args.trustees,
        cell_length: args.cell_length,
        max_cell_length: config::DEFAULT_MAX_CELL_LENGTH,
        exit: "socks5",
        with_ports: args.clients,
        separate: true,
        relay_args: Vec::new(),
    })
    .await?;
    let proxies: Vec<std::net::SocketAddr> = running
        .client_ports
        .iter()
        .map(|&p| (Ipv4Addr::LOCALHOST, p).into())
        .collect();
    let mut opts = crate::tools::load::LoadOptions::new(proxies.clone(), server.addr());
    opts.rate = args.rate;
    opts.duration = Duration::from_secs(args.seconds.max(1));
    opts.size = args.size;
    opts.progress = std::io::stderr().is_terminal();
    let work = async {
        let pb = phase(format!(
            "waiting for the DC-net of {} to carry a request",
            count(args.clients as u64, "client")
        ));
        let mut probe = crate::tools::load::LoadOptions::new(vec![proxies[0]], server.addr());
        probe.rate = 1;
        probe.duration = Duration::from_secs(1);
        probe.size = 16;
        probe.progress = false;
        let deadline = Instant::now() + Duration::from_secs(60 + args.clients as u64 / 50);
        loop {
            let r = crate::tools::load::run_load(probe.clone()).await?;
            if r.completed == r.scheduled {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "no request came back through the DC-net within a minute"
            );
        }
        pb.finish_and_clear();
        crate::tools::load::run_load(opts).await
    };
    let mut report = None;
    let end = tokio::select! {
        r = work => match r {
            Ok(r) => { report = Some(r); End::Done(Ok(())) }
            Err(e) => End::Done(Err(e)),
        },
        why = running.cluster.first_exit() => End::Exited(why),
        _ = process::shutdown_signal() => End::Interrupted,
    };
    running.cluster.stop().await;
    if let Some(r) = &report {
        println!(
            "# load: {} (each a SOCKS5 proxy), {}, {} requests/s for {} s, {}-byte bodies, SOCKS5 exit, local HTTP server",
            count(args.clients as u64, "client"),
            count(args.trustees as u64, "trustee"),
            args.rate,
            args.seconds,
            args.size
        );
        println!("{r}");
        if args.json {
            println!("{}", serde_json::to_string(r)?);
        }
    }
    if let Some(e) = end.failure() {
        keep_logs(running.work);
        return Err(e);
    }
    Ok(())
}

/// The phases of the network benchmark, recording into `report` as they go.
async fn measure(
    args: &NetArgs,
    port: u16,
    metrics: u16,
    pids: &[u32],
    report: &mut Report,
) -> Result<()> {
    let t0 = Instant::now();
    // Scaled with the group: key agreement and the first interval grow with it.
    let ready_limit = Duration::from_secs(60 + args.clients as u64 / 50);
    let pb = phase(format!(
        "waiting for the DC-net of {} to carry a byte",
        count(args.clients as u64, "client")
    ));
    let ready = wait_ready(port, ready_limit).await;
    pb.finish_and_clear();
    ready?;
    report.ready_seconds = t0.elapsed().as_secs_f64();

    // Idle: nothing is sent for a while; exchanges and CPU of the whole net.
    let pb = phase(format!("idling for {} s", IDLE_SPELL.as_secs()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (e0, c0, w0) = (exchanges(metrics).await?, total_cpu(pids), Instant::now());
    tokio::time::sleep(IDLE_SPELL - Duration::from_secs(1)).await;
    let (e1, c1) = (exchanges(metrics).await?, total_cpu(pids));
    let idle = w0.elapsed().as_secs_f64();
    report.exchanges_per_sec.idle = (e1 - e0) as f64 / idle;
    report.idle_cpu_percent = c0.zip(c1).map(|(c0, c1)| (c1 - c0) / idle * 100.0);
    pb.finish_and_clear();

    // The first echo on a new connection after the idle spell.
    let pattern = Pattern::new(1, PATTERN_LEN);
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .context("cannot connect to client 0")?;
    s.set_nodelay(true)?;
    let mut msg = [0u8; PING_LEN];
    let mut back = [0u8; PING_LEN];
    pattern.fill(1_000_003, &mut msg);
    let t = Instant::now();
    echo_once(&mut s, &msg, &mut back, Duration::from_secs(30)).await?;
    report.first_byte_ms = t.elapsed().as_secs_f64() * 1e3;
    ensure!(back == msg, "the first echo came back changed");

    // Round trips on the warm connection, one at a time.
    let budget = Duration::from_secs(args.seconds.max(2));
    let pb = phase(format!("up to {} 32-byte echoes", args.pings));
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
        .map_err(|e| anyhow!("histogram: {e}"))?;
    let phase_start = Instant::now();
    let e0 = exchanges(metrics).await?;
    for k in 0..args.pings {
        if phase_start.elapsed() > budget {
            break;
        }
        pattern.fill(2_000_003 + (k * PING_LEN) as u64, &mut msg);
        let t = Instant::now();
        echo_once(&mut s, &msg, &mut back, Duration::from_secs(30)).await?;
        let us = t.elapsed().as_micros() as u64;
        ensure!(back == msg, "echo {k} came back changed");
        h.saturating_record(us.max(1));
        report.pings = k + 1;
    }
    report.exchanges_per_sec.pings =
        (exchanges(metrics).await? - e0) as f64 / phase_start.elapsed().as_secs_f64();
    report.rtt_ms = Quantiles {
        p50: ms_at(&h, 0.5),
        p95: ms_at(&h, 0.95),
        p99: ms_at(&h, 0.99),
    };
    pb.finish_and_clear();

    // One sender streams through client 0; every echoed byte is checked.
    let pb = phase(format!("one sender streaming for {} s", args.seconds));
    let (e0, w0) = (exchanges(metrics).await?, Instant::now());
    let (echoed, verified) = stream(s, &pattern, Duration::from_secs(args.seconds.max(1))).await;
    let secs = w0.elapsed().as_secs_f64();
    let e1 = exchanges(metrics).await?;
    pb.finish_and_clear();
    report.goodput_bytes_per_sec = echoed as f64 / secs;
    report.exchanges_per_sec.one_sender = (e1 - e0) as f64 / secs;
    report.verified = verified;
    ensure!(verified, "echoed bytes differ from what was sent");

    // The physical ceiling: pads computed per goodput byte, at this machine's rate.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let l = report.max_cell_length as f64;
    let per_goodput = 2.0 * args.clients as f64 * args.trustees as f64 * l / (l - 8.0).max(1.0);
    report.cores = cores;
    report.pad_limit_goodput_bytes_per_sec =
        report.pad_bytes_per_sec_per_core * cores as f64 / per_goodput;
    Ok(())
}

/// Waits until client 0's port accepts and one byte comes back through the DC-net.
pub(super) async fn wait_ready(port: u16, limit: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .is_ok()
        {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "client 0's port {port} did not open within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let probe = async {
            let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
            s.write_all(&[0x5a]).await?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await?;
            std::io::Result::Ok(b[0] == 0x5a)
        };
        match tokio::time::timeout_at(deadline, probe).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => bail!("the echo through client 0 returned a wrong byte"),
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(_) => bail!("no byte came back through the DC-net within {limit:?}"),
        }
    }
}

async fn echo_once(s: &mut TcpStream, msg: &[u8], back: &mut [u8], limit: Duration) -> Result<()> {
    let round = async {
        s.write_all(msg).await?;
        s.read_exact(back).await?;
        std::io::Result::Ok(())
    };
    match tokio::time::timeout(limit, round).await {
        Ok(r) => r.context("echo failed"),
        Err(_) => bail!("no echo within {limit:?}"),
    }
}

/// Streams pattern bytes for `time`, reads them back checking each byte; returns the bytes
/// echoed and whether all matched.
pub(super) async fn stream(s: TcpStream, pattern: &Pattern, time: Duration) -> (u64, bool) {
    let origin = 7_777_777u64;
    let (mut r, mut w) = s.into_split();
    let written = std::sync::atomic::AtomicU64::new(0);
    let stop = tokio::time::Instant::now() + time;
    let write = async {
        let mut buf = vec![0u8; IO_CHUNK];
        let mut sent = 0u64;
        while tokio::time::Instant::now() < stop {
            pattern.fill(origin + sent, &mut buf);
            let Ok(Ok(())) = tokio::time::timeout_at(stop, w.write_all(&buf)).await else {
                break;
            };
            sent += buf.len() as u64;
            written.store(sent, std::sync::atomic::Ordering::Relaxed);
        }
    };
    let read = async {
        let mut buf = vec![0u8; IO_CHUNK];
        let mut got = 0u64;
        loop {
            let n = match tokio::time::timeout_at(stop, r.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return (got, true),
                Ok(Ok(n)) => n,
            };
            if !pattern.matches(origin + got, &buf[..n]) {
                return (got, false);
            }
            got += n as u64;
        }
    };
    let ((), result) = tokio::join!(write, read);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_core_bench_runs_on_the_test_network() {
        let r = bench_core(&CoreArgs {
            clients: 3,
            trustees: 2,
            cell_length: 256,
            seconds: 1,
        });
        assert!(r.is_ok(), "{r:?}");
    }
}
