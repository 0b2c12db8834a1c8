//! The long-lived, self-healing upstream connection of an instance: the `_system_`
//! session in per-session mode and the one shared connection in shared mode.
//!
//! [`supervise`] keeps one connection up: it tries the `--relay` addresses in order
//! (starting with the one that answered last), and after a failed round sleeps a
//! [`Backoff`](super::Backoff) delay with jitter before the next. While connected,
//! [`Supervised::available`] is true; that flag is what `/readyz` reports and what
//! refuses new client sessions with `Broker not available.` while the broker is down.
//!
//! A [`Link`] plugs mode-specific behaviour in: the sink for inbound frames, and hooks
//! run when a connection comes up (shared mode resubscribes and flushes what it held)
//! and when it goes down.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Notify};

use super::conn::{self, Closed, Flow, Inbound, Target, Upstream};
use super::RelayOptions;
use crate::frame::OwnedFrame;

/// Mode-specific behaviour of a supervised connection.
pub trait Link: Send + Sync + 'static {
    /// The sink for the next connection's inbound frames.
    fn sink(&self) -> Box<dyn Inbound>;
    /// A connection completed its handshake (called before `available` turns true).
    fn up(&self, upstream: &Upstream);
    /// The connection ended (called after `available` turned false).
    fn down(&self);
}

impl Inbound for Box<dyn Inbound> {
    fn frame(&mut self, frame: OwnedFrame) -> Flow {
        (**self).frame(frame)
    }
    fn closed(&mut self, why: Closed) {
        (**self).closed(why)
    }
}

/// State shared between the supervising task and everyone using the connection.
#[derive(Debug, Default)]
pub struct Supervised {
    available: AtomicBool,
    upstream: Mutex<Option<Upstream>>,
    stopping: AtomicBool,
    stop: Notify,
    stopped: Notify,
    done: AtomicBool,
    /// Connections established so far (1 after the first connect, +1 per reconnect).
    connects: AtomicU64,
}

impl Supervised {
    /// Whether the connection is up.
    pub fn available(&self) -> bool {
        self.available.load(Ordering::Acquire)
    }

    /// Handshakes completed so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// Sends a frame on the current connection; `Err` gives it back when down.
    pub fn send(&self, frame: OwnedFrame) -> Result<(), OwnedFrame> {
        let up = self.upstream.lock().expect("poisoned").clone();
        match up {
            Some(up) => up.send(frame),
            None => Err(frame),
        }
    }

    /// Stops reconnecting, sends DISCONNECT (with a receipt) and waits until the
    /// supervising task has ended. The caller bounds the wait.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_waiters();
        let stopped = self.stopped.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        if let Some(up) = self.upstream.lock().expect("poisoned").clone() {
            up.disconnect(Some("stomp-relay-shutdown".into()));
        }
        if !self.done.load(Ordering::Acquire) {
            stopped.await;
        }
    }

    async fn sleep_unless_stopping(&self, d: std::time::Duration) {
        let stop = self.stop.notified();
        tokio::pin!(stop);
        stop.as_mut().enable();
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stop => {}
        }
    }
}

struct Watch {
    inner: Box<dyn Inbound>,
    done: Option<oneshot::Sender<Closed>>,
}

impl Inbound for Watch {
    fn frame(&mut self, frame: OwnedFrame) -> Flow {
        self.inner.frame(frame)
    }
    fn closed(&mut self, why: Closed) {
        self.inner.closed(why.clone());
        if let Some(tx) = self.done.take() {
            let _ = tx.send(why);
        }
    }
}

/// Starts the task keeping `name`'s connection up; returns its shared state.
pub fn supervise(
    name: &'static str,
    opts: &RelayOptions,
    target: Arc<Target>,
    connect: OwnedFrame,
    link: Arc<dyn Link>,
) -> Arc<Supervised> {
    let sup = Arc::new(Supervised::default());
    let s = sup.clone();
    let heartbeat = opts.heartbeat;
    let backoff = opts.backoff;
    let max_frame = opts.max_frame_size;
    tokio::spawn(async move {
        let mut attempt = 0u32;
        while !s.stopping.load(Ordering::Acquire) {
            match target.connect(&connect, heartbeat).await {
                Ok(h) => {
                    attempt = 0;
                    let addr = target.describe(h.addr_index);
                    let server = h.server.clone().unwrap_or_default();
                    let (tx, rx) = oneshot::channel();
                    let up = conn::spawn(
                        h,
                        max_frame,
                        Watch {
                            inner: link.sink(),
                            done: Some(tx),
                        },
                    );
                    *s.upstream.lock().expect("poisoned") = Some(up.clone());
                    link.up(&up);
                    s.connects.fetch_add(1, Ordering::Relaxed);
                    s.available.store(true, Ordering::Release);
                    tracing::info!(%addr, %server, "relay: {name} connection up");
                    if s.stopping.load(Ordering::Acquire) {
                        up.disconnect(Some("stomp-relay-shutdown".into()));
                    }
                    let why = rx.await.unwrap_or(Closed::Requested);
                    s.available.store(false, Ordering::Release);
                    *s.upstream.lock().expect("poisoned") = None;
                    link.down();
                    match why {
                        Closed::Lost(why) => {
                            tracing::warn!(%addr, %why, "relay: {name} connection lost; reconnecting")
                        }
                        Closed::Requested => {
                            tracing::info!(%addr, "relay: {name} connection closed")
                        }
                    }
                }
                Err(why) => {
                    if attempt % 10 == 0 {
                        tracing::warn!(%why, attempt, "relay: {name} cannot connect to any broker");
                    }
                    s.sleep_unless_stopping(backoff.delay(attempt)).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
        s.done.store(true, Ordering::Release);
        s.stopped.notify_waiters();
    });
    sup
}
