//! One STOMP connection to an external broker, as a sans-IO client state machine:
//! CONNECT with the relay's credentials, heart-beats negotiated with the broker,
//! CONNECTED wait timeout, and (for long-lived connections) reconnection with
//! exponential backoff and jitter across a list of broker addresses.
//!
//! Driving it: when [`Upstream::poll_connect`] names an address index, the host opens a
//! transport to it and calls [`Upstream::on_transport_connected`] (or
//! [`Upstream::handle_transport_closed`] if that failed). Bytes from the broker go to
//! [`Upstream::handle_frame`] / [`Upstream::handle_heartbeat`]; [`Upstream::poll_transmit`]
//! gives CONNECT, heart-beat EOLs and DISCONNECT; [`Upstream::poll_timeout`] /
//! [`Upstream::handle_timeout`] run the timers; [`Upstream::poll_event`] reports
//! availability changes; [`Upstream::should_close_transport`] tells the host to drop a
//! transport the state machine gave up on (silent broker, ERROR, refused CONNECT).
//! Frames the host forwards itself (see [`crate::relay`]) are written only while
//! [`Upstream::is_connected`], and reported with [`Upstream::handle_transmitted`].
//!
//! Invariants: nothing but CONNECT is transmitted before the broker's CONNECTED; a
//! reconnecting upstream never has two transports (a new address is only named after
//! the previous transport was reported closed); delays come from a deterministic
//! generator seeded by the host ([`UpstreamConfig::jitter_seed`]), so tests replay exactly.

use core::time::Duration;

use crate::codec::{Command, EncodeError, EncodeOptions, Frame, Header, Version};
use crate::dialect::Dialect;
use crate::session::heart_beat::{format_heart_beat, heart_beat_after, HEART_BEAT_VALUE_MAX};
use crate::session::{negotiate_heart_beat, parse_heart_beat};
use crate::time::{earliest, Instant};

/// Exponential backoff between reconnection rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failed round.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before round `round` (1-based) with "equal jitter": half the
    /// exponential delay plus a random part of the other half, from `random`.
    pub fn delay(&self, round: u32, random: u64) -> Duration {
        let exp = self
            .initial
            .checked_mul(1u32 << round.saturating_sub(1).min(20))
            .unwrap_or(self.max)
            .min(self.max);
        let ms = exp.as_millis() as u64;
        let half = ms / 2;
        Duration::from_millis(half + if half == 0 { 0 } else { random % (half + 1) })
    }
}

/// The `receipt` of our DISCONNECT.
pub const DISCONNECT_RECEIPT: &[u8] = b"stomp-relay-disconnect";
/// How long to wait for the broker's RECEIPT of our DISCONNECT before closing anyway.
pub const DISCONNECT_RECEIPT_WAIT: Duration = Duration::from_secs(5);

/// Numeric settings of an upstream connection (strings come with each call that needs
/// them, so the state machine holds no borrows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Our heart-beat `(cx, cy)` toward the broker (Spring's system session: 10000,10000).
    pub heart_beat: (u32, u32),
    /// The broker may stay silent this many negotiated intervals.
    pub read_timeout_factor: u32,
    /// How long to wait for CONNECTED after sending CONNECT.
    pub connected_timeout: Duration,
    /// Reconnect after losing the broker (`None`: the connection ends for good, as a
    /// per-session relay connection does).
    pub reconnect: Option<Backoff>,
    /// Number of broker addresses to rotate through (at least 1).
    pub addresses: usize,
    /// Seed of the jitter generator.
    pub jitter_seed: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            heart_beat: (10_000, 10_000),
            read_timeout_factor: 3,
            connected_timeout: Duration::from_secs(60),
            reconnect: Some(Backoff::default()),
            addresses: 1,
            jitter_seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

/// The strings of an upstream CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Credentials<'c> {
    /// `login` (replaces whatever the client sent).
    pub login: Option<&'c str>,
    /// `passcode`.
    pub passcode: Option<&'c str>,
    /// `host`: the broker's virtual host (RabbitMQ vhost); none sent when `None`.
    pub virtual_host: Option<&'c str>,
    /// `client-id`: the client's own id, which ActiveMQ keys durable topic subscriptions
    /// on (a per-session relay passes the client's through); none sent when `None`.
    pub client_id: Option<&'c str>,
}

