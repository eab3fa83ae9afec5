//! The lock of a state folder: one `dissent up` runs from a state folder at a time.
//!
//! `STATE/up.lock` holds an exclusive lock (`platform::file_lock`) for as long as the `up` that took it runs, and
//! says who that is (pid, relay, client ports, configuration folder), so a second `up` can
//! name the one it would disturb. The kernel drops the lock when its process ends, however
//! it ends; a lock file that still names a process but is not locked was left by an `up`
//! that was killed, and is taken over. A clean stop empties the file (it is never removed:
//! a process that opened it just before could otherwise lock a file nobody else sees).
//!
//! Owns only the lock file; what `up` writes in the state folder is `supervisor`'s.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::platform::file_lock;

/// The lock file's name in the state folder.
pub const LOCK_FILE: &str = "up.lock";

/// Who holds a state folder, as its lock file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The `dissent up` process.
    pub pid: u32,
    /// Its relay's address, once known.
    #[serde(default)]
    pub relay: Option<String>,
    /// Its clients' ports (`1080-1089`), once known.
    #[serde(default)]
    pub client_ports: Option<String>,
    /// Its configuration folder, once known.
    #[serde(default)]
    pub config: Option<PathBuf>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if let Some(relay) = &self.relay {
            write!(f, ", relay {relay}")?;
        }
        if let Some(ports) = &self.client_ports {
            write!(f, ", client ports {ports}")?;
        }
        if let Some(config) = &self.config {
            write!(f, ", configuration {}", config.display())?;
        }
        Ok(())
    }
}

/// A held state folder; dropping it releases the folder.
#[derive(Debug)]
pub struct StateLock {
    file: File,
}

/// What [`StateLock::acquire`] found.
#[derive(Debug)]
pub struct Acquired {
    /// The lock, now ours.
    pub lock: StateLock,
    /// The `up` that held the folder before and was killed without releasing it.
    pub stale: Option<Holder>,
}

impl StateLock {
    /// Takes the lock of `state` (creating the folder), or fails naming the `up` that holds
    /// it and how to run another demo beside it.
    pub fn acquire(state: &Path) -> Result<Acquired> {
        fs::create_dir_all(state)
            .with_context(|| format!("{}: cannot create the state folder", state.display()))?;
        let path = state.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        let locked = file_lock::try_lock_exclusive(&file)
            .with_context(|| format!("{}: cannot lock", path.display()))?;
        if !locked {
            let holder = match read_holder(&mut file) {
                Some(h) => h.to_string(),
                None => "starting".to_string(),
            };
            bail!(
                "a demo is already running from {} ({holder}); starting another from the same \
                 state folder would change its files. Stop it first (Ctrl-C in its terminal), \
                 or run a second demo with its own folder: --state OTHER_FOLDER (and other \
                 ports: --relay-port, --client-port-base)",
                state.display()
            );
        }
        let stale = read_holder(&mut file);
        let mut lock = StateLock { file };
        lock.describe(&Holder {
            pid: std::process::id(),
            relay: None,
            client_ports: None,
            config: None,
        })
        .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(Acquired { lock, stale })
    }

    /// Writes who holds the folder into the lock file.
    pub fn describe(&mut self, holder: &Holder) -> io::Result<()> {
        let text = serde_json::to_vec(holder).map_err(io::Error::other)?;
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&text)?;
        self.file.write_all(b"\n")?;
        self.file.flush()
    }

    /// The path of the lock file in `state`.
    pub fn path(state: &Path) -> PathBuf {
        state.join(LOCK_FILE)
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // A clean stop: nothing to report as stale. The lock goes with the descriptor.
        let _ = self.file.set_len(0);
    }
}

/// The holder a lock file names, if it names one (a file being written may not parse yet).
fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(64 * 1024).read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_a_released_one_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state with space");
        let mut first = StateLock::acquire(&state).unwrap();
        assert_eq!(first.stale, None);
        first
            .lock
            .describe(&Holder {
                pid: std::process::id(),
                relay: Some("127.0.0.1:12345".into()),
                client_ports: Some("1080-1089".into()),
                config: Some(state.join("demo")),
            })
            .unwrap();
        // flock locks belong to open files: a second open in this process is refused too.
        let err = format!("{:#}", StateLock::acquire(&state).unwrap_err());
        for part in [
            &format!("pid {}", std::process::id()),
            "relay 127.0.0.1:12345",
            "client ports 1080-1089",
            &state.display().to_string(),
            "--state",
        ] {
            assert!(err.contains(part), "{part:?} missing: {err}");
        }
        drop(first);
        let again = StateLock::acquire(&state).unwrap();
        assert_eq!(again.stale, None, "a clean release leaves nothing stale");
    }

    #[test]
    fn a_lock_file_left_by_a_killed_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let left = Holder {
            pid: 4_000_000,
            relay: Some("127.0.0.1:1".into()),
            client_ports: None,
            config: None,
        };
        fs::write(
            StateLock::path(dir.path()),
            serde_json::to_vec(&left).unwrap(),
        )
        .unwrap();
        let got = StateLock::acquire(dir.path()).unwrap();
        assert_eq!(got.stale, Some(left));
        let text = fs::read_to_string(StateLock::path(dir.path())).unwrap();
        let now: Holder = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(now.pid, std::process::id());
    }
}
