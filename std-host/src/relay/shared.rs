//! Shared relay mode: two upstream connections per instance, one upstream subscription
//! per client destination, fan-out to the local subscribers in-process.
//!
//! The broker sends each message once per instance instead of once per client, and a
//! broker restart costs the clients nothing: the supervisor reconnects (with backoff,
//! across the `--relay` addresses), [`Link::up`] resubscribes every destination that
//! still has local subscribers and flushes the frames held meanwhile, and the client
//! sessions carry on receiving.
//!
//! - The *subscriber* connection carries only what the relay itself writes (SUBSCRIBE,
//!   UNSUBSCRIBE) and the MESSAGEs coming back. Client frames (SEND, transactions) go
//!   over the *publisher* connection. A broker that answers a bad client frame with
//!   ERROR and closes the connection (RabbitMQ does, for example for a SEND with
//!   `expiration:abc`) then only closes the publisher: its frames are held and sent
//!   again after the reconnect, and the subscriptions, which carry every other
//!   client's deliveries, are not touched.
//! - Every client frame on the publisher carries a relay receipt and is kept until the
//!   broker confirms it. A broker ERROR there is the oldest unconfirmed frame's (brokers
//!   answer a connection's frames in order), or the one its `receipt-id` names: that
//!   frame's client gets the ERROR and is closed, and the frame is not sent again. The
//!   frames still unconfirmed when the publisher drops are sent again first after the
//!   reconnect, so a bad frame costs the other clients' frames nothing either.
//! - Order across the two: every upstream SUBSCRIBE carries a receipt, and client frames
//!   wait (held, bounded) while the subscriber is down or a SUBSCRIBE is unconfirmed.
//!   So a client that subscribes and then sends to the same destination receives its
//!   own message, and frames held through a broker restart go out after the
//!   resubscription, as they would on one connection.
//! - Broadcast destinations deliver each upstream MESSAGE to every local subscriber;
//!   queue destinations (`/queue/...`) to one local subscriber, round robin, so a queue
//!   stays a queue across instances (the broker picks the instance, we pick the client).
//! - Upstream subscriptions use `ack:auto`; client ACK/NACK are accepted locally.
//! - Receipts: a forwarded frame's receipt travels upstream under a relay-unique id and
//!   comes back to the client under its own; frames handled here get theirs at once.
//! - Transactions are named `<session>-<tx>` upstream so sessions cannot collide, and
//!   are checked here: SEND/COMMIT/ABORT naming a transaction the session has not begun
//!   (or BEGIN of one already open) gets an ERROR at once instead of provoking a broker
//!   ERROR on the connection every client shares, and a session that ends with
//!   transactions open has them aborted upstream (the broker would otherwise keep them
//!   as long as the shared connection lives).
//! - While the connection is down, SEND/BEGIN/COMMIT/ABORT wait in a bounded queue;
//!   a client finding it full gets `Broker not available.`.
//!
//! Which destinations are subscribed upstream, under which id, and who receives their
//! MESSAGEs is relay-core's [`Fanout`] table (the edge node runs the same one), here
//! over heap storage; this module writes what the table asks for.
//!
//! Invariant (under the state lock): every session in the table is in `clients`; the
//! upstream holds what the table says once the subscriber is up and every action the
//! table asked for has been written.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use stomp_relay_codec::Command;
use stomp_relay_core::dialect::Routing;
use stomp_relay_core::fanout::{Action, Fanout, FanoutStore};
use stomp_relay_core::Dialect;

use super::conn::{Target, Upstream};
use super::fanout_store::{HeapStore, Local};
use super::mapping;
use super::system::{self, Link, Supervised};
use super::RelayOptions;
use crate::broker::{BoxFuture, Broker, BrokerError, BrokerSession, BrokerStats, SessionInfo};
use crate::frame::OwnedFrame;
use crate::outbound::{ClientHandle, Delivery, SessionId, SharedMessage, ToClient};
use crate::transaction::Transactions;

