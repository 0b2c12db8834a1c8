//! Property test: the store-and-forward ring against a simple model, under random
//! operation sequences. (The subscription table is relay-core's `Fanout`; its model
//! test is in relay-core/tests/relay_model.rs.)

use std::collections::VecDeque;

use proptest::prelude::*;
use stomp_relay_edge::ring::StoreRing;

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
