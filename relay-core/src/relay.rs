//! Relaying client frames to an external broker over an [`Upstream`] connection, in
//! the three layouts of the server's relay mode.
//!
//! - **Per-session** ([`ClientRelay`], Spring's `StompBrokerRelay`): one upstream
//!   connection per client session, opened with the relay's credentials (the client's
//!   login/passcode never go up; `host` is the configured virtual host). Frames for
//!   broker destinations are rewritten ([`relay_frame`]: destination mapped by the
//!   [`Dialect`], Artemis routing header added, everything else, `content-length`
//!   included, untouched) and either written at once or, before the broker's
//!   CONNECTED, held (bounded by [`ClientRelay::max_held`]; beyond it the client gets
//!   an ERROR rather than silently losing frames) and flushed on
//!   [`crate::upstream::UpstreamEvent::Connected`]. Frames the server handles locally call
//!   [`ClientRelay::on_local_frame`], which sends a heart-beat upstream in lieu when
//!   nothing else went up lately. A broker ERROR or a lost connection ends the client
//!   session with `Connection to broker closed.`.
//! - **System session**: an [`Upstream`] with reconnect (heart-beat 10000,10000) and
//!   the system credentials, carrying what the application publishes
//!   ([`relay_frame`] on a SEND); its [`crate::upstream::UpstreamEvent`]s are the broker's availability.
//! - **Shared** ([`SharedSubscriptions`], beyond Spring): one upstream connection per
//!   server; one upstream SUBSCRIBE per distinct client destination, reference
//!   counted, UNSUBSCRIBE when the last local subscriber leaves; MESSAGEs are mapped
//!   back by their upstream subscription id to the client destination and fanned out
//!   locally (e.g. with [`crate::broker::SimpleBroker`]); after a reconnect
//!   [`SharedSubscriptions::iter`] lists what to subscribe again.
//!
//! Invariants: every rewritten frame keeps the client's header order and bytes except
//! the destination; nothing is written upstream before CONNECTED; held bytes never
//! exceed the bound; nothing here allocates.

use crate::broker::StoreError;
use crate::codec::{Command, EncodeError, EncodeOptions, Frame, Header, HeaderForm, Version};
use crate::cursor::{push_escaped, BufferTooSmall, Bytes, Cursor};
use crate::dialect::{Dialect, DialectError};
use crate::time::Instant;
use crate::upstream::{Upstream, UpstreamConfig};

/// The ERROR `message` for client frames while the broker is unavailable.
pub const BROKER_NOT_AVAILABLE: &str = "Broker not available.";
/// The ERROR `message` when a client's broker connection ends.
pub const BROKER_CLOSED: &str = "Connection to broker closed.";

/// Why a client frame could not be relayed. `Display` is the ERROR `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayError {
    /// Frames held before the broker's CONNECTED would exceed the bound (bytes).
    HoldFull(usize),
    /// The upstream connection is gone.
    BrokerClosed,
    /// The destination could not be mapped.
    Dialect(DialectError),
    /// The rewritten frame could not be encoded (or did not fit `out`).
    Encode(EncodeError),
    /// Header storage or scratch space too small.
    BufferTooSmall,
}

impl core::fmt::Display for RelayError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RelayError::HoldFull(n) => write!(
                f,
                "Too many frames before the broker answered (more than {} bytes)",
                n
            ),
            RelayError::BrokerClosed => f.write_str(BROKER_CLOSED),
            RelayError::Dialect(e) => e.fmt(f),
            RelayError::Encode(e) => e.fmt(f),
            RelayError::BufferTooSmall => f.write_str("Frame too large to relay"),
        }
    }
}

impl From<DialectError> for RelayError {
    fn from(e: DialectError) -> Self {
        RelayError::Dialect(e)
    }
}

impl From<EncodeError> for RelayError {
    fn from(e: EncodeError) -> Self {
        RelayError::Encode(e)
    }
}

