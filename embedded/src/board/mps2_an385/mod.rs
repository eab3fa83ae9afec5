//! QEMU `mps2-an385`: Cortex-M3 at 25 MHz with an SMSC LAN9118 Ethernet controller.
//!
//! - Network: the LAN9118 at 0x4020_0000 (IRQ 13) under embassy-net, with the static address
//!   QEMU user networking expects (10.0.2.15/24, gateway and host at 10.0.2.2, DNS server
//!   at 10.0.2.3).
//! - Time: SysTick at 1 kHz (`systick.rs`).
//! - Entropy: the ChaCha20 keystream keyed by the `SEED` area, which the host fills with fresh random
//!   bytes before every boot (see [`crate::provision`]); boot stops if there is none.
//! - Console and exit: Arm semihosting (QEMU's `-semihosting-config enable=on,target=native`).
//! - Watchdog: the CMSDK APB watchdog at 0x4000_8000, whose interrupt is the NMI. Its
//!   reset output is left off: QEMU's reset would load the same seed file again, and a seed
//!   must never serve twice. The NMI ends QEMU with [`crate::EXIT_WATCHDOG`] instead, and
//!   the host (`dissent qemu`) says so; booting again takes a fresh seed.
//!
//! Run it with `qemu-system-arm -M mps2-an385 -nic user,model=lan9118 -semihosting-config
//! enable=on,target=native -kernel ELF` plus the loader blobs; `qemu-run` does all of it.

pub mod lan9118;
#[cfg(target_os = "none")]
mod systick;

#[cfg(target_os = "none")]
pub use device::*;

#[cfg(target_os = "none")]
mod device {
    use core::cell::RefCell;

    use chacha20::cipher::{KeyIvInit, StreamCipher};
    use critical_section::Mutex;
    use embassy_executor::Spawner;
    use embassy_net::{Ipv4Address, Ipv4Cidr, Runner, StackResources, StaticConfigV4};
    use rand_core::{CryptoRng, RngCore};
    use semihosting::io::{Stdout, Write};
    use static_cell::ConstStaticCell;

    use super::lan9118::Lan9118;
    use super::systick;
    use crate::provision;
    use crate::{Board, NET_SOCKETS};

    /// Name of the board.
    pub const NAME: &str = "mps2-an385";
    /// The board's entropy source: the ChaCha20 keystream keyed by the per-boot seed.
    ///
    /// The keystream is the `chacha20` crate's, which the core already links for its pads and
    /// the trustee's nonces; `rand_chacha`'s generator, used before, cost 5.3 KiB more flash
    /// (its four-block unrolled rounds).
    pub struct Rng(chacha20::ChaCha20);

    impl Rng {
        fn from_seed(seed: [u8; 32]) -> Self {
            Self(chacha20::ChaCha20::new(&seed.into(), &[0; 12].into()))
        }
    }

    impl RngCore for Rng {
        fn next_u32(&mut self) -> u32 {
            rand_core::impls::next_u32_via_fill(self)
        }

        fn next_u64(&mut self) -> u64 {
            rand_core::impls::next_u64_via_fill(self)
        }

        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(0);
            // The keystream ends after 256 GiB; a boot draws a few KiB.
            self.0.apply_keystream(dest);
        }

        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl CryptoRng for Rng {}

    const CORE_HZ: u32 = 25_000_000;
    const LAN9118_BASE: usize = 0x4020_0000;
    const LAN9118_IRQ: u16 = 13;
    /// The CMSDK APB watchdog: LOAD, CONTROL and LOCK registers.
    const WDOG_LOAD: *mut u32 = 0x4000_8000 as *mut u32;
    const WDOG_CONTROL: *mut u32 = 0x4000_8008 as *mut u32;
    const WDOG_LOCK: *mut u32 = 0x4000_8C00 as *mut u32;
    const WDOG_UNLOCK: u32 = 0x1ACC_E551;

    /// Hardware brought up before the executor runs.
    pub struct Parts {
        eth: Lan9118,
        rng: Rng,
    }

    #[derive(Clone, Copy)]
    struct Lan9118Irq;

    // SAFETY: 13 is the LAN9118's line on the mps2-an385 NVIC.
    unsafe impl cortex_m::interrupt::InterruptNumber for Lan9118Irq {
        fn number(self) -> u16 {
            LAN9118_IRQ
        }
    }

