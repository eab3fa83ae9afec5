//! End-to-end tests of the command line's edges: every refusal explained at once, values
//! checked with their ranges, flags that mean the same everywhere, keys checked for role
//! and permissions, quiet ends on closed pipes, the SOCKS5 exit's address policy, and the
//! edges of running a net: a node of another configuration backing off, two processes of
//! one node, and local connections while no interval can carry them.
//!
//! Like `e2e.rs`, every test runs the real binary with its own folders and ports, waits
//! only for concrete conditions with hard limits, and runs under an overall time limit.

// These tests drive processes with Linux facilities (signals, `prctl`, network
// namespaces); on other platforms the binary builds and runs no test.
#![cfg(target_os = "linux")]

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod support;
use support::*;

/// Longest a refusal may take: it must come at start, not after retries.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Helpers

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `dissent ARGS`, which must fail promptly with a message containing every `says`.
fn refused(args: &[&str], says: &[&str]) -> String {
    let out = run_once(args, REFUSAL_TIMEOUT);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "dissent {args:?} was accepted: {err}"
    );
    assert_ne!(
        out.status.code(),
        Some(101),
        "dissent {args:?} panicked: {err}"
    );
    for s in says {
        assert!(err.contains(s), "dissent {args:?}: no {s:?} in: {err}");
    }
    err
}

/// A fresh configuration of `clients` clients and `trustees` trustees in `dir`, its relay
/// address a port nobody listens on.
fn config(dir: &Path, clients: usize, trustees: usize) -> String {
    generate(dir, clients, trustees, reserve_port());
    dir.display().to_string()
}

/// Sends a no-auth greeting and a CONNECT for `target` to the SOCKS5 server on `port`;
/// returns the reply code.
fn socks5_reply(port: u16, target: &Target<'_>) -> u8 {
    let (head, _) = socks5(port, target).expect("a SOCKS5 reply");
    head[1]
}

/// Whether every non-empty line of `log` reads `TIME LEVEL ROLE: ...`.
fn every_line_names(log: &str, role: &str) -> bool {
    log.lines().filter(|l| !l.trim().is_empty()).all(|line| {
        let mut parts = line.split_whitespace();
        let _time = parts.next();
        let level = parts.next().unwrap_or_default();
        ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level)
            && parts.next() == Some(&format!("{role}:") as &str)
    })
}

// ---------------------------------------------------------------------------------------
// 1. One address parser

#[test]
fn bad_addresses_are_refused_at_start_with_the_reason() {
    within(Duration::from_secs(60), |_| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(&dir.path().join("cfg"), 2, 1);
        let key = key_file(Path::new(&cfg), "client-0");
        for (relay, says) in [
            ("127.0.0.1", "has no port"),
            (
                "127.0.0.1:99999",
                "port 99999 is out of range: ports are 1-65535",
            ),
            ("127.0.0.1:0", "port 0 is out of range"),
            (":12345", "the host is empty"),
            ("::1:80", "an IPv6 address needs brackets: write [::1]:80"),
            ("[::1:80", "[ADDRESS]:PORT"),
            ("[::1]80", "[ADDRESS]:PORT"),
            ("[1.2.3.4]:80", "not an IPv6 address"),
            ("bad host:80", "not a host name"),
        ] {
            refused(
                &["client", "--relay", relay, &cfg, &key],
                &["--relay", says],
            );
            refused(
                &[
                    "trustee",
                    "--relay",
                    relay,
                    &cfg,
                    &key_file(Path::new(&cfg), "trustee-0"),
                ],
                &[says],
            );
            let new = dir.path().join("new").display().to_string();
            refused(&["config", "generate", "--relay", relay, &new], &[says]);
            refused(&["up", "--relay", relay, "--state", &new], &[says]);
            refused(&["relay", "--exit", &format!("tcp:{relay}"), &cfg], &[says]);
            assert!(!Path::new(&new).exists(), "{new} was written");
        }
        // system.json's address goes through the same parser.
        let system = Path::new(&cfg).join("system.json");
        let text = fs::read_to_string(&system).expect("system.json");
        let port = text
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the relay address");
        fs::write(
            &system,
            text.replace(&format!("127.0.0.1:{port}"), "127.0.0.1"),
        )
        .expect("write system.json");
        refused(
            &["client", &cfg, &key],
            &["system.json", "relay.address", "has no port"],
        );
    });
}

// ---------------------------------------------------------------------------------------
// 2. Numeric options checked at start, with their ranges

#[test]
fn numeric_options_are_refused_with_their_ranges() {
    within(Duration::from_secs(90), |_| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(&dir.path().join("cfg"), 2, 1);
        let client_key = key_file(Path::new(&cfg), "client-0");
        let relay_cases: [(&[&str], &str); 16] = [
            (&["--timeout-ms", "0"], "100-3600000"),
            (&["--timeout-ms", "99"], "100-3600000"),
            (
                &["--min-clients", "0"],
                "2-65535 (1 with --allow-small-anonymity-set)",
            ),
            (
                &["--min-clients", "65536"],
                "2-65535 (1 with --allow-small-anonymity-set)",
            ),
            (&["--window", "0"], "1-64"),
            (&["--window", "65"], "1-64"),
            (&["--idle-budget", "0"], "1-100000"),
            (&["--join-ms", "10001"], "0-10000"),
            (&["--reservation-period", "1"], "2-1024"),
            (&["--exit-per-slot", "0"], "1-65535"),
            (&["--idle-ms", "0"], "1-10000"),
            (&["--downstream-length", "65536"], "1-65535"),
            (&["--stats-secs", "0"], "1-86400"),
            (&["--exit-idle-secs", "0"], "1-86400"),
            (&["--port", "65536"], "0-65535"),
            (&["--port", "70000"], "0-65535"),
        ];
        for (args, range) in relay_cases {
            let all: Vec<&str> = ["relay"]
                .iter()
                .chain(args)
                .chain([&cfg.as_str()])
                .copied()
                .collect();
            refused(&all, &[args[0], range]);
        }
        // The windows of the first protocol version are one window now: both old names
        // still work, as long as only one is given.
        refused(
            &[
                "relay",
                "--client-window",
                "20",
                "--trustee-window",
                "10",
                &cfg,
            ],
            &["--window"],
        );
        // A listening port may be 0 (a free port, named in the log); others may not.
        refused(&["client", "-p", "65536", &cfg, &client_key], &["0-65535"]);
        refused(&["echo", "--port", "65536"], &["0-65535"]);
        refused(&["supervisor", "--relay-port", "0", &cfg], &["1-65535"]);
        let out = dir.path().join("out").display().to_string();
        for (args, range) in [
            (["-c", "0"], "2-65535 (1 with --allow-small-anonymity-set)"),
            (
                ["-c", "65536"],
                "2-65535 (1 with --allow-small-anonymity-set)",
            ),
            (["-t", "0"], "1-16"),
            (["-t", "17"], "1-16"),
            (["--cell-length", "53"], "54-65535"),
            (["--cell-length", "65536"], "54-65535"),
            (
                ["--min-anonymity", "0"],
                "2-65535 (1 with --allow-small-anonymity-set)",
            ),
            (["--log-window-secs", "0"], "1-86400"),
            (["--log-window-secs", "86401"], "1-86400"),
            (["--log-window-bytes", "0"], "1-1073741824"),
            (["--log-window-bytes", "1073741825"], "1-1073741824"),
        ] {
            refused(
                &["config", "generate", args[0], args[1], &out],
                &[args[0], range],
            );
        }
        assert!(!Path::new(&out).exists());

        // The client ports must fit below 65536, checked before anything is written.
        let state = dir.path().join("state");
        let state_s = state.display().to_string();
        refused(
            &[
                "up",
                "--state",
                &state_s,
                "-c",
                "10",
                "--client-port-base",
                "65530",
            ],
            &[
                "--client-port-base 65530",
                "65530-65539",
                "between 1 and 65526",
            ],
        );
        assert!(
            !state.join("demo").exists(),
            "`up` wrote a configuration first"
        );
        refused(
            &["supervisor", "--client-port-base", "65535", &cfg],
            &["--client-port-base 65535", "between 1 and 65534"],
        );

        // The ranges are in --help too.
        let help = stdout(&run_once(&["relay", "--help"], REFUSAL_TIMEOUT));
        for range in [
            "1-64",
            "100-3600000",
            "1-65535",
            "1-10000",
            "1-86400",
            "2-65535",
            "2-1024",
        ] {
            assert!(help.contains(range), "relay --help lacks {range}: {help}");
        }
        let help = stdout(&run_once(
            &["config", "generate", "--help"],
            REFUSAL_TIMEOUT,
        ));
        for range in ["2-65535", "1-16", "16-65535"] {
            assert!(
                help.contains(range),
                "config generate --help lacks {range}: {help}"
            );
        }
    });
}

