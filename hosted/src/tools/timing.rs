//! `dissent bench timing`: what a relay sees of who owns a slot. Prints numbers, never
//! verdicts.
//!
//! Runs a DC-net on loopback as `dissent bench` does (echo exit), with clients 0 and 1 as
//! `dissent client` processes with local ports and the rest in a load process. The relay
//! writes, for every client cell, how long after the request was queued for that client's
//! link the cell was read (`dissent relay --response-times`, [`crate::relay::timing`]).
//! Phases: the net idles with no local traffic; then a local application sends bursts
//! through client 0 (every `--burst-ms`, `--burst-bytes` upstream and their echo read back
//! downstream); then it streams (bulk bytes upstream and the echo downstream as fast as they
//! go). Every echoed byte is checked. Client 0 owns the slot in use and its local
//! connection is busy; client 1 has no local traffic. Printed: the delay's quantiles per
//! client and phase, in microseconds, and the owner's over the non-owner's. On a shared
//! machine compare numbers taken in one run.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Args;
use dissent_harness::pattern::Pattern;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::bench::{
    keep_logs, phase, start_cluster, stream, wait_ready, ClusterSpec, End, PATTERN_LEN,
};
use crate::config;
use crate::console::count;
use crate::process;

/// The relay's samples, in the benchmark's folder.
const SAMPLES: &str = "response-times.txt";

/// Arguments of `dissent bench timing`.
#[derive(Args, Debug, Clone)]
pub struct TimingArgs {
    /// Clients, 2-65535 (clients 0 and 1 are measured).
    #[arg(short, long, value_name = "N", default_value_t = 3)]
    clients: usize,
    /// Trustees.
    #[arg(short, long, value_name = "N", default_value_t = 2)]
    trustees: usize,
    /// Base cell length in bytes.
    #[arg(long, default_value_t = 256)]
    cell_length: usize,
    /// Seconds of bursts, and again of streaming (the idle phase takes half as long).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bytes of one burst.
    #[arg(long, default_value_t = 64 * 1024)]
    burst_bytes: usize,
    /// Milliseconds from one burst's start to the next one's.
    #[arg(long, default_value_t = 100)]
    burst_ms: u64,
    /// Extra argument for the relay, repeatable (e.g. `--relay-arg=--window=4`).
    #[arg(long = "relay-arg", allow_hyphen_values = true)]
    relay_args: Vec<String>,
}

/// A phase's window, in Unix microseconds.
#[derive(Clone, Copy)]
struct Window {
    from: u64,
    to: u64,
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Runs the timing benchmark.
pub async fn run(args: &TimingArgs) -> Result<()> {
    ensure!(args.clients >= 2, "--clients must be at least 2");
    ensure!(args.burst_ms >= 1, "--burst-ms must be at least 1");
    let mut relay_args = args.relay_args.clone();
    // The folder is created by the cluster; its relay writes the samples there.
    let samples = tempfile::Builder::new()
        .prefix("dissent-timing-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let samples_path = samples.path().join(SAMPLES);
    relay_args.push("--response-times".into());
    relay_args.push(samples_path.display().to_string());
    let mut running = start_cluster(&ClusterSpec {
        clients: args.clients,
        trustees: args.trustees,
        cell_length: args.cell_length,
        max_cell_length: config::DEFAULT_MAX_CELL_LENGTH,
        exit: "echo",
        with_ports: 2,
        separate: false,
        relay_args,
    })
    .await?;
    let port = running.client_ports[0];
    let mut windows = None;
    let end = tokio::select! {
        r = phases(args, port) => match r {
            Ok(w) => { windows = Some(w); End::Done(Ok(())) }
            Err(e) => End::Done(Err(e)),
        },
        why = running.cluster.first_exit() => End::Exited(why),
        _ = process::shutdown_signal() => End::Interrupted,
    };
    // The relay writes out its samples as it stops.
    running.cluster.stop().await;
    if let Some(e) = end.failure() {
        keep_logs(running.work);
        return Err(e);
    }
    let Some((idle, bursts, streaming)) = windows else {
        return Err(anyhow!("no phase ran"));
    };
    let text = std::fs::read_to_string(&samples_path)
        .with_context(|| format!("cannot read the relay's {}", samples_path.display()))?;
    println!(
        "# timing: {}, {}, cell {} bytes, echo exit, loopback; microseconds from a request \
         queued at the relay to the client's cell read there",
        count(args.clients as u64, "client"),
        count(args.trustees as u64, "trustee"),
        args.cell_length
    );
    let idle_0 = quantiles(&text, 0, idle)?;
    let idle_1 = quantiles(&text, 1, idle)?;
    println!("timing.idle.client_0_us: {idle_0}");
    println!("timing.idle.client_1_us: {idle_1}");
    for (name, w) in [("bursts", bursts), ("streaming", streaming)] {
        let owner = quantiles(&text, 0, w)?;
        let other = quantiles(&text, 1, w)?;
        println!("timing.{name}.owner_us: {owner}");
        println!("timing.{name}.non_owner_us: {other}");
        println!("timing.{name}.owner_over_non_owner: {}", owner.over(&other));
    }
    Ok(())
}

/// The idle phase, the bursts, then the streaming phase; their windows.
async fn phases(args: &TimingArgs, port: u16) -> Result<(Window, Window, Window)> {
    let limit = Duration::from_secs(60 + args.clients as u64 / 50);
    let pb = phase("waiting for the DC-net to carry a byte".into());
    let ready = wait_ready(port, limit).await;
    pb.finish_and_clear();
    ready?;
    let quiet = Duration::from_secs(args.seconds.div_ceil(2).max(1));
    let pb = phase(format!("idling for {} s", quiet.as_secs()));
    // A second for the readiness probe's connection to be closed and forgotten.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = unix_micros();
    tokio::time::sleep(quiet).await;
    let idle = Window {
        from,
        to: unix_micros(),
    };
    pb.finish_and_clear();
    let mut s = TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port))
        .await
        .context("cannot connect to client 0")?;
    s.set_nodelay(true)?;
    let pattern = Pattern::new(3, PATTERN_LEN);
    let pb = phase(format!(
        "a local application sending {}-byte bursts through client 0 every {} ms for {} s",
        args.burst_bytes, args.burst_ms, args.seconds
    ));
    let from = unix_micros();
    let sent = bursts(&mut s, &pattern, args).await?;
    let bursts = Window {
        from,
        to: unix_micros(),
    };
    pb.finish_and_clear();
    println!("timing.bursts.sent: {sent}");
    let pb = phase(format!(
        "a local application streaming through client 0 for {} s",
        args.seconds
    ));
    let t = Instant::now();
    let from = unix_micros();
    let (echoed, verified) = stream(s, &pattern, Duration::from_secs(args.seconds.max(1))).await;
    let streaming = Window {
        from,
        to: unix_micros(),
    };
    pb.finish_and_clear();
    ensure!(verified, "echoed bytes differ from what was sent");
    println!(
        "timing.streaming.goodput_bytes_per_sec: {:.0}",
        echoed as f64 / t.elapsed().as_secs_f64()
    );
    Ok((idle, bursts, streaming))
}

