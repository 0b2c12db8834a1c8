//! SMSC LAN9118 / LAN9220 Ethernet controller as an `embassy-net-driver`: our own small
//! driver for the NIC on ARM's MPS2 boards (QEMU's `mps2-an386` emulates it).
//!
//! Receive is interrupt driven: the controller raises its IRQ line when the RX status
//! FIFO holds a frame (RSFL), [`on_interrupt`] acknowledges it and wakes the network
//! runner, which drains every waiting frame before it sleeps again. Transmit is polled:
//! the TX data FIFO takes a whole frame at once (4.5 KiB of FIFO, frames are at most
//! 1.5 KiB) and drains at wire speed, so waiting for room is a short spin, not a state.
//!
//! Invariants: the controller is only touched through 32-bit accesses to the registers
//! named below (QEMU aborts on any other offset); one frame at a time is copied between
//! a FIFO and the driver's own buffer, so a frame is never split between two tokens.

use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::Context;

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_sync::waitqueue::AtomicWaker;

// Register offsets (LAN9118 datasheet, section 5).
const RX_DATA_FIFO: usize = 0x00;
const TX_DATA_FIFO: usize = 0x20;
const RX_STATUS_FIFO: usize = 0x40;
const TX_STATUS_FIFO: usize = 0x48;
const ID_REV: usize = 0x50;
const IRQ_CFG: usize = 0x54;
const INT_STS: usize = 0x58;
const INT_EN: usize = 0x5c;
const BYTE_TEST: usize = 0x64;
const FIFO_INT: usize = 0x68;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_FIFO_INF: usize = 0x7c;
const TX_FIFO_INF: usize = 0x80;
const PMT_CTRL: usize = 0x84;
const FREE_RUN: usize = 0x9c;
const MAC_CSR_CMD: usize = 0xa4;
const MAC_CSR_DATA: usize = 0xa8;

// MAC control and status registers, reached through MAC_CSR_CMD/DATA.
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;
const MAC_MII_ACC: u32 = 6;
const MAC_MII_DATA: u32 = 7;

const BYTE_TEST_VALUE: u32 = 0x8765_4321;
const HW_CFG_SRST: u32 = 1 << 0;
const PMT_CTRL_READY: u32 = 1 << 0;
const IRQ_CFG_ENABLE_PUSH_PULL_HIGH: u32 = (1 << 8) | (1 << 4) | (1 << 0);
const INT_RSFL: u32 = 1 << 3;
const TX_CFG_TX_ON: u32 = 1 << 1;
/// Lets the TX status FIFO overrun instead of stalling transmit when nobody reads it.
const TX_CFG_TXSAO: u32 = 1 << 2;
const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_FDPX: u32 = 1 << 20;
const MAC_CSR_BUSY: u32 = 1 << 31;
const MAC_CSR_READ: u32 = 1 << 30;
const MII_BUSY: u32 = 1 << 0;
const PHY_ADDRESS: u32 = 1;
const PHY_BASIC_STATUS: u32 = 1;
const PHY_LINK_UP: u32 = 1 << 2;
const RX_STATUS_ERROR: u32 = 1 << 15;
const TX_CMD_A_FIRST: u32 = 1 << 13;
const TX_CMD_A_LAST: u32 = 1 << 12;

/// Largest Ethernet frame without FCS (1500 B of IP + 14 B header).
pub const MTU: usize = 1514;
/// A received frame plus its 4-byte FCS, rounded up to whole FIFO words.
const FRAME_BUFFER: usize = (MTU + 4 + 3) & !3;
/// Bounded waits for the controller to finish a reset or a register command.
const SPIN_LIMIT: u32 = 1_000_000;

static RX_WAKER: AtomicWaker = AtomicWaker::new();
static RX_FRAMES: AtomicU32 = AtomicU32::new(0);
static RX_DROPPED: AtomicU32 = AtomicU32::new(0);
static TX_FRAMES: AtomicU32 = AtomicU32::new(0);

/// Why the controller could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// BYTE_TEST did not read back 0x87654321: no LAN9118 at that address, or the bus is
    /// in the wrong endianness.
    NotFound(u32),
    /// The controller did not finish its soft reset.
    ResetTimeout,
    /// A MAC CSR or PHY command never completed.
    CommandTimeout,
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InitError::NotFound(v) => write!(f, "no LAN9118: BYTE_TEST read {:#010x}", v),
            InitError::ResetTimeout => f.write_str("LAN9118 soft reset did not complete"),
            InitError::CommandTimeout => f.write_str("LAN9118 MAC/PHY command timed out"),
        }
    }
}

/// Frame counters since boot, for the firmware's stats line (readable from any task
/// while the network runner owns the driver).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Frames handed to the network stack.
    pub rx: u32,
    /// Frames dropped on receive (controller error or larger than the MTU).
    pub rx_dropped: u32,
    /// Frames written to the TX FIFO.
    pub tx: u32,
}

#[derive(Clone, Copy)]
struct Regs {
    base: usize,
}

