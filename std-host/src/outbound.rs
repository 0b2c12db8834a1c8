//! The per-session outbound queue: what brokers and the application hand to one client.
//!
//! Producers (the simple broker fanning out, a relay's upstream reader, the application's
//! publisher) never wait on a client: [`ClientHandle::send`] either queues at once or
//! refuses. The queue is bounded in BYTES by the send buffer limit: an item that would
//! take the queued total over the limit marks the session a slow consumer, the item is
//! dropped, and the session task closes the client with 4500. So one slow client never
//! slows the publisher or the other subscribers, and never grows memory without bound.
//!
//! Invariant: `queued` is the sum of the weights of items sent and not yet
//! [`OutboundRx::done`]; once `overflowed` is set, nothing more is accepted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use stomp_relay_codec::{Command, EncodeOptions, Frame, Header, Version};

use crate::frame::OwnedFrame;

/// Identifies one client session: 128 random bits ([`crate::state::Shared`] draws them
/// per connection), so no two instances on one broker and no client can collide with
/// or guess another session's user destinations.
pub use stomp_relay_core::SessionId;

/// A message routed to one subscription of one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The client's subscription id (`subscription` header of the MESSAGE).
    pub subscription: Arc<str>,
    /// The `message-id` header.
    pub message_id: Arc<str>,
    /// The MESSAGE frame's other headers and body (shared by every subscriber of a fan-out).
    pub message: Arc<SharedMessage>,
}

/// Headers a delivery writes per subscriber (or never), so the shared part leaves them out.
const PER_DELIVERY: [&[u8]; 5] = [
    b"subscription",
    b"message-id",
    b"ack",
    b"destination",
    b"receipt",
];

/// A MESSAGE every subscriber of a fan-out gets, with its shared part encoded once per
/// STOMP version on first use: the headers other than [`PER_DELIVERY`] (but with the
/// `message-id` when it is every subscriber's, [`SharedMessage::with_shared_id`]) and
/// the body, with `content-length` and the terminating NUL. Each delivery then encodes
/// only its own few headers in front (a fan-out to 50 sessions spent a third of its time
/// encoding the same broker headers 50 times).
#[derive(Debug)]
pub struct SharedMessage {
    frame: OwnedFrame,
    /// Per version: the whole encoded frame, `MESSAGE\n` included (the tail follows it).
    tails: [std::sync::OnceLock<Option<Box<[u8]>>>; 3],
    /// The frame's `message-id` is every subscriber's, so it is in the tail and no
    /// delivery writes it.
    shared_id: bool,
}

impl SharedMessage {
    /// Wraps `frame`; nothing is encoded until a delivery needs it.
    pub fn new(frame: OwnedFrame) -> Self {
        SharedMessage {
            frame,
            tails: Default::default(),
            shared_id: false,
        }
    }

    /// Wraps `frame` whose `message-id` header is the same for every subscriber (a
    /// relayed broker message): it is escaped and encoded once, in the shared part,
    /// instead of in every delivery's head. Broker ids need escaping (ActiveMQ's
    /// `ID:host-1234-...:1:1:1:42` is full of colons), which sent every head through the
    /// codec's slower escaping pass, once per subscriber.
    pub fn with_shared_id(frame: OwnedFrame) -> Self {
        SharedMessage {
            shared_id: frame.header("message-id").is_some(),
            ..SharedMessage::new(frame)
        }
    }

    /// Whether the shared part carries the `message-id` (see [`Self::with_shared_id`]).
    pub fn has_shared_id(&self) -> bool {
        self.shared_id
    }

