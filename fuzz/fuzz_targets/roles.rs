//! Arbitrary frame bodies fed to a client, a trustee and a relay: errors, never panics.
#![no_main]

use dissent_core::client::{Client, ClientConfig, NoUpstream};
use dissent_core::crypto::pad_public_key;
use dissent_core::policy::{LogWindow, Policy};
use dissent_core::relay::{
    LinkId, NoDownstream, PeerId, Relay, RelayConfig, RelayStorage, StallConfig,
};
use dissent_core::trustee::{Trustee, TrusteeConfig};
use dissent_core::{Duration, Instant};
use libfuzzer_sys::fuzz_target;

const GROUP: [u8; 16] = [7; 16];
const SESSION: [u8; 16] = [8; 16];
const MAX_FRAME: u32 = 4096;
/// Every client is its own buddy group; a window the relay's 4 KiB log holds.
const POLICY: Policy = Policy {
    min_anonymity: 1,
    log_window: LogWindow {
        time: Duration::from_millis(1000),
        bytes: 3000,
    },
};

fuzz_target!(|data: &[u8]| {
    let clients = [pad_public_key(&[1; 32]), pad_public_key(&[2; 32])];
    let trustees = [pad_public_key(&[3; 32])];
    let now = Instant::from_micros(1);
    let mut client = Client::with_vecs(&ClientConfig {
        index: 0,
        clients: 2,
        group_id: GROUP,
        session_id: SESSION,
        session_secret: [1; 32],
        trustee_keys: &trustees,
        slot: 0,
        slots: 2,
        cell_len: 128,
        max_frame: MAX_FRAME,
        max_reserved: 2,
        sent_len: 4096,
        replay_len: 4096,
        min_clients: 1,
        policy: POLICY,
        min_anonymity: 0,
        linger: Duration::from_millis(1),
        rng_seed: [4; 32],
    })
    .expect("client");
    let mut trustee = Trustee::with_vecs(&TrusteeConfig {
        index: 0,
        trustees: 1,
        group_id: GROUP,
        session_id: SESSION,
        session_secret: [3; 32],
        client_keys: &clients,
        slots: 2,
        cell_len: 128,
        max_reserved: 2,
        max_frame: MAX_FRAME,
        rng_seed: [5; 32],
        min_clients: 1,
        policy: POLICY,
    })
    .expect("trustee");
    let cfg = RelayConfig {
        group_id: GROUP,
        session_id: SESSION,
        clients: 2,
        trustees: 1,
        slots: 2,
        cell_len: 128,
        max_cell_len: 256,
        window: 4,
        downstream_len: 256,
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
        stall: StallConfig::DEFAULT,
        first_interval: 1,
        epoch: [9; 16],
        policy: POLICY,
    };
    let mut relay = Relay::new(cfg, RelayStorage::with_vecs(&cfg)).expect("relay");
    client.handle_connected(now);
    trustee.handle_connected(now);
    let mut out = vec![0u8; cfg.max_frame_len()];
    // The input is a sequence of `len(1) | body` chunks, each delivered to every role; the
    // relay takes the first as each peer's hello.
    let mut rest = data;
    let mut hello = true;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        for (link, peer) in [
            (LinkId(1), PeerId::Client(u16::from(len & 1))),
            (LinkId(2), PeerId::Trustee(0)),
        ] {
            if hello {
                let _ = relay.handle_hello(now, link, peer, body);
            } else {
                let _ = relay.handle_frame(now, link, peer, body);
            }
        }
        hello = false;
        while relay.poll_event(now).is_some() {}
        while let Ok(Some(_)) = relay.poll_transmit(now, &mut out, &mut NoDownstream) {}
        relay.handle_timeout(now);
        let _ = client.handle_frame(now, body, &mut out);
        while client.poll_replay().is_some() {}
        while client.poll_event().is_some() {}
        while let Ok(Some(_)) = client.poll_transmit(&mut out) {}
        client.prepare(now, &mut NoUpstream);
        let _ = trustee.handle_frame(now, body);
        while trustee.poll_event().is_some() {}
        while let Ok(Some(_)) = trustee.poll_transmit(&mut out) {}
    }
});
