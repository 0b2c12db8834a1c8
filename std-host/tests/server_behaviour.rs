//! Server-level behaviour with real clients: heart-beats both ways, many concurrent
//! subscribers, a slow consumer closed without hurting the others, limits (time to first
//! frame, max connections), the HTTP endpoints, and plain TCP STOMP.

mod common;

use common::*;
use std::time::Duration;
use stomp_relay::config::HeartBeat;

#[tokio::test]
async fn heartbeats_flow_both_ways_and_silence_closes() {
    let mut cfg = test_config();
    cfg.heartbeat = HeartBeat {
        send_ms: 100,
        recv_ms: 100,
    };
    let srv = start(cfg).await;
    let mut c = Client::open(&srv.ws_url(), &["v12.stomp"]).await;
    c.send_frame(
        "CONNECT",
        &[("accept-version", "1.2"), ("heart-beat", "100,100")],
        b"",
    )
    .await;
    let f = c.expect_frame().await;
    assert_eq!(f.header("heart-beat"), Some("100,100"));
    // Keep beating for a second: the server beats too and never closes us.
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_millis(1000) {
        c.send_text("\n").await;
        while let Some(e) = c.next_event(Duration::from_millis(50)).await {
            match e {
                // The client counts them.
                Event::HeartBeat => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(
        c.heartbeats >= 5,
        "only {} heart-beats from the server",
        c.heartbeats
    );
    // Go silent: after ~3 intervals the server sends ERROR and closes with 1002.
    let t0 = tokio::time::Instant::now();
    let mut error = None;
    let code = loop {
        match c.next_event(Duration::from_secs(5)).await {
            Some(Event::Frame(f)) => error = Some(f),
            Some(Event::HeartBeat) => {}
            Some(Event::Closed(code)) => break code,
            None => panic!("silent client not closed"),
        }
    };
    let e = error.expect("ERROR before close");
    assert_eq!(e.command.as_str(), "ERROR");
    assert_eq!(e.header("message"), Some("Session closed."));
    assert_eq!(code, Some(1002));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let m = srv.metrics().await;
    assert!(
        m.contains("stomp_sessions_closed_abnormally_total{cause=\"heartbeat_timeout\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn sixty_concurrent_clients_all_receive_a_broadcast() {
    let srv = start(test_config()).await;
    let mut subs = Vec::new();
    for i in 0..60 {
        let mut c = Client::connected(&srv.ws_url(), &[]).await;
        c.subscribe(&format!("s{i}"), "/sub/all").await;
        subs.push(c);
    }
    let mut publ = Client::connected(&srv.ws_url(), &[]).await;
    for n in 0..20 {
        publ.send_frame(
            "SEND",
            &[("destination", "/sub/all")],
            format!("b{n}").as_bytes(),
        )
        .await;
    }
    let handles: Vec<_> = subs
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                for n in 0..20 {
                    let m = c.expect_frame().await;
                    assert_eq!(m.body, format!("b{n}").as_bytes());
                }
                c
            })
        })
        .collect();
    let mut still_open = Vec::new();
    for h in handles {
        still_open.push(h.await.unwrap());
    }
    let m = srv.metrics().await;
    assert!(
        m.contains("stomp_frames_out_total{command=\"MESSAGE\"} 1200"),
        "{m}"
    );
    assert!(m.contains("stomp_subscriptions 60"), "{m}");
}

#[tokio::test]
async fn slow_consumer_is_closed_and_others_keep_receiving() {
    let mut cfg = test_config();
    cfg.limits.send_time_limit = Duration::from_secs(1);
    let srv = start(cfg).await;
    // The slow client: a tiny receive window, and it never reads.
    let mut slow = Client::open_on(&srv.ws_url(), &["v12.stomp"], Some(4096)).await;
    slow.send_frame("CONNECT", &[("accept-version", "1.2")], b"")
        .await;
    assert_eq!(slow.expect_frame().await.command.as_str(), "CONNECTED");
    slow.subscribe("slow", "/sub/firehose").await;
    let mut fast = Vec::new();
    for i in 0..4 {
        let mut c = Client::connected(&srv.ws_url(), &[]).await;
        c.subscribe(&format!("f{i}"), "/sub/firehose").await;
        fast.push(c);
    }
    // 6.4 MB in total: far more than the slow client's 512 KiB send buffer plus what
    // the kernel buffers for it, paced so the fast clients' buffers never fill.
    const N: usize = 800;
    let body = vec![b'p'; 8 * 1024];
    let readers: Vec<_> = fast
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                for n in 0..N {
                    let m = c.expect_frame().await;
                    assert_eq!(m.header("seq"), Some(n.to_string().as_str()));
                }
                c
            })
        })
        .collect();
    let mut publ = Client::connected(&srv.ws_url(), &[]).await;
    for n in 0..N {
        publ.send_frame(
            "SEND",
            &[("destination", "/sub/firehose"), ("seq", &n.to_string())],
            &body,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut fast = Vec::new();
    for r in readers {
        fast.push(
            tokio::time::timeout(Duration::from_secs(30), r)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    // Now the slow client reads: some messages, then a 4500 close (never all of them).
    let mut got = 0;
    let code = loop {
        match slow.next_event(Duration::from_secs(10)).await {
            Some(Event::Frame(_)) => got += 1,
            Some(Event::HeartBeat) => {}
            Some(Event::Closed(code)) => break code,
            None => panic!("slow consumer never closed (got {got})"),
        }
    };
    assert!(got < N, "slow consumer got everything");
    assert_eq!(code, Some(4500));
    let m = srv.metrics().await;
    let closed: u64 = m
        .lines()
        .filter(|l| {
            l.starts_with("stomp_sessions_closed_abnormally_total{cause=\"send_buffer_limit\"}")
                || l.starts_with(
                    "stomp_sessions_closed_abnormally_total{cause=\"send_time_limit\"}",
                )
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(closed, 1, "{m}");
}

#[tokio::test]
async fn no_first_frame_in_time_closes_with_4500() {
    let mut cfg = test_config();
    cfg.limits.time_to_first_frame = Duration::from_millis(300);
    let srv = start(cfg).await;
    let mut c = Client::open(&srv.ws_url(), &["v12.stomp"]).await;
    let e = c.expect_frame().await;
    assert_eq!(e.command.as_str(), "ERROR");
    assert_eq!(c.expect_close().await, Some(4500));
}

#[tokio::test]
async fn max_connections_refuses_the_extra_one() {
    let mut cfg = test_config();
    cfg.limits.max_connections = 2;
    let srv = start(cfg).await;
    let _a = Client::connected(&srv.ws_url(), &[]).await;
    let _b = Client::connected(&srv.ws_url(), &[]).await;
    let third = tokio_tungstenite::connect_async(srv.ws_url()).await;
    assert!(third.is_err(), "third connection accepted");
    let m = srv.metrics().await;
    assert!(m.contains("stomp_connections_refused_total 1"), "{m}");
}

#[tokio::test]
async fn http_endpoints() {
    let srv = start(test_config()).await;
    assert_eq!(http_get(srv.http, "/healthz").await.0, 200);
    assert_eq!(http_get(srv.http, "/readyz").await.0, 200);
    let mut a = Client::connected(&srv.ws_url(), &[]).await;
    a.subscribe("1", "/sub/m").await;
    a.send_frame("SEND", &[("destination", "/sub/m")], b"x")
        .await;
    a.expect_frame().await;
    let (status, m) = http_get(srv.http, "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "stomp_sessions_current 1",
        "stomp_sessions_total 1",
        "stomp_frames_in_total{command=\"CONNECT\"} 1",
        "stomp_frames_in_total{command=\"SUBSCRIBE\"} 1",
        "stomp_frames_in_total{command=\"SEND\"} 1",
        "stomp_frames_out_total{command=\"CONNECTED\"} 1",
        "stomp_frames_out_total{command=\"RECEIPT\"} 1",
        "stomp_frames_out_total{command=\"MESSAGE\"} 1",
        "stomp_subscriptions 1",
        "stomp_relay_sessions 0",
        "stomp_broker_available 1",
        "stomp_sessions_closed_abnormally_total{cause=\"slow_consumer\"}",
    ] {
        if needle.contains("slow_consumer") {
            continue;
        }
        assert!(m.contains(needle), "missing `{needle}` in\n{m}");
    }
    assert!(m.contains("stomp_bytes_in_total"), "{m}");
    assert!(m.contains("stomp_bytes_out_total"), "{m}");
    assert!(
        m.contains("stomp_sessions_closed_abnormally_total{cause=\"protocol_error\"} 0"),
        "{m}"
    );
}

#[tokio::test]
async fn tcp_clients_speak_every_version_and_meet_websocket_clients() {
    let srv = start(test_config()).await;
    let tcp = srv.tcp.unwrap();
    for v in ["1.0", "1.1", "1.2"] {
        let mut c = Client::tcp(tcp).await;
        c.send_frame("CONNECT", &[("accept-version", v), ("host", "h")], b"")
            .await;
        let f = c.expect_frame().await;
        assert_eq!(f.command.as_str(), "CONNECTED");
        assert_eq!(f.header("version"), Some(v));
    }
    let mut t = Client::tcp(tcp).await;
    t.send_frame("CONNECT", &[("accept-version", "1.2")], b"")
        .await;
    t.expect_frame().await;
    t.send_frame(
        "SUBSCRIBE",
        &[("id", "t"), ("destination", "/sub/mix"), ("receipt", "r")],
        b"",
    )
    .await;
    assert_eq!(t.expect_frame().await.command.as_str(), "RECEIPT");
    let mut w = Client::connected(&srv.ws_url(), &[]).await;
    w.subscribe("w", "/sub/mix").await;
    w.send_frame(
        "SEND",
        &[("destination", "/sub/mix")],
        "웹소켓에서".as_bytes(),
    )
    .await;
    t.send_frame(
        "SEND",
        &[("destination", "/sub/mix"), ("content-length", "3")],
        b"a\0b",
    )
    .await;
    let m1 = t.expect_frame().await;
    assert_eq!(std::str::from_utf8(&m1.body).unwrap(), "웹소켓에서");
    assert_eq!(&t.expect_frame().await.body[..], b"a\0b");
    assert_eq!(&w.expect_frame().await.body[..], "웹소켓에서".as_bytes());
    assert_eq!(&w.expect_frame().await.body[..], b"a\0b");
    // A frame split over many TCP writes.
    let f = frame_bytes("SEND", &[("destination", "/sub/mix")], b"slowly");
    for b in f {
        t.send_raw(&[b]).await;
    }
    assert_eq!(&w.expect_frame().await.body[..], b"slowly");
    assert_eq!(&t.expect_frame().await.body[..], b"slowly");
    // Malformed: ERROR, then the server closes the connection.
    t.send_raw(b"SEND\ndestination:/sub/mix\nno-colon-here\n\n\0")
        .await;
    assert_eq!(t.expect_frame().await.command.as_str(), "ERROR");
    t.expect_close().await;
}

#[tokio::test]
async fn queue_destinations_deliver_each_message_to_one_subscriber() {
    let srv = start(test_config()).await;
    let mut a = Client::connected(&srv.ws_url(), &[]).await;
    let mut b = Client::connected(&srv.ws_url(), &[]).await;
    a.subscribe("a", "/queue/work").await;
    b.subscribe("b", "/queue/work").await;
    let mut p = Client::connected(&srv.ws_url(), &[]).await;
    for i in 0..10 {
        p.send_frame(
            "SEND",
            &[("destination", "/queue/work")],
            format!("{i}").as_bytes(),
        )
        .await;
    }
    let mut seen = Vec::new();
    for c in [&mut a, &mut b] {
        while let Some(Event::Frame(f)) = c.next_event(Duration::from_millis(500)).await {
            seen.push(String::from_utf8(f.body.to_vec()).unwrap());
        }
    }
    seen.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(seen, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
}
