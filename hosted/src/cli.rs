//! The command line: every subcommand, its options and the checks on their values (clap
//! parses, these ranges refuse what no role could run with, before anything runs).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config;
use crate::config::addr::HostPort;
use crate::exit::ExitKind;
#[cfg(feature = "tools")]
use crate::tools;
use crate::{blame_cmd, device, exit, group_cmd, metrics, relay, setup};

/// A Dissent-style low-latency DC-net: anonymous TCP through a relay, clients and trustees.
#[derive(Parser, Debug)]
#[command(name = "dissent", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
pub(crate) enum ConfigCommand {
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
pub(crate) struct PrivateExit {
    /// Let the SOCKS5 exit reach loopback, private and other addresses that are not
    /// globally reachable, and this host's own (for trying it against a server on this
    /// machine). Without it such destinations get "connection not allowed by ruleset".
    #[arg(long, alias = "allow-private")]
    pub(crate) allow_private_exit: bool,
}

/// Serves Prometheus metrics.
#[derive(Args, Debug, Clone)]
pub(crate) struct MetricsArg {
    /// Serve Prometheus metrics at http://ADDR/metrics. ADDR is HOST:PORT or a port alone
    /// (127.0.0.1:PORT); port 0 takes a free port, named in the log. A name must resolve to
    /// loopback; another IP address written out serves the metrics beyond this machine,
    /// where anyone who reaches it sees this node's traffic counters.
    #[arg(long, value_name = "ADDR", value_parser = metrics::parse_listen)]
    pub(crate) metrics: Option<HostPort>,
}

impl MetricsArg {
    /// Starts the metrics endpoint when one was asked for.
    pub(crate) async fn serve(&self) -> anyhow::Result<()> {
        if let Some(addr) = &self.metrics {
            metrics::serve(addr).await?;
        }
        Ok(())
    }
}

/// Accepts groups and intervals of fewer than two clients, or fewer than --min-clients.
#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct SmallSet {
    /// Accept a group or interval with fewer than 2 clients (or fewer than --min-clients):
    /// every connection is then hidden among that few clients, or traceable to its client
    /// when there is only one.
    #[arg(long)]
    pub(crate) allow_small_anonymity_set: bool,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct RelayArgs {
    #[command(subcommand)]
    pub(crate) action: Option<RelayAction>,
    /// Port to listen on, 0-65535 (default: the port in system.json; 0: a free port,
    /// named in the log).
    #[arg(short, long, value_name = "PORT", value_parser = listen_port())]
    pub(crate) port: Option<u16>,
    /// Address to listen on (default: the host in system.json; every address when it is
    /// a name).
    #[arg(long, value_name = "IP")]
    pub(crate) host: Option<IpAddr>,
    /// Where decoded connections go: socks5, echo or tcp:HOST:PORT.
    #[arg(long, default_value = "socks5")]
    pub(crate) exit: ExitKind,
    #[command(flatten)]
    pub(crate) private_exit: PrivateExit,
    /// Also refuse exit connections to this network (ADDRESS/PREFIX or an address), even
    /// with --allow-private-exit: a public address of this host behind 1:1 NAT, which no
    /// interface shows, say. Repeatable. This host's own interface addresses are refused
    /// anyway, read again every 30 s.
    #[arg(long, value_name = "CIDR")]
    pub(crate) exit_deny: Vec<exit::Cidr>,
    /// Exchanges in flight ahead of the last decoded one, 1-64 (trustees and clients are
    /// asked for the same exchanges).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = window(), alias = "trustee-window", alias = "client-window")]
    pub(crate) window: u16,
    /// Clients that must be connected before exchanges start, 2-65535 (1 with
    /// --allow-small-anonymity-set).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = min_clients())]
    pub(crate) min_clients: u16,
    #[command(flatten)]
    pub(crate) small: SmallSet,
    /// Longest pause in milliseconds between exchanges while nobody sends anything,
    /// 1-10000. A new conversation's first byte waits for the next reservation exchange, so
    /// lower values cut that wait at the cost of more idle CPU and traffic.
    #[arg(long, value_name = "MS", default_value_t = 50, value_parser = ranged::<u64>(1, 10_000, "1-10000"))]
    pub(crate) idle_ms: u64,
    /// Megabytes per second of cells an idle net may cost the relay, 1-100000. In a large
    /// group an idle exchange costs every member a cell, so the idle pause grows until idle
    /// exchanges stay within this (about 0.8 s at 10,000 clients).
    #[arg(long, value_name = "MB", default_value_t = 16, value_parser = ranged::<u64>(1, 100_000, "1-100000"))]
    pub(crate) idle_budget: u64,
    /// Milliseconds a newly connected client waits for the running interval to end, so
    /// clients arriving together join one new interval, 0-10000.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = ranged::<u64>(0, 10_000, "0-10000"))]
    pub(crate) join_ms: u64,
    /// A reservation exchange at least every N exchanges while slots are reserved, 2-1024
    /// (a lone sender gets N-1 of every N exchanges).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = ranged::<u16>(2, 1024, "2-1024"))]
    pub(crate) reservation_period: u16,
    /// Open exit connections one pseudonym slot may have, 1-65535.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = ranged::<usize>(1, 65_535, "1-65535"))]
    pub(crate) exit_per_slot: usize,
    /// Open exit connections in all, 1-1000000 (lowered to what the open-file limit leaves
    /// after every member's link).
    #[arg(long, value_name = "N", default_value_t = 16_384, value_parser = ranged::<usize>(1, 1_000_000, "1-1000000"))]
    pub(crate) exit_max: usize,
    /// Milliseconds a peer may take to answer an exchange before it is dropped,
    /// 100-3600000.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = ranged::<u64>(100, 3_600_000, "100-3600000"))]
    pub(crate) timeout_ms: u64,
    /// Milliseconds a straggler gets at least once all but one in eight clients answered an
    /// exchange or acknowledged a view (or 4 times what they took, if longer), 1-3600000;
    /// then it is dropped and backed off (docs/security.md).
    #[arg(long, value_name = "MS", default_value_t = 500, value_parser = ranged::<u64>(1, 3_600_000, "1-3600000"))]
    pub(crate) straggler_ms: u64,
    /// Seconds a trustee's turn in a group's setup may take (its key, each chunk of its
    /// shuffle, its record), plus 50 ms per client, before it is left out as silent where
    /// the group's min_trustees allows it, 1-86400 (docs/protocol.md §12).
    #[arg(long, value_name = "SECS", default_value_t = setup::TRUSTEE_WAIT.as_secs(), value_parser = seconds())]
    pub(crate) trustee_wait_secs: u64,
    /// Largest downstream payload per exchange, in bytes, 1-65535.
    #[arg(long, value_name = "BYTES", default_value_t = dissent_core::MAX_DOWNSTREAM, value_parser = ranged::<usize>(1, dissent_core::MAX_DOWNSTREAM as u64, "1-65535"))]
    pub(crate) downstream_length: usize,
    /// Seconds between stats lines, 1-86400.
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = seconds())]
    pub(crate) stats_secs: u64,
    /// Seconds without traffic after which an exit connection is closed, 1-86400.
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = seconds())]
    pub(crate) exit_idle_secs: u64,
    /// Serve a status page at http://ADDR/ (and its figures at /status.json). ADDR is
    /// HOST:PORT or a port alone (127.0.0.1:PORT); port 0 takes any free port, printed in
    /// the log. A name must resolve to loopback; another IP address written out serves the
    /// page beyond this machine.
    #[arg(long, value_name = "ADDR", value_parser = relay::status::parse_listen)]
    pub(crate) status: Option<HostPort>,
    /// Write one line per client cell to FILE: when it was read (Unix microseconds), the
    /// client's index, and the microseconds since its request was queued for the client's
    /// link (what `dissent bench timing` reads; measuring only).
    #[arg(long, value_name = "FILE")]
    pub(crate) response_times: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) metrics: MetricsArg,
    /// Configuration folder.
    #[arg(required = true)]
    pub(crate) dir: Option<PathBuf>,
    /// The relay's private file (default: DIR/relay.json).
    #[arg(value_name = "KEY_FILE")]
    pub(crate) key_file: Option<PathBuf>,
    /// The relay's private file (the older spelling of KEY_FILE).
    #[arg(long, value_name = "FILE", hide = true, conflicts_with = "key_file")]
    pub(crate) key: Option<PathBuf>,
}

