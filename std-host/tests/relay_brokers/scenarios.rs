//! The seed scenario (two instances share a topic through each broker in each relay
//! mode), queues delivering to one subscriber, and simple mode as the control.

use super::*;

/// The seed scenario: A on instance 1 and B on instance 2 subscribe `/sub/same`; each
/// sends N messages directly to `/sub/same` and N via `/pub/same`; both receive all 4N,
/// once each, in order per sender and path.
async fn seed_scenario(kind: Kind, mode: RelayMode) {
    seed_scenario_with(kind, mode, Some(kind.dialect())).await
}

/// The seed scenario with `dialect` as `--dialect`; `None` leaves it to detection.
async fn seed_scenario_with(kind: Kind, mode: RelayMode, dialect: Option<Dialect>) {
    let _lock = broker_lock().await;
    let (s1, s2) = relay_pair_with(kind, mode, dialect).await;
    for srv in [&s1, &s2] {
        // The dialect in use, as the dashboard shows it: the broker's own.
        let (status, body) = http_get(srv.http, "/api/stats").await;
        assert_eq!(status, 200, "{body}");
        let want = format!(r#""dialect":"{}""#, kind.dialect());
        assert!(body.contains(&want), "{want} not in {body}");
    }
    let mut a = Client::connected(&s1.ws_url(), &[]).await;
    let mut b = Client::connected(&s2.ws_url(), &[]).await;
    a.subscribe("a1", "/sub/same").await;
    b.subscribe("b1", "/sub/same").await;
    const N: usize = 10;
    for i in 0..N {
        send(&mut a, "/sub/same", &format!("A-direct-{i}")).await;
        send(&mut b, "/sub/same", &format!("B-direct-{i}")).await;
        send(&mut a, "/pub/same", &format!("A-pub-{i}")).await;
        send(&mut b, "/pub/same", &format!("B-pub-{i}")).await;
    }
    for (who, c) in [("A", &mut a), ("B", &mut b)] {
        let got = collect(c, 4 * N, Duration::from_secs(20)).await;
        let seqs = seqs(&got);
        let unique: HashSet<&String> = seqs.iter().collect();
        assert_eq!(
            (seqs.len(), unique.len()),
            (4 * N, 4 * N),
            "{who} must get every message once: {seqs:?}"
        );
        for f in &got {
            assert_eq!(f.header("destination"), Some("/sub/same"), "{who}: {f:?}");
            assert_eq!(f.header("content-type"), Some("text/plain"));
            assert_eq!(f.body, f.header("seq").unwrap().as_bytes());
        }
        for stream in ["A-direct-", "B-direct-", "A-pub-", "B-pub-"] {
            let order: Vec<usize> = seqs
                .iter()
                .filter_map(|s| s.strip_prefix(stream))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(
                order,
                (0..N).collect::<Vec<_>>(),
                "{who} {stream} out of order"
            );
        }
    }
    stop(s1).await;
    stop(s2).await;
}

/// Without `--dialect` the relay speaks the broker's own (issue 19.4): on ActiveMQ
/// `generic` would leave `/sub/same` a queue, each message reaching one subscriber.
#[tokio::test]
async fn seed_activemq_dialect_detected() {
    seed_scenario_with(Kind::ActiveMq, RelayMode::PerSession, None).await;
}

#[tokio::test]
async fn seed_rabbitmq_dialect_detected() {
    seed_scenario_with(Kind::RabbitMq, RelayMode::Shared, None).await;
}

#[tokio::test]
async fn seed_activemq_per_session() {
    seed_scenario(Kind::ActiveMq, RelayMode::PerSession).await;
}

#[tokio::test]
async fn seed_activemq_shared() {
    seed_scenario(Kind::ActiveMq, RelayMode::Shared).await;
}

#[tokio::test]
async fn seed_rabbitmq_per_session() {
    seed_scenario(Kind::RabbitMq, RelayMode::PerSession).await;
}

#[tokio::test]
async fn seed_rabbitmq_shared() {
    seed_scenario(Kind::RabbitMq, RelayMode::Shared).await;
}

/// Why relay mode exists: two simple-broker instances do not share topics.
#[tokio::test]
async fn simple_mode_instances_do_not_share() {
    let _lock = broker_lock().await;
    let s1 = start(quick_config()).await;
    let s2 = start(quick_config()).await;
    let mut a = Client::connected(&s1.ws_url(), &[]).await;
    let mut b = Client::connected(&s2.ws_url(), &[]).await;
    a.subscribe("a1", "/sub/same").await;
    b.subscribe("b1", "/sub/same").await;
    send(&mut b, "/sub/same", "B-direct-0").await;
    send(&mut b, "/pub/same", "B-pub-0").await;
    // B's own instance delivers to B...
    let own = collect(&mut b, 2, Duration::from_secs(5)).await;
    assert_eq!(seqs(&own), ["B-direct-0", "B-pub-0"]);
    // ...but A, on the other instance, never sees them.
    match a.next_event(QUIET).await {
        None => {}
        Some(e) => panic!("A saw {e:?} from another simple-mode instance"),
    }
    stop(s1).await;
    stop(s2).await;
}

/// `/queue/...` stays a queue across instances: each message reaches exactly one of two
/// consumers on different instances.
async fn queue_scenario(kind: Kind, mode: RelayMode) {
    let _lock = broker_lock().await;
    let (s1, s2) = relay_pair(kind, mode).await;
    // A fresh queue name: ActiveMQ keeps undelivered queue messages across runs.
    let queue = format!("/queue/work-{}-{}", std::process::id(), nonce());
    let mut a = Client::connected(&s1.ws_url(), &[]).await;
    let mut b = Client::connected(&s2.ws_url(), &[]).await;
    a.subscribe("qa", &queue).await;
    b.subscribe("qb", &queue).await;
    let mut p = Client::connected(&s1.ws_url(), &[]).await;
    const N: usize = 40;
    for i in 0..N {
        send(&mut p, &queue, &format!("job-{i}")).await;
    }
    let mut seen = Vec::new();
    let mut per = [0usize; 2];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < N && tokio::time::Instant::now() < deadline {
        for (i, c) in [&mut a, &mut b].into_iter().enumerate() {
            while let Some(e) = c.next_event(Duration::from_millis(50)).await {
                if let Event::Frame(f) = e {
                    assert_eq!(f.command.as_str(), "MESSAGE", "{f:?}");
                    seen.push(f.header("seq").unwrap().to_owned());
                    per[i] += 1;
                }
            }
        }
    }
    // Anything more would be a duplicate.
    for c in [&mut a, &mut b] {
        while let Some(e) = c.next_event(Duration::from_millis(700)).await {
            if let Event::Frame(f) = e {
                seen.push(f.header("seq").unwrap_or("?").to_owned());
            }
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        (seen.len(), unique.len()),
        (N, N),
        "each job exactly once over both consumers (got {per:?}): {seen:?}"
    );
    // Both brokers round-robin between the two consumers (observed: 20/20).
    assert!(
        per[0] > 0 && per[1] > 0,
        "one consumer got every job: {per:?}"
    );
    stop(s1).await;
    stop(s2).await;
}

#[tokio::test]
async fn queue_activemq_per_session() {
    queue_scenario(Kind::ActiveMq, RelayMode::PerSession).await;
}

#[tokio::test]
async fn queue_activemq_shared() {
    queue_scenario(Kind::ActiveMq, RelayMode::Shared).await;
}

#[tokio::test]
async fn queue_rabbitmq_per_session() {
    queue_scenario(Kind::RabbitMq, RelayMode::PerSession).await;
}

#[tokio::test]
async fn queue_rabbitmq_shared() {
    queue_scenario(Kind::RabbitMq, RelayMode::Shared).await;
}

/// Issue 13.4: `/sub/<n>/a.b` and `/sub/<n>/a/b` are two destinations on the broker as
/// in simple mode, not one topic that both subscribers read.
async fn dotted_scenario(kind: Kind, mode: RelayMode) {
    let _lock = broker_lock().await;
    let (s1, s2) = relay_pair(kind, mode).await;
    let base = format!("/sub/dots{}", nonce());
    let (dotted, slashed) = (format!("{base}/a.b"), format!("{base}/a/b"));
    let mut a = Client::connected(&s1.ws_url(), &[]).await;
    let mut b = Client::connected(&s2.ws_url(), &[]).await;
    a.subscribe("d", &dotted).await;
    b.subscribe("s", &slashed).await;
    let mut p = Client::connected(&s2.ws_url(), &[]).await;
    send(&mut p, &dotted, "to-dotted").await;
    send(&mut p, &slashed, "to-slashed").await;
    for (who, c, dest, seq) in [
        ("dotted", &mut a, &dotted, "to-dotted"),
        ("slashed", &mut b, &slashed, "to-slashed"),
    ] {
        let got = collect(c, 1, Duration::from_secs(10)).await;
        assert_eq!(seqs(&got), [seq], "{who} ({kind:?} {mode:?})");
        assert_eq!(got[0].header("destination"), Some(dest.as_str()));
    }
    stop(s1).await;
    stop(s2).await;
}

#[tokio::test]
async fn dotted_and_slashed_stay_apart_activemq() {
    dotted_scenario(Kind::ActiveMq, RelayMode::PerSession).await;
    dotted_scenario(Kind::ActiveMq, RelayMode::Shared).await;
}

#[tokio::test]
async fn dotted_and_slashed_stay_apart_rabbitmq() {
    dotted_scenario(Kind::RabbitMq, RelayMode::PerSession).await;
    dotted_scenario(Kind::RabbitMq, RelayMode::Shared).await;
}
