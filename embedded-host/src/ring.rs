//! Fixed-capacity byte rings: [`ByteQueue`] (a stream of whole frames for one local
//! session) and [`StoreRing`] (the store-and-forward ring of frames bound upstream).
//!
//! Invariants: nothing allocates; a push is all-or-nothing, so a reader never sees half
//! a frame; [`StoreRing`] keeps records in arrival order with consecutive sequence
//! numbers, evicts only from the oldest end and counts every evicted record.

/// A wrapping byte buffer; the building block of both rings.
#[derive(Debug)]
struct Bytes<const B: usize> {
    buf: [u8; B],
    head: usize,
    len: usize,
}

impl<const B: usize> Bytes<B> {
    const fn new() -> Self {
        Bytes {
            buf: [0; B],
            head: 0,
            len: 0,
        }
    }

    fn free(&self) -> usize {
        B - self.len
    }

    /// Appends `data`; the caller has checked that it fits.
    fn push(&mut self, data: &[u8]) {
        debug_assert!(data.len() <= self.free());
        let tail = (self.head + self.len) % B.max(1);
        let first = data.len().min(B - tail);
        self.buf[tail..tail + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
        self.len += data.len();
    }

    /// Copies `out.len()` bytes starting `offset` bytes after the head.
    fn read_at(&self, offset: usize, out: &mut [u8]) {
        debug_assert!(offset + out.len() <= self.len);
        let start = (self.head + offset) % B.max(1);
        let first = out.len().min(B - start);
        out[..first].copy_from_slice(&self.buf[start..start + first]);
        let rest = out.len() - first;
        out[first..].copy_from_slice(&self.buf[..rest]);
    }

    /// The longest contiguous run of bytes at the head.
    fn head_slice(&self) -> &[u8] {
        let end = (self.head + self.len).min(B);
        &self.buf[self.head..end]
    }

    fn discard(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        self.len -= n;
        self.head = if self.len == 0 {
            0
        } else {
            (self.head + n) % B
        };
    }
}

/// The outbound byte stream of one local session: whole frames go in, any number of
/// bytes come out (straight into the TCP transmit buffer).
#[derive(Debug)]
pub struct ByteQueue<const B: usize> {
    bytes: Bytes<B>,
}

/// A push that did not fit; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QueueFull;

impl<const B: usize> ByteQueue<B> {
    /// An empty queue.
    pub const fn new() -> Self {
        ByteQueue {
            bytes: Bytes::new(),
        }
    }

    /// Appends all `parts` (one frame) or nothing.
    pub fn push(&mut self, parts: &[&[u8]]) -> Result<(), QueueFull> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > self.bytes.free() {
            return Err(QueueFull);
        }
        for part in parts {
            self.bytes.push(part);
        }
        Ok(())
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.bytes.len
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.bytes.len == 0
    }

    /// Free space in bytes.
    pub fn free(&self) -> usize {
        self.bytes.free()
    }

    /// Copies as many waiting bytes as fit into `out`, removes them, returns how many.
    pub fn drain_into(&mut self, out: &mut [u8]) -> usize {
        let mut done = 0;
        while done < out.len() && !self.is_empty() {
            let chunk = self.bytes.head_slice();
            let n = chunk.len().min(out.len() - done);
            out[done..done + n].copy_from_slice(&chunk[..n]);
            self.bytes.discard(n);
            done += n;
        }
        done
    }

    /// Forgets everything waiting (a new connection on the slot starts clean).
    pub fn clear(&mut self) {
        self.bytes.discard(self.bytes.len);
    }
}

impl<const B: usize> Default for ByteQueue<B> {
    fn default() -> Self {
        Self::new()
    }
}

/// A record longer than the ring can ever hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TooLarge;

/// Bytes of the length prefix in front of every record.
const PREFIX: usize = 2;

