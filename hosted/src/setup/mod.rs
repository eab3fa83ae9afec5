//! The epoch setup of a group with no dealer, over the relay: the shell around
//! `dissent_core::epoch`'s state machines.
//!
//! Before a node of a group folder (`group.json`) runs its DC-net role, it runs the setup on
//! a *setup link*: a Noise link like the DC-net's, under the setup session id
//! ([`dissent_core::epoch::session::setup_session`]), whose frames
//! (`Length (u32 BE) ‖ Body`) each carry one setup message of docs/protocol.md ("Epoch
//! setup"), chunks as the core cuts them. The relay ([`relay`]) gathers the members (every
//! one, or every trustee and the group's minimum of clients and then a quiet moment), then
//! runs `SetupRelay`: it forwards each trustee's frame to every node (the author included)
//! and broadcasts its own (`Open`, the collected submissions); departures (a link that
//! drops, a submission that does not come) go to the core, which opens a new attempt or
//! stops. Trustees ([`node`]) run `SetupTrustee`, clients `SetupClient`; a node whose link
//! drops links again. Once every trustee's epoch record is in, each node derives the
//! epoch's group ([`crate::config::group::EpochGroup`]) from its members (the participants
//! and the trustees not convicted): slots in the shuffled order, pad keys from the nodes'
//! own DH keys salted by the epoch's session id. The relay closes the setup links and the
//! normal DC-net starts with the derived group. A client the epoch left out is shown the
//! `Open` that left it out, waits for the next epoch ([`LeftOut`]) and takes part in its
//! setup.
//!
//! Every step is logged; a failure names the node (trustee or client, by name) and why.
//!
//! Switches (docs/protocol.md §12, "Switches"): the relay's [`Watch`] reads the group
//! folder again on SIGHUP and every [`switches::REREAD`] and yields a valid next version
//! (`SwitchFrom`); the relay shell ends the epoch (`Goodbye{Switch}`) and hands the nodes
//! of the epoch that ended ([`Leaving`]) to [`relay`] and then to the next epoch's DC-net:
//! both serve the version on switch links ([`dissent_core::epoch::switch`]'s messages) and
//! tell a node that dials the ended epoch of the switch, until the next switch. A node
//! whose role ended with the switch fetches and checks the version ([`fetch_next`]),
//! however late it comes; the rule is the core's.
//!
//! Owns the setup links and the setup's timing; the protocol is the core's, the group
//! folder `config::group`'s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use dissent_core::epoch::identity::Ed25519Identity;
use dissent_core::epoch::message::SetupMessage;
use dissent_core::epoch::message::MAX_CHUNK_DATA;
use dissent_core::epoch::session;
use dissent_core::epoch::{
    Departure, Established, Event, Failure, Refusal, RelayStep, SetupClient, SetupConfig,
    SetupRelay, SetupStorage, SetupTrustee, Waiting, MAX_ATTEMPTS,
};
use dissent_core::identity::IdentityKey;
use dissent_core::ristretto::shuffle::ProverSlot;
use dissent_core::wire::{GoodbyeReason, Message};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::group::{node_secrets, EpochGroup, GroupDesc};
use crate::config::keys::{KeyRole, PrivateKeys};
use crate::config::{Access, Group, Key, NodeSecrets, Role};
use crate::link::dial::{Dialer, LinkKeys, Switching};

mod switches;

use switches::WAITING;
pub use switches::{fetch_next, Absent, Fetched, Leaver, Leaving, Watch};

/// Longest wait for the next setup frame before the setup is given up.
pub(super) const STALL: Duration = Duration::from_secs(120);
/// Once every trustee and the group's minimum of clients are linked, how long the relay
/// waits for anyone new before it opens the setup without the absent clients.
pub const GATHER_QUIET: Duration = Duration::from_secs(10);
/// How long the relay waits for the participants' submissions once every trustee's key is
/// in, before it opens a new attempt without those that did not submit.
pub const SUBMIT_WAIT: Duration = Duration::from_secs(30);
/// Frames a setup link may queue.
const QUEUE: usize = 4096;

/// The epoch a group version sets up: one epoch per version (a switch moves the group to
/// the next version and its epoch).
pub fn epoch_of(desc: &GroupDesc) -> u64 {
    desc.version
}

/// What every node of `desc` sets up, with the slices it borrows.
struct Setup {
    digest: [u8; 32],
    trustees: Vec<[u8; 32]>,
    clients: Vec<[u8; 32]>,
    epoch: u64,
    min_trustees: usize,
}

impl Setup {
    fn new(desc: &GroupDesc) -> Result<Setup> {
        let min_trustees = usize::from(desc.policy.min_trustees.max(1));
        if min_trustees > desc.trustees.len() {
            bail!(
                "the group's policy needs at least {min_trustees} trustees (min_trustees), and \
                 version {} lists {}: no setup can run",
                desc.version,
                desc.trustees.len()
            );
        }
        Ok(Setup {
            digest: desc.digest(),
            trustees: desc.trustees.iter().map(|k| k.identity).collect(),
            clients: desc.clients.iter().map(|k| k.identity).collect(),
            epoch: epoch_of(desc),
            min_trustees,
        })
    }

    fn config(&self) -> SetupConfig<'_> {
        SetupConfig {
            group: self.digest,
            epoch: self.epoch,
            trustees: &self.trustees,
            clients: &self.clients,
            // A convicted trustee is left out while the group's minimum remains (the DC-net
            // then runs with the trustees that established the epoch).
            min_trustees: self.min_trustees,
            chunk_len: MAX_CHUNK_DATA,
        }
    }

    fn link_ids(&self) -> ([u8; 16], [u8; 16]) {
        (
            session::group_id(&self.digest),
            session::setup_session(&self.digest, self.epoch),
        )
    }
}

pub(super) fn framed(body: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(4 + body.len());
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    Bytes::from(v)
}

