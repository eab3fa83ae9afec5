//! End-to-end tests: real `dissent` processes talking over 127.0.0.1, the way a user runs them.
//!
//! Every test has its own configuration folder and its own ports, so tests run in parallel.
//! The process harness (time limits, process guards, ports, waits) is in `support/`.

// These tests drive processes with Linux facilities (signals, `prctl`, network
// namespaces); on other platforms the binary builds and runs no test.
#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

mod support;
use support::*;

// ---------------------------------------------------------------------------------------
// Harness: data, SOCKS5 and servers

/// Bytes written into a connection and read back from it concurrently, on threads.
struct Transfer {
    what: String,
    want: Arc<Vec<u8>>,
    received: Arc<AtomicUsize>,
    handle: JoinHandle<Result<Vec<u8>, String>>,
}

impl Transfer {
    /// Writes `data` into `stream` while reading as many bytes back (an echo at the far end).
    fn start(what: &str, stream: TcpStream, data: Vec<u8>) -> Transfer {
        Transfer::start_within(what, stream, data, TRANSFER_TIMEOUT)
    }

    /// [`Transfer::start`], all of it within `limit`.
    fn start_within(what: &str, stream: TcpStream, data: Vec<u8>, limit: Duration) -> Transfer {
        let want = Arc::new(data);
        let received = Arc::new(AtomicUsize::new(0));
        let (w_data, counter) = (want.clone(), received.clone());
        let handle = thread::spawn(move || {
            let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
            let to_write = w_data.clone();
            let write = thread::spawn(move || writer.write_all(&to_write));
            let mut reader = stream;
            let mut got = Vec::with_capacity(w_data.len());
            let mut buf = vec![0u8; 64 * 1024];
            let deadline = Instant::now() + limit;
            while got.len() < w_data.len() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(format!(
                        "timed out after {} of {} bytes",
                        got.len(),
                        w_data.len()
                    ));
                }
                let _ = reader.set_read_timeout(Some(left));
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        got.extend_from_slice(&buf[..n]);
                        counter.store(got.len(), Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        return Err(format!(
                            "nothing more came back within {limit:?}: got {} of {} bytes",
                            got.len(),
                            w_data.len()
                        ))
                    }
                    Err(e) => {
                        return Err(format!(
                            "read failed after {} of {} bytes: {e}",
                            got.len(),
                            w_data.len()
                        ))
                    }
                }
            }
            match write.join() {
                Ok(Ok(())) => Ok(got),
                Ok(Err(e)) => Err(format!("write failed: {e}")),
                Err(_) => Err("writer thread panicked".into()),
            }
        });
        Transfer {
            what: what.to_string(),
            want,
            received,
            handle,
        }
    }

    /// Polls until at least `bytes` came back.
    fn wait_for_progress(&self, bytes: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.received.load(Ordering::SeqCst) < bytes {
            assert!(
                !self.handle.is_finished() || self.received.load(Ordering::SeqCst) >= bytes,
                "{}: ended after {} bytes",
                self.what,
                self.received.load(Ordering::SeqCst)
            );
            assert!(
                Instant::now() < deadline,
                "{}: only {} bytes back after {limit:?}",
                self.what,
                self.received.load(Ordering::SeqCst)
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the end and checks every byte came back, in order.
    fn finish(self) {
        let got = match self.handle.join() {
            Ok(Ok(got)) => got,
            Ok(Err(e)) => panic!("{}: {e}", self.what),
            Err(_) => panic!("{}: transfer thread panicked", self.what),
        };
        assert_same(&got, &self.want, &self.what);
    }
}

/// Through a SOCKS5 proxy on `proxy`, a CONNECT (no auth) to `target`.
fn socks5_connect(proxy: u16, target: SocketAddrV4) -> io::Result<TcpStream> {
    let (head, s) = socks5(proxy, &Target::Ip((*target.ip()).into(), target.port()))?;
    if head[..2] != [0x05, 0x00] {
        return Err(io::Error::other(format!("SOCKS5 reply {head:?}")));
    }
    Ok(s)
}

/// A tiny HTTP/1.1 server on 127.0.0.1 serving `body` at `/file` for up to `count` requests.
///
/// Returns its port and a handle giving the request lines (and Host headers) it served.
fn serve_file(body: Arc<Vec<u8>>, count: usize) -> (u16, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the HTTP server");
    let port = listener.local_addr().expect("local_addr").port();
    listener.set_nonblocking(true).expect("set_nonblocking");
    let handle = thread::spawn(move || {
        let mut served = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while served.len() < count && Instant::now() < deadline {
            let mut s = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Err(_) => break,
            };
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
            let _ = s.set_write_timeout(Some(Duration::from_secs(60)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                match s.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let request = head.lines().next().unwrap_or_default().to_string();
            let host = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Host: ")
                        .or_else(|| l.strip_prefix("host: "))
                })
                .unwrap_or_default()
                .to_string();
            let ok = request.starts_with("GET /file ");
            let reply_body: &[u8] = if ok { &body } else { b"not found\n" };
            let status = if ok { "200 OK" } else { "404 Not Found" };
            let header = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                reply_body.len()
            );
            let _ = s
                .write_all(header.as_bytes())
                .and_then(|_| s.write_all(reply_body));
            let _ = s.shutdown(Shutdown::Write);
            // Let the client read it all before the socket goes.
            let _ = s.read_to_end(&mut Vec::new());
            served.push(format!("{request} (Host: {host})"));
        }
        served
    });
    (port, handle)
}

/// Length of the greeting [`TaggedEcho`] answers the first byte with: `tag:NNNN\n`.
const TAG_LEN: usize = 9;

