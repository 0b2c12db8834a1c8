//! stomp-relay-edge: an embassy-net edge node.
//!
//! This crate will own the edge node that accepts a bounded number of local STOMP
//! sessions over embassy-net TCP and relays them to one upstream broker session, with
//! store-and-forward across upstream outages. No allocation anywhere.
#![no_std]
#![forbid(unsafe_code)]

pub use stomp_relay_codec as codec;
pub use stomp_relay_core as core;
