//! The JSON the proxies POST and the answers they read (docs/proxies.md is the
//! reference for back end authors). Every request carries the session id and user;
//! every answer is `{"result": {...}}` (allow / handled) or `{"error": {"message": ...}}`
//! (deny / failed). Bodies travel as `body` (UTF-8 text) or `body_base64` (anything
//! else), in both directions.

use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ProxyError;

/// Headers as a JSON object (a repeated header keeps its first value, as STOMP reads it).
pub type Headers = BTreeMap<String, String>;

/// What the connect proxy is asked.
#[derive(Debug, Serialize)]
pub struct ConnectRequest<'a> {
    pub session: String,
    pub transport: &'a str,
    pub remote_addr: Option<String>,
    /// CONNECT's headers (`passcode` only when configured).
    pub headers: Headers,
    /// The handshake headers named by `--proxy-http-header`.
    pub http_headers: Headers,
    /// The user authentication (JWT, users file) established, if any.
    pub user: Option<&'a str>,
    /// Its claims.
    pub claims: &'a Map<String, Value>,
}

/// The connect proxy's allow.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectResult {
    /// The session's user name (`/user/` destinations, authorization rules).
    pub user: Option<String>,
    /// Claims for authorization rules, merged over those of authentication.
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// Extra headers for CONNECTED.
    #[serde(default)]
    pub headers: Headers,
}

/// What the subscribe proxy is asked.
#[derive(Debug, Serialize)]
pub struct SubscribeRequest {
    pub session: String,
    pub user: Option<String>,
    pub destination: String,
    pub subscription: String,
    /// Variables the route's pattern captured.
    pub vars: BTreeMap<String, String>,
    pub headers: Headers,
}

/// The subscribe proxy's allow.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeResult {
    /// A first MESSAGE for this subscriber only (`@SubscribeMapping`).
    pub reply: Option<Message>,
}

/// What the application proxy is asked.
#[derive(Debug, Serialize)]
pub struct AppRequest {
    pub session: String,
    pub user: Option<String>,
    pub destination: String,
    pub vars: BTreeMap<String, String>,
    /// The SEND's headers (`receipt` and `transaction` are the server's business).
    pub headers: Headers,
    #[serde(flatten)]
    pub body: Body,
}

/// The application proxy's answer.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppResult {
    /// Messages to broker destinations, for every subscriber (`@SendTo`).
    #[serde(default)]
    pub publish: Vec<Message>,
    /// Messages to the sender's user destinations (`@SendToUser`): `/queue/x` reaches
    /// `/user/queue/x` of every session of the sender's user (or of this session only,
    /// with `session_only`, and always for a session without a user).
    #[serde(default)]
    pub reply: Vec<Message>,
}

/// A message a back end asks to send.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Where it goes (not used for a subscribe reply).
    pub destination: Option<String>,
    #[serde(default)]
    pub headers: Headers,
    pub body: Option<String>,
    pub body_base64: Option<String>,
    /// For `reply`: only the sending session, not all of its user's sessions.
    #[serde(default)]
    pub session_only: bool,
}

impl Message {
    /// The body as bytes (empty when neither form is given).
    pub fn body_bytes(&self) -> Result<Bytes, ProxyError> {
        match (&self.body, &self.body_base64) {
            (Some(_), Some(_)) => Err(ProxyError::Answer(
                "a message has both `body` and `body_base64`".into(),
            )),
            (Some(t), None) => Ok(Bytes::from(t.clone())),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(Bytes::from)
                .map_err(|e| ProxyError::Answer(format!("`body_base64` is not base64: {e}"))),
            (None, None) => Ok(Bytes::new()),
        }
    }

    /// Its destination, required for `publish` and `reply`.
    pub fn destination(&self) -> Result<&str, ProxyError> {
        self.destination
            .as_deref()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| ProxyError::Answer("a message without `destination`".into()))
    }
}

/// A client body on its way to a back end.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Body {
    Text { body: String },
    Base64 { body_base64: String },
}

impl Body {
    /// Text when the bytes are UTF-8, else base64.
    pub fn of(bytes: &[u8]) -> Body {
        match std::str::from_utf8(bytes) {
            Ok(t) => Body::Text { body: t.to_owned() },
            Err(_) => Body::Base64 {
                body_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            },
        }
    }
}

/// The answer envelope.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer<T> {
    pub result: Option<T>,
    pub error: Option<BackendError>,
}

/// A back end's refusal.
#[derive(Debug, Deserialize)]
pub struct BackendError {
    pub message: String,
}

impl<T> Answer<T> {
    /// The result, the back end's refusal as [`ProxyError::Denied`], or an error for an
    /// answer with neither or both.
    pub fn into_result(self) -> Result<T, ProxyError> {
        match (self.result, self.error) {
            (Some(r), None) => Ok(r),
            (None, Some(e)) => Err(ProxyError::Denied(e.message)),
            (Some(_), Some(_)) => Err(ProxyError::Answer(
                "the answer has both `result` and `error`".into(),
            )),
            (None, None) => Err(ProxyError::Answer(
                "the answer has neither `result` nor `error`".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_go_as_text_or_base64() {
        let t = serde_json::to_value(Body::of("héllo".as_bytes())).unwrap();
        assert_eq!(t, serde_json::json!({"body": "héllo"}));
        let b = serde_json::to_value(Body::of(&[0xff, 0, 1])).unwrap();
        assert_eq!(b, serde_json::json!({"body_base64": "/wAB"}));
        let m: Message =
            serde_json::from_str(r#"{"destination":"/t","body_base64":"/wAB"}"#).unwrap();
        assert_eq!(&m.body_bytes().unwrap()[..], &[0xff, 0, 1]);
    }

    #[test]
    fn answers() {
        let a: Answer<ConnectResult> =
            serde_json::from_str(r#"{"result":{"user":"bob","claims":{"role":"admin"}}}"#).unwrap();
        let r = a.into_result().unwrap();
        assert_eq!(r.user.as_deref(), Some("bob"));
        assert_eq!(r.claims["role"], "admin");
        let a: Answer<ConnectResult> =
            serde_json::from_str(r#"{"error":{"message":"banned"}}"#).unwrap();
        assert!(matches!(a.into_result(), Err(ProxyError::Denied(m)) if m == "banned"));
        let a: Answer<ConnectResult> = serde_json::from_str("{}").unwrap();
        assert!(matches!(a.into_result(), Err(ProxyError::Answer(_))));
        assert!(serde_json::from_str::<Answer<AppResult>>(r#"{"result":{"publsh":[]}}"#).is_err());
    }
}
