//! Destination authorization: rules such as
//! `allow subscribe /sub/chat/{room} if claim rooms contains {room}` or
//! `deny send /sub/**`, checked in order for every SEND and SUBSCRIBE.
//!
//! Invariants: the first rule whose command, destination pattern and condition all match
//! decides; when rules exist and none matches, the frame is denied (default deny); with
//! no rules everything is allowed (the zero-setup run). Destination patterns use
//! relay-core's matcher (`*`, `**`, `{var}` over `/` segments), which is linear-time.
//!
//! A SUBSCRIBE whose destination is itself a wildcard (`/sub/**`, which the simple broker
//! and the relay treat as "all matching destinations") could otherwise slip past a rule
//! meant for single destinations (`{room}` would capture `**`). Such a subscription
//! matches a rule only when the rule's pattern is that exact string, so granting a
//! wildcard subscription is always an explicit decision.

use std::fmt;

use serde_json::Value;
use stomp_relay_core::pattern::{self, Captures, Separator};

use crate::config::value::ValueError;

/// The commands a rule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// SEND.
    Send,
    /// SUBSCRIBE.
    Subscribe,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Send => "SEND",
            Op::Subscribe => "SUBSCRIBE",
        })
    }
}

/// One parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Allow (true) or deny (false).
    pub allow: bool,
    /// Applies to SEND.
    pub send: bool,
    /// Applies to SUBSCRIBE.
    pub subscribe: bool,
    /// Destination pattern.
    pub destination: String,
    /// Optional `if claim NAME contains TEMPLATE`.
    pub condition: Option<(String, String)>,
}

/// What is wrong with a rule's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// The first word is not `allow` or `deny`.
    Effect(String),
    /// No command word.
    MissingCommand,
    /// A command other than send, subscribe or any.
    UnknownCommand(String),
    /// No destination pattern.
    MissingDestination,
    /// The pattern does not start with `/`.
    RelativeDestination(String),
    /// Words after the pattern other than `if claim NAME contains VALUE`.
    TrailingWords,
    /// A `{` without its `}` in the claim value.
    UnclosedVariable(String),
    /// A `{var}` of the claim value that the pattern does not capture.
    UnknownVariable { var: String, destination: String },
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::Effect(w) => write!(f, "must start with `allow` or `deny`, not `{w}`"),
            RuleError::MissingCommand => f.write_str("missing command (send, subscribe)"),
            RuleError::UnknownCommand(c) => {
                write!(f, "unknown command `{c}` (send, subscribe or any)")
            }
            RuleError::MissingDestination => f.write_str("missing destination pattern"),
            RuleError::RelativeDestination(d) => {
                write!(f, "destination pattern `{d}` must start with `/`")
            }
            RuleError::TrailingWords => {
                f.write_str("after the destination only `if claim NAME contains VALUE` may follow")
            }
            RuleError::UnclosedVariable(v) => write!(f, "unclosed `{{` in `{v}`"),
            RuleError::UnknownVariable { var, destination } => {
                write!(f, "`{var}` is not a variable of `{destination}`")
            }
        }
    }
}

impl std::error::Error for RuleError {}

/// Parses `allow|deny send|subscribe|send,subscribe|any PATTERN [if claim NAME contains VALUE]`.
pub fn parse_rule(text: &str) -> Result<Rule, ValueError> {
    rule(text).map_err(|why| ValueError::new(text, why.to_string()))
}

fn rule(text: &str) -> Result<Rule, RuleError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let allow = match words.first().copied() {
        Some("allow") => true,
        Some("deny") => false,
        other => return Err(RuleError::Effect(other.unwrap_or("").to_string())),
    };
    let cmds = words.get(1).ok_or(RuleError::MissingCommand)?;
    let (mut send, mut subscribe) = (false, false);
    for c in cmds.split([',', '|']) {
        match c.to_ascii_lowercase().as_str() {
            "send" => send = true,
            "subscribe" => subscribe = true,
            "any" | "*" => {
                send = true;
                subscribe = true;
            }
            other => return Err(RuleError::UnknownCommand(other.to_string())),
        }
    }
    let destination = words.get(2).ok_or(RuleError::MissingDestination)?;
    if !destination.starts_with('/') {
        return Err(RuleError::RelativeDestination(destination.to_string()));
    }
    let condition = match &words[3..] {
        [] => None,
        ["if", "claim", name, "contains", value] => Some((name.to_string(), value.to_string())),
        _ => return Err(RuleError::TrailingWords),
    };
    if let Some((_, v)) = &condition {
        // Every {var} in the value must be captured by the destination pattern.
        let mut rest = v.as_str();
        while let Some(start) = rest.find('{') {
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| RuleError::UnclosedVariable(v.clone()))?;
            let var = &rest[start..start + end + 1];
            if !destination.contains(var) {
                return Err(RuleError::UnknownVariable {
                    var: var.to_string(),
                    destination: destination.to_string(),
                });
            }
            rest = &rest[start + end + 1..];
        }
    }
    Ok(Rule {
        allow,
        send,
        subscribe,
        destination: destination.to_string(),
        condition,
    })
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cmd = match (self.send, self.subscribe) {
            (true, true) => "any",
            (true, false) => "send",
            _ => "subscribe",
        };
        let effect = if self.allow { "allow" } else { "deny" };
        write!(f, "{effect} {cmd} {}", self.destination)?;
        if let Some((c, v)) = &self.condition {
            write!(f, " if claim {c} contains {v}")?;
        }
        Ok(())
    }
}

