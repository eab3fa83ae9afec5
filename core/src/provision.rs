//! Provisioning: the blob a host tool writes into a device before boot, and the node
//! configuration it carries.
//!
//! One firmware image per role serves every node: what differs between nodes (identity,
//! keys, the group's parameters, the relay's address) comes from a provisioning area the
//! firmware never links into. The host writes the blob with `Node::to_blob` (feature `std`, or
//! [`Node::emit`]); the firmware reads it in place with [`Node::parse`], without an
//! allocator, borrowing the variable parts from the area.
//!
//! The container:
//!
//! ```text
//! offset  size  field
//!      0     4  magic   "DSPV"
//!      4     4  app     four ASCII bytes naming the firmware the payload is for:
//!                       "TRST" (trustee), "CLNT" (client), "NCHK" (netcheck),
//!                       "TSET" (a trustee's setup image, [`EpochSetup`])
//!      8     4  length  payload length, u32 little-endian
//!     12     n  payload, postcard-encoded
//! ```
//!
//! A node's payload is postcard's encoding of `(FORMAT, Node)`: the format number
//! ([`FORMAT`], a varint) and then [`Node`]'s fields in declaration order. The peers' keys
//! are one byte string of 32 bytes per key: the trustees' (for a client) or clients' (for a
//! trustee) session public keys in index order, then every slot's pseudonym public key in
//! slot order (what a blame round's grounds are checked under), then the peers' Ed25519
//! identity public keys in index order (what a dispute's request is checked under). The relay is a [`Relay`]: variant 0 and an IPv4
//! address (4 bytes), or variant 1 and a DNS name (a string: varint length, then the bytes),
//! which the device resolves at each dial. The last two fields are the board's own address
//! when it does not take one by DHCP ([`Ipv4Static`]: an option, 0 for none, or 1, the
//! address, the prefix length, the gateway and the DNS server, 4 + 1 + 4 + 4 bytes) and the
//! Wi-Fi network of a board that needs one ([`Wifi`]: an option, 0 for none, or 1, the SSID
//! and the passphrase, each a string). Last comes a client's pseudonym ([`Pseudonym`]: an
//! option, 0 for none, as for a trustee, or 1 and a byte string of 64 bytes (varint length
//! 64): the pseudonym secret (32 bytes) and the relay's Ristretto255 DH public key (32
//! bytes)), from which the client derives the key its slot's cells are sealed under.
//!
//! Format 2 added the relay's name, the static address and the Wi-Fi network; format 3 the
//! node's identity secret (Ed25519, after the session secret); format 4 the group's policy
//! (after `min_clients`: the anonymity minimum, then the log window's time in milliseconds
//! and its size in bytes, each a varint), so that a device trustee holds the relay to the
//! group's own window; format 5 the client's pseudonym (last); format 6 the slots'
//! pseudonym public keys after the peers' session keys, so that a device answers blame
//! rounds; format 7 the peers' identity public keys after them, so that a device proves a
//! pair's secret only when shown its peer's contradicting reveal. Formats 1 to 6 are
//! refused with [`ProvisionError::Format`].
//!
//! Boards without a hardware RNG get fresh entropy per boot in a separate seed area,
//! `"SEED"` followed by 32 random bytes ([`parse_seed`]); the host rewrites it before every
//! boot and the firmware wipes it once read.
//!
//! Nothing here panics on any input.
//!
//! Owns the blob and seed formats; it must not hold keys beyond what it parses.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::policy::{LogWindow, Policy};
use crate::time::Duration;
use crate::wire::NodeRole;
use crate::{cell_length_ok, MAX_CELL_LENGTH, MAX_CLIENTS, MAX_TRUSTEES};

