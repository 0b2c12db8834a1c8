//! The session's error and close vocabulary: [`ProtocolError`] (a client's
//! violation; its `Display` is the ERROR `message`), [`CloseReason`] (why a session
//! ended; a metrics label) and [`TransmitError`] (the caller's buffer is too small).

use crate::codec::{Command, EncodeError};

use super::Versions;

/// A protocol violation by the client. `Display` is the ERROR frame's `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProtocolError {
    /// The first frame was not CONNECT or STOMP.
    NotConnected(Command),
    /// CONNECT or STOMP on a connected session.
    AlreadyConnected,
    /// No version in common; carries the server's versions.
    UnsupportedVersion(Versions),
    /// A server-only frame (CONNECTED, MESSAGE, RECEIPT, ERROR) from the client.
    ServerCommand(Command),
    /// A required header is missing.
    MissingHeader(Command, &'static str),
    /// A header value is malformed.
    InvalidHeader(&'static str),
    /// A header value is longer than the session stores.
    HeaderTooLong(&'static str, usize),
    /// SUBSCRIBE with an id already in use.
    DuplicateSubscription,
    /// UNSUBSCRIBE of an id not in use.
    UnknownSubscription,
    /// The subscription table is full.
    TooManySubscriptions(usize),
    /// The host did not drain receipts with `poll_transmit`.
    TooManyReceipts,
}

impl core::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProtocolError::NotConnected(c) => {
                write!(f, "Expected CONNECT or STOMP frame, got {}", c)
            }
            ProtocolError::AlreadyConnected => f.write_str("Already connected"),
            ProtocolError::UnsupportedVersion(v) => {
                write!(f, "Supported protocol versions are {}", v)
            }
            ProtocolError::ServerCommand(c) => write!(f, "{} is a server frame", c),
            ProtocolError::MissingHeader(c, h) => {
                write!(f, "{} frame lacks required header: {}", c, h)
            }
            ProtocolError::InvalidHeader(h) => write!(f, "Invalid {} header", h),
            ProtocolError::HeaderTooLong(h, max) => {
                write!(f, "{} header longer than {} bytes", h, max)
            }
            ProtocolError::DuplicateSubscription => f.write_str("Subscription id already in use"),
            ProtocolError::UnknownSubscription => f.write_str("No subscription with this id"),
            ProtocolError::TooManySubscriptions(max) => {
                write!(f, "Too many subscriptions (at most {} per session)", max)
            }
            ProtocolError::TooManyReceipts => f.write_str("Too many receipts pending"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ProtocolError {}

/// Why a session closed (or is closing). `as_str` gives a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CloseReason {
    /// The client sent DISCONNECT.
    Disconnected,
    /// The client broke the protocol (ERROR sent).
    ProtocolError,
    /// Bytes could not be decoded (ERROR sent).
    DecodeError,
    /// Nothing heard for `read_timeout_factor` heart-beat intervals (ERROR sent).
    HeartbeatTimeout,
    /// No CONNECT within [`SessionConfig::connect_timeout`](super::SessionConfig::connect_timeout) (ERROR sent).
    ConnectTimeout,
    /// The host refused something: authentication, a destination, a limit.
    Rejected,
    /// The upstream broker connection was lost or refused the session.
    BrokerClosed,
    /// The server is shutting down.
    Shutdown,
    /// The transport closed without DISCONNECT.
    TransportClosed,
}

impl CloseReason {
    /// A short label, e.g. for a `closed_total{cause=...}` metric.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseReason::Disconnected => "disconnect",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::DecodeError => "decode_error",
            CloseReason::HeartbeatTimeout => "heartbeat_timeout",
            CloseReason::ConnectTimeout => "connect_timeout",
            CloseReason::Rejected => "rejected",
            CloseReason::BrokerClosed => "broker_closed",
            CloseReason::Shutdown => "shutdown",
            CloseReason::TransportClosed => "transport_closed",
        }
    }

    /// Whether this is a normal end (DISCONNECT), not worth a warning.
    pub const fn is_normal(self) -> bool {
        matches!(self, CloseReason::Disconnected)
    }
}

impl core::fmt::Display for CloseReason {
    /// The standard ERROR `message` for this reason.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CloseReason::Disconnected => "Disconnected",
            CloseReason::ProtocolError => "Protocol error",
            CloseReason::DecodeError => "Malformed frame",
            CloseReason::HeartbeatTimeout => "Session closed.",
            CloseReason::ConnectTimeout => "No CONNECT frame received in time",
            CloseReason::Rejected => "Rejected",
            CloseReason::BrokerClosed => "Connection to broker closed.",
            CloseReason::Shutdown => "Server shutting down",
            CloseReason::TransportClosed => "Connection closed",
        })
    }
}

/// The caller's buffer cannot hold the next frame; nothing was consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TransmitError(pub EncodeError);

impl core::fmt::Display for TransmitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}
