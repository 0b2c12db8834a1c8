//! Per-session relay mode (Spring's `StompBrokerRelay`): one upstream connection per
//! client session, plus the instance's `_system_` connection.
//!
//! - A session opens only while the system connection is up; otherwise the client gets
//!   `Broker not available.`. Its upstream CONNECT carries the relay credentials and
//!   virtual host, never the client's, and the session opens once the broker answered
//!   CONNECTED (the host holds the client's frames until then).
//! - Client frames are forwarded with destinations mapped by the dialect; MESSAGEs come
//!   back with the client's own destination spelling (remembered per subscription).
//! - A broker ERROR is passed to the client, then the session closes; a lost upstream
//!   connection closes the session with ERROR `Connection to broker closed.`.
//!
//! Invariant: `sessions` counts upstream connections whose sink has not seen `closed`;
//! `subscriptions` counts live client subscriptions across them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stomp_relay_core::upstream::LossReason;
use tokio::sync::oneshot;

use stomp_relay_codec::Command;

use super::conn::{self, Flow, Inbound, Target, Upstream};
use super::mapping;
use super::system::{self, Link, Supervised};
use super::RelayOptions;
use crate::broker::{
    BoxFuture, Broker, BrokerError, BrokerSession, BrokerStats, SessionInfo, UpstreamStatus,
};
use crate::close;
use crate::frame::OwnedFrame;
use crate::outbound::{ClientHandle, Delivery, ToClient};

struct Inner {
    opts: RelayOptions,
    /// One single-address target per `--relay` address, in order.
    singles: Vec<Arc<Target>>,
    system: Arc<Supervised>,
    sessions: AtomicUsize,
    subscriptions: AtomicUsize,
}

/// The per-session relay backend.
pub struct PerSessionRelay {
    inner: Arc<Inner>,
}

/// The system connection only logs what the broker says to it.
struct SystemLink;

impl Link for SystemLink {
    fn frame(&self, frame: OwnedFrame) {
        if frame.command == Command::Error {
            tracing::warn!(
                message = frame.header_str("message").unwrap_or(""),
                "relay: broker sent ERROR to the system session"
            );
        }
    }
    fn up(&self, _: &Upstream) {}
    fn down(&self) {}
}

impl PerSessionRelay {
    /// Starts the system connection; sessions open once it is up.
    pub fn start(opts: RelayOptions, target: Target) -> Self {
        let target = Arc::new(target);
        let settings = opts.settings(&opts.system_login, &opts.system_passcode, true);
        let system = system::supervise("system", target.clone(), settings, Arc::new(SystemLink));
        PerSessionRelay {
            inner: Arc::new(Inner {
                singles: (0..target.len())
                    .map(|i| Arc::new(target.only(i)))
                    .collect(),
                opts,
                system,
                sessions: AtomicUsize::new(0),
                subscriptions: AtomicUsize::new(0),
            }),
        }
    }

    /// The system connection's shared state (availability, reconnect count).
    pub fn system(&self) -> &Arc<Supervised> {
        &self.inner.system
    }
}

