//! Relay mode: the [`Broker`] backend that forwards broker destinations to an external
//! STOMP broker (ActiveMQ, RabbitMQ, Artemis), so several stomp-relay instances share
//! topics.
//!
//! Two layouts ([`RelayMode`]):
//! - **per-session** (Spring's `StompBrokerRelay`): every client session gets its own
//!   upstream connection ([`per_session`]), opened with the relay credentials, plus one
//!   `_system_` connection per instance ([`system`]) that publishes application messages
//!   and decides availability. While the system connection is down new sessions are
//!   refused with `Broker not available.`; a session whose upstream connection drops gets
//!   `Connection to broker closed.` and is closed.
//! - **shared** ([`shared`]): one upstream connection per instance, one upstream
//!   subscription per client destination, fan-out to local subscribers in-process. After
//!   an upstream failure the instance reconnects with backoff, resubscribes, and its
//!   clients keep their sessions.
//!
//! Every upstream connection is relay-core's sans-IO [`Upstream`](stomp_relay_core::upstream::Upstream)
//! state machine driven by [`conn`]: CONNECT with the relay credentials, heart-beats
//! negotiated with the broker on their own timers (independent of the client's), and,
//! for the system and shared connections, reconnection across the `--relay` addresses
//! with exponential backoff and jitter. [`tls`] adds TLS for `stomps://`; [`mapping`]
//! rewrites destinations with the configured dialect; [`redact`] hides the relay's
//! credentials in broker ERRORs.
//!
//! Invariants: the client's login/passcode never reach the broker; the relay credentials
//! replace them, and never reach a client or the log (ERRORs are redacted).

pub mod conn;
pub mod dialect;
mod fanout_store;
pub mod mapping;
pub mod per_session;
pub mod redact;
pub mod shared;
pub mod system;
pub mod tls;
pub mod user_registry;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stomp_relay_core::upstream::{Backoff, UpstreamConfig};

use crate::broker::Broker;
use crate::config::{Config, RelayAddr, RelayMode};
use crate::secret::Secret;

/// Everything relay mode needs, taken from [`Config`] by [`RelayOptions::from_config`].
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Broker addresses in failover order.
    pub addrs: Vec<RelayAddr>,
    /// Login of client sessions' upstream connections (replaces the client's).
    pub login: String,
    /// Passcode of client sessions' upstream connections.
    pub passcode: Secret,
    /// Login of the system (per-session mode) or shared connection.
    pub system_login: String,
    /// Passcode of the system or shared connection.
    pub system_passcode: Secret,
    /// `host` header of every upstream CONNECT; `None` sends none (the broker's default
    /// virtual host), never the client's own `host`.
    pub virtual_host: Option<String>,
    /// How client destinations are spelled on the broker: configured, or detected
    /// from the broker's CONNECTED.
    pub dialect: Arc<dialect::DialectChoice>,
    /// Client-facing broker prefixes (to map broker destinations back).
    pub broker_prefixes: Vec<String>,
    /// Per-session or shared.
    pub mode: RelayMode,
    /// Heart-beats offered to the broker, milliseconds (send, receive); 0 disables.
    pub heartbeat: (u32, u32),
    /// Bound on opening a transport to one address (TCP + TLS), and then again on the
    /// broker's CONNECTED.
    pub connect_timeout: Duration,
    /// Delays between reconnect rounds (all addresses tried) of the system/shared
    /// connection.
    pub backoff: Backoff,
    /// Extra PEM trust roots for `stomps://` (added to the public web roots).
    pub tls_ca: Option<PathBuf>,
    /// Largest frame accepted from the broker.
    pub max_frame_size: usize,
    /// Frames held while the shared connection is (re)connecting; beyond this a client
    /// SEND fails with `Broker not available.` instead of growing memory.
    pub max_pending: usize,
}