/// The relay's refusal list (DIR/refused.json): clients it refuses until an operator lets
/// them back in.
#[derive(Subcommand, Debug)]
pub(crate) enum RelayAction {
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
pub(crate) struct TrusteeArgs {
    /// Relay address (default: the one in system.json).
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) relay: Option<HostPort>,
    /// Refuse intervals with fewer clients online than this (the anonymity set), 2-65535
    /// (1 with --allow-small-anonymity-set).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = min_clients())]
    pub(crate) min_clients: u16,
    /// Cheat in the epoch setup on purpose, for testing a group (builds with the
    /// `disruptor` feature only): swap, replace, duplicate, reencryption, share or key-proof.
    #[cfg(feature = "disruptor")]
    #[arg(long, value_name = "MODE")]
    pub(crate) cheat: Option<String>,
    #[command(flatten)]
    pub(crate) small: SmallSet,
    #[command(flatten)]
    pub(crate) metrics: MetricsArg,
    /// Configuration folder.
    pub(crate) dir: PathBuf,
    /// This trustee's private file, DIR/ID.json.
    pub(crate) key_file: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct ClientArgs {
    /// Local port to listen on, 0-65535 (0: a free port, named in the log).
    #[arg(short, long, default_value_t = 1080, value_parser = listen_port())]
    pub(crate) port: u16,
    /// Local address to listen on.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub(crate) host: IpAddr,
    /// Relay address (default: the one in system.json).
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) relay: Option<HostPort>,
    /// Refuse to send in intervals with fewer clients than this (the anonymity set), 2-65535
    /// (1 with --allow-small-anonymity-set).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = min_clients())]
    pub(crate) min_clients: u16,
    /// Send only while the slot's anonymity set (the clients online in every interval in
    /// which it sent) keeps at least N clients; raises the group's min_anonymity, never
    /// lowers it.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) min_anonymity: u16,
    /// Misbehave on purpose, for testing a group (builds with the `disruptor` feature
    /// only): garble-all, garble-every-other, garble-data, invert-reservations,
    /// flip-payload, inject, withhold-ack or slow.
    #[cfg(feature = "disruptor")]
    #[arg(long, value_name = "MODE")]
    pub(crate) disrupt: Option<String>,
    /// In blame rounds, reveal a false pad bit for the pair with trustee 0 and never prove
    /// that pair's secret, for testing the dispute that convicts such a liar on the
    /// trustee's proof (`disruptor` feature only).
    #[cfg(feature = "disruptor")]
    #[arg(long)]
    pub(crate) lie_about_pads: bool,
    #[command(flatten)]
    pub(crate) small: SmallSet,
    #[command(flatten)]
    pub(crate) metrics: MetricsArg,
    /// Configuration folder.
    pub(crate) dir: PathBuf,
    /// This client's private file, DIR/ID.json.
    pub(crate) key_file: PathBuf,
}

