//! The embedding API: application handlers for application destinations and a
//! publisher usable from anywhere.
//!
//! - [`MessageHandler`]: Spring's `@MessageMapping` (+ `@SendTo` / `@SendToUser`): a SEND
//!   to an application destination matching the handler's pattern calls it with the
//!   destination, the captured `{variables}`, headers, body and user; it returns zero or
//!   more [`Reply`]s, each published to a broker destination or sent to a user.
//! - [`SubscribeHandler`]: `@SubscribeMapping`: a SUBSCRIBE to a matching application
//!   destination is answered once, directly to that subscription.
//! - [`Publisher`]: `SimpMessagingTemplate`: `publish(destination, headers, body)` and
//!   `send_to_user(user, destination, headers, body)` from any task or thread.
//!
//! Patterns use relay-core's syntax (`/pub/chat/{room}`, `/pub/admin/**`); matching,
//! capture and user-destination resolution are relay-core's, not re-implemented here.

use std::sync::Arc;

use bytes::Bytes;
use stomp_relay_codec::Command;
use stomp_relay_core::router::{Router, RouterConfig};

use crate::broker::{Broker, BrokerError};
use crate::frame::OwnedFrame;
use crate::outbound::SessionId;

/// A message an application handler receives.
#[derive(Debug, Clone)]
pub struct AppMessage {
    /// The destination the client sent to (e.g. `/pub/chat/room1`).
    pub destination: String,
    /// Variables captured by the handler's pattern (`room` -> `room1`).
    pub vars: Vec<(String, String)>,
    /// The client's frame: headers (plain) and body.
    pub frame: OwnedFrame,
    /// The authenticated user of the sending session, if any.
    pub user: Option<String>,
    /// The sending session.
    pub session_id: SessionId,
}

impl AppMessage {
    /// A captured variable.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A header of the client's frame.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.frame.header_str(name)
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.frame.body
    }

    /// The body as UTF-8 text (lossy).
    pub fn body_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.frame.body)
    }
}

/// Headers and body of a message the application sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    /// Extra headers (`content-type`, custom ones).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl Payload {
    /// A payload with a body and no headers.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Payload {
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What a message handler returns, one per message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Publish to a broker destination (`@SendTo`); every subscriber receives it.
    Publish {
        /// Broker destination, e.g. `/sub/chat/room1`.
        destination: String,
        /// Headers and body.
        payload: Payload,
    },
    /// Send to every session of a user (`@SendToUser` / `convertAndSendToUser`);
    /// `destination` is the user-relative one, e.g. `/queue/replies`, which each of the
    /// user's sessions subscribed to as `/user/queue/replies`.
    ToUser {
        /// The user name.
        user: String,
        /// User-relative broker destination.
        destination: String,
        /// Headers and body.
        payload: Payload,
    },
}

impl Reply {
    /// `Publish` with a body.
    pub fn publish(destination: impl Into<String>, body: impl Into<Bytes>) -> Reply {
        Reply::Publish {
            destination: destination.into(),
            payload: Payload::new(body),
        }
    }

    /// `ToUser` with a body.
    pub fn to_user(
        user: impl Into<String>,
        destination: impl Into<String>,
        body: impl Into<Bytes>,
    ) -> Reply {
        Reply::ToUser {
            user: user.into(),
            destination: destination.into(),
            payload: Payload::new(body),
        }
    }

    /// Adds a header to the payload (builder style).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        match &mut self {
            Reply::Publish { payload, .. } | Reply::ToUser { payload, .. } => {
                payload.headers.push((name.into(), value.into()))
            }
        }
        self
    }
}

/// An `@MessageMapping` handler.
pub type MessageHandler = Arc<dyn Fn(&AppMessage) -> Vec<Reply> + Send + Sync>;

/// An `@SubscribeMapping` handler: the answer to send once to the new subscription.
pub type SubscribeHandler = Arc<dyn Fn(&AppMessage) -> Option<Payload> + Send + Sync>;

