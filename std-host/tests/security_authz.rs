//! Destination authorization over real sockets: allow/deny rules per command and
//! destination pattern, `if claim ... contains {var}`, first match wins, default deny,
//! ERROR naming destination and command then close (or ERROR only for SEND when so
//! configured), and a denied client receiving nothing from a topic it may not read.

mod security_common;

use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use security_common::*;
use serde_json::json;
use stomp_relay::auth::authorize::parse_rule;
use stomp_relay::auth::OnSendDenied;

const SECRET: &str = "authz-secret";

fn token(sub: &str, rooms: &[&str]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "rooms": rooms, "exp": jsonwebtoken::get_current_timestamp() + 120}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn rules_config(on_send_denied: OnSendDenied) -> stomp_relay::Config {
    let mut c = config();
    c.security.jwt_secret = Some(SECRET.into());
    c.security.on_send_denied = on_send_denied;
    c.security.rules = [
        "deny send /sub/**",
        "allow subscribe /sub/chat/{room} if claim rooms contains {room}",
        "allow send /pub/chat/{room} if claim rooms contains {room}",
        "allow subscribe /sub/public/**",
        "allow any /user/**",
    ]
    .iter()
    .map(|t| parse_rule(t).unwrap())
    .collect();
    c
}

async fn user(r: &Running, name: &str, rooms: &[&str]) -> Client {
    let mut c = Client::tcp(r.tcp).await;
    c.expect_connected(&[("passcode", &token(name, rooms))])
        .await;
    c
}

#[tokio::test]
async fn subscribe_allowed_by_claim_and_denied_without_it() {
    let r = start(rules_config(OnSendDenied::Close)).await;
    let mut alice = user(&r, "alice", &["a"]).await;
    alice.try_subscribe("1", "/sub/chat/a").await.unwrap();
    let err = alice.try_subscribe("2", "/sub/chat/b").await.unwrap_err();
    assert_eq!(err, "Access denied: SUBSCRIBE to /sub/chat/b");
    alice.expect_only_close().await;
}

#[tokio::test]
async fn deny_rule_first_match_wins_and_app_route_allowed() {
    let r = start(rules_config(OnSendDenied::Close)).await;
    let mut reader = user(&r, "reader", &["a"]).await;
    reader.try_subscribe("1", "/sub/chat/a").await.unwrap();
    let mut writer = user(&r, "writer", &["a"]).await;
    // Passing: through the application prefix, to a room in the claim.
    writer
        .send_receipted("/pub/chat/a", "hello via /pub", "s1")
        .await
        .unwrap();
    assert_eq!(
        reader.message(WAIT).await.as_deref(),
        Some("hello via /pub")
    );
    // Failing: straight to the broker destination (deny send /sub/** comes first).
    let err = writer
        .send_receipted("/sub/chat/a", "bypass", "s2")
        .await
        .unwrap_err();
    assert_eq!(err, "Access denied: SEND to /sub/chat/a");
    writer.expect_only_close().await;
    assert_eq!(reader.message(Duration::from_millis(500)).await, None);
}

#[tokio::test]
async fn default_deny_when_no_rule_matches() {
    let r = start(rules_config(OnSendDenied::Close)).await;
    let mut c = user(&r, "x", &["a"]).await;
    // Passing: a rule matches.
    c.try_subscribe("1", "/sub/public/news").await.unwrap();
    // Failing: no rule names /topic/.
    let err = c.try_subscribe("2", "/topic/anything").await.unwrap_err();
    assert_eq!(err, "Access denied: SUBSCRIBE to /topic/anything");
    c.expect_only_close().await;
    // Without rules everything is allowed (zero setup).
    let r = start(config()).await;
    let mut c = Client::tcp(r.tcp).await;
    c.expect_connected(&[]).await;
    c.try_subscribe("1", "/topic/anything").await.unwrap();
    c.send_receipted("/topic/anything", "x", "s").await.unwrap();
}

