//! The configuration file set: generating it (`dissent config generate`) and loading it.
//!
//! Like the prototype's `config.py -c N -t M DIR`, a configuration directory holds:
//!
//! - `system.json` (public): the group id, the relay's id, address, long-term (link) key
//!   and identity key, the clients' and trustees' ids, long-term X25519 link public keys
//!   and Ed25519 identity public keys, and the cell length.
//! - `session.json` (public): the session id and a per-session pad public key
//!   (Ristretto255) for every client and trustee, in the same order and with the same ids
//!   as `system.json`.
//! - `pseudonym.json` (public): one pseudonym public key (Ristretto255) per client, in a
//!   uniformly shuffled order. A slot's index is its position in this list; the file does
//!   not say which client owns which slot (only the owner, holding the pseudonym private
//!   key, can tell).
//! - `ID.json` for every node, the relay included (private: mode 0600 on Unix, only its
//!   owner in its access list on Windows, see [`crate::platform::private_files`]): the
//!   node's long-term link private key and its identity private key.
//! - `ID.session.json` for every client and trustee (private): the node's session private
//!   key and, for a client, its pseudonym private key.
//!
//! Generation plays the trusted dealer: it knows every private key for a moment, writes each
//! to its owner's file and forgets them. Loading checks that the public files agree with each
//! other ([`Group::load`]) and that a node's private files agree with them ([`load_node`]);
//! every error names the file and the field at fault. Readers are lenient about extra fields.
//!
//! A group with no dealer has none of these: each node's own key files ([`keys`]) and a group
//! folder of public keys signed by every trustee ([`group`]); its epoch setup (`crate::setup`)
//! then gives the roles a [`Group`] and [`NodeSecrets`] of the same shape.

pub mod addr;
pub mod group;
pub mod keys;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use dissent_core::crypto::{pad_public_key, public_key};
use dissent_core::identity::identity_public_key;
use dissent_core::policy::{LogWindow, Policy};
use rand::rngs::OsRng;
use rand::seq::SliceRandom;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::addr::HostPort;
use crate::console;
use crate::platform::private_files::{self, Refused};

/// Number of clients generated when none is given.
pub const DEFAULT_CLIENTS: usize = 10;
/// Number of trustees generated when none is given.
pub const DEFAULT_TRUSTEES: usize = 3;
/// Relay address (`host:port`) written when none is given.
pub const DEFAULT_RELAY: &str = "127.0.0.1:12345";
/// Cell length in bytes written when none is given.
pub const DEFAULT_CELL_LENGTH: usize = 1024;
/// Smallest accepted cell length in bytes.
pub const MIN_CELL_LENGTH: usize = dissent_core::MIN_CELL_LENGTH;
/// Largest accepted cell length in bytes.
pub const MAX_CELL_LENGTH: usize = dissent_core::MAX_CELL_LENGTH;
/// Longest cell an owner may ask for when none is given (bulk transfers use it).
pub const DEFAULT_MAX_CELL_LENGTH: usize = 32 * 1024;
/// Largest accepted number of clients.
pub const MAX_CLIENTS: usize = dissent_core::MAX_CLIENTS;
/// Largest accepted number of trustees.
pub const MAX_TRUSTEES: usize = dissent_core::MAX_TRUSTEES;
/// Slots a hosted relay keeps reserved at once (capped at the group's slots); hosted
/// clients size their schedule table to it, and a relay asking more is refused by them.
pub const RESERVED_SLOTS: u16 = 1024;
/// Fewest clients whose traffic can hide among each other; smaller groups and intervals
/// are refused unless the user asks for them (`--allow-small-anonymity-set`).
pub const MIN_ANONYMITY_SET: usize = 2;

const SYSTEM_FILE: &str = "system.json";
const SESSION_FILE: &str = "session.json";
const PSEUDONYM_FILE: &str = "pseudonym.json";
const RELAY_ID: &str = "relay";
/// Longest accepted node id.
const MAX_ID_LEN: usize = 64;
/// Largest configuration file we read: `system.json` lists every client, about 120 bytes
/// each (1.2 MB at 10,000 clients), so this allows the largest group with room to spare.
const MAX_FILE_LEN: u64 = 256 * MAX_CLIENTS as u64;

/// Who may read a file `generate` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Its owner only (a private key file).
    Private,
    /// Anyone; only its owner writes.
    Public,
}

/// Largest log window a relay holds in memory: 1 GiB.
pub const MAX_LOG_WINDOW_BYTES: u64 = 1 << 30;
/// Longest log window: a day.
pub const MAX_LOG_WINDOW_SECS: u64 = 86_400;

/// The anonymity minimum of a group of `clients` unless asked otherwise: the default (2),
/// or every client of a smaller group (a group of one, accepted as such).
pub fn default_min_anonymity(clients: usize) -> u16 {
    let all = u16::try_from(clients).unwrap_or(u16::MAX).max(1);
    Policy::DEFAULT.min_anonymity.min(all)
}

/// Options for [`generate`].
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Number of clients (`client-0` ...).
    pub clients: usize,
    /// Number of trustees (`trustee-0` ...).
    pub trustees: usize,
    /// Cell length in bytes (a newly reserved slot's cell).
    pub cell_length: usize,
    /// Longest cell a slot owner may ask for.
    pub max_cell_length: usize,
    /// The relay's `host:port`.
    pub relay: String,
    /// Overwrite a previous configuration in a non-empty directory.
    pub force: bool,
    /// The anonymity minimum: 1 up to the number of clients.
    pub min_anonymity: u16,
    /// The log window's time in seconds, 1 to [`MAX_LOG_WINDOW_SECS`].
    pub log_window_secs: u64,
    /// The log window's size in bytes, 1 to [`MAX_LOG_WINDOW_BYTES`].
    pub log_window_bytes: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            clients: DEFAULT_CLIENTS,
            trustees: DEFAULT_TRUSTEES,
            cell_length: DEFAULT_CELL_LENGTH,
            max_cell_length: DEFAULT_MAX_CELL_LENGTH,
            relay: DEFAULT_RELAY.to_string(),
            force: false,
            min_anonymity: Policy::DEFAULT.min_anonymity,
            log_window_secs: Policy::DEFAULT.log_window.time.as_micros() / 1_000_000,
            log_window_bytes: Policy::DEFAULT.log_window.bytes,
        }
    }
}

/// A 32-byte key (X25519, Ed25519 or Ristretto255), public or private.
pub type Key = [u8; 32];

/// A node's id and long-term public keys, as listed in `system.json`.
#[derive(Clone, Debug)]
pub struct NodeEntry {
    /// The node's id, also the stem of its private file names.
    pub id: String,
    /// The node's long-term X25519 (link) public key.
    pub key: Key,
    /// The node's Ed25519 identity public key (it signs what the node states in blame).
    pub identity: Key,
}

/// Everything public about a group, from `system.json`, `session.json` and `pseudonym.json`.
#[derive(Clone, Debug)]
pub struct Group {
    /// Group id (`system.json`).
    pub group_id: [u8; 16],
    /// Session id (`session.json`).
    pub session_id: [u8; 16],
    /// The relay's id.
    pub relay_id: String,
    /// The relay's `host:port`.
    pub relay_address: HostPort,
    /// The relay's long-term public key.
    pub relay_key: Key,
    /// The relay's Ed25519 identity public key.
    pub relay_identity: Key,
    /// The relay's Ristretto255 DH public key (slot owners seal their cells with it).
    pub relay_dh: Key,
    /// Clients and their long-term public keys; a client's index is its [`Role::Client`] index.
    pub clients: Vec<NodeEntry>,
    /// Trustees and their long-term public keys; a trustee's index is its [`Role::Trustee`] index.
    pub trustees: Vec<NodeEntry>,
    /// Client session public keys, in the order of `clients`.
    pub client_session_keys: Vec<Key>,
    /// Trustee session public keys, in the order of `trustees`.
    pub trustee_session_keys: Vec<Key>,
    /// Pseudonym public keys; a slot's index is its position here.
    pub slots: Vec<Key>,
    /// Cell length in bytes (a newly reserved slot's cell).
    pub cell_length: usize,
    /// Longest cell a slot owner may ask for.
    pub max_cell_length: usize,
    /// The group's policy: anonymity minimum (buddy groups) and log window.
    pub policy: Policy,
}

/// The kind of node a command runs, and so the kind of key file it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// The relay.
    Relay,
    /// A client.
    Client,
    /// A trustee.
    Trustee,
}

impl NodeKind {
    fn of(role: Role) -> NodeKind {
        match role {
            Role::Relay => NodeKind::Relay,
            Role::Client(_) => NodeKind::Client,
            Role::Trustee(_) => NodeKind::Trustee,
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeKind::Relay => "relay",
            NodeKind::Client => "client",
            NodeKind::Trustee => "trustee",
        })
    }
}

