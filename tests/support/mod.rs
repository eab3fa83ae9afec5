//! The process harness of the end-to-end tests: real `dissent` processes over 127.0.0.1.
//!
//! Nothing sleeps and hopes: every wait polls for a concrete condition (a port accepting, a
//! log line, a process exiting) with short sleeps and a hard limit, and every test body runs
//! under an overall time limit ([`within`]) after which its processes are killed.
//!
//! Processes are owned by [`Proc`] guards that kill and reap them on drop, panics included;
//! a test that fails prints the tail of each process's output. As a second net, each child
//! gets `PR_SET_PDEATHSIG`, so it is stopped even if the test binary itself dies.
//!
//! Shared by several test binaries, each using a part of it.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_dissent");

/// Longest wait for a DC-net to form (relay up, everyone connected, first interval).
pub const FORM_TIMEOUT: Duration = Duration::from_secs(40);
/// Longest wait for one transfer through the DC-net.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a process to exit after a signal.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// Harness: time limits and processes

/// What a test body gets: a place to register the processes it starts.
#[derive(Clone, Default)]
pub struct Scope {
    pub pids: Arc<Mutex<Vec<u32>>>,
}

/// Runs `body` on its own thread; fails (and kills every process it started) after `limit`.
pub fn within(limit: Duration, body: impl FnOnce(&Scope) + Send + 'static) {
    let scope = Scope::default();
    let (done_tx, done_rx) = mpsc::channel();
    let body_scope = scope.clone();
    let handle = thread::Builder::new()
        .name("e2e-body".into())
        .spawn(move || {
            body(&body_scope);
            let _ = done_tx.send(());
        })
        .expect("cannot start the test thread");
    match done_rx.recv_timeout(limit) {
        Ok(()) => handle.join().expect("the test thread finished"),
        // The body panicked: pass its panic on (its guards have already cleaned up).
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the body ended without reporting"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let pids: Vec<u32> = lock(&scope.pids).clone();
            for pid in pids {
                kill_tree(pid);
            }
            panic!("test did not finish within {limit:?}; killed its processes");
        }
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking reader thread must not hide the output it already collected.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Output of one stream of a child, collected line by line by a thread.
#[derive(Clone, Default)]
pub struct Captured {
    text: Arc<Mutex<String>>,
    /// Set once the stream has ended (everything the child wrote is in `text`).
    ended: Arc<std::sync::atomic::AtomicBool>,
}

impl Captured {
    pub fn collect(stream: impl Read + Send + 'static) -> Self {
        let captured = Captured::default();
        let text = captured.text.clone();
        let ended = captured.ended.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            // Ends at end of stream: when the child (and any grandchild holding it) is gone.
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                lock(&text).push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
            ended.store(true, std::sync::atomic::Ordering::Release);
        });
        captured
    }

    pub fn text(&self) -> String {
        lock(&self.text).clone()
    }

    /// Whether the stream has ended, so that [`Captured::text`] holds all of it.
    pub fn ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A `dissent` process that is killed and reaped when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub stdout: Captured,
    pub stderr: Captured,
    /// Whether it runs children of its own (supervisor, up) that must go with it.
    pub has_children: bool,
    pub status: Option<ExitStatus>,
}

impl Scope {
    /// Starts `dissent ARGS`, its output captured, logging at info level.
    pub fn spawn(&self, name: &str, args: &[&str]) -> Proc {
        self.spawn_logging(name, args, "info")
    }

    /// Like [`Scope::spawn`], logging at `level` (a `RUST_LOG` value).
    pub fn spawn_logging(&self, name: &str, args: &[&str], level: &str) -> Proc {
        self.spawn_with(name, args, level, &[])
    }

    /// Like [`Scope::spawn`], with `envs` set in its environment (test hooks).
    #[allow(dead_code)] // Not every test target sets one.
    pub fn spawn_env(&self, name: &str, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        self.spawn_with(name, args, "info", envs)
    }

    fn spawn_with(&self, name: &str, args: &[&str], level: &str, envs: &[(&str, &str)]) -> Proc {
        let mut cmd = command(args, level);
        cmd.envs(envs.iter().copied());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN} ({name}): {e}"));
        lock(&self.pids).push(child.id());
        let stdout = Captured::collect(child.stdout.take().expect("stdout is piped"));
        let stderr = Captured::collect(child.stderr.take().expect("stderr is piped"));
        let has_children = matches!(args.first(), Some(&"supervisor") | Some(&"up"));
        Proc {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            has_children,
            status: None,
        }
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far (stderr).
    pub fn log(&self) -> String {
        self.stderr.text()
    }

