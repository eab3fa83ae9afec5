//! Protocol scenarios on the in-memory net ([`dissent_core::testkit`]): every behaviour that
//! does not need real I/O is tested here, deterministically.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use dissent_core::client::{Client, ClientConfig, ClientStorage, NoUpstream};
use dissent_core::crypto::pad_public_key;
use dissent_core::error::{ConfigError, HelloError, IntervalError, PeerError, RequestError};
use dissent_core::policy::{LogWindow, Policy};
use dissent_core::relay::{Destination, NoDownstream, PeerId};
use dissent_core::relay::{Relay, RelayConfig, RelayStorage, StallConfig};
use dissent_core::testkit::{frame_body, pattern, secret, Net, NetConfig, Node, GROUP, SESSION};
use dissent_core::trustee::{Trustee, TrusteeConfig, TrusteeStorage};
use dissent_core::wire::{self, ConnId, Kind, Message, Params};
use dissent_core::{Duration, Instant};

/// Opens one connection per client and queues `len` bytes on each.
fn load(net: &mut Net, len: usize) -> BTreeMap<ConnId, Vec<u8>> {
    let mut expect = BTreeMap::new();
    for i in 0..net.clients.len() {
        let conn = net.open(i);
        assert_eq!(conn.slot(), Some(net.slots[i]));
        let data = pattern(i, len);
        net.send_bytes(i, conn, data.clone());
        expect.insert(conn, data);
    }
    expect
}

fn echoed_everything(net: &Net, expect: &BTreeMap<ConnId, Vec<u8>>) -> bool {
    net.all_delivered(expect)
        && expect.iter().all(|(c, d)| {
            net.apps
                .iter()
                .any(|a| a.received.get(c).map(Vec::len) == Some(d.len()))
        })
}

#[test]
fn every_slot_decodes_exactly_and_replies_reach_only_the_owner() {
    for &(n, m, cell) in &[(1usize, 1usize, 128usize), (3, 2, 128), (5, 3, 1024)] {
        let mut net = Net::new(NetConfig::new(n, m, cell));
        let expect = load(&mut net, 5000);
        net.run_until(400_000, |s| echoed_everything(s, &expect));
        assert_eq!(net.exit.upstream, expect, "n={n} m={m}");
        assert!(net.exit.opened.values().all(|&k| k == 1));
        assert_eq!(net.exit.garbled, 0);
        assert!(net.relay_errors.is_empty(), "{:?}", net.relay_errors);
        assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
        for (i, app) in net.apps.iter().enumerate() {
            // Each client got back exactly its own connection's bytes and nobody else's.
            assert_eq!(app.received.len(), 1, "client {i}");
            let (conn, data) = app.received.iter().next().unwrap();
            assert_eq!(data, &expect[conn]);
        }
    }
}

#[test]
fn closes_travel_both_ways() {
    let mut net = Net::new(NetConfig::new(3, 2, 128));
    let conn = net.open(1);
    net.send_bytes(1, conn, b"bye".to_vec());
    net.close(1, conn);
    // The echo exit answers a close with a close, after echoing everything.
    net.run_until(100_000, |s| s.apps[1].closed.contains(&conn));
    assert_eq!(net.exit.upstream[&conn], b"bye");
    assert_eq!(net.apps[1].received[&conn], b"bye");
    assert_eq!(net.exit.opened[&conn], 1);
    assert!(!net.clients[1].is_open(conn));
    let other = net.open(2);
    net.exit.replies.push_back((other, None));
    net.run_until(100_000, |s| s.apps[2].closed.contains(&other));
    assert!(!net.clients[2].is_open(other));
}

#[test]
fn a_half_closed_connection_still_gets_its_replies() {
    let mut net = Net::new(NetConfig::new(2, 1, 128));
    net.exit.echo = false;
    let conn = net.open(0);
    net.send_bytes(0, conn, b"request".to_vec());
    net.close(0, conn);
    net.run_until(100_000, |s| s.exit.closed.contains(&conn));
    // The exit answers only after the client finished sending.
    assert!(net.clients[0].is_open(conn));
    let reply = pattern(3, 5000);
    net.exit.replies.push_back((conn, Some(reply.clone())));
    net.exit.replies.push_back((conn, None));
    net.run_until(100_000, |s| s.apps[0].closed.contains(&conn));
    assert_eq!(net.apps[0].received[&conn], reply);
    assert!(!net.clients[0].is_open(conn));
}

#[test]
fn a_connection_without_data_is_still_opened() {
    let mut net = Net::new(NetConfig::new(2, 1, 128));
    let conn = net.open(1);
    net.run_until(100_000, |s| s.exit.opened.contains_key(&conn));
    assert_eq!(net.exit.upstream[&conn], b"");
    // A server that speaks first reaches it.
    net.exit
        .replies
        .push_back((conn, Some(b"220 hello".to_vec())));
    net.run_until(100_000, |s| s.apps[1].received.contains_key(&conn));
    assert_eq!(net.apps[1].received[&conn], b"220 hello");
}

#[test]
fn a_client_that_drops_out_briefly_keeps_its_connections_and_loses_nothing() {
    let mut net = Net::new(NetConfig::new(4, 2, 128));
    let expect = load(&mut net, 20_000);
    // Let data start flowing, then cut client 2's link mid-transfer.
    net.run_until(400_000, |s| {
        s.exit.upstream.values().map(Vec::len).sum::<usize>() > 8000
    });
    let before = net.intervals.len();
    net.disconnect(Node::Client(2));
    net.run_steps(200);
    net.connect(Node::Client(2));
    net.run_until(2_000_000, |s| echoed_everything(s, &expect));
    assert!(
        net.intervals.len() > before,
        "new intervals excluded, then readmitted it"
    );
    assert_eq!(net.exit.upstream, expect);
    for (i, app) in net.apps.iter().enumerate() {
        let (conn, data) = app.received.iter().next().unwrap();
        assert_eq!(data, &expect[conn], "client {i}");
        assert!(app.lost.is_empty(), "client {i} lost {:?}", app.lost);
    }
    // Nothing was closed on anyone's behalf, and nothing garbled.
    assert!(net.exit.closed.is_empty());
    assert_eq!(net.exit.garbled, 0);
}

#[test]
fn a_trustee_restart_loses_nothing() {
    let mut net = Net::new(NetConfig::new(3, 3, 128));
    let expect = load(&mut net, 6000);
    net.run_until(200_000, |s| {
        s.exit.upstream.values().map(Vec::len).sum::<usize>() > 3000
    });
    net.disconnect(Node::Trustee(1));
    net.run_steps(50);
    net.connect(Node::Trustee(1));
    net.run_until(1_000_000, |s| echoed_everything(s, &expect));
    assert_eq!(net.exit.upstream, expect);
    assert_eq!(net.exit.garbled, 0);
}

#[test]
fn a_silent_client_is_dropped_and_the_rest_continue() {
    let mut net = Net::new(NetConfig::new(3, 2, 128));
    let expect = load(&mut net, 3000);
    net.run_until(100_000, |s| !s.exit.upstream.is_empty());
    // Client 0 stops answering but keeps its link open: only the timeout can help.
    net.muted[0] = true;
    let others: BTreeMap<_, _> = expect
        .iter()
        .filter(|(c, _)| c.slot() != Some(net.slots[0]))
        .map(|(c, d)| (*c, d.clone()))
        .collect();
    net.run_until(1_000_000, |s| s.all_delivered(&others));
    assert!(net.dropped.contains(&PeerId::Client(0)));
    for (c, d) in &others {
        assert_eq!(&net.exit.upstream[c], d);
    }
}

#[test]
fn bad_frames_cost_only_their_sender() {
    let mut net = Net::new(NetConfig::new(3, 2, 128));
    let expect = load(&mut net, 2000);
    for case in 0..4 {
        // Wait until client 1 is in a running interval.
        net.run_until(200_000, |s| s.clients[1].interval().is_some());
        let (interval, _) = net.relay.interval().unwrap();
        let body = match case {
            0 => vec![0xFF, 0x00, 0x13],
            1 => frame_body(&Message::Cell {
                interval,
                exchange: 0,
                cell: &[0u8; 10],
            }),
            2 => frame_body(&Message::Cell {
                interval,
                exchange: 1 << 40,
                cell: &[0u8; 64],
            }),
            _ => frame_body(&Message::Cell {
                interval: interval + 5,
                exchange: 0,
                cell: &[0u8; 64],
            }),
        };
        net.relay_errors.clear();
        let link = net.link_of(Node::Client(1)).unwrap();
        net.relay
            .handle_frame(net.now, link, PeerId::Client(1), &body)
            .unwrap_err();
        net.flush_relay();
        // The relay said goodbye to client 1 and nobody else.
        net.run_until(10_000, |s| !s.is_up(Node::Client(1)));
        assert!(net.is_up(Node::Client(0)) && net.is_up(Node::Client(2)));
        net.connect(Node::Client(1));
    }
    // Everyone's bytes arrive in full: client 1's connection survived its link drops.
    net.run_until(2_000_000, |s| echoed_everything(s, &expect));
    assert_eq!(net.exit.upstream, expect);
}

