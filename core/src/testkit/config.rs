//! The test net's configuration and how its nodes are built from it: each node's fixed
//! secrets, the relay, the clients (feature `testkit`; set-up only, so each `expect` is a
//! test's own mistake, never bytes from a network).

use std::vec;
use std::vec::Vec;

use super::{GROUP, SESSION};
use crate::client::{Client, ClientConfig};
use crate::crypto::pad_public_key;
use crate::identity::identity_public_key;
use crate::policy::{LogWindow, Policy};
use crate::relay::{Peer, PeerId, Relay, RelayConfig, RelayStorage, StallConfig};
use crate::Duration;

/// A fixed secret for test node `i` of kind `tag`.
pub fn secret(tag: u8, i: usize) -> [u8; 32] {
    let mut s = [0u8; 32];
    for (k, b) in s.iter_mut().enumerate() {
        *b = tag
            ^ (i as u8).wrapping_mul(31)
            ^ ((i >> 8) as u8).wrapping_mul(7)
            ^ (k as u8).wrapping_mul(17)
            ^ 0x5a;
    }
    s
}

/// Parameters of a test net.
#[derive(Debug, Clone, Copy)]
pub struct NetConfig {
    /// Clients (each owns one slot).
    pub clients: usize,
    /// Trustees.
    pub trustees: usize,
    /// Base cell length.
    pub cell_len: usize,
    /// Longest cell an owner may ask for.
    pub max_cell_len: usize,
    /// Exchanges in flight.
    pub window: u16,
    /// Largest downstream record.
    pub downstream_len: usize,
    /// Frame limit every node declares.
    pub max_frame: u32,
    /// One-way latency of every link.
    pub latency: Duration,
    /// The relay's idle gap.
    pub idle_gap: Duration,
    /// The relay's exchange timeout.
    pub exchange_timeout: Duration,
    /// How long joiners wait for the running interval to end.
    pub join_delay: Duration,
    /// Reservation period.
    pub period: u16,
    /// Slots admitted per reservation.
    pub admit: u16,
    /// Most slots reserved.
    pub capacity: u16,
    /// How long a client keeps its slot after its last data.
    pub linger: Duration,
    /// Minimum clients of relay, trustees and clients.
    pub min_clients: u16,
    /// Sent-cell ring of each client.
    pub ring_len: usize,
    /// Replay buffer of each client.
    pub replay_len: usize,
    /// The relay's downstream log.
    pub log_len: usize,
    /// Most bytes of cells per exchange.
    pub exchange_budget: usize,
    /// The group's policy (anonymity minimum and log window) every node is given.
    pub policy: Policy,
    /// Each client's own anonymity minimum (0: the group's).
    pub min_anonymity: u16,
    /// Most frames the relay's shell queues for one link, as a hosted relay's send queue:
    /// a frame beyond them drops the node as too slow. `None`: no limit.
    pub queue_limit: Option<usize>,
    /// How the relay cuts stragglers and backs off members that stall.
    pub stall: StallConfig,
    /// How late a client that disrupts slowly (`DisruptorMode::Slow`) sends each cell.
    pub slow_delay: Duration,
    /// The relay instance (its trap secrets derive from it).
    pub epoch: [u8; 16],
    /// Owned cells each client keeps for accusations and blame rounds: `None`, the keep
    /// horizon of the net's window (`blame::keep_horizon`, what an interval needs);
    /// `Some(n)`, `n` (fewer than the horizon: the client refuses the interval).
    pub kept_cells: Option<usize>,
    /// Client `i` owns slot `(i × step + slot_shift) mod clients` (`step` the least
    /// number above 1 prime to the count): which client owns which slot.
    pub slot_shift: usize,
}

impl NetConfig {
    /// A small net of `clients` clients and `trustees` trustees with `cell_len`-byte cells.
    pub fn new(clients: usize, trustees: usize, cell_len: usize) -> Self {
        NetConfig {
            clients,
            trustees,
            cell_len,
            max_cell_len: (cell_len * 16).min(8192).max(cell_len),
            window: 8,
            downstream_len: 4096,
            max_frame: 16 * 1024,
            latency: Duration::from_micros(200),
            idle_gap: Duration::from_millis(1),
            exchange_timeout: Duration::from_millis(500),
            join_delay: Duration::from_millis(2),
            period: 16,
            admit: 64,
            capacity: 64,
            linger: Duration::from_millis(5),
            min_clients: 1,
            ring_len: 64 * 1024,
            replay_len: 64 * 1024,
            log_len: 256 * 1024,
            exchange_budget: usize::MAX,
            policy: Policy {
                min_anonymity: 1,
                log_window: LogWindow {
                    time: Duration::from_millis(60_000),
                    bytes: 128 * 1024,
                },
            },
            min_anonymity: 0,
            queue_limit: None,
            stall: StallConfig::DEFAULT,
            slow_delay: Duration::from_millis(9_500),
            epoch: [9; 16],
            kept_cells: None,
            slot_shift: 3,
        }
    }

