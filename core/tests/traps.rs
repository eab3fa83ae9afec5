//! Trap bytes: every owned cell carries one secret zero byte per 16 (`wire::slot`), so a
//! member that changes another slot's cell springs a trap the relay sees by itself, and
//! the relay's grounds for a blame round on it name a bit only the owner's zero can be at.
//!
//! - A seeded search in the in-memory net: each disruptor mode that changes data cells
//!   springs a trap within a bounded number of the exchanges it changed, on every seed;
//!   with nobody disrupting, no trap ever springs (many timings and cell lengths, the
//!   shortest and the longest included).
//! - Every member, client or trustee, refuses the same wrong grounds the same way: another
//!   trap point than the one announced, a proof that does not hold, another slot's point,
//!   a bit outside the traps.
//! - No choice of the relay makes a member reveal a bit where the owner wrote 1.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use dissent_core::blame::{Facts, Grounds, GroundsError, TrapError, TrapGrounds};
use dissent_core::client::DisruptorMode;
use dissent_core::crypto::pad_public_key;
use dissent_core::ristretto::keys::SecretKey;
use dissent_core::testkit::{pattern, pseudonym_secret, Net, NetConfig, GROUP, SESSION};
use dissent_core::wire::{self, TrapKey};
use dissent_core::Duration;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const CLIENTS: usize = 6;
/// The disruptor.
const MALLORY: usize = 5;

/// A net of [`CLIENTS`] clients and 2 trustees whose honest clients 0..5 each upload
/// `len` bytes (echoed), with timings and a relay instance (so trap secrets) that depend
/// on `seed`.
fn net(seed: u64, cell_len: usize, max_cell_len: usize, len: usize) -> Net {
    let mut cfg = NetConfig::new(CLIENTS, 2, cell_len);
    cfg.max_cell_len = max_cell_len;
    cfg.latency = Duration::from_micros(150 + 37 * seed);
    cfg.epoch[..8].copy_from_slice(&seed.to_be_bytes());
    let mut net = Net::new(cfg);
    net.run_until(100_000, |s| {
        s.relay.interval().is_some_and(|(_, n)| n == CLIENTS)
    });
    for i in 0..MALLORY {
        let conn = net.open(i);
        net.send_bytes(i, conn, pattern(seed as usize * 17 + i, len));
    }
    net
}

/// The exchanges the relay noticed, in order: (exchange, trap sprung).
fn noticed(net: &Net) -> Vec<(u64, bool)> {
    let mut all: BTreeMap<(u32, u64), bool> = BTreeMap::new();
    for &(i, e) in &net.exit.garbled_at {
        all.entry((i, e)).or_insert(false);
    }
    for s in &net.exit.sprung {
        all.insert((s.0, s.1), true);
    }
    all.into_iter().map(|((_, e), s)| (e, s)).collect()
}

#[test]
fn every_mode_that_changes_data_cells_springs_a_trap_within_a_bound() {
    let modes = [
        ("garble-all", DisruptorMode::GarbleAll, 1),
        ("garble-every-other", DisruptorMode::GarbleEveryOther, 1),
        ("garble-data", DisruptorMode::GarbleData, 1),
        // One byte a cell, in a block whose trap is anywhere: 1/16 an exchange.
        ("flip-payload", DisruptorMode::FlipPayload, 250),
    ];
    for (name, mode, bound) in modes {
        let mut firsts = Vec::new();
        let mut springs = 0;
        let mut changed = 0;
        for seed in 0..24u64 {
            let mut net = net(seed, 256, 1024, 20_000);
            net.clients[MALLORY].set_disruptor(Some(mode));
            for _ in 0..400_000 {
                let n = noticed(&net);
                if n.iter().filter(|x| x.1).count() >= 3 || !net.step() {
                    break;
                }
            }
            let n = noticed(&net);
            let first = n.iter().position(|x| x.1).map(|p| p + 1);
            let first = first.unwrap_or_else(|| panic!("{name}, seed {seed}: no trap in {n:?}"));
            assert!(first <= bound, "{name}, seed {seed}: first trap at {first}");
            firsts.push(first);
            springs += n.iter().filter(|x| x.1).count();
            changed += n.len();
            // Every sprung trap names a bit in a trap byte of its exchange (those of the
            // running interval: a blame round may have excluded the disruptor since, and
            // the relay keeps only the running interval's trap secret).
            let running = net.relay.interval().map(|i| i.0);
            for s in net.exit.sprung.iter().filter(|s| Some(s.0) == running) {
                let grounds = net.relay.trap_grounds(s.0, s.2).expect("grounds");
                let key = TrapKey::from_point(&grounds.point, &GROUP, &SESSION, s.0, s.2);
                let len = cell_len_of(&net, s.0, s.1);
                assert!(key.is_trap_bit(s.1, len, s.3), "{name}, seed {seed}: {s:?}");
            }
        }
        firsts.sort_unstable();
        let mean = firsts.iter().sum::<usize>() as f64 / firsts.len() as f64;
        println!(
            "{name}: changed exchanges up to the first sprung trap over {} seeds: \
             min {}, median {}, max {}, mean {mean:.1}; {springs} of {changed} noticed \
             exchanges sprang a trap",
            firsts.len(),
            firsts[0],
            firsts[firsts.len() / 2],
            firsts[firsts.len() - 1],
        );
    }
}

