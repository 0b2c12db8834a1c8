//! The HTTP API beside `/ws`: `POST /api/publish` (SimpMessagingTemplate over HTTP),
//! `GET /api/stats` (what the dashboard shows), the pages and their protection by the
//! admin token / API key, against a real server on an ephemeral loopback port and real
//! STOMP clients over WebSocket. The relay-mode test publishes through a real ActiveMQ.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{start, test_config, Client, Event, Frame};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .expect("an `error` string")
            .to_string()
    }
}

/// One HTTP/1.1 request with `Connection: close`.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8(out).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size");
        let n = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

async fn publish(addr: SocketAddr, json: &str, headers: &[(&str, &str)]) -> Reply {
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    http(addr, "POST", "/api/publish", &h, json.as_bytes()).await
}

async fn stats(addr: SocketAddr, headers: &[(&str, &str)]) -> Reply {
    http(addr, "GET", "/api/stats", headers, b"").await
}

/// The next MESSAGE within `wait`, or `None`.
async fn next_message(c: &mut Client, wait: Duration) -> Option<Frame> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_event(left).await {
            Some(Event::Frame(f)) if f.command.as_str() == "MESSAGE" => return Some(f),
            Some(Event::Frame(f)) if f.command.as_str() == "ERROR" => panic!("ERROR: {f:?}"),
            Some(Event::Closed(code)) => panic!("closed {code:?}"),
            Some(_) => continue,
            None => return None,
        }
    }
}

