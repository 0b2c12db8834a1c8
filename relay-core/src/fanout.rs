//! The shared relay's fan-out table: the local subscriptions of many client sessions
//! mapped onto reference-counted upstream subscriptions, one per distinct destination.
//!
//! Both hosts run their shared upstream connection through a [`Fanout`]: the std
//! server over heap storage, the edge node over [`InlineStore`]. The table decides
//! what the upstream must be told; the host writes what [`Fanout::next_action`] asks
//! for and reports it with [`Fanout::action_done`], reports a lost connection with
//! [`Fanout::upstream_lost`] and maps each upstream MESSAGE back with
//! [`Fanout::route_of`] and the store's subscribers of that route.
//!
//! Invariants (checked by the proptest in `tests/relay_model.rs`):
//! - a route's reference count equals the number of local subscriptions on it;
//! - a destination is subscribed upstream at most once however many local subscribers
//!   it has, and a route with none is unsubscribed upstream (or simply forgotten when
//!   its SUBSCRIBE never went out);
//! - every upstream subscription id carries the route's generation, so a MESSAGE for
//!   an earlier use of a reused slot is never delivered;
//! - after [`Fanout::upstream_lost`] every route with subscribers is subscribed again.

use crate::cursor::{Bytes, Cursor};

/// Where a route stands with the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RouteState {
    /// Unused slot.
    Free,
    /// Has subscribers; SUBSCRIBE not yet written on the current upstream connection.
    Wanted,
    /// SUBSCRIBE written on the current upstream connection.
    Active,
    /// No subscriber left; UNSUBSCRIBE not yet written.
    Leaving,
}

/// The table's bookkeeping for one route slot; a store keeps one per slot and
/// otherwise leaves it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMeta {
    refs: u32,
    generation: u16,
    state: RouteState,
}

impl RouteMeta {
    /// An unused slot.
    pub const FREE: RouteMeta = RouteMeta {
        refs: 0,
        generation: 0,
        state: RouteState::Free,
    };

    /// Where the route stands.
    pub fn state(&self) -> RouteState {
        self.state
    }

    /// Local subscriptions on the route.
    pub fn refs(&self) -> u32 {
        self.refs
    }
}

/// Why a SUBSCRIBE or UNSUBSCRIBE was refused. `Display` is the ERROR `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FanoutError {
    /// The session already has a subscription with this id.
    DuplicateId,
    /// The session holds the most subscriptions the store keeps for one session.
    SessionFull,
    /// Every route slot is in use by other destinations.
    RoutesFull,
    /// The destination or the id is longer than the store keeps.
    TooLong,
    /// UNSUBSCRIBE named an id the session does not hold.
    UnknownId,
}

impl FanoutError {
    /// The text for the ERROR frame's `message` header.
    pub const fn message(self) -> &'static str {
        match self {
            FanoutError::DuplicateId => "Subscription id already in use",
            FanoutError::SessionFull => "Too many subscriptions for this session",
            FanoutError::RoutesFull => "Too many distinct destinations on this relay",
            FanoutError::TooLong => "Destination or subscription id too long",
            FanoutError::UnknownId => "No subscription with this id",
        }
    }
}

impl core::fmt::Display for FanoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())
    }
}

/// The storage behind a [`Fanout`]: route slots (each a [`RouteMeta`] and a
/// destination) and local subscriptions (session, id, route slot). The store only
/// keeps what it is given; every rule is the table's.
pub trait FanoutStore {
    /// Names a local session: the edge node's slot index, the server's session id.
    type Session: Copy + PartialEq;

    /// Route slots there are now, free ones included.
    fn slots(&self) -> usize;
    /// Slot `slot`'s bookkeeping (`slot < slots()`).
    fn meta(&self, slot: usize) -> &RouteMeta;
    /// Slot `slot`'s bookkeeping, to change (`slot < slots()`).
    fn meta_mut(&mut self, slot: usize) -> &mut RouteMeta;
    /// The destination slot `slot` holds (`slot < slots()`, not free).
    fn destination(&self, slot: usize) -> &[u8];
    /// The slot that is not free and holds `destination`. The default looks at every
    /// slot; a large store keeps an index.
    fn find(&self, destination: &[u8]) -> Option<usize> {
        (0..self.slots())
            .find(|&s| self.meta(s).state != RouteState::Free && self.destination(s) == destination)
    }
    /// A free slot (an existing one or a new one) now holding `destination`:
    /// [`FanoutError::RoutesFull`] or [`FanoutError::TooLong`] when there is none.
    fn claim(&mut self, destination: &[u8]) -> Result<usize, FanoutError>;
    /// Slot `slot` became free: the store may forget its destination.
    fn released(&mut self, _slot: usize) {}

