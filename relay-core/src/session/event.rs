//! What crosses the session boundary besides bytes: the host's [`SessionConfig`] in,
//! and [`Event`]s (accepted client frames, plain values borrowed) out.

use core::time::Duration;

use crate::codec::Version;

use super::{AckMode, Versions};

/// Session settings chosen by the host (per server, with the per-connection
/// [`SessionConfig::subprotocol`] filled in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// The server's heart-beat `(sx, sy)` in milliseconds: how often it can send, and
    /// how often it wants to hear from the client. `0` disables a direction.
    pub heart_beat: (u32, u32),
    /// The read side may stay silent for this many times the negotiated interval
    /// before the session closes (Spring uses 3).
    pub read_timeout_factor: u32,
    /// Versions the server speaks.
    pub versions: Versions,
    /// The version of the WebSocket subprotocol (`v12.stomp`) agreed for this
    /// connection, if any; it caps the negotiated version.
    pub subprotocol: Option<Version>,
    /// `server` header of CONNECTED, e.g. `stomp-relay/0.1.0`.
    pub server: Option<&'static str>,
    /// Time allowed from the start of the session until its CONNECT (`None`: forever).
    pub connect_timeout: Option<Duration>,
    /// Whether the session answers `receipt` headers itself. Off when a relay forwards
    /// frames with their `receipt` upstream and passes the broker's RECEIPT back; the
    /// host then calls [`Session::queue_receipt`](super::Session::queue_receipt) for frames it handles locally.
    pub local_receipts: bool,
    /// Whether CONNECTED waits for [`Session::accept`](super::Session::accept) (for authentication or an
    /// upstream broker's CONNECTED); otherwise it is queued as soon as CONNECT arrives.
    pub defer_connected: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            heart_beat: (10_000, 10_000),
            read_timeout_factor: 3,
            versions: Versions::ALL,
            subprotocol: None,
            server: None,
            connect_timeout: Some(Duration::from_secs(60)),
            local_receipts: true,
            defer_connected: false,
        }
    }
}

/// What the client asked for in its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    /// The negotiated version.
    pub version: Version,
    /// `login`, if sent.
    pub login: Option<&'a [u8]>,
    /// `passcode`, if sent.
    pub passcode: Option<&'a [u8]>,
    /// `host` (virtual host), if sent.
    pub host: Option<&'a [u8]>,
    /// The client's heart-beat `(cx, cy)`.
    pub heart_beat: (u32, u32),
}

/// A client frame the session accepted, for the host to act on. Byte slices are plain
/// (unescaped) and borrow the frame or the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// CONNECT/STOMP accepted; CONNECTED is queued (or awaits [`Session::accept`](super::Session::accept)).
    Connect(Connect<'a>),
    /// SEND: route `destination`; the frame's other headers and body ride along.
    Send {
        /// Where to.
        destination: &'a [u8],
    },
    /// SUBSCRIBE, already in the session's table.
    Subscribe {
        /// Subscription id (unique in this session).
        id: &'a [u8],
        /// Destination or pattern.
        destination: &'a [u8],
        /// Acknowledgement mode.
        ack: AckMode,
    },
    /// UNSUBSCRIBE, already removed from the session's table.
    Unsubscribe {
        /// The removed subscription's id.
        id: &'a [u8],
    },
    /// ACK of a message.
    Ack {
        /// `id` (1.2) or `message-id` (1.0/1.1).
        id: &'a [u8],
    },
    /// NACK of a message.
    Nack {
        /// `id` (1.2) or `message-id` (1.1).
        id: &'a [u8],
    },
    /// BEGIN a transaction.
    Begin {
        /// Transaction id.
        transaction: &'a [u8],
    },
    /// COMMIT a transaction.
    Commit {
        /// Transaction id.
        transaction: &'a [u8],
    },
    /// ABORT a transaction.
    Abort {
        /// Transaction id.
        transaction: &'a [u8],
    },
    /// DISCONNECT: the receipt (if any) is queued and the session closes after it.
    Disconnect,
}
