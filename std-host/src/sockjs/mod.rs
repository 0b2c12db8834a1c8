//! The SockJS protocol (sockjs-protocol 0.3, as sockjs-client 1.x speaks it) under
//! every endpoint path, like Spring's `withSockJS()`:
//!
//! - `GET PATH/info` (and its CORS preflight): `websocket`, `cookie_needed`, `origins`,
//!   `entropy`.
//! - `PATH/{server}/{session}/{transport}`: `websocket` (GET upgrade, `websocket.rs`),
//!   `xhr_streaming` and `xhr` (POST), `eventsource` (GET) to receive, `xhr_send`
//!   (POST) to send, over HTTP-carried sessions (`session.rs`).
//! - `PATH/websocket`: plain STOMP over WebSocket, as SockJS's raw endpoint.
//!
//! Every request passes the same `Origin` check as a WebSocket upgrade; XHR and
//! `info` responses carry CORS headers for allowed origins only, so a disallowed page
//! can neither open a session nor read one. Sessions run the same session driver as
//! WebSocket clients, with the same frame, buffer and time limits and metrics.

mod frame;
mod session;
mod websocket;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use crate::config::SockJsConfig;
use crate::endpoint::{self, Endpoints, PeerAddr};
use crate::transport::Chunk;
use session::{Output, Receiver, Registry};

#[derive(Clone)]
struct SockJs {
    ep: Endpoints,
    cfg: SockJsConfig,
    registry: Arc<Registry>,
}

/// The SockJS routes under every endpoint path.
pub(crate) fn routes(ep: Endpoints, cfg: SockJsConfig) -> axum::Router {
    let registry = Registry::new(cfg.disconnect_delay, ep.shared.config.limits.send_buffer);
    let st = SockJs { ep, cfg, registry };
    let mut router = axum::Router::new();
    for path in &st.ep.shared.config.endpoints {
        router = router
            .route(&format!("{path}/info"), get(info).options(info))
            .route(&format!("{path}/websocket"), get(raw_websocket))
            .route(
                &format!("{path}/{{server}}/{{session}}/{{transport}}"),
                any(transport),
            );
    }
    router.with_state(st)
}

const NO_CACHE: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";
/// How long browsers may cache a preflight answer (Spring: one year).
const PREFLIGHT_MAX_AGE: &str = "31536000";

/// The receiving transports and how each wraps one SockJS frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receive {
    XhrPolling,
    XhrStreaming,
    EventSource,
}

impl Receive {
    fn kind(self) -> &'static str {
        match self {
            Receive::XhrPolling => "sockjs-xhr-polling",
            Receive::XhrStreaming => "sockjs-xhr-streaming",
            Receive::EventSource => "sockjs-eventsource",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Receive::EventSource => "text/event-stream; charset=UTF-8",
            _ => "application/javascript; charset=UTF-8",
        }
    }

    /// What goes before the first frame: 2 KiB of `h` makes browsers hand partial
    /// XHR responses to the page; EventSource needs one new line.
    fn prelude(self) -> Option<String> {
        match self {
            Receive::XhrPolling => None,
            Receive::XhrStreaming => Some("h".repeat(2048) + "\n"),
            Receive::EventSource => Some("\r\n".to_string()),
        }
    }

    fn wrap(self, frame: &str) -> String {
        match self {
            Receive::EventSource => format!("data: {frame}\r\n\r\n"),
            _ => format!("{frame}\n"),
        }
    }
}

/// CORS headers for a request that passed the origin check: the caller's origin
/// echoed with credentials, as SockJS clients need for cookies and XHR across origins.
fn cors(req: &HeaderMap, resp: &mut HeaderMap) {
    if let Some(origin) = req.get(header::ORIGIN) {
        resp.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        resp.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// A CORS preflight answer allowing `methods`.
fn preflight(req: &HeaderMap, methods: &'static str) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    cors(req, h);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    if let Some(asked) = req.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000"),
    );
    resp
}

/// A session response: status, content type, no caching, CORS.
fn respond(
    req: &HeaderMap,
    status: StatusCode,
    content_type: &'static str,
    body: Body,
) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    cors(req, h);
    resp
}

fn text(req: &HeaderMap, status: StatusCode, body: &'static str) -> Response {
    respond(req, status, "text/plain; charset=UTF-8", Body::from(body))
}

async fn info(State(st): State<SockJs>, method: Method, headers: HeaderMap) -> Response {
    if let Err(refused) = crate::auth::check_origin(&st.ep.shared.security, &headers) {
        return refused.into_response();
    }
    if method == Method::OPTIONS {
        return preflight(&headers, "OPTIONS, GET");
    }
    let body = serde_json::json!({
        "websocket": true,
        "cookie_needed": false,
        "origins": ["*:*"],
        "entropy": fastrand::u32(..),
    });
    respond(
        &headers,
        StatusCode::OK,
        "application/json; charset=UTF-8",
        Body::from(body.to_string()),
    )
}

async fn raw_websocket(
    State(st): State<SockJs>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    websocket(&st, (headers, uri, peer), ws, false)
}

