//! End-to-end tests of a group with no dealer: every node makes its own keys with
//! `dissent key new`, a group folder is assembled from public key files only with
//! `dissent group ...`, every trustee signs it, and the relay, trustees and clients run the
//! epoch setup over the relay before the DC-net carries bytes.
//!
//! Like `e2e.rs`, every test runs the real binary with its own folders and ports, waits
//! only for concrete conditions with hard limits, and runs under an overall time limit.

#![cfg(target_os = "linux")]

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod support;
use support::*;

const LIMIT: Duration = Duration::from_secs(240);

/// Runs `dissent ARGS`, which must succeed; returns its stdout.
fn ok(args: &[&str]) -> String {
    let out = run_once(args, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "dissent {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `dissent ARGS`, which must fail (not panic) with a message containing `says`.
fn refused(args: &[&str], says: &str) -> String {
    let out = run_once(args, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "dissent {args:?} was accepted: {err}"
    );
    assert_ne!(
        out.status.code(),
        Some(101),
        "dissent {args:?} panicked: {err}"
    );
    assert!(
        err.contains(says),
        "dissent {args:?}: no {says:?} in: {err}"
    );
    err
}

/// A node's private key file, made by `dissent key new` in its own folder.
fn new_key(home: &Path, role: &str, name: &str) -> PathBuf {
    let dir = home.join(name);
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.key"));
    ok(&["key", "new", "--role", role, &s(&file)]);
    assert_eq!(
        mode(&file) & 0o777,
        0o600,
        "{} is not private",
        file.display()
    );
    file
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn public(file: &Path) -> String {
    format!("{}.pub", file.display())
}

/// The 32-byte secrets of a private key file (hex fields `link`, `identity`, `dh`).
fn secrets(file: &Path) -> Vec<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(file).unwrap()).unwrap();
    ["link", "identity", "dh"]
        .iter()
        .map(|f| hex::decode(v[f].as_str().unwrap()).unwrap())
        .collect()
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.clone(), fs::read(&p).unwrap()));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Asserts that no file under `dir` holds any of `secret` (raw or in hex).
fn no_secret_in(dir: &Path, secret: &[Vec<u8>]) {
    for (path, bytes) in files(dir) {
        for k in secret {
            assert!(
                !contains(&bytes, k) && !contains(&bytes, hex::encode(k).as_bytes()),
                "{} holds a private key",
                path.display()
            );
        }
    }
}

/// The echo: `data` through the client on `port` comes back byte-exact.
fn echo_through(port: u16, data: &[u8]) {
    let mut conn = connect(port, TRANSFER_TIMEOUT);
    conn.write_all(data).unwrap();
    let mut back = vec![0u8; data.len()];
    conn.read_exact(&mut back).unwrap();
    assert!(back == data, "the echo came back different");
}

