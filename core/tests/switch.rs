//! Switches between epochs: which versions of a group's description every node accepts
//! (newer, signed by every trustee of the running and of the new version), what a relay
//! serving the switch link can and cannot make a node take, and the next epoch's setup
//! with the new member list: the new member gets a slot, the removed one cannot take one.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use dissent_core::epoch::identity::Ed25519Identity;
use dissent_core::epoch::switch::{
    check, update_at, verdict, Candidate, Received, Refused, Running, SwitchMessage, UpdateError,
    UpdateReceiver, Verdict, MAX_UPDATE_DATA, REMOVED_LEN, UPDATE_HEADER_LEN,
};
use dissent_core::epoch::{SetupClient, SetupStorage};
use dissent_core::testkit::epoch::{identity, Driver, EpochNet, EpochSpec, CLIENT, TRUSTEE};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn keys(role: u8, ids: &[usize]) -> Vec<[u8; 32]> {
    ids.iter().map(|&i| identity(role, i).public()).collect()
}

fn signed(digest: &[u8; 32], by: &[Ed25519Identity]) -> Vec<([u8; 32], [u8; 64])> {
    by.iter().map(|k| (k.public(), k.sign(digest))).collect()
}

/// Version 1 runs with trustees 0, 1 and clients 0..4; version 2 takes client 3 out and
/// client 4 in.
#[test]
fn every_node_refuses_a_version_too_few_trustees_signed() {
    let running_trustees = keys(TRUSTEE, &[0, 1]);
    let running = Running {
        version: 1,
        trustees: &running_trustees,
    };
    let clients = keys(CLIENT, &[0, 1, 2, 4]);
    let digest = [0x5a; 32];
    let next = Candidate {
        version: 2,
        digest,
        trustees: &running_trustees,
        clients: &clients,
    };
    let t1 = identity(TRUSTEE, 1);
    // One of two trustees: refused, naming the other.
    assert_eq!(
        check(running, next, &signed(&digest, &[identity(TRUSTEE, 0)])),
        Err(Refused::Unsigned {
            trustee: t1.public(),
            running: true
        })
    );
    // A signature by a client, or over other bytes, does not count.
    let mut sigs = signed(&digest, &[identity(TRUSTEE, 0), identity(CLIENT, 0)]);
    sigs.push((t1.public(), t1.sign(&[0x5b; 32])));
    assert!(check(running, next, &sigs).is_err());
    // Both: accepted.
    let both = signed(&digest, &[identity(TRUSTEE, 0), identity(TRUSTEE, 1)]);
    assert_eq!(check(running, next, &both), Ok(()));

    // Trustee 1 leaves and trustee 2 joins: all three must sign.
    let new_trustees = keys(TRUSTEE, &[0, 2]);
    let changed = Candidate {
        trustees: &new_trustees,
        ..next
    };
    let without_leaver = signed(&digest, &[identity(TRUSTEE, 0), identity(TRUSTEE, 2)]);
    assert_eq!(
        check(running, changed, &without_leaver),
        Err(Refused::Unsigned {
            trustee: t1.public(),
            running: true
        })
    );
    let without_joiner = signed(&digest, &[identity(TRUSTEE, 0), identity(TRUSTEE, 1)]);
    assert_eq!(
        check(running, changed, &without_joiner),
        Err(Refused::Unsigned {
            trustee: identity(TRUSTEE, 2).public(),
            running: false
        })
    );
    let all = signed(
        &digest,
        &[
            identity(TRUSTEE, 0),
            identity(TRUSTEE, 1),
            identity(TRUSTEE, 2),
        ],
    );
    assert_eq!(check(running, changed, &all), Ok(()));
    // A relay cannot slip in members: dropping every running trustee from the new version
    // and signing with its own keys does not help.
    let own = keys(TRUSTEE, &[7]);
    let hijack = Candidate {
        trustees: &own,
        ..next
    };
    assert!(check(running, hijack, &signed(&digest, &[identity(TRUSTEE, 7)])).is_err());
}