// ---------------------------------------------------------------------------------------
// 3. Flag names mean the same in every subcommand

#[test]
fn flags_mean_the_same_in_every_subcommand() {
    within(Duration::from_secs(60), |scope| {
        let help = |sub: &[&str]| {
            let mut args = sub.to_vec();
            args.push("--help");
            stdout(&run_once(&args, REFUSAL_TIMEOUT))
        };
        // -p/--port is always the port this process listens on.
        for sub in ["relay", "client", "echo", "socks5"] {
            let text = help(&[sub]);
            let line = text
                .lines()
                .find(|l| l.contains("-p, --port <PORT>"))
                .unwrap_or_else(|| panic!("{sub} --help has no -p, --port: {text}"));
            let next = text
                .lines()
                .skip_while(|l| !l.contains("-p, --port"))
                .nth(1)
                .unwrap_or_default();
            assert!(
                line.contains("listen on") || next.contains("listen on"),
                "{sub}: -p is not the listening port: {line} {next}"
            );
        }
        // The relay's port, where a process starts a relay, is --relay-port.
        for sub in ["supervisor", "up"] {
            let text = help(&[sub]);
            assert!(text.contains("--relay-port <PORT>"), "{sub}: {text}");
            assert!(
                !text.contains("-p,"),
                "{sub} shows a -p of another meaning: {text}"
            );
        }
        // One spelling for the exit policy everywhere.
        for sub in ["relay", "socks5", "supervisor", "up"] {
            assert!(help(&[sub]).contains("--allow-private-exit"), "{sub}");
        }

        // The old spelling `socks5 --allow-private` still works, as the new one does.
        let target = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a target");
        let target_port = target.local_addr().expect("local_addr").port();
        let local = Target::Ip(Ipv4Addr::LOCALHOST.into(), target_port);
        for (flag, want) in [
            (None, 0x02),
            (Some("--allow-private"), 0x00),
            (Some("--allow-private-exit"), 0x00),
        ] {
            let mut args = vec!["socks5", "-p", "0"];
            args.extend(flag);
            let mut server = scope.spawn("socks5", &args);
            let port = server.listening_port("socks5 server listening");
            wait_for_port(port, REFUSAL_TIMEOUT);
            assert_eq!(socks5_reply(port, &local), want, "socks5 {flag:?}");
        }

        // A supervisor's old -p still sets the relay's port (not a listening port of its own).
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(&dir.path().join("cfg"), 2, 1);
        // A supervisor's ports are set before it starts.
        let (relay_port, client_base) = (reserve_port(), reserve_ports(2));
        let mut sup = scope.spawn(
            "supervisor",
            &[
                "supervisor",
                &cfg,
                "--exit",
                "echo",
                "--client-port-base",
                &client_base.to_string(),
                "-p",
                &relay_port.to_string(),
            ],
        );
        sup.wait_until(Duration::from_secs(40), "2 proxies", |p| {
            (announced_proxies(&p.out()).len() >= 2).then_some(())
        });
        let relay = find_child(sup.pid(), "relay", &relay_port.to_string());
        assert!(relay.is_some(), "no relay child on port {relay_port}");
    });
}

// ---------------------------------------------------------------------------------------
// 4. `dissent up` applies the options it is given

#[test]
fn up_applies_a_changed_relay_port_and_names_the_option_when_taken() {
    within(Duration::from_secs(180), |scope| {
        let state = tempfile::tempdir().expect("tempdir");
        let state_s = state.path().display().to_string();
        let system = state.path().join("demo/system.json");
        // A demo's ports are set before it starts.
        let (first_relay, second_relay) = (reserve_port(), reserve_port());
        let client_base = reserve_ports(3);
        let client_base_s = client_base.to_string();
        let up = |extra: &[&str]| -> Vec<String> {
            let mut args = vec![
                "up",
                "--state",
                &state_s,
                "--exit",
                "echo",
                "--client-port-base",
                &client_base_s,
            ];
            args.extend_from_slice(extra);
            args.iter().map(|s| s.to_string()).collect()
        };
        let start = |args: Vec<String>, clients: usize| {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut p = scope.spawn("up", &refs);
            let proxies = p.wait_until(Duration::from_secs(60), "proxies", |p| {
                let ports = announced_proxies(&p.out());
                (ports.len() >= clients).then_some(ports)
            });
            let want: Vec<u16> = (0..clients as u16).map(|i| client_base + i).collect();
            assert_eq!(proxies, want);
            p
        };
        let stop = |mut p: Proc| {
            p.signal(libc::SIGINT);
            let status = p
                .wait_exit(Duration::from_secs(15))
                .expect("`up` stops on SIGINT");
            assert!(status.success(), "`up` exited with {status}");
        };

        // A first demo, relay on the first port.
        let relay = format!("127.0.0.1:{first_relay}");
        let mut first = start(up(&["-c", "2", "-t", "1", "--relay", &relay]), 2);
        // The hint fits the exit: no SOCKS5 request makes sense through an echo exit.
        let hint = format!(
            "try: echo hello | nc -N 127.0.0.1 {client_base} (the echo exit sends every byte back)"
        );
        first.wait_until(Duration::from_secs(10), "the echo exit's hint", |p| {
            p.out().contains(&hint).then_some(())
        });
        assert!(
            first.out().contains("created a demo configuration"),
            "{}",
            first.out()
        );
        stop(first);
        let before = fs::read(&system).expect("system.json");

        // Its relay port taken: refused before anything changes, naming the option.
        let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, first_relay)).expect("take the port");
        let args = up(&[]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(
            &refs,
            &[&format!("relay port {first_relay}"), "--relay-port"],
        );
        assert_eq!(fs::read(&system).expect("system.json"), before);

        // A new relay port and client count: applied, with one line saying so.
        let second = start(
            up(&["--relay-port", &second_relay.to_string(), "-c", "3"]),
            3,
        );
        let out = second.out();
        assert!(
            out.contains(&format!("relay 127.0.0.1:{second_relay}"))
                && out.contains(&format!(
                    "replacing the one with 2 clients, 1 trustee, relay 127.0.0.1:{first_relay}"
                )),
            "{out}"
        );
        let text = fs::read_to_string(&system).expect("system.json");
        assert!(
            text.contains(&format!("127.0.0.1:{second_relay}")),
            "{text}"
        );
        assert!(
            find_child(second.pid(), "relay", &second_relay.to_string()).is_some(),
            "the relay does not run on {second_relay}"
        );
        wait_for_port(second_relay, Duration::from_secs(10));
        stop(second);

        // The same options again: the configuration is kept.
        let after = fs::read(&system).expect("system.json");
        let third = start(up(&[]), 3);
        assert!(
            third.out().contains("using the demo configuration"),
            "{}",
            third.out()
        );
        stop(third);
        assert_eq!(fs::read(&system).expect("system.json"), after);
        drop(holder);
    });
}

// ---------------------------------------------------------------------------------------
// 5. The anonymity set never shrinks silently

