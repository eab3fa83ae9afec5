//! Arbitrary frame bodies fed to a client, a trustee and a relay: errors, never panics.
#![no_main]

use dissent_core::client::{Client, ClientConfig, NoUpstream};
use dissent_core::crypto::public_key;
use dissent_core::relay::{NoDownstream, PeerId, Relay, RelayConfig};
use dissent_core::trustee::{Trustee, TrusteeConfig};
use dissent_core::{Duration, Instant};
use libfuzzer_sys::fuzz_target;

const GROUP: [u8; 16] = [7; 16];
const SESSION: [u8; 16] = [8; 16];

fuzz_target!(|data: &[u8]| {
    let clients = [public_key(&[1; 32]), public_key(&[2; 32])];
    let trustees = [public_key(&[3; 32])];
    let now = Instant::from_micros(1);
    let mut client = Client::new(
        &ClientConfig {
            index: 0,
            group_id: GROUP,
            session_id: SESSION,
            session_secret: [1; 32],
            trustee_keys: &trustees,
            slot: 0,
            slots: 2,
            cell_len: 64,
            rng_seed: [4; 32],
        },
        vec![0u8; 64 * 4],
    )
    .expect("client");
    let mut trustee = Trustee::new(&TrusteeConfig {
        index: 0,
        group_id: GROUP,
        session_id: SESSION,
        session_secret: [3; 32],
        client_keys: &clients,
        cell_len: 64,
        rng_seed: [5; 32],
        min_clients: 1,
    })
    .expect("trustee");
    let cfg = RelayConfig {
        group_id: GROUP,
        session_id: SESSION,
        clients: 2,
        trustees: 1,
        slots: 2,
        cell_len: 64,
        client_window: 2,
        trustee_window: 4,
        downstream_len: 256,
        min_clients: 1,
        idle_gap: Duration::from_millis(1),
        exchange_timeout: Duration::from_millis(100),
        first_interval: 1,
    };
    let mut relay = Relay::new(cfg, vec![0u8; cfg.storage_len()]).expect("relay");
    client.handle_connected(now);
    trustee.handle_connected(now);
    let mut out = vec![0u8; cfg.max_frame_len()];
    // The input is a sequence of `len(1) | body` chunks, each delivered to every role.
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        let _ = relay.handle_hello(now, body);
        let _ = relay.handle_frame(now, PeerId::Client(u16::from(len & 1)), body);
        let _ = relay.handle_frame(now, PeerId::Trustee(0), body);
        while relay.poll_event(now).is_some() {}
        while let Ok(Some(_)) = relay.poll_transmit(now, &mut out, &mut NoDownstream) {}
        let _ = client.handle_frame(now, body);
        while client.poll_event().is_some() {}
        while let Ok(Some(_)) = client.poll_transmit(&mut out, &mut NoUpstream) {}
        let _ = trustee.handle_frame(now, body);
        while let Ok(Some(_)) = trustee.poll_transmit(&mut out) {}
    }
});
