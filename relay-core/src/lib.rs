//! The sans-IO brain shared by the tokio server and the embassy edge node.
//!
//! This crate will own the client session state machine (negotiation, heart-beats,
//! receipts, errors), the destination router (application / broker / user prefixes and
//! broker dialect mapping), the in-memory simple broker and the upstream relay state
//! machines. Bytes and time go in; frames to send and deadlines come out. No sockets,
//! no clocks, no allocation.
#![no_std]
#![forbid(unsafe_code)]

pub use stomp_relay_codec as codec;
