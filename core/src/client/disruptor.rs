//! A client that misbehaves on purpose, for tests (core feature `disruptor`, off in every
//! shipped build): what it does to the cell it answers an exchange with, after the pads,
//! whether it withholds its acknowledgement of a view, and how it lies about its pads in a
//! blame round ([`PadLie`]).
//!
//! Owns the modes and the lie. It must not change what the client does for itself (its own slot, its
//! connections): only what it adds to other slots' exchanges.

use chacha20::cipher::StreamCipher;
use chacha20::ChaCha20;

use crate::wire::{self, ConnId, Kind};

/// How a disruptor misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Random bytes XORed into every data exchange of another slot.
    GarbleAll,
    /// Random bytes XORed into the data exchanges of other slots with an even number
    /// (about every other one; by the exchange's number, so it does not fall in step with an
    /// owner's rhythm of sealed and empty cells).
    GarbleEveryOther,
    /// Random bytes XORed into the data exchanges of other slots in which something is
    /// sent (the relay announced a non-base length: an owner with data).
    GarbleData,
    /// Every other slot's bit inverted in every reservation exchange.
    InvertReservations,
    /// One byte of the body of every data exchange of another slot flipped.
    FlipPayload,
    /// A plain cell opening a connection of another slot and writing bytes on it, XORed
    /// into that slot's exchanges (what an unauthenticated slot would have delivered).
    Inject,
    /// Never acknowledges an interval's view.
    WithholdAck,
    /// Answers late: the shell delays each cell (the core only says so).
    Slow,
}

impl Mode {
    /// Every mode, with its name on the command line.
    pub const ALL: [(&'static str, Mode); 8] = [
        ("garble-all", Mode::GarbleAll),
        ("garble-every-other", Mode::GarbleEveryOther),
        ("garble-data", Mode::GarbleData),
        ("invert-reservations", Mode::InvertReservations),
        ("flip-payload", Mode::FlipPayload),
        ("inject", Mode::Inject),
        ("withhold-ack", Mode::WithholdAck),
        ("slow", Mode::Slow),
    ];

    /// The mode named `name` on the command line.
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.iter().find(|(n, _)| *n == name).map(|&(_, m)| m)
    }
}

/// How a client lies about the pad bit it shares with trustee 0 in a blame round (set with
/// `Client::set_lie_about_pads` and `Client::set_liar_proves`; `blame.rs` asks it).
///
/// A liar claims that bit flipped in its reveal, which hides a flipped cell bit, and the
/// trustee's reveal then contradicts it: a dispute. As a liar would, it never proves the
/// pair's secret (which convicts it), so the trustee's proof settles the dispute; a
/// careless liar (`proves`) answers the dispute's request anyway, and its own proof
/// convicts it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct PadLie {
    /// Its reveals claim the pad bit it shares with trustee 0 flipped.
    pub(super) lies: bool,
    /// It proves that pair's secret when asked all the same.
    pub(super) proves: bool,
}

impl PadLie {
    /// The trustee whose pad bit it lies about.
    const TRUSTEE: usize = 0;

    /// Whether its reveal claims the pad bit it shares with `trustee` flipped.
    pub(super) fn flips(self, trustee: usize) -> bool {
        self.lies && trustee == Self::TRUSTEE
    }

    /// Changes its pad bits (one per trustee, in trustee order) to what its reveal claims.
    pub(super) fn tell(self, bits: &mut [u8]) {
        if self.lies {
            if let Some(b) = bits.get_mut(Self::TRUSTEE / 8) {
                *b ^= 1 << (Self::TRUSTEE % 8);
            }
        }
    }

    /// Whether it proves the secret it shares with `trustee` when a dispute's request
    /// asks (an honest client's checks passed): not for the pair it lied about, unless
    /// careless.
    pub(super) fn proves(self, trustee: usize) -> bool {
        !self.flips(trustee) || self.proves
    }
}

/// The disruptor's state.
pub(super) struct Disruptor {
    pub(super) mode: Mode,
    seed: [u8; 32],
    /// What it did to its latest cells (interval, exchange, kind, base length), so a blame
    /// round's reveal shows the cell it really sent.
    tampered: heapless::Deque<(u32, u64, Kind, usize), 64>,
}

impl Disruptor {
    pub(super) fn new(mode: Mode, seed: &[u8; 32]) -> Self {
        Disruptor {
            mode,
            seed: *seed,
            tampered: heapless::Deque::new(),
        }
    }

    /// Changes `cell` (this client's ciphertext for an exchange of `kind`; `own` is its own
    /// slot) as the mode says.
    /// Tampers with its cell of `exchange` of `interval` (after the pads).
    pub(super) fn tamper(
        &mut self,
        interval: u32,
        exchange: u64,
        kind: Kind,
        own: u16,
        base: usize,
        cell: &mut [u8],
    ) {
        let record = (interval, exchange, kind, base);
        if self.tampered.is_full() {
            self.tampered.pop_front();
        }
        let _ = self.tampered.push_back(record);
        self.apply(record, own, cell);
    }

    /// Does again to a recomputed cell of `exchange` of `interval` what it did to the one
    /// it sent (a disruptor that reveals what it sent, and so convicts itself).
    pub(super) fn again(&self, interval: u32, exchange: u64, own: u16, cell: &mut [u8]) {
        if let Some(&record) = self
            .tampered
            .iter()
            .find(|t| t.0 == interval && t.1 == exchange)
        {
            self.apply(record, own, cell);
        }
    }

    fn apply(&self, record: (u32, u64, Kind, usize), own: u16, cell: &mut [u8]) {
        use chacha20::cipher::KeyIvInit;
        let (interval, exchange, kind, base) = record;
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&interval.to_be_bytes());
        nonce[4..].copy_from_slice(&exchange.to_be_bytes());
        let mut rng = ChaCha20::new((&self.seed).into(), &nonce.into());
        match kind {
            Kind::Reserve => {
                if self.mode == Mode::InvertReservations {
                    for (i, b) in cell.iter_mut().enumerate() {
                        let keep = (i == usize::from(own / 8)).then(|| 1u8 << (own % 8));
                        *b ^= !keep.unwrap_or(0);
                    }
                }
            }
            Kind::Slot { slot, len } if slot != own => match self.mode {
                Mode::GarbleAll => rng.apply_keystream(cell),
                Mode::GarbleEveryOther if exchange & 1 == 0 => rng.apply_keystream(cell),
                Mode::GarbleData if len as usize != base => rng.apply_keystream(cell),
                Mode::FlipPayload => {
                    if let Some(b) = cell.get_mut(wire::SLOT_NONCE_LEN + wire::NEXT_LEN + 8) {
                        *b ^= 0x01;
                    }
                }
                Mode::Inject => {
                    let mut plain = [0u8; 64];
                    let mut w = wire::CellWriter::new(&mut plain);
                    let _ = w.push_data(ConnId::new(slot, 0x1234), true, b"injected");
                    w.finish(0);
                    for (c, p) in cell.iter_mut().zip(plain) {
                        *c ^= p;
                    }
                }
                _ => {}
            },
            Kind::Slot { .. } => {}
        }
    }
}
