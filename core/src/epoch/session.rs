//! From a group and an epoch to the ids the DC-net roles run under.
//!
//! A group with no dealer has no `system.json` group id or `session.json` session id; both
//! are derived here, so every node derives the same ones and the pairwise pad keys of each
//! epoch are salted by that epoch's setup ([`crate::crypto::PairKey::agree`] takes them):
//!
//! ```text
//! group_id      = SHA-256("dissent-rs v3 group id"   ‖ group fingerprint)[..16]
//! setup_session = SHA-256("dissent-rs v3 setup link" ‖ group fingerprint ‖ epoch (u64 BE))[..16]
//! switch_session = SHA-256("dissent-rs v3 switch link" ‖ group fingerprint ‖ epoch (u64 BE))[..16]
//! rejoin_session = SHA-256("dissent-rs v3 rejoin link" ‖ group fingerprint ‖ epoch (u64 BE))[..16]
//! session_id    = SHA-256("dissent-rs v3 epoch"      ‖ group fingerprint ‖ epoch (u64 BE)
//!                         ‖ attempt (1) ‖ transcript (32) ‖ list (32))[..16]
//! ```
//!
//! `setup_session` is the session id of the links that carry the setup (docs/protocol.md,
//! "Setup links"), so no setup frame can be taken for a DC-net frame or the other way
//! round; `session_id` is the established epoch's.
//!
//! Owns these derivations only; what runs under the ids is the roles'.

use sha2::{Digest, Sha256};

use super::Established;

fn id16(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(h.finalize()) {
        *o = b;
    }
    out
}

/// The group id of the group with this fingerprint.
pub fn group_id(group: &[u8; 32]) -> [u8; 16] {
    id16(&[b"dissent-rs v3 group id", group])
}

/// The session id of the links that carry epoch `epoch`'s setup.
pub fn setup_session(group: &[u8; 32], epoch: u64) -> [u8; 16] {
    id16(&[b"dissent-rs v3 setup link", group, &epoch.to_be_bytes()])
}

/// The session id of the links on which the nodes of epoch `epoch` fetch the next
/// version of the group at a switch ([`super::switch`]).
pub fn switch_session(group: &[u8; 32], epoch: u64) -> [u8; 16] {
    id16(&[b"dissent-rs v3 switch link", group, &epoch.to_be_bytes()])
}

/// The session id of the links on which a trustee of established epoch `epoch` that lost
/// it takes it back from the relay ([`super::rejoin`]).
pub fn rejoin_session(group: &[u8; 32], epoch: u64) -> [u8; 16] {
    id16(&[b"dissent-rs v3 rejoin link", group, &epoch.to_be_bytes()])
}

/// The session id of an established epoch.
pub fn session_id(group: &[u8; 32], established: &Established) -> [u8; 16] {
    id16(&[
        b"dissent-rs v3 epoch",
        group,
        &established.epoch.to_be_bytes(),
        &[established.attempt],
        &established.transcript,
        &established.list,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_by_purpose_and_epoch() {
        let g = [7u8; 32];
        let e = Established {
            epoch: 1,
            attempt: 0,
            transcript: [1; 32],
            list: [2; 32],
            slots: 3,
            trustees: 0b11,
        };
        let mut other = e;
        other.transcript[0] ^= 1;
        assert_ne!(session_id(&g, &e), session_id(&g, &other));
        assert_ne!(setup_session(&g, 1), setup_session(&g, 2));
        assert_ne!(group_id(&g), setup_session(&g, 1));
        assert_ne!(switch_session(&g, 1), setup_session(&g, 1));
        assert_ne!(rejoin_session(&g, 1), setup_session(&g, 1));
        assert_ne!(rejoin_session(&g, 1), switch_session(&g, 1));
    }
}
