//! The epoch setup in memory: a relay, M trustees and N clients with their storage and
//! identities, and the frames between them (feature `testkit`).
//!
//! The epoch tests and the epoch benchmark both drive this one harness. [`EpochNet::run`]
//! moves every frame: the relay's own broadcasts and the trustees' frames it forwards go to
//! the nodes, the trustees' and clients' frames go to the relay. How a broadcast frame reaches
//! the nodes is the [`Driver`]'s: a test makes the relay misbehave there and watches for
//! convictions, a benchmark times each role's work. The harness owns no assertion about the
//! protocol; it holds no clock and no network.
//!
//! Its few `expect`s and panics are on its own set-up (a group a test got wrong, a buffer
//! too small, an honest client refused, a setup that never settles), never on bytes from a
//! network: the role code it drives returns errors instead.

use std::boxed::Box;
use std::vec;
use std::vec::Vec;

use rand_core::CryptoRngCore;

use crate::bits::bitmap_len;
use crate::epoch::identity::Ed25519Identity;
use crate::epoch::message::CHUNK_HEADER_LEN;
use crate::epoch::{
    Event, Failure, RelayStep, SetupClient, SetupConfig, SetupRelay, SetupStorage, SetupTrustee,
};
use crate::ristretto::shuffle::ProverSlot;

/// A trustee of the harness.
pub type Trustee = SetupTrustee<'static, Vec<u8>, Vec<ProverSlot>, Ed25519Identity>;
/// A client of the harness.
pub type Client = SetupClient<'static, Vec<u8>, Ed25519Identity>;

/// Group id of every harness setup.
pub const GROUP: [u8; 32] = [0x47; 32];
/// The identity role byte of trustees (see [`identity`]).
pub const TRUSTEE: u8 = 1;
/// The identity role byte of clients (see [`identity`]).
pub const CLIENT: u8 = 2;
/// Room for any frame of a harness setup.
pub const FRAME_ROOM: usize = CHUNK_HEADER_LEN + 32 * 1024;
/// Rounds of [`EpochNet::run`] before it gives up on a setup that never settles.
const MAX_ROUNDS: usize = 100_000;

