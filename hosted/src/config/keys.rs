//! A node's own key files (`dissent key new`): the private file FILE and its public half
//! FILE.pub, made on the node's own machine, for groups with no dealer.
//!
//! Format version 1 (docs/protocol.md, "Key files"), JSON:
//!
//! - FILE (private: mode 0600 on Unix, only its owner in its access list on Windows):
//!   `{"format": "dissent-key/1", "role", "name", "link", "identity", "dh"}`, the three
//!   32-byte secrets in hex: the X25519 link secret (Noise), the Ed25519 identity seed and
//!   the Ristretto255 pad DH secret (read little-endian and reduced; never zero).
//! - FILE.pub (public): `{"format": "dissent-key-pub/1", "role", "name", "link",
//!   "identity", "dh"}` with the three public keys in hex.
//!
//! The fingerprint of a public key file is `SHA256:` and the unpadded standard base64 of
//! SHA-256 over its canonical bytes: `role (1) ‖ link (32) ‖ identity (32) ‖ dh (32)`, role
//! 0 relay, 1 trustee, 2 client (the same byte the setup's identities use). The name is a
//! label and not part of the fingerprint.
//!
//! Owns the key file formats and fingerprints. It must not know about groups (`group.rs`)
//! or what the keys are used for.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use dissent_core::crypto::{pad_public_key, pad_secret, public_key};
use dissent_core::identity::identity_public_key;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{parse_hex, read_json, read_private_json, write_new, Access, Key};

/// The `format` of a private key file.
pub const PRIVATE_FORMAT: &str = "dissent-key/1";
/// The `format` of a public key file.
pub const PUBLIC_FORMAT: &str = "dissent-key-pub/1";
/// Longest name of a key.
pub const MAX_NAME_LEN: usize = 64;
/// Bytes of a public key file's canonical form.
pub const CANONICAL_LEN: usize = 1 + 3 * 32;

/// What a key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    /// The relay.
    Relay,
    /// A trustee.
    Trustee,
    /// A client.
    Client,
}

impl KeyRole {
    /// The role byte of the canonical form.
    pub fn byte(self) -> u8 {
        match self {
            KeyRole::Relay => 0,
            KeyRole::Trustee => 1,
            KeyRole::Client => 2,
        }
    }
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyRole::Relay => "relay",
            KeyRole::Trustee => "trustee",
            KeyRole::Client => "client",
        })
    }
}

impl std::str::FromStr for KeyRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "relay" => Ok(KeyRole::Relay),
            "trustee" => Ok(KeyRole::Trustee),
            "client" => Ok(KeyRole::Client),
            other => Err(format!("unknown role {other:?}: relay, trustee or client")),
        }
    }
}

/// A node's public keys (FILE.pub, or an entry of `group.json`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKeys {
    /// What the keys are for.
    pub role: KeyRole,
    /// A label (the file's stem when not given).
    pub name: String,
    /// X25519 link public key (Noise).
    pub link: Key,
    /// Ed25519 identity public key.
    pub identity: Key,
    /// Ristretto255 pad DH public key.
    pub dh: Key,
}

impl PublicKeys {
    /// `role ‖ link ‖ identity ‖ dh`.
    pub fn canonical(&self) -> [u8; CANONICAL_LEN] {
        let mut out = [0u8; CANONICAL_LEN];
        out[0] = self.role.byte();
        out[1..33].copy_from_slice(&self.link);
        out[33..65].copy_from_slice(&self.identity);
        out[65..97].copy_from_slice(&self.dh);
        out
    }

    /// `SHA256:<base64, no padding>` of the canonical form, as ssh shows key fingerprints.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.canonical())
    }
}

/// `SHA256:<base64 of SHA-256(bytes), no padding>`.
pub fn fingerprint(bytes: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(bytes)))
}

/// A node's private keys (FILE).
pub struct PrivateKeys {
    /// What the keys are for.
    pub role: KeyRole,
    /// The label.
    pub name: String,
    /// X25519 link secret.
    pub link: Key,
    /// Ed25519 identity seed.
    pub identity: Key,
    /// Ristretto255 pad DH secret.
    pub dh: Key,
}

