//! An interval's set-up: `IntervalOpen` and `Members` to the trustees, their
//! `IntervalReady`, one `IntervalStart` to all, the members' acknowledgements passed on to
//! each trustee, the trustees' confirmations, then each member's `Confirmed` and the
//! downstream records it missed.
//!
//! Owns the `Opening`, `Starting` and `Confirming` phases. It must not touch exchanges
//! (`exchange.rs`) or the log's contents (`log.rs`).

use super::*;

/// A per-member list sent to each trustee in chunks (`Members`, `Acks`).
pub(super) struct Column {
    pub(super) interval: u32,
    pub(super) members: u32,
    /// Bytes per member.
    pub(super) entry: usize,
    /// Most entries per frame.
    pub(super) chunk: usize,
    /// The message, for an interval and the position of its first entry.
    pub(super) prefix: fn(u32, u32) -> Prefix,
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    pub(super) fn on_ready(
        &mut self,
        now: Instant,
        t: u16,
        interval: u32,
        nonce: [u8; NONCE_LEN],
    ) -> Result<(), PeerError> {
        let Phase::Opening {
            interval: cur,
            members,
            sent,
            mut ready,
            ..
        } = self.phase
        else {
            return self.past_or_unexpected(interval);
        };
        if cur != interval {
            return self.past_or_unexpected(interval);
        }
        if ready & (1 << t) != 0 || sent[usize::from(t)] != members {
            return Err(PeerError::Unexpected);
        }
        ready |= 1 << t;
        self.nonces[usize::from(t)] = nonce;
        if let Phase::Opening { ready: r, .. } = &mut self.phase {
            *r = ready;
        }
        if ready == self.all_trustees {
            self.params = self.interval_params();
            self.phase = Phase::Starting {
                interval,
                members,
                start_pending: true,
                acked: 0,
                acks_sent: [0; MAX_TRUSTEES],
                acks_scan: [0; MAX_TRUSTEES],
                got: [0; MAX_TRUSTEES],
                scan: [0; MAX_TRUSTEES],
                since: now,
            };
        }
        Ok(())
    }

