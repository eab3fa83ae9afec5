//! Files only their owner may read: the private key files of a configuration and the
//! provisioning blobs of `dissent qemu`; creating them so, and refusing one that others
//! can read, as ssh refuses such a key.
//!
//! **Unix.** A private file is created with mode 0600 and a public one with 0644, set
//! exactly whatever the umask. A private file is refused when its group or others have
//! any permission bit; the message gives the `chmod` that fixes it.
//!
//! **Windows.** There are no mode bits: a file's access list (DACL) says who may do what.
//! A private file is given, before anything is written to it, a protected access list
//! (nothing inherited from its folder) with a single entry: full access for the current
//! user. A public file keeps the access list it inherits from its folder. As OpenSSH for
//! Windows does for keys, a private file is refused when an entry of its access list
//! allows anything more than reading its attributes or its access list to anyone other
//! than its owner, the current user, SYSTEM or the Administrators group, or when it has
//! no access list at all (which lets everyone in); the message names those it lets in by
//! SID and gives the `icacls` commands that fix it. Deny entries only take access away
//! and are not looked at. The decision ([`acl::judge`]) is plain code, tested on every
//! platform; reading the access list is the Windows security API's.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;

/// Creates a new file (failing if it exists) only its owner can read or write.
pub fn create_private(path: &Path) -> io::Result<File> {
    imp::create_private(path)
}

/// Creates a new file (failing if it exists) anyone may read and only its owner write.
pub fn create_public(path: &Path) -> io::Result<File> {
    imp::create_public(path)
}

/// Checks that the open file `file`, found at `path`, is readable by its owner only.
pub fn check_private(file: &File, path: &Path) -> Result<(), Refused> {
    imp::check_private(file, path)
}

/// One command that makes every one of `paths` private (`chmod 600 A B` on Unix), where
/// the platform has one.
pub fn fix_all(paths: &[&Path]) -> Option<String> {
    imp::fix_all(paths)
}

/// Why a private file is refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum Refused {
    /// Its permissions could not be read.
    Unreadable(io::Error),
    /// Someone other than its owner may read or change it.
    TooOpen {
        /// Who may: `permissions 0644 are`, `access for S-1-5-11 is`.
        who: String,
        /// The same, short, for a list of files: `0644`, `access for S-1-5-11`.
        label: String,
        /// The command that makes the file private.
        fix: String,
    },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Unreadable(e) => write!(f, "cannot read its permissions: {e}"),
            Refused::TooOpen { who, fix, .. } => write!(
                f,
                "{who} too open: a private key file must be readable by its owner only; \
                 run: {fix}"
            ),
        }
    }
}

impl std::error::Error for Refused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Refused::Unreadable(e) => Some(e),
            Refused::TooOpen { .. } => None,
        }
    }
}

#[cfg_attr(not(windows), allow(dead_code))]
mod acl;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_who_and_how_to_fix_it() {
        let e = Refused::TooOpen {
            who: "permissions 0644 are".to_string(),
            label: "0644".to_string(),
            fix: "chmod 600 /tmp/dc/relay.json".to_string(),
        };
        assert_eq!(
            e.to_string(),
            "permissions 0644 are too open: a private key file must be readable by its \
             owner only; run: chmod 600 /tmp/dc/relay.json"
        );
    }

    #[test]
    fn a_new_private_file_passes_and_a_public_one_does_not_need_to() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("key.json");
        drop(create_private(&private).unwrap());
        check_private(&File::open(&private).unwrap(), &private).unwrap();
        assert_eq!(
            create_private(&private).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        let public = dir.path().join("system.json");
        drop(create_public(&public).unwrap());
        assert_eq!(
            create_public(&public).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }
}
