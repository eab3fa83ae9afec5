//! Raspberry Pi Pico 2 W: RP2350A (Cortex-M33 at 150 MHz; the second core is not used),
//! 4 MiB of flash, and an Infineon CYW43439 Wi-Fi chip on a PIO-driven SPI bus.
//! Build-checked in CI; not run there.
//!
//! - Network: cyw43 over cyw43-pio (PIO0, DMA channel 0; power on GP23, chip select GP25,
//!   data GP24, clock GP29); the address the provisioning blob gives, or DHCPv4 (built with
//!   `dhcp`, as `cargo build-pico2-w` does). The board joins the Wi-Fi network the
//!   provisioning blob names (`dissent_core::provision::Wifi`, WPA2/WPA3 personal or open)
//!   and joins again whenever the link drops. The radio's firmware, country table and board
//!   configuration are linked into the image in their own section (`.radio_firmware`, about
//!   226 KiB: see `memory/pico2-w.x`), so one image is all there is to flash.
//! - Time: embassy-rp's timer driver (1 MHz ticks).
//! - Entropy: the RP2350's TRNG (ring-oscillator source with the hardware's own
//!   autocorrelation and repetition tests), checked at start ([`rng_health`]).
//! - Console: UART0 TX on GP0 (115200 8N1), e.g. through the Raspberry Pi Debug Probe.
//! - Watchdog: the RP2350 watchdog, fed by a task every second; an executor stuck for
//!   [`crate::WATCHDOG_TIMEOUT`] resets the chip.
//! - Exit: prints the status, then resets after a pause (see [`crate::exit`]).
//! - Provisioning: the last 64 KiB of flash, updated through a scratch copy below the setup
//!   image's blob ([`ProvisionFlash`]; see `memory/pico2-w.x`).

use core::cell::RefCell;

use aligned::{Aligned, A4};
use critical_section::Mutex;
use cyw43_pio::{PioSpi, RM2_CLOCK_DIVIDER};
use dissent_core::provision::Wifi;
use embassy_executor::Spawner;
use embassy_net::{Runner, StackResources};
use embassy_rp::gpio::{Level, Output};
use embassy_rp::peripherals::{FLASH, PIO0, TRNG};
use embassy_rp::pio::{self, Pio};
use embassy_rp::uart::{self, Blocking, UartTx};
use embassy_rp::watchdog::Watchdog;
use embassy_rp::{bind_interrupts, dma, trng};
use embassy_time::{Duration, Timer};
use rand_core::RngCore;
use static_cell::{ConstStaticCell, StaticCell};

use crate::{Board, NET_SOCKETS};

/// Name of the board.
pub const NAME: &str = "pico2-w";
/// The board's entropy source: the TRNG.
pub type Rng = trng::Trng<'static, TRNG>;

type Spi = PioSpi<'static, PIO0, 0>;

bind_interrupts!(struct Irqs {
    PIO0_IRQ_0 => pio::InterruptHandler<PIO0>;
    TRNG_IRQ => trng::InterruptHandler<TRNG>;
    DMA_IRQ_0 => dma::InterruptHandler<embassy_rp::peripherals::DMA_CH0>;
});

/// Core clock (embassy-rp's default clock set-up).
const CORE_HZ: u32 = 150_000_000;
/// How long to wait before joining the network again after a failed join.
const JOIN_RETRY: Duration = Duration::from_secs(5);

/// The CYW43439's firmware, as the driver takes it (4-byte aligned).
#[link_section = ".radio_firmware"]
static FIRMWARE: Aligned<A4, [u8; cyw43_firmware::CYW43_43439A0.len()]> =
    Aligned(*cyw43_firmware::CYW43_43439A0);