    /// Everything it printed so far (stdout).
    pub fn out(&self) -> String {
        self.stdout.text()
    }

    pub fn is_running(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait on our own child");
        }
        self.status.is_none()
    }

    /// Waits until its log contains `needle`; returns the log.
    pub fn wait_for_log(&mut self, needle: &str, limit: Duration) -> String {
        self.wait_until(limit, &format!("log line containing {needle:?}"), |p| {
            let log = p.log();
            log.contains(needle).then_some(log)
        })
    }

    /// The port this process listens on, from the log line that names its address: a
    /// process started with port 0 says which port it got. `marker` is the text before the
    /// address: `relay listening on`, `listening on` (a client), `socks5 server listening`,
    /// `echo server listening` or `serving metrics at`.
    pub fn listening_port(&mut self, marker: &str) -> u16 {
        self.wait_until(
            Duration::from_secs(30),
            &format!("a log line {marker:?} with an address"),
            |p| port_after(&p.log(), marker),
        )
    }

    /// Polls `check` until it gives a value; panics with the output after `limit`.
    pub fn wait_until<T>(
        &mut self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut(&Proc) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if !self.is_running() {
                // One last look: the output may have arrived with the exit.
                thread::sleep(Duration::from_millis(100));
                if let Some(v) = check(self) {
                    return v;
                }
                panic!(
                    "{} exited ({:?}) while waiting for {what}",
                    self.name, self.status
                );
            }
            if Instant::now() >= deadline {
                panic!("{}: no {what} within {limit:?}", self.name);
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends a signal to this process (only).
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own, not yet reaped, child by its id.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.name);
    }

    /// Waits up to `limit` for it to exit, then (within the same limit) for its output
    /// streams to end, so that [`Proc::log`] and [`Proc::out`] hold its last lines.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while self.is_running() {
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // A grandchild may still hold a stream open: then the deadline ends the wait.
        while !(self.stdout.ended() && self.stderr.ended()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        self.status
    }

    /// SIGKILLs it and reaps it.
    pub fn kill(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("---- {} (pid {}) ----", self.name, self.pid());
            for (stream, text) in [("stdout", self.out()), ("stderr", self.log())] {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(80)..];
                eprintln!("{stream}, last {} lines:", tail.len());
                for line in tail {
                    eprintln!("  {line}");
                }
            }
        }
        if self.has_children {
            // Collect its children before it dies (they are re-parented after), then let it
            // stop and reap them itself; kill whatever is left if it does not.
            let kids = descendants(self.pid());
            if self.is_running() {
                // SAFETY: signalling our own, not yet reaped, child by its id.
                unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
                let _ = self.wait_exit(Duration::from_secs(8));
            }
            self.kill();
            for pid in kids {
                kill_ours(pid);
            }
        } else {
            self.kill();
        }
    }
}

/// `dissent ARGS` logging at `level` (a `RUST_LOG` value), its output piped, stopped should
/// the thread that starts it die.
fn command(args: &[&str], level: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("RUST_LOG", level)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to stop the child if
    // the thread that started it dies, so no process outlives a crashed test binary.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd
}

