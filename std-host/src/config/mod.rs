//! Server configuration: command-line flags, `STOMP_RELAY_*` environment variables and a
//! TOML file, merged into one [`Config`].
//!
//! Precedence is flag > environment variable > config file > built-in default. Every
//! flag has the same-named kebab-case key in the file (`--tcp-listen` is `tcp-listen`):
//! [`Cli`] is both, declared once, and the `layer` module merges its two parsed copies. The file
//! rejects unknown keys so a typo never silently falls back to a default.
//! Errors are [`ConfigError`]s whose `Display` is one line naming the bad flag or key; the
//! binary prints it and exits with status 2 (clap's own usage errors use 2 as well).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Deserialize;

use crate::secret::Secret;
use layer::{Given, Layers};

mod layer;
pub mod load_error;
pub mod origin;
pub mod proxy;
pub mod security;
pub mod value;

pub use value::{parse_duration, parse_size, ValueError};

/// Where messages for broker destinations go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrokerKind {
    /// The embedded in-memory simple broker (one instance only).
    Simple,
    /// Relay to an external STOMP broker (ActiveMQ, RabbitMQ, Artemis) so instances share topics.
    Relay,
}

/// How broker destinations are spelled on the external broker: relay-core's one
/// [`Dialect`](stomp_relay_core::Dialect), named in flags and files by
/// [`Dialect::as_str`](stomp_relay_core::Dialect::as_str).
pub use stomp_relay_core::Dialect;

/// `--dialect`'s parser: the names clap lists in `--help` and in its error.
fn dialect_parser() -> impl clap::builder::TypedValueParser<Value = Dialect> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Dialect::ALL.map(Dialect::as_str))
        .map(|name| name.parse::<Dialect>().unwrap_or_default())
}

/// The config file's `dialect` key: a dialect name; anything else is an error listing them.
fn dialect_key<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Dialect>, D::Error> {
    let Some(name) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    name.parse().map(Some).map_err(|_| {
        let names: Vec<&str> = Dialect::ALL.iter().map(|d| d.as_str()).collect();
        serde::de::Error::custom(format!(
            "unknown dialect `{name}`, expected one of {}",
            names.join(", ")
        ))
    })
}

/// Upstream connection layout in relay mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayMode {
    /// One upstream connection per client session plus a system session (Spring's way).
    PerSession,
    /// One upstream connection per instance, one upstream subscription per destination.
    Shared,
}

/// One upstream broker address, `stomp://HOST:PORT` or `stomps://HOST:PORT` (TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayAddr {
    /// Whether to speak TLS (`stomps://` or `stomp+ssl://`).
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port (61613 when the URL has none).
    pub port: u16,
}

impl RelayAddr {
    /// Parses `stomp://host:port`, `stomps://host:port`, `stomp+ssl://host:port` or a bare
    /// `host:port` (plain STOMP).
    pub fn parse(s: &str) -> Result<RelayAddr, ValueError> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("stomp://") {
            (false, r)
        } else if let Some(r) = s
            .strip_prefix("stomps://")
            .or_else(|| s.strip_prefix("stomp+ssl://"))
        {
            (true, r)
        } else if s.contains("://") {
            return Err(ValueError::new(
                s,
                "scheme must be stomp://, stomps:// or stomp+ssl://",
            ));
        } else {
            (false, s)
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, tail) = v6
                .split_once(']')
                .ok_or_else(|| ValueError::new(s, "unclosed `[` in host"))?;
            (h, tail.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(ValueError::new(s, "missing host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| ValueError::new(s, format!("bad port `{p}`")))?,
            None => 61613,
        };
        Ok(RelayAddr {
            tls,
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for RelayAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "stomps" } else { "stomp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Heart-beat intervals this server offers, in STOMP's `cx,cy` shape: how often it sends
/// and how often it wants to receive. `0` disables that direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartBeat {
    /// Milliseconds between heart-beats the server sends (0: none).
    pub send_ms: u32,
    /// Milliseconds between heart-beats the server wants from the peer (0: none).
    pub recv_ms: u32,
}

impl HeartBeat {
    /// Parses `SEND,RECV` milliseconds, e.g. `10000,10000`.
    pub fn parse(s: &str) -> Result<HeartBeat, ValueError> {
        let (a, b) = s.split_once(',').ok_or_else(|| {
            ValueError::new(s, "expected SEND,RECV milliseconds like 10000,10000")
        })?;
        let p = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| ValueError::new(s, format!("`{v}` is not a number of milliseconds")))
        };
        Ok(HeartBeat {
            send_ms: p(a)?,
            recv_ms: p(b)?,
        })
    }
}

impl fmt::Display for HeartBeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.send_ms, self.recv_ms)
    }
}

