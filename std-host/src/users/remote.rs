//! The sessions other instances announced: which user has which session where, kept
//! from their [`Announcement`]s and expired when an instance stops refreshing them.
//!
//! Pure (time comes in as `now`), so the protocol's rules are unit-tested here.
//!
//! Invariants: `by_user` indexes exactly the sessions held under `instances`; a session
//! not refreshed (announced or listed in a snapshot) for `ttl` is gone, so an instance
//! that crashed without its [`Announcement::Gone`] costs others at most `ttl` of
//! messages sent to queues nobody reads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::announce::{Announcement, Entry};
use crate::outbound::SessionId;

#[derive(Debug)]
struct Seen {
    user: String,
    /// The sender's snapshot epoch when this session was last listed or announced.
    epoch: u64,
    at: Instant,
}

#[derive(Debug, Default)]
struct Instance {
    sessions: HashMap<SessionId, Seen>,
    /// The newest snapshot epoch seen from the instance.
    epoch: u64,
}

/// What applying an announcement asks of the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing more.
    Done,
    /// The sender wants this instance's snapshot now.
    SendSnapshot,
}

/// One user as the whole cluster knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserSpread {
    /// Sessions of the user on other instances.
    pub sessions: usize,
    /// Other instances the user has sessions on.
    pub instances: HashSet<String>,
}

/// Sessions of other instances, by instance and by user.
#[derive(Debug)]
pub struct RemoteUsers {
    instances: HashMap<String, Instance>,
    by_user: HashMap<String, HashSet<SessionId>>,
    ttl: Duration,
}

impl RemoteUsers {
    /// An empty table whose sessions expire `ttl` after they were last refreshed.
    pub fn new(ttl: Duration) -> RemoteUsers {
        RemoteUsers {
            instances: HashMap::new(),
            by_user: HashMap::new(),
            ttl,
        }
    }

    /// Applies one announcement received at `now`.
    pub fn apply(&mut self, a: Announcement, now: Instant) -> Applied {
        match a {
            // The sender's own snapshot follows its hello and retires what went stale.
            Announcement::Hello { .. } => Applied::SendSnapshot,
            Announcement::Changes {
                instance,
                opened,
                closed,
            } => {
                let epoch = self.instances.get(&instance).map_or(0, |i| i.epoch);
                for e in opened {
                    self.refresh(&instance, e, epoch, now);
                }
                for s in closed {
                    if let Some(id) = SessionId::parse_hex(s.as_bytes()) {
                        self.remove(&instance, id);
                    }
                }
                Applied::Done
            }
            Announcement::Snapshot {
                instance,
                epoch,
                last,
                sessions,
            } => {
                let inst = self.instances.entry(instance.clone()).or_default();
                inst.epoch = inst.epoch.max(epoch);
                for e in sessions {
                    self.refresh(&instance, e, epoch, now);
                }
                if last {
                    let stale: Vec<SessionId> = self.instances[&instance]
                        .sessions
                        .iter()
                        .filter(|(_, s)| s.epoch < epoch)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in stale {
                        self.remove(&instance, id);
                    }
                }
                Applied::Done
            }
            Announcement::Gone { instance } => {
                self.drop_instance(&instance);
                Applied::Done
            }
        }
    }

