//! `bench load`: HTTP requests at a fixed rate through SOCKS5 proxies, the figure a browsing
//! user feels (the 2014 prototype's `test_client.py`, redone).
//!
//! Open loop: request `k` of a run is due `k / rate` seconds after the start, whatever
//! happened to the earlier ones, and goes through proxy `k mod P`. It opens a SOCKS5 CONNECT
//! to the target, sends `GET /SIZE/SEED` with `Connection: close`, and reads the whole
//! response, checking every body byte against [`fill_body`]. Its latency runs from when it
//! was due to its last body byte, so a late scheduler or a queue shows in the figures
//! instead of hiding. At most `max_outstanding` requests run at once; one that falls due
//! while that many are running fails as `overloaded` (the load is not slowed down to suit
//! the system). A run starts requests for `duration`, or until its stop future resolves,
//! then gives those still running up to `drain` to finish, and reports.
//!
//! [`serve_http`] is the matching HTTP server, on 127.0.0.1 only: it answers `GET /SIZE/SEED`
//! with SIZE deterministic bytes that depend on SEED (the request's number), so a response
//! delivered to the wrong connection fails the check as well as a changed byte does.

use std::fmt;
use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};

use crate::http::{self, HeadError, RequestHead, MAX_HEAD, MAX_HEADERS};
use crate::process;

/// Largest body [`serve_http`] sends and [`run_load`] asks for.
pub const MAX_BODY: u64 = 64 * 1024 * 1024;
/// Bytes read or written per call on a body.
const CHUNK: usize = 16 * 1024;
/// Time the test server gives a client to send its request.
const SERVER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Between progress lines when stderr is not a terminal.
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(5);
/// Between progress bar updates on a terminal.
const PROGRESS_BAR_EVERY: Duration = Duration::from_millis(200);
/// Latencies recorded, in microseconds: 1 µs to one hour, 3 significant digits.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// What a load run does.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// SOCKS5 proxies, used in turn (the DC-net clients' local ports).
    pub proxies: Vec<SocketAddr>,
    /// The HTTP server, as the proxies' exit reaches it.
    pub target: SocketAddr,
    /// Requests started per second, at least 1.
    pub rate: u32,
    /// How long requests are started for.
    pub duration: Duration,
    /// Body bytes per response, at most [`MAX_BODY`].
    pub size: u64,
    /// Requests running at once, at most (at least 1).
    pub max_outstanding: usize,
    /// Time from when a request is due to its last byte before it fails as a timeout.
    pub timeout: Duration,
    /// Time the requests still running when starting stops may take to finish.
    pub drain: Duration,
    /// Show progress on stderr: a bar on a terminal, else a line every few seconds.
    pub progress: bool,
}

impl LoadOptions {
    /// 10 requests per second for 10 s of 1 KiB bodies, at most 1024 running, 10 s timeout
    /// and drain, with progress.
    pub fn new(proxies: Vec<SocketAddr>, target: SocketAddr) -> LoadOptions {
        LoadOptions {
            proxies,
            target,
            rate: 10,
            duration: Duration::from_secs(10),
            size: 1024,
            max_outstanding: 1024,
            timeout: Duration::from_secs(10),
            drain: Duration::from_secs(10),
            progress: true,
        }
    }

