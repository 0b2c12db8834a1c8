//! Which way a client frame goes once its [`Session`](crate::Session) accepted it: the
//! one decision between the session's [`Event`](crate::session::Event) and the host's
//! backends, made here so every host routes alike (quinn-proto's `Endpoint` decides
//! which connection an input belongs to the same way, with no I/O).
//!
//! [`Router::dispatch`] takes the frame's command and destination and answers a
//! [`Route`]: open the broker session, hand the frame to the broker backend (under
//! which destination), to the application handlers, to another user's sessions, end
//! the broker session, or refuse with an ERROR text. The host only carries it out.
//!
//! Invariants: a SEND or SUBSCRIBE reaches the broker only under a broker prefix; a
//! SUBSCRIBE to `/user/...` is resolved to this session's own queue and never to
//! another's; a SUBSCRIBE naming another session's resolved user queue directly
//! (`/queue/x-user<their id>`) is refused with an ERROR naming it, so user destinations
//! stay private even to a client that learned another session's id.

use crate::codec::Command;
use crate::router::{Destination, RouteError, Router};
use crate::session::SessionId;

/// Where a client frame goes. Destinations borrow the frame or the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'c, 'd> {
    /// CONNECT/STOMP: authenticate, open the broker session, then
    /// [`Session::accept`](crate::Session::accept).
    Open,
    /// SEND or SUBSCRIBE for the broker backend, with this destination: the client's
    /// own, or for a SUBSCRIBE to `/user/queue/x` this session's `/queue/x-user<id>`.
    Broker(&'d [u8]),
    /// UNSUBSCRIBE, ACK, NACK, BEGIN, COMMIT, ABORT: to the broker backend as sent.
    Forward,
    /// SEND or SUBSCRIBE to an application destination: the host's handlers, then
    /// [`Router::route_app`] for a SEND no handler took.
    App(&'d [u8]),
    /// SEND to `/user/<user>/<target>`: publish to
    /// [`Router::user_target`]`(target, s)` for each session `s` of `user`.
    User {
        /// The addressed user.
        user: &'d [u8],
        /// The broker destination under the user (`queue/x`).
        target: &'d [u8],
    },
    /// DISCONNECT: end the broker session (its receipt, if forwarded, goes with it).
    Close,
    /// Refused: the session ends with an ERROR whose `message` is this.
    Reject(Rejection<'c, 'd>),
}

/// Why [`Router::dispatch`] refused a frame. `Display` is the ERROR `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection<'c, 'd> {
    /// The destination does not route (see [`RouteError`]).
    Route(RouteError<'c>),
    /// A SUBSCRIBE to another session's resolved user destination.
    OtherSession {
        /// The destination asked for.
        destination: &'d [u8],
    },
}

impl<'c> From<RouteError<'c>> for Rejection<'c, '_> {
    fn from(e: RouteError<'c>) -> Self {
        Rejection::Route(e)
    }
}

impl core::fmt::Display for Rejection<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Rejection::Route(e) => e.fmt(f),
            Rejection::OtherSession { destination } => {
                f.write_str("Cannot subscribe to ")?;
                for chunk in destination.utf8_chunks() {
                    f.write_str(chunk.valid())?;
                    if !chunk.invalid().is_empty() {
                        f.write_str("\u{fffd}")?;
                    }
                }
                f.write_str(": it is another session's user destination")
            }
        }
    }
}

impl Route<'_, '_> {
    /// Whether this server itself handles the frame (application and user routes), so
    /// the frame's receipt is answered here even when the broker backend forwards
    /// receipts.
    pub fn handled_here(&self) -> bool {
        matches!(self, Route::App(_) | Route::User { .. })
    }
}

/// `dest` ends in `-user<id>` ([`Router::user_target`]'s form): the session it names.
fn resolved_session(dest: &[u8]) -> Option<SessionId> {
    let split = dest.len().checked_sub(SessionId::HEX_LEN)?;
    let (head, id) = dest.split_at(split);
    if !head.ends_with(b"-user") {
        return None;
    }
    SessionId::parse_hex(id)
}

