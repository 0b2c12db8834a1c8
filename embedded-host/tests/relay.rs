//! The edge node end to end over two in-memory embassy-net stacks: devices on one side,
//! the edge node on the other, relaying to a simulated upstream broker reached through
//! the same link.

mod common;

use common::*;
use embassy_net::{IpEndpoint, Stack};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_time::{Duration, Timer};
use stomp_relay_codec::Command;
use stomp_relay_edge::{Config, Dialect, Edge, EdgeResources, TOO_MANY_SESSIONS};

/// 4 sessions, 2 KiB outbound queues, 4 KiB store-and-forward ring, 1 KiB frames.
type TestEdge = Edge<NoopRawMutex, 4, 2048, 4096, 1024>;
type TestResources = EdgeResources<4, 1024, 1024, 1024, 1024, 1024>;

fn config() -> Config<'static> {
    let upstreams = leak([IpEndpoint::new(PEER_IP.into(), UPSTREAM_PORT)]);
    let mut c = Config::new(upstreams);
    c.upstream_login = "relay-user";
    c.upstream_passcode = "relay-pass";
    c.reconnect_min = Duration::from_millis(50);
    c.reconnect_max = Duration::from_millis(400);
    c.local_heartbeat = (Duration::from_millis(500), Duration::from_millis(500));
    // Loose enough that retransmissions on the lossy link do not look like a dead
    // broker; the heart-beat path itself is still exercised.
    c.upstream_heartbeat = (Duration::from_millis(2000), Duration::from_millis(2000));
    c
}

fn edge_addr() -> IpEndpoint {
    IpEndpoint::new(EDGE_IP.into(), EDGE_PORT)
}

fn leak<T>(t: T) -> &'static mut T {
    Box::leak(Box::new(t))
}