fn slots_of<'a>(rows: impl Iterator<Item = &'a [u8]>) -> Result<Vec<[u8; 32]>> {
    rows.map(|r| {
        <[u8; 32]>::try_from(r).map_err(|_| anyhow!("a pseudonym key of {} bytes", r.len()))
    })
    .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    Trustee(usize),
    Client(usize),
}

/// A link's events, each with the link's serial number (a member that links again has a
/// new link, and the old one's end must not take the new one's place).
enum Ev {
    Joined(Who, u64, mpsc::Sender<Bytes>),
    Frame(Who, Bytes),
    Left(Who, u64),
}

/// The relay's links to the members, by member: the link's serial and its sender.
type Links = HashMap<Who, (u64, mpsc::Sender<Bytes>)>;

/// What a link to the relay's setup listener is.
enum Admitted {
    /// A member of the version being set up, on a setup link.
    Setup(Who),
    /// A node of the epoch that ended, served the switch.
    Leaving(Leaver),
}

/// The relay's part: listens on `listen`, gathers the group's members, runs the setup with
/// every trustee and the clients present, and returns the epoch's group, the address it
/// listened on, and what the epoch's DC-net serves besides its members ([`Leaving`]: the
/// nodes of the epoch that ended at a switch, `from`, and the clients this epoch leaves out).
///
/// Gathering ends when every member is linked, or once every trustee and at least
/// `min_clients` clients are linked and nobody new has linked for [`GATHER_QUIET`]. Absent
/// clients get no slot this epoch; one that links later is sent the attempt's `Open` (it
/// sees that it is no participant) and waits for the next epoch. A participant that leaves,
/// or does not submit within [`SUBMIT_WAIT`], makes the core open a new attempt without it
/// (bounded; the core stops the setup below `min_clients` or after its most attempts).
pub async fn relay(
    desc: &GroupDesc,
    keys: &PrivateKeys,
    key_file: &Path,
    listen: SocketAddr,
    min_clients: u16,
    from: Option<std::sync::Arc<Leaving>>,
) -> Result<(Group, SocketAddr, Option<std::sync::Arc<Leaving>>)> {
    let setup = Setup::new(desc)?;
    if let Some(saved) = EpochFile::load(key_file, desc)? {
        let serving = Leaving::serving(from, saved.absent(desc, &setup)?);
        return Ok((saved.group(desc)?, listen, serving));
    }
    let config = setup.config();
    let (group_id, setup_id) = setup.link_ids();
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    let min_clients = usize::from(min_clients.max(1)).min(desc.clients.len());
    info!(
        "setup of epoch {} of group {}: listening on {local}; waiting for {} trustees and {} \
         clients (at least {min_clients} clients; absent ones get no slot this epoch)",
        setup.epoch,
        desc.fingerprint(),
        desc.trustees.len(),
        desc.clients.len()
    );
    let mut members: HashMap<[u8; 32], Who> = HashMap::new();
    for (j, t) in desc.trustees.iter().enumerate() {
        members.insert(t.link, Who::Trustee(j));
    }
    for (i, c) in desc.clients.iter().enumerate() {
        members.insert(c.link, Who::Client(i));
    }
    let name = |w: Who| match w {
        Who::Trustee(j) => format!("trustee {}", desc.trustees[j].name),
        Who::Client(i) => format!("client {}", desc.clients[i].name),
    };
    let (ev_tx, mut ev_rx) = mpsc::channel::<Ev>(QUEUE);
    let relay_key = keys.link;
    let mut ids = vec![(group_id, setup_id)];
    if let Some(f) = &from {
        ids.extend_from_slice(f.ids());
    }
    let serving = from.clone();
    // Setup links get the DC-net's replay check: a replayed handshake request is refused
    // before it could stand in for the member's link.
    let limits = crate::relay::admission::Limits::default();
    let replays = std::sync::Arc::new(crate::relay::admission::Replays::new(
        limits.replay_window,
        limits.replay_capacity,
    ));
    let acceptor = tokio::spawn(async move {
        for serial in 0u64.. {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: try again shortly rather than spin.
                    warn!("setup: cannot accept a link: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let members = members.clone();
            let ids = ids.clone();
            let from = from.clone();
            let ev_tx = ev_tx.clone();
            let replays = replays.clone();
            tokio::spawn(async move {
                let (r, w) = stream.into_split();
                let admitted = accept_setup(r, w, &relay_key, &ids, &replays, |n, k| match n {
                    0 => members.get(k).copied().map(Admitted::Setup),
                    _ => from.as_ref()?.admit(n - 1, k).map(Admitted::Leaving),
                })
                .await;
                let (who, mut reader, writer) = match admitted {
                    Ok((Admitted::Setup(who), r, w)) => (who, r, w),
                    Ok((Admitted::Leaving(who), _r, w)) => {
                        if let Some(f) = &from {
                            f.serve(who, w).await;
                        }
                        return;
                    }
                    Err(e) => {
                        warn!("setup: a link was refused: {e:#}");
                        return;
                    }
                };
                let (tx, rx) = mpsc::channel(QUEUE);
                if ev_tx.send(Ev::Joined(who, serial, tx)).await.is_err() {
                    return;
                }
                tokio::spawn(writer.run(rx));
                while let Ok(Some(body)) = reader.next().await {
                    if ev_tx.send(Ev::Frame(who, body)).await.is_err() {
                        return;
                    }
                }
                let _ = ev_tx.send(Ev::Left(who, serial)).await;
            });
        }
    });

    let mut links: Links = HashMap::new();
    let all = desc.trustees.len() + desc.clients.len();
    let missing = |links: &Links| -> Vec<String> {
        (0..desc.trustees.len())
            .map(Who::Trustee)
            .chain((0..desc.clients.len()).map(Who::Client))
            .filter(|w| !links.contains_key(w))
            .map(name)
            .collect()
    };
    // Gathering: every member, or every trustee and enough clients and a quiet moment.
    let mut last_join = tokio::time::Instant::now();
    while links.len() < all {
        let trustees = links
            .keys()
            .filter(|w| matches!(w, Who::Trustee(_)))
            .count();
        let enough = trustees == desc.trustees.len() && links.len() - trustees >= min_clients;
        let deadline = if enough {
            last_join + GATHER_QUIET
        } else {
            last_join + STALL
        };
        let ev = match tokio::time::timeout_at(deadline, ev_rx.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => bail!("setup: the listener stopped"),
            Err(_) if enough => {
                info!(
                    "setup: nobody new linked for {} s; going on without {}: they get no slot \
                     this epoch",
                    GATHER_QUIET.as_secs(),
                    missing(&links).join(", ")
                );
                break;
            }
            Err(_) => bail!(
                "setup: nobody new linked within {} s; missing: {} (every trustee and {} \
                 clients are needed)",
                STALL.as_secs(),
                missing(&links).join(", "),
                min_clients
            ),
        };
        match ev {
            Ev::Joined(w, serial, tx) => {
                // A member linking again replaces its link (its process restarted).
                links.insert(w, (serial, tx));
                last_join = tokio::time::Instant::now();
                info!("setup: {} linked ({}/{all} members)", name(w), links.len());
            }
            Ev::Left(w, serial) => {
                if links.get(&w).is_some_and(|(s, _)| *s == serial) {
                    links.remove(&w);
                    info!("setup: {} left before the setup started", name(w));
                }
            }
            Ev::Frame(w, _) => warn!("setup: {} sent a frame before the setup started", name(w)),
        }
    }
    let mut participants = vec![0u8; dissent_core::bits::bitmap_len(desc.clients.len())];
    for w in links.keys() {
        if let Who::Client(i) = *w {
            participants[i / 8] |= 1 << (i % 8);
        }
    }
    let mut relay = SetupRelay::new(
        config,
        SetupStorage::with_vecs(&config),
        vec![0u8; SetupRelay::<Vec<u8>>::collected_len(&config)],
        &participants,
    )
    .map_err(|e| anyhow!("setup: the group does not fit a setup: {e:?}"))?;
    relay.limit(min_clients, MAX_ATTEMPTS);
    info!(
        "setup: {} of {} clients and every trustee linked; opening epoch {}",
        links.keys().filter(|w| matches!(w, Who::Client(_))).count(),
        desc.clients.len(),
        setup.epoch
    );
    let broadcast = |links: &Links, frame: &[u8]| {
        let f = framed(frame);
        for (_, tx) in links.values() {
            let _ = tx.try_send(f.clone());
        }
    };
    let mut buf = vec![0u8; dissent_core::epoch::message::CHUNK_HEADER_LEN + MAX_CHUNK_DATA];
    // The last `Open`: what a client that links during the setup is sent.
    let mut open = Bytes::new();
    let mut quiet_since = tokio::time::Instant::now();
    // When the relay began waiting for the submissions of the attempt under way.
    let mut submitting: Option<tokio::time::Instant> = None;
    // Trustees whose link dropped during the setup: the attempt waits for them to link again.
    let mut trustees_away: Vec<usize> = Vec::new();
    // Clients that linked again during the setup, sent the next `Open` (which leaves them
    // out) and closed.
    let mut late: Vec<mpsc::Sender<Bytes>> = Vec::new();
    loop {
        while let Some(n) = relay
            .poll_broadcast(&mut buf)
            .map_err(|e| anyhow!("setup: cannot encode a frame: {e:?}"))?
        {
            if let Ok(SetupMessage::Open(o)) = SetupMessage::parse(&buf[..n]) {
                info!(
                    "setup: attempt {} opened over {} clients and {} trustees",
                    o.attempt,
                    relay.counts().1,
                    o.trustees.count_ones()
                );
                open = framed(&buf[..n]);
                for tx in late.drain(..) {
                    let _ = tx.try_send(open.clone());
                }
            }
            broadcast(&links, &buf[..n]);
        }
        if let Some(f) = relay.failure() {
            flush(links).await;
            bail!(
                "setup of epoch {} failed: {}",
                setup.epoch,
                describe(desc, f)
            );
        }
        if relay.established().is_some() {
            break;
        }
        submitting = match (relay.waiting(), submitting) {
            (Waiting::Submit(_), Some(at)) => Some(at),
            (Waiting::Submit(_), None) => Some(tokio::time::Instant::now()),
            _ => None,
        };
        let stall = quiet_since + STALL;
        let deadline = submitting.map_or(stall, |at| stall.min(at + SUBMIT_WAIT));
        let ev = match tokio::time::timeout_at(deadline, ev_rx.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => bail!("setup: the listener stopped"),
            Err(_) if deadline < stall => {
                let (submitted, awaited) = relay.counts();
                warn!(
                    "setup: {} of {awaited} submissions came within {} s; going on without \
                     the others",
                    submitted,
                    SUBMIT_WAIT.as_secs()
                );
                departed(relay.drop_missing(), "did not submit");
                submitting = None;
                continue;
            }
            Err(_) => {
                flush(links).await;
                bail!(
                    "setup: nothing came for {} s while waiting for {}",
                    STALL.as_secs(),
                    awaited(desc, relay.waiting())
                )
            }
        };
        quiet_since = tokio::time::Instant::now();
        match ev {
            Ev::Joined(Who::Trustee(j), serial, tx) => {
                links.insert(Who::Trustee(j), (serial, tx));
                if let Some(at) = trustees_away.iter().position(|&t| t == j) {
                    trustees_away.swap_remove(at);
                }
                if trustees_away.is_empty() {
                    info!(
                        "setup: trustee {} linked again; a new attempt starts",
                        desc.trustees[j].name
                    );
                    departed(relay.reopen(), "");
                } else {
                    info!(
                        "setup: trustee {} linked again; waiting for the other trustees away",
                        desc.trustees[j].name
                    );
                }
            }
            Ev::Joined(Who::Client(i), _, tx) => {
                // It missed the attempt's frames: it is sent the `Open` that leaves it out
                // (it sees that it is no participant) and its link closes. A participant
                // linking again (its process restarted) lost its pseudonym key: the attempt
                // restarts without it.
                info!(
                    "setup: client {} linked during the setup: no slot this epoch; it is told \
                     so and waits for the next epoch",
                    desc.clients[i].name
                );
                if links.remove(&Who::Client(i)).is_some() {
                    let why = format!("client {} linked again", desc.clients[i].name);
                    departed(relay.leave(i as u16), &why);
                    late.push(tx);
                } else {
                    let _ = tx.try_send(open.clone());
                }
            }
            Ev::Left(w, serial) => {
                if links.get(&w).is_none_or(|(s, _)| *s != serial) {
                    // A link already replaced, or one the relay closed (a latecomer's).
                    continue;
                }
                links.remove(&w);
                match w {
                    Who::Client(i) => {
                        warn!(
                            "setup: client {} left during the setup",
                            desc.clients[i].name
                        );
                        let why = format!("client {} left", desc.clients[i].name);
                        departed(relay.leave(i as u16), &why);
                    }
                    Who::Trustee(j) => {
                        warn!(
                            "setup: trustee {} left during the setup; waiting up to {} s for \
                             it to link again",
                            desc.trustees[j].name,
                            STALL.as_secs()
                        );
                        trustees_away.push(j);
                    }
                }
            }
            Ev::Frame(Who::Client(i), body) => {
                if let Err(e) = relay.receive_client(i as u16, &body) {
                    warn!(
                        "setup: client {}: submission refused: {e:?}",
                        desc.clients[i].name
                    );
                }
            }
            Ev::Frame(Who::Trustee(j), body) => match relay.receive_trustee(j as u8, &body) {
                RelayStep::Refuse(f) => {
                    let stale = SetupMessage::parse(&body)
                        .is_ok_and(|m| relay.attempt().is_some_and(|a| m.epoch_attempt().1 < a));
                    if stale || relay.waiting() == Waiting::Open {
                        // A frame of an attempt given up on: expected after a restart.
                        debug!(
                            "setup: trustee {}: frame of an earlier attempt",
                            desc.trustees[j].name
                        );
                    } else {
                        warn!(
                            "setup: trustee {}: frame refused: {f}",
                            desc.trustees[j].name
                        )
                    }
                }
                RelayStep::Forward => broadcast(&links, &body),
                RelayStep::ForwardEstablished => {
                    broadcast(&links, &body);
                }
                RelayStep::ForwardAndRestart(c) => {
                    broadcast(&links, &body);
                    let t = &desc.trustees[usize::from(c.trustee)];
                    warn!(
                        "setup: CONVICTED trustee {} ({}): {c}; evidence, its signed message: \
                         {}; a new attempt starts without it",
                        t.name,
                        t.fingerprint(),
                        hex::encode(relay.evidence())
                    );
                }
                RelayStep::ForwardAndStop(f) => {
                    broadcast(&links, &body);
                    if let Failure::TooFewTrustees { conviction, .. } = f {
                        let t = &desc.trustees[usize::from(conviction.trustee)];
                        warn!(
                            "setup: CONVICTED trustee {} ({}): {conviction}; evidence, its \
                             signed message: {}",
                            t.name,
                            t.fingerprint(),
                            hex::encode(relay.evidence())
                        );
                    }
                    flush(links).await;
                    bail!(
                        "setup of epoch {} failed: {}",
                        setup.epoch,
                        describe(desc, f)
                    );
                }
            },
        }
    }
    acceptor.abort();
    let Some(established) = relay.established() else {
        bail!("setup: not established");
    };
    let slots = slots_of(relay.pseudonyms())?;
    let members = Members::of(&established, relay.participants(), desc);
    flush(links).await;
    let open = open.get(4..).unwrap_or(&[]).to_vec();
    let group = settle(
        desc,
        &setup,
        &established,
        slots,
        &members,
        (None, Some(&open)),
        key_file,
    )?;
    let absent = Absent::new(desc, setup.link_ids(), &members.clients, &open);
    Ok((group, local, Leaving::serving(serving, absent)))
}

/// The relay side of a setup link's handshake, with the DC-net links' replay check: a
/// request whose ephemeral key was authenticated within the window is refused before any
/// key exchange, so a replayed handshake never stands in for a member's link.
async fn accept_setup<R, W, T>(
    r: R,
    w: W,
    relay_key: &[u8; 32],
    ids: &[([u8; 16], [u8; 16])],
    replays: &crate::relay::admission::Replays,
    admit: impl FnOnce(usize, &[u8; 32]) -> Option<T>,
) -> Result<(T, crate::link::LinkReader<R>, crate::link::LinkWriter<W>)>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use crate::relay::admission::Ephemeral;
    let mut ephemeral = None;
    let admitted = crate::link::accept_checked(
        r,
        w,
        relay_key,
        ids,
        |request| {
            ephemeral = Some(Ephemeral::of(request));
            replays.check(std::time::Instant::now(), request)
        },
        admit,
    )
    .await?;
    if let Some(e) = ephemeral {
        replays.insert(std::time::Instant::now(), e)?;
    }
    Ok(admitted)
}

