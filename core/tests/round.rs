//! Blame rounds run for real in the in-memory net: an owner's accusation starts a round,
//! every member and trustee checks its grounds and reveals, the relay judges, and the
//! disruptor is named, excluded, and the evidence checks offline.

#![cfg(feature = "disruptor")]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use dissent_core::blame::{self, BlameKind, Culprit};
use dissent_core::client::DisruptorMode;
use dissent_core::relay::PeerId;
use dissent_core::testkit::{pattern, Net, NetConfig};

/// A group of `clients` in which the last one turns `mode` on once traffic starts; every
/// honest client uploads. Runs until the disruptor is excluded (or `steps`).
fn run(clients: usize, mode: DisruptorMode, seed: usize, steps: usize) -> (Net, usize) {
    let mut cfg = NetConfig::new(clients, 2, 256);
    cfg.max_cell_len = 1024;
    let mut net = Net::new(cfg);
    net.run_until(200_000, |s| {
        s.relay.interval().is_some_and(|(_, n)| n == clients)
    });
    let mallory = clients - 1 - seed % 2;
    net.clients[mallory].set_disruptor(Some(mode));
    for i in 0..clients {
        if i == mallory {
            continue;
        }
        let conn = net.open(i);
        net.send_bytes(i, conn, pattern(seed * 10 + i, 3000));
    }
    for _ in 0..steps {
        if !net.blame_ended.is_empty() || !net.step() {
            break;
        }
    }
    (net, mallory)
}

#[test]
fn a_garbling_member_is_named_and_excluded() {
    let (net, mallory) = run(6, DisruptorMode::GarbleEveryOther, 0, 200_000);
    println!("started {:?}", net.blame_started);
    println!("ended {:?}", net.blame_ended);
    println!("dropped {:?}", net.blame_dropped);
    println!("reveals {:?}", net.reveals);
    println!("accused {:?}", net.exit.accused);
    println!("errors {:?} {:?}", net.relay_errors, net.node_errors);
    let (_, _, _, verdict) = net.blame_ended[0];
    assert_eq!(verdict.map(|v| v.0), Some(Culprit::Client(mallory as u16)));
    for e in &net.evidence {
        println!("{:?}", blame::verify(e, &net.directory()));
    }
    let _ = (BlameKind::Disrupted, PeerId::Client(0), BTreeMap::<u8, u8>::new());
}
