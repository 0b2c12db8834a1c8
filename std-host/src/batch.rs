//! One write's worth of encoded frames for a client: every unit (a frame or a
//! heart-beat EOL) appended to one buffer, with where each ends.
//!
//! The session driver encodes deliveries straight into the buffer, so a write batch
//! costs one allocation however many frames it holds (the profile of issue 16 had
//! malloc/free and the copy from a per-frame `Vec` among the fan-out's hottest
//! symbols). TCP writes the buffer in one call; WebSocket sends each unit as its own
//! message, a slice of the same buffer, because STOMP-over-WebSocket clients expect one
//! frame per message.
//!
//! Invariant: `ends` is strictly increasing and its last entry is `buf.len()`, so the
//! units tile the buffer exactly.

use bytes::Bytes;

/// A cleared batch keeps at most this much buffer, so a session that once wrote a large
/// batch does not hold the memory while idle (the TCP transport's former `BufWriter`
/// held 8 KiB for every session).
const RETAIN: usize = 8 * 1024;

/// Encoded units waiting for one write.
#[derive(Debug, Default)]
pub struct WriteBatch {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl WriteBatch {
    /// An empty batch; nothing is allocated until the first unit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one unit.
    pub fn push(&mut self, unit: &[u8]) {
        self.buf.extend_from_slice(unit);
        self.ends.push(self.buf.len());
    }

    /// Appends one unit that `encode` writes at the end of the buffer, and returns
    /// whether it did: when `encode` returns `false` (or appends nothing) whatever it
    /// wrote is taken back, so a frame the codec refuses leaves no partial bytes.
    pub fn push_with(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        let start = self.buf.len();
        if encode(&mut self.buf) && self.buf.len() > start {
            self.ends.push(self.buf.len());
            true
        } else {
            self.buf.truncate(start);
            false
        }
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// How many units the batch holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Every unit's bytes, back to back: what goes on a byte stream.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The units in order.
    pub fn units(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let unit = &self.buf[start..end];
            start = end;
            unit
        })
    }

    /// Moves the units out as slices of one shared buffer (no copy, no allocation per
    /// unit) and leaves the batch empty.
    pub fn take_units(&mut self) -> impl Iterator<Item = Bytes> {
        let buf = Bytes::from(std::mem::take(&mut self.buf));
        let ends = std::mem::take(&mut self.ends);
        let mut start = 0;
        ends.into_iter().map(move |end| {
            let unit = buf.slice(start..end);
            start = end;
            unit
        })
    }

    /// Empties the batch after a write, keeping a small buffer for the next one.
    pub fn clear(&mut self) {
        self.ends.clear();
        if self.buf.capacity() > RETAIN {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }
}

impl<'a> FromIterator<&'a [u8]> for WriteBatch {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(units: I) -> Self {
        let mut batch = WriteBatch::new();
        for unit in units {
            batch.push(unit);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_come_back_in_order_from_every_view() {
        let mut b = WriteBatch::new();
        assert!(b.is_empty());
        b.push(b"CONNECTED\n\n\0");
        b.push(b"\n");
        assert!(b.push_with(|out| {
            out.extend_from_slice(b"MESSAGE\n\nhi\0");
            true
        }));
        assert_eq!(b.len(), 3);
        assert_eq!(b.bytes(), b"CONNECTED\n\n\0\nMESSAGE\n\nhi\0");
        let expected = [&b"CONNECTED\n\n\0"[..], b"\n", b"MESSAGE\n\nhi\0"];
        assert!(b.units().eq(expected));
        let taken: Vec<Bytes> = b.take_units().collect();
        assert_eq!(taken, expected);
        assert!(b.is_empty() && b.bytes().is_empty());
    }

    #[test]
    fn a_refused_encoding_leaves_nothing_behind() {
        let mut b = WriteBatch::from_iter([&b"RECEIPT\n\n\0"[..]]);
        assert!(!b.push_with(|out| {
            out.extend_from_slice(b"MESSAGE\nhalf");
            false
        }));
        assert!(!b.push_with(|_| true), "an empty unit is not a unit");
        assert_eq!(b.len(), 1);
        assert_eq!(b.bytes(), b"RECEIPT\n\n\0");
    }

    #[test]
    fn clearing_gives_back_a_large_buffer() {
        let mut b = WriteBatch::new();
        b.push(&[b'x'; 100]);
        b.clear();
        assert!(b.is_empty());
        assert!(
            b.buf.capacity() >= 100,
            "a small buffer is kept for the next batch"
        );
        b.push(&vec![b'x'; RETAIN + 1]);
        b.clear();
        assert_eq!(b.buf.capacity(), 0);
    }
}
