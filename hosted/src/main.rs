//! `dissent`: every role of the dissent-rs DC-net in one binary.
//!
//! Options mean the same in every subcommand: `-p/--port` and `--host` are where this
//! process listens, `--relay HOST:PORT` is where the relay is, `--relay-port` changes the
//! relay's port for the processes a supervisor starts, `--allow-private-exit` lets the
//! SOCKS5 exit reach non-public addresses and `--allow-small-anonymity-set` accepts groups
//! or intervals of fewer than two clients. Every value is checked here, before anything
//! runs or is written.

mod blame_cmd;
mod client;
mod clock;
mod config;
mod console;
mod device;
mod exit;
mod group_cmd;
mod http;
mod link;
mod metrics;
mod platform;
mod process;
mod relay;
mod setup;
mod state_lock;
mod status;
mod supervisor;
#[cfg(feature = "tools")]
mod tools;
mod trustee;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use config::keys::KeyRole;

use crate::config::addr::{Host, HostPort};
use crate::config::NodeKind;
use crate::exit::ExitKind;

/// A Dissent-style low-latency DC-net: anonymous TCP through a relay, clients and trustees.
#[derive(Parser, Debug)]
#[command(name = "dissent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// A node's own keys (groups with no dealer).
    #[command(subcommand)]
    Key(group_cmd::KeyCommand),
    /// A group folder of public key files (groups with no dealer).
    #[command(subcommand)]
    Group(group_cmd::GroupCommand),
    /// Blame evidence: check it offline.
    #[command(subcommand)]
    Blame(blame_cmd::BlameCommand),
    /// Run the relay (the hub clients and trustees connect to).
    Relay(Box<RelayArgs>),
    /// Run a trustee.
    Trustee(TrusteeArgs),
    /// Run a client: a local port whose TCP connections go through the DC-net.
    Client(ClientArgs),
    /// Run a client or trustee of DIR as device firmware under QEMU (emulated mps2-an385).
    #[cfg(feature = "tools")]
    Qemu(QemuArgs),
    /// Real boards: write a node's provisioning blob.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Run many clients in one process without local ports (used by `dissent bench`).
    #[command(hide = true)]
    Clients(ClientsArgs),
    /// Run a standalone echo server on 127.0.0.1.
    Echo {
        /// Port to listen on, 0-65535 (0: a free port, named in the log).
        #[arg(short, long, default_value_t = 8080, value_parser = listen_port())]
        port: u16,
    },
    /// Run a standalone SOCKS5 server on 127.0.0.1.
    Socks5 {
        /// Port to listen on, 0-65535 (0: a free port, named in the log).
        #[arg(short, long, default_value_t = 8080, value_parser = listen_port())]
        port: u16,
        #[command(flatten)]
        exit: PrivateExit,
        /// Also refuse this network (ADDRESS/PREFIX or an address); repeatable.
        #[arg(long, value_name = "CIDR")]
        exit_deny: Vec<exit::Cidr>,
    },
    /// Run the relay, the trustees and the clients of DIR as child processes.
    Supervisor(SupervisorArgs),
    /// Run a local demo DC-net on loopback, each client a SOCKS5 proxy.
    ///
    /// It keeps its configuration in its state folder (a new one when -c, -t, --relay or
    /// --relay-port ask for another) and refuses to start while another `up` runs from the
    /// same folder.
    Up(UpArgs),
    /// Show a relay's status page in the terminal (see `relay --status`).
    Status(StatusArgs),
    /// Measure speed: the whole net over loopback, `core` or `load`.
    ///
    /// Without a mode: a whole DC-net of processes over loopback. `core`: the protocol's CPU
    /// cost, in memory. `load`: HTTP requests at a fixed rate through SOCKS5 proxies.
    #[cfg(feature = "tools")]
    Bench(tools::bench::BenchArgs),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Write a new configuration set (system, session, pseudonym and private files).
    Generate {
        /// Number of clients, 2-65535 (1 with --allow-small-anonymity-set).
        #[arg(short, long, value_name = "N", default_value_t = config::DEFAULT_CLIENTS, value_parser = clients())]
        clients: usize,
        /// Number of trustees, 1-16.
        #[arg(short, long, value_name = "N", default_value_t = config::DEFAULT_TRUSTEES, value_parser = trustees())]
        trustees: usize,
        /// Base cell length in bytes (a newly reserved slot's cell), 16-65535.
        #[arg(long, value_name = "BYTES", default_value_t = config::DEFAULT_CELL_LENGTH, value_parser = cell_length())]
        cell_length: usize,
        /// Longest cell a slot owner may ask for (bulk transfers), 16-65535 and at least
        /// --cell-length (default: 32768, or --cell-length if that is longer).
        #[arg(long, value_name = "BYTES", value_parser = cell_length())]
        max_cell_length: Option<usize>,
        /// Relay address written into system.json.
        #[arg(long, value_name = "HOST:PORT", default_value = config::DEFAULT_RELAY)]
        relay: HostPort,
        /// Overwrite an existing configuration.
        #[arg(long)]
        force: bool,
        /// The group's anonymity minimum: a slot transmits only while the clients it may
        /// belong to (over every interval it sent in) number at least K; 2 up to the
        /// number of clients (1 with --allow-small-anonymity-set; default 2, or 1 in a
        /// group of one).
        #[arg(long, value_name = "K", value_parser = min_clients())]
        min_anonymity: Option<u16>,
        /// How long the relay must keep downstream records for a client that is away, in
        /// seconds, 1-86400 (default 600); the trustees hold it to this.
        #[arg(long, value_name = "S", value_parser = log_window_secs())]
        log_window_secs: Option<u64>,
        /// How many bytes of downstream records the relay must keep, 1-1073741824 (default
        /// 33554432, 32 MiB).
        #[arg(long, value_name = "B", value_parser = log_window_bytes())]
        log_window_bytes: Option<u64>,
        #[command(flatten)]
        small: SmallSet,
        /// Folder to write.
        dir: PathBuf,
    },
}

/// Lets the SOCKS5 exit reach any address.
#[derive(Args, Debug, Clone, Copy)]
struct PrivateExit {
    /// Let the SOCKS5 exit reach loopback, private and other addresses that are not
    /// globally reachable, and this host's own (for trying it against a server on this
    /// machine). Without it such destinations get "connection not allowed by ruleset".
    #[arg(long, alias = "allow-private")]
    allow_private_exit: bool,
}

/// Serves Prometheus metrics.
#[derive(Args, Debug, Clone)]
struct MetricsArg {
    /// Serve Prometheus metrics at http://ADDR/metrics. ADDR is HOST:PORT or a port alone
    /// (127.0.0.1:PORT); port 0 takes a free port, named in the log. A name must resolve to loopback; another IP address written out
    /// serves the metrics beyond this machine, where anyone who reaches it sees this
    /// node's traffic counters.
    #[arg(long, value_name = "ADDR", value_parser = metrics::parse_listen)]
    metrics: Option<HostPort>,
}

impl MetricsArg {
    /// Starts the metrics endpoint when one was asked for.
    async fn serve(&self) -> Result<()> {
        if let Some(addr) = &self.metrics {
            metrics::serve(addr).await?;
        }
        Ok(())
    }
}