/// Whether `claims[name]` contains `wanted`: an array with that string element, a string
/// equal to it, or a space-separated string (OAuth `scope` style) with it as a word.
fn claim_contains(claims: &serde_json::Map<String, Value>, name: &str, wanted: &str) -> bool {
    match claims.get(name) {
        Some(Value::Array(items)) => items.iter().any(|v| match v {
            Value::String(s) => s == wanted,
            Value::Number(n) => n.to_string() == wanted,
            _ => false,
        }),
        Some(Value::String(s)) => s == wanted || s.split(' ').any(|w| w == wanted),
        Some(Value::Number(n)) => n.to_string() == wanted,
        Some(Value::Bool(b)) => b.to_string() == wanted,
        _ => false,
    }
}

fn substitute(template: &str, caps: &Captures<'_, '_>) -> String {
    let mut out = template.to_string();
    for (n, v) in caps.iter() {
        let key = format!("{{{}}}", String::from_utf8_lossy(n));
        out = out.replace(&key, &String::from_utf8_lossy(v));
    }
    out
}

impl Rule {
    fn applies(&self, op: Op) -> bool {
        match op {
            Op::Send => self.send,
            Op::Subscribe => self.subscribe,
        }
    }

    /// Whether this rule matches `op` on `dest` for a principal with `claims`.
    pub fn matches(&self, op: Op, dest: &[u8], claims: &serde_json::Map<String, Value>) -> bool {
        if !self.applies(op) {
            return false;
        }
        if pattern::is_pattern(dest) {
            // See the module doc: wildcard subscriptions match only their exact rule.
            return self.destination.as_bytes() == dest && self.condition.is_none();
        }
        let mut caps = Captures::new();
        if !pattern::capture(
            self.destination.as_bytes(),
            dest,
            Separator::Slash,
            &mut caps,
        ) {
            return false;
        }
        match &self.condition {
            None => true,
            Some((claim, template)) => claim_contains(claims, claim, &substitute(template, &caps)),
        }
    }
}

/// Decides `op` on `dest`: `true` when allowed.
pub fn decide(
    rules: &[Rule],
    op: Op,
    dest: &[u8],
    claims: &serde_json::Map<String, Value>,
) -> bool {
    if rules.is_empty() {
        return true;
    }
    rules
        .iter()
        .find(|r| r.matches(op, dest, claims))
        .is_some_and(|r| r.allow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parse_and_display_round_trip() {
        for t in [
            "allow subscribe /sub/chat/{room} if claim rooms contains {room}",
            "deny send /sub/**",
            "allow any /pub/**",
        ] {
            assert_eq!(parse_rule(t).unwrap().to_string(), t);
        }
        assert!(parse_rule("permit send /x")
            .unwrap_err()
            .to_string()
            .contains("allow"));
        assert!(parse_rule("allow publish /x")
            .unwrap_err()
            .to_string()
            .contains("publish"));
        assert!(parse_rule("allow send x")
            .unwrap_err()
            .to_string()
            .contains("start with `/`"));
        assert!(parse_rule("allow send /a/{x} if claim r contains {y}")
            .unwrap_err()
            .to_string()
            .contains("{y}"));
        assert!(parse_rule("allow send /a if claim").is_err());
    }

    #[test]
    fn first_match_wins_and_default_deny() {
        let rules: Vec<Rule> = [
            "deny send /sub/**",
            "allow subscribe /sub/chat/{room} if claim rooms contains {room}",
            "allow send /pub/**",
        ]
        .iter()
        .map(|t| parse_rule(t).unwrap())
        .collect();
        let c = claims(json!({"rooms": ["a", "b"]}));
        assert!(decide(&rules, Op::Subscribe, b"/sub/chat/a", &c));
        assert!(!decide(&rules, Op::Subscribe, b"/sub/chat/z", &c));
        assert!(!decide(&rules, Op::Send, b"/sub/chat/a", &c));
        assert!(decide(&rules, Op::Send, b"/pub/chat/a", &c));
        assert!(
            !decide(&rules, Op::Subscribe, b"/pub/x", &c),
            "default deny"
        );
        assert!(decide(&[], Op::Send, b"/anything", &c), "no rules: open");
    }

    #[test]
    fn wildcard_subscriptions_need_their_exact_rule() {
        let rules: Vec<Rule> = [
            "allow subscribe /sub/chat/{room} if claim rooms contains {room}",
            "allow subscribe /sub/public/*",
            "allow subscribe /sub/news/**",
        ]
        .iter()
        .map(|t| parse_rule(t).unwrap())
        .collect();
        let c = claims(json!({"rooms": ["**", "*"]}));
        assert!(!decide(&rules, Op::Subscribe, b"/sub/chat/**", &c));
        assert!(!decide(&rules, Op::Subscribe, b"/sub/chat/*", &c));
        assert!(!decide(&rules, Op::Subscribe, b"/sub/public/**", &c));
        assert!(decide(&rules, Op::Subscribe, b"/sub/public/*", &c));
        assert!(decide(&rules, Op::Subscribe, b"/sub/news/**", &c));
    }

    #[test]
    fn claim_shapes() {
        let c = claims(json!({"scope": "read write", "n": 7, "s": "x"}));
        assert!(claim_contains(&c, "scope", "write"));
        assert!(!claim_contains(&c, "scope", "admin"));
        assert!(claim_contains(&c, "n", "7"));
        assert!(claim_contains(&c, "s", "x"));
        assert!(!claim_contains(&c, "missing", "x"));
    }
}
