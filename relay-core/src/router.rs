//! Destination routing: which prefix a destination falls under, application routes
//! with captured variables, and Spring-style user destinations.
//!
//! Every SEND/SUBSCRIBE destination is classified by [`Router::classify`] into exactly
//! one of: an application destination (handled by the server, default prefix `/pub/`),
//! a broker destination (the simple broker or the upstream relay; defaults `/sub/`,
//! `/topic/`, `/queue/`) or a user destination (`/user/`). Anything else is a
//! [`RouteError::OutsidePrefixes`] whose `Display` names the allowed prefixes, ready
//! for an ERROR frame's `message`.
//!
//! Application destinations go through [`Router::route_app`]: the first [`Route`] whose
//! pattern matches wins (a forward template such as `/sub/chat/{room}` or a host
//! handler id), else the default route forwards `/pub/<rest>` to `/sub/<rest>`.
//!
//! User destinations follow Spring's `UserDestinationResolver`: session `42`
//! subscribing to `/user/queue/x` really subscribes to `/queue/x-user42`; a SEND to
//! `/user/bob/queue/x` goes to `/queue/x-user<id>` for each of bob's sessions; a
//! delivery on `/queue/x-user42` is shown to session 42 as `/user/queue/x`.
//!
//! The router borrows its configuration (caller storage, nothing copied), so building
//! one per lookup is free; all outputs are borrowed or written into caller buffers.

use crate::cursor::{BufferTooSmall, Cursor};
use crate::pattern::{self, Captures, Separator};
use crate::session::SessionId;

/// Default application prefixes.
pub const DEFAULT_APP_PREFIXES: &[&str] = &["/pub/"];
/// Default broker prefixes.
pub const DEFAULT_BROKER_PREFIXES: &[&str] = &["/sub/", "/topic/", "/queue/"];
/// Default user prefix.
pub const DEFAULT_USER_PREFIX: &str = "/user/";
/// Default target of the default route: `/pub/<rest>` goes to `/sub/<rest>`.
pub const DEFAULT_FORWARD_PREFIX: &str = "/sub/";

/// What an application route does with a matching SEND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAction<'c> {
    /// Publish the message to this broker destination; `{name}` in the template is
    /// replaced by the captured variable (see [`Router::expand`]).
    Forward(&'c str),
    /// Hand the message to the host's handler with this id (the `@MessageMapping`
    /// equivalent); the handler decides what to publish.
    Handler(u32),
}

/// An application route: a destination pattern and what to do on a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'c> {
    /// Absolute pattern, e.g. `/pub/chat/{room}` or `/pub/**` (see [`crate::pattern`]).
    pub pattern: &'c str,
    /// What to do with a matching message.
    pub action: RouteAction<'c>,
}

/// Router configuration, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub struct RouterConfig<'c> {
    /// Application prefixes (SENDs handled by the server).
    pub app_prefixes: &'c [&'c str],
    /// Broker prefixes (simple broker or upstream relay).
    pub broker_prefixes: &'c [&'c str],
    /// User destination prefix; `None` disables user destinations.
    pub user_prefix: Option<&'c str>,
    /// Application routes, tried in order.
    pub routes: &'c [Route<'c>],
    /// Where the default route sends `<app prefix><rest>`: `<this><rest>`. `None`
    /// leaves unmatched application destinations unrouted.
    pub default_forward: Option<&'c str>,
    /// Segment separator for route patterns.
    pub separator: Separator,
}

impl Default for RouterConfig<'static> {
    fn default() -> Self {
        RouterConfig {
            app_prefixes: DEFAULT_APP_PREFIXES,
            broker_prefixes: DEFAULT_BROKER_PREFIXES,
            user_prefix: Some(DEFAULT_USER_PREFIX),
            routes: &[],
            default_forward: Some(DEFAULT_FORWARD_PREFIX),
            separator: Separator::Slash,
        }
    }
}