/// Why the broker connection was lost. `Display` is fit for a log line; the client
/// sees [`crate::session::CloseReason::BrokerClosed`]'s text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LossReason {
    /// The transport closed or could not be opened.
    TransportClosed,
    /// No CONNECTED within the configured time.
    ConnectedTimeout,
    /// Nothing heard from the broker within the read timeout.
    HeartbeatTimeout,
    /// The broker sent ERROR.
    BrokerError,
    /// The broker sent something other than CONNECTED/ERROR first, or an invalid
    /// `heart-beat`/`version`.
    ProtocolError,
    /// We disconnected on purpose.
    Disconnected,
}

impl core::fmt::Display for LossReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            LossReason::TransportClosed => "transport closed",
            LossReason::ConnectedTimeout => "no CONNECTED from broker in time",
            LossReason::HeartbeatTimeout => "broker heart-beat timeout",
            LossReason::BrokerError => "broker sent ERROR",
            LossReason::ProtocolError => "broker protocol error",
            LossReason::Disconnected => "disconnected",
        })
    }
}

/// Availability changes, from [`Upstream::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum UpstreamEvent {
    /// CONNECTED received: the broker is available; held frames may be flushed (and a
    /// shared relay resubscribes).
    Connected,
    /// The connection is gone; the broker counts as unavailable until `Connected`.
    Lost(LossReason),
}