#[test]
fn a_one_client_group_is_refused_without_the_flag() {
    within(Duration::from_secs(90), |scope| {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = dir.path().join("one");
        let one_s = one.display().to_string();
        refused(
            &["config", "generate", "-c", "1", &one_s],
            &["--allow-small-anonymity-set"],
        );
        assert!(!one.exists(), "a refused generate wrote {one_s}");
        let relay = format!("127.0.0.1:{}", reserve_port());
        let out = run_once(
            &[
                "config",
                "generate",
                "-c",
                "1",
                "-t",
                "1",
                "--relay",
                &relay,
                "--allow-small-anonymity-set",
                &one_s,
            ],
            REFUSAL_TIMEOUT,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        // A group of one is its own anonymity minimum, or no slot could ever transmit.
        let system: serde_json::Value =
            serde_json::from_slice(&fs::read(one.join("system.json")).expect("system.json"))
                .expect("system.json is JSON");
        assert_eq!(system["min_anonymity"], 1);

        let trustee = key_file(&one, "trustee-0");
        refused(
            &["relay", &one_s],
            &[
                "the group has 1 client, fewer than --min-clients 2",
                "--allow-small-anonymity-set",
            ],
        );
        refused(
            &["trustee", &one_s, &trustee],
            &["fewer than --min-clients 2", "--allow-small-anonymity-set"],
        );
        refused(&["supervisor", &one_s], &["--allow-small-anonymity-set"]);
        let state = dir.path().join("state").display().to_string();
        refused(
            &["up", "--state", &state, "-c", "1"],
            &["--allow-small-anonymity-set"],
        );
        // A minimum below two needs the flag even in a large group.
        let three = config(&dir.path().join("three"), 3, 1);
        refused(
            &["relay", "--min-clients", "1", &three],
            &["--min-clients 1", "--allow-small-anonymity-set"],
        );

        // With the flag it runs, and says once what it costs.
        let mut relay = scope.spawn(
            "relay",
            &["relay", "-p", "0", "--allow-small-anonymity-set", &one_s],
        );
        let log = relay.wait_for_log("relay listening on", Duration::from_secs(20));
        assert_eq!(
            log.matches("intervals may run with only 1 client").count(),
            1,
            "{log}"
        );
        let mut trustee_p = scope.spawn(
            "trustee",
            &["trustee", "--allow-small-anonymity-set", &one_s, &trustee],
        );
        let log = trustee_p.wait_for_log(
            "intervals may run with only 1 client",
            Duration::from_secs(20),
        );
        assert_eq!(log.matches("intervals may run").count(), 1, "{log}");
    });
}

// ---------------------------------------------------------------------------------------
// 6. Every key file is checked for its role

/// `config generate` writes the group's anonymity minimum and log window into system.json,
/// and refuses a minimum that would trace a slot to its client or that no slot could meet.
#[test]
fn config_generate_writes_the_groups_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = format!("127.0.0.1:{}", reserve_port());
    let generated = |name: &str, extra: &[&str]| -> serde_json::Value {
        let out_dir = dir.path().join(name).display().to_string();
        let mut args = vec!["config", "generate", "-t", "1", "--relay", &relay];
        args.extend(extra);
        args.push(&out_dir);
        let out = run_once(&args, REFUSAL_TIMEOUT);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let file = Path::new(&out_dir).join("system.json");
        serde_json::from_slice(&fs::read(file).expect("system.json")).expect("JSON")
    };
    let asked = generated(
        "asked",
        &[
            "-c",
            "4",
            "--min-anonymity",
            "3",
            "--log-window-secs",
            "60",
            "--log-window-bytes",
            "1048576",
        ],
    );
    assert_eq!(asked["min_anonymity"], 3);
    assert_eq!(asked["log_window_secs"], 60);
    assert_eq!(asked["log_window_bytes"], 1_048_576);
    let default = generated("default", &["-c", "3"]);
    assert_eq!(default["min_anonymity"], 2);
    assert_eq!(default["log_window_secs"], 600);
    assert_eq!(default["log_window_bytes"], 32 * 1024 * 1024);

    let refused_dir = dir.path().join("refused").display().to_string();
    refused(
        &[
            "config",
            "generate",
            "-c",
            "3",
            "--min-anonymity",
            "1",
            &refused_dir,
        ],
        &["--min-anonymity 1", "--allow-small-anonymity-set"],
    );
    refused(
        &[
            "config",
            "generate",
            "-c",
            "3",
            "--min-anonymity",
            "4",
            &refused_dir,
        ],
        &["--min-anonymity 4", "at most 3"],
    );
    assert!(!Path::new(&refused_dir).exists());
    let small = generated(
        "small",
        &[
            "-c",
            "3",
            "--min-anonymity",
            "1",
            "--allow-small-anonymity-set",
        ],
    );
    assert_eq!(small["min_anonymity"], 1);
}

#[test]
fn a_key_file_of_the_wrong_role_is_refused_by_each_command() {
    within(Duration::from_secs(60), |_| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg_path = dir.path().join("dc");
        let cfg = config(&cfg_path, 3, 2);
        let key = |id: &str| key_file(&cfg_path, id);
        refused(
            &["relay", "--key", &key("client-0"), &cfg],
            &["client-0.json is a client key; the relay needs relay.json"],
        );
        refused(
            &["relay", "--key", &key("trustee-1"), &cfg],
            &["trustee-1.json is a trustee key; the relay needs relay.json"],
        );
        refused(
            &["trustee", &cfg, &key("client-0")],
            &["client-0.json is a client key; a trustee needs a trustee key, one of trustee-0.json to trustee-1.json"],
        );
        refused(
            &["trustee", &cfg, &key("relay")],
            &["relay.json is a relay key; a trustee needs"],
        );
        refused(
            &["client", &cfg, &key("trustee-0")],
            &["trustee-0.json is a trustee key; a client needs a client key, one of client-0.json to client-2.json"],
        );
        refused(
            &["client", &cfg, &key("relay")],
            &["relay.json is a relay key; a client needs"],
        );
        let session = cfg_path.join("client-0.session.json").display().to_string();
        refused(
            &["client", &cfg, &session],
            &["is a session key file", "client-0.json"],
        );
        // The supervisor checks every file before starting anything.
        fs::copy(
            cfg_path.join("client-1.json"),
            cfg_path.join("trustee-0.json"),
        )
        .expect("copy");
        refused(
            &["supervisor", &cfg],
            &["trustee-0.json is a client key; a trustee needs"],
        );
    });
}

// ---------------------------------------------------------------------------------------
// 7. Private files readable by others are refused with the chmod to run

#[test]
fn a_group_or_other_readable_key_is_refused_with_the_chmod_hint() {
    within(Duration::from_secs(60), |_| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg_path = dir.path().join("dc");
        let cfg = config(&cfg_path, 2, 1);
        // `config generate` writes every private file for its owner only.
        for entry in fs::read_dir(&cfg_path).expect("list") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let want = if ["system.json", "session.json", "pseudonym.json"].contains(&name.as_str())
            {
                0o644
            } else {
                0o600
            };
            assert_eq!(mode(&path), want, "mode of {name}");
        }
        let chmod = |name: &str, bits: u32| {
            fs::set_permissions(cfg_path.join(name), fs::Permissions::from_mode(bits))
                .expect("chmod");
        };
        let hint = |name: &str| format!("run: chmod 600 {}", cfg_path.join(name).display());
        let client = key_file(&cfg_path, "client-0");
        for (name, bits) in [("client-0.json", 0o640), ("client-0.session.json", 0o604)] {
            chmod(name, bits);
            refused(
                &["client", &cfg, &client],
                &[&format!("{bits:04o} are too open"), &hint(name)],
            );
            chmod(name, 0o600);
        }
        chmod("relay.json", 0o644);
        refused(&["relay", &cfg], &[&hint("relay.json")]);
        refused(&["supervisor", &cfg], &[&hint("relay.json")]);
        chmod("relay.json", 0o600);
        chmod("trustee-0.json", 0o660);
        refused(
            &["trustee", &cfg, &key_file(&cfg_path, "trustee-0")],
            &[&hint("trustee-0.json")],
        );
    });
}

