//! The client transports behind one small trait so the session driver is written once:
//! WebSocket and plain TCP here, SockJS's in `sockjs/`.
//!
//! A transport only moves bytes: [`Transport::recv`] yields chunks of the client's
//! STOMP byte stream (one WebSocket message, or what one TCP read returned) and
//! [`Transport::send`] writes a [`WriteBatch`] of encoded frames. Frame boundaries are the session
//! driver's business (it reassembles across chunks), except that over WebSocket each
//! outgoing frame travels as its own message, as STOMP-over-WebSocket clients expect.

use std::io;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub use crate::batch::WriteBatch;

/// How long a closing WebSocket waits for the client's close reply.
const CLOSE_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(2);

/// One read from a transport.
#[derive(Debug)]
pub enum Chunk {
    /// More of the client's byte stream.
    Data(Bytes),
    /// The client closed (WebSocket close frame or TCP EOF).
    Closed,
    /// The client went away without closing: a SockJS session that had no receiving
    /// request for the disconnect delay.
    Gone,
    /// The client sent one WebSocket message over `limit` bytes, which the WebSocket
    /// layer refused before reading it; the session answers ERROR and closes.
    Oversized {
        /// The WebSocket message size limit.
        limit: usize,
    },
}

/// A client connection the session driver reads from and writes to.
pub trait Transport: Send + 'static {
    /// The next chunk of client bytes. Errors are transport failures.
    fn recv(&mut self) -> impl std::future::Future<Output = io::Result<Chunk>> + Send;

    /// Writes the batch's units (encoded frames or heart-beat EOLs), flushes, and
    /// leaves the batch empty.
    fn send(
        &mut self,
        batch: &mut WriteBatch,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send;

    /// Closes the connection with a WebSocket close code (ignored for TCP).
    fn close(&mut self, code: u16, reason: &str) -> impl std::future::Future<Output = ()> + Send;

    /// A short name for logs and metrics (`ws` or `tcp`).
    fn kind(&self) -> &'static str;
}

/// STOMP over WebSocket (text and binary messages both carry STOMP bytes).
pub struct WsTransport {
    ws: WebSocket,
}

impl WsTransport {
    /// Wraps an upgraded WebSocket.
    pub fn new(ws: WebSocket) -> Self {
        WsTransport { ws }
    }
}

fn ws_err(e: axum::Error) -> io::Error {
    io::Error::other(e)
}

/// The size limit a WebSocket read error reports, if it is a message or frame over it.
fn ws_oversized(e: &axum::Error) -> Option<usize> {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error};
    let source = std::error::Error::source(e)?;
    match source.downcast_ref::<Error>()? {
        Error::Capacity(CapacityError::MessageTooLong { max_size, .. }) => Some(*max_size),
        _ => None,
    }
}

impl Transport for WsTransport {
    async fn recv(&mut self) -> io::Result<Chunk> {
        loop {
            match self.ws.next().await {
                None => return Ok(Chunk::Closed),
                Some(Err(e)) => {
                    return match ws_oversized(&e) {
                        Some(limit) => Ok(Chunk::Oversized { limit }),
                        None => Err(ws_err(e)),
                    }
                }
                Some(Ok(Message::Text(t))) => return Ok(Chunk::Data(Bytes::from(t))),
                Some(Ok(Message::Binary(b))) => return Ok(Chunk::Data(b)),
                Some(Ok(Message::Close(_))) => return Ok(Chunk::Closed),
                // Pings are answered by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            }
        }
    }

    async fn send(&mut self, batch: &mut WriteBatch) -> io::Result<()> {
        for unit in batch.take_units() {
            // Text when the frame is UTF-8 (what browsers' stomp clients expect); a
            // binary body that is not UTF-8 has to travel as a binary message.
            // (The clone is a reference count: the text keeps the same buffer.)
            let msg = match Utf8Bytes::try_from(unit.clone()) {
                Ok(text) => Message::Text(text),
                Err(_) => Message::Binary(unit),
            };
            self.ws.feed(msg).await.map_err(ws_err)?;
        }
        self.ws.flush().await.map_err(ws_err)
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let sent = self
            .ws
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
        if sent.is_err() {
            return;
        }
        // Finish the closing handshake: read (and drop) what the client still sends
        // until its close reply. Dropping the socket with unread input would make the
        // kernel send RST, and the client could lose the ERROR and close frame.
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
            while let Some(Ok(m)) = self.ws.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    fn kind(&self) -> &'static str {
        "ws"
    }
}

/// STOMP over a plain TCP stream.
pub struct TcpTransport {
    rd: OwnedReadHalf,
    // Unbuffered: a write batch is already one buffer, written in one call.
    wr: OwnedWriteHalf,
    // Allocated on first read and kept small, so an idle connection costs little.
    buf: BytesMut,
}

impl TcpTransport {
    /// Wraps an accepted TCP connection.
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        TcpTransport {
            rd,
            wr,
            buf: BytesMut::new(),
        }
    }
}

impl Transport for TcpTransport {
    async fn recv(&mut self) -> io::Result<Chunk> {
        self.buf.reserve(4096);
        let n = self.rd.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Ok(Chunk::Closed);
        }
        Ok(Chunk::Data(self.buf.split().freeze()))
    }

    async fn send(&mut self, batch: &mut WriteBatch) -> io::Result<()> {
        let written = self.wr.write_all(batch.bytes()).await;
        batch.clear();
        written
    }

    async fn close(&mut self, _code: u16, _reason: &str) {
        let _ = self.wr.shutdown().await;
        // Drain until the client closes too, so unread input does not turn our close
        // into an RST that could destroy the ERROR frame in flight.
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
            let mut sink = [0u8; 1024];
            while let Ok(n) = self.rd.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }

    fn kind(&self) -> &'static str {
        "tcp"
    }
}
