//! The epoch setup of a group with no dealer, over the relay: the shell around
//! `dissent_core::epoch`'s state machines.
//!
//! Before a node of a group folder (`group.json`) runs its DC-net role, it runs the setup on
//! a *setup link*: a Noise link like the DC-net's, under the setup session id
//! ([`dissent_core::epoch::session::setup_session`]), whose frames
//! (`Length (u32 BE) ‖ Body`) each carry one setup message of docs/protocol.md ("Epoch
//! setup"), chunks as the core cuts them. The relay ([`relay`]) waits until every trustee
//! and every client of the group is linked, then runs `SetupRelay`: it forwards each
//! trustee's frame to every node (the author included) and broadcasts its own (`Open`, the
//! collected submissions). Trustees ([`node`]) run `SetupTrustee`, clients `SetupClient`.
//! Once every trustee's epoch record is in, each node derives the epoch's group
//! ([`crate::config::group::EpochGroup`]): slots in the shuffled order, pad keys from the
//! nodes' own DH keys salted by the epoch's session id. The relay closes the setup links and
//! the normal DC-net starts with the derived group.
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
use dissent_core::epoch::message::MAX_CHUNK_DATA;
use dissent_core::epoch::session;
use dissent_core::epoch::{
    Established, Event, Failure, RelayStep, SetupClient, SetupConfig, SetupRelay, SetupStorage,
    SetupTrustee,
};
use dissent_core::identity::IdentityKey;
use dissent_core::ristretto::shuffle::ProverSlot;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::group::{node_secrets, EpochGroup, GroupDesc};
use crate::config::keys::{KeyRole, PrivateKeys};
use crate::config::{Access, Group, Key, NodeSecrets, Role};
use crate::link::dial::{Dialer, LinkKeys};

mod switches;

use switches::WAITING;
pub use switches::{fetch_next, Fetched, Leaver, Leaving, Watch};

/// Longest wait for the next setup frame before the setup is given up.
pub(super) const STALL: Duration = Duration::from_secs(120);
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
}

impl Setup {
    fn new(desc: &GroupDesc) -> Setup {
        Setup {
            digest: desc.digest(),
            trustees: desc.trustees.iter().map(|k| k.identity).collect(),
            clients: desc.clients.iter().map(|k| k.identity).collect(),
            epoch: epoch_of(desc),
        }
    }

