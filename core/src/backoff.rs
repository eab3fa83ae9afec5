//! When to dial the relay again: exponential backoff with jitter, sans-IO.
//!
//! A shell keeps one [`Backoff`] per link it dials, tells it how each attempt ended, and
//! gets back the [`Instant`] of the next dial. After the k-th failure in a row the delay is
//! drawn uniformly from `[c / 2, c]` with `c = min(cap, initial · 2^(k−1))` ("equal
//! jitter"): it grows exponentially, never drops below half its ceiling, and nodes that lost
//! the relay together spread their redials instead of arriving at once.
//!
//! The cap is [`BackoffConfig::max_delay`] while the relay cannot be reached, and the larger
//! [`BackoffConfig::max_refused_delay`] once the relay has refused
//! [`BackoffConfig::refusals`] handshakes in a row (a wrong key or a stale configuration
//! does not fix itself in seconds). A link that stayed up for [`BackoffConfig::stable`]
//! resets the count, so the next dial follows after a short jitter only; a link that drops
//! sooner counts as one more failure.
//!
//! The jitter comes from a ChaCha20 keystream over the seed given at construction: the core
//! never reads an RNG or a clock. A shell's dial loop:
//!
//! ```text
//! let mut backoff = Backoff::new(BackoffConfig::default(), seed_from_os_rng);
//! let mut at = now();                       // the first dial is immediate
//! loop {
//!     sleep_until(at);
//!     let Ok(stream) = tcp_connect(relay) else {
//!         at = backoff.handle_connect_failed(now());
//!         continue;
//!     };
//!     let Ok(link) = handshake(stream) else {
//!         at = backoff.handle_handshake_failed(now());
//!         continue;
//!     };
//!     backoff.handle_connected(now());
//!     run(link);                            // until the link is lost
//!     at = backoff.handle_lost(now());
//! }
//! ```
//!
//! Owns when to dial again; it must not read a clock or an RNG (both are handed in).

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;

use crate::time::{Duration, Instant};
use crate::wire::GoodbyeReason;

/// How long a node the relay refused as excluded (`Goodbye{Excluded}`, its refusal list)
/// waits before it dials again: the relay keeps refusing it until it is taken off the list.
pub const EXCLUDED_REDIAL: Duration = Duration::from_millis(10_000);

/// Parameters of a [`Backoff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Ceiling of the delay after the first failure.
    pub initial: Duration,
    /// Largest delay while the relay cannot be reached.
    pub max_delay: Duration,
    /// Largest delay once the relay refused [`BackoffConfig::refusals`] handshakes in a row.
    pub max_refused_delay: Duration,
    /// Handshake failures in a row after which [`BackoffConfig::max_refused_delay`] applies.
    pub refusals: u32,
    /// How long a link must stay up for its loss to reset the backoff.
    pub stable: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_millis(10_000),
            max_refused_delay: Duration::from_millis(30_000),
            refusals: 3,
            stable: Duration::from_millis(10_000),
        }
    }
}

/// The reconnect policy of one link: says when to dial next.
///
/// Call order: dial at once, then after each attempt exactly one of
/// [`Backoff::handle_connect_failed`], [`Backoff::handle_handshake_failed`] or
/// [`Backoff::handle_connected`]; after `handle_connected`, [`Backoff::handle_lost`] when
/// the link ends. The failure handlers return when to dial next.
pub struct Backoff {
    config: BackoffConfig,
    rng: ChaCha20,
    /// Failed attempts since the last stable link.
    failures: u32,
    /// Handshake failures in a row.
    refused: u32,
    /// When the current link came up.
    up_since: Option<Instant>,
}

impl Backoff {
    /// A policy drawing its jitter from `seed`, which should be fresh random bytes.
    pub fn new(config: BackoffConfig, seed: [u8; 32]) -> Self {
        Backoff {
            config,
            rng: ChaCha20::new(&seed.into(), &[0u8; 12].into()),
            failures: 0,
            refused: 0,
            up_since: None,
        }
    }

    /// The TCP connection could not be made; returns when to dial next.
    #[must_use]
    pub fn handle_connect_failed(&mut self, now: Instant) -> Instant {
        self.refused = 0;
        self.fail(now)
    }

    /// The connection was made but the handshake failed; returns when to dial next.
    #[must_use]
    pub fn handle_handshake_failed(&mut self, now: Instant) -> Instant {
        self.refused = self.refused.saturating_add(1);
        self.fail(now)
    }

    /// The link is up.
    pub fn handle_connected(&mut self, now: Instant) {
        self.refused = 0;
        self.up_since = Some(now);
    }

    /// The link that was up is lost; returns when to dial next.
    #[must_use]
    pub fn handle_lost(&mut self, now: Instant) -> Instant {
        let stable = self
            .up_since
            .take()
            .is_some_and(|since| now.saturating_since(since) >= self.config.stable);
        if stable {
            self.failures = 0;
        }
        self.fail(now)
    }

