//! ST NUCLEO-F767ZI: STM32F767ZI (Cortex-M7 at 216 MHz) with its Ethernet MAC and the
//! board's LAN8742A PHY over RMII. Build-checked in CI; not run there.
//!
//! - Network: embassy-stm32's Ethernet driver; the address the provisioning blob gives
//!   (`dissent_core::provision::Ipv4Static`), or DHCPv4 when built with `dhcp`; the MAC
//!   address is derived from the chip's unique ID (locally administered).
//! - Time: embassy-stm32's timer driver (`time-driver-any`, 32.768 kHz ticks).
//! - Entropy: the chip's hardware RNG, clocked at 48 MHz from the PLL's Q output and
//!   checked at start ([`rng_health`]): a board whose RNG gives no data, reports a seed or
//!   clock error, or repeats itself refuses to run (exit status 3, then reset).
//! - Console: USART3 TX on PD8, the ST-LINK virtual COM port (115200 8N1), written through
//!   its registers: embassy-stm32's UART driver, with its clock checks and their messages,
//!   cost the trustee 1.9 KiB of flash for the same bytes out.
//! - Watchdog: the independent watchdog (IWDG, on the LSI clock), fed by a task every
//!   second; an executor stuck for [`crate::WATCHDOG_TIMEOUT`] resets the chip.
//! - Exit: prints the status, then resets after a pause (see [`crate::exit`]).
//! - Provisioning: the last 256 KiB flash sector, updated through a scratch copy in sector 7
//!   ([`ProvisionFlash`]; see `memory/nucleo-f767zi.x`).
//! - Flash mode: single-bank, which the memory maps assume; a DC-net image on a board in
//!   dual-bank mode says how to switch and stops (`single_bank`, exit status 3).

use core::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::Spawner;
use embassy_net::{Runner, StackResources};
use embassy_stm32::eth::{self, Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::peripherals::{ETH, ETH_SMA, IWDG, RNG};
use embassy_stm32::time::Hertz;
use embassy_stm32::wdg::IndependentWatchdog;
use embassy_stm32::{bind_interrupts, rng, Config};
use rand_core::RngCore;
use static_cell::ConstStaticCell;

use crate::{Board, NET_SOCKETS};

/// Name of the board.
pub const NAME: &str = "nucleo-f767zi";
/// The board's entropy source: the hardware RNG.
pub type Rng = rng::Rng<'static, RNG>;

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<RNG>;
});

/// Core clock.
const CORE_HZ: u32 = 216_000_000;
/// APB1's clock (the core clock / 4), which USART3 runs from.
const PCLK1_HZ: u32 = CORE_HZ / 4;
/// The console's baud rate.
const CONSOLE_BAUD: u32 = 115_200;

/// Hardware brought up before the executor runs.
pub struct Parts {
    eth: Device,
    rng: Rng,
    watchdog: IndependentWatchdog<'static, IWDG>,
}

/// Set once USART3 is ready to send.
static CONSOLE: AtomicBool = AtomicBool::new(false);

/// Sets up clocks, console, the watchdog, entropy and Ethernet.
pub fn init(_core: cortex_m::Peripherals) -> Parts {
    let mut config = Config::default();
    {
        use embassy_stm32::rcc::*;
        // 8 MHz from the ST-LINK's MCO; the PLL's VCO at 432 MHz, P to 216 MHz for the
        // core, Q to 48 MHz for the RNG (and USB), which runs from no other clock.
        config.rcc.hse = Some(Hse {
            freq: Hertz(8_000_000),
            mode: HseMode::Bypass,
        });
        config.rcc.pll_src = PllSource::HSE;
        config.rcc.pll = Some(Pll {
            prediv: PllPreDiv::DIV4,
            mul: PllMul::MUL216,
            divp: Some(PllPDiv::DIV2),
            divq: Some(PllQDiv::DIV9),
            divr: None,
        });
        config.rcc.ahb_pre = AHBPrescaler::DIV1;
        config.rcc.apb1_pre = APBPrescaler::DIV4;
        config.rcc.apb2_pre = APBPrescaler::DIV2;
        config.rcc.sys = Sysclk::PLL1_P;
        config.rcc.mux.clk48sel = mux::Clk48sel::PLL1_Q;
    }
    let p = embassy_stm32::init(config);

    // Taken so that nothing else drives them.
    let (_usart, _tx) = (p.USART3, p.PD8);
    console_init();
    #[cfg(not(feature = "setup-image"))]
    single_bank();

    let mut watchdog = IndependentWatchdog::new(p.IWDG, crate::WATCHDOG_TIMEOUT.as_micros() as u32);
    watchdog.unleash();

    if let Err(e) = rng_health() {
        crate::println!("{}: entropy: {}; refusing to run without it", NAME, e);
        exit(crate::EXIT_BOARD_FAILED)
    }
    let rng = Rng::new(p.RNG, Irqs);

    // DMA descriptors and buffers, zeroed in place in RAM the Ethernet DMA reaches.
    static PACKETS: ConstStaticCell<PacketQueue<2, 2>> = ConstStaticCell::new(PacketQueue::new());
    let eth = Ethernet::new(
        PACKETS.take(),
        p.ETH,
        Irqs,
        p.PA1,
        p.PA7,
        p.PC4,
        p.PC5,
        p.PG13,
        p.PB13,
        p.PG11,
        mac_address(embassy_stm32::uid::uid()),
        p.ETH_SMA,
        p.PA2,
        p.PC1,
    );
    Parts { eth, rng, watchdog }
}