impl Broker for PerSessionRelay {
    fn open_session(
        &self,
        info: SessionInfo,
        client: ClientHandle,
    ) -> BoxFuture<'static, Result<Box<dyn BrokerSession>, BrokerError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            if !inner.system.available() {
                return Err(BrokerError::Unavailable);
            }
            let opts = &inner.opts;
            // Start with the broker the system session reached last, then the others:
            // a client session's connection never comes back once lost, so failover
            // happens here, at open, one address at a time.
            let n = inner.singles.len();
            let first = inner.system.current();
            let mut failures = Vec::new();
            let mut opened = None;
            for k in 0..n {
                let target = inner.singles[(first + k) % n].clone();
                // Fresh per attempt: a late end of a failed attempt touches only its own.
                let subs: Subs = Arc::new(Mutex::new(HashMap::new()));
                let closing = Arc::new(AtomicBool::new(false));
                let (ready_tx, ready_rx) = oneshot::channel();
                inner.sessions.fetch_add(1, Ordering::Relaxed);
                let sink = SessionSink {
                    client: client.clone(),
                    subs: subs.clone(),
                    closing: closing.clone(),
                    inner: inner.clone(),
                    ready: Some(ready_tx),
                    last_failure: None,
                };
                let mut settings = opts.settings(&opts.login, &opts.passcode, false);
                // The client's own id goes upstream (ActiveMQ durable subscriptions).
                settings.client_id = info.connect.header_str("client-id").map(str::to_owned);
                let upstream = conn::spawn(target.clone(), settings, sink);
                // The machine bounds the transport and the wait for CONNECTED.
                let bound = opts.connect_timeout * 2 + Duration::from_secs(1);
                match tokio::time::timeout(bound, ready_rx).await {
                    Ok(Ok(Ok(()))) => {
                        opened = Some((upstream, subs, closing, target.describe(0)));
                        break;
                    }
                    Ok(Ok(Err(why))) => failures.push(why),
                    Ok(Err(_)) | Err(_) => {
                        upstream.disconnect();
                        failures.push(OpenFailure::NoConnected {
                            addr: target.describe(0),
                        });
                    }
                }
            }
            let Some((upstream, subs, closing, addr)) = opened else {
                tracing::warn!(session = %info.id, why = %failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "), "relay: session cannot connect upstream");
                return Err(BrokerError::Unavailable);
            };
            Ok(Box::new(RelaySession {
                upstream,
                subs,
                closing,
                inner,
                addr,
            }) as Box<dyn BrokerSession>)
        })
    }

    fn publish(&self, mut frame: OwnedFrame) -> Result<(), BrokerError> {
        mapping::outbound(self.inner.opts.dialect.get(), &mut frame)?;
        self.inner
            .system
            .send(frame)
            .map_err(|_| BrokerError::Unavailable)
    }

    fn stats(&self) -> BrokerStats {
        BrokerStats {
            available: self.inner.system.available(),
            relay_sessions: self.inner.sessions.load(Ordering::Relaxed)
                + usize::from(self.inner.system.available()),
            subscriptions: self.inner.subscriptions.load(Ordering::Relaxed),
        }
    }

    fn dialect(&self) -> Option<stomp_relay_core::Dialect> {
        Some(self.inner.opts.dialect.get())
    }

    fn forwards_receipts(&self) -> bool {
        true
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.inner.system.stop().await })
    }

    fn upstreams(&self) -> Vec<UpstreamStatus> {
        let system = &self.inner.system;
        let (up, current) = (system.available(), system.current());
        self.inner
            .singles
            .iter()
            .enumerate()
            .map(|(i, t)| UpstreamStatus {
                url: t.describe(0),
                connected: up && i == current,
                last_error: None,
            })
            .collect()
    }
}

/// Client subscription id -> the client's destination (its own spelling).
type Subs = Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>;

struct RelaySession {
    upstream: Upstream,
    subs: Subs,
    closing: Arc<AtomicBool>,
    inner: Arc<Inner>,
    /// The broker this session's own connection reached (`stomp://host:port`).
    addr: String,
}

impl BrokerSession for RelaySession {
    fn forward(&mut self, mut frame: OwnedFrame) -> Result<(), BrokerError> {
        let dialect = self.inner.opts.dialect.get();
        match frame.command {
            Command::Send => {
                mapping::outbound(dialect, &mut frame)?;
            }
            Command::Subscribe => {
                let id = frame
                    .header("id")
                    .ok_or_else(|| {
                        BrokerError::Rejected("SUBSCRIBE frame has no id header".into())
                    })?
                    .to_vec();
                let (dest, _) = mapping::outbound(dialect, &mut frame)?;
                if self
                    .subs
                    .lock()
                    .expect("poisoned")
                    .insert(id, dest)
                    .is_none()
                {
                    self.inner.subscriptions.fetch_add(1, Ordering::Relaxed);
                }
            }
            // A 1.0/1.1 client acks by `message-id`; the upstream session is 1.2.
            Command::Ack | Command::Nack if frame.header("id").is_none() => {
                if let Some(mid) = frame.header("message-id").map(<[u8]>::to_vec) {
                    frame.push_header("id", mid);
                }
            }
            Command::Unsubscribe => {
                if let Some(id) = frame.header("id") {
                    if self.subs.lock().expect("poisoned").remove(id).is_some() {
                        self.inner.subscriptions.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
            _ => {}
        }
        self.upstream
            .send(frame)
            .map_err(|_| BrokerError::ConnectionClosed)
    }

    fn upstream(&self) -> Option<String> {
        Some(self.addr.clone())
    }

    fn close(self: Box<Self>, _receipt: Option<String>) {
        // The session answers the client's own DISCONNECT receipt.
        self.closing.store(true, Ordering::Release);
        self.upstream.disconnect();
    }
}

struct SessionSink {
    client: ClientHandle,
    subs: Subs,
    closing: Arc<AtomicBool>,
    inner: Arc<Inner>,
    /// Completes `open_session` at CONNECTED (or with why it failed).
    ready: Option<oneshot::Sender<Result<(), OpenFailure>>>,
    /// The latest loss before CONNECTED, reported if the round of addresses ends.
    last_failure: Option<(LossReason, String)>,
}

/// Why one broker address did not give a client session its CONNECTED.
#[derive(Debug)]
enum OpenFailure {
    /// The connection was lost or refused before CONNECTED.
    Lost { why: LossReason, detail: String },
    /// The connection ended without saying why.
    Ended,
    /// No CONNECTED within the bound.
    NoConnected { addr: String },
}

impl std::fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenFailure::Lost { why, detail } => write!(f, "{why}: {detail}"),
            OpenFailure::Ended => f.write_str("connection ended before CONNECTED"),
            OpenFailure::NoConnected { addr } => write!(f, "{addr}: no CONNECTED in time"),
        }
    }
}

