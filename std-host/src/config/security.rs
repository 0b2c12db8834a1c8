//! Security settings as configured: the `--jwt-*`, `--users-file`, `--tls-*`, origin and
//! abuse-limit flags, the `[security]` table and the `[[authorization.rules]]` array of the
//! TOML file, merged into one plain-data [`SecurityConfig`] (flag > environment > file).
//!
//! Nothing here opens a file or parses a key: that happens once when the server binds
//! (`Security::build` in the auth module), so [`crate::Config`] stays cheap to clone and compare.
//! Every error names the flag or key to fix.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::layer::{Given, Layers};
use super::origin::OriginPattern;
use super::{parse_duration, ConfigError};
use crate::auth::authorize::{parse_rule, Rule};

/// What a denied SEND gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OnSendDenied {
    /// ERROR naming the destination and command, then close (Spring's behaviour).
    #[default]
    Close,
    /// ERROR naming the destination and command; the session stays open.
    Error,
}

/// The merged security configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// HS256 shared secret for JWTs.
    pub jwt_secret: Option<crate::secret::Secret>,
    /// PEM public key (RSA for RS256, EC P-256 for ES256) for JWTs.
    pub jwt_public_key: Option<PathBuf>,
    /// Required `iss` claim.
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim.
    pub jwt_audience: Option<String>,
    /// WebSocket handshake query parameter carrying a JWT (`?access_token=...`).
    pub token_query_param: Option<String>,
    /// WebSocket handshake cookie carrying a JWT.
    pub token_cookie: Option<String>,
    /// TOML file of users with argon2 password hashes.
    pub users_file: Option<PathBuf>,
    /// Whether clients without credentials are let in. `None`: yes exactly when no
    /// authentication (JWT or users file) is configured.
    pub allow_anonymous: Option<bool>,
    /// Allowed WebSocket `Origin`s. Empty: no check on loopback listens, same-origin
    /// only on other listens.
    pub allowed_origins: Vec<String>,
    /// Certificate chain (PEM) for TLS on the WebSocket and TCP listeners.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for TLS.
    pub tls_key: Option<PathBuf>,
    /// Most concurrent connections from one IP address (0: unlimited).
    pub max_connections_per_ip: usize,
    /// Most subscriptions one session may hold (0: unlimited).
    pub max_subscriptions: usize,
    /// SENDs per second one session may sustain (0: unlimited).
    pub send_rate: u32,
    /// SENDs one session may burst above the rate.
    pub send_burst: u32,
    /// Time allowed for the TLS handshake and the HTTP request head of a new connection,
    /// and for a STOMP frame to complete once it started arriving.
    pub header_read_timeout: Duration,
    /// Authorization rules, first match wins; none: everything allowed.
    pub rules: Vec<Rule>,
    /// What a denied SEND gets.
    pub on_send_denied: OnSendDenied,
}

/// Subscriptions a session may hold unless configured: more than a chat or dashboard
/// page uses, few enough that one client cannot grow a session without bound.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 1_000;

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            jwt_secret: None,
            jwt_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
            token_query_param: None,
            token_cookie: None,
            users_file: None,
            allow_anonymous: None,
            allowed_origins: Vec::new(),
            tls_cert: None,
            tls_key: None,
            max_connections_per_ip: 0,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            send_rate: 0,
            send_burst: 0,
            header_read_timeout: Duration::from_secs(10),
            rules: Vec::new(),
            on_send_denied: OnSendDenied::Close,
        }
    }
}

impl SecurityConfig {
    /// Whether any authentication method is configured.
    pub fn has_auth(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_public_key.is_some() || self.users_file.is_some()
    }

    /// Whether clients without credentials are let in.
    pub fn anonymous_allowed(&self) -> bool {
        self.allow_anonymous.unwrap_or(!self.has_auth())
    }
}