#[test]
fn the_relay_refuses_hellos_that_do_not_match_the_link() {
    let mut net = Net::unconnected(NetConfig::new(2, 1, 128));
    let hello = |group: [u8; 16], role, index| {
        frame_body(&Message::Hello(wire::Hello {
            version: wire::PROTOCOL_VERSION,
            group_id: group,
            session_id: SESSION,
            role,
            index,
            nonce: [0; 16],
            max_frame: 16 * 1024,
            capacity: 0,
            resume: None,
            proofs: &[0; 16],
            blame: true,
        }))
    };
    let now = net.now;
    let link = dissent_core::relay::LinkId(77);
    let r = &mut net.relay;
    // Another group; another node than the link authenticated as; garbage; too small a frame
    // limit.
    assert!(r
        .handle_hello(
            now,
            link,
            PeerId::Client(0),
            &hello([0; 16], wire::NodeRole::Client, 0)
        )
        .is_err());
    assert!(r
        .handle_hello(
            now,
            link,
            PeerId::Client(0),
            &hello(GROUP, wire::NodeRole::Client, 1)
        )
        .is_err());
    assert!(r
        .handle_hello(
            now,
            link,
            PeerId::Client(0),
            &hello(GROUP, wire::NodeRole::Trustee, 0)
        )
        .is_err());
    assert!(r
        .handle_hello(now, link, PeerId::Client(0), &[1, 2, 3])
        .is_err());
    // A node of protocol version 3 computes other pads (XChaCha20) than this group
    // (XChaCha12): refused at its Hello, and told so by a `Goodbye{Version}`.
    let old = frame_body(&Message::Hello(wire::Hello {
        version: 3,
        group_id: GROUP,
        session_id: SESSION,
        role: wire::NodeRole::Client,
        index: 0,
        nonce: [0; 16],
        max_frame: 16 * 1024,
        capacity: 0,
        resume: None,
        proofs: &[0; 16],
        blame: true,
    }));
    assert_eq!(
        r.handle_hello(now, link, PeerId::Client(0), &old)
            .unwrap_err(),
        PeerError::Hello(HelloError::Version(3))
    );
    // The relay's goodbyes, in order (the refusals above queued theirs first).
    let mut out = std::vec![0u8; 64 * 1024];
    let mut goodbyes = std::vec::Vec::new();
    while let Some(t) = r.poll_transmit(now, &mut out, &mut NoDownstream).unwrap() {
        assert_eq!(
            (t.destination, t.close_after),
            (Destination::Link(link), true)
        );
        match Message::parse(&out[wire::FRAME_HEADER_LEN..t.len]).unwrap() {
            Message::Goodbye { reason } => goodbyes.push(reason),
            other => panic!("not a goodbye: {other:?}"),
        }
    }
    assert_eq!(goodbyes.last(), Some(&wire::GoodbyeReason::Version));
    let small = frame_body(&Message::Hello(wire::Hello {
        version: wire::PROTOCOL_VERSION,
        group_id: GROUP,
        session_id: SESSION,
        role: wire::NodeRole::Client,
        index: 1,
        nonce: [0; 16],
        max_frame: 20,
        capacity: 0,
        resume: None,
        proofs: &[0; 16],
        blame: true,
    }));
    assert!(r
        .handle_hello(now, link, PeerId::Client(1), &small)
        .is_err());
    assert!(r
        .handle_hello(
            now,
            link,
            PeerId::Client(1),
            &hello(GROUP, wire::NodeRole::Client, 1)
        )
        .is_ok());
}

#[test]
fn an_idle_net_slows_down_and_data_wakes_it_up() {
    let mut net = Net::new(NetConfig::new(3, 2, 128));
    net.run_until(100_000, |s| s.relay.interval().is_some());
    let (t0, e0) = (net.now, net.relay.exchanges_decoded());
    net.run_until(1_000_000, |s| s.now >= t0 + Duration::from_millis(1000));
    let idle = net.relay.exchanges_decoded() - e0;
    // The longest idle gap is 1 ms, so an idle second holds about a thousand exchanges.
    assert!((500..=1100).contains(&idle), "{idle} idle exchanges");
    let expect = load(&mut net, 20_000);
    let (t1, e1) = (net.now, net.relay.exchanges_decoded());
    net.run_until(1_000_000, |s| s.all_delivered(&expect));
    let busy = net.relay.exchanges_decoded() - e1;
    let secs = (net.now - t1).as_micros() as f64 / 1e6;
    assert!(
        busy as f64 / secs > 3.0 * idle as f64,
        "{busy} exchanges in {secs} s under load"
    );
    assert_eq!(net.exit.upstream, expect);
}

#[test]
fn a_lone_sender_gets_nearly_every_exchange() {
    let mut cfg = NetConfig::new(16, 3, 256);
    cfg.max_cell_len = 256; // one length, so exchanges are easy to count
    let mut net = Net::new(cfg);
    net.run_until(100_000, |s| s.relay.interval().is_some());
    let conn = net.open(5);
    let data = pattern(5, 400_000);
    net.send_bytes(5, conn, data.clone());
    // Let the reservation settle in, then count exchanges while the sender has data.
    net.run_until(1_000_000, |s| {
        s.exit.upstream.get(&conn).map_or(0, Vec::len) > 20_000
    });
    let e0 = net.relay.exchanges_decoded();
    let b0 = net.exit.upstream[&conn].len();
    net.run_until(2_000_000, |s| s.exit.upstream[&conn].len() > b0 + 200_000);
    let exchanges = net.relay.exchanges_decoded() - e0;
    let carried = (net.exit.upstream[&conn].len() - b0) as f64;
    let per_cell = (256 - 80 - 2 - 6) as f64;
    let share = carried / per_cell / exchanges as f64;
    assert!(
        share >= 0.9,
        "the sender filled {share:.3} of the exchanges"
    );
}

#[test]
fn two_senders_share_fairly_and_never_collide() {
    let mut cfg = NetConfig::new(8, 2, 128);
    cfg.max_cell_len = 128;
    let mut net = Net::new(cfg);
    net.run_until(100_000, |s| s.relay.interval().is_some());
    // Both ask in the same reservation exchange.
    let a = net.open(1);
    let b = net.open(6);
    net.send_bytes(1, a, pattern(1, 300_000));
    net.send_bytes(6, b, pattern(6, 300_000));
    net.run_until(3_000_000, |s| {
        s.exit.upstream.get(&a).map_or(0, Vec::len) + s.exit.upstream.get(&b).map_or(0, Vec::len)
            > 200_000
    });
    let (x, y) = (net.exit.upstream[&a].len(), net.exit.upstream[&b].len());
    let ratio = x.max(y) as f64 / x.min(y).max(1) as f64;
    assert!(ratio < 1.1, "{x} vs {y} bytes");
    // Every byte decoded exactly: the two never wrote into the same exchange.
    assert_eq!(net.exit.garbled, 0);
    assert_eq!(net.exit.upstream[&a][..], pattern(1, 300_000)[..x]);
    assert_eq!(net.exit.upstream[&b][..], pattern(6, 300_000)[..y]);
}

#[test]
fn every_node_follows_the_same_schedule() {
    let mut net = Net::new(NetConfig::new(6, 3, 128));
    net.log_cells = true;
    let expect = load(&mut net, 30_000);
    net.run_until(2_000_000, |s| echoed_everything(s, &expect));
    // Each node checks every request's kind against its own schedule and drops the link on
    // a difference; none did, and every client saw the same exchanges with the same lengths.
    assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
    let (last, _) = net.relay.interval().unwrap();
    let of_last = |log: &Vec<(u32, u64, usize)>| -> Vec<(u64, usize)> {
        log.iter()
            .filter(|e| e.0 == last)
            .map(|&(_, e, l)| (e, l))
            .collect()
    };
    let reference = of_last(&net.cell_log[0]);
    assert!(reference.len() > 100, "{} exchanges", reference.len());
    for (i, log) in net.cell_log.iter().enumerate() {
        let mine = of_last(log);
        // Clients may be apart by the exchanges in flight, no more.
        let apart = mine.len().abs_diff(reference.len());
        assert!(
            apart <= usize::from(net.cfg.window),
            "client {i}: {apart} apart"
        );
        let n = mine.len().min(reference.len());
        assert_eq!(mine[..n], reference[..n], "client {i}");
    }
    // A relay that names another kind than the schedule gives is refused.
    let mut c = lone_client();
    let now = Instant::from_micros(0);
    start_confirmed(&mut c, 9);
    let mut out = vec![0u8; 4096];
    let err = c
        .handle_frame(
            now,
            &request(9, 0, Kind::Slot { slot: 0, len: 64 }),
            &mut out,
        )
        .unwrap_err();
    assert_eq!(
        err,
        PeerError::Request(RequestError::WrongKind { exchange: 0 })
    );
}

