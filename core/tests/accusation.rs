//! An owner accuses on the wire: a cell of its slot comes back disrupted, or a reservation
//! exchange shows its bit although it did not ask, and its next owned cells carry an
//! `Accuse` record the relay checks under the slot's pseudonym key.

#![cfg(feature = "disruptor")]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use dissent_core::client::DisruptorMode;
use dissent_core::relay::PeerId;
use dissent_core::testkit::{pattern, Net, NetConfig};

const CLIENTS: usize = 6;
/// The client that misbehaves.
const MALLORY: usize = 5;

/// A group with `mode` on Mallory from the start of traffic; every honest client uploads.
fn run(mode: Option<DisruptorMode>, seed: usize, steps: usize) -> Net {
    run_until(mode, seed, steps, |_| false)
}

/// Like [`run`], stopping once `done`.
fn run_until(
    mode: Option<DisruptorMode>,
    seed: usize,
    steps: usize,
    done: impl Fn(&Net) -> bool,
) -> Net {
    let mut cfg = NetConfig::new(CLIENTS, 2, 256);
    cfg.max_cell_len = 1024;
    let mut net = Net::new(cfg);
    net.run_until(100_000, |s| {
        s.relay.interval().is_some_and(|(_, n)| n == CLIENTS)
    });
    net.clients[MALLORY].set_disruptor(mode);
    // Owners' accusations alone: a sprung trap would start its own round first.
    net.relay.set_ignore_traps(true);
    let mut expect = BTreeMap::new();
    for i in 0..MALLORY {
        let conn = net.open(i);
        let data = pattern(seed * 10 + i, 3000);
        net.send_bytes(i, conn, data.clone());
        expect.insert(conn, data);
    }
    for _ in 0..steps {
        if done(&net) || !net.step() {
            break;
        }
    }
    net
}

#[test]
fn a_disrupted_owner_accuses_and_the_relay_takes_only_valid_accusations() {
    for seed in 0..6 {
        let net = run(Some(DisruptorMode::GarbleEveryOther), seed, 60_000);
        assert!(net.exit.garbled > 0, "seed {seed}: nothing disrupted");
        assert!(!net.exit.accused.is_empty(), "seed {seed}: nobody accused");
        for &(interval, exchange, _) in &net.exit.accused {
            // Each accusation is about an exchange the relay decoded as disrupted.
            assert!(
                net.exit.garbled_at.contains(&(interval, exchange)),
                "seed {seed}: {interval}/{exchange} accused but not disrupted"
            );
        }
        // Each exchange is taken up once.
        let mut seen = net.exit.accused.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), net.exit.accused.len());
        // Only the disruptor is told to go (its blame round convicts it).
        assert!(
            net.node_errors
                .iter()
                .all(|(n, _)| n.peer() == PeerId::Client(MALLORY as u16)),
            "{:?}",
            net.node_errors
        );
    }
}

#[test]
fn a_forged_reservation_is_accused_at_the_owners_own_bit() {
    let net = run(Some(DisruptorMode::InvertReservations), 1, 60_000);
    let slots: Vec<u32> = net.slots[..MALLORY].iter().map(|&s| u32::from(s)).collect();
    assert!(!net.exit.accused.is_empty(), "nobody accused");
    for &(_, exchange, bit) in &net.exit.accused {
        assert!(
            slots.contains(&bit),
            "exchange {exchange}: bit {bit} is no honest slot's"
        );
        assert!(!net.exit.garbled_at.iter().any(|&(_, e)| e == exchange));
    }
    assert!(
        net.node_errors
            .iter()
            .all(|(n, _)| n.peer() == PeerId::Client(MALLORY as u16)),
        "{:?}",
        net.node_errors
    );
}

#[test]
fn an_honest_group_never_accuses() {
    for seed in 0..4 {
        let net = run(None, seed, 60_000);
        assert_eq!(net.exit.garbled, 0);
        assert!(
            net.exit.accused.is_empty(),
            "seed {seed}: {:?}",
            net.exit.accused
        );
        assert!(net.clients.iter().all(|c| c.pending_accusation().is_none()));
    }
}

/// Every node's fingerprint in a kept row, all different and none zero.
fn distinct(net: &Net, interval: u32, exchange: u64, slot: Option<u16>) -> bool {
    let mut prints: Vec<[u8; 16]> = (0..CLIENTS as u16)
        .map(PeerId::Client)
        .chain((0..2).map(PeerId::Trustee))
        .filter_map(|p| net.relay.kept_fingerprint(interval, exchange, slot, p))
        .filter(|p| *p != [0; 16])
        .collect();
    prints.sort();
    prints.dedup();
    prints.len() == CLIENTS + 2
}

#[test]
fn the_relay_keeps_its_commitment_to_every_cell_of_an_accused_exchange() {
    for seed in 0..4 {
        let net = run_until(Some(DisruptorMode::GarbleEveryOther), seed, 60_000, |n| {
            !n.exit.accused.is_empty()
        });
        let (interval, exchange, _) = net.exit.accused[0];
        let slot = net.slots[..MALLORY].iter().copied().find(|&s| {
            net.relay
                .kept_fingerprint(interval, exchange, Some(s), PeerId::Client(0))
                .is_some()
        });
        let slot = slot.expect("the accused exchange's fingerprints are kept");
        assert!(
            distinct(&net, interval, exchange, Some(slot)),
            "seed {seed}"
        );
        // Of no other slot, and of no exchange that was not disrupted.
        assert!(net.slots.iter().filter(|&&s| s != slot).all(|&s| net
            .relay
            .kept_fingerprint(interval, exchange, Some(s), PeerId::Client(0))
            .is_none()));
    }
    let net = run_until(Some(DisruptorMode::InvertReservations), 1, 60_000, |n| {
        !n.exit.accused.is_empty()
    });
    let (interval, exchange, _) = net.exit.accused[0];
    // A reservation cell is one byte here: two nodes may well have written the same one,
    // so only that every node's fingerprint was kept.
    let kept = (0..CLIENTS as u16)
        .map(PeerId::Client)
        .chain((0..2).map(PeerId::Trustee))
        .filter(|&p| {
            net.relay
                .kept_fingerprint(interval, exchange, None, p)
                .is_some()
        })
        .count();
    assert_eq!(kept, CLIENTS + 2);
}