    /// The log window's size that a log of `log_len` bytes holds (for tests that shrink
    /// the log).
    pub fn window_for_log(log_len: usize, downstream_len: usize) -> u64 {
        (log_len.saturating_sub(2 * (25 + downstream_len))) as u64
    }
}

/// The relay configuration of a net of `cfg`, starting at interval `first`.
pub(super) fn relay_config(cfg: &NetConfig, first: u32) -> RelayConfig {
    let (n, m) = (cfg.clients, cfg.trustees);
    RelayConfig {
        group_id: GROUP,
        session_id: SESSION,
        clients: n as u16,
        trustees: m as u16,
        slots: n as u16,
        cell_len: cfg.cell_len,
        max_cell_len: cfg.max_cell_len,
        window: cfg.window,
        downstream_len: cfg.downstream_len,
        min_clients: cfg.min_clients,
        idle_gap: cfg.idle_gap,
        idle_budget: 1 << 30,
        exchange_budget: cfg.exchange_budget,
        exchange_timeout: cfg.exchange_timeout,
        join_delay: cfg.join_delay,
        probe_timeout: Duration::from_millis(100),
        period: cfg.period,
        admit: cfg.admit,
        capacity: cfg.capacity,
        log_len: cfg.log_len,
        policy: cfg.policy,
        first_interval: first,
        epoch: cfg.epoch,
        stall: cfg.stall,
    }
}

/// The relay of a net of `cfg` whose slots are `slots`, starting at interval `first`.
pub(super) fn new_relay(cfg: &NetConfig, slots: &[u16], first: u32) -> Relay<Vec<Peer>, Vec<u8>> {
    let n = cfg.clients;
    let m = cfg.trustees;
    let client_pubs: Vec<_> = (0..n).map(|i| pad_public_key(&secret(1, i))).collect();
    let trustee_pubs: Vec<_> = (0..m).map(|j| pad_public_key(&secret(2, j))).collect();
    let rcfg = relay_config(cfg, first);
    // Harness set-up only (never bytes from a network): a failure is a test's mistake.
    let mut relay = Relay::new(rcfg, RelayStorage::with_vecs(&rcfg)).expect("relay configuration");
    relay
        .set_dh_secret(&relay_dh_secret())
        .expect("relay DH secret");
    relay.set_fingerprint_secret(&secret(9, 0));
    for (i, &slot) in slots.iter().enumerate() {
        relay
            .set_pseudonym(slot, &pad_public_key(&pseudonym_secret(i)))
            .expect("pseudonym slot");
    }
    for (i, dh) in client_pubs.iter().enumerate() {
        relay
            .set_node_keys(
                PeerId::Client(i as u16),
                &identity_public_key(&client_identity(i)),
                dh,
            )
            .expect("client keys");
    }
    for (j, dh) in trustee_pubs.iter().enumerate() {
        relay
            .set_node_keys(
                PeerId::Trustee(j as u16),
                &identity_public_key(&trustee_identity(j)),
                dh,
            )
            .expect("trustee keys");
    }
    relay
}

/// Client `i` of a net of `cfg`.
pub(super) fn new_client(
    cfg: &NetConfig,
    i: usize,
    session_secret: [u8; 32],
    trustee_pubs: &[[u8; 32]],
    slot: u16,
    rng_seed: [u8; 32],
) -> Client<Vec<u8>> {
    let c = ClientConfig {
        index: i as u16,
        clients: cfg.clients as u16,
        group_id: GROUP,
        session_id: SESSION,
        session_secret,
        trustee_keys: trustee_pubs,
        slot,
        slots: cfg.clients as u16,
        cell_len: cfg.cell_len,
        max_frame: cfg.max_frame,
        max_reserved: cfg.capacity,
        sent_len: cfg.ring_len,
        replay_len: cfg.replay_len,
        min_clients: cfg.min_clients,
        policy: cfg.policy,
        min_anonymity: cfg.min_anonymity,
        linger: cfg.linger,
        rng_seed,
    };
    // Harness set-up only (never bytes from a network): a failure is a test's mistake.
    let mut client = Client::with_vecs(&c).expect("client configuration");
    // What the window needs kept, of the net's longest cell, no more (a net of thousands
    // of clients stays small).
    let kept = cfg
        .kept_cells
        .unwrap_or(crate::blame::keep_horizon(cfg.window));
    let sealed = vec![0; Client::<Vec<u8>>::sealed_len_at(cfg.max_cell_len, kept)];
    client
        .set_pseudonym(
            &pseudonym_secret(i),
            &pad_public_key(&relay_dh_secret()),
            sealed,
        )
        .expect("pseudonym key");
    client
}

/// Client `i`'s identity secret in a net.
pub fn client_identity(i: usize) -> [u8; 32] {
    secret(10, i)
}

/// Trustee `j`'s identity secret in a net.
pub fn trustee_identity(j: usize) -> [u8; 32] {
    secret(11, j)
}

/// Client `i`'s pseudonym secret in a net.
pub fn pseudonym_secret(i: usize) -> [u8; 32] {
    secret(5, i)
}

/// The relay's Ristretto255 DH secret in a net (its public key seals the slots' cells).
pub fn relay_dh_secret() -> [u8; 32] {
    secret(6, 0)
}