/// Runs `dissent ARGS` to its end, which must come within `limit`; returns its output.
///
/// For commands that finish by themselves (refusals, `config generate`).
pub fn run_once(args: &[&str], limit: Duration) -> Output {
    let mut child = command(args, "info")
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN} {args:?}: {e}"));
    let read_all = |mut stream: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("stdout is piped")));
    let stderr = read_all(Box::new(child.stderr.take().expect("stderr is piped")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on our own child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dissent {args:?} did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// SIGKILLs `pid` and all its descendants, if they are still ours.
pub fn kill_tree(pid: u32) {
    let kids = descendants(pid);
    kill_ours(pid);
    for kid in kids {
        kill_ours(kid);
    }
}

/// SIGKILLs `pid` if it is still a live `dissent` process (guards against pid reuse).
pub fn kill_ours(pid: u32) {
    if alive(pid) && cmdline(pid).first().is_some_and(|exe| is_dissent(exe)) {
        // SAFETY: signalling a process we started (checked by its executable path).
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
}

// ---------------------------------------------------------------------------------------
// Harness: /proc

/// The parent pid and state letter of `pid`, from /proc/PID/stat.
pub fn stat(pid: u32) -> Option<(u32, char)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(_, state)| state != 'Z' && state != 'X')
}

pub fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `exe` (a process's argv\[0\]) is the `dissent` binary under test.
pub fn is_dissent(exe: &str) -> bool {
    exe == BIN
        || matches!(
            (Path::new(exe).canonicalize(), Path::new(BIN).canonicalize()),
            (Ok(a), Ok(b)) if a == b
        )
}

/// Live processes whose parent is `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| stat(*p).is_some_and(|(ppid, state)| ppid == pid && state != 'Z'))
        .collect()
}

/// All live processes below `pid`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for kid in children(p) {
            found.push(kid);
            todo.push(kid);
        }
    }
    found
}

/// The live child of `parent` running `dissent ROLE ...` with `arg` among its arguments.
pub fn find_child(parent: u32, role: &str, arg: &str) -> Option<u32> {
    children(parent).into_iter().find(|pid| {
        let args = cmdline(*pid);
        args.first().is_some_and(|exe| is_dissent(exe))
            && args.get(1).is_some_and(|r| r == role)
            && args.iter().any(|a| a == arg)
    })
}

/// Polls until none of `pids` is alive.
pub fn wait_all_gone(pids: &[u32], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes still running after {limit:?}: {left:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Harness: ports and sockets

pub use dissent_harness::group::{self, Group};
pub use dissent_harness::ports::{self, local, port_after};

/// A port on 127.0.0.1 that the system hands to no one else for a minute
/// ([`ports::reserve_port`]), for a process that must be told its port before it starts.
pub fn reserve_port() -> u16 {
    ports::reserve_port().expect("reserve a port on 127.0.0.1")
}

/// `n` consecutive ports, each reserved as [`reserve_port`] reserves one; returns the first.
pub fn reserve_ports(n: u16) -> u16 {
    for _ in 0..100 {
        let base = reserve_port();
        if base.checked_add(n - 1).is_some() && (1..n).all(|k| reserve_exact(base + k)) {
            return base;
        }
    }
    panic!("cannot reserve {n} consecutive ports on 127.0.0.1");
}

/// Reserves `port` as [`reserve_port`] does, if nothing holds it, not even a reservation.
fn reserve_exact(port: u16) -> bool {
    // Without SO_REUSEADDR (which std's listeners set), binding fails while any socket
    // holds the port, one in TIME_WAIT included.
    // SAFETY: a new socket that we own; `addr` is a valid sockaddr_in of the size given;
    // the descriptor is closed on failure or handed to a TcpListener that owns it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let bound = libc::bind(
            fd,
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) == 0;
        // Set after the bind: the connection's side that stays in TIME_WAIT inherits it, and
        // a server setting it too can then bind the port.
        let one: libc::c_int = 1;
        let reuse = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            std::ptr::from_ref(&one).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0;
        if !bound || !reuse || libc::listen(fd, 1) != 0 {
            libc::close(fd);
            return false;
        }
        if ports::time_wait(<TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd)).is_err() {
            return false;
        }
    }
    true
}

/// Polls until 127.0.0.1:`port` accepts a connection.
pub fn wait_for_port(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if TcpStream::connect_timeout(&local(port), Duration::from_millis(200)).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nothing accepts on port {port} after {limit:?}"
        );
        thread::sleep(Duration::from_millis(25));
    }
}

/// Polls until 127.0.0.1:`port` refuses connections.
pub fn wait_for_port_closed(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if TcpStream::connect_timeout(&local(port), Duration::from_millis(200)).is_err() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "port {port} still accepts after {limit:?}"
        );
        thread::sleep(Duration::from_millis(25));
    }
}

pub fn connect(port: u16, limit: Duration) -> TcpStream {
    let s = TcpStream::connect_timeout(&local(port), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("cannot connect to port {port}: {e}"));
    s.set_read_timeout(Some(limit)).expect("set_read_timeout");
    s.set_write_timeout(Some(limit)).expect("set_write_timeout");
    let _ = s.set_nodelay(true);
    s
}

