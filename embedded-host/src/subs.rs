//! The subscription table of the shared upstream session: local subscriptions per
//! session and the reference-counted upstream subscriptions (routes) they map onto.
//!
//! Invariants: a route's `refs` equals the number of local subscriptions pointing at it;
//! a route is subscribed upstream at most once however many local subscribers it has;
//! a route with no local subscriber is unsubscribed upstream (or simply forgotten when
//! the SUBSCRIBE never went out); every upstream subscription id carries the route's
//! generation, so a MESSAGE for an old use of a reused slot is never delivered.

use core::fmt::Write as _;
use heapless::Vec;

/// Longest destination a route can hold.
pub const MAX_DESTINATION: usize = 64;
/// Longest local subscription id.
pub const MAX_SUB_ID: usize = 32;
/// Capacity of an upstream subscription id string (`edge-<slot>-<generation>`).
pub const UPSTREAM_ID_LEN: usize = 20;

/// Where a route stands with the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteState {
    Free,
    /// Has subscribers; SUBSCRIBE not yet written on the current upstream connection.
    Wanted,
    /// SUBSCRIBE written on the current upstream connection.
    Active,
    /// No subscriber left; UNSUBSCRIBE not yet written.
    Leaving,
}

#[derive(Debug)]
struct Route {
    destination: Vec<u8, MAX_DESTINATION>,
    refs: u16,
    generation: u16,
    state: RouteState,
}

#[derive(Debug)]
struct LocalSub {
    id: Vec<u8, MAX_SUB_ID>,
    route: u8,
}

/// Why a SUBSCRIBE or UNSUBSCRIBE was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SubError {
    /// The session already has a subscription with this id.
    DuplicateId,
    /// The session holds its maximum number of subscriptions.
    SessionFull,
    /// Every upstream route is in use by other destinations.
    RoutesFull,
    /// The destination or the id is longer than the table stores.
    TooLong,
    /// UNSUBSCRIBE named an id the session does not hold.
    UnknownId,
}

impl SubError {
    /// The text for the ERROR frame's `message` header.
    pub const fn message(self) -> &'static str {
        match self {
            SubError::DuplicateId => "Subscription id already in use",
            SubError::SessionFull => "Too many subscriptions for this session",
            SubError::RoutesFull => "Too many distinct destinations on this edge node",
            SubError::TooLong => "Destination or subscription id too long",
            SubError::UnknownId => "No subscription with this id",
        }
    }
}

impl core::fmt::Display for SubError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())
    }
}

/// Something the upstream writer has to send for the table to match the upstream.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// SUBSCRIBE `destination` with subscription id `id`.
    Subscribe {
        /// Route slot, to pass back to [`SubTable::action_done`].
        slot: usize,
        /// The upstream subscription id.
        id: Vec<u8, UPSTREAM_ID_LEN>,
        /// The destination.
        destination: &'a [u8],
    },
    /// UNSUBSCRIBE id `id`.
    Unsubscribe {
        /// Route slot, to pass back to [`SubTable::action_done`].
        slot: usize,
        /// The upstream subscription id.
        id: Vec<u8, UPSTREAM_ID_LEN>,
    },
}

/// Local subscriptions of `N` sessions (`PER` each) over `ROUTES` upstream routes.
#[derive(Debug)]
pub struct SubTable<const N: usize, const PER: usize, const ROUTES: usize> {
    routes: [Route; ROUTES],
    locals: [Vec<LocalSub, PER>; N],
}

impl<const N: usize, const PER: usize, const ROUTES: usize> SubTable<N, PER, ROUTES> {
    /// An empty table.
    pub const fn new() -> Self {
        SubTable {
            routes: [const {
                Route {
                    destination: Vec::new(),
                    refs: 0,
                    generation: 0,
                    state: RouteState::Free,
                }
            }; ROUTES],
            locals: [const { Vec::new() }; N],
        }
    }

