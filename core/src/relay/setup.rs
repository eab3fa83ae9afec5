//! An interval's set-up: `IntervalOpen` and `Members` to the trustees, their
//! `IntervalReady`, one `IntervalStart` to all, the members' acknowledgements passed on to
//! each trustee, the trustees' confirmations, then each member's `Confirmed` and the
//! downstream records it missed.
//!
//! Owns the `Opening`, `Starting` and `Confirming` phases. It must not touch exchanges
//! (`exchange.rs`) or the log's contents (`log.rs`).

use heapless::Vec;

use super::{
    Columns, Destination, Duration, Instant, IntervalError, Peer, PeerError, PeerId, Phase, Relay,
    RelayEvent, Replaying, Running, Transmit,
};
use crate::bits::{self, Bits};
use crate::schedule::Schedule;
use crate::wire::{
    self, GoodbyeReason, IntervalRecord, IntervalStart, Message, Params, Prefix, WireError,
    MAX_FRAME_BODY, MAX_HISTORY,
};
use crate::{MAC_LEN, MAX_TRUSTEES, NONCE_LEN};

/// A per-member list sent to each trustee in chunks (`Members`, `Acks`).
struct Column {
    interval: u32,
    members: u32,
    /// Bytes per member.
    entry: usize,
    /// Most entries per frame.
    chunk: usize,
    /// The message, for an interval and the position of its first entry.
    prefix: fn(u32, u32) -> Prefix,
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// `trustee` checked every member and is ready, with its fresh `nonce`.
    pub(super) fn on_ready(
        &mut self,
        now: Instant,
        trustee: u16,
        interval: u32,
        nonce: [u8; NONCE_LEN],
    ) -> Result<(), PeerError> {
        let Phase::Opening {
            interval: current,
            members,
            members_sent,
            mut ready,
            ..
        } = self.phase
        else {
            return self.past_or_unexpected(interval);
        };
        if current != interval {
            return self.past_or_unexpected(interval);
        }
        let sent = members_sent.entries.get(usize::from(trustee)).copied();
        if ready & (1 << trustee) != 0 || sent != Some(members) {
            return Err(PeerError::Unexpected);
        }
        ready |= 1 << trustee;
        if let Some(n) = self.nonces.get_mut(usize::from(trustee)) {
            *n = nonce;
        }
        if let Phase::Opening { ready: r, .. } = &mut self.phase {
            *r = ready;
        }
        if ready == self.all_trustees {
            self.params = self.interval_params();
            // The log does not change until the interval runs: who is lost is fixed now.
            let largest = self.log.largest();
            let lost = self.mark_losses(largest);
            self.phase = Phase::Starting {
                interval,
                members,
                start_pending: true,
                acked: 0,
                acks_sent: Columns::NEW,
                confirmed: Columns::NEW,
                since: now,
                lost,
                largest,
            };
        }
        Ok(())
    }

    /// Parameters of the interval about to start: the configured ones, lowered to what
    /// every member's frame limit allows.
    fn interval_params(&self) -> Params {
        let mut frame = MAX_FRAME_BODY;
        let peers = self.peers.as_ref();
        let n = usize::from(self.cfg.clients);
        let mut cells = usize::from(self.cfg.trustees);
        for i in Bits::new_checked(self.online_bits(), n)
            .into_iter()
            .flat_map(|b| b.iter())
        {
            if let Some(p) = peers.get(i) {
                frame = frame.min(p.max_frame as usize);
            }
            cells += 1;
        }
        for p in peers.iter().skip(n).take(usize::from(self.cfg.trustees)) {
            frame = frame.min(p.max_frame as usize);
        }
        let cell_room = frame.saturating_sub(wire::cell_frame_len(0) - wire::FRAME_HEADER_LEN);
        let down_room = frame.saturating_sub(64 + wire::max_outputs_len(self.cfg.slots));
        Params {
            base_len: self.cfg.cell_len as u32,
            max_len: self
                .cfg
                .max_cell_len
                .min(cell_room)
                .min(self.cfg.exchange_budget / cells.max(1))
                .max(self.cfg.cell_len) as u32,
            downstream_len: self.cfg.downstream_len.min(down_room).max(1) as u32,
            period: self.cfg.period,
            admit: self.cfg.admit,
            capacity: self.cfg.capacity.min(self.cfg.slots),
        }
    }