/// Magic at the start of a provisioning blob.
pub const MAGIC: [u8; 4] = *b"DSPV";
/// Length of the container header (magic, app, payload length).
pub const HEADER_LEN: usize = 12;
/// App tag of trustee firmware.
pub const TRUSTEE_APP: [u8; 4] = *b"TRST";
/// App tag of client firmware.
pub const CLIENT_APP: [u8; 4] = *b"CLNT";
/// Version of the node payload; a blob of another format is refused.
pub const FORMAT: u16 = 7;
/// Magic at the start of a seed blob.
pub const SEED_MAGIC: [u8; 4] = *b"SEED";
/// Bytes of entropy in a seed blob.
pub const SEED_LEN: usize = 32;
/// Bytes of one session public key in [`PeerKeys`].
pub const KEY_LEN: usize = 32;
/// Longest relay name, in bytes (a DNS name in its dotted text form).
pub const MAX_NAME_LEN: usize = 253;
/// Longest Wi-Fi network name (SSID), in bytes.
pub const MAX_SSID_LEN: usize = 32;
/// Shortest and longest Wi-Fi (WPA2/WPA3 personal) passphrase, in bytes.
pub const PASSPHRASE_LEN: core::ops::RangeInclusive<usize> = 8..=63;

/// The app tag of the firmware that runs `role`.
pub const fn app_for(role: NodeRole) -> [u8; 4] {
    match role {
        NodeRole::Client => CLIENT_APP,
        NodeRole::Trustee => TRUSTEE_APP,
    }
}

/// A provisioning blob: the app it is for and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blob<'a> {
    /// Four ASCII bytes naming the app, e.g. [`TRUSTEE_APP`].
    pub app: [u8; 4],
    /// The app's postcard-encoded configuration.
    pub payload: &'a [u8],
}

/// Why a provisioning area holds no usable blob.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobError {
    /// The area does not start with [`MAGIC`]: nothing was provisioned.
    Missing,
    /// The header declares more payload than the area holds.
    Truncated {
        /// Payload bytes the header declares.
        declared: usize,
        /// Payload bytes the area has room for.
        available: usize,
    },
    /// The blob is for another app.
    WrongApp {
        /// The app the caller expected.
        expected: [u8; 4],
        /// The app the blob names.
        found: [u8; 4],
    },
    /// The payload does not decode as the app's configuration.
    Payload(postcard::Error),
    /// The payload decoded but left bytes unused.
    TrailingBytes,
    /// The output buffer is too small for the blob.
    BufferTooSmall {
        /// Bytes the blob needs.
        needed: usize,
    },
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no provisioning blob (magic \"DSPV\" not found)"),
            Self::Truncated {
                declared,
                available,
            } => write!(
                f,
                "provisioning blob declares {declared} payload bytes, area holds {available}"
            ),
            Self::WrongApp { expected, found } => {
                f.write_str("provisioning blob is for app ")?;
                app_name(f, found)?;
                f.write_str(", this firmware is ")?;
                app_name(f, expected)
            }
            // postcard's own messages (0.7 KiB of text) only where there is room for them.
            #[cfg(any(test, feature = "std"))]
            Self::Payload(e) => write!(f, "provisioning payload does not decode: {e}"),
            #[cfg(not(any(test, feature = "std")))]
            Self::Payload(_) => f.write_str("provisioning payload does not decode"),
            Self::TrailingBytes => f.write_str("provisioning payload has trailing bytes"),
            Self::BufferTooSmall { needed } => {
                write!(f, "provisioning blob needs a {needed}-byte buffer")
            }
        }
    }
}

impl core::error::Error for BlobError {}

/// Shows an app tag as text when it is printable ASCII, else as hex digits (written out
/// here, not with `{:x?}`, which would bring the slice `Debug` code into every firmware).
fn app_name(f: &mut fmt::Formatter<'_>, app: &[u8; 4]) -> fmt::Result {
    if let Ok(name) = core::str::from_utf8(app) {
        if app.iter().all(u8::is_ascii_graphic) {
            return f.write_str(name);
        }
    }
    for byte in app {
        for nibble in [byte >> 4, byte & 15] {
            // A nibble is always a hex digit.
            let digit = char::from_digit(u32::from(nibble), 16).unwrap_or('?');
            fmt::Write::write_char(f, digit)?;
        }
    }
    f.write_str(" (hex)")
}