    /// Records subscription `id` of `session` on route `slot`:
    /// [`FanoutError::DuplicateId`], [`FanoutError::SessionFull`] or
    /// [`FanoutError::TooLong`] when it cannot.
    fn add_local(
        &mut self,
        session: Self::Session,
        id: &[u8],
        slot: usize,
    ) -> Result<(), FanoutError>;
    /// Removes subscription `id` of `session`, returning its route slot.
    fn remove_local(&mut self, session: Self::Session, id: &[u8]) -> Option<usize>;
    /// Removes any one subscription of `session`, returning its route slot.
    fn pop_local(&mut self, session: Self::Session) -> Option<usize>;
}

/// Longest upstream subscription id: a prefix of up to 8 bytes, two u16 and a dash.
pub const UPSTREAM_ID_MAX: usize = 20;

/// An upstream subscription id, `<prefix><slot>-<generation>`.
#[derive(Clone, Copy)]
pub struct UpstreamId(Bytes<UPSTREAM_ID_MAX>);

impl PartialEq for UpstreamId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for UpstreamId {}

impl UpstreamId {
    fn new(prefix: &str, slot: usize, generation: u16) -> Self {
        let mut b = Bytes::EMPTY;
        let mut c = Cursor::new(&mut b.buf);
        c.push(prefix.as_bytes())
            .push_u64(slot as u64)
            .push_byte(b'-')
            .push_u64(u64::from(generation));
        // A prefix over 8 bytes is cut, never a panic (the id stays unique per route).
        let n = c.finish_truncated().len();
        b.set_len(n);
        UpstreamId(b)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.get()
    }
}

impl core::fmt::Debug for UpstreamId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "{:?}", self.as_bytes()),
        }
    }
}

/// Something the upstream has to be told for it to match the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// SUBSCRIBE to `destination` under `id`.
    Subscribe {
        /// Route slot, to pass back to [`Fanout::action_done`].
        slot: usize,
        /// The upstream subscription id.
        id: UpstreamId,
        /// The client destination (map it to the broker's form when writing it).
        destination: &'a [u8],
    },
    /// UNSUBSCRIBE `id`.
    Unsubscribe {
        /// Route slot, to pass back to [`Fanout::action_done`].
        slot: usize,
        /// The upstream subscription id.
        id: UpstreamId,
    },
}

/// What [`Fanout::subscribe`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed {
    /// The route the subscription joined.
    pub slot: usize,
    /// The route needs an upstream SUBSCRIBE ([`Fanout::next_action`] will ask for it);
    /// false when it was already subscribed upstream.
    pub upstream: bool,
}

/// The fan-out table over store `S`; upstream ids start with `prefix`.
#[derive(Debug)]
pub struct Fanout<S> {
    store: S,
    prefix: &'static str,
    locals: usize,
}

impl<S: FanoutStore> Fanout<S> {
    /// A table over `store` (empty), naming upstream subscriptions `<prefix><n>-<g>`.
    pub const fn new(store: S, prefix: &'static str) -> Self {
        Fanout {
            store,
            prefix,
            locals: 0,
        }
    }

    /// The store, for host-specific reads (subscribers of a route with their handles).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Adds subscription `id` on `destination` for `session`.
    pub fn subscribe(
        &mut self,
        session: S::Session,
        id: &[u8],
        destination: &[u8],
    ) -> Result<Subscribed, FanoutError> {
        let (slot, claimed) = match self.store.find(destination) {
            Some(slot) => (slot, false),
            None => (self.store.claim(destination)?, true),
        };
        if claimed {
            let m = self.store.meta_mut(slot);
            m.generation = m.generation.wrapping_add(1);
            m.refs = 0;
            m.state = RouteState::Wanted;
        }
        if let Err(e) = self.store.add_local(session, id, slot) {
            if claimed {
                self.store.meta_mut(slot).state = RouteState::Free;
                self.store.released(slot);
            }
            return Err(e);
        }
        self.locals += 1;
        let m = self.store.meta_mut(slot);
        m.refs += 1;
        if m.state == RouteState::Leaving {
            // The UNSUBSCRIBE never went out, so the upstream subscription still stands.
            m.state = RouteState::Active;
        }
        Ok(Subscribed {
            slot,
            upstream: m.state == RouteState::Wanted,
        })
    }

