//! `dissent trustee`: answers every exchange with the XOR of its pads with every online
//! client, computed on every core when there is enough of it, and logs what the core
//! reports (intervals, refusals, the pair secrets it proves in disputes).

use anyhow::{bail, Context, Result};
use dissent_core::crypto::{xor_into, IntervalKey, PadEngine, PadNonce, PairKey, SerialPads};
use dissent_core::trustee::{PeerError, Trustee, TrusteeConfig, TrusteeEvent};
use dissent_core::wire::MAX_FRAME_BODY;
use rand::RngCore;
use rayon::prelude::*;
use tracing::{debug, info, warn};

use crate::clock;
use crate::config::{Group, NodeSecrets, Role};
use crate::link::dial::{Dialer, End, LinkKeys};
use crate::process;

/// Pad bytes per cell below which one thread does the whole cell (splitting costs more).
const PARALLEL_MIN: usize = 256 * 1024;

/// Computes a cell's pads on every core: each thread XORs a share of the clients' pads into
/// its own buffer, then the buffers are XORed together.
pub struct ParallelPads {
    threads: usize,
    parts: Vec<Vec<u8>>,
}

impl ParallelPads {
    /// An engine using rayon's pool (one thread per core).
    pub fn new() -> Self {
        let threads = rayon::current_num_threads().max(1);
        ParallelPads {
            threads,
            parts: (0..threads).map(|_| Vec::new()).collect(),
        }
    }
}

impl PadEngine for ParallelPads {
    fn xor_pads(&mut self, keys: &[IntervalKey], nonce: &PadNonce, out: &mut [u8]) {
        if self.threads < 2 || keys.len() * out.len() < PARALLEL_MIN {
            SerialPads.xor_pads(keys, nonce, out);
            return;
        }
        let per = keys.len().div_ceil(self.threads);
        let len = out.len();
        keys.par_chunks(per)
            .zip(self.parts.par_iter_mut())
            .for_each(|(share, part)| {
                part.clear();
                part.resize(len, 0);
                SerialPads.xor_pads(share, nonce, part);
            });
        for part in self.parts.iter().take(keys.len().div_ceil(per)) {
            xor_into(out, part);
        }
    }
}

/// Runs a trustee until Ctrl-C, reconnecting to the relay whenever the link drops.
pub async fn run(group: Group, node: NodeSecrets, relay: String, min_clients: u16) -> Result<()> {
    let Role::Trustee(index) = node.role else {
        bail!("{} is not a trustee", node.id);
    };
    let mut rng_seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut rng_seed);
    let cfg = TrusteeConfig {
        index: index as u16,
        trustees: group.trustees.len() as u16,
        group_id: group.group_id,
        session_id: group.session_id,
        session_secret: node
            .session_private_key
            .context("the trustee has no session key")?,
        client_keys: &group.client_session_keys,
        slots: group.slots.len() as u16,
        cell_len: group.cell_length,
        max_reserved: group.slots.len().min(u16::MAX as usize) as u16,
        max_frame: MAX_FRAME_BODY as u32,
        rng_seed,
        min_clients,
        policy: group.policy,
    };
    let mut trustee =
        Trustee::with_vecs(&cfg).map_err(|e| anyhow::anyhow!("trustee configuration: {e}"))?;
    // What it answers blame rounds with: its identity key, its pad key, every client's pad
    // key, every slot's pseudonym key and every client's identity key.
    let mut blame_keys: Vec<u8> = group.client_session_keys.concat();
    blame_keys.extend_from_slice(&group.slots.concat());
    for c in &group.clients {
        blame_keys.extend_from_slice(&c.identity);
    }
    trustee
        .set_blame_keys(&node.identity_private_key, &cfg.session_secret, blame_keys)
        .map_err(|e| anyhow::anyhow!("blame keys: {e}"))?;
    info!("{} starting (relay {relay})", node.id);
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let keys = LinkKeys {
        own: node.private_key,
        relay: group.relay_key,
        group_id: group.group_id,
        session_id: group.session_id,
    };
    let mut dialer = Dialer::new(relay, keys, seed, false);
    let mut engine = ParallelPads::new();
    let origin = tokio::time::Instant::now();
    let shutdown = process::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let link = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            l = dialer.dial() => l,
        };
        trustee.handle_connected(clock::core_now(origin));
        let end = serve(&mut trustee, link, &mut engine, origin, &mut shutdown).await;
        trustee.handle_disconnected(clock::core_now(origin));
        if let End::Shutdown = end {
            info!("trustee shutting down");
            return Ok(());
        }
        crate::link::dial::after_link(&node.id, &end, false)?;
        dialer.lost(&end);
    }
}

type HostTrustee = Trustee<Vec<PairKey>, Vec<IntervalKey>, Vec<u8>>;

async fn serve(
    trustee: &mut HostTrustee,
    mut link: crate::link::dial::Connected,
    engine: &mut ParallelPads,
    origin: tokio::time::Instant,
    shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> End {
    // The sink writes in place on this task: no copy or allocation per cell.
    let mut reported = trustee.cells_sent();
    loop {
        loop {
            if !link.sink.has_room() {
                if let Err(e) = link.sink.flush().await {
                    return link.ended(e.to_string()).await;
                }
            }
            match trustee.poll_transmit_with(link.sink.room(), engine) {
                Ok(Some(n)) => link.sink.commit(n),
                Ok(None) => break,
                Err(e) => return End::Lost(format!("cannot encode a frame: {e}")),
            }
        }
        let sent = trustee.cells_sent();
        crate::metrics::exchanges(sent - reported);
        reported = sent;
        if let Err(e) = link.sink.flush().await {
            return link.ended(e.to_string()).await;
        }
        let body = tokio::select! {
            _ = shutdown.as_mut() => return End::Shutdown,
            f = link.frames.next() => f,
        };
        let body = match body {
            Ok(Some(b)) => b,
            Ok(None) => return End::Lost("closed by the relay".into()),
            Err(e) => return End::Lost(e.to_string()),
        };
        // The test hook: nothing more is handled, until Ctrl-C.
        #[cfg(feature = "disruptor")]
        if crate::test_hooks::holds_blame_request(&body) {
            shutdown.as_mut().await;
            return End::Shutdown;
        }
        match trustee.handle_frame(clock::core_now(origin), &body) {
            Ok(()) => {}
            Err(PeerError::Goodbye(r)) => return End::Goodbye(r),
            Err(e) => return End::Lost(format!("bad frame from the relay: {e}")),
        }
        while let Some(ev) = trustee.poll_event() {
            match ev {
                TrusteeEvent::IntervalStarted { interval, clients } => {
                    crate::metrics::interval(u64::from(interval));
                    crate::metrics::online_clients(clients as u64);
                    debug!(
                        "interval {interval} started with {}",
                        crate::console::count(clients as u64, "client")
                    );
                }
                TrusteeEvent::Refused {
                    interval,
                    client,
                    what,
                } => warn!("refused interval {interval}: client {client}: {what}"),
                TrusteeEvent::SecretProven {
                    interval,
                    exchange,
                    client,
                } => info!(
                    "dispute with client {client} about exchange {exchange} of interval \
                     {interval}: proving the pair's secret"
                ),
                _ => {}
            }
        }
    }
}
