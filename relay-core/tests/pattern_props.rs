//! Property tests for destination patterns and dialect mapping.
//!
//! The linear-time matcher must agree with an obviously correct (exponential)
//! recursive definition; the dialect mapping must round-trip slash-separated client
//! destinations for every dialect.

use proptest::prelude::*;
use stomp_relay_core::pattern::{self, Captures, Separator};
use stomp_relay_core::Dialect;

fn split(s: &[u8], sep: Separator) -> Vec<&[u8]> {
    s.split(|&b| b == b'/' || (sep == Separator::Dot && b == b'.'))
        .collect()
}

fn glob_ref(p: &[u8], d: &[u8]) -> bool {
    match p.split_first() {
        None => d.is_empty(),
        Some((b'*', rest)) => (0..=d.len()).any(|i| glob_ref(rest, &d[i..])),
        Some((&c, rest)) => d.first() == Some(&c) && glob_ref(rest, &d[1..]),
    }
}

fn segs_ref(p: &[&[u8]], d: &[&[u8]]) -> bool {
    match p.split_first() {
        None => d.is_empty(),
        Some((&s, rest)) if s == b"**" => (0..=d.len()).any(|i| segs_ref(rest, &d[i..])),
        Some((&s, rest)) => !d.is_empty() && glob_ref(s, d[0]) && segs_ref(rest, &d[1..]),
    }
}

fn dest() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(b"ab/.".to_vec()), 0..12)
}

fn pat() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![&b"a"[..], b"b", b"/", b".", b"*", b"/**", b"**/"]),
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn matcher_agrees_with_the_definition(p in pat(), d in dest(), dot in any::<bool>()) {
        let sep = if dot { Separator::Dot } else { Separator::Slash };
        let want = segs_ref(&split(&p, sep), &split(&d, sep));
        prop_assert_eq!(pattern::matches(&p, &d, sep), want, "{:?} vs {:?}", String::from_utf8_lossy(&p), String::from_utf8_lossy(&d));
        // Captures never change whether a brace-free pattern matches.
        let mut caps = Captures::new();
        prop_assert_eq!(pattern::capture(&p, &d, sep, &mut caps), want);
    }

    #[test]
    fn dialects_round_trip_slash_destinations(
        prefix in prop::sample::select(vec!["/sub/", "/topic/", "/queue/", "/app/sub/"]),
        segs in prop::collection::vec("[a-z0-9_-]{1,8}", 1..5),
        dialect in prop::sample::select(vec![Dialect::ActiveMq, Dialect::RabbitMq, Dialect::Artemis, Dialect::Generic]),
    ) {
        let client = format!("{}{}", prefix, segs.join("/"));
        let mut b1 = [0u8; 256];
        let mapped = dialect.to_broker(client.as_bytes(), &mut b1).unwrap();
        if matches!(dialect, Dialect::ActiveMq | Dialect::RabbitMq) && prefix != "/queue/" {
            prop_assert!(mapped.starts_with(b"/topic/"), "broadcast stays broadcast");
        }
        if dialect == Dialect::RabbitMq && mapped.starts_with(b"/topic/") {
            prop_assert!(!mapped[7..].contains(&b'/'), "no slash in a RabbitMQ routing key");
        }
        let mut b2 = [0u8; 256];
        let back = dialect.to_client(mapped, &["/sub/", "/topic/", "/queue/", "/app/sub/"], &mut b2).unwrap();
        let expected = if dialect == Dialect::RabbitMq && prefix == "/topic/" {
            // RabbitMQ topic keys cannot hold '/', so native topics come back dotted.
            format!("/topic/{}", segs.join("."))
        } else {
            client.clone()
        };
        prop_assert_eq!(back, expected.as_bytes());
    }

    /// Issue 13.4: on a mapped prefix, distinct client destinations never meet on the
    /// broker (`/sub/x/a.b` and `/sub/x/a/b` stay apart, as in simple mode), and the
    /// way back gives the client's own destination, dots and percent signs included.
    #[test]
    fn mapped_destinations_are_injective_and_round_trip(
        prefix in prop::sample::select(vec!["/sub/", "/app/sub/"]),
        a in prop::collection::vec("[a-z0-9_.%-]{1,6}", 1..4),
        b in prop::collection::vec("[a-z0-9_.%-]{1,6}", 1..4),
        dialect in prop::sample::select(vec![Dialect::ActiveMq, Dialect::RabbitMq]),
    ) {
        let prefixes = ["/sub/", "/topic/", "/queue/", "/app/sub/"];
        let (da, db) = (format!("{prefix}{}", a.join("/")), format!("{prefix}{}", b.join("/")));
        let (mut ba, mut bb) = ([0u8; 256], [0u8; 256]);
        let ma = dialect.to_broker(da.as_bytes(), &mut ba).unwrap();
        let mb = dialect.to_broker(db.as_bytes(), &mut bb).unwrap();
        prop_assert_eq!(ma == mb, da == db, "{} and {} -> {:?}", da, db, String::from_utf8_lossy(ma));
        let mut back = [0u8; 256];
        let back = dialect.to_client(ma, &prefixes, &mut back).unwrap();
        prop_assert_eq!(back, da.as_bytes());
    }

}