/// The container header's fields: magic, app tag, declared payload length (LE).
fn split_header(header: &[u8; HEADER_LEN]) -> ([u8; 4], [u8; 4], [u8; 4]) {
    let mut fields = [[0u8; 4]; 3];
    for (field, bytes) in fields.iter_mut().zip(header.chunks_exact(4)) {
        field.copy_from_slice(bytes);
    }
    let [magic, app, declared] = fields;
    (magic, app, declared)
}

/// The container header for a payload of `declared` bytes for `app`.
fn join_header(app: [u8; 4], declared: u32) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    let fields = [MAGIC, app, declared.to_le_bytes()];
    for (bytes, field) in header.chunks_exact_mut(4).zip(fields) {
        bytes.copy_from_slice(&field);
    }
    header
}

impl<'a> Blob<'a> {
    /// Reads the blob at the start of a provisioning area.
    pub fn parse(area: &'a [u8]) -> Result<Self, BlobError> {
        let (header, rest) = area
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(BlobError::Missing)?;
        let (magic, app, declared) = split_header(header);
        if magic != MAGIC {
            return Err(BlobError::Missing);
        }
        let declared = u32::from_le_bytes(declared);
        let declared = usize::try_from(declared).unwrap_or(usize::MAX);
        let payload = rest.get(..declared).ok_or(BlobError::Truncated {
            declared,
            available: rest.len(),
        })?;
        Ok(Self { app, payload })
    }

    /// Decodes the whole payload as `T`, checking that the blob is for `app`.
    pub fn decode<T: Deserialize<'a>>(&self, app: [u8; 4]) -> Result<T, BlobError> {
        if self.app != app {
            return Err(BlobError::WrongApp {
                expected: app,
                found: self.app,
            });
        }
        let (value, rest) = postcard::take_from_bytes(self.payload).map_err(BlobError::Payload)?;
        if !rest.is_empty() {
            return Err(BlobError::TrailingBytes);
        }
        Ok(value)
    }

    /// Writes the blob (header and payload) into `out`; returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, BlobError> {
        let len = HEADER_LEN + self.payload.len();
        let declared = u32::try_from(self.payload.len())
            .map_err(|_| BlobError::BufferTooSmall { needed: len })?;
        let (header, payload) = out
            .get_mut(..len)
            .and_then(<[u8]>::split_first_chunk_mut::<HEADER_LEN>)
            .ok_or(BlobError::BufferTooSmall { needed: len })?;
        *header = join_header(self.app, declared);
        payload.copy_from_slice(self.payload);
        Ok(len)
    }
}

/// Session public keys of a node's peers, [`KEY_LEN`] bytes each, in index order.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerKeys<'a>(#[serde(borrow)] &'a [u8]);

impl<'a> PeerKeys<'a> {
    /// The keys laid end to end in `flat`; `None` unless its length is a multiple of
    /// [`KEY_LEN`].
    pub const fn from_flat(flat: &'a [u8]) -> Option<Self> {
        if flat.len().is_multiple_of(KEY_LEN) {
            Some(PeerKeys(flat))
        } else {
            None
        }
    }

    /// Number of keys.
    pub const fn len(&self) -> usize {
        self.0.len() / KEY_LEN
    }

    /// Whether there are no keys.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Key `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<[u8; KEY_LEN]> {
        let bytes = self.0.get(i * KEY_LEN..(i + 1) * KEY_LEN)?;
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(bytes);
        Some(key)
    }

    /// The keys in index order.
    pub fn iter(&self) -> impl Iterator<Item = [u8; KEY_LEN]> + 'a {
        self.0.chunks_exact(KEY_LEN).map(|c| {
            let mut key = [0u8; KEY_LEN];
            key.copy_from_slice(c);
            key
        })
    }

    /// The keys laid end to end.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl fmt::Debug for PeerKeys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKeys({} keys)", self.len())
    }
}

