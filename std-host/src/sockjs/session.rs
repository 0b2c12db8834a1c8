//! SockJS sessions carried over HTTP requests (`xhr`, `xhr_streaming`, `eventsource`):
//! the table of open sessions, each session's outbox, and the [`Transport`] the
//! session driver runs on.
//!
//! Invariants:
//! - At most one receiving request is attached to a session at a time; a second one is
//!   answered `c[2010,"Another connection still open"]`.
//! - Messages leave the outbox in order and only into an attached receiver; what was
//!   queued while none was attached waits for the next one, up to the send buffer,
//!   beyond which [`HttpTransport::send`] waits, so the driver's send time limit closes
//!   a client that stopped polling exactly as it closes a stalled WebSocket.
//! - A session with no receiver for the disconnect delay ends as
//!   [`Chunk::Gone`]; a closed session stays in the table for one more delay, so a
//!   late request still reads its close frame, then leaves it.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::frame;
use crate::transport::{Chunk, Transport, WriteBatch};
use crate::web::observer::lock;

/// Client sends waiting for the session driver; more and `xhr_send` waits.
const INBOX: usize = 64;

/// What a receiving request writes next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// The open frame, first on every session.
    Open,
    /// Queued messages, oldest first.
    Messages(Vec<Vec<u8>>),
    /// Nothing for a heart-beat interval.
    Heartbeat,
    /// The session is closed: its close frame.
    Close(String),
}

impl Output {
    /// The SockJS frame text.
    pub(crate) fn frame(&self) -> String {
        match self {
            Output::Open => frame::OPEN.to_string(),
            Output::Messages(m) => frame::messages(m.iter().map(Vec::as_slice)),
            Output::Heartbeat => frame::HEARTBEAT.to_string(),
            Output::Close(c) => c.clone(),
        }
    }
}

struct Inner {
    outbox: Vec<Vec<u8>>,
    outbox_bytes: usize,
    opened: bool,
    receiver: bool,
    detached_at: Instant,
    closed: Option<String>,
}

/// One SockJS session's shared state, between its driver and its HTTP requests.
pub(crate) struct SockSession {
    inner: Mutex<Inner>,
    /// Woken when output is queued or taken, a receiver comes or goes, or it closes.
    changed: Notify,
    inbox: mpsc::Sender<Chunk>,
    send_buffer: usize,
}

impl SockSession {
    fn notify(&self) {
        self.changed.notify_waiters();
    }

    /// Runs `check` on the state until it gives a value, waiting for a change between
    /// tries (the caller bounds the wait; dropping the future leaves the state as is).
    async fn when<T>(&self, mut check: impl FnMut(&mut Inner) -> Option<T>) -> T {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(v) = check(&mut lock(&self.inner)) {
                return v;
            }
            changed.await;
        }
    }

    /// Attaches a receiving request, unless one is attached already.
    pub(crate) fn attach(self: &Arc<Self>) -> Option<Receiver> {
        let mut i = lock(&self.inner);
        if i.receiver {
            return None;
        }
        i.receiver = true;
        drop(i);
        self.notify();
        Some(Receiver {
            session: self.clone(),
        })
    }

    /// Hands the client's messages to the session driver, in order; `false` when the
    /// session is gone.
    pub(crate) async fn deliver(&self, chunk: Chunk) -> bool {
        self.inbox.send(chunk).await.is_ok()
    }
}

/// An attached receiving request; dropping it (the response ended or the client went
/// away) detaches it and starts the disconnect delay.
pub(crate) struct Receiver {
    session: Arc<SockSession>,
}

impl Receiver {
    /// The next thing to write, waiting at most `heartbeat` for one.
    pub(crate) async fn next(&self, heartbeat: Duration) -> Output {
        let next = self.session.when(|i| {
            if !i.opened {
                i.opened = true;
                return Some(Output::Open);
            }
            if !i.outbox.is_empty() {
                i.outbox_bytes = 0;
                return Some(Output::Messages(std::mem::take(&mut i.outbox)));
            }
            i.closed.clone().map(Output::Close)
        });
        let out = tokio::time::timeout(heartbeat, next)
            .await
            .unwrap_or(Output::Heartbeat);
        if matches!(out, Output::Messages(_)) {
            // Room in the outbox for a driver waiting in `send`.
            self.session.notify();
        }
        out
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut i = lock(&self.session.inner);
        i.receiver = false;
        i.detached_at = Instant::now();
        drop(i);
        self.session.notify();
    }
}