/// Accepts groups and intervals of fewer than two clients, or fewer than --min-clients.
#[derive(Args, Debug, Clone, Copy)]
struct SmallSet {
    /// Accept a group or interval with fewer than 2 clients (or fewer than --min-clients):
    /// every connection is then hidden among that few clients, or traceable to its client
    /// when there is only one.
    #[arg(long)]
    allow_small_anonymity_set: bool,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct RelayArgs {
    #[command(subcommand)]
    action: Option<RelayAction>,
    /// Port to listen on, 0-65535 (default: the port in system.json; 0: a free port,
    /// named in the log).
    #[arg(short, long, value_name = "PORT", value_parser = listen_port())]
    port: Option<u16>,
    /// Address to listen on (default: the host in system.json; every address when it is
    /// a name).
    #[arg(long, value_name = "IP")]
    host: Option<IpAddr>,
    /// Where decoded connections go: socks5, echo or tcp:HOST:PORT.
    #[arg(long, default_value = "socks5")]
    exit: ExitKind,
    #[command(flatten)]
    private_exit: PrivateExit,
    /// Also refuse exit connections to this network (ADDRESS/PREFIX or an address), even
    /// with --allow-private-exit: a public address of this host behind 1:1 NAT, which no
    /// interface shows, say. Repeatable. This host's own interface addresses are refused
    /// anyway, read again every 30 s.
    #[arg(long, value_name = "CIDR")]
    exit_deny: Vec<exit::Cidr>,
    /// Exchanges in flight ahead of the last decoded one, 1-64 (trustees and clients are
    /// asked for the same exchanges).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = window(), alias = "trustee-window", alias = "client-window")]
    window: u16,
    /// Clients that must be connected before exchanges start, 2-65535 (1 with
    /// --allow-small-anonymity-set).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = min_clients())]
    min_clients: u16,
    #[command(flatten)]
    small: SmallSet,
    /// Longest pause in milliseconds between exchanges while nobody sends anything,
    /// 1-10000. A new conversation's first byte waits for the next reservation exchange, so
    /// lower values cut that wait at the cost of more idle CPU and traffic.
    #[arg(long, value_name = "MS", default_value_t = 50, value_parser = ranged::<u64>(1, 10_000, "1-10000"))]
    idle_ms: u64,
    /// Megabytes per second of cells an idle net may cost the relay, 1-100000. In a large
    /// group an idle exchange costs every member a cell, so the idle pause grows until idle
    /// exchanges stay within this (about 0.8 s at 10,000 clients).
    #[arg(long, value_name = "MB", default_value_t = 16, value_parser = ranged::<u64>(1, 100_000, "1-100000"))]
    idle_budget: u64,
    /// Milliseconds a newly connected client waits for the running interval to end, so
    /// clients arriving together join one new interval, 0-10000.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = ranged::<u64>(0, 10_000, "0-10000"))]
    join_ms: u64,
    /// A reservation exchange at least every N exchanges while slots are reserved, 2-1024
    /// (a lone sender gets N-1 of every N exchanges).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = ranged::<u16>(2, 1024, "2-1024"))]
    reservation_period: u16,
    /// Open exit connections one pseudonym slot may have, 1-65535.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = ranged::<usize>(1, 65_535, "1-65535"))]
    exit_per_slot: usize,
    /// Open exit connections in all, 1-1000000 (lowered to what the open-file limit leaves
    /// after every member's link).
    #[arg(long, value_name = "N", default_value_t = 16_384, value_parser = ranged::<usize>(1, 1_000_000, "1-1000000"))]
    exit_max: usize,
    /// Milliseconds a peer may take to answer an exchange before it is dropped,
    /// 100-3600000.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = ranged::<u64>(100, 3_600_000, "100-3600000"))]
    timeout_ms: u64,
    /// Milliseconds a straggler gets at least once all but one in eight clients answered an
    /// exchange or acknowledged a view (or 4 times what they took, if longer), 1-3600000;
    /// then it is dropped and backed off (docs/security.md).
    #[arg(long, value_name = "MS", default_value_t = 500, value_parser = ranged::<u64>(1, 3_600_000, "1-3600000"))]
    straggler_ms: u64,
    /// Seconds a trustee's turn in a group's setup may take (its key, each chunk of its
    /// shuffle, its record), plus 50 ms per client, before it is left out as silent where
    /// the group's min_trustees allows it, 1-86400 (docs/protocol.md §12).
    #[arg(long, value_name = "SECS", default_value_t = setup::TRUSTEE_WAIT.as_secs(), value_parser = seconds())]
    trustee_wait_secs: u64,
    /// Largest downstream payload per exchange, in bytes, 1-65535.
    #[arg(long, value_name = "BYTES", default_value_t = dissent_core::MAX_DOWNSTREAM, value_parser = ranged::<usize>(1, dissent_core::MAX_DOWNSTREAM as u64, "1-65535"))]
    downstream_length: usize,
    /// Seconds between stats lines, 1-86400.
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = seconds())]
    stats_secs: u64,
    /// Seconds without traffic after which an exit connection is closed, 1-86400.
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = seconds())]
    exit_idle_secs: u64,
    /// Serve a status page at http://ADDR/ (and its figures at /status.json). ADDR is
    /// HOST:PORT or a port alone (127.0.0.1:PORT); port 0 takes any free port, printed in
    /// the log. A name must resolve to loopback; another IP address written out serves the
    /// page beyond this machine.
    #[arg(long, value_name = "ADDR", value_parser = relay::status::parse_listen)]
    status: Option<HostPort>,
    /// Write one line per client cell to FILE: when it was read (Unix microseconds), the
    /// client's index, and the microseconds since its request was queued for the client's
    /// link (what `dissent bench timing` reads; measuring only).
    #[arg(long, value_name = "FILE")]
    response_times: Option<PathBuf>,
    #[command(flatten)]
    metrics: MetricsArg,
    /// Configuration folder.
    #[arg(required = true)]
    dir: Option<PathBuf>,
    /// The relay's private file (default: DIR/relay.json).
    #[arg(value_name = "KEY_FILE")]
    key_file: Option<PathBuf>,
    /// The relay's private file (the older spelling of KEY_FILE).
    #[arg(long, value_name = "FILE", hide = true, conflicts_with = "key_file")]
    key: Option<PathBuf>,
}

/// The relay's refusal list (DIR/refused.json): clients it refuses until an operator lets
/// them back in.
#[derive(Subcommand, Debug)]
enum RelayAction {
    /// List the clients the relay refuses.
    Refused {
        /// Configuration folder.
        dir: PathBuf,
    },
    /// Take a client (or every client) off the refusal list; a running relay lets it back in
    /// within its stats period (--stats-secs).
    Admit {
        /// Configuration folder.
        dir: PathBuf,
        /// The client's id or its public key (hex).
        #[arg(value_name = "KEY|NAME", required_unless_present = "all")]
        who: Option<String>,
        /// Every client on the list.
        #[arg(long, conflicts_with = "who")]
        all: bool,
    },
}

