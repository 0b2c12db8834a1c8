//! The broker abstraction the session tasks talk to: the embedded simple broker or a
//! relay to an external broker, behind one pair of traits.
//!
//! A [`Broker`] is shared by the whole server. When a client's CONNECT is accepted the
//! session task calls [`Broker::open_session`] and gets a per-session [`BrokerSession`]
//! (so relay per-session mode can own one upstream connection per client, and shared
//! mode a lightweight handle onto one shared connection). Every client frame whose
//! destination is a broker destination (and every UNSUBSCRIBE/ACK/NACK/BEGIN/COMMIT/ABORT)
//! goes to [`BrokerSession::forward`]; what the broker sends back to the client arrives
//! through the session's [`ClientHandle`], never blocking the producer.
//!
//! Destinations are client-facing here (`/sub/chat`); mapping to a broker's own form
//! (`/topic/chat`) is the backend's business. Backends never read sockets of the client:
//! the session task owns the client connection, its decoding, heart-beats and limits.

use std::future::Future;
use std::pin::Pin;

use crate::frame::OwnedFrame;
use crate::outbound::{ClientHandle, SessionId};

/// A boxed, sendable future (what the object-safe async methods return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a broker refused a session or a frame. The `Display` text is what the client sees
/// in the ERROR frame's `message` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerError {
    /// The broker (or the relay's system session) is down: `Broker not available.`
    Unavailable,
    /// The upstream connection of this session ended: `Connection to broker closed.`
    ConnectionClosed,
    /// The frame cannot be handled (e.g. a SUBSCRIBE without `destination`); the text says why.
    Rejected(String),
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerError::Unavailable => f.write_str("Broker not available."),
            BrokerError::ConnectionClosed => f.write_str("Connection to broker closed."),
            BrokerError::Rejected(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for BrokerError {}

/// What a backend learns about a client session when it opens.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Server-unique session id.
    pub id: SessionId,
    /// The authenticated user, if any (user destinations resolve to this name).
    pub user: Option<String>,
    /// How the client is connected: `ws`, `tcp`, or `sockjs-<transport>`.
    pub transport: &'static str,
    /// The client's CONNECT/STOMP frame as received (a relay rewrites login/passcode/host
    /// before sending it upstream; the client's credentials never reach the broker).
    pub connect: OwnedFrame,
}

/// Figures a backend reports for `/metrics` and `/readyz`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Whether the broker is usable (always true for the simple broker).
    pub available: bool,
    /// Upstream connections currently open (0 for the simple broker).
    pub relay_sessions: usize,
    /// Subscriptions currently held by the broker.
    pub subscriptions: usize,
}

/// One upstream broker address as the dashboard shows it (relay mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamStatus {
    /// The address, e.g. `stomp://127.0.0.1:61613`.
    pub url: String,
    /// Whether this instance's system/shared connection is connected to it now.
    pub connected: bool,
    /// Why the last attempt to reach it failed, if it did.
    pub last_error: Option<String>,
}

/// A broker backend shared by every session of the server.
pub trait Broker: Send + Sync + 'static {
    /// Opens the broker side of a client session whose CONNECT was accepted. `client`
    /// receives what the broker sends to this session (MESSAGEs, RECEIPTs for forwarded
    /// frames, `ToClient::Close` when the upstream connection is lost). An error is sent
    /// to the client as an ERROR frame and the session is closed.
    ///
    /// The future may wait (a relay may wait for the broker's CONNECTED); the session
    /// task bounds the wait.
    fn open_session(
        &self,
        info: SessionInfo,
        client: ClientHandle,
    ) -> BoxFuture<'static, Result<Box<dyn BrokerSession>, BrokerError>>;

    /// Publishes an application message (a SEND frame with a client-facing `destination`)
    /// on behalf of no client session: Spring's system session.
    fn publish(&self, frame: OwnedFrame) -> Result<(), BrokerError>;

    /// Current availability and counts.
    fn stats(&self) -> BrokerStats;

    /// Whether `receipt` headers of forwarded frames travel to the broker, whose RECEIPT
    /// the backend passes back through the [`ClientHandle`]. When `false` (the default)
    /// the session answers every receipt itself once the frame was forwarded.
    fn forwards_receipts(&self) -> bool {
        false
    }

    /// The dialect an external broker is spoken to in (configured or detected);
    /// `None` for the simple broker.
    fn dialect(&self) -> Option<stomp_relay_core::Dialect> {
        None
    }

    /// Graceful shutdown: DISCONNECT upstream (with receipt) and close connections. The
    /// caller bounds the time it waits.
    fn shutdown(&self) -> BoxFuture<'_, ()>;

    /// Per-address upstream state for the dashboard; empty when the backend does not
    /// track it (the simple broker has no upstream).
    fn upstreams(&self) -> Vec<UpstreamStatus> {
        Vec::new()
    }
}

/// The broker side of one client session.
pub trait BrokerSession: Send {
    /// A client frame for the broker: SEND or SUBSCRIBE with a broker destination,
    /// UNSUBSCRIBE, ACK, NACK, BEGIN, COMMIT or ABORT. Headers are plain (unescaped);
    /// `content-length` and custom headers are as the client sent them.
    fn forward(&mut self, frame: OwnedFrame) -> Result<(), BrokerError>;

    /// The client showed life without sending the broker anything (a heart-beat or a
    /// frame handled locally). A relay may send a heart-beat upstream in lieu.
    fn client_activity(&mut self) {}

    /// The client session ended: a DISCONNECT (with its `receipt`, if any) or the
    /// transport closing (`None`). A relay sends DISCONNECT upstream and closes.
    fn close(self: Box<Self>, receipt: Option<String>);

    /// The broker address this session's own upstream connection uses (per-session
    /// relay mode), for the dashboard; `None` when it has none of its own.
    fn upstream(&self) -> Option<String> {
        None
    }
}