#[test]
fn long_and_short_cells_alternate_and_decode_exactly() {
    let mut cfg = NetConfig::new(5, 2, 128);
    cfg.max_cell_len = 4096;
    let mut net = Net::new(cfg);
    net.log_cells = true;
    net.run_until(100_000, |s| s.relay.interval().is_some());
    // A bulk sender and a client sending small messages one at a time.
    let bulk = net.open(0);
    let bulk_data = pattern(0, 200_000);
    net.send_bytes(0, bulk, bulk_data.clone());
    let chat = net.open(3);
    let mut sent = Vec::new();
    for k in 0..20 {
        let msg = pattern(100 + k, 20);
        sent.extend_from_slice(&msg);
        net.send_bytes(3, chat, msg);
        let want = sent.len();
        net.run_until(500_000, |s| {
            s.apps[3].received.get(&chat).map_or(0, Vec::len) == want
        });
    }
    net.run_until(2_000_000, |s| {
        s.apps[0].received.get(&bulk).map_or(0, Vec::len) == 200_000
    });
    assert_eq!(net.exit.upstream[&bulk], bulk_data);
    assert_eq!(net.apps[0].received[&bulk], bulk_data);
    assert_eq!(net.apps[3].received[&chat], sent);
    let lens: std::collections::BTreeSet<usize> =
        net.cell_log[1].iter().map(|&(_, _, l)| l).collect();
    assert!(
        lens.contains(&4096) && lens.contains(&128),
        "lengths seen: {lens:?}"
    );
    assert_eq!(net.exit.garbled, 0);
}

#[test]
fn ten_thousand_clients_run_in_memory() {
    let mut cfg = NetConfig::new(10_000, 2, 128);
    cfg.max_cell_len = 256;
    cfg.max_frame = 4096;
    cfg.ring_len = 2048;
    cfg.replay_len = 1024;
    cfg.window = 4;
    cfg.latency = Duration::from_micros(50);
    let mut net = Net::new(cfg);
    net.run_until(10_000_000, |s| {
        s.relay.interval().map(|(_, n)| n) == Some(10_000)
    });
    let conn = net.open(9_999);
    net.send_bytes(9_999, conn, b"hello from the last client".to_vec());
    net.run_until(10_000_000, |s| s.apps[9_999].received.contains_key(&conn));
    assert_eq!(
        net.apps[9_999].received[&conn],
        b"hello from the last client"
    );
    assert_eq!(net.exit.garbled, 0);
    assert!(net.node_errors.is_empty());
}

/// A client driven by hand-written relay frames (one trustee, two slots).
#[test]
fn a_base_cell_too_short_for_a_sealed_record_is_refused() {
    // Nonce, tag and `Next`, then one record header and one byte of data, and a trap
    // byte for every 16 bytes of the whole.
    let sealed = wire::SLOT_OVERHEAD + wire::NEXT_LEN + wire::RECORD_HEADER_LEN + 1;
    let min = sealed + sealed.div_ceil(15);
    assert_eq!(wire::sealed_len(min), sealed);
    assert_eq!(wire::sealed_len(min - 1), sealed - 1);
    assert_eq!(dissent_core::MIN_CELL_LENGTH, min);
    let trustee_pub = [pad_public_key(&secret(2, 0))];
    for (len, ok) in [(min - 1, false), (min, true)] {
        let cfg = ClientConfig {
            cell_len: len,
            ..lone_config(&trustee_pub)
        };
        let made = Client::with_vecs(&cfg);
        assert_eq!(made.is_ok(), ok, "cell length {len}");
        if !ok {
            assert_eq!(made.err(), Some(ConfigError::CellLength));
            let text = ConfigError::CellLength.to_string();
            assert!(text.contains(&format!("base {min} ..=")), "{text}");
        }
    }
}

fn lone_client() -> Client<Vec<u8>> {
    let trustee_pub = [pad_public_key(&secret(2, 0))];
    Client::with_vecs(&lone_config(&trustee_pub)).unwrap()
}

/// The configuration of [`lone_client`], whose one trustee has key `trustee_pub`.
fn lone_config(trustee_pub: &[[u8; 32]]) -> ClientConfig<'_> {
    ClientConfig {
        index: 0,
        clients: 2,
        group_id: GROUP,
        session_id: SESSION,
        session_secret: secret(1, 0),
        trustee_keys: trustee_pub,
        slot: 0,
        slots: 2,
        cell_len: 128,
        max_frame: 4096,
        max_reserved: 8,
        sent_len: 4096,
        replay_len: 1024,
        min_clients: 1,
        policy: lone_policy(),
        min_anonymity: 0,
        linger: Duration::from_millis(5),
        rng_seed: secret(4, 0),
    }
}

/// The policy of the hand-driven nodes: every client its own buddy group, a window that
/// a 4 KiB log holds.
fn lone_policy() -> Policy {
    Policy {
        min_anonymity: 1,
        log_window: LogWindow {
            time: Duration::from_millis(60_000),
            bytes: NetConfig::window_for_log(4096, 512),
        },
    }
}

fn params() -> Params {
    Params {
        base_len: 128,
        max_len: 1024,
        downstream_len: 512,
        period: 4,
        admit: 4,
        capacity: 2,
    }
}

fn start_body(interval: u32) -> Vec<u8> {
    start_body_lost(interval, &[])
}

/// [`start_body`] with the bitmap of lost members `lost`.
fn start_body_lost(interval: u32, lost: &[u8]) -> Vec<u8> {
    frame_body(&Message::IntervalStart(wire::IntervalStart {
        interval,
        epoch: [1; 16],
        online: &[0b11],
        lost,
        nonces: &[3u8; 16],
        trap: pad_public_key(&[12; 32]),
        window: 3,
        params: params(),
        history: heapless::Vec::new(),
        head: dissent_core::transcript::genesis(&[1; 16]),
        oldest: 1,
        largest: 0,
    }))
}

/// Starts `interval` on a fresh link, confirmed as the (single, honest) trustee would.
fn start_confirmed(c: &mut Client<Vec<u8>>, interval: u32) {
    start_confirmed_with(c, interval, &start_body(interval));
}

/// [`start_confirmed`] with the start `body` of `interval`.
fn start_confirmed_with(c: &mut Client<Vec<u8>>, interval: u32, body: &[u8]) {
    let now = Instant::from_micros(0);
    c.handle_connected(now);
    let mut out = vec![0u8; 4096];
    c.poll_transmit(&mut out).unwrap().unwrap();
    let _ = c.handle_frame(now, body, &mut out).unwrap();
    let view = dissent_core::transcript::Transcript::start(body);
    let pair = dissent_core::crypto::PairKey::agree(
        &secret(2, 0),
        &pad_public_key(&secret(1, 0)),
        false,
        &GROUP,
        &SESSION,
    )
    .unwrap();
    // The client acknowledges the view before anything is confirmed to it.
    let n = c
        .poll_transmit(&mut out)
        .unwrap()
        .expect("an acknowledgement");
    let Ok(Message::Ack { interval: i, macs }) = Message::parse(&out[4..n]) else {
        panic!("the client did not acknowledge the start");
    };
    assert_eq!(i, interval);
    assert!(pair.check_acknowledgement(view.hash(), macs));
    let mac = pair.confirmation(view.hash());
    let _ = c
        .handle_frame(
            now,
            &frame_body(&Message::Confirmed {
                interval,
                macs: &mac,
            }),
            &mut out,
        )
        .unwrap();
}

fn request(interval: u32, exchange: u64, kind: Kind) -> Vec<u8> {
    frame_body(&Message::ClientRequest(wire::ClientRequest {
        interval,
        exchange,
        kind,
        outputs: &[],
        down: wire::Down::None,
    }))
}

fn cell_of(c: &mut Client<Vec<u8>>, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 4096];
    let h = c
        .handle_frame(Instant::from_micros(0), body, &mut out)
        .unwrap();
    out[..h.cell.unwrap()].to_vec()
}

