//! A group folder with no dealer (`dissent group ...`): `group.json`, public keys only.
//!
//! Anyone may assemble a group from the members' public key files ([`super::keys`]); nobody
//! holds another node's private key. Format version 1 (docs/protocol.md, "Group folders"):
//!
//! ```text
//! { "format": "dissent-group/1", "version": N,
//!   "relay": { "address": "HOST:PORT", "keys": PUBLIC KEYS or null },
//!   "trustees": [PUBLIC KEYS...], "clients": [PUBLIC KEYS...],
//!   "policy": { "min_clients", "min_anonymity", "cell_length", "max_cell_length",
//!               "log_window_secs", "log_window_bytes"[, "min_trustees" when not 1] },
//!   "removals": [{ "name", "fingerprint" }...],
//!   "signatures": [{ "trustee": FINGERPRINT, "signature": HEX }...] }
//! ```
//!
//! PUBLIC KEYS is `{ "name", "link", "identity", "dh" }` (hex). The canonical bytes of a
//! version are the compact JSON of everything but `signatures`, in this order; the group
//! fingerprint is SHA-256 over `"dissent-rs group/1\n" ‖ canonical bytes`, shown as
//! `SHA256:<base64>`. A version is valid only when every trustee listed has signed that
//! digest with its Ed25519 identity key ([`GroupDesc::sign`]); nodes load only valid versions
//! ([`load_signed`]). Every change bumps `version` and drops the signatures. A running
//! group takes a newer version at a switch only when every trustee of the running version
//! signed it too ([`GroupDesc::switch_refusal`]): a trustee taken out signs its own removal.
//! `removals` lists the members taken out since the epoch that was last set up: they leave
//! at the next epoch (the next setup).
//!
//! Owns `group.json`: its format, editing, fingerprint and signatures. It must not run
//! anything.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use dissent_core::identity::{verify, IdentityKey};
use dissent_core::policy::Policy;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::addr::HostPort;
use super::keys::{self, KeyRole, PublicKeys};
use super::{parse_hex, read_json, replace_json, Access, Key};

/// The group folder's description.
pub const GROUP_FILE: &str = "group.json";
/// The `format` of `group.json`.
pub const FORMAT: &str = "dissent-group/1";
/// The label hashed before the canonical bytes.
const LABEL: &[u8] = b"dissent-rs group/1\n";

/// The group's policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPolicy {
    /// Clients that must take part in an epoch and be online in an interval.
    pub min_clients: u16,
    /// The anonymity minimum (buddy groups).
    pub min_anonymity: u16,
    /// A newly reserved slot's cell length.
    pub cell_length: usize,
    /// Longest cell a slot owner may ask for.
    pub max_cell_length: usize,
    /// The log window's time in seconds.
    pub log_window_secs: u64,
    /// The log window's size in bytes.
    pub log_window_bytes: u64,
    /// Fewest trustees an epoch's setup may go on with once cheating trustees are convicted
    /// and left out (at least 1: anytrust needs one honest trustee, and a convicted one is
    /// not it). Left out of `group.json` when 1, so versions written before it keep their
    /// fingerprints.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub min_trustees: u16,
}

fn one() -> u16 {
    1
}

fn is_one(n: &u16) -> bool {
    *n == 1
}

