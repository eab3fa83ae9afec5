//! What differs between the operating systems `dissent` runs on (Linux, macOS, Windows),
//! one module per concern.
//!
//! - [`signals`]: the stop request (Ctrl-C; SIGTERM on Unix; Ctrl-Break, console close and
//!   shutdown on Windows) and ending quietly on a closed output pipe.
//! - [`process_group`]: child processes in a group of their own, asking one to stop, and
//!   its exit status.
//! - [`private_files`]: files only their owner may read (key files): creating them and
//!   refusing them when others can read them (Unix modes; the access list on Windows).
//! - [`file_lock`]: an exclusive lock the system drops when its process ends (the lock
//!   of `dissent up`'s state folder).
//! - [`listening`]: whether something listens on a loopback port (`dissent up` waits for
//!   its clients' SOCKS5 ports).
//! - [`memory_file`]: secret bytes for a child process to read, off disks where possible
//!   (`dissent qemu`'s provisioning blob and seed).
//! - [`child_socket`]: a private socket to a child process (`dissent qemu`'s channel to
//!   QEMU's monitor; Unix only).
//! - [`open_files`]: the open-file limit the relay sizes its tables to.
//! - [`state_dir`]: where `dissent up` keeps its state.
//! - [`process_stats`]: CPU time and peak memory of a process, for `dissent bench` (Linux
//!   only; unavailable elsewhere).
//!
//! Each module keeps every platform's implementation side by side behind one portable
//! function, so nothing outside this folder names an operating system (`cfg(unix)`,
//! `libc`, `std::os::unix`, `windows_sys`). No protocol logic and no role policy here: the
//! callers decide what to do; these modules only do it the platform's way.

#[cfg(feature = "tools")]
pub mod child_socket;
pub mod file_lock;
pub mod listening;
#[cfg(feature = "tools")]
pub mod memory_file;
pub mod open_files;
pub mod private_files;
pub mod process_group;
#[cfg(feature = "tools")]
pub mod process_stats;
pub mod signals;
pub mod state_dir;
