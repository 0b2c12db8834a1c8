//! What the session still owes the client besides CONNECTED: RECEIPT ids in arrival
//! order (bounded, length-prefixed in one array) and the one ERROR that ends it.

use crate::cursor::Bytes;

use super::{ERROR_MESSAGE_MAX, RECEIPT_MAX, RECEIPT_QUEUE_BYTES};

/// RECEIPT ids waiting to be sent, as length-prefixed runs in one array.
pub(super) struct ReceiptQueue {
    pub(super) len: usize,
    pub(super) buf: [u8; RECEIPT_QUEUE_BYTES],
}

impl ReceiptQueue {
    pub(super) fn push(&mut self, id: &[u8]) -> bool {
        let end = self.len + 1 + id.len();
        if id.len() > RECEIPT_MAX || end > self.buf.len() {
            return false;
        }
        self.buf[self.len] = id.len() as u8;
        self.buf[self.len + 1..end].copy_from_slice(id);
        self.len = end;
        true
    }

    pub(super) fn front(&self) -> Option<&[u8]> {
        let n = usize::from(*self.buf[..self.len].first()?);
        Some(&self.buf[1..1 + n])
    }

    pub(super) fn pop_front(&mut self) {
        if let Some(&n) = self.buf[..self.len].first() {
            let n = usize::from(n) + 1;
            self.buf.copy_within(n..self.len, 0);
            self.len -= n;
        }
    }

    /// Removes the most recently pushed id into `out`.
    pub(super) fn pop_back(&mut self, out: &mut Bytes<RECEIPT_MAX>) {
        let mut pos = 0;
        let mut last = None;
        while pos < self.len {
            last = Some(pos);
            pos += 1 + usize::from(self.buf[pos]);
        }
        if let Some(start) = last {
            let n = usize::from(self.buf[start]);
            out.buf[..n].copy_from_slice(&self.buf[start + 1..start + 1 + n]);
            out.set_len(n);
            self.len = start;
        }
    }
}

pub(super) struct PendingError {
    pub(super) message: Bytes<ERROR_MESSAGE_MAX>,
    pub(super) receipt: Option<Bytes<RECEIPT_MAX>>,
    /// For a failed version negotiation: the versions the server speaks, sent as the
    /// ERROR's `version` header (the spec's example).
    pub(super) versions: Option<super::Versions>,
}
