//! The client-facing STOMP session: handshake, version negotiation, heart-beats,
//! receipts, ERROR-then-close and the per-session subscription table.
//!
//! A [`Session`] is driven by its host (a tokio task, an embassy task, a fuzzer):
//!
//! - inputs: [`Session::handle_frame`] for each decoded frame (returns an [`Event`]
//!   for the host to act on: publish, subscribe, ...), [`Session::handle_heartbeat`] /
//!   [`Session::handle_received`] for any other bytes, [`Session::handle_decode_error`],
//!   [`Session::handle_timeout`] when [`Session::poll_timeout`]'s deadline passes,
//!   [`Session::handle_transmitted`] when the host itself wrote to the client (a MESSAGE);
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

mod error;
mod event;
pub(crate) mod heart_beat;
mod receipts;
mod table;
#[cfg(test)]
mod tests;
mod versions;

pub use error::{CloseReason, ProtocolError, TransmitError};
pub use event::{Connect, Event, SessionConfig};
pub use heart_beat::{heart_beat_after, negotiate_heart_beat, parse_heart_beat};
pub use table::{AckMode, HostTable, InlineTable, SubscriptionTable};
pub use versions::Versions;

use core::fmt::Write as _;
use core::time::Duration;

use crate::codec::{
    Command, DecodeError, EncodeError, EncodeOptions, Frame, Header, HeaderValue, Version,
};
use crate::cursor::{Bytes, Cursor};
use crate::time::{earliest, Instant};

use receipts::{PendingError, ReceiptQueue};

/// Longest subscription id stored in the table.
pub const SUB_ID_MAX: usize = 64;
/// Longest `receipt` value answered (less with a receipt queue under
/// [`RECEIPT_QUEUE_BYTES`]: half of it, less one).
pub const RECEIPT_MAX: usize = 128;
/// Default unescaping space of a session: the longest destination (or other value)
/// that needs unescaping (`\c` etc.); plain destinations of any length are borrowed
/// from the frame instead.
pub const ESCAPED_VALUE_MAX: usize = 256;
/// Default longest ERROR `message` text; longer text is cut at a character boundary.
pub const ERROR_MESSAGE_MAX: usize = 192;
/// Default longest authenticated user name ([`Session::set_user`]).
pub const USER_MAX: usize = 64;
/// An output buffer of this size always fits the session's own frames.
pub const MAX_CONTROL_FRAME: usize = 1024;
/// Default size of a session's RECEIPT queue: each waiting id takes its length plus
/// one byte, so two of the longest fit, or dozens of short ones (a client pipelining
/// frames while CONNECTED waits for the broker).
pub const RECEIPT_QUEUE_BYTES: usize = 2 * (RECEIPT_MAX + 1) + 8;

/// A session's id, chosen by the host; it appears in CONNECTED's `session` header and
/// in resolved user destinations (`/queue/x-user<id>`), always as
/// [`SessionId::HEX_LEN`] lowercase hex digits.
///
/// A host that shares a broker with other instances must choose ids no other instance
/// or client can guess (the std server draws 128 random bits per session): the id is
/// what keeps one session's user queue apart from every other session's.
///
/// Kept as two `u64` halves rather than a `u128`, whose 16-byte alignment would pad
/// every structure that holds an id (a few hundred bytes per idle std session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SessionId {
    // Most significant half first, so the derived order is the number's.
    hi: u64,
    lo: u64,
}

impl SessionId {
    /// The id `n`.
    pub const fn new(n: u128) -> SessionId {
        SessionId {
            hi: (n >> 64) as u64,
            lo: n as u64,
        }
    }

    /// The id as a number.
    pub const fn get(self) -> u128 {
        (self.hi as u128) << 64 | self.lo as u128
    }

    /// Length of the id's text form.
    pub const HEX_LEN: usize = 32;

    /// The id's text form.
    pub fn to_hex(self) -> [u8; Self::HEX_LEN] {
        let mut out = [0u8; Self::HEX_LEN];
        for (i, b) in out.iter_mut().enumerate() {
            let nibble = (self.get() >> (4 * (Self::HEX_LEN - 1 - i))) & 0xf;
            *b = b"0123456789abcdef"[nibble as usize];
        }
        out
    }