    fn config(&self) -> SetupConfig<'_> {
        SetupConfig {
            group: self.digest,
            epoch: self.epoch,
            trustees: &self.trustees,
            clients: &self.clients,
            // A convicted trustee stops the setup: the DC-net runs with every trustee.
            min_trustees: self.trustees.len(),
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

enum Ev {
    Joined(Who, mpsc::Sender<Bytes>),
    Frame(Who, Bytes),
    Left(Who),
}

/// What a link to the relay's setup listener is.
enum Admitted {
    /// A member of the version being set up, on a setup link.
    Setup(Who),
    /// A node of the epoch that ended, served the switch.
    Leaving(Leaver),
}

/// The relay's part: listens on `listen`, runs the setup with every trustee and client of
/// `desc`, and returns the epoch's group and the address it listened on. After a switch
/// (`from`), the nodes of the epoch that ended fetch `desc` on switch links meanwhile.
pub async fn relay(
    desc: &GroupDesc,
    keys: &PrivateKeys,
    key_file: &Path,
    listen: SocketAddr,
    from: Option<std::sync::Arc<Leaving>>,
) -> Result<(Group, SocketAddr)> {
    let setup = Setup::new(desc);
    if let Some(saved) = EpochFile::load(key_file, desc)? {
        return Ok((saved.group(desc)?, listen));
    }
    let config = setup.config();
    let (group_id, setup_id) = setup.link_ids();
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    info!(
        "setup of epoch {} of group {}: listening on {local}; waiting for {} trustees and {} clients",
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
    let acceptor = tokio::spawn(async move {
        loop {
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
            tokio::spawn(async move {
                let (r, w) = stream.into_split();
                let admitted = crate::link::accept_any(r, w, &relay_key, &ids, |n, k| match n {
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
                        warn!("setup: a link was refused: {e}");
                        return;
                    }
                };
                let (tx, rx) = mpsc::channel(QUEUE);
                if ev_tx.send(Ev::Joined(who, tx)).await.is_err() {
                    return;
                }
                tokio::spawn(writer.run(rx));
                while let Ok(Some(body)) = reader.next().await {
                    if ev_tx.send(Ev::Frame(who, body)).await.is_err() {
                        return;
                    }
                }
                let _ = ev_tx.send(Ev::Left(who)).await;
            });
        }
    });

    let mut links: HashMap<Who, mpsc::Sender<Bytes>> = HashMap::new();
    let all = desc.trustees.len() + desc.clients.len();
    // Gathering: every trustee and every client (each client gets a slot).
    while links.len() < all {
        let ev = tokio::time::timeout(STALL, ev_rx.recv())
            .await
            .map_err(|_| {
                let missing: Vec<String> = desc
                    .trustees
                    .iter()
                    .enumerate()
                    .map(|(j, _)| Who::Trustee(j))
                    .chain((0..desc.clients.len()).map(Who::Client))
                    .filter(|w| !links.contains_key(w))
                    .map(name)
                    .collect();
                anyhow!(
                    "setup: nobody new linked within {} s; missing: {}",
                    STALL.as_secs(),
                    missing.join(", ")
                )
            })?
            .ok_or_else(|| anyhow!("setup: the listener stopped"))?;
        match ev {
            Ev::Joined(w, tx) => {
                links.insert(w, tx);
                info!("setup: {} linked ({}/{all} members)", name(w), links.len());
            }
            Ev::Left(w) => {
                links.remove(&w);
                info!("setup: {} left before the setup started", name(w));
            }
            Ev::Frame(w, _) => warn!("setup: {} sent a frame before the setup started", name(w)),
        }
    }
    let mut participants = vec![0u8; dissent_core::bits::bitmap_len(desc.clients.len())];
    for i in 0..desc.clients.len() {
        participants[i / 8] |= 1 << (i % 8);
    }
    let mut relay = SetupRelay::new(
        config,
        SetupStorage::with_vecs(&config),
        vec![0u8; SetupRelay::<Vec<u8>>::collected_len(&config)],
        &participants,
    )
    .map_err(|e| anyhow!("setup: the group does not fit a setup: {e:?}"))?;
    info!("setup: every member linked; opening epoch {}", setup.epoch);
    let broadcast = |links: &HashMap<Who, mpsc::Sender<Bytes>>, frame: &[u8]| {
        let f = framed(frame);
        for tx in links.values() {
            let _ = tx.try_send(f.clone());
        }
    };
    let mut buf = vec![0u8; dissent_core::epoch::message::CHUNK_HEADER_LEN + MAX_CHUNK_DATA];
    loop {
        while let Some(n) = relay
            .poll_broadcast(&mut buf)
            .map_err(|e| anyhow!("setup: cannot encode a frame: {e:?}"))?
        {
            broadcast(&links, &buf[..n]);
        }
        if relay.established().is_some() {
            break;
        }
        let ev = match tokio::time::timeout(STALL, ev_rx.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => bail!("setup: the listener stopped"),
            Err(_) => bail!(
                "setup: nothing came for {} s while waiting for {}",
                STALL.as_secs(),
                awaited(desc, relay.waiting())
            ),
        };
        match ev {
            Ev::Joined(w, tx) => {
                // A member that lost its link missed frames: it cannot follow this setup.
                warn!("setup: {} linked again during the setup", name(w));
                drop(tx);
            }
            Ev::Left(w) => {
                links.remove(&w);
                warn!("setup: {} left during the setup", name(w));
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
                    warn!(
                        "setup: trustee {}: frame refused: {f}",
                        desc.trustees[j].name
                    )
                }
                RelayStep::Forward => broadcast(&links, &body),
                RelayStep::ForwardEstablished => {
                    broadcast(&links, &body);
                }
                RelayStep::ForwardAndRestart(c) => {
                    broadcast(&links, &body);
                    warn!(
                        "setup: {c} (trustee {}); restarting without it",
                        desc.trustees[usize::from(c.trustee)].name
                    );
                }
                RelayStep::ForwardAndStop(f) => {
                    broadcast(&links, &body);
                    flush(links).await;
                    bail!("setup of epoch {} failed: {f}", setup.epoch);
                }
            },
        }
    }
    acceptor.abort();
    let Some(established) = relay.established() else {
        bail!("setup: not established");
    };
    let slots = slots_of(relay.pseudonyms())?;
    flush(links).await;
    let group = settle(desc, &setup, &established, slots, None, key_file)?;
    Ok((group, local))
}

/// Lets every link's writer send what it holds, then closes the links.
async fn flush(links: HashMap<Who, mpsc::Sender<Bytes>>) {
    let pending: Vec<_> = links.into_values().collect();
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
        if keys.role == KeyRole::Trustee || pseudonym.is_some() {
            return Ok((saved.group(desc)?, node_secrets(keys, role, pseudonym)));
        }
    }
    // The machines borrow the setup for the process's life (one setup per process).
    let setup: &'static Setup = Box::leak(Box::new(Setup::new(desc)));
    let config = setup.config();
    let identity = IdentityKey::from_bytes(&keys.identity);
    let mut machine = match role {
        Role::Trustee(j) => Machine::Trustee(Box::new(
            SetupTrustee::new(
                config,
                j as u8,
                identity,
                SetupStorage::with_vecs(&config),
                vec![ProverSlot::EMPTY; desc.clients.len()],
            )
            .map_err(|e| anyhow!("setup: {e:?}"))?,
        )),
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
                link.sink
                    .flush()
                    .await
                    .context("setup: link to the relay")?;
            }
            let room = link.sink.room();
            if room.len() < f.len() {
                bail!("setup: a frame of {} bytes does not fit the link", f.len());
            }
            room[..f.len()].copy_from_slice(&f);
            link.sink.commit(f.len());
        }
        link.sink
            .flush()
            .await
            .context("setup: link to the relay")?;
        let body = match tokio::time::timeout(STALL, link.frames.next()).await {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => bail!("setup: the relay closed the setup link"),
            Ok(Err(e)) => bail!("setup: the setup link failed: {e}"),
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
            Ok(Event::Restarting(c)) => warn!(
                "setup: {c} (trustee {}); the relay restarts without it",
                desc.trustees
                    .get(usize::from(c.trustee))
                    .map_or("?", |t| t.name.as_str())
            ),
            Ok(Event::Established) => break,
            Err(f) => bail!(
                "setup of epoch {} failed: {}",
                setup.epoch,
                describe(desc, f)
            ),
        }
    }
    let (established, slots, pseudonym) = match &machine {
        Machine::Trustee(t) => (t.established(), slots_of(t.pseudonyms())?, None),
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
            )
        }
    };
    let established = established.ok_or_else(|| anyhow!("setup: not established"))?;
    let group = settle(desc, setup, &established, slots, pseudonym, key_file)?;
    Ok((group, node_secrets(keys, role, pseudonym)))
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
    pseudonym: Option<(Key, usize)>,
    key_file: &Path,
) -> Result<Group> {
    info!(
        "setup: epoch {} established: {} slots, list {}; every proof and signature checked",
        established.epoch,
        established.slots,
        hex::encode(&established.list[..8])
    );
    let session_id = session::session_id(&setup.digest, established);
    EpochFile::new(desc, session_id, &slots, pseudonym).save(key_file)?;
    EpochGroup {
        desc,
        group_id: session::group_id(&setup.digest),
        session_id,
        slots,
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
        pseudonym: Option<(Key, usize)>,
    ) -> EpochFile {
        EpochFile {
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

    fn group(&self, desc: &GroupDesc) -> Result<Group> {
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
