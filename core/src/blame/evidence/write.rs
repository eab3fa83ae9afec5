//! Writing evidence: [`EvidenceWriter`] in one pass, or a [`Draft`] filled in as the
//! reveals come and finished at the verdict.

use super::*;

/// Writes evidence in order: [`EvidenceWriter::new`], every member
/// ([`EvidenceWriter::client`], by ascending index), every trustee, the disputes, then
/// [`EvidenceWriter::finish`].
#[derive(Debug)]
pub struct EvidenceWriter<'b> {
    out: &'b mut [u8],
    at: usize,
    m: usize,
    n: usize,
    disputes_at: Option<usize>,
    disputes: u16,
    tail: Option<[u8; TRAP_TAIL_LEN]>,
}

impl<'b> EvidenceWriter<'b> {
    /// Starts evidence in `out`; `None` if `out` cannot hold [`evidence_len`] for the
    /// header's counts and `disputes` disputes.
    pub fn new(h: &Header<'_>, disputes: usize, out: &'b mut [u8]) -> Option<Self> {
        let (n, m) = (usize::from(h.clients), usize::from(h.trustees));
        if out.len() < evidence_len(n, m, disputes) + tail_len(h)
            || h.trustee_nonces.len() != m * NONCE_LEN
        {
            return None;
        }
        let mut w = EvidenceWriter {
            out,
            at: 0,
            m,
            n,
            disputes_at: None,
            disputes: 0,
            tail: match h.grounds {
                Grounds::Accused(_) => None,
                Grounds::Trap(t) => Some(trap_tail(t, h.cell_len)),
            },
        };
        let (magic, proof) = match h.grounds {
            Grounds::Accused(a) => (MAGIC, &a.proof),
            Grounds::Trap(t) => (TRAP_MAGIC, &t.proof),
        };
        for p in [
            &magic[..],
            h.group_id,
            h.session_id,
            h.view,
            &h.interval.to_be_bytes(),
            &h.exchange.to_be_bytes(),
            &h.bit.to_be_bytes(),
            &h.slot.to_be_bytes(),
            h.pad_nonce,
            h.decoded_hash,
            proof,
            &h.trustees.to_be_bytes(),
            &h.clients.to_be_bytes(),
            h.trustee_nonces,
        ] {
            w.put(p);
        }
        Some(w)
    }

    fn put(&mut self, bytes: &[u8]) {
        crate::field::put(self.out, self.at, bytes);
        self.at += bytes.len();
    }

    fn put_bits(&mut self, bits: &[u8], count: usize) {
        let len = bits::bitmap_len(count);
        for i in 0..len {
            self.put(&[bits.get(i).copied().unwrap_or(0)]);
        }
    }

    /// A member's reveal.
    pub fn client(
        &mut self,
        index: u16,
        nonce: &[u8; NONCE_LEN],
        cell_hash: &[u8; 32],
        cell_bit: bool,
        pad_bits: &[u8],
        signature: &[u8; 64],
    ) {
        self.put(&index.to_be_bytes());
        self.put(nonce);
        self.put(cell_hash);
        self.put(&[u8::from(cell_bit)]);
        self.put_bits(pad_bits, self.m);
        self.put(signature);
    }

    /// A trustee's reveal.
    pub fn trustee(
        &mut self,
        cell_hash: &[u8; 32],
        cell_bit: bool,
        pad_bits: &[u8],
        signature: &[u8; 64],
    ) {
        self.put(cell_hash);
        self.put(&[u8::from(cell_bit)]);
        self.put_bits(pad_bits, self.n);
        self.put(signature);
    }

    /// A dispute's proven Diffie–Hellman secret.
    pub fn dispute(
        &mut self,
        position: u16,
        trustee: u16,
        by_client: bool,
        shared: &[u8; 32],
        proof: &[u8; PROOF_LEN],
    ) {
        if self.disputes_at.is_none() {
            self.disputes_at = Some(self.at);
            self.at += 2;
        }
        self.disputes += 1;
        self.put(&position.to_be_bytes());
        self.put(&trustee.to_be_bytes());
        self.put(&[u8::from(!by_client)]);
        self.put(shared);
        self.put(proof);
    }

