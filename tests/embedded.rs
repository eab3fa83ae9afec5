//! The embedded shell under QEMU: the `netcheck` firmware on the emulated `mps2-an385` board.
//!
//! This test builds nothing: `scripts/test` builds the firmware first (`cd embedded && cargo
//! build-mps2-an385`), and a missing ELF fails the test with that instruction. Without
//! `qemu-system-arm` (installed by `scripts/setup`) the tests are skipped with a message.
//!
//! Each boot writes a fresh seed and a provisioning blob, runs QEMU with its console in a
//! file (printed if the test fails), and is killed by pid if it outlives its deadline.

use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The firmware, as `scripts/test` builds it.
const NETCHECK_ELF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../embedded/target/thumbv7m-none-eabi/release/netcheck"
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

/// Whether QEMU is there; if not, says why the test is skipped.
fn have_qemu() -> bool {
    match Command::new("qemu-system-arm").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        Ok(_) | Err(_) => {
            eprintln!("skipped: qemu-system-arm is not installed (scripts/setup installs it)");
            false
        }
    }
}

fn firmware() -> PathBuf {
    let elf = PathBuf::from(NETCHECK_ELF);
    assert!(
        elf.is_file(),
        "{} is missing: build the firmware first with `cd embedded && cargo build-mps2-an385` \
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
        Self::boot_with(dir, elf, true, provision, hostfwd)
    }

    /// Boots `elf`, with a fresh seed if `seed`.
    fn boot_with(
        dir: &Path,
        elf: &Path,
        seed: bool,
        provision: Option<&[u8]>,
        hostfwd: &[String],
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

/// A port below the ephemeral range that is free now, for QEMU's host forward.
fn free_port() -> u16 {
    let start = 20_000 + (std::process::id() % 5_000) as u16;
    (start..start + 2_000)
        .find(|&p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok())
        .expect("no free port for the host forward")
}

/// `len` bytes of xorshift output, different per `seed`.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

#[test]
fn netcheck_moves_bytes_both_ways_and_exits_zero() {
    if !have_qemu() {
        return;
    }
    let elf = firmware();
    let dir = tempfile::tempdir().expect("temp dir");
    let echo = Echo::start(BOOT_LIMIT);
    let host_port = free_port();
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
    let elf = firmware();
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
    let mut qemu = Qemu::boot_with(dir.path(), &elf, false, Some(&blob), &[]);
    assert_eq!(
        qemu.wait(BOOT_LIMIT).code(),
        Some(3),
        "exit status without a seed"
    );
    let console = qemu.console();
    assert!(console.contains("no fresh seed"), "console:\n{console}");
}