struct State {
    /// SUBSCRIBE/UNSUBSCRIBE out, MESSAGEs in.
    subscriber: Option<Upstream>,
    /// Client frames out (SEND, BEGIN/COMMIT/ABORT).
    publisher: Option<Upstream>,
    /// Client subscriptions and the upstream subscriptions they share.
    table: Fanout<HeapStore>,
    /// Where each session's deliveries go.
    clients: HashMap<SessionId, ClientHandle>,
    /// Upstream SUBSCRIBEs the broker has not confirmed yet, by their receipt id, with
    /// the client receipt to answer; client frames wait while there are any.
    unconfirmed: HashMap<String, Option<(ClientHandle, String)>>,
    /// Client frames waiting for the publisher.
    pending: VecDeque<Outgoing>,
    /// Client frames sent on the publisher and not confirmed yet, oldest first, with
    /// their upstream receipt ids.
    in_flight: VecDeque<(String, Outgoing)>,
    next_id: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            subscriber: None,
            publisher: None,
            table: Fanout::new(HeapStore::default(), "s"),
            clients: HashMap::new(),
            unconfirmed: HashMap::new(),
            pending: VecDeque::new(),
            in_flight: VecDeque::new(),
            next_id: 0,
        }
    }
}

/// Client frames the publisher may have unconfirmed at once; more wait in `pending`
/// (a broker that stops confirming then shows as `Broker not available.`).
const MAX_IN_FLIGHT: usize = 4096;

/// A client frame for the publisher and whom it concerns.
struct Outgoing {
    frame: OwnedFrame,
    /// The client that sent it (none for the server's own publishes).
    client: Option<ClientHandle>,
    /// The client's own receipt, answered when the broker confirms the frame.
    theirs: Option<String>,
}