// ---------------------------------------------------------------------------------------
// 8. A closed pipe ends the process quietly

#[test]
fn a_client_whose_stderr_closes_exits_without_a_panic() {
    within(Duration::from_secs(60), |scope| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg_path = dir.path().join("dc");
        let cfg = config(&cfg_path, 2, 1);
        // No relay runs: the client keeps logging its retries (and, at debug level, every
        // local connection), as `dissent client ... 2>&1 | head -3` would show.
        let mut cmd = Command::new(BIN);
        cmd.args(["client", "-p", "0", &cfg, &key_file(&cfg_path, "client-0")])
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: as in the harness: the child dies with the test thread.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start the client");
        lock(&scope.pids).push(child.id());
        let mut err = BufReader::new(child.stderr.take().expect("stderr is piped"));
        let mut first = String::new();
        err.read_line(&mut first).expect("a first log line");
        assert!(first.contains("client-0:"), "{first}");
        // Its port, from the line that names it.
        let mut line = first;
        let port = loop {
            if let Some(port) = port_after(&line, "listening on") {
                break port;
            }
            line.clear();
            let n = err.read_line(&mut line).expect("a log line");
            assert!(n > 0, "the client ended without saying where it listens");
        };
        drop(err);
        // Give it more to write: local connections, each logged at debug level.
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the client still runs with its stderr closed"
            );
            let _ = TcpStream::connect_timeout(
                &(Ipv4Addr::LOCALHOST, port).into(),
                Duration::from_millis(200),
            );
            thread::sleep(Duration::from_millis(50));
        };
        assert_ne!(status.code(), Some(101), "the client panicked");
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "ended by SIGPIPE: {status}"
        );
    });
}

#[test]
fn a_closed_stdout_ends_config_generate_quietly() {
    within(Duration::from_secs(60), |_| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("dc");
        let mut fds = [0; 2];
        // SAFETY: pipe() fills two descriptors we own from here on.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        // SAFETY: fds[0] is ours; closing it leaves a pipe with no reader.
        unsafe { libc::close(fds[0]) };
        // SAFETY: fds[1] is ours and handed over to the child's stdout here.
        let write_end = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
        let mut child = Command::new(BIN)
            .args(["config", "generate", "-c", "2", "-t", "1"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write_end))
            .stderr(Stdio::piped())
            .spawn()
            .expect("start config generate");
        let deadline = Instant::now() + REFUSAL_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "config generate did not finish");
            thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        let _ = child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err);
        assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            cfg.join("system.json").is_file(),
            "the configuration was written first"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 9. The exit's address policy: counted in the relay's stats line, refused everywhere

#[test]
fn the_stats_line_counts_refused_destinations() {
    within(Duration::from_secs(120), |scope| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg_path = dir.path().join("dc");
        generate(&cfg_path, 2, 1, reserve_port());
        let cfg = cfg_path.display().to_string();
        let mut relay = scope.spawn("relay", &["relay", "-p", "0", "--stats-secs", "1", &cfg]);
        let relay_addr = format!("127.0.0.1:{}", relay.listening_port("relay listening on"));
        let _trustee = scope.spawn(
            "trustee-0",
            &[
                "trustee",
                "--relay",
                &relay_addr,
                &cfg,
                &key_file(&cfg_path, "trustee-0"),
            ],
        );
        let mut clients = Vec::new();
        let mut ports = Vec::new();
        for i in 0..2u16 {
            let id = format!("client-{i}");
            let mut client = scope.spawn(
                &id,
                &[
                    "client",
                    "-p",
                    "0",
                    "--relay",
                    &relay_addr,
                    &cfg,
                    &key_file(&cfg_path, &id),
                ],
            );
            ports.push(client.listening_port("listening on"));
            clients.push(client);
        }
        relay.wait_for_log("started with 2 clients", Duration::from_secs(40));
        wait_for_port(ports[0], Duration::from_secs(20));

        // A server on this machine, which the exit must not reach.
        let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        server.set_nonblocking(true).expect("nonblocking");
        let server_port = server.local_addr().expect("local_addr").port();
        assert_eq!(
            socks5_reply(
                ports[0],
                &Target::Ip(Ipv4Addr::LOCALHOST.into(), server_port)
            ),
            0x02
        );
        relay.wait_for_log(
            "1 refused by exit policy (allow with --allow-private-exit)",
            Duration::from_secs(20),
        );
        assert_eq!(
            socks5_reply(ports[1], &Target::Name("localhost", server_port)),
            0x02
        );
        let log = relay.wait_for_log(
            "2 refused by exit policy (allow with --allow-private-exit)",
            Duration::from_secs(20),
        );
        assert!(
            matches!(server.accept(), Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "the refused destination was reached"
        );
        assert!(
            !log.contains(&format!(":{server_port}")),
            "the relay logged a destination: {log}"
        );

        // 10. Every line names its process, tasks and libraries included.
        assert!(every_line_names(&log, "relay"), "{log}");
        assert!(
            every_line_names(&clients[0].log(), "client-0"),
            "{}",
            clients[0].log()
        );
    });
}

/// Set by `scripts/test`: a test that needs network namespaces (`unshare`, `ip`) fails
/// where it cannot make one, instead of skipping.
const REQUIRE_NAMESPACES: &str = "DISSENT_REQUIRE_NAMESPACES";

/// Says why a part of a test that needs a network namespace is skipped; with
/// [`REQUIRE_NAMESPACES`] set, fails instead.
fn skip_without_namespaces(why: &str) {
    assert!(
        std::env::var_os(REQUIRE_NAMESPACES).is_none(),
        "{why}, and {REQUIRE_NAMESPACES} is set (scripts/setup installs util-linux and iproute2)"
    );
    eprintln!("skipped: {why}");
}

/// Runs [`socks5_exit_refuses_special_addresses_inside_a_namespace`] in a new network
/// namespace holding only loopback, so that nothing it tries can leave the machine.
#[test]
fn the_exit_refuses_every_kind_of_special_address() {
    within(Duration::from_secs(120), |_| {
        let exe = std::env::current_exe().expect("the test binary");
        let probe = Command::new("unshare")
            .args(["-rn", "true"])
            .stdin(Stdio::null())
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return skip_without_namespaces(&format!(
                    "network namespaces are not allowed here (unshare -rn: {})",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(e) => {
                return skip_without_namespaces(&format!(
                    "cannot run unshare to make a network namespace ({e})"
                ));
            }
        }
        let out = Command::new("unshare")
            .arg("-rn")
            .arg(&exe)
            .args([
                "--exact",
                "socks5_exit_refuses_special_addresses_inside_a_namespace",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("DISSENT_TEST_IN_NAMESPACE", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run the test in a namespace");
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(out.status.success(), "inside the namespace:\n{text}");
        assert!(
            text.contains("1 passed"),
            "the inner test did not run:\n{text}"
        );
    });
}

/// Brings up the loopback interface of this (new) network namespace.
fn loopback_up() {
    // SAFETY: a datagram socket for ioctls, closed below; `req` is a zeroed ifreq with a
    // NUL-terminated name, as SIOCGIFFLAGS and SIOCSIFFLAGS expect.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        assert_eq!(
            libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req),
            0,
            "SIOCGIFFLAGS"
        );
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &req), 0, "SIOCSIFFLAGS");
        libc::close(fd);
    }
}