#[test]
fn storage_is_checked_region_by_region_and_longer_regions_serve_alike() {
    // A client: each region one byte short is refused by name.
    let trustee_pub = [pad_public_key(&secret(2, 0))];
    let cfg = lone_config(&trustee_pub);
    let lens = cfg.storage_lens();
    let sized = |short: &str, extra: usize| ClientStorage {
        schedule: vec![0u8; lens.schedule + extra - usize::from(short == "schedule")],
        stage: vec![0u8; lens.stage + extra - usize::from(short == "stage")],
        sent: vec![0u8; lens.sent + extra - usize::from(short == "sent")],
        replay: vec![0u8; lens.replay + extra - usize::from(short == "replay")],
        anonymity: vec![0u8; lens.anonymity + extra - usize::from(short == "anonymity")],
        online: vec![0u8; lens.online + extra - usize::from(short == "online")],
    };
    for region in ["schedule", "stage", "sent", "replay", "anonymity", "online"] {
        assert_eq!(
            Client::new(&cfg, sized(region, 0)).err(),
            Some(ConfigError::StorageTooSmall(region))
        );
    }
    // Longer regions serve as well as exact ones: the same cell, byte for byte.
    let mut exact = Client::new(&cfg, sized("", 0)).unwrap();
    let mut roomy = Client::new(&cfg, sized("", 100)).unwrap();
    start_confirmed(&mut exact, 3);
    start_confirmed(&mut roomy, 3);
    let conn = exact.open().unwrap();
    assert_eq!(roomy.open().unwrap(), conn);
    for c in [&mut exact, &mut roomy] {
        c.prepare(Instant::from_micros(0), &mut NoUpstream);
    }
    let cells: Vec<Vec<u8>> = [&mut exact, &mut roomy]
        .into_iter()
        .map(|c| cell_of(c, &request(3, 0, Kind::Reserve)))
        .collect();
    assert_eq!(cells[0], cells[1]);

    // A trustee and a relay: the same check, by name.
    let client_pubs = [pad_public_key(&secret(1, 0)), pad_public_key(&secret(1, 1))];
    let tcfg = TrusteeConfig {
        index: 0,
        trustees: 1,
        group_id: GROUP,
        session_id: SESSION,
        session_secret: secret(2, 0),
        client_keys: &client_pubs,
        slots: 2,
        cell_len: 128,
        max_reserved: 2,
        max_frame: 4096,
        rng_seed: secret(3, 0),
        min_clients: 1,
        policy: lone_policy(),
    };
    let mut storage = TrusteeStorage::with_vecs(&tcfg);
    storage.online.clear();
    assert_eq!(
        Trustee::new(&tcfg, storage).err(),
        Some(ConfigError::StorageTooSmall("online"))
    );
    assert!(Trustee::new(&tcfg, TrusteeStorage::with_vecs(&tcfg)).is_ok());
    let rcfg = RelayConfig {
        group_id: GROUP,
        session_id: SESSION,
        clients: 2,
        trustees: 1,
        slots: 2,
        cell_len: 128,
        max_cell_len: 1024,
        window: 8,
        downstream_len: 512,
        min_clients: 1,
        idle_gap: Duration::from_millis(1),
        idle_budget: 1 << 20,
        exchange_budget: 1 << 20,
        exchange_timeout: Duration::from_millis(100),
        join_delay: Duration::from_millis(1),
        probe_timeout: Duration::from_millis(100),
        period: 4,
        admit: 2,
        capacity: 2,
        log_len: 4096,
        policy: lone_policy(),
        first_interval: 1,
        epoch: [9; 16],
        stall: StallConfig::DEFAULT,
    };
    let mut storage = RelayStorage::with_vecs(&rcfg);
    storage.log.pop();
    assert_eq!(
        Relay::new(rcfg, storage).err(),
        Some(ConfigError::StorageTooSmall("log"))
    );
    assert!(Relay::new(rcfg, RelayStorage::with_vecs(&rcfg)).is_ok());
}

#[test]
fn a_replayed_interval_never_reuses_a_pad() {
    let now = Instant::from_micros(0);
    let mut c = lone_client();
    start_confirmed(&mut c, 5);
    let first = cell_of(&mut c, &request(5, 0, Kind::Reserve));
    // The same announcement again on this link is refused.
    let mut out = vec![0u8; 4096];
    assert_eq!(
        c.handle_frame(now, &start_body(5), &mut out),
        Err(PeerError::Interval(IntervalError::Stale(5)))
    );
    assert_eq!(
        c.handle_frame(now, &start_body(4), &mut out),
        Err(PeerError::Interval(IntervalError::Stale(4)))
    );
    // On a new link the relay may replay it, but the client's link nonce is fresh. (It
    // answered in interval 5, which the replayed start's history does not hold: its cells
    // there cannot be settled, so it takes the start only if it marks it lost.)
    c.handle_disconnected(now);
    start_confirmed_with(&mut c, 5, &start_body_lost(5, &[0b01]));
    let second = cell_of(&mut c, &request(5, 0, Kind::Reserve));
    assert_eq!(first.len(), second.len());
    assert_ne!(first, second);
}

#[test]
fn a_client_refuses_requests_out_of_order_and_garbage() {
    let now = Instant::from_micros(0);
    let mut c = lone_client();
    start_confirmed(&mut c, 1);
    let mut out = vec![0u8; 4096];
    assert!(c
        .handle_frame(now, &request(1, 0, Kind::Reserve), &mut out)
        .is_ok());
    assert!(matches!(
        c.handle_frame(now, &request(1, 5, Kind::Reserve), &mut out),
        Err(PeerError::Request(RequestError::OutOfOrder { .. }))
    ));
    assert!(matches!(
        c.handle_frame(now, &request(2, 1, Kind::Reserve), &mut out),
        Err(PeerError::Request(RequestError::WrongInterval { .. }))
    ));
    // Garbage is an error, never a panic.
    for junk in [&[][..], &[0xFF][..], &[12, 1, 1][..], &[7, 1, 200, 1][..]] {
        assert!(c.handle_frame(now, junk, &mut out).is_err());
    }
    let _ = NoUpstream;
}

/// Random and mutated frames thrown at every role: errors are fine, panics are not.
#[test]
fn random_frames_never_panic() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut net = Net::new(NetConfig::new(3, 2, 128));
    net.run_until(100_000, |s| s.relay.interval().is_some());
    // Valid frames to mutate, taken from the live exchange.
    let mut samples: Vec<Vec<u8>> = Vec::new();
    for node in [Node::Client(0), Node::Client(1), Node::Trustee(0)] {
        for (_, body) in net.in_flight(node) {
            samples.push(body);
        }
    }
    samples.push(start_body(7));
    samples.push(request(7, 0, Kind::Reserve));
    let now = net.now;
    let mut client = lone_client();
    client.handle_connected(now);
    let mut out = vec![0u8; 70_000];
    let links: Vec<_> = [
        Node::Client(0),
        Node::Client(1),
        Node::Client(2),
        Node::Trustee(0),
        Node::Trustee(1),
    ]
    .iter()
    .filter_map(|&n| net.link_of(n).map(|l| (n, l)))
    .collect();
    for round in 0..20_000 {
        let mut body = if round % 2 == 0 && !samples.is_empty() {
            samples[(rand() as usize) % samples.len()].clone()
        } else {
            (0..(rand() % 80) as usize).map(|_| rand() as u8).collect()
        };
        if !body.is_empty() {
            for _ in 0..(rand() % 4) {
                let i = (rand() as usize) % body.len();
                body[i] ^= 1 << (rand() % 8);
            }
        }
        let (node, link) = links[(rand() as usize) % links.len()];
        let _ = net.relay.handle_frame(now, link, node.peer(), &body);
        while net.relay.poll_event(now).is_some() {}
        while let Ok(Some(_)) = net.relay.poll_transmit(now, &mut out, &mut net.exit) {}
        let _ = net.trustees[0].handle_frame(now, &body);
        while let Ok(Some(_)) = net.trustees[0].poll_transmit(&mut out) {}
        let _ = client.handle_frame(now, &body, &mut out);
        while let Ok(Some(_)) = client.poll_transmit(&mut out) {}
        client.prepare(now, &mut NoUpstream);
        let _ = wire::CellView::parse(&body);
        let _ = wire::OutputsView::parse(&body, 30);
    }
}

#[test]
fn a_trustee_refuses_an_interval_below_its_anonymity_minimum() {
    let mut cfg = NetConfig::new(3, 1, 128);
    cfg.min_clients = 2;
    let mut net = Net::unconnected(cfg);
    net.connect(Node::Trustee(0));
    net.connect(Node::Client(1));
    net.run_steps(200);
    // The relay (minimum 2) waits; a relay that isolates one client gets no pads for it.
    assert_eq!(net.relay.interval(), None);
    let now = net.now;
    let mut out = vec![0u8; 4096];
    let open = frame_body(&Message::IntervalOpen {
        interval: 9,
        online: &[0b010],
    });
    assert_eq!(
        net.trustees[0].handle_frame(now, &open),
        Err(PeerError::Interval(IntervalError::TooFewClients {
            online: 1,
            min: 2
        }))
    );
    let _ = net.trustees[0].poll_transmit(&mut out);
    assert_eq!(net.trustees[0].interval(), None);
    net.connect(Node::Client(2));
    net.run_until(100_000, |s| s.relay.interval().is_some());
    assert_eq!(net.relay.interval().unwrap().1, 2);
}