/// A node's role in the group, with its index into [`Group::clients`] or [`Group::trustees`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The relay.
    Relay,
    /// The client at this index.
    Client(usize),
    /// The trustee at this index.
    Trustee(usize),
}

/// A node's private keys, checked against its [`Group`].
pub struct NodeSecrets {
    /// The node's id.
    pub id: String,
    /// The node's role in the group.
    pub role: Role,
    /// Long-term X25519 private key.
    pub private_key: Key,
    /// Ed25519 identity private key.
    pub identity_private_key: Key,
    /// Session pad private key (Ristretto255; clients and trustees), or the relay's DH
    /// private key (Ristretto255; the relay).
    pub session_private_key: Option<Key>,
    /// Pseudonym private key (Ristretto255; clients only).
    pub pseudonym_private_key: Option<Key>,
    /// A client's pseudonym slot: where its pseudonym key is in `pseudonym.json`.
    slot: Option<usize>,
}

impl fmt::Debug for NodeSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const REDACTED: &str = "<redacted>";
        f.debug_struct("NodeSecrets")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("private_key", &REDACTED)
            .field("identity_private_key", &REDACTED)
            .field(
                "session_private_key",
                &self.session_private_key.map(|_| REDACTED),
            )
            .field(
                "pseudonym_private_key",
                &self.pseudonym_private_key.map(|_| REDACTED),
            )
            .finish()
    }
}

impl NodeSecrets {
    /// For a client: the index of its pseudonym slot in group.slots (found when loaded).
    pub fn slot(&self) -> Option<usize> {
        self.slot
    }
}

// ---------------------------------------------------------------------------------------
// File formats

#[derive(Serialize, Deserialize)]
struct SystemFile {
    group_id: String,
    relay: RelayFileEntry,
    clients: Vec<FileEntry>,
    trustees: Vec<FileEntry>,
    cell_length: usize,
    /// Absent in configurations written before long cells: the cell length then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_cell_length: Option<usize>,
    /// The anonymity minimum: buddy groups of at least this many clients. Absent in older
    /// configurations: the default (2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_anonymity: Option<u16>,
    /// The log window's time in seconds (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log_window_secs: Option<u64>,
    /// The log window's size in bytes (default 32 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log_window_bytes: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct RelayFileEntry {
    id: String,
    address: String,
    key: String,
    identity: String,
    /// The relay's Ristretto255 DH public key (slot owners seal their cells with it).
    dh: String,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    id: String,
    key: String,
    /// The identity key (`system.json` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct SessionFile {
    session_id: String,
    clients: Vec<FileEntry>,
    trustees: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize)]
struct PseudonymFile {
    slots: Vec<SlotEntry>,
}

#[derive(Serialize, Deserialize)]
struct SlotEntry {
    key: String,
}

#[derive(Serialize, Deserialize)]
struct PrivateFile {
    id: String,
    private_key: String,
    identity_private_key: String,
    /// The relay's Ristretto255 DH private key (the relay's file only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dh_private_key: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct SessionPrivateFile {
    id: String,
    session_private_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pseudonym_private_key: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Generation

/// Writes a complete configuration set into `dir` (creating it). Refuses a non-empty dir unless force.
///
/// With `force`, files this function would write (and leftovers of a larger earlier set) are
/// removed first; other files in `dir` are left alone.
pub fn generate(dir: &Path, opts: &GenerateOptions) -> Result<()> {
    check_options(opts)?;
    prepare_dir(dir, opts.force)?;

    struct Member {
        id: String,
        long_term: Key,
        identity: Key,
        session: Key,
        pseudonym: Option<Key>,
    }
    let member = |id: String, is_client: bool| Member {
        id,
        long_term: random_key(),
        identity: random_key(),
        session: random_key(),
        pseudonym: is_client.then(random_key),
    };
    let clients: Vec<Member> = (0..opts.clients)
        .map(|i| member(format!("client-{i}"), true))
        .collect();
    let trustees: Vec<Member> = (0..opts.trustees)
        .map(|i| member(format!("trustee-{i}"), false))
        .collect();
    let relay_key = random_key();
    let relay_identity = random_key();
    let relay_dh = loop {
        let k = random_key();
        if dissent_core::crypto::pad_secret(&k).is_some() {
            break k;
        }
    };

    // Private files first, so a half-written set has no public files pointing at missing keys.
    let relay_file = PrivateFile {
        id: RELAY_ID.to_string(),
        private_key: hex::encode(relay_key),
        identity_private_key: hex::encode(relay_identity),
        dh_private_key: Some(hex::encode(relay_dh)),
    };
    write_json(
        dir,
        &format!("{RELAY_ID}.json"),
        &relay_file,
        Access::Private,
    )?;
    for m in clients.iter().chain(&trustees) {
        let long_term = PrivateFile {
            id: m.id.clone(),
            private_key: hex::encode(m.long_term),
            identity_private_key: hex::encode(m.identity),
            dh_private_key: None,
        };
        write_json(dir, &format!("{}.json", m.id), &long_term, Access::Private)?;
        let session = SessionPrivateFile {
            id: m.id.clone(),
            session_private_key: hex::encode(m.session),
            pseudonym_private_key: m.pseudonym.map(hex::encode),
        };
        write_json(
            dir,
            &format!("{}.session.json", m.id),
            &session,
            Access::Private,
        )?;
    }

    let mut slots: Vec<Key> = clients
        .iter()
        .filter_map(|m| m.pseudonym.as_ref().map(pad_public_key))
        .collect();
    slots.shuffle(&mut OsRng);
    let pseudonym = PseudonymFile {
        slots: slots
            .iter()
            .map(|key| SlotEntry {
                key: hex::encode(key),
            })
            .collect(),
    };
    write_json(dir, PSEUDONYM_FILE, &pseudonym, Access::Public)?;

    let session_entries = |members: &[Member]| -> Vec<FileEntry> {
        members
            .iter()
            .map(|m| FileEntry {
                id: m.id.clone(),
                key: hex::encode(pad_public_key(&m.session)),
                identity: None,
            })
            .collect()
    };
    let session = SessionFile {
        session_id: hex::encode(random_id()),
        clients: session_entries(&clients),
        trustees: session_entries(&trustees),
    };
    write_json(dir, SESSION_FILE, &session, Access::Public)?;

    let system_entries = |members: &[Member]| -> Vec<FileEntry> {
        members
            .iter()
            .map(|m| FileEntry {
                id: m.id.clone(),
                key: hex::encode(public_key(&m.long_term)),
                identity: Some(hex::encode(identity_public_key(&m.identity))),
            })
            .collect()
    };

    let system = SystemFile {
        group_id: hex::encode(random_id()),
        relay: RelayFileEntry {
            id: RELAY_ID.to_string(),
            address: opts.relay.clone(),
            key: hex::encode(public_key(&relay_key)),
            identity: hex::encode(identity_public_key(&relay_identity)),
            dh: hex::encode(pad_public_key(&relay_dh)),
        },
        clients: system_entries(&clients),
        trustees: system_entries(&trustees),
        cell_length: opts.cell_length,
        max_cell_length: Some(opts.max_cell_length.max(opts.cell_length)),
        min_anonymity: Some(opts.min_anonymity),
        log_window_secs: Some(opts.log_window_secs),
        log_window_bytes: Some(opts.log_window_bytes),
    };
    write_json(dir, SYSTEM_FILE, &system, Access::Public)?;

    // Make the renames durable; not all platforms can sync a directory, so best effort.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn check_options(opts: &GenerateOptions) -> Result<()> {
    ensure!(
        (1..=MAX_CLIENTS).contains(&opts.clients),
        "number of clients must be between 1 and {MAX_CLIENTS}, not {}",
        opts.clients
    );
    ensure!(
        (1..=MAX_TRUSTEES).contains(&opts.trustees),
        "number of trustees must be between 1 and {MAX_TRUSTEES}, not {}",
        opts.trustees
    );
    ensure!(
        (MIN_CELL_LENGTH..=MAX_CELL_LENGTH).contains(&opts.cell_length),
        "cell length must be between {MIN_CELL_LENGTH} and {MAX_CELL_LENGTH} bytes, not {} \
         (a sealed cell with one byte of data takes {MIN_CELL_LENGTH})",
        opts.cell_length
    );
    ensure!(
        (1..=opts.clients).contains(&usize::from(opts.min_anonymity)),
        "the anonymity minimum must be between 1 and the number of clients ({}), not {}",
        opts.clients,
        opts.min_anonymity
    );
    ensure!(
        (1..=MAX_LOG_WINDOW_SECS).contains(&opts.log_window_secs),
        "the log window's time must be between 1 and {MAX_LOG_WINDOW_SECS} s, not {}",
        opts.log_window_secs
    );
    ensure!(
        (1..=MAX_LOG_WINDOW_BYTES).contains(&opts.log_window_bytes),
        "the log window's size must be between 1 and {MAX_LOG_WINDOW_BYTES} bytes, not {}",
        opts.log_window_bytes
    );
    opts.relay
        .parse::<HostPort>()
        .map(drop)
        .map_err(|e| anyhow!("relay address {:?}: {e}", opts.relay))
}

/// Creates `dir`, or checks it is empty, or (with `force`) clears our files out of it.
fn prepare_dir(dir: &Path, force: bool) -> Result<()> {
    let shown = dir.display();
    match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return fs::create_dir_all(dir).with_context(|| format!("{shown}: cannot create"));
        }
        Err(e) => return Err(e).with_context(|| format!("{shown}: cannot read")),
        Ok(meta) => ensure!(meta.is_dir(), "{shown}: exists and is not a directory"),
    }
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("{shown}: cannot list"))? {
        names.push(
            entry
                .with_context(|| format!("{shown}: cannot list"))?
                .file_name(),
        );
    }
    if names.is_empty() {
        return Ok(());
    }
    if !force {
        bail!("{shown}: directory is not empty; use --force to overwrite the configuration in it");
    }
    for name in names {
        if name.to_str().is_some_and(is_generated_name) {
            let path = dir.join(&name);
            fs::remove_file(&path).with_context(|| format!("{}: cannot remove", path.display()))?;
        }
    }
    Ok(())
}