/// Lets every link's writer send what it holds, then closes the links.
async fn flush(links: Links) {
    let pending: Vec<_> = links.into_values().map(|(_, tx)| tx).collect();
    // The writers end once their queue is empty and its sender gone; give them a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for tx in &pending {
        while tx.capacity() < QUEUE && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    drop(pending);
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// How this process's trustee cheats in its setups (`dissent trustee --cheat`, tests only).
#[cfg(feature = "disruptor")]
static CHEAT: std::sync::OnceLock<dissent_core::epoch::Cheat> = std::sync::OnceLock::new();

/// Makes this process's trustee cheat in every setup it runs, as `mode` says (tests only).
#[cfg(feature = "disruptor")]
pub fn cheat(mode: &str) -> Result<()> {
    use dissent_core::epoch::Cheat;
    let cheat = match mode {
        "swap" => Cheat::Swap,
        "replace" => Cheat::Replace,
        "duplicate" => Cheat::Duplicate,
        "reencryption" => Cheat::Reencryption,
        "share" => Cheat::Share,
        "key-proof" => Cheat::KeyProof,
        other => bail!(
            "--cheat {other}: one of swap, replace, duplicate, reencryption, share, key-proof"
        ),
    };
    let _ = CHEAT.set(cheat);
    warn!("this trustee cheats in its setups on purpose (--cheat {mode}): a test");
    Ok(())
}

enum Machine {
    Trustee(Box<SetupTrustee<'static, Vec<u8>, Vec<ProverSlot>, Ed25519Identity>>),
    Client(Box<SetupClient<'static, Vec<u8>, Ed25519Identity>>),
}

/// A trustee's or client's part: links to the relay, runs the setup, and returns the
/// epoch's group and this node's secrets for it.
pub async fn node(
    desc: &GroupDesc,
    keys: &PrivateKeys,
    key_file: &Path,
    relay_addr: String,
) -> Result<(Group, NodeSecrets)> {
    let Some(relay_keys) = &desc.relay else {
        bail!("the group has no relay key");
    };
    let own = keys.public();
    let (role, list) = match keys.role {
        KeyRole::Trustee => (Role::Trustee(0), &desc.trustees),
        KeyRole::Client => (Role::Client(0), &desc.clients),
        KeyRole::Relay => bail!("a relay key runs `dissent relay`"),
    };
    let Some(index) = list.iter().position(|k| *k == own) else {
        bail!(
            "{} {} ({}) is not a {} of group version {} ({}): refused",
            keys.role,
            keys.name,
            own.fingerprint(),
            keys.role,
            desc.version,
            desc.fingerprint()
        );
    };
    let role = match role {
        Role::Trustee(_) => Role::Trustee(index),
        _ => Role::Client(index),
    };
    if let Some(saved) = EpochFile::load(key_file, desc)? {
        let pseudonym = match (saved.pseudonym()?, saved.slot) {
            (Some(k), Some(slot)) => Some((k, slot)),
            _ => None,
        };
        let members = saved.members(desc);
        if let Some(role) = members.role(role) {
            if keys.role == KeyRole::Trustee || pseudonym.is_some() {
                return Ok((saved.group(desc)?, node_secrets(keys, role, pseudonym)));
            }
        }
    }
    // The machines borrow the setup for the process's life (one setup per process).
    let setup: &'static Setup = Box::leak(Box::new(Setup::new(desc)?));
    let config = setup.config();
    let identity = IdentityKey::from_bytes(&keys.identity);
    let mut machine = match role {
        Role::Trustee(j) => {
            #[allow(unused_mut)]
            let mut trustee = SetupTrustee::new(
                config,
                j as u8,
                identity,
                SetupStorage::with_vecs(&config),
                vec![ProverSlot::EMPTY; desc.clients.len()],
            )
            .map_err(|e| anyhow!("setup: {e:?}"))?;
            #[cfg(feature = "disruptor")]
            if let Some(c) = CHEAT.get() {
                trustee.cheat(*c);
            }
            Machine::Trustee(Box::new(trustee))
        }
        _ => Machine::Client(Box::new(
            SetupClient::new(
                config,
                index as u16,
                identity,
                SetupStorage::with_vecs(&config),
            )
            .map_err(|e| anyhow!("setup: {e:?}"))?,
        )),
    };
    let (group_id, setup_id) = setup.link_ids();
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    // Until the relay reaches this epoch's setup (a new member waits through the running
    // epoch), it refuses the link: redial within a second, so the switch's pause stays short.
    let mut dialer = Dialer::with_backoff(
        relay_addr.clone(),
        LinkKeys {
            own: keys.link,
            relay: relay_keys.link,
            group_id,
            session_id: setup_id,
        },
        seed,
        false,
        WAITING,
    );
    info!(
        "setup of epoch {} of group {}: linking to relay {relay_addr}",
        setup.epoch,
        desc.fingerprint()
    );
    let mut link = dialer.dial().await;
    info!("setup: linked; waiting for the relay to open the setup");
    let mut out = vec![0u8; dissent_core::epoch::message::CHUNK_HEADER_LEN + MAX_CHUNK_DATA];
    let mut rng = OsRng;
    loop {
        // This node's frames first (a trustee's key, shuffle, shares, record; a submission).
        let mut lost: Option<String> = None;
        loop {
            let frame: Option<Vec<u8>> = match &mut machine {
                Machine::Trustee(t) => t
                    .poll_transmit(&mut out)
                    .map_err(|e| anyhow!("setup: cannot encode a frame: {e:?}"))?
                    .map(|n| out[..n].to_vec()),
                Machine::Client(c) => c.poll_transmit().map(|f| f.to_vec()),
            };
            let Some(frame) = frame else { break };
            let f = framed(&frame);
            if !link.sink.has_room() {
                if let Err(e) = link.sink.flush().await {
                    lost = Some(e.to_string());
                    break;
                }
            }
            let room = link.sink.room();
            if room.len() < f.len() {
                bail!("setup: a frame of {} bytes does not fit the link", f.len());
            }
            room[..f.len()].copy_from_slice(&f);
            link.sink.commit(f.len());
        }
        if lost.is_none() {
            if let Err(e) = link.sink.flush().await {
                lost = Some(e.to_string());
            }
        }
        let body = match lost {
            Some(why) => Err(why),
            None => match tokio::time::timeout(STALL, link.frames.next()).await {
                Ok(Ok(Some(b))) => Ok(b),
                Ok(Ok(None)) => Err("the relay closed it".to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => {
                    let f = match &mut machine {
                        Machine::Trustee(t) => t.stalled(),
                        Machine::Client(c) => c.stalled(),
                    };
                    bail!(
                        "setup of epoch {} failed: {}",
                        setup.epoch,
                        describe(desc, f)
                    );
                }
            },
        };
        let body = match body {
            Ok(body) => body,
            Err(why) => {
                // Frames were lost: the relay starts a new attempt (without this client, which
                // then waits for the next epoch; with this trustee once it is back).
                warn!("setup: the link to the relay dropped ({why}); linking again");
                link = dialer.dial().await;
                continue;
            }
        };
        let event = match &mut machine {
            Machine::Trustee(t) => t.receive(&body, &mut rng),
            Machine::Client(c) => c.receive(&body, &mut rng),
        };
        match event {
            Ok(Event::Progress) => {}
            Ok(Event::Opened) => info!("setup: attempt opened"),
            Ok(Event::KeysComplete) => info!("setup: every trustee's key is in"),
            Ok(Event::ListReady) => info!("setup: pseudonym list decrypted"),
            Ok(Event::Restarting(c)) => {
                let evidence = match &machine {
                    Machine::Trustee(t) => hex::encode(t.evidence()),
                    Machine::Client(c) => hex::encode(c.evidence()),
                };
                warn!(
                    "setup: CONVICTED trustee {}: {c}; evidence, its signed message: {evidence}; \
                     the relay restarts without it",
                    desc.trustees
                        .get(usize::from(c.trustee))
                        .map_or("?", |t| t.name.as_str())
                )
            }
            Ok(Event::Established) => break,
            Err(Failure::Refused(Refusal::NotParticipant)) if keys.role == KeyRole::Client => {
                warn!(
                    "setup: client {} has no slot in epoch {}: it was not linked when the relay \
                     opened the setup (or its link dropped during it); it waits for the next \
                     epoch, which takes it in (the relay announces it at the group's next \
                     switch)",
                    keys.name, setup.epoch
                );
                wait_for_switch(&mut dialer, link).await;
                return Err(anyhow::Error::new(LeftOut {
                    desc: desc.clone(),
                    keys: crate::config::keys::load_private(key_file)?,
                }));
            }
            Err(f) => bail!(
                "setup of epoch {} failed: {}",
                setup.epoch,
                describe(desc, f)
            ),
        }
    }
    let (established, slots, pseudonym, participants) = match &machine {
        Machine::Trustee(t) => (
            t.established(),
            slots_of(t.pseudonyms())?,
            None,
            t.participants().to_vec(),
        ),
        Machine::Client(c) => {
            let slot = c.slot().ok_or_else(|| anyhow!("setup: no slot"))?;
            let secret = c
                .pseudonym()
                .ok_or_else(|| anyhow!("setup: no pseudonym key"))?
                .to_bytes();
            (
                c.established(),
                slots_of(c.pseudonyms())?,
                Some((secret, usize::from(slot))),
                c.participants().to_vec(),
            )
        }
    };
    let established = established.ok_or_else(|| anyhow!("setup: not established"))?;
    let members = Members::of(&established, &participants, desc);
    let role = members
        .role(role)
        .ok_or_else(|| anyhow!("setup: this node is not a member of the epoch it set up"))?;
    let group = settle(
        desc,
        setup,
        &established,
        slots,
        &members,
        (pseudonym, None),
        key_file,
    )?;
    Ok((group, node_secrets(keys, role, pseudonym)))
}

/// A client with no slot this epoch: holds its setup link (the relay holds it until the
/// epoch ends) and dials again when it drops, until the relay announces the next epoch
/// (`Goodbye{Switch}`).
async fn wait_for_switch(dialer: &mut Dialer, mut link: crate::link::dial::Connected) {
    loop {
        match link.frames.next().await {
            Ok(Some(body)) => {
                if SetupMessage::parse(&body).is_ok() {
                    // The relay repeats the `Open` that left it out.
                    continue;
                }
                if let Ok(Message::Goodbye {
                    reason: GoodbyeReason::Switch,
                }) = Message::parse(&body)
                {
                    return;
                }
            }
            Ok(None) | Err(_) => link = dialer.dial().await,
        }
    }
}

/// How a client's setup ends when the epoch left it out and the relay then announced the
/// next epoch: the shell fetches the version after `desc` (as after [`Switching`]) and
/// takes part in its setup.
pub struct LeftOut {
    /// The version whose epoch left it out.
    pub desc: GroupDesc,
    /// The client's keys.
    pub keys: PrivateKeys,
}

impl std::fmt::Debug for LeftOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LeftOut(version {})", self.desc.version)
    }
}

impl std::fmt::Display for LeftOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}; this client had no slot in the epoch of version {}",
            Switching, self.desc.version
        )
    }
}

