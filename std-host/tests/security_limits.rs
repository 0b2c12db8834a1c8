//! Abuse limits and the WebSocket Origin check over real sockets: connections per IP and
//! in total, subscriptions per session, the SEND token bucket, frame and header limits,
//! slow-loris protection (request-head timeout, time to first frame), and 1 000 abusive
//! connections that do not stop a well-behaved client from getting its messages.

mod security_common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use security_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn ws_from(from: &str, to: SocketAddr) -> Result<Client, String> {
    let s = tcp_from(Some(ip(from)), to)
        .await
        .map_err(|e| e.to_string())?;
    Client::ws_over(Box::new(s), &format!("ws://{to}/ws"), &WsOpts::default())
        .await
        .map_err(|e| e.to_string())
}

fn origin(o: &str) -> WsOpts {
    WsOpts {
        headers: vec![("Origin".into(), o.into())],
        query: None,
    }
}

#[tokio::test]
async fn origin_allow_list() {
    let mut c = config();
    c.security.allowed_origins = vec!["https://app.example.com".into()];
    let r = start(c).await;
    let mut ok = Client::ws(r.http, &origin("https://app.example.com"))
        .await
        .expect("allowed origin");
    ok.expect_connected(&[]).await;
    // Non-browser clients send no Origin and are not what the check is about.
    let mut ok = Client::ws(r.http, &WsOpts::default()).await.unwrap();
    ok.expect_connected(&[]).await;
    let err = Client::ws(r.http, &origin("https://evil.example.net"))
        .await
        .err()
        .expect("foreign origin refused");
    assert!(err.to_string().contains("403"), "{err}");
}

#[tokio::test]
async fn origin_patterns_match_and_same_origin_is_always_allowed() {
    let mut c = config();
    c.security.allowed_origins = vec![
        "https://*.example.com".into(),
        "http://localhost:[3000,5173]".into(),
    ];
    let r = start(c).await;
    for allowed in [
        "https://app.example.com",
        "https://eu.app.example.com",
        "http://localhost:5173",
        // The server's own chat page and dashboard, though not listed.
        &format!("http://{}", r.http),
    ] {
        let mut ok = Client::ws(r.http, &origin(allowed))
            .await
            .unwrap_or_else(|e| panic!("{allowed} refused: {e}"));
        ok.expect_connected(&[]).await;
    }
    for refused in [
        "https://example.com",
        "https://app.example.com.evil.net",
        "http://app.example.com",
        "http://localhost:8080",
    ] {
        let err = Client::ws(r.http, &origin(refused))
            .await
            .err()
            .unwrap_or_else(|| panic!("{refused} allowed"));
        assert!(err.to_string().contains("403"), "{refused}: {err}");
    }
}

#[tokio::test]
async fn origin_check_is_on_by_default_for_non_loopback_listens() {
    use axum::http::{HeaderMap, Uri};
    let uri: Uri = "/ws".parse().unwrap();
    let mut h = HeaderMap::new();
    h.insert("host", "chat.example.com:8080".parse().unwrap());
    h.insert("origin", "https://evil.example.net".parse().unwrap());
    let cfg = stomp_relay::auth::SecurityConfig::default();
    let public =
        stomp_relay::auth::Security::build(&cfg, "10.1.2.3:8080".parse().unwrap()).unwrap();
    let local =
        stomp_relay::auth::Security::build(&cfg, "127.0.0.1:8080".parse().unwrap()).unwrap();
    assert!(stomp_relay::auth::check_handshake(&public, &h, &uri).is_err());
    assert!(stomp_relay::auth::check_handshake(&local, &h, &uri).is_ok());
    h.insert("origin", "https://chat.example.com:8080".parse().unwrap());
    assert!(
        stomp_relay::auth::check_handshake(&public, &h, &uri).is_ok(),
        "same origin"
    );
}

#[tokio::test]
async fn connections_per_ip() {
    let mut c = config();
    c.security.max_connections_per_ip = 3;
    let r = start(c).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = ws_from("127.0.0.2", r.http).await.expect("under the limit");
        c.expect_connected(&[]).await;
        held.push(c);
    }
    assert!(
        ws_from("127.0.0.2", r.http).await.is_err(),
        "4th from one IP"
    );
    // TCP listener counts the same IP.
    let mut t = Client::raw(Box::new(
        tcp_from(Some(ip("127.0.0.2")), r.tcp).await.unwrap(),
    ));
    t.send_frame("CONNECT", &[("accept-version", "1.2")], b"")
        .await;
    assert!(matches!(t.next_event(WAIT).await, Some(Event::Closed(_))));
    // Another address is not affected.
    let mut other = ws_from("127.0.0.3", r.http).await.expect("other IP");
    other.expect_connected(&[]).await;
    // A slot frees when a connection ends.
    held.pop().unwrap().send_frame("DISCONNECT", &[], b"").await;
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = ws_from("127.0.0.2", r.http).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    again.expect("slot released").expect_connected(&[]).await;
}

