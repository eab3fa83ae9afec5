//! Boards, one module each; a cargo feature selects the one a build runs on.
//!
//! A board module provides the same small set of items, which [`crate::run`] and the
//! console use; apps only see [`crate::Board`]:
//!
//! - `NAME`, the board's name;
//! - `Rng`, its entropy source (`rand_core` 0.6 `RngCore + CryptoRng`);
//! - `init()`, the hardware set-up before the executor starts (clocks, time driver,
//!   console), returning the parts `start` needs;
//! - `async start(spawner, parts)`, which brings up the network (Ethernet, or Wi-Fi after
//!   loading the radio's firmware) and the network stack (spawning the stack's task) and
//!   returns the [`crate::Board`];
//! - `console_write(bytes)` and `exit(status)`.

#[cfg(any(test, all(target_os = "none", feature = "mps2-an385")))]
pub mod mps2_an385;
#[cfg(all(target_os = "none", feature = "nucleo-f767zi"))]
pub mod nucleo_f767zi;
#[cfg(all(target_os = "none", feature = "pico2-w"))]
pub mod pico2_w;

#[cfg(all(target_os = "none", feature = "mps2-an385"))]
pub(crate) use mps2_an385 as selected;
#[cfg(all(target_os = "none", feature = "nucleo-f767zi"))]
pub(crate) use nucleo_f767zi as selected;
#[cfg(all(target_os = "none", feature = "pico2-w"))]
pub(crate) use pico2_w as selected;

#[cfg(target_os = "none")]
pub(crate) mod area {
    //! The provisioning and seed areas named by the board's memory map.

    extern "C" {
        static _provision_start: u8;
        static _provision_end: u8;
    }

    /// The provisioning area.
    pub fn provisioning() -> &'static [u8] {
        // SAFETY: the linker script places these symbols around a memory region that the
        // firmware never writes and that stays mapped for the whole run.
        unsafe {
            let start = core::ptr::addr_of!(_provision_start);
            let end = core::ptr::addr_of!(_provision_end);
            core::slice::from_raw_parts(start, end as usize - start as usize)
        }
    }
}
