//! The sans-IO brain shared by the tokio server and the embassy edge node.
//!
//! Bytes and time go in; frames to send and deadlines come out. No sockets, no
//! clocks, no allocation, no panics on input (the quinn-proto / smoltcp shape):
//!
//! - [`time`]: [`Instant`], milliseconds supplied by the host.
//! - [`session`]: the client-facing STOMP session (handshake, version negotiation,
//!   heart-beats, receipts, ERROR-then-close, subscription table).
//! - [`router`]: application / broker / user prefixes, routes with captured variables.
//! - [`pattern`]: `*`, `**` and `{name}` destination patterns.
//! - [`dialect`]: client destinations to ActiveMQ / RabbitMQ / Artemis forms and back.
//! - [`broker`]: the in-memory simple broker (fan-out, queues, message ids).
//! - [`upstream`]: one broker connection (CONNECT, heart-beats, reconnect, failover).
//! - [`relay`]: relaying client frames through it (per-session, system, shared modes).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub use stomp_relay_codec as codec;

pub mod broker;
mod cursor;
pub mod dialect;
pub mod pattern;
pub mod relay;
pub mod router;
pub mod session;
pub mod time;
pub mod upstream;

pub use broker::SimpleBroker;
pub use cursor::BufferTooSmall;
pub use dialect::Dialect;
pub use router::Router;
pub use session::{Session, SessionConfig, SessionId};
pub use time::Instant;