#[derive(Args, Debug)]
struct TrusteeArgs {
    /// Relay address (default: the one in system.json).
    #[arg(long, value_name = "HOST:PORT")]
    relay: Option<HostPort>,
    /// Refuse intervals with fewer clients online than this (the anonymity set), 2-65535
    /// (1 with --allow-small-anonymity-set).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = min_clients())]
    min_clients: u16,
    /// Cheat in the epoch setup on purpose, for testing a group (builds with the
    /// `disruptor` feature only): swap, replace, duplicate, reencryption, share or key-proof.
    #[cfg(feature = "disruptor")]
    #[arg(long, value_name = "MODE")]
    cheat: Option<String>,
    #[command(flatten)]
    small: SmallSet,
    #[command(flatten)]
    metrics: MetricsArg,
    /// Configuration folder.
    dir: PathBuf,
    /// This trustee's private file, DIR/ID.json.
    key_file: PathBuf,
}

#[derive(Args, Debug)]
struct ClientArgs {
    /// Local port to listen on, 0-65535 (0: a free port, named in the log).
    #[arg(short, long, default_value_t = 1080, value_parser = listen_port())]
    port: u16,
    /// Local address to listen on.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Relay address (default: the one in system.json).
    #[arg(long, value_name = "HOST:PORT")]
    relay: Option<HostPort>,
    /// Refuse to send in intervals with fewer clients than this (the anonymity set), 2-65535
    /// (1 with --allow-small-anonymity-set).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = min_clients())]
    min_clients: u16,
    /// Send only while the slot's anonymity set (the clients online in every interval in
    /// which it sent) keeps at least N clients; raises the group's min_anonymity, never
    /// lowers it.
    #[arg(long, value_name = "N", default_value_t = 0)]
    min_anonymity: u16,
    /// Misbehave on purpose, for testing a group (builds with the `disruptor` feature
    /// only): garble-all, garble-every-other, garble-data, invert-reservations,
    /// flip-payload, inject, withhold-ack or slow.
    #[cfg(feature = "disruptor")]
    #[arg(long, value_name = "MODE")]
    disrupt: Option<String>,
    /// In blame rounds, reveal a false pad bit for the pair with trustee 0, for testing the
    /// dispute that convicts such a liar (`disruptor` feature only).
    #[cfg(feature = "disruptor")]
    #[arg(long)]
    lie_about_pads: bool,
    #[command(flatten)]
    small: SmallSet,
    #[command(flatten)]
    metrics: MetricsArg,
    /// Configuration folder.
    dir: PathBuf,
    /// This client's private file, DIR/ID.json.
    key_file: PathBuf,
}

#[derive(Subcommand, Debug)]
enum DeviceCommand {
    /// Write the provisioning blob of a client or trustee of DIR for a board (mode 600), and
    /// say where to flash it.
    Provision(ProvisionArgs),
}

#[derive(Args, Debug)]
struct ProvisionArgs {
    /// The board the node runs on.
    #[arg(long, value_enum)]
    board: device::BoardKind,
    /// The relay as the board reaches it (default: the one in system.json): an IPv4
    /// address, or a DNS name the board looks up at each dial.
    #[arg(long, value_name = "HOST:PORT")]
    relay: Option<HostPort>,
    /// For a Wi-Fi board: the name (SSID) of the network it joins.
    #[arg(long, value_name = "SSID")]
    wifi_ssid: Option<String>,
    /// For a Wi-Fi board: a file whose first line is the network's WPA2/WPA3 passphrase.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "wifi_open",
        requires = "wifi_ssid"
    )]
    wifi_passphrase_file: Option<PathBuf>,
    /// For a Wi-Fi board: the network is open (no passphrase).
    #[arg(long, requires = "wifi_ssid")]
    wifi_open: bool,
    /// The board's own address and prefix length, A.B.C.D/PREFIX, for a network without
    /// DHCP or a board built without it (the NUCLEO-F767ZI's; default: DHCP).
    #[arg(long, value_name = "A.B.C.D/PREFIX")]
    address: Option<String>,
    /// With --address: the gateway to the relay when it is on another network.
    #[arg(long, value_name = "A.B.C.D", requires = "address")]
    gateway: Option<std::net::Ipv4Addr>,
    /// With --address: the DNS server that looks the relay's name up.
    #[arg(long, value_name = "A.B.C.D", requires = "address")]
    dns: Option<std::net::Ipv4Addr>,
    /// For a client: the device's port for local applications, 1-65535.
    #[arg(short, long, value_name = "PORT", default_value_t = device::DEVICE_PROXY_PORT, value_parser = port())]
    port: u16,
    /// Where to write the blob (default: DIR/ID.BOARD.bin).
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Refuse intervals with fewer clients online than this (the anonymity set), 2-65535
    /// (1 with --allow-small-anonymity-set).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = min_clients())]
    min_clients: u16,
    #[command(flatten)]
    small: SmallSet,
    /// Configuration folder.
    dir: PathBuf,
    /// The node's private file, DIR/ID.json.
    key_file: PathBuf,
}

#[cfg(feature = "tools")]
#[derive(Args, Debug)]
struct QemuArgs {
    /// For a client: the port on 127.0.0.1 forwarded to its proxy port on the device,
    /// 1-65535 (default 1080).
    #[arg(short, long, value_name = "HOST_PORT", value_parser = port())]
    port: Option<u16>,
    /// Firmware ELF to boot (default: `trustee` or `client` from $DISSENT_FIRMWARE_DIR, from
    /// firmware/mps2-an385/ beside this binary or ../share/dissent/firmware/mps2-an385/ from
    /// it, or the release build in the source tree, the first found).
    #[arg(long, value_name = "ELF")]
    firmware: Option<PathBuf>,
    /// A group folder's trustee: the setup image to boot first (default: `trustee-setup`,
    /// looked for where the firmware is).
    #[arg(long, value_name = "ELF")]
    setup_firmware: Option<PathBuf>,
    /// Relay address as this machine reaches it (default: the one in system.json); the
    /// device reaches this machine's own addresses at 10.0.2.2.
    #[arg(long, value_name = "HOST:PORT")]
    relay: Option<HostPort>,
    /// Write the device's console to FILE instead of the terminal.
    #[arg(long, value_name = "FILE")]
    console: Option<PathBuf>,
    /// Refuse intervals with fewer clients online than this (the anonymity set), 2-65535
    /// (1 with --allow-small-anonymity-set).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = min_clients())]
    min_clients: u16,
    #[command(flatten)]
    small: SmallSet,
    /// Configuration folder.
    dir: PathBuf,
    /// The node's private file, DIR/ID.json (a client's or a trustee's).
    key_file: PathBuf,
}

/// Runs clients FROM..TO of DIR in one process, without local ports (load for benchmarks).
#[derive(Args, Debug)]
struct ClientsArgs {
    /// First client index.
    #[arg(long)]
    from: usize,
    /// One past the last client index.
    #[arg(long)]
    to: usize,
    /// Relay address (default: the one in system.json).
    #[arg(long, value_name = "HOST:PORT")]
    relay: Option<HostPort>,
    /// Refuse to send in intervals with fewer clients than this.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = min_clients())]
    min_clients: u16,
    #[command(flatten)]
    small: SmallSet,
    /// Configuration folder.
    dir: PathBuf,
}