    /// Requests a full run starts: `rate × duration`, rounded down.
    pub fn scheduled(&self) -> u64 {
        let n = u128::from(self.rate) * self.duration.as_nanos() / 1_000_000_000;
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// When request `k` is due, after the start.
    fn due(&self, k: u64) -> Duration {
        let nanos = u128::from(k) * 1_000_000_000 / u128::from(self.rate.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Failed requests, by why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Failures {
    /// The proxy could not be reached, or its SOCKS5 handshake broke off.
    pub connect: u64,
    /// The proxy answered the CONNECT with an error (e.g. refused by its exit policy).
    pub refused: u64,
    /// No complete response within the timeout.
    pub timeout: u64,
    /// The response was not `200` with exactly the requested bytes.
    pub bad_body: u64,
    /// The connection failed after the proxy accepted it (e.g. reset).
    pub broken: u64,
    /// Not started: `max_outstanding` requests were already running when it fell due.
    pub overloaded: u64,
    /// Still running when the drain time ran out or the run was stopped.
    pub unfinished: u64,
}

impl Failures {
    /// All failed requests.
    pub fn total(&self) -> u64 {
        self.connect
            + self.refused
            + self.timeout
            + self.bad_body
            + self.broken
            + self.overloaded
            + self.unfinished
    }

    fn count(&mut self, why: Failure) {
        let n = match why {
            Failure::Connect => &mut self.connect,
            Failure::Refused => &mut self.refused,
            Failure::Timeout => &mut self.timeout,
            Failure::BadBody => &mut self.bad_body,
            Failure::Broken => &mut self.broken,
        };
        *n += 1;
    }
}

/// Latency percentiles of completed requests, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// What a load run measured.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// Requests that fell due (`rate × duration` unless stopped early).
    pub scheduled: u64,
    /// Requests answered in full with the right bytes.
    pub completed: u64,
    /// Requests that failed, by why; `completed + failed.total() == scheduled`.
    pub failed: Failures,
    /// Due-to-last-byte latency of the completed requests (`None` when none completed).
    pub latency_ms: Option<Latency>,
    /// Seconds from the start to the end of the last request.
    pub elapsed_secs: f64,
    /// Completed requests per second of `elapsed_secs`.
    pub achieved_per_sec: f64,
    /// Body bytes received and checked.
    pub bytes: u64,
    /// Whether the stop future cut the run short.
    pub interrupted: bool,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let x = &self.failed;
        writeln!(
            f,
            "requests: {} scheduled, {} completed, {} failed{}",
            self.scheduled,
            self.completed,
            x.total(),
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )?;
        if x.total() > 0 {
            writeln!(
                f,
                "failures: {} connect, {} refused by proxy, {} timeout, {} bad body, \
                 {} broken, {} overloaded, {} unfinished",
                x.connect, x.refused, x.timeout, x.bad_body, x.broken, x.overloaded, x.unfinished
            )?;
        }
        match &self.latency_ms {
            Some(l) => writeln!(
                f,
                "latency: p50 {:.1} ms, p90 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.p50, l.p90, l.p95, l.p99, l.max
            )?,
            None => writeln!(f, "latency: no request completed")?,
        }
        write!(
            f,
            "rate: {:.1} completed/s over {:.1} s, {} body bytes checked",
            self.achieved_per_sec, self.elapsed_secs, self.bytes
        )
    }
}

/// Runs a load until its schedule ends or Ctrl-C (or SIGTERM), and reports.
pub async fn run_load(opts: LoadOptions) -> anyhow::Result<LoadReport> {
    run_load_until(opts, process::shutdown_signal()).await
}

/// Runs a load until its schedule ends or `stop` resolves, and reports.
///
/// After `stop`, no request starts; those running get up to `drain` to finish.
pub async fn run_load_until(
    opts: LoadOptions,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<LoadReport> {
    if opts.proxies.is_empty() {
        bail!("load: no SOCKS5 proxy to send requests through");
    }
    if opts.rate == 0 {
        bail!("load: the rate must be at least 1 request per second");
    }
    if opts.size > MAX_BODY {
        bail!(
            "load: bodies are at most {MAX_BODY} bytes, not {}",
            opts.size
        );
    }
    if opts.max_outstanding == 0 {
        bail!("load: at least one request must be allowed to run");
    }
    let opts = Arc::new(opts);
    let total = opts.scheduled();
    let mut tally = Tally::new()?;
    let mut progress = Progress::new(opts.progress, total);
    let permits = Arc::new(Semaphore::new(opts.max_outstanding));
    let mut running: JoinSet<Outcome> = JoinSet::new();
    let start = Instant::now();
    let mut next = 0u64;
    let mut stopped = false;
    tokio::pin!(stop);

    while next < total {
        tokio::select! {
            biased;
            () = &mut stop => {
                stopped = true;
                break;
            }
            () = sleep_until(start + opts.due(next)) => {
                // Start every request that is due, catching up if this task ran late.
                let now = Instant::now();
                while next < total && start + opts.due(next) <= now {
                    let due = start + opts.due(next);
                    match permits.clone().try_acquire_owned() {
                        Ok(permit) => {
                            running.spawn(request(opts.clone(), next, due, permit));
                        }
                        Err(_) => tally.failed.overloaded += 1,
                    }
                    tally.scheduled += 1;
                    next += 1;
                }
            }
            Some(done) = running.join_next() => tally.add(done),
            () = progress.tick() => progress.show(&tally, running.len(), false),
        }
    }

    let drain_end = Instant::now() + opts.drain;
    while !running.is_empty() {
        tokio::select! {
            biased;
            () = &mut stop, if !stopped => {
                stopped = true;
                break;
            }
            () = sleep_until(drain_end) => break,
            Some(done) = running.join_next() => tally.add(done),
            () = progress.tick() => progress.show(&tally, running.len(), true),
        }
    }
    tally.failed.unfinished += running.len() as u64;
    running.shutdown().await;
    progress.finish();
    Ok(tally.report(start.elapsed(), stopped))
}

/// Counts of a run so far.
struct Tally {
    scheduled: u64,
    completed: u64,
    failed: Failures,
    bytes: u64,
    /// Latencies of completed requests, in microseconds.
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Tally> {
        Ok(Tally {
            scheduled: 0,
            completed: 0,
            failed: Failures::default(),
            bytes: 0,
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                .context("load: latency histogram")?,
        })
    }

    fn add(&mut self, done: Result<Outcome, tokio::task::JoinError>) {
        match done {
            Ok(Outcome::Completed { latency, bytes }) => {
                self.completed += 1;
                self.bytes += bytes;
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.latency.saturating_record(us.max(1));
            }
            Ok(Outcome::Failed(why)) => self.failed.count(why),
            // A request task does not panic; if one did, it did not finish.
            Err(_) => self.failed.unfinished += 1,
        }
    }

    fn report(&self, elapsed: Duration, interrupted: bool) -> LoadReport {
        let ms = |us: u64| us as f64 / 1000.0;
        let h = &self.latency;
        let latency_ms = (self.completed > 0).then(|| Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        });
        let secs = elapsed.as_secs_f64();
        LoadReport {
            scheduled: self.scheduled,
            completed: self.completed,
            failed: self.failed,
            latency_ms,
            elapsed_secs: secs,
            achieved_per_sec: self.completed as f64 / secs.max(1e-9),
            bytes: self.bytes,
            interrupted,
        }
    }
}

/// How one request ended.
enum Outcome {
    Completed { latency: Duration, bytes: u64 },
    Failed(Failure),
}

/// Why one request failed; see [`Failures`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Connect,
    Refused,
    Timeout,
    BadBody,
    Broken,
}

/// Runs request `k`, due at `due`, holding `permit` until it ends.
async fn request(
    opts: Arc<LoadOptions>,
    k: u64,
    due: Instant,
    permit: OwnedSemaphorePermit,
) -> Outcome {
    let proxy = opts.proxies[(k % opts.proxies.len() as u64) as usize];
    let exchange = get(proxy, opts.target, opts.size, k);
    let outcome = match timeout_at(due + opts.timeout, exchange).await {
        Ok(Ok(bytes)) => Outcome::Completed {
            latency: due.elapsed(),
            bytes,
        },
        Ok(Err(why)) => Outcome::Failed(why),
        Err(_) => Outcome::Failed(Failure::Timeout),
    };
    drop(permit);
    outcome
}

/// One `GET /size/seed` to `target` through the SOCKS5 `proxy`; the checked body length.
async fn get(proxy: SocketAddr, target: SocketAddr, size: u64, seed: u64) -> Result<u64, Failure> {
    use tokio_socks::Error as E;
    let mut stream = tokio_socks::tcp::Socks5Stream::connect(proxy, target)
        .await
        .map_err(|e| match e {
            E::GeneralSocksServerFailure
            | E::ConnectionNotAllowedByRuleset
            | E::NetworkUnreachable
            | E::HostUnreachable
            | E::ConnectionRefused
            | E::TtlExpired
            | E::CommandNotSupported
            | E::AddressTypeNotSupported
            | E::UnknownError => Failure::Refused,
            _ => Failure::Connect,
        })?;
    let head =
        format!("GET /{size}/{seed} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|_| Failure::Broken)?;
    read_response(&mut stream, size, seed).await
}

/// Reads a `200` response of exactly `size` body bytes matching [`fill_body`] for `seed`.
async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    size: u64,
    seed: u64,
) -> Result<u64, Failure> {
    // Two small buffers per request, however large the body: thousands may run at once.
    let mut buf = vec![0u8; MAX_HEAD];
    let head = http::read_head(stream, &mut buf, |bytes| {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        Ok(match resp.parse(bytes)? {
            httparse::Status::Complete(head_len) => {
                Some((head_len, resp.code, content_length(resp.headers)))
            }
            httparse::Status::Partial => None,
        })
    })
    .await;
    let ((head_len, code, length), len) = match head {
        Ok(head) => head,
        Err(HeadError::Io) => return Err(Failure::Broken),
        Err(HeadError::Closed | HeadError::Malformed) => return Err(Failure::BadBody),
    };
    if code != Some(200) || length != Some(size) {
        return Err(Failure::BadBody);
    }
    let mut expected = vec![0u8; buf.len().min(usize::try_from(size).unwrap_or(usize::MAX))];
    let mut got = 0u64;
    let mut check = |bytes: &[u8], got: &mut u64| -> Result<(), Failure> {
        if bytes.len() as u64 > size - *got {
            return Err(Failure::BadBody);
        }
        let want = &mut expected[..bytes.len()];
        fill_body(seed, *got, want);
        if bytes != want {
            return Err(Failure::BadBody);
        }
        *got += bytes.len() as u64;
        Ok(())
    };
    check(&buf[head_len..len], &mut got)?;
    while got < size {
        let n = stream.read(&mut buf).await.map_err(|_| Failure::Broken)?;
        if n == 0 {
            return Err(Failure::BadBody);
        }
        check(&buf[..n], &mut got)?;
    }
    Ok(got)
}

/// The one `Content-Length` among `headers`, if there is exactly one and it is a number.
fn content_length(headers: &[httparse::Header<'_>]) -> Option<u64> {
    let mut found = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"));
    let first = found.next()?;
    if found.next().is_some() {
        return None;
    }
    let value = std::str::from_utf8(first.value).ok()?;
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Writes body bytes `offset..offset + out.len()` of the response for `seed` into `out`.
///
/// Byte `i` is byte `i mod 8` (little-endian) of a SplitMix64 output keyed by `seed` and
/// `i / 8`: cheap to make and check, and different for every request.
pub fn fill_body(seed: u64, offset: u64, out: &mut [u8]) {
    let mut i = offset;
    let mut k = 0;
    while k < out.len() {
        let word = splitmix64(seed.rotate_left(32) ^ (i / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let from = (i % 8) as usize;
        let n = (8 - from).min(out.len() - k);
        out[k..k + n].copy_from_slice(&word.to_le_bytes()[from..from + n]);
        k += n;
        i += n as u64;
    }
}

/// The SplitMix64 finaliser: a fast, well-mixed 64-bit permutation (not cryptographic).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------------------
// The test HTTP server

/// The load's HTTP server on 127.0.0.1; stops (with its connections) when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an HTTP server on an ephemeral 127.0.0.1 port answering `GET /SIZE/SEED`.
pub async fn serve_http() -> anyhow::Result<HttpServer> {
    start_http(Fault::None).await
}

/// A deliberate fault of the test server, to check that the load notices it.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// Body byte at this offset is changed.
    #[cfg_attr(not(test), allow(dead_code))]
    FlipByte(u64),
    /// Reads the request and never answers.
    #[cfg_attr(not(test), allow(dead_code))]
    Stall,
}

async fn start_http(fault: Fault) -> anyhow::Result<HttpServer> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("load: cannot bind the HTTP server on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // Dropping the set (when the server is aborted) aborts every connection.
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        conns.spawn(answer(stream, fault));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "load http server: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next() => {}
            }
        }
    });
    Ok(HttpServer { addr, task })
}

