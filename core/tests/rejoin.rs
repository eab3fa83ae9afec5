//! A trustee that lost its established epoch takes it back from the relay's rejoin link:
//! only the epoch it signed itself, with every epoch trustee's record, and the list they
//! signed; anything else the relay could make up is refused.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use dissent_core::epoch::message::{sign_in_place, SetupMessage, MAX_CHUNK_DATA};
use dissent_core::epoch::rejoin::{encode_list, List, Rejoin, RejoinError, LIST_KEYS_PER_FRAME};
use dissent_core::epoch::session;
use dissent_core::testkit::epoch::{identity, Driver, EpochNet, EpochSpec, TRUSTEE};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const EPOCH: u64 = 9;

type Net = EpochNet<ChaCha20Rng>;

/// Forwards every frame honestly and keeps the last `Open` and the records after it, as the
/// hosted relay keeps them for its rejoin links.
#[derive(Default)]
struct Keeper {
    open: Vec<u8>,
    records: Vec<Vec<u8>>,
}

impl Driver<ChaCha20Rng> for Keeper {
    fn broadcast(&mut self, net: &mut Net, frame: &[u8]) {
        match SetupMessage::parse(frame) {
            Ok(SetupMessage::Open(_)) => {
                self.open = frame.to_vec();
                self.records.clear();
            }
            Ok(SetupMessage::Record(_)) => self.records.push(frame.to_vec()),
            _ => {}
        }
        for node in 0..net.nodes() {
            let _ = net.give(node, frame);
        }
    }
}

/// An established setup of `clients` clients and `trustees` trustees, with what the relay
/// keeps of it.
fn established(
    clients: usize,
    trustees: usize,
    participant: &dyn Fn(usize) -> bool,
) -> (Net, Keeper) {
    let spec = EpochSpec {
        clients,
        trustees,
        min_trustees: trustees,
        epoch: EPOCH,
        chunk_len: MAX_CHUNK_DATA,
        spare: 0,
    };
    let mut net = EpochNet::new(spec, participant, ChaCha20Rng::seed_from_u64(5));
    let mut keeper = Keeper::default();
    assert!(net.run(&mut keeper).is_empty());
    assert!(net.relay.established().is_some());
    (net, keeper)
}

/// The `List` frames of the relay's pseudonym list, `per` keys a frame.
fn list_frames(net: &Net, per: usize) -> Vec<Vec<u8>> {
    let e = net.relay.established().unwrap();
    let keys: Vec<u8> = net.relay.pseudonyms().flatten().copied().collect();
    keys.chunks(32 * per)
        .enumerate()
        .map(|(n, chunk)| {
            let mut out = vec![0u8; 4096];
            let len = encode_list(e.epoch, e.attempt, (n * per) as u16, chunk, &mut out).unwrap();
            out.truncate(len);
            out
        })
        .collect()
}

/// The epoch taken back, its list and its participants.
type TakenBack = (dissent_core::epoch::Established, Vec<Vec<u8>>, Vec<u8>);

/// Feeds `frames` to trustee `own`'s rejoin: its outcome and, if back, its list and
/// participants.
fn rejoin(net: &Net, own: u8, frames: &[Vec<u8>]) -> Result<TakenBack, RejoinError> {
    let storage = vec![0u8; Rejoin::<Vec<u8>>::storage_len(&net.config)];
    let mut r = Rejoin::new(net.config, own, storage).unwrap();
    for f in frames {
        if let Some(e) = r.receive(f)? {
            let list = r.pseudonyms().map(<[u8]>::to_vec).collect();
            return Ok((e, list, r.participants().to_vec()));
        }
    }
    Err(r.ended())
}

fn honest_frames(keeper: &Keeper, net: &Net, per: usize) -> Vec<Vec<u8>> {
    let mut frames = vec![keeper.open.clone()];
    frames.extend(keeper.records.iter().cloned());
    frames.extend(list_frames(net, per));
    frames
}

#[test]
fn a_trustee_takes_back_the_epoch_it_signed_with_the_same_session_id_and_list() {
    let (net, keeper) = established(10, 3, &|i| i != 4);
    let relay = net.relay.established().unwrap();
    let list: Vec<Vec<u8>> = net.relay.pseudonyms().map(<[u8]>::to_vec).collect();
    assert_eq!(list.len(), 9);
    for per in [1, 4, LIST_KEYS_PER_FRAME] {
        for own in 0..3u8 {
            let (e, got, participants) = rejoin(&net, own, &honest_frames(&keeper, &net, per))
                .unwrap_or_else(|e| panic!("trustee {own}, {per} a frame: {e}"));
            assert_eq!(e, relay);
            assert_eq!(
                session::session_id(&net.config.group, &e),
                session::session_id(
                    &net.config.group,
                    &net.trustees[own as usize].established().unwrap()
                )
            );
            assert_eq!(got, list);
            assert_eq!(participants, net.relay.participants().to_vec());
        }
    }
    // The records in another order are as good.
    let mut frames = honest_frames(&keeper, &net, 3);
    frames[1..4].reverse();
    assert!(rejoin(&net, 1, &frames).is_ok());
}