#[test]
fn a_group_with_no_dealer_sets_up_over_the_relay_and_carries_bytes() {
    within(LIMIT, |scope| {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        // Each node's own folder: its keys never leave it.
        let relay_key = new_key(home, "relay", "relay");
        let trustees: Vec<PathBuf> = (0..3)
            .map(|j| new_key(home, "trustee", &format!("trustee{j}")))
            .collect();
        let clients: Vec<PathBuf> = (0..5)
            .map(|i| new_key(home, "client", &format!("client{i}")))
            .collect();
        let outsider = new_key(home, "client", "outsider");

        // The assembler sees public files only.
        let group = home.join("group");
        let port = reserve_port();
        let relay_addr = format!("127.0.0.1:{port}");
        ok(&["group", "new", "--relay", &relay_addr, &s(&group)]);
        let mut add = vec![
            "group".to_string(),
            "add".into(),
            s(&group),
            public(&relay_key),
        ];
        add.extend(trustees.iter().chain(&clients).map(|k| public(k)));
        let add: Vec<&str> = add.iter().map(String::as_str).collect();
        ok(&add);

        // Unsigned: every node refuses it, naming what is missing.
        refused(&["trustee", &s(&group), &s(&trustees[0])], "has not signed");
        for t in &trustees {
            ok(&["group", "sign", &s(&group), &s(t)]);
        }
        let shown = ok(&["group", "show", &s(&group)]);
        assert!(shown.contains("valid: signed by every trustee"), "{shown}");
        for k in trustees.iter().chain(&clients) {
            let fp = ok(&["key", "show", &public(k)]);
            let fp = fp.split_whitespace().next().unwrap();
            assert!(shown.contains(fp), "{fp} not shown in: {shown}");
        }

        // A member whose key is not in the signed group is refused.
        refused(
            &["client", &s(&group), &s(&outsider), "-p", "0"],
            "is not a client of group version",
        );

        let relay_dir = home.join("relay");
        let mut relay = spawn_relay(scope, "relay", &group, &relay_key, &[]);
        let _trustees = spawn_trustees(scope, &group, &trustees);
        let mut client_procs = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            client_procs.push(scope.spawn(
                &format!("client{i}"),
                &["client", &s(&group), &s(c), "-p", "0"],
            ));
        }
        relay.wait_for_log("established", FORM_TIMEOUT);
        for c in &mut client_procs {
            c.wait_for_log("every proof and signature checked", FORM_TIMEOUT);
        }
        let p = client_procs[2].listening_port("listening on");
        client_procs[2].wait_for_log("sending in interval", FORM_TIMEOUT);
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        echo_through(p, &data);

        // No private key, of anyone, in the group folder or the relay's folder.
        for k in std::iter::once(&relay_key).chain(&trustees).chain(&clients) {
            let own = secrets(k);
            no_secret_in(&group, &own);
            if k != &relay_key {
                no_secret_in(&relay_dir, &own);
            }
        }
        // Nothing there links a slot to a member. The group folder says nothing of slots;
        // the relay keeps the epoch's public pseudonym list (as every node does) but no
        // client's pseudonym secret and nothing that names a client.
        for (path, bytes) in files(&group) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("pseudonym") && !text.contains("slot"),
                "{} mentions slots or pseudonyms",
                path.display()
            );
        }
        for (i, c) in clients.iter().enumerate() {
            let epoch = fs::read(format!("{}.epoch", c.display())).unwrap();
            assert_eq!(
                mode(Path::new(&format!("{}.epoch", c.display()))) & 0o777,
                0o600
            );
            let v: serde_json::Value = serde_json::from_slice(&epoch).unwrap();
            let pseudonym = hex::decode(v["pseudonym"].as_str().unwrap()).unwrap();
            let pubfile: serde_json::Value =
                serde_json::from_slice(&fs::read(public(c)).unwrap()).unwrap();
            let link = pubfile["link"].as_str().unwrap().to_string();
            let name = format!("client{i}");
            for (path, bytes) in files(&relay_dir) {
                assert!(
                    !contains(&bytes, &pseudonym)
                        && !contains(&bytes, hex::encode(&pseudonym).as_bytes())
                        && !contains(&bytes, name.as_bytes())
                        && !contains(&bytes, link.as_bytes()),
                    "{} holds something of {name}",
                    path.display()
                );
            }
        }

        // A client that restarts within the epoch keeps its slot and carries bytes again.
        client_procs[3].kill();
        let mut again = scope.spawn(
            "client3-again",
            &["client", &s(&group), &s(&clients[3]), "-p", "0"],
        );
        again.wait_for_log("rejoining it", FORM_TIMEOUT);
        let p = again.listening_port("listening on");
        again.wait_for_log("sending in interval", FORM_TIMEOUT);
        echo_through(p, &data);

        // Taking a client out makes a new version: unsigned until every trustee signs it,
        // and the client is then no member.
        let next = home.join("group-next");
        fs::create_dir_all(&next).unwrap();
        fs::copy(group.join("group.json"), next.join("group.json")).unwrap();
        let fp = ok(&["key", "show", &public(&clients[4])]);
        let fp = fp.split_whitespace().next().unwrap().to_string();
        ok(&["group", "remove", &s(&next), &fp]);
        let shown = ok(&["group", "show", &s(&next)]);
        assert!(shown.contains(&format!("leaving {fp}")), "{shown}");
        refused(&["trustee", &s(&next), &s(&trustees[1])], "has not signed");
        for t in &trustees {
            ok(&["group", "sign", &s(&next), &s(t)]);
        }
        refused(
            &["client", &s(&next), &s(&clients[4]), "-p", "0"],
            "is not a client of group version",
        );
        // A client key cannot sign.
        refused(
            &["group", "sign", &s(&next), &s(&clients[0])],
            "only trustees sign",
        );

        // A tampered group.json is refused, naming the signatures that fail.
        let file = group.join("group.json");
        let text = fs::read_to_string(&file).unwrap();
        let tampered = text.replacen("\"min_clients\": 2", "\"min_clients\": 3", 1);
        assert_ne!(text, tampered);
        fs::write(&file, tampered).unwrap();
        refused(
            &["client", &s(&group), &s(&clients[0]), "-p", "0"],
            "does not verify",
        );
    });
}

/// How many times `needle` appears in `log`.
fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// A copy of the group folder's `group.json` in a node's own folder.
fn copy_group(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    fs::copy(from.join("group.json"), to.join("group.json")).unwrap();
}