impl Default for GroupPolicy {
    fn default() -> Self {
        let d = super::GenerateOptions::default();
        GroupPolicy {
            min_clients: 2,
            min_anonymity: Policy::DEFAULT.min_anonymity,
            cell_length: d.cell_length,
            max_cell_length: d.max_cell_length,
            log_window_secs: d.log_window_secs,
            log_window_bytes: d.log_window_bytes,
            min_trustees: 1,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct KeysEntry {
    name: String,
    link: String,
    identity: String,
    dh: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct RelayEntry {
    address: String,
    keys: Option<KeysEntry>,
}

/// A member taken out, leaving at the next epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// Its name.
    pub name: String,
    /// Its key fingerprint.
    pub fingerprint: String,
}

/// A trustee's signature of a version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The trustee's key fingerprint.
    pub trustee: String,
    /// Its Ed25519 signature of the group fingerprint digest, hex.
    pub signature: String,
}

/// Everything `group.json` says but the signatures, in canonical order.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Body {
    format: String,
    version: u64,
    relay: RelayEntry,
    trustees: Vec<KeysEntry>,
    clients: Vec<KeysEntry>,
    policy: GroupPolicy,
    removals: Vec<Removal>,
}

#[derive(Serialize, Deserialize)]
struct File {
    #[serde(flatten)]
    body: Body,
    #[serde(default)]
    signatures: Vec<Signature>,
}

/// A group description, checked.
#[derive(Clone, Debug)]
pub struct GroupDesc {
    /// Counts changes.
    pub version: u64,
    /// The relay's address.
    pub relay_address: String,
    /// The relay's keys, once added.
    pub relay: Option<PublicKeys>,
    /// Trustees, in trustee order.
    pub trustees: Vec<PublicKeys>,
    /// Clients, in client order.
    pub clients: Vec<PublicKeys>,
    /// The policy.
    pub policy: GroupPolicy,
    /// Members taken out since the last epoch.
    pub removals: Vec<Removal>,
    /// Trustees' signatures of this version.
    pub signatures: Vec<Signature>,
}

fn entry(keys: &PublicKeys) -> KeysEntry {
    KeysEntry {
        name: keys.name.clone(),
        link: hex::encode(keys.link),
        identity: hex::encode(keys.identity),
        dh: hex::encode(keys.dh),
    }
}

fn parse_entry(path: &Path, role: KeyRole, e: &KeysEntry) -> Result<PublicKeys> {
    let keys = PublicKeys {
        role,
        name: e.name.clone(),
        link: parse_hex(path, "link", &e.link)?,
        identity: parse_hex(path, "identity", &e.identity)?,
        dh: parse_hex(path, "dh", &e.dh)?,
    };
    keys::check_public(&keys)
        .with_context(|| format!("{}: {role} {:?}", path.display(), e.name))?;
    Ok(keys)
}

impl GroupDesc {
    /// A new, empty group (version 1).
    pub fn new(relay_address: &HostPort, policy: GroupPolicy) -> GroupDesc {
        GroupDesc {
            version: 1,
            relay_address: relay_address.to_string(),
            relay: None,
            trustees: Vec::new(),
            clients: Vec::new(),
            policy,
            removals: Vec::new(),
            signatures: Vec::new(),
        }
    }

    fn body(&self) -> Body {
        Body {
            format: FORMAT.to_string(),
            version: self.version,
            relay: RelayEntry {
                address: self.relay_address.clone(),
                keys: self.relay.as_ref().map(entry),
            },
            trustees: self.trustees.iter().map(entry).collect(),
            clients: self.clients.iter().map(entry).collect(),
            policy: self.policy.clone(),
            removals: self.removals.clone(),
        }
    }

    /// The canonical bytes: compact JSON of everything but the signatures.
    pub fn canonical(&self) -> Vec<u8> {
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_vec(&self.body()).unwrap_or_default()
    }

    /// SHA-256 over the label and the canonical bytes: what trustees sign.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(LABEL);
        h.update(self.canonical());
        h.finalize().into()
    }

    /// The index of the trustee whose keys are `keys` in this version; an error naming it
    /// if it is not one of its trustees.
    pub fn trustee_index(&self, keys: &super::keys::PrivateKeys) -> Result<usize> {
        let own = keys.public();
        match self.trustees.iter().position(|k| *k == own) {
            Some(index) => Ok(index),
            None => bail!(
                "trustee {} ({}) is not a trustee of group version {}",
                keys.name,
                own.fingerprint(),
                self.version
            ),
        }
    }