// Harness: configurations and DC-nets

/// Runs `dissent config generate` and checks it worked.
pub fn generate(dir: &Path, clients: usize, trustees: usize, relay_port: u16) {
    let (clients, trustees) = (clients.to_string(), trustees.to_string());
    let relay = format!("127.0.0.1:{relay_port}");
    let dir = dir.display().to_string();
    let out = run_once(
        &[
            "config", "generate", "-c", &clients, "-t", &trustees, "--relay", &relay, &dir,
        ],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "config generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn key_file(dir: &Path, id: &str) -> String {
    Group::new(dir).key_file(id).display().to_string()
}

/// The ports announced by `SOCKS5 proxy: 127.0.0.1:PORT` lines (`tunnel port: ...` with an
/// echo or TCP exit).
pub fn announced_proxies(out: &str) -> Vec<u16> {
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("SOCKS5 proxy: 127.0.0.1:")
                .or_else(|| l.strip_prefix("tunnel port: 127.0.0.1:"))
        })
        .map(|p| p.parse().expect("a port number"))
        .collect()
}

pub fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

// ---------------------------------------------------------------------------------------
// Harness: metrics endpoints

/// The text of the `/metrics` endpoint on 127.0.0.1:`port`, or `None` if it does not answer.
pub fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&local(port), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut reply = Vec::new();
    // The endpoint closes the connection after its response.
    s.read_to_end(&mut reply).ok()?;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The value of the sample called `name` in `text` (labels included, exactly as printed:
/// `dissent_link_events_total{kind="joined"}`), or `None` if there is no such sample.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| match l.split_once(' ') {
            Some((n, value)) if n == name => value.trim().parse().ok(),
            _ => None,
        })
}

/// The value of metric `name` at the endpoint on `port` (see [`sample`]).
pub fn metric(port: u16, name: &str) -> Option<f64> {
    sample(&scrape(port)?, name)
}

