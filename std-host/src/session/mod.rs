//! The per-connection task: moves bytes and time between one client transport and
//! relay-core's [`Session`], and carries out what relay-core decides.
//!
//! What lives here and nowhere else, one module each: reassembly and decoding
//! (`receive`), carrying out relay-core's route for each frame (`route`), opening the
//! broker session on CONNECT (`open`), the outbound path with its batching and send
//! time limit (`outbound`), timers on tokio time (`clock`), the close code for each way
//! a session ends (`close`), the heap subscription table (`table`), and metrics.
//!
//! What does NOT live here: STOMP session rules (relay-core's `Session`), where a frame
//! goes and user destinations (relay-core's `Router::dispatch`), subscription matching
//! (the broker backend).

mod clock;
mod close;
mod open;
mod outbound;
mod proxied;
mod receive;
mod route;
mod table;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use stomp_relay_codec::Version;
use stomp_relay_core::session::{CloseReason, SessionConfig, Versions};
use stomp_relay_core::{Session, SessionId};

use crate::broker::BrokerSession;
use crate::frame::OwnedFrame;
use crate::metrics::CloseCause;
use crate::outbound::ClientHandle;
use crate::state::Shared;
use crate::transport::{Chunk, Transport};
use clock::{now, sleep_until};
use close::HostClose;
use table::Subscriptions;

/// The relay-core session as this host runs it.
type CoreSession = Session<0, Subscriptions>;

/// How long a closing session keeps trying to deliver its ERROR/close frame to a
/// client that is not reading (bounded so a dead peer cannot hold the task).
const CLOSE_LINGER: Duration = Duration::from_secs(5);

const SERVER: &str = concat!("stomp-relay/", env!("CARGO_PKG_VERSION"));

/// What the synchronous frame handling asks the async loop to do next.
enum Next {
    /// Keep going.
    Continue,
    /// A CONNECT was accepted by the session: authenticate and open the broker session.
    Connect(OwnedFrame),
}

struct Driver {
    shared: Arc<Shared>,
    session: Box<CoreSession>,
    client: ClientHandle,
    broker: Option<Box<dyn BrokerSession>>,
    user: Option<String>,
    /// Reassembly buffer: the start of a frame whose end has not arrived yet.
    rbuf: BytesMut,
    /// Encoded units waiting to be written.
    units: crate::batch::WriteBatch,
    host_close: Option<HostClose>,
    decode_cause: Option<CloseCause>,
    got_first_frame: bool,
    /// Authentication, authorization and SEND rate state (auth/mod.rs).
    guard: crate::auth::SessionGuard,
    /// The transport's [`Transport::kind`].
    transport: &'static str,
    /// Proxy state, only when proxies are configured (boxed: idle sessions stay small).
    proxy: Option<Box<ProxyState>>,
}

/// A session's side of the HTTP proxies.
#[derive(Default)]
struct ProxyState {
    /// The client's address and handshake headers, for the connect proxy.
    remote: Option<std::net::SocketAddr>,
    http_headers: Vec<(String, String)>,
    /// Headers the connect proxy added to CONNECTED.
    connected_extra: Vec<(String, String)>,
    /// A subscribe or application proxy call in flight: frames after the one it
    /// answers wait in `rbuf` (their order is kept) while deliveries still flow.
    pending: Option<proxied::Pending>,
}

/// Runs one client connection to the end.
pub(crate) async fn run<T: Transport>(
    mut t: T,
    shared: Arc<Shared>,
    subprotocol: Option<Version>,
    mut handshake: crate::auth::Handshake,
) {
    let Some(id) = Shared::new_session_id() else {
        let _ = t.close(crate::close::INTERNAL_ERROR, "").await;
        return;
    };
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
    let (client, mut out_rx) = crate::outbound::channel(id, limits.send_buffer);
    let proxy = shared.proxies.as_ref().map(|_| {
        Box::new(ProxyState {
            remote: handshake.remote,
            http_headers: std::mem::take(&mut handshake.http_headers),
            ..Default::default()
        })
    });
    let mut d = Driver {
        session: Box::new(CoreSession::new(id, cfg, now())),
        client,
        broker: None,
        user: None,
        rbuf: BytesMut::new(),
        units: crate::batch::WriteBatch::new(),
        host_close: None,
        decode_cause: None,
        got_first_frame: false,
        guard: crate::auth::SessionGuard::new(&shared.security, handshake),
        transport: t.kind(),
        proxy,
        shared,
    };
    let mut stop = d.shared.shutdown.clone();
    tracing::debug!(session = %id, transport = t.kind(), "session opened");

    loop {
        d.collect_transmits();
        if !d.units.is_empty() {
            // Boxed: the write and open futures are large and rare; keeping them out of
            // the session future keeps an idle session small.
            if let Err(cause) = Box::pin(d.write(&mut t)).await {
                d.host_close.get_or_insert(HostClose {
                    code: crate::close::SLOW_CONSUMER,
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
            done = proxied::wait(&mut d.proxy) => {
                d.proxy_done(done);
                // The frames that waited behind the proxied one.
                let _ = d.receive(Bytes::new());
            }
            chunk = t.recv(), if !d.proxy_pending() => match chunk {
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
                Ok(Chunk::Gone) => {
                    d.session.handle_transport_closed();
                    d.host_close = Some(HostClose {
                        code: crate::close::GONE,
                        cause: Some(CloseCause::ClientGone),
                    });
                    break;
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
        (None, Some(r)) => close::close_for(r, d.decode_cause),
        (None, None) => (None, Some(CloseCause::TransportError)),
    };
    if let Some(c) = cause {
        metrics.closed_abnormally(c);
    }
    metrics.sessions_current.dec();
    tracing::debug!(session = %id, reason = ?reason, code = ?code, "session closed");
    if let Some(code) = code {
        let _ = Box::pin(tokio::time::timeout(
            CLOSE_LINGER,
            t.close(code, close::reason_text(code)),
        ))
        .await;
    }
}

fn str_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Driver {
    fn sid(&self) -> SessionId {
        self.session.id()
    }

    /// Whether a proxy call is in flight (no frame is read until it answers).
    fn proxy_pending(&self) -> bool {
        self.proxy.as_ref().is_some_and(|p| p.pending.is_some())
    }
}
