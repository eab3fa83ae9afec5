//! The relay's status page (`dissent relay --status ADDR`): what the relay knows, for a
//! person to look at.
//!
//! The main task keeps a [`Board`]: once a second it adds a [`Sample`] of its counters and
//! gauges, and it notes interval starts and ends and the events of its links as they come.
//! Each second it publishes the board as one JSON document ([`Report`]), which the server
//! hands out as it is. Nobody waits on anybody: a slow browser never slows the relay.
//!
//! `GET /` is the page: one static string of HTML, CSS and script built into the binary,
//! which loads nothing from elsewhere and polls `GET /status.json` every second, drawing its
//! graphs itself (inline SVG). `dissent status ADDR` prints the same document in a terminal.
//!
//! What is shown is what the relay knows anyway, and nothing that links a slot to a client:
//! reserved slots are a count, traffic is the group's total, and node names appear only
//! with what the relay sees of their links (joined, left, dropped). Events carry a `kind`
//! and optional fields (`interval`, `exchange`, `node`), so the accountability events of
//! later protocol versions (`kind: "blame"`, naming the node a blame convicts) fit the same
//! list; the page shows any kind it does not know as plain text.
//!
//! A page on loopback can be read by any web page the user visits through a DNS name that
//! is made to point at 127.0.0.1; requests whose `Host` is not an IP address, `localhost`
//! or the name given to `--status` are refused, which closes that door.
//!
//! Owns the board, the JSON document and the HTTP answers; the figures themselves come from
//! the core relay and the exits, read by the main task.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::addr::{AddrError, Host, HostPort};
use crate::http::{self, RequestHead};

/// Version of the JSON document; a reader refuses a newer major version.
pub const VERSION: u32 = 1;
/// Samples kept: one a second, the last five minutes.
pub const HISTORY: usize = 300;
/// Intervals kept in the history of intervals.
pub const INTERVALS: usize = 32;
/// Events kept, newest last.
pub const EVENTS: usize = 200;
/// Time between samples.
pub const PERIOD: Duration = Duration::from_secs(1);
/// Requests answered at once; further connections wait for a turn.
const MAX_REQUESTS: usize = 8;
/// Time a browser has to send its request and take the response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The page: HTML, CSS and script in one string.
pub const PAGE: &str = include_str!("status.html");
/// What the probe measures, as the page and `dissent status` explain it.
pub const PROBE: &str = "exchange round trip: from the relay's request to the clients to \
                         the decoded exchange";

/// The whole status document, as `GET /status.json` serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Document version ([`VERSION`]).
    pub version: u32,
    /// When the document was made, in milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// When the relay started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// The relay and its group.
    pub relay: RelayInfo,
    /// Nodes connected now.
    pub online: Online,
    /// `running`, or what the relay waits for.
    pub state: String,
    /// The current interval.
    pub interval: Option<IntervalNow>,
    /// Slots reserved for coming exchanges (a count: which slots is nobody's business).
    pub reserved_slots: u64,
    /// Rates over the last sample period.
    pub rates: Rates,
    /// Counts since the relay started.
    pub totals: Totals,
    /// The exit's connections.
    pub exit: ExitFigures,
    /// The relay's own probe.
    pub probe: Probe,
    /// One sample a period, oldest first.
    pub history: History,
    /// The last intervals, oldest first (the current one last).
    pub intervals: Vec<IntervalRecord>,
    /// The last events, oldest first.
    pub events: Vec<Event>,
}

/// The relay and its group, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayInfo {
    /// Where the relay listens for its nodes.
    pub listen: String,
    /// Clients in the group.
    pub clients: u64,
    /// Trustees in the group.
    pub trustees: u64,
    /// A newly reserved slot's cell, in bytes.
    pub cell_length: u64,
    /// The longest cell a slot owner may ask for, in bytes.
    pub max_cell_length: u64,
    /// Where decoded connections go (`socks5`, `echo`, `tcp:HOST:PORT`).
    pub exit: String,
}

/// Nodes connected now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Online {
    /// Clients with a link.
    pub clients: u64,
    /// Trustees with a link.
    pub trustees: u64,
}

/// The current interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalNow {
    /// Its number.
    pub number: u32,
    /// Clients in it.
    pub clients: u64,
    /// When it started (ms since the epoch), if the relay saw it start.
    pub started_ms: Option<u64>,
    /// Exchanges decoded in it so far.
    pub exchanges: u64,
}

