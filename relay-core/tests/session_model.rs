//! Property tests: random client frame sequences (with timeouts, heart-beats and
//! decode errors mixed in) against a simple model of what the session must do.
//!
//! Checked after every step: nothing but ERROR goes out before CONNECTED; CONNECTED
//! at most once; nothing after ERROR; the subscription table equals the model's; every
//! accepted frame with a `receipt` gets exactly its RECEIPT; no panic.

use std::collections::BTreeMap;

use proptest::prelude::*;
use stomp_relay_core::codec::{
    Command, DecodeError, Decoded, Decoder, Frame, Header, Limits, Status, Version,
};
use stomp_relay_core::session::{AckMode, Session, SessionConfig, SessionId, MAX_CONTROL_FRAME};
use stomp_relay_core::Instant;

const CAP: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Frame {
        command: Command,
        id: Option<u8>,
        destination: bool,
        ack: Option<&'static str>,
        receipt: Option<u8>,
        accept: Option<&'static str>,
    },
    Heartbeat,
    Advance(u64),
    DecodeError,
}

fn op() -> impl Strategy<Value = Op> {
    let commands = prop::sample::select(vec![
        Command::Connect,
        Command::Stomp,
        Command::Send,
        Command::Subscribe,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Disconnect,
        Command::Message,
    ]);
    let frame = (
        commands,
        prop::option::weighted(0.9, 0u8..5),
        prop::bool::weighted(0.9),
        prop::option::of(prop::sample::select(vec![
            "auto",
            "client",
            "client-individual",
            "bogus",
        ])),
        prop::option::of(0u8..50),
        prop::option::weighted(
            0.9,
            prop::sample::select(vec!["1.2", "1.0,1.1,1.2", "1.1", "2.0"]),
        ),
    )
        .prop_map(
            |(command, id, destination, ack, receipt, accept)| Op::Frame {
                command,
                id,
                destination,
                ack,
                receipt,
                accept,
            },
        );
    prop_oneof![
        8 => frame,
        1 => Just(Op::Heartbeat),
        2 => (0u64..40_000).prop_map(Op::Advance),
        1 => Just(Op::DecodeError),
    ]
}

#[derive(Debug, Default)]
struct Model {
    connected: bool,
    version: Option<Version>,
    closed: bool,
    subs: BTreeMap<Vec<u8>, AckMode>,
}

/// What the model expects a frame to do: `Ok(receipt expected)` or `Err(())` (ERROR).
fn expect(m: &Model, op: &Op) -> Result<(), ()> {
    let Op::Frame {
        command,
        id,
        destination,
        ack,
        accept,
        ..
    } = op
    else {
        return Ok(());
    };
    if !m.connected {
        return match (command.is_connect(), accept) {
            (true, Some(a)) if *a != "2.0" => Ok(()),
            (true, None) => Ok(()),
            _ => Err(()),
        };
    }
    match command {
        Command::Connect | Command::Stomp | Command::Message => Err(()),
        Command::Send if !destination => Err(()),
        Command::Subscribe => {
            let Some(key) = sub_key(m, *id, *destination) else {
                return Err(());
            };
            if !destination
                || *ack == Some("bogus")
                || m.subs.contains_key(&key)
                || m.subs.len() == CAP
            {
                return Err(());
            }
            Ok(())
        }
        Command::Unsubscribe => match sub_key(m, *id, *destination) {
            Some(k) if m.subs.contains_key(&k) => Ok(()),
            _ => Err(()),
        },
        // The generator sends `id` but never `message-id` (what 1.0/1.1 need).
        Command::Ack | Command::Nack if m.version == Some(Version::V1_2) => {
            id.map(|_| ()).ok_or(())
        }
        Command::Ack | Command::Nack => Err(()),
        Command::Begin => Err(()), // the generator never sends `transaction`
        _ => Ok(()),
    }
}