    /// Removes subscription `id` of `session`; returns the route it left (see
    /// [`Fanout::action`]).
    pub fn unsubscribe(&mut self, session: S::Session, id: &[u8]) -> Result<usize, FanoutError> {
        let slot = self
            .store
            .remove_local(session, id)
            .ok_or(FanoutError::UnknownId)?;
        self.release(slot);
        Ok(slot)
    }

    /// Removes one subscription of `session` (any one); returns the route it left, or
    /// `None` when the session holds none. A host ending a session calls it until
    /// `None` and writes [`Fanout::action`] of each route.
    pub fn pop_subscription(&mut self, session: S::Session) -> Option<usize> {
        let slot = self.store.pop_local(session)?;
        self.release(slot);
        Some(slot)
    }

    /// Removes every subscription of `session` (it ended).
    pub fn remove_session(&mut self, session: S::Session) {
        while self.pop_subscription(session).is_some() {}
    }

    fn release(&mut self, slot: usize) {
        self.locals -= 1;
        let m = self.store.meta_mut(slot);
        m.refs -= 1;
        if m.refs == 0 {
            m.state = match m.state {
                RouteState::Active => RouteState::Leaving,
                _ => RouteState::Free,
            };
            if m.state == RouteState::Free {
                self.store.released(slot);
            }
        }
    }

    /// The next SUBSCRIBE/UNSUBSCRIBE the upstream needs, if any (every route is
    /// looked at: after a reconnect, or with few routes).
    pub fn next_action(&self) -> Option<Action<'_>> {
        (0..self.store.slots()).find_map(|slot| self.action(slot))
    }

    /// The SUBSCRIBE/UNSUBSCRIBE route `slot` needs, if any: what a host with many
    /// routes writes after [`Fanout::subscribe`] or [`Fanout::unsubscribe`] touched it.
    pub fn action(&self, slot: usize) -> Option<Action<'_>> {
        if slot >= self.store.slots() {
            return None;
        }
        let m = self.store.meta(slot);
        let id = || UpstreamId::new(self.prefix, slot, m.generation);
        match m.state {
            RouteState::Wanted => Some(Action::Subscribe {
                slot,
                id: id(),
                destination: self.store.destination(slot),
            }),
            RouteState::Leaving => Some(Action::Unsubscribe { slot, id: id() }),
            _ => None,
        }
    }

    /// Records that the action for `slot` was written upstream.
    pub fn action_done(&mut self, slot: usize) {
        let m = self.store.meta_mut(slot);
        m.state = match m.state {
            RouteState::Wanted => RouteState::Active,
            RouteState::Leaving => RouteState::Free,
            other => other,
        };
        if m.state == RouteState::Free {
            self.store.released(slot);
        }
    }

    /// The upstream connection was lost: it forgot every subscription, so every route
    /// with subscribers must be subscribed again and the leaving ones are simply gone.
    pub fn upstream_lost(&mut self) {
        for slot in 0..self.store.slots() {
            let m = self.store.meta_mut(slot);
            match m.state {
                RouteState::Active | RouteState::Wanted => m.state = RouteState::Wanted,
                RouteState::Leaving => {
                    m.state = RouteState::Free;
                    self.store.released(slot);
                }
                RouteState::Free => {}
            }
        }
    }

    /// The route an upstream MESSAGE's `subscription` header names, if it is current.
    pub fn route_of(&self, upstream_id: &[u8]) -> Option<usize> {
        let rest = upstream_id.strip_prefix(self.prefix.as_bytes())?;
        let dash = rest.iter().position(|&b| b == b'-')?;
        let slot = parse_u16(&rest[..dash])? as usize;
        let generation = parse_u16(&rest[dash + 1..])?;
        let m = (slot < self.store.slots()).then(|| self.store.meta(slot))?;
        (m.state == RouteState::Active && m.generation == generation).then_some(slot)
    }

    /// The client destination of route `slot`.
    pub fn destination(&self, slot: usize) -> &[u8] {
        self.store.destination(slot)
    }

    /// Upstream subscriptions wanted or standing (distinct destinations).
    pub fn route_count(&self) -> usize {
        (0..self.store.slots())
            .filter(|&s| {
                matches!(
                    self.store.meta(s).state,
                    RouteState::Wanted | RouteState::Active
                )
            })
            .count()
    }

    /// Local subscriptions over all routes.
    pub fn subscription_count(&self) -> usize {
        self.locals
    }
}

fn parse_u16(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits
        .iter()
        .fold(0u32, |v, &d| v * 10 + u32::from(d - b'0'));
    u16::try_from(v).ok()
}