/// The security flags, each also `STOMP_RELAY_<FLAG>` and a key of the `[security]`
/// table (but `--rule` and `--on-send-denied`, whose file form is `[authorization]`).
#[derive(Debug, Args, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecurityArgs {
    /// HS256 secret for JWTs in CONNECT `passcode`/`Authorization` or the WebSocket handshake [default: none]
    #[arg(long, env = "STOMP_RELAY_JWT_SECRET", value_name = "SECRET")]
    pub jwt_secret: Option<crate::secret::Secret>,
    /// PEM public key for RS256 (RSA) or ES256 (EC P-256) JWTs [default: none]
    #[arg(long, env = "STOMP_RELAY_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,
    /// Required JWT `iss` [default: not checked]
    #[arg(long, env = "STOMP_RELAY_JWT_ISSUER", value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// Required JWT `aud` [default: not checked]
    #[arg(long, env = "STOMP_RELAY_JWT_AUDIENCE", value_name = "AUD")]
    pub jwt_audience: Option<String>,
    /// WebSocket handshake query parameter carrying a JWT, e.g. access_token [default: none]
    #[arg(long, env = "STOMP_RELAY_TOKEN_QUERY_PARAM", value_name = "NAME")]
    pub token_query_param: Option<String>,
    /// WebSocket handshake cookie carrying a JWT [default: none]
    #[arg(long, env = "STOMP_RELAY_TOKEN_COOKIE", value_name = "NAME")]
    pub token_cookie: Option<String>,
    /// TOML file of users and argon2 password hashes (CONNECT login/passcode) [default: none]
    #[arg(long, env = "STOMP_RELAY_USERS_FILE", value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// Let clients in without credentials [default: true without --jwt-*/--users-file, else false]
    #[arg(long, env = "STOMP_RELAY_ALLOW_ANONYMOUS", value_name = "BOOL")]
    pub allow_anonymous: Option<bool>,
    /// Allowed WebSocket Origin, e.g. https://app.example.com; repeat or comma-separate [default: same-origin on non-loopback listens]
    #[arg(
        long,
        env = "STOMP_RELAY_ALLOWED_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    #[serde(deserialize_with = "super::layer::one_or_many")]
    pub allowed_origin: Option<Vec<String>>,
    /// PEM certificate chain: serve wss:// and STOMP over TLS (needs --tls-key) [default: none]
    #[arg(long, env = "STOMP_RELAY_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert [default: none]
    #[arg(long, env = "STOMP_RELAY_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Most concurrent connections from one IP address, 0 for unlimited [default: 0]
    #[arg(long, env = "STOMP_RELAY_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Most subscriptions per session, 0 for unlimited [default: 1000]
    #[arg(long, env = "STOMP_RELAY_MAX_SUBSCRIPTIONS", value_name = "N")]
    pub max_subscriptions: Option<usize>,
    /// SENDs per second per session; more gets ERROR and close. 0 for unlimited [default: 0]
    #[arg(long, env = "STOMP_RELAY_SEND_RATE", value_name = "N")]
    pub send_rate: Option<u32>,
    /// SENDs a session may burst above --send-rate [default: the rate]
    #[arg(long, env = "STOMP_RELAY_SEND_BURST", value_name = "N")]
    pub send_burst: Option<u32>,
    /// Time for a new connection's TLS handshake and HTTP request head, and for any started STOMP frame to complete [default: 10s]
    #[arg(long, env = "STOMP_RELAY_HEADER_READ_TIMEOUT", value_name = "DURATION")]
    #[serde(deserialize_with = "super::layer::num_or_str")]
    pub header_read_timeout: Option<String>,
    /// Authorization rule, e.g. "allow subscribe /sub/chat/{room} if claim rooms contains {room}"; repeatable, first match wins [default: none, all allowed]
    #[arg(
        long = "rule",
        env = "STOMP_RELAY_RULES",
        value_name = "RULE",
        value_delimiter = ';'
    )]
    #[serde(skip)]
    pub rules: Option<Vec<String>>,
    /// What a denied SEND gets: close (ERROR then close) or error (ERROR, stay open) [default: close]
    #[arg(long, env = "STOMP_RELAY_ON_SEND_DENIED", value_enum)]
    #[serde(skip)]
    pub on_send_denied: Option<OnSendDenied>,
}

/// The `[authorization]` table of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthorizationFile {
    on_send_denied: Option<OnSendDenied>,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

/// One `[[authorization.rules]]` entry: either `rule = "allow subscribe /sub/** ..."` or
/// the table form `allow = "subscribe"` / `deny = "send"`, `destination`, and optionally
/// `if-claim` with `contains`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RuleFile {
    rule: Option<String>,
    allow: Option<String>,
    deny: Option<String>,
    destination: Option<String>,
    if_claim: Option<String>,
    contains: Option<String>,
}

/// How a `[[authorization.rules]]` table is malformed (before its rule text is parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleFileError {
    /// `rule` together with `allow`/`deny`/`destination`.
    BothForms,
    /// Neither or both of `allow` and `deny`.
    Effect,
    /// `allow`/`deny` without `destination`.
    MissingDestination,
    /// `if-claim` without `contains` or the reverse.
    HalfCondition,
}

impl std::fmt::Display for RuleFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RuleFileError::BothForms => "give either `rule` or `allow`/`deny` with `destination`",
            RuleFileError::Effect => "needs exactly one of `allow` or `deny` (or `rule`)",
            RuleFileError::MissingDestination => "needs a `destination` pattern",
            RuleFileError::HalfCondition => "`if-claim` and `contains` go together",
        })
    }
}