impl State {
    fn next(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    /// Whether client frames must wait: the subscriptions are not (all) in place.
    fn gated(&self) -> bool {
        self.subscriber.is_none() || !self.unconfirmed.is_empty()
    }

    /// Sends on the publisher now, or holds the frame (bounded) until it is back and
    /// not [`State::gated`].
    fn send_or_hold(&mut self, out: Outgoing, max_pending: usize) -> Result<(), BrokerError> {
        let out = if self.pending.is_empty() {
            match self.publish_now(out) {
                Ok(()) => return Ok(()),
                Err(out) => out,
            }
        } else {
            out
        };
        if self.pending.len() >= max_pending {
            return Err(BrokerError::Unavailable);
        }
        self.pending.push_back(out);
        Ok(())
    }

    /// Sends on the publisher under a fresh relay receipt and keeps the frame until the
    /// broker confirms it; gives it back when the publisher cannot take it now.
    // The frame comes back to be held in order; boxing it would allocate per frame.
    #[allow(clippy::result_large_err)]
    fn publish_now(&mut self, mut out: Outgoing) -> Result<(), Outgoing> {
        if self.gated() || self.publisher.is_none() || self.in_flight.len() >= MAX_IN_FLIGHT {
            return Err(out);
        }
        let id = self.next(Role::Publisher.receipt_prefix());
        mapping::set_header(&mut out.frame, "receipt", id.clone());
        let up = self.publisher.as_ref().expect("checked above");
        match up.send(out.frame.clone()) {
            Ok(()) => {
                self.in_flight.push_back((id, out));
                Ok(())
            }
            Err(_) => Err(out),
        }
    }

    /// Sends the held client frames, once the publisher is up and not [`State::gated`].
    fn flush_pending(&mut self) {
        while let Some(out) = self.pending.pop_front() {
            if let Err(out) = self.publish_now(out) {
                self.pending.push_front(out);
                return;
            }
        }
    }

    /// The broker confirmed the client frame sent under `id`.
    fn confirmed(&mut self, id: &str) {
        let Some(i) = self.in_flight.iter().position(|(ours, _)| ours == id) else {
            return;
        };
        let (_, out) = self.in_flight.remove(i).expect("found");
        self.flush_pending();
        if let (Some(client), Some(theirs)) = (out.client, out.theirs) {
            let _ = client.send(ToClient::Frame(
                OwnedFrame::new(Command::Receipt).with_header("receipt-id", theirs),
            ));
        }
    }

    /// The broker refused a client frame: the one `receipt_id` names, else the oldest
    /// unconfirmed. Its client gets the ERROR and is closed; the frame is dropped.
    fn refused(&mut self, receipt_id: Option<&str>, why: String) {
        let i = receipt_id
            .and_then(|id| self.in_flight.iter().position(|(ours, _)| ours == id))
            .unwrap_or(0);
        let Some((_, out)) = self.in_flight.remove(i) else {
            return;
        };
        if let Some(client) = out.client {
            let _ = client.send(ToClient::Close {
                message: Some(why),
                code: crate::close::PROTOCOL_ERROR,
            });
        }
    }

    /// Writes what the table asks for route `slot` (all routes when `None`) on the
    /// subscriber, when it is up; otherwise the table keeps asking until it is.
    /// An upstream SUBSCRIBE carries a receipt the held client frames wait for; `client`
    /// (the receipt of the SUBSCRIBE that made route `slot`) is answered when it comes.
    fn write_actions(
        &mut self,
        dialect: Dialect,
        slot: Option<usize>,
        mut client: Option<(ClientHandle, String)>,
    ) {
        let Some(up) = self.subscriber.clone() else {
            return;
        };
        // One pass over the routes (after a reconnect), not a rescan per action.
        let slots = match slot {
            Some(s) => s..s + 1,
            None => 0..self.table.store().slots(),
        };
        for slot in slots {
            let (done, frame) = match self.table.action(slot) {
                None => continue,
                Some(Action::Subscribe {
                    slot,
                    id,
                    destination,
                }) => {
                    let mut frame = OwnedFrame::new(Command::Subscribe)
                        .with_header("id", id.as_bytes())
                        .with_header("destination", destination)
                        .with_header("ack", "auto");
                    mapping::own(dialect, &mut frame);
                    let receipt = self.next(Role::Subscriber.receipt_prefix());
                    frame.push_header("receipt", receipt.as_bytes());
                    self.unconfirmed.insert(receipt, client.take());
                    (slot, frame)
                }
                Some(Action::Unsubscribe { slot, id }) => (
                    slot,
                    OwnedFrame::new(Command::Unsubscribe).with_header("id", id.as_bytes()),
                ),
            };
            // Done even if the write fails: the connection is then going down, and
            // `down` has the table subscribe everything again after the reconnect.
            self.table.action_done(done);
            if up.send(frame).is_err() {
                return;
            }
        }
    }
}

struct Inner {
    opts: RelayOptions,
    state: Mutex<State>,
    /// The subscriber connection: what `/readyz` and new sessions go by.
    sup: OnceLock<Arc<Supervised>>,
    publisher: OnceLock<Arc<Supervised>>,
}

impl Inner {
    fn sup(&self) -> &Supervised {
        self.sup.get().expect("set at start")
    }

    fn publisher(&self) -> &Supervised {
        self.publisher.get().expect("set at start")
    }
}

/// Which of the two connections a [`SharedLink`] serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Subscriber,
    Publisher,
}

impl Role {
    /// Upstream receipt ids of this connection start with this (readable in broker
    /// logs; each connection routes its own RECEIPTs).
    fn receipt_prefix(self) -> &'static str {
        match self {
            Role::Subscriber => "rs",
            Role::Publisher => "rp",
        }
    }
}

/// The shared relay backend.
pub struct SharedRelay {
    inner: Arc<Inner>,
}

