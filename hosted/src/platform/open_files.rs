//! The open-file limit: how many sockets and files this process may hold at once.
//!
//! On Unix every socket is a file descriptor under `RLIMIT_NOFILE`; the relay raises its
//! soft limit to the hard one at start and sizes its admission tables and exit connections
//! to it. `rlim_t` is 32 bits on some targets (32-bit Arm Linux with glibc) and 64 on
//! others; the limit is reported as a `u64` everywhere. macOS reports an unlimited hard
//! limit but refuses a soft limit above `OPEN_MAX` (10240, `<sys/syslimits.h>`), so there
//! the soft limit is raised to at most that, as Go's runtime does. Windows has no such limit on
//! sockets: a process may hold about 2^24 handles, which is what is reported there.

use std::io;

/// Raises the soft limit on open files to the hard limit; returns the soft limit now.
///
/// If the system refuses the raise, the limit stays as it was and the error says so.
pub fn raise_limit() -> io::Result<u64> {
    imp::raise_limit()
}

#[cfg(unix)]
mod imp {
    use std::io;

    /// A limit as a `u64`, whatever the width of `rlim_t` on this target.
    // On 64-bit targets this is the identity, which clippy would call useless.
    #[allow(clippy::useless_conversion)]
    pub(super) fn to_u64(n: libc::rlim_t) -> u64 {
        u64::from(n)
    }

    pub fn raise_limit() -> io::Result<u64> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes only into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let target = highest_soft_limit(lim.rlim_max);
        if lim.rlim_cur >= target {
            return Ok(to_u64(lim.rlim_cur));
        }
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot raise the open-file limit from {} to {target}: {e}",
                    lim.rlim_cur
                ),
            ));
        }
        Ok(to_u64(raised.rlim_cur))
    }

    /// The highest soft limit the system accepts under the hard limit `max`.
    pub(super) fn highest_soft_limit(max: libc::rlim_t) -> libc::rlim_t {
        #[cfg(target_os = "macos")]
        {
            /// `OPEN_MAX` of `<sys/syslimits.h>`.
            const OPEN_MAX: libc::rlim_t = 10240;
            max.min(OPEN_MAX)
        }
        #[cfg(not(target_os = "macos"))]
        {
            max
        }
    }
}

#[cfg(windows)]
mod imp {
    use std::io;

    /// About the most handles one Windows process can hold.
    const HANDLES: u64 = 1 << 24;

    pub fn raise_limit() -> io::Result<u64> {
        Ok(HANDLES)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::imp::{highest_soft_limit, to_u64};
    use super::*;

    fn limit() -> libc::rlimit {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes only into the struct it is given.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        lim
    }

    #[test]
    fn the_open_file_limit_is_raised_as_far_as_the_system_allows() {
        let before = limit();
        let now = raise_limit().unwrap();
        assert!(now >= to_u64(before.rlim_cur));
        let after = limit();
        assert_eq!(to_u64(after.rlim_cur), now);
        assert_eq!(after.rlim_cur, highest_soft_limit(before.rlim_max));
    }
}