/// The store-and-forward ring: encoded frames waiting to go upstream or waiting for the
/// upstream's RECEIPT.
///
/// Each record has a sequence number (consecutive, starting at 0). Records are *sent*
/// in order ([`StoreRing::next_unsent`] / [`StoreRing::mark_sent`]) and *acknowledged*
/// in order ([`StoreRing::ack_through`]); only acknowledged records leave the ring
/// normally. After an upstream loss, [`StoreRing::rewind`] makes every unacknowledged
/// record unsent again, so delivery is at-least-once and in order. When a push does not
/// fit, the oldest records are evicted and counted in [`StoreRing::dropped`].
#[derive(Debug)]
pub struct StoreRing<const B: usize> {
    bytes: Bytes<B>,
    records: usize,
    head_seq: u32,
    sent: usize,
    sent_bytes: usize,
    dropped: u32,
}

impl<const B: usize> StoreRing<B> {
    /// An empty ring.
    pub const fn new() -> Self {
        StoreRing {
            bytes: Bytes::new(),
            records: 0,
            head_seq: 0,
            sent: 0,
            sent_bytes: 0,
            dropped: 0,
        }
    }

    /// The largest record this ring can hold.
    pub const fn max_record() -> usize {
        let max = B.saturating_sub(PREFIX);
        if max > u16::MAX as usize {
            u16::MAX as usize
        } else {
            max
        }
    }

    /// Appends a record, evicting the oldest records until it fits. Returns how many
    /// records were evicted by this push.
    pub fn push(&mut self, record: &[u8]) -> Result<u32, TooLarge> {
        if record.len() > Self::max_record() {
            return Err(TooLarge);
        }
        let mut evicted = 0;
        while self.bytes.free() < record.len() + PREFIX {
            self.evict_oldest();
            evicted += 1;
        }
        self.bytes.push(&(record.len() as u16).to_be_bytes());
        self.bytes.push(record);
        self.records += 1;
        Ok(evicted)
    }

    fn record_len_at(&self, offset: usize) -> usize {
        let mut prefix = [0u8; PREFIX];
        self.bytes.read_at(offset, &mut prefix);
        u16::from_be_bytes(prefix) as usize
    }

    fn evict_oldest(&mut self) {
        let n = PREFIX + self.record_len_at(0);
        self.bytes.discard(n);
        self.records -= 1;
        self.head_seq = self.head_seq.wrapping_add(1);
        self.dropped = self.dropped.saturating_add(1);
        if self.sent > 0 {
            self.sent -= 1;
            self.sent_bytes -= n;
        }
    }

    /// The first record not yet sent: its sequence number and its bytes, copied into
    /// `out` (which must hold [`StoreRing::max_record`] bytes or the record's length).
    pub fn next_unsent<'o>(&self, out: &'o mut [u8]) -> Option<(u32, &'o [u8])> {
        if self.sent == self.records {
            return None;
        }
        let len = self.record_len_at(self.sent_bytes);
        let out = out.get_mut(..len)?;
        self.bytes.read_at(self.sent_bytes + PREFIX, out);
        Some((self.head_seq.wrapping_add(self.sent as u32), out))
    }

    /// Marks the record with sequence `seq` as sent, if it is still the next unsent one
    /// (it may have been evicted while it was being written).
    pub fn mark_sent(&mut self, seq: u32) {
        if self.sent < self.records && self.head_seq.wrapping_add(self.sent as u32) == seq {
            self.sent_bytes += PREFIX + self.record_len_at(self.sent_bytes);
            self.sent += 1;
        }
    }

    /// Removes every sent record with a sequence number up to and including `seq`,
    /// returning how many were removed.
    pub fn ack_through(&mut self, seq: u32) -> u32 {
        let mut acked = 0;
        while self.sent > 0 && seq.wrapping_sub(self.head_seq) < (1 << 31) {
            let n = PREFIX + self.record_len_at(0);
            self.bytes.discard(n);
            self.records -= 1;
            self.sent -= 1;
            self.sent_bytes -= n;
            self.head_seq = self.head_seq.wrapping_add(1);
            acked += 1;
        }
        acked
    }

    /// Makes every unacknowledged record unsent again (after the upstream was lost).
    pub fn rewind(&mut self) {
        self.sent = 0;
        self.sent_bytes = 0;
    }

    /// Records held (sent-but-unacknowledged ones included).
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether the ring holds no record.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Records sent and waiting for their RECEIPT.
    pub fn in_flight(&self) -> usize {
        self.sent
    }

    /// Records evicted because the ring was full, since start.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }
}

