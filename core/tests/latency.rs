//! How many exchanges an echo takes on the in-memory net ([`dissent_core::testkit`]),
//! counted in exchanges the relay decoded, never in time.
//!
//! The harness plays the shell as a hosted client does: new upstream bytes are prepared at
//! once only when the client wants them (`Client::wants_upstream`), and the
//! application reports the downstream bytes it took after the turn that handed them over.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use dissent_core::testkit::{pattern, Net, NetConfig};
use dissent_core::wire::ConnId;

/// Exchanges from a small write to its echo on a warm connection: the owner's next
/// exchange carries the write, the one after it brings the echo down (as before owned
/// cells were sealed).
const ECHO_EXCHANGES: u64 = 2;

/// A running net of `clients` clients and 3 trustees with 256-byte cells, and a warm
/// connection of client 0 (one byte echoed).
fn warm(clients: usize) -> (Net, ConnId) {
    let mut net = Net::new(NetConfig::new(clients, 3, 256));
    net.run_until(400_000, |s| {
        s.relay.interval().is_some_and(|(_, n)| n == clients)
    });
    let conn = net.open(0);
    net.send_bytes(0, conn, vec![0x5a]);
    net.run_until(400_000, |s| received(s, conn) == 1);
    assert_eq!(received(&net, conn), 1, "the first byte came back");
    (net, conn)
}

fn received(net: &Net, conn: ConnId) -> usize {
    net.apps[0].received.get(&conn).map_or(0, Vec::len)
}

/// Sends `count` 32-byte writes one at a time, each when the echo of the last is back;
/// returns the exchanges each echo took.
fn echoes(net: &mut Net, conn: ConnId, count: usize) -> Vec<u64> {
    let mut want = received(net, conn);
    let mut taken = Vec::new();
    for k in 0..count {
        let e0 = net.relay.exchanges_decoded();
        let data = pattern(k, 32);
        net.send_bytes(0, conn, data.clone());
        want += data.len();
        net.run_until(100_000, |s| received(s, conn) >= want);
        assert_eq!(received(net, conn), want, "echo {k} came back whole");
        assert_eq!(net.apps[0].received[&conn][want - data.len()..], data[..]);
        taken.push(net.relay.exchanges_decoded() - e0);
    }
    taken
}

#[test]
fn an_echo_of_a_small_write_takes_two_exchanges() {
    for clients in [16, 100] {
        let (mut net, conn) = warm(clients);
        let taken = echoes(&mut net, conn, 20);
        assert!(
            taken.iter().all(|&e| e <= ECHO_EXCHANGES),
            "{clients} clients: exchanges per echo {taken:?}"
        );
        assert!(net.relay_errors.is_empty(), "{:?}", net.relay_errors);
        assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
        assert_eq!(net.exit.garbled, 0);
    }
}

#[test]
fn the_application_taking_downstream_bytes_does_not_hold_back_its_next_write() {
    // The echo handed over, the application reports it took it, which prepares nothing
    // to send: the client still wants the next write at once.
    let (mut net, conn) = warm(16);
    assert!(
        net.clients[0].wants_upstream(),
        "after an echo was taken, a new write is prepared at once"
    );
    let want = received(&net, conn) + 32;
    net.send_bytes(0, conn, pattern(7, 32));
    // Prepared with the write: the next ones wait for the client's next cell.
    assert!(!net.clients[0].wants_upstream());
    net.run_until(100_000, |s| received(s, conn) >= want);
    assert_eq!(received(&net, conn), want);
}

#[test]
fn a_busy_sender_wakes_no_preparation_between_cells() {
    let (mut net, conn) = warm(16);
    net.send_endless(0, conn);
    let before = net.relay.exchanges_decoded();
    net.run_until(200_000, |s| s.relay.exchanges_decoded() >= before + 50);
    // Something always waits: each cell's preparation takes it.
    assert!(!net.clients[0].wants_upstream());
    assert!(received(&net, conn) > 1 + 10 * 256);
}
