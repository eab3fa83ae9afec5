//! Evidence files edited field by field: every field of the evidence a round wrote (the
//! trap form, the accusation form, a refused blame), every byte of it, flipped, and
//! `blame::verify` refuses the file. What a verdict depends on is covered by the members'
//! signatures (the grounds, the view, the slot and the trap form's cell length through the
//! grounds digest `G`), by the proofs, or by the layout; the refused blame, the relay's
//! word, stands only about a node whose signed reveal the file lacks.

#![cfg(feature = "disruptor")]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use dissent_core::blame::{self, BlameKind, Culprit};
use dissent_core::client::DisruptorMode;
use dissent_core::relay::PeerId;
use dissent_core::testkit::{pattern, Net, NetConfig, Node};
use dissent_core::NONCE_LEN;

/// A running group of `clients` (and `trustees`) with a window of 8.
fn group(clients: usize, trustees: usize) -> Net {
    let mut cfg = NetConfig::new(clients, trustees, 256);
    cfg.max_cell_len = 1024;
    let mut net = Net::new(cfg);
    net.run_until(400_000, |s| {
        s.relay.interval().is_some_and(|(_, n)| n == clients)
    });
    net
}

/// `mallory` disrupts with `mode` while the others upload; `refuse`: it answers no blame
/// round. Returns the evidence naming it.
fn evidence(seed: usize, mode: DisruptorMode, traps: bool, refuse: bool) -> (Net, Vec<u8>) {
    let clients = 5 + seed % 3;
    let mallory = (seed * 3 + 1) % clients;
    let mut net = group(clients, 2 + seed % 2);
    net.relay.set_ignore_traps(!traps);
    net.clients[mallory].set_disruptor(Some(mode));
    for i in (0..clients).filter(|&i| i != mallory) {
        let conn = net.open(i);
        net.send_bytes(i, conn, pattern(seed * 10 + i, 3000));
    }
    // Its answers never reach the relay: it refuses blame while connected (one away at
    // the deadline would only owe the round).
    if refuse {
        net.refuse_blame.push(Node::Client(mallory));
    }
    let m = PeerId::Client(mallory as u16);
    for _ in 0..2_000_000 {
        if net.excluded.iter().any(|x| x.1 == m) {
            break;
        }
        if !net.step() {
            break;
        }
    }
    let e = net.evidence.last().expect("evidence").clone();
    let v = blame::verify(&e, &net.directory()).expect("the evidence checks");
    assert_eq!(v.who, Culprit::Client(mallory as u16));
    (net, e)
}

/// The fields of evidence `e`, by name, offset and length (protocol.md, "Evidence file").
fn fields(e: &[u8]) -> Vec<(String, usize, usize)> {
    let be16 = |at: usize| usize::from(u16::from_be_bytes([e[at], e[at + 1]]));
    let mut f: Vec<(String, usize, usize)> = [
        ("magic", 0, 16),
        ("group", 16, 16),
        ("session", 32, 16),
        ("view", 48, 32),
        ("interval", 80, 4),
        ("exchange", 84, 8),
        ("bit", 92, 4),
        ("slot", 96, 2),
        ("pad nonce", 98, 24),
        ("decoded hash", 122, 32),
        ("proof", 154, 64),
        ("m", 218, 2),
        ("n", 220, 2),
    ]
    .into_iter()
    .map(|(n, a, l)| (n.to_string(), a, l))
    .collect();
    let (m, n) = (be16(218), be16(220));
    let mut at = 222;
    for t in 0..m {
        f.push((format!("trustee nonce {t}"), at, NONCE_LEN));
        at += NONCE_LEN;
    }
    let (mb, nb) = (m.div_ceil(8), n.div_ceil(8));
    for p in 0..n {
        for (name, len) in [
            ("index", 2),
            ("link nonce", NONCE_LEN),
            ("cell hash", 32),
            ("cell bit", 1),
            ("pad bits", mb),
            ("signature", 64),
        ] {
            f.push((format!("member {p} {name}"), at, len));
            at += len;
        }
    }
    for t in 0..m {
        for (name, len) in [
            ("cell hash", 32),
            ("cell bit", 1),
            ("pad bits", nb),
            ("signature", 64),
        ] {
            f.push((format!("trustee {t} {name}"), at, len));
            at += len;
        }
    }
    let d = be16(at);
    f.push(("d".into(), at, 2));
    at += 2;
    for k in 0..d {
        for (name, len) in [
            ("position", 2),
            ("trustee", 2),
            ("prover", 1),
            ("secret", 32),
            ("proof", 64),
        ] {
            f.push((format!("dispute {k} {name}"), at, len));
            at += len;
        }
    }
    for (name, len) in [
        ("verdict kind", 1),
        ("verdict role", 1),
        ("verdict index", 2),
    ] {
        f.push((name.into(), at, len));
        at += len;
    }
    if &e[..16] == blame::evidence::TRAP_MAGIC {
        for (name, len) in [("R_I", 32), ("Z", 32), ("cell length", 4)] {
            f.push((name.into(), at, len));
            at += len;
        }
    }
    assert_eq!(at, e.len(), "the layout covers the file");
    f
}

