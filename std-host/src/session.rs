//! The per-connection task: moves bytes and time between one client transport and
//! relay-core's [`Session`], and routes the session's events to the broker backend and
//! the application handlers.
//!
//! What lives here and nowhere else: reassembly of frames across WebSocket messages or
//! TCP reads (bounded by the max frame size: the decoder rejects a prefix that cannot fit,
//! and the session answers ERROR and the socket closes with 1002), the outbound path
//! (session transmits plus broker deliveries from the bounded [`crate::outbound`] queue,
//! written in batches, each write bounded by the send time limit: a client that stalls
//! it is closed with 4500), timers (`poll_timeout`/`handle_timeout` on tokio time), the
//! close code for each way a session ends, and metrics.
//!
//! What does NOT live here: STOMP session rules (relay-core's `Session`), destination
//! classification and user destinations (relay-core's `Router`), subscription matching
//! (the broker backend).

use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use stomp_relay_codec::{
    Command, DecodeError, Decoded, Decoder, EncodeOptions, Frame, Header, Limit, Limits, Status,
    Version,
};
use stomp_relay_core::pattern::{self, Captures, Separator};
use stomp_relay_core::router::{AppRoute, Destination};
use stomp_relay_core::session::{
    AckMode, CloseReason, Event, SessionConfig, SubscriptionTable, Versions, MAX_CONTROL_FRAME,
};
use stomp_relay_core::{Instant, Session, SessionId as CoreSessionId};

use crate::app::AppMessage;
use crate::broker::{BrokerSession, SessionInfo};
use crate::close;
use crate::frame::OwnedFrame;
use crate::metrics::CloseCause;
use crate::outbound::{self, ClientHandle, Delivery, OutboundRx, ToClient};
use crate::state::Shared;
use crate::transport::{Chunk, Transport};

/// The session's subscriptions on the heap, only as many as the client holds: an idle
/// session with one short id costs a few dozen bytes instead of relay-core's inline
/// table (32 slots of the longest id, ~2 KiB). Order is insertion order. The table
/// itself has no cap: `--max-subscriptions` (auth's guard, checked right after each
/// SUBSCRIBE) is the one limit, so it can be raised, lowered or turned off.
#[derive(Default)]
struct Subscriptions(Vec<(Box<[u8]>, AckMode)>);

impl SubscriptionTable for Subscriptions {
    fn capacity(&self) -> usize {
        usize::MAX
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn get(&self, id: &[u8]) -> Option<(&[u8], AckMode)> {
        self.iter().find(|(s, _)| *s == id)
    }

    fn insert(&mut self, id: &[u8], ack: AckMode) -> bool {
        self.0.push((id.into(), ack));
        true
    }

    fn remove(&mut self, id: &[u8]) -> bool {
        match self.0.iter().position(|(s, _)| &**s == id) {
            Some(i) => {
                self.0.remove(i);
                if self.0.is_empty() {
                    // Back to no allocation at all once the client unsubscribed.
                    self.0 = Vec::new();
                }
                true
            }
            None => false,
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], AckMode)> + '_ {
        self.0.iter().map(|(id, ack)| (&**id, *ack))
    }
}

/// The relay-core session as this host runs it.
type CoreSession = Session<0, Subscriptions>;

/// At most this many queued items go out in one write batch.
const BATCH_ITEMS: usize = 256;
/// How long a closing session keeps trying to deliver its ERROR/close frame to a
/// client that is not reading (bounded so a dead peer cannot hold the task).
const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// How long CONNECT may wait for the broker backend to open the session.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

const SERVER: &str = concat!("stomp-relay/", env!("CARGO_PKG_VERSION"));

fn epoch() -> tokio::time::Instant {
    static EPOCH: OnceLock<tokio::time::Instant> = OnceLock::new();
    *EPOCH.get_or_init(tokio::time::Instant::now)
}

fn now() -> Instant {
    Instant::from_millis(epoch().elapsed().as_millis() as u64)
}

fn to_tokio(at: Instant) -> tokio::time::Instant {
    epoch() + Duration::from_millis(at.as_millis())
}

/// What the synchronous frame handling asks the async loop to do next.
enum Next {
    /// Keep going.
    Continue,
    /// A CONNECT was accepted by the session: authenticate and open the broker session.
    Connect(OwnedFrame),
}

