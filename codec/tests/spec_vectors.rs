//! Every example frame of the STOMP 1.2 specification (tests/vectors/*.stomp): what it
//! decodes to, that any split of it decodes the same, and that re-encoding gives the
//! specification's bytes back.

mod common;

use common::{decode_item, decode_stream, Item, Owned};
use stomp_relay_codec::{
    encode, Command, Decoded, Decoder, EncodeOptions, Header, Status, Version,
};

struct Vector {
    file: &'static str,
    command: Command,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    /// Whether re-encoding reproduces the file exactly (not for the examples that omit
    /// the blank line; the encoder always writes it).
    canonical: bool,
}

const ERROR_BODY: &str = "The message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!\n-----\nDid not contain a destination header, which is REQUIRED\nfor message propagation.\n";

const VECTORS: &[Vector] = &[
    Vector {
        file: "01-repeated-header.stomp",
        command: Command::Message,
        headers: &[("foo", "World"), ("foo", "Hello")],
        body: "",
        canonical: true,
    },
    Vector {
        file: "02-connect.stomp",
        command: Command::Connect,
        headers: &[("accept-version", "1.2"), ("host", "stomp.github.org")],
        body: "",
        canonical: true,
    },
    Vector {
        file: "03-connected.stomp",
        command: Command::Connected,
        headers: &[("version", "1.2")],
        body: "",
        canonical: true,
    },
    Vector {
        file: "04-connect-negotiation.stomp",
        command: Command::Connect,
        headers: &[
            ("accept-version", "1.0,1.1,2.0"),
            ("host", "stomp.github.org"),
        ],
        body: "",
        canonical: true,
    },
    Vector {
        file: "05-connected-negotiated.stomp",
        command: Command::Connected,
        headers: &[("version", "1.1")],
        body: "",
        canonical: true,
    },
    Vector {
        file: "06-error-no-common-version.stomp",
        command: Command::Error,
        headers: &[("version", "1.2,2.1"), ("content-type", "text/plain")],
        body: "Supported protocol versions are 1.2 2.1",
        canonical: true,
    },
    Vector {
        file: "07-send.stomp",
        command: Command::Send,
        headers: &[("destination", "/queue/a"), ("content-type", "text/plain")],
        body: "hello queue a\n",
        canonical: true,
    },
    Vector {
        file: "08-subscribe.stomp",
        command: Command::Subscribe,
        headers: &[
            ("id", "0"),
            ("destination", "/queue/foo"),
            ("ack", "client"),
        ],
        body: "",
        canonical: true,
    },
    Vector {
        file: "09-unsubscribe.stomp",
        command: Command::Unsubscribe,
        headers: &[("id", "0")],
        body: "",
        canonical: true,
    },
    Vector {
        file: "10-ack.stomp",
        command: Command::Ack,
        headers: &[("id", "12345"), ("transaction", "tx1")],
        body: "",
        canonical: true,
    },
    Vector {
        file: "11-begin.stomp",
        command: Command::Begin,
        headers: &[("transaction", "tx1")],
        body: "",
        canonical: true,
    },
    Vector {
        file: "12-commit.stomp",
        command: Command::Commit,
        headers: &[("transaction", "tx1")],
        body: "",
        canonical: true,
    },
    Vector {
        file: "13-abort.stomp",
        command: Command::Abort,
        headers: &[("transaction", "tx1")],
        body: "",
        canonical: true,
    },
    Vector {
        file: "14-disconnect-no-blank-line.stomp",
        command: Command::Disconnect,
        headers: &[("receipt", "77")],
        body: "",
        canonical: false,
    },
    Vector {
        file: "15-receipt-no-blank-line.stomp",
        command: Command::Receipt,
        headers: &[("receipt-id", "77")],
        body: "",
        canonical: false,
    },
    Vector {
        file: "16-send-receipt.stomp",
        command: Command::Send,
        headers: &[("destination", "/queue/a"), ("receipt", "message-12345")],
        body: "hello queue a",
        canonical: true,
    },
    Vector {
        file: "17-message.stomp",
        command: Command::Message,
        headers: &[
            ("subscription", "0"),
            ("message-id", "007"),
            ("destination", "/queue/a"),
            ("content-type", "text/plain"),
        ],
        body: "hello queue a",
        canonical: true,
    },
    Vector {
        file: "18-receipt.stomp",
        command: Command::Receipt,
        headers: &[("receipt-id", "message-12345")],
        body: "",
        canonical: true,
    },
    Vector {
        file: "19-error-content-length.stomp",
        command: Command::Error,
        headers: &[
            ("receipt-id", "message-12345"),
            ("content-type", "text/plain"),
            ("content-length", "170"),
            ("message", "malformed frame received"),
        ],
        body: ERROR_BODY,
        canonical: true,
    },
];

