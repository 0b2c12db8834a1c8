//! User destinations on two instances sharing one broker (issue 19.1): a private
//! message reaches its user and nobody else, also after an instance restart, and no
//! client can subscribe to another session's resolved user queue by name.

use super::*;

/// A client logged in as `user`, with the session id its CONNECTED names.
async fn login(srv: &TestServer, user: &str) -> (WsClient, String) {
    let mut c = WsClient::open(&srv.ws_url(), &["v12.stomp"]).await;
    c.send_frame(
        "CONNECT",
        &[
            ("accept-version", "1.2"),
            ("host", "localhost"),
            ("login", user),
        ],
        b"",
    )
    .await;
    let f = c.expect_frame().await;
    assert_eq!(f.command.as_str(), "CONNECTED", "{f:?}");
    let id = f.header_str("session").expect("session header").to_owned();
    (c, id)
}

/// `from` sends `n` private messages to `to`'s `queue`; `to` (subscribed there) must
/// get exactly those, and `other` (subscribed to its own) none of them.
async fn exchange(
    from: &mut WsClient,
    to: (&str, &mut WsClient),
    other: (&str, &mut WsClient),
    queue: &str,
    n: usize,
) {
    let (name, receiver) = to;
    for i in 0..n {
        send(
            from,
            &format!("/user/{name}/queue/{queue}"),
            &format!("{name}-{i}"),
        )
        .await;
    }
    let got = seqs(&collect(receiver, n, Duration::from_secs(20)).await);
    let want: Vec<String> = (0..n).map(|i| format!("{name}-{i}")).collect();
    assert_eq!(
        got, want,
        "{name} must get exactly its {n} private messages"
    );
    let (other_name, other) = other;
    while let Some(e) = other.next_event(QUIET).await {
        match e {
            Event::HeartBeat => {}
            e => panic!("{other_name} received something meant for {name}: {e:?}"),
        }
    }
}

/// bob (beside alice) writes to alice and dave (beside carol) to carol; each gets
/// only their own.
async fn both_ways(
    queue: &str,
    (bob, alice): (&mut WsClient, &mut WsClient),
    (dave, carol): (&mut WsClient, &mut WsClient),
) {
    exchange(
        bob,
        ("alice", &mut *alice),
        ("carol", &mut *carol),
        queue,
        6,
    )
    .await;
    exchange(dave, ("carol", carol), ("alice", alice), queue, 6).await;
}

async fn private_scenario(kind: Kind, mode: RelayMode) {
    let _lock = broker_lock().await;
    let queue = format!("reply{}", nonce());
    let user_queue = format!("/user/queue/{queue}");
    let (s1, s2) = relay_pair(kind, mode).await;
    // Each is the first session of its instance, as in the report.
    let (mut alice, alice_id) = login(&s1, "alice").await;
    let (mut carol, carol_id) = login(&s2, "carol").await;
    assert_ne!(alice_id, carol_id, "two instances gave out one session id");
    alice.subscribe("r", &user_queue).await;
    carol.subscribe("r", &user_queue).await;
    let (mut bob, _) = login(&s1, "bob").await;
    let (mut dave, _) = login(&s2, "dave").await;
    both_ways(&queue, (&mut bob, &mut alice), (&mut dave, &mut carol)).await;

    // Knowing alice's id and the naming scheme is not enough to read her queue.
    let theirs = format!("/queue/{queue}-user{alice_id}");
    let (mut eve, _) = login(&s2, "eve").await;
    eve.send_frame("SUBSCRIBE", &[("id", "spy"), ("destination", &theirs)], b"")
        .await;
    let e = eve.expect_frame().await;
    assert_eq!(e.command.as_str(), "ERROR", "{e:?}");
    let message = e.header_str("message").unwrap_or_default();
    assert!(
        message.contains(&theirs),
        "the ERROR names the destination: {message}"
    );

    // Instance 2 restarts: its new sessions must not take over anyone's queue either.
    drop((carol, dave, eve));
    stop(s2).await;
    let s2 = start(relay_config(kind, mode, vec![addr(kind.port())])).await;
    wait_ready(&s2, 200, RECOVER).await;
    let (mut carol, carol_again) = login(&s2, "carol").await;
    assert_ne!(carol_again, alice_id);
    assert_ne!(
        carol_again, carol_id,
        "a restarted instance reused a session id"
    );
    carol.subscribe("r", &user_queue).await;
    let (mut dave, _) = login(&s2, "dave").await;
    both_ways(&queue, (&mut bob, &mut alice), (&mut dave, &mut carol)).await;
    stop(s1).await;
    stop(s2).await;
}

#[tokio::test]
async fn private_messages_stay_private_activemq_per_session() {
    private_scenario(Kind::ActiveMq, RelayMode::PerSession).await;
}

#[tokio::test]
async fn private_messages_stay_private_activemq_shared() {
    private_scenario(Kind::ActiveMq, RelayMode::Shared).await;
}

#[tokio::test]
async fn private_messages_stay_private_rabbitmq_per_session() {
    private_scenario(Kind::RabbitMq, RelayMode::PerSession).await;
}

#[tokio::test]
async fn private_messages_stay_private_rabbitmq_shared() {
    private_scenario(Kind::RabbitMq, RelayMode::Shared).await;
}