/// Why the transport should close, decided by the host rather than the session.
#[derive(Clone, Copy)]
struct HostClose {
    code: u16,
    cause: Option<CloseCause>,
}

struct Driver {
    shared: Arc<Shared>,
    session: Box<CoreSession>,
    client: ClientHandle,
    broker: Option<Box<dyn BrokerSession>>,
    user: Option<String>,
    /// Reassembly buffer: bytes received but not yet decoded (at most one partial frame
    /// plus whatever complete frames arrived with it).
    rbuf: Vec<u8>,
    /// Encoded units waiting to be written.
    units: Vec<Vec<u8>>,
    host_close: Option<HostClose>,
    decode_cause: Option<CloseCause>,
    got_first_frame: bool,
    /// Authentication, authorization and SEND rate state (auth/mod.rs).
    guard: crate::auth::SessionGuard,
}

/// Runs one client connection to the end.
pub(crate) async fn run<T: Transport>(
    mut t: T,
    shared: Arc<Shared>,
    subprotocol: Option<Version>,
    handshake: crate::auth::Handshake,
) {
    let id = shared.next_session_id();
    let metrics = shared.metrics.clone();
    metrics.sessions_total.inc();
    metrics.sessions_current.inc();
    let limits = shared.config.limits.clone();
    let hb = shared.config.heartbeat;
    let cfg = SessionConfig {
        heart_beat: (hb.send_ms, hb.recv_ms),
        read_timeout_factor: 3,
        versions: Versions::ALL,
        subprotocol,
        server: Some(SERVER),
        connect_timeout: Some(limits.time_to_first_frame),
        local_receipts: !shared.broker.forwards_receipts(),
        defer_connected: true,
    };
    let (client, mut out_rx) = outbound::channel(id, limits.send_buffer);
    let mut d = Driver {
        session: Box::new(CoreSession::new(CoreSessionId(id), cfg, now())),
        client,
        broker: None,
        user: None,
        rbuf: Vec::new(),
        units: Vec::new(),
        host_close: None,
        decode_cause: None,
        got_first_frame: false,
        guard: crate::auth::SessionGuard::new(&shared.security, handshake),
        shared,
    };
    let mut stop = d.shared.shutdown.clone();
    tracing::debug!(session = id, transport = t.kind(), "session opened");

    loop {
        d.collect_transmits();
        if !d.units.is_empty() {
            // Boxed: the write and open futures are large and rare; keeping them out of
            // the session future keeps an idle session small.
            if let Err(cause) = Box::pin(d.write(&mut t)).await {
                d.host_close.get_or_insert(HostClose {
                    code: close::SLOW_CONSUMER,
                    cause: Some(cause),
                });
                break;
            }
        }
        if d.session.is_closed() || d.host_close.is_some() {
            break;
        }
        let deadline = d.session.poll_timeout();
        tokio::select! {
            biased;
            _ = crate::state::stopped(&mut stop) => {
                d.session.close_with_error(CloseReason::Shutdown, CloseReason::Shutdown);
            }
            item = out_rx.recv() => {
                let Some(item) = item else { break };
                d.deliver(item, &mut out_rx);
            }
            chunk = t.recv() => match chunk {
                Ok(Chunk::Data(bytes)) => {
                    metrics.bytes_in.inc_by(bytes.len() as u64);
                    if let Next::Connect(connect) = d.receive(bytes) {
                        Box::pin(d.open(connect)).await;
                        // Frames that came with the CONNECT are handled now.
                        if let Next::Connect(_) = d.receive(Bytes::new()) {
                            unreachable!("a session accepts CONNECT once");
                        }
                    }
                }
                Ok(Chunk::Oversized { limit }) => {
                    d.decode_cause = Some(CloseCause::FrameTooLarge);
                    d.session.close_with_error(
                        CloseReason::DecodeError,
                        format_args!("WebSocket message size limit of {limit} bytes exceeded"),
                    );
                }
                Ok(Chunk::Closed) | Err(_) => {
                    d.session.handle_transport_closed();
                    break;
                }
            },
            _ = sleep_until(deadline) => {
                d.session.handle_timeout(now());
            }
        }
    }

    // The end: release the broker side first so no more deliveries are queued.
    let reason = d.session.close_reason();
    if let Some(b) = d.broker.take() {
        b.close(None);
    }
    if let Some(u) = d.user.take() {
        d.shared.publish.users.remove(&u, id);
    }
    drop(out_rx);
    let (code, cause) = match (d.host_close, reason) {
        (Some(h), _) => (Some(h.code), h.cause),
        (None, Some(r)) => close_for(r, d.decode_cause),
        (None, None) => (None, Some(CloseCause::TransportError)),
    };
    if let Some(c) = cause {
        metrics.closed_abnormally(c);
    }
    metrics.sessions_current.dec();
    tracing::debug!(session = id, reason = ?reason, code = ?code, "session closed");
    if let Some(code) = code {
        let reason_text = match code {
            close::GOING_AWAY => "Server shutting down",
            close::SLOW_CONSUMER => "Session not reliable",
            close::PROTOCOL_ERROR => "Protocol error",
            _ => "",
        };
        let _ = Box::pin(tokio::time::timeout(
            CLOSE_LINGER,
            t.close(code, reason_text),
        ))
        .await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(to_tokio(at)).await,
        None => std::future::pending().await,
    }
}