/// Whether `generate` could have written a file of this name (or its temporary).
fn is_generated_name(name: &str) -> bool {
    let name = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .unwrap_or(name);
    let Some(stem) = name.strip_suffix(".json") else {
        return false;
    };
    if matches!(stem, "system" | "session" | "pseudonym") {
        return true;
    }
    let stem = stem.strip_suffix(".session").unwrap_or(stem);
    let numbered = |prefix: &str| {
        stem.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    stem == RELAY_ID || numbered("client-") || numbered("trustee-")
}

/// Writes `value` as JSON to a new file at `path` (refusing an existing one), then renames.
pub(crate) fn write_new<T: Serialize>(path: &Path, value: &T, access: Access) -> Result<()> {
    ensure!(
        !path.exists(),
        "{} exists; not overwriting it",
        path.display()
    );
    replace_json(path, value, access)
}

/// Writes `value` as JSON to `path` through a temporary file and a rename (replacing it).
pub(crate) fn replace_json<T: Serialize>(path: &Path, value: &T, access: Access) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{}: not a file name", path.display()))?;
    write_json(dir, name, value, access)
}

fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T, access: Access) -> Result<()> {
    let path = dir.join(name);
    let mut text = serde_json::to_vec_pretty(value)
        .with_context(|| format!("{}: cannot encode", path.display()))?;
    text.push(b'\n');
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = write_then_rename(&tmp, &path, &text, access);
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.with_context(|| format!("{}: cannot write", path.display()))
}

fn write_then_rename(tmp: &Path, path: &Path, contents: &[u8], access: Access) -> io::Result<()> {
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Private files are the owner's alone from the start; public ones can be handed around.
    let mut file = match access {
        Access::Private => private_files::create_private(tmp)?,
        Access::Public => private_files::create_public(tmp)?,
    };
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(tmp, path)
}

fn random_key() -> Key {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    key
}

fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    id
}

// ---------------------------------------------------------------------------------------
// Loading

impl Group {
    /// Loads and cross-checks `system.json`, `session.json` and `pseudonym.json` in `dir`.
    pub fn load(dir: &Path) -> Result<Group> {
        let system_path = dir.join(SYSTEM_FILE);
        let session_path = dir.join(SESSION_FILE);
        let pseudonym_path = dir.join(PSEUDONYM_FILE);
        let system: SystemFile = read_json(&system_path)?;
        let session: SessionFile = read_json(&session_path)?;
        let pseudonym: PseudonymFile = read_json(&pseudonym_path)?;

        let sys = system_path.display();
        let group_id = parse_hex(&system_path, "group_id", &system.group_id)?;
        check_id(&system_path, "relay.id", &system.relay.id)?;
        let relay_address: HostPort = system
            .relay
            .address
            .parse()
            .map_err(|e| anyhow!("{sys}: relay.address {:?}: {e}", system.relay.address))?;
        let relay_key = parse_hex(&system_path, "relay.key", &system.relay.key)?;
        let relay_identity = parse_hex(&system_path, "relay.identity", &system.relay.identity)?;
        let relay_dh: Key = parse_hex(&system_path, "relay.dh", &system.relay.dh)?;
        ensure!(
            dissent_core::ristretto::keys::PublicKey::from_bytes(&relay_dh).is_ok(),
            "{sys}: relay.dh: not a Ristretto255 public key"
        );
        let clients = parse_entries(&system_path, "clients", &system.clients, MAX_CLIENTS)?;
        let trustees = parse_entries(&system_path, "trustees", &system.trustees, MAX_TRUSTEES)?;
        ensure!(
            (MIN_CELL_LENGTH..=MAX_CELL_LENGTH).contains(&system.cell_length),
            "{sys}: cell_length must be between {MIN_CELL_LENGTH} and {MAX_CELL_LENGTH}, not {} \
             (a sealed cell with one byte of data takes {MIN_CELL_LENGTH})",
            system.cell_length
        );
        if let Some(max) = system.max_cell_length {
            ensure!(
                (system.cell_length..=MAX_CELL_LENGTH).contains(&max),
                "{sys}: max_cell_length must be between cell_length ({}) and \
                 {MAX_CELL_LENGTH}, not {max}",
                system.cell_length
            );
        }

        let min_anonymity = system
            .min_anonymity
            .unwrap_or(Policy::DEFAULT.min_anonymity);
        ensure!(
            min_anonymity >= 1,
            "{sys}: min_anonymity must be at least 1, not 0"
        );
        let log_window_secs = system
            .log_window_secs
            .unwrap_or(Policy::DEFAULT.log_window.time.as_micros() / 1_000_000);
        ensure!(
            (1..=MAX_LOG_WINDOW_SECS).contains(&log_window_secs),
            "{sys}: log_window_secs must be between 1 and {MAX_LOG_WINDOW_SECS}, not \
             {log_window_secs}"
        );
        let log_window_bytes = system
            .log_window_bytes
            .unwrap_or(Policy::DEFAULT.log_window.bytes);
        ensure!(
            (1..=MAX_LOG_WINDOW_BYTES).contains(&log_window_bytes),
            "{sys}: log_window_bytes must be between 1 and {MAX_LOG_WINDOW_BYTES}, not \
             {log_window_bytes}"
        );
        let policy = Policy {
            min_anonymity,
            log_window: LogWindow {
                time: dissent_core::Duration::from_millis(log_window_secs * 1000),
                bytes: log_window_bytes,
            },
        };

        let mut ids = HashSet::new();
        ids.insert(system.relay.id.as_str());
        for (field, entry) in named("clients", &clients).chain(named("trustees", &trustees)) {
            ensure!(
                ids.insert(entry.id.as_str()),
                "{sys}: {field}.id: duplicate id {:?}",
                entry.id
            );
        }
        let long_term = std::iter::once(("relay.key".to_string(), &relay_key))
            .chain(named("clients", &clients).map(|(f, e)| (format!("{f}.key"), &e.key)))
            .chain(named("trustees", &trustees).map(|(f, e)| (format!("{f}.key"), &e.key)));
        check_distinct(&system_path, long_term)?;
        let identities = std::iter::once(("relay.identity".to_string(), &relay_identity))
            .chain(named("clients", &clients).map(|(f, e)| (format!("{f}.identity"), &e.identity)))
            .chain(
                named("trustees", &trustees).map(|(f, e)| (format!("{f}.identity"), &e.identity)),
            );
        check_distinct(&system_path, identities)?;

        let session_id = parse_hex(&session_path, "session_id", &session.session_id)?;
        let client_session_keys =
            parse_session_entries(&session_path, "clients", &session.clients, &clients)?;
        let trustee_session_keys =
            parse_session_entries(&session_path, "trustees", &session.trustees, &trustees)?;
        let session_keys = named("clients", &client_session_keys)
            .chain(named("trustees", &trustee_session_keys))
            .map(|(f, k)| (format!("{f}.key"), k));
        check_distinct(&session_path, session_keys)?;

        ensure!(
            pseudonym.slots.len() == clients.len(),
            "{}: slots: {} for {} in {SYSTEM_FILE}",
            pseudonym_path.display(),
            console::count(pseudonym.slots.len() as u64, "slot"),
            console::count(clients.len() as u64, "client")
        );
        let slots = pseudonym
            .slots
            .iter()
            .enumerate()
            .map(|(i, slot)| parse_hex(&pseudonym_path, &format!("slots[{i}].key"), &slot.key))
            .collect::<Result<Vec<Key>>>()?;
        check_distinct(
            &pseudonym_path,
            named("slots", &slots).map(|(f, k)| (format!("{f}.key"), k)),
        )?;

        Ok(Group {
            group_id,
            session_id,
            relay_id: system.relay.id,
            relay_address,
            relay_key,
            relay_identity,
            relay_dh,
            clients,
            trustees,
            client_session_keys,
            trustee_session_keys,
            slots,
            cell_length: system.cell_length,
            max_cell_length: system
                .max_cell_length
                .unwrap_or(system.cell_length)
                .max(system.cell_length),
            policy,
        })
    }

