//! `dissent client`: a local TCP port whose connections are tunnelled through the DC-net.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use dissent_core::client::{Chunk, Client, ClientConfig, ClientEvent, ConnId, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use crate::config::{Group, NodeSecrets, Role};
use crate::link;
use crate::net;

/// Unconfirmed cells the client can keep (bounds the window it accepts).
const STORE_CELLS: usize = dissent_core::MAX_WINDOW;
/// Upstream chunks waiting for this client's slot, over all connections.
const UPSTREAM_QUEUE: usize = 64;
/// Downstream chunks buffered per local connection before it is closed as not reading.
const LOCAL_QUEUE: usize = 4096;

enum Input {
    RelayFrame(u64, Bytes),
    RelayClosed(u64, String),
}

struct Local {
    tx: mpsc::Sender<Bytes>,
    reader: AbortHandle,
}

/// Upstream bytes from all local connections, in arrival order.
struct Pending {
    rx: mpsc::Receiver<(ConnId, Bytes)>,
    partial: Option<(ConnId, Bytes)>,
}

impl Upstream for Pending {
    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<Chunk> {
        let (conn, data) = match self.partial.take() {
            Some(p) => p,
            None => self.rx.try_recv().ok()?,
        };
        if data.is_empty() {
            // The application finished sending; replies keep coming until the exit closes.
            return Some(Chunk::Close { conn });
        }
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        if n < data.len() {
            self.partial = Some((conn, data.slice(n..)));
        }
        Some(Chunk::Data { conn, len: n })
    }
}

