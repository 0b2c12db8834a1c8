//! The chat page and the dashboard in a real browser: Debian's chromium driven by
//! playwright-core (`tests/browser/chat.mjs`), against real `stomp-relay` processes.
//!
//! - `chat_across_two_relay_instances`: two instances in relay mode on ActiveMQ; Alice
//!   and 민지 on instance A, Bob on instance B exchange messages (Korean included) in one
//!   room; the dashboards show the sessions of each instance, relay mode and the broker
//!   address; instance B is restarted and Bob's page reconnects with backoff.
//! - `chat_and_dashboard_on_one_simple_instance`: the same pages on one simple-broker
//!   instance; its dashboard shows both sessions.
//!
//! Screenshots go to `target/artifacts/browser/` (or `$CARGO_TARGET_DIR/artifacts/...`);
//! with `STOMP_RELAY_UPDATE_SCREENSHOTS=1` the relay run also refreshes
//! `docs/screenshots/{chat,dashboard}.png` for the README. Missing chromium, node or the
//! npm packages are a loud failure naming the install command (`.ci/run` installs them),
//! never a silent pass. Every child process is bounded in time and killed at the end.

mod common;

use common::broker::ACTIVEMQ_RELAY;
use common::process::{self, drain, free_port, spawn_relay, text, KillOnDrop, Log};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Longest one browser scenario may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest an instance may take to accept HTTP after spawning.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
const TOKEN: &str = "browser-test-admin";

/// Browser scenarios run one at a time: two chromiums on a 2-core machine only slow
/// each other down.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn require_tools() {
    let dir = manifest().join("tests/browser");
    let mut missing = Vec::new();
    if !Path::new(&chromium()).is_file() {
        missing.push(format!(
            "{} not found: `apt-get install chromium` (Debian's; never a downloaded browser)",
            chromium()
        ));
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => missing.push("`node` (Node 20) is not on PATH".into()),
    }
    if !dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        missing.push(
            "playwright-core is not installed: run `npm ci --prefix std-host/tests/browser`".into(),
        );
    }
    if !missing.is_empty() {
        panic!(
            "browser test tools missing (these tests never pass silently):\n  {}",
            missing.join("\n  ")
        );
    }
}

fn require_activemq() {
    // A broker restarted by an earlier test binary may still be coming back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect("127.0.0.1:61613").is_err() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(250));
    }
    if TcpStream::connect("127.0.0.1:61613").is_err() {
        panic!("ActiveMQ is not listening on 127.0.0.1:61613: run `scripts/brokers.sh up activemq` (this test never passes without a real broker)");
    }
}

/// Where screenshots go: `<target dir>/artifacts/browser`.
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("../target"));
    target.join("artifacts/browser")
}

/// The real `stomp-relay` binary, killed when dropped.
struct Instance {
    child: KillOnDrop,
    addr: SocketAddr,
    args: Vec<String>,
    log: Log,
}

impl Instance {
    fn start(args: &[&str]) -> Instance {
        let mut last = String::new();
        for _ in 0..3 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            match Instance::start_on(addr, args.iter().map(|s| s.to_string()).collect()) {
                Ok(i) => return i,
                Err(e) => last = e,
            }
        }
        panic!("stomp-relay did not start: {last}");
    }

    fn start_on(addr: SocketAddr, args: Vec<String>) -> Result<Instance, String> {
        let listen = ["--listen".to_owned(), addr.to_string()];
        let (mut child, log) =
            spawn_relay(listen.iter().chain(&args)).map_err(|e| format!("spawn: {e}"))?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited with {status}: {}", text(&log)));
            }
            if TcpStream::connect(addr).is_ok() {
                return Ok(Instance {
                    child: KillOnDrop(child),
                    addr,
                    args,
                    log,
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!(
                    "not listening within {STARTUP_TIMEOUT:?}: {}",
                    text(&log)
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the process (SIGTERM: graceful shutdown, clients get ERROR and close 1001),
    /// then starts a new one on the same address.
    fn restart(&mut self) {
        process::terminate(&mut self.child, Duration::from_secs(10));
        let mut last = String::new();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            match Instance::start_on(self.addr, self.args.clone()) {
                Ok(new) => {
                    *self = new;
                    return;
                }
                Err(e) => last = e,
            }
            thread::sleep(Duration::from_millis(200));
        }
        panic!("restart on {} failed: {last}", self.addr);
    }
}

fn vendored_sha256() -> String {
    let v = std::fs::read_to_string(manifest().join("web/vendor/stompjs.version"))
        .expect("vendor/stompjs.version");
    v.split("sha256:")
        .nth(1)
        .expect("sha256 recorded")
        .trim()
        .to_string()
}

/// Runs the browser scenario; `b` is restarted when the script asks.
fn run_scenario(scenario: &str, a: &Instance, mut b: Option<&mut Instance>, docs: Option<PathBuf>) {
    let out = artifacts();
    let cfg = serde_json::json!({
        "scenario": scenario,
        "a": a.url(),
        "b": b.as_ref().map(|i| i.url()),
        "token": TOKEN,
        "artifacts": out.join(scenario),
        "docs": docs,
        "stompjsSha256": vendored_sha256(),
    });
    let mut child = Command::new("node")
        .arg("chat.mjs")
        .arg(cfg.to_string())
        .current_dir(manifest().join("tests/browser"))
        .env("CHROMIUM", chromium())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let err = Log::default();
    drain(child.stderr.take().expect("stderr"), err.clone());
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    // Lines arrive on a thread so the wait below stays bounded even if the script hangs.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let mut transcript = String::new();
    let mut passed = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                transcript.push_str(&line);
                transcript.push('\n');
                if line == "PASS" {
                    passed = true;
                } else if line == "ACTION restart b" {
                    let inst = b.as_deref_mut().expect("a second instance to restart");
                    inst.restart();
                    let _ = writeln!(stdin, "done");
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait().expect("wait node");
    let b_log = b.as_ref().map(|i| text(&i.log)).unwrap_or_default();
    assert!(
        passed && status.success(),
        "browser scenario `{scenario}` failed ({status}):\n--- script ---\n{transcript}\n--- stderr ---\n{}\n--- instance A log ---\n{}\n--- instance B log ---\n{b_log}",
        text(&err),
        text(&a.log),
    );
    eprint!("{transcript}");
}

#[test]
fn chat_across_two_relay_instances() {
    require_tools();
    require_activemq();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut relay = ACTIVEMQ_RELAY.to_vec();
    relay.extend(["--admin-token", TOKEN]);
    let a = Instance::start(&relay);
    let mut b = Instance::start(&relay);
    let docs = std::env::var_os("STOMP_RELAY_UPDATE_SCREENSHOTS")
        .map(|_| manifest().join("../docs/screenshots"));
    run_scenario("relay", &a, Some(&mut b), docs);
}

#[test]
fn chat_over_sockjs_without_websocket_talks_to_a_websocket_page() {
    require_tools();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let a = Instance::start(&[
        "--admin-token",
        TOKEN,
        "--endpoint",
        "/ws-stomp",
        "--sockjs",
    ]);
    run_scenario("sockjs", &a, None, None);
}

#[test]
fn chat_and_dashboard_on_one_simple_instance() {
    require_tools();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let a = Instance::start(&["--admin-token", TOKEN]);
    run_scenario("single", &a, None, None);
}