/// A new session's driver side: its transport and what admission gave for it.
type Created<P> = Option<(HttpTransport, P)>;

/// The open SockJS sessions of one server, by session id.
pub(crate) struct Registry {
    sessions: Mutex<HashMap<String, Arc<SockSession>>>,
    disconnect_delay: Duration,
    send_buffer: usize,
}

impl Registry {
    pub(crate) fn new(disconnect_delay: Duration, send_buffer: usize) -> Arc<Registry> {
        Arc::new(Registry {
            sessions: Mutex::new(HashMap::new()),
            disconnect_delay,
            send_buffer,
        })
    }

    /// The session `id`, if open (or closed within the last delay).
    pub(crate) fn get(&self, id: &str) -> Option<Arc<SockSession>> {
        lock(&self.sessions).get(id).cloned()
    }

    /// The session `id`, or a new one with the transport its driver runs on and what
    /// `admit` gave for it (a connection permit); `Err` is `admit`'s refusal.
    pub(crate) fn get_or_create<P, E>(
        self: &Arc<Self>,
        id: &str,
        kind: &'static str,
        admit: impl FnOnce() -> Result<P, E>,
    ) -> Result<(Arc<SockSession>, Created<P>), E> {
        let mut sessions = lock(&self.sessions);
        if let Some(s) = sessions.get(id) {
            return Ok((s.clone(), None));
        }
        let admitted = admit()?;
        let (tx, rx) = mpsc::channel(INBOX);
        let session = Arc::new(SockSession {
            inner: Mutex::new(Inner {
                outbox: Vec::new(),
                outbox_bytes: 0,
                opened: false,
                receiver: false,
                detached_at: Instant::now(),
                closed: None,
            }),
            changed: Notify::new(),
            inbox: tx,
            send_buffer: self.send_buffer,
        });
        sessions.insert(id.to_string(), session.clone());
        let transport = HttpTransport {
            session: session.clone(),
            inbox: rx,
            registry: self.clone(),
            id: id.to_string(),
            kind,
        };
        Ok((session, Some((transport, admitted))))
    }

    /// Sessions in the table (open, or closed within the last delay).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.sessions).len()
    }
}

/// The driver's side of an HTTP-carried SockJS session.
pub(crate) struct HttpTransport {
    session: Arc<SockSession>,
    inbox: mpsc::Receiver<Chunk>,
    registry: Arc<Registry>,
    id: String,
    kind: &'static str,
}

impl Transport for HttpTransport {
    async fn recv(&mut self) -> io::Result<Chunk> {
        loop {
            let changed = self.session.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let gone_at = {
                let i = lock(&self.session.inner);
                (!i.receiver).then(|| i.detached_at + self.registry.disconnect_delay)
            };
            tokio::select! {
                biased;
                chunk = self.inbox.recv() => return Ok(chunk.unwrap_or(Chunk::Closed)),
                _ = changed => {}
                _ = sleep_until_some(gone_at) => return Ok(Chunk::Gone),
            }
        }
    }

    async fn send(&mut self, batch: &mut WriteBatch) -> io::Result<()> {
        let limit = self.session.send_buffer;
        let queued = self
            .session
            .when(|i| {
                if i.closed.is_some() {
                    return Some(Err(io::ErrorKind::BrokenPipe.into()));
                }
                (i.outbox_bytes < limit).then(|| {
                    i.outbox_bytes += batch.bytes().len();
                    i.outbox.extend(batch.units().map(<[u8]>::to_vec));
                    batch.clear();
                    Ok(())
                })
            })
            .await;
        if queued.is_ok() {
            self.session.notify();
        }
        queued
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let mut i = lock(&self.session.inner);
        i.closed.get_or_insert_with(|| frame::close(code, reason));
        drop(i);
        self.session.notify();
    }

