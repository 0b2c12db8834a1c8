//! Which sessions each user has, on this instance and (in relay mode) on every other
//! instance sharing the broker: what a SEND to `/user/{name}/...`, the publish API's
//! `user` field and [`Publisher::send_to_user`](crate::Publisher::send_to_user) resolve
//! against, and what `/api/stats` lists.
//!
//! - This instance's sessions are recorded as they open and close ([`Users::add`],
//!   [`Users::remove`]).
//! - In relay mode the user registry connection (`relay::user_registry`) calls
//!   [`Users::enable_cluster`], then announces this instance's changes and snapshots
//!   ([`announce`]) and applies what the others announce ([`remote`]). A SEND to a user
//!   then reaches each of the user's sessions on any instance through that session's
//!   resolved queue on the broker, as Spring's `MultiServerUserRegistry` does.
//!
//! Invariant (under the lock): every local change made after [`Users::enable_cluster`]
//! is in `pending` until [`Users::take_changes`] hands it to the announcer, in the order
//! made; snapshots and changes are idempotent, so one announced twice costs nothing.

pub mod announce;
pub mod remote;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::outbound::SessionId;
use announce::{Announcement, Entry};
use remote::{Applied, RemoteUsers};

#[derive(Debug, Default)]
struct Inner {
    local: HashMap<String, Vec<SessionId>>,
    /// `Some` once the cluster registry runs.
    remote: Option<RemoteUsers>,
    opened: Vec<Entry>,
    closed: Vec<String>,
    snapshot_due: bool,
    epoch: u64,
}

/// The user registry. Shared by every session task and the publisher.
#[derive(Debug)]
pub struct Users {
    inner: Mutex<Inner>,
    /// Woken when there is something to announce.
    changed: Notify,
    /// This instance's id in announcements (random per start).
    instance: String,
}

impl Default for Users {
    fn default() -> Self {
        Users::new()
    }
}

/// One user in [`Users::view`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// The user name.
    pub name: String,
    /// Sessions on every instance known.
    pub sessions: usize,
    /// Instances with at least one of them (this one included).
    pub instances: usize,
}

/// The users [`Users::view`] lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersView {
    /// Whether other instances' users are included (relay mode).
    pub cluster: bool,
    /// Instances known to have sessions, this one included.
    pub instances: usize,
    /// Users, by name.
    pub listed: Vec<UserRow>,
    /// Whether `listed` was cut at the limit.
    pub truncated: bool,
}

