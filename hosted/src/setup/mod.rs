//! The epoch setup of a group with no dealer, over the relay: the shell around
//! `dissent_core::epoch`'s state machines.
//!
//! Before a node of a group folder (`group.json`) runs its DC-net role, it runs the setup on
//! a *setup link*: a Noise link like the DC-net's, under the setup session id
//! ([`dissent_core::epoch::session::setup_session`]), whose frames
//! (`Length (u32 BE) ‖ Body`) each carry one setup message of docs/protocol.md ("Epoch
//! setup"), chunks as the core cuts them. The relay ([`relay()`]) gathers the members (every
//! one, or every trustee and the group's minimum of clients and then a quiet moment), then
//! runs `SetupRelay`: it forwards each trustee's frame to every node (the author included)
//! and broadcasts its own (`Open`, the collected submissions); departures (a link that
//! drops, a submission that does not come) go to the core, which opens a new attempt or
//! stops. Trustees ([`node()`]) run `SetupTrustee`, clients `SetupClient`; a node whose link
//! drops links again. Once every trustee's epoch record is in, each node derives the
//! epoch's group ([`crate::config::group::EpochGroup`]) from its members (the participants
//! and the trustees not convicted): slots in the shuffled order, pad keys from the nodes'
//! own DH keys salted by the epoch's session id. The relay closes the setup links and the
//! normal DC-net starts with the derived group. A client the epoch left out is shown the
//! `Open` that left it out, waits for the next epoch ([`LeftOut`]) and takes part in its
//! setup.
//!
//! A trustee with no epoch of its version kept first asks the relay for it on a rejoin link
//! ([`take_back`], `rejoin.rs`): a relay serving the established epoch gives back its
//! records and pseudonym list, which the trustee takes only with its own signature on them
//! (`dissent_core::epoch::rejoin`); a relay setting the version up closes the link, and
//! the trustee takes part in the setup.
//!
//! Every step is logged; a failure names the node (trustee or client, by name) and why.
//!
//! Switches (docs/protocol.md §12, "Switches"): the relay's [`Watch`] reads the group
//! folder again on SIGHUP and every [`switches::REREAD`] and yields a valid next version
//! (`SwitchFrom`); the relay shell ends the epoch (`Goodbye{Switch}`) and hands the nodes
//! of the epoch that ended ([`Leaving`]) to [`relay()`] and then to the next epoch's DC-net:
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

mod node;
mod rejoin;
mod relay;
mod switches;

#[cfg(feature = "disruptor")]
pub use node::cheat;
pub use node::{node, LeftOut};
pub use rejoin::take_back;
pub use relay::relay;

use rejoin::Rejoining;
use switches::WAITING;
pub use switches::{fetch_next, Absent, Fetched, Leaver, Leaving, Watch};

/// Longest wait for the next setup frame before the setup is given up.
pub(super) const STALL: Duration = Duration::from_secs(120);
/// Once every trustee and the group's minimum of clients are linked, how long the relay
/// waits for anyone new before it opens the setup without the absent clients.
pub const GATHER_QUIET: Duration = Duration::from_secs(10);
/// How long the relay waits for the trustee whose turn it is (its key, each chunk of a
/// stage, its record), or at gathering for a trustee that has not linked once the others
/// and the clients have, before it leaves it out as silent, on its own word: only in a
/// group whose `min_trustees` is at least 2 and while that many remain (else the setup
/// stops, naming it). The bound is this plus [`TRUSTEE_WAIT_PER_CLIENT`] per client of
/// the version ([`trustee_wait`]): a trustee checks the stage before its own and then
/// shuffles before its first chunk. A group with min_trustees 1 keeps waiting up to
/// [`STALL`] for any frame, and then stops naming what it waited for.
pub const TRUSTEE_WAIT: Duration = Duration::from_secs(60);
/// What the bound on a trustee's turn grows by per client of the version.
pub const TRUSTEE_WAIT_PER_CLIENT: Duration = Duration::from_millis(50);

/// The bound on a trustee's turn in a version of `clients` clients: `base` (the relay's
/// `--trustee-wait-secs`, [`TRUSTEE_WAIT`] by default) and [`TRUSTEE_WAIT_PER_CLIENT`] per
/// client.
pub fn trustee_wait(base: Duration, clients: usize) -> Duration {
    base + TRUSTEE_WAIT_PER_CLIENT.saturating_mul(u32::try_from(clients).unwrap_or(u32::MAX))
}

/// What the relay's command line sets for a group's setup.
#[derive(Debug, Clone, Copy)]
pub struct RelayPolicy {
    /// Fewest clients a setup runs with (the group's minimum, or a flag's higher one).
    pub min_clients: u16,
    /// The base of the bound on a trustee's turn ([`trustee_wait`]).
    pub trustee_wait: Duration,
}
/// How long the relay waits for the participants' submissions once every trustee's key is
/// in, before it opens a new attempt without those that did not submit.
pub const SUBMIT_WAIT: Duration = Duration::from_secs(30);
/// Frames a setup link may queue, at the least: a group's queue holds two whole attempts
/// (a conviction's frames shown first, then the attempt under way; [`queue_len`]).
const QUEUE: usize = 4096;

/// Frames a setup link of `config`'s group may queue: two whole attempts, at least
/// [`QUEUE`]. A frame past it is not queued, and the node then misses it (its setup stops
/// or times out naming what it waited for); the relay logs that it dropped one.
fn queue_len(config: &dissent_core::epoch::SetupConfig<'_>) -> usize {
    QUEUE.max(2 * config.frames_per_attempt() + 64)
}

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