#[test]
#[ignore = "runs inside a network namespace, started by the_exit_refuses_every_kind_of_special_address"]
fn socks5_exit_refuses_special_addresses_inside_a_namespace() {
    assert_eq!(
        std::env::var("DISSENT_TEST_IN_NAMESPACE").as_deref(),
        Ok("1"),
        "run only through the_exit_refuses_every_kind_of_special_address"
    );
    // /proc/net/dev lists the interfaces of this process's own network namespace.
    let interfaces: Vec<String> = fs::read_to_string("/proc/net/dev")
        .expect("/proc/net/dev")
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split_once(':')?.0.trim().to_string()))
        .collect();
    assert_eq!(interfaces, ["lo"], "not in a namespace with only loopback");
    loopback_up();
    // A globally reachable address of this host's own, on the namespace's loopback (needs
    // `ip`; that part is skipped without it).
    let own: Option<Ipv4Addr> = Command::new("ip")
        .args(["addr", "add", "192.88.98.7/32", "dev", "lo"])
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| Ipv4Addr::new(192, 88, 98, 7));
    if own.is_none() {
        skip_without_namespaces("the host-address part: cannot add an address with `ip`");
    }

    within(Duration::from_secs(90), move |scope| {
        let mut a = scope.spawn("socks5", &["socks5", "-p", "0"]);
        let mut b = scope.spawn("socks5", &["socks5", "-p", "0", "--allow-private-exit"]);
        let strict = a.listening_port("socks5 server listening");
        let open = b.listening_port("socks5 server listening");
        wait_for_port(strict, Duration::from_secs(20));
        wait_for_port(open, Duration::from_secs(20));
        let ip = |s: &str| Target::Ip(s.parse().expect("an address"), 80);
        let mut special: Vec<Target<'_>> = [
            "0.0.0.1",
            "10.0.0.1",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.0.1",
            "172.16.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.0.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "100::1",
            "2001:2::1",
            "2001:10::1",
            "2001:db8::1",
            "2002:a00:1::1",
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ]
        .iter()
        .map(|s| ip(s))
        .collect();
        special.push(Target::Name("localhost", 80));
        if let Some(own) = own {
            special.push(Target::Ip(own.into(), 80));
            special.push(ip("::ffff:192.88.98.7"));
        }
        for target in &special {
            assert_eq!(socks5_reply(strict, target), 0x02, "{}", describe(target));
            // Allowed, the same request fails (or succeeds) for a network reason instead.
            assert_ne!(socks5_reply(open, target), 0x02, "{}", describe(target));
        }
        // A globally reachable address is not refused by the policy: the namespace has no
        // route to it, so it fails as unreachable.
        let public = ip("1.1.1.1");
        assert_ne!(socks5_reply(strict, &public), 0x02);
    });
}

fn describe(target: &Target<'_>) -> String {
    match target {
        Target::Ip(ip, port) => format!("{ip} port {port}"),
        Target::Name(name, port) => format!("{name} port {port}"),
    }
}

// ---------------------------------------------------------------------------------------
// 10. A role prefix on every log line, the SOCKS5 library's included

#[test]
fn every_log_line_names_its_role_library_lines_included() {
    within(Duration::from_secs(60), |scope| {
        let mut server =
            scope.spawn_logging("socks5", &["socks5", "-p", "0"], "debug,fast_socks5=debug");
        let port = server.listening_port("socks5 server listening");
        wait_for_port(port, Duration::from_secs(20));
        // A greeting offering only username/password: the library logs its refusal.
        let mut s = connect(port, Duration::from_secs(20));
        s.write_all(&[0x05, 0x01, 0x02]).expect("greeting");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert_eq!(rest, [0x05, 0xff]);
        let log = server.wait_for_log("No auth method supported", Duration::from_secs(20));
        assert!(every_line_names(&log, "socks5"), "{log}");

        // Unless named, the library logs at info at most: its debug lines name destinations.
        let mut server = scope.spawn_logging("socks5", &["socks5", "-p", "0"], "debug");
        let port = server.listening_port("socks5 server listening");
        wait_for_port(port, Duration::from_secs(20));
        let target = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a target");
        let target_port = target.local_addr().expect("local_addr").port();
        let local = Target::Ip(Ipv4Addr::LOCALHOST.into(), target_port);
        assert_eq!(socks5_reply(port, &local), 0x02);
        let log = server.wait_for_log(
            "refused a destination by exit policy",
            Duration::from_secs(20),
        );
        assert!(
            !log.contains(&format!(":{target_port}")),
            "a destination was logged: {log}"
        );
        assert!(!log.contains("Request target"), "{log}");
        assert!(every_line_names(&log, "socks5"), "{log}");
    });
}

// ---------------------------------------------------------------------------------------
// Helpers: a small DC-net whose relay serves metrics

/// The labelled sample counting handshakes the relay refused.
const HANDSHAKES_REFUSED: &str = r#"dissent_link_events_total{kind="handshake_refused"}"#;
/// The labelled sample counting members whose Hello the relay admitted.
const JOINED: &str = r#"dissent_link_events_total{kind="joined"}"#;

/// Sends `data` into the local port of a client and reads it back from the echo exit, on
/// one connection that must work at once.
fn echo_once(port: u16, data: &[u8]) {
    let mut s = connect(port, Duration::from_secs(20));
    s.write_all(data).expect("send through the client");
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).expect("the bytes come back");
    assert_eq!(back, data, "the bytes came back changed");
}

/// Like [`echo_once`], trying new connections until one carries the bytes (a client
/// closes connections it cannot carry yet); fails after `limit`. Returns the time it took.
fn echo_within(port: u16, data: &[u8], limit: Duration) -> Duration {
    let started = Instant::now();
    let deadline = started + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no bytes through port {port} within {limit:?}"
        );
        let attempt = TcpStream::connect_timeout(&local(port), left).and_then(|mut s| {
            s.set_read_timeout(Some(left))?;
            s.write_all(data)?;
            let mut back = vec![0u8; data.len()];
            s.read_exact(&mut back)?;
            Ok(back)
        });
        match attempt {
            Ok(back) => {
                assert_eq!(back, data, "the bytes came back changed");
                return started.elapsed();
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Opens a connection to the local port of a client and waits for the client to close it
/// (end of stream or reset); fails if it is still open after `limit`. Returns the wait.
fn closed_by_client_within(port: u16, limit: Duration) -> Duration {
    let mut s = connect(port, limit);
    let started = Instant::now();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the client sent {n} bytes on a connection it cannot carry"),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the connection was not closed within {limit:?} ({e}, after {:?})",
            started.elapsed()
        ),
    }
    started.elapsed()
}

// ---------------------------------------------------------------------------------------
// 11. A node of another configuration backs off, says why, and is never "connected"

#[test]
fn a_client_of_another_configuration_backs_off_and_says_why() {
    within(Duration::from_secs(90), |scope| {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        // Two groups with one relay: every key of b is unknown to a's relay.
        generate(&a, 2, 1, reserve_port());
        generate(&b, 2, 1, reserve_port());
        let a_relay = relay_with_metrics(scope, &a.display().to_string(), &[]);
        let (mut relay, metrics) = (a_relay.proc, a_relay.metrics);
        wait_for_port(a_relay.port, Duration::from_secs(20));
        // A bare connection (like the one above) is no refused handshake.
        assert_eq!(metric(metrics, HANDSHAKES_REFUSED), None);

        let mut client = scope.spawn(
            "client-0 of b",
            &[
                "client",
                "-p",
                "0",
                "--relay",
                &format!("127.0.0.1:{}", a_relay.port),
                &b.display().to_string(),
                &key_file(&b, "client-0"),
            ],
        );
        // Four refusals, each with the wait before the next try: the waits grow as the
        // backoff policy says (a ceiling of 100 ms doubling, each wait at least half its
        // ceiling), so the fourth is at least 0.4 s.
        let warnings = client.wait_until(Duration::from_secs(30), "four refusals", |p| {
            let log = p.log();
            let warnings: Vec<String> = log
                .lines()
                .filter(|l| l.contains(" WARN "))
                .map(str::to_string)
                .collect();
            (warnings.len() >= 4).then_some(warnings)
        });
        let waits: Vec<f64> = warnings
            .iter()
            .map(|w| {
                let after = w.split("next try in ").nth(1).unwrap_or_default();
                let secs = after.split(' ').next().unwrap_or_default();
                secs.parse()
                    .unwrap_or_else(|_| panic!("no wait in the warning: {w}"))
            })
            .collect();
        assert!(
            waits[3] >= 0.3 && waits.windows(2).all(|w| w[1] + 0.05 >= w[0]),
            "waits that do not back off: {waits:?}"
        );
        assert!(
            client.is_running(),
            "the client gave up: {:?}",
            client.status
        );
        let log = client.log();
        for w in &warnings {
            assert!(
                w.contains("refused the handshake")
                    && w.contains("this node's key")
                    && w.contains("another group"),
                "a warning without the likely cause: {w}"
            );
        }
        assert!(
            !log.to_lowercase().contains("connected"),
            "a refused node said it was connected:\n{log}"
        );

        // The relay counts every attempt, in its metrics and in its stats line, and logs
        // no line of its own for any of them. Each attempt it counted is one the client
        // reported (one more may be under way).
        let refused = relay.wait_until(
            Duration::from_secs(10),
            "a count of the refused handshakes",
            |_| metric(metrics, HANDSHAKES_REFUSED).filter(|n| *n >= warnings.len() as f64),
        );
        let reported = client
            .log()
            .lines()
            .filter(|l| l.contains(" WARN "))
            .count();
        assert!(
            refused <= (reported + 1) as f64,
            "the relay counted {refused} handshakes, the client reported {reported}"
        );
        let log = relay.wait_for_log(
            "refused (nodes of another configuration?)",
            Duration::from_secs(10),
        );
        let own: Vec<&str> = log.lines().filter(|l| !l.contains("exchanges/s")).collect();
        assert!(
            own.len() <= 2,
            "the relay logged more than its start:\n{}",
            own.join("\n")
        );
    });
}

