//! Broker trouble: failover to a second address, TLS, broker restarts in both modes,
//! frames held before CONNECTED, broker heart-beats on idle sessions.

use super::*;

/// The first `--relay` address refuses connections; the instance uses the second.
#[tokio::test]
async fn failover_to_second_address() {
    let _lock = broker_lock().await;
    require_broker(Kind::ActiveMq);
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed again: nothing listens there
    for mode in [RelayMode::PerSession, RelayMode::Shared] {
        let addrs = vec![addr(dead), addr(ACTIVEMQ)];
        let s1 = start(relay_config(Kind::ActiveMq, mode, addrs.clone())).await;
        let s2 = start(relay_config(Kind::ActiveMq, mode, addrs)).await;
        wait_ready(&s1, 200, RECOVER).await;
        wait_ready(&s2, 200, RECOVER).await;
        let mut a = Client::connected(&s1.ws_url(), &[]).await;
        let mut b = Client::connected(&s2.ws_url(), &[]).await;
        a.subscribe("a1", "/sub/failover").await;
        send(&mut b, "/sub/failover", "B-0").await;
        let got = collect(&mut a, 1, Duration::from_secs(10)).await;
        assert_eq!(seqs(&got), ["B-0"], "{mode:?}");
        let metrics = s1.metrics().await;
        assert!(!metrics.is_empty());
        stop(s1).await;
        stop(s2).await;
    }
}