/// A switch while a transfer runs: client4 and trustee2 join, client3 and trustee1 leave
/// (each trustee signs, the leaving one its own removal), client2 is away at the
/// announcement, and client3 comes back only after the next epoch started. The transfer's
/// connection ends cleanly; new transfers by an old and a new member arrive byte-exact; the
/// removed members are told, stop and are refused.
#[test]
fn members_join_and_leave_at_a_switch_while_a_transfer_runs() {
    within(LIMIT, |scope| {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        let relay_key = new_key(home, "relay", "relay");
        let all_trustees: Vec<PathBuf> = (0..3)
            .map(|j| new_key(home, "trustee", &format!("trustee{j}")))
            .collect();
        // trustee2 comes in at the switch; trustee1 goes.
        let trustees = &all_trustees[..2];
        let clients: Vec<PathBuf> = (0..5)
            .map(|i| new_key(home, "client", &format!("client{i}")))
            .collect();
        // client4 joins at the switch; client3 leaves.
        let (old, newcomer, leaving) = (&clients[..4], &clients[4], &clients[3]);

        let group = home.join("group");
        let port = reserve_port();
        ok(&[
            "group",
            "new",
            "--relay",
            &format!("127.0.0.1:{port}"),
            &s(&group),
        ]);
        let mut add = vec![
            "group".to_string(),
            "add".into(),
            s(&group),
            public(&relay_key),
        ];
        add.extend(trustees.iter().chain(old).map(|k| public(k)));
        ok(&add.iter().map(String::as_str).collect::<Vec<_>>());
        for t in trustees {
            ok(&["group", "sign", &s(&group), &s(t)]);
        }
        // Every node runs from its own copy of the public group folder.
        let folder = |name: &str| home.join(format!("{name}-group"));
        copy_group(&group, &folder("relay"));
        let mut relay = scope.spawn(
            "relay",
            &[
                "relay",
                &s(&folder("relay")),
                "--key",
                &s(&relay_key),
                "--exit",
                "echo",
            ],
        );
        let mut nodes = Vec::new();
        for (j, t) in trustees.iter().enumerate() {
            let name = format!("trustee{j}");
            copy_group(&group, &folder(&name));
            nodes.push(scope.spawn(&name, &["trustee", &s(&folder(&name)), &s(t)]));
        }
        let base = reserve_ports(5);
        let mut procs = Vec::new();
        for (i, c) in old.iter().enumerate() {
            let name = format!("client{i}");
            copy_group(&group, &folder(&name));
            let p = (base + i as u16).to_string();
            procs.push(scope.spawn(&name, &["client", &s(&folder(&name)), &s(c), "-p", &p]));
        }
        relay.wait_for_log("established", FORM_TIMEOUT);
        for c in &mut procs {
            c.wait_for_log("sending in interval", FORM_TIMEOUT);
        }

        // A transfer through client0 that runs across the switch: chunks echoed one by one,
        // each checked byte-exact, until the connection ends.
        let mut conn = connect(base, TRANSFER_TIMEOUT);
        conn.set_read_timeout(Some(TRANSFER_TIMEOUT)).unwrap();
        let transfer = std::thread::spawn(move || {
            let mut echoed = 0usize;
            for round in 0u32..100_000 {
                let chunk: Vec<u8> = (0..4096u32).map(|i| (i ^ round) as u8).collect();
                if conn.write_all(&chunk).is_err() {
                    return (echoed, "write failed".to_string());
                }
                let mut back = vec![0u8; chunk.len()];
                match conn.read_exact(&mut back) {
                    Ok(()) => assert!(back == chunk, "an echoed chunk came back different"),
                    Err(e) => return (echoed, format!("read ended: {:?}", e.kind())),
                }
                echoed += chunk.len();
            }
            (echoed, "never ended".to_string())
        });

        // The next version: client4 in, client3 out.
        let fp = |k: &Path| {
            let out = ok(&["key", "show", &public(k)]);
            out.split_whitespace().next().unwrap().to_string()
        };
        ok(&[
            "group",
            "add",
            &s(&group),
            &public(newcomer),
            &public(&all_trustees[2]),
        ]);
        ok(&["group", "remove", &s(&group), &fp(leaving)]);
        ok(&["group", "remove", &s(&group), &fp(&trustees[1])]);
        // Signed by one trustee only: the relay refuses it at the re-read and runs on.
        ok(&["group", "sign", &s(&group), &s(&trustees[0])]);
        copy_group(&group, &folder("relay"));
        relay.signal(libc::SIGHUP);
        relay.wait_for_log("is not taken (on SIGHUP)", FORM_TIMEOUT);
        let log = relay.log();
        assert!(
            log.contains("trustee1") && log.contains("has not signed"),
            "{log}"
        );
        assert!(!log.contains("switch announced"), "{log}");
        // The leaving trustee signs its own removal, the new one its arrival. The newcomers
        // start from the signed version and wait for the switch.
        ok(&["group", "sign", &s(&group), &s(&trustees[1])]);
        ok(&["group", "sign", &s(&group), &s(&all_trustees[2])]);
        copy_group(&group, &folder("trustee2"));
        let mut new_trustee = scope.spawn(
            "trustee2",
            &["trustee", &s(&folder("trustee2")), &s(&all_trustees[2])],
        );
        new_trustee.wait_for_log("linking to relay", FORM_TIMEOUT);
        copy_group(&group, &folder("client4"));
        let p4 = (base + 4).to_string();
        let mut joiner = scope.spawn(
            "client4",
            &["client", &s(&folder("client4")), &s(newcomer), "-p", &p4],
        );
        joiner.wait_for_log("linking to relay", FORM_TIMEOUT);

        // client2 is away when the switch is announced: it comes back on the old version
        // and is told of the switch when it dials the ended epoch. client3, which the
        // version removes, is away too and comes back only once the next epoch runs.
        procs[2].kill();
        procs[3].kill();
        copy_group(&group, &folder("relay"));
        relay.signal(libc::SIGHUP);
        relay.wait_for_log("switch announced", FORM_TIMEOUT);
        let p2 = (base + 2).to_string();
        procs[2] = scope.spawn(
            "client2-back",
            &["client", &s(&folder("client2")), &s(&old[2]), "-p", &p2],
        );
        relay.wait_for_log(
            "client client2 dialed the epoch that ended; told it of the switch",
            FORM_TIMEOUT,
        );
        // The transfer's connection ends cleanly: everything echoed before was byte-exact.
        let (echoed, how) = transfer.join().unwrap();
        assert!(echoed > 0, "nothing was echoed before the switch ({how})");
        // The client closed it (the application reads the end of the stream), not a
        // timeout of this reader.
        assert_eq!(how, "read ended: UnexpectedEof");
        procs[0].wait_for_log("local connections are closed", FORM_TIMEOUT);

        let Some(status) = nodes[1].wait_exit(FORM_TIMEOUT) else {
            panic!("trustee1 still runs: {}", nodes[1].log());
        };
        assert!(!status.success());
        assert!(nodes[1].log().contains("removed at the switch"));
        refused(
            &["client", &s(&group), &s(leaving), "-p", "0"],
            "is not a client of group version",
        );

        // The next epoch: set up with the new member list, and traffic flows again.
        relay.wait_until(FORM_TIMEOUT, "the second epoch", |p| {
            (count(&p.log(), "established") >= 2).then_some(())
        });
        relay.wait_for_log("switch pause:", FORM_TIMEOUT);
        // client3 comes back on the ended version while the next epoch runs: its DC-net
        // tells it of the switch and serves it the version that removes it; it stops, and
        // its keys are refused from then on.
        let p3 = (base + 3).to_string();
        procs[3] = scope.spawn(
            "client3-back",
            &["client", &s(&folder("client3")), &s(leaving), "-p", &p3],
        );
        let Some(status) = procs[3].wait_exit(FORM_TIMEOUT) else {
            panic!("client3 still runs: {}", procs[3].log());
        };
        assert!(!status.success());
        let log = procs[3].log();
        assert!(log.contains("removed at the switch"), "{log}");
        relay.wait_for_log(
            "client client3 dialed the epoch that ended; told it of the switch",
            FORM_TIMEOUT,
        );
        relay.wait_for_log("told client client3 that version", FORM_TIMEOUT);
        joiner.wait_for_log("sending in interval", FORM_TIMEOUT);
        new_trustee.wait_for_log("every proof and signature checked", FORM_TIMEOUT);
        procs[0].wait_until(FORM_TIMEOUT, "the second epoch", |p| {
            (count(&p.log(), "every proof and signature checked") >= 2).then_some(())
        });
        procs[2].wait_for_log("every proof and signature checked", FORM_TIMEOUT);
        let data: Vec<u8> = (0..60_000u32).map(|i| (i * 13 + i / 97) as u8).collect();
        procs[0].wait_until(FORM_TIMEOUT, "sending in the second epoch", |p| {
            let log = p.log();
            let after = &log[log.rfind("every proof and signature checked")?..];
            after.contains("sending in interval").then_some(())
        });
        echo_through(base, &data);
        echo_through(base + 4, &data);
        // Each node saved the new version in its folder.
        let saved = fs::read(folder("client0").join("group.json")).unwrap();
        assert_eq!(saved, fs::read(group.join("group.json")).unwrap());
    });
}