    /// `trustee`'s confirmations of the view for the next members, from position
    /// `first`.
    pub(super) fn on_confirm(
        &mut self,
        now: Instant,
        trustee: u16,
        interval: u32,
        first: u32,
        macs: &[u8],
    ) -> Result<(), PeerError> {
        let Phase::Starting {
            interval: current,
            members,
            start_pending: false,
            acks_sent,
            mut confirmed,
            lost,
            largest,
            ..
        } = self.phase
        else {
            return self.past_or_unexpected(interval);
        };
        if interval != current {
            return self.past_or_unexpected(interval);
        }
        let j = usize::from(trustee);
        let (Some(&acks_sent), Some(got), Some(position)) = (
            acks_sent.entries.get(j),
            confirmed.entries.get_mut(j),
            confirmed.position.get_mut(j),
        ) else {
            return Err(IntervalError::Confirms.into());
        };
        if acks_sent != members
            || first != *got
            || macs.is_empty()
            || !macs.len().is_multiple_of(MAC_LEN)
            || *got as usize + macs.len() / MAC_LEN > members as usize
        {
            return Err(IntervalError::Confirms.into());
        }
        let n = usize::from(self.cfg.clients);
        for mac in macs.chunks_exact(MAC_LEN) {
            let i = bits::next_set(self.online_bits(), *position, n);
            *position = i + 1;
            let slot = self
                .peers
                .as_mut()
                .get_mut(i)
                .and_then(|p| p.confirms.get_mut(j));
            if let Some(slot) = slot {
                slot.copy_from_slice(mac);
            }
            *got += 1;
        }
        if let Phase::Starting { confirmed: c, .. } = &mut self.phase {
            *c = confirmed;
        }
        let trustees = usize::from(self.cfg.trustees);
        if confirmed
            .entries
            .iter()
            .take(trustees)
            .all(|&got| got == members)
        {
            self.phase = Phase::Confirming {
                interval,
                members,
                position: 0,
                replay: None,
                largest,
                lost,
                since: now,
            };
        }
        Ok(())
    }

    /// `client`'s acknowledgement of the view, one MAC for each trustee.
    pub(super) fn on_ack(
        &mut self,
        client: u16,
        interval: u32,
        macs: &[u8],
    ) -> Result<(), PeerError> {
        let Phase::Starting {
            interval: current,
            start_pending: false,
            acked,
            ..
        } = self.phase
        else {
            return self.past_or_unexpected(interval);
        };
        if interval != current {
            return self.past_or_unexpected(interval);
        }
        let t = usize::from(self.cfg.trustees);
        let i = usize::from(client);
        let member = bits::test(self.online_bits(), i);
        let Some(p) = self.peers.as_mut().get_mut(i) else {
            return Err(IntervalError::Ack.into());
        };
        if !member || macs.len() != t * MAC_LEN || p.acked == Some(current) {
            return Err(IntervalError::Ack.into());
        }
        for (dst, mac) in p.acks.iter_mut().zip(macs.chunks_exact(MAC_LEN)) {
            dst.copy_from_slice(mac);
        }
        p.acked = Some(current);
        if let Phase::Starting { acked: a, .. } = &mut self.phase {
            *a = acked + 1;
        }
        Ok(())
    }

