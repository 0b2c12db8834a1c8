//! Several stomp-relay instances behind nginx on clustered brokers (issue 15): the real
//! binaries, the shipped `deploy/nginx/nginx.conf`, and the brokers of
//! `scripts/brokers.sh cluster up` (a 3-node RabbitMQ cluster, an ActiveMQ network pair).
//!
//! The guarantee these tests hold the relay to (docs/relay.md, "Clusters"):
//! - a SEND the relay answered with RECEIPT was confirmed by the broker: a subscriber on a
//!   node that stayed up receives it (at least once: a frame unconfirmed when its node
//!   died is sent again, so it may arrive twice; on the ActiveMQ pair, what the dead
//!   broker confirmed but had not forwarded over its bridge yet is lost with it);
//! - a client session is not closed by a broker node failure in shared mode; topic
//!   subscribers miss what was published while their instance resubscribed on the next
//!   node (topics are not durable), one gap, and receive everything after it in order;
//! - an instance killed with SIGKILL loses only its own clients, who reconnect through
//!   nginx to the others;
//! - every request of a SockJS session reaches the instance holding it (the config's
//!   session-id hash), while sessions spread over the instances.
//!
//! Skipped (with the reason) where nginx or the cluster is missing, except under CI=true.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{self, KillOnDrop};
use common::{spawn_binary, Binary, Client, Event, Frame};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cluster {
    /// stomp-c1..c3, one RabbitMQ cluster.
    Rabbit,
    /// pair-a and pair-b, two ActiveMQ brokers joined by a network connector.
    ActiveMqPair,
}

