//! `dissent qemu`: one client or trustee of a group as device firmware on QEMU's emulated
//! `mps2-an385` board, beside hosted nodes.
//!
//! It picks the firmware by the key file's role ([`FIRMWARE_ENV`], then beside the binary,
//! then the build tree: [`firmware_candidates`]), checks the group fits what the firmware
//! declares it serves (the `DISSENT_*` symbols of `embedded/src/lib.rs`), writes the node's
//! provisioning blob (`dissent_core::provision::Node::to_blob`) and a fresh seed from the OS
//! RNG into memory files that QEMU reads (`platform::memory_file`: on Linux anonymous ones,
//! so no secret ever lands on a disk and none is left behind by a kill), and runs QEMU with user networking:
//! the device reaches the host's 127.0.0.1:P at 10.0.2.2:P, and a client's proxy port on the
//! device is forwarded from 127.0.0.1:HOST_PORT. The blobs go where the firmware's linker
//! script put its `PROVISION` and `SEED` areas (`_provision_start`, `_seed_start`), read
//! from the ELF.
//!
//! A trustee of a group folder boots the setup image first, which hands the board to the
//! DC-net image once the epoch is set up; `dissent qemu` then reads the epoch back from the
//! board ([`crate::tools::readback`]) and keeps it beside the key file, as a hosted trustee
//! keeps its own, and started again within the epoch boots the DC-net image with it at once
//! ([`group_trustee`]): the emulated board's stand-in for a real board's flash. Started
//! with no epoch kept while the relay serves one (stopped between the hand-over and
//! keeping it), the setup image takes the epoch back from the relay on a rejoin link, as
//! on a real board, rather than wait for a setup the relay never opens. A switch
//! the relay announces to the device ends the run ([`Ended::Switch`]) for the caller to
//! follow it as `dissent trustee` does.
//!
//! QEMU runs in its own process group, so a terminal's Ctrl-C reaches only this process,
//! which then stops QEMU; QEMU's exit status (the firmware's, through semihosting) is this
//! process's. The console passes through this process, which keeps its last lines: when
//! QEMU stops on its own it says how (the status and what it means) and shows them.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use dissent_core::provision::{self, SEED_LEN, SEED_MAGIC};
use dissent_core::wire::NodeRole;
use object::{Object, ObjectSection, ObjectSymbol};
use rand::RngCore;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tracing::{error, info, warn};

use crate::config::addr::{Host, HostPort};
use crate::config::{Group, NodeSecrets, Role};
use crate::device::group_setup;
use crate::platform::memory_file::MemoryFile;
use crate::platform::process_group;
use crate::process;
use crate::tools::readback::{self, ReadBack};

/// QEMU's Arm system emulator.
const QEMU: &str = "qemu-system-arm";
/// The emulated board the firmware is built for.
const MACHINE: &str = "mps2-an385";
/// Where `cd embedded && cargo build-mps2-an385` puts the firmware of the emulated board.
const FIRMWARE_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../embedded/target/thumbv7m-none-eabi/release"
);
/// A folder holding the emulated board's `trustee` and `client` firmware, searched first.
pub const FIRMWARE_ENV: &str = "DISSENT_FIRMWARE_DIR";
/// The folder beside the `dissent` binary that holds the emulated board's firmware.
const FIRMWARE_BESIDE: &str = "firmware/mps2-an385";
/// Console lines kept to show when QEMU stops.
const CONSOLE_TAIL: usize = 12;
/// The client's proxy port on the device; the host's `-p` port is forwarded to it.
pub const DEVICE_PROXY_PORT: u16 = crate::device::DEVICE_PROXY_PORT;
/// The host's loopback as the device sees it under QEMU user networking.
const HOST_FROM_DEVICE: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// Tests only: `dissent qemu` kills QEMU and exits with [`STOPPED_BEFORE_KEEPING`] as soon
/// as the setup image hands over, before it reads the epoch back and keeps it (a crash at
/// that point, made deterministic).
pub const STOP_BEFORE_KEEPING_ENV: &str = "DISSENT_QEMU_TEST_STOP_BEFORE_KEEPING";
/// The exit status of a run stopped by [`STOP_BEFORE_KEEPING_ENV`].
pub const STOPPED_BEFORE_KEEPING: i32 = 86;
/// How long QEMU has to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What `dissent qemu` needs beyond the group and the node's keys.
#[derive(Debug, Clone)]
pub struct QemuOptions {
    /// The firmware ELF (default: the release build under `embedded/target`).
    pub firmware: Option<PathBuf>,
    /// The relay's address as this machine reaches it.
    pub relay: HostPort,
    /// A client's host port, forwarded to its proxy port on the device.
    pub port: Option<u16>,
    /// A file for the device's console instead of the terminal.
    pub console: Option<PathBuf>,
    /// A later run of the same `dissent qemu` (after a switch): the console file is
    /// appended to, not started anew.
    pub console_continues: bool,
    /// Smallest interval the node takes part in.
    pub min_clients: u16,
    /// A trustee of a group folder that sets its epoch up on the device ([`group_trustee`]).
    pub setup: Option<SetupImage>,
    /// A trustee of a group folder: a switch the relay announces to the device ends the run
    /// ([`Ended::Switch`]).
    pub group_trustee: bool,
}

