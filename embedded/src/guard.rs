//! Stack overflow guard: an MPU region that no code may touch at the bottom of the stack.
//!
//! The stack grows down from the top of RAM towards the statics (`_stack_end`). [`arm`]
//! makes the lowest [`GUARD`] bytes of the stack area (rounded up to the region's
//! alignment) inaccessible; a push or a local that reaches them raises a MemManage fault.
//! Its handler is a few instructions of assembly that first move the stack pointer back to
//! the top of RAM (the old stack is full, and the fault is fatal), then report the overflow
//! and stop the board ([`crate::EXIT_STACK_OVERFLOW`]; real boards reset).
//!
//! A frame larger than the guard could step over it; the apps keep large buffers in statics
//! (see the README), so their frames stay well below [`GUARD`].

use cortex_m::peripheral::MPU;

/// Bytes of the guard region: a power of two, at least 32.
pub const GUARD: usize = 1024;

extern "C" {
    static _stack_end: u32;
}

/// The guard's address range: the first `GUARD`-aligned block at or above `_stack_end`.
pub fn range() -> (usize, usize) {
    let end = core::ptr::addr_of!(_stack_end) as usize;
    let base = (end + GUARD - 1) & !(GUARD - 1);
    (base, base + GUARD)
}

/// Turns the guard on (MPU region 0, never executed; no access on ARMv7-M, read-only on
/// ARMv8-M, whose MPU has no "no access" for privileged code: a push still faults) with the
/// default memory map everywhere else, and enables the MemManage fault.
pub fn arm(mpu: &mut MPU, scb: &mut cortex_m::peripheral::SCB) {
    let (base, _top) = range();
    // SAFETY: region 0 is this guard's alone; the addresses are the stack area's, which
    // nothing but the stack uses, and the MPU keeps the default map for all the rest.
    unsafe {
        mpu.rnr.write(0);
        #[cfg(not(armv8m))]
        {
            // RASR: XN, AP = no access, SIZE = log2(GUARD) - 1, ENABLE.
            let size = GUARD.trailing_zeros() - 1;
            mpu.rbar.write(base as u32);
            mpu.rasr.write((1 << 28) | (size << 1) | 1);
        }
        #[cfg(armv8m)]
        {
            // MAIR0 attribute 0: normal memory, non-cacheable. RBAR: base, AP = read-only
            // (privileged), XN. RLAR: the last 32-byte block, attribute 0, ENABLE.
            mpu.mair[0].write(0x44);
            mpu.rbar.write(base as u32 | (0b10 << 1) | 1);
            mpu.rlar.write((_top as u32 - 32) | 1);
        }
        // ENABLE | PRIVDEFENA
        mpu.ctrl.write(1 | (1 << 2));
        scb.enable(cortex_m::peripheral::scb::Exception::MemoryManagement);
    }
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
}

// The MemManage handler: a fresh stack at the top of RAM, then the report.
core::arch::global_asm!(
    ".section .text.MemoryManagement,\"ax\",%progbits",
    ".global MemoryManagement",
    ".type MemoryManagement,%function",
    ".thumb_func",
    "MemoryManagement:",
    "ldr r0, =_stack_start",
    "msr msp, r0",
    "b {overflow}",
    ".ltorg",
    overflow = sym overflow,
);

/// Reports a fault in the guard (or any other MemManage fault) and stops the board.
extern "C" fn overflow() -> ! {
    // SAFETY: reads of the fault status and address registers.
    let (cfsr, mmfar) = unsafe {
        (
            core::ptr::read_volatile(0xE000_ED28 as *const u32),
            core::ptr::read_volatile(0xE000_ED34 as *const u32),
        )
    };
    let (base, top) = range();
    // MMARVALID: the address that faulted is known.
    if cfsr & (1 << 7) != 0 && !(base..top).contains(&(mmfar as usize)) {
        crate::println!("memory protection fault at {:#010x}", mmfar);
        crate::exit(crate::EXIT_FAULT)
    }
    crate::println!("stack overflow: the stack reached its guard");
    crate::exit(crate::EXIT_STACK_OVERFLOW)
}