/// The radio's country table (CLM).
#[link_section = ".radio_firmware"]
static CLM: [u8; cyw43_firmware::CYW43_43439A0_CLM.len()] = *cyw43_firmware::CYW43_43439A0_CLM;
/// The radio's board configuration (its "NVRAM"): vendor data for the CYW43439 as fitted to
/// the Pico W and Pico 2 W (crystal, antenna, transmit power limits), as `key=value` lines
/// each ended by a NUL, then an empty one. It is data, not code, copied unchanged from the
/// cyw43 crate (src/nvram.rs up to 0.6, MIT OR Apache-2.0), which carries the chip vendor's
/// board file for this module. cyw43 0.7 takes it from the caller and neither it nor
/// cyw43-firmware ships it.
#[link_section = ".radio_firmware"]
static NVRAM: Aligned<A4, [u8; NVRAM_TEXT.len()]> = Aligned(*NVRAM_TEXT);
const NVRAM_TEXT: &[u8; 741] = b"NVRAMRev=$Rev$\x00\
manfid=0x2d0\x00\
prodid=0x0727\x00\
vendid=0x14e4\x00\
devid=0x43e2\x00\
boardtype=0x0887\x00\
boardrev=0x1100\x00\
boardnum=22\x00\
macaddr=00:A0:50:b5:59:5e\x00\
sromrev=11\x00\
boardflags=0x00404001\x00\
boardflags3=0x04000000\x00\
xtalfreq=37400\x00\
nocrc=1\x00\
ag0=255\x00\
aa2g=1\x00\
ccode=ALL\x00\
pa0itssit=0x20\x00\
extpagain2g=0\x00\
pa2ga0=-168,6649,-778\x00\
AvVmid_c0=0x0,0xc8\x00\
cckpwroffset0=5\x00\
maxp2ga0=84\x00\
txpwrbckof=6\x00\
cckbw202gpo=0\x00\
legofdmbw202gpo=0x66111111\x00\
mcsbw202gpo=0x77711111\x00\
propbw202gpo=0xdd\x00\
ofdmdigfilttype=18\x00\
ofdmdigfilttypebe=18\x00\
papdmode=1\x00\
papdvalidtest=1\x00\
pacalidx2g=45\x00\
papdepsoffset=-30\x00\
papdendidx=58\x00\
ltecxmux=0\x00\
ltecxpadnum=0x0102\x00\
ltecxfnsel=0x44\x00\
ltecxgcigpio=0x01\x00\
il0macaddr=00:90:4c:c5:12:38\x00\
wl0id=0x431b\x00\
deadman_to=0xffffffff\x00\
muxenab=0x100\x00\
spurconfig=0x3\x00\
glitch_based_crsmin=1\x00\
btc_mode=1\x00\
\x00";

/// The radio driver's state (it holds 12 KiB of packet buffers).
struct RadioState(cyw43::State);

// SAFETY: the state holds raw pointers to buffers of an ioctl in flight, used only by the
// driver's own tasks on the one core and executor that run everything here.
unsafe impl Send for RadioState {}

/// Hardware brought up before the executor runs.
pub struct Parts {
    power: Output<'static>,
    spi: Spi,
    rng: Rng,
    watchdog: Watchdog,
}

static CONSOLE: Mutex<RefCell<Option<UartTx<'static, Blocking>>>> = Mutex::new(RefCell::new(None));

/// Sets up the console, the watchdog, entropy and the radio's bus.
pub fn init(_core: cortex_m::Peripherals) -> Parts {
    let p = embassy_rp::init(Default::default());

    let console = UartTx::new_blocking(p.UART0, p.PIN_0, uart::Config::default());
    critical_section::with(|cs| CONSOLE.borrow_ref_mut(cs).replace(console));

    let mut watchdog = Watchdog::new(p.WATCHDOG);
    watchdog.start(crate::WATCHDOG_TIMEOUT);

    let mut rng = trng::Trng::new(p.TRNG, Irqs, trng::Config::default());
    if let Err(e) = rng_health(&mut rng) {
        crate::println!("{}: entropy: {}; refusing to run without it", NAME, e);
        exit(crate::EXIT_BOARD_FAILED)
    }

    let power = Output::new(p.PIN_23, Level::Low);
    let cs = Output::new(p.PIN_25, Level::High);
    let Pio {
        common, sm0, irq0, ..
    } = Pio::new(p.PIO0, Irqs);
    // The PIO block's shared state lives for the whole run (dropping it frees the program).
    static COMMON: StaticCell<pio::Common<'static, PIO0>> = StaticCell::new();
    let common = COMMON.init(common);
    let spi = PioSpi::new(
        common,
        sm0,
        // The Pico 2 W's radio module needs the slower bus clock.
        RM2_CLOCK_DIVIDER,
        irq0,
        cs,
        p.PIN_24,
        p.PIN_29,
        dma::Channel::new(p.DMA_CH0, Irqs),
    );
    Parts {
        power,
        spi,
        rng,
        watchdog,
    }
}