    /// Parses the text form ([`SessionId::HEX_LEN`] lowercase hex digits).
    pub fn parse_hex(text: &[u8]) -> Option<SessionId> {
        if text.len() != Self::HEX_LEN {
            return None;
        }
        text.iter()
            .try_fold(0u128, |n, &b| {
                let v = match b {
                    b'0'..=b'9' => b - b'0',
                    b'a'..=b'f' => b - b'a' + 10,
                    _ => return None,
                };
                Some(n << 4 | u128::from(v))
            })
            .map(SessionId::new)
    }
}

impl core::fmt::Display for SessionId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:032x}", self.get())
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

/// One client's STOMP session. `SUBS` is the capacity of the default inline
/// subscription table; a host may supply its own table as `T` instead. The other
/// parameters size the inline buffers, so a microcontroller host can keep a session in
/// a few hundred bytes: `RECEIPTS` bytes of RECEIPT queue ([`RECEIPT_QUEUE_BYTES`]),
/// `SCRATCH` bytes to unescape header values ([`ESCAPED_VALUE_MAX`]), `MESSAGE` bytes
/// of ERROR text ([`ERROR_MESSAGE_MAX`]) and `USER` bytes of user name ([`USER_MAX`]).
/// A value longer than its buffer is a protocol error naming the limit (ERROR text is
/// cut instead).
///
/// Its methods, by what they do:
///
/// - construction: [`Session::new`], [`Session::with_table`];
/// - getters (no effect): [`id`](Session::id), [`version`](Session::version),
///   [`is_connected`](Session::is_connected), [`is_closing`](Session::is_closing),
///   [`is_closed`](Session::is_closed), [`close_reason`](Session::close_reason),
///   [`heart_beat`](Session::heart_beat), [`client_heart_beat`](Session::client_heart_beat),
///   [`user`](Session::user), [`subscription`](Session::subscription),
///   [`subscriptions`](Session::subscriptions),
///   [`subscription_count`](Session::subscription_count);
/// - inputs, what happened: [`handle_frame`](Session::handle_frame),
///   [`handle_heartbeat`](Session::handle_heartbeat),
///   [`handle_received`](Session::handle_received),
///   [`handle_transmitted`](Session::handle_transmitted),
///   [`handle_decode_error`](Session::handle_decode_error),
///   [`handle_timeout`](Session::handle_timeout),
///   [`handle_transport_closed`](Session::handle_transport_closed);
/// - commands, what the host decided: [`accept`](Session::accept),
///   [`set_user`](Session::set_user), [`queue_receipt`](Session::queue_receipt),
///   [`withdraw_receipt`](Session::withdraw_receipt),
///   [`close_with_error`](Session::close_with_error), [`close`](Session::close);
/// - outputs: [`poll_transmit`](Session::poll_transmit) (the session's own frames),
///   [`poll_timeout`](Session::poll_timeout) (the next deadline).
///
/// Call order for each input: the `handle_*` call, then any commands the host makes
/// about that input (a refusal must come before the next `handle_frame`, because
/// [`withdraw_receipt`](Session::withdraw_receipt) and
/// [`close_with_error`](Session::close_with_error) act on the frame being handled),
/// then [`poll_transmit`](Session::poll_transmit) until `None`, then
/// [`poll_timeout`](Session::poll_timeout) to re-arm the host's timer.
pub struct Session<
    const SUBS: usize = 32,
    T: SubscriptionTable = InlineTable<SUBS>,
    const RECEIPTS: usize = { RECEIPT_QUEUE_BYTES },
    const SCRATCH: usize = { ESCAPED_VALUE_MAX },
    const MESSAGE: usize = { ERROR_MESSAGE_MAX },
    const USER: usize = { USER_MAX },
> {
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
    receipts: ReceiptQueue<RECEIPTS>,
    /// The frame being handled pushed the newest receipt (a later ERROR takes it).
    current_receipt: bool,
    error: Option<PendingError<MESSAGE>>,
    close_reason: Option<CloseReason>,
    user: Bytes<USER>,
    subs: T,
    scratch: [u8; SCRATCH],
}

impl<
        const SUBS: usize,
        T: SubscriptionTable,
        const RECEIPTS: usize,
        const SCRATCH: usize,
        const MESSAGE: usize,
        const USER: usize,
    > core::fmt::Debug for Session<SUBS, T, RECEIPTS, SCRATCH, MESSAGE, USER>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("version", &self.version)
            .field("close_reason", &self.close_reason)
            .finish_non_exhaustive()
    }
}