impl std::error::Error for LeftOut {}

/// The members of an established epoch, as indices into the group version's lists.
struct Members {
    clients: Vec<usize>,
    trustees: Vec<usize>,
}

impl Members {
    /// The participants of the attempt that established the epoch, and its trustees.
    fn of(established: &Established, participants: &[u8], desc: &GroupDesc) -> Members {
        Members {
            clients: (0..desc.clients.len())
                .filter(|&i| dissent_core::bits::test(participants, i))
                .collect(),
            trustees: (0..desc.trustees.len())
                .filter(|&j| j < 16 && established.trustees & (1 << j) != 0)
                .collect(),
        }
    }

    /// A node's role in the epoch, from its role in the group version.
    fn role(&self, role: Role) -> Option<Role> {
        match role {
            Role::Trustee(j) => self
                .trustees
                .iter()
                .position(|&t| t == j)
                .map(Role::Trustee),
            Role::Client(i) => self.clients.iter().position(|&c| c == i).map(Role::Client),
            Role::Relay => Some(Role::Relay),
        }
    }
}

/// A failure with the trustee it names, by name.
fn describe(desc: &GroupDesc, f: Failure) -> String {
    match f {
        Failure::Disagreement { trustee } => format!(
            "{f} (trustee {})",
            desc.trustees
                .get(usize::from(trustee))
                .map_or("?", |t| t.name.as_str())
        ),
        Failure::TooFewTrustees { conviction, .. } => format!(
            "{f} (trustee {})",
            desc.trustees
                .get(usize::from(conviction.trustee))
                .map_or("?", |t| t.name.as_str())
        ),
        other => other.to_string(),
    }
}