/// A classified destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'d> {
    /// Under an application prefix; the whole destination.
    App(&'d [u8]),
    /// Under a broker prefix; the whole destination.
    Broker(&'d [u8]),
    /// Under the user prefix; what follows the prefix (`queue/x`, `bob/queue/x`).
    User(&'d [u8]),
}

/// The outcome of [`Router::route_app`].
// Captures stay inline (no allocation); the enum lives on the stack for one lookup.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy)]
pub enum AppRoute<'c, 'd> {
    /// Publish to this broker destination (written into the caller's buffer).
    Forward(&'d [u8]),
    /// Call the host handler `id` with the captured variables.
    Handler {
        /// The id from [`RouteAction::Handler`].
        id: u32,
        /// Variables captured by the route pattern.
        captures: Captures<'c, 'd>,
    },
    /// No route matched and there is no default route.
    Unrouted,
}

/// Why a destination could not be routed. `Display` is the ERROR frame's `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError<'c> {
    /// The destination lies outside every configured prefix.
    OutsidePrefixes {
        /// The configuration, to name the allowed prefixes.
        app: &'c [&'c str],
        /// Broker prefixes.
        broker: &'c [&'c str],
        /// User prefix.
        user: Option<&'c str>,
    },
    /// A user destination whose target is not under a broker prefix
    /// (`/user/queue/x` needs `/queue/` to be a broker prefix).
    UserTargetOutsideBroker,
    /// A SEND to a user destination without a user name (`/user/<name>/queue/x`).
    MissingUserName,
    /// A route template names a variable its pattern does not capture.
    UnknownVariable,
    /// The resolved destination did not fit the caller's buffer.
    TooLong,
    /// A SEND or SUBSCRIBE without a `destination` header.
    MissingDestination,
    /// A server command (CONNECTED, MESSAGE, RECEIPT, ERROR) offered for routing.
    NotAClientFrame,
}

impl core::fmt::Display for RouteError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RouteError::OutsidePrefixes { app, broker, user } => {
                f.write_str("Destination must start with one of:")?;
                for p in app.iter().chain(broker.iter()).chain(user.iter()) {
                    write!(f, " {}", p)?;
                }
                Ok(())
            }
            RouteError::UserTargetOutsideBroker => {
                f.write_str("User destination must name a broker destination, e.g. /user/queue/x")
            }
            RouteError::MissingUserName => {
                f.write_str("User destination needs a user name: /user/<name>/queue/x")
            }
            RouteError::UnknownVariable => f.write_str("Route template names an unknown variable"),
            RouteError::TooLong => f.write_str("Resolved destination too long"),
            RouteError::MissingDestination => f.write_str("Missing header: destination"),
            RouteError::NotAClientFrame => f.write_str("Not a client frame"),
        }
    }
}

impl From<BufferTooSmall> for RouteError<'_> {
    fn from(_: BufferTooSmall) -> Self {
        RouteError::TooLong
    }
}

/// The router: a view over a [`RouterConfig`].
#[derive(Debug, Clone, Copy)]
pub struct Router<'c> {
    config: RouterConfig<'c>,
}

/// `dest` lies under `prefix`: starts with it, and when the prefix does not end in a
/// separator, the next byte is one (so `/pub` covers `/pub/x` but not `/public`).
fn under(prefix: &str, dest: &[u8]) -> bool {
    let p = prefix.as_bytes();
    if !dest.starts_with(p) {
        return false;
    }
    match p.last() {
        Some(b'/') | Some(b'.') | None => true,
        _ => matches!(dest.get(p.len()), None | Some(b'/') | Some(b'.')),
    }
}

/// The part of `dest` after `prefix` (without a separator that follows a bare prefix).
fn strip<'d>(prefix: &str, dest: &'d [u8]) -> &'d [u8] {
    let rest = &dest[prefix.len()..];
    match (prefix.as_bytes().last(), rest.first()) {
        (Some(b'/') | Some(b'.'), _) => rest,
        (_, Some(b'/') | Some(b'.')) => &rest[1..],
        _ => rest,
    }
}

impl<'c> Router<'c> {
    /// A router over `config`.
    pub const fn new(config: RouterConfig<'c>) -> Self {
        Router { config }
    }

