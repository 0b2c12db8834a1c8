//! Property tests for the relay state machines and the simple broker, driven by
//! random event sequences.
//!
//! - [`Upstream`]: never asks for a second transport while one is open; transmits
//!   nothing but CONNECT before CONNECTED; availability events alternate sensibly;
//!   every due deadline is consumed by `handle_timeout` (no busy loop); no panic.
//! - [`Fanout`]: the upstream, as the SUBSCRIBE/UNSUBSCRIBE frames written to it
//!   describe it, converges to exactly one subscription per destination with local
//!   subscribers, whatever the order of subscribes, session ends and lost connections,
//!   and MESSAGEs for it reach exactly those subscribers.
//! - [`SimpleBroker`]: topics reach every matching subscriber once, queues exactly one,
//!   message ids never repeat.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use stomp_relay_core::broker::{FixedStore, SimpleBroker};
use stomp_relay_core::codec::{Command, Frame, Header};
use stomp_relay_core::fanout::{Action, Fanout, InlineStore};
use stomp_relay_core::session::SessionId;
use stomp_relay_core::upstream::{Backoff, Credentials, Upstream, UpstreamConfig, UpstreamEvent};
use stomp_relay_core::Instant;

#[derive(Debug, Clone)]
enum Ev {
    Advance(u64),
    TransportUp,
    TransportDown,
    Connected(&'static str),
    Error,
    Message,
    Receipt,
    Heartbeat,
    Disconnect,
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        3 => (0u64..70_000).prop_map(Ev::Advance),
        2 => Just(Ev::TransportUp),
        1 => Just(Ev::TransportDown),
        2 => prop::sample::select(vec!["1.2", "1.1", "1.0", "9.9"]).prop_map(Ev::Connected),
        1 => Just(Ev::Error),
        1 => Just(Ev::Message),
        1 => Just(Ev::Receipt),
        1 => Just(Ev::Heartbeat),
        1 => Just(Ev::Disconnect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn upstream_invariants(
        evs in prop::collection::vec(ev(), 1..60),
        reconnect in any::<bool>(),
        addresses in 1usize..4,
        seed in any::<u64>(),
    ) {
        let creds = Credentials { login: Some("l"), passcode: Some("p"), virtual_host: None, client_id: None };
        let mut u = Upstream::new(
            UpstreamConfig {
                reconnect: reconnect.then(Backoff::default),
                addresses,
                jitter_seed: seed,
                ..UpstreamConfig::default()
            },
            Instant::ZERO,
        );
        let mut now = 0u64;
        let mut transport_open = false;
        let mut connected_seen = false; // CONNECTED on the current transport
        let mut available = false;
        let mut out = [0u8; 512];
        for e in &evs {
            let t = Instant::from_millis(now);
            match e {
                Ev::Advance(ms) => {
                    now += ms;
                    let t = Instant::from_millis(now);
                    while let Some(d) = u.poll_timeout() {
                        if d > t { break; }
                        u.handle_timeout(d);
                        if let Some(addr) = u.poll_connect(d) {
                            prop_assert!(!transport_open, "second transport requested");
                            prop_assert!(addr < addresses);
                            transport_open = true;
                            connected_seen = false;
                        }
                        let after = u.poll_timeout();
                        prop_assert!(after.is_none_or(|a| a > d), "deadline {:?} still due after handle_timeout", d);
                    }
                }
                Ev::TransportUp => if transport_open { u.on_transport_connected(t); },
                Ev::TransportDown => {
                    if transport_open || u.should_close_transport() {
                        u.handle_transport_closed(t);
                        transport_open = false;
                        connected_seen = false;
                    }
                }
                Ev::Connected(v) => {
                    let h = [Header::new(b"version", v.as_bytes()), Header::new(b"heart-beat", b"5000,5000")];
                    u.handle_frame(t, &Frame::new(Command::Connected, &h, b""));
                }
                Ev::Error => { u.handle_frame(t, &Frame::new(Command::Error, &[], b"")); }
                Ev::Message => {
                    let h = [Header::new(b"destination", b"/topic/x")];
                    u.handle_frame(t, &Frame::new(Command::Message, &h, b""));
                }
                Ev::Receipt => {
                    let h = [Header::new(b"receipt-id", b"stomp-relay-disconnect")];
                    u.handle_frame(t, &Frame::new(Command::Receipt, &h, b""));
                }
                Ev::Heartbeat => u.handle_heartbeat(t),
                Ev::Disconnect => u.disconnect(),
            }
            if u.should_close_transport() && transport_open {
                u.handle_transport_closed(Instant::from_millis(now));
                transport_open = false;
                connected_seen = false;
            }
            if u.is_connected() {
                connected_seen = true;
            }
            let t = Instant::from_millis(now);
            while let Some(n) = u.poll_transmit(t, &creds, &mut out).unwrap() {
                prop_assert!(transport_open, "bytes with no transport");
                let text = &out[..n];
                if !connected_seen {
                    prop_assert!(text.starts_with(b"CONNECT\n"), "{:?} before CONNECTED", String::from_utf8_lossy(text));
                }
            }
            while let Some(ev) = u.poll_event() {
                match ev {
                    UpstreamEvent::Connected => { prop_assert!(!available); available = true; }
                    UpstreamEvent::Lost(_) => available = false,
                }
            }
            if u.is_closed() {
                prop_assert_eq!(u.poll_connect(Instant::from_millis(u64::MAX)), None);
            }
        }
    }

    #[test]
    fn broker_delivery_rules(
        subs in prop::collection::vec((0u128..4, prop::sample::select(vec!["/topic/a", "/topic/*", "/topic/**", "/queue/q", "/queue/*", "/topic/b"])), 0..12),
        pubs in prop::collection::vec(prop::sample::select(vec!["/topic/a", "/topic/b", "/queue/q", "/topic/c/d"]), 1..20),
    ) {
        let mut b: SimpleBroker<FixedStore<16>> = SimpleBroker::new(FixedStore::new());
        for (i, (s, d)) in subs.iter().enumerate() {
            b.subscribe(SessionId::new(*s), format!("s{i}").as_bytes(), d.as_bytes()).unwrap();
        }
        let mut ids = BTreeSet::new();
        for p in pubs {
            let matching: BTreeSet<String> = subs.iter().enumerate()
                .filter(|(_, (_, d))| stomp_relay_core::broker::subscription_matches(d.as_bytes(), p.as_bytes(), Default::default()))
                .map(|(i, _)| format!("s{i}")).collect();
            let mut got = Vec::new();
            b.publish(p.as_bytes(), |d| got.push((String::from_utf8(d.subscription.to_vec()).unwrap(), d.message_id)));
            for (_, id) in &got {
                prop_assert!(ids.insert(*id), "message id {} repeated", id);
            }
            let got_subs: BTreeSet<String> = got.iter().map(|(s, _)| s.clone()).collect();
            prop_assert_eq!(got_subs.len(), got.len(), "a subscription got a message twice");
            if p.starts_with("/queue/") {
                prop_assert_eq!(got.len(), usize::from(!matching.is_empty()));
                prop_assert!(got_subs.is_subset(&matching));
            } else {
                prop_assert_eq!(got_subs, matching);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum SubOp {
    Subscribe(usize, u8, u8),
    Unsubscribe(usize, u8),
    CloseSession(usize),
    WriteActions,
    UpstreamLost,
}

fn sub_op() -> impl Strategy<Value = SubOp> {
    prop_oneof![
        4 => (0..3usize, 0..4u8, 0..5u8).prop_map(|(s, i, d)| SubOp::Subscribe(s, i, d)),
        2 => (0..3usize, 0..4u8).prop_map(|(s, i)| SubOp::Unsubscribe(s, i)),
        1 => (0..3usize).prop_map(SubOp::CloseSession),
        3 => Just(SubOp::WriteActions),
        1 => Just(SubOp::UpstreamLost),
    ]
}

proptest! {
    /// The upstream (as the SUBSCRIBE/UNSUBSCRIBE frames written to it describe it)
    /// always converges to exactly one subscription per destination that has local
    /// subscribers, and MESSAGEs for it reach exactly those subscribers.
    #[test]
    fn upstream_converges_to_local_interest(ops in proptest::collection::vec(sub_op(), 0..150)) {
        let mut table = Fanout::new(InlineStore::<3, 3, 4>::new(), "edge-");
        // Model of local interest: (session, id) -> destination.
        let mut local: HashMap<(usize, u8), u8> = HashMap::new();
        // What the upstream broker holds: upstream id -> destination.
        let mut upstream: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let flush = |table: &mut Fanout<InlineStore<3, 3, 4>>, upstream: &mut HashMap<Vec<u8>, Vec<u8>>| {
            while let Some(action) = table.next_action() {
                match action {
                    Action::Subscribe { slot, id, destination } => {
                        let prev = upstream.insert(id.as_bytes().to_vec(), destination.to_vec());
                        assert!(prev.is_none(), "subscribed twice under one id");
                        table.action_done(slot);
                    }
                    Action::Unsubscribe { slot, id } => {
                        assert!(upstream.remove(id.as_bytes()).is_some(), "unknown UNSUBSCRIBE");
                        table.action_done(slot);
                    }
                }
            }
        };
        for op in ops {
            match op {
                SubOp::Subscribe(s, i, d) => {
                    let dest = format!("/topic/d{}", d);
                    let r = table.subscribe(s, &[b'i', i], dest.as_bytes());
                    if r.is_ok() {
                        prop_assert!(local.insert((s, i), d).is_none());
                    }
                }
                SubOp::Unsubscribe(s, i) => {
                    let r = table.unsubscribe(s, &[b'i', i]);
                    prop_assert_eq!(r.is_ok(), local.remove(&(s, i)).is_some());
                }
                SubOp::CloseSession(s) => {
                    table.remove_session(s);
                    local.retain(|(sess, _), _| *sess != s);
                }
                SubOp::WriteActions => flush(&mut table, &mut upstream),
                SubOp::UpstreamLost => {
                    table.upstream_lost();
                    upstream.clear();
                }
            }
        }
        flush(&mut table, &mut upstream);
        let mut wanted: Vec<Vec<u8>> = local.values().map(|d| format!("/topic/d{}", d).into_bytes()).collect();
        wanted.sort();
        wanted.dedup();
        let mut have: Vec<Vec<u8>> = upstream.values().cloned().collect();
        have.sort();
        prop_assert_eq!(&have, &wanted, "one upstream subscription per destination with subscribers");
        for (id, dest) in &upstream {
            let route = table.route_of(id).expect("current id routes");
            let mut got: Vec<(usize, Vec<u8>)> = table.store().subscribers(route).map(|(s, i)| (s, i.to_vec())).collect();
            got.sort();
            let mut expect: Vec<(usize, Vec<u8>)> = local
                .iter()
                .filter(|(_, d)| format!("/topic/d{}", d).as_bytes() == &dest[..])
                .map(|((s, i), _)| (*s, vec![b'i', *i]))
                .collect();
            expect.sort();
            prop_assert_eq!(got, expect);
        }
    }
}