    /// The group fingerprint members compare out of band.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", STANDARD_NO_PAD.encode(self.digest()))
    }

    /// Every member's keys: relay (if any), trustees, clients.
    pub fn members(&self) -> impl Iterator<Item = &PublicKeys> {
        self.relay.iter().chain(&self.trustees).chain(&self.clients)
    }

    /// A change: the next version, unsigned.
    pub fn changed(&mut self) {
        self.version += 1;
        self.signatures.clear();
    }

    /// Adds a relay, trustee or client key (the relay's replaces none: refused if set);
    /// call [`GroupDesc::changed`] once after the keys of one change.
    pub fn add(&mut self, keys: PublicKeys) -> Result<()> {
        let fp = keys.fingerprint();
        for other in self.members() {
            ensure!(
                other.fingerprint() != fp,
                "{} {} ({fp}) is in the group already",
                keys.role,
                keys.name
            );
            ensure!(
                other.name != keys.name,
                "the name {:?} is taken (by {} {})",
                keys.name,
                other.role,
                other.fingerprint()
            );
            let mine: HashSet<Key> = [keys.link, keys.identity, keys.dh].into();
            ensure!(
                [other.link, other.identity, other.dh]
                    .iter()
                    .all(|k| !mine.contains(k)),
                "{} {}: shares a key with {} {}",
                keys.role,
                keys.name,
                other.role,
                other.name
            );
        }
        match keys.role {
            KeyRole::Relay => {
                if let Some(r) = &self.relay {
                    bail!(
                        "the group has a relay key already ({} {}); make a new group for another relay",
                        r.name,
                        r.fingerprint()
                    );
                }
                self.relay = Some(keys);
            }
            KeyRole::Trustee => {
                ensure!(
                    self.trustees.len() < super::MAX_TRUSTEES,
                    "a group has at most {} trustees",
                    super::MAX_TRUSTEES
                );
                self.trustees.push(keys)
            }
            KeyRole::Client => {
                ensure!(
                    self.clients.len() < super::MAX_CLIENTS,
                    "a group has at most {} clients",
                    super::MAX_CLIENTS
                );
                self.removals.retain(|r| r.fingerprint != fp);
                self.clients.push(keys)
            }
        }
        Ok(())
    }

    /// Takes the trustee or client with this key fingerprint out (it leaves at the next
    /// epoch). The relay cannot be taken out.
    pub fn remove(&mut self, fingerprint: &str) -> Result<PublicKeys> {
        let found = [&mut self.trustees, &mut self.clients]
            .into_iter()
            .find_map(|list| {
                let at = list.iter().position(|k| k.fingerprint() == fingerprint)?;
                Some(list.remove(at))
            });
        let Some(gone) = found else {
            if self.relay.as_ref().map(|r| r.fingerprint()).as_deref() == Some(fingerprint) {
                bail!("{fingerprint} is the relay's key; a group keeps its relay");
            }
            bail!("no trustee or client has the key fingerprint {fingerprint}");
        };
        self.removals.push(Removal {
            name: gone.name.clone(),
            fingerprint: fingerprint.to_string(),
        });
        self.changed();
        Ok(gone)
    }

    /// Adds (or replaces) the signature of the trustee holding `identity`, whose public
    /// keys are `own`. A trustee this version takes out (listed in `removals`) signs too:
    /// every trustee of the running epoch must agree to a switch.
    pub fn sign(&mut self, identity: &IdentityKey, own: &PublicKeys) -> Result<String> {
        let public = identity.public();
        ensure!(
            own.identity == public,
            "the identity key does not match its key file"
        );
        let leaving = self
            .removals
            .iter()
            .any(|r| r.fingerprint == own.fingerprint());
        let trustee = match self.trustees.iter().find(|t| t.identity == public) {
            Some(t) => t.clone(),
            None if leaving && own.role == KeyRole::Trustee => own.clone(),
            None => bail!("this key is not the identity key of any trustee of the group"),
        };
        let fp = trustee.fingerprint();
        let signature = hex::encode(identity.sign(&self.digest()));
        self.signatures.retain(|s| s.trustee != fp);
        self.signatures.push(Signature {
            trustee: fp.clone(),
            signature,
        });
        Ok(trustee.name.clone())
    }

    /// Why this version is not valid (complete and signed by every trustee), if it is not.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.relay.is_none() {
            out.push("no relay key (group add DIR RELAY.pub)".to_string());
        }
        if self.trustees.is_empty() {
            out.push("no trustee".to_string());
        }
        if self.clients.is_empty() {
            out.push("no client".to_string());
        }
        let digest = self.digest();
        for s in &self.signatures {
            match self.trustees.iter().find(|t| t.fingerprint() == s.trustee) {
                // A trustee of the running epoch that this version takes out signs its own
                // removal: the running nodes check that signature at the switch
                // ([`GroupDesc::switch_refusal`]); nobody else knows its key.
                None => {}
                Some(t) => {
                    let ok = hex::decode(&s.signature)
                        .is_ok_and(|sig| verify(&t.identity, &digest, &sig));
                    if !ok {
                        out.push(format!(
                            "trustee {} ({}): its signature does not verify for version {} \
                             (group fingerprint {})",
                            t.name,
                            s.trustee,
                            self.version,
                            self.fingerprint()
                        ));
                    }
                }
            }
        }
        for t in &self.trustees {
            let fp = t.fingerprint();
            if !self.signatures.iter().any(|s| s.trustee == fp) {
                out.push(format!(
                    "trustee {} ({fp}) has not signed version {}",
                    t.name, self.version
                ));
            }
        }
        out
    }

    /// Why a node running `self` must refuse `next` as the group's next version, if it
    /// must (the rule is `dissent_core::epoch::switch::check`: newer, and signed by every
    /// trustee of both versions); the relay of a group never changes.
    pub fn switch_refusal(&self, next: &GroupDesc) -> Option<String> {
        use dissent_core::epoch::switch::{check, Candidate, Refused, Running};
        if next.relay != self.relay {
            return Some(format!(
                "version {} names another relay: a group keeps its relay",
                next.version
            ));
        }
        let running: Vec<Key> = self.trustees.iter().map(|t| t.identity).collect();
        let trustees: Vec<Key> = next.trustees.iter().map(|t| t.identity).collect();
        let clients: Vec<Key> = next.clients.iter().map(|c| c.identity).collect();
        let known: Vec<&PublicKeys> = self.trustees.iter().chain(&next.trustees).collect();
        let signatures: Vec<(Key, [u8; 64])> = next
            .signatures
            .iter()
            .filter_map(|s| {
                let t = known.iter().find(|t| t.fingerprint() == s.trustee)?;
                let sig: [u8; 64] = hex::decode(&s.signature).ok()?.try_into().ok()?;
                Some((t.identity, sig))
            })
            .collect();
        let candidate = Candidate {
            version: next.version,
            digest: next.digest(),
            trustees: &trustees,
            clients: &clients,
        };
        let running = Running {
            version: self.version,
            trustees: &running,
        };
        check(running, candidate, &signatures)
            .err()
            .map(|r| match r {
                Refused::Unsigned { trustee, .. } => {
                    let who = known
                        .iter()
                        .find(|t| t.identity == trustee)
                        .map_or_else(String::new, |t| {
                            format!(" {} ({})", t.name, t.fingerprint())
                        });
                    format!(
                        "version {} ({}): {r}:{who}",
                        next.version,
                        next.fingerprint()
                    )
                }
                r => format!("version {} ({}): {r}", next.version, next.fingerprint()),
            })
    }

    /// The relay's address.
    pub fn relay_address(&self) -> Result<HostPort> {
        self.relay_address
            .parse()
            .map_err(|e| anyhow::anyhow!("relay address {:?}: {e}", self.relay_address))
    }
}

