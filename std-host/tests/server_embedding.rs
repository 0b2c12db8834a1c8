//! The embedding API: message handlers with captured variables and replies to broker
//! destinations and users, subscribe handlers, the authenticator, the publisher used
//! from outside any session, and extra HTTP routes.

mod common;

use common::*;
use std::time::Duration;
use stomp_relay::{Payload, Reply, Server};

fn builder() -> stomp_relay::ServerBuilder {
    Server::builder(test_config())
        .authenticator(|c| match c.header_str("login") {
            Some("mallory") => Err("mallory is not welcome".into()),
            Some(l) => Ok(Some(l.to_string())),
            None => Ok(None),
        })
        .message_mapping("/pub/shout/{room}", |m| {
            let room = m.var("room").unwrap().to_string();
            let user = m.user.clone().unwrap_or_default();
            vec![
                Reply::publish(format!("/sub/room/{room}"), m.body_text().to_uppercase())
                    .header("from", &user)
                    .header("via", m.destination.clone()),
                Reply::to_user(user, "/queue/acks", format!("shouted in {room}")),
            ]
        })
        .message_mapping("/pub/void/**", |_| Vec::new())
        .subscribe_mapping("/pub/hello/{name}", |m| {
            Some(Payload::new(format!("hello {}", m.var("name").unwrap())).header("k", "v"))
        })
        .http_routes(|_publisher| {
            axum::Router::new().route("/extra", axum::routing::get(|| async { "extra route\n" }))
        })
}

#[tokio::test]
async fn message_mapping_publishes_and_replies_to_the_user() {
    let srv = start_with(builder()).await;
    let mut alice = Client::connected(&srv.ws_url(), &[("login", "alice")]).await;
    let mut bob = Client::connected(&srv.ws_url(), &[("login", "bob")]).await;
    bob.subscribe("r", "/sub/room/42").await;
    alice.subscribe("acks", "/user/queue/acks").await;
    alice.subscribe("r", "/sub/room/42").await;
    alice
        .send_frame(
            "SEND",
            &[("destination", "/pub/shout/42"), ("receipt", "s")],
            b"hi there",
        )
        .await;
    let mut got_receipt = false;
    let mut got_ack = false;
    let mut got_room = false;
    while !(got_receipt && got_ack && got_room) {
        let f = alice.expect_frame().await;
        match (f.command.as_str(), f.header("subscription")) {
            ("RECEIPT", _) => got_receipt = true,
            ("MESSAGE", Some("acks")) => {
                assert_eq!(&f.body[..], b"shouted in 42");
                assert_eq!(f.header("destination"), Some("/user/queue/acks"));
                got_ack = true;
            }
            ("MESSAGE", Some("r")) => got_room = true,
            other => panic!("{other:?}"),
        }
    }
    let m = bob.expect_frame().await;
    assert_eq!(&m.body[..], b"HI THERE");
    assert_eq!(m.header("from"), Some("alice"));
    assert_eq!(m.header("via"), Some("/pub/shout/42"));
    // A handler that returns nothing: nothing is delivered, the session lives on.
    alice
        .send_frame(
            "SEND",
            &[("destination", "/pub/void/a/b"), ("receipt", "v")],
            b"x",
        )
        .await;
    assert_eq!(alice.expect_frame().await.header("receipt-id"), Some("v"));
    assert!(bob.next_event(Duration::from_millis(200)).await.is_none());
}

#[tokio::test]
async fn subscribe_mapping_answers_once_on_the_subscription() {
    let srv = start_with(builder()).await;
    let mut c = Client::connected(&srv.ws_url(), &[]).await;
    c.send_frame(
        "SUBSCRIBE",
        &[("id", "h"), ("destination", "/pub/hello/world")],
        b"",
    )
    .await;
    let m = c.expect_frame().await;
    assert_eq!(m.command.as_str(), "MESSAGE");
    assert_eq!(m.header("subscription"), Some("h"));
    assert_eq!(m.header("destination"), Some("/pub/hello/world"));
    assert_eq!(m.header("k"), Some("v"));
    assert_eq!(&m.body[..], b"hello world");
    assert!(c.next_event(Duration::from_millis(200)).await.is_none());
}

#[tokio::test]
async fn authenticator_refuses_with_error() {
    let srv = start_with(builder()).await;
    let mut c = Client::open(&srv.ws_url(), &["v12.stomp"]).await;
    c.send_frame(
        "CONNECT",
        &[("accept-version", "1.2"), ("login", "mallory")],
        b"",
    )
    .await;
    let e = c.expect_frame().await;
    assert_eq!(e.command.as_str(), "ERROR");
    assert_eq!(e.header("message"), Some("mallory is not welcome"));
    assert_eq!(c.expect_close().await, Some(1002));
    // A user's name comes back in CONNECTED.
    let mut c = Client::open(&srv.ws_url(), &["v12.stomp"]).await;
    c.send_frame(
        "CONNECT",
        &[("accept-version", "1.2"), ("login", "carol")],
        b"",
    )
    .await;
    assert_eq!(c.expect_frame().await.header("user-name"), Some("carol"));
}

#[tokio::test]
async fn publisher_works_from_outside_sessions() {
    let srv = start_with(builder()).await;
    let mut c = Client::connected(&srv.ws_url(), &[]).await;
    c.subscribe("1", "/sub/news").await;
    let p = srv.publisher.clone();
    tokio::task::spawn_blocking(move || {
        p.publish("/sub/news", &[("content-type", "text/plain")], "extra!")
            .unwrap();
    })
    .await
    .unwrap();
    let m = c.expect_frame().await;
    assert_eq!(&m.body[..], b"extra!");
    assert_eq!(m.header("content-type"), Some("text/plain"));
    let err = srv.publisher.publish("/nowhere", &[], "x").unwrap_err();
    assert!(err.to_string().contains("/sub/"), "{err}");
    assert_eq!(
        http_get(srv.http, "/extra").await,
        (200, "extra route\n".into())
    );
}
