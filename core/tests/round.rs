//! Blame rounds run for real in the in-memory net: an owner's accusation starts a round,
//! every member and trustee checks its grounds and reveals, the relay judges (a dispute
//! settled with a DLEQ proof), the culprit is excluded and the evidence checks offline.
//!
//! Over many seeds and each disruptor mode an owner's accusation can name: the disruptor
//! is convicted and excluded, no honest node ever is, and after the exclusion another
//! client's upload arrives byte-exact. Also: a member that does not answer, or answers
//! what does not check, is refused blame (and nobody else is); a trustee that says it takes
//! no part is not waited for, and one that answers nothing is not convicted for it; a
//! trustee that lies about a
//! pad bit is convicted by the dispute, and so is a client that does (on the trustee's
//! proof, or on its own if it proves the secret all the same); a relay that starts a round on forged grounds gets
//! no reveal from anyone. The modes only traps can name are convicted on the relay's own
//! trap grounds, with the same outcome.

#![cfg(feature = "disruptor")]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use dissent_core::blame::{self, BlameKind, Culprit, ProvenDispute};
use dissent_core::client::DisruptorMode;
use dissent_core::relay::{Exclusion, PeerId};
use dissent_core::testkit::{frame_body, pattern, Net, NetConfig, Node};
use dissent_core::wire::Message;
use dissent_core::{Duration, Instant};

/// Every honest client uploads a few KiB; `mallory` turns `mode` on. Runs until the first
/// blame round ends (or `steps`); returns when the first exchange was disrupted (or a
/// forged request shown), if one was.
fn disrupt(
    net: &mut Net,
    mallory: usize,
    mode: DisruptorMode,
    seed: usize,
    steps: usize,
) -> Option<Instant> {
    net.clients[mallory].set_disruptor(Some(mode));
    for i in 0..net.cfg.clients {
        if i != mallory {
            let conn = net.open(i);
            net.send_bytes(i, conn, pattern(seed * 100 + i, 2000 + 97 * (seed % 7)));
        }
    }
    let mut first = None;
    for _ in 0..steps {
        if first.is_none() && (net.exit.garbled > 0 || !net.exit.accused.is_empty()) {
            first = Some(net.now);
        }
        if !net.blame_ended.is_empty() || !net.step() {
            break;
        }
    }
    first
}

