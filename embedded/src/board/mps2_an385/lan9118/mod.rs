//! SMSC LAN9118 Ethernet controller, as QEMU's mps2 boards have it: an embassy-net driver.
//!
//! The controller is programmed through FIFOs in a 256-byte register window: frames are
//! popped from the RX FIFOs and pushed to the TX FIFO word by word (framing in [`fifo`]).
//! The interrupt line raises on "RX status FIFO has a frame" and, when the TX FIFO was too
//! full to take a frame, on "TX FIFO has room"; the handler masks what fired and wakes the
//! stack's task, which re-arms the interrupt when it finds the FIFO empty (or full) again.
//! Because it re-checks the FIFO after arming, a frame arriving in between is never missed.

pub mod fifo;

#[cfg(target_os = "none")]
pub use driver::*;

#[cfg(target_os = "none")]
mod driver {
    use core::task::Context;

    use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
    use embassy_sync::waitqueue::AtomicWaker;
    use static_cell::ConstStaticCell;

    use super::fifo::{self, MAX_FRAME};

    // Register offsets from the base address.
    const RX_DATA: usize = 0x00;
    const TX_DATA: usize = 0x20;
    const RX_STATUS: usize = 0x40;
    const ID_REV: usize = 0x50;
    const IRQ_CFG: usize = 0x54;
    const INT_STS: usize = 0x58;
    const INT_EN: usize = 0x5c;
    const BYTE_TEST: usize = 0x64;
    const FIFO_INT: usize = 0x68;
    const RX_CFG: usize = 0x6c;
    const TX_CFG: usize = 0x70;
    const HW_CFG: usize = 0x74;
    const RX_FIFO_INF: usize = 0x7c;
    const TX_FIFO_INF: usize = 0x80;
    const PMT_CTRL: usize = 0x84;
    const MAC_CSR_CMD: usize = 0xa4;
    const MAC_CSR_DATA: usize = 0xa8;

    const BYTE_TEST_VALUE: u32 = 0x8765_4321;
    /// IRQ_CFG: enable the line, active high, push-pull (QEMU inverts it otherwise).
    const IRQ_CFG_EN_HIGH_PUSH_PULL: u32 = 1 << 8 | 1 << 4 | 1;
    const HW_CFG_SRST: u32 = 1;
    const PMT_CTRL_READY: u32 = 1;
    /// TX_CFG: transmitter on; let the TX status FIFO overrun (statuses are not read).
    const TX_CFG_ON_STATUS_OVERRUN: u32 = 1 << 1 | 1 << 2;
    /// INT_STS / INT_EN: RX status FIFO level reached (a frame is waiting).
    const INT_RSFL: u32 = 1 << 3;
    /// INT_STS / INT_EN: TX data FIFO has more room than FIFO_INT's TX level.
    const INT_TDFA: u32 = 1 << 9;
    /// FIFO_INT: TX level, in 64-byte units, with room for the largest frame; RX level 0
    /// (RSFL once one frame is waiting).
    const FIFO_INT_LEVELS: u32 = (fifo::tx_fifo_bytes(MAX_FRAME).div_ceil(64) as u32) << 24;

    const MAC_CSR_BUSY: u32 = 1 << 31;
    const MAC_CSR_READ: u32 = 1 << 30;
    const MAC_CR: u32 = 1;
    const MAC_ADDRH: u32 = 2;
    const MAC_ADDRL: u32 = 3;
    const MAC_MII_ACC: u32 = 6;
    const MAC_MII_DATA: u32 = 7;
    const MAC_CR_TXEN: u32 = 1 << 3;
    const MAC_CR_RXEN: u32 = 1 << 2;
    const MAC_CR_FDPX: u32 = 1 << 20;
    const MII_ACC_BUSY: u32 = 1;
    const PHY_ADDR: u32 = 1;
    const PHY_BSR: u32 = 1;
    const PHY_BSR_LINK: u32 = 1 << 2;

