//! Sealed cells, sealed ahead of time: in [`Client::prepare`](super::Client::prepare) the
//! owner builds and seals the cell of its next owned exchange for each length that exchange
//! can have (the length its slot is reserved at now, and the one its last `Next` asks for:
//! one or two), so the cell path only copies the one matching the request (equal work:
//! a non-owner fills zeros there). If none matches, the owner writes zeros and keeps its
//! records for a later cell.
//!
//! A prepared cell is bound to the interval, the ordinal of the slot's exchange in it, the
//! length, and what the stage held when it was built; anything else is rebuilt.
//!
//! It also keeps the sealed bytes of the last [`KEPT`] owned cells it sent, which an
//! accusation needs (`accuse.rs`): copied in [`Client::prepare`], off the cell path.
//!
//! Owns the prepared cells, the kept ones and the slot's cell key. It must not pull bytes
//! from the application (`stage.rs`) or keep sent records (`sent.rs`).

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;

use super::accuse::{Kept, KEPT};
use super::{Client, Phase, Running};
use crate::time::Instant;
use crate::wire::{self, read_record_header, RECORD_HEADER_LEN};

/// What the stage's records give a cell of some length: `whole` bytes of whole records,
/// then the first `part` payload bytes of the next one, and `left` bytes staged after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) whole: usize,
    pub(super) part: Option<usize>,
    pub(super) left: usize,
}

impl Plan {
    /// Bytes of records in the cell.
    pub(super) fn sent(&self) -> usize {
        self.whole + self.part.map_or(0, |p| p + RECORD_HEADER_LEN)
    }
}

/// What a prepared cell was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Prepared {
    pub(super) interval: u32,
    pub(super) ordinal: u64,
    pub(super) len: usize,
    pub(super) next: u16,
    pub(super) plan: Plan,
    /// The stage's length and version when it was built (with the plan, what it carries:
    /// a change of room that leaves the plan as it is needs no new seal).
    staged: (usize, u32),
}

/// The owner's cell key, its (at most two) prepared cells and its kept ones.
pub(super) struct Sealer<B> {
    key: wire::SlotKey,
    /// Two prepared cells of the longest length, then [`KEPT`] kept ones.
    cells: B,
    stride: usize,
    prepared: [Option<Prepared>; 2],
    /// The prepared cell the cell path copied last, and for which exchange.
    copied: Option<(usize, Kept)>,
    /// What each kept cell is, and the next one to reuse.
    kept: [Option<Kept>; KEPT],
    next_kept: usize,
    /// The keystream the cells' nonces are drawn from.
    rng: ChaCha20,
}