/// No honest node was ever named or excluded, and every verdict names `mallory`.
fn only(net: &Net, mallory: usize, what: &str) {
    let m = PeerId::Client(mallory as u16);
    for &(_, i, e, verdict) in &net.blame_ended {
        if let Some((who, _)) = verdict {
            assert_eq!(
                who,
                Culprit::Client(mallory as u16),
                "{what}: round {i}/{e}"
            );
        }
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

/// After the exclusion, another client's upload arrives byte-exact.
fn upload_after(net: &mut Net, mallory: usize, seed: usize, what: &str) {
    let sender = (mallory + 1 + seed % 3) % net.cfg.clients;
    let sender = if sender == mallory {
        (sender + 1) % net.cfg.clients
    } else {
        sender
    };
    let conn = net.open(sender);
    let data = pattern(seed * 7 + 1, 6000);
    net.send_bytes(sender, conn, data.clone());
    net.run_until(2_000_000, |s| {
        s.exit.upstream.get(&conn) == Some(&data)
            && s.apps[sender].received.get(&conn) == Some(&data)
    });
    assert_eq!(net.exit.upstream.get(&conn), Some(&data), "{what}");
}

/// The disruptor is convicted by its own signed reveal, excluded and refused, the evidence
/// checks offline, and honest traffic resumes; over seeds (which client disrupts, the
/// window, the uploads) and the modes an owner's accusation can name (modes that garble
/// every cell of a slot, `garble-all`, `garble-data`, `inject`, garble its accusations
/// too: that is the traps' job).
#[test]
fn each_accusable_disruptor_is_convicted_excluded_and_honest_traffic_resumes() {
    let modes = [
        ("garble-every-other", DisruptorMode::GarbleEveryOther),
        // Its inverted bits are forged requests at other owners' bits, accused there.
        ("invert-reservations", DisruptorMode::InvertReservations),
    ];
    let mut convicted = 0;
    for seed in 0..24usize {
        let (name, mode) = modes[seed % modes.len()];
        let clients = 5 + seed % 3;
        let window = [4, 8, 16][seed % 3];
        let mallory = (seed * 5 + 1) % clients;
        let what =
            format!("seed {seed}, {name}, {clients} clients, window {window}, mallory {mallory}");
        let mut net = Net::running_group(clients, window);
        disrupt(&mut net, mallory, mode, seed, 400_000);
        only(&net, mallory, &what);
        let Some(&(_, interval, exchange, verdict)) = net.blame_ended.first() else {
            panic!("{what}: no blame round ended");
        };
        let (who, kind) = verdict.unwrap_or_else(|| panic!("{what}: no verdict"));
        assert_eq!(who, Culprit::Client(mallory as u16), "{what}");
        assert_eq!(kind, BlameKind::Disrupted, "{what}");
        let v = blame::verify(&net.evidence[0], &net.directory()).expect(&what);
        assert_eq!(
            (v.interval, v.exchange, v.who, v.kind),
            (interval, exchange, who, kind)
        );
        assert!(v.offline, "{what}");
        // Excluded, on the refusal list, and told so.
        net.run_steps(2000);
        assert!(net.excluded.iter().any(|x| matches!(
            x,
            (_, PeerId::Client(m), Exclusion::Convicted { kind: BlameKind::Disrupted, .. }) if usize::from(*m) == mallory
        )), "{what}");
        assert!(
            net.clients[mallory].interval().is_none(),
            "{what}: still in"
        );
        upload_after(&mut net, mallory, seed, &what);
        only(&net, mallory, &what);
        convicted += 1;
    }
    println!("{convicted} disruptors convicted, no honest node named");
}

/// The modes an owner's accusation cannot name (`garble-all` and `garble-data` garble the
/// owner's accusations too; `flip-payload` changes one byte, in a trap one cell in 16) are
/// named by the traps they spring: the relay starts the round itself, the disruptor is
/// convicted by its own reveal and excluded, the trap evidence checks offline, nobody
/// honest is named, and another client's upload then arrives byte-exact. Prints the
/// simulated time from the first changed exchange to the exclusion.
#[test]
fn each_trap_springing_disruptor_is_convicted_excluded_and_honest_traffic_resumes() {
    let modes = [
        ("garble-all", DisruptorMode::GarbleAll),
        ("garble-data", DisruptorMode::GarbleData),
        ("flip-payload", DisruptorMode::FlipPayload),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); modes.len()];
    let mut on_traps = [0usize; 3];
    for seed in 0..18usize {
        let m = seed % modes.len();
        let (name, mode) = modes[m];
        let clients = 5 + seed % 3;
        let window = [4, 8, 16][(seed / 3) % 3];
        let mallory = (seed * 5 + 2) % clients;
        let what =
            format!("seed {seed}, {name}, {clients} clients, window {window}, mallory {mallory}");
        let mut net = Net::running_group(clients, window);
        net.clients[mallory].set_disruptor(Some(mode));
        for i in (0..clients).filter(|&i| i != mallory) {
            let conn = net.open(i);
            net.send_bytes(i, conn, pattern(seed * 100 + i, 4000 + 97 * (seed % 7)));
        }
        let gone = |n: &Net| {
            n.excluded
                .iter()
                .any(|x| x.1 == PeerId::Client(mallory as u16))
        };
        let mut first = None;
        for _ in 0..2_000_000 {
            if first.is_none() && (net.exit.garbled > 0 || !net.exit.sprung.is_empty()) {
                first = Some(net.now);
            }
            if gone(&net) || !net.step() {
                break;
            }
        }
        only(&net, mallory, &what);
        let first = first.unwrap_or_else(|| panic!("{what}: nothing changed"));
        let &(at, _, kind) = net
            .excluded
            .iter()
            .find(|x| x.1 == PeerId::Client(mallory as u16))
            .unwrap_or_else(|| panic!("{what}: not excluded ({:?})", net.blame_ended));
        assert!(
            matches!(
                kind,
                Exclusion::Convicted {
                    kind: BlameKind::Disrupted,
                    ..
                }
            ),
            "{what}: {kind:?}"
        );
        // The round that named it: its evidence checks offline, from public keys.
        let named = net.blame_ended.iter().filter(|r| r.3.is_some()).count();
        assert_eq!(named, net.evidence.len(), "{what}");
        let evidence = net.evidence.last().expect(&what);
        let v = blame::verify(evidence, &net.directory()).expect(&what);
        assert_eq!(
            (v.who, v.kind),
            (Culprit::Client(mallory as u16), BlameKind::Disrupted),
            "{what}"
        );
        assert!(v.offline, "{what}");
        if m < 2 {
            // Its accusations are garbled with the rest: only a trap can name it.
            assert!(v.trap, "{what}: named on an accusation");
        }
        on_traps[m] += usize::from(v.trap);
        // Another slot trap point, or another announced one, is refused.
        if v.trap {
            for back in [68, 36] {
                let mut forged = evidence.clone();
                let at = forged.len() - back;
                forged[at] ^= 0x01;
                assert!(blame::verify(&forged, &net.directory()).is_err(), "{what}");
            }
        }
        times[m].push(at - first);
        net.run_steps(2000);
        assert!(
            net.clients[mallory].interval().is_none(),
            "{what}: still in"
        );
        upload_after(&mut net, mallory, seed, &what);
        only(&net, mallory, &what);
    }
    for (m, (name, _)) in modes.iter().enumerate() {
        let t = &mut times[m];
        t.sort();
        println!(
            "{name}: {} convicted ({} on a sprung trap); simulated time from the first \
             changed exchange to the exclusion: min {:?}, median {:?}, max {:?}",
            t.len(),
            on_traps[m],
            t[0],
            t[t.len() / 2],
            t[t.len() - 1]
        );
    }
}

/// Nobody accuses an honest group, and no round runs.
#[test]
fn an_honest_group_runs_no_round() {
    for seed in 0..3usize {
        let mut net = Net::running_group(6, 8);
        for i in 0..6 {
            let conn = net.open(i);
            net.send_bytes(i, conn, pattern(seed * 10 + i, 4000));
        }
        net.run_steps(60_000);
        assert!(net.blame_started.is_empty());
        assert!(net.excluded.is_empty());
        assert!(net.reveals.is_empty());
    }
}

/// A member that does not answer is refused blame (and excluded); so is the disruptor,
/// convicted by its own reveal; nobody else is named.
#[test]
fn a_member_that_does_not_answer_is_refused_blame() {
    for seed in 0..4usize {
        let mut net = Net::running_group(6, 8);
        let (mallory, silent) = (5, seed % 5);
        net.refuse_blame.push(Node::Client(silent));
        disrupt(
            &mut net,
            mallory,
            DisruptorMode::GarbleEveryOther,
            seed,
            400_000,
        );
        let &(_, _, _, verdict) = net.blame_ended.first().expect("a round ended");
        // The evidence names the disruptor (offline-verifiable); the silent member is
        // excluded on the relay's own word.
        assert_eq!(
            verdict,
            Some((Culprit::Client(mallory as u16), BlameKind::Disrupted))
        );
        let v = blame::verify(&net.evidence[0], &net.directory()).unwrap();
        assert_eq!(v.who, Culprit::Client(mallory as u16));
        let refused: Vec<_> = net
            .excluded
            .iter()
            .filter(|x| {
                matches!(
                    x.2,
                    Exclusion::Convicted {
                        kind: BlameKind::RefusedBlame,
                        ..
                    }
                )
            })
            .map(|x| x.1)
            .collect();
        assert_eq!(refused, vec![PeerId::Client(silent as u16)], "seed {seed}");
        assert!(net
            .penalties
            .iter()
            .any(|p| p.1 == PeerId::Client(silent as u16)));
        for x in &net.excluded {
            assert!(x.1 == PeerId::Client(silent as u16) || x.1 == PeerId::Client(mallory as u16));
        }
    }
}

/// A member whose reveal does not match the cell it sent (garbage) is refused blame; the
/// round goes on for everyone else.
#[test]
fn a_member_that_answers_garbage_is_refused_blame_and_nobody_else() {
    let mut net = Net::running_group(6, 8);
    let (mallory, garbler) = (5, 2);
    net.garble_reveal.push(Node::Client(garbler));
    disrupt(
        &mut net,
        mallory,
        DisruptorMode::GarbleEveryOther,
        3,
        400_000,
    );
    let excluded: Vec<_> = net.excluded.iter().map(|x| (x.1, x.2)).collect();
    assert!(excluded.iter().any(|x| matches!(
        x,
        (
            PeerId::Client(2),
            Exclusion::Convicted {
                kind: BlameKind::RefusedBlame,
                ..
            }
        )
    )));
    assert!(excluded.iter().any(|x| matches!(
        x,
        (
            PeerId::Client(5),
            Exclusion::Convicted {
                kind: BlameKind::Disrupted,
                ..
            }
        )
    )));
    assert_eq!(excluded.len(), 2, "{excluded:?}");
    assert!(net
        .relay_errors
        .iter()
        .all(|e| e.0 == PeerId::Client(garbler as u16)));
}

/// A trustee that said it takes part but answers nothing is never convicted for it and the
/// group is not stalled: the round ends at its deadline and still convicts the disruptor by
/// its own signed reveal, and the evidence, with that trustee's entry absent, checks
/// offline.
#[test]
fn a_trustee_that_answers_nothing_is_not_convicted_and_the_disruptor_still_is() {
    for (seed, silent) in [(0usize, 0usize), (1, 1)] {
        let mut net = Net::running_group(6, 8);
        net.refuse_blame.push(Node::Trustee(silent));
        let mallory = 4;
        disrupt(
            &mut net,
            mallory,
            DisruptorMode::GarbleEveryOther,
            seed,
            400_000,
        );
        let &(at, _, _, verdict) = net.blame_ended.first().expect("a round ended");
        assert_eq!(
            verdict,
            Some((Culprit::Client(mallory as u16), BlameKind::Disrupted))
        );
        let (started, ..) = net.blame_started[0];
        // It waited for the silent trustee until its deadline.
        assert!(at - started >= net.cfg.exchange_timeout, "seed {seed}");
        let v = blame::verify(&net.evidence[0], &net.directory()).unwrap();
        assert_eq!(
            (v.who, v.kind, v.offline),
            (Culprit::Client(mallory as u16), BlameKind::Disrupted, true)
        );
        only(&net, mallory, &format!("seed {seed}"));
        assert!(!net.dropped.contains(&PeerId::Trustee(silent as u16)));
        upload_after(&mut net, mallory, seed, &format!("seed {seed}"));
    }
}

/// A trustee that says in its Hello it takes no part in blame rounds (as a device trustee
/// does) is not waited for: with a `garble-all` or `invert-reservations` disruptor among 8
/// clients (10 ms links, the hosted 10 s exchange timeout), every round ends as soon as the
/// members and the other trustee answered, far inside the timeout, and still convicts the
/// disruptor by its own signed reveal (the evidence checks offline, that trustee's entry
/// absent). The trustee is reported when it joins and in each round, and never named.
#[test]
fn a_trustee_that_says_it_takes_no_part_is_not_waited_for_and_the_disruptor_is_excluded() {
    let modes = [
        ("garble-all", DisruptorMode::GarbleAll),
        ("invert-reservations", DisruptorMode::InvertReservations),
    ];
    for seed in 0..6usize {
        let (name, mode) = modes[seed % 2];
        let without = (seed / 2) % 2;
        let clients = 8;
        let mallory = (seed * 3 + 1) % clients;
        let what = format!("seed {seed}, {name}, trustee {without} out, mallory {mallory}");
        let mut cfg = NetConfig::new(clients, 2, 256);
        cfg.max_cell_len = 1024;
        cfg.window = 8;
        cfg.latency = Duration::from_millis(10);
        cfg.exchange_timeout = Duration::from_millis(10_000);
        let mut net = Net::unconnected(cfg);
        net.trustees[without].set_takes_part_in_blame(false);
        net.connect_all();
        net.run_until(1_000_000, |s| {
            s.relay.interval().is_some_and(|(_, n)| n == clients)
        });
        assert_eq!(net.without_blame, vec![without as u16], "{what}");
        net.clients[mallory].set_disruptor(Some(mode));
        for i in (0..clients).filter(|&i| i != mallory) {
            let conn = net.open(i);
            net.send_bytes(i, conn, pattern(seed * 100 + i, 3000 + 97 * seed));
        }
        let m = PeerId::Client(mallory as u16);
        let mut first = None;
        for _ in 0..2_000_000 {
            if first.is_none()
                && (net.exit.garbled > 0
                    || !net.exit.sprung.is_empty()
                    || !net.exit.accused.is_empty())
            {
                first = Some(net.now);
            }
            if net.excluded.iter().any(|x| x.1 == m) || !net.step() {
                break;
            }
        }
        only(&net, mallory, &what);
        let first = first.unwrap_or_else(|| panic!("{what}: nothing changed"));
        let &(at, _, kind) = net
            .excluded
            .iter()
            .find(|x| x.1 == m)
            .unwrap_or_else(|| panic!("{what}: not excluded ({:?})", net.blame_ended));
        assert!(
            matches!(
                kind,
                Exclusion::Convicted {
                    kind: BlameKind::Disrupted,
                    ..
                }
            ),
            "{what}: {kind:?}"
        );
        // Every round ended long before the exchange timeout, each without that
        // trustee's reveal (and reported so).
        assert!(!net.blame_ended.is_empty(), "{what}");
        for (&(started, i, e), &(ended, i2, e2, _)) in
            net.blame_started.iter().zip(&net.blame_ended)
        {
            assert_eq!((i, e), (i2, e2), "{what}");
            assert!(
                ended - started < Duration::from_micros(net.cfg.exchange_timeout.as_micros() / 20),
                "{what}: a round took {:?}",
                ended - started
            );
        }
        assert_eq!(net.blame_incomplete.len(), net.blame_ended.len(), "{what}");
        assert!(
            net.blame_incomplete.iter().all(|r| r.3 == 1 << without),
            "{what}"
        );
        assert!(
            at - first < Duration::from_millis(5_000),
            "{what}: excluded {:?} after the first disruption",
            at - first
        );
        let v = blame::verify(net.evidence.last().expect(&what), &net.directory()).expect(&what);
        assert_eq!(
            (v.who, v.kind, v.offline),
            (Culprit::Client(mallory as u16), BlameKind::Disrupted, true),
            "{what}"
        );
        assert!(
            !net.dropped.contains(&PeerId::Trustee(without as u16)),
            "{what}"
        );
        println!(
            "{what}: excluded {} ms after the first disruption (simulated)",
            (at - first).as_micros() / 1000
        );
        upload_after(&mut net, mallory, seed, &what);
        only(&net, mallory, &what);
    }
}

/// A disruptor that hides its flipped cell bit by lying about the pad bit it shares with
/// trustee 0 is caught by the dispute: the pair's Diffie–Hellman secret, proven with a DLEQ
/// proof (by trustee 0: the liar proves nothing), gives the true bit. A trustee that lies about the pad bits it shares with two
/// members (its own cell bit does not show it) is caught the same way when the dispute
/// comes to it first. The evidence checks offline either way.
#[test]
fn lies_about_pad_bits_are_convicted_by_the_dispute() {
    for (seed, liar) in [(0usize, None), (1, Some(0usize)), (2, Some(1)), (3, None)] {
        let mut net = Net::running_group(6, 8);
        let mallory = 5;
        net.clients[mallory].set_lie_about_pads(true);
        if let Some(t) = liar {
            net.trustees[t].set_lie_about_pads(true);
        }
        disrupt(
            &mut net,
            mallory,
            DisruptorMode::GarbleEveryOther,
            seed,
            400_000,
        );
        let &(_, _, _, verdict) = net.blame_ended.first().expect("a round ended");
        let want = match liar {
            // Members 0 and 1 come before the disruptor: the trustee's dispute first.
            Some(t) => Culprit::Trustee(t as u16),
            None => Culprit::Client(mallory as u16),
        };
        assert_eq!(
            verdict,
            Some((want, BlameKind::LiedAboutPad)),
            "seed {seed}"
        );
        let v = blame::verify(&net.evidence[0], &net.directory()).unwrap();
        assert_eq!((v.who, v.kind), (want, BlameKind::LiedAboutPad));
        assert!(v.offline);
        let excluded = match want {
            Culprit::Client(i) => PeerId::Client(i),
            Culprit::Trustee(j) => PeerId::Trustee(j),
            Culprit::Relay => unreachable!(),
        };
        assert!(
            net.dropped.contains(&excluded),
            "seed {seed}: {:?}",
            net.dropped
        );
        for d in &net.dropped {
            assert_eq!(*d, excluded, "seed {seed}: an honest node dropped");
        }
    }
}

/// A liar about the pad bit it shares with trustee 0 never proves that pair's secret: the
/// dispute is settled by trustee 0's proof, which the evidence holds, and it convicts the
/// liar. A careless liar that proves the secret when asked is convicted on its own proof
/// (it is asked first). Either way the verdict is `LiedAboutPad` naming the liar, nobody
/// else is dropped, and the evidence checks offline and says whose proof settled it.
#[test]
fn a_liar_is_convicted_on_the_trustees_proof_and_a_careless_one_on_its_own() {
    for (seed, proves) in [(0usize, false), (1, false), (2, true), (3, true)] {
        let mut net = Net::running_group(6, 8);
        let mallory = 5;
        net.clients[mallory].set_lie_about_pads(true);
        net.clients[mallory].set_liar_proves(proves);
        disrupt(
            &mut net,
            mallory,
            DisruptorMode::GarbleEveryOther,
            seed,
            400_000,
        );
        let what = format!("seed {seed}, the liar proves: {proves}");
        let &(_, _, _, verdict) = net.blame_ended.first().expect("a round ended");
        let liar = Culprit::Client(mallory as u16);
        assert_eq!(verdict, Some((liar, BlameKind::LiedAboutPad)), "{what}");
        let v = blame::verify(&net.evidence[0], &net.directory()).unwrap();
        assert_eq!((v.who, v.kind), (liar, BlameKind::LiedAboutPad), "{what}");
        assert!(v.offline, "{what}");
        let provers: Vec<(Node, u16)> = net
            .dh_proofs
            .iter()
            .map(|(node, body)| match Message::parse(body).unwrap() {
                Message::BlameDhProof { peer, .. } => (*node, peer),
                m => panic!("not a DH proof: {m:?}"),
            })
            .collect();
        assert_eq!(
            provers.contains(&(Node::Client(mallory), 0)),
            proves,
            "{what}: {provers:?}"
        );
        assert!(
            proves || provers.contains(&(Node::Trustee(0), mallory as u16)),
            "{what}: {provers:?}"
        );
        // The proof in the evidence is the trustee's, unless the liar proved (asked first,
        // it answers first).
        assert_eq!(
            v.dispute,
            Some(ProvenDispute {
                client: mallory as u16,
                trustee: 0,
                by_trustee: !proves
            }),
            "{what}"
        );
        assert!(
            net.dropped.contains(&PeerId::Client(mallory as u16)),
            "{what}: {:?}",
            net.dropped
        );
        for d in &net.dropped {
            assert_eq!(
                *d,
                PeerId::Client(mallory as u16),
                "{what}: an honest node dropped"
            );
        }
    }
}

/// A relay that starts a round on grounds that do not hold (a made-up accusation, or a
/// real one about another exchange or bit) gets no reveal from any member or trustee.
#[test]
fn a_relay_with_forged_grounds_gets_no_reveal() {
    let mut net = Net::running_group(6, 8);
    let conn = net.open(0);
    net.send_bytes(0, conn, pattern(4, 3000));
    net.run_steps(5000);
    let (interval, _) = net.relay.interval().unwrap();
    let mut forged = [0u8; 76];
    for (k, b) in forged.iter_mut().enumerate() {
        *b = (k as u8).wrapping_mul(37) ^ 0x5c;
    }
    forged[..8].copy_from_slice(&3u64.to_be_bytes());
    forged[8..12].copy_from_slice(&40u32.to_be_bytes());
    // Tag 0 (an accusation) and the forged payload.
    let mut grounds = [0u8; 77];
    grounds[1..].copy_from_slice(&forged);
    for (exchange, bit, slot) in [(3u64, 40u32, 0u16), (3, 41, 0), (4, 40, 1)] {
        let body = frame_body(&Message::BlameRequest {
            interval,
            exchange,
            bit,
            slot,
            grounds: &grounds,
        });
        for i in 0..6 {
            net.relay_says(Node::Client(i), &body);
        }
        for j in 0..2 {
            net.relay_says(Node::Trustee(j), &body);
        }
    }
    net.run_steps(5000);
    assert!(net.reveals.is_empty(), "{:?}", net.reveals);
    assert!(net.node_errors.is_empty(), "{:?}", net.node_errors);
}

/// Simulated time from the first disruption to the disruptor's exclusion at 64 clients
/// (the bound: 5 s), over a few seeds, printed: 10 ms links, 1 KiB cells up to 8 KiB, a
/// window of 16 and a 10 s timeout (the hosted timings). The net does not simulate
/// computation (`cargo bench -p dissent-core --bench blame_round` times 1,000 clients,
/// computation included).
#[test]
fn exclusion_time_at_64_clients() {
    let mut worst = Duration::default();
    for seed in 0..3usize {
        let mut cfg = NetConfig::new(64, 2, 1024);
        cfg.max_cell_len = 8192;
        cfg.window = 16;
        cfg.latency = Duration::from_millis(10);
        cfg.exchange_timeout = Duration::from_millis(10_000);
        let mut net = Net::new(cfg);
        net.run_until(1_000_000, |s| {
            s.relay.interval().is_some_and(|(_, n)| n == 64)
        });
        let mallory = 63 - seed;
        let first = disrupt(
            &mut net,
            mallory,
            DisruptorMode::GarbleEveryOther,
            seed,
            4_000_000,
        )
        .expect("a disruption");
        let &(at, who, _) = net.excluded.first().expect("excluded");
        assert_eq!(who, PeerId::Client(mallory as u16));
        only(&net, mallory, &format!("seed {seed}"));
        let took = at - first;
        println!(
            "64 clients, seed {seed}: first disruption to exclusion {} ms (simulated)",
            took.as_micros() / 1000
        );
        worst = worst.max(took);
    }
    println!(
        "64 clients: at most {} ms from the first disruption to the exclusion (simulated)",
        worst.as_micros() / 1000
    );
}
