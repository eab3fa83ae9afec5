//! `dissent device`: a client or trustee of a group on a real board.
//!
//! `dissent device provision` writes the node's provisioning blob for a board
//! (`dissent_core::provision`, the same blob `dissent qemu` loads into the emulated board)
//! to a file only its owner can read, and says where on the board it goes and how to flash
//! it. The firmware is flashed once per board and role; the blob holds what differs per
//! node: its keys and index, the group's parameters, the relay (an IPv4 address, or a DNS
//! name the board looks up at each dial) and, for a Wi-Fi board, the network to join.
//!
//! A trustee of a group folder (no dealer) gets two blobs ([`provision_group`]): its
//! DC-net node's, with the epoch's session id and pseudonym keys left zero for the setup
//! image to write, and the setup image's (`EpochSetup`), the same two `dissent qemu`
//! writes for the emulated board ([`group_setup`]).
//!
//! This module owns the mapping from a group's files to a device's [`Node`]; it does not
//! run anything (`dissent qemu` boots the emulated board).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use dissent_core::provision::{host_name_ok, Ipv4Static, Node, PeerKeys, Relay, Wifi};
use dissent_core::wire::NodeRole;

use crate::config::addr::{Host, HostPort};
use crate::config::{Group, NodeSecrets, Role};
use crate::platform::private_files;

/// The client's proxy port on a device, for local applications.
pub const DEVICE_PROXY_PORT: u16 = 1080;

/// A board the firmware is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BoardKind {
    /// ST NUCLEO-F767ZI (Ethernet, a static address).
    #[value(name = "nucleo-f767zi")]
    NucleoF767zi,
    /// Raspberry Pi Pico 2 W (Wi-Fi, DHCP).
    #[value(name = "pico2-w")]
    Pico2W,
    /// QEMU's emulated mps2-an385 (what `dissent qemu` runs).
    #[value(name = "mps2-an385")]
    Mps2An385,
}

impl BoardKind {
    /// The board's name, as in the firmware's build features.
    pub fn name(self) -> &'static str {
        match self {
            BoardKind::NucleoF767zi => "nucleo-f767zi",
            BoardKind::Pico2W => "pico2-w",
            BoardKind::Mps2An385 => "mps2-an385",
        }
    }

    /// Whether the board's network is Wi-Fi (its blob then names the network to join).
    pub fn has_wifi(self) -> bool {
        self == BoardKind::Pico2W
    }

    /// Whether the board's firmware looks the relay's name up itself (built with the
    /// `relay-name` feature). No board's is, to keep their trustees within their flash
    /// budgets: a name is looked up here, once, for them.
    pub fn looks_up_names(self) -> bool {
        false
    }

    /// Whether the board's blob must give its address: the NUCLEO-F767ZI's firmware is
    /// built without DHCP (the `dhcp` feature, 8 KiB of flash its trustee has no room for).
    /// The Pico 2 W takes one by DHCP when the blob gives none; the emulated board has
    /// QEMU's.
    pub fn needs_address(self) -> bool {
        self == BoardKind::NucleoF767zi
    }

    /// Where the provisioning area starts and how long it is (`embedded/memory/BOARD.x`).
    pub fn provision_area(self) -> (u64, u64) {
        match self {
            BoardKind::NucleoF767zi => (0x081C_0000, 256 * 1024),
            BoardKind::Pico2W => (0x103F_0000, 64 * 1024),
            BoardKind::Mps2An385 => (0x003F_0000, 60 * 1024),
        }
    }

    /// Where the trustee's setup image's own blob (`EpochSetup`, app `TSET`) starts and
    /// how long its area is (`SETUP` in `embedded/memory/BOARD-setup.x`).
    pub fn setup_area(self) -> (u64, u64) {
        match self {
            BoardKind::NucleoF767zi => (0x0818_0000, 256 * 1024),
            BoardKind::Pico2W => (0x103E_0000, 64 * 1024),
            BoardKind::Mps2An385 => (0x003F_8000, 28 * 1024),
        }
    }

    /// How to flash firmware and blob onto the board.
    fn flash_steps(self, role: NodeRole, blob: &Path) -> String {
        let (addr, _) = self.provision_area();
        let app = role_name(role);
        match self {
            BoardKind::NucleoF767zi => format!(
                "flash it with probe-rs (ST-LINK on the board's USB), from embedded/:\n  \
                 cargo build-nucleo-f767zi\n  \
                 probe-rs download --chip STM32F767ZITx --binary-format bin \
                 --base-address {addr:#010x} {blob}\n  \
                 probe-rs run --chip STM32F767ZITx target/thumbv7em-none-eabihf/release/{app}\n\
                 (the second command writes only the last flash sector, the firmware never \
                 touches it; see embedded/README.md, \"From a fresh board to a trustee in \
                 the group\")",
                blob = blob.display()
            ),
            BoardKind::Pico2W => format!(
                "flash it with probe-rs (a debug probe on the board's SWD pins), from embedded/:\n  \
                 cargo build-pico2-w\n  \
                 probe-rs download --chip RP235x --binary-format bin \
                 --base-address {addr:#010x} {blob}\n  \
                 probe-rs run --chip RP235x target/thumbv8m.main-none-eabihf/release/{app}\n\
                 (the firmware never touches the provisioning area; see embedded/README.md, \
                 \"From a fresh board to a trustee in the group\")",
                blob = blob.display()
            ),
            BoardKind::Mps2An385 => format!(
                "QEMU loads it at {addr:#010x}: DISSENT_PROVISION={} ./qemu-run \
                 target/thumbv7m-none-eabi/release/{app} (or let `dissent qemu` do all of it)",
                blob.display()
            ),
        }
    }
}