impl<B> Sealer<B> {
    fn new(key: wire::SlotKey, cells: B, stride: usize, seed: &[u8; 32]) -> Self {
        Sealer {
            key,
            cells,
            stride,
            prepared: [None, None],
            copied: None,
            kept: [None; KEPT],
            next_kept: 0,
            rng: ChaCha20::new(seed.into(), &[4u8; 12].into()),
        }
    }
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> Client<B> {
    /// Sets this client's pseudonym secret (32 bytes) and the relay's Ristretto255 DH
    /// public key, from which the key its slot's cells are sealed under is derived
    /// ([`wire::SlotKey::owner`]), and the storage of its prepared cells
    /// ([`Client::sealed_len`] bytes). Without them, the client never writes in its slot
    /// (its cells there are zeros).
    pub fn set_pseudonym(
        &mut self,
        secret: &[u8; 32],
        relay_public: &[u8; 32],
        cells: B,
    ) -> Result<(), crate::error::ConfigError> {
        use crate::error::ConfigError;
        if cells.as_ref().len() < self.sealed_len() {
            return Err(ConfigError::StorageTooSmall("sealed"));
        }
        let key = wire::SlotKey::owner(
            secret,
            relay_public,
            &self.group_id,
            &self.session_id,
            self.slot,
        )
        .map_err(ConfigError::Key)?;
        self.sealer = Some(Sealer::new(key, cells, self.max_cell, &self.seal_seed));
        #[cfg(feature = "pseudonyms")]
        {
            self.pseudonym = crate::pseudonym::PseudonymKey::from_secret(secret);
        }
        Ok(())
    }

    /// Bytes of storage [`Client::set_pseudonym`] needs: two prepared cells and `KEPT`
    /// kept ones, of the longest length.
    pub const fn sealed_len(&self) -> usize {
        (2 + KEPT) * self.max_cell
    }

    /// Keeps the owned cell the cell path copied last (part of [`Client::prepare`]).
    pub(super) fn keep_copied(&mut self) {
        let Some(sealer) = &mut self.sealer else {
            return;
        };
        let Some((i, kept)) = sealer.copied.take() else {
            return;
        };
        let to = sealer.next_kept;
        sealer.next_kept = (to + 1) % KEPT;
        let (src, dst) = (i * sealer.stride, (2 + to) * sealer.stride);
        let cells = sealer.cells.as_mut();
        let fits = src + kept.len <= cells.len() && dst + kept.len <= cells.len();
        if fits {
            cells.copy_within(src..src + kept.len, dst);
        }
        if let Some(k) = sealer.kept.get_mut(to) {
            *k = fits.then_some(kept);
        }
    }

    /// The sealed bytes this client wrote into `exchange` of `interval`, if kept.
    pub(super) fn kept_cell(&self, interval: u32, exchange: u64) -> Option<&[u8]> {
        let sealer = self.sealer.as_ref()?;
        let (at, kept) = sealer.kept.iter().enumerate().find_map(|(at, k)| {
            k.filter(|k| k.interval == interval && k.exchange == exchange)
                .map(|k| (at, k))
        })?;
        let start = (2 + at) * sealer.stride;
        sealer.cells.as_ref().get(start..start + kept.len)
    }

    /// What the stage gives a cell of `len` bytes, without writing it.
    pub(super) fn plan(&self, len: usize) -> Plan {
        let room = Self::record_room(len).min(self.sent.room());
        let stage = self.stage.records();
        let mut plan = Plan {
            whole: 0,
            part: None,
            left: 0,
        };
        while let Some(rest) = stage.get(plan.whole..).filter(|r| !r.is_empty()) {
            let (_, _, n) = read_record_header(rest);
            let rec = RECORD_HEADER_LEN + n;
            if plan.whole + rec <= room {
                plan.whole += rec;
                continue;
            }
            let part = room.saturating_sub(plan.whole + RECORD_HEADER_LEN);
            if n > 0 && part > 0 && super::stage::is_data(rest) {
                plan.part = Some(part);
            }
            break;
        }
        plan.left = self.stage.len() - plan.whole - plan.part.unwrap_or(0);
        plan
    }

    /// Bytes of records a cell of `len` bytes holds.
    pub(super) const fn record_room(len: usize) -> usize {
        len.saturating_sub(wire::SLOT_OVERHEAD + wire::NEXT_LEN)
    }

    /// Writes the records of `plan` and `next` into `body` (an owned cell's body).
    fn write_plan(&self, plan: &Plan, next: u16, body: &mut [u8]) {
        let stage = self.stage.records();
        let mut writer = wire::CellWriter::new(body);
        let mut at = 0;
        while at < plan.whole {
            let Some(rest) = stage.get(at..) else { break };
            let (conn, open, n) = read_record_header(rest);
            let payload = rest
                .get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + n)
                .unwrap_or(&[]);
            // The plan fits the body.
            let kind = wire::read_record(rest).1;
            let _ = if kind == Some(wire::RecordKind::Accuse) {
                match wire::Accusation::parse(payload) {
                    Some(accusation) => writer.push_accuse(self.slot, &accusation),
                    None => Ok(()),
                }
            } else if kind == Some(wire::RecordKind::Abort) {
                writer.push_abort(conn)
            } else if kind == Some(wire::RecordKind::Grant) {
                let bytes = payload.first_chunk::<4>().copied().unwrap_or_default();
                writer.push_grant(conn, u32::from_be_bytes(bytes))
            } else if n == 0 && !open {
                writer.push_close(conn)
            } else {
                writer.push_data(conn, open, payload)
            };
            at += RECORD_HEADER_LEN + n;
        }
        if let (Some(part), Some(rest)) = (plan.part, stage.get(plan.whole..)) {
            let (conn, open, _) = read_record_header(rest);
            let payload = rest
                .get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + part)
                .unwrap_or(&[]);
            let _ = writer.push_data(conn, open, payload);
        }
        writer.finish(next);
    }

    /// The lengths this client's next owned exchange can have: the length its slot is
    /// reserved at now (the base length if it is not), and the one its last `Next` asks for.
    fn candidate_lens(&self, running: &Running) -> [usize; 2] {
        let schedule = &running.schedule;
        let base = schedule.base_len();
        let now = schedule
            .len_of(self.schedule.as_ref(), self.slot)
            .unwrap_or(base);
        let later = match self.announced_next {
            0 => base,
            n => n.clamp(base, schedule.max_len()),
        };
        [usize::from(now), usize::from(later)]
    }

    /// Builds and seals the cells of this client's next owned exchange that are not
    /// prepared already (part of [`Client::prepare`]).
    pub(super) fn reseal(&mut self, now: Instant) {
        let Some(mut sealer) = self.sealer.take() else {
            return;
        };
        let running = match &self.phase {
            Phase::Running(r) if r.may_send && self.stage.taken.is_none() => Some(*r),
            _ => None,
        };
        let Some(running) = running else {
            sealer.prepared = [None, None];
            self.sealer = Some(sealer);
            return;
        };
        let lens = self.candidate_lens(&running);
        let Sealer {
            key,
            cells,
            stride,
            prepared,
            rng,
            ..
        } = &mut sealer;
        for (i, (slot, &len)) in prepared.iter_mut().zip(lens.iter()).enumerate() {
            if i == 1 && Some(&len) == lens.first()
                || len > self.max_cell
                || len < wire::MIN_OWNED_CELL
            {
                *slot = None;
                continue;
            }
            let plan = self.plan(len);
            let next = self.next_length(now, &running, plan.left);
            if plan.sent() == 0 && next == 0 {
                // Nothing to say: zeros, as a non-owner writes.
                *slot = None;
                continue;
            }
            let want = Prepared {
                interval: running.interval,
                ordinal: running.ordinal,
                len,
                next,
                plan,
                staged: (self.stage.len(), self.stage.version),
            };
            if *slot == Some(want) {
                continue;
            }
            let mut nonce = [0u8; wire::SLOT_NONCE_LEN];
            // 24 bytes a cell: the keystream lasts for billions of cells.
            rng.apply_keystream(&mut nonce);
            let ctx = wire::SlotContext {
                group_id: self.group_id,
                session_id: self.session_id,
                view: running.view,
                interval: running.interval,
                slot: self.slot,
                ordinal: running.ordinal,
            };
            let Some(cell) = cells.as_mut().get_mut(i * *stride..i * *stride + len) else {
                *slot = None;
                continue;
            };
            cell.fill(0);
            if let Some(body) = wire::body_mut(cell) {
                self.write_plan(&plan, next, body);
            }
            let ok = wire::seal(cell, &ctx, &nonce, key);
            *slot = ok.then_some(want);
        }
        self.sealer = Some(sealer);
    }

    /// The cell path of an owned exchange: copies the prepared cell of this length, or
    /// writes zeros. Returns the prepared cell's plan and `Next` if one was copied.
    pub(super) fn copy_prepared(
        &mut self,
        running: &Running,
        exchange: u64,
        cell: &mut [u8],
    ) -> Option<Prepared> {
        if let (Some(sealer), None) = (&mut self.sealer, self.stage.taken) {
            let found = sealer.prepared.iter().enumerate().find_map(|(i, p)| {
                p.filter(|p| {
                    p.interval == running.interval
                        && p.ordinal == running.ordinal
                        && p.len == cell.len()
                })
                .map(|p| (i, p))
            });
            if let Some((i, p)) = found {
                let at = i * sealer.stride;
                if let Some(src) = sealer.cells.as_ref().get(at..at + cell.len()) {
                    cell.copy_from_slice(src);
                    sealer.prepared = [None, None];
                    sealer.copied = Some((
                        i,
                        Kept {
                            interval: running.interval,
                            exchange,
                            len: cell.len(),
                        },
                    ));
                    return Some(p);
                }
            }
        }
        cell.fill(0);
        None
    }

    /// Forgets the prepared cells (what they carry must not go out any more).
    pub(super) fn unprepare(&mut self) {
        if let Some(sealer) = &mut self.sealer {
            sealer.prepared = [None, None];
        }
    }
}