/// The path of a group folder's description.
pub fn group_file(dir: &Path) -> PathBuf {
    dir.join(GROUP_FILE)
}

/// Whether `dir` is a group folder (it has a `group.json`).
pub fn is_group_folder(dir: &Path) -> bool {
    group_file(dir).is_file()
}

/// Reads and checks `group.json` in `dir` (signed or not).
pub fn load(dir: &Path) -> Result<GroupDesc> {
    let path = group_file(dir);
    let file: File = read_json(&path)?;
    from_file(&path, file)
}

/// Checks the bytes of a `group.json` (signed or not) that came from `origin` (a path or a
/// relay, for messages).
pub fn from_bytes(origin: &Path, bytes: &[u8]) -> Result<GroupDesc> {
    let file: File = serde_json::from_slice(bytes)
        .with_context(|| format!("{}: not a group description", origin.display()))?;
    from_file(origin, file)
}

fn from_file(path: &Path, file: File) -> Result<GroupDesc> {
    let path = path.to_path_buf();
    let b = file.body;
    ensure!(
        b.format == FORMAT,
        "{}: format {:?} is not a group of this version ({FORMAT})",
        path.display(),
        b.format
    );
    let relay = match &b.relay.keys {
        Some(e) => Some(parse_entry(&path, KeyRole::Relay, e)?),
        None => None,
    };
    let trustees = b
        .trustees
        .iter()
        .map(|e| parse_entry(&path, KeyRole::Trustee, e))
        .collect::<Result<Vec<_>>>()?;
    let clients = b
        .clients
        .iter()
        .map(|e| parse_entry(&path, KeyRole::Client, e))
        .collect::<Result<Vec<_>>>()?;
    let desc = GroupDesc {
        version: b.version,
        relay_address: b.relay.address,
        relay,
        trustees,
        clients,
        policy: b.policy,
        removals: b.removals,
        signatures: file.signatures,
    };
    // The same checks as when members were added (distinct names and keys, the limits), in
    // one pass: a group of thousands is read by every node at every switch.
    ensure!(
        desc.trustees.len() <= super::MAX_TRUSTEES && desc.clients.len() <= super::MAX_CLIENTS,
        "{}: more than {} trustees or {} clients",
        path.display(),
        super::MAX_TRUSTEES,
        super::MAX_CLIENTS
    );
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    for k in desc.members() {
        ensure!(
            names.insert(k.name.as_str()),
            "{}: the name {:?} is taken twice",
            path.display(),
            k.name
        );
        for key in [k.link, k.identity, k.dh] {
            ensure!(
                keys.insert(key),
                "{}: {} {}: shares a key with another member (or is in the group already)",
                path.display(),
                k.role,
                k.name
            );
        }
    }
    desc.relay_address()
        .with_context(|| format!("{}", path.display()))?;
    check_policy(&desc.policy).with_context(|| format!("{}: policy", path.display()))?;
    Ok(desc)
}

