//! Trap bytes at the relay: each interval's trap secret `r_I` and the point `R_I` it
//! announces in `IntervalStart`, each slot's trap key (derived from its trap point
//! `Z = r_I·P_s` at the slot's first owned exchange of the interval, `slots.rs` keeps it), and
//! the grounds of a blame round on a sprung trap (`blame::trap`).
//!
//! Owns the interval's trap secret and [`Relay::trap_grounds`]. It must not decode cells
//! (`decode.rs` checks the trap bytes) or run a round.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;

use super::{Peer, Relay};
use crate::blame::TrapGrounds;
use crate::ristretto::keys::SecretKey;
use crate::wire::{self, TrapKey};

/// The running interval's trap secret and its announced point.
#[derive(Debug)]
pub(super) struct IntervalTrap {
    pub(super) interval: u32,
    pub(super) secret: SecretKey,
    pub(super) point: [u8; 32],
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// The trap point `interval`'s `IntervalStart` announces (derived the first time,
    /// one scalar multiplication); 32 zero bytes, which no owner can use, without a DH
    /// secret (then no slot delivers anything anyway).
    pub(super) fn announce_trap(&mut self, interval: u32) -> [u8; 32] {
        if let Some(t) = self.trap.as_ref().filter(|t| t.interval == interval) {
            return t.point;
        }
        let secret = self
            .dh
            .as_ref()
            .and_then(|dh| wire::trap_secret(dh, &self.cfg.epoch, &self.cfg.session_id, interval));
        self.trap = secret.map(|secret| IntervalTrap {
            interval,
            point: secret.public_key().to_bytes(),
            secret,
        });
        self.trap.as_ref().map_or([0; 32], |t| t.point)
    }

    /// `slot`'s trap key of `interval` (derived on first use in the interval and kept for
    /// it); `None` without a trap secret for the interval or a key for the slot.
    pub(super) fn trap_key(&mut self, slot: u16, interval: u32) -> Option<TrapKey> {
        let secret = self
            .trap
            .as_ref()
            .filter(|t| t.interval == interval)
            .map(|t| &t.secret);
        self.slots.trap_key(
            slot,
            interval,
            secret,
            &self.cfg.group_id,
            &self.cfg.session_id,
        )
    }

    /// The grounds of a blame round on a sprung trap of `slot` in the running `interval`
    /// ([`RelayEvent::TrapSprung`](super::RelayEvent::TrapSprung)): the interval's and the
    /// slot's trap points and the DLEQ proof that both have `r_I` as logarithm (two scalar
    /// multiplications). `None` for another interval, or a slot without a valid key.
    pub fn trap_grounds(&self, interval: u32, slot: u16) -> Option<TrapGrounds> {
        let trap = self.trap.as_ref().filter(|t| t.interval == interval)?;
        // The proof's nonce is keyed by the statement and the secret (merlin's witness
        // RNG): the seed only adds to it.
        let seed = self.fingerprint_secret.unwrap_or([0; 32]);
        let mut nonce = [0u8; 12];
        crate::field::put(&mut nonce, 0, &interval.to_be_bytes());
        crate::field::put(&mut nonce, 4, &slot.to_be_bytes());
        let mut rng = Keystream(ChaCha20::new(&seed.into(), &nonce.into()));
        TrapGrounds::prove(
            &trap.secret,
            &self.slots.key(slot),
            &self.cfg.group_id,
            &self.cfg.session_id,
            interval,
            slot,
            &mut rng,
        )
    }
}

/// A ChaCha20 keystream as the proof's randomness (`rand_core`'s interface over the
/// `chacha20` crate's cipher).
struct Keystream(ChaCha20);

impl rand_core::RngCore for Keystream {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0);
        self.0.apply_keystream(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for Keystream {}
