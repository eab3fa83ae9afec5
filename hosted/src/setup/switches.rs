//! Switches on the hosted side: the relay's watch over its group folder, serving the next
//! version on switch links (during the next version's setup and its DC-net alike), and a
//! node fetching and checking it.
//!
//! The switch rule and the switch link's messages are the core's
//! (`dissent_core::epoch::switch`); this module only reads files and moves frames.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use dissent_core::backoff::BackoffConfig;
use dissent_core::epoch::session;
use dissent_core::epoch::switch::{self, Received, SwitchMessage, UpdateReceiver, Verdict};
use dissent_core::wire::{GoodbyeReason, Message};
use rand::rngs::OsRng;
use rand::RngCore;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{epoch_of, framed, Rejoining, STALL};
use crate::config::group::GroupDesc;
use crate::config::keys::PrivateKeys;
use crate::link::dial::{Dialer, LinkKeys};
use crate::link::LinkWriter;

/// A switch the relay announced: the version that ran and the next one, as its file.
#[derive(Clone)]
pub struct SwitchFrom {
    /// The version of the epoch that ended.
    pub old: GroupDesc,
    /// The next version.
    pub next: GroupDesc,
    /// The next version's `group.json`, as served to the nodes.
    pub bytes: Vec<u8>,
    /// The (group id, session id) of the epoch that ended: a member that was away when the
    /// switch was announced and dials that epoch's DC-net is told `Goodbye{Switch}`.
    pub ended: Option<([u8; 16], [u8; 16])>,
    /// When the relay took the version (the switch's pause counts from here).
    pub found: std::time::Instant,
}

/// What an epoch's relay serves besides its members, from its setup until the next switch:
///
/// - the nodes of the epoch that ended at the switch into this one (`from`), through this
///   version's setup and its whole DC-net: a node that fetches this version on a switch link
///   gets it (`Removed` first if it leaves the node out), and a node that dials the ended
///   epoch's DC-net (it was away when the switch was announced), or its setup (a client
///   that epoch left out), is told `Goodbye{Switch}`. A node that comes back only after two switches is refused: it no longer holds a
///   version the relay can take it from;
/// - the clients this epoch's setup went on without ([`Absent`]): one that dials the setup
///   is sent the `Open` of the attempt that established the epoch (it sees that it is no
///   participant), and its link is held until the epoch ends, when it is told
///   `Goodbye{Switch}`: it then fetches the next version and takes part in its setup;
/// - the epoch's trustees on rejoin links ([`Rejoining`]): one that lost the epoch is sent
///   its records and pseudonym list, and its link closed.
pub struct Leaving {
    from: Option<SwitchFrom>,
    absent: Option<Absent>,
    rejoin: Option<Rejoining>,
    /// The (group id, session id) pairs served, and which part each is.
    ids: Vec<([u8; 16], [u8; 16])>,
    kinds: Vec<Kind>,
    /// Every node of the version that ended: its name and whether the next leaves it out.
    nodes: HashMap<[u8; 32], (String, bool)>,
    /// Whether this epoch ended at a switch ([`Leaving::end`]), and a count bumped at each
    /// held link (so older held links of the same client see they are superseded).
    ended: tokio::sync::watch::Sender<(bool, u64)>,
    /// The newest held link of each absent client, by link key.
    held: std::sync::Arc<std::sync::Mutex<HashMap<[u8; 32], u64>>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Switch,
    Ended,
    Absent,
    Rejoin,
}

/// The clients an epoch's setup went on without, and the `Open` they are shown.
pub struct Absent {
    /// This epoch's setup link (group id, session id).
    ids: ([u8; 16], [u8; 16]),
    /// Link key → name of each client with no slot this epoch.
    clients: HashMap<[u8; 32], String>,
    /// The `Open` of the attempt that established the epoch, framed.
    open: Bytes,
}

