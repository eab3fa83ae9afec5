//! Developer tooling built into the binary: benchmarks (`dissent bench`), the SOCKS5 load
//! generator they drive, and device firmware under QEMU (`dissent qemu`).
//!
//! Built with the default feature `tools`; `--no-default-features` leaves this folder and
//! its dependencies out of the binary. Nothing in the relay, trustee, client or exits
//! depends on it; it only uses their public entry points and starts them as processes.

pub mod bench;
pub mod load;
pub mod qemu;
pub mod readback;
pub mod timing;