impl Cluster {
    fn stomp_ports(self) -> &'static [u16] {
        match self {
            Cluster::Rabbit => &[61631, 61632, 61633],
            Cluster::ActiveMqPair => &[61641, 61642],
        }
    }

    /// `brokers.sh cluster kill` names, in the order of `stomp_ports`.
    fn node_names(self) -> &'static [&'static str] {
        match self {
            Cluster::Rabbit => &["c1", "c2", "c3"],
            Cluster::ActiveMqPair => &["pair-a", "pair-b"],
        }
    }

    /// Relay flags naming the nodes in `order` (indices into `stomp_ports`) as the
    /// failover list.
    fn relay_args(self, mode: &str, order: &[usize]) -> Vec<String> {
        let urls: Vec<String> = order
            .iter()
            .map(|&i| format!("stomp://127.0.0.1:{}", self.stomp_ports()[i]))
            .collect();
        let (dialect, login) = match self {
            Cluster::Rabbit => ("rabbitmq", "guest"),
            Cluster::ActiveMqPair => ("activemq", "admin"),
        };
        let mut args: Vec<String> = [
            "--broker",
            "relay",
            "--relay-mode",
            mode,
            "--dialect",
            dialect,
            "--relay-login",
            login,
            "--relay-passcode",
            login,
            "--system-login",
            login,
            "--system-passcode",
            login,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["--relay".into(), urls.join(",")]);
        if self == Cluster::Rabbit {
            args.extend(["--virtual-host".into(), "/".into()]);
        }
        args
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn brokers_sh(args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(repo().join("scripts/brokers.sh"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("bash scripts/brokers.sh")
}

/// Why nginx cannot run here, if it cannot.
fn nginx_missing() -> Option<String> {
    Command::new("nginx")
        .arg("-v")
        .output()
        .is_err()
        .then(|| "nginx is not installed (apt-get install nginx-light)".to_string())
}

/// Skips (returns false) for `why`, or panics under CI=true, where nothing may be missing.
fn skip_unless_ci(why: Option<String>) -> bool {
    match why {
        None => true,
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => panic!("{why}"),
        Some(why) => {
            eprintln!("SKIPPED: {why}");
            false
        }
    }
}

/// True when nginx and the cluster are there; otherwise skips (fails under CI=true).
fn require_cluster() -> bool {
    let why = if let Some(why) = nginx_missing() {
        Some(why)
    } else {
        let out = brokers_sh(&["cluster", "status"]);
        (!out.status.success()).then(|| {
            format!(
                "the broker cluster is not up (scripts/brokers.sh cluster up):\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };
    skip_unless_ci(why)
}

/// Brings every cluster node back when a test that killed one ends, failed or not.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let out = brokers_sh(&["cluster", "up"]);
        if !out.status.success() && !std::thread::panicking() {
            panic!(
                "scripts/brokers.sh cluster up after the test: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// One test at a time: they kill shared broker nodes.
async fn cluster_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

async fn instance(args: &[String]) -> Binary {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend(args.iter().map(String::as_str));
    spawn_binary(&all).await
}

/// The status of GET `path`, or `None` while nothing accepts on `addr`.
async fn status_of(addr: SocketAddr, path: &str) -> Option<u16> {
    tokio::net::TcpStream::connect(addr).await.ok()?;
    let got = tokio::time::timeout(Duration::from_secs(2), common::http_get(addr, path)).await;
    got.ok().map(|(status, _)| status)
}

/// Waits until `/readyz` answers 200 (the instance reached its broker).
async fn wait_ready(http: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if status_of(http, "/readyz").await == Some(200) {
            return;
        }
        assert!(Instant::now() < deadline, "{http} not ready within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sessions_current(http: SocketAddr) -> u64 {
    let (_, body) = common::http_get(http, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix("stomp_sessions_current "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no stomp_sessions_current in {http}/metrics"))
}

/// nginx running `deploy/nginx/nginx.conf` with its addresses replaced by these.
struct Nginx {
    child: KillOnDrop,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    async fn start(instances: &[SocketAddr]) -> Nginx {
        assert_eq!(
            instances.len(),
            3,
            "the shipped config names three instances"
        );
        let port = process::free_port();
        let mut conf = std::fs::read_to_string(repo().join("deploy/nginx/nginx.conf"))
            .expect("deploy/nginx/nginx.conf");
        conf = conf.replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"));
        for (i, addr) in instances.iter().enumerate() {
            conf = conf.replace(&format!("127.0.0.1:808{}", i + 1), &addr.to_string());
        }
        let dir = std::env::temp_dir().join(format!("stomp-relay-nginx-{port}"));
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let (child, log) = process::spawn_logged(
            Command::new("nginx")
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .args(["-g", "daemon off;"]),
        )
        .expect("nginx");
        let mut child = KillOnDrop(child);
        let lb: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while status_of(lb, "/readyz").await != Some(200) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nginx exited ({status}): {}", process::text(&log));
            }
            assert!(
                Instant::now() < deadline,
                "nginx not ready: {}",
                process::text(&log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Nginx { child, port, dir }
    }

    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM, not the KILL of KillOnDrop: the master stops its worker on TERM, and a
        // killed master leaves the worker behind, orphaned and listening.
        process::terminate(&mut self.child, Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three instances (failover list of instance `i` from `order(i)`) and nginx before them.
struct Deployment {
    instances: Vec<Binary>,
    lb: Nginx,
}

impl Deployment {
    async fn start(cluster: Cluster, mode: &str, order: impl Fn(usize) -> Vec<usize>) -> Self {
        let mut instances = Vec::new();
        for i in 0..3 {
            instances.push(instance(&cluster.relay_args(mode, &order(i))).await);
        }
        for b in &instances {
            wait_ready(b.http).await;
        }
        let addrs: Vec<SocketAddr> = instances.iter().map(|b| b.http).collect();
        let lb = Nginx::start(&addrs).await;
        Deployment { instances, lb }
    }

    async fn sessions(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for b in &self.instances {
            out.push(sessions_current(b.http).await);
        }
        out
    }
}

fn seq_of(f: &Frame) -> Option<u32> {
    f.header("seq")?.parse().ok()
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Seen {
    seqs: Vec<u32>,
    closes: usize,
    errors: Vec<String>,
}

impl Seen {
    fn unique(&self) -> HashSet<u32> {
        self.seqs.iter().copied().collect()
    }

    fn duplicates(&self) -> usize {
        self.seqs.len() - self.unique().len()
    }

    /// Seqs below `total` never received.
    fn missing(&self, total: u32) -> Vec<u32> {
        let got = self.unique();
        (0..total).filter(|s| !got.contains(s)).collect()
    }

    /// Each seq at its first arrival, in arrival order (a resent frame may come again).
    fn firsts(&self) -> Vec<u32> {
        let mut seen = HashSet::new();
        self.seqs
            .iter()
            .filter(|s| seen.insert(**s))
            .copied()
            .collect()
    }

    /// Where the first arrivals go backwards, with the arrivals around it (what a failed
    /// [`Seen::in_order`] shows, so a rare failover race can be read from its message).
    fn disorder(&self) -> String {
        let firsts = self.firsts();
        let Some(k) = firsts.windows(2).position(|w| w[0] >= w[1]) else {
            return "in order".into();
        };
        let at = self
            .seqs
            .iter()
            .position(|s| *s == firsts[k + 1])
            .unwrap_or(0);
        format!(
            "first arrival {} after {}; arrivals around it: {:?}",
            firsts[k + 1],
            firsts[k],
            &self.seqs[at.saturating_sub(20)..(at + 20).min(self.seqs.len())]
        )
    }

    /// First arrivals in increasing order (a resent frame may come again later).
    fn in_order(&self) -> bool {
        self.firsts().windows(2).all(|w| w[0] < w[1])
    }
}

/// How long a subscriber keeps collecting: until `until`, or a short linger (for late
/// duplicates) once the last seq arrived.
struct Window {
    last: u32,
    until: Instant,
}

impl Window {
    fn new(last: u32, until: Instant) -> Window {
        Window { last, until }
    }

    fn remaining(&self) -> Option<Duration> {
        self.until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    fn record(&mut self, seen: &mut Seen, f: &Frame) {
        if let Some(s) = seq_of(f) {
            seen.seqs.push(s);
            let linger = Instant::now() + Duration::from_millis(500);
            if s == self.last && linger < self.until {
                self.until = linger;
            }
        }
    }
}

/// Subscribes through `url` and records MESSAGE seqs until `last` arrived (plus a short
/// linger for duplicates) or `until`. With `reconnect`, a closed session connects again
/// (through the same url) and resubscribes.
async fn collect(url: String, dest: String, last: u32, until: Instant, reconnect: bool) -> Seen {
    let mut seen = Seen::default();
    let mut c = Client::connected(&url, &[]).await;
    c.subscribe("s", &dest).await;
    let mut window = Window::new(last, until);
    loop {
        let Some(wait) = window.remaining() else {
            return seen;
        };
        match c.next_event(wait).await {
            Some(Event::Frame(f)) if f.command.as_str() == "MESSAGE" => {
                window.record(&mut seen, &f)
            }
            Some(Event::Frame(f)) if f.command.as_str() == "ERROR" => {
                seen.errors
                    .push(f.header("message").unwrap_or("?").to_string());
                return seen;
            }
            Some(Event::Closed(_)) => {
                seen.closes += 1;
                if !reconnect {
                    return seen;
                }
                c = Client::connected(&url, &[]).await;
                c.subscribe("s", &dest).await;
            }
            Some(_) => {}
            None => return seen,
        }
    }
}

/// `n` subscribers through nginx, each collecting on its own task (see [`collect`]).
fn subscribers(
    d: &Deployment,
    n: usize,
    dest: &str,
    last: u32,
    until: Instant,
    reconnect: bool,
) -> Vec<tokio::task::JoinHandle<Seen>> {
    (0..n)
        .map(|_| {
            let task = collect(d.lb.ws_url(), dest.to_string(), last, until, reconnect);
            tokio::spawn(task)
        })
        .collect()
}

async fn seen_by(tasks: Vec<tokio::task::JoinHandle<Seen>>) -> Vec<Seen> {
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.expect("subscriber task"));
    }
    seen
}

/// Sends `total` SENDs with `seq` headers at `rate`/s, each with a receipt; returns the
/// seqs the relay confirmed, and the ERRORs and closes the publisher saw.
async fn publish(url: String, dest: String, total: u32, rate: u32) -> (HashSet<u32>, Seen) {
    let mut p = Client::connected(&url, &[]).await;
    let mut confirmed = HashSet::new();
    let mut trouble = Seen::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let on = |e: Option<Event>, confirmed: &mut HashSet<u32>, trouble: &mut Seen| match e {
        Some(Event::Frame(f)) if f.command.as_str() == "RECEIPT" => {
            if let Some(s) = f.header("receipt-id").and_then(|r| r.parse().ok()) {
                confirmed.insert(s);
            }
            true
        }
        Some(Event::Frame(f)) if f.command.as_str() == "ERROR" => {
            trouble
                .errors
                .push(f.header("message").unwrap_or("?").to_string());
            false
        }
        Some(Event::Closed(_)) => {
            trouble.closes += 1;
            false
        }
        Some(_) => true,
        None => false,
    };
    for seq in 0..total {
        tick.tick().await;
        let s = seq.to_string();
        p.send_frame(
            "SEND",
            &[("destination", &dest), ("seq", &s), ("receipt", &s)],
            format!("message {seq} {}", "x".repeat(200)).as_bytes(),
        )
        .await;
        while on(
            p.next_event(Duration::ZERO).await,
            &mut confirmed,
            &mut trouble,
        ) {}
        if trouble.closes > 0 || !trouble.errors.is_empty() {
            return (confirmed, trouble);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while confirmed.len() < total as usize && Instant::now() < deadline {
        if !on(
            p.next_event(Duration::from_millis(200)).await,
            &mut confirmed,
            &mut trouble,
        ) && (trouble.closes > 0 || !trouble.errors.is_empty())
        {
            break;
        }
    }
    (confirmed, trouble)
}

/// A subscriber straight on a broker node (raw STOMP over TCP), beside the relays.
async fn witness(port: u16, login: &str, dest: &str) -> Client {
    let mut w = Client::tcp(format!("127.0.0.1:{port}").parse().unwrap()).await;
    w.send_frame(
        "CONNECT",
        &[
            ("accept-version", "1.2"),
            ("host", "/"),
            ("login", login),
            ("passcode", login),
        ],
        b"",
    )
    .await;
    assert_eq!(w.expect_frame().await.command.as_str(), "CONNECTED");
    w.send_frame(
        "SUBSCRIBE",
        &[("id", "w"), ("destination", dest), ("receipt", "w")],
        b"",
    )
    .await;
    assert_eq!(w.expect_frame().await.command.as_str(), "RECEIPT");
    w
}

async fn witness_collect(mut w: Client, last: u32, until: Instant) -> Seen {
    let mut seen = Seen::default();
    let mut window = Window::new(last, until);
    loop {
        let Some(wait) = window.remaining() else {
            return seen;
        };
        match w.next_event(wait).await {
            Some(Event::Frame(f)) if f.command.as_str() == "MESSAGE" => {
                window.record(&mut seen, &f)
            }
            Some(Event::Closed(_)) | None => return seen,
            Some(_) => {}
        }
    }
}

/// Clients spread by nginx over three instances share topics through the cluster, in both
/// relay modes; each instance names a different node first, so a message crosses nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_behind_nginx_share_topics_on_the_cluster() {
    if !require_cluster() {
        return;
    }
    let _lock = cluster_lock().await;
    for cluster in [Cluster::Rabbit, Cluster::ActiveMqPair] {
        let nodes = cluster.stomp_ports().len();
        for mode in ["per-session", "shared"] {
            let d = Deployment::start(cluster, mode, |i| {
                (0..nodes).map(|k| (i + k) % nodes).collect()
            })
            .await;
            let dest = format!("/topic/cluster-share-{mode}-{}", std::process::id());
            let mut subs = Vec::new();
            for _ in 0..6 {
                let mut c = Client::connected(&d.lb.ws_url(), &[]).await;
                c.subscribe("s", &dest).await;
                subs.push(c);
            }
            let spread = d.sessions().await;
            assert!(
                spread.iter().all(|&n| n >= 1),
                "{cluster:?} {mode}: nginx left an instance without sessions: {spread:?}"
            );
            let total = 50;
            let (confirmed, trouble) = publish(d.lb.ws_url(), dest.clone(), total, 200).await;
            assert_eq!(
                confirmed.len(),
                total as usize,
                "{cluster:?} {mode}: {trouble:?}"
            );
            for (i, c) in subs.iter_mut().enumerate() {
                let mut got = Vec::new();
                while got.len() < total as usize {
                    match c.next_event(Duration::from_secs(10)).await {
                        Some(Event::Frame(f)) if f.command.as_str() == "MESSAGE" => {
                            got.push(seq_of(&f).unwrap())
                        }
                        Some(Event::HeartBeat) => {}
                        other => {
                            panic!("{cluster:?} {mode}: subscriber {i} got {other:?} after {got:?}")
                        }
                    }
                }
                assert_eq!(
                    got,
                    (0..total).collect::<Vec<_>>(),
                    "{cluster:?} {mode}: subscriber {i}"
                );
            }
            eprintln!("{cluster:?} {mode}: sessions per instance {spread:?}, {total} messages to 6 subscribers");
        }
    }
}

/// One broker node killed while a publisher sends 500 msg/s to 30 subscribers (shared
/// mode, every instance on that node first): no client session closes, every confirmed
/// SEND reaches a subscriber on a surviving node, and the relay's subscribers lose one
/// gap at most and receive everything after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_node_killed_mid_stream_shared_mode_fails_over() {
    if !require_cluster() {
        return;
    }
    let _lock = cluster_lock().await;
    for cluster in [Cluster::Rabbit, Cluster::ActiveMqPair] {
        let _restore = Restore;
        let nodes = cluster.stomp_ports().len();
        let d = Deployment::start(cluster, "shared", |_| (0..nodes).collect()).await;
        let dest = format!("/topic/cluster-kill-{}", std::process::id());
        let (rate, total) = (500u32, 3000u32);
        let last = total - 1;
        let until = Instant::now() + Duration::from_secs(40);
        let login = if cluster == Cluster::Rabbit {
            "guest"
        } else {
            "admin"
        };
        let w = witness(*cluster.stomp_ports().last().unwrap(), login, &dest).await;
        let witness_task = tokio::spawn(witness_collect(w, last, until));
        let subs = subscribers(&d, 30, &dest, last, until, false);
        // Subscriptions settle upstream before the publisher starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let publisher = tokio::spawn(publish(d.lb.ws_url(), dest.clone(), total, rate));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let sessions = d.sessions().await;
        assert_eq!(
            sessions.iter().sum::<u64>(),
            31,
            "{cluster:?}: sessions {sessions:?}"
        );
        let killed = cluster.node_names()[0];
        let kill = tokio::task::spawn_blocking(move || brokers_sh(&["cluster", "kill", killed]));
        let out = kill.await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let killed_at = Instant::now();

        let (confirmed, trouble) = publisher.await.unwrap();
        let witness = witness_task.await.unwrap();
        let seen = seen_by(subs).await;
        let failover = killed_at.elapsed();

        assert_eq!(
            trouble.closes, 0,
            "{cluster:?}: publisher closed: {trouble:?}"
        );
        assert!(
            trouble.errors.is_empty(),
            "{cluster:?}: publisher: {trouble:?}"
        );
        assert_eq!(
            confirmed.len(),
            total as usize,
            "{cluster:?}: the relay confirmed {} of {total} SENDs",
            confirmed.len()
        );
        let lost_confirmed: Vec<u32> = {
            let got = witness.unique();
            let mut v: Vec<u32> = confirmed
                .iter()
                .filter(|s| !got.contains(s))
                .copied()
                .collect();
            v.sort();
            v
        };
        let mut table = BTreeMap::new();
        for (i, s) in seen.iter().enumerate() {
            let missing = s.missing(total);
            assert_eq!(s.closes, 0, "{cluster:?}: subscriber {i} was closed: {s:?}");
            assert!(
                s.errors.is_empty(),
                "{cluster:?}: subscriber {i}: {:?}",
                s.errors
            );
            assert!(
                s.in_order(),
                "{cluster:?}: subscriber {i} out of order: {}; missing {missing:?}",
                s.disorder()
            );
            // One gap (the resubscription on the next node), then everything.
            if let (Some(first), Some(&lastm)) = (missing.first(), missing.last()) {
                assert_eq!(
                    (lastm - first + 1) as usize,
                    missing.len(),
                    "{cluster:?}: subscriber {i} lost more than one run: {missing:?}"
                );
                assert!(
                    lastm < total - rate,
                    "{cluster:?}: subscriber {i} still missing messages of the last second"
                );
            }
            *table.entry((missing.len(), s.duplicates())).or_insert(0) += 1;
        }
        eprintln!(
            "{cluster:?}: killed {killed}; publisher {total} at {rate}/s, all confirmed; \
             witness on the last node: {} received, {} confirmed lost, {} duplicates; \
             subscribers (lost, duplicates) -> count: {table:?}; sessions per instance \
             at the kill: {sessions:?}; {failover:?} from the kill to the end",
            witness.unique().len(),
            lost_confirmed.len(),
            witness.duplicates()
        );
        // RabbitMQ confirms a SEND once every queue it routes to (on any node) has it.
        // An ActiveMQ network bridge forwards non-persistent messages after the confirm,
        // so what pair-a confirmed and had not forwarded yet dies with it: the broker's
        // guarantee, not the relay's. That is one run of messages, those pair-a held at
        // the kill: how many depends on how far the bridge lagged behind the publisher
        // (18 at most in four runs on a quiet machine, 103 with the JVMs short of CPU),
        // so the bound is time, one second of this publisher, not a count.
        let allowed = if cluster == Cluster::Rabbit {
            0
        } else {
            rate as usize
        };
        let one_run = lost_confirmed
            .first()
            .zip(lost_confirmed.last())
            .is_none_or(|(a, b)| (b - a + 1) as usize == lost_confirmed.len());
        assert!(
            lost_confirmed.len() <= allowed && one_run,
"{cluster:?}: confirmed SENDs never reached the surviving node (more than one second of the publisher, or not one run): {lost_confirmed:?}"
        );
        assert!(
            witness.duplicates() <= 200,
            "{cluster:?}: {} duplicates, more than the frames in flight at the kill",
            witness.duplicates()
        );
    }
}

/// An instance killed with SIGKILL: only its own clients see their session end; they
/// reconnect through nginx to the other two and receive the rest, and the clients of the
/// other instances lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_killed_loses_only_its_clients_who_reconnect_through_nginx() {
    if !require_cluster() {
        return;
    }
    let _lock = cluster_lock().await;
    let mut d = Deployment::start(Cluster::Rabbit, "shared", |i| vec![i, (i + 1) % 3]).await;
    let dest = format!("/topic/cluster-instance-kill-{}", std::process::id());
    let (rate, total) = (200u32, 1000u32);
    let last = total - 1;
    let until = Instant::now() + Duration::from_secs(30);
    let subs = subscribers(&d, 9, &dest, last, until, true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = d.sessions().await;
    assert_eq!(before, [3, 3, 3], "nginx spread 9 sessions as {before:?}");
    // The publisher talks to the first instance directly: it must outlive the kill.
    let direct = format!("ws://{}/ws", d.instances[0].http);
    let publisher = tokio::spawn(publish(direct, dest.clone(), total, rate));
    tokio::time::sleep(Duration::from_secs(1)).await;
    d.instances[1].child.start_kill().expect("SIGKILL");
    d.instances[1].child.wait().await.unwrap();

    let (confirmed, trouble) = publisher.await.unwrap();
    assert!(
        trouble.closes == 0 && trouble.errors.is_empty(),
        "{trouble:?}"
    );
    assert_eq!(confirmed.len(), total as usize);
    let seen = seen_by(subs).await;
    let reconnected: Vec<&Seen> = seen.iter().filter(|s| s.closes > 0).collect();
    assert_eq!(
        reconnected.len(),
        before[1] as usize,
        "the killed instance held {} sessions; closed: {:?}",
        before[1],
        seen.iter().map(|s| s.closes).collect::<Vec<_>>()
    );
    for (i, s) in seen.iter().enumerate() {
        assert!(s.errors.is_empty(), "subscriber {i}: {:?}", s.errors);
        assert!(s.in_order(), "subscriber {i} out of order");
        let missing = s.missing(total);
        if s.closes == 0 {
            assert!(
                missing.is_empty(),
                "subscriber {i} on a live instance lost {missing:?}"
            );
        } else {
            assert_eq!(s.closes, 1, "subscriber {i}");
            assert!(
                missing.iter().all(|&m| m < total - rate),
                "subscriber {i} reconnected but misses the last second: {missing:?}"
            );
        }
    }
    eprintln!(
        "instance kill: sessions before {before:?}; {} reconnected through nginx, losing {:?} \
         messages each",
        reconnected.len(),
        reconnected
            .iter()
            .map(|s| s.missing(total).len())
            .collect::<Vec<_>>()
    );
}

/// SockJS's HTTP transports spread one session over many requests; the shipped config's
/// `hash $sockjs_session` must send all of them to the instance holding the session
/// (without it, a session's xhr_send lands on another instance and gets 404), while
/// different sessions still spread over the instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockjs_sessions_keep_their_instance_through_nginx() {
    if !skip_unless_ci(nginx_missing()) {
        return;
    }
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(instance(&["--sockjs".to_string()]).await);
    }
    let addrs: Vec<SocketAddr> = instances.iter().map(|b| b.http).collect();
    let lb = Nginx::start(&addrs).await;
    let lb_addr: SocketAddr = format!("127.0.0.1:{}", lb.port).parse().unwrap();
    let post = |path: String, body: Vec<u8>| async move {
        common::http_request(lb_addr, "POST", &path, &[], &body).await
    };
    let sockjs_send = |command: &str, headers: &[(&str, &str)], body: &[u8]| {
        let frame = String::from_utf8(common::frame_bytes(command, headers, body)).unwrap();
        serde_json::to_vec(&[frame]).unwrap()
    };
    const SESSIONS: u64 = 12;
    let nonce = std::process::id();
    for i in 0..SESSIONS {
        let at = |t: &str| format!("/ws/{:03}/s{nonce}x{i}/{t}", i % 1000);
        let open = post(at("xhr"), Vec::new()).await;
        assert_eq!(open.body, "o\n", "session {i} open: {open:?}");
        // Separate requests, each a new connection to nginx: only affinity keeps them
        // on the instance that opened the session.
        let topic = format!("/topic/affinity.{nonce}.{i}");
        for body in [
            sockjs_send(
                "CONNECT",
                &[("accept-version", "1.2"), ("host", "localhost")],
                b"",
            ),
            sockjs_send("SUBSCRIBE", &[("id", "0"), ("destination", &topic)], b""),
            sockjs_send(
                "SEND",
                &[("destination", &topic)],
                format!("hi {i}").as_bytes(),
            ),
        ] {
            let sent = post(at("xhr_send"), body).await;
            assert_eq!(sent.status, 204, "session {i}: {sent:?}");
        }
        let mut seen = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen.contains(&format!("hi {i}")) {
            assert!(Instant::now() < deadline, "session {i} got only {seen:?}");
            seen.push_str(&post(at("xhr"), Vec::new()).await.body);
        }
        assert!(
            seen.starts_with("a[\"CONNECTED\\n"),
            "session {i}: {seen:?}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let per_instance = loop {
        let mut n = Vec::new();
        for a in &addrs {
            n.push(sessions_current(*a).await);
        }
        if n.iter().sum::<u64>() == SESSIONS || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        per_instance.iter().sum::<u64>(),
        SESSIONS,
        "{per_instance:?}"
    );
    assert!(
        per_instance.iter().all(|&n| n < SESSIONS),
        "every session on one instance: {per_instance:?}"
    );
}