/// TLS to the broker: `stomps://127.0.0.1:61614` (ActiveMQ's `stomp+ssl` connector with
/// the CA `scripts/brokers.sh` generated), trusted through the relay's CA option.
#[tokio::test]
async fn tls_to_activemq() {
    let _lock = broker_lock().await;
    require_activemq_tls();
    let tls = RelayAddr {
        tls: true,
        host: "127.0.0.1".into(),
        port: ACTIVEMQ_TLS,
    };
    let mut servers = Vec::new();
    for mode in [RelayMode::PerSession, RelayMode::Shared] {
        let config = relay_config(Kind::ActiveMq, mode, vec![tls.clone()]);
        let mut opts = RelayOptions::from_config(&config);
        opts.tls_ca = Some(ACTIVEMQ_CA.into());
        let backend = relay::start(opts, Default::default())
            .expect("relay with TLS")
            .broker;
        servers.push(start_with(Server::builder(config).broker(backend)).await);
    }
    for s in &servers {
        wait_ready(s, 200, RECOVER).await;
    }
    let mut a = Client::connected(&servers[0].ws_url(), &[]).await;
    let mut b = Client::connected(&servers[1].ws_url(), &[]).await;
    a.subscribe("a1", "/sub/tls").await;
    b.subscribe("b1", "/sub/tls").await;
    send(&mut a, "/sub/tls", "A-0").await;
    send(&mut b, "/pub/tls", "B-0").await;
    for c in [&mut a, &mut b] {
        let mut got = seqs(&collect(c, 2, Duration::from_secs(10)).await);
        got.sort();
        assert_eq!(got, ["A-0", "B-0"]);
    }

    // Without the CA the broker's certificate is not trusted: never available.
    let config = relay_config(Kind::ActiveMq, RelayMode::Shared, vec![tls]);
    let mut opts = RelayOptions::from_config(&config);
    opts.tls_ca = None;
    let untrusted = start_with(
        Server::builder(config).broker(relay::start(opts, Default::default()).unwrap().broker),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_ready(&untrusted, 503, Duration::from_secs(1)).await;
    for s in servers.into_iter().chain([untrusted]) {
        stop(s).await;
    }
}

/// `--relay-ca` on the real binary: with ActiveMQ's CA the `stomps://` relay becomes
/// ready and messages go round through the broker over TLS; without it the broker's
/// certificate is untrusted and the instance stays unavailable; a bad CA path (flag or
/// `STOMP_RELAY_RELAY_CA`) is a one-line error naming `--relay-ca`, exit status 2.
#[tokio::test]
async fn relay_ca_flag_trusts_activemq_tls() {
    let _lock = broker_lock().await;
    require_activemq_tls();
    let url = format!("stomps://127.0.0.1:{ACTIVEMQ_TLS}");
    let mut base = vec!["--listen", "127.0.0.1:0", "--shutdown-timeout", "500ms"];
    base.extend(common::broker::activemq_relay_at(&url));
    for mode in ["per-session", "shared"] {
        let mut args = base.clone();
        args.extend(["--relay-mode", mode, "--relay-ca", ACTIVEMQ_CA]);
        let bin = spawn_binary(&args).await;
        wait_ready_at(bin.http, 200, RECOVER).await;
        let ws = format!("ws://{}/ws", bin.http);
        let mut a = Client::connected(&ws, &[]).await;
        a.subscribe("a1", "/sub/tls-flag").await;
        send(&mut a, "/sub/tls-flag", "A-0").await;
        send(&mut a, "/pub/tls-flag", "A-1").await;
        let got = seqs(&collect(&mut a, 2, Duration::from_secs(10)).await);
        assert_eq!(got, ["A-0", "A-1"], "{mode}");
        drop(a);
        drop(bin);
    }

    let untrusted = spawn_binary(&base).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_ready_at(untrusted.http, 503, Duration::from_secs(1)).await;
    drop(untrusted);

    let bad = "/nonexistent/relay-ca.pem";
    for (flag, env) in [(true, None), (false, Some(("STOMP_RELAY_RELAY_CA", bad)))] {
        let mut cmd = Proc::new(env!("CARGO_BIN_EXE_stomp-relay"));
        cmd.args(&base);
        if flag {
            cmd.args(["--relay-ca", bad]);
        }
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run stomp-relay");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("--relay-ca") && err.contains(bad), "{err}");
    }
}

/// Per-session mode, broker restart: clients get ERROR `Connection to broker closed.`,
/// new CONNECTs get `Broker not available.`, `/readyz` follows, and once the broker is
/// back clients reconnect and messages flow again.
#[tokio::test]
async fn restart_per_session_activemq() {
    let _lock = broker_lock().await;
    let kind = Kind::ActiveMq;
    let (s1, s2) = relay_pair(kind, RelayMode::PerSession).await;
    let mut a = Client::connected(&s1.ws_url(), &[]).await;
    let mut b = Client::connected(&s2.ws_url(), &[]).await;
    a.subscribe("a1", "/sub/restart").await;
    b.subscribe("b1", "/sub/restart").await;

    let guard = Restart(kind);
    brokers_script("stop", kind);
    for c in [&mut a, &mut b] {
        let f = c.expect_frame().await;
        assert_eq!(f.command.as_str(), "ERROR", "{f:?}");
        assert_eq!(f.header("message"), Some("Connection to broker closed."));
        assert_eq!(c.expect_close().await, Some(1002));
    }
    wait_ready(&s1, 503, Duration::from_secs(10)).await;
    let mut c = Client::open(&s1.ws_url(), &["v12.stomp"]).await;
    c.send_frame(
        "CONNECT",
        &[("accept-version", "1.2"), ("host", "localhost")],
        b"",
    )
    .await;
    let f = c.expect_frame().await;
    assert_eq!(f.command.as_str(), "ERROR", "{f:?}");
    assert_eq!(f.header("message"), Some("Broker not available."));

    drop(guard); // starts the broker and waits for STOMP CONNECTED
    wait_ready(&s1, 200, RECOVER).await;
    wait_ready(&s2, 200, RECOVER).await;
    let mut a = Client::connected(&s1.ws_url(), &[]).await;
    let mut b = Client::connected(&s2.ws_url(), &[]).await;
    a.subscribe("a1", "/sub/restart").await;
    b.subscribe("b1", "/sub/restart").await;
    send(&mut b, "/sub/restart", "B-after-0").await;
    send(&mut a, "/pub/restart", "A-after-0").await;
    for c in [&mut a, &mut b] {
        let mut got = seqs(&collect(c, 2, Duration::from_secs(10)).await);
        got.sort();
        assert_eq!(got, ["A-after-0", "B-after-0"]);
    }
    // Nothing leaked: once the clients leave, only the system connection is left.
    drop(a);
    drop(b);
    for s in [&s1, &s2] {
        wait_metric(s, "stomp_relay_sessions 1").await;
    }
    stop(s1).await;
    stop(s2).await;
}

/// Per-session mode: frames a client sends right behind its CONNECT (before the
/// broker's CONNECTED reached the relay) are held and relayed, not dropped.
#[tokio::test]
async fn frames_before_connected_are_held() {
    let _lock = broker_lock().await;
    let (s1, s2) = relay_pair(Kind::ActiveMq, RelayMode::PerSession).await;
    let mut a = Client::open(&s1.ws_url(), &["v12.stomp"]).await;
    let mut burst = frame_bytes(
        "CONNECT",
        &[("accept-version", "1.2"), ("host", "localhost")],
        b"",
    );
    burst.extend(frame_bytes(
        "SUBSCRIBE",
        &[
            ("id", "a1"),
            ("destination", "/sub/early"),
            ("receipt", "sub-a1"),
        ],
        b"",
    ));
    burst.extend(frame_bytes(
        "SEND",
        &[("destination", "/sub/early"), ("seq", "A-0")],
        b"A-0",
    ));
    a.send_binary(&burst).await;
    assert_eq!(a.expect_frame().await.command.as_str(), "CONNECTED");
    let r = a.expect_frame().await;
    assert_eq!(r.header("receipt-id"), Some("sub-a1"), "{r:?}");
    let got = collect(&mut a, 1, Duration::from_secs(10)).await;
    assert_eq!(seqs(&got), ["A-0"]);
    stop(s1).await;
    stop(s2).await;
}

/// Heart-beats with the broker run on the relay's own timers: with 1 s heart-beats
/// negotiated upstream and a client that sends nothing for several intervals, the
/// broker keeps the relay's connections and messages still flow.
#[tokio::test]
async fn broker_heartbeats_keep_idle_sessions() {
    let _lock = broker_lock().await;
    require_broker(Kind::ActiveMq);
    for mode in [RelayMode::PerSession, RelayMode::Shared] {
        let mut c = relay_config(Kind::ActiveMq, mode, vec![addr(ACTIVEMQ)]);
        c.heartbeat = stomp_relay::config::HeartBeat {
            send_ms: 1000,
            recv_ms: 1000,
        };
        let s1 = start(c.clone()).await;
        let s2 = start(c).await;
        wait_ready(&s1, 200, RECOVER).await;
        wait_ready(&s2, 200, RECOVER).await;
        // The clients ask for no heart-beats with the server.
        let hb = [("heart-beat", "0,0")];
        let mut a = Client::connected(&s1.ws_url(), &hb).await;
        let mut b = Client::connected(&s2.ws_url(), &hb).await;
        a.subscribe("a1", "/sub/idle").await;
        tokio::time::sleep(Duration::from_millis(4500)).await;
        send(&mut b, "/sub/idle", "B-0").await;
        let got = collect(&mut a, 1, Duration::from_secs(10)).await;
        assert_eq!(seqs(&got), ["B-0"], "{mode:?}");
        stop(s1).await;
        stop(s2).await;
    }
}

/// Shared mode, broker restart: the clients keep their sessions (no ERROR, no close),
/// the instances reconnect and resubscribe, and messages published after the broker
/// came back reach the clients that subscribed before the restart.
async fn restart_shared(kind: Kind) {
    let _lock = broker_lock().await;
    let (s1, s2) = relay_pair(kind, RelayMode::Shared).await;
    let mut a = Client::connected(&s1.ws_url(), &[]).await;
    let mut b = Client::connected(&s2.ws_url(), &[]).await;
    a.subscribe("a1", "/sub/restart").await;
    b.subscribe("b1", "/sub/restart").await;

    let guard = Restart(kind);
    brokers_script("stop", kind);
    wait_ready(&s1, 503, Duration::from_secs(10)).await;
    wait_ready(&s2, 503, Duration::from_secs(10)).await;
    // Sent while the broker is down: held by the instance, published once it is back
    // (after A's own resubscription on the same connection, so A must get both).
    send(&mut a, "/sub/restart", "A-held-0").await;
    send(&mut a, "/pub/restart", "A-held-1").await;
    drop(guard);
    wait_ready(&s1, 200, RECOVER).await;
    wait_ready(&s2, 200, RECOVER).await;

    // The other instance's resubscription may land a moment after this one is ready:
    // probe until A hears B, then check an ordered run.
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut k = 0;
    'probe: loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message after the restart"
        );
        send(&mut b, "/sub/restart", &format!("probe-{k}")).await;
        k += 1;
        while let Some(e) = a.next_event(Duration::from_millis(300)).await {
            match e {
                Event::Frame(f) if f.command.as_str() == "MESSAGE" => {
                    let s = f.header("seq").unwrap().to_owned();
                    if s.starts_with("probe-") {
                        break 'probe;
                    }
                    held.push(s);
                }
                Event::HeartBeat => {}
                other => panic!("A's session did not survive the restart: {other:?}"),
            }
        }
    }
    const N: usize = 10;
    for i in 0..N {
        send(&mut b, "/sub/restart", &format!("B-after-{i}")).await;
        send(&mut a, "/pub/restart", &format!("A-after-{i}")).await;
    }
    for (who, c) in [("A", &mut a), ("B", &mut b)] {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while got.len() < 2 * N {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match c.next_event(left).await {
                Some(Event::Frame(f)) if f.command.as_str() == "MESSAGE" => {
                    let s = f.header("seq").unwrap().to_owned();
                    if s.starts_with("A-held-") {
                        held.push(s);
                    } else if !s.starts_with("probe-") {
                        got.push(s);
                    }
                }
                Some(Event::HeartBeat) => {}
                other => panic!("{who}: {other:?} after {got:?}"),
            }
        }
        if who == "A" {
            while let Some(e) = c.next_event(QUIET).await {
                if let Event::Frame(f) = e {
                    let s = f.header("seq").unwrap_or("?").to_owned();
                    if s.starts_with("A-held-") {
                        held.push(s);
                    }
                }
            }
            held.sort();
            assert_eq!(held, ["A-held-0", "A-held-1"], "held during the outage");
        }
        for stream in ["B-after-", "A-after-"] {
            let order: Vec<usize> = got
                .iter()
                .filter_map(|s| s.strip_prefix(stream))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(order, (0..N).collect::<Vec<_>>(), "{who} {stream}");
        }
    }
    stop(s1).await;
    stop(s2).await;
}

#[tokio::test]
async fn restart_shared_activemq() {
    restart_shared(Kind::ActiveMq).await;
}

#[tokio::test]
async fn restart_shared_rabbitmq() {
    restart_shared(Kind::RabbitMq).await;
}
