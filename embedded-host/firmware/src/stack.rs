//! How deep the stack has ever been, from the paint cortex-m-rt puts on it at reset
//! (its `paint-stack` feature fills everything between `_stack_end` and `_stack_start`
//! with `STACK_PAINT_VALUE`).
//!
//! Invariant: the stack grows down from `_stack_start` and never below `_stack_end`, the
//! end of `.bss`; what memory.x reserves between them is the whole stack.

use core::ptr::{self, addr_of};

extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

/// Bytes between the end of static memory and the top of RAM: the whole stack.
pub fn reserve() -> usize {
    top() - bottom()
}

/// Bytes of stack ever used since reset: the distance from the top to the deepest word
/// no longer holding the paint.
pub fn high_water() -> usize {
    let mut addr = bottom();
    while addr < top() {
        // SAFETY: `addr` is a word-aligned address inside the stack region (between the
        // two linker symbols), which is always mapped RAM; reading a word below the stack
        // pointer only sees stale data, never traps.
        let word = unsafe { ptr::read_volatile(addr as *const u32) };
        if word != cortex_m_rt::STACK_PAINT_VALUE {
            break;
        }
        addr += 4;
    }
    top() - addr
}

fn top() -> usize {
    // Only the symbol's address is taken; its "value" is never read.
    addr_of!(_stack_start) as usize
}

fn bottom() -> usize {
    addr_of!(_stack_end) as usize
}
