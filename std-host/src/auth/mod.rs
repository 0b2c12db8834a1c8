//! Who may connect and what they may do: authentication of CONNECT (JWT, a static users
//! file, or anonymous when allowed), authorization of SEND and SUBSCRIBE by destination
//! rules, the WebSocket handshake checks (Origin allow-list, token from a header, query
//! parameter or cookie) and the per-session SEND rate and subscription limits.
//!
//! The session task calls in at three places only: [`SessionGuard::authenticate`] when a
//! CONNECT arrives, [`SessionGuard::check`] before a SEND or SUBSCRIBE is routed, and
//! [`check_handshake`] before a WebSocket upgrade. Everything else lives here.
//!
//! Invariants: a client that fails authentication learns only `Authentication failed`
//! (the reason goes to the log, never key material or the token); credentials given but
//! wrong never fall back to anonymous; with no authentication configured the server
//! behaves as before (anonymous, the CONNECT `login` as user name) so a zero-setup run
//! keeps working.

pub mod authorize;
pub mod jwt;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode, Uri};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::abuse::{IpLimiter, TokenBucket};
use crate::config::load_error::LoadError;
use crate::config::origin::AllowedOrigins;
pub use crate::config::security::{AuthorizationFile, OnSendDenied, SecurityArgs, SecurityConfig};
use crate::frame::OwnedFrame;
pub use authorize::{Op, Rule};

/// The ERROR `message` for every authentication failure.
pub const AUTH_FAILED: &str = "Authentication failed";

/// Concurrent argon2 verifications (each takes tens of milliseconds of CPU); more
/// CONNECTs wait, so a login flood cannot take every core.
const PASSWORD_CHECKS: usize = 2;

/// The security configuration made ready to use (keys parsed, users loaded, TLS set up).
pub struct Security {
    /// The configuration it was built from.
    pub config: SecurityConfig,
    jwt: Option<jwt::JwtVerifier>,
    users: Option<Arc<users::Users>>,
    password_checks: Arc<Semaphore>,
    /// Per-IP connection counts.
    pub ip_limiter: IpLimiter,
    /// TLS for the listeners, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Whether the WebSocket Origin is checked (see [`check_handshake`]).
    check_origin: bool,
    /// `--allowed-origin`, parsed.
    origins: AllowedOrigins,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("jwt", &self.jwt)
            .field("users", &self.users)
            .field("rules", &self.config.rules.len())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Security {
    /// Loads keys, users and certificates. Errors are one line naming the flag and file.
    pub fn build(config: &SecurityConfig, listen: SocketAddr) -> Result<Security, LoadError> {
        let jwt = jwt::JwtVerifier::new(
            config.jwt_secret.as_deref(),
            config.jwt_public_key.as_deref(),
            config.jwt_issuer.clone(),
            config.jwt_audience.clone(),
        )?;
        let users = match &config.users_file {
            Some(p) => Some(Arc::new(users::Users::load(p)?)),
            None => None,
        };
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(c), Some(k)) => Some(crate::tls::acceptor(c, k)?),
            _ => None,
        };
        Ok(Security {
            config: config.clone(),
            jwt,
            users,
            password_checks: Arc::new(Semaphore::new(PASSWORD_CHECKS)),
            ip_limiter: IpLimiter::new(config.max_connections_per_ip),
            tls,
            check_origin: !config.allowed_origins.is_empty() || !listen.ip().is_loopback(),
            origins: AllowedOrigins::parse(&config.allowed_origins).map_err(LoadError::Origin)?,
        })
    }
}

impl Security {
    /// The `--allowed-origin` list.
    pub fn origins(&self) -> &AllowedOrigins {
        &self.origins
    }
}

/// Credentials seen in the WebSocket handshake.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    /// A bearer token from the `Authorization` header, query parameter or cookie.
    pub token: Option<String>,
    /// The client's address (for the connect proxy).
    pub remote: Option<SocketAddr>,
    /// The handshake headers named by `--proxy-http-header`, for the connect proxy.
    pub http_headers: Vec<(String, String)>,
}

/// Who a session is, once authenticated.
#[derive(Debug, Clone, Default)]
pub struct Principal {
    /// The user name (`/user/` destinations), if any.
    pub user: Option<String>,
    /// Claims for authorization rules (JWT claims, or the users file's entries).
    pub claims: Map<String, Value>,
}

/// A refusal the session must act on.
#[derive(Debug)]
pub enum Refusal {
    /// ERROR with this message, then close.
    Close(String),
    /// ERROR with this message; the session stays open.
    Error(String),
}

/// A frame that started arriving did not complete within the header read timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTimeout(pub std::time::Duration);

impl std::fmt::Display for FrameTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame not completed within {} ms", self.0.as_millis())
    }
}

