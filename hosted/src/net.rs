//! Small pieces every shell needs: clocks, signals, queue sizes.

use std::time::Duration;

/// Frames a peer may have queued for sending before it counts as too slow.
pub const SEND_QUEUE: usize = 512;

/// Time since `origin` as the core's clock.
pub fn core_now(origin: tokio::time::Instant) -> dissent_core::Instant {
    dissent_core::Instant::from_micros(origin.elapsed().as_micros() as u64)
}

/// Converts a core deadline back to a tokio instant.
pub fn tokio_at(origin: tokio::time::Instant, at: dissent_core::Instant) -> tokio::time::Instant {
    origin + Duration::from_micros(at.as_micros())
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Asks a child process to stop (SIGTERM), if it has not been reaped yet.
pub fn terminate(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: signals our own child by its id; it has one, so it is not reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
}

/// Stops a child process: SIGTERM, then SIGKILL if it has not exited within `grace`.
/// Returns true if it had to be killed.
pub async fn stop_child(child: &mut tokio::process::Child, grace: std::time::Duration) -> bool {
    terminate(child);
    if tokio::time::timeout(grace, child.wait()).await.is_ok() {
        return false;
    }
    let _ = child.kill().await;
    true
}

/// A command for a child `dissent` process: no stdin, in its own process group (so a
/// terminal's Ctrl-C reaches only the parent, which stops children in order), killed when
/// dropped and, on Linux, when the parent dies.
pub fn child_command(exe: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe; it makes the child stop if the parent dies.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd
}