impl Absent {
    /// The clients of `desc` not among `participants` (indices into `desc.clients`).
    pub fn new(
        desc: &GroupDesc,
        ids: ([u8; 16], [u8; 16]),
        participants: &[usize],
        open: &[u8],
    ) -> Option<Absent> {
        let clients: HashMap<[u8; 32], String> = desc
            .clients
            .iter()
            .enumerate()
            .filter(|(i, _)| !participants.contains(i))
            .map(|(_, c)| (c.link, c.name.clone()))
            .collect();
        if clients.is_empty() || open.is_empty() {
            return None;
        }
        Some(Absent {
            ids,
            clients,
            open: framed(open),
        })
    }
}

/// A node of the epoch that ended, or a client absent from this one, as [`Leaving::admit`]
/// took it.
pub enum Leaver {
    /// It fetches the next version on a switch link.
    Switch { name: String, removed: bool },
    /// It dialed the ended epoch's DC-net: it missed the announcement.
    Late(String),
    /// A client this epoch's setup went on without.
    Absent { name: String, key: [u8; 32] },
    /// A trustee of this epoch that lost it, on a rejoin link.
    Rejoin(String),
}

impl Leaving {
    /// The nodes of `from.old`, served the switch to `from.next`.
    pub fn new(from: SwitchFrom) -> Self {
        Self::with(Some(from), None, None)
    }

    /// What the epoch's DC-net serves: the switch into it (`from`), the clients its setup
    /// went on without (`absent`), its trustees' rejoin links (`rejoin`); `None` when none.
    pub(super) fn serving(
        from: Option<std::sync::Arc<Leaving>>,
        absent: Option<Absent>,
        rejoin: Option<Rejoining>,
    ) -> Option<std::sync::Arc<Leaving>> {
        if absent.is_none() && rejoin.is_none() {
            return from;
        }
        let from = from.and_then(|l| l.from.clone());
        Some(std::sync::Arc::new(Self::with(from, absent, rejoin)))
    }

    fn with(from: Option<SwitchFrom>, absent: Option<Absent>, rejoin: Option<Rejoining>) -> Self {
        let mut ids = Vec::new();
        let mut kinds = Vec::new();
        let mut nodes = HashMap::new();
        if let Some(from) = &from {
            let old = from.old.digest();
            ids.push((
                session::group_id(&old),
                session::switch_session(&old, epoch_of(&from.old)),
            ));
            kinds.push(Kind::Switch);
            if let Some(ended) = from.ended {
                ids.push(ended);
                kinds.push(Kind::Ended);
            }
            // A client the ended epoch left out dials its setup link: told the same.
            ids.push((
                session::group_id(&old),
                session::setup_session(&old, epoch_of(&from.old)),
            ));
            kinds.push(Kind::Ended);
            for k in from.old.trustees.iter().chain(&from.old.clients) {
                let removed = !from.next.trustees.contains(k) && !from.next.clients.contains(k);
                nodes.insert(k.link, (format!("{} {}", k.role, k.name), removed));
            }
        }
        if let Some(a) = &absent {
            ids.push(a.ids);
            kinds.push(Kind::Absent);
        }
        if let Some(r) = &rejoin {
            ids.push(r.ids);
            kinds.push(Kind::Rejoin);
        }
        let (ended, _) = tokio::sync::watch::channel((false, 0));
        Leaving {
            from,
            absent,
            rejoin,
            ids,
            kinds,
            nodes,
            ended,
            held: std::sync::Arc::new(std::sync::Mutex::new(HashMap::new())),
        }
    }

    /// The (group id, session id) pairs a leaving node's handshake may be under.
    pub fn ids(&self) -> &[([u8; 16], [u8; 16])] {
        &self.ids
    }

    /// When the relay took the version it switched to (the switch's pause counts from
    /// here); `None` when this epoch did not start with a switch.
    pub fn found(&self) -> Option<std::time::Instant> {
        self.from.as_ref().map(|f| f.found)
    }

    /// This epoch ends at a switch: the absent clients held are told so.
    pub fn end(&self) {
        self.ended.send_modify(|(over, _)| *over = true);
    }

