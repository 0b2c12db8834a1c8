//! The web pages and HTTP API served beside `/ws`: the chat demo (`GET /`), the
//! operations dashboard (`GET /dashboard`), its data (`GET /api/stats`), publishing from
//! back-end services (`POST /api/publish`, Spring's `SimpMessagingTemplate` over HTTP)
//! and the OpenAPI description (`GET /openapi.json`).
//!
//! The pages, scripts and the vendored `@stomp/stompjs` bundle live in `std-host/web/`
//! and are compiled into the binary with `include_str!`, so building never needs npm.
//!
//! What the dashboard knows beyond the Prometheus counters comes from [`Observer`], a
//! thin decorator around the server's [`Broker`]: it sees every session the broker opens
//! and every SUBSCRIBE/UNSUBSCRIBE/SEND forwarded to it, so it can list sessions with
//! their subscriptions and count subscriptions per destination without the session task
//! or the backend knowing about it. Its cost on the hot path is one atomic add per SEND;
//! SUBSCRIBE/UNSUBSCRIBE lock only their own session's entry.
//!
//! Secrets: `/api/publish` needs `--api-key`, `/dashboard` and `/api/stats` need
//! `--admin-token`. Without them the endpoints are open on a loopback listen (a
//! developer's machine) and disabled, with a warning at start-up and a 403 naming the
//! flag, on any other listen: a server reachable from the network never publishes or
//! shows its sessions to anyone who asks. Cross-origin browser calls to the HTTP API get
//! CORS headers for the `--allowed-origin` list (preflight included), nothing else.
//!
//! Invariants: a session is in the observer's table exactly while its broker session is
//! open (added when `open_session` succeeded, removed in `close`); `/api/publish` goes
//! through the same [`crate::Publisher`] the embedding API gives applications, so it
//! takes the same path as application publishes (the system session in relay mode).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use stomp_relay_codec::Command;
use subtle::ConstantTimeEq;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::app::PublishError;
use crate::app::{PublishCtx, Publisher};
use crate::broker::Broker;
use crate::broker::BrokerError;
use crate::config::origin::AllowedOrigins;
use crate::config::Config;
use crate::config::{BrokerKind, RelayMode};
use crate::metrics::Metrics;
use crate::outbound::SessionId;

pub mod observer;

use observer::{lock, unix_ms, Entry};
pub use observer::{Observer, Sample, HISTORY_SECONDS, LISTED_SESSIONS, RECENT_ERRORS};

const CHAT_HTML: &str = include_str!("../../web/chat.html");
const CHAT_JS: &str = include_str!("../../web/chat.js");
const DASHBOARD_HTML: &str = include_str!("../../web/dashboard.html");
const DASHBOARD_JS: &str = include_str!("../../web/dashboard.js");
const LOGIN_HTML: &str = include_str!("../../web/login.html");
const STYLE_CSS: &str = include_str!("../../web/style.css");
const STOMPJS: &str = include_str!("../../web/vendor/stomp.umd.min.js");
const SOCKJS: &str = include_str!("../../web/vendor/sockjs.min.js");
const OPENAPI_JSON: &str = include_str!("../../web/openapi.json");

/// The `/api/stats` document (see `web/openapi.json` for the field meanings).
#[derive(Debug, Serialize)]
pub struct Stats {
    server: ServerStats,
    broker: BrokerView,
    sessions: SessionsView,
    subscriptions: SubscriptionsView,
    users: UsersView,
    messages: MessagesView,
    errors: Vec<ErrorView>,
}

#[derive(Debug, Serialize)]
struct UsersView {
    /// `cluster` in relay mode (every instance sharing the broker), else `instance`.
    scope: &'static str,
    /// Instances with at least one user session, this one included.
    instances: usize,
    listed: Vec<UserRowView>,
    truncated: bool,
}

#[derive(Debug, Serialize)]
struct UserRowView {
    name: String,
    sessions: usize,
    instances: usize,
}

