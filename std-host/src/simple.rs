//! The embedded simple broker backend (the default, `--broker simple`).
//!
//! One subscription table shared by every session task behind a read-write lock:
//! publishing takes the read lock (publishers on different tasks fan out in parallel),
//! SUBSCRIBE/UNSUBSCRIBE/close take the write lock. Exact destinations are a hash-map
//! lookup; pattern subscriptions (`/sub/chat.*`, `/sub/**`) are matched with
//! relay-core's pattern matcher. A delivery is one `Arc` clone of the MESSAGE plus a
//! queue push per subscriber; it never waits on a subscriber (a full send buffer closes
//! that subscriber, see [`crate::outbound`]).
//!
//! Invariant: every subscription in `exact`/`patterns` is listed under its session in
//! `by_session`, so closing a session removes all of its subscriptions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use stomp_relay_codec::Command;
use stomp_relay_core::pattern::{self, Separator};

use crate::broker::{BoxFuture, Broker, BrokerError, BrokerSession, BrokerStats, SessionInfo};
use crate::frame::OwnedFrame;
use crate::outbound::{ClientHandle, Delivery, SessionId, ToClient};

#[derive(Clone)]
struct Sub {
    session: SessionId,
    id: Arc<str>,
    client: ClientHandle,
}

type SubKey = (Arc<str>, Vec<u8>);

#[derive(Default)]
struct Table {
    exact: HashMap<Vec<u8>, Vec<Sub>>,
    patterns: Vec<(Vec<u8>, Sub)>,
    /// Each session's subscriptions as (id, destination).
    by_session: HashMap<SessionId, Vec<SubKey>>,
    count: usize,
}

impl Table {
    fn add(&mut self, dest: Vec<u8>, sub: Sub) {
        self.by_session
            .entry(sub.session)
            .or_default()
            .push((sub.id.clone(), dest.clone()));
        if pattern::is_pattern(&dest) {
            self.patterns.push((dest, sub));
        } else {
            self.exact.entry(dest).or_default().push(sub);
        }
        self.count += 1;
    }

    fn remove(&mut self, session: SessionId, id: &str) {
        let Some(list) = self.by_session.get_mut(&session) else {
            return;
        };
        let Some(pos) = list.iter().position(|(i, _)| &**i == id) else {
            return;
        };
        let (_, dest) = list.swap_remove(pos);
        if list.is_empty() {
            self.by_session.remove(&session);
        }
        self.drop_sub(session, id, &dest);
    }

    fn drop_sub(&mut self, session: SessionId, id: &str, dest: &[u8]) {
        let hit = |s: &Sub| s.session == session && &*s.id == id;
        if pattern::is_pattern(dest) {
            if let Some(p) = self.patterns.iter().position(|(d, s)| d == dest && hit(s)) {
                self.patterns.swap_remove(p);
                self.count -= 1;
            }
        } else if let Some(v) = self.exact.get_mut(dest) {
            if let Some(p) = v.iter().position(hit) {
                v.remove(p);
                self.count -= 1;
            }
            if v.is_empty() {
                self.exact.remove(dest);
            }
        }
    }

    fn remove_session(&mut self, session: SessionId) {
        for (id, dest) in self.by_session.remove(&session).unwrap_or_default() {
            self.drop_sub(session, &id, &dest);
        }
    }
}

struct Inner {
    table: RwLock<Table>,
    next_message: AtomicU64,
}

/// The in-memory broker shared by all sessions of one server.
#[derive(Clone)]
pub struct SimpleBrokerBackend {
    inner: Arc<Inner>,
}

impl Default for SimpleBrokerBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl SimpleBrokerBackend {
    /// An empty broker.
    pub fn new() -> Self {
        SimpleBrokerBackend {
            inner: Arc::new(Inner {
                table: RwLock::new(Table::default()),
                next_message: AtomicU64::new(1),
            }),
        }
    }

