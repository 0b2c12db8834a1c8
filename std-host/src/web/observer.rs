//! What the dashboard knows beyond the Prometheus counters: [`Observer`] wraps the broker
//! backend ([`Observer::wrap`]) and sees every session open, subscribe, send and close
//! through it, keeps the last [`RECENT_ERRORS`] broker errors and [`HISTORY_SECONDS`]
//! per-second rate samples. Bounded: sessions are listed up to [`LISTED_SESSIONS`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use stomp_relay_codec::Command;

use crate::broker::{BoxFuture, Broker, BrokerError, BrokerSession, BrokerStats, SessionInfo};
use crate::frame::OwnedFrame;
use crate::outbound::{ClientHandle, SessionId};

/// Per-second samples kept for the messages-per-second chart.
pub const HISTORY_SECONDS: usize = 120;
/// Broker errors remembered for the dashboard.
pub const RECENT_ERRORS: usize = 50;
/// Sessions listed one by one in `/api/stats` (all are counted).
pub const LISTED_SESSIONS: usize = 500;

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One session as the dashboard lists it.
#[derive(Debug)]
pub(crate) struct SessionView {
    pub(crate) user: Option<String>,
    pub(crate) transport: &'static str,
    pub(crate) opened_ms: u64,
    /// (subscription id, client destination), in subscription order.
    pub(crate) subscriptions: Vec<(String, String)>,
    pub(crate) upstream: Option<String>,
}

/// A listed session: its view behind a lock (subscription changes, stats reads) and its
/// SEND counter beside it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) view: Mutex<SessionView>,
    pub(crate) broker_sends: AtomicU64,
}

/// One per-second sample of the message rates.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// End of the second, unix milliseconds.
    pub at_ms: u64,
    /// Messages published to the broker in that second (client SENDs and application publishes).
    pub published: u64,
    /// MESSAGE frames delivered to clients in that second.
    pub delivered: u64,
}

/// What the dashboard knows about sessions, subscriptions and broker errors; see the
/// module docs.
pub struct Observer {
    pub(crate) started: Instant,
    pub(crate) published: AtomicU64,
    pub(crate) sessions: Mutex<HashMap<SessionId, Arc<Entry>>>,
    pub(crate) errors: Mutex<VecDeque<(u64, String)>>,
    pub(crate) history: Mutex<VecDeque<Sample>>,
}

impl Observer {
    /// An empty observer.
    pub fn new() -> Arc<Observer> {
        Arc::new(Observer {
            started: Instant::now(),
            published: AtomicU64::new(0),
            sessions: Mutex::new(HashMap::new()),
            errors: Mutex::new(VecDeque::with_capacity(RECENT_ERRORS)),
            history: Mutex::new(VecDeque::with_capacity(HISTORY_SECONDS)),
        })
    }

    /// `broker` with this observer watching it.
    pub fn wrap(self: &Arc<Self>, broker: Arc<dyn Broker>) -> Arc<dyn Broker> {
        Arc::new(Observed {
            inner: broker,
            obs: self.clone(),
        })
    }

    /// Remembers a broker error for the dashboard.
    pub fn note_error(&self, text: String) {
        let mut e = lock(&self.errors);
        if e.len() == RECENT_ERRORS {
            e.pop_front();
        }
        e.push_back((unix_ms(), text));
    }

    /// Messages published to the broker since start.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    pub(crate) fn push_sample(&self, s: Sample) {
        let mut h = lock(&self.history);
        if h.len() == HISTORY_SECONDS {
            h.pop_front();
        }
        h.push_back(s);
    }
}

pub(crate) struct Observed {
    pub(crate) inner: Arc<dyn Broker>,
    pub(crate) obs: Arc<Observer>,
}

impl Broker for Observed {
    fn open_session(
        &self,
        info: SessionInfo,
        client: ClientHandle,
    ) -> BoxFuture<'static, Result<Box<dyn BrokerSession>, BrokerError>> {
        let id = info.id;
        let user = info.user.clone();
        let transport = info.transport;
        let opening = self.inner.open_session(info, client);
        let obs = self.obs.clone();
        Box::pin(async move {
            match opening.await {
                Ok(inner) => {
                    let entry = Arc::new(Entry {
                        broker_sends: AtomicU64::new(0),
                        view: Mutex::new(SessionView {
                            user,
                            transport,
                            opened_ms: unix_ms(),
                            subscriptions: Vec::new(),
                            upstream: inner.upstream(),
                        }),
                    });
                    lock(&obs.sessions).insert(id, entry.clone());
                    Ok(Box::new(ObservedSession {
                        inner,
                        id,
                        entry,
                        obs,
                    }) as Box<dyn BrokerSession>)
                }
                Err(e) => {
                    obs.note_error(format!("session {id} refused by the broker: {e}"));
                    Err(e)
                }
            }
        })
    }

    fn publish(&self, frame: OwnedFrame) -> Result<(), BrokerError> {
        let dest = frame.header_str("destination").unwrap_or("").to_string();
        match self.inner.publish(frame) {
            Ok(()) => {
                self.obs.published.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.obs
                    .note_error(format!("publish to {dest} failed: {e}"));
                Err(e)
            }
        }
    }

    fn stats(&self) -> BrokerStats {
        self.inner.stats()
    }

    fn forwards_receipts(&self) -> bool {
        self.inner.forwards_receipts()
    }

    fn dialect(&self) -> Option<stomp_relay_core::Dialect> {
        self.inner.dialect()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.inner.shutdown()
    }

    fn upstreams(&self) -> Vec<crate::broker::UpstreamStatus> {
        self.inner.upstreams()
    }
}

pub(crate) struct ObservedSession {
    pub(crate) inner: Box<dyn BrokerSession>,
    pub(crate) id: SessionId,
    pub(crate) entry: Arc<Entry>,
    pub(crate) obs: Arc<Observer>,
}

impl BrokerSession for ObservedSession {
    fn forward(&mut self, frame: OwnedFrame) -> Result<(), BrokerError> {
        let command = frame.command;
        // Only what the dashboard shows is copied out before the frame moves on.
        let noted = match command {
            Command::Subscribe => frame
                .header_str("id")
                .zip(frame.header_str("destination"))
                .map(|(i, d)| (i.to_string(), d.to_string())),
            Command::Unsubscribe => frame
                .header_str("id")
                .map(|i| (i.to_string(), String::new())),
            _ => None,
        };
        let result = self.inner.forward(frame);
        match &result {
            Ok(()) => match command {
                Command::Send => {
                    self.obs.published.fetch_add(1, Ordering::Relaxed);
                    // An atomic beside the lock: a SEND never waits on a stats read.
                    self.entry.broker_sends.fetch_add(1, Ordering::Relaxed);
                }
                Command::Subscribe => {
                    if let Some(sub) = noted {
                        lock(&self.entry.view).subscriptions.push(sub);
                    }
                }
                Command::Unsubscribe => {
                    if let Some((id, _)) = noted {
                        lock(&self.entry.view)
                            .subscriptions
                            .retain(|(i, _)| *i != id);
                    }
                }
                _ => {}
            },
            Err(e) => self.obs.note_error(format!(
                "session {}: {} not forwarded: {e}",
                self.id,
                command.as_str()
            )),
        }
        result
    }

    fn client_activity(&mut self) {
        self.inner.client_activity();
    }

    fn close(self: Box<Self>, receipt: Option<String>) {
        lock(&self.obs.sessions).remove(&self.id);
        self.inner.close(receipt);
    }

    fn upstream(&self) -> Option<String> {
        self.inner.upstream()
    }
}

// ---------------------------------------------------------------------------------------
// /api/stats
