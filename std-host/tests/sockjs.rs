//! SockJS at the HTTP level, where sockjs-client cannot be made to misbehave: origins
//! refused on every transport, a client that stops polling, broken sends. The real
//! client over every transport is in interop.rs (`sockjs.mjs`).

mod common;

use std::time::Duration;

use common::{frame_bytes, http_request, start, test_config, HttpResponse, TestServer};
use stomp_relay::config::SockJsConfig;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ENDPOINT: &str = "/ws-stomp";
const ALLOWED: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example.net";

async fn server(disconnect_delay: Duration) -> TestServer {
    let mut c = test_config();
    c.endpoints = vec![ENDPOINT.into()];
    c.sockjs = Some(SockJsConfig {
        disconnect_delay,
        ..SockJsConfig::default()
    });
    c.security.allowed_origins = vec![ALLOWED.into()];
    start(c).await
}

/// A session path: `/ws-stomp/000/<session>/<transport>`.
fn at(session: &str, transport: &str) -> String {
    format!("{ENDPOINT}/000/{session}/{transport}")
}

/// A JSON array of STOMP frames, as sockjs-client sends them.
fn send_body(frames: &[Vec<u8>]) -> Vec<u8> {
    let texts: Vec<String> = frames
        .iter()
        .map(|f| String::from_utf8(f.clone()).unwrap())
        .collect();
    serde_json::to_vec(&texts).unwrap()
}

async fn post(s: &TestServer, path: &str, origin: Option<&str>, body: &[u8]) -> HttpResponse {
    let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
    http_request(s.http, "POST", path, &headers, body).await
}