impl RuleFile {
    fn to_text(&self) -> Result<String, RuleFileError> {
        if let Some(r) = &self.rule {
            if self.allow.is_some() || self.deny.is_some() || self.destination.is_some() {
                return Err(RuleFileError::BothForms);
            }
            return Ok(r.clone());
        }
        let (effect, cmds) = match (&self.allow, &self.deny) {
            (Some(c), None) => ("allow", c),
            (None, Some(c)) => ("deny", c),
            _ => return Err(RuleFileError::Effect),
        };
        let dest = self
            .destination
            .as_deref()
            .ok_or(RuleFileError::MissingDestination)?;
        let mut text = format!("{effect} {} {dest}", cmds.replace([',', ' '], "|"));
        match (&self.if_claim, &self.contains) {
            (Some(c), Some(v)) => text.push_str(&format!(" if claim {c} contains {v}")),
            (None, None) => {}
            _ => return Err(RuleFileError::HalfCondition),
        }
        Ok(text)
    }
}

fn invalid(name: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.into(),
        msg: msg.into(),
    }
}

impl SecurityConfig {
    /// Merges the flags over the `[security]` table, and `--rule`/`--on-send-denied` over
    /// the `[authorization]` table.
    pub(crate) fn merge(
        mut l: Layers<SecurityArgs>,
        authz: AuthorizationFile,
    ) -> Result<SecurityConfig, ConfigError> {
        let mut c = SecurityConfig::default();
        let non_empty = |g: Option<Given<String>>| match g {
            Some(g) if g.value.is_empty() => Err(g.invalid("must not be empty")),
            other => Ok(other.map(|g| g.value)),
        };
        c.jwt_secret = non_empty(
            l.pick("jwt-secret", |s| &mut s.jwt_secret)
                .map(|g| g.map(|s| s.expose().to_owned())),
        )?
        .map(crate::secret::Secret::from);
        c.jwt_public_key = l.value("jwt-public-key", |s| &mut s.jwt_public_key);
        c.jwt_issuer = l.value("jwt-issuer", |s| &mut s.jwt_issuer);
        c.jwt_audience = l.value("jwt-audience", |s| &mut s.jwt_audience);
        c.token_query_param = non_empty(l.pick("token-query-param", |s| &mut s.token_query_param))?;
        c.token_cookie = non_empty(l.pick("token-cookie", |s| &mut s.token_cookie))?;
        c.users_file = l.value("users-file", |s| &mut s.users_file);
        c.allow_anonymous = l.value("allow-anonymous", |s| &mut s.allow_anonymous);
        if let Some(g) = l.pick("allowed-origin", |s| &mut s.allowed_origin) {
            for o in &g.value {
                OriginPattern::parse(o).map_err(|e| g.invalid(e))?;
            }
            c.allowed_origins = g
                .value
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect();
        }
        let cert = l.pick("tls-cert", |s| &mut s.tls_cert);
        let key = l.pick("tls-key", |s| &mut s.tls_key);
        match (cert, key) {
            (Some(cert), Some(key)) => {
                c.tls_cert = Some(cert.value);
                c.tls_key = Some(key.value);
            }
            (Some(g), None) => return Err(g.invalid("--tls-cert and --tls-key go together")),
            (None, Some(g)) => return Err(g.invalid("--tls-cert and --tls-key go together")),
            (None, None) => {}
        }
        if let Some(v) = l.value("max-connections-per-ip", |s| &mut s.max_connections_per_ip) {
            c.max_connections_per_ip = v;
        }
        if let Some(v) = l.value("max-subscriptions", |s| &mut s.max_subscriptions) {
            c.max_subscriptions = v;
        }
        if let Some(v) = l.value("send-rate", |s| &mut s.send_rate) {
            c.send_rate = v;
        }
        c.send_burst = l
            .value("send-burst", |s| &mut s.send_burst)
            .unwrap_or(c.send_rate);
        if let Some(g) = l.pick("header-read-timeout", |s| &mut s.header_read_timeout) {
            c.header_read_timeout = g.parse(|v| parse_duration(&v))?;
        }
        c.on_send_denied = l
            .value("on-send-denied", |s| &mut s.on_send_denied)
            .or(authz.on_send_denied)
            .unwrap_or_default();
        match l.pick("rule", |s| &mut s.rules) {
            Some(g) => {
                for t in g.value.iter().filter(|t| !t.trim().is_empty()) {
                    c.rules.push(parse_rule(t).map_err(|m| g.invalid(m))?);
                }
            }
            None => {
                for (i, r) in authz.rules.iter().enumerate() {
                    let name = format!("config key `authorization.rules[{i}]`");
                    let text = r
                        .to_text()
                        .map_err(|m| invalid(name.clone(), m.to_string()))?;
                    c.rules
                        .push(parse_rule(&text).map_err(|m| invalid(name, m.to_string()))?);
                }
            }
        }
        Ok(c)
    }
}
