//! HTTP proxy settings as configured: `--connect-proxy`, `--subscribe-proxy`,
//! `--app-proxy` and their limits, and the `[proxy]` table of the TOML file (keys are
//! the flag names), merged into one plain-data [`ProxyConfig`] (flag > environment >
//! file). URLs and patterns are checked here, so a typo is a startup error naming the
//! flag or key; the HTTP client itself is built by `crate::proxy`.

use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::layer::Layers;
use super::{ConfigError, ValueError};

/// Where an application back end's error goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AppErrors {
    /// ERROR with the back end's message, then close (STOMP's rule for ERROR).
    #[default]
    Error,
    /// A MESSAGE on the sender's `/user/queue/errors` (Spring's `@SendToUser` from a
    /// `@MessageExceptionHandler`); the session stays open.
    UserQueue,
}

/// Destinations matching `pattern` go to the back end at `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRoute {
    /// A destination pattern (`/app/chat/{room}`, `/topic/**`); `/**` matches all.
    pub pattern: String,
    /// The back end's endpoint (http:// or https://).
    pub url: String,
}

/// The merged proxy configuration. No proxy configured: none is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Asked on every CONNECT.
    pub connect: Option<String>,
    /// Asked on SUBSCRIBE to a matching destination (first match wins).
    pub subscribe: Vec<ProxyRoute>,
    /// Handles SENDs to matching application destinations (first match wins).
    pub app: Vec<ProxyRoute>,
    /// Longest one call may take, waiting for a free slot included.
    pub timeout: Duration,
    /// Calls in flight at once on this instance; more wait (within the timeout).
    pub concurrency: usize,
    /// Handshake HTTP headers (lower case) passed to the connect proxy, e.g. `cookie`.
    pub http_headers: Vec<String>,
    /// Whether CONNECT's `passcode` is passed to the connect proxy.
    pub connect_passcode: bool,
    /// Where application back end errors go.
    pub app_errors: AppErrors,
    /// Consecutive failures of one back end that open its circuit (0: never).
    pub breaker_failures: u32,
    /// How long an open circuit fails calls at once before one trial call.
    pub breaker_cooldown: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect: None,
            subscribe: Vec::new(),
            app: Vec::new(),
            timeout: Duration::from_secs(5),
            concurrency: 256,
            http_headers: Vec::new(),
            connect_passcode: false,
            app_errors: AppErrors::Error,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(10),
        }
    }
}

impl ProxyConfig {
    /// Whether any proxy is configured.
    pub fn any(&self) -> bool {
        self.connect.is_some() || !self.subscribe.is_empty() || !self.app.is_empty()
    }
}

/// The proxy flags (each also `STOMP_RELAY_<FLAG>` and a key of the `[proxy]` table).
#[derive(Debug, Args, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProxyArgs {
    /// Back end asked to allow each CONNECT (POST JSON; see docs/proxies.md) [default: none]
    #[arg(long, env = "STOMP_RELAY_CONNECT_PROXY", value_name = "URL")]
    pub connect_proxy: Option<String>,
    /// Back end asked to allow SUBSCRIBEs to matching destinations, [PATTERN=]URL; repeatable [default: none]
    #[arg(
        long,
        env = "STOMP_RELAY_SUBSCRIBE_PROXY",
        value_name = "[PATTERN=]URL",
        value_delimiter = ' '
    )]
    pub subscribe_proxy: Option<Vec<String>>,
    /// Back end handling SENDs to matching application destinations, [PATTERN=]URL; repeatable [default: none]
    #[arg(
        long,
        env = "STOMP_RELAY_APP_PROXY",
        value_name = "[PATTERN=]URL",
        value_delimiter = ' '
    )]
    pub app_proxy: Option<Vec<String>>,
    /// Longest one proxy call may take [default: 5s]
    #[arg(long, env = "STOMP_RELAY_PROXY_TIMEOUT", value_name = "DURATION")]
    #[serde(deserialize_with = "super::layer::num_or_str")]
    pub proxy_timeout: Option<String>,
    /// Proxy calls in flight at once on this instance [default: 256]
    #[arg(long, env = "STOMP_RELAY_PROXY_CONCURRENCY", value_name = "N")]
    pub proxy_concurrency: Option<usize>,
    /// Handshake HTTP header passed to the connect proxy (e.g. cookie); repeatable [default: none]
    #[arg(
        long,
        env = "STOMP_RELAY_PROXY_HTTP_HEADER",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub proxy_http_header: Option<Vec<String>>,
    /// Pass CONNECT's passcode to the connect proxy [default: false]
    #[arg(long, env = "STOMP_RELAY_CONNECT_PROXY_PASSCODE", value_name = "BOOL")]
    pub connect_proxy_passcode: Option<bool>,
    /// Where app back end errors go: error (ERROR, close) or user-queue (/user/queue/errors) [default: error]
    #[arg(long, env = "STOMP_RELAY_APP_PROXY_ERRORS", value_enum)]
    pub app_proxy_errors: Option<AppErrors>,
    /// Consecutive failures of one back end that open its circuit, 0 for never [default: 5]
    #[arg(long, env = "STOMP_RELAY_PROXY_BREAKER_FAILURES", value_name = "N")]
    pub proxy_breaker_failures: Option<u32>,
    /// How long an open circuit fails calls at once [default: 10s]
    #[arg(
        long,
        env = "STOMP_RELAY_PROXY_BREAKER_COOLDOWN",
        value_name = "DURATION"
    )]
    #[serde(deserialize_with = "super::layer::num_or_str")]
    pub proxy_breaker_cooldown: Option<String>,
}