/// Rates over the last sample period.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Rates {
    /// Exchanges decoded per second.
    pub exchanges_per_s: f64,
    /// Goodput towards the exit (decoded upstream bytes) per second.
    pub up_bytes_per_s: f64,
    /// Goodput from the exit (downstream bytes) per second.
    pub down_bytes_per_s: f64,
}

/// Counts since the relay started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Exchanges decoded.
    pub exchanges: u64,
    /// Upstream bytes handed to the exit.
    pub up_bytes: u64,
    /// Downstream bytes taken from the exit.
    pub down_bytes: u64,
}

/// The exit's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExitFigures {
    /// Open now.
    pub open: u64,
    /// Refused by the exit policy (destinations that are not globally reachable).
    pub refused: u64,
    /// To allowed destinations that failed (no such host, refused, timed out).
    pub failed: u64,
    /// Refused at the caps on exit connections.
    pub refused_at_caps: u64,
}

/// The relay's own probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// What it measures.
    pub what: String,
    /// The mean over the last period that had a measurement, in milliseconds.
    pub rtt_ms: Option<f64>,
}

/// Samples, one a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Time between samples, in milliseconds.
    pub period_ms: u64,
    /// Oldest first.
    pub samples: Vec<Sample>,
}

/// One period's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// End of the period (ms since the epoch).
    pub t_ms: u64,
    /// Exchanges decoded per second.
    pub exchanges_per_s: f64,
    /// Upstream goodput, bytes per second.
    pub up_bytes_per_s: f64,
    /// Downstream goodput, bytes per second.
    pub down_bytes_per_s: f64,
    /// Clients connected.
    pub clients: u64,
    /// Trustees connected.
    pub trustees: u64,
    /// Slots reserved.
    pub reserved_slots: u64,
    /// Open exit connections.
    pub exit_open: u64,
    /// Mean probe round trip in the period, in milliseconds.
    pub rtt_ms: Option<f64>,
}

/// An interval, as the relay saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalRecord {
    /// Its number.
    pub number: u32,
    /// Clients in it.
    pub clients: u64,
    /// When it started (ms since the epoch).
    pub started_ms: u64,
    /// When it ended, unless it runs.
    pub ended_ms: Option<u64>,
    /// Exchanges decoded in it, once it ended.
    pub exchanges: Option<u64>,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When (ms since the epoch).
    pub t_ms: u64,
    /// What kind: `interval_started`, `interval_ended`, `joined`, `left`, `dropped`,
    /// `garbled`, `refused`, `backed_off` (a client penalized for stalling), `excluded` (put
    /// on the refusal list), and later `blame`; readers show kinds they do not know as text.
    pub kind: String,
    /// `info` or `warn`.
    pub level: String,
    /// A sentence for a person.
    pub text: String,
    /// The interval it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u32>,
    /// The exchange it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<u64>,
    /// The node it concerns (`client 3`, `trustee 0`; never a slot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Event {
    /// An event with no interval, exchange or node.
    pub fn new(t_ms: u64, kind: &str, level: &str, text: String) -> Event {
        Event {
            t_ms,
            kind: kind.to_string(),
            level: level.to_string(),
            text,
            interval: None,
            exchange: None,
            node: None,
        }
    }
}

/// What the main task reads off the relay and the exits for one sample.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Exchanges decoded since start.
    pub exchanges: u64,
    /// Upstream bytes since start.
    pub up_bytes: u64,
    /// Downstream bytes since start.
    pub down_bytes: u64,
    /// Nodes connected.
    pub online: Online,
    /// The current interval and its clients.
    pub interval: Option<(u32, u64)>,
    /// Slots reserved.
    pub reserved_slots: u64,
    /// The exit's connections.
    pub exit: ExitFigures,
    /// `running`, or what the relay waits for.
    pub state: String,
}

/// The status the main task keeps and publishes.
#[derive(Debug)]
pub struct Board {
    relay: RelayInfo,
    started_ms: u64,
    last: Counters,
    last_ms: u64,
    rates: Rates,
    samples: VecDeque<Sample>,
    intervals: VecDeque<IntervalRecord>,
    events: VecDeque<Event>,
    /// Exchanges decoded when the current interval started.
    interval_base: u64,
    /// Probe round trips in this period: sum in ms and count.
    rtt_sum: f64,
    rtt_count: u32,
    /// The last period's mean round trip that had one.
    rtt_last: Option<f64>,
}