/// Words the RNG health check draws.
const HEALTH_WORDS: usize = 16;

/// Checks the TRNG before anything uses it: no word may repeat the one before (FIPS 140-2's
/// continuous test) and not all bits may be stuck.
fn rng_health(rng: &mut Rng) -> Result<(), &'static str> {
    let (mut last, mut ones, mut zeros) = (None, 0u32, 0u32);
    for _ in 0..HEALTH_WORDS {
        let word = rng.next_u32();
        if last == Some(word) {
            return Err("the TRNG repeats itself");
        }
        last = Some(word);
        ones |= word;
        zeros |= !word;
    }
    if ones != u32::MAX || zeros != u32::MAX {
        return Err("a TRNG bit is stuck");
    }
    Ok(())
}

/// Starts the radio and the network stack (the provisioned address, or DHCPv4), sets the
/// Wi-Fi task joining the provisioned network, and hands out the board.
pub async fn start(spawner: Spawner, parts: Parts) -> Board {
    let Parts {
        power,
        spi,
        mut rng,
        watchdog,
    } = parts;
    // Fed from now on, also while the radio's firmware loads.
    spawner.spawn(watchdog_task(watchdog).unwrap());
    let provisioning = crate::board::area::provisioning();
    let network = crate::board::area::node()
        .and_then(|node| node.wifi.ok_or("the provisioning names no Wi-Fi network"))
        .and_then(|wifi| Ok((wifi, crate::board::area::network_config()?)));
    let (wifi, config) = match network {
        Ok(network) => network,
        Err(e) => {
            crate::println!("{}: {}", NAME, e);
            exit(1)
        }
    };

    // Built in place (not all of it is zero, so a ConstStaticCell would keep a 12 KiB image
    // of it in flash, in `.data`).
    static STATE: ConstStaticCell<RadioState> =
        ConstStaticCell::new(RadioState(cyw43::State::new()));
    let state = STATE.take();
    let (device, mut control, runner) =
        cyw43::new(&mut state.0, power, spi, &FIRMWARE, &NVRAM).await;
    // The task pools have room for these tasks, spawned once each.
    spawner.spawn(radio_task(runner).unwrap());
    control.init(&CLM).await;
    control
        .set_power_management(cyw43::PowerManagementMode::PowerSave)
        .await;

    // Built in place in .bss, never on the stack.
    static RESOURCES: ConstStaticCell<StackResources<NET_SOCKETS>> =
        ConstStaticCell::new(StackResources::new());
    let (net, runner) = embassy_net::new(
        device,
        config,
        RESOURCES.take(),
        RngCore::next_u64(&mut rng),
    );
    spawner.spawn(net_task(runner).unwrap());
    spawner.spawn(wifi_task(control, wifi, net).unwrap());
    Board {
        name: NAME,
        net,
        rng,
        provisioning,
    }
}

#[embassy_executor::task]
async fn radio_task(runner: cyw43::Runner<'static, cyw43::SpiBus<Output<'static>, Spi>>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, cyw43::NetDriver<'static>>) -> ! {
    runner.run().await
}