    /// Writes the verdict; returns the evidence's length.
    pub fn finish(mut self, who: Culprit, kind: BlameKind) -> usize {
        let at = match self.disputes_at {
            Some(at) => at,
            None => {
                self.at += 2;
                self.at - 2
            }
        };
        crate::field::put(self.out, at, &self.disputes.to_be_bytes());
        let (role, index) = who.to_wire();
        self.put(&[kind as u8, role]);
        self.put(&index.to_be_bytes());
        if let Some(tail) = self.tail {
            self.put(&tail);
        }
        self.at
    }
}

/// Evidence filled in as reveals arrive, in any order: the relay lays out the header and
/// every entry's place ([`Draft::new`]), writes each reveal at its place
/// ([`Draft::client`], [`Draft::trustee`]), judges what it holds ([`Draft::judge`], as
/// [`judge`] over every entry) and finishes with the verdict ([`Draft::finish`]). An entry
/// never written stays zero: a signature of 64 zeros marks a node that did not reveal
/// (allowed only in evidence of a refused blame, or of a member that convicted itself).
#[derive(Debug)]
pub struct Draft<'b> {
    out: &'b mut [u8],
    m: usize,
    n: usize,
}

impl<'b> Draft<'b> {
    /// Lays out evidence for the header's counts in `out` (which must hold
    /// [`evidence_len`] with one dispute); `None` if it cannot.
    pub fn new(h: &Header<'_>, out: &'b mut [u8]) -> Option<Self> {
        let (n, m) = (usize::from(h.clients), usize::from(h.trustees));
        let len = evidence_len(n, m, 1);
        let out = out.get_mut(..len)?;
        out.fill(0);
        // The trap form's tail follows the verdict: the relay writes it when the round
        // ends ([`trap_tail`]).
        let plain = Header {
            grounds: &Grounds::Accused(Accusation {
                exchange: h.exchange,
                bit: h.bit,
                proof: match h.grounds {
                    Grounds::Accused(a) => a.proof,
                    Grounds::Trap(t) => t.proof,
                },
            }),
            ..*h
        };
        let out = EvidenceWriter::new(&plain, 1, out)?.out;
        if matches!(h.grounds, Grounds::Trap(_)) {
            crate::field::put(out, 0, TRAP_MAGIC);
        }
        Some(Draft { out, m, n })
    }

    /// Takes up a draft laid out by [`Draft::new`] for `n` members and `m` trustees.
    pub fn resume(out: &'b mut [u8], n: usize, m: usize) -> Option<Self> {
        let out = out.get_mut(..evidence_len(n, m, 1))?;
        Some(Draft { out, m, n })
    }

    /// Whether the member at `position` revealed (its signature is written).
    pub fn revealed(&self, position: usize) -> bool {
        let at = self.client_at(position) + 2 + NONCE_LEN + 33 + bits::bitmap_len(self.m);
        self.out
            .get(at..at + 64)
            .is_some_and(|s| s.iter().any(|&b| b != 0))
    }

    /// The group index of the member at `position`.
    pub fn client_index(&self, position: usize) -> u16 {
        be16(self.out, self.client_at(position)).unwrap_or(0)
    }

    fn client_at(&self, p: usize) -> usize {
        HEADER_LEN + self.m * NONCE_LEN + p * client_entry_len(self.m)
    }

    fn trustee_at(&self, t: usize) -> usize {
        HEADER_LEN
            + self.m * NONCE_LEN
            + self.n * client_entry_len(self.m)
            + t * trustee_entry_len(self.n)
    }