impl fmt::Debug for PrivateKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKeys")
            .field("role", &self.role)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PrivateKeys {
    /// Fresh keys from the operating system's randomness.
    pub fn generate(role: KeyRole, name: &str) -> Result<PrivateKeys> {
        check_name(name)?;
        let mut keys = PrivateKeys {
            role,
            name: name.to_string(),
            link: [0; 32],
            identity: [0; 32],
            dh: [0; 32],
        };
        OsRng.fill_bytes(&mut keys.link);
        OsRng.fill_bytes(&mut keys.identity);
        // A secret that reduces to zero is no key (probability 2^-252).
        while pad_secret(&keys.dh).is_none() {
            OsRng.fill_bytes(&mut keys.dh);
        }
        Ok(keys)
    }

    /// The public half.
    pub fn public(&self) -> PublicKeys {
        PublicKeys {
            role: self.role,
            name: self.name.clone(),
            link: public_key(&self.link),
            identity: identity_public_key(&self.identity),
            dh: pad_public_key(&self.dh),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: String,
    role: KeyRole,
    name: String,
    link: String,
    identity: String,
    dh: String,
}

/// The public file beside `file`: `FILE.pub`.
pub fn public_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// `dissent key new`: writes fresh keys to `file` (private) and `file.pub`, refusing to
/// overwrite either. Returns the public keys.
pub fn new_key(file: &Path, role: KeyRole, name: Option<&str>) -> Result<PublicKeys> {
    let pub_path = public_path(file);
    for path in [file, pub_path.as_path()] {
        ensure!(
            !path.exists(),
            "{} exists; not overwriting a key file",
            path.display()
        );
    }
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("node")
        .to_string();
    let keys = PrivateKeys::generate(role, name.unwrap_or(&stem))?;
    let private = KeyFile {
        format: PRIVATE_FORMAT.to_string(),
        role,
        name: keys.name.clone(),
        link: hex::encode(keys.link),
        identity: hex::encode(keys.identity),
        dh: hex::encode(keys.dh),
    };
    write_new(file, &private, Access::Private)?;
    let public = keys.public();
    write_new(&pub_path, &public_file(&public), Access::Public)?;
    Ok(public)
}

fn public_file(keys: &PublicKeys) -> KeyFile {
    KeyFile {
        format: PUBLIC_FORMAT.to_string(),
        role: keys.role,
        name: keys.name.clone(),
        link: hex::encode(keys.link),
        identity: hex::encode(keys.identity),
        dh: hex::encode(keys.dh),
    }
}

/// Reads a private key file (refused when others may read it) and checks it.
pub fn load_private(file: &Path) -> Result<PrivateKeys> {
    let parsed: KeyFile = read_private_json(file)?;
    ensure!(
        parsed.format == PRIVATE_FORMAT,
        "{}: format {:?} is not a private key file of this version ({PRIVATE_FORMAT})",
        file.display(),
        parsed.format
    );
    check_name(&parsed.name).with_context(|| file.display().to_string())?;
    let keys = PrivateKeys {
        role: parsed.role,
        name: parsed.name,
        link: parse_hex(file, "link", &parsed.link)?,
        identity: parse_hex(file, "identity", &parsed.identity)?,
        dh: parse_hex(file, "dh", &parsed.dh)?,
    };
    ensure!(
        pad_secret(&keys.dh).is_some(),
        "{}: dh: not a valid secret",
        file.display()
    );
    Ok(keys)
}

/// Reads a public key file and checks its keys.
pub fn load_public(file: &Path) -> Result<PublicKeys> {
    let parsed: KeyFile = read_json(file)?;
    ensure!(
        parsed.format == PUBLIC_FORMAT,
        "{}: format {:?} is not a public key file of this version ({PUBLIC_FORMAT})",
        file.display(),
        parsed.format
    );
    let keys = PublicKeys {
        role: parsed.role,
        name: parsed.name,
        link: parse_hex(file, "link", &parsed.link)?,
        identity: parse_hex(file, "identity", &parsed.identity)?,
        dh: parse_hex(file, "dh", &parsed.dh)?,
    };
    check_public(&keys).with_context(|| file.display().to_string())?;
    Ok(keys)
}

/// Checks a name and that each public key is a valid point of its group.
pub fn check_public(keys: &PublicKeys) -> Result<()> {
    check_name(&keys.name)?;
    ensure!(
        ed25519_dalek_valid(&keys.identity),
        "identity: not an Ed25519 public key"
    );
    ensure!(
        dissent_core::ristretto::keys::PublicKey::from_bytes(&keys.dh).is_ok(),
        "dh: not a Ristretto255 public key"
    );
    Ok(())
}

fn ed25519_dalek_valid(key: &Key) -> bool {
    // A decodable point of no small order is all a file can show of a key.
    ed25519_dalek::VerifyingKey::from_bytes(key).is_ok_and(|k| !k.is_weak())
}

/// Names: 1 to 64 characters of letters, digits, `-`, `_` and `.`.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        bail!("name {name:?}: 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_and_fingerprint() {
        let keys = PublicKeys {
            role: KeyRole::Trustee,
            name: "t".into(),
            link: [1; 32],
            identity: [2; 32],
            dh: [3; 32],
        };
        let c = keys.canonical();
        assert_eq!(c[0], 1);
        assert_eq!(&c[1..33], &[1; 32]);
        assert_eq!(&c[65..], &[3; 32]);
        // SHA-256 of the empty string, as `ssh-keygen -l` would print it.
        assert_eq!(
            fingerprint(b""),
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert!(keys.fingerprint().starts_with("SHA256:"));
        assert_eq!(keys.fingerprint().len(), 7 + 43);
    }

    #[test]
    fn new_key_files_round_trip_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("alice.key");
        let public = new_key(&file, KeyRole::Client, None).unwrap();
        assert_eq!(public.name, "alice");
        let private = load_private(&file).unwrap();
        assert_eq!(private.public(), public);
        assert_eq!(load_public(&public_path(&file)).unwrap(), public);
        assert!(new_key(&file, KeyRole::Client, None).is_err());
        // A public file is not a private one, and the other way round.
        assert!(load_public(&file).is_err());
    }

    #[test]
    fn bad_names_and_keys_are_refused() {
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
        let mut keys = PrivateKeys::generate(KeyRole::Relay, "r").unwrap().public();
        keys.dh = [0xff; 32];
        assert!(check_public(&keys).is_err());
    }
}
