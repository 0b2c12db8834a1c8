//! The STOMP endpoints on the HTTP listener, Spring's `addEndpoint`: each `--endpoint`
//! path upgrades to STOMP over WebSocket; with `--sockjs`, `sockjs/` serves the SockJS
//! protocol under it through the admission and upgrade here.
//!
//! Admission is decided here once for every transport: the `Origin` allow-list and the
//! handshake credentials (auth/), then a connection permit. A session holds its permit
//! until its task ends, so `--max-connections` counts SockJS sessions like sockets.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use stomp_relay_codec::Version;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;

use crate::auth::Handshake;
use crate::listen::HttpListener;
use crate::state::Shared;
use crate::transport::{Transport, WsTransport};

/// What every endpoint handler needs: the server state and the task tracker graceful
/// shutdown waits on.
#[derive(Clone)]
pub(crate) struct Endpoints {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tracker: TaskTracker,
}

/// A session admitted by [`admit`]: its credentials and connection permit.
pub(crate) struct Admitted {
    pub(crate) handshake: Handshake,
    pub(crate) permit: OwnedSemaphorePermit,
}

impl Endpoints {
    pub(crate) fn new(shared: Arc<Shared>, tracker: TaskTracker) -> Self {
        Endpoints { shared, tracker }
    }
}

/// STOMP over WebSocket at every configured endpoint path (the SockJS routes under
/// them are `sockjs::routes`).
pub(crate) fn routes(ep: Endpoints) -> axum::Router {
    let mut router = axum::Router::new();
    for path in &ep.shared.config.endpoints {
        router = router.route(path, get(endpoint_root));
    }
    router.with_state(ep)
}

/// Why a session was not admitted: the HTTP status and a one-line body.
pub(crate) type Refused = (StatusCode, &'static str);

/// The peer address axum hands each request (see `crate::listen::HttpListener`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HttpListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, HttpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// Origin and credentials, then a connection permit. The peer address and the
/// headers the connect proxy is to see ride along in the handshake.
pub(crate) fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    uri: &Uri,
    peer: PeerAddr,
) -> Result<Admitted, Refused> {
    let mut handshake = crate::auth::check_handshake(&shared.security, headers, uri)?;
    handshake.remote = Some(peer.0);
    for name in &shared.config.proxy.http_headers {
        for v in headers.get_all(name.as_str()) {
            if let Ok(v) = v.to_str() {
                handshake.http_headers.push((name.clone(), v.to_owned()));
            }
        }
    }
    let permit = shared.admit().ok_or((
        StatusCode::SERVICE_UNAVAILABLE,
        "too many connections or shutting down\n",
    ))?;
    Ok(Admitted { handshake, permit })
}

/// A STOMP session over `transport`, to its end; the connection permit goes with it.
fn session_task<T: Transport>(
    ep: &Endpoints,
    transport: T,
    version: Option<Version>,
    admitted: Admitted,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let shared = ep.shared.clone();
    async move {
        crate::session::run(transport, shared, version, admitted.handshake).await;
        drop(admitted.permit);
    }
}

/// Runs a STOMP session over a transport on the session task tracker.
pub(crate) fn spawn_session<T: Transport>(
    ep: &Endpoints,
    transport: T,
    version: Option<Version>,
    admitted: Admitted,
) {
    ep.tracker
        .spawn(session_task(ep, transport, version, admitted));
}

/// The subprotocols offered, best first: the first one the client also offers wins.
const SUBPROTOCOLS: [&str; 3] = ["v12.stomp", "v11.stomp", "v10.stomp"];

/// Admits the upgrade request ([`admit`]), upgrades it to a WebSocket and runs the
/// session over `make(socket)`: plain STOMP frames, or SockJS frames around them.
pub(crate) fn upgrade<T: Transport>(
    ep: &Endpoints,
    ws: WebSocketUpgrade,
    req: (&HeaderMap, &Uri, PeerAddr),
    make: impl FnOnce(WsTransport) -> T + Send + 'static,
) -> Response {
    let (headers, uri, peer) = req;
    let admitted = match admit(&ep.shared, headers, uri, peer) {
        Ok(a) => a,
        Err(refused) => return refused.into_response(),
    };
    let max_message = ep.shared.config.limits.max_message();
    let ep = ep.clone();
    ws.protocols(SUBPROTOCOLS)
        // tungstenite allocates its read buffer up front per connection; 512 B covers
        // typical client frames in one read and keeps idle sessions small (a bigger
        // frame just takes several reads into a buffer reserved for its full length).
        .read_buffer_size(512)
        // Frames of one batch are coalesced into few writes (one syscall per delivery
        // tripled the cost of a fan-out); every batch ends with a flush, so nothing waits.
        .write_buffer_size(8 * 1024)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| {
            let version = socket
                .protocol()
                .and_then(|p| Version::from_subprotocol(p.as_bytes()));
            // The session runs in the upgrade task itself: no second task per socket.
            let task = session_task(&ep, make(WsTransport::new(socket)), version, admitted);
            ep.tracker.track_future(task)
        })
}

/// STOMP over WebSocket at an endpoint path; a plain GET gets SockJS's greeting when
/// SockJS is on (sockjs-client never asks, but Spring answers it).
async fn endpoint_root(
    State(ep): State<Endpoints>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => upgrade(&ep, ws, (&headers, &uri, peer), |t| t),
        Err(_) if ep.shared.config.sockjs.is_some() => sockjs_greeting(),
        Err(rejection) => rejection.into_response(),
    }
}

/// SockJS's answer to a plain GET of the endpoint.
fn sockjs_greeting() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=UTF-8",
        )],
        "Welcome to SockJS!\n",
    )
        .into_response()
}
