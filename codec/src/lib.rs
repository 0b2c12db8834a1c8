//! Zero-allocation STOMP 1.0/1.1/1.2 frame codec.
//!
//! Decoding borrows from the caller's buffer and stores headers in caller-provided
//! storage (the httparse shape); encoding writes into a caller buffer or an
//! `embedded_io` writer. Nothing here allocates, reads a clock or panics on input.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

mod command;
mod frame;
mod version;

pub use command::Command;
pub use frame::{Frame, Header, HeaderForm};
pub use version::Version;
