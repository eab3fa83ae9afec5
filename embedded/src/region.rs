//! A byte region of a role's storage: RAM the core writes, or keys the provisioning holds,
//! which the core only reads.
//!
//! The core's roles take one byte-region type for all their storage (`AsMut<[u8]>` and
//! `AsRef<[u8]>`), and take the slots' pseudonym keys for blame rounds as one of them. On a
//! device those keys stay where the provisioning blob has them (flash on a real board):
//! copying them would cost 32 bytes of RAM a slot, 8 KiB for 256 slots.
//!
//! Owns only the view; it must not write to the provisioning area.

/// RAM to write, or provisioned bytes to read.
pub enum Region {
    /// A static buffer the core writes.
    Ram(&'static mut [u8]),
    /// Bytes of the provisioning area, read in place.
    Provisioned(&'static [u8]),
}

impl AsRef<[u8]> for Region {
    fn as_ref(&self) -> &[u8] {
        match self {
            Region::Ram(bytes) => bytes,
            Region::Provisioned(bytes) => bytes,
        }
    }
}

impl AsMut<[u8]> for Region {
    /// The RAM; a provisioned region is read-only and shows no bytes to write (the core
    /// never writes the keys it is given).
    fn as_mut(&mut self) -> &mut [u8] {
        match self {
            Region::Ram(bytes) => bytes,
            Region::Provisioned(_) => &mut [],
        }
    }
}