#[tokio::test]
async fn max_connections_total() {
    let mut c = config();
    c.limits.max_connections = 2;
    let r = start(c).await;
    let mut a = Client::ws(r.http, &WsOpts::default()).await.unwrap();
    a.expect_connected(&[]).await;
    let mut b = Client::tcp(r.tcp).await;
    b.expect_connected(&[]).await;
    let err = Client::ws(r.http, &WsOpts::default()).await.err().unwrap();
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn subscriptions_per_session() {
    let mut c = config();
    c.security.max_subscriptions = 2;
    let r = start(c).await;
    let mut s = Client::tcp(r.tcp).await;
    s.expect_connected(&[]).await;
    s.try_subscribe("1", "/topic/a").await.unwrap();
    s.try_subscribe("2", "/topic/b").await.unwrap();
    let err = s.try_subscribe("3", "/topic/c").await.unwrap_err();
    assert_eq!(err, "Too many subscriptions (at most 2 per session)");
    s.expect_only_close().await;
}

#[tokio::test]
async fn send_rate_token_bucket() {
    let mut c = config();
    c.security.send_rate = 20;
    c.security.send_burst = 5;
    let r = start(c).await;
    let mut sub = Client::tcp(r.tcp).await;
    sub.expect_connected(&[]).await;
    sub.try_subscribe("1", "/topic/rate").await.unwrap();
    // Passing: a burst of 5, then a steady 10 per second (under 20/s).
    let mut ok = Client::tcp(r.tcp).await;
    ok.expect_connected(&[]).await;
    for i in 0..5 {
        ok.send_receipted("/topic/rate", &format!("b{i}"), &format!("b{i}"))
            .await
            .unwrap();
    }
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ok.send_receipted("/topic/rate", &format!("s{i}"), &format!("s{i}"))
            .await
            .unwrap();
    }
    for _ in 0..15 {
        assert!(sub.message(WAIT).await.is_some());
    }
    // Failing: a flood well above the rate gets ERROR and close.
    let mut flood = Client::tcp(r.tcp).await;
    flood.expect_connected(&[]).await;
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend(frame_bytes(
            "SEND",
            &[("destination", "/topic/rate")],
            format!("f{i}").as_bytes(),
        ));
    }
    flood.send_raw(&batch).await;
    let msg = flood.error_then_close().await;
    assert_eq!(msg, "SEND rate limit exceeded (at most 20 per second)");
}

#[tokio::test]
async fn frame_and_header_limits() {
    let mut c = config();
    c.limits.max_frame_size = 1024;
    let r = start(c).await;
    let mut ok = Client::tcp(r.tcp).await;
    ok.expect_connected(&[]).await;
    ok.send_receipted("/topic/x", &"a".repeat(800), "r1")
        .await
        .unwrap();
    let mut big = Client::tcp(r.tcp).await;
    big.expect_connected(&[]).await;
    big.send_frame("SEND", &[("destination", "/topic/x")], &[b'a'; 4000])
        .await;
    let msg = big.error_then_close().await;
    assert!(msg.contains("1024"), "{msg}");
    // Too many headers.
    let mut many = Client::tcp(r.tcp).await;
    many.expect_connected(&[]).await;
    let names: Vec<String> = (0..100).map(|i| format!("h{i}")).collect();
    let mut hs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    hs.push(("destination", "/topic/x"));
    many.send_frame("SEND", &hs, b"").await;
    let msg = many.error_then_close().await;
    assert!(msg.to_lowercase().contains("header"), "{msg}");
}

#[tokio::test]
async fn slow_loris_request_head_and_first_frame() {
    let mut c = config();
    c.security.header_read_timeout = Duration::from_millis(500);
    c.limits.time_to_first_frame = Duration::from_millis(700);
    let r = start(c).await;
    // A request head that trickles in is dropped after the header read timeout.
    let mut s = tokio::net::TcpStream::connect(r.http).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(t0.elapsed() < Duration::from_secs(3));
    // A prompt client is unaffected.
    let (status, body) = {
        let mut s = tokio::net::TcpStream::connect(r.http).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        (out[9..12].to_string(), out)
    };
    assert_eq!(status, "200", "{body}");
    // STOMP over TCP: silent past the time to first frame gets ERROR and close...
    let mut silent = Client::tcp(r.tcp).await;
    let t0 = tokio::time::Instant::now();
    let msg = silent.error_then_close().await;
    assert!(!msg.is_empty());
    assert!(t0.elapsed() < Duration::from_secs(5));
    // ...while a WebSocket client that connects promptly stays.
    let mut ws = Client::ws(r.http, &WsOpts::default()).await.unwrap();
    ws.expect_connected(&[]).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    ws.try_subscribe("1", "/topic/still-here").await.unwrap();
}

