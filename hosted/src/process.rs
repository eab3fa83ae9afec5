//! This process and its children: the stop signal, and starting and stopping child
//! `dissent` processes in their own process group.
//!
//! Owns no state; the supervisor, the benchmarks and `dissent qemu` decide which children
//! run and when.

use std::time::Duration;

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
pub async fn stop_child(child: &mut tokio::process::Child, grace: Duration) -> bool {
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
