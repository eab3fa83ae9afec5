//! Checking evidence from public keys only ([`verify`]): every field parsed, every
//! signature and proof checked, the verdict recomputed.

use super::*;

/// Parsed evidence (borrowing the bytes).
#[derive(Debug, Clone, Copy)]
struct Parsed<'a> {
    bytes: &'a [u8],
    m: usize,
    n: usize,
    nonces_at: usize,
    clients_at: usize,
    trustees_at: usize,
    disputes_at: usize,
    disputes: usize,
    who: Culprit,
    kind: BlameKind,
    /// Where the trap form's tail starts (`None` for an accusation).
    tail_at: Option<usize>,
}

impl<'a> Parsed<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        let trap = match bytes.get(..16)? {
            m if m == MAGIC => false,
            m if m == TRAP_MAGIC => true,
            _ => return None,
        };
        let m = usize::from(be16(bytes, HEADER_LEN - 4)?);
        let n = usize::from(be16(bytes, HEADER_LEN - 2)?);
        let nonces_at = HEADER_LEN;
        let clients_at = nonces_at + m * NONCE_LEN;
        let trustees_at = clients_at + n * client_entry_len(m);
        let disputes_at = trustees_at + m * trustee_entry_len(n) + 2;
        let disputes = usize::from(be16(bytes, disputes_at - 2)?);
        let verdict_at = disputes_at + disputes * DISPUTE_LEN;
        let tail = if trap { TRAP_TAIL_LEN } else { 0 };
        if bytes.len() != verdict_at + VERDICT_LEN + tail {
            return None;
        }
        // Flag bytes are 0 or 1, nothing else: one encoding per evidence.
        let flags = (0..n)
            .map(|p| clients_at + p * client_entry_len(m) + 2 + NONCE_LEN + 32)
            .chain((0..m).map(|t| trustees_at + t * trustee_entry_len(n) + 32))
            .chain((0..disputes).map(|d| disputes_at + d * DISPUTE_LEN + 4));
        for at in flags {
            if *bytes.get(at)? > 1 {
                return None;
            }
        }
        let kind = BlameKind::from_u8(*bytes.get(verdict_at)?)?;
        let index = be16(bytes, verdict_at + 2)?;
        let who = match bytes.get(verdict_at + 1)? {
            0 => Culprit::Client(index),
            1 => Culprit::Trustee(index),
            2 if index == 0 => Culprit::Relay,
            _ => return None,
        };
        Some(Parsed {
            bytes,
            m,
            n,
            nonces_at,
            clients_at,
            trustees_at,
            disputes_at,
            disputes,
            who,
            kind,
            tail_at: trap.then_some(verdict_at + VERDICT_LEN),
        })
    }

    fn field<const N: usize>(&self, at: usize) -> &'a [u8; N] {
        arr::<N>(self.bytes, at).unwrap_or(&[0; N])
    }

    fn client_at(&self, p: usize) -> usize {
        self.clients_at + p * client_entry_len(self.m)
    }

    fn trustee_at(&self, t: usize) -> usize {
        self.trustees_at + t * trustee_entry_len(self.n)
    }

    fn client_nonce(&self, p: usize) -> &'a [u8; NONCE_LEN] {
        self.field(self.client_at(p) + 2)
    }

    fn trustee_nonce(&self, t: usize) -> &'a [u8; NONCE_LEN] {
        self.field(self.nonces_at + t * NONCE_LEN)
    }

    fn client_bits(&self, p: usize) -> &'a [u8] {
        let at = self.client_at(p) + 2 + NONCE_LEN + 33;
        self.bytes
            .get(at..at + bits::bitmap_len(self.m))
            .unwrap_or(&[])
    }

    fn trustee_bits(&self, t: usize) -> &'a [u8] {
        let at = self.trustee_at(t) + 33;
        self.bytes
            .get(at..at + bits::bitmap_len(self.n))
            .unwrap_or(&[])
    }
}

