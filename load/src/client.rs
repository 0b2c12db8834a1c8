//! A minimal STOMP client over WebSocket or plain TCP, just what the load runs need.
//!
//! [`Target`] is a parsed `ws://HOST:PORT/PATH` or `stomp://HOST:PORT` URL; only
//! loopback hosts are accepted, so a load run can never leave the machine.
//! [`connect`] opens the transport, sends CONNECT and waits for CONNECTED, returning a
//! [`Tx`] / [`Rx`] pair that tasks drive independently. `Rx` owns a receive buffer and
//! hands out whole decoded frames; `Tx` queues encoded frames and flushes on request, so
//! the publisher can batch writes.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use stomp_relay_codec::{Command, Frame, Header};

use crate::wire;

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `true` for `ws://`, `false` for `stomp://` (plain TCP).
    pub websocket: bool,
    /// The loopback address.
    pub addr: SocketAddr,
    /// The URL as given, used for the WebSocket handshake and in reports.
    pub url: String,
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        let (websocket, rest) = if let Some(r) = url.strip_prefix("ws://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("stomp://").or(url.strip_prefix("tcp://")) {
            (false, r)
        } else {
            return Err(format!(
                "`{url}`: expected ws://HOST:PORT/PATH or stomp://HOST:PORT"
            ));
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("`{url}`: missing :PORT"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = match host {
            "localhost" => IpAddr::from([127, 0, 0, 1]),
            h => h
                .parse()
                .map_err(|_| format!("`{url}`: host must be a loopback IP or localhost"))?,
        };
        if !ip.is_loopback() {
            return Err(format!(
                "`{url}`: only loopback targets are allowed (load runs stay on this machine)"
            ));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{url}`: bad port `{port}`"))?;
        Ok(Target {
            websocket,
            addr: SocketAddr::new(ip, port),
            url: url.to_string(),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// CONNECT parameters shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct Login {
    pub login: Option<String>,
    pub passcode: Option<String>,
    pub vhost: String,
}

/// Anything that ends a connection: transport, protocol or server ERROR.
#[derive(Debug)]
pub enum ClientError {
    Io(std::io::Error),
    WebSocket(tokio_tungstenite::tungstenite::Error),
    Wire(stomp_relay_codec::DecodeError),
    Encode(stomp_relay_codec::EncodeError),
    /// The server sent ERROR; carries its `message` header.
    Server(String),
    /// The server closed the connection.
    Closed,
    /// A frame other than the expected one arrived.
    Unexpected(String),
    Timeout(&'static str),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "i/o: {e}"),
            ClientError::WebSocket(e) => write!(f, "websocket: {e}"),
            ClientError::Wire(e) => write!(f, "bad frame from server: {e}"),
            ClientError::Encode(e) => write!(f, "cannot encode frame: {e}"),
            ClientError::Server(m) => write!(f, "server ERROR: {m}"),
            ClientError::Closed => f.write_str("connection closed by server"),
            ClientError::Unexpected(c) => write!(f, "unexpected {c} frame"),
            ClientError::Timeout(what) => write!(f, "timed out waiting for {what}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(e)
    }
}

impl From<stomp_relay_codec::DecodeError> for ClientError {
    fn from(e: stomp_relay_codec::DecodeError) -> Self {
        ClientError::Wire(e)
    }
}

impl From<stomp_relay_codec::EncodeError> for ClientError {
    fn from(e: stomp_relay_codec::EncodeError) -> Self {
        ClientError::Encode(e)
    }
}

type Ws = WebSocketStream<TcpStream>;

/// The sending half of a connection.
pub enum Tx {
    Ws(SplitSink<Ws, Message>),
    Tcp(BufWriter<OwnedWriteHalf>),
}

impl Tx {
    /// Queues one encoded frame without flushing.
    pub async fn feed(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        match self {
            // STOMP text is UTF-8 here (the tool only sends ASCII), and text messages
            // are what browser clients such as stompjs send.
            Tx::Ws(sink) => match std::str::from_utf8(frame) {
                Ok(text) => sink.feed(Message::text(text)).await?,
                Err(_) => sink.feed(Message::binary(frame.to_vec())).await?,
            },
            Tx::Tcp(w) => w.write_all(frame).await?,
        }
        Ok(())
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        match self {
            Tx::Ws(sink) => sink.flush().await?,
            Tx::Tcp(w) => w.flush().await?,
        }
        Ok(())
    }

    /// `feed` then `flush`.
    pub async fn send(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        self.feed(frame).await?;
        self.flush().await
    }

    /// Closes the transport politely (WebSocket close / TCP shutdown).
    pub async fn close(&mut self) {
        match self {
            Tx::Ws(sink) => {
                let _ = sink.close().await;
            }
            Tx::Tcp(w) => {
                let _ = w.shutdown().await;
            }
        }
    }
}

enum RxInner {
    Ws(SplitStream<Ws>),
    Tcp(OwnedReadHalf),
}

/// The receiving half of a connection, with its frame buffer.
pub struct Rx {
    inner: RxInner,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out as frames.
    consumed: usize,
}

impl Rx {
    fn new(inner: RxInner, capacity: usize) -> Self {
        Rx {
            inner,
            buf: Vec::with_capacity(capacity),
            consumed: 0,
        }
    }

    /// Calls `on_frame` for every whole frame that arrives with the next read (at least
    /// one read happens; it may yield zero frames when a frame is still partial).
    pub async fn recv_batch(
        &mut self,
        mut on_frame: impl FnMut(&Frame<'_>) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        // Drop bytes already handed out before reading more.
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        match &mut self.inner {
            RxInner::Ws(stream) => loop {
                match stream.next().await {
                    None => return Err(ClientError::Closed),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(Message::Text(t))) => {
                        self.buf.extend_from_slice(t.as_bytes());
                        break;
                    }
                    Some(Ok(Message::Binary(b))) => {
                        self.buf.extend_from_slice(&b);
                        break;
                    }
                    Some(Ok(Message::Close(_))) => return Err(ClientError::Closed),
                    Some(Ok(_)) => continue, // ping/pong: tungstenite answers pings itself
                }
            },
            RxInner::Tcp(r) => {
                if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                    self.buf.reserve(64 * 1024);
                }
                let n = r.read_buf(&mut self.buf).await?;
                if n == 0 {
                    return Err(ClientError::Closed);
                }
            }
        }
        loop {
            let mut headers = [Header::EMPTY; wire::MAX_HEADERS];
            let Some((frame, used)) = wire::next_frame(&self.buf[self.consumed..], &mut headers)?
            else {
                break;
            };
            self.consumed += used;
            if frame.command == Command::Error {
                let mut msg = wire::header_text(&frame, "message");
                if msg.is_empty() {
                    msg = String::from_utf8_lossy(frame.body).into_owned();
                }
                return Err(ClientError::Server(msg));
            }
            on_frame(&frame)?;
        }
        Ok(())
    }

    /// Waits for one frame with command `cmd` (`RECEIPT` with `receipt-id` = `id` when
    /// given), failing on anything else that is not a MESSAGE.
    pub async fn expect(
        &mut self,
        cmd: Command,
        receipt_id: Option<&str>,
        within: Duration,
    ) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut found = false;
        while !found {
            let step = self.recv_batch(|f| {
                let id_ok = receipt_id.is_none_or(|id| f.receipt_id().is_some_and(|v| v == id));
                if f.command == cmd && id_ok {
                    found = true;
                    Ok(())
                } else if f.command == Command::Message {
                    Ok(())
                } else {
                    Err(ClientError::Unexpected(f.command.as_str().to_string()))
                }
            });
            match tokio::time::timeout_at(deadline, step).await {
                Ok(r) => r?,
                Err(_) => return Err(ClientError::Timeout(cmd.as_str())),
            }
        }
        Ok(())
    }
}

/// How [`connect_with`] opens a session; [`connect`] uses the defaults.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Local address to bind before connecting (spreads many sessions over several
    /// 127.x sources, each with its own ephemeral port range).
    pub source: Option<IpAddr>,
    /// The CONNECT `heart-beat` header.
    pub heart_beat: String,
    /// How big the connection's buffers are.
    pub buffers: Buffers,
}

/// Buffer sizes of a connection, chosen by what the run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffers {
    /// 64 KiB reads, for max-rate runs where one read carries a whole batch.
    Throughput,
    /// 8 KiB reads, for paced runs where a read carries one frame: tungstenite zero-fills
    /// its free read capacity before every read (and before every read that would
    /// block), so a 64 KiB buffer cost a third of the tool's CPU per delivery in the
    /// 20 k/s latency run and delayed the last subscribers of each fan-out.
    Latency,
    /// 4 KiB reads and no write buffer, for runs holding 100 000 sessions in one process.
    Lean,
}

impl Buffers {
    /// The read buffer size.
    fn read(self) -> usize {
        match self {
            Buffers::Throughput => 64 * 1024,
            Buffers::Latency => 8 * 1024,
            Buffers::Lean => 4 * 1024,
        }
    }

    /// The WebSocket write buffer size (0: every frame is written at once).
    fn write(self) -> usize {
        match self {
            Buffers::Lean => 0,
            Buffers::Throughput | Buffers::Latency => self.read(),
        }
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            source: None,
            heart_beat: "0,0".into(),
            buffers: Buffers::Throughput,
        }
    }
}

/// Opens a connection to `target` and completes the STOMP CONNECT handshake.
pub async fn connect(
    target: &Target,
    login: &Login,
    within: Duration,
) -> Result<(Tx, Rx), ClientError> {
    connect_with(target, login, within, &ConnectOptions::default()).await
}

/// [`connect`] with a source address, heart-beats and buffer sizes.
pub async fn connect_with(
    target: &Target,
    login: &Login,
    within: Duration,
    opts: &ConnectOptions,
) -> Result<(Tx, Rx), ClientError> {
    let buf = opts.buffers.read();
    let open = async {
        let tcp = match opts.source {
            None => TcpStream::connect(target.addr).await?,
            Some(ip) => {
                let sock = if ip.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                sock.bind(SocketAddr::new(ip, 0))?;
                sock.connect(target.addr).await?
            }
        };
        tcp.set_nodelay(true)?;
        if target.websocket {
            let mut req = target.url.as_str().into_client_request()?;
            req.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static("v12.stomp, v11.stomp, v10.stomp"),
            );
            let config = WebSocketConfig::default()
                .read_buffer_size(buf)
                .write_buffer_size(opts.buffers.write());
            let (ws, _resp) =
                tokio_tungstenite::client_async_with_config(req, tcp, Some(config)).await?;
            let (sink, stream) = ws.split();
            Ok::<_, ClientError>((Tx::Ws(sink), Rx::new(RxInner::Ws(stream), buf)))
        } else {
            let (r, w) = tcp.into_split();
            Ok((
                Tx::Tcp(BufWriter::with_capacity(buf, w)),
                Rx::new(RxInner::Tcp(r), buf),
            ))
        }
    };
    let (mut tx, mut rx) = tokio::time::timeout(within, open)
        .await
        .map_err(|_| ClientError::Timeout("the transport to open"))??;
    let mut headers: Vec<(&str, &str)> = vec![
        ("accept-version", "1.2,1.1,1.0"),
        ("host", &login.vhost),
        ("heart-beat", &opts.heart_beat),
    ];
    if let Some(l) = &login.login {
        headers.push(("login", l));
    }
    if let Some(p) = &login.passcode {
        headers.push(("passcode", p));
    }
    tx.send(&wire::encode(Command::Connect, &headers, b"")?)
        .await?;
    rx.expect(Command::Connected, None, within).await?;
    Ok((tx, rx))
}

/// Sends SUBSCRIBE (auto ack) with a receipt and waits for the receipt.
pub async fn subscribe(
    tx: &mut Tx,
    rx: &mut Rx,
    id: &str,
    destination: &str,
    within: Duration,
) -> Result<(), ClientError> {
    let receipt = format!("sub-{id}");
    let frame = wire::encode(
        Command::Subscribe,
        &[
            ("id", id),
            ("destination", destination),
            ("ack", "auto"),
            ("receipt", &receipt),
        ],
        b"",
    )?;
    tx.send(&frame).await?;
    rx.expect(Command::Receipt, Some(&receipt), within).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets_and_refuses_non_loopback() {
        let t: Target = "ws://127.0.0.1:15674/ws".parse().unwrap();
        assert!(t.websocket);
        assert_eq!(t.addr.port(), 15674);
        let t: Target = "stomp://localhost:61613".parse().unwrap();
        assert!(!t.websocket);
        assert!("ws://10.0.0.1:80/ws"
            .parse::<Target>()
            .unwrap_err()
            .contains("loopback"));
        assert!("http://127.0.0.1:80".parse::<Target>().is_err());
        assert!("ws://127.0.0.1/ws"
            .parse::<Target>()
            .unwrap_err()
            .contains("PORT"));
    }
}
