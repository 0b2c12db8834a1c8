//! Smoke test of the `stomp-load` tool against the real `stomp-relay` binary (simple
//! broker, ephemeral loopback ports): a tiny fan-out in both modes and transports, an
//! idle run that reads the server's RSS, and the tool's errors for bad input. The real
//! benchmark runs are scripts/bench.sh; these only prove the tool measures and reports.
//!
//! The server is another package's binary, so the test asks cargo to build it (a no-op
//! after `cargo test --workspace`) and takes its path from cargo's JSON messages.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    ws: String,
    tcp: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `stomp-relay` executable, built once per test binary in this profile.
fn server_binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", "stomp-relay", "--bin", "stomp-relay"])
            .args(["--message-format", "json"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build -p stomp-relay");
        assert!(
            out.status.success(),
            "cargo build -p stomp-relay failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["target"]["name"] == "stomp-relay")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no stomp-relay executable")
    })
}

/// The WebSocket/HTTP address in the server's startup log line
/// (`... listen=127.0.0.1:40123 tcp=Some(127.0.0.1:40124) ...`), if `line` is that line.
fn logged_listen_addr(line: &str) -> Option<&str> {
    line.split("listen=").nth(1)?.split_whitespace().next()
}

/// The STOMP-over-TCP address in the server's startup log line, if it is that line.
fn logged_tcp_addr(line: &str) -> Option<&str> {
    line.split("tcp=Some(").nth(1)?.split(')').next()
}

fn start_server() -> Server {
    let mut child = Command::new(server_binary())
        .args(["--listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stomp-relay");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut ws, mut tcp) = (None, None);
    while ws.is_none() || tcp.is_none() {
        assert!(
            Instant::now() < deadline,
            "stomp-relay did not report its ports"
        );
        let line = lines
            .next()
            .expect("stomp-relay exited before listening")
            .unwrap();
        if let Some(addr) = logged_listen_addr(&line) {
            ws = Some(addr.to_string());
        }
        if let Some(addr) = logged_tcp_addr(&line) {
            tcp = Some(addr.to_string());
        }
    }
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        ws: format!("ws://{}/ws", ws.unwrap()),
        tcp: format!("stomp://{}", tcp.unwrap()),
    }
}

fn load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stomp-load"))
        .args(args)
        .output()
        .expect("run stomp-load")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The value of `key=` in a `--format kv` line.
fn kv(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key} not a number in {line}"))
}

#[test]
fn fanout_max_rate_over_websocket_delivers_everything_to_every_subscriber() {
    let server = start_server();
    let pid = server.child.id().to_string();
    let out = load(&[
        "fanout",
        "--url",
        &server.ws,
        "--subscribers",
        "5",
        "--duration",
        "1",
        "--destination",
        "/topic/bench",
        "--server-pid",
        &pid,
        "--format",
        "kv",
    ]);
    let line = stdout(&out);
    assert!(out.status.success(), "{line}\n{}", stderr(&out));
    let published = kv(&line, "published");
    assert!(published > 0.0, "{line}");
    assert_eq!(kv(&line, "delivered"), published * 5.0, "{line}");
    assert_eq!(kv(&line, "lost"), 0.0);
    assert_eq!(kv(&line, "out_of_order"), 0.0);
    assert!(kv(&line, "deliveries_per_s") > 0.0);
    assert!(kv(&line, "server_cpu_us_per_delivery") >= 0.0);
}

#[test]
fn fanout_at_a_fixed_rate_over_tcp_reports_latency_percentiles() {
    let server = start_server();
    let out = load(&[
        "fanout",
        "--url",
        &server.tcp,
        "--subscribers",
        "5",
        "--duration",
        "1",
        "--rate",
        "500",
        "--destination",
        "/sub/bench",
        "--label",
        "simple tcp",
    ]);
    let row = stdout(&out);
    assert!(out.status.success(), "{row}\n{}", stderr(&out));
    // A markdown row: label, scenario, figure, details.
    assert!(
        row.starts_with("| simple tcp | fan-out 1->5 (tcp, 1 target(s)), 256 B, 500/s |"),
        "{row}"
    );
    assert!(row.contains("p50 ") && row.contains("p99 "), "{row}");
    assert!(row.contains("| 0 lost, 0 out of order,"), "{row}");
}

#[test]
fn fanout_splits_subscribers_over_several_urls() {
    let server = start_server();
    let subs = format!("{},{}", server.ws, server.tcp);
    let out = load(&[
        "fanout",
        "--url",
        &server.ws,
        "--sub-url",
        &subs,
        "--subscribers",
        "4",
        "--duration",
        "0.5",
        "--format",
        "kv",
        "--count-port",
        server.tcp.rsplit(':').next().unwrap(),
    ]);
    let line = stdout(&out);
    assert!(out.status.success(), "{line}\n{}", stderr(&out));
    assert_eq!(kv(&line, "targets"), 2.0);
    assert_eq!(kv(&line, "lost"), 0.0);
    // Two of the four subscribers hold TCP connections to the server's STOMP port.
    assert_eq!(kv(&line, "port_connections"), 2.0, "{line}");
}

#[test]
fn idle_sessions_report_server_rss_per_session() {
    let server = start_server();
    let pid = server.child.id().to_string();
    let out = load(&[
        "idle",
        "--url",
        &server.ws,
        "--sessions",
        "50",
        "--server-pid",
        &pid,
        "--settle",
        "0.2",
        "--format",
        "kv",
    ]);
    let line = stdout(&out);
    assert!(out.status.success(), "{line}\n{}", stderr(&out));
    assert_eq!(kv(&line, "sessions"), 50.0);
    assert!(kv(&line, "rss_after_kib") > 0.0, "{line}");
    assert!(kv(&line, "kib_per_session").is_finite());
}

#[test]
fn bad_input_gets_a_clear_error_not_a_hang() {
    let out = load(&["fanout", "--url", "ws://10.1.2.3:80/ws"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--url") && stderr(&out).contains("loopback"),
        "{}",
        stderr(&out)
    );

    let out = load(&["fanout", "--rate", "fast"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--rate"), "{}", stderr(&out));

    // Nothing listens on port 1: a connection error naming the target, exit 1.
    let out = load(&[
        "fanout",
        "--url",
        "stomp://127.0.0.1:1",
        "--subscribers",
        "1",
        "--duration",
        "0.1",
        "--connect-timeout",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("stomp://127.0.0.1:1"),
        "{}",
        stderr(&out)
    );

    let out = load(&["idle", "--url", "ws://127.0.0.1:1/ws", "--sessions", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--server-pid"), "{}", stderr(&out));
}