/// A group of `trustees` and `clients` made from keys in `home`, signed by every trustee,
/// with `policy` options for `group new`; returns (group folder, relay key, trustee keys,
/// client keys).
fn signed_group(
    home: &Path,
    trustees: usize,
    clients: usize,
    policy: &[&str],
) -> (PathBuf, PathBuf, Vec<PathBuf>, Vec<PathBuf>) {
    let relay_key = new_key(home, "relay", "relay");
    let trustees: Vec<PathBuf> = (0..trustees)
        .map(|j| new_key(home, "trustee", &format!("trustee{j}")))
        .collect();
    let clients: Vec<PathBuf> = (0..clients)
        .map(|i| new_key(home, "client", &format!("client{i}")))
        .collect();
    let group = home.join("group");
    let relay_addr = format!("127.0.0.1:{}", reserve_port());
    let mut new = vec!["group", "new", "--relay", &relay_addr];
    new.extend_from_slice(policy);
    let dir = s(&group);
    new.push(&dir);
    ok(&new);
    let mut add = vec![
        "group".to_string(),
        "add".into(),
        s(&group),
        public(&relay_key),
    ];
    add.extend(trustees.iter().chain(&clients).map(|k| public(k)));
    ok(&add.iter().map(String::as_str).collect::<Vec<_>>());
    for t in &trustees {
        ok(&["group", "sign", &s(&group), &s(t)]);
    }
    (group, relay_key, trustees, clients)
}

/// The relay of `group` (its key file `key`), exiting to an echo, with `extra` options.
fn spawn_relay(scope: &Scope, name: &str, group: &Path, key: &Path, extra: &[&str]) -> Proc {
    let (group, key) = (s(group), s(key));
    let mut args = vec!["relay", &group, "--key", &key, "--exit", "echo"];
    args.extend_from_slice(extra);
    scope.spawn(name, &args)
}

/// Every trustee of `group`, named `trusteeJ`.
fn spawn_trustees(scope: &Scope, group: &Path, trustees: &[PathBuf]) -> Vec<Proc> {
    let group = s(group);
    (trustees.iter().enumerate())
        .map(|(j, t)| scope.spawn(&format!("trustee{j}"), &["trustee", &group, &s(t)]))
        .collect()
}

/// Clients `which` of `group`, named `clientI` and listening on port `base + I`.
fn spawn_clients(
    scope: &Scope,
    group: &Path,
    clients: &[PathBuf],
    which: impl IntoIterator<Item = usize>,
    base: u16,
) -> Vec<Proc> {
    let group = s(group);
    which
        .into_iter()
        .map(|i| {
            let port = (base + i as u16).to_string();
            let args = ["client", &group, &s(&clients[i]), "-p", &port];
            scope.spawn(&format!("client{i}"), &args)
        })
        .collect()
}