/// The relay's group folder (signed by every trustee) and its key file, checked against it.
pub fn load_relay(
    dir: &std::path::Path,
    key_file: Option<&std::path::Path>,
) -> Result<(GroupDesc, PrivateKeys)> {
    let desc = crate::config::group::load_signed(dir)?;
    let Some(key_file) = key_file else {
        bail!("a group folder's relay needs its key file: dissent relay DIR --key FILE");
    };
    let keys = crate::config::keys::load_private(key_file)?;
    let own = keys.public();
    if keys.role != KeyRole::Relay || desc.relay.as_ref() != Some(&own) {
        bail!(
            "{}: {} {} ({}) is not the relay of group version {} ({})",
            key_file.display(),
            keys.role,
            keys.name,
            own.fingerprint(),
            desc.version,
            desc.fingerprint()
        );
    }
    Ok((desc, keys))
}

/// A trustee's or client's group folder (signed by every trustee) and its key file.
pub fn load_node(
    dir: &std::path::Path,
    key_file: &std::path::Path,
    role: KeyRole,
) -> Result<(GroupDesc, PrivateKeys)> {
    let desc = crate::config::group::load_signed(dir)?;
    let keys = crate::config::keys::load_private(key_file)?;
    if keys.role != role {
        bail!(
            "{}: a {} key, where a {role} key was expected",
            key_file.display(),
            keys.role
        );
    }
    let own = keys.public();
    let list = if role == KeyRole::Trustee {
        &desc.trustees
    } else {
        &desc.clients
    };
    if !list.contains(&own) {
        bail!(
            "{}: {role} {} ({}) is not a {role} of group version {} ({}): refused",
            key_file.display(),
            keys.name,
            own.fingerprint(),
            desc.version,
            desc.fingerprint()
        );
    }
    Ok((desc, keys))
}

