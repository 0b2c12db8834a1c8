//! What crosses the relay unchanged or not at all: headers and binary bodies, relay
//! credentials in broker errors, transactions per session, durable subscriptions, and a
//! bad client SEND that must cost other clients nothing.

use super::*;

/// `content-length` and custom headers pass through the relay untouched, and a body
/// with NUL bytes survives (ActiveMQ chooses BytesMessage on `content-length`).
#[tokio::test]
async fn headers_and_binary_bodies_pass_through() {
    // (RabbitMQ copies a SEND's `receipt` into its MESSAGEs: issue 13.3.)
    let _lock = broker_lock().await;
    for kind in [Kind::ActiveMq, Kind::RabbitMq] {
        for mode in [RelayMode::PerSession, RelayMode::Shared] {
            let (s1, s2) = relay_pair(kind, mode).await;
            let mut a = Client::connected(&s1.ws_url(), &[]).await;
            let mut b = Client::connected(&s2.ws_url(), &[]).await;
            a.subscribe("a1", "/sub/bin").await;
            let body = b"\x00bin\x00ary \xed\x95\x9c\xea\xb5\xad\x00";
            let len = body.len().to_string();
            b.send_frame(
                "SEND",
                &[
                    ("destination", "/sub/bin"),
                    ("content-length", &len),
                    ("x-trace", "abc:123"),
                    ("seq", "bin-0"),
                    ("receipt", "sender-r1"),
                ],
                body,
            )
            .await;
            let got = collect(&mut a, 1, Duration::from_secs(10)).await;
            // Exactly the sender's headers (its `receipt` was for it alone), the
            // server's own, and what docs/relay.md lists as the broker's.
            let mut names: Vec<String> = got[0].headers.iter().map(|(n, _)| n.clone()).collect();
            names.sort();
            let mut want = vec![
                "content-length",
                "destination",
                "message-id",
                "seq",
                "subscription",
                "x-trace",
            ];
            want.extend(match kind {
                Kind::ActiveMq => &["expires", "priority", "timestamp"][..],
                Kind::RabbitMq => &["redelivered"][..],
            });
            want.sort();
            assert_eq!(names, want, "{kind:?} {mode:?}");
            assert_eq!(&got[0].body[..], body, "{kind:?} {mode:?}");
            assert_eq!(
                got[0].header("x-trace"),
                Some("abc:123"),
                "{kind:?} {mode:?}"
            );
            stop(s1).await;
            stop(s2).await;
        }
    }
}

/// Log lines written while a test runs (tracing on the test's current-thread runtime).
#[derive(Clone, Default)]
struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The relay's broker credentials never reach a client or the log. ActiveMQ echoes an
/// unknown `transaction` id in its ERROR (`Invalid transaction id: <id>`), so a client
/// that sends the relay passcode as a transaction id would read it back unless the
/// relay redacts broker ERRORs: per-session mode forwards the ERROR to the client, shared
/// mode logs it for the shared connection.
#[tokio::test]
async fn broker_errors_never_echo_relay_credentials() {
    let _lock = broker_lock().await;
    require_broker(Kind::ActiveMq);
    let logs = LogCapture::default();
    let sink = logs.clone();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish(),
    );
    let secret = format!("relay-pw-{}", nonce());
    let system_secret = format!("system-pw-{}", nonce());
    let relay_with = |mode| {
        let mut c = relay_config(Kind::ActiveMq, mode, vec![addr(ACTIVEMQ)]);
        c.relay_login = format!("relay-user-{}", nonce());
        c.relay_passcode = secret.as_str().into();
        c.system_passcode = system_secret.as_str().into();
        c
    };

    let config = relay_with(RelayMode::PerSession);
    let login = config.relay_login.clone();
    let srv = start(config).await;
    wait_ready(&srv, 200, RECOVER).await;
    for probe in [&secret, &login, &system_secret] {
        let mut c = Client::connected(&srv.ws_url(), &[]).await;
        c.send_frame(
            "SEND",
            &[("destination", "/sub/redact"), ("transaction", probe)],
            b"x",
        )
        .await;
        let err = c.expect_frame().await;
        assert_eq!(err.command.as_str(), "ERROR", "{err:?}");
        let shown = format!("{:?} {}", err.headers, String::from_utf8_lossy(&err.body));
        assert!(
            shown.contains("Invalid transaction id") && shown.contains("***"),
            "the broker's echo arrives, masked: {shown}"
        );
        assert!(!shown.contains(probe.as_str()), "leaked {probe}: {shown}");
    }
    stop(srv).await;

    // Shared mode answers an unknown transaction itself (see
    // `shared_mode_keeps_transactions_per_session`), so the probe never reaches the
    // broker, and its ERROR does not echo the id either.
    let srv = start(relay_with(RelayMode::Shared)).await;
    wait_ready(&srv, 200, RECOVER).await;
    let mut c = Client::connected(&srv.ws_url(), &[]).await;
    c.send_frame(
        "SEND",
        &[("destination", "/sub/redact"), ("transaction", &secret)],
        b"x",
    )
    .await;
    let err = c.expect_frame().await;
    assert_eq!(err.command.as_str(), "ERROR", "{err:?}");
    let message = err.header("message").unwrap_or("").to_owned();
    assert!(message.contains("has not begun"), "{message}");
    assert!(!format!("{err:?}").contains(secret.as_str()), "{err:?}");
    stop(srv).await;
    let text = logs.text();
    for s in [&secret, &system_secret] {
        assert!(!text.contains(s.as_str()), "log leaked {s}:\n{text}");
    }
}

