//! STOMP over WebSocket against a real server: version negotiation by subprotocol and
//! accept-version, subscribe/send/receive, receipts, application routes, user
//! destinations, ERROR-then-close on bad input, frames split and batched across messages.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test]
async fn each_subprotocol_negotiates_its_version() {
    let srv = start(test_config()).await;
    for (proto, version) in [
        ("v12.stomp", "1.2"),
        ("v11.stomp", "1.1"),
        ("v10.stomp", "1.0"),
    ] {
        let mut c = Client::open(&srv.ws_url(), &[proto]).await;
        assert_eq!(c.protocol.as_deref(), Some(proto));
        c.send_frame(
            "CONNECT",
            &[("accept-version", "1.0,1.1,1.2"), ("host", "h")],
            b"",
        )
        .await;
        let f = c.expect_frame().await;
        assert_eq!(f.command.as_str(), "CONNECTED");
        assert_eq!(f.header("version"), Some(version), "{proto}");
    }
    // Several offered: the highest wins.
    let c = Client::open(&srv.ws_url(), &["v10.stomp", "v11.stomp", "v12.stomp"]).await;
    assert_eq!(c.protocol.as_deref(), Some("v12.stomp"));
    // No subprotocol: accept-version decides.
    let mut c = Client::open(&srv.ws_url(), &[]).await;
    assert_eq!(c.protocol, None);
    c.send_frame("STOMP", &[("accept-version", "1.1"), ("host", "h")], b"")
        .await;
    assert_eq!(c.expect_frame().await.header("version"), Some("1.1"));
    // No subprotocol and no accept-version: STOMP 1.0.
    let mut c = Client::open(&srv.ws_url(), &[]).await;
    c.send_frame("CONNECT", &[], b"").await;
    assert_eq!(c.expect_frame().await.header("version"), Some("1.0"));
}

#[tokio::test]
async fn subscribe_send_receive_with_receipts() {
    let srv = start(test_config()).await;
    let mut a = Client::connected(&srv.ws_url(), &[]).await;
    let mut b = Client::connected(&srv.ws_url(), &[]).await;
    a.subscribe("s1", "/sub/chat").await;
    b.send_frame(
        "SEND",
        &[
            ("destination", "/sub/chat"),
            ("receipt", "r1"),
            ("content-type", "text/plain"),
            ("x-custom", "yes"),
        ],
        b"hello",
    )
    .await;
    let r = b.expect_frame().await;
    assert_eq!(r.command.as_str(), "RECEIPT");
    assert_eq!(r.header("receipt-id"), Some("r1"));
    let m = a.expect_frame().await;
    assert_eq!(m.command.as_str(), "MESSAGE");
    assert_eq!(m.header("destination"), Some("/sub/chat"));
    assert_eq!(m.header("subscription"), Some("s1"));
    assert_eq!(m.header("content-type"), Some("text/plain"));
    assert_eq!(m.header("x-custom"), Some("yes"));
    assert!(m.header("message-id").is_some());
    assert!(m.header("receipt").is_none());
    assert_eq!(&m.body[..], b"hello");

    // UNSUBSCRIBE: no more deliveries.
    a.send_frame("UNSUBSCRIBE", &[("id", "s1"), ("receipt", "u1")], b"")
        .await;
    assert_eq!(a.expect_frame().await.header("receipt-id"), Some("u1"));
    b.send_frame("SEND", &[("destination", "/sub/chat")], b"after")
        .await;
    assert!(a.next_event(Duration::from_millis(300)).await.is_none());

    // DISCONNECT with receipt: RECEIPT, then a normal close.
    a.send_frame("DISCONNECT", &[("receipt", "bye")], b"").await;
    assert_eq!(a.expect_frame().await.header("receipt-id"), Some("bye"));
    assert_eq!(a.expect_close().await, Some(1000));
}