/// Reads `group.json` and refuses a version that is incomplete or not signed by every
/// trustee, naming each problem.
pub fn load_signed(dir: &Path) -> Result<GroupDesc> {
    let desc = load(dir)?;
    let problems = desc.problems();
    if !problems.is_empty() {
        bail!(
            "{}: version {} is not valid: {}",
            group_file(dir).display(),
            desc.version,
            problems.join("; ")
        );
    }
    Ok(desc)
}

/// Writes `group.json` into `dir`.
pub fn save(dir: &Path, desc: &GroupDesc) -> Result<()> {
    let file = File {
        body: desc.body(),
        signatures: desc.signatures.clone(),
    };
    replace_json(&group_file(dir), &file, Access::Public)
}

/// Checks a policy's ranges.
pub fn check_policy(p: &GroupPolicy) -> Result<()> {
    ensure!(p.min_clients >= 1, "min_clients: at least 1");
    ensure!(p.min_trustees >= 1, "min_trustees: at least 1");
    ensure!(p.min_anonymity >= 1, "min_anonymity: at least 1");
    ensure!(
        (super::MIN_CELL_LENGTH..=super::MAX_CELL_LENGTH).contains(&p.cell_length),
        "cell_length: {}-{} bytes, not {} (a sealed cell with one byte of data takes {})",
        super::MIN_CELL_LENGTH,
        super::MAX_CELL_LENGTH,
        p.cell_length,
        super::MIN_CELL_LENGTH
    );
    ensure!(
        (p.cell_length..=super::MAX_CELL_LENGTH).contains(&p.max_cell_length),
        "max_cell_length: cell_length up to {}",
        super::MAX_CELL_LENGTH
    );
    ensure!(
        (1..=super::MAX_LOG_WINDOW_SECS).contains(&p.log_window_secs),
        "log_window_secs: 1-{}",
        super::MAX_LOG_WINDOW_SECS
    );
    ensure!(
        (1..=super::MAX_LOG_WINDOW_BYTES).contains(&p.log_window_bytes),
        "log_window_bytes: 1-{}",
        super::MAX_LOG_WINDOW_BYTES
    );
    Ok(())
}