/// An http:// or https:// URL with a host.
fn check_url(url: &str) -> Result<String, ValueError> {
    let u = url.trim();
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| ValueError::new(u, "expected an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(ValueError::new(u, "the URL has no host"));
    }
    Ok(u.to_owned())
}

/// `[PATTERN=]URL`: a pattern starts with `/`, so `=` inside a URL's query is no split.
fn parse_route(s: &str) -> Result<ProxyRoute, ValueError> {
    let s = s.trim();
    let (pattern, url) = match s.split_once('=') {
        Some((p, u)) if p.starts_with('/') => (p.trim(), u),
        _ => ("/**", s),
    };
    if pattern.contains(char::is_whitespace) {
        return Err(ValueError::new(
            pattern,
            "a pattern cannot contain white space",
        ));
    }
    Ok(ProxyRoute {
        pattern: pattern.to_owned(),
        url: check_url(url)?,
    })
}

impl ProxyConfig {
    /// Merges the flags over the `[proxy]` table.
    pub(crate) fn merge(mut l: Layers<ProxyArgs>) -> Result<ProxyConfig, ConfigError> {
        let mut c = ProxyConfig::default();
        if let Some(g) = l.pick("connect-proxy", |p| &mut p.connect_proxy) {
            c.connect = Some(g.parse(|u| check_url(&u))?);
        }
        for (g, slot) in [
            (
                l.pick("subscribe-proxy", |p| &mut p.subscribe_proxy),
                &mut c.subscribe,
            ),
            (l.pick("app-proxy", |p| &mut p.app_proxy), &mut c.app),
        ] {
            let Some(g) = g else { continue };
            for r in g.value.iter().filter(|r| !r.trim().is_empty()) {
                slot.push(parse_route(r).map_err(|m| g.invalid(m))?);
            }
        }
        for (g, slot) in [
            (
                l.pick("proxy-timeout", |p| &mut p.proxy_timeout),
                &mut c.timeout,
            ),
            (
                l.pick("proxy-breaker-cooldown", |p| &mut p.proxy_breaker_cooldown),
                &mut c.breaker_cooldown,
            ),
        ] {
            if let Some(g) = g {
                *slot = g.positive_duration()?;
            }
        }
        if let Some(g) = l.pick("proxy-concurrency", |p| &mut p.proxy_concurrency) {
            if g.value == 0 {
                return Err(g.invalid("must be at least 1"));
            }
            c.concurrency = g.value;
        }
        if let Some(list) = l.value("proxy-http-header", |p| &mut p.proxy_http_header) {
            c.http_headers = list
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect();
        }
        if let Some(v) = l.value("connect-proxy-passcode", |p| &mut p.connect_proxy_passcode) {
            c.connect_passcode = v;
        }
        if let Some(v) = l.value("app-proxy-errors", |p| &mut p.app_proxy_errors) {
            c.app_errors = v;
        }
        if let Some(v) = l.value("proxy-breaker-failures", |p| &mut p.proxy_breaker_failures) {
            c.breaker_failures = v;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_with_and_without_pattern() {
        let r = parse_route("/app/chat/**=http://127.0.0.1:9000/chat?a=b").unwrap();
        assert_eq!(r.pattern, "/app/chat/**");
        assert_eq!(r.url, "http://127.0.0.1:9000/chat?a=b");
        let r = parse_route("https://backend/app?x=1").unwrap();
        assert_eq!(r.pattern, "/**");
        assert_eq!(r.url, "https://backend/app?x=1");
        assert!(parse_route("/app/**=ftp://x").is_err());
        assert!(parse_route("/app/**=http://").is_err());
    }

    #[test]
    fn errors_name_the_flag_or_key() {
        let args = ProxyArgs {
            app_proxy: Some(vec!["/app/**=backend:9000".into()]),
            ..Default::default()
        };
        let e = ProxyConfig::merge(Layers::new(args, ProxyArgs::default(), "proxy."))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--app-proxy") && e.contains("backend:9000"),
            "{e}"
        );
        let file = ProxyArgs {
            proxy_timeout: Some("soon".into()),
            ..Default::default()
        };
        let e = ProxyConfig::merge(Layers::new(ProxyArgs::default(), file, "proxy."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("proxy.proxy-timeout"), "{e}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let args = ProxyArgs {
            proxy_timeout: Some("250ms".into()),
            ..Default::default()
        };
        let file = ProxyArgs {
            proxy_timeout: Some("9s".into()),
            connect_proxy: Some("http://127.0.0.1:1/connect".into()),
            ..Default::default()
        };
        let c = ProxyConfig::merge(Layers::new(args, file, "proxy.")).unwrap();
        assert_eq!(c.timeout, Duration::from_millis(250));
        assert_eq!(c.connect.as_deref(), Some("http://127.0.0.1:1/connect"));
        assert!(c.any());
    }
}
