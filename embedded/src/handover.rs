//! The hand-overs between a trustee's two images: the setup image's end (the DC-net node's
//! blob completed with the epoch the device set up, then the board handed to the DC-net
//! trustee image), and on a real board the DC-net image's start when its blob names no
//! epoch yet (the board handed to the setup image, [`to_setup_image`]).
//!
//! The setup image (`src/bin/trustee-setup.rs`, feature `setup-image`) shares the board with
//! the DC-net trustee image, each at its own place in flash (`memory/<board>-setup.x`). It
//! writes only public outcomes, and only those it verified itself: the established epoch's
//! session id and its pseudonym list, at their places in the node's blob
//! ([`complete_blob`], through `crate::blob_update`, so a reset at any point leaves the blob
//! old or new: `crate::board::area::recover` at the next boot). Then [`hand_over`] quiets
//! the board (interrupts, SysTick, the MPU) and jumps to the DC-net image's vector table,
//! which starts as from a reset.
//!
//! Owns the setup blob's area, the writes into the provisioning area and the jumps; the
//! setup itself is the core's (`dissent_core::epoch`).

use cortex_m::peripheral::{MPU, NVIC, SCB, SYST};

#[cfg(any(feature = "setup-image", not(feature = "mps2-an385")))]
extern "C" {
    static _setup_start: u8;
    static _setup_end: u8;
}

#[cfg(feature = "setup-image")]
extern "C" {
    static _dcnet_image: u32;
}

/// The setup image's own blob's area (`SETUP` in the memory map; on a real board the DC-net
/// trustee image checks it before it hands over).
#[cfg(any(feature = "setup-image", not(feature = "mps2-an385")))]
pub fn setup_area() -> &'static [u8] {
    // SAFETY: the linker script places these symbols around a memory region that stays
    // mapped for the whole run and that the firmware never writes.
    unsafe {
        let start = core::ptr::addr_of!(_setup_start);
        let end = core::ptr::addr_of!(_setup_end);
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// Why the node's blob could not be completed.
#[cfg(feature = "setup-image")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobWrite {
    /// The blob does not lie in the provisioning area (or the areas break the flash's
    /// rules).
    OutOfArea,
    /// The bytes read back are not the bytes written.
    Mismatch,
    /// The flash refused an erase or a program.
    Flash,
}

#[cfg(feature = "setup-image")]
impl<E> From<crate::blob_update::UpdateError<E>> for BlobWrite {
    fn from(e: crate::blob_update::UpdateError<E>) -> Self {
        match e {
            crate::blob_update::UpdateError::Areas => BlobWrite::OutOfArea,
            crate::blob_update::UpdateError::Verify => BlobWrite::Mismatch,
            crate::blob_update::UpdateError::Flash(_) => BlobWrite::Flash,
        }
    }
}

/// Completes the node's blob of `len` bytes: `patch(offset, chunk)` turns each chunk of it
/// (its bytes at `offset..`) into the completed blob's, through `crate::blob_update` (a
/// scratch copy first, then the blob's sectors erased and programmed), so that a reset at
/// any point leaves the old blob or the new one (`crate::board::area::recover` at the next
/// boot).
///
/// # Safety
///
/// No reference into the blob may be read afterwards as if unchanged (the caller parses
/// the blob again).
#[cfg(feature = "setup-image")]
pub unsafe fn complete_blob(
    len: usize,
    patch: &mut dyn FnMut(usize, &mut [u8]),
) -> Result<(), BlobWrite> {
    let mut flash = crate::board::selected::ProvisionFlash::take();
    Ok(crate::blob_update::update(
        &mut flash,
        crate::board::area::update_areas(),
        len,
        patch,
    )?)
}

/// Hands the board to the DC-net trustee image (see [`jump`]).
#[cfg(feature = "setup-image")]
pub fn hand_over(rng: &mut crate::BoardRng) -> ! {
    jump(rng, core::ptr::addr_of!(_dcnet_image))
}

/// On a real board, the DC-net trustee image's start when its blob names no epoch (a
/// dealer-free group's trustee, whose blob the host writes with the session id zero): hands
/// the board to the setup image (`_setup_image` in the memory map, see [`jump`]), which sets
/// the epoch up, writes it into the blob and hands the board back. Returns when no image
/// is flashed there (its vector table's stack pointer not in RAM, or its reset handler not
/// in its area).
#[cfg(not(any(feature = "setup-image", feature = "mps2-an385")))]
pub fn to_setup_image(rng: &mut crate::BoardRng) {
    extern "C" {
        static _setup_image: u32;
        static _setup_image_end: u32;
    }
    let table = core::ptr::addr_of!(_setup_image);
    let end = core::ptr::addr_of!(_setup_image_end) as usize;
    // SAFETY: the first two words of the area, flash mapped for the whole run.
    let (sp, reset) = unsafe {
        (
            core::ptr::read_volatile(table) as usize,
            core::ptr::read_volatile(table.add(1)) as usize,
        )
    };
    let handler = reset & !1;
    // Both boards' RAM is at 0x2000_0000; a reset handler is Thumb code (bit 0 set).
    if sp & 0xFFF0_0000 == 0x2000_0000
        && reset & 1 == 1
        && handler > table as usize
        && handler < end
    {
        jump(rng, table)
    }
}

/// Hands the board to the image whose vector table is at `table`: fresh entropy for its
/// boot (on a board whose entropy is a per-boot seed) and the network hardware's DMA
/// stopped (the board's `before_hand_over`), every interrupt source off and nothing
/// pending, SysTick stopped, the MPU off (the image arms its own stack guard), the vector
/// table moved to the image's, and a jump to its reset handler with its initial stack
/// pointer. The image then starts as from a reset: it zeroes its statics and reads its blob.
fn jump(rng: &mut crate::BoardRng, table: *const u32) -> ! {
    crate::board::selected::before_hand_over(rng);
    cortex_m::interrupt::disable();
    // SAFETY: this is the last code this image runs: nothing of it uses the peripherals
    // after this, and the next image sets up each again.
    unsafe {
        let syst = &*SYST::PTR;
        syst.csr.write(0);
        let nvic = &*NVIC::PTR;
        for i in 0..nvic.icer.len() {
            nvic.icer[i].write(u32::MAX);
            nvic.icpr[i].write(u32::MAX);
        }
        let scb = &*SCB::PTR;
        // PENDSTCLR and PENDSVCLR: no SysTick or PendSV left pending.
        scb.icsr.write((1 << 25) | (1 << 27));
        let mpu = &*MPU::PTR;
        mpu.ctrl.write(0);
        scb.vtor.write(table as u32);
        cortex_m::asm::dsb();
        cortex_m::asm::isb();
        // Interrupts on again, as after a reset: every source is off until the image
        // enables its own.
        cortex_m::interrupt::enable();
        cortex_m::asm::bootload(table)
    }
}