    /// Which key files a node of `kind` can use, as a sentence: "the relay needs relay.json".
    fn key_files_for(&self, kind: NodeKind) -> String {
        let range = |nodes: &[NodeEntry]| match nodes {
            [] => "none in this group".to_string(),
            [only] => format!("{}.json", only.id),
            [first, .., last] => format!("one of {}.json to {}.json", first.id, last.id),
        };
        match kind {
            NodeKind::Relay => format!("the relay needs {}.json", self.relay_id),
            NodeKind::Client => format!("a client needs a client key, {}", range(&self.clients)),
            NodeKind::Trustee => {
                format!("a trustee needs a trustee key, {}", range(&self.trustees))
            }
        }
    }

    fn role_of(&self, id: &str) -> Option<Role> {
        if id == self.relay_id {
            return Some(Role::Relay);
        }
        if let Some(i) = self.clients.iter().position(|e| e.id == id) {
            return Some(Role::Client(i));
        }
        self.trustees
            .iter()
            .position(|e| e.id == id)
            .map(Role::Trustee)
    }
}

/// Whether the key file at `path` is a client's or a trustee's, by the id it names.
///
/// A file this cannot read is taken as a client's, for [`load_node`] to explain.
pub fn node_kind(group: &Group, path: &Path) -> Result<NodeKind> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    let Some(Id { id }) = fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Id>(&bytes).ok())
    else {
        return Ok(NodeKind::Client);
    };
    if id == group.relay_id {
        bail!(
            "{} is the relay's key: a device runs a client or a trustee",
            path.display()
        );
    }
    Ok(if group.trustees.iter().any(|t| t.id == id) {
        NodeKind::Trustee
    } else {
        NodeKind::Client
    })
}

/// Loads the private file (DIR/ID.json) of a node of kind `kind` and, for clients and
/// trustees, its DIR/ID.session.json beside it; checks they are the owner's alone and
/// match the group.
pub fn load_node(group: &Group, private_file: &Path, kind: NodeKind) -> Result<NodeSecrets> {
    let shown = private_file.display();
    if let Some(stem) = private_file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".session.json"))
    {
        bail!(
            "{shown} is a session key file; give the node's own key file, {stem}.json \
             (its session file is read from beside it)"
        );
    }
    if let Ok(meta) = fs::metadata(private_file) {
        if !meta.is_file() {
            let what = if meta.is_dir() {
                "a folder"
            } else {
                "not a regular file"
            };
            bail!(
                "{shown} is {what}, not a key file; {} (DIR/ID.json)",
                group.key_files_for(kind)
            );
        }
    }
    // Both of the node's files at once, so one run names every mode to fix.
    if let Some(stem) = private_file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".json"))
    {
        let dir = private_file.parent().unwrap_or(Path::new(""));
        check_private_files(&private_files(dir, stem, kind))?;
    }
    let file: PrivateFile = read_private_json(private_file)?;
    let role = group
        .role_of(&file.id)
        .ok_or_else(|| anyhow!("{shown}: id: {:?} is not a node in {SYSTEM_FILE}", file.id))?;
    let found = NodeKind::of(role);
    ensure!(
        found == kind,
        "{shown} is a {found} key; {}",
        group.key_files_for(kind)
    );
    let private_key: Key = parse_hex(private_file, "private_key", &file.private_key)?;
    let identity_private_key: Key = parse_hex(
        private_file,
        "identity_private_key",
        &file.identity_private_key,
    )?;
    let (expected, expected_identity, session_keys) = match role {
        Role::Relay => (&group.relay_key, &group.relay_identity, None),
        Role::Client(i) => (
            &group.clients[i].key,
            &group.clients[i].identity,
            Some(&group.client_session_keys[i]),
        ),
        Role::Trustee(i) => (
            &group.trustees[i].key,
            &group.trustees[i].identity,
            Some(&group.trustee_session_keys[i]),
        ),
    };
    ensure!(
        public_key(&private_key) == *expected,
        "{shown}: private_key does not match the key of {:?} in {SYSTEM_FILE}",
        file.id
    );
    ensure!(
        identity_public_key(&identity_private_key) == *expected_identity,
        "{shown}: identity_private_key does not match the identity of {:?} in {SYSTEM_FILE}",
        file.id
    );
    let Some(expected_session) = session_keys else {
        let dh = file
            .dh_private_key
            .as_deref()
            .ok_or_else(|| anyhow!("{shown}: dh_private_key: missing (the relay's DH key)"))?;
        let dh: Key = parse_hex(private_file, "dh_private_key", dh)?;
        ensure!(
            pad_public_key(&dh) == group.relay_dh,
            "{shown}: dh_private_key does not match relay.dh in {SYSTEM_FILE}"
        );
        return Ok(NodeSecrets {
            id: file.id,
            role,
            private_key,
            identity_private_key,
            session_private_key: Some(dh),
            pseudonym_private_key: None,
            slot: None,
        });
    };

    let session_path = private_file
        .parent()
        .unwrap_or(Path::new(""))
        .join(format!("{}.session.json", file.id));
    let sess = session_path.display();
    let session: SessionPrivateFile = read_private_json(&session_path)?;
    ensure!(
        session.id == file.id,
        "{sess}: id: {:?} does not match {:?} in {shown}",
        session.id,
        file.id
    );
    let session_private_key: Key = parse_hex(
        &session_path,
        "session_private_key",
        &session.session_private_key,
    )?;
    ensure!(
        pad_public_key(&session_private_key) == *expected_session,
        "{sess}: session_private_key does not match the key of {:?} in {SESSION_FILE}",
        file.id
    );
    let (pseudonym_private_key, slot) = match (role, &session.pseudonym_private_key) {
        (Role::Client(_), Some(text)) => {
            let key: Key = parse_hex(&session_path, "pseudonym_private_key", text)?;
            let public = pad_public_key(&key);
            let slot = group.slots.iter().position(|s| *s == public);
            ensure!(
                slot.is_some(),
                "{sess}: pseudonym_private_key matches no slot in {PSEUDONYM_FILE}"
            );
            (Some(key), slot)
        }
        (Role::Client(_), None) => bail!("{sess}: pseudonym_private_key: missing for a client"),
        (_, Some(_)) => bail!("{sess}: pseudonym_private_key: only clients have one"),
        (_, None) => (None, None),
    };
    Ok(NodeSecrets {
        id: file.id,
        role,
        private_key,
        identity_private_key,
        session_private_key: Some(session_private_key),
        pseudonym_private_key,
        slot,
    })
}

/// Reads and parses a JSON file of bounded size; errors name the file.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    parse_json_file(path, file)
}

/// Like [`read_json`], for a file holding a private key: refuses it, as ssh does, when
/// anyone but its owner may read or write it, and refuses what is not a file at all.
pub(crate) fn read_private_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let shown = path.display();
    let file = File::open(path).with_context(|| format!("{shown}: cannot open"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("{shown}: cannot read its permissions"))?;
    ensure_regular(path, &meta)?;
    if let Some(too_open) = check_one(&file, path)? {
        return Err(TooOpen {
            files: vec![too_open],
        }
        .into());
    }
    parse_json_file(path, file)
}

/// The platform's check of one open private file: `Some` when others may read or change it.
fn check_one(file: &File, path: &Path) -> Result<Option<OpenFile>> {
    match private_files::check_private(file, path) {
        Ok(()) => Ok(None),
        Err(Refused::TooOpen { who, label, fix }) => Ok(Some(OpenFile {
            path: path.to_path_buf(),
            who,
            label,
            fix,
        })),
        Err(e) => Err(anyhow!("{}: {e}", path.display())),
    }
}

/// Refuses a folder, a device or anything else that is not a plain file, where a key file
/// was asked for (no `chmod` would make `/dev/null` or a folder a key file).
fn ensure_regular(path: &Path, meta: &fs::Metadata) -> Result<()> {
    let shown = path.display();
    let ft = meta.file_type();
    ensure!(!ft.is_dir(), "{shown} is a folder, not a key file");
    ensure!(
        ft.is_file(),
        "{shown} is not a regular file (a device or a pipe?), so not a key file"
    );
    Ok(())
}

/// A private key file that others may read or write, as the platform judged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFile {
    /// The file.
    pub path: PathBuf,
    /// Who may: `permissions 0644 are`, `access for S-1-5-11 is`.
    pub who: String,
    /// The same, short, for a list: `0644`.
    pub label: String,
    /// The command that makes this file private.
    pub fix: String,
}

