//! Prometheus metrics: every metric's name in one place, and the `--metrics` endpoint.
//!
//! Roles record through the small functions below (`metrics::exchanges(1)`,
//! `metrics::online_clients(n)`, ...). They always work: values go to process-wide atomics
//! whether or not [`serve`] was started, so a role never checks whether metrics are on.
//! Counters only go up (`_total` in the output); gauges are set to the current value.
//!
//! [`serve`] answers `GET /metrics` (and `GET /`) with the OpenMetrics text format, which
//! Prometheus scrapes natively. Each scrape is one short HTTP/1.1 exchange, closed after
//! the response. Names carry the `dissent_` prefix:
//!
//! | function | metric | kind |
//! |---|---|---|
//! | [`exchanges`] | `dissent_exchanges_total` | counter |
//! | [`garbled`] | `dissent_garbled_exchanges_total` | counter |
//! | [`bytes_up`] | `dissent_upstream_bytes_total` | counter |
//! | [`bytes_down`] | `dissent_downstream_bytes_total` | counter |
//! | [`online_clients`] | `dissent_online_clients` | gauge |
//! | [`interval`] | `dissent_interval` | gauge |
//! | [`anonymity_set`] | `dissent_anonymity_set` | gauge |
//! | [`reserved_slots`] | `dissent_reserved_slots` | gauge |
//! | [`queue_depth`] | `dissent_queue_depth{queue=NAME}` | gauge |
//! | [`exit_connections`] | `dissent_exit_connections` | gauge |
//! | [`exit_refused`] | `dissent_exit_refused_total` | counter |
//! | [`exit_failed`] | `dissent_exit_failed_total` | counter |
//! | [`link_events`] | `dissent_link_events_total{kind=KIND}` | counter |
//!
//! What an endpoint shows can describe the traffic of a node (a client's byte counters are
//! its user's activity), so `--metrics` listens on loopback unless the user writes another
//! IP address; see [`listen_address`].

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::{TcpListener, TcpStream};

use crate::config::addr::{AddrError, Host, HostPort};
use crate::http::{self, RequestHead};

/// Prefix of every metric name.
const PREFIX: &str = "dissent";
/// Time a scraper has to send its request and take the response.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes answered at once; further connections wait for a turn.
const MAX_SCRAPES: usize = 8;
/// OpenMetrics text, as Prometheus asks for it.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label set with one label.
type Label = [(&'static str, &'static str); 1];

/// Every metric of the process, registered once.
struct Metrics {
    registry: Registry,
    exchanges: Counter,
    garbled: Counter,
    bytes_up: Counter,
    bytes_down: Counter,
    online_clients: Gauge,
    interval: Gauge,
    anonymity_set: Gauge,
    reserved_slots: Gauge,
    queue_depth: Family<Label, Gauge>,
    exit_connections: Gauge,
    exit_refused: Counter,
    exit_failed: Counter,
    link_events: Family<Label, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let mut counter = |name: &str, help: &str, unit: Option<Unit>| {
            let c = Counter::default();
            match unit {
                Some(unit) => registry.register_with_unit(name, help, unit, c.clone()),
                None => registry.register(name, help, c.clone()),
            }
            c
        };
        let exchanges = counter("exchanges", "DC-net exchanges completed", None);
        let garbled = counter(
            "garbled_exchanges",
            "Exchanges whose output decoded to garbage (a disruption, or nodes shown different views)",
            None,
        );
        let bytes_up = counter(
            "upstream",
            "Payload bytes sent towards the exit",
            Some(Unit::Bytes),
        );
        let bytes_down = counter(
            "downstream",
            "Payload bytes received from the exit",
            Some(Unit::Bytes),
        );
        let exit_refused = counter(
            "exit_refused",
            "Exit requests refused by the exit policy",
            None,
        );
        let exit_failed = counter(
            "exit_failed",
            "Exit connections to allowed destinations that failed",
            None,
        );
        let mut gauge = |name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let online_clients = gauge("online_clients", "Clients online in the current interval");
        let interval = gauge("interval", "Number of the current interval");
        let anonymity_set = gauge(
            "anonymity_set",
            "Clients among whom this client's slot is hidden (online in every interval it sent in)",
        );
        let reserved_slots = gauge("reserved_slots", "Slots reserved for coming exchanges");
        let exit_connections = gauge("exit_connections", "Open exit connections");
        let queue_depth = Family::<Label, Gauge>::default();
        registry.register(
            "queue_depth",
            "Items waiting in a named queue",
            queue_depth.clone(),
        );
        let link_events = Family::<Label, Counter>::default();
        registry.register("link_events", "Link events by kind", link_events.clone());
        Metrics {
            registry,
            exchanges,
            garbled,
            bytes_up,
            bytes_down,
            online_clients,
            interval,
            anonymity_set,
            reserved_slots,
            queue_depth,
            exit_connections,
            exit_refused,
            exit_failed,
            link_events,
        }
    }
}