/// The length of `exchange`'s cell, as every member recomputes it.
fn cell_len_of(net: &Net, interval: u32, exchange: u64) -> usize {
    let mut out = vec![0u8; 70_000];
    net.clients[0]
        .recompute_cell(interval, exchange, &mut out)
        .expect("kept")
}

#[test]
fn with_nobody_disrupting_no_trap_ever_springs() {
    let lengths = [
        (dissent_core::MIN_CELL_LENGTH, 1024),
        (dissent_core::MIN_CELL_LENGTH + 1, 333),
        (100, 1600),
        (256, 4096),
        (1000, dissent_core::MAX_CELL_LENGTH),
    ];
    let mut exchanges = 0;
    for seed in 0..16u64 {
        let (base, max) = lengths[seed as usize % lengths.len()];
        let mut net = net(seed, base, max, 40_000 + 3_000 * seed as usize);
        let before = net.relay.exchanges_decoded();
        net.run_steps(60_000);
        let what = format!("seed {seed}, base {base}, max {max}");
        assert!(net.exit.sprung.is_empty(), "{what}: {:?}", net.exit.sprung);
        assert_eq!(net.exit.garbled, 0, "{what}");
        assert!(net.node_errors.is_empty(), "{what}: {:?}", net.node_errors);
        let sent: usize = net.exit.upstream.values().map(Vec::len).sum();
        assert!(sent > 0, "{what}: nothing went through");
        exchanges += net.relay.exchanges_decoded() - before;
    }
    println!("{exchanges} exchanges, no trap sprung");
}

/// What every member holds for `bit` of `exchange` of `slot`, with the announced point.
fn facts(
    announced: [u8; 32],
    interval: u32,
    slot: u16,
    pseudonym: [u8; 32],
    exchange: u64,
    len: usize,
) -> Facts {
    Facts {
        group_id: GROUP,
        session_id: SESSION,
        view: [0; 32],
        interval,
        announced,
        slot,
        pseudonym,
        exchange,
        len,
        bit: 0,
    }
}

#[test]
fn members_refuse_wrong_trap_grounds_alike() {
    let mut net = net(3, 256, 1024, 20_000);
    net.clients[MALLORY].set_disruptor(Some(DisruptorMode::GarbleEveryOther));
    net.run_until(400_000, |s| !s.exit.sprung.is_empty());
    let (interval, exchange, slot, bit, _) = net.exit.sprung[0];
    let honest = net.relay.trap_grounds(interval, slot).expect("grounds");
    let len = cell_len_of(&net, interval, exchange);
    // Every member's own record of the announced point.
    let mut announced: Vec<[u8; 32]> = Vec::new();
    for c in &net.clients {
        let (i, r) = c.trap_point().expect("running");
        assert_eq!(i, interval);
        announced.push(r);
    }
    for t in &net.trustees {
        let (i, r) = t.trap_point().expect("running");
        assert_eq!(i, interval);
        announced.push(r);
    }
    assert!(announced.windows(2).all(|w| w[0] == w[1]), "one view");
    assert_eq!(announced[0], honest.announced);
    let other_slot = net.slots.iter().copied().find(|&s| s != slot).unwrap();
    let forger = SecretKey::from_bytes_mod_order(&[0x44; 32]).unwrap();
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let owner = net.slots.iter().position(|&s| s == slot).unwrap();
    let pseudonym = pad_public_key(&pseudonym_secret(owner));
    let forged = TrapGrounds::prove(
        &forger, &pseudonym, &GROUP, &SESSION, interval, slot, &mut rng,
    )
    .unwrap();
    let key = TrapKey::from_point(&honest.point, &GROUP, &SESSION, interval, slot);
    let off_trap = (0..len as u32 * 8)
        .find(|&b| !key.is_trap_bit(exchange, len, b))
        .unwrap();
    let mut bad_proof = honest;
    bad_proof.proof[5] ^= 1;
    let cases: [(&str, TrapGrounds, u32, Result<(), GroundsError>); 6] = [
        ("the relay's own", honest, bit, Ok(())),
        (
            "another trap point",
            forged,
            bit,
            Err(GroundsError::Trap(TrapError::WrongAnnouncement)),
        ),
        (
            "a point from another secret under the announced one",
            TrapGrounds {
                announced: honest.announced,
                ..forged
            },
            bit,
            Err(GroundsError::Trap(TrapError::BadProof)),
        ),
        (
            "a bad proof",
            bad_proof,
            bit,
            Err(GroundsError::Trap(TrapError::BadProof)),
        ),
        (
            "another slot's point",
            net.relay.trap_grounds(interval, other_slot).unwrap(),
            bit,
            Err(GroundsError::Trap(TrapError::BadProof)),
        ),
        (
            "a bit outside the traps",
            honest,
            off_trap,
            Err(GroundsError::Trap(TrapError::NotATrap)),
        ),
    ];
    for (what, grounds, bit, want) in cases {
        // Through the wire form, as a BlameRequest carries it.
        let mut bytes = [0u8; dissent_core::blame::MAX_GROUNDS_LEN];
        let n = Grounds::Trap(grounds).emit(&mut bytes).unwrap();
        let parsed = Grounds::parse(&bytes[..n]).unwrap();
        for (m, &r) in announced.iter().enumerate() {
            let f = Facts {
                bit,
                ..facts(r, interval, slot, pseudonym, exchange, len)
            };
            assert_eq!(parsed.check(&f), want, "{what}, member {m}");
        }
    }
}

