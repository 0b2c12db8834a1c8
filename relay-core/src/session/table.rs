//! The per-session subscription table: ids unique within a session, at most
//! `capacity()` of them, each with its ack mode. [`InlineTable`] keeps them inline
//! (no allocation); a host with an allocator may supply its own [`SubscriptionTable`].

use crate::cursor::Bytes;

use super::SUB_ID_MAX;

/// A subscription's acknowledgement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AckMode {
    /// `auto` (the default): messages count as acknowledged when sent.
    #[default]
    Auto,
    /// `client`: cumulative ACK.
    Client,
    /// `client-individual`: per-message ACK.
    ClientIndividual,
}

impl AckMode {
    /// Parses an `ack` header value.
    pub fn parse(v: &[u8]) -> Option<AckMode> {
        match v {
            b"auto" => Some(AckMode::Auto),
            b"client" => Some(AckMode::Client),
            b"client-individual" => Some(AckMode::ClientIndividual),
            _ => None,
        }
    }

    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }
}

#[derive(Clone, Copy)]
struct Subscription {
    id: Bytes<SUB_ID_MAX>,
    ack: AckMode,
}

/// Where a [`Session`](super::Session) keeps its subscriptions: ids (at most [`SUB_ID_MAX`] bytes,
/// unique, the session checks before inserting) and their ack modes.
///
/// The default, [`InlineTable`], is a fixed array inside the session (no allocation,
/// what no_std hosts use). A host with an allocator can supply a table that only
/// holds what the client subscribed, so an idle session with one short subscription
/// id does not carry room for `SUBS` ids of the maximum length.
pub trait SubscriptionTable {
    /// Most subscriptions held; a SUBSCRIBE beyond it is refused
    /// ([`ProtocolError::TooManySubscriptions`](super::ProtocolError::TooManySubscriptions)).
    fn capacity(&self) -> usize;
    /// Subscriptions held.
    fn len(&self) -> usize;
    /// No subscription held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The stored id equal to `id` and its ack mode.
    fn get(&self, id: &[u8]) -> Option<(&[u8], AckMode)>;
    /// Adds a subscription whose id is not held yet; `false` when the table is full.
    fn insert(&mut self, id: &[u8], ack: AckMode) -> bool;
    /// Removes subscription `id`; `false` when there is none.
    fn remove(&mut self, id: &[u8]) -> bool;
    /// Every subscription as `(id, ack mode)`.
    fn iter(&self) -> impl Iterator<Item = (&[u8], AckMode)> + '_;
}

/// The inline subscription table: `N` slots of [`SUB_ID_MAX`] bytes in the session.
#[derive(Clone, Copy)]
pub struct InlineTable<const N: usize> {
    slots: [Option<Subscription>; N],
}

impl<const N: usize> Default for InlineTable<N> {
    fn default() -> Self {
        InlineTable { slots: [None; N] }
    }
}

impl<const N: usize> SubscriptionTable for InlineTable<N> {
    fn capacity(&self) -> usize {
        N
    }

    fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    fn get(&self, id: &[u8]) -> Option<(&[u8], AckMode)> {
        self.iter().find(|(s, _)| *s == id)
    }

    fn insert(&mut self, id: &[u8], ack: AckMode) -> bool {
        let mut sub = Subscription {
            id: Bytes::EMPTY,
            ack,
        };
        if sub.id.set_plain(id).is_none() {
            return false;
        }
        match self.slots.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(sub);
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, id: &[u8]) -> bool {
        match self
            .slots
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|s| s.id.get() == id))
        {
            Some(slot) => {
                *slot = None;
                true
            }
            None => false,
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], AckMode)> + '_ {
        self.slots.iter().flatten().map(|s| (s.id.get(), s.ack))
    }
}

/// A table for a host that keeps its sessions' subscriptions itself, in one table for
/// all of them (the edge node's [`Fanout`](crate::fanout::Fanout) over inline storage):
/// the session stores nothing, passes every SUBSCRIBE and UNSUBSCRIBE on as an event
/// (ids unescaped from the frame), and the host refuses a duplicate id, an unknown id or
/// a full table with [`Session::close_with_error`](super::Session::close_with_error).
/// Counts and look-ups ([`Session::subscription`](super::Session::subscription) and
/// the like) are then the host's to answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostTable;

impl SubscriptionTable for HostTable {
    fn capacity(&self) -> usize {
        usize::MAX
    }

    fn len(&self) -> usize {
        0
    }

    fn get(&self, _id: &[u8]) -> Option<(&[u8], AckMode)> {
        None
    }

    fn insert(&mut self, _id: &[u8], _ack: AckMode) -> bool {
        true
    }

    fn remove(&mut self, _id: &[u8]) -> bool {
        true
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], AckMode)> + '_ {
        core::iter::empty()
    }
}
