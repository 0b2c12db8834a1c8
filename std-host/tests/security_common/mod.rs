//! Harness for the security tests: the real server on ephemeral loopback ports, and a
//! STOMP client over WebSocket or raw TCP (each optionally over TLS, optionally from a
//! chosen loopback source address, with chosen handshake headers) that records frames
//! and the close.
#![allow(dead_code)]

#[path = "../common/config.rs"]
mod config_file;
#[path = "../common/frame.rs"]
mod frame;

// Not every test binary uses both.
#[allow(unused_imports)]
pub use config_file::test_config as config;
#[allow(unused_imports)]
pub use frame::frame_bytes;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use stomp_relay::codec::{Decoded, Decoder, Header, Limits, Status, Version};
use stomp_relay::{Config, OwnedFrame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::WebSocketStream;

pub const WAIT: Duration = Duration::from_secs(10);

pub trait Rw: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Rw for T {}
pub type Io = Box<dyn Rw>;

pub struct Running {
    pub http: SocketAddr,
    pub tcp: SocketAddr,
    pub publisher: stomp_relay::Publisher,
    pub shutdown: stomp_relay::ShutdownHandle,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

pub async fn start(config: Config) -> Running {
    let server = stomp_relay::Server::builder(config)
        .bind()
        .await
        .expect("bind");
    let r = Running {
        http: server.local_addr(),
        tcp: server.tcp_addr().expect("tcp listener"),
        publisher: server.publisher(),
        shutdown: server.shutdown_handle(),
    };
    tokio::spawn(server.run());
    r
}

/// A TCP connection from `from` (any 127.x.y.z works on Linux) to `to`.
pub async fn tcp_from(from: Option<IpAddr>, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    if let Some(ip) = from {
        s.bind(SocketAddr::new(ip, 0))?;
    }
    s.connect(to).await
}

#[derive(Debug)]
pub enum Ev {
    Frame(OwnedFrame),
    Closed,
}

enum Conn {
    Ws(Box<WebSocketStream<Io>>),
    Raw(Io),
}

/// A STOMP client.
pub struct Client {
    conn: Conn,
    buf: Vec<u8>,
    events: VecDeque<Ev>,
}

/// Options for opening a WebSocket.
#[derive(Default, Clone)]
pub struct WsOpts {
    pub headers: Vec<(String, String)>,
    pub query: Option<String>,
}

impl Client {
    /// WebSocket handshake over `io` to `host` (path /ws plus `opts.query`).
    pub async fn ws_over(
        io: Io,
        scheme: &str,
        host: SocketAddr,
        opts: &WsOpts,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let q = opts
            .query
            .as_ref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let mut req = format!("{scheme}://{host}/ws{q}").into_client_request()?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "v12.stomp".parse().unwrap());
        for (n, v) in &opts.headers {
            req.headers_mut().insert(
                axum::http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let (ws, _) = tokio_tungstenite::client_async(req, io).await?;
        Ok(Client {
            conn: Conn::Ws(Box::new(ws)),
            buf: Vec::new(),
            events: VecDeque::new(),
        })
    }

    pub async fn ws(
        addr: SocketAddr,
        opts: &WsOpts,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let s = tcp_from(None, addr).await?;
        Client::ws_over(Box::new(s), "ws", addr, opts).await
    }

    pub fn raw(io: Io) -> Client {
        Client {
            conn: Conn::Raw(io),
            buf: Vec::new(),
            events: VecDeque::new(),
        }
    }

    pub async fn tcp(addr: SocketAddr) -> Client {
        Client::raw(Box::new(tcp_from(None, addr).await.unwrap()))
    }

    pub async fn send_raw(&mut self, b: &[u8]) -> bool {
        match &mut self.conn {
            Conn::Ws(ws) => {
                let msg = match String::from_utf8(b.to_vec()) {
                    Ok(s) => Message::Text(s.into()),
                    Err(e) => Message::Binary(e.into_bytes().into()),
                };
                ws.send(msg).await.is_ok()
            }
            Conn::Raw(s) => s.write_all(b).await.is_ok() && s.flush().await.is_ok(),
        }
    }

    pub async fn send(&mut self, command: &str, headers: &[(&str, &str)], body: &[u8]) -> bool {
        self.send_raw(&frame_bytes(command, headers, body)).await
    }

    fn parse(&mut self) {
        loop {
            let mut hs = [Header::EMPTY; 128];
            let dec = Decoder::with_limits(Version::V1_2, Limits::UNLIMITED);
            match dec.decode(&self.buf, &mut hs) {
                Ok(Status::Partial) => return,
                Ok(Status::Complete((Decoded::HeartBeat, n))) => {
                    self.buf.drain(..n);
                }
                Ok(Status::Complete((Decoded::Frame(f), n))) => {
                    self.events.push_back(Ev::Frame(OwnedFrame::from_frame(&f)));
                    self.buf.drain(..n);
                }
                Err(e) => panic!("server sent a malformed frame: {e}"),
            }
        }
    }

    /// The next frame or close within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Ev> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            match &mut self.conn {
                Conn::Ws(ws) => match tokio::time::timeout_at(deadline, ws.next()).await {
                    Err(_) => return None,
                    Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                        self.events.push_back(Ev::Closed)
                    }
                    Ok(Some(Ok(Message::Text(t)))) => {
                        self.buf.extend_from_slice(t.as_bytes());
                        self.parse();
                    }
                    Ok(Some(Ok(Message::Binary(b)))) => {
                        self.buf.extend_from_slice(&b);
                        self.parse();
                    }
                    Ok(Some(Ok(_))) => {}
                },
                Conn::Raw(s) => {
                    let mut chunk = [0u8; 8192];
                    match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
                        Err(_) => return None,
                        Ok(Ok(0)) | Ok(Err(_)) => self.events.push_back(Ev::Closed),
                        Ok(Ok(n)) => {
                            self.buf.extend_from_slice(&chunk[..n]);
                            self.parse();
                        }
                    }
                }
            }
        }
    }

    pub async fn frame(&mut self) -> OwnedFrame {
        match self.next(WAIT).await {
            Some(Ev::Frame(f)) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Expects ERROR (returns its message) followed by the close.
    pub async fn error_then_close(&mut self) -> String {
        let f = self.frame().await;
        assert_eq!(f.command.as_str(), "ERROR", "{f:?}");
        let msg = f.header_str("message").unwrap_or("").to_string();
        self.closed().await;
        msg
    }

    pub async fn closed(&mut self) {
        match self.next(WAIT).await {
            Some(Ev::Closed) => {}
            Some(Ev::Frame(f)) => panic!("expected the close, got {f:?}"),
            None => panic!("connection not closed within {WAIT:?}"),
        }
    }

    /// Sends CONNECT with `extra` headers; returns CONNECTED or ERROR.
    pub async fn connect(&mut self, extra: &[(&str, &str)]) -> OwnedFrame {
        let mut h = vec![("accept-version", "1.2"), ("host", "localhost")];
        h.extend_from_slice(extra);
        self.send("CONNECT", &h, b"").await;
        self.frame().await
    }

    pub async fn connected(&mut self, extra: &[(&str, &str)]) {
        let f = self.connect(extra).await;
        assert_eq!(f.command.as_str(), "CONNECTED", "{f:?}");
    }

    /// SUBSCRIBE with a receipt; `Ok` on RECEIPT, `Err(message)` on ERROR.
    pub async fn subscribe(&mut self, id: &str, dest: &str) -> Result<(), String> {
        let r = format!("r-{id}");
        self.send(
            "SUBSCRIBE",
            &[("id", id), ("destination", dest), ("receipt", &r)],
            b"",
        )
        .await;
        self.receipt_or_error().await
    }

    /// `Ok` on a RECEIPT, `Err(message)` on an ERROR; anything else is a test failure.
    async fn receipt_or_error(&mut self) -> Result<(), String> {
        let f = self.frame().await;
        match f.command.as_str() {
            "RECEIPT" => Ok(()),
            "ERROR" => Err(f.header_str("message").unwrap_or("").to_string()),
            _ => panic!("unexpected {f:?}"),
        }
    }

    /// SEND with a receipt; `Ok` on RECEIPT, `Err(message)` on ERROR.
    pub async fn send_receipted(&mut self, dest: &str, body: &str, r: &str) -> Result<(), String> {
        self.send(
            "SEND",
            &[("destination", dest), ("receipt", r)],
            body.as_bytes(),
        )
        .await;
        self.receipt_or_error().await
    }

    /// The next MESSAGE's body, or `None` (close, other frame or nothing within `wait`).
    pub async fn message(&mut self, wait: Duration) -> Option<String> {
        match self.next(wait).await {
            Some(Ev::Frame(f)) if f.command.as_str() == "MESSAGE" => {
                Some(String::from_utf8_lossy(&f.body).into_owned())
            }
            _ => None,
        }
    }
}

/// Publishes `body` to `dest` through the server's publisher.
pub fn publish(r: &Running, dest: &str, body: &str) {
    r.publisher
        .publish(dest, &[], body.as_bytes().to_vec())
        .expect("publish");
}