#[derive(Args, Debug)]
struct SupervisorArgs {
    /// Configuration folder.
    dir: PathBuf,
    /// Leave the last K clients for you to start by hand.
    #[arg(long, default_value_t = 0, value_name = "K")]
    local: usize,
    /// Where decoded connections go: socks5, echo or tcp:HOST:PORT.
    #[arg(long, default_value = "socks5")]
    exit: ExitKind,
    /// Client i listens on 127.0.0.1:(BASE + i); BASE + clients - 1 must be at most 65535.
    #[arg(long, value_name = "BASE", default_value_t = 1080, value_parser = port())]
    client_port_base: u16,
    /// The relay's port, 1-65535 (default: the one in system.json).
    #[arg(long, value_name = "PORT", value_parser = port(), alias = "port", short_alias = 'p')]
    relay_port: Option<u16>,
    #[command(flatten)]
    private_exit: PrivateExit,
    /// Also refuse exit connections to this network (ADDRESS/PREFIX or an address); passed
    /// to the relay (see `relay --exit-deny`). Repeatable.
    #[arg(long, value_name = "CIDR")]
    exit_deny: Vec<exit::Cidr>,
    #[command(flatten)]
    small: SmallSet,
    /// Let the relay serve its status page at ADDR (see `relay --status`).
    #[arg(long, value_name = "ADDR", value_parser = relay::status::parse_listen)]
    status: Option<HostPort>,
    /// Show info logs of every child, not just the relay.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Args, Debug)]
struct UpArgs {
    /// State folder (default: $XDG_STATE_HOME/dissent or ~/.local/state/dissent; on macOS
    /// ~/Library/Application Support/dissent, on Windows %LOCALAPPDATA%\dissent). One
    /// `up` runs from a state folder at a time; give another to run a second demo.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Clients, 2-65535 (default: those of the existing demo, or 10).
    #[arg(short, long, value_name = "N", value_parser = clients())]
    clients: Option<usize>,
    /// Trustees, 1-16 (default: those of the existing demo, or 3).
    #[arg(short, long, value_name = "N", value_parser = trustees())]
    trustees: Option<usize>,
    /// Relay address, on this machine's loopback (default: the existing demo's, or
    /// 127.0.0.1:12345).
    #[arg(long, value_name = "HOST:PORT")]
    relay: Option<HostPort>,
    /// The relay's port, 1-65535 (replaces the port of --relay).
    #[arg(long, value_name = "PORT", value_parser = port())]
    relay_port: Option<u16>,
    /// Client i listens on 127.0.0.1:(BASE + i); BASE + clients - 1 must be at most 65535.
    #[arg(long, value_name = "BASE", default_value_t = 1080, value_parser = port())]
    client_port_base: u16,
    /// Where decoded connections go: socks5, echo or tcp:HOST:PORT.
    #[arg(long, default_value = "socks5")]
    exit: ExitKind,
    #[command(flatten)]
    private_exit: PrivateExit,
    /// Also refuse exit connections to this network (ADDRESS/PREFIX or an address); passed
    /// to the relay (see `relay --exit-deny`). Repeatable.
    #[arg(long, value_name = "CIDR")]
    exit_deny: Vec<exit::Cidr>,
    #[command(flatten)]
    small: SmallSet,
    /// Let the relay serve its status page at ADDR (see `relay --status`).
    #[arg(long, value_name = "ADDR", value_parser = relay::status::parse_listen)]
    status: Option<HostPort>,
    /// Show info logs of every child, not just the relay.
    #[arg(short, long)]
    verbose: bool,
}

/// Shows a relay's status.
#[derive(Args, Debug)]
struct StatusArgs {
    /// Where the relay serves its status page (`relay --status`): HOST:PORT, or a port alone
    /// (127.0.0.1:PORT).
    #[arg(value_name = "ADDR", value_parser = metrics::parse_listen)]
    addr: HostPort,
    /// Print it again every second until Ctrl-C.
    #[arg(short, long)]
    watch: bool,
}

/// A whole number in `lo..=hi`, refused with the range written as the help writes it
/// (`shown`, e.g. "1-64"), so the help and the error never disagree.
fn ranged<T>(
    lo: u64,
    hi: u64,
    shown: &'static str,
) -> impl Fn(&str) -> std::result::Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    move |text: &str| {
        let value: u64 = text
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a whole number; use {shown}"))?;
        if value < lo || value > hi {
            return Err(format!("{value} is out of range; use {shown}"));
        }
        T::try_from(value).map_err(|_| format!("{value} is out of range; use {shown}"))
    }
}

/// A TCP port: 1-65535.
fn port() -> impl Fn(&str) -> std::result::Result<u16, String> + Clone + Send + Sync + 'static {
    ranged(1, 65_535, "1-65535")
}

/// A port a process listens on: 0-65535 (0: a free port the system picks).
fn listen_port() -> impl Fn(&str) -> std::result::Result<u16, String> + Clone + Send + Sync + 'static
{
    ranged(0, 65_535, "0-65535")
}

/// A pipelining window: 1-64.
fn window() -> impl Fn(&str) -> std::result::Result<u16, String> + Clone + Send + Sync + 'static {
    const _: () = assert!(dissent_core::MAX_WINDOW == 64);
    ranged(1, dissent_core::MAX_WINDOW as u64, "1-64")
}

/// The wording of the clients' range, in the help and in errors.
const CLIENTS_RANGE: &str = "2-65535 (1 with --allow-small-anonymity-set)";

/// A --min-clients value: 1-65535 (below 2 only with --allow-small-anonymity-set).
fn min_clients() -> impl Fn(&str) -> std::result::Result<u16, String> + Clone + Send + Sync + 'static
{
    ranged(1, config::MAX_CLIENTS as u64, CLIENTS_RANGE)
}

/// A number of clients: 1-65535 (below 2 only with --allow-small-anonymity-set).
pub(crate) fn clients(
) -> impl Fn(&str) -> std::result::Result<usize, String> + Clone + Send + Sync + 'static {
    ranged(1, config::MAX_CLIENTS as u64, CLIENTS_RANGE)
}

/// The log window's time in seconds: 1-86400.
fn log_window_secs(
) -> impl Fn(&str) -> std::result::Result<u64, String> + Clone + Send + Sync + 'static {
    const _: () = assert!(config::MAX_LOG_WINDOW_SECS == 86_400);
    ranged(1, config::MAX_LOG_WINDOW_SECS, "1-86400")
}

/// The log window's size in bytes: 1-1073741824.
fn log_window_bytes(
) -> impl Fn(&str) -> std::result::Result<u64, String> + Clone + Send + Sync + 'static {
    const _: () = assert!(config::MAX_LOG_WINDOW_BYTES == 1_073_741_824);
    ranged(1, config::MAX_LOG_WINDOW_BYTES, "1-1073741824")
}

/// A number of trustees: 1-16.
pub(crate) fn trustees(
) -> impl Fn(&str) -> std::result::Result<usize, String> + Clone + Send + Sync + 'static {
    const _: () = assert!(config::MAX_TRUSTEES == 16);
    ranged(1, config::MAX_TRUSTEES as u64, "1-16")
}

/// A cell length: 54-65535 bytes (the smallest carries a sealed cell with one byte of data
/// beside its trap bytes).
pub(crate) fn cell_length(
) -> impl Fn(&str) -> std::result::Result<usize, String> + Clone + Send + Sync + 'static {
    const _: () = assert!(config::MIN_CELL_LENGTH == 54 && config::MAX_CELL_LENGTH == 65_535);
    ranged(
        config::MIN_CELL_LENGTH as u64,
        config::MAX_CELL_LENGTH as u64,
        "54-65535",
    )
}

