//! WebSocket close codes the server uses, and why each one is sent.
//!
//! TCP clients have no close codes; for them every close is the connection ending
//! (after the ERROR frame, when there is one).

/// Normal end (the client sent DISCONNECT).
pub const NORMAL: u16 = 1000;
/// The server is shutting down (after ERROR `Server shutting down`).
pub const GOING_AWAY: u16 = 1001;
/// A STOMP protocol error, an oversized frame, a heart-beat timeout, a lost broker
/// connection (always after an ERROR frame saying which).
pub const PROTOCOL_ERROR: u16 = 1002;
/// SockJS's `Go away!`: the session ended because its client was gone.
pub const GONE: u16 = 3000;
/// The server failed unexpectedly.
pub const INTERNAL_ERROR: u16 = 1011;
/// Spring's `SESSION_NOT_RELIABLE`: a slow consumer (send buffer or send time limit) or
/// no first frame in time.
pub const SLOW_CONSUMER: u16 = 4500;