    /// A trustee refused a member of the interval being set up: that client goes, and the
    /// interval opens again without it.
    pub(super) fn on_refuse(
        &mut self,
        now: Instant,
        interval: u32,
        client: u16,
    ) -> Result<(), PeerError> {
        let current = match self.phase {
            Phase::Opening { interval, .. } | Phase::Starting { interval, .. } => interval,
            _ => {
                return if self.is_past(interval) {
                    Ok(())
                } else {
                    Err(PeerError::Unexpected)
                }
            }
        };
        if interval != current {
            return self.past_or_unexpected(interval);
        }
        if usize::from(client) >= usize::from(self.cfg.clients)
            || !bits::test(self.online_bits(), usize::from(client))
        {
            return Err(PeerError::Unexpected);
        }
        self.drop_peer(now, PeerId::Client(client), GoodbyeReason::Refused);
        Ok(())
    }

    /// A set-up message for `interval` outside its phase: ignored if the interval is over
    /// (it crossed the change on the wire), an error otherwise.
    fn past_or_unexpected(&self, interval: u32) -> Result<(), PeerError> {
        if self.is_past(interval) {
            Ok(())
        } else {
            Err(PeerError::Unexpected)
        }
    }

    /// Whether `interval` was opened before and is over.
    pub(super) fn is_past(&self, interval: u32) -> bool {
        let current = match self.phase {
            Phase::Opening { interval, .. }
            | Phase::Starting { interval, .. }
            | Phase::Confirming { interval, .. } => Some(interval),
            Phase::Running(running) => Some(running.interval),
            Phase::Waiting => None,
        };
        let first = self.cfg.first_interval;
        let opened = self.next_interval.wrapping_sub(first);
        let age = interval.wrapping_sub(first);
        age < opened && Some(interval) != current
    }

    /// `IntervalOpen` to the trustees, then each trustee's `Members`.
    pub(super) fn transmit_opening(
        &mut self,
        now: Instant,
        out: &mut [u8],
    ) -> Result<Option<Transmit>, WireError> {
        let Phase::Opening {
            interval,
            members,
            open_sent,
            mut members_sent,
            ..
        } = self.phase
        else {
            return Ok(None);
        };
        if !open_sent {
            let len = Message::IntervalOpen {
                interval,
                online: self.online_bits(),
            }
            .emit_frame(out)?;
            if let Phase::Opening {
                open_sent, since, ..
            } = &mut self.phase
            {
                *open_sent = true;
                *since = now;
            }
            return Ok(Some(Transmit {
                destination: Destination::Trustees,
                len,
                close_after: false,
            }));
        }
        let column = Column {
            interval,
            members,
            entry: wire::MEMBER_ENTRY_LEN,
            chunk: 2048,
            prefix: |interval, first| Prefix::Members { interval, first },
        };
        let t = self.transmit_column(&column, &mut members_sent, out, |member, j, entry| {
            let (nonce, rest) = entry.split_at_mut(NONCE_LEN);
            let (proof, block) = rest.split_at_mut(MAC_LEN);
            nonce.copy_from_slice(&member.nonce);
            if let Some(p) = member.proofs.get(j) {
                proof.copy_from_slice(p);
            }
            block.copy_from_slice(&member.block);
        })?;
        if let Phase::Opening {
            members_sent: sent, ..
        } = &mut self.phase
        {
            *sent = members_sent;
        }
        Ok(t)
    }