/// Logs an established epoch, keeps its file beside the node's key (with the node's own
/// pseudonym key and slot, for a client) and returns the group it runs as.
fn settle(
    desc: &GroupDesc,
    setup: &Setup,
    established: &Established,
    slots: Vec<Key>,
    members: &Members,
    (pseudonym, open): (Option<(Key, usize)>, Option<&[u8]>),
    key_file: &Path,
) -> Result<Group> {
    let names = |list: &[crate::config::keys::PublicKeys], at: &[usize]| -> Vec<String> {
        (0..list.len())
            .filter(|i| !at.contains(i))
            .map(|i| list[i].name.clone())
            .collect()
    };
    let (absent, convicted) = (
        names(&desc.clients, &members.clients),
        names(&desc.trustees, &members.trustees),
    );
    info!(
        "setup: epoch {} established in attempt {}: {} slots, {} trustees, list {}; every \
         proof and signature checked{}{}",
        established.epoch,
        established.attempt,
        established.slots,
        members.trustees.len(),
        hex::encode(&established.list[..8]),
        if absent.is_empty() {
            String::new()
        } else {
            format!(
                "; without clients {} (no slot this epoch)",
                absent.join(", ")
            )
        },
        if convicted.is_empty() {
            String::new()
        } else {
            format!("; without convicted trustees {}", convicted.join(", "))
        }
    );
    let session_id = session::session_id(&setup.digest, established);
    let mut file = EpochFile::new(desc, session_id, &slots, members, pseudonym);
    file.open = open.map(hex::encode);
    file.save(key_file)?;
    EpochGroup {
        desc,
        group_id: session::group_id(&setup.digest),
        session_id,
        slots,
        clients: members.clients.clone(),
        trustees: members.trustees.clone(),
    }
    .group()
}

