//! The setup image's memory copy, move and fill routines: `memcpy`, `memmove`, `memset` and
//! their ARM EABI forms (`__aeabi_memcpy`, `__aeabi_memclr8`, ...), which the compiler calls
//! for every copy or fill it does not inline, a byte at a time in a few instructions each.
//!
//! They take the place of compiler-builtins' (weak symbols, so these win at link time), which
//! copy a word at a time with their alignment cases and are 3.2 KiB of flash in the setup
//! image (README.md, "The setup on the device"). The setup spends its time in curve
//! arithmetic, not in copies: its largest copy is a frame of 4 KiB, a few tens of
//! microseconds a byte at a time. The DC-net images, which copy cells at every exchange,
//! keep compiler-builtins' own.
//!
//! Written in assembly so that the compiler cannot turn a copy loop back into a call to
//! `memcpy` (itself). Owns nothing else.

use core::arch::asm;

/// Copies `n` bytes from `src` to `dst`, first byte first.
///
/// # Safety
///
/// As `memcpy`: both ranges valid, and `dst` not after `src` within the copy.
#[inline(always)]
unsafe fn forward(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller's.
    unsafe {
        asm!(
            "2:",
            "subs {n}, {n}, #1",
            "blo 3f",
            "ldrb {t}, [{s}], #1",
            "strb {t}, [{d}], #1",
            "b 2b",
            "3:",
            n = inout(reg) n => _,
            s = inout(reg) src => _,
            d = inout(reg) dst => _,
            t = out(reg) _,
            options(nostack),
        );
    }
}

/// Copies `n` bytes from `src` to `dst`, last byte first.
///
/// # Safety
///
/// As `memmove`, with `dst` not before `src` within the copy.
#[inline(always)]
unsafe fn backward(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller's.
    unsafe {
        asm!(
            "2:",
            "subs {n}, {n}, #1",
            "blo 3f",
            "ldrb {t}, [{s}, {n}]",
            "strb {t}, [{d}, {n}]",
            "b 2b",
            "3:",
            n = inout(reg) n => _,
            s = in(reg) src,
            d = in(reg) dst,
            t = out(reg) _,
            options(nostack),
        );
    }
}

/// Fills `n` bytes at `dst` with `c`.
///
/// # Safety
///
/// As `memset`.
#[inline(always)]
unsafe fn fill(dst: *mut u8, c: u8, n: usize) {
    // SAFETY: the caller's.
    unsafe {
        asm!(
            "2:",
            "subs {n}, {n}, #1",
            "blo 3f",
            "strb {c}, [{d}], #1",
            "b 2b",
            "3:",
            n = inout(reg) n => _,
            d = inout(reg) dst => _,
            c = in(reg) u32::from(c),
            options(nostack),
        );
    }
}

/// Moves `n` bytes from `src` to `dst`, which may overlap.
///
/// # Safety
///
/// As `memmove`.
#[inline(never)]
unsafe fn moved(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller's; a destination that starts inside the source is copied from its
    // end, any other from its start.
    unsafe {
        if (dst as usize).wrapping_sub(src as usize) < n {
            backward(dst, src, n)
        } else {
            forward(dst, src, n)
        }
    }
}

#[no_mangle]
unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: as `memcpy`.
    unsafe { forward(dst, src, n) };
    dst
}

#[no_mangle]
unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: as `memmove`.
    unsafe { moved(dst, src, n) };
    dst
}

#[no_mangle]
unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: as `memset` (which takes the byte as an `int`).
    unsafe { fill(dst, c as u8, n) };
    dst
}

#[no_mangle]
unsafe extern "C" fn __aeabi_memcpy(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: as `memcpy`.
    unsafe { forward(dst, src, n) }
}

#[no_mangle]
unsafe extern "C" fn __aeabi_memcpy4(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: as `memcpy`.
    unsafe { forward(dst, src, n) }
}

#[no_mangle]
unsafe extern "C" fn __aeabi_memcpy8(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: as `memcpy`.
    unsafe { forward(dst, src, n) }
}

#[no_mangle]
unsafe extern "C" fn __aeabi_memmove(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: as `memmove`.
    unsafe { moved(dst, src, n) }
}

#[no_mangle]
unsafe extern "C" fn __aeabi_memmove4(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: as `memmove`.
    unsafe { moved(dst, src, n) }
}

#[no_mangle]
unsafe extern "C" fn __aeabi_memmove8(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: as `memmove`.
    unsafe { moved(dst, src, n) }
}

// The EABI's fills take the length before the byte.

#[no_mangle]
unsafe extern "C" fn __aeabi_memset(dst: *mut u8, n: usize, c: i32) {
    // SAFETY: as `memset`.
    unsafe { fill(dst, c as u8, n) }
}

#[no_mangle]
unsafe extern "C" fn __aeabi_memset4(dst: *mut u8, n: usize, c: i32) {
    // SAFETY: as `memset`.
    unsafe { fill(dst, c as u8, n) }
}

#[no_mangle]
unsafe extern "C" fn __aeabi_memset8(dst: *mut u8, n: usize, c: i32) {
    // SAFETY: as `memset`.
    unsafe { fill(dst, c as u8, n) }
}

#[no_mangle]
unsafe extern "C" fn __aeabi_memclr(dst: *mut u8, n: usize) {
    // SAFETY: as `memset`.
    unsafe { fill(dst, 0, n) }
}

#[no_mangle]
unsafe extern "C" fn __aeabi_memclr4(dst: *mut u8, n: usize) {
    // SAFETY: as `memset`.
    unsafe { fill(dst, 0, n) }
}

#[no_mangle]
unsafe extern "C" fn __aeabi_memclr8(dst: *mut u8, n: usize) {
    // SAFETY: as `memset`.
    unsafe { fill(dst, 0, n) }
}