impl<const B: usize> Default for StoreRing<B> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_all_or_nothing_and_wraps() {
        let mut q = ByteQueue::<8>::new();
        q.push(&[b"abc", b"de"]).unwrap();
        assert_eq!(q.push(&[b"1234"]), Err(QueueFull));
        let mut out = [0u8; 3];
        assert_eq!(q.drain_into(&mut out), 3);
        assert_eq!(&out, b"abc");
        q.push(&[b"fghijk"]).unwrap();
        let mut out = [0u8; 16];
        let n = q.drain_into(&mut out);
        assert_eq!(&out[..n], b"defghijk");
        assert!(q.is_empty());
    }

    #[test]
    fn store_sends_in_order_and_acks() {
        let mut r = StoreRing::<64>::new();
        for m in [&b"one"[..], b"two", b"three"] {
            assert_eq!(r.push(m), Ok(0));
        }
        let mut out = [0u8; 64];
        let (seq, rec) = r.next_unsent(&mut out).unwrap();
        assert_eq!((seq, rec), (0, &b"one"[..]));
        r.mark_sent(0);
        let (seq, rec) = r.next_unsent(&mut out).unwrap();
        assert_eq!((seq, rec), (1, &b"two"[..]));
        r.mark_sent(1);
        r.ack_through(0);
        assert_eq!(r.len(), 2);
        // Upstream lost before "two" was acknowledged: it is sent again.
        r.rewind();
        let (seq, rec) = r.next_unsent(&mut out).unwrap();
        assert_eq!((seq, rec), (1, &b"two"[..]));
        r.mark_sent(1);
        r.mark_sent(2);
        r.ack_through(2);
        assert!(r.is_empty());
        assert!(r.next_unsent(&mut out).is_none());
    }

    #[test]
    fn overflow_evicts_oldest_and_counts() {
        // Each record takes 2 + 6 bytes; 32 bytes hold four.
        let mut r = StoreRing::<32>::new();
        let msgs: [&[u8]; 6] = [
            b"msg-00", b"msg-01", b"msg-02", b"msg-03", b"msg-04", b"msg-05",
        ];
        let mut evicted = 0;
        for m in msgs {
            evicted += r.push(m).unwrap();
        }
        assert_eq!(evicted, 2);
        assert_eq!(r.dropped(), 2);
        let mut out = [0u8; 32];
        let mut got = [0u32; 4];
        for slot in got.iter_mut() {
            let (seq, rec) = r.next_unsent(&mut out).unwrap();
            assert_eq!(rec, msgs[seq as usize]);
            *slot = seq;
            r.mark_sent(seq);
        }
        assert_eq!(got, [2, 3, 4, 5]);
        assert_eq!(r.push(&[0u8; 31]), Err(TooLarge));
    }

    #[test]
    fn eviction_of_a_sent_record_keeps_cursor_consistent() {
        let mut r = StoreRing::<24>::new();
        r.push(b"aaaaaa").unwrap();
        r.push(b"bbbbbb").unwrap();
        r.mark_sent(0);
        r.push(b"cccccc").unwrap();
        r.push(b"dddddd").unwrap(); // evicts "aaaaaa", which was in flight
        assert_eq!(r.in_flight(), 0);
        let mut out = [0u8; 24];
        assert_eq!(r.next_unsent(&mut out).unwrap(), (1, &b"bbbbbb"[..]));
        r.ack_through(0); // a stale receipt removes nothing unsent
        assert_eq!(r.len(), 3);
    }
}
