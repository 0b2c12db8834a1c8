//! The user registry connection of relay mode: how instances sharing a broker learn
//! each other's users, so a SEND to `/user/{name}/...` on one instance reaches the
//! user's sessions on all of them (Spring's `UserRegistryMessageHandler` and
//! `MultiServerUserRegistry`, over the broker instead of a second channel).
//!
//! One more supervised upstream connection per instance (the `user-registry`
//! connection, with the system credentials) subscribes to
//! [`announce::DESTINATION`]. On every (re)connect it says hello, which makes every
//! other instance send its snapshot at once, and sends its own snapshot. A task then
//! announces local session changes as they happen (coalesced while it is busy), a
//! snapshot every [`SNAPSHOT_EVERY`] and whenever an instance says hello, and expires
//! other instances' sessions not refreshed for [`EXPIRE_AFTER`]. At shutdown the
//! instance says it is gone.
//!
//! Why a connection of its own: per-session mode has no shared subscriber, and in
//! shared mode the registry's traffic must not wait behind client frames held while
//! subscriptions are confirmed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stomp_relay_codec::Command;

use super::conn::{Target, Upstream};
use super::mapping;
use super::system::{self, Link, Supervised};
use super::RelayOptions;
use crate::frame::OwnedFrame;
use crate::users::announce::{self, Announcement};
use crate::users::Users;

/// How often each instance repeats its complete list.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);
/// Other instances' sessions not refreshed for this long are forgotten (three missed
/// snapshots: an instance that crashed without saying it is gone).
pub const EXPIRE_AFTER: Duration = Duration::from_secs(30);

/// A running user registry connection; [`Registry::stop`] ends it.
pub struct Registry {
    users: Arc<Users>,
    link: Arc<RegistryLink>,
    sup: Arc<Supervised>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct RegistryLink {
    users: Arc<Users>,
    opts: RelayOptions,
}

impl RegistryLink {
    fn frame(&self, a: &Announcement) -> OwnedFrame {
        let mut f = OwnedFrame::new(Command::Send)
            .with_header("destination", announce::DESTINATION)
            .with_header("content-type", "application/json");
        f.body = a.to_json().into();
        mapping::own(self.opts.dialect.get(), &mut f);
        f
    }
}

impl Link for RegistryLink {
    fn frame(&self, frame: OwnedFrame) {
        match frame.command {
            Command::Message => match Announcement::from_json(&frame.body) {
                Ok(a) => self.users.receive(a, Instant::now()),
                Err(e) => {
                    tracing::warn!(error = %e, "relay: unreadable user registry announcement ignored")
                }
            },
            Command::Error => {
                let why = frame.header_str("message").unwrap_or_default();
                tracing::warn!(message = %why, "relay: broker ERROR on the user registry connection");
            }
            _ => {}
        }
    }

    fn up(&self, upstream: &Upstream) {
        let mut sub = OwnedFrame::new(Command::Subscribe)
            .with_header("id", "user-registry")
            .with_header("destination", announce::DESTINATION)
            .with_header("ack", "auto");
        mapping::own(self.opts.dialect.get(), &mut sub);
        // The hello goes first: the others answer with their snapshots, and our own
        // snapshot after it retires whatever they still held from before an outage.
        let frames = std::iter::once(sub)
            .chain(std::iter::once(self.frame(&self.users.hello())))
            .chain(self.users.snapshot().into_iter().map(|a| self.frame(&a)));
        for f in frames {
            if upstream.send(f).is_err() {
                return;
            }
        }
    }

    fn down(&self) {}

    fn reports_outages(&self) -> bool {
        false
    }
}

impl Registry {
    /// Starts the registry connection and its announcing task; `users` starts tracking
    /// other instances.
    pub fn start(opts: &RelayOptions, target: Target, users: Arc<Users>) -> Arc<Registry> {
        users.enable_cluster(EXPIRE_AFTER);
        let settings = opts.settings(&opts.system_login, &opts.system_passcode, true);
        let link = Arc::new(RegistryLink {
            users: users.clone(),
            opts: opts.clone(),
        });
        let sup = system::supervise("user-registry", Arc::new(target), settings, link.clone());
        let task = tokio::spawn(announce_loop(users.clone(), sup.clone(), link.clone()));
        Arc::new(Registry {
            users,
            link,
            sup,
            task: Mutex::new(Some(task)),
        })
    }

    /// Says this instance is gone, then closes the connection. The caller bounds the wait.
    pub async fn stop(&self) {
        let task = self.task.lock().expect("poisoned").take();
        if let Some(t) = task {
            t.abort();
        }
        // The DISCONNECT that stop sends goes after it.
        let _ = self.sup.send(self.link.frame(&self.users.gone()));
        self.sup.stop().await;
    }
}

async fn announce_loop(users: Arc<Users>, sup: Arc<Supervised>, link: Arc<RegistryLink>) {
    let mut tick = tokio::time::interval(SNAPSHOT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the connection's up hook already sent a snapshot.
    tick.tick().await;
    loop {
        let snapshot = tokio::select! {
            () = users.changed() => users.take_snapshot_due(),
            _ = tick.tick() => {
                users.expire(Instant::now());
                true
            }
        };
        // Changes go before a snapshot taken after them; a change lost while the broker
        // is down is corrected by the snapshot the reconnect sends.
        if let Some(c) = users.take_changes() {
            let _ = sup.send(link.frame(&c));
        }
        if snapshot {
            for part in users.snapshot() {
                if sup.send(link.frame(&part)).is_err() {
                    break;
                }
            }
        }
    }
}
