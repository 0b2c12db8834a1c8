//! The client-facing STOMP session: handshake, version negotiation, heart-beats,
//! receipts, ERROR-then-close and the per-session subscription table.
//!
//! A [`Session`] is driven by its host (a tokio task, an embassy task, a fuzzer):
//!
//! - inputs: [`Session::handle_frame`] for each decoded frame (returns an [`Event`]
//!   for the host to act on: publish, subscribe, ...), [`Session::handle_heartbeat`] /
//!   [`Session::on_receive`] for any other bytes, [`Session::handle_decode_error`],
//!   [`Session::handle_timeout`] when [`Session::poll_timeout`]'s deadline passes,
//!   [`Session::on_transmit`] when the host itself wrote to the client (a MESSAGE);
//! - outputs: [`Session::poll_transmit`] writes the session's own frames (CONNECTED,
//!   RECEIPT, ERROR, heart-beat EOLs) into a caller buffer, one per call, in order;
//!   [`Session::is_closed`] says the host should close the transport once nothing is
//!   left to transmit, and [`Session::close_reason`] why.
//!
//! Invariants, checked by the proptest state-machine tests:
//! - nothing but ERROR is transmitted before CONNECTED; CONNECTED is sent at most once;
//! - every protocol error queues exactly one ERROR (with `message`, and `receipt-id`
//!   when the offending frame asked for a receipt), after which the session is closing
//!   and ignores further input; no RECEIPT is sent for the frame that failed;
//! - a RECEIPT is queued for every accepted frame carrying `receipt` (DISCONNECT's
//!   goes out before the session reports closed) unless the host handles receipts
//!   itself ([`SessionConfig::local_receipts`] off, e.g. a relay forwarding them);
//! - subscription ids are unique; the table never holds more than `SUBS` entries;
//! - no input panics, and nothing allocates: every buffer is inline and bounded
//!   (see the `*_MAX` constants), longer input is a protocol error naming the limit.
//!
//! Call [`Session::poll_transmit`] until it returns `None` after every input, so
//! receipts cannot pile up (the queue is bounded; overflow is a protocol error).

use core::fmt::Write as _;
use core::time::Duration;

use crate::codec::{
    Command, DecodeError, EncodeError, EncodeOptions, Frame, Header, HeaderValue, Version,
};
use crate::cursor::{Bytes, Cursor};
use crate::time::{earliest, Instant};

/// Longest subscription id stored in the table.
pub const SUB_ID_MAX: usize = 64;
/// Longest `receipt` value answered.
pub const RECEIPT_MAX: usize = 128;
/// Longest destination (or other value) that needs unescaping (`\c` etc.); plain
/// destinations of any length are borrowed from the frame instead.
pub const ESCAPED_VALUE_MAX: usize = 256;
/// Longest ERROR `message` text; longer text is cut at a character boundary.
pub const ERROR_MESSAGE_MAX: usize = 192;
/// Longest authenticated user name ([`Session::set_user`]).
pub const USER_MAX: usize = 64;
/// An output buffer of this size always fits the session's own frames.
pub const MAX_CONTROL_FRAME: usize = 1024;

const RECEIPT_QUEUE_BYTES: usize = 2 * (RECEIPT_MAX + 1) + 8;

/// A server-unique session number chosen by the host; it appears in CONNECTED's
/// `session` header and in resolved user destinations (`/queue/x-user42`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SessionId(pub u64);

impl core::fmt::Display for SessionId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A set of STOMP versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Versions(u8);

fn bit(v: Version) -> u8 {
    match v {
        Version::V1_0 => 1,
        Version::V1_1 => 2,
        Version::V1_2 => 4,
    }
}

impl Versions {
    /// 1.0, 1.1 and 1.2.
    pub const ALL: Versions = Versions(7);
    /// No version.
    pub const NONE: Versions = Versions(0);

    /// Just `v`.
    pub fn only(v: Version) -> Versions {
        Versions(bit(v))
    }

    /// `self` plus `v`.
    pub fn with(self, v: Version) -> Versions {
        Versions(self.0 | bit(v))
    }

    /// Whether `v` is in the set.
    pub fn contains(self, v: Version) -> bool {
        self.0 & bit(v) != 0
    }

    /// The versions in both sets.
    pub fn intersect(self, other: Versions) -> Versions {
        Versions(self.0 & other.0)
    }

    /// The highest version in the set.
    pub fn highest(self) -> Option<Version> {
        Version::ALL
            .iter()
            .rev()
            .copied()
            .find(|&v| self.contains(v))
    }

    /// Parses an `accept-version` value (`1.0,1.1,1.2`); unknown tokens are ignored.
    pub fn parse_accept(value: &[u8]) -> Versions {
        value
            .split(|&b| b == b',')
            .filter_map(|t| Version::parse(t.trim_ascii()))
            .fold(Versions::NONE, Versions::with)
    }
}

impl core::fmt::Display for Versions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        for v in Version::ALL.iter().filter(|&&v| self.contains(v)) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(v.as_str())?;
        }
        Ok(())
    }
}

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
    /// host then calls [`Session::queue_receipt`] for frames it handles locally.
    pub local_receipts: bool,
    /// Whether CONNECTED waits for [`Session::accept`] (for authentication or an
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

/// A subscription's acknowledgement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AckMode {
    /// `auto` (the default): messages count as acknowledged when sent.
    #[default]
    Auto,
    /// `client`: cumulative ACK.
    Client,
    /// `client-individual`: per-message ACK.
    ClientIndividual,
}

impl AckMode {
    /// Parses an `ack` header value.
    pub fn parse(v: &[u8]) -> Option<AckMode> {
        match v {
            b"auto" => Some(AckMode::Auto),
            b"client" => Some(AckMode::Client),
            b"client-individual" => Some(AckMode::ClientIndividual),
            _ => None,
        }
    }

    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
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
    /// CONNECT/STOMP accepted; CONNECTED is queued (or awaits [`Session::accept`]).
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
    /// No CONNECT within [`SessionConfig::connect_timeout`] (ERROR sent).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingConnect,
    /// CONNECT seen, CONNECTED waits for `accept`.
    AwaitingAccept,
    Connected,
    /// Output remains (receipt, ERROR); then closed.
    Closing,
    Closed,
}

#[derive(Clone, Copy)]
struct Subscription {
    id: Bytes<SUB_ID_MAX>,
    ack: AckMode,
}

/// Where a [`Session`] keeps its subscriptions: ids (at most [`SUB_ID_MAX`] bytes,
/// unique, the session checks before inserting) and their ack modes.
///
/// The default, [`InlineTable`], is a fixed array inside the session (no allocation,
/// what no_std hosts use). A host with an allocator can supply a table that only
/// holds what the client subscribed, so an idle session with one short subscription
/// id does not carry room for `SUBS` ids of the maximum length.
pub trait SubscriptionTable {
    /// Most subscriptions held; a SUBSCRIBE beyond it is refused
    /// ([`ProtocolError::TooManySubscriptions`]).
    fn capacity(&self) -> usize;
    /// Subscriptions held.
    fn len(&self) -> usize;
    /// No subscription held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The stored id equal to `id` and its ack mode.
    fn get(&self, id: &[u8]) -> Option<(&[u8], AckMode)>;
    /// Adds a subscription whose id is not held yet; `false` when the table is full.
    fn insert(&mut self, id: &[u8], ack: AckMode) -> bool;
    /// Removes subscription `id`; `false` when there is none.
    fn remove(&mut self, id: &[u8]) -> bool;
    /// Every subscription as `(id, ack mode)`.
    fn iter(&self) -> impl Iterator<Item = (&[u8], AckMode)> + '_;
}

/// The inline subscription table: `N` slots of [`SUB_ID_MAX`] bytes in the session.
#[derive(Clone, Copy)]
pub struct InlineTable<const N: usize> {
    slots: [Option<Subscription>; N],
}

