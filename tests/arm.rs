//! The binary built for 32-bit Arm Linux (Raspberry Pi OS 32-bit, `armv7-unknown-linux-
//! gnueabihf`), run under QEMU user mode, as a trustee and as a client in a group whose relay
//! and other members are this machine's build: the Arm client's bytes go out through the
//! echo exit and come back identical, and the Arm trustee's pads take part in every exchange
//! (a group with a trustee that is wrong or absent decodes nothing).
//!
//! `DISSENT_ARM_BIN` names the Arm binary; `scripts/test` builds it and runs this test with
//! `DISSENT_REQUIRE_ARM` set. Where the binary is not given the test says so and passes,
//! unless `DISSENT_REQUIRE_ARM` is set: there it fails.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod support;
use support::{
    generate, pattern, relay_with_metrics, reserve_port, wait_metric, within, Captured, Group,
    FORM_TIMEOUT, TRANSFER_TIMEOUT,
};

/// The emulator and the Arm C library's root, as `.cargo/config.toml` runs Arm tests.
const QEMU: &str = "qemu-arm";
const SYSROOT: &str = "/usr/arm-linux-gnueabihf";

/// A process of the Arm binary under QEMU, killed and reaped when dropped.
struct ArmNode {
    name: String,
    child: Child,
    stderr: Captured,
}

impl ArmNode {
    fn start(bin: &str, name: &str, args: &[String]) -> ArmNode {
        let mut child = Command::new(QEMU)
            .args(["-L", SYSROOT, bin])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {QEMU} {bin} ({name}): {e}"));
        let stderr = Captured::collect(child.stderr.take().expect("stderr is piped"));
        ArmNode {
            name: name.to_string(),
            child,
            stderr,
        }
    }

    /// The port this client listens on, from its log.
    fn listening_port(&mut self) -> u16 {
        let deadline = std::time::Instant::now() + FORM_TIMEOUT;
        loop {
            if let Some(port) = support::port_after(&self.stderr.text(), "listening on") {
                return port;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}):\n{}", self.name, self.stderr.text());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} never said where it listens:\n{}",
                self.name,
                self.stderr.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ArmNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} (Arm) ---\n{}", self.name, self.stderr.text());
        }
    }
}

/// The Arm binary to run, or `None` (said why) when the test is skipped.
fn arm_bin() -> Option<String> {
    let required = std::env::var_os("DISSENT_REQUIRE_ARM").is_some();
    let Some(bin) = std::env::var_os("DISSENT_ARM_BIN") else {
        assert!(
            !required,
            "DISSENT_REQUIRE_ARM is set but DISSENT_ARM_BIN is not"
        );
        eprintln!(
            "skipped: DISSENT_ARM_BIN does not name a dissent built for \
             armv7-unknown-linux-gnueabihf (scripts/test builds one and runs this test)"
        );
        return None;
    };
    let bin = bin.to_string_lossy().into_owned();
    let runs = Command::new(QEMU)
        .args(["-L", SYSROOT, &bin, "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        assert!(
            !required,
            "{QEMU} cannot run {bin} (scripts/setup installs qemu-user and the Arm C library)"
        );
        eprintln!("skipped: {QEMU} cannot run {bin}");
        return None;
    }
    assert!(Path::new(&bin).is_file());
    Some(bin)
}

/// `argv` as the harness's `spawn` takes it.
fn as_strs(argv: &[String]) -> Vec<&str> {
    argv.iter().map(String::as_str).collect()
}

#[test]
fn an_arm_trustee_and_an_arm_client_carry_bytes_with_an_x86_64_relay() {
    let Some(bin) = arm_bin() else { return };
    within(Duration::from_secs(240), move |scope| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("cfg");
        generate(&cfg, 2, 2, reserve_port());
        let cfg_s = cfg.display().to_string();
        let relay = relay_with_metrics(scope, &cfg_s, &["--exit", "echo"]);
        let group = Group::new(&cfg);
        // Trustee 0 and client 0 are the Arm binary; trustee 1 and client 1 this machine's.
        let _arm_trustee = ArmNode::start(&bin, "trustee-0", &group.trustee(relay.port, 0, &[]));
        let native_trustee = group.trustee(relay.port, 1, &[]);
        let _native_trustee = scope.spawn("trustee-1", &as_strs(&native_trustee));
        let mut arm_client = ArmNode::start(&bin, "client-0", &group.client(relay.port, 0, 0, &[]));
        let arm_port = arm_client.listening_port();
        let native_client = group.client(relay.port, 1, 0, &[]);
        let mut native_client = scope.spawn("client-1", &as_strs(&native_client));
        let native_port = native_client.listening_port("listening on");
        wait_metric(relay.metrics, "dissent_online_clients", FORM_TIMEOUT, |v| {
            v == 2.0
        });

        // Each client's bytes come back through the echo exit, the Arm one's and the
        // native one's, so both clients' and both trustees' pads cancel in every exchange.
        for (port, seed) in [(arm_port, 1), (native_port, 2)] {
            let data = pattern(64 * 1024, seed);
            let mut s = support::connect(port, TRANSFER_TIMEOUT);
            s.set_read_timeout(Some(TRANSFER_TIMEOUT)).unwrap();
            let mut writer = s.try_clone().unwrap();
            let sent = data.clone();
            let write = std::thread::spawn(move || writer.write_all(&sent));
            let mut got = vec![0u8; data.len()];
            s.read_exact(&mut got)
                .unwrap_or_else(|e| panic!("echo through the client on {port}: {e}"));
            write.join().unwrap().unwrap();
            assert!(got == data, "the echo through the client on {port} differs");
        }
    });
}
