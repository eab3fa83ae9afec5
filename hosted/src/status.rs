//! `dissent status ADDR`: a relay's status page in the terminal.
//!
//! Reads the document the relay serves at `http://ADDR/status.json` (`relay --status`)
//! and prints the same figures as the page: rates, nodes online, the interval and its
//! history, reserved slots, exit connections, the probe's round trip, the last minutes as
//! one line of bars per graph, and the latest events. `--watch` prints it again every
//! second until Ctrl-C. Times are UTC, as in the log lines.
//!
//! Owns only the printing; the document is [`crate::relay::status::Report`].

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::addr::HostPort;
use crate::console::{self, count};
use crate::relay::human;
use crate::relay::status::{Report, Sample, VERSION};

/// Longest wait for the relay's answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read.
const MAX_ANSWER: u64 = 8 * 1024 * 1024;
/// Columns of a graph line.
const GRAPH_COLUMNS: usize = 60;
/// Events printed.
const EVENTS_SHOWN: usize = 8;
/// Intervals printed.
const INTERVALS_SHOWN: usize = 5;

/// Prints the status of the relay serving its page at `addr`, once or every second.
pub async fn run(addr: &HostPort, watch: bool) -> Result<()> {
    if !watch {
        let report = fetch(addr).await?;
        print!("{}", render(&report));
        return Ok(());
    }
    let shutdown = crate::process::shutdown_signal();
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tick.tick() => {}
        }
        let text = match fetch(addr).await {
            Ok(report) => render(&report),
            Err(e) => format!("{e:#}\n(trying again every second; Ctrl-C stops)\n"),
        };
        // Home, clear, then the page: one frame per second.
        console::say(format_args!("\x1b[H\x1b[2J{}", text.trim_end()));
    }
}

/// Fetches and parses `http://addr/status.json`.
pub async fn fetch(addr: &HostPort) -> Result<Report> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr.to_string())
            .await
            .with_context(|| format!("cannot reach {addr}"))?;
        let request =
            format!("GET /status.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(MAX_ANSWER)
            .read_to_end(&mut answer)
            .await?;
        anyhow::Ok(answer)
    };
    let answer = tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{addr} did not answer within 5 s"))??;
    let text = String::from_utf8_lossy(&answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{addr} did not answer with HTTP (is it a relay's --status address?)");
    };
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        bail!("{addr} answered `{status}` for /status.json (is it a relay's --status address?)");
    }
    let report: Report = serde_json::from_str(body)
        .with_context(|| format!("{addr}: /status.json is not a relay's status document"))?;
    if report.version > VERSION {
        bail!(
            "{addr} serves status version {}, newer than this dissent reads ({VERSION})",
            report.version
        );
    }
    Ok(report)
}