/// A period in seconds: 1 s to a day.
pub(crate) fn seconds(
) -> impl Fn(&str) -> std::result::Result<u64, String> + Clone + Send + Sync + 'static {
    ranged(1, 86_400, "1-86400")
}

impl Command {
    /// The name on every log line until the node's id is known.
    fn role(&self) -> &'static str {
        match self {
            Command::Config(_) => "config",
            Command::Key(_) => "key",
            Command::Group(_) => "group",
            Command::Blame(_) => "blame",
            Command::Relay(_) => "relay",
            Command::Trustee(_) => "trustee",
            Command::Client(_) | Command::Clients(_) => "client",
            #[cfg(feature = "tools")]
            Command::Qemu(_) => "qemu",
            Command::Device(_) => "device",
            Command::Echo { .. } => "echo",
            Command::Socks5 { .. } => "socks5",
            Command::Supervisor(_) => "supervisor",
            Command::Up(_) => "up",
            Command::Status(_) => "status",
            #[cfg(feature = "tools")]
            Command::Bench(_) => "bench",
        }
    }
}

fn main() {
    let cli = Cli::parse();
    console::init_logging(cli.command.role());
    // The relay spreads its links' encryption over worker threads, as does a process
    // hosting many clients; every other role is one state machine plus a few sockets,
    // fastest without cross-thread wake-ups (`dissent bench net`: about 1.3x the throughput
    // of a threaded client and trustee, and half the idle CPU).
    let threaded = match &cli.command {
        Command::Relay(_) => true,
        Command::Clients(a) => a.to.saturating_sub(a.from) > 1,
        _ => false,
    };
    let runtime = if threaded {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let rt = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            console::complain(format_args!("error: cannot start the runtime: {e}"));
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli.command)) {
        console::complain(format_args!("error: {e:#}"));
        let code = if e.is::<Misconfigured>() {
            supervisor::EXIT_CONFIG
        } else {
            1
        };
        std::process::exit(code);
    }
}

/// An error in a node's configuration (files, keys or options): running again changes
/// nothing until someone fixes it, so the process exits with [`supervisor::EXIT_CONFIG`]
/// and a supervisor does not restart it.
#[derive(Debug)]
struct Misconfigured(anyhow::Error);

impl std::fmt::Display for Misconfigured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Misconfigured {}

/// Runs the loading steps of a node, marking what fails as [`Misconfigured`].
fn misconfigured<T>(load: impl FnOnce() -> Result<T>) -> Result<T> {
    load().map_err(|e| anyhow::Error::new(Misconfigured(e)))
}

/// Loads the group and the key file of a node of `kind`, and names log lines after it.
fn load_node(
    dir: &std::path::Path,
    key_file: &std::path::Path,
    kind: NodeKind,
) -> Result<(config::Group, config::NodeSecrets)> {
    let group = config::Group::load(dir)?;
    let node = config::load_node(&group, key_file, kind)?;
    console::set_role(&node.id);
    Ok((group, node))
}

/// What a trustee or a client starts with: the group, its own secrets, the fewest clients
/// an interval may have, and the relay's address. A group folder (no dealer) runs the
/// epoch's setup first; a configuration folder is read as it is.
async fn start_member(
    dir: &std::path::Path,
    key_file: &std::path::Path,
    (key_role, kind): (KeyRole, NodeKind),
    asked: u16,
    small: SmallSet,
    relay: Option<HostPort>,
) -> Result<(
    config::Group,
    config::NodeSecrets,
    u16,
    HostPort,
    Option<Running>,
)> {
    if config::group::is_group_folder(dir) {
        let (desc, keys) = misconfigured(|| setup::load_node(dir, key_file, key_role))?;
        console::set_role(&keys.name);
        // The group's minimum holds for every node; a flag may only raise it.
        let floor = asked.max(desc.policy.min_clients);
        misconfigured(|| interval_minimum(floor, desc.clients.len(), small))?;
        let relay = relay.map_or_else(|| desc.relay_address(), Ok)?;
        let (group, node) = setup::node(&desc, &keys, key_file, relay.to_string()).await?;
        let min_clients = interval_minimum(floor, group.clients.len(), small)?;
        Ok((group, node, min_clients, relay, Some((desc, keys))))
    } else {
        let (group, node, min_clients) = misconfigured(|| {
            let (group, node) = load_node(dir, key_file, kind)?;
            let min_clients = interval_minimum(asked, group.clients.len(), small)?;
            Ok((group, node, min_clients))
        })?;
        let relay = relay.unwrap_or_else(|| group.relay_address.clone());
        Ok((group, node, min_clients, relay, None))
    }
}