/// A fixed-capacity [`FanoutStore`] with nothing on the heap: `N` sessions of up to
/// `PER` subscriptions each (ids up to `ID` bytes) over `ROUTES` route slots
/// (destinations up to `DEST` bytes). Sessions are slot indexes `0..N`.
pub struct InlineStore<
    const N: usize,
    const PER: usize,
    const ROUTES: usize,
    const DEST: usize = 64,
    const ID: usize = 32,
> {
    metas: [RouteMeta; ROUTES],
    destinations: [Bytes<DEST>; ROUTES],
    locals: [[(Bytes<ID>, u8); PER]; N],
    counts: [u8; N],
}

impl<const N: usize, const PER: usize, const ROUTES: usize, const DEST: usize, const ID: usize>
    InlineStore<N, PER, ROUTES, DEST, ID>
{
    const FITS: () = assert!(ROUTES <= u8::MAX as usize && PER <= u8::MAX as usize);

    /// An empty store.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::FITS;
        InlineStore {
            metas: [RouteMeta::FREE; ROUTES],
            destinations: [Bytes::EMPTY; ROUTES],
            locals: [[(Bytes::EMPTY, 0); PER]; N],
            counts: [0; N],
        }
    }

    fn session(&self, session: usize) -> &[(Bytes<ID>, u8)] {
        match self.locals.get(session) {
            Some(l) => &l[..usize::from(self.counts[session])],
            None => &[],
        }
    }

    /// The local subscriptions on route `slot`: `(session, subscription id)`.
    pub fn subscribers(&self, slot: usize) -> impl Iterator<Item = (usize, &[u8])> + '_ {
        (0..N).flat_map(move |session| {
            self.session(session)
                .iter()
                .filter(move |(_, r)| usize::from(*r) == slot)
                .map(move |(id, _)| (session, id.get()))
        })
    }
}

