//! Dialling the relay: one reconnect policy for every node, the Noise handshake, and log
//! lines that say what is wrong.
//!
//! When to dial is decided by `dissent_core::backoff` (exponential, jittered, with a longer
//! cap once the relay keeps refusing the handshake). A node is said to be connected only
//! once the handshake succeeded; a refused handshake names its likely cause.

use std::time::Duration;

use dissent_core::backoff::{Backoff, BackoffConfig};
use dissent_core::wire::GoodbyeReason;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::clock;
use crate::link::{self, HandshakeError, LinkReader, LinkSink};

/// Keys a node needs to open its link to the relay.
#[derive(Clone, Copy)]
pub struct LinkKeys {
    /// The node's long-term secret.
    pub own: [u8; 32],
    /// The relay's long-term public key.
    pub relay: [u8; 32],
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
}

/// An established link: frames in, frames out through a sink written in place.
pub struct Connected {
    /// Frame bodies from the relay.
    pub frames: LinkReader<OwnedReadHalf>,
    /// Frames to the relay.
    pub sink: LinkSink<OwnedWriteHalf>,
}

/// How a node's link ended.
pub enum End {
    /// The process is stopping (Ctrl-C).
    Shutdown,
    /// The link failed, for this reason.
    Lost(String),
    /// The relay ended the link, for this reason.
    Goodbye(GoodbyeReason),
}

impl Connected {
    /// How the link ended after reading or writing failed with `why`: a goodbye the relay
    /// sent before closing (say, after it replaced a process that was stopped), looked for
    /// among its last frames for at most 200 ms, or the failure.
    pub async fn ended(&mut self, why: String) -> End {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        loop {
            match tokio::time::timeout_at(deadline, self.frames.next()).await {
                Ok(Ok(Some(body))) => {
                    if let Some(r) = dissent_core::wire::goodbye_reason(&body) {
                        return End::Goodbye(r);
                    }
                }
                _ => return End::Lost(why),
            }
        }
    }
}

/// The error a node's role ends with when the relay announced a switch
/// (`Goodbye{Switch}`): the shell fetches the group's next version and sets up its epoch.
#[derive(Debug, Clone, Copy)]
pub struct Switching;

impl std::fmt::Display for Switching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the relay announced a switch to a new version of the group")
    }
}

impl std::error::Error for Switching {}

/// Says why a node's link ended (a lost link only unless `quiet`; a shutdown is the
/// caller's to report). An error when this process must stop: another process of the node
/// holds its place.
pub fn after_link(id: &str, end: &End, quiet: bool) -> anyhow::Result<()> {
    match end {
        End::Shutdown => {}
        End::Goodbye(GoodbyeReason::Switch) => return Err(anyhow::Error::new(Switching)),
        End::Goodbye(r) if r.ends_the_process() => anyhow::bail!("{id}: {r}; this process stops"),
        End::Goodbye(r @ GoodbyeReason::ShuttingDown) => {
            info!("{r}; reconnecting when it is back")
        }
        End::Goodbye(r) => warn!("the relay ended the link: {r}"),
        End::Lost(reason) => {
            if !quiet {
                warn!("relay link lost: {reason}");
            }
        }
    }
    Ok(())
}

/// How the last dial ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LastTry {
    None,
    Unreachable,
    Refused,
    Lost,
}

/// Dials the relay for one node, as often as the backoff policy allows.
pub struct Dialer {
    relay: String,
    keys: LinkKeys,
    backoff: Backoff,
    origin: tokio::time::Instant,
    next: tokio::time::Instant,
    /// Failures since the last link that came up.
    failures: u32,
    /// Log routine failures at debug only (many nodes in one process).
    quiet: bool,
    last: LastTry,
}

impl Dialer {
    /// A dialer for `relay` (`host:port`); `seed` is fresh randomness for the jitter.
    pub fn new(relay: String, keys: LinkKeys, seed: [u8; 32], quiet: bool) -> Self {
        Self::with_backoff(relay, keys, seed, quiet, BackoffConfig::default())
    }

    /// A dialer with its own backoff policy (a node waiting for the relay to reach its
    /// setup redials within a second, so that a switch's pause stays short).
    pub fn with_backoff(
        relay: String,
        keys: LinkKeys,
        seed: [u8; 32],
        quiet: bool,
        backoff: BackoffConfig,
    ) -> Self {
        let origin = tokio::time::Instant::now();
        Dialer {
            relay,
            keys,
            backoff: Backoff::new(backoff, seed),
            origin,
            next: origin,
            failures: 0,
            quiet,
            last: LastTry::None,
        }
    }