#[derive(Debug, Serialize)]
struct ServerStats {
    version: &'static str,
    uptime_seconds: u64,
    now_ms: u64,
}

#[derive(Debug, Serialize)]
struct BrokerView {
    mode: &'static str,
    relay_mode: Option<&'static str>,
    dialect: Option<&'static str>,
    available: bool,
    relay_connections: usize,
    addresses: Vec<AddressView>,
}

#[derive(Debug, Serialize)]
struct AddressView {
    url: String,
    /// `true`/`false` when the backend reports it, `null` when it does not.
    connected: Option<bool>,
    last_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct SessionsView {
    current: i64,
    total: u64,
    listed: Vec<SessionRow>,
    truncated: bool,
    closed_abnormally: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
struct SessionRow {
    id: String,
    user: Option<String>,
    /// `ws`, `tcp` or `sockjs-<transport>`.
    transport: &'static str,
    connected_seconds: u64,
    /// SENDs straight to broker destinations (SENDs to application destinations are
    /// counted in `messages.published_total` only).
    broker_sends: u64,
    subscriptions: Vec<SubscriptionRow>,
    upstream: Option<String>,
}

#[derive(Debug, Serialize)]
struct SubscriptionRow {
    id: String,
    destination: String,
}

#[derive(Debug, Serialize)]
struct SubscriptionsView {
    total: usize,
    by_destination: Vec<DestinationRow>,
}

#[derive(Debug, Serialize)]
struct DestinationRow {
    destination: String,
    subscribers: usize,
}

#[derive(Debug, Serialize)]
struct MessagesView {
    published_total: u64,
    delivered_total: u64,
    per_second: Vec<Sample>,
}

#[derive(Debug, Serialize)]
struct ErrorView {
    at_ms: u64,
    message: String,
}

fn mode_names(state: &WebState) -> (&'static str, Option<&'static str>, Option<&'static str>) {
    let c = &state.config;
    match c.broker {
        BrokerKind::Simple => ("simple", None, None),
        BrokerKind::Relay => (
            "relay",
            Some(match c.relay_mode {
                RelayMode::PerSession => "per-session",
                RelayMode::Shared => "shared",
            }),
            state.broker.dialect().map(|d| d.as_str()),
        ),
    }
}

/// Builds the stats document.
fn stats(state: &WebState) -> Stats {
    let obs = &state.observer;
    let m = &state.metrics;
    let now = unix_ms();
    let broker = state.broker.stats();
    let (mode, relay_mode, dialect) = mode_names(state);
    let reported = state.broker.upstreams();
    let addresses = if !reported.is_empty() {
        reported
            .into_iter()
            .map(|u| AddressView {
                url: u.url,
                connected: Some(u.connected),
                last_error: u.last_error,
            })
            .collect()
    } else if state.config.broker == BrokerKind::Relay {
        state
            .config
            .relay
            .iter()
            .map(|a| AddressView {
                url: a.to_string(),
                connected: None,
                last_error: None,
            })
            .collect()
    } else {
        Vec::new()
    };

    let views: Vec<(SessionId, Arc<Entry>)> = {
        let s = lock(&obs.sessions);
        s.iter().map(|(k, v)| (*k, v.clone())).collect()
    };
    let mut per_dest: BTreeMap<String, usize> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut sub_total = 0;
    for (id, entry) in &views {
        let v = lock(&entry.view);
        for (_, d) in &v.subscriptions {
            *per_dest.entry(d.clone()).or_default() += 1;
            sub_total += 1;
        }
        rows.push(SessionRow {
            id: id.to_string(),
            user: v.user.clone(),
            transport: v.transport,
            connected_seconds: now.saturating_sub(v.opened_ms) / 1000,
            broker_sends: entry.broker_sends.load(Ordering::Relaxed),
            subscriptions: v
                .subscriptions
                .iter()
                .map(|(i, d)| SubscriptionRow {
                    id: i.clone(),
                    destination: d.clone(),
                })
                .collect(),
            upstream: v.upstream.clone(),
        });
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.connected_seconds));
    let truncated = rows.len() > LISTED_SESSIONS;
    rows.truncate(LISTED_SESSIONS);
    let mut by_destination: Vec<DestinationRow> = per_dest
        .into_iter()
        .map(|(destination, subscribers)| DestinationRow {
            destination,
            subscribers,
        })
        .collect();
    by_destination.sort_by_key(|d| std::cmp::Reverse(d.subscribers));

    let mut errors: Vec<ErrorView> = lock(&obs.errors)
        .iter()
        .map(|(at, t)| ErrorView {
            at_ms: *at,
            message: t.clone(),
        })
        .collect();
    errors.extend(m.recent_closes().into_iter().map(|(at, cause)| ErrorView {
        at_ms: at,
        message: format!("session closed abnormally: {}", cause.as_str()),
    }));
    errors.sort_by_key(|e| std::cmp::Reverse(e.at_ms));
    errors.truncate(RECENT_ERRORS);

    Stats {
        server: ServerStats {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: obs.started.elapsed().as_secs(),
            now_ms: now,
        },
        broker: BrokerView {
            mode,
            relay_mode,
            dialect,
            available: broker.available,
            relay_connections: broker.relay_sessions,
            addresses,
        },
        sessions: SessionsView {
            current: m.sessions_current.get(),
            total: m.sessions_total.get(),
            listed: rows,
            truncated,
            closed_abnormally: m
                .closed_abnormally_counts()
                .into_iter()
                .map(|(c, n)| (c.as_str(), n))
                .collect(),
        },
        subscriptions: SubscriptionsView {
            // The broker's own count when it keeps one (relay mode counts upstream
            // subscriptions); otherwise what the observer saw.
            total: if broker.subscriptions > 0 {
                broker.subscriptions
            } else {
                sub_total
            },
            by_destination,
        },
        users: {
            let u = state.publish.users.view(LISTED_SESSIONS);
            UsersView {
                scope: if u.cluster { "cluster" } else { "instance" },
                instances: u.instances,
                listed: u
                    .listed
                    .into_iter()
                    .map(|r| UserRowView {
                        name: r.name,
                        sessions: r.sessions,
                        instances: r.instances,
                    })
                    .collect(),
                truncated: u.truncated,
            }
        },
        messages: MessagesView {
            published_total: obs.published(),
            delivered_total: m.frames_out_total(Command::Message),
            per_second: lock(&obs.history).iter().copied().collect(),
        },
        errors,
    }
}

/// Samples the message counters once a second until shutdown.
async fn sample(state: Arc<WebState>) {
    let mut stop = state.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = (
        state.observer.published(),
        state.metrics.frames_out_total(Command::Message),
    );
    tick.tick().await;
    loop {
        tokio::select! {
            _ = crate::state::stopped(&mut stop) => break,
            _ = tick.tick() => {
                let now = (
                    state.observer.published(),
                    state.metrics.frames_out_total(Command::Message),
                );
                state.observer.push_sample(Sample {
                    at_ms: unix_ms(),
                    published: now.0.saturating_sub(last.0),
                    delivered: now.1.saturating_sub(last.1),
                });
                last = now;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Routes

/// What the pages, the HTTP API and the sampler use of the server, and nothing else:
/// the configuration they show and check secrets against, the broker (its stats and
/// upstreams), the counters, the publishing context (`/api/publish`, the user list),
/// the dashboard's observer, the allowed origins for CORS and the shutdown signal.
pub(crate) struct WebState {
    pub(crate) config: Config,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) publish: Arc<PublishCtx>,
    pub(crate) observer: Arc<Observer>,
    pub(crate) origins: AllowedOrigins,
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
}

/// The web routes, ready to merge into the server's router. Spawns the once-a-second
/// sampler for the messages-per-second chart (it ends at shutdown).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(state: WebState) -> Router<S> {
    let state = Arc::new(state);
    tokio::spawn(sample(state.clone()));
    let body_limit = state.config.limits.max_frame_size.saturating_mul(4) + 16 * 1024;
    for (what, secret, flag) in [
        ("POST /api/publish", &state.config.api_key, "--api-key"),
        (
            "/dashboard and /api/stats",
            &state.config.admin_token,
            "--admin-token",
        ),
    ] {
        if disabled(&state, secret) {
            tracing::warn!(
                listen = %state.config.listen,
                "{what} disabled: the listen address is not loopback and no {flag} is set; set {flag} to enable"
            );
        }
    }
    // Rendered once: the endpoint and SockJS setting do not change while serving.
    let chat = Bytes::from(chat_page(&state.config));
    let origins = state.origins.clone();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origin.to_str().is_ok_and(|o| origins.listed(o))
        }))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-admin-token"),
        ])
        .max_age(Duration::from_secs(600));
    let api = Router::new()
        .route("/api/stats", get(api_stats))
        .route(
            "/api/publish",
            post(api_publish).layer(DefaultBodyLimit::max(body_limit)),
        )
        .layer(cors);
    Router::new()
        // The chat page is the fallback for `/` rather than a route, so an embedding
        // application's own `/` (ServerBuilder::http_routes) takes precedence instead
        // of clashing with it.
        .fallback(move |method, uri| chat_or_not_found(chat.clone(), method, uri))
        .route("/dashboard", get(dashboard))
        .route("/assets/chat.js", get(|| async { asset(CHAT_JS, JS) }))
        .route(
            "/assets/dashboard.js",
            get(|| async { asset(DASHBOARD_JS, JS) }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/stomp.umd.min.js",
            get(|| async { asset(STOMPJS, JS) }),
        )
        .route("/assets/sockjs.min.js", get(|| async { asset(SOCKJS, JS) }))
        .route(
            "/openapi.json",
            get(|| async { asset(OPENAPI_JSON, "application/json") }),
        )
        .merge(api)
        .with_state(state)
}