    /// Parameters of the interval about to start: the configured ones, lowered to what
    /// every member's frame limit allows.
    pub(super) fn interval_params(&self) -> Params {
        let mut frame = MAX_FRAME_BODY;
        let peers = self.peers.as_ref();
        let n = usize::from(self.cfg.clients);
        let online = self.online_bits();
        let mut cells = usize::from(self.cfg.trustees);
        for i in Bits::new_checked(online, n)
            .into_iter()
            .flat_map(|b| b.iter())
        {
            frame = frame.min(peers[i].max_frame as usize);
            cells += 1;
        }
        for j in 0..usize::from(self.cfg.trustees) {
            frame = frame.min(peers[n + j].max_frame as usize);
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

    pub(super) fn on_confirm(
        &mut self,
        t: u16,
        interval: u32,
        first: u32,
        macs: &[u8],
    ) -> Result<(), PeerError> {
        let Phase::Starting {
            interval: cur,
            members,
            start_pending: false,
            acks_sent,
            mut got,
            mut scan,
            ..
        } = self.phase
        else {
            return self.past_or_unexpected(interval);
        };
        if interval != cur {
            return self.past_or_unexpected(interval);
        }
        let j = usize::from(t);
        if acks_sent[j] != members
            || first != got[j]
            || macs.is_empty()
            || macs.len() % MAC_LEN != 0
            || got[j] as usize + macs.len() / MAC_LEN > members as usize
        {
            return Err(PeerError::Interval(IntervalError::Confirms));
        }
        let n = usize::from(self.cfg.clients);
        for mac in macs.chunks_exact(MAC_LEN) {
            let i = bits::next_set(self.online_bits(), scan[j], n);
            scan[j] = i + 1;
            self.peers.as_mut()[i].confirms[j].copy_from_slice(mac);
            got[j] += 1;
        }
        if let Phase::Starting {
            got: g, scan: s, ..
        } = &mut self.phase
        {
            *g = got;
            *s = scan;
        }
        let t_all = usize::from(self.cfg.trustees);
        if got[..t_all].iter().all(|&g| g == members) {
            self.phase = Phase::Confirming {
                interval,
                members,
                scan: 0,
                replay: None,
                largest: self.largest_record(),
            };
        }
        Ok(())
    }

    pub(super) fn on_ack(&mut self, i: u16, interval: u32, macs: &[u8]) -> Result<(), PeerError> {
        let Phase::Starting {
            interval: cur,
            start_pending: false,
            acked,
            ..
        } = self.phase
        else {
            return self.past_or_unexpected(interval);
        };
        if interval != cur {
            return self.past_or_unexpected(interval);
        }
        let t = usize::from(self.cfg.trustees);
        let idx = usize::from(i);
        if !bits::test(self.online_bits(), idx)
            || macs.len() != t * MAC_LEN
            || self.peers.as_ref()[idx].acked == Some(cur)
        {
            return Err(PeerError::Interval(IntervalError::Ack));
        }
        let p = &mut self.peers.as_mut()[idx];
        for (dst, mac) in p.acks[..t].iter_mut().zip(macs.chunks_exact(MAC_LEN)) {
            dst.copy_from_slice(mac);
        }
        p.acked = Some(cur);
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
        let cur = match self.phase {
            Phase::Opening { interval, .. } | Phase::Starting { interval, .. } => interval,
            _ => {
                return if self.is_past(interval) {
                    Ok(())
                } else {
                    Err(PeerError::Unexpected)
                }
            }
        };
        if interval != cur {
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
    pub(super) fn past_or_unexpected(&self, interval: u32) -> Result<(), PeerError> {
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
            Phase::Running(r) => Some(r.interval),
            Phase::Waiting => None,
        };
        let first = self.cfg.first_interval;
        let opened = self.next_interval.wrapping_sub(first);
        let age = interval.wrapping_sub(first);
        age < opened && Some(interval) != current
    }

    pub(super) fn transmit_opening(
        &mut self,
        now: Instant,
        out: &mut [u8],
    ) -> Result<Option<Transmit>, WireError> {
        let Phase::Opening {
            interval,
            members,
            open_sent,
            mut sent,
            mut scan,
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
            entry: NONCE_LEN + MAC_LEN,
            chunk: 2048,
            prefix: |interval, first| Prefix::Members { interval, first },
        };
        let t = self.transmit_column(&column, &mut sent, &mut scan, out, |c, j, e| {
            e[..NONCE_LEN].copy_from_slice(&c.nonce);
            e[NONCE_LEN..].copy_from_slice(&c.proofs[j]);
        })?;
        if let Phase::Opening {
            sent: s, scan: sc, ..
        } = &mut self.phase
        {
            *s = sent;
            *sc = scan;
        }
        Ok(t)
    }

    /// The next frame of a per-member list for some trustee (each trustee gets every member's
    /// entry, in increasing client order); `sent` and `scan` track each trustee's progress.
    pub(super) fn transmit_column(
        &self,
        column: &Column,
        sent: &mut [u32; MAX_TRUSTEES],
        scan: &mut [usize; MAX_TRUSTEES],
        out: &mut [u8],
        fill: impl Fn(&Peer, usize, &mut [u8]),
    ) -> Result<Option<Transmit>, WireError> {
        let n = usize::from(self.cfg.clients);
        for j in 0..usize::from(self.cfg.trustees) {
            if sent[j] >= column.members {
                continue;
            }
            let Some(link) = self.peers.as_ref()[n + j].link else {
                continue;
            };
            let frame = self.peers.as_ref()[n + j].max_frame as usize;
            let room = frame.min(out.len()).saturating_sub(32) / column.entry;
            let count = ((column.members - sent[j]) as usize)
                .min(room)
                .min(column.chunk);
            if count == 0 {
                return Err(WireError::BufferTooSmall);
            }
            let p = (column.prefix)(column.interval, sent[j]).emit(count * column.entry, out)?;
            let online = &self.store.as_ref()[self.regions.connected..self.regions.online];
            let peers = self.peers.as_ref();
            let len = count * column.entry;
            for entry in out[p..p + len].chunks_exact_mut(column.entry) {
                scan[j] = bits::next_set(online, scan[j], n);
                fill(&peers[scan[j]], j, entry);
                scan[j] += 1;
            }
            sent[j] += count as u32;
            return Ok(Some(Transmit {
                destination: Destination::Link(link),
                len: p + len,
                close_after: false,
            }));
        }
        Ok(None)
    }

    pub(super) fn transmit_start(&mut self, out: &mut [u8]) -> Result<Option<Transmit>, WireError> {
        let Phase::Starting {
            interval,
            start_pending,
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
        for (dst, n) in nonces.chunks_exact_mut(NONCE_LEN).zip(&self.nonces[..t]) {
            dst.copy_from_slice(n);
        }
        let history: Vec<IntervalRecord, MAX_HISTORY> = self.history.iter().copied().collect();
        let len = Message::IntervalStart(IntervalStart {
            interval,
            epoch: self.cfg.epoch,
            online: self.online_bits(),
            nonces: &nonces[..t * NONCE_LEN],
            window: self.cfg.window,
            params: self.params,
            history,
            head: self.head,
            oldest: self.oldest,
            largest: self.largest_record(),
        })
        .emit_frame(out)?;
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
    pub(super) fn transmit_acks(&mut self, out: &mut [u8]) -> Result<Option<Transmit>, WireError> {
        let Phase::Starting {
            interval,
            members,
            acked,
            mut acks_sent,
            mut acks_scan,
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
        let t = self.transmit_column(&column, &mut acks_sent, &mut acks_scan, out, |c, j, e| {
            e.copy_from_slice(&c.acks[j])
        })?;
        if let Phase::Starting {
            acks_sent: s,
            acks_scan: sc,
            ..
        } = &mut self.phase
        {
            *s = acks_sent;
            *sc = acks_scan;
        }
        Ok(t)
    }

    pub(super) fn transmit_confirmed(
        &mut self,
        out: &mut [u8],
    ) -> Result<Option<Transmit>, WireError> {
        let Phase::Confirming {
            interval,
            members,
            mut scan,
            replay,
            largest,
        } = self.phase
        else {
            return Ok(None);
        };
        if let Some(Replaying { client, seq, at }) = replay {
            let link = self.peers.as_ref()[usize::from(client)].link;
            if let (Some(link), true) = (link, seq <= self.head.seq) {
                let sent = self.emit_replay(seq, at, out)?;
                if let Phase::Confirming { replay, .. } = &mut self.phase {
                    *replay = sent.and_then(|(_, next)| next).map(|at| Replaying {
                        client,
                        seq: seq + 1,
                        at,
                    });
                }
                if let Some((len, _)) = sent {
                    return Ok(Some(Transmit {
                        destination: Destination::Link(link),
                        len,
                        close_after: false,
                    }));
                }
            }
            if let Phase::Confirming { replay, .. } = &mut self.phase {
                *replay = None;
            }
            return self.transmit_confirmed(out);
        }
        let n = usize::from(self.cfg.clients);
        let t = usize::from(self.cfg.trustees);
        while scan < n {
            let i = scan;
            scan += 1;
            if !bits::test(self.online_bits(), i) {
                continue;
            }
            let p = self.peers.as_ref()[i];
            let Some(link) = p.link else { continue };
            let mut macs = [0u8; MAX_TRUSTEES * MAC_LEN];
            for (dst, m) in macs.chunks_exact_mut(MAC_LEN).zip(&p.confirms[..t]) {
                dst.copy_from_slice(m);
            }
            let len = Message::Confirmed {
                interval,
                macs: &macs[..t * MAC_LEN],
            }
            .emit_frame(out)?;
            let replay = self.replay_start(&p, largest).map(|(seq, at)| Replaying {
                client: i as u16,
                seq,
                at,
            });
            if let Phase::Confirming {
                scan: s, replay: r, ..
            } = &mut self.phase
            {
                *s = scan;
                *r = replay;
            }
            if let Some(p) = self.peers.as_mut().get_mut(i) {
                if replay.is_none() {
                    p.seq = Some(self.head.seq);
                }
            }
            return Ok(Some(Transmit {
                destination: Destination::Link(link),
                len,
                close_after: false,
            }));
        }
        // Everyone has the view: exchanges start.
        let schedule = match Schedule::new(
            self.cfg.slots,
            &self.params,
            self.regions.table - self.regions.acc,
        ) {
            Ok(s) => s,
            Err(_) => {
                self.phase = Phase::Waiting;
                return Ok(None);
            }
        };
        self.phase = Phase::Running(Running {
            interval,
            members,
            next: 0,
            done: 0,
            stop: None,
            schedule,
            client_pending: None,
        });
        self.unreported.clear();
        self.outq_len = 0;
        self.idle = false;
        self.burst = false;
        self.gap = Duration::default();
        self.push_event(RelayEvent::IntervalStarted {
            interval,
            clients: members as usize,
        });
        Ok(None)
    }
}