/// Answers one connection's request; errors only end the connection.
async fn answer(mut stream: TcpStream, fault: Fault) {
    let Ok(asked) = timeout(SERVER_READ_TIMEOUT, read_request(&mut stream)).await else {
        return;
    };
    let Some((size, seed)) = asked else {
        let _ = stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        return;
    };
    if let Fault::Stall = fault {
        // Hold the connection open, unanswered, until the client gives up.
        let mut sink = [0u8; 64];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        return;
    }
    let _ = send_body(&mut stream, size, seed, fault).await;
}

/// Reads a request head; `Some((size, seed))` for a well-formed `GET /SIZE/SEED`.
async fn read_request(stream: &mut TcpStream) -> Option<(u64, u64)> {
    let RequestHead::Get(path) = http::read_request(stream).await.ok()? else {
        return None;
    };
    let (size, seed) = path.strip_prefix('/')?.split_once('/')?;
    let size: u64 = size.parse().ok()?;
    let seed: u64 = seed.parse().ok()?;
    (size <= MAX_BODY).then_some((size, seed))
}

/// Sends a `200` response with the body for `size` and `seed`, then closes.
async fn send_body<S: AsyncWrite + Unpin>(
    stream: &mut S,
    size: u64,
    seed: u64,
    fault: Fault,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let mut chunk = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while sent < size {
        let n = (size - sent).min(CHUNK as u64) as usize;
        let out = &mut chunk[..n];
        fill_body(seed, sent, out);
        if let Fault::FlipByte(at) = fault {
            if (sent..sent + n as u64).contains(&at) {
                out[(at - sent) as usize] ^= 0x01;
            }
        }
        stream.write_all(out).await?;
        sent += n as u64;
    }
    stream.shutdown().await
}

