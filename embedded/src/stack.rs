//! Stack high-water meter: cortex-m-rt paints the whole stack area at boot
//! (`paint-stack`), and the deepest word no longer holding the paint marks the peak. The
//! scan starts above the stack guard ([`crate::guard`]), which no code may read.

use cortex_m_rt::STACK_PAINT_VALUE;

extern "C" {
    static _stack_start: u32;
}

/// Bytes of stack usable: from the stack guard (see [`crate::guard`]) to the top of RAM.
pub fn size() -> usize {
    let (bottom, top) = bounds();
    top - bottom
}

/// Most bytes of stack used since boot (interrupt handlers included).
pub fn peak() -> usize {
    let (bottom, top) = bounds();
    let mut addr = bottom;
    while addr < top {
        // SAFETY: `addr` is a word-aligned address inside the stack area, which is RAM.
        let word = unsafe { core::ptr::read_volatile(addr as *const u32) };
        if word != STACK_PAINT_VALUE {
            break;
        }
        addr += 4;
    }
    top - addr
}

/// Bytes of stack in use now, at the caller's frame.
pub fn in_use() -> usize {
    let (_, top) = bounds();
    top - cortex_m::register::msp::read() as usize
}

/// Paints the stack below the caller's frame again, so that [`peak`] from now on measures
/// what runs after this call (for a meter of one part of an app).
pub fn repaint() {
    let (bottom, _) = bounds();
    // This function's own frame is above the stack pointer it reads; an interrupt that
    // comes meanwhile pushes below it and is gone before the loop goes on.
    let sp = cortex_m::register::msp::read() as usize;
    let mut addr = bottom;
    while addr + 4 <= sp {
        // SAFETY: `addr` is a word-aligned address in the stack area below the stack
        // pointer: RAM no live frame holds.
        unsafe { core::ptr::write_volatile(addr as *mut u32, STACK_PAINT_VALUE) };
        addr += 4;
    }
}

fn bounds() -> (usize, usize) {
    // Only the address of the linker-provided symbol is taken. The guard below the stack
    // is not to be read.
    (
        crate::guard::range().1,
        core::ptr::addr_of!(_stack_start) as usize,
    )
}