/// `dissent group new`: a new group folder (refusing a folder that has a group already).
pub fn new_group(dir: &Path, relay: &HostPort, policy: GroupPolicy) -> Result<GroupDesc> {
    check_policy(&policy)?;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    ensure!(
        !group_file(dir).exists(),
        "{} exists; not overwriting a group",
        group_file(dir).display()
    );
    let desc = GroupDesc::new(relay, policy);
    save(dir, &desc)?;
    Ok(desc)
}

/// `dissent group show`: every fingerprint, the policy, the version and its signatures.
pub fn show(desc: &GroupDesc) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "group {} version {}", desc.fingerprint(), desc.version);
    let _ = match &desc.relay {
        Some(r) => writeln!(
            s,
            "relay   {} {} {}",
            desc.relay_address,
            r.fingerprint(),
            r.name
        ),
        None => writeln!(s, "relay   {} (no key yet)", desc.relay_address),
    };
    for (j, t) in desc.trustees.iter().enumerate() {
        let fp = t.fingerprint();
        let signed = desc.signatures.iter().any(|x| x.trustee == fp);
        let _ = writeln!(
            s,
            "trustee {j} {fp} {}{}",
            t.name,
            if signed { " (signed)" } else { "" }
        );
    }
    for (i, c) in desc.clients.iter().enumerate() {
        let _ = writeln!(s, "client  {i} {} {}", c.fingerprint(), c.name);
    }
    for r in &desc.removals {
        let signed = desc.signatures.iter().any(|x| x.trustee == r.fingerprint);
        let _ = writeln!(
            s,
            "leaving {} {} (at the next epoch{})",
            r.fingerprint,
            r.name,
            if signed { "; signed its removal" } else { "" }
        );
    }
    let p = &desc.policy;
    let _ = writeln!(
        s,
        "policy  min_clients {} min_trustees {} min_anonymity {} cell_length {} \
         max_cell_length {} log_window {} s / {} bytes",
        p.min_clients,
        p.min_trustees,
        p.min_anonymity,
        p.cell_length,
        p.max_cell_length,
        p.log_window_secs,
        p.log_window_bytes
    );
    let problems = desc.problems();
    if problems.is_empty() {
        let _ = writeln!(s, "valid: signed by every trustee");
        let _ = writeln!(
            s,
            "a running group switches to it only once every trustee it runs with has signed \
             it too (a trustee taken out signs its own removal)"
        );
    } else {
        for p in problems {
            let _ = writeln!(s, "not valid: {p}");
        }
    }
    s
}

/// What an established epoch gives the DC-net roles: the group as they run it.
pub struct EpochGroup<'a> {
    /// The group description.
    pub desc: &'a GroupDesc,
    /// The derived group id.
    pub group_id: [u8; 16],
    /// The established epoch's session id.
    pub session_id: [u8; 16],
    /// The pseudonym public keys in slot order.
    pub slots: Vec<Key>,
    /// The epoch's clients (those that took part in its setup), as indices into
    /// `desc.clients`, increasing.
    pub clients: Vec<usize>,
    /// The epoch's trustees (every trustee not convicted in its setup), as indices into
    /// `desc.trustees`, increasing.
    pub trustees: Vec<usize>,
}