/// What a node keeps of an established epoch beside its key file (`FILE.epoch`, private),
/// so that a restart within the epoch keeps its slot: the group version, the epoch's
/// session id, the pseudonym list and, for a client, its own pseudonym secret and slot.
#[derive(Serialize, Deserialize)]
struct EpochFile {
    format: String,
    group: String,
    epoch: u64,
    session_id: String,
    slots: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pseudonym: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slot: Option<usize>,
    /// The epoch's clients (indices into the version's), when not every client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clients: Option<Vec<usize>>,
    /// The epoch's trustees, when not every trustee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trustees: Option<Vec<usize>>,
    /// The relay's: the `Open` of the attempt that established the epoch (hex), shown to
    /// the clients it left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open: Option<String>,
}

const EPOCH_FORMAT: &str = "dissent-epoch/1";

/// The group of the epoch saved beside `key_file` for the valid version of the group
/// folder `dir` (public parts only: what `blame verify` checks evidence with).
pub fn saved_group(dir: &Path, key_file: &Path) -> Result<Group> {
    let desc = crate::config::group::load_signed(dir)?;
    let Some(saved) = EpochFile::load(key_file, &desc)? else {
        bail!(
            "{}: no saved epoch of this group version beside it",
            key_file.display()
        );
    };
    saved.group(&desc)
}

impl EpochFile {
    fn path(key_file: &Path) -> PathBuf {
        let mut name = key_file.as_os_str().to_owned();
        name.push(".epoch");
        PathBuf::from(name)
    }

    fn new(
        desc: &GroupDesc,
        session_id: [u8; 16],
        slots: &[Key],
        members: &Members,
        pseudonym: Option<(Key, usize)>,
    ) -> EpochFile {
        let all = |at: &[usize], n: usize| (at.len() != n).then(|| at.to_vec());
        EpochFile {
            clients: all(&members.clients, desc.clients.len()),
            trustees: all(&members.trustees, desc.trustees.len()),
            open: None,
            format: EPOCH_FORMAT.to_string(),
            group: desc.fingerprint(),
            epoch: epoch_of(desc),
            session_id: hex::encode(session_id),
            slots: slots.iter().map(hex::encode).collect(),
            pseudonym: pseudonym.map(|(k, _)| hex::encode(k)),
            slot: pseudonym.map(|(_, s)| s),
        }
    }

    fn save(&self, key_file: &Path) -> Result<()> {
        crate::config::replace_json(&Self::path(key_file), self, Access::Private)
    }

