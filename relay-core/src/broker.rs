//! The simple broker: an in-memory subscription registry that decides who receives
//! each published message.
//!
//! [`SimpleBroker::publish`] finds the subscriptions matching a destination (exact
//! ones and `*` / `**` patterns, see [`crate::pattern`]) and reports one [`Delivery`]
//! per receiver: every match for a topic, exactly one (round-robin per destination)
//! for a queue (`/queue/` by default). Each delivery carries a server-unique
//! `message-id`; [`message_frame`] then builds the MESSAGE frame a host encodes for
//! that receiver: `destination`, `message-id`, `subscription` (and `ack` for client
//! acknowledgement), followed by the sender's own headers (custom ones,
//! `content-type`, `content-length`) minus the SEND-only ones (`receipt`,
//! `transaction`) and any the sender tried to forge.
//!
//! Storage is the host's choice through [`SubscriptionStore`]: [`FixedStore`] here is
//! fixed-capacity and allocation-free (for the edge node); the std server can back the
//! trait with hash maps. The broker never allocates and never holds a borrow of the
//! frame past `publish`.

use crate::codec::{Command, Frame, Header, HeaderForm};
use crate::cursor::{push_escaped, BufferTooSmall, Bytes, Cursor};
use crate::pattern::{self, Separator};
use crate::session::{SessionId, SUB_ID_MAX};

/// Default queue prefixes: each message to one subscriber.
pub const DEFAULT_QUEUE_PREFIXES: &[&str] = &["/queue/"];

/// One subscription as the store reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription<'a> {
    /// The subscribing session.
    pub session: SessionId,
    /// The session's subscription id.
    pub id: &'a [u8],
    /// Destination or pattern subscribed to.
    pub destination: &'a [u8],
}

/// The store has no room (or the id/destination exceeds its inline capacity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StoreError {
    /// No free slot; carries the capacity.
    Full(usize),
    /// The destination is longer than the store keeps; carries the limit.
    DestinationTooLong(usize),
    /// The subscription id is longer than the store keeps; carries the limit.
    IdTooLong(usize),
    /// A user name is longer than the registry keeps; carries the limit.
    UserTooLong(usize),
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StoreError::Full(n) => write!(f, "Server subscription limit of {} reached", n),
            StoreError::DestinationTooLong(n) => write!(f, "Destination longer than {} bytes", n),
            StoreError::IdTooLong(n) => write!(f, "Subscription id longer than {} bytes", n),
            StoreError::UserTooLong(n) => write!(f, "User name longer than {} bytes", n),
        }
    }
}

