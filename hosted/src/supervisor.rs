//! `dissent supervisor` and `dissent up`: run a whole local DC-net as child processes.
//!
//! Both check everything they can before starting or writing anything: the group's size,
//! every key file (role and permissions, all named in one message), the relay's address
//! (a name must resolve), the port range and that every port is free, so a mistake is one
//! clear message rather than children restarting forever. A child that still stops on its
//! configuration ([`EXIT_CONFIG`]) is not restarted: the supervisor stops and says why.
//!
//! `up` runs from a state folder that it locks ([`crate::state_lock`]), so a second `up`
//! never rewrites the files of a running demo; a demo listens on loopback only. Commands
//! printed for the user are whole and quoted, so they paste as they are.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use dissent_core::backoff::{Backoff, BackoffConfig};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::clock;
use crate::config::addr::{Host, HostPort};
use crate::config::{self, Group, NodeKind};
use crate::console;
use crate::exit::{Cidr, ExitKind};
use crate::platform::listening;
use crate::process;
use crate::state_lock::{Holder, StateLock};

/// Exit status of a node stopped by its configuration (files, keys, options), which no
/// restart can mend (sysexits' `EX_CONFIG`).
pub const EXIT_CONFIG: i32 = 78;
/// Exit status of a command line clap refused.
const EXIT_USAGE: i32 = 2;
/// Longest wait for the relay's name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the supervisor runs.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// Configuration folder.
    pub dir: PathBuf,
    /// Clients left for the user to start by hand (the last K).
    pub local: usize,
    /// Exit of the relay.
    pub exit: ExitKind,
    /// Client i listens on this port plus i.
    pub client_port_base: u16,
    /// Overrides the relay port of system.json.
    pub relay_port: Option<u16>,
    /// Log at info level in every child, not just the relay.
    pub verbose: bool,
    /// Let the relay's SOCKS5 exit reach non-public addresses.
    pub allow_private_exit: bool,
    /// Networks the relay's exit also refuses (`--exit-deny`).
    pub exit_deny: Vec<Cidr>,
    /// Run a group of fewer than two clients.
    pub allow_small_anonymity_set: bool,
    /// The relay's status page.
    pub status: Option<HostPort>,
    /// Where the relay listens, in place of the host of system.json (a demo: loopback).
    pub relay_host: Option<IpAddr>,
}

struct ChildSpec {
    name: String,
    args: Vec<String>,
    log: &'static str,
}

