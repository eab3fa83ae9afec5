//! A blame round at 1,000 clients, computation included: the core's in-memory net (2
//! trustees, 10 ms links, 1 KiB cells up to 8 KiB, window 16, 10 s timeout), one client
//! garbling every other exchange. Prints the simulated time from the first disrupted
//! exchange to the disruptor's exclusion, and the wall-clock time the round took on this
//! machine (every reveal signed, checked against its fingerprint and verified; the net
//! itself runs on one thread). Never asserts anything but that the disruptor is the one
//! excluded.
//!
//! `cargo bench -p dissent-core --bench blame_round`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Instant as Wall;

use dissent_core::client::DisruptorMode;
use dissent_core::relay::PeerId;
use dissent_core::testkit::{pattern, Net, NetConfig};
use dissent_core::Duration;

fn main() {
    let clients: usize = std::env::var("BLAME_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut cfg = NetConfig::new(clients, 2, 1024);
    cfg.max_cell_len = 8192;
    cfg.window = 16;
    cfg.latency = Duration::from_millis(10);
    cfg.exchange_timeout = Duration::from_millis(10_000);
    cfg.exchange_budget = usize::MAX;
    let wall = Wall::now();
    let mut net = Net::new(cfg);
    net.run_until(50_000_000, |s| {
        s.relay.interval().is_some_and(|(_, n)| n == clients)
    });
    println!(
        "{clients} clients: group up in {:.1} s",
        wall.elapsed().as_secs_f64()
    );
    let mallory = clients - 1;
    net.clients[mallory].set_disruptor(Some(DisruptorMode::GarbleEveryOther));
    for i in 0..4 {
        let conn = net.open(i);
        net.send_bytes(i, conn, pattern(i, 4000));
    }
    let mut first = None;
    let mut round_wall = None;
    let mut started_wall = None;
    for _ in 0..50_000_000u64 {
        if first.is_none() && net.exit.garbled > 0 {
            first = Some(net.now);
        }
        if started_wall.is_none() && !net.blame_started.is_empty() {
            started_wall = Some(Wall::now());
        }
        if !net.excluded.is_empty() {
            round_wall = started_wall.map(|w| w.elapsed());
            break;
        }
        if !net.step() {
            break;
        }
    }
    let first = first.expect("a disruption");
    let &(at, who, _) = net.excluded.first().expect("an exclusion");
    assert_eq!(who, PeerId::Client(mallory as u16));
    println!(
        "{clients} clients: first disruption to exclusion {} ms simulated; the round took {:.0} ms of wall-clock time here",
        (at - first).as_micros() / 1000,
        round_wall.map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
}