/// Sets `dissent_anonymity_set`: the size of this client's slot's anonymity set.
pub fn anonymity_set(n: u64) {
    metrics().anonymity_set.set(gauge_value(n));
}

/// The process's metrics, registered on first use.
fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// A count as a gauge value, saturating (no count here comes near `i64::MAX`).
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Counts `n` more completed exchanges.
pub fn exchanges(n: u64) {
    metrics().exchanges.inc_by(n);
}

/// Counts one more exchange whose output decoded to garbage.
pub fn garbled() {
    metrics().garbled.inc();
}

/// Counts `n` more payload bytes sent upstream (towards the exit).
pub fn bytes_up(n: u64) {
    metrics().bytes_up.inc_by(n);
}

/// Counts `n` more payload bytes received downstream (from the exit).
pub fn bytes_down(n: u64) {
    metrics().bytes_down.inc_by(n);
}

/// Sets the number of clients online in the current interval.
pub fn online_clients(n: u64) {
    metrics().online_clients.set(gauge_value(n));
}

/// Sets the current interval's number.
pub fn interval(i: u64) {
    metrics().interval.set(gauge_value(i));
}

/// Sets the number of reserved slots.
pub fn reserved_slots(n: u64) {
    metrics().reserved_slots.set(gauge_value(n));
}

/// Sets the depth of the queue called `name` (a fixed name, e.g. `"relay_send"`).
pub fn queue_depth(name: &'static str, n: u64) {
    metrics()
        .queue_depth
        .get_or_create(&[("queue", name)])
        .set(gauge_value(n));
}

/// Sets the number of open exit connections.
pub fn exit_connections(n: u64) {
    metrics().exit_connections.set(gauge_value(n));
}

/// Counts `n` more exit requests refused by the exit policy.
pub fn exit_refused(n: u64) {
    metrics().exit_refused.inc_by(n);
}

/// Counts `n` more exit connections to allowed destinations that failed.
pub fn exit_failed(n: u64) {
    metrics().exit_failed.inc_by(n);
}

/// Counts one link event of `kind` (a fixed name, e.g. `"connected"`, `"lost"`).
pub fn link_events(kind: &'static str) {
    metrics().link_events.get_or_create(&[("kind", kind)]).inc();
}

/// The current metrics in the OpenMetrics text format.
pub fn render() -> String {
    let mut text = String::new();
    // Writing into a String cannot fail, and the registry holds only well-formed metrics.
    if encode(&mut text, &metrics().registry).is_err() {
        text.clear();
    }
    text
}

/// Parses a `--metrics` value: `HOST:PORT`, or a bare port meaning `127.0.0.1:PORT`;
/// port 0 takes a free port (the log line names it).
pub fn parse_listen(s: &str) -> Result<HostPort, AddrError> {
    let s = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        format!("127.0.0.1:{s}")
    } else {
        s.to_owned()
    };
    match s.strip_suffix(":0") {
        Some(host) => Ok(format!("{host}:1").parse::<HostPort>()?.with_port(0)),
        None => s.parse(),
    }
}

/// The socket address to serve metrics on.
///
/// A literal IP address is taken as written: serving beyond loopback is the user's choice,
/// and is logged as a warning. A name must resolve to loopback addresses only (so
/// `localhost:9100` works), since a name is no explicit choice of where metrics are seen.
pub async fn listen_address(addr: &HostPort) -> anyhow::Result<SocketAddr> {
    loopback_unless_written(addr, "--metrics", "metrics", "this node's traffic counters").await
}