impl Board {
    /// An empty board for a relay described by `relay`, started at `now_ms`.
    pub fn new(relay: RelayInfo, now_ms: u64) -> Board {
        Board {
            relay,
            started_ms: now_ms,
            last: Counters::default(),
            last_ms: now_ms,
            rates: Rates::default(),
            samples: VecDeque::with_capacity(HISTORY),
            intervals: VecDeque::with_capacity(INTERVALS),
            events: VecDeque::with_capacity(EVENTS),
            interval_base: 0,
            rtt_sum: 0.0,
            rtt_count: 0,
            rtt_last: None,
        }
    }

    /// Ends a sample period at `now_ms` with the counters `now`.
    pub fn sample(&mut self, now_ms: u64, now: Counters) {
        let secs = (now_ms.saturating_sub(self.last_ms) as f64 / 1000.0).max(1e-3);
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        self.rates = Rates {
            exchanges_per_s: rate(now.exchanges, self.last.exchanges),
            up_bytes_per_s: rate(now.up_bytes, self.last.up_bytes),
            down_bytes_per_s: rate(now.down_bytes, self.last.down_bytes),
        };
        let rtt = (self.rtt_count > 0).then(|| self.rtt_sum / f64::from(self.rtt_count));
        if rtt.is_some() {
            self.rtt_last = rtt;
        }
        (self.rtt_sum, self.rtt_count) = (0.0, 0);
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            t_ms: now_ms,
            exchanges_per_s: self.rates.exchanges_per_s,
            up_bytes_per_s: self.rates.up_bytes_per_s,
            down_bytes_per_s: self.rates.down_bytes_per_s,
            clients: now.online.clients,
            trustees: now.online.trustees,
            reserved_slots: now.reserved_slots,
            exit_open: now.exit.open,
            rtt_ms: rtt,
        });
        self.last = now;
        self.last_ms = now_ms;
    }

    /// Adds one probe round trip to the current period.
    pub fn round_trip(&mut self, rtt: Duration) {
        self.rtt_sum += rtt.as_secs_f64() * 1000.0;
        self.rtt_count += 1;
    }

    /// Notes an interval that started at `now_ms` with `clients`, when `exchanges` had been
    /// decoded in all.
    pub fn interval_started(&mut self, now_ms: u64, number: u32, clients: u64, exchanges: u64) {
        self.interval_base = exchanges;
        if self.intervals.len() == INTERVALS {
            self.intervals.pop_front();
        }
        self.intervals.push_back(IntervalRecord {
            number,
            clients,
            started_ms: now_ms,
            ended_ms: None,
            exchanges: None,
        });
        let mut e = Event::new(
            now_ms,
            "interval_started",
            "info",
            format!(
                "interval {number} started with {}",
                count(clients, "client")
            ),
        );
        e.interval = Some(number);
        self.event(e);
    }

    /// Notes the end of interval `number` after `done` exchanges.
    pub fn interval_ended(&mut self, now_ms: u64, number: u32, done: u64) {
        if let Some(r) = self.intervals.iter_mut().rev().find(|r| r.number == number) {
            r.ended_ms = Some(now_ms);
            r.exchanges = Some(done);
        }
        let mut e = Event::new(
            now_ms,
            "interval_ended",
            "info",
            format!("interval {number} ended after {}", count(done, "exchange")),
        );
        e.interval = Some(number);
        self.event(e);
    }

    /// Adds an event, forgetting the oldest beyond [`EVENTS`].
    pub fn event(&mut self, e: Event) {
        if self.events.len() == EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// The document for `now_ms`, from the last sample's counters.
    pub fn report(&self, now_ms: u64) -> Report {
        let c = &self.last;
        let interval = c.interval.map(|(number, clients)| IntervalNow {
            number,
            clients,
            started_ms: self
                .intervals
                .back()
                .filter(|r| r.number == number && r.ended_ms.is_none())
                .map(|r| r.started_ms),
            exchanges: c.exchanges.saturating_sub(self.interval_base),
        });
        Report {
            version: VERSION,
            now_ms,
            started_ms: self.started_ms,
            relay: self.relay.clone(),
            online: c.online,
            state: c.state.clone(),
            interval,
            reserved_slots: c.reserved_slots,
            rates: self.rates,
            totals: Totals {
                exchanges: c.exchanges,
                up_bytes: c.up_bytes,
                down_bytes: c.down_bytes,
            },
            exit: c.exit,
            probe: Probe {
                what: PROBE.to_string(),
                rtt_ms: self.rtt_last,
            },
            history: History {
                period_ms: PERIOD.as_millis() as u64,
                samples: self.samples.iter().copied().collect(),
            },
            intervals: self.intervals.iter().copied().collect(),
            events: self.events.iter().cloned().collect(),
        }
    }

    /// The document for `now_ms` as JSON.
    pub fn json(&self, now_ms: u64) -> String {
        // Plain data of numbers and strings: serialising it cannot fail.
        serde_json::to_string(&self.report(now_ms)).unwrap_or_else(|_| "{}".to_string())
    }
}