/// Where the broker keeps subscriptions. Implementations need not match patterns:
/// [`SubscriptionStore::candidates`] may report any superset of the matches (all
/// pattern subscriptions plus the exact ones for the destination is the intent), the
/// broker filters.
pub trait SubscriptionStore {
    /// Adds a subscription. (Uniqueness of `(session, id)` is the session's job.)
    fn insert(&mut self, sub: Subscription<'_>) -> Result<(), StoreError>;
    /// Removes `(session, id)`; whether it existed.
    fn remove(&mut self, session: SessionId, id: &[u8]) -> bool;
    /// Removes every subscription of `session`; how many.
    fn remove_session(&mut self, session: SessionId) -> usize;
    /// Calls `f` for each subscription that may match `destination`, in a stable order.
    fn candidates(&self, destination: &[u8], f: &mut dyn FnMut(Subscription<'_>));
    /// Number of subscriptions.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A counter for round-robin over `destination`'s queue subscribers; returns the
    /// current value and advances it.
    fn next_round_robin(&mut self, destination: &[u8]) -> u64;
}

#[derive(Clone, Copy)]
struct Entry<const D: usize> {
    session: SessionId,
    id: Bytes<SUB_ID_MAX>,
    destination: Bytes<D>,
}

/// A fixed-capacity [`SubscriptionStore`]: `N` subscriptions with destinations of up
/// to `D` bytes, inline. Lookups scan all entries (fine for the edge node's sizes).
pub struct FixedStore<const N: usize, const D: usize = 128> {
    entries: [Option<Entry<D>>; N],
    /// Round-robin counters, indexed by a hash of the destination (a collision only
    /// shares a counter; each message still goes to exactly one subscriber).
    cursors: [u64; N],
}

impl<const N: usize, const D: usize> Default for FixedStore<N, D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const D: usize> FixedStore<N, D> {
    /// An empty store.
    pub const fn new() -> Self {
        FixedStore {
            entries: [None; N],
            cursors: [0; N],
        }
    }
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

impl<const N: usize, const D: usize> SubscriptionStore for FixedStore<N, D> {
    fn insert(&mut self, sub: Subscription<'_>) -> Result<(), StoreError> {
        let mut e = Entry {
            session: sub.session,
            id: Bytes::EMPTY,
            destination: Bytes::EMPTY,
        };
        e.id.set_plain(sub.id)
            .ok_or(StoreError::IdTooLong(SUB_ID_MAX))?;
        e.destination
            .set_plain(sub.destination)
            .ok_or(StoreError::DestinationTooLong(D))?;
        let slot = self
            .entries
            .iter_mut()
            .find(|s| s.is_none())
            .ok_or(StoreError::Full(N))?;
        *slot = Some(e);
        Ok(())
    }

    fn remove(&mut self, session: SessionId, id: &[u8]) -> bool {
        for slot in &mut self.entries {
            if slot
                .as_ref()
                .is_some_and(|e| e.session == session && e.id.get() == id)
            {
                *slot = None;
                return true;
            }
        }
        false
    }

    fn remove_session(&mut self, session: SessionId) -> usize {
        let mut n = 0;
        for slot in &mut self.entries {
            if slot.as_ref().is_some_and(|e| e.session == session) {
                *slot = None;
                n += 1;
            }
        }
        n
    }

    fn candidates(&self, _destination: &[u8], f: &mut dyn FnMut(Subscription<'_>)) {
        for e in self.entries.iter().flatten() {
            f(Subscription {
                session: e.session,
                id: e.id.get(),
                destination: e.destination.get(),
            });
        }
    }

    fn len(&self) -> usize {
        self.entries.iter().flatten().count()
    }

    fn next_round_robin(&mut self, destination: &[u8]) -> u64 {
        let Some(c) = self
            .cursors
            .get_mut((fnv1a(destination) % N.max(1) as u64) as usize)
        else {
            return 0;
        };
        let v = *c;
        *c = c.wrapping_add(1);
        v
    }
}

/// Whether a subscription receives messages published to `destination`.
pub fn subscription_matches(sub_destination: &[u8], destination: &[u8], sep: Separator) -> bool {
    if pattern::is_pattern(sub_destination) {
        pattern::matches(sub_destination, destination, sep)
    } else {
        sub_destination == destination
    }
}

/// One receiver of a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// The receiving session.
    pub session: SessionId,
    /// Its subscription id (the MESSAGE's `subscription` header).
    pub subscription: &'a [u8],
    /// The server-unique message id for this delivery.
    pub message_id: u64,
}

/// The in-memory broker over a [`SubscriptionStore`].
pub struct SimpleBroker<S> {
    store: S,
    next_message_id: u64,
    separator: Separator,
    queue_prefixes: &'static [&'static str],
}

impl<S: SubscriptionStore> SimpleBroker<S> {
    /// A broker over `store`, with `/`-separated patterns and `/queue/` queues.
    pub fn new(store: S) -> Self {
        SimpleBroker {
            store,
            next_message_id: 1,
            separator: Separator::Slash,
            queue_prefixes: DEFAULT_QUEUE_PREFIXES,
        }
    }

    /// Uses `sep` for subscription patterns (`Dot`: `/topic/chat.*` style).
    pub fn with_separator(mut self, sep: Separator) -> Self {
        self.separator = sep;
        self
    }

    /// Destinations under these prefixes are queues.
    pub fn with_queue_prefixes(mut self, prefixes: &'static [&'static str]) -> Self {
        self.queue_prefixes = prefixes;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Registers a subscription (already accepted by the session).
    pub fn subscribe(
        &mut self,
        session: SessionId,
        id: &[u8],
        destination: &[u8],
    ) -> Result<(), StoreError> {
        self.store.insert(Subscription {
            session,
            id,
            destination,
        })
    }

    /// Removes a subscription; whether it existed.
    pub fn unsubscribe(&mut self, session: SessionId, id: &[u8]) -> bool {
        self.store.remove(session, id)
    }

    /// Removes every subscription of a closed session.
    pub fn remove_session(&mut self, session: SessionId) -> usize {
        self.store.remove_session(session)
    }

    /// Whether `destination` has queue semantics.
    pub fn is_queue(&self, destination: &[u8]) -> bool {
        self.queue_prefixes
            .iter()
            .any(|p| destination.starts_with(p.as_bytes()))
    }

    /// Publishes to `destination`: calls `deliver` once per receiver (every matching
    /// subscription of a topic; one, round-robin, for a queue). Returns the number of
    /// deliveries.
    pub fn publish(&mut self, destination: &[u8], mut deliver: impl FnMut(Delivery<'_>)) -> usize {
        let sep = self.separator;
        let mut next_id = self.next_message_id;
        let mut count = 0usize;
        if self.is_queue(destination) {
            let mut matching = 0u64;
            self.store.candidates(destination, &mut |s| {
                if subscription_matches(s.destination, destination, sep) {
                    matching += 1;
                }
            });
            if matching > 0 {
                let pick = self.store.next_round_robin(destination) % matching;
                let mut i = 0u64;
                self.store.candidates(destination, &mut |s| {
                    if subscription_matches(s.destination, destination, sep) {
                        if i == pick {
                            deliver(Delivery {
                                session: s.session,
                                subscription: s.id,
                                message_id: next_id,
                            });
                            next_id += 1;
                            count += 1;
                        }
                        i += 1;
                    }
                });
            }
        } else {
            self.store.candidates(destination, &mut |s| {
                if subscription_matches(s.destination, destination, sep) {
                    deliver(Delivery {
                        session: s.session,
                        subscription: s.id,
                        message_id: next_id,
                    });
                    next_id += 1;
                    count += 1;
                }
            });
        }
        self.next_message_id = next_id;
        count
    }
}

impl<S: SubscriptionStore> SimpleBroker<S> {
    /// Delivers to the subscriptions whose destination is exactly `sub_destination`
    /// (pattern text compared as text, not matched): the local fan-out of a relay's
    /// shared upstream subscription, which the broker already matched. Queue
    /// destinations still go to one subscriber, round-robin. Returns the deliveries.
    pub fn publish_to_subscribers_of(
        &mut self,
        sub_destination: &[u8],
        mut deliver: impl FnMut(Delivery<'_>),
    ) -> usize {
        let mut next_id = self.next_message_id;
        let mut matching = 0u64;
        self.store.candidates(sub_destination, &mut |s| {
            if s.destination == sub_destination {
                matching += 1;
            }
        });
        if matching == 0 {
            return 0;
        }
        let pick = if self.is_queue(sub_destination) {
            Some(self.store.next_round_robin(sub_destination) % matching)
        } else {
            None
        };
        let mut i = 0u64;
        let mut count = 0;
        self.store.candidates(sub_destination, &mut |s| {
            if s.destination == sub_destination {
                if pick.is_none_or(|p| p == i) {
                    deliver(Delivery {
                        session: s.session,
                        subscription: s.id,
                        message_id: next_id,
                    });
                    next_id += 1;
                    count += 1;
                }
                i += 1;
            }
        });
        self.next_message_id = next_id;
        count
    }
}

/// Headers of a SEND that never reach subscribers: replaced (`destination`,
/// `message-id`, `subscription`, `ack`) or meaningful only to the sender.
const DROPPED: &[&[u8]] = &[
    b"destination",
    b"message-id",
    b"subscription",
    b"ack",
    b"receipt",
    b"transaction",
];

/// Builds the MESSAGE frame for one delivery of `send` (the client's SEND frame).
///
/// `destination` is what the receiver sees (the SEND's own destination, or the
/// `/user/...` form for a user destination), `subscription` the receiver's id,
/// `ack` whether to add an `ack` header (client acknowledgement modes in 1.2; its
/// value is the message id). Values are plain bytes; the frame keeps `send`'s header
/// form, so escaped values are escaped into `scratch` (at most `2 x` their length plus
/// 24 bytes). `headers` must hold `send`'s headers plus 4.
///
/// Encode the result with [`crate::codec::EncodeOptions::passthrough`] so a missing
/// `content-length` stays missing (brokers and clients treat its presence as a type hint).
pub fn message_frame<'a>(
    send: &Frame<'a>,
    destination: &[u8],
    subscription: &[u8],
    message_id: u64,
    ack: bool,
    scratch: &'a mut [u8],
    headers: &'a mut [Header<'a>],
) -> Result<Frame<'a>, BufferTooSmall> {
    let escaped = send.form == HeaderForm::Escaped;
    // Lay out destination, subscription and message id in scratch, escaped if needed.
    let mut c = Cursor::new(scratch);
    let put = |c: &mut Cursor<'_>, v: &[u8]| {
        if escaped {
            push_escaped(c, v)
        } else {
            c.push(v);
        }
    };
    put(&mut c, destination);
    let d_end = c.written();
    put(&mut c, subscription);
    let s_end = c.written();
    c.push_u64(message_id);
    let written = c.finish()?;
    let (d, rest) = written.split_at(d_end);
    let (s, m) = rest.split_at(s_end - d_end);

    let mut n = 0;
    let mut add = |headers: &mut [Header<'a>], h: Header<'a>| -> Result<(), BufferTooSmall> {
        *headers.get_mut(n).ok_or(BufferTooSmall)? = h;
        n += 1;
        Ok(())
    };
    add(headers, Header::new(b"destination", d))?;
    add(headers, Header::new(b"message-id", m))?;
    add(headers, Header::new(b"subscription", s))?;
    if ack {
        add(headers, Header::new(b"ack", m))?;
    }
    for h in send.headers {
        // Header names with escapes are rare; compare as the codec does.
        let name = crate::codec::HeaderValue::new(h.name, escaped);
        if DROPPED.iter().any(|d| name.eq_bytes(d)) {
            continue;
        }
        add(headers, *h)?;
    }
    let headers: &'a [Header<'a>] = headers;
    Ok(Frame {
        command: Command::Message,
        headers: &headers[..n],
        body: send.body,
        form: send.form,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decoded, Decoder, EncodeOptions, Limits, Status, Version};
    use std::vec::Vec;

    type Broker = SimpleBroker<FixedStore<16>>;

    fn collect(b: &mut Broker, dest: &[u8]) -> Vec<(u128, Vec<u8>, u64)> {
        let mut v = Vec::new();
        b.publish(dest, |d| {
            v.push((d.session.get(), d.subscription.to_vec(), d.message_id))
        });
        v
    }

    #[test]
    fn topics_fan_out_to_exact_and_pattern_subscribers() {
        let mut b = Broker::new(FixedStore::new());
        b.subscribe(SessionId::new(1), b"a", b"/topic/chat/room1")
            .unwrap();
        b.subscribe(SessionId::new(2), b"b", b"/topic/chat/*")
            .unwrap();
        b.subscribe(SessionId::new(3), b"c", b"/topic/**").unwrap();
        b.subscribe(SessionId::new(4), b"d", b"/topic/chat/room2")
            .unwrap();
        let got = collect(&mut b, b"/topic/chat/room1");
        let receivers: Vec<u128> = got.iter().map(|g| g.0).collect();
        assert_eq!(receivers, [1, 2, 3]);
        assert_eq!(got[1].1, b"b");
        // Message ids are unique across deliveries and publishes.
        let more = collect(&mut b, b"/topic/chat/room2");
        let mut ids: Vec<u64> = got.iter().chain(more.iter()).map(|g| g.2).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), got.len() + more.len());
        assert_eq!(
            collect(&mut b, b"/topic").len(),
            1,
            "only /topic/** matches /topic"
        );
        assert!(collect(&mut b, b"/sub/other").is_empty());
    }

