//! Session behaviour tests: the handshake, version table, receipts, errors,
//! heart-beats, the subscription table and deferred CONNECTED.

use super::*;
use crate::codec::{Decoded, Decoder, HeaderForm, Limits, Status};
use std::string::{String, ToString};
use std::vec::Vec;

type S = Session<4>;

/// A transmitted frame, decoded back, for assertions.
#[derive(Debug)]
struct Out {
    command: Option<Command>,
    headers: Vec<(String, String)>,
}

impl Out {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn is(&self, c: Command) -> bool {
        self.command == Some(c)
    }
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn drain<
    const A: usize,
    T: SubscriptionTable,
    const R: usize,
    const SC: usize,
    const M: usize,
    const U: usize,
>(
    s: &mut Session<A, T, R, SC, M, U>,
    now: Instant,
) -> Vec<Out> {
    let mut outs = Vec::new();
    let mut buf = [0u8; MAX_CONTROL_FRAME];
    while let Some(n) = s.poll_transmit(now, &mut buf).unwrap() {
        let mut hs = [Header::EMPTY; 16];
        let dec = Decoder::with_limits(s.version(), Limits::UNLIMITED);
        match dec.decode(&buf[..n], &mut hs).unwrap() {
            Status::Complete((Decoded::Frame(f), used)) => {
                assert_eq!(used, n);
                outs.push(Out {
                    command: Some(f.command),
                    headers: f
                        .header_pairs()
                        .map(|(k, v)| {
                            let mut kb = [0u8; 512];
                            let mut vb = [0u8; 512];
                            (
                                String::from_utf8(k.copy_unescaped(&mut kb).unwrap().to_vec())
                                    .unwrap(),
                                String::from_utf8(v.copy_unescaped(&mut vb).unwrap().to_vec())
                                    .unwrap(),
                            )
                        })
                        .collect(),
                });
            }
            Status::Complete((Decoded::HeartBeat, 1)) => outs.push(Out {
                command: None,
                headers: Vec::new(),
            }),
            other => panic!("unexpected {other:?}"),
        }
    }
    outs
}

fn connect_frame<'a>(headers: &'a [Header<'a>]) -> Frame<'a> {
    Frame::new(Command::Connect, headers, b"")
}

fn connected(config: SessionConfig) -> S {
    let mut s = S::new(SessionId::new(7), config, t(0));
    let h = [
        Header::new(b"accept-version", b"1.1,1.2"),
        Header::new(b"heart-beat", b"0,0"),
    ];
    assert!(matches!(
        s.handle_frame(t(0), &connect_frame(&h)),
        Ok(Some(Event::Connect(_)))
    ));
    let out = drain(&mut s, t(0));
    assert!(out[0].is(Command::Connected));
    s
}

fn send(
    s: &mut S,
    now: Instant,
    cmd: Command,
    headers: &[Header<'_>],
) -> Result<bool, ProtocolError> {
    let f = Frame::new(cmd, headers, b"");
    s.handle_frame(now, &f).map(|e| e.is_some())
}

#[test]
fn connect_negotiates_highest_common_version_and_heart_beats() {
    let mut s = S::new(
        SessionId::new(7),
        SessionConfig {
            server: Some("stomp-relay/test"),
            ..SessionConfig::default()
        },
        t(0),
    );
    let h = [
        Header::new(b"accept-version", b"1.0,1.1,1.2"),
        Header::new(b"heart-beat", b"4000,20000"),
        Header::new(b"login", b"alice"),
        Header::new(b"host", b"/"),
    ];
    match s.handle_frame(t(5), &connect_frame(&h)).unwrap() {
        Some(Event::Connect(c)) => {
            assert_eq!(c.version, Version::V1_2);
            assert_eq!(c.login, Some(&b"alice"[..]));
            assert_eq!(c.passcode, None);
            assert_eq!(c.host, Some(&b"/"[..]));
            assert_eq!(c.heart_beat, (4000, 20000));
        }
        other => panic!("{other:?}"),
    }
    let out = drain(&mut s, t(5));
    assert_eq!(out.len(), 1);
    assert!(out[0].is(Command::Connected));
    assert_eq!(out[0].get("version"), Some("1.2"));
    assert_eq!(out[0].get("heart-beat"), Some("10000,10000"));
    assert_eq!(out[0].get("server"), Some("stomp-relay/test"));
    assert_eq!(
        out[0].get("session"),
        Some("00000000000000000000000000000007")
    );
    // We send every max(10000, 20000); expect every max(4000, 10000), 3x tolerated.
    assert_eq!(
        s.heart_beat(),
        (
            Some(Duration::from_millis(20_000)),
            Some(Duration::from_millis(10_000))
        )
    );
    assert_eq!(
        s.poll_timeout(),
        Some(t(16_005)),
        "a heart-beat after 16 s quiet"
    );
}

#[test]
fn version_table() {
    type Case = (
        Option<&'static [u8]>,
        Option<Version>,
        Versions,
        Option<Version>,
    );
    let cases: &[Case] = &[
        (
            Some(b"1.0,1.1,1.2"),
            None,
            Versions::ALL,
            Some(Version::V1_2),
        ),
        (Some(b"1.1, 1.0"), None, Versions::ALL, Some(Version::V1_1)),
        (None, None, Versions::ALL, Some(Version::V1_0)),
        (
            None,
            Some(Version::V1_1),
            Versions::ALL,
            Some(Version::V1_1),
        ),
        (
            Some(b"1.0,1.1,1.2"),
            Some(Version::V1_1),
            Versions::ALL,
            Some(Version::V1_1),
        ),
        (Some(b"1.2"), Some(Version::V1_1), Versions::ALL, None),
        (Some(b"1.2"), None, Versions::only(Version::V1_1), None),
        (Some(b"2.0,1.2"), None, Versions::ALL, Some(Version::V1_2)),
        (Some(b"2.0"), None, Versions::ALL, None),
    ];
    for &(accept, sub, server, want) in cases {
        let mut s = S::new(
            SessionId::new(1),
            SessionConfig {
                subprotocol: sub,
                versions: server,
                ..SessionConfig::default()
            },
            t(0),
        );
        let h = [Header::new(b"accept-version", accept.unwrap_or(b""))];
        let hs: &[Header<'_>] = if accept.is_some() { &h } else { &[] };
        let r = s.handle_frame(t(0), &connect_frame(hs)).map(|_| ());
        let out = drain(&mut s, t(0));
        match want {
            Some(v) => {
                assert!(r.is_ok(), "{accept:?} {sub:?}");
                assert_eq!(out[0].get("version"), Some(v.as_str()));
                assert_eq!(s.version(), v);
            }
            None => {
                assert_eq!(r.unwrap_err(), ProtocolError::UnsupportedVersion(server));
                assert!(out[0].is(Command::Error));
                let expected = std::format!("Supported protocol versions are {}", server);
                assert_eq!(out[0].get("message"), Some(expected.as_str()));
                // The spec's example: the versions the server speaks, as a header.
                let listed = std::format!("{server}");
                assert_eq!(out[0].get("version"), Some(listed.as_str()));
                assert!(s.is_closed());
            }
        }
    }
}

#[test]
fn anything_before_connect_is_an_error_and_closes() {
    let mut s = S::new(SessionId::new(1), SessionConfig::default(), t(0));
    let h = [
        Header::new(b"destination", b"/sub/x"),
        Header::new(b"receipt", b"r1"),
    ];
    let err = send(&mut s, t(1), Command::Send, &h).unwrap_err();
    assert_eq!(err, ProtocolError::NotConnected(Command::Send));
    let out = drain(&mut s, t(1));
    assert_eq!(out.len(), 1);
    assert!(out[0].is(Command::Error));
    assert_eq!(
        out[0].get("message"),
        Some("Expected CONNECT or STOMP frame, got SEND")
    );
    assert_eq!(out[0].get("receipt-id"), Some("r1"));
    assert!(s.is_closed());
    assert_eq!(s.close_reason(), Some(CloseReason::ProtocolError));
    // Input after close is ignored.
    assert_eq!(send(&mut s, t(2), Command::Connect, &[]), Ok(false));
    assert!(drain(&mut s, t(2)).is_empty());
}

#[test]
fn second_connect_is_an_error() {
    let mut s = connected(SessionConfig::default());
    assert_eq!(
        send(&mut s, t(1), Command::Stomp, &[]),
        Err(ProtocolError::AlreadyConnected)
    );
    let out = drain(&mut s, t(1));
    assert!(out[0].is(Command::Error));
    assert_eq!(out[0].get("message"), Some("Already connected"));
    assert!(s.is_closed());
}

#[test]
fn receipts_for_every_frame_that_asks() {
    let mut s = connected(SessionConfig::default());
    let h = [
        Header::new(b"destination", b"/sub/a"),
        Header::new(b"receipt", b"r:1"),
    ];
    let f = Frame::new(Command::Send, &h, b"hello");
    assert_eq!(
        s.handle_frame(t(1), &f),
        Ok(Some(Event::Send {
            destination: &b"/sub/a"[..]
        }))
    );
    let h = [
        Header::new(b"destination", b"/sub/a"),
        Header::new(b"id", b"0"),
        Header::new(b"receipt", b"r2"),
    ];
    assert_eq!(send(&mut s, t(1), Command::Subscribe, &h), Ok(true));
    let out = drain(&mut s, t(1));
    assert_eq!(out.len(), 2);
    assert!(out[0].is(Command::Receipt));
    assert_eq!(out[0].get("receipt-id"), Some("r:1"));
    assert_eq!(out[1].get("receipt-id"), Some("r2"));
    assert!(!s.is_closing());
}

#[test]
fn disconnect_with_receipt_answers_before_closing() {
    let mut s = connected(SessionConfig::default());
    let h = [Header::new(b"receipt", b"bye")];
    assert_eq!(send(&mut s, t(1), Command::Disconnect, &h), Ok(true));
    assert!(s.is_closing() && !s.is_closed());
    let out = drain(&mut s, t(1));
    assert_eq!(out.len(), 1);
    assert!(out[0].is(Command::Receipt));
    assert_eq!(out[0].get("receipt-id"), Some("bye"));
    assert!(s.is_closed());
    assert_eq!(s.close_reason(), Some(CloseReason::Disconnected));

    let mut s = connected(SessionConfig::default());
    assert_eq!(send(&mut s, t(1), Command::Disconnect, &[]), Ok(true));
    assert!(s.is_closed());
    assert!(drain(&mut s, t(1)).is_empty());
}

#[test]
fn missing_headers_name_the_header_and_echo_the_receipt() {
    let table: &[(Command, &[Header<'static>], &str)] = &[
        (
            Command::Send,
            &[],
            "SEND frame lacks required header: destination",
        ),
        (
            Command::Subscribe,
            &[Header::new(b"destination", b"/sub/a")],
            "SUBSCRIBE frame lacks required header: id",
        ),
        (
            Command::Unsubscribe,
            &[],
            "UNSUBSCRIBE frame lacks required header: id",
        ),
        (Command::Ack, &[], "ACK frame lacks required header: id"),
        (
            Command::Begin,
            &[],
            "BEGIN frame lacks required header: transaction",
        ),
        (Command::Message, &[], "MESSAGE is a server frame"),
        (
            Command::Subscribe,
            &[
                Header::new(b"destination", b"/sub/a"),
                Header::new(b"id", b"1"),
                Header::new(b"ack", b"sometimes"),
            ],
            "Invalid ack header",
        ),
    ];
    for &(cmd, headers, message) in table {
        let mut s = connected(SessionConfig::default());
        let mut hs: Vec<Header<'_>> = headers.to_vec();
        hs.push(Header::new(b"receipt", b"77"));
        assert!(send(&mut s, t(1), cmd, &hs).is_err());
        let out = drain(&mut s, t(1));
        assert_eq!(out.len(), 1, "{cmd}: only the ERROR, no RECEIPT");
        assert!(out[0].is(Command::Error));
        assert_eq!(out[0].get("message"), Some(message));
        assert_eq!(out[0].get("receipt-id"), Some("77"));
        assert!(s.is_closed());
    }
}

#[test]
fn subscription_table_rules() {
    let mut s = connected(SessionConfig::default());
    let sub = |id: &'static [u8], ack: &'static [u8]| {
        [
            Header::new(b"destination", b"/topic/a"),
            Header::new(b"id", id),
            Header::new(b"ack", ack),
        ]
    };
    let f = sub(b"a", b"client-individual");
    match s.handle_frame(t(1), &Frame::new(Command::Subscribe, &f, b"")) {
        Ok(Some(Event::Subscribe {
            id,
            destination,
            ack,
        })) => {
            assert_eq!(
                (id, destination, ack),
                (&b"a"[..], &b"/topic/a"[..], AckMode::ClientIndividual)
            );
        }
        other => panic!("{other:?}"),
    }
    for id in [&b"b"[..], b"c", b"d"] {
        let f = [
            Header::new(b"destination", b"/topic/a"),
            Header::new(b"id", id),
        ];
        assert_eq!(send(&mut s, t(1), Command::Subscribe, &f), Ok(true));
    }
    assert_eq!(s.subscription(b"a"), Some(AckMode::ClientIndividual));
    assert_eq!(s.subscription(b"b"), Some(AckMode::Auto));
    assert_eq!(s.subscription_count(), 4);
    let f = [Header::new(b"id", b"b")];
    match s.handle_frame(t(2), &Frame::new(Command::Unsubscribe, &f, b"")) {
        Ok(Some(Event::Unsubscribe { id })) => assert_eq!(id, b"b"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.subscription(b"b"), None);
    assert_eq!(
        send(&mut s, t(2), Command::Subscribe, &sub(b"e", b"client")),
        Ok(true)
    );
    assert_eq!(s.subscription(b"e"), Some(AckMode::Client));
    // Full.
    assert_eq!(
        send(&mut s, t(3), Command::Subscribe, &sub(b"f", b"auto")),
        Err(ProtocolError::TooManySubscriptions(4))
    );
    let out = drain(&mut s, t(3));
    assert_eq!(
        out[0].get("message"),
        Some("Too many subscriptions (at most 4 per session)")
    );

    let mut s = connected(SessionConfig::default());
    assert_eq!(
        send(&mut s, t(1), Command::Subscribe, &sub(b"x", b"auto")),
        Ok(true)
    );
    assert_eq!(
        send(&mut s, t(1), Command::Subscribe, &sub(b"x", b"auto")),
        Err(ProtocolError::DuplicateSubscription)
    );

    let mut s = connected(SessionConfig::default());
    assert_eq!(
        send(
            &mut s,
            t(1),
            Command::Unsubscribe,
            &[Header::new(b"id", b"nope")]
        ),
        Err(ProtocolError::UnknownSubscription)
    );

    let mut s = connected(SessionConfig::default());
    let long = [b'x'; SUB_ID_MAX + 1];
    let f = [
        Header::new(b"destination", b"/topic/a"),
        Header::new(b"id", &long),
    ];
    assert_eq!(
        send(&mut s, t(1), Command::Subscribe, &f),
        Err(ProtocolError::HeaderTooLong("id", SUB_ID_MAX))
    );
}

#[test]
fn escaped_values_are_unescaped_for_the_host() {
    let mut s = connected(SessionConfig::default());
    let h = [
        Header::new(b"destination", b"/sub/a\\cb"),
        Header::new(b"id", b"i\\\\d"),
    ];
    let f = Frame {
        command: Command::Subscribe,
        headers: &h,
        body: b"",
        form: HeaderForm::Escaped,
    };
    match s.handle_frame(t(1), &f) {
        Ok(Some(Event::Subscribe {
            id, destination, ..
        })) => {
            assert_eq!(destination, b"/sub/a:b");
            assert_eq!(id, b"i\\d");
        }
        other => panic!("{other:?}"),
    }
    let h = [Header::new(b"id", b"i\\\\d")];
    let f = Frame {
        command: Command::Unsubscribe,
        headers: &h,
        body: b"",
        form: HeaderForm::Escaped,
    };
    assert_eq!(
        s.handle_frame(t(1), &f),
        Ok(Some(Event::Unsubscribe { id: &b"i\\d"[..] }))
    );
}

#[test]
fn heart_beats_when_idle_and_timeout_when_silent() {
    let mut s = S::new(SessionId::new(1), SessionConfig::default(), t(0));
    let h = [
        Header::new(b"accept-version", b"1.2"),
        Header::new(b"heart-beat", b"5000,5000"),
    ];
    s.handle_frame(t(0), &connect_frame(&h)).unwrap();
    drain(&mut s, t(0));
    // Send every 10 s (a heart-beat after 8 s quiet), read timeout 3 x 10 s.
    assert_eq!(s.heart_beat().0, Some(Duration::from_millis(10_000)));
    assert_eq!(s.poll_timeout(), Some(t(8_000)));
    s.handle_timeout(t(7_999));
    assert!(drain(&mut s, t(7_999)).is_empty());
    s.handle_timeout(t(8_000));
    let out = drain(&mut s, t(8_000));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].command, None, "a heart-beat EOL");
    // The host wrote a MESSAGE at 15 s: the next heart-beat is due 8 s later.
    s.handle_transmitted(t(15_000));
    s.handle_heartbeat(t(15_000));
    assert_eq!(s.poll_timeout(), Some(t(23_000)));
    s.handle_timeout(t(23_000));
    assert_eq!(drain(&mut s, t(23_000)).len(), 1);
    // Client silent since 15 s: closed at 45 s with ERROR "Session closed.".
    for beat in [31_000, 39_000] {
        assert_eq!(s.poll_timeout(), Some(t(beat)));
        s.handle_timeout(t(beat));
        assert_eq!(drain(&mut s, t(beat)).len(), 1);
    }
    assert_eq!(s.poll_timeout(), Some(t(45_000)));
    s.handle_timeout(t(45_000));
    let out = drain(&mut s, t(45_000));
    assert_eq!(out.len(), 1);
    assert!(out[0].is(Command::Error));
    assert_eq!(out[0].get("message"), Some("Session closed."));
    assert!(s.is_closed());
    assert_eq!(s.close_reason(), Some(CloseReason::HeartbeatTimeout));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn no_heart_beats_when_either_side_declines_or_version_1_0() {
    let s = connected(SessionConfig::default());
    assert_eq!(s.poll_timeout(), None);
    let mut s = S::new(SessionId::new(1), SessionConfig::default(), t(0));
    let h = [Header::new(b"heart-beat", b"1000,1000")];
    s.handle_frame(t(0), &connect_frame(&h)).unwrap();
    let out = drain(&mut s, t(0));
    assert_eq!(out[0].get("version"), Some("1.0"));
    assert_eq!(out[0].get("heart-beat"), None);
    assert_eq!(s.poll_timeout(), None);
    let mut s = S::new(
        SessionId::new(1),
        SessionConfig {
            heart_beat: (0, 0),
            ..SessionConfig::default()
        },
        t(0),
    );
    let h = [
        Header::new(b"accept-version", b"1.2"),
        Header::new(b"heart-beat", b"1000,1000"),
    ];
    s.handle_frame(t(0), &connect_frame(&h)).unwrap();
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn invalid_heart_beat_header_is_an_error() {
    let mut s = S::new(SessionId::new(1), SessionConfig::default(), t(0));
    let h = [
        Header::new(b"accept-version", b"1.2"),
        Header::new(b"heart-beat", b"ten,0"),
    ];
    assert_eq!(
        s.handle_frame(t(0), &connect_frame(&h)),
        Err(ProtocolError::InvalidHeader("heart-beat"))
    );
    assert_eq!(
        drain(&mut s, t(0))[0].get("message"),
        Some("Invalid heart-beat header")
    );
}

#[test]
fn connect_timeout_closes_with_error() {
    let mut s = S::new(SessionId::new(1), SessionConfig::default(), t(1_000));
    assert_eq!(s.poll_timeout(), Some(t(61_000)));
    s.handle_timeout(t(61_000));
    let out = drain(&mut s, t(61_000));
    assert_eq!(
        out[0].get("message"),
        Some("No CONNECT frame received in time")
    );
    assert_eq!(s.close_reason(), Some(CloseReason::ConnectTimeout));
}

#[test]
fn decode_errors_become_error_frames() {
    let mut s = connected(SessionConfig::default());
    s.handle_decode_error(t(1), &DecodeError::InvalidCommand);
    let out = drain(&mut s, t(1));
    assert_eq!(out[0].get("message"), Some("invalid command"));
    assert_eq!(s.close_reason(), Some(CloseReason::DecodeError));
    assert!(s.is_closed());
}

#[test]
fn host_refusal_takes_over_the_frames_receipt() {
    let mut s = connected(SessionConfig::default());
    let h = [
        Header::new(b"destination", b"/nowhere"),
        Header::new(b"receipt", b"r9"),
    ];
    assert_eq!(send(&mut s, t(1), Command::Send, &h), Ok(true));
    s.close_with_error(
        CloseReason::Rejected,
        format_args!("Destination must start with one of: {}", "/pub/"),
    );
    let out = drain(&mut s, t(1));
    assert_eq!(out.len(), 1);
    assert!(out[0].is(Command::Error));
    assert_eq!(
        out[0].get("message"),
        Some("Destination must start with one of: /pub/")
    );
    assert_eq!(out[0].get("receipt-id"), Some("r9"));
}

#[test]
fn withdrawn_receipt_is_not_sent_and_earlier_ones_are() {
    let mut s = connected(SessionConfig::default());
    let h = [
        Header::new(b"destination", b"/sub/a"),
        Header::new(b"receipt", b"kept"),
    ];
    assert_eq!(send(&mut s, t(1), Command::Send, &h), Ok(true));
    let h = [
        Header::new(b"destination", b"/sub/a"),
        Header::new(b"receipt", b"refused"),
    ];
    assert_eq!(send(&mut s, t(1), Command::Send, &h), Ok(true));
    assert!(s.withdraw_receipt());
    // Only the frame being handled can be withdrawn, and only once.
    assert!(!s.withdraw_receipt());
    let out = drain(&mut s, t(1));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].get("receipt-id"), Some("kept"));
    assert!(!s.is_closing());
}

/// A session that defers CONNECTED and has read a 1.2 CONNECT the host has not
/// accepted yet.
fn deferred() -> S {
    let mut s = S::new(
        SessionId::new(3),
        SessionConfig {
            defer_connected: true,
            ..SessionConfig::default()
        },
        t(0),
    );
    let h = [Header::new(b"accept-version", b"1.2")];
    s.handle_frame(t(0), &connect_frame(&h)).unwrap();
    s
}

#[test]
fn deferred_connected_waits_for_accept_and_names_the_user() {
    let mut s = deferred();
    assert!(drain(&mut s, t(0)).is_empty());
    assert!(s.set_user(b"alice"));
    assert!(!s.set_user(b"bad\nname"));
    s.accept(t(1));
    let out = drain(&mut s, t(1));
    assert!(out[0].is(Command::Connected));
    assert_eq!(out[0].get("user-name"), Some("alice"));

    let mut s = deferred();
    s.close_with_error(CloseReason::BrokerClosed, CloseReason::BrokerClosed);
    let out = drain(&mut s, t(0));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].get("message"), Some("Connection to broker closed."));
}

#[test]
fn rejected_before_connected_sends_only_the_error() {
    let mut s = deferred();
    let h = [
        Header::new(b"destination", b"/sub/a"),
        Header::new(b"receipt", b"early"),
    ];
    assert_eq!(send(&mut s, t(1), Command::Send, &h), Ok(true));
    assert!(
        drain(&mut s, t(1)).is_empty(),
        "no RECEIPT before CONNECTED"
    );
    // DISCONNECT before CONNECTED: the session ends without a word.
    let h = [Header::new(b"receipt", b"bye")];
    assert_eq!(send(&mut s, t(2), Command::Disconnect, &h), Ok(true));
    let out = drain(&mut s, t(2));
    assert!(out.is_empty(), "{out:?}");
    assert!(s.is_closed());

    let mut s = deferred();
    let h = [
        Header::new(b"destination", b"/sub/a"),
        Header::new(b"receipt", b"early"),
    ];
    assert_eq!(send(&mut s, t(1), Command::Send, &h), Ok(true));
    s.current_receipt = false; // the refusal comes later, not while handling the SEND
    s.close_with_error(CloseReason::Rejected, "Access denied");
    let out = drain(&mut s, t(2));
    assert_eq!(out.len(), 1);
    assert!(out[0].is(Command::Error));
    assert_eq!(out[0].get("message"), Some("Access denied"));
    assert!(s.is_closed());
}

#[test]
fn host_handled_receipts() {
    let mut s = connected(SessionConfig {
        local_receipts: false,
        ..SessionConfig::default()
    });
    let h = [
        Header::new(b"destination", b"/sub/a"),
        Header::new(b"receipt", b"up"),
    ];
    assert_eq!(send(&mut s, t(1), Command::Send, &h), Ok(true));
    assert!(drain(&mut s, t(1)).is_empty());
    assert!(s.queue_receipt(b"local"));
    assert_eq!(drain(&mut s, t(1))[0].get("receipt-id"), Some("local"));
    // DISCONNECT's receipt is always answered locally.
    assert_eq!(
        send(
            &mut s,
            t(2),
            Command::Disconnect,
            &[Header::new(b"receipt", b"d")]
        ),
        Ok(true)
    );
    assert_eq!(drain(&mut s, t(2))[0].get("receipt-id"), Some("d"));
    assert!(s.is_closed());
}

#[test]
fn small_output_buffer_keeps_the_frame_queued() {
    let mut s = S::new(SessionId::new(1), SessionConfig::default(), t(0));
    s.handle_frame(t(0), &connect_frame(&[])).unwrap();
    let mut tiny = [0u8; 4];
    assert!(matches!(
        s.poll_transmit(t(0), &mut tiny),
        Err(TransmitError(EncodeError::BufferTooSmall { .. }))
    ));
    assert!(drain(&mut s, t(0))[0].is(Command::Connected));
}

#[test]
fn a_session_stays_small() {
    // The server's budget is 8 KiB per idle WebSocket session, buffers included;
    // the session's inline tables must leave most of it to the transport.
    assert!(core::mem::size_of::<Session<32>>() <= 3_150);
    assert!(core::mem::size_of::<Session<8>>() <= 1_550);
    // A host-supplied table leaves only the fixed part (under 1 KiB; an ERROR's
    // receipt-id is not kept twice).
    assert!(core::mem::size_of::<Session<0>>() <= 950);
}

/// A microcontroller's session: the host keeps subscriptions, 34 B of receipts (ids up
/// to 16 B), 16 B of unescaping space, 24 B of ERROR text, no user name.
type Lean = Session<0, HostTable, 34, 16, 24, 0>;

fn lean_connected() -> Lean {
    let mut s = Lean::new(SessionId::new(3), SessionConfig::default(), t(0));
    let h = [Header::new(b"accept-version", b"1.2")];
    assert!(s.handle_frame(t(0), &connect_frame(&h)).is_ok());
    assert!(drain(&mut s, t(0))[0].is(Command::Connected));
    s
}

fn escaped<'a>(command: Command, headers: &'a [Header<'a>]) -> Frame<'a> {
    Frame {
        command,
        headers,
        body: b"",
        form: HeaderForm::Escaped,
    }
}

#[test]
fn a_lean_session_passes_subscriptions_to_the_host_and_names_its_limits() {
    assert!(
        core::mem::size_of::<Lean>() <= 320,
        "{}",
        core::mem::size_of::<Lean>()
    );
    let mut s = lean_connected();
    assert!(!s.set_user(b"u"), "no room for a user name");
    // Id and destination both unescaped into the 16 scratch bytes; the same id again
    // is the host table's to refuse.
    let h = [
        Header::new(b"destination", b"/a\\cb"),
        Header::new(b"id", b"x\\cy"),
        Header::new(b"ack", b"client"),
        Header::new(b"receipt", b"r1"),
    ];
    for _ in 0..2 {
        assert_eq!(
            s.handle_frame(t(1), &escaped(Command::Subscribe, &h)),
            Ok(Some(Event::Subscribe {
                id: b"x:y",
                destination: b"/a:b",
                ack: AckMode::Client,
            }))
        );
        assert_eq!(drain(&mut s, t(1))[0].get("receipt-id"), Some("r1"));
    }
    let h = [Header::new(b"id", b"never\\csubscribed")];
    assert_eq!(
        s.handle_frame(t(1), &escaped(Command::Unsubscribe, &h)),
        Ok(Some(Event::Unsubscribe {
            id: b"never:subscribed"
        }))
    );

    // An escaped destination longer than the scratch space.
    let h = [
        Header::new(b"destination", b"/queue/a\\cvery-long"),
        Header::new(b"receipt", b"r2"),
    ];
    assert_eq!(
        s.handle_frame(t(2), &escaped(Command::Send, &h)),
        Err(ProtocolError::HeaderTooLong("destination", 16))
    );
    let out = drain(&mut s, t(2));
    assert_eq!(out.len(), 1, "only the ERROR, no RECEIPT: {out:?}");
    assert_eq!(out[0].get("message"), Some("destination header longe"));
    assert_eq!(out[0].get("receipt-id"), Some("r2"));
    assert!(s.is_closed());

    // A receipt longer than the queue keeps.
    let mut s = lean_connected();
    let h = [
        Header::new(b"destination", b"/a"),
        Header::new(b"receipt", b"0123456789abcdefg"),
    ];
    assert_eq!(
        s.handle_frame(t(1), &Frame::new(Command::Send, &h, b"")),
        Err(ProtocolError::HeaderTooLong("receipt", 16))
    );
    let out = drain(&mut s, t(1));
    assert_eq!(out[0].get("receipt-id"), None);
}

#[test]
fn an_errors_receipt_waits_behind_earlier_receipts() {
    let mut s = connected(SessionConfig::default());
    for (i, r) in [&b"a"[..], b"b"].into_iter().enumerate() {
        let h = [
            Header::new(b"destination", b"/sub/a"),
            Header::new(b"receipt", r),
        ];
        assert_eq!(send(&mut s, t(1), Command::Send, &h), Ok(true), "{i}");
    }
    s.close_with_error(CloseReason::Rejected, "No");
    let out = drain(&mut s, t(1));
    let ids: Vec<_> = out
        .iter()
        .map(|o| (o.command, o.get("receipt-id")))
        .collect();
    assert_eq!(
        ids,
        [
            (Some(Command::Receipt), Some("a")),
            (Some(Command::Error), Some("b")),
        ]
    );
}

#[test]
fn a_supplied_table_sets_the_subscription_limit() {
    let mut s: Session<32, InlineTable<2>> = Session::with_table(
        SessionId::new(1),
        SessionConfig::default(),
        t(0),
        InlineTable::default(),
    );
    let h = [Header::new(b"accept-version", b"1.2")];
    assert!(s.handle_frame(t(0), &connect_frame(&h)).is_ok());
    for id in [&b"a"[..], b"b"] {
        let f = [
            Header::new(b"destination", b"/topic/a"),
            Header::new(b"id", id),
        ];
        assert!(s
            .handle_frame(t(1), &Frame::new(Command::Subscribe, &f, b""))
            .is_ok());
    }
    let f = [
        Header::new(b"destination", b"/topic/a"),
        Header::new(b"id", b"c"),
    ];
    assert_eq!(
        s.handle_frame(t(1), &Frame::new(Command::Subscribe, &f, b""))
            .map(|_| ()),
        Err(ProtocolError::TooManySubscriptions(2))
    );
}

#[test]
fn versions_display_and_parse() {
    assert_eq!(Versions::ALL.to_string(), "1.0,1.1,1.2");
    assert_eq!(
        Versions::parse_accept(b" 1.1 ,junk,1.2"),
        Versions::only(Version::V1_1).with(Version::V1_2)
    );
    assert_eq!(parse_heart_beat(b"10,20"), Some((10, 20)));
    assert_eq!(parse_heart_beat(b"10"), None);
    assert_eq!(parse_heart_beat(b"99999999999,0"), None);
}

#[test]
fn session_ids_print_as_32_hex_digits_and_parse_back() {
    for n in [0, 1, 0x2a, u64::MAX as u128 + 1, u128::MAX] {
        let id = SessionId::new(n);
        assert_eq!(id.get(), n);
        let hex = id.to_hex();
        assert_eq!(std::format!("{id}").as_bytes(), &hex[..]);
        assert_eq!(SessionId::parse_hex(&hex), Some(id));
    }
    assert!(SessionId::new(1 << 64) > SessionId::new(u64::MAX as u128));
    assert_eq!(SessionId::parse_hex(b"2a"), None);
    assert_eq!(
        SessionId::parse_hex(b"0000000000000000000000000000002A"),
        None
    );
    // Two halves, not a u128: holding an id never forces 16-byte alignment.
    assert_eq!(core::mem::align_of::<SessionId>(), 8);
}