impl<const N: usize, const PER: usize, const ROUTES: usize, const DEST: usize, const ID: usize>
    Default for InlineStore<N, PER, ROUTES, DEST, ID>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const PER: usize, const ROUTES: usize, const DEST: usize, const ID: usize>
    FanoutStore for InlineStore<N, PER, ROUTES, DEST, ID>
{
    type Session = usize;

    fn slots(&self) -> usize {
        ROUTES
    }

    fn meta(&self, slot: usize) -> &RouteMeta {
        &self.metas[slot]
    }

    fn meta_mut(&mut self, slot: usize) -> &mut RouteMeta {
        &mut self.metas[slot]
    }

    fn destination(&self, slot: usize) -> &[u8] {
        self.destinations[slot].get()
    }

    fn claim(&mut self, destination: &[u8]) -> Result<usize, FanoutError> {
        let slot = self
            .metas
            .iter()
            .position(|m| m.state == RouteState::Free)
            .ok_or(FanoutError::RoutesFull)?;
        self.destinations[slot]
            .set_plain(destination)
            .ok_or(FanoutError::TooLong)?;
        Ok(slot)
    }

    fn add_local(&mut self, session: usize, id: &[u8], slot: usize) -> Result<(), FanoutError> {
        if self.session(session).iter().any(|(s, _)| s.get() == id) {
            return Err(FanoutError::DuplicateId);
        }
        let n = usize::from(*self.counts.get(session).ok_or(FanoutError::SessionFull)?);
        if n == PER {
            return Err(FanoutError::SessionFull);
        }
        let entry = &mut self.locals[session][n];
        entry.0.set_plain(id).ok_or(FanoutError::TooLong)?;
        entry.1 = slot as u8;
        self.counts[session] += 1;
        Ok(())
    }

    fn remove_local(&mut self, session: usize, id: &[u8]) -> Option<usize> {
        let i = self
            .session(session)
            .iter()
            .position(|(s, _)| s.get() == id)?;
        let last = usize::from(self.counts[session]) - 1;
        self.locals[session].swap(i, last);
        self.counts[session] -= 1;
        Some(usize::from(self.locals[session][last].1))
    }

    fn pop_local(&mut self, session: usize) -> Option<usize> {
        let n = usize::from(*self.counts.get(session)?);
        let last = n.checked_sub(1)?;
        self.counts[session] -= 1;
        Some(usize::from(self.locals[session][last].1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Table = Fanout<InlineStore<3, 2, 2>>;

    fn table() -> Table {
        Fanout::new(InlineStore::new(), "edge-")
    }

    fn subscribe_id(t: &Table) -> UpstreamId {
        match t.next_action() {
            Some(Action::Subscribe { id, .. }) => id,
            other => panic!("expected a SUBSCRIBE, got {:?}", other),
        }
    }

    #[test]
    fn one_upstream_subscription_per_destination() {
        let mut t = table();
        assert!(t.subscribe(0, b"a", b"/topic/x").unwrap().upstream);
        assert!(t.subscribe(1, b"a", b"/topic/x").unwrap().upstream);
        let id = subscribe_id(&t);
        assert_eq!(id.as_bytes(), b"edge-0-1");
        let Some(Action::Subscribe {
            slot, destination, ..
        }) = t.next_action()
        else {
            unreachable!()
        };
        assert_eq!(destination, b"/topic/x");
        t.action_done(slot);
        assert_eq!(t.next_action(), None);
        // A third subscriber joins a route already subscribed upstream.
        assert!(!t.subscribe(2, b"z", b"/topic/x").unwrap().upstream);
        t.remove_session(2);
        let route = t.route_of(id.as_bytes()).unwrap();
        let subs: std::vec::Vec<_> = t.store().subscribers(route).collect();
        assert_eq!(subs, [(0, &b"a"[..]), (1, &b"a"[..])]);
        assert_eq!(t.subscription_count(), 2);

        // The first leaving keeps the upstream subscription; the last one ends it.
        t.unsubscribe(0, b"a").unwrap();
        assert_eq!(t.next_action(), None);
        t.remove_session(1);
        match t.next_action() {
            Some(Action::Unsubscribe { slot: s, id: uid }) => {
                assert_eq!(uid, id);
                t.action_done(s);
            }
            other => panic!("expected UNSUBSCRIBE, got {:?}", other),
        }
        assert_eq!(t.route_count(), 0);
        assert_eq!(t.subscription_count(), 0);
        assert_eq!(t.route_of(id.as_bytes()), None);
    }

    #[test]
    fn errors_are_reported_not_panics() {
        let mut t = table();
        t.subscribe(0, b"a", b"/topic/x").unwrap();
        assert_eq!(
            t.subscribe(0, b"a", b"/topic/y"),
            Err(FanoutError::DuplicateId)
        );
        // The refused subscription did not keep the route it claimed.
        assert_eq!(t.route_count(), 1);
        t.subscribe(0, b"b", b"/topic/y").unwrap();
        assert_eq!(
            t.subscribe(0, b"c", b"/topic/x"),
            Err(FanoutError::SessionFull)
        );
        assert_eq!(
            t.subscribe(1, b"c", b"/topic/z"),
            Err(FanoutError::RoutesFull)
        );
        assert_eq!(t.unsubscribe(1, b"zz"), Err(FanoutError::UnknownId));
        assert_eq!(
            t.subscribe(1, &[b'i'; 40], b"/topic/x"),
            Err(FanoutError::TooLong)
        );
        assert_eq!(
            t.subscribe(7, b"a", b"/topic/x"),
            Err(FanoutError::SessionFull)
        );
        assert_eq!(t.route_count(), 2);
        assert_eq!(t.subscription_count(), 2);
        assert_eq!(t.route_of(b"edge-9-1"), None);
        assert_eq!(t.route_of(b"edge-0-99999999"), None);
    }

    #[test]
    fn reconnect_resubscribes_and_slot_reuse_changes_id() {
        let mut t = table();
        t.subscribe(0, b"a", b"/topic/x").unwrap();
        let old = subscribe_id(&t);
        t.action_done(0);
        t.upstream_lost();
        assert_eq!(subscribe_id(&t), old);
        t.action_done(0);
        t.unsubscribe(0, b"a").unwrap();
        t.upstream_lost(); // the UNSUBSCRIBE is moot now
        assert_eq!(t.next_action(), None);
        t.subscribe(2, b"q", b"/topic/other").unwrap();
        let new = subscribe_id(&t);
        assert_ne!(new, old);
        t.action_done(0);
        assert_eq!(t.route_of(old.as_bytes()), None);
        assert!(t.route_of(new.as_bytes()).is_some());
    }

    #[test]
    fn resubscribe_before_unsubscribe_was_sent_keeps_route() {
        let mut t = table();
        t.subscribe(0, b"a", b"/topic/x").unwrap();
        t.action_done(0);
        t.unsubscribe(0, b"a").unwrap();
        assert!(!t.subscribe(1, b"b", b"/topic/x").unwrap().upstream);
        assert_eq!(t.next_action(), None);
        assert_eq!(t.route_count(), 1);
    }
}
