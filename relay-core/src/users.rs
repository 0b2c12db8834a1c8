//! Which sessions belong to which authenticated user, for user destinations.
//!
//! A SEND to `/user/bob/queue/x` reaches every session of `bob` (see
//! [`crate::router::Router::user_send`] and [`crate::router::Router::user_target`]);
//! this registry answers "which sessions are bob's". [`UserRegistry`] is the
//! fixed-capacity, allocation-free version (`N` sessions, names up to
//! [`crate::session::USER_MAX`] bytes) for the edge node; the std server may keep a
//! map instead. Invariant: a session appears at most once.

use crate::broker::StoreError;
use crate::cursor::Bytes;
use crate::session::{SessionId, USER_MAX};

#[derive(Clone, Copy)]
struct Entry {
    session: SessionId,
    user: Bytes<USER_MAX>,
}

/// User name -> sessions, for `N` sessions.
pub struct UserRegistry<const N: usize> {
    entries: [Option<Entry>; N],
}

impl<const N: usize> Default for UserRegistry<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> UserRegistry<N> {
    /// An empty registry.
    pub const fn new() -> Self {
        UserRegistry { entries: [None; N] }
    }

    /// Records that `session` belongs to `user` (replacing an earlier user of it).
    pub fn insert(&mut self, session: SessionId, user: &[u8]) -> Result<(), StoreError> {
        let mut name = Bytes::EMPTY;
        name.set_plain(user)
            .ok_or(StoreError::UserTooLong(USER_MAX))?;
        self.remove(session);
        let slot = self
            .entries
            .iter_mut()
            .find(|e| e.is_none())
            .ok_or(StoreError::Full(N))?;
        *slot = Some(Entry {
            session,
            user: name,
        });
        Ok(())
    }

    /// Forgets `session` (it closed); whether it was known.
    pub fn remove(&mut self, session: SessionId) -> bool {
        for slot in &mut self.entries {
            if slot.as_ref().is_some_and(|e| e.session == session) {
                *slot = None;
                return true;
            }
        }
        false
    }

    /// The sessions of `user`.
    pub fn sessions<'a>(&'a self, user: &'a [u8]) -> impl Iterator<Item = SessionId> + 'a {
        self.entries
            .iter()
            .flatten()
            .filter(move |e| e.user.get() == user)
            .map(|e| e.session)
    }

    /// The user of `session`, if registered.
    pub fn user(&self, session: SessionId) -> Option<&[u8]> {
        self.entries
            .iter()
            .flatten()
            .find(|e| e.session == session)
            .map(|e| e.user.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{Destination, Router, RouterConfig};
    use std::vec::Vec;

    #[test]
    fn a_send_to_a_user_reaches_each_of_their_sessions() {
        let mut users = UserRegistry::<4>::new();
        users.insert(SessionId(1), b"bob").unwrap();
        users.insert(SessionId(2), b"alice").unwrap();
        users.insert(SessionId(3), b"bob").unwrap();
        let router = Router::new(RouterConfig::default());
        let Destination::User(rest) = router.classify(b"/user/bob/queue/reply").unwrap() else {
            panic!()
        };
        let (user, target) = router.user_send(rest).unwrap();
        let mut resolved = Vec::new();
        for s in users.sessions(user) {
            let mut out = [0u8; 64];
            resolved.push(router.user_target(target, s, &mut out).unwrap().to_vec());
        }
        assert_eq!(
            resolved,
            [
                b"/queue/reply-user1".to_vec(),
                b"/queue/reply-user3".to_vec()
            ]
        );
        assert_eq!(users.user(SessionId(2)), Some(&b"alice"[..]));
    }

    #[test]
    fn sessions_appear_once_and_leave() {
        let mut users = UserRegistry::<2>::new();
        users.insert(SessionId(1), b"bob").unwrap();
        users.insert(SessionId(1), b"carol").unwrap();
        assert_eq!(users.sessions(b"bob").count(), 0);
        assert_eq!(users.sessions(b"carol").count(), 1);
        users.insert(SessionId(2), b"carol").unwrap();
        assert_eq!(
            users.insert(SessionId(3), b"dave"),
            Err(StoreError::Full(2))
        );
        assert!(users.remove(SessionId(1)));
        assert!(!users.remove(SessionId(1)));
        assert_eq!(users.sessions(b"carol").collect::<Vec<_>>(), [SessionId(2)]);
        assert_eq!(
            users.insert(SessionId(4), &[b'x'; USER_MAX + 1]),
            Err(StoreError::UserTooLong(USER_MAX))
        );
    }
}
