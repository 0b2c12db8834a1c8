//! The session's subscription table on the heap (see [`Subscriptions`]).

use stomp_relay_core::session::{AckMode, SubscriptionTable};

/// The session's subscriptions on the heap, only as many as the client holds: an idle
/// session with one short id costs a few dozen bytes instead of relay-core's inline
/// table (32 slots of the longest id, ~2 KiB). Order is insertion order. The table
/// itself has no cap: `--max-subscriptions` (auth's guard, checked right after each
/// SUBSCRIBE) is the one limit, so it can be raised, lowered or turned off.
#[derive(Default)]
pub(crate) struct Subscriptions(Vec<(Box<[u8]>, AckMode)>);

impl SubscriptionTable for Subscriptions {
    fn capacity(&self) -> usize {
        usize::MAX
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn get(&self, id: &[u8]) -> Option<(&[u8], AckMode)> {
        self.iter().find(|(s, _)| *s == id)
    }

    fn insert(&mut self, id: &[u8], ack: AckMode) -> bool {
        self.0.push((id.into(), ack));
        true
    }

    fn remove(&mut self, id: &[u8]) -> bool {
        match self.0.iter().position(|(s, _)| &**s == id) {
            Some(i) => {
                self.0.remove(i);
                if self.0.is_empty() {
                    // Back to no allocation at all once the client unsubscribed.
                    self.0 = Vec::new();
                }
                true
            }
            None => false,
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], AckMode)> + '_ {
        self.0.iter().map(|(id, ack)| (&**id, *ack))
    }
}
