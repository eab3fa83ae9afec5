//! `dissent client`: a local TCP port whose connections are tunnelled through the DC-net.
//!
//! A relay sees when each client's cell arrives after its request, so a client must take
//! as long to answer whether or not it owns a slot with traffic. The client is therefore
//! two sides that share no thread:
//!
//! - the answering side ([`answer`]) runs on a thread of its own with a single-threaded
//!   runtime: the relay link, the core client, computing and sending each cell at once,
//!   then handing downstream bytes over and preparing the next owned cell;
//! - the local side ([`local`]) runs on the process's main runtime: the listening port and
//!   a reader and a writer task per local connection.
//!
//! They meet only in bounded channels (accepted connections, upstream chunks, one turn per
//! answered request, downstream chunks per connection), so however busy the local
//! connections are, a request is read and answered by a thread that runs nothing else, no
//! lock it needs is held by them, and the answering thread does the same for every
//! request whether or not this client owns the slot (docs/security.md, "Timing the
//! owner").
//! Connections survive a short loss of the relay link; a connection opened while the net
//! cannot carry traffic is closed after a few seconds, with the reason logged.
//!
//! `dissent clients` ([`run_many`]) hosts many clients without local ports in one process:
//! each is a task of the process's multi-threaded runtime, not a thread (thousands of
//! threads at 2,500 clients a process). Having no local connections, none of them runs
//! local work; one client's answer may wait for another's cell on a shared worker, but
//! that wait does not depend on which client owns a slot.
//!
//! Logs never name a Conn# or the slot: a Conn#'s high bits are the slot, and a log that
//! someone shares must not tell which slot is theirs. A local connection is named by a
//! number of its own, counted from 1 in this process.

mod answer;
mod local;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use dissent_core::client::{Client, ClientConfig};
use dissent_core::wire::MAX_FRAME_BODY;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use self::answer::ClientNode;
use crate::config::{Group, NodeSecrets, Role};
use crate::process;

/// Local connections accepted and not yet taken by the answering side.
const ACCEPT_QUEUE: usize = 64;
/// How long a local connection waits for the net to carry traffic before it is closed.
const NO_NET_GRACE: Duration = Duration::from_secs(3);
/// Bytes kept for sent cells not yet confirmed (bounds data in flight).
const RING_LEN: usize = 2 * 1024 * 1024;
/// Bytes kept for downstream records missed during a short link drop.
const REPLAY_LEN: usize = 4 * 1024 * 1024;
/// How long a slot stays reserved after its last data.
const LINGER: Duration = Duration::from_millis(300);

/// What one client process needs to know beyond its configuration.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The relay's `host:port`.
    pub relay: String,
    /// Smallest interval this client sends in.
    pub min_clients: u16,
    /// This client's own anonymity minimum (0: the group's); it may only raise the
    /// group's.
    pub min_anonymity: u16,
    /// Log routine events at debug only (many clients in one process).
    pub quiet: bool,
    /// Misbehave on purpose as this mode says (`--disrupt`, feature `disruptor` only).
    pub disrupt: Option<String>,
    /// In blame rounds, reveal a false pad bit for the pair with trustee 0 and never prove
    /// that pair's secret (`--lie-about-pads`, feature `disruptor` only): the trustee's
    /// proof settles the dispute.
    pub lie_about_pads: bool,
}

/// Builds the core client of `node`.
fn core_client(
    group: &Group,
    node: &NodeSecrets,
    min_clients: u16,
    min_anonymity: u16,
) -> Result<Client<Vec<u8>>> {
    let Role::Client(index) = node.role else {
        bail!("{} is not a client", node.id);
    };
    let slot = node
        .slot()
        .context("the client's pseudonym key is not in pseudonym.json")?;
    let session_secret = node
        .session_private_key
        .context("the client has no session key")?;
    let mut rng_seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut rng_seed);
    let cfg = ClientConfig {
        index: index as u16,
        clients: group.clients.len() as u16,
        group_id: group.group_id,
        session_id: group.session_id,
        session_secret,
        trustee_keys: &group.trustee_session_keys,
        slot: slot as u16,
        slots: group.slots.len() as u16,
        cell_len: group.cell_length,
        max_frame: MAX_FRAME_BODY as u32,
        max_reserved: group
            .slots
            .len()
            .min(usize::from(crate::config::RESERVED_SLOTS)) as u16,
        sent_len: RING_LEN,
        replay_len: REPLAY_LEN,
        min_clients,
        policy: group.policy,
        min_anonymity,
        linger: dissent_core::Duration::from_micros(LINGER.as_micros() as u64),
        rng_seed,
    };
    let mut client =
        Client::with_vecs(&cfg).map_err(|e| anyhow::anyhow!("client configuration: {e}"))?;
    let pseudonym = node
        .pseudonym_private_key
        .context("the client has no pseudonym key")?;
    // The last `keep_horizon(64)` owned cells of the group's longest cell (what any window
    // needs kept), zeros the OS maps lazily: only the cells written take memory.
    let sealed = vec![
        0;
        Client::<Vec<u8>>::sealed_len_at(
            group
                .max_cell_length
                .min(Client::<Vec<u8>>::max_cell(MAX_FRAME_BODY as u32)),
            dissent_core::client::KEPT
        )
    ];
    client
        .set_pseudonym(&pseudonym, &group.relay_dh, sealed)
        .map_err(|e| anyhow::anyhow!("pseudonym key: {e}"))?;
    // What it answers blame rounds with: its identity key, its pad key, the trustees' pad
    // and identity keys and every slot's pseudonym key.
    let trustee_identities: Vec<[u8; 32]> = group.trustees.iter().map(|t| t.identity).collect();
    client
        .set_blame_keys(
            &node.identity_private_key,
            &session_secret,
            &group.trustee_session_keys,
            &trustee_identities,
            group.slots.concat(),
        )
        .map_err(|e| anyhow::anyhow!("blame keys: {e}"))?;
    Ok(client)
}