/// A device trustee's epoch setup: what its setup image is given, and where the epoch it
/// establishes is kept for a restart within it.
#[derive(Debug, Clone)]
pub struct SetupImage {
    /// The setup image's blob (`dissent_core::provision::EpochSetup`).
    pub blob: Vec<u8>,
    /// The setup image to boot (default: `trustee-setup` where the firmware is looked for).
    pub firmware: Option<PathBuf>,
    /// The group version it sets up.
    pub desc: crate::config::group::GroupDesc,
    /// The trustee's key file, beside which the established epoch is kept
    /// (`crate::setup::keep_device_epoch`).
    pub key_file: PathBuf,
}

/// What the emulated board boots for a trustee of a group folder.
#[derive(Debug)]
pub enum GroupStart {
    /// The epoch kept beside the key file is the version's: the DC-net image serves it at
    /// once, with no new setup (as a hosted trustee rejoins its epoch).
    Rejoin(Group, NodeSecrets),
    /// The setup image sets the version's epoch up first: the group with the epoch's
    /// session id and pseudonym keys left zero (the setup image writes them), and its blob.
    Setup(Group, NodeSecrets, Vec<u8>),
}

/// What a device trustee of a group folder boots: the DC-net image with the kept epoch when
/// it is still the group's (the version in the folder), else the setup image
/// ([`group_setup`]), which first asks the relay for the epoch on a rejoin link (when the
/// relay serves one this trustee signed: `dissent qemu` stopped between the hand-over and
/// keeping it) and sets it up only when the relay is setting it up. Says which, and why.
pub fn group_trustee(
    desc: &crate::config::group::GroupDesc,
    keys: &crate::config::keys::PrivateKeys,
    key_file: &Path,
) -> Result<GroupStart> {
    let epoch = crate::setup::epoch_of(desc);
    if let Some((group, node)) = crate::setup::rejoin_trustee(desc, keys, key_file)? {
        info!(
            "rejoining epoch {epoch} (session {}), kept beside {}: no new setup; booting the \
             DC-net image with it",
            hex::encode(group.session_id),
            key_file.display()
        );
        return Ok(GroupStart::Rejoin(group, node));
    }
    info!(
        "setting up epoch {epoch} of group version {} on the device (or taking it back from \
         the relay, which established it already): no epoch of this version kept beside {}",
        desc.version,
        key_file.display()
    );
    let (group, node, blob) = group_setup(desc, keys)?;
    Ok(GroupStart::Setup(group, node, blob))
}

/// What a firmware ELF declares: its app, capacity and provisioning areas.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Firmware {
    path: PathBuf,
    app: [u8; 4],
    max_clients: u32,
    max_slots: u32,
    max_frame: u32,
    provision_start: u64,
    provision_end: u64,
    seed_start: u64,
    /// Where the image's vector table is (the board boots the one at its reset address).
    vector_table: u64,
    /// A setup image's own blob's place (`_setup_start`).
    setup_start: Option<u64>,
}

/// The trustee's setup image's name (`cargo build-mps2-an385-setup`).
pub const SETUP_IMAGE: &str = "trustee-setup";

/// How a run of QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The exit status to pass on (0 when stopped by Ctrl-C or SIGTERM).
    Exit(i32),
    /// A group folder's trustee was told the group switches to a new version (the relay's
    /// `Goodbye{Switch}`, on the device's console): QEMU is stopped, for the caller to fetch
    /// the version and set its epoch up, as `dissent trustee` does.
    Switch,
}

/// What a group folder's trustee says on its console that `dissent qemu` acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceSaid {
    /// The setup image hands over: the DC-net blob holds the epoch.
    HandedOver,
    /// The relay said the group switches to a new version.
    Switch,
}