    /// The encoded shared part for `version`: header lines, blank line, body, NUL
    /// (`None` when the codec refuses the frame).
    pub fn tail(&self, version: Version) -> Option<&[u8]> {
        let i = match version {
            Version::V1_0 => 0,
            Version::V1_1 => 1,
            Version::V1_2 => 2,
        };
        self.tails[i]
            .get_or_init(|| {
                let hs: Vec<Header<'_>> = self
                    .frame
                    .headers
                    .iter()
                    .filter(|(n, _)| {
                        !PER_DELIVERY.contains(&&n[..])
                            || (self.shared_id && &n[..] == b"message-id")
                    })
                    .map(|(n, v)| Header::new(n, v))
                    .collect();
                let frame = Frame::new(Command::Message, &hs, &self.frame.body);
                let opts = EncodeOptions::new(version);
                let n = stomp_relay_codec::encoded_len(&frame, opts).ok()?;
                // Kept whole (exactly n bytes, no second copy without the command line).
                let mut out = vec![0u8; n].into_boxed_slice();
                stomp_relay_codec::encode(&frame, opts, &mut out).ok()?;
                Some(out)
            })
            .as_deref()
            .map(|whole| &whole[b"MESSAGE\n".len()..])
    }

    /// Appends one subscriber's MESSAGE to `out`: `head` (its subscription,
    /// message-id, ack, destination) in front of the shared part, byte for byte what
    /// encoding the whole frame would give. Returns the bytes appended, or `None` (and
    /// `out` as it was) when the codec refuses the frame.
    pub fn encode_with(
        &self,
        head: &[Header<'_>],
        version: Version,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let tail = self.tail(version)?;
        let frame = Frame::new(Command::Message, head, b"");
        let opts = EncodeOptions::new(version);
        // Room for every byte escaped: the codec then encodes in one pass, without
        // first measuring (this runs once per subscriber of every message).
        let room = b"MESSAGE\n\n\0".len()
            + head
                .iter()
                .map(|h| 2 * (h.name.len() + h.value.len()) + 2)
                .sum::<usize>();
        let start = out.len();
        out.reserve(room + tail.len());
        out.resize(start + room, 0);
        let Ok(n) = stomp_relay_codec::encode(&frame, opts, &mut out[start..]) else {
            out.truncate(start);
            return None;
        };
        // The head ends with the blank line and NUL of an empty body: the tail has them.
        out.truncate(start + n - b"\n\0".len());
        out.extend_from_slice(tail);
        Some(out.len() - start)
    }
}

impl From<OwnedFrame> for SharedMessage {
    fn from(frame: OwnedFrame) -> Self {
        SharedMessage::new(frame)
    }
}

impl std::ops::Deref for SharedMessage {
    type Target = OwnedFrame;
    fn deref(&self) -> &OwnedFrame {
        &self.frame
    }
}

/// One item for a client session.
#[derive(Debug, Clone)]
pub enum ToClient {
    /// A broker message for one of the session's subscriptions.
    Message(Delivery),
    /// Any other complete frame (a RECEIPT, an upstream MESSAGE already addressed, ...).
    Frame(OwnedFrame),
    /// A heart-beat EOL (relayed from upstream).
    HeartBeat,
    /// End the session: an ERROR frame with `message` (when given), then close with `code`
    /// (a WebSocket close code; TCP clients just see the connection end).
    Close {
        /// The ERROR frame's `message` header; `None` closes without an ERROR frame.
        message: Option<String>,
        /// WebSocket close code, e.g. 1002 (protocol error), 1011, 4500 (slow consumer).
        code: u16,
    },
}

impl ToClient {
    /// Bytes this item counts against the send buffer.
    pub fn weight(&self) -> usize {
        match self {
            ToClient::Message(d) => {
                d.message.weight() + d.subscription.len() + d.message_id.len() + 40
            }
            ToClient::Frame(f) => f.weight(),
            ToClient::HeartBeat => 1,
            ToClient::Close { message, .. } => message.as_ref().map_or(0, |m| m.len()) + 16,
        }
    }
}

/// Why [`ClientHandle::send`] refused an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The session's send buffer is full; the session is being closed with 4500.
    SlowConsumer,
    /// The session has ended.
    Closed,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::SlowConsumer => f.write_str("send buffer limit exceeded (slow consumer)"),
            SendError::Closed => f.write_str("session closed"),
        }
    }
}

impl std::error::Error for SendError {}

struct Shared {
    queued: AtomicUsize,
    limit: usize,
    overflowed: AtomicBool,
    /// Set when the session task dropped its receiver.
    closed: AtomicBool,
    /// Items in order. A plain deque, not a channel: an idle session holds no
    /// preallocated block, and after a burst the memory is given back.
    items: Mutex<VecDeque<ToClient>>,
    waker: AtomicWaker,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<ToClient>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, item: ToClient) {
        self.lock().push_back(item);
        self.waker.wake();
    }
}