/// Starts network, edge node and simulated upstream; runs `body`.
fn with_edge<F>(
    drop_every: Option<u32>,
    body: impl FnOnce(Stack<'static>, &'static TestEdge, &'static SimUpstream) -> F,
) where
    F: std::future::Future<Output = ()>,
{
    with_edge_config(drop_every, config(), body)
}

fn with_edge_config<F>(
    drop_every: Option<u32>,
    config: Config<'static>,
    body: impl FnOnce(Stack<'static>, &'static TestEdge, &'static SimUpstream) -> F,
) where
    F: std::future::Future<Output = ()>,
{
    let (edge_stack, peer_stack, net) = network(drop_every);
    let edge: &'static TestEdge = leak(TestEdge::new());
    let res: &'static mut TestResources = leak(TestResources::new());
    let cfg: &'static Config<'static> = leak(config);
    let sim = SimUpstream::new();
    let background = join3_unit(net, edge.run(edge_stack, cfg, res), sim.run(peer_stack));
    run_test(
        Duration::from_secs(60),
        background,
        body(peer_stack, edge, sim),
    );
}

async fn wait_upstream_subscribed(sim: &SimUpstream, destination: &str) {
    eventually(Duration::from_secs(10), "upstream SUBSCRIBE", || {
        sim.subs_count(destination) > 0
    })
    .await;
}

fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{}-{:03}", prefix, i)).collect()
}

async fn publish_and_fan_out(
    peer: Stack<'static>,
    edge: &'static TestEdge,
    sim: &'static SimUpstream,
) {
    *sim.observe.borrow_mut() = Some("/topic/sensors".into());
    eventually(Duration::from_secs(10), "upstream connected", || {
        edge.upstream_connected()
    })
    .await;

    let mut b = Client::connected(peer, edge_addr()).await;
    b.subscribe("b-sensors", "/topic/sensors").await;
    b.subscribe("b-cmd", "/topic/cmd").await;
    let mut a = Client::connected(peer, edge_addr()).await;
    a.subscribe("a-cmd", "/topic/cmd").await;
    wait_upstream_subscribed(sim, "/topic/sensors").await;
    wait_upstream_subscribed(sim, "/topic/cmd").await;
    // Two local subscribers on /topic/cmd share one upstream subscription.
    assert_eq!(
        sim.subscribes
            .borrow()
            .iter()
            .filter(|d| *d == "/topic/cmd")
            .count(),
        1
    );
    assert_eq!(edge.upstream_subscriptions(), 2);

    let sent = bodies("reading", 30);
    for body in &sent {
        a.send_frame(
            "SEND",
            &[("destination", "/topic/sensors"), ("unit", "celsius")],
            body.as_bytes(),
        )
        .await;
    }
    for body in &sent {
        let f = b.recv().await.expect("MESSAGE for device B");
        assert_eq!(f.command, Command::Message, "{:?}", f);
        assert_eq!(f.header("subscription"), Some("b-sensors"));
        assert_eq!(f.header("destination"), Some("/topic/sensors"));
        assert_eq!(
            f.header("unit"),
            Some("celsius"),
            "custom headers pass through"
        );
        assert!(f.header("message-id").is_some());
        assert_eq!(f.body_str(), body);
    }
    eventually(
        Duration::from_secs(10),
        "upstream subscriber got all",
        || sim.observed.borrow().len() >= sent.len(),
    )
    .await;
    let observed: Vec<String> = sim
        .observed
        .borrow()
        .iter()
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(
        observed, sent,
        "upstream subscriber sees every reading once, in order"
    );

    // Upstream publishes reach every local subscriber of the destination.
    let cmds = bodies("cmd", 10);
    for c in &cmds {
        sim.publish("/topic/cmd", c);
    }
    for c in &cmds {
        let fb = b.recv().await.expect("command for B");
        assert_eq!(
            (fb.header("subscription"), fb.body_str()),
            (Some("b-cmd"), c.as_str())
        );
        let fa = a.recv().await.expect("command for A");
        assert_eq!(
            (fa.header("subscription"), fa.body_str()),
            (Some("a-cmd"), c.as_str())
        );
    }
    eventually(
        Duration::from_secs(5),
        "every SEND acknowledged upstream",
        || edge.stats().forwarded == sent.len() as u32 && edge.stored_len() == 0,
    )
    .await;
}

#[test]
fn device_publish_reaches_local_and_upstream_subscribers() {
    with_edge(None, publish_and_fan_out);
}

#[test]
fn every_tenth_packet_dropped_still_delivers_in_order() {
    with_edge(Some(10), |peer, edge, sim| {
        publish_and_fan_out(peer, edge, sim)
    });
}

#[test]
fn outage_store_and_forward_delivers_in_order_and_restores_subscriptions() {
    with_edge(None, |peer, edge, sim| async move {
        eventually(Duration::from_secs(10), "upstream connected", || {
            edge.upstream_connected()
        })
        .await;
        let mut b = Client::connected(peer, edge_addr()).await;
        b.subscribe("b1", "/queue/telemetry").await;
        wait_upstream_subscribed(sim, "/queue/telemetry").await;
        let mut a = Client::connected(peer, edge_addr()).await;

        sim.set_online(false);
        eventually(Duration::from_secs(10), "edge notices the outage", || {
            !edge.upstream_connected()
        })
        .await;
        let during = bodies("offline", 12);
        for (n, body) in during.iter().enumerate() {
            let receipt = format!("r{}", n);
            a.send_frame(
                "SEND",
                &[("destination", "/queue/telemetry"), ("receipt", &receipt)],
                body.as_bytes(),
            )
            .await;
            // The edge node takes responsibility for the message while upstream is down.
            let r = a.recv().await.expect("RECEIPT while upstream is down");
            assert_eq!(r.header("receipt-id"), Some(receipt.as_str()));
        }
        Timer::after_millis(300).await;
        assert!(
            sim.received.borrow().is_empty(),
            "nothing can arrive during the outage"
        );
        assert_eq!(edge.stored_len(), during.len());

        sim.set_online(true);
        eventually(
            Duration::from_secs(10),
            "stored messages arrive upstream",
            || sim.received.borrow().len() >= during.len(),
        )
        .await;
        let got: Vec<String> = sim
            .received
            .borrow()
            .iter()
            .map(|r| r.body.clone())
            .collect();
        assert_eq!(got, during, "delivered once each, in the order sent");
        // B's subscription was restored upstream before the ring was flushed, so B
        // (still connected through the outage) receives them too.
        for body in &during {
            let f = b.recv().await.expect("B still connected");
            assert_eq!(f.header("subscription"), Some("b1"));
            assert_eq!(f.body_str(), body);
        }
        assert_eq!(edge.stats().dropped, 0);
        assert!(sim.connects.get() >= 2);
    });
}

/// A 4-session edge node with a deliberately small (512-byte) store-and-forward ring.
type SmallRingEdge = Edge<NoopRawMutex, 4, 2048, 512, 1024>;

#[test]
fn overflow_during_outage_drops_oldest_and_counts() {
    let (edge_stack, peer, net) = network(None);
    let edge: &'static SmallRingEdge = leak(SmallRingEdge::new());
    let res: &'static mut TestResources = leak(TestResources::new());
    let cfg: &'static Config<'static> = leak(config());
    let sim = SimUpstream::new();
    let background = join3_unit(net, edge.run(edge_stack, cfg, res), sim.run(peer));
    run_test(Duration::from_secs(60), background, async move {
        eventually(Duration::from_secs(10), "upstream connected", || {
            edge.upstream_connected()
        })
        .await;
        let mut a = Client::connected(peer, edge_addr()).await;
        sim.set_online(false);
        eventually(Duration::from_secs(10), "edge notices the outage", || {
            !edge.upstream_connected()
        })
        .await;
        let sent = bodies("overflow", 40);
        for body in &sent {
            a.send_frame("SEND", &[("destination", "/queue/q")], body.as_bytes())
                .await;
        }
        eventually(Duration::from_secs(5), "all 40 stored or dropped", || {
            edge.stats().stored == 40
        })
        .await;
        let dropped = edge.stats().dropped as usize;
        let kept = edge.stored_len();
        assert!(dropped > 0, "a 512-byte ring cannot hold 40 messages");
        assert_eq!(dropped + kept, sent.len());

        sim.set_online(true);
        eventually(Duration::from_secs(10), "survivors arrive", || {
            sim.received.borrow().len() >= kept
        })
        .await;
        let got: Vec<String> = sim
            .received
            .borrow()
            .iter()
            .map(|r| r.body.clone())
            .collect();
        assert_eq!(
            got,
            sent[dropped..].to_vec(),
            "the oldest were dropped, the rest arrive in order"
        );
        // The session was never disturbed.
        a.send_frame(
            "SEND",
            &[("destination", "/queue/q"), ("receipt", "after")],
            b"after",
        )
        .await;
        assert_eq!(
            a.recv().await.expect("receipt").header("receipt-id"),
            Some("after")
        );
    });
}

#[test]
fn connection_beyond_n_gets_too_many_sessions_others_unaffected() {
    with_edge(None, |peer, edge, sim| async move {
        eventually(Duration::from_secs(10), "upstream connected", || {
            edge.upstream_connected()
        })
        .await;
        let mut devices = Vec::new();
        for _ in 0..4 {
            devices.push(Client::connected(peer, edge_addr()).await);
        }
        eventually(Duration::from_secs(5), "4 sessions", || {
            edge.active_sessions() == 4
        })
        .await;

        let mut extra = Client::open(peer, edge_addr()).await;
        extra
            .send_frame(
                "CONNECT",
                &[("accept-version", "1.2"), ("host", "edge")],
                b"",
            )
            .await;
        let f = extra.recv().await.expect("ERROR for the fifth");
        assert_eq!(f.command, Command::Error);
        assert_eq!(f.header("message"), Some("Too many sessions"));
        assert!(
            extra.closed_within(Duration::from_secs(3)).await,
            "fifth is closed"
        );
        assert_eq!(edge.stats().rejected_sessions, 1);
        assert!(TOO_MANY_SESSIONS.starts_with(b"ERROR\n"));

        // The four are unaffected.
        for (n, d) in devices.iter_mut().enumerate() {
            let receipt = format!("still-{}", n);
            d.send_frame(
                "SEND",
                &[("destination", "/queue/x"), ("receipt", &receipt)],
                b"hi",
            )
            .await;
            let r = d.recv().await.expect("receipt");
            assert_eq!(r.header("receipt-id"), Some(receipt.as_str()));
        }

        // A freed slot serves the next device.
        devices[0]
            .send_frame("DISCONNECT", &[("receipt", "bye")], b"")
            .await;
        assert_eq!(
            devices[0]
                .recv()
                .await
                .expect("receipt")
                .header("receipt-id"),
            Some("bye")
        );
        eventually(Duration::from_secs(5), "slot freed", || {
            edge.active_sessions() == 3
        })
        .await;
        let _again = Client::connected(peer, edge_addr()).await;
        eventually(Duration::from_secs(10), "all forwarded", || {
            edge.stats().forwarded == 4
        })
        .await;
        assert_eq!(sim.received.borrow().len(), 4);
    });
}

#[test]
fn protocol_errors_get_error_frames_and_close() {
    with_edge(None, |peer, _edge, _sim| async move {
        // Anything before CONNECT.
        let mut c = Client::open(peer, edge_addr()).await;
        c.send_frame("SEND", &[("destination", "/queue/x")], b"early")
            .await;
        let f = c.recv().await.expect("ERROR");
        assert_eq!(f.command, Command::Error);
        assert!(f.header("message").unwrap().contains("CONNECT"));
        assert!(c.closed_within(Duration::from_secs(3)).await);

        // Unsupported version.
        let mut c = Client::open(peer, edge_addr()).await;
        c.send_frame("CONNECT", &[("accept-version", "9.9")], b"")
            .await;
        let f = c.recv().await.expect("ERROR");
        assert_eq!(
            f.header("message"),
            Some("Supported protocol versions are 1.0,1.1,1.2")
        );
        assert_eq!(f.header("version"), Some("1.0,1.1,1.2"));

        // SUBSCRIBE without destination carries the receipt-id back.
        let mut c = Client::connected(peer, edge_addr()).await;
        c.send_frame("SUBSCRIBE", &[("id", "1"), ("receipt", "77")], b"")
            .await;
        let f = c.recv().await.expect("ERROR");
        assert_eq!(f.command, Command::Error);
        assert_eq!(f.header("receipt-id"), Some("77"));
        assert!(c.closed_within(Duration::from_secs(3)).await);

        // Garbage.
        let mut c = Client::connected(peer, edge_addr()).await;
        c.send_raw(b"NOT-A-COMMAND\n\n\0").await;
        let f = c.recv().await.expect("ERROR");
        assert_eq!(f.header("message"), Some("invalid command"));

        // A subscription id already in use is refused by the shared table, with the
        // receipt-id and no RECEIPT.
        let mut c = Client::connected(peer, edge_addr()).await;
        c.subscribe("s1", "/topic/a").await;
        c.send_frame(
            "SUBSCRIBE",
            &[
                ("id", "s1"),
                ("destination", "/topic/b"),
                ("receipt", "dup"),
            ],
            b"",
        )
        .await;
        let f = c.recv().await.expect("ERROR");
        assert_eq!(f.command, Command::Error);
        assert_eq!(f.header("message"), Some("Subscription id already in use"));
        assert_eq!(f.header("receipt-id"), Some("dup"));
        assert!(c.closed_within(Duration::from_secs(3)).await);

        // Transactions are refused, not half-done.
        let mut c = Client::connected(peer, edge_addr()).await;
        c.send_frame("BEGIN", &[("transaction", "t1")], b"").await;
        let f = c.recv().await.expect("ERROR");
        assert_eq!(
            f.header("message"),
            Some("Transactions are not supported by the edge node")
        );
    });
}

#[test]
fn idle_device_gets_heart_beats() {
    with_edge(None, |peer, _edge, _sim| async move {
        let mut c = Client::open(peer, edge_addr()).await;
        // The device sends nothing itself but wants to hear from the edge.
        c.send_frame(
            "CONNECT",
            &[("accept-version", "1.2"), ("heart-beat", "0,200")],
            b"",
        )
        .await;
        assert_eq!(
            c.recv().await.expect("CONNECTED").command,
            Command::Connected
        );
        // Edge offers 500,500: it sends at least every max(500,200) ms.
        let start = std::time::Instant::now();
        let mut beats = 0;
        while beats < 3 {
            match c.next_event(Duration::from_secs(2)).await {
                Some(stomp_relay_test_client::Event::HeartBeat) => beats += 1,
                other => panic!("expected a heart-beat, got {other:?}"),
            }
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    });
}

#[test]
fn silent_device_is_closed_after_missed_heart_beats() {
    with_edge(None, |peer, edge, _sim| async move {
        let mut c = Client::open(peer, edge_addr()).await;
        c.send_frame(
            "CONNECT",
            &[("accept-version", "1.2"), ("heart-beat", "200,200")],
            b"",
        )
        .await;
        let f = c.recv().await.expect("CONNECTED");
        // Edge offers 500,500: it sends every max(500,200) and expects every max(200,500).
        assert_eq!(f.header("heart-beat"), Some("500,500"));
        // Never send anything: closed after 3 x 500 ms with an ERROR.
        let f = c.recv().await.expect("ERROR");
        assert_eq!(f.command, Command::Error);
        assert_eq!(f.header("message"), Some("Session closed."));
        eventually(Duration::from_secs(5), "slot freed", || {
            edge.active_sessions() == 0
        })
        .await;
    });
}

#[test]
fn slow_consumer_is_closed_and_others_get_everything() {
    let mut cfg = config();
    cfg.write_timeout = Duration::from_millis(500);
    with_edge_config(None, cfg, |peer, edge, sim| async move {
        eventually(Duration::from_secs(10), "upstream connected", || {
            edge.upstream_connected()
        })
        .await;
        let mut fast = Client::connected(peer, edge_addr()).await;
        fast.subscribe("fast", "/topic/flood").await;
        // A device with a 256-byte window that stops reading after subscribing.
        let mut slow = Client::open_with_window(peer, edge_addr(), 256).await;
        slow.send_frame("CONNECT", &[("accept-version", "1.2")], b"")
            .await;
        assert_eq!(
            slow.recv().await.expect("CONNECTED").command,
            Command::Connected
        );
        slow.subscribe("slow", "/topic/flood").await;
        wait_upstream_subscribed(sim, "/topic/flood").await;

        let filler = "x".repeat(200);
        let sent: Vec<String> = (0..60).map(|i| format!("{:03}-{}", i, filler)).collect();
        for body in &sent {
            sim.publish("/topic/flood", body);
        }
        for body in &sent {
            let f = fast.recv().await.expect("the fast device keeps receiving");
            assert_eq!(f.body_str(), body, "in order, none lost");
        }
        let closed = embassy_time::with_timeout(Duration::from_secs(10), async {
            while !(edge.stats().slow_consumers == 1 && edge.active_sessions() == 1) {
                Timer::after_millis(10).await;
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "slow device not closed: {:?}, {} sessions",
            edge.stats(),
            edge.active_sessions()
        );
    });
}

#[test]
fn device_without_connect_gets_error_after_connect_timeout() {
    let mut cfg = config();
    cfg.connect_timeout = Duration::from_millis(400);
    with_edge_config(None, cfg, |peer, edge, _sim| async move {
        let mut c = Client::open(peer, edge_addr()).await;
        // Half a CONNECT, then nothing.
        c.send_raw(b"CONNECT\naccept-version:1.2\n").await;
        let f = c.recv().await.expect("ERROR");
        assert_eq!(f.command, Command::Error);
        assert_eq!(
            f.header("message"),
            Some("No CONNECT frame received in time")
        );
        assert!(c.closed_within(Duration::from_secs(3)).await);
        eventually(Duration::from_secs(5), "slot freed", || {
            edge.active_sessions() == 0
        })
        .await;
    });
}

#[test]
fn dialect_maps_destinations_to_the_broker_and_back() {
    let mut cfg = config();
    cfg.dialect = Dialect::ActiveMq;
    with_edge_config(None, cfg, |peer, edge, sim| async move {
        eventually(Duration::from_secs(10), "upstream connected", || {
            edge.upstream_connected()
        })
        .await;
        *sim.observe.borrow_mut() = Some("/topic/sub.chat.room1".into());
        let mut b = Client::connected(peer, edge_addr()).await;
        b.subscribe("b", "/sub/chat/room1").await;
        // ActiveMQ would make /sub/... a queue: the edge subscribes the broadcast form.
        wait_upstream_subscribed(sim, "/topic/sub.chat.room1").await;
        let mut a = Client::connected(peer, edge_addr()).await;
        a.send_frame(
            "SEND",
            &[("destination", "/sub/chat/room1"), ("receipt", "r")],
            b"hello room",
        )
        .await;
        assert_eq!(
            a.recv().await.expect("receipt").header("receipt-id"),
            Some("r")
        );
        let f = b.recv().await.expect("MESSAGE");
        assert_eq!(
            f.header("destination"),
            Some("/sub/chat/room1"),
            "the device's own spelling"
        );
        assert_eq!(f.header("subscription"), Some("b"));
        assert_eq!(f.body_str(), "hello room");
        eventually(Duration::from_secs(5), "upstream subscriber", || {
            sim.observed.borrow().len() == 1
        })
        .await;
        assert_eq!(
            sim.received.borrow()[0].destination,
            "/topic/sub.chat.room1"
        );
        // Broker-native destinations keep their meaning.
        b.subscribe("q", "/queue/jobs").await;
        wait_upstream_subscribed(sim, "/queue/jobs").await;
    });
}