/// A client absent when the setup opens gets no slot: the setup goes on with the members
/// present (every trustee and the group's minimum of clients). The absent client, started
/// later, is told it has no slot this epoch and waits; at the next switch it takes part
/// in the next version's setup and carries bytes.
#[test]
fn an_absent_client_never_stalls_the_setup_and_gets_in_at_the_next_epoch() {
    within(LIMIT, |scope| {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        let (group, relay_key, trustees, clients) = signed_group(home, 2, 4, &[]);
        let folder = |name: &str| home.join(format!("{name}-group"));
        copy_group(&group, &folder("relay"));
        let mut relay = scope.spawn(
            "relay",
            &[
                "relay",
                &s(&folder("relay")),
                "--key",
                &s(&relay_key),
                "--exit",
                "echo",
            ],
        );
        let _trustees = spawn_trustees(scope, &group, &trustees);
        let base = reserve_ports(4);
        let mut procs = spawn_clients(scope, &group, &clients, 0..3, base);
        relay.wait_for_log("going on without client client3", FORM_TIMEOUT);
        relay.wait_for_log("established", FORM_TIMEOUT);
        let log = relay.log();
        assert!(log.contains("3 slots"), "{log}");
        assert!(
            log.contains("without clients client3 (no slot this epoch)"),
            "{log}"
        );
        for c in &mut procs {
            c.wait_for_log("sending in interval", FORM_TIMEOUT);
        }
        let data: Vec<u8> = (0..30_000u32).map(|i| (i * 11 + i / 89) as u8).collect();
        echo_through(base, &data);

        // client3 comes while the epoch runs: it is told it has no slot, and waits.
        let p3 = (base + 3).to_string();
        let mut late = scope.spawn(
            "client3",
            &["client", &s(&group), &s(&clients[3]), "-p", &p3],
        );
        late.wait_for_log("has no slot in epoch", FORM_TIMEOUT);
        relay.wait_for_log(
            "client client3 linked: it has no slot this epoch",
            FORM_TIMEOUT,
        );
        assert!(late.is_running(), "{}", late.log());
        echo_through(base + 1, &data);

        // The next version (client2 taken out): client3 is told of the switch, fetches it
        // and takes part in its setup.
        let fp = ok(&["key", "show", &public(&clients[2])]);
        let fp = fp.split_whitespace().next().unwrap().to_string();
        ok(&["group", "remove", &s(&group), &fp]);
        for t in &trustees {
            ok(&["group", "sign", &s(&group), &s(t)]);
        }
        copy_group(&group, &folder("relay"));
        relay.signal(libc::SIGHUP);
        relay.wait_for_log("switch announced", FORM_TIMEOUT);
        relay.wait_until(FORM_TIMEOUT, "the second epoch", |p| {
            (count(&p.log(), "established") >= 2).then_some(())
        });
        late.wait_for_log("every proof and signature checked", FORM_TIMEOUT);
        late.wait_for_log("sending in interval", FORM_TIMEOUT);
        echo_through(base + 3, &data);
    });
}