/// A SUBSCRIBE's `ack` mode (absent: `auto`).
fn ack_mode(frame: &Frame<'_>) -> Result<AckMode, ProtocolError> {
    match frame.ack() {
        None => Ok(AckMode::Auto),
        Some(v) => v
            .as_plain()
            .and_then(AckMode::parse)
            .ok_or(ProtocolError::InvalidHeader("ack")),
    }
}

/// Scratch bytes `v` needs: none when it is borrowed as it is.
fn needs_scratch(v: HeaderValue<'_>) -> usize {
    match v.as_plain() {
        Some(_) => 0,
        None => v.unescaped_len(),
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

impl<
        const SUBS: usize,
        T: SubscriptionTable,
        const RECEIPTS: usize,
        const SCRATCH: usize,
        const MESSAGE: usize,
        const USER: usize,
    > Session<SUBS, T, RECEIPTS, SCRATCH, MESSAGE, USER>
{
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
            receipts: ReceiptQueue::EMPTY,
            current_receipt: false,
            error: None,
            close_reason: None,
            user: Bytes::EMPTY,
            subs: table,
            scratch: [0; SCRATCH],
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
    /// longer than `USER` bytes ([`USER_MAX`] by default) are refused with `false`.
    pub fn set_user(&mut self, name: &[u8]) -> bool {
        if name.len() > USER || name.iter().any(|&b| b == b'\n' || b == b'\r') {
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
    pub fn handle_received(&mut self, now: Instant) {
        self.last_rx = self.last_rx.max(now);
    }

    /// A heart-beat EOL arrived.
    pub fn handle_heartbeat(&mut self, now: Instant) {
        self.handle_received(now);
    }

    /// Notes that the host wrote bytes to the client at `now` (a MESSAGE, a relayed
    /// frame), so no heart-beat is due until the write side is idle again.
    pub fn handle_transmitted(&mut self, now: Instant) {
        self.last_tx = self.last_tx.max(now);
        self.heartbeat_pending = false;
    }

    /// The stream could not be decoded: ERROR naming the problem, then close.
    pub fn handle_decode_error(&mut self, now: Instant, err: &DecodeError) {
        self.handle_received(now);
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
            // The frame's receipt stays the newest in the queue and becomes `receipt-id`.
            receipt: self.current_receipt,
            versions: None,
        };
        let mut c = Cursor::new(&mut err.message.buf);
        let _ = write!(c, "{}", message);
        let n = c.finish_truncated().len();
        err.message.set_len(n);
        self.current_receipt = false;
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
        self.receipts.pop_back();
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
        self.handle_received(now);
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
                        let max = ReceiptQueue::<RECEIPTS>::ID_MAX;
                        if r.set(receipt).is_none() || r.get().len() > max {
                            return Err(self.fail(ProtocolError::HeaderTooLong("receipt", max)));
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
        if let (ProtocolError::UnsupportedVersion(v), Some(err)) = (e, self.error.as_mut()) {
            err.versions = Some(v);
        }
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
                self.fits_scratch(need("destination")?, 0, "destination")?;
            }
            Command::Subscribe => {
                let destination = need("destination")?;
                let id = match frame.id() {
                    Some(id) => id,
                    // 1.0 makes the id optional: the destination names the subscription.
                    None if self.version == Version::V1_0 => need("destination")?,
                    None => return Err(ProtocolError::MissingHeader(cmd, "id")),
                };
                let ack = ack_mode(frame)?;
                let mut sub_id = Bytes::<SUB_ID_MAX>::EMPTY;
                sub_id
                    .set(id)
                    .ok_or(ProtocolError::HeaderTooLong("id", SUB_ID_MAX))?;
                if self.subscription(sub_id.get()).is_some() {
                    return Err(ProtocolError::DuplicateSubscription);
                }
                // The event carries the id from the table, or (a host table that
                // keeps ids elsewhere) unescaped behind the destination in scratch.
                let id_room = match self.subs.get(sub_id.get()) {
                    Some(_) => 0,
                    None => needs_scratch(id),
                };
                self.fits_scratch(destination, id_room, "destination")?;
                if !self.subs.insert(sub_id.get(), ack) {
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
                    .copy_unescaped(&mut self.scratch[..SUB_ID_MAX.min(SCRATCH)])
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
                self.fits_scratch(need(name)?, 0, name)?;
            }
            Command::Begin | Command::Commit | Command::Abort => {
                self.fits_scratch(need("transaction")?, 0, "transaction")?;
            }
            Command::Disconnect => {}
        }
        Ok(cmd)
    }

    /// Refuses a value whose unescaped form (plus `more` bytes) does not fit the
    /// scratch space the event is built in.
    fn fits_scratch(
        &self,
        v: HeaderValue<'_>,
        more: usize,
        name: &'static str,
    ) -> Result<(), ProtocolError> {
        if needs_scratch(v) + more > SCRATCH {
            return Err(ProtocolError::HeaderTooLong(
                name,
                SCRATCH.saturating_sub(more),
            ));
        }
        Ok(())
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
                    common = common.without(v);
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
                let id_value = frame.id().or_else(|| frame.destination());
                // Checked by `check_frame` already.
                let ack = ack_mode(frame).unwrap_or_default();
                let room = frame.destination().map_or(0, needs_scratch);
                let (dest_room, id_room) = scratch.split_at_mut(room.min(SCRATCH));
                let destination = value(b"destination", dest_room);
                // The newest entry with this id is the one just inserted.
                let sub = self
                    .subs
                    .iter()
                    .find(|(id, _)| id_value.is_some_and(|v| v.eq_bytes(id)));
                let id = match sub {
                    Some((id, _)) => id,
                    // A host table that keeps ids elsewhere: the frame's own.
                    None => id_value.map_or(&b""[..], |v| plain(v, id_room, "id").unwrap_or(b"")),
                };
                Event::Subscribe {
                    id,
                    destination,
                    ack,
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
            && self.receipts.is_empty()
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
                    self.write_interval
                        .map(|w| self.last_tx + heart_beat::heart_beat_after(w))
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
                    if now >= self.last_tx + heart_beat::heart_beat_after(w) {
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
        let error_receipt = self.error.as_ref().is_some_and(|e| e.receipt);
        if !self.connected_sent && !self.connected_pending && self.state != State::AwaitingAccept {
            // Closed before CONNECTED: receipts for frames sent meanwhile would break
            // the CONNECTED-first rule, and the session is over anyway. The ERROR's
            // own `receipt-id` stays.
            if error_receipt {
                self.receipts.keep_last();
            } else {
                self.receipts.clear();
            }
            self.finish_if_drained();
        }
        let n = if self.connected_pending {
            let n = self.encode_connected(out)?;
            self.connected_pending = false;
            self.connected_sent = true;
            n
        } else if let Some(id) = self.receipts.front().filter(|_| {
            self.state != State::AwaitingAccept && !(error_receipt && self.receipts.is_single())
        }) {
            let headers = [Header::new(b"receipt-id", id)];
            let n = self.encode(&Frame::new(Command::Receipt, &headers, b""), out)?;
            self.receipts.pop_front();
            n
        } else if let Some(err) = &self.error {
            let mut headers = [
                Header::new(b"message", err.message.get()),
                Header::EMPTY,
                Header::EMPTY,
            ];
            let mut count = 1;
            if let Some(r) = self.receipts.front().filter(|_| err.receipt) {
                headers[count] = Header::new(b"receipt-id", r);
                count += 1;
            }
            let mut listed = [0u8; 16];
            if let Some(v) = err.versions {
                let mut c = Cursor::new(&mut listed);
                let _ = write!(c, "{v}");
                let n = c.finish_truncated().len();
                headers[count] = Header::new(b"version", &listed[..n]);
                count += 1;
            }
            let n = self.encode(&Frame::new(Command::Error, &headers[..count], b""), out)?;
            self.receipts.clear();
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
        self.handle_transmitted(now);
        self.finish_if_drained();
        Ok(Some(n))
    }

    fn encode(&self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, TransmitError> {
        crate::codec::encode(frame, EncodeOptions::new(self.version), out).map_err(TransmitError)
    }

    fn encode_connected(&self, out: &mut [u8]) -> Result<usize, TransmitError> {
        let mut hb = [0u8; heart_beat::HEART_BEAT_VALUE_MAX];
        let hb = heart_beat::format_heart_beat(self.config.heart_beat, &mut hb);
        let sid = self.id.to_hex();
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
        headers[n] = Header::new(b"session", &sid);
        n += 1;
        if let Some(u) = self.user() {
            headers[n] = Header::new(b"user-name", u);
            n += 1;
        }
        self.encode(&Frame::new(Command::Connected, &headers[..n], b""), out)
    }
}
