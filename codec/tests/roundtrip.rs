//! Property tests: encode then decode gives the same frame, for every version and
//! command, arbitrary header bytes (including ones that need escaping) and binary bodies
//! (including NUL); transcoding between versions keeps the unescaped headers; any split
//! of an encoded frame is Partial until the last byte.

mod common;

use common::{decode_item, Item, Owned};
use proptest::prelude::*;
use stomp_relay_codec::{
    encode, encoded_len, Command, Decoded, Decoder, EncodeOptions, Frame, Header, Limits, Status,
    Version,
};

fn version() -> impl Strategy<Value = Version> {
    prop::sample::select(Version::ALL.to_vec())
}

fn command() -> impl Strategy<Value = Command> {
    prop::sample::select(Command::ALL.to_vec())
}

/// Bytes biased towards the ones escaping and framing care about.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(b"\\:\n\rcnr0 ".to_vec()),
            5 => any::<u8>(),
        ],
        0..12,
    )
}

/// Fragments of STOMP-looking input, to reach deep into the decoder.
fn stomp_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            &b"SEND\n"[..],
            b"MESSAGE\n",
            b"CONNECT\n",
            b"SUBSCRIBE\n",
            b"SE",
            b"a:b\n",
            b"k:v:w\n",
            b"content-length:3\n",
            b"content-length:x\n",
            b"\n",
            b"\r\n",
            b"\r",
            b"\0",
            b"\\",
            b"\\n",
            b"\\t",
            b":",
            b"body",
            b"0123456789abcdef",
        ])
        .prop_map(|s| s.to_vec()),
        any::<u8>().prop_map(|b| vec![b]),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    version: Version,
    command: Command,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        version(),
        command(),
        prop::collection::vec((header_bytes(), header_bytes()), 0..8),
        prop::collection::vec(prop_oneof![1 => Just(0u8), 4 => any::<u8>()], 0..64),
    )
        .prop_map(|(version, command, headers, body)| {
            let escapes = version.escapes_headers() && command.escapes_headers();
            let headers = headers
                .into_iter()
                .filter(|(n, v)| {
                    !n.is_empty()
                        && n[0] != 0
                        && n != b"content-length"
                        && (escapes
                            || (!n.iter().any(|b| b"\n\r:".contains(b))
                                && !v.iter().any(|b| b"\n\r".contains(b))))
                })
                .collect();
            let body = if command.allows_body() {
                body
            } else {
                Vec::new()
            };
            Case {
                version,
                command,
                headers,
                body,
            }
        })
}

fn unlimited(version: Version) -> Decoder {
    Decoder::with_limits(version, Limits::UNLIMITED)
}

