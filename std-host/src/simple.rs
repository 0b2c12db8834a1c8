//! The embedded simple broker backend (the default, `--broker simple`).
//!
//! relay-core's [`SimpleBroker`] decides who receives what (exact and pattern
//! subscriptions, one round-robin receiver for `/queue/` destinations, message ids);
//! this module gives it growable storage ([`HashStore`]) and turns each of its
//! deliveries into a push onto the subscriber's outbound queue: one `Arc` clone of the
//! MESSAGE, never a wait on the subscriber (a full send buffer closes that subscriber,
//! see [`crate::outbound`]).
//!
//! Invariant: every subscription in the store is listed under its session in
//! `by_session`, so closing a session removes all of its subscriptions; a session's
//! outbound handle is registered from open to close.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use stomp_relay_codec::Command;
use stomp_relay_core::broker::{SimpleBroker, StoreError, Subscription, SubscriptionStore};

use crate::broker::{BoxFuture, Broker, BrokerError, BrokerSession, BrokerStats, SessionInfo};
use crate::frame::OwnedFrame;
use crate::outbound::{ClientHandle, Delivery, SessionId, SharedMessage, ToClient};
use crate::transaction::Transactions;

/// Each session's subscriptions as (id, destination).
type SubKey = (Vec<u8>, Vec<u8>);

/// relay-core's [`SubscriptionStore`] on growable hash maps: exact destinations are one
/// lookup, pattern subscriptions are all offered as candidates (the broker filters).
#[derive(Default)]
pub struct HashStore {
    exact: HashMap<Vec<u8>, Vec<(SessionId, Vec<u8>)>>,
    patterns: Vec<(Vec<u8>, SessionId, Vec<u8>)>,
    by_session: HashMap<SessionId, Vec<SubKey>>,
    round_robin: HashMap<Vec<u8>, u64>,
    count: usize,
}

impl HashStore {
    fn drop_sub(&mut self, session: SessionId, id: &[u8], dest: &[u8]) {
        if stomp_relay_core::pattern::is_pattern(dest) {
            if let Some(p) = self
                .patterns
                .iter()
                .position(|(d, s, i)| d == dest && *s == session && i == id)
            {
                self.patterns.remove(p);
                self.count -= 1;
            }
        } else if let Some(v) = self.exact.get_mut(dest) {
            if let Some(p) = v.iter().position(|(s, i)| *s == session && i == id) {
                v.remove(p);
                self.count -= 1;
            }
            if v.is_empty() {
                self.exact.remove(dest);
                self.round_robin.remove(dest);
            }
        }
    }
}

impl SubscriptionStore for HashStore {
    fn insert(&mut self, sub: Subscription<'_>) -> Result<(), StoreError> {
        let (dest, id) = (sub.destination.to_vec(), sub.id.to_vec());
        self.by_session
            .entry(sub.session)
            .or_default()
            .push((id.clone(), dest.clone()));
        if stomp_relay_core::pattern::is_pattern(&dest) {
            self.patterns.push((dest, sub.session, id));
        } else {
            self.exact.entry(dest).or_default().push((sub.session, id));
        }
        self.count += 1;
        Ok(())
    }

    fn remove(&mut self, session: SessionId, id: &[u8]) -> bool {
        let Some(list) = self.by_session.get_mut(&session) else {
            return false;
        };
        let Some(pos) = list.iter().position(|(i, _)| i == id) else {
            return false;
        };
        let (id, dest) = list.swap_remove(pos);
        if list.is_empty() {
            self.by_session.remove(&session);
        }
        self.drop_sub(session, &id, &dest);
        true
    }

    fn remove_session(&mut self, session: SessionId) -> usize {
        let subs = self.by_session.remove(&session).unwrap_or_default();
        let n = subs.len();
        for (id, dest) in subs {
            self.drop_sub(session, &id, &dest);
        }
        n
    }