/// Every byte of every field, flipped in its lowest and highest bit: refused.
fn every_field_refused(net: &Net, e: &[u8], what: &str) -> usize {
    let dir = net.directory();
    let mut flips = 0;
    for (name, at, len) in fields(e) {
        for i in at..at + len {
            for flip in [0x01u8, 0x80] {
                let mut bad = e.to_vec();
                bad[i] ^= flip;
                let got = blame::verify(&bad, &dir);
                assert!(
                    got.is_err(),
                    "{what}: {name} (byte {i}) ^ {flip:#04x} accepted: {got:?}"
                );
                flips += 1;
            }
        }
    }
    // Cut short or extended: refused.
    assert!(blame::verify(&e[..e.len() - 1], &dir).is_err(), "{what}");
    let mut longer = e.to_vec();
    longer.push(0);
    assert!(blame::verify(&longer, &dir).is_err(), "{what}");
    flips
}

#[test]
fn every_field_of_trap_evidence_flipped_is_refused() {
    for seed in 0..3 {
        let (net, e) = evidence(seed, DisruptorMode::GarbleAll, true, false);
        assert_eq!(&e[..16], blame::evidence::TRAP_MAGIC);
        let v = blame::verify(&e, &net.directory()).unwrap();
        assert_eq!(v.kind, BlameKind::Disrupted);
        let flips = every_field_refused(&net, &e, &format!("trap, seed {seed}"));
        println!(
            "trap form, seed {seed}: {} bytes, {flips} flips refused",
            e.len()
        );
    }
}

#[test]
fn every_field_of_accusation_evidence_flipped_is_refused() {
    for seed in 0..3 {
        let (net, e) = evidence(seed, DisruptorMode::GarbleEveryOther, false, false);
        assert_eq!(&e[..16], blame::evidence::MAGIC);
        let flips = every_field_refused(&net, &e, &format!("accusation, seed {seed}"));
        println!(
            "accusation form, seed {seed}: {} bytes, {flips} flips refused",
            e.len()
        );
    }
}

#[test]
fn every_field_of_a_refused_blame_flipped_is_refused() {
    for seed in 0..3 {
        let (net, e) = evidence(seed, DisruptorMode::GarbleAll, true, true);
        let v = blame::verify(&e, &net.directory()).unwrap();
        assert_eq!(v.kind, BlameKind::RefusedBlame);
        assert!(!v.offline);
        let flips = every_field_refused(&net, &e, &format!("refused, seed {seed}"));
        println!(
            "refused blame, seed {seed}: {} bytes, {flips} flips refused",
            e.len()
        );
    }
}