fn websocket(
    st: &SockJs,
    (headers, uri, peer): (HeaderMap, Uri, PeerAddr),
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    framed: bool,
) -> Response {
    let Ok(ws) = ws else {
        return (
            StatusCode::BAD_REQUEST,
            "Can \"Upgrade\" only to \"WebSocket\".\n",
        )
            .into_response();
    };
    if framed {
        let heartbeat = st.cfg.heartbeat;
        endpoint::upgrade(&st.ep, ws, (&headers, &uri, peer), move |t| {
            websocket::SockJsWs::new(t, heartbeat)
        })
    } else {
        endpoint::upgrade(&st.ep, ws, (&headers, &uri, peer), |t| t)
    }
}

/// A server or session path segment: not empty, no dots (sockjs-protocol).
fn valid_segment(s: &str) -> bool {
    !s.is_empty() && !s.contains('.')
}

// One extractor per part of the request axum hands over; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn transport(
    State(st): State<SockJs>,
    Path((server, session, transport)): Path<(String, String, String)>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    body: Body,
) -> Response {
    if !valid_segment(&server) || !valid_segment(&session) {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Err(refused) = crate::auth::check_origin(&st.ep.shared.security, &headers) {
        return refused.into_response();
    }
    let receive = match (method.as_str(), transport.as_str()) {
        ("GET", "websocket") => return websocket(&st, (headers, uri, peer), ws, true),
        ("POST", "xhr_send") => return xhr_send(&st, &session, &headers, body).await,
        ("OPTIONS", "xhr" | "xhr_send" | "xhr_streaming") => {
            return preflight(&headers, "OPTIONS, POST")
        }
        ("POST", "xhr") => Receive::XhrPolling,
        ("POST", "xhr_streaming") => Receive::XhrStreaming,
        ("GET", "eventsource") => Receive::EventSource,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    receive_on(&st, receive, &session, (headers, uri, peer)).await
}

/// A receiving request: opens the session if it is new, then writes what it has.
async fn receive_on(
    st: &SockJs,
    how: Receive,
    id: &str,
    (headers, uri, peer): (HeaderMap, Uri, PeerAddr),
) -> Response {
    let shared = &st.ep.shared;
    let opened = st.registry.get_or_create(id, how.kind(), || {
        endpoint::admit(shared, &headers, &uri, peer)
    });
    let session = match opened {
        Ok((session, None)) => session,
        Ok((session, Some((transport, admitted)))) => {
            endpoint::spawn_session(&st.ep, transport, None, admitted);
            session
        }
        Err(refused) => return refused.into_response(),
    };
    let Some(receiver) = session.attach() else {
        let busy = how.wrap(&frame::close(2010, "Another connection still open"));
        return respond(
            &headers,
            StatusCode::OK,
            how.content_type(),
            Body::from(busy),
        );
    };
    let heartbeat = st.cfg.heartbeat;
    let body = match how {
        Receive::XhrPolling => Body::from(how.wrap(&receiver.next(heartbeat).await.frame())),
        Receive::XhrStreaming | Receive::EventSource => {
            Body::from_stream(stream(how, receiver, heartbeat, st.cfg.stream_bytes_limit))
        }
    };
    respond(&headers, StatusCode::OK, how.content_type(), body)
}

/// A streaming response: the prelude, then frames as they come, until the session
/// closes or the response carried `limit` bytes (the client then opens the next one).
fn stream(
    how: Receive,
    receiver: Receiver,
    heartbeat: Duration,
    limit: usize,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
    struct Streaming {
        receiver: Option<Receiver>,
        prelude: Option<String>,
        sent: usize,
    }
    let start = Streaming {
        receiver: Some(receiver),
        prelude: how.prelude(),
        sent: 0,
    };
    futures_util::stream::unfold(start, move |mut s| async move {
        if let Some(p) = s.prelude.take() {
            return Some((Ok(Bytes::from(p)), s));
        }
        let out = s.receiver.as_ref()?.next(heartbeat).await;
        let chunk = how.wrap(&out.frame());
        s.sent += chunk.len();
        if matches!(out, Output::Close(_)) || s.sent >= limit {
            // Detached now, not when hyper drops the finished body.
            s.receiver = None;
        }
        Some((Ok(Bytes::from(chunk)), s))
    })
}

async fn xhr_send(st: &SockJs, id: &str, headers: &HeaderMap, body: Body) -> Response {
    let Some(session) = st.registry.get(id) else {
        return text(headers, StatusCode::NOT_FOUND, "Session not found.\n");
    };
    let limit = st.ep.shared.config.limits.max_message();
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            // The session answers ERROR and closes, as for an oversized WebSocket message.
            session.deliver(Chunk::Oversized { limit }).await;
            return text(
                headers,
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload too large.\n",
            );
        }
    };
    let messages = match frame::parse_send(&body) {
        Ok(m) => m,
        Err(e) => return text(headers, StatusCode::INTERNAL_SERVER_ERROR, e.body()),
    };
    let data: Vec<u8> = messages.concat().into_bytes();
    if !session.deliver(Chunk::Data(data.into())).await {
        return text(headers, StatusCode::NOT_FOUND, "Session not found.\n");
    }
    text(headers, StatusCode::NO_CONTENT, "")
}
