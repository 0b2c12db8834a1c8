//! Relay mode against the REAL brokers `scripts/brokers.sh up` starts: ActiveMQ 5.17
//! (STOMP 127.0.0.1:61613, STOMP+TLS 127.0.0.1:61614) and RabbitMQ 3.10 (STOMP
//! 127.0.0.1:61623). Nothing here is mocked; a broker that is not running is a loud
//! failure naming the command that starts it.
//!
//! Every test holds one lock for its whole run: the broker-restart tests stop and start
//! a broker, and the others must not see that. The lock spans processes too (a loopback
//! port only one process can listen on), so two runs of this suite never overlap. Restart tests leave the broker running
//! even when they fail (a guard starts it on drop).
//!
//! Each test starts two in-process stomp-relay instances on ephemeral loopback ports, as
//! two instances behind a load balancer would be, and drives them with WebSocket
//! clients.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command as Proc;
use std::time::Duration;

use common::*;
use stomp_relay::config::{BrokerKind, Dialect, RelayAddr, RelayMode};
use stomp_relay::relay::{self, RelayOptions};
use stomp_relay::{Config, OwnedFrame, Server};

const ACTIVEMQ: u16 = 61613;
const ACTIVEMQ_TLS: u16 = 61614;
const RABBITMQ: u16 = 61623;
/// The CA `scripts/brokers.sh` generates for ActiveMQ's TLS connector.
const ACTIVEMQ_CA: &str = "/etc/activemq/instances-available/main/tls/ca.pem";
/// Bound on a broker coming back and an instance noticing it.
const RECOVER: Duration = Duration::from_secs(60);
/// How long a client watches for messages that must NOT arrive.
const QUIET: Duration = Duration::from_millis(1000);

static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// A loopback port used as a lock across processes: another run of these tests (a
/// second checkout, a developer next to CI) must not restart a broker under this one.
/// The kernel releases it when the holder exits, so a crashed run leaves no stale lock.
const CROSS_PROCESS_LOCK_PORT: u16 = 61699;

/// Held for a whole test: the in-process lock, then the cross-process one.
struct BrokerLock {
    _across: std::net::TcpListener,
    _within: tokio::sync::MutexGuard<'static, ()>,
}