    #[test]
    fn queues_round_robin_to_one_subscriber() {
        let mut b = Broker::new(FixedStore::new());
        b.subscribe(SessionId::new(1), b"w", b"/queue/work")
            .unwrap();
        b.subscribe(SessionId::new(2), b"w", b"/queue/work")
            .unwrap();
        b.subscribe(SessionId::new(3), b"w", b"/queue/work")
            .unwrap();
        b.subscribe(SessionId::new(9), b"o", b"/queue/other")
            .unwrap();
        let mut counts = [0usize; 4];
        for _ in 0..30 {
            let got = collect(&mut b, b"/queue/work");
            assert_eq!(got.len(), 1);
            counts[got[0].0 as usize] += 1;
            // Interleaved traffic on another queue does not disturb the rotation.
            assert_eq!(collect(&mut b, b"/queue/other").len(), 1);
        }
        assert_eq!(&counts[1..], &[10, 10, 10]);
        assert!(collect(&mut b, b"/queue/empty").is_empty());
    }

    #[test]
    fn shared_fan_out_uses_subscription_text_not_matching() {
        let mut b = Broker::new(FixedStore::new());
        b.subscribe(SessionId::new(1), b"a", b"/sub/chat/*")
            .unwrap();
        b.subscribe(SessionId::new(2), b"b", b"/sub/chat/room1")
            .unwrap();
        b.subscribe(SessionId::new(3), b"c", b"/sub/chat/*")
            .unwrap();
        let mut got = Vec::new();
        b.publish_to_subscribers_of(b"/sub/chat/*", |d| got.push(d.session.get()));
        assert_eq!(
            got,
            [1, 3],
            "the exact subscriber gets the copy of its own upstream subscription"
        );
        b.subscribe(SessionId::new(4), b"q", b"/queue/w").unwrap();
        b.subscribe(SessionId::new(5), b"q", b"/queue/w").unwrap();
        let mut got = Vec::new();
        for _ in 0..4 {
            b.publish_to_subscribers_of(b"/queue/w", |d| got.push(d.session.get()));
        }
        assert_eq!(got, [4, 5, 4, 5]);
    }