impl From<BufferTooSmall> for RelayError {
    fn from(_: BufferTooSmall) -> Self {
        RelayError::BufferTooSmall
    }
}

/// `frame` with its `destination` value replaced by the plain `destination` (escaped
/// into `scratch` when the frame's headers are escaped) and `extra` appended; header
/// order and all other bytes are kept. `headers` must hold the frame's headers plus 1.
pub fn with_destination<'a>(
    frame: &Frame<'a>,
    destination: &[u8],
    extra: Option<Header<'static>>,
    scratch: &'a mut [u8],
    headers: &'a mut [Header<'a>],
) -> Result<Frame<'a>, BufferTooSmall> {
    let escaped = frame.form == HeaderForm::Escaped;
    let mut c = Cursor::new(scratch);
    if escaped {
        push_escaped(&mut c, destination);
    } else {
        c.push(destination);
    }
    let dest: &'a [u8] = c.finish()?;
    let mut n = 0;
    let mut replaced = false;
    for h in frame.headers {
        let slot = headers.get_mut(n).ok_or(BufferTooSmall)?;
        let is_dest =
            !replaced && crate::codec::HeaderValue::new(h.name, escaped).eq_bytes(b"destination");
        *slot = if is_dest {
            Header::new(h.name, dest)
        } else {
            *h
        };
        replaced |= is_dest;
        n += 1;
    }
    if !replaced {
        *headers.get_mut(n).ok_or(BufferTooSmall)? = Header::new(b"destination", dest);
        n += 1;
    }
    if let Some(x) = extra {
        *headers.get_mut(n).ok_or(BufferTooSmall)? = x;
        n += 1;
    }
    let headers: &'a [Header<'a>] = headers;
    Ok(Frame {
        command: frame.command,
        headers: &headers[..n],
        body: frame.body,
        form: frame.form,
    })
}

/// Encodes a client frame for the broker into `out`: SEND and SUBSCRIBE get their
/// client destination `client_dest` (plain; already resolved for user destinations)
/// mapped by `dialect`; other frames pass through as they are. Encoded for the
/// broker's `version` without adding `content-length`. Mapped destinations are limited
/// to 512 bytes and frames to 72 headers (longer: an error, never a truncated frame).
pub fn relay_frame(
    frame: &Frame<'_>,
    client_dest: Option<&[u8]>,
    dialect: Dialect,
    version: Version,
    out: &mut [u8],
) -> Result<usize, RelayError> {
    let opts = EncodeOptions::passthrough(version);
    let Some(client_dest) =
        client_dest.filter(|_| matches!(frame.command, Command::Send | Command::Subscribe))
    else {
        return Ok(crate::codec::encode(frame, opts, out)?);
    };
    let mut mapped = [0u8; 512];
    let broker_dest = dialect.to_broker(client_dest, &mut mapped)?;
    let extra = dialect.routing_header(dialect.routing(client_dest));
    let mut scratch = [0u8; 1024];
    let mut headers = [Header::EMPTY; 72];
    let f = with_destination(frame, broker_dest, extra, &mut scratch, &mut headers)?;
    Ok(crate::codec::encode(&f, opts, out)?)
}

/// A broker MESSAGE rewritten for the client: its destination mapped back with
/// `dialect` (or replaced by `client_dest` when the host knows the subscription's own
/// spelling). `scratch` holds the destination (2 x its length suffices).
pub fn message_to_client<'a>(
    message: &Frame<'a>,
    client_dest: Option<&[u8]>,
    dialect: Dialect,
    broker_prefixes: &[&str],
    scratch: &'a mut [u8],
    headers: &'a mut [Header<'a>],
) -> Result<Frame<'a>, RelayError> {
    let mut mapped = [0u8; 512];
    let dest: &[u8] = match client_dest {
        Some(d) => d,
        None => {
            let mut raw = [0u8; 512];
            let broker_dest = match message.destination() {
                Some(v) => v
                    .copy_unescaped(&mut raw)
                    .map_err(|_| RelayError::BufferTooSmall)?,
                None => b"",
            };
            dialect.to_client(broker_dest, broker_prefixes, &mut mapped)?
        }
    };
    Ok(with_destination(message, dest, None, scratch, headers)?)
}