/// A member's running version of a group folder and its own keys.
type Running = (config::group::GroupDesc, config::keys::PrivateKeys);

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Key(k) => group_cmd::key(k),
        Command::Group(g) => group_cmd::run(g),
        Command::Blame(b) => blame_cmd::run(b),
        Command::Config(ConfigCommand::Generate {
            clients,
            trustees,
            cell_length,
            max_cell_length,
            relay,
            force,
            min_anonymity,
            log_window_secs,
            log_window_bytes,
            small,
            dir,
        }) => {
            check_group_size(clients, small)?;
            let min_anonymity = group_minimum(min_anonymity, clients, small)?;
            let max_cell_length = match max_cell_length {
                Some(max) if max < cell_length => bail!(
                    "--max-cell-length {max} is shorter than --cell-length {cell_length}: a \
                     slot's longest cell cannot be shorter than its first; use \
                     --max-cell-length {cell_length} or more, or a shorter --cell-length"
                ),
                Some(max) => max,
                None => config::DEFAULT_MAX_CELL_LENGTH.max(cell_length),
            };
            config::generate(
                &dir,
                &config::GenerateOptions {
                    clients,
                    trustees,
                    cell_length,
                    max_cell_length,
                    relay: relay.to_string(),
                    force,
                    min_anonymity,
                    log_window_secs: log_window_secs
                        .unwrap_or(config::GenerateOptions::default().log_window_secs),
                    log_window_bytes: log_window_bytes
                        .unwrap_or(config::GenerateOptions::default().log_window_bytes),
                },
            )?;
            console::say(format_args!(
                "wrote a configuration for {} and {} to {}",
                console::count(clients as u64, "client"),
                console::count(trustees as u64, "trustee"),
                dir.display()
            ));
            Ok(())
        }
        Command::Relay(a) => {
            match &a.action {
                Some(RelayAction::Refused { dir }) => return relay::refusals::list(dir),
                Some(RelayAction::Admit { dir, who, .. }) => {
                    return relay::refusals::admit(dir, who.as_deref())
                }
                None => {}
            }
            let Some(dir) = a.dir.clone() else {
                anyhow::bail!("dissent relay: a configuration folder is needed");
            };
            let key_file = a.key_file.clone().or(a.key.clone());
            let options = |listen: SocketAddr, min_clients: u16| relay::RelayOptions {
                listen,
                exit: a.exit.clone(),
                exit_policy: {
                    let p = exit::ExitPolicy::new(
                        a.private_exit.allow_private_exit,
                        a.exit_deny.clone(),
                    );
                    p.keep_host_addresses_fresh();
                    p
                },
                window: a.window,
                min_clients,
                idle_gap: Duration::from_millis(a.idle_ms),
                idle_budget: a.idle_budget * 1_000_000,
                exchange_timeout: Duration::from_millis(a.timeout_ms),
                join_delay: Duration::from_millis(a.join_ms),
                downstream_len: a.downstream_length,
                stats_every: a.stats_secs,
                exit_idle: Duration::from_secs(a.exit_idle_secs),
                exit_per_slot: a.exit_per_slot,
                exit_total: a.exit_max,
                period: a.reservation_period,
                status: a.status.clone(),
                response_times: a.response_times.clone(),
                refusals: Some(relay::refusals::path(&dir)),
                straggler_floor: Duration::from_millis(a.straggler_ms),
            };
            if config::group::is_group_folder(&dir) {
                // A group with no dealer: the epoch's setup first, then the DC-net with it;
                // at a switch, the next version's setup and its DC-net.
                let (mut desc, keys) =
                    misconfigured(|| setup::load_relay(&dir, key_file.as_deref()))?;
                console::set_role(&keys.name);
                let mut watch = setup::Watch::new(&dir)?;
                let mut listen = relay_listen(&desc.relay_address()?, a.host, a.port);
                let key_file = key_file.as_deref().unwrap_or(std::path::Path::new("."));
                let mut leaving = None;
                a.metrics.serve().await?;
                loop {
                    // The group's minimum holds for every node; a flag may only raise it.
                    let floor = a.min_clients.max(desc.policy.min_clients);
                    misconfigured(|| interval_minimum(floor, desc.clients.len(), a.small))?;
                    let policy = setup::RelayPolicy {
                        min_clients: floor,
                        trustee_wait: Duration::from_secs(a.trustee_wait_secs),
                    };
                    let (group, bound, serving) =
                        setup::relay(&desc, &keys, key_file, listen, policy, leaving.take())
                            .await?;
                    listen = bound;
                    let min_clients = interval_minimum(floor, group.clients.len(), a.small)?;
                    let running = desc.clone();
                    let ids = (group.group_id, group.session_id);
                    let next = relay::run_epoch(
                        group,
                        keys.link,
                        keys.dh,
                        options(listen, min_clients),
                        watch.next(&running),
                        serving.clone(),
                    )
                    .await?;
                    // The clients this epoch left out are told it ended.
                    if let Some(s) = &serving {
                        s.end();
                    }
                    let Some(mut next) = next else { return Ok(()) };
                    next.ended = Some(ids);
                    desc = next.next.clone();
                    leaving = Some(std::sync::Arc::new(setup::Leaving::new(next)));
                }
            }
            let (group, node, min_clients) = misconfigured(|| {
                let group = config::Group::load(&dir)?;
                let key_file =
                    key_file.unwrap_or_else(|| dir.join(format!("{}.json", group.relay_id)));
                let node = config::load_node(&group, &key_file, NodeKind::Relay)?;
                let min_clients = interval_minimum(a.min_clients, group.clients.len(), a.small)?;
                Ok((group, node, min_clients))
            })?;
            let listen = relay_listen(&group.relay_address, a.host, a.port);
            let dh = node
                .session_private_key
                .ok_or_else(|| anyhow::anyhow!("the relay has no DH key"))?;
            let opts = options(listen, min_clients);
            a.metrics.serve().await?;
            relay::run(group, node.private_key, dh, opts).await
        }
        Command::Trustee(a) => {
            #[cfg(feature = "disruptor")]
            if let Some(mode) = &a.cheat {
                setup::cheat(mode)?;
            }
            let mut first = true;
            loop {
                let (group, node, min_clients, relay, running) = start_member(
                    &a.dir,
                    &a.key_file,
                    (KeyRole::Trustee, NodeKind::Trustee),
                    a.min_clients,
                    a.small,
                    a.relay.clone(),
                )
                .await?;
                if std::mem::take(&mut first) {
                    a.metrics.serve().await?;
                }
                let ended = trustee::run(group, node, relay.to_string(), min_clients).await;
                if !next_epoch(&a.dir, running, KeyRole::Trustee, &relay, ended).await? {
                    return Ok(());
                }
            }
        }
        Command::Client(a) => {
            let mut first = true;
            loop {
                let started = start_member(
                    &a.dir,
                    &a.key_file,
                    (KeyRole::Client, NodeKind::Client),
                    a.min_clients,
                    a.small,
                    a.relay.clone(),
                )
                .await;
                let (group, node, min_clients, relay, running) = match started {
                    // No slot in this epoch (absent when its setup opened): the relay told it
                    // the epoch ended; it takes part in the next version's setup.
                    Err(e) if e.downcast_ref::<setup::LeftOut>().is_some() => {
                        let left = e.downcast::<setup::LeftOut>()?;
                        let relay = a
                            .relay
                            .clone()
                            .map_or_else(|| left.desc.relay_address(), Ok)?;
                        let running = Some((left.desc, left.keys));
                        let ended = Err(anyhow::Error::new(link::dial::Switching));
                        if !next_epoch(&a.dir, running, KeyRole::Client, &relay, ended).await? {
                            return Ok(());
                        }
                        continue;
                    }
                    started => started?,
                };
                let ended = run_client(&a, group, node, min_clients, &relay, first).await;
                first = false;
                if !next_epoch(&a.dir, running, KeyRole::Client, &relay, ended).await? {
                    return Ok(());
                }
            }
        }
        #[cfg(feature = "tools")]
        Command::Qemu(a) if config::group::is_group_folder(&a.dir) => {
            // A group with no dealer: the device runs the epoch's setup in its setup image,
            // then hands the board to its DC-net image.
            let role = config::keys::load_private(&a.key_file)?.role;
            if role != KeyRole::Trustee {
                bail!(
                    "{}: `dissent qemu` runs a group folder's trustees; a {role} of a group \
                     folder runs hosted (`dissent {role}`)",
                    a.key_file.display()
                );
            }
            let (desc, keys) =
                misconfigured(|| setup::load_node(&a.dir, &a.key_file, KeyRole::Trustee))?;
            console::set_role(&keys.name);
            let (group, node, setup_blob) = tools::qemu::group_trustee(&desc, &keys)?;
            let floor = a.min_clients.max(desc.policy.min_clients);
            let min_clients = interval_minimum(floor, group.clients.len(), a.small)?;
            let relay = match a.relay {
                Some(r) => r,
                None => desc.relay_address()?,
            };
            let opts = tools::qemu::QemuOptions {
                firmware: a.firmware,
                relay,
                port: a.port,
                console: a.console,
                min_clients,
                setup: Some((setup_blob, a.setup_firmware)),
            };
            let code = tools::qemu::run(group, node, opts).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        #[cfg(feature = "tools")]
        Command::Qemu(a) => {
            let group = config::Group::load(&a.dir)?;
            let kind = config::node_kind(&group, &a.key_file)?;
            let (group, node) = load_node(&a.dir, &a.key_file, kind)?;
            let min_clients = interval_minimum(a.min_clients, group.clients.len(), a.small)?;
            let relay = a.relay.unwrap_or_else(|| group.relay_address.clone());
            let opts = tools::qemu::QemuOptions {
                firmware: a.firmware,
                relay,
                port: a.port,
                console: a.console,
                min_clients,
                setup: None,
            };
            let code = tools::qemu::run(group, node, opts).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Device(DeviceCommand::Provision(a)) => {
            let group = config::Group::load(&a.dir)?;
            let kind = config::node_kind(&group, &a.key_file)?;
            let (group, node) = load_node(&a.dir, &a.key_file, kind)?;
            let min_clients = interval_minimum(a.min_clients, group.clients.len(), a.small)?;
            let relay = a.relay.unwrap_or_else(|| group.relay_address.clone());
            let wifi = match (a.wifi_ssid, a.wifi_passphrase_file, a.wifi_open) {
                (None, _, _) => None,
                (Some(ssid), Some(file), _) => Some(device::WifiNetwork {
                    ssid,
                    passphrase: device::read_passphrase(&file)?,
                }),
                (Some(ssid), None, true) => Some(device::WifiNetwork {
                    ssid,
                    passphrase: String::new(),
                }),
                (Some(_), None, false) => bail!(
                    "--wifi-ssid needs the network's passphrase: --wifi-passphrase-file FILE, \
                     or --wifi-open for an open network"
                ),
            };
            let opts = device::ProvisionOptions {
                board: a.board,
                relay,
                local_port: a.port,
                min_clients,
                out: a.out,
                wifi,
                ipv4: a
                    .address
                    .as_deref()
                    .map(|address| device::static_ipv4(address, a.gateway, a.dns))
                    .transpose()?,
            };
            device::provision(&a.dir, group, node, opts)?;
            Ok(())
        }
        Command::Clients(a) => {
            let group = config::Group::load(&a.dir)?;
            let min_clients = interval_minimum(a.min_clients, group.clients.len(), a.small)?;
            let relay = a.relay.unwrap_or_else(|| group.relay_address.clone());
            let mut nodes = Vec::new();
            for i in a.from..a.to.min(group.clients.len()) {
                let file = a.dir.join(format!("{}.json", group.clients[i].id));
                nodes.push(config::load_node(&group, &file, NodeKind::Client)?);
            }
            console::set_role(&format!("clients {}..{}", a.from, a.to));
            client::run_many(
                group,
                nodes,
                client::ClientOptions {
                    relay: relay.to_string(),
                    min_clients,
                    min_anonymity: 0,
                    quiet: true,
                    disrupt: None,
                    lie_about_pads: false,
                },
            )
            .await
        }
        Command::Echo { port } => {
            exit::serve_echo(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)).await
        }
        Command::Socks5 {
            port,
            exit,
            exit_deny,
        } => {
            let policy = exit::ExitPolicy::new(exit.allow_private_exit, exit_deny);
            policy.keep_host_addresses_fresh();
            exit::serve_socks5(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port), policy).await
        }
        Command::Supervisor(a) => supervisor::run(supervisor_options(a)).await,
        Command::Up(a) => {
            if let Some(clients) = a.clients {
                check_group_size(clients, a.small)?;
            }
            supervisor::up(supervisor::UpOptions {
                state: a.state.unwrap_or_else(platform::state_dir::default_dir),
                clients: a.clients,
                trustees: a.trustees,
                relay: a.relay,
                relay_port: a.relay_port,
                client_port_base: a.client_port_base,
                exit: a.exit,
                verbose: a.verbose,
                allow_private_exit: a.private_exit.allow_private_exit,
                exit_deny: a.exit_deny,
                allow_small_anonymity_set: a.small.allow_small_anonymity_set,
                status: a.status,
            })
            .await
        }
        Command::Status(a) => status::run(&a.addr, a.watch).await,
        #[cfg(feature = "tools")]
        Command::Bench(a) => tools::bench::run(a).await,
    }
}

