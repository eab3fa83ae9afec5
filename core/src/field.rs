//! Big-endian integers at fixed offsets of byte buffers: the accessors behind the checked
//! views of what the roles keep in their own storage (log entries, sent cells, replayed
//! records).
//!
//! A view checks its buffer's length once, when it is made; these then never find a field
//! out of range. Should one be, a read gives zero and a write does nothing, so a mistake in
//! a view costs a wrong value, never a panic. This module must not know any layout.

/// The `u16` at `bytes[at..at + 2]`.
pub(crate) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(array_at(bytes, at))
}

/// The `u32` at `bytes[at..at + 4]`.
pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array_at(bytes, at))
}

/// The `u64` at `bytes[at..at + 8]`.
pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(array_at(bytes, at))
}

/// The byte at `bytes[at]`.
pub(crate) fn u8_at(bytes: &[u8], at: usize) -> u8 {
    bytes.get(at).copied().unwrap_or(0)
}

/// Writes `value` at `bytes[at..]`.
pub(crate) fn put(bytes: &mut [u8], at: usize, value: &[u8]) {
    if let Some(dst) = bytes
        .get_mut(at..)
        .and_then(|rest| rest.get_mut(..value.len()))
    {
        dst.copy_from_slice(value);
    }
}

fn array_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes
        .get(at..)
        .and_then(<[u8]>::first_chunk::<N>)
        .copied()
        .unwrap_or([0; N])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_and_never_panic() {
        let mut b = [0u8; 16];
        put(&mut b, 1, &0x0102u16.to_be_bytes());
        put(&mut b, 3, &0x0304_0506u32.to_be_bytes());
        put(&mut b, 7, &0x0708_090A_0B0C_0D0Eu64.to_be_bytes());
        assert_eq!(u16_at(&b, 1), 0x0102);
        assert_eq!(u32_at(&b, 3), 0x0304_0506);
        assert_eq!(u64_at(&b, 7), 0x0708_090A_0B0C_0D0E);
        assert_eq!(u8_at(&b, 15), 0);
        // Out of range: zero, and writes change nothing.
        let before = b;
        put(&mut b, 15, &[1, 2]);
        assert_eq!(b, before);
        assert_eq!(u64_at(&b, 9), 0);
        assert_eq!(u8_at(&b, 16), 0);
        assert_eq!(u16_at(&b, usize::MAX), 0);
        put(&mut b, usize::MAX, &[1]);
        assert_eq!(b, before);
    }
}
