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
use std::time::{Duration, Instant};

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
    /// Whether this connection's outages are warned about. A connection that always
    /// fails with another (the user registry's, beside the system or shared one) logs
    /// them at debug only, so an operator reads of one outage once.
    fn reports_outages(&self) -> bool {
        true
    }
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
    /// Failed attempts since the last success.
    failures: u32,
    down: DownWarnings,
}

/// When a broker that stays down is warned about again: at once, then after 5 s, 15 s,
/// 30 s, 1, 2 and 5 minutes of outage, then every 10 minutes, so an outage is never
/// silent and never floods the log.
#[derive(Debug, Default)]
struct DownWarnings {
    since: Option<Instant>,
    warned: usize,
}

const WARN_AFTER: [Duration; 7] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
    Duration::from_secs(300),
];
const WARN_EVERY: Duration = Duration::from_secs(600);

impl DownWarnings {
    /// An attempt failed at `now`: the outage's length when a warning is due.
    fn failed(&mut self, now: Instant) -> Option<Duration> {
        let since = *self.since.get_or_insert(now);
        let down = now.saturating_duration_since(since);
        let due = match WARN_AFTER.get(self.warned) {
            Some(&after) => after,
            None => {
                let extra = u32::try_from(self.warned - WARN_AFTER.len() + 1).unwrap_or(u32::MAX);
                WARN_AFTER[WARN_AFTER.len() - 1].saturating_add(WARN_EVERY.saturating_mul(extra))
            }
        };
        if down < due {
            return None;
        }
        self.warned += 1;
        Some(down)
    }

    /// Connected again at `now`: how long the outage lasted, if there was one.
    fn recovered(&mut self, now: Instant) -> Option<Duration> {
        self.warned = 0;
        self.since
            .take()
            .map(|since| now.saturating_duration_since(since))
    }
}

impl Inbound for Sink {
    fn connected(&mut self, upstream: &Upstream, index: usize, addr: &str) {
        if let Some(down) = self.down.recovered(Instant::now()) {
            tracing::info!(%addr, down_for = ?Duration::from_secs(down.as_secs()), attempts = self.failures, "relay: {} broker reachable again", self.name);
        }
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
        let now = Instant::now();
        if self.sup.available.swap(false, Ordering::AcqRel) {
            self.link.down();
            self.down.failed(now);
            if self.link.reports_outages() {
                tracing::warn!(%why, %detail, "relay: {} connection lost; reconnecting", self.name);
            } else {
                tracing::debug!(%why, %detail, "relay: {} connection lost; reconnecting", self.name);
            }
            return;
        }
        self.failures = self.failures.saturating_add(1);
        if !self.link.reports_outages() {
            tracing::debug!(%why, %detail, attempts = self.failures, "relay: {} cannot connect to a broker", self.name);
            return;
        }
        if let Some(down) = self.down.failed(now) {
            let down = Duration::from_secs(down.as_secs());
            if down.is_zero() {
                tracing::warn!(%why, %detail, attempts = self.failures, "relay: {} cannot connect to a broker", self.name);
            } else {
                tracing::warn!(%why, %detail, attempts = self.failures, down_for = ?down, "relay: {} broker still unavailable; retrying", self.name);
            }
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
        down: DownWarnings::default(),
    };
    // The handle is stored before the task can report anything that needs it.
    let mut slot = sup.upstream.lock().expect("poisoned");
    *slot = Some(conn::spawn(target, settings, sink));
    drop(slot);
    sup
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_warnings_back_off_and_never_stop() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = DownWarnings::default();
        // A retry every second for an hour: warnings at 0, 5, 15, 30, 60, 120, 300 s,
        // then every 10 minutes.
        let warned: Vec<u64> = (0..3600)
            .filter_map(|s| w.failed(at(s)).map(|d| d.as_secs()))
            .collect();
        assert_eq!(
            warned,
            [0, 5, 15, 30, 60, 120, 300, 900, 1500, 2100, 2700, 3300]
        );
        assert_eq!(w.recovered(at(3600)), Some(Duration::from_secs(3600)));
        assert_eq!(w.recovered(at(3601)), None);
        // The next outage starts the schedule over.
        assert_eq!(w.failed(at(4000)), Some(Duration::ZERO));
        assert_eq!(w.failed(at(4001)), None);
    }
}
