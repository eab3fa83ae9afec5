//! `dissent supervisor` and `dissent up`: run a whole local DC-net as child processes.
//!
//! Both check everything they can before starting or writing anything: the group's size,
//! every key file (role and permissions), the port range and that every port is free, so a
//! mistake is one clear message rather than children restarting forever.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use dissent_core::backoff::{Backoff, BackoffConfig};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::clock;
use crate::config::addr::{Host, HostPort};
use crate::config::{self, Group, NodeKind};
use crate::console;
use crate::exit::ExitKind;
use crate::process;

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
    /// Run a group of fewer than two clients.
    pub allow_small_anonymity_set: bool,
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
    let n = group.clients.len();
    let proxy_ports = client_ports(opts.client_port_base, n)?;
    let run_clients = n.saturating_sub(opts.local);
    check_ports_free(&relay_addr, &proxy_ports[..run_clients])?;

    let quiet = if opts.verbose { "info" } else { "warn" };
    let small: Vec<String> = if opts.allow_small_anonymity_set {
        vec!["--allow-small-anonymity-set".into()]
    } else {
        Vec::new()
    };
    let mut relay_args = vec![
        "relay".into(),
        "--port".into(),
        relay_addr.port().to_string(),
        "--exit".into(),
        opts.exit.to_string(),
    ];
    if opts.allow_private_exit {
        relay_args.push("--allow-private-exit".into());
    }
    relay_args.extend(small.iter().cloned());
    relay_args.push(dir.clone());
    let mut specs = vec![ChildSpec {
        name: "relay".into(),
        args: relay_args,
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
    let mut proxies = Vec::new();
    for ((i, c), port) in group.clients.iter().enumerate().zip(proxy_ports) {
        if i >= run_clients {
            console::say(format_args!(
                "{}: start it yourself: dissent client --port {port} {dir} {}",
                c.id,
                node_file(&opts.dir, &c.id)
            ));
            continue;
        }
        proxies.push(port);
        specs.push(ChildSpec {
            name: c.id.clone(),
            args: vec![
                "client".into(),
                "--port".into(),
                port.to_string(),
                "--relay".into(),
                relay_addr.to_string(),
                dir.clone(),
                node_file(&opts.dir, &c.id),
            ],
            log: quiet,
        });
    }

    let exe = std::env::current_exe().context("cannot find the dissent executable")?;
    // Stopped in reverse order of dependence: clients, then trustees, then the relay.
    let tiers: Vec<_> = (0..3).map(|_| watch::channel(false)).collect();
    let mut tasks: Vec<Vec<_>> = vec![Vec::new(), Vec::new(), Vec::new()];
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
        )));
    }

    let shutdown = process::shutdown_signal();
    tokio::pin!(shutdown);
    // Announce each proxy once it accepts connections.
    let ready = async {
        for port in &proxies {
            wait_for_port(*port).await;
            console::say(format_args!("SOCKS5 proxy: 127.0.0.1:{port}"));
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
                ExitKind::Echo => {
                    format!("nc 127.0.0.1 {port} (the echo exit sends every byte back)")
                }
                ExitKind::Tcp(target) => {
                    format!("nc 127.0.0.1 {port} (every connection goes to {target})")
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
    };
    tokio::select! {
        _ = ready => { (&mut shutdown).await; }
        _ = &mut shutdown => {}
    }
    info!("stopping all children");
    for tier in (0..3).rev() {
        let _ = tiers[tier].0.send(true);
        for t in tasks[tier].drain(..) {
            let _ = t.await;
        }
    }
    info!("all children stopped");
    Ok(())
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
            "--local {} is more than the {n} clients of the group",
            opts.local
        );
    }
    config::load_node(
        group,
        Path::new(&node_file(&opts.dir, &group.relay_id)),
        NodeKind::Relay,
    )?;
    for t in &group.trustees {
        config::load_node(
            group,
            Path::new(&node_file(&opts.dir, &t.id)),
            NodeKind::Trustee,
        )?;
    }
    for c in &group.clients {
        config::load_node(
            group,
            Path::new(&node_file(&opts.dir, &c.id)),
            NodeKind::Client,
        )?;
    }
    Ok(())
}

/// The ports of `clients` clients from `base` on, or why they do not fit below 65536.
fn client_ports(base: u16, clients: usize) -> Result<Vec<u16>> {
    let last = usize::from(base) + clients.saturating_sub(1);
    if last > usize::from(u16::MAX) {
        bail!(
            "--client-port-base {base} with {clients} clients needs ports {base}-{last}, \
             past 65535; use a base between 1 and {}",
            usize::from(u16::MAX) + 1 - clients.max(1)
        );
    }
    // Each fits: checked above.
    Ok((0..clients).map(|i| base + i as u16).collect())
}

/// Fails with the option to change if the relay's or a client's port is taken, or if the
/// relay's port is one of the clients'.
fn check_ports_free(relay: &HostPort, clients: &[u16]) -> Result<()> {
    if clients.contains(&relay.port()) {
        bail!(
            "the relay port {} is also a client port ({}-{}); change one with --relay-port \
             or --client-port-base",
            relay.port(),
            clients.first().copied().unwrap_or_default(),
            clients.last().copied().unwrap_or_default()
        );
    }
    // The relay listens on the address in system.json, or on every address for a name.
    let relay_ip = match relay.host() {
        Host::Ip(ip) => *ip,
        Host::Name(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    ensure_free(relay_ip, relay.port(), "relay", "--relay-port")?;
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

async fn wait_for_port(port: u16) {
    let mut delay = Duration::from_millis(20);
    // Bounded: about a minute, then announce anyway.
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(300));
    }
}

/// Runs one child, restarting it when it exits (the nodes' own backoff policy says when),
/// until told to stop.
async fn keep_running(exe: PathBuf, spec: ChildSpec, mut stop: watch::Receiver<bool>) {
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
    /// Run a group of fewer than two clients.
    pub allow_small_anonymity_set: bool,
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
pub async fn up(opts: UpOptions) -> Result<()> {
    let dir = opts.state.join("demo");
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
    let default_relay: HostPort = config::DEFAULT_RELAY
        .parse()
        .context("the default relay address")?;
    let relay = opts
        .relay
        .clone()
        .or_else(|| existing.as_ref().map(|d| d.relay.clone()))
        .unwrap_or(default_relay);
    let wanted = Demo {
        clients: opts
            .clients
            .or(existing.as_ref().map(|d| d.clients))
            .unwrap_or(config::DEFAULT_CLIENTS),
        trustees: opts
            .trustees
            .or(existing.as_ref().map(|d| d.trustees))
            .unwrap_or(config::DEFAULT_TRUSTEES),
        relay: match opts.relay_port {
            Some(port) => relay.with_port(port),
            None => relay,
        },
    };
    if wanted.clients < config::MIN_ANONYMITY_SET && !opts.allow_small_anonymity_set {
        bail!(
            "a demo of {} client cannot hide anyone; use -c {} or more, or add \
             --allow-small-anonymity-set",
            wanted.clients,
            config::MIN_ANONYMITY_SET
        );
    }
    // Before anything is written: the ports must fit and be free.
    let ports = client_ports(opts.client_port_base, wanted.clients)?;
    check_ports_free(&wanted.relay, &ports)?;

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
    run(SupervisorOptions {
        dir,
        local: 0,
        exit: opts.exit,
        client_port_base: opts.client_port_base,
        relay_port: None,
        verbose: opts.verbose,
        allow_private_exit: opts.allow_private_exit,
        allow_small_anonymity_set: opts.allow_small_anonymity_set,
    })
    .await
}
