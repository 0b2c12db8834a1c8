//! Lazy, allocation-free access to header names and values.
//!
//! A [`HeaderValue`] is a view of one name or value in its wire form plus a flag saying
//! whether that form is escaped. Nothing is unescaped until asked for: comparisons walk
//! the escaped bytes, [`HeaderValue::copy_unescaped`] writes into a caller buffer, and
//! [`HeaderValue::as_plain`] borrows directly when no escape is present (the usual case).
//!
//! Invariant relied on: values of decoded frames hold only valid escapes (the decoder
//! checks). For hand-built escaped values an undefined escape `\x` reads as `x` and a
//! trailing `\` as `\`, so no input makes these methods panic.

use crate::escape::unescape_byte;
use crate::{Frame, Header, HeaderForm};

/// One header name or value, possibly still escaped.
#[derive(Debug, Clone, Copy, Eq, Hash)]
pub struct HeaderValue<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl<'a> HeaderValue<'a> {
    /// A view of `raw`, which is escaped if `escaped`.
    pub const fn new(raw: &'a [u8], escaped: bool) -> Self {
        HeaderValue { raw, escaped }
    }

    /// A view of `raw` in the given form.
    pub const fn with_form(raw: &'a [u8], form: HeaderForm) -> Self {
        HeaderValue {
            raw,
            escaped: matches!(form, HeaderForm::Escaped),
        }
    }

    /// The bytes as on the wire (still escaped if [`Self::is_escaped`]).
    pub const fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether [`Self::raw`] is in escaped form.
    pub const fn is_escaped(&self) -> bool {
        self.escaped
    }

    /// The plain bytes, borrowed, when no unescaping is needed (the common case).
    #[inline]
    pub fn as_plain(&self) -> Option<&'a [u8]> {
        if !self.escaped || memchr::memchr(b'\\', self.raw).is_none() {
            Some(self.raw)
        } else {
            None
        }
    }

    /// The plain bytes as UTF-8 text, borrowed, when no unescaping is needed and the bytes are UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_plain().and_then(|b| core::str::from_utf8(b).ok())
    }

    /// Length of the unescaped bytes.
    pub fn unescaped_len(&self) -> usize {
        if self.escaped {
            self.raw.len() - crate::escape::count_escapes(self.raw)
        } else {
            self.raw.len()
        }
    }

    /// The unescaped bytes, one at a time.
    pub fn bytes(&self) -> Unescaped<'a> {
        Unescaped {
            rest: self.raw,
            escaped: self.escaped,
        }
    }

    /// Whether the unescaped bytes equal `other`.
    #[inline]
    pub fn eq_bytes(&self, other: &[u8]) -> bool {
        if !self.escaped || self.raw.len() == other.len() {
            // Same length: any escape would make the unescaped text shorter, so equal raw
            // bytes mean equal text exactly when `other` has no backslash either.
            return self.raw == other && (!self.escaped || memchr::memchr(b'\\', other).is_none());
        }
        self.raw.len() > other.len() && self.bytes().eq(other.iter().copied())
    }

    /// Copies the unescaped bytes into `out`, returning the written prefix.
    pub fn copy_unescaped<'o>(&self, out: &'o mut [u8]) -> Result<&'o [u8], BufferTooSmall> {
        let needed = self.unescaped_len();
        let Some(dst) = out.get_mut(..needed) else {
            return Err(BufferTooSmall { needed });
        };
        if let Some(plain) = self.as_plain() {
            dst.copy_from_slice(plain);
        } else {
            for (d, b) in dst.iter_mut().zip(self.bytes()) {
                *d = b;
            }
        }
        Ok(dst)
    }

    /// Parses the unescaped value as a decimal `usize` (digits only, no sign or spaces).
    pub fn parse_usize(&self) -> Option<usize> {
        parse_decimal(self.as_plain()?)
    }
}

impl PartialEq for HeaderValue<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self.as_plain(), other.as_plain()) {
            (Some(a), Some(b)) => a == b,
            _ => self.bytes().eq(other.bytes()),
        }
    }
}

impl PartialEq<[u8]> for HeaderValue<'_> {
    fn eq(&self, other: &[u8]) -> bool {
        self.eq_bytes(other)
    }
}

impl PartialEq<&[u8]> for HeaderValue<'_> {
    fn eq(&self, other: &&[u8]) -> bool {
        self.eq_bytes(other)
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for HeaderValue<'_> {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.eq_bytes(&other[..])
    }
}

impl PartialEq<str> for HeaderValue<'_> {
    fn eq(&self, other: &str) -> bool {
        self.eq_bytes(other.as_bytes())
    }
}

impl PartialEq<&str> for HeaderValue<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.eq_bytes(other.as_bytes())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for HeaderValue<'_> {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{=[u8]}", self.raw)
    }
}

/// The output buffer of [`HeaderValue::copy_unescaped`] is too short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferTooSmall {
    /// Bytes the unescaped value needs.
    pub needed: usize,
}

impl core::fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "buffer too small: {} bytes needed", self.needed)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BufferTooSmall {}