    #[test]
    fn unsubscribe_and_session_removal() {
        let mut b = Broker::new(FixedStore::new());
        b.subscribe(SessionId::new(1), b"a", b"/topic/x").unwrap();
        b.subscribe(SessionId::new(1), b"b", b"/topic/x").unwrap();
        b.subscribe(SessionId::new(2), b"a", b"/topic/x").unwrap();
        assert!(b.unsubscribe(SessionId::new(2), b"a"));
        assert!(!b.unsubscribe(SessionId::new(2), b"a"));
        assert_eq!(collect(&mut b, b"/topic/x").len(), 2);
        assert_eq!(b.remove_session(SessionId::new(1)), 2);
        assert!(collect(&mut b, b"/topic/x").is_empty());
        assert!(b.store().is_empty());
    }

    #[test]
    fn store_limits_are_errors() {
        let mut b = SimpleBroker::new(FixedStore::<2, 16>::new());
        b.subscribe(SessionId::new(1), b"a", b"/topic/x").unwrap();
        assert_eq!(
            b.subscribe(SessionId::new(1), b"b", b"/topic/much-too-long-destination"),
            Err(StoreError::DestinationTooLong(16))
        );
        b.subscribe(SessionId::new(1), b"b", b"/topic/y").unwrap();
        assert_eq!(
            b.subscribe(SessionId::new(1), b"c", b"/topic/z"),
            Err(StoreError::Full(2))
        );
        assert_eq!(
            StoreError::Full(2).to_string_for_test(),
            "Server subscription limit of 2 reached"
        );
    }