/// USART3 at 115200 8N1, transmit only, on PD8 (alternate function 7).
fn console_init() {
    use embassy_stm32::pac;
    use embassy_stm32::pac::gpio::vals::Moder;
    pac::RCC.ahb1enr().modify(|w| w.set_gpioden(true));
    pac::RCC.apb1enr().modify(|w| w.set_usart3en(true));
    pac::GPIOD.afr(1).modify(|w| w.set_afr(0, 7));
    pac::GPIOD
        .moder()
        .modify(|w| w.set_moder(8, Moder::ALTERNATE));
    let usart = pac::USART3;
    usart
        .brr()
        .write(|w| w.set_brr(((PCLK1_HZ + CONSOLE_BAUD / 2) / CONSOLE_BAUD) as u16));
    usart.cr1().write(|w| {
        w.set_te(true);
        w.set_ue(true);
    });
    CONSOLE.store(true, Ordering::Release);
}

/// Stops a board whose flash is in dual-bank mode (option bit nDBANK clear), before
/// anything uses the flash driver: its sectors are then numbered and sized otherwise than
/// the memory maps (`memory/nucleo-f767zi*.x`) and embassy-stm32's driver, built
/// `single-bank`, take them, and the driver would panic without saying why. The setup
/// image leaves it out: it runs only after the trustee image's start-up has checked
/// (README.md, "Memory maps of the real boards").
#[cfg(not(feature = "setup-image"))]
fn single_bank() {
    if !embassy_stm32::pac::FLASH.optcr().read().n_dbank() {
        crate::println!(
            "{}: flash in dual-bank mode, the firmware needs single-bank: set nDBANK with \
             STM32CubeProgrammer (STM32_Programmer_CLI -c port=SWD -ob nDBANK=1), then \
             flash the board again",
            NAME
        );
        exit(crate::EXIT_BOARD_FAILED)
    }
}

/// Words the RNG health check draws.
const HEALTH_WORDS: usize = 16;
/// Status polls allowed per word (a word takes about 40 RNG clock cycles).
const HEALTH_POLLS: u32 = 100_000;

/// Checks the hardware RNG before anything uses it: enabled, it must give words without a
/// clock or seed error, and no word may repeat the one before (FIPS 140-2's continuous
/// test). embassy's driver would instead retry forever and hang the board.
fn rng_health() -> Result<(), &'static str> {
    use embassy_stm32::pac;
    pac::RCC.ahb2enr().modify(|w| w.set_rngen(true));
    let rng = pac::RNG;
    rng.cr().modify(|w| w.set_rngen(true));
    let mut last = None;
    for _ in 0..HEALTH_WORDS {
        let mut polls = 0;
        let word = loop {
            let sr = rng.sr().read();
            if sr.cecs() {
                return Err("the RNG's clock is missing or too slow");
            }
            if sr.secs() {
                return Err("the RNG reports a seed error");
            }
            if sr.drdy() {
                break rng.dr().read();
            }
            polls += 1;
            if polls == HEALTH_POLLS {
                return Err("the RNG gives no data");
            }
        };
        if last == Some(word) {
            return Err("the RNG repeats itself");
        }
        last = Some(word);
    }
    rng.cr().modify(|w| w.set_rngen(false));
    Ok(())
}

/// A locally administered unicast MAC address folded from the chip's 96-bit unique ID.
fn mac_address(uid: [u8; 12]) -> [u8; 6] {
    let mut mac = [0x02, 0, 0, 0, 0, 0];
    for (i, byte) in uid.iter().enumerate() {
        mac[1 + i % 5] ^= byte;
    }
    mac
}

