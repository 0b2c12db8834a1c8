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

#[path = "../common/mod.rs"]
mod common;
mod failover;
mod passthrough;
mod private;
mod scenarios;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command as Proc;
use std::time::Duration;

use common::*;
use stomp_relay::config::{BrokerKind, Dialect, RelayAddr, RelayMode};
use stomp_relay::relay::{self, RelayOptions};
use stomp_relay::{Config, Server};

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
            Kind::ActiveMq => Dialect::ActiveMq,
            Kind::RabbitMq => Dialect::RabbitMq,
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
    c.dialect = Some(kind.dialect());
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

/// ActiveMQ up, with the TLS connector's CA that `scripts/brokers.sh` generates.
fn require_activemq_tls() {
    require_broker(Kind::ActiveMq);
    assert!(
        Path::new(ACTIVEMQ_CA).is_file(),
        "{ACTIVEMQ_CA} missing: run `scripts/brokers.sh up`"
    );
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
    relay_pair_with(kind, mode, Some(kind.dialect())).await
}

/// [`relay_pair`] with `dialect` as `--dialect` (`None`: not given, detected).
async fn relay_pair_with(
    kind: Kind,
    mode: RelayMode,
    dialect: Option<Dialect>,
) -> (TestServer, TestServer) {
    require_broker(kind);
    let config = || {
        let mut c = relay_config(kind, mode, vec![addr(kind.port())]);
        c.dialect = dialect;
        c
    };
    let a = start(config()).await;
    let b = start(config()).await;
    wait_ready(&a, 200, RECOVER).await;
    wait_ready(&b, 200, RECOVER).await;
    (a, b)
}

async fn stop(srv: TestServer) {
    srv.shutdown.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(15), srv.task).await;
}

/// Sends `body` to `dest` with a `seq` header naming sender and path.
async fn send(c: &mut Client, dest: &str, seq: &str) {
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
async fn collect(c: &mut Client, n: usize, within: Duration) -> Vec<Frame> {
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

fn seqs(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            f.header("seq")
                .expect("seq header passed through")
                .to_owned()
        })
        .collect()
}

fn nonce() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
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