    trait ToStringForTest {
        fn to_string_for_test(&self) -> std::string::String;
    }
    impl<T: core::fmt::Display> ToStringForTest for T {
        fn to_string_for_test(&self) -> std::string::String {
            std::format!("{}", self)
        }
    }

    #[test]
    fn message_frame_keeps_sender_headers_and_sets_delivery_ones() {
        let wire = b"SEND\ndestination:/topic/a\\cb\nreceipt:r1\ncontent-type:text/plain\ncontent-length:5\nx-custom:k\\cv\nmessage-id:forged\n\nhel\0o\0";
        let mut hs = [Header::EMPTY; 16];
        let dec = Decoder::with_limits(Version::V1_2, Limits::UNLIMITED);
        let Status::Complete((Decoded::Frame(send), _)) = dec.decode(wire, &mut hs).unwrap() else {
            panic!()
        };
        let mut scratch = [0u8; 128];
        let mut out_h = [Header::EMPTY; 20];
        let msg = message_frame(
            &send,
            b"/topic/a:b",
            b"sub:0",
            42,
            true,
            &mut scratch,
            &mut out_h,
        )
        .unwrap();
        let mut buf = [0u8; 512];
        let n = crate::codec::encode(&msg, EncodeOptions::passthrough(Version::V1_2), &mut buf)
            .unwrap();
        let mut hs2 = [Header::EMPTY; 16];
        let Status::Complete((Decoded::Frame(m), _)) = dec.decode(&buf[..n], &mut hs2).unwrap()
        else {
            panic!()
        };
        assert_eq!(m.command, Command::Message);
        assert!(m.destination().unwrap() == "/topic/a:b");
        assert!(m.subscription().unwrap() == "sub:0");
        assert!(m.message_id().unwrap() == "42");
        assert!(m.ack().unwrap() == "42");
        assert!(m.content_type().unwrap() == "text/plain");
        assert_eq!(m.content_length(), Some(5));
        assert!(m.header(b"x-custom").unwrap() == "k:v");
        assert!(m.receipt().is_none());
        assert_eq!(m.body, b"hel\0o");
        assert_eq!(
            m.headers.iter().filter(|h| h.name == b"message-id").count(),
            1
        );

        // Plain (1.0) frames stay plain; no content-length is invented.
        let send_h = [Header::new(b"destination", b"/q")];
        let send = Frame::new(Command::Send, &send_h, b"hi");
        let mut scratch = [0u8; 64];
        let mut out_h = [Header::EMPTY; 8];
        let msg = message_frame(&send, b"/q", b"0", 1, false, &mut scratch, &mut out_h).unwrap();
        let n = crate::codec::encode(&msg, EncodeOptions::passthrough(Version::V1_0), &mut buf)
            .unwrap();
        assert_eq!(
            &buf[..n],
            b"MESSAGE\ndestination:/q\nmessage-id:1\nsubscription:0\n\nhi\0"
        );

        // Too little header storage is an error, not a truncated frame.
        let mut scratch = [0u8; 64];
        let mut out_h = [Header::EMPTY; 3];
        let send_h = [Header::new(b"x", b"1")];
        let send = Frame::new(Command::Send, &send_h, b"");
        assert!(message_frame(&send, b"/q", b"0", 1, false, &mut scratch, &mut out_h).is_err());
    }
}
