//! `dissent`: every role of the dissent-rs DC-net in one binary.
//!
//! Options mean the same in every subcommand: `-p/--port` and `--host` are where this
//! process listens, `--relay HOST:PORT` is where the relay is, `--relay-port` changes the
//! relay's port for the processes a supervisor starts, `--allow-private-exit` lets the
//! SOCKS5 exit reach non-public addresses and `--allow-small-anonymity-set` accepts groups
//! or intervals of fewer than two clients. Every value is checked here, before anything
//! runs or is written.

mod blame_cmd;
mod cli;
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
#[cfg(feature = "disruptor")]
mod test_hooks;
#[cfg(feature = "tools")]
mod tools;
mod trustee;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;
use config::keys::KeyRole;

use crate::cli::*;
use crate::config::addr::{Host, HostPort};
use crate::config::NodeKind;

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
            // then hands the board to its DC-net image; one that restarts within the epoch
            // rejoins it, as a hosted trustee does.
            let role = config::keys::load_private(&a.key_file)?.role;
            if role != KeyRole::Trustee {
                bail!(
                    "{}: `dissent qemu` runs a group folder's trustees; a {role} of a group \
                     folder runs hosted (`dissent {role}`)",
                    a.key_file.display()
                );
            }
            let mut first = true;
            loop {
                let (desc, keys) =
                    misconfigured(|| setup::load_node(&a.dir, &a.key_file, KeyRole::Trustee))?;
                console::set_role(&keys.name);
                let relay = match &a.relay {
                    Some(r) => r.clone(),
                    None => desc.relay_address()?,
                };
                let started = tools::qemu::group_trustee(&desc, &keys, &a.key_file)?;
                let (group, node, setup) = match started {
                    tools::qemu::GroupStart::Rejoin(group, node) => (group, node, None),
                    tools::qemu::GroupStart::Setup(group, node, blob) => {
                        let setup = tools::qemu::SetupImage {
                            blob,
                            firmware: a.setup_firmware.clone(),
                            desc: desc.clone(),
                            key_file: a.key_file.clone(),
                        };
                        (group, node, Some(setup))
                    }
                };
                let floor = a.min_clients.max(desc.policy.min_clients);
                let min_clients = interval_minimum(floor, group.clients.len(), a.small)?;
                let opts = tools::qemu::QemuOptions {
                    firmware: a.firmware.clone(),
                    relay: relay.clone(),
                    port: a.port,
                    console: a.console.clone(),
                    console_continues: !std::mem::take(&mut first),
                    min_clients,
                    setup,
                    group_trustee: true,
                };
                match tools::qemu::run(group, node, opts).await? {
                    tools::qemu::Ended::Exit(0) => return Ok(()),
                    tools::qemu::Ended::Exit(code) => std::process::exit(code),
                    // Told of a switch: the next version fetched and checked as `dissent
                    // trustee` does, then its epoch set up on the device.
                    tools::qemu::Ended::Switch => {
                        let switching = Err(anyhow::Error::new(link::dial::Switching));
                        let running = Some((desc, keys));
                        if !next_epoch(&a.dir, running, KeyRole::Trustee, &relay, switching).await?
                        {
                            return Ok(());
                        }
                    }
                }
            }
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
                console_continues: false,
                min_clients,
                setup: None,
                group_trustee: false,
            };
            match tools::qemu::run(group, node, opts).await? {
                tools::qemu::Ended::Exit(code) if code != 0 => std::process::exit(code),
                // A group without a folder has no switch.
                _ => Ok(()),
            }
        }
        Command::Device(DeviceCommand::Provision(a)) => {
            // A group folder's trustee: its DC-net blob and its setup image's.
            let folder = if config::group::is_group_folder(&a.dir) {
                let role = config::keys::load_private(&a.key_file)?.role;
                if role != KeyRole::Trustee {
                    bail!(
                        "{}: a {role} of a group folder runs hosted (`dissent {role}`); a board \
                         runs a group folder's trustees",
                        a.key_file.display()
                    );
                }
                Some(misconfigured(|| {
                    setup::load_node(&a.dir, &a.key_file, KeyRole::Trustee)
                })?)
            } else {
                None
            };
            let (group, node) = match &folder {
                Some((desc, keys)) => {
                    let (group, node, _) = device::group_setup(desc, keys)?;
                    (group, node)
                }
                None => {
                    let group = config::Group::load(&a.dir)?;
                    let kind = config::node_kind(&group, &a.key_file)?;
                    load_node(&a.dir, &a.key_file, kind)?
                }
            };
            let floor = match &folder {
                Some((desc, _)) => a.min_clients.max(desc.policy.min_clients),
                None => a.min_clients,
            };
            let min_clients = interval_minimum(floor, group.clients.len(), a.small)?;
            let relay = match (a.relay, &folder) {
                (Some(r), _) => r,
                (None, Some((desc, _))) => desc.relay_address()?,
                (None, None) => group.relay_address.clone(),
            };
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
            match folder {
                Some((desc, keys)) => {
                    device::provision_group(&desc, &keys, &a.key_file, opts)?;
                }
                None => {
                    device::provision(&a.dir, group, node, opts)?;
                }
            }
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