/// An endpoint guarded by `secret` is disabled: no secret, and the server listens
/// beyond loopback.
fn disabled(state: &WebState, secret: &Option<crate::secret::Secret>) -> bool {
    secret.is_none() && !state.config.listen.ip().is_loopback()
}

/// The 403 of a [`disabled`] endpoint, naming the flag that enables it.
fn disabled_response(what: &str, flag: &str) -> Response {
    json_error(
        StatusCode::FORBIDDEN,
        format!("{what} is disabled: this server listens beyond loopback and has no {flag}; start it with {flag} to enable it"),
    )
}

const JS: &str = "text/javascript; charset=utf-8";

async fn chat_or_not_found(
    chat: Bytes,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Response {
    if uri.path() == "/"
        && (method == axum::http::Method::GET || method == axum::http::Method::HEAD)
    {
        asset(chat, "text/html; charset=utf-8")
    } else {
        (StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}

/// The chat page, told where the first endpoint is and whether it speaks SockJS.
fn chat_page(config: &crate::config::Config) -> String {
    let endpoint = config.endpoints.first().map_or("/ws", String::as_str);
    CHAT_HTML.replacen(
        r#"<body class="chat" data-endpoint="/ws" data-sockjs="false">"#,
        &format!(
            r#"<body class="chat" data-endpoint="{endpoint}" data-sockjs="{}">"#,
            config.sockjs.is_some()
        ),
        1,
    )
}

fn page(html: &'static str) -> Response {
    asset(html, "text/html; charset=utf-8")
}

fn asset(body: impl Into<axum::body::Body>, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body.into(),
    )
        .into_response()
}

/// A JSON error body `{"error": "..."}` with `status`.
fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    (status, axum::Json(body)).into_response()
}

fn unauthorized(realm: &str, message: &str) -> Response {
    let mut r = json_error(StatusCode::UNAUTHORIZED, message);
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"{realm}\"")) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// `Authorization: Bearer X` or the named header.
fn presented<'a>(headers: &'a HeaderMap, alt: &str) -> Option<&'a str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    bearer.or_else(|| headers.get(alt).and_then(|v| v.to_str().ok()))
}

