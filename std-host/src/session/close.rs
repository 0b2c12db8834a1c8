//! How a session ends on the wire: the WebSocket close code (and TCP close) for each
//! [`CloseReason`] the core session gives, or for what the host itself decided (a
//! stalled client, a full send buffer), and the abnormal-close cause counted in metrics.

use stomp_relay_core::session::CloseReason;

use crate::close;
use crate::metrics::CloseCause;

/// Why the transport should close, decided by the host rather than the session.
#[derive(Clone, Copy)]
pub(super) struct HostClose {
    pub(super) code: u16,
    pub(super) cause: Option<CloseCause>,
}

/// The close code and abnormal-close cause for a session-decided end.
pub(super) fn close_for(
    reason: CloseReason,
    decode_cause: Option<CloseCause>,
) -> (Option<u16>, Option<CloseCause>) {
    match reason {
        CloseReason::Disconnected => (Some(close::NORMAL), None),
        CloseReason::ProtocolError => {
            (Some(close::PROTOCOL_ERROR), Some(CloseCause::ProtocolError))
        }
        CloseReason::DecodeError => (
            Some(close::PROTOCOL_ERROR),
            Some(decode_cause.unwrap_or(CloseCause::ProtocolError)),
        ),
        CloseReason::HeartbeatTimeout => (
            Some(close::PROTOCOL_ERROR),
            Some(CloseCause::HeartbeatTimeout),
        ),
        CloseReason::ConnectTimeout => (Some(close::SLOW_CONSUMER), Some(CloseCause::NoFirstFrame)),
        CloseReason::Rejected => (Some(close::PROTOCOL_ERROR), Some(CloseCause::ProtocolError)),
        CloseReason::BrokerClosed => (Some(close::PROTOCOL_ERROR), Some(CloseCause::BrokerError)),
        CloseReason::Shutdown => (Some(close::GOING_AWAY), Some(CloseCause::Shutdown)),
        CloseReason::TransportClosed => (None, Some(CloseCause::TransportError)),
    }
}

/// The WebSocket close reason text sent with `code`.
pub(super) fn reason_text(code: u16) -> &'static str {
    match code {
        close::GOING_AWAY => "Server shutting down",
        close::SLOW_CONSUMER => "Session not reliable",
        close::PROTOCOL_ERROR => "Protocol error",
        close::GONE => "Go away!",
        _ => "",
    }
}