/// The relay as the device reaches it.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Relay<'a> {
    /// An IPv4 address.
    Ipv4([u8; 4]),
    /// A DNS name (dotted text, e.g. `relay.example.org`), resolved to an IPv4 address at
    /// each dial.
    Name(#[serde(borrow)] &'a str),
}

impl fmt::Display for Relay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Relay::Ipv4([a, b, c, d]) => write!(f, "{a}.{b}.{c}.{d}"),
            Relay::Name(name) => f.write_str(name),
        }
    }
}

impl fmt::Debug for Relay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Whether `name` is a DNS host name the device can look up: at most [`MAX_NAME_LEN`]
/// bytes of dot-separated labels, each 1 to 63 letters, digits or hyphens, neither starting
/// nor ending with a hyphen, and not all digits and dots (that is an address, not a name).
pub fn host_name_ok(name: &str) -> bool {
    let label_ok = |label: &str| {
        let b = label.as_bytes();
        (1..=63).contains(&b.len())
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b.first() != Some(&b'-')
            && b.last() != Some(&b'-')
    };
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name.split('.').all(label_ok)
        && !name.bytes().all(|c| c.is_ascii_digit() || c == b'.')
}

/// A board's own IPv4 configuration, for a network without DHCP or a firmware built
/// without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Static {
    /// The board's address.
    pub address: [u8; 4],
    /// The network's prefix length, 1 to 32.
    pub prefix_len: u8,
    /// The gateway to the relay when it is not on this network; 0.0.0.0 for none.
    pub gateway: [u8; 4],
    /// The DNS server that looks the relay's name up; 0.0.0.0 for none.
    pub dns_server: [u8; 4],
}

impl Ipv4Static {
    /// Whether the address is a usable unicast address for its prefix length.
    pub fn is_valid(&self) -> bool {
        let address = u32::from_be_bytes(self.address);
        let host_mask = u32::MAX
            .checked_shr(u32::from(self.prefix_len))
            .unwrap_or(0);
        (1..=32).contains(&self.prefix_len)
            && address != 0
            && self.address[0] != 127
            && self.address[0] < 224
            // Neither the network's own address nor its broadcast address (for prefixes up
            // to /30; /31 and /32 have none).
            && (self.prefix_len > 30 || (address & host_mask != 0 && address & host_mask != host_mask))
    }
}

/// The Wi-Fi network a board joins.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wifi<'a> {
    /// The network's name (SSID), 1 to [`MAX_SSID_LEN`] bytes.
    #[serde(borrow)]
    pub ssid: &'a str,
    /// Its WPA2/WPA3 personal passphrase, printable ASCII of [`PASSPHRASE_LEN`] bytes; empty
    /// for an open network.
    #[serde(borrow)]
    pub passphrase: &'a str,
}

impl Wifi<'_> {
    /// Whether the SSID and the passphrase are of a length and kind a board can use.
    pub fn is_valid(&self) -> bool {
        let phrase = self.passphrase.as_bytes();
        (1..=MAX_SSID_LEN).contains(&self.ssid.len())
            && (phrase.is_empty()
                || (PASSPHRASE_LEN.contains(&phrase.len())
                    && phrase.iter().all(|c| (0x20..0x7f).contains(c))))
    }
}

impl fmt::Debug for Wifi<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The passphrase is a secret: never shown.
        f.debug_struct("Wifi")
            .field("ssid", &self.ssid)
            .finish_non_exhaustive()
    }
}

/// Bytes of a [`Pseudonym`]: the pseudonym secret, then the relay's DH public key.
pub const PSEUDONYM_LEN: usize = 64;