impl std::error::Error for FrameTimeout {}

/// Per-session security state: handshake credentials, the principal, the SEND bucket.
/// Boxed parts keep it at a few words in every idle session.
#[derive(Debug)]
pub struct SessionGuard {
    handshake_token: Option<Box<str>>,
    principal: Option<Box<Principal>>,
    bucket: Option<Box<TokenBucket>>,
    /// When the frame now partially received started to arrive without any frame
    /// completing since (slow-loris within a session).
    partial_since: Option<std::time::Instant>,
    frame_timeout: std::time::Duration,
}

static NO_CLAIMS: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();

fn bearer(v: &str) -> Option<&str> {
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl SessionGuard {
    /// State for a new session.
    pub fn new(sec: &Security, handshake: Handshake) -> SessionGuard {
        let c = &sec.config;
        SessionGuard {
            handshake_token: handshake.token.map(String::into_boxed_str),
            principal: None,
            bucket: (c.send_rate > 0)
                .then(|| Box::new(TokenBucket::new(c.send_rate, c.send_burst))),
            partial_since: None,
            frame_timeout: c.header_read_timeout,
        }
    }

    /// Authenticates a CONNECT. `Ok(user)` sets the session's user name; `Err` is the
    /// reason for the log (the client gets [`AUTH_FAILED`]).
    pub async fn authenticate(
        &mut self,
        sec: &Security,
        connect: &OwnedFrame,
    ) -> Result<Option<String>, String> {
        let login = connect.header_str("login").filter(|s| !s.is_empty());
        let passcode = connect.header_str("passcode").filter(|s| !s.is_empty());
        if !sec.config.has_auth() {
            // Zero-setup behaviour: anonymous, named by `login` (unless switched off).
            if !sec.config.anonymous_allowed() {
                return Err("anonymous access disabled and no authentication configured".into());
            }
            return Ok(login.map(str::to_string));
        }
        // A token: CONNECT `Authorization: Bearer`, then `passcode` (when it is a JWT, or
        // when there is no users file), then the WebSocket handshake.
        let token = connect
            .header_str("Authorization")
            .or_else(|| connect.header_str("authorization"))
            .and_then(bearer)
            .map(str::to_string)
            .or_else(|| {
                passcode
                    .filter(|p| sec.users.is_none() || jwt::looks_like_jwt(p))
                    .filter(|_| sec.jwt.is_some())
                    .map(str::to_string)
            })
            .or_else(|| self.handshake_token.as_deref().map(str::to_string));
        if let Some(token) = token {
            let Some(v) = &sec.jwt else {
                return Err("bearer token given but no JWT key configured".into());
            };
            let claims = v.verify(&token).map_err(|e| e.to_string())?;
            let user = match claims.get("sub") {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            };
            self.principal = Some(Box::new(Principal {
                user: user.clone(),
                claims,
            }));
            return Ok(user);
        }
        if let (Some(users), Some(login), Some(pass)) = (&sec.users, login, passcode) {
            let users = users.clone();
            let (l, p) = (login.to_string(), pass.to_string());
            let _permit = sec
                .password_checks
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| "shutting down".to_string())?;
            let claims = tokio::task::spawn_blocking(move || users.verify(&l, &p))
                .await
                .map_err(|_| "password check failed".to_string())?
                .ok_or_else(|| format!("wrong login or passcode for `{login}`"))?;
            self.principal = Some(Box::new(Principal {
                user: Some(login.to_string()),
                claims,
            }));
            return Ok(Some(login.to_string()));
        }
        if login.is_some() || passcode.is_some() {
            return Err("credentials given that no configured method accepts".into());
        }
        if sec.config.anonymous_allowed() {
            return Ok(None);
        }
        Err("no credentials and anonymous access is not allowed".into())
    }

    /// What the connect proxy decided: its user name, when it named one, and its claims
    /// merged over those of authentication (authorization rules see both).
    pub fn grant(&mut self, user: Option<String>, claims: Map<String, Value>) {
        let p = self.principal.get_or_insert_with(Default::default);
        if user.is_some() {
            p.user = user;
        }
        p.claims.extend(claims);
    }

    /// The claims authentication (and the connect proxy) established.
    pub fn claims(&self) -> &Map<String, Value> {
        match &self.principal {
            Some(p) => &p.claims,
            None => NO_CLAIMS.get_or_init(Map::new),
        }
    }

    /// Called after each read: `completed` is whether a frame (or heart-beat) completed,
    /// `pending` whether bytes of an unfinished frame remain. A frame that keeps
    /// trickling in without completing for longer than the header read timeout is an
    /// error (a client streaming many frames always completes some, so it never trips).
    pub fn frame_progress(&mut self, completed: bool, pending: bool) -> Result<(), FrameTimeout> {
        let now = std::time::Instant::now();
        if completed || !pending {
            self.partial_since = pending.then_some(now);
            return Ok(());
        }
        let since = *self.partial_since.get_or_insert(now);
        if now.duration_since(since) > self.frame_timeout {
            return Err(FrameTimeout(self.frame_timeout));
        }
        Ok(())
    }

    /// Checks a SEND or SUBSCRIBE before it is routed. `subscriptions` is the session's
    /// subscription count including this SUBSCRIBE.
    pub fn check(
        &mut self,
        sec: &Security,
        op: Op,
        destination: &[u8],
        subscriptions: usize,
    ) -> Result<(), Refusal> {
        let c = &sec.config;
        if op == Op::Send {
            if let Some(b) = &mut self.bucket {
                if !b.take(std::time::Instant::now()) {
                    return Err(Refusal::Close(format!(
                        "SEND rate limit exceeded (at most {} per second)",
                        c.send_rate
                    )));
                }
            }
        }
        if op == Op::Subscribe && c.max_subscriptions != 0 && subscriptions > c.max_subscriptions {
            return Err(Refusal::Close(format!(
                "Too many subscriptions (at most {} per session)",
                c.max_subscriptions
            )));
        }
        if authorize::decide(&c.rules, op, destination, self.claims()) {
            return Ok(());
        }
        let dest = String::from_utf8_lossy(destination);
        let user = self.principal.as_ref().and_then(|p| p.user.as_deref());
        tracing::info!(user = ?user, command = %op, destination = %dest, "denied by authorization rules");
        let msg = format!("Access denied: {op} to {dest}");
        Err(match (op, c.on_send_denied) {
            (Op::Send, OnSendDenied::Error) => Refusal::Error(msg),
            _ => Refusal::Close(msg),
        })
    }
}

fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let o = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    !host.is_empty() && o.eq_ignore_ascii_case(host)
}

/// The `Origin` allow-list: `--allowed-origin` patterns and the server's own origin,
/// checked when a list is configured or the listen address is not loopback. Requests
/// without an `Origin` (non-browser clients) pass, as in Spring.
pub fn check_origin(sec: &Security, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    if sec.check_origin {
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            let o = origin.trim_end_matches('/').to_ascii_lowercase();
            // The server's own pages (chat, dashboard) are always allowed, as in Spring.
            let ok = same_origin(&o, headers) || sec.origins.listed(&o);
            if !ok {
                tracing::info!(origin = %origin, "connection refused: origin not allowed");
                return Err((StatusCode::FORBIDDEN, "origin not allowed\n"));
            }
        }
    }
    Ok(())
}

/// Checks a WebSocket upgrade request: the Origin allow-list, then collects a token from
/// the `Authorization` header, the configured query parameter or cookie. `Err` is the
/// HTTP refusal.
pub fn check_handshake(
    sec: &Security,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Handshake, (StatusCode, &'static str)> {
    check_origin(sec, headers)?;
    let mut token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_string);
    if token.is_none() {
        if let (Some(name), Some(q)) = (&sec.config.token_query_param, uri.query()) {
            token = q.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == name).then(|| percent_decode(v))
            });
        }
    }
    if token.is_none() {
        if let Some(name) = &sec.config.token_cookie {
            token = headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|kv| {
                    let (k, v) = kv.trim().split_once('=')?;
                    (k == name).then(|| v.trim_matches('"').to_string())
                });
        }
    }
    Ok(Handshake {
        token: token.filter(|t| !t.is_empty()),
        ..Default::default()
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Header names whose values never go to logs.
pub const SECRET_HEADERS: [&str; 3] = ["passcode", "authorization", "Authorization"];

/// A printable copy of `frame`'s headers with passcodes and tokens replaced by `***`,
/// for any log line that wants to show a client frame.
pub fn redacted_headers(frame: &OwnedFrame) -> Vec<(String, String)> {
    frame
        .headers
        .iter()
        .map(|(n, v)| {
            let name = String::from_utf8_lossy(n).into_owned();
            let value = if SECRET_HEADERS.iter().any(|s| s.eq_ignore_ascii_case(&name)) {
                "***".to_string()
            } else {
                String::from_utf8_lossy(v).into_owned()
            };
            (name, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_percent() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(percent_decode("a%2Eb%2"), "a.b%2");
        assert_eq!(percent_decode("x+y"), "x y");
    }

    #[test]
    fn redaction() {
        let f = OwnedFrame::new(stomp_relay_codec::Command::Connect)
            .with_header("login", "bob")
            .with_header("passcode", "hunter2")
            .with_header("Authorization", "Bearer tok");
        let shown = format!("{:?}", redacted_headers(&f));
        assert!(shown.contains("bob"));
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok"),
            "{shown}"
        );
    }
}