/// The socket address to serve `what` on for `option ADDR`, as [`listen_address`] decides
/// it: a literal IP address as written (beyond loopback with a warning that anyone who
/// reaches it sees `shows`), a name only if it resolves to loopback.
pub async fn loopback_unless_written(
    addr: &HostPort,
    option: &str,
    what: &str,
    shows: &str,
) -> anyhow::Result<SocketAddr> {
    match addr.host() {
        Host::Ip(ip) => {
            if !ip.is_loopback() {
                tracing::warn!(
                    "serving {what} on {addr}, beyond this machine: anyone who can reach it \
                     sees {shows}"
                );
            }
            Ok(SocketAddr::new(*ip, addr.port()))
        }
        Host::Name(_) => {
            let found: Vec<SocketAddr> = tokio::net::lookup_host(addr.to_string())
                .await
                .with_context(|| format!("{option} {addr}: cannot resolve the name"))?
                .collect();
            let Some(first) = found.first() else {
                bail!("{option} {addr}: the name has no address");
            };
            if let Some(other) = found.iter().find(|a| !a.ip().is_loopback()) {
                bail!(
                    "{option} {addr}: the name resolves to {}, which is not a loopback \
                     address; to serve {what} beyond this machine write the IP address \
                     itself (e.g. {option} {}:{})",
                    other.ip(),
                    other.ip(),
                    addr.port()
                );
            }
            Ok(*first)
        }
    }
}

/// Binds `addr` (see [`listen_address`]) and serves the metrics there in a background task.
///
/// Returns the bound address. Must be called inside a tokio runtime; the task runs until
/// the runtime stops.
pub async fn serve(addr: &HostPort) -> anyhow::Result<SocketAddr> {
    serve_at(listen_address(addr).await?).await
}

/// Binds `listen` and serves the metrics there in a background task.
async fn serve_at(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("--metrics: cannot listen on {listen}"))?;
    let bound = listener.local_addr()?;
    // Register every metric now, so the first scrape lists them all.
    metrics();
    tokio::spawn(serve_on(listener));
    tracing::info!("serving metrics at http://{bound}/metrics");
    Ok(bound)
}

/// Answers scrapes on `listener` forever, a few at a time.
async fn serve_on(listener: TcpListener) {
    http::serve(listener, MAX_SCRAPES, SCRAPE_TIMEOUT, answer).await
}

/// Reads one request head and answers it; errors only end the connection.
async fn answer(mut stream: TcpStream) {
    let reply = match http::read_request(&mut stream).await {
        Ok(RequestHead::Get(path)) if path == "/metrics" || path == "/" => {
            response("200 OK", CONTENT_TYPE, &render())
        }
        Ok(RequestHead::Get(_)) => response("404 Not Found", "text/plain", "try /metrics\n"),
        Ok(RequestHead::Other) => response("405 Method Not Allowed", "text/plain", "GET only\n"),
        Err(_) => response("400 Bad Request", "text/plain", "bad request\n"),
    };
    http::reply(stream, reply).await
}