/// The firmware's name for `role`.
pub fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Client => "client",
        NodeRole::Trustee => "trustee",
    }
}

/// What a device's blob holds beyond the group's files and the node's keys.
#[derive(Debug, Clone, Copy)]
pub struct DeviceSettings<'g> {
    /// The relay as the device reaches it: an IPv4 address as the device sees it, or a DNS
    /// name.
    pub relay: Relay<'g>,
    /// The relay's port.
    pub relay_port: u16,
    /// A client's port for local applications (ignored for a trustee).
    pub local_port: u16,
    /// Smallest interval the node takes part in.
    pub min_clients: u16,
    /// The board's own address (`None`: DHCP, or QEMU's on the emulated board).
    pub ipv4: Option<Ipv4Static>,
    /// The Wi-Fi network a Wi-Fi board joins.
    pub wifi: Option<Wifi<'g>>,
}

/// The device configuration of `node` of `group`, with `settings`.
pub fn node_config<'g>(
    group: &Group,
    node: &NodeSecrets,
    peers: &'g [u8],
    pseudonym: &'g [u8],
    settings: DeviceSettings<'g>,
) -> Result<Node<'g>> {
    let DeviceSettings {
        relay,
        relay_port,
        local_port,
        min_clients,
        ipv4,
        wifi,
    } = settings;
    let (role, index) = match node.role {
        Role::Client(i) => (NodeRole::Client, i),
        Role::Trustee(j) => (NodeRole::Trustee, j),
        Role::Relay => bail!("a device runs a client or a trustee, not the relay"),
    };
    let slot = match role {
        NodeRole::Client => node
            .slot()
            .context("the client's pseudonym key is not in pseudonym.json")?,
        NodeRole::Trustee => 0,
    };
    let device = Node {
        role,
        index: u16::try_from(index).context("node index")?,
        group_id: group.group_id,
        session_id: group.session_id,
        link_secret: node.private_key,
        session_secret: node
            .session_private_key
            .with_context(|| format!("{} has no session key", node.id))?,
        identity_secret: node.identity_private_key,
        relay_key: group.relay_key,
        relay,
        relay_port,
        clients: count(group.clients.len(), "clients")?,
        trustees: count(group.trustees.len(), "trustees")?,
        slots: count(group.slots.len(), "slots")?,
        slot: u16::try_from(slot).context("slot")?,
        cell_len: u32::try_from(group.cell_length).context("cell_length")?,
        max_cell_len: u32::try_from(group.max_cell_length).context("max_cell_length")?,
        // Whole 32-byte keys, so the length is a multiple of the key length.
        peer_keys: PeerKeys::from_flat(peers).context("session keys")?,
        local_port: if role == NodeRole::Client {
            local_port
        } else {
            0
        },
        min_clients,
        min_anonymity: group.policy.min_anonymity,
        log_window_millis: group.policy.log_window.time.as_micros() / 1000,
        log_window_bytes: group.policy.log_window.bytes,
        ipv4,
        wifi,
        pseudonym: match role {
            NodeRole::Client => Some(
                dissent_core::provision::Pseudonym::from_bytes(pseudonym)
                    .with_context(|| format!("{} has no pseudonym key", node.id))?,
            ),
            NodeRole::Trustee => None,
        },
    };
    device
        .check()
        .map_err(|e| anyhow!("cannot provision {}: {e}", node.id))?;
    Ok(device)
}