    /// The saved epoch of this group version, if there is one.
    fn load(key_file: &Path, desc: &GroupDesc) -> Result<Option<EpochFile>> {
        let path = Self::path(key_file);
        if !path.exists() {
            return Ok(None);
        }
        let saved: EpochFile = crate::config::read_private_json(&path)?;
        if saved.format != EPOCH_FORMAT
            || saved.group != desc.fingerprint()
            || saved.epoch != epoch_of(desc)
        {
            info!(
                "setup: {} is of another group version; setting up anew",
                path.display()
            );
            return Ok(None);
        }
        info!(
            "setup: epoch {} of this group is established already ({}): rejoining it",
            saved.epoch,
            path.display()
        );
        Ok(Some(saved))
    }

    fn pseudonym(&self) -> Result<Option<Key>> {
        self.pseudonym
            .as_deref()
            .map(|h| crate::config::parse_hex(Path::new("epoch file"), "pseudonym", h))
            .transpose()
    }

    fn members(&self, desc: &GroupDesc) -> Members {
        Members {
            clients: self
                .clients
                .clone()
                .unwrap_or_else(|| (0..desc.clients.len()).collect()),
            trustees: self
                .trustees
                .clone()
                .unwrap_or_else(|| (0..desc.trustees.len()).collect()),
        }
    }

    /// The clients the saved epoch left out, as the relay serves them.
    fn absent(&self, desc: &GroupDesc, setup: &Setup) -> Result<Option<Absent>> {
        let Some(open) = &self.open else {
            return Ok(None);
        };
        let open = hex::decode(open).map_err(|_| anyhow!("epoch file: open: not hex"))?;
        Ok(Absent::new(
            desc,
            setup.link_ids(),
            &self.members(desc).clients,
            &open,
        ))
    }

    fn group(&self, desc: &GroupDesc) -> Result<Group> {
        let members = self.members(desc);
        let at = Path::new("epoch file");
        let slots = self
            .slots
            .iter()
            .map(|h| crate::config::parse_hex(at, "slots", h))
            .collect::<Result<Vec<Key>>>()?;
        EpochGroup {
            desc,
            group_id: session::group_id(&desc.digest()),
            session_id: crate::config::parse_hex(at, "session_id", &self.session_id)?,
            slots,
            clients: members.clients,
            trustees: members.trustees,
        }
        .group()
    }
}

/// What the setup waits for, naming the node by its name in the group.
fn awaited(desc: &GroupDesc, waiting: dissent_core::epoch::Waiting) -> String {
    use dissent_core::epoch::Waiting;
    let trustee = |j: u8| {
        desc.trustees
            .get(usize::from(j))
            .map_or_else(|| format!("trustee {j}"), |t| format!("trustee {}", t.name))
    };
    match waiting {
        Waiting::Open => "the relay's Open".to_string(),
        Waiting::Key(j) => format!("the key of {}", trustee(j)),
        Waiting::Submit(i) => desc.clients.get(usize::from(i)).map_or_else(
            || format!("the submission of client {i}"),
            |c| format!("the submission of client {}", c.name),
        ),
        Waiting::Chunk(j, stage) | Waiting::Seal(j, stage) => {
            format!("the {stage:?} stage of {}", trustee(j))
        }
        Waiting::Record(j) => format!("the epoch record of {}", trustee(j)),
        Waiting::Nothing => "nothing".to_string(),
    }
}

/// Logs what a participant's departure did to the setup (a stop is reported by the caller,
/// from the relay's failure).
fn departed(departure: Departure, why: &str) {
    match departure {
        Departure::Ignored => {}
        Departure::Restart { remaining } => info!(
            "setup: {}a new attempt starts over the {remaining} participants that remain",
            if why.is_empty() {
                String::new()
            } else {
                format!("{why}: ")
            }
        ),
        Departure::Stop(f) => warn!(
            "setup: {}{f}",
            if why.is_empty() {
                String::new()
            } else {
                format!("{why}: ")
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::admission::{Refusal, Replays};
    use dissent_core::crypto::public_key;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_replayed_setup_handshake_is_refused() {
        let (node, relay) = ([3u8; 32], [4u8; 32]);
        let ids = [([1u8; 16], [2u8; 16])];
        let replays = Replays::new(Duration::from_secs(60), 16);
        // The bytes a member's handshake request takes on the wire, as an eavesdropper
        // records them.
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let (mut br, _bw) = tokio::io::split(b);
        let relay_pub = public_key(&relay);
        let dialing = tokio::spawn(async move {
            let _ = crate::link::connect(ar, aw, &node, &relay_pub, &[1; 16], &[2; 16]).await;
        });
        let mut len = [0u8; 2];
        br.read_exact(&mut len).await.unwrap();
        let mut request = vec![0u8; usize::from(u16::from_be_bytes(len))];
        br.read_exact(&mut request).await.unwrap();
        dialing.abort();
        let send = |bytes: Vec<u8>| async move {
            let (a, b) = tokio::io::duplex(1 << 16);
            let (_ar, mut aw) = tokio::io::split(a);
            let (br, bw) = tokio::io::split(b);
            aw.write_all(&bytes).await.unwrap();
            (br, bw, _ar, aw)
        };
        let wire = [len.to_vec(), request].concat();

        // The first time it admits the member; the same bytes again are refused as a
        // replay, and the member's key is never looked up.
        let (br, bw, _keep_r, _keep_w) = send(wire.clone()).await;
        let first = accept_setup(br, bw, &relay, &ids, &replays, |n, k| Some((n, *k))).await;
        assert_eq!(first.unwrap().0, (0, public_key(&node)));
        let (br, bw, _keep_r, _keep_w) = send(wire).await;
        let mut looked_up = false;
        let again = accept_setup(br, bw, &relay, &ids, &replays, |_, _| {
            looked_up = true;
            Some(())
        })
        .await;
        let err = again.err().unwrap();
        assert!(
            err.to_string().contains(&Refusal::Replayed.to_string()),
            "{err:#}"
        );
        assert!(!looked_up);
        assert_eq!(replays.refused(), 1);
    }
}