/// The relay knows `r_I` and every owner's cell after the fact (it decoded them): whatever
/// grounds and bit it names, a member's check passes only where the owner wrote 0.
#[test]
fn no_relay_choice_makes_a_member_reveal_a_bit_the_owner_wrote_one() {
    let relay = SecretKey::from_bytes_mod_order(&[0x31; 32]).unwrap();
    let r = wire::trap_secret(&relay, &[5; 16], &SESSION, 9).unwrap();
    let announced = r.public_key().to_bytes();
    let other_r = wire::trap_secret(&relay, &[5; 16], &SESSION, 10).unwrap();
    let mut rng = ChaCha20Rng::from_seed([0x5E; 32]);
    let owners: [[u8; 32]; 3] = [[0x61; 32], [0x62; 32], [0x63; 32]];
    let (mut accepted, mut tried) = (0usize, 0usize);
    for len in [54usize, 55, 64, 100, 256, 1000] {
        for exchange in [0u64, 7, 300] {
            for (slot, owner) in owners.iter().enumerate() {
                let slot = slot as u16;
                let pseudonym = pad_public_key(owner);
                // The owner's cell: random sealed bytes laid out around its traps.
                let traps = TrapKey::owner(owner, &announced, &GROUP, &SESSION, 9, slot).unwrap();
                let mut sealed = vec![0u8; wire::sealed_len(len)];
                rng.fill_bytes(&mut sealed);
                let mut cell = vec![0u8; len];
                assert!(wire::lay_out(&mut cell, Some(&sealed), &traps, exchange));
                // The relay's choices of grounds.
                let mut choices = vec![];
                for (s, _) in owners.iter().enumerate() {
                    let p = pad_public_key(&owners[s]);
                    for secret in [&r, &other_r] {
                        for i in [9u32, 10] {
                            let g = TrapGrounds::prove(
                                secret, &p, &GROUP, &SESSION, i, s as u16, &mut rng,
                            )
                            .unwrap();
                            for c in [g, TrapGrounds { announced, ..g }] {
                                if !choices.contains(&c) {
                                    choices.push(c);
                                }
                            }
                        }
                    }
                }
                let f = Facts {
                    group_id: GROUP,
                    session_id: SESSION,
                    view: [0; 32],
                    interval: 9,
                    announced,
                    slot,
                    pseudonym,
                    exchange,
                    len,
                    bit: 0,
                };
                for g in &choices {
                    // The proof does not depend on the bit: grounds refused at bit 0 are
                    // refused alike at every bit (sampled); the others are tried at all.
                    let at_zero = Grounds::Trap(*g).check(&f);
                    let refused = matches!(
                        at_zero,
                        Err(GroundsError::Trap(
                            TrapError::BadProof | TrapError::WrongAnnouncement
                        ))
                    );
                    if refused {
                        for _ in 0..16 {
                            let bit = rng.next_u32() % (len as u32 * 8);
                            assert_eq!(Grounds::Trap(*g).check(&Facts { bit, ..f }), at_zero);
                            tried += 1;
                        }
                        continue;
                    }
                    for bit in 0..len as u32 * 8 {
                        tried += 1;
                        if Grounds::Trap(*g).check(&Facts { bit, ..f }).is_ok() {
                            accepted += 1;
                            let wrote = cell[bit as usize / 8] >> (bit % 8) & 1;
                            assert_eq!(wrote, 0, "len {len}, exchange {exchange}, bit {bit}");
                        }
                    }
                }
            }
        }
    }
    // Only the relay's own grounds for the slot pass, at exactly the trap bits.
    let traps: usize = [54usize, 55, 64, 100, 256, 1000]
        .iter()
        .map(|&l| 8 * wire::traps_in(l))
        .sum();
    assert_eq!(
        accepted,
        3 * 3 * traps,
        "{accepted} of {tried} choices accepted"
    );
}