/// Runs the relay, the trustees and the clients until Ctrl-C, restarting any that crash.
pub async fn run(opts: SupervisorOptions) -> Result<()> {
    let group = Group::load(&opts.dir)?;
    check_group(&group, &opts)?;
    let dir = opts.dir.display().to_string();
    let relay_addr = match opts.relay_port {
        Some(port) => group.relay_address.with_port(port),
        None => group.relay_address.clone(),
    };
    // The nodes dial this address: a name must resolve now, not in every child forever.
    resolve(&relay_addr, "the relay address").await?;
    let n = group.clients.len();
    let proxy_ports = client_ports(opts.client_port_base, n)?;
    let run_clients = n.saturating_sub(opts.local);
    let relay_ip = opts.relay_host.unwrap_or(match relay_addr.host() {
        Host::Ip(ip) => *ip,
        // The relay listens on every address for a name in system.json.
        Host::Name(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    check_ports_free(relay_ip, relay_addr.port(), &proxy_ports[..run_clients])?;
    if let Some(status) = &opts.status {
        if let (Host::Ip(ip), port @ 1..) = (status.host(), status.port()) {
            ensure_free(*ip, port, "status page", "--status")?;
        }
    }

    let quiet = if opts.verbose { "info" } else { "warn" };
    let small: Vec<String> = if opts.allow_small_anonymity_set {
        vec!["--allow-small-anonymity-set".into()]
    } else {
        Vec::new()
    };
    let mut specs = vec![ChildSpec {
        name: "relay".into(),
        args: relay_args(&opts, relay_addr.port()),
        log: "info",
    }];
    for t in &group.trustees {
        let mut args = vec!["trustee".into(), "--relay".into(), relay_addr.to_string()];
        args.extend(small.iter().cloned());
        args.extend([dir.clone(), node_file(&opts.dir, &t.id)]);
        specs.push(ChildSpec {
            name: t.id.clone(),
            args,
            log: quiet,
        });
    }
    let exe = std::env::current_exe().context("cannot find the dissent executable")?;
    let mut proxies = Vec::new();
    for ((i, c), port) in group.clients.iter().enumerate().zip(proxy_ports) {
        let mut args = vec![
            "client".to_string(),
            "--port".into(),
            port.to_string(),
            "--relay".into(),
            relay_addr.to_string(),
        ];
        args.extend(small.iter().cloned());
        args.extend([dir.clone(), node_file(&opts.dir, &c.id)]);
        if i >= run_clients {
            let mut line = vec![program_name(&exe)];
            line.extend(args);
            console::say(format_args!(
                "{}: start it yourself: {}",
                c.id,
                console::shell_line(&line)
            ));
            continue;
        }
        proxies.push(port);
        specs.push(ChildSpec {
            name: c.id.clone(),
            args,
            log: quiet,
        });
    }

    // Stopped in reverse order of dependence: clients, then trustees, then the relay.
    let tiers: Vec<_> = (0..3).map(|_| watch::channel(false)).collect();
    let mut tasks: Vec<Vec<_>> = vec![Vec::new(), Vec::new(), Vec::new()];
    // A child that stopped on its configuration: its name.
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<String>(8);
    for spec in specs {
        let tier = match spec.args.first().map(String::as_str) {
            Some("relay") => 0,
            Some("trustee") => 1,
            _ => 2,
        };
        tasks[tier].push(tokio::spawn(keep_running(
            exe.clone(),
            spec,
            tiers[tier].1.clone(),
            fatal_tx.clone(),
        )));
    }
    drop(fatal_tx);

    let shutdown = process::shutdown_signal();
    tokio::pin!(shutdown);
    // Announce each client's port once it listens (checked without connecting to it).
    let label = match &opts.exit {
        ExitKind::Socks5 => "SOCKS5 proxy",
        ExitKind::Echo | ExitKind::Tcp(_) => "tunnel port",
    };
    let ready = async {
        for port in &proxies {
            wait_for_listener(*port).await;
            console::say(format_args!("{label}: 127.0.0.1:{port}"));
        }
        if let Some(port) = proxies.first() {
            let example = match &opts.exit {
                ExitKind::Socks5 if opts.allow_private_exit => format!(
                    "curl --socks5-hostname 127.0.0.1:{port} http://127.0.0.1:8000/ (with a \
                     server such as python3 -m http.server 8000 --bind 127.0.0.1)"
                ),
                ExitKind::Socks5 => {
                    format!("curl --socks5-hostname 127.0.0.1:{port} http://example.com/")
                }
                ExitKind::Echo => format!(
                    "echo hello | nc -N 127.0.0.1 {port} (the echo exit sends every byte back)"
                ),
                ExitKind::Tcp(target) => {
                    format!("nc -N 127.0.0.1 {port} (every connection goes to {target})")
                }
            };
            console::say(format_args!("try: {example}   (Ctrl-C stops everything)"));
            if opts.exit == ExitKind::Socks5 && !opts.allow_private_exit {
                console::say(format_args!(
                    "servers on this machine or its network are refused unless you add \
                     --allow-private-exit"
                ));
            }
        }
        std::future::pending::<()>().await
    };
    let failed = tokio::select! {
        _ = ready => None,
        _ = &mut shutdown => None,
        Some(name) = fatal_rx.recv() => Some(name),
    };
    info!("stopping all children");
    for tier in (0..3).rev() {
        let _ = tiers[tier].0.send(true);
        for t in tasks[tier].drain(..) {
            let _ = t.await;
        }
    }
    info!("all children stopped");
    match failed {
        Some(name) => Err(anyhow!(
            "{name} stopped on its configuration (its message is above); no restart can mend \
             that, so everything was stopped. Fix it and start again"
        )),
        None => Ok(()),
    }
}

/// The relay child's command line.
pub(crate) fn relay_args(opts: &SupervisorOptions, port: u16) -> Vec<String> {
    let mut args = vec![
        "relay".into(),
        "--port".into(),
        port.to_string(),
        "--exit".into(),
        opts.exit.to_string(),
    ];
    if let Some(host) = opts.relay_host {
        args.extend(["--host".into(), host.to_string()]);
    }
    if let Some(status) = &opts.status {
        args.extend(["--status".into(), status.to_string()]);
    }
    if opts.allow_private_exit {
        args.push("--allow-private-exit".into());
    }
    for net in &opts.exit_deny {
        args.extend(["--exit-deny".into(), net.to_string()]);
    }
    if opts.allow_small_anonymity_set {
        args.push("--allow-small-anonymity-set".into());
    }
    args.push(opts.dir.display().to_string());
    args
}

/// How to name this executable in a command for the user: `dissent` when that is what the
/// search path finds, else its full path.
fn program_name(exe: &Path) -> String {
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            let candidate = d.join("dissent");
            matches!(
                (candidate.canonicalize(), exe.canonicalize()),
                (Ok(a), Ok(b)) if a == b
            )
        })
    });
    if on_path {
        "dissent".into()
    } else {
        exe.display().to_string()
    }
}