    fn kind(&self) -> &'static str {
        self.kind
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Drop for HttpTransport {
    fn drop(&mut self) {
        // Spring's answer to requests for a session that ended without a close code.
        lock(&self.session.inner)
            .closed
            .get_or_insert_with(|| frame::close(crate::close::GONE, "Go away!"));
        self.session.notify();
        let (registry, id, delay) = (
            self.registry.clone(),
            std::mem::take(&mut self.id),
            self.registry.disconnect_delay,
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(delay).await;
                lock(&registry.sessions).remove(&id);
            });
        } else {
            lock(&registry.sessions).remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn batch(units: &[&[u8]]) -> WriteBatch {
        units.iter().copied().collect()
    }

    fn open(reg: &Arc<Registry>, id: &str) -> (Arc<SockSession>, HttpTransport) {
        let (s, t) = reg
            .get_or_create(id, "sockjs-xhr-polling", || Ok::<_, ()>(()))
            .unwrap();
        (s, t.expect("a new session").0)
    }

    #[tokio::test(start_paused = true)]
    async fn receivers_get_open_then_queued_messages_then_close() {
        let reg = Registry::new(Duration::from_secs(5), 1024);
        let (s, mut t) = open(&reg, "a");
        let hb = Duration::from_secs(25);
        let r = s.attach().unwrap();
        assert!(s.attach().is_none(), "one receiver at a time");
        assert_eq!(r.next(hb).await, Output::Open);
        assert_eq!(r.next(hb).await, Output::Heartbeat);
        t.send(&mut batch(&[b"one", b"two"])).await.unwrap();
        t.send(&mut batch(&[b"three"])).await.unwrap();
        assert_eq!(
            r.next(hb).await,
            Output::Messages(vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()])
        );
        t.send(&mut batch(&[b"last"])).await.unwrap();
        t.close(1002, "Protocol error").await;
        // Queued messages go before the close frame.
        assert_eq!(r.next(hb).await, Output::Messages(vec![b"last".to_vec()]));
        assert_eq!(
            r.next(hb).await.frame(),
            r#"c[1002,"Protocol error"]"#.to_string()
        );
        drop(r);
        drop(t);
        let late = s.attach().unwrap();
        assert_eq!(late.next(hb).await.frame(), r#"c[1002,"Protocol error"]"#);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(reg.len(), 0, "closed sessions leave after the delay");
        assert!(reg.get("a").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_without_a_receiver_for_the_delay_is_gone() {
        let reg = Registry::new(Duration::from_secs(5), 1024);
        let (s, mut t) = open(&reg, "b");
        let r = s.attach().unwrap();
        let started = Instant::now();
        let recv = tokio::spawn(async move { t.recv().await.map(|c| (c, t)) });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!recv.is_finished(), "an attached receiver keeps it alive");
        drop(r);
        let (chunk, _t) = recv.await.unwrap().unwrap();
        assert!(matches!(chunk, Chunk::Gone), "{chunk:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(35));
    }

    #[tokio::test(start_paused = true)]
    async fn sends_reach_the_driver_and_a_full_outbox_holds_the_driver() {
        let reg = Registry::new(Duration::from_secs(5), 8);
        let (s, mut t) = open(&reg, "c");
        assert!(s.deliver(Chunk::Data(Bytes::from_static(b"CONNECT"))).await);
        assert!(matches!(t.recv().await.unwrap(), Chunk::Data(b) if b == "CONNECT"));
        t.send(&mut batch(&[b"0123456789"])).await.unwrap();
        let blocked =
            tokio::time::timeout(Duration::from_secs(1), t.send(&mut batch(&[b"more"]))).await;
        assert!(blocked.is_err(), "over the send buffer the driver waits");
        let r = s.attach().unwrap();
        assert_eq!(r.next(Duration::ZERO).await, Output::Open);
        assert!(matches!(r.next(Duration::ZERO).await, Output::Messages(_)));
        t.send(&mut batch(&[b"more"])).await.unwrap();
        drop(t);
        assert!(!s.deliver(Chunk::Closed).await, "the driver is gone");
    }
}