    /// The link ended with the relay asking this node to wait `wait` before it dials again
    /// (`Goodbye{BackOff}`, or a refusal list's redial period): like
    /// [`Backoff::handle_lost`], and never sooner than `now + wait`.
    #[must_use]
    pub fn handle_told_to_wait(&mut self, now: Instant, wait: Duration) -> Instant {
        self.handle_lost(now).max(now + wait)
    }

    /// The link ended with the relay's goodbye `reason` (`None`: it ended otherwise); returns
    /// when to dial next. A node the relay backed off (`BackOff{millis}`) waits at least
    /// that long, one on its refusal list (`Excluded`) at least [`EXCLUDED_REDIAL`]; any
    /// other end is [`Backoff::handle_lost`]. Every shell's dialer goes through this.
    #[must_use]
    pub fn handle_goodbye(&mut self, now: Instant, reason: Option<GoodbyeReason>) -> Instant {
        match reason {
            Some(GoodbyeReason::BackOff { millis }) => {
                self.handle_told_to_wait(now, Duration::from_millis(u64::from(millis)))
            }
            Some(GoodbyeReason::Excluded) => self.handle_told_to_wait(now, EXCLUDED_REDIAL),
            _ => self.handle_lost(now),
        }
    }

    /// Failed attempts counted since the last stable link.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Counts a failure and draws the next delay.
    fn fail(&mut self, now: Instant) -> Instant {
        self.up_since = None;
        self.failures = self.failures.saturating_add(1);
        now + self.delay()
    }

    /// The delay after `self.failures` failures in a row.
    fn delay(&mut self) -> Duration {
        let cap = if self.refused >= self.config.refusals {
            self.config.max_refused_delay
        } else {
            self.config.max_delay
        };
        let doublings = self.failures.saturating_sub(1).min(63);
        let ceiling = self
            .config
            .initial
            .as_micros()
            .saturating_mul(1 << doublings)
            .min(cap.as_micros());
        let floor = ceiling / 2;
        Duration::from_micros(floor + self.uniform(ceiling - floor))
    }