async fn broker_lock() -> BrokerLock {
    let within = LOCK.lock().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
    loop {
        match std::net::TcpListener::bind(("127.0.0.1", CROSS_PROCESS_LOCK_PORT)) {
            Ok(l) => {
                return BrokerLock {
                    _across: l,
                    _within: within,
                }
            }
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "another run held 127.0.0.1:{CROSS_PROCESS_LOCK_PORT} (the broker test lock) for 15 min: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    ActiveMq,
    RabbitMq,
}

impl Kind {
    fn port(self) -> u16 {
        match self {
            Kind::ActiveMq => ACTIVEMQ,
            Kind::RabbitMq => RABBITMQ,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::ActiveMq => "activemq",
            Kind::RabbitMq => "rabbitmq",
        }
    }
    fn dialect(self) -> Dialect {
        match self {
            Kind::ActiveMq => Dialect::Activemq,
            Kind::RabbitMq => Dialect::Rabbitmq,
        }
    }
    fn login(self) -> &'static str {
        match self {
            Kind::ActiveMq => "admin",
            Kind::RabbitMq => "guest",
        }
    }
}

fn addr(port: u16) -> RelayAddr {
    RelayAddr {
        tls: false,
        host: "127.0.0.1".into(),
        port,
    }
}

/// The harness config with a short graceful shutdown: test clients that stopped
/// reading would otherwise hold every instance for the full default.
fn quick_config() -> Config {
    let mut c = test_config();
    c.limits.shutdown_timeout = Duration::from_millis(500);
    c
}

/// A relay-mode config for `kind` with the given address list.
fn relay_config(kind: Kind, mode: RelayMode, addrs: Vec<RelayAddr>) -> Config {
    let mut c = quick_config();
    c.broker = BrokerKind::Relay;
    c.relay = addrs;
    c.relay_mode = mode;
    c.dialect = kind.dialect();
    c.relay_login = kind.login().into();
    c.relay_passcode = kind.login().into();
    c.system_login = kind.login().into();
    c.system_passcode = kind.login().into();
    c
}

fn require_broker(kind: Kind) {
    if std::net::TcpStream::connect(("127.0.0.1", kind.port())).is_err() {
        panic!(
            "{} is not running on 127.0.0.1:{}: run `scripts/brokers.sh up` (these tests never pass without a real broker)",
            kind.name(),
            kind.port()
        );
    }
}

fn brokers_script(action: &str, kind: Kind) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/brokers.sh");
    let out = Proc::new(script)
        .args([action, kind.name()])
        .output()
        .expect("run scripts/brokers.sh");
    assert!(
        out.status.success(),
        "scripts/brokers.sh {action} {} failed:\n{}",
        kind.name(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the broker again when a restart test ends, even by panic.
struct Restart(Kind);

impl Drop for Restart {
    fn drop(&mut self) {
        brokers_script("start", self.0);
    }
}

/// Waits until `/readyz` answers `want` (200 ready, 503 broker unavailable).
async fn wait_ready(srv: &TestServer, want: u16, within: Duration) {
    wait_ready_at(srv.http, want, within).await
}

/// [`wait_ready`] for a server known by its HTTP address (the binary).
async fn wait_ready_at(http: std::net::SocketAddr, want: u16, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, _) = http_get(http, "/readyz").await;
        if status == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed {status}, wanted {want} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One relay instance on `kind`'s broker, ready.
async fn relay_one(kind: Kind, mode: RelayMode) -> TestServer {
    require_broker(kind);
    let srv = start(relay_config(kind, mode, vec![addr(kind.port())])).await;
    wait_ready(&srv, 200, RECOVER).await;
    srv
}

async fn relay_pair(kind: Kind, mode: RelayMode) -> (TestServer, TestServer) {
    require_broker(kind);
    let a = start(relay_config(kind, mode, vec![addr(kind.port())])).await;
    let b = start(relay_config(kind, mode, vec![addr(kind.port())])).await;
    wait_ready(&a, 200, RECOVER).await;
    wait_ready(&b, 200, RECOVER).await;
    (a, b)
}

async fn stop(srv: TestServer) {
    srv.shutdown.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(15), srv.task).await;
}

/// Sends `body` to `dest` with a `seq` header naming sender and path.
async fn send(c: &mut WsClient, dest: &str, seq: &str) {
    c.send_frame(
        "SEND",
        &[
            ("destination", dest),
            ("seq", seq),
            ("content-type", "text/plain"),
        ],
        seq.as_bytes(),
    )
    .await;
}

/// Collects MESSAGE frames until `n` arrived (panics after `within`), then watches for
/// `QUIET` more to catch duplicates.
async fn collect(c: &mut WsClient, n: usize, within: Duration) -> Vec<OwnedFrame> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while got.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_event(left).await {
            Some(Event::Frame(f)) if f.command.as_str() == "MESSAGE" => got.push(f),
            Some(Event::Frame(f)) => panic!("unexpected frame {f:?}"),
            Some(Event::HeartBeat) => {}
            Some(Event::Closed(code)) => panic!("closed ({code:?}) after {} messages", got.len()),
            None => panic!(
                "only {} of {n} messages within {within:?}: {got:?}",
                got.len()
            ),
        }
    }
    while let Some(e) = c.next_event(QUIET).await {
        match e {
            Event::Frame(f) if f.command.as_str() == "MESSAGE" => got.push(f),
            Event::HeartBeat => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

fn seqs(frames: &[OwnedFrame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            f.header_str("seq")
                .expect("seq header passed through")
                .to_owned()
        })
        .collect()
}

/// The seed scenario: A on instance 1 and B on instance 2 subscribe `/sub/same`; each
/// sends N messages directly to `/sub/same` and N via `/pub/same`; both receive all 4N,
/// once each, in order per sender and path.
async fn seed_scenario(kind: Kind, mode: RelayMode) {
    let _lock = broker_lock().await;
    let (s1, s2) = relay_pair(kind, mode).await;
    let mut a = WsClient::connected(&s1.ws_url(), &[]).await;
    let mut b = WsClient::connected(&s2.ws_url(), &[]).await;
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
            assert_eq!(
                f.header_str("destination"),
                Some("/sub/same"),
                "{who}: {f:?}"
            );
            assert_eq!(f.header_str("content-type"), Some("text/plain"));
            assert_eq!(f.body, f.header_str("seq").unwrap().as_bytes());
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
    let mut a = WsClient::connected(&s1.ws_url(), &[]).await;
    let mut b = WsClient::connected(&s2.ws_url(), &[]).await;
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
    let mut a = WsClient::connected(&s1.ws_url(), &[]).await;
    let mut b = WsClient::connected(&s2.ws_url(), &[]).await;
    a.subscribe("qa", &queue).await;
    b.subscribe("qb", &queue).await;
    let mut p = WsClient::connected(&s1.ws_url(), &[]).await;
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
                    seen.push(f.header_str("seq").unwrap().to_owned());
                    per[i] += 1;
                }
            }
        }
    }
    // Anything more would be a duplicate.
    for c in [&mut a, &mut b] {
        while let Some(e) = c.next_event(Duration::from_millis(700)).await {
            if let Event::Frame(f) = e {
                seen.push(f.header_str("seq").unwrap_or("?").to_owned());
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

fn nonce() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
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
        let mut a = WsClient::connected(&s1.ws_url(), &[]).await;
        let mut b = WsClient::connected(&s2.ws_url(), &[]).await;
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
    require_broker(Kind::ActiveMq);
    assert!(
        Path::new(ACTIVEMQ_CA).is_file(),
        "{ACTIVEMQ_CA} missing: run `scripts/brokers.sh up`"
    );
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
        let backend = relay::start(opts).expect("relay with TLS");
        servers.push(start_with(Server::builder(config).broker(backend)).await);
    }
    for s in &servers {
        wait_ready(s, 200, RECOVER).await;
    }
    let mut a = WsClient::connected(&servers[0].ws_url(), &[]).await;
    let mut b = WsClient::connected(&servers[1].ws_url(), &[]).await;
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
    let untrusted = start_with(Server::builder(config).broker(relay::start(opts).unwrap())).await;
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
    require_broker(Kind::ActiveMq);
    assert!(
        Path::new(ACTIVEMQ_CA).is_file(),
        "{ACTIVEMQ_CA} missing: run `scripts/brokers.sh up`"
    );
    let url = format!("stomps://127.0.0.1:{ACTIVEMQ_TLS}");
    let mut base = vec!["--listen", "127.0.0.1:0", "--shutdown-timeout", "500ms"];
    base.extend(common::broker::activemq_relay_at(&url));
    for mode in ["per-session", "shared"] {
        let mut args = base.clone();
        args.extend(["--relay-mode", mode, "--relay-ca", ACTIVEMQ_CA]);
        let bin = spawn_binary(&args).await;
        wait_ready_at(bin.http, 200, RECOVER).await;
        let ws = format!("ws://{}/ws", bin.http);
        let mut a = WsClient::connected(&ws, &[]).await;
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
    let mut a = WsClient::connected(&s1.ws_url(), &[]).await;
    let mut b = WsClient::connected(&s2.ws_url(), &[]).await;
    a.subscribe("a1", "/sub/restart").await;
    b.subscribe("b1", "/sub/restart").await;

    let guard = Restart(kind);
    brokers_script("stop", kind);
    for c in [&mut a, &mut b] {
        let f = c.expect_frame().await;
        assert_eq!(f.command.as_str(), "ERROR", "{f:?}");
        assert_eq!(
            f.header_str("message"),
            Some("Connection to broker closed.")
        );
        assert_eq!(c.expect_close().await, Some(1002));
    }
    wait_ready(&s1, 503, Duration::from_secs(10)).await;
    let mut c = WsClient::open(&s1.ws_url(), &["v12.stomp"]).await;
    c.send_frame(
        "CONNECT",
        &[("accept-version", "1.2"), ("host", "localhost")],
        b"",
    )
    .await;
    let f = c.expect_frame().await;
    assert_eq!(f.command.as_str(), "ERROR", "{f:?}");
    assert_eq!(f.header_str("message"), Some("Broker not available."));

    drop(guard); // starts the broker and waits for STOMP CONNECTED
    wait_ready(&s1, 200, RECOVER).await;
    wait_ready(&s2, 200, RECOVER).await;
    let mut a = WsClient::connected(&s1.ws_url(), &[]).await;
    let mut b = WsClient::connected(&s2.ws_url(), &[]).await;
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

/// Waits until `/metrics` has the line `want`.
async fn wait_metric(srv: &TestServer, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = srv.metrics().await;
        if m.lines().any(|l| l == want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no `{want}` in /metrics:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Per-session mode: frames a client sends right behind its CONNECT (before the
/// broker's CONNECTED reached the relay) are held and relayed, not dropped.
#[tokio::test]
async fn frames_before_connected_are_held() {
    let _lock = broker_lock().await;
    let (s1, s2) = relay_pair(Kind::ActiveMq, RelayMode::PerSession).await;
    let mut a = WsClient::open(&s1.ws_url(), &["v12.stomp"]).await;
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
    assert_eq!(r.header_str("receipt-id"), Some("sub-a1"), "{r:?}");
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
        let mut a = WsClient::connected(&s1.ws_url(), &hb).await;
        let mut b = WsClient::connected(&s2.ws_url(), &hb).await;
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
    let mut a = WsClient::connected(&s1.ws_url(), &[]).await;
    let mut b = WsClient::connected(&s2.ws_url(), &[]).await;
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
                    let s = f.header_str("seq").unwrap().to_owned();
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
                    let s = f.header_str("seq").unwrap().to_owned();
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
                    let s = f.header_str("seq").unwrap_or("?").to_owned();
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

/// `content-length` and custom headers pass through the relay untouched, and a body
/// with NUL bytes survives (ActiveMQ chooses BytesMessage on `content-length`).
#[tokio::test]
async fn headers_and_binary_bodies_pass_through() {
    let _lock = broker_lock().await;
    for kind in [Kind::ActiveMq, Kind::RabbitMq] {
        for mode in [RelayMode::PerSession, RelayMode::Shared] {
            let (s1, s2) = relay_pair(kind, mode).await;
            let mut a = WsClient::connected(&s1.ws_url(), &[]).await;
            let mut b = WsClient::connected(&s2.ws_url(), &[]).await;
            a.subscribe("a1", "/sub/bin").await;
            let body = b"\x00bin\x00ary \xed\x95\x9c\xea\xb5\xad\x00";
            let len = body.len().to_string();
            b.send_frame(
                "SEND",
                &[
                    ("destination", "/sub/bin"),
                    ("content-length", &len),
                    ("x-trace", "abc:123"),
                    ("seq", "bin-0"),
                ],
                body,
            )
            .await;
            let got = collect(&mut a, 1, Duration::from_secs(10)).await;
            assert_eq!(&got[0].body[..], body, "{kind:?} {mode:?}");
            assert_eq!(
                got[0].header_str("x-trace"),
                Some("abc:123"),
                "{kind:?} {mode:?}"
            );
            stop(s1).await;
            stop(s2).await;
        }
    }
}

/// Log lines written while a test runs (tracing on the test's current-thread runtime).
#[derive(Clone, Default)]
struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The relay's broker credentials never reach a client or the log. ActiveMQ echoes an
/// unknown `transaction` id in its ERROR (`Invalid transaction id: <id>`), so a client
/// that sends the relay passcode as a transaction id would read it back unless the
/// relay redacts broker ERRORs: per-session mode forwards the ERROR to the client, shared
/// mode logs it for the shared connection.
#[tokio::test]
async fn broker_errors_never_echo_relay_credentials() {
    let _lock = broker_lock().await;
    require_broker(Kind::ActiveMq);
    let logs = LogCapture::default();
    let sink = logs.clone();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish(),
    );
    let secret = format!("relay-pw-{}", nonce());
    let system_secret = format!("system-pw-{}", nonce());
    let relay_with = |mode| {
        let mut c = relay_config(Kind::ActiveMq, mode, vec![addr(ACTIVEMQ)]);
        c.relay_login = format!("relay-user-{}", nonce());
        c.relay_passcode = secret.as_str().into();
        c.system_passcode = system_secret.as_str().into();
        c
    };

    let config = relay_with(RelayMode::PerSession);
    let login = config.relay_login.clone();
    let srv = start(config).await;
    wait_ready(&srv, 200, RECOVER).await;
    for probe in [&secret, &login, &system_secret] {
        let mut c = WsClient::connected(&srv.ws_url(), &[]).await;
        c.send_frame(
            "SEND",
            &[("destination", "/sub/redact"), ("transaction", probe)],
            b"x",
        )
        .await;
        let err = c.expect_frame().await;
        assert_eq!(err.command.as_str(), "ERROR", "{err:?}");
        let shown = format!(
            "{:?} {}",
            err.headers
                .iter()
                .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v)))
                .collect::<Vec<_>>(),
            String::from_utf8_lossy(&err.body)
        );
        assert!(
            shown.contains("Invalid transaction id") && shown.contains("***"),
            "the broker's echo arrives, masked: {shown}"
        );
        assert!(!shown.contains(probe.as_str()), "leaked {probe}: {shown}");
    }
    stop(srv).await;

    // Shared mode answers an unknown transaction itself (see
    // `shared_mode_keeps_transactions_per_session`), so the probe never reaches the
    // broker, and its ERROR does not echo the id either.
    let srv = start(relay_with(RelayMode::Shared)).await;
    wait_ready(&srv, 200, RECOVER).await;
    let mut c = WsClient::connected(&srv.ws_url(), &[]).await;
    c.send_frame(
        "SEND",
        &[("destination", "/sub/redact"), ("transaction", &secret)],
        b"x",
    )
    .await;
    let err = c.expect_frame().await;
    assert_eq!(err.command.as_str(), "ERROR", "{err:?}");
    let message = err.header_str("message").unwrap_or("").to_owned();
    assert!(message.contains("has not begun"), "{message}");
    assert!(!format!("{err:?}").contains(secret.as_str()), "{err:?}");
    stop(srv).await;
    let text = logs.text();
    for s in [&secret, &system_secret] {
        assert!(!text.contains(s.as_str()), "log leaked {s}:\n{text}");
    }
}

/// Shared mode, real ActiveMQ: transactions are per session on the one connection all
/// clients share. A committed transaction delivers; one left open by a client that goes
/// away delivers nothing; a frame naming a transaction the session never began (or a
/// second BEGIN) gets an ERROR from the relay, where before it went to the broker and
/// the client heard nothing; the other clients carry on.
#[tokio::test]
async fn shared_mode_keeps_transactions_per_session() {
    let _lock = broker_lock().await;
    let srv = relay_one(Kind::ActiveMq, RelayMode::Shared).await;
    let dest = format!("/sub/tx-{}", nonce());
    let mut reader = WsClient::connected(&srv.ws_url(), &[]).await;
    reader.subscribe("1", &dest).await;

    // Left open, then the client goes away: aborted, never delivered.
    let mut quitter = WsClient::connected(&srv.ws_url(), &[]).await;
    send_in_transaction(&mut quitter, &dest, "t1", "open").await;
    drop(quitter);

    // Committed: delivered.
    let mut writer = WsClient::connected(&srv.ws_url(), &[]).await;
    send_in_transaction(&mut writer, &dest, "t1", "committed").await;
    writer
        .send_frame("COMMIT", &[("transaction", "t1")], b"")
        .await;
    assert_eq!(seqs(&collect(&mut reader, 1, RECOVER).await), ["committed"]);

    // Unknown transactions and a second BEGIN: an ERROR from the relay, then close.
    for (command, tx) in [("SEND", "never"), ("COMMIT", "never"), ("ABORT", "t1")] {
        let mut bad = WsClient::connected(&srv.ws_url(), &[]).await;
        bad.send_frame(command, &[("destination", &dest), ("transaction", tx)], b"")
            .await;
        let err = bad.expect_frame().await;
        assert_eq!(err.command.as_str(), "ERROR", "{command}: {err:?}");
        let message = err.header_str("message").unwrap_or("");
        assert_eq!(
            message,
            format!("{command} names a transaction this session has not begun")
        );
    }
    let mut twice = WsClient::connected(&srv.ws_url(), &[]).await;
    twice
        .send_frame("BEGIN", &[("transaction", "t")], b"")
        .await;
    twice
        .send_frame("BEGIN", &[("transaction", "t")], b"")
        .await;
    let err = twice.expect_frame().await;
    assert_eq!(
        err.header_str("message"),
        Some("BEGIN names a transaction that is already open"),
        "{err:?}"
    );

    // The reader was not disturbed and keeps receiving.
    let mut writer = WsClient::connected(&srv.ws_url(), &[]).await;
    send(&mut writer, &dest, "after").await;
    assert_eq!(seqs(&collect(&mut reader, 1, RECOVER).await), ["after"]);
    stop(srv).await;
}

/// Per-session mode passes the client's `client-id` upstream, so ActiveMQ durable topic
/// subscriptions work through the relay: a message published while the durable
/// subscriber is away is waiting when it comes back under the same id and name.
#[tokio::test]
async fn durable_subscription_survives_an_absence_per_session() {
    let _lock = broker_lock().await;
    let srv = relay_one(Kind::ActiveMq, RelayMode::PerSession).await;
    let n = nonce();
    let client_id = format!("durable-{n}");
    let dest = format!("/sub/durable-{n}");
    let mut away = WsClient::connected(&srv.ws_url(), &[("client-id", &client_id)]).await;
    subscribe_durable(&mut away, &dest).await;
    away.send_frame("DISCONNECT", &[("receipt", "bye")], b"")
        .await;
    assert_eq!(away.expect_frame().await.command.as_str(), "RECEIPT");
    drop(away);
    // Its broker connection is gone (only the system connection is left): the durable
    // subscription is inactive, not removed.
    wait_metric(&srv, "stomp_relay_sessions 1").await;

    let mut writer = WsClient::connected(&srv.ws_url(), &[]).await;
    send(&mut writer, &dest, "while-away").await;
    writer
        .send_frame("DISCONNECT", &[("receipt", "sent")], b"")
        .await;
    assert_eq!(writer.expect_frame().await.command.as_str(), "RECEIPT");

    let mut back = WsClient::connected(&srv.ws_url(), &[("client-id", &client_id)]).await;
    subscribe_durable(&mut back, &dest).await;
    assert_eq!(seqs(&collect(&mut back, 1, RECOVER).await), ["while-away"]);
    // Leave nothing behind at the broker.
    back.send_frame(
        "UNSUBSCRIBE",
        &[("id", "1"), ("activemq.subscriptionName", "keep")],
        b"",
    )
    .await;
    stop(srv).await;
}

/// BEGIN `tx`, then SEND `seq` to `dest` inside it.
async fn send_in_transaction(c: &mut WsClient, dest: &str, tx: &str, seq: &str) {
    c.send_frame("BEGIN", &[("transaction", tx)], b"").await;
    let headers = [("destination", dest), ("transaction", tx), ("seq", seq)];
    c.send_frame("SEND", &headers, seq.as_bytes()).await;
}

/// A durable ActiveMQ SUBSCRIBE (subscription name `keep`), waited for by receipt.
async fn subscribe_durable(c: &mut WsClient, dest: &str) {
    let durable = [
        ("id", "1"),
        ("destination", dest),
        ("activemq.subscriptionName", "keep"),
        ("receipt", "subscribed"),
    ];
    c.send_frame("SUBSCRIBE", &durable, b"").await;
    let r = c.expect_frame().await;
    assert_eq!(r.command.as_str(), "RECEIPT", "{r:?}");
}

/// Shared mode, real RabbitMQ, which answers a bad SEND (`expiration:abc`) with ERROR and
/// closes that connection. Client frames travel on the shared publisher connection, so
/// only it reconnects: the subscriptions stay up and a reader on that instance misses
/// nothing the other instance publishes meanwhile; a frame another client sent right
/// behind the bad one is sent again after the reconnect; the sender of the bad frame
/// gets the broker's reason as an ERROR and is closed. And since client frames wait for the
/// broker to confirm a new upstream SUBSCRIBE, a client that subscribes (no receipt) and
/// at once sends to the same new destination still receives its own message.
#[tokio::test]
async fn a_bad_send_costs_other_clients_nothing_shared() {
    let _lock = broker_lock().await;
    let (s1, s2) = relay_pair(Kind::RabbitMq, RelayMode::Shared).await;
    let dest = format!("/sub/isolation-{}", nonce());
    let mut reader = WsClient::connected(&s1.ws_url(), &[]).await;
    reader.subscribe("1", &dest).await;
    let mut writer = WsClient::connected(&s2.ws_url(), &[]).await;

    let mut bad = WsClient::connected(&s1.ws_url(), &[]).await;
    let mut neighbour = WsClient::connected(&s1.ws_url(), &[]).await;
    bad.send_frame(
        "SEND",
        &[("destination", &dest), ("expiration", "abc")],
        b"refused by the broker",
    )
    .await;
    // Right behind it on the same publisher connection, which the broker closes.
    send(&mut neighbour, &dest, "right-behind").await;
    // Published from the other instance over longer than a reconnect takes (the backoff
    // alone starts at 200 ms).
    let mut want = Vec::new();
    for i in 0..20 {
        let seq = format!("m{i}");
        send(&mut writer, &dest, &seq).await;
        want.push(seq);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut got = seqs(&collect(&mut reader, 21, RECOVER).await);
    let behind = got.iter().position(|s| s == "right-behind");
    assert!(behind.is_some(), "the neighbour's SEND was lost: {got:?}");
    got.remove(behind.unwrap());
    assert_eq!(got, want);
    // The client whose frame the broker refused hears why, and is closed.
    let err = bad.expect_frame().await;
    assert_eq!(err.command.as_str(), "ERROR", "{err:?}");
    let message = err.header_str("message").unwrap_or("");
    assert!(
        message.starts_with("Broker refused the frame: precondition_failed")
            && message.contains("invalid expiration"),
        "{message}"
    );
    assert_eq!(bad.expect_close().await, Some(1002));

    // The publisher is back; subscribe-then-send on one new destination, no receipt.
    let own = format!("/sub/own-{}", nonce());
    let mut c = WsClient::connected(&s1.ws_url(), &[]).await;
    c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", &own)], b"")
        .await;
    send(&mut c, &own, "own").await;
    assert_eq!(seqs(&collect(&mut c, 1, RECOVER).await), ["own"]);
    stop(s1).await;
    stop(s2).await;
}