/// The close code and abnormal-close cause for a session-decided end.
fn close_for(
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

fn decoder_limits(max_frame: usize) -> Limits {
    Limits {
        max_frame_size: max_frame,
        max_headers: 64,
        max_header_line: 8 * 1024.min(max_frame),
        max_body: max_frame,
    }
}

fn str_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Driver {
    fn sid(&self) -> u64 {
        self.session.id().0
    }

    /// Appends `bytes` to the reassembly buffer and handles every complete frame.
    fn receive(&mut self, bytes: Bytes) -> Next {
        let now = now();
        if !bytes.is_empty() {
            self.session.handle_received(now);
            self.rbuf.extend_from_slice(&bytes);
        }
        let limits = decoder_limits(self.shared.config.limits.max_frame_size);
        let mut consumed = 0;
        let mut next = Next::Continue;
        let rbuf = std::mem::take(&mut self.rbuf);
        while !self.session.is_closing() && consumed < rbuf.len() {
            let dec = Decoder::with_limits(self.session.version(), limits);
            let mut hs = [Header::EMPTY; 64];
            match dec.decode(&rbuf[consumed..], &mut hs) {
                Ok(Status::Partial) => break,
                Ok(Status::Complete((Decoded::HeartBeat, n))) => {
                    consumed += n;
                    self.shared.metrics.heartbeats_in.inc();
                    self.session.handle_heartbeat(now);
                    if let Some(b) = self.broker.as_mut() {
                        b.client_activity();
                    }
                }
                Ok(Status::Complete((Decoded::Frame(f), n))) => {
                    consumed += n;
                    self.got_first_frame = true;
                    self.shared.metrics.frame_in(f.command);
                    if let Next::Connect(c) = self.frame(now, &f) {
                        next = Next::Connect(c);
                        break;
                    }
                }
                Err(e) => {
                    self.decode_cause = Some(match e {
                        DecodeError::LimitExceeded {
                            limit: Limit::FrameSize | Limit::BodySize,
                            ..
                        } => CloseCause::FrameTooLarge,
                        _ => CloseCause::ProtocolError,
                    });
                    self.session.handle_decode_error(now, &e);
                    consumed = rbuf.len();
                }
            }
        }
        self.rbuf = rbuf;
        self.rbuf.drain(..consumed);
        // Slow-loris inside a session: a started frame must finish in time (auth/mod.rs).
        if let Err(msg) = self
            .guard
            .frame_progress(consumed > 0, !self.rbuf.is_empty())
        {
            self.session
                .close_with_error(CloseReason::ProtocolError, msg);
        }
        if self.rbuf.is_empty() && self.rbuf.capacity() > 16 * 1024 {
            // A large frame passed: give the memory back so idle sessions stay small.
            self.rbuf = Vec::new();
        }
        next
    }

    /// Feeds one decoded frame to the session and acts on the event.
    fn frame(&mut self, now: Instant, f: &Frame<'_>) -> Next {
        // CONNECT is copied whole before the session borrows it: the authenticator and
        // the broker backend get the frame as the client sent it.
        let connect = f.command.is_connect().then(|| OwnedFrame::from_frame(f));
        let shared = self.shared.clone();
        let sid = self.session.id();
        let event = match self.session.handle_frame(now, f) {
            Ok(Some(e)) => e,
            Ok(None) | Err(_) => return Next::Continue,
        };
        match event {
            Event::Connect(_) => {
                if let Some(c) = connect {
                    return Next::Connect(c);
                }
            }
            Event::Send { destination } => {
                let dest = destination.to_vec();
                if self.permitted(crate::auth::Op::Send, &dest, f) {
                    self.on_send(&shared, &dest, f);
                }
            }
            Event::Subscribe {
                id, destination, ..
            } => {
                let (id, dest) = (str_of(id), destination.to_vec());
                if self.permitted(crate::auth::Op::Subscribe, &dest, f) {
                    self.on_subscribe(&shared, sid, &id, &dest, f);
                }
            }
            Event::Unsubscribe { .. }
            | Event::Ack { .. }
            | Event::Nack { .. }
            | Event::Begin { .. }
            | Event::Commit { .. }
            | Event::Abort { .. } => {
                self.forward(OwnedFrame::from_frame(f));
            }
            Event::Disconnect => {
                if let Some(b) = self.broker.take() {
                    let receipt = f.receipt().map(|r| str_of(&r.bytes().collect::<Vec<u8>>()));
                    let forwarded = shared.broker.forwards_receipts();
                    b.close(if forwarded { receipt } else { None });
                }
            }
        }
        Next::Continue
    }

    /// Authorization rules, SEND rate and subscription limits (auth/mod.rs). A refusal
    /// either closes the session with ERROR or, for a SEND when so configured, answers
    /// ERROR and keeps it open.
    fn permitted(&mut self, op: crate::auth::Op, dest: &[u8], f: &Frame<'_>) -> bool {
        let subs = self.session.subscription_count();
        match self.guard.check(&self.shared.security, op, dest, subs) {
            Ok(()) => true,
            Err(crate::auth::Refusal::Close(msg)) => {
                self.session.close_with_error(CloseReason::Rejected, msg);
                false
            }
            Err(crate::auth::Refusal::Error(msg)) => {
                // The ERROR answers the frame's receipt; no RECEIPT may follow it.
                self.session.withdraw_receipt();
                let mut err = OwnedFrame::new(Command::Error).with_header("message", &msg);
                if let Some(r) = f.receipt() {
                    err.push_header("receipt-id", r.bytes().collect::<Vec<u8>>());
                }
                let mut unit = Vec::new();
                let opts = EncodeOptions::passthrough(self.session.version());
                if err.encode_into(opts, &mut unit).is_ok() {
                    self.shared.metrics.frame_out(Command::Error);
                    self.units.push(unit);
                }
                false
            }
        }
    }

    fn forward(&mut self, frame: OwnedFrame) {
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        if let Err(e) = b.forward(frame) {
            self.session.close_with_error(CloseReason::BrokerClosed, e);
        } else if self.shared.broker.forwards_receipts() {
            // Receipts travel with the forwarded frame; nothing to do here.
        }
    }

    fn local_receipt(&mut self, f: &Frame<'_>) {
        // With a relay that forwards receipts, frames handled here still get theirs.
        if self.shared.broker.forwards_receipts() {
            if let Some(r) = f.receipt() {
                let r: Vec<u8> = r.bytes().collect();
                self.session.queue_receipt(&r);
            }
        }
    }

    fn on_send(&mut self, shared: &Arc<Shared>, dest: &[u8], f: &Frame<'_>) {
        let routes = shared.routes();
        let router = routes.router();
        match router.classify(dest) {
            Ok(Destination::Broker(_)) => {
                let mut frame = OwnedFrame::from_frame(f);
                set_destination(&mut frame, dest);
                self.forward(frame);
            }
            Ok(Destination::App(app)) => {
                self.local_receipt(f);
                self.on_app_send(shared, app, f);
            }
            Ok(Destination::User(rest)) => {
                self.local_receipt(f);
                let (user, target) = match router.user_send(rest) {
                    Ok(x) => x,
                    Err(e) => {
                        self.session.close_with_error(CloseReason::Rejected, e);
                        return;
                    }
                };
                let user = str_of(user);
                let mut frame = OwnedFrame::from_frame(f);
                strip_client_only(&mut frame);
                for other in shared.publish.users.sessions(&user) {
                    let mut out = [0u8; 1024];
                    if let Ok(resolved) = router.user_target(target, CoreSessionId(other), &mut out)
                    {
                        let mut copy = frame.clone();
                        set_destination(&mut copy, resolved);
                        if let Err(e) = shared.broker.publish(copy) {
                            self.session.close_with_error(CloseReason::BrokerClosed, e);
                            return;
                        }
                    }
                }
            }
            Err(e) => self.session.close_with_error(CloseReason::Rejected, e),
        }
    }

    fn on_app_send(&mut self, shared: &Arc<Shared>, dest: &[u8], f: &Frame<'_>) {
        for m in &shared.message_mappings {
            let mut caps = Captures::new();
            if pattern::capture(m.pattern.as_bytes(), dest, Separator::Slash, &mut caps) {
                let msg = AppMessage {
                    destination: str_of(dest),
                    vars: caps.iter().map(|(n, v)| (str_of(n), str_of(v))).collect(),
                    frame: OwnedFrame::from_frame(f),
                    user: self.user.clone(),
                    session_id: self.sid(),
                };
                let publisher = shared.publisher();
                for reply in (m.handler)(&msg) {
                    if let Err(e) = publisher.send_reply(&reply) {
                        tracing::warn!(error = %e, destination = %msg.destination, "handler reply not sent");
                    }
                }
                return;
            }
        }
        let routes = shared.routes();
        let mut out = vec![0u8; dest.len() + 256];
        match routes.router().route_app(dest, &mut out) {
            Ok(AppRoute::Forward(to)) => {
                let mut frame = OwnedFrame::from_frame(f);
                strip_client_only(&mut frame);
                set_destination(&mut frame, to);
                if let Err(e) = shared.broker.publish(frame) {
                    self.session.close_with_error(CloseReason::BrokerClosed, e);
                }
            }
            Ok(AppRoute::Handler { .. }) | Ok(AppRoute::Unrouted) => {
                tracing::debug!(destination = %str_of(dest), "no handler for application destination");
            }
            Err(e) => self.session.close_with_error(CloseReason::Rejected, e),
        }
    }

    fn on_subscribe(
        &mut self,
        shared: &Arc<Shared>,
        sid: CoreSessionId,
        id: &str,
        dest: &[u8],
        f: &Frame<'_>,
    ) {
        let routes = shared.routes();
        let router = routes.router();
        match router.classify(dest) {
            Ok(Destination::Broker(_)) => {
                let mut frame = OwnedFrame::from_frame(f);
                set_destination(&mut frame, dest);
                self.forward(frame);
            }
            Ok(Destination::User(rest)) => {
                let mut out = [0u8; 1024];
                match router.user_subscription(rest, sid, &mut out) {
                    Ok(resolved) => {
                        let mut frame = OwnedFrame::from_frame(f);
                        set_destination(&mut frame, resolved);
                        self.forward(frame);
                    }
                    Err(e) => self.session.close_with_error(CloseReason::Rejected, e),
                }
            }
            Ok(Destination::App(app)) => {
                self.local_receipt(f);
                for m in &shared.subscribe_mappings {
                    let mut caps = Captures::new();
                    if pattern::capture(m.pattern.as_bytes(), app, Separator::Slash, &mut caps) {
                        let msg = AppMessage {
                            destination: str_of(app),
                            vars: caps.iter().map(|(n, v)| (str_of(n), str_of(v))).collect(),
                            frame: OwnedFrame::from_frame(f),
                            user: self.user.clone(),
                            session_id: self.sid(),
                        };
                        if let Some(p) = (m.handler)(&msg) {
                            let mut frame = OwnedFrame::new(Command::Message)
                                .with_header("destination", &msg.destination);
                            for (n, v) in &p.headers {
                                frame.push_header(n, v);
                            }
                            frame.body = p.body;
                            let _ = self.client.send(ToClient::Message(Delivery {
                                subscription: id.into(),
                                message_id: format!("{}-sub", self.sid()).into(),
                                message: Arc::new(frame),
                            }));
                        }
                        return;
                    }
                }
            }
            Err(e) => self.session.close_with_error(CloseReason::Rejected, e),
        }
    }

    /// Authenticates the CONNECT, opens the broker session and accepts (CONNECTED) or
    /// refuses (ERROR) it.
    async fn open(&mut self, connect: OwnedFrame) {
        let shared = self.shared.clone();
        let user = match &shared.authenticator {
            Some(auth) => match auth(&connect) {
                Ok(u) => u,
                Err(why) => {
                    self.session.close_with_error(CloseReason::Rejected, why);
                    return;
                }
            },
            // The configured methods (JWT, users file, anonymous): auth/mod.rs.
            None => match self.guard.authenticate(&shared.security, &connect).await {
                Ok(u) => u,
                Err(why) => {
                    tracing::info!(session = self.sid(), reason = %why, "authentication failed");
                    self.session
                        .close_with_error(CloseReason::Rejected, crate::auth::AUTH_FAILED);
                    return;
                }
            },
        };
        if let Some(u) = &user {
            if !self.session.set_user(u.as_bytes()) {
                self.session
                    .close_with_error(CloseReason::Rejected, "Invalid user name");
                return;
            }
        }
        let info = SessionInfo {
            id: self.sid(),
            user: user.clone(),
            connect,
        };
        let opened = tokio::time::timeout(
            OPEN_TIMEOUT,
            shared.broker.open_session(info, self.client.clone()),
        )
        .await;
        match opened {
            Ok(Ok(b)) => {
                self.broker = Some(b);
                if let Some(u) = user {
                    shared.publish.users.add(&u, self.sid());
                    self.user = Some(u);
                }
                self.session.accept(now());
            }
            Ok(Err(e)) => self.session.close_with_error(CloseReason::BrokerClosed, e),
            Err(_) => self
                .session
                .close_with_error(CloseReason::BrokerClosed, "Broker not available."),
        }
    }

    /// Moves the session's own frames (CONNECTED, RECEIPT, ERROR, heart-beats) to `units`.
    fn collect_transmits(&mut self) {
        let now = now();
        loop {
            let mut buf = [0u8; MAX_CONTROL_FRAME];
            match self.session.poll_transmit(now, &mut buf) {
                Ok(Some(n)) => {
                    let unit = buf[..n].to_vec();
                    self.count_out(&unit);
                    self.units.push(unit);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "session frame did not fit its buffer");
                    self.host_close = Some(HostClose {
                        code: close::INTERNAL_ERROR,
                        cause: Some(CloseCause::ProtocolError),
                    });
                    break;
                }
            }
        }
    }

    fn count_out(&self, unit: &[u8]) {
        let m = &self.shared.metrics;
        if unit == b"\n" {
            m.heartbeats_out.inc();
        } else {
            let end = unit.iter().position(|&b| b == b'\n').unwrap_or(unit.len());
            if let Some(c) = Command::parse(&unit[..end]) {
                m.frame_out(c);
            }
        }
    }

    /// Takes `first` and whatever else is queued (bounded) into `units`.
    fn deliver(&mut self, first: ToClient, rx: &mut OutboundRx) {
        let mut item = Some(first);
        let mut n = 0;
        while let Some(it) = item.take() {
            rx.done(&it);
            self.encode_item(it);
            n += 1;
            if n >= BATCH_ITEMS || self.host_close.is_some() || self.session.is_closing() {
                break;
            }
            item = rx.try_recv();
        }
        if !self.units.is_empty() {
            self.session.handle_transmitted(now());
        }
    }

    fn encode_item(&mut self, item: ToClient) {
        if !self.session.is_connected() || self.session.is_closing() {
            if let ToClient::Close {
                message: None,
                code,
            } = item
            {
                self.host_close = Some(HostClose {
                    code,
                    cause: Some(CloseCause::SendBufferLimit),
                });
            }
            return;
        }
        let version = self.session.version();
        match item {
            ToClient::Message(d) => {
                if let Some(unit) = self.encode_delivery(&d, version) {
                    self.shared.metrics.frame_out(Command::Message);
                    self.units.push(unit);
                }
            }
            ToClient::Frame(f) => {
                let mut unit = Vec::with_capacity(f.weight() + 16);
                match f.encode_into(EncodeOptions::passthrough(version), &mut unit) {
                    Ok(_) => {
                        self.shared.metrics.frame_out(f.command);
                        self.units.push(unit);
                        if f.command == Command::Error {
                            self.session.close(CloseReason::BrokerClosed);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "frame for client not encodable"),
                }
            }
            ToClient::HeartBeat => {
                self.shared.metrics.heartbeats_out.inc();
                self.units.push(b"\n".to_vec());
            }
            ToClient::Close {
                message: Some(m),
                code: _,
            } => {
                self.session.close_with_error(CloseReason::BrokerClosed, m);
            }
            ToClient::Close {
                message: None,
                code,
            } => {
                self.shared.metrics.deliveries_dropped.inc();
                self.host_close = Some(HostClose {
                    code,
                    cause: Some(CloseCause::SendBufferLimit),
                });
            }
        }
    }

    /// Encodes one MESSAGE: subscription, message-id, the message's headers (the
    /// destination shown as the user destination for this session's user queues).
    fn encode_delivery(&self, d: &Delivery, version: Version) -> Option<Vec<u8>> {
        let msg = &d.message;
        let mut user_dest = [0u8; 1024];
        let routes = self.shared.routes();
        let mut hs: Vec<Header<'_>> = Vec::with_capacity(msg.headers.len() + 3);
        hs.push(Header::new(b"subscription", d.subscription.as_bytes()));
        hs.push(Header::new(b"message-id", d.message_id.as_bytes()));
        if version == Version::V1_2
            && self
                .session
                .subscription(d.subscription.as_bytes())
                .is_some_and(|m| m != stomp_relay_core::session::AckMode::Auto)
        {
            hs.push(Header::new(b"ack", d.message_id.as_bytes()));
        }
        if let Some(v) = msg.header("destination") {
            // A user queue of this session is shown as the user destination the client
            // subscribed to (`/queue/x-user42` -> `/user/queue/x`).
            let shown = routes
                .router()
                .user_delivery(v, self.session.id(), &mut user_dest)
                .unwrap_or(v);
            hs.push(Header::new(b"destination", shown));
        }
        for (n, v) in &msg.headers {
            let name = n.as_slice();
            if matches!(
                name,
                b"subscription" | b"message-id" | b"ack" | b"destination"
            ) {
                continue;
            }
            hs.push(Header::new(name, v));
        }
        let frame = Frame::new(Command::Message, &hs, &msg.body);
        let opts = EncodeOptions::new(version);
        let n = stomp_relay_codec::encoded_len(&frame, opts).ok()?;
        let mut out = vec![0u8; n];
        stomp_relay_codec::encode(&frame, opts, &mut out).ok()?;
        Some(out)
    }

    /// Writes `units`, bounded by the send time limit.
    async fn write<T: Transport>(&mut self, t: &mut T) -> Result<(), CloseCause> {
        let bytes: usize = self.units.iter().map(Vec::len).sum();
        let limit = self.shared.config.limits.send_time_limit;
        match tokio::time::timeout(limit, t.send(&mut self.units)).await {
            Ok(Ok(())) => {
                self.shared.metrics.bytes_out.inc_by(bytes as u64);
                Ok(())
            }
            Ok(Err(_)) => {
                self.units.clear();
                self.session.handle_transport_closed();
                Err(CloseCause::TransportError)
            }
            Err(_) => {
                self.units.clear();
                tracing::info!(session = self.sid(), "send time limit exceeded, closing");
                Err(CloseCause::SendTimeLimit)
            }
        }
    }
}

/// Replaces (or adds) the `destination` header.
fn set_destination(frame: &mut OwnedFrame, dest: &[u8]) {
    match frame.headers.iter_mut().find(|(n, _)| n == b"destination") {
        Some((_, v)) => *v = dest.to_vec(),
        None => frame.push_header("destination", dest),
    }
}

/// Drops headers that only mean something between the client and this server
/// (`receipt`, `transaction`) before a message is republished on the client's behalf.
fn strip_client_only(frame: &mut OwnedFrame) {
    frame
        .headers
        .retain(|(n, _)| n != b"receipt" && n != b"transaction");
}

#[cfg(test)]
mod tests {
    use super::*;
    use stomp_relay_core::session::ProtocolError;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn connected() -> CoreSession {
        let mut s = CoreSession::new(CoreSessionId(1), SessionConfig::default(), t(0));
        let hs = [Header::new(b"accept-version", b"1.2")];
        assert!(matches!(
            s.handle_frame(t(0), &Frame::new(Command::Connect, &hs, b"")),
            Ok(Some(Event::Connect(_)))
        ));
        s
    }

    fn frame(s: &mut CoreSession, cmd: Command, hs: &[Header<'_>]) -> Result<(), ProtocolError> {
        s.handle_frame(t(1), &Frame::new(cmd, hs, b"")).map(|_| ())
    }

    fn subscribe(s: &mut CoreSession, id: &[u8], ack: &[u8]) -> Result<(), ProtocolError> {
        let hs = [
            Header::new(b"destination", b"/sub/a"),
            Header::new(b"id", id),
            Header::new(b"ack", ack),
        ];
        frame(s, Command::Subscribe, &hs)
    }

    #[test]
    fn idle_session_state_stays_within_budget() {
        // Budget: at most 8 KiB RSS per idle WebSocket session (issue 4), of which the
        // transport (tungstenite buffers, hyper upgrade) takes most. The session is
        // boxed, so its size is paid per connection; relay-core's inline table alone
        // would be ~2 KiB more.
        assert!(std::mem::size_of::<CoreSession>() <= 1_152);
        assert!(std::mem::size_of::<CoreSession>() + 2_000 < std::mem::size_of::<Session<32>>());
        assert!(std::mem::size_of::<Driver>() <= 256);
        assert!(std::mem::size_of::<Subscriptions>() <= 24);
    }

    #[test]
    fn heap_table_keeps_the_session_subscription_rules() {
        // No cap of its own (auth's --max-subscriptions guard is the limit): well past
        // relay-core's inline 32 and the default 1 000.
        let mut s = connected();
        for i in 0..2_000 {
            let ack: &[u8] = if i == 3 {
                b"client-individual"
            } else {
                b"auto"
            };
            subscribe(&mut s, format!("sub-{i}").as_bytes(), ack).unwrap();
        }
        assert_eq!(s.subscription_count(), 2_000);
        assert_eq!(s.subscription(b"sub-3"), Some(AckMode::ClientIndividual));
        assert_eq!(s.subscription(b"sub-4"), Some(AckMode::Auto));
        assert_eq!(
            s.subscriptions().next().map(|(id, _)| id),
            Some(&b"sub-0"[..])
        );

        let mut s = connected();
        subscribe(&mut s, b"a", b"client").unwrap();
        // An escaped id on the wire (1.2 `\c` is `:`) names the subscription by its
        // unescaped value, in SUBSCRIBE and UNSUBSCRIBE alike.
        let dec = Decoder::with_limits(Version::V1_2, decoder_limits(64 * 1024));
        let mut hs = [Header::EMPTY; 8];
        let wire = b"SUBSCRIBE\nid:b\\cc\ndestination:/sub/b\n\n\0";
        let Ok(Status::Complete((Decoded::Frame(f), _))) = dec.decode(wire, &mut hs) else {
            panic!("SUBSCRIBE did not decode");
        };
        s.handle_frame(t(1), &f).unwrap();
        assert_eq!(s.subscription(b"b:c"), Some(AckMode::Auto));
        let mut hs = [Header::EMPTY; 8];
        let wire = b"UNSUBSCRIBE\nid:b\\cc\n\n\0";
        let Ok(Status::Complete((Decoded::Frame(f), _))) = dec.decode(wire, &mut hs) else {
            panic!("UNSUBSCRIBE did not decode");
        };
        match s.handle_frame(t(1), &f) {
            Ok(Some(Event::Unsubscribe { id })) => assert_eq!(id, b"b:c"),
            other => panic!("{other:?}"),
        }
        frame(&mut s, Command::Unsubscribe, &[Header::new(b"id", b"a")]).unwrap();
        assert_eq!(s.subscription_count(), 0);
        // The id is free again; using it twice is not.
        subscribe(&mut s, b"a", b"auto").unwrap();
        assert_eq!(
            subscribe(&mut s, b"a", b"auto"),
            Err(ProtocolError::DuplicateSubscription)
        );

        let mut s = connected();
        assert_eq!(
            frame(&mut s, Command::Unsubscribe, &[Header::new(b"id", b"nope")]),
            Err(ProtocolError::UnknownSubscription)
        );
    }
}