#[derive(Subcommand, Debug)]
pub(crate) enum DeviceCommand {
    /// Write the provisioning blob of a client or trustee of DIR for a board (mode 600), and
    /// say where to flash it. For a trustee of a group folder, two blobs beside its key
    /// file: its DC-net node's and its setup image's.
    Provision(ProvisionArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ProvisionArgs {
    /// The board the node runs on.
    #[arg(long, value_enum)]
    pub(crate) board: device::BoardKind,
    /// The relay as the board reaches it (default: the one in system.json): an IPv4
    /// address, or a DNS name the board looks up at each dial.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) relay: Option<HostPort>,
    /// For a Wi-Fi board: the name (SSID) of the network it joins.
    #[arg(long, value_name = "SSID")]
    pub(crate) wifi_ssid: Option<String>,
    /// For a Wi-Fi board: a file whose first line is the network's WPA2/WPA3 passphrase.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "wifi_open",
        requires = "wifi_ssid"
    )]
    pub(crate) wifi_passphrase_file: Option<PathBuf>,
    /// For a Wi-Fi board: the network is open (no passphrase).
    #[arg(long, requires = "wifi_ssid")]
    pub(crate) wifi_open: bool,
    /// The board's own address and prefix length, A.B.C.D/PREFIX, for a network without
    /// DHCP or a board built without it (the NUCLEO-F767ZI's; default: DHCP).
    #[arg(long, value_name = "A.B.C.D/PREFIX")]
    pub(crate) address: Option<String>,
    /// With --address: the gateway to the relay when it is on another network.
    #[arg(long, value_name = "A.B.C.D", requires = "address")]
    pub(crate) gateway: Option<std::net::Ipv4Addr>,
    /// With --address: the DNS server that looks the relay's name up.
    #[arg(long, value_name = "A.B.C.D", requires = "address")]
    pub(crate) dns: Option<std::net::Ipv4Addr>,
    /// For a client: the device's port for local applications, 1-65535.
    #[arg(short, long, value_name = "PORT", default_value_t = device::DEVICE_PROXY_PORT, value_parser = port())]
    pub(crate) port: u16,
    /// Where to write the blob (default: DIR/ID.BOARD.bin; for a group folder's trustee
    /// NAME.BOARD.bin beside its key file, and its setup blob as NAME.BOARD.setup.bin).
    #[arg(short, long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Refuse intervals with fewer clients online than this (the anonymity set), 2-65535
    /// (1 with --allow-small-anonymity-set).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = min_clients())]
    pub(crate) min_clients: u16,
    #[command(flatten)]
    pub(crate) small: SmallSet,
    /// Configuration folder.
    pub(crate) dir: PathBuf,
    /// The node's private file, DIR/ID.json.
    pub(crate) key_file: PathBuf,
}