    /// Writes the member at `position`'s reveal (its place fixed by its index order).
    #[allow(clippy::too_many_arguments)]
    pub fn client(
        &mut self,
        position: usize,
        index: u16,
        nonce: &[u8; NONCE_LEN],
        cell_hash: &[u8; 32],
        cell_bit: bool,
        pad_bits: &[u8],
        signature: &[u8; 64],
    ) {
        if position >= self.n {
            return;
        }
        let at = self.client_at(position);
        let bits_len = bits::bitmap_len(self.m);
        let mut put = |at: usize, b: &[u8]| crate::field::put(self.out, at, b);
        put(at, &index.to_be_bytes());
        put(at + 2, nonce);
        put(at + 2 + NONCE_LEN, cell_hash);
        put(at + 2 + NONCE_LEN + 32, &[u8::from(cell_bit)]);
        for i in 0..bits_len {
            put(
                at + 2 + NONCE_LEN + 33 + i,
                &[pad_bits.get(i).copied().unwrap_or(0)],
            );
        }
        put(at + 2 + NONCE_LEN + 33 + bits_len, signature);
    }

    /// The link nonce the member at `position` had in the round's interval (its place).
    pub fn client_nonce(&self, position: usize) -> [u8; NONCE_LEN] {
        let at = self.client_at(position) + 2;
        self.out
            .get(at..at + NONCE_LEN)
            .and_then(|n| n.try_into().ok())
            .unwrap_or([0; NONCE_LEN])
    }

    /// Writes only the index and link nonce of the member at `position` (before its reveal
    /// arrives, or for good if none does).
    pub fn client_place(&mut self, position: usize, index: u16, nonce: &[u8; NONCE_LEN]) {
        if position >= self.n {
            return;
        }
        let at = self.client_at(position);
        crate::field::put(self.out, at, &index.to_be_bytes());
        crate::field::put(self.out, at + 2, nonce);
    }

    /// Writes trustee `t`'s reveal.
    pub fn trustee(
        &mut self,
        t: usize,
        cell_hash: &[u8; 32],
        cell_bit: bool,
        pad_bits: &[u8],
        signature: &[u8; 64],
    ) {
        if t >= self.m {
            return;
        }
        let at = self.trustee_at(t);
        let bits_len = bits::bitmap_len(self.n);
        crate::field::put(self.out, at, cell_hash);
        crate::field::put(self.out, at + 32, &[u8::from(cell_bit)]);
        if let Some(dst) = self.out.get_mut(at + 33..at + 33 + bits_len) {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = pad_bits.get(i).copied().unwrap_or(0);
            }
        }
        crate::field::put(self.out, at + 33 + bits_len, signature);
    }

    /// The verdict of what it holds (every entry), as [`judge`] gives it.
    pub fn judge(&self) -> Finding {
        judge(&DraftReveals(self))
    }

    /// Whether the member at `position` convicts itself (its cell bit is not the XOR of
    /// its own pad bits).
    pub fn client_convicts_itself(&self, position: usize) -> bool {
        let r = DraftReveals(self);
        let pads = (0..self.m).fold(false, |x, t| x ^ r.client_pad_bit(position, t));
        pads != r.client_cell_bit(position)
    }

    /// The pad bit the member at `position` claims to share with trustee `t`.
    pub fn client_pad_bit(&self, position: usize, t: usize) -> bool {
        DraftReveals(self).client_pad_bit(position, t)
    }

    /// Finishes with `dispute` (a proven Diffie–Hellman secret: member position, trustee,
    /// made by the member, secret, proof) and the verdict; returns the evidence's length.
    pub fn finish(
        self,
        dispute: Option<ProvenDispute<'_>>,
        who: Culprit,
        kind: BlameKind,
    ) -> usize {
        let d = usize::from(dispute.is_some());
        let at = self.trustee_at(self.m);
        let out = self.out;
        crate::field::put(out, at, &(d as u16).to_be_bytes());
        let mut at = at + 2;
        if let Some((position, trustee, by_client, shared, proof)) = dispute {
            for part in [
                &position.to_be_bytes()[..],
                &trustee.to_be_bytes(),
                &[u8::from(!by_client)],
                shared,
                proof,
            ] {
                crate::field::put(out, at, part);
                at += part.len();
            }
        }
        let (role, index) = who.to_wire();
        crate::field::put(out, at, &[kind as u8, role]);
        crate::field::put(out, at + 2, &index.to_be_bytes());
        at + VERDICT_LEN
    }
}

