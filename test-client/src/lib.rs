//! The STOMP client every test in the workspace talks through: it writes exactly the
//! bytes a test means (bad headers and huge bodies included, nothing escaped or
//! checked) and records everything the server does, each frame, heart-beat and the
//! close (with its WebSocket close code), in arrival order.
//!
//! One [`Client`] holds the protocol side (frame building, decoding, the expect-style
//! helpers); a [`Transport`] only moves bytes and knows its own clock. The transports
//! are behind features so each crate's tests pull in only their own runtime:
//!
//! - `tokio` ([`tokio`]): WebSocket (tokio-tungstenite) or raw TCP over any tokio
//!   stream, TLS included; std-host's tests.
//! - `embassy` ([`embassy`]): a device on an embassy-net stack; embedded-host's tests.
//!
//! Always there: [`blocking`], a kernel socket whose reads block, for a test whose
//! server runs on another thread.
//!
//! Dev-only (`publish = false`): a malformed frame from the server is a test failure,
//! so decoding panics instead of returning errors.

pub mod blocking;
mod client;
mod frame;

#[cfg(feature = "embassy")]
pub mod embassy;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use client::{Client, Recv, Transport, WAIT};
pub use frame::{frame_bytes, Event, Frame, FrameReader};
pub use stomp_relay_codec::Command;