impl Reveals for Parsed<'_> {
    fn clients(&self) -> usize {
        self.n
    }
    fn trustees(&self) -> usize {
        self.m
    }
    fn client_index(&self, p: usize) -> u16 {
        be16(self.bytes, self.client_at(p)).unwrap_or(0)
    }
    fn client_cell_bit(&self, p: usize) -> bool {
        self.bytes.get(self.client_at(p) + 2 + NONCE_LEN + 32) == Some(&1)
    }
    fn client_pad_bit(&self, p: usize, t: usize) -> bool {
        bits::test(self.client_bits(p), t)
    }
    fn trustee_cell_bit(&self, t: usize) -> bool {
        self.bytes.get(self.trustee_at(t) + 32) == Some(&1)
    }
    fn trustee_pad_bit(&self, t: usize, p: usize) -> bool {
        bits::test(self.trustee_bits(t), p)
    }
}

/// Checks evidence from public keys only: the accusation's proof, every reveal's
/// signature, the verdict the reveals force (settling a dispute with the proven
/// Diffie–Hellman secret and the pad derivation), and that it is the recorded one.
pub fn verify(bytes: &[u8], keys: &impl Directory) -> Result<Verified, EvidenceError> {
    if let (Some(head), Some(&version)) = (bytes.get(..15), bytes.get(15)) {
        let ours = head == &MAGIC[..15] || head == &TRAP_MAGIC[..15];
        if ours && version != MAGIC[15] && version.is_ascii_digit() {
            return Err(EvidenceError::Version(version));
        }
    }
    let e = Parsed::parse(bytes).ok_or(EvidenceError::Malformed)?;
    let group_id: &[u8; 16] = e.field(16);
    let session_id: &[u8; 16] = e.field(32);
    let view: &[u8; 32] = e.field(48);
    let interval = u32::from_be_bytes(*e.field(80));
    let exchange = u64::from_be_bytes(*e.field(84));
    let bit = u32::from_be_bytes(*e.field(92));
    let slot = u16::from_be_bytes(*e.field(96));
    let pad_nonce: &PadNonce = e.field(98);
    let decoded_hash: [u8; 32] = *e.field(122);
    let proof: [u8; PROOF_LEN] = *e.field(154);
    let pseudonym = keys.pseudonym(slot).ok_or(EvidenceError::UnknownKey)?;
    // The grounds, and the cell length their check uses (the trap form's).
    let (grounds, cell_len) = match e.tail_at {
        Some(at) => (
            Grounds::Trap(TrapGrounds {
                announced: *e.field(at),
                point: *e.field(at + 32),
                proof,
            }),
            u32::from_be_bytes(*e.field(at + 64)),
        ),
        None => (
            Grounds::Accused(Accusation {
                exchange,
                bit,
                proof,
            }),
            0,
        ),
    };
    match &grounds {
        Grounds::Trap(t) => {
            // A sprung trap: the proof shows `Z = r_I·P_s` for the slot's key, and the bit
            // lies in a trap byte, where the owner wrote 0. That `R_I` was the announced
            // point and the length the exchange's is what every member checked before it
            // signed `G`, which covers both.
            let facts = TrapFacts {
                group_id: *group_id,
                session_id: *session_id,
                interval,
                announced: t.announced,
                slot,
                pseudonym,
                exchange,
                len: cell_len as usize,
            };
            t.check(bit, &facts).map_err(EvidenceError::BadTrap)?;
        }
        Grounds::Accused(a) => {
            if !verify_accusation(a, interval, &pseudonym, group_id, session_id, view, slot) {
                return Err(EvidenceError::BadAccusation);
            }
        }
    }
    let grounds = crate::blame::grounds::grounds_digest(view, slot, cell_len, &grounds);
    let trustee_nonces = nonces_digest((0..e.m).map(|t| e.trustee_nonce(t)));
    let client_nonces = nonces_digest((0..e.n).map(|p| e.client_nonce(p)));
    // What every reveal of the round signs alike.
    let round = Round {
        group_id,
        session_id,
        interval,
        exchange,
        bit,
        grounds: &grounds,
        pad_nonce,
        trustee_nonces: &trustee_nonces,
    };
    let mut last = None;
    // A node that did not reveal has a signature of zeros.
    let mut absent = false;
    for p in 0..e.n {
        let index = e.client_index(p);
        if last.is_some_and(|l| l >= index) {
            return Err(EvidenceError::Malformed);
        }
        last = Some(index);
        let k = keys.client(index).ok_or(EvidenceError::UnknownKey)?;
        let mut own = [0u8; 32];
        own[..NONCE_LEN].copy_from_slice(e.client_nonce(p));
        let at = e.client_at(p) + 2 + NONCE_LEN;
        let s = Statement {
            round,
            who: Culprit::Client(index),
            own: &own,
            decoded_hash: &decoded_hash,
            cell_hash: e.field(at),
            cell_bit: e.bytes.get(at + 32) == Some(&1),
            bits: e.client_bits(p),
            count: e.m as u16,
        };
        let sig = e.field::<64>(at + 33 + bits::bitmap_len(e.m));
        // Every byte counts: a cell bit is 0 or 1, and an absent reveal is zeros.
        if !entry_well_formed(e.bytes, at, bits::bitmap_len(e.m), sig) {
            return Err(EvidenceError::Malformed);
        }
        if *sig == [0; 64] {
            absent = true;
            continue;
        }
        // A member not shown the decoded cell signed zeros for it.
        let unshown = Statement {
            decoded_hash: &[0; 32],
            ..s
        };
        if !s.verify(&k.identity, sig) && !unshown.verify(&k.identity, sig) {
            return Err(EvidenceError::BadSignature(p));
        }
    }
    for t in 0..e.m {
        let k = keys.trustee(t as u16).ok_or(EvidenceError::UnknownKey)?;
        let at = e.trustee_at(t);
        let s = Statement {
            round,
            who: Culprit::Trustee(t as u16),
            own: &client_nonces,
            decoded_hash: &[0; 32],
            cell_hash: e.field(at),
            cell_bit: e.bytes.get(at + 32) == Some(&1),
            bits: e.trustee_bits(t),
            count: e.n as u16,
        };
        let sig = e.field::<64>(at + 33 + bits::bitmap_len(e.n));
        if !entry_well_formed(e.bytes, at, bits::bitmap_len(e.n), sig) {
            return Err(EvidenceError::Malformed);
        }
        if *sig == [0; 64] {
            absent = true;
            continue;
        }
        if !s.verify(&k.identity, sig) {
            return Err(EvidenceError::BadSignature(e.n + t));
        }
    }
    // A dispute's prover is 0 (the member) or 1 (the trustee).
    if (0..e.disputes).any(|d| {
        !matches!(
            e.bytes.get(e.disputes_at + d * DISPUTE_LEN + 4),
            Some(0 | 1)
        )
    }) {
        return Err(EvidenceError::Malformed);
    }
    let verified = |who, kind, offline, dispute| Verified {
        interval,
        exchange,
        bit,
        slot,
        trap: e.tail_at.is_some(),
        who,
        kind,
        offline,
        decoded_hash,
        dispute,
    };
    if e.kind == BlameKind::RefusedBlame {
        // The relay's word, but only about a node whose signed reveal the evidence lacks
        // (the relay keeps every reveal that checks), or a member in a dispute that no
        // proof in it settles.
        let client_signed = |p: usize| {
            *e.field::<64>(e.client_at(p) + 2 + NONCE_LEN + 33 + bits::bitmap_len(e.m)) != [0; 64]
        };
        let founded = match e.who {
            Culprit::Client(i) => match (0..e.n).find(|&p| e.client_index(p) == i) {
                Some(p) if !client_signed(p) => true,
                Some(p) => {
                    !absent
                        && e.disputes == 0
                        && matches!(judge(&e), Finding::Dispute { position, .. } if position == p)
                }
                None => false,
            },
            Culprit::Trustee(t) => {
                let t = usize::from(t);
                t < e.m && *e.field::<64>(e.trustee_at(t) + 33 + bits::bitmap_len(e.n)) == [0; 64]
            }
            Culprit::Relay => false,
        };
        if !founded {
            return Err(EvidenceError::UnfoundedRefusal);
        }
        return Ok(verified(e.who, e.kind, false, None));
    }
    if absent {
        // Only a member that convicts itself by its own signed reveal is convicted without
        // every reveal (a trustee that cannot take part in blame, for one).
        let position = (0..e.n).find(|&p| Culprit::Client(e.client_index(p)) == e.who);
        let convicts_itself = position.is_some_and(|p| {
            let at = e.client_at(p) + 2 + NONCE_LEN + 33 + bits::bitmap_len(e.m);
            let pads = (0..e.m).fold(false, |x, t| x ^ e.client_pad_bit(p, t));
            *e.field::<64>(at) != [0; 64] && pads != e.client_cell_bit(p)
        });
        if e.kind != BlameKind::Disrupted || !convicts_itself {
            return Err(EvidenceError::Unresolved);
        }
        return Ok(verified(e.who, e.kind, true, None));
    }
    let (who, kind, dispute) = match judge(&e) {
        Finding::Convicted { who, kind } => (who, kind, None),
        Finding::Dispute { position, trustee } => {
            let client = keys
                .client(e.client_index(position))
                .ok_or(EvidenceError::UnknownKey)?;
            let trustee_keys = keys
                .trustee(trustee as u16)
                .ok_or(EvidenceError::UnknownKey)?;
            let facts = DisputeFacts {
                group_id,
                session_id,
                client_dh: &client.dh,
                trustee_dh: &trustee_keys.dh,
                interval,
                trustee_nonce: e.trustee_nonce(trustee),
                client_nonce: e.client_nonce(position),
                pad_nonce,
                bit,
            };
            let (truth, by_client) = (0..e.disputes)
                .map(|d| e.disputes_at + d * DISPUTE_LEN)
                .filter(|&at| {
                    be16(e.bytes, at) == Some(position as u16)
                        && be16(e.bytes, at + 2) == Some(trustee as u16)
                })
                .find_map(|at| {
                    let by_client = e.bytes.get(at + 4) == Some(&0);
                    resolve_dispute(&facts, by_client, e.field(at + 5), e.field(at + 37))
                        .map(|truth| (truth, by_client))
                })
                .ok_or(EvidenceError::Unresolved)?;
            let proven = ProvenDispute {
                client: e.client_index(position),
                trustee: trustee as u16,
                by_trustee: !by_client,
            };
            if e.client_pad_bit(position, trustee) != truth {
                (
                    Culprit::Client(e.client_index(position)),
                    BlameKind::LiedAboutPad,
                    Some(proven),
                )
            } else {
                (
                    Culprit::Trustee(trustee as u16),
                    BlameKind::LiedAboutPad,
                    Some(proven),
                )
            }
        }
    };
    if (who, kind) != (e.who, e.kind) {
        return Err(EvidenceError::WrongVerdict { who, kind });
    }
    Ok(verified(who, kind, true, dispute))
}

/// Whether a reveal entry (cell hash at `at`, cell bit, `bits_len` bytes of pad bits, then
/// `sig`) is well formed: its cell bit 0 or 1, and all zeros if it has no signature.
fn entry_well_formed(bytes: &[u8], at: usize, bits_len: usize, sig: &[u8; 64]) -> bool {
    let Some(entry) = bytes.get(at..at + 33 + bits_len) else {
        return false;
    };
    let bit_ok = matches!(entry.get(32), Some(0 | 1));
    bit_ok && (*sig != [0; 64] || entry.iter().all(|&b| b == 0))
}