impl SharedRelay {
    /// Starts the shared connections; sessions open once the subscriber is up.
    pub fn start(opts: RelayOptions, target: Target) -> Self {
        let settings = opts.settings(&opts.system_login, &opts.system_passcode, true);
        let inner = Arc::new(Inner {
            opts,
            state: Mutex::new(State::default()),
            sup: OnceLock::new(),
            publisher: OnceLock::new(),
        });
        let target = Arc::new(target);
        for (name, role, slot) in [
            ("shared", Role::Subscriber, &inner.sup),
            ("shared publisher", Role::Publisher, &inner.publisher),
        ] {
            let link: Arc<dyn Link> = Arc::new(SharedLink {
                inner: inner.clone(),
                role,
            });
            let _ = slot.set(system::supervise(
                name,
                target.clone(),
                settings.clone(),
                link,
            ));
        }
        SharedRelay { inner }
    }

    /// The subscriber connection's state (availability, reconnect count): what
    /// `/readyz` and new sessions go by.
    pub fn connection(&self) -> &Supervised {
        self.inner.sup()
    }
}

struct SharedLink {
    inner: Arc<Inner>,
    role: Role,
}

impl Link for SharedLink {
    fn frame(&self, frame: OwnedFrame) {
        match frame.command {
            Command::Message if self.role == Role::Subscriber => self.message(frame),
            Command::Receipt => {
                let Some(id) = frame.header_str("receipt-id") else {
                    return;
                };
                let mut st = self.inner.state.lock().expect("poisoned");
                if self.role == Role::Publisher {
                    st.confirmed(id);
                    return;
                }
                let Some(awaited) = st.unconfirmed.remove(id) else {
                    return;
                };
                st.flush_pending();
                drop(st);
                if let Some((client, theirs)) = awaited {
                    let _ = client.send(ToClient::Frame(
                        OwnedFrame::new(Command::Receipt).with_header("receipt-id", theirs),
                    ));
                }
            }
            Command::Error => {
                let message = frame.header_str("message").unwrap_or("");
                tracing::warn!(
                    message,
                    connection = match self.role {
                        Role::Subscriber => "subscriber",
                        Role::Publisher => "publisher",
                    },
                    "relay: broker sent ERROR on the shared connection"
                );
                if self.role == Role::Publisher {
                    let why = refusal(message, &frame.body);
                    let mut st = self.inner.state.lock().expect("poisoned");
                    st.refused(frame.header_str("receipt-id"), why);
                }
            }
            _ => {}
        }
    }

    fn up(&self, upstream: &Upstream) {
        let mut st = self.inner.state.lock().expect("poisoned");
        match self.role {
            Role::Subscriber => {
                st.subscriber = Some(upstream.clone());
                st.write_actions(self.inner.opts.dialect.get(), None, None);
                // With nothing to resubscribe no receipt will come to release them.
                st.flush_pending();
            }
            Role::Publisher => {
                st.publisher = Some(upstream.clone());
                st.flush_pending();
            }
        }
    }

    fn down(&self) {
        let mut st = self.inner.state.lock().expect("poisoned");
        match self.role {
            Role::Subscriber => {
                st.subscriber = None;
                // Receipts in flight died with the connection; client frames wait for
                // the resubscription (`up`), not for these.
                st.unconfirmed.clear();
                st.table.upstream_lost();
            }
            Role::Publisher => {
                st.publisher = None;
                // Unconfirmed frames go again first, in their order, after the reconnect.
                while let Some((_, out)) = st.in_flight.pop_back() {
                    st.pending.push_front(out);
                }
            }
        }
    }
}

/// The ERROR `message` a client gets for a frame the broker refused: the broker's
/// `message` and the first line of its body, on one line.
fn refusal(message: &str, body: &[u8]) -> String {
    let detail = String::from_utf8_lossy(body);
    let detail = detail.lines().next().unwrap_or("").trim();
    let why = if detail.is_empty() || detail == message {
        format!("Broker refused the frame: {message}")
    } else {
        format!("Broker refused the frame: {message}: {detail}")
    };
    why.replace(['\r', '\n'], " ")
}