/// The addresses `addr` names: itself for an IP address, what a name resolves to.
async fn resolve(addr: &HostPort, what: &str) -> Result<Vec<SocketAddr>> {
    match addr.host() {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, addr.port())]),
        Host::Name(name) => {
            let found = tokio::time::timeout(
                RESOLVE_TIMEOUT,
                tokio::net::lookup_host((name.as_str(), addr.port())),
            )
            .await
            .map_err(|_| {
                anyhow!(
                    "{what} {addr}: the name did not resolve within {} s",
                    RESOLVE_TIMEOUT.as_secs()
                )
            })?
            .with_context(|| format!("{what} {addr}: the name does not resolve"))?;
            let found: Vec<SocketAddr> = found.collect();
            if found.is_empty() {
                bail!("{what} {addr}: the name has no address");
            }
            Ok(found)
        }
    }
}

/// Checks what would make children fail at start: a group too small, `--local` too
/// large, and every key file (its role and its permissions).
fn check_group(group: &Group, opts: &SupervisorOptions) -> Result<()> {
    let n = group.clients.len();
    if n < config::MIN_ANONYMITY_SET && !opts.allow_small_anonymity_set {
        bail!(
            "{}: the group has {n} client, who cannot hide among anyone; generate a \
             configuration with at least {} clients, or pass --allow-small-anonymity-set \
             to accept that",
            opts.dir.display(),
            config::MIN_ANONYMITY_SET
        );
    }
    if opts.local > n {
        bail!(
            "--local {} is more than the {} of the group",
            opts.local,
            console::count(n as u64, "client")
        );
    }
    let nodes: Vec<(&str, NodeKind)> = std::iter::once((group.relay_id.as_str(), NodeKind::Relay))
        .chain(
            group
                .trustees
                .iter()
                .map(|t| (t.id.as_str(), NodeKind::Trustee)),
        )
        .chain(
            group
                .clients
                .iter()
                .map(|c| (c.id.as_str(), NodeKind::Client)),
        )
        .collect();
    // Every file's mode first, so one message names all that need a chmod.
    let files: Vec<PathBuf> = nodes
        .iter()
        .flat_map(|(id, kind)| config::private_files(&opts.dir, id, *kind))
        .collect();
    config::check_private_files(&files)?;
    let mut wrong = Vec::new();
    for (id, kind) in &nodes {
        if let Err(e) = config::load_node(group, &opts.dir.join(format!("{id}.json")), *kind) {
            wrong.push(format!("{e:#}"));
        }
    }
    match wrong.as_slice() {
        [] => Ok(()),
        [one] => bail!("{one}"),
        many => bail!(
            "{} key files are wrong:\n  {}",
            many.len(),
            many.join("\n  ")
        ),
    }
}

