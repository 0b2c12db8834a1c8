//! stomp-relay-edge as Cortex-M firmware.
//!
//! [`node`] is the edge node every board runs (sizes, static memory, tasks); the other
//! modules are the small pieces of board support this crate owns because no maintained
//! crate covers them: the LAN9118 Ethernet controller and CMSDK UART of ARM's MPS2
//! boards (QEMU's `mps2-an386`) and an embassy-time driver on SysTick. Boards with a
//! HAL (the STM32F4 build) use the HAL's drivers instead.
#![no_std]

pub mod lan9118;
pub mod node;
pub mod stack;
#[cfg(feature = "mps2")]
pub mod systick;
pub mod uart;
