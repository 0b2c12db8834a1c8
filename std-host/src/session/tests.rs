use stomp_relay_codec::{Command, Decoded, Decoder, Frame, Header, Status, Version};
use stomp_relay_core::session::{AckMode, Event, ProtocolError, SessionConfig};
use stomp_relay_core::{Instant, Session, SessionId as CoreSessionId};

use super::receive::decoder_limits;
use super::table::Subscriptions;
use super::{CoreSession, Driver};

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn connected() -> CoreSession {
    let mut s = CoreSession::new(CoreSessionId::new(1), SessionConfig::default(), t(0));
    let hs = [Header::new(b"accept-version", b"1.2")];
    assert!(matches!(
        s.handle_frame(t(0), &Frame::new(Command::Connect, &hs, b"")),
        Ok(Some(Event::Connect(_)))
    ));
    s
}

fn frame(s: &mut CoreSession, cmd: Command, hs: &[Header<'_>]) -> Result<(), ProtocolError> {
    s.handle_frame(t(1), &Frame::new(cmd, hs, b"")).map(|_| ())
}

fn subscribe(s: &mut CoreSession, id: &[u8], ack: &[u8]) -> Result<(), ProtocolError> {
    let hs = [
        Header::new(b"destination", b"/sub/a"),
        Header::new(b"id", id),
        Header::new(b"ack", ack),
    ];
    frame(s, Command::Subscribe, &hs)
}

#[test]
fn idle_session_state_stays_within_budget() {
    // Budget: at most 8 KiB RSS per idle WebSocket session (issue 4), of which the
    // transport (tungstenite buffers, hyper upgrade) takes most. The session is
    // boxed, so its size is paid per connection; relay-core's inline table alone
    // would be ~2 KiB more.
    assert!(
        std::mem::size_of::<CoreSession>() <= 1_000,
        "{}",
        std::mem::size_of::<CoreSession>()
    );
    assert!(std::mem::size_of::<CoreSession>() + 2_000 < std::mem::size_of::<Session<32>>());
    assert!(std::mem::size_of::<Driver>() <= 256);
    assert!(std::mem::size_of::<Subscriptions>() <= 24);
}

#[test]
fn heap_table_keeps_the_session_subscription_rules() {
    // No cap of its own (auth's --max-subscriptions guard is the limit): well past
    // relay-core's inline 32 and the default 1 000.
    let mut s = connected();
    for i in 0..2_000 {
        let ack: &[u8] = if i == 3 {
            b"client-individual"
        } else {
            b"auto"
        };
        subscribe(&mut s, format!("sub-{i}").as_bytes(), ack).unwrap();
    }
    assert_eq!(s.subscription_count(), 2_000);
    assert_eq!(s.subscription(b"sub-3"), Some(AckMode::ClientIndividual));
    assert_eq!(s.subscription(b"sub-4"), Some(AckMode::Auto));
    assert_eq!(
        s.subscriptions().next().map(|(id, _)| id),
        Some(&b"sub-0"[..])
    );

    let mut s = connected();
    subscribe(&mut s, b"a", b"client").unwrap();
    // An escaped id on the wire (1.2 `\c` is `:`) names the subscription by its
    // unescaped value, in SUBSCRIBE and UNSUBSCRIBE alike.
    let dec = Decoder::with_limits(Version::V1_2, decoder_limits(64 * 1024));
    let mut hs = [Header::EMPTY; 8];
    let wire = b"SUBSCRIBE\nid:b\\cc\ndestination:/sub/b\n\n\0";
    let Ok(Status::Complete((Decoded::Frame(f), _))) = dec.decode(wire, &mut hs) else {
        panic!("SUBSCRIBE did not decode");
    };
    s.handle_frame(t(1), &f).unwrap();
    assert_eq!(s.subscription(b"b:c"), Some(AckMode::Auto));
    let mut hs = [Header::EMPTY; 8];
    let wire = b"UNSUBSCRIBE\nid:b\\cc\n\n\0";
    let Ok(Status::Complete((Decoded::Frame(f), _))) = dec.decode(wire, &mut hs) else {
        panic!("UNSUBSCRIBE did not decode");
    };
    match s.handle_frame(t(1), &f) {
        Ok(Some(Event::Unsubscribe { id })) => assert_eq!(id, b"b:c"),
        other => panic!("{other:?}"),
    }
    frame(&mut s, Command::Unsubscribe, &[Header::new(b"id", b"a")]).unwrap();
    assert_eq!(s.subscription_count(), 0);
    // The id is free again; using it twice is not.
    subscribe(&mut s, b"a", b"auto").unwrap();
    assert_eq!(
        subscribe(&mut s, b"a", b"auto"),
        Err(ProtocolError::DuplicateSubscription)
    );

    let mut s = connected();
    assert_eq!(
        frame(&mut s, Command::Unsubscribe, &[Header::new(b"id", b"nope")]),
        Err(ProtocolError::UnknownSubscription)
    );
}