/// Private key files that others may read or write: each named with who may, and the
/// command that fixes them all (one `chmod` on Unix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooOpen {
    /// Each file and who may read or change it.
    pub files: Vec<OpenFile>,
}

impl fmt::Display for TooOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const RULE: &str = "a private key file must be readable by its owner only";
        match self.files.as_slice() {
            [one] => write!(
                f,
                "{}: {} too open: {RULE}; run: {}",
                one.path.display(),
                one.who,
                one.fix
            ),
            files => {
                let list: Vec<String> = files
                    .iter()
                    .map(|o| format!("{} ({})", o.path.display(), o.label))
                    .collect();
                let paths: Vec<&Path> = files.iter().map(|o| o.path.as_path()).collect();
                let fix = private_files::fix_all(&paths).unwrap_or_else(|| {
                    let each: Vec<&str> = files.iter().map(|o| o.fix.as_str()).collect();
                    each.join("; ")
                });
                write!(
                    f,
                    "{} private key files can be read or written by others: {}; {RULE}; \
                     run: {fix}",
                    files.len(),
                    list.join(", "),
                )
            }
        }
    }
}

impl std::error::Error for TooOpen {}

/// Checks every one of `paths` that exists: a plain file, readable and writable by its
/// owner only. Every file others may read or change is named at once (one [`TooOpen`]);
/// a path that is not a plain file fails alone.
pub fn check_private_files(paths: &[PathBuf]) -> Result<()> {
    let mut open: Vec<OpenFile> = Vec::new();
    for path in paths {
        if open.iter().any(|o| &o.path == path) {
            continue;
        }
        let Ok(meta) = fs::metadata(path) else {
            // A missing file is reported by whatever reads it, with its role.
            continue;
        };
        ensure_regular(path, &meta)?;
        let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        if let Some(too_open) = check_one(&file, path)? {
            open.push(too_open);
        }
    }
    if open.is_empty() {
        Ok(())
    } else {
        Err(TooOpen { files: open }.into())
    }
}

/// The private files of node `id` in `dir`: `ID.json`, and `ID.session.json` unless it is
/// the relay.
pub fn private_files(dir: &Path, id: &str, kind: NodeKind) -> Vec<PathBuf> {
    let mut files = vec![dir.join(format!("{id}.json"))];
    if kind != NodeKind::Relay {
        files.push(dir.join(format!("{id}.session.json")));
    }
    files
}

fn parse_json_file<T: DeserializeOwned>(path: &Path, file: File) -> Result<T> {
    let shown = path.display();
    let mut text = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut text)
        .with_context(|| format!("{shown}: cannot read"))?;
    ensure!(
        text.len() as u64 <= MAX_FILE_LEN,
        "{shown}: larger than {MAX_FILE_LEN} bytes"
    );
    serde_json::from_slice(&text).with_context(|| format!("{shown}: invalid configuration file"))
}

pub(crate) fn parse_hex<const N: usize>(path: &Path, field: &str, text: &str) -> Result<[u8; N]> {
    let shown = path.display();
    ensure!(
        text.len() == 2 * N,
        "{shown}: {field}: expected {} hex characters, found {}",
        2 * N,
        text.len()
    );
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| anyhow!("{shown}: {field}: {e}"))?;
    Ok(out)
}

/// Checks a node id: 1 to 64 of `A-Z a-z 0-9 _ -`, so `ID.json` is a plain file name that
/// cannot collide with the public files.
fn check_id(path: &Path, field: &str, id: &str) -> Result<()> {
    let shown = path.display();
    ensure!(
        !id.is_empty() && id.len() <= MAX_ID_LEN,
        "{shown}: {field}: id must be 1 to {MAX_ID_LEN} characters long"
    );
    ensure!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{shown}: {field}: id {id:?} may only contain letters, digits, '-' and '_'"
    );
    ensure!(
        !matches!(id, "system" | "session" | "pseudonym"),
        "{shown}: {field}: id {id:?} is reserved for a public file"
    );
    Ok(())
}

fn parse_entries(
    path: &Path,
    field: &str,
    entries: &[FileEntry],
    max: usize,
) -> Result<Vec<NodeEntry>> {
    ensure!(
        (1..=max).contains(&entries.len()),
        "{}: {field}: expected 1 to {max} entries, found {}",
        path.display(),
        entries.len()
    );
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            check_id(path, &format!("{field}[{i}].id"), &entry.id)?;
            let key = parse_hex(path, &format!("{field}[{i}].key"), &entry.key)?;
            let identity = entry
                .identity
                .as_deref()
                .ok_or_else(|| anyhow!("{}: {field}[{i}].identity: missing", path.display()))?;
            let identity = parse_hex(path, &format!("{field}[{i}].identity"), identity)?;
            Ok(NodeEntry {
                id: entry.id.clone(),
                key,
                identity,
            })
        })
        .collect()
}

/// Parses `session.json` entries, which must list the same ids in the same order as `nodes`.
fn parse_session_entries(
    path: &Path,
    field: &str,
    entries: &[FileEntry],
    nodes: &[NodeEntry],
) -> Result<Vec<Key>> {
    let shown = path.display();
    ensure!(
        entries.len() == nodes.len(),
        "{shown}: {field}: {} session keys for {} {field} in {SYSTEM_FILE}",
        entries.len(),
        nodes.len()
    );
    entries
        .iter()
        .zip(nodes)
        .enumerate()
        .map(|(i, (entry, node))| {
            ensure!(
                entry.id == node.id,
                "{shown}: {field}[{i}].id: {:?} where {SYSTEM_FILE} has {:?}",
                entry.id,
                node.id
            );
            parse_hex(path, &format!("{field}[{i}].key"), &entry.key)
        })
        .collect()
}

/// Pairs each item with its field name, `field[i]`.
fn named<'a, T>(field: &'a str, items: &'a [T]) -> impl Iterator<Item = (String, &'a T)> + 'a {
    items
        .iter()
        .enumerate()
        .map(move |(i, item)| (format!("{field}[{i}]"), item))
}