#[test]
fn what_the_relay_could_make_up_is_refused() {
    let (net, keeper) = established(6, 2, &|_| true);
    let honest = honest_frames(&keeper, &net, 2);
    // frames: Open, record, record, list ×3
    assert_eq!(honest.len(), 6);

    // Without any record, or without one trustee's: incomplete.
    let mut without = honest.clone();
    without.remove(2);
    assert_eq!(
        rejoin(&net, 0, &without).unwrap_err(),
        RejoinError::Incomplete
    );
    // A list frame short: incomplete.
    assert_eq!(
        rejoin(&net, 0, &honest[..5]).unwrap_err(),
        RejoinError::Incomplete
    );
    // Records before the Open, or the Open twice: out of order.
    let mut swapped = honest.clone();
    swapped.swap(0, 1);
    assert_eq!(
        rejoin(&net, 0, &swapped).unwrap_err(),
        RejoinError::Unexpected
    );
    let mut twice = honest.clone();
    twice.insert(1, honest[0].clone());
    assert_eq!(
        rejoin(&net, 0, &twice).unwrap_err(),
        RejoinError::Unexpected
    );
    // A record duplicated: out of order.
    let mut dup = honest.clone();
    dup.insert(2, honest[1].clone());
    assert_eq!(rejoin(&net, 0, &dup).unwrap_err(), RejoinError::Unexpected);

    // A bit flipped anywhere in a record: its signature fails (or it no longer parses as
    // one of this attempt).
    for bit in (0..honest[1].len() * 8).step_by(37) {
        let mut altered = honest.clone();
        altered[1][bit / 8] ^= 1 << (bit % 8);
        assert!(rejoin(&net, 1, &altered).is_err(), "bit {bit}");
    }
    // A key of the list changed, or two keys swapped: not the list the records sign.
    let mut keys = honest.clone();
    let last = keys.len() - 1;
    let at = keys[last].len() - 1;
    keys[last][at] ^= 1;
    assert_eq!(rejoin(&net, 0, &keys).unwrap_err(), RejoinError::WrongList);
    let mut frames = vec![keeper.open.clone()];
    frames.extend(keeper.records.iter().cloned());
    let mut lists = list_frames(&net, 1);
    lists.swap(0, 1);
    // Swapped frames keep their `first`: refused as out of order.
    frames.extend(lists);
    assert_eq!(
        rejoin(&net, 0, &frames).unwrap_err(),
        RejoinError::Unexpected
    );

    // An Open that leaves this trustee out: not its epoch to take back.
    let mut open = keeper.open.clone();
    if let Ok(SetupMessage::Open(o)) = SetupMessage::parse(&keeper.open) {
        let at = 10 + 32; // header, group: the trustees bitmap (u16 BE)
        let without = o.trustees & !1;
        open[at..at + 2].copy_from_slice(&without.to_be_bytes());
    }
    let mut frames = honest.clone();
    frames[0] = open;
    assert_eq!(
        rejoin(&net, 0, &frames).unwrap_err(),
        RejoinError::NotAnEpochTrustee
    );

    // A record the relay signs with a key of its own making: its signature fails; one a
    // trustee signed over another list: a disagreement.
    let mut forged = honest.clone();
    let mut record = forged[2].clone();
    sign_in_place(&mut record, &net.config.group, &identity(TRUSTEE, 99));
    forged[2] = record;
    assert_eq!(
        rejoin(&net, 0, &forged).unwrap_err(),
        RejoinError::BadSignature { trustee: 1 }
    );
    let mut other = honest.clone();
    let mut record = other[2].clone();
    let list_at = 10 + 1 + 32;
    record[list_at] ^= 1;
    sign_in_place(&mut record, &net.config.group, &identity(TRUSTEE, 1));
    other[2] = record;
    assert_eq!(
        rejoin(&net, 0, &other).unwrap_err(),
        RejoinError::Disagreement { trustee: 1 }
    );

    // Frames of another epoch: refused.
    let e = net.relay.established().unwrap();
    let keys: Vec<u8> = net.relay.pseudonyms().flatten().copied().collect();
    let mut out = vec![0u8; 4096];
    let len = encode_list(e.epoch + 1, e.attempt, 0, &keys, &mut out).unwrap();
    let mut frames = vec![keeper.open.clone()];
    frames.extend(keeper.records.iter().cloned());
    frames.push(out[..len].to_vec());
    assert_eq!(
        rejoin(&net, 0, &frames).unwrap_err(),
        RejoinError::Unexpected
    );
}

#[test]
fn a_list_frame_has_a_pinned_layout_and_random_bytes_never_panic() {
    let mut out = [0u8; 64];
    let len = encode_list(0x0102_0304_0506_0708, 3, 0x0a0b, &[0x55; 32], &mut out).unwrap();
    let mut expected = vec![7, 1, 2, 3, 4, 5, 6, 7, 8, 3, 0x0a, 0x0b];
    expected.extend([0x55; 32]);
    assert_eq!(&out[..len], &expected[..]);
    let list = List::parse(&out[..len]).unwrap();
    assert_eq!(
        (list.epoch, list.attempt, list.first),
        (0x0102_0304_0506_0708, 3, 0x0a0b)
    );
    assert!(List::parse(&out[..len - 1]).is_err());
    assert!(encode_list(1, 0, 0, &[0; 33], &mut out).is_err());
    assert!(encode_list(1, 0, 0, &[0; 32], &mut out[..40]).is_err());

    let (net, _) = established(3, 2, &|_| true);
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    use rand_chacha::rand_core::RngCore;
    for _ in 0..2000 {
        let mut frame = vec![0u8; (rng.next_u32() % 200) as usize];
        rng.fill_bytes(&mut frame);
        if let Some(b) = frame.first_mut() {
            *b = (*b % 8).max(1);
        }
        let _ = rejoin(&net, 0, &[frame]);
    }
}