/// The subscription key: the id, or in STOMP 1.0 the destination when there is no id.
fn sub_key(m: &Model, id: Option<u8>, destination: bool) -> Option<Vec<u8>> {
    match (id, destination, m.version) {
        (Some(i), _, _) => Some(vec![b'0' + i]),
        (None, true, Some(Version::V1_0)) => Some(b"/topic/x".to_vec()),
        _ => None,
    }
}

fn negotiated(accept: Option<&str>) -> Version {
    match accept {
        None => Version::V1_0,
        Some("1.1") => Version::V1_1,
        Some(_) => Version::V1_2,
    }
}

/// A decoded output frame: command and (name, value) pairs.
type OutFrame = (Command, Vec<(Vec<u8>, Vec<u8>)>);

fn decode_out(buf: &[u8], version: Version) -> Option<OutFrame> {
    let mut hs = [Header::EMPTY; 16];
    match Decoder::with_limits(version, Limits::UNLIMITED)
        .decode(buf, &mut hs)
        .unwrap()
    {
        Status::Complete((Decoded::Frame(f), _)) => Some((
            f.command,
            f.header_pairs()
                .map(|(k, v)| (k.bytes().collect(), v.bytes().collect()))
                .collect(),
        )),
        Status::Complete((Decoded::HeartBeat, _)) => None,
        Status::Partial => panic!("partial output frame"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn session_follows_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let mut s: Session<CAP> = Session::new(SessionId::new(1), SessionConfig::default(), Instant::ZERO);
        let mut m = Model::default();
        let mut now = 0u64;
        let mut sent_connected = 0;
        let mut sent_error = false;
        for op in &ops {
            let expected = if m.closed { Ok(()) } else { expect(&m, op) };
            let mut want_receipt = None;
            match op {
                Op::Frame { command, id, destination, ack, receipt, accept } => {
                    let idb = id.map(|i| [b'0' + i]);
                    let rb = receipt.map(|r| std::format!("r{r}"));
                    let mut h: Vec<Header<'_>> = Vec::new();
                    if let Some(a) = accept {
                        h.push(Header::new(b"accept-version", a.as_bytes()));
                        h.push(Header::new(b"heart-beat", b"1000,1000"));
                    }
                    if *destination {
                        h.push(Header::new(b"destination", b"/topic/x"));
                    }
                    if let Some(i) = &idb {
                        h.push(Header::new(b"id", i));
                    }
                    if let Some(a) = ack {
                        h.push(Header::new(b"ack", a.as_bytes()));
                    }
                    if let Some(r) = &rb {
                        h.push(Header::new(b"receipt", r.as_bytes()));
                    }
                    let f = Frame::new(*command, &h, b"");
                    let r = s.handle_frame(Instant::from_millis(now), &f).map(|e| e.is_some());
                    if m.closed {
                        prop_assert_eq!(r, Ok(false));
                    } else {
                        prop_assert_eq!(r.is_ok(), expected.is_ok(), "{:?} gave {:?}", op, r);
                        match expected {
                            Ok(()) => {
                                if m.connected && !command.is_connect() {
                                    want_receipt = rb.clone();
                                }
                                match command {
                                    _ if command.is_connect() => {
                                        m.connected = true;
                                        m.version = Some(negotiated(*accept));
                                    }
                                    Command::Subscribe => {
                                        let mode = match ack { Some("client") => AckMode::Client, Some("client-individual") => AckMode::ClientIndividual, _ => AckMode::Auto };
                                        m.subs.insert(sub_key(&m, *id, *destination).unwrap(), mode);
                                    }
                                    Command::Unsubscribe => { m.subs.remove(&sub_key(&m, *id, *destination).unwrap()); }
                                    Command::Disconnect => m.closed = true,
                                    _ => {}
                                }
                            }
                            Err(()) => m.closed = true,
                        }
                    }
                }
                Op::Heartbeat => s.handle_heartbeat(Instant::from_millis(now)),
                Op::Advance(ms) => {
                    now += ms;
                    // Run every timer that is due, as a host loop would.
                    while let Some(d) = s.poll_timeout() {
                        if d > Instant::from_millis(now) { break; }
                        s.handle_timeout(d);
                        let mut buf = [0u8; MAX_CONTROL_FRAME];
                        while let Some(n) = s.poll_transmit(d, &mut buf).unwrap() {
                            let out = decode_out(&buf[..n], s.version());
                            if let Some((c, _)) = out {
                                prop_assert!(c == Command::Error, "timer produced {c}");
                                prop_assert!(!sent_error);
                                sent_error = true;
                                m.closed = true;
                            } else {
                                prop_assert!(sent_connected == 1 && !sent_error, "heart-beat before CONNECTED or after ERROR");
                            }
                        }
                    }
                }
                Op::DecodeError => {
                    if !m.closed {
                        m.closed = true;
                    }
                    s.handle_decode_error(Instant::from_millis(now), &DecodeError::InvalidCommand);
                }
            }
            let mut buf = [0u8; MAX_CONTROL_FRAME];
            let mut receipts = Vec::new();
            while let Some(n) = s.poll_transmit(Instant::from_millis(now), &mut buf).unwrap() {
                prop_assert!(!sent_error, "output after ERROR");
                match decode_out(&buf[..n], s.version()) {
                    Some((Command::Connected, _)) => {
                        prop_assert_eq!(sent_connected, 0);
                        sent_connected += 1;
                    }
                    Some((Command::Error, h)) => {
                        prop_assert!(h.iter().any(|(k, v)| k == b"message" && !v.is_empty()));
                        sent_error = true;
                    }
                    Some((Command::Receipt, h)) => {
                        prop_assert_eq!(sent_connected, 1, "RECEIPT before CONNECTED");
                        receipts.push(h.into_iter().find(|(k, _)| k == b"receipt-id").unwrap().1);
                    }
                    Some((c, _)) => prop_assert!(false, "unexpected {}", c),
                    None => prop_assert!(sent_connected == 1, "heart-beat before CONNECTED"),
                }
            }
            let want: Vec<Vec<u8>> = want_receipt.into_iter().map(String::into_bytes).collect();
            prop_assert_eq!(receipts, want);
            if m.closed {
                prop_assert!(s.is_closed(), "session should be closed after {:?}", op);
            } else {
                let table: BTreeMap<Vec<u8>, AckMode> = s.subscriptions().map(|(i, a)| (i.to_vec(), a)).collect();
                prop_assert_eq!(&table, &m.subs);
            }
        }
    }

    /// Any bytes, split anywhere, through decoder and session: no panic, and the session
    /// output obeys the CONNECTED-first rule.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut s: Session<CAP> = Session::new(SessionId::new(1), SessionConfig::default(), Instant::ZERO);
        let mut rest = &data[..];
        let mut connected = false;
        let mut out = [0u8; MAX_CONTROL_FRAME];
        loop {
            let mut hs = [Header::EMPTY; 16];
            let dec = Decoder::new(s.version());
            match dec.decode(rest, &mut hs) {
                Ok(Status::Complete((Decoded::Frame(f), n))) => {
                    let _ = s.handle_frame(Instant::ZERO, &f);
                    rest = &rest[n..];
                }
                Ok(Status::Complete((Decoded::HeartBeat, n))) => {
                    s.handle_heartbeat(Instant::ZERO);
                    rest = &rest[n..];
                }
                Ok(Status::Partial) => break,
                Err(e) => { s.handle_decode_error(Instant::ZERO, &e); break; }
            }
            while let Some(n) = s.poll_transmit(Instant::ZERO, &mut out).unwrap() {
                match decode_out(&out[..n], s.version()) {
                    Some((Command::Connected, _)) => connected = true,
                    Some((Command::Error, _)) => {}
                    _ => prop_assert!(connected),
                }
            }
            if s.is_closing() { break; }
        }
    }
}