    fn candidates(&self, destination: &[u8], f: &mut dyn FnMut(Subscription<'_>)) {
        if let Some(v) = self.exact.get(destination) {
            for (s, id) in v {
                f(Subscription {
                    session: *s,
                    id,
                    destination,
                });
            }
        }
        for (d, s, id) in &self.patterns {
            f(Subscription {
                session: *s,
                id,
                destination: d,
            });
        }
    }

    fn len(&self) -> usize {
        self.count
    }

    fn next_round_robin(&mut self, destination: &[u8]) -> u64 {
        let c = self.round_robin.entry(destination.to_vec()).or_insert(0);
        let v = *c;
        *c = c.wrapping_add(1);
        v
    }
}

struct State {
    broker: SimpleBroker<HashStore>,
    clients: HashMap<SessionId, ClientHandle>,
}

/// The in-memory broker shared by all sessions of one server: relay-core's
/// [`SimpleBroker`] (matching, queue round-robin, message ids) behind one mutex, plus
/// each session's outbound handle.
#[derive(Clone)]
pub struct SimpleBrokerBackend {
    state: Arc<Mutex<State>>,
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
            state: Arc::new(Mutex::new(State {
                broker: SimpleBroker::new(HashStore::default()),
                clients: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_frame(&self, send: OwnedFrame) -> Result<(), BrokerError> {
        let Some(dest) = send.header("destination").map(<[u8]>::to_vec) else {
            return Err(BrokerError::Rejected(
                "SEND frame lacks required header: destination".into(),
            ));
        };
        // The MESSAGE carries the SEND's headers except those meaningful only between
        // the sender and the server (the session adds subscription and message-id).
        let mut message = OwnedFrame::new(Command::Message);
        message.headers = send
            .headers
            .into_iter()
            .filter(|(n, _)| {
                !matches!(
                    &n[..],
                    b"receipt" | b"transaction" | b"message-id" | b"subscription" | b"ack"
                )
            })
            .collect();
        message.body = send.body;
        let message = Arc::new(SharedMessage::new(message));
        let mut guard = self.lock();
        let State { broker, clients } = &mut *guard;
        broker.publish(&dest, |d| {
            if let Some(client) = clients.get(&d.session) {
                // A full buffer closes that subscriber; the others are not affected.
                let _ = client.send(ToClient::Message(Delivery {
                    subscription: String::from_utf8_lossy(d.subscription).into(),
                    message_id: d.message_id.to_string().into(),
                    message: message.clone(),
                }));
            }
        });
        Ok(())
    }
}

impl Broker for SimpleBrokerBackend {
    fn open_session(
        &self,
        info: SessionInfo,
        client: ClientHandle,
    ) -> BoxFuture<'static, Result<Box<dyn BrokerSession>, BrokerError>> {
        self.lock().clients.insert(info.id, client);
        let s: Box<dyn BrokerSession> = Box::new(SimpleSession {
            broker: self.clone(),
            id: info.id,
            transactions: Transactions::new(MAX_TRANSACTION_BYTES),
        });
        Box::pin(std::future::ready(Ok(s)))
    }

    fn publish(&self, frame: OwnedFrame) -> Result<(), BrokerError> {
        self.publish_frame(frame)
    }

    fn stats(&self) -> BrokerStats {
        BrokerStats {
            available: true,
            relay_sessions: 0,
            subscriptions: self.lock().broker.store().len(),
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Bytes of SENDs one session may hold in open transactions until COMMIT.
pub const MAX_TRANSACTION_BYTES: usize = 1024 * 1024;

struct SimpleSession {
    broker: SimpleBrokerBackend,
    id: SessionId,
    /// SENDs held until COMMIT (ACK/NACK are no-ops here, so only checked).
    transactions: Transactions<OwnedFrame>,
}

impl BrokerSession for SimpleSession {
    fn forward(&mut self, frame: OwnedFrame) -> Result<(), BrokerError> {
        let sid = self.id;
        if let Some(tx) = frame.header_str("transaction").map(str::to_owned) {
            return match frame.command {
                Command::Begin => self.transactions.begin(&tx),
                Command::Commit => {
                    for send in self.transactions.commit(&tx, OwnedFrame::weight)? {
                        self.broker.publish_frame(send)?;
                    }
                    Ok(())
                }
                Command::Abort => self.transactions.abort(&tx, OwnedFrame::weight),
                Command::Send => {
                    let size = frame.weight();
                    self.transactions
                        .hold(Command::Send, &tx, Some((frame, size)))
                }
                other => self.transactions.hold(other, &tx, None),
            };
        }
        let id = frame
            .header("id")
            .or_else(|| frame.header("destination"))
            .unwrap_or_default();
        match frame.command {
            Command::Send => self.broker.publish_frame(frame),
            Command::Subscribe => {
                let dest = frame.header("destination").unwrap_or_default();
                self.broker
                    .lock()
                    .broker
                    .subscribe(sid, id, dest)
                    .map_err(|e| BrokerError::Rejected(e.to_string()))
            }
            Command::Unsubscribe => {
                // Unknown ids (an application-destination subscription) are fine.
                self.broker.lock().broker.unsubscribe(sid, id);
                Ok(())
            }
            // No acknowledgements or transactions in the simple broker (as in Spring):
            // accepted and answered with their receipts by the session.
            _ => Ok(()),
        }
    }

    fn close(self: Box<Self>, _receipt: Option<String>) {
        let mut st = self.broker.lock();
        st.broker.remove_session(self.id);
        st.clients.remove(&self.id);
    }
}
