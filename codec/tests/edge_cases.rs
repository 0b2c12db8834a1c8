//! The issue's edge cases, each as a user of the codec would notice it: heart-beats,
//! CR handling, escaping per version and command, header splitting, content-length and
//! NUL bodies, bodies on bodiless commands, unknown commands, and every limit.

mod common;

use common::{decode_item, decode_stream, Item};
use stomp_relay_codec::{
    DecodeError, Decoded, Decoder, Header, HeaderForm, Limit, Limits, Status, Version,
};

fn frame_of(version: Version, wire: &[u8]) -> common::Owned {
    match decode_item(&Decoder::new(version), wire) {
        Ok(Status::Complete((Item::Frame(f), n))) => {
            assert_eq!(n, wire.len(), "consumed");
            f
        }
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn error_of(decoder: &Decoder, wire: &[u8]) -> DecodeError {
    match decode_item(decoder, wire) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn err(version: Version, wire: &[u8]) -> DecodeError {
    error_of(&Decoder::new(version), wire)
}

#[test]
fn any_number_of_eols_between_frames_are_heart_beats() {
    let wire = b"\n\r\n\n\nSEND\ndestination:/a\n\nx\0\n\r\n\r\n";
    let (items, left) = decode_stream(&Decoder::new(Version::V1_2), wire, 1).unwrap();
    assert_eq!(left, 0);
    let beats = items.iter().filter(|i| **i == Item::HeartBeat).count();
    assert_eq!(beats, 7);
    assert_eq!(items.len(), 8);
}

#[test]
fn a_lone_carriage_return_is_an_error() {
    assert_eq!(
        err(Version::V1_2, b"\rSEND\n\n\0"),
        DecodeError::LoneCarriageReturn
    );
    assert_eq!(
        err(Version::V1_2, b"SE\rND\n\n\0"),
        DecodeError::LoneCarriageReturn
    );
    assert_eq!(
        err(Version::V1_2, b"SEND\na:b\rc\n\n\0"),
        DecodeError::LoneCarriageReturn
    );
    assert_eq!(
        err(Version::V1_0, b"SEND\na:b\rc\n\n\0"),
        DecodeError::LoneCarriageReturn
    );
    // A CR still waiting for its LF is not an error yet.
    assert_eq!(
        decode_item(&Decoder::new(Version::V1_2), b"\r"),
        Ok(Status::Partial)
    );
    assert_eq!(
        decode_item(&Decoder::new(Version::V1_2), b"SEND\r"),
        Ok(Status::Partial)
    );
}

#[test]
fn crlf_lines_decode_like_lf_lines() {
    let f = frame_of(Version::V1_2, b"SEND\r\ndestination:/a\r\n\r\nbody\0");
    assert_eq!(f.header("destination"), Some(&b"/a"[..]));
    assert_eq!(f.body, b"body");
}

#[test]
fn escapes_are_decoded_in_1_1_and_1_2() {
    let wire = b"MESSAGE\na\\cb:x\\ny\\\\z\\rw\n\n\0";
    for v in [Version::V1_1, Version::V1_2] {
        let f = frame_of(v, wire);
        assert_eq!(f.headers, vec![(b"a:b".to_vec(), b"x\ny\\z\rw".to_vec())]);
    }
}

#[test]
fn no_escaping_in_1_0_or_in_connect_frames() {
    let f = frame_of(Version::V1_0, b"MESSAGE\na\\tb:c\\d\n\n\0");
    assert_eq!(f.headers, vec![(b"a\\tb".to_vec(), b"c\\d".to_vec())]);
    for cmd in ["CONNECT", "STOMP", "CONNECTED"] {
        let wire = format!("{cmd}\nlogin:us\\er\npasscode:a\\cb\n\n\0");
        let f = frame_of(Version::V1_2, wire.as_bytes());
        assert_eq!(f.header("passcode"), Some(&b"a\\cb"[..]), "{cmd}");
        assert_eq!(f.header("login"), Some(&b"us\\er"[..]), "{cmd}");
    }
}

#[test]
fn undefined_or_cut_escapes_are_errors() {
    for wire in [
        &b"SEND\na:\\t\n\n\0"[..],
        b"SEND\na:x\\\n\n\0",
        b"SEND\na\\:x\n\n\0",
        b"SEND\n\\x:y\n\n\0",
    ] {
        assert_eq!(
            err(Version::V1_2, wire),
            DecodeError::InvalidEscape,
            "{:?}",
            String::from_utf8_lossy(wire)
        );
        assert_eq!(err(Version::V1_1, wire), DecodeError::InvalidEscape);
    }
}

#[test]
fn header_lines_split_at_the_first_colon() {
    let f = frame_of(Version::V1_0, b"SEND\nurl:http://x:80/\nempty:\n\n\0");
    assert_eq!(f.header("url"), Some(&b"http://x:80/"[..]));
    assert_eq!(f.header("empty"), Some(&b""[..]));
    assert_eq!(
        err(Version::V1_2, b"SEND\nnocolon\n\n\0"),
        DecodeError::MissingColon
    );
    assert_eq!(
        err(Version::V1_2, b"SEND\n:value\n\n\0"),
        DecodeError::EmptyHeaderName
    );
}

#[test]
fn repeated_headers_keep_the_first_including_content_length() {
    let wire = b"SEND\nfoo:1\nfoo:2\ncontent-length:2\ncontent-length:5\n\nab\0";
    let mut h = [Header::EMPTY; 8];
    let Ok(Status::Complete((Decoded::Frame(f), n))) =
        Decoder::new(Version::V1_2).decode(wire, &mut h)
    else {
        panic!()
    };
    assert_eq!(n, wire.len());
    assert!(f.header(b"foo").unwrap() == "1");
    assert_eq!(f.content_length(), Some(2));
    assert_eq!(f.body, b"ab");
}

#[test]
fn content_length_bodies_may_hold_nul_and_others_end_at_the_first_nul() {
    let f = frame_of(Version::V1_2, b"SEND\ncontent-length:5\n\na\0b\0c\0");
    assert_eq!(f.body, b"a\0b\0c");
    let wire = b"SEND\n\nab\0cd\0";
    let r = decode_item(&Decoder::new(Version::V1_2), wire).unwrap();
    let Status::Complete((Item::Frame(f), n)) = r else {
        panic!()
    };
    assert_eq!((f.body.as_slice(), n), (&b"ab"[..], 9));
}

#[test]
fn content_length_must_be_a_number_followed_by_nul() {
    for bad in ["abc", "-1", "+1", " 1", "1 ", "", "99999999999999999999999"] {
        let wire = format!("SEND\ncontent-length:{bad}\n\n\0");
        assert_eq!(
            err(Version::V1_2, wire.as_bytes()),
            DecodeError::InvalidContentLength,
            "{bad:?}"
        );
    }
    assert_eq!(
        err(Version::V1_2, b"SEND\ncontent-length:1\n\nab\0"),
        DecodeError::MissingNulAfterBody
    );
}

#[test]
fn only_send_message_and_error_carry_a_body() {
    for v in [Version::V1_0, Version::V1_2] {
        let f = frame_of(v, b"ERROR\nmessage:x\n\ndetails\0");
        assert_eq!(f.body, b"details");
    }
    for cmd in ["SUBSCRIBE", "ACK", "RECEIPT", "CONNECT", "DISCONNECT"] {
        let wire = format!("{cmd}\n\nbody\0");
        let e = err(Version::V1_2, wire.as_bytes());
        assert_eq!(e.to_string(), format!("{cmd} frames must not have a body"));
        // Known before the body arrives.
        let wire = format!("{cmd}\ncontent-length:4\n\n");
        assert!(matches!(
            err(Version::V1_2, wire.as_bytes()),
            DecodeError::BodyNotAllowed(_)
        ));
        let wire = format!("{cmd}\n\nb");
        assert!(matches!(
            err(Version::V1_2, wire.as_bytes()),
            DecodeError::BodyNotAllowed(_)
        ));
    }
    // An explicit zero length is fine.
    frame_of(Version::V1_2, b"SUBSCRIBE\nid:1\ncontent-length:0\n\n\0");
}

#[test]
fn unknown_commands_are_errors() {
    for wire in [
        &b"send\n\n\0"[..],
        b"PUBLISH\n\n\0",
        b"SEND \n\n\0",
        b"\0",
        b"CONNECTX\n\n\0",
    ] {
        assert_eq!(err(Version::V1_2, wire), DecodeError::InvalidCommand);
    }
}

#[test]
fn decoded_form_follows_version_and_command() {
    let mut h = [Header::EMPTY; 4];
    let form = |v, wire: &[u8], h: &mut [Header<'_>; 4]| {
        let mut storage = *h;
        match Decoder::new(v).decode(wire, &mut storage) {
            Ok(Status::Complete((Decoded::Frame(f), _))) => f.form,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        form(Version::V1_2, b"SEND\n\n\0", &mut h),
        HeaderForm::Escaped
    );
    assert_eq!(
        form(Version::V1_1, b"SEND\n\n\0", &mut h),
        HeaderForm::Escaped
    );
    assert_eq!(
        form(Version::V1_0, b"SEND\n\n\0", &mut h),
        HeaderForm::Plain
    );
    assert_eq!(
        form(Version::V1_2, b"CONNECT\n\n\0", &mut h),
        HeaderForm::Plain
    );
}

fn limited(limits: Limits) -> Decoder {
    Decoder::with_limits(Version::V1_2, limits)
}

#[test]
fn frame_size_limit_applies_to_partial_input() {
    let d = limited(Limits {
        max_frame_size: 32,
        ..Limits::DEFAULT
    });
    let e = DecodeError::LimitExceeded {
        limit: Limit::FrameSize,
        max: 32,
    };
    // 32 bytes of an unfinished frame: it can only be longer than the limit.
    let mut wire = b"SEND\ndestination:/queue/a\n\n".to_vec();
    wire.resize(32, b'x');
    assert_eq!(error_of(&d, &wire), e);
    assert_eq!(decode_item(&d, &wire[..31]), Ok(Status::Partial));
    // A content-length that cannot fit is refused before the body arrives.
    assert_eq!(error_of(&d, b"SEND\ncontent-length:30\n\n"), e);
    // Exactly at the limit is fine.
    let mut ok = b"SEND\n\n".to_vec();
    ok.resize(31, b'y');
    ok.push(0);
    assert!(matches!(
        decode_item(&d, &ok),
        Ok(Status::Complete((Item::Frame(_), 32)))
    ));
    assert_eq!(e.to_string(), "frame size limit of 32 bytes exceeded");
    assert_eq!(
        DecodeError::LimitExceeded {
            limit: Limit::FrameSize,
            max: 65536
        }
        .to_string(),
        "frame size limit of 65536 bytes exceeded"
    );
}

#[test]
fn header_count_limit_and_header_storage() {
    let d = limited(Limits {
        max_headers: 2,
        ..Limits::DEFAULT
    });
    let e = DecodeError::LimitExceeded {
        limit: Limit::HeaderCount,
        max: 2,
    };
    assert_eq!(
        error_of(&d, b"SEND\na:1\nb:2\nc:3\n"),
        e,
        "known while partial"
    );
    assert_eq!(e.to_string(), "header count limit of 2 headers exceeded");
    assert!(matches!(
        decode_item(&d, b"SEND\na:1\nb:2\n\n\0"),
        Ok(Status::Complete(_))
    ));
    let mut small = [Header::EMPTY; 1];
    assert_eq!(
        Decoder::new(Version::V1_2).decode(b"SEND\na:1\nb:2\n\n\0", &mut small),
        Err(DecodeError::LimitExceeded {
            limit: Limit::HeaderCount,
            max: 1
        })
    );
}

#[test]
fn header_line_limit_applies_to_partial_lines() {
    let d = limited(Limits {
        max_header_line: 8,
        ..Limits::DEFAULT
    });
    let e = DecodeError::LimitExceeded {
        limit: Limit::HeaderLine,
        max: 8,
    };
    assert_eq!(error_of(&d, b"SEND\nabcd:12345"), e, "no EOL yet");
    assert_eq!(error_of(&d, b"SEND\nabcd:12345\n\n\0"), e);
    // The command line is judged by the command set instead, at once.
    assert_eq!(error_of(&d, b"SUBSCRIBEX"), DecodeError::InvalidCommand);
    assert_eq!(
        decode_item(&d, b"SEND\nabcd:123\r"),
        Ok(Status::Partial),
        "the CR belongs to the EOL"
    );
    assert!(matches!(
        decode_item(&d, b"SEND\nabcd:123\r\n\r\n\0"),
        Ok(Status::Complete(_))
    ));
    assert_eq!(
        e.to_string(),
        "header line length limit of 8 bytes exceeded"
    );
}

#[test]
fn body_limit_with_and_without_content_length() {
    let d = limited(Limits {
        max_body: 4,
        ..Limits::DEFAULT
    });
    let e = DecodeError::LimitExceeded {
        limit: Limit::BodySize,
        max: 4,
    };
    assert_eq!(error_of(&d, b"SEND\ncontent-length:5\n\n"), e);
    assert_eq!(error_of(&d, b"SEND\n\n12345"), e, "no NUL within the limit");
    assert_eq!(decode_item(&d, b"SEND\n\n1234"), Ok(Status::Partial));
    assert!(matches!(
        decode_item(&d, b"SEND\n\n1234\0"),
        Ok(Status::Complete(_))
    ));
    assert_eq!(e.to_string(), "body size limit of 4 bytes exceeded");
}

#[test]
fn default_limits_are_server_sized() {
    assert_eq!(Limits::default(), Limits::DEFAULT);
    assert_eq!(Limits::DEFAULT.max_frame_size, 65536);
    assert_eq!(Limits::DEFAULT.max_headers, 64);
    assert_eq!(Limits::DEFAULT.max_header_line, 8192);
    assert_eq!(Limits::DEFAULT.max_body, 65536);
    // A flood without any newline is refused once a line could no longer fit, and
    // garbage where a command belongs at once.
    assert_eq!(
        decode_item(&Decoder::new(Version::V1_2), b"GET / HTTP/1.1"),
        Err(DecodeError::InvalidCommand)
    );
    let mut flood = b"SEND\n".to_vec();
    flood.resize(9000, b'A');
    assert!(matches!(
        decode_item(&Decoder::new(Version::V1_2), &flood),
        Err(DecodeError::LimitExceeded {
            limit: Limit::HeaderLine,
            ..
        })
    ));
}