#[cfg(feature = "tools")]
#[derive(Args, Debug)]
pub(crate) struct QemuArgs {
    /// For a client: the port on 127.0.0.1 forwarded to its proxy port on the device,
    /// 1-65535 (default 1080).
    #[arg(short, long, value_name = "HOST_PORT", value_parser = port())]
    pub(crate) port: Option<u16>,
    /// Firmware ELF to boot (default: `trustee` or `client` from $DISSENT_FIRMWARE_DIR, from
    /// firmware/mps2-an385/ beside this binary or ../share/dissent/firmware/mps2-an385/ from
    /// it, or the release build in the source tree, the first found).
    #[arg(long, value_name = "ELF")]
    pub(crate) firmware: Option<PathBuf>,
    /// A group folder's trustee: the setup image to boot first (default: `trustee-setup`,
    /// looked for where the firmware is).
    #[arg(long, value_name = "ELF")]
    pub(crate) setup_firmware: Option<PathBuf>,
    /// Relay address as this machine reaches it (default: the one in system.json); the
    /// device reaches this machine's own addresses at 10.0.2.2.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) relay: Option<HostPort>,
    /// Write the device's console to FILE instead of the terminal.
    #[arg(long, value_name = "FILE")]
    pub(crate) console: Option<PathBuf>,
    /// Refuse intervals with fewer clients online than this (the anonymity set), 2-65535
    /// (1 with --allow-small-anonymity-set).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = min_clients())]
    pub(crate) min_clients: u16,
    #[command(flatten)]
    pub(crate) small: SmallSet,
    /// Configuration folder.
    pub(crate) dir: PathBuf,
    /// The node's private file, DIR/ID.json (a client's or a trustee's).
    pub(crate) key_file: PathBuf,
}

