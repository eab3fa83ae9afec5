//! The grounds a blame round is started on, as a `BlameRequest` carries them, and the one
//! check every member and trustee makes before it reveals anything ([`Grounds::check`]).
//!
//! Wire form (inside the request, as one length-prefixed byte string): a tag byte, then
//! the body of that kind of grounds.
//!
//! | tag | grounds | body |
//! |-----|---------|------|
//! | 0   | [`Grounds::Accused`]: the slot owner's accusation | the `Accuse` record's 76-byte payload ([`crate::wire::Accusation`]) |
//!
//! Tag 1 is reserved for the relay's own grounds (a sprung trap, `trap.rs`). A node that
//! does not know a tag refuses the request like any request whose grounds fail.
//!
//! Owns the grounds' encoding and their check; it must not reveal anything or know who
//! holds which key (the caller passes the slot's pseudonym key and the interval's view).

use serde::de::{Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::wire::{Accusation, ACCUSE_LEN};

/// Tag of [`Grounds::Accused`].
pub const TAG_ACCUSED: u8 = 0;

/// Bytes of the longest grounds (tag included) a node accepts.
pub const MAX_GROUNDS_LEN: usize = 1 + ACCUSE_LEN;

/// Why the relay started a blame round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Grounds<'a> {
    /// The slot owner accused a bit of an exchange of its slot: the `Accuse` record's
    /// payload, proven with the slot's pseudonym key.
    Accused(&'a [u8; ACCUSE_LEN]),
    // Tag 1: a sprung trap (the relay's own grounds), checked in `trap.rs`.
}

/// What the grounds are checked against: the round the request names, and the facts the
/// checking node holds itself (never taken from the request).
#[derive(Debug, Clone, Copy)]
pub struct GroundsContext<'a> {
    /// The group.
    pub group_id: &'a [u8; 16],
    /// The session.
    pub session_id: &'a [u8; 16],
    /// The view of the running interval (its `T_start`), as the checking node holds it.
    pub view: &'a [u8; 32],
    /// The running interval, as the checking node holds it (the request's must equal it).
    pub interval: u32,
    /// The request's exchange.
    pub exchange: u64,
    /// The request's bit.
    pub bit: u32,
    /// The request's slot.
    pub slot: u16,
    /// The slot's pseudonym public key, as the checking node holds it.
    pub pseudonym: &'a [u8; 32],
}

impl<'a> Grounds<'a> {
    /// Reads grounds (tag, then body); `None` for an unknown tag or a body of the wrong
    /// length.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        let (&tag, body) = bytes.split_first()?;
        match tag {
            TAG_ACCUSED => Some(Grounds::Accused(body.try_into().ok()?)),
            _ => None,
        }
    }

    /// Bytes of the wire form.
    pub fn len(&self) -> usize {
        match self {
            Grounds::Accused(p) => 1 + p.len(),
        }
    }

    /// Never empty (the tag is always there).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the wire form into `out`; returns its length (`None` if `out` is short).
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let n = self.len();
        let dst = out.get_mut(..n)?;
        match self {
            Grounds::Accused(p) => {
                let (tag, body) = dst.split_first_mut()?;
                *tag = TAG_ACCUSED;
                body.copy_from_slice(&p[..]);
            }
        }
        Some(n)
    }

    /// The accusation, for [`Grounds::Accused`].
    pub fn accusation(&self) -> Option<Accusation> {
        match self {
            Grounds::Accused(p) => Accusation::parse(&p[..]),
        }
    }

    /// Whether these grounds justify the round `ctx` names. Every node makes this one
    /// check before it reveals anything, owner or not, so a request is refused the same
    /// way by all.
    ///
    /// - [`Grounds::Accused`]: the accusation is about the request's exchange and bit, in
    ///   the running interval, and its proof holds under the slot's pseudonym key over the
    ///   node's own view.
    pub fn check(&self, ctx: &GroundsContext<'_>) -> bool {
        match self {
            Grounds::Accused(_) => {
                let Some(a) = self.accusation() else {
                    return false;
                };
                a.exchange == ctx.exchange
                    && a.bit == ctx.bit
                    && super::verify_accusation(
                        &a,
                        ctx.interval,
                        ctx.pseudonym,
                        ctx.group_id,
                        ctx.session_id,
                        ctx.view,
                        ctx.slot,
                    )
            }
        }
    }
}

impl Serialize for Grounds<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; MAX_GROUNDS_LEN];
        let n = self.emit(&mut buf).unwrap_or(0);
        serializer.serialize_bytes(buf.get(..n).unwrap_or(&[]))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Grounds<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Grounds<'de>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("blame grounds")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(
                self,
                v: &'de [u8],
            ) -> Result<Self::Value, E> {
                Grounds::parse(v).ok_or_else(|| E::custom("grounds"))
            }
        }
        deserializer.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grounds_round_trip_and_refuse_unknown_tags() {
        let payload = [0x5a; ACCUSE_LEN];
        let g = Grounds::Accused(&payload);
        let mut out = [0u8; MAX_GROUNDS_LEN];
        let n = g.emit(&mut out).unwrap();
        assert_eq!(n, 77);
        assert_eq!(out[0], TAG_ACCUSED);
        assert_eq!(Grounds::parse(&out[..n]), Some(g));
        assert_eq!(Grounds::parse(&out[..n - 1]), None);
        assert_eq!(Grounds::parse(&[]), None);
        out[0] = 1;
        assert_eq!(
            Grounds::parse(&out[..n]),
            None,
            "tag 1 is not known here yet"
        );
        out[0] = 0xff;
        assert_eq!(Grounds::parse(&out[..n]), None);
    }
}