/// An echo server on 127.0.0.1 that answers each connection's first byte with its own number.
struct TaggedEcho {
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl TaggedEcho {
    fn start() -> TaggedEcho {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the echo server");
        let port = listener.local_addr().expect("local_addr").port();
        listener.set_nonblocking(true).expect("set_nonblocking");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(180);
            let mut next = 0u32;
            while !stopped.load(Ordering::SeqCst) && Instant::now() < deadline {
                let mut s = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(_) => break,
                };
                next += 1;
                let tag = format!("tag:{next:04}\n");
                thread::spawn(move || {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                    let _ = s.set_write_timeout(Some(Duration::from_secs(60)));
                    let mut buf = vec![0u8; 16 * 1024];
                    // The relay opens an exit connection on its first upstream byte.
                    let mut hello = [0u8; 1];
                    if s.read_exact(&mut hello).is_err() || s.write_all(tag.as_bytes()).is_err() {
                        return;
                    }
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        TaggedEcho { port, stop }
    }
}

impl Drop for TaggedEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Through client `port` to a [`TaggedEcho`]: checks its greeting is new, then echoes `data`.
///
/// Returns the connection, still open.
fn tagged_echo(port: u16, seen: &mut HashSet<String>, data: Vec<u8>, what: &str) -> TcpStream {
    let mut s = connect(port, Duration::from_secs(20));
    if let Err(e) = s.write_all(b"?") {
        panic!("{what}: cannot send the first byte: {e}");
    }
    let mut tag = Vec::new();
    let mut buf = [0u8; TAG_LEN];
    while tag.len() < TAG_LEN {
        match s.read(&mut buf[..TAG_LEN - tag.len()]) {
            Ok(0) => break,
            Ok(n) => tag.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "{what}: no greeting from a fresh exit connection ({e}); got {:?}",
                String::from_utf8_lossy(&tag)
            ),
        }
    }
    let tag = String::from_utf8_lossy(&tag).into_owned();
    assert!(tag.starts_with("tag:"), "{what}: greeting {tag:?}");
    assert!(
        seen.insert(tag.clone()),
        "{what}: greeting {tag:?} again: this connection joined an old exit connection"
    );
    s.set_read_timeout(Some(TRANSFER_TIMEOUT))
        .expect("set_read_timeout");
    let back = s.try_clone().expect("try_clone");
    Transfer::start(what, back, data).finish();
    s
}

// ---------------------------------------------------------------------------------------
// Harness: DC-nets

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn one_mebibyte_through_echo_comes_back_identical() {
    within(Duration::from_secs(120), |scope| {
        let mut net = Net::start(scope, 2, 2, "echo");
        let started = Instant::now();
        Transfer::start("1 MiB via client 0", net.connect(0), pattern(1 << 20, 1)).finish();
        eprintln!("1 MiB round trip took {:?}", started.elapsed());
        net.assert_relay_up();
    });
}

#[test]
fn two_clients_at_once() {
    within(Duration::from_secs(120), |scope| {
        let mut net = Net::start(scope, 2, 2, "echo");
        let transfers = [
            Transfer::start("client 0, first", net.connect(0), pattern(256 * 1024, 10)),
            Transfer::start("client 1", net.connect(1), pattern(256 * 1024, 11)),
            Transfer::start("client 0, second", net.connect(0), pattern(192 * 1024, 12)),
        ];
        for t in transfers {
            t.finish();
        }
        net.assert_relay_up();
    });
}

#[test]
fn curl_through_socks5_exit_fetches_a_file() {
    within(Duration::from_secs(150), |scope| {
        // The test's HTTP server is on loopback, which the exit refuses by default.
        let net = Net::start_with(scope, 2, 1, &["--exit", "socks5", "--allow-private-exit"]);
        let metrics = net.metrics;
        let body = Arc::new(pattern(300 * 1024, 20));
        let (http_port, server) = serve_file(body.clone(), 2);
        let tmp = tempfile::tempdir().expect("tempdir");
        let proxy = format!("127.0.0.1:{}", net.client_ports[0]);
        // By address, then by name so the exit resolves the domain itself.
        for host in ["127.0.0.1", "localhost"] {
            let out = tmp.path().join(format!("{host}.bin"));
            let url = format!("http://{host}:{http_port}/file");
            let mut curl = Command::new("curl")
                // -q: no ~/.curlrc; --noproxy "": NO_PROXY must not bypass the tunnel.
                .args([
                    "-q",
                    "--silent",
                    "--show-error",
                    "--fail",
                    "--max-time",
                    "60",
                ])
                .args(["--noproxy", ""])
                .args(["--socks5-hostname", &proxy, &url, "-o"])
                .arg(&out)
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run curl (scripts/setup installs it)");
            let deadline = Instant::now() + Duration::from_secs(75);
            let status = loop {
                if let Some(status) = curl.try_wait().expect("try_wait curl") {
                    break status;
                }
                if Instant::now() >= deadline {
                    let _ = curl.kill();
                    let _ = curl.wait();
                    panic!("curl {url} did not finish");
                }
                thread::sleep(Duration::from_millis(20));
            };
            let mut err = String::new();
            if let Some(mut e) = curl.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            assert!(status.success(), "curl {url} failed ({status}): {err}");
            let got = fs::read(&out).expect("curl's output file");
            assert_same(&got, &body, &url);
        }
        let served = server.join().expect("HTTP server thread");
        assert_eq!(served.len(), 2, "requests served: {served:?}");
        assert!(served[1].contains("localhost"), "{served:?}");

        // A destination that refuses: the user gets the SOCKS5 code for it, and the relay
        // counts a failed exit connection (not a refusal by its policy).
        let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let closed_port = closed.local_addr().expect("local_addr").port();
        drop(closed);
        let err = socks5_connect(
            net.client_ports[1],
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, closed_port),
        )
        .expect_err("a CONNECT to a closed port succeeded");
        assert!(err.to_string().contains("[5, 5, 0, "), "{err}");
        wait_metric(
            metrics,
            "dissent_exit_failed_total",
            TRANSFER_TIMEOUT,
            |v| v >= 1.0,
        );
        assert_eq!(
            wait_metric(
                metrics,
                "dissent_exit_refused_total",
                TRANSFER_TIMEOUT,
                |_| true
            ),
            0.0
        );
    });
}

#[test]
fn up_serves_a_proxy_and_stops_on_sigint() {
    within(Duration::from_secs(120), |scope| {
        let state = tempfile::tempdir().expect("tempdir");
        // A demo's ports are set before it starts.
        let (relay_port, client_base) = (reserve_port(), reserve_ports(3));
        let state_s = state.path().display().to_string();
        let mut up = scope.spawn(
            "up",
            &[
                "up",
                "--state",
                &state_s,
                "-c",
                "3",
                "-t",
                "2",
                "--relay",
                &format!("127.0.0.1:{relay_port}"),
                "--client-port-base",
                &client_base.to_string(),
                "--allow-private-exit",
            ],
        );
        let proxies = up.wait_until(FORM_TIMEOUT, "3 \"SOCKS5 proxy:\" lines", |p| {
            let ports = announced_proxies(&p.out());
            (ports.len() >= 3).then_some(ports)
        });
        assert_eq!(proxies, [client_base, client_base + 1, client_base + 2]);

        // The demo configuration, with private keys readable by the owner only.
        let demo = state.path().join("demo");
        for public in ["system.json", "session.json", "pseudonym.json"] {
            assert!(demo.join(public).is_file(), "{public} missing");
        }
        let mut private = vec!["relay.json".to_string()];
        for id in ["client-0", "client-1", "client-2", "trustee-0", "trustee-1"] {
            private.push(format!("{id}.json"));
            private.push(format!("{id}.session.json"));
        }
        for name in &private {
            assert_eq!(mode(&demo.join(name)), 0o600, "mode of {name}");
        }

        // A SOCKS5 CONNECT by hand through the first proxy to a local server.
        let body = Arc::new(pattern(64 * 1024, 30));
        let (http_port, server) = serve_file(body.clone(), 1);
        let mut s = socks5_connect(
            proxies[0],
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, http_port),
        )
        .expect("SOCKS5 CONNECT through the first proxy");
        s.write_all(b"GET /file HTTP/1.1\r\nHost: test\r\n\r\n")
            .expect("send the request");
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).expect("read the reply");
        let split = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP header");
        let head = String::from_utf8_lossy(&reply[..split]);
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert_same(&reply[split + 4..], &body, "body through `up`'s proxy");
        assert_eq!(server.join().expect("server thread").len(), 1);

        // Ctrl-C stops everything.
        let kids = descendants(up.pid());
        assert_eq!(
            kids.len(),
            6,
            "relay, 2 trustees and 3 clients: {:?}",
            kids.iter().map(|p| cmdline(*p)).collect::<Vec<_>>()
        );
        up.signal(libc::SIGINT);
        let status = up.wait_exit(EXIT_TIMEOUT).expect("`up` exits after SIGINT");
        assert!(status.success(), "`up` exited with {status}");
        wait_all_gone(&kids, Duration::from_secs(5));
        for port in proxies {
            wait_for_port_closed(port, Duration::from_secs(5));
        }
        wait_for_port_closed(relay_port, Duration::from_secs(5));
    });
}

