//! Test harness: a real server on an ephemeral loopback port (in-process through the
//! library, or the real binary as a child process) and STOMP clients over
//! tokio-tungstenite and raw TCP that record every frame, heart-beat and close code.
#![allow(dead_code)]

pub mod broker;
pub mod clients;
mod config;
mod frame;
pub mod process;

// Not every test binary uses both.
#[allow(unused_imports)]
pub use config::test_config;
#[allow(unused_imports)]
pub use frame::frame_bytes;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use stomp_relay::codec::{Decoded, Decoder, Header, Status, Version};
use stomp_relay::{Config, OwnedFrame};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::WebSocketStream;

pub const WAIT: Duration = Duration::from_secs(10);

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

/// What a client observed.
#[derive(Debug)]
pub enum Event {
    Frame(OwnedFrame),
    HeartBeat,
    Closed(Option<u16>),
}

/// Parses every complete frame and heart-beat at the front of `buf`.
pub fn parse(buf: &mut Vec<u8>, out: &mut std::collections::VecDeque<Event>) {
    loop {
        let mut hs = [Header::EMPTY; 64];
        let dec = Decoder::with_limits(Version::V1_2, stomp_relay::codec::Limits::UNLIMITED);
        match dec
            .decode(buf, &mut hs)
            .expect("server sent a malformed frame")
        {
            Status::Partial => return,
            Status::Complete((Decoded::HeartBeat, n)) => {
                out.push_back(Event::HeartBeat);
                buf.drain(..n);
            }
            Status::Complete((Decoded::Frame(f), n)) => {
                let owned = OwnedFrame::from_frame(&f);
                out.push_back(Event::Frame(owned));
                buf.drain(..n);
            }
        }
    }
}

type Ws = WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A STOMP client over WebSocket.
pub struct WsClient {
    pub ws: Ws,
    pub protocol: Option<String>,
    buf: Vec<u8>,
    events: std::collections::VecDeque<Event>,
    pub heartbeats: usize,
    pub messages_seen: usize,
}

impl WsClient {
    pub async fn open(url: &str, protocols: &[&str]) -> WsClient {
        Self::open_on(url, protocols, None).await
    }

    /// Opens with an optional small receive buffer (for slow-consumer tests).
    pub async fn open_on(url: &str, protocols: &[&str], rcvbuf: Option<u32>) -> WsClient {
        let mut req = url.into_client_request().unwrap();
        if !protocols.is_empty() {
            req.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                protocols.join(", ").parse().unwrap(),
            );
        }
        let addr: SocketAddr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n).unwrap();
        }
        let stream = sock.connect(addr).await.unwrap();
        let (ws, resp) =
            tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream))
                .await
                .expect("websocket handshake");
        let protocol = resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap().to_string());
        WsClient {
            ws,
            protocol,
            buf: Vec::new(),
            events: Default::default(),
            heartbeats: 0,
            messages_seen: 0,
        }
    }

    /// Opens and completes CONNECT/CONNECTED.
    pub async fn connected(url: &str, extra: &[(&str, &str)]) -> WsClient {
        let mut c = WsClient::open(url, &["v12.stomp"]).await;
        let mut h = vec![("accept-version", "1.2"), ("host", "localhost")];
        h.extend_from_slice(extra);
        c.send_frame("CONNECT", &h, b"").await;
        let f = c.expect_frame().await;
        assert_eq!(f.command.as_str(), "CONNECTED", "{f:?}");
        c
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::Text(s.into())).await.unwrap();
    }

    pub async fn send_binary(&mut self, b: &[u8]) {
        self.ws
            .send(Message::Binary(b.to_vec().into()))
            .await
            .unwrap();
    }

    pub async fn send_frame(&mut self, command: &str, headers: &[(&str, &str)], body: &[u8]) {
        let bytes = frame_bytes(command, headers, body);
        match String::from_utf8(bytes) {
            Ok(s) => self.send_text(&s).await,
            Err(e) => self.send_binary(e.as_bytes()).await,
        }
    }

    async fn fill(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if !self.events.is_empty() {
                return true;
            }
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(m) => m,
            };
            match msg {
                None => self.events.push_back(Event::Closed(None)),
                Some(Err(_)) => self.events.push_back(Event::Closed(None)),
                Some(Ok(Message::Text(t))) => {
                    self.buf.extend_from_slice(t.as_bytes());
                    parse(&mut self.buf, &mut self.events);
                }
                Some(Ok(Message::Binary(b))) => {
                    self.buf.extend_from_slice(&b);
                    parse(&mut self.buf, &mut self.events);
                }
                Some(Ok(Message::Close(c))) => {
                    self.events
                        .push_back(Event::Closed(c.map(|c| u16::from(c.code))));
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next event within `wait`, or `None`.
    pub async fn next_event(&mut self, wait: Duration) -> Option<Event> {
        if self.fill(wait).await {
            let e = self.events.pop_front();
            match &e {
                Some(Event::HeartBeat) => self.heartbeats += 1,
                Some(Event::Frame(f)) if f.command.as_str() == "MESSAGE" => self.messages_seen += 1,
                _ => {}
            }
            e
        } else {
            None
        }
    }

    /// The next frame, skipping heart-beats; panics on close or timeout.
    pub async fn expect_frame(&mut self) -> OwnedFrame {
        loop {
            match self.next_event(WAIT).await {
                Some(Event::Frame(f)) => return f,
                Some(Event::HeartBeat) => continue,
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    /// Skips frames/heart-beats until the close; returns the close code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.next_event(WAIT).await {
                Some(Event::Closed(code)) => return code,
                Some(_) => continue,
                None => panic!("no close within {WAIT:?}"),
            }
        }
    }

    pub async fn subscribe(&mut self, id: &str, dest: &str) {
        self.send_frame(
            "SUBSCRIBE",
            &[
                ("id", id),
                ("destination", dest),
                ("receipt", &format!("sub-{id}")),
            ],
            b"",
        )
        .await;
        let r = self.expect_frame().await;
        assert_eq!(r.command.as_str(), "RECEIPT", "{r:?}");
        assert_eq!(
            r.header_str("receipt-id"),
            Some(format!("sub-{id}").as_str())
        );
    }
}

/// A STOMP client over raw TCP.
pub struct TcpClient {
    pub s: TcpStream,
    buf: Vec<u8>,
    events: std::collections::VecDeque<Event>,
}

impl TcpClient {
    pub async fn open(addr: SocketAddr) -> TcpClient {
        TcpClient {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
            events: Default::default(),
        }
    }

    pub async fn send_raw(&mut self, b: &[u8]) {
        self.s.write_all(b).await.unwrap();
    }

    pub async fn send_frame(&mut self, command: &str, headers: &[(&str, &str)], body: &[u8]) {
        self.send_raw(&frame_bytes(command, headers, body)).await;
    }

    pub async fn next_event(&mut self, wait: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => self.events.push_back(Event::Closed(None)),
                Ok(Ok(n)) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    parse(&mut self.buf, &mut self.events);
                }
            }
        }
    }

    pub async fn expect_frame(&mut self) -> OwnedFrame {
        loop {
            match self.next_event(WAIT).await {
                Some(Event::Frame(f)) => return f,
                Some(Event::HeartBeat) => continue,
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    pub async fn expect_eof(&mut self) {
        loop {
            match self.next_event(WAIT).await {
                Some(Event::Closed(_)) => return,
                Some(_) => continue,
                None => panic!("connection not closed within {WAIT:?}"),
            }
        }
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