    /// The next frame of a per-member list for some trustee (each trustee gets every member's
    /// entry, in increasing client order); `progress` tracks each trustee's.
    fn transmit_column(
        &self,
        column: &Column,
        progress: &mut Columns,
        out: &mut [u8],
        fill: impl Fn(&Peer, usize, &mut [u8]),
    ) -> Result<Option<Transmit>, WireError> {
        let n = usize::from(self.cfg.clients);
        let peers = self.peers.as_ref();
        let trustees = peers.iter().skip(n).take(usize::from(self.cfg.trustees));
        let columns = progress
            .entries
            .iter_mut()
            .zip(progress.position.iter_mut());
        for (j, (trustee, (sent, position))) in trustees.zip(columns).enumerate() {
            if *sent >= column.members {
                continue;
            }
            let Some(link) = trustee.link else {
                continue;
            };
            let frame = trustee.max_frame as usize;
            let room = frame.min(out.len()).saturating_sub(32) / column.entry;
            let count = ((column.members - *sent) as usize)
                .min(room)
                .min(column.chunk);
            if count == 0 {
                return Err(WireError::BufferTooSmall);
            }
            let len = count * column.entry;
            let p = (column.prefix)(column.interval, *sent).emit(len, out)?;
            let entries = out.get_mut(p..p + len).ok_or(WireError::BufferTooSmall)?;
            for entry in entries.chunks_exact_mut(column.entry) {
                *position = bits::next_set(self.online_bits(), *position, n);
                if let Some(member) = peers.get(*position) {
                    fill(member, j, entry);
                }
                *position += 1;
            }
            *sent += count as u32;
            return Ok(Some(Transmit {
                destination: Destination::Link(link),
                len: p + len,
                close_after: false,
            }));
        }
        Ok(None)
    }

    /// The interval's view, byte-identical to every trustee and member; then the
    /// acknowledgements.
    pub(super) fn transmit_start(&mut self, out: &mut [u8]) -> Result<Option<Transmit>, WireError> {
        let Phase::Starting {
            interval,
            start_pending,
            lost,
            largest,
            ..
        } = self.phase
        else {
            return Ok(None);
        };
        if !start_pending {
            return self.transmit_acks(out);
        }
        let t = usize::from(self.cfg.trustees);
        let mut nonces = [0u8; MAX_TRUSTEES * NONCE_LEN];
        for (dst, n) in nonces.chunks_exact_mut(NONCE_LEN).zip(&self.nonces) {
            dst.copy_from_slice(n);
        }
        let history: Vec<IntervalRecord, MAX_HISTORY> = self.history.iter().copied().collect();
        let head = self.log.head();
        let trap = self.announce_trap(interval);
        let len = Message::IntervalStart(IntervalStart {
            interval,
            epoch: self.cfg.epoch,
            online: self.online_bits(),
            lost: self.lost_bits(lost),
            nonces: nonces.get(..t * NONCE_LEN).unwrap_or(&[]),
            trap,
            window: self.cfg.window,
            params: self.params,
            history,
            head,
            oldest: self.log.oldest(),
            largest,
        })
        .emit_frame(out)?;
        // The view every member's transcript starts from, which owners' cells bind.
        let body = out.get(wire::FRAME_HEADER_LEN..len).unwrap_or(&[]);
        self.view = *crate::transcript::Transcript::start(body).hash();
        #[cfg(feature = "blame-round")]
        self.rounds.interval_started(body);
        if let Phase::Starting { start_pending, .. } = &mut self.phase {
            *start_pending = false;
        }
        Ok(Some(Transmit {
            destination: Destination::TrusteesAndMembers,
            len,
            close_after: false,
        }))
    }

    /// Once every member acknowledged the view: each trustee's column of the
    /// acknowledgements, in member order.
    fn transmit_acks(&mut self, out: &mut [u8]) -> Result<Option<Transmit>, WireError> {
        let Phase::Starting {
            interval,
            members,
            acked,
            mut acks_sent,
            ..
        } = self.phase
        else {
            return Ok(None);
        };
        if acked != members {
            return Ok(None);
        }
        let column = Column {
            interval,
            members,
            entry: MAC_LEN,
            chunk: 4096,
            prefix: |interval, first| Prefix::Acks { interval, first },
        };
        let t = self.transmit_column(&column, &mut acks_sent, out, |member, j, entry| {
            if let Some(ack) = member.acks.get(j) {
                entry.copy_from_slice(ack);
            }
        })?;
        if let Phase::Starting {
            acks_sent: sent, ..
        } = &mut self.phase
        {
            *sent = acks_sent;
        }
        Ok(t)
    }