/// Limits on what one client may cost the server (Spring's WebSocket transport limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest STOMP frame after reassembly across WebSocket messages / TCP reads.
    pub max_frame_size: usize,
    /// Bytes queued towards one client before it counts as a slow consumer.
    pub send_buffer: usize,
    /// How long one write to a client may stay blocked before it counts as a slow consumer.
    pub send_time_limit: Duration,
    /// How long a new connection may stay silent before its first frame.
    pub time_to_first_frame: Duration,
    /// Most concurrent client connections (WebSocket and TCP together).
    pub max_connections: usize,
    /// How long graceful shutdown waits for sessions and upstream DISCONNECTs.
    pub shutdown_timeout: Duration,
}

impl Limits {
    /// The largest WebSocket message or SockJS send: several frames may share one, so
    /// it allows 4 frames' worth (at least 64 KiB); the STOMP frame limit is enforced
    /// after reassembly with an ERROR frame.
    pub fn max_message(&self) -> usize {
        self.max_frame_size.saturating_mul(4).max(64 * 1024)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 64 * 1024,
            send_buffer: 512 * 1024,
            send_time_limit: Duration::from_secs(10),
            time_to_first_frame: Duration::from_secs(60),
            max_connections: 100_000,
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// SockJS settings (Spring's `SockJsServiceRegistration` defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockJsConfig {
    /// Idle time after which a SockJS `h` frame goes out (Spring: 25 s).
    pub heartbeat: Duration,
    /// How long a session without a receiving request lives on before it is closed as
    /// gone (Spring's disconnect delay: 5 s).
    pub disconnect_delay: Duration,
    /// Bytes one streaming response (xhr_streaming, eventsource) carries before it ends
    /// and the client opens the next, so browsers do not hold whole streams (Spring:
    /// 128 KiB).
    pub stream_bytes_limit: usize,
}

impl Default for SockJsConfig {
    fn default() -> Self {
        SockJsConfig {
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
            stream_bytes_limit: 128 * 1024,
        }
    }
}

/// The whole server configuration, after merging flags, environment and file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// HTTP/WebSocket listen address (the endpoints, `/healthz`, `/readyz`, `/metrics`).
    pub listen: SocketAddr,
    /// Paths that speak STOMP over WebSocket (and SockJS with [`Config::sockjs`]).
    pub endpoints: Vec<String>,
    /// The SockJS protocol on every endpoint, like Spring's `withSockJS()`; `None` off.
    pub sockjs: Option<SockJsConfig>,
    /// Plain STOMP-over-TCP listen address; `None` disables it.
    pub tcp_listen: Option<SocketAddr>,
    /// Application destination prefixes (SENDs go to handlers), e.g. `/pub/`.
    pub app_prefixes: Vec<String>,
    /// Broker destination prefixes (SEND/SUBSCRIBE go to the broker), e.g. `/sub/`.
    pub broker_prefixes: Vec<String>,
    /// User destination prefix, e.g. `/user/`.
    pub user_prefix: String,
    /// Simple broker or relay.
    pub broker: BrokerKind,
    /// Upstream broker addresses in failover order (relay mode).
    pub relay: Vec<RelayAddr>,
    /// Login used for client sessions' upstream connections (replaces the client's).
    pub relay_login: String,
    /// Passcode used for client sessions' upstream connections.
    pub relay_passcode: Secret,
    /// Login of the shared system session.
    pub system_login: String,
    /// Passcode of the shared system session.
    pub system_passcode: Secret,
    /// `host` header sent upstream (the broker's virtual host), if any.
    pub virtual_host: Option<String>,
    /// Extra trusted CA certificates (PEM) for `stomps://` relay addresses, added to the
    /// public web roots. Checked to hold at least one certificate when configured.
    pub relay_ca: Option<PathBuf>,
    /// Destination mapping towards the external broker; `None` detects it from the
    /// broker's CONNECTED `server` header.
    pub dialect: Option<Dialect>,
    /// Per-session or shared upstream connections.
    pub relay_mode: RelayMode,
    /// Heart-beats this server offers to clients (and the system session to the broker).
    pub heartbeat: HeartBeat,
    /// Per-connection limits.
    pub limits: Limits,
    /// Token required by `/dashboard` and `/api/stats`; `None` leaves them open.
    pub admin_token: Option<Secret>,
    /// Key required by `POST /api/publish`; `None` leaves it open.
    pub api_key: Option<Secret>,
    /// How often the stats line is logged at info; zero never.
    pub stats_interval: Duration,
    /// Threads of the runtime that drives every connection; `None` is one per CPU core.
    pub worker_threads: Option<std::num::NonZeroUsize>,
    /// Authentication, authorization, TLS, origin checks and abuse limits.
    pub security: security::SecurityConfig,
    /// HTTP proxies to back ends (connect, subscribe, application destinations).
    pub proxy: proxy::ProxyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid literal"),
            endpoints: vec!["/ws".into()],
            sockjs: None,
            tcp_listen: None,
            app_prefixes: vec!["/pub/".into()],
            broker_prefixes: vec!["/sub/".into(), "/topic/".into(), "/queue/".into()],
            user_prefix: "/user/".into(),
            broker: BrokerKind::Simple,
            relay: vec![RelayAddr {
                tls: false,
                host: "127.0.0.1".into(),
                port: 61613,
            }],
            relay_login: "guest".into(),
            relay_passcode: Secret::from("guest"),
            system_login: "guest".into(),
            system_passcode: Secret::from("guest"),
            virtual_host: None,
            relay_ca: None,
            dialect: None,
            relay_mode: RelayMode::PerSession,
            heartbeat: HeartBeat {
                send_ms: 10_000,
                recv_ms: 10_000,
            },
            limits: Limits::default(),
            admin_token: None,
            api_key: None,
            stats_interval: Duration::from_secs(30 * 60),
            worker_threads: None,
            security: security::SecurityConfig::default(),
            proxy: proxy::ProxyConfig::default(),
        }
    }
}