    fn at(&self, t: dissent_core::Instant) -> tokio::time::Instant {
        clock::tokio_at(self.origin, t)
    }

    fn now(&self) -> dissent_core::Instant {
        clock::core_now(self.origin)
    }

    /// Waits for the next dial time, then dials and runs the handshake, until a link is up.
    pub async fn dial(&mut self) -> Connected {
        loop {
            tokio::time::sleep_until(self.next).await;
            let stream = match TcpStream::connect(&self.relay).await {
                Ok(s) => s,
                Err(e) => {
                    self.failures += 1;
                    self.last = LastTry::Unreachable;
                    let next = self.backoff.handle_connect_failed(self.now());
                    self.next = self.at(next);
                    let wait = self
                        .next
                        .saturating_duration_since(tokio::time::Instant::now());
                    if self.failures == 1 && !self.quiet {
                        info!(
                            "relay {} not reachable yet ({e}); retrying with backoff",
                            self.relay
                        );
                    } else if self.failures.is_multiple_of(20) && !self.quiet {
                        info!(
                            "still waiting for the relay at {} ({e}); next try in {:.1} s",
                            self.relay,
                            wait.as_secs_f64()
                        );
                    } else {
                        debug!("relay {} not reachable: {e}", self.relay);
                    }
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (r, w) = stream.into_split();
            let k = self.keys;
            match link::connect(r, w, &k.own, &k.relay, &k.group_id, &k.session_id).await {
                Ok((frames, writer)) => {
                    self.backoff.handle_connected(self.now());
                    if self.failures > 0 || !self.quiet {
                        info!("connected to relay {}", self.relay);
                    }
                    self.failures = 0;
                    self.last = LastTry::None;
                    let sink = writer.into_sink(dissent_core::wire::MAX_FRAME_BODY);
                    return Connected { frames, sink };
                }
                Err(e) => {
                    self.failures += 1;
                    self.last = LastTry::Refused;
                    let next = self.backoff.handle_handshake_failed(self.now());
                    self.next = self.at(next);
                    let wait = self
                        .next
                        .saturating_duration_since(tokio::time::Instant::now());
                    warn!(
                        "the relay at {} refused the handshake: {e}; {}; next try in {:.1} s",
                        self.relay,
                        likely_cause(&e),
                        wait.as_secs_f64()
                    );
                }
            }
        }
    }

    /// The link that [`Dialer::dial`] returned is gone (as `end` says); the next dial waits
    /// as the policy says, and at least as long as the relay asked: a node it backed off
    /// waits out its back-off, one on its refusal list
    /// `dissent_core::backoff::EXCLUDED_REDIAL` (`Backoff::handle_goodbye`, which every
    /// shell's dialer shares).
    pub fn lost(&mut self, end: &End) {
        let goodbye = match end {
            End::Goodbye(reason) => Some(*reason),
            _ => None,
        };
        let next = self.backoff.handle_goodbye(self.now(), goodbye);
        self.next = self.at(next);
        self.last = LastTry::Lost;
    }

    /// Why there is no link yet, for a log line.
    pub fn unlinked_because(&self) -> String {
        match self.last {
            LastTry::Unreachable => format!("the relay at {} is not reachable", self.relay),
            LastTry::Refused => format!(
                "the relay at {} refuses this node's handshake (see the warnings above)",
                self.relay
            ),
            LastTry::Lost => format!(
                "the link to the relay at {} was lost; reconnecting",
                self.relay
            ),
            LastTry::None => format!("connecting to the relay at {}", self.relay),
        }
    }
}

/// What usually causes a handshake failure of this kind.
fn likely_cause(e: &HandshakeError) -> &'static str {
    let io_kind = match e {
        HandshakeError::Io(io) => Some(io.kind()),
        _ => None,
    };
    if matches!(e, HandshakeError::Closed) || io_kind == Some(std::io::ErrorKind::UnexpectedEof) {
        "the relay does not accept this node's key, or system.json names another relay key \
         (a key file or configuration of another group?)"
    } else if matches!(e, HandshakeError::WrongRelayKey) {
        "the relay's key differs from the one in system.json (another configuration, or \
         the relay was given another key file?)"
    } else if matches!(e, HandshakeError::TimedOut) || io_kind == Some(std::io::ErrorKind::TimedOut)
    {
        "the relay did not answer in time"
    } else {
        "is this the relay of this configuration?"
    }
}
