//! End-to-end tests of the relay's status page (`relay --status`): the JSON document over
//! HTTP, `dissent status` in a terminal, and the page itself in headless Chromium, whose
//! DOM must show the figures and see them move with traffic.
//!
//! The Chromium test needs Debian's `chromium` (scripts/setup installs it). Where it is
//! missing the test says so and passes, unless `CI` or `DISSENT_REQUIRE_CHROMIUM` is set
//! (scripts/test sets the latter): there a missing Chromium fails it. Chromium runs as the
//! machine's notes say (headless, no sandbox, no background networking, a fresh profile)
//! and only ever loads the page from 127.0.0.1. `DISSENT_STATUS_SCREENSHOT=PATH` keeps the
//! screenshot it takes (docs/status.png is made that way).
// Real processes with Linux facilities (prctl): on other platforms the binary builds and
// runs no test.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod support;
use support::*;

/// Longest wait for a figure to reach the document.
const FIGURE_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest a Chromium run may take.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

/// Waits for the relay's `status page at http://127.0.0.1:PORT/` line; returns the port.
fn status_port(relay: &mut Proc) -> u16 {
    relay.wait_until(FORM_TIMEOUT, "the status page's address", |p| {
        p.log().lines().find_map(|l| {
            let rest = l.split("status page at http://127.0.0.1:").nth(1)?;
            rest.split('/').next()?.parse().ok()
        })
    })
}

/// A DC-net of two clients and a trustee, echo exit, status page on a port of the OS's
/// choosing; returns the net and the page's port.
fn net_with_status(scope: &Scope) -> (Net, u16) {
    let mut net = Net::start_with(scope, 2, 1, &["--exit", "echo", "--status", "127.0.0.1:0"]);
    let port = status_port(&mut net.relay);
    (net, port)
}