/// The sending side of a session's outbound queue. Cheap to clone, usable from any task.
#[derive(Clone)]
pub struct ClientHandle {
    id: SessionId,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandle")
            .field("id", &self.id)
            .field("queued", &self.shared.queued.load(Ordering::Relaxed))
            .finish()
    }
}

/// The receiving side, owned by the session task.
pub struct OutboundRx {
    shared: Arc<Shared>,
}

impl Drop for OutboundRx {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        // Free what producers queued; nobody will write it.
        let drained = std::mem::take(&mut *self.shared.lock());
        drop(drained);
    }
}

/// A new outbound queue for session `id` holding at most `limit` bytes.
pub fn channel(id: SessionId, limit: usize) -> (ClientHandle, OutboundRx) {
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        limit,
        overflowed: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        items: Mutex::new(VecDeque::new()),
        waker: AtomicWaker::new(),
    });
    (
        ClientHandle {
            id,
            shared: shared.clone(),
        },
        OutboundRx { shared },
    )
}

impl ClientHandle {
    /// The session this handle delivers to.
    pub fn session_id(&self) -> SessionId {
        self.id
    }

    /// Queues `item` without waiting. Close requests are always accepted (they end the
    /// session, so they cannot grow the queue without bound).
    pub fn send(&self, item: ToClient) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if matches!(item, ToClient::Close { .. }) {
            self.shared.push(item);
            return Ok(());
        }
        if self.shared.overflowed.load(Ordering::Relaxed) {
            return Err(SendError::SlowConsumer);
        }
        let w = item.weight();
        let before = self.shared.queued.fetch_add(w, Ordering::AcqRel);
        // An empty queue takes any one item, so a frame up to the max frame size always
        // fits even with a tiny configured buffer.
        if before > 0 && before + w > self.shared.limit {
            self.shared.queued.fetch_sub(w, Ordering::AcqRel);
            if !self.shared.overflowed.swap(true, Ordering::AcqRel) {
                self.shared.push(ToClient::Close {
                    message: None,
                    code: crate::close::SLOW_CONSUMER,
                });
            }
            return Err(SendError::SlowConsumer);
        }
        self.shared.push(item);
        Ok(())
    }

    /// Whether the session has ended (its task dropped the receiver).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Bytes currently queued.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }
}

