//! `dissent`: every role of the dissent-rs DC-net in one binary.

mod admission;
mod bench;
mod client;
mod config;
mod exit;
mod link;
mod net;
mod relay;
mod supervisor;
mod trustee;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tracing::Instrument;

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
    /// Run the relay (the hub clients and trustees connect to).
    Relay(RelayArgs),
    /// Run a trustee.
    Trustee {
        /// Relay address (default: the one in system.json).
        #[arg(long)]
        relay: Option<String>,
        /// Refuse intervals with fewer clients online than this (the anonymity set).
        #[arg(long, default_value_t = 2)]
        min_clients: u16,
        /// Configuration folder.
        dir: PathBuf,
        /// This trustee's private file, DIR/ID.json.
        key_file: PathBuf,
    },
    /// Run a client: a local port whose TCP connections go through the DC-net.
    Client {
        /// Local port to listen on.
        #[arg(short, long, default_value_t = 1080)]
        port: u16,
        /// Local address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        /// Relay address (default: the one in system.json).
        #[arg(long)]
        relay: Option<String>,
        /// Configuration folder.
        dir: PathBuf,
        /// This client's private file, DIR/ID.json.
        key_file: PathBuf,
    },
    /// Run a standalone echo server.
    Echo {
        /// Port to listen on (127.0.0.1).
        #[arg(short, long, default_value_t = 8080)]
        port: u16,
    },
    /// Run a standalone SOCKS5 server.
    Socks5 {
        /// Port to listen on (127.0.0.1).
        #[arg(short, long, default_value_t = 8080)]
        port: u16,
        /// Also connect to loopback, private and other non-public addresses.
        #[arg(long)]
        allow_private: bool,
    },
    /// Run the relay, the trustees and the clients of DIR as child processes.
    Supervisor {
        /// Configuration folder.
        dir: PathBuf,
        /// Leave the last K clients for you to start by hand.
        #[arg(long, default_value_t = 0)]
        local: usize,
        /// Where decoded connections go: socks5, echo or tcp:HOST:PORT.
        #[arg(long, default_value = "socks5")]
        exit: ExitKind,
        /// Client i listens on 127.0.0.1:(BASE + i).
        #[arg(long, default_value_t = 1080)]
        client_port_base: u16,
        /// Relay port (default: the one in system.json).
        #[arg(short, long)]
        port: Option<u16>,
        /// Let the SOCKS5 exit reach loopback, private and other non-public addresses.
        #[arg(long)]
        allow_private_exit: bool,
        /// Show info logs of every child, not just the relay.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Run a local demo DC-net with SOCKS5 proxies (creates its configuration on first use).
    Up {
        /// State folder (default: $XDG_STATE_HOME/dissent or ~/.local/state/dissent).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Clients in a new configuration.
        #[arg(short, long, default_value_t = config::DEFAULT_CLIENTS)]
        clients: usize,
        /// Trustees in a new configuration.
        #[arg(short, long, default_value_t = config::DEFAULT_TRUSTEES)]
        trustees: usize,
        /// Relay address of a new configuration.
        #[arg(long, default_value = config::DEFAULT_RELAY)]
        relay: String,
        /// Client i listens on 127.0.0.1:(BASE + i).
        #[arg(long, default_value_t = 1080)]
        client_port_base: u16,
        /// Where decoded connections go: socks5, echo or tcp:HOST:PORT.
        #[arg(long, default_value = "socks5")]
        exit: ExitKind,
        /// Let the SOCKS5 exit reach loopback, private and other non-public addresses.
        #[arg(long)]
        allow_private_exit: bool,
        /// Show info logs of every child, not just the relay.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Measure speed: `core` (protocol CPU cost, in memory), `net` (real processes over
    /// loopback), or both.
    Bench(bench::BenchArgs),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Write a new configuration set (system, session, pseudonym and private files).
    Generate {
        /// Number of clients.
        #[arg(short, long, default_value_t = config::DEFAULT_CLIENTS)]
        clients: usize,
        /// Number of trustees.
        #[arg(short, long, default_value_t = config::DEFAULT_TRUSTEES)]
        trustees: usize,
        /// Cell length in bytes.
        #[arg(long, default_value_t = config::DEFAULT_CELL_LENGTH)]
        cell_length: usize,
        /// Relay address written into system.json.
        #[arg(long, default_value = config::DEFAULT_RELAY)]
        relay: String,
        /// Overwrite an existing configuration.
        #[arg(long)]
        force: bool,
        /// Folder to write.
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
struct RelayArgs {
    /// Port to listen on (default: the one in system.json).
    #[arg(short, long)]
    port: Option<u16>,
    /// Address to listen on (default: the host in system.json).
    #[arg(long)]
    host: Option<IpAddr>,
    /// Where decoded connections go: socks5, echo or tcp:HOST:PORT.
    #[arg(long, default_value = "socks5")]
    exit: ExitKind,
    /// Let the SOCKS5 exit reach loopback, private and other non-public addresses.
    #[arg(long)]
    allow_private_exit: bool,
    /// Exchanges clients are asked ahead of the last decoded one.
    #[arg(long, default_value_t = 8)]
    client_window: u16,
    /// Exchanges trustees are asked ahead of the last decoded one.
    #[arg(long, default_value_t = 16)]
    trustee_window: u16,
    /// Clients that must be connected before exchanges start.
    #[arg(long, default_value_t = 2)]
    min_clients: u16,
    /// Longest pause in milliseconds between exchanges while nobody sends anything. Lower
    /// values cut the wait for the first slot after a quiet spell (up to clients x this)
    /// at the cost of more idle CPU and traffic.
    #[arg(long, default_value_t = 10)]
    idle_ms: u64,
    /// Milliseconds a peer may take to answer an exchange before it is dropped.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Largest downstream payload per exchange, in bytes.
    #[arg(long, default_value_t = 16384)]
    downstream_length: usize,
    /// Seconds between stats lines.
    #[arg(long, default_value_t = 5)]
    stats_secs: u64,
    /// Seconds without traffic after which an exit connection is closed.
    #[arg(long, default_value_t = 600)]
    exit_idle_secs: u64,
    /// The relay's private file (default: DIR/relay.json).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Configuration folder.
    dir: PathBuf,
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // The relay spreads its links' encryption over worker threads; every other role is
    // one state machine plus a few sockets, fastest without cross-thread wake-ups
    // (`dissent bench net`: about 1.3x the throughput of a threaded client and trustee).
    let runtime = if matches!(cli.command, Command::Relay(_)) {
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
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli.command)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Loads the group and a node's secrets; the relay address is `over` or system.json's.
fn load_node_config(
    dir: &std::path::Path,
    key_file: &std::path::Path,
    over: Option<String>,
) -> Result<(config::Group, config::NodeSecrets, String)> {
    let group = config::Group::load(dir)?;
    let node = config::load_node(&group, key_file)?;
    let relay = over.unwrap_or_else(|| group.relay_address.clone());
    Ok((group, node, relay))
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Config(ConfigCommand::Generate {
            clients,
            trustees,
            cell_length,
            relay,
            force,
            dir,
        }) => {
            config::generate(
                &dir,
                &config::GenerateOptions {
                    clients,
                    trustees,
                    cell_length,
                    relay,
                    force,
                },
            )?;
            println!(
                "wrote a configuration for {clients} clients and {trustees} trustees to {}",
                dir.display()
            );
            Ok(())
        }
        Command::Relay(a) => {
            let group = config::Group::load(&a.dir)?;
            let listen = relay_listen(&group.relay_address, a.host, a.port)?;
            let opts = relay::RelayOptions {
                listen,
                exit: a.exit,
                exit_policy: exit_policy(a.allow_private_exit),
                client_window: a.client_window,
                trustee_window: a.trustee_window,
                min_clients: a.min_clients,
                idle_gap: Duration::from_millis(a.idle_ms),
                exchange_timeout: Duration::from_millis(a.timeout_ms),
                downstream_len: a.downstream_length,
                stats_every: a.stats_secs,
                exit_idle: Duration::from_secs(a.exit_idle_secs.max(1)),
            };
            let key_file = a
                .key
                .unwrap_or_else(|| a.dir.join(format!("{}.json", group.relay_id)));
            let node = config::load_node(&group, &key_file)?;
            relay::run(group, node.private_key, opts)
                .instrument(tracing::error_span!("relay"))
                .await
        }
        Command::Trustee {
            relay,
            min_clients,
            dir,
            key_file,
        } => {
            let (group, node, relay) = load_node_config(&dir, &key_file, relay)?;
            let span = tracing::error_span!("trustee", id = %node.id);
            trustee::run(group, node, relay, min_clients)
                .instrument(span)
                .await
        }
        Command::Client {
            port,
            host,
            relay,
            dir,
            key_file,
        } => {
            let (group, node, relay) = load_node_config(&dir, &key_file, relay)?;
            let span = tracing::error_span!("client", id = %node.id);
            client::run(group, node, SocketAddr::new(host, port), relay)
                .instrument(span)
                .await
        }
        Command::Echo { port } => {
            exit::serve_echo(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)).await
        }
        Command::Socks5 {
            port,
            allow_private,
        } => {
            exit::serve_socks5(
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
                exit_policy(allow_private),
            )
            .await
        }
        Command::Supervisor {
            dir,
            local,
            exit,
            client_port_base,
            port,
            allow_private_exit,
            verbose,
        } => {
            supervisor::run(supervisor::SupervisorOptions {
                dir,
                local,
                exit,
                client_port_base,
                relay_port: port,
                verbose,
                relay_args: private_exit_args(allow_private_exit),
            })
            .await
        }
        Command::Up {
            state,
            clients,
            trustees,
            relay,
            client_port_base,
            exit,
            allow_private_exit,
            verbose,
        } => {
            supervisor::up(supervisor::UpOptions {
                relay_args: private_exit_args(allow_private_exit),
                state: state.unwrap_or_else(supervisor::default_state_dir),
                clients,
                trustees,
                relay,
                client_port_base,
                exit,
                verbose,
            })
            .await
        }
        Command::Bench(a) => bench::run(a).await,
    }
}

fn exit_policy(allow_private: bool) -> exit::ExitPolicy {
    if allow_private {
        exit::ExitPolicy::ANY
    } else {
        exit::ExitPolicy::PUBLIC_ONLY
    }
}

fn private_exit_args(allow: bool) -> Vec<String> {
    if allow {
        vec!["--allow-private-exit".into()]
    } else {
        Vec::new()
    }
}

/// The relay's listening address: system.json's, with optional host and port overrides.
fn relay_listen(configured: &str, host: Option<IpAddr>, port: Option<u16>) -> Result<SocketAddr> {
    let (h, p) = configured
        .rsplit_once(':')
        .context("relay address in system.json has no port")?;
    let p: u16 = p.parse().context("relay port in system.json")?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        Some(ip) => ip,
        // A name (not an address) in system.json: listen everywhere.
        None => h.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    };
    Ok(SocketAddr::new(ip, port.unwrap_or(p)))
}