    /// The node with link key `key` whose handshake matched `ids()[n]`, if it is one this
    /// part serves.
    pub fn admit(&self, n: usize, key: &[u8; 32]) -> Option<Leaver> {
        match self.kinds.get(n)? {
            Kind::Switch | Kind::Ended => {
                let (name, removed) = self.nodes.get(key)?;
                Some(if self.kinds.get(n) == Some(&Kind::Switch) {
                    Leaver::Switch {
                        name: name.clone(),
                        removed: *removed,
                    }
                } else {
                    Leaver::Late(name.clone())
                })
            }
            Kind::Absent => {
                let name = self.absent.as_ref()?.clients.get(key)?;
                Some(Leaver::Absent {
                    name: name.clone(),
                    key: *key,
                })
            }
            Kind::Rejoin => self.rejoin.as_ref()?.admit(key).map(Leaver::Rejoin),
        }
    }

    /// Serves an admitted leaving node on its link, then closes it. An absent client's
    /// link is held by a task of its own (returned from here at once, so the listener's
    /// admission deadlines do not close it) until the epoch ends or the client links again.
    pub async fn serve<W>(&self, who: Leaver, writer: LinkWriter<W>)
    where
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(super::QUEUE);
        match who {
            Leaver::Switch { name, removed } => {
                let Some(from) = &self.from else { return };
                let serving = serve_switch(from, &name, removed, tx);
                let (served, _) = tokio::join!(serving, writer.run(rx));
                if let Err(e) = served {
                    warn!("switch: cannot serve {name}: {e}");
                }
            }
            Leaver::Rejoin(name) => {
                let Some(rejoin) = &self.rejoin else { return };
                let (served, _) = tokio::join!(
                    async move {
                        rejoin.serve(&name, tx).await;
                    },
                    writer.run(rx)
                );
                served
            }
            Leaver::Late(name) => {
                if let Some(goodbye) = goodbye_switch() {
                    let _ = tx.send(goodbye).await;
                    drop(tx);
                    let _ = writer.run(rx).await;
                    info!("switch: {name} dialed the epoch that ended; told it of the switch");
                }
            }
            Leaver::Absent { name, key } => {
                let Some(absent) = &self.absent else { return };
                // One held link per client: a newer one (it dialed again) supersedes it.
                let mine = {
                    let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                    let g = held.entry(key).or_insert(0);
                    *g += 1;
                    *g
                };
                self.ended.send_modify(|(_, bumps)| *bumps += 1);
                let mut ended = self.ended.subscribe();
                let held = self.held.clone();
                let open = absent.open.clone();
                let holding = async move {
                    let _ = tx.send(open).await;
                    info!(
                        "client {name} linked: it has no slot this epoch (absent when its setup \
                         opened); told so, and held until the next epoch"
                    );
                    loop {
                        let (over, _) = *ended.borrow_and_update();
                        if over {
                            if let Some(goodbye) = goodbye_switch() {
                                let _ = tx.send(goodbye).await;
                            }
                            return;
                        }
                        let current = held
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get(&key)
                            .copied();
                        if current != Some(mine) || ended.changed().await.is_err() {
                            return;
                        }
                    }
                };
                tokio::spawn(async move {
                    let writing = writer.run(rx);
                    tokio::pin!(writing);
                    tokio::select! {
                        _ = &mut writing => return,
                        () = holding => {}
                    }
                    let _ = writing.await;
                });
            }
        }
    }
}

/// A `Goodbye{Switch}` frame.
fn goodbye_switch() -> Option<Bytes> {
    let mut frame = [0u8; 16];
    let goodbye = Message::Goodbye {
        reason: GoodbyeReason::Switch,
    };
    let n = goodbye.emit_frame(&mut frame).ok()?;
    Some(Bytes::copy_from_slice(&frame[..n]))
}