/// What a node settles besides the epoch: a client's own pseudonym secret and slot, the
/// relay's `Open` that established it and the epoch trustees' records, and the trustees
/// left out as silent or absent.
struct Settled<'a> {
    pseudonym: Option<(Key, usize)>,
    open: Option<&'a [u8]>,
    records: &'a [Vec<u8>],
    silenced: u16,
}

/// Logs an established epoch, keeps its file beside the node's key (with the node's own
/// pseudonym key and slot, for a client) and returns the group it runs as.
fn settle(
    desc: &GroupDesc,
    setup: &Setup,
    established: &Established,
    slots: Vec<Key>,
    members: &Members,
    Settled {
        pseudonym,
        open,
        records,
        silenced,
    }: Settled<'_>,
    key_file: &Path,
) -> Result<Group> {
    let names = |list: &[crate::config::keys::PublicKeys], at: &[usize]| -> Vec<String> {
        (0..list.len())
            .filter(|i| !at.contains(i))
            .map(|i| list[i].name.clone())
            .collect()
    };
    let silent: Vec<usize> = (0..desc.trustees.len())
        .filter(|&j| j < 16 && silenced & (1 << j) != 0)
        .collect();
    let kept_or_silent: Vec<usize> = members.trustees.iter().chain(&silent).copied().collect();
    let (absent, convicted) = (
        names(&desc.clients, &members.clients),
        names(&desc.trustees, &kept_or_silent),
    );
    let silent: Vec<String> = silent
        .iter()
        .map(|&j| desc.trustees[j].name.clone())
        .collect();
    info!(
        "setup: epoch {} established in attempt {}: {} slots, {} trustees, list {}; every \
         proof and signature checked{}{}{}",
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
        },
        if silent.is_empty() {
            String::new()
        } else {
            format!(
                "; without trustees {} left out as silent or absent, on the relay's word",
                silent.join(", ")
            )
        }
    );
    let session_id = session::session_id(&setup.digest, established);
    let mut file = EpochFile::new(desc, session_id, &slots, members, pseudonym);
    file.open = open.map(hex::encode);
    if !records.is_empty() {
        file.records = Some(records.iter().map(hex::encode).collect());
    }
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

/// The epoch kept beside a device trustee's `key_file` (`dissent qemu`), checked as a hosted
/// trustee checks its own ([`node()`]): its group and the trustee's secrets when it is an
/// epoch of the version `desc` with the trustee in it; `None` when it must set up anew.
#[cfg(feature = "tools")]
pub fn rejoin_trustee(
    desc: &GroupDesc,
    keys: &PrivateKeys,
    key_file: &Path,
) -> Result<Option<(Group, NodeSecrets)>> {
    let index = desc.trustee_index(keys)?;
    node::saved(desc, keys, key_file, Role::Trustee(index))
}

/// Keeps beside a device trustee's `key_file` the epoch it established, as a hosted
/// trustee keeps its own: its session id and pseudonym keys in slot order, as the device
/// wrote them into its DC-net blob (`dissent qemu` reads them back from the device, never
/// from the relay). Every member of the version is the epoch's: the device's setup image
/// serves no other epoch. Returns the file's path.
#[cfg(feature = "tools")]
pub fn keep_device_epoch(
    desc: &GroupDesc,
    key_file: &Path,
    session_id: [u8; 16],
    slots: &[Key],
) -> Result<PathBuf> {
    if slots.len() != desc.clients.len() {
        bail!(
            "{} pseudonym keys for the {} clients of group version {}",
            slots.len(),
            desc.clients.len(),
            desc.version
        );
    }
    let members = Members {
        clients: (0..desc.clients.len()).collect(),
        trustees: (0..desc.trustees.len()).collect(),
    };
    EpochFile::new(desc, session_id, slots, &members, None).save(key_file)?;
    Ok(EpochFile::path(key_file))
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
    /// The relay's: every epoch trustee's `Record` (hex), served with `open` and the list
    /// on rejoin links to a trustee that lost the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    records: Option<Vec<String>>,
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
            records: None,
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

    /// What the relay serves on rejoin links for the saved epoch, if it kept its records.
    fn rejoining(&self, desc: &GroupDesc) -> Result<Option<Rejoining>> {
        let (Some(open), Some(records)) = (&self.open, &self.records) else {
            return Ok(None);
        };
        let bad = |what: &str| anyhow!("epoch file: {what}: not hex");
        let open = hex::decode(open).map_err(|_| bad("open"))?;
        let records = records
            .iter()
            .map(|r| hex::decode(r).map_err(|_| bad("records")))
            .collect::<Result<Vec<Vec<u8>>>>()?;
        Ok(Rejoining::new(
            desc,
            &self.members(desc).trustees,
            &open,
            &records,
            &self.slots()?,
        ))
    }

    fn slots(&self) -> Result<Vec<Key>> {
        let at = Path::new("epoch file");
        self.slots
            .iter()
            .map(|h| crate::config::parse_hex(at, "slots", h))
            .collect()
    }

    fn group(&self, desc: &GroupDesc) -> Result<Group> {
        let members = self.members(desc);
        let at = Path::new("epoch file");
        let slots = self.slots()?;
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

/// A trustee's awaited step, in words.
fn awaited_step(desc: &GroupDesc, waiting: dissent_core::epoch::Waiting) -> String {
    let full = awaited(desc, waiting);
    match full.find(" of trustee") {
        Some(at) => full[..at].to_string(),
        None => full,
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