#[tokio::test]
async fn app_prefix_routes_to_broker_prefix() {
    let srv = start(test_config()).await;
    let mut a = Client::connected(&srv.ws_url(), &[]).await;
    a.subscribe("1", "/sub/room/7").await;
    a.send_frame("SEND", &[("destination", "/pub/room/7")], b"via app")
        .await;
    let m = a.expect_frame().await;
    assert_eq!(m.header("destination"), Some("/sub/room/7"));
    assert_eq!(&m.body[..], b"via app");
}

#[tokio::test]
async fn pattern_subscriptions_match() {
    let srv = start(test_config()).await;
    let mut a = Client::connected(&srv.ws_url(), &[]).await;
    a.subscribe("p", "/sub/chat/**").await;
    a.send_frame("SEND", &[("destination", "/sub/chat/x/y")], b"deep")
        .await;
    let m = a.expect_frame().await;
    assert_eq!(m.header("destination"), Some("/sub/chat/x/y"));
    assert_eq!(m.header("subscription"), Some("p"));
}

#[tokio::test]
async fn user_destinations_reach_every_session_of_the_user() {
    let srv = start(test_config()).await;
    let mut bob1 = Client::connected(&srv.ws_url(), &[("login", "bob")]).await;
    let mut bob2 = Client::connected(&srv.ws_url(), &[("login", "bob")]).await;
    let mut eve = Client::connected(&srv.ws_url(), &[("login", "eve")]).await;
    bob1.subscribe("q", "/user/queue/inbox").await;
    bob2.subscribe("q", "/user/queue/inbox").await;
    eve.subscribe("q", "/user/queue/inbox").await;
    eve.send_frame(
        "SEND",
        &[("destination", "/user/bob/queue/inbox")],
        b"hi bob",
    )
    .await;
    for c in [&mut bob1, &mut bob2] {
        let m = c.expect_frame().await;
        assert_eq!(m.header("destination"), Some("/user/queue/inbox"));
        assert_eq!(&m.body[..], b"hi bob");
    }
    assert!(eve.next_event(Duration::from_millis(300)).await.is_none());
    // From the application side too.
    srv.publisher
        .send_to_user("eve", "/queue/inbox", &[], "from app")
        .unwrap();
    let m = eve.expect_frame().await;
    assert_eq!(&m.body[..], b"from app");
    assert_eq!(m.header("destination"), Some("/user/queue/inbox"));
}

#[tokio::test]
async fn another_sessions_user_queue_cannot_be_subscribed_by_name() {
    let srv = start(test_config()).await;
    let mut bob = Client::open(&srv.ws_url(), &["v12.stomp"]).await;
    bob.send_frame(
        "CONNECT",
        &[("accept-version", "1.2"), ("login", "bob")],
        b"",
    )
    .await;
    let connected = bob.expect_frame().await;
    let bob_session = connected.header("session").unwrap().to_owned();
    // 128 random bits, as 32 hex digits: nothing a client could count up to.
    assert_eq!(bob_session.len(), 32, "{bob_session}");
    assert!(bob_session.bytes().all(|b| b.is_ascii_hexdigit()));
    bob.subscribe("q", "/user/queue/inbox").await;

    // Eve knows bob's session and the naming scheme, and names his resolved queue.
    let mut eve = Client::connected(&srv.ws_url(), &[("login", "eve")]).await;
    let theirs = format!("/queue/inbox-user{bob_session}");
    eve.send_frame("SUBSCRIBE", &[("id", "spy"), ("destination", &theirs)], b"")
        .await;
    let e = eve.expect_frame().await;
    assert_eq!(e.command.as_str(), "ERROR", "{e:?}");
    assert_eq!(
        e.header("message"),
        Some(
            format!("Cannot subscribe to {theirs}: it is another session's user destination")
                .as_str()
        )
    );
    assert_eq!(eve.expect_close().await, Some(1002));

    // Bob still gets what is sent to him, and only he does.
    let mut carol = Client::connected(&srv.ws_url(), &[("login", "carol")]).await;
    carol
        .send_frame(
            "SEND",
            &[("destination", "/user/bob/queue/inbox")],
            b"for bob",
        )
        .await;
    let m = bob.expect_frame().await;
    assert_eq!(&m.body[..], b"for bob");
}