fn wire(v: &Vector) -> Vec<u8> {
    let path = format!("{}/tests/vectors/{}", env!("CARGO_MANIFEST_DIR"), v.file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn expected(v: &Vector) -> Owned {
    Owned {
        command: v.command,
        headers: v
            .headers
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        body: v.body.as_bytes().to_vec(),
    }
}

#[test]
fn every_vector_file_is_listed() {
    let dir = format!("{}/tests/vectors", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".stomp"))
        .collect();
    files.sort();
    let listed: Vec<String> = VECTORS.iter().map(|v| v.file.to_string()).collect();
    assert_eq!(files, listed);
}

#[test]
fn spec_examples_decode_to_what_the_spec_says() {
    for version in Version::ALL {
        let decoder = Decoder::new(version);
        for v in VECTORS {
            let bytes = wire(v);
            let got = decode_item(&decoder, &bytes)
                .unwrap_or_else(|e| panic!("{} ({version}): {e}", v.file));
            assert_eq!(
                got,
                Status::Complete((Item::Frame(expected(v)), bytes.len())),
                "{} ({version})",
                v.file
            );
        }
    }
}

#[test]
fn first_of_repeated_headers_wins() {
    let bytes = wire(&VECTORS[0]);
    let mut h = [Header::EMPTY; 4];
    let Ok(Status::Complete((Decoded::Frame(f), _))) =
        Decoder::new(Version::V1_2).decode(&bytes, &mut h)
    else {
        panic!("no frame");
    };
    assert!(f.header(b"foo").unwrap() == "World");
    assert_eq!(f.headers.len(), 2, "the later value is kept as history");
}

#[test]
fn every_prefix_is_partial_and_the_whole_decodes_the_same() {
    let decoder = Decoder::new(Version::V1_2);
    for v in VECTORS {
        let bytes = wire(v);
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_item(&decoder, &bytes[..cut]),
                Ok(Status::Partial),
                "{} cut at {cut}",
                v.file
            );
        }
    }
}

#[test]
fn a_stream_of_all_vectors_decodes_the_same_in_chunks_of_any_size() {
    let mut stream = Vec::new();
    let mut expect = Vec::new();
    for (i, v) in VECTORS.iter().enumerate() {
        stream.extend_from_slice(&wire(v));
        expect.push(Item::Frame(expected(v)));
        // The EOLs the spec allows after a NUL, and heart-beats, in both styles.
        for _ in 0..i % 3 {
            stream.extend_from_slice(if i.is_multiple_of(2) { b"\n" } else { b"\r\n" });
            expect.push(Item::HeartBeat);
        }
    }
    let decoder = Decoder::new(Version::V1_2);
    for chunk in 1..=stream.len() {
        let (items, left) = decode_stream(&decoder, &stream, chunk).unwrap();
        assert_eq!(left, 0, "chunk {chunk}");
        assert_eq!(items, expect, "chunk {chunk}");
    }
}

#[test]
fn reencoding_gives_the_spec_bytes() {
    for v in VECTORS {
        let bytes = wire(v);
        let mut h = [Header::EMPTY; 8];
        let Ok(Status::Complete((Decoded::Frame(f), _))) =
            Decoder::new(Version::V1_2).decode(&bytes, &mut h)
        else {
            panic!("{}: no frame", v.file);
        };
        let mut out = [0u8; 512];
        let n = encode(&f, EncodeOptions::passthrough(Version::V1_2), &mut out).unwrap();
        if v.canonical {
            assert_eq!(&out[..n], &bytes[..], "{}", v.file);
        } else {
            let mut with_blank = bytes.clone();
            with_blank.insert(bytes.len() - 1, b'\n');
            assert_eq!(&out[..n], &with_blank[..], "{}", v.file);
        }
    }
}
