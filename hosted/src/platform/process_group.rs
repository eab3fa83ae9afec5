//! Child processes in a process group of their own: starting them, asking one to stop, and
//! reading its exit status.
//!
//! A child in its own group does not get the terminal's Ctrl-C; only the parent does, and
//! it stops its children in order. On Unix the child gets `process_group(0)`, and on Linux
//! also dies with its parent (`PR_SET_PDEATHSIG`); asking it to stop is SIGTERM. On
//! Windows the child is started with `CREATE_NEW_PROCESS_GROUP`, which turns Ctrl-C off
//! in it, and asking it to stop is a Ctrl-Break event for its group (it shares the
//! parent's console); a parent without a console cannot send one, and its callers then
//! kill the child after their grace period.

use std::path::Path;

/// A command for `program` with no stdin, in its own process group, killed when dropped.
pub fn child_command(program: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    imp::own_group(&mut cmd);
    cmd
}

/// Asks a child process to stop, if it has not been reaped yet.
pub fn terminate(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        imp::terminate(pid);
    }
}

/// A child's exit status as a process exit code: its code, or on Unix 128 + the signal
/// that ended it (`dissent qemu` passes QEMU's on).
#[cfg(feature = "tools")]
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    imp::exit_code(status)
}

/// The signal that ended a child, on Unix; `None` when it exited (and always on Windows).
#[cfg(feature = "tools")]
pub fn signal_of(status: std::process::ExitStatus) -> Option<i32> {
    imp::signal_of(status)
}

#[cfg(unix)]
mod imp {
    pub fn own_group(cmd: &mut tokio::process::Command) {
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe; it makes the child stop if the parent dies.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
    }

    pub fn terminate(pid: u32) {
        // SAFETY: signals our own child by its id; it has one, so it is not reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }

    #[cfg(feature = "tools")]
    pub fn signal_of(status: std::process::ExitStatus) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        status.signal()
    }

    #[cfg(feature = "tools")]
    pub fn exit_code(status: std::process::ExitStatus) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    }
}

#[cfg(windows)]
mod imp {
    use windows_sys::Win32::System::Console::{GenerateConsoleCtrlEvent, CTRL_BREAK_EVENT};
    use windows_sys::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP;

    pub fn own_group(cmd: &mut tokio::process::Command) {
        cmd.creation_flags(CREATE_NEW_PROCESS_GROUP);
    }

    pub fn terminate(pid: u32) {
        // SAFETY: sends an event to the process group our own child leads (its group id
        // is its process id); it reads no memory of ours. Failure (no shared console)
        // leaves the child running, as documented above.
        unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, pid) };
    }

    #[cfg(feature = "tools")]
    pub fn signal_of(_status: std::process::ExitStatus) -> Option<i32> {
        None
    }

    #[cfg(feature = "tools")]
    pub fn exit_code(status: std::process::ExitStatus) -> i32 {
        // A Windows process always has an exit code.
        status.code().unwrap_or(1)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[tokio::test]
    async fn a_child_has_its_own_group_and_stops_when_asked() {
        let mut child = child_command(Path::new("sleep")).arg("30").spawn().unwrap();
        let pid = child.id().unwrap() as libc::pid_t;
        // SAFETY: getpgid only reads the process table.
        assert_eq!(unsafe { libc::getpgid(pid) }, pid);
        terminate(&child);
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
            .await
            .expect("the child stops")
            .unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[cfg(feature = "tools")]
    #[test]
    fn exit_codes_pass_through() {
        use std::process::ExitStatus;

        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 128 + 9);
    }
}