    /// Forgets sessions not refreshed for the table's `ttl` before `now`.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        let stale: Vec<(String, SessionId)> = self
            .instances
            .iter()
            .flat_map(|(name, inst)| {
                inst.sessions
                    .iter()
                    .filter(move |(_, s)| now.saturating_duration_since(s.at) > ttl)
                    .map(move |(id, _)| (name.clone(), *id))
            })
            .collect();
        for (instance, id) in stale {
            self.remove(&instance, id);
        }
        self.instances.retain(|_, i| !i.sessions.is_empty());
    }

    /// The sessions `user` has on other instances.
    pub fn sessions(&self, user: &str) -> impl Iterator<Item = SessionId> + '_ {
        self.by_user.get(user).into_iter().flatten().copied()
    }

    /// Other instances with at least one session.
    pub fn instances(&self) -> usize {
        self.instances
            .values()
            .filter(|i| !i.sessions.is_empty())
            .count()
    }

    /// Every user with sessions elsewhere, and where.
    pub fn users(&self) -> BTreeMap<String, UserSpread> {
        let mut out: BTreeMap<String, UserSpread> = BTreeMap::new();
        for (name, inst) in &self.instances {
            for s in inst.sessions.values() {
                let u = out.entry(s.user.clone()).or_default();
                u.sessions += 1;
                u.instances.insert(name.clone());
            }
        }
        out
    }

    fn refresh(&mut self, instance: &str, e: Entry, epoch: u64, now: Instant) {
        let Some(id) = SessionId::parse_hex(e.session.as_bytes()) else {
            return;
        };
        let inst = self.instances.entry(instance.to_owned()).or_default();
        match inst.sessions.get_mut(&id) {
            Some(s) if s.user == e.user => {
                s.epoch = s.epoch.max(epoch);
                s.at = now;
                return;
            }
            Some(_) => {
                // The same id under another name: the newer announcement wins.
                self.remove(instance, id);
            }
            None => {}
        }
        self.by_user.entry(e.user.clone()).or_default().insert(id);
        self.instances
            .entry(instance.to_owned())
            .or_default()
            .sessions
            .insert(
                id,
                Seen {
                    user: e.user,
                    epoch,
                    at: now,
                },
            );
    }

    fn remove(&mut self, instance: &str, id: SessionId) {
        let Some(s) = self
            .instances
            .get_mut(instance)
            .and_then(|i| i.sessions.remove(&id))
        else {
            return;
        };
        if let Some(set) = self.by_user.get_mut(&s.user) {
            set.remove(&id);
            if set.is_empty() {
                self.by_user.remove(&s.user);
            }
        }
    }

    fn drop_instance(&mut self, instance: &str) {
        let ids: Vec<SessionId> = self
            .instances
            .get(instance)
            .map(|i| i.sessions.keys().copied().collect())
            .unwrap_or_default();
        for id in ids {
            self.remove(instance, id);
        }
        self.instances.remove(instance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(user: &str, n: u128) -> Entry {
        Entry {
            user: user.into(),
            session: SessionId::new(n).to_string(),
        }
    }

    fn sessions(t: &RemoteUsers, user: &str) -> Vec<u128> {
        let mut v: Vec<u128> = t.sessions(user).map(SessionId::get).collect();
        v.sort();
        v
    }

    fn changes(instance: &str, opened: Vec<Entry>, closed: &[u128]) -> Announcement {
        Announcement::Changes {
            instance: instance.into(),
            opened,
            closed: closed
                .iter()
                .map(|n| SessionId::new(*n).to_string())
                .collect(),
        }
    }

    #[test]
    fn changes_open_and_close_sessions_per_user() {
        let now = Instant::now();
        let mut t = RemoteUsers::new(Duration::from_secs(30));
        t.apply(changes("b", vec![e("bob", 1), e("bob", 2)], &[]), now);
        t.apply(changes("c", vec![e("bob", 3), e("carol", 4)], &[]), now);
        assert_eq!(sessions(&t, "bob"), [1, 2, 3]);
        assert_eq!(t.users()["bob"].instances.len(), 2);
        assert_eq!(t.instances(), 2);
        t.apply(changes("b", vec![], &[2]), now);
        assert_eq!(sessions(&t, "bob"), [1, 3]);
        // A close naming another instance's session does not touch it.
        t.apply(changes("b", vec![], &[3]), now);
        assert_eq!(sessions(&t, "bob"), [1, 3]);
        t.apply(changes("c", vec![], &[4]), now);
        assert!(sessions(&t, "carol").is_empty());
        assert!(!t.users().contains_key("carol"));
    }

    #[test]
    fn a_snapshots_last_part_retires_what_it_did_not_list() {
        let now = Instant::now();
        let mut t = RemoteUsers::new(Duration::from_secs(30));
        t.apply(changes("b", vec![e("bob", 1), e("bob", 2)], &[]), now);
        // The close of 2 was lost (the broker was down); the next snapshot lists only 1
        // and 5, in two parts.
        let parts =
            Announcement::snapshot_parts("b", 1, vec![vec![e("bob", 1)], vec![e("eve", 5)]]);
        let mut parts = parts.into_iter();
        t.apply(parts.next().unwrap(), now);
        assert_eq!(sessions(&t, "bob"), [1, 2], "retired only by the last part");
        // A session opened between the parts survives the last part.
        t.apply(changes("b", vec![e("bob", 6)], &[]), now);
        t.apply(parts.next().unwrap(), now);
        assert_eq!(sessions(&t, "bob"), [1, 6]);
        assert_eq!(sessions(&t, "eve"), [5]);
    }

    #[test]
    fn gone_forgets_the_instance_and_hello_wants_a_snapshot() {
        let now = Instant::now();
        let mut t = RemoteUsers::new(Duration::from_secs(30));
        t.apply(changes("b", vec![e("bob", 1)], &[]), now);
        t.apply(changes("c", vec![e("bob", 2)], &[]), now);
        assert_eq!(
            t.apply(
                Announcement::Gone {
                    instance: "b".into()
                },
                now
            ),
            Applied::Done
        );
        assert_eq!(sessions(&t, "bob"), [2]);
        assert_eq!(
            t.apply(
                Announcement::Hello {
                    instance: "c".into()
                },
                now
            ),
            Applied::SendSnapshot
        );
        assert_eq!(sessions(&t, "bob"), [2]);
        assert_eq!(t.instances(), 1);
    }

    #[test]
    fn sessions_not_refreshed_within_the_ttl_expire() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(30);
        let mut t = RemoteUsers::new(ttl);
        t.apply(changes("b", vec![e("bob", 1), e("bob", 2)], &[]), t0);
        // A snapshot at 20 s refreshes 1 only (2 stays from its epoch-0 announcement
        // because this snapshot's last part is not in yet).
        let mut parts =
            Announcement::snapshot_parts("b", 1, vec![vec![e("bob", 1)], vec![]]).into_iter();
        t.apply(parts.next().unwrap(), t0 + Duration::from_secs(20));
        t.expire(t0 + Duration::from_secs(31));
        assert_eq!(sessions(&t, "bob"), [1]);
        t.expire(t0 + Duration::from_secs(51));
        assert!(sessions(&t, "bob").is_empty());
        assert_eq!(t.instances(), 0);
    }

    #[test]
    fn bad_session_ids_are_ignored() {
        let now = Instant::now();
        let mut t = RemoteUsers::new(Duration::from_secs(30));
        let bad = Entry {
            user: "bob".into(),
            session: "not-hex".into(),
        };
        t.apply(changes("b", vec![bad, e("bob", 1)], &[]), now);
        assert_eq!(sessions(&t, "bob"), [1]);
    }
}