/// Serves the next version on a switch link: `Removed` first to a member it leaves out,
/// then the description in `Update` chunks; then the link is closed (by dropping `tx`).
async fn serve_switch(
    from: &SwitchFrom,
    name: &str,
    removed: bool,
    tx: mpsc::Sender<Bytes>,
) -> Result<()> {
    let version = from.next.version;
    let digest = from.next.digest();
    let mut buf = vec![0u8; switch::UPDATE_HEADER_LEN + switch::MAX_UPDATE_DATA];
    if removed {
        let n = SwitchMessage::Removed { version, digest }
            .emit(&mut buf)
            .map_err(|e| anyhow!("{e:?}"))?;
        tx.send(framed(&buf[..n])).await?;
        info!("switch: told {name} that version {version} leaves it out; its keys are refused");
    }
    let mut offset = 0;
    while let Some(m) = switch::update_at(version, digest, &from.bytes, offset) {
        let n = m.emit(&mut buf).map_err(|e| anyhow!("{e:?}"))?;
        tx.send(framed(&buf[..n])).await?;
        offset += switch::MAX_UPDATE_DATA;
    }
    if !removed {
        info!("switch: sent version {version} to {name}");
    }
    Ok(())
}

/// How a node redials while it waits for the relay's setup or switch link.
pub(super) const WAITING: BackoffConfig = BackoffConfig {
    initial: dissent_core::Duration::from_millis(100),
    max_delay: dissent_core::Duration::from_millis(1_000),
    max_refused_delay: dissent_core::Duration::from_millis(1_000),
    refusals: 3,
    stable: dissent_core::Duration::from_millis(10_000),
};

/// Most bytes of a group description a node takes from the relay.
const MAX_DESCRIPTION: usize = 16 << 20;

/// What the relay served a node of a running epoch at a switch.
pub enum Fetched {
    /// The next version, checked, and its `group.json` bytes: this node is a member of it.
    Next(GroupDesc, Vec<u8>),
    /// The next version (checked) leaves this node out.
    Removed(GroupDesc),
}

/// A node's side of a switch: after `Goodbye{Switch}`, fetches the next version of the
/// group running `desc` from the relay on a switch link and checks it (newer, signed by
/// every trustee of both versions, the digest the relay announced), naming why it refuses.
pub async fn fetch_next(desc: &GroupDesc, keys: &PrivateKeys, relay_addr: &str) -> Result<Fetched> {
    let Some(relay_keys) = &desc.relay else {
        bail!("the group has no relay key");
    };
    let digest = desc.digest();
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let mut dialer = Dialer::with_backoff(
        relay_addr.to_string(),
        LinkKeys {
            own: keys.link,
            relay: relay_keys.link,
            group_id: session::group_id(&digest),
            session_id: session::switch_session(&digest, epoch_of(desc)),
        },
        seed,
        false,
        WAITING,
    );
    info!(
        "switch: fetching the version after {} from relay {relay_addr}",
        desc.version
    );
    let mut link = tokio::time::timeout(STALL, dialer.dial())
        .await
        .map_err(|_| {
            anyhow!(
                "switch: the relay served no switch link for {} s",
                STALL.as_secs()
            )
        })?;
    let mut rx = UpdateReceiver::new(desc.version, vec![0u8; MAX_DESCRIPTION]);
    let mut told_removed = false;
    loop {
        let body = match tokio::time::timeout(STALL, link.frames.next()).await {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => {
                bail!("switch: the relay closed the switch link before the whole description")
            }
            Ok(Err(e)) => bail!("switch: the switch link failed: {e}"),
            Err(_) => bail!("switch: the relay sent nothing for {} s", STALL.as_secs()),
        };
        match rx.receive(&body) {
            Ok(Received::More) => {}
            Ok(Received::Removed) => told_removed = true,
            Ok(Received::Complete) => break,
            Err(e) => bail!("switch refused: {e}"),
        }
    }
    let (version, announced) = rx.announced();
    let bytes = rx.description().unwrap_or_default();
    let next = crate::config::group::from_bytes(Path::new("the relay's update"), bytes)
        .context("switch refused")?;
    if next.version != version || next.digest() != announced {
        bail!("switch refused: {}", switch::Refused::WrongDigest);
    }
    if let Some(why) = desc.switch_refusal(&next) {
        bail!("switch refused: {why}");
    }
    let trustees: Vec<[u8; 32]> = next.trustees.iter().map(|t| t.identity).collect();
    let clients: Vec<[u8; 32]> = next.clients.iter().map(|c| c.identity).collect();
    let candidate = switch::Candidate {
        version: next.version,
        digest: announced,
        trustees: &trustees,
        clients: &clients,
    };
    match switch::verdict(&keys.public().identity, candidate) {
        Verdict::Removed => {
            info!(
                "switch: version {} ({}) leaves {} out{}",
                next.version,
                next.fingerprint(),
                keys.name,
                if told_removed {
                    "; the relay said so too"
                } else {
                    ""
                }
            );
            Ok(Fetched::Removed(next))
        }
        _ => {
            info!(
                "switch: version {} ({}) checked: signed by every trustee of versions {} and {}",
                next.version,
                next.fingerprint(),
                desc.version,
                next.version
            );
            Ok(Fetched::Next(next, bytes.to_vec()))
        }
    }
}