// ---------------------------------------------------------------------------------------
// Progress

/// Progress on stderr: a bar on a terminal, a line every few seconds otherwise, or nothing.
struct Progress {
    bar: Option<ProgressBar>,
    every: Option<tokio::time::Interval>,
    started: Instant,
    total: u64,
}

impl Progress {
    fn new(enabled: bool, total: u64) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (enabled && terminal).then(|| {
            let style = ProgressStyle::with_template(
                "load {elapsed_precise} [{bar:30}] {pos}/{len} started  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10))
                .with_style(style)
        });
        let every = enabled.then(|| {
            let period = if terminal {
                PROGRESS_BAR_EVERY
            } else {
                PROGRESS_LINE_EVERY
            };
            let mut i = tokio::time::interval_at(Instant::now() + period, period);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        Progress {
            bar,
            every,
            started: Instant::now(),
            total,
        }
    }

    /// Resolves at the next update; never when progress is off.
    async fn tick(&mut self) {
        match &mut self.every {
            Some(i) => {
                i.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    fn show(&self, t: &Tally, running: usize, draining: bool) {
        let state = format!(
            "{} ok, {} failed, {} running{}",
            t.completed,
            t.failed.total(),
            running,
            if draining { ", draining" } else { "" }
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(t.scheduled);
                bar.set_message(state);
            }
            None => eprintln!(
                "load: {:.0} s, {}/{} started, {state}",
                self.started.elapsed().as_secs_f64(),
                t.scheduled,
                self.total
            ),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{self, ExitPolicy};

    /// A SOCKS5 server (the exit's) on an ephemeral port; private destinations as asked.
    async fn socks5(allow_private: bool) -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ =
                exit::serve_socks5_on(listener, ExitPolicy::new(allow_private, Vec::new())).await;
        });
        (addr, task)
    }

    /// A 127.0.0.1 port with nothing listening on it, which the system gives no one else
    /// while the test runs (`dissent_harness::ports::reserve_port`).
    async fn dead_port() -> SocketAddr {
        use dissent_harness::ports;
        ports::local(ports::reserve_port().unwrap())
    }

    fn options(proxies: Vec<SocketAddr>, target: SocketAddr) -> LoadOptions {
        LoadOptions {
            rate: 50,
            duration: Duration::from_secs(1),
            size: 3000,
            progress: false,
            ..LoadOptions::new(proxies, target)
        }
    }

    /// Runs a load with a hard limit on how long it may take.
    async fn run(opts: LoadOptions) -> LoadReport {
        let limit = opts.duration + opts.drain + Duration::from_secs(30);
        let report = timeout(limit, run_load_until(opts, std::future::pending()))
            .await
            .expect("the load stops by itself")
            .unwrap();
        assert_eq!(
            report.completed + report.failed.total(),
            report.scheduled,
            "{report:?}"
        );
        report
    }

    #[test]
    fn bodies_depend_on_seed_and_offset() {
        let mut whole = vec![0u8; 100];
        fill_body(7, 0, &mut whole);
        // Any split gives the same bytes as one call.
        for split in [0, 1, 7, 8, 9, 63, 99, 100] {
            let mut parts = vec![0u8; 100];
            fill_body(7, 0, &mut parts[..split]);
            fill_body(7, split as u64, &mut parts[split..]);
            assert_eq!(parts, whole, "split at {split}");
        }
        let mut other = vec![0u8; 100];
        fill_body(8, 0, &mut other);
        assert_ne!(other, whole);
        // Not a short cycle: 8-byte words differ along the body.
        assert_ne!(whole[..8], whole[8..16]);
    }

    #[test]
    fn schedule_is_exact() {
        let target = "127.0.0.1:1".parse().unwrap();
        let mut o = LoadOptions::new(vec![target], target);
        o.rate = 3;
        o.duration = Duration::from_millis(2500);
        assert_eq!(o.scheduled(), 7);
        assert_eq!(o.due(0), Duration::ZERO);
        assert_eq!(o.due(1), Duration::from_nanos(333_333_333));
        assert_eq!(o.due(3), Duration::from_secs(1));
        o.rate = 1000;
        o.duration = Duration::from_secs(10);
        assert_eq!(o.scheduled(), 10_000);
        assert_eq!(o.due(9_999), Duration::from_millis(9_999));
    }

    #[tokio::test]
    async fn all_requests_complete_against_a_fast_server() {
        let http = serve_http().await.unwrap();
        let (proxy, _socks) = socks5(true).await;
        let report = run(options(vec![proxy], http.addr())).await;
        assert_eq!(report.scheduled, 50, "{report:?}");
        assert_eq!(report.completed, 50, "{report}");
        assert_eq!(report.failed, Failures::default());
        assert_eq!(report.bytes, 50 * 3000);
        let l = report.latency_ms.unwrap();
        assert!(
            0.0 < l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max,
            "{l:?}"
        );
        assert!(!report.interrupted);
        // Requests started over the second, not all at once.
        assert!(report.elapsed_secs >= 0.98, "{report}");
    }

    #[tokio::test]
    async fn proxies_are_used_in_turn() {
        let http = serve_http().await.unwrap();
        let (proxy, _socks) = socks5(true).await;
        let dead = dead_port().await;
        let mut opts = options(vec![proxy, dead], http.addr());
        opts.rate = 20;
        let report = run(opts).await;
        assert_eq!(report.scheduled, 20);
        assert_eq!(report.completed, 10, "{report}");
        assert_eq!(
            report.failed,
            Failures {
                connect: 10,
                ..Failures::default()
            }
        );
    }

    #[tokio::test]
    async fn a_wrong_byte_is_a_bad_body() {
        // Past the first chunk, so the check of later reads is exercised too.
        let http = start_http(Fault::FlipByte(20_000)).await.unwrap();
        let (proxy, _socks) = socks5(true).await;
        let mut opts = options(vec![proxy], http.addr());
        opts.rate = 10;
        opts.size = 40_000;
        let report = run(opts).await;
        assert_eq!(report.scheduled, 10);
        assert_eq!(
            report.failed,
            Failures {
                bad_body: 10,
                ..Failures::default()
            },
            "{report}"
        );
        assert_eq!(report.completed, 0);
        assert!(report.latency_ms.is_none());
    }

    #[tokio::test]
    async fn refused_by_the_proxy() {
        let http = serve_http().await.unwrap();
        // The exit's default policy refuses loopback destinations.
        let (proxy, _socks) = socks5(false).await;
        let mut opts = options(vec![proxy], http.addr());
        opts.rate = 10;
        let report = run(opts).await;
        assert_eq!(
            report.failed,
            Failures {
                refused: 10,
                ..Failures::default()
            },
            "{report}"
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let http = start_http(Fault::Stall).await.unwrap();
        let (proxy, _socks) = socks5(true).await;
        let mut opts = options(vec![proxy], http.addr());
        opts.rate = 10;
        opts.timeout = Duration::from_millis(200);
        let report = run(opts).await;
        assert_eq!(
            report.failed,
            Failures {
                timeout: 10,
                ..Failures::default()
            },
            "{report}"
        );
    }

    #[tokio::test]
    async fn requests_beyond_the_bound_fail_as_overloaded() {
        let http = start_http(Fault::Stall).await.unwrap();
        let (proxy, _socks) = socks5(true).await;
        let mut opts = options(vec![proxy], http.addr());
        opts.rate = 20;
        opts.max_outstanding = 1;
        // The first request holds the only slot for the whole run and the drain.
        opts.timeout = Duration::from_secs(600);
        opts.drain = Duration::from_millis(100);
        let report = run(opts).await;
        assert_eq!(report.scheduled, 20);
        assert_eq!(
            report.failed,
            Failures {
                overloaded: 19,
                unfinished: 1,
                ..Failures::default()
            },
            "{report}"
        );
    }

    #[tokio::test]
    async fn stopping_early_still_reports() {
        let http = serve_http().await.unwrap();
        let (proxy, _socks) = socks5(true).await;
        let mut opts = options(vec![proxy], http.addr());
        opts.duration = Duration::from_secs(600);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let load = tokio::spawn(run_load_until(opts, async {
            let _ = rx.await;
        }));
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.send(()).unwrap();
        let report = timeout(Duration::from_secs(60), load)
            .await
            .expect("the load stops when asked")
            .unwrap()
            .unwrap();
        assert!(report.interrupted);
        assert!(
            report.scheduled >= 1 && report.scheduled < 50 * 600,
            "{report}"
        );
        assert_eq!(report.completed + report.failed.total(), report.scheduled);
        assert_eq!(
            report.failed.overloaded + report.failed.connect,
            0,
            "{report}"
        );
    }

    #[tokio::test]
    async fn the_server_refuses_bad_requests() {
        let http = serve_http().await.unwrap();
        for request in [
            &b"POST /10/1 HTTP/1.1\r\n\r\n"[..],
            b"GET /10 HTTP/1.1\r\n\r\n",
            b"GET /x/1 HTTP/1.1\r\n\r\n",
            b"GET /99999999999/1 HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01garbage\r\n\r\n",
        ] {
            let mut s = TcpStream::connect(http.addr()).await.unwrap();
            s.write_all(request).await.unwrap();
            let mut out = Vec::new();
            timeout(Duration::from_secs(10), s.read_to_end(&mut out))
                .await
                .unwrap()
                .unwrap();
            assert!(
                out.starts_with(b"HTTP/1.1 400 "),
                "{:?}: {:?}",
                String::from_utf8_lossy(request),
                String::from_utf8_lossy(&out)
            );
        }
        // And answers a good one directly, with the body the client checks.
        let mut s = TcpStream::connect(http.addr()).await.unwrap();
        s.write_all(b"GET /5/9 HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = timeout(Duration::from_secs(10), read_response(&mut s, 5, 9))
            .await
            .unwrap();
        assert_eq!(got, Ok(5));
    }

    #[tokio::test]
    async fn responses_are_checked_strictly() {
        let mut body = vec![0u8; 4];
        fill_body(3, 0, &mut body);
        let ok = |extra_head: &str, body: &[u8]| {
            let mut r = format!("HTTP/1.1 200 OK\r\n{extra_head}\r\n").into_bytes();
            r.extend_from_slice(body);
            r
        };
        let cases: Vec<(Vec<u8>, Result<u64, Failure>)> = vec![
            (ok("Content-Length: 4\r\n", &body), Ok(4)),
            (ok("content-length: 4\r\n", &body), Ok(4)),
            (
                ok("Content-Length: 4\r\n", &body[..3]),
                Err(Failure::BadBody),
            ),
            (
                ok("Content-Length: 4\r\n", &[&body[..], b"x"].concat()),
                Err(Failure::BadBody),
            ),
            (ok("Content-Length: 5\r\n", &body), Err(Failure::BadBody)),
            (ok("", &body), Err(Failure::BadBody)),
            (
                ok("Content-Length: 4\r\nContent-Length: 4\r\n", &body),
                Err(Failure::BadBody),
            ),
            (ok("Content-Length: +4\r\n", &body), Err(Failure::BadBody)),
            (
                [
                    &b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\n"[..],
                    &body,
                ]
                .concat(),
                Err(Failure::BadBody),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Le".to_vec(),
                Err(Failure::BadBody),
            ),
            (vec![b'x'; MAX_HEAD + 1], Err(Failure::BadBody)),
        ];
        for (i, (response, want)) in cases.into_iter().enumerate() {
            let got = read_response(&mut &response[..], 4, 3).await;
            assert_eq!(
                got,
                want,
                "case {i}: {:?}",
                String::from_utf8_lossy(&response)
            );
        }
    }
}
