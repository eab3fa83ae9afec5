//! Provisioning and seed blobs: what the host writes into a device's memory before boot.
//!
//! One firmware image per app serves every node: what differs between nodes comes from the
//! provisioning area, a region the firmware never links into (`memory/<board>.x` names it
//! `PROVISION`). Under QEMU the host loads it with `-device loader`; on a real board it is
//! flashed once. Its layout:
//!
//! ```text
//! offset  size  field
//!      0     4  magic  "DSPV"
//!      4     4  app    four ASCII bytes naming the app the payload is for, e.g. "NCHK"
//!      8     4  length payload length, u32 little-endian
//!     12     n  payload, postcard-encoded by the app's config type
//! ```
//!
//! Boards without a hardware RNG (QEMU) get fresh entropy per boot in a second area, `SEED`,
//! which the host rewrites before every boot: `"SEED"` followed by 32 random bytes. The
//! firmware wipes it once read, so a reboot without a new seed is refused rather than
//! reusing one.
//!
//! Nothing here panics on malformed input.

use core::fmt;

use serde::Deserialize;

/// Magic at the start of a provisioning blob.
pub const MAGIC: [u8; 4] = *b"DSPV";
/// Length of the provisioning header (magic, app, payload length).
pub const HEADER_LEN: usize = 12;
/// Magic at the start of a seed blob.
pub const SEED_MAGIC: [u8; 4] = *b"SEED";
/// Bytes of entropy in a seed blob.
pub const SEED_LEN: usize = 32;

/// A provisioning blob: the app it is for and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blob<'a> {
    /// Four ASCII bytes naming the app, e.g. `*b"NCHK"`.
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
    /// The output buffer is too small for the blob.
    BufferTooSmall {
        /// Bytes the blob needs.
        needed: usize,
    },
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => write!(f, "no provisioning blob (magic {:?} not found)", "DSPV"),
            Self::Truncated {
                declared,
                available,
            } => write!(
                f,
                "provisioning blob declares {declared} payload bytes, area holds {available}"
            ),
            Self::WrongApp { expected, found } => write!(
                f,
                "provisioning blob is for app {:?}, this firmware is {:?}",
                AppName(found),
                AppName(expected)
            ),
            Self::Payload(e) => write!(f, "provisioning payload does not decode: {e}"),
            Self::BufferTooSmall { needed } => {
                write!(f, "provisioning blob needs a {needed}-byte buffer")
            }
        }
    }
}

impl core::error::Error for BlobError {}

/// Shows an app tag as text when it is ASCII.
struct AppName<'a>(&'a [u8; 4]);

impl fmt::Debug for AppName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(self.0) {
            Ok(name) if self.0.iter().all(u8::is_ascii_graphic) => write!(f, "{name}"),
            _ => write!(f, "{:02x?}", self.0),
        }
    }
}

impl<'a> Blob<'a> {
    /// Reads the blob at the start of a provisioning area.
    pub fn parse(area: &'a [u8]) -> Result<Self, BlobError> {
        let (header, rest) = area
            .split_at_checked(HEADER_LEN)
            .ok_or(BlobError::Missing)?;
        if header[..4] != MAGIC {
            return Err(BlobError::Missing);
        }
        let app = [header[4], header[5], header[6], header[7]];
        let declared = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        let declared = usize::try_from(declared).unwrap_or(usize::MAX);
        let payload = rest.get(..declared).ok_or(BlobError::Truncated {
            declared,
            available: rest.len(),
        })?;
        Ok(Self { app, payload })
    }

    /// Decodes the payload as `T`, checking that the blob is for `app`.
    pub fn decode<T: Deserialize<'a>>(&self, app: [u8; 4]) -> Result<T, BlobError> {
        if self.app != app {
            return Err(BlobError::WrongApp {
                expected: app,
                found: self.app,
            });
        }
        postcard::from_bytes(self.payload).map_err(BlobError::Payload)
    }

    /// Writes the blob (header and payload) into `out`; returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, BlobError> {
        let len = HEADER_LEN + self.payload.len();
        let declared = u32::try_from(self.payload.len())
            .map_err(|_| BlobError::BufferTooSmall { needed: len })?;
        let out = out
            .get_mut(..len)
            .ok_or(BlobError::BufferTooSmall { needed: len })?;
        out[..4].copy_from_slice(&MAGIC);
        out[4..8].copy_from_slice(&self.app);
        out[8..12].copy_from_slice(&declared.to_le_bytes());
        out[HEADER_LEN..].copy_from_slice(self.payload);
        Ok(len)
    }
}

