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
//! (`/queue/x-user43` from session 42) is refused, so user destinations stay private.

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
    /// Refused: the session ends with an ERROR whose `message` is this error.
    Reject(RouteError<'c>),
}

impl Route<'_, '_> {
    /// Whether this server itself handles the frame (application and user routes), so
    /// the frame's receipt is answered here even when the broker backend forwards
    /// receipts.
    pub fn handled_here(&self) -> bool {
        matches!(self, Route::App(_) | Route::User { .. })
    }
}

/// `dest` ends in `-user<digits>`: the digits, parsed.
fn resolved_session(dest: &[u8]) -> Option<u64> {
    let digits = dest.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let (head, tail) = dest.split_at(dest.len() - digits);
    if digits == 0 || !head.ends_with(b"-user") {
        return None;
    }
    tail.iter().try_fold(0u64, |n, &b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
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
                None => return Route::Reject(RouteError::MissingDestination),
            },
            _ => return Route::Reject(RouteError::NotAClientFrame),
        };
        let class = match self.classify(dest) {
            Ok(c) => c,
            Err(e) => return Route::Reject(e),
        };
        let subscribe = command == Command::Subscribe;
        match class {
            Destination::App(d) => Route::App(d),
            Destination::Broker(d) => {
                let foreign = self.config().user_prefix.is_some()
                    && resolved_session(d).is_some_and(|s| s != session.0);
                if subscribe && foreign {
                    Route::Reject(RouteError::OtherSessionsDestination)
                } else {
                    Route::Broker(d)
                }
            }
            Destination::User(rest) if subscribe => {
                match self.user_subscription(rest, session, out) {
                    Ok(resolved) => Route::Broker(resolved),
                    Err(e) => Route::Reject(e),
                }
            }
            Destination::User(rest) => match self.user_send(rest) {
                Ok((user, target)) => Route::User { user, target },
                Err(e) => Route::Reject(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::RouterConfig;

    const ME: SessionId = SessionId(42);

    fn route(command: Command, dest: &[u8]) -> std::string::String {
        use core::fmt::Write as _;
        let r = Router::new(RouterConfig::default());
        let mut out = [0u8; 128];
        let mut s = std::string::String::new();
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
            "broker /queue/x-user42"
        );
        // The session's own resolved queue may be named directly; another's may not.
        assert_eq!(
            route(Command::Subscribe, b"/queue/x-user42"),
            "broker /queue/x-user42"
        );
        assert_eq!(
            route(Command::Subscribe, b"/queue/x-user43"),
            "reject Destination belongs to another session"
        );
        // A SEND there is what `/user/<name>/...` does anyway.
        assert_eq!(
            route(Command::Send, b"/queue/x-user43"),
            "broker /queue/x-user43"
        );
        // Not a resolved user queue: no digits, or not `-user`.
        assert_eq!(
            route(Command::Subscribe, b"/queue/x-user"),
            "broker /queue/x-user"
        );
        assert_eq!(
            route(Command::Subscribe, b"/queue/x-43"),
            "broker /queue/x-43"
        );
        // Digits beyond u64 are not a session number either.
        assert_eq!(
            route(Command::Subscribe, b"/queue/x-user99999999999999999999999"),
            "broker /queue/x-user99999999999999999999999"
        );
    }

    #[test]
    fn user_destinations_off_leave_look_alikes_alone() {
        let r = Router::new(RouterConfig {
            user_prefix: None,
            ..RouterConfig::default()
        });
        let mut out = [0u8; 64];
        assert_eq!(
            r.dispatch(Command::Subscribe, Some(b"/queue/x-user43"), ME, &mut out),
            Route::Broker(b"/queue/x-user43")
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
            Route::Reject(RouteError::MissingDestination)
        );
        assert_eq!(
            go(Command::Message),
            Route::Reject(RouteError::NotAClientFrame)
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
