//! A relay restarted within one interval number: the new instance announces the same
//! interval number again with its own trap point `R_I` and numbers its exchanges from 0
//! again, while every client and trustee still holds what it answered to the old one.
//!
//! Over seeds (group size, window, which client owns what, when the relay restarts): honest
//! owners lay their cells out for the new point (no trap ever springs while nobody
//! disrupts), and when a disruptor then springs traps, the blame rounds under the new
//! instance convict it alone: no honest member is ever named, its reveals recompute the
//! cells it sent to the new instance, not the old one's of the same numbers.

#![cfg(feature = "disruptor")]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use dissent_core::blame::{self, BlameKind, Culprit};
use dissent_core::client::DisruptorMode;
use dissent_core::relay::PeerId;
use dissent_core::testkit::{pattern, Net};

/// Every client but `except` uploads `len` bytes; returns (client, conn, bytes).
fn uploads(
    net: &mut Net,
    except: Option<usize>,
    seed: usize,
    len: usize,
) -> Vec<(usize, dissent_core::wire::ConnId, Vec<u8>)> {
    let mut out = Vec::new();
    for i in (0..net.cfg.clients).filter(|&i| Some(i) != except) {
        let conn = net.open(i);
        let data = pattern(seed * 1000 + i, len + 37 * i);
        net.send_bytes(i, conn, data.clone());
        out.push((i, conn, data));
    }
    out
}

fn arrived(net: &Net, sent: &[(usize, dissent_core::wire::ConnId, Vec<u8>)]) -> bool {
    sent.iter()
        .all(|(_, conn, data)| net.exit.upstream.get(conn) == Some(data))
}

/// Honest owners keep their slots working across a restart within one interval number:
/// their cells follow the new instance's trap point, so no trap springs and nothing is
/// garbled; then a disruptor is convicted alone by rounds under the new instance.
#[test]
fn a_relay_restarted_within_one_interval_number_convicts_no_honest_owner() {
    let modes = [
        DisruptorMode::GarbleData,
        DisruptorMode::FlipPayload,
        DisruptorMode::GarbleAll,
    ];
    for seed in 0..9usize {
        let clients = 5 + seed % 3;
        let window = [4, 8, 16][(seed / 3) % 3];
        let mallory = (seed * 3 + 1) % clients;
        let mode = modes[seed % modes.len()];
        let what = format!("seed {seed}, {clients} clients, window {window}, {mode:?}");
        let mut net = Net::running_group(clients, window);
        // Owners send under the first instance, which the restart cuts short.
        let _ = uploads(&mut net, None, seed, 1500);
        net.run_steps(200 + 150 * (seed % 4));
        let (interval, _) = net.relay.interval().expect("an interval runs");
        // The new instance opens its first interval once everyone is back (and so stops
        // once the disruptor is gone: this test ends there).
        net.cfg.min_clients = clients as u16;
        net.restart_relay([0x40 + seed as u8; 16], interval);
        // Every member is in (its connections of the old instance are lost, as after any
        // restart).
        net.run_until(400_000, |s| {
            s.relay.interval().is_some_and(|(_, n)| n == clients)
                && s.clients
                    .iter()
                    .all(|c| c.interval().is_some() && c.connections() == 0)
        });
        assert_eq!(
            net.relay.interval().map(|i| i.0),
            Some(interval),
            "{what}: the new instance runs the same interval number"
        );
        // Honest owners only: every upload completes, no trap springs, nothing garbled;
        // owned cells go out in the interval of the same number.
        let after = uploads(&mut net, None, seed + 50, 3000);
        let decoded = net.relay.exchanges_decoded();
        net.run_until(2_000_000, |s| arrived(s, &after));
        assert!(net.relay.exchanges_decoded() > decoded, "{what}");
        assert!(
            arrived(&net, &after),
            "{what}: honest uploads after the restart"
        );
        assert!(net.exit.sprung.is_empty(), "{what}: {:?}", net.exit.sprung);
        assert_eq!(net.exit.garbled, 0, "{what}");
        assert!(net.blame_started.is_empty(), "{what}");
        // Now one member disrupts in the same interval number of the new instance.
        net.clients[mallory].set_disruptor(Some(mode));
        let _ = uploads(&mut net, Some(mallory), seed + 90, 4000);
        let m = PeerId::Client(mallory as u16);
        net.run_until(2_000_000, |s| s.excluded.iter().any(|x| x.1 == m));
        for &(_, i, e, verdict) in &net.blame_ended {
            if let Some((who, _)) = verdict {
                assert_eq!(who, Culprit::Client(mallory as u16), "{what}: {i}/{e}");
            }
        }
        assert!(
            net.excluded.iter().all(|x| x.1 == m),
            "{what}: {:?}",
            net.excluded
        );
        assert!(
            net.excluded.iter().any(|x| x.1 == m),
            "{what}: not excluded ({:?})",
            net.blame_ended
        );
        let evidence = net.evidence.last().expect(&what);
        let v = blame::verify(evidence, &net.directory()).expect(&what);
        assert_eq!(
            (v.who, v.kind),
            (Culprit::Client(mallory as u16), BlameKind::Disrupted),
            "{what}"
        );
    }
}