#[test]
fn a_killed_client_is_survived() {
    within(Duration::from_secs(120), |scope| {
        // Four clients: buddy groups {0, 1} and {2, 3}. The killed client's group waits for
        // it (fate sharing); the other group goes on.
        let mut net = Net::start(scope, 4, 1, "echo");
        let first = Transfer::start("client 0", net.connect(0), pattern(512 * 1024, 40));
        first.wait_for_progress(32 * 1024, TRANSFER_TIMEOUT);

        net.clients[3].signal(libc::SIGKILL);
        net.clients[3]
            .wait_exit(EXIT_TIMEOUT)
            .expect("client 3 dies");
        net.relay.wait_until(FORM_TIMEOUT, "client 3 leaving", |p| {
            let log = p.log();
            (log.contains("client 3 disconnected") || log.contains("dropping client 3"))
                .then_some(())
        });

        let second = Transfer::start("client 1", net.connect(1), pattern(128 * 1024, 41));
        first.finish();
        second.finish();
        net.assert_relay_up();
    });
}

#[test]
fn garbage_from_a_peer_is_rejected_and_harms_nobody() {
    within(Duration::from_secs(120), |scope| {
        let mut net = Net::start(scope, 2, 1, "echo");
        let transfer = Transfer::start("client 0", net.connect(0), pattern(512 * 1024, 50));
        transfer.wait_for_progress(32 * 1024, TRANSFER_TIMEOUT);

        let junk: [(&str, Vec<u8>); 3] = [
            ("an impossible length", {
                let mut v = vec![0xFF, 0xFF, 0xFF, 0xFF];
                v.extend(pattern(64, 51));
                v
            }),
            ("a small frame of junk", {
                let mut v = vec![0, 0, 0, 16];
                v.extend(pattern(16, 52));
                v
            }),
            ("random bytes", pattern(4096, 53)),
        ];
        let mut peers = Vec::new();
        for (what, bytes) in &junk {
            let mut s = connect(net.relay_port, Duration::from_secs(20));
            // The relay may hang up before it read everything; that is fine.
            let _ = s.write_all(bytes);
            peers.push((what, s));
        }
        // The relay hangs up on every one of them: at once on a first record of the wrong
        // length, at its handshake deadline on the rest.
        for (what, s) in peers.iter_mut() {
            s.set_read_timeout(Some(Duration::from_secs(15)))
                .expect("timeout");
            let mut rest = Vec::new();
            match s.read_to_end(&mut rest) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("relay did not hang up on {what}: {e}"),
            }
        }

        transfer.finish();
        net.assert_relay_up();
        // A fresh connection still works after the junk.
        Transfer::start("after junk", net.connect(1), pattern(16 * 1024, 54)).finish();
        net.assert_relay_up();
    });
}

#[test]
fn supervisor_restarts_a_crashed_child() {
    within(Duration::from_secs(120), |scope| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("cfg");
        // A supervisor's ports are set before it starts.
        let (relay_port, client_base) = (reserve_port(), reserve_ports(2));
        generate(&cfg, 2, 1, relay_port);
        let cfg_s = cfg.display().to_string();
        // An echo exit that greets every connection with a number of its own, so a new
        // connection that lands in an old one's exit stream is caught, not echoed.
        let target = TaggedEcho::start();
        let mut sup = scope.spawn(
            "supervisor",
            &[
                "supervisor",
                &cfg_s,
                "--exit",
                &format!("tcp:127.0.0.1:{}", target.port),
                "--client-port-base",
                &client_base.to_string(),
                "-p",
                &relay_port.to_string(),
            ],
        );
        let proxies = sup.wait_until(FORM_TIMEOUT, "2 \"SOCKS5 proxy:\" lines", |p| {
            let ports = announced_proxies(&p.out());
            (ports.len() >= 2).then_some(ports)
        });
        assert_eq!(proxies, [client_base, client_base + 1]);
        let mut tags = HashSet::new();
        // One connection is still open when its client dies.
        let open = tagged_echo(
            client_base,
            &mut tags,
            pattern(32 * 1024, 60),
            "before the crash",
        );

        let port = client_base.to_string();
        let old = find_child(sup.pid(), "client", &port).expect("client-0 is a child");
        // SAFETY: SIGKILL to our own supervisor's child, found by parent pid and arguments.
        unsafe { libc::kill(old as libc::pid_t, libc::SIGKILL) };
        sup.wait_for_log("client-0 exited", EXIT_TIMEOUT);
        let new = sup.wait_until(EXIT_TIMEOUT, "a restarted client-0", |p| {
            find_child(p.pid(), "client", &port).filter(|pid| *pid != old)
        });
        assert!(!alive(old), "the killed client is gone");
        drop(open);
        wait_for_port(client_base, FORM_TIMEOUT);
        for i in 0..3 {
            let what = format!("connection {i} after the restart");
            tagged_echo(client_base, &mut tags, pattern(32 * 1024, 61 + i), &what);
        }

        let kids: Vec<u32> = descendants(sup.pid());
        assert!(kids.contains(&new));
        sup.signal(libc::SIGINT);
        let status = sup
            .wait_exit(EXIT_TIMEOUT)
            .expect("supervisor exits after SIGINT");
        assert!(status.success(), "supervisor exited with {status}");
        wait_all_gone(&kids, Duration::from_secs(5));
    });
}

