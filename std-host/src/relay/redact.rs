//! Redaction of the relay's own broker credentials from what brokers send back.
//!
//! A broker may echo a header value in an ERROR (ActiveMQ: `Invalid transaction id:
//! <value>`), and a client chooses those values; a client that guesses or probes with the
//! relay's login or passcode must not get them confirmed, and a broker that echoes its
//! CONNECT must not hand them out. Every broker ERROR passes through
//! [`Redactor::error`] in [`conn`](super::conn) before any sink sees it, so the frames
//! forwarded to clients and the messages logged for the system/shared connection carry
//! `***` instead.
//!
//! Invariant: after [`Redactor::error`], no header name, header value or body byte
//! sequence equals one of the configured credentials; `content-length`, when present,
//! matches the rewritten body.

use std::sync::Arc;

use bytes::Bytes;

use crate::frame::OwnedFrame;

/// What a credential is replaced with.
pub const MASK: &[u8] = b"***";

/// The credentials to hide (relay and system login and passcode).
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so a passcode containing the login is hidden whole.
    secrets: Arc<[Vec<u8>]>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// A redactor for these values; empty ones are ignored.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut v: Vec<Vec<u8>> = secrets
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        v.dedup();
        Redactor { secrets: v.into() }
    }

    /// `text` with every occurrence of a secret replaced by `***`, or `None` when it
    /// holds none.
    pub fn redact(&self, text: &[u8]) -> Option<Vec<u8>> {
        let mut cur: Option<Vec<u8>> = None;
        for s in self.secrets.iter() {
            let src = cur.as_deref().unwrap_or(text);
            if let Some(out) = replace_all(src, s) {
                cur = Some(out);
            }
        }
        cur
    }

    /// Hides the credentials in an ERROR's headers and body.
    pub fn error(&self, frame: &mut OwnedFrame) {
        if self.secrets.is_empty() {
            return;
        }
        for (name, value) in &mut frame.headers {
            if let Some(v) = self.redact(name) {
                *name = v.into();
            }
            if let Some(v) = self.redact(value) {
                *value = v.into();
            }
        }
        if let Some(body) = self.redact(&frame.body) {
            frame.body = Bytes::from(body);
            let len = frame.body.len().to_string().into_bytes();
            for (name, value) in &mut frame.headers {
                if &name[..] == b"content-length" {
                    *value = len.clone().into();
                }
            }
        }
    }
}

fn replace_all(hay: &[u8], needle: &[u8]) -> Option<Vec<u8>> {
    let first = hay.windows(needle.len()).position(|w| w == needle)?;
    let mut out = Vec::with_capacity(hay.len());
    out.extend_from_slice(&hay[..first]);
    out.extend_from_slice(MASK);
    let mut rest = &hay[first + needle.len()..];
    while let Some(i) = rest.windows(needle.len()).position(|w| w == needle) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(MASK);
        rest = &rest[i + needle.len()..];
    }
    out.extend_from_slice(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stomp_relay_codec::Command;

    #[test]
    fn error_headers_and_body_lose_every_credential() {
        let r = Redactor::new(["relayuser", "relayuser-pw", "sys", "", "s3cr3t"]);
        let mut f = OwnedFrame::new(Command::Error)
            .with_header("message", "Invalid transaction id: relayuser-pw")
            .with_header("content-length", "49")
            .with_header("x-echo", "sys and s3cr3t and s3cr3t")
            .with_body("login=relayuser passcode=relayuser-pw, sys=s3cr3t");
        r.error(&mut f);
        assert_eq!(
            f.header_str("message"),
            Some("Invalid transaction id: ***"),
            "the longer passcode is hidden whole, not as `***-pw`"
        );
        assert_eq!(f.header_str("x-echo"), Some("*** and *** and ***"));
        assert_eq!(&f.body[..], b"login=*** passcode=***, ***=***");
        assert_eq!(
            f.header_str("content-length"),
            Some(f.body.len().to_string().as_str())
        );
    }

    #[test]
    fn frames_without_credentials_are_untouched() {
        let r = Redactor::new(["guest"]);
        let mut f = OwnedFrame::new(Command::Error)
            .with_header("message", "Unknown destination")
            .with_body("no secrets here");
        let before = f.clone();
        r.error(&mut f);
        assert_eq!(f, before);
        let mut f2 = before.clone();
        Redactor::new([""]).error(&mut f2);
        assert_eq!(f2, before);
    }
}