#[test]
fn a_small_sent_cell_ring_loses_no_connection_behind_a_bulk_sender() {
    // A device client's sizes: 4 KiB frames, an 8 KiB ring of sent cells, 16 exchanges in
    // flight. Bytes staged while the ring had room must wait when it fills, not be sent
    // without room to keep them (which ended their connection).
    let mut cfg = NetConfig::new(3, 2, 1024);
    cfg.max_cell_len = 32 * 1024;
    cfg.max_frame = 4096;
    cfg.ring_len = 8 * 1024;
    cfg.replay_len = 4 * 1024;
    cfg.window = 16;
    let mut net = Net::new(cfg);
    net.run_until(100_000, |s| s.relay.interval().is_some());
    for (i, len) in [(0, 64 * 1024), (2, 16 * 1024), (2, 16 * 1024)] {
        let conn = net.open(i);
        let data = pattern(i + len, len);
        net.send_bytes(i, conn, data.clone());
        net.run_until(2_000_000, |s| {
            s.apps[i].received.get(&conn).map_or(0, Vec::len) == len || !s.apps[i].lost.is_empty()
        });
        assert!(
            net.apps[i].lost.is_empty(),
            "client {i} lost {:?}",
            net.apps[i].lost
        );
        assert_eq!(net.apps[i].received[&conn], data, "client {i}");
    }
    assert_eq!(net.exit.garbled, 0);
    assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
}

/// Opens one connection at each of `clients` with `len` bytes queued.
fn load_some(net: &mut Net, clients: &[usize], len: usize) -> BTreeMap<ConnId, Vec<u8>> {
    let mut expect = BTreeMap::new();
    for &i in clients {
        let conn = net.open(i);
        let data = pattern(i, len);
        net.send_bytes(i, conn, data.clone());
        expect.insert(conn, data);
    }
    expect
}

#[test]
fn a_client_the_trustees_refuse_is_dropped_and_the_rest_run() {
    let cfg = NetConfig::new(3, 2, 128);
    let mut net = Net::unconnected(cfg);
    // Client 1 runs with a key the group does not know: its proofs and acknowledgements do
    // not check at any trustee.
    net.rekey_client(1, secret(7, 1));
    net.connect_all();
    let expect = load_some(&mut net, &[0, 2], 3000);
    net.run_until(1_000_000, |s| echoed_everything(s, &expect));
    assert_eq!(net.exit.upstream, expect);
    assert_eq!(net.dropped, [PeerId::Client(1)]);
    let said: Vec<&String> = net
        .node_errors
        .iter()
        .filter(|(n, _)| *n == Node::Client(1))
        .map(|(_, e)| e)
        .collect();
    assert_eq!(said.len(), 1);
    assert!(said[0].contains("a trustee refused"), "{said:?}");
    // The trustees kept their links: only the refused client went.
    assert!((0..cfg.trustees).all(|j| net.is_up(Node::Trustee(j))));
    assert!(net.node_errors.iter().all(|(n, _)| *n == Node::Client(1)));
}

#[test]
fn a_client_that_never_acknowledges_is_dropped_and_the_rest_run() {
    let cfg = NetConfig::new(3, 2, 128);
    let mut net = Net::unconnected(cfg);
    // Client 0 says hello, then ignores everything: it never acknowledges a start.
    net.muted[0] = true;
    net.connect_all();
    let expect = load_some(&mut net, &[1, 2], 3000);
    net.run_until(1_000_000, |s| echoed_everything(s, &expect));
    assert_eq!(net.exit.upstream, expect);
    assert_eq!(net.dropped, [PeerId::Client(0)]);
    assert!((0..cfg.trustees).all(|j| net.is_up(Node::Trustee(j))));
}

#[test]
fn a_conversation_turn_goes_into_the_next_exchange_not_behind_a_window() {
    let mut cfg = NetConfig::new(4, 2, 128);
    cfg.window = 16;
    let mut net = Net::new(cfg);
    let conn = net.open(0);
    let mut said = Vec::new();
    let mut waits = Vec::new();
    for turn in 0..8u8 {
        let msg = vec![b'a' + turn; 20];
        said.extend_from_slice(&msg);
        let before = net.relay.exchanges_decoded();
        net.send_bytes(0, conn, msg);
        net.run_until(100_000, |s| s.exit.upstream.get(&conn) == Some(&said));
        waits.push(net.relay.exchanges_decoded() - before);
        // The echo comes back before the next turn, as in a request and its answer.
        net.run_until(100_000, |s| s.apps[0].received.get(&conn) == Some(&said));
    }
    // The first turn waits for a reservation; every later one goes out while the slot is
    // still reserved, in the next exchange or the one after (a reservation exchange may
    // come first), not behind a window of 16 exchanges issued before it was written.
    assert!(
        waits[1..].iter().all(|&w| w <= 3),
        "exchanges per turn: {waits:?}"
    );
}

#[test]
fn long_cells_are_shortened_to_the_exchange_budget_in_a_large_group() {
    let mut cfg = NetConfig::new(8, 1, 128);
    cfg.max_cell_len = 4096;
    // Nine cells per exchange: at most 512 bytes each.
    cfg.exchange_budget = 9 * 512;
    let mut net = Net::new(cfg);
    net.log_cells = true;
    let conn = net.open(0);
    let data = pattern(0, 20_000);
    net.send_bytes(0, conn, data.clone());
    net.run_until(1_000_000, |s| s.exit.upstream.get(&conn) == Some(&data));
    let longest = net.cell_log[0].iter().map(|&(_, _, len)| len).max();
    assert_eq!(longest, Some(512));
}

/// Client `i` opens a connection and queues `len` bytes on it.
fn start_transfer(net: &mut Net, i: usize, len: usize) -> (ConnId, Vec<u8>) {
    let conn = net.open(i);
    let data = pattern(1000 + i, len);
    net.send_bytes(i, conn, data.clone());
    (conn, data)
}

fn exit_got(net: &Net, conn: ConnId) -> usize {
    net.exit.upstream.get(&conn).map_or(0, Vec::len)
}

#[test]
fn a_link_cut_again_while_resending_keeps_byte_order() {
    // Cells a cut abandoned are sent again first; a second cut while they are on their way
    // must not put the ones still waiting ahead of those already sent again.
    for gap in 0..24 {
        let mut cfg = NetConfig::new(3, 2, 256);
        cfg.window = 8;
        // Nine joins in a moment would be a penalty; this is about the resends.
        cfg.stall.rejoins = u8::MAX;
        let mut net = Net::new(cfg);
        let (conn, data) = start_transfer(&mut net, 0, 60_000);
        net.run_until(400_000, |s| exit_got(s, conn) > 4000);
        for _ in 0..8 {
            net.disconnect(Node::Client(0));
            net.run_steps(50);
            net.connect(Node::Client(0));
            // Back in and sending again: cut it `gap` steps later.
            let before = exit_got(&net, conn);
            net.run_until(400_000, |s| exit_got(s, conn) > before);
            net.run_steps(gap);
        }
        net.run_until(4_000_000, |s| {
            s.apps[0].received.get(&conn).map_or(0, Vec::len) == data.len()
        });
        let got = &net.exit.upstream[&conn];
        let at = got.iter().zip(&data).position(|(a, b)| a != b);
        assert_eq!(at, None, "gap {gap}: exit's bytes differ");
        assert_eq!(got.len(), data.len(), "gap {gap}");
        assert_eq!(net.apps[0].received[&conn], data, "gap {gap}");
        assert!(
            net.apps[0].lost.is_empty(),
            "gap {gap}: {:?}",
            net.apps[0].lost
        );
    }
}

#[test]
fn a_client_away_longer_than_the_history_loses_its_connection_without_a_hole() {
    let mut cfg = NetConfig::new(3, 2, 256);
    // A silent link admitted again and again is backed off; here it must come straight back.
    cfg.stall.backoff_initial = Duration::default();
    cfg.stall.rejoins = u8::MAX;
    let mut net = Net::new(cfg);
    let (conn, data) = start_transfer(&mut net, 0, 60_000);
    net.run_until(400_000, |s| exit_got(s, conn) > 4000);
    // Client 0 drops out with cells in flight; while it is away (back only as a silent
    // link the relay admits and then drops) more intervals pass than the relay remembers.
    net.disconnect(Node::Client(0));
    let left_in = *net.intervals.last().unwrap();
    net.muted[0] = true;
    for _ in 0..2 * wire::MAX_HISTORY {
        net.connect(Node::Client(0));
        net.run_until(1_000_000, |s| !s.is_up(Node::Client(0)));
    }
    assert!(*net.intervals.last().unwrap() > left_in + wire::MAX_HISTORY as u32);
    net.muted[0] = false;
    net.connect(Node::Client(0));
    net.run_until(1_000_000, |s| s.apps[0].lost.contains(&conn));
    net.run_steps(20_000);
    // The exit has a prefix of the bytes: what could not be sent again is not skipped
    // over by what came after it.
    let got = &net.exit.upstream[&conn];
    assert!(got.len() < data.len());
    let hole = got.iter().zip(&data).position(|(a, b)| a != b);
    assert_eq!(hole, None, "of {} bytes", got.len());
    // The client is back and works.
    let (again, more) = start_transfer(&mut net, 0, 3000);
    net.run_until(1_000_000, |s| s.apps[0].received.get(&again) == Some(&more));
}