#[tokio::test]
async fn a_frame_trickled_in_too_slowly_is_cut_off() {
    let mut c = config();
    c.security.header_read_timeout = Duration::from_millis(600);
    let r = start(c).await;
    let mut sub = Client::tcp(r.tcp).await;
    sub.expect_connected(&[]).await;
    sub.try_subscribe("1", "/topic/trickle").await.unwrap();
    // Passing: a frame in three pieces well within the timeout arrives.
    let mut ok = Client::tcp(r.tcp).await;
    ok.expect_connected(&[]).await;
    let whole = frame_bytes("SEND", &[("destination", "/topic/trickle")], b"in pieces");
    for piece in whole.chunks(whole.len() / 3 + 1) {
        ok.send_raw(piece).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sub.message(WAIT).await.as_deref(), Some("in pieces"));
    // Failing: one byte every 100 ms never completes a frame in time.
    let mut slow = Client::tcp(r.tcp).await;
    slow.expect_connected(&[]).await;
    let t0 = tokio::time::Instant::now();
    let bytes = frame_bytes("SEND", &[("destination", "/topic/trickle")], &[b'x'; 200]);
    let mut closed_with = None;
    for b in bytes.chunks(1) {
        if !slow.send_raw(b).await {
            break;
        }
        if let Some(ev) = slow.next_event(Duration::from_millis(100)).await {
            closed_with = Some(ev);
            break;
        }
    }
    match closed_with {
        Some(Event::Frame(f)) => {
            assert_eq!(f.command.as_str(), "ERROR", "{f:?}");
            assert!(
                f.header("message").unwrap().contains("Frame not completed"),
                "{f:?}"
            );
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(sub.message(Duration::from_millis(300)).await, None);
}

/// 1 000 abusive connections from 20 loopback addresses (silent sockets, trickled
/// request heads, SEND floods, oversized frames, garbage) and 45 silent ones at once
/// from a 21st, against per-IP, rate and time limits, while a well-behaved client on
/// 127.0.0.1 gets every message in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_abusive_connections_do_not_stop_a_good_client() {
    let _ = rlimit::increase_nofile_limit(8192);
    let mut c = config();
    c.security.max_connections_per_ip = 40;
    c.security.send_rate = 50;
    c.security.send_burst = 50;
    c.security.header_read_timeout = Duration::from_secs(1);
    c.limits.time_to_first_frame = Duration::from_secs(2);
    c.limits.max_frame_size = 4096;
    let r = start(c).await;

    let mut good = Client::ws(r.http, &WsOpts::default()).await.unwrap();
    good.expect_connected(&[]).await;
    good.try_subscribe("1", "/topic/good").await.unwrap();

    let (http, tcp) = (r.http, r.tcp);
    let mut abusers = tokio::task::JoinSet::new();
    // The first 1 000 come from 20 addresses in a mix of abuses; the last 45 come from
    // one more address at once, all silent, so the per-IP limit has more than 40 to
    // refuse however fast the server closes the others.
    for i in 0..1045u32 {
        let host = if i < 1000 { 1 + i % 20 } else { 21 };
        let from = ip(&format!("127.0.1.{host}"));
        abusers.spawn(async move {
            let to = if i.is_multiple_of(2) { http } else { tcp };
            let Ok(mut s) = tcp_from(Some(from), to).await else {
                return;
            };
            let payload: Vec<u8> = match if i < 1000 { i % 5 } else { 0 } {
                // Silent: hold the socket.
                0 => Vec::new(),
                // Trickled request head / partial frame.
                1 => b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec(),
                // Garbage.
                2 => vec![0xff; 2048],
                // CONNECT then a SEND flood (TCP) / an upgrade then junk (HTTP).
                3 => {
                    let mut v = frame_bytes("CONNECT", &[("accept-version", "1.2")], b"");
                    for _ in 0..500 {
                        v.extend(frame_bytes(
                            "SEND",
                            &[("destination", "/topic/good")],
                            b"spam",
                        ));
                    }
                    v
                }
                // Oversized frame.
                _ => {
                    let mut v = frame_bytes("CONNECT", &[("accept-version", "1.2")], b"");
                    v.extend(frame_bytes(
                        "SEND",
                        &[("destination", "/topic/x")],
                        &[b'z'; 20_000],
                    ));
                    v
                }
            };
            let _ = s.write_all(&payload).await;
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(6), async {
                while let Ok(n) = s.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        });
    }
    // While the abuse runs, the good client must get all 100 messages, in order.
    let publisher = r.publisher.clone();
    let pub_task = tokio::spawn(async move {
        for i in 0..100 {
            publisher
                .publish("/topic/good", &[], format!("m{i}").into_bytes())
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    for i in 0..100 {
        loop {
            let body = good.message(Duration::from_secs(15)).await;
            let body = body.unwrap_or_else(|| panic!("good client starved at m{i}"));
            // The spam SENDs of TCP abusers also land on /topic/good (they may send
            // until their bucket empties); they are not ours.
            if body == "spam" {
                continue;
            }
            assert_eq!(body, format!("m{i}"));
            break;
        }
    }
    pub_task.await.unwrap();
    // Every abuser ends (closed by the server or by its own bound).
    tokio::time::timeout(Duration::from_secs(30), async {
        while abusers.join_next().await.is_some() {}
    })
    .await
    .expect("abusers finished");
    // The per-IP limit did its part: 50 per address, at most 40 admitted.
    let m = reqwest_metrics(r.http).await;
    let refused: f64 = m
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("connections_refused"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no refused counter in {m}"));
    assert!(refused >= 1.0, "{m}");
}

async fn reqwest_metrics(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