impl Inbound for SessionSink {
    fn frame(&mut self, mut frame: OwnedFrame) -> Flow {
        if self.closing.load(Ordering::Acquire) {
            return Flow::Continue;
        }
        match frame.command {
            Command::Message => {
                let exact = frame
                    .header("subscription")
                    .and_then(|id| self.subs.lock().expect("poisoned").get(id).cloned());
                let dest = match exact {
                    Some(d) => Some(d),
                    None => frame.header("destination").map(|d| {
                        mapping::to_client(
                            self.inner.opts.dialect.get(),
                            d,
                            &self.inner.opts.broker_prefixes,
                        )
                    }),
                };
                if let Some(d) = dest {
                    mapping::set_header(&mut frame, "destination", d);
                }
                // As a Delivery the session shows user queues as user destinations and
                // adds `ack` itself, which is right while the broker's ack id is the
                // message id (ActiveMQ, RabbitMQ); otherwise pass the frame as is.
                let sub = frame.header_str("subscription").map(Arc::<str>::from);
                let mid = frame.header_str("message-id").map(Arc::<str>::from);
                if let (Some(subscription), Some(message_id)) = (sub, mid) {
                    if frame
                        .header("ack")
                        .is_none_or(|a| a == message_id.as_bytes())
                    {
                        let item = ToClient::Message(Delivery {
                            subscription,
                            message_id,
                            message: Arc::new(frame.into()),
                        });
                        return match self.client.send(item) {
                            Ok(()) => Flow::Continue,
                            Err(_) => Flow::Stop,
                        };
                    }
                }
            }
            Command::Error => {
                // The broker ends the connection after ERROR; the client gets it as is
                // and the session task closes the client after writing an ERROR.
                self.closing.store(true, Ordering::Release);
                let _ = self.client.send(ToClient::Frame(frame));
                return Flow::Stop;
            }
            _ => {}
        }
        match self.client.send(ToClient::Frame(frame)) {
            Ok(()) => Flow::Continue,
            // The session task is closing the client (slow consumer or gone) and will
            // call `close`; stop reading for it now.
            Err(_) => Flow::Stop,
        }
    }

    fn connected(&mut self, _: &Upstream, _: usize, _: &str) {
        if let Some(tx) = self.ready.take() {
            let _ = tx.send(Ok(()));
        }
    }

    fn lost(&mut self, why: LossReason, detail: &str) {
        if let Some(tx) = self.ready.take() {
            // Not connected yet: a per-session connection tries the next address
            // itself; only the end of the round (`closed`) fails the open.
            self.ready = Some(tx);
            self.last_failure = Some((why, detail.to_owned()));
            return;
        }
        if why != LossReason::Disconnected && !self.closing.swap(true, Ordering::AcqRel) {
            tracing::info!(session = %self.client.session_id(), %why, %detail, "relay: upstream connection lost");
            let _ = self.client.send(ToClient::Close {
                message: Some(BrokerError::ConnectionClosed.to_string()),
                code: close::PROTOCOL_ERROR,
            });
        }
    }

    fn closed(&mut self) {
        if let Some(tx) = self.ready.take() {
            let failure = match self.last_failure.take() {
                Some((why, detail)) => OpenFailure::Lost { why, detail },
                None => OpenFailure::Ended,
            };
            let _ = tx.send(Err(failure));
        }
        self.inner.sessions.fetch_sub(1, Ordering::Relaxed);
        let n = std::mem::take(&mut *self.subs.lock().expect("poisoned")).len();
        self.inner.subscriptions.fetch_sub(n, Ordering::Relaxed);
    }
}
