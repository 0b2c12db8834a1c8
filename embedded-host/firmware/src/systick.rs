//! embassy-time driver on the Cortex-M SysTick: a periodic 1 kHz tick.
//!
//! Owns the global time base (`now()` in 1 ms ticks, matching embassy-time's
//! `tick-hz-1_000`) and the timer queue. Every tick the interrupt advances the count and,
//! once the earliest deadline is reached, lets the queue wake what expired. A tickless
//! driver on a 32-bit compare timer would let a battery part sleep longer; for a mains
//! powered gateway the 1 kHz interrupt costs well under 1% of the core and keeps this
//! module to one counter and one compare.
//!
//! Invariants: the tick count only grows (it is 64 bits wide, so it never wraps), and it
//! and the queue are only touched inside a critical section, from the SysTick handler
//! or from thread mode.

use core::cell::{Cell, RefCell};
use core::task::Waker;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
use critical_section::Mutex;
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

/// Ticks per second; embassy-time is built with the matching `tick-hz-1_000`.
pub const TICK_HZ: u32 = 1_000;

struct SysTickDriver {
    ticks: Mutex<Cell<u64>>,
    /// The earliest deadline in the queue (`u64::MAX`: none).
    alarm: Mutex<Cell<u64>>,
    queue: Mutex<RefCell<Queue>>,
}

impl SysTickDriver {
    fn on_tick(&self) {
        critical_section::with(|cs| {
            let now = self.ticks.borrow(cs).get() + 1;
            self.ticks.borrow(cs).set(now);
            let alarm = self.alarm.borrow(cs);
            if now >= alarm.get() {
                alarm.set(self.queue.borrow_ref_mut(cs).next_expiration(now));
            }
        });
    }
}

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.ticks.borrow(cs).get())
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            let mut queue = self.queue.borrow_ref_mut(cs);
            if queue.schedule_wake(at, waker) {
                let now = self.ticks.borrow(cs).get();
                self.alarm.borrow(cs).set(queue.next_expiration(now));
            }
        });
    }
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    ticks: Mutex::new(Cell::new(0)),
    alarm: Mutex::new(Cell::new(u64::MAX)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

/// Starts the tick: SysTick on the core clock (`core_hz`), interrupting `TICK_HZ` times
/// a second.
pub fn start(mut syst: SYST, core_hz: u32) {
    syst.set_clock_source(SystClkSource::Core);
    // SysTick's reload register is 24 bits: fine up to 16.7 GHz at 1 kHz.
    syst.set_reload(core_hz / TICK_HZ - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    DRIVER.on_tick();
}