async fn stats(s: &TestServer) -> serde_json::Value {
    let r = http_request(s.http, "GET", "/api/stats", &[], b"").await;
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

async fn ws_refused(url: String, origin: &str) -> String {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => panic!("WebSocket from {origin} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_disallowed_origin_is_refused_on_every_transport() {
    let s = server(Duration::from_secs(5)).await;
    let evil = [("Origin", EVIL)];
    let preflight = [("Origin", EVIL), ("Access-Control-Request-Method", "POST")];
    for (method, path, headers) in [
        ("GET", format!("{ENDPOINT}/info"), &evil[..]),
        ("OPTIONS", format!("{ENDPOINT}/info"), &preflight[..]),
        ("POST", at("s1", "xhr"), &evil[..]),
        ("POST", at("s1", "xhr_streaming"), &evil[..]),
        ("GET", at("s1", "eventsource"), &evil[..]),
        ("OPTIONS", at("s1", "xhr_send"), &preflight[..]),
        ("POST", at("s1", "xhr_send"), &evil[..]),
    ] {
        let r = http_request(s.http, method, &path, headers, b"").await;
        assert_eq!(r.status, 403, "{method} {path}: {r:?}");
        assert!(
            !r.head.contains("access-control-allow-origin"),
            "{method} {path} must not let the page read it: {}",
            r.head
        );
    }
    for path in [
        at("s1", "websocket"),
        format!("{ENDPOINT}/websocket"),
        ENDPOINT.into(),
    ] {
        let err = ws_refused(format!("ws://{}{path}", s.http), EVIL).await;
        assert!(err.contains("403"), "{path}: {err}");
    }
    let st = stats(&s).await;
    assert_eq!(st["sessions"]["total"], 0, "no session was opened: {st}");

    // The allowed origin gets CORS for itself, and a session.
    let ok = [("Origin", ALLOWED)];
    let info = http_request(s.http, "GET", &format!("{ENDPOINT}/info"), &ok, b"").await;
    assert_eq!(info.status, 200, "{info:?}");
    assert!(
        info.head
            .contains(&format!("access-control-allow-origin: {ALLOWED}")),
        "{}",
        info.head
    );
    let v: serde_json::Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(v["websocket"], true);
    assert_eq!(v["cookie_needed"], false);
    let pre = http_request(
        s.http,
        "OPTIONS",
        &at("s2", "xhr_send"),
        &[
            ("Origin", ALLOWED),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    )
    .await;
    assert_eq!(pre.status, 204, "{pre:?}");
    assert!(pre
        .head
        .contains("access-control-allow-headers: content-type"));
    let open = post(&s, &at("s2", "xhr"), Some(ALLOWED), b"").await;
    assert_eq!((open.status, open.body.as_str()), (200, "o\n"));
}

#[tokio::test]
async fn a_client_that_stops_polling_is_closed_and_counted() {
    let s = server(Duration::from_secs(1)).await;
    let poll = at("gone", "xhr");
    assert_eq!(post(&s, &poll, None, b"").await.body, "o\n");
    let connect = frame_bytes(
        "CONNECT",
        &[("accept-version", "1.2"), ("host", "localhost")],
        b"",
    );
    let sent = post(&s, &at("gone", "xhr_send"), None, &send_body(&[connect])).await;
    assert_eq!(sent.status, 204, "{sent:?}");
    let got = post(&s, &poll, None, b"").await;
    assert!(got.body.starts_with("a[\"CONNECTED\\n"), "{got:?}");
    let st = stats(&s).await;
    let listed = st["sessions"]["listed"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{st}");
    assert_eq!(listed[0]["transport"], "sockjs-xhr-polling");

    // No more polls: gone after the disconnect delay.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = stats(&s).await;
        if st["sessions"]["current"] == 0 {
            assert_eq!(
                st["sessions"]["closed_abnormally"]["client_gone"], 1,
                "{st}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still open: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("stomp_sessions_closed_abnormally_total{cause=\"client_gone\"} 1"),
        "{metrics}"
    );
    // A late send finds no session; a late poll reads why it ended.
    let late = post(&s, &at("gone", "xhr_send"), None, b"[\"x\"]").await;
    assert_eq!(late.status, 404, "{late:?}");
    let late = post(&s, &poll, None, b"").await;
    assert_eq!(late.body, "c[3000,\"Go away!\"]\n");
}

#[tokio::test]
async fn broken_sends_and_second_receivers_get_sockjs_answers() {
    let s = server(Duration::from_secs(5)).await;
    let poll = at("b", "xhr");
    let send = at("b", "xhr_send");
    assert_eq!(post(&s, &poll, None, b"").await.body, "o\n");
    for (body, want) in [
        (&b""[..], "Payload expected."),
        (b"[\"CONNECT", "Broken JSON encoding."),
        (b"{\"a\":1}", "Broken JSON encoding."),
    ] {
        let r = post(&s, &send, None, body).await;
        assert_eq!((r.status, r.body.as_str()), (500, want));
    }
    let r = post(&s, &at("nope", "xhr_send"), None, b"[\"x\"]").await;
    assert_eq!(r.status, 404);

    // One receiver at a time: a second streaming request while a poll waits.
    let waiting = {
        let addr = s.http;
        let poll = poll.clone();
        tokio::spawn(async move { http_request(addr, "POST", &poll, &[], b"").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = post(&s, &at("b", "xhr_streaming"), None, b"").await;
    assert!(
        busy.body
            .contains("c[2010,\"Another connection still open\"]"),
        "{busy:?}"
    );

    // A send over the message limit: the session says why in a STOMP ERROR and closes.
    let huge = send_body(&[vec![b'x'; 300 * 1024]]);
    let r = post(&s, &send, None, &huge).await;
    assert_eq!(r.status, 413, "{r:?}");
    let got = waiting.await.unwrap();
    assert!(got.body.starts_with("a[\"ERROR\\n"), "{got:?}");
    assert!(got.body.contains("message:"), "{got:?}");
    let closed = post(&s, &poll, None, b"").await;
    assert!(closed.body.starts_with("c[1002,"), "{closed:?}");
}

/// A JWT in the query string (or cookie) of the request that opens a SockJS session
/// authenticates it, as in a WebSocket handshake; without one the CONNECT is refused.
#[tokio::test]
async fn a_token_on_the_opening_request_authenticates_the_session() {
    const SECRET: &str = "sockjs-test-secret";
    let mut c = test_config();
    c.endpoints = vec![ENDPOINT.into()];
    c.sockjs = Some(SockJsConfig::default());
    c.security.jwt_secret = Some(SECRET.into());
    c.security.token_query_param = Some("access_token".into());
    let s = start(c).await;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "alice", "exp": jsonwebtoken::get_current_timestamp() + 60}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let connect = frame_bytes(
        "CONNECT",
        &[("accept-version", "1.2"), ("host", "localhost")],
        b"",
    );
    for (session, query, want) in [
        ("with", format!("?access_token={token}"), "CONNECTED"),
        ("without", String::new(), "ERROR"),
    ] {
        let poll = format!("{}{query}", at(session, "xhr"));
        assert_eq!(post(&s, &poll, None, b"").await.body, "o\n");
        let sent = post(
            &s,
            &format!("{}{query}", at(session, "xhr_send")),
            None,
            &send_body(std::slice::from_ref(&connect)),
        )
        .await;
        assert_eq!(sent.status, 204, "{sent:?}");
        let got = post(&s, &poll, None, b"").await;
        assert!(
            got.body.starts_with(&format!("a[\"{want}\\n")),
            "{session}: {got:?}"
        );
    }
    let st = stats(&s).await;
    let users: Vec<&serde_json::Value> = st["sessions"]["listed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["user"])
        .collect();
    assert_eq!(users, [&serde_json::json!("alice")], "{st}");
}