/// The relay's watch over its group folder: on SIGHUP (Unix) and every
/// [`REREAD`], it reads `group.json` again.
pub struct Watch {
    dir: PathBuf,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
    tick: tokio::time::Interval,
    /// The last version found wanting, not to repeat why every tick.
    told: Option<String>,
}

/// How often the relay reads its group folder again without a SIGHUP.
pub const REREAD: Duration = Duration::from_secs(30);

impl Watch {
    /// Watches `dir` (installs the SIGHUP handler on Unix: call it before the setup).
    pub fn new(dir: &Path) -> Result<Watch> {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + REREAD, REREAD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Watch {
            dir: dir.to_path_buf(),
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("cannot watch for SIGHUP")?,
            tick,
            told: None,
        })
    }

    async fn wake(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.hangup.recv() => "on SIGHUP",
                _ = self.tick.tick() => "periodically",
            }
        }
        #[cfg(not(unix))]
        {
            self.tick.tick().await;
            "periodically"
        }
    }

    /// Waits for a valid version after `running`: newer, complete, signed by every
    /// trustee of both. What it finds wanting it logs, naming why, and waits on.
    pub async fn next(&mut self, running: &GroupDesc) -> SwitchFrom {
        loop {
            let why = self.wake().await;
            let path = crate::config::group::group_file(&self.dir);
            let found = std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok((crate::config::group::from_bytes(&path, &b)?, b)));
            let (next, bytes) = match found {
                Ok(x) => x,
                Err(e) => {
                    self.say(format!(
                        "switch: cannot read {} ({why}): {e:#}",
                        path.display()
                    ));
                    continue;
                }
            };
            if next.version == running.version && next.digest() == running.digest() {
                continue;
            }
            let mut problems = next.problems();
            if let Some(why) = running.switch_refusal(&next) {
                problems.push(why);
            }
            if !problems.is_empty() {
                self.say(format!(
                    "switch: {} version {} is not taken ({why}): {}",
                    path.display(),
                    next.version,
                    problems.join("; ")
                ));
                continue;
            }
            self.refused_still_in(&next);
            info!(
                "switch: found version {} ({}) {why}, signed by every trustee of versions {} and {}: \
                 announcing the switch",
                next.version,
                next.fingerprint(),
                running.version,
                next.version
            );
            return SwitchFrom {
                old: running.clone(),
                next,
                bytes,
                ended: None,
                found: std::time::Instant::now(),
            };
        }
    }

    /// Names the clients on the relay's refusal list that `next` still lists: the next
    /// epoch re-forms the buddy groups from its member list, so only a version that takes
    /// them out (`dissent group remove`, signed by the trustees) frees their buddies.
    fn refused_still_in(&self, next: &GroupDesc) {
        let file = crate::relay::refusals::path(&self.dir);
        let Ok(list) = crate::relay::refusals::RefusalList::load(&file) else {
            return;
        };
        for e in &list.refused {
            if let Some(c) = next.clients.iter().find(|c| hex::encode(c.link) == e.key) {
                warn!(
                    "switch: client {} ({}) is on the refusal list ({}) and still a member of \
                     version {}: it stays refused, and its buddy group shares its fate until a \
                     version takes it out (dissent group remove DIR {})",
                    c.name,
                    c.fingerprint(),
                    e.reason,
                    next.version,
                    c.fingerprint()
                );
            }
        }
    }

    fn say(&mut self, line: String) {
        if self.told.as_ref() != Some(&line) {
            warn!("{line}");
            self.told = Some(line);
        }
    }
}
