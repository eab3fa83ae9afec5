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

fn bounds() -> (usize, usize) {
    // Only the address of the linker-provided symbol is taken. The guard below the stack
    // is not to be read.
    (
        crate::guard::range().1,
        core::ptr::addr_of!(_stack_start) as usize,
    )
}
