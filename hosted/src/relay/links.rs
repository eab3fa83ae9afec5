//! The relay's link tasks: one per accepted connection, running the Noise handshake (with
//! the replay cache and the member list) and then reading frames, handing everything to the
//! main task as [`LinkEvent`]s; a writer task per admitted link sends what the main task
//! queues.
//!
//! Owns the link tasks only; every decision about a link is the main task's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use bytes::Bytes;
use dissent_core::relay::PeerId;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::debug;

use super::admission::{Ephemeral, Replays};
use super::SEND_QUEUE;
use crate::link;
use crate::setup::{Leaver, Leaving};

pub(super) enum LinkEvent {
    Admitted {
        token: u64,
        peer: PeerId,
        ephemeral: Ephemeral,
        max_record: Arc<AtomicUsize>,
    },
    /// A frame body, and when it was read.
    Frame(u64, Bytes, std::time::Instant),
    Closed(u64, String),
    /// A complete handshake request that failed: a node of another configuration, usually.
    HandshakeRefused(u64, String),
}

pub(super) struct Link {
    pub(super) peer: Option<PeerId>,
    pub(super) hello_done: bool,
    pub(super) addr: SocketAddr,
    pub(super) tx: mpsc::Sender<Bytes>,
    pub(super) reader: AbortHandle,
    pub(super) max_record: Option<Arc<AtomicUsize>>,
}

/// What the link tasks need to run handshakes.
pub(super) struct LinkAuth {
    pub(super) relay_key: [u8; 32],
    /// The epoch's (group id, session id), then those a node of the epoch that ended may
    /// dial under (`leaving`'s).
    pub(super) ids: Vec<([u8; 16], [u8; 16])>,
    pub(super) members: HashMap<[u8; 32], PeerId>,
    /// The nodes of the epoch that ended at the switch into this one, served the switch.
    pub(super) leaving: Option<Arc<Leaving>>,
}

impl LinkAuth {
    /// What a handshake that matched `ids[n]` with static key `key` admits.
    fn admit(&self, n: usize, key: &[u8; 32]) -> Option<Admitted> {
        match n {
            0 => self.members.get(key).copied().map(Admitted::Member),
            _ => self
                .leaving
                .as_ref()?
                .admit(n - 1, key)
                .map(Admitted::Leaving),
        }
    }
}

/// Whom a finished handshake admitted.
enum Admitted {
    /// A member of this epoch.
    Member(PeerId),
    /// A node of the epoch that ended, served the switch and then closed.
    Leaving(Leaver),
}

pub(super) fn spawn_link(
    token: u64,
    stream: TcpStream,
    addr: SocketAddr,
    auth: Arc<LinkAuth>,
    replays: Arc<Replays>,
    ev: mpsc::Sender<LinkEvent>,
    writer_alive: mpsc::Sender<()>,
) -> Link {
    let _ = stream.set_nodelay(true);
    let (tx, rx) = mpsc::channel(SEND_QUEUE);
    let reader = tokio::spawn(async move {
        let (r, w) = stream.into_split();
        let mut ephemeral = None;
        let accepted = link::accept_checked(
            r,
            w,
            &auth.relay_key,
            &auth.ids,
            |request| {
                ephemeral = Some(Ephemeral::of(request));
                replays.check(std::time::Instant::now(), request)
            },
            |n, k| auth.admit(n, k),
        )
        .await;
        let (peer, mut frames, writer) = match accepted {
            Ok((Admitted::Member(peer), frames, writer)) => (peer, frames, writer),
            Ok((Admitted::Leaving(who), _, writer)) => {
                if let Some(leaving) = &auth.leaving {
                    leaving.serve(who, writer).await;
                }
                let served = "a node of the epoch that ended, served the switch".to_string();
                let _ = ev.send(LinkEvent::Closed(token, served)).await;
                return;
            }
            Err(e) => {
                let reason = format!("refused in the handshake: {e}");
                // A request that arrived whole and was not a replay (counted apart) failed
                // on its keys; a link that sent nothing, or too little, is no node at all.
                let refused = if e.is_key_failure() {
                    LinkEvent::HandshakeRefused(token, reason)
                } else {
                    LinkEvent::Closed(token, reason)
                };
                let _ = ev.send(refused).await;
                return;
            }
        };
        let Some(ephemeral) = ephemeral else {
            return;
        };
        let max_record = writer.max_record();
        tokio::spawn(async move {
            let _alive = writer_alive;
            if let Err(e) = writer.run(rx).await {
                debug!("write to {addr} failed: {e}");
            }
        });
        let admitted = LinkEvent::Admitted {
            token,
            peer,
            ephemeral,
            max_record,
        };
        if ev.send(admitted).await.is_err() {
            return;
        }
        let reason = loop {
            match frames.next().await {
                Ok(Some(body)) => {
                    let read_at = std::time::Instant::now();
                    if ev
                        .send(LinkEvent::Frame(token, body, read_at))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(None) => break "closed by peer".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        let _ = ev.send(LinkEvent::Closed(token, reason)).await;
    });
    Link {
        peer: None,
        hello_done: false,
        addr,
        tx,
        reader: reader.abort_handle(),
        max_record: None,
    }
}