/// Runs a client with a local listening port until Ctrl-C.
pub async fn run(
    group: Group,
    node: NodeSecrets,
    listen: SocketAddr,
    opts: ClientOptions,
) -> Result<()> {
    #[allow(unused_mut)]
    let mut client = core_client(&group, &node, opts.min_clients, opts.min_anonymity)?;
    if let Some(name) = &opts.disrupt {
        #[cfg(feature = "disruptor")]
        {
            let mode = dissent_core::client::DisruptorMode::from_name(name)
                .with_context(|| format!("no disruptor mode {name}"))?;
            warn!("this client disrupts on purpose: {name}");
            client.set_disruptor(Some(mode));
        }
        #[cfg(not(feature = "disruptor"))]
        bail!("--disrupt {name}: this build has no disruptor");
    }
    if opts.lie_about_pads {
        #[cfg(feature = "disruptor")]
        {
            warn!("this client lies about its pad bits in blame rounds, on purpose");
            client.set_lie_about_pads(true);
        }
        #[cfg(not(feature = "disruptor"))]
        bail!("--lie-about-pads: this build has no disruptor");
    }
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    info!(
        "{} listening on {} (relay {})",
        node.id,
        listener.local_addr()?,
        opts.relay
    );
    serve(
        &group,
        &node,
        client,
        listener,
        opts,
        process::shutdown_signal(),
    )
    .await
}

/// Runs `client` with the local port `listener` until `shutdown` resolves: the answering
/// side on a thread of its own, the local side on the current runtime.
async fn serve(
    group: &Group,
    node: &NodeSecrets,
    client: Client<Vec<u8>>,
    listener: TcpListener,
    opts: ClientOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let (to_answer, accepted) = mpsc::channel(ACCEPT_QUEUE);
    let (turns, turns_rx) = mpsc::channel(local::TURN_QUEUE);
    let (stuck_tx, stuck) = mpsc::unbounded_channel();
    let budget = std::sync::Arc::new(local::Budget::default());
    // Ends when the answering side drops its sender.
    tokio::spawn(local::dispatch(turns_rx, budget.clone(), stuck_tx));
    let side = answer::LocalSide {
        runtime: Handle::current(),
        accepted,
        turns,
        stuck,
        budget,
    };
    let node = ClientNode::new(group, node, client, opts, Some(side));
    let (stop, stopped) = oneshot::channel();
    let mut done = answer::spawn_thread(node, stopped)?;
    let ended = |r: Result<Result<()>, oneshot::error::RecvError>| {
        r.unwrap_or_else(|_| Err(anyhow!("the client's answering thread failed")))
    };
    tokio::select! {
        _ = shutdown => {}
        r = &mut done => return ended(r),
        // Ends only when the answering side is gone.
        _ = local::accept_loop(listener, to_answer) => {}
    }
    let _ = stop.send(());
    ended(done.await)
}

/// Runs many clients of one group in this process, without local ports (load for benchmarks).
pub async fn run_many(group: Group, nodes: Vec<NodeSecrets>, opts: ClientOptions) -> Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for node in &nodes {
        let client = core_client(&group, node, opts.min_clients, opts.min_anonymity)?;
        let mut o = opts.clone();
        o.quiet = true;
        let cn = ClientNode::new(&group, node, client, o, None);
        set.spawn(async move { cn.run(process::shutdown_signal()).await });
    }
    info!(
        "{} running",
        crate::console::count(nodes.len() as u64, "client")
    );
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("a client stopped: {e:#}"),
            Err(e) => warn!("a client task failed: {e}"),
        }
    }
    Ok(())
}
