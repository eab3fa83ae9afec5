//! The embedded shell under QEMU: the `netcheck`, `trustee` and `client` firmware on the
//! emulated `mps2-an385` board.
//!
//! These tests build nothing: `scripts/test` builds the firmware first (`cd embedded && cargo
//! build-mps2-an385`), and a missing ELF fails the test with that instruction. Without
//! `qemu-system-arm` (installed by `scripts/setup`) the tests are skipped with a message.
//!
//! Each boot writes a fresh seed and a provisioning blob, runs QEMU with its console in a
//! file (printed if the test fails), and is killed by pid if it outlives its deadline.
//!
//! The role firmware is checked against a stand-in relay: a listener on 127.0.0.1 that
//! answers the Noise handshake with the core's link layer, reads the node's Hello, and then
//! drops the connection, as a relay restart would; the node must dial again, later each
//! time, and no sooner than a relay's `Goodbye{BackOff}` asks. `setupcheck` runs a whole
//! dealer-free setup of 64 members on the board, `disputecheck` a dispute's signature check
//! and proof. Every trustee and client build, emulated or real, is held to its budget. Then against the real thing: `dissent qemu` boots an emulated trustee and client
//! in a group with a hosted relay, trustee and clients, and bytes go through both kinds of
//! client while the relay's metrics show every exchange decoding; and both trustees, the
//! hosted and the emulated one, restart during a transfer through the emulated client,
//! which must get every byte back.

// These tests drive processes with Linux facilities (signals, `prctl`, network
// namespaces); on other platforms the binary builds and runs no test.
#![cfg(target_os = "linux")]

use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Where `scripts/test` builds the firmware.
const FIRMWARE_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../embedded/target/thumbv7m-none-eabi/release"
);
/// Where `cargo build-mps2-an385-relay-name` puts the client built with `relay-name`.
const RELAY_NAME_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../embedded/target/relay-name/thumbv7m-none-eabi/release"
);
/// Where the board reads the provisioning blob and the seed (`embedded/memory/mps2-an385.x`).
const PROVISION_ADDR: u32 = 0x003F_0000;
const SEED_ADDR: u32 = 0x003F_F000;
/// The port netcheck listens on inside the guest.
const GUEST_PORT: u16 = 7001;
/// Bytes netcheck streams through the host's echo server.
const DEVICE_BYTES: u32 = 24 * 1024;
/// Bytes the host sends through the forwarded port.
const HOST_BYTES: usize = 16 * 1024;
/// Longest a boot may take from start to exit.
const BOOT_LIMIT: Duration = Duration::from_secs(90);

/// Whether QEMU is there; if not, says why the test is skipped. `scripts/test` sets
/// `DISSENT_REQUIRE_QEMU`, so there a missing QEMU fails the test instead.
fn have_qemu() -> bool {
    match Command::new("qemu-system-arm").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        Ok(_) | Err(_) => {
            assert!(
                std::env::var_os("DISSENT_REQUIRE_QEMU").is_none(),
                "qemu-system-arm is not installed, and DISSENT_REQUIRE_QEMU is set"
            );
            eprintln!("skipped: qemu-system-arm is not installed (scripts/setup installs it)");
            false
        }
    }
}

fn firmware(app: &str) -> PathBuf {
    let elf = Path::new(FIRMWARE_DIR).join(app);
    assert!(
        elf.is_file(),
        "{} is missing: build the firmware first with `cd embedded && cargo build-mps2-an385` \
         (scripts/test does)",
        elf.display()
    );
    elf
}

/// The emulated client built with `relay-name` (off in every board's own build).
fn relay_name_client() -> PathBuf {
    let elf = Path::new(RELAY_NAME_DIR).join("client");
    assert!(
        elf.is_file(),
        "{} is missing: build it first with `cd embedded && cargo build-mps2-an385-relay-name` \
         (scripts/test does)",
        elf.display()
    );
    elf
}

/// A netcheck provisioning blob (layout in `embedded/src/provision.rs`, payload in
/// `embedded/src/bin/netcheck.rs`).
fn netcheck_blob(app: &[u8; 4], echo_port: u16, listen_port: u16, bytes: u32) -> Vec<u8> {
    let mut payload = vec![10, 0, 2, 2];
    payload.extend_from_slice(&echo_port.to_le_bytes());
    payload.extend_from_slice(&listen_port.to_le_bytes());
    payload.extend_from_slice(&bytes.to_le_bytes());
    let mut blob = b"DSPV".to_vec();
    blob.extend_from_slice(app);
    blob.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    blob.extend_from_slice(&payload);
    blob
}

/// A QEMU process, killed by pid when dropped; prints its console if the test is failing.
struct Qemu {
    child: Child,
    console: PathBuf,
    status: Option<ExitStatus>,
}

impl Qemu {
    /// Boots `elf` with a fresh seed, `provision` (if any) and `hostfwd` rules.
    fn boot(dir: &Path, elf: &Path, provision: Option<&[u8]>, hostfwd: &[String]) -> Qemu {
        Self::boot_with(dir, elf, true, provision, hostfwd, &[])
    }

    /// Boots `elf` with a fresh seed and no network use, its clock counting instructions
    /// instead of following the host's: one nanosecond of the board's time per instruction
    /// (`-icount shift=0`, idle time skipped), so its timings and its watchdog do not
    /// depend on how loaded the host is.
    fn boot_counted(dir: &Path, elf: &Path) -> Qemu {
        Self::boot_with(dir, elf, true, None, &[], &["-icount", "shift=0,sleep=off"])
    }

    /// Boots `elf`, with a fresh seed if `seed`, and QEMU's `extra` arguments.
    fn boot_with(
        dir: &Path,
        elf: &Path,
        seed: bool,
        provision: Option<&[u8]>,
        hostfwd: &[String],
        extra: &[&str],
    ) -> Qemu {
        let mut nic = "user,model=lan9118".to_string();
        for rule in hostfwd {
            nic.push_str(",hostfwd=");
            nic.push_str(rule);
        }
        let console = dir.join("console.txt");
        let out = File::create(&console).expect("create console file");
        let err = out.try_clone().expect("clone console file");
        let mut cmd = Command::new("qemu-system-arm");
        cmd.args(["-machine", "mps2-an385", "-cpu", "cortex-m3"])
            .args(["-display", "none", "-monitor", "none", "-serial", "null"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .args(["-nic", &nic])
            .args(extra)
            .arg("-kernel")
            .arg(elf);
        if seed {
            let mut blob = b"SEED".to_vec();
            blob.extend_from_slice(&rand::random::<[u8; 32]>());
            let file = dir.join("seed.bin");
            fs::write(&file, blob).expect("write seed");
            cmd.arg("-device").arg(format!(
                "loader,file={},addr={SEED_ADDR:#x}",
                file.display()
            ));
        }
        if let Some(blob) = provision {
            let file = dir.join("provision.bin");
            fs::write(&file, blob).expect("write provisioning blob");
            cmd.arg("-device").arg(format!(
                "loader,file={},addr={PROVISION_ADDR:#x}",
                file.display()
            ));
        }
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl is async-signal-safe; QEMU goes if this test process dies.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start qemu-system-arm");
        Qemu {
            child,
            console: console.to_path_buf(),
            status: None,
        }
    }

    fn console(&self) -> String {
        fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// The exit status, if QEMU has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("poll qemu");
        }
        self.status
    }

    /// Waits for QEMU to exit; fails the test after `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "qemu still running after {limit:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.exited().is_none() {
            // Child::kill signals this child's pid only.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "--- qemu console ({}) ---\n{}--- end ---",
                self.console.display(),
                self.console()
            );
        }
    }
}

/// An echo server on 127.0.0.1 for one connection; reports when it accepted and what it saw.
struct Echo {
    port: u16,
    accepted: mpsc::Receiver<()>,
    done: JoinHandle<io::Result<usize>>,
}

impl Echo {
    fn start(limit: Duration) -> Echo {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind echo server");
        let port = listener.local_addr().expect("echo address").port();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let (accepted_tx, accepted) = mpsc::channel();
        let done = thread::spawn(move || {
            let deadline = Instant::now() + limit;
            let mut stream = loop {
                match listener.accept() {
                    Ok((stream, _)) => break stream,
                    Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => return Err(e),
                }
            };
            let _ = accepted_tx.send(());
            stream.set_nonblocking(false)?;
            stream.set_read_timeout(Some(limit))?;
            let mut buf = [0u8; 4096];
            let mut total = 0;
            loop {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    return Ok(total);
                }
                stream.write_all(&buf[..n])?;
                total += n;
            }
        });
        Echo {
            port,
            accepted,
            done,
        }
    }
}