impl Regs {
    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `Lan9118::new`'s contract: `base` is the controller's register block and
        // every offset used is one of its registers.
        unsafe { ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    fn wait_clear(&self, offset: usize, mask: u32) -> Result<(), InitError> {
        for _ in 0..SPIN_LIMIT {
            if self.read(offset) & mask == 0 {
                return Ok(());
            }
        }
        Err(InitError::CommandTimeout)
    }

    fn mac_read(&self, index: u32) -> Result<u32, InitError> {
        self.wait_clear(MAC_CSR_CMD, MAC_CSR_BUSY)?;
        self.write(MAC_CSR_CMD, MAC_CSR_BUSY | MAC_CSR_READ | index);
        self.wait_clear(MAC_CSR_CMD, MAC_CSR_BUSY)?;
        Ok(self.read(MAC_CSR_DATA))
    }

    fn mac_write(&self, index: u32, value: u32) -> Result<(), InitError> {
        self.wait_clear(MAC_CSR_CMD, MAC_CSR_BUSY)?;
        self.write(MAC_CSR_DATA, value);
        self.write(MAC_CSR_CMD, MAC_CSR_BUSY | index);
        self.wait_clear(MAC_CSR_CMD, MAC_CSR_BUSY)
    }

    fn phy_read(&self, reg: u32) -> Result<u32, InitError> {
        let busy = |r: &Self| Ok::<_, InitError>(r.mac_read(MAC_MII_ACC)? & MII_BUSY != 0);
        self.mac_write(MAC_MII_ACC, (PHY_ADDRESS << 11) | (reg << 6) | MII_BUSY)?;
        for _ in 0..SPIN_LIMIT {
            if !busy(self)? {
                return Ok(self.mac_read(MAC_MII_DATA)? & 0xffff);
            }
        }
        Err(InitError::CommandTimeout)
    }
}

/// The driver's frame buffers, one frame each way; a `static` of the board's, so they
/// are never built on (or copied across) the stack.
pub struct Buffers {
    rx: [u8; FRAME_BUFFER],
    tx: [u8; FRAME_BUFFER],
}

impl Buffers {
    /// Zeroed buffers (const, for a `static`).
    pub const fn new() -> Self {
        Buffers {
            rx: [0; FRAME_BUFFER],
            tx: [0; FRAME_BUFFER],
        }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
    }
}

/// The controller, brought up and owned by the network stack.
pub struct Lan9118<'d> {
    regs: Regs,
    mac: [u8; 6],
    buffers: &'d mut Buffers,
    tag: u16,
}

/// Frame counters since boot.
pub fn counters() -> Counters {
    Counters {
        rx: RX_FRAMES.load(Ordering::Relaxed),
        rx_dropped: RX_DROPPED.load(Ordering::Relaxed),
        tx: TX_FRAMES.load(Ordering::Relaxed),
    }
}

impl<'d> Lan9118<'d> {
    /// Resets the controller at `base`, reads the MAC address it loaded from its EEPROM,
    /// and enables transmit, receive and the receive interrupt (active high, push-pull).
    /// The board must route the IRQ line to [`on_interrupt`].
    ///
    /// # Safety
    ///
    /// `base` must be the address of a LAN9118/LAN9220 register block mapped for 32-bit
    /// access, owned by nothing else.
    pub unsafe fn new(base: usize, buffers: &'d mut Buffers) -> Result<Self, InitError> {
        let regs = Regs { base };
        let test = regs.read(BYTE_TEST);
        if test != BYTE_TEST_VALUE {
            return Err(InitError::NotFound(test));
        }
        regs.write(HW_CFG, HW_CFG_SRST);
        regs.wait_clear(HW_CFG, HW_CFG_SRST)
            .map_err(|_| InitError::ResetTimeout)?;
        let ready = (0..SPIN_LIMIT).any(|_| regs.read(PMT_CTRL) & PMT_CTRL_READY != 0);
        if !ready {
            return Err(InitError::ResetTimeout);
        }
        let low = regs.mac_read(MAC_ADDRL)?.to_le_bytes();
        let high = regs.mac_read(MAC_ADDRH)?.to_le_bytes();
        let mac = [low[0], low[1], low[2], low[3], high[0], high[1]];

        regs.write(TX_CFG, TX_CFG_TX_ON | TX_CFG_TXSAO);
        // Exact MAC filter plus broadcast (ARP); promiscuous mode, the reset default,
        // would hand the stack every frame on the segment.
        regs.mac_write(MAC_CR, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX)?;
        // RSFL as soon as one status word is waiting.
        regs.write(FIFO_INT, regs.read(FIFO_INT) & !0xff);
        regs.write(INT_STS, u32::MAX);
        regs.write(INT_EN, INT_RSFL);
        regs.write(IRQ_CFG, IRQ_CFG_ENABLE_PUSH_PULL_HIGH);
        Ok(Lan9118 {
            regs,
            mac,
            buffers,
            tag: 0,
        })
    }

