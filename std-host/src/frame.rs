//! Owned STOMP frames for crossing task boundaries.
//!
//! The codec's [`Frame`] borrows the receive buffer, which is reused as soon as the
//! next bytes arrive; anything handed to another task (a broker backend, a subscriber's
//! outbound queue) is an [`OwnedFrame`]. Header names and values are stored plain
//! (unescaped) so every consumer reads them without caring about the sender's version;
//! encoding escapes them for the receiving peer's version. Names, values and the body
//! are [`Bytes`]: a frame decoded from received bytes shares them instead of copying
//! (only escaped values are copied, unescaped), and the copies of a fan-out share them
//! too.

use bytes::Bytes;
use stomp_relay_codec::{
    encode, encoded_len, Command, EncodeError, EncodeOptions, Frame, Header, HeaderValue,
};

/// Headers of a MESSAGE only the server sets: what the publish API refuses and what
/// the proxies drop from a back end's messages.
pub const SERVER_MESSAGE_HEADERS: [&str; 7] = [
    "destination",
    "subscription",
    "message-id",
    "ack",
    "receipt",
    "transaction",
    "content-length",
];

/// An owned frame with plain header bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFrame {
    /// The command.
    pub command: Command,
    /// Headers in order, plain bytes; the first of a repeated name wins on lookup.
    pub headers: Vec<(Bytes, Bytes)>,
    /// The body (shared, so fan-out clones are cheap).
    pub body: Bytes,
}

impl OwnedFrame {
    /// A frame with no headers and no body.
    pub fn new(command: Command) -> Self {
        OwnedFrame {
            command,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.push_header(name, value);
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Appends a header.
    pub fn push_header(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.headers.push((
            Bytes::copy_from_slice(name.as_ref()),
            Bytes::copy_from_slice(value.as_ref()),
        ));
    }

    /// Copies a decoded frame, unescaping its headers.
    pub fn from_frame(frame: &Frame<'_>) -> Self {
        OwnedFrame::build(frame, None)
    }

    /// Copies a decoded frame's headers, unescaping them, and shares its body with
    /// `src`, the received bytes the frame was decoded from (no copy; a body that is
    /// not part of `src` is copied).
    pub fn from_frame_in(frame: &Frame<'_>, src: &Bytes) -> Self {
        OwnedFrame::build(frame, Some((&src[..], src)))
    }

    /// Copies a decoded frame in one allocation: `raw`, the bytes it was decoded from,
    /// is copied once and its plain header values and body are slices of that copy.
    /// For a read buffer that is reused, where [`OwnedFrame::from_frame_in`] cannot
    /// share and [`OwnedFrame::from_frame`] would allocate once per header.
    pub fn from_frame_copied(frame: &Frame<'_>, raw: &[u8]) -> Self {
        OwnedFrame::build(frame, Some((raw, &Bytes::copy_from_slice(raw))))
    }

    /// One walk over the headers: values that need no unescaping are shared with `src`
    /// when given (`base` holds the same bytes the frame's slices point into),
    /// everything else is copied.
    fn build(frame: &Frame<'_>, src: Option<(&[u8], &Bytes)>) -> Self {
        let part = |p: &[u8]| match src {
            Some((base, src)) => share(base, src, p),
            None => Bytes::copy_from_slice(p),
        };
        let value = |v: HeaderValue<'_>| match v.as_plain() {
            Some(p) => part(p),
            None => v.bytes().collect::<Vec<u8>>().into(),
        };
        OwnedFrame {
            command: frame.command,
            headers: frame
                .header_pairs()
                .map(|(n, v)| (value(n), value(v)))
                .collect(),
            body: part(frame.body),
        }
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| &v[..])
    }

    /// The first value of header `name` as UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Appends the wire form of this frame for a peer speaking `options.version`.
    pub fn encode_into(
        &self,
        options: impl Into<EncodeOptions>,
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        let hs: Vec<Header<'_>> = self
            .headers
            .iter()
            .map(|(n, v)| Header::new(n, v))
            .collect();
        let frame = Frame::new(self.command, &hs, &self.body);
        let options = options.into();
        let n = encoded_len(&frame, options)?;
        let start = out.len();
        out.resize(start + n, 0);
        encode(&frame, options, &mut out[start..])
    }

