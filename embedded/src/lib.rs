//! Embedded shell of dissent-rs: the board layer that apps run on.
//!
//! The layout follows embassy's examples: one module per board under [`board`], chosen by a
//! cargo feature (`mps2-an385`, the QEMU board CI runs; `nucleo-f767zi` and `pico2-w`, real
//! boards that are build-checked), and one binary per app under `src/bin/`. An app never touches
//! registers: it gets a [`Board`] (network stack, entropy, provisioning blob) from [`run`],
//! prints with [`println!`] and stops with [`exit`]. Adding a board touches no app code and
//! adding an app touches no board code.
//!
//! Every board shares the same executor ([`executor::Executor`], which sleeps with `WFI`),
//! the same console plumbing and the same stack high-water meter ([`stack`]).
//!
//! The pure parts (the link's record and frame buffers in [`stream`] and the LAN9118 FIFO
//! framing) also build for the host, where `cargo test --lib --target <host triple>` runs
//! their unit tests, with a check of signatures as a device builds ed25519-dalek; the
//! provisioning format lives in `dissent_core::provision`.
#![cfg_attr(not(test), no_std)]

pub use dissent_core as core_protocol;

pub mod blob_update;
pub mod board;
pub mod region;
pub mod stream;

/// Provisioning and seed blobs, read with the same code the host tool writes them with.
pub use dissent_core::provision;

/// What a role firmware serves: the largest group it takes part in and its frame limit.
///
/// A firmware declares it with [`declare_capacity!`], which exports it as ELF symbols so a
/// host tool (`dissent qemu`) can refuse a group that does not fit before booting a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// The provisioning app tag the firmware reads (`dissent_core::provision::app_for`).
    pub app: [u8; 4],
    /// Most clients in the group.
    pub clients: u32,
    /// Most pseudonym slots in the group.
    pub slots: u32,
    /// The `max_frame` the firmware declares in its Hello.
    pub frame: u32,
}

/// Declares the firmware's [`Capacity`] as the ELF symbols `DISSENT_APP` (4 bytes),
/// `DISSENT_MAX_CLIENTS`, `DISSENT_MAX_SLOTS` and `DISSENT_MAX_FRAME` (u32, little-endian),
/// and defines `fn capacity() -> Capacity` reading them back.
///
/// The app must call `capacity()` (for its own checks): that keeps the symbols in the image.
#[macro_export]
macro_rules! declare_capacity {
    (app: $app:expr, clients: $clients:expr, slots: $slots:expr, frame: $frame:expr $(,)?) => {
        #[no_mangle]
        #[used]
        static DISSENT_APP: [u8; 4] = $app;
        #[no_mangle]
        #[used]
        static DISSENT_MAX_CLIENTS: u32 = $clients as u32;
        #[no_mangle]
        #[used]
        static DISSENT_MAX_SLOTS: u32 = $slots as u32;
        #[no_mangle]
        #[used]
        static DISSENT_MAX_FRAME: u32 = $frame as u32;

        /// This firmware's capacity, read through its exported symbols.
        fn capacity() -> $crate::Capacity {
            // SAFETY: volatile reads of initialised, immutable statics (volatile so that the
            // symbols stay referenced and are not folded away).
            unsafe {
                $crate::Capacity {
                    app: core::ptr::read_volatile(core::ptr::addr_of!(DISSENT_APP)),
                    clients: core::ptr::read_volatile(core::ptr::addr_of!(DISSENT_MAX_CLIENTS)),
                    slots: core::ptr::read_volatile(core::ptr::addr_of!(DISSENT_MAX_SLOTS)),
                    frame: core::ptr::read_volatile(core::ptr::addr_of!(DISSENT_MAX_FRAME)),
                }
            }
        }
    };
}

#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
pub mod executor;
#[cfg(target_os = "none")]
pub mod guard;
#[cfg(all(
    target_os = "none",
    any(feature = "setup-image", not(feature = "mps2-an385"))
))]
pub mod handover;
#[cfg(all(target_os = "none", feature = "setup-image"))]
mod mem;
#[cfg(target_os = "none")]
pub mod stack;
#[cfg(target_os = "none")]
pub mod uplink;

#[cfg(target_os = "none")]
#[doc(hidden)]
pub use console::print_line as __print_line;
#[cfg(target_os = "none")]
pub use device::*;

#[cfg(all(
    target_os = "none",
    any(
        all(feature = "mps2-an385", feature = "nucleo-f767zi"),
        all(feature = "mps2-an385", feature = "pico2-w"),
        all(feature = "nucleo-f767zi", feature = "pico2-w"),
    )
))]
compile_error!("select exactly one board feature");

#[cfg(target_os = "none")]
mod device {
    use embassy_executor::Spawner;
    use static_cell::StaticCell;

    use crate::board::selected;
    use crate::executor::Executor;

    /// Sockets the network stack has room for (every TCP or UDP socket an app opens at once).
    #[cfg(not(feature = "setup-image"))]
    pub const NET_SOCKETS: usize = 8;
    /// Sockets the network stack has room for: the setup image opens one (its link), and
    /// the DHCP and DNS clients one each when built in.
    #[cfg(feature = "setup-image")]
    pub const NET_SOCKETS: usize =
        1 + cfg!(feature = "dhcp") as usize + cfg!(feature = "relay-name") as usize;