/// Polls metric `name` at the endpoint on `port` until `ok` holds for its value.
pub fn wait_metric(port: u16, name: &str, limit: Duration, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = metric(port, name) {
            if ok(v) {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} not as wanted within {limit:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A relay started by [`relay_with_metrics`].
pub struct Relay {
    pub proc: Proc,
    /// The port it listens on.
    pub port: u16,
    /// Its metrics endpoint's port.
    pub metrics: u16,
}

/// Starts a relay of `cfg` with a metrics endpoint and a stats line every second, on free
/// ports the system picks (unless `extra` gives `-p`); returns it once the endpoint answers.
pub fn relay_with_metrics(scope: &Scope, cfg: &str, extra: &[&str]) -> Relay {
    let mut options = group::args(&["--stats-secs", "1"]);
    options.extend(group::args(extra));
    let argv = Group::new(cfg).relay(&options);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut proc = scope.spawn("relay", &argv);
    let port = proc.listening_port(ports::RELAY_LISTENING);
    let metrics = proc.listening_port(ports::SERVING_METRICS);
    proc.wait_until(FORM_TIMEOUT, "a metrics endpoint", |_| scrape(metrics));
    Relay {
        proc,
        port,
        metrics,
    }
}

// ---------------------------------------------------------------------------------------
// Harness: a whole DC-net of processes

/// A relay (with a metrics endpoint), its trustees and its clients, each a process.
///
/// Fields drop in order: processes first, then the configuration folder.
pub struct Net {
    pub relay: Proc,
    pub trustees: Vec<Proc>,
    pub clients: Vec<Proc>,
    pub cfg: PathBuf,
    pub relay_port: u16,
    pub client_ports: Vec<u16>,
    /// The relay's metrics endpoint.
    pub metrics: u16,
    _dir: tempfile::TempDir,
}

impl Net {
    /// Starts a DC-net with `exit` and waits until an interval runs with every client.
    pub fn start(scope: &Scope, clients: usize, trustees: usize, exit: &str) -> Net {
        Net::start_with(scope, clients, trustees, &["--exit", exit])
    }

    /// Like [`Net::start`], with any relay options.
    ///
    /// Every process listens on a port the system picks and names it in its log.
    pub fn start_with(scope: &Scope, clients: usize, trustees: usize, relay_args: &[&str]) -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("cfg");
        // The configuration's relay address is not used: every node is told the relay's
        // port with --relay.
        generate(&cfg, clients, trustees, reserve_port());
        let cfg_s = cfg.display().to_string();
        let relay = relay_with_metrics(scope, &cfg_s, relay_args);
        let mut net = Net {
            relay: relay.proc,
            trustees: Vec::new(),
            clients: Vec::new(),
            cfg,
            relay_port: relay.port,
            client_ports: Vec::new(),
            metrics: relay.metrics,
            _dir: dir,
        };
        for j in 0..trustees {
            let trustee = net.trustee_process(scope, j, &[]);
            net.trustees.push(trustee);
        }
        for i in 0..clients {
            let mut client = net.client_on(scope, i, 0);
            net.client_ports
                .push(client.listening_port(ports::CLIENT_LISTENING));
            net.clients.push(client);
        }
        wait_metric(net.metrics, "dissent_online_clients", FORM_TIMEOUT, |v| {
            v == clients as f64
        });
        for port in &net.client_ports {
            wait_for_port(*port, FORM_TIMEOUT);
        }
        net
    }

    /// The relay's address, for --relay.
    pub fn relay_addr(&self) -> String {
        group::relay(self.relay_port)
    }

    /// Starts a process of client `i` listening on `port` (0: a port the system picks,
    /// which [`Proc::listening_port`] reads from its log).
    pub fn client_on(&self, scope: &Scope, i: usize, port: u16) -> Proc {
        let argv = Group::new(&self.cfg).client(self.relay_port, i, port, &[]);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        scope.spawn(&format!("client-{i}"), &argv)
    }

    /// Starts client `i` again, on a port the system picks; `client_ports[i]` is its new port.
    pub fn spawn_client(&mut self, scope: &Scope, i: usize) {
        self.spawn_client_env(scope, i, &[]);
    }

    /// Like [`Net::spawn_client`], with `envs` set in its environment (test hooks).
    pub fn spawn_client_env(&mut self, scope: &Scope, i: usize, envs: &[(&str, &str)]) {
        let argv = Group::new(&self.cfg).client(self.relay_port, i, 0, &[]);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut client = scope.spawn_env(&format!("client-{i}"), &argv, envs);
        self.client_ports[i] = client.listening_port(ports::CLIENT_LISTENING);
        self.clients[i] = client;
    }

    /// SIGKILLs client `i` and waits for it to exit.
    pub fn kill_client(&mut self, i: usize) {
        self.clients[i].signal(libc::SIGKILL);
        if self.clients[i].wait_exit(EXIT_TIMEOUT).is_none() {
            panic!("client {i} did not exit within {EXIT_TIMEOUT:?} of SIGKILL");
        }
    }

    /// Kills client `i` and starts it again as `name` with `extra` arguments (a binary
    /// built with the `disruptor` feature: `--disrupt MODE`, `--lie-about-pads`); returns
    /// it once it says it disrupts on purpose. `clients[i]` keeps the dead process.
    pub fn restart_disrupting(
        &mut self,
        scope: &Scope,
        i: usize,
        name: &str,
        extra: &[&str],
    ) -> Proc {
        self.kill_client(i);
        let argv = Group::new(&self.cfg).client(self.relay_port, i, 0, &group::args(extra));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut disruptor = scope.spawn(name, &argv);
        disruptor.wait_for_log("disrupts on purpose", FORM_TIMEOUT);
        disruptor
    }

    fn trustee_process(&self, scope: &Scope, j: usize, envs: &[(&str, &str)]) -> Proc {
        let argv = Group::new(&self.cfg).trustee(self.relay_port, j, &[]);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        scope.spawn_env(&format!("trustee-{j}"), &argv, envs)
    }

    /// Starts trustee `j` (again).
    pub fn spawn_trustee(&mut self, scope: &Scope, j: usize) {
        self.spawn_trustee_env(scope, j, &[]);
    }

    /// Like [`Net::spawn_trustee`], with `envs` set in its environment (test hooks).
    pub fn spawn_trustee_env(&mut self, scope: &Scope, j: usize, envs: &[(&str, &str)]) {
        self.trustees[j] = self.trustee_process(scope, j, envs);
    }

    /// SIGKILLs trustee `j` and waits for it to exit.
    pub fn kill_trustee(&mut self, j: usize) {
        self.trustees[j].signal(libc::SIGKILL);
        if self.trustees[j].wait_exit(EXIT_TIMEOUT).is_none() {
            panic!("trustee {j} did not exit within {EXIT_TIMEOUT:?} of SIGKILL");
        }
    }

    /// A new connection into client `i`'s port.
    pub fn connect(&self, i: usize) -> TcpStream {
        connect(self.client_ports[i], TRANSFER_TIMEOUT)
    }

    /// A metric of the relay; a counter not counted yet reads 0.
    pub fn metric(&self, name: &str) -> f64 {
        let text = scrape(self.metrics).expect("the relay's metrics endpoint answers");
        sample(&text, name).unwrap_or(0.0)
    }

    /// Asserts the relay is still running.
    pub fn assert_relay_up(&mut self) {
        assert!(
            self.relay.is_running(),
            "the relay exited: {:?}",
            self.relay.status
        );
    }
}

// ---------------------------------------------------------------------------------------
// Harness: a SOCKS5 client

/// A SOCKS5 destination.
pub enum Target<'a> {
    Ip(std::net::IpAddr, u16),
    Name(&'a str, u16),
}

/// Through the SOCKS5 server on `port`: a no-auth greeting and a CONNECT for `target`.
/// Returns the reply's first four bytes (version, code, reserved, address type) and the
/// stream, past the reply's bound address.
pub fn socks5(port: u16, target: &Target<'_>) -> std::io::Result<([u8; 4], TcpStream)> {
    use std::io::Error;
    let mut s = connect(port, TRANSFER_TIMEOUT);
    s.write_all(&[0x05, 0x01, 0x00])?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice)?;
    if choice != [0x05, 0x00] {
        return Err(Error::other(format!("method choice {choice:?}")));
    }
    let mut req = vec![0x05, 0x01, 0x00];
    let port = match *target {
        Target::Ip(std::net::IpAddr::V4(ip), port) => {
            req.push(0x01);
            req.extend_from_slice(&ip.octets());
            port
        }
        Target::Ip(std::net::IpAddr::V6(ip), port) => {
            req.push(0x04);
            req.extend_from_slice(&ip.octets());
            port
        }
        Target::Name(name, port) => {
            req.push(0x03);
            req.push(name.len() as u8);
            req.extend_from_slice(name.as_bytes());
            port
        }
    };
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head)?;
    if head[0] != 0x05 {
        return Err(Error::other(format!("SOCKS5 reply {head:?}")));
    }
    let addr_len = match head[3] {
        0x01 => 4,
        0x04 => 16,
        0x03 => {
            let mut n = [0u8; 1];
            s.read_exact(&mut n)?;
            usize::from(n[0])
        }
        other => return Err(Error::other(format!("reply ATYP {other:#04x}"))),
    };
    let mut rest = vec![0u8; addr_len + 2];
    s.read_exact(&mut rest)?;
    Ok((head, s))
}