impl SharedLink {
    fn message(&self, frame: OwnedFrame) {
        let Some(up_id) = frame.header_str("subscription") else {
            return;
        };
        let message_id: Arc<str> = frame.header_str("message-id").unwrap_or("").into();
        let st = self.inner.state.lock().expect("poisoned");
        let Some(slot) = st.table.route_of(up_id.as_bytes()) else {
            return; // unsubscribed meanwhile
        };
        let dest = st.table.destination(slot);
        let routing = self.inner.opts.dialect.get().routing(dest);
        let mut msg = frame;
        msg.headers
            .retain(|(n, _)| !matches!(&n[..], b"subscription" | b"ack"));
        mapping::set_header(&mut msg, "destination", dest);
        let message = Arc::new(SharedMessage::with_shared_id(msg));
        let deliver = |l: &Local| {
            st.clients.get(&l.session).is_some_and(|client| {
                client
                    .send(ToClient::Message(Delivery {
                        subscription: l.subscription.clone(),
                        message_id: message_id.clone(),
                        message: message.clone(),
                    }))
                    .is_ok()
            })
        };
        match routing {
            Routing::Broadcast => {
                for l in st.table.store().subscribers(slot) {
                    deliver(l);
                }
            }
            // One consumer per message; sessions that are going away are skipped.
            Routing::Queue => st.table.store().pick(slot, deliver),
        }
    }
}

impl Broker for SharedRelay {
    fn open_session(
        &self,
        info: SessionInfo,
        client: ClientHandle,
    ) -> BoxFuture<'static, Result<Box<dyn BrokerSession>, BrokerError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            if !inner.sup().available() {
                return Err(BrokerError::Unavailable);
            }
            inner
                .state
                .lock()
                .expect("poisoned")
                .clients
                .insert(info.id, client.clone());
            Ok(Box::new(SharedSession {
                inner,
                id: info.id,
                client,
                transactions: Transactions::new(0),
            }) as Box<dyn BrokerSession>)
        })
    }

    fn publish(&self, mut frame: OwnedFrame) -> Result<(), BrokerError> {
        mapping::outbound(self.inner.opts.dialect.get(), &mut frame)?;
        mapping::remove_header(&mut frame, "receipt");
        // Held like client SENDs while the connection is being re-established.
        let mut st = self.inner.state.lock().expect("poisoned");
        let out = Outgoing {
            frame,
            client: None,
            theirs: None,
        };
        st.send_or_hold(out, self.inner.opts.max_pending)
    }

    fn stats(&self) -> BrokerStats {
        let up = self.inner.sup().available();
        BrokerStats {
            available: up,
            relay_sessions: usize::from(up) + usize::from(self.inner.publisher().available()),
            subscriptions: self
                .inner
                .state
                .lock()
                .expect("poisoned")
                .table
                .subscription_count(),
        }
    }

    fn upstreams(&self) -> Vec<crate::broker::UpstreamStatus> {
        let sup = self.inner.sup();
        let (up, current) = (sup.available(), sup.current());
        self.inner
            .opts
            .addrs
            .iter()
            .enumerate()
            .map(|(i, a)| crate::broker::UpstreamStatus {
                url: a.to_string(),
                connected: up && i == current,
                last_error: None,
            })
            .collect()
    }

    fn dialect(&self) -> Option<stomp_relay_core::Dialect> {
        Some(self.inner.opts.dialect.get())
    }

    fn forwards_receipts(&self) -> bool {
        true
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        // The publisher first, so what clients sent is out before the subscriptions end.
        Box::pin(async move {
            self.inner.publisher().stop().await;
            self.inner.sup().stop().await;
        })
    }
}

struct SharedSession {
    inner: Arc<Inner>,
    id: SessionId,
    client: ClientHandle,
    /// The client's names of its open transactions.
    transactions: Transactions<()>,
}

impl SharedSession {
    /// The upstream name of the client's transaction `tx`.
    fn upstream_tx(&self, tx: &str) -> String {
        format!("{}-{tx}", self.id)
    }

