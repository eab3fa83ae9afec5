//! The relay's refusal list: clients it refuses (`Goodbye{Excluded}`) until an operator lets
//! them back in, kept in `refused.json` beside the configuration so a restart keeps it.
//!
//! Owns the file's format and the `dissent relay refused` / `dissent relay admit` commands.
//! It must not decide who is excluded: the core does (`Relay::exclude`), and the relay's
//! main task records each exclusion here and reads the file again for an operator's edits.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::NodeEntry;

/// The list's file name in the configuration folder.
pub const FILE: &str = "refused.json";

/// One refused client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The client's id in the configuration.
    pub id: String,
    /// Its long-term (link) public key, hex.
    pub key: String,
    /// Why it is refused.
    pub reason: String,
    /// When it was put on the list (seconds since the Unix epoch).
    pub since: u64,
}

/// The list as stored.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalList {
    /// Refused clients, oldest first.
    pub refused: Vec<Entry>,
}

/// The list's path for configuration folder `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

impl RefusalList {
    /// Reads the list at `path` (empty if there is no file).
    pub fn load(path: &Path) -> Result<RefusalList> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a refusal list", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RefusalList::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the list to `path` (through a temporary file, so a crash leaves the old one).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)? + "\n";
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Adds client `index` of `clients` for `reason` unless it is listed; true if added.
    pub fn add(&mut self, clients: &[NodeEntry], index: usize, reason: String) -> bool {
        let Some(c) = clients.get(index) else {
            return false;
        };
        let key = hex::encode(c.key);
        if self.refused.iter().any(|e| e.key == key) {
            return false;
        }
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.refused.push(Entry {
            id: c.id.clone(),
            key,
            reason,
            since,
        });
        true
    }

    /// The indices in `clients` of the listed clients (entries naming no client of the
    /// group are kept in the file but refuse nobody).
    pub fn clients(&self, clients: &[NodeEntry]) -> Vec<u16> {
        clients
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                let key = hex::encode(c.key);
                self.refused.iter().any(|e| e.key == key)
            })
            .map(|(i, _)| i as u16)
            .collect()
    }

    /// Removes the entries `who` names (a client id or key, or `None` for all); returns them.
    pub fn remove(&mut self, who: Option<&str>) -> Vec<Entry> {
        let (gone, kept) = self.refused.drain(..).partition(|e| match who {
            None => true,
            Some(w) => e.id == w || e.key.eq_ignore_ascii_case(w),
        });
        self.refused = kept;
        gone
    }
}

/// `dissent relay refused DIR`: prints the list.
pub fn list(dir: &Path) -> Result<()> {
    let list = RefusalList::load(&path(dir))?;
    if list.refused.is_empty() {
        println!("no client is refused ({})", path(dir).display());
    }
    for e in &list.refused {
        println!("{}  {}  since {}  {}", e.id, e.key, e.since, e.reason);
    }
    Ok(())
}

/// `dissent relay admit DIR KEY|NAME|--all`: takes entries off the list. A running relay
/// reads the file again within its stats period and lets them back in.
pub fn admit(dir: &Path, who: Option<&str>) -> Result<()> {
    let file = path(dir);
    let mut list = RefusalList::load(&file)?;
    let gone = list.remove(who);
    if gone.is_empty() {
        anyhow::bail!(
            "{} is not on the refusal list ({})",
            who.unwrap_or("nobody"),
            file.display()
        );
    }
    list.save(&file)?;
    for e in &gone {
        println!("admitted {} ({})", e.id, e.key);
    }
    Ok(())
}

/// The running relay's side of the list: the file, and the group's clients it names.
pub struct Refusals {
    file: PathBuf,
    clients: Vec<NodeEntry>,
}

impl Refusals {
    /// The list at `file` for a group of `clients`.
    pub fn new(file: PathBuf, clients: Vec<NodeEntry>) -> Refusals {
        Refusals { file, clients }
    }

    /// The clients listed now (a file that cannot be read lists nobody new: logged).
    pub fn listed(&self) -> Option<Vec<u16>> {
        match RefusalList::load(&self.file) {
            Ok(list) => Some(list.clients(&self.clients)),
            Err(e) => {
                tracing::warn!("refusal list: {e:#}");
                None
            }
        }
    }

    /// Records client `index`'s exclusion for `reason` in the file.
    pub fn record(&self, index: u16, reason: String) {
        let result = RefusalList::load(&self.file).and_then(|mut list| {
            if list.add(&self.clients, usize::from(index), reason) {
                list.save(&self.file)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!("cannot record an exclusion in the refusal list: {e:#}");
        }
    }
}