/// A client's pseudonym, what it needs to seal its slot's cells: its pseudonym secret (32
/// bytes, read as every Ristretto255 secret), then the relay's Ristretto255 DH public key
/// (32 bytes), read in place (encoded as a byte string, as [`PeerKeys`] is).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pseudonym<'a>(#[serde(borrow)] &'a [u8]);

impl<'a> Pseudonym<'a> {
    /// The pseudonym of [`PSEUDONYM_LEN`] bytes; `None` if `bytes` is of another length.
    pub const fn from_bytes(bytes: &'a [u8]) -> Option<Self> {
        if bytes.len() == PSEUDONYM_LEN {
            Some(Pseudonym(bytes))
        } else {
            None
        }
    }

    fn half(&self, at: usize) -> Option<[u8; 32]> {
        self.0.get(at..at + 32)?.try_into().ok()
    }

    /// The pseudonym secret (`None` if the pseudonym is cut short).
    pub fn secret(&self) -> Option<[u8; 32]> {
        self.half(0)
    }

    /// The relay's DH public key (`None` if the pseudonym is cut short).
    pub fn relay_dh(&self) -> Option<[u8; 32]> {
        self.half(32)
    }
}

impl fmt::Debug for Pseudonym<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonym(..)")
    }
}

/// Everything a device needs to run one client or trustee of a group.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node<'a> {
    /// Client or trustee.
    pub role: NodeRole,
    /// Index of the node among the group's clients or trustees.
    pub index: u16,
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
    /// The node's long-term link secret (its Noise static key).
    pub link_secret: [u8; 32],
    /// The node's session secret (its DC-net pad key, Ristretto255).
    pub session_secret: [u8; 32],
    /// The node's identity secret (Ed25519: it signs what the node states in blame).
    pub identity_secret: [u8; 32],
    /// The relay's long-term link public key.
    pub relay_key: [u8; 32],
    /// The relay as the device reaches it: an IPv4 address or a DNS name.
    #[serde(borrow)]
    pub relay: Relay<'a>,
    /// The relay's TCP port.
    pub relay_port: u16,
    /// Clients in the group.
    pub clients: u16,
    /// Trustees in the group.
    pub trustees: u16,
    /// Pseudonym slots in the group.
    pub slots: u16,
    /// A client's pseudonym slot (0 for a trustee).
    pub slot: u16,
    /// The group's base cell length.
    pub cell_len: u32,
    /// The group's largest cell.
    pub max_cell_len: u32,
    /// The peers' session public keys (every trustee's for a client, every client's for a
    /// trustee), then every slot's pseudonym public key, then the peers' identity public
    /// keys (what a blame dispute's request is signed with): [`Node::pad_keys`],
    /// [`Node::pseudonym_keys`] and [`Node::identity_keys`].
    #[serde(borrow)]
    pub peer_keys: PeerKeys<'a>,
    /// A client's local TCP port for applications (0 for a trustee).
    pub local_port: u16,
    /// Smallest online set the node takes part in.
    pub min_clients: u16,
    /// The group's anonymity minimum (its buddy groups' least size).
    pub min_anonymity: u16,
    /// The time part of the group's log window, in milliseconds.
    pub log_window_millis: u64,
    /// The size part of the group's log window, in bytes.
    pub log_window_bytes: u64,
    /// The board's own address, for a network without DHCP (`None`: DHCP).
    pub ipv4: Option<Ipv4Static>,
    /// The Wi-Fi network to join, for a board whose network is Wi-Fi (`None` on Ethernet).
    #[serde(borrow)]
    pub wifi: Option<Wifi<'a>>,
    /// A client's pseudonym (`None` for a trustee).
    #[serde(borrow)]
    pub pseudonym: Option<Pseudonym<'a>>,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("role", &self.role)
            .field("index", &self.index)
            .field("relay", &self.relay)
            .field("relay_port", &self.relay_port)
            .field("clients", &self.clients)
            .field("trustees", &self.trustees)
            .field("slots", &self.slots)
            .field("peer_keys", &self.peer_keys)
            .field("ipv4", &self.ipv4)
            .field("wifi", &self.wifi)
            .finish_non_exhaustive()
    }
}

