//! End-to-end tests with a client that misbehaves on purpose, and with honest members and
//! trustees killed inside the blame rounds it causes (held there by a test hook): the real
//! `dissent` binary built with the `disruptor` feature (`cargo test -p dissent --features
//! disruptor --test disruption`; scripts/test runs them). Without the feature this file is
//! empty.
#![cfg(feature = "disruptor")]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod support;
use support::*;

/// Records every connection the exit makes to it: the bytes each one carried.
fn recording_target() -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind target");
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    // Ends with the test process.
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let record = record.clone();
            thread::spawn(move || {
                let at = {
                    let mut seen = lock(&record);
                    seen.push(Vec::new());
                    seen.len() - 1
                };
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    lock(&record)[at].extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (port, seen)
}

/// The time of day, in seconds, of a log line that starts with an RFC 3339 timestamp
/// (`2026-12-07T09:01:18.780449Z ...`).
fn seconds_of_day(line: &str) -> Option<f64> {
    let t = line.trim_start().split('T').nth(1)?.split('Z').next()?;
    let mut parts = t.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// A client that XORs a plain cell of its own making into another slot's exchanges (what
/// an unsigned slot would have delivered) gets nothing of it to the exit: every such
/// exchange is reported disrupted (and the trap it springs has it named and excluded), and
/// once it is gone the owner's bytes arrive, once, in order.
#[test]
fn nothing_an_injecting_client_writes_reaches_the_exit() {
    within(Duration::from_secs(180), |scope| {
        let (target, seen) = recording_target();
        let exit = format!("tcp:127.0.0.1:{target}");
        let mut net = Net::start_with(scope, 2, 1, &["--exit", &exit, "--allow-private-exit"]);
        // Client 1 comes back as a disruptor.
        let mut injector = net.restart_disrupting(scope, 1, "injector", &["--disrupt", "inject"]);

        let data = pattern(16 * 1024, 7);
        let mut up = net.connect(0);
        up.write_all(&data).expect("write to client 0");
        // Bounded: the relay reports the disrupted exchanges of client 0's slot, until a
        // blame round on a sprung trap names the injector.
        let named = net
            .relay
            .wait_until(TRANSFER_TIMEOUT, "disrupted exchanges", |p| {
                let log = p.log();
                let disrupted = log.matches("was disrupted").count();
                let named = log.contains("client 1 disrupted an exchange");
                (disrupted >= 5 || (disrupted >= 1 && named)).then_some(named)
            });
        for conn in lock(&seen).iter() {
            assert!(
                !conn.windows(8).any(|w| w == b"injected"),
                "injected bytes reached the exit"
            );
        }

        // Without the disruptor the owner's bytes arrive, once, in order (its buddy back:
        // let in again by the operator if it was named).
        if named {
            injector.wait_for_log("excluded", TRANSFER_TIMEOUT);
        }
        injector.kill();
        if named {
            let cfg = net.cfg.display().to_string();
            let out = run_once(&["relay", "admit", &cfg, "client-1"], EXIT_TIMEOUT);
            assert!(out.status.success(), "{out:?}");
            net.relay
                .wait_for_log("client 1 was taken off the refusal list", FORM_TIMEOUT);
        }
        net.spawn_client(scope, 1);
        let deadline = Instant::now() + TRANSFER_TIMEOUT;
        loop {
            let got: Vec<Vec<u8>> = lock(&seen).clone();
            assert!(
                got.iter().all(|c| !c.windows(8).any(|w| w == b"injected")),
                "injected bytes reached the exit"
            );
            if got.iter().any(|c| c.len() >= data.len()) {
                let conn = got.iter().find(|c| c.len() >= data.len()).unwrap();
                assert_same(conn, &data, "client 0's bytes at the exit");
                break;
            }
            assert!(Instant::now() < deadline, "client 0's bytes never arrived");
            thread::sleep(Duration::from_millis(50));
        }
        net.assert_relay_up();
    });
}

/// A client that stalls (withholds its acknowledgement of every view, or answers every
/// request 9.5 s late) and dials again at once is cut once the others answered, and backed
/// off for growing delays, which its own dialer honours; the other buddy group's echoes
/// meanwhile come back byte-exact (its own buddy cannot send while it is away: fate
/// sharing).
fn a_stalling_client_is_backed_off_and_the_others_echo(mode: &str, why: &str) {
    let (mode, why) = (mode.to_string(), why.to_string());
    within(Duration::from_secs(180), move |scope| {
        let mut net = Net::start(scope, 4, 1, "echo");
        let mut staller = net.restart_disrupting(scope, 3, "staller", &["--disrupt", &mode]);
        net.relay.wait_for_log(
            &format!("client 3 {why}: penalized; a new Hello from it within 1.0 s is refused"),
            TRANSFER_TIMEOUT,
        );
        let data = pattern(256 * 1024, 21);
        let got = echo_bulk(net.client_ports[0], &data);
        assert_same(&got, &data, "client 0's echo while client 3 stalls");
        // It came back after its back-off and stalled again: twice as long.
        net.relay.wait_for_log(
            &format!("client 3 {why}: penalized; a new Hello from it within 2.0 s is refused"),
            TRANSFER_TIMEOUT,
        );
        staller.wait_for_log("backed off for", TRANSFER_TIMEOUT);
        let got = echo_bulk(net.client_ports[1], &data);
        assert_same(&got, &data, "client 1's echo while client 3 stalls");
        let log = net.relay.log();
        for honest in ["client 0 ", "client 1 ", "client 2 "] {
            assert!(
                !log.contains(&format!("{honest}{why}")),
                "an honest client was backed off"
            );
        }
        net.assert_relay_up();
    });
}

#[test]
fn a_client_that_withholds_its_ack_is_backed_off_and_the_others_echo() {
    a_stalling_client_is_backed_off_and_the_others_echo(
        "withhold-ack",
        "withheld its acknowledgement",
    );
}

#[test]
fn a_client_that_answers_late_is_cut_and_backed_off_and_the_others_echo() {
    a_stalling_client_is_backed_off_and_the_others_echo("slow", "answered long after the others");
}

/// A client that garbles every other exchange of other slots is named by a blame round (on
/// the trap it springs, or on the accusation of an owner it disrupted) and excluded; the
/// relay's evidence file passes `dissent blame verify` from the group's public keys, naming
/// it; and another client's transfer completes byte-exact.
#[test]
fn a_garbling_client_is_named_excluded_and_the_evidence_checks() {
    a_disruptor_is_named_excluded_and_the_evidence_checks("garble-every-other", None, false);
}

/// A garbling client that also lies in its reveal about the pad bit it shares with trustee 0
/// (which would hide its flipped cell bit) starts a dispute: the relay asks both sides to
/// prove the pair's Diffie–Hellman secret; the liar proves nothing, trustee 0 proves it
/// (and says so in its log, trustee 1 does not), and the proven bit convicts the client of
/// lying. The evidence's one dispute is client 3's with trustee 0, proven by the trustee,
/// and the evidence passes `dissent blame verify`.
#[test]
fn a_garbling_client_that_lies_about_its_pads_is_convicted_by_the_dispute() {
    a_disruptor_is_named_excluded_and_the_evidence_checks("garble-every-other", None, true);
}

/// A client that garbles every exchange of other slots (its owners' accusations garbled
/// with the rest) springs the traps of the first cell it changes: the relay starts the
/// round on them itself, names it and excludes it; the evidence (the trap form) passes
/// `dissent blame verify`; another client's transfer completes with its SHA-256 intact.
#[test]
fn a_client_garbling_every_cell_is_named_on_a_trap_excluded_and_the_evidence_checks() {
    a_disruptor_is_named_excluded_and_the_evidence_checks("garble-all", Some("trap"), false);
}

/// Client 3 restarted with `--disrupt mode` (and `--lie-about-pads` if `lies`) in a group
/// of four while clients 0 and 1 echo 256 KiB each: it is named (on `grounds`, if given;
/// of lying about a pad bit if it lies, on trustee 0's proof of their pair's secret, of
/// disrupting otherwise, with no dispute) and excluded, nobody else is, the evidence
/// checks, and the transfers complete byte-exact.
fn a_disruptor_is_named_excluded_and_the_evidence_checks(
    mode: &'static str,
    grounds: Option<&'static str>,
    lies: bool,
) {
    use sha2::{Digest, Sha256};
    within(Duration::from_secs(240), move |scope| {
        let mut net = Net::start(scope, 4, 2, "echo");
        let mut extra = vec!["--disrupt", mode];
        if lies {
            extra.push("--lie-about-pads");
        }
        let mut garbler = net.restart_disrupting(scope, 3, "garbler", &extra);
        // A member of the running interval: the transfers below run while it can disrupt
        // (256 KiB can pass within the interval it missed).
        garbler.wait_for_log("sending in interval", FORM_TIMEOUT);
        // Clients 0 and 1 are of the other buddy group: they send while client 3 was away.
        // Both send, so the garbler's every other exchange falls on their slots too.
        let data = pattern(256 * 1024, 33);
        let other = pattern(256 * 1024, 35);
        let (port0, port1) = (net.client_ports[0], net.client_ports[1]);
        let second = {
            let other = other.clone();
            thread::spawn(move || echo_bulk(port1, &other))
        };
        let got = echo_bulk(port0, &data);
        assert_same(
            &second.join().expect("client 1's echo"),
            &other,
            "client 1's echo",
        );
        assert_eq!(
            Sha256::digest(&got),
            Sha256::digest(&data),
            "client 0's echo (sha256)"
        );
        assert_same(&got, &data, "client 0's echo");
        let stdout = verify_evidence(&mut net.relay, &net.cfg);
        let log = net.relay.log();
        let (verdict, kind) = if lies {
            ("client 3 lied about a pad bit", "lied-about-pad")
        } else {
            ("client 3 disrupted an exchange", "disrupted")
        };
        assert!(log.contains(verdict), "the round did not find {verdict:?}");
        assert_none_named(
            &log,
            &["client 0", "client 1", "client 2", "trustee 0", "trustee 1"],
        );
        assert!(stdout.contains("\"client\""), "{stdout}");
        assert!(stdout.contains("\"index\": 3"), "{stdout}");
        assert!(
            stdout.contains(&format!("\"kind\": \"{kind}\"")),
            "{stdout}"
        );
        assert!(stdout.contains("\"offline_verifiable\": true"), "{stdout}");
        if let Some(grounds) = grounds {
            assert!(
                stdout.contains(&format!("\"grounds\": \"{grounds}\"")),
                "{stdout}"
            );
        }
        // Who proved the pair's secret: trustee 0, the only prover a liar leaves, in the
        // evidence and in its own log; nobody in a round without a dispute.
        let json: serde_json::Value = serde_json::from_str(&stdout).expect("the JSON");
        let proving: Vec<Vec<String>> = net
            .trustees
            .iter()
            .map(|t| {
                t.log()
                    .lines()
                    .filter(|l| l.contains("proving the pair's secret"))
                    .map(str::to_string)
                    .collect()
            })
            .collect();
        if lies {
            assert_eq!(
                json["dispute"],
                serde_json::json!({"client": 3, "trustee": 0, "proven_by": "trustee"}),
                "the evidence's dispute is not client 3's with trustee 0, proven by the trustee"
            );
            assert!(
                proving[0].len() == 1
                    && proving[0][0].contains("dispute with client 3 about exchange "),
                "trustee 0's log: {:?}",
                proving[0]
            );
            assert!(proving[1].is_empty(), "trustee 1's log: {:?}", proving[1]);
        } else {
            assert!(
                json["dispute"].is_null(),
                "a dispute in the evidence: {stdout}"
            );
            assert!(proving.iter().all(Vec::is_empty), "{proving:?}");
        }
        // Excluded: its key is on the relay's refusal list.
        garbler.wait_for_log("excluded", TRANSFER_TIMEOUT);
        let refused = refused(&net.cfg);
        assert_eq!(
            refused.lines().count(),
            1,
            "one client refused, and only one: {refused}"
        );
        assert!(!refused.contains("no client is refused"), "{refused}");
        // Another client's transfer after the exclusion completes too.
        let again = pattern(64 * 1024, 34);
        let got = echo_bulk(net.client_ports[1], &again);
        assert_same(&got, &again, "client 1's echo after the exclusion");
        net.assert_relay_up();
    });
}

/// Panics if the relay's `log` names any of `honest` (`client 0`, `trustee 1`): as having
/// disrupted, lied or refused blame, or as refused until an operator admits it.
fn assert_none_named(log: &str, honest: &[&str]) {
    for who in honest {
        for verdict in ["disrupted", "lied", "refused blame", "is refused until"] {
            let said = format!("{who} {verdict}");
            assert!(!log.contains(&said), "an honest node was named: {said:?}");
        }
    }
}

/// The first blame evidence the relay wrote, checked by `dissent blame verify --json` from
/// the group's public keys: its JSON output.
fn verify_evidence(relay: &mut Proc, cfg: &std::path::Path) -> String {
    let line = relay.wait_for_log(support::EVIDENCE_WRITTEN, TRANSFER_TIMEOUT);
    let path = support::evidence_path(&line);
    let cfg = cfg.display().to_string();
    let out = run_once(
        &["blame", "verify", &path, "--group", &cfg, "--json"],
        EXIT_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "dissent blame verify refused the evidence: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The relay's client refusal list (`dissent relay refused`), one line per refused client.
fn refused(cfg: &std::path::Path) -> String {
    let cfg = cfg.display().to_string();
    let out = run_once(&["relay", "refused", &cfg], EXIT_TIMEOUT);
    assert!(out.status.success(), "dissent relay refused: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that `dissent relay refused` lists one client, and that it is `name`.
fn assert_only_refused(cfg: &std::path::Path, name: &str) {
    let list = refused(cfg);
    assert_eq!(
        list.lines().count(),
        1,
        "one client refused, and only one: {list}"
    );
    assert!(list.contains(name), "{name} is not the refused one: {list}");
}

/// An honest client killed (SIGKILL) inside a blame round, before it answered, and started
/// again. Client 1 runs with the test hook of `disruptor` builds that holds a blame round's
/// request unanswered (`DISSENT_TEST_HOLD_BLAME_REQUEST`, hosted/src/client/answer.rs):
/// without it the round is over within milliseconds, before a test reading logs can act.
/// Once the relay's log says a round began and client 1's that it holds the request, it is
/// killed and started again without the hook. The relay takes the restart as one (the
/// member cannot answer: penalized, not convicted) and the round goes on; the garbler
/// (client 3, `garble-all`) is convicted and excluded, and the round's evidence passes
/// `dissent blame verify` naming it; no one else is named or refused;
/// the restarted client sends in an interval again; echoes through client 0 (in flight
/// across the round) and through the restarted client 1 come back byte-exact.
#[test]
fn an_honest_client_killed_in_a_blame_round_is_not_named_and_serves_again() {
    within(Duration::from_secs(120), |scope| {
        let began = Instant::now();
        let mut net = Net::start(scope, 4, 2, "echo");
        net.kill_client(1);
        net.spawn_client_env(scope, 1, &[("DISSENT_TEST_HOLD_BLAME_REQUEST", "1")]);
        net.clients[1].wait_for_log("sending in interval", FORM_TIMEOUT);
        let mut garbler = net.restart_disrupting(scope, 3, "garbler", &["--disrupt", "garble-all"]);
        garbler.wait_for_log("sending in interval", FORM_TIMEOUT);
        // Owned cells for it to garble: client 0's echo (a disrupted cell is sent again).
        let data = pattern(64 * 1024, 51);
        let port0 = net.client_ports[0];
        let first = {
            let data = data.clone();
            thread::spawn(move || echo_bulk(port0, &data))
        };

        let started = net
            .relay
            .wait_until(TRANSFER_TIMEOUT, "a blame round's start", |relay| {
                relay
                    .log()
                    .lines()
                    .find(|l| l.contains("blame round about exchange") && l.ends_with(" started"))
                    .map(str::to_string)
            });
        net.clients[1].wait_for_log("holding a blame request unanswered", TRANSFER_TIMEOUT);
        assert!(
            !net.relay.log().contains("client 3 disrupted an exchange"),
            "the round ended before client 1 was killed"
        );
        net.kill_client(1);
        let killed_at = began.elapsed();
        net.spawn_client(scope, 1);

        // The relay takes the restart: the member owes the round and cannot answer. It is
        // penalized (a new Hello within its back-off would be refused), its link stays.
        net.relay.wait_for_log(
            "client 1 came back from a restart while the blame round",
            TRANSFER_TIMEOUT,
        );
        net.relay.wait_for_log(
            "client 1 restarted while a blame round waited for its reveal: penalized; a new \
             Hello from it within 1.0 s is refused",
            TRANSFER_TIMEOUT,
        );
        // The garbler is convicted and excluded, by the relay's log, its own and the list.
        let convicted = net.relay.wait_for_log(
            "client 3 is refused until an operator admits it: convicted",
            TRANSFER_TIMEOUT,
        );
        assert!(
            convicted.contains("client 3 disrupted an exchange"),
            "no verdict on client 3 in the relay's log"
        );
        garbler.wait_for_log("excluded", TRANSFER_TIMEOUT);
        assert_only_refused(&net.cfg, "client-3");
        // The round's evidence, judged without client 1's reveal, names client 3 offline.
        let verdict = verify_evidence(&mut net.relay, &net.cfg);
        for field in [
            "\"index\": 3",
            "\"kind\": \"disrupted\"",
            "\"offline_verifiable\": true",
        ] {
            assert!(verdict.contains(field), "no {field} in {verdict}");
        }

        // The restarted client sends in the very next interval the relay starts (the back-off
        // refuses only a new Hello; its link stays), and bytes go through it and client 0
        // intact.
        let next =
            net.relay
                .wait_until(TRANSFER_TIMEOUT, "an interval after the penalty", |relay| {
                    relay
                        .log()
                        .lines()
                        .skip_while(|l| !l.contains("client 1 restarted while a blame round"))
                        .find_map(|l| {
                            let (n, _) = l
                                .split(" relay: interval ")
                                .nth(1)?
                                .split_once(" started")?;
                            Some(n.to_string())
                        })
                });
        net.clients[1].wait_for_log(&format!("sending in interval {next} "), TRANSFER_TIMEOUT);
        assert_same(
            &first.join().expect("client 0's echo"),
            &data,
            "client 0's echo across the round",
        );
        let again = pattern(64 * 1024, 52);
        let got = echo_bulk(net.client_ports[1], &again);
        assert_same(&got, &again, "the restarted client 1's echo");

        let log = net.relay.log();
        assert_none_named(
            &log,
            &["client 0", "client 1", "client 2", "trustee 0", "trustee 1"],
        );
        println!(
            "{started}\nclient 1 killed {killed_at:?} into the test; all done in {:?}",
            began.elapsed()
        );
        net.assert_relay_up();
    });
}

/// An honest trustee killed (SIGKILL) inside a blame round, before it revealed, and started
/// again. Trustee 0 runs with the test hook of `disruptor` builds that holds a blame round's
/// request unanswered (`DISSENT_TEST_HOLD_BLAME_REQUEST`, hosted/src/test_hooks.rs). Once
/// the relay's log says a round began and trustee 0's that it holds the request, it is
/// killed and started again without the hook. A trustee is never owed a round, nor asked
/// again when it is back (docs/protocol.md §3, "The round"): the round does not park for
/// it, and since nothing more can come once its link dropped, it ends then, well before its
/// deadline (`exchange_timeout`, 10 s), without a reveal from trustee 0, so it convicts
/// only members whose own reveals convict them. The
/// garbler (client 3, `garble-all`, which reveals the cell it sent) is one: it is
/// convicted and excluded, the only client refused, and the evidence, with trustee 0's
/// entry absent, passes `dissent blame verify` naming it; no trustee or other client is
/// named; the next interval runs with the restarted trustee, and echoes through client 0
/// (in flight across the round) and client 1 (after it) come back byte-exact.
#[test]
fn an_honest_trustee_killed_in_a_blame_round_is_not_named_and_serves_again() {
    within(Duration::from_secs(120), |scope| {
        let began = Instant::now();
        let mut net = Net::start(scope, 4, 2, "echo");
        net.kill_trustee(0);
        net.spawn_trustee_env(scope, 0, &[("DISSENT_TEST_HOLD_BLAME_REQUEST", "1")]);
        // It sends in an interval only once every trustee (the hooked one too) is back.
        let mut garbler = net.restart_disrupting(scope, 3, "garbler", &["--disrupt", "garble-all"]);
        garbler.wait_for_log("sending in interval", FORM_TIMEOUT);
        let data = pattern(64 * 1024, 61);
        let port0 = net.client_ports[0];
        let first = {
            let data = data.clone();
            thread::spawn(move || echo_bulk(port0, &data))
        };

        // "blame round about exchange E of interval I": the first round, the one trustee 0
        // holds (it holds the first request it gets).
        let round = net
            .relay
            .wait_until(TRANSFER_TIMEOUT, "a blame round's start", |relay| {
                relay.log().lines().find_map(|l| {
                    let at = l.find("blame round about exchange ")?;
                    l.strip_suffix(" started").map(|l| l[at..].to_string())
                })
            });
        net.trustees[0].wait_for_log("holding a blame request unanswered", TRANSFER_TIMEOUT);
        let log = net.relay.log();
        assert!(
            !log.contains(&format!("{round}:")) && !log.contains(&format!("{round} ended")),
            "the round ended before trustee 0 was killed"
        );
        net.kill_trustee(0);
        let killed_at = began.elapsed();
        net.spawn_trustee(scope, 0);

        // The round ends without trustee 0's reveal, as soon as its link dropped (not at
        // the deadline), and names the garbler on its own reveal.
        let incomplete = format!(
            "{round} ended without a reveal from trustee 0: it convicts only members that \
             refuse or convict themselves"
        );
        let log = net.relay.wait_for_log(&incomplete, TRANSFER_TIMEOUT);
        let verdict = format!("{round}: client 3 disrupted an exchange");
        let log = if log.contains(&verdict) {
            log
        } else {
            net.relay.wait_for_log(&verdict, TRANSFER_TIMEOUT)
        };
        // Its lines in order: the start, trustee 0 gone (the earlier restart, before the
        // hook, is not this), the end.
        let lines: Vec<&str> = log.lines().collect();
        let line = |from: usize, needle: &str| {
            (from..lines.len())
                .find(|&i| lines[i].contains(needle))
                .unwrap_or_else(|| panic!("no {needle:?} in the relay's log from line {from}"))
        };
        let start = line(0, &format!("{round} started"));
        let left = line(start, "trustee 0 disconnected");
        let end = line(start, &incomplete);
        assert!(
            left < end,
            "the round ended before trustee 0 left: {:?}",
            &lines[start..=end]
        );
        assert!(
            !log.contains(&format!("{round} waits for")),
            "the round parked for a trustee"
        );
        // By the relay's own clock: not at the deadline, 10 s after the round began, but
        // as soon as trustee 0's link dropped (a trustee forgets a round with its link and
        // is not asked again, so nothing more can come; the members had answered, or do
        // within moments). The relay ends it on its next timer turn after the drop, a few
        // milliseconds; the bound, 2 s, is five times under the deadline and leaves a
        // loaded machine room.
        let at = |i: usize| seconds_of_day(lines[i]).expect("timestamped lines");
        // (Across midnight the end's time of day is the smaller.)
        let waited = (at(end) - at(start)).rem_euclid(86_400.0);
        let after_drop = (at(end) - at(left)).rem_euclid(86_400.0);
        assert!(
            after_drop < 2.0,
            "the round ended {after_drop:.3} s after trustee 0's link dropped ({waited:.3} s \
             after it began): it waited for a trustee that cannot answer"
        );
        let excluded = net.relay.wait_for_log(
            "client 3 is refused until an operator admits it: convicted",
            TRANSFER_TIMEOUT,
        );
        let which = round
            .strip_prefix("blame round about ")
            .expect("exchange E of interval I");
        assert!(
            excluded.contains(&format!(
                "convicted of Disrupted in the blame round of {which}"
            )),
            "client 3 was not excluded for this round"
        );
        garbler.wait_for_log("excluded", TRANSFER_TIMEOUT);
        assert_only_refused(&net.cfg, "client-3");
        // The round's evidence, without trustee 0's reveal, names client 3 offline.
        let verified = verify_evidence(&mut net.relay, &net.cfg);
        for field in [
            "\"role\": \"client\"",
            "\"index\": 3",
            "\"kind\": \"disrupted\"",
            "\"offline_verifiable\": true",
            "\"dispute\": null",
        ] {
            assert!(verified.contains(field), "no {field} in {verified}");
        }

        // The next interval runs with the restarted trustee (none runs without every
        // trustee), and bytes go through client 0 and client 1 intact.
        net.relay
            .wait_until(TRANSFER_TIMEOUT, "an interval after the round", |relay| {
                relay
                    .log()
                    .lines()
                    .skip(end + 1)
                    .find(|l| l.contains("interval ") && l.contains(" started with 3 clients"))
                    .map(str::to_string)
            });
        assert_same(
            &first.join().expect("client 0's echo"),
            &data,
            "client 0's echo across the round",
        );
        let again = pattern(64 * 1024, 62);
        let got = echo_bulk(net.client_ports[1], &again);
        assert_same(&got, &again, "client 1's echo after the round");

        let log = net.relay.log();
        assert_none_named(
            &log,
            &["client 0", "client 1", "client 2", "trustee 0", "trustee 1"],
        );
        for (j, t) in net.trustees.iter_mut().enumerate() {
            assert!(t.is_running(), "trustee {j} exited: {:?}", t.status);
            let log = t.log();
            assert!(
                !log.contains("the relay ended the link"),
                "the relay ended trustee {j}'s link: {log}"
            );
        }
        println!(
            "{round} started; trustee 0 killed {killed_at:?} into the test; the round ended \
             {waited:.3} s after it began, {after_drop:.3} s after trustee 0's link dropped \
             (the relay's clock); all done in {:?}",
            began.elapsed()
        );
        net.assert_relay_up();
    });
}

/// What became of an echo of `data` through client port `port`, for a benchmark that
/// reports rather than asserts: whether it came back byte-exact, and if not, how it ended
/// (bytes lost or changed, the connection closed by the client, the reader's own timeout).
fn echo_outcome(port: u16, data: &[u8]) -> (bool, String) {
    use std::io::ErrorKind;
    let mut conn = connect(port, TRANSFER_TIMEOUT);
    conn.set_read_timeout(Some(TRANSFER_TIMEOUT))
        .expect("read timeout");
    let mut writer = conn.try_clone().expect("clone");
    let out = data.to_vec();
    let w = thread::spawn(move || writer.write_all(&out));
    let mut got = Vec::with_capacity(data.len());
    let mut buf = [0u8; 16 * 1024];
    // Bounded: every read returns within the timeout, and the loop ends at the first that
    // brings nothing.
    let ended = loop {
        if got.len() >= data.len() {
            break None;
        }
        match conn.read(&mut buf) {
            Ok(0) => break Some("the client closed the connection".to_string()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break Some(format!(
                    "the test's reader timed out ({TRANSFER_TIMEOUT:?} without a byte)"
                ))
            }
            Err(e) => break Some(format!("reading failed: {e}")),
        }
    };
    drop(conn);
    let written = match w.join() {
        Ok(Ok(())) => String::new(),
        Ok(Err(e)) => format!("; writing failed: {e}"),
        Err(_) => "; the writer panicked".to_string(),
    };
    let same = got.iter().zip(data).take_while(|(a, b)| a == b).count();
    let changed = if same < got.len().min(data.len()) {
        format!("; byte {same} and on differ")
    } else {
        String::new()
    };
    match ended {
        None if got == data && written.is_empty() => (true, "completed byte-exact".to_string()),
        None => (
            false,
            format!(
                "came back different: {} of {} bytes, the first {same} the same{changed}{written}",
                got.len(),
                data.len()
            ),
        ),
        Some(why) => (
            false,
            format!(
                "ended after {} of {} bytes, the first {same} the same{changed}: {why}{written}",
                got.len(),
                data.len()
            ),
        ),
    }
}

/// Benchmark, not part of the default run (it prints, never asserts a time): how long a
/// disruptor lasts with real processes. 64 clients and 2 trustees on this machine; client 63
/// comes back with `--disrupt garble-all`; once it sends in the running interval, client 0
/// starts a 64 KiB echo (owned exchanges for it to garble), and the time until the
/// disruptor is told `Goodbye{Excluded}` is printed, with the echo's outcome (and, when it
/// is not byte-exact or anyone else was refused, backed off or lost a connection, the log
/// lines that say so):
///
/// `cargo test -p dissent --features disruptor --test disruption --release -- --ignored
/// --nocapture exclusion_time_with_real_processes`
#[test]
#[ignore = "benchmark: 64 client processes; run it by name with --ignored"]
fn exclusion_time_with_real_processes_at_64_clients() {
    const CLIENTS: usize = 64;
    within(Duration::from_secs(600), move |scope| {
        let started = Instant::now();
        let mut net = Net::start(scope, CLIENTS, 2, "echo");
        println!("{CLIENTS} clients formed in {:?}", started.elapsed());
        let d = CLIENTS - 1;
        let mut garbler = net.restart_disrupting(scope, d, "garbler", &["--disrupt", "garble-all"]);
        garbler.wait_for_log("sending in interval", Duration::from_secs(120));
        let port = net.client_ports[0];
        let data = pattern(64 * 1024, 41);
        let first = Instant::now();
        let echo = thread::spawn(move || echo_outcome(port, &data));
        garbler.wait_for_log("excluded", Duration::from_secs(120));
        let excluded = first.elapsed();
        let (exact, echo) = echo
            .join()
            .unwrap_or_else(|_| (false, "failed (its thread panicked: see above)".to_string()));
        println!(
            "{CLIENTS} clients, 2 trustees, garble-all: excluded {excluded:?} after the first \
             data it could garble (wall clock, this machine); the echo {echo}"
        );
        // By the relay's own clock: from the first exchange it found disrupted to the
        // exclusion (the garbler may have spoiled an exchange before the echo started).
        let relay = net.relay.log();
        let first_disrupted = relay
            .lines()
            .find(|l| l.contains("was disrupted") || l.contains("sprang"))
            .and_then(seconds_of_day);
        let refused = relay
            .lines()
            .find(|l| l.contains(&format!("client {d} is refused until")))
            .and_then(seconds_of_day);
        if let (Some(a), Some(b)) = (first_disrupted, refused) {
            println!(
                "the relay excluded it {:.1} ms after the first exchange it found disrupted \
                 (its log's clock)",
                (b - a) * 1000.0
            );
        }
        // Whoever else the relay refused, backed off or cut, and what client 0 said: what
        // a run whose echo did not come back intact needs to be told apart.
        let client = net.clients[0].log();
        let lines: Vec<&str> = relay
            .lines()
            .filter(|l| {
                (l.contains("refused until") && !l.contains(&format!("client {d} ")))
                    || l.contains("penalized")
                    || l.contains("refused blame")
            })
            .chain(client.lines().filter(|l| {
                l.contains("lost") || l.contains("local connection") || l.contains("ERROR")
            }))
            .collect();
        if !exact || !lines.is_empty() {
            println!("the relay's and client 0's lines on it:");
            for l in lines {
                println!("  {l}");
            }
        }
        if !exact {
            // Which exchanges were disrupted and what the rounds found; then the last words
            // of the relay, the echo's client and its buddy.
            for l in relay
                .lines()
                .filter(|l| l.contains("was disrupted") || l.contains("blame round"))
            {
                println!("  {l}");
            }
            for (name, log) in [
                ("relay", relay.as_str()),
                ("client 0", client.as_str()),
                ("client 1", net.clients[1].log().as_str()),
            ] {
                let all: Vec<&str> = log.lines().collect();
                println!("{name}'s last lines:");
                for l in &all[all.len().saturating_sub(40)..] {
                    println!("  {l}");
                }
            }
        }
        net.assert_relay_up();
    });
}