impl EpochGroup<'_> {
    /// The [`super::Group`] the relay, trustee and client run with: link and identity keys
    /// of the epoch's members from the description, each node's own DH public key as its
    /// pad key (salted per epoch by the session id), the shuffled pseudonym list as the
    /// slots. A node's index in it is its position among the epoch's members
    /// (their order in `clients` and `trustees`).
    pub fn group(&self) -> Result<super::Group> {
        let d = self.desc;
        let Some(relay) = &d.relay else {
            bail!("the group has no relay key");
        };
        let pick = |list: &[PublicKeys], at: &[usize]| -> Result<Vec<PublicKeys>> {
            at.iter()
                .map(|&i| {
                    list.get(i)
                        .cloned()
                        .ok_or_else(|| anyhow!("member {i} is not in the group"))
                })
                .collect()
        };
        let clients = pick(&d.clients, &self.clients)?;
        let trustees = pick(&d.trustees, &self.trustees)?;
        ensure!(!trustees.is_empty(), "the epoch has no trustee");
        let entries = |list: &[PublicKeys]| -> Vec<super::NodeEntry> {
            list.iter()
                .map(|k| super::NodeEntry {
                    id: k.name.clone(),
                    key: k.link,
                    identity: k.identity,
                })
                .collect()
        };
        ensure!(
            self.slots.len() == clients.len(),
            "the epoch has {} slots for {} clients: every client that took part gets one",
            self.slots.len(),
            clients.len()
        );
        let p = &d.policy;
        let policy = Policy {
            min_anonymity: p.min_anonymity,
            log_window: dissent_core::policy::LogWindow {
                time: dissent_core::Duration::from_micros(p.log_window_secs * 1_000_000),
                bytes: p.log_window_bytes,
            },
        };
        Ok(super::Group {
            group_id: self.group_id,
            session_id: self.session_id,
            relay_id: relay.name.clone(),
            relay_address: d.relay_address()?,
            relay_key: relay.link,
            relay_identity: relay.identity,
            relay_dh: relay.dh,
            clients: entries(&clients),
            trustees: entries(&trustees),
            client_session_keys: clients.iter().map(|k| k.dh).collect(),
            trustee_session_keys: trustees.iter().map(|k| k.dh).collect(),
            slots: self.slots.clone(),
            cell_length: p.cell_length,
            max_cell_length: p.max_cell_length,
            policy,
        })
    }
}