impl OutboundRx {
    /// The next item. (The session task holds a handle itself, so the queue never
    /// runs dry for good while it runs; `None` is kept for API symmetry.)
    pub async fn recv(&mut self) -> Option<ToClient> {
        std::future::poll_fn(|cx| {
            if let Some(it) = self.shared.lock().pop_front() {
                return Poll::Ready(Some(it));
            }
            self.shared.waker.register(cx.waker());
            // An item pushed between the check and the registration must not be missed.
            match self.shared.lock().pop_front() {
                Some(it) => Poll::Ready(Some(it)),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<ToClient> {
        let mut q = self.shared.lock();
        let it = q.pop_front();
        if q.is_empty() && q.capacity() > 64 {
            // A burst passed: give the memory back so idle sessions stay small.
            *q = VecDeque::new();
        }
        it
    }

    /// Marks `item` written (or discarded), releasing its bytes from the send buffer.
    pub fn done(&self, item: &ToClient) {
        if !matches!(item, ToClient::Close { .. }) {
            self.shared
                .queued
                .fetch_sub(item.weight(), Ordering::AcqRel);
        }
    }

    /// Whether the slow-consumer limit was hit.
    pub fn overflowed(&self) -> bool {
        self.shared.overflowed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_message_encodes_as_the_whole_frame_would() {
        let frame = OwnedFrame::new(Command::Message)
            .with_header("destination", "/sub/a")
            .with_header("receipt", "r-9")
            .with_header("x", "a:b\nc\\d")
            .with_header("content-type", "text/plain")
            .with_body(&b"body\0with nul"[..]);
        let shared = SharedMessage::new(frame.clone());
        for version in [Version::V1_0, Version::V1_1, Version::V1_2] {
            let head = [
                Header::new(b"subscription", b"sub:1"),
                Header::new(b"message-id", b"m-1"),
                Header::new(b"destination", b"/user/queue/x"),
            ];
            let mut whole: Vec<Header<'_>> = head.to_vec();
            whole.extend(
                frame
                    .headers
                    .iter()
                    .filter(|(n, _)| !matches!(&n[..], b"destination" | b"receipt"))
                    .map(|(n, v)| Header::new(n, v)),
            );
            let f = Frame::new(Command::Message, &whole, &frame.body);
            let opts = EncodeOptions::new(version);
            // STOMP 1.0 cannot carry the value's line break: both ways refuse it.
            let expected = stomp_relay_codec::encoded_len(&f, opts).ok().map(|n| {
                let mut out = vec![0u8; n];
                stomp_relay_codec::encode(&f, opts, &mut out).unwrap();
                out
            });
            assert_eq!(expected.is_none(), version == Version::V1_0);
            // Twice, appended after other bytes: the second delivery uses the cached part.
            let mut out = b"before".to_vec();
            for _ in 0..2 {
                let n = shared.encode_with(&head, version, &mut out);
                assert_eq!(n, expected.as_ref().map(Vec::len), "{version:?}");
                if let Some(e) = &expected {
                    assert_eq!(&out[out.len() - e.len()..], e, "{version:?}");
                }
            }
            let appended = expected.as_ref().map_or(0, |e| 2 * e.len());
            assert_eq!(
                out.len(),
                b"before".len() + appended,
                "a refusal appends nothing"
            );
            assert!(out.starts_with(b"before"));
        }
    }

    #[test]
    fn a_shared_id_is_escaped_once_in_the_shared_part() {
        let frame = OwnedFrame::new(Command::Message)
            .with_header("message-id", "ID:amq-1:1:1:1:42")
            .with_header("destination", "/topic/a")
            .with_body(&b"hi"[..]);
        let shared = SharedMessage::with_shared_id(frame);
        assert!(shared.has_shared_id());
        let head = [Header::new(b"subscription", b"s-1")];
        let mut out = Vec::new();
        shared
            .encode_with(&head, Version::V1_2, &mut out)
            .expect("encodes");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("message-id:").count(), 1, "{text}");
        assert!(
            text.contains("message-id:ID\\camq-1\\c1\\c1\\c1\\c42\n"),
            "{text}"
        );
        // A message without one keeps it per delivery.
        let plain = SharedMessage::with_shared_id(OwnedFrame::new(Command::Message));
        assert!(!plain.has_shared_id());
    }

    use bytes::Bytes;
    use stomp_relay_codec::Command;

    fn msg(n: usize) -> ToClient {
        ToClient::Frame(OwnedFrame::new(Command::Message).with_body(Bytes::from(vec![b'x'; n])))
    }

    #[tokio::test]
    async fn overflow_refuses_and_requests_close_once() {
        let (h, mut rx) = channel(SessionId::new(1), 1000);
        h.send(msg(600)).unwrap();
        assert_eq!(h.send(msg(600)), Err(SendError::SlowConsumer));
        assert_eq!(h.send(msg(1)), Err(SendError::SlowConsumer));
        let first = rx.recv().await.unwrap();
        assert!(matches!(first, ToClient::Frame(_)));
        rx.done(&first);
        assert_eq!(h.queued_bytes(), 0);
        match rx.recv().await.unwrap() {
            ToClient::Close { code, message } => {
                assert_eq!(code, 4500);
                assert!(message.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(rx.try_recv().is_none());
        assert!(rx.overflowed());
    }

    #[tokio::test]
    async fn draining_makes_room() {
        let (h, mut rx) = channel(SessionId::new(1), 1000);
        for _ in 0..10 {
            h.send(msg(600)).unwrap();
            let it = rx.recv().await.unwrap();
            rx.done(&it);
        }
        assert!(!rx.overflowed());
        drop(rx);
        assert_eq!(h.send(msg(1)), Err(SendError::Closed));
    }
}
