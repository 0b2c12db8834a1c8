//! Frames as tests write and read them: [`frame_bytes`] puts down exactly the bytes
//! given, [`FrameReader`] splits received bytes into owned [`Frame`]s and heart-beats
//! ([`Event`]s).

use bytes::Bytes;
use stomp_relay_codec::{Command, Decoded, Decoder, Header, Limits, Status, Version};

/// `command`, each `name:value` header and `body`, NUL-terminated, exactly as given
/// (no escaping, no checks), so a test can send precisely the frame it means.
pub fn frame_bytes(command: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(command.len() + body.len() + 16 * headers.len() + 3);
    v.extend_from_slice(command.as_bytes());
    v.push(b'\n');
    for (n, val) in headers {
        v.extend_from_slice(n.as_bytes());
        v.push(b':');
        v.extend_from_slice(val.as_bytes());
        v.push(b'\n');
    }
    v.push(b'\n');
    v.extend_from_slice(body);
    v.push(0);
    v
}

/// What a client observed.
#[derive(Debug)]
pub enum Event {
    Frame(Frame),
    HeartBeat,
    /// The connection closed; a WebSocket close carries its code.
    Closed(Option<u16>),
}

/// A received frame, owned by the test: headers unescaped, in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    /// Every header in order; a repeated name keeps every copy.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Frame {
    /// The first value of header `name` (the one STOMP says counts).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (`<binary>` when it is not UTF-8).
    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("<binary>")
    }

    fn from_decoded(f: &stomp_relay_codec::Frame<'_>) -> Frame {
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        Frame {
            command: f.command,
            headers: f
                .header_pairs()
                .map(|(n, v)| (text(n.bytes().collect()), text(v.bytes().collect())))
                .collect(),
            body: Bytes::copy_from_slice(f.body),
        }
    }
}

/// Accumulates received bytes and splits them into frames and heart-beats.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer a transport appends to directly.
    pub(crate) fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// The next complete frame or heart-beat, or `None` while more bytes are needed.
    ///
    /// # Panics
    /// When the peer sent bytes that are not STOMP: the test fails there.
    pub fn next_event(&mut self) -> Option<Event> {
        let decoder = Decoder::with_limits(Version::V1_2, Limits::UNLIMITED);
        let mut headers = [Header::EMPTY; 128];
        let (event, n) = match decoder.decode(&self.buf, &mut headers) {
            Ok(Status::Partial) => return None,
            Ok(Status::Complete((Decoded::HeartBeat, n))) => (Event::HeartBeat, n),
            Ok(Status::Complete((Decoded::Frame(f), n))) => {
                (Event::Frame(Frame::from_decoded(&f)), n)
            }
            Err(e) => panic!("the peer sent a malformed frame: {e}"),
        };
        self.buf.drain(..n);
        Some(event)
    }

    /// The next complete frame, heart-beats skipped.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            match self.next_event()? {
                Event::Frame(f) => return Some(f),
                _ => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_heart_beats_come_out_in_order_across_pushes() {
        let mut r = FrameReader::default();
        let msg = frame_bytes("MESSAGE", &[("destination", "/topic/a"), ("x", "1")], b"hi");
        r.push(b"\n");
        r.push(&msg[..5]);
        assert!(matches!(r.next_event(), Some(Event::HeartBeat)));
        assert!(r.next_event().is_none());
        r.push(&msg[5..]);
        let f = r.next_frame().expect("the MESSAGE");
        assert_eq!(f.command, Command::Message);
        assert_eq!(f.header("destination"), Some("/topic/a"));
        assert_eq!(f.header("x"), Some("1"));
        assert_eq!(f.body_str(), "hi");
        assert!(r.next_event().is_none());
    }

    #[test]
    fn headers_are_unescaped() {
        let mut r = FrameReader::default();
        r.push(&frame_bytes("MESSAGE", &[("a", "x\\cy")], b""));
        assert_eq!(r.next_frame().unwrap().header("a"), Some("x:y"));
    }
}