/// Boots `node` of `group` under QEMU until QEMU exits, this process is asked to stop, or
/// (a group folder's trustee) the group switches to a new version.
pub async fn run(group: Group, node: NodeSecrets, opts: QemuOptions) -> Result<Ended> {
    let role = match node.role {
        Role::Client(_) => NodeRole::Client,
        Role::Trustee(_) => NodeRole::Trustee,
        Role::Relay => bail!("`dissent qemu` runs a client or a trustee, not the relay"),
    };
    let forward = match (role, opts.port) {
        (NodeRole::Client, port) => Some(port.unwrap_or(DEVICE_PROXY_PORT)),
        (NodeRole::Trustee, None) => None,
        (NodeRole::Trustee, Some(_)) => {
            bail!(
                "-p forwards a client's proxy port; {} is a trustee and has none",
                node.id
            )
        }
    };
    check_qemu().await?;
    let firmware = match &opts.firmware {
        Some(path) => Firmware::read(path)?,
        None => Firmware::find(role)?,
    };
    firmware.check_fits(&group, role)?;
    if let Some(port) = forward {
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).with_context(|| {
            format!("cannot forward 127.0.0.1:{port} to the device; choose another port with -p")
        })?;
    }

    let (relay_addr, relay_port) = device_relay(&opts.relay).await?;
    let blob = node_blob(&group, &node, (relay_addr, relay_port), opts.min_clients)?;
    let setup = match &opts.setup {
        Some(setup) => {
            let image = match &setup.firmware {
                Some(path) => Firmware::read(path)?,
                None => Firmware::find_named(SETUP_IMAGE)?,
            };
            image.check_setup(&group, &firmware, &setup.blob)?;
            Some((image, setup))
        }
        None => None,
    };
    let room = match &setup {
        Some((image, _)) => image.provision_end.min(firmware.provision_end),
        None => firmware.provision_end,
    }
    .saturating_sub(firmware.provision_start);
    if blob.len() as u64 > room {
        bail!(
            "{}'s provisioning blob is {} bytes; {} has room for {room}",
            node.id,
            blob.len(),
            firmware.path.display()
        );
    }

    // Secrets: in memory only, for QEMU to read through the descriptors it inherits.
    let provision_file = MemoryFile::new("dissent-provision", &blob)
        .context("cannot create a memory file for the provisioning blob")?;
    let seed_file = MemoryFile::new("dissent-seed", &seed()?)
        .context("cannot create a memory file for the seed")?;
    // A device that sets its epoch up: QEMU's monitor, on a socket only this process holds,
    // saves its provisioning area into a memory file once it has handed over.
    let mut readback = match &setup {
        Some(_) => match ReadBack::new() {
            Ok(r) => Some(r),
            Err(e) => {
                warn!(
                    "the epoch the device sets up cannot be read back ({e:#}); it is not \
                     kept, and a restart sets it up again"
                );
                None
            }
        },
        None => None,
    };

    let mut nic = "user,model=lan9118".to_string();
    if let Some(port) = forward {
        nic.push_str(&format!(
            ",hostfwd=tcp:127.0.0.1:{port}-:{DEVICE_PROXY_PORT}"
        ));
    }
    let mut cmd = process::child_command(Path::new(QEMU));
    cmd.args(["-machine", MACHINE, "-cpu", "cortex-m3"])
        .args(["-display", "none", "-monitor", "none", "-serial", "null"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-nic", &nic]);
    // A group folder's trustee: the board boots the setup image (its vector table is the
    // core's at reset), which hands the board to the DC-net image, loaded beside it.
    let setup_file = match &setup {
        Some((image, setup)) => {
            let file = MemoryFile::new("dissent-setup", &setup.blob)
                .context("cannot create a memory file for the setup blob")?;
            // The DC-net image as the bytes its flash holds: both ELFs have RAM segments,
            // which QEMU would refuse to load twice.
            let (at, flat) = flash_image(&firmware.path)?;
            let dcnet = MemoryFile::new("dissent-dcnet", &flat)
                .context("cannot create a memory file for the DC-net image")?;
            cmd.arg("-kernel")
                .arg(&image.path)
                .arg("-global")
                .arg(format!("armv7m.init-nsvtor={:#x}", image.vector_table))
                .arg("-device")
                .arg(loader(&dcnet.path(), at))
                .arg("-device")
                .arg(loader(&file.path(), image.setup_start.unwrap_or(0)));
            Some((file, dcnet))
        }
        None => {
            cmd.arg("-kernel").arg(&firmware.path);
            None
        }
    };
    cmd.arg("-device")
        .arg(loader(&seed_file.path(), firmware.seed_start))
        .arg("-device")
        .arg(loader(&provision_file.path(), firmware.provision_start));
    let console: Option<Arc<Mutex<File>>> = match &opts.console {
        Some(file) => {
            let opened = if opts.console_continues {
                fs::OpenOptions::new().create(true).append(true).open(file)
            } else {
                File::create(file)
            };
            Some(Arc::new(Mutex::new(opened.with_context(|| {
                format!("cannot write the console to {}", file.display())
            })?)))
        }
        None => None,
    };
    if let Some(readback) = &readback {
        cmd.args(readback.qemu_args());
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {QEMU}"))?;
    // What a group folder's trustee says on its console that this process acts on.
    let (said, mut device_said) = match opts.group_trustee {
        true => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        }
        false => (None, None),
    };
    if let Some(r) = readback.as_mut() {
        r.started()?;
    }
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let mut copies = Vec::new();
    if let Some(out) = child.stdout.take() {
        copies.push(tokio::spawn(pass_console(
            out,
            console.clone(),
            tail.clone(),
            said,
        )));
    }
    if let Some(err) = child.stderr.take() {
        copies.push(tokio::spawn(pass_console(
            err,
            console.clone(),
            tail.clone(),
            None,
        )));
    }
    info!(
        "{} ({}) booting under QEMU {MACHINE}; relay {relay_addr}:{relay_port} as the device sees it{}",
        node.id,
        firmware.path.display(),
        match forward {
            Some(port) => format!("; proxy 127.0.0.1:{port} -> device port {DEVICE_PROXY_PORT}"),
            None => String::new(),
        }
    );
    let shutdown = process::shutdown_signal();
    tokio::pin!(shutdown);
    let status = loop {
        let said = async {
            match device_said.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => break status.with_context(|| format!("waiting for {QEMU}"))?,
            _ = &mut shutdown => {
                info!("stopping QEMU");
                stop(&mut child).await;
                return Ok(Ended::Exit(0));
            }
            said = said => match said {
                Some(DeviceSaid::HandedOver) => {
                    if std::env::var_os(STOP_BEFORE_KEEPING_ENV).is_some() {
                        // A test's crash at the worst moment: the epoch is established and
                        // nothing kept it.
                        warn!("{STOP_BEFORE_KEEPING_ENV} is set: stopping before keeping the epoch");
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        std::process::exit(STOPPED_BEFORE_KEEPING);
                    }
                    if let (Some(r), Some((_, setup))) = (readback.as_mut(), &setup) {
                        keep_epoch(r, &blob, firmware.provision_start, setup).await;
                    }
                }
                Some(DeviceSaid::Switch) => {
                    info!(
                        "the relay told the device that the group switches to a new version: \
                         stopping QEMU to follow the switch"
                    );
                    stop(&mut child).await;
                    return Ok(Ended::Switch);
                }
                // The console ended: QEMU is stopping.
                None => device_said = None,
            },
        }
    };
    for copy in copies {
        // The pipes close with QEMU; a copy that failed has nothing more to give.
        let _ = copy.await;
    }
    // QEMU has read the blobs long since; this process's copies go now.
    drop((provision_file, seed_file, setup_file));
    let code = process_group::exit_code(status);
    if code != 0 {
        let lines: Vec<String> = tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        error!(
            "QEMU stopped: {}; its last console lines:\n{}",
            why_stopped(status),
            if lines.is_empty() {
                "  (none)".to_string()
            } else {
                lines
                    .iter()
                    .map(|l| format!("  {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        );
    }
    Ok(Ended::Exit(code))
}

/// The setup image's console line as it hands the board to the DC-net image
/// (`embedded/src/bin/trustee-setup.rs`): the DC-net blob is complete by then.
const HAND_OVER_LINE: &str = "trustee setup: handing over to the DC-net trustee";

/// What the device's console says when the relay ends its link for a switch (the core's
/// words: `PeerError`'s `Display`, which the firmware prints in its `link lost` line).
fn switch_line() -> String {
    dissent_core::error::PeerError::Goodbye(dissent_core::wire::GoodbyeReason::Switch).to_string()
}

/// What a console `line` of a group folder's trustee says that its shell acts on.
fn device_said(line: &str, switch: &str) -> Option<DeviceSaid> {
    if line.starts_with(HAND_OVER_LINE) {
        Some(DeviceSaid::HandedOver)
    } else if line.contains(switch) {
        Some(DeviceSaid::Switch)
    } else {
        None
    }
}

/// Reads back the epoch the device wrote into its DC-net blob (`written`, loaded at `at`)
/// and keeps it beside the trustee's key file; says what it did.
async fn keep_epoch(readback: &mut ReadBack, written: &[u8], at: u64, setup: &SetupImage) {
    let kept = async {
        let read = readback.memory(at, written.len()).await?;
        let (session_id, slots) = readback::completed_epoch(written, &read)?;
        let path =
            crate::setup::keep_device_epoch(&setup.desc, &setup.key_file, session_id, &slots)?;
        anyhow::Ok((session_id, path))
    }
    .await;
    let epoch = crate::setup::epoch_of(&setup.desc);
    match kept {
        Ok((session_id, path)) => info!(
            "epoch {epoch} established on the device (session {}), read back from its \
             provisioning area and kept in {}: a restart within the epoch rejoins it",
            hex::encode(session_id),
            path.display()
        ),
        Err(e) => warn!(
            "epoch {epoch} established on the device is not kept ({e:#}): a restart sets it \
             up again"
        ),
    }
}

/// Copies QEMU's output line by line to the console file (or this process's standard
/// output), keeping the last [`CONSOLE_TAIL`] lines in `tail`; tells `said` of the lines a
/// group folder's trustee's shell acts on ([`device_said`]).
async fn pass_console(
    from: impl AsyncRead + Unpin,
    file: Option<Arc<Mutex<File>>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    said: Option<tokio::sync::mpsc::UnboundedSender<DeviceSaid>>,
) {
    let switch = switch_line();
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let (Some(tx), Some(what)) = (&said, device_said(&line, &switch)) {
            // Nobody listens any more only when QEMU is being stopped.
            let _ = tx.send(what);
        }
        match &file {
            Some(file) => {
                if let Ok(mut f) = file.lock() {
                    // A full disk loses console lines, not the node.
                    let _ = writeln!(f, "{line}");
                }
            }
            None => println!("{line}"),
        }
        if let Ok(mut t) = tail.lock() {
            if t.len() == CONSOLE_TAIL {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}

/// How QEMU stopped, in words: its exit status is the firmware's (see embedded/README.md).
fn why_stopped(status: ExitStatus) -> String {
    match (status.code(), process_group::signal_of(status)) {
        (Some(code), _) => {
            let meaning = match code {
                1 => "the firmware stopped on an error it printed",
                2 => "netcheck did not finish in time",
                3 => "the board could not start (no seed, no Ethernet)",
                101 => {
                    "the firmware panicked (a firmware built with the `panic-messages` \
                     feature prints where)"
                }
                102 => "a hard fault or an unexpected interrupt",
                103 => "the stack overflowed",
                104 => "the watchdog fired: the firmware stopped making progress",
                _ => "QEMU's own failure, or a status the firmware does not use",
            };
            format!("exit status {code} ({meaning})")
        }
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "for no reason the system gave".to_string(),
    }
}

/// Fails with how to install QEMU when it is not there.
async fn check_qemu() -> Result<()> {
    let found = tokio::process::Command::new(QEMU)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    match found {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => bail!("`{QEMU} --version` failed ({status})"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{QEMU} not found: `dissent qemu` needs QEMU's Arm system emulator (scripts/setup \
             installs it; on Debian: apt-get install qemu-system-arm)"
        ),
        Err(e) => bail!("cannot run {QEMU}: {e}"),
    }
}

/// The firmware binary's name for `role`.
fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Client => "client",
        NodeRole::Trustee => "trustee",
    }
}

/// Where `dissent qemu` looks for the emulated board's firmware for `role`, in order:
/// `$DISSENT_FIRMWARE_DIR/APP`, `firmware/mps2-an385/APP` beside the `dissent` binary,
/// the same under `../share/dissent/` from it (an installed layout), and the release build
/// in the source tree this binary was built from.
pub fn firmware_candidates(role: NodeRole) -> Vec<PathBuf> {
    candidates_named(role_name(role))
}

/// Where [`firmware_candidates`] looks, for the image named `app`.
fn candidates_named(app: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Some(dir) = std::env::var_os(FIRMWARE_ENV) {
        found.push(Path::new(&dir).join(app));
    }
    if let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        found.push(bin.join(FIRMWARE_BESIDE).join(app));
        found.push(bin.join("../share/dissent").join(FIRMWARE_BESIDE).join(app));
    }
    found.push(Path::new(FIRMWARE_DIR).join(app));
    found
}

impl Firmware {
    /// The first firmware for `role` found where [`firmware_candidates`] looks.
    fn find(role: NodeRole) -> Result<Firmware> {
        let candidates = firmware_candidates(role);
        match candidates.iter().find(|p| p.is_file()) {
            Some(path) => Firmware::read(path),
            None => bail!(
                "no {} firmware found; looked at:\n{}\nbuild it with `cd embedded && cargo \
                 build-mps2-an385` in the dissent-rs source tree, put it in one of these \
                 places (${FIRMWARE_ENV} names a folder), or give one with --firmware ELF",
                role_name(role),
                candidates
                    .iter()
                    .map(|p| format!("  {}", p.display()))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }

    /// Reads what the ELF at `path` declares.
    fn read(path: &Path) -> Result<Firmware> {
        let data = fs::read(path)
            .with_context(|| format!("cannot read the firmware {}", path.display()))?;
        Firmware::parse(path, &data)
    }

    /// Reads the declarations out of the ELF image `data`.
    fn parse(path: &Path, data: &[u8]) -> Result<Firmware> {
        let shown = path.display();
        let elf =
            object::File::parse(data).with_context(|| format!("{shown} is not an ELF file"))?;
        if elf.architecture() != object::Architecture::Arm {
            bail!(
                "{shown} is not Arm firmware (it is for {:?})",
                elf.architecture()
            );
        }
        let symbol = |name: &str| {
            elf.symbols()
                .find(|s| s.name() == Ok(name))
                .with_context(|| {
                    format!(
                        "{shown} does not declare {name}: is it dissent firmware for the \
                     {MACHINE} board, built from this tree?"
                    )
                })
        };
        let bytes = |name: &str, len: usize| -> Result<Vec<u8>> {
            let s = symbol(name)?;
            let section = s
                .section_index()
                .and_then(|i| elf.section_by_index(i).ok())
                .with_context(|| format!("{shown}: {name} is in no section"))?;
            let data = section
                .data_range(s.address(), len as u64)
                .ok()
                .flatten()
                .with_context(|| format!("{shown}: {name} has no contents"))?;
            Ok(data.to_vec())
        };
        let word = |name: &str| -> Result<u32> {
            let b = bytes(name, 4)?;
            // `bytes` returned exactly 4 bytes.
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let app = bytes("DISSENT_APP", 4)?;
        Ok(Firmware {
            path: path.to_path_buf(),
            app: [app[0], app[1], app[2], app[3]],
            max_clients: word("DISSENT_MAX_CLIENTS")?,
            max_slots: word("DISSENT_MAX_SLOTS")?,
            max_frame: word("DISSENT_MAX_FRAME")?,
            provision_start: symbol("_provision_start")?.address(),
            provision_end: symbol("_provision_end")?.address(),
            seed_start: symbol("_seed_start")?.address(),
            vector_table: elf
                .section_by_name(".vector_table")
                .map(|s| s.address())
                .with_context(|| format!("{shown} has no vector table"))?,
            setup_start: symbol("_setup_start").ok().map(|s| s.address()),
        })
    }

    /// The first image named `name` found where [`firmware_candidates`] looks.
    fn find_named(name: &str) -> Result<Firmware> {
        let candidates = candidates_named(name);
        match candidates.iter().find(|p| p.is_file()) {
            Some(path) => Firmware::read(path),
            None => bail!(
                "no {name} image found; looked at:\n{}\nbuild it with `cd embedded && cargo \
                 build-mps2-an385-setup` in the dissent-rs source tree, put it in one of these \
                 places (${FIRMWARE_ENV} names a folder), or give one with --setup-firmware ELF",
                candidates
                    .iter()
                    .map(|p| format!("  {}", p.display()))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }

    /// Refuses a setup image that is not one, does not serve the group, or does not share
    /// the board with the DC-net image `dcnet` as its memory map says it must.
    fn check_setup(&self, group: &Group, dcnet: &Firmware, setup_blob: &[u8]) -> Result<()> {
        let shown = self.path.display();
        if self.app != provision::SETUP_APP {
            bail!(
                "{shown} is firmware for app {}, not the trustee's setup image ({SETUP_IMAGE})",
                String::from_utf8_lossy(&self.app)
            );
        }
        if group.clients.len() > self.max_clients as usize {
            bail!(
                "the group has {} clients; this setup image ({shown}) sets up groups of up to {}",
                group.clients.len(),
                self.max_clients
            );
        }
        let Some(setup_start) = self.setup_start else {
            bail!("{shown} has no setup blob area (_setup_start)");
        };
        if self.provision_start != dcnet.provision_start
            || self.seed_start != dcnet.seed_start
            || self.vector_table == dcnet.vector_table
        {
            bail!(
                "{shown} and {} do not share the board: their provisioning and seed areas \
                 must be the same and their images apart",
                dcnet.path.display()
            );
        }
        if setup_start + setup_blob.len() as u64 > dcnet.seed_start {
            bail!(
                "the setup blob of {} bytes does not fit its area",
                setup_blob.len()
            );
        }
        Ok(())
    }

    /// Refuses a firmware for another role, or a group larger than the firmware serves.
    fn check_fits(&self, group: &Group, role: NodeRole) -> Result<()> {
        let shown = self.path.display();
        let want = provision::app_for(role);
        if self.app != want {
            bail!(
                "{shown} is firmware for app {}, but the key file is a {}'s (app {}); give \
                 the {} firmware",
                String::from_utf8_lossy(&self.app),
                role_name(role),
                String::from_utf8_lossy(&want),
                role_name(role)
            );
        }
        let (clients, slots) = (group.clients.len(), group.slots.len());
        if clients > self.max_clients as usize || slots > self.max_slots as usize {
            bail!(
                "the group has {clients} clients and {slots} slots; this {} firmware ({shown}) \
                 serves groups of up to {} clients and {} slots",
                role_name(role),
                self.max_clients,
                self.max_slots
            );
        }
        let needed = min_node_frame(group);
        if needed > self.max_frame as usize {
            bail!(
                "the group's frames need a limit of {needed} bytes (cell length {}, {clients} \
                 clients, {} trustees); this firmware ({shown}) takes frames of up to {} bytes",
                group.cell_length,
                group.trustees.len(),
                self.max_frame
            );
        }
        Ok(())
    }
}

/// The provisioning blob of `node` of `group` on the emulated board, which reaches the relay
/// at `relay`.
fn node_blob(
    group: &Group,
    node: &NodeSecrets,
    (relay_addr, relay_port): (Ipv4Addr, u16),
    min_clients: u16,
) -> Result<Vec<u8>> {
    let peers = crate::device::peer_keys(group, &node.role);
    let pseudonym = crate::device::pseudonym_bytes(group, node);
    let device = crate::device::node_config(
        group,
        node,
        &peers,
        &pseudonym,
        crate::device::DeviceSettings {
            relay: dissent_core::provision::Relay::Ipv4(relay_addr.octets()),
            relay_port,
            local_port: DEVICE_PROXY_PORT,
            min_clients,
            ipv4: None,
            wifi: None,
        },
    )?;
    Ok(device.to_blob())
}

/// The smallest frame limit the relay accepts from a member of `group`.
fn min_node_frame(group: &Group) -> usize {
    let clamp = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
    dissent_core::relay::min_node_frame(
        group.cell_length,
        clamp(group.clients.len()),
        clamp(group.trustees.len()),
        clamp(group.slots.len()),
    )
}

/// The relay's IPv4 address and port as the device reaches them: this machine's own
/// addresses are 10.0.2.2 under QEMU user networking; other addresses are reached through
/// QEMU's NAT as they are.
async fn device_relay(relay: &HostPort) -> Result<(Ipv4Addr, u16)> {
    let port = relay.port();
    let ip = match relay.host() {
        Host::Ip(ip) => *ip,
        Host::Name(name) => {
            let found: Vec<_> = tokio::net::lookup_host((name.as_str(), port))
                .await
                .with_context(|| format!("cannot resolve the relay's host {name}"))?
                .collect();
            found
                .iter()
                .find(|a| a.is_ipv4())
                .or(found.first())
                .map(|a| a.ip())
                .with_context(|| format!("{name} has no address"))?
        }
    };
    Ok((
        device_ip(ip).with_context(|| {
            format!("the relay's address {ip} is IPv6; the device speaks IPv4 only")
        })?,
        port,
    ))
}

/// `ip` as the device reaches it; `None` for IPv6 other than loopback.
fn device_ip(ip: IpAddr) -> Option<Ipv4Addr> {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) if v6.is_loopback() || v6.is_unspecified() => Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6.to_ipv4_mapped()?,
    };
    if v4.is_loopback() || v4.is_unspecified() {
        Some(HOST_FROM_DEVICE)
    } else {
        Some(v4)
    }
}

/// A seed blob of fresh OS entropy for one boot.
fn seed() -> Result<Vec<u8>> {
    let mut bytes = [0u8; SEED_LEN];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| anyhow!("no entropy from the OS: {e}"))?;
    Ok([SEED_MAGIC.as_slice(), &bytes].concat())
}

/// The flash contents of the ELF image at `path`: every loaded segment that has bytes in
/// the file, at its load address below the RAM (`.data`'s initial image included), end to
/// end from the lowest; returns that address and the bytes.
fn flash_image(path: &Path) -> Result<(u64, Vec<u8>)> {
    use object::read::elf::{ElfFile32, ProgramHeader};
    let shown = path.display();
    let data = fs::read(path).with_context(|| format!("cannot read {shown}"))?;
    let elf = ElfFile32::<object::Endianness>::parse(&*data)
        .with_context(|| format!("{shown} is not a 32-bit ELF file"))?;
    let endian = elf.endian();
    let mut parts = Vec::new();
    for ph in elf.elf_program_headers() {
        let (at, len) = (u64::from(ph.p_paddr(endian)), ph.p_filesz(endian));
        if ph.p_type(endian) != object::elf::PT_LOAD || len == 0 || at >= RAM_START {
            continue;
        }
        let bytes = ph
            .data(endian, &*data)
            .map_err(|_| anyhow!("{shown}: a segment lies outside the file"))?;
        parts.push((at, bytes));
    }
    let start = parts.iter().map(|(at, _)| *at).min();
    let end = parts.iter().map(|(at, b)| at + b.len() as u64).max();
    let (Some(start), Some(end)) = (start, end) else {
        bail!("{shown} has nothing to load into flash");
    };
    let mut flat = vec![0u8; usize::try_from(end - start)?];
    for (at, bytes) in parts {
        let from = usize::try_from(at - start)?;
        flat[from..from + bytes.len()].copy_from_slice(bytes);
    }
    Ok((start, flat))
}

/// Where the emulated board's RAM begins; below it is its code memory ("flash").
const RAM_START: u64 = 0x2000_0000;

/// QEMU's option that loads `file` at `addr` before the board starts.
fn loader(file: &Path, addr: u64) -> String {
    format!("loader,file={},addr={addr:#x}", file.display())
}

/// Stops QEMU: SIGTERM, then SIGKILL if it lingers.
async fn stop(child: &mut tokio::process::Child) {
    crate::process::stop_child(child, STOP_TIMEOUT).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_10_0_2_2_and_other_addresses_stay() {
        let v4 = |s: &str| device_ip(s.parse().unwrap());
        assert_eq!(v4("127.0.0.1"), Some(HOST_FROM_DEVICE));
        assert_eq!(v4("127.3.2.1"), Some(HOST_FROM_DEVICE));
        assert_eq!(v4("0.0.0.0"), Some(HOST_FROM_DEVICE));
        assert_eq!(v4("::1"), Some(HOST_FROM_DEVICE));
        assert_eq!(v4("192.0.2.7"), Some(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(v4("::ffff:192.0.2.7"), Some(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(v4("2001:db8::1"), None);
    }

    #[tokio::test]
    async fn a_name_resolves_to_ipv4_as_the_device_sees_it() {
        let relay: HostPort = "localhost:7000".parse().unwrap();
        assert_eq!(
            device_relay(&relay).await.unwrap(),
            (HOST_FROM_DEVICE, 7000)
        );
    }

    #[test]
    fn a_seed_is_fresh_each_time() {
        let (a, b) = (seed().unwrap(), seed().unwrap());
        assert_eq!(a.len(), 4 + SEED_LEN);
        assert_eq!(provision::parse_seed(&a).unwrap().len(), SEED_LEN);
        assert_ne!(a, b);
    }

    #[cfg(unix)]
    #[test]
    fn stops_are_explained() {
        use std::os::unix::process::ExitStatusExt;
        assert!(why_stopped(ExitStatus::from_raw(101 << 8)).contains("panicked"));
        assert!(why_stopped(ExitStatus::from_raw(libc::SIGKILL)).contains("signal 9"));
    }

    #[test]
    fn firmware_is_looked_for_in_the_named_folder_first() {
        let found = firmware_candidates(NodeRole::Trustee);
        assert!(found.last().unwrap().ends_with("release/trustee"));
        assert!(found
            .iter()
            .any(|p| p.ends_with("firmware/mps2-an385/trustee")));
    }

    /// A group version of a relay, two trustees and two clients, and trustee 1's keys.
    fn group_version() -> (
        crate::config::group::GroupDesc,
        crate::config::keys::PrivateKeys,
    ) {
        use crate::config::group::{GroupDesc, GroupPolicy};
        use crate::config::keys::{KeyRole, PrivateKeys};
        let relay: HostPort = "127.0.0.1:7000".parse().unwrap();
        let mut desc = GroupDesc::new(&relay, GroupPolicy::default());
        let mut trustee = None;
        for (role, name) in [
            (KeyRole::Relay, "r"),
            (KeyRole::Trustee, "t0"),
            (KeyRole::Trustee, "t1"),
            (KeyRole::Client, "c0"),
            (KeyRole::Client, "c1"),
        ] {
            let keys = PrivateKeys::generate(role, name).unwrap();
            desc.add(keys.public()).unwrap();
            if name == "t1" {
                trustee = Some(keys);
            }
        }
        desc.changed();
        (desc, trustee.unwrap())
    }

    /// The setup image's writes: `session_id` and `slots` at their places in `blob`.
    fn complete(blob: &[u8], session_id: [u8; 16], slots: &[[u8; 32]]) -> Vec<u8> {
        let node = provision::Node::parse(blob, NodeRole::Trustee).unwrap();
        let keys_at = node.pseudonym_keys().as_ptr() as usize - blob.as_ptr() as usize;
        let mut completed = blob.to_vec();
        let at = node.session_id_offset();
        completed[at..at + 16].copy_from_slice(&session_id);
        for (i, key) in slots.iter().enumerate() {
            completed[keys_at + 32 * i..][..32].copy_from_slice(key);
        }
        completed
    }

    #[test]
    fn a_kept_epoch_boots_the_blob_the_setup_image_completed_and_only_in_its_version() {
        let (desc, keys) = group_version();
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("t1.json");
        let relay = (HOST_FROM_DEVICE, 7000);
        // Nothing kept: the setup image takes the epoch back or sets it up.
        let GroupStart::Setup(group, node, _) = group_trustee(&desc, &keys, &key_file).unwrap()
        else {
            panic!("set up with nothing kept");
        };
        let written = node_blob(&group, &node, relay, 2).unwrap();
        let (session_id, slots) = ([9u8; 16], vec![[0x11u8; 32], [0x22; 32]]);
        let completed = complete(&written, session_id, &slots);
        let (read_id, read_slots) = readback::completed_epoch(&written, &completed).unwrap();
        assert_eq!((read_id, &read_slots), (session_id, &slots));
        let kept = crate::setup::keep_device_epoch(&desc, &key_file, read_id, &read_slots).unwrap();
        assert!(kept.is_file(), "{}", kept.display());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&kept).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", kept.display());
        }
        // Kept: a restart boots the DC-net image with the very blob the device completed.
        let GroupStart::Rejoin(group, node) = group_trustee(&desc, &keys, &key_file).unwrap()
        else {
            panic!("no rejoin with the epoch kept");
        };
        assert_eq!(node_blob(&group, &node, relay, 2).unwrap(), completed);
        // The group moved on to its next version: the kept epoch is not served.
        let mut next = desc.clone();
        next.changed();
        assert!(matches!(
            group_trustee(&next, &keys, &key_file).unwrap(),
            GroupStart::Setup(..)
        ));
    }

    #[test]
    fn a_real_boards_blobs_are_what_dissent_qemu_writes() {
        let (desc, keys) = group_version();
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("t1.key");
        let opts = crate::device::ProvisionOptions {
            board: crate::device::BoardKind::Mps2An385,
            relay: "10.0.2.2:7000".parse().unwrap(),
            local_port: DEVICE_PROXY_PORT,
            min_clients: 2,
            out: None,
            wifi: None,
            ipv4: None,
        };
        let (dcnet, setup) = crate::device::provision_group(&desc, &keys, &key_file, opts).unwrap();
        assert_eq!(dcnet, dir.path().join("t1.mps2-an385.bin"));
        assert_eq!(setup, dir.path().join("t1.mps2-an385.setup.bin"));
        // What `dissent qemu` loads into the emulated board for the same trustee.
        let (group, node, setup_blob) = group_setup(&desc, &keys).unwrap();
        let written = node_blob(&group, &node, (HOST_FROM_DEVICE, 7000), 2).unwrap();
        assert_eq!(fs::read(&dcnet).unwrap(), written);
        assert_eq!(fs::read(&setup).unwrap(), setup_blob);
        #[cfg(unix)]
        for file in [&dcnet, &setup] {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
    }

    #[test]
    fn a_blob_read_back_is_kept_only_with_an_epoch_and_nothing_else_changed() {
        let (desc, keys) = group_version();
        let (group, node, _) = group_setup(&desc, &keys).unwrap();
        let written = node_blob(&group, &node, (HOST_FROM_DEVICE, 7000), 2).unwrap();
        let slots = [[0x11u8; 32], [0x22; 32]];
        let err = |read: &[u8]| {
            readback::completed_epoch(&written, read)
                .unwrap_err()
                .to_string()
        };
        // Not set up: nothing written.
        assert!(err(&written).contains("no epoch"), "{}", err(&written));
        // A slot left without its key.
        let half = complete(&written, [9; 16], &slots[..1]);
        assert!(err(&half).contains("no pseudonym key"), "{}", err(&half));
        // A byte of the node's secrets changed: not the blob the setup image completes.
        let mut other = complete(&written, [9; 16], &slots);
        let last = other.len() - 1;
        other[last] ^= 1;
        assert!(err(&other).contains("differs"), "{}", err(&other));
        // Cut short.
        let short = &complete(&written, [9; 16], &slots)[..written.len() - 1];
        assert!(err(short).contains("read back of a blob"), "{}", err(short));
    }

    #[test]
    fn the_lines_a_group_trustee_acts_on_are_the_firmwares() {
        let switch = switch_line();
        let said = |l: &str| device_said(l, &switch);
        assert_eq!(
            said("trustee setup: handing over to the DC-net trustee"),
            Some(DeviceSaid::HandedOver)
        );
        assert_eq!(
            said(
                "trustee 1: link lost after 812 ms: relay said goodbye: the group switches to a \
                 new version at the end of this epoch; next dial in 93 ms; stack peak 14244 B"
            ),
            Some(DeviceSaid::Switch)
        );
        assert_eq!(
            said("trustee 1: link up (attempt 1); stack peak 14244 B"),
            None
        );
    }

    #[test]
    fn not_an_elf_is_refused() {
        let e = Firmware::parse(Path::new("x.bin"), b"not an elf").unwrap_err();
        assert!(e.to_string().contains("not an ELF"), "{e}");
    }
}