impl<const N: usize> Default for InlineTable<N> {
    fn default() -> Self {
        InlineTable { slots: [None; N] }
    }
}

impl<const N: usize> SubscriptionTable for InlineTable<N> {
    fn capacity(&self) -> usize {
        N
    }

    fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    fn get(&self, id: &[u8]) -> Option<(&[u8], AckMode)> {
        self.iter().find(|(s, _)| *s == id)
    }

    fn insert(&mut self, id: &[u8], ack: AckMode) -> bool {
        let mut sub = Subscription {
            id: Bytes::EMPTY,
            ack,
        };
        if sub.id.set_plain(id).is_none() {
            return false;
        }
        match self.slots.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(sub);
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, id: &[u8]) -> bool {
        match self
            .slots
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|s| s.id.get() == id))
        {
            Some(slot) => {
                *slot = None;
                true
            }
            None => false,
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], AckMode)> + '_ {
        self.slots.iter().flatten().map(|s| (s.id.get(), s.ack))
    }
}

/// RECEIPT ids waiting to be sent, as length-prefixed runs in one array.
struct ReceiptQueue {
    len: usize,
    buf: [u8; RECEIPT_QUEUE_BYTES],
}

impl ReceiptQueue {
    fn push(&mut self, id: &[u8]) -> bool {
        let end = self.len + 1 + id.len();
        if id.len() > RECEIPT_MAX || end > self.buf.len() {
            return false;
        }
        self.buf[self.len] = id.len() as u8;
        self.buf[self.len + 1..end].copy_from_slice(id);
        self.len = end;
        true
    }

    fn front(&self) -> Option<&[u8]> {
        let n = usize::from(*self.buf[..self.len].first()?);
        Some(&self.buf[1..1 + n])
    }

    fn pop_front(&mut self) {
        if let Some(&n) = self.buf[..self.len].first() {
            let n = usize::from(n) + 1;
            self.buf.copy_within(n..self.len, 0);
            self.len -= n;
        }
    }

    /// Removes the most recently pushed id into `out`.
    fn pop_back(&mut self, out: &mut Bytes<RECEIPT_MAX>) {
        let mut pos = 0;
        let mut last = None;
        while pos < self.len {
            last = Some(pos);
            pos += 1 + usize::from(self.buf[pos]);
        }
        if let Some(start) = last {
            let n = usize::from(self.buf[start]);
            out.buf[..n].copy_from_slice(&self.buf[start + 1..start + 1 + n]);
            out.set_len(n);
            self.len = start;
        }
    }
}

struct PendingError {
    message: Bytes<ERROR_MESSAGE_MAX>,
    receipt: Option<Bytes<RECEIPT_MAX>>,
}

/// One client's STOMP session. `SUBS` is the capacity of the default inline
/// subscription table; a host may supply its own table as `T` instead.
pub struct Session<const SUBS: usize = 32, T: SubscriptionTable = InlineTable<SUBS>> {
    id: SessionId,
    config: SessionConfig,
    state: State,
    version: Version,
    client_heart_beat: (u32, u32),
    /// Negotiated server-to-client heart-beat interval.
    write_interval: Option<Duration>,
    /// Negotiated silence allowed from the client before closing.
    read_timeout: Option<Duration>,
    started: Instant,
    last_rx: Instant,
    last_tx: Instant,
    connected_pending: bool,
    /// CONNECTED went out (receipts may follow it, never precede it).
    connected_sent: bool,
    heartbeat_pending: bool,
    receipts: ReceiptQueue,
    /// The frame being handled pushed the newest receipt (a later ERROR takes it).
    current_receipt: bool,
    error: Option<PendingError>,
    close_reason: Option<CloseReason>,
    user: Bytes<USER_MAX>,
    subs: T,
    scratch: [u8; ESCAPED_VALUE_MAX],
}

impl<const SUBS: usize, T: SubscriptionTable> core::fmt::Debug for Session<SUBS, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("version", &self.version)
            .field("close_reason", &self.close_reason)
            .finish_non_exhaustive()
    }
}

/// Plain bytes of `v`: borrowed when no unescaping is needed, else copied into `scratch`.
fn plain<'a>(
    v: HeaderValue<'a>,
    scratch: &'a mut [u8],
    name: &'static str,
) -> Result<&'a [u8], ProtocolError> {
    if let Some(p) = v.as_plain() {
        return Ok(p);
    }
    let max = scratch.len();
    v.copy_unescaped(scratch)
        .map(|s| -> &[u8] { s })
        .map_err(|_| ProtocolError::HeaderTooLong(name, max))
}