/// The ports of `clients` clients from `base` on, or why they do not fit below 65536.
fn client_ports(base: u16, clients: usize) -> Result<Vec<u16>> {
    let last = usize::from(base) + clients.saturating_sub(1);
    if last > usize::from(u16::MAX) {
        bail!(
            "--client-port-base {base} with {} needs ports {base}-{last}, \
             past 65535; use a base between 1 and {}",
            console::count(clients as u64, "client"),
            usize::from(u16::MAX) + 1 - clients.max(1)
        );
    }
    // Each fits: checked above.
    Ok((0..clients).map(|i| base + i as u16).collect())
}

/// Fails with the option to change if the relay's or a client's port is taken, or if the
/// relay's port is one of the clients'.
fn check_ports_free(relay_ip: IpAddr, relay_port: u16, clients: &[u16]) -> Result<()> {
    if clients.contains(&relay_port) {
        bail!(
            "the relay port {relay_port} is also a client port ({}-{}); change one with \
             --relay-port or --client-port-base",
            clients.first().copied().unwrap_or_default(),
            clients.last().copied().unwrap_or_default()
        );
    }
    ensure_free(relay_ip, relay_port, "relay", "--relay-port")?;
    for port in clients {
        ensure_free(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            *port,
            "client",
            "--client-port-base",
        )?;
    }
    Ok(())
}

/// Fails with a clear message naming `option` if `ip:port` is already taken.
fn ensure_free(ip: IpAddr, port: u16, what: &str, option: &str) -> Result<()> {
    std::net::TcpListener::bind((ip, port))
        .map(drop)
        .with_context(|| {
            format!(
                "{what} port {port} on {ip} is not free (another dissent running?); choose \
             another with {option}"
            )
        })
}

fn node_file(dir: &Path, id: &str) -> String {
    dir.join(format!("{id}.json")).display().to_string()
}

/// Waits until something listens on 127.0.0.1:`port`, without connecting (a connection
/// would be a local connection of the client, opened and closed for nothing).
async fn wait_for_listener(port: u16) {
    let mut delay = Duration::from_millis(20);
    // Bounded: about a minute, then announce anyway.
    for _ in 0..200 {
        if listening::on_loopback(port) {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(300));
    }
}

/// Runs one child, restarting it when it exits (the nodes' own backoff policy says when),
/// until told to stop.
async fn keep_running(
    exe: PathBuf,
    spec: ChildSpec,
    mut stop: watch::Receiver<bool>,
    fatal: mpsc::Sender<String>,
) {
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let mut backoff = Backoff::new(BackoffConfig::default(), seed);
    let origin = tokio::time::Instant::now();
    loop {
        let mut cmd = process::child_command(&exe);
        cmd.args(&spec.args);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", spec.log);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let next = backoff.handle_connect_failed(clock::core_now(origin));
                warn!("{}: cannot start: {e}", spec.name);
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep_until(clock::tokio_at(origin, next)) => continue,
                }
            }
        };
        backoff.handle_connected(clock::core_now(origin));
        tokio::select! {
            status = child.wait() => {
                if *stop.borrow() {
                    return;
                }
                let code = status.as_ref().ok().and_then(|s| s.code());
                if matches!(code, Some(EXIT_CONFIG | EXIT_USAGE)) {
                    warn!("{} stopped on its configuration; not restarting it", spec.name);
                    let _ = fatal.send(spec.name.clone()).await;
                    return;
                }
                let next = clock::tokio_at(origin, backoff.handle_lost(clock::core_now(origin)));
                let wait = next.saturating_duration_since(tokio::time::Instant::now());
                warn!("{} exited ({}); restarting in {:.1} s", spec.name,
                    status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                    wait.as_secs_f64());
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep_until(next) => {}
                }
            }
            _ = stop.changed() => {
                if process::stop_child(&mut child, Duration::from_secs(5)).await {
                    warn!("{} did not stop; it was killed", spec.name);
                }
                return;
            }
        }
    }
}

