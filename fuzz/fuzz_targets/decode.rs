//! Arbitrary bytes, split at an arbitrary point, fed as a host would: whatever the input,
//! decoding never panics, consumes within the buffer, gives the same items whether the
//! bytes arrive whole or in two pieces, and decoded frames re-encode and decode the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stomp_relay_codec::{
    encode, encoded_len, DecodeError, Decoded, Decoder, EncodeOptions, Header, Limits, Status,
    Version,
};

#[derive(Debug, PartialEq)]
enum Item {
    Beat,
    Frame(Vec<u8>),
}

fn run(decoder: &Decoder, pieces: &[&[u8]]) -> (Vec<Item>, Option<DecodeError>) {
    let mut buf = Vec::new();
    let mut items = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let mut storage = [Header::EMPTY; 16];
            match decoder.decode(&buf, &mut storage) {
                Ok(Status::Complete((item, used))) => {
                    assert!(used >= 1 && used <= buf.len());
                    items.push(match item {
                        Decoded::HeartBeat => Item::Beat,
                        Decoded::Frame(f) => {
                            check_reencode(decoder, &f);
                            Item::Frame(buf[..used].to_vec())
                        }
                    });
                    buf.drain(..used);
                }
                Ok(Status::Partial) => {
                    assert!(buf.len() < decoder.limits.max_frame_size);
                    break;
                }
                Err(e) => return (items, Some(e)),
            }
        }
    }
    (items, None)
}

fn check_reencode(decoder: &Decoder, f: &stomp_relay_codec::Frame<'_>) {
    let opts = EncodeOptions::passthrough(decoder.version);
    let Ok(len) = encoded_len(f, opts) else {
        return;
    };
    let mut out = vec![0u8; len];
    assert_eq!(encode(f, opts, &mut out), Ok(len));
    let mut storage = [Header::EMPTY; 16];
    let again = Decoder::with_limits(decoder.version, Limits::UNLIMITED).decode(&out, &mut storage);
    let Ok(Status::Complete((Decoded::Frame(g), used))) = again else {
        panic!("re-encoded frame does not decode: {again:?}");
    };
    assert_eq!(used, len);
    assert_eq!(g.command, f.command);
    assert_eq!(g.body, f.body);
    assert!(g.header_pairs().eq(f.header_pairs()));
}

fuzz_target!(|input: (u8, u16, &[u8])| {
    let (mode, split, data) = input;
    let version = Version::ALL[usize::from(mode % 3)];
    let limits = if mode & 4 == 0 {
        Limits::DEFAULT
    } else {
        Limits {
            max_frame_size: 64,
            max_headers: 3,
            max_header_line: 24,
            max_body: 16,
        }
    };
    let decoder = Decoder::with_limits(version, limits);
    let cut = usize::from(split).min(data.len());
    let whole = run(&decoder, &[data]);
    let split = run(&decoder, &[&data[..cut], &data[cut..]]);
    assert_eq!(whole, split);
});
