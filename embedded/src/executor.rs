//! A thread-mode executor that sleeps with `WFI`.
//!
//! embassy's stock Cortex-M executor sleeps with `WFE` and wakes itself with `SEV`. QEMU
//! (7.2) treats `WFE` as a no-op, so an idle emulated node would spin a host core. This one
//! sleeps with `WFI` instead, which QEMU honours: wakers only set a flag, and the idle loop
//! checks that flag with interrupts masked before sleeping, so a wake from an interrupt
//! handler or from a task is never lost. It works unchanged on real chips.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::{raw, Spawner};

/// Set by the pender when a task was woken; cleared before each poll.
static WORK: AtomicBool = AtomicBool::new(false);

// Called by embassy's raw executor, from any context, whenever a task becomes ready.
#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    WORK.store(true, Ordering::Release);
}

/// Thread-mode executor sleeping with `WFI` between wake-ups.
pub struct Executor {
    inner: raw::Executor,
    not_send: PhantomData<*mut ()>,
}

impl Default for Executor {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor {
    /// A new executor; one per program.
    pub fn new() -> Self {
        Self {
            inner: raw::Executor::new(core::ptr::null_mut()),
            not_send: PhantomData,
        }
    }

    /// Calls `init` with a spawner, then polls ready tasks forever, sleeping when none is.
    pub fn run(&'static mut self, init: impl FnOnce(Spawner)) -> ! {
        init(self.inner.spawner());
        loop {
            WORK.store(false, Ordering::Release);
            // SAFETY: `poll` runs only here, never re-entrantly (the pender only sets a flag).
            unsafe { self.inner.poll() };
            cortex_m::interrupt::disable();
            if !WORK.load(Ordering::Acquire) {
                // A pending interrupt ends WFI even while masked; it runs once unmasked below.
                cortex_m::asm::wfi();
            }
            // SAFETY: interrupts were enabled before this loop's `disable`; no critical
            // section spans this point.
            unsafe { cortex_m::interrupt::enable() };
        }
    }
}
