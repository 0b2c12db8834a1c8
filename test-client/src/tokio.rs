//! The tokio transports: a WebSocket (tokio-tungstenite) or raw TCP over any tokio
//! stream, so TLS and chosen source addresses come from the test. [`Client`] here is
//! the one client type of std-host's tests, whichever of the two it runs over.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;

use crate::client::{Recv, Transport};

/// A byte stream a client runs over: TCP, TLS over TCP, anything tokio reads and writes.
pub trait Rw: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Rw for T {}
/// An owned [`Rw`].
pub type Io = Box<dyn Rw>;

/// The std tests' client, over a WebSocket or raw TCP.
pub type Client = crate::Client<Conn>;

/// A connection: STOMP in WebSocket messages, or STOMP straight on the stream.
pub enum Conn {
    Ws(Box<WebSocketStream<Io>>),
    Raw(Io),
}

impl Transport for Conn {
    async fn send(&mut self, bytes: &[u8]) -> bool {
        match self {
            // Text when it can be, as browsers send STOMP.
            Conn::Ws(ws) => {
                let msg = match String::from_utf8(bytes.to_vec()) {
                    Ok(s) => Message::Text(s.into()),
                    Err(e) => Message::Binary(e.into_bytes().into()),
                };
                ws.send(msg).await.is_ok()
            }
            Conn::Raw(s) => s.write_all(bytes).await.is_ok() && s.flush().await.is_ok(),
        }
    }

    async fn recv(&mut self, buf: &mut Vec<u8>, wait: Duration) -> Recv {
        match self {
            Conn::Ws(ws) => match tokio::time::timeout(wait, ws.next()).await {
                Err(_) => Recv::TimedOut,
                Ok(None) | Ok(Some(Err(_))) => Recv::Closed(None),
                Ok(Some(Ok(Message::Close(c)))) => Recv::Closed(c.map(|c| u16::from(c.code))),
                Ok(Some(Ok(Message::Text(t)))) => {
                    buf.extend_from_slice(t.as_bytes());
                    Recv::Data
                }
                Ok(Some(Ok(Message::Binary(b)))) => {
                    buf.extend_from_slice(&b);
                    Recv::Data
                }
                // Pings and pongs: nothing for STOMP, but time passed.
                Ok(Some(Ok(_))) => Recv::Data,
            },
            Conn::Raw(s) => {
                let mut chunk = [0u8; 8192];
                match tokio::time::timeout(wait, s.read(&mut chunk)).await {
                    Err(_) => Recv::TimedOut,
                    Ok(Ok(0)) | Ok(Err(_)) => Recv::Closed(None),
                    Ok(Ok(n)) => {
                        buf.extend_from_slice(&chunk[..n]);
                        Recv::Data
                    }
                }
            }
        }
    }
}

/// A TCP connection to `to`, from `from` when given (any 127.x.y.z works on Linux).
pub async fn tcp_from(from: Option<IpAddr>, to: SocketAddr) -> std::io::Result<TcpStream> {
    tcp_with(from, to, None).await
}

/// [`tcp_from`] with a receive buffer of `rcvbuf` bytes when given (slow consumers).
async fn tcp_with(
    from: Option<IpAddr>,
    to: SocketAddr,
    rcvbuf: Option<u32>,
) -> std::io::Result<TcpStream> {
    let s = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = from {
        s.bind(SocketAddr::new(ip, 0))?;
    }
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n)?;
    }
    s.connect(to).await
}

/// How to open a WebSocket: extra handshake headers and a query string.
#[derive(Default, Clone)]
pub struct WsOpts {
    pub headers: Vec<(String, String)>,
    pub query: Option<String>,
}

impl Client {
    /// A WebSocket handshake over `io` to `url` offering `v12.stomp`; the agreed
    /// subprotocol lands in [`protocol`](crate::Client::protocol).
    pub async fn ws_over(io: Io, url: &str, opts: &WsOpts) -> Result<Client, WsError> {
        Client::handshake(io, url, opts, &["v12.stomp"]).await
    }

    async fn handshake(
        io: Io,
        url: &str,
        opts: &WsOpts,
        protocols: &[&str],
    ) -> Result<Client, WsError> {
        let q = opts
            .query
            .as_ref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let mut req = format!("{url}{q}").into_client_request()?;
        let offers = protocols.join(", ");
        if !offers.is_empty() {
            req.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(&offers).expect("protocols"),
            );
        }
        for (n, v) in &opts.headers {
            req.headers_mut().insert(
                HeaderName::from_bytes(n.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        let (ws, resp) = tokio_tungstenite::client_async(req, io).await?;
        let mut c = Client::new(Conn::Ws(Box::new(ws)));
        c.protocol = resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(c)
    }

    /// A WebSocket to `addr` at path `/ws`, with `opts`.
    pub async fn ws(addr: SocketAddr, opts: &WsOpts) -> Result<Client, WsError> {
        let s = tcp_from(None, addr).await?;
        Client::ws_over(Box::new(s), &format!("ws://{addr}/ws"), opts).await
    }

    /// A WebSocket to `url` (`ws://host:port/path`) offering `protocols`.
    ///
    /// # Panics
    /// When the connection or the handshake fails.
    pub async fn open(url: &str, protocols: &[&str]) -> Client {
        Client::open_on(url, protocols, None).await
    }

    /// [`open`](Client::open) with a small socket receive buffer (slow-consumer tests).
    pub async fn open_on(url: &str, protocols: &[&str], rcvbuf: Option<u32>) -> Client {
        let addr: SocketAddr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("`{url}` is not ws://<ip:port>/..."));
        let s = tcp_with(None, addr, rcvbuf).await.expect("tcp connect");
        Client::handshake(Box::new(s), url, &WsOpts::default(), protocols)
            .await
            .expect("websocket handshake")
    }

    /// A WebSocket to `url` offering `v12.stomp`, through CONNECT/CONNECTED (`extra`
    /// headers added to CONNECT).
    pub async fn connected(url: &str, extra: &[(&str, &str)]) -> Client {
        let mut c = Client::open(url, &["v12.stomp"]).await;
        c.expect_connected(extra).await;
        c
    }

    /// STOMP straight over `io` (TCP, TLS).
    pub fn raw(io: Io) -> Client {
        Client::new(Conn::Raw(io))
    }

    /// STOMP over a TCP connection to `addr`.
    ///
    /// # Panics
    /// When the connection fails.
    pub async fn tcp(addr: SocketAddr) -> Client {
        Client::raw(Box::new(tcp_from(None, addr).await.expect("tcp connect")))
    }

    /// Sends one WebSocket text message (a raw TCP client writes the bytes).
    pub async fn send_text(&mut self, s: &str) -> bool {
        match self.transport() {
            Conn::Ws(ws) => ws.send(Message::Text(s.into())).await.is_ok(),
            Conn::Raw(_) => self.send_raw(s.as_bytes()).await,
        }
    }

    /// Sends one WebSocket binary message (a raw TCP client writes the bytes).
    pub async fn send_binary(&mut self, b: &[u8]) -> bool {
        match self.transport() {
            Conn::Ws(ws) => ws.send(Message::Binary(b.to_vec().into())).await.is_ok(),
            Conn::Raw(_) => self.send_raw(b).await,
        }
    }
}