/// Starts the network stack (the provisioned address, or DHCPv4) and hands out the board.
pub async fn start(spawner: Spawner, parts: Parts) -> Board {
    let Parts {
        eth,
        mut rng,
        watchdog,
    } = parts;
    let config = match crate::board::area::network_config() {
        Ok(config) => config,
        Err(e) => {
            crate::println!("{}: {}", NAME, e);
            exit(1)
        }
    };
    // Built in place in .bss, never on the stack.
    static RESOURCES: ConstStaticCell<StackResources<NET_SOCKETS>> =
        ConstStaticCell::new(StackResources::new());
    let (net, runner) =
        embassy_net::new(eth, config, RESOURCES.take(), RngCore::next_u64(&mut rng));
    // The task pools have room for these tasks, spawned once each.
    spawner.spawn(net_task(runner).unwrap());
    spawner.spawn(watchdog_task(watchdog).unwrap());
    Board {
        name: NAME,
        net,
        rng,
        provisioning: crate::board::area::provisioning(),
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Device>) -> ! {
    runner.run().await
}

/// Feeds the watchdog while the executor runs tasks.
#[embassy_executor::task]
async fn watchdog_task(mut watchdog: IndependentWatchdog<'static, IWDG>) -> ! {
    loop {
        watchdog.pet();
        embassy_time::Timer::after(crate::WATCHDOG_FEED).await;
    }
}

/// Writes to the ST-LINK virtual COM port, waiting for room for each byte.
///
/// Interrupts stay enabled during the (slow, blocking) write; a print from an interrupt
/// handler meanwhile may interleave its bytes with the line being written.
pub fn console_write(bytes: &[u8]) {
    if !CONSOLE.load(Ordering::Acquire) {
        return;
    }
    let usart = embassy_stm32::pac::USART3;
    for &byte in bytes {
        while !usart.isr().read().txe() {}
        usart.tdr().write(|w| w.set_dr(u16::from(byte)));
    }
}

/// Before the board goes to another image (`crate::handover`): the Ethernet MAC and its DMA
/// held in reset and released (its DMA would go on writing received frames into RAM the
/// next image uses for other things), and the watchdog fed. Nothing to hand on: the
/// entropy is the chip's own.
pub fn before_hand_over(_rng: &mut Rng) {
    use embassy_stm32::pac::RCC;
    RCC.ahb1rstr().modify(|w| w.set_ethrst(true));
    RCC.ahb1rstr().modify(|w| w.set_ethrst(false));
    feed_watchdog();
}

/// The chip's flash as NOR flash for the node's blob update (`crate::blob_update`):
/// embassy-stm32's blocking driver, whose erase stalls code fetched from the flash (nothing
/// else runs meanwhile). Offsets are from [`ProvisionFlash::BASE`]; it erases 256 KiB
/// sectors (sector 5 on in single-bank mode), feeding the watchdog before each (an erase
/// takes up to 2.6 s, the watchdog 8 s).
pub struct ProvisionFlash(embassy_stm32::flash::Flash<'static, embassy_stm32::flash::Blocking>);

impl ProvisionFlash {
    /// The address of offset 0.
    pub const BASE: u32 = 0x0800_0000;

    /// The flash, for one update or recovery at a time.
    pub fn take() -> Self {
        // SAFETY: nothing else drives the flash controller (embassy-stm32's start-up sets
        // its wait states before), and the update and the recovery take it one at a time.
        let flash = unsafe { embassy_stm32::peripherals::FLASH::steal() };
        ProvisionFlash(embassy_stm32::flash::Flash::new_blocking(flash))
    }
}

impl embedded_storage::nor_flash::ErrorType for ProvisionFlash {
    type Error = embassy_stm32::flash::Error;
}

impl embedded_storage::nor_flash::ReadNorFlash for ProvisionFlash {
    const READ_SIZE: usize = embassy_stm32::flash::READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.0.blocking_read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        embassy_stm32::flash::FLASH_SIZE
    }
}

impl embedded_storage::nor_flash::NorFlash for ProvisionFlash {
    const WRITE_SIZE: usize = embassy_stm32::flash::WRITE_SIZE;
    const ERASE_SIZE: usize = embassy_stm32::flash::MAX_ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let mut at = from;
        while at < to {
            let end = to.min(at + Self::ERASE_SIZE as u32);
            feed_watchdog();
            self.0.blocking_erase(at, end)?;
            at = end;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.blocking_write(offset, bytes)
    }
}

/// Reloads the independent watchdog's counter (what its task does every second).
fn feed_watchdog() {
    use embassy_stm32::pac::iwdg::vals::Key;
    embassy_stm32::pac::IWDG
        .kr()
        .write(|w| w.set_key(Key::RESET));
}

/// Prints the status, pauses, and resets the chip.
pub fn exit(status: u8) -> ! {
    let pause_s = if status >= crate::EXIT_PANIC { 1 } else { 10 };
    crate::println!(
        "{}: exit status {}; resetting in {} s",
        NAME,
        status,
        pause_s
    );
    // The watchdog (8 s) may reset it first; either way the board starts again.
    cortex_m::asm::delay(CORE_HZ * pause_s);
    cortex_m::peripheral::SCB::sys_reset()
}