/// `GET path` with `Host: host` on 127.0.0.1:`port`: the status line and the body.
fn get(port: u16, path: &str, host: &str) -> (String, String) {
    let mut s = connect(port, Duration::from_secs(10));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send a request");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read the reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The status document.
fn document(port: u16) -> serde_json::Value {
    let (status, body) = get(port, "/status.json", &format!("127.0.0.1:{port}"));
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    serde_json::from_str(&body).expect("JSON")
}

/// Polls the document until `ok` holds; returns it.
fn wait_document(
    port: u16,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + FIGURE_TIMEOUT;
    loop {
        let doc = document(port);
        if ok(&doc) {
            return doc;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {FIGURE_TIMEOUT:?}: {doc}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn number(doc: &serde_json::Value, pointer: &str) -> f64 {
    doc.pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing: {doc}"))
}

/// Sends `len` pattern bytes through client `i` of `net` and reads them back (echo exit).
fn echo_through(net: &Net, i: usize, len: usize, seed: u64) {
    let data = pattern(len, seed);
    let mut s = net.connect(i);
    let writer = {
        let mut w = s.try_clone().expect("clone the stream");
        let data = data.clone();
        thread::spawn(move || w.write_all(&data).expect("send through the client"))
    };
    let mut back = vec![0u8; len];
    s.read_exact(&mut back).expect("the bytes come back");
    writer.join().expect("the writer");
    assert!(back == data, "the bytes came back changed");
}

#[test]
fn the_status_document_and_the_terminal_show_the_net_and_its_traffic() {
    within(Duration::from_secs(150), |scope| {
        let (net, port) = net_with_status(scope);
        let doc = wait_document(port, "a running interval with both clients", |d| {
            d["state"] == "running" && d["interval"]["clients"] == 2 && d["online"]["trustees"] == 1
        });
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["relay"]["clients"], 2);
        assert_eq!(doc["relay"]["exit"], "echo");
        assert_eq!(doc["online"]["clients"], 2);
        let texts: Vec<&str> = doc["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["text"].as_str())
            .collect();
        assert!(
            texts.iter().any(|t| t.contains("trustee 0 connected")),
            "{texts:?}"
        );
        assert!(
            texts.iter().any(|t| t.contains("started with 2 clients")),
            "{texts:?}"
        );

        // Traffic moves the figures.
        let before = number(&doc, "/totals/up_bytes");
        let exchanges = number(&doc, "/totals/exchanges");
        const LEN: usize = 200_000;
        echo_through(&net, 0, LEN, 7);
        let doc = wait_document(port, "the bytes in the totals", |d| {
            d["totals"]["up_bytes"].as_f64().unwrap_or(0.0) >= before + LEN as f64
                && d["totals"]["down_bytes"].as_f64().unwrap_or(0.0) >= LEN as f64
        });
        assert!(number(&doc, "/totals/exchanges") > exchanges);
        let samples = doc["history"]["samples"].as_array().expect("samples");
        assert!(
            samples
                .iter()
                .any(|s| s["up_bytes_per_s"].as_f64().unwrap_or(0.0) > 0.0),
            "no sample saw the upload: {samples:?}"
        );
        let rtt = wait_document(port, "a probe round trip", |d| {
            d["probe"]["rtt_ms"].is_number()
        });
        assert!(number(&rtt, "/probe/rtt_ms") > 0.0);

        // The page itself, and nothing for another site's name (DNS rebinding).
        let (status, page) = get(port, "/", "localhost");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(page.contains("<title>dissent relay</title>"), "{page}");
        let (status, body) = get(port, "/status.json", "attacker.example");
        assert!(status.starts_with("HTTP/1.1 403"), "{status}");
        assert!(!body.contains("totals"), "{body}");

        // `dissent status` prints the same figures.
        let out = run_once(&["status", &port.to_string()], Duration::from_secs(20));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for part in [
            "running",
            "2 of 2 clients, 1 of 1 trustees",
            "with 2 clients",
            "exit        0 open",
            "probe       ",
            "exchanges/s",
            "trustee 0 connected",
        ] {
            assert!(text.contains(part), "{part:?} missing:\n{text}");
        }
        // And refuses what is not a status page, with the reason.
        let other = run_once(
            &["status", &net.metrics.to_string()],
            Duration::from_secs(20),
        );
        let err = String::from_utf8_lossy(&other.stderr);
        assert!(
            !other.status.success() && err.contains("--status address"),
            "{err}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// The page in headless Chromium

/// The Chromium binary, or `None` where it is missing and may be (not in CI).
fn chromium() -> Option<&'static str> {
    const BIN: &str = "chromium";
    match Command::new(BIN)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => Some(BIN),
        _ => {
            let required = std::env::var_os("DISSENT_REQUIRE_CHROMIUM").is_some()
                || std::env::var_os("CI").is_some();
            assert!(
                !required,
                "chromium is not installed, and this run requires it (CI or \
                 DISSENT_REQUIRE_CHROMIUM); scripts/setup installs it"
            );
            eprintln!("skipped: chromium is not installed (scripts/setup installs it)");
            None
        }
    }
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom`, `--screenshot=...`), a fresh
/// profile and a few seconds of the page's own time; returns its standard output.
fn headless(bin: &str, mode: &str, url: &str) -> String {
    let profile = tempfile::tempdir().expect("a profile folder");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,1100",
        // The page polls every second: let it poll a few times before the DOM is taken.
        "--virtual-time-budget=3500",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(mode)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    // Its own process group, so a Chromium that hangs goes with all its helpers.
    .process_group(0);
    // SAFETY: prctl only asks the kernel to stop the child with the test thread.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start chromium");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on our own child") {
            break status;
        }
        if Instant::now() >= deadline {
            // SAFETY: kills the process group of the Chromium this function started.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            panic!("chromium {mode} {url} did not finish within {CHROMIUM_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    // Helpers it left behind, if any, go with its group.
    // SAFETY: the process group of the Chromium this function started.
    unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
    assert!(status.success(), "chromium {mode} {url}: {status}");
    reader.join().expect("the stdout reader")
}

/// The `data-value` of the element with `id` in a dumped DOM.
fn figure(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!(" id=\"{id}\""))?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    let tag = &dom[start..end];
    let value = tag.split(" data-value=\"").nth(1)?.split('"').next()?;
    Some(value.to_string())
}

fn figure_f64(dom: &str, id: &str) -> f64 {
    figure(dom, id)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number in #{id} of the page:\n{dom}"))
}

/// The `data-polls` of the page's body: how many documents the page has shown.
fn polls(dom: &str) -> u32 {
    dom.split("<body data-polls=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_status_page_in_chromium_shows_the_figures_and_they_move_with_traffic() {
    let Some(bin) = chromium() else {
        return;
    };
    within(Duration::from_secs(300), move |scope| {
        let (net, port) = net_with_status(scope);
        let url = format!("http://127.0.0.1:{port}/");
        wait_document(port, "a running interval", |d| {
            d["interval"]["clients"] == 2
        });

        let dom = headless(bin, "--dump-dom", &url);
        assert!(
            polls(&dom) >= 1,
            "the page's script showed no document:\n{dom}"
        );
        let body = dom.split("<body").nth(1).and_then(|b| b.split('>').next());
        assert!(
            body.is_some_and(|b| !b.contains("data-error")),
            "the page could not read the relay:\n{dom}"
        );
        for id in [
            "exchanges-rate",
            "totals-exchanges",
            "up-rate",
            "down-rate",
            "totals-up",
            "totals-down",
            "clients-online",
            "trustees-online",
            "interval-number",
            "interval-clients",
            "reserved-slots",
            "exit-open",
            "exit-refused",
            "exit-failed",
        ] {
            figure_f64(&dom, id);
        }
        assert_eq!(figure_f64(&dom, "clients-online"), 2.0);
        assert_eq!(figure_f64(&dom, "trustees-online"), 1.0);
        assert_eq!(figure_f64(&dom, "interval-clients"), 2.0);
        assert!(figure(&dom, "rtt").is_some(), "no probe figure:\n{dom}");
        for graph in [
            "graph-exchanges",
            "graph-goodput",
            "graph-online",
            "graph-rtt",
        ] {
            assert!(
                dom.contains(&format!("id=\"{graph}\"><svg")),
                "no {graph}:\n{dom}"
            );
        }
        assert!(
            dom.contains("data-points="),
            "the graphs drew nothing:\n{dom}"
        );
        assert!(dom.contains("trustee 0 connected"), "no events:\n{dom}");
        let (up, exchanges) = (
            figure_f64(&dom, "totals-up"),
            figure_f64(&dom, "totals-exchanges"),
        );

        // Traffic through a client: the page's figures follow.
        const LEN: usize = 300_000;
        echo_through(&net, 1, LEN, 11);
        wait_document(port, "the bytes in the totals", |d| {
            d["totals"]["up_bytes"].as_f64().unwrap_or(0.0) >= up + LEN as f64
        });
        let dom = headless(bin, "--dump-dom", &url);
        let up_after = figure_f64(&dom, "totals-up");
        assert!(up_after >= up + LEN as f64, "up {up} then {up_after}");
        assert!(figure_f64(&dom, "totals-down") >= LEN as f64);
        assert!(figure_f64(&dom, "totals-exchanges") > exchanges);
        // The goodput graph has a point above the floor now.
        let goodput = dom
            .split("id=\"graph-goodput\"")
            .nth(1)
            .expect("the goodput graph");
        assert!(goodput.contains("<path"), "no goodput line:\n{goodput}");

        // A picture of it, kept where asked.
        let shots = tempfile::tempdir().expect("tempdir");
        let png = shots.path().join("status.png");
        headless(bin, &format!("--screenshot={}", png.display()), &url);
        let bytes = std::fs::read(&png).expect("chromium wrote a screenshot");
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
            "{}",
            bytes.len()
        );
        if let Some(keep) = std::env::var_os("DISSENT_STATUS_SCREENSHOT") {
            std::fs::copy(&png, Path::new(&keep)).expect("keep the screenshot");
        }
    });
}