#[test]
fn netcheck_moves_bytes_both_ways_and_exits_zero() {
    if !have_qemu() {
        return;
    }
    let elf = firmware("netcheck");
    let dir = tempfile::tempdir().expect("temp dir");
    let echo = Echo::start(BOOT_LIMIT);
    // QEMU forwards a port it is given.
    let host_port = reserve_port();
    let blob = netcheck_blob(b"NCHK", echo.port, GUEST_PORT, DEVICE_BYTES);
    let forward = format!("tcp:127.0.0.1:{host_port}-:{GUEST_PORT}");
    let mut qemu = Qemu::boot(dir.path(), &elf, Some(&blob), &[forward]);

    // netcheck listens before it dials the echo server, so once the echo server has its
    // connection the forwarded port leads to a listening socket.
    let deadline = Instant::now() + BOOT_LIMIT;
    loop {
        match echo.accepted.recv_timeout(Duration::from_millis(50)) {
            Ok(()) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = qemu.exited() {
                    panic!("qemu exited ({status}) before netcheck reached the echo server");
                }
                assert!(
                    Instant::now() < deadline,
                    "netcheck never reached the echo server"
                );
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("echo server failed: {:?}", echo.done.join())
            }
        }
    }

    let sent = pattern(HOST_BYTES, rand::random());
    let mut stream = TcpStream::connect_timeout(
        &(Ipv4Addr::LOCALHOST, host_port).into(),
        Duration::from_secs(10),
    )
    .expect("connect to the forwarded port");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // Write from a second thread while reading here, so neither side's window stalls.
    let mut writer = stream.try_clone().expect("clone stream");
    let to_send = sent.clone();
    let writing = thread::spawn(move || -> io::Result<()> {
        writer.write_all(&to_send)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut got = Vec::with_capacity(HOST_BYTES);
    stream
        .read_to_end(&mut got)
        .expect("read the echo from the device");
    writing
        .join()
        .expect("writer thread")
        .expect("send to the device");
    assert_eq!(got.len(), sent.len(), "bytes echoed by the device");
    assert!(got == sent, "the device echoed different bytes");

    let status = qemu.wait(BOOT_LIMIT);
    let echoed = echo.done.join().expect("echo thread").expect("echo server");
    assert_eq!(status.code(), Some(0), "netcheck exit status");
    assert_eq!(
        echoed, DEVICE_BYTES as usize,
        "bytes the device streamed through the echo server"
    );
    let console = qemu.console();
    assert!(console.contains("netcheck: ok"), "console:\n{console}");
    if let Some(line) = console.lines().find(|l| l.contains("stack peak")) {
        eprintln!("{line}");
    }
}

#[test]
fn netcheck_refuses_a_blob_for_another_app_and_a_boot_without_seed() {
    if !have_qemu() {
        return;
    }
    let elf = firmware("netcheck");
    let dir = tempfile::tempdir().expect("temp dir");

    let wrong_app = netcheck_blob(b"TRST", 9, GUEST_PORT, 1);
    let mut qemu = Qemu::boot(dir.path(), &elf, Some(&wrong_app), &[]);
    assert_eq!(
        qemu.wait(BOOT_LIMIT).code(),
        Some(1),
        "exit status for a TRST blob"
    );
    let console = qemu.console();
    assert!(
        console.contains("for app TRST, this firmware is NCHK"),
        "console:\n{console}"
    );
    drop(qemu);

    // No seed: the board must refuse to start rather than run without fresh entropy.
    let blob = netcheck_blob(b"NCHK", 9, GUEST_PORT, 1);
    let mut qemu = Qemu::boot_with(dir.path(), &elf, false, Some(&blob), &[], &[]);
    assert_eq!(
        qemu.wait(BOOT_LIMIT).code(),
        Some(3),
        "exit status without a seed"
    );
    let console = qemu.console();
    assert!(console.contains("no fresh seed"), "console:\n{console}");
}

#[test]
fn a_stuck_or_broken_board_says_why_and_stops() {
    if !have_qemu() {
        return;
    }
    let elf = firmware("faultcheck");
    // (mode, exit status, console text): a panic, a stack overflow caught by the guard, and
    // an executor that never yields again, caught by the watchdog.
    for (mode, status, says) in [
        (1u8, 101, "panic"),
        (2, 103, "stack overflow"),
        (3, 104, "watchdog: no progress"),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut blob = b"DSPVFCHK".to_vec();
        blob.extend_from_slice(&1u32.to_le_bytes());
        blob.push(mode);
        let mut qemu = Qemu::boot(dir.path(), &elf, Some(&blob), &[]);
        assert_eq!(
            qemu.wait(BOOT_LIMIT).code(),
            Some(status),
            "mode {mode}: exit status"
        );
        let console = qemu.console();
        assert!(console.contains(says), "mode {mode}: console:\n{console}");
    }
}

#[test]
fn the_devices_core_sets_up_an_epoch_of_64_members() {
    if !have_qemu() {
        return;
    }
    // A relay, two trustees and 64 clients, the core's setup machines all on the board;
    // trustee 1 is timed as a device trustee (embedded/README.md, "The setup on the device").
    // Its clock counts instructions: a millisecond it prints is a million instructions, and
    // a loaded host cannot make a long step starve the watchdog.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut qemu = Qemu::boot_counted(dir.path(), &firmware("setupcheck"));
    let status = qemu.wait(Duration::from_secs(300));
    let console = qemu.console();
    assert_eq!(status.code(), Some(0), "console:\n{console}");
    assert!(
        console.contains("setupcheck: 64 members, 2 trustees")
            && console.contains("setupcheck: ok"),
        "console:\n{console}"
    );
    for line in console.lines().filter(|l| l.starts_with("setupcheck:")) {
        eprintln!("{line}");
    }
}

// ---------------------------------------------------------------------------------------
// Role firmware against a stand-in relay

use dissent_core::crypto::{pad_public_key, public_key};
use dissent_core::link::{RecordReader, Responder, Transport, HEADER_LEN, REQUEST_LEN};
use dissent_core::provision::{Node, PeerKeys, Pseudonym, Relay};
use dissent_core::wire::{self, GoodbyeReason, Message, NodeRole};

/// Group and session of the test group.
const GROUP: [u8; 16] = [0x47; 16];
const SESSION: [u8; 16] = [0x53; 16];
/// Clients and trustees in the test group.
const CLIENTS: u16 = 3;
const TRUSTEES: u16 = 2;
/// Dials the stand-in relay takes before the test looks at the gaps between them.
const DIALS: usize = 5;

/// A fixed test secret for node `i` of kind `tag` (test keys only).
fn secret(tag: u8, i: u16) -> [u8; 32] {
    dissent_core::testkit::secret(tag, usize::from(i))
}

/// The identity public key of an identity secret.
fn identity_public(secret: &[u8; 32]) -> [u8; 32] {
    dissent_core::identity::IdentityKey::from_bytes(secret).public()
}

const RELAY: u8 = 1;
const CLIENT_LINK: u8 = 2;
const CLIENT_SESSION: u8 = 3;
const TRUSTEE_LINK: u8 = 4;
const TRUSTEE_SESSION: u8 = 5;
const IDENTITY: u8 = 6;
const PSEUDONYM: u8 = 7;
const RELAY_DH: u8 = 8;

/// The link secret of node `index` of `role`.
fn link_secret(role: NodeRole, index: u16) -> [u8; 32] {
    match role {
        NodeRole::Client => secret(CLIENT_LINK, index),
        NodeRole::Trustee => secret(TRUSTEE_LINK, index),
    }
}

/// The provisioning blob of node `index` of `role`, for a relay on the host's `relay_port`.
fn node_blob(role: NodeRole, index: u16, relay_port: u16) -> Vec<u8> {
    let peers: Vec<[u8; 32]> = match role {
        NodeRole::Client => (0..TRUSTEES)
            .map(|j| pad_public_key(&secret(TRUSTEE_SESSION, j)))
            .collect(),
        NodeRole::Trustee => (0..CLIENTS)
            .map(|i| pad_public_key(&secret(CLIENT_SESSION, i)))
            .collect(),
    };
    // Then every slot's pseudonym public key, which blame grounds are checked under.
    let slots: Vec<[u8; 32]> = (0..CLIENTS)
        .map(|i| pad_public_key(&secret(PSEUDONYM, i)))
        .collect();
    // Then the peers' identity public keys, which a dispute's request is checked under.
    let ids: Vec<[u8; 32]> = match role {
        NodeRole::Client => (0..TRUSTEES)
            .map(|j| identity_public(&secret(IDENTITY, j + CLIENTS)))
            .collect(),
        NodeRole::Trustee => (0..CLIENTS)
            .map(|i| identity_public(&secret(IDENTITY, i)))
            .collect(),
    };
    let flat = [peers.concat(), slots.concat(), ids.concat()].concat();
    let client = role == NodeRole::Client;
    let pseudonym = [
        secret(PSEUDONYM, index),
        pad_public_key(&secret(RELAY_DH, 0)),
    ]
    .concat();
    Node {
        role,
        index,
        group_id: GROUP,
        session_id: SESSION,
        link_secret: link_secret(role, index),
        session_secret: match role {
            NodeRole::Client => secret(CLIENT_SESSION, index),
            NodeRole::Trustee => secret(TRUSTEE_SESSION, index),
        },
        identity_secret: secret(IDENTITY, index + u16::from(!client) * CLIENTS),
        relay_key: public_key(&secret(RELAY, 0)),
        // The host's 127.0.0.1 as QEMU user networking shows it to the guest.
        relay: Relay::Ipv4([10, 0, 2, 2]),
        relay_port,
        clients: CLIENTS,
        trustees: TRUSTEES,
        slots: CLIENTS,
        slot: if client { (index + 1) % CLIENTS } else { 0 },
        cell_len: 128,
        max_cell_len: 1024,
        peer_keys: PeerKeys::from_flat(&flat).expect("whole keys"),
        local_port: if client { GUEST_PORT } else { 0 },
        min_clients: 1,
        min_anonymity: 1,
        log_window_millis: 600_000,
        log_window_bytes: 32 << 20,
        ipv4: None,
        wifi: None,
        pseudonym: client.then(|| Pseudonym::from_bytes(&pseudonym).expect("64 bytes")),
    }
    .to_blob()
}

/// Accepts the next connection on `listener`, failing if QEMU exits or `limit` passes.
fn accept_within(listener: &TcpListener, qemu: &mut Qemu, limit: Duration) -> TcpStream {
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking stream");
                return stream;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Some(status) = qemu.exited() {
                    panic!("qemu exited ({status}) instead of dialing the relay");
                }
                assert!(Instant::now() < deadline, "no dial within {limit:?}");
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Plays the relay's side of the handshake with the core's link layer, checks that the
/// node authenticated with `expect_key`, and returns the first frame body it sends.
fn relay_handshake(stream: &mut TcpStream, expect_key: &[u8; 32]) -> Vec<u8> {
    relay_handshake_as(stream, expect_key, &secret(RELAY, 0), &GROUP, &SESSION)
}

/// [`relay_handshake`] as the relay of another group: its link secret and the group's ids.
fn relay_handshake_as(
    stream: &mut TcpStream,
    expect_key: &[u8; 32],
    relay_secret: &[u8; 32],
    group: &[u8; 16],
    session: &[u8; 16],
) -> Vec<u8> {
    relay_link(stream, expect_key, relay_secret, group, session).0
}

/// [`relay_handshake_as`], keeping the link to send the node frames.
fn relay_link(
    stream: &mut TcpStream,
    expect_key: &[u8; 32],
    relay_secret: &[u8; 32],
    group: &[u8; 16],
    session: &[u8; 16],
) -> (Vec<u8>, Transport) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut request = [0u8; HEADER_LEN + REQUEST_LEN];
    stream
        .read_exact(&mut request)
        .expect("the node's handshake request");
    let mut records = RecordReader::responder();
    let (message, used) = records
        .split(&request)
        .expect("a 96-byte request")
        .expect("whole");
    assert_eq!(used, request.len());
    let mut responder =
        Responder::new(relay_secret, group, session, rand::random()).expect("responder");
    let key = responder
        .read_request(message)
        .expect("request encrypted to the relay's key");
    assert_eq!(&key, expect_key, "the node's link key");
    let mut response = [0u8; 64];
    let (n, mut transport) = responder.write_response(&mut response).expect("response");
    stream.write_all(&response[..n]).expect("send the response");
    let first = first_frame(stream, &mut transport, &mut records);
    (first, transport)
}

/// Sends `message` to the node as one frame in one record.
fn send_message(stream: &mut TcpStream, transport: &mut Transport, message: &Message<'_>) {
    let mut frame = vec![0u8; 256];
    let n = message.emit_frame(&mut frame).expect("a frame");
    let mut record = vec![0u8; n + 64];
    let m = transport.seal(&frame[..n], &mut record).expect("a record");
    stream.write_all(&record[..m]).expect("send the record");
}

/// Reads records until the plaintext holds a whole frame; returns its body.
fn first_frame(
    stream: &mut TcpStream,
    transport: &mut Transport,
    records: &mut RecordReader,
) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut plain = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some((body, _)) = wire::split_frame(&plain).expect("frame length") {
            return body.to_vec();
        }
        if let Some((message, used)) = records.split(&raw).expect("record length") {
            let mut out = vec![0u8; message.len()];
            let m = transport.open(message, &mut out).expect("record opens");
            plain.extend_from_slice(&out[..m]);
            raw.drain(..used);
            continue;
        }
        let n = stream.read(&mut buf).expect("read the node's records");
        assert!(n > 0, "the node closed before its Hello");
        raw.extend_from_slice(&buf[..n]);
    }
}

/// Checks a Hello from node `index` of `role`; returns its link nonce.
fn check_hello(body: &[u8], role: NodeRole, index: u16) -> [u8; 16] {
    let Message::Hello(wire::Hello {
        version,
        group_id,
        session_id,
        role: r,
        index: i,
        nonce,
        max_frame,
        capacity,
        resume,
        proofs,
        blame,
    }) = Message::parse(body).expect("a frame the relay can parse")
    else {
        panic!("the first frame is not a Hello");
    };
    assert_eq!(version, wire::PROTOCOL_VERSION);
    assert_eq!((group_id, session_id), (GROUP, SESSION));
    assert_eq!((r, i), (role, index));
    assert!(
        (wire::MIN_FRAME_LIMIT..=wire::MAX_FRAME_BODY).contains(&(max_frame as usize)),
        "max_frame {max_frame}"
    );
    assert_eq!(resume, None, "nothing to resume: no interval ran");
    match role {
        NodeRole::Client => {
            assert_eq!(proofs.len(), usize::from(TRUSTEES) * dissent_core::MAC_LEN);
            assert_ne!(nonce, [0; 16], "a client's link nonce is random");
            assert!(blame, "every client answers blame requests");
        }
        NodeRole::Trustee => {
            assert!(proofs.is_empty() && capacity == 0);
            assert!(blame, "a device trustee answers blame requests");
        }
    }
    nonce
}

#[test]
fn role_firmware_sends_its_hello_and_redials_a_restarted_relay_ever_later() {
    if !have_qemu() {
        return;
    }
    for (role, app) in [(NodeRole::Trustee, "trustee"), (NodeRole::Client, "client")] {
        let elf = firmware(app);
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind relay");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().unwrap().port();
        let index = 1;
        let mut qemu = Qemu::boot(dir.path(), &elf, Some(&node_blob(role, index, port)), &[]);
        let expect_key = public_key(&link_secret(role, index));
        let mut dialed = Vec::new();
        let mut nonces = Vec::new();
        for _ in 0..DIALS {
            let mut stream = accept_within(&listener, &mut qemu, BOOT_LIMIT);
            dialed.push(Instant::now());
            let hello = relay_handshake(&mut stream, &expect_key);
            nonces.push(check_hello(&hello, role, index));
            // The relay goes away.
            drop(stream);
        }
        if role == NodeRole::Client {
            nonces.sort_unstable();
            nonces.dedup();
            assert_eq!(nonces.len(), DIALS, "a fresh link nonce per link");
        }
        // Each link lasted well under the backoff's 10 s "stable" time, so each loss counts
        // as one more failure: the k-th redial waits 50·2^(k-1) ..= 100·2^(k-1) ms.
        let gaps: Vec<u64> = dialed
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis() as u64)
            .collect();
        eprintln!("{app}: gaps between dials {gaps:?} ms");
        for (k, &gap) in gaps.iter().enumerate() {
            let floor = 50 << k;
            assert!(
                gap >= floor,
                "{app}: redial {} after {gap} ms, before {floor} ms: {gaps:?}",
                k + 1
            );
            assert!(
                gap <= 2 * floor + 3_000,
                "{app}: redial {} after {gap} ms: {gaps:?}",
                k + 1
            );
        }
        assert!(
            gaps[gaps.len() - 1] > gaps[0] + 200,
            "{app}: gaps do not grow: {gaps:?}"
        );
        let console = qemu.console();
        assert_eq!(
            console.matches("link up").count(),
            DIALS,
            "console:\n{console}"
        );
        assert!(
            console.matches("link lost").count() >= DIALS - 1,
            "console:\n{console}"
        );
        assert!(
            qemu.exited().is_none(),
            "{app} stopped: console:\n{console}"
        );
    }
}