/// A complete HTTP/1.1 response that closes the connection.
fn response(status: &str, content_type: &str, body: &str) -> String {
    http::response(status, content_type, "", body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::MAX_HEAD as MAX_REQUEST_HEAD;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::timeout;

    /// Sends `request` to `addr` and returns the whole response (the server closes).
    async fn fetch(addr: SocketAddr, request: &[u8]) -> String {
        let exchange = async {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request).await.unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            String::from_utf8(out).unwrap()
        };
        timeout(Duration::from_secs(10), exchange)
            .await
            .expect("the metrics server answers within 10 s")
    }

    /// The value of the sample line starting with `name ` in `text`.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[tokio::test]
    async fn scrape_shows_recorded_values() {
        let addr = serve_at("127.0.0.1:0".parse().unwrap()).await.unwrap();
        // Other tests of this binary may record too: counters are checked as lower bounds,
        // labelled series (named for this test only) exactly.
        exchanges(7);
        bytes_up(1000);
        bytes_down(2000);
        exit_refused(3);
        exit_failed(4);
        garbled();
        online_clients(42);
        interval(5);
        anonymity_set(4);
        reserved_slots(2);
        exit_connections(9);
        queue_depth("metrics_test_queue", 12_345);
        queue_depth("metrics_test_other", 1);
        queue_depth("metrics_test_other", 6);
        for _ in 0..3 {
            link_events("metrics_test_kind");
        }
        let reply = fetch(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(CONTENT_TYPE), "{head}");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");
        for (name, at_least) in [
            ("dissent_exchanges_total", 7.0),
            ("dissent_upstream_bytes_total", 1000.0),
            ("dissent_downstream_bytes_total", 2000.0),
            ("dissent_exit_refused_total", 3.0),
            ("dissent_exit_failed_total", 4.0),
            ("dissent_garbled_exchanges_total", 1.0),
        ] {
            let v = sample(body, name).unwrap_or_else(|| panic!("{name} missing:\n{body}"));
            assert!(v >= at_least, "{name} = {v}, expected at least {at_least}");
        }
        for name in [
            "dissent_online_clients",
            "dissent_interval",
            "dissent_anonymity_set",
            "dissent_reserved_slots",
            "dissent_exit_connections",
        ] {
            assert!(sample(body, name).is_some(), "{name} missing:\n{body}");
            assert!(body.contains(&format!("# TYPE {name} gauge")), "{body}");
        }
        assert!(body.contains("# TYPE dissent_exchanges counter"), "{body}");
        assert!(
            body.contains("# UNIT dissent_upstream_bytes bytes"),
            "{body}"
        );
        for (series, want) in [
            (
                "dissent_queue_depth{queue=\"metrics_test_queue\"}",
                12_345.0,
            ),
            ("dissent_queue_depth{queue=\"metrics_test_other\"}", 6.0),
            ("dissent_link_events_total{kind=\"metrics_test_kind\"}", 3.0),
        ] {
            assert_eq!(sample(body, series), Some(want), "{series}:\n{body}");
        }

        // A later scrape sees later values; `/` is the same page.
        link_events("metrics_test_kind");
        let again = fetch(addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert_eq!(
            sample(
                &again,
                "dissent_link_events_total{kind=\"metrics_test_kind\"}"
            ),
            Some(4.0)
        );
    }

    #[tokio::test]
    async fn scrape_refuses_what_it_does_not_serve() {
        let addr = serve_at("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let cases: [(&[u8], &str); 4] = [
            (b"GET /other HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "),
            (b"POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 "),
            (b"\x00\x01garbage\r\n\r\n", "HTTP/1.1 400 "),
            // A head longer than the limit is refused, not buffered without end.
            (&[b'A'; MAX_REQUEST_HEAD + 10], "HTTP/1.1 400 "),
        ];
        for (request, status) in cases {
            let reply = fetch(addr, request).await;
            assert!(reply.starts_with(status), "{status}: {reply}");
            assert!(!reply.contains("dissent_"), "{reply}");
        }
        // A request cut short is refused, and the server keeps serving.
        {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metr").await.unwrap();
            s.shutdown().await.unwrap();
            let mut out = Vec::new();
            timeout(Duration::from_secs(10), s.read_to_end(&mut out))
                .await
                .unwrap()
                .unwrap();
            assert!(out.starts_with(b"HTTP/1.1 400 "), "{out:?}");
        }
        let ok = fetch(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
    }

    #[test]
    fn listen_values() {
        assert_eq!(parse_listen("9100").unwrap().to_string(), "127.0.0.1:9100");
        assert_eq!(
            parse_listen("[::1]:9100").unwrap().to_string(),
            "[::1]:9100"
        );
        assert_eq!(
            parse_listen("localhost:9100").unwrap().to_string(),
            "localhost:9100"
        );
        // Port 0: a free port the system picks.
        assert_eq!(parse_listen("0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(parse_listen("[::1]:0").unwrap().to_string(), "[::1]:0");
        for bad in ["", ":0", "70000", "127.0.0.1", "host:x", "host:00"] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn listen_addresses() {
        let literal = listen_address(&parse_listen("10.1.2.3:9100").unwrap())
            .await
            .unwrap();
        assert_eq!(literal, "10.1.2.3:9100".parse().unwrap());
        let local = listen_address(&parse_listen("localhost:9100").unwrap())
            .await
            .unwrap();
        assert!(local.ip().is_loopback() && local.port() == 9100, "{local}");
    }
}