// ---------------------------------------------------------------------------------------
// 12. One node, one process

#[test]
fn a_second_process_of_a_client_exits_and_the_group_keeps_its_interval() {
    within(Duration::from_secs(120), |scope| {
        let mut net = Net::start(scope, 2, 1, "echo");
        echo_once(net.client_ports[0], b"before the second process");
        let interval = net.metric("dissent_interval");
        let joined = net.metric(JOINED);
        assert!(interval > 0.0, "no interval runs");

        // The same key file on another port: refused, with the node and the reason.
        let key = key_file(&net.cfg, "client-0");
        let cfg = net.cfg.display().to_string();
        let relay = net.relay_addr();
        let started = Instant::now();
        let out = run_once(
            &["client", "-p", "0", "--relay", &relay, &cfg, &key],
            Duration::from_secs(10),
        );
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "the second process ended well: {err}"
        );
        assert_ne!(out.status.code(), Some(101), "it panicked: {err}");
        assert!(
            err.contains("client-0") && err.contains("already connected"),
            "no node or reason in: {err}"
        );
        eprintln!("the second process exited after {:?}", started.elapsed());
        // A trustee's second process too.
        let out = run_once(
            &[
                "trustee",
                "--relay",
                &relay,
                &cfg,
                &key_file(&net.cfg, "trustee-0"),
            ],
            Duration::from_secs(10),
        );
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "the second trustee ended well: {err}"
        );
        assert!(
            err.contains("trustee-0") && err.contains("already connected"),
            "no node or reason in: {err}"
        );

        // The relay says which process kept the place.
        net.relay.wait_for_log(
            "refused a second process as client 0: the connected one answered",
            Duration::from_secs(5),
        );
        net.relay.wait_for_log(
            "refused a second process as trustee 0: the connected one answered",
            Duration::from_secs(5),
        );

        // Nobody noticed: the same interval, nobody joined, the first still carries bytes.
        assert_eq!(net.metric("dissent_interval"), interval, "a new interval");
        assert_eq!(net.metric(JOINED), joined, "a member joined again");
        assert!(net.clients[0].is_running(), "the first process stopped");
        echo_once(net.client_ports[0], b"after the second process");

        // A crashed first process: its restart gets back in at once.
        net.clients[0].kill();
        net.spawn_client(scope, 0);
        let back = echo_within(
            net.client_ports[0],
            b"through the restarted client",
            Duration::from_secs(10),
        );
        eprintln!("the restarted client carried bytes after {back:?}");
        assert!(net.clients[0].is_running());
        assert!(!net.clients[0].log().contains("already connected"));
    });
}

#[test]
fn a_hung_client_is_replaced_by_its_restart_and_stops_when_it_wakes() {
    within(Duration::from_secs(120), |scope| {
        let mut net = Net::start(scope, 2, 1, "echo");
        echo_once(net.client_ports[0], b"before it hangs");
        // Hung: its link stays open but it answers nothing, the relay's probe included.
        net.clients[0].signal(libc::SIGSTOP);
        let mut restart = net.client_on(scope, 0, 0);
        let port = restart.listening_port("listening on");
        let took = echo_within(port, b"through the new process", Duration::from_secs(15));
        eprintln!("the new process carried bytes after {took:?}");
        net.relay.wait_for_log(
            "client 0's connected process did not answer a probe; a new process replaces it",
            Duration::from_secs(5),
        );

        // The old one wakes up and stops with the reason: the relay's goodbye when the probe
        // replaced it, or, when the straggler cutoff ended its link first (it answered no
        // exchange), the refusal of its redial while the new process holds its place.
        net.clients[0].signal(libc::SIGCONT);
        let status = net.clients[0]
            .wait_exit(Duration::from_secs(10))
            .expect("the replaced process stops");
        assert!(!status.success(), "the replaced process ended well");
        assert_ne!(status.code(), Some(101), "it panicked");
        let log = net.clients[0].log();
        assert!(
            log.contains("client-0")
                && (log.contains("took its place") || log.contains("already connected")),
            "no reason given:\n{log}"
        );
        assert!(restart.is_running(), "the new process stopped");
        echo_once(port, b"after the old one stopped");
    });
}

// ---------------------------------------------------------------------------------------
// 13. A local connection while no interval can carry it is closed, with the reason

/// Longest a local connection waits for an interval: the client's 3 s of grace, checked
/// every second, and some room for a loaded machine.
const STRANDED_LIMIT: Duration = Duration::from_secs(6);

#[test]
fn a_local_connection_is_closed_while_no_interval_can_carry_it() {
    within(Duration::from_secs(120), |scope| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg_path = dir.path().join("dc");
        // The clients start before the relay: its port is in the configuration.
        let relay_port = reserve_port();
        generate(&cfg_path, 2, 1, relay_port);
        let cfg = cfg_path.display().to_string();
        let client = |i: u16| {
            let id = format!("client-{i}");
            let mut client =
                scope.spawn(&id, &["client", "-p", "0", &cfg, &key_file(&cfg_path, &id)]);
            let port = client.listening_port("listening on");
            (client, port)
        };

        // No relay at all.
        let (mut first, port) = client(0);
        wait_for_port(port, Duration::from_secs(20));
        let waited = closed_by_client_within(port, STRANDED_LIMIT);
        eprintln!("closed after {waited:?} with no relay");
        first.wait_for_log(
            &format!("the relay at 127.0.0.1:{relay_port} is not reachable"),
            Duration::from_secs(5),
        );

        // A relay without its trustee, then without a second client: its stats line says
        // what it waits for.
        let relay_port_s = relay_port.to_string();
        let mut relay =
            relay_with_metrics(scope, &cfg, &["-p", &relay_port_s, "--exit", "echo"]).proc;
        relay.wait_for_log(
            "waiting for trustees: 0 of 1 connected",
            Duration::from_secs(10),
        );
        let _trustee = scope.spawn(
            "trustee-0",
            &["trustee", &cfg, &key_file(&cfg_path, "trustee-0")],
        );
        // The client's backoff after several seconds without a relay: up to 10 s.
        relay.wait_for_log(
            "waiting for clients: 1 connected, 2 needed",
            Duration::from_secs(30),
        );
        let waited = closed_by_client_within(port, STRANDED_LIMIT);
        eprintln!("closed after {waited:?} below --min-clients");
        first.wait_for_log(
            "the relay has not started an interval with this client yet",
            Duration::from_secs(5),
        );

        // With a second client an interval runs, and the same port carries bytes.
        let _second = client(1);
        echo_within(port, b"now it runs", Duration::from_secs(30));
    });
}

