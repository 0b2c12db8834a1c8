//! Codec throughput against the best Rust STOMP peers, in the same criterion groups so
//! ratios come from one run: `async-stomp` (tokio_util `ClientCodec`: it decodes server
//! frames and encodes client frames only), `iridium-stomp` (`parser::parse_frame_slice`,
//! `StompCodec` to encode) and, as the practical limit, a plain `memchr` scan of the same
//! bytes for NUL and line feeds (decoding) or a `memcpy` of them (encoding).
//!
//! Run: `cargo bench -p stomp-relay-codec -- --warm-up-time 1 --measurement-time 3`
//! then `codec/benches/table.py` prints the docs/codec.md table from criterion's estimates.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use stomp_relay_codec::{
    encode, Decoded, Decoder, EncodeOptions, Frame, Header, Limits, Status, Version,
};
use tokio_util::codec::Decoder as _;

/// A typical broker MESSAGE: 6 headers, 128-byte JSON body, 281 bytes on the wire.
fn message_281() -> Vec<u8> {
    let body = {
        let mut b = br#"{"user":"alice","room":"general","text":"hello"#.to_vec();
        b.resize(126, b'!');
        b.extend_from_slice(br#""}"#);
        b
    };
    let mut f = b"MESSAGE\ndestination:/topic/chat.general\ncontent-type:application/json\nsubscription:sub-0\nmessage-id:msg-042\ncontent-length:128\ntimestamp:1732600000123\n\n".to_vec();
    f.extend_from_slice(&body);
    f.push(0);
    assert_eq!(f.len(), 281);
    f
}

/// A client SEND with 10 headers and a small body (no content-length, NUL-terminated).
fn send_10() -> Vec<u8> {
    let mut f = b"SEND\ndestination:/queue/orders.eu-west\ncontent-type:application/json\nreceipt:r-1017\npersistent:true\npriority:4\nexpires:0\ncorrelation-id:c0ffee-0001\nreply-to:/temp-queue/replies\nx-tenant:acme\nx-trace-id:4bf92f3577b34da6a3ce929d0e0e4736\n\n".to_vec();
    f.extend_from_slice(br#"{"order":1017,"sku":"A-42","qty":3}"#);
    f.push(0);
    f
}

/// A MESSAGE with a 64 KiB binary body (content-length framed, NULs inside).
fn binary_64k() -> Vec<u8> {
    let mut f = b"MESSAGE\ndestination:/queue/blobs\nsubscription:1\nmessage-id:b-1\ncontent-type:application/octet-stream\ncontent-length:65536\n\n".to_vec();
    f.extend((0..65536u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    f.push(0);
    f
}

/// 1000 typical MESSAGE frames with a heart-beat (`\n`) after each.
fn stream_1000() -> Vec<u8> {
    let one = message_281();
    let mut s = Vec::with_capacity(1000 * (one.len() + 1));
    for _ in 0..1000 {
        s.extend_from_slice(&one);
        s.push(b'\n');
    }
    s
}

fn big_decoder() -> Decoder {
    Decoder::with_limits(
        Version::V1_2,
        Limits {
            max_frame_size: 1 << 20,
            max_body: 1 << 20,
            ..Limits::DEFAULT
        },
    )
}

/// Ours: decode every frame in `wire`, touching one header and the body like a router would.
/// The header storage is the caller's and outlives the call, as in a host's read loop.
fn ours_all<'b>(decoder: &Decoder, wire: &'b [u8], storage: &mut [Header<'b>]) -> usize {
    let mut rest = wire;
    let mut frames = 0;
    while !rest.is_empty() {
        match decoder.decode(rest, storage) {
            Ok(Status::Complete((item, used))) => {
                if let Decoded::Frame(f) = item {
                    frames += 1;
                    black_box((f.destination(), f.body.len()));
                }
                rest = &rest[used..];
            }
            _ => panic!("bench input must decode"),
        }
    }
    frames
}

fn iridium_all(wire: &[u8]) -> usize {
    let mut rest = wire;
    let mut frames = 0;
    loop {
        match iridium_stomp::parser::parse_frame_slice(rest) {
            Ok(Some((cmd, headers, body, used))) => {
                frames += 1;
                black_box((cmd, headers, body));
                rest = &rest[used..];
            }
            Ok(None) => return frames,
            Err(e) => panic!("iridium: {e}"),
        }
        if rest.iter().all(|&b| b == b'\n') {
            return frames;
        }
    }
}

fn async_stomp_all(buf: &mut BytesMut) -> usize {
    let mut codec = async_stomp::client::ClientCodec::with_max_frame_size(1 << 20);
    let mut frames = 0;
    while let Some(m) = codec
        .decode(buf)
        .expect("async-stomp decodes the bench input")
    {
        frames += 1;
        black_box(m);
    }
    frames
}

/// The practical limit: find every line feed and NUL, nothing else.
fn memchr_scan(wire: &[u8]) -> usize {
    memchr::memchr2_iter(b'\n', 0, wire).count()
}

fn decode_group(c: &mut Criterion, name: &str, wire: &[u8], frames: usize, async_stomp: bool) {
    let mut g = c.benchmark_group(format!("decode/{name}"));
    g.throughput(Throughput::Bytes(wire.len() as u64));
    let decoder = big_decoder();
    let mut storage = [Header::EMPTY; 32];
    assert_eq!(ours_all(&decoder, wire, &mut storage), frames);
    assert_eq!(iridium_all(wire), frames);
    g.bench_function(BenchmarkId::from_parameter("stomp-relay-codec"), |b| {
        b.iter(|| ours_all(&decoder, black_box(wire), &mut storage))
    });
    g.bench_function(BenchmarkId::from_parameter("iridium-stomp"), |b| {
        b.iter(|| iridium_all(black_box(wire)))
    });
    if async_stomp {
        assert_eq!(async_stomp_all(&mut BytesMut::from(wire)), frames);
        // The buffer is refilled outside the timed part; a tokio codec reads from one.
        g.bench_function(BenchmarkId::from_parameter("async-stomp"), |b| {
            b.iter_batched_ref(
                || BytesMut::from(wire),
                async_stomp_all,
                BatchSize::SmallInput,
            )
        });
    }
    g.bench_function(BenchmarkId::from_parameter("memchr-scan"), |b| {
        b.iter(|| memchr_scan(black_box(wire)))
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    decode_group(c, "message_281", &message_281(), 1, true);
    // async-stomp's ClientCodec only decodes server frames, so it cannot read a SEND.
    decode_group(c, "send_10_headers", &send_10(), 1, false);
    decode_group(c, "binary_64k", &binary_64k(), 1, true);
    decode_group(c, "stream_1000", &stream_1000(), 1000, true);
}

fn encode_group(c: &mut Criterion, name: &str, wire: &[u8]) {
    let mut storage = [Header::EMPTY; 32];
    let Ok(Status::Complete((Decoded::Frame(frame), _))) = big_decoder().decode(wire, &mut storage)
    else {
        panic!("bench input must decode")
    };
    // The same frame as an application would build it: plain headers.
    let plain: Vec<Header<'_>> = frame.headers.to_vec();
    let app = Frame::new(frame.command, &plain, frame.body);
    let iridium = {
        let mut f = iridium_stomp::Frame::new(frame.command.as_str());
        for h in frame.headers {
            f = f.header(
                std::str::from_utf8(h.name).unwrap(),
                std::str::from_utf8(h.value).unwrap(),
            );
        }
        f.set_body(frame.body.to_vec())
    };
    let mut out = vec![0u8; wire.len() + 64];
    let mut g = c.benchmark_group(format!("encode/{name}"));
    g.throughput(Throughput::Bytes(wire.len() as u64));
    let opts = EncodeOptions::passthrough(Version::V1_2);
    g.bench_function(BenchmarkId::from_parameter("stomp-relay-codec"), |b| {
        b.iter(|| encode(black_box(&app), opts, &mut out).unwrap())
    });
    g.bench_function(BenchmarkId::from_parameter("iridium-stomp"), |b| {
        let mut codec = iridium_stomp::StompCodec::new();
        let mut dst = BytesMut::with_capacity(wire.len() + 64);
        b.iter(|| {
            dst.clear();
            tokio_util::codec::Encoder::encode(
                &mut codec,
                iridium_stomp::StompItem::Frame(black_box(&iridium).clone()),
                &mut dst,
            )
            .unwrap();
            dst.len()
        })
    });
    if let Some(parts) = async_stomp_send(&frame) {
        // The encoder takes the message by value and it is not `Clone`: building it from
        // cloned parts is timed, as iridium's frame clone is.
        g.bench_function(BenchmarkId::from_parameter("async-stomp"), |b| {
            let mut codec = async_stomp::client::ClientCodec::new();
            let mut dst = BytesMut::with_capacity(wire.len() + 64);
            b.iter(|| {
                dst.clear();
                tokio_util::codec::Encoder::encode(&mut codec, parts.message(), &mut dst).unwrap();
                dst.len()
            })
        });
    }
    g.bench_function(BenchmarkId::from_parameter("memcpy"), |b| {
        b.iter(|| {
            out[..wire.len()].copy_from_slice(black_box(wire));
            wire.len()
        })
    });
    g.finish();
}

/// A SEND as async-stomp's client codec takes it: destination as a field, the other
/// headers as strings.
struct AsyncStompSend {
    destination: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl AsyncStompSend {
    fn message(&self) -> async_stomp::Message<async_stomp::ToServer> {
        async_stomp::ToServer::Send {
            destination: self.destination.clone(),
            transaction: None,
            headers: Some(self.headers.clone()),
            body: Some(self.body.clone()),
        }
        .into()
    }
}

/// The frame's parts for async-stomp, if it is a SEND (the only frame of these its client
/// codec can encode).
fn async_stomp_send(frame: &Frame<'_>) -> Option<AsyncStompSend> {
    if frame.command != stomp_relay_codec::Command::Send {
        return None;
    }
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    Some(AsyncStompSend {
        destination: text(frame.destination()?.raw()),
        headers: frame
            .headers
            .iter()
            .filter(|h| h.name != b"destination")
            .map(|h| (text(h.name), text(h.value)))
            .collect(),
        body: frame.body.to_vec(),
    })
}

fn encode_benches(c: &mut Criterion) {
    encode_group(c, "message_281", &message_281());
    encode_group(c, "send_10_headers", &send_10());
    encode_group(c, "binary_64k", &binary_64k());
}

criterion_group!(benches, decode, encode_benches);
criterion_main!(benches);
