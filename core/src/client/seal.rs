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
//! The cell path lays the sealed cell out around the exchange's trap bytes (`wire::slot`):
//! the trap key of the interval is derived in `prepare` at the slot's first owned exchange
//! of the interval (one scalar multiplication), and the layout needs the exchange's number,
//! which only the request gives. A non-owner does the same work writing zeros.
//!
//! It also keeps the last owned cells it sent (up to [`KEPT`], as many as its storage holds
//! beyond the two prepared ones), as laid out, which an accusation and a blame round need
//! (`accuse.rs`, `reveal.rs`): laid out again in [`Client::prepare`], off the cell path. A
//! client refuses an interval whose window's keep horizon is more than it keeps
//! (`interval.rs`, [`crate::blame::horizon`]).
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
    /// The pseudonym secret, for the trap keys.
    secret: crate::ristretto::keys::SecretKey,
    /// The trap key of an interval, once derived, with the interval and the trap point
    /// (`R_I`) it was derived for: a relay that restarts may announce the same interval
    /// number with another point, and a key kept by number alone would lay the owner's
    /// cell out where that relay (and every member's check) expects trap bytes.
    traps: Option<(u32, [u8; 32], wire::TrapKey)>,
    /// Two prepared cells, then the kept ones, each `stride` bytes: the running interval's
    /// longest cell (before the first interval, the client's).
    cells: B,
    stride: usize,
    prepared: [Option<Prepared>; 2],
    /// The prepared cell the cell path copied last, for which exchange and under which
    /// trap key.
    copied: Option<(usize, Kept, wire::TrapKey)>,
    /// What each kept cell is, and the next one to reuse.
    kept: [Option<Kept>; KEPT],
    next_kept: usize,
    /// How many cells the storage keeps (at most [`KEPT`]).
    keep: usize,
    /// The keystream the cells' nonces are drawn from.
    rng: ChaCha20,
}

impl<B: AsRef<[u8]>> Sealer<B> {
    /// Cells kept beside the two prepared ones when each takes `stride` bytes.
    fn keeps_at(&self, stride: usize) -> usize {
        (self.cells.as_ref().len() / stride.max(1))
            .saturating_sub(2)
            .min(KEPT)
    }

    /// Lays the storage out for cells of at most `max_len` bytes (an interval's longest):
    /// what was prepared or kept at another stride is forgotten.
    pub(super) fn fit(&mut self, max_len: usize) {
        if max_len == self.stride || max_len == 0 {
            return;
        }
        self.stride = max_len;
        self.keep = self.keeps_at(max_len);
        self.prepared = [None, None];
        self.copied = None;
        self.kept = [None; KEPT];
        self.next_kept = 0;
    }
}