#[test]
fn a_garbled_exchange_is_sent_again_and_every_byte_arrives_in_order() {
    let mut net = Net::new(NetConfig::new(3, 2, 256));
    let (conn, data) = start_transfer(&mut net, 0, 60_000);
    net.run_until(400_000, |s| exit_got(s, conn) > 4000);
    let intervals = net.intervals.len();
    // Client 1 disrupts one data exchange (almost surely one of the lone sender's).
    net.disrupt = Some(1);
    net.run_until(400_000, |s| s.exit.garbled > 0);
    net.run_until(4_000_000, |s| {
        s.apps[0].received.get(&conn).map_or(0, Vec::len) == data.len()
    });
    assert_eq!(net.exit.garbled, 1);
    // The interval went on past the disrupted exchange; nobody was dropped for it.
    assert_eq!(net.intervals.len(), intervals);
    assert!(net.dropped.is_empty(), "{:?}", net.dropped);
    let got = &net.exit.upstream[&conn];
    let at = got.iter().zip(&data).position(|(a, b)| a != b);
    assert_eq!(at, None, "exit's bytes differ");
    assert_eq!(got.len(), data.len());
    assert_eq!(net.apps[0].received[&conn], data);
    assert!(net.apps[0].lost.is_empty(), "{:?}", net.apps[0].lost);
}

#[test]
fn a_client_away_longer_than_the_log_loses_its_connections_quietly_and_goes_on() {
    let mut cfg = NetConfig::new(3, 2, 256);
    cfg.log_len = 4096;
    cfg.downstream_len = 1024;
    cfg.policy.log_window.bytes = NetConfig::window_for_log(4096, cfg.downstream_len);
    let mut net = Net::new(cfg);
    let (conn, data) = start_transfer(&mut net, 0, 500);
    net.run_until(400_000, |s| s.apps[0].received.get(&conn) == Some(&data));
    // While client 0 is away, more downstream bytes pass than the relay's log holds.
    net.disconnect(Node::Client(0));
    let (other, more) = start_transfer(&mut net, 1, 20_000);
    net.run_until(2_000_000, |s| s.apps[1].received.get(&other) == Some(&more));
    net.connect(Node::Client(0));
    net.run_until(400_000, |s| s.apps[0].lost.contains(&conn));
    // Nothing more arrived on the lost connection, and nothing went wrong anywhere.
    assert_eq!(net.apps[0].received[&conn], data);
    assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
    assert!(net.relay_errors.is_empty(), "{:?}", net.relay_errors);
    assert!(net.apps[1].lost.is_empty());
    // The client is back and works.
    let (again, fresh) = start_transfer(&mut net, 0, 3000);
    net.run_until(1_000_000, |s| {
        s.apps[0].received.get(&again) == Some(&fresh)
    });
    assert_eq!(net.exit.upstream[&again], fresh);
}

#[test]
fn a_relay_that_shuts_down_tells_every_node_and_sends_nothing_else() {
    let mut net = Net::new(NetConfig::new(5, 3, 128));
    net.run_until(100_000, |s| s.relay.interval().is_some());
    net.relay.shutdown();
    net.flush_relay();
    net.run_steps(1000);
    let nodes: Vec<Node> = (0..5)
        .map(Node::Client)
        .chain((0..3).map(Node::Trustee))
        .collect();
    for node in nodes {
        assert!(!net.is_up(node), "{node:?} still linked");
        let told = net
            .node_errors
            .iter()
            .filter(|(n, e)| *n == node && e.contains("shutting down"))
            .count();
        assert_eq!(told, 1, "{node:?}: {:?}", net.node_errors);
    }
}

#[test]
fn a_client_resumes_from_a_log_that_has_wrapped() {
    let mut cfg = NetConfig::new(3, 2, 256);
    cfg.log_len = 8192;
    cfg.downstream_len = 1024;
    cfg.policy.log_window.bytes = NetConfig::window_for_log(8192, cfg.downstream_len);
    let mut net = Net::new(cfg);
    let (conn, data) = start_transfer(&mut net, 0, 500);
    net.run_until(400_000, |s| s.apps[0].received.get(&conn) == Some(&data));
    // Enough downstream to wrap the relay's log several times.
    let (bulk, bulk_data) = start_transfer(&mut net, 1, 40_000);
    net.run_until(2_000_000, |s| {
        s.apps[1].received.get(&bulk) == Some(&bulk_data)
    });
    // Client 0 misses a little, which the wrapped log still holds.
    net.disconnect(Node::Client(0));
    let (more, more_data) = start_transfer(&mut net, 1, 1500);
    net.run_until(400_000, |s| {
        s.apps[1].received.get(&more) == Some(&more_data)
    });
    net.connect(Node::Client(0));
    let (after, after_data) = start_transfer(&mut net, 0, 700);
    net.run_until(1_000_000, |s| {
        s.apps[0].received.get(&after) == Some(&after_data)
    });
    // It resumed: nothing lost, no equivocation, its first connection still open.
    assert!(net.apps[0].lost.is_empty(), "{:?}", net.apps[0].lost);
    assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
    assert!(net.clients[0].is_open(conn));
}

#[test]
fn the_same_net_runs_the_same_way_twice() {
    // Step by step: the clock, the exchanges decoded and the bytes at the exit, through a
    // link cut while frames are in flight on it and a client that reads nothing for a while.
    let run = || {
        let mut net = Net::new(NetConfig::new(4, 2, 128));
        load(&mut net, 3000);
        let mut trace = Vec::new();
        for k in 0..20_000 {
            match k {
                2_000 => net.disconnect(Node::Client(1)),
                2_500 => net.connect(Node::Client(1)),
                4_000 => net.muted[2] = true,
                6_000 => net.muted[2] = false,
                _ => {}
            }
            if !net.step() {
                break;
            }
            let upstream: usize = net.exit.upstream.values().map(Vec::len).sum();
            trace.push((net.now, net.relay.exchanges_decoded(), upstream));
        }
        (trace, net.exit.upstream.clone(), net.intervals.clone())
    };
    let (first, second) = (run(), run());
    assert!(first.0.len() > 5_000, "the net stopped early");
    assert_eq!(first, second);
}

