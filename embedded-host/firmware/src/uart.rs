//! The CMSDK APB UART of ARM's MPS2 boards as the firmware's log output: transmit only,
//! polled, and a `log::Log` implementation on top of it.
//!
//! Invariant: only thread mode (the executor's tasks and `main`) logs. No interrupt
//! handler calls `log`, so two lines never interleave and the logger needs no lock; the
//! panic handler is the one exception, and it only ever runs last.

use core::fmt::{self, Write};
use core::ptr;

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const CTRL_TX_ENABLE: u32 = 1 << 0;

/// A CMSDK APB UART at a fixed address.
#[derive(Clone, Copy)]
pub struct Uart {
    base: usize,
}

impl Uart {
    /// The UART whose registers start at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the address of a CMSDK APB UART's register block, and nothing else
    /// may drive that UART's transmitter.
    pub const unsafe fn new(base: usize) -> Self {
        Uart { base }
    }

    /// Enables the transmitter. `bauddiv` is the clock divider (the hardware needs at
    /// least 16; QEMU ignores the rate).
    pub fn enable(&self, bauddiv: u32) {
        self.write_reg(BAUDDIV, bauddiv.max(16));
        self.write_reg(CTRL, CTRL_TX_ENABLE);
    }

    /// Sends one byte, waiting while the transmit buffer is full.
    pub fn write_byte(&self, byte: u8) {
        while self.read_reg(STATE) & STATE_TX_FULL != 0 {}
        self.write_reg(DATA, u32::from(byte));
    }

    fn read_reg(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: `base + offset` is a register of this UART.
        unsafe { ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write_reg(&self, offset: usize, value: u32) {
        // SAFETY: as in `read_reg`.
        unsafe { ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
        Ok(())
    }
}

/// `log` lines on a UART: `[   12.345] INFO  message`, time from embassy-time.
pub struct UartLogger {
    uart: Uart,
    level: log::LevelFilter,
}

impl UartLogger {
    /// A logger writing records up to `level` to `uart`.
    pub const fn new(uart: Uart, level: log::LevelFilter) -> Self {
        UartLogger { uart, level }
    }

    /// Installs this logger for the `log` macros (the edge library's among them).
    pub fn install(&'static self) {
        // A second call keeps the first logger; nothing else sets one in this firmware.
        let _ = log::set_logger(self);
        log::set_max_level(self.level);
    }
}

impl log::Log for UartLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ms = embassy_time::Instant::now().as_millis();
        let mut uart = self.uart;
        let _ = writeln!(
            uart,
            "[{:>5}.{:03}] {:<5} {}",
            ms / 1000,
            ms % 1000,
            record.level(),
            record.args()
        );
    }

    fn flush(&self) {}
}