    /// Adds subscription `id` on `destination` for `session`.
    pub fn subscribe(
        &mut self,
        session: usize,
        id: &[u8],
        destination: &[u8],
    ) -> Result<(), SubError> {
        const { assert!(ROUTES <= u8::MAX as usize) };
        let locals = &self.locals[session];
        if locals.iter().any(|s| s.id == id) {
            return Err(SubError::DuplicateId);
        }
        if locals.is_full() {
            return Err(SubError::SessionFull);
        }
        let id = Vec::from_slice(id).map_err(|_| SubError::TooLong)?;
        let slot = match self
            .routes
            .iter()
            .position(|r| r.state != RouteState::Free && r.destination == destination)
        {
            Some(slot) => slot,
            None => {
                let slot = self
                    .routes
                    .iter()
                    .position(|r| r.state == RouteState::Free)
                    .ok_or(SubError::RoutesFull)?;
                let route = &mut self.routes[slot];
                route.destination = Vec::from_slice(destination).map_err(|_| SubError::TooLong)?;
                route.generation = route.generation.wrapping_add(1);
                route.refs = 0;
                route.state = RouteState::Wanted;
                slot
            }
        };
        let route = &mut self.routes[slot];
        route.refs += 1;
        if route.state == RouteState::Leaving {
            // The UNSUBSCRIBE never went out, so the upstream subscription still stands.
            route.state = RouteState::Active;
        }
        // Cannot fail: checked `is_full` above.
        let _ = self.locals[session].push(LocalSub {
            id,
            route: slot as u8,
        });
        Ok(())
    }

    /// Removes subscription `id` of `session`.
    pub fn unsubscribe(&mut self, session: usize, id: &[u8]) -> Result<(), SubError> {
        let locals = &mut self.locals[session];
        let pos = locals
            .iter()
            .position(|s| s.id == id)
            .ok_or(SubError::UnknownId)?;
        let sub = locals.swap_remove(pos);
        self.release(sub.route as usize);
        Ok(())
    }

    /// Removes every subscription of `session` (it closed).
    pub fn remove_session(&mut self, session: usize) {
        while let Some(sub) = self.locals[session].pop() {
            self.release(sub.route as usize);
        }
    }

    fn release(&mut self, slot: usize) {
        let route = &mut self.routes[slot];
        route.refs -= 1;
        if route.refs == 0 {
            route.state = match route.state {
                RouteState::Active => RouteState::Leaving,
                _ => RouteState::Free,
            };
        }
    }

    /// The next SUBSCRIBE/UNSUBSCRIBE the upstream needs, if any.
    pub fn next_action(&self) -> Option<Action<'_>> {
        self.routes
            .iter()
            .enumerate()
            .find_map(|(slot, r)| match r.state {
                RouteState::Wanted => Some(Action::Subscribe {
                    slot,
                    id: upstream_id(slot, r.generation),
                    destination: &r.destination,
                }),
                RouteState::Leaving => Some(Action::Unsubscribe {
                    slot,
                    id: upstream_id(slot, r.generation),
                }),
                _ => None,
            })
    }

    /// Records that the action for `slot` was written upstream.
    pub fn action_done(&mut self, slot: usize) {
        let route = &mut self.routes[slot];
        route.state = match route.state {
            RouteState::Wanted => RouteState::Active,
            RouteState::Leaving => RouteState::Free,
            other => other,
        };
    }

    /// The upstream connection was lost: it forgot every subscription, so every route
    /// with subscribers must be subscribed again and the leaving ones are simply gone.
    pub fn upstream_lost(&mut self) {
        for route in self.routes.iter_mut() {
            route.state = match route.state {
                RouteState::Active | RouteState::Wanted => RouteState::Wanted,
                RouteState::Leaving | RouteState::Free => RouteState::Free,
            };
        }
    }

    /// The route an upstream MESSAGE's `subscription` header names, if it is current.
    pub fn route_of(&self, upstream_id: &[u8]) -> Option<usize> {
        let rest = upstream_id.strip_prefix(b"edge-")?;
        let dash = rest.iter().position(|&b| b == b'-')?;
        let slot = parse_u16(&rest[..dash])? as usize;
        let generation = parse_u16(&rest[dash + 1..])?;
        let route = self.routes.get(slot)?;
        (route.state == RouteState::Active && route.generation == generation).then_some(slot)
    }

    /// The local subscriptions on route `slot`: `(session, subscription id)`.
    pub fn subscribers(&self, slot: usize) -> impl Iterator<Item = (usize, &[u8])> + '_ {
        self.locals
            .iter()
            .enumerate()
            .flat_map(move |(session, subs)| {
                subs.iter()
                    .filter(move |s| s.route as usize == slot)
                    .map(move |s| (session, s.id.as_slice()))
            })
    }

    /// The destination of route `slot`.
    pub fn destination(&self, slot: usize) -> &[u8] {
        &self.routes[slot].destination
    }

    /// Upstream subscriptions currently wanted or standing (distinct destinations).
    pub fn route_count(&self) -> usize {
        self.routes
            .iter()
            .filter(|r| matches!(r.state, RouteState::Wanted | RouteState::Active))
            .count()
    }
}

