//! The sans-IO brain shared by the tokio server and the embassy edge node.
//!
//! Bytes and time go in; frames to send and deadlines come out. No sockets, no
//! clocks, no allocation, no panics on input (the quinn-proto / smoltcp shape):
//!
//! - [`time`]: [`Instant`], milliseconds supplied by the host.
//! - [`session`]: the client-facing STOMP session (handshake, version negotiation,
//!   heart-beats, receipts, ERROR-then-close, subscription table).
//! - [`router`]: application / broker / user prefixes, routes with captured variables.
//! - [`dispatch`]: where a frame the session accepted goes ([`Route`]: broker,
//!   application, a user's sessions, or an ERROR).
//! - [`pattern`]: `*`, `**` and `{name}` destination patterns.
//! - [`dialect`]: client destinations to ActiveMQ / RabbitMQ / Artemis forms and back.
//! - [`broker`]: the in-memory simple broker (fan-out, queues, message ids).
//! - [`upstream`]: one broker connection (CONNECT, heart-beats, reconnect, failover).
//! - [`relay`]: client frames rewritten for the broker and MESSAGEs back.
//! - [`fanout`]: the shared relay's reference-counted upstream subscriptions.
//!
//! A host loop in miniature (one client, simple broker):
//!
//! ```
//! use stomp_relay_core::broker::{FixedStore, SimpleBroker};
//! use stomp_relay_core::codec::{Command, Decoded, Decoder, Header, Status};
//! use stomp_relay_core::router::{AppRoute, Router, RouterConfig};
//! use stomp_relay_core::session::{Event, Session, SessionConfig, SessionId, MAX_CONTROL_FRAME};
//! use stomp_relay_core::{Instant, Route};
//!
//! let router = Router::new(RouterConfig::default());
//! let mut broker: SimpleBroker<FixedStore<16>> = SimpleBroker::new(FixedStore::new());
//! let mut session: Session<8> = Session::new(SessionId::new(1), SessionConfig::default(), Instant::ZERO);
//! let received = b"CONNECT\naccept-version:1.2\n\n\0\
//!     SUBSCRIBE\nid:0\ndestination:/sub/chat\n\n\0\
//!     SEND\ndestination:/pub/chat\nreceipt:r1\n\nhi\0";
//! let (mut rest, now) = (&received[..], Instant::from_millis(5));
//! let mut sent = Vec::new();
//! let mut deliveries = 0;
//! while let Ok(Status::Complete((item, used))) =
//!     Decoder::new(session.version()).decode(rest, &mut [Header::EMPTY; 32])
//! {
//!     if let Decoded::Frame(frame) = item {
//!         match session.handle_frame(now, &frame) {
//!             Ok(Some(Event::Subscribe { id, destination, .. })) => {
//!                 broker.subscribe(SessionId::new(1), id, destination).unwrap();
//!             }
//!             Ok(Some(Event::Send { destination })) => {
//!                 let (mut resolved, mut to) = ([0u8; 128], [0u8; 128]);
//!                 let route = router.dispatch(Command::Send, Some(destination), SessionId::new(1), &mut resolved);
//!                 if let Route::App(d) = route {
//!                     if let Ok(AppRoute::Forward(target)) = router.route_app(d, &mut to) {
//!                         // `/pub/chat` goes to `/sub/chat`: build MESSAGE frames with
//!                         // broker::message_frame for each delivery.
//!                         deliveries += broker.publish(target, |_delivery| {});
//!                     }
//!                 }
//!             }
//!             _ => {}
//!         }
//!     }
//!     rest = &rest[used..];
//!     let mut out = [0u8; MAX_CONTROL_FRAME];
//!     while let Some(n) = session.poll_transmit(now, &mut out).unwrap() {
//!         sent.extend_from_slice(&out[..n]); // write to the socket
//!     }
//! }
//! assert_eq!(deliveries, 1);
//! assert!(sent.starts_with(b"CONNECTED\nversion:1.2\n"));
//! assert!(sent.ends_with(b"RECEIPT\nreceipt-id:r1\n\n\0"));
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub use stomp_relay_codec as codec;

pub mod broker;
mod cursor;
pub mod dialect;
pub mod dispatch;
pub mod fanout;
pub mod pattern;
pub mod relay;
pub mod router;
pub mod session;
pub mod time;
pub mod upstream;

pub use broker::SimpleBroker;
pub use cursor::BufferTooSmall;
pub use dialect::Dialect;
pub use dispatch::Route;
pub use router::Router;
pub use session::{Session, SessionConfig, SessionId};
pub use time::Instant;