#[test]
fn members_and_trustees_recompute_the_cells_the_relay_committed_to_and_the_disruptor_convicts_itself(
) {
    use dissent_core::blame::commit::ExchangeKey;
    use dissent_core::testkit::secret;
    for seed in 0..4 {
        let net = run_until(Some(DisruptorMode::GarbleEveryOther), seed, 60_000, |n| {
            !n.exit.accused.is_empty()
        });
        let (interval, exchange, bit) = net.exit.accused[0];
        let slot = net.slots[..MALLORY]
            .iter()
            .copied()
            .find(|&s| {
                net.relay
                    .kept_fingerprint(interval, exchange, Some(s), PeerId::Client(0))
                    .is_some()
            })
            .unwrap();
        let key = ExchangeKey::new(&secret(9, 0), interval, exchange);
        let mut client_pads = Vec::new();
        for i in 0..CLIENTS {
            let mut cell = [0u8; 2048];
            let n = net.clients[i]
                .recompute_cell(interval, exchange, &mut cell)
                .unwrap();
            let committed = net
                .relay
                .kept_fingerprint(interval, exchange, Some(slot), PeerId::Client(i as u16))
                .unwrap();
            // The disruptor reveals the cell it sent, too (the test double does).
            assert_eq!(
                key.fingerprint(&cell[..n]),
                committed,
                "seed {seed}: client {i}"
            );
            let node = PeerId::Client(i as u16);
            assert!(net
                .relay
                .reveal_matches(interval, exchange, Some(slot), node, &cell[..n]));
            // One bit changed, or the fingerprint of another exchange: no match.
            cell[n / 2] ^= 1;
            assert!(!net
                .relay
                .reveal_matches(interval, exchange, Some(slot), node, &cell[..n]));
            cell[n / 2] ^= 1;
            assert!(!net.relay.reveal_matches(
                interval,
                exchange + 1,
                Some(slot),
                node,
                &cell[..n]
            ));
            // Everyone's plaintext is 0 at the accused bit, so an honest cell's bit there
            // is the XOR of its pad bits; the disruptor's is not.
            let mut pads = [0u8; 2];
            let m = net.clients[i]
                .pad_bits(interval, exchange, bit, &mut pads)
                .unwrap();
            assert_eq!(m, 2);
            let xor = (0..m).fold(false, |x, t| x ^ (pads[t / 8] >> (t % 8) & 1 == 1));
            let cell_bit = cell[bit as usize / 8] >> (bit % 8) & 1 == 1;
            assert_eq!(cell_bit == xor, i != MALLORY, "seed {seed}: client {i}");
            client_pads.push(pads[0]);
        }
        for t in 0..2 {
            let mut cell = [0u8; 2048];
            let n = net.trustees[t]
                .recompute_cell(interval, exchange, &mut cell)
                .unwrap();
            let committed = net
                .relay
                .kept_fingerprint(interval, exchange, Some(slot), PeerId::Trustee(t as u16))
                .unwrap();
            assert_eq!(
                key.fingerprint(&cell[..n]),
                committed,
                "seed {seed}: trustee {t}"
            );
            let mut pads = [0u8; 1];
            let m = net.trustees[t]
                .pad_bits(interval, exchange, bit, &mut pads)
                .unwrap();
            assert_eq!(m, CLIENTS);
            let xor = (0..m).fold(false, |x, p| x ^ (pads[p / 8] >> (p % 8) & 1 == 1));
            let cell_bit = cell[bit as usize / 8] >> (bit % 8) & 1 == 1;
            assert_eq!(cell_bit, xor, "seed {seed}: trustee {t}");
            // Each pair agrees on the bit of the pad they share.
            for (p, c) in client_pads.iter().enumerate() {
                assert_eq!(c >> t & 1, pads[0] >> p & 1, "seed {seed}: pair {p}, {t}");
            }
        }
    }
}

#[test]
fn members_recompute_their_reservation_cells_and_the_jammer_convicts_itself() {
    use dissent_core::blame::commit::ExchangeKey;
    use dissent_core::testkit::secret;
    let net = run_until(Some(DisruptorMode::InvertReservations), 2, 60_000, |n| {
        !n.exit.accused.is_empty()
    });
    let (interval, exchange, bit) = net.exit.accused[0];
    let key = ExchangeKey::new(&secret(9, 0), interval, exchange);
    for i in 0..CLIENTS {
        let mut cell = [0u8; 64];
        let n = net.clients[i]
            .recompute_cell(interval, exchange, &mut cell)
            .unwrap();
        let committed = net
            .relay
            .kept_fingerprint(interval, exchange, None, PeerId::Client(i as u16))
            .unwrap();
        assert_eq!(key.fingerprint(&cell[..n]), committed, "client {i}");
        let mut pads = [0u8; 1];
        net.clients[i]
            .pad_bits(interval, exchange, bit, &mut pads)
            .unwrap();
        let xor = (pads[0] ^ (pads[0] >> 1)) & 1 == 1;
        let cell_bit = cell[bit as usize / 8] >> (bit % 8) & 1 == 1;
        assert_eq!(cell_bit == xor, i != MALLORY, "client {i}");
    }
}