/// Shared mode, real ActiveMQ: transactions are per session on the one connection all
/// clients share. A committed transaction delivers; one left open by a client that goes
/// away delivers nothing; a frame naming a transaction the session never began (or a
/// second BEGIN) gets an ERROR from the relay, where before it went to the broker and
/// the client heard nothing; the other clients carry on.
#[tokio::test]
async fn shared_mode_keeps_transactions_per_session() {
    let _lock = broker_lock().await;
    let srv = relay_one(Kind::ActiveMq, RelayMode::Shared).await;
    let dest = format!("/sub/tx-{}", nonce());
    let mut reader = Client::connected(&srv.ws_url(), &[]).await;
    reader.subscribe("1", &dest).await;

    // Left open, then the client goes away: aborted, never delivered.
    let mut quitter = Client::connected(&srv.ws_url(), &[]).await;
    send_in_transaction(&mut quitter, &dest, "t1", "open").await;
    drop(quitter);

    // Committed: delivered.
    let mut writer = Client::connected(&srv.ws_url(), &[]).await;
    send_in_transaction(&mut writer, &dest, "t1", "committed").await;
    writer
        .send_frame("COMMIT", &[("transaction", "t1")], b"")
        .await;
    assert_eq!(seqs(&collect(&mut reader, 1, RECOVER).await), ["committed"]);

    // Unknown transactions and a second BEGIN: an ERROR from the relay, then close.
    for (command, tx) in [("SEND", "never"), ("COMMIT", "never"), ("ABORT", "t1")] {
        let mut bad = Client::connected(&srv.ws_url(), &[]).await;
        bad.send_frame(command, &[("destination", &dest), ("transaction", tx)], b"")
            .await;
        let err = bad.expect_frame().await;
        assert_eq!(err.command.as_str(), "ERROR", "{command}: {err:?}");
        let message = err.header("message").unwrap_or("");
        assert_eq!(
            message,
            format!("{command} names a transaction this session has not begun")
        );
    }
    let mut twice = Client::connected(&srv.ws_url(), &[]).await;
    twice
        .send_frame("BEGIN", &[("transaction", "t")], b"")
        .await;
    twice
        .send_frame("BEGIN", &[("transaction", "t")], b"")
        .await;
    let err = twice.expect_frame().await;
    assert_eq!(
        err.header("message"),
        Some("BEGIN names a transaction that is already open"),
        "{err:?}"
    );

    // The reader was not disturbed and keeps receiving.
    let mut writer = Client::connected(&srv.ws_url(), &[]).await;
    send(&mut writer, &dest, "after").await;
    assert_eq!(seqs(&collect(&mut reader, 1, RECOVER).await), ["after"]);
    stop(srv).await;
}

/// Per-session mode passes the client's `client-id` upstream, so ActiveMQ durable topic
/// subscriptions work through the relay: a message published while the durable
/// subscriber is away is waiting when it comes back under the same id and name.
#[tokio::test]
async fn durable_subscription_survives_an_absence_per_session() {
    let _lock = broker_lock().await;
    let srv = relay_one(Kind::ActiveMq, RelayMode::PerSession).await;
    let n = nonce();
    let client_id = format!("durable-{n}");
    let dest = format!("/sub/durable-{n}");
    let mut away = Client::connected(&srv.ws_url(), &[("client-id", &client_id)]).await;
    subscribe_durable(&mut away, &dest).await;
    away.send_frame("DISCONNECT", &[("receipt", "bye")], b"")
        .await;
    assert_eq!(away.expect_frame().await.command.as_str(), "RECEIPT");
    drop(away);
    // Its broker connection is gone (only the system connection is left): the durable
    // subscription is inactive, not removed.
    wait_metric(&srv, "stomp_relay_sessions 1").await;

    let mut writer = Client::connected(&srv.ws_url(), &[]).await;
    send(&mut writer, &dest, "while-away").await;
    writer
        .send_frame("DISCONNECT", &[("receipt", "sent")], b"")
        .await;
    assert_eq!(writer.expect_frame().await.command.as_str(), "RECEIPT");

    let mut back = Client::connected(&srv.ws_url(), &[("client-id", &client_id)]).await;
    subscribe_durable(&mut back, &dest).await;
    assert_eq!(seqs(&collect(&mut back, 1, RECOVER).await), ["while-away"]);
    // Leave nothing behind at the broker.
    back.send_frame(
        "UNSUBSCRIBE",
        &[("id", "1"), ("activemq.subscriptionName", "keep")],
        b"",
    )
    .await;
    stop(srv).await;
}

