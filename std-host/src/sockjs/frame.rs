//! SockJS framing (sockjs-protocol 0.3): what a SockJS server writes around the
//! application's messages, and how the client's sends are read.
//!
//! Server frames: `o` (open), `h` (heart-beat), `a[...]` (a JSON array of messages) and
//! `c[code,"reason"]` (close). Each message here is one STOMP frame (or one heart-beat
//! EOL) as text, the way stompjs reads them. The client sends a JSON array of strings,
//! or one JSON string.

use std::fmt;

/// The open frame.
pub const OPEN: &str = "o";
/// The SockJS heart-beat frame.
pub const HEARTBEAT: &str = "h";

/// `a[...]` for `messages`. STOMP bytes that are not UTF-8 cannot travel in a SockJS
/// text message; they are replaced (U+FFFD) rather than dropping the frame.
pub fn messages<'a>(messages: impl IntoIterator<Item = &'a [u8]>) -> String {
    let texts: Vec<std::borrow::Cow<'_, str>> =
        messages.into_iter().map(String::from_utf8_lossy).collect();
    let mut out = String::with_capacity(2 + texts.iter().map(|m| m.len() + 8).sum::<usize>());
    out.push('a');
    out.push_str(&serde_json::to_string(&texts).expect("strings always serialize"));
    out
}

/// `c[code,"reason"]`.
pub fn close(code: u16, reason: &str) -> String {
    format!(
        "c[{code},{}]",
        serde_json::to_string(reason).expect("strings always serialize")
    )
}

/// Why a client's send body was refused; `Display` is the body Spring's SockJS service
/// answers with (status 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// An empty body.
    Empty,
    /// Not a JSON string or array of strings.
    BrokenJson,
}

impl SendError {
    /// The response body.
    pub fn body(self) -> &'static str {
        match self {
            SendError::Empty => "Payload expected.",
            SendError::BrokenJson => "Broken JSON encoding.",
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.body())
    }
}

impl std::error::Error for SendError {}

/// The messages in a client's send: a JSON array of strings, or one JSON string.
pub fn parse_send(body: &[u8]) -> Result<Vec<String>, SendError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(SendError::Empty);
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Send {
        Many(Vec<String>),
        One(String),
    }
    match serde_json::from_slice::<Send>(body) {
        Ok(Send::Many(v)) => Ok(v),
        Ok(Send::One(s)) => Ok(vec![s]),
        Err(_) => Err(SendError::BrokenJson),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_arrays_escape_nul_quotes_and_newlines() {
        let frame = b"MESSAGE\ndestination:/sub/a\n\n\"hi\"\n\0".to_vec();
        let a = messages([&frame[..], b"\n"]);
        assert_eq!(
            a,
            r#"a["MESSAGE\ndestination:/sub/a\n\n\"hi\"\n\u0000","\n"]"#
        );
        // What sockjs-client does with it: JSON.parse of everything after `a`.
        let back: Vec<String> = serde_json::from_str(&a[1..]).unwrap();
        assert_eq!(back[0].as_bytes().last(), Some(&0));
        assert_eq!(messages([&b"\xff"[..]]), "a[\"\u{fffd}\"]");
    }

    #[test]
    fn close_frames_quote_the_reason() {
        assert_eq!(close(3000, "Go away!"), r#"c[3000,"Go away!"]"#);
        assert_eq!(close(1002, "a \"b\""), r#"c[1002,"a \"b\""]"#);
    }

    #[test]
    fn sends_are_arrays_or_one_string() {
        assert_eq!(
            parse_send(br#"["CONNECT\n\n\u0000","SEND"]"#).unwrap(),
            ["CONNECT\n\n\0", "SEND"]
        );
        assert_eq!(parse_send(br#""x""#).unwrap(), ["x"]);
        assert_eq!(parse_send(b"  "), Err(SendError::Empty));
        assert_eq!(parse_send(b"[1]"), Err(SendError::BrokenJson));
        assert_eq!(parse_send(b"[\"x\""), Err(SendError::BrokenJson));
        assert_eq!(SendError::BrokenJson.to_string(), "Broken JSON encoding.");
    }
}