/// Why a provisioning area holds no usable node configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The container is missing, cut short, for another app, or does not decode.
    Blob(BlobError),
    /// The payload is of another format version.
    Format(u16),
    /// The payload names another role than the firmware runs.
    WrongRole {
        /// The firmware's role.
        expected: NodeRole,
        /// The payload's role.
        found: NodeRole,
    },
    /// A field is out of range or inconsistent with the others; names the field.
    Field(&'static str),
}

impl fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Blob(e) => write!(f, "{e}"),
            Self::Format(v) => write!(
                f,
                "provisioning payload is format {v}, this firmware reads format {FORMAT}"
            ),
            Self::WrongRole { expected, found } => write!(
                f,
                "provisioning payload is for a {found:?}, this firmware runs a {expected:?}"
            ),
            Self::Field(name) => write!(f, "provisioning field `{name}` is out of range"),
        }
    }
}

impl core::error::Error for ProvisionError {}

impl From<BlobError> for ProvisionError {
    fn from(e: BlobError) -> Self {
        ProvisionError::Blob(e)
    }
}

impl<'a> Node<'a> {
    /// Reads and checks the node configuration for `role` at the start of a provisioning
    /// area, borrowing the peers' keys from it.
    pub fn parse(area: &'a [u8], role: NodeRole) -> Result<Self, ProvisionError> {
        let (format, node): (u16, Node<'a>) = Blob::parse(area)?.decode(app_for(role))?;
        if format != FORMAT {
            return Err(ProvisionError::Format(format));
        }
        if node.role != role {
            return Err(ProvisionError::WrongRole {
                expected: role,
                found: node.role,
            });
        }
        node.check()?;
        Ok(node)
    }

    /// The peers' session public keys (32 bytes each, in index order): the trustees' for a
    /// client, the clients' for a trustee.
    pub fn pad_keys(&self) -> &'a [u8] {
        let peers = match self.role {
            NodeRole::Client => self.trustees,
            NodeRole::Trustee => self.clients,
        };
        let bytes = self.peer_keys.as_bytes();
        bytes.get(..usize::from(peers) * KEY_LEN).unwrap_or(bytes)
    }

