//! SockJS's `websocket` transport: a WebSocket whose messages are SockJS frames. The
//! server opens with `o`, sends `a[...]` arrays and `h` when idle, and closes with
//! `c[code,"reason"]` before the WebSocket close; the client sends JSON arrays.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use super::frame;
use crate::transport::{Chunk, Transport, WriteBatch, WsTransport};

/// A [`WsTransport`] speaking SockJS framing.
pub(crate) struct SockJsWs {
    ws: WsTransport,
    heartbeat: Duration,
    last_tx: Instant,
    opened: bool,
}

impl SockJsWs {
    pub(crate) fn new(ws: WsTransport, heartbeat: Duration) -> Self {
        SockJsWs {
            ws,
            heartbeat,
            last_tx: Instant::now(),
            opened: false,
        }
    }

    async fn write(&mut self, text: String) -> io::Result<()> {
        self.last_tx = Instant::now();
        self.ws
            .send(&mut WriteBatch::from_iter([text.as_bytes()]))
            .await
    }

    async fn open(&mut self) -> io::Result<()> {
        if !self.opened {
            self.opened = true;
            self.write(frame::OPEN.to_string()).await?;
        }
        Ok(())
    }
}

impl Transport for SockJsWs {
    async fn recv(&mut self) -> io::Result<Chunk> {
        self.open().await?;
        loop {
            let beat = self.last_tx + self.heartbeat;
            let got = tokio::select! {
                got = self.ws.recv() => got?,
                _ = tokio::time::sleep_until(beat) => {
                    self.write(frame::HEARTBEAT.to_string()).await?;
                    continue;
                }
            };
            let Chunk::Data(bytes) = got else {
                return Ok(got);
            };
            match frame::parse_send(&bytes) {
                Ok(messages) => {
                    let mut data = BytesMut::new();
                    for m in messages {
                        data.extend_from_slice(m.as_bytes());
                    }
                    return Ok(Chunk::Data(data.freeze()));
                }
                // sockjs-client never sends an empty message; a broken one is not
                // SockJS, and the session ends as a protocol error would.
                Err(frame::SendError::Empty) => continue,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }

    async fn send(&mut self, batch: &mut WriteBatch) -> io::Result<()> {
        self.open().await?;
        let a = frame::messages(batch.units());
        batch.clear();
        self.write(a).await
    }

    async fn close(&mut self, code: u16, reason: &str) {
        if self.open().await.is_ok() && self.write(frame::close(code, reason)).await.is_ok() {
            self.ws.close(code, reason).await;
        }
    }

    fn kind(&self) -> &'static str {
        "sockjs-websocket"
    }
}