impl<'c> Router<'c> {
    /// Decides where a frame the session accepted goes. `destination` is the frame's
    /// (plain, unescaped) `destination` header; `out` receives a resolved user
    /// destination.
    pub fn dispatch<'d>(
        &self,
        command: Command,
        destination: Option<&'d [u8]>,
        session: SessionId,
        out: &'d mut [u8],
    ) -> Route<'c, 'd>
    where
        'c: 'd,
    {
        let dest = match command {
            Command::Connect | Command::Stomp => return Route::Open,
            Command::Disconnect => return Route::Close,
            Command::Unsubscribe
            | Command::Ack
            | Command::Nack
            | Command::Begin
            | Command::Commit
            | Command::Abort => return Route::Forward,
            Command::Send | Command::Subscribe => match destination {
                Some(d) => d,
                None => return Route::Reject(RouteError::MissingDestination.into()),
            },
            _ => return Route::Reject(RouteError::NotAClientFrame.into()),
        };
        let class = match self.classify(dest) {
            Ok(c) => c,
            Err(e) => return Route::Reject(e.into()),
        };
        let subscribe = command == Command::Subscribe;
        match class {
            Destination::App(d) => Route::App(d),
            Destination::Broker(d) => {
                let foreign = self.config().user_prefix.is_some()
                    && resolved_session(d).is_some_and(|s| s != session);
                if subscribe && foreign {
                    Route::Reject(Rejection::OtherSession { destination: d })
                } else {
                    Route::Broker(d)
                }
            }
            Destination::User(rest) if subscribe => {
                match self.user_subscription(rest, session, out) {
                    Ok(resolved) => Route::Broker(resolved),
                    Err(e) => Route::Reject(e.into()),
                }
            }
            Destination::User(rest) => match self.user_send(rest) {
                Ok((user, target)) => Route::User { user, target },
                Err(e) => Route::Reject(e.into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::RouterConfig;
    use std::format;
    use std::string::String;

    const ME: SessionId = SessionId::new(0x2a);
    const MINE: &str = "0000000000000000000000000000002a";
    const THEIRS: &str = "0000000000000000000000000000002b";

    fn route(command: Command, dest: &[u8]) -> String {
        use core::fmt::Write as _;
        let r = Router::new(RouterConfig::default());
        let mut out = [0u8; 128];
        let mut s = String::new();
        match r.dispatch(command, Some(dest), ME, &mut out) {
            Route::Broker(d) => write!(s, "broker {}", core::str::from_utf8(d).unwrap()),
            Route::App(d) => write!(s, "app {}", core::str::from_utf8(d).unwrap()),
            Route::User { user, target } => write!(
                s,
                "user {} {}",
                core::str::from_utf8(user).unwrap(),
                core::str::from_utf8(target).unwrap()
            ),
            Route::Reject(e) => write!(s, "reject {e}"),
            other => write!(s, "{other:?}"),
        }
        .unwrap();
        s
    }

    #[test]
    fn sends_go_by_prefix() {
        assert_eq!(route(Command::Send, b"/topic/a"), "broker /topic/a");
        assert_eq!(route(Command::Send, b"/pub/chat"), "app /pub/chat");
        assert_eq!(
            route(Command::Send, b"/user/bob/queue/x"),
            "user bob queue/x"
        );
        assert_eq!(
            route(Command::Send, b"/other/x"),
            "reject Destination must start with one of: /pub/ /sub/ /topic/ /queue/ /user/"
        );
        assert_eq!(
            route(Command::Send, b"/user/queue"),
            "reject User destination needs a user name: /user/<name>/queue/x"
        );
    }

    #[test]
    fn user_subscriptions_resolve_to_this_session_only() {
        assert_eq!(
            route(Command::Subscribe, b"/user/queue/x"),
            format!("broker /queue/x-user{MINE}")
        );
        // The session's own resolved queue may be named directly; another's may not.
        let mine = format!("/queue/x-user{MINE}");
        assert_eq!(
            route(Command::Subscribe, mine.as_bytes()),
            format!("broker {mine}")
        );
        let theirs = format!("/queue/x-user{THEIRS}");
        assert_eq!(
            route(Command::Subscribe, theirs.as_bytes()),
            format!(
                "reject Cannot subscribe to {theirs}: it is another session's user destination"
            )
        );
        // A SEND there is what `/user/<name>/...` does anyway.
        assert_eq!(
            route(Command::Send, theirs.as_bytes()),
            format!("broker {theirs}")
        );
        // Not a resolved user queue: too short, not hex, not `-user`.
        for other in [
            "/queue/x-user42",
            "/queue/x-user",
            "/queue/x-0000000000000000000000000000002b",
            "/queue/x-user0000000000000000000000000000002B",
            "/queue/x-user000000000000000000000000000000zz",
        ] {
            assert_eq!(
                route(Command::Subscribe, other.as_bytes()),
                format!("broker {other}")
            );
        }
    }

    #[test]
    fn user_destinations_off_leave_look_alikes_alone() {
        let r = Router::new(RouterConfig {
            user_prefix: None,
            ..RouterConfig::default()
        });
        let mut out = [0u8; 64];
        let theirs = format!("/queue/x-user{THEIRS}");
        assert_eq!(
            r.dispatch(Command::Subscribe, Some(theirs.as_bytes()), ME, &mut out),
            Route::Broker(theirs.as_bytes())
        );
    }

    #[test]
    fn other_commands() {
        let r = Router::new(RouterConfig::default());
        let go = |c| r.dispatch(c, None, ME, &mut []);
        assert_eq!(go(Command::Stomp), Route::Open);
        assert_eq!(go(Command::Disconnect), Route::Close);
        for c in [
            Command::Unsubscribe,
            Command::Ack,
            Command::Nack,
            Command::Begin,
            Command::Commit,
            Command::Abort,
        ] {
            assert_eq!(go(c), Route::Forward);
        }
        assert_eq!(
            go(Command::Send),
            Route::Reject(RouteError::MissingDestination.into())
        );
        assert_eq!(
            go(Command::Message),
            Route::Reject(RouteError::NotAClientFrame.into())
        );
    }

    #[test]
    fn only_app_and_user_routes_are_handled_here() {
        assert!(Route::App(b"/pub/x").handled_here());
        assert!(Route::User {
            user: b"u",
            target: b"queue/x"
        }
        .handled_here());
        assert!(!Route::Broker(b"/topic/x").handled_here());
        assert!(!Route::Forward.handled_here());
    }
}
