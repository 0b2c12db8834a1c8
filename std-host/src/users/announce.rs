//! The announcements instances exchange about their users' sessions (Spring's user
//! registry broadcast on `/topic/simp-user-registry`), as JSON bodies of SENDs to
//! [`DESTINATION`] on the shared broker.
//!
//! Each instance says which sessions opened and closed ([`Announcement::Changes`], sent
//! as they happen), repeats its full list every few seconds in parts
//! ([`Announcement::Snapshot`]) so that others can expire what they stop hearing about,
//! asks the others for theirs when it (re)connects ([`Announcement::Hello`]), and says
//! [`Announcement::Gone`] when it shuts down.
//!
//! Invariant: applying an instance's announcements in the order it sent them (one
//! broker connection carries them, so they arrive in that order) leaves the receiver
//! with exactly that instance's live sessions once a snapshot's last part is in, even
//! when changes were lost while either side was disconnected.

use serde::{Deserialize, Serialize};

/// The broker destination (client-facing spelling, mapped with the relay's dialect)
/// every instance publishes its announcements to and subscribes to. Clients can
/// neither send to it nor subscribe to it by name.
pub const DESTINATION: &str = "/topic/stomp-relay.user-registry";

/// Upper bound on one snapshot part's listed bytes, far below any broker's frame limit.
pub const SNAPSHOT_PART_BYTES: usize = 32 * 1024;

/// One session of a user, as announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The user name.
    pub user: String,
    /// The session id's hex form.
    pub session: String,
}

/// One message of the registry protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Announcement {
    /// An instance (re)connected and asks every other for a snapshot now, instead of
    /// waiting for the next periodic one.
    Hello {
        /// The sender's instance id.
        instance: String,
    },
    /// Sessions opened and closed on the sender since its previous announcement.
    Changes {
        /// The sender's instance id.
        instance: String,
        /// Sessions opened.
        opened: Vec<Entry>,
        /// Ids of sessions closed.
        closed: Vec<String>,
    },
    /// One part of the sender's complete list. The part with `last` retires every
    /// session of the sender that this snapshot (`epoch`) did not list.
    Snapshot {
        /// The sender's instance id.
        instance: String,
        /// Increases with every snapshot the sender makes.
        epoch: u64,
        /// Whether this is the snapshot's final part.
        last: bool,
        /// Sessions in this part.
        sessions: Vec<Entry>,
    },
    /// The sender shuts down: none of its sessions exist any more.
    Gone {
        /// The sender's instance id.
        instance: String,
    },
}

impl Announcement {
    /// The sender's instance id.
    pub fn instance(&self) -> &str {
        match self {
            Announcement::Hello { instance }
            | Announcement::Changes { instance, .. }
            | Announcement::Snapshot { instance, .. }
            | Announcement::Gone { instance } => instance,
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("announcements always serialize")
    }

    /// Parses a JSON body.
    pub fn from_json(body: &[u8]) -> Result<Announcement, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// A snapshot of `sessions`, split into parts of at most about `part_bytes` listed
    /// bytes each (always at least one part, the last marked).
    pub fn snapshot(
        instance: &str,
        epoch: u64,
        sessions: impl IntoIterator<Item = Entry>,
        part_bytes: usize,
    ) -> Vec<Announcement> {
        let mut parts = Vec::new();
        let mut part = Vec::new();
        let mut bytes = 0;
        for e in sessions {
            // Quotes, keys and separators of one entry in JSON.
            let size = e.user.len() + e.session.len() + 24;
            if !part.is_empty() && bytes + size > part_bytes {
                parts.push(std::mem::take(&mut part));
                bytes = 0;
            }
            bytes += size;
            part.push(e);
        }
        parts.push(part);
        Announcement::snapshot_parts(instance, epoch, parts)
    }

    /// A snapshot made of these parts, in order, the last one marked.
    pub fn snapshot_parts(instance: &str, epoch: u64, parts: Vec<Vec<Entry>>) -> Vec<Announcement> {
        let n = parts.len();
        parts
            .into_iter()
            .enumerate()
            .map(|(i, sessions)| Announcement::Snapshot {
                instance: instance.to_owned(),
                epoch,
                last: i + 1 == n,
                sessions,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> Entry {
        Entry {
            user: format!("user{i}"),
            session: format!("{i:032x}"),
        }
    }

    #[test]
    fn json_round_trips() {
        let a = Announcement::Changes {
            instance: "i1".into(),
            opened: vec![entry(1)],
            closed: vec![format!("{:032x}", 2)],
        };
        let json = a.to_json();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"kind":"changes","instance":"i1","opened":[{"user":"user1","session":"00000000000000000000000000000001"}],"closed":["00000000000000000000000000000002"]}"#
        );
        assert_eq!(Announcement::from_json(&json).unwrap(), a);
        assert!(Announcement::from_json(br#"{"kind":"elect"}"#).is_err());
    }

    #[test]
    fn snapshots_split_into_bounded_parts_and_mark_the_last() {
        let parts = Announcement::snapshot("i1", 7, (0..2000).map(entry), 4096);
        assert!(parts.len() > 1);
        let mut listed = 0;
        for (i, p) in parts.iter().enumerate() {
            let Announcement::Snapshot {
                epoch,
                last,
                sessions,
                ..
            } = p
            else {
                panic!("{p:?}")
            };
            assert_eq!(*epoch, 7);
            assert_eq!(*last, i + 1 == parts.len());
            assert!(p.to_json().len() <= 4096 + 200, "part {i} too big");
            listed += sessions.len();
        }
        assert_eq!(listed, 2000);
        // An instance with no sessions still sends one (last) part, which retires
        // whatever others still believe it has.
        let empty = Announcement::snapshot("i1", 8, [], 4096);
        assert!(
            matches!(&empty[..], [Announcement::Snapshot { last: true, sessions, .. }] if sessions.is_empty())
        );
    }
}
