//! `--allowed-origin` values: Spring's `allowedOriginPatterns`. An entry is `*` (any
//! origin), an exact origin (`https://app.example.com`), or a pattern whose host has
//! `*` wildcards (`https://*.example.com`: any non-empty run of host characters) and
//! whose port is one number, a list (`:[8080,8443]`) or any (`:[*]`). Without a port
//! only the scheme's default port matches, as browsers omit it from `Origin`.
//!
//! Entries are parsed when the configuration is read, so a malformed one is a startup
//! error naming the flag, never a list that silently matches nothing.

use std::fmt;

/// One parsed `--allowed-origin` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern(Kind);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Any,
    Pattern {
        scheme: String,
        host: String,
        port: Port,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Port {
    /// None given: the scheme's default.
    Default,
    List(Vec<u16>),
    Any,
}

/// Why an entry is not an origin pattern. `Display` is the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadOrigin(String);

impl fmt::Display for BadOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadOrigin {}

const SHAPE: &str =
    "must look like https://host[:port], with `*` in the host and :[port,...] or :[*] allowed (or be `*`)";

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// Splits `host[:port]` (host possibly `[v6]`) into host and port text.
fn split_port(rest: &str) -> (&str, Option<&str>) {
    let after_host = if rest.starts_with('[') {
        rest.find(']').map_or(rest.len(), |i| i + 1)
    } else {
        0
    };
    match rest[after_host..].rfind(':') {
        Some(i) => (&rest[..after_host + i], Some(&rest[after_host + i + 1..])),
        None => (rest, None),
    }
}

impl OriginPattern {
    /// Parses one entry (case-insensitive; a trailing `/` is ignored).
    pub fn parse(entry: &str) -> Result<OriginPattern, BadOrigin> {
        let bad = || BadOrigin(format!("`{entry}` {SHAPE}"));
        let e = entry.trim_end_matches('/').to_ascii_lowercase();
        if e == "*" {
            return Ok(OriginPattern(Kind::Any));
        }
        let (scheme, rest) = e.split_once("://").ok_or_else(bad)?;
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        let (host, port) = split_port(rest);
        let host_ok = !host.is_empty()
            && (host.starts_with('[')
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.*_".contains(&b)));
        if !host_ok {
            return Err(bad());
        }
        let port = match port {
            None => Port::Default,
            Some("[*]") => Port::Any,
            Some(p) => {
                let list = p.strip_prefix('[').and_then(|p| p.strip_suffix(']'));
                let ports: Result<Vec<u16>, _> = list
                    .unwrap_or(p)
                    .split(',')
                    .map(|n| n.trim().parse())
                    .collect();
                Port::List(ports.map_err(|_| bad())?)
            }
        };
        Ok(OriginPattern(Kind::Pattern {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
        }))
    }

    /// Whether the `Origin` header value `origin` is allowed.
    pub fn matches(&self, origin: &str) -> bool {
        let Kind::Pattern { scheme, host, port } = &self.0 else {
            return true;
        };
        let o = origin.trim_end_matches('/').to_ascii_lowercase();
        let Some((o_scheme, rest)) = o.split_once("://") else {
            return false;
        };
        if o_scheme != scheme {
            return false;
        }
        let (o_host, o_port) = split_port(rest);
        let o_port = match o_port.map(str::parse::<u16>) {
            None => default_port(o_scheme),
            Some(Ok(p)) => p,
            Some(Err(_)) => return false,
        };
        let port_ok = match port {
            Port::Default => o_port == default_port(scheme),
            Port::List(list) => list.contains(&o_port),
            Port::Any => true,
        };
        port_ok && glob(host.as_bytes(), o_host.as_bytes())
    }
}

/// `*` in `pattern` matches one or more bytes of `text`; everything else itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (1..=text.len()).any(|n| glob(rest, &text[n..])),
        Some((&c, rest)) => text.first() == Some(&c) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, origin: &str) -> bool {
        OriginPattern::parse(pattern).unwrap().matches(origin)
    }

    #[test]
    fn exact_origins_and_default_ports() {
        assert!(allows("https://app.example.com", "https://app.example.com"));
        assert!(allows(
            "https://App.Example.com/",
            "https://app.example.COM"
        ));
        assert!(allows(
            "https://app.example.com",
            "https://app.example.com:443"
        ));
        assert!(!allows(
            "https://app.example.com",
            "https://app.example.com:8443"
        ));
        assert!(!allows("https://app.example.com", "http://app.example.com"));
        assert!(!allows(
            "https://app.example.com",
            "https://app.example.com.evil.net"
        ));
        assert!(allows("http://localhost:8080", "http://localhost:8080"));
        assert!(allows("http://[::1]:8080", "http://[::1]:8080"));
        assert!(!allows("http://[::1]:8080", "http://[::1]:8081"));
        assert!(allows("*", "https://anything.example"));
    }

    #[test]
    fn host_wildcards_and_port_lists() {
        let p = "https://*.example.com";
        assert!(allows(p, "https://app.example.com"));
        assert!(allows(p, "https://a.b.example.com"));
        assert!(!allows(p, "https://example.com"));
        assert!(!allows(p, "https://app.example.com.evil.net"));
        assert!(!allows(p, "https://evilexample.com"));
        assert!(!allows(p, "http://app.example.com"));
        assert!(!allows(p, "https://app.example.com:8443"));
        assert!(allows(
            "https://*.example.com:[8080,8443]",
            "https://a.example.com:8443"
        ));
        assert!(!allows(
            "https://*.example.com:[8080,8443]",
            "https://a.example.com"
        ));
        assert!(allows(
            "https://*.example.com:[*]",
            "https://a.example.com:1234"
        ));
        assert!(allows("https://*.example.com:[*]", "https://a.example.com"));
    }

    #[test]
    fn malformed_entries_are_errors_naming_the_shape() {
        for bad in [
            "example.com",
            "ftp://example.com",
            "https://",
            "https://exa mple.com",
            "https://example.com/path",
            "https://example.com:80a",
            "https://example.com:[8080,x]",
            "https://example.com:99999",
            "http://127.0.0.1:*",
        ] {
            let e = OriginPattern::parse(bad).expect_err(bad);
            assert!(e.to_string().contains(bad), "{e}");
            assert!(e.to_string().contains("https://host[:port]"), "{e}");
        }
    }
}

/// The `--allowed-origin` list, parsed: what the WebSocket handshake and the HTTP API's
/// CORS both check an `Origin` against. Cheap to clone for a part that only checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<OriginPattern>);

impl AllowedOrigins {
    /// Parses every entry; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowedOrigins, BadOrigin> {
        entries
            .iter()
            .map(|e| OriginPattern::parse(e.as_ref()))
            .collect::<Result<_, _>>()
            .map(AllowedOrigins)
    }

    /// Whether the `Origin` header value `origin` matches an entry.
    pub fn listed(&self, origin: &str) -> bool {
        self.0.iter().any(|p| p.matches(origin))
    }
}
