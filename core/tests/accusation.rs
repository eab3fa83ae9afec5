//! An owner accuses on the wire: a cell of its slot comes back disrupted, or a reservation
//! exchange shows its bit although it did not ask, and its next owned cells carry an
//! `Accuse` record the relay checks under the slot's pseudonym key.

#![cfg(feature = "disruptor")]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use dissent_core::client::DisruptorMode;
use dissent_core::relay::PeerId;
use dissent_core::testkit::{frame_body, pattern, Net, NetConfig, Node};
use dissent_core::wire::Message;

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

/// The fields of a `BlameDhRequest` body, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DhAsk {
    interval: u32,
    exchange: u64,
    peer: u16,
    bit: u32,
    reveal: Vec<u8>,
    pad_bits: Vec<u8>,
}

impl DhAsk {
    fn parse(body: &[u8]) -> Self {
        match Message::parse(body).unwrap() {
            Message::BlameDhRequest {
                interval,
                exchange,
                peer,
                bit,
                reveal,
                pad_bits,
            } => DhAsk {
                interval,
                exchange,
                peer,
                bit,
                reveal: reveal.to_vec(),
                pad_bits: pad_bits.to_vec(),
            },
            m => panic!("not a DH request: {m:?}"),
        }
    }

    fn body(&self) -> Vec<u8> {
        frame_body(&Message::BlameDhRequest {
            interval: self.interval,
            exchange: self.exchange,
            peer: self.peer,
            bit: self.bit,
            reveal: &self.reveal,
            pad_bits: &self.pad_bits,
        })
    }
}

/// Who proved a secret with whom since `from`: (prover, the peer it names).
fn proofs_since(net: &Net, from: usize) -> Vec<(Node, u16)> {
    net.dh_proofs[from..]
        .iter()
        .map(|(node, body)| match Message::parse(body).unwrap() {
            Message::BlameDhProof { peer, .. } => (*node, peer),
            m => panic!("not a DH proof: {m:?}"),
        })
        .collect()
}