/// One reveal as a draft holds it ([`Draft::reveal_in`]).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// A member's link nonce (empty for a trustee).
    pub nonce: &'a [u8],
    /// SHA-256 of its cell.
    pub cell_hash: &'a [u8],
    /// Its cell bit.
    pub cell_bit: bool,
    /// Its pad bits.
    pub pad_bits: &'a [u8],
    /// Its signature (64 zeros if it did not reveal).
    pub signature: &'a [u8],
}

impl Draft<'_> {
    /// The group index of the member at `position` in a draft laid out for `n` members
    /// and `m` trustees, read in place.
    pub fn client_index_in(draft: &[u8], n: usize, m: usize, position: usize) -> Option<u16> {
        if position >= n {
            return None;
        }
        be16(
            draft,
            HEADER_LEN + m * NONCE_LEN + position * client_entry_len(m),
        )
    }

    /// The reveal of the member at `position` (`trustee` false) or of trustee `position`
    /// in a draft laid out for `n` members and `m` trustees, read in place.
    pub fn reveal_in(
        draft: &[u8],
        n: usize,
        m: usize,
        trustee: bool,
        position: usize,
    ) -> Option<Entry<'_>> {
        let members = HEADER_LEN + m * NONCE_LEN;
        let (at, nonce, bits) = if trustee {
            if position >= m {
                return None;
            }
            let at = members + n * client_entry_len(m) + position * trustee_entry_len(n);
            (at, 0, bits::bitmap_len(n))
        } else {
            if position >= n {
                return None;
            }
            (
                members + position * client_entry_len(m) + 2,
                NONCE_LEN,
                bits::bitmap_len(m),
            )
        };
        let e = draft.get(at..at + nonce + 33 + bits + 64)?;
        let (nonce, rest) = e.split_at_checked(nonce)?;
        let (cell_hash, rest) = rest.split_at_checked(32)?;
        let (&cell_bit, rest) = rest.split_first()?;
        let (pad_bits, signature) = rest.split_at_checked(bits)?;
        Some(Entry {
            nonce,
            cell_hash,
            cell_bit: cell_bit == 1,
            pad_bits,
            signature,
        })
    }
}

/// A dispute settled in a round, as the evidence records it: the member's position, the
/// trustee, whether the member made the proof, the proven Diffie–Hellman secret, the proof.
pub type ProvenDispute<'a> = (u16, u16, bool, &'a [u8; 32], &'a [u8; PROOF_LEN]);

/// The reveals of a draft, for [`judge`].
struct DraftReveals<'d, 'b>(&'d Draft<'b>);

impl Reveals for DraftReveals<'_, '_> {
    fn clients(&self) -> usize {
        self.0.n
    }
    fn trustees(&self) -> usize {
        self.0.m
    }
    fn client_index(&self, p: usize) -> u16 {
        be16(self.0.out, self.0.client_at(p)).unwrap_or(0)
    }
    fn client_cell_bit(&self, p: usize) -> bool {
        self.0.out.get(self.0.client_at(p) + 2 + NONCE_LEN + 32) == Some(&1)
    }
    fn client_pad_bit(&self, p: usize, t: usize) -> bool {
        let at = self.0.client_at(p) + 2 + NONCE_LEN + 33;
        bits::test(
            self.0
                .out
                .get(at..at + bits::bitmap_len(self.0.m))
                .unwrap_or(&[]),
            t,
        )
    }
    fn trustee_cell_bit(&self, t: usize) -> bool {
        self.0.out.get(self.0.trustee_at(t) + 32) == Some(&1)
    }
    fn trustee_pad_bit(&self, t: usize, p: usize) -> bool {
        let at = self.0.trustee_at(t) + 33;
        bits::test(
            self.0
                .out
                .get(at..at + bits::bitmap_len(self.0.n))
                .unwrap_or(&[]),
            p,
        )
    }
}