#[test]
fn config_generate_refuses_to_overwrite() {
    within(Duration::from_secs(60), |_scope| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg: PathBuf = dir.path().join("cfg");
        generate(&cfg, 2, 1, 12345);
        let before = fs::read(cfg.join("system.json")).expect("system.json");

        let cfg_s = cfg.display().to_string();
        let again = run_once(
            &["config", "generate", "-c", "2", "-t", "1", &cfg_s],
            EXIT_TIMEOUT,
        );
        let err = String::from_utf8_lossy(&again.stderr);
        assert!(!again.status.success(), "overwrote without --force");
        assert!(
            err.contains("--force"),
            "message does not mention --force: {err}"
        );
        assert_eq!(
            fs::read(cfg.join("system.json")).expect("system.json"),
            before,
            "a refused generate changed system.json"
        );

        let forced = run_once(
            &[
                "config", "generate", "-c", "2", "-t", "1", "--force", &cfg_s,
            ],
            EXIT_TIMEOUT,
        );
        assert!(
            forced.status.success(),
            "--force failed: {}",
            String::from_utf8_lossy(&forced.stderr)
        );
        assert_ne!(
            fs::read(cfg.join("system.json")).expect("system.json"),
            before,
            "--force wrote the same group again"
        );
    });
}

/// Half-closing (as `nc -N` or an HTTP/1.0 client does) must not lose replies in flight.
#[test]
fn half_closed_connection_still_gets_every_byte_back() {
    within(Duration::from_secs(120), |scope| {
        let net = Net::start(scope, 2, 1, "echo");
        let data = pattern(100 * 1024, 70);
        let mut s = net.connect(0);
        let mut writer = s.try_clone().expect("try_clone");
        let to_write = data.clone();
        let write = thread::spawn(move || {
            writer.write_all(&to_write)?;
            writer.shutdown(Shutdown::Write)
        });
        let mut got = Vec::new();
        let read = s.read_to_end(&mut got);
        write
            .join()
            .expect("writer thread")
            .expect("write and shutdown");
        read.expect("read to the end");
        assert_same(&got, &data, "echo after a half-close");
    });
}

/// The exit closes a connection nobody uses any more (its client may be gone for good).
#[test]
fn an_idle_exit_connection_is_closed() {
    within(Duration::from_secs(60), |scope| {
        let net = Net::start_with(scope, 2, 1, &["--exit", "echo", "--exit-idle-secs", "1"]);
        let mut conn = net.connect(0);
        conn.write_all(b"ping").expect("write");
        let mut got = [0u8; 4];
        conn.read_exact(&mut got).expect("echo");
        assert_eq!(&got, b"ping");
        // Nothing more is sent: the exit gives up and the close reaches the application.
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest)
            .expect("the connection is closed, not timed out");
        assert!(rest.is_empty());
    });
}

/// Hundreds of connections that never finish a handshake do not lock members out.
#[test]
fn a_flood_of_idle_links_locks_no_member_out() {
    within(Duration::from_secs(150), |scope| {
        let mut net = Net::start(scope, 2, 1, "echo");
        // One address (this one, as a member's) keeps opening links that never speak, for
        // as long as the test needs; it holds the newest 300 open.
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let (port, flag, counter) = (net.relay_port, stop.clone(), count.clone());
        let flood = thread::spawn(move || {
            let mut held = std::collections::VecDeque::new();
            let mut opened = 0usize;
            let deadline = Instant::now() + Duration::from_secs(120);
            while !flag.load(Ordering::Relaxed) {
                if Instant::now() >= deadline {
                    // Bounded: the flood ended before the test stopped it.
                    return (opened, held, false);
                }
                if let Ok(s) = TcpStream::connect(local(port)) {
                    held.push_back(s);
                    opened += 1;
                    counter.store(opened, Ordering::Relaxed);
                }
                if held.len() > 300 {
                    held.pop_front();
                }
                thread::sleep(Duration::from_millis(2));
            }
            (opened, held, true)
        });
        // The flood is under way (at least 600 links, twice the relay's cap per address).
        let limit = Instant::now() + Duration::from_secs(60);
        while count.load(Ordering::Relaxed) < 600 {
            assert!(Instant::now() < limit, "the flood did not get going");
            thread::sleep(Duration::from_millis(20));
        }
        // Members that were already in keep working while the flood lasts.
        Transfer::start("during the flood", net.connect(0), pattern(64 * 1024, 60)).finish();
        // A member that restarts during the flood gets back in while the flood goes on.
        net.clients[1].signal(libc::SIGKILL);
        net.clients[1]
            .wait_exit(EXIT_TIMEOUT)
            .expect("client 1 dies");
        let before = count.load(Ordering::Relaxed);
        net.spawn_client(scope, 1);
        wait_for_port(net.client_ports[1], FORM_TIMEOUT);
        Transfer::start(
            "client 1 after its restart",
            net.connect(1),
            pattern(8 * 1024, 61),
        )
        .finish();
        let during = count.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        let (opened, held, flooding) = flood.join().expect("the flood thread");
        assert!(opened >= 600, "only {opened} flood links opened");
        // The flood was still opening links when the member carried bytes again: it got
        // in despite the flood, not after it.
        assert!(
            flooding && during > before,
            "the flood stopped before the member was back ({before} links at the restart, \
             {during} when it carried bytes, flooding until stopped: {flooding})"
        );
        // The relay itself hung up on the idle links it still had (their handshake never
        // came): reading them ends.
        for mut s in held.into_iter().take(20) {
            s.set_read_timeout(Some(Duration::from_secs(15)))
                .expect("timeout");
            let mut rest = Vec::new();
            match s.read_to_end(&mut rest) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("the relay kept an idle link open: {e}"),
            }
        }
        net.assert_relay_up();
    });
}