/// Runs a client until Ctrl-C.
pub async fn run(
    group: Group,
    node: NodeSecrets,
    listen: SocketAddr,
    relay_addr: String,
) -> Result<()> {
    let Role::Client(index) = node.role else {
        anyhow::bail!("{} is not a client", node.id);
    };
    let slot = node
        .slot(&group)
        .context("the client's pseudonym key is not in pseudonym.json")?;
    let session_secret = node
        .session_private_key
        .context("the client has no session key")?;
    let mut rng_seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut rng_seed);
    let cfg = ClientConfig {
        index: index as u16,
        group_id: group.group_id,
        session_id: group.session_id,
        session_secret,
        trustee_keys: &group.trustee_session_keys,
        slot: slot as u16,
        slots: group.slots.len() as u16,
        cell_len: group.cell_length,
        rng_seed,
    };
    let mut client = Client::new(&cfg, vec![0u8; group.cell_length * STORE_CELLS])
        .map_err(|e| anyhow::anyhow!("client configuration: {e}"))?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    info!(
        "{} listening on {} (relay {relay_addr})",
        node.id,
        listener.local_addr()?
    );

    let keys = LinkKeys {
        own: node.private_key,
        relay: group.relay_key,
        group_id: group.group_id,
        session_id: group.session_id,
    };
    let origin = tokio::time::Instant::now();
    let (in_tx, mut in_rx) = mpsc::channel::<Input>(1024);
    let (up_tx, up_rx) = mpsc::channel::<(ConnId, Bytes)>(UPSTREAM_QUEUE);
    let mut pending = Pending {
        rx: up_rx,
        partial: None,
    };
    let mut locals: HashMap<ConnId, Local> = HashMap::new();
    let mut link: Option<(u64, mpsc::Sender<Bytes>, AbortHandle)> = None;
    let mut link_token = 0u64;
    let mut backoff = Duration::from_millis(100);
    let reconnect = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(reconnect);
    let mut out = vec![0u8; group.cell_length + 256];
    let payload = client.payload_capacity();
    let shutdown = net::shutdown_signal();
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            _ = &mut shutdown => {
                info!("client shutting down");
                break;
            }
            _ = &mut reconnect, if link.is_none() => {
                match TcpStream::connect(&relay_addr).await {
                    Ok(stream) => {
                        link_token += 1;
                        link = Some(spawn_link(link_token, stream, keys, in_tx.clone()));
                        client.handle_connected(net::core_now(origin));
                        backoff = Duration::from_millis(100);
                        info!("connected to relay {relay_addr}");
                    }
                    Err(e) => {
                        if backoff == Duration::from_millis(100) {
                            info!("relay {relay_addr} not reachable yet ({e}); retrying");
                        } else {
                            debug!("relay {relay_addr} not reachable: {e}");
                        }
                        reconnect.as_mut().reset(tokio::time::Instant::now() + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, addr)) => match client.open() {
                        Ok(conn) => {
                            debug!(conn, "local connection from {addr}");
                            locals.insert(conn, spawn_local(conn, stream, payload, up_tx.clone()));
                        }
                        Err(e) => warn!("refusing local connection from {addr}: {e}"),
                    },
                    Err(e) => {
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            Some(input) = in_rx.recv() => {
                let now = net::core_now(origin);
                match input {
                    Input::RelayFrame(token, body) if link.as_ref().is_some_and(|l| l.0 == token) => {
                        match client.handle_frame(now, &body) {
                            Ok(Some(d)) => deliver(&mut locals, d.conn, d.data),
                            Ok(None) => {}
                            Err(e) => {
                                warn!("dropping the relay link: {e}");
                                drop_relay(&mut link, &mut client, now);
                                reconnect.as_mut().reset(tokio::time::Instant::now() + backoff);
                            }
                        }
                    }
                    Input::RelayClosed(token, reason) if link.as_ref().is_some_and(|l| l.0 == token) => {
                        warn!("relay link lost: {reason}");
                        drop_relay(&mut link, &mut client, now);
                        reconnect.as_mut().reset(tokio::time::Instant::now() + backoff);
                    }
                    _ => {}
                }
            }
        }
        while let Some(ev) = client.poll_event() {
            match ev {
                ClientEvent::IntervalStarted { interval } => debug!("interval {interval} started"),
                ClientEvent::Lost { conn } => {
                    warn!(
                        conn,
                        "connection lost in an interval the relay forgot; closing it"
                    );
                    deliver(&mut locals, conn, &[]);
                }
                _ => {}
            }
        }
        loop {
            match client.poll_transmit(&mut out, &mut pending) {
                Ok(Some(n)) => {
                    if let Some((_, tx, _)) = &link {
                        if tx.try_send(Bytes::copy_from_slice(&out[..n])).is_err() {
                            warn!("relay link is not draining; reconnecting");
                            drop_relay(&mut link, &mut client, net::core_now(origin));
                            reconnect
                                .as_mut()
                                .reset(tokio::time::Instant::now() + backoff);
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    warn!("dropping the relay link: {e}");
                    drop_relay(&mut link, &mut client, net::core_now(origin));
                    reconnect
                        .as_mut()
                        .reset(tokio::time::Instant::now() + backoff);
                    break;
                }
            }
        }
    }
    Ok(())
}

fn drop_relay(
    link: &mut Option<(u64, mpsc::Sender<Bytes>, AbortHandle)>,
    client: &mut Client<Vec<u8>>,
    now: dissent_core::Instant,
) {
    if let Some((_, _, reader)) = link.take() {
        reader.abort();
    }
    client.handle_disconnected(now);
}

/// Hands downstream bytes to a local connection; empty data closes it.
fn deliver(locals: &mut HashMap<ConnId, Local>, conn: ConnId, data: &[u8]) {
    if data.is_empty() {
        if let Some(local) = locals.remove(&conn) {
            debug!(conn, "closed by the exit");
            local.reader.abort();
        }
        return;
    }
    if let Some(local) = locals.get(&conn) {
        if local.tx.try_send(Bytes::copy_from_slice(data)).is_err() {
            warn!(
                conn,
                "local application is not reading; closing its connection"
            );
            if let Some(local) = locals.remove(&conn) {
                local.reader.abort();
            }
        }
    }
}

/// Keys a node needs to open its link to the relay.
#[derive(Clone, Copy)]
pub struct LinkKeys {
    /// The node's long-term secret.
    pub own: [u8; 32],
    /// The relay's long-term public key.
    pub relay: [u8; 32],
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
}

fn spawn_link(
    token: u64,
    stream: TcpStream,
    keys: LinkKeys,
    input: mpsc::Sender<Input>,
) -> (u64, mpsc::Sender<Bytes>, AbortHandle) {
    let _ = stream.set_nodelay(true);
    let (tx, rx) = mpsc::channel(net::SEND_QUEUE);
    let reader = tokio::spawn(async move {
        let (r, w) = stream.into_split();
        let reason = match link::connect(
            r,
            w,
            &keys.own,
            &keys.relay,
            &keys.group_id,
            &keys.session_id,
        )
        .await
        {
            Ok((mut frames, writer)) => {
                tokio::spawn(writer.run(rx));
                loop {
                    match frames.next().await {
                        Ok(Some(body)) => {
                            if input.send(Input::RelayFrame(token, body)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break "closed by the relay".to_string(),
                        Err(e) => break e.to_string(),
                    }
                }
            }
            Err(e) => format!("handshake failed: {e}"),
        };
        let _ = input.send(Input::RelayClosed(token, reason)).await;
    });
    (token, tx, reader.abort_handle())
}

/// Pumps one local connection: reads go upstream, downstream bytes get written.
fn spawn_local(
    conn: ConnId,
    stream: TcpStream,
    payload: usize,
    up: mpsc::Sender<(ConnId, Bytes)>,
) -> Local {
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(LOCAL_QUEUE);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; payload];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if up
                        .send((conn, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = up.send((conn, Bytes::new())).await;
    });
    let reader_abort = reader.abort_handle();
    tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if w.write_all(&data).await.is_err() {
                break;
            }
        }
        // The exit closed: finish and close the local side entirely.
        let _ = w.shutdown().await;
        reader_abort.abort();
    });
    Local {
        tx,
        reader: reader.abort_handle(),
    }
}
