//! Property tests: the store-and-forward ring and the subscription table against
//! simple models, under random operation sequences.

use std::collections::{HashMap, VecDeque};

use proptest::prelude::*;
use stomp_relay_edge::ring::StoreRing;
use stomp_relay_edge::subs::{Action, SubTable};

#[derive(Debug, Clone)]
enum RingOp {
    Push(Vec<u8>),
    Send,
    Ack(u8),
    Rewind,
}

fn ring_op() -> impl Strategy<Value = RingOp> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(RingOp::Push),
        3 => Just(RingOp::Send),
        2 => any::<u8>().prop_map(RingOp::Ack),
        1 => Just(RingOp::Rewind),
    ]
}

proptest! {
    /// Whatever happens, the ring holds the newest records in push order with
    /// consecutive sequence numbers, sends them in that order, and every record pushed
    /// is exactly one of: still held, acknowledged, or counted as dropped.
    #[test]
    fn store_ring_matches_model(ops in proptest::collection::vec(ring_op(), 0..200)) {
        let mut ring = StoreRing::<128>::new();
        // Model: (seq, bytes) held, and how many of them are sent.
        let mut held: VecDeque<(u32, Vec<u8>)> = VecDeque::new();
        let mut sent = 0usize;
        let mut next_seq = 0u32;
        let mut acked = 0u32;
        let mut out = [0u8; 128];
        for op in ops {
            match op {
                RingOp::Push(rec) => {
                    ring.push(&rec).unwrap();
                    held.push_back((next_seq, rec));
                    next_seq += 1;
                    let mut bytes: usize = held.iter().map(|(_, r)| r.len() + 2).sum();
                    while bytes > 128 {
                        let (_, r) = held.pop_front().unwrap();
                        bytes -= r.len() + 2;
                        sent = sent.saturating_sub(1);
                    }
                }
                RingOp::Send => match ring.next_unsent(&mut out) {
                    Some((seq, rec)) => {
                        let (mseq, mrec) = &held[sent];
                        prop_assert_eq!(seq, *mseq);
                        prop_assert_eq!(rec, &mrec[..]);
                        ring.mark_sent(seq);
                        sent += 1;
                    }
                    None => prop_assert_eq!(sent, held.len()),
                },
                RingOp::Ack(k) => {
                    // A RECEIPT for one of the records sent (or a stale one).
                    if sent > 0 {
                        let idx = k as usize % sent;
                        let seq = held[idx].0;
                        let n = ring.ack_through(seq);
                        prop_assert_eq!(n as usize, idx + 1);
                        held.drain(..=idx);
                        sent -= idx + 1;
                        acked += n;
                    } else {
                        prop_assert_eq!(ring.ack_through(next_seq.wrapping_sub(1)), 0);
                    }
                }
                RingOp::Rewind => {
                    ring.rewind();
                    sent = 0;
                }
            }
            prop_assert_eq!(ring.len(), held.len());
            prop_assert_eq!(ring.in_flight(), sent);
            prop_assert_eq!(next_seq, acked + ring.dropped() + held.len() as u32);
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
        let mut table = SubTable::<3, 3, 4>::new();
        // Model of local interest: (session, id) -> destination.
        let mut local: HashMap<(usize, u8), u8> = HashMap::new();
        // What the upstream broker holds: upstream id -> destination.
        let mut upstream: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let flush = |table: &mut SubTable<3, 3, 4>, upstream: &mut HashMap<Vec<u8>, Vec<u8>>| {
            while let Some(action) = table.next_action() {
                match action {
                    Action::Subscribe { slot, id, destination } => {
                        let prev = upstream.insert(id.to_vec(), destination.to_vec());
                        assert!(prev.is_none(), "subscribed twice under one id");
                        table.action_done(slot);
                    }
                    Action::Unsubscribe { slot, id } => {
                        assert!(upstream.remove(&id.to_vec()).is_some(), "unknown UNSUBSCRIBE");
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
            let mut got: Vec<(usize, Vec<u8>)> = table.subscribers(route).map(|(s, i)| (s, i.to_vec())).collect();
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
