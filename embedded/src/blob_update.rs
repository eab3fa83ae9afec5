//! A blob in NOR flash changed in place, safe against a reset at any point: after
//! [`recover`] at the next boot the blob is the old one or the new one, never a mix, never
//! lost.
//!
//! NOR flash programs bits from 1 to 0 only and erases (back to 1) by whole sectors, so a
//! blob cannot be patched in place: its sector is erased and programmed again, and a reset
//! in between would lose it. [`update`] goes through a scratch area of its own (sectors
//! that hold nothing else):
//!
//! 1. erase the scratch area (its last sector first, where the record's trailer goes);
//! 2. program the new blob into it (the old blob's bytes with the caller's patch applied,
//!    a chunk at a time) and read it back;
//! 3. program the trailer at the scratch area's end: `"DSUP"`, the blob's length (u32 LE)
//!    and the SHA-256 of its bytes. From here on the new blob is committed;
//! 4. erase the blob's sectors, program them from the scratch copy, read them back;
//! 5. erase the scratch area, trailer sector first.
//!
//! [`recover`] reads the trailer: a whole one whose hash matches the scratch bytes means a
//! reset came after step 3, and it does steps 4 and 5 again (they are idempotent); anything
//! else means the blob was not touched yet, and a scratch area not erased is erased. A
//! reset during recovery is recovered the same way at the next boot. Torn programs and
//! torn erases leave bits in any state: only the trailer's hash decides.
//!
//! Both areas start on a sector boundary and span whole sectors (the blob's area may be
//! longer than the blob; only the blob's sectors are rewritten). The host tests run every
//! step of an update and of its recovery with power cut at each, on a simulated NOR flash
//! that refuses to program a word not erased and to erase less than a sector.
//!
//! Owns the update's order and the scratch record; which bytes change is the caller's.

use embedded_storage::nor_flash::NorFlash;
use sha2::{Digest, Sha256};

/// The scratch record's trailer magic.
const MAGIC: &[u8; 4] = b"DSUP";
/// Bytes of the trailer: magic, length, SHA-256.
const TRAILER_LEN: usize = 4 + 4 + 32;
/// Bytes moved per read or program (a multiple of every supported flash's read and write
/// sizes).
pub const CHUNK: usize = 256;

/// Where the blob and the scratch area are, as offsets in the flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// The blob's area: its first byte is the blob's.
    pub blob: u32,
    /// The blob's area's length.
    pub blob_len: u32,
    /// The scratch area.
    pub scratch: u32,
    /// The scratch area's length: at least the blob's sectors and a trailer's chunk.
    pub scratch_len: u32,
}

/// Why an update or a recovery stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateError<E> {
    /// The areas are not whole sectors, overlap, or cannot hold the blob and its trailer.
    Areas,
    /// The flash failed (or power went) during an operation.
    Flash(E),
    /// Bytes read back are not the bytes programmed.
    Verify,
}

/// What [`recover`] found at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovered {
    /// No update was under way: nothing done.
    Clean,
    /// An update was cut before it committed: its scratch copy erased; the old blob stands.
    Discarded,
    /// An update was cut after it committed: the new blob written from the scratch copy.
    Completed,
}

fn flash<E>(e: E) -> UpdateError<E> {
    UpdateError::Flash(e)
}

fn to_u32<E>(n: usize) -> Result<u32, UpdateError<E>> {
    u32::try_from(n).map_err(|_| UpdateError::Areas)
}

/// `n` rounded up to a multiple of `to`.
fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

impl Areas {
    fn check<F: NorFlash>(&self, len: usize) -> Result<(), UpdateError<F::Error>> {
        let erase = F::ERASE_SIZE;
        let (blob, scratch) = (self.blob as usize, self.scratch as usize);
        let (blob_len, scratch_len) = (self.blob_len as usize, self.scratch_len as usize);
        let aligned = [blob, scratch, blob_len, scratch_len]
            .iter()
            .all(|n| n.is_multiple_of(erase));
        let units = CHUNK.is_multiple_of(F::WRITE_SIZE) && CHUNK.is_multiple_of(F::READ_SIZE);
        let apart = blob + blob_len <= scratch || scratch + scratch_len <= blob;
        let fits = len <= blob_len && round_up(len, CHUNK) + CHUNK <= scratch_len;
        if aligned && units && apart && fits && len > 0 {
            Ok(())
        } else {
            Err(UpdateError::Areas)
        }
    }