    /// The chip's ID and revision register (0x0118xxxx for a LAN9118).
    pub fn id(&self) -> u32 {
        self.regs.read(ID_REV)
    }

    /// The free-running 25 MHz counter: differs from boot to boot with the time the
    /// boot took, the only entropy this board has before the network is up.
    pub fn free_run(&self) -> u32 {
        self.regs.read(FREE_RUN)
    }

    /// The station address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn frames_waiting(&self) -> bool {
        (self.regs.read(RX_FIFO_INF) >> 16) & 0xff != 0
    }

    fn tx_room(&self) -> bool {
        // Command words A and B, then the frame rounded up to whole words.
        (self.regs.read(TX_FIFO_INF) & 0xffff) as usize >= FRAME_BUFFER + 8
    }

    /// Pops one frame into `self.rx`; its length without FCS, or `None` if it was dropped.
    fn pop_frame(&mut self) -> Option<usize> {
        let status = self.regs.read(RX_STATUS_FIFO);
        let len = ((status >> 16) & 0x3fff) as usize;
        let words = len.div_ceil(4);
        let keep = status & RX_STATUS_ERROR == 0 && (14 + 4..=MTU + 4).contains(&len);
        for i in 0..words {
            let word = self.regs.read(RX_DATA_FIFO);
            if keep {
                self.buffers.rx[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
            }
        }
        if keep {
            RX_FRAMES.fetch_add(1, Ordering::Relaxed);
            Some(len - 4)
        } else {
            RX_DROPPED.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    fn drain_tx_status(&self) {
        while (self.regs.read(TX_FIFO_INF) >> 16) & 0xff != 0 {
            let _ = self.regs.read(TX_STATUS_FIFO);
        }
    }
}

/// The board's handler for the controller's IRQ line: acknowledges the receive
/// interrupt and wakes the network runner.
///
/// # Safety
///
/// `base` must be the same register block a [`Lan9118`] was created on.
pub unsafe fn on_interrupt(base: usize) {
    Regs { base }.write(INT_STS, INT_RSFL);
    RX_WAKER.wake();
}

/// A received frame, already copied out of the RX FIFO.
pub struct RxToken<'a> {
    frame: &'a mut [u8],
}

/// Room for one frame in the TX FIFO.
pub struct TxToken<'a> {
    regs: Regs,
    buf: &'a mut [u8; FRAME_BUFFER],
    tag: &'a mut u16,
}

impl embassy_net_driver::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        f(self.frame)
    }
}

impl embassy_net_driver::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let len = len.min(MTU);
        let result = f(&mut self.buf[..len]);
        *self.tag = self.tag.wrapping_add(1);
        let len32 = len as u32;
        self.regs
            .write(TX_DATA_FIFO, TX_CMD_A_FIRST | TX_CMD_A_LAST | len32);
        self.regs
            .write(TX_DATA_FIFO, (u32::from(*self.tag) << 16) | len32);
        for chunk in self.buf[..len.div_ceil(4) * 4].chunks_exact(4) {
            let word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            self.regs.write(TX_DATA_FIFO, word);
        }
        TX_FRAMES.fetch_add(1, Ordering::Relaxed);
        result
    }
}

impl embassy_net_driver::Driver for Lan9118<'_> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, cx: &mut Context<'_>) -> Option<(RxToken<'_>, TxToken<'_>)> {
        // Room to answer first: a popped frame cannot go back into the FIFO.
        if !self.tx_room() {
            self.drain_tx_status();
            cx.waker().wake_by_ref();
            return None;
        }
        loop {
            if !self.frames_waiting() {
                RX_WAKER.register(cx.waker());
                // A frame that arrived before the registration raised an interrupt nobody
                // was waiting for: look once more.
                if !self.frames_waiting() {
                    return None;
                }
            }
            if let Some(len) = self.pop_frame() {
                let Lan9118 {
                    regs, buffers, tag, ..
                } = self;
                let Buffers { rx, tx } = &mut **buffers;
                return Some((
                    RxToken {
                        frame: &mut rx[..len],
                    },
                    TxToken {
                        regs: *regs,
                        buf: tx,
                        tag,
                    },
                ));
            }
        }
    }

    fn transmit(&mut self, cx: &mut Context<'_>) -> Option<TxToken<'_>> {
        self.drain_tx_status();
        if !self.tx_room() {
            cx.waker().wake_by_ref();
            return None;
        }
        Some(TxToken {
            regs: self.regs,
            buf: &mut self.buffers.tx,
            tag: &mut self.tag,
        })
    }

    fn link_state(&mut self, cx: &mut Context<'_>) -> LinkState {
        // The PHY's link bit; a failed read counts as no link rather than a guess.
        match self.regs.phy_read(PHY_BASIC_STATUS) {
            Ok(status) if status & PHY_LINK_UP != 0 => LinkState::Up,
            _ => {
                // No PHY interrupt is wired: ask to be polled again until the link is up.
                cx.waker().wake_by_ref();
                LinkState::Down
            }
        }
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(1);
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}
