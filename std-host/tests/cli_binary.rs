//! The real `stomp-relay` binary: configuration errors (exit 2, one line naming the flag
//! or key), `--help`, precedence of flags over environment over file, and graceful
//! shutdown on SIGTERM/SIGINT.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stomp-relay"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn bad_flag_exits_2_naming_it() {
    let out = run(&["--lisen", "127.0.0.1:1"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--lisen"), "{err}");

    let out = run(&["--broker", "kafka"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--broker") && err.contains("kafka"), "{err}");

    let out = run(&["--heartbeat", "often"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--heartbeat"));
}

#[test]
fn malformed_origin_pattern_exits_2_naming_the_flag() {
    // Before, these started and then refused every origin with 403.
    for bad in [
        "https://example.com/app",
        "example.com",
        "https://*.example.com:*",
    ] {
        let out = run(&["--allowed-origin", bad, "--listen", "127.0.0.1:1"], &[]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--allowed-origin") && err.contains(bad),
            "{err}"
        );
    }
}

#[test]
fn bad_config_key_exits_2_naming_it() {
    let dir = std::env::temp_dir().join(format!("stomp-relay-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nsend-bufer = \"1MiB\"\n").unwrap();
    let out = run(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("send-bufer") && err.contains("line 2"),
        "{err}"
    );

    // A bad value in the environment names the flag it stands for.
    let out = run(&[], &[("STOMP_RELAY_MAX_FRAME_SIZE", "huge")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-frame-size"));
}

#[test]
fn help_lists_every_flag_with_its_default() {
    let out = run(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--listen",
        "--tcp-listen",
        "--app-prefix",
        "--broker-prefix",
        "--broker",
        "--relay",
        "--relay-login",
        "--relay-passcode",
        "--system-login",
        "--system-passcode",
        "--virtual-host",
        "--dialect",
        "--relay-mode",
        "--heartbeat",
        "--max-frame-size",
        "--send-buffer",
        "--send-time-limit",
        "--time-to-first-frame",
        "--max-connections",
        "--worker-threads",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    for default in [
        "127.0.0.1:8080",
        "[default: simple]",
        "[default: 64KiB]",
        "[default: 512KiB]",
        "[default: 10s]",
        "[default: 60s]",
        "[default: 10000,10000]",
    ] {
        assert!(help.contains(default), "--help lacks {default}");
    }
}

#[tokio::test]
async fn flags_win_over_env_over_file() {
    let dir = std::env::temp_dir().join(format!("stomp-relay-prec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ok.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1\"\nbroker-prefix = \"/file/\"\napp-prefix = [\"/app/\"]\n",
    )
    .unwrap();
    // The file's listen is overridden by the env, the env's broker prefix by the flag.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stomp-relay"))
        .args([
            "--config",
            file.to_str().unwrap(),
            "--broker-prefix",
            "/flag/",
        ])
        .env("STOMP_RELAY_LISTEN", "127.0.0.1:0")
        .env("STOMP_RELAY_BROKER_PREFIX", "/env/")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stderr.take().unwrap()));
    let http = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listen=").nth(1) {
                return rest
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse::<std::net::SocketAddr>()
                    .unwrap();
            }
        }
        panic!("no listen line");
    })
    .await
    .unwrap();
    let url = format!("ws://{http}/ws");
    let mut c = Client::connected(&url, &[]).await;
    c.subscribe("1", "/flag/x").await;
    c.send_frame("SEND", &[("destination", "/app/x")], b"routed")
        .await;
    let m = c.expect_frame().await;
    assert_eq!(m.header("destination"), Some("/flag/x"));
    c.send_frame("SEND", &[("destination", "/env/x")], b"")
        .await;
    assert_eq!(c.expect_frame().await.command.as_str(), "ERROR");
}

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    for signal in ["-TERM", "-INT"] {
        let mut bin =
            spawn_binary(&["--listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0"]).await;
        let url = format!("ws://{}/ws", bin.http);
        let mut a = Client::connected(&url, &[]).await;
        let mut b = Client::connected(&url, &[]).await;
        b.subscribe("1", "/sub/x").await;
        let pid = bin.child.id().unwrap().to_string();
        let t0 = std::time::Instant::now();
        // The shell's builtin `kill`: no dependence on procps being installed.
        let kill = format!("kill {signal} {pid}");
        assert!(Command::new("sh")
            .args(["-c", &kill])
            .status()
            .unwrap()
            .success());
        for c in [&mut a, &mut b] {
            let e = c.expect_frame().await;
            assert_eq!(e.command.as_str(), "ERROR");
            assert_eq!(e.header("message"), Some("Server shutting down"));
            assert_eq!(c.expect_close().await, Some(1001));
        }
        let status = tokio::time::timeout(Duration::from_secs(10), bin.child.wait())
            .await
            .expect("server did not exit")
            .unwrap();
        assert_eq!(status.code(), Some(0), "{signal}");
        assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
        // Nothing listens any more.
        assert!(tokio::net::TcpStream::connect(bin.http).await.is_err());
    }
}

#[tokio::test]
async fn default_binary_serves_the_simple_broker() {
    // Everything default except the port: a client can talk to itself through /sub/.
    let bin = spawn_binary(&["--listen", "127.0.0.1:0"]).await;
    let url = format!("ws://{}/ws", bin.http);
    let mut c = Client::connected(&url, &[]).await;
    c.subscribe("1", "/sub/hello").await;
    c.send_frame("SEND", &[("destination", "/pub/hello")], b"world")
        .await;
    assert_eq!(&c.expect_frame().await.body[..], b"world");
    assert_eq!(http_get(bin.http, "/readyz").await.0, 200);
}

/// `--max-subscriptions N` as a user sets it: the N-th SUBSCRIBE gets its RECEIPT and
/// the one after gets ERROR naming the limit.
async fn subscribe_until_refused(args: &[&str], accepted: usize) {
    let b = spawn_binary(args).await;
    let url = format!("ws://{}/ws", b.http);
    let mut c = Client::connected(&url, &[]).await;
    for i in 0..accepted {
        c.subscribe(&i.to_string(), &format!("/sub/s{i}")).await;
    }
    c.send_frame(
        "SUBSCRIBE",
        &[
            ("id", "over"),
            ("destination", "/sub/over"),
            ("receipt", "r"),
        ],
        b"",
    )
    .await;
    let e = c.expect_frame().await;
    assert_eq!(e.command.as_str(), "ERROR", "{e:?}");
    assert_eq!(
        e.header("message"),
        Some(format!("Too many subscriptions (at most {accepted} per session)").as_str())
    );
}

#[tokio::test]
async fn subscription_limit_can_be_raised_lowered_and_defaults_to_1000() {
    // Raised past the old fixed table of 32 (this exited 2 before).
    subscribe_until_refused(
        &["--listen", "127.0.0.1:0", "--max-subscriptions", "100"],
        100,
    )
    .await;
    subscribe_until_refused(&["--listen", "127.0.0.1:0", "--max-subscriptions", "3"], 3).await;
    subscribe_until_refused(&["--listen", "127.0.0.1:0"], 1_000).await;
}

#[tokio::test]
async fn subscription_limit_0_is_unlimited() {
    let b = spawn_binary(&["--listen", "127.0.0.1:0", "--max-subscriptions", "0"]).await;
    let url = format!("ws://{}/ws", b.http);
    let mut c = Client::connected(&url, &[]).await;
    for i in 0..1_500 {
        c.subscribe(&i.to_string(), &format!("/sub/s{i}")).await;
    }
    // Still a working session: a message reaches the 1 500th subscription.
    c.send_frame("SEND", &[("destination", "/sub/s1499")], b"last")
        .await;
    let m = c.expect_frame().await;
    assert_eq!(m.command.as_str(), "MESSAGE", "{m:?}");
    assert_eq!(m.header("subscription"), Some("1499"));
}

/// How many runtime worker threads the process runs, read from /proc (tokio names
/// them `tokio-rt-worker`; its blocking pool's threads have another name).
fn worker_thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "tokio-rt-worker")
        .count()
}

#[tokio::test]
async fn worker_threads_sets_the_runtime_size_and_still_serves() {
    for (n, args) in [
        (1, vec!["--listen", "127.0.0.1:0", "--worker-threads", "1"]),
        (3, vec!["--listen", "127.0.0.1:0", "--worker-threads", "3"]),
    ] {
        let bin = spawn_binary(&args).await;
        let url = format!("ws://{}/ws", bin.http);
        let mut c = Client::connected(&url, &[]).await;
        c.subscribe("1", "/sub/x").await;
        c.send_frame("SEND", &[("destination", "/sub/x")], b"one thread")
            .await;
        assert_eq!(&c.expect_frame().await.body[..], b"one thread");
        assert_eq!(worker_thread_count(bin.child.id().unwrap()), n, "{args:?}");
    }
    let out = run(&["--worker-threads", "0"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--worker-threads") && err.contains("1 to 1024"),
        "{err}"
    );
}