/// A relay that asks for a pair's Diffie–Hellman secret without a real dispute about that
/// pair in that round learns nothing: the secret fixes every pad of the pair, so with a
/// client's secrets with every trustee (or an honest trustee's with every client) it would
/// unmask slot owners. A real round with a dispute (trustee 0 lies about the pad bits it
/// shares with members 0 and 1; the disruptor hides its flipped bit the same way) gives
/// the relay genuine signed reveals; its proofs are held back so the dispute stays open.
/// It then asks the honest members and trustee 1 with no reveal, forged reveals, reveals of
/// another exchange, bit or pair, agreeing reveals, and a search over random mutations of
/// the genuine requests: only clients 0 and 1, shown trustee 0's reveal that contradicts
/// theirs, ever prove a secret, and only the one with trustee 0 (who holds it anyway).
#[test]
fn a_relay_without_a_real_dispute_learns_no_diffie_hellman_secret() {
    let mut cfg = NetConfig::new(CLIENTS, 2, 256);
    cfg.max_cell_len = 1024;
    let mut net = Net::new(cfg);
    net.run_until(100_000, |s| {
        s.relay.interval().is_some_and(|(_, n)| n == CLIENTS)
    });
    net.relay.set_ignore_traps(true);
    net.trustees[0].set_lie_about_pads(true);
    net.clients[MALLORY].set_lie_about_pads(true);
    net.clients[MALLORY].set_disruptor(Some(DisruptorMode::GarbleEveryOther));
    net.drop_dh_proofs = true;
    for i in 0..MALLORY {
        let conn = net.open(i);
        net.send_bytes(i, conn, pattern(i, 3000));
    }
    // Until both sides of the dispute were asked and answered (held back).
    for _ in 0..400_000 {
        if net.dh_proofs.len() >= 2 || !net.step() {
            break;
        }
    }
    assert!(net.blame_ended.is_empty(), "the dispute is still open");
    let to_client = net
        .dh_requests
        .iter()
        .find(|(n, _)| *n == Node::Client(0))
        .map(|(_, b)| DhAsk::parse(b))
        .expect("client 0 was asked, shown trustee 0's reveal");
    let to_trustee = net
        .dh_requests
        .iter()
        .find(|(n, _)| *n == Node::Trustee(0))
        .map(|(_, b)| DhAsk::parse(b))
        .expect("trustee 0 was asked, shown client 0's reveal");
    assert_eq!((to_client.peer, to_trustee.peer), (0, 0));
    // The real dispute is answered: client 0 shown trustee 0's contradicting reveal.
    assert!(
        proofs_since(&net, 0).contains(&(Node::Client(0), 0)),
        "{:?}",
        proofs_since(&net, 0)
    );
    let honest: Vec<Node> = (0..MALLORY)
        .map(Node::Client)
        .chain([Node::Trustee(1)])
        .collect();
    // What an honest node may prove: clients 0 and 1, with trustee 0 only.
    let allowed = |node: Node, peer: u16| matches!(node, Node::Client(0 | 1)) && peer == 0;

    // Named cases, to every honest node.
    let mut cases: Vec<(Node, DhAsk)> = Vec::new();
    for &node in &honest {
        let base = match node {
            Node::Client(_) => to_client.clone(),
            Node::Trustee(_) => to_trustee.clone(),
        };
        // No reveal at all.
        cases.push((
            node,
            DhAsk {
                reveal: Vec::new(),
                pad_bits: Vec::new(),
                ..base.clone()
            },
        ));
        // A forged reveal: a signature or a signed field changed.
        for at in [0, 20, 60, base.reveal.len() - 1] {
            let mut forged = base.clone();
            forged.reveal[at] ^= 0x10;
            cases.push((node, forged));
        }
        let mut forged = base.clone();
        forged.pad_bits[0] ^= 0b100;
        cases.push((node, forged));
        // The reveal of another exchange, bit or pair.
        cases.push((
            node,
            DhAsk {
                exchange: base.exchange + 1,
                ..base.clone()
            },
        ));
        cases.push((
            node,
            DhAsk {
                bit: base.bit ^ 1,
                ..base.clone()
            },
        ));
        cases.push((
            node,
            DhAsk {
                peer: 1,
                ..base.clone()
            },
        ));
        // Another interval.
        cases.push((
            node,
            DhAsk {
                interval: base.interval + 1,
                ..base.clone()
            },
        ));
    }
    // Agreeing reveals: trustee 0's reveal is truthful about members 2 to 4, and client
    // 0's about trustee 1.
    for i in 2..MALLORY {
        cases.push((Node::Client(i), to_client.clone()));
    }
    cases.push((Node::Trustee(1), to_trustee.clone()));
    let from = net.dh_proofs.len();
    for (node, ask) in &cases {
        net.relay_says(*node, &ask.body());
    }
    net.run_steps(2_000);
    assert!(net.blame_ended.is_empty(), "the dispute is still open");
    let got = proofs_since(&net, from);
    assert!(got.is_empty(), "proved without a real dispute: {got:?}");

    // A search over random mutations of the genuine requests, to random honest nodes.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let from = net.dh_proofs.len();
    let mut sent = Vec::new();
    for _ in 0..400 {
        let node = honest[(next() % honest.len() as u64) as usize];
        let mut ask = if next() % 2 == 0 {
            to_client.clone()
        } else {
            to_trustee.clone()
        };
        for _ in 0..1 + next() % 3 {
            match next() % 7 {
                0 => ask.peer = (next() % 8) as u16,
                1 => ask.exchange = ask.exchange.wrapping_add(next() % 3).wrapping_sub(1),
                2 => ask.bit = (next() % 2048) as u32,
                3 => {
                    let at = (next() % ask.reveal.len().max(1) as u64) as usize;
                    if let Some(b) = ask.reveal.get_mut(at) {
                        *b ^= 1 << (next() % 8);
                    }
                }
                4 => {
                    if let Some(b) = ask.pad_bits.first_mut() {
                        *b ^= 1 << (next() % 8);
                    }
                }
                5 => ask.reveal.truncate((next() % 160) as usize),
                _ => {
                    ask.reveal = (0..(next() % 160) as usize).map(|_| next() as u8).collect();
                }
            }
        }
        net.relay_says(node, &ask.body());
        sent.push((node, ask));
        if sent.len() % 25 == 0 {
            net.run_steps(300);
        }
    }
    net.run_steps(2_000);
    assert!(net.blame_ended.is_empty(), "the dispute is still open");
    for (node, peer) in proofs_since(&net, from) {
        assert!(
            allowed(node, peer),
            "{node:?} proved its secret with {peer}"
        );
    }
    assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
}