    /// The trailer's chunk: the scratch area's last.
    fn trailer_at(&self) -> u32 {
        self.scratch + self.scratch_len - CHUNK as u32
    }
}

/// Erases `len` bytes of sectors from `at`, the last sector first.
fn erase_backwards<F: NorFlash>(
    f: &mut F,
    at: u32,
    len: usize,
) -> Result<(), UpdateError<F::Error>> {
    let erase = F::ERASE_SIZE;
    let mut end = at + to_u32(round_up(len, erase))?;
    while end > at {
        let from = end - erase as u32;
        f.erase(from, end).map_err(flash)?;
        end = from;
    }
    Ok(())
}

/// Makes the chunk at a blob offset (the flash at hand, to read the source from).
type Fill<'a, F> = dyn FnMut(
        &mut F,
        usize,
        &mut [u8],
    ) -> Result<(), UpdateError<<F as embedded_storage::nor_flash::ErrorType>::Error>>
    + 'a;

/// Programs `len` bytes at `to`, chunk `k` of them made by `fill(k * CHUNK, chunk)` (the
/// chunk past `len` left erased), and returns their SHA-256 as read back.
fn program<F: NorFlash>(
    f: &mut F,
    to: u32,
    len: usize,
    buf: &mut [u8; CHUNK],
    fill: &mut Fill<'_, F>,
) -> Result<[u8; 32], UpdateError<F::Error>> {
    let mut hash = Sha256::new();
    let mut at = 0;
    while at < len {
        let n = CHUNK.min(len - at);
        buf.fill(0xFF);
        fill(f, at, &mut buf[..n])?;
        let mut written = [0u8; CHUNK];
        written.copy_from_slice(buf);
        let place = to + to_u32(at)?;
        let whole = round_up(n, F::WRITE_SIZE);
        f.write(place, &written[..whole]).map_err(flash)?;
        f.read(place, &mut buf[..whole]).map_err(flash)?;
        if buf[..n] != written[..n] {
            return Err(UpdateError::Verify);
        }
        hash.update(&buf[..n]);
        at += n;
    }
    Ok(hash.finalize().into())
}

/// The SHA-256 of `len` bytes at `from`.
fn digest<F: NorFlash>(
    f: &mut F,
    from: u32,
    len: usize,
    buf: &mut [u8; CHUNK],
) -> Result<[u8; 32], UpdateError<F::Error>> {
    let mut hash = Sha256::new();
    let mut at = 0;
    while at < len {
        let n = CHUNK.min(len - at);
        let whole = round_up(n, F::READ_SIZE);
        f.read(from + to_u32(at)?, &mut buf[..whole])
            .map_err(flash)?;
        hash.update(&buf[..n]);
        at += n;
    }
    Ok(hash.finalize().into())
}

/// Replaces the blob of `len` bytes at `areas.blob` with a new one of the same length:
/// `patch(offset, chunk)` turns each chunk of the old blob (its bytes at `offset..`) into
/// the new one's. A reset at any point leaves the old or the new blob after [`recover`].
pub fn update<F: NorFlash>(
    f: &mut F,
    areas: Areas,
    len: usize,
    patch: &mut dyn FnMut(usize, &mut [u8]),
) -> Result<(), UpdateError<F::Error>> {
    areas.check::<F>(len)?;
    let mut buf = [0u8; CHUNK];
    // 1. The scratch area erased, trailer first.
    erase_backwards(f, areas.scratch, areas.scratch_len as usize)?;
    // 2. The new blob into it.
    let hash = program(f, areas.scratch, len, &mut buf, &mut |f, at, chunk| {
        let whole = round_up(chunk.len(), F::READ_SIZE);
        let mut old = [0u8; CHUNK];
        f.read(areas.blob + to_u32(at)?, &mut old[..whole])
            .map_err(flash)?;
        chunk.copy_from_slice(&old[..chunk.len()]);
        patch(at, chunk);
        Ok(())
    })?;
    // 3. The commit: the trailer.
    let mut trailer = [0xFFu8; CHUNK];
    trailer[..4].copy_from_slice(MAGIC);
    trailer[4..8].copy_from_slice(&to_u32::<F::Error>(len)?.to_le_bytes());
    trailer[8..TRAILER_LEN].copy_from_slice(&hash);
    f.write(areas.trailer_at(), &trailer).map_err(flash)?;
    let mut back = [0u8; CHUNK];
    f.read(areas.trailer_at(), &mut back).map_err(flash)?;
    if back != trailer {
        return Err(UpdateError::Verify);
    }
    // 4. and 5.
    finish(f, areas, len, &hash, &mut buf)
}

