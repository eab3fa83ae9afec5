//! Test hooks of `disruptor` builds (never in a shipped one): behaviour an end-to-end test
//! switches on through the environment, shared by the roles that have it.

use dissent_core::wire::{Message, BLAME_ROUND_VARIANTS};
use tracing::warn;

/// A client or trustee run with this variable set holds the first blame round request it
/// gets, unhandled and unanswered, and handles nothing from its relay link after it, so that
/// a test can kill an honest node that owes a round (tests/disruption.rs). It says so in its
/// log first.
pub(crate) const HOLD_BLAME_REQUEST_ENV: &str = "DISSENT_TEST_HOLD_BLAME_REQUEST";

/// Whether `body`, a frame from the relay, is a blame round's request that the test hook
/// holds ([`HOLD_BLAME_REQUEST_ENV`]); if it is, the log says so.
pub(crate) fn holds_blame_request(body: &[u8]) -> bool {
    let held = body
        .first()
        .is_some_and(|v| BLAME_ROUND_VARIANTS.contains(v))
        && matches!(Message::parse(body), Ok(Message::BlameRequest { .. }))
        && std::env::var_os(HOLD_BLAME_REQUEST_ENV).is_some();
    if held {
        warn!("holding a blame request unanswered ({HOLD_BLAME_REQUEST_ENV} is set)");
    }
    held
}