    /// Each member's `Confirmed`, each followed by the downstream records it missed (as
    /// fast as its link takes them); then the interval runs.
    pub(super) fn transmit_confirmed(
        &mut self,
        now: Instant,
        out: &mut [u8],
    ) -> Result<Option<Transmit>, WireError> {
        let Phase::Confirming {
            interval,
            members,
            mut position,
            replay,
            largest,
            lost,
            ..
        } = self.phase
        else {
            return Ok(None);
        };
        if let Some(replaying) = replay {
            return self.transmit_replay(now, replaying, out);
        }
        let n = usize::from(self.cfg.clients);
        let t = usize::from(self.cfg.trustees);
        while position < n {
            let i = position;
            position += 1;
            if !bits::test(self.online_bits(), i) {
                continue;
            }
            let Some(&p) = self.peers.as_ref().get(i) else {
                continue;
            };
            let Some(link) = p.link else { continue };
            let mut macs = [0u8; MAX_TRUSTEES * MAC_LEN];
            for (dst, m) in macs.chunks_exact_mut(MAC_LEN).zip(&p.confirms) {
                dst.copy_from_slice(m);
            }
            let len = Message::Confirmed {
                interval,
                macs: macs.get(..t * MAC_LEN).unwrap_or(&[]),
            }
            .emit_frame(out)?;
            let replay = self.settle_member(i, lost, largest);
            if let Phase::Confirming {
                position: next,
                replay: r,
                since,
                ..
            } = &mut self.phase
            {
                *next = position;
                *r = replay;
                *since = now;
            }
            return Ok(Some(Transmit {
                destination: Destination::Link(link),
                len,
                close_after: false,
            }));
        }
        // Everyone has the view: exchanges start.
        let Ok(schedule) =
            Schedule::new(self.cfg.slots, &self.params, self.schedule.as_ref().len())
        else {
            self.phase = Phase::Waiting;
            return Ok(None);
        };
        self.phase = Phase::Running(Running {
            interval,
            members,
            next: 0,
            done: 0,
            stop: None,
            schedule,
            client_request: None,
            asked: false,
        });
        self.unreported.clear();
        self.outputs.clear();
        self.disrupted.clear();
        self.disrupted_recent = 0;
        self.idle = false;
        self.burst = false;
        self.gap = Duration::default();
        self.push_event(RelayEvent::IntervalStarted {
            interval,
            clients: members as usize,
        });
        Ok(None)
    }

    /// The next record a member missed, if its link is up and has room for it; when the
    /// last is out, the next member's confirmation.
    fn transmit_replay(
        &mut self,
        now: Instant,
        replaying: Replaying,
        out: &mut [u8],
    ) -> Result<Option<Transmit>, WireError> {
        let Replaying { client, seq, at } = replaying;
        let Some(p) = self.peers.as_ref().get(usize::from(client)).copied() else {
            return self.replay_done(now, out);
        };
        let (Some(link), true) = (p.link, seq <= self.log.head().seq) else {
            return self.replay_done(now, out);
        };
        if p.room == 0 {
            // Flow control: the shell reports room ([`Relay::handle_link_room`]).
            return Ok(None);
        }
        let Some((len, next)) = self.log.emit_replay(seq, at, out)? else {
            return self.replay_done(now, out);
        };
        if let Some(p) = self.peers.as_mut().get_mut(usize::from(client)) {
            p.room -= 1;
        }
        if let Phase::Confirming { replay, since, .. } = &mut self.phase {
            *replay = next
                .filter(|_| seq < self.log.head().seq)
                .map(|at| Replaying {
                    client,
                    seq: seq + 1,
                    at,
                });
            *since = now;
        }
        Ok(Some(Transmit {
            destination: Destination::Link(link),
            len,
            close_after: false,
        }))
    }

    /// The replay under way is over (or its member gone): on to the next member.
    fn replay_done(&mut self, now: Instant, out: &mut [u8]) -> Result<Option<Transmit>, WireError> {
        if let Phase::Confirming { replay, .. } = &mut self.phase {
            *replay = None;
        }
        self.transmit_confirmed(now, out)
    }
}