/// Sends bursts on `s` for `--seconds`, each read back and checked before the next one
/// is due; returns how many went.
async fn bursts(s: &mut TcpStream, pattern: &Pattern, args: &TimingArgs) -> Result<u64> {
    let len = args.burst_bytes.max(1);
    let (mut out, mut back) = (vec![0u8; len], vec![0u8; len]);
    let mut tick = tokio::time::interval(Duration::from_millis(args.burst_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = Instant::now() + Duration::from_secs(args.seconds.max(1));
    let mut sent = 0u64;
    while Instant::now() < stop {
        tick.tick().await;
        let offset = 11_111_111 + sent * len as u64;
        pattern.fill(offset, &mut out);
        let round = async {
            s.write_all(&out).await?;
            s.read_exact(&mut back).await?;
            std::io::Result::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(30), round).await {
            Ok(r) => r.context("a burst failed")?,
            Err(_) => bail!("a burst did not come back within 30 s"),
        }
        ensure!(back == out, "burst {sent} came back changed");
        sent += 1;
    }
    Ok(sent)
}

/// Quantiles of one client's delays in one window.
struct Quantiles {
    n: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
}

impl Quantiles {
    /// The quantiles of `self` over those of `other`.
    fn over(&self, other: &Quantiles) -> String {
        let r = |a: u64, b: u64| a as f64 / b.max(1) as f64;
        format!(
            "p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
            r(self.p50, other.p50),
            r(self.p90, other.p90),
            r(self.p99, other.p99),
            r(self.max, other.max)
        )
    }
}

impl std::fmt::Display for Quantiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {} p90 {} p99 {} max {} (n {})",
            self.p50, self.p90, self.p99, self.max, self.n
        )
    }
}

/// The quantiles of client `index`'s samples (`UNIX_MICROS INDEX MICROS` lines) in `w`.
fn quantiles(text: &str, index: u16, w: Window) -> Result<Quantiles> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
        .map_err(|e| anyhow!("histogram: {e}"))?;
    for line in text.lines() {
        let mut f = line.split(' ').map(str::parse::<u64>);
        let (Some(Ok(at)), Some(Ok(i)), Some(Ok(us))) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if i == u64::from(index) && (w.from..w.to).contains(&at) {
            h.saturating_record(us.max(1));
        }
    }
    ensure!(
        !h.is_empty(),
        "the relay recorded no cell of client {index} in a phase"
    );
    Ok(Quantiles {
        n: h.len(),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_one_client_in_one_window() {
        let mut text = String::new();
        for k in 1..=100u64 {
            text.push_str(&format!("{} 0 {}\n", 1000 + k, k));
            text.push_str(&format!("{} 1 {}\n", 1000 + k, 10 * k));
        }
        text.push_str("garbage line\n5000 0 999999\n");
        let q = quantiles(
            &text,
            0,
            Window {
                from: 1001,
                to: 1101,
            },
        )
        .unwrap();
        assert_eq!((q.n, q.p50, q.p90, q.p99, q.max), (100, 50, 90, 99, 100));
        let q = quantiles(
            &text,
            1,
            Window {
                from: 1051,
                to: 1061,
            },
        )
        .unwrap();
        assert_eq!((q.n, q.p50, q.max), (10, 550, 600));
    }
}