/// A device trustee of a group with no dealer (a group folder) that sets its epoch up: the
/// group its DC-net image is provisioned for (every member of the version, the epoch's session id and pseudonym
/// keys left zero for the setup image to write once it has set the epoch up), its secrets,
/// and the setup image's blob (`dissent_core::provision::EpochSetup`: the group's
/// fingerprint, the epoch, the fewest trustees and the trustees' identity keys).
pub fn group_setup(
    desc: &crate::config::group::GroupDesc,
    keys: &crate::config::keys::PrivateKeys,
) -> Result<(Group, NodeSecrets, Vec<u8>)> {
    let index = desc.trustee_index(keys)?;
    let digest = desc.digest();
    let group = crate::config::group::EpochGroup {
        desc,
        group_id: dissent_core::epoch::session::group_id(&digest),
        session_id: [0; 16],
        slots: vec![[0; 32]; desc.clients.len()],
        clients: (0..desc.clients.len()).collect(),
        trustees: (0..desc.trustees.len()).collect(),
    }
    .group()?;
    let node = crate::config::group::node_secrets(keys, Role::Trustee(index), None);
    let trustees: Vec<u8> = desc.trustees.iter().flat_map(|k| k.identity).collect();
    let setup = dissent_core::provision::EpochSetup {
        group: digest,
        epoch: crate::setup::epoch_of(desc),
        min_trustees: desc.policy.min_trustees.max(1),
        trustees: PeerKeys::from_flat(&trustees).context("the trustees' identity keys")?,
    };
    Ok((group, node, setup.to_blob()))
}

/// A client's pseudonym as its blob holds it: its pseudonym secret and the relay's DH
/// public key (empty for a node without a pseudonym key).
pub fn pseudonym_bytes(group: &Group, node: &NodeSecrets) -> Vec<u8> {
    match node.pseudonym_private_key {
        Some(secret) => [secret, group.relay_dh].concat(),
        None => Vec::new(),
    }
}

/// The peers' keys a device of `role` holds, end to end: the peers' session keys, every
/// slot's pseudonym key, then the peers' identity keys (what it answers blame rounds with).
pub fn peer_keys(group: &Group, role: &Role) -> Vec<u8> {
    let (mut keys, peers) = match role {
        Role::Trustee(_) => (group.client_session_keys.concat(), &group.clients),
        _ => (group.trustee_session_keys.concat(), &group.trustees),
    };
    keys.extend_from_slice(&group.slots.concat());
    for p in peers {
        keys.extend_from_slice(&p.identity);
    }
    keys
}

/// A group count as the provisioning format holds it.
fn count(n: usize, what: &str) -> Result<u16> {
    u16::try_from(n).with_context(|| format!("{n} {what} do not fit a device"))
}

/// What `dissent device provision` needs beyond the group and the node's keys.
#[derive(Debug, Clone)]
pub struct ProvisionOptions {
    /// The board.
    pub board: BoardKind,
    /// The relay as the device reaches it.
    pub relay: HostPort,
    /// A client's port for local applications.
    pub local_port: u16,
    /// Smallest interval the node takes part in.
    pub min_clients: u16,
    /// Where to write the blob (default: DIR/ID.BOARD.bin).
    pub out: Option<PathBuf>,
    /// The Wi-Fi network a Wi-Fi board joins.
    pub wifi: Option<WifiNetwork>,
    /// The board's own address (`None`: DHCP).
    pub ipv4: Option<Ipv4Static>,
}

/// A Wi-Fi network's name and passphrase (empty for an open network).
#[derive(Clone)]
pub struct WifiNetwork {
    /// The network's name (SSID).
    pub ssid: String,
    /// Its WPA2/WPA3 passphrase; empty for an open network.
    pub passphrase: String,
}

