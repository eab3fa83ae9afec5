//! A blame round's answers and its end: each `BlameReveal` and `BlameDhProof` checked and
//! written into the evidence, the verdict once every answer is in or at the deadline, and
//! the requests the round sends.
//!
//! Each round is named by its place (`k`) in the parent module's storage; a parked round
//! is answered, judged and ended as the running one is.
//!
//! Owns nothing of its own: the rounds and their storage are the parent module's.

use super::*;

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// A `BlameReveal` from `peer`, to the round (running or parked) about its exchange. A
    /// reveal that belongs to no round is ignored; one that does but does not check (its
    /// cell against the fingerprint, its signature, its length) is a refusal.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::relay) fn on_blame_reveal(
        &mut self,
        now: Instant,
        peer: PeerId,
        interval: u32,
        exchange: u64,
        bit: u32,
        pad_bits: &[u8],
        signature: &[u8],
        cell: &[u8],
    ) {
        let Some(k) = self.rounds.about(interval, exchange) else {
            return;
        };
        let Some(a) = self.rounds.round(k) else {
            return;
        };
        if a.q.bit != bit || a.dispute.is_some() {
            return;
        }
        let Some(node) = self.node_position(peer) else {
            return;
        };
        let position = match peer {
            PeerId::Client(i) => match self.rounds.position_of(k, i) {
                Some(p) => Some(p),
                None => return,
            },
            PeerId::Trustee(_) => None,
        };
        {
            let (answered, _, _) = self.rounds.flags(k);
            if crate::bits::test(answered, node) {
                return;
            }
            crate::bits::set(answered, node);
        }
        let count = if position.is_some() { a.m } else { a.n };
        let identity = self.rounds.key(node, 0).unwrap_or([0; 32]);
        let hash = cell_hash(cell);
        let cell_bit = crate::bits::test(cell, bit as usize);
        // A member's link nonce is the one it had in the round's interval (the draft holds
        // it): one that left and came back within the round has another link now.
        let mut own = [0u8; 32];
        let nonce = {
            let (_, _, evidence) = self.rounds.flags(k);
            position
                .and_then(|p| Draft::resume(evidence, a.n, a.m).map(|d| d.client_nonce(p)))
                .unwrap_or([0; NONCE_LEN])
        };
        if let PeerId::Client(_) = peer {
            crate::field::put(&mut own, 0, &nonce);
        } else {
            own = a.members_digest;
        }
        let who = match peer {
            PeerId::Client(i) => Culprit::Client(i),
            PeerId::Trustee(t) => Culprit::Trustee(t),
        };
        let statement = Statement {
            round: Round {
                group_id: &self.cfg.group_id,
                session_id: &self.cfg.session_id,
                interval,
                exchange,
                bit,
                grounds: &a.grounds_digest,
                pad_nonce: &a.pad_nonce,
                trustee_nonces: &a.trustee_nonces,
            },
            who,
            own: &own,
            decoded_hash: if position.is_some() {
                &a.decoded_hash
            } else {
                &[0; 32]
            },
            cell_hash: &hash,
            cell_bit,
            bits: pad_bits,
            count: count as u16,
        };
        let signature: Option<&[u8; 64]> = signature.try_into().ok();
        // A member that was not shown the decoded cell (its link dropped before the
        // `Disrupted` frame reached it) signs zeros for it.
        let unshown = Statement {
            decoded_hash: &[0; 32],
            ..statement
        };
        let signed = signature.is_some_and(|sig| {
            statement.verify(&identity, sig)
                || (position.is_some() && unshown.verify(&identity, sig))
        });
        let ok = pad_bits.len() == crate::bits::bitmap_len(count)
            && signed
            && self.pinned_matches(k, node, cell);
        let (_, refused, evidence) = self.rounds.flags(k);
        if !ok {
            crate::bits::set(refused, node);
        } else if let (Some(sig), Some(mut draft)) = (signature, Draft::resume(evidence, a.n, a.m))
        {
            match (peer, position) {
                (PeerId::Client(i), Some(p)) => {
                    draft.client(p, i, &nonce, &hash, cell_bit, pad_bits, sig);
                }
                (PeerId::Trustee(t), _) => {
                    draft.trustee(usize::from(t), &hash, cell_bit, pad_bits, sig);
                }
                _ => {}
            }
        }
        if a.parked.is_some() {
            self.owing_settled(now);
        }
        if self.round_answered(k) {
            self.conclude(now, k);
        }
    }

    /// Whether `cell` is what node `node` sent in round `k`'s exchange, by the fingerprint
    /// the round pinned.
    fn pinned_matches(&mut self, k: usize, node: usize, cell: &[u8]) -> bool {
        let (Some(secret), Some(a)) = (self.fingerprint_secret, self.rounds.round(k)) else {
            return false;
        };
        let (_, _, _, row, _) = self.rounds.parts(k);
        let Some(kept) = row.get(node * FINGERPRINT_LEN..(node + 1) * FINGERPRINT_LEN) else {
            return false;
        };
        ExchangeKey::new(&secret, a.q.interval, a.q.exchange).fingerprint(cell) == *kept
    }

    /// Whether every member of round `k` answered, and every trustee that takes part and
    /// can still answer (its link did not drop since it was asked).
    pub(super) fn round_answered(&self, k: usize) -> bool {
        let Some(a) = self.rounds.round(k) else {
            return false;
        };
        let clients = usize::from(self.cfg.clients);
        let trustees = usize::from(self.cfg.trustees);
        let r = &self.rounds;
        (0..a.n).all(|p| {
            r.member(k, p)
                .is_some_and(|i| r.has_answered(k, usize::from(i)))
        }) && (0..trustees)
            .filter(|&t| (a.without | a.gone) & 1 << t == 0)
            .all(|t| r.has_answered(k, clients + t))
    }

    /// A `BlameDhProof` from `peer` about the dispute of the round about its exchange.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::relay) fn on_blame_dh_proof(
        &mut self,
        now: Instant,
        peer: PeerId,
        interval: u32,
        exchange: u64,
        other: u16,
        secret: &[u8],
        proof: &[u8],
    ) {
        let Some(k) = self.rounds.about(interval, exchange) else {
            return;
        };
        let Some(a) = self.rounds.round(k) else {
            return;
        };
        let Some(d) = a.dispute else {
            return;
        };
        let by_client = match peer {
            PeerId::Client(i) if i == d.client && other == d.trustee => true,
            PeerId::Trustee(t) if t == d.trustee && other == d.client => false,
            _ => return,
        };
        let (Ok(shared), Ok(proof)) = (
            <&[u8; 32]>::try_from(secret),
            <&[u8; crate::ristretto::dleq::PROOF_LEN]>::try_from(proof),
        ) else {
            return;
        };
        let clients = usize::from(self.cfg.clients);
        let client_dh = self.rounds.key(usize::from(d.client), 1).unwrap_or([0; 32]);
        let trustee_dh = self
            .rounds
            .key(clients + usize::from(d.trustee), 1)
            .unwrap_or([0; 32]);
        let client_nonce = {
            let (_, _, evidence) = self.rounds.flags(k);
            Draft::resume(evidence, a.n, a.m)
                .map_or([0; NONCE_LEN], |dr| dr.client_nonce(d.position))
        };
        let trustee_nonce = a
            .nonces
            .get(usize::from(d.trustee))
            .copied()
            .unwrap_or([0; NONCE_LEN]);
        let facts = DisputeFacts {
            group_id: &self.cfg.group_id,
            session_id: &self.cfg.session_id,
            client_dh: &client_dh,
            trustee_dh: &trustee_dh,
            interval,
            trustee_nonce: &trustee_nonce,
            client_nonce: &client_nonce,
            pad_nonce: &a.pad_nonce,
            bit: a.q.bit,
        };
        let Some(truth) = resolve_dispute(&facts, by_client, shared, proof) else {
            return;
        };
        let (_, _, evidence) = self.rounds.flags(k);
        let Some(draft) = Draft::resume(evidence, a.n, a.m) else {
            return;
        };
        let who = if draft.client_pad_bit(d.position, usize::from(d.trustee)) != truth {
            Culprit::Client(d.client)
        } else {
            Culprit::Trustee(d.trustee)
        };
        let len = draft.finish(
            Some((d.position as u16, d.trustee, by_client, shared, proof)),
            who,
            BlameKind::LiedAboutPad,
        );
        self.end_round(now, k, &[(who, BlameKind::LiedAboutPad)], Some(len));
    }

    /// Ends round `k` with what it holds (every reveal in, or its deadline).
    pub(super) fn conclude(&mut self, now: Instant, k: usize) {
        let Some(a) = self.rounds.round(k) else {
            return;
        };
        let clients = usize::from(self.cfg.clients);
        if let Some(d) = a.dispute {
            // Nobody proved the pair's secret in time: the member refused (a trustee that
            // cannot answer is never convicted for it).
            let who = Culprit::Client(d.client);
            let (_, _, evidence) = self.rounds.flags(k);
            let len = Draft::resume(evidence, a.n, a.m)
                .map(|draft| draft.finish(None, who, BlameKind::RefusedBlame));
            self.end_round(now, k, &[(who, BlameKind::RefusedBlame)], len);
            return;
        }
        // Who refused: a member that did not answer while it could or answered what does
        // not check; a trustee that answered what does not check (one that did not answer
        // at all may be one that cannot take part: never convicted for it). A member whose
        // link is down, or came back less than the exchange timeout ago, is owed its
        // chance: not convicted, the round waits for it (`park`).
        let mut verdicts: heapless::Vec<(Culprit, BlameKind), 16> = heapless::Vec::new();
        let mut absent = 0u16;
        let mut owed = 0usize;
        // Members that restarted: answered with nothing to reveal.
        let mut forgot = 0usize;
        // When the next member that came back has had its time.
        let mut look_again: Option<Instant> = None;
        let timeout = self.cfg.exchange_timeout;
        for p in 0..a.n {
            let Some(i) = self.rounds.member(k, p) else {
                continue;
            };
            let node = usize::from(i);
            if self.rounds.has_answered(k, node) {
                let (_, refused, evidence) = self.rounds.flags(k);
                if crate::bits::test(refused, node) {
                    let _ = verdicts.push((Culprit::Client(i), BlameKind::RefusedBlame));
                } else if !Draft::resume(evidence, a.n, a.m).is_some_and(|d| d.revealed(p)) {
                    forgot += 1;
                }
                continue;
            }
            let back = self
                .rounds
                .returned
                .iter()
                .find(|r| (r.0, r.1) == (k, i))
                .map(|r| r.2 + timeout)
                .filter(|&t| now < t);
            if self.link_of(PeerId::Client(i)).is_none() || back.is_some() {
                owed += 1;
                if let Some(t) = back {
                    look_again = Some(look_again.map_or(t, |l| l.min(t)));
                }
            } else {
                let _ = verdicts.push((Culprit::Client(i), BlameKind::RefusedBlame));
            }
        }
        if owed > 0 && self.park(now, k, a, &mut verdicts, look_again) {
            return;
        }
        let (answered, refused) = (self.rounds.bitmap(k, 0), self.rounds.bitmap(k, 1));
        for t in 0..a.m {
            if !crate::bits::test(answered, clients + t) {
                absent |= 1 << t;
            } else if crate::bits::test(refused, clients + t) {
                let _ = verdicts.push((Culprit::Trustee(t as u16), BlameKind::RefusedBlame));
            }
        }
        if absent != 0 {
            self.rounds.incomplete += 1;
            self.push_event(RelayEvent::BlameIncomplete {
                interval: a.q.interval,
                exchange: a.q.exchange,
                absent,
                count: self.rounds.incomplete,
            });
        }
        let (_, _, evidence) = self.rounds.flags(k);
        let Some(draft) = Draft::resume(evidence, a.n, a.m) else {
            self.end_round(now, k, &verdicts, None);
            return;
        };
        if !verdicts.is_empty() || absent != 0 || owed > 0 || forgot > 0 {
            // Members that convict themselves are convicted with them (offline-verifiable
            // from their own reveals alone).
            let mut first_self = None;
            for p in 0..a.n {
                if draft.revealed(p) && draft.client_convicts_itself(p) {
                    let who = Culprit::Client(draft.client_index(p));
                    first_self = first_self.or(Some(who));
                    if !verdicts.iter().any(|v| v.0 == who) {
                        let _ = verdicts.push((who, BlameKind::Disrupted));
                    }
                }
            }
            // The evidence names one: a member convicted by its own reveal if there is one
            // (offline-verifiable), else the first that refused; it is named first.
            if let Some(at) = verdicts.iter().position(|v| v.1 == BlameKind::Disrupted) {
                verdicts.swap(0, at);
            }
            let len = verdicts
                .first()
                .map(|&(who, kind)| draft.finish(None, who, kind));
            self.end_round(now, k, &verdicts, len);
            return;
        }
        match draft.judge() {
            Finding::Convicted { who, kind } => {
                let len = draft.finish(None, who, kind);
                self.end_round(now, k, &[(who, kind)], Some(len));
            }
            Finding::Dispute { position, trustee } => {
                let client = draft.client_index(position);
                if let Some(active) = self.rounds.round_mut(k) {
                    active.dispute = Some(Dispute {
                        position,
                        client,
                        trustee: trustee as u16,
                        ask_client: true,
                        ask_trustee: true,
                    });
                    active.deadline = now + self.cfg.exchange_timeout;
                }
            }
        }
    }

    /// Members were owed their chance at the round's end (`owed` of them, away or just
    /// back): the verdicts sound without their reveals (members that convict themselves,
    /// added to `verdicts`, and refusers) stand and end the round; without one, the round
    /// parks until `look_again` (or its expiry) and `true` is returned. It parks at most
    /// the longest back-off plus one exchange timeout from its first deadline (a member
    /// backed off comes back within it); then it ends with no verdict on the absent. A
    /// parked round steps aside: the next waiting round begins. When [`MAX_PARKED`] are
    /// parked already, the oldest gives up first ([`RelayEvent::BlameGaveUp`]).
    fn park(
        &mut self,
        now: Instant,
        k: usize,
        a: Active,
        verdicts: &mut heapless::Vec<(Culprit, BlameKind), 16>,
        look_again: Option<Instant>,
    ) -> bool {
        {
            let (_, _, evidence) = self.rounds.flags(k);
            if let Some(draft) = Draft::resume(evidence, a.n, a.m) {
                for p in 0..a.n {
                    if draft.revealed(p) && draft.client_convicts_itself(p) {
                        let who = Culprit::Client(draft.client_index(p));
                        if !verdicts.iter().any(|v| v.0 == who) {
                            let _ = verdicts.push((who, BlameKind::Disrupted));
                        }
                    }
                }
            }
        }
        if !verdicts.is_empty() {
            return false;
        }
        if a.parked.is_none() {
            if let Some((position, trustee)) = self.revealed_dispute(k, a) {
                // A member and a trustee that both revealed disagree about their pad bit: a
                // proof convicts one of them whatever the absent reveals say, so it is
                // settled now, while the interval is held.
                let client = self.rounds.member(k, position).unwrap_or(0);
                if let Some(active) = self.rounds.round_mut(k) {
                    active.dispute = Some(Dispute {
                        position,
                        client,
                        trustee,
                        ask_client: true,
                        ask_trustee: true,
                    });
                    active.deadline = now + self.cfg.exchange_timeout;
                }
                return true;
            }
        }
        let expiry = a
            .parked
            .unwrap_or(now + self.cfg.stall.backoff_cap + self.cfg.exchange_timeout);
        if now >= expiry {
            return false;
        }
        if a.parked.is_none() && self.rounds.parked() >= MAX_PARKED {
            self.give_up_oldest(now);
        }
        if let Some(active) = self.rounds.round_mut(k) {
            active.parked = Some(expiry);
            active.deadline = look_again.map_or(expiry, |t| t.min(expiry));
        }
        if a.parked.is_none() {
            let away = self.away(k);
            self.push_event(RelayEvent::BlameAwaiting {
                interval: a.q.interval,
                exchange: a.q.exchange,
                members: away,
            });
            // The interval it held may end now.
            self.advance(now);
        }
        true
    }

    /// Members of round `k` that have not answered it.
    fn away(&self, k: usize) -> u16 {
        let Some(a) = self.rounds.round(k) else {
            return 0;
        };
        (0..a.n)
            .filter_map(|p| self.rounds.member(k, p))
            .filter(|&i| !self.rounds.has_answered(k, usize::from(i)))
            .count() as u16
    }

    /// The oldest parked round (the first to have parked) gives up waiting: it ends with
    /// no verdict on the members it waits for, who owe it nothing more.
    fn give_up_oldest(&mut self, now: Instant) {
        let oldest = (0..PLACES)
            .filter_map(|k| Some((k, self.rounds.round(k)?.parked?)))
            .min_by_key(|&(_, expiry)| expiry)
            .map(|(k, _)| k);
        let Some((k, a)) = oldest.and_then(|k| Some((k, self.rounds.round(k)?))) else {
            return;
        };
        let members = self.away(k);
        self.push_event(RelayEvent::BlameGaveUp {
            interval: a.q.interval,
            exchange: a.q.exchange,
            members,
        });
        self.end_round(now, k, &[], None);
    }

    /// The first member (position) and trustee that both revealed in round `k` and
    /// disagree about the pad bit they share.
    fn revealed_dispute(&self, k: usize, a: Active) -> Option<(usize, u16)> {
        let clients = usize::from(self.cfg.clients);
        let r = &self.rounds;
        let refused = r.bitmap(k, 1);
        let evidence = r.evidence_of(k);
        let revealed = |e: &crate::blame::evidence::Entry<'_>| e.signature.iter().any(|&b| b != 0);
        for t in 0..a.m {
            let node = clients + t;
            if !r.has_answered(k, node) || crate::bits::test(refused, node) {
                continue;
            }
            let Some(theirs) = Draft::reveal_in(evidence, a.n, a.m, true, t) else {
                continue;
            };
            for p in 0..a.n {
                let Some(mine) = Draft::reveal_in(evidence, a.n, a.m, false, p) else {
                    continue;
                };
                if revealed(&mine)
                    && crate::bits::test(mine.pad_bits, t) != crate::bits::test(theirs.pad_bits, p)
                {
                    return Some((p, t as u16));
                }
            }
        }
        None
    }

    /// Ends round `k`: every verdict excludes its node (a member that refused is
    /// penalized first), the evidence (`len` bytes) is kept for the shell.
    fn end_round(
        &mut self,
        now: Instant,
        k: usize,
        verdicts: &[(Culprit, BlameKind)],
        len: Option<usize>,
    ) {
        let Some(a) = self.rounds.places.get_mut(k).and_then(Option::take) else {
            return;
        };
        let (interval, exchange) = (a.q.interval, a.q.exchange);
        // The trap form ends with the grounds' points and the cell length.
        let trap = a.q.grounds.get(..a.q.grounds_len).map(Grounds::parse);
        let len = match (len, trap) {
            (Some(len), Some(Ok(Grounds::Trap(t)))) => {
                let at = self.rounds.evidence_at(k) + len;
                let tail = crate::blame::evidence::trap_tail(&t, a.cell_len);
                self.rounds
                    .region
                    .as_mut()
                    .get_mut(at..at + tail.len())
                    .map(|dst| {
                        dst.copy_from_slice(&tail);
                        len + tail.len()
                    })
            }
            (len, _) => len,
        };
        if let Some(len) = len {
            self.rounds.evidence = Some((interval, exchange, len, k));
            self.rounds.ended += 1;
        } else if self
            .rounds
            .evidence
            .is_some_and(|e| (e.0, e.1) == (interval, exchange))
        {
            self.rounds.evidence = None;
        }
        let first = verdicts.first().copied();
        for &(who, kind) in verdicts {
            let node = match who {
                Culprit::Client(i) => {
                    if kind == BlameKind::RefusedBlame {
                        let _ = self.add_penalty(now, i, Stall::RefusedBlame);
                    }
                    PeerId::Client(i)
                }
                Culprit::Trustee(t) => PeerId::Trustee(t),
                // The relay does not exclude itself; its members were told by the evidence.
                Culprit::Relay => continue,
            };
            self.exclude_convicted(now, node, interval, exchange, kind);
        }
        self.push_event(RelayEvent::BlameEnded {
            interval,
            exchange,
            verdict: first,
        });
        self.rounds.returned.retain(|r| r.0 != k);
        if a.parked.is_some() {
            self.owing_settled(now);
        }
        // The interval it held may end now.
        self.advance(now);
    }

    /// Members of a parked round stopped owing it (it ended, or they answered): those
    /// connected, in no interval and owing no round join the next (as any client that
    /// connects does).
    pub(super) fn owing_settled(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Waiting) {
            return;
        }
        let n = usize::from(self.cfg.clients);
        let mut joiners = false;
        for i in 0..n {
            let member = crate::bits::test(self.online_bits(), i);
            if let Some(p) = self.peers.as_mut().get_mut(i) {
                if p.link.is_some()
                    && p.waiting_since.is_none()
                    && !member
                    && !self.rounds.owes(i as u16)
                {
                    p.waiting_since = Some(now);
                    joiners = true;
                }
            }
        }
        if joiners {
            let at = now + self.cfg.join_delay;
            self.join_check = Some(self.join_check.map_or(at, |t| t.min(at)));
        }
    }

    /// The decoded cell's hash member `client`'s reveal `e` signed: the running round's,
    /// or zeros (a member that was not shown it).
    fn decoded_signed(
        &self,
        a: &Active,
        client: u16,
        own: &[u8; 32],
        e: &crate::blame::evidence::Entry<'_>,
    ) -> [u8; 32] {
        let identity = self.rounds.key(usize::from(client), 0).unwrap_or([0; 32]);
        let (Ok(cell_hash), Ok(signature)) = (
            <&[u8; 32]>::try_from(e.cell_hash),
            <&[u8; 64]>::try_from(e.signature),
        ) else {
            return [0; 32];
        };
        let statement = Statement {
            round: Round {
                group_id: &self.cfg.group_id,
                session_id: &self.cfg.session_id,
                interval: a.q.interval,
                exchange: a.q.exchange,
                bit: a.q.bit,
                grounds: &a.grounds_digest,
                pad_nonce: &a.pad_nonce,
                trustee_nonces: &a.trustee_nonces,
            },
            who: Culprit::Client(client),
            own,
            decoded_hash: &a.decoded_hash,
            cell_hash,
            cell_bit: e.cell_bit,
            bits: e.pad_bits,
            count: a.m as u16,
        };
        if statement.verify(&identity, signature) {
            a.decoded_hash
        } else {
            [0; 32]
        }
    }

    /// The rounds' next request: a `BlameRequest` to every trustee and member of the
    /// running round, one again to a member back on a new link (of any round), or a
    /// dispute's `BlameDhRequest` to each side.
    pub(in crate::relay) fn transmit_round(
        &mut self,
        out: &mut [u8],
    ) -> Result<Option<Transmit>, WireError> {
        for k in 0..PLACES {
            if let Some(t) = self.transmit_place(k, out)? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// Round `k`'s next request.
    fn transmit_place(&mut self, k: usize, out: &mut [u8]) -> Result<Option<Transmit>, WireError> {
        let Some(a) = self.rounds.round(k) else {
            return Ok(None);
        };
        if !a.request_sent {
            let Some(len) = a.q.emit_request(out)? else {
                return Ok(None);
            };
            // It reaches the trustees connected now, and no other ever.
            let down = (0..a.m)
                .filter(|&t| self.link_of(PeerId::Trustee(t as u16)).is_none())
                .fold(0u16, |bits, t| bits | 1 << t);
            if let Some(active) = self.rounds.round_mut(k) {
                active.request_sent = true;
                active.gone |= down;
            }
            return Ok(Some(Transmit {
                destination: Destination::TrusteesAndMembers,
                len,
                close_after: false,
            }));
        }
        // Members back on a new link: the request again, one at a time (one whose link went
        // down again is marked again when it is back).
        if a.resend {
            // Each turn clears one mark: it ends.
            loop {
                // (Only clients are marked; the bitmap spans every node.)
                let marked = Bits::new_checked(self.rounds.bitmap(k, 2), self.rounds.nodes)
                    .ok()
                    .and_then(|b| b.iter().next());
                let Some(i) = marked else {
                    if let Some(active) = self.rounds.round_mut(k) {
                        active.resend = false;
                    }
                    break;
                };
                let (_, _, resend, _, _) = self.rounds.parts(k);
                crate::bits::clear(resend, i);
                if let Some(link) = self.link_of(PeerId::Client(i as u16)) {
                    let Some(len) = a.q.emit_request(out)? else {
                        return Ok(None);
                    };
                    return Ok(Some(Transmit {
                        destination: Destination::Link(link),
                        len,
                        close_after: false,
                    }));
                }
            }
        }
        loop {
            let Some(Some(d)) = self.rounds.round(k).map(|a| a.dispute) else {
                return Ok(None);
            };
            let (node, peer) = if d.ask_client {
                (PeerId::Client(d.client), d.trustee)
            } else if d.ask_trustee {
                (PeerId::Trustee(d.trustee), d.client)
            } else {
                return Ok(None);
            };
            if let Some(dispute) = self.rounds.round_mut(k).and_then(|a| a.dispute.as_mut()) {
                if d.ask_client {
                    dispute.ask_client = false;
                } else {
                    dispute.ask_trustee = false;
                }
            }
            let Some(link) = self.link_of(node) else {
                continue;
            };
            // The other side's reveal, which the asked side checks before it proves
            // anything.
            let to_client = matches!(node, PeerId::Client(_));
            let evidence = self.rounds.evidence_of(k);
            let (side, at) = if to_client {
                (true, usize::from(d.trustee))
            } else {
                (false, d.position)
            };
            let Some(e) = Draft::reveal_in(evidence, a.n, a.m, side, at) else {
                continue;
            };
            let mut own = [0u8; 32];
            let (who, decoded) = if to_client {
                own = a.members_digest;
                (Culprit::Trustee(d.trustee), [0; 32])
            } else {
                crate::field::put(&mut own, 0, e.nonce);
                (
                    Culprit::Client(d.client),
                    self.decoded_signed(&a, d.client, &own, &e),
                )
            };
            let mut reveal = [0u8; crate::blame::reveal::SHOWN_CLIENT_LEN];
            let n = crate::blame::Shown::lay_out(
                who,
                &own,
                &decoded,
                e.cell_hash,
                e.cell_bit,
                e.signature,
                &mut reveal,
            );
            let len = Message::BlameDhRequest {
                interval: a.q.interval,
                exchange: a.q.exchange,
                peer,
                bit: a.q.bit,
                reveal: reveal.get(..n).unwrap_or(&[]),
                pad_bits: e.pad_bits,
            }
            .emit_frame(out)?;
            return Ok(Some(Transmit {
                destination: Destination::Link(link),
                len,
                close_after: false,
            }));
        }
    }
}
