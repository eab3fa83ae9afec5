//! Members that leave during a blame round. The round's interval does not end before the
//! round does, so a member that leaves is waited for until the deadline:
//!
//! - a disruptor that leaves as its round begins and comes back within it does not
//!   escape: its reveal convicts it, it is excluded, and the evidence says so (one that
//!   stays away past the deadline owes the round: `absent_member.rs`);
//! - an honest member that drops during the round and comes back within it answers from
//!   the interval it left and is never convicted; the disruptor still is.
//!
//! Over seeds (group size, window, who disrupts and how, who drops, how long it is away).

#![cfg(feature = "disruptor")]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use dissent_core::blame::{self, BlameKind, Culprit};
use dissent_core::client::DisruptorMode;
use dissent_core::relay::{Exclusion, PeerId};
use dissent_core::testkit::{pattern, Net, Node};

const MODES: [DisruptorMode; 4] = [
    DisruptorMode::GarbleAll,
    DisruptorMode::GarbleData,
    DisruptorMode::FlipPayload,
    DisruptorMode::GarbleEveryOther,
];

/// How the node that leaves comes back: after `steps`.
#[derive(Debug, Clone, Copy)]
enum Back {
    After(usize),
}

/// `mallory` disrupts and every other client uploads; when the first round begins, `leaver`
/// drops and comes back as `back` says. Runs until `mallory` is excluded (or `steps`).
fn run(net: &mut Net, mallory: usize, mode: DisruptorMode, leaver: usize, back: Back, seed: usize) {
    net.clients[mallory].set_disruptor(Some(mode));
    for i in (0..net.cfg.clients).filter(|&i| i != mallory) {
        let conn = net.open(i);
        net.send_bytes(i, conn, pattern(seed * 100 + i, 3000 + 97 * (seed % 7)));
    }
    let m = PeerId::Client(mallory as u16);
    let mut left_at = None;
    for step in 0..2_000_000usize {
        if net.excluded.iter().any(|x| x.1 == m) {
            break;
        }
        if left_at.is_none() && !net.blame_started.is_empty() {
            net.disconnect(Node::Client(leaver));
            left_at = Some(step);
        }
        if let (Some(at), Back::After(k)) = (left_at, back) {
            if step == at + k && !net.is_up(Node::Client(leaver)) {
                net.connect(Node::Client(leaver));
            }
        }
        if !net.step() {
            break;
        }
    }
    assert!(left_at.is_some(), "no round began");
}

/// No honest node was named or excluded.
fn only(net: &Net, mallory: usize, what: &str) {
    let m = PeerId::Client(mallory as u16);
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
}

/// A disruptor that leaves as the round about its disruption begins and comes back within
/// it is convicted all the same, by its own reveal. (One that stays away past the deadline
/// is not convicted on the relay's word: it owes the round, `absent_member.rs`.)
#[test]
fn a_disruptor_that_leaves_mid_round_does_not_escape() {
    for seed in 0..16usize {
        let mode = MODES[seed % MODES.len()];
        let clients = 5 + seed % 3;
        let window = [4, 8, 16][(seed / 4) % 3];
        let mallory = (seed * 5 + 2) % clients;
        let back = Back::After(1 + seed * 7);
        let what = format!("seed {seed}, {mode:?}, {clients} clients, window {window}, {back:?}");
        let mut net = Net::running_group(clients, window);
        run(&mut net, mallory, mode, mallory, back, seed);
        only(&net, mallory, &what);
        let &(_, _, why) = net
            .excluded
            .iter()
            .find(|x| x.1 == PeerId::Client(mallory as u16))
            .unwrap_or_else(|| panic!("{what}: escaped ({:?})", net.blame_ended));
        let Exclusion::Convicted { kind, .. } = why else {
            panic!("{what}: {why:?}");
        };
        let evidence = net.evidence.last().expect(&what);
        let v = blame::verify(evidence, &net.directory()).expect(&what);
        assert_eq!(
            (v.who, v.kind),
            (Culprit::Client(mallory as u16), kind),
            "{what}"
        );
        assert_eq!(kind, BlameKind::Disrupted, "{what}");
    }
}

/// An honest member that drops as a round begins and comes back within it answers from the
/// interval it left; it is never convicted, and the disruptor is.
#[test]
fn an_honest_member_that_drops_and_comes_back_within_the_round_is_not_convicted() {
    let mut answered_after_return = 0;
    for seed in 0..16usize {
        let mode = MODES[seed % MODES.len()];
        let clients = 5 + seed % 3;
        let window = [4, 8, 16][(seed / 4) % 3];
        let mallory = (seed * 5 + 2) % clients;
        let honest = (mallory + 1 + seed % (clients - 1)) % clients;
        assert_ne!(honest, mallory);
        let back = Back::After(1 + (seed * 13) % 8);
        let what = format!(
            "seed {seed}, {mode:?}, {clients} clients, window {window}, client {honest} {back:?}"
        );
        let mut net = Net::running_group(clients, window);
        let reveals_before = net.reveals.len();
        run(&mut net, mallory, mode, honest, back, seed);
        only(&net, mallory, &what);
        assert!(
            net.excluded
                .iter()
                .any(|x| x.1 == PeerId::Client(mallory as u16)),
            "{what}: disruptor not excluded ({:?})",
            net.blame_ended
        );
        answered_after_return +=
            usize::from(net.reveals[reveals_before..].contains(&PeerId::Client(honest as u16)));
        let evidence = net.evidence.last().expect(&what);
        let v = blame::verify(evidence, &net.directory()).expect(&what);
        assert_eq!(v.who, Culprit::Client(mallory as u16), "{what}");
    }
    // Every one answered after it came back (the rounds did not spare them).
    assert_eq!(answered_after_return, 16);
}