#[tokio::test]
async fn no_common_version_gets_error_listing_ours() {
    let srv = start(test_config()).await;
    // No subprotocol, so the CONNECT's accept-version alone decides.
    let mut c = Client::open(&srv.ws_url(), &[]).await;
    c.send_frame("CONNECT", &[("accept-version", "2.1,3.0")], b"")
        .await;
    let e = c.expect_frame().await;
    assert_eq!(e.command.as_str(), "ERROR", "{e:?}");
    assert_eq!(e.header("version"), Some("1.0,1.1,1.2"));
    assert_eq!(
        e.header("message"),
        Some("Supported protocol versions are 1.0,1.1,1.2")
    );
    assert_eq!(c.expect_close().await, Some(1002));
}

#[tokio::test]
async fn transactions_hold_sends_until_commit_in_simple_mode() {
    let srv = start(test_config()).await;
    let mut sub = Client::connected(&srv.ws_url(), &[]).await;
    sub.subscribe("s", "/sub/tx").await;
    let quiet = Duration::from_millis(300);
    let mut c = Client::connected(&srv.ws_url(), &[]).await;
    let send = |tx: &'static str, body: &'static str| {
        (
            vec![("destination", "/sub/tx"), ("transaction", tx)],
            body.as_bytes(),
        )
    };

    c.send_frame("BEGIN", &[("transaction", "t1")], b"").await;
    for body in ["one", "two"] {
        let (h, b) = send("t1", body);
        c.send_frame("SEND", &h, b).await;
    }
    assert!(
        sub.next_event(quiet).await.is_none(),
        "delivered before COMMIT"
    );
    c.send_frame("COMMIT", &[("transaction", "t1"), ("receipt", "c1")], b"")
        .await;
    assert_eq!(c.expect_frame().await.header("receipt-id"), Some("c1"));
    for body in ["one", "two"] {
        let m = sub.expect_frame().await;
        assert_eq!(&m.body[..], body.as_bytes());
        assert!(m.header("transaction").is_none(), "{m:?}");
    }

    c.send_frame("BEGIN", &[("transaction", "t2")], b"").await;
    let (h, b) = send("t2", "aborted");
    c.send_frame("SEND", &h, b).await;
    c.send_frame("ABORT", &[("transaction", "t2"), ("receipt", "a2")], b"")
        .await;
    assert_eq!(c.expect_frame().await.header("receipt-id"), Some("a2"));
    assert!(sub.next_event(quiet).await.is_none(), "ABORT delivered");

    // A session that ends with a transaction open delivers none of it.
    c.send_frame("BEGIN", &[("transaction", "t3")], b"").await;
    let (h, b) = send("t3", "never");
    c.send_frame("SEND", &h, b).await;
    c.send_frame("DISCONNECT", &[("receipt", "bye")], b"").await;
    assert_eq!(c.expect_frame().await.header("receipt-id"), Some("bye"));
    assert!(
        sub.next_event(quiet).await.is_none(),
        "an ended session's open transaction delivered"
    );

    // COMMIT of a transaction never begun, and BEGIN twice: ERROR and close.
    for frames in [
        &[("COMMIT", "t9")][..],
        &[("BEGIN", "t1"), ("BEGIN", "t1")][..],
    ] {
        let mut c = Client::connected(&srv.ws_url(), &[]).await;
        for (command, tx) in frames {
            c.send_frame(command, &[("transaction", tx)], b"").await;
        }
        let e = c.expect_frame().await;
        assert_eq!(e.command.as_str(), "ERROR", "{frames:?}: {e:?}");
        let message = e.header("message").unwrap_or_default();
        assert!(
            message.contains("has not begun") || message.contains("already open"),
            "{message}"
        );
        assert_eq!(c.expect_close().await, Some(1002));
    }
    // The client's mistake, not the broker's.
    let m = srv.metrics().await;
    assert!(
        m.contains("stomp_sessions_closed_abnormally_total{cause=\"protocol_error\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("stomp_sessions_closed_abnormally_total{cause=\"broker_error\"} 0"),
        "{m}"
    );
}

#[tokio::test]
async fn frame_before_connect_gets_error_then_close() {
    let srv = start(test_config()).await;
    let mut c = Client::open(&srv.ws_url(), &["v12.stomp"]).await;
    c.send_frame("SEND", &[("destination", "/sub/x")], b"")
        .await;
    let e = c.expect_frame().await;
    assert_eq!(e.command.as_str(), "ERROR");
    assert!(e.header("message").unwrap().contains("CONNECT"), "{e:?}");
    assert_eq!(c.expect_close().await, Some(1002));
}

#[tokio::test]
async fn malformed_frame_gets_error_then_close() {
    let srv = start(test_config()).await;
    let mut c = Client::connected(&srv.ws_url(), &[]).await;
    c.send_text("SEND\ndestination:/sub/x\nbad header line\n\nbody\0")
        .await;
    let e = c.expect_frame().await;
    assert_eq!(e.command.as_str(), "ERROR");
    assert!(e.header("message").is_some());
    assert_eq!(c.expect_close().await, Some(1002));

    let mut c = Client::connected(&srv.ws_url(), &[]).await;
    c.send_text("BOGUS\n\n\0").await;
    assert_eq!(c.expect_frame().await.command.as_str(), "ERROR");
    assert_eq!(c.expect_close().await, Some(1002));

    // A destination outside every prefix: ERROR naming the prefixes, with the receipt id.
    let mut c = Client::connected(&srv.ws_url(), &[]).await;
    c.send_frame(
        "SEND",
        &[("destination", "/elsewhere"), ("receipt", "r9")],
        b"",
    )
    .await;
    let e = c.expect_frame().await;
    assert_eq!(e.command.as_str(), "ERROR");
    assert!(e.header("message").unwrap().contains("/sub/"), "{e:?}");
    assert_eq!(e.header("receipt-id"), Some("r9"));
    assert_eq!(c.expect_close().await, Some(1002));
}

#[tokio::test]
async fn frames_split_and_batched_across_messages() {
    let srv = start(test_config()).await;
    let mut c = Client::open(&srv.ws_url(), &["v12.stomp"]).await;
    // CONNECT in three pieces, mixing text and binary messages.
    c.send_text("CONN").await;
    c.send_binary(b"ECT\naccept-version:1.2\nhost:h").await;
    c.send_text("\n\n\0").await;
    assert_eq!(c.expect_frame().await.command.as_str(), "CONNECTED");
    // SUBSCRIBE + two SENDs + heart-beats in one message.
    let mut batch = frame_bytes("SUBSCRIBE", &[("id", "1"), ("destination", "/sub/b")], b"");
    batch.extend_from_slice(b"\n\r\n");
    batch.extend(frame_bytes("SEND", &[("destination", "/sub/b")], b"one"));
    batch.extend(frame_bytes("SEND", &[("destination", "/sub/b")], b"two"));
    // ...and the start of a third, finished in the next message.
    let third = frame_bytes(
        "SEND",
        &[("destination", "/sub/b"), ("receipt", "r3")],
        b"three",
    );
    batch.extend_from_slice(&third[..10]);
    c.send_binary(&batch).await;
    c.send_binary(&third[10..]).await;
    let mut bodies = Vec::new();
    while bodies.len() < 3 {
        let f = c.expect_frame().await;
        if f.command.as_str() == "MESSAGE" {
            bodies.push(String::from_utf8(f.body.to_vec()).unwrap());
        }
    }
    assert_eq!(bodies, ["one", "two", "three"]);
}

#[tokio::test]
async fn binary_and_korean_bodies_arrive_intact() {
    let srv = start(test_config()).await;
    let mut a = Client::connected(&srv.ws_url(), &[]).await;
    a.subscribe("1", "/sub/bin").await;
    let binary: Vec<u8> = (0u8..=255).chain([0, 0, 0xff, 0]).collect();
    let len = binary.len().to_string();
    a.send_frame(
        "SEND",
        &[
            ("destination", "/sub/bin"),
            ("content-length", &len),
            ("content-type", "application/octet-stream"),
        ],
        &binary,
    )
    .await;
    let m = a.expect_frame().await;
    assert_eq!(&m.body[..], &binary[..]);
    let korean = "안녕하세요, 세계! 한국어 메시지 ✓";
    a.send_frame(
        "SEND",
        &[
            ("destination", "/sub/bin"),
            ("content-type", "text/plain;charset=UTF-8"),
        ],
        korean.as_bytes(),
    )
    .await;
    let m = a.expect_frame().await;
    assert_eq!(std::str::from_utf8(&m.body).unwrap(), korean);
    // Escaped header values survive too.
    a.send_frame(
        "SEND",
        &[("destination", "/sub/bin"), ("x-k", "키\\c값\\n둘")],
        b"",
    )
    .await;
    let m = a.expect_frame().await;
    assert_eq!(m.header("x-k"), Some("키:값\n둘"));
}

#[tokio::test]
async fn burst_of_200_arrives_in_order() {
    let srv = start(test_config()).await;
    let mut sub = Client::connected(&srv.ws_url(), &[]).await;
    sub.subscribe("1", "/sub/burst").await;
    let mut publ = Client::connected(&srv.ws_url(), &[]).await;
    for i in 0..200 {
        publ.send_frame(
            "SEND",
            &[("destination", "/sub/burst")],
            format!("{i}").as_bytes(),
        )
        .await;
    }
    for i in 0..200 {
        let m = sub.expect_frame().await;
        assert_eq!(String::from_utf8(m.body.to_vec()).unwrap(), i.to_string());
    }
}

#[tokio::test]
async fn oversized_frame_gets_error_naming_the_limit_and_1002() {
    let srv = start(test_config()).await;
    let mut c = Client::connected(&srv.ws_url(), &[]).await;
    let body = vec![b'x'; 70 * 1024];
    c.send_frame("SEND", &[("destination", "/sub/big")], &body)
        .await;
    let e = c.expect_frame().await;
    assert_eq!(e.command.as_str(), "ERROR");
    let msg = e.header("message").unwrap();
    assert!(msg.contains("65536"), "{msg}");
    assert_eq!(c.expect_close().await, Some(1002));

    // The same across several messages: reassembly is bounded too.
    let mut c = Client::connected(&srv.ws_url(), &[]).await;
    c.send_text("SEND\ndestination:/sub/big\n\n").await;
    for _ in 0..5 {
        c.send_text(&"y".repeat(16 * 1024)).await;
    }
    let e = c.expect_frame().await;
    assert_eq!(e.command.as_str(), "ERROR");
    assert_eq!(c.expect_close().await, Some(1002));

    // One WebSocket message over the message limit (4x the frame limit) is refused by
    // the WebSocket layer before it is read, and still gets an ERROR naming the limit.
    let mut c = Client::connected(&srv.ws_url(), &[]).await;
    let mut big = String::from("SEND\ndestination:/sub/big\n\n");
    big.push_str(&"w".repeat(300 * 1024));
    big.push('\0');
    c.send_text(&big).await;
    let e = c.expect_frame().await;
    assert_eq!(e.command.as_str(), "ERROR");
    let msg = e.header("message").unwrap();
    assert!(msg.contains("262144"), "{msg}");
    assert_eq!(c.expect_close().await, Some(1002));

    // A frame just under the limit is fine.
    let mut a = Client::connected(&srv.ws_url(), &[]).await;
    a.subscribe("1", "/sub/big").await;
    let body = vec![b'z'; 60 * 1024];
    a.send_frame("SEND", &[("destination", "/sub/big")], &body)
        .await;
    assert_eq!(a.expect_frame().await.body.len(), body.len());
}
