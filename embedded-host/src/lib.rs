//! stomp-relay-edge: an embassy-net edge node.
//!
//! Local devices speak STOMP over TCP to the edge node; it relays them over one shared
//! upstream session to a broker, with store-and-forward across upstream outages. No
//! allocation anywhere: every buffer is a const-generic array the application places in
//! static memory.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

#[macro_use]
mod fmt;

pub mod config;
mod edge;
mod local;
pub mod ring;
mod upstream;

pub use config::Config;
pub use edge::{
    DeviceSession, Edge, EdgeResources, RejectResources, SessionResources, Stats, Summary,
    UpstreamResources, MAX_HEADERS, ROUTES, SUBS_PER_SESSION,
};
pub use local::TOO_MANY_SESSIONS;
pub use stomp_relay_codec as codec;
pub use stomp_relay_core::dialect::Dialect;