/// `n` and `noun`, the noun plural unless `n` is one.
fn count(n: u64, noun: &str) -> String {
    crate::console::count(n, noun)
}

/// The relay's own probe: the time from sending an exchange's request to the clients to
/// decoding that exchange. Exchanges of an interval are issued and decoded in order, so
/// the times of issued, not yet decoded exchanges wait in a queue; when an interval ends,
/// its exchanges in flight are forgotten ([`ExchangeProbe::reset`]).
#[derive(Debug, Default)]
pub struct ExchangeProbe {
    issued: VecDeque<std::time::Instant>,
    decoded: u64,
}

/// Issued exchanges remembered at most (far above any window).
const PROBE_QUEUE: usize = 1024;

impl ExchangeProbe {
    /// Notes a request of a new exchange sent to the clients at `now`.
    pub fn issued(&mut self, now: std::time::Instant) {
        if self.issued.len() == PROBE_QUEUE {
            self.issued.clear();
        }
        self.issued.push_back(now);
    }

    /// Takes the relay's count of decoded exchanges at `now`; returns the round trip of the
    /// newest exchange decoded since the last call, if any.
    pub fn decoded(&mut self, decoded: u64, now: std::time::Instant) -> Option<Duration> {
        let new = decoded.saturating_sub(self.decoded);
        self.decoded = decoded;
        if new == 0 {
            return None;
        }
        if new as usize > self.issued.len() {
            // Exchanges issued before the probe saw them: start afresh.
            self.issued.clear();
            return None;
        }
        let mut last = None;
        for _ in 0..new {
            last = self.issued.pop_front();
        }
        last.map(|t| now.saturating_duration_since(t))
    }

    /// Forgets the issued exchanges (an interval ended: they will not be decoded).
    pub fn reset(&mut self, decoded: u64) {
        self.issued.clear();
        self.decoded = decoded;
    }
}

/// Parses a `--status` value: `HOST:PORT`, or a bare port meaning `127.0.0.1:PORT`; port 0
/// takes any free port (printed in the log once bound).
pub fn parse_listen(s: &str) -> Result<HostPort, AddrError> {
    let any_port = |host: &str| -> Result<HostPort, AddrError> {
        Ok(format!("{host}:1").parse::<HostPort>()?.with_port(0))
    };
    if s == "0" {
        return any_port("127.0.0.1");
    }
    match s.strip_suffix(":0") {
        Some(host) if !host.is_empty() => any_port(host),
        _ => crate::metrics::parse_listen(s),
    }
}

/// Binds `addr` and serves the page and the document published on `feed` there, in a
/// background task; returns the bound address.
pub async fn serve(addr: &HostPort, feed: watch::Receiver<Arc<str>>) -> Result<SocketAddr> {
    let listen = crate::metrics::loopback_unless_written(
        addr,
        "--status",
        "the status page",
        "the relay's traffic figures and its nodes' comings and goings",
    )
    .await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("--status: cannot listen on {listen}"))?;
    let bound = listener.local_addr()?;
    let guard = Arc::new(HostGuard {
        on: bound.ip().is_loopback(),
        name: match addr.host() {
            Host::Name(n) => Some(n.to_ascii_lowercase()),
            Host::Ip(_) => None,
        },
    });
    tokio::spawn(http::serve(
        listener,
        MAX_REQUESTS,
        REQUEST_TIMEOUT,
        move |stream| answer(stream, feed.clone(), guard.clone()),
    ));
    tracing::info!("status page at http://{bound}/");
    Ok(bound)
}

