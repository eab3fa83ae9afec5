//! `dissent supervisor` and `dissent up`: run a whole local DC-net as child processes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{self, Group};
use crate::exit::ExitKind;
use crate::net;

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
    /// Extra arguments for the relay.
    pub relay_args: Vec<String>,
}

struct ChildSpec {
    name: String,
    args: Vec<String>,
    log: &'static str,
}

/// Runs the relay, the trustees and the clients until Ctrl-C, restarting any that crash.
pub async fn run(opts: SupervisorOptions) -> Result<()> {
    let group = Group::load(&opts.dir)?;
    let dir = opts.dir.display().to_string();
    let relay_addr = match opts.relay_port {
        Some(port) => replace_port(&group.relay_address, port),
        None => group.relay_address.clone(),
    };
    let relay_port = relay_addr.rsplit(':').next().unwrap_or("12345").to_string();
    let quiet = if opts.verbose { "info" } else { "warn" };
    let mut specs = vec![ChildSpec {
        name: "relay".into(),
        args: [
            vec![
                "relay".into(),
                "-p".into(),
                relay_port,
                "--exit".into(),
                opts.exit.to_string(),
            ],
            opts.relay_args.clone(),
            vec![dir.clone()],
        ]
        .concat(),
        log: "info",
    }];
    for t in &group.trustees {
        specs.push(ChildSpec {
            name: t.id.clone(),
            args: vec![
                "trustee".into(),
                "--relay".into(),
                relay_addr.clone(),
                dir.clone(),
                node_file(&opts.dir, &t.id),
            ],
            log: quiet,
        });
    }
    let n = group.clients.len();
    let run_clients = n.saturating_sub(opts.local);
    let mut proxies = Vec::new();
    for (i, c) in group.clients.iter().enumerate() {
        let port = opts
            .client_port_base
            .checked_add(i as u16)
            .context("client port out of range")?;
        if i >= run_clients {
            println!(
                "{}: start it yourself: dissent client -p {port} {dir} {}",
                c.id,
                node_file(&opts.dir, &c.id)
            );
            continue;
        }
        proxies.push(port);
        specs.push(ChildSpec {
            name: c.id.clone(),
            args: vec![
                "client".into(),
                "-p".into(),
                port.to_string(),
                "--relay".into(),
                relay_addr.clone(),
                dir.clone(),
                node_file(&opts.dir, &c.id),
            ],
            log: quiet,
        });
    }

    // A port someone else holds would make us announce their service as our proxy.
    for port in &proxies {
        ensure_free(*port, "client")?;
    }
    if let Some(port) = relay_addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
    {
        ensure_free(port, "relay")?;
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

    let shutdown = net::shutdown_signal();
    tokio::pin!(shutdown);
    // Announce each proxy once it accepts connections.
    let ready = async {
        for port in &proxies {
            wait_for_port(*port).await;
            println!("SOCKS5 proxy: 127.0.0.1:{port}");
        }
        if let Some(port) = proxies.first() {
            println!(
                "try: curl --socks5-hostname 127.0.0.1:{port} http://example.com/   (Ctrl-C stops everything)"
            );
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

/// Fails with a clear message if `port` on 127.0.0.1 is already taken.
fn ensure_free(port: u16, what: &str) -> Result<()> {
    std::net::TcpListener::bind(("127.0.0.1", port))
        .map(drop)
        .with_context(|| {
            format!(
                "{what} port {port} on 127.0.0.1 is in use (another dissent running? \
                 choose other ports with --client-port-base or the relay address)"
            )
        })
}

fn node_file(dir: &Path, id: &str) -> String {
    dir.join(format!("{id}.json")).display().to_string()
}

fn replace_port(addr: &str, port: u16) -> String {
    match addr.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{port}"),
        None => format!("{addr}:{port}"),
    }
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

/// Runs one child, restarting it with backoff when it exits, until told to stop.
async fn keep_running(exe: PathBuf, spec: ChildSpec, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let mut cmd = net::child_command(&exe);
        cmd.args(&spec.args);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", spec.log);
        }
        let started = tokio::time::Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                warn!("{}: cannot start: {e}", spec.name);
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        tokio::select! {
            status = child.wait() => {
                if *stop.borrow() {
                    return;
                }
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(500);
                }
                warn!("{} exited ({}); restarting in {:?}", spec.name,
                    status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()), backoff);
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            _ = stop.changed() => {
                if let Some(pid) = child.id() {
                    // SAFETY: sending a signal to our own child process by its id.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                }
                if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                    warn!("{} did not stop; killing it", spec.name);
                    let _ = child.kill().await;
                }
                return;
            }
        }
    }
}

/// Options of `dissent up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Where the demo configuration lives.
    pub state: PathBuf,
    /// Clients and trustees of a newly created configuration.
    pub clients: usize,
    /// Trustees of a newly created configuration.
    pub trustees: usize,
    /// Relay address of a newly created configuration.
    pub relay: String,
    /// Client i listens on this port plus i.
    pub client_port_base: u16,
    /// Exit of the relay.
    pub exit: ExitKind,
    /// Log at info level in every child.
    pub verbose: bool,
    /// Extra arguments for the relay.
    pub relay_args: Vec<String>,
}

/// The default state folder: `$XDG_STATE_HOME/dissent` or `~/.local/state/dissent`.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("dissent");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/dissent"),
        None => PathBuf::from(".dissent"),
    }
}

/// Creates a demo configuration if needed and supervises a whole local DC-net.
pub async fn up(opts: UpOptions) -> Result<()> {
    let dir = opts.state.join("demo");
    if !dir.join("system.json").exists() {
        config::generate(
            &dir,
            &config::GenerateOptions {
                clients: opts.clients,
                trustees: opts.trustees,
                relay: opts.relay.clone(),
                force: true,
                ..config::GenerateOptions::default()
            },
        )?;
        println!(
            "created a demo configuration (DEMO KEYS, {} clients, {} trustees) in {}",
            opts.clients,
            opts.trustees,
            dir.display()
        );
    } else {
        println!("using the configuration in {}", dir.display());
    }
    run(SupervisorOptions {
        dir,
        local: 0,
        exit: opts.exit,
        client_port_base: opts.client_port_base,
        relay_port: None,
        verbose: opts.verbose,
        relay_args: opts.relay_args,
    })
    .await
}
