//! User destinations on two instances sharing one broker (issue 19.1): a private
//! message reaches its user and nobody else, also after an instance restart, and no
//! client can subscribe to another session's resolved user queue by name.

use super::*;

/// A client logged in as `user`, with the session id its CONNECTED names.
async fn login(srv: &TestServer, user: &str) -> (Client, String) {
    let mut c = Client::open(&srv.ws_url(), &["v12.stomp"]).await;
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
    let id = f.header("session").expect("session header").to_owned();
    (c, id)
}

/// `from` sends `n` private messages to `to`'s `queue`; `to` (subscribed there) must
/// get exactly those, and `other` (subscribed to its own) none of them.
async fn exchange(
    from: &mut Client,
    to: (&str, &mut Client),
    other: (&str, &mut Client),
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
    (bob, alice): (&mut Client, &mut Client),
    (dave, carol): (&mut Client, &mut Client),
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
    let message = e.header("message").unwrap_or_default();
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

/// `srv`'s `/api/stats` `users` section once `pred` holds for it (bounded).
async fn wait_users(srv: &TestServer, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(srv.http, "/api/stats").await;
        assert_eq!(status, 200, "{body}");
        let stats: serde_json::Value = serde_json::from_str(&body).expect("stats JSON");
        let users = &stats["users"];
        if pred(users) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/api/stats never showed {what}: {users}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `name`'s row in a `users` section: (sessions, instances).
fn user_row(users: &serde_json::Value, name: &str) -> Option<(u64, u64)> {
    users["listed"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)
        .map(|r| {
            (
                r["sessions"].as_u64().unwrap(),
                r["instances"].as_u64().unwrap(),
            )
        })
}

/// Issue 13.1: bob has a session on each instance; a SEND to `/user/bob/...` from
/// either instance, and the publish API's `user` field, reach both, and a user with no
/// session anywhere is dropped and counted. When an instance stops, the other forgets
/// its sessions.
async fn across_instances_scenario(kind: Kind, mode: RelayMode) {
    let _lock = broker_lock().await;
    let queue = format!("notes{}", nonce());
    let user_queue = format!("/user/queue/{queue}");
    let (s1, s2) = relay_pair(kind, mode).await;
    let (mut bob_on_2, _) = login(&s2, "bob").await;
    bob_on_2.subscribe("n", &user_queue).await;
    let (mut bob_on_1, _) = login(&s1, "bob").await;
    bob_on_1.subscribe("n", &user_queue).await;
    for srv in [&s1, &s2] {
        wait_users(srv, "bob on both instances", |u| {
            u["scope"] == "cluster" && user_row(u, "bob") == Some((2, 2))
        })
        .await;
    }

    let (mut alice, _) = login(&s1, "alice").await;
    let (mut carol, _) = login(&s2, "carol").await;
    let to_bob = format!("/user/bob/queue/{queue}");
    for (from, tag) in [(&mut alice, 'a'), (&mut carol, 'c')] {
        for i in 0..3 {
            send(from, &to_bob, &format!("{tag}{i}")).await;
        }
    }
    let body = serde_json::json!({"user": "bob", "destination": format!("/queue/{queue}"), "body": "api", "headers": {"seq": "api"}});
    let r = http_request(
        s2.http,
        "POST",
        "/api/publish",
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body.contains("\"sessions\":2"), "{}", r.body);
    for (name, bob) in [("bob on 1", &mut bob_on_1), ("bob on 2", &mut bob_on_2)] {
        let got = collect(bob, 7, Duration::from_secs(20)).await;
        let mut all = seqs(&got);
        all.sort();
        assert_eq!(all, ["a0", "a1", "a2", "api", "c0", "c1", "c2"], "{name}");
        for f in &got {
            assert_eq!(
                f.header("destination"),
                Some(user_queue.as_str()),
                "{name}: {f:?}"
            );
        }
    }

    // Nobody called dave is connected anywhere: the SEND is acknowledged, not
    // delivered, and counted.
    alice
        .send_frame(
            "SEND",
            &[
                ("destination", &format!("/user/dave/queue/{queue}")),
                ("receipt", "r-dave"),
            ],
            b"lost",
        )
        .await;
    let f = alice.expect_frame().await;
    assert_eq!(f.command.as_str(), "RECEIPT", "{f:?}");
    wait_metric(&s1, "stomp_user_messages_unresolved_total 1").await;
    let r = http_request(
        s1.http,
        "POST",
        "/api/publish",
        &[("content-type", "application/json")],
        br#"{"user": "dave", "destination": "/queue/x", "body": "lost"}"#,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body.contains("\"no_session\""), "{}", r.body);
    wait_metric(&s1, "stomp_user_messages_unresolved_total 2").await;

    // Claiming bob's messages by announcing a session as bob is refused.
    let (mut eve, _) = login(&s2, "eve").await;
    eve.send_frame(
        "SEND",
        &[("destination", "/topic/stomp-relay.user-registry")],
        br#"{"kind":"changes","instance":"x","opened":[],"closed":[]}"#,
    )
    .await;
    let e = eve.expect_frame().await;
    assert_eq!(e.command.as_str(), "ERROR", "{e:?}");
    assert!(
        e.header("message")
            .unwrap_or_default()
            .contains("user registry"),
        "{e:?}"
    );

    // Instance 2 stops: instance 1 hears it is gone and delivers to its own bob only.
    drop((bob_on_2, carol, eve));
    stop(s2).await;
    wait_users(&s1, "bob on instance 1 only", |u| {
        user_row(u, "bob") == Some((1, 1))
    })
    .await;
    send(&mut alice, &format!("/user/bob/queue/{queue}"), "after").await;
    assert_eq!(
        seqs(&collect(&mut bob_on_1, 1, Duration::from_secs(20)).await),
        ["after"]
    );
    stop(s1).await;
}

#[tokio::test]
async fn user_destinations_reach_every_instance_activemq_per_session() {
    across_instances_scenario(Kind::ActiveMq, RelayMode::PerSession).await;
}

#[tokio::test]
async fn user_destinations_reach_every_instance_activemq_shared() {
    across_instances_scenario(Kind::ActiveMq, RelayMode::Shared).await;
}

#[tokio::test]
async fn user_destinations_reach_every_instance_rabbitmq_per_session() {
    across_instances_scenario(Kind::RabbitMq, RelayMode::PerSession).await;
}

#[tokio::test]
async fn user_destinations_reach_every_instance_rabbitmq_shared() {
    across_instances_scenario(Kind::RabbitMq, RelayMode::Shared).await;
}