/// One graph line: its name, its value in a sample, and how its top is written.
type GraphLine = (&'static str, fn(&Sample) -> Option<f64>, fn(f64) -> String);

/// The report as lines for a terminal.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let up = r.now_ms.saturating_sub(r.started_ms);
    let _ = writeln!(
        out,
        "dissent relay {} - {} - up {} - exit {}",
        r.relay.listen,
        r.state,
        duration(up),
        r.relay.exit
    );
    let _ = writeln!(
        out,
        "online      {} of {} clients, {} of {} trustees",
        r.online.clients, r.relay.clients, r.online.trustees, r.relay.trustees
    );
    match &r.interval {
        Some(i) => {
            let since = i
                .started_ms
                .map(|t| format!(" since {}", clock(t)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "interval    {} with {}{since}, {} in it",
                i.number,
                count(i.clients, "client"),
                count(i.exchanges, "exchange")
            );
        }
        None => {
            let _ = writeln!(out, "interval    none ({})", r.state);
        }
    }
    let _ = writeln!(
        out,
        "exchanges   {:.0}/s ({} in all)",
        r.rates.exchanges_per_s, r.totals.exchanges
    );
    let _ = writeln!(
        out,
        "goodput     up {}/s ({} in all), down {}/s ({} in all)",
        human(r.rates.up_bytes_per_s),
        human(r.totals.up_bytes as f64),
        human(r.rates.down_bytes_per_s),
        human(r.totals.down_bytes as f64)
    );
    let _ = writeln!(out, "slots       {} reserved", r.reserved_slots);
    let _ = writeln!(
        out,
        "exit        {} open, {} refused, {} failed",
        r.exit.open,
        r.exit.refused + r.exit.refused_at_caps,
        r.exit.failed
    );
    let rtt = match r.probe.rtt_ms {
        Some(ms) => format!("{ms:.2} ms"),
        None => "not measured yet".to_string(),
    };
    let _ = writeln!(out, "probe       {rtt} ({})", r.probe.what);

    let samples = &r.history.samples;
    if !samples.is_empty() {
        let span = samples.len() as u64 * r.history.period_ms / 1000;
        let _ = writeln!(out, "\nlast {}:", duration(span * 1000));
        let lines: [GraphLine; 5] = [
            (
                "exchanges/s",
                |s| Some(s.exchanges_per_s),
                |v| format!("{v:.0}/s"),
            ),
            (
                "goodput up",
                |s| Some(s.up_bytes_per_s),
                |v| format!("{}/s", human(v)),
            ),
            (
                "goodput down",
                |s| Some(s.down_bytes_per_s),
                |v| format!("{}/s", human(v)),
            ),
            ("clients", |s| Some(s.clients as f64), |v| format!("{v:.0}")),
            ("probe", |s| s.rtt_ms, |v| format!("{v:.2} ms")),
        ];
        for (name, pick, show) in lines {
            let values: Vec<Option<f64>> = samples.iter().map(pick).collect();
            let (bars, max) = bars(&values, GRAPH_COLUMNS);
            let _ = writeln!(out, "  {name:<13}{bars}  top {}", show(max));
        }
    }

    if !r.intervals.is_empty() {
        let _ = writeln!(out, "\nintervals, newest first:");
        for i in r.intervals.iter().rev().take(INTERVALS_SHOWN) {
            let end = i.ended_ms.map_or("running".to_string(), clock);
            let done = i
                .exchanges
                .map(|n| format!(", {}", count(n, "exchange")))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} with {}, {} to {end}{done}",
                i.number,
                count(i.clients, "client"),
                clock(i.started_ms)
            );
        }
    }
    if !r.events.is_empty() {
        let _ = writeln!(out, "\nevents, newest first:");
        for e in r.events.iter().rev().take(EVENTS_SHOWN) {
            let mark = match (e.kind.as_str(), e.level.as_str()) {
                ("blame", _) => "BLAME ",
                (_, "warn") => "! ",
                _ => "",
            };
            let _ = writeln!(out, "  {} {mark}{}", clock(e.t_ms), e.text);
        }
    }
    out
}