    /// Register polls before a busy bit is declared stuck.
    const POLL_LIMIT: u32 = 100_000;
    /// Frames `receive` looks at per call before yielding to the rest of the stack.
    const RX_BATCH: usize = 8;

    static RX_WAKER: AtomicWaker = AtomicWaker::new();
    static TX_WAKER: AtomicWaker = AtomicWaker::new();

    /// Why the controller could not be brought up.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum InitError {
        /// No LAN9118 answers at the base address (BYTE_TEST read back wrong).
        NotFound {
            /// What BYTE_TEST read.
            byte_test: u32,
        },
        /// A driver was already made: there is one controller.
        Taken,
        /// A reset, ready or busy bit never settled.
        Stuck {
            /// The register that stayed busy.
            register: &'static str,
        },
    }

    impl core::fmt::Display for InitError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                Self::NotFound { byte_test } => {
                    write!(f, "no LAN9118 found (BYTE_TEST read {byte_test:#010x})")
                }
                Self::Taken => write!(f, "LAN9118 driver already in use"),
                Self::Stuck { register } => write!(f, "LAN9118 {register} stayed busy"),
            }
        }
    }

    impl core::error::Error for InitError {}

    /// The register window.
    #[derive(Clone, Copy)]
    struct Regs(usize);

    impl Regs {
        fn read(self, offset: usize) -> u32 {
            // SAFETY: `Lan9118::new`'s caller vouched that this is the controller's window.
            unsafe { core::ptr::read_volatile((self.0 + offset) as *const u32) }
        }

        fn write(self, offset: usize, value: u32) {
            // SAFETY: as in `read`.
            unsafe { core::ptr::write_volatile((self.0 + offset) as *mut u32, value) }
        }

        fn wait_clear(
            self,
            offset: usize,
            bit: u32,
            register: &'static str,
        ) -> Result<(), InitError> {
            for _ in 0..POLL_LIMIT {
                if self.read(offset) & bit == 0 {
                    return Ok(());
                }
            }
            Err(InitError::Stuck { register })
        }

        fn mac_read(self, reg: u32) -> Result<u32, InitError> {
            self.wait_clear(MAC_CSR_CMD, MAC_CSR_BUSY, "MAC_CSR_CMD")?;
            self.write(MAC_CSR_CMD, MAC_CSR_BUSY | MAC_CSR_READ | reg);
            self.wait_clear(MAC_CSR_CMD, MAC_CSR_BUSY, "MAC_CSR_CMD")?;
            Ok(self.read(MAC_CSR_DATA))
        }

        fn mac_write(self, reg: u32, value: u32) -> Result<(), InitError> {
            self.wait_clear(MAC_CSR_CMD, MAC_CSR_BUSY, "MAC_CSR_CMD")?;
            self.write(MAC_CSR_DATA, value);
            self.write(MAC_CSR_CMD, MAC_CSR_BUSY | reg);
            self.wait_clear(MAC_CSR_CMD, MAC_CSR_BUSY, "MAC_CSR_CMD")
        }

        fn phy_read(self, reg: u32) -> Result<u32, InitError> {
            let wait_mii = |regs: Self| {
                for _ in 0..POLL_LIMIT {
                    if regs.mac_read(MAC_MII_ACC)? & MII_ACC_BUSY == 0 {
                        return Ok(());
                    }
                }
                Err(InitError::Stuck {
                    register: "MII_ACC",
                })
            };
            wait_mii(self)?;
            self.mac_write(MAC_MII_ACC, PHY_ADDR << 11 | reg << 6 | MII_ACC_BUSY)?;
            wait_mii(self)?;
            Ok(self.mac_read(MAC_MII_DATA)? & 0xffff)
        }

        /// Clears the stale status of `bits` and unmasks them.
        fn arm(self, bits: u32) {
            critical_section::with(|_| {
                self.write(INT_STS, bits);
                self.write(INT_EN, self.read(INT_EN) | bits);
            });
        }
    }

    /// A LAN9118 driving embassy-net.
    pub struct Lan9118 {
        regs: Regs,
        mac: [u8; 6],
        link_up: bool,
        tag: u16,
        rx: &'static mut [u8; MAX_FRAME],
        tx: &'static mut [u8; MAX_FRAME],
    }

    /// The driver's frame buffers, zeroed in place (never moved through the stack).
    static BUFFERS: ConstStaticCell<[[u8; MAX_FRAME]; 2]> =
        ConstStaticCell::new([[0; MAX_FRAME]; 2]);

    impl Lan9118 {
        /// Resets the controller at `base` and starts its receiver and transmitter.
        ///
        /// # Safety
        ///
        /// `base` is the address of a LAN9118 register window that nothing else uses.
        pub unsafe fn new(base: usize) -> Result<Self, InitError> {
            let regs = Regs(base);
            let byte_test = regs.read(BYTE_TEST);
            if byte_test != BYTE_TEST_VALUE {
                return Err(InitError::NotFound { byte_test });
            }
            regs.write(INT_EN, 0);
            regs.write(HW_CFG, HW_CFG_SRST);
            regs.wait_clear(HW_CFG, HW_CFG_SRST, "HW_CFG")?;
            let mut ready = false;
            for _ in 0..POLL_LIMIT {
                if regs.read(PMT_CTRL) & PMT_CTRL_READY != 0 {
                    ready = true;
                    break;
                }
            }
            if !ready {
                return Err(InitError::Stuck {
                    register: "PMT_CTRL",
                });
            }

            // The address the controller loaded from its EEPROM (QEMU's -nic macaddr).
            let low = regs.mac_read(MAC_ADDRL)?.to_le_bytes();
            let high = regs.mac_read(MAC_ADDRH)?.to_le_bytes();
            let mut mac = [low[0], low[1], low[2], low[3], high[0], high[1]];
            if mac == [0; 6] || mac == [0xff; 6] || mac[0] & 1 != 0 {
                // No usable address: a fixed locally administered one, written back.
                mac = [0x02, 0x00, 0x00, 0x91, 0x18, 0x01];
                regs.mac_write(
                    MAC_ADDRL,
                    u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
                )?;
                regs.mac_write(MAC_ADDRH, u32::from_le_bytes([mac[4], mac[5], 0, 0]))?;
            }

            regs.write(IRQ_CFG, IRQ_CFG_EN_HIGH_PUSH_PULL);
            regs.write(INT_STS, u32::MAX);
            regs.write(FIFO_INT, FIFO_INT_LEVELS);
            regs.write(RX_CFG, 0);
            regs.write(TX_CFG, TX_CFG_ON_STATUS_OVERRUN);
            regs.mac_write(MAC_CR, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX)?;
            let link_up = regs.phy_read(PHY_BSR)? & PHY_BSR_LINK != 0;
            regs.arm(INT_RSFL);
            let [rx, tx] = BUFFERS.try_take().ok_or(InitError::Taken)?;
            Ok(Self {
                regs,
                mac,
                link_up,
                tag: 0,
                rx,
                tx,
            })
        }

        /// The chip's ID_REV register (0x0118_0001 for QEMU's LAN9118).
        pub fn id_rev(&self) -> u32 {
            self.regs.read(ID_REV)
        }

        /// The controller's MAC address.
        pub fn mac(&self) -> [u8; 6] {
            self.mac
        }

        /// Interrupt handler: masks the sources that fired and wakes the stack's task.
        ///
        /// # Safety
        ///
        /// `base` is the address passed to [`Lan9118::new`]; call only from its interrupt.
        pub unsafe fn on_interrupt(base: usize) {
            let regs = Regs(base);
            let enabled = regs.read(INT_EN);
            let fired = regs.read(INT_STS) & enabled;
            regs.write(INT_EN, enabled & !fired);
            regs.write(INT_STS, fired);
            if fired & INT_RSFL != 0 {
                RX_WAKER.wake();
            }
            if fired & INT_TDFA != 0 {
                TX_WAKER.wake();
            }
        }

        /// Whether the TX FIFO has room for a full frame; if not, arms the wake-up.
        fn tx_ready(&self, cx: &mut Context<'_>) -> bool {
            let room = || {
                fifo::tx_free_bytes(self.regs.read(TX_FIFO_INF)) >= fifo::tx_fifo_bytes(MAX_FRAME)
            };
            if room() {
                return true;
            }
            TX_WAKER.register(cx.waker());
            self.regs.arm(INT_TDFA);
            room()
        }

        /// Pops the next good frame into `self.rx`; if none is waiting, arms the wake-up.
        fn next_frame(&mut self, cx: &mut Context<'_>) -> Option<usize> {
            let regs = self.regs;
            for _ in 0..RX_BATCH {
                if fifo::rx_frames_waiting(regs.read(RX_FIFO_INF)) == 0 {
                    RX_WAKER.register(cx.waker());
                    regs.arm(INT_RSFL);
                    if fifo::rx_frames_waiting(regs.read(RX_FIFO_INF)) == 0 {
                        return None;
                    }
                }
                let status = regs.read(RX_STATUS);
                // A refused frame has been popped whole; go on with the next one.
                if let Ok(len) = fifo::read_frame(status, &mut self.rx[..], || regs.read(RX_DATA)) {
                    return Some(len);
                }
            }
            // More frames may be waiting: come back after the stack had its turn.
            cx.waker().wake_by_ref();
            None
        }
    }

    /// A received frame, lent to the stack.
    pub struct RxToken<'a> {
        frame: &'a mut [u8],
    }

    impl embassy_net_driver::RxToken for RxToken<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
            f(self.frame)
        }
    }

    /// Room for one frame in the TX FIFO.
    pub struct TxToken<'a> {
        regs: Regs,
        tag: &'a mut u16,
        buf: &'a mut [u8; MAX_FRAME],
    }

    impl embassy_net_driver::TxToken for TxToken<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            // The stack never asks for more than the MTU (`capabilities`); clamp regardless.
            let frame = &mut self.buf[..len.min(MAX_FRAME)];
            let result = f(frame);
            *self.tag = self.tag.wrapping_add(1);
            let regs = self.regs;
            // `tx_ready` checked the room, and the length is within MAX_FRAME: only an
            // empty frame is refused, and sending nothing for it is right.
            let _ = fifo::write_frame(frame, *self.tag, |word| regs.write(TX_DATA, word));
            result
        }
    }

    impl embassy_net_driver::Driver for Lan9118 {
        type RxToken<'a> = RxToken<'a>;
        type TxToken<'a> = TxToken<'a>;

        fn receive(&mut self, cx: &mut Context<'_>) -> Option<(RxToken<'_>, TxToken<'_>)> {
            // The stack may answer a frame at once (ARP), so take one only with TX room.
            if !self.tx_ready(cx) {
                return None;
            }
            let len = self.next_frame(cx)?;
            Some((
                RxToken {
                    frame: &mut self.rx[..len],
                },
                TxToken {
                    regs: self.regs,
                    tag: &mut self.tag,
                    buf: self.tx,
                },
            ))
        }

        fn transmit(&mut self, cx: &mut Context<'_>) -> Option<TxToken<'_>> {
            if !self.tx_ready(cx) {
                return None;
            }
            Some(TxToken {
                regs: self.regs,
                tag: &mut self.tag,
                buf: self.tx,
            })
        }

        fn link_state(&mut self, _cx: &mut Context<'_>) -> LinkState {
            // Read once at start-up: QEMU's user-mode network link is always up.
            if self.link_up {
                LinkState::Up
            } else {
                LinkState::Down
            }
        }

        fn capabilities(&self) -> Capabilities {
            let mut caps = Capabilities::default();
            caps.max_transmission_unit = MAX_FRAME;
            caps
        }

        fn hardware_address(&self) -> HardwareAddress {
            HardwareAddress::Ethernet(self.mac)
        }
    }
}