    /// Opens, closes or checks the client's transaction `tx` for a frame carrying it
    /// (the broker holds the frames; only the names are tracked here).
    fn track_transaction(&mut self, command: Command, tx: &str) -> Result<(), BrokerError> {
        let t = &mut self.transactions;
        match command {
            Command::Begin => t.begin(tx),
            Command::Commit => t.commit(tx, |_| 0).map(drop),
            Command::Abort => t.abort(tx, |_| 0),
            other => t.hold(other, tx, None),
        }
    }

    fn local_receipt(&self, frame: &OwnedFrame) {
        if let Some(r) = frame.header("receipt") {
            let _ = self.client.send(ToClient::Frame(
                OwnedFrame::new(Command::Receipt).with_header("receipt-id", r),
            ));
        }
    }

    fn subscribe(&self, frame: OwnedFrame) -> Result<(), BrokerError> {
        let sub = frame
            .header_str("id")
            .ok_or_else(|| BrokerError::Rejected("SUBSCRIBE frame has no id header".into()))?
            .to_owned();
        let dest = frame
            .header("destination")
            .ok_or_else(|| {
                BrokerError::Rejected("SUBSCRIBE frame has no destination header".into())
            })?
            .to_vec();
        mapping::check_reserved(self.inner.opts.dialect.get(), &dest)?;
        let mut st = self.inner.state.lock().expect("poisoned");
        let added = st
            .table
            .subscribe(self.id, sub.as_bytes(), &dest)
            .map_err(|e| BrokerError::Rejected(e.message().into()))?;
        if added.upstream && st.subscriber.is_some() {
            // The client's receipt is answered when the broker confirms the subscription.
            let client = frame
                .header_str("receipt")
                .map(|r| (self.client.clone(), r.to_owned()));
            st.write_actions(self.inner.opts.dialect.get(), Some(added.slot), client);
        } else {
            drop(st);
            self.local_receipt(&frame);
        }
        Ok(())
    }
}

impl BrokerSession for SharedSession {
    fn forward(&mut self, mut frame: OwnedFrame) -> Result<(), BrokerError> {
        let max_pending = self.inner.opts.max_pending;
        match frame.command {
            Command::Subscribe => self.subscribe(frame),
            Command::Unsubscribe => {
                let mut st = self.inner.state.lock().expect("poisoned");
                let id = frame.header("id").unwrap_or_default();
                if let Ok(slot) = st.table.unsubscribe(self.id, id) {
                    st.write_actions(self.inner.opts.dialect.get(), Some(slot), None);
                }
                drop(st);
                self.local_receipt(&frame);
                Ok(())
            }
            // Upstream subscriptions auto-acknowledge; the client's acks end here.
            Command::Ack | Command::Nack => {
                self.local_receipt(&frame);
                Ok(())
            }
            Command::Send | Command::Begin | Command::Commit | Command::Abort => {
                if frame.command == Command::Send {
                    mapping::outbound(self.inner.opts.dialect.get(), &mut frame)?;
                }
                if let Some(tx) = frame.header_str("transaction").map(str::to_owned) {
                    self.track_transaction(frame.command, &tx)?;
                    mapping::set_header(&mut frame, "transaction", self.upstream_tx(&tx));
                }
                let out = Outgoing {
                    theirs: frame.header_str("receipt").map(str::to_owned),
                    frame,
                    client: Some(self.client.clone()),
                };
                let mut st = self.inner.state.lock().expect("poisoned");
                st.send_or_hold(out, max_pending)
            }
            _ => {
                self.local_receipt(&frame);
                Ok(())
            }
        }
    }

    fn close(self: Box<Self>, _receipt: Option<String>) {
        let mut st = self.inner.state.lock().expect("poisoned");
        for tx in self.transactions.names() {
            let abort = Outgoing {
                frame: OwnedFrame::new(Command::Abort)
                    .with_header("transaction", self.upstream_tx(tx)),
                client: None,
                theirs: None,
            };
            let _ = st.send_or_hold(abort, usize::MAX);
        }
        while let Some(slot) = st.table.pop_subscription(self.id) {
            st.write_actions(self.inner.opts.dialect.get(), Some(slot), None);
        }
        st.clients.remove(&self.id);
    }
}
