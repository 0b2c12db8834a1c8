//! What an operator sees in the real binary's log at the default level (issue 19.8): a
//! stats line every `--stats-interval`, a broker outage warned about again and again
//! with growing gaps (not once), and each session's open and close at debug.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn stats_lines_outage_warnings_and_session_lines() {
    // A port nothing listens on: the relay's broker stays down for the whole test.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("stomp://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut bin = tokio::process::Command::new(env!("CARGO_BIN_EXE_stomp-relay"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--broker",
            "relay",
            "--relay",
            &dead,
            "--stats-interval",
            "1s",
        ])
        .env("RUST_LOG", "info,stomp_relay::session=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(bin.stderr.take().unwrap()));
    let mut log = Vec::new();
    let mut http = None;
    let mut client_done = false;
    // Long enough for a retry (backoff up to 5 s, with jitter) after the 5 s mark.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(14);
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, lines.next_line()).await {
        if http.is_none() {
            http = process::logged_listen_addr(&line)
                .map(|a| a.parse::<std::net::SocketAddr>().unwrap());
        }
        log.push(line);
        if let (Some(addr), false) = (http, client_done) {
            client_done = true;
            // A client comes and goes (refused: the broker is down).
            let mut c = Client::open(&format!("ws://{addr}/ws"), &["v12.stomp"]).await;
            c.send_frame("CONNECT", &[("accept-version", "1.2")], b"")
                .await;
            let e = c.expect_frame().await;
            assert_eq!(e.command.as_str(), "ERROR", "{e:?}");
        }
    }
    let log = log.join("\n");
    let count = |s: &str| log.matches(s).count();
    assert!(
        count("stats: sessions[") >= 5,
        "a stats line each second:\n{log}"
    );
    assert!(
        log.contains("1 total"),
        "the stats count the session:\n{log}"
    );
    assert!(log.contains("broker[relay, unavailable"), "{log}");
    assert_eq!(count("cannot connect to a broker"), 1, "{log}");
    assert!(
        log.lines()
            .filter(|l| l.contains("broker still unavailable"))
            .any(|l| l.contains("down_for=") && !l.contains("down_for=0s")),
        "the outage is warned about again after 5 s:\n{log}"
    );
    assert!(
        count("session opened") >= 1 && count("session closed") >= 1,
        "{log}"
    );
}