impl<const N: usize, const PER: usize, const ROUTES: usize> Default for SubTable<N, PER, ROUTES> {
    fn default() -> Self {
        Self::new()
    }
}

fn upstream_id(slot: usize, generation: u16) -> Vec<u8, UPSTREAM_ID_LEN> {
    let mut s = heapless::String::<UPSTREAM_ID_LEN>::new();
    // "edge-" + two u16 numbers + "-" is at most 17 bytes: cannot overflow.
    let _ = write!(s, "edge-{}-{}", slot, generation);
    s.into_bytes()
}

fn parse_u16(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    let mut v: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (d - b'0') as u32;
    }
    u16::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Table = SubTable<3, 2, 2>;

    fn subscribe_id(t: &Table) -> Vec<u8, UPSTREAM_ID_LEN> {
        match t.next_action() {
            Some(Action::Subscribe { id, .. }) => id,
            other => panic!("expected a SUBSCRIBE, got {:?}", other),
        }
    }

    #[test]
    fn one_upstream_subscription_per_destination() {
        let mut t = Table::new();
        t.subscribe(0, b"a", b"/topic/x").unwrap();
        t.subscribe(1, b"a", b"/topic/x").unwrap();
        let id = subscribe_id(&t);
        let Some(Action::Subscribe {
            slot, destination, ..
        }) = t.next_action()
        else {
            unreachable!()
        };
        assert_eq!(destination, b"/topic/x");
        t.action_done(slot);
        assert_eq!(t.next_action(), None);
        let route = t.route_of(&id).unwrap();
        let subs: std::vec::Vec<_> = t.subscribers(route).collect();
        assert_eq!(subs, [(0, &b"a"[..]), (1, &b"a"[..])]);

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
        assert_eq!(t.route_of(&id), None);
    }

    #[test]
    fn errors_are_reported_not_panics() {
        let mut t = Table::new();
        t.subscribe(0, b"a", b"/topic/x").unwrap();
        assert_eq!(
            t.subscribe(0, b"a", b"/topic/y"),
            Err(SubError::DuplicateId)
        );
        t.subscribe(0, b"b", b"/topic/y").unwrap();
        assert_eq!(
            t.subscribe(0, b"c", b"/topic/x"),
            Err(SubError::SessionFull)
        );
        assert_eq!(t.subscribe(1, b"c", b"/topic/z"), Err(SubError::RoutesFull));
        assert_eq!(t.unsubscribe(1, b"zz"), Err(SubError::UnknownId));
        assert_eq!(
            t.subscribe(1, &[b'i'; 40], b"/topic/x"),
            Err(SubError::TooLong)
        );
        assert_eq!(t.route_count(), 2);
    }

    #[test]
    fn reconnect_resubscribes_and_slot_reuse_changes_id() {
        let mut t = Table::new();
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
        assert_eq!(t.route_of(&old), None);
        assert!(t.route_of(&new).is_some());
    }

    #[test]
    fn resubscribe_before_unsubscribe_was_sent_keeps_route() {
        let mut t = Table::new();
        t.subscribe(0, b"a", b"/topic/x").unwrap();
        t.action_done(0);
        t.unsubscribe(0, b"a").unwrap();
        t.subscribe(1, b"b", b"/topic/x").unwrap();
        assert_eq!(t.next_action(), None);
        assert_eq!(t.route_count(), 1);
    }
}