/// BEGIN `tx`, then SEND `seq` to `dest` inside it.
async fn send_in_transaction(c: &mut Client, dest: &str, tx: &str, seq: &str) {
    c.send_frame("BEGIN", &[("transaction", tx)], b"").await;
    let headers = [("destination", dest), ("transaction", tx), ("seq", seq)];
    c.send_frame("SEND", &headers, seq.as_bytes()).await;
}

/// A durable ActiveMQ SUBSCRIBE (subscription name `keep`), waited for by receipt.
async fn subscribe_durable(c: &mut Client, dest: &str) {
    let durable = [
        ("id", "1"),
        ("destination", dest),
        ("activemq.subscriptionName", "keep"),
        ("receipt", "subscribed"),
    ];
    c.send_frame("SUBSCRIBE", &durable, b"").await;
    let r = c.expect_frame().await;
    assert_eq!(r.command.as_str(), "RECEIPT", "{r:?}");
}

/// Shared mode, real RabbitMQ, which answers a bad SEND (`expiration:abc`) with ERROR and
/// closes that connection. Client frames travel on the shared publisher connection, so
/// only it reconnects: the subscriptions stay up and a reader on that instance misses
/// nothing the other instance publishes meanwhile; a frame another client sent right
/// behind the bad one is sent again after the reconnect; the sender of the bad frame
/// gets the broker's reason as an ERROR and is closed. And since client frames wait for the
/// broker to confirm a new upstream SUBSCRIBE, a client that subscribes (no receipt) and
/// at once sends to the same new destination still receives its own message.
#[tokio::test]
async fn a_bad_send_costs_other_clients_nothing_shared() {
    let _lock = broker_lock().await;
    let (s1, s2) = relay_pair(Kind::RabbitMq, RelayMode::Shared).await;
    let dest = format!("/sub/isolation-{}", nonce());
    let mut reader = Client::connected(&s1.ws_url(), &[]).await;
    reader.subscribe("1", &dest).await;
    let mut writer = Client::connected(&s2.ws_url(), &[]).await;

    let mut bad = Client::connected(&s1.ws_url(), &[]).await;
    let mut neighbour = Client::connected(&s1.ws_url(), &[]).await;
    bad.send_frame(
        "SEND",
        &[("destination", &dest), ("expiration", "abc")],
        b"refused by the broker",
    )
    .await;
    // Right behind it on the same publisher connection, which the broker closes.
    send(&mut neighbour, &dest, "right-behind").await;
    // Published from the other instance over longer than a reconnect takes (the backoff
    // alone starts at 200 ms).
    let mut want = Vec::new();
    for i in 0..20 {
        let seq = format!("m{i}");
        send(&mut writer, &dest, &seq).await;
        want.push(seq);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut got = seqs(&collect(&mut reader, 21, RECOVER).await);
    let behind = got.iter().position(|s| s == "right-behind");
    assert!(behind.is_some(), "the neighbour's SEND was lost: {got:?}");
    got.remove(behind.unwrap());
    assert_eq!(got, want);
    // The client whose frame the broker refused hears why, and is closed.
    let err = bad.expect_frame().await;
    assert_eq!(err.command.as_str(), "ERROR", "{err:?}");
    let message = err.header("message").unwrap_or("");
    assert!(
        message.starts_with("Broker refused the frame: precondition_failed")
            && message.contains("invalid expiration"),
        "{message}"
    );
    assert_eq!(bad.expect_close().await, Some(1002));

    // The publisher is back; subscribe-then-send on one new destination, no receipt.
    let own = format!("/sub/own-{}", nonce());
    let mut c = Client::connected(&s1.ws_url(), &[]).await;
    c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", &own)], b"")
        .await;
    send(&mut c, &own, "own").await;
    assert_eq!(seqs(&collect(&mut c, 1, RECOVER).await), ["own"]);
    stop(s1).await;
    stop(s2).await;
}