/// `len` bytes that do not repeat with any short period, different per `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    dissent_harness::pattern::bytes(len, seed)
}

/// What the relay logs when it writes a blame round's evidence, before the file's path.
pub const EVIDENCE_WRITTEN: &str = "blame evidence written to ";

/// The evidence file's path in a relay's log (the first [`EVIDENCE_WRITTEN`] line).
pub fn evidence_path(log: &str) -> String {
    log.lines()
        .find_map(|l| l.split(EVIDENCE_WRITTEN).nth(1))
        .and_then(|rest| rest.split(' ').next())
        .expect("the evidence's path")
        .to_string()
}

/// Panics with the lengths and the first differing offset if `got != want`.
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: got {} bytes, want {}; first difference at byte {at}",
        got.len(),
        want.len()
    );
}

/// Sends `data` through client port `port` (from a thread) and reads the echo back.
pub fn echo_bulk(port: u16, data: &[u8]) -> Vec<u8> {
    let mut conn = connect(port, TRANSFER_TIMEOUT);
    conn.set_read_timeout(Some(TRANSFER_TIMEOUT))
        .expect("read timeout");
    let mut writer = conn.try_clone().expect("clone");
    let out = data.to_vec();
    let w = thread::spawn(move || writer.write_all(&out));
    let mut got = vec![0u8; data.len()];
    conn.read_exact(&mut got).expect("the echo comes back");
    w.join().expect("writer").expect("write through the client");
    got
}