/// What to do with the bytes [`ClientRelay::forward`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Write them upstream now.
    Write(usize),
    /// Keep them, in order, behind earlier held bytes; write them all on
    /// [`crate::upstream::UpstreamEvent::Connected`] (then call [`ClientRelay::on_flushed`]).
    Hold(usize),
}

/// The per-session relay: one client's upstream connection.
#[derive(Debug)]
pub struct ClientRelay {
    up: Upstream,
    held: usize,
    max_held: usize,
}

impl ClientRelay {
    /// Default bound on bytes held before CONNECTED.
    pub const DEFAULT_MAX_HELD: usize = 64 * 1024;

    /// A relay connection for one client; `config.reconnect` is ignored (a client's
    /// broker connection is never re-established behind its back).
    pub fn new(config: UpstreamConfig, max_held: usize, now: Instant) -> Self {
        ClientRelay {
            up: Upstream::new(
                UpstreamConfig {
                    reconnect: None,
                    ..config
                },
                now,
            ),
            held: 0,
            max_held,
        }
    }

    /// The upstream connection, to drive (connect, frames, timers, transmit).
    pub fn upstream(&mut self) -> &mut Upstream {
        &mut self.up
    }

    /// The bound on held bytes.
    pub fn max_held(&self) -> usize {
        self.max_held
    }

    /// Bytes currently held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Encodes a client frame for the broker (see [`relay_frame`]) into `out` and says
    /// whether to write it now or hold it until CONNECTED.
    pub fn forward(
        &mut self,
        now: Instant,
        frame: &Frame<'_>,
        client_dest: Option<&[u8]>,
        dialect: Dialect,
        out: &mut [u8],
    ) -> Result<Forward, RelayError> {
        if self.up.is_closed() || self.up.should_close_transport() {
            return Err(RelayError::BrokerClosed);
        }
        let n = relay_frame(frame, client_dest, dialect, self.up.version(), out)?;
        if self.up.is_connected() && self.held == 0 {
            self.up.handle_transmitted(now);
            return Ok(Forward::Write(n));
        }
        if self.held + n > self.max_held {
            return Err(RelayError::HoldFull(self.max_held));
        }
        self.held += n;
        Ok(Forward::Hold(n))
    }

    /// The host wrote all held bytes upstream.
    pub fn on_flushed(&mut self, now: Instant) {
        if self.held > 0 {
            self.held = 0;
            self.up.handle_transmitted(now);
        }
    }

    /// A client frame was handled locally (application destination): if nothing went
    /// upstream for half a heart-beat interval, send a heart-beat in lieu so the
    /// broker sees the session alive.
    pub fn on_local_frame(&mut self, now: Instant) {
        if let Some(w) = self.up.write_interval() {
            if now >= self.up.last_transmit() + w / 2 {
                self.up.queue_heartbeat();
            }
        }
    }

    /// The client left: DISCONNECT upstream (or just end if not connected).
    pub fn disconnect(&mut self) {
        self.up.disconnect();
    }
}

/// The upstream subscription id for shared subscription number `n`: `sr-<n>`.
fn write_id(n: u64, out: &mut [u8; 24]) -> &[u8] {
    let mut c = Cursor::new(out);
    c.push(b"sr-").push_u64(n);
    c.finish_truncated()
}

#[derive(Clone, Copy)]
struct SharedEntry<const D: usize> {
    destination: Bytes<D>,
    id: u64,
    refs: u32,
}

/// Shared-mode registry: one upstream subscription per distinct client destination,
/// with `N` destinations of up to `D` bytes inline.
pub struct SharedSubscriptions<const N: usize, const D: usize = 128> {
    entries: [Option<SharedEntry<D>>; N],
    next_id: u64,
}