impl RelayOptions {
    /// Relay options from the server configuration.
    pub fn from_config(c: &Config) -> RelayOptions {
        RelayOptions {
            addrs: c.relay.clone(),
            login: c.relay_login.clone(),
            passcode: c.relay_passcode.clone(),
            system_login: c.system_login.clone(),
            system_passcode: c.system_passcode.clone(),
            virtual_host: c.virtual_host.clone(),
            dialect: Arc::new(dialect::DialectChoice::new(c.dialect)),
            broker_prefixes: c.broker_prefixes.clone(),
            mode: c.relay_mode,
            heartbeat: (c.heartbeat.send_ms, c.heartbeat.recv_ms),
            connect_timeout: Duration::from_secs(5),
            backoff: Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(5),
            },
            tls_ca: c.relay_ca.clone(),
            max_frame_size: c.limits.max_frame_size.max(64 * 1024) + 16 * 1024,
            max_pending: 10_000,
        }
    }
}

impl RelayOptions {
    /// Settings of one upstream connection with these credentials; `reconnect` for the
    /// system/shared connection (a client session's connection never comes back behind
    /// its back).
    pub fn settings(&self, login: &str, passcode: &Secret, reconnect: bool) -> conn::Settings {
        conn::Settings {
            login: login.to_owned(),
            passcode: passcode.clone(),
            virtual_host: self.virtual_host.clone(),
            client_id: None,
            config: UpstreamConfig {
                heart_beat: self.heartbeat,
                read_timeout_factor: 3,
                connected_timeout: self.connect_timeout,
                reconnect: reconnect.then_some(self.backoff),
                addresses: self.addrs.len().max(1),
                // Instances that lost the same broker must not retry in lockstep.
                jitter_seed: fastrand::u64(..),
            },
            max_frame_size: self.max_frame_size,
            dialect: self.dialect.clone(),
            redact: redact::Redactor::new([
                self.login.as_str(),
                self.passcode.expose(),
                self.system_login.as_str(),
                self.system_passcode.expose(),
            ]),
        }
    }
}

/// Why relay mode could not start.
#[derive(Debug)]
pub enum RelayError {
    /// No `--relay` address configured.
    NoAddress,
    /// The TLS trust roots could not be loaded.
    Tls(tls::TrustRootsError),
}

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayError::NoAddress => f.write_str("--relay: at least one broker URL is needed"),
            RelayError::Tls(why) => write!(f, "relay TLS: {why}"),
        }
    }
}

impl std::error::Error for RelayError {}

impl From<tls::TrustRootsError> for RelayError {
    fn from(e: tls::TrustRootsError) -> Self {
        RelayError::Tls(e)
    }
}

/// Relay mode as started: the backend the sessions use and the user registry
/// connection that shares users across instances.
pub struct Relay {
    /// The broker backend.
    pub broker: Arc<dyn Broker>,
    /// The user registry connection (stopped at shutdown, after the sessions).
    pub registry: Arc<user_registry::Registry>,
}

/// Starts relay mode (spawns the system or shared connection task and the user
/// registry connection on the current tokio runtime); `users` is the server's user
/// registry, from now on shared with the other instances.
pub fn start(opts: RelayOptions, users: Arc<crate::users::Users>) -> Result<Relay, RelayError> {
    if opts.addrs.is_empty() {
        return Err(RelayError::NoAddress);
    }
    let tls = if opts.addrs.iter().any(|a| a.tls) {
        Some(tls::client_config(opts.tls_ca.as_deref())?)
    } else {
        None
    };
    let target = |tls| conn::Target::new(opts.addrs.clone(), tls, opts.connect_timeout);
    let registry = user_registry::Registry::start(&opts, target(tls.clone()), users);
    let target = target(tls);
    let broker: Arc<dyn Broker> = match opts.mode {
        RelayMode::PerSession => Arc::new(per_session::PerSessionRelay::start(opts, target)),
        RelayMode::Shared => Arc::new(shared::SharedRelay::start(opts, target)),
    };
    Ok(Relay { broker, registry })
}