impl std::fmt::Debug for WifiNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The passphrase is a secret: never shown.
        f.debug_struct("WifiNetwork")
            .field("ssid", &self.ssid)
            .finish_non_exhaustive()
    }
}

impl WifiNetwork {
    /// The network as the blob holds it, checked against what a board can join.
    fn for_device(&self) -> Result<Wifi<'_>> {
        let wifi = Wifi {
            ssid: &self.ssid,
            passphrase: &self.passphrase,
        };
        if !(1..=dissent_core::provision::MAX_SSID_LEN).contains(&self.ssid.len()) {
            bail!(
                "the Wi-Fi network's name is {} bytes; a board takes 1 to {}",
                self.ssid.len(),
                dissent_core::provision::MAX_SSID_LEN
            );
        }
        if !wifi.is_valid() {
            bail!(
                "the Wi-Fi passphrase must be 8 to 63 printable ASCII characters (WPA2/WPA3 \
                 personal), or none for an open network (--wifi-open)"
            );
        }
        Ok(wifi)
    }
}

/// Writes `node`'s provisioning blob for a board; returns where it went.
pub fn provision(
    dir: &Path,
    group: Group,
    node: NodeSecrets,
    opts: ProvisionOptions,
) -> Result<PathBuf> {
    let relay = match relay_for_device(&opts.relay)? {
        Relay::Name(name) if !opts.board.looks_up_names() => {
            let v4 = resolve_now(name, opts.relay.port())?;
            println!(
                "the {} firmware dials addresses: {name} is {v4} now, and a relay that moves \
                 needs a new blob",
                opts.board.name()
            );
            Relay::Ipv4(v4.octets())
        }
        relay => relay,
    };
    let wifi = match (&opts.wifi, opts.board.has_wifi()) {
        (Some(network), true) => Some(network.for_device()?),
        (None, true) => bail!(
            "the {} joins a Wi-Fi network: name it with --wifi-ssid, and give its passphrase \
             with --wifi-passphrase-file (or --wifi-open for an open network)",
            opts.board.name()
        ),
        (Some(_), false) => bail!(
            "the {} has no Wi-Fi (its network is Ethernet): drop the --wifi options",
            opts.board.name()
        ),
        (None, false) => None,
    };
    if opts.ipv4.is_none() && opts.board.needs_address() {
        bail!(
            "the {} firmware takes no address by DHCP (built without it, to fit its flash \
             budget): give the board's address with --address A.B.C.D/PREFIX --gateway \
             A.B.C.D (and --dns A.B.C.D for a relay given by name)",
            opts.board.name()
        );
    }
    let peers = peer_keys(&group, &node.role);
    let pseudonym = pseudonym_bytes(&group, &node);
    let device = node_config(
        &group,
        &node,
        &peers,
        &pseudonym,
        DeviceSettings {
            relay,
            relay_port: opts.relay.port(),
            local_port: opts.local_port,
            min_clients: opts.min_clients,
            ipv4: opts.ipv4,
            wifi,
        },
    )?;
    let blob = device.to_blob();
    let (addr, room) = opts.board.provision_area();
    if blob.len() as u64 > room {
        bail!(
            "{}'s provisioning blob is {} bytes; the {} provisioning area holds {room}",
            node.id,
            blob.len(),
            opts.board.name()
        );
    }
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| dir.join(format!("{}.{}.bin", node.id, opts.board.name())));
    write_secret(&out, &blob)?;
    let network = match &device.wifi {
        Some(wifi) if wifi.passphrase.is_empty() => format!("; open Wi-Fi network {:?}", wifi.ssid),
        Some(wifi) => format!("; Wi-Fi network {:?}", wifi.ssid),
        None => String::new(),
    };
    println!(
        "wrote {} ({} bytes, mode 600: it holds {}'s secret keys{}) for the {} firmware on a \
         {}; relay {}:{}{network}",
        out.display(),
        blob.len(),
        node.id,
        if device.wifi.is_some_and(|w| !w.passphrase.is_empty()) {
            " and the Wi-Fi passphrase"
        } else {
            ""
        },
        role_name(device.role),
        opts.board.name(),
        device.relay,
        device.relay_port,
    );
    println!(
        "it goes at {addr:#010x} (the provisioning area); {}",
        opts.board.flash_steps(device.role, &out)
    );
    Ok(out)
}