/// What `dissent supervisor` runs.
fn supervisor_options(a: SupervisorArgs) -> supervisor::SupervisorOptions {
    supervisor::SupervisorOptions {
        dir: a.dir,
        local: a.local,
        exit: a.exit,
        client_port_base: a.client_port_base,
        relay_port: a.relay_port,
        verbose: a.verbose,
        allow_private_exit: a.private_exit.allow_private_exit,
        exit_deny: a.exit_deny,
        allow_small_anonymity_set: a.small.allow_small_anonymity_set,
        status: a.status,
        relay_host: None,
    }
}

/// Refuses a group of fewer than two clients unless the user accepted it.
fn check_group_size(clients: usize, small: SmallSet) -> Result<()> {
    if clients < config::MIN_ANONYMITY_SET && !small.allow_small_anonymity_set {
        bail!(
            "a group of {} cannot hide anyone: every connection would be traceable to \
             its client. Use -c {} or more, or pass --allow-small-anonymity-set to accept \
             that",
            console::count(clients as u64, "client"),
            config::MIN_ANONYMITY_SET
        );
    }
    Ok(())
}

/// The group's anonymity minimum for `config generate`: `asked` (--min-anonymity), refused
/// below two unless the user accepted a small anonymity set, and above the group's size
/// (no slot could ever transmit); by default two, or one in a group of one.
fn group_minimum(asked: Option<u16>, clients: usize, small: SmallSet) -> Result<u16> {
    let Some(k) = asked else {
        return Ok(config::default_min_anonymity(clients));
    };
    let floor = config::MIN_ANONYMITY_SET;
    if usize::from(k) < floor && !small.allow_small_anonymity_set {
        bail!(
            "--min-anonymity {k} would let a slot transmit while it can be traced to its \
             client; use {floor} or more, or pass --allow-small-anonymity-set to accept that"
        );
    }
    if usize::from(k) > clients {
        bail!(
            "--min-anonymity {k} is more than the group's {}: no slot could ever transmit; \
             use at most {clients}",
            console::count(clients as u64, "client")
        );
    }
    Ok(k)
}

/// The fewest clients an interval may have: `asked` (--min-clients), refused below two or
/// above the group's size unless the user accepted a small anonymity set, in which case it
/// is lowered to the group's size with one warning.
fn interval_minimum(asked: u16, group_clients: usize, small: SmallSet) -> Result<u16> {
    let floor = config::MIN_ANONYMITY_SET;
    let allowed = small.allow_small_anonymity_set;
    if usize::from(asked) < floor && !allowed {
        bail!(
            "--min-clients {asked} would run intervals with fewer than {floor} clients, where \
             a connection is traceable to its client; use {floor} or more, or pass \
             --allow-small-anonymity-set to accept that"
        );
    }
    if usize::from(asked) > group_clients {
        if !allowed {
            bail!(
                "the group has {}, fewer than --min-clients {asked}, so no interval could \
                 start; use a configuration with at least {asked} clients, or pass \
                 --allow-small-anonymity-set to run intervals of {group_clients}",
                console::count(group_clients as u64, "client")
            );
        }
        // The group size is at most MAX_CLIENTS, so it fits.
        let lowered = u16::try_from(group_clients).unwrap_or(u16::MAX);
        warn_small_set(lowered);
        return Ok(lowered);
    }
    if usize::from(asked) < floor {
        warn_small_set(asked);
    }
    Ok(asked)
}

fn warn_small_set(clients: u16) {
    tracing::warn!(
        "intervals may run with only {} (--allow-small-anonymity-set): a connection is \
         hidden among no more than that many",
        console::count(clients, "client")
    );
}