    /// Sets up time, the watchdog, entropy and Ethernet.
    pub fn init(core: cortex_m::Peripherals) -> Parts {
        systick::start(core.SYST, CORE_HZ);
        feed_watchdog();
        // SAFETY: the watchdog's registers on this board; INTEN only (no reset, see above).
        unsafe {
            core::ptr::write_volatile(WDOG_LOCK, WDOG_UNLOCK);
            core::ptr::write_volatile(WDOG_CONTROL, 1);
            core::ptr::write_volatile(WDOG_LOCK, 0);
        }
        let rng = match take_seed() {
            Ok(seed) => Rng::from_seed(seed),
            Err(e) => fail(format_args!("entropy: {e}")),
        };
        // SAFETY: the LAN9118 window is at this address on this board and only this driver
        // uses it.
        let eth = match unsafe { Lan9118::new(LAN9118_BASE) } {
            Ok(eth) => eth,
            Err(e) => fail(format_args!("ethernet: {e}")),
        };
        // The MAC written out byte by byte: `{:x?}` would link the slice `Debug` code.
        let [m0, m1, m2, m3, m4, m5] = eth.mac();
        crate::println!(
            "{}: LAN9118 id {:#010x}, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            NAME,
            eth.id_rev(),
            m0,
            m1,
            m2,
            m3,
            m4,
            m5
        );
        // SAFETY: the handler (`DefaultHandler` below) is ready; no critical section is open.
        unsafe { cortex_m::peripheral::NVIC::unmask(Lan9118Irq) };
        Parts { eth, rng }
    }