#[tokio::test]
async fn publish_reaches_subscribers_with_headers_and_utf8() {
    let srv = start(test_config()).await;
    let mut c = Client::connected(&srv.ws_url(), &[]).await;
    c.subscribe("s1", "/sub/news").await;

    let r = publish(
        srv.http,
        r#"{"destination": "/sub/news", "body": "안녕하세요, world", "headers": {"x-trace": "t-42"}}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["status"], "published");
    assert_eq!(r.json()["bytes"], "안녕하세요, world".len());
    let m = next_message(&mut c, Duration::from_secs(5))
        .await
        .expect("MESSAGE");
    assert_eq!(m.header("destination"), Some("/sub/news"));
    assert_eq!(m.header("x-trace"), Some("t-42"));
    assert_eq!(m.header("content-type"), Some("text/plain;charset=UTF-8"));
    assert_eq!(std::str::from_utf8(&m.body).unwrap(), "안녕하세요, world");

    // A JSON value body is sent as JSON text, like convertAndSend with a converter.
    let r = publish(
        srv.http,
        r#"{"destination": "/sub/news", "body": {"price": 12.5, "sym": "ACME"}}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let m = next_message(&mut c, Duration::from_secs(5))
        .await
        .expect("MESSAGE");
    assert_eq!(m.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&m.body).unwrap();
    assert_eq!(v["sym"], "ACME");

    // An explicit content-type wins.
    let r = publish(srv.http, r#"{"destination": "/sub/news", "body": "<b>x</b>", "headers": {"content-type": "text/html"}}"#, &[]).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let m = next_message(&mut c, Duration::from_secs(5))
        .await
        .expect("MESSAGE");
    assert_eq!(m.header("content-type"), Some("text/html"));
    srv.shutdown.shutdown();
}

/// `"user"` sends to every session of that user (convertAndSendToUser), says how many,
/// and answers `no_session` (counted) for a user with none; a destination outside the
/// broker prefixes is a 400 also then.
#[tokio::test]
async fn publish_to_a_user_reaches_each_of_their_sessions() {
    let srv = start(test_config()).await;
    let mut bobs = Vec::new();
    for _ in 0..2 {
        let mut c = Client::connected(&srv.ws_url(), &[("login", "bob")]).await;
        c.subscribe("n", "/user/queue/notes").await;
        bobs.push(c);
    }
    let mut alice = Client::connected(&srv.ws_url(), &[("login", "alice")]).await;
    alice.subscribe("n", "/user/queue/notes").await;

    let r = publish(
        srv.http,
        r#"{"user": "bob", "destination": "/queue/notes", "body": "for bob"}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["status"], "published");
    assert_eq!(r.json()["sessions"], 2);
    for bob in &mut bobs {
        let m = next_message(bob, Duration::from_secs(5))
            .await
            .expect("MESSAGE");
        assert_eq!(m.header("destination"), Some("/user/queue/notes"));
        assert_eq!(&m.body[..], b"for bob");
    }
    assert!(next_message(&mut alice, Duration::from_millis(300))
        .await
        .is_none());

    let r = publish(
        srv.http,
        r#"{"user": "dave", "destination": "/queue/notes", "body": "x"}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["status"], "no_session");
    assert_eq!(r.json()["sessions"], 0);
    assert!(srv
        .metrics()
        .await
        .lines()
        .any(|l| l == "stomp_user_messages_unresolved_total 1"));

    let r = publish(
        srv.http,
        r#"{"user": "dave", "destination": "/elsewhere/x", "body": "x"}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = publish(
        srv.http,
        r#"{"user": "", "destination": "/queue/notes"}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("user"), "{}", r.body);

    // Simple mode knows this instance only, and says so.
    let r = stats(srv.http, &[]).await;
    let users = &r.json()["users"];
    assert_eq!(users["scope"], "instance");
    assert_eq!(users["instances"], 1);
    let listed: Vec<(String, u64)> = users["listed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_owned(),
                u["sessions"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [("alice".to_owned(), 1), ("bob".to_owned(), 2)]);
    srv.shutdown.shutdown();
}

#[tokio::test]
async fn bad_publish_requests_get_400_with_a_reason_and_deliver_nothing() {
    let srv = start(test_config()).await;
    let mut c = Client::connected(&srv.ws_url(), &[]).await;
    c.subscribe("s1", "/sub/news").await;
    let cases: &[(&str, &str)] = &[
        ("not json at all", "not a valid publish request"),
        (
            r#"{"destination": "/sub/news", "body": "x""#,
            "not a valid publish request",
        ),
        (r#"{"body": "x"}"#, "missing field `destination`"),
        (r#"{"destination": 5}"#, "invalid type"),
        (
            r#"{"destination": "/sub/news", "bogus": 1}"#,
            "unknown field `bogus`",
        ),
        (
            r#"{"destination": "/pub/news", "body": "x"}"#,
            "is not under a broker prefix",
        ),
        (
            r#"{"destination": "news", "body": "x"}"#,
            "is not under a broker prefix",
        ),
        (
            r#"{"destination": "/sub/news", "headers": {"destination": "/sub/other"}}"#,
            "header `destination` is set by the server",
        ),
        (
            r#"{"destination": "/sub/news", "headers": {"bad:name": "v"}}"#,
            "header name `bad:name` is not allowed",
        ),
        (
            r#"{"destination": "/sub/news", "headers": {"x": "a\nb"}}"#,
            "must not contain line breaks",
        ),
        (
            r#"{"destination": "/sub/news", "headers": {"x": 1}}"#,
            "invalid type",
        ),
    ];
    for (body, want) in cases {
        let r = publish(srv.http, body, &[]).await;
        assert_eq!(r.status, 400, "{body} -> {} {}", r.status, r.body);
        assert!(r
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/json"));
        let e = r.error();
        assert!(
            e.contains(want),
            "{body}: error `{e}` should mention `{want}`"
        );
    }
    // The broker prefixes are named so the caller knows what is allowed.
    let e = publish(srv.http, r#"{"destination": "/pub/news"}"#, &[])
        .await
        .error();
    assert!(e.contains("/sub/"), "{e}");

    // Bigger than the max frame size: 413 naming the limit.
    let big = format!(
        r#"{{"destination": "/sub/news", "body": "{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let r = publish(srv.http, &big, &[]).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.error().contains("max frame size of 65536"), "{}", r.body);

    assert!(
        next_message(&mut c, Duration::from_millis(300))
            .await
            .is_none(),
        "a refused publish was delivered"
    );
    // The server is unharmed: a good one still goes through.
    let r = publish(
        srv.http,
        r#"{"destination": "/sub/news", "body": "ok"}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 202);
    let m = next_message(&mut c, Duration::from_secs(5))
        .await
        .expect("MESSAGE");
    assert_eq!(&m.body[..], b"ok");
    srv.shutdown.shutdown();
}

#[tokio::test]
async fn api_key_is_required_when_configured() {
    let mut cfg = test_config();
    cfg.api_key = Some("k-123".into());
    let srv = start(cfg).await;
    let mut c = Client::connected(&srv.ws_url(), &[]).await;
    c.subscribe("s1", "/sub/news").await;
    let body = r#"{"destination": "/sub/news", "body": "secret"}"#;
    for headers in [
        vec![],
        vec![("X-API-Key", "wrong")],
        vec![("Authorization", "Bearer k-12")],
    ] {
        let r = publish(srv.http, body, &headers).await;
        assert_eq!(r.status, 401, "{headers:?}: {}", r.body);
        assert!(r
            .header("www-authenticate")
            .unwrap_or("")
            .starts_with("Bearer"));
        assert!(r.error().contains("API key required"), "{}", r.body);
    }
    // Even a bad body is 401 first: no information for unauthenticated callers.
    assert_eq!(publish(srv.http, "garbage", &[]).await.status, 401);
    assert!(next_message(&mut c, Duration::from_millis(300))
        .await
        .is_none());

    for key in [("X-API-Key", "k-123"), ("Authorization", "Bearer k-123")] {
        assert_eq!(publish(srv.http, body, &[key]).await.status, 202, "{key:?}");
        assert_eq!(
            &next_message(&mut c, Duration::from_secs(5))
                .await
                .unwrap()
                .body[..],
            b"secret"
        );
    }
    // The admin token is not needed for publishing, and the API key does not open stats.
    srv.shutdown.shutdown();
}

#[tokio::test]
async fn stats_show_sessions_subscriptions_rates_and_errors() {
    let srv = start(test_config()).await;
    let mut a = Client::connected(&srv.ws_url(), &[("login", "alice")]).await;
    let mut b = Client::connected(&srv.ws_url(), &[]).await;
    a.subscribe("a1", "/sub/chat/lobby").await;
    a.subscribe("a2", "/sub/chat/random").await;
    b.subscribe("b1", "/sub/chat/lobby").await;
    for i in 0..5 {
        a.send_frame(
            "SEND",
            &[("destination", "/pub/chat/lobby")],
            format!("m{i}").as_bytes(),
        )
        .await;
    }
    for _ in 0..5 {
        next_message(&mut b, Duration::from_secs(5))
            .await
            .expect("lobby message");
    }
    // One SEND straight to a broker destination, counted on the sending session.
    b.send_frame("SEND", &[("destination", "/sub/chat/random")], b"direct")
        .await;
    for _ in 0..6 {
        next_message(&mut a, Duration::from_secs(5))
            .await
            .expect("message for alice");
    }

    let r = stats(srv.http, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let s = r.json();
    assert_eq!(s["broker"]["mode"], "simple");
    assert_eq!(s["broker"]["available"], true);
    assert_eq!(s["sessions"]["current"], 2);
    let listed = s["sessions"]["listed"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{s}");
    let alice = listed
        .iter()
        .find(|x| x["user"] == "alice")
        .expect("alice listed");
    let dests: Vec<&str> = alice["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["destination"].as_str().unwrap())
        .collect();
    assert_eq!(dests, ["/sub/chat/lobby", "/sub/chat/random"]);
    assert_eq!(
        alice["broker_sends"], 0,
        "SENDs to /pub go through the app route, not the session"
    );
    let by_dest = &s["subscriptions"]["by_destination"];
    assert_eq!(by_dest[0]["destination"], "/sub/chat/lobby");
    assert_eq!(by_dest[0]["subscribers"], 2);
    assert_eq!(by_dest[1]["destination"], "/sub/chat/random");
    assert_eq!(by_dest[1]["subscribers"], 1);
    assert_eq!(s["subscriptions"]["total"], 3);
    let bob = listed
        .iter()
        .find(|x| x["user"].is_null())
        .expect("anonymous session listed");
    assert_eq!(bob["broker_sends"], 1);
    assert_eq!(s["messages"]["published_total"], 6);
    // 5 lobby messages to each of a and b, the direct one to a.
    assert_eq!(s["messages"]["delivered_total"], 11);

    // The once-a-second sampler records the burst for the chart.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = stats(srv.http, &[]).await.json();
        let samples = s["messages"]["per_second"].as_array().unwrap().clone();
        let published: u64 = samples
            .iter()
            .map(|x| x["published"].as_u64().unwrap())
            .sum();
        let delivered: u64 = samples
            .iter()
            .map(|x| x["delivered"].as_u64().unwrap())
            .sum();
        if published == 6 && delivered == 11 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "samples never added up: {samples:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // UNSUBSCRIBE and an abnormal close (a malformed frame) are reflected.
    a.send_frame("UNSUBSCRIBE", &[("id", "a2"), ("receipt", "u")], b"")
        .await;
    assert_eq!(a.expect_frame().await.command.as_str(), "RECEIPT");
    b.send_text("THIS IS NOT STOMP\n\n\0").await;
    b.expect_close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let s = loop {
        let s = stats(srv.http, &[]).await.json();
        if s["sessions"]["current"] == 1 {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "session count stuck: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(s["sessions"]["listed"].as_array().unwrap().len(), 1);
    assert_eq!(s["subscriptions"]["total"], 1);
    assert_eq!(
        s["subscriptions"]["by_destination"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s["sessions"]["closed_abnormally"]["protocol_error"], 1);
    let errors = s["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["message"] == "session closed abnormally: protocol_error"),
        "{errors:?}"
    );
    srv.shutdown.shutdown();
}

#[tokio::test]
async fn admin_token_protects_dashboard_and_stats() {
    let mut cfg = test_config();
    cfg.admin_token = Some("adm-1".into());
    let srv = start(cfg).await;
    let r = stats(srv.http, &[]).await;
    assert_eq!(r.status, 401);
    assert!(r.error().contains("admin token required"), "{}", r.body);
    assert_eq!(
        stats(srv.http, &[("Authorization", "Bearer nope")])
            .await
            .status,
        401
    );
    assert_eq!(
        http(srv.http, "GET", "/api/stats?token=nope", &[], b"")
            .await
            .status,
        401
    );
    assert_eq!(
        stats(srv.http, &[("Authorization", "Bearer adm-1")])
            .await
            .status,
        200
    );
    assert_eq!(
        stats(srv.http, &[("X-Admin-Token", "adm-1")]).await.status,
        200
    );
    assert_eq!(
        http(srv.http, "GET", "/api/stats?token=adm-1", &[], b"")
            .await
            .status,
        200
    );

    let page = http(srv.http, "GET", "/dashboard", &[], b"").await;
    assert_eq!(page.status, 401);
    assert!(
        page.body.contains("Admin token"),
        "the 401 page asks for the token"
    );
    assert!(
        !page.body.contains("dashboard.js"),
        "the dashboard itself is not served"
    );
    let page = http(srv.http, "GET", "/dashboard?token=adm-1", &[], b"").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/assets/dashboard.js"));
    // The chat page and publishing stay open (no API key configured).
    assert_eq!(http(srv.http, "GET", "/", &[], b"").await.status, 200);
    srv.shutdown.shutdown();
}

#[tokio::test]
async fn pages_assets_and_openapi_are_served() {
    let srv = start(test_config()).await;
    let chat = http(srv.http, "GET", "/", &[], b"").await;
    assert_eq!(chat.status, 200);
    assert_eq!(
        chat.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        chat.body.contains("/assets/stomp.umd.min.js") && chat.body.contains("/assets/chat.js")
    );
    let dash = http(srv.http, "GET", "/dashboard", &[], b"").await;
    assert_eq!(dash.status, 200);
    for (path, ty, needle) in [
        (
            "/assets/chat.js",
            "text/javascript; charset=utf-8",
            "/pub/chat/",
        ),
        (
            "/assets/dashboard.js",
            "text/javascript; charset=utf-8",
            "/api/stats",
        ),
        ("/assets/style.css", "text/css; charset=utf-8", ".messages"),
        (
            "/assets/stomp.umd.min.js",
            "text/javascript; charset=utf-8",
            "StompJs",
        ),
        ("/openapi.json", "application/json", "\"/api/publish\""),
    ] {
        let r = http(srv.http, "GET", path, &[], b"").await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ty), "{path}");
        assert!(r.body.contains(needle), "{path} lacks {needle}");
    }
    let doc: Value =
        serde_json::from_str(&http(srv.http, "GET", "/openapi.json", &[], b"").await.body).unwrap();
    assert!(doc["paths"]["/api/publish"]["post"]["responses"]["400"].is_object());
    assert_eq!(
        http(srv.http, "GET", "/assets/nope.js", &[], b"")
            .await
            .status,
        404
    );
    assert_eq!(
        http(srv.http, "GET", "/api/publish", &[], b"").await.status,
        405
    );
    srv.shutdown.shutdown();
}

#[test]
fn admin_token_and_api_key_come_from_flags_env_and_file() {
    use stomp_relay::Config;
    let c = Config::from_args(["stomp-relay", "--admin-token", "t1", "--api-key", "k1"]).unwrap();
    assert_eq!(c.admin_token.as_deref(), Some("t1"));
    assert_eq!(c.api_key.as_deref(), Some("k1"));
    let c = Config::from_args(["stomp-relay"]).unwrap();
    assert_eq!((c.admin_token, c.api_key), (None, None));
    let e = Config::from_args(["stomp-relay", "--api-key", ""])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--api-key") && e.contains("must not be empty"),
        "{e}"
    );

    let dir = std::env::temp_dir().join(format!("stomp-relay-web-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::write(&file, "admin-token = \"ft\"\napi-key = \"fk\"\n").unwrap();
    let c = Config::from_args([
        "stomp-relay",
        "--config",
        file.to_str().unwrap(),
        "--api-key",
        "flag-wins",
    ])
    .unwrap();
    assert_eq!(c.admin_token.as_deref(), Some("ft"));
    assert_eq!(c.api_key.as_deref(), Some("flag-wins"));
    std::fs::write(&file, "admin-token = \"\"\n").unwrap();
    let e = Config::from_args(["stomp-relay", "--config", file.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("config key `admin-token`"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// In relay mode `/api/publish` goes through the external broker: a client on ANOTHER
/// instance receives it. Needs ActiveMQ on 127.0.0.1:61613 (`scripts/brokers.sh up`).
#[tokio::test]
async fn publish_goes_through_the_broker_in_relay_mode() {
    // A broker restarted by an earlier test binary may still be coming back.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect("127.0.0.1:61613").is_err()
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if std::net::TcpStream::connect("127.0.0.1:61613").is_err() {
        panic!("ActiveMQ is not listening on 127.0.0.1:61613: run `scripts/brokers.sh up activemq` (this test never passes silently)");
    }
    let relay = || {
        let mut c = test_config();
        c.broker = stomp_relay::config::BrokerKind::Relay;
        c.dialect = Some(stomp_relay::config::Dialect::ActiveMq);
        c.relay_login = "admin".into();
        c.relay_passcode = "admin".into();
        c.system_login = "admin".into();
        c.system_passcode = "admin".into();
        c
    };
    let a = start(relay()).await;
    let b = start(relay()).await;
    for srv in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while common::http_get(srv.http, "/readyz").await.0 != 200 {
            assert!(tokio::time::Instant::now() < deadline, "relay never ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let topic = format!("/sub/web-api-{}", std::process::id());
    let mut c = Client::connected(&b.ws_url(), &[]).await;
    c.subscribe("s1", &topic).await;
    let r = publish(
        a.http,
        &format!(r#"{{"destination": "{topic}", "body": "through ActiveMQ 한국어"}}"#),
        &[],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let m = next_message(&mut c, Duration::from_secs(10))
        .await
        .expect("MESSAGE via the broker");
    assert_eq!(
        std::str::from_utf8(&m.body).unwrap(),
        "through ActiveMQ 한국어"
    );
    assert_eq!(m.header("destination"), Some(topic.as_str()));

    let s = stats(b.http, &[]).await.json();
    assert_eq!(s["broker"]["mode"], "relay");
    assert_eq!(s["broker"]["relay_mode"], "per-session");
    assert_eq!(s["broker"]["dialect"], "activemq");
    assert_eq!(s["broker"]["available"], true);
    assert_eq!(
        s["broker"]["addresses"][0]["url"],
        "stomp://127.0.0.1:61613"
    );
    assert_eq!(s["sessions"]["current"], 1);
    assert_eq!(s["broker"]["addresses"][0]["connected"], true);
    assert_eq!(
        s["sessions"]["listed"][0]["upstream"],
        "stomp://127.0.0.1:61613"
    );
    a.shutdown.shutdown();
    b.shutdown.shutdown();
}

/// An embedding application's own `/` replaces the chat page instead of clashing with it;
/// the dashboard and API stay.
#[tokio::test]
async fn an_application_route_for_the_root_wins_over_the_chat_page() {
    let builder = stomp_relay::Server::builder(test_config()).http_routes(|_publisher| {
        axum::Router::new().route("/", axum::routing::get(|| async { "my app\n" }))
    });
    let srv = common::start_with(builder).await;
    let root = http(srv.http, "GET", "/", &[], b"").await;
    assert_eq!((root.status, root.body.as_str()), (200, "my app\n"));
    assert_eq!(
        http(srv.http, "GET", "/dashboard", &[], b"").await.status,
        200
    );
    assert_eq!(stats(srv.http, &[]).await.status, 200);
    assert_eq!(http(srv.http, "GET", "/nope", &[], b"").await.status, 404);
    srv.shutdown.shutdown();
}

/// Relay mode with no broker behind the address: stats say so, publishing answers 503
/// and the failure is listed among the recent errors. (No broker needed: nothing listens.
/// Per-session mode, because shared mode holds publishes while it reconnects.)
#[tokio::test]
async fn broker_down_shows_in_stats_and_publish_gets_503() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = test_config();
    cfg.broker = stomp_relay::config::BrokerKind::Relay;
    cfg.relay_mode = stomp_relay::config::RelayMode::PerSession;
    cfg.relay =
        vec![stomp_relay::config::RelayAddr::parse(&format!("stomp://127.0.0.1:{port}")).unwrap()];
    let srv = start(cfg).await;
    let s = stats(srv.http, &[]).await.json();
    assert_eq!(s["broker"]["mode"], "relay");
    assert_eq!(s["broker"]["relay_mode"], "per-session");
    assert_eq!(s["broker"]["available"], false);
    assert_eq!(
        s["broker"]["addresses"][0]["url"],
        format!("stomp://127.0.0.1:{port}")
    );
    assert_eq!(s["broker"]["addresses"][0]["connected"], false);

    let r = publish(
        srv.http,
        r#"{"destination": "/sub/x", "body": "lost?"}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.error(), "Broker not available.");
    let s = stats(srv.http, &[]).await.json();
    let errors = s["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["message"] == "publish to /sub/x failed: Broker not available."),
        "{errors:?}"
    );
    srv.shutdown.shutdown();
}