#[test]
fn role_firmware_waits_as_long_as_the_relay_backs_it_off() {
    if !have_qemu() {
        return;
    }
    // Longer than any backoff delay of a first or second failure (at most 200 ms).
    const ASKED_MS: u32 = 3_000;
    for (role, app) in [(NodeRole::Trustee, "trustee"), (NodeRole::Client, "client")] {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind relay");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().unwrap().port();
        let index = 1;
        let mut qemu = Qemu::boot(
            dir.path(),
            &firmware(app),
            Some(&node_blob(role, index, port)),
            &[],
        );
        let expect_key = public_key(&link_secret(role, index));
        let mut stream = accept_within(&listener, &mut qemu, BOOT_LIMIT);
        let (hello, mut transport) = relay_link(
            &mut stream,
            &expect_key,
            &secret(RELAY, 0),
            &GROUP,
            &SESSION,
        );
        check_hello(&hello, role, index);
        // The relay backs the node off, as it does a member that stalled the group.
        let backed_off = Message::Goodbye {
            reason: GoodbyeReason::BackOff { millis: ASKED_MS },
        };
        send_message(&mut stream, &mut transport, &backed_off);
        let said = Instant::now();
        let mut again = accept_within(&listener, &mut qemu, BOOT_LIMIT);
        let waited = said.elapsed();
        relay_handshake(&mut again, &expect_key);
        let console = qemu.console();
        eprintln!("{app}: backed off for {ASKED_MS} ms, dialled again after {waited:?}");
        let line = console
            .lines()
            .find(|l| l.contains("link lost"))
            .unwrap_or_else(|| panic!("no lost link:\n{console}"));
        assert!(line.contains("backed off"), "{line}");
        let next: u64 = line
            .split("next dial in ")
            .nth(1)
            .and_then(|r| r.split(" ms").next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no next dial: {line}"));
        assert!(next >= u64::from(ASKED_MS), "{line}");
        assert!(
            waited >= Duration::from_millis(u64::from(ASKED_MS)),
            "{app} dialled again after {waited:?}, before the {ASKED_MS} ms it was asked to wait"
        );
        assert!(qemu.exited().is_none(), "{app} stopped:\n{console}");
    }
}

/// The trustee's budget on every board: flash, and RAM for statics, the stack guard and
/// the stack (for groups of 64 clients, which the statics are sized for).
const TRUSTEE_FLASH: u64 = 128 * 1024;
const TRUSTEE_RAM: u64 = 64 * 1024;
/// Bytes of the stack guard below the stack (`embedded/src/guard.rs`).
const STACK_GUARD: u64 = 1024;
/// What a Wi-Fi board's radio may take on top of the budget (the Pico 2 W's CYW43439,
/// embedded/README.md, "Size"): its firmware blob, and its driver.
///
/// The blob (section `.radio_firmware`: the CYW43439's firmware, its country table and
/// board configuration, 232,808 B today) runs on the radio, not the processor; it is checked
/// on its own. The driver (cyw43 and cyw43-pio, loading the blob, joining a network, and
/// the driver's state: 12.4 KiB of packet buffers in RAM and, as their initial image in
/// `.data`, in flash) was measured as the Pico 2 W trustee's difference from the
/// NUCLEO-F767ZI's, both built with DHCP: 35,132 B of flash and 13,504 B of RAM.
const RADIO_FIRMWARE: u64 = 228 * 1024;
const RADIO_DRIVER_FLASH: u64 = 40 * 1024;
const RADIO_DRIVER_RAM: u64 = 16 * 1024;
/// The trustee builds of every board: (board, ELF under `embedded/target`, build command,
/// flash and RAM allowed, radio firmware allowed).
const TRUSTEE_BUILDS: [(&str, &str, &str, u64, u64, u64); 3] = [
    (
        "mps2-an385",
        "thumbv7m-none-eabi/release/trustee",
        "cargo build-mps2-an385",
        TRUSTEE_FLASH,
        TRUSTEE_RAM,
        0,
    ),
    (
        "nucleo-f767zi",
        "thumbv7em-none-eabihf/release/trustee",
        "cargo build-nucleo-f767zi",
        TRUSTEE_FLASH,
        TRUSTEE_RAM,
        0,
    ),
    (
        "pico2-w",
        "thumbv8m.main-none-eabihf/release/trustee",
        "cargo build-pico2-w",
        TRUSTEE_FLASH + RADIO_DRIVER_FLASH,
        TRUSTEE_RAM + RADIO_DRIVER_RAM,
        RADIO_FIRMWARE,
    ),
];

/// Flash (vector table, the RP2350's boot block, code, read-only data and the `.data`
/// image; not a radio's firmware in `.radio_firmware`) and static RAM (`.data`, `.bss`,
/// `.uninit`) of a firmware ELF.
fn flash_and_ram(elf: &Path) -> (u64, u64, u64) {
    use object::{Object, ObjectSection};
    let data = fs::read(elf).unwrap_or_else(|e| panic!("{}: {e}", elf.display()));
    let file = object::File::parse(&*data).expect("an ELF file");
    let size = |name: &str| file.section_by_name(name).map_or(0, |s| s.size());
    let flash = size(".vector_table")
        + size(".start_block")
        + size(".text")
        + size(".rodata")
        + size(".data");
    let ram = size(".data") + size(".bss") + size(".uninit");
    (flash, ram, size(".radio_firmware"))
}

#[test]
fn trustee_builds_fit_their_budget() {
    if !have_qemu() {
        return;
    }
    // The stack peak, measured on the emulated board once the link is up (building the
    // trustee and the Noise handshake are the deepest; serving exchanges stays below).
    let peak = stack_peak_at_link_up(NodeRole::Trustee, "trustee");
    let over = trustee_budgets_exceeded(peak);
    assert!(
        over.is_empty(),
        "trustee builds over their budget: {over:?}"
    );
}

/// Every client build within its budget, with the emulated client's stack peak once its
/// link is up (the blame test checks them again with the peak after a blame round and a
/// transfer).
#[test]
fn client_builds_fit_their_budget() {
    if !have_qemu() {
        return;
    }
    let peak = stack_peak_at_link_up(NodeRole::Client, "client");
    let over = client_budgets_exceeded(peak);
    assert!(over.is_empty(), "client builds over their budget: {over:?}");
}

/// Boots the emulated `app` as node 1 of `role` against a stand-in relay and returns the
/// stack peak its console gives once its link is up.
fn stack_peak_at_link_up(role: NodeRole, app: &str) -> u64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind relay");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let port = listener.local_addr().unwrap().port();
    let blob = node_blob(role, 1, port);
    let mut qemu = Qemu::boot(dir.path(), &firmware(app), Some(&blob), &[]);
    let mut stream = accept_within(&listener, &mut qemu, BOOT_LIMIT);
    relay_handshake(&mut stream, &public_key(&link_secret(role, 1)));
    let deadline = Instant::now() + BOOT_LIMIT;
    loop {
        let console = qemu.console();
        let found = console
            .lines()
            .find(|l| l.contains("link up"))
            .and_then(|l| l.split("stack peak ").nth(1))
            .and_then(|p| p.trim_end_matches(" B").parse().ok());
        if let Some(peak) = found {
            return peak;
        }
        assert!(Instant::now() < deadline, "no stack peak:\n{console}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Checks every trustee build against its budget with the stack peak `peak` (measured on
/// the emulated board; real boards run the same code), printing what is left; returns the
/// builds over it.
fn trustee_budgets_exceeded(peak: u64) -> Vec<String> {
    budgets_exceeded("trustee", &TRUSTEE_BUILDS, peak)
}

/// A client's flash budget on every board, the Pico 2 W's radio driver on top (its
/// firmware blob checked on its own, as a trustee's): 160 KiB, well within every board's
/// flash, and a line that growth must cross on purpose (embedded/README.md, "Size"). Its
/// RAM budget is the board's own RAM (the `RAM` region of its memory map,
/// `embedded/memory/<board>.x`): statics, the stack guard and the stack peak within it.
const CLIENT_FLASH: u64 = 160 * 1024;
/// The client builds of every board: (board, ELF under `embedded/target`, build command,
/// flash allowed, radio firmware allowed).
const CLIENT_BUILDS: [(&str, &str, &str, u64, u64); 3] = [
    (
        "mps2-an385",
        "thumbv7m-none-eabi/release/client",
        "cargo build-mps2-an385",
        CLIENT_FLASH,
        0,
    ),
    (
        "nucleo-f767zi",
        "thumbv7em-none-eabihf/release/client",
        "cargo build-nucleo-f767zi",
        CLIENT_FLASH,
        0,
    ),
    (
        "pico2-w",
        "thumbv8m.main-none-eabihf/release/client",
        "cargo build-pico2-w",
        CLIENT_FLASH + RADIO_DRIVER_FLASH,
        RADIO_FIRMWARE,
    ),
];

/// Checks every client build against its budget with the stack peak `peak` (measured on
/// the emulated board), printing what is left; returns the builds over it.
fn client_budgets_exceeded(peak: u64) -> Vec<String> {
    let builds: Vec<_> = CLIENT_BUILDS
        .iter()
        .map(|&(board, path, build, flash, radio)| {
            (board, path, build, flash, board_ram(board), radio)
        })
        .collect();
    budgets_exceeded("client", &builds, peak)
}

/// Bytes of RAM the memory map of `board` gives (`embedded/memory/<board>.x`, its `RAM`
/// region's `LENGTH`: a number of bytes, or of `K` or `M`).
fn board_ram(board: &str) -> u64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../embedded/memory/{board}.x"));
    let map = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let length = map
        .lines()
        .find(|l| l.trim_start().starts_with("RAM ") || l.trim_start().starts_with("RAM:"))
        .and_then(|l| l.split("LENGTH").nth(1))
        .map(|l| l.trim_start_matches([' ', '=']).trim())
        .unwrap_or_else(|| panic!("{}: no RAM region", path.display()));
    let (digits, unit) = match length.strip_suffix('K') {
        Some(d) => (d, 1024),
        None => match length.strip_suffix('M') {
            Some(d) => (d, 1024 * 1024),
            None => (length, 1),
        },
    };
    let n = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse(),
    };
    n.unwrap_or_else(|e| panic!("{}: RAM LENGTH {length:?}: {e}", path.display())) * unit
}

/// The trustee's setup image builds (`trustee-setup`, README.md, "The setup on the
/// device"), each held to a trustee's budget on its own: (board, ELF under
/// `embedded/target`, build command, flash and RAM allowed, radio firmware allowed). The real
/// boards' are not bootable yet (their boot ROMs start the image at the start of flash, and
/// the image writes no flash), but they are held to it all the same, so that they fit when
/// they are.
const SETUP_BUILDS: [(&str, &str, &str, u64, u64, u64); 3] = [
    (
        "mps2-an385",
        "thumbv7m-none-eabi/release/trustee-setup",
        "cargo build-mps2-an385-setup",
        TRUSTEE_FLASH,
        TRUSTEE_RAM,
        0,
    ),
    (
        "nucleo-f767zi",
        "thumbv7em-none-eabihf/release/trustee-setup",
        "cargo build-nucleo-f767zi-setup",
        TRUSTEE_FLASH,
        TRUSTEE_RAM,
        0,
    ),
    (
        "pico2-w",
        "thumbv8m.main-none-eabihf/release/trustee-setup",
        "cargo build-pico2-w-setup",
        TRUSTEE_FLASH + RADIO_DRIVER_FLASH,
        TRUSTEE_RAM + RADIO_DRIVER_RAM,
        RADIO_FIRMWARE,
    ),
];

/// Checks each of `builds` (of the image `what`) against its budget with the stack peak
/// `peak`, printing what is left; returns the builds over it.
fn budgets_exceeded(
    what: &str,
    builds: &[(&str, &str, &str, u64, u64, u64)],
    peak: u64,
) -> Vec<String> {
    let root = Path::new(FIRMWARE_DIR).join("../..");
    let mut over = Vec::new();
    for &(board, path, build, flash_budget, ram_budget, radio_budget) in builds {
        let elf = root.join(path);
        assert!(
            elf.is_file(),
            "{} is missing: build it with `cd embedded && {build}` (scripts/test does)",
            elf.display()
        );
        let (flash, ram, radio) = flash_and_ram(&elf);
        // Real boards run the same code: their stack is taken as the emulated board's.
        let total = ram + STACK_GUARD + peak;
        eprintln!(
            "{what} on {board}: flash {flash} B ({} B left), RAM {ram} B static + {STACK_GUARD} B \
             guard + {peak} B stack = {total} B ({} B left)",
            flash_budget as i64 - flash as i64,
            ram_budget as i64 - total as i64
        );
        if radio_budget > 0 {
            eprintln!(
                "{what} on {board}: radio firmware {radio} B ({} B left)",
                radio_budget as i64 - radio as i64
            );
        }
        if flash > flash_budget || total > ram_budget || radio > radio_budget {
            over.push(format!(
                "{what} on {board}: flash {flash} B of {flash_budget}, RAM {total} B of \
                 {ram_budget}, radio firmware {radio} B of {radio_budget}"
            ));
        }
    }
    over
}

#[test]
fn a_device_blob_carries_the_groups_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("cfg");
    let cfg_s = cfg.display().to_string();
    let out = run_once(
        &[
            "config",
            "generate",
            "-c",
            "4",
            "-t",
            "2",
            "--relay",
            "127.0.0.1:9",
            "--min-anonymity",
            "3",
            "--log-window-secs",
            "90",
            "--log-window-bytes",
            "1048576",
            &cfg_s,
        ],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = key_file(&cfg, "trustee-0");
    let blob_file = dir.path().join("trustee-0.bin");
    let blob_s = blob_file.display().to_string();
    let out = run_once(
        &[
            "device",
            "provision",
            "--board",
            "nucleo-f767zi",
            "--relay",
            "192.0.2.1:7000",
            "--address",
            "192.0.2.20/24",
            "-o",
            &blob_s,
            &cfg_s,
            &key,
        ],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blob = fs::read(&blob_file).expect("the blob");
    let node = Node::parse(&blob, NodeRole::Trustee).expect("a trustee blob");
    // The device trustee holds the relay to the group's own window, not to the defaults.
    let policy = node.policy();
    assert_eq!(policy.min_anonymity, 3);
    assert_eq!(policy.log_window.time.as_micros(), 90_000_000);
    assert_eq!(policy.log_window.bytes, 1 << 20);
}

#[test]
fn a_wifi_board_is_provisioned_with_its_network() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("cfg");
    generate(&cfg, 3, 2, 9);
    let cfg_s = cfg.display().to_string();
    let key = key_file(&cfg, "client-1");
    let passphrase = dir.path().join("wifi.txt");
    fs::write(&passphrase, "correct horse battery\n").expect("passphrase file");
    let passphrase_s = passphrase.display().to_string();
    let blob_file = dir.path().join("client-1.bin");
    let blob_s = blob_file.display().to_string();
    let provision = |extra: &[&str]| {
        let mut args = vec!["device", "provision", "-o", &blob_s];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&cfg_s, &key]);
        run_once(&args, Duration::from_secs(60))
    };
    let out = provision(&[
        "--board",
        "pico2-w",
        "--relay",
        "192.0.2.1:7000",
        "--wifi-ssid",
        "home net",
        "--wifi-passphrase-file",
        &passphrase_s,
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("0x103f0000"), "{said}");
    assert!(!said.contains("horse"), "the passphrase is printed: {said}");
    assert_eq!(support::mode(&blob_file) & 0o777, 0o600);
    let blob = fs::read(&blob_file).expect("the blob");
    let node = Node::parse(&blob, NodeRole::Client).expect("a client blob");
    assert_eq!(node.relay, Relay::Ipv4([192, 0, 2, 1]));
    let wifi = node.wifi.expect("the Wi-Fi network");
    assert_eq!(
        (wifi.ssid, wifi.passphrase),
        ("home net", "correct horse battery")
    );

    // A Wi-Fi board needs its network; an Ethernet board takes none; a short passphrase is
    // refused before anything is written; so is a relay's name that cannot be looked up for
    // a board whose firmware dials addresses only.
    fs::remove_file(&blob_file).expect("remove the blob");
    for (args, says) in [
        (
            &[
                "--board",
                "pico2-w",
                "--relay",
                "relay.invalid:7000",
                "--wifi-ssid",
                "home",
                "--wifi-open",
            ][..],
            "cannot resolve the relay's host relay.invalid",
        ),
        (
            &["--board", "pico2-w", "--relay", "192.0.2.1:7000"][..],
            "--wifi-ssid",
        ),
        (
            &[
                "--board",
                "nucleo-f767zi",
                "--relay",
                "192.0.2.1:7000",
                "--wifi-ssid",
                "home",
                "--wifi-open",
            ][..],
            "has no Wi-Fi",
        ),
    ] {
        let out = provision(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
        assert!(!blob_file.exists(), "{args:?} wrote a blob");
    }
    fs::write(&passphrase, "short\n").expect("passphrase file");
    let out = provision(&[
        "--board",
        "pico2-w",
        "--relay",
        "192.0.2.1:7000",
        "--wifi-ssid",
        "home",
        "--wifi-passphrase-file",
        &passphrase_s,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("8 to 63"), "{err}");
    assert!(!blob_file.exists());

    // The NUCLEO-F767ZI's firmware takes no address by DHCP: its blob must give one.
    let out = provision(&["--board", "nucleo-f767zi", "--relay", "192.0.2.1:7000"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--address"), "{err}");
    let out = provision(&[
        "--board",
        "nucleo-f767zi",
        "--relay",
        "192.0.2.1:7000",
        "--address",
        "192.0.2.20/24",
        "--gateway",
        "192.0.2.1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blob = fs::read(&blob_file).expect("the blob");
    let node = Node::parse(&blob, NodeRole::Client).expect("a client blob");
    let ipv4 = node.ipv4.expect("the board's address");
    assert_eq!(
        (ipv4.address, ipv4.prefix_len, ipv4.gateway, ipv4.dns_server),
        ([192, 0, 2, 20], 24, [192, 0, 2, 1], [0; 4])
    );
    assert_eq!(node.wifi, None);

    // A relay on this machine is refused whatever the board: a board cannot reach it there.
    let out = provision(&["--board", "nucleo-f767zi", "--relay", "localhost:7000"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("this machine's own"),
        "{err}"
    );
}

/// An update of the node's blob that a reset cut after it committed (the new blob and its
/// trailer whole in the scratch area, the blob itself torn) is finished at the next boot,
/// before anything reads the blob (`embedded/src/blob_update.rs`, run by every image): the
/// firmware says so and serves with the new blob, whose link key the relay's handshake
/// checks.
#[test]
fn a_blob_update_cut_by_a_reset_is_finished_at_the_next_boot() {
    use sha2::{Digest, Sha256};
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind relay");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let port = listener.local_addr().unwrap().port();
    let blob = node_blob(NodeRole::Trustee, 1, port);
    // The scratch area (`SCRATCH` in embedded/memory/mps2-an385.x, 32 KiB): the new blob,
    // then the trailer in its last 256 bytes: "DSUP", the blob's length and its SHA-256.
    let mut scratch = vec![0xFFu8; 32 * 1024];
    scratch[..blob.len()].copy_from_slice(&blob);
    let trailer = scratch.len() - 256;
    scratch[trailer..trailer + 4].copy_from_slice(b"DSUP");
    scratch[trailer + 4..trailer + 8].copy_from_slice(&(blob.len() as u32).to_le_bytes());
    scratch[trailer + 8..trailer + 40].copy_from_slice(&Sha256::digest(&blob));
    let scratch_file = dir.path().join("scratch.bin");
    fs::write(&scratch_file, &scratch).expect("write scratch");
    // The blob as a reset during its rewrite leaves it: erased up to the cut, old bytes
    // (here: none of the new one's) after it. Booted as it is, it would not parse.
    let torn: Vec<u8> = blob
        .iter()
        .enumerate()
        .map(|(i, &b)| if i < blob.len() / 2 { 0xFF } else { !b })
        .collect();
    let loader = format!("loader,file={},addr=0x003E0000", scratch_file.display());
    let mut qemu = Qemu::boot_with(
        dir.path(),
        &firmware("trustee"),
        true,
        Some(&torn),
        &[],
        &["-device", &loader],
    );
    let mut stream = accept_within(&listener, &mut qemu, BOOT_LIMIT);
    relay_handshake(&mut stream, &public_key(&link_secret(NodeRole::Trustee, 1)));
    let deadline = Instant::now() + BOOT_LIMIT;
    let console = loop {
        let console = qemu.console();
        if console.contains("link up") {
            break console;
        }
        assert!(Instant::now() < deadline, "no link:\n{console}");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(
        console.contains("mps2-an385: an update of the node's blob, cut by a reset, finished"),
        "{console}"
    );
}

#[test]
fn a_provisioned_blob_boots_the_trustee_firmware() {
    if !have_qemu() {
        return;
    }
    let elf = firmware("trustee");
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("cfg");
    generate(&cfg, 3, 2, 9);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind relay");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let port = listener.local_addr().unwrap().port();
    // The device reaches this machine at 10.0.2.2 under QEMU.
    let relay = format!("10.0.2.2:{port}");
    let cfg_s = cfg.display().to_string();
    let blob_file = dir.path().join("trustee-1.bin");
    let blob_s = blob_file.display().to_string();
    let out = run_once(
        &[
            "device",
            "provision",
            "--board",
            "mps2-an385",
            "--relay",
            &relay,
            "-o",
            &blob_s,
            &cfg_s,
            &key_file(&cfg, "trustee-1"),
        ],
        Duration::from_secs(30),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("0x003f0000"), "{said}");
    assert_eq!(support::mode(&blob_file) & 0o777, 0o600);
    let blob = fs::read(&blob_file).expect("the blob");
    let node = Node::parse(&blob, NodeRole::Trustee).expect("a trustee blob");
    assert_eq!(
        (node.index, node.relay, node.relay_port),
        (1, Relay::Ipv4([10, 0, 2, 2]), port)
    );

    // The firmware reads it: it dials the relay with the node's key and says hello as
    // trustee 1.
    let mut qemu = Qemu::boot(dir.path(), &elf, Some(&blob), &[]);
    let mut stream = accept_within(&listener, &mut qemu, BOOT_LIMIT);
    let relay_file = fs::read_to_string(cfg.join("relay.json")).expect("relay.json");
    let relay_json: serde_json::Value = serde_json::from_str(&relay_file).expect("JSON");
    let relay_secret: [u8; 32] = hex::decode(relay_json["private_key"].as_str().unwrap())
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let hello = relay_handshake_as(
        &mut stream,
        &public_key(&node.link_secret),
        &relay_secret,
        &node.group_id,
        &node.session_id,
    );
    let Message::Hello(wire::Hello { role, index, .. }) = Message::parse(&hello).expect("a frame")
    else {
        panic!("the first frame is not a Hello");
    };
    assert_eq!((role, index), (NodeRole::Trustee, 1));
}

#[test]
fn role_firmware_refuses_a_blob_for_the_other_role() {
    if !have_qemu() {
        return;
    }
    for (app, blob_role, found, expected) in [
        ("trustee", NodeRole::Client, "CLNT", "TRST"),
        ("client", NodeRole::Trustee, "TRST", "CLNT"),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut qemu = Qemu::boot(
            dir.path(),
            &firmware(app),
            Some(&node_blob(blob_role, 0, 9)),
            &[],
        );
        assert_eq!(qemu.wait(BOOT_LIMIT).code(), Some(1), "{app} exit status");
        let console = qemu.console();
        let says = format!("for app {found}, this firmware is {expected}");
        assert!(console.contains(&says), "console:\n{console}");
    }
}

#[test]
fn a_relay_name_is_looked_up_at_each_dial_and_a_failed_lookup_redialled() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let blob = node_blob(NodeRole::Client, 1, 9);
    let mut node = Node::parse(&blob, NodeRole::Client).expect("the client blob");
    // `.invalid` never resolves (RFC 6761), whatever resolver QEMU's DNS server asks.
    node.relay = Relay::Name("relay.invalid");
    let blob = node.to_blob();
    let mut qemu = Qemu::boot(dir.path(), &relay_name_client(), Some(&blob), &[]);
    let deadline = Instant::now() + BOOT_LIMIT;
    let console = loop {
        let console = qemu.console();
        if console.contains("dialing relay relay.invalid:9 (attempt 2)") {
            break console;
        }
        assert!(qemu.exited().is_none(), "the client stopped:\n{console}");
        assert!(
            Instant::now() < deadline,
            "no second dial within {BOOT_LIMIT:?}:\n{console}"
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert!(
        console.contains("client 1: on mps2-an385,")
            && console.contains("relay relay.invalid:9")
            && console.contains("dialing relay relay.invalid:9 (attempt 1)"),
        "console:\n{console}"
    );
    // The first dial ended at the lookup (its answer, or the dial's time limit while the
    // query went unanswered), then the backoff scheduled the next.
    let failed = console
        .lines()
        .find(|l| l.contains("cannot look up the relay") || l.contains("no handshake within"))
        .unwrap_or_else(|| panic!("no failed lookup:\n{console}"));
    assert!(failed.contains("next dial in"), "{failed}");
}

/// The trustee's setup image refuses to set up anything unless both its blobs are there and
/// of one group: no setup blob, or one of another group than the DC-net node's blob, and
/// it stops with status 1 and says why, before it dials anyone.
#[test]
fn the_setup_image_refuses_blobs_of_two_groups() {
    if !have_qemu() {
        return;
    }
    let elf = firmware("trustee-setup");
    let dcnet = node_blob(NodeRole::Trustee, 1, 9);
    let keys: Vec<u8> = (0..TRUSTEES)
        .flat_map(|j| identity_public(&secret(IDENTITY, 100 + j)))
        .collect();
    // `GROUP` is no fingerprint's group id.
    let other = dissent_core::provision::EpochSetup {
        group: [0x47; 32],
        epoch: 1,
        min_trustees: 1,
        trustees: PeerKeys::from_flat(&keys).expect("whole keys"),
    }
    .to_blob();
    for (setup, says) in [
        (None, "the setup blob is not one this firmware reads"),
        (
            Some(other),
            "the setup blob is of another group than the node's blob",
        ),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut extra = vec!["-global", "armv7m.init-nsvtor=0x200000"];
        let file = dir.path().join("setup.bin");
        let loader = format!("loader,file={},addr=0x003F8000", file.display());
        if let Some(blob) = &setup {
            fs::write(&file, blob).expect("write the setup blob");
            extra.extend(["-device", loader.as_str()]);
        }
        let mut qemu = Qemu::boot_with(dir.path(), &elf, true, Some(&dcnet), &[], &extra);
        assert_eq!(qemu.wait(BOOT_LIMIT).code(), Some(1), "exit status");
        let console = qemu.console();
        assert!(
            console.contains(says) && !console.contains("dialing"),
            "console:\n{console}"
        );
    }
}

/// What a device trustee computes in a dispute, on the board: `disputecheck` checks a
/// signature and proves a pair's Diffie–Hellman secret, timing each in instructions (the
/// board's clock counts them), checks the proof and refuses a changed signature.
#[test]
fn the_devices_core_checks_a_reveal_and_proves_a_pairs_secret() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut qemu = Qemu::boot_counted(dir.path(), &firmware("disputecheck"));
    let status = qemu.wait(Duration::from_secs(120));
    let console = qemu.console();
    assert_eq!(status.code(), Some(0), "console:\n{console}");
    assert!(console.contains("disputecheck: ok"), "console:\n{console}");
    for line in console.lines().filter(|l| l.starts_with("disputecheck:")) {
        eprintln!("{line}");
    }
}

// ---------------------------------------------------------------------------------------
// `dissent qemu`: emulated nodes in a group with hosted ones

mod support;

use support::{
    connect, generate, key_file, pattern, reserve_port, run_once, sample, scrape, wait_all_gone,
    within, Proc, Scope, FORM_TIMEOUT, TRANSFER_TIMEOUT,
};

/// Longest the mixed group may take from start to finish.
const MIXED_LIMIT: Duration = Duration::from_secs(150);

/// An emulated node run by `dissent qemu`, its console in a file printed if the test fails.
struct Device {
    proc: Proc,
    console: PathBuf,
}

impl Device {
    /// Starts `dissent qemu CFG CFG/ID.json ARGS`, its console in `dir`.
    fn start(scope: &Scope, dir: &Path, cfg: &Path, id: &str, args: &[&str]) -> Device {
        let console = dir.join(format!("{id}.console"));
        let cfg_s = cfg.display().to_string();
        let console_s = console.display().to_string();
        let key = key_file(cfg, id);
        let mut all = vec!["qemu", &cfg_s, &key, "--console", &console_s];
        all.extend_from_slice(args);
        Device {
            proc: scope.spawn(id, &all),
            console,
        }
    }

    fn console(&self) -> String {
        fs::read_to_string(&self.console).unwrap_or_default()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- {} console ({}) ---\n{}--- end ---",
                self.proc.name,
                self.console.display(),
                self.console()
            );
        }
    }
}

/// Writes `data` into 127.0.0.1:`port` while reading as many bytes back; returns them.
fn echo_through(port: u16, data: Vec<u8>) -> thread::JoinHandle<io::Result<Vec<u8>>> {
    echo_counting(port, data, Arc::default())
}

/// Like [`echo_through`], counting the bytes back in `back` as they come.
fn echo_counting(
    port: u16,
    data: Vec<u8>,
    back: Arc<AtomicUsize>,
) -> thread::JoinHandle<io::Result<Vec<u8>>> {
    thread::spawn(move || {
        let mut stream = connect(port, TRANSFER_TIMEOUT);
        let mut writer = stream.try_clone()?;
        let len = data.len();
        let writing = thread::spawn(move || writer.write_all(&data));
        let mut got = Vec::with_capacity(len);
        let mut buf = [0u8; 16 * 1024];
        while got.len() < len {
            match stream.read(&mut buf)? {
                0 => break,
                n => {
                    got.extend_from_slice(&buf[..n]);
                    back.store(got.len(), Ordering::Relaxed);
                }
            }
        }
        writing
            .join()
            .map_err(|_| io::Error::other("writer thread panicked"))??;
        Ok(got)
    })
}

#[test]
fn emulated_trustee_and_client_serve_beside_hosted_nodes() {
    if !have_qemu() {
        return;
    }
    firmware("trustee");
    firmware("client");
    within(MIXED_LIMIT, |scope| {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = dir.path().join("cfg");
        // The devices are provisioned with the relay's address, and QEMU forwards a port it
        // is given: those two are set before anything starts; the rest listen on ports the
        // system picks.
        let relay_port = reserve_port();
        generate(&cfg, 3, 2, relay_port);
        let cfg_s = cfg.display().to_string();
        let mut relay = scope.spawn(
            "relay",
            &["relay", "--exit", "echo", "--metrics", "0", &cfg_s],
        );
        let metrics_port = relay.listening_port("serving metrics at");
        support::wait_for_port(relay_port, FORM_TIMEOUT);
        let started = Instant::now();
        let mut hosted = vec![scope.spawn(
            "trustee-0",
            &["trustee", &cfg_s, &key_file(&cfg, "trustee-0")],
        )];
        let mut devices = vec![Device::start(scope, dir.path(), &cfg, "trustee-1", &[])];
        let mut client_ports = Vec::new();
        for i in 0..2 {
            let id = format!("client-{i}");
            let mut client = scope.spawn(&id, &["client", "-p", "0", &cfg_s, &key_file(&cfg, &id)]);
            client_ports.push(client.listening_port("listening on"));
            hosted.push(client);
        }
        client_ports.push(reserve_port());
        let forward = client_ports[2].to_string();
        devices.push(Device::start(
            scope,
            dir.path(),
            &cfg,
            "client-2",
            &["-p", &forward],
        ));

        // Ready when the relay runs an interval with all three clients (both trustees,
        // the emulated one included, confirmed it).
        relay.wait_until(FORM_TIMEOUT, "an interval with 3 clients", |_| {
            let page = scrape(metrics_port)?;
            (sample(&page, "dissent_online_clients")? == 3.0).then_some(())
        });
        eprintln!("group formed in {:?}", started.elapsed());
        for port in &client_ports[..2] {
            support::wait_for_port(*port, FORM_TIMEOUT);
        }

        let transfer = Instant::now();
        let hosted_data = pattern(64 * 1024, 1);
        let device_data = pattern(16 * 1024, 2);
        let via_hosted = echo_through(client_ports[0], hosted_data.clone());
        let via_device = echo_through(client_ports[2], device_data.clone());
        for (what, handle, want) in [
            ("64 KiB via hosted client 0", via_hosted, hosted_data),
            ("16 KiB via emulated client 2", via_device, device_data),
        ] {
            let got = handle
                .join()
                .expect("transfer thread")
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(got.len(), want.len(), "{what}: bytes back");
            assert!(got == want, "{what}: different bytes came back");
        }
        eprintln!("both transfers took {:?}", transfer.elapsed());

        // Every exchange of the run decoded: the emulated trustee's pads and the emulated
        // client's cells were right each time, and nobody was dropped.
        let page = scrape(metrics_port).expect("relay metrics");
        let exchanges = sample(&page, "dissent_exchanges_total").unwrap_or(0.0);
        assert!(exchanges > 0.0, "no exchange decoded:\n{page}");
        assert!(
            sample(&page, "dissent_upstream_bytes_total").unwrap_or(0.0) >= (80 * 1024) as f64,
            "{page}"
        );
        assert_eq!(
            sample(&page, "dissent_garbled_exchanges_total"),
            Some(0.0),
            "garbled exchanges:\n{page}"
        );
        for kind in ["dropped", "lost"] {
            let series = format!("dissent_link_events_total{{kind=\"{kind}\"}}");
            assert_eq!(sample(&page, &series), None, "links {kind}:\n{page}");
        }
        eprintln!("{exchanges} exchanges, none garbled");
        for device in &devices {
            let console = device.console();
            assert!(
                console.contains("link up") && !console.contains("link lost"),
                "{}: console:\n{console}",
                device.proc.name
            );
            if let Some(line) = console.lines().rev().find(|l| l.contains("stack peak")) {
                eprintln!("{line}");
            }
        }

        // Ctrl-C stops `dissent qemu` and its QEMU, and it exits 0.
        for device in &mut devices {
            let qemu: Vec<u32> = support::children(device.proc.pid());
            assert_eq!(qemu.len(), 1, "{}: one QEMU child", device.proc.name);
            device.proc.signal(libc::SIGINT);
            let status = device.proc.wait_exit(support::EXIT_TIMEOUT);
            assert_eq!(
                status.and_then(|s| s.code()),
                Some(0),
                "{} after Ctrl-C",
                device.proc.name
            );
            wait_all_gone(&qemu, support::EXIT_TIMEOUT);
        }
        assert!(relay.is_running() && hosted.iter_mut().all(|p| p.is_running()));
    });
}

/// Runs `dissent ARGS`, which must succeed; returns its standard output.
fn dissent_ok(args: &[&str]) -> String {
    let out = run_once(args, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "dissent {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A group with no dealer whose trustee 1 is emulated: a hosted relay with the echo exit, a
/// hosted trustee 0 and four hosted clients, every node's keys made by `dissent key new`
/// and the group folder signed by both trustees. `dissent qemu` boots trustee 1's setup
/// image beside its DC-net image: the device takes its part in the epoch's setup (its key,
/// its shuffle and proof, its decryption shares and record, each checked by every node,
/// and every other node's checked by it), completes its DC-net blob with the epoch and
/// hands the board to the DC-net image, which serves the epoch: bytes through a hosted
/// client come back intact and no exchange is garbled. The setup image's build for every
/// board is then held to a trustee's budget with the stack peak it printed.
#[test]
fn device_trustee_sets_up_a_dealer_free_epoch_and_hands_over_to_its_dc_net_image() {
    if !have_qemu() {
        return;
    }
    firmware("trustee");
    firmware("trustee-setup");
    within(MIXED_LIMIT, |scope| {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path();
        let DealerFreeNet {
            group: _,
            trustees: _,
            clients: _,
            mut relay,
            metrics_port,
            mut trustee0,
            device,
            mut client_procs,
            qemu_args: _,
            started,
        } = DealerFreeNet::start(scope, home, &[]);

        // Every node checked every proof and signature, the device's included; the device
        // established the same epoch and handed over.
        relay.wait_for_log("established", FORM_TIMEOUT);
        for c in &mut client_procs {
            c.wait_for_log("every proof and signature checked", FORM_TIMEOUT);
        }
        let deadline = Instant::now() + FORM_TIMEOUT;
        let console = loop {
            let console = device.console();
            if console.contains("handing over to the DC-net trustee")
                && console
                    .lines()
                    .skip_while(|l| !l.contains("handing over"))
                    .any(|l| l.contains("interval") && l.contains("with 4 clients"))
            {
                break console;
            }
            assert!(
                Instant::now() < deadline,
                "no hand-over and interval within {FORM_TIMEOUT:?}:\n{console}"
            );
            thread::sleep(Duration::from_millis(50));
        };
        eprintln!("set up and handed over in {:?}", started.elapsed());
        let established = console
            .lines()
            .find(|l| l.contains("established in attempt 0"))
            .unwrap_or_else(|| panic!("no established epoch:\n{console}"));
        assert!(
            established.contains("4 slots")
                && established.contains("every proof and signature checked"),
            "{established}"
        );
        // The DC-net image took up the epoch where the setup image left it: its own boot,
        // the group of the epoch, its link to the relay's DC-net.
        let after: Vec<&str> = console
            .lines()
            .skip_while(|l| !l.contains("handing over"))
            .collect();
        assert!(
            after
                .iter()
                .any(|l| l.contains("trustee 1: on mps2-an385, group of 4 clients, 2 trustees"))
                && after.iter().any(|l| l.contains("link up")),
            "console:\n{console}"
        );

        let port = client_procs[0].listening_port("listening on");
        client_procs[0].wait_for_log("sending in interval", FORM_TIMEOUT);
        let data = pattern(16 * 1024, 3);
        let back = echo_through(port, data.clone())
            .join()
            .expect("transfer thread")
            .expect("echo through client 0");
        assert!(back == data, "different bytes came back");
        let page = scrape(metrics_port).expect("relay metrics");
        assert!(
            sample(&page, "dissent_exchanges_total").unwrap_or(0.0) > 0.0,
            "{page}"
        );
        assert_eq!(
            sample(&page, "dissent_garbled_exchanges_total"),
            Some(0.0),
            "garbled exchanges:\n{page}"
        );

        // Every board's setup image within a trustee's budget, with the stack peak the
        // emulated one reached (the real boards run the same code): the larger of the
        // peaks once the epoch is established and at the hand-over, after the blob's update.
        let peak_in = |line: &str| -> u64 {
            line.split("stack peak ")
                .nth(1)
                .and_then(|p| p.trim_end_matches(" B").parse().ok())
                .unwrap_or_else(|| panic!("no stack peak: {line}"))
        };
        let handing_over = console
            .lines()
            .find(|l| l.contains("handing over"))
            .unwrap_or_else(|| panic!("no hand-over:\n{console}"));
        let peak = peak_in(established).max(peak_in(handing_over));
        eprintln!("the setup image's stack peak: {peak} B ({handing_over})");
        let over = budgets_exceeded("trustee setup image", &SETUP_BUILDS, peak);
        assert!(
            over.is_empty(),
            "setup image builds over their budget: {over:?}"
        );
        assert!(relay.is_running() && trustee0.is_running());
        drop(device);
    });
}

/// A blame round with emulated nodes in it (the `dissent` binary built with the
/// `disruptor` feature: `cargo test -p dissent --features disruptor --test embedded
/// a_device_trustee`). A group of four clients and two trustees, trustee 1 and client 1
/// emulated; client 3 garbles every other exchange of other slots. The round that names it
/// has every member's and every trustee's signed reveal, the devices' included: the relay
/// never says it went without trustee 1's, nobody else is named (a member that does not
/// answer would be, for refusing), and the evidence, which holds each node's signed
/// statement, passes `dissent blame verify` from the group's public keys. The transfers
/// complete byte-exact. Prints how long the round took, from the relay's "started" line to
/// its verdict.
#[cfg(feature = "disruptor")]
#[test]
fn a_device_trustee_reveals_its_pads_in_the_round_that_names_a_disruptor() {
    device_blame_round(false);
}

/// A dispute settled by the device trustee (built with `disruptor`, as above). The same
/// group, trustee 0 emulated this time: client 3 garbles and lies in its reveal about the
/// pad bit it shares with trustee 0, which hides its flipped cell bit. The relay shows the
/// device the client's signed reveal; the device checks its Ed25519 signature and proves
/// the pair's Diffie–Hellman secret, and the proven bit convicts the client of lying about
/// a pad bit. The liar never proves the secret that convicts it (the test disruptor answers
/// no dispute request for the pair it lied about): the evidence's one dispute is proven by
/// trustee 0, the device, and passes `dissent blame verify`. Nobody honest is named, and the transfers complete byte-exact.
#[cfg(feature = "disruptor")]
#[test]
fn a_device_trustee_proves_the_secret_of_a_pair_whose_client_lies_about_its_pads() {
    device_blame_round(true);
}

/// A group of four clients (0 and 2 hosted, 1 emulated, 3 a hosted disruptor that garbles
/// every other exchange, and lies about the pad bit it shares with trustee 0 if `lies`) and
/// two trustees (trustee 0 emulated if `lies`, trustee 1 otherwise): the round names client
/// 3 (of lying about a pad bit, proven by the emulated trustee, if `lies`), nobody else,
/// with every trustee's reveal; the evidence checks offline; a transfer through hosted
/// client 0 during the round and one through the emulated client after it come back
/// byte-exact; every trustee and client build is within its budget with the stack peaks
/// the devices reach answering the round. The emulated client is client 1, of client 0's
/// buddy group: client 2's, the disruptor's, sends nothing once the disruptor is gone.
#[cfg(feature = "disruptor")]
fn device_blame_round(lies: bool) {
    if !have_qemu() {
        return;
    }
    firmware("trustee");
    firmware("client");
    within(Duration::from_secs(240), move |scope| {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = dir.path().join("cfg");
        let relay_port = reserve_port();
        generate(&cfg, 4, 2, relay_port);
        let cfg_s = cfg.display().to_string();
        let mut relay = scope.spawn("relay", &["relay", "--exit", "echo", &cfg_s]);
        support::wait_for_port(relay_port, FORM_TIMEOUT);
        let (emulated, hosted) = if lies { (0, 1) } else { (1, 0) };
        let hosted_id = format!("trustee-{hosted}");
        let _hosted_trustee = scope.spawn(
            &hosted_id,
            &["trustee", &cfg_s, &key_file(&cfg, &hosted_id)],
        );
        let device = Device::start(scope, dir.path(), &cfg, &format!("trustee-{emulated}"), &[]);
        let mut ports = Vec::new();
        let mut clients = Vec::new();
        for i in [0, 2] {
            let id = format!("client-{i}");
            let mut client = scope.spawn(&id, &["client", "-p", "0", &cfg_s, &key_file(&cfg, &id)]);
            ports.push(client.listening_port("listening on"));
            clients.push(client);
        }
        let forward = reserve_port();
        let forward_s = forward.to_string();
        let device_client = Device::start(scope, dir.path(), &cfg, "client-1", &["-p", &forward_s]);
        let key = key_file(&cfg, "client-3");
        let mut argv = vec![
            "client",
            "-p",
            "0",
            "--disrupt",
            "garble-every-other",
            &cfg_s,
            &key,
        ];
        if lies {
            argv.insert(5, "--lie-about-pads");
        }
        let mut garbler = scope.spawn("garbler", &argv);
        garbler.wait_for_log("disrupts on purpose", FORM_TIMEOUT);
        garbler.wait_for_log("sending in interval", FORM_TIMEOUT);
        // Every client is a member of the running interval, the emulated one included.
        let wait_console = |d: &Device, needle: &str| {
            let deadline = Instant::now() + FORM_TIMEOUT;
            while !d.console().contains(needle) {
                assert!(
                    Instant::now() < deadline,
                    "{}: no {needle:?} within {FORM_TIMEOUT:?}:\n{}",
                    d.proc.name,
                    d.console()
                );
                thread::sleep(Duration::from_millis(50));
            }
        };
        wait_console(&device, "with 4 clients");
        wait_console(&device_client, "with 4 clients");
        for port in &ports[..2] {
            support::wait_for_port(*port, FORM_TIMEOUT);
        }

        // Client 0's echo runs while the garbler changes its cells: the round needs a
        // disrupted cell, and an idle group has none (client 2 shares its buddy group with
        // the garbler, whose exclusion ends its connections).
        let data = pattern(256 * 1024, 41);
        let port0 = ports[0];
        let first = {
            let data = data.clone();
            thread::spawn(move || support::echo_bulk(port0, &data))
        };
        let line = relay.wait_for_log(support::EVIDENCE_WRITTEN, TRANSFER_TIMEOUT);
        // The round's time by the relay's log: its "started" line to its verdict.
        let log = relay.log();
        let at = |needle: &str| {
            log.lines()
                .find(|l| l.contains("blame round about exchange") && l.contains(needle))
                .and_then(log_seconds)
        };
        let verdict = if lies {
            "client 3 lied about a pad bit"
        } else {
            "client 3 disrupted an exchange"
        };
        if let (Some(start), Some(end)) = (at(" started"), at(verdict)) {
            eprintln!(
                "blame round with the emulated trustee {emulated} and client 1{}: {:.1} ms \
                 from its start to its verdict",
                if lies {
                    ", a dispute the device settled"
                } else {
                    ""
                },
                (end - start) * 1000.0
            );
        }
        let got = first.join().expect("client 0's echo");
        support::assert_same(&got, &data, "client 0's echo");
        let path = support::evidence_path(&line);
        let log = relay.log();
        for line in log
            .lines()
            .filter(|l| l.contains("blame") || l.contains(&format!("trustee {emulated}")))
        {
            eprintln!("relay: {line}");
        }
        assert!(
            log.contains(verdict),
            "the round did not find {verdict:?}:\n{log}"
        );
        assert!(
            !log.contains("takes no part in blame rounds")
                && !log.contains("without a reveal from"),
            "a round went without a trustee's reveal:\n{log}"
        );
        for honest in ["client 0 ", "client 1 ", "client 2 ", "trustee "] {
            assert!(
                !log.contains(&format!("{honest}disrupted"))
                    && !log.contains(&format!("{honest}refused blame"))
                    && !log.contains(&format!("{honest}lied")),
                "an honest node was named:\n{log}"
            );
        }
        let out = run_once(
            &["blame", "verify", &path, "--group", &cfg_s, "--json"],
            support::EXIT_TIMEOUT,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "dissent blame verify refused the evidence: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("\"client\"") && stdout.contains("\"index\": 3"),
            "{stdout}"
        );
        let json: serde_json::Value = serde_json::from_str(&stdout).expect("the JSON");
        if lies {
            assert!(
                stdout.contains("\"kind\": \"lied-about-pad\"")
                    && stdout.contains("\"offline_verifiable\": true"),
                "{stdout}"
            );
            assert_eq!(
                json["dispute"],
                serde_json::json!({"client": 3, "trustee": 0, "proven_by": "trustee"}),
                "the evidence's dispute is not the one the emulated trustee 0 proved"
            );
        } else {
            assert!(
                json["dispute"].is_null(),
                "a dispute in the evidence: {stdout}"
            );
        }
        // The device says when it proves a pair's secret, and only then.
        let proving: Vec<String> = device
            .console()
            .lines()
            .filter(|l| l.contains("proving the pair's secret"))
            .map(str::to_string)
            .collect();
        if lies {
            assert!(
                proving.len() == 1 && proving[0].contains("dispute with client 3 "),
                "the emulated trustee's console: {proving:?}"
            );
        } else {
            assert!(proving.is_empty(), "{proving:?}");
        }
        garbler.wait_for_log("excluded", TRANSFER_TIMEOUT);
        // The emulated client, which revealed in the round, moves bytes once the garbler is
        // gone.
        let device_data = pattern(16 * 1024, 45);
        let got = echo_through(forward, device_data.clone())
            .join()
            .expect("transfer thread")
            .unwrap_or_else(|e| panic!("16 KiB via the emulated client: {e}"));
        support::assert_same(&got, &device_data, "the emulated client's echo");
        // The line of an interval after the round's own and after the transfer has a stack
        // peak that includes answering the round and moving the bytes, which every build's
        // RAM budget must hold too. Client 2 (hosted, idle since its buddy left) leaves, so
        // the relay starts one. A device may print a line before the relay's is read here,
        // so intervals are told by their numbers, not by counting lines.
        let round_interval: u64 = log
            .lines()
            .find_map(|l| {
                let rest = l.split("blame round about exchange ").nth(1)?;
                rest.split(" of interval ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .expect("the round's interval in the relay's log");
        let newest = |c: &str| {
            c.lines()
                .filter_map(|l| {
                    l.split(": interval ")
                        .nth(1)
                        .and_then(|rest| rest.split(' ').next())
                        .and_then(|n| n.parse::<u64>().ok())
                })
                .max()
                .unwrap_or(0)
        };
        let before = round_interval
            .max(newest(&device.console()))
            .max(newest(&device_client.console()));
        clients[1].signal(libc::SIGKILL);
        clients[1]
            .wait_exit(support::EXIT_TIMEOUT)
            .expect("client 2 leaves");
        let last_peak = |d: &Device| -> u64 {
            let deadline = Instant::now() + TRANSFER_TIMEOUT;
            let console = loop {
                let console = d.console();
                if newest(&console) > before {
                    break console;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: no interval after the round and the transfer:\n{console}",
                    d.proc.name
                );
                thread::sleep(Duration::from_millis(50));
            };
            assert!(
                !console.contains("link lost"),
                "{}: console:\n{console}",
                d.proc.name
            );
            console
                .lines()
                .rev()
                .find_map(|l| l.split("stack peak ").nth(1))
                .and_then(|p| p.trim_end_matches(" B").parse().ok())
                .expect("a stack peak on the console")
        };
        let peak = last_peak(&device);
        eprintln!("the emulated trustee's stack peak after the round and the transfer: {peak} B");
        let over = trustee_budgets_exceeded(peak);
        assert!(
            over.is_empty(),
            "trustee builds over their budget with blame: {over:?}"
        );
        let client_peak = last_peak(&device_client);
        eprintln!(
            "the emulated client's stack peak after the round and the transfer: {client_peak} B"
        );
        let over = client_budgets_exceeded(client_peak);
        assert!(
            over.is_empty(),
            "client builds over their budget with blame: {over:?}"
        );
        assert!(relay.is_running() && clients[0].is_running());
    });
}

/// The seconds within the day of a hosted log line's timestamp
/// (`2026-01-02T03:04:05.678901Z ...`), if it has one.
#[cfg(feature = "disruptor")]
fn log_seconds(line: &str) -> Option<f64> {
    let time = line.split_whitespace().next()?;
    let clock = time.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = clock.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// Waits until `back` passes `bytes`; fails after `limit`.
fn wait_bytes(back: &AtomicUsize, bytes: usize, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while back.load(Ordering::Relaxed) < bytes {
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {bytes} bytes back within {limit:?}",
            back.load(Ordering::Relaxed)
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn emulated_nodes_survive_trustee_restarts_mid_transfer_with_no_byte_lost() {
    if !have_qemu() {
        return;
    }
    firmware("trustee");
    firmware("client");
    within(MIXED_LIMIT, |scope| {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = dir.path().join("cfg");
        // The devices are provisioned with the relay's address, and QEMU forwards a port it
        // is given: those two are set before anything starts; the rest listen on ports the
        // system picks.
        let relay_port = reserve_port();
        generate(&cfg, 2, 2, relay_port);
        let cfg_s = cfg.display().to_string();
        let mut relay = scope.spawn(
            "relay",
            &["relay", "--exit", "echo", "--metrics", "0", &cfg_s],
        );
        let metrics_port = relay.listening_port("serving metrics at");
        support::wait_for_port(relay_port, FORM_TIMEOUT);
        let trustee_0 = ["trustee", &cfg_s, &key_file(&cfg, "trustee-0")];
        let mut hosted_trustee = scope.spawn("trustee-0", &trustee_0);
        let mut trustee = Device::start(scope, dir.path(), &cfg, "trustee-1", &[]);
        let mut client = scope.spawn(
            "client-0",
            &["client", "-p", "0", &cfg_s, &key_file(&cfg, "client-0")],
        );
        let hosted_port = client.listening_port("listening on");
        let device_port = reserve_port();
        let forward = device_port.to_string();
        let mut device = Device::start(scope, dir.path(), &cfg, "client-1", &["-p", &forward]);
        relay.wait_until(FORM_TIMEOUT, "an interval with 2 clients", |_| {
            let page = scrape(metrics_port)?;
            (sample(&page, "dissent_online_clients")? == 2.0).then_some(())
        });
        support::wait_for_port(hosted_port, FORM_TIMEOUT);

        // Both clients send while the trustees restart, one after the other: the hosted
        // one is killed outright, the emulated one stopped and booted again.
        let device_data = pattern(160 * 1024, 3);
        let hosted_data = pattern(256 * 1024, 4);
        let device_back = Arc::new(AtomicUsize::new(0));
        let via_device = echo_counting(device_port, device_data.clone(), device_back.clone());
        let via_hosted = echo_through(hosted_port, hosted_data.clone());
        let started = Instant::now();
        wait_bytes(
            &device_back,
            24 * 1024,
            TRANSFER_TIMEOUT,
            "before the restarts",
        );
        hosted_trustee.kill();
        thread::sleep(Duration::from_millis(300));
        let _hosted_trustee = scope.spawn("trustee-0 again", &trustee_0);
        let after_first = device_back.load(Ordering::Relaxed);
        wait_bytes(
            &device_back,
            after_first + 24 * 1024,
            TRANSFER_TIMEOUT,
            "after the hosted trustee's restart",
        );
        trustee.proc.signal(libc::SIGINT);
        let stopped = trustee.proc.wait_exit(support::EXIT_TIMEOUT);
        assert_eq!(stopped.and_then(|s| s.code()), Some(0), "trustee-1 stopped");
        let console = dir.path().join("trustee-1.console");
        let first_console = fs::read_to_string(&console).unwrap_or_default();
        let mut trustee_again = Device::start(scope, dir.path(), &cfg, "trustee-1", &[]);
        for (what, handle, want) in [
            ("160 KiB via the emulated client", via_device, device_data),
            ("256 KiB via the hosted client", via_hosted, hosted_data),
        ] {
            let got = handle
                .join()
                .expect("transfer thread")
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(got.len(), want.len(), "{what}: bytes back");
            let at = got.iter().zip(&want).position(|(a, b)| a != b);
            assert_eq!(at, None, "{what}: the bytes back differ");
        }
        eprintln!(
            "both transfers with two restarts took {:?}",
            started.elapsed()
        );

        // Nothing decoded to garbage, and the emulated client lost no connection.
        let page = scrape(metrics_port).expect("relay metrics");
        assert_eq!(
            sample(&page, "dissent_garbled_exchanges_total"),
            Some(0.0),
            "garbled exchanges:\n{page}"
        );
        // The echo is back before the device has seen its connection close: wait for the
        // line that reports the close, then read the whole console.
        let console_path = device.console.clone();
        let console = device.proc.wait_until(
            TRANSFER_TIMEOUT,
            "client-1's console line for the closed connection",
            |_| {
                let text = fs::read_to_string(&console_path).unwrap_or_default();
                let closed = |l: &str| l.contains(": local connection ") && l.contains(" closed (");
                text.lines().any(closed).then_some(text)
            },
        );
        let ended = |l: &&str| {
            l.contains("stopped reading")
                || (l.contains(": local connection ")
                    && (l.ends_with(" lost") || l.contains(" reset (")))
        };
        assert_eq!(
            console.lines().find(ended),
            None,
            "client-1 console:\n{console}"
        );
        // A console log someone shares names neither the slot nor a Conn# (which holds it).
        assert!(
            console.contains(" closed (163840 B up, 163840 B down)")
                && !console.contains("slot ")
                && !console
                    .lines()
                    .any(|l| l.contains("connection") && l.contains("0x")),
            "client-1 console:\n{console}"
        );
        assert!(
            first_console.contains("link up"),
            "trustee-1 console:\n{first_console}"
        );
        assert!(relay.is_running(), "the relay stopped");
        drop(client);

        // QEMU dying is explained: how it ended, and the console lines before.
        let qemu = support::children(trustee_again.proc.pid());
        assert_eq!(qemu.len(), 1, "one QEMU child");
        assert_eq!(
            support::cmdline(qemu[0]).first().map(String::as_str),
            Some("qemu-system-arm")
        );
        // SAFETY: signalling the QEMU child of our own `dissent qemu`, checked just above.
        unsafe { libc::kill(qemu[0] as libc::pid_t, libc::SIGKILL) };
        let status = trustee_again.proc.wait_exit(support::EXIT_TIMEOUT);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(128 + 9),
            "after QEMU was killed"
        );
        let log = trustee_again.proc.log();
        assert!(
            log.contains("QEMU stopped: killed by signal 9") && log.contains("trustee 1: link up"),
            "{log}"
        );
    });
}

#[test]
fn dissent_qemu_refuses_what_cannot_run() {
    if !have_qemu() {
        return;
    }
    firmware("trustee");
    let dir = tempfile::tempdir().expect("temp dir");
    // More clients than the trustee firmware serves: refused before anything boots.
    let big = dir.path().join("big");
    generate(&big, 65, 1, 9);
    let big_s = big.display().to_string();
    let out = run_once(
        &["qemu", &big_s, &key_file(&big, "trustee-0")],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the group has 65 clients") && err.contains("up to 64 clients"),
        "{err}"
    );

    let small = dir.path().join("small");
    generate(&small, 2, 1, 9);
    let small_s = small.display().to_string();
    let client = key_file(&small, "client-0");
    // The trustee firmware for a client's key.
    let trustee_elf = firmware("trustee").display().to_string();
    let out = run_once(
        &["qemu", &small_s, &client, "--firmware", &trustee_elf],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("firmware for app TRST"), "{err}");
    // A firmware that is not there.
    let missing = dir.path().join("nothing.elf").display().to_string();
    let out = run_once(
        &["qemu", &small_s, &client, "--firmware", &missing],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the firmware"), "{err}");
    // -p is for clients.
    let out = run_once(
        &["qemu", &small_s, &key_file(&small, "trustee-0"), "-p", "9"],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a trustee and has none"), "{err}");

    // No QEMU on the PATH: says how to get it.
    let empty = tempfile::tempdir().expect("temp dir");
    let out = Command::new(support::BIN)
        .args(["qemu", &small_s, &client])
        .env("PATH", empty.path())
        .stdin(Stdio::null())
        .output()
        .expect("run dissent qemu");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("qemu-system-arm not found") && err.contains("scripts/setup"),
        "{err}"
    );
}

/// Longest the rejoin test may take: a setup, a transfer with two restarts, a switch to the
/// next version and the device's setup of its epoch.
const REJOIN_LIMIT: Duration = Duration::from_secs(300);

/// A group with no dealer made as its members make it (`dissent key new`, `dissent group
/// new/add/sign`) in `home`: a relay, `trustees` trustees and `clients` clients. Returns the
/// group folder, the relay's address, and the relay's, trustees' and clients' key files.
fn dealer_free_group(
    home: &Path,
    trustees: usize,
    clients: usize,
) -> (String, String, String, Vec<String>, Vec<String>) {
    let key = |role: &str, name: &str| -> String {
        let file = home.join(format!("{name}.key")).display().to_string();
        dissent_ok(&["key", "new", "--role", role, &file]);
        file
    };
    let relay_key = key("relay", "relay");
    let trustees: Vec<String> = (0..trustees)
        .map(|j| key("trustee", &format!("trustee{j}")))
        .collect();
    let clients: Vec<String> = (0..clients)
        .map(|i| key("client", &format!("client{i}")))
        .collect();
    let group = home.join("group").display().to_string();
    let relay_addr = format!("127.0.0.1:{}", reserve_port());
    dissent_ok(&["group", "new", "--relay", &relay_addr, &group]);
    let publics: Vec<String> = std::iter::once(&relay_key)
        .chain(&trustees)
        .chain(&clients)
        .map(|k| format!("{k}.pub"))
        .collect();
    let mut add = vec!["group", "add", group.as_str()];
    add.extend(publics.iter().map(String::as_str));
    dissent_ok(&add);
    for t in &trustees {
        dissent_ok(&["group", "sign", &group, t]);
    }
    (group, relay_addr, relay_key, trustees, clients)
}

/// A dealer-free group of 2 trustees and 4 clients ([`dealer_free_group`]) running: the
/// relay (echo exit, metrics), trustee 0 hosted, trustee 1 on the emulated board through
/// `dissent qemu` (its environment `qemu_env`), and every client.
struct DealerFreeNet {
    group: String,
    trustees: Vec<String>,
    clients: Vec<String>,
    relay: Proc,
    metrics_port: u16,
    trustee0: Proc,
    device: Device,
    client_procs: Vec<Proc>,
    /// `dissent qemu`'s arguments, to start the device again.
    qemu_args: Vec<String>,
    /// When the relay was listening, before any trustee started.
    started: Instant,
}

impl DealerFreeNet {
    fn start(scope: &Scope, home: &Path, qemu_env: &[(&str, &str)]) -> DealerFreeNet {
        let (group, _, relay_key, trustees, clients) = dealer_free_group(home, 2, 4);
        let mut relay = scope.spawn(
            "relay",
            &[
                "relay",
                &group,
                "--key",
                &relay_key,
                "--exit",
                "echo",
                "--metrics",
                "0",
            ],
        );
        let metrics_port = relay.listening_port("serving metrics at");
        let started = Instant::now();
        let trustee0 = scope.spawn("trustee0", &["trustee", &group, &trustees[0]]);
        let console = home.join("trustee1.console");
        let console_s = console.display().to_string();
        let qemu_args: Vec<String> = ["qemu", &group, &trustees[1], "--console", &console_s]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let args: Vec<&str> = qemu_args.iter().map(String::as_str).collect();
        let name = if qemu_env.is_empty() {
            "trustee1"
        } else {
            "trustee1 (stops before keeping)"
        };
        let device = Device {
            proc: scope.spawn_env(name, &args, qemu_env),
            console,
        };
        let client_procs = clients
            .iter()
            .enumerate()
            .map(|(i, c)| scope.spawn(&format!("client{i}"), &["client", &group, c, "-p", "0"]))
            .collect();
        DealerFreeNet {
            group,
            trustees,
            clients,
            relay,
            metrics_port,
            trustee0,
            device,
            client_procs,
            qemu_args,
            started,
        }
    }
}

/// Moves the console file of a `dissent qemu` run that ended into `seen`, so that the
/// next run's file holds its own lines only.
fn consoles_seen(console: &Path, seen: &mut Vec<String>) {
    seen.push(fs::read_to_string(console).unwrap_or_default());
    let _ = fs::remove_file(console);
}

/// The number after `marker` in `log` (the first such line), e.g. the epoch of
/// "setting up epoch 3".
fn number_after(log: &str, marker: &str) -> Option<u64> {
    let rest = &log[log.find(marker)? + marker.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A device trustee of a dealer-free group that restarts within the epoch rejoins it with
/// no new setup, as a hosted trustee does. The first `dissent qemu` sets the epoch up on the
/// device and keeps what the device established (read back from the board, mode 600
/// beside the key file). A transfer through a hosted client runs while the device's
/// `dissent qemu` is stopped (SIGTERM) and started again, and then while its QEMU is killed
/// (SIGKILL) and it is started again: each time it rejoins the kept epoch (its log says so,
/// its console shows no setup image, the relay opened one setup only), and the transfer
/// comes back byte-exact with no honest member excluded. Then the group switches to its
/// next version while the device serves: `dissent qemu` follows the switch and sets the new
/// epoch up on the device. Last, the group moves on while the device is away: started again,
/// it does not serve the epoch it kept, now stale, and sets the new one up. Prints how long
/// each restart took to serve again.
#[test]
fn a_device_trustee_restarted_within_its_epoch_rejoins_it_with_no_new_setup() {
    if !have_qemu() {
        return;
    }
    firmware("trustee");
    firmware("trustee-setup");
    within(REJOIN_LIMIT, |scope| {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path();
        let DealerFreeNet {
            group,
            trustees,
            clients,
            mut relay,
            metrics_port,
            trustee0,
            mut device,
            mut client_procs,
            qemu_args,
            started: _,
        } = DealerFreeNet::start(scope, home, &[]);
        let qemu_args: Vec<&str> = qemu_args.iter().map(String::as_str).collect();
        let console = device.console.clone();

        // The device sets the epoch up, hands over, and its epoch is kept.
        let log = device.proc.wait_for_log(
            "read back from its provisioning area and kept in",
            FORM_TIMEOUT,
        );
        let epoch = number_after(&log, "setting up epoch ")
            .unwrap_or_else(|| panic!("no setting-up line:\n{log}"));
        let kept = PathBuf::from(format!("{}.epoch", trustees[1]));
        assert_eq!(support::mode(&kept), 0o600, "{}", kept.display());
        relay.wait_until(FORM_TIMEOUT, "an interval with 4 clients", |_| {
            let page = scrape(metrics_port)?;
            (sample(&page, "dissent_online_clients")? == 4.0).then_some(())
        });
        let port = client_procs[0].listening_port("listening on");
        client_procs[0].wait_for_log("sending in interval", FORM_TIMEOUT);

        let data = pattern(512 * 1024, 5);
        let back = Arc::new(AtomicUsize::new(0));
        let transfer = echo_counting(port, data.clone(), back.clone());
        wait_bytes(&back, 16 * 1024, TRANSFER_TIMEOUT, "before the restarts");

        // Stopped (SIGTERM), then QEMU killed outright: each time started again, it
        // rejoins the epoch it kept and the transfer goes on.
        // Each run's console, the set-up run's first.
        let mut consoles: Vec<String> = Vec::new();
        for (round, how) in ["SIGTERM to dissent qemu", "SIGKILL to QEMU"]
            .into_iter()
            .enumerate()
        {
            assert!(
                back.load(Ordering::Relaxed) < data.len(),
                "the transfer ended before the {how}"
            );
            if round == 0 {
                device.proc.signal(libc::SIGTERM);
                let status = device.proc.wait_exit(support::EXIT_TIMEOUT);
                assert_eq!(status.and_then(|s| s.code()), Some(0), "{how}");
            } else {
                let qemu = support::children(device.proc.pid());
                assert_eq!(qemu.len(), 1, "one QEMU child");
                // SAFETY: signalling the QEMU child of our own `dissent qemu`, found just
                // above.
                unsafe { libc::kill(qemu[0] as libc::pid_t, libc::SIGKILL) };
                let status = device.proc.wait_exit(support::EXIT_TIMEOUT);
                assert_eq!(status.and_then(|s| s.code()), Some(128 + 9), "{how}");
            }
            // The new run's console only: the last run's says "link up" too.
            consoles_seen(&console, &mut consoles);
            let before = back.load(Ordering::Relaxed);
            let restarted = Instant::now();
            device = Device {
                proc: scope.spawn(&format!("trustee1 again ({how})"), &qemu_args),
                console: console.clone(),
            };
            let log = device
                .proc
                .wait_for_log(&format!("rejoining epoch {epoch} "), FORM_TIMEOUT);
            assert!(log.contains("no new setup"), "{log}");
            let link_up = device
                .proc
                .wait_until(FORM_TIMEOUT, "the device's link up", |_| {
                    let text = fs::read_to_string(&console).unwrap_or_default();
                    text.contains("link up").then(|| restarted.elapsed())
                });
            wait_bytes(
                &back,
                before + 1,
                TRANSFER_TIMEOUT,
                &format!("after the restart ({how})"),
            );
            let flowing = restarted.elapsed();
            wait_bytes(
                &back,
                (before + 16 * 1024).min(data.len()),
                TRANSFER_TIMEOUT,
                &format!("after the restart ({how})"),
            );
            eprintln!(
                "restart ({how}): from the new `dissent qemu` to the device's link up \
                 {link_up:?}, to the first byte back {flowing:?}"
            );
        }
        consoles.push(device.console());
        let got = transfer
            .join()
            .expect("transfer thread")
            .expect("echo through client 0");
        assert_eq!(got.len(), data.len(), "bytes back");
        assert_eq!(
            got.iter().zip(&data).position(|(a, b)| a != b),
            None,
            "the bytes back differ"
        );

        // No new setup: the relay opened one attempt of one epoch, and the restarted
        // device never booted its setup image.
        let log = relay.log();
        assert_eq!(log.matches("setup: attempt ").count(), 1, "{log}");
        assert_eq!(log.matches("setup of epoch").count(), 1, "{log}");
        assert_eq!(consoles.len(), 3);
        assert!(consoles[0].contains("handing over"), "{}", consoles[0]);
        for console in &consoles[1..] {
            assert!(
                !console.contains("trustee setup") && console.contains("link up"),
                "{console}"
            );
        }
        // No honest member excluded, nothing garbled, every client still online.
        assert!(
            !log.contains("is refused until an operator admits it"),
            "{log}"
        );
        let page = scrape(metrics_port).expect("relay metrics");
        assert_eq!(
            sample(&page, "dissent_garbled_exchanges_total"),
            Some(0.0),
            "{page}"
        );
        assert_eq!(sample(&page, "dissent_online_clients"), Some(4.0), "{page}");

        // A next version of the group: `client` taken out, signed by every trustee, and
        // the relay told to read the folder again.
        let take_out = |client: &str, relay: &mut Proc, switches: usize| {
            let show = dissent_ok(&["key", "show", &format!("{client}.pub")]);
            let fingerprint = show.split_whitespace().next().expect("a fingerprint");
            dissent_ok(&["group", "remove", &group, fingerprint]);
            for t in &trustees {
                dissent_ok(&["group", "sign", &group, t]);
            }
            relay.signal(libc::SIGHUP);
            relay.wait_until(FORM_TIMEOUT, "the switch announced", |p| {
                (p.log().matches("switch announced").count() == switches).then_some(())
            });
        };
        // The device's set-up of `epoch` in `log` and its console: the setup image, the
        // hand-over, the epoch kept.
        let set_up = |device: &mut Device, epoch: u64| {
            device
                .proc
                .wait_until(FORM_TIMEOUT, "the epoch set up and kept", |p| {
                    let log = p.log();
                    let kept = format!("epoch {epoch} established on the device");
                    (log.contains(&kept) && log.contains("and kept in")).then_some(())
                });
            let console = device.console();
            assert!(
                console.contains(&format!("setup of epoch {epoch} on mps2-an385"))
                    && console.contains(&format!("epoch {epoch} established"))
                    && console.contains("handing over"),
                "{console}"
            );
        };

        // The group switches to its next version (client 3 taken out) while the device
        // serves: told of it by the relay, `dissent qemu` fetches and checks the version as
        // `dissent trustee` does, and sets its epoch up on the device.
        take_out(&clients[3], &mut relay, 1);
        let log = device.proc.wait_for_log("setting up epoch ", FORM_TIMEOUT);
        let next = number_after(&log, "setting up epoch ").expect("an epoch");
        assert!(
            next > epoch && log.contains("stopping QEMU to follow the switch"),
            "{log}"
        );
        set_up(&mut device, next);

        // Away while the group moves on again (client 2 taken out): started again with the
        // epoch it kept, now stale, the device does not serve it and sets the new one up.
        device.proc.signal(libc::SIGTERM);
        device.proc.wait_exit(support::EXIT_TIMEOUT);
        let _ = fs::remove_file(&console);
        take_out(&clients[2], &mut relay, 2);
        device = Device {
            proc: scope.spawn("trustee1 (a version later)", &qemu_args),
            console: console.clone(),
        };
        let log = device.proc.wait_for_log("setting up epoch ", FORM_TIMEOUT);
        let last = number_after(&log, "setting up epoch ").expect("an epoch");
        assert!(
            last > next && log.contains("is of another group version"),
            "{log}"
        );
        set_up(&mut device, last);
        assert!(relay.is_running(), "the relay stopped");
        drop((trustee0, client_procs));
    });
}

/// A device trustee whose `dissent qemu` stops between the device's hand-over and keeping
/// the epoch (the test hook `DISSENT_QEMU_TEST_STOP_BEFORE_KEEPING` kills QEMU and exits
/// at that very point, deterministically) keeps nothing, while the relay has established
/// the epoch. Started again, its setup image takes the epoch back from the relay on a rejoin
/// link (its own signature on the records), as a real board's does after a reset in the
/// same gap, writes it into the node's blob and hands over; the host keeps it, and the
/// group serves again: no setup attempt on the device, one setup in the relay's log, no
/// 120 s wait. Prints how long from the restart to the DC-net image's link up.
#[test]
fn a_device_trustee_whose_host_stopped_before_keeping_its_epoch_takes_it_back() {
    if !have_qemu() {
        return;
    }
    firmware("trustee");
    firmware("trustee-setup");
    within(REJOIN_LIMIT, |scope| {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path();
        let DealerFreeNet {
            group: _,
            trustees,
            clients: _,
            mut relay,
            metrics_port,
            trustee0: _trustee0,
            mut device,
            mut client_procs,
            qemu_args,
            started: _,
        } = DealerFreeNet::start(
            scope,
            home,
            &[("DISSENT_QEMU_TEST_STOP_BEFORE_KEEPING", "1")],
        );
        let qemu_args: Vec<&str> = qemu_args.iter().map(String::as_str).collect();
        let console = device.console.clone();

        // The device sets the epoch up and hands over; its host stops before keeping it.
        let status = device.proc.wait_exit(FORM_TIMEOUT);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(86),
            "{}",
            device.proc.log()
        );
        assert!(
            device.console().contains("handing over"),
            "{}",
            device.console()
        );
        let kept = PathBuf::from(format!("{}.epoch", trustees[1]));
        assert!(!kept.exists(), "nothing kept: {}", kept.display());
        relay.wait_for_log("established", FORM_TIMEOUT);
        let _ = fs::remove_file(&console);

        // Started again: the setup image takes the epoch back from the relay on a rejoin
        // link, writes it into the node's blob and hands over; the host keeps it.
        let restarted = Instant::now();
        device = Device {
            proc: scope.spawn("trustee1 again", &qemu_args),
            console: console.clone(),
        };
        let log = device.proc.wait_for_log("kept in", FORM_TIMEOUT);
        assert!(log.contains("setting up epoch"), "{log}");
        assert_eq!(support::mode(&kept), 0o600, "{}", kept.display());
        let link_up = device
            .proc
            .wait_until(FORM_TIMEOUT, "the DC-net image's link up", |_| {
                let text = fs::read_to_string(&console).unwrap_or_default();
                let (_, after) = text.split_once("handing over")?;
                after.contains("link up").then(|| restarted.elapsed())
            });
        let console_text = device.console();
        assert!(
            console_text.contains("taken back from the relay"),
            "{console_text}"
        );
        // Nothing of a setup ran on the device: no attempt opened, no key sent.
        assert!(!console_text.contains("attempt opened"), "{console_text}");
        relay.wait_until(FORM_TIMEOUT, "an interval with 4 clients", |_| {
            let page = scrape(metrics_port)?;
            (sample(&page, "dissent_online_clients")? == 4.0).then_some(())
        });
        let port = client_procs[0].listening_port("listening on");
        client_procs[0].wait_for_log("sending in interval", FORM_TIMEOUT);
        let data = pattern(64 * 1024, 7);
        let got = echo_through(port, data.clone())
            .join()
            .expect("transfer thread")
            .expect("echo through client 0");
        assert_eq!(got, data, "the bytes back differ");
        eprintln!("restart after a stop before keeping: to the device's link up {link_up:?}");

        let log = relay.log();
        assert!(log.contains("rejoin: trustee trustee1 linked"), "{log}");
        assert_eq!(log.matches("setup of epoch").count(), 1, "{log}");
        assert_eq!(log.matches("setup: attempt ").count(), 1, "{log}");
        let page = scrape(metrics_port).expect("relay metrics");
        assert_eq!(
            sample(&page, "dissent_garbled_exchanges_total"),
            Some(0.0),
            "{page}"
        );
        drop(client_procs.drain(..));
    });
}

/// `dissent device provision` for a trustee of a group folder writes both of a real board's
/// blobs beside the trustee's key file, mode 600, never into the group folder: the DC-net
/// node's (every member of the version, the epoch's session id and pseudonym keys zero for
/// the setup image to write) and the setup image's (`EpochSetup`: the group, the epoch,
/// the trustees' identity keys), each with its flash address. A client of a group folder is
/// refused: it runs hosted.
#[test]
fn a_group_folders_trustee_is_provisioned_with_both_blobs_for_a_real_board() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path();
    let (group, _, _, trustees, clients) = dealer_free_group(home, 2, 4);
    let before: Vec<_> = fs::read_dir(&group)
        .expect("group folder")
        .map(|e| e.expect("entry").file_name())
        .collect();
    let out = run_once(
        &[
            "device",
            "provision",
            "--board",
            "nucleo-f767zi",
            "--relay",
            "192.0.2.10:12345",
            "--address",
            "192.0.2.20/24",
            "--gateway",
            "192.0.2.1",
            &group,
            &trustees[1],
        ],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("it goes at 0x081c0000"), "{stdout}");
    assert!(stdout.contains("it goes at 0x08180000"), "{stdout}");
    let dcnet = home.join("trustee1.nucleo-f767zi.bin");
    let setup = home.join("trustee1.nucleo-f767zi.setup.bin");
    for file in [&dcnet, &setup] {
        assert_eq!(support::mode(file), 0o600, "{}", file.display());
    }
    let after: Vec<_> = fs::read_dir(&group)
        .expect("group folder")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(before, after, "nothing written into the group folder");

    let blob = fs::read(&dcnet).expect("the DC-net blob");
    let node = Node::parse(&blob, NodeRole::Trustee).expect("a trustee blob");
    assert_eq!(node.index, 1);
    assert_eq!((node.clients, node.trustees, node.slots), (4, 2, 4));
    assert_eq!(node.session_id, [0; 16], "no epoch yet");
    assert!(
        node.pseudonym_keys().iter().all(|&b| b == 0),
        "no epoch yet"
    );
    assert_eq!(node.relay, Relay::Ipv4([192, 0, 2, 10]));
    let setup_bytes = fs::read(&setup).expect("the setup blob");
    let epoch_setup =
        dissent_core::provision::EpochSetup::parse(&setup_bytes).expect("a setup blob");
    assert_eq!(epoch_setup.trustees.len(), 2);
    let desc: serde_json::Value =
        serde_json::from_slice(&fs::read(Path::new(&group).join("group.json")).expect("group"))
            .expect("group.json");
    assert_eq!(
        Some(epoch_setup.epoch),
        desc["version"].as_u64(),
        "the epoch is the version's"
    );

    let out = run_once(
        &[
            "device",
            "provision",
            "--board",
            "pico2-w",
            "--wifi-ssid",
            "net",
            "--wifi-open",
            "--relay",
            "192.0.2.10:12345",
            &group,
            &clients[0],
        ],
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("runs hosted"), "{stderr}");
}