    /// The configuration.
    pub fn config(&self) -> &RouterConfig<'c> {
        &self.config
    }

    /// Whether `dest` lies under a broker prefix.
    pub fn is_broker(&self, dest: &[u8]) -> bool {
        self.config.broker_prefixes.iter().any(|p| under(p, dest))
    }

    /// Classifies a destination. Prefixes are tried user, application, broker, so a
    /// configuration may nest them (`/pub/` inside a broad broker prefix).
    pub fn classify<'d>(&self, dest: &'d [u8]) -> Result<Destination<'d>, RouteError<'c>> {
        if let Some(user) = self.config.user_prefix {
            if under(user, dest) {
                return Ok(Destination::User(strip(user, dest)));
            }
        }
        if self.config.app_prefixes.iter().any(|p| under(p, dest)) {
            return Ok(Destination::App(dest));
        }
        if self.is_broker(dest) {
            return Ok(Destination::Broker(dest));
        }
        Err(self.outside())
    }

    fn outside(&self) -> RouteError<'c> {
        RouteError::OutsidePrefixes {
            app: self.config.app_prefixes,
            broker: self.config.broker_prefixes,
            user: self.config.user_prefix,
        }
    }

    /// Routes an application destination: the first matching [`Route`], else the
    /// default route. Forward targets are written into `out`.
    pub fn route_app<'d>(
        &self,
        dest: &'d [u8],
        out: &'d mut [u8],
    ) -> Result<AppRoute<'c, 'd>, RouteError<'c>>
    where
        'c: 'd,
    {
        for route in self.config.routes {
            let mut caps = Captures::new();
            if pattern::capture(
                route.pattern.as_bytes(),
                dest,
                self.config.separator,
                &mut caps,
            ) {
                return match route.action {
                    RouteAction::Forward(template) => {
                        Ok(AppRoute::Forward(Self::expand(template, &caps, out)?))
                    }
                    RouteAction::Handler(id) => Ok(AppRoute::Handler { id, captures: caps }),
                };
            }
        }
        let (Some(to), Some(prefix)) = (
            self.config.default_forward,
            self.config.app_prefixes.iter().find(|p| under(p, dest)),
        ) else {
            return Ok(AppRoute::Unrouted);
        };
        let mut c = Cursor::new(out);
        c.push(to.as_bytes());
        let rest = strip(prefix, dest);
        if !matches!(to.as_bytes().last(), Some(b'/') | Some(b'.')) && !rest.is_empty() {
            c.push_byte(b'/');
        }
        c.push(rest);
        Ok(AppRoute::Forward(c.finish()?))
    }

    /// Writes `template` into `out` with each `{name}` replaced by its captured value.
    pub fn expand<'o>(
        template: &str,
        caps: &Captures<'_, '_>,
        out: &'o mut [u8],
    ) -> Result<&'o [u8], RouteError<'c>> {
        let mut c = Cursor::new(out);
        let mut t = template.as_bytes();
        while let Some(open) = t.iter().position(|&b| b == b'{') {
            c.push(&t[..open]);
            let Some(close) = t[open..].iter().position(|&b| b == b'}') else {
                c.push(&t[open..]);
                t = b"";
                break;
            };
            let name = &t[open + 1..open + close];
            let value = caps
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
                .ok_or(RouteError::UnknownVariable)?;
            c.push(value);
            t = &t[open + close + 1..];
        }
        c.push(t);
        Ok(c.finish()?)
    }

    /// For a SUBSCRIBE to a user destination (`rest` from [`Destination::User`], e.g.
    /// `queue/x`), the session-specific destination `/queue/x-user<session>`.
    pub fn user_subscription<'o>(
        &self,
        rest: &[u8],
        session: SessionId,
        out: &'o mut [u8],
    ) -> Result<&'o [u8], RouteError<'c>> {
        self.user_target(rest, session, out)
    }

    /// Splits the `rest` of a SEND to a user destination (`bob/queue/x`) into the user
    /// name and the target (`queue/x`), checking the target is a broker destination.
    pub fn user_send<'d>(&self, rest: &'d [u8]) -> Result<(&'d [u8], &'d [u8]), RouteError<'c>> {
        let slash = rest
            .iter()
            .position(|&b| b == b'/')
            .ok_or(RouteError::MissingUserName)?;
        let (user, target) = (&rest[..slash], &rest[slash + 1..]);
        if user.is_empty() {
            return Err(RouteError::MissingUserName);
        }
        self.check_user_target(target)?;
        Ok((user, target))
    }

    fn check_user_target(&self, target: &[u8]) -> Result<(), RouteError<'c>> {
        // `target` has no leading '/': compare against the prefixes without theirs.
        let ok = self.config.broker_prefixes.iter().any(|p| {
            let p = p.strip_prefix('/').unwrap_or(p);
            under(p, target)
        });
        if ok {
            Ok(())
        } else {
            Err(RouteError::UserTargetOutsideBroker)
        }
    }

    /// `/<target>-user<session>`: where a user destination target (`queue/x`) lives
    /// for one session.
    pub fn user_target<'o>(
        &self,
        target: &[u8],
        session: SessionId,
        out: &'o mut [u8],
    ) -> Result<&'o [u8], RouteError<'c>> {
        self.check_user_target(target)?;
        let mut c = Cursor::new(out);
        c.push_byte(b'/')
            .push(target)
            .push(b"-user")
            .push(&session.to_hex());
        Ok(c.finish()?)
    }

    /// The reverse of [`Router::user_target`]: the destination session `session` sees
    /// for a delivery on `resolved` (`/queue/x-user42` -> `/user/queue/x`), or `None`
    /// when `resolved` is not that session's user destination.
    pub fn user_delivery<'o>(
        &self,
        resolved: &[u8],
        session: SessionId,
        out: &'o mut [u8],
    ) -> Option<&'o [u8]> {
        let user = self.config.user_prefix?;
        let mut suffix_buf = [0u8; 5 + SessionId::HEX_LEN];
        let mut s = Cursor::new(&mut suffix_buf);
        s.push(b"-user").push(&session.to_hex());
        let suffix = s.finish().ok()?;
        let base = resolved.strip_suffix(suffix)?.strip_prefix(b"/")?;
        let mut c = Cursor::new(out);
        c.push(user.as_bytes());
        if !user.ends_with('/') {
            c.push_byte(b'/');
        }
        c.push(base);
        c.finish().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_router() -> Router<'static> {
        Router::new(RouterConfig::default())
    }

    #[test]
    fn classifies_by_prefix() {
        let r = default_router();
        assert_eq!(
            r.classify(b"/pub/chat"),
            Ok(Destination::App(&b"/pub/chat"[..]))
        );
        assert_eq!(
            r.classify(b"/sub/chat"),
            Ok(Destination::Broker(&b"/sub/chat"[..]))
        );
        assert_eq!(
            r.classify(b"/topic/a.b"),
            Ok(Destination::Broker(&b"/topic/a.b"[..]))
        );
        assert_eq!(
            r.classify(b"/queue/work"),
            Ok(Destination::Broker(&b"/queue/work"[..]))
        );
        assert_eq!(
            r.classify(b"/user/queue/x"),
            Ok(Destination::User(&b"queue/x"[..]))
        );
        assert!(r.classify(b"/public/x").is_err());
        assert!(r.classify(b"/elsewhere").is_err());
        assert!(r.classify(b"").is_err());
    }

    #[test]
    fn outside_prefixes_error_names_them_all() {
        let r = default_router();
        let err = r.classify(b"/nope/x").unwrap_err();
        let mut buf = [0u8; 128];
        let mut c = Cursor::new(&mut buf);
        core::fmt::write(&mut c, format_args!("{}", err)).unwrap();
        assert_eq!(
            c.finish().unwrap(),
            b"Destination must start with one of: /pub/ /sub/ /topic/ /queue/ /user/"
        );
    }

    #[test]
    fn bare_prefixes_need_a_separator_after_them() {
        let r = Router::new(RouterConfig {
            app_prefixes: &["/app"],
            broker_prefixes: &["/topic"],
            user_prefix: None,
            ..RouterConfig::default()
        });
        assert!(matches!(r.classify(b"/app/x"), Ok(Destination::App(_))));
        assert!(matches!(
            r.classify(b"/topic.x"),
            Ok(Destination::Broker(_))
        ));
        assert!(r.classify(b"/application").is_err());
        assert!(r.classify(b"/user/queue/x").is_err());
    }

    #[test]
    fn default_route_forwards_pub_to_sub() {
        let r = default_router();
        let mut out = [0u8; 64];
        match r.route_app(b"/pub/chat/room1", &mut out).unwrap() {
            AppRoute::Forward(d) => assert_eq!(d, b"/sub/chat/room1"),
            other => panic!("{other:?}"),
        }
        let r = Router::new(RouterConfig {
            app_prefixes: &["/app"],
            default_forward: Some("/topic"),
            ..RouterConfig::default()
        });
        let mut out = [0u8; 64];
        match r.route_app(b"/app/greetings", &mut out).unwrap() {
            AppRoute::Forward(d) => assert_eq!(d, b"/topic/greetings"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn routes_match_in_order_with_captures() {
        let routes = [
            Route {
                pattern: "/pub/chat/{room}",
                action: RouteAction::Forward("/sub/rooms/{room}/messages"),
            },
            Route {
                pattern: "/pub/admin/**",
                action: RouteAction::Handler(7),
            },
        ];
        let r = Router::new(RouterConfig {
            routes: &routes,
            default_forward: None,
            ..RouterConfig::default()
        });
        let mut out = [0u8; 64];
        match r.route_app(b"/pub/chat/r1", &mut out).unwrap() {
            AppRoute::Forward(d) => assert_eq!(d, b"/sub/rooms/r1/messages"),
            other => panic!("{other:?}"),
        }
        let mut out = [0u8; 64];
        match r.route_app(b"/pub/admin/kick/bob", &mut out).unwrap() {
            AppRoute::Handler { id, captures } => {
                assert_eq!(id, 7);
                assert!(captures.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let mut out = [0u8; 64];
        assert!(matches!(
            r.route_app(b"/pub/other", &mut out).unwrap(),
            AppRoute::Unrouted
        ));
    }

    #[test]
    fn dot_separated_routes() {
        let routes = [Route {
            pattern: "/pub/chat.{room}",
            action: RouteAction::Forward("/topic/chat.{room}"),
        }];
        let r = Router::new(RouterConfig {
            routes: &routes,
            separator: Separator::Dot,
            ..RouterConfig::default()
        });
        let mut out = [0u8; 64];
        match r.route_app(b"/pub/chat.lobby", &mut out).unwrap() {
            AppRoute::Forward(d) => assert_eq!(d, b"/topic/chat.lobby"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expand_refuses_unknown_variables_and_overflow() {
        let caps = Captures::new();
        let mut out = [0u8; 64];
        assert_eq!(
            Router::expand("/sub/{x}", &caps, &mut out),
            Err(RouteError::UnknownVariable)
        );
        let mut tiny = [0u8; 3];
        assert_eq!(
            Router::expand("/sub/x", &caps, &mut tiny),
            Err(RouteError::TooLong)
        );
    }

    #[test]
    fn user_destinations_like_spring() {
        let r = default_router();
        let mut out = [0u8; 64];
        let Destination::User(rest) = r.classify(b"/user/queue/x").unwrap() else {
            panic!()
        };
        let s42 = SessionId::new(0x42);
        assert_eq!(
            r.user_subscription(rest, s42, &mut out).unwrap(),
            b"/queue/x-user00000000000000000000000000000042"
        );

        let Destination::User(rest) = r.classify(b"/user/bob/queue/x").unwrap() else {
            panic!()
        };
        let (user, target) = r.user_send(rest).unwrap();
        assert_eq!(user, b"bob");
        let mut out = [0u8; 64];
        assert_eq!(
            r.user_target(target, SessionId::new(u128::MAX), &mut out)
                .unwrap(),
            b"/queue/x-userffffffffffffffffffffffffffffffff"
        );

        let resolved = b"/queue/x-user00000000000000000000000000000042";
        let mut out = [0u8; 64];
        assert_eq!(
            r.user_delivery(resolved, s42, &mut out).unwrap(),
            b"/user/queue/x"
        );
        let mut out = [0u8; 64];
        assert_eq!(
            r.user_delivery(resolved, SessionId::new(0x4), &mut out),
            None
        );
        assert_eq!(r.user_delivery(b"/queue/x-user42", s42, &mut out), None);
    }

    #[test]
    fn user_destination_errors() {
        let r = default_router();
        let mut out = [0u8; 64];
        assert_eq!(r.user_send(b"queue"), Err(RouteError::MissingUserName));
        assert_eq!(r.user_send(b"/queue/x"), Err(RouteError::MissingUserName));
        assert_eq!(
            r.user_send(b"bob/elsewhere/x"),
            Err(RouteError::UserTargetOutsideBroker)
        );
        assert_eq!(
            r.user_subscription(b"elsewhere/x", SessionId::new(1), &mut out),
            Err(RouteError::UserTargetOutsideBroker)
        );
    }
}