/// A configuration error: one line naming the flag, variable or key at fault.
#[derive(Debug)]
pub enum ConfigError {
    /// A command-line or environment problem reported by clap (carries its rendered text).
    Cli(clap::Error),
    /// The config file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        err: std::io::Error,
    },
    /// The config file is not valid TOML or has a bad key or value.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem, when known.
        line: Option<usize>,
        /// What is wrong, naming the key.
        msg: String,
    },
    /// A value is well-formed but unusable, e.g. an unparsable `--relay` URL.
    Invalid {
        /// Flag or key name, e.g. `--relay` / `relay`.
        name: String,
        /// What is wrong.
        msg: String,
    },
}

impl ConfigError {
    /// The process exit status for this error: clap's own for `--help`/`--version`
    /// (0), 2 for every real error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Cli(e) => e.exit_code(),
            _ => 2,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Cli(e) => {
                let s = e.to_string();
                if e.exit_code() == 0 {
                    // --help / --version: the whole text is the point.
                    f.write_str(s.trim_end())
                } else {
                    // Usage errors: clap's first line already names the flag; the usage
                    // block after it would break the one-line contract.
                    f.write_str(s.lines().next().unwrap_or("error: invalid arguments"))
                }
            }
            ConfigError::Io { path, err } => {
                write!(f, "error: config file {}: {err}", path.display())
            }
            ConfigError::File { path, line, msg } => match line {
                Some(l) => write!(f, "error: config file {} line {l}: {msg}", path.display()),
                None => write!(f, "error: config file {}: {msg}", path.display()),
            },
            ConfigError::Invalid { name, msg } => write!(f, "error: invalid {name}: {msg}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Command-line flags, and the top level of the `--config` TOML file: every flag can
/// also be given as `STOMP_RELAY_<FLAG>` (upper case, `-` as `_`) and as the same-named
/// key in the file, which rejects unknown keys.
#[derive(Debug, Parser, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
#[command(
    name = "stomp-relay",
    version,
    about = "STOMP over WebSocket and TCP server: embedded simple broker or relay to ActiveMQ/RabbitMQ",
    long_about = "STOMP over WebSocket (ws://LISTEN/ws, subprotocols v12.stomp, v11.stomp, v10.stomp) and plain TCP.\n\
                  Every flag can also be set as STOMP_RELAY_<FLAG> (e.g. STOMP_RELAY_TCP_LISTEN) or as the same-named key in the TOML file given with --config.\n\
                  Precedence: flag > environment > config file > default."
)]
pub struct Cli {
    /// TOML config file; keys are the flag names (e.g. `tcp-listen = "127.0.0.1:61613"`).
    #[arg(long, env = "STOMP_RELAY_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// HTTP/WebSocket listen address: ws://ADDR/ws, /healthz, /readyz, /metrics [default: 127.0.0.1:8080]
    #[arg(long, env = "STOMP_RELAY_LISTEN", value_name = "ADDR")]
    #[serde(deserialize_with = "layer::socket_addr")]
    pub listen: Option<SocketAddr>,
    /// Plain STOMP-over-TCP listen address [default: off]
    #[arg(long, env = "STOMP_RELAY_TCP_LISTEN", value_name = "ADDR")]
    #[serde(deserialize_with = "layer::socket_addr")]
    pub tcp_listen: Option<SocketAddr>,
    /// Path that speaks STOMP over WebSocket, like Spring's addEndpoint; repeat or comma-separate [default: /ws]
    #[arg(
        long,
        env = "STOMP_RELAY_ENDPOINT",
        value_name = "PATH",
        value_delimiter = ','
    )]
    #[serde(deserialize_with = "layer::one_or_many")]
    pub endpoint: Option<Vec<String>>,
    /// Every endpoint also speaks SockJS (websocket, xhr-streaming, xhr-polling, eventsource), like Spring's withSockJS [default: false]
    #[arg(
        long,
        env = "STOMP_RELAY_SOCKJS",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub sockjs: Option<bool>,
    /// Idle time before a SockJS heart-beat frame `h` [default: 25s]
    #[arg(long, env = "STOMP_RELAY_SOCKJS_HEARTBEAT", value_name = "DURATION")]
    #[serde(deserialize_with = "layer::num_or_str")]
    pub sockjs_heartbeat: Option<String>,
    /// How long a SockJS session without a receiving request lives before it is closed [default: 5s]
    #[arg(
        long,
        env = "STOMP_RELAY_SOCKJS_DISCONNECT_DELAY",
        value_name = "DURATION"
    )]
    #[serde(deserialize_with = "layer::num_or_str")]
    pub sockjs_disconnect_delay: Option<String>,
    /// Application destination prefix (SENDs go to handlers); repeat or comma-separate [default: /pub/]
    #[arg(
        long,
        env = "STOMP_RELAY_APP_PREFIX",
        value_name = "PREFIX",
        value_delimiter = ','
    )]
    #[serde(deserialize_with = "layer::one_or_many")]
    pub app_prefix: Option<Vec<String>>,
    /// Broker destination prefix (broadcast destinations); repeat or comma-separate [default: /sub/,/topic/,/queue/]
    #[arg(
        long,
        env = "STOMP_RELAY_BROKER_PREFIX",
        value_name = "PREFIX",
        value_delimiter = ','
    )]
    #[serde(deserialize_with = "layer::one_or_many")]
    pub broker_prefix: Option<Vec<String>>,
    /// User destination prefix [default: /user/]
    #[arg(long, env = "STOMP_RELAY_USER_PREFIX", value_name = "PREFIX")]
    pub user_prefix: Option<String>,
    /// Broker: the embedded in-memory broker, or a relay to an external STOMP broker [default: simple]
    #[arg(long, env = "STOMP_RELAY_BROKER", value_enum)]
    pub broker: Option<BrokerKind>,
    /// Upstream broker URLs in failover order: stomp://H:P[,stomp://H2:P2] (stomps:// for TLS) [default: stomp://127.0.0.1:61613]
    #[arg(
        long,
        env = "STOMP_RELAY_RELAY",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[serde(deserialize_with = "layer::one_or_many")]
    pub relay: Option<Vec<String>>,
    /// Login for client sessions' upstream connections; replaces what clients send [default: guest]
    #[arg(long, env = "STOMP_RELAY_RELAY_LOGIN", value_name = "L")]
    pub relay_login: Option<String>,
    /// Passcode for client sessions' upstream connections [default: guest]
    #[arg(long, env = "STOMP_RELAY_RELAY_PASSCODE", value_name = "P")]
    pub relay_passcode: Option<Secret>,
    /// Login of the shared system session (application publishes) [default: guest]
    #[arg(long, env = "STOMP_RELAY_SYSTEM_LOGIN", value_name = "L")]
    pub system_login: Option<String>,
    /// Passcode of the shared system session [default: guest]
    #[arg(long, env = "STOMP_RELAY_SYSTEM_PASSCODE", value_name = "P")]
    pub system_passcode: Option<Secret>,
    /// Virtual host sent upstream in the `host` header [default: none]
    #[arg(long, env = "STOMP_RELAY_VIRTUAL_HOST", value_name = "H")]
    pub virtual_host: Option<String>,
    /// PEM file of CA certificates trusted for stomps:// relay addresses, besides the public web roots [default: none]
    #[arg(long, env = "STOMP_RELAY_RELAY_CA", value_name = "FILE")]
    pub relay_ca: Option<PathBuf>,
    /// How broker prefixes are spelled on the external broker: activemq, rabbitmq, artemis or generic [default: detected from the broker's CONNECTED server header, generic for brokers it does not name]
    #[arg(long, env = "STOMP_RELAY_DIALECT", value_parser = dialect_parser())]
    #[serde(deserialize_with = "dialect_key")]
    pub dialect: Option<Dialect>,
    /// One upstream connection per client session, or one shared per instance [default: per-session]
    #[arg(long, env = "STOMP_RELAY_RELAY_MODE", value_enum)]
    pub relay_mode: Option<RelayMode>,
    /// Heart-beats offered to clients: SEND,RECV milliseconds (0 disables) [default: 10000,10000]
    #[arg(long, env = "STOMP_RELAY_HEARTBEAT", value_name = "SEND,RECV")]
    pub heartbeat: Option<String>,
    /// Largest STOMP frame after reassembly; bigger gets ERROR and close 1002 [default: 64KiB]
    #[arg(long, env = "STOMP_RELAY_MAX_FRAME_SIZE", value_name = "SIZE")]
    #[serde(deserialize_with = "layer::num_or_str")]
    pub max_frame_size: Option<String>,
    /// Per-session outbound buffer; a client that lets it fill is closed with 4500 [default: 512KiB]
    #[arg(long, env = "STOMP_RELAY_SEND_BUFFER", value_name = "SIZE")]
    #[serde(deserialize_with = "layer::num_or_str")]
    pub send_buffer: Option<String>,
    /// Longest a write to one client may block before it is closed with 4500 [default: 10s]
    #[arg(long, env = "STOMP_RELAY_SEND_TIME_LIMIT", value_name = "DURATION")]
    #[serde(deserialize_with = "layer::num_or_str")]
    pub send_time_limit: Option<String>,
    /// Longest a new connection may wait before its first frame [default: 60s]
    #[arg(long, env = "STOMP_RELAY_TIME_TO_FIRST_FRAME", value_name = "DURATION")]
    #[serde(deserialize_with = "layer::num_or_str")]
    pub time_to_first_frame: Option<String>,
    /// Most concurrent client connections; more are refused [default: 100000]
    #[arg(long, env = "STOMP_RELAY_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Longest graceful shutdown waits for clients and upstream DISCONNECTs [default: 5s]
    #[arg(long, env = "STOMP_RELAY_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    #[serde(deserialize_with = "layer::num_or_str")]
    pub shutdown_timeout: Option<String>,
    /// How often a stats line (sessions, frames, broker) is logged at info; 0 for never [default: 30m]
    #[arg(long, env = "STOMP_RELAY_STATS_INTERVAL", value_name = "DURATION")]
    #[serde(deserialize_with = "layer::num_or_str")]
    pub stats_interval: Option<String>,
    /// Runtime worker threads; 1 saves the hand-offs between threads when several instances share a machine [default: one per CPU core]
    #[arg(long, env = "STOMP_RELAY_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<usize>,
    /// Token for /dashboard and /api/stats (Authorization: Bearer TOKEN or ?token=) [default: none: open on a loopback --listen, disabled on any other]
    #[arg(long, env = "STOMP_RELAY_ADMIN_TOKEN", value_name = "TOKEN")]
    pub admin_token: Option<Secret>,
    /// Key for POST /api/publish (X-API-Key: KEY or Authorization: Bearer KEY) [default: none: open on a loopback --listen, disabled on any other]
    #[arg(long, env = "STOMP_RELAY_API_KEY", value_name = "KEY")]
    pub api_key: Option<Secret>,
    /// Security flags (authentication, authorization, TLS, origins, abuse limits), the
    /// `[security]` table.
    #[command(flatten)]
    pub security: security::SecurityArgs,
    /// HTTP proxy flags (connect, subscribe and application back ends), the `[proxy]` table.
    #[command(flatten)]
    pub proxy: proxy::ProxyArgs,
    /// `[authorization]`: `on-send-denied` and `[[authorization.rules]]` (file only; the
    /// flags are `--on-send-denied` and `--rule`).
    #[arg(skip)]
    pub authorization: security::AuthorizationFile,
}

