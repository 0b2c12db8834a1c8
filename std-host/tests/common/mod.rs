//! Test harness: a real server on an ephemeral loopback port (in-process through the
//! library, or the real binary as a child process); the STOMP client is the
//! workspace's one test client (`stomp-relay-test-client`, over WebSocket or raw TCP).
#![allow(dead_code)]

pub mod broker;
pub mod clients;
mod config;
pub mod process;

// Not every test binary uses both.
#[allow(unused_imports)]
pub use config::test_config;
#[allow(unused_imports)]
pub use stomp_relay_test_client::tokio::Client;
#[allow(unused_imports)]
pub use stomp_relay_test_client::{frame_bytes, Event, Frame, WAIT};

use std::net::SocketAddr;
use std::process::Stdio;

use stomp_relay::Config;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct TestServer {
    pub http: SocketAddr,
    pub tcp: Option<SocketAddr>,
    pub publisher: stomp_relay::Publisher,
    pub shutdown: stomp_relay::ShutdownHandle,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }

    pub async fn metrics(&self) -> String {
        http_get(self.http, "/metrics").await.1
    }
}

pub async fn start(config: Config) -> TestServer {
    start_with(stomp_relay::Server::builder(config)).await
}

pub async fn start_with(builder: stomp_relay::ServerBuilder) -> TestServer {
    let server = builder.bind().await.expect("bind");
    let http = server.local_addr();
    let tcp = server.tcp_addr();
    let publisher = server.publisher();
    let shutdown = server.shutdown_handle();
    let task = tokio::spawn(server.run());
    TestServer {
        http,
        tcp,
        publisher,
        shutdown,
        task,
    }
}

/// Minimal HTTP/1.1 GET; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A raw HTTP/1.1 response: status, head (lower-cased) and body (chunk sizes left in
/// a chunked body, which `contains` checks do not mind).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Minimal HTTP/1.1 request with extra headers and a body, read until the server
/// closes (Connection: close) or `WAIT` passes.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no complete response within {WAIT:?}"))
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    HttpResponse {
        status: head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0),
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// The real binary as a child process; parses its bound address from the log.
pub struct Binary {
    pub child: tokio::process::Child,
    pub http: SocketAddr,
    pub stderr: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
}

pub async fn spawn_binary(args: &[&str]) -> Binary {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stomp-relay"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let http = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = process::logged_listen_addr(&line) {
                return addr.parse::<SocketAddr>().unwrap();
            }
        }
        panic!("binary exited before listening");
    })
    .await
    .expect("binary did not start");
    Binary {
        child,
        http,
        stderr: lines,
    }
}
