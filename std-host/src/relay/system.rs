//! The long-lived, self-healing upstream connection of an instance: the `_system_`
//! session in per-session mode and the one shared connection in shared mode.
//!
//! [`supervise`] starts a connection whose relay-core state machine reconnects for as
//! long as the instance lives: it tries the `--relay` addresses of a round one after
//! the other and waits a backoff delay with jitter between rounds. While connected,
//! [`Supervised::available`] is true; that flag is what `/readyz` reports and what
//! refuses new client sessions with `Broker not available.` while the broker is down.
//!
//! A [`Link`] plugs mode-specific behaviour in: what to do with the broker's frames,
//! and hooks run when a connection comes up (shared mode resubscribes) and goes down.
//! `up` runs before `available` turns true and `down` after it turned false, so a
//! session never sees the instance available with its subscriptions not yet replayed.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use stomp_relay_core::upstream::LossReason;
use tokio::sync::Notify;

use super::conn::{self, Flow, Inbound, Settings, Target, Upstream};
use crate::frame::OwnedFrame;

/// Mode-specific behaviour of a supervised connection.
pub trait Link: Send + Sync + 'static {
    /// A frame from the broker (MESSAGE, RECEIPT, ERROR).
    fn frame(&self, frame: OwnedFrame);
    /// A connection completed its handshake (called before `available` turns true).
    fn up(&self, upstream: &Upstream);
    /// The connection ended (called after `available` turned false).
    fn down(&self);
}

/// State shared between the connection's task and everyone using it.
#[derive(Debug, Default)]
pub struct Supervised {
    available: AtomicBool,
    upstream: Mutex<Option<Upstream>>,
    stopped: Notify,
    done: AtomicBool,
    /// Handshakes completed so far (1 after the first connect, +1 per reconnect).
    connects: AtomicU64,
    /// Index of the address of the last successful connection.
    current: AtomicUsize,
}

impl Supervised {
    /// Whether the connection is up.
    pub fn available(&self) -> bool {
        self.available.load(Ordering::Acquire)
    }

    /// Index (into `--relay`) of the broker that answered last.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Handshakes completed so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// Sends a frame while connected; `Err` gives it back when the broker is down.
    pub fn send(&self, frame: OwnedFrame) -> Result<(), OwnedFrame> {
        if !self.available() {
            return Err(frame);
        }
        match self.upstream.lock().expect("poisoned").as_ref() {
            Some(up) => up.send(frame),
            None => Err(frame),
        }
    }

    /// Stops reconnecting, sends DISCONNECT when connected and waits until the
    /// connection's task has ended. The caller bounds the wait.
    pub async fn stop(&self) {
        let stopped = self.stopped.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        if let Some(up) = self.upstream.lock().expect("poisoned").as_ref() {
            up.disconnect();
        }
        if !self.done.load(Ordering::Acquire) {
            stopped.await;
        }
    }
}

struct Sink {
    name: &'static str,
    sup: Arc<Supervised>,
    link: Arc<dyn Link>,
    /// Failed attempts since the last success (to rate-limit the log).
    failures: u32,
}

impl Inbound for Sink {
    fn connected(&mut self, upstream: &Upstream, index: usize, addr: &str) {
        self.failures = 0;
        self.sup.current.store(index, Ordering::Relaxed);
        self.link.up(upstream);
        self.sup.connects.fetch_add(1, Ordering::Relaxed);
        self.sup.available.store(true, Ordering::Release);
        tracing::info!(%addr, "relay: {} connection up", self.name);
    }

    fn frame(&mut self, frame: OwnedFrame) -> Flow {
        self.link.frame(frame);
        Flow::Continue
    }

    fn lost(&mut self, why: LossReason, detail: &str) {
        if self.sup.available.swap(false, Ordering::AcqRel) {
            self.link.down();
            tracing::warn!(%why, %detail, "relay: {} connection lost; reconnecting", self.name);
        } else {
            if self.failures.is_multiple_of(10) {
                tracing::warn!(%why, %detail, attempts = self.failures + 1, "relay: {} cannot connect to a broker", self.name);
            }
            self.failures = self.failures.saturating_add(1);
        }
    }

    fn closed(&mut self) {
        if self.sup.available.swap(false, Ordering::AcqRel) {
            self.link.down();
        }
        tracing::info!("relay: {} connection closed", self.name);
        self.sup.done.store(true, Ordering::Release);
        self.sup.stopped.notify_waiters();
    }
}

/// Starts `name`'s connection (its `settings` must reconnect); returns its state.
pub fn supervise(
    name: &'static str,
    target: Arc<Target>,
    settings: Settings,
    link: Arc<dyn Link>,
) -> Arc<Supervised> {
    let sup = Arc::new(Supervised::default());
    let sink = Sink {
        name,
        sup: sup.clone(),
        link,
        failures: 0,
    };
    // The handle is stored before the task can report anything that needs it.
    let mut slot = sup.upstream.lock().expect("poisoned");
    *slot = Some(conn::spawn(target, settings, sink));
    drop(slot);
    sup
}