/// A trustee that dies pauses the exchanges; once it is back every byte arrives.
#[test]
fn a_killed_trustee_pauses_and_nothing_is_lost() {
    within(Duration::from_secs(120), |scope| {
        let mut net = Net::start(scope, 2, 2, "echo");
        let transfer = Transfer::start("client 0", net.connect(0), pattern(512 * 1024, 70));
        transfer.wait_for_progress(32 * 1024, TRANSFER_TIMEOUT);

        net.trustees[1].signal(libc::SIGKILL);
        net.trustees[1]
            .wait_exit(EXIT_TIMEOUT)
            .expect("trustee 1 dies");
        net.relay
            .wait_until(FORM_TIMEOUT, "trustee 1 leaving", |p| {
                p.log().contains("trustee 1 disconnected").then_some(())
            });
        net.spawn_trustee(scope, 1);
        transfer.finish();
        net.assert_relay_up();
    });
}

/// Sixteen clients: one streams a bulk transfer (long cells) while another holds a
/// conversation of small messages; both come back intact and in order.
#[test]
fn a_bulk_transfer_and_a_conversation_share_sixteen_clients() {
    within(Duration::from_secs(180), |scope| {
        let mut net = Net::start(scope, 16, 2, "echo");
        let bulk = Transfer::start("bulk via client 3", net.connect(3), pattern(4 << 20, 80));
        bulk.wait_for_progress(64 * 1024, TRANSFER_TIMEOUT);
        let mut chat = net.connect(11);
        let mut back = [0u8; 40];
        for k in 0..50u64 {
            let msg = pattern(40, 1000 + k);
            chat.write_all(&msg).expect("write a message");
            chat.read_exact(&mut back).expect("its echo");
            assert_same(&back, &msg, &format!("message {k}"));
        }
        bulk.finish();
        net.assert_relay_up();
    });
}

/// A TCP forwarder between a client and the relay whose connections the test can cut.
struct Cutter {
    port: u16,
    live: Arc<Mutex<Vec<TcpStream>>>,
    cuts: Arc<AtomicUsize>,
}