impl Config {
    /// Parses flags from the process arguments and environment, then the config file.
    pub fn from_env_and_args() -> Result<Config, ConfigError> {
        Config::from_args(std::env::args_os())
    }

    /// Parses the given arguments (first is the program name) with the process environment.
    pub fn from_args<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args).map_err(ConfigError::Cli)?;
        Config::from_cli(cli)
    }

    /// Merges parsed flags (already including environment variables) over the config file.
    pub fn from_cli(mut cli: Cli) -> Result<Config, ConfigError> {
        let mut file = match cli.config.take() {
            Some(path) => load_file(&path)?,
            None => Cli::default(),
        };
        let security = Layers::new(
            std::mem::take(&mut cli.security),
            std::mem::take(&mut file.security),
            "security.",
        );
        let proxy = Layers::new(
            std::mem::take(&mut cli.proxy),
            std::mem::take(&mut file.proxy),
            "proxy.",
        );
        let authorization = std::mem::take(&mut file.authorization);
        let mut l = Layers::new(cli, file, "");
        let mut c = Config::default();
        if let Some(v) = l.value("listen", |c| &mut c.listen) {
            c.listen = v;
        }
        c.tcp_listen = l.value("tcp-listen", |c| &mut c.tcp_listen);
        if let Some(g) = l.pick("app-prefix", |c| &mut c.app_prefix) {
            c.app_prefixes = check_prefixes(g)?;
        }
        if let Some(g) = l.pick("broker-prefix", |c| &mut c.broker_prefix) {
            c.broker_prefixes = check_prefixes(g)?;
        }
        if let Some(g) = l.pick("user-prefix", |c| &mut c.user_prefix) {
            c.user_prefix = check_prefixes(g.map(|p| vec![p]))?.remove(0);
        }
        if let Some(v) = l.value("broker", |c| &mut c.broker) {
            c.broker = v;
        }
        if let Some(g) = l.pick("relay", |c| &mut c.relay) {
            let addrs: Result<Vec<_>, _> = g
                .value
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| RelayAddr::parse(s.trim()))
                .collect();
            c.relay = addrs.map_err(|m| g.invalid(m))?;
            if c.relay.is_empty() {
                return Err(g.invalid("at least one broker URL is needed"));
            }
        }
        if let Some(v) = l.value("relay-login", |c| &mut c.relay_login) {
            c.relay_login = v;
        }
        if let Some(v) = l.value("relay-passcode", |c| &mut c.relay_passcode) {
            c.relay_passcode = v;
        }
        if let Some(v) = l.value("system-login", |c| &mut c.system_login) {
            c.system_login = v;
        }
        if let Some(v) = l.value("system-passcode", |c| &mut c.system_passcode) {
            c.system_passcode = v;
        }
        c.virtual_host = l.value("virtual-host", |c| &mut c.virtual_host);
        if let Some(g) = l.pick("relay-ca", |c| &mut c.relay_ca) {
            // Loaded now so a missing or certificate-less file is a startup error naming
            // the flag (exit 2), not a relay that never becomes available.
            crate::relay::tls::client_config(Some(&g.value)).map_err(|e| g.invalid(e.0))?;
            c.relay_ca = Some(g.value);
        }
        c.dialect = l.value("dialect", |c| &mut c.dialect);
        if let Some(v) = l.value("relay-mode", |c| &mut c.relay_mode) {
            c.relay_mode = v;
        }
        if let Some(g) = l.pick("heartbeat", |c| &mut c.heartbeat) {
            c.heartbeat = g.parse(|v| HeartBeat::parse(&v))?;
        }
        let size = |g: Option<Given<String>>| g.map(|g| g.parse(|v| parse_size(&v))).transpose();
        let dur = |g: Option<Given<String>>| g.map(|g| g.parse(|v| parse_duration(&v))).transpose();
        if let Some(g) = l.pick("max-frame-size", |c| &mut c.max_frame_size) {
            c.limits.max_frame_size =
                g.parse(|v| match parse_size(&v).map_err(|e| e.to_string())? {
                    n if n < 256 => Err(format!("{n} bytes is too small (at least 256)")),
                    n => Ok(n),
                })?;
        }
        if let Some(v) = size(l.pick("send-buffer", |c| &mut c.send_buffer))? {
            c.limits.send_buffer = v;
        }
        if let Some(v) = dur(l.pick("send-time-limit", |c| &mut c.send_time_limit))? {
            c.limits.send_time_limit = v;
        }
        if let Some(v) = dur(l.pick("time-to-first-frame", |c| &mut c.time_to_first_frame))? {
            c.limits.time_to_first_frame = v;
        }
        if let Some(v) = l.value("max-connections", |c| &mut c.max_connections) {
            c.limits.max_connections = v;
        }
        if let Some(v) = dur(l.pick("shutdown-timeout", |c| &mut c.shutdown_timeout))? {
            c.limits.shutdown_timeout = v;
        }
        if let Some(v) = dur(l.pick("stats-interval", |c| &mut c.stats_interval))? {
            c.stats_interval = v;
        }
        if let Some(g) = l.pick("worker-threads", |c| &mut c.worker_threads) {
            c.worker_threads = Some(g.parse(|n| match n {
                1..=1024 => Ok(std::num::NonZeroUsize::new(n).expect("checked above")),
                _ => Err(format!("{n} threads: use 1 to 1024")),
            })?);
        }
        if let Some(g) = l.pick("endpoint", |c| &mut c.endpoint) {
            c.endpoints = check_endpoints(g)?;
        }
        // Checked even without --sockjs, so a typo does not wait for the day it is turned on.
        let mut sockjs = SockJsConfig::default();
        for (g, slot) in [
            (
                l.pick("sockjs-heartbeat", |c| &mut c.sockjs_heartbeat),
                &mut sockjs.heartbeat,
            ),
            (
                l.pick("sockjs-disconnect-delay", |c| {
                    &mut c.sockjs_disconnect_delay
                }),
                &mut sockjs.disconnect_delay,
            ),
        ] {
            if let Some(g) = g {
                *slot = g.positive_duration()?;
            }
        }
        if l.value("sockjs", |c| &mut c.sockjs).unwrap_or(false) {
            c.sockjs = Some(sockjs);
        }
        for (g, key, slot) in [
            (
                l.pick("admin-token", |c| &mut c.admin_token),
                "admin-token",
                &mut c.admin_token,
            ),
            (
                l.pick("api-key", |c| &mut c.api_key),
                "api-key",
                &mut c.api_key,
            ),
        ] {
            if let Some(g) = g {
                if g.value.is_empty() {
                    return Err(g.invalid(format!(
                        "`{key}` must not be empty (leave it out to disable)"
                    )));
                }
                *slot = Some(g.value);
            }
        }
        c.security = security::SecurityConfig::merge(security, authorization)?;
        c.proxy = proxy::ProxyConfig::merge(proxy)?;
        Ok(c)
    }
}