#[test]
fn a_relay_that_stops_tells_its_nodes_why() {
    within(Duration::from_secs(120), |scope| {
        let mut net = Net::start(scope, 2, 1, "echo");
        echo_once(net.client_ports[0], b"before the relay stops");
        net.relay.signal(libc::SIGINT);
        let status = net
            .relay
            .wait_exit(Duration::from_secs(10))
            .expect("the relay stops on SIGINT");
        assert!(status.success(), "the relay ended badly: {status:?}");
        for c in &mut net.clients {
            c.wait_for_log("the relay is shutting down", Duration::from_secs(10));
            assert!(c.is_running(), "a client stopped with its relay");
            assert!(!c.log().contains("relay link lost"), "{}", c.log());
        }
    });
}

// ---------------------------------------------------------------------------------------
// 16. `dissent up` never changes a running demo, and checks addresses before writing

/// `dissent up` of two clients and a trustee with an echo exit, in `state`, its relay at
/// `relay` and its clients' ports from `client_base`.
fn demo_args<'a>(state: &'a str, relay: &'a str, client_base: &'a str) -> [&'a str; 13] {
    [
        "up",
        "--state",
        state,
        "-c",
        "2",
        "-t",
        "1",
        "--exit",
        "echo",
        "--relay",
        relay,
        "--client-port-base",
        client_base,
    ]
}

/// Starts `dissent up ARGS` and waits for its `count` announced ports.
fn start_up(scope: &Scope, args: &[&str], count: usize) -> Proc {
    let mut p = scope.spawn("up", args);
    p.wait_until(Duration::from_secs(60), "the announced ports", |p| {
        (announced_proxies(&p.out()).len() >= count).then_some(())
    });
    p
}

/// Every file in `dir` with its bytes, for comparing a folder before and after.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("dir entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs::read(e.path()).expect("read a file"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_second_up_refuses_naming_the_running_demo_and_a_killed_one_is_taken_over() {
    within(Duration::from_secs(180), |scope| {
        let state = tempfile::tempdir().expect("tempdir");
        let state_s = state.path().display().to_string();
        let demo = state.path().join("demo");
        let base = reserve_ports(6);
        let (relay, other_relay, clients) = (base, base + 1, base + 2);
        let relay_s = format!("127.0.0.1:{relay}");
        let clients_s = clients.to_string();
        let first_args = demo_args(&state_s, &relay_s, &clients_s);
        let mut first = start_up(scope, &first_args, 2);
        let before = snapshot(&demo);

        // Other options, the same state folder: refused, naming the running demo.
        let other_relay_s = other_relay.to_string();
        let other_clients = (clients + 2).to_string();
        let err = refused(
            &[
                "up",
                "--state",
                &state_s,
                "-c",
                "3",
                "--relay-port",
                &other_relay_s,
                "--client-port-base",
                &other_clients,
            ],
            &[
                "a demo is already running",
                &state_s,
                &format!("pid {}", first.pid()),
                &format!("relay {relay_s}"),
                &format!("client ports {clients}-{}", clients + 1),
                "--state",
            ],
        );
        assert!(!err.contains("wrote"), "{err}");
        assert_eq!(snapshot(&demo), before, "the running demo's files changed");
        // The same options again: refused all the same.
        refused(&first_args, &["a demo is already running"]);
        assert_eq!(snapshot(&demo), before);
        // The demo still carries bytes.
        echo_within(clients, b"still the first demo", Duration::from_secs(30));

        // Killed without a chance to clean up: its lock is stale, and the next `up` runs.
        let kids = descendants(first.pid());
        first.signal(libc::SIGKILL);
        first
            .wait_exit(EXIT_TIMEOUT)
            .expect("the killed up is gone");
        wait_all_gone(&kids, EXIT_TIMEOUT);
        let mut second = start_up(scope, &first_args, 2);
        assert!(
            second.out().contains("did not stop cleanly")
                && second.out().contains("using the demo configuration"),
            "{}",
            second.out()
        );
        assert_eq!(snapshot(&demo), before);
        echo_within(clients, b"the second demo", Duration::from_secs(30));
        // Its own ports probed by nobody: no client warned of a connection it never had.
        assert!(
            !second.log().contains("local connection"),
            "{}",
            second.log()
        );
        second.signal(libc::SIGINT);
        let status = second.wait_exit(EXIT_TIMEOUT).expect("up stops on SIGINT");
        assert!(status.success(), "{status}");
    });
}

#[test]
fn up_checks_the_relay_address_before_writing_anything_and_stays_on_loopback() {
    within(Duration::from_secs(120), |scope| {
        let dir = tempfile::tempdir().expect("tempdir");
        let fresh = dir.path().join("fresh");
        let fresh_s = fresh.display().to_string();
        for (relay, says) in [
            ("nosuch.invalid:12345", "does not resolve"),
            ("192.0.2.1:12345", "not a loopback address"),
        ] {
            refused(
                &["up", "--state", &fresh_s, "--relay", relay],
                &["--relay", relay, says],
            );
            assert!(!fresh.exists(), "`up --relay {relay}` wrote {fresh_s}");
        }

        // An existing demo keeps its files when a bad address is asked for.
        let state = dir.path().join("state");
        let state_s = state.display().to_string();
        let base = reserve_ports(3);
        let relay_s = format!("127.0.0.1:{base}");
        let clients_s = (base + 1).to_string();
        let args = demo_args(&state_s, &relay_s, &clients_s);
        let mut demo = start_up(scope, &args, 2);
        // The relay listens on loopback only.
        let relay_pid = find_child(demo.pid(), "relay", &base.to_string()).expect("a relay");
        let cmd = cmdline(relay_pid);
        let host = cmd
            .iter()
            .skip_while(|a| *a != "--host")
            .nth(1)
            .expect("the demo's relay gets --host");
        assert!(
            host.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            "{cmd:?}"
        );
        demo.signal(libc::SIGINT);
        demo.wait_exit(EXIT_TIMEOUT).expect("up stops on SIGINT");
        let before = snapshot(&state.join("demo"));
        refused(
            &["up", "--state", &state_s, "--relay", "nosuch.invalid:1"],
            &["does not resolve"],
        );
        assert_eq!(snapshot(&state.join("demo")), before);
    });
}

// ---------------------------------------------------------------------------------------
// 17. Commands printed for the user paste as they are