impl Cutter {
    fn start(relay_port: u16) -> Cutter {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the forwarder");
        let port = listener.local_addr().expect("local_addr").port();
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let keep = live.clone();
        thread::spawn(move || {
            // Bounded: the forwarder serves at most a few hundred links.
            for inbound in listener.incoming().take(500) {
                let Ok(inbound) = inbound else { continue };
                let Ok(outbound) = TcpStream::connect(local(relay_port)) else {
                    continue;
                };
                for s in [&inbound, &outbound] {
                    if let Ok(c) = s.try_clone() {
                        lock(&keep).push(c);
                    }
                }
                for (mut from, mut to) in [
                    (inbound.try_clone(), outbound.try_clone()),
                    (outbound.try_clone(), inbound.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    thread::spawn(move || {
                        let _ = io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Cutter {
            port,
            live,
            cuts: Arc::default(),
        }
    }

    /// Cuts every link now forwarded (both TCP connections of each, at once).
    fn cut(&self) {
        for s in lock(&self.live).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }
}

/// Starts client 0 again with its link to the relay through a forwarder the test can cut.
fn client_0_behind_a_cutter(net: &mut Net, scope: &Scope) -> Cutter {
    let cutter = Cutter::start(net.relay_port);
    net.clients[0].kill();
    let argv = Group::new(&net.cfg).client(cutter.port, 0, 0, &[]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    net.clients[0] = scope.spawn("client-0", &argv);
    net.client_ports[0] = net.clients[0].listening_port("listening on");
    wait_for_port(net.client_ports[0], FORM_TIMEOUT);
    cutter
}

/// A client whose link to the relay is cut for a moment keeps its open connections, and
/// no byte of them is lost in either direction.
#[test]
fn a_cut_link_keeps_open_connections_and_every_byte() {
    within(Duration::from_secs(180), |scope| {
        let mut net = Net::start(scope, 3, 1, "echo");
        let cutter = client_0_behind_a_cutter(&mut net, scope);
        let transfer = Transfer::start("through cuts", net.connect(0), pattern(2 << 20, 90));
        for k in 1..=3 {
            transfer.wait_for_progress(k * 256 * 1024, TRANSFER_TIMEOUT);
            cutter.cut();
        }
        transfer.finish();
        assert_eq!(cutter.cuts.load(Ordering::SeqCst), 3);
        net.assert_relay_up();
    });
}

/// A client whose link is cut again and again while 64 MiB come down to it (an echo of
/// what it sends) receives every byte, in order: replays after each cut lose nothing.
#[test]
fn a_link_cut_again_and_again_during_a_64_mib_download_loses_no_byte() {
    within(Duration::from_secs(600), |scope| {
        let mut net = Net::start(scope, 3, 1, "echo");
        let cutter = client_0_behind_a_cutter(&mut net, scope);
        let total = 64 << 20;
        // Each cut soon after the last counts as one more failure for the client's redial
        // backoff (protocol.md §1), so the waits grow: time for them.
        let transfer = Transfer::start_within(
            "64 MiB through cuts",
            net.connect(0),
            pattern(total, 94),
            Duration::from_secs(300),
        );
        // A cut every 8 MiB that came back: seven in all.
        let step = 8 << 20;
        for k in 1..total / step {
            transfer.wait_for_progress(k * step, TRANSFER_TIMEOUT);
            cutter.cut();
        }
        transfer.finish();
        assert_eq!(cutter.cuts.load(Ordering::SeqCst), total / step - 1);
        net.assert_relay_up();
    });
}

/// One client opening many more connections than the exit allows a slot gets the extra
/// ones closed; the relay's exit connections stay bounded, others keep working, and a
/// member that restarts gets back in.
#[test]
fn a_client_with_thousands_of_connections_harms_nobody() {
    within(Duration::from_secs(240), |scope| {
        // The test holds a few thousand sockets.
        raise_open_files(8192);
        let mut net = Net::start_with(scope, 3, 1, &["--exit", "echo", "--exit-per-slot", "64"]);
        let metrics = net.metrics;
        // The harness's readiness probes of the clients' ports opened exit connections too;
        // they close with the probes. Count from none.
        wait_metric(metrics, "dissent_exit_connections", TRANSFER_TIMEOUT, |v| {
            v == 0.0
        });
        let mut held = Vec::new();
        let mut refused_locally = 0usize;
        for _ in 0..2000 {
            match TcpStream::connect(local(net.client_ports[0])) {
                Ok(mut s) => {
                    let _ = s.write_all(b"x");
                    held.push(s);
                }
                Err(_) => refused_locally += 1,
            }
        }
        // The relay never has more exit connections than the slot's cap.
        let open = wait_metric(metrics, "dissent_exit_connections", TRANSFER_TIMEOUT, |v| {
            v > 0.0
        });
        assert!(open <= 64.0, "{open} exit connections");
        // Others keep working meanwhile.
        Transfer::start(
            "client 1 meanwhile",
            net.connect(1),
            pattern(256 * 1024, 91),
        )
        .finish();
        // A member that restarts gets back in.
        net.clients[2].signal(libc::SIGKILL);
        net.clients[2]
            .wait_exit(EXIT_TIMEOUT)
            .expect("client 2 dies");
        net.spawn_client(scope, 2);
        wait_for_port(net.client_ports[2], FORM_TIMEOUT);
        Transfer::start(
            "client 2 after its restart",
            net.connect(2),
            pattern(16 * 1024, 92),
        )
        .finish();
        // Of client 0's connections, at most the cap were carried; the rest were closed.
        let mut echoed = 0usize;
        let mut closed = 0usize;
        for s in held.iter_mut() {
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let mut b = [0u8; 1];
            match s.read(&mut b) {
                Ok(1) => echoed += 1,
                Ok(_) => closed += 1,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => closed += 1,
                Err(_) => {}
            }
        }
        assert!(echoed <= 64, "{echoed} connections were carried");
        assert!(echoed > 0, "no connection was carried");
        assert!(
            closed + refused_locally > 1000,
            "only {closed} closed and {refused_locally} refused"
        );
        // Client 0's slot still has at most its cap; clients 1 and 2 have one each.
        let open = metric(metrics, "dissent_exit_connections").expect("the relay's metrics");
        assert!(open <= 66.0, "{open} exit connections");
        net.assert_relay_up();
    });
}

/// Raises this process's soft open-file limit to at least `want` (within the hard limit).
fn raise_open_files(want: libc::rlim_t) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A destination that sends without end to the first connection it accepts, for at most
/// `limit`, counting the bytes its socket accepted, until a write fails (the far end is gone).
struct Firehose {
    port: u16,
    sent: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
}

impl Firehose {
    fn start(limit: Duration) -> Firehose {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the firehose");
        let port = listener.local_addr().expect("local_addr").port();
        let sent = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let (count, gone) = (sent.clone(), closed.clone());
        thread::spawn(move || {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let _ = s.set_write_timeout(Some(limit));
            let chunk = pattern(64 * 1024, 90);
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                match s.write(&chunk) {
                    Ok(n) if n > 0 => {
                        count.fetch_add(n, Ordering::SeqCst);
                    }
                    _ => {
                        gone.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        });
        Firehose { port, sent, closed }
    }
}

/// Bytes a destination may still get rid of after its connection was aborted: what the
/// tunnel carried before the abort took effect (a few exchanges), the exit's queue and
/// the socket buffers on both sides of the exit's destination socket (a few MiB each on
/// Linux loopback). A connection that is not aborted goes on without end.
const ABORT_BOUND: usize = 32 << 20;

/// An application that closes a download mid-way (as a killed `curl` does) ends the
/// connection at the exit: the destination sees it closed, soon.
#[test]
fn an_aborted_download_stops_at_the_exit() {
    within(Duration::from_secs(120), |scope| {
        let mut net = Net::start_with(scope, 2, 1, &["--exit", "socks5", "--allow-private-exit"]);
        let hose = Firehose::start(Duration::from_secs(90));
        let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, hose.port);
        let mut s = socks5_connect(net.client_ports[0], target).expect("SOCKS5 connect");
        s.set_read_timeout(Some(TRANSFER_TIMEOUT))
            .expect("set_read_timeout");
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < 1 << 20 {
            match s.read(&mut buf) {
                Ok(0) => panic!("the download ended after {got} bytes"),
                Ok(n) => got += n,
                Err(e) => panic!("the download failed after {got} bytes: {e}"),
            }
        }
        // Close with bytes unread: the kernel resets the connection, as when curl is killed.
        let at_close = hose.sent.load(Ordering::SeqCst);
        drop(s);
        let closed = Instant::now();
        while !hose.closed.load(Ordering::SeqCst) {
            assert!(
                closed.elapsed() < Duration::from_secs(60),
                "the destination is still being read {} bytes after the close",
                hose.sent.load(Ordering::SeqCst) - at_close
            );
            thread::sleep(Duration::from_millis(20));
        }
        let after = hose.sent.load(Ordering::SeqCst) - at_close;
        eprintln!(
            "destination closed {:?} after the application, {after} bytes sent meanwhile",
            closed.elapsed()
        );
        assert!(
            after < ABORT_BOUND,
            "{after} bytes went to the exit after the abort (at most {ABORT_BOUND})"
        );
        net.assert_relay_up();
    });
}

/// Downstream credit of a connection (`dissent_core::credit::DOWN_WINDOW`).
const WINDOW: f64 = 1024.0 * 1024.0;

/// Median round trip of `n` small echoes on `s` (a [`TaggedEcho`] connection).
fn median_rtt(s: &mut TcpStream, n: usize) -> Duration {
    let mut rtts = Vec::with_capacity(n);
    let mut back = [0u8; 32];
    for i in 0..n {
        let ping = [i as u8; 32];
        let t = Instant::now();
        s.write_all(&ping).expect("echo write");
        s.read_exact(&mut back).expect("echo read");
        rtts.push(t.elapsed());
        assert_eq!(back, ping);
    }
    rtts.sort();
    rtts[n / 2]
}

/// Client 0 restarted with a metrics endpoint; returns the endpoint's port.
fn client_0_with_metrics(net: &mut Net, scope: &Scope) -> u16 {
    net.clients[0].kill();
    let extra: Vec<String> = ["--metrics", "0"].iter().map(|s| s.to_string()).collect();
    let argv = dissent_harness::group::Group::new(&net.cfg).client(net.relay_port, 0, 0, &extra);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut client = scope.spawn("client-0", &argv);
    net.client_ports[0] = client.listening_port(dissent_harness::ports::CLIENT_LISTENING);
    let metrics = client.listening_port(dissent_harness::ports::SERVING_METRICS);
    net.clients[0] = client;
    wait_for_port(net.client_ports[0], FORM_TIMEOUT);
    metrics
}

/// A reader that stops costs a window at the client and at the exit, not the download,
/// and the others' round trips stay as they were; when it reads again, everything arrives.
#[test]
fn a_stalled_reader_costs_a_window_and_slows_nobody() {
    within(Duration::from_secs(240), |scope| {
        let mut net = Net::start_with(scope, 2, 1, &["--exit", "socks5", "--allow-private-exit"]);
        let client_metrics = client_0_with_metrics(&mut net, scope);
        let echo = TaggedEcho::start();
        let hose = Firehose::start(Duration::from_secs(200));
        let echo_at = SocketAddrV4::new(Ipv4Addr::LOCALHOST, echo.port);
        let mut probe = socks5_connect(net.client_ports[1], echo_at).expect("SOCKS5 to echo");
        probe
            .set_read_timeout(Some(TRANSFER_TIMEOUT))
            .expect("timeout");
        probe.write_all(b"?").expect("hello");
        let mut tag = [0u8; TAG_LEN];
        probe.read_exact(&mut tag).expect("greeting");
        let normal = median_rtt(&mut probe, 40);
        let hose_at = SocketAddrV4::new(Ipv4Addr::LOCALHOST, hose.port);
        let mut stalled = socks5_connect(net.client_ports[0], hose_at).expect("SOCKS5 connect");
        stalled
            .set_read_timeout(Some(TRANSFER_TIMEOUT))
            .expect("timeout");
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < 1 << 20 {
            got += stalled.read(&mut buf).expect("download");
        }
        // Stop reading. The sockets' buffers fill, then the tunnel's window, then nothing moves.
        let client_q = "dissent_queue_depth{queue=\"client_local_bytes\"}";
        let exit_q = "dissent_queue_depth{queue=\"exit_down_bytes\"}";
        let mut last = hose.sent.load(Ordering::SeqCst);
        let still = Instant::now();
        loop {
            thread::sleep(Duration::from_millis(500));
            let now = hose.sent.load(Ordering::SeqCst);
            if now == last && still.elapsed() > Duration::from_secs(2) {
                break;
            }
            assert!(
                still.elapsed() < Duration::from_secs(60),
                "the download never stalls"
            );
            last = now;
        }
        let (mut most_client, mut most_exit) = (0f64, 0f64);
        let mut ratio = f64::MAX;
        // Round trips on a loaded machine vary: the best of a few tries, each the median of
        // 40 echoes during the stall against the median of 40 before it.
        for _ in 0..4 {
            let during = median_rtt(&mut probe, 40);
            most_client = most_client.max(metric(client_metrics, client_q).unwrap_or(0.0));
            most_exit = most_exit.max(net.metric(exit_q));
            ratio = ratio.min(during.as_secs_f64() / normal.as_secs_f64());
            if ratio <= 2.0 {
                break;
            }
        }
        eprintln!(
            "stalled: {} bytes sent by the destination, client queue {most_client}, exit \
             queue {most_exit}, RTT ratio {ratio:.2}",
            hose.sent.load(Ordering::SeqCst)
        );
        assert!(most_client <= WINDOW, "client queued {most_client} bytes");
        assert!(most_exit <= WINDOW, "exit queued {most_exit} bytes");
        assert!(
            ratio <= 2.0,
            "round trips {ratio:.2} times slower during the stall"
        );
        // Reading again: it goes on. What the sockets' buffers on both sides of the tunnel
        // hold (several MiB on Linux loopback, more with large writes) comes first.
        let before = hose.sent.load(Ordering::SeqCst);
        let mut more = 0;
        while hose.sent.load(Ordering::SeqCst) == before && more < 256 << 20 {
            more += stalled.read(&mut buf).expect("download resumes");
        }
        assert!(
            hose.sent.load(Ordering::SeqCst) > before,
            "the destination sent nothing more while {more} bytes were read"
        );
        net.assert_relay_up();
    });
}

/// A destination that reads `first` bytes, stops reading until `resume` is set, then reads
/// to the end and answers with the SHA-256 of everything it read.
struct PausingSink {
    port: u16,
    read: Arc<AtomicUsize>,
    resume: Arc<AtomicBool>,
}

impl PausingSink {
    fn start(first: usize) -> PausingSink {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the sink");
        let port = listener.local_addr().expect("local_addr").port();
        let read = Arc::new(AtomicUsize::new(0));
        let resume = Arc::new(AtomicBool::new(false));
        let (count, go) = (read.clone(), resume.clone());
        thread::spawn(move || {
            use sha2::Digest;
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
            let mut hash = sha2::Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            // Bounded: the test sets `resume` within its own time limit.
            let deadline = Instant::now() + Duration::from_secs(200);
            loop {
                if got >= first && !go.load(Ordering::SeqCst) {
                    if Instant::now() > deadline {
                        return;
                    }
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
                let want = if got < first {
                    (first - got).min(buf.len())
                } else {
                    buf.len()
                };
                match s.read(&mut buf[..want]) {
                    Ok(0) => break,
                    Ok(n) => {
                        hash.update(&buf[..n]);
                        got += n;
                        count.store(got, Ordering::SeqCst);
                    }
                    Err(_) => return,
                }
            }
            let _ = s.write_all(&hash.finalize());
        });
        PausingSink { port, read, resume }
    }
}

/// An upload to a destination that stops reading for several seconds stops its owner's
/// application (TCP pushes back; the connection stays open), slows nobody else, and
/// completes byte-exact once the destination reads again.
#[test]
fn an_upload_to_a_destination_that_pauses_waits_slows_nobody_and_arrives_byte_exact() {
    use sha2::Digest;
    within(Duration::from_secs(240), |scope| {
        let mut net = Net::start_with(scope, 2, 1, &["--exit", "socks5", "--allow-private-exit"]);
        let echo = TaggedEcho::start();
        let echo_at = SocketAddrV4::new(Ipv4Addr::LOCALHOST, echo.port);
        let mut probe = socks5_connect(net.client_ports[1], echo_at).expect("SOCKS5 to echo");
        probe
            .set_read_timeout(Some(TRANSFER_TIMEOUT))
            .expect("timeout");
        probe.write_all(b"?").expect("hello");
        let mut tag = [0u8; TAG_LEN];
        probe.read_exact(&mut tag).expect("greeting");
        let normal = median_rtt(&mut probe, 40);

        let sink = PausingSink::start(2 << 20);
        let at = SocketAddrV4::new(Ipv4Addr::LOCALHOST, sink.port);
        let mut up = socks5_connect(net.client_ports[0], at).expect("SOCKS5 connect");
        up.set_read_timeout(Some(TRANSFER_TIMEOUT))
            .expect("timeout");
        let data = Arc::new(pattern(32 << 20, 93));
        let want: [u8; 32] = sha2::Sha256::digest(&data[..]).into();
        let written = Arc::new(AtomicUsize::new(0));
        let mut writer = up.try_clone().expect("clone");
        let (to_write, count) = (data.clone(), written.clone());
        let upload = thread::spawn(move || {
            for part in to_write.chunks(64 * 1024) {
                writer.write_all(part)?;
                count.fetch_add(part.len(), Ordering::SeqCst);
            }
            writer.shutdown(Shutdown::Write)
        });
        // The destination stops after 2 MiB; the application's writes stop soon after (the
        // sockets' buffers and the connection's upstream window fill).
        let paused = Instant::now();
        let mut last = written.load(Ordering::SeqCst);
        let mut still = Instant::now();
        loop {
            thread::sleep(Duration::from_millis(500));
            let now = written.load(Ordering::SeqCst);
            if now != last {
                still = Instant::now();
                last = now;
            } else if still.elapsed() > Duration::from_secs(2) {
                break;
            }
            assert!(
                paused.elapsed() < Duration::from_secs(60),
                "the upload never stops"
            );
        }
        assert!(last < data.len(), "the whole upload went while nobody read");
        let mut ratio = f64::MAX;
        for _ in 0..4 {
            let during = median_rtt(&mut probe, 40);
            ratio = ratio.min(during.as_secs_f64() / normal.as_secs_f64());
            if ratio <= 2.0 {
                break;
            }
        }
        // Several seconds without reading, then the destination reads again.
        while paused.elapsed() < Duration::from_secs(6) {
            thread::sleep(Duration::from_millis(100));
        }
        let stopped_at = sink.read.load(Ordering::SeqCst);
        eprintln!(
            "paused: the application wrote {last} bytes, the destination read {stopped_at}, \
             RTT ratio {ratio:.2}"
        );
        sink.resume.store(true, Ordering::SeqCst);
        upload.join().expect("upload thread").expect("upload");
        let mut got = [0u8; 32];
        up.read_exact(&mut got).expect("the destination's digest");
        assert_eq!(got, want, "the destination read other bytes");
        assert_eq!(sink.read.load(Ordering::SeqCst), data.len());
        assert!(
            ratio <= 2.0,
            "round trips {ratio:.2} times slower while a destination did not read"
        );
        net.assert_relay_up();
    });
}

/// A download whose reader is slow at first (the window fills and empties again and
/// again), then fast, arrives whole and in order.
#[test]
fn a_download_through_a_slow_then_fast_reader_arrives_byte_exact() {
    within(Duration::from_secs(240), |scope| {
        let net = Net::start_with(scope, 2, 1, &["--exit", "socks5", "--allow-private-exit"]);
        let body = Arc::new(pattern(24 << 20, 92));
        let (http_port, server) = serve_file(body.clone(), 1);
        let at = SocketAddrV4::new(Ipv4Addr::LOCALHOST, http_port);
        let mut s = socks5_connect(net.client_ports[0], at).expect("SOCKS5 connect");
        s.set_read_timeout(Some(TRANSFER_TIMEOUT)).expect("timeout");
        s.write_all(b"GET /file HTTP/1.1\r\nHost: test\r\n\r\n")
            .expect("request");
        let mut got = Vec::with_capacity(body.len() + 1024);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // The first 3 MiB at a few MB/s, the rest as fast as it comes.
            let n = if got.len() < 3 << 20 {
                thread::sleep(Duration::from_millis(5));
                s.read(&mut buf[..16 * 1024])
            } else {
                s.read(&mut buf)
            }
            .expect("download");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let start = got
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP header")
            + 4;
        assert_same(&got[start..], &body, "slow-then-fast download");
        drop(s);
        server.join().expect("server");
    });
}

/// The relay's refusal list: a client listed (by an operator's edit here; by a blame round's
/// conviction otherwise) is refused, a restarted relay still refuses it, and
/// `dissent relay admit` lets it back in. Four clients: the other buddy group sends while it
/// is out.
#[test]
fn the_refusal_list_survives_a_relay_restart_and_admit_lets_a_client_back() {
    within(Duration::from_secs(180), |scope| {
        let mut net = Net::start(scope, 4, 1, "echo");
        let system: serde_json::Value =
            serde_json::from_slice(&fs::read(net.cfg.join("system.json")).expect("system.json"))
                .expect("json");
        let key = system["clients"][3]["key"]
            .as_str()
            .expect("client 3's key");
        let list = serde_json::json!({
            "refused": [{"id": "client-3", "key": key, "reason": "by hand", "since": 0}]
        });
        fs::write(net.cfg.join("refused.json"), list.to_string()).expect("write the list");
        // The relay reads the list every stats period (1 s here).
        net.relay
            .wait_for_log("client 3 is on the refusal list", FORM_TIMEOUT);
        net.clients[3].wait_for_log("refusal list", FORM_TIMEOUT);
        wait_metric(net.metrics, "dissent_online_clients", FORM_TIMEOUT, |v| {
            v == 3.0
        });

        // A new relay on the same port still refuses it.
        net.relay.signal(libc::SIGINT);
        net.relay
            .wait_exit(EXIT_TIMEOUT)
            .expect("the relay stops on SIGINT");
        let port = net.relay_port.to_string();
        let cfg = net.cfg.display().to_string();
        let relay = relay_with_metrics(scope, &cfg, &["-p", &port, "--exit", "echo"]);
        net.relay = relay.proc;
        net.metrics = relay.metrics;
        net.relay
            .wait_for_log("client 3 is on the refusal list", FORM_TIMEOUT);
        wait_metric(net.metrics, "dissent_online_clients", FORM_TIMEOUT, |v| {
            v == 3.0
        });
        let data = pattern(32 * 1024, 5);
        let got = echo_bulk(net.client_ports[0], &data);
        assert_same(&got, &data, "client 0's echo without client 3");
        let out = run_once(&["relay", "refused", &cfg], EXIT_TIMEOUT);
        assert!(String::from_utf8_lossy(&out.stdout).contains("client-3"));

        // The operator lets it back in: it rejoins and carries bytes.
        let out = run_once(&["relay", "admit", &cfg, "client-3"], EXIT_TIMEOUT);
        assert!(out.status.success(), "{out:?}");
        net.relay
            .wait_for_log("client 3 was taken off the refusal list", FORM_TIMEOUT);
        wait_metric(
            net.metrics,
            "dissent_online_clients",
            TRANSFER_TIMEOUT,
            |v| v == 4.0,
        );
        let got = echo_bulk(net.client_ports[3], &data);
        assert_same(&got, &data, "client 3's echo once admitted");
        let out = run_once(&["relay", "admit", &cfg, "client-3"], EXIT_TIMEOUT);
        assert!(!out.status.success(), "admitted twice: {out:?}");
    });
}