fn parse_u32(b: &[u8]) -> Option<u32> {
    let b = b.trim_ascii();
    if b.is_empty() || b.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in b {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    u32::try_from(n).ok()
}

/// Parses a `heart-beat` value `cx,cy`.
pub fn parse_heart_beat(v: &[u8]) -> Option<(u32, u32)> {
    let comma = v.iter().position(|&b| b == b',')?;
    Some((parse_u32(&v[..comma])?, parse_u32(&v[comma + 1..])?))
}

/// The heart-beat intervals both sides agreed on, per the STOMP spec: a side sends
/// every `max(its own, what the other wants)` when both are non-zero.
/// Returns `(we send every, we expect every)` from our `(sx, sy)` and their `(cx, cy)`.
pub fn negotiate_heart_beat(
    ours: (u32, u32),
    theirs: (u32, u32),
) -> (Option<Duration>, Option<Duration>) {
    let dir =
        |a: u32, b: u32| (a != 0 && b != 0).then(|| Duration::from_millis(u64::from(a.max(b))));
    (dir(ours.0, theirs.1), dir(theirs.0, ours.1))
}

impl<const SUBS: usize, T: SubscriptionTable> Session<SUBS, T> {
    /// A new session, started (transport open) at `now`, with an empty table.
    pub fn new(id: SessionId, config: SessionConfig, now: Instant) -> Self
    where
        T: Default,
    {
        Self::with_table(id, config, now, T::default())
    }

    /// A new session keeping its subscriptions in `table` (which should be empty).
    pub fn with_table(id: SessionId, config: SessionConfig, now: Instant, table: T) -> Self {
        Session {
            id,
            config,
            state: State::AwaitingConnect,
            version: config.subprotocol.unwrap_or(Version::V1_2),
            client_heart_beat: (0, 0),
            write_interval: None,
            read_timeout: None,
            started: now,
            last_rx: now,
            last_tx: now,
            connected_pending: false,
            connected_sent: false,
            heartbeat_pending: false,
            receipts: ReceiptQueue {
                len: 0,
                buf: [0; RECEIPT_QUEUE_BYTES],
            },
            current_receipt: false,
            error: None,
            close_reason: None,
            user: Bytes::EMPTY,
            subs: table,
            scratch: [0; ESCAPED_VALUE_MAX],
        }
    }

    /// The host's id for this session.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The version in use (negotiated once connected; the subprotocol's or 1.2 before,
    /// which is what the decoder should use: CONNECT headers are never escaped).
    pub fn version(&self) -> Version {
        self.version
    }

    /// Whether CONNECT was accepted (CONNECTED queued or sent).
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Whether the session is over and has nothing more to transmit: the host closes
    /// the transport.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the session stopped accepting input (closing or closed).
    pub fn is_closing(&self) -> bool {
        matches!(self.state, State::Closing | State::Closed)
    }

    /// Why the session closed or is closing.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// The negotiated `(send, expect)` heart-beat intervals.
    pub fn heart_beat(&self) -> (Option<Duration>, Option<Duration>) {
        (
            self.write_interval,
            self.read_timeout
                .map(|t| t / self.config.read_timeout_factor.max(1)),
        )
    }

    /// The client's CONNECT heart-beat `(cx, cy)` (e.g. to negotiate upstream).
    pub fn client_heart_beat(&self) -> (u32, u32) {
        self.client_heart_beat
    }

    /// The authenticated user, if the host set one.
    pub fn user(&self) -> Option<&[u8]> {
        (!self.user.get().is_empty()).then(|| self.user.get())
    }

    /// Records the authenticated user name (sent as CONNECTED's `user-name`). Names
    /// longer than [`USER_MAX`] are refused with `false`.
    pub fn set_user(&mut self, name: &[u8]) -> bool {
        if name.len() > USER_MAX || name.iter().any(|&b| b == b'\n' || b == b'\r') {
            return false;
        }
        self.user.set_plain(name).is_some()
    }

    /// The ack mode of subscription `id`, if it exists.
    pub fn subscription(&self, id: &[u8]) -> Option<AckMode> {
        self.subs.get(id).map(|(_, ack)| ack)
    }

    /// Every subscription as `(id, ack mode)`.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&[u8], AckMode)> + '_ {
        self.subs.iter()
    }

    /// Number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.subs.len()
    }

    /// Notes that bytes arrived at `now` (a partial frame counts as activity).
    pub fn on_receive(&mut self, now: Instant) {
        self.last_rx = self.last_rx.max(now);
    }

    /// A heart-beat EOL arrived.
    pub fn handle_heartbeat(&mut self, now: Instant) {
        self.on_receive(now);
    }

    /// Notes that the host wrote bytes to the client at `now` (a MESSAGE, a relayed
    /// frame), so no heart-beat is due until the write side is idle again.
    pub fn on_transmit(&mut self, now: Instant) {
        self.last_tx = self.last_tx.max(now);
        self.heartbeat_pending = false;
    }

    /// The stream could not be decoded: ERROR naming the problem, then close.
    pub fn handle_decode_error(&mut self, now: Instant, err: &DecodeError) {
        self.on_receive(now);
        self.current_receipt = false;
        self.close_with_error(CloseReason::DecodeError, err);
    }

    /// The transport closed (without DISCONNECT, unless one was handled).
    pub fn handle_transport_closed(&mut self) {
        if self.close_reason.is_none() {
            self.close_reason = Some(CloseReason::TransportClosed);
        }
        self.state = State::Closed;
    }

    /// Closes the session with an ERROR whose `message` is `message` (its
    /// `receipt-id` is the receipt of the frame being handled, whose RECEIPT is
    /// withdrawn). Use for host-side refusals: a destination outside the prefixes,
    /// failed authentication, the broker going away, shutdown.
    pub fn close_with_error(&mut self, reason: CloseReason, message: impl core::fmt::Display) {
        if self.is_closing() {
            return;
        }
        let mut err = PendingError {
            message: Bytes::EMPTY,
            receipt: None,
        };
        let mut c = Cursor::new(&mut err.message.buf);
        let _ = write!(c, "{}", message);
        let n = c.finish_truncated().len();
        err.message.set_len(n);
        if self.current_receipt {
            let mut r = Bytes::EMPTY;
            self.receipts.pop_back(&mut r);
            err.receipt = Some(r);
            self.current_receipt = false;
        }
        self.error = Some(err);
        self.close_reason = Some(reason);
        self.state = State::Closing;
        self.heartbeat_pending = false;
    }

    /// Closes without an ERROR frame (after a relayed broker ERROR, say); queued
    /// receipts are still sent.
    pub fn close(&mut self, reason: CloseReason) {
        if self.is_closing() {
            return;
        }
        self.close_reason = Some(reason);
        self.state = State::Closing;
        self.heartbeat_pending = false;
        self.finish_if_drained();
    }

    /// Accepts a deferred CONNECT ([`SessionConfig::defer_connected`]): queues
    /// CONNECTED. Does nothing in any other state.
    pub fn accept(&mut self, now: Instant) {
        if self.state == State::AwaitingAccept {
            self.state = State::Connected;
            self.connected_pending = true;
            self.last_tx = now;
        }
    }

    /// Queues a RECEIPT (for a host handling receipts itself; see
    /// [`SessionConfig::local_receipts`]). Returns `false` when the id is too long or
    /// the queue is full.
    pub fn queue_receipt(&mut self, id: &[u8]) -> bool {
        !self.is_closing() && self.receipts.push(id)
    }

    /// Withdraws the RECEIPT queued for the frame being handled, for a host that
    /// refuses that frame with an ERROR of its own but keeps the session open (the
    /// ERROR carries the `receipt-id`, so a RECEIPT as well would tell the client the
    /// frame was accepted). Returns whether a receipt was withdrawn.
    pub fn withdraw_receipt(&mut self) -> bool {
        if !self.current_receipt {
            return false;
        }
        let mut r = Bytes::EMPTY;
        self.receipts.pop_back(&mut r);
        self.current_receipt = false;
        true
    }

    /// Handles one decoded client frame. `Ok(Some(event))`: act on it. `Ok(None)`:
    /// nothing to do (the session is closing). `Err`: a protocol error; the ERROR is
    /// queued and the session is closing.
    pub fn handle_frame<'a>(
        &'a mut self,
        now: Instant,
        frame: &Frame<'a>,
    ) -> Result<Option<Event<'a>>, ProtocolError> {
        self.on_receive(now);
        self.current_receipt = false;
        if self.is_closing() {
            return Ok(None);
        }
        match self.check_frame(now, frame) {
            Ok(kind) => {
                if let Some(receipt) = frame.receipt() {
                    // DISCONNECT is always answered here: the client is leaving, and a
                    // relay ends its upstream session on its own terms.
                    let local = self.config.local_receipts || kind == Command::Disconnect;
                    if local && !kind.is_connect() {
                        let mut r = Bytes::<RECEIPT_MAX>::EMPTY;
                        if r.set(receipt).is_none() {
                            return Err(
                                self.fail(ProtocolError::HeaderTooLong("receipt", RECEIPT_MAX))
                            );
                        }
                        if !self.receipts.push(r.get()) {
                            return Err(self.fail(ProtocolError::TooManyReceipts));
                        }
                        self.current_receipt = true;
                    }
                }
                if kind == Command::Disconnect {
                    self.close_reason = Some(CloseReason::Disconnected);
                    self.state = State::Closing;
                    self.finish_if_drained();
                }
                Ok(Some(self.event(frame, kind)))
            }
            Err(e) => {
                // The ERROR carries the failed frame's receipt as `receipt-id`.
                if let Some(r) = frame.receipt() {
                    let mut b = Bytes::<RECEIPT_MAX>::EMPTY;
                    if b.set(r).is_some() && self.receipts.push(b.get()) {
                        self.current_receipt = true;
                    }
                }
                Err(self.fail(e))
            }
        }
    }

    fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        self.close_with_error(CloseReason::ProtocolError, e);
        e
    }

    /// Validates `frame` and applies its state changes; the event is built afterwards
    /// (borrowing the table or scratch) by [`Session::event`].
    fn check_frame(&mut self, now: Instant, frame: &Frame<'_>) -> Result<Command, ProtocolError> {
        let cmd = frame.command;
        if self.state == State::AwaitingConnect {
            if !cmd.is_connect() {
                return Err(ProtocolError::NotConnected(cmd));
            }
            self.connect(now, frame)?;
            return Ok(cmd);
        }
        let need = |name: &'static str| {
            frame
                .header(name.as_bytes())
                .ok_or(ProtocolError::MissingHeader(cmd, name))
        };
        match cmd {
            Command::Connect | Command::Stomp => return Err(ProtocolError::AlreadyConnected),
            Command::Connected | Command::Message | Command::Receipt | Command::Error => {
                return Err(ProtocolError::ServerCommand(cmd))
            }
            Command::Send => {
                need("destination")?;
            }
            Command::Subscribe => {
                need("destination")?;
                let id = match frame.id() {
                    Some(id) => id,
                    // 1.0 makes the id optional: the destination names the subscription.
                    None if self.version == Version::V1_0 => need("destination")?,
                    None => return Err(ProtocolError::MissingHeader(cmd, "id")),
                };
                let ack = match frame.ack() {
                    None => AckMode::Auto,
                    Some(v) => v
                        .as_plain()
                        .and_then(AckMode::parse)
                        .ok_or(ProtocolError::InvalidHeader("ack"))?,
                };
                let mut sub = Subscription {
                    id: Bytes::EMPTY,
                    ack,
                };
                sub.id
                    .set(id)
                    .ok_or(ProtocolError::HeaderTooLong("id", SUB_ID_MAX))?;
                if self.subscription(sub.id.get()).is_some() {
                    return Err(ProtocolError::DuplicateSubscription);
                }
                if !self.subs.insert(sub.id.get(), sub.ack) {
                    return Err(ProtocolError::TooManySubscriptions(self.subs.capacity()));
                }
            }
            Command::Unsubscribe => {
                let id = match frame.id() {
                    Some(id) => id,
                    None if self.version == Version::V1_0 => need("destination")?,
                    None => return Err(ProtocolError::MissingHeader(cmd, "id")),
                };
                // The id, unescaped, stays in scratch for the event; one longer than
                // any stored id cannot name a subscription.
                let len = id
                    .copy_unescaped(&mut self.scratch[..SUB_ID_MAX])
                    .map_err(|_| ProtocolError::UnknownSubscription)?
                    .len();
                if !self.subs.remove(&self.scratch[..len]) {
                    return Err(ProtocolError::UnknownSubscription);
                }
            }
            Command::Ack | Command::Nack => {
                let name = if self.version == Version::V1_2 {
                    "id"
                } else {
                    "message-id"
                };
                need(name)?;
            }
            Command::Begin | Command::Commit | Command::Abort => {
                need("transaction")?;
            }
            Command::Disconnect => {}
        }
        Ok(cmd)
    }

    fn connect(&mut self, now: Instant, frame: &Frame<'_>) -> Result<(), ProtocolError> {
        let offered = match frame.header(b"accept-version") {
            Some(v) => Versions::parse_accept(v.raw()),
            None => match self.config.subprotocol {
                Some(v) => Versions::only(v),
                None => Versions::only(Version::V1_0),
            },
        };
        let mut common = offered.intersect(self.config.versions);
        if let Some(cap) = self.config.subprotocol {
            for v in Version::ALL {
                if v > cap {
                    common = Versions(common.0 & !bit(v));
                }
            }
        }
        let version = common
            .highest()
            .ok_or(ProtocolError::UnsupportedVersion(self.config.versions))?;
        let client_hb = match (version, frame.header(b"heart-beat")) {
            (Version::V1_0, _) | (_, None) => (0, 0),
            (_, Some(v)) => {
                parse_heart_beat(v.raw()).ok_or(ProtocolError::InvalidHeader("heart-beat"))?
            }
        };
        self.version = version;
        self.client_heart_beat = client_hb;
        if version != Version::V1_0 {
            let (w, r) = negotiate_heart_beat(self.config.heart_beat, client_hb);
            self.write_interval = w;
            self.read_timeout = r.map(|r| r * self.config.read_timeout_factor.max(1));
        }
        self.last_rx = now;
        self.last_tx = now;
        if self.config.defer_connected {
            self.state = State::AwaitingAccept;
        } else {
            self.state = State::Connected;
            self.connected_pending = true;
        }
        Ok(())
    }

    fn event<'a>(&'a mut self, frame: &Frame<'a>, cmd: Command) -> Event<'a> {
        let raw = |name: &[u8]| frame.header(name).map(|v| v.as_plain().unwrap_or(v.raw()));
        let scratch = &mut self.scratch;
        let value = |name: &[u8], scratch: &'a mut [u8]| -> &'a [u8] {
            match frame.header(name) {
                Some(v) => plain(v, scratch, "value").unwrap_or(b""),
                None => b"",
            }
        };
        match cmd {
            Command::Connect | Command::Stomp => Event::Connect(Connect {
                version: self.version,
                login: raw(b"login"),
                passcode: raw(b"passcode"),
                host: raw(b"host"),
                heart_beat: self.client_heart_beat,
            }),
            Command::Send => Event::Send {
                destination: value(b"destination", scratch),
            },
            Command::Subscribe => {
                let destination = value(b"destination", scratch);
                // The newest entry with this id is the one just inserted.
                let id_value = frame.id().or_else(|| frame.destination());
                let sub = self
                    .subs
                    .iter()
                    .find(|(id, _)| id_value.is_some_and(|v| v.eq_bytes(id)));
                match sub {
                    Some((id, ack)) => Event::Subscribe {
                        id,
                        destination,
                        ack,
                    },
                    None => Event::Subscribe {
                        id: b"",
                        destination,
                        ack: AckMode::Auto,
                    },
                }
            }
            Command::Unsubscribe => {
                let id = frame.id().or_else(|| frame.destination());
                let len = id.map_or(0, |v| v.unescaped_len()).min(SUB_ID_MAX);
                Event::Unsubscribe {
                    id: &scratch[..len],
                }
            }
            Command::Ack | Command::Nack => {
                let name: &[u8] = if self.version == Version::V1_2 {
                    b"id"
                } else {
                    b"message-id"
                };
                let id = value(name, scratch);
                if cmd == Command::Ack {
                    Event::Ack { id }
                } else {
                    Event::Nack { id }
                }
            }
            Command::Begin => Event::Begin {
                transaction: value(b"transaction", scratch),
            },
            Command::Commit => Event::Commit {
                transaction: value(b"transaction", scratch),
            },
            Command::Abort => Event::Abort {
                transaction: value(b"transaction", scratch),
            },
            _ => Event::Disconnect,
        }
    }

    fn finish_if_drained(&mut self) {
        if self.state == State::Closing
            && self.error.is_none()
            && self.receipts.len == 0
            && !self.connected_pending
        {
            self.state = State::Closed;
        }
    }

    /// The next deadline at which [`Session::handle_timeout`] must run, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::AwaitingConnect => self.config.connect_timeout.map(|t| self.started + t),
            State::AwaitingAccept | State::Connected => {
                let write = if self.heartbeat_pending {
                    None
                } else {
                    self.write_interval.map(|w| self.last_tx + w)
                };
                earliest(write, self.read_timeout.map(|r| self.last_rx + r))
            }
            State::Closing | State::Closed => None,
        }
    }

    /// Runs timers due at `now`: the connect deadline, the read timeout (ERROR
    /// `Session closed.`, then close) and the write-side heart-beat.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::AwaitingConnect => {
                if let Some(t) = self.config.connect_timeout {
                    if now >= self.started + t {
                        self.current_receipt = false;
                        self.close_with_error(
                            CloseReason::ConnectTimeout,
                            CloseReason::ConnectTimeout,
                        );
                    }
                }
            }
            State::AwaitingAccept | State::Connected => {
                if let Some(r) = self.read_timeout {
                    if now >= self.last_rx + r {
                        self.current_receipt = false;
                        self.close_with_error(
                            CloseReason::HeartbeatTimeout,
                            CloseReason::HeartbeatTimeout,
                        );
                        return;
                    }
                }
                if let Some(w) = self.write_interval {
                    if now >= self.last_tx + w {
                        self.heartbeat_pending = true;
                    }
                }
            }
            State::Closing | State::Closed => {}
        }
    }

    /// Writes the next frame the session wants to send into `out`: CONNECTED, then
    /// RECEIPTs, then ERROR, or a heart-beat EOL when the write side was idle.
    /// `Ok(None)`: nothing to send. A buffer of [`MAX_CONTROL_FRAME`] bytes always
    /// suffices; with a smaller one the frame stays queued and the error says how
    /// many bytes it needs.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        out: &mut [u8],
    ) -> Result<Option<usize>, TransmitError> {
        if !self.connected_sent && !self.connected_pending && self.state != State::AwaitingAccept {
            // Closed before CONNECTED: receipts for frames sent meanwhile would break
            // the CONNECTED-first rule, and the session is over anyway.
            self.receipts.len = 0;
            self.finish_if_drained();
        }
        let n = if self.connected_pending {
            let n = self.encode_connected(out)?;
            self.connected_pending = false;
            self.connected_sent = true;
            n
        } else if let Some(id) = self
            .receipts
            .front()
            .filter(|_| self.state != State::AwaitingAccept)
        {
            let headers = [Header::new(b"receipt-id", id)];
            let n = self.encode(&Frame::new(Command::Receipt, &headers, b""), out)?;
            self.receipts.pop_front();
            n
        } else if let Some(err) = &self.error {
            let mut headers = [Header::new(b"message", err.message.get()), Header::EMPTY];
            let count = match &err.receipt {
                Some(r) => {
                    headers[1] = Header::new(b"receipt-id", r.get());
                    2
                }
                None => 1,
            };
            let n = self.encode(&Frame::new(Command::Error, &headers[..count], b""), out)?;
            self.error = None;
            self.state = State::Closed;
            n
        } else if self.heartbeat_pending && self.state == State::Connected {
            let Some(b) = out.first_mut() else {
                return Err(TransmitError(EncodeError::BufferTooSmall { needed: 1 }));
            };
            *b = b'\n';
            1
        } else {
            return Ok(None);
        };
        self.current_receipt = false;
        self.on_transmit(now);
        self.finish_if_drained();
        Ok(Some(n))
    }

    fn encode(&self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, TransmitError> {
        crate::codec::encode(frame, EncodeOptions::new(self.version), out).map_err(TransmitError)
    }

    fn encode_connected(&self, out: &mut [u8]) -> Result<usize, TransmitError> {
        let mut hb = [0u8; 24];
        let mut c = Cursor::new(&mut hb);
        c.push_u64(self.config.heart_beat.0.into())
            .push_byte(b',')
            .push_u64(self.config.heart_beat.1.into());
        let hb = c.finish_truncated();
        let mut sid = [0u8; 20];
        let mut c = Cursor::new(&mut sid);
        c.push_u64(self.id.0);
        let sid = c.finish_truncated();
        let version = Header::new(b"version", self.version.as_str().as_bytes());
        let mut headers = [
            version,
            Header::EMPTY,
            Header::EMPTY,
            Header::EMPTY,
            Header::EMPTY,
        ];
        let mut n = 1;
        if self.version != Version::V1_0 {
            headers[n] = Header::new(b"heart-beat", hb);
            n += 1;
        }
        if let Some(s) = self.config.server {
            headers[n] = Header::new(b"server", s.as_bytes());
            n += 1;
        }
        headers[n] = Header::new(b"session", sid);
        n += 1;
        if let Some(u) = self.user() {
            headers[n] = Header::new(b"user-name", u);
            n += 1;
        }
        self.encode(&Frame::new(Command::Connected, &headers[..n], b""), out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decoded, Decoder, HeaderForm, Limits, Status};
    use std::string::{String, ToString};
    use std::vec::Vec;

    type S = Session<4>;

    /// A transmitted frame, decoded back, for assertions.
    #[derive(Debug)]
    struct Out {
        command: Option<Command>,
        headers: Vec<(String, String)>,
    }

    impl Out {
        fn get(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
        fn is(&self, c: Command) -> bool {
            self.command == Some(c)
        }
    }

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn drain(s: &mut S, now: Instant) -> Vec<Out> {
        let mut outs = Vec::new();
        let mut buf = [0u8; MAX_CONTROL_FRAME];
        while let Some(n) = s.poll_transmit(now, &mut buf).unwrap() {
            let mut hs = [Header::EMPTY; 16];
            let dec = Decoder::with_limits(s.version(), Limits::UNLIMITED);
            match dec.decode(&buf[..n], &mut hs).unwrap() {
                Status::Complete((Decoded::Frame(f), used)) => {
                    assert_eq!(used, n);
                    outs.push(Out {
                        command: Some(f.command),
                        headers: f
                            .header_pairs()
                            .map(|(k, v)| {
                                let mut kb = [0u8; 512];
                                let mut vb = [0u8; 512];
                                (
                                    String::from_utf8(k.copy_unescaped(&mut kb).unwrap().to_vec())
                                        .unwrap(),
                                    String::from_utf8(v.copy_unescaped(&mut vb).unwrap().to_vec())
                                        .unwrap(),
                                )
                            })
                            .collect(),
                    });
                }
                Status::Complete((Decoded::HeartBeat, 1)) => outs.push(Out {
                    command: None,
                    headers: Vec::new(),
                }),
                other => panic!("unexpected {other:?}"),
            }
        }
        outs
    }

    fn connect_frame<'a>(headers: &'a [Header<'a>]) -> Frame<'a> {
        Frame::new(Command::Connect, headers, b"")
    }

    fn connected(config: SessionConfig) -> S {
        let mut s = S::new(SessionId(7), config, t(0));
        let h = [
            Header::new(b"accept-version", b"1.1,1.2"),
            Header::new(b"heart-beat", b"0,0"),
        ];
        assert!(matches!(
            s.handle_frame(t(0), &connect_frame(&h)),
            Ok(Some(Event::Connect(_)))
        ));
        let out = drain(&mut s, t(0));
        assert!(out[0].is(Command::Connected));
        s
    }

    fn send(
        s: &mut S,
        now: Instant,
        cmd: Command,
        headers: &[Header<'_>],
    ) -> Result<bool, ProtocolError> {
        let f = Frame::new(cmd, headers, b"");
        s.handle_frame(now, &f).map(|e| e.is_some())
    }

    #[test]
    fn connect_negotiates_highest_common_version_and_heart_beats() {
        let mut s = S::new(
            SessionId(7),
            SessionConfig {
                server: Some("stomp-relay/test"),
                ..SessionConfig::default()
            },
            t(0),
        );
        let h = [
            Header::new(b"accept-version", b"1.0,1.1,1.2"),
            Header::new(b"heart-beat", b"4000,20000"),
            Header::new(b"login", b"alice"),
            Header::new(b"host", b"/"),
        ];
        match s.handle_frame(t(5), &connect_frame(&h)).unwrap() {
            Some(Event::Connect(c)) => {
                assert_eq!(c.version, Version::V1_2);
                assert_eq!(c.login, Some(&b"alice"[..]));
                assert_eq!(c.passcode, None);
                assert_eq!(c.host, Some(&b"/"[..]));
                assert_eq!(c.heart_beat, (4000, 20000));
            }
            other => panic!("{other:?}"),
        }
        let out = drain(&mut s, t(5));
        assert_eq!(out.len(), 1);
        assert!(out[0].is(Command::Connected));
        assert_eq!(out[0].get("version"), Some("1.2"));
        assert_eq!(out[0].get("heart-beat"), Some("10000,10000"));
        assert_eq!(out[0].get("server"), Some("stomp-relay/test"));
        assert_eq!(out[0].get("session"), Some("7"));
        // We send every max(10000, 20000); expect every max(4000, 10000), 3x tolerated.
        assert_eq!(
            s.heart_beat(),
            (
                Some(Duration::from_millis(20_000)),
                Some(Duration::from_millis(10_000))
            )
        );
        assert_eq!(s.poll_timeout(), Some(t(20_005)));
    }

    #[test]
    fn version_table() {
        type Case = (
            Option<&'static [u8]>,
            Option<Version>,
            Versions,
            Option<Version>,
        );
        let cases: &[Case] = &[
            (
                Some(b"1.0,1.1,1.2"),
                None,
                Versions::ALL,
                Some(Version::V1_2),
            ),
            (Some(b"1.1, 1.0"), None, Versions::ALL, Some(Version::V1_1)),
            (None, None, Versions::ALL, Some(Version::V1_0)),
            (
                None,
                Some(Version::V1_1),
                Versions::ALL,
                Some(Version::V1_1),
            ),
            (
                Some(b"1.0,1.1,1.2"),
                Some(Version::V1_1),
                Versions::ALL,
                Some(Version::V1_1),
            ),
            (Some(b"1.2"), Some(Version::V1_1), Versions::ALL, None),
            (Some(b"1.2"), None, Versions::only(Version::V1_1), None),
            (Some(b"2.0,1.2"), None, Versions::ALL, Some(Version::V1_2)),
            (Some(b"2.0"), None, Versions::ALL, None),
        ];
        for &(accept, sub, server, want) in cases {
            let mut s = S::new(
                SessionId(1),
                SessionConfig {
                    subprotocol: sub,
                    versions: server,
                    ..SessionConfig::default()
                },
                t(0),
            );
            let h = [Header::new(b"accept-version", accept.unwrap_or(b""))];
            let hs: &[Header<'_>] = if accept.is_some() { &h } else { &[] };
            let r = s.handle_frame(t(0), &connect_frame(hs)).map(|_| ());
            let out = drain(&mut s, t(0));
            match want {
                Some(v) => {
                    assert!(r.is_ok(), "{accept:?} {sub:?}");
                    assert_eq!(out[0].get("version"), Some(v.as_str()));
                    assert_eq!(s.version(), v);
                }
                None => {
                    assert_eq!(r.unwrap_err(), ProtocolError::UnsupportedVersion(server));
                    assert!(out[0].is(Command::Error));
                    let expected = std::format!("Supported protocol versions are {}", server);
                    assert_eq!(out[0].get("message"), Some(expected.as_str()));
                    assert!(s.is_closed());
                }
            }
        }
    }

    #[test]
    fn anything_before_connect_is_an_error_and_closes() {
        let mut s = S::new(SessionId(1), SessionConfig::default(), t(0));
        let h = [
            Header::new(b"destination", b"/sub/x"),
            Header::new(b"receipt", b"r1"),
        ];
        let err = send(&mut s, t(1), Command::Send, &h).unwrap_err();
        assert_eq!(err, ProtocolError::NotConnected(Command::Send));
        let out = drain(&mut s, t(1));
        assert_eq!(out.len(), 1);
        assert!(out[0].is(Command::Error));
        assert_eq!(
            out[0].get("message"),
            Some("Expected CONNECT or STOMP frame, got SEND")
        );
        assert_eq!(out[0].get("receipt-id"), Some("r1"));
        assert!(s.is_closed());
        assert_eq!(s.close_reason(), Some(CloseReason::ProtocolError));
        // Input after close is ignored.
        assert_eq!(send(&mut s, t(2), Command::Connect, &[]), Ok(false));
        assert!(drain(&mut s, t(2)).is_empty());
    }

    #[test]
    fn second_connect_is_an_error() {
        let mut s = connected(SessionConfig::default());
        assert_eq!(
            send(&mut s, t(1), Command::Stomp, &[]),
            Err(ProtocolError::AlreadyConnected)
        );
        let out = drain(&mut s, t(1));
        assert!(out[0].is(Command::Error));
        assert_eq!(out[0].get("message"), Some("Already connected"));
        assert!(s.is_closed());
    }

    #[test]
    fn receipts_for_every_frame_that_asks() {
        let mut s = connected(SessionConfig::default());
        let h = [
            Header::new(b"destination", b"/sub/a"),
            Header::new(b"receipt", b"r:1"),
        ];
        let f = Frame::new(Command::Send, &h, b"hello");
        assert_eq!(
            s.handle_frame(t(1), &f),
            Ok(Some(Event::Send {
                destination: &b"/sub/a"[..]
            }))
        );
        let h = [
            Header::new(b"destination", b"/sub/a"),
            Header::new(b"id", b"0"),
            Header::new(b"receipt", b"r2"),
        ];
        assert_eq!(send(&mut s, t(1), Command::Subscribe, &h), Ok(true));
        let out = drain(&mut s, t(1));
        assert_eq!(out.len(), 2);
        assert!(out[0].is(Command::Receipt));
        assert_eq!(out[0].get("receipt-id"), Some("r:1"));
        assert_eq!(out[1].get("receipt-id"), Some("r2"));
        assert!(!s.is_closing());
    }

    #[test]
    fn disconnect_with_receipt_answers_before_closing() {
        let mut s = connected(SessionConfig::default());
        let h = [Header::new(b"receipt", b"bye")];
        assert_eq!(send(&mut s, t(1), Command::Disconnect, &h), Ok(true));
        assert!(s.is_closing() && !s.is_closed());
        let out = drain(&mut s, t(1));
        assert_eq!(out.len(), 1);
        assert!(out[0].is(Command::Receipt));
        assert_eq!(out[0].get("receipt-id"), Some("bye"));
        assert!(s.is_closed());
        assert_eq!(s.close_reason(), Some(CloseReason::Disconnected));

        let mut s = connected(SessionConfig::default());
        assert_eq!(send(&mut s, t(1), Command::Disconnect, &[]), Ok(true));
        assert!(s.is_closed());
        assert!(drain(&mut s, t(1)).is_empty());
    }

    #[test]
    fn missing_headers_name_the_header_and_echo_the_receipt() {
        let table: &[(Command, &[Header<'static>], &str)] = &[
            (
                Command::Send,
                &[],
                "SEND frame lacks required header: destination",
            ),
            (
                Command::Subscribe,
                &[Header::new(b"destination", b"/sub/a")],
                "SUBSCRIBE frame lacks required header: id",
            ),
            (
                Command::Unsubscribe,
                &[],
                "UNSUBSCRIBE frame lacks required header: id",
            ),
            (Command::Ack, &[], "ACK frame lacks required header: id"),
            (
                Command::Begin,
                &[],
                "BEGIN frame lacks required header: transaction",
            ),
            (Command::Message, &[], "MESSAGE is a server frame"),
            (
                Command::Subscribe,
                &[
                    Header::new(b"destination", b"/sub/a"),
                    Header::new(b"id", b"1"),
                    Header::new(b"ack", b"sometimes"),
                ],
                "Invalid ack header",
            ),
        ];
        for &(cmd, headers, message) in table {
            let mut s = connected(SessionConfig::default());
            let mut hs: Vec<Header<'_>> = headers.to_vec();
            hs.push(Header::new(b"receipt", b"77"));
            assert!(send(&mut s, t(1), cmd, &hs).is_err());
            let out = drain(&mut s, t(1));
            assert_eq!(out.len(), 1, "{cmd}: only the ERROR, no RECEIPT");
            assert!(out[0].is(Command::Error));
            assert_eq!(out[0].get("message"), Some(message));
            assert_eq!(out[0].get("receipt-id"), Some("77"));
            assert!(s.is_closed());
        }
    }

    #[test]
    fn subscription_table_rules() {
        let mut s = connected(SessionConfig::default());
        let sub = |id: &'static [u8], ack: &'static [u8]| {
            [
                Header::new(b"destination", b"/topic/a"),
                Header::new(b"id", id),
                Header::new(b"ack", ack),
            ]
        };
        let f = sub(b"a", b"client-individual");
        match s.handle_frame(t(1), &Frame::new(Command::Subscribe, &f, b"")) {
            Ok(Some(Event::Subscribe {
                id,
                destination,
                ack,
            })) => {
                assert_eq!(
                    (id, destination, ack),
                    (&b"a"[..], &b"/topic/a"[..], AckMode::ClientIndividual)
                );
            }
            other => panic!("{other:?}"),
        }
        for id in [&b"b"[..], b"c", b"d"] {
            let f = [
                Header::new(b"destination", b"/topic/a"),
                Header::new(b"id", id),
            ];
            assert_eq!(send(&mut s, t(1), Command::Subscribe, &f), Ok(true));
        }
        assert_eq!(s.subscription(b"a"), Some(AckMode::ClientIndividual));
        assert_eq!(s.subscription(b"b"), Some(AckMode::Auto));
        assert_eq!(s.subscription_count(), 4);
        let f = [Header::new(b"id", b"b")];
        match s.handle_frame(t(2), &Frame::new(Command::Unsubscribe, &f, b"")) {
            Ok(Some(Event::Unsubscribe { id })) => assert_eq!(id, b"b"),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.subscription(b"b"), None);
        assert_eq!(
            send(&mut s, t(2), Command::Subscribe, &sub(b"e", b"client")),
            Ok(true)
        );
        assert_eq!(s.subscription(b"e"), Some(AckMode::Client));
        // Full.
        assert_eq!(
            send(&mut s, t(3), Command::Subscribe, &sub(b"f", b"auto")),
            Err(ProtocolError::TooManySubscriptions(4))
        );
        let out = drain(&mut s, t(3));
        assert_eq!(
            out[0].get("message"),
            Some("Too many subscriptions (at most 4 per session)")
        );

        let mut s = connected(SessionConfig::default());
        assert_eq!(
            send(&mut s, t(1), Command::Subscribe, &sub(b"x", b"auto")),
            Ok(true)
        );
        assert_eq!(
            send(&mut s, t(1), Command::Subscribe, &sub(b"x", b"auto")),
            Err(ProtocolError::DuplicateSubscription)
        );

        let mut s = connected(SessionConfig::default());
        assert_eq!(
            send(
                &mut s,
                t(1),
                Command::Unsubscribe,
                &[Header::new(b"id", b"nope")]
            ),
            Err(ProtocolError::UnknownSubscription)
        );

        let mut s = connected(SessionConfig::default());
        let long = [b'x'; SUB_ID_MAX + 1];
        let f = [
            Header::new(b"destination", b"/topic/a"),
            Header::new(b"id", &long),
        ];
        assert_eq!(
            send(&mut s, t(1), Command::Subscribe, &f),
            Err(ProtocolError::HeaderTooLong("id", SUB_ID_MAX))
        );
    }

    #[test]
    fn escaped_values_are_unescaped_for_the_host() {
        let mut s = connected(SessionConfig::default());
        let h = [
            Header::new(b"destination", b"/sub/a\\cb"),
            Header::new(b"id", b"i\\\\d"),
        ];
        let f = Frame {
            command: Command::Subscribe,
            headers: &h,
            body: b"",
            form: HeaderForm::Escaped,
        };
        match s.handle_frame(t(1), &f) {
            Ok(Some(Event::Subscribe {
                id, destination, ..
            })) => {
                assert_eq!(destination, b"/sub/a:b");
                assert_eq!(id, b"i\\d");
            }
            other => panic!("{other:?}"),
        }
        let h = [Header::new(b"id", b"i\\\\d")];
        let f = Frame {
            command: Command::Unsubscribe,
            headers: &h,
            body: b"",
            form: HeaderForm::Escaped,
        };
        assert_eq!(
            s.handle_frame(t(1), &f),
            Ok(Some(Event::Unsubscribe { id: &b"i\\d"[..] }))
        );
    }

    #[test]
    fn heart_beats_when_idle_and_timeout_when_silent() {
        let mut s = S::new(SessionId(1), SessionConfig::default(), t(0));
        let h = [
            Header::new(b"accept-version", b"1.2"),
            Header::new(b"heart-beat", b"5000,5000"),
        ];
        s.handle_frame(t(0), &connect_frame(&h)).unwrap();
        drain(&mut s, t(0));
        // Send every 10 s, read timeout 3 x 10 s.
        assert_eq!(s.poll_timeout(), Some(t(10_000)));
        s.handle_timeout(t(9_999));
        assert!(drain(&mut s, t(9_999)).is_empty());
        s.handle_timeout(t(10_000));
        let out = drain(&mut s, t(10_000));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].command, None, "a heart-beat EOL");
        // The host wrote a MESSAGE at 15 s: the next heart-beat is due 10 s later.
        s.on_transmit(t(15_000));
        s.handle_heartbeat(t(15_000));
        assert_eq!(s.poll_timeout(), Some(t(25_000)));
        s.handle_timeout(t(25_000));
        assert_eq!(drain(&mut s, t(25_000)).len(), 1);
        // Client silent since 15 s: closed at 45 s with ERROR "Session closed.".
        assert_eq!(s.poll_timeout(), Some(t(35_000)));
        s.handle_timeout(t(35_000));
        drain(&mut s, t(35_000));
        assert_eq!(s.poll_timeout(), Some(t(45_000)));
        s.handle_timeout(t(45_000));
        let out = drain(&mut s, t(45_000));
        assert_eq!(out.len(), 1);
        assert!(out[0].is(Command::Error));
        assert_eq!(out[0].get("message"), Some("Session closed."));
        assert!(s.is_closed());
        assert_eq!(s.close_reason(), Some(CloseReason::HeartbeatTimeout));
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn no_heart_beats_when_either_side_declines_or_version_1_0() {
        let s = connected(SessionConfig::default());
        assert_eq!(s.poll_timeout(), None);
        let mut s = S::new(SessionId(1), SessionConfig::default(), t(0));
        let h = [Header::new(b"heart-beat", b"1000,1000")];
        s.handle_frame(t(0), &connect_frame(&h)).unwrap();
        let out = drain(&mut s, t(0));
        assert_eq!(out[0].get("version"), Some("1.0"));
        assert_eq!(out[0].get("heart-beat"), None);
        assert_eq!(s.poll_timeout(), None);
        let mut s = S::new(
            SessionId(1),
            SessionConfig {
                heart_beat: (0, 0),
                ..SessionConfig::default()
            },
            t(0),
        );
        let h = [
            Header::new(b"accept-version", b"1.2"),
            Header::new(b"heart-beat", b"1000,1000"),
        ];
        s.handle_frame(t(0), &connect_frame(&h)).unwrap();
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn invalid_heart_beat_header_is_an_error() {
        let mut s = S::new(SessionId(1), SessionConfig::default(), t(0));
        let h = [
            Header::new(b"accept-version", b"1.2"),
            Header::new(b"heart-beat", b"ten,0"),
        ];
        assert_eq!(
            s.handle_frame(t(0), &connect_frame(&h)),
            Err(ProtocolError::InvalidHeader("heart-beat"))
        );
        assert_eq!(
            drain(&mut s, t(0))[0].get("message"),
            Some("Invalid heart-beat header")
        );
    }

    #[test]
    fn connect_timeout_closes_with_error() {
        let mut s = S::new(SessionId(1), SessionConfig::default(), t(1_000));
        assert_eq!(s.poll_timeout(), Some(t(61_000)));
        s.handle_timeout(t(61_000));
        let out = drain(&mut s, t(61_000));
        assert_eq!(
            out[0].get("message"),
            Some("No CONNECT frame received in time")
        );
        assert_eq!(s.close_reason(), Some(CloseReason::ConnectTimeout));
    }

    #[test]
    fn decode_errors_become_error_frames() {
        let mut s = connected(SessionConfig::default());
        s.handle_decode_error(t(1), &DecodeError::InvalidCommand);
        let out = drain(&mut s, t(1));
        assert_eq!(out[0].get("message"), Some("invalid command"));
        assert_eq!(s.close_reason(), Some(CloseReason::DecodeError));
        assert!(s.is_closed());
    }

    #[test]
    fn host_refusal_takes_over_the_frames_receipt() {
        let mut s = connected(SessionConfig::default());
        let h = [
            Header::new(b"destination", b"/nowhere"),
            Header::new(b"receipt", b"r9"),
        ];
        assert_eq!(send(&mut s, t(1), Command::Send, &h), Ok(true));
        s.close_with_error(
            CloseReason::Rejected,
            format_args!("Destination must start with one of: {}", "/pub/"),
        );
        let out = drain(&mut s, t(1));
        assert_eq!(out.len(), 1);
        assert!(out[0].is(Command::Error));
        assert_eq!(
            out[0].get("message"),
            Some("Destination must start with one of: /pub/")
        );
        assert_eq!(out[0].get("receipt-id"), Some("r9"));
    }

    #[test]
    fn withdrawn_receipt_is_not_sent_and_earlier_ones_are() {
        let mut s = connected(SessionConfig::default());
        let h = [
            Header::new(b"destination", b"/sub/a"),
            Header::new(b"receipt", b"kept"),
        ];
        assert_eq!(send(&mut s, t(1), Command::Send, &h), Ok(true));
        let h = [
            Header::new(b"destination", b"/sub/a"),
            Header::new(b"receipt", b"refused"),
        ];
        assert_eq!(send(&mut s, t(1), Command::Send, &h), Ok(true));
        assert!(s.withdraw_receipt());
        // Only the frame being handled can be withdrawn, and only once.
        assert!(!s.withdraw_receipt());
        let out = drain(&mut s, t(1));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].get("receipt-id"), Some("kept"));
        assert!(!s.is_closing());
    }

    /// A session that defers CONNECTED and has read a 1.2 CONNECT the host has not
    /// accepted yet.
    fn deferred() -> S {
        let mut s = S::new(
            SessionId(3),
            SessionConfig {
                defer_connected: true,
                ..SessionConfig::default()
            },
            t(0),
        );
        let h = [Header::new(b"accept-version", b"1.2")];
        s.handle_frame(t(0), &connect_frame(&h)).unwrap();
        s
    }

    #[test]
    fn deferred_connected_waits_for_accept_and_names_the_user() {
        let mut s = deferred();
        assert!(drain(&mut s, t(0)).is_empty());
        assert!(s.set_user(b"alice"));
        assert!(!s.set_user(b"bad\nname"));
        s.accept(t(1));
        let out = drain(&mut s, t(1));
        assert!(out[0].is(Command::Connected));
        assert_eq!(out[0].get("user-name"), Some("alice"));

        let mut s = deferred();
        s.close_with_error(CloseReason::BrokerClosed, CloseReason::BrokerClosed);
        let out = drain(&mut s, t(0));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].get("message"), Some("Connection to broker closed."));
    }

    #[test]
    fn rejected_before_connected_sends_only_the_error() {
        let mut s = deferred();
        let h = [
            Header::new(b"destination", b"/sub/a"),
            Header::new(b"receipt", b"early"),
        ];
        assert_eq!(send(&mut s, t(1), Command::Send, &h), Ok(true));
        assert!(
            drain(&mut s, t(1)).is_empty(),
            "no RECEIPT before CONNECTED"
        );
        // DISCONNECT before CONNECTED: the session ends without a word.
        let h = [Header::new(b"receipt", b"bye")];
        assert_eq!(send(&mut s, t(2), Command::Disconnect, &h), Ok(true));
        let out = drain(&mut s, t(2));
        assert!(out.is_empty(), "{out:?}");
        assert!(s.is_closed());

        let mut s = deferred();
        let h = [
            Header::new(b"destination", b"/sub/a"),
            Header::new(b"receipt", b"early"),
        ];
        assert_eq!(send(&mut s, t(1), Command::Send, &h), Ok(true));
        s.current_receipt = false; // the refusal comes later, not while handling the SEND
        s.close_with_error(CloseReason::Rejected, "Access denied");
        let out = drain(&mut s, t(2));
        assert_eq!(out.len(), 1);
        assert!(out[0].is(Command::Error));
        assert_eq!(out[0].get("message"), Some("Access denied"));
        assert!(s.is_closed());
    }

    #[test]
    fn host_handled_receipts() {
        let mut s = connected(SessionConfig {
            local_receipts: false,
            ..SessionConfig::default()
        });
        let h = [
            Header::new(b"destination", b"/sub/a"),
            Header::new(b"receipt", b"up"),
        ];
        assert_eq!(send(&mut s, t(1), Command::Send, &h), Ok(true));
        assert!(drain(&mut s, t(1)).is_empty());
        assert!(s.queue_receipt(b"local"));
        assert_eq!(drain(&mut s, t(1))[0].get("receipt-id"), Some("local"));
        // DISCONNECT's receipt is always answered locally.
        assert_eq!(
            send(
                &mut s,
                t(2),
                Command::Disconnect,
                &[Header::new(b"receipt", b"d")]
            ),
            Ok(true)
        );
        assert_eq!(drain(&mut s, t(2))[0].get("receipt-id"), Some("d"));
        assert!(s.is_closed());
    }

    #[test]
    fn small_output_buffer_keeps_the_frame_queued() {
        let mut s = S::new(SessionId(1), SessionConfig::default(), t(0));
        s.handle_frame(t(0), &connect_frame(&[])).unwrap();
        let mut tiny = [0u8; 4];
        assert!(matches!(
            s.poll_transmit(t(0), &mut tiny),
            Err(TransmitError(EncodeError::BufferTooSmall { .. }))
        ));
        assert!(drain(&mut s, t(0))[0].is(Command::Connected));
    }

    #[test]
    fn a_session_stays_small() {
        // The server's budget is 8 KiB per idle WebSocket session, buffers included;
        // the session's inline tables must leave most of it to the transport.
        assert!(core::mem::size_of::<Session<32>>() <= 3_300);
        assert!(core::mem::size_of::<Session<8>>() <= 1_700);
        // A host-supplied table leaves only the fixed part (~1 KiB).
        assert!(core::mem::size_of::<Session<0>>() <= 1_100);
    }

    #[test]
    fn a_supplied_table_sets_the_subscription_limit() {
        let mut s: Session<32, InlineTable<2>> = Session::with_table(
            SessionId(1),
            SessionConfig::default(),
            t(0),
            InlineTable::default(),
        );
        let h = [Header::new(b"accept-version", b"1.2")];
        assert!(s.handle_frame(t(0), &connect_frame(&h)).is_ok());
        for id in [&b"a"[..], b"b"] {
            let f = [
                Header::new(b"destination", b"/topic/a"),
                Header::new(b"id", id),
            ];
            assert!(s
                .handle_frame(t(1), &Frame::new(Command::Subscribe, &f, b""))
                .is_ok());
        }
        let f = [
            Header::new(b"destination", b"/topic/a"),
            Header::new(b"id", b"c"),
        ];
        assert_eq!(
            s.handle_frame(t(1), &Frame::new(Command::Subscribe, &f, b""))
                .map(|_| ()),
            Err(ProtocolError::TooManySubscriptions(2))
        );
    }

    #[test]
    fn versions_display_and_parse() {
        assert_eq!(Versions::ALL.to_string(), "1.0,1.1,1.2");
        assert_eq!(
            Versions::parse_accept(b" 1.1 ,junk,1.2"),
            Versions::only(Version::V1_1).with(Version::V1_2)
        );
        assert_eq!(parse_heart_beat(b"10,20"), Some((10, 20)));
        assert_eq!(parse_heart_beat(b"10"), None);
        assert_eq!(parse_heart_beat(b"99999999999,0"), None);
    }
}
