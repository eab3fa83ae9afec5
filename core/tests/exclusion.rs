//! A convicted node is excluded: `Relay::exclude_convicted` tells every trustee and member
//! (`Blamed`), says `Goodbye{Excluded}` to it, the next interval runs without it, its
//! later hellos are refused, and honest traffic that a garble-all disruptor had stopped
//! then completes byte-exact. (The verdict itself comes from a blame round, `blame.rs`.)

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use dissent_core::blame::{BlameKind, Culprit};
use dissent_core::relay::PeerId;
use dissent_core::testkit::{pattern, Net, NetConfig, Node, Tamper};
use dissent_core::wire::Kind;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const CLIENTS: usize = 6;
const MALLORY: usize = 5;

#[test]
fn an_excluded_disruptor_is_gone_for_the_epoch_and_honest_traffic_completes() {
    // As a hosted client: the keep horizon of the largest window.
    excluded_and_completes(Some(dissent_core::blame::keep_horizon(
        dissent_core::MAX_WINDOW as u16,
    )));
}

/// The same with clients that keep only what the window needs, as a device: an owned cell
/// the disruptor spoiled whose output the ended interval never reported is still known as
/// the client's own (by the schedule or a kept cell) and sent again.
#[test]
fn honest_traffic_completes_when_clients_keep_only_what_the_window_needs() {
    excluded_and_completes(None);
}

fn excluded_and_completes(kept_cells: Option<usize>) {
    for seed in 0..4u64 {
        let mut cfg = NetConfig::new(CLIENTS, 2, 256);
        cfg.max_cell_len = 1024;
        cfg.kept_cells = kept_cells;
        let mut net = Net::new(cfg);
        net.run_until(100_000, |s| {
            s.relay.interval().is_some_and(|(_, n)| n == CLIENTS)
        });
        net.run_steps(50_000);
        // The exclusion is driven here: a sprung trap would have a round exclude it first.
        net.relay.set_ignore_traps(true);
        // Garble-all: random bytes in every data exchange (the disruptor mode's effect).
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        net.tamper = Some(Tamper {
            client: MALLORY,
            mask: Box::new(move |v| {
                if matches!(v.kind, Kind::Reserve) {
                    return None;
                }
                let mut m = vec![0u8; v.cell.len()];
                rng.fill_bytes(&mut m);
                Some(m)
            }),
            published: Vec::new(),
            tampered: 0,
        });
        let mut expect = BTreeMap::new();
        for i in 0..MALLORY {
            let conn = net.open(i);
            let data = pattern(seed as usize * 7 + i, 3000 + 500 * i);
            net.send_bytes(i, conn, data.clone());
            expect.insert(conn, (i, data));
        }
        net.run_steps(30_000 + 10_000 * seed as usize);
        let what = format!("seed {seed}");
        assert!(net.exit.garbled > 5, "{what}: {} garbled", net.exit.garbled);
        let delivered: usize = net.exit.upstream.values().map(Vec::len).sum();
        let total: usize = expect.values().map(|(_, d)| d.len()).sum();
        assert!(
            delivered < total,
            "{what}: the disruption held nothing back"
        );
        let (interval, _) = net.relay.interval().unwrap();
        let now = net.now;
        assert!(net.relay.exclude_convicted(
            now,
            PeerId::Client(MALLORY as u16),
            interval,
            7,
            BlameKind::Disrupted
        ));
        net.flush_relay();
        // Its process is told why and stops; a new hello of it is refused.
        net.run_until(20_000, |s| {
            s.node_errors
                .iter()
                .any(|(n, _)| *n == Node::Client(MALLORY))
        });
        let (_, why) = net
            .node_errors
            .iter()
            .find(|(n, _)| *n == Node::Client(MALLORY))
            .unwrap();
        assert!(why.contains("excluded"), "{what}: {why}");
        net.connect(Node::Client(MALLORY));
        net.run_steps(5_000);
        assert!(net.relay.is_excluded(MALLORY as u16));
        assert_eq!(
            net.relay.link_of(PeerId::Client(MALLORY as u16)),
            None,
            "{what}: readmitted"
        );
        let refusals = net
            .node_errors
            .iter()
            .filter(|(n, e)| *n == Node::Client(MALLORY) && e.contains("excluded"))
            .count();
        assert_eq!(refusals, 2, "{what}: {:?}", net.node_errors);
        // The next interval runs without it, and every honest byte arrives, unaltered.
        net.run_until(3_000_000, |s| {
            expect.iter().all(|(c, (i, d))| {
                s.exit.upstream.get(c) == Some(d) && s.apps[*i].received.get(c) == Some(d)
            })
        });
        for (c, (i, d)) in &expect {
            assert_eq!(net.exit.upstream.get(c), Some(d), "{what}");
            assert_eq!(net.apps[*i].received.get(c), Some(d), "{what}");
            assert_eq!(net.exit.opened.get(c), Some(&1), "{what}");
        }
        assert_eq!(
            net.relay.interval().map(|(_, n)| n),
            Some(CLIENTS - 1),
            "{what}"
        );
        // Every honest member was told, and no honest node was dropped or excluded.
        for i in 0..MALLORY {
            assert!(
                net.apps[i].blamed.contains(&(
                    interval,
                    7,
                    Culprit::Client(MALLORY as u16),
                    BlameKind::Disrupted
                )),
                "{what}: client {i} was not told: {:?}",
                net.apps[i].blamed
            );
            assert!(!net.relay.is_excluded(i as u16));
            assert!(net.apps[i].lost.is_empty(), "{what}");
        }
        assert!(
            net.node_errors
                .iter()
                .all(|(n, _)| *n == Node::Client(MALLORY)),
            "{what}: {:?}",
            net.node_errors
        );
    }
}

