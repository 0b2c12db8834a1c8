//! [`Client`]: the expect-style helpers every test uses, over any [`Transport`].

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use crate::frame::{frame_bytes, Event, Frame, FrameReader};

/// How long the `expect_*` helpers wait before failing the test.
pub const WAIT: Duration = Duration::from_secs(10);

/// What one [`Transport::recv`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recv {
    /// Bytes were appended.
    Data,
    /// The peer closed (or the connection failed), with a WebSocket close code if any.
    Closed(Option<u16>),
    /// Nothing arrived within the wait.
    TimedOut,
}

/// Moves bytes for a [`Client`] on one runtime.
pub trait Transport {
    /// Writes `bytes` (one WebSocket message); `false` when the connection is gone.
    fn send(&mut self, bytes: &[u8]) -> impl Future<Output = bool>;
    /// Waits at most `wait` for bytes and appends them to `buf`.
    fn recv(&mut self, buf: &mut Vec<u8>, wait: Duration) -> impl Future<Output = Recv>;
}

/// A STOMP client recording every frame, heart-beat and the close. Waits take a
/// `std::time::Duration` or anything that converts (embassy-time's `Duration`).
pub struct Client<T> {
    transport: T,
    reader: FrameReader,
    events: VecDeque<Event>,
    closed: bool,
    /// The WebSocket subprotocol the server agreed to, if any.
    pub protocol: Option<String>,
    /// Heart-beats taken off the stream so far.
    pub heartbeats: usize,
}

impl<T: Transport> Client<T> {
    /// A client over an open `transport`.
    pub fn new(transport: T) -> Client<T> {
        Client {
            transport,
            reader: FrameReader::default(),
            events: VecDeque::new(),
            closed: false,
            protocol: None,
            heartbeats: 0,
        }
    }

    /// The transport, for what only it can do (a WebSocket ping, an abort).
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Writes `bytes` as they are; `false` when the connection is gone.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> bool {
        self.transport.send(bytes).await
    }

    /// Writes one frame exactly as given (see [`frame_bytes`]).
    pub async fn send_frame(
        &mut self,
        command: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> bool {
        self.send_raw(&frame_bytes(command, headers, body)).await
    }

    /// One read from the transport, waiting until `deadline` at most; `false` when
    /// it timed out. A close queues what was still buffered, then the close itself.
    async fn read_until(&mut self, deadline: std::time::Instant) -> bool {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match self.transport.recv(self.reader.buffer(), left).await {
            Recv::Data => {}
            Recv::TimedOut => return false,
            Recv::Closed(code) => {
                while let Some(e) = self.reader.next_event() {
                    self.events.push_back(e);
                }
                self.events.push_back(Event::Closed(code));
                self.closed = true;
            }
        }
        true
    }

    /// Reads until an event is queued or `wait` passes.
    async fn fill(&mut self, wait: Duration) -> bool {
        let deadline = std::time::Instant::now() + wait;
        while self.events.is_empty() {
            if let Some(e) = self.reader.next_event() {
                self.events.push_back(e);
                break;
            }
            if self.closed {
                return false;
            }
            if !self.read_until(deadline).await {
                return false;
            }
        }
        true
    }

    /// The next event within `wait`, or `None`. After the close there are no more.
    pub async fn next_event(&mut self, wait: impl Into<Duration>) -> Option<Event> {
        let wait = wait.into();
        if !self.fill(wait).await {
            return None;
        }
        let e = self.events.pop_front();
        if let Some(Event::HeartBeat) = e {
            self.heartbeats += 1;
        }
        e
    }

    /// The next frame within `wait`, heart-beats skipped; `None` on close or timeout.
    pub async fn next_frame(&mut self, wait: impl Into<Duration>) -> Option<Frame> {
        let deadline = std::time::Instant::now() + wait.into();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.next_event(left).await? {
                Event::Frame(f) => return Some(f),
                Event::HeartBeat => continue,
                Event::Closed(_) => return None,
            }
        }
    }