/// The fixed identity of node `i` of `role` ([`TRUSTEE`] or [`CLIENT`]).
pub fn identity(role: u8, i: usize) -> Ed25519Identity {
    let mut seed = [role; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Ed25519Identity::from_seed(&seed)
}

/// What one harness setup is about.
#[derive(Debug, Clone, Copy)]
pub struct EpochSpec {
    /// Clients.
    pub clients: usize,
    /// Trustees.
    pub trustees: usize,
    /// Fewest trustees the setup may go on with.
    pub min_trustees: usize,
    /// The epoch.
    pub epoch: u64,
    /// Largest chunk of a stage.
    pub chunk_len: usize,
    /// Bytes every node's storage regions get beyond what the group needs, and prover
    /// slots beyond one per client (a device sizes them for the largest group it takes).
    pub spare: usize,
}

/// Storage of the lengths `config` needs and `spare` bytes more in each region.
fn storage(config: &SetupConfig<'_>, spare: usize) -> SetupStorage<Vec<u8>> {
    let lens = config.storage_lens();
    SetupStorage {
        participants: vec![0u8; lens.participants + spare],
        rows: vec![0u8; lens.rows + spare],
        stage: vec![0u8; lens.stage + spare],
    }
}

/// How the relay's broadcast reaches the nodes, and what is watched around each role's work.
pub trait Driver<R> {
    /// Gives one frame of the relay's broadcast (its own, or a trustee's it forwarded) to the
    /// nodes, e.g. with [`EpochNet::give`] for each node.
    fn broadcast(&mut self, net: &mut EpochNet<R>, frame: &[u8]);

    /// Around trustee `trustee` making its next frame (`make` returns its length, or `None`
    /// when it has nothing to send).
    fn transmit(
        &mut self,
        trustee: usize,
        make: &mut dyn FnMut() -> Option<usize>,
    ) -> Option<usize> {
        let _ = trustee;
        make()
    }

    /// Client `client`'s submission reached the relay.
    fn submitted(&mut self, client: usize) {
        let _ = client;
    }
}

/// A relay, its trustees and clients, and the randomness the nodes draw from.
pub struct EpochNet<R> {
    /// What every node sets up.
    pub config: SetupConfig<'static>,
    /// The relay.
    pub relay: SetupRelay<'static, Vec<u8>>,
    /// The trustees: nodes `0..M`.
    pub trustees: Vec<Trustee>,
    /// The clients: nodes `M..M + N`.
    pub clients: Vec<Client>,
    /// The randomness every node draws from.
    pub rng: R,
}

impl<R: CryptoRngCore> EpochNet<R> {
    /// Builds the relay, trustees and clients of `spec`; the clients `participant` accepts
    /// are the relay's participants.
    pub fn new(spec: EpochSpec, participant: &dyn Fn(usize) -> bool, rng: R) -> Self {
        let trustee_ids: Vec<[u8; 32]> = (0..spec.trustees)
            .map(|j| identity(TRUSTEE, j).public())
            .collect();
        let client_ids: Vec<[u8; 32]> = (0..spec.clients)
            .map(|i| identity(CLIENT, i).public())
            .collect();
        let config = SetupConfig {
            group: GROUP,
            epoch: spec.epoch,
            trustees: Box::leak(trustee_ids.into_boxed_slice()),
            clients: Box::leak(client_ids.into_boxed_slice()),
            min_trustees: spec.min_trustees,
            chunk_len: spec.chunk_len,
        };
        let mut participants = vec![0u8; bitmap_len(spec.clients)];
        for i in (0..spec.clients).filter(|&i| participant(i)) {
            participants[i / 8] |= 1 << (i % 8);
        }
        let relay = SetupRelay::new(
            config,
            SetupStorage::with_vecs(&config),
            vec![0u8; SetupRelay::<Vec<u8>>::collected_len(&config)],
            &participants,
        )
        // Harness set-up only (never bytes from a network): a failure is a test's mistake.
        .expect("the relay takes the harness's group");
        let trustees = (0..spec.trustees)
            .map(|j| {
                SetupTrustee::new(
                    config,
                    j as u8,
                    identity(TRUSTEE, j),
                    storage(&config, spec.spare),
                    vec![ProverSlot::EMPTY; spec.clients + spec.spare],
                )
                // Harness set-up only (never bytes from a network): a failure is a test's mistake.
                .expect("a trustee takes the harness's group")
            })
            .collect();
        let clients = (0..spec.clients)
            .map(|i| {
                SetupClient::new(
                    config,
                    i as u16,
                    identity(CLIENT, i),
                    storage(&config, spec.spare),
                )
                // Harness set-up only (never bytes from a network): a failure is a test's mistake.
                .expect("a client takes the harness's group")
            })
            .collect();
        EpochNet {
            config,
            relay,
            trustees,
            clients,
            rng,
        }
    }

    /// Nodes: trustees, then clients.
    pub fn nodes(&self) -> usize {
        self.trustees.len() + self.clients.len()
    }

    /// Node `node` (trustees first, then clients) receives `frame`.
    pub fn give(&mut self, node: usize, frame: &[u8]) -> Result<Event, Failure> {
        let trustees = self.trustees.len();
        if node < trustees {
            self.trustees[node].receive(frame, &mut self.rng)
        } else {
            self.clients[node - trustees].receive(frame, &mut self.rng)
        }
    }

    /// Moves frames until nothing moves: each round, the relay's broadcasts, then each
    /// trustee's frames through the relay (forwarded ones broadcast), then each client's
    /// submission. Returns the relay's steps that refused a trustee's frame (not forwarded)
    /// or stopped the setup.
    pub fn run(&mut self, driver: &mut impl Driver<R>) -> Vec<RelayStep> {
        let mut buf = vec![0u8; FRAME_ROOM];
        let mut notes = Vec::new();
        for _round in 0..MAX_ROUNDS {
            let mut progress = false;
            while let Some(len) = self
                .relay
                .poll_broadcast(&mut buf)
                // Harness set-up only (never bytes from a network): a failure is a test's mistake.
                .expect("the harness's buffer holds every frame")
            {
                let frame = buf[..len].to_vec();
                driver.broadcast(self, &frame);
                progress = true;
            }
            for j in 0..self.trustees.len() {
                loop {
                    let trustee = &mut self.trustees[j];
                    let made = driver.transmit(j, &mut || {
                        trustee
                            .poll_transmit(&mut buf)
                            // Harness set-up only (never bytes from a network): a failure is a test's mistake.
                            .expect("the harness's buffer holds every frame")
                    });
                    let Some(len) = made else {
                        break;
                    };
                    let frame = buf[..len].to_vec();
                    progress = true;
                    match self.relay.receive_trustee(j as u8, &frame) {
                        RelayStep::Refuse(f) => notes.push(RelayStep::Refuse(f)),
                        step => {
                            if let RelayStep::ForwardAndStop(_) = step {
                                notes.push(step);
                            }
                            driver.broadcast(self, &frame);
                        }
                    }
                }
            }
            for i in 0..self.clients.len() {
                if let Some(frame) = self.clients[i].poll_transmit() {
                    let frame = frame.to_vec();
                    progress = true;
                    if let Err(e) = self.relay.receive_client(i as u16, &frame) {
                        panic!("honest client {i} refused: {e:?}");
                    }
                    driver.submitted(i);
                }
            }
            if !progress {
                // A frame a driver held back with nothing after it never arrives.
                return notes;
            }
        }
        panic!("setup did not settle");
    }
}