/// Transfers in flight while a `garble-all` disruptor springs a trap, is convicted by the
/// blame round and excluded: every byte arrives at the exit and back at its owner, once and
/// in order, and no connection is lost. Over seeds: the group's size, the window, the
/// largest cell, the links' latency, how many clients send, and whether the disruptor
/// starts before the transfers or a little after.
#[cfg(feature = "disruptor")]
#[test]
fn transfers_in_flight_while_a_garbler_is_excluded_arrive_intact_both_ways() {
    use dissent_core::client::DisruptorMode;
    use dissent_core::Duration;
    // Owners' cells disrupted (their bytes sent again), over all seeds.
    let mut resent = 0;
    for seed in 0..24usize {
        let clients = 5 + seed % 6;
        let window = [4u16, 8, 16][seed % 3];
        let mallory = (seed * 7 + 3) % clients;
        let mut cfg = NetConfig::new(clients, 2, 256);
        cfg.max_cell_len = [1024, 4096, 8192][(seed / 3) % 3];
        cfg.window = window;
        cfg.latency = Duration::from_millis([0u64, 1, 5][(seed / 9) % 3]);
        let mut net = Net::new(cfg);
        net.run_until(1_000_000, |s| {
            s.relay.interval().is_some_and(|(_, n)| n == clients)
        });
        net.run_steps(seed * 37);
        let before = seed % 2 == 0;
        if before {
            net.clients[mallory].set_disruptor(Some(DisruptorMode::GarbleAll));
        }
        let mut expect = BTreeMap::new();
        for i in (0..clients).filter(|&i| i != mallory).take(1 + seed % 3) {
            let conn = net.open(i);
            let data = pattern(seed * 100 + i, 16 * 1024 + 97 * (seed % 7));
            net.send_bytes(i, conn, data.clone());
            expect.insert(conn, (i, data));
        }
        if !before {
            // Some of the transfers' cells are out already.
            net.run_steps(seed % 5 * 7);
            net.clients[mallory].set_disruptor(Some(DisruptorMode::GarbleAll));
        }
        let m = PeerId::Client(mallory as u16);
        let what = format!(
            "seed {seed}: {clients} clients, window {window}, mallory {mallory}, before {before}"
        );
        net.run_until(2_000_000, |s| {
            s.excluded.iter().any(|x| x.1 == m)
                && expect.iter().all(|(c, (i, d))| {
                    s.exit.upstream.get(c) == Some(d) && s.apps[*i].received.get(c) == Some(d)
                })
        });
        assert!(
            net.exit.garbled > 0 || !net.exit.sprung.is_empty(),
            "{what}: nothing was disrupted"
        );
        resent += expect
            .values()
            .map(|(i, _)| net.apps[*i].disrupted.len())
            .sum::<usize>();
        resent += expect
            .values()
            .map(|(i, _)| net.apps[*i].disrupted.len())
            .sum::<usize>();
        for (c, (i, d)) in &expect {
            assert_eq!(net.exit.upstream.get(c), Some(d), "{what}");
            assert_eq!(net.apps[*i].received.get(c), Some(d), "{what}");
            assert_eq!(net.exit.opened.get(c), Some(&1), "{what}");
            assert!(net.apps[*i].lost.is_empty(), "{what}");
        }
        assert!(
            net.excluded.iter().all(|x| x.1 == m),
            "{what}: {:?}",
            net.excluded
        );
        assert!(
            net.node_errors.iter().all(|(n, _)| n.peer() == m),
            "{what}: {:?}",
            net.node_errors
        );
    }
    // The owners' cells were disrupted and sent again, not merely delivered before.
    assert!(resent > 24, "{resent} owners' cells disrupted");
    println!("{resent} owners' cells disrupted and sent again");
}