    /// The next frame, heart-beats skipped, waiting as long as it takes; `None` once the
    /// connection closed. For tests bounded by their own overall limit.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.next_frame(Duration::from_secs(3600)).await
    }

    /// The next frame, heart-beats skipped.
    ///
    /// # Panics
    /// On the close, or when nothing arrives within [`WAIT`].
    pub async fn expect_frame(&mut self) -> Frame {
        loop {
            match self.next_event(WAIT).await {
                Some(Event::Frame(f)) => return f,
                Some(Event::HeartBeat) => continue,
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    /// Skips frames and heart-beats until the close; returns its WebSocket code.
    ///
    /// # Panics
    /// When the connection stays open for [`WAIT`].
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.next_event(WAIT).await {
                Some(Event::Closed(code)) => return code,
                Some(_) => continue,
                None => panic!("connection not closed within {WAIT:?}"),
            }
        }
    }

    /// The next event must be the close (heart-beats aside).
    ///
    /// # Panics
    /// On a frame, or when the connection stays open for [`WAIT`].
    pub async fn expect_only_close(&mut self) {
        loop {
            match self.next_event(WAIT).await {
                Some(Event::Closed(_)) => return,
                Some(Event::HeartBeat) => continue,
                Some(Event::Frame(f)) => panic!("expected the close, got {f:?}"),
                None => panic!("connection not closed within {WAIT:?}"),
            }
        }
    }

    /// Whether the peer closed within `within`. Frames that arrive meanwhile stay
    /// queued for the next read.
    pub async fn closed_within(&mut self, within: impl Into<Duration>) -> bool {
        let deadline = std::time::Instant::now() + within.into();
        while !self.closed {
            if !self.read_until(deadline).await {
                return false;
            }
        }
        true
    }

    /// Expects ERROR (returns its `message`) followed by the close.
    pub async fn error_then_close(&mut self) -> String {
        let f = self.expect_frame().await;
        assert_eq!(f.command.as_str(), "ERROR", "{f:?}");
        let msg = f.header("message").unwrap_or("").to_string();
        self.expect_only_close().await;
        msg
    }

    /// Sends CONNECT (1.2, `host:localhost`) with `extra` headers; returns the answer.
    pub async fn connect(&mut self, extra: &[(&str, &str)]) -> Frame {
        let mut h = vec![("accept-version", "1.2"), ("host", "localhost")];
        h.extend_from_slice(extra);
        self.send_frame("CONNECT", &h, b"").await;
        self.expect_frame().await
    }

    /// [`connect`](Client::connect), asserting the answer is CONNECTED.
    pub async fn expect_connected(&mut self, extra: &[(&str, &str)]) -> Frame {
        let f = self.connect(extra).await;
        assert_eq!(f.command.as_str(), "CONNECTED", "{f:?}");
        f
    }

    /// SUBSCRIBE `id` to `dest` with receipt `sub-<id>`, asserting its RECEIPT.
    pub async fn subscribe(&mut self, id: &str, dest: &str) {
        let receipt = format!("sub-{id}");
        if let Err(e) = self.try_subscribe_with(id, dest, &receipt).await {
            panic!("SUBSCRIBE {id} to {dest} refused: {e}");
        }
    }

    /// SUBSCRIBE with receipt `r-<id>`: `Ok` on its RECEIPT, `Err(message)` on ERROR.
    pub async fn try_subscribe(&mut self, id: &str, dest: &str) -> Result<(), String> {
        self.try_subscribe_with(id, dest, &format!("r-{id}")).await
    }

    async fn try_subscribe_with(
        &mut self,
        id: &str,
        dest: &str,
        receipt: &str,
    ) -> Result<(), String> {
        let headers = [("id", id), ("destination", dest), ("receipt", receipt)];
        self.send_frame("SUBSCRIBE", &headers, b"").await;
        self.receipt_or_error(receipt).await
    }

    /// SEND with receipt `r`: `Ok` on its RECEIPT, `Err(message)` on ERROR.
    pub async fn send_receipted(&mut self, dest: &str, body: &str, r: &str) -> Result<(), String> {
        let headers = [("destination", dest), ("receipt", r)];
        self.send_frame("SEND", &headers, body.as_bytes()).await;
        self.receipt_or_error(r).await
    }

    /// `Ok` on the RECEIPT for `receipt`, `Err(message)` on an ERROR; anything else
    /// is a test failure.
    async fn receipt_or_error(&mut self, receipt: &str) -> Result<(), String> {
        let f = self.expect_frame().await;
        match f.command.as_str() {
            "RECEIPT" => {
                assert_eq!(f.header("receipt-id"), Some(receipt), "{f:?}");
                Ok(())
            }
            "ERROR" => Err(f.header("message").unwrap_or("").to_string()),
            _ => panic!("expected RECEIPT {receipt} or ERROR, got {f:?}"),
        }
    }

    /// The next MESSAGE's body within `wait`, or `None` (close, another frame, nothing).
    pub async fn message(&mut self, wait: impl Into<Duration>) -> Option<String> {
        match self.next_frame(wait).await {
            Some(f) if f.command.as_str() == "MESSAGE" => Some(f.body_str().to_owned()),
            _ => None,
        }
    }
}