impl<const N: usize, const D: usize> Default for SharedSubscriptions<N, D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const D: usize> SharedSubscriptions<N, D> {
    /// An empty registry.
    pub const fn new() -> Self {
        SharedSubscriptions {
            entries: [None; N],
            next_id: 0,
        }
    }

    /// A local subscriber joined `client_dest`. `Ok(Some(id))`: the first one, send an
    /// upstream SUBSCRIBE with this id ([`SharedSubscriptions::subscribe_frame`]).
    pub fn acquire(&mut self, client_dest: &[u8]) -> Result<Option<u64>, StoreError> {
        if let Some(e) = self
            .entries
            .iter_mut()
            .flatten()
            .find(|e| e.destination.get() == client_dest)
        {
            e.refs += 1;
            return Ok(None);
        }
        let mut destination = Bytes::EMPTY;
        destination
            .set_plain(client_dest)
            .ok_or(StoreError::DestinationTooLong(D))?;
        let slot = self
            .entries
            .iter_mut()
            .find(|s| s.is_none())
            .ok_or(StoreError::Full(N))?;
        let id = self.next_id;
        self.next_id += 1;
        *slot = Some(SharedEntry {
            destination,
            id,
            refs: 1,
        });
        Ok(Some(id))
    }

    /// A local subscriber left `client_dest`. `Some(id)`: it was the last one, send
    /// UNSUBSCRIBE for this id ([`SharedSubscriptions::unsubscribe_frame`]).
    pub fn release(&mut self, client_dest: &[u8]) -> Option<u64> {
        let slot = self.entries.iter_mut().find(|s| {
            s.as_ref()
                .is_some_and(|e| e.destination.get() == client_dest)
        })?;
        let e = slot.as_mut()?;
        e.refs -= 1;
        if e.refs == 0 {
            let id = e.id;
            *slot = None;
            Some(id)
        } else {
            None
        }
    }

    /// Local subscribers of `client_dest`.
    pub fn refs(&self, client_dest: &[u8]) -> u32 {
        self.entries
            .iter()
            .flatten()
            .find(|e| e.destination.get() == client_dest)
            .map_or(0, |e| e.refs)
    }

    /// The client destination of a broker MESSAGE's `subscription` header value.
    pub fn destination_of(&self, subscription: &[u8]) -> Option<&[u8]> {
        self.entries
            .iter()
            .flatten()
            .find(|e| {
                let mut buf = [0u8; 24];
                write_id(e.id, &mut buf) == subscription
            })
            .map(|e| e.destination.get())
    }