impl Users {
    /// An empty registry with a fresh random instance id.
    pub fn new() -> Users {
        let mut bytes = [0u8; 16];
        // Without OS randomness instances could collide; the time still tells most apart.
        if getrandom::fill(&mut bytes).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            bytes = t.as_nanos().to_le_bytes();
        }
        Users {
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
            instance: SessionId::new(u128::from_le_bytes(bytes)).to_string(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This instance's id in announcements.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Records that `user` opened `session` here.
    pub fn add(&self, user: &str, session: SessionId) {
        let mut m = self.lock();
        m.local.entry(user.to_string()).or_default().push(session);
        if m.remote.is_some() {
            m.opened.push(Entry {
                user: user.to_owned(),
                session: session.to_string(),
            });
            drop(m);
            self.changed.notify_one();
        }
    }

    /// Records that `session` of `user` ended here.
    pub fn remove(&self, user: &str, session: SessionId) {
        let mut m = self.lock();
        if let Some(v) = m.local.get_mut(user) {
            v.retain(|s| *s != session);
            if v.is_empty() {
                m.local.remove(user);
            }
        }
        if m.remote.is_some() {
            m.closed.push(session.to_string());
            drop(m);
            self.changed.notify_one();
        }
    }

    /// Every session of `user`: this instance's, then other instances'.
    pub fn sessions(&self, user: &str) -> Vec<SessionId> {
        let m = self.lock();
        let mut out = m.local.get(user).cloned().unwrap_or_default();
        if let Some(r) = &m.remote {
            out.extend(r.sessions(user));
        }
        out
    }

    /// Starts tracking other instances: their sessions expire `ttl` after they were
    /// last refreshed. Local changes from now on are queued for announcing.
    pub fn enable_cluster(&self, ttl: Duration) {
        let mut m = self.lock();
        if m.remote.is_none() {
            m.remote = Some(RemoteUsers::new(ttl));
        }
    }

    /// Waits until there is something to announce (changes or a snapshot asked for).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// The local changes not announced yet, taken.
    pub fn take_changes(&self) -> Option<Announcement> {
        let mut m = self.lock();
        if m.opened.is_empty() && m.closed.is_empty() {
            return None;
        }
        Some(Announcement::Changes {
            instance: self.instance.clone(),
            opened: std::mem::take(&mut m.opened),
            closed: std::mem::take(&mut m.closed),
        })
    }

    /// Whether another instance asked for a snapshot since the last one; clears it.
    pub fn take_snapshot_due(&self) -> bool {
        std::mem::take(&mut self.lock().snapshot_due)
    }

    /// A complete list of this instance's sessions under a new epoch, in parts. Changes
    /// still pending are kept: announced after it, they change nothing it did not say.
    pub fn snapshot(&self) -> Vec<Announcement> {
        let mut m = self.lock();
        m.epoch += 1;
        let entries: Vec<Entry> = m
            .local
            .iter()
            .flat_map(|(user, ids)| {
                ids.iter().map(move |id| Entry {
                    user: user.clone(),
                    session: id.to_string(),
                })
            })
            .collect();
        Announcement::snapshot(
            &self.instance,
            m.epoch,
            entries,
            announce::SNAPSHOT_PART_BYTES,
        )
    }

    /// This instance's shutdown announcement.
    pub fn gone(&self) -> Announcement {
        Announcement::Gone {
            instance: self.instance.clone(),
        }
    }

    /// This instance's (re)connect announcement.
    pub fn hello(&self) -> Announcement {
        Announcement::Hello {
            instance: self.instance.clone(),
        }
    }

    /// Applies another instance's announcement (this instance's own, which the broker
    /// sends back, are ignored).
    pub fn receive(&self, a: Announcement, now: Instant) {
        if a.instance() == self.instance {
            return;
        }
        let mut m = self.lock();
        let Some(remote) = m.remote.as_mut() else {
            return;
        };
        if remote.apply(a, now) == Applied::SendSnapshot {
            m.snapshot_due = true;
            drop(m);
            self.changed.notify_one();
        }
    }

    /// Forgets other instances' sessions not refreshed in time.
    pub fn expire(&self, now: Instant) {
        if let Some(r) = self.lock().remote.as_mut() {
            r.expire(now);
        }
    }

    /// At most `limit` users by name, with their sessions on every known instance.
    pub fn view(&self, limit: usize) -> UsersView {
        let m = self.lock();
        let mut rows: BTreeMap<String, UserRow> = m
            .local
            .iter()
            .map(|(name, ids)| {
                let row = UserRow {
                    name: name.clone(),
                    sessions: ids.len(),
                    instances: 1,
                };
                (name.clone(), row)
            })
            .collect();
        let mut instances = usize::from(!m.local.is_empty());
        if let Some(r) = &m.remote {
            instances += r.instances();
            for (name, spread) in r.users() {
                let row = rows.entry(name.clone()).or_insert(UserRow {
                    name,
                    sessions: 0,
                    instances: 0,
                });
                row.sessions += spread.sessions;
                row.instances += spread.instances.len();
            }
        }
        let truncated = rows.len() > limit;
        UsersView {
            cluster: m.remote.is_some(),
            instances,
            listed: rows.into_values().take(limit).collect(),
            truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_sessions_resolve_and_go_away() {
        let u = Users::new();
        u.add("bob", SessionId::new(1));
        u.add("bob", SessionId::new(2));
        assert_eq!(u.sessions("bob"), [SessionId::new(1), SessionId::new(2)]);
        u.remove("bob", SessionId::new(1));
        assert_eq!(u.sessions("bob"), [SessionId::new(2)]);
        // Without the cluster nothing is queued for announcing.
        assert_eq!(u.take_changes(), None);
        assert!(!u.view(10).cluster);
    }

    /// Two registries wired to each other as the broker would: each learns the other's
    /// sessions from changes and snapshots, and ignores its own echo.
    #[test]
    fn two_instances_learn_each_others_users() {
        let now = Instant::now();
        let (a, b) = (Users::new(), Users::new());
        for u in [&a, &b] {
            u.enable_cluster(Duration::from_secs(30));
        }
        b.add("bob", SessionId::new(7));
        let announced = b.take_changes().expect("bob's session is announced");
        b.receive(announced.clone(), now);
        a.receive(announced, now);
        assert_eq!(a.sessions("bob"), [SessionId::new(7)]);
        assert_eq!(b.sessions("bob"), [SessionId::new(7)], "own echo ignored");
        a.add("bob", SessionId::new(8));
        let view = a.view(10);
        assert!(view.cluster);
        assert_eq!(view.instances, 2);
        assert_eq!(
            view.listed,
            [UserRow {
                name: "bob".into(),
                sessions: 2,
                instances: 2
            }]
        );

        // A hello asks for a snapshot; the snapshot refreshes what the other holds.
        a.receive(b.hello(), now);
        assert!(a.take_snapshot_due());
        assert!(!a.take_snapshot_due());
        b.remove("bob", SessionId::new(7));
        let _lost = b.take_changes();
        for part in b.snapshot() {
            a.receive(part, now);
        }
        assert_eq!(a.sessions("bob"), [SessionId::new(8)]);
        a.receive(b.gone(), now);
        assert_eq!(a.view(10).instances, 1);
    }
}