/// Runs clients FROM..TO of DIR in one process, without local ports (load for benchmarks).
#[derive(Args, Debug)]
pub(crate) struct ClientsArgs {
    /// First client index.
    #[arg(long)]
    pub(crate) from: usize,
    /// One past the last client index.
    #[arg(long)]
    pub(crate) to: usize,
    /// Relay address (default: the one in system.json).
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) relay: Option<HostPort>,
    /// Refuse to send in intervals with fewer clients than this.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = min_clients())]
    pub(crate) min_clients: u16,
    #[command(flatten)]
    pub(crate) small: SmallSet,
    /// Configuration folder.
    pub(crate) dir: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct SupervisorArgs {
    /// Configuration folder.
    pub(crate) dir: PathBuf,
    /// Leave the last K clients for you to start by hand.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub(crate) local: usize,
    /// Where decoded connections go: socks5, echo or tcp:HOST:PORT.
    #[arg(long, default_value = "socks5")]
    pub(crate) exit: ExitKind,
    /// Client i listens on 127.0.0.1:(BASE + i); BASE + clients - 1 must be at most 65535.
    #[arg(long, value_name = "BASE", default_value_t = 1080, value_parser = port())]
    pub(crate) client_port_base: u16,
    /// The relay's port, 1-65535 (default: the one in system.json).
    #[arg(long, value_name = "PORT", value_parser = port(), alias = "port", short_alias = 'p')]
    pub(crate) relay_port: Option<u16>,
    #[command(flatten)]
    pub(crate) private_exit: PrivateExit,
    /// Also refuse exit connections to this network (ADDRESS/PREFIX or an address); passed
    /// to the relay (see `relay --exit-deny`). Repeatable.
    #[arg(long, value_name = "CIDR")]
    pub(crate) exit_deny: Vec<exit::Cidr>,
    #[command(flatten)]
    pub(crate) small: SmallSet,
    /// Let the relay serve its status page at ADDR (see `relay --status`).
    #[arg(long, value_name = "ADDR", value_parser = relay::status::parse_listen)]
    pub(crate) status: Option<HostPort>,
    /// Show info logs of every child, not just the relay.
    #[arg(short, long)]
    pub(crate) verbose: bool,
}

#[derive(Args, Debug)]
pub(crate) struct UpArgs {
    /// State folder (default: $XDG_STATE_HOME/dissent or ~/.local/state/dissent; on macOS
    /// ~/Library/Application Support/dissent, on Windows %LOCALAPPDATA%\dissent). One
    /// `up` runs from a state folder at a time; give another to run a second demo.
    #[arg(long, value_name = "DIR")]
    pub(crate) state: Option<PathBuf>,
    /// Clients, 2-65535 (default: those of the existing demo, or 10).
    #[arg(short, long, value_name = "N", value_parser = clients())]
    pub(crate) clients: Option<usize>,
    /// Trustees, 1-16 (default: those of the existing demo, or 3).
    #[arg(short, long, value_name = "N", value_parser = trustees())]
    pub(crate) trustees: Option<usize>,
    /// Relay address, on this machine's loopback (default: the existing demo's, or
    /// 127.0.0.1:12345).
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) relay: Option<HostPort>,
    /// The relay's port, 1-65535 (replaces the port of --relay).
    #[arg(long, value_name = "PORT", value_parser = port())]
    pub(crate) relay_port: Option<u16>,
    /// Client i listens on 127.0.0.1:(BASE + i); BASE + clients - 1 must be at most 65535.
    #[arg(long, value_name = "BASE", default_value_t = 1080, value_parser = port())]
    pub(crate) client_port_base: u16,
    /// Where decoded connections go: socks5, echo or tcp:HOST:PORT.
    #[arg(long, default_value = "socks5")]
    pub(crate) exit: ExitKind,
    #[command(flatten)]
    pub(crate) private_exit: PrivateExit,
    /// Also refuse exit connections to this network (ADDRESS/PREFIX or an address); passed
    /// to the relay (see `relay --exit-deny`). Repeatable.
    #[arg(long, value_name = "CIDR")]
    pub(crate) exit_deny: Vec<exit::Cidr>,
    #[command(flatten)]
    pub(crate) small: SmallSet,
    /// Let the relay serve its status page at ADDR (see `relay --status`).
    #[arg(long, value_name = "ADDR", value_parser = relay::status::parse_listen)]
    pub(crate) status: Option<HostPort>,
    /// Show info logs of every child, not just the relay.
    #[arg(short, long)]
    pub(crate) verbose: bool,
}