/// Writes a group folder's trustee's two blobs for a board: the DC-net node's (as
/// [`provision`], the epoch's session id and pseudonym keys zero) and the setup image's,
/// each mode 600, by default beside the trustee's key file (`NAME.BOARD.bin` and
/// `NAME.BOARD.setup.bin`: never in the group folder, which other members read). Returns
/// both paths.
pub fn provision_group(
    desc: &crate::config::group::GroupDesc,
    keys: &crate::config::keys::PrivateKeys,
    key_file: &Path,
    mut opts: ProvisionOptions,
) -> Result<(PathBuf, PathBuf)> {
    let (group, node, setup_blob) = group_setup(desc, keys)?;
    let dir = key_file.parent().unwrap_or(Path::new("."));
    let out = opts
        .out
        .take()
        .unwrap_or_else(|| dir.join(format!("{}.{}.bin", keys.name, opts.board.name())));
    let setup_out = setup_path(&out);
    let (setup_addr, setup_room) = opts.board.setup_area();
    if setup_blob.len() as u64 > setup_room {
        bail!(
            "the setup image's blob is {} bytes; the {} setup area holds {setup_room}",
            setup_blob.len(),
            opts.board.name()
        );
    }
    let board = opts.board;
    opts.out = Some(out);
    let out = provision(dir, group, node, opts)?;
    write_secret(&setup_out, &setup_blob)?;
    println!(
        "wrote {} ({} bytes, mode 600: epoch {} of group version {}, its trustees' identity \
         keys) for the trustee-setup firmware; it goes at {setup_addr:#010x} (the setup \
         area){}",
        setup_out.display(),
        setup_blob.len(),
        crate::setup::epoch_of(desc),
        desc.version,
        match board {
            BoardKind::Mps2An385 => String::new(),
            _ => format!(
                ", written like the first:\n  probe-rs download --chip {} --binary-format bin \
                 --base-address {setup_addr:#010x} {}\n  and the setup image (cargo build-{}-setup) \
                 flashed beside the trustee image. The DC-net blob names no epoch yet: the setup \
                 image writes it in once it has set the epoch up or taken it back from the relay \
                 (embedded/README.md, \"The setup on the device\")",
                if board == BoardKind::NucleoF767zi {
                    "STM32F767ZITx"
                } else {
                    "RP235x"
                },
                setup_out.display(),
                board.name()
            ),
        }
    );
    Ok((out, setup_out))
}

/// Where the setup image's blob goes beside the DC-net blob at `out`: `X.setup.bin` for
/// `X.bin`, `X.setup` otherwise.
fn setup_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let setup = match name.strip_suffix(".bin") {
        Some(stem) => format!("{stem}.setup.bin"),
        None => format!("{name}.setup"),
    };
    out.with_file_name(setup)
}

/// The relay as a board on the network reaches it: an IPv4 address as it is, a name as a
/// name, which the board looks up (IPv4, through its network's DNS server) at each dial,
/// so a relay that moves to another address needs no new blob.
fn relay_for_device(relay: &HostPort) -> Result<Relay<'_>> {
    let ip = match relay.host() {
        Host::Ip(ip) => *ip,
        Host::Name(name) if name.eq_ignore_ascii_case("localhost") => {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        Host::Name(name) if host_name_ok(name) => return Ok(Relay::Name(name)),
        Host::Name(name) => bail!(
            "the relay's name {name:?} is not a DNS host name a board can look up (letters, \
             digits and hyphens in labels of at most 63, {} bytes in all)",
            dissent_core::provision::MAX_NAME_LEN
        ),
    };
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() || v4.is_unspecified() => bail!(
            "the relay's address {v4} is this machine's own: a board on the network cannot \
             reach it there; give the address or name the board reaches the relay at with \
             --relay"
        ),
        IpAddr::V4(v4) => Ok(Relay::Ipv4(v4.octets())),
        IpAddr::V6(v6) => bail!("the relay's address {v6} is IPv6; the device speaks IPv4 only"),
    }
}