/// The relay's listening address: system.json's, with optional host and port overrides.
fn relay_listen(configured: &HostPort, host: Option<IpAddr>, port: Option<u16>) -> SocketAddr {
    let ip = host.unwrap_or(match configured.host() {
        Host::Ip(ip) => *ip,
        // A name (not an address) in system.json: listen everywhere.
        Host::Name(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    SocketAddr::new(ip, port.unwrap_or(configured.port()))
}

/// Runs a client's DC-net role for one epoch (its metrics served the first time).
async fn run_client(
    a: &ClientArgs,
    group: config::Group,
    node: config::NodeSecrets,
    min_clients: u16,
    relay: &HostPort,
    first: bool,
) -> Result<()> {
    if !a.host.is_loopback() {
        tracing::warn!(
            "listening on {}, beyond this machine (--host): anyone who can reach it \
                 can send through this client's slot and read the replies; use \
                 --host 127.0.0.1 unless that is what you want",
            SocketAddr::new(a.host, a.port)
        );
    }
    if first {
        a.metrics.serve().await?;
    }
    client::run(
        group,
        node,
        SocketAddr::new(a.host, a.port),
        client::ClientOptions {
            relay: relay.to_string(),
            min_clients,
            min_anonymity: a.min_anonymity,
            quiet: false,
            #[cfg(feature = "disruptor")]
            disrupt: a.disrupt.clone(),
            #[cfg(not(feature = "disruptor"))]
            disrupt: None,
            #[cfg(feature = "disruptor")]
            lie_about_pads: a.lie_about_pads,
            #[cfg(not(feature = "disruptor"))]
            lie_about_pads: false,
        },
    )
    .await
}

/// Writes the checked next version (the bytes the relay served) into the node's group
/// folder, unless it holds them already; nodes that share a folder on one machine all write
/// the same bytes at a switch, each through a file of its own renamed into place, so no node
/// ever reads a half-written `group.json`.
fn save_version(dir: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use anyhow::Context as _;
    let path = config::group::group_file(dir);
    if std::fs::read(&path).is_ok_and(|held| held == bytes) {
        return Ok(());
    }
    let own = dir.join(format!(".group.json.{}.tmp", std::process::id()));
    std::fs::write(&own, bytes).with_context(|| format!("{}: cannot write", own.display()))?;
    std::fs::rename(&own, &path).with_context(|| format!("{}: cannot write", path.display()))
}

/// After a member's DC-net role ended: `Ok(true)` when the relay announced a switch and
/// this node is a member of the next version, fetched from the relay and checked (newer,
/// signed by every trustee of both versions) and saved in its group folder: the caller runs
/// that version's setup and epoch. A member the next version leaves out stops, saying so.
async fn next_epoch(
    dir: &std::path::Path,
    running: Option<Running>,
    role: KeyRole,
    relay: &HostPort,
    ended: Result<()>,
) -> Result<bool> {
    let (desc, keys) = match (ended, running) {
        (Ok(()), _) => return Ok(false),
        (Err(e), Some(running)) if e.downcast_ref::<link::dial::Switching>().is_some() => running,
        (Err(e), _) => return Err(e),
    };
    if role == KeyRole::Client {
        tracing::info!(
            "the group switches to a new version: this client's local connections are closed \
             (its pseudonym changes, and keeping them would link the two epochs' pseudonyms)"
        );
    } else {
        tracing::info!("the group switches to a new version at the end of this epoch");
    }
    match setup::fetch_next(&desc, &keys, &relay.to_string()).await? {
        setup::Fetched::Next(next, bytes) => {
            save_version(dir, &bytes)?;
            tracing::info!(
                "switch: version {} saved in {}; setting up its epoch",
                next.version,
                dir.display()
            );
            Ok(true)
        }
        setup::Fetched::Removed(next) => bail!(
            "{} {} is not a member of group version {} ({}): removed at the switch; this node \
             stops, and the relay refuses its keys from now on",
            role,
            keys.name,
            next.version,
            next.fingerprint()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[String]) -> Command {
        let argv = std::iter::once("dissent").chain(args.iter().map(String::as_str));
        Cli::try_parse_from(argv).unwrap().command
    }

    fn words(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn the_supervisor_hands_every_exit_deny_to_its_relay() {
        let denied: Vec<exit::Cidr> = ["203.0.113.7/32", "2001:db8::/32"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        let cmd = words(&[
            "supervisor",
            "--exit-deny",
            "203.0.113.7",
            "--exit-deny",
            "2001:db8::/32",
            "--allow-private-exit",
            "cfg",
        ]);
        let Command::Supervisor(a) = parse(&cmd) else {
            panic!("not the supervisor");
        };
        let relay = supervisor::relay_args(&supervisor_options(a), 12345);
        let Command::Relay(r) = parse(&relay) else {
            panic!("the relay child's command line is not `relay`: {relay:?}");
        };
        assert_eq!(r.exit_deny, denied);
        assert!(r.private_exit.allow_private_exit);
        assert_eq!(r.dir, Some(PathBuf::from("cfg")));

        // Without the option the relay gets none.
        let Command::Supervisor(a) = parse(&words(&["supervisor", "cfg"])) else {
            panic!("not the supervisor");
        };
        let relay = supervisor::relay_args(&supervisor_options(a), 12345);
        let Command::Relay(r) = parse(&relay) else {
            panic!("not the relay: {relay:?}");
        };
        assert!(r.exit_deny.is_empty());
    }

    #[test]
    fn the_refusal_list_commands_parse_beside_the_relay_itself() {
        let Command::Relay(r) = parse(&words(&["relay", "admit", "cfg", "client-3"])) else {
            panic!("not the relay");
        };
        let Some(RelayAction::Admit { dir, who, all }) = r.action else {
            panic!("not admit: {:?}", r.action);
        };
        assert_eq!(
            (dir, who, all),
            (PathBuf::from("cfg"), Some("client-3".into()), false)
        );
        let Command::Relay(r) = parse(&words(&["relay", "admit", "cfg", "--all"])) else {
            panic!("not the relay");
        };
        assert!(matches!(
            r.action,
            Some(RelayAction::Admit {
                who: None,
                all: true,
                ..
            })
        ));
        let Command::Relay(r) = parse(&words(&["relay", "refused", "cfg"])) else {
            panic!("not the relay");
        };
        assert!(matches!(r.action, Some(RelayAction::Refused { .. })));
        let Command::Relay(r) = parse(&words(&["relay", "cfg"])) else {
            panic!("not the relay");
        };
        assert!(r.action.is_none());
        assert_eq!(r.dir, Some(PathBuf::from("cfg")));
        assert!(Cli::try_parse_from(["dissent", "relay", "admit", "cfg"]).is_err());
    }

    #[test]
    fn up_takes_exit_deny_for_its_relay() {
        let cmd = words(&["up", "--exit-deny", "198.51.100.0/24"]);
        let Command::Up(a) = parse(&cmd) else {
            panic!("not up");
        };
        assert_eq!(
            a.exit_deny,
            ["198.51.100.0/24".parse::<exit::Cidr>().unwrap()]
        );
        assert!(parse_fails(&["up", "--exit-deny", "198.51.100.0/33"]));
    }

    fn parse_fails(args: &[&str]) -> bool {
        let argv = std::iter::once("dissent").chain(args.iter().copied());
        Cli::try_parse_from(argv).is_err()
    }
}