#[test]
fn a_small_sent_cell_ring_survives_trustee_restarts_mid_transfer() {
    // A trustee restart ends the interval: every cell in flight is sent again. With a ring
    // a few cells long (a device's), those cells once filled it, left no room to send any
    // of them, and the client stalled for good without reporting anything. It must slow
    // down instead, and every byte must arrive once, in order.
    let cases = [
        (128, 384),
        (128, 1024),
        (128, 8 * 1024),
        (1024, 2048),
        (1024, 8 * 1024),
    ];
    for (cell_len, ring_len) in cases {
        for wait in [0, 2, 5, 9, 17, 40] {
            let what = format!("cell {cell_len}, ring {ring_len}, restart after {wait} steps");
            let mut cfg = NetConfig::new(3, 2, cell_len);
            cfg.max_cell_len = 32 * 1024;
            cfg.max_frame = 4096;
            cfg.ring_len = ring_len;
            cfg.replay_len = 4 * 1024;
            cfg.window = 16;
            let mut net = Net::new(cfg);
            net.run_until(100_000, |s| s.relay.interval().is_some());
            let (conn, data) = start_transfer(&mut net, 0, 48 * 1024);
            for restart in 0..2 {
                let before = exit_got(&net, conn);
                net.run_until(400_000, |s| exit_got(s, conn) > before + 2000);
                net.run_steps(wait);
                net.disconnect(Node::Trustee(restart));
                net.run_steps(30);
                net.connect(Node::Trustee(restart));
            }
            net.run_until(2_000_000, |s| {
                s.apps[0].received.get(&conn).map_or(0, Vec::len) == data.len()
                    || !s.apps[0].lost.is_empty()
            });
            assert!(net.apps[0].lost.is_empty(), "{what}: lost");
            let got = &net.exit.upstream[&conn];
            let at = got.iter().zip(&data).position(|(a, b)| a != b);
            assert_eq!(at, None, "{what}: the exit's bytes differ");
            assert_eq!(got.len(), data.len(), "{what}");
            assert_eq!(net.apps[0].received[&conn], data, "{what}");
            assert_eq!(net.exit.garbled, 0, "{what}");
            assert!(net.node_errors.is_empty(), "{what}: {:?}", net.node_errors);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Buddy groups, the log window and replays that lose nothing

/// A net whose clients each hold one open connection the exit has seen; returns them.
fn with_connections(net: &mut Net) -> Vec<ConnId> {
    let n = net.clients.len();
    let conns: Vec<ConnId> = (0..n).map(|i| net.open(i)).collect();
    for (i, &c) in conns.iter().enumerate() {
        net.send_bytes(i, c, pattern(i, 100));
    }
    // Sent and echoed back whole.
    net.run_until(400_000, |s| {
        conns.iter().enumerate().all(|(i, c)| {
            s.exit.upstream.get(c).map(Vec::len) == Some(100)
                && s.apps[i].received.get(c).map(Vec::len) == Some(100)
        })
    });
    conns
}

/// Queues `len` downstream bytes for `conn` at the exit, as replies from its destination.
fn reply(net: &mut Net, conn: ConnId, seed: usize, len: usize) -> Vec<u8> {
    let data = pattern(seed, len);
    net.exit.replies.push_back((conn, Some(data.clone())));
    data
}

#[test]
fn an_owner_sends_only_while_its_whole_buddy_group_is_online() {
    let mut cfg = NetConfig::new(4, 2, 128);
    cfg.policy.min_anonymity = 2;
    let mut net = Net::new(cfg);
    let conns = with_connections(&mut net);
    // Client 1, client 0's buddy, goes away: client 0's bytes wait, intervals go on.
    net.disconnect(Node::Client(1));
    let data = pattern(7, 500);
    net.send_bytes(0, conns[0], data.clone());
    net.run_steps(20_000);
    assert_eq!(
        net.exit.upstream[&conns[0]].len(),
        100,
        "sent without its buddy"
    );
    assert_eq!(net.clients[0].may_send(), Some(false));
    // Clients of the other buddy group are not held back.
    net.send_bytes(2, conns[2], pattern(8, 300));
    net.run_until(400_000, |s| s.exit.upstream[&conns[2]].len() == 400);
    // Its buddy is back: the bytes go, in order.
    net.connect(Node::Client(1));
    net.run_until(400_000, |s| s.exit.upstream[&conns[0]].len() == 600);
    assert_eq!(&net.exit.upstream[&conns[0]][100..], &data[..]);
    assert!(net.clients[0].anonymity_set() >= 2);
    assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
}

#[test]
fn a_loss_is_shared_by_the_buddy_group_and_no_one_else() {
    let mut cfg = NetConfig::new(4, 2, 128);
    cfg.policy.min_anonymity = 2;
    cfg.log_len = 16 * 1024;
    cfg.downstream_len = 1024;
    cfg.policy.log_window.bytes = NetConfig::window_for_log(16 * 1024, 1024);
    let mut net = Net::new(cfg);
    let conns = with_connections(&mut net);
    // While client 0 is away, more passes downstream than the log window.
    net.disconnect(Node::Client(0));
    let more = reply(&mut net, conns[2], 9, 40_000);
    net.run_until(2_000_000, |s| {
        s.apps[2].received.get(&conns[2]).map(Vec::len) == Some(100 + more.len())
    });
    net.connect(Node::Client(0));
    net.run_until(400_000, |s| {
        s.apps[0].lost.contains(&conns[0]) && s.apps[1].lost.contains(&conns[1])
    });
    // Client 1 lost its connection with its buddy; the other group kept theirs.
    assert!(net.apps[2].lost.is_empty() && net.apps[3].lost.is_empty());
    assert!(net.clients[2].is_open(conns[2]) && net.clients[3].is_open(conns[3]));
    assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
    assert!(net.relay_errors.is_empty(), "{:?}", net.relay_errors);
    // Both are back and work.
    let (again, fresh) = start_transfer(&mut net, 1, 700);
    net.run_until(1_000_000, |s| s.exit.upstream.get(&again) == Some(&fresh));
}

/// Client 0 misses `len` bytes of its own connection's replies while away, then comes
/// back; `cut(net, replays_seen)` may cut it again while they are replayed. Returns the net
/// once every byte arrived.
fn replayed_after_away(
    cfg: NetConfig,
    len: usize,
    mut cut: impl FnMut(&mut Net, usize) -> bool,
) -> Net {
    let mut net = Net::new(cfg);
    let conns = with_connections(&mut net);
    let conn = conns[0];
    net.disconnect(Node::Client(0));
    let mut expect = net.apps[0].received[&conn].clone();
    expect.extend(reply(&mut net, conn, 11, len));
    net.run_until(1_000_000, |s| s.exit.replies.is_empty());
    // Enough exchanges that every record is in the log.
    net.run_steps(2000);
    net.connect(Node::Client(0));
    let start = net.replays;
    let mut steps = 0;
    while net.apps[0].received[&conn].len() < expect.len() {
        steps += 1;
        assert!(steps < 2_000_000, "the replayed bytes never all arrived");
        let seen = net.replays - start;
        if net.is_up(Node::Client(0)) && cut(&mut net, seen) {
            net.disconnect(Node::Client(0));
            net.run_steps(20);
            net.connect(Node::Client(0));
        }
        assert!(net.step(), "stalled: {:?}", net.node_errors);
    }
    assert_eq!(
        net.apps[0].received[&conn], expect,
        "bytes lost or out of order"
    );
    assert!(net.apps[0].lost.is_empty(), "{:?}", net.apps[0].lost);
    assert!(net.clients[0].is_open(conn));
    net
}

#[test]
fn a_link_cut_during_replays_loses_no_byte() {
    for at in [1usize, 3, 7] {
        let mut cfg = NetConfig::new(3, 2, 128);
        cfg.downstream_len = 1024;
        let mut cuts = 0;
        let net = replayed_after_away(cfg, 20_000, |_, seen| {
            // Cut after `at` replay frames went out, twice.
            if seen >= at && cuts < 2 {
                cuts += 1;
                return true;
            }
            false
        });
        assert_eq!(cuts, 2, "the replay was never cut");
        assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
    }
}

#[test]
fn replays_wait_for_room_instead_of_overflowing_the_queue() {
    // A hosted relay's queue, a little more than the frames of a full window of exchanges:
    // without pacing, a replay of twenty records overflows it and the member is dropped as
    // too slow.
    let mut cfg = NetConfig::new(3, 2, 128);
    cfg.downstream_len = 1024;
    cfg.queue_limit = Some(2 * usize::from(cfg.window) + 4);
    let net = replayed_after_away(cfg, 20_000, |_, _| false);
    assert!(net.too_slow.is_empty(), "{:?}", net.too_slow);
    assert!(net.replays >= 20, "{} replays", net.replays);
}

#[test]
fn a_member_dropped_mid_replay_asks_again_and_loses_no_byte() {
    let mut cfg = NetConfig::new(3, 2, 128);
    cfg.downstream_len = 1024;
    let mut dropped = false;
    let net = replayed_after_away(cfg, 20_000, |net, seen| {
        if seen >= 5 && !dropped {
            dropped = true;
            // The relay's shell gives up on the member (its queue, say).
            let now = net.now;
            net.relay
                .drop_peer(now, PeerId::Client(0), wire::GoodbyeReason::TooSlow);
            net.flush_relay();
        }
        false
    });
    assert!(dropped, "the replay was never interrupted");
    assert!(net.dropped.contains(&PeerId::Client(0)));
}

#[test]
fn a_gap_beyond_the_members_capacity_is_a_loss_the_start_shows() {
    // The replay limit is the relay's rule: a gap larger than what the member said it can
    // hold is a loss, marked in the start, and the member agrees.
    let mut cfg = NetConfig::new(3, 2, 128);
    cfg.downstream_len = 1024;
    cfg.replay_len = 4096;
    let mut net = Net::new(cfg);
    let conns = with_connections(&mut net);
    net.disconnect(Node::Client(0));
    reply(&mut net, conns[0], 12, 10_000);
    net.run_until(1_000_000, |s| s.exit.replies.is_empty());
    net.run_steps(2000);
    net.connect(Node::Client(0));
    net.run_until(400_000, |s| s.apps[0].lost.contains(&conns[0]));
    assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
    assert!(net.apps[1].lost.is_empty() && net.apps[2].lost.is_empty());
}

#[test]
fn an_abort_drops_the_connection_at_the_exit_and_nothing_more_is_delivered() {
    let mut net = Net::new(NetConfig::new(3, 2, 256));
    net.exit.echo = false;
    let conn = net.open(1);
    net.send_bytes(1, conn, b"GET /forever".to_vec());
    net.run_until(100_000, |s| exit_got(s, conn) == 12);
    // A destination that sends forever: far more than gets through before the abort.
    reply(&mut net, conn, 7, 1_000_000);
    net.run_until(400_000, |s| {
        s.apps[1].received.get(&conn).map_or(0, Vec::len) > 2000
    });
    net.abort(1, conn);
    // The client forgets the connection at once, and the exit drops it with the next cells.
    assert!(!net.clients[1].is_open(conn));
    net.run_until(100_000, |s| s.exit.aborted.contains(&conn));
    assert!(
        net.exit.replies.is_empty(),
        "the exit discards what it queued"
    );
    let got = net.apps[1].received[&conn].len();
    net.run_steps(2000);
    // Nothing more reached the application; a half-close was never sent in its place.
    assert_eq!(net.apps[1].received[&conn].len(), got);
    assert!(!net.exit.closed.contains(&conn));
    assert_eq!(net.exit.aborted, vec![conn]);
    assert!(net.apps[1].closed.is_empty() && net.apps[1].lost.is_empty());
    // A connection never announced is forgotten without a record.
    let quiet = net.clients[2].open().unwrap();
    net.abort(2, quiet);
    assert!(!net.clients[2].is_open(quiet));
    net.run_steps(500);
    assert!(!net.exit.aborted.contains(&quiet) && !net.exit.opened.contains_key(&quiet));
    assert_eq!(net.exit.garbled, 0);
}

#[test]
fn aborts_reach_the_exit_exactly_once_across_link_cuts() {
    // The abort is sent again with its cell when a cut abandons it, like any record, though
    // the client already forgot the connection; bytes of other connections stay exact.
    for seed in 0..12usize {
        let mut cfg = NetConfig::new(3, 2, 128);
        cfg.window = 4;
        let mut net = Net::new(cfg);
        net.exit.echo = false;
        let (keep, data) = start_transfer(&mut net, 0, 20_000);
        let gone = net.open(0);
        net.send_bytes(0, gone, pattern(seed, 300));
        net.run_until(400_000, |s| exit_got(s, gone) > 0);
        reply(&mut net, gone, seed, 50_000);
        net.abort(0, gone);
        net.run_steps(seed * 3);
        net.disconnect(Node::Client(0));
        net.run_steps(40 + seed * 7);
        net.connect(Node::Client(0));
        net.run_until(4_000_000, |s| {
            exit_got(s, keep) == data.len() && s.exit.aborted.contains(&gone)
        });
        assert_eq!(net.exit.upstream[&keep], data, "seed {seed}");
        // The aborted connection's bytes arrive in order, uncorrupted; those of cells a cut
        // abandoned after the abort are not sent again (the client forgot the connection),
        // so they may stop short.
        let got = &net.exit.upstream[&gone];
        assert!(!got.is_empty(), "seed {seed}");
        assert_eq!(got[..], pattern(seed, 300)[..got.len()], "seed {seed}");
        net.run_steps(500);
        assert_eq!(
            net.exit.aborted.iter().filter(|&&c| c == gone).count(),
            1,
            "seed {seed}"
        );
        assert_eq!(net.exit.opened[&gone], 1, "seed {seed}");
        assert!(net.apps[0].lost.is_empty(), "seed {seed}");
        assert!(!net.clients[0].is_open(gone));
    }
}

#[test]
fn a_reader_that_stops_costs_at_most_the_window_and_a_fast_one_gets_every_byte() {
    use dissent_core::credit::{DOWN_WINDOW, EXIT_CREDIT_CAP};
    for seed in 0..6usize {
        let mut cfg = NetConfig::new(3, 2, 256);
        cfg.window = 4;
        // Room to replay everything a cut client misses (a loss would end the test's
        // connections).
        cfg.replay_len = 4 << 20;
        cfg.log_len = 8 << 20;
        let mut net = Net::new(cfg);
        net.exit.echo = false;
        let stalled = net.open(1);
        let fast = net.open(2);
        net.send_bytes(1, stalled, b"GET".to_vec());
        net.send_bytes(2, fast, b"GET".to_vec());
        net.run_until(400_000, |s| {
            exit_got(s, stalled) == 3 && exit_got(s, fast) == 3
        });
        // The stalled application reads nothing; the destination has far more for it.
        net.apps[1].stalled = true;
        reply(&mut net, stalled, seed, 4 * DOWN_WINDOW as usize);
        let want = reply(&mut net, fast, 100 + seed, 3 * DOWN_WINDOW as usize);
        if seed % 2 == 1 {
            net.run_steps(300 * seed);
            net.disconnect(Node::Client(2));
            net.run_steps(100);
            net.connect(Node::Client(2));
        }
        net.run_until(4_000_000, |s| {
            s.apps[2].received.get(&fast).map_or(0, Vec::len) == want.len()
        });
        net.run_steps(3000);
        // The exit sent the stalled connection its window, not a byte more.
        let got = net.apps[1].received.get(&stalled).map_or(0, Vec::len);
        assert_eq!(got, DOWN_WINDOW as usize, "seed {seed}");
        assert_eq!(net.apps[2].received[&fast], want, "seed {seed}");
        // The reader comes back: the rest arrives, byte-exact.
        net.apps[1].stalled = false;
        net.clients[1].prepare(net.now, &mut net.apps[1]);
        net.run_until(4_000_000, |s| {
            s.apps[1].received.get(&stalled).map_or(0, Vec::len) == 4 * DOWN_WINDOW as usize
        });
        assert_eq!(
            net.apps[1].received[&stalled],
            pattern(seed, 4 * DOWN_WINDOW as usize),
            "seed {seed}"
        );
        assert!(net.exit.most_credit <= EXIT_CREDIT_CAP);
        assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
    }
}

#[test]
fn an_owner_that_grants_absurd_credit_is_held_to_the_exits_cap() {
    use dissent_core::credit::{DOWN_WINDOW, EXIT_CREDIT_CAP};
    let mut net = Net::new(NetConfig::new(2, 1, 256));
    net.exit.echo = false;
    let conn = net.open(0);
    net.send_bytes(0, conn, b"GET".to_vec());
    net.run_until(400_000, |s| exit_got(s, conn) == 3);
    // Every report of bytes taken grants 4 GiB more than it took.
    net.apps[0].inflate = u32::MAX;
    reply(&mut net, conn, 5, 2 * DOWN_WINDOW as usize);
    net.run_until(4_000_000, |s| {
        s.apps[0].received.get(&conn).map_or(0, Vec::len) == 2 * DOWN_WINDOW as usize
    });
    net.run_steps(500);
    assert_eq!(net.exit.most_credit, EXIT_CREDIT_CAP);
    assert!(net.exit.credit[&conn].available() <= EXIT_CREDIT_CAP);
}

#[test]
fn a_destination_that_stops_reading_stops_its_owner_at_the_window_and_every_byte_arrives() {
    use dissent_core::credit::UP_WINDOW;
    let window = UP_WINDOW as usize;
    for seed in 0..6usize {
        let mut cfg = NetConfig::new(3, 2, 256);
        cfg.window = 4;
        // Room to replay everything a cut client misses.
        cfg.replay_len = 4 << 20;
        cfg.log_len = 8 << 20;
        let mut net = Net::new(cfg);
        net.exit.echo = false;
        let slow = net.open(1);
        let other = net.open(2);
        net.exit.destination_stalled.push(slow);
        let data = pattern(seed, 3 * window + 1000 * seed + 7);
        let others = pattern(100 + seed, 2 * window);
        net.send_bytes(1, slow, data.clone());
        net.send_bytes(2, other, others.clone());
        net.run_until(4_000_000, |s| {
            exit_got(s, slow) == window && exit_got(s, other) == others.len()
        });
        net.run_steps(3000);
        // The owner stopped at the window: not a byte more left it, the rest waits in its
        // application.
        assert_eq!(exit_got(&net, slow), window, "seed {seed}");
        assert_eq!(net.clients[1].send_credit(slow), 0, "seed {seed}");
        assert_eq!(net.exit.upstream[&other], others, "seed {seed}");
        if seed % 2 == 1 {
            // The owner is away when the destination reads again: the grants reach it as
            // replays.
            net.disconnect(Node::Client(1));
            net.exit.destination_stalled.clear();
            net.exit.destination_reads();
            net.run_steps(200 + 50 * seed);
            assert!(net.exit.grants.is_empty(), "seed {seed}");
            net.connect(Node::Client(1));
        } else {
            net.exit.destination_stalled.clear();
            net.exit.destination_reads();
        }
        net.run_until(4_000_000, |s| exit_got(s, slow) == data.len());
        assert_eq!(net.exit.upstream[&slow], data, "seed {seed}");
        // Never more than the window waited at the exit, and the owner never overdrew.
        assert!(net.exit.most_unread <= window, "seed {seed}");
        assert!(net.exit.overdrawn.is_empty(), "seed {seed}");
        assert_eq!(net.exit.opened[&slow], 1, "seed {seed}");
        assert!(net.apps[1].lost.is_empty(), "seed {seed}");
        assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
        // What the owner was granted is what the exit sent.
        assert_eq!(
            net.apps[1].granted.get(&slow),
            net.exit.granted.get(&slow),
            "seed {seed}"
        );
    }
}

#[test]
fn an_exit_that_grants_absurd_credit_is_held_to_the_owners_cap() {
    use dissent_core::credit::{OWNER_CREDIT_CAP, UP_WINDOW};
    let mut net = Net::new(NetConfig::new(2, 1, 256));
    net.exit.echo = false;
    let conn = net.open(0);
    net.exit.destination_stalled.push(conn);
    net.send_endless(0, conn);
    net.run_until(4_000_000, |s| exit_got(s, conn) == UP_WINDOW as usize);
    net.run_steps(2000);
    assert_eq!(exit_got(&net, conn), UP_WINDOW as usize);
    // The exit grants 4 GiB it never had taken.
    net.exit.grants.push_back((conn, u32::MAX));
    let most = (UP_WINDOW + OWNER_CREDIT_CAP) as usize;
    net.run_until(4_000_000, |s| exit_got(s, conn) == most);
    net.run_steps(3000);
    assert_eq!(exit_got(&net, conn), most);
    assert_eq!(net.apps[0].granted[&conn], u64::from(OWNER_CREDIT_CAP));
    assert_eq!(net.clients[0].send_credit(conn), 0);
    assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
}