/// Steps 4 and 5: the blob's sectors from the scratch copy (whose hash is `hash`), then the
/// scratch area erased.
fn finish<F: NorFlash>(
    f: &mut F,
    areas: Areas,
    len: usize,
    hash: &[u8; 32],
    buf: &mut [u8; CHUNK],
) -> Result<(), UpdateError<F::Error>> {
    erase_backwards(f, areas.blob, len)?;
    let written = program(f, areas.blob, len, buf, &mut |f, at, chunk| {
        let whole = round_up(chunk.len(), F::READ_SIZE);
        let mut copy = [0u8; CHUNK];
        f.read(areas.scratch + to_u32(at)?, &mut copy[..whole])
            .map_err(flash)?;
        chunk.copy_from_slice(&copy[..chunk.len()]);
        Ok(())
    })?;
    if written != *hash {
        return Err(UpdateError::Verify);
    }
    erase_backwards(f, areas.scratch, areas.scratch_len as usize)
}

/// At boot, before the blob is read: finishes an update that was cut after it committed,
/// or discards one cut before (module docs).
pub fn recover<F: NorFlash>(f: &mut F, areas: Areas) -> Result<Recovered, UpdateError<F::Error>> {
    areas.check::<F>(1)?;
    let mut buf = [0u8; CHUNK];
    f.read(areas.trailer_at(), &mut buf).map_err(flash)?;
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&buf[8..TRAILER_LEN]);
    if &buf[..4] == MAGIC && len > 0 && areas.check::<F>(len).is_ok() {
        let mut scratch = [0u8; CHUNK];
        if digest(f, areas.scratch, len, &mut scratch)? == hash {
            finish(f, areas, len, &hash, &mut scratch)?;
            return Ok(Recovered::Completed);
        }
    }
    // Not committed: the blob was never touched. A scratch area not erased is erased.
    let mut at = 0;
    while at < areas.scratch_len as usize {
        f.read(areas.scratch + to_u32(at)?, &mut buf)
            .map_err(flash)?;
        if buf.iter().any(|&b| b != 0xFF) {
            erase_backwards(f, areas.scratch, areas.scratch_len as usize)?;
            return Ok(Recovered::Discarded);
        }
        at += CHUNK;
    }
    Ok(Recovered::Clean)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use embedded_storage::nor_flash::{ErrorType, NorFlashError, NorFlashErrorKind, ReadNorFlash};

    use super::*;

    const SECTOR: usize = 512;
    const WORD: usize = 16;
    /// Blob area, scratch area, then a sector of something else.
    const BLOB: u32 = 0;
    const BLOB_LEN: u32 = 4 * SECTOR as u32;
    const SCRATCH: u32 = BLOB_LEN;
    const SCRATCH_LEN: u32 = 4 * SECTOR as u32;
    const AREAS: Areas = Areas {
        blob: BLOB,
        blob_len: BLOB_LEN,
        scratch: SCRATCH,
        scratch_len: SCRATCH_LEN,
    };
    const SIZE: usize = (BLOB_LEN + SCRATCH_LEN) as usize + SECTOR;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum SimError {
        /// Power went during the operation (and stays off).
        PowerCut,
        /// A rule of NOR flash broken: the code under test is wrong.
        Rule(&'static str),
    }

    impl NorFlashError for SimError {
        fn kind(&self) -> NorFlashErrorKind {
            NorFlashErrorKind::Other
        }
    }

    /// A NOR flash that enforces its rules, and loses power after `budget` word programs
    /// or sector erases, leaving the one under way torn.
    struct SimFlash {
        mem: Vec<u8>,
        budget: Option<usize>,
        /// Operations done so far.
        ops: usize,
        /// Drives the torn bits.
        noise: u64,
        off: bool,
    }

    impl SimFlash {
        fn new(mem: Vec<u8>, budget: Option<usize>, noise: u64) -> Self {
            SimFlash {
                mem,
                budget,
                ops: 0,
                noise: noise | 1,
                off: false,
            }
        }

        fn bits(&mut self) -> u8 {
            // xorshift: the torn state's bits.
            self.noise ^= self.noise << 13;
            self.noise ^= self.noise >> 7;
            self.noise ^= self.noise << 17;
            self.noise as u8
        }

        /// One more operation; `false` (and power off) when this one is cut.
        fn step(&mut self) -> Result<bool, SimError> {
            if self.off {
                return Err(SimError::PowerCut);
            }
            self.ops += 1;
            if self.budget.is_some_and(|b| self.ops > b) {
                self.off = true;
                return Ok(false);
            }
            Ok(true)
        }
    }

    impl ErrorType for SimFlash {
        type Error = SimError;
    }

    impl ReadNorFlash for SimFlash {
        const READ_SIZE: usize = 1;
        fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
            if self.off {
                return Err(SimError::PowerCut);
            }
            let at = offset as usize;
            let src = self
                .mem
                .get(at..at + bytes.len())
                .ok_or(SimError::Rule("read out of range"))?;
            bytes.copy_from_slice(src);
            Ok(())
        }
        fn capacity(&self) -> usize {
            self.mem.len()
        }
    }

    impl NorFlash for SimFlash {
        const WRITE_SIZE: usize = WORD;
        const ERASE_SIZE: usize = SECTOR;
        fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
            let (from, to) = (from as usize, to as usize);
            if !from.is_multiple_of(SECTOR)
                || !to.is_multiple_of(SECTOR)
                || from >= to
                || to > self.mem.len()
            {
                return Err(SimError::Rule("erase of less than whole sectors"));
            }
            for s in (from..to).step_by(SECTOR) {
                if !self.step()? {
                    // Torn: each byte erased, old, or anything in between.
                    for i in s..s + SECTOR {
                        let keep = self.bits();
                        self.mem[i] |= !keep;
                    }
                    return Err(SimError::PowerCut);
                }
                self.mem[s..s + SECTOR].fill(0xFF);
            }
            Ok(())
        }
        fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
            let at = offset as usize;
            if !at.is_multiple_of(WORD)
                || !bytes.len().is_multiple_of(WORD)
                || at + bytes.len() > self.mem.len()
            {
                return Err(SimError::Rule("write not aligned to whole words"));
            }
            for (w, word) in bytes.chunks(WORD).enumerate() {
                let place = at + w * WORD;
                if self.mem[place..place + WORD].iter().any(|&b| b != 0xFF) {
                    return Err(SimError::Rule("program of a word not erased"));
                }
                if !self.step()? {
                    // Torn: some of the word's zero bits programmed.
                    for (i, &b) in word.iter().enumerate() {
                        let some = self.bits();
                        self.mem[place + i] &= b | some;
                    }
                    return Err(SimError::PowerCut);
                }
                for (i, &b) in word.iter().enumerate() {
                    self.mem[place + i] &= b;
                }
            }
            Ok(())
        }
    }

    /// A provisioned flash: `old` in the blob area, the rest erased but the last sector.
    fn provisioned(old: &[u8]) -> Vec<u8> {
        let mut mem = vec![0xFF; SIZE];
        mem[..old.len()].copy_from_slice(old);
        mem[SIZE - SECTOR..].fill(0x5A);
        mem
    }

    /// A blob of `len` bytes drawn from `seed`, and the patch that makes the new one:
    /// `places` spans of new bytes, some across chunk and sector boundaries.
    fn case(len: usize, seed: u8) -> (Vec<u8>, Vec<u8>) {
        let old: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect();
        let mut new = old.clone();
        for (k, at) in [3usize, CHUNK - 5, SECTOR - 7, len / 2, len - 16]
            .iter()
            .enumerate()
        {
            for b in &mut new[*at..(*at + 16).min(len)] {
                *b = b.wrapping_add(k as u8 + 1) ^ 0xA5;
            }
        }
        (old, new)
    }

    fn run_update(f: &mut SimFlash, new: &[u8]) -> Result<(), UpdateError<SimError>> {
        update(f, AREAS, new.len(), &mut |at, chunk| {
            chunk.copy_from_slice(&new[at..at + chunk.len()]);
        })
    }

    /// The blob after a boot's recovery (itself run with power cut after `cut` steps, then
    /// again in full), and what the full recovery found.
    fn boot(mem: Vec<u8>, cut: Option<usize>, noise: u64) -> (Vec<u8>, Recovered) {
        let mut f = SimFlash::new(mem, cut, noise);
        let mem = match recover(&mut f, AREAS) {
            Err(UpdateError::Flash(SimError::PowerCut)) => f.mem,
            Err(e) => panic!("recovery failed: {e:?}"),
            Ok(_) => f.mem,
        };
        let mut f = SimFlash::new(mem, None, noise);
        let found = recover(&mut f, AREAS).expect("recovery with power");
        (f.mem, found)
    }

    #[test]
    fn a_whole_update_writes_the_new_blob_and_leaves_the_scratch_erased() {
        let (old, new) = case(3 * SECTOR - 40, 1);
        let mut f = SimFlash::new(provisioned(&old), None, 1);
        run_update(&mut f, &new).unwrap();
        assert_eq!(&f.mem[..new.len()], &new[..]);
        let scratch = &f.mem[SCRATCH as usize..(SCRATCH + SCRATCH_LEN) as usize];
        assert!(scratch.iter().all(|&b| b == 0xFF));
        assert!(
            f.mem[SIZE - SECTOR..].iter().all(|&b| b == 0x5A),
            "other data kept"
        );
        let (_, found) = boot(f.mem, None, 1);
        assert_eq!(found, Recovered::Clean);
    }

    #[test]
    fn power_cut_at_every_step_of_an_update_and_of_its_recovery_leaves_old_or_new() {
        for (len, seed) in [
            (SECTOR + 100, 7),
            (3 * SECTOR - 40, 0x3C),
            (2 * SECTOR, 0xF0),
        ] {
            let (old, new) = case(len, seed);
            let mut full = SimFlash::new(provisioned(&old), None, 1);
            run_update(&mut full, &new).unwrap();
            let steps = full.ops;
            let (mut olds, mut news) = (0, 0);
            for cut in 0..steps {
                let noise = (cut as u64 + 1) * 0x9E37_79B9 + u64::from(seed);
                let mut f = SimFlash::new(provisioned(&old), Some(cut), noise);
                assert_eq!(
                    run_update(&mut f, &new),
                    Err(UpdateError::Flash(SimError::PowerCut)),
                    "cut after {cut} of {steps} steps"
                );
                let torn = f.mem;
                // The recovery itself cut at each of its steps, then run in full: old or
                // new each time.
                let mut whole = SimFlash::new(torn.clone(), None, noise);
                let _ = recover(&mut whole, AREAS).unwrap();
                let recovery_steps = whole.ops;
                for second in 0..=recovery_steps {
                    let second = (second < recovery_steps).then_some(second);
                    let (mem, _) = boot(torn.clone(), second, noise ^ 0xFF);
                    let blob = &mem[..len];
                    assert!(
                        blob == &old[..] || blob == &new[..],
                        "a mix after a cut at {cut} of {steps} and {second:?} in recovery"
                    );
                    if blob == &old[..] {
                        olds += 1;
                    } else {
                        news += 1;
                    }
                    assert!(mem[SIZE - SECTOR..].iter().all(|&b| b == 0x5A));
                    // And the next update runs on from there.
                    let mut next = SimFlash::new(mem, None, 3);
                    run_update(&mut next, &old).unwrap();
                    assert_eq!(&next.mem[..len], &old[..]);
                }
            }
            assert!(
                olds > 0 && news > 0,
                "both outcomes occur: {olds} old, {news} new"
            );
        }
    }

    #[test]
    fn areas_that_break_the_rules_are_refused() {
        let mut f = SimFlash::new(vec![0xFF; SIZE], None, 1);
        let mut id = |_: usize, _: &mut [u8]| {};
        let bad = [
            Areas { blob: 1, ..AREAS },
            Areas {
                scratch: SCRATCH - SECTOR as u32,
                ..AREAS
            },
            Areas {
                scratch_len: SECTOR as u32,
                ..AREAS
            },
        ];
        for areas in bad {
            assert_eq!(
                update(&mut f, areas, 600, &mut id),
                Err(UpdateError::Areas),
                "{areas:?}"
            );
        }
        assert_eq!(
            update(&mut f, AREAS, BLOB_LEN as usize + 1, &mut id),
            Err(UpdateError::Areas)
        );
        assert_eq!(f.ops, 0, "nothing touched");
    }
}