/// Joins the Wi-Fi network, and joins it again whenever the link drops.
#[embassy_executor::task]
async fn wifi_task(
    mut control: cyw43::Control<'static>,
    wifi: Wifi<'static>,
    net: embassy_net::Stack<'static>,
) -> ! {
    loop {
        let options = if wifi.passphrase.is_empty() {
            cyw43::JoinOptions::new_open()
        } else {
            cyw43::JoinOptions::new(wifi.passphrase.as_bytes())
        };
        match control.join(wifi.ssid, options).await {
            Ok(()) => {
                crate::println!("{}: joined Wi-Fi network {}", NAME, wifi.ssid);
                net.wait_link_down().await;
                crate::println!("{}: Wi-Fi link lost; joining again", NAME);
            }
            Err(e) => {
                crate::println!(
                    "{}: cannot join Wi-Fi network {}: {:?}; trying again in {} s",
                    NAME,
                    wifi.ssid,
                    e,
                    JOIN_RETRY.as_secs()
                );
                Timer::after(JOIN_RETRY).await;
            }
        }
    }
}

/// Feeds the watchdog while the executor runs tasks.
#[embassy_executor::task]
async fn watchdog_task(mut watchdog: Watchdog) -> ! {
    loop {
        watchdog.feed(crate::WATCHDOG_TIMEOUT);
        Timer::after(crate::WATCHDOG_FEED).await;
    }
}

/// Writes to UART0.
///
/// Interrupts stay enabled during the (slow, blocking) write: the UART is taken out of its
/// cell meanwhile, so a print from an interrupt handler during it is dropped.
pub fn console_write(bytes: &[u8]) {
    let Some(mut uart) = critical_section::with(|cs| CONSOLE.borrow_ref_mut(cs).take()) else {
        return;
    };
    // Nowhere to report a console failure; the text is lost.
    let _ = uart.blocking_write(bytes);
    let _ = uart.blocking_flush();
    critical_section::with(|cs| CONSOLE.borrow_ref_mut(cs).replace(uart));
}

/// Before the board goes to another image (`crate::handover`): the DMA and the PIO block that
/// drive the radio's bus put in reset (a transfer under way would go on writing into RAM
/// the next image uses for other things; its start-up takes them out of reset), and the
/// watchdog fed. Nothing to hand on: the entropy is the chip's own.
pub fn before_hand_over(_rng: &mut Rng) {
    embassy_rp::pac::RESETS.reset().modify(|w| {
        w.set_dma(true);
        w.set_pio0(true);
    });
    feed_watchdog();
}

/// Reloads the watchdog's counter (microseconds), as its task does every second.
fn feed_watchdog() {
    embassy_rp::pac::WATCHDOG
        .load()
        .write_value(embassy_rp::pac::watchdog::regs::Load(
            crate::WATCHDOG_TIMEOUT.as_micros() as u32,
        ));
}

/// Bytes of the board's flash.
const FLASH_SIZE: usize = 4 * 1024 * 1024;

/// The board's flash as NOR flash for the node's blob update (`crate::blob_update`):
/// embassy-rp's blocking driver, which erases (4 KiB sectors) and programs through the boot
/// ROM from RAM with interrupts off, as the flash the code runs from needs. Offsets are
/// from [`ProvisionFlash::BASE`]; the watchdog is fed before each erase.
pub struct ProvisionFlash(
    embassy_rp::flash::Flash<'static, FLASH, embassy_rp::flash::Blocking, FLASH_SIZE>,
);

impl ProvisionFlash {
    /// The address of offset 0.
    pub const BASE: u32 = 0x1000_0000;

    /// The flash, for one update or recovery at a time.
    pub fn take() -> Self {
        // SAFETY: nothing else drives the flash (the program only reads it, through XIP),
        // and the update and the recovery take it one at a time.
        let flash = unsafe { FLASH::steal() };
        ProvisionFlash(embassy_rp::flash::Flash::new_blocking(flash))
    }
}

impl embedded_storage::nor_flash::ErrorType for ProvisionFlash {
    type Error = embassy_rp::flash::Error;
}

impl embedded_storage::nor_flash::ReadNorFlash for ProvisionFlash {
    const READ_SIZE: usize = embassy_rp::flash::READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.0.blocking_read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        FLASH_SIZE
    }
}

impl embedded_storage::nor_flash::NorFlash for ProvisionFlash {
    const WRITE_SIZE: usize = embassy_rp::flash::WRITE_SIZE;
    const ERASE_SIZE: usize = embassy_rp::flash::ERASE_SIZE;

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