/// Which `Host` headers a page on loopback answers.
struct HostGuard {
    /// Whether the page is on loopback (beyond it, the user chose who may read it).
    on: bool,
    /// The name given to `--status`, if one was.
    name: Option<String>,
}

/// Reads one request and answers it; errors only end the connection.
async fn answer(mut stream: TcpStream, feed: watch::Receiver<Arc<str>>, guard: Arc<HostGuard>) {
    let reply = match http::read_request_host(&mut stream).await {
        Ok((RequestHead::Get(path), host)) => {
            if guard.on && !host_allowed(host.as_deref(), guard.name.as_deref()) {
                response(
                    "403 Forbidden",
                    "text/plain",
                    "this page answers to its IP address or localhost only (a guard \
                     against other sites' names pointed at this machine)\n",
                )
            } else {
                let doc = feed.borrow().clone();
                route(&path, &doc)
            }
        }
        Ok((RequestHead::Other, _)) => {
            response("405 Method Not Allowed", "text/plain", "GET only\n")
        }
        Err(_) => response("400 Bad Request", "text/plain", "bad request\n"),
    };
    http::reply(stream, reply).await
}

/// The response to `GET path`, with `doc` the current JSON document.
fn route(path: &str, doc: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    match path {
        "/" | "/index.html" => response("200 OK", "text/html; charset=utf-8", PAGE),
        "/status.json" => response("200 OK", "application/json", doc),
        _ => response("404 Not Found", "text/plain", "try / or /status.json\n"),
    }
}

/// A response that closes the connection, with headers that keep the page to itself: no
/// caching, nothing loaded from elsewhere, no framing, no sniffing.
fn response(status: &str, content_type: &str, body: &str) -> String {
    http::response(
        status,
        content_type,
        "Cache-Control: no-store\r\n\
         Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; \
         style-src 'unsafe-inline'; connect-src 'self'; img-src data:; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'none'\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\n",
        body,
    )
}

