//! The setup messages' parser, and arbitrary frames fed to every setup role.
//!
//! A frame that parses re-encodes to the same bytes; nothing panics; arbitrary bytes never
//! establish an epoch (every signed message needs an identity signature).
#![no_main]

use dissent_core::epoch::identity::Ed25519Identity;
use dissent_core::epoch::message::SetupMessage;
use dissent_core::epoch::{SetupClient, SetupConfig, SetupRelay, SetupStorage, SetupTrustee};
use dissent_core::ristretto::shuffle::ProverSlot;
use libfuzzer_sys::fuzz_target;
use rand_core::{CryptoRng, RngCore};

/// A counter as randomness: the fuzzer explores frames, not keys.
struct Counter(u64);

impl RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.next_u64() as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for Counter {}

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = SetupMessage::parse(data) {
        let mut again = vec![0u8; data.len()];
        assert_eq!(message.encode(&mut again), Ok(data.len()));
        assert_eq!(again, data);
    }
    let trustees = [Ed25519Identity::from_seed(&[1; 32]).public()];
    let clients = [
        Ed25519Identity::from_seed(&[2; 32]).public(),
        Ed25519Identity::from_seed(&[3; 32]).public(),
    ];
    let config = SetupConfig {
        group: [0x47; 32],
        epoch: 7,
        trustees: &trustees,
        clients: &clients,
        min_trustees: 1,
        chunk_len: 64,
    };
    let mut rng = Counter(1);
    let mut relay = SetupRelay::new(
        config,
        SetupStorage::with_vecs(&config),
        vec![0u8; SetupRelay::<Vec<u8>>::collected_len(&config)],
        &[0b11],
    )
    .unwrap();
    let mut open = [0u8; 128];
    let len = relay.poll_broadcast(&mut open).unwrap().unwrap();
    let open = &open[..len];
    let mut trustee = SetupTrustee::new(
        config,
        0,
        Ed25519Identity::from_seed(&[1; 32]),
        SetupStorage::with_vecs(&config),
        vec![ProverSlot::EMPTY; 2],
    )
    .unwrap();
    let mut client = SetupClient::new(
        config,
        0,
        Ed25519Identity::from_seed(&[2; 32]),
        SetupStorage::with_vecs(&config),
    )
    .unwrap();
    let _ = trustee.receive(open, &mut rng);
    let _ = client.receive(open, &mut rng);
    // The input, whole and cut into pieces, to every role.
    for frame in core::iter::once(data).chain(data.chunks(64)) {
        let _ = relay.receive_trustee(0, frame);
        let _ = relay.receive_client(0, frame);
        let _ = trustee.receive(frame, &mut rng);
        let _ = client.receive(frame, &mut rng);
    }
    assert!(relay.established().is_none());
    assert!(client.established().is_none());
});
