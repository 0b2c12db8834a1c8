//! Encoder behaviour a relay or application relies on: escaping per version and command,
//! pass-through of decoded frames, content-length policy, typed refusals, and the
//! `embedded_io` / `embedded_io_async` writers producing the same bytes as the slice path.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use stomp_relay_codec::{
    encode, encoded_len, write, write_async, Command, Decoded, Decoder, EncodeError, EncodeOptions,
    Frame, Header, HeaderPart, Status, Version, WriteError,
};

fn enc(frame: &Frame<'_>, opts: impl Into<EncodeOptions>) -> Result<Vec<u8>, EncodeError> {
    let opts = opts.into();
    let mut out = vec![0u8; 1024];
    let n = encode(frame, opts, &mut out)?;
    assert_eq!(encoded_len(frame, opts), Ok(n));
    out.truncate(n);
    Ok(out)
}

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[test]
fn plain_headers_are_escaped_only_where_the_version_and_command_escape() {
    let h = [Header::new(b"k:1", b"a\nb\\c\rd")];
    let send = Frame::new(Command::Send, &h, b"");
    assert_eq!(
        enc(&send, Version::V1_2).unwrap(),
        b"SEND\nk\\c1:a\\nb\\\\c\\rd\n\n\0"
    );
    assert_eq!(
        enc(&send, Version::V1_1).unwrap(),
        b"SEND\nk\\c1:a\\nb\\\\c\\rd\n\n\0"
    );
    assert_eq!(
        enc(&send, Version::V1_0),
        Err(EncodeError::Unencodable {
            index: 0,
            part: HeaderPart::Name
        })
    );
    let h = [Header::new(b"passcode", b"a:b\\c")];
    let connect = Frame::new(Command::Connect, &h, b"");
    assert_eq!(
        enc(&connect, Version::V1_2).unwrap(),
        b"CONNECT\npasscode:a:b\\c\n\n\0"
    );
    let h = [Header::new(b"message", b"line\nbreak")];
    assert_eq!(
        enc(&Frame::new(Command::Connected, &h, b""), Version::V1_2),
        Err(EncodeError::Unencodable {
            index: 0,
            part: HeaderPart::Value
        })
    );
}

#[test]
fn decoded_frames_pass_through_verbatim_or_unescaped() {
    let wire = b"MESSAGE\ndestination:/topic/a\\cb\nx\\\\y:1\\n2\n\nhello\0";
    let mut storage = [Header::EMPTY; 8];
    let Ok(Status::Complete((Decoded::Frame(f), _))) =
        Decoder::new(Version::V1_2).decode(wire, &mut storage)
    else {
        panic!()
    };
    assert_eq!(
        enc(&f, EncodeOptions::passthrough(Version::V1_2)).unwrap(),
        wire
    );
    assert_eq!(
        enc(&f, EncodeOptions::passthrough(Version::V1_1)).unwrap(),
        wire
    );
    // To 1.0 the `\c` and `\\` unescape fine; the value's line feed cannot travel.
    assert_eq!(
        enc(&f, EncodeOptions::passthrough(Version::V1_0)),
        Err(EncodeError::Unencodable {
            index: 1,
            part: HeaderPart::Value
        })
    );
    let ok = b"MESSAGE\ndestination:/topic/a\\cb\nx\\\\y:1\n\nhello\0";
    let mut storage = [Header::EMPTY; 8];
    let Ok(Status::Complete((Decoded::Frame(f), _))) =
        Decoder::new(Version::V1_2).decode(ok, &mut storage)
    else {
        panic!()
    };
    assert_eq!(
        enc(&f, EncodeOptions::passthrough(Version::V1_0)).unwrap(),
        b"MESSAGE\ndestination:/topic/a:b\nx\\y:1\n\nhello\0"
    );
}

#[test]
fn content_length_is_added_unless_passing_through() {
    let h = [Header::new(b"destination", b"/q")];
    let f = Frame::new(Command::Send, &h, b"text");
    assert_eq!(
        enc(&f, Version::V1_2).unwrap(),
        b"SEND\ndestination:/q\ncontent-length:4\n\ntext\0"
    );
    assert_eq!(
        enc(&f, EncodeOptions::passthrough(Version::V1_2)).unwrap(),
        b"SEND\ndestination:/q\n\ntext\0"
    );
    // An empty body gets no header.
    let f = Frame::new(Command::Send, &h, b"");
    assert_eq!(
        enc(&f, Version::V1_2).unwrap(),
        b"SEND\ndestination:/q\n\n\0"
    );
    // A present, correct header is kept as is and not duplicated.
    let h = [Header::new(b"content-length", b"2")];
    let f = Frame::new(Command::Send, &h, b"ab");
    assert_eq!(
        enc(&f, Version::V1_2).unwrap(),
        b"SEND\ncontent-length:2\n\nab\0"
    );
    let f = Frame::new(Command::Send, &h, b"abc");
    assert_eq!(
        enc(&f, Version::V1_2),
        Err(EncodeError::ContentLengthMismatch)
    );
}

