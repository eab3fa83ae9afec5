//! The core's clock on tokio: a core [`dissent_core::Instant`] is the time since a role's
//! `origin`, a tokio instant taken when the role starts.
//!
//! Only converts; the roles own their origin and their timers.

use std::time::Duration;

/// Time since `origin` as the core's clock.
pub fn core_now(origin: tokio::time::Instant) -> dissent_core::Instant {
    dissent_core::Instant::from_micros(origin.elapsed().as_micros() as u64)
}

/// Converts a core deadline back to a tokio instant.
pub fn tokio_at(origin: tokio::time::Instant, at: dissent_core::Instant) -> tokio::time::Instant {
    origin + Duration::from_micros(at.as_micros())
}
