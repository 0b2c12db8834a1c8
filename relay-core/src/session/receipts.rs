//! What the session still owes the client besides CONNECTED: RECEIPT ids in arrival
//! order (bounded, length-prefixed in one array) and the one ERROR that ends it.
//!
//! Invariant: when the ERROR answers a frame that asked for a receipt, that receipt is
//! the queue's newest entry and goes out as the ERROR's `receipt-id`, never as a
//! RECEIPT; nothing is queued behind it (a closing session takes no more input).

use crate::cursor::Bytes;

/// RECEIPT ids waiting to be sent, as length-prefixed runs in `B` bytes.
pub(super) struct ReceiptQueue<const B: usize> {
    len: u16,
    buf: [u8; B],
}

impl<const B: usize> ReceiptQueue<B> {
    /// Longest id kept: two always fit, so a frame's receipt still fits behind one
    /// the client has not been sent yet.
    pub(super) const ID_MAX: usize = {
        assert!(B >= 4 && B <= u16::MAX as usize, "receipt queue size");
        let two = B / 2 - 1;
        if two < super::RECEIPT_MAX {
            two
        } else {
            super::RECEIPT_MAX
        }
    };

    pub(super) const EMPTY: Self = ReceiptQueue {
        len: 0,
        buf: [0; B],
    };

    fn used(&self) -> usize {
        usize::from(self.len)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn clear(&mut self) {
        self.len = 0;
    }

    pub(super) fn push(&mut self, id: &[u8]) -> bool {
        let start = self.used();
        let end = start + 1 + id.len();
        if id.len() > Self::ID_MAX || end > B {
            return false;
        }
        self.buf[start] = id.len() as u8;
        self.buf[start + 1..end].copy_from_slice(id);
        self.len = end as u16;
        true
    }

    pub(super) fn front(&self) -> Option<&[u8]> {
        let n = usize::from(*self.buf[..self.used()].first()?);
        Some(&self.buf[1..1 + n])
    }

    /// Whether exactly one id is queued.
    pub(super) fn is_single(&self) -> bool {
        self.buf[..self.used()]
            .first()
            .is_some_and(|&n| usize::from(n) + 1 == self.used())
    }

    pub(super) fn pop_front(&mut self) {
        if let Some(&n) = self.buf[..self.used()].first() {
            let n = usize::from(n) + 1;
            let end = self.used();
            self.buf.copy_within(n..end, 0);
            self.len -= n as u16;
        }
    }

    /// Where the newest id starts, if any.
    fn last_start(&self) -> Option<usize> {
        let mut pos = 0;
        let mut last = None;
        while pos < self.used() {
            last = Some(pos);
            pos += 1 + usize::from(self.buf[pos]);
        }
        last
    }

    /// Drops the most recently pushed id.
    pub(super) fn pop_back(&mut self) {
        if let Some(start) = self.last_start() {
            self.len = start as u16;
        }
    }

    /// Keeps only the most recently pushed id.
    pub(super) fn keep_last(&mut self) {
        if let Some(start) = self.last_start() {
            let end = self.used();
            self.buf.copy_within(start..end, 0);
            self.len = (end - start) as u16;
        }
    }
}

/// The ERROR that ends the session, with at most `M` bytes of `message`.
pub(super) struct PendingError<const M: usize> {
    pub(super) message: Bytes<M>,
    /// The newest queued receipt is this ERROR's `receipt-id`.
    pub(super) receipt: bool,
    /// For a failed version negotiation: the versions the server speaks, sent as the
    /// ERROR's `version` header (the spec's example).
    pub(super) versions: Option<super::Versions>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_order_and_the_newest_can_be_kept_alone() {
        let mut q = ReceiptQueue::<16>::EMPTY;
        assert_eq!(ReceiptQueue::<16>::ID_MAX, 7);
        assert!(q.push(b"a") && q.push(b"bc") && q.push(b"def"));
        assert!(!q.push(b"toolong!"), "longer than ID_MAX");
        assert!(q.push(b"ghijkl"), "exactly fills the queue");
        assert!(!q.push(b"x"), "does not fit behind the others");
        assert_eq!(q.front(), Some(&b"a"[..]));
        q.pop_back();
        q.pop_back();
        q.keep_last();
        assert!(q.is_single());
        assert_eq!(q.front(), Some(&b"bc"[..]));
        q.pop_front();
        assert!(q.is_empty() && q.front().is_none() && !q.is_single());
    }
}
