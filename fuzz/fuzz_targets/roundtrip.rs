//! Structured frames (any command, version, header bytes, binary body): whenever the
//! encoder accepts a frame, decoding its bytes gives the same frame back, and its
//! length is what `encoded_len` said; when it refuses, the error is one the frame earns.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use stomp_relay_codec::{
    encode, encoded_len, Command, Decoded, Decoder, EncodeError, EncodeOptions, Frame, Header,
    Limits, Status, Version,
};

#[derive(Debug, Arbitrary)]
struct Input {
    version: u8,
    command: u8,
    add_content_length: bool,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let version = Version::ALL[usize::from(input.version % 3)];
    let command = Command::ALL[usize::from(input.command) % Command::ALL.len()];
    let headers: Vec<Header<'_>> = input
        .headers
        .iter()
        .take(32)
        .map(|(n, v)| Header::new(n, v))
        .collect();
    let frame = Frame::new(command, &headers, &input.body);
    let opts = EncodeOptions {
        version,
        add_content_length: input.add_content_length,
    };
    let len = match encoded_len(&frame, opts) {
        Ok(len) => len,
        Err(EncodeError::BodyNotAllowed(_)) => {
            assert!(!input.body.is_empty() && !command.allows_body());
            return;
        }
        Err(EncodeError::EmptyHeaderName { index }) => {
            assert!(headers[index].name.is_empty());
            return;
        }
        Err(EncodeError::ContentLengthMismatch) => {
            assert!(frame.header(b"content-length").is_some());
            return;
        }
        Err(EncodeError::Unencodable { .. }) => return,
        Err(e) => panic!("unexpected {e}"),
    };
    let mut out = vec![0u8; len];
    assert_eq!(encode(&frame, opts, &mut out), Ok(len));
    if len > 0 {
        assert_eq!(
            encode(&frame, opts, &mut out[..len - 1]),
            Err(EncodeError::BufferTooSmall { needed: len })
        );
    }
    let mut storage = vec![Header::EMPTY; headers.len() + 1];
    let decoded = Decoder::with_limits(version, Limits::UNLIMITED).decode(&out, &mut storage);
    let Ok(Status::Complete((Decoded::Frame(back), used))) = decoded else {
        panic!("encoded frame does not decode: {decoded:?}");
    };
    assert_eq!(used, len);
    assert_eq!(back.command, command);
    assert_eq!(back.body, &input.body[..]);
    let mut pairs = back.header_pairs();
    for h in &headers {
        let (n, v) = pairs.next().expect("header lost");
        assert!(n.eq_bytes(h.name) && v.eq_bytes(h.value));
    }
    // At most the content-length the encoder added remains.
    if let Some((n, v)) = pairs.next() {
        assert!(n.eq_bytes(b"content-length"));
        assert_eq!(v.parse_usize(), Some(input.body.len()));
    }
    assert!(pairs.next().is_none());
});