/// Whether `given` matches the configured secret (always true when none is configured).
fn allowed(secret: &Option<crate::secret::Secret>, given: Option<&str>) -> bool {
    match secret {
        None => true,
        Some(s) => given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(s.as_bytes()))),
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn dashboard(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    let given = q
        .token
        .as_deref()
        .or_else(|| presented(&headers, "x-admin-token"));
    if disabled(&state, &state.config.admin_token) {
        return disabled_response("the dashboard", "--admin-token");
    }
    if allowed(&state.config.admin_token, given) {
        page(DASHBOARD_HTML)
    } else {
        let mut r = page(LOGIN_HTML);
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r
    }
}

async fn api_stats(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    if disabled(&state, &state.config.admin_token) {
        return disabled_response("/api/stats", "--admin-token");
    }
    let given = presented(&headers, "x-admin-token").or(q.token.as_deref());
    if !allowed(&state.config.admin_token, given) {
        return unauthorized(
            "stomp-relay admin",
            "admin token required: send `Authorization: Bearer <token>` (the server's --admin-token)",
        );
    }
    let mut r = axum::Json(stats(&state)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST /api/publish` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    /// With `user`, the user-relative destination (`/queue/notes`, received on
    /// `/user/queue/notes`); else a broker destination.
    destination: String,
    /// Send to every session of this user, on any instance (`convertAndSendToUser`).
    #[serde(default)]
    user: Option<String>,
    /// A string is sent as UTF-8 text; any other JSON value is sent as JSON text with
    /// `content-type: application/json` (what `convertAndSend` does with an object).
    #[serde(default)]
    body: Option<serde_json::Value>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

async fn api_publish(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if disabled(&state, &state.config.api_key) {
        return disabled_response("the publish API", "--api-key");
    }
    if !allowed(&state.config.api_key, presented(&headers, "x-api-key")) {
        return unauthorized(
            "stomp-relay publish",
            "API key required: send `X-API-Key: <key>` or `Authorization: Bearer <key>` (the server's --api-key)",
        );
    }
    let req: PublishRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "request body is not a valid publish request: {e}; expected JSON like \
                     {{\"destination\": \"/sub/chat/lobby\", \"body\": \"hello\", \"headers\": {{}}}}"
                ),
            )
        }
    };
    for (name, value) in &req.headers {
        if name.is_empty() || name.contains([':', '\r', '\n']) {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("header name `{name}` is not allowed: it must be non-empty without `:` or line breaks"),
            );
        }
        if crate::frame::SERVER_MESSAGE_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("header `{name}` is set by the server and cannot be given"),
            );
        }
        if value.contains(['\r', '\n']) {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("header `{name}`: the value must not contain line breaks"),
            );
        }
    }
    let mut hs: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let has_type = req
        .headers
        .keys()
        .any(|n| n.eq_ignore_ascii_case("content-type"));
    let payload: Vec<u8> = match &req.body {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(s)) => {
            if !has_type {
                hs.push(("content-type", "text/plain;charset=UTF-8"));
            }
            s.as_bytes().to_vec()
        }
        Some(other) => {
            if !has_type {
                hs.push(("content-type", "application/json"));
            }
            other.to_string().into_bytes()
        }
    };
    let max = state.config.limits.max_frame_size;
    let size = payload.len() + hs.iter().map(|(n, v)| n.len() + v.len() + 2).sum::<usize>();
    if size + req.destination.len() + 64 > max {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the message ({size} bytes of body and headers) exceeds the max frame size of {max} bytes (--max-frame-size)"),
        );
    }
    let bytes = payload.len();
    let publisher = Publisher::new(state.publish.clone());
    let sent = match &req.user {
        Some(user) if user.is_empty() => {
            return json_error(StatusCode::BAD_REQUEST, "`user` must not be empty")
        }
        Some(user) => publisher
            .send_to_user(user, &req.destination, &hs, payload)
            .map(Some),
        None => publisher
            .publish(&req.destination, &hs, payload)
            .map(|()| None),
    };
    match sent {
        Ok(None) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({
                "status": "published",
                "destination": req.destination,
                "bytes": bytes,
            })),
        )
            .into_response(),
        // Like Spring, a user with no session anywhere is not an error; the answer says
        // so and the metric counts it.
        Ok(Some(sessions)) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({
                "status": if sessions == 0 { "no_session" } else { "published" },
                "user": req.user,
                "destination": req.destination,
                "sessions": sessions,
                "bytes": bytes,
            })),
        )
            .into_response(),
        Err(PublishError::Destination(why)) => json_error(StatusCode::BAD_REQUEST, why),
        Err(PublishError::Broker(BrokerError::Rejected(why))) => {
            json_error(StatusCode::BAD_REQUEST, why)
        }
        Err(PublishError::Broker(e)) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(allowed(&None, None));
        assert!(allowed(&None, Some("x")));
        let s = Some(crate::secret::Secret::from("s3cret"));
        assert!(allowed(&s, Some("s3cret")));
        assert!(!allowed(&s, Some("s3cre")));
        assert!(!allowed(&s, Some("s3cret ")));
        assert!(!allowed(&s, None));
    }

    #[test]
    fn bearer_or_named_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h, "x-api-key"), None);
        h.insert("x-api-key", HeaderValue::from_static("k1"));
        assert_eq!(presented(&h, "x-api-key"), Some("k1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k2"));
        assert_eq!(presented(&h, "x-api-key"), Some("k2"));
    }

    /// The OpenAPI document is valid JSON and describes every HTTP route served.
    #[test]
    fn openapi_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().expect("paths");
        for p in [
            "/",
            "/dashboard",
            "/api/stats",
            "/api/publish",
            "/openapi.json",
            "/ws",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(paths.contains_key(p), "openapi.json lacks {p}");
        }
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    /// The vendored stompjs bundle is the version the lockfile pins.
    #[test]
    fn vendored_bundles_match_the_lockfile() {
        let lock: serde_json::Value =
            serde_json::from_str(include_str!("../../web/package-lock.json")).expect("lockfile");
        for (pkg, recorded, bundle, marker) in [
            (
                "@stomp/stompjs",
                include_str!("../../web/vendor/stompjs.version"),
                STOMPJS,
                "StompJs",
            ),
            (
                "sockjs-client",
                include_str!("../../web/vendor/sockjs.version"),
                SOCKJS,
                "sockjs-client",
            ),
        ] {
            let locked = lock["packages"][format!("node_modules/{pkg}")]["version"]
                .as_str()
                .unwrap_or_else(|| panic!("{pkg} in the lockfile"));
            assert!(
                recorded.starts_with(&format!("{pkg} {locked} ")),
                "vendor says `{}` but the lockfile pins {pkg} {locked}: run `npm ci && npm run vendor` in std-host/web",
                recorded.trim()
            );
            assert!(bundle.contains(marker), "{pkg}: not the browser bundle");
        }
    }

    #[test]
    fn the_chat_page_points_at_the_first_endpoint() {
        assert!(
            CHAT_HTML.contains(r#"<body class="chat" data-endpoint="/ws" data-sockjs="false">"#)
        );
        let config = crate::config::Config {
            endpoints: vec!["/ws-stomp".into(), "/ws".into()],
            sockjs: Some(Default::default()),
            ..Default::default()
        };
        let html = chat_page(&config);
        assert!(
            html.contains(r#"<body class="chat" data-endpoint="/ws-stomp" data-sockjs="true">"#),
            "{html}"
        );
    }
}
