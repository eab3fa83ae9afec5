//! This process and its children: the stop signal, and starting and stopping child
//! `dissent` processes in their own process group.
//!
//! Owns no state; the supervisor, the benchmarks and `dissent qemu` decide which children
//! run and when. How each platform does it is in [`crate::platform`].

use std::time::Duration;

pub use crate::platform::process_group::{child_command, terminate};
pub use crate::platform::signals::shutdown_signal;

/// Stops a child process: asks it to stop, then kills it if it has not exited within
/// `grace`. Returns true if it had to be killed.
pub async fn stop_child(child: &mut tokio::process::Child, grace: Duration) -> bool {
    terminate(child);
    if tokio::time::timeout(grace, child.wait()).await.is_ok() {
        return false;
    }
    let _ = child.kill().await;
    true
}
