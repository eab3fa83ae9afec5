//! The request to stop this process, and the end of a process whose output pipe closed.
//!
//! On Unix a stop request is Ctrl-C (SIGINT) or SIGTERM. On Windows it is any console
//! control event: Ctrl-C, Ctrl-Break (what a supervisor sends its children, see
//! [`super::process_group`]), the console window closing, or the system shutting down.

/// Resolves when the process is asked to stop.
pub async fn shutdown_signal() {
    imp::shutdown_signal().await;
}

/// Ends the process without a word because its stdout or stderr pipe is gone: killed by
/// SIGPIPE on Unix, as a classic Unix tool ends; exit status 1 on Windows.
pub fn end_on_closed_pipe() -> ! {
    imp::end_on_closed_pipe()
}

#[cfg(unix)]
mod imp {
    pub async fn shutdown_signal() {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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

    pub fn end_on_closed_pipe() -> ! {
        // SAFETY: restoring a signal's default action and raising it on this thread; both
        // are async-signal-safe and touch no Rust state.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::raise(libc::SIGPIPE);
        }
        // Not reached on Unix; the conventional status of a process ended by SIGPIPE.
        std::process::exit(128 + libc::SIGPIPE)
    }
}

#[cfg(windows)]
mod imp {
    use std::future::pending;

    use tokio::signal::windows;

    pub async fn shutdown_signal() {
        // An event whose handler cannot be installed is simply not waited for.
        let brk = async {
            match windows::ctrl_break() {
                Ok(mut s) => drop(s.recv().await),
                Err(_) => pending().await,
            }
        };
        let close = async {
            match windows::ctrl_close() {
                Ok(mut s) => drop(s.recv().await),
                Err(_) => pending().await,
            }
        };
        let shutdown = async {
            match windows::ctrl_shutdown() {
                Ok(mut s) => drop(s.recv().await),
                Err(_) => pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = brk => {}
            () = close => {}
            () = shutdown => {}
        }
    }

    pub fn end_on_closed_pipe() -> ! {
        std::process::exit(1)
    }
}