/// Whether a request for `Host: host` may be answered: an IP address, `localhost`, or the
/// name the status page was given (anything else is another site's name pointed here).
fn host_allowed(host: Option<&str>, name: Option<&str>) -> bool {
    let Some(host) = host else {
        // HTTP/1.0 without Host: not a browser of today.
        return true;
    };
    let host = host.to_ascii_lowercase();
    let bare = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default().to_string(),
        None => host.rsplit_once(':').map_or(host.clone(), |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h.to_string()
            } else {
                host.clone()
            }
        }),
    };
    bare.parse::<std::net::IpAddr>().is_ok()
        || bare == "localhost"
        || name.is_some_and(|n| n == bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RelayInfo {
        RelayInfo {
            listen: "127.0.0.1:12345".into(),
            clients: 10,
            trustees: 3,
            cell_length: 1024,
            max_cell_length: 32768,
            exit: "socks5".into(),
        }
    }

    fn counters(exchanges: u64, up: u64, down: u64) -> Counters {
        Counters {
            exchanges,
            up_bytes: up,
            down_bytes: down,
            online: Online {
                clients: 9,
                trustees: 3,
            },
            interval: Some((7, 9)),
            reserved_slots: 2,
            exit: ExitFigures {
                open: 4,
                refused: 1,
                failed: 2,
                refused_at_caps: 0,
            },
            state: "running".into(),
        }
    }

    #[test]
    fn rates_totals_and_the_interval_come_from_the_samples() {
        let mut b = Board::new(info(), 1_000);
        b.sample(2_000, counters(100, 5_000, 20_000));
        b.interval_started(2_100, 7, 9, 100);
        b.round_trip(Duration::from_millis(4));
        b.round_trip(Duration::from_millis(6));
        b.sample(4_000, counters(300, 9_000, 60_000));
        let r = b.report(4_500);
        assert_eq!(r.version, VERSION);
        assert_eq!((r.now_ms, r.started_ms), (4_500, 1_000));
        // Two seconds between the samples.
        assert_eq!(r.rates.exchanges_per_s, 100.0);
        assert_eq!(r.rates.up_bytes_per_s, 2_000.0);
        assert_eq!(r.rates.down_bytes_per_s, 20_000.0);
        assert_eq!(
            r.totals,
            Totals {
                exchanges: 300,
                up_bytes: 9_000,
                down_bytes: 60_000
            }
        );
        let i = r.interval.unwrap();
        assert_eq!((i.number, i.clients, i.exchanges), (7, 9, 200));
        assert_eq!(i.started_ms, Some(2_100));
        assert_eq!(r.probe.rtt_ms, Some(5.0));
        assert_eq!(r.history.samples.len(), 2);
        assert_eq!(r.history.samples[1].rtt_ms, Some(5.0));
        assert_eq!(r.history.samples[0].rtt_ms, None);
        assert_eq!(r.exit.failed, 2);
        assert_eq!(r.events.len(), 1);
        assert_eq!(r.events[0].text, "interval 7 started with 9 clients");
        assert_eq!(r.events[0].interval, Some(7));

        // A period without a round trip keeps the last one for the figure, none in history.
        b.sample(5_000, counters(300, 9_000, 60_000));
        let r = b.report(5_000);
        assert_eq!(r.probe.rtt_ms, Some(5.0));
        assert_eq!(r.history.samples[2].rtt_ms, None);
        assert_eq!(r.rates.exchanges_per_s, 0.0);
    }

    #[test]
    fn the_json_has_every_field_the_page_reads_and_round_trips() {
        let mut b = Board::new(info(), 0);
        b.interval_started(10, 3, 1, 0);
        b.interval_ended(20, 3, 1);
        b.event(Event::new(
            30,
            "dropped",
            "warn",
            "client-2 dropped: too slow".into(),
        ));
        b.sample(1_000, counters(10, 1, 2));
        let text = b.json(1_000);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for path in [
            "/version",
            "/now_ms",
            "/started_ms",
            "/relay/listen",
            "/relay/clients",
            "/relay/trustees",
            "/relay/exit",
            "/online/clients",
            "/online/trustees",
            "/state",
            "/interval/number",
            "/interval/clients",
            "/reserved_slots",
            "/rates/exchanges_per_s",
            "/rates/up_bytes_per_s",
            "/rates/down_bytes_per_s",
            "/totals/exchanges",
            "/totals/up_bytes",
            "/totals/down_bytes",
            "/exit/open",
            "/exit/refused",
            "/exit/failed",
            "/exit/refused_at_caps",
            "/probe/what",
            "/probe/rtt_ms",
            "/history/period_ms",
            "/history/samples/0/t_ms",
            "/history/samples/0/exchanges_per_s",
            "/history/samples/0/up_bytes_per_s",
            "/history/samples/0/down_bytes_per_s",
            "/history/samples/0/clients",
            "/history/samples/0/trustees",
            "/history/samples/0/rtt_ms",
            "/intervals/0/number",
            "/intervals/0/ended_ms",
            "/intervals/0/exchanges",
            "/events/0/t_ms",
            "/events/0/kind",
            "/events/0/level",
            "/events/0/text",
        ] {
            assert!(v.pointer(path).is_some(), "{path} missing in {text}");
        }
        // Singular where it is one.
        assert_eq!(v["events"][0]["text"], "interval 3 started with 1 client");
        assert_eq!(v["events"][1]["text"], "interval 3 ended after 1 exchange");
        // Empty optional fields are left out, not null.
        assert!(v["events"][2].get("node").is_none(), "{text}");
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, b.report(1_000));
    }

    #[test]
    fn a_blame_event_fits_the_events_list_and_old_readers_read_it() {
        let mut b = Board::new(info(), 0);
        let mut blame = Event::new(
            5,
            "blame",
            "warn",
            "exchange 42 of interval 7 was disrupted by client-3".into(),
        );
        blame.interval = Some(7);
        blame.exchange = Some(42);
        blame.node = Some("client-3".into());
        b.event(blame.clone());
        let v: serde_json::Value = serde_json::from_str(&b.json(5)).unwrap();
        assert_eq!(v["events"][0]["kind"], "blame");
        assert_eq!(v["events"][0]["exchange"], 42);
        assert_eq!(v["events"][0]["node"], "client-3");
        // A document with fields this reader does not know still reads.
        let mut v = v;
        v["events"][0]["proof"] = serde_json::json!("00ff");
        v["future_section"] = serde_json::json!({"x": 1});
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back.events[0], blame);
    }

    #[test]
    fn nothing_in_the_document_is_per_slot() {
        let mut b = Board::new(info(), 0);
        b.sample(1_000, counters(1, 1, 1));
        let v: serde_json::Value = serde_json::from_str(&b.json(1_000)).unwrap();
        // The only slot figure is the count of reserved slots.
        let mut keys = Vec::new();
        fn walk(v: &serde_json::Value, keys: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        keys.push(k.clone());
                        walk(v, keys);
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, keys)),
                _ => {}
            }
        }
        walk(&v, &mut keys);
        let slotty: Vec<&String> = keys
            .iter()
            .filter(|k| k.contains("slot") || k.contains("conn"))
            .collect();
        assert!(slotty.iter().all(|k| *k == "reserved_slots"), "{slotty:?}");
    }

    #[test]
    fn history_intervals_and_events_are_bounded() {
        let mut b = Board::new(info(), 0);
        for i in 0..(HISTORY as u64 + 50) {
            b.sample(1_000 * (i + 1), counters(i, i, i));
        }
        for i in 0..(INTERVALS as u32 + 5) {
            b.interval_started(u64::from(i), i, 2, 0);
        }
        for i in 0..(EVENTS as u64 + 7) {
            b.event(Event::new(i, "joined", "info", format!("e{i}")));
        }
        let r = b.report(0);
        assert_eq!(r.history.samples.len(), HISTORY);
        assert_eq!(
            r.history.samples.last().unwrap().t_ms,
            1_000 * (HISTORY as u64 + 50)
        );
        assert_eq!(r.intervals.len(), INTERVALS);
        assert_eq!(r.intervals.last().unwrap().number, INTERVALS as u32 + 4);
        assert_eq!(r.events.len(), EVENTS);
        assert_eq!(r.events.last().unwrap().text, format!("e{}", EVENTS + 6));
    }

    #[test]
    fn the_probe_times_each_exchange_from_issue_to_decode() {
        let t0 = std::time::Instant::now();
        let ms = Duration::from_millis;
        let mut p = ExchangeProbe::default();
        p.issued(t0);
        p.issued(t0 + ms(2));
        p.issued(t0 + ms(4));
        assert_eq!(p.decoded(0, t0 + ms(5)), None);
        assert_eq!(p.decoded(1, t0 + ms(10)), Some(ms(10)));
        // Two at once: the newer one's round trip.
        assert_eq!(p.decoded(3, t0 + ms(12)), Some(ms(8)));
        // More decoded than issued: no guess.
        assert_eq!(p.decoded(5, t0 + ms(13)), None);
        p.issued(t0 + ms(20));
        p.reset(9);
        assert_eq!(p.decoded(10, t0 + ms(30)), None);
        p.issued(t0 + ms(40));
        assert_eq!(p.decoded(11, t0 + ms(41)), Some(ms(1)));
    }

    #[test]
    fn listen_values_and_hosts() {
        assert_eq!(parse_listen("0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(parse_listen("8080").unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(
            parse_listen("localhost:0").unwrap().to_string(),
            "localhost:0"
        );
        assert_eq!(parse_listen("[::1]:0").unwrap().to_string(), "[::1]:0");
        for bad in ["", ":0", "x", "70000", "host:x"] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
        for ok in [
            None,
            Some("127.0.0.1:8080"),
            Some("[::1]:8080"),
            Some("localhost:8080"),
            Some("LOCALHOST"),
            Some("10.0.0.5"),
        ] {
            assert!(host_allowed(ok, None), "{ok:?}");
        }
        for bad in ["evil.example:8080", "localhost.evil.example", "status"] {
            assert!(!host_allowed(Some(bad), None), "{bad}");
        }
        assert!(host_allowed(Some("status:8080"), Some("status")));
    }

    #[test]
    fn routes() {
        let page = route("/", "{}");
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("text/html"), "{page}");
        assert!(page.contains("Content-Security-Policy: default-src 'none'"));
        assert!(page.ends_with(PAGE));
        let doc = route("/status.json?t=1", "{\"version\":1}");
        assert!(doc.contains("application/json") && doc.ends_with("{\"version\":1}"));
        assert!(route("/other", "{}").starts_with("HTTP/1.1 404 "));
        // The page loads nothing from elsewhere.
        for outside in ["http://", "https://", "//cdn", "<link", "src="] {
            assert!(!PAGE.contains(outside), "the page refers to {outside}");
        }
    }
}