/// Iterator over the unescaped bytes of a [`HeaderValue`].
#[derive(Debug, Clone)]
pub struct Unescaped<'a> {
    rest: &'a [u8],
    escaped: bool,
}

impl Iterator for Unescaped<'_> {
    type Item = u8;

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        if !self.escaped || b != b'\\' {
            return Some(b);
        }
        match rest.split_first() {
            Some((&l, tail)) => {
                self.rest = tail;
                Some(unescape_byte(l).unwrap_or(l))
            }
            None => Some(b'\\'),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.rest.len();
        if self.escaped {
            (n.div_ceil(2), Some(n))
        } else {
            (n, Some(n))
        }
    }
}

/// Iterator over a frame's headers as `(name, value)` pairs, in wire order, repeats included.
#[derive(Debug, Clone)]
pub struct HeaderPairs<'a> {
    iter: core::slice::Iter<'a, Header<'a>>,
    escaped: bool,
}

impl<'a> Iterator for HeaderPairs<'a> {
    type Item = (HeaderValue<'a>, HeaderValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let h = self.iter.next()?;
        Some((
            HeaderValue::new(h.name, self.escaped),
            HeaderValue::new(h.value, self.escaped),
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.iter.size_hint()
    }
}

impl ExactSizeIterator for HeaderPairs<'_> {}

/// Parses ASCII decimal digits into a `usize`; `None` if empty, non-digit or overflowing.
pub(crate) fn parse_decimal(b: &[u8]) -> Option<usize> {
    if b.is_empty() {
        return None;
    }
    let mut n: usize = 0;
    for &d in b {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(usize::from(d - b'0'))?;
    }
    Some(n)
}

impl<'a> Frame<'a> {
    /// Whether this frame's header bytes are escaped.
    pub const fn is_escaped(&self) -> bool {
        matches!(self.form, HeaderForm::Escaped)
    }

    /// The value of the first header named `name` (plain bytes; escaping of the stored
    /// name is honoured).
    #[inline]
    pub fn header(&self, name: &[u8]) -> Option<HeaderValue<'a>> {
        // A name holding no byte that an escape produces can only be written one way,
        // so raw bytes compare exactly; for the constant names of the accessors below
        // this check folds away.
        if !name
            .iter()
            .any(|b| matches!(b, b'\\' | b':' | b'\r' | b'\n'))
        {
            return self
                .headers
                .iter()
                .find(|h| h.name == name)
                .map(|h| HeaderValue::new(h.value, self.is_escaped()));
        }
        let escaped = self.is_escaped();
        self.headers
            .iter()
            .find(|h| HeaderValue::new(h.name, escaped).eq_bytes(name))
            .map(|h| HeaderValue::new(h.value, escaped))
    }

    /// All headers as `(name, value)` pairs in wire order.
    pub fn header_pairs(&self) -> HeaderPairs<'a> {
        HeaderPairs {
            iter: self.headers.iter(),
            escaped: self.is_escaped(),
        }
    }

    /// The first `content-length`, parsed; `None` if absent or not a decimal number.
    pub fn content_length(&self) -> Option<usize> {
        self.header(b"content-length")?.parse_usize()
    }

    /// The first `destination` header.
    #[inline]
    pub fn destination(&self) -> Option<HeaderValue<'a>> {
        self.header(b"destination")
    }

    /// The first `receipt` header (a client asking for a RECEIPT).
    #[inline]
    pub fn receipt(&self) -> Option<HeaderValue<'a>> {
        self.header(b"receipt")
    }

    /// The first `receipt-id` header (of a RECEIPT frame).
    #[inline]
    pub fn receipt_id(&self) -> Option<HeaderValue<'a>> {
        self.header(b"receipt-id")
    }

    /// The first `id` header (SUBSCRIBE, UNSUBSCRIBE, ACK, NACK).
    #[inline]
    pub fn id(&self) -> Option<HeaderValue<'a>> {
        self.header(b"id")
    }

    /// The first `subscription` header (MESSAGE).
    #[inline]
    pub fn subscription(&self) -> Option<HeaderValue<'a>> {
        self.header(b"subscription")
    }

    /// The first `message-id` header (MESSAGE).
    #[inline]
    pub fn message_id(&self) -> Option<HeaderValue<'a>> {
        self.header(b"message-id")
    }

    /// The first `ack` header (SUBSCRIBE mode, MESSAGE ack id).
    #[inline]
    pub fn ack(&self) -> Option<HeaderValue<'a>> {
        self.header(b"ack")
    }

    /// The first `transaction` header.
    #[inline]
    pub fn transaction(&self) -> Option<HeaderValue<'a>> {
        self.header(b"transaction")
    }

    /// The first `content-type` header.
    #[inline]
    pub fn content_type(&self) -> Option<HeaderValue<'a>> {
        self.header(b"content-type")
    }

    /// The first `message` header (ERROR).
    #[inline]
    pub fn message(&self) -> Option<HeaderValue<'a>> {
        self.header(b"message")
    }
}