/// A trustee that cheats in its shuffle (`--cheat`, a test build) is convicted by every
/// node with its signed message as evidence; the setup restarts without it and the epoch
/// runs with the two honest trustees. With a policy that needs every trustee, the setup
/// stops instead, saying why.
#[cfg(feature = "disruptor")]
#[test]
fn a_cheating_trustee_is_convicted_and_the_setup_goes_on_without_it_or_stops_clearly() {
    within(LIMIT, |scope| {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        let (group, relay_key, trustees, clients) = signed_group(home, 3, 3, &[]);
        let mut relay = spawn_relay(scope, "relay", &group, &relay_key, &[]);
        let mut nodes = Vec::new();
        for (j, t) in trustees.iter().enumerate() {
            let mut args = vec!["trustee", &s(&group), &s(t)]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>();
            if j == 1 {
                args.extend(["--cheat".to_string(), "swap".to_string()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            nodes.push(scope.spawn(&format!("trustee{j}"), &args));
        }
        let base = reserve_ports(3);
        let mut procs = spawn_clients(scope, &group, &clients, 0..clients.len(), base);
        relay.wait_for_log("established", FORM_TIMEOUT);
        let log = relay.log();
        assert!(
            log.contains("CONVICTED trustee trustee1")
                && log.contains("trustee 1 cheated in setup attempt 0: its shuffle fails")
                && log.contains("evidence, its signed message: 05"),
            "{log}"
        );
        assert!(log.contains("established in attempt 1"), "{log}");
        assert!(log.contains("without convicted trustees trustee1"), "{log}");
        for n in nodes.iter_mut().step_by(2) {
            n.wait_for_log("every proof and signature checked", FORM_TIMEOUT);
            assert!(n.log().contains("CONVICTED trustee trustee1"));
        }
        let Some(status) = nodes[1].wait_exit(FORM_TIMEOUT) else {
            panic!("the cheating trustee still runs: {}", nodes[1].log());
        };
        assert!(!status.success());
        assert!(
            nodes[1].log().contains("the other nodes convicted it"),
            "{}",
            nodes[1].log()
        );
        for c in &mut procs {
            c.wait_for_log("sending in interval", FORM_TIMEOUT);
            assert!(c.log().contains("CONVICTED trustee trustee1"));
        }
        let data: Vec<u8> = (0..30_000u32).map(|i| (i * 5 + i / 61) as u8).collect();
        echo_through(base + 1, &data);
        for p in procs.iter_mut().chain(nodes.iter_mut()) {
            p.kill();
        }
        relay.kill();

        // A group whose policy needs all three trustees stops, naming the cheater.
        let strict = home.join("strict");
        fs::create_dir_all(&strict).unwrap();
        let relay_addr = format!("127.0.0.1:{}", reserve_port());
        ok(&[
            "group",
            "new",
            "--relay",
            &relay_addr,
            "--min-trustees",
            "3",
            &s(&strict),
        ]);
        let mut add = vec![
            "group".to_string(),
            "add".into(),
            s(&strict),
            public(&relay_key),
        ];
        add.extend(trustees.iter().chain(&clients).map(|k| public(k)));
        ok(&add.iter().map(String::as_str).collect::<Vec<_>>());
        for t in &trustees {
            ok(&["group", "sign", &s(&strict), &s(t)]);
        }
        let shown = ok(&["group", "show", &s(&strict)]);
        assert!(shown.contains("min_trustees 3"), "{shown}");
        let mut relay = scope.spawn(
            "relay-strict",
            &["relay", &s(&strict), "--key", &s(&relay_key)],
        );
        let mut others = Vec::new();
        for (j, t) in trustees.iter().enumerate() {
            let mut args = vec!["trustee".to_string(), s(&strict), s(t)];
            if j == 1 {
                args.extend(["--cheat".to_string(), "swap".to_string()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            others.push(scope.spawn(&format!("strict-trustee{j}"), &args));
        }
        for (i, c) in clients.iter().enumerate() {
            others.push(scope.spawn(
                &format!("strict-client{i}"),
                &["client", &s(&strict), &s(c), "-p", "0"],
            ));
        }
        let Some(status) = relay.wait_exit(FORM_TIMEOUT) else {
            panic!("the relay still runs: {}", relay.log());
        };
        assert!(!status.success());
        let log = relay.log();
        assert!(
            log.contains("CONVICTED trustee trustee1")
                && log.contains("2 trustees remain, the group needs 3: setup stops"),
            "{log}"
        );
        let client = &mut others[3];
        let Some(status) = client.wait_exit(FORM_TIMEOUT) else {
            panic!("client0 still runs: {}", client.log());
        };
        assert!(!status.success());
        assert!(
            client.log().contains("the group needs 3: setup stops"),
            "{}",
            client.log()
        );
    });
}

/// A participant that goes silent and then drops its link during the setup (stopped, then
/// killed, after the relay opened the attempt) makes the relay open a new attempt without
/// it: the epoch is established with the others, who carry bytes.
#[test]
fn a_participant_that_leaves_during_the_setup_restarts_it_without_it() {
    within(LIMIT, |scope| {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        let (group, relay_key, trustees, clients) = signed_group(home, 2, 4, &[]);
        let mut relay = spawn_relay(scope, "relay", &group, &relay_key, &[]);
        let _trustees = spawn_trustees(scope, &group, &trustees);
        // client2 links first and is stopped: it cannot submit, so the attempt cannot end
        // before it is killed.
        let mut leaver = scope.spawn(
            "client2",
            &["client", &s(&group), &s(&clients[2]), "-p", "0"],
        );
        leaver.wait_for_log("waiting for the relay to open the setup", FORM_TIMEOUT);
        leaver.signal(libc::SIGSTOP);
        let base = reserve_ports(4);
        let mut procs = spawn_clients(scope, &group, &clients, [0usize, 1, 3], base);
        relay.wait_for_log("attempt 0 opened over 4 clients", FORM_TIMEOUT);
        leaver.kill();
        relay.wait_for_log("established", FORM_TIMEOUT);
        let log = relay.log();
        assert!(
            log.contains("client client2 left during the setup"),
            "{log}"
        );
        assert!(
            log.contains("a new attempt starts over the 3 participants that remain"),
            "{log}"
        );
        assert!(log.contains("established in attempt 1: 3 slots"), "{log}");
        assert!(log.contains("without clients client2"), "{log}");
        for c in &mut procs {
            c.wait_for_log("sending in interval", FORM_TIMEOUT);
        }
        let data: Vec<u8> = (0..30_000u32).map(|i| (i * 3 + i / 7) as u8).collect();
        echo_through(base, &data);
    });
}

/// The relay killed in the middle of the setup and started again: it opens the next
/// attempt (never one it opened before), every node links again and follows it with fresh
/// keys, and the group carries bytes.
#[test]
fn a_relay_killed_mid_setup_and_started_again_sets_up_the_group() {
    within(LIMIT, |scope| {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        let (group, relay_key, trustees, clients) = signed_group(home, 2, 3, &[]);
        let relay_args = [
            "relay",
            &s(&group),
            "--key",
            &s(&relay_key),
            "--exit",
            "echo",
        ];
        let mut relay = scope.spawn("relay", &relay_args);
        let mut nodes = spawn_trustees(scope, &group, &trustees);
        // client2 links first and is stopped: attempt 0 waits for its submission, so the
        // relay is killed in the middle of it.
        let mut slow = scope.spawn(
            "client2",
            &["client", &s(&group), &s(&clients[2]), "-p", "0"],
        );
        slow.wait_for_log("waiting for the relay to open the setup", FORM_TIMEOUT);
        slow.signal(libc::SIGSTOP);
        let base = reserve_ports(3);
        let mut procs = spawn_clients(scope, &group, &clients, [0usize, 1], base);
        relay.wait_for_log("attempt 0 opened over 3 clients", FORM_TIMEOUT);
        procs[0].wait_for_log("every trustee's key is in", FORM_TIMEOUT);
        relay.kill();
        for n in &mut nodes {
            n.wait_for_log("linking again", FORM_TIMEOUT);
        }
        let mut relay = scope.spawn("relay again", &relay_args);
        slow.signal(libc::SIGCONT);
        relay.wait_for_log("established", FORM_TIMEOUT);
        let log = relay.log();
        assert!(
            log.contains("going on with the setup this relay began before it restarted"),
            "{log}"
        );
        assert!(log.contains("attempt 1 opened over 3 clients"), "{log}");
        assert!(log.contains("established in attempt 1: 3 slots"), "{log}");
        for n in nodes.iter_mut().chain(procs.iter_mut()) {
            n.wait_for_log("established in attempt 1", FORM_TIMEOUT);
        }
        slow.wait_for_log("established in attempt 1", FORM_TIMEOUT);
        // The relay keeps no record of a setup once its epoch is established (and kept: it
        // removes the record after it saved the epoch, before its DC-net listens).
        relay.wait_for_log("relay listening on", FORM_TIMEOUT);
        assert!(!home.join("relay").join("relay.key.setup").exists());
        for c in &mut procs {
            c.wait_for_log("sending in interval", FORM_TIMEOUT);
        }
        let data: Vec<u8> = (0..30_000u32).map(|i| (i * 5 + i / 11) as u8).collect();
        echo_through(base, &data);
    });
}

/// An honest trustee whose process is started afresh after a conviction (it never saw the
/// conviction) is shown the attempt that convicted, convicts the cheater itself and follows
/// the next attempt: the epoch runs with the two honest trustees.
#[cfg(feature = "disruptor")]
#[test]
fn a_trustee_restarted_after_a_cheating_trustee_is_convicted_follows_the_restart() {
    within(LIMIT, |scope| {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        let (group, relay_key, trustees, clients) = signed_group(home, 3, 3, &[]);
        let mut relay = spawn_relay(scope, "relay", &group, &relay_key, &[]);
        let trustee_args = |j: usize| -> Vec<String> {
            let mut args = vec!["trustee".to_string(), s(&group), s(&trustees[j])];
            if j == 1 {
                args.extend(["--cheat".to_string(), "swap".to_string()]);
            }
            args
        };
        let mut nodes = Vec::new();
        for j in 0..3 {
            let args = trustee_args(j);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            nodes.push(scope.spawn(&format!("trustee{j}"), &args));
        }
        // client2 is stopped once linked: attempt 0 waits for its submission until trustee2
        // is stopped too (its part of attempt 0 done), so attempt 1 then waits for trustee2.
        let mut slow = scope.spawn(
            "client2",
            &["client", &s(&group), &s(&clients[2]), "-p", "0"],
        );
        slow.wait_for_log("waiting for the relay to open the setup", FORM_TIMEOUT);
        slow.signal(libc::SIGSTOP);
        let base = reserve_ports(3);
        let mut procs = spawn_clients(scope, &group, &clients, [0usize, 1], base);
        nodes[2].wait_for_log("every trustee's key is in", FORM_TIMEOUT);
        nodes[2].signal(libc::SIGSTOP);
        slow.signal(libc::SIGCONT);
        relay.wait_for_log("attempt 1 opened", FORM_TIMEOUT);
        assert!(relay.log().contains("CONVICTED trustee trustee1"));
        // trustee2 never saw the conviction: its process ends and a fresh one starts.
        nodes[2].kill();
        let args = trustee_args(2);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut fresh = scope.spawn("trustee2 afresh", &args);
        relay.wait_for_log("established", FORM_TIMEOUT);
        let log = relay.log();
        assert!(log.contains("established in attempt 2: 3 slots"), "{log}");
        assert!(log.contains("without convicted trustees trustee1"), "{log}");
        fresh.wait_for_log("every proof and signature checked", FORM_TIMEOUT);
        assert!(
            fresh.log().contains("CONVICTED trustee trustee1"),
            "{}",
            fresh.log()
        );
        for c in &mut procs {
            c.wait_for_log("sending in interval", FORM_TIMEOUT);
        }
        let data: Vec<u8> = (0..30_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        echo_through(base, &data);
    });
}

/// A trustee that goes silent in a group whose policy allows going on without one
/// (`--min-trustees 2` of 3) is named by the relay once its turn's bound passes, left out
/// on the relay's word, and the setup goes on with the two others; the group carries
/// bytes. The relay's bound is set to 3 s (`--trustee-wait-secs`; 60 s by default).
#[test]
fn a_silent_trustee_is_named_and_left_out_when_the_group_allows_it() {
    within(LIMIT, |scope| {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        let (group, relay_key, trustees, clients) =
            signed_group(home, 3, 3, &["--min-trustees", "2"]);
        let mut relay = spawn_relay(
            scope,
            "relay",
            &group,
            &relay_key,
            &["--trustee-wait-secs", "3"],
        );
        let mut nodes = spawn_trustees(scope, &group, &trustees);
        // trustee2 links and then goes silent.
        nodes[2].wait_for_log("waiting for the relay to open the setup", FORM_TIMEOUT);
        nodes[2].signal(libc::SIGSTOP);
        let base = reserve_ports(3);
        let mut procs = spawn_clients(scope, &group, &clients, 0..clients.len(), base);
        relay.wait_for_log(
            "attempt 0 opened over 3 clients and 3 trustees",
            FORM_TIMEOUT,
        );
        // The bound on a trustee's turn: 3 s and 50 ms per client.
        relay.wait_for_log("established", FORM_TIMEOUT);
        let log = relay.log();
        assert!(
            log.contains("trustee trustee2 (SHA256:")
                && log.contains("did not send the key within 3 s: SILENT, on the relay's word"),
            "{log}"
        );
        assert!(
            log.contains("attempt 1 opened over 3 clients and 2 trustees"),
            "{log}"
        );
        assert!(
            log.contains("established in attempt 1: 3 slots, 2 trustees"),
            "{log}"
        );
        assert!(
            log.contains("without trustees trustee2 left out as silent or absent"),
            "{log}"
        );
        for c in &mut procs {
            c.wait_for_log("sending in interval", FORM_TIMEOUT);
            assert!(
                c.log().contains("attempt opened without trustees trustee2"),
                "{}",
                c.log()
            );
        }
        let data: Vec<u8> = (0..30_000u32).map(|i| (i * 3 + i / 17) as u8).collect();
        echo_through(base + 2, &data);
        nodes[2].kill();
    });
}

/// A trustee stopped after the epoch was established and before it kept it (its process
/// killed, its epoch file gone) takes the epoch back from the relay on a rejoin link, with
/// no new setup: the relay sends the epoch's records and pseudonym list, the trustee takes
/// them only with its own signature on them, keeps the very epoch it had (same session id,
/// same list) and the group carries bytes again; the relay opened one attempt of one setup.
#[test]
fn a_trustee_that_lost_its_epoch_takes_it_back_from_the_relay_with_no_new_setup() {
    within(LIMIT, |scope| {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        let (group, relay_key, trustees, clients) = signed_group(home, 2, 3, &[]);
        let mut relay = spawn_relay(scope, "relay", &group, &relay_key, &[]);
        let mut nodes = spawn_trustees(scope, &group, &trustees);
        let base = reserve_ports(3);
        let mut procs = spawn_clients(scope, &group, &clients, 0..3, base);
        relay.wait_for_log("established", FORM_TIMEOUT);
        for c in &mut procs {
            c.wait_for_log("sending in interval", FORM_TIMEOUT);
        }
        let data: Vec<u8> = (0..30_000u32).map(|i| (i * 3 + i / 7) as u8).collect();
        echo_through(base, &data);

        // Trustee 1 gone, and with it what it kept of the epoch.
        let kept_file = PathBuf::from(format!("{}.epoch", trustees[1].display()));
        nodes[1].wait_for_log("every proof and signature checked", FORM_TIMEOUT);
        let kept: serde_json::Value =
            serde_json::from_slice(&fs::read(&kept_file).unwrap()).unwrap();
        nodes[1].kill();
        fs::remove_file(&kept_file).unwrap();

        let mut again = scope.spawn("trustee1 again", &["trustee", &s(&group), &s(&trustees[1])]);
        let log = again.wait_for_log("back from the relay", FORM_TIMEOUT);
        assert!(log.contains("no new setup"), "{log}");
        assert!(!log.contains("linking to relay"), "no setup link: {log}");
        let back: serde_json::Value =
            serde_json::from_slice(&fs::read(&kept_file).unwrap()).unwrap();
        assert_eq!(mode(&kept_file) & 0o777, 0o600);
        assert_eq!(back["session_id"], kept["session_id"], "the same epoch");
        assert_eq!(back["slots"], kept["slots"], "the same list");
        again.wait_for_log("starting (relay", FORM_TIMEOUT);
        for c in &mut procs {
            c.wait_for_log("sending in interval", FORM_TIMEOUT);
        }
        echo_through(base, &data);

        let log = relay.log();
        assert!(
            log.contains("rejoin: trustee trustee1 linked with no epoch kept"),
            "{log}"
        );
        assert_eq!(count(&log, "setup of epoch"), 1, "{log}");
        assert_eq!(count(&log, "opened over"), 1, "{log}");
        // At the first start, each trustee asked on a rejoin link first, and was told to
        // take part in the setup.
        assert_eq!(
            count(&log, "on a rejoin link while it is being set up"),
            2,
            "{log}"
        );

        // A relay started again serves the epoch from its own file, records included: trustee
        // 0, its epoch file gone too, takes the epoch back from it.
        relay.kill();
        let mut relay = spawn_relay(scope, "relay again", &group, &relay_key, &[]);
        relay.wait_for_log("relay listening on", FORM_TIMEOUT);
        let kept_file = PathBuf::from(format!("{}.epoch", trustees[0].display()));
        nodes[0].kill();
        fs::remove_file(&kept_file).unwrap();
        let mut again0 = scope.spawn("trustee0 again", &["trustee", &s(&group), &s(&trustees[0])]);
        again0.wait_for_log("back from the relay", FORM_TIMEOUT);
        again0.wait_for_log("starting (relay", FORM_TIMEOUT);
        let before = relay.log().len();
        relay.wait_until(FORM_TIMEOUT, "an interval with every client", |p| {
            p.log()[before..]
                .contains("started with 3 clients")
                .then_some(())
        });
        echo_through(base, &data);
        let log = relay.log();
        assert!(
            log.contains("rejoin: trustee trustee0 linked with no epoch kept"),
            "{log}"
        );
        assert_eq!(count(&log, "setup of epoch"), 0, "no new setup: {log}");
        assert!(relay.is_running(), "the relay stopped");
    });
}
