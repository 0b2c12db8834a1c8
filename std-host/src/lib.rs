//! The `stomp-relay` server on tokio.
//!
//! This crate owns the hosts that move bytes and time between sockets and the
//! relay-core state machines: STOMP over WebSocket and TCP listeners, the embedded
//! simple broker (the default) and relay mode to ActiveMQ/RabbitMQ, configuration,
//! metrics and graceful shutdown.
#![forbid(unsafe_code)]

pub use stomp_relay_codec as codec;
pub use stomp_relay_core as core;

pub mod abuse;
pub mod app;
pub mod auth;
pub mod batch;
pub mod broker;
pub mod close;
pub mod config;
mod endpoint;
pub mod frame;
mod listen;
pub mod metrics;
pub mod outbound;
pub mod proxy;
pub mod relay;
pub mod secret;
pub mod server;
mod session;
pub mod simple;
mod sockjs;
mod state;
mod stats_log;
pub mod tls;
mod transaction;
pub mod transport;
pub mod users;
pub mod web;

pub use app::{AppMessage, Payload, PublishError, Publisher, Reply};
pub use broker::{Broker, BrokerError, BrokerSession, BrokerStats, SessionInfo};
pub use config::Config;
pub use frame::OwnedFrame;
pub use outbound::{ClientHandle, Delivery, SendError, SessionId, ToClient};
pub use server::{Server, ServerBuilder, ShutdownHandle};
pub use simple::SimpleBrokerBackend;