    /// A uniform draw from `0 ..= max`.
    fn uniform(&mut self, max: u64) -> u64 {
        let mut r = [0u8; 8];
        // The keystream of one seed lasts 2^35 draws (centuries of redials); past that the
        // draw stays 0 and the delay is the floor, still within bounds.
        let _ = self.rng.try_apply_keystream(&mut r);
        let span = u128::from(max) + 1;
        // The product's top 64 bits are below `span` ≤ 2^64, so the cast loses nothing.
        ((u128::from(u64::from_le_bytes(r)) * span) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    const MS: u64 = 1000;

    fn at(ms: u64) -> Instant {
        Instant::from_micros(ms * MS)
    }

    /// The delay a handler's answer stands for, in milliseconds (rounded down).
    fn delay_ms(now: Instant, next: Instant) -> u64 {
        next.saturating_since(now).as_micros() / MS
    }

    fn backoff(seed: u8) -> Backoff {
        Backoff::new(BackoffConfig::default(), [seed; 32])
    }

    #[test]
    fn connect_failures_grow_exponentially_within_bounds() {
        for seed in 0..20 {
            let mut b = backoff(seed);
            let mut now = at(0);
            for k in 1..=30u32 {
                let next = b.handle_connect_failed(now);
                let d = next.saturating_since(now).as_micros();
                let ceiling = ((100 * MS) << (k - 1).min(40)).min(10_000 * MS);
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "failure {k}: {d} µs outside [{}, {ceiling}]",
                    ceiling / 2
                );
                assert_eq!(b.failures(), k);
                now = next;
            }
        }
    }

    #[test]
    fn repeated_refusals_raise_the_cap() {
        let mut b = backoff(1);
        let mut now = at(0);
        let mut delays = Vec::new();
        for _ in 0..12 {
            let next = b.handle_handshake_failed(now);
            delays.push(delay_ms(now, next));
            now = next;
        }
        // Past the 10 s cap of unreachable relays, within the 30 s one.
        let last = delays[delays.len() - 1];
        assert!((15_000..=30_000).contains(&last), "{delays:?}");
        assert!(delays.iter().all(|d| *d <= 30_000));
        // One connect failure in between brings the 10 s cap back.
        let next = b.handle_connect_failed(now);
        assert!(delay_ms(now, next) <= 10_000);
        // Two refusals are not yet "repeated" (the default is three).
        let mut b = backoff(2);
        for _ in 0..20 {
            let _ = b.handle_connect_failed(now);
        }
        for _ in 0..2 {
            let next = b.handle_handshake_failed(now);
            assert!(delay_ms(now, next) <= 10_000);
        }
        let next = b.handle_handshake_failed(now);
        assert!(delay_ms(now, next) >= 15_000);
    }

    #[test]
    fn jitter_spreads_nodes_apart() {
        // 500 nodes lose the relay at the same moment, each with its own seed.
        let now = at(5_000);
        let mut delays: Vec<u64> = (0..500u16)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..2].copy_from_slice(&i.to_le_bytes());
                let mut b = Backoff::new(BackoffConfig::default(), seed);
                for _ in 0..4 {
                    let _ = b.handle_connect_failed(now);
                }
                // Fifth failure: ceiling 1.6 s.
                delay_ms(now, b.handle_connect_failed(now))
            })
            .collect();
        delays.sort_unstable();
        let (lo, hi) = (delays[0], delays[delays.len() - 1]);
        assert!(lo >= 800 && hi <= 1600);
        assert!(lo < 850 && hi > 1550, "range {lo}..{hi} too narrow");
        let mean = delays.iter().sum::<u64>() / delays.len() as u64;
        assert!((1150..=1250).contains(&mean), "mean {mean}");
        // No bunching: every tenth of the range holds some nodes.
        for tenth in 0..10 {
            let (a, b) = (800 + tenth * 80, 880 + tenth * 80);
            let n = delays.iter().filter(|d| (a..b).contains(*d)).count();
            assert!(n >= 25, "only {n} delays in {a}..{b} ms");
        }
        // The same seed gives the same schedule.
        let (mut x, mut y) = (backoff(7), backoff(7));
        for _ in 0..10 {
            assert_eq!(x.handle_connect_failed(now), y.handle_connect_failed(now));
        }
    }

    #[test]
    fn a_stable_link_resets_and_a_short_one_does_not() {
        let mut b = backoff(3);
        let mut now = at(0);
        for _ in 0..10 {
            now = b.handle_connect_failed(now);
        }
        // Up for 10 s: the next dial is quick again.
        b.handle_connected(now);
        now = now + Duration::from_millis(10_000);
        let next = b.handle_lost(now);
        assert!((50..=100).contains(&delay_ms(now, next)));
        assert_eq!(b.failures(), 1);
        // Up for 1 s only: counts as another failure, and the delay keeps growing.
        now = next;
        for _ in 0..6 {
            b.handle_connected(now);
            now = now + Duration::from_millis(1_000);
            let next = b.handle_lost(now);
            now = next;
        }
        assert_eq!(b.failures(), 7);
        b.handle_connected(now);
        let lost = now + Duration::from_millis(1_000);
        let next = b.handle_lost(lost);
        assert_eq!(b.failures(), 8);
        assert!(delay_ms(lost, next) >= 5_000);
        // Losing a link that never came up is a failure too.
        let mut b = backoff(4);
        let _ = b.handle_connect_failed(now);
        let _ = b.handle_lost(now);
        assert_eq!(b.failures(), 2);
    }

    #[test]
    fn a_goodbye_sets_the_wait_as_the_relay_asked() {
        for seed in 0..20 {
            let mut b = backoff(seed);
            b.handle_connected(at(0));
            let backed_off = Some(GoodbyeReason::BackOff { millis: 3000 });
            assert_eq!(delay_ms(at(50), b.handle_goodbye(at(50), backed_off)), 3000);
            b.handle_connected(at(4000));
            let excluded = b.handle_goodbye(at(4010), Some(GoodbyeReason::Excluded));
            assert_eq!(delay_ms(at(4010), excluded), 10_000);
            // Any other goodbye, or none, is a lost link: the schedule only (its third
            // failure, 200..400 ms).
            b.handle_connected(at(20_000));
            let d = delay_ms(at(20_010), b.handle_goodbye(at(20_010), None));
            assert!((200..=400).contains(&d), "{d}");
            b.handle_connected(at(30_000));
            let other = Some(GoodbyeReason::Version);
            let d = delay_ms(at(30_010), b.handle_goodbye(at(30_010), other));
            assert!((400..=800).contains(&d), "{d}");
        }
    }

    #[test]
    fn a_node_told_to_wait_waits_at_least_that_long() {
        for seed in 0..20 {
            let mut b = backoff(seed);
            b.handle_connected(at(0));
            // Longer than the schedule: the relay's wait wins.
            let next = b.handle_told_to_wait(at(50), Duration::from_millis(4000));
            assert_eq!(delay_ms(at(50), next), 4000);
            // Shorter: the schedule still applies (its second failure: 100..200 ms).
            b.handle_connected(at(5000));
            let next = b.handle_told_to_wait(at(5010), Duration::from_millis(1));
            let d = delay_ms(at(5010), next);
            assert!((100..=200).contains(&d), "{d}");
        }
    }

    #[test]
    fn extreme_counts_and_times_saturate() {
        let config = BackoffConfig {
            max_delay: Duration::from_micros(u64::MAX),
            ..BackoffConfig::default()
        };
        let mut b = Backoff::new(config, [9; 32]);
        let now = Instant::from_micros(u64::MAX - 5);
        for _ in 0..200 {
            assert_eq!(b.handle_connect_failed(now), Instant::from_micros(u64::MAX));
        }
        let zero = BackoffConfig {
            initial: Duration::from_micros(0),
            ..BackoffConfig::default()
        };
        let mut b = Backoff::new(zero, [9; 32]);
        assert_eq!(b.handle_connect_failed(at(1)), at(1));
    }
}