    fn publish_frame(&self, send: OwnedFrame) -> Result<(), BrokerError> {
        let Some(dest) = send.header("destination").map(<[u8]>::to_vec) else {
            return Err(BrokerError::Rejected(
                "SEND frame lacks required header: destination".into(),
            ));
        };
        // The MESSAGE carries the SEND's headers except those meaningful only between
        // the sender and the server.
        let mut message = OwnedFrame::new(Command::Message);
        message.headers = send
            .headers
            .into_iter()
            .filter(|(n, _)| {
                !matches!(
                    n.as_slice(),
                    b"receipt" | b"transaction" | b"message-id" | b"subscription" | b"ack"
                )
            })
            .collect();
        message.body = send.body;
        let message = Arc::new(message);
        let n = self.inner.next_message.fetch_add(1, Ordering::Relaxed);
        let message_id: Arc<str> = format!("m-{n}").into();
        let table = self.inner.table.read().unwrap_or_else(|p| p.into_inner());
        let deliver = |s: &Sub| {
            // A full buffer closes that subscriber; the others are not affected.
            let _ = s.client.send(ToClient::Message(Delivery {
                subscription: s.id.clone(),
                message_id: message_id.clone(),
                message: message.clone(),
            }));
        };
        if let Some(subs) = table.exact.get(&dest) {
            subs.iter().for_each(deliver);
        }
        for (p, s) in &table.patterns {
            if pattern::matches(p, &dest, Separator::Slash) {
                deliver(s);
            }
        }
        Ok(())
    }
}

impl Broker for SimpleBrokerBackend {
    fn open_session(
        &self,
        info: SessionInfo,
        client: ClientHandle,
    ) -> BoxFuture<'static, Result<Box<dyn BrokerSession>, BrokerError>> {
        let s: Box<dyn BrokerSession> = Box::new(SimpleSession {
            broker: self.clone(),
            id: info.id,
            client,
        });
        Box::pin(std::future::ready(Ok(s)))
    }

    fn publish(&self, frame: OwnedFrame) -> Result<(), BrokerError> {
        self.publish_frame(frame)
    }

    fn stats(&self) -> BrokerStats {
        let t = self.inner.table.read().unwrap_or_else(|p| p.into_inner());
        BrokerStats {
            available: true,
            relay_sessions: 0,
            subscriptions: t.count,
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

struct SimpleSession {
    broker: SimpleBrokerBackend,
    id: SessionId,
    client: ClientHandle,
}

impl BrokerSession for SimpleSession {
    fn forward(&mut self, frame: OwnedFrame) -> Result<(), BrokerError> {
        match frame.command {
            Command::Send => self.broker.publish_frame(frame),
            Command::Subscribe => {
                let dest = frame.header("destination").unwrap_or_default().to_vec();
                let id: Arc<str> = frame
                    .header_str("id")
                    .or_else(|| frame.header_str("destination"))
                    .unwrap_or_default()
                    .into();
                let mut t = self
                    .broker
                    .inner
                    .table
                    .write()
                    .unwrap_or_else(|p| p.into_inner());
                t.add(
                    dest,
                    Sub {
                        session: self.id,
                        id,
                        client: self.client.clone(),
                    },
                );
                Ok(())
            }
            Command::Unsubscribe => {
                let id = frame
                    .header_str("id")
                    .or_else(|| frame.header_str("destination"))
                    .unwrap_or_default();
                let mut t = self
                    .broker
                    .inner
                    .table
                    .write()
                    .unwrap_or_else(|p| p.into_inner());
                t.remove(self.id, id);
                Ok(())
            }
            // No acknowledgements or transactions in the simple broker (as in Spring):
            // accepted and answered with their receipts by the session.
            _ => Ok(()),
        }
    }

    fn close(self: Box<Self>, _receipt: Option<String>) {
        let mut t = self
            .broker
            .inner
            .table
            .write()
            .unwrap_or_else(|p| p.into_inner());
        t.remove_session(self.id);
    }
}