/// The board's own IPv4 configuration from `A.B.C.D/PREFIX`, a gateway and a DNS server.
pub fn static_ipv4(
    address: &str,
    gateway: Option<Ipv4Addr>,
    dns: Option<Ipv4Addr>,
) -> Result<Ipv4Static> {
    let (ip, prefix) = address
        .split_once('/')
        .with_context(|| format!("--address {address}: write it as A.B.C.D/PREFIX"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .with_context(|| format!("--address {address}: {ip} is not an IPv4 address"))?;
    let prefix_len: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .with_context(|| format!("--address {address}: the prefix length must be 1 to 32"))?;
    let ipv4 = Ipv4Static {
        address: ip.octets(),
        prefix_len,
        gateway: gateway.unwrap_or(Ipv4Addr::UNSPECIFIED).octets(),
        dns_server: dns.unwrap_or(Ipv4Addr::UNSPECIFIED).octets(),
    };
    if !ipv4.is_valid() {
        bail!("--address {address} is not a board's address on that network");
    }
    Ok(ipv4)
}

/// The Wi-Fi passphrase in the first line of `path` (a file, so that it never shows in a
/// command line or the shell's history).
pub fn read_passphrase(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the Wi-Fi passphrase from {}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// The IPv4 address `name` has now, as this machine resolves it.
fn resolve_now(name: &str, port: u16) -> Result<Ipv4Addr> {
    use std::net::ToSocketAddrs;
    let v4 = (name, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve the relay's host {name}"))?
        .find_map(|a| match a.ip() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .with_context(|| format!("{name} has no IPv4 address; the device speaks IPv4 only"))?;
    if v4.is_loopback() || v4.is_unspecified() {
        bail!(
            "the relay's name {name} is {v4}, this machine's own: a board on the network \
             cannot reach it there; give the address the board reaches the relay at with --relay"
        );
    }
    Ok(v4)
}

/// Writes `bytes` to `path`, readable by its owner only (also when the file was there: it
/// is replaced by a new one, made private before the secrets go in).
fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot replace {}", path.display())),
    }
    let mut file = private_files::create_private(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_on_this_machine_is_refused_for_a_board() {
        for own in ["127.0.0.1:7000", "localhost:7000", "0.0.0.0:7000"] {
            let relay: HostPort = own.parse().unwrap();
            let e = relay_for_device(&relay).unwrap_err();
            assert!(e.to_string().contains("this machine's own"), "{own}: {e}");
        }
        let relay: HostPort = "192.0.2.7:7000".parse().unwrap();
        assert_eq!(
            relay_for_device(&relay).unwrap(),
            Relay::Ipv4([192, 0, 2, 7])
        );
    }

    #[test]
    fn a_relay_name_stays_a_name_for_the_board_to_look_up() {
        let relay: HostPort = "relay.example.org:7000".parse().unwrap();
        assert_eq!(
            relay_for_device(&relay).unwrap(),
            Relay::Name("relay.example.org")
        );
    }

    #[test]
    fn a_static_address_is_read_and_checked() {
        let ipv4 =
            static_ipv4("192.168.1.20/24", Some(Ipv4Addr::new(192, 168, 1, 1)), None).unwrap();
        assert_eq!(
            ipv4,
            Ipv4Static {
                address: [192, 168, 1, 20],
                prefix_len: 24,
                gateway: [192, 168, 1, 1],
                dns_server: [0, 0, 0, 0],
            }
        );
        for bad in [
            "192.168.1.20",
            "192.168.1.20/33",
            "relay/24",
            "192.168.1.255/24",
        ] {
            assert!(static_ipv4(bad, None, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn wifi_networks_are_checked_before_they_go_in_a_blob() {
        let network = |ssid: &str, passphrase: &str| WifiNetwork {
            ssid: ssid.into(),
            passphrase: passphrase.into(),
        };
        assert!(network("home", "correct horse").for_device().is_ok());
        assert!(network("cafe", "").for_device().is_ok());
        let e = network("home", "short").for_device().unwrap_err();
        assert!(e.to_string().contains("8 to 63"), "{e}");
        let e = network(&"s".repeat(33), "correct horse")
            .for_device()
            .unwrap_err();
        assert!(e.to_string().contains("33 bytes"), "{e}");
        let shown = format!("{:?}", network("home", "correct horse"));
        assert!(!shown.contains("horse"), "{shown}");
    }

    #[cfg(unix)]
    #[test]
    fn secrets_are_written_mode_600_even_over_a_wider_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob.bin");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_secret(&path, b"new").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }
}