impl<B> Sealer<B> {
    fn new(
        key: wire::SlotKey,
        secret: crate::ristretto::keys::SecretKey,
        cells: B,
        stride: usize,
        keep: usize,
        seed: &[u8; 32],
    ) -> Self {
        Sealer {
            key,
            secret,
            traps: None,
            cells,
            stride,
            prepared: [None, None],
            copied: None,
            kept: [None; KEPT],
            next_kept: 0,
            keep,
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
        if cells.as_ref().len() < 2 * wire::MIN_OWNED_CELL {
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
        let scalar = crate::crypto::pad_secret(secret)
            .ok_or(ConfigError::Key(crate::crypto::KeyError::ZeroSecret))?;
        // Laid out for the client's longest cell until an interval says its own.
        let stride = self.max_cell.min(cells.as_ref().len() / 2);
        let keep = (cells.as_ref().len() / stride.max(1))
            .saturating_sub(2)
            .min(KEPT);
        self.sealer = Some(Sealer::new(
            key,
            scalar,
            cells,
            stride,
            keep,
            &self.seal_seed,
        ));
        #[cfg(feature = "pseudonyms")]
        {
            self.pseudonym = crate::pseudonym::PseudonymKey::from_secret(secret);
        }
        Ok(())
    }

    /// Bytes of storage [`Client::set_pseudonym`] takes: two prepared cells and
    /// `keep_horizon(MAX_WINDOW)` kept ones, of the longest length this client builds
    /// ([`Client::sealed_len_at`] sizes them for a group's longest cell).
    pub const fn sealed_len(&self) -> usize {
        (2 + KEPT) * self.max_cell
    }

    /// Owned cells this client keeps in an interval whose longest cell is `max_len` bytes
    /// (`None` without a pseudonym): an interval whose window's keep horizon is more is
    /// refused.
    pub fn kept_cells(&self, max_len: usize) -> Option<usize> {
        self.sealer.as_ref().map(|s| s.keeps_at(max_len))
    }

    /// Lays the sealed cells' storage out for an interval whose longest cell is `max_len`.
    pub(super) fn fit_sealed(&mut self, max_len: usize) {
        if let Some(sealer) = &mut self.sealer {
            sealer.fit(max_len);
        }
    }

    /// Keeps the owned cell the cell path copied last, laid out as it was sent (part of
    /// [`Client::prepare`]).
    pub(super) fn keep_copied(&mut self) {
        let Some(sealer) = &mut self.sealer else {
            return;
        };
        let Some((i, kept, traps)) = sealer.copied.take() else {
            return;
        };
        if sealer.keep == 0 {
            return;
        }
        let to = sealer.next_kept;
        sealer.next_kept = (to + 1) % sealer.keep;
        let (src, dst) = (i * sealer.stride, (2 + to) * sealer.stride);
        let sealed = wire::sealed_len(kept.len);
        let cells = sealer.cells.as_mut();
        // The prepared cells come before the kept ones: split there.
        let (prepared, rest) = cells.split_at_mut(dst.min(cells.len()));
        let fits = match (prepared.get(src..src + sealed), rest.get_mut(..kept.len)) {
            (Some(from), Some(to)) => wire::lay_out(to, Some(from), &traps, kept.exchange),
            _ => false,
        };
        if let Some(k) = sealer.kept.get_mut(to) {
            *k = fits.then_some(kept);
        }
    }

    /// The sealed bytes this client wrote into `exchange` of `interval` on the running
    /// link, if kept.
    pub(super) fn kept_cell(&self, interval: u32, exchange: u64) -> Option<&[u8]> {
        self.kept_cell_on(self.link, interval, exchange)
    }

    /// The sealed bytes this client wrote into `exchange` of `interval` on `link`, if kept.
    pub(super) fn kept_cell_on(&self, link: u32, interval: u32, exchange: u64) -> Option<&[u8]> {
        let sealer = self.sealer.as_ref()?;
        let (at, kept) = sealer.kept.iter().enumerate().find_map(|(at, k)| {
            k.filter(|k| k.link == link && k.interval == interval && k.exchange == exchange)
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

    /// Bytes of records a cell of `len` bytes holds (beside its trap bytes, nonce, tag
    /// and `Next`).
    pub(super) const fn record_room(len: usize) -> usize {
        wire::sealed_len(len).saturating_sub(wire::SLOT_OVERHEAD + wire::NEXT_LEN)
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
    ///
    /// It borrows the sealer in place: moving it out and back copied its kept cells'
    /// records (a few KiB) at every preparation.
    pub(super) fn reseal(&mut self, now: Instant) {
        let running = match &self.phase {
            Phase::Running(r) if r.may_send && self.stage.taken.is_none() => Some(*r),
            _ => None,
        };
        let Some(sealer) = &mut self.sealer else {
            return;
        };
        let Some(running) = running else {
            sealer.prepared = [None, None];
            return;
        };
        if sealer
            .traps
            .as_ref()
            .is_none_or(|t| t.0 != running.interval || t.1 != running.trap)
        {
            // The slot's first owned exchange of the interval: its trap point.
            sealer.traps = wire::TrapKey::from_secret(
                &sealer.secret,
                &running.trap,
                &self.group_id,
                &self.session_id,
                running.interval,
                self.slot,
            )
            .ok()
            .map(|k| (running.interval, running.trap, k));
        }
        if sealer.traps.is_none() {
            // No trap point announced: nothing the relay can check, so nothing is sent.
            sealer.prepared = [None, None];
            return;
        }
        let stride = sealer.stride;
        let lens = self.candidate_lens(&running);
        for (i, &len) in lens.iter().enumerate() {
            let want = if i == 1 && Some(&len) == lens.first()
                || len > self.max_cell.min(stride)
                || len < wire::MIN_OWNED_CELL
            {
                None
            } else {
                let plan = self.plan(len);
                let next = self.next_length(now, &running, plan.left);
                // With nothing to say: zeros, as a non-owner writes.
                (plan.sent() > 0 || next != 0).then_some(Prepared {
                    interval: running.interval,
                    ordinal: running.ordinal,
                    len,
                    next,
                    plan,
                    staged: (self.stage.len(), self.stage.version),
                })
            };
            let Some(sealer) = &mut self.sealer else {
                return;
            };
            let Some(slot) = sealer.prepared.get_mut(i) else {
                continue;
            };
            if *slot == want {
                continue;
            }
            let Some(want) = want else {
                *slot = None;
                continue;
            };
            let mut nonce = [0u8; wire::SLOT_NONCE_LEN];
            // 24 bytes a cell: the keystream lasts for billions of cells.
            sealer.rng.apply_keystream(&mut nonce);
            let ctx = wire::SlotContext {
                group_id: self.group_id,
                session_id: self.session_id,
                view: running.view,
                interval: running.interval,
                slot: self.slot,
                ordinal: running.ordinal,
            };
            let sealed = wire::sealed_len(len);
            let Some(cell) = sealer
                .cells
                .as_mut()
                .get_mut(i * stride..i * stride + sealed)
            else {
                *slot = None;
                continue;
            };
            cell.fill(0);
            if let Some(body) = wire::body_mut(cell) {
                write_plan(self.stage.records(), self.slot, &want.plan, want.next, body);
            }
            let ok = wire::seal(cell, &ctx, &nonce, &sealer.key);
            *slot = ok.then_some(want);
        }
    }

    /// The cell path of an owned exchange: lays the prepared cell of this length out around
    /// the exchange's trap bytes, or writes zeros with the same work. Returns the prepared
    /// cell's plan and `Next` if one was laid out.
    pub(super) fn copy_prepared(
        &mut self,
        running: &Running,
        exchange: u64,
        cell: &mut [u8],
    ) -> Option<Prepared> {
        let link = self.link;
        if let (Some(sealer), None) = (&mut self.sealer, self.stage.taken) {
            let found = sealer.prepared.iter().enumerate().find_map(|(i, p)| {
                p.filter(|p| {
                    p.interval == running.interval
                        && p.ordinal == running.ordinal
                        && p.len == cell.len()
                })
                .map(|p| (i, p))
            });
            let traps = sealer
                .traps
                .as_ref()
                .filter(|t| t.0 == running.interval && t.1 == running.trap)
                .map(|t| &t.2);
            if let (Some((i, p)), Some(traps)) = (found, traps) {
                let at = i * sealer.stride;
                let src = sealer
                    .cells
                    .as_ref()
                    .get(at..at + wire::sealed_len(cell.len()));
                if let Some(src) = src {
                    wire::lay_out(cell, Some(src), traps, exchange);
                    sealer.copied = Some((
                        i,
                        Kept {
                            link,
                            interval: running.interval,
                            exchange,
                            len: cell.len(),
                        },
                        traps.clone(),
                    ));
                    sealer.prepared = [None, None];
                    return Some(p);
                }
            }
        }
        self.zeros_laid_out(exchange, cell);
        None
    }

    /// Zeros into a slot exchange's cell, with the work of laying a cell out (a non-owner's
    /// cell path, and an owner's with nothing to send): the layout's stream is computed
    /// under this client's own trap key if it has one, which changes nothing written.
    pub(super) fn zeros_laid_out(&self, exchange: u64, cell: &mut [u8]) {
        let dummy = wire::TrapKey::from_bytes([0; 32]);
        let traps = self
            .sealer
            .as_ref()
            .and_then(|s| s.traps.as_ref())
            .map_or(&dummy, |t| &t.2);
        wire::lay_out(cell, None, traps, exchange);
    }

    /// Forgets the prepared cells (what they carry must not go out any more).
    pub(super) fn unprepare(&mut self) {
        if let Some(sealer) = &mut self.sealer {
            sealer.prepared = [None, None];
        }
    }
}

/// Writes the records of `plan` and `next` into `body` (an owned cell's body).
fn write_plan(stage: &[u8], slot: u16, plan: &Plan, next: u16, body: &mut [u8]) {
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
                Some(accusation) => writer.push_accuse(slot, &accusation),
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
