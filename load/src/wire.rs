//! STOMP frames as the load tool writes and reads them, on the project's own codec.
//!
//! Outgoing frames are encoded once into owned bytes with `stomp_relay_codec::encode`
//! (the publisher then rewrites only the body stamp in place). Incoming frames are
//! decoded in place from the receive buffer with `Decoder::decode`: [`next_frame`]
//! skips heart-beats and returns a frame borrowing the buffer plus the bytes it used, or
//! `None` while the frame is incomplete. Invariant: the tool never accepts more than the
//! codec's limits from a server (64 KiB frames), so a misbehaving peer cannot grow the
//! tool's buffers without bound.

use stomp_relay_codec::{
    encode as codec_encode, encoded_len, Command, DecodeError, Decoded, Decoder, EncodeError,
    Frame, Header, Status, Version,
};

/// Header storage per decoded frame; servers send far fewer.
pub const MAX_HEADERS: usize = 64;

/// Decodes the next frame in `buf` into `headers`. `Ok(None)`: more bytes needed.
/// `Ok(Some((frame, used)))`: `used` bytes, including leading heart-beat EOLs and the
/// NUL, belong to this frame.
pub fn next_frame<'h, 'b: 'h>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
) -> Result<Option<(Frame<'h>, usize)>, DecodeError> {
    let decoder = Decoder::new(Version::V1_2);
    // Heart-beats (EOLs) come one per decode call; skip them first.
    let mut skipped = 0;
    while matches!(buf.get(skipped), Some(b'\n' | b'\r')) {
        match decoder.decode(&buf[skipped..], &mut [])? {
            Status::Complete((Decoded::HeartBeat, n)) => skipped += n,
            _ => return Ok(None), // a lone CR at the end of what arrived so far
        }
    }
    match decoder.decode(&buf[skipped..], headers)? {
        Status::Partial => Ok(None),
        Status::Complete((Decoded::Frame(f), n)) => Ok(Some((f, skipped + n))),
        Status::Complete((Decoded::HeartBeat, _)) => Ok(None),
    }
}

/// The value of header `name` as text (lossy), for error reports.
pub fn header_text(frame: &Frame<'_>, name: &str) -> String {
    frame
        .header(name.as_bytes())
        .map(|v| String::from_utf8_lossy(&v.bytes().collect::<Vec<u8>>()).into_owned())
        .unwrap_or_default()
}

/// Encodes a client frame (STOMP 1.2 escaping of the header values).
pub fn encode(
    command: Command,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let headers: Vec<Header<'_>> = headers
        .iter()
        .map(|(n, v)| Header::new(n.as_bytes(), v.as_bytes()))
        .collect();
    let frame = Frame::new(command, &headers, body);
    let mut out = vec![0; encoded_len(&frame, Version::V1_2)?];
    let n = codec_encode(&frame, Version::V1_2, &mut out)?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_frames_after_heartbeats_and_waits_for_partial_ones() {
        let mut buf = b"\n\r\n".to_vec();
        buf.extend(
            encode(
                Command::Message,
                &[("destination", "/topic/a"), ("content-length", "3")],
                b"a\0b",
            )
            .unwrap(),
        );
        let whole = buf.len();
        buf.extend(b"RECEIPT\nreceipt-id:7\n\n\0");
        let mut h = [Header::EMPTY; MAX_HEADERS];
        let (f, used) = next_frame(&buf, &mut h).unwrap().unwrap();
        assert_eq!(f.command, Command::Message);
        assert_eq!(f.body, b"a\0b");
        assert_eq!(used, whole);
        let mut h = [Header::EMPTY; MAX_HEADERS];
        let (g, used2) = next_frame(&buf[used..], &mut h).unwrap().unwrap();
        assert_eq!(g.command, Command::Receipt);
        assert_eq!(header_text(&g, "receipt-id"), "7");
        assert_eq!(used + used2, buf.len());
        for cut in 0..whole {
            let mut h = [Header::EMPTY; MAX_HEADERS];
            assert!(
                next_frame(&buf[..cut], &mut h).unwrap().is_none(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn malformed_server_bytes_are_an_error() {
        let mut h = [Header::EMPTY; MAX_HEADERS];
        assert!(next_frame(b"MESSAGE\ncontent-length:x\n\nab\0", &mut h).is_err());
        let mut h = [Header::EMPTY; MAX_HEADERS];
        assert!(next_frame(b"HELLO\n\n\0", &mut h).is_err());
    }
}