    /// Exit status when the board cannot start (no entropy, no network hardware).
    pub const EXIT_BOARD_FAILED: u8 = 3;
    /// Exit status after a panic.
    pub const EXIT_PANIC: u8 = 101;
    /// Exit status after a hard fault or an unexpected exception.
    pub const EXIT_FAULT: u8 = 102;
    /// Exit status after the stack reached its guard ([`crate::guard`]).
    pub const EXIT_STACK_OVERFLOW: u8 = 103;
    /// Exit status when the watchdog fired: the executor made no progress for
    /// [`WATCHDOG_TIMEOUT`].
    pub const EXIT_WATCHDOG: u8 = 104;
    /// How long the executor may go without running the watchdog's task before the board
    /// is stopped (real boards reset).
    pub const WATCHDOG_TIMEOUT: embassy_time::Duration = embassy_time::Duration::from_secs(8);
    /// How often the watchdog's task feeds it.
    pub const WATCHDOG_FEED: embassy_time::Duration = embassy_time::Duration::from_secs(1);

    /// The board's entropy source: a cryptographically secure RNG (rand_core 0.6 traits).
    pub type BoardRng = selected::Rng;

    const _: () = {
        fn is_crypto_rng<R: rand_core::RngCore + rand_core::CryptoRng>() {}
        let _ = is_crypto_rng::<BoardRng>;
    };

    /// What an app gets from the board it runs on.
    pub struct Board {
        /// Name of the board, e.g. `mps2-an385`.
        pub name: &'static str,
        /// The network stack, already running on the board's Ethernet or Wi-Fi.
        ///
        /// On the QEMU board it has the static address QEMU user networking expects
        /// (10.0.2.15/24, gateway 10.0.2.2); real boards use DHCP. Apps may replace the
        /// configuration with `Stack::set_config_v4`.
        pub net: embassy_net::Stack<'static>,
        /// Entropy for keys, handshakes and the network stack's own choices.
        pub rng: BoardRng,
        /// The provisioning area, raw; read it with [`crate::provision::Blob::parse`].
        pub provisioning: &'static [u8],
    }

    /// An app's entry: spawns the app's tasks on the board it is given, and returns.
    pub type App = fn(Spawner, Board);

    /// Boots the board and runs `app` on the executor; never returns.
    ///
    /// `app` is called once, inside the executor, with a spawner and the [`Board`] once
    /// the board's network is up (a Wi-Fi board first loads its radio's firmware).
    pub fn run(app: App) -> ! {
        // `run` is called once, first thing, so the core peripherals are still there.
        let mut core = cortex_m::Peripherals::take().unwrap();
        crate::guard::arm(&mut core.MPU, &mut core.SCB);
        let hardware = selected::init(core);
        // Before the board's start-up or the app reads the node's blob.
        crate::board::area::recover();
        static EXECUTOR: StaticCell<Executor> = StaticCell::new();
        EXECUTOR.init(Executor::new()).run(move |spawner| {
            // The pool holds this one task, spawned once.
            spawner.spawn(boot(spawner, hardware, app).unwrap());
        })
    }

    /// Brings up the board's network, then hands the board to the app.
    #[embassy_executor::task]
    async fn boot(spawner: Spawner, hardware: selected::Parts, app: App) {
        let board = selected::start(spawner, hardware).await;
        app(spawner, board);
    }

    /// Stops the program with `status` (0 = success); under QEMU this is QEMU's exit status.
    ///
    /// On a real board the status is printed and the board resets after a pause (a second
    /// after a panic or fault, ten seconds otherwise, so that a board whose provisioning is
    /// refused prints why now and then and takes up a new blob flashed meanwhile). Apps use
    /// statuses below [`EXIT_BOARD_FAILED`]; the shell uses it and the `EXIT_*` statuses
    /// above it.
    pub fn exit(status: u8) -> ! {
        selected::exit(status)
    }

    /// Prints that the program panicked, and stops.
    ///
    /// Without the `panic-messages` feature it does not say where or why: a handler that
    /// reads its `PanicInfo` at all keeps every panic site's message, source location and
    /// formatting code linked (21 KiB of the trustee's flash, see README.md, "Size").
    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        #[cfg(feature = "panic-messages")]
        crate::println!("panic: {}", info);
        #[cfg(not(feature = "panic-messages"))]
        {
            let _ = info;
            crate::println!("panic (build with the `panic-messages` feature to see where)");
        }
        exit(EXIT_PANIC)
    }

    #[cortex_m_rt::exception]
    unsafe fn HardFault(frame: &cortex_m_rt::ExceptionFrame) -> ! {
        crate::println!("hard fault at pc {:#010x}", frame.pc());
        exit(EXIT_FAULT)
    }
}

#[cfg(test)]
mod tests {
    use dissent_core::identity::{verify, IdentityKey};

    /// Signatures are checked as on a device (ed25519-dalek with `legacy_compatibility`,
    /// whose own check reads only the top three bits of a signature's `S`): one whose `S`
    /// is past the group order `l` (`S + l`, which makes the same equation hold) is refused
    /// all the same, by the core's own check.
    #[test]
    fn a_signature_with_a_scalar_past_the_order_is_refused_as_on_a_device() {
        /// `l = 2^252 + 27742317777372353535851937790883648493`, little-endian.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let key = IdentityKey::from_bytes(&[5; 32]);
        let digest = [9u8; 32];
        let good = key.sign(&digest);
        assert!(verify(&key.public(), &digest, &good));
        let mut past = good;
        let mut carry = 0u16;
        for (i, l) in L.iter().enumerate() {
            let sum = u16::from(good[32 + i]) + u16::from(*l) + carry;
            past[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!((carry, past[63] & 0xe0), (0, 0));
        // The library as the devices build it takes it: the core's check is what refuses it.
        let library = ed25519_dalek::VerifyingKey::from_bytes(&key.public())
            .unwrap()
            .verify_strict(&digest, &ed25519_dalek::Signature::from_bytes(&past));
        assert!(library.is_ok());
        assert!(!verify(&key.public(), &digest, &past));
    }
}
