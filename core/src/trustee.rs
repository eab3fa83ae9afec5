//! The trustee role: for every exchange, the XOR of its pads with every online client.
//!
//! Call order for one link to the relay:
//!
//! 1. [`Trustee::handle_connected`], then drain [`Trustee::poll_transmit`] (Hello first).
//! 2. For every frame body received: [`Trustee::handle_frame`], then
//!    [`Trustee::poll_transmit`] until `None`, sending each frame.
//! 3. [`Trustee::handle_disconnected`] when the link drops.
//!
//! A trustee contributes a fresh random nonce to each interval (from the `rng_seed` given at
//! construction), so its pads are never reused even if the relay repeats an interval.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use heapless::{Deque, Vec};

use crate::crypto::{IntervalKey, KeyError, PadKey};
use crate::time::Instant;
use crate::wire::{self, Message, NodeRole, WireError};
use crate::{cell_length_ok, MAX_CLIENTS, MAX_WINDOW, NONCE_LEN};

/// Static configuration of a trustee.
#[derive(Debug, Clone, Copy)]
pub struct TrusteeConfig<'a> {
    /// Index of this trustee in the group's trustee list.
    pub index: u16,
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
    /// This trustee's session secret key.
    pub session_secret: [u8; 32],
    /// Every client's session public key, in client order.
    pub client_keys: &'a [[u8; 32]],
    /// Cell length in bytes.
    pub cell_len: usize,
    /// Fresh randomness from the platform, used for per-interval nonces.
    pub rng_seed: [u8; 32],
    /// Smallest online set this trustee serves: below it, the few clients online would be
    /// easy to tell apart, so the trustee refuses the interval whatever the relay wants.
    pub min_clients: u16,
}

/// Errors in a trustee's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The cell length is outside the protocol limits.
    CellLength,
    /// No clients, or more than [`MAX_CLIENTS`].
    ClientCount,
    /// Key agreement with a client failed.
    Key(KeyError),
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::CellLength => f.write_str("cell length out of range"),
            ConfigError::ClientCount => f.write_str("client count out of range"),
            ConfigError::Key(e) => write!(f, "key agreement: {e}"),
        }
    }
}

impl core::error::Error for ConfigError {}

/// Errors caused by what the relay sent; the link should be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrusteeError {
    /// The frame does not parse.
    Wire(WireError),
    /// A message a trustee never receives, or a request outside an interval.
    Unexpected,
    /// The online set is empty or names unknown clients.
    BadOnlineSet,
    /// The online set is smaller than the trustee's minimum anonymity set.
    TooFewClients {
        /// Clients in the proposed interval.
        online: usize,
        /// The trustee's minimum.
        min: u16,
    },
    /// A request for an interval other than the current one.
    WrongInterval {
        /// The current interval.
        current: u32,
        /// The interval in the request.
        got: u32,
    },
    /// A request out of sequence.
    OutOfOrder {
        /// The exchange expected next.
        expected: u64,
        /// The exchange requested.
        got: u64,
    },
    /// More requests outstanding than [`MAX_WINDOW`].
    WindowExceeded,
}

impl core::fmt::Display for TrusteeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TrusteeError::Wire(e) => write!(f, "bad frame: {e}"),
            TrusteeError::Unexpected => f.write_str("unexpected message"),
            TrusteeError::BadOnlineSet => f.write_str("bad online set"),
            TrusteeError::TooFewClients { online, min } => write!(
                f,
                "interval with {online} clients is below this trustee's minimum of {min}"
            ),
            TrusteeError::WrongInterval { current, got } => {
                write!(f, "request for interval {got}, current is {current}")
            }
            TrusteeError::OutOfOrder { expected, got } => {
                write!(f, "request for exchange {got}, expected {expected}")
            }
            TrusteeError::WindowExceeded => f.write_str("relay exceeded the request window"),
        }
    }
}

impl core::error::Error for TrusteeError {}

impl From<WireError> for TrusteeError {
    fn from(e: WireError) -> Self {
        TrusteeError::Wire(e)
    }
}

#[derive(Debug, Clone, Copy)]
struct Current {
    interval: u32,
    next_exchange: u64,
}

/// Trustee state machine.
pub struct Trustee {
    index: u16,
    group_id: [u8; 16],
    session_id: [u8; 16],
    cell_len: usize,
    min_clients: u16,
    pad_keys: Vec<PadKey, MAX_CLIENTS>,
    interval_keys: Vec<IntervalKey, MAX_CLIENTS>,
    current: Option<Current>,
    rng: ChaCha20,
    hello_pending: bool,
    ready: Option<(u32, [u8; NONCE_LEN])>,
    requests: Deque<u64, MAX_WINDOW>,
}