    /// Every upstream subscription as `(id, client destination)`: what to subscribe
    /// again after a reconnect.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.entries
            .iter()
            .flatten()
            .map(|e| (e.id, e.destination.get()))
    }

    /// Number of upstream subscriptions.
    pub fn len(&self) -> usize {
        self.entries.iter().flatten().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Encodes the upstream SUBSCRIBE for `(id, client_dest)` into `out`.
    pub fn subscribe_frame(
        id: u64,
        client_dest: &[u8],
        dialect: Dialect,
        version: Version,
        out: &mut [u8],
    ) -> Result<usize, RelayError> {
        let mut idb = [0u8; 24];
        let headers = [
            Header::new(b"destination", client_dest),
            Header::new(b"id", write_id(id, &mut idb)),
            Header::new(b"ack", b"auto"),
        ];
        relay_frame(
            &Frame::new(Command::Subscribe, &headers, b""),
            Some(client_dest),
            dialect,
            version,
            out,
        )
    }

    /// Encodes the upstream UNSUBSCRIBE for `id` into `out`.
    pub fn unsubscribe_frame(
        id: u64,
        version: Version,
        out: &mut [u8],
    ) -> Result<usize, RelayError> {
        let mut idb = [0u8; 24];
        let headers = [Header::new(b"id", write_id(id, &mut idb))];
        Ok(crate::codec::encode(
            &Frame::new(Command::Unsubscribe, &headers, b""),
            EncodeOptions::new(version),
            out,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decoded, Decoder, Limits, Status};
    use crate::upstream::{Credentials, Inbound, LossReason, UpstreamEvent};
    use std::string::String;
    use std::vec::Vec;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    const CREDS: Credentials<'static> = Credentials {
        login: Some("relay-user"),
        passcode: Some("relay-pass"),
        virtual_host: None,
        client_id: None,
    };

    /// A scripted broker peer: collects what the relay writes and answers CONNECT.
    struct FakeBroker {
        received: Vec<u8>,
    }

    impl FakeBroker {
        fn frames(&self) -> Vec<String> {
            self.received
                .split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| text(s).trim_start_matches('\n').into())
                .collect()
        }
    }

    fn pump(r: &mut ClientRelay, now: Instant, broker: &mut FakeBroker) {
        let mut buf = [0u8; 1024];
        while let Some(n) = r.upstream().poll_transmit(now, &CREDS, &mut buf).unwrap() {
            broker.received.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn per_session_holds_frames_until_connected_then_flushes_in_order() {
        let mut r = ClientRelay::new(UpstreamConfig::default(), 200, t(0));
        let mut broker = FakeBroker {
            received: Vec::new(),
        };
        let mut held: Vec<u8> = Vec::new();
        let mut out = [0u8; 512];

        // Client's CONNECT (with its own credentials) → upstream connection opens.
        assert_eq!(r.upstream().poll_connect(t(0)), Some(0));
        r.upstream().on_transport_connected(t(1));
        pump(&mut r, t(1), &mut broker);

        // Client frames before the broker's CONNECTED are held, not dropped.
        let h = [
            Header::new(b"destination", b"/sub/chat/room1"),
            Header::new(b"id", b"0"),
            Header::new(b"receipt", b"r1"),
        ];
        let sub = Frame::new(Command::Subscribe, &h, b"");
        match r
            .forward(
                t(2),
                &sub,
                Some(b"/sub/chat/room1"),
                Dialect::RabbitMq,
                &mut out,
            )
            .unwrap()
        {
            Forward::Hold(n) => held.extend_from_slice(&out[..n]),
            other => panic!("{other:?}"),
        }
        let h = [
            Header::new(b"destination", b"/queue/work"),
            Header::new(b"content-type", b"text/plain"),
        ];
        let send = Frame::new(Command::Send, &h, b"hello");
        match r
            .forward(
                t(3),
                &send,
                Some(b"/queue/work"),
                Dialect::RabbitMq,
                &mut out,
            )
            .unwrap()
        {
            Forward::Hold(n) => held.extend_from_slice(&out[..n]),
            other => panic!("{other:?}"),
        }
        // The bound is enforced with an error the client can read.
        let big = Frame::new(Command::Send, &h, &[b'x'; 150]);
        let err = r
            .forward(
                t(3),
                &big,
                Some(b"/queue/work"),
                Dialect::RabbitMq,
                &mut out,
            )
            .unwrap_err();
        assert_eq!(err, RelayError::HoldFull(200));
        assert_eq!(
            std::format!("{}", err),
            "Too many frames before the broker answered (more than 200 bytes)"
        );

        // The broker answers CONNECTED: flush.
        let ch = [
            Header::new(b"version", b"1.2"),
            Header::new(b"heart-beat", b"0,0"),
        ];
        let connected = Frame::new(Command::Connected, &ch, b"");
        assert_eq!(
            r.upstream().handle_frame(t(4), &connected),
            Some(Inbound::Connected(Version::V1_2))
        );
        assert_eq!(r.upstream().poll_event(), Some(UpstreamEvent::Connected));
        broker.received.extend_from_slice(&held);
        r.on_flushed(t(4));
        // Later frames go straight through.
        match r
            .forward(
                t(5),
                &send,
                Some(b"/queue/work"),
                Dialect::RabbitMq,
                &mut out,
            )
            .unwrap()
        {
            Forward::Write(n) => broker.received.extend_from_slice(&out[..n]),
            other => panic!("{other:?}"),
        }

        let frames = broker.frames();
        assert_eq!(
            frames[0],
            "CONNECT\naccept-version:1.1,1.2\nheart-beat:10000,10000\nlogin:relay-user\npasscode:relay-pass\n\n"
        );
        assert_eq!(
            frames[1],
            "SUBSCRIBE\ndestination:/topic/sub.chat.room1\nid:0\nreceipt:r1\n\n"
        );
        assert_eq!(
            frames[2],
            "SEND\ndestination:/queue/work\ncontent-type:text/plain\n\nhello"
        );
        assert_eq!(frames[3], frames[2]);
        assert_eq!(frames.len(), 4);
    }

    #[test]
    fn broker_error_ends_the_client_relay() {
        let mut r = ClientRelay::new(UpstreamConfig::default(), 1024, t(0));
        r.upstream().poll_connect(t(0));
        r.upstream().on_transport_connected(t(0));
        let eh = [Header::new(b"message", b"Access refused")];
        let err = Frame::new(Command::Error, &eh, b"");
        assert!(matches!(
            r.upstream().handle_frame(t(1), &err),
            Some(Inbound::Error(_))
        ));
        assert_eq!(
            r.upstream().poll_event(),
            Some(UpstreamEvent::Lost(LossReason::BrokerError))
        );
        let mut out = [0u8; 256];
        let h = [Header::new(b"destination", b"/sub/a")];
        let send = Frame::new(Command::Send, &h, b"");
        assert_eq!(
            r.forward(t(2), &send, Some(b"/sub/a"), Dialect::ActiveMq, &mut out),
            Err(RelayError::BrokerClosed)
        );
        assert_eq!(
            std::format!("{}", RelayError::BrokerClosed),
            "Connection to broker closed."
        );
        r.upstream().handle_transport_closed(t(3));
        assert!(r.upstream().is_closed());
    }

    #[test]
    fn local_frames_send_a_heart_beat_in_lieu() {
        let mut r = ClientRelay::new(UpstreamConfig::default(), 1024, t(0));
        let mut broker = FakeBroker {
            received: Vec::new(),
        };
        r.upstream().poll_connect(t(0));
        r.upstream().on_transport_connected(t(0));
        pump(&mut r, t(0), &mut broker);
        let ch = [
            Header::new(b"version", b"1.2"),
            Header::new(b"heart-beat", b"0,10000"),
        ];
        r.upstream()
            .handle_frame(t(0), &Frame::new(Command::Connected, &ch, b""));
        broker.received.clear();
        r.on_local_frame(t(1000));
        pump(&mut r, t(1000), &mut broker);
        assert!(broker.received.is_empty(), "something went up recently");
        r.on_local_frame(t(6000));
        pump(&mut r, t(6000), &mut broker);
        assert_eq!(broker.received, b"\n");
    }

    #[test]
    fn messages_map_back_to_the_client_destination() {
        let wire = b"MESSAGE\nsubscription:0\ndestination:/topic/sub.chat.room1\nmessage-id:m-1\ncontent-length:2\nx-k:v\n\nhi\0";
        let mut hs = [Header::EMPTY; 16];
        let Status::Complete((Decoded::Frame(m), _)) =
            Decoder::with_limits(Version::V1_2, Limits::DEFAULT)
                .decode(wire, &mut hs)
                .unwrap()
        else {
            panic!()
        };
        let mut scratch = [0u8; 256];
        let mut headers = [Header::EMPTY; 17];
        let prefixes = ["/sub/", "/topic/", "/queue/"];
        let f = message_to_client(
            &m,
            None,
            Dialect::ActiveMq,
            &prefixes,
            &mut scratch,
            &mut headers,
        )
        .unwrap();
        let mut out = [0u8; 256];
        let n =
            crate::codec::encode(&f, EncodeOptions::passthrough(Version::V1_2), &mut out).unwrap();
        assert_eq!(
            text(&out[..n]),
            "MESSAGE\nsubscription:0\ndestination:/sub/chat/room1\nmessage-id:m-1\ncontent-length:2\nx-k:v\n\nhi\0"
        );
        // The host's own spelling wins when it knows the subscription.
        let mut scratch = [0u8; 256];
        let mut headers = [Header::EMPTY; 17];
        let f = message_to_client(
            &m,
            Some(b"/sub/chat.room1"),
            Dialect::ActiveMq,
            &prefixes,
            &mut scratch,
            &mut headers,
        )
        .unwrap();
        assert!(f.destination().unwrap() == "/sub/chat.room1");
    }

    #[test]
    fn artemis_gets_a_routing_header_and_escaped_destinations_stay_escaped() {
        let h = [Header::new(b"destination", b"/queue/a\\cb")];
        let f = Frame {
            command: Command::Send,
            headers: &h,
            body: b"",
            form: HeaderForm::Escaped,
        };
        let mut out = [0u8; 256];
        let n = relay_frame(
            &f,
            Some(b"/queue/a:b"),
            Dialect::Artemis,
            Version::V1_2,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            text(&out[..n]),
            "SEND\ndestination:/queue/a\\cb\ndestination-type:ANYCAST\n\n\0"
        );
        // Non-destination frames pass through untouched.
        let h = [Header::new(b"id", b"7"), Header::new(b"receipt", b"x")];
        let n = relay_frame(
            &Frame::new(Command::Unsubscribe, &h, b""),
            None,
            Dialect::RabbitMq,
            Version::V1_2,
            &mut out,
        )
        .unwrap();
        assert_eq!(text(&out[..n]), "UNSUBSCRIBE\nid:7\nreceipt:x\n\n\0");
    }

    #[test]
    fn shared_mode_subscribes_once_per_destination_and_resubscribes() {
        let mut s = SharedSubscriptions::<4, 64>::new();
        assert_eq!(s.acquire(b"/sub/a"), Ok(Some(0)));
        assert_eq!(s.acquire(b"/sub/a"), Ok(None));
        assert_eq!(s.acquire(b"/sub/b"), Ok(Some(1)));
        assert_eq!(s.refs(b"/sub/a"), 2);
        assert_eq!(s.destination_of(b"sr-1"), Some(&b"/sub/b"[..]));
        assert_eq!(s.destination_of(b"sr-9"), None);
        assert_eq!(s.release(b"/sub/a"), None);
        assert_eq!(s.release(b"/sub/a"), Some(0));
        assert_eq!(s.release(b"/sub/a"), None);
        assert_eq!(s.len(), 1);

        let mut out = [0u8; 256];
        let n = SharedSubscriptions::<4, 64>::subscribe_frame(
            1,
            b"/sub/b",
            Dialect::ActiveMq,
            Version::V1_2,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            text(&out[..n]),
            "SUBSCRIBE\ndestination:/topic/sub.b\nid:sr-1\nack:auto\n\n\0"
        );
        let n =
            SharedSubscriptions::<4, 64>::unsubscribe_frame(1, Version::V1_2, &mut out).unwrap();
        assert_eq!(text(&out[..n]), "UNSUBSCRIBE\nid:sr-1\n\n\0");

        // After a reconnect every remaining destination is subscribed again.
        s.acquire(b"/queue/w").unwrap();
        let mut again: Vec<(u64, Vec<u8>)> = s.iter().map(|(i, d)| (i, d.to_vec())).collect();
        again.sort();
        assert_eq!(again, [(1, b"/sub/b".to_vec()), (2, b"/queue/w".to_vec())]);

        s.acquire(b"/x/1").unwrap();
        s.acquire(b"/x/2").unwrap();
        assert_eq!(s.acquire(b"/x/3"), Err(StoreError::Full(4)));
        assert_eq!(
            s.acquire(&[b'a'; 65]),
            Err(StoreError::DestinationTooLong(64))
        );
    }
}