/// Options of `dissent up`; `None` keeps what the existing demo configuration has.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Where the demo configuration lives.
    pub state: PathBuf,
    /// Clients of the demo.
    pub clients: Option<usize>,
    /// Trustees of the demo.
    pub trustees: Option<usize>,
    /// Relay address of the demo.
    pub relay: Option<HostPort>,
    /// Relay port of the demo (replaces the port of `relay`).
    pub relay_port: Option<u16>,
    /// Client i listens on this port plus i.
    pub client_port_base: u16,
    /// Exit of the relay.
    pub exit: ExitKind,
    /// Log at info level in every child.
    pub verbose: bool,
    /// Let the relay's SOCKS5 exit reach non-public addresses.
    pub allow_private_exit: bool,
    /// Networks the relay's exit also refuses (`--exit-deny`).
    pub exit_deny: Vec<Cidr>,
    /// Run a group of fewer than two clients.
    pub allow_small_anonymity_set: bool,
    /// The relay's status page.
    pub status: Option<HostPort>,
}

/// The shape of a demo configuration: what `up` compares and generates.
#[derive(Debug, PartialEq, Eq)]
struct Demo {
    clients: usize,
    trustees: usize,
    relay: HostPort,
}

impl std::fmt::Display for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} client{}, {} trustee{}, relay {}",
            self.clients,
            plural(self.clients),
            self.trustees,
            plural(self.trustees),
            self.relay
        )
    }
}

/// Supervises a whole local DC-net from the demo configuration in the state folder,
/// writing a new one first when there is none or the options ask for another.
///
/// Nothing is written before the options are checked (the relay's address resolves to
/// loopback, the ports fit and are free) and the state folder is locked, so a second `up`
/// neither rewrites a running demo's files nor leaves a bad address behind.
pub async fn up(opts: UpOptions) -> Result<()> {
    let dir = opts.state.join("demo");
    let default_relay: HostPort = config::DEFAULT_RELAY
        .parse()
        .context("the default relay address")?;
    // The address asked for, checked before the state folder is even created.
    let asked_relay = match &opts.relay {
        Some(relay) => {
            let relay = match opts.relay_port {
                Some(port) => relay.with_port(port),
                None => relay.clone(),
            };
            loopback_of(&relay, "--relay").await?;
            Some(relay)
        }
        None => None,
    };

    let held = StateLock::acquire(&opts.state)?;
    let mut lock = held.lock;
    if let Some(old) = held.stale {
        console::say(format_args!(
            "the demo that ran from {} before ({old}) did not stop cleanly; taking over its \
             state folder",
            opts.state.display()
        ));
    }

    let existing = if dir.join("system.json").exists() {
        match Group::load(&dir) {
            Ok(group) => Some(Demo {
                clients: group.clients.len(),
                trustees: group.trustees.len(),
                relay: group.relay_address,
            }),
            Err(e) => {
                console::say(format_args!(
                    "the demo configuration in {} cannot be read ({e:#}); writing a new one",
                    dir.display()
                ));
                None
            }
        }
    } else {
        None
    };
    let relay = match asked_relay {
        Some(relay) => relay,
        None => {
            let kept = match existing.as_ref().map(|d| &d.relay) {
                // A demo written before addresses were checked may name a bad one: it is
                // replaced, not kept for every later `up`.
                Some(old) => match loopback_of(old, "the demo's relay address").await {
                    Ok(_) => Some(old.clone()),
                    Err(e) => {
                        console::say(format_args!(
                            "{e:#}; the demo gets the default relay address {default_relay}"
                        ));
                        None
                    }
                },
                None => None,
            };
            let relay = kept.unwrap_or(default_relay);
            match opts.relay_port {
                Some(port) => relay.with_port(port),
                None => relay,
            }
        }
    };
    let relay_ip = loopback_of(&relay, "the relay address").await?;
    let wanted = Demo {
        clients: opts
            .clients
            .or(existing.as_ref().map(|d| d.clients))
            .unwrap_or(config::DEFAULT_CLIENTS),
        trustees: opts
            .trustees
            .or(existing.as_ref().map(|d| d.trustees))
            .unwrap_or(config::DEFAULT_TRUSTEES),
        relay,
    };
    if wanted.clients < config::MIN_ANONYMITY_SET && !opts.allow_small_anonymity_set {
        bail!(
            "a demo of {} cannot hide anyone; use -c {} or more, or add \
             --allow-small-anonymity-set",
            console::count(wanted.clients as u64, "client"),
            config::MIN_ANONYMITY_SET
        );
    }
    // Before anything is written: the ports must fit and be free.
    let ports = client_ports(opts.client_port_base, wanted.clients)?;
    check_ports_free(relay_ip, wanted.relay.port(), &ports)?;

    match &existing {
        Some(old) if *old == wanted => {
            console::say(format_args!(
                "using the demo configuration in {}",
                dir.display()
            ));
        }
        _ => {
            config::generate(
                &dir,
                &config::GenerateOptions {
                    clients: wanted.clients,
                    trustees: wanted.trustees,
                    relay: wanted.relay.to_string(),
                    force: true,
                    min_anonymity: config::default_min_anonymity(wanted.clients),
                    ..config::GenerateOptions::default()
                },
            )?;
            match &existing {
                Some(old) => console::say(format_args!(
                    "wrote a new demo configuration (DEMO KEYS, {wanted}) in {}, replacing \
                     the one with {old}",
                    dir.display()
                )),
                None => console::say(format_args!(
                    "created a demo configuration (DEMO KEYS, {wanted}) in {}",
                    dir.display()
                )),
            }
        }
    }
    let holder = Holder {
        pid: std::process::id(),
        relay: Some(wanted.relay.to_string()),
        client_ports: Some(match (ports.first(), ports.last()) {
            (Some(a), Some(b)) if a != b => format!("{a}-{b}"),
            (Some(a), _) => a.to_string(),
            _ => String::new(),
        }),
        config: Some(dir.clone()),
    };
    if let Err(e) = lock.describe(&holder) {
        warn!(
            "{}: cannot write who runs the demo: {e}",
            StateLock::path(&opts.state).display()
        );
    }
    let result = run(SupervisorOptions {
        dir,
        local: 0,
        exit: opts.exit,
        client_port_base: opts.client_port_base,
        relay_port: None,
        verbose: opts.verbose,
        allow_private_exit: opts.allow_private_exit,
        exit_deny: opts.exit_deny,
        allow_small_anonymity_set: opts.allow_small_anonymity_set,
        status: opts.status,
        relay_host: Some(relay_ip),
    })
    .await;
    drop(lock);
    result
}