/// A node's secrets for the DC-net roles, from its own key file (and, for a client, the
/// pseudonym secret of its slot).
pub fn node_secrets(
    keys: &keys::PrivateKeys,
    role: super::Role,
    pseudonym: Option<(Key, usize)>,
) -> super::NodeSecrets {
    super::NodeSecrets {
        id: keys.name.clone(),
        role,
        private_key: keys.link,
        identity_private_key: keys.identity,
        session_private_key: Some(keys.dh),
        pseudonym_private_key: pseudonym.map(|(k, _)| k),
        slot: pseudonym.map(|(_, s)| s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::PrivateKeys;

    fn group() -> (GroupDesc, Vec<PrivateKeys>) {
        let relay: HostPort = "127.0.0.1:1".parse().unwrap();
        let mut g = GroupDesc::new(&relay, GroupPolicy::default());
        let r = PrivateKeys::generate(KeyRole::Relay, "r").unwrap();
        let t0 = PrivateKeys::generate(KeyRole::Trustee, "t0").unwrap();
        let t1 = PrivateKeys::generate(KeyRole::Trustee, "t1").unwrap();
        let c0 = PrivateKeys::generate(KeyRole::Client, "c0").unwrap();
        for k in [&r, &t0, &t1, &c0] {
            g.add(k.public()).unwrap();
        }
        g.changed();
        (g, vec![t0, t1, c0])
    }

    #[test]
    fn valid_only_when_every_trustee_signed_this_version() {
        let (mut g, keys) = group();
        assert_eq!(g.problems().len(), 2);
        g.sign(
            &IdentityKey::from_bytes(&keys[0].identity),
            &keys[0].public(),
        )
        .unwrap();
        let p = g.problems();
        assert_eq!(p.len(), 1);
        assert!(
            p[0].contains("t1") && p[0].contains("has not signed"),
            "{p:?}"
        );
        g.sign(
            &IdentityKey::from_bytes(&keys[1].identity),
            &keys[1].public(),
        )
        .unwrap();
        assert!(g.problems().is_empty());
        // A client is no signer.
        assert!(g
            .sign(
                &IdentityKey::from_bytes(&keys[2].identity),
                &keys[2].public()
            )
            .is_err());
        // A signature over other bytes is named.
        let mut tampered = g.clone();
        tampered.policy.min_clients += 1;
        let p = tampered.problems();
        assert!(p.iter().any(|p| p.contains("does not verify")), "{p:?}");
        // A change drops the signatures.
        let before = g.fingerprint();
        g.remove(&keys[2].public().fingerprint()).unwrap();
        assert_ne!(g.fingerprint(), before);
        assert_eq!(g.problems().len(), 3, "{:?}", g.problems());
    }

    fn sign(g: &mut GroupDesc, k: &PrivateKeys) {
        g.sign(&IdentityKey::from_bytes(&k.identity), &k.public())
            .unwrap();
    }

    #[test]
    fn a_switch_needs_every_trustee_of_both_versions() {
        let (mut running, keys) = group();
        sign(&mut running, &keys[0]);
        sign(&mut running, &keys[1]);
        // A new client, signed by one running trustee only: refused, naming the other.
        let mut next = running.clone();
        let c1 = PrivateKeys::generate(KeyRole::Client, "c1").unwrap();
        next.add(c1.public()).unwrap();
        next.changed();
        sign(&mut next, &keys[0]);
        let why = running.switch_refusal(&next).unwrap();
        assert!(why.contains("t1") && why.contains("not signed"), "{why}");
        sign(&mut next, &keys[1]);
        assert_eq!(running.switch_refusal(&next), None);
        // The running version offered again, or an older one: refused.
        let why = next.switch_refusal(&running).unwrap();
        assert!(why.contains("not newer"), "{why}");
        let why = next.switch_refusal(&next).unwrap();
        assert!(why.contains("not newer"), "{why}");
        // A trustee taken out must sign its own removal; a new trustee signs too.
        let mut fewer = next.clone();
        fewer.remove(&keys[1].public().fingerprint()).unwrap();
        let t2 = PrivateKeys::generate(KeyRole::Trustee, "t2").unwrap();
        fewer.add(t2.public()).unwrap();
        fewer.changed();
        sign(&mut fewer, &keys[0]);
        sign(&mut fewer, &t2);
        assert!(fewer.problems().is_empty(), "{:?}", fewer.problems());
        let why = next.switch_refusal(&fewer).unwrap();
        assert!(
            why.contains("t1") && why.contains("running trustee"),
            "{why}"
        );
        sign(&mut fewer, &keys[1]);
        assert_eq!(next.switch_refusal(&fewer), None);
        // A signature over other bytes does not count.
        let mut forged = fewer.clone();
        forged.clients.pop();
        assert!(next.switch_refusal(&forged).is_some());
    }

    #[test]
    fn duplicates_are_refused_and_files_round_trip() {
        let (g, keys) = group();
        let mut again = g.clone();
        assert!(again.add(keys[2].public()).is_err());
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &g).unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.fingerprint(), g.fingerprint());
        assert!(load_signed(dir.path()).is_err());
    }
}