/// Shows a relay's status.
#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// Where the relay serves its status page (`relay --status`): HOST:PORT, or a port alone
    /// (127.0.0.1:PORT).
    #[arg(value_name = "ADDR", value_parser = metrics::parse_listen)]
    pub(crate) addr: HostPort,
    /// Print it again every second until Ctrl-C.
    #[arg(short, long)]
    pub(crate) watch: bool,
}

/// A whole number in `lo..=hi`, refused with the range written as the help writes it
/// (`shown`, e.g. "1-64"), so the help and the error never disagree.
pub(crate) fn ranged<T>(
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
pub(crate) fn port(
) -> impl Fn(&str) -> std::result::Result<u16, String> + Clone + Send + Sync + 'static {
    ranged(1, 65_535, "1-65535")
}

/// A port a process listens on: 0-65535 (0: a free port the system picks).
pub(crate) fn listen_port(
) -> impl Fn(&str) -> std::result::Result<u16, String> + Clone + Send + Sync + 'static {
    ranged(0, 65_535, "0-65535")
}

/// A pipelining window: 1-64.
pub(crate) fn window(
) -> impl Fn(&str) -> std::result::Result<u16, String> + Clone + Send + Sync + 'static {
    const _: () = assert!(dissent_core::MAX_WINDOW == 64);
    ranged(1, dissent_core::MAX_WINDOW as u64, "1-64")
}

/// The wording of the clients' range, in the help and in errors.
pub(crate) const CLIENTS_RANGE: &str = "2-65535 (1 with --allow-small-anonymity-set)";

/// A --min-clients value: 1-65535 (below 2 only with --allow-small-anonymity-set).
pub(crate) fn min_clients(
) -> impl Fn(&str) -> std::result::Result<u16, String> + Clone + Send + Sync + 'static {
    ranged(1, config::MAX_CLIENTS as u64, CLIENTS_RANGE)
}

/// A number of clients: 1-65535 (below 2 only with --allow-small-anonymity-set).
pub(crate) fn clients(
) -> impl Fn(&str) -> std::result::Result<usize, String> + Clone + Send + Sync + 'static {
    ranged(1, config::MAX_CLIENTS as u64, CLIENTS_RANGE)
}

/// The log window's time in seconds: 1-86400.
pub(crate) fn log_window_secs(
) -> impl Fn(&str) -> std::result::Result<u64, String> + Clone + Send + Sync + 'static {
    const _: () = assert!(config::MAX_LOG_WINDOW_SECS == 86_400);
    ranged(1, config::MAX_LOG_WINDOW_SECS, "1-86400")
}

/// The log window's size in bytes: 1-1073741824.
pub(crate) fn log_window_bytes(
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
    pub(crate) fn role(&self) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{supervisor, supervisor_options};

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