/// The loopback address a demo's relay listens on for `addr`, or why `addr` is not one:
/// a name that does not resolve, or resolves (in part) beyond this machine.
async fn loopback_of(addr: &HostPort, what: &str) -> Result<IpAddr> {
    let found = resolve(addr, what).await?;
    if let Some(other) = found.iter().find(|a| !a.ip().is_loopback()) {
        bail!(
            "{what} {addr} is {}, not a loopback address: a demo runs on this machine only; \
             use 127.0.0.1:PORT (for a net across machines, write a configuration with \
             `dissent config generate` and run `dissent supervisor`)",
            other.ip()
        );
    }
    // IPv4 first, as the nodes' dials find it; not empty: `resolve` fails on a name
    // without addresses.
    let first = found.iter().find(|a| a.is_ipv4()).unwrap_or(&found[0]);
    Ok(first.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_demo_relay_must_be_on_loopback() {
        let ok: HostPort = "localhost:12345".parse().unwrap();
        assert!(loopback_of(&ok, "--relay").await.unwrap().is_loopback());
        for (bad, says) in [
            ("192.0.2.1:12345", "not a loopback address"),
            ("nosuch.invalid:12345", "does not resolve"),
        ] {
            let addr: HostPort = bad.parse().unwrap();
            let err = format!("{:#}", loopback_of(&addr, "--relay").await.unwrap_err());
            assert!(err.contains(says) && err.contains(bad), "{err}");
        }
    }
}