fn check_prefixes(g: Given<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let v: Vec<String> = g
        .value
        .iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if v.is_empty() {
        return Err(g.invalid("at least one prefix is needed"));
    }
    if let Some(bad) = v.iter().find(|p| !p.starts_with('/')) {
        return Err(g.invalid(format!("`{bad}` must start with `/`")));
    }
    Ok(v)
}

/// Paths the server itself serves, which an endpoint must not shadow.
const RESERVED_PATHS: [&str; 7] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/dashboard",
    "/api",
    "/assets",
    "/openapi.json",
];

fn check_endpoints(g: Given<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let bad = |msg: String| g.invalid(msg);
    let mut out: Vec<String> = Vec::new();
    for p in g.value.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let path = p.trim_end_matches('/');
        let plain = |c: char| c.is_ascii_alphanumeric() || "-._~/".contains(c);
        if !p.starts_with('/') || path.is_empty() {
            return Err(bad(format!("`{p}` must be a path like /ws-stomp")));
        }
        if !path.chars().all(plain) || path.contains("//") {
            return Err(bad(format!(
                "`{p}` may hold only letters, digits, `-._~` and single `/`"
            )));
        }
        if let Some(r) = RESERVED_PATHS
            .iter()
            .find(|r| path == **r || path.starts_with(&format!("{r}/")))
        {
            return Err(bad(format!("`{p}` is the server's own {r}")));
        }
        if out.iter().any(|o| o == path) {
            return Err(bad(format!("`{p}` is given twice")));
        }
        // SockJS serves PATH/{server}/{session}/{transport}: one endpoint inside another
        // would be ambiguous.
        let inside = |outer: &str, inner: &str| inner.starts_with(&format!("{outer}/"));
        if let Some(o) = out.iter().find(|o| inside(o, path) || inside(path, o)) {
            return Err(bad(format!(
                "`{p}` and `{o}` are nested; endpoints must not be"
            )));
        }
        out.push(path.to_string());
    }
    if out.is_empty() {
        return Err(bad("at least one endpoint is needed".into()));
    }
    Ok(out)
}

fn load_file(path: &Path) -> Result<Cli, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    toml::from_str::<Cli>(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        // toml's message names the key (`unknown field `lisen`, expected one of ...`);
        // keep only its first line so the whole error stays on one line.
        let msg = e.message().lines().next().unwrap_or("invalid").to_string();
        let msg = msg.replace("unknown field", "unknown key");
        ConfigError::File {
            path: path.to_path_buf(),
            line,
            msg,
        }
    })
}

#[cfg(test)]
mod tests;
