//! Writing into caller-provided byte buffers without allocation.
//!
//! [`Cursor`] appends bytes (and `core::fmt` output) to a `&mut [u8]` and reports
//! overflow instead of truncating silently, so every destination or header the core
//! builds is either complete or refused with an error the caller can name. `Bytes`
//! is the matching inline storage for short strings the core must keep.

use crate::codec::HeaderValue;

/// The caller's buffer was too small for what had to be written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferTooSmall;

impl core::fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("buffer too small")
    }
}

/// Inline storage for one short byte string (ids, receipts, names).
#[derive(Clone, Copy)]
pub(crate) struct Bytes<const N: usize> {
    // u16, not usize: a session keeps dozens of these inline.
    len: u16,
    pub(crate) buf: [u8; N],
}

impl<const N: usize> Bytes<N> {
    const CAPACITY_FITS_LEN: () = assert!(N <= u16::MAX as usize);

    pub(crate) const EMPTY: Self = {
        #[allow(clippy::let_unit_value)]
        let () = Self::CAPACITY_FITS_LEN;
        Bytes {
            len: 0,
            buf: [0; N],
        }
    };

    pub(crate) fn get(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// Marks the first `n` bytes of `buf` (at most `N`) as the content.
    pub(crate) fn set_len(&mut self, n: usize) {
        self.len = n.min(N) as u16;
    }

    /// Stores the unescaped `v`, or `None` when it is longer than `N`.
    pub(crate) fn set(&mut self, v: HeaderValue<'_>) -> Option<()> {
        let n = v.copy_unescaped(&mut self.buf).ok()?.len();
        self.set_len(n);
        Some(())
    }
}

impl<const N: usize> Bytes<N> {
    /// Stores `v`, or `None` when it is longer than `N`.
    pub(crate) fn set_plain(&mut self, v: &[u8]) -> Option<()> {
        self.buf.get_mut(..v.len())?.copy_from_slice(v);
        self.set_len(v.len());
        Some(())
    }
}

/// An append-only writer over a byte slice.
pub(crate) struct Cursor<'o> {
    buf: &'o mut [u8],
    len: usize,
    overflow: bool,
}

impl<'o> Cursor<'o> {
    pub(crate) fn new(buf: &'o mut [u8]) -> Self {
        Cursor {
            buf,
            len: 0,
            overflow: false,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) -> &mut Self {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            _ => self.overflow = true,
        }
        self
    }

    pub(crate) fn push_byte(&mut self, b: u8) -> &mut Self {
        self.push(&[b])
    }

    /// Appends `n` in decimal.
    pub(crate) fn push_u64(&mut self, mut n: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..])
    }

    /// Bytes written so far.
    pub(crate) fn written(&self) -> usize {
        self.len
    }

    /// The written bytes, or an error if anything did not fit.
    pub(crate) fn finish(self) -> Result<&'o [u8], BufferTooSmall> {
        if self.overflow {
            Err(BufferTooSmall)
        } else {
            Ok(&self.buf[..self.len])
        }
    }

    /// Like [`Cursor::finish`], keeping whatever fitted (for human-readable text only).
    pub(crate) fn finish_truncated(self) -> &'o [u8] {
        &self.buf[..self.len]
    }
}

impl core::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - self.len;
        if s.len() <= room {
            self.push(s.as_bytes());
            Ok(())
        } else {
            // Keep a valid UTF-8 prefix so truncated messages stay readable.
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.push(&s.as_bytes()[..cut]);
            self.overflow = true;
            Err(core::fmt::Error)
        }
    }
}

/// Escapes `v` for an escaped-form frame.
pub(crate) fn push_escaped(c: &mut Cursor<'_>, v: &[u8]) {
    for &b in v {
        match b {
            b'\\' => c.push(b"\\\\"),
            b':' => c.push(b"\\c"),
            b'\n' => c.push(b"\\n"),
            b'\r' => c.push(b"\\r"),
            _ => c.push_byte(b),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn reports_overflow_instead_of_truncating() {
        let mut buf = [0u8; 8];
        let mut c = Cursor::new(&mut buf);
        c.push(b"/queue/").push_u64(42);
        assert_eq!(c.finish(), Err(BufferTooSmall));

        let mut buf = [0u8; 32];
        let mut c = Cursor::new(&mut buf);
        c.push(b"-user")
            .push_u64(0)
            .push_byte(b'/')
            .push_u64(u64::MAX);
        assert_eq!(c.finish().unwrap(), b"-user0/18446744073709551615");
    }

    #[test]
    fn truncated_text_stays_utf8() {
        let mut buf = [0u8; 4];
        let mut c = Cursor::new(&mut buf);
        let _ = write!(c, "ab한국");
        assert_eq!(c.finish_truncated(), b"ab");
    }
}
