//! STOMP 1.1/1.2 header escaping: `\r` `\n` `\c` `\\` and nothing else.
//!
//! The same table serves 1.1 and 1.2. 1.1 defines no `\r` escape, but since every
//! version here accepts `\r\n` as an EOL a raw CR cannot travel in a header, so the
//! encoder writes `\r` for it and the decoder accepts `\r` in 1.1 too (documented leniency).

/// The byte an escape letter (the byte after `\`) stands for, or `None` if undefined.
#[inline]
pub(crate) const fn unescape_byte(letter: u8) -> Option<u8> {
    match letter {
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b'c' => Some(b':'),
        b'\\' => Some(b'\\'),
        _ => None,
    }
}

/// The escape sequence for a plain byte, or `None` when it is written as is.
#[inline]
pub(crate) const fn escape_of(b: u8) -> Option<&'static [u8; 2]> {
    match b {
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        b':' => Some(b"\\c"),
        b'\\' => Some(b"\\\\"),
        _ => None,
    }
}

/// One plain byte as a static slice (for unescaped output written piecewise).
#[inline]
pub(crate) const fn byte_slice(b: u8) -> &'static [u8] {
    match b {
        b'\n' => b"\n",
        b'\r' => b"\r",
        b':' => b":",
        _ => b"\\",
    }
}

/// Whether every `\` in `raw` starts a defined escape.
pub(crate) fn escapes_valid(raw: &[u8]) -> bool {
    let mut rest = raw;
    while let Some(i) = memchr::memchr(b'\\', rest) {
        match rest.get(i + 1) {
            Some(&l) if unescape_byte(l).is_some() => rest = &rest[i + 2..],
            _ => return false,
        }
    }
    true
}

/// Number of escape pairs in a valid escaped string (each shrinks the text by one byte).
pub(crate) fn count_escapes(raw: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = raw;
    while let Some(i) = memchr::memchr(b'\\', rest) {
        n += 1;
        rest = rest.get(i + 2..).unwrap_or(&[]);
    }
    n
}

/// Bytes needed to escape `plain`.
pub(crate) fn escaped_len(plain: &[u8]) -> usize {
    plain.len() + plain.iter().filter(|&&b| escape_of(b).is_some()).count()
}