#[test]
fn a_printed_client_command_pastes_and_joins() {
    within(Duration::from_secs(150), |scope| {
        let dir = tempfile::tempdir().expect("tempdir");
        // A folder whose name a shell would split, and a relay moved off system.json's port.
        let cfg = dir.path().join("my dc 'demo'");
        let base = reserve_ports(4);
        generate(&cfg, 2, 1, base);
        let (relay_port, client_base) = (base + 1, base + 2);
        let cfg_s = cfg.display().to_string();
        let mut sup = scope.spawn(
            "supervisor",
            &[
                "supervisor",
                &cfg_s,
                "--local",
                "1",
                "--exit",
                "echo",
                "--relay-port",
                &relay_port.to_string(),
                "--client-port-base",
                &client_base.to_string(),
            ],
        );
        let line = sup.wait_until(Duration::from_secs(40), "a printed command", |p| {
            p.out()
                .lines()
                .find_map(|l| l.strip_prefix("client-1: start it yourself: "))
                .map(str::to_string)
        });
        assert!(
            line.contains(&format!("--relay 127.0.0.1:{relay_port}")),
            "{line}"
        );
        assert!(
            line.contains(&format!("--port {}", client_base + 1)),
            "{line}"
        );
        // Pasted into a shell as it is: the client joins the running group.
        let mut pasted = Command::new("sh");
        pasted
            .arg("-c")
            .arg(format!("exec {line}"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl only asks the kernel to stop the child with the test thread.
        unsafe {
            pasted.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = pasted.spawn().expect("sh");
        lock(&scope.pids).push(child.id());
        let log = Captured::collect(child.stderr.take().expect("stderr"));
        let mut client = Proc {
            name: "pasted client".into(),
            child,
            stdout: Captured::default(),
            stderr: log,
            has_children: false,
            status: None,
        };
        client.wait_for_log("client-1 listening on", Duration::from_secs(20));
        sup.wait_for_log("client 1 connected", Duration::from_secs(40));
        wait_for_port(client_base + 1, Duration::from_secs(20));
        echo_within(
            client_base + 1,
            b"through the pasted client",
            Duration::from_secs(30),
        );
    });
}

// ---------------------------------------------------------------------------------------
// 18. Configuration errors: named all at once, never retried

#[test]
fn every_wrong_mode_is_named_at_once_and_a_config_error_is_not_retried() {
    within(Duration::from_secs(150), |scope| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg_path = dir.path().join("dc");
        let base = reserve_ports(4);
        generate(&cfg_path, 2, 1, base);
        let cfg = cfg_path.display().to_string();
        let open = ["client-1.json", "trustee-0.session.json", "relay.json"];
        for name in open {
            fs::set_permissions(cfg_path.join(name), fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
        let err = refused(&["supervisor", &cfg], &["3 private key files", "chmod 600"]);
        let chmod = err.split("chmod 600 ").nth(1).unwrap_or_default();
        for name in open {
            assert!(chmod.contains(name), "{name} not in the chmod: {err}");
        }
        for name in open {
            fs::set_permissions(cfg_path.join(name), fs::Permissions::from_mode(0o600))
                .expect("chmod");
        }

        // A key file that goes wrong while the net runs: its node is not restarted forever,
        // the supervisor stops everything and says why.
        let mut sup = scope.spawn(
            "supervisor",
            &[
                "supervisor",
                &cfg,
                "--exit",
                "echo",
                "--client-port-base",
                &(base + 1).to_string(),
            ],
        );
        sup.wait_until(Duration::from_secs(40), "2 ports", |p| {
            (announced_proxies(&p.out()).len() >= 2).then_some(())
        });
        fs::set_permissions(
            cfg_path.join("client-1.json"),
            fs::Permissions::from_mode(0o640),
        )
        .expect("chmod");
        let port = (base + 2).to_string();
        let child = find_child(sup.pid(), "client", &port).expect("client-1 is a child");
        // SAFETY: SIGKILL to our own supervisor's child, found by parent pid and arguments.
        unsafe { libc::kill(child as libc::pid_t, libc::SIGKILL) };
        let status = sup.wait_exit(EXIT_TIMEOUT).expect("the supervisor stops");
        assert!(!status.success());
        let log = sup.log();
        assert_eq!(
            log.matches("client-1.json: permissions 0640 are too open")
                .count(),
            1,
            "tried more than once:\n{log}"
        );
        assert!(
            log.contains("client-1 stopped on its configuration"),
            "{log}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 19. Small things: key files that are no files, options alike everywhere, singulars

#[test]
fn small_edges_of_the_command_line() {
    within(Duration::from_secs(90), |scope| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg_path = dir.path().join("dc");
        let cfg = config(&cfg_path, 2, 1);

        // A folder or a device is no key file, and no chmod makes it one.
        for bad in [cfg.as_str(), "/dev/null"] {
            let err = refused(&["client", &cfg, bad], &["not a key file", "client-0.json"]);
            assert!(!err.contains("chmod"), "{err}");
            let err = refused(
                &["trustee", &cfg, bad],
                &["not a key file", "trustee-0.json"],
            );
            assert!(!err.contains("chmod"), "{err}");
        }

        // A client listening beyond loopback says what that means (here the address is not
        // this machine's, so it stops at the bind: nothing listens beyond loopback).
        let out = run_once(
            &[
                "client",
                "--host",
                "192.0.2.1",
                "-p",
                "1080",
                &cfg,
                &key_file(&cfg_path, "client-0"),
            ],
            REFUSAL_TIMEOUT,
        );
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("beyond this machine") && err.contains("--host 127.0.0.1"),
            "{err}"
        );

        // The longest cell is never quietly raised.
        let out_dir = dir.path().join("cells").display().to_string();
        refused(
            &[
                "config",
                "generate",
                "--cell-length",
                "2048",
                "--max-cell-length",
                "1024",
                &out_dir,
            ],
            &["--max-cell-length 1024 is shorter than --cell-length 2048"],
        );
        assert!(!Path::new(&out_dir).exists());
        let out = run_once(
            &["config", "generate", "--cell-length", "40000", &out_dir],
            REFUSAL_TIMEOUT,
        );
        assert!(out.status.success(), "{}", stderr(&out));

        // Singular where it is one.
        let one = dir.path().join("one").display().to_string();
        let out = run_once(
            &[
                "config",
                "generate",
                "-c",
                "1",
                "-t",
                "1",
                "--allow-small-anonymity-set",
                &one,
            ],
            REFUSAL_TIMEOUT,
        );
        assert!(
            stdout(&out).contains("for 1 client and 1 trustee to"),
            "{}",
            stdout(&out)
        );

        // The top-level help names every bench mode that exists, and no other.
        let help = stdout(&run_once(&["--help"], REFUSAL_TIMEOUT));
        assert!(help.contains("`load`") && help.contains("`core`"), "{help}");
        assert!(!help.contains("`net`"), "{help}");
        // -c and -t, with one range wording in the help and in the error.
        for sub in [
            &["bench"][..],
            &["bench", "load"],
            &["bench", "core"],
            &["up"],
            &["config", "generate"],
        ] {
            let mut args = sub.to_vec();
            args.push("--help");
            let text = stdout(&run_once(&args, REFUSAL_TIMEOUT));
            assert!(
                text.contains("-c, --clients <N>") && text.contains("-t, --trustees <N>"),
                "{sub:?}: {text}"
            );
        }
        let help = stdout(&run_once(
            &["config", "generate", "--help"],
            REFUSAL_TIMEOUT,
        ));
        let err = refused(&["config", "generate", "-c", "0", &out_dir], &["-c"]);
        let range = "2-65535 (1 with --allow-small-anonymity-set)";
        assert!(help.contains(range) && err.contains(range), "{help}\n{err}");

        // The relay takes its key file as the others do: a second positional argument.
        let mut relay = scope.spawn("relay", &["relay", &cfg, &key_file(&cfg_path, "relay")]);
        relay.wait_for_log("relay listening on", Duration::from_secs(20));
        refused(
            &["relay", &cfg, &key_file(&cfg_path, "client-0")],
            &["client-0.json is a client key; the relay needs relay.json"],
        );
    });
}

// ---------------------------------------------------------------------------------------
// 20. A client's log never names a Conn# or a slot

#[test]
fn a_client_log_never_names_a_conn_or_a_slot() {
    within(Duration::from_secs(120), |scope| {
        let mut net = Net::start(scope, 2, 1, "echo");
        // Client 1 again, logging everything it logs.
        net.clients[1].kill();
        let cfg = net.cfg.display().to_string();
        let port = net.client_ports[1];
        let relay = net.relay_addr();
        net.clients[1] = scope.spawn_logging(
            "client-1",
            &[
                "client",
                "-p",
                &port.to_string(),
                "--relay",
                &relay,
                &cfg,
                &key_file(&net.cfg, "client-1"),
            ],
            "info,dissent=debug,dissent_core=debug",
        );
        wait_for_port(port, FORM_TIMEOUT);
        for i in 0..3u8 {
            echo_within(port, &[i; 100], Duration::from_secs(30));
        }
        let log = net.clients[1].wait_for_log("closed by the exit", Duration::from_secs(20));
        assert!(log.contains("local connection 1"), "{log}");
        // A Conn# prints as 0x followed by eight hex digits; its high half is the slot.
        let conn_like = log
            .split("0x")
            .skip(1)
            .any(|rest| rest.len() >= 8 && rest.as_bytes()[..8].iter().all(u8::is_ascii_hexdigit));
        assert!(!conn_like, "a Conn# in the client's log:\n{log}");
        assert!(!log.to_lowercase().contains("slot"), "{log}");
    });
}
