//! The `stomp-relay` server on tokio.
//!
//! This crate owns the hosts that move bytes and time between sockets and the
//! relay-core state machines: STOMP over WebSocket and TCP listeners, the embedded
//! simple broker (the default) and relay mode to ActiveMQ/RabbitMQ, configuration,
//! metrics and graceful shutdown.
#![forbid(unsafe_code)]

pub use stomp_relay_codec as codec;
pub use stomp_relay_core as core;

pub mod config;

pub use config::Config;