    /// Starts the network stack and hands out the board.
    pub async fn start(spawner: Spawner, parts: Parts) -> Board {
        let Parts { eth, mut rng } = parts;
        let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
            address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24),
            gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
            // QEMU user networking's DNS server, which asks the host's resolver.
            dns_servers: [Ipv4Address::new(10, 0, 2, 3)].into_iter().collect(),
        });
        // Built in place in .bss, never on the stack.
        static RESOURCES: ConstStaticCell<StackResources<NET_SOCKETS>> =
            ConstStaticCell::new(StackResources::new());
        let (net, runner) =
            embassy_net::new(eth, config, RESOURCES.take(), RngCore::next_u64(&mut rng));
        // The task pools have room for these tasks, spawned once each.
        spawner.spawn(net_task(runner).unwrap());
        spawner.spawn(watchdog_task().unwrap());
        Board {
            name: NAME,
            net,
            rng,
            provisioning: crate::board::area::provisioning(),
        }
    }

    #[embassy_executor::task]
    async fn net_task(mut runner: Runner<'static, Lan9118>) -> ! {
        runner.run().await
    }

    /// Feeds the watchdog while the executor runs tasks.
    #[embassy_executor::task]
    async fn watchdog_task() -> ! {
        loop {
            feed_watchdog();
            embassy_time::Timer::after(crate::WATCHDOG_FEED).await;
        }
    }

    /// Loads the watchdog's counter with [`crate::WATCHDOG_TIMEOUT`] anew.
    fn feed_watchdog() {
        let ticks = crate::WATCHDOG_TIMEOUT.as_millis() as u32 * (CORE_HZ / 1000);
        // SAFETY: the watchdog's registers on this board, written only here and in `init`.
        unsafe {
            core::ptr::write_volatile(WDOG_LOCK, WDOG_UNLOCK);
            core::ptr::write_volatile(WDOG_LOAD, ticks);
            core::ptr::write_volatile(WDOG_LOCK, 0);
        }
    }

    // SAFETY: the handler only prints and ends the program; it shares no state with the
    // code it interrupts beyond the console, which takes a handle of its own meanwhile.
    #[cortex_m_rt::exception]
    unsafe fn NonMaskableInt() {
        crate::println!(
            "{}: watchdog: no progress for {} s",
            NAME,
            crate::WATCHDOG_TIMEOUT.as_secs()
        );
        exit(crate::EXIT_WATCHDOG);
    }

    /// Before the board goes to another image (`crate::handover`): a fresh seed for that
    /// image's boot, drawn from this boot's RNG (the host's seed was wiped when read), and
    /// the watchdog fed.
    #[cfg(feature = "setup-image")]
    pub fn before_hand_over(rng: &mut Rng) {
        use rand_core::RngCore;
        let mut seed = [0u8; provision::SEED_LEN];
        rng.fill_bytes(&mut seed);
        extern "C" {
            static mut _seed_start: u8;
        }
        // SAFETY: the SEED area (see `take_seed`), which no Rust object lives in.
        unsafe {
            let start = core::ptr::addr_of_mut!(_seed_start);
            for (i, &b) in provision::SEED_MAGIC.iter().chain(seed.iter()).enumerate() {
                core::ptr::write_volatile(start.add(i), b);
            }
        }
        feed_watchdog();
    }

    /// The emulated board's flash as NOR flash for the node's blob update
    /// (`crate::blob_update`): QEMU's code memory is RAM, so erasing fills sectors with
    /// 0xFF and programming clears bits (as NOR flash does, 1 to 0 only), through the same
    /// steps a real board's flash takes. Offsets are addresses.
    /// The caller is the only writer of the areas it updates.
    pub struct ProvisionFlash;

    impl ProvisionFlash {
        /// The end of the code memory (4 MiB), past which nothing is flash.
        const CAPACITY: usize = 0x0040_0000;
        /// The address of offset 0.
        pub const BASE: u32 = 0;

        /// The flash, for one update or recovery at a time.
        pub fn take() -> Self {
            ProvisionFlash
        }
    }

    impl embedded_storage::nor_flash::ErrorType for ProvisionFlash {
        type Error = embedded_storage::nor_flash::NorFlashErrorKind;
    }

    impl embedded_storage::nor_flash::ReadNorFlash for ProvisionFlash {
        const READ_SIZE: usize = 1;

        fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
            let at = offset as usize;
            if at
                .checked_add(bytes.len())
                .is_none_or(|end| end > Self::CAPACITY)
            {
                return Err(embedded_storage::nor_flash::NorFlashErrorKind::OutOfBounds);
            }
            for (i, b) in bytes.iter_mut().enumerate() {
                // SAFETY: an address in the code memory, which is mapped for the whole run.
                *b = unsafe { core::ptr::read_volatile((at + i) as *const u8) };
            }
            Ok(())
        }

        fn capacity(&self) -> usize {
            Self::CAPACITY
        }
    }

    impl embedded_storage::nor_flash::NorFlash for ProvisionFlash {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = 4096;

        fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
            embedded_storage::nor_flash::check_erase(self, from, to)?;
            for at in from as usize..to as usize {
                // SAFETY: whole sectors of the areas the caller updates (checked against
                // the capacity above); no Rust object lives in them.
                unsafe { core::ptr::write_volatile(at as *mut u8, 0xFF) };
            }
            Ok(())
        }

        fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
            embedded_storage::nor_flash::check_write(self, offset, bytes.len())?;
            for (i, &b) in bytes.iter().enumerate() {
                let at = (offset as usize + i) as *mut u8;
                // SAFETY: as for `erase`; programming clears bits only, as on NOR flash.
                unsafe { core::ptr::write_volatile(at, core::ptr::read_volatile(at) & b) };
            }
            Ok(())
        }
    }

    /// Reads the boot's seed and wipes it, so it is never used twice.
    fn take_seed() -> Result<[u8; provision::SEED_LEN], provision::SeedError> {
        extern "C" {
            static mut _seed_start: u8;
            static _seed_end: u8;
        }
        // SAFETY: the linker script puts these symbols around the SEED area, RAM that no
        // Rust object lives in; it is read and wiped here, once, before anything else runs.
        unsafe {
            let start = core::ptr::addr_of_mut!(_seed_start);
            let len = core::ptr::addr_of!(_seed_end) as usize - start as usize;
            let area = core::slice::from_raw_parts_mut(start, len);
            let seed = provision::parse_seed(area);
            for byte in area.iter_mut().take(4 + provision::SEED_LEN) {
                core::ptr::write_volatile(byte, 0);
            }
            seed
        }
    }

    fn fail(reason: core::fmt::Arguments<'_>) -> ! {
        crate::println!("{}: {}", NAME, reason);
        exit(crate::EXIT_BOARD_FAILED)
    }

    static STDOUT: Mutex<RefCell<Option<Stdout>>> = Mutex::new(RefCell::new(None));

    /// Writes to QEMU's standard output.
    ///
    /// Interrupts stay enabled meanwhile: the handle is taken out of its cell for the write,
    /// and a print from an interrupt handler during it opens a handle of its own.
    pub fn console_write(bytes: &[u8]) {
        let taken = critical_section::with(|cs| STDOUT.borrow_ref_mut(cs).take());
        let Some(mut out) = taken.or_else(|| semihosting::io::stdout().ok()) else {
            return;
        };
        // Nowhere to report a console failure; the text is lost.
        let _ = out.write_all(bytes);
        critical_section::with(|cs| {
            let mut slot = STDOUT.borrow_ref_mut(cs);
            if slot.is_none() {
                *slot = Some(out);
            }
        });
    }

    /// Ends QEMU with `status` as its exit status.
    pub fn exit(status: u8) -> ! {
        semihosting::process::exit(i32::from(status))
    }

    extern "C" {
        /// cortex-m-rt's entry for `DefaultHandler` below (it reads the interrupt's number).
        fn DefaultHandler();
    }

    /// The vector table's interrupts: the AN385's 32 lines (CMSDK), each to `DefaultHandler`.
    /// Without a device crate, cortex-m-rt would link ARMv7-M's 240 (832 B more flash).
    #[link_section = ".vector_table.interrupts"]
    #[no_mangle]
    static __INTERRUPTS: [unsafe extern "C" fn(); 32] = [DefaultHandler; 32];

    #[cortex_m_rt::exception]
    unsafe fn DefaultHandler(irqn: i16) {
        if irqn == LAN9118_IRQ as i16 {
            // SAFETY: this is the LAN9118's interrupt and the base `init` used.
            unsafe { Lan9118::on_interrupt(LAN9118_BASE) };
        } else {
            crate::println!("{}: unexpected exception or interrupt {}", NAME, irqn);
            exit(crate::EXIT_FAULT);
        }
    }
}