    /// Every slot's pseudonym public key (32 bytes each, in slot order).
    pub fn pseudonym_keys(&self) -> &'a [u8] {
        let bytes = self.peer_keys.as_bytes();
        let at = self.pad_keys().len();
        bytes
            .get(at..at + usize::from(self.slots) * KEY_LEN)
            .unwrap_or_default()
    }

    /// The peers' Ed25519 identity public keys (32 bytes each, in index order): the
    /// trustees' for a client, the clients' for a trustee.
    pub fn identity_keys(&self) -> &'a [u8] {
        let bytes = self.peer_keys.as_bytes();
        bytes
            .get(self.pad_keys().len() + self.pseudonym_keys().len()..)
            .unwrap_or_default()
    }

    /// The group's policy, as the blob gives it.
    pub fn policy(&self) -> Policy {
        Policy {
            min_anonymity: self.min_anonymity,
            log_window: LogWindow {
                time: Duration::from_millis(self.log_window_millis),
                bytes: self.log_window_bytes,
            },
        }
    }

    /// Checks every field against the protocol limits and the others.
    pub fn check(&self) -> Result<(), ProvisionError> {
        let field = |ok: bool, name| {
            if ok {
                Ok(())
            } else {
                Err(ProvisionError::Field(name))
            }
        };
        let (clients, trustees) = (usize::from(self.clients), usize::from(self.trustees));
        let slots = usize::from(self.slots);
        field(clients > 0 && clients <= MAX_CLIENTS, "clients")?;
        field(trustees > 0 && trustees <= MAX_TRUSTEES, "trustees")?;
        field(self.slots > 0, "slots")?;
        field(cell_length_ok(self.cell_len as usize), "cell_len")?;
        field(
            self.max_cell_len >= self.cell_len && self.max_cell_len as usize <= MAX_CELL_LENGTH,
            "max_cell_len",
        )?;
        field(self.relay_port != 0, "relay_port")?;
        if let Relay::Name(name) = self.relay {
            field(host_name_ok(name), "relay")?;
        }
        if let Some(ipv4) = &self.ipv4 {
            field(ipv4.is_valid(), "ipv4")?;
        }
        if let Some(wifi) = &self.wifi {
            field(wifi.is_valid(), "wifi")?;
        }
        field(self.min_clients <= self.clients, "min_clients")?;
        field(
            self.min_anonymity > 0 && self.min_anonymity <= self.clients,
            "min_anonymity",
        )?;
        field(self.log_window_bytes > 0, "log_window_bytes")?;
        match self.role {
            NodeRole::Client => {
                field(self.index < self.clients, "index")?;
                field(self.slot < self.slots, "slot")?;
                field(self.local_port != 0, "local_port")?;
                field(
                    self.pseudonym.is_some_and(|p| p.0.len() == PSEUDONYM_LEN),
                    "pseudonym",
                )?;
                field(self.peer_keys.len() == 2 * trustees + slots, "peer_keys")
            }
            NodeRole::Trustee => {
                field(self.index < self.trustees, "index")?;
                field(self.pseudonym.is_none(), "pseudonym")?;
                field(self.peer_keys.len() == 2 * clients + slots, "peer_keys")
            }
        }
    }

    /// Writes the provisioning blob (container and payload) into `out`; returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, BlobError> {
        let payload = out.get_mut(HEADER_LEN..).ok_or(BlobError::BufferTooSmall {
            needed: HEADER_LEN + 1,
        })?;
        let n = postcard::to_slice(&(FORMAT, self), payload)
            .map_err(|_| BlobError::BufferTooSmall {
                needed: HEADER_LEN + self.payload_len(),
            })?
            .len();
        let declared = u32::try_from(n).map_err(|_| BlobError::BufferTooSmall { needed: n })?;
        if let Some(header) = out.first_chunk_mut::<HEADER_LEN>() {
            *header = join_header(app_for(self.role), declared);
        }
        Ok(HEADER_LEN + n)
    }

    /// Bytes of the payload [`Node::emit`] writes.
    pub fn payload_len(&self) -> usize {
        postcard::experimental::serialized_size(&(FORMAT, self)).unwrap_or(usize::MAX / 2)
    }

    /// The provisioning blob for this node (container and payload).
    #[cfg(any(test, feature = "std"))]
    pub fn to_blob(&self) -> std::vec::Vec<u8> {
        let mut out = std::vec![0u8; HEADER_LEN + self.payload_len()];
        // The buffer is exactly as long as the encoding.
        let n = self.emit(&mut out).unwrap_or(0);
        out.truncate(n);
        out
    }
}

/// App tag of a trustee's setup image (the dealer-free epoch setup on the device).
pub const SETUP_APP: [u8; 4] = *b"TSET";
/// Version of the setup payload ([`EpochSetup`]); a blob of another format is refused.
pub const SETUP_FORMAT: u16 = 1;

/// What a device trustee's setup image needs beside its DC-net node's blob: the group
/// description's fingerprint, the epoch it sets up, the group's fewest trustees, and the
/// trustees' Ed25519 identity public keys in trustee order (the clients' come from the
/// node's blob, [`Node::identity_keys`]).
///
/// Its payload is postcard's encoding of `(SETUP_FORMAT, EpochSetup)`: the format (a
/// varint), the fingerprint (32 bytes), the epoch (a varint), `min_trustees` (a varint)
/// and the trustees' keys (a byte string of 32 bytes per key), under app tag
/// [`SETUP_APP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochSetup<'a> {
    /// The group description's fingerprint (its digest).
    pub group: [u8; 32],
    /// The epoch set up.
    pub epoch: u64,
    /// Fewest trustees a setup may run with.
    pub min_trustees: u16,
    /// The trustees' identity public keys, in trustee order.
    #[serde(borrow)]
    pub trustees: PeerKeys<'a>,
}