#[tokio::test]
async fn denied_send_can_answer_error_without_closing() {
    let r = start(rules_config(OnSendDenied::Error)).await;
    let mut reader = user(&r, "reader", &["a"]).await;
    reader.try_subscribe("1", "/sub/chat/a").await.unwrap();
    let mut w = user(&r, "w", &["a"]).await;
    w.send_frame(
        "SEND",
        &[("destination", "/sub/chat/a"), ("receipt", "denied-1")],
        b"bypass",
    )
    .await;
    let f = w.expect_frame().await;
    assert_eq!(f.command.as_str(), "ERROR");
    assert_eq!(
        f.header("message"),
        Some("Access denied: SEND to /sub/chat/a")
    );
    assert_eq!(f.header("receipt-id"), Some("denied-1"));
    // Still open: an allowed SEND goes through, and the next frame is its RECEIPT
    // (the refused frame's receipt was answered by the ERROR, never by a RECEIPT).
    w.send_frame(
        "SEND",
        &[("destination", "/pub/chat/a"), ("receipt", "s2")],
        b"after the refusal",
    )
    .await;
    let f = w.expect_frame().await;
    assert_eq!(f.command.as_str(), "RECEIPT");
    assert_eq!(f.header("receipt-id"), Some("s2"));
    assert_eq!(
        reader.message(WAIT).await.as_deref(),
        Some("after the refusal")
    );
    // A denied SUBSCRIBE still closes.
    assert!(w.try_subscribe("9", "/sub/chat/z").await.is_err());
    w.expect_only_close().await;
}

#[tokio::test]
async fn denied_client_receives_nothing_from_a_topic_it_may_not_read() {
    let r = start(rules_config(OnSendDenied::Error)).await;
    let mut member = user(&r, "member", &["secret"]).await;
    member.try_subscribe("1", "/sub/chat/secret").await.unwrap();

    // Try every way in: the exact topic, a wildcard over it, and a room-variable
    // wildcard; each attempt on a fresh connection.
    for dest in ["/sub/chat/secret", "/sub/chat/*", "/sub/**", "/sub/chat/**"] {
        let mut spy = user(&r, "spy", &["lobby", "*", "**"]).await;
        let err = spy.try_subscribe("s", dest).await.unwrap_err();
        assert!(err.contains("Access denied: SUBSCRIBE"), "{dest}: {err}");
        spy.expect_only_close().await;
    }
    // A spy that subscribed to what it may read gets nothing of the secret topic.
    let mut spy = user(&r, "spy", &["lobby"]).await;
    spy.try_subscribe("1", "/sub/chat/lobby").await.unwrap();
    let denied = spy.try_subscribe("2", "/sub/chat/secret").await;
    assert!(denied.is_err());
    for i in 0..5 {
        publish(&r, "/sub/chat/secret", &format!("classified {i}"));
    }
    for i in 0..5 {
        assert_eq!(member.message(WAIT).await, Some(format!("classified {i}")));
    }
    while let Some(Event::Frame(f)) = spy.next_event(Duration::from_millis(500)).await {
        assert_ne!(f.command.as_str(), "MESSAGE", "spy received {f:?}");
    }
}

#[tokio::test]
async fn rules_from_the_config_file_and_errors_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("stomp-sec-authz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("rules.toml");
    std::fs::write(
        &good,
        r#"
[security]
jwt-secret = "k"

[authorization]
on-send-denied = "error"

[[authorization.rules]]
deny = "send"
destination = "/sub/**"

[[authorization.rules]]
allow = "subscribe"
destination = "/sub/chat/{room}"
if-claim = "rooms"
contains = "{room}"

[[authorization.rules]]
rule = "allow send /pub/**"
"#,
    )
    .unwrap();
    let c = stomp_relay::Config::from_args(["x", "--config", good.to_str().unwrap()]).unwrap();
    let shown: Vec<String> = c.security.rules.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        shown,
        [
            "deny send /sub/**",
            "allow subscribe /sub/chat/{room} if claim rooms contains {room}",
            "allow send /pub/**"
        ]
    );
    assert_eq!(c.security.on_send_denied, OnSendDenied::Error);

    let bad = dir.join("bad-rules.toml");
    std::fs::write(
        &bad,
        "[[authorization.rules]]\nallow = \"send\"\ndestination = \"/a\"\n\n[[authorization.rules]]\nallow = \"publish\"\ndestination = \"/a\"\n",
    )
    .unwrap();
    let e = stomp_relay::Config::from_args(["x", "--config", bad.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("authorization.rules[1]") && e.contains("publish"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1);

    let e = stomp_relay::Config::from_args(["x", "--rule", "allow send nowhere"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--rule"), "{e}");
}