#[test]
fn a_relay_that_serves_an_older_or_forged_version_is_refused() {
    let trustees = keys(TRUSTEE, &[0, 1]);
    let clients = keys(CLIENT, &[0, 1, 2]);
    let running = Running {
        version: 5,
        trustees: &trustees,
    };
    let digest = [0x11; 32];
    let all = signed(&digest, &[identity(TRUSTEE, 0), identity(TRUSTEE, 1)]);
    for version in [1, 4, 5] {
        let old = Candidate {
            version,
            digest,
            trustees: &trustees,
            clients: &clients,
        };
        assert_eq!(
            check(running, old, &all),
            Err(Refused::NotNewer {
                running: 5,
                offered: version
            })
        );
    }
    // The switch link: the relay announces an older version, or changes its story between
    // chunks. A description whose digest differs from the signed one fails the signatures.
    let text = vec![0x42u8; 2 * MAX_UPDATE_DATA + 10];
    let mut frame = vec![0u8; UPDATE_HEADER_LEN + MAX_UPDATE_DATA];
    let mut rx = UpdateReceiver::new(5, vec![0u8; text.len()]);
    let n = update_at(4, digest, &text, 0)
        .unwrap()
        .emit(&mut frame)
        .unwrap();
    assert_eq!(rx.receive(&frame[..n]), Err(UpdateError::NotNewer));
    let mut rx = UpdateReceiver::new(5, vec![0u8; text.len()]);
    let n = update_at(6, digest, &text, 0)
        .unwrap()
        .emit(&mut frame)
        .unwrap();
    assert_eq!(rx.receive(&frame[..n]), Ok(Received::More));
    let n = update_at(6, [0x12; 32], &text, MAX_UPDATE_DATA)
        .unwrap()
        .emit(&mut frame)
        .unwrap();
    assert_eq!(rx.receive(&frame[..n]), Err(UpdateError::Inconsistent));
    let forged = Candidate {
        version: 6,
        digest: [0x12; 32],
        trustees: &trustees,
        clients: &clients,
    };
    assert!(matches!(
        check(running, forged, &all),
        Err(Refused::Unsigned { .. })
    ));
}