/// Why a seed area holds no usable seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeedError {
    /// No seed: the host wrote none for this boot, or it was already used.
    Missing,
    /// The seed is all zeroes (or one repeated byte): not entropy.
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
    let blob = area.get(..4 + SEED_LEN).ok_or(SeedError::Missing)?;
    if blob[..4] != SEED_MAGIC {
        return Err(SeedError::Missing);
    }
    let mut seed = [0; SEED_LEN];
    seed.copy_from_slice(&blob[4..]);
    if seed.iter().all(|&b| b == seed[0]) {
        return Err(SeedError::Degenerate);
    }
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Config {
        #[serde(with = "postcard::fixint::le")]
        port: u16,
        name: u8,
    }

    #[test]
    fn blob_bytes_are_the_documented_layout() {
        let blob = Blob {
            app: *b"NCHK",
            payload: &[0x58, 0x1b, 7],
        };
        let mut area = [0xffu8; 32];
        let len = blob.emit(&mut area).unwrap();
        assert_eq!(len, 15);
        assert_eq!(
            &area[..len],
            b"DSPVNCHK\x03\x00\x00\x00\x58\x1b\x07",
            "magic, app, little-endian length, payload"
        );
        assert_eq!(Blob::parse(&area).unwrap(), blob);
        let config: Config = blob.decode(*b"NCHK").unwrap();
        assert_eq!(
            config,
            Config {
                port: 7000,
                name: 7
            }
        );
    }

    #[test]
    fn blank_or_garbage_area_is_missing() {
        assert_eq!(Blob::parse(&[0u8; 64]), Err(BlobError::Missing));
        assert_eq!(Blob::parse(&[0xffu8; 64]), Err(BlobError::Missing));
        assert_eq!(
            Blob::parse(b"DSPV"),
            Err(BlobError::Missing),
            "short header"
        );
        assert_eq!(Blob::parse(&[]), Err(BlobError::Missing));
    }

    #[test]
    fn length_past_the_area_is_refused() {
        let mut area = [0u8; 20];
        area[..12].copy_from_slice(b"DSPVNCHK\x09\x00\x00\x00");
        assert_eq!(
            Blob::parse(&area),
            Err(BlobError::Truncated {
                declared: 9,
                available: 8
            })
        );
        area[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Blob::parse(&area),
            Err(BlobError::Truncated { available: 8, .. })
        ));
    }

    #[test]
    fn blob_for_another_app_or_bad_payload_is_refused() {
        let blob = Blob {
            app: *b"TRST",
            payload: &[1, 2, 3],
        };
        let err = blob.decode::<Config>(*b"NCHK").unwrap_err();
        assert_eq!(
            err,
            BlobError::WrongApp {
                expected: *b"NCHK",
                found: *b"TRST"
            }
        );
        assert!(err.to_string().contains("TRST"), "{err}");
        let short = Blob {
            app: *b"NCHK",
            payload: &[1],
        };
        assert!(matches!(
            short.decode::<Config>(*b"NCHK"),
            Err(BlobError::Payload(_))
        ));
    }

    #[test]
    fn emit_refuses_a_short_buffer() {
        let blob = Blob {
            app: *b"NCHK",
            payload: &[1, 2, 3],
        };
        assert_eq!(
            blob.emit(&mut [0; 14]),
            Err(BlobError::BufferTooSmall { needed: 15 })
        );
    }

    #[test]
    fn seed_is_read_and_bad_seeds_refused() {
        let mut area = [0u8; 64];
        assert_eq!(parse_seed(&area), Err(SeedError::Missing));
        area[..4].copy_from_slice(b"SEED");
        assert_eq!(parse_seed(&area), Err(SeedError::Degenerate));
        for (i, b) in area[4..36].iter_mut().enumerate() {
            *b = i as u8 * 7 + 1;
        }
        let seed = parse_seed(&area).unwrap();
        assert_eq!(seed[..3], [1, 8, 15]);
        assert_eq!(
            parse_seed(&area[..35]),
            Err(SeedError::Missing),
            "cut short"
        );
    }
}