impl Trustee {
    /// Creates a trustee (computes one key agreement per client).
    pub fn new(config: &TrusteeConfig<'_>) -> Result<Self, ConfigError> {
        if !cell_length_ok(config.cell_len) {
            return Err(ConfigError::CellLength);
        }
        if config.client_keys.is_empty() || config.client_keys.len() > MAX_CLIENTS {
            return Err(ConfigError::ClientCount);
        }
        let pad_keys = PadKey::agree_all(
            &config.session_secret,
            config.client_keys,
            false,
            &config.group_id,
            &config.session_id,
        )
        .map_err(ConfigError::Key)?
        .ok_or(ConfigError::ClientCount)?;
        Ok(Trustee {
            index: config.index,
            group_id: config.group_id,
            session_id: config.session_id,
            cell_len: config.cell_len,
            min_clients: config.min_clients,
            pad_keys,
            interval_keys: Vec::new(),
            current: None,
            rng: ChaCha20::new(&config.rng_seed.into(), &[0u8; 12].into()),
            hello_pending: false,
            ready: None,
            requests: Deque::new(),
        })
    }

    /// The current interval, once one is open.
    pub fn interval(&self) -> Option<u32> {
        self.current.map(|c| c.interval)
    }

    /// The link to the relay is up.
    pub fn handle_connected(&mut self, _now: Instant) {
        self.hello_pending = true;
        self.reset();
    }

    /// The link to the relay is gone.
    pub fn handle_disconnected(&mut self, _now: Instant) {
        self.hello_pending = false;
        self.reset();
    }

    fn reset(&mut self) {
        self.current = None;
        self.ready = None;
        self.requests.clear();
        self.interval_keys.clear();
    }

    /// Handles one frame body from the relay.
    pub fn handle_frame(&mut self, _now: Instant, body: &[u8]) -> Result<(), TrusteeError> {
        match Message::parse(body)? {
            Message::IntervalOpen {
                interval,
                online,
                client_nonces,
            } => {
                if online.is_empty()
                    || online.any_at_or_above(self.pad_keys.len())
                    || client_nonces.len() != online.len()
                {
                    return Err(TrusteeError::BadOnlineSet);
                }
                if online.len() < usize::from(self.min_clients) {
                    return Err(TrusteeError::TooFewClients {
                        online: online.len(),
                        min: self.min_clients,
                    });
                }
                let mut nonce = [0u8; NONCE_LEN];
                // The keystream of one seed lasts 256 GiB: 2^34 intervals.
                self.rng.apply_keystream(&mut nonce);
                self.interval_keys.clear();
                for (i, client_nonce) in online.iter().zip(client_nonces.iter()) {
                    // At most pad_keys.len() <= MAX_CLIENTS members.
                    let _ = self.interval_keys.push(self.pad_keys[i].interval_key(
                        interval,
                        &nonce,
                        client_nonce,
                    ));
                }
                self.requests.clear();
                self.current = Some(Current {
                    interval,
                    next_exchange: 0,
                });
                self.ready = Some((interval, nonce));
                Ok(())
            }
            Message::TrusteeRequest {
                interval, exchange, ..
            } => {
                let Some(cur) = self.current.as_mut() else {
                    return Err(TrusteeError::Unexpected);
                };
                if interval != cur.interval {
                    return Err(TrusteeError::WrongInterval {
                        current: cur.interval,
                        got: interval,
                    });
                }
                if exchange != cur.next_exchange {
                    return Err(TrusteeError::OutOfOrder {
                        expected: cur.next_exchange,
                        got: exchange,
                    });
                }
                self.requests
                    .push_back(exchange)
                    .map_err(|_| TrusteeError::WindowExceeded)?;
                cur.next_exchange += 1;
                Ok(())
            }
            _ => Err(TrusteeError::Unexpected),
        }
    }

    /// Writes the next frame to send into `out` and returns its length.
    ///
    /// `out` must hold at least a frame with one cell (cell length plus 32 bytes).
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<Option<usize>, WireError> {
        if self.hello_pending {
            let n = Message::Hello {
                version: wire::PROTOCOL_VERSION,
                group_id: self.group_id,
                session_id: self.session_id,
                role: NodeRole::Trustee,
                index: self.index,
                nonce: [0; NONCE_LEN],
            }
            .emit_frame(out)?;
            self.hello_pending = false;
            return Ok(Some(n));
        }
        if let Some((interval, nonce)) = self.ready {
            let n = Message::IntervalReady { interval, nonce }.emit_frame(out)?;
            self.ready = None;
            return Ok(Some(n));
        }
        let Some(cur) = self.current else {
            return Ok(None);
        };
        let Some(&exchange) = self.requests.front() else {
            return Ok(None);
        };
        let l = self.cell_len;
        let p = wire::emit_cell_prefix(cur.interval, exchange, l, out)?;
        self.requests.pop_front();
        let cell = &mut out[p..p + l];
        cell.fill(0);
        for key in &self.interval_keys {
            key.apply_pad(exchange, cell);
        }
        Ok(Some(p + l))
    }
}

impl core::fmt::Debug for Trustee {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Trustee")
            .field("index", &self.index)
            .field("interval", &self.interval())
            .finish_non_exhaustive()
    }
}
