//! relay-core's fan-out table on the heap, for the shared relay: as many routes and
//! subscriptions as the clients hold, a destination index so a SUBSCRIBE finds its
//! route without looking at every other, and each route's subscribers in the order they
//! came (queue destinations go round robin over them).
//!
//! Invariants: `index` holds exactly the routes that are not free; a free slot is on
//! `free` exactly once; a route's `subscribers` and the sessions' `by_session` entries
//! name the same subscriptions.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use stomp_relay_core::fanout::{FanoutError, FanoutStore, RouteMeta};

use crate::outbound::SessionId;

/// One client subscription on a route.
pub(crate) struct Local {
    pub(crate) session: SessionId,
    /// The client's subscription id, shared by every delivery to it.
    pub(crate) subscription: Arc<str>,
}

#[derive(Default)]
pub(crate) struct HeapStore {
    metas: Vec<RouteMeta>,
    destinations: Vec<Vec<u8>>,
    subscribers: Vec<Vec<Local>>,
    /// Where the next queue delivery of each route starts looking.
    next: Vec<Cell<usize>>,
    free: Vec<usize>,
    index: HashMap<Vec<u8>, usize>,
    /// Session -> its subscription ids -> route slot.
    by_session: HashMap<SessionId, HashMap<Box<[u8]>, usize>>,
}

impl HeapStore {
    /// The subscriptions on route `slot`, oldest first.
    pub(crate) fn subscribers(&self, slot: usize) -> &[Local] {
        self.subscribers.get(slot).map_or(&[], Vec::as_slice)
    }

    /// Round robin over route `slot`'s subscribers: the first, starting after the
    /// previous pick, that `take` accepts (a session going away refuses).
    pub(crate) fn pick(&self, slot: usize, mut take: impl FnMut(&Local) -> bool) {
        let locals = self.subscribers(slot);
        let Some(next) = self.next.get(slot) else {
            return;
        };
        for k in 0..locals.len() {
            let i = (next.get() + k) % locals.len();
            if take(&locals[i]) {
                next.set(i + 1);
                return;
            }
        }
    }

    fn unlink(&mut self, session: SessionId, id: &[u8], slot: usize) {
        let locals = &mut self.subscribers[slot];
        if let Some(i) = locals
            .iter()
            .position(|l| l.session == session && l.subscription.as_bytes() == id)
        {
            locals.remove(i);
        }
    }
}

impl FanoutStore for HeapStore {
    type Session = SessionId;

    fn slots(&self) -> usize {
        self.metas.len()
    }

    fn meta(&self, slot: usize) -> &RouteMeta {
        &self.metas[slot]
    }

    fn meta_mut(&mut self, slot: usize) -> &mut RouteMeta {
        &mut self.metas[slot]
    }

    fn destination(&self, slot: usize) -> &[u8] {
        &self.destinations[slot]
    }

    fn find(&self, destination: &[u8]) -> Option<usize> {
        self.index.get(destination).copied()
    }