/// `values` squeezed into `columns` bars (each the mean of its samples), and the top of
/// the scale; a column with no value is a space.
fn bars(values: &[Option<f64>], columns: usize) -> (String, f64) {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let per = values.len().div_ceil(columns.max(1)).max(1);
    let means: Vec<Option<f64>> = values
        .chunks(per)
        .map(|c| {
            let known: Vec<f64> = c.iter().flatten().copied().collect();
            (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
        })
        .collect();
    let max = means.iter().flatten().copied().fold(0.0, f64::max);
    let text = means
        .iter()
        .map(|m| match m {
            None => ' ',
            Some(v) if max <= 0.0 => {
                let _ = v;
                LEVELS[0]
            }
            Some(v) => {
                let i = ((v / max) * (LEVELS.len() - 1) as f64).round() as usize;
                LEVELS[i.min(LEVELS.len() - 1)]
            }
        })
        .collect();
    (text, max)
}

/// `HH:MM:SS` UTC of a time in milliseconds since the epoch.
fn clock(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// A short duration: `45s`, `5m 3s`, `2h 10m`, `3d 4h`.
fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, (s / 60) % 60),
        _ => format!("{}d {}h", s / 86_400, (s / 3600) % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::status::{Board, Counters, Event, ExitFigures, Online, RelayInfo};

    fn report() -> Report {
        let mut b = Board::new(
            RelayInfo {
                listen: "127.0.0.1:12345".into(),
                clients: 10,
                trustees: 1,
                cell_length: 1024,
                max_cell_length: 32768,
                exit: "echo".into(),
            },
            0,
        );
        b.interval_started(500, 41, 1, 0);
        b.interval_ended(700, 41, 1);
        b.interval_started(800, 42, 9, 1);
        for i in 1..=120u64 {
            if i % 2 == 0 {
                b.round_trip(Duration::from_millis(3));
            }
            b.sample(
                i * 1000,
                Counters {
                    exchanges: i * i,
                    up_bytes: i * 1000,
                    down_bytes: i * 5000,
                    online: Online {
                        clients: 9,
                        trustees: 1,
                    },
                    interval: Some((42, 9)),
                    reserved_slots: 1,
                    exit: ExitFigures {
                        open: 2,
                        refused: 1,
                        failed: 3,
                        refused_at_caps: 0,
                    },
                    state: "running".into(),
                },
            );
        }
        let mut blame = Event::new(120_000, "blame", "warn", "client 3 disrupted".into());
        blame.node = Some("client 3".into());
        b.event(blame);
        b.report(125_000)
    }

    #[test]
    fn the_terminal_shows_the_figures_of_the_page() {
        let text = render(&report());
        for part in [
            "dissent relay 127.0.0.1:12345 - running - up 2m 5s - exit echo",
            "9 of 10 clients, 1 of 1 trustees",
            "interval    42 with 9 clients since 00:00:00",
            "exchanges   239/s (14400 in all)",
            "goodput     up 1.0 kB/s (120.0 kB in all), down 5.0 kB/s (600.0 kB in all)",
            "slots       1 reserved",
            "exit        2 open, 1 refused, 3 failed",
            "probe       3.00 ms",
            "last 2m 0s:",
            "exchanges/s",
            "41 with 1 client, 00:00:00 to 00:00:00, 1 exchange",
            "42 with 9 clients, 00:00:00 to running",
            "BLAME client 3 disrupted",
            "interval 42 started with 9 clients",
        ] {
            assert!(text.contains(part), "{part:?} missing:\n{text}");
        }
        // A rising rate draws rising bars, at most the graph's width.
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("exchanges/s"))
            .unwrap();
        let bars: Vec<char> = line.chars().filter(|c| ('▁'..='█').contains(c)).collect();
        assert!(
            bars.len() <= GRAPH_COLUMNS && bars.len() >= GRAPH_COLUMNS / 2,
            "{line}"
        );
        assert_eq!(bars.last(), Some(&'█'), "{line}");
        assert!(bars.first() < bars.last(), "{line}");
    }

    #[test]
    fn bars_leave_gaps_where_nothing_was_measured() {
        let (text, max) = bars(&[None, Some(1.0), Some(2.0), None], 4);
        // Half the top: the middle of eight levels, rounded up.
        assert_eq!(text, " ▅█ ");
        assert_eq!(max, 2.0);
        let (text, _) = bars(&[Some(0.0), Some(0.0)], 10);
        assert_eq!(text, "▁▁");
    }

    #[test]
    fn clocks_and_durations() {
        assert_eq!(clock(3_723_000), "01:02:03");
        assert_eq!(duration(59_000), "59s");
        assert_eq!(duration(61_000), "1m 1s");
        assert_eq!(duration(3 * 3_600_000 + 60_000), "3h 1m");
        assert_eq!(duration(90_000_000), "1d 1h");
    }
}