#[test]
fn switch_messages_have_fixed_bytes() {
    let mut out = [0u8; 64];
    let n = SwitchMessage::Removed {
        version: 3,
        digest: [0xab; 32],
    }
    .emit(&mut out)
    .unwrap();
    assert_eq!(n, REMOVED_LEN);
    let mut want = vec![0x11, 0, 0, 0, 0, 0, 0, 0, 3];
    want.extend([0xab; 32]);
    assert_eq!(&out[..n], &want[..]);
    let n = update_at(3, [0xab; 32], b"{}", 0)
        .unwrap()
        .emit(&mut out)
        .unwrap();
    let mut want = vec![0x10, 0, 0, 0, 0, 0, 0, 0, 3];
    want.extend([0xab; 32]);
    want.extend([0, 0, 0, 2, 0, 0, 0, 0, 0, 2, b'{', b'}']);
    assert_eq!(&out[..n], &want[..]);
    // docs/protocol.md, "Switches": an `Update` carrying `{}` of version 3.
    assert_eq!(
        hex(&out[..n]),
        concat!(
            "10",
            "0000000000000003",
            "abababababababababababababababababababababababababababababababab",
            "00000002",
            "00000000",
            "0002",
            "7b7d"
        )
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Honest delivery, with the removed member listening in and trying to submit first
/// under the slot of the new member.
struct WithImpostor {
    impostor: SetupClient<'static, Vec<u8>, Ed25519Identity>,
    rng: ChaCha20Rng,
    refused: bool,
}

impl Driver<ChaCha20Rng> for WithImpostor {
    fn broadcast(&mut self, net: &mut EpochNet<ChaCha20Rng>, frame: &[u8]) {
        for node in 0..net.nodes() {
            net.give(node, frame).unwrap();
        }
        let _ = self.impostor.receive(frame, &mut self.rng);
        if let Some(submission) = self.impostor.poll_transmit() {
            let submission = submission.to_vec();
            self.refused = net.relay.receive_client(3, &submission).is_err();
        }
    }
}

#[test]
fn the_next_epoch_gives_the_new_member_a_slot_and_none_to_the_removed_one() {
    // The new version's clients are the harness's clients 0..4: client 3 is the new
    // member; the removed member (the harness's client 9) was client 3 of the old version.
    let new_clients = keys(CLIENT, &[0, 1, 2, 3]);
    let trustees = keys(TRUSTEE, &[0, 1]);
    let next = Candidate {
        version: 2,
        digest: [1; 32],
        trustees: &trustees,
        clients: &new_clients,
    };
    assert_eq!(
        verdict(&identity(CLIENT, 9).public(), next),
        Verdict::Removed
    );
    assert_eq!(
        verdict(&identity(CLIENT, 3).public(), next),
        Verdict::Client(3)
    );
    assert_eq!(
        verdict(&identity(TRUSTEE, 1).public(), next),
        Verdict::Trustee(1)
    );

    let spec = EpochSpec {
        clients: 4,
        trustees: 2,
        min_trustees: 2,
        epoch: 2,
        chunk_len: 1024,
        spare: 0,
    };
    let mut net = EpochNet::new(spec, &|_| true, ChaCha20Rng::seed_from_u64(2));
    let impostor = SetupClient::new(
        net.config,
        3,
        identity(CLIENT, 9),
        SetupStorage::with_vecs(&net.config),
    )
    .unwrap();
    let mut driver = WithImpostor {
        impostor,
        rng: ChaCha20Rng::seed_from_u64(9),
        refused: false,
    };
    assert!(net.run(&mut driver).is_empty());
    assert!(driver.refused, "the removed member's submission was taken");
    assert!(net.relay.established().is_some());
    let list: Vec<Vec<u8>> = net.relay.pseudonyms().map(<[u8]>::to_vec).collect();
    assert_eq!(list.len(), 4);
    for (i, c) in net.clients.iter().enumerate() {
        let mine = c.pseudonym().unwrap().public_key().to_bytes();
        assert_eq!(
            list.iter().filter(|k| k[..] == mine[..]).count(),
            1,
            "client {i}"
        );
    }
    assert_eq!(driver.impostor.slot(), None);
    if let Some(k) = driver.impostor.pseudonym() {
        let theirs = k.public_key().to_bytes();
        assert!(list.iter().all(|k| k[..] != theirs[..]));
    }
}

/// A switch drains the running interval: the exchanges in flight finish, no new exchange
/// or interval starts, and every node is then told `Goodbye{Switch}`.
#[test]
fn a_drained_relay_issues_nothing_more_and_says_switch() {
    use dissent_core::testkit::{pattern, Net, NetConfig};
    let mut net = Net::new(NetConfig::new(4, 2, 128));
    let conn = net.open(0);
    net.send_bytes(0, conn, pattern(3, 20_000));
    net.run_until(400_000, |s| {
        s.exit.upstream.get(&conn).is_some_and(|u| u.len() > 1_000)
    });
    let before = net.relay.exchanges_decoded();
    assert!(before > 0);
    net.relay.drain(net.now);
    net.run_until(100_000, |s| s.relay.drained());
    assert!(net.relay.drained());
    let drained = net.relay.exchanges_decoded();
    let sent = net.exit.upstream[&conn].len();
    net.run_steps(20_000);
    assert_eq!(
        net.relay.exchanges_decoded(),
        drained,
        "an exchange after the drain"
    );
    assert_eq!(net.exit.upstream[&conn].len(), sent);
    assert!(sent < 20_000, "the transfer was still running");
    net.relay
        .shutdown_for(dissent_core::wire::GoodbyeReason::Switch);
    net.flush_relay();
    net.run_steps(1_000);
    let told: Vec<_> = net
        .goodbyes
        .iter()
        .filter(|g| g.2 == dissent_core::wire::GoodbyeReason::Switch)
        .map(|g| g.1)
        .collect();
    assert_eq!(told.len(), 6, "every client and trustee is told: {told:?}");
}