fn encode_case(c: &Case, opts: EncodeOptions) -> Vec<u8> {
    let headers: Vec<Header<'_>> = c.headers.iter().map(|(n, v)| Header::new(n, v)).collect();
    let frame = Frame::new(c.command, &headers, &c.body);
    let len = encoded_len(&frame, opts).unwrap();
    let mut out = vec![0u8; len];
    assert_eq!(encode(&frame, opts, &mut out), Ok(len));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn encode_then_decode_gives_the_same_frame(c in case(), add in any::<bool>()) {
        let opts = EncodeOptions { version: c.version, add_content_length: add };
        let wire = encode_case(&c, opts);
        let got = decode_item(&unlimited(c.version), &wire).unwrap();
        let Status::Complete((Item::Frame(f), n)) = got else { panic!("{got:?}") };
        prop_assert_eq!(n, wire.len());
        prop_assert_eq!(f.command, c.command);
        prop_assert_eq!(&f.body, &c.body);
        let needs_length = !c.body.is_empty() && (add || c.body.contains(&0));
        let mut expect = c.headers.clone();
        if needs_length {
            expect.push((b"content-length".to_vec(), c.body.len().to_string().into_bytes()));
        }
        prop_assert_eq!(f.headers, expect);
    }

    #[test]
    fn every_split_is_partial_until_complete(c in case()) {
        let wire = encode_case(&c, EncodeOptions::new(c.version));
        let d = unlimited(c.version);
        for cut in 0..wire.len() {
            prop_assert_eq!(decode_item(&d, &wire[..cut]), Ok(Status::Partial), "cut {}", cut);
        }
    }

    #[test]
    fn transcoding_between_versions_keeps_unescaped_headers(c in case(), to in version()) {
        let wire = encode_case(&c, EncodeOptions::new(c.version));
        let mut storage = [Header::EMPTY; 16];
        let Ok(Status::Complete((Decoded::Frame(f), _))) = unlimited(c.version).decode(&wire, &mut storage) else {
            panic!("no frame")
        };
        let before = Owned::of(&f);
        let mut out = vec![0u8; wire.len() * 2 + 64];
        match encode(&f, EncodeOptions::passthrough(to), &mut out) {
            Ok(n) => {
                let Ok(Status::Complete((Item::Frame(after), m))) = decode_item(&unlimited(to), &out[..n]) else {
                    panic!("re-encoded frame does not decode")
                };
                prop_assert_eq!(m, n);
                prop_assert_eq!(after, before);
            }
            // Only a move to a non-escaping version can fail, and only for a header that
            // holds a line break (or a colon in its name) once unescaped.
            Err(stomp_relay_codec::EncodeError::Unencodable { index, .. }) => {
                prop_assert!(!to.escapes_headers() || !c.command.escapes_headers());
                let (n, v) = &before.headers[index];
                prop_assert!(n.iter().any(|b| b"\n\r:".contains(b)) || v.iter().any(|b| b"\n\r".contains(b)));
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
    }

    #[test]
    fn slice_paths_and_writer_agree_on_bytes_and_errors(
        c in case(),
        junk in prop::collection::vec((header_bytes(), header_bytes()), 0..3),
        escaped in any::<bool>(),
        to in version(),
        add in any::<bool>(),
    ) {
        // Frames that may be invalid: any header bytes, either form, any target.
        let mut headers: Vec<Header<'_>> = c.headers.iter().map(|(n, v)| Header::new(n, v)).collect();
        headers.extend(junk.iter().map(|(n, v)| Header::new(n, v)));
        let mut frame = Frame::new(c.command, &headers, &c.body);
        if escaped {
            frame.form = stomp_relay_codec::HeaderForm::Escaped;
        }
        let opts = EncodeOptions { version: to, add_content_length: add };
        let mut roomy = vec![0u8; 4096];
        let fast = encode(&frame, opts, &mut roomy).map(|n| roomy[..n].to_vec());
        let measured = encoded_len(&frame, opts);
        prop_assert_eq!(fast.clone().map(|b| b.len()), measured);
        let mut exact = vec![0u8; measured.unwrap_or(0)];
        let tight = encode(&frame, opts, &mut exact).map(|n| exact[..n].to_vec());
        prop_assert_eq!(&tight, &fast);
        let mut sink = vec![0u8; 4096];
        let mut w: &mut [u8] = &mut sink;
        let written = stomp_relay_codec::write(&frame, opts, &mut w);
        match (&fast, written) {
            (Ok(bytes), Ok(n)) => prop_assert_eq!(&sink[..n], &bytes[..]),
            (Err(e), Err(stomp_relay_codec::WriteError::Encode(w))) => prop_assert_eq!(*e, w),
            (f, w) => prop_assert!(false, "{:?} vs {:?}", f, w),
        }
    }

    #[test]
    fn short_buffers_are_typed_errors(c in case(), short in 0usize..64) {
        let headers: Vec<Header<'_>> = c.headers.iter().map(|(n, v)| Header::new(n, v)).collect();
        let frame = Frame::new(c.command, &headers, &c.body);
        let len = encoded_len(&frame, c.version).unwrap();
        let mut out = vec![0u8; len.saturating_sub(short + 1)];
        prop_assert_eq!(
            encode(&frame, c.version, &mut out),
            Err(stomp_relay_codec::EncodeError::BufferTooSmall { needed: len })
        );
    }

    #[test]
    fn the_verdict_never_depends_on_how_the_stream_was_split(
        pieces in prop::collection::vec(stomp_piece(), 0..24),
        chunk in 1usize..40,
        tight in any::<bool>(),
    ) {
        let wire: Vec<u8> = pieces.concat();
        let limits = if tight {
            Limits { max_frame_size: 48, max_headers: 3, max_header_line: 16, max_body: 8 }
        } else {
            Limits::DEFAULT
        };
        for v in Version::ALL {
            let d = Decoder::with_limits(v, limits);
            let whole = common::decode_stream(&d, &wire, wire.len().max(1));
            let split = common::decode_stream(&d, &wire, chunk);
            prop_assert_eq!(whole, split);
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics_and_stays_in_bounds(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for v in Version::ALL {
            if let Ok(Status::Complete((_, n))) = decode_item(&Decoder::new(v), &bytes) {
                prop_assert!(n >= 1 && n <= bytes.len());
            }
        }
    }
}
