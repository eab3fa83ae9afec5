//! `dissent trustee`: answers every exchange with the XOR of its pads.

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use dissent_core::trustee::{Trustee, TrusteeConfig};
use rand::RngCore;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::{Group, NodeSecrets, Role};
use crate::link;
use crate::net;

/// Runs a trustee until Ctrl-C, reconnecting to the relay whenever the link drops.
pub async fn run(
    group: Group,
    node: NodeSecrets,
    relay_addr: String,
    min_clients: u16,
) -> Result<()> {
    let Role::Trustee(index) = node.role else {
        anyhow::bail!("{} is not a trustee", node.id);
    };
    let mut rng_seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut rng_seed);
    let mut trustee = Trustee::new(&TrusteeConfig {
        index: index as u16,
        group_id: group.group_id,
        session_id: group.session_id,
        session_secret: node
            .session_private_key
            .context("the trustee has no session key")?,
        client_keys: &group.client_session_keys,
        cell_len: group.cell_length,
        rng_seed,
        min_clients: min_clients.min(group.clients.len() as u16),
    })
    .map_err(|e| anyhow::anyhow!("trustee configuration: {e}"))?;
    info!("{} starting (relay {relay_addr})", node.id);
    let origin = tokio::time::Instant::now();
    let mut out = vec![0u8; group.cell_length + 256];
    let mut backoff = Duration::from_millis(100);
    let shutdown = net::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            s = TcpStream::connect(&relay_addr) => s,
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                if backoff == Duration::from_millis(100) {
                    info!("relay {relay_addr} not reachable yet ({e}); retrying");
                } else {
                    debug!("relay {relay_addr} not reachable: {e}");
                }
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        info!("connected to relay {relay_addr}");
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        let (mut frames, writer) = match link::connect(
            r,
            w,
            &node.private_key,
            &group.relay_key,
            &group.group_id,
            &group.session_id,
        )
        .await
        {
            Ok(l) => l,
            Err(e) => {
                warn!("handshake with the relay failed: {e}");
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let (tx, rx) = mpsc::channel::<Bytes>(net::SEND_QUEUE);
        let writer = tokio::spawn(writer.run(rx));
        trustee.handle_connected(net::core_now(origin));
        let reason = 'link: loop {
            loop {
                match trustee.poll_transmit(&mut out) {
                    Ok(Some(n)) => {
                        if tx.send(Bytes::copy_from_slice(&out[..n])).await.is_err() {
                            break 'link "link writer stopped".to_string();
                        }
                    }
                    Ok(None) => break,
                    Err(e) => break 'link format!("cannot encode a frame: {e}"),
                }
            }
            let body = tokio::select! {
                _ = &mut shutdown => {
                    info!("trustee shutting down");
                    return Ok(());
                }
                f = frames.next() => f,
            };
            match body {
                Ok(Some(body)) => {
                    if let Err(e) = trustee.handle_frame(net::core_now(origin), &body) {
                        break format!("bad frame from the relay: {e}");
                    }
                }
                Ok(None) => break "closed by the relay".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        warn!("relay link lost: {reason}");
        trustee.handle_disconnected(net::core_now(origin));
        drop(tx);
        writer.abort();
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}