/// A broker frame the host must act on, from [`Upstream::handle_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// CONNECTED: now connected with this version.
    Connected(Version),
    /// MESSAGE for the host to deliver (see [`crate::relay`] for mapping it back).
    Message(Frame<'a>),
    /// RECEIPT with its `receipt-id`.
    Receipt(Frame<'a>),
    /// ERROR: the connection is lost afterwards.
    Error(Frame<'a>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting until `until` before naming the next address.
    Waiting {
        until: Instant,
    },
    /// The host is opening a transport.
    Opening,
    /// Transport open; CONNECT queued or sent at `since`.
    AwaitingConnected {
        since: Instant,
    },
    Connected,
    /// The host must close the transport; then reconnect or end.
    Failing,
    /// DISCONNECT queued or sent; waiting for its RECEIPT (bounded by
    /// [`DISCONNECT_RECEIPT_WAIT`]), then for the transport to close.
    Disconnecting,
    /// Over for good.
    Closed,
}

/// One upstream broker connection.
#[derive(Debug)]
pub struct Upstream {
    config: UpstreamConfig,
    state: State,
    address: usize,
    /// Consecutive failed attempts since the last CONNECTED.
    failures: u32,
    rng: u64,
    version: Version,
    /// The dialect the broker's CONNECTED `server` header names, if it names one.
    broker_dialect: Option<Dialect>,
    write_interval: Option<Duration>,
    read_timeout: Option<Duration>,
    last_rx: Instant,
    last_tx: Instant,
    connect_pending: bool,
    heartbeat_pending: bool,
    disconnect_pending: bool,
    /// When DISCONNECT went out; `None` once its RECEIPT arrived or waiting ended.
    disconnect_sent: Option<Instant>,
    events: [Option<UpstreamEvent>; 4],
}

impl Upstream {
    /// A connection that will name its first address right away.
    pub fn new(config: UpstreamConfig, now: Instant) -> Self {
        Upstream {
            config,
            state: State::Waiting { until: now },
            address: 0,
            failures: 0,
            rng: config.jitter_seed | 1,
            version: Version::V1_2,
            broker_dialect: None,
            write_interval: None,
            read_timeout: None,
            last_rx: now,
            last_tx: now,
            connect_pending: false,
            heartbeat_pending: false,
            disconnect_pending: false,
            disconnect_sent: None,
            events: [None; 4],
        }
    }

    /// Whether CONNECTED was received and the connection is up: forwarded frames may
    /// be written now.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Whether this connection is over for good (no reconnect configured, or
    /// [`Upstream::disconnect`] completed).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the host must close the current transport (then call
    /// [`Upstream::handle_transport_closed`]).
    pub fn should_close_transport(&self) -> bool {
        matches!(self.state, State::Failing)
            || (self.state == State::Disconnecting
                && !self.disconnect_pending
                && self.disconnect_sent.is_none())
    }

    /// The broker's negotiated version (1.2 until CONNECTED).
    pub fn version(&self) -> Version {
        self.version
    }

    /// The dialect of the broker, known from its last CONNECTED's `server` header
    /// ([`Dialect::from_server`]); `None` before CONNECTED or for a broker not known.
    pub fn broker_dialect(&self) -> Option<Dialect> {
        self.broker_dialect
    }

    /// The address index in use (or next to be tried).
    pub fn address(&self) -> usize {
        self.address
    }

    /// Consecutive failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// If a transport should be opened now, its address index.
    pub fn poll_connect(&mut self, now: Instant) -> Option<usize> {
        match self.state {
            State::Waiting { until } if now >= until => {
                self.state = State::Opening;
                Some(self.address)
            }
            _ => None,
        }
    }

    /// The transport to [`Upstream::address`] is open: CONNECT is queued.
    pub fn on_transport_connected(&mut self, now: Instant) {
        if self.state == State::Opening {
            self.state = State::AwaitingConnected { since: now };
            self.connect_pending = true;
            self.last_rx = now;
            self.last_tx = now;
        }
    }

    /// The transport closed (or could not be opened): schedules the next attempt, or
    /// ends the connection when reconnecting is off.
    pub fn handle_transport_closed(&mut self, now: Instant) {
        let was = self.state;
        match was {
            State::Closed | State::Waiting { .. } => return,
            State::Disconnecting => {
                self.state = State::Closed;
                return;
            }
            State::Connected => self.push_event(UpstreamEvent::Lost(LossReason::TransportClosed)),
            State::Opening | State::AwaitingConnected { .. } => {
                self.push_event(UpstreamEvent::Lost(LossReason::TransportClosed))
            }
            State::Failing => {}
        }
        self.connect_pending = false;
        self.heartbeat_pending = false;
        let Some(backoff) = self.config.reconnect else {
            self.state = State::Closed;
            return;
        };
        if was != State::Connected {
            self.failures = self.failures.saturating_add(1);
        }
        let n = self.config.addresses.max(1);
        if was != State::Connected {
            self.address = (self.address + 1) % n;
        }
        // Try each address of a round at once; wait between rounds.
        let round_done = self.failures > 0 && (self.failures as usize).is_multiple_of(n);
        let delay = if round_done {
            let r = self.next_random();
            backoff.delay(self.failures / n as u32, r)
        } else {
            Duration::ZERO
        };
        self.state = State::Waiting { until: now + delay };
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic from the host's seed.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn push_event(&mut self, e: UpstreamEvent) {
        if let Some(slot) = self.events.iter_mut().find(|s| s.is_none()) {
            *slot = Some(e);
        } else {
            // Only the latest availability matters; drop the oldest.
            self.events.rotate_left(1);
            self.events[3] = Some(e);
        }
    }

    /// The next availability change.
    pub fn poll_event(&mut self) -> Option<UpstreamEvent> {
        let e = self.events[0].take()?;
        self.events.rotate_left(1);
        Some(e)
    }

    fn fail(&mut self, reason: LossReason) {
        if matches!(
            self.state,
            State::Failing | State::Closed | State::Waiting { .. }
        ) {
            return;
        }
        self.state = State::Failing;
        self.connect_pending = false;
        self.heartbeat_pending = false;
        self.push_event(UpstreamEvent::Lost(reason));
    }

    /// Any bytes arrived from the broker.
    pub fn handle_received(&mut self, now: Instant) {
        self.last_rx = self.last_rx.max(now);
    }

    /// A heart-beat EOL arrived from the broker.
    pub fn handle_heartbeat(&mut self, now: Instant) {
        self.handle_received(now);
    }

    /// When bytes were last written upstream.
    pub fn last_transmit(&self) -> Instant {
        self.last_tx
    }

    /// The negotiated interval at which we send heart-beats, if any.
    pub fn write_interval(&self) -> Option<Duration> {
        self.write_interval
    }

    /// Queues a heart-beat EOL now (when connected).
    pub fn queue_heartbeat(&mut self) {
        if self.state == State::Connected {
            self.heartbeat_pending = true;
        }
    }

    /// The host wrote a forwarded frame upstream at `now`.
    pub fn handle_transmitted(&mut self, now: Instant) {
        self.last_tx = self.last_tx.max(now);
        self.heartbeat_pending = false;
    }

    /// The broker's bytes could not be decoded: the connection is lost.
    pub fn handle_decode_error(&mut self, now: Instant) {
        self.handle_received(now);
        self.fail(LossReason::ProtocolError);
    }

    /// Handles a frame from the broker.
    pub fn handle_frame<'a>(&mut self, now: Instant, frame: &Frame<'a>) -> Option<Inbound<'a>> {
        self.handle_received(now);
        match (self.state, frame.command) {
            (State::AwaitingConnected { .. }, Command::Connected) => {
                let version = match frame.header(b"version") {
                    Some(v) => Version::parse(v.raw()),
                    None => Some(Version::V1_0),
                };
                let hb = match frame.header(b"heart-beat") {
                    Some(v) => parse_heart_beat(v.raw()),
                    None => Some((0, 0)),
                };
                let (Some(version), Some(hb)) = (version, hb) else {
                    self.fail(LossReason::ProtocolError);
                    return None;
                };
                self.version = version;
                self.broker_dialect = frame
                    .header(b"server")
                    .and_then(|v| Dialect::from_server(v.raw()));
                let (w, r) = if version == Version::V1_0 {
                    (None, None)
                } else {
                    negotiate_heart_beat(self.config.heart_beat, hb)
                };
                self.write_interval = w;
                self.read_timeout = r.map(|r| r * self.config.read_timeout_factor.max(1));
                self.state = State::Connected;
                self.failures = 0;
                self.push_event(UpstreamEvent::Connected);
                Some(Inbound::Connected(version))
            }
            (
                State::AwaitingConnected { .. } | State::Connected | State::Disconnecting,
                Command::Error,
            ) => {
                if self.state == State::Disconnecting {
                    self.disconnect_pending = false;
                    self.disconnect_sent = None;
                } else {
                    self.fail(LossReason::BrokerError);
                }
                Some(Inbound::Error(*frame))
            }
            (State::Connected | State::Disconnecting, Command::Message) => {
                Some(Inbound::Message(*frame))
            }
            (State::Disconnecting, Command::Receipt)
                if frame
                    .receipt_id()
                    .is_some_and(|r| r.eq_bytes(DISCONNECT_RECEIPT)) =>
            {
                self.disconnect_sent = None;
                None
            }
            (State::Connected | State::Disconnecting, Command::Receipt) => {
                Some(Inbound::Receipt(*frame))
            }
            (State::AwaitingConnected { .. }, _) | (State::Connected, _) => {
                self.fail(LossReason::ProtocolError);
                None
            }
            _ => None,
        }
    }

    /// Sends DISCONNECT (when connected) and ends the connection for good once the
    /// transport closes.
    pub fn disconnect(&mut self) {
        match self.state {
            State::Connected => {
                self.state = State::Disconnecting;
                self.disconnect_pending = true;
            }
            State::Closed => {}
            State::Opening | State::AwaitingConnected { .. } | State::Failing => {
                self.config.reconnect = None;
                self.state = State::Disconnecting;
                self.disconnect_pending = false;
            }
            State::Waiting { .. } => self.state = State::Closed,
            State::Disconnecting => {}
        }
    }

    /// The next deadline for [`Upstream::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { until } => Some(until),
            State::AwaitingConnected { since } => Some(since + self.config.connected_timeout),
            State::Disconnecting => self.disconnect_sent.map(|t| t + DISCONNECT_RECEIPT_WAIT),
            State::Connected => {
                let write = if self.heartbeat_pending {
                    None
                } else {
                    self.write_interval
                        .map(|w| self.last_tx + heart_beat_after(w))
                };
                earliest(write, self.read_timeout.map(|r| self.last_rx + r))
            }
            _ => None,
        }
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::AwaitingConnected { since } if now >= since + self.config.connected_timeout => {
                self.fail(LossReason::ConnectedTimeout)
            }
            State::Disconnecting
                if self
                    .disconnect_sent
                    .is_some_and(|t| now >= t + DISCONNECT_RECEIPT_WAIT) =>
            {
                self.disconnect_sent = None;
            }
            State::Connected => {
                if self.read_timeout.is_some_and(|r| now >= self.last_rx + r) {
                    self.fail(LossReason::HeartbeatTimeout);
                } else if self
                    .write_interval
                    .is_some_and(|w| now >= self.last_tx + heart_beat_after(w))
                {
                    self.heartbeat_pending = true;
                }
            }
            _ => {}
        }
    }

    /// Writes the next frame the connection itself needs to send: CONNECT (with
    /// `accept-version:1.1,1.2`, our heart-beat and `creds`), a heart-beat EOL, or
    /// DISCONNECT. A buffer of [`crate::session::MAX_CONTROL_FRAME`] bytes suffices
    /// for credentials of ordinary length.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        creds: &Credentials<'_>,
        out: &mut [u8],
    ) -> Result<Option<usize>, EncodeError> {
        let n = if self.connect_pending {
            let mut hb = [0u8; HEART_BEAT_VALUE_MAX];
            let hb = format_heart_beat(self.config.heart_beat, &mut hb);
            let mut headers = [Header::EMPTY; 6];
            headers[0] = Header::new(b"accept-version", b"1.1,1.2");
            headers[1] = Header::new(b"heart-beat", hb);
            let mut n = 2;
            for (name, v) in [
                (&b"host"[..], creds.virtual_host),
                (b"login", creds.login),
                (b"passcode", creds.passcode),
                (b"client-id", creds.client_id),
            ] {
                if let Some(v) = v {
                    headers[n] = Header::new(name, v.as_bytes());
                    n += 1;
                }
            }
            let frame = Frame::new(Command::Connect, &headers[..n], b"");
            let len = crate::codec::encode(&frame, EncodeOptions::new(Version::V1_2), out)?;
            self.connect_pending = false;
            len
        } else if self.disconnect_pending {
            let headers = [Header::new(b"receipt", DISCONNECT_RECEIPT)];
            let frame = Frame::new(Command::Disconnect, &headers, b"");
            let len = crate::codec::encode(&frame, EncodeOptions::new(self.version), out)?;
            self.disconnect_pending = false;
            self.disconnect_sent = Some(now);
            len
        } else if self.heartbeat_pending && self.state == State::Connected {
            let b = out
                .first_mut()
                .ok_or(EncodeError::BufferTooSmall { needed: 1 })?;
            *b = b'\n';
            1
        } else {
            return Ok(None);
        };
        self.handle_transmitted(now);
        Ok(Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decoded, Decoder, Limits, Status};
    use std::string::String;
    use std::vec::Vec;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    const CREDS: Credentials<'static> = Credentials {
        login: Some("relay"),
        passcode: Some("secret"),
        virtual_host: Some("vh"),
        client_id: None,
    };

    fn drain(u: &mut Upstream, now: Instant) -> Vec<String> {
        let mut v = Vec::new();
        let mut buf = [0u8; 1024];
        while let Some(n) = u.poll_transmit(now, &CREDS, &mut buf).unwrap() {
            v.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        v
    }

    #[test]
    fn connect_carries_the_client_id_when_given() {
        let mut u = up(None, 1);
        assert_eq!(u.poll_connect(t(0)), Some(0));
        u.on_transport_connected(t(1));
        let creds = Credentials {
            client_id: Some("durable-7"),
            ..CREDS
        };
        let mut buf = [0u8; 1024];
        let n = u.poll_transmit(t(1), &creds, &mut buf).unwrap().unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            "CONNECT\naccept-version:1.1,1.2\nheart-beat:10000,10000\nhost:vh\nlogin:relay\npasscode:secret\nclient-id:durable-7\n\n\0"
        );
    }

    /// The scripted broker: answers CONNECT with CONNECTED.
    fn connected_frame() -> Frame<'static> {
        static H: [Header<'static>; 1] = [Header::new(b"version", b"1.2")];
        Frame::new(Command::Connected, &H, b"")
    }

    fn up(reconnect: Option<Backoff>, addresses: usize) -> Upstream {
        Upstream::new(
            UpstreamConfig {
                reconnect,
                addresses,
                ..UpstreamConfig::default()
            },
            t(0),
        )
    }

    #[test]
    fn connect_sends_relay_credentials_and_waits_for_connected() {
        let mut u = up(None, 1);
        assert_eq!(u.poll_connect(t(0)), Some(0));
        assert_eq!(u.poll_connect(t(0)), None, "one transport at a time");
        assert!(
            drain(&mut u, t(0)).is_empty(),
            "nothing before the transport is open"
        );
        u.on_transport_connected(t(1));
        let out = drain(&mut u, t(1));
        assert_eq!(
            out,
            ["CONNECT\naccept-version:1.1,1.2\nheart-beat:10000,10000\nhost:vh\nlogin:relay\npasscode:secret\n\n\0"]
        );
        assert!(!u.is_connected());
        assert_eq!(u.broker_dialect(), None);
        let h = [
            Header::new(b"version", b"1.2"),
            Header::new(b"heart-beat", b"5000,20000"),
            Header::new(b"server", b"RabbitMQ/3.10.8"),
        ];
        let f = Frame::new(Command::Connected, &h, b"");
        assert_eq!(
            u.handle_frame(t(2), &f),
            Some(Inbound::Connected(Version::V1_2))
        );
        assert!(u.is_connected());
        assert_eq!(u.broker_dialect(), Some(Dialect::RabbitMq));
        assert_eq!(u.poll_event(), Some(UpstreamEvent::Connected));
        // We send every max(10000, 20000), a heart-beat after 16 s quiet; the broker
        // every max(5000, 10000), 3x allowed.
        assert_eq!(u.write_interval(), Some(Duration::from_millis(20_000)));
        assert_eq!(u.poll_timeout(), Some(t(1 + 16_000)));
        u.handle_timeout(t(16_000));
        assert!(drain(&mut u, t(16_000)).is_empty());
        u.handle_timeout(t(16_001));
        assert_eq!(drain(&mut u, t(16_001)), ["\n"]);
        u.handle_heartbeat(t(25_000));
        assert_eq!(u.poll_timeout(), Some(t(32_001)));
        u.handle_transmitted(t(40_001));
        assert_eq!(u.poll_timeout(), Some(t(55_000)));
        u.handle_timeout(t(55_000));
        assert!(u.should_close_transport());
        assert_eq!(
            u.poll_event(),
            Some(UpstreamEvent::Lost(LossReason::HeartbeatTimeout))
        );
        u.handle_transport_closed(t(55_001));
        assert!(u.is_closed(), "per-session connections do not reconnect");
        assert_eq!(u.poll_connect(t(99_999)), None);
    }

    #[test]
    fn broker_error_and_connected_timeout_are_losses() {
        let mut u = up(None, 1);
        u.poll_connect(t(0));
        u.on_transport_connected(t(0));
        drain(&mut u, t(0));
        let h = [Header::new(b"message", b"bad login")];
        let f = Frame::new(Command::Error, &h, b"");
        assert!(matches!(u.handle_frame(t(1), &f), Some(Inbound::Error(_))));
        assert!(u.should_close_transport());
        assert_eq!(
            u.poll_event(),
            Some(UpstreamEvent::Lost(LossReason::BrokerError))
        );

        let mut u = up(None, 1);
        u.poll_connect(t(0));
        u.on_transport_connected(t(0));
        assert_eq!(u.poll_timeout(), Some(t(60_000)));
        u.handle_timeout(t(60_000));
        assert_eq!(
            u.poll_event(),
            Some(UpstreamEvent::Lost(LossReason::ConnectedTimeout))
        );
    }

    #[test]
    fn failover_tries_every_address_then_backs_off_with_jitter() {
        let backoff = Backoff {
            initial: Duration::from_millis(1000),
            max: Duration::from_millis(8000),
        };
        let mut u = up(Some(backoff), 2);
        let mut now = t(0);
        let mut tried = Vec::new();
        let mut waits = Vec::new();
        for _ in 0..8 {
            let deadline = u.poll_timeout().unwrap();
            waits.push(deadline.as_millis() - now.as_millis());
            now = deadline;
            let addr = u.poll_connect(now).unwrap();
            tried.push(addr);
            u.handle_transport_closed(now); // connection refused
        }
        assert_eq!(tried, [0, 1, 0, 1, 0, 1, 0, 1]);
        // Second address at once; between rounds 500-1000, 1000-2000, 2000-4000 ms, capped.
        assert_eq!(waits[0], 0);
        assert_eq!(waits[1], 0);
        for (i, &(lo, hi)) in [(500, 1000), (1000, 2000), (2000, 4000)].iter().enumerate() {
            assert_eq!(waits[3 + 2 * i], 0, "next address at once");
            let w = waits[2 + 2 * i];
            assert!((lo..=hi).contains(&w), "round {i}: {w}");
        }
        // Success resets the failure count; a later loss retries the same address at once.
        let deadline = u.poll_timeout().unwrap();
        let addr = u.poll_connect(deadline).unwrap();
        u.on_transport_connected(deadline);
        drain(&mut u, deadline);
        u.handle_frame(deadline, &connected_frame());
        assert_eq!(u.failures(), 0);
        u.handle_transport_closed(deadline);
        assert_eq!(u.poll_connect(deadline), Some(addr));
        let events: Vec<_> = core::iter::from_fn(|| u.poll_event()).collect();
        assert!(events.contains(&UpstreamEvent::Connected));
        assert_eq!(
            events.last(),
            Some(&UpstreamEvent::Lost(LossReason::TransportClosed))
        );
    }

    #[test]
    fn jitter_is_deterministic_per_seed() {
        let run = |seed| {
            let mut u = Upstream::new(
                UpstreamConfig {
                    jitter_seed: seed,
                    ..UpstreamConfig::default()
                },
                t(0),
            );
            let mut v = Vec::new();
            for _ in 0..5 {
                let d = u.poll_timeout().unwrap();
                u.poll_connect(d);
                u.handle_transport_closed(d);
                v.push(u.poll_timeout().unwrap());
            }
            v
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn disconnect_sends_disconnect_then_closes() {
        let mut u = up(Some(Backoff::default()), 1);
        u.poll_connect(t(0));
        u.on_transport_connected(t(0));
        drain(&mut u, t(0));
        u.handle_frame(t(0), &connected_frame());
        u.disconnect();
        let out = drain(&mut u, t(1));
        assert_eq!(out, ["DISCONNECT\nreceipt:stomp-relay-disconnect\n\n\0"]);
        assert!(
            !u.should_close_transport(),
            "waits for the broker's RECEIPT"
        );
        let h = [Header::new(b"receipt-id", b"stomp-relay-disconnect")];
        assert_eq!(
            u.handle_frame(t(2), &Frame::new(Command::Receipt, &h, b"")),
            None
        );
        assert!(u.should_close_transport());
        u.handle_transport_closed(t(2));
        assert!(u.is_closed());
        assert_eq!(u.poll_connect(t(10_000)), None);
    }

    #[test]
    fn disconnect_gives_up_waiting_for_the_receipt() {
        let mut u = up(None, 1);
        u.poll_connect(t(0));
        u.on_transport_connected(t(0));
        drain(&mut u, t(0));
        u.handle_frame(t(0), &connected_frame());
        u.disconnect();
        drain(&mut u, t(10));
        assert_eq!(u.poll_timeout(), Some(t(5_010)));
        u.handle_timeout(t(5_010));
        assert!(u.should_close_transport());
        assert_eq!(u.poll_timeout(), None);
    }

    #[test]
    fn unexpected_first_frame_is_a_protocol_loss() {
        let mut u = up(None, 1);
        u.poll_connect(t(0));
        u.on_transport_connected(t(0));
        let f = Frame::new(Command::Message, &[], b"");
        assert_eq!(u.handle_frame(t(0), &f), None);
        assert_eq!(
            u.poll_event(),
            Some(UpstreamEvent::Lost(LossReason::ProtocolError))
        );
        // The decoder in the tests is only here to prove CONNECT decodes.
        let mut hs = [Header::EMPTY; 8];
        let wire = b"CONNECT\naccept-version:1.1,1.2\n\n\0";
        assert!(matches!(
            Decoder::with_limits(Version::V1_2, Limits::DEFAULT).decode(wire, &mut hs),
            Ok(Status::Complete((Decoded::Frame(_), _)))
        ));
    }
}