impl<'a> EpochSetup<'a> {
    /// Reads and checks the setup payload at the start of an area.
    pub fn parse(area: &'a [u8]) -> Result<Self, ProvisionError> {
        let (format, setup): (u16, EpochSetup<'a>) = Blob::parse(area)?.decode(SETUP_APP)?;
        if format != SETUP_FORMAT {
            return Err(ProvisionError::Format(format));
        }
        let trustees = setup.trustees.len();
        if trustees == 0
            || trustees > MAX_TRUSTEES
            || !setup.trustees.as_bytes().len().is_multiple_of(KEY_LEN)
        {
            return Err(ProvisionError::Field("trustees"));
        }
        if setup.min_trustees == 0 || usize::from(setup.min_trustees) > trustees {
            return Err(ProvisionError::Field("min_trustees"));
        }
        Ok(setup)
    }

    /// The provisioning blob of this setup (container and payload).
    #[cfg(any(test, feature = "std"))]
    pub fn to_blob(&self) -> std::vec::Vec<u8> {
        let len = postcard::experimental::serialized_size(&(SETUP_FORMAT, self)).unwrap_or(0);
        let mut payload = std::vec![0u8; len];
        // The buffer is exactly as long as the encoding.
        let n = postcard::to_slice(&(SETUP_FORMAT, self), &mut payload).map_or(0, |p| p.len());
        let mut out = std::vec![0u8; HEADER_LEN + n];
        let n = Blob {
            app: SETUP_APP,
            payload: payload.get(..n).unwrap_or_default(),
        }
        .emit(&mut out)
        .unwrap_or(0);
        out.truncate(n);
        out
    }
}

impl Node<'_> {
    /// Where the session id lies in the node's blob (from the blob's start): after the
    /// header, the format, the role, the index and the group id. A device trustee's setup
    /// image writes the established epoch's session id there (and its pseudonym keys
    /// where [`Node::pseudonym_keys`] are) before it hands the board to the DC-net image.
    pub fn session_id_offset(&self) -> usize {
        let varint = |v: u32| match v {
            0..=0x7f => 1,
            0x80..=0x3fff => 2,
            0x4000..=0x1f_ffff => 3,
            0x20_0000..=0x0fff_ffff => 4,
            _ => 5,
        };
        let role = match self.role {
            NodeRole::Client => 0,
            NodeRole::Trustee => 1,
        };
        HEADER_LEN
            + varint(u32::from(FORMAT))
            + varint(role)
            + varint(u32::from(self.index))
            + self.group_id.len()
    }
}

/// Why a seed area holds no usable seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeedError {
    /// No seed: the host wrote none for this boot, or it was already used.
    Missing,
    /// The seed is one repeated byte: not entropy.
    Degenerate,
}

impl fmt::Display for SeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => write!(
                f,
                "no fresh seed for this boot (the host writes one per boot)"
            ),
            Self::Degenerate => write!(f, "seed bytes are all the same value"),
        }
    }
}

impl core::error::Error for SeedError {}

/// Reads the seed at the start of a seed area.
pub fn parse_seed(area: &[u8]) -> Result<[u8; SEED_LEN], SeedError> {
    let (magic, rest) = area.split_first_chunk::<4>().ok_or(SeedError::Missing)?;
    let seed = *rest.first_chunk::<SEED_LEN>().ok_or(SeedError::Missing)?;
    if *magic != SEED_MAGIC {
        return Err(SeedError::Missing);
    }
    if seed.iter().all(|&b| b == seed[0]) {
        return Err(SeedError::Degenerate);
    }
    Ok(seed)
}

#[cfg(test)]
mod tests;