    fn claim(&mut self, destination: &[u8]) -> Result<usize, FanoutError> {
        // Upstream ids carry the slot as a u16.
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if self.metas.len() <= usize::from(u16::MAX) => {
                self.metas.push(RouteMeta::FREE);
                self.destinations.push(Vec::new());
                self.subscribers.push(Vec::new());
                self.next.push(Cell::new(0));
                self.metas.len() - 1
            }
            None => return Err(FanoutError::RoutesFull),
        };
        self.destinations[slot] = destination.to_vec();
        self.index.insert(destination.to_vec(), slot);
        Ok(slot)
    }

    fn released(&mut self, slot: usize) {
        self.index.remove(&self.destinations[slot]);
        self.destinations[slot] = Vec::new();
        self.subscribers[slot] = Vec::new();
        self.next[slot].set(0);
        self.free.push(slot);
    }

    fn add_local(&mut self, session: SessionId, id: &[u8], slot: usize) -> Result<(), FanoutError> {
        let ids = self.by_session.entry(session).or_default();
        if ids.contains_key(id) {
            return Err(FanoutError::DuplicateId);
        }
        ids.insert(id.into(), slot);
        self.subscribers[slot].push(Local {
            session,
            subscription: String::from_utf8_lossy(id).into(),
        });
        Ok(())
    }

    fn remove_local(&mut self, session: SessionId, id: &[u8]) -> Option<usize> {
        let ids = self.by_session.get_mut(&session)?;
        let slot = ids.remove(id)?;
        if ids.is_empty() {
            self.by_session.remove(&session);
        }
        self.unlink(session, id, slot);
        Some(slot)
    }

    fn pop_local(&mut self, session: SessionId) -> Option<usize> {
        let ids = self.by_session.get_mut(&session)?;
        let id = ids.keys().next()?.clone();
        let slot = ids.remove(&id)?;
        if ids.is_empty() {
            self.by_session.remove(&session);
        }
        self.unlink(session, &id, slot);
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stomp_relay_core::fanout::{Action, Fanout};

    fn ids(t: &Fanout<HeapStore>, slot: usize) -> Vec<(SessionId, String)> {
        t.store()
            .subscribers(slot)
            .iter()
            .map(|l| (l.session, l.subscription.to_string()))
            .collect()
    }

    #[test]
    fn routes_are_found_by_index_and_slots_reused_once_free() {
        let mut t = Fanout::new(HeapStore::default(), "s");
        let a = t.subscribe(SessionId::new(1), b"x", b"/topic/a").unwrap();
        let b = t.subscribe(SessionId::new(2), b"y", b"/topic/b").unwrap();
        assert_eq!(
            t.subscribe(SessionId::new(2), b"z", b"/topic/a")
                .unwrap()
                .slot,
            a.slot
        );
        assert_eq!(
            ids(&t, a.slot),
            [
                (SessionId::new(1), "x".into()),
                (SessionId::new(2), "z".into())
            ]
        );
        assert_eq!(
            t.subscribe(SessionId::new(1), b"x", b"/topic/c"),
            Err(FanoutError::DuplicateId)
        );
        // Nothing was written upstream, so leaving frees the slots at once ...
        while t.pop_subscription(SessionId::new(2)).is_some() {}
        assert_eq!(t.unsubscribe(SessionId::new(1), b"x"), Ok(a.slot));
        assert_eq!(t.route_count(), 0);
        assert_eq!(t.subscription_count(), 0);
        // ... and a lost connection does not free them a second time.
        t.upstream_lost();
        // Three slots were made (the refused SUBSCRIBE's too) and all are free again:
        // four new destinations take those three, each once, and one more.
        let slots: Vec<usize> = ["/topic/c", "/topic/d", "/topic/e", "/topic/f"]
            .iter()
            .map(|d| {
                t.subscribe(SessionId::new(3), d.as_bytes(), d.as_bytes())
                    .unwrap()
                    .slot
            })
            .collect();
        let mut distinct = slots.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct, [0, 1, 2, 3]);
        assert!([a.slot, b.slot].iter().all(|s| slots.contains(s)));
        let c = t.subscribe(SessionId::new(4), b"q", b"/topic/c").unwrap();
        assert_eq!(c.slot, slots[0]);
        let Some(Action::Subscribe { destination, .. }) = t.action(c.slot) else {
            panic!("route needs its SUBSCRIBE");
        };
        assert_eq!(destination, b"/topic/c");
    }

    #[test]
    fn queue_deliveries_go_round_robin_and_skip_refusals() {
        let mut t = Fanout::new(HeapStore::default(), "s");
        let slot = t
            .subscribe(SessionId::new(1), b"a", b"/queue/w")
            .unwrap()
            .slot;
        t.subscribe(SessionId::new(2), b"a", b"/queue/w").unwrap();
        t.subscribe(SessionId::new(3), b"a", b"/queue/w").unwrap();
        let mut got = Vec::new();
        for _ in 0..4 {
            t.store().pick(slot, |l| {
                got.push(l.session);
                true
            });
        }
        assert_eq!(got, [1, 2, 3, 1].map(SessionId::new));
        got.clear();
        // Session 2 is going away: its turn passes to 3.
        t.store().pick(slot, |l| {
            got.push(l.session);
            l.session != SessionId::new(2)
        });
        assert_eq!(got, [2, 3].map(SessionId::new));
    }
}