#[test]
fn invalid_frames_are_typed_errors() {
    assert_eq!(
        enc(&Frame::new(Command::Ack, &[], b"x"), Version::V1_2),
        Err(EncodeError::BodyNotAllowed(Command::Ack))
    );
    let h = [Header::new(b"", b"v")];
    assert_eq!(
        enc(&Frame::new(Command::Send, &h, b""), Version::V1_2),
        Err(EncodeError::EmptyHeaderName { index: 0 })
    );
    let h = [Header::new(b"a", b"bad\\q")];
    let mut f = Frame::new(Command::Send, &h, b"");
    f.form = stomp_relay_codec::HeaderForm::Escaped;
    assert_eq!(
        enc(&f, Version::V1_2),
        Err(EncodeError::InvalidEscape { index: 0 })
    );
    assert_eq!(
        EncodeError::BufferTooSmall { needed: 30 }.to_string(),
        "output buffer too small: frame needs 30 bytes"
    );
}

#[test]
fn writers_produce_the_slice_bytes() {
    let h = [
        Header::new(b"destination", b"/q:1"),
        Header::new(b"x", b"\n"),
    ];
    let f = Frame::new(Command::Message, &h, b"bin\0ary");
    let expect = enc(&f, Version::V1_2).unwrap();

    let mut buf = [0u8; 256];
    let mut w: &mut [u8] = &mut buf;
    assert_eq!(write(&f, Version::V1_2, &mut w), Ok(expect.len()));
    assert_eq!(&buf[..expect.len()], &expect[..]);

    let mut buf = [0u8; 256];
    let mut w: &mut [u8] = &mut buf;
    assert_eq!(
        block_on(write_async(&f, Version::V1_2, &mut w)),
        Ok(expect.len())
    );
    assert_eq!(&buf[..expect.len()], &expect[..]);

    // A full writer is an I/O error, not a panic; an invalid frame writes nothing.
    let mut small = [0u8; 8];
    let mut w: &mut [u8] = &mut small;
    assert!(matches!(
        write(&f, Version::V1_2, &mut w),
        Err(WriteError::Io(_))
    ));
    let mut untouched = [7u8; 64];
    let mut w: &mut [u8] = &mut untouched;
    let bad = Frame::new(Command::Receipt, &[], b"x");
    assert_eq!(
        block_on(write_async(&bad, Version::V1_2, &mut w)),
        Err(WriteError::Encode(EncodeError::BodyNotAllowed(
            Command::Receipt
        )))
    );
    assert!(untouched.iter().all(|&b| b == 7));
}

#[test]
fn header_values_unescape_lazily() {
    let wire = b"MESSAGE\nna\\cme:v\\\\al\\nue\nplain:text\n\n\0";
    let mut storage = [Header::EMPTY; 8];
    let Ok(Status::Complete((Decoded::Frame(f), _))) =
        Decoder::new(Version::V1_2).decode(wire, &mut storage)
    else {
        panic!()
    };
    let v = f
        .header(b"na:me")
        .expect("lookup honours the name's escaping");
    assert_eq!(v.raw(), b"v\\\\al\\nue");
    assert_eq!(v.as_plain(), None);
    assert_eq!(v.unescaped_len(), 7);
    assert_eq!(v.bytes().collect::<Vec<u8>>(), b"v\\al\nue");
    assert!(v.eq_bytes(b"v\\al\nue"));
    assert!(!v.eq_bytes(b"v\\\\al\\nue"));
    let mut out = [0u8; 7];
    assert_eq!(v.copy_unescaped(&mut out).unwrap(), b"v\\al\nue");
    assert_eq!(v.copy_unescaped(&mut [0u8; 6]).unwrap_err().needed, 7);
    let p = f.header(b"plain").unwrap();
    assert_eq!(p.as_plain(), Some(&b"text"[..]));
    assert!(
        f.header(b"na\\cme").is_none(),
        "names are compared unescaped"
    );
    let names: Vec<Vec<u8>> = f.header_pairs().map(|(n, _)| n.bytes().collect()).collect();
    assert_eq!(names, vec![b"na:me".to_vec(), b"plain".to_vec()]);
}