    /// A rough size in bytes, used to account queued frames against the send buffer.
    pub fn weight(&self) -> usize {
        self.command.as_str().len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 2)
                .sum::<usize>()
            + self.body.len()
            + 2
    }
}

/// `part` as the same range of `src` when it lies inside `base` (bytes equal to `src`),
/// else a copy.
fn share(base: &[u8], src: &Bytes, part: &[u8]) -> Bytes {
    debug_assert_eq!(base.len(), src.len());
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    if start <= src.len() && part.len() <= src.len() - start {
        src.slice(start..start + part.len())
    } else {
        Bytes::copy_from_slice(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stomp_relay_codec::{Decoded, Decoder, Status, Version};

    #[test]
    fn round_trip_keeps_escapes_and_binary_body() {
        let f = OwnedFrame::new(Command::Send)
            .with_header("destination", "/sub/a:b\nc")
            .with_header("x", "한국어")
            .with_body(&b"a\0b"[..]);
        let mut out = Vec::new();
        f.encode_into(Version::V1_2, &mut out).unwrap();
        let mut hs = [Header::EMPTY; 16];
        let Status::Complete((Decoded::Frame(d), _)) =
            Decoder::new(Version::V1_2).decode(&out, &mut hs).unwrap()
        else {
            panic!("no frame")
        };
        let back = OwnedFrame::from_frame(&d);
        assert_eq!(back.header("destination"), Some(&b"/sub/a:b\nc"[..]));
        assert_eq!(back.header_str("x"), Some("한국어"));
        assert_eq!(&back.body[..], b"a\0b");
    }

    #[test]
    fn decoded_frames_share_the_received_bytes_unless_escaped() {
        let src = Bytes::from_static(b"SEND\ndestination:/sub/a\nx:a\\cb\n\nbody\0");
        let mut hs = [Header::EMPTY; 8];
        let Status::Complete((Decoded::Frame(d), _)) =
            Decoder::new(Version::V1_2).decode(&src, &mut hs).unwrap()
        else {
            panic!("no frame")
        };
        let f = OwnedFrame::from_frame_in(&d, &src);
        let inside = |b: &Bytes| {
            let (s, p) = (src.as_ptr() as usize, b.as_ptr() as usize);
            p >= s && p + b.len() <= s + src.len()
        };
        assert!(inside(&f.body) && &f.body[..] == b"body");
        let (name, dest) = &f.headers[0];
        assert!(inside(name) && inside(dest) && &dest[..] == b"/sub/a");
        // `a\cb` is `a:b` unescaped: a copy, not a slice of the wire bytes.
        let (_, x) = &f.headers[1];
        assert!(!inside(x) && &x[..] == b"a:b");
        assert_eq!(f, OwnedFrame::from_frame(&d));
    }

    #[test]
    fn a_copied_frame_outlives_its_buffer_and_is_one_copy() {
        let mut buf = b"MESSAGE\ndestination:/topic/a\nx:a\\cb\n\nbody\0MESSAGE\n\n\0".to_vec();
        let mut hs = [Header::EMPTY; 8];
        let Status::Complete((Decoded::Frame(d), n)) =
            Decoder::new(Version::V1_2).decode(&buf, &mut hs).unwrap()
        else {
            panic!("no frame")
        };
        let f = OwnedFrame::from_frame_copied(&d, &buf[..n]);
        assert_eq!(f, OwnedFrame::from_frame(&d));
        // The plain parts are slices of one copy of the frame's n bytes.
        let (_, dest) = &f.headers[0];
        let (lo, hi) = (
            dest.as_ptr() as usize,
            f.body.as_ptr() as usize + f.body.len(),
        );
        assert!(hi - lo < n, "destination and body are not in one copy");
        assert!(!(buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len()).contains(&lo));
        buf.fill(b'?');
        assert_eq!((&dest[..], &f.body[..]), (&b"/topic/a"[..], &b"body"[..]));
        assert_eq!(&f.headers[1].1[..], b"a:b");
    }
}