/// Authenticates a CONNECT: gets the client's CONNECT frame, returns the user name (or
/// none) or an error text sent to the client as an ERROR frame.
pub type Authenticator = Arc<dyn Fn(&OwnedFrame) -> Result<Option<String>, String> + Send + Sync>;

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// The destination is not under a broker prefix (text names the allowed ones).
    Destination(String),
    /// The broker refused or is unavailable.
    Broker(BrokerError),
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Destination(s) => f.write_str(s),
            PublishError::Broker(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PublishError {}

/// Owned router configuration; [`RouterSetup::router`] lends relay-core a view of it.
#[derive(Debug, Clone)]
pub struct RouterSetup {
    app: Vec<&'static str>,
    broker: Vec<&'static str>,
    user: &'static str,
    default_forward: Option<&'static str>,
}

impl RouterSetup {
    /// From the server configuration. The strings are leaked once per server (a few
    /// bytes) so the borrowed relay-core router can be built for free on every lookup.
    pub fn new(config: &crate::Config) -> Self {
        let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
        let broker: Vec<&'static str> = config.broker_prefixes.iter().map(|s| leak(s)).collect();
        RouterSetup {
            app: config.app_prefixes.iter().map(|s| leak(s)).collect(),
            default_forward: broker.first().copied(),
            broker,
            user: leak(&config.user_prefix),
        }
    }

    /// The relay-core router over this configuration.
    pub fn router(&self) -> Router<'_> {
        Router::new(RouterConfig {
            app_prefixes: &self.app,
            broker_prefixes: &self.broker,
            user_prefix: Some(self.user),
            routes: &[],
            default_forward: self.default_forward,
            ..RouterConfig::default()
        })
    }
}

/// State shared by every [`Publisher`] clone and the session tasks.
pub(crate) struct PublishCtx {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) users: Arc<crate::users::Users>,
    /// Messages to a user with no session on any instance (Spring drops them too).
    pub(crate) unresolved: prometheus_client::metrics::counter::Counter,
    pub(crate) routes: RouterSetup,
}

/// Publishes from anywhere (Spring's `SimpMessagingTemplate`). Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    pub(crate) ctx: Arc<PublishCtx>,
}

impl Publisher {
    /// A publisher over `ctx` (the server's and the web API's are the same one).
    pub(crate) fn new(ctx: Arc<PublishCtx>) -> Publisher {
        Publisher { ctx }
    }

    /// Publishes to a broker destination: every subscriber receives a MESSAGE.
    pub fn publish(
        &self,
        destination: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<(), PublishError> {
        let router = self.ctx.routes.router();
        if !router.is_broker(destination.as_bytes()) {
            return Err(PublishError::Destination(format!(
                "`{destination}` is not under a broker prefix ({})",
                self.ctx.routes.broker.join(" ")
            )));
        }
        let mut f = OwnedFrame::new(Command::Send).with_header("destination", destination);
        for (n, v) in headers {
            f.push_header(n, v);
        }
        f.body = body.into();
        self.ctx.broker.publish(f).map_err(PublishError::Broker)
    }

    /// Sends to every session of `user` on the user-relative `destination`
    /// (`/queue/replies`, received on `/user/queue/replies`), on this instance and, in
    /// relay mode, on every instance sharing the broker. Returns how many sessions it
    /// went to. Sending to a user with no session is not an error: like Spring, the
    /// message is not delivered (and counted in
    /// `stomp_user_messages_unresolved_total`).
    pub fn send_to_user(
        &self,
        user: &str,
        destination: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<usize, PublishError> {
        let body = body.into();
        // The destination is checked also when the user has no session.
        self.user_target(destination, SessionId::new(0))?;
        let sessions = self.ctx.users.sessions(user);
        if sessions.is_empty() {
            self.ctx.unresolved.inc();
            tracing::debug!(%user, %destination, "no session of the user on any instance; message dropped");
        }
        for &sid in &sessions {
            self.send_to_session(sid, destination, headers, body.clone())?;
        }
        Ok(sessions.len())
    }

    /// Sends to one session's user-relative `destination` (`/queue/x`, received on its
    /// `/user/queue/x`), on whichever instance holds it.
    pub fn send_to_session(
        &self,
        session: SessionId,
        destination: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<(), PublishError> {
        let resolved = self.user_target(destination, session)?;
        self.publish(&resolved, headers, body)
    }

    fn user_target(&self, destination: &str, session: SessionId) -> Result<String, PublishError> {
        let target = destination.trim_start_matches('/').as_bytes();
        let mut out = vec![0u8; target.len() + 64];
        let router = self.ctx.routes.router();
        router
            .user_target(target, session, &mut out)
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .map_err(|e| PublishError::Destination(e.to_string()))
    }

    /// Sends a handler's [`Reply`].
    pub fn send_reply(&self, reply: &Reply) -> Result<(), PublishError> {
        let (h, body, dest) = match reply {
            Reply::Publish {
                destination,
                payload,
            }
            | Reply::ToUser {
                destination,
                payload,
                ..
            } => (&payload.headers, payload.body.clone(), destination),
        };
        let headers: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        match reply {
            Reply::Publish { .. } => self.publish(dest, &headers, body),
            Reply::ToUser { user, .. } => self.send_to_user(user, dest, &headers, body).map(drop),
        }
    }
}