fn check_distinct<'a>(path: &Path, keys: impl Iterator<Item = (String, &'a Key)>) -> Result<()> {
    let mut seen: HashMap<&Key, String> = HashMap::new();
    for (field, key) in keys {
        if let Some(first) = seen.get(key) {
            bail!("{}: {field}: same key as {first}", path.display());
        }
        seen.insert(key, field);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn small() -> GenerateOptions {
        GenerateOptions {
            clients: 4,
            trustees: 2,
            ..GenerateOptions::default()
        }
    }

    fn generated(opts: &GenerateOptions) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), opts).unwrap();
        dir
    }

    /// The error's full message (context chain included).
    fn err_text<T>(result: Result<T>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn read_value(path: &Path) -> Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    fn write_value(path: &Path, value: &Value) {
        fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    }

    /// Whether only the owner may read the file at `path`.
    fn is_private(path: &Path) -> bool {
        private_files::check_private(&File::open(path).unwrap(), path).is_ok()
    }

    /// [`load_node`] for the kind of node the file's name says.
    fn load(group: &Group, path: &Path) -> Result<NodeSecrets> {
        let name = path.file_name().unwrap().to_str().unwrap();
        let kind = if name.starts_with("client") {
            NodeKind::Client
        } else if name.starts_with("trustee") {
            NodeKind::Trustee
        } else {
            NodeKind::Relay
        };
        load_node(group, path, kind)
    }

    #[test]
    fn generate_then_load() {
        let opts = small();
        let dir = generated(&opts);
        let group = Group::load(dir.path()).unwrap();
        assert_eq!(group.clients.len(), 4);
        assert_eq!(group.trustees.len(), 2);
        assert_eq!(group.client_session_keys.len(), 4);
        assert_eq!(group.trustee_session_keys.len(), 2);
        assert_eq!(group.slots.len(), 4);
        assert_eq!(group.cell_length, DEFAULT_CELL_LENGTH);
        assert_eq!(group.relay_id, "relay");
        assert_eq!(group.relay_address.to_string(), DEFAULT_RELAY);
        let client_ids: Vec<&str> = group.clients.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(client_ids, ["client-0", "client-1", "client-2", "client-3"]);
        let trustee_ids: Vec<&str> = group.trustees.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(trustee_ids, ["trustee-0", "trustee-1"]);

        let relay = load(&group, &dir.path().join("relay.json")).unwrap();
        assert_eq!(relay.role, Role::Relay);
        assert_eq!(public_key(&relay.private_key), group.relay_key);
        assert_eq!(
            identity_public_key(&relay.identity_private_key),
            group.relay_identity
        );
        assert_eq!(
            pad_public_key(&relay.session_private_key.unwrap()),
            group.relay_dh
        );
        assert_eq!(relay.slot(), None);

        let mut slots = BTreeSet::new();
        for (i, entry) in group.clients.iter().enumerate() {
            let node = load(&group, &dir.path().join(format!("{}.json", entry.id))).unwrap();
            assert_eq!(node.id, entry.id);
            assert_eq!(node.role, Role::Client(i));
            assert_eq!(public_key(&node.private_key), entry.key);
            assert_eq!(
                identity_public_key(&node.identity_private_key),
                entry.identity
            );
            let session = node.session_private_key.unwrap();
            assert_eq!(pad_public_key(&session), group.client_session_keys[i]);
            slots.insert(node.slot().unwrap());
        }
        assert_eq!(slots, (0..4).collect::<BTreeSet<_>>());

        for (i, entry) in group.trustees.iter().enumerate() {
            let node = load(&group, &dir.path().join(format!("{}.json", entry.id))).unwrap();
            assert_eq!(node.role, Role::Trustee(i));
            assert_eq!(public_key(&node.private_key), entry.key);
            let session = node.session_private_key.unwrap();
            assert_eq!(pad_public_key(&session), group.trustee_session_keys[i]);
            assert!(node.pseudonym_private_key.is_none());
            assert_eq!(node.slot(), None);
        }

        let debug = format!("{relay:?}");
        assert!(!debug.contains(&hex::encode(relay.private_key)));
        assert!(!debug.contains(&hex::encode(relay.identity_private_key)));
    }

    #[test]
    fn a_group_of_ten_thousand_clients_loads() {
        let opts = GenerateOptions {
            clients: 10_000,
            trustees: 3,
            ..GenerateOptions::default()
        };
        let dir = generated(&opts);
        let len = std::fs::metadata(dir.path().join(SYSTEM_FILE))
            .unwrap()
            .len();
        assert!(len > 1 << 20, "system.json is {len} bytes");
        let group = Group::load(dir.path()).unwrap();
        assert_eq!(group.clients.len(), 10_000);
        assert_eq!(group.slots.len(), 10_000);
        let last = load(&group, &dir.path().join("client-9999.json")).unwrap();
        assert_eq!(last.role, Role::Client(9999));
    }

    #[test]
    fn file_modes() {
        let dir = generated(&small());
        let mut private = vec!["relay.json".to_string()];
        for id in ["client-0", "client-3", "trustee-0", "trustee-1"] {
            private.push(format!("{id}.json"));
            private.push(format!("{id}.session.json"));
        }
        for name in &private {
            assert!(is_private(&dir.path().join(name)), "{name}");
        }
        // Public files are readable by all on Unix (0644); on Windows they keep their
        // folder's access list, which may be private too.
        if cfg!(unix) {
            for name in [SYSTEM_FILE, SESSION_FILE, PSEUDONYM_FILE] {
                assert!(!is_private(&dir.path().join(name)), "{name}");
            }
        }
        // 3 public + relay + 6 members x 2, and no temporaries left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3 + 1 + 12);
    }

    fn keys_of(value: &Value) -> BTreeSet<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn json_shape() {
        let dir = generated(&small());
        let system = read_value(&dir.path().join(SYSTEM_FILE));
        assert_eq!(
            keys_of(&system),
            BTreeSet::from([
                "group_id",
                "relay",
                "clients",
                "trustees",
                "cell_length",
                "max_cell_length",
                "min_anonymity",
                "log_window_secs",
                "log_window_bytes"
            ])
        );
        assert_eq!(system["group_id"].as_str().unwrap().len(), 32);
        assert_eq!(
            keys_of(&system["relay"]),
            BTreeSet::from(["id", "address", "key", "identity", "dh"])
        );
        assert_eq!(system["relay"]["id"], "relay");
        assert_eq!(system["relay"]["address"], DEFAULT_RELAY);
        assert_eq!(system["cell_length"], 1024);
        let clients = system["clients"].as_array().unwrap();
        assert_eq!(clients.len(), 4);
        for (i, client) in clients.iter().enumerate() {
            assert_eq!(keys_of(client), BTreeSet::from(["id", "key", "identity"]));
            assert_eq!(client["id"], format!("client-{i}"));
            assert_eq!(client["key"].as_str().unwrap().len(), 64);
            assert_eq!(client["identity"].as_str().unwrap().len(), 64);
        }
        for trustee in system["trustees"].as_array().unwrap() {
            assert_eq!(keys_of(trustee), BTreeSet::from(["id", "key", "identity"]));
        }

        let session = read_value(&dir.path().join(SESSION_FILE));
        assert_eq!(
            keys_of(&session),
            BTreeSet::from(["session_id", "clients", "trustees"])
        );
        assert_eq!(session["session_id"].as_str().unwrap().len(), 32);
        for (i, client) in session["clients"].as_array().unwrap().iter().enumerate() {
            assert_eq!(keys_of(client), BTreeSet::from(["id", "key"]));
            assert_eq!(client["id"], system["clients"][i]["id"]);
            assert_ne!(client["key"], system["clients"][i]["key"]);
        }

        let pseudonym = read_value(&dir.path().join(PSEUDONYM_FILE));
        assert_eq!(keys_of(&pseudonym), BTreeSet::from(["slots"]));
        let slots = pseudonym["slots"].as_array().unwrap();
        assert_eq!(slots.len(), 4);
        for slot in slots {
            assert_eq!(keys_of(slot), BTreeSet::from(["key"]));
        }
        let text = fs::read_to_string(dir.path().join(PSEUDONYM_FILE)).unwrap();
        assert!(!text.contains("client") && !text.contains("\"id\""));

        let relay = read_value(&dir.path().join("relay.json"));
        assert_eq!(
            keys_of(&relay),
            BTreeSet::from([
                "id",
                "private_key",
                "identity_private_key",
                "dh_private_key"
            ])
        );
        let client = read_value(&dir.path().join("client-1.session.json"));
        assert_eq!(
            keys_of(&client),
            BTreeSet::from(["id", "session_private_key", "pseudonym_private_key"])
        );
        let trustee = read_value(&dir.path().join("trustee-1.session.json"));
        assert_eq!(
            keys_of(&trustee),
            BTreeSet::from(["id", "session_private_key"])
        );
    }

    #[test]
    fn refuses_non_empty_dir_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let text = err_text(generate(dir.path(), &small()));
        assert!(text.contains("--force"), "{text}");
        assert!(!dir.path().join(SYSTEM_FILE).exists());

        let forced = GenerateOptions {
            force: true,
            ..small()
        };
        generate(dir.path(), &forced).unwrap();
        let first = Group::load(dir.path()).unwrap();
        assert!(err_text(generate(dir.path(), &small())).contains("--force"));

        // Overwrite with fewer clients: the old client files go, the user's file stays.
        let fewer = GenerateOptions {
            clients: 2,
            ..forced
        };
        generate(dir.path(), &fewer).unwrap();
        let second = Group::load(dir.path()).unwrap();
        assert_eq!(second.clients.len(), 2);
        assert_ne!(first.group_id, second.group_id);
        assert!(!dir.path().join("client-3.json").exists());
        assert!(!dir.path().join("client-3.session.json").exists());
        assert_eq!(
            fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
            "mine"
        );
        for id in ["client-0", "client-1", "trustee-0", "relay"] {
            let path = dir.path().join(format!("{id}.json"));
            load(&second, &path).unwrap();
            assert!(is_private(&path));
        }
    }

    #[test]
    fn creates_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        generate(&nested, &small()).unwrap();
        Group::load(&nested).unwrap();
    }

    #[test]
    fn generations_differ() {
        let a = Group::load(generated(&small()).path()).unwrap();
        let b = Group::load(generated(&small()).path()).unwrap();
        assert_ne!(a.group_id, b.group_id);
        assert_ne!(a.session_id, b.session_id);
        assert_ne!(a.relay_key, b.relay_key);
        for (x, y) in a.clients.iter().zip(&b.clients) {
            assert_ne!(x.key, y.key);
        }
        assert_ne!(a.slots, b.slots);
    }

    #[test]
    fn slots_are_shuffled() {
        let opts = GenerateOptions {
            clients: 5,
            trustees: 1,
            ..GenerateOptions::default()
        };
        let mut seen = BTreeSet::new();
        for _ in 0..20 {
            let dir = generated(&opts);
            let group = Group::load(dir.path()).unwrap();
            let node = load(&group, &dir.path().join("client-0.json")).unwrap();
            seen.insert(node.slot().unwrap());
        }
        assert!(seen.len() > 1, "client-0 always had slot {seen:?}");
    }

    #[test]
    fn corrupt_hex_is_an_error_naming_the_file() {
        let dir = generated(&small());
        let path = dir.path().join(SYSTEM_FILE);
        let mut system = read_value(&path);
        system["clients"][1]["key"] = Value::from("zz".repeat(32));
        write_value(&path, &system);
        let text = err_text(Group::load(dir.path()));
        assert!(
            text.contains(SYSTEM_FILE) && text.contains("clients[1].key"),
            "{text}"
        );

        system["clients"][1]["key"] = Value::from("ab".repeat(31));
        write_value(&path, &system);
        let text = err_text(Group::load(dir.path()));
        assert!(
            text.contains("expected 64 hex characters, found 62"),
            "{text}"
        );

        let dir = generated(&small());
        let group = Group::load(dir.path()).unwrap();
        let path = dir.path().join("client-2.json");
        let mut private = read_value(&path);
        private["private_key"] = Value::from("g".repeat(64));
        write_value(&path, &private);
        let text = err_text(load(&group, &path));
        assert!(
            text.contains("client-2.json") && text.contains("private_key"),
            "{text}"
        );
    }

    #[test]
    fn mismatched_private_key_is_an_error() {
        let dir = generated(&small());
        let group = Group::load(dir.path()).unwrap();
        let other = read_value(&dir.path().join("client-1.json"));
        let path = dir.path().join("client-0.json");
        let mut mine = read_value(&path);
        mine["private_key"] = other["private_key"].clone();
        write_value(&path, &mine);
        let text = err_text(load(&group, &path));
        assert!(
            text.contains("client-0.json") && text.contains("does not match"),
            "{text}"
        );

        // An identity key of another node.
        let dir = generated(&small());
        let group = Group::load(dir.path()).unwrap();
        let other = read_value(&dir.path().join("trustee-1.json"));
        let path = dir.path().join("trustee-0.json");
        let mut mine = read_value(&path);
        mine["identity_private_key"] = other["identity_private_key"].clone();
        write_value(&path, &mine);
        let text = err_text(load(&group, &path));
        assert!(
            text.contains("trustee-0.json") && text.contains("identity_private_key"),
            "{text}"
        );

        // A session file copied from another node.
        let dir = generated(&small());
        let group = Group::load(dir.path()).unwrap();
        let other = read_value(&dir.path().join("trustee-1.session.json"));
        let session = dir.path().join("trustee-0.session.json");
        let mut mine = read_value(&session);
        mine["session_private_key"] = other["session_private_key"].clone();
        write_value(&session, &mine);
        let text = err_text(load(&group, &dir.path().join("trustee-0.json")));
        assert!(text.contains("trustee-0.session.json"), "{text}");

        // A pseudonym key that is in no slot.
        let session = dir.path().join("client-0.session.json");
        let mut mine = read_value(&session);
        mine["pseudonym_private_key"] = Value::from(hex::encode(random_key()));
        write_value(&session, &mine);
        let text = err_text(load(&group, &dir.path().join("client-0.json")));
        assert!(
            text.contains("client-0.session.json") && text.contains("no slot"),
            "{text}"
        );

        // A private file of a node that is not in this group.
        let elsewhere = generated(&small());
        let text = err_text(load(&group, &elsewhere.path().join("client-0.json")));
        assert!(text.contains("client-0.json"), "{text}");
    }

    #[test]
    fn truncated_json_is_an_error_naming_the_file() {
        for name in [SYSTEM_FILE, SESSION_FILE, PSEUDONYM_FILE] {
            let dir = generated(&small());
            let path = dir.path().join(name);
            let text = fs::read(&path).unwrap();
            fs::write(&path, &text[..text.len() / 2]).unwrap();
            let message = Group::load(dir.path()).unwrap_err().to_string();
            assert!(message.contains(name), "{message}");
        }
        for name in ["client-0.json", "client-0.session.json", "relay.json"] {
            let dir = generated(&small());
            let group = Group::load(dir.path()).unwrap();
            let path = dir.path().join(name);
            let text = fs::read(&path).unwrap();
            fs::write(&path, &text[..text.len() / 2]).unwrap();
            let node_file = if name == "relay.json" {
                "relay.json"
            } else {
                "client-0.json"
            };
            let message = load(&group, &dir.path().join(node_file))
                .unwrap_err()
                .to_string();
            assert!(message.contains(name), "{message}");
        }
        let dir = tempfile::tempdir().unwrap();
        let message = Group::load(dir.path()).unwrap_err().to_string();
        assert!(message.contains(SYSTEM_FILE), "{message}");
    }

    #[test]
    fn inconsistent_public_files_are_errors() {
        let check = |edit: &dyn Fn(&Path), file: &str, expect: &str| {
            let dir = generated(&small());
            edit(dir.path());
            let text = err_text(Group::load(dir.path()));
            assert!(text.contains(file) && text.contains(expect), "{text}");
        };
        let edit = |name: &'static str, f: fn(&mut Value)| {
            move |dir: &Path| {
                let path = dir.join(name);
                let mut value = read_value(&path);
                f(&mut value);
                write_value(&path, &value);
            }
        };
        check(
            &edit(SYSTEM_FILE, |v| v["clients"][1]["id"] = "client-0".into()),
            SYSTEM_FILE,
            "duplicate id",
        );
        check(
            &edit(SYSTEM_FILE, |v| v["trustees"][0]["id"] = "relay".into()),
            SYSTEM_FILE,
            "duplicate id",
        );
        check(
            &edit(SYSTEM_FILE, |v| v["clients"][0]["id"] = "../x".into()),
            SYSTEM_FILE,
            "clients[0].id",
        );
        check(
            &edit(SYSTEM_FILE, |v| v["cell_length"] = 8.into()),
            SYSTEM_FILE,
            "cell_length",
        );
        check(
            &edit(SYSTEM_FILE, |v| v["relay"]["address"] = "nonsense".into()),
            SYSTEM_FILE,
            "relay.address",
        );
        check(
            &edit(SYSTEM_FILE, |v| v["group_id"] = "abcd".into()),
            SYSTEM_FILE,
            "group_id",
        );
        check(
            &edit(SYSTEM_FILE, |v| {
                v["trustees"][1]["key"] = v["clients"][2]["key"].clone()
            }),
            SYSTEM_FILE,
            "same key",
        );
        check(
            &edit(SYSTEM_FILE, |v| v["clients"] = Value::Array(vec![])),
            SYSTEM_FILE,
            "clients",
        );
        check(
            &edit(SESSION_FILE, |v| {
                v["clients"].as_array_mut().unwrap().pop();
            }),
            SESSION_FILE,
            "3 session keys for 4 clients",
        );
        check(
            &edit(SESSION_FILE, |v| {
                v["trustees"][0]["id"] = "trustee-9".into()
            }),
            SESSION_FILE,
            "trustees[0].id",
        );
        check(
            &edit(PSEUDONYM_FILE, |v| {
                v["slots"].as_array_mut().unwrap().pop();
            }),
            PSEUDONYM_FILE,
            "3 slots for 4 clients",
        );
        check(
            &edit(PSEUDONYM_FILE, |v| v["slots"][3] = v["slots"][0].clone()),
            PSEUDONYM_FILE,
            "same key",
        );
        // Extra fields are tolerated.
        let dir = generated(&small());
        edit(SYSTEM_FILE, |v| v["comment"] = "hello".into())(dir.path());
        edit(PSEUDONYM_FILE, |v| v["slots"][0]["note"] = 1.into())(dir.path());
        Group::load(dir.path()).unwrap();
    }

    #[test]
    fn invalid_options_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                GenerateOptions {
                    clients: 0,
                    ..small()
                },
                "clients",
            ),
            (
                GenerateOptions {
                    clients: MAX_CLIENTS + 1,
                    ..small()
                },
                "clients",
            ),
            (
                GenerateOptions {
                    trustees: 0,
                    ..small()
                },
                "trustees",
            ),
            (
                GenerateOptions {
                    cell_length: 8,
                    ..small()
                },
                "cell length",
            ),
            (
                GenerateOptions {
                    cell_length: MAX_CELL_LENGTH + 1,
                    ..small()
                },
                "cell length",
            ),
            (
                GenerateOptions {
                    min_anonymity: 0,
                    ..small()
                },
                "anonymity minimum",
            ),
            (
                GenerateOptions {
                    min_anonymity: 5,
                    ..small()
                },
                "anonymity minimum",
            ),
            (
                GenerateOptions {
                    log_window_secs: 0,
                    ..small()
                },
                "log window's time",
            ),
            (
                GenerateOptions {
                    log_window_secs: MAX_LOG_WINDOW_SECS + 1,
                    ..small()
                },
                "log window's time",
            ),
            (
                GenerateOptions {
                    log_window_bytes: 0,
                    ..small()
                },
                "log window's size",
            ),
            (
                GenerateOptions {
                    log_window_bytes: MAX_LOG_WINDOW_BYTES + 1,
                    ..small()
                },
                "log window's size",
            ),
        ];
        for (opts, expect) in cases {
            let text = err_text(generate(dir.path(), &opts));
            assert!(text.contains(expect), "{text}");
        }
        for relay in [
            "nonsense",
            "host:0",
            "host:65536",
            "host:port",
            ":80",
            "::1:80",
            "bad host:80",
            "-x:80",
        ] {
            let opts = GenerateOptions {
                relay: relay.to_string(),
                ..small()
            };
            let text = err_text(generate(dir.path(), &opts));
            assert!(text.contains("relay address"), "{relay}: {text}");
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_policy_written_is_the_policy_loaded() {
        let dir = generated(&GenerateOptions {
            min_anonymity: 3,
            log_window_secs: 90,
            log_window_bytes: 1 << 20,
            ..small()
        });
        let group = Group::load(dir.path()).unwrap();
        assert_eq!(group.policy.min_anonymity, 3);
        assert_eq!(
            group.policy.log_window.time,
            dissent_core::Duration::from_millis(90_000)
        );
        assert_eq!(group.policy.log_window.bytes, 1 << 20);
        // The default, and a group of one, which can only be its own minimum.
        assert_eq!(default_min_anonymity(4), Policy::DEFAULT.min_anonymity);
        assert_eq!(default_min_anonymity(1), 1);
        let one = generated(&GenerateOptions {
            clients: 1,
            min_anonymity: default_min_anonymity(1),
            ..small()
        });
        assert_eq!(Group::load(one.path()).unwrap().policy.min_anonymity, 1);
    }

    #[test]
    fn valid_relay_addresses() {
        for relay in [
            "127.0.0.1:12345",
            "localhost:1",
            "relay.example.org:443",
            "[::1]:8080",
        ] {
            let dir = generated(&GenerateOptions {
                relay: relay.to_string(),
                ..small()
            });
            let group = Group::load(dir.path()).unwrap();
            assert_eq!(group.relay_address.to_string(), relay);
        }
    }

    #[test]
    fn a_key_file_of_another_role_is_refused() {
        let dir = generated(&small());
        let group = Group::load(dir.path()).unwrap();
        let file = |id: &str| dir.path().join(format!("{id}.json"));
        let cases = [
            ("client-0", NodeKind::Relay, "is a client key; the relay needs relay.json"),
            ("trustee-1", NodeKind::Relay, "is a trustee key; the relay needs relay.json"),
            (
                "client-0",
                NodeKind::Trustee,
                "is a client key; a trustee needs a trustee key, one of trustee-0.json to trustee-1.json",
            ),
            (
                "relay",
                NodeKind::Trustee,
                "is a relay key; a trustee needs a trustee key",
            ),
            (
                "trustee-0",
                NodeKind::Client,
                "is a trustee key; a client needs a client key, one of client-0.json to client-3.json",
            ),
            ("relay", NodeKind::Client, "is a relay key; a client needs"),
        ];
        for (id, kind, says) in cases {
            let text = err_text(load_node(&group, &file(id), kind));
            assert!(
                text.contains(&format!("{id}.json {says}")),
                "{id} as {kind}: {text}"
            );
        }
        let session = dir.path().join("client-0.session.json");
        let text = err_text(load_node(&group, &session, NodeKind::Client));
        assert!(
            text.contains("is a session key file") && text.contains("client-0.json"),
            "{text}"
        );
        load_node(&group, &file("client-0"), NodeKind::Client).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_or_a_device_is_no_key_file_and_gets_no_chmod_hint() {
        let dir = generated(&small());
        let group = Group::load(dir.path()).unwrap();
        for (path, says) in [
            (dir.path().to_path_buf(), "is a folder, not a key file"),
            (PathBuf::from("/dev/null"), "is not a regular file"),
        ] {
            for kind in [NodeKind::Client, NodeKind::Trustee, NodeKind::Relay] {
                let text = err_text(load_node(&group, &path, kind));
                assert!(text.contains(says), "{text}");
                assert!(!text.contains("chmod"), "{text}");
                assert!(text.contains(&group.key_files_for(kind)), "{text}");
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn every_file_too_open_is_named_in_one_message_with_one_chmod() {
        use std::os::unix::fs::PermissionsExt;

        let dir = generated(&small());
        let group = Group::load(dir.path()).unwrap();
        let key = dir.path().join("client-2.json");
        let session = dir.path().join("client-2.session.json");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&session, fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_node(&group, &key, NodeKind::Client).unwrap_err();
        let too_open = err.downcast_ref::<TooOpen>().expect("a TooOpen");
        let named: Vec<(&Path, &str)> = too_open
            .files
            .iter()
            .map(|o| (o.path.as_path(), o.label.as_str()))
            .collect();
        assert_eq!(
            named,
            vec![(key.as_path(), "0644"), (session.as_path(), "0640")]
        );
        let text = format!("{err:#}");
        let chmod = format!("run: chmod 600 {} {}", key.display(), session.display());
        assert!(
            text.contains(&chmod) && text.contains("0644") && text.contains("0640"),
            "{text}"
        );

        // Over a whole group too, with quoted paths where a shell would split them.
        let spaced = tempfile::tempdir().unwrap();
        let cfg = spaced.path().join("my dc");
        generate(&cfg, &small()).unwrap();
        let files: Vec<PathBuf> = ["client-0", "relay", "trustee-1"]
            .iter()
            .map(|id| cfg.join(format!("{id}.json")))
            .collect();
        for f in &files {
            fs::set_permissions(f, fs::Permissions::from_mode(0o604)).unwrap();
        }
        let all: Vec<PathBuf> = group
            .clients
            .iter()
            .map(|c| cfg.join(format!("{}.json", c.id)))
            .chain(files.iter().cloned())
            .collect();
        let text = err_text(check_private_files(&all));
        let quoted: Vec<String> = files.iter().map(|f| format!("'{}'", f.display())).collect();
        assert!(text.starts_with("3 private key files"), "{text}");
        assert!(
            text.contains(&format!("chmod 600 {}", quoted.join(" "))),
            "{text}"
        );
    }

    /// The Windows access-list check is `platform::private_files`'s, tested there.
    #[cfg(unix)]
    #[test]
    fn a_private_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;

        let dir = generated(&small());
        let group = Group::load(dir.path()).unwrap();
        for (name, node) in [
            ("relay.json", "relay.json"),
            ("client-1.json", "client-1.json"),
            ("client-1.session.json", "client-1.json"),
            ("trustee-0.session.json", "trustee-0.json"),
        ] {
            for bad in [0o640, 0o604, 0o660, 0o644, 0o602] {
                let path = dir.path().join(name);
                fs::set_permissions(&path, fs::Permissions::from_mode(bad)).unwrap();
                let text = err_text(load(&group, &dir.path().join(node)));
                let hint = format!("run: chmod 600 {}", path.display());
                assert!(
                    text.contains(&hint) && text.contains(&format!("{bad:04o}")),
                    "{text}"
                );
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            }
            load(&group, &dir.path().join(node)).unwrap();
            fs::set_permissions(dir.path().join(name), fs::Permissions::from_mode(0o400)).unwrap();
            load(&group, &dir.path().join(node)).unwrap();
        }
        // Public files are public.
        fs::set_permissions(
            dir.path().join(SYSTEM_FILE),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        Group::load(dir.path()).unwrap();
    }

    #[test]
    fn generated_names() {
        for name in [
            "system.json",
            "session.json",
            "pseudonym.json",
            "relay.json",
            "client-12.json",
            "client-0.session.json",
            "trustee-3.session.json",
            ".client-0.json.tmp",
        ] {
            assert!(is_generated_name(name), "{name}");
        }
        for name in [
            "notes.txt",
            "client-.json",
            "client-x.json",
            "alice.json",
            "system.txt",
        ] {
            assert!(!is_generated_name(name), "{name}");
        }
    }

    /// The demo set in configs/ stays loadable, every node included, once its private files
    /// are private, which git cannot keep (the test works on a copy).
    #[test]
    fn the_shipped_demo_configuration_loads() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/demo");
        let copy = tempfile::tempdir().unwrap();
        let dir = copy.path();
        for entry in fs::read_dir(&shipped).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let to = dir.join(&name);
            let public = matches!(
                name.as_str(),
                "system.json" | "session.json" | "pseudonym.json"
            );
            let mut file = if public {
                private_files::create_public(&to).unwrap()
            } else {
                private_files::create_private(&to).unwrap()
            };
            file.write_all(&fs::read(entry.path()).unwrap()).unwrap();
        }
        let group = Group::load(dir).unwrap();
        assert_eq!((group.clients.len(), group.trustees.len()), (3, 2));
        let mut slots = BTreeSet::new();
        for c in &group.clients {
            let node = load(&group, &dir.join(format!("{}.json", c.id))).unwrap();
            assert!(matches!(node.role, Role::Client(_)));
            slots.insert(node.slot().unwrap());
        }
        assert_eq!(slots.len(), 3);
        for t in &group.trustees {
            let node = load(&group, &dir.join(format!("{}.json", t.id))).unwrap();
            assert!(matches!(node.role, Role::Trustee(_)));
        }
        let relay = load(&group, &dir.join("relay.json")).unwrap();
        assert_eq!(relay.role, Role::Relay);
    }
}
