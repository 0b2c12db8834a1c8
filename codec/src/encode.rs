//! Frame encoding into a caller buffer or an `embedded_io` writer.
//!
//! The writers first validate the whole frame and compute its exact length
//! ([`encoded_len`]), then write, so an invalid frame writes nothing to them. The slice
//! encoder takes a one-pass route that validates while it copies (`encode_fast`; for
//! plain headers it first copies them unescaped and checks the written block with SIMD
//! counts, escaping on a second pass only if that finds a byte needing it) and,
//! on anything unusual (tight buffer, invalid frame), falls back to the same
//! validate-then-write route, so all paths return the same bytes and the same errors
//! (property-tested) and a short slice is [`EncodeError::BufferTooSmall`], never a
//! panic. The byte sequence of the validated route is produced once, by the `emit!`
//! macro, shared by the slice, blocking and async paths.
//!
//! Header rules: with escaping (1.1/1.2, not CONNECT/STOMP/CONNECTED) plain headers are
//! escaped and escaped headers copied verbatim; without escaping, escaped headers are
//! unescaped, and a header that would then contain a line break (or a `:` in its name)
//! is refused. `content-length` is written for a non-empty body when the frame has none
//! (unless [`EncodeOptions::add_content_length`] is off) and always when the body holds
//! a NUL, which could not be framed otherwise; an existing one must match the body.
//! A header name may not start with NUL (see the decoder's leniency for the spec's
//! DISCONNECT/RECEIPT examples).

use memchr::{memchr, memchr3};
use wide::u8x16;

use crate::escape::{byte_slice, escape_of, escapes_valid, unescape_byte};
use crate::header::HeaderValue;
use crate::{EncodeError, Frame, HeaderForm, HeaderPart, Version, WriteError};

/// How to encode: the target version and whether to add a missing `content-length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EncodeOptions {
    /// Version of the peer the bytes are for.
    pub version: Version,
    /// Add `content-length` to a frame with a non-empty body that has none. Off for a
    /// relay passing frames through untouched (brokers such as ActiveMQ choose the
    /// message type by the header's presence). A body containing NUL gets the header
    /// regardless.
    pub add_content_length: bool,
}

impl EncodeOptions {
    /// Encode for `version`, adding `content-length` to non-empty bodies.
    pub const fn new(version: Version) -> Self {
        EncodeOptions {
            version,
            add_content_length: true,
        }
    }

    /// Encode for `version` leaving headers as they are (except what framing forces).
    pub const fn passthrough(version: Version) -> Self {
        EncodeOptions {
            version,
            add_content_length: false,
        }
    }
}

impl From<Version> for EncodeOptions {
    fn from(version: Version) -> Self {
        EncodeOptions::new(version)
    }
}

/// The validated shape of one encoding: everything `emit!` needs beyond the frame.
struct Plan {
    len: usize,
    source_escaped: bool,
    target_escapes: bool,
    content_length: Option<([u8; 20], usize)>,
}

impl Plan {
    fn digits(&self) -> &[u8] {
        match &self.content_length {
            Some((d, start)) => &d[*start..],
            None => &[],
        }
    }
}

/// The exact number of bytes [`encode`] writes for `frame`, or why it cannot be encoded.
pub fn encoded_len(
    frame: &Frame<'_>,
    options: impl Into<EncodeOptions>,
) -> Result<usize, EncodeError> {
    plan(frame, options.into()).map(|p| p.len)
}

/// Encodes `frame` into `out`, returning the bytes written. On error the contents of
/// `out` are unspecified (a partial frame may have been written).
pub fn encode(
    frame: &Frame<'_>,
    options: impl Into<EncodeOptions>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let opts = options.into();
    // One pass that validates while it writes, for the usual case of a roomy buffer
    // (first assuming no plain header needs escaping, which the written bytes then
    // prove); the exact two-pass path below handles tight buffers and reports `needed`.
    if let Some(n) = encode_fast(frame, opts, out, true) {
        return Ok(n);
    }
    if let Some(n) = encode_fast(frame, opts, out, false) {
        return Ok(n);
    }
    let plan = plan(frame, opts)?;
    let needed = plan.len;
    let Some(out) = out.get_mut(..needed) else {
        return Err(EncodeError::BufferTooSmall { needed });
    };
    let mut pos = 0;
    emit!(frame, plan, |chunk| {
        // `plan.len` is the sum of the chunks, so this never fails; checked anyway so a
        // bug here is an error, not a panic.
        let dst = out
            .get_mut(pos..pos + chunk.len())
            .ok_or(EncodeError::BufferTooSmall { needed })?;
        dst.copy_from_slice(chunk);
        pos += chunk.len();
    });
    Ok(pos)
}

/// How one header part is carried from the frame's form to the target's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Carry {
    /// Plain source, escaping target.
    Escape,
    /// Plain source, non-escaping target: copy, refusing line breaks (and `:` in names).
    Copy,
    /// Escaped source, escaping target: copy, checking the escapes.
    Verbatim,
    /// Escaped source, non-escaping target: unescape, refusing what cannot be written.
    Unescape,
}

/// The escape letter of a plain byte (0: written as is).
static ESCAPE_LETTER: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b':' as usize] = b'c';
    t[b'\\' as usize] = b'\\';
    t
};

/// Bytes needing attention when copying: 1 = line break, 2 = colon, 3 = backslash.
static ATTENTION: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'\n' as usize] = 1;
    t[b'\r' as usize] = 1;
    t[b':' as usize] = 2;
    t[b'\\' as usize] = 3;
    t
};

const LINE_BREAK: u8 = 1;
const COLON: u8 = 2;
const BACKSLASH: u8 = 4;

/// [`ATTENTION`] as bits, to OR over a whole part.
static ATTENTION_BITS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'\n' as usize] = LINE_BREAK;
    t[b'\r' as usize] = LINE_BREAK;
    t[b':' as usize] = COLON;
    t[b'\\' as usize] = BACKSLASH;
    t
};

/// Writes one header part into `dst`, returning the bytes written, or `None` if it does
/// not fit or cannot be carried (the exact path then names the error). A byte loop: header parts are short, and per-chunk `memcpy` calls
/// cost more than they save.
#[inline]
fn carry(src: &[u8], dst: &mut [u8], carry: Carry, is_name: bool) -> Option<usize> {
    let mut p = 0;
    match carry {
        Carry::Escape => {
            // Most values need no escaping: check with a branch-free pass, then copy.
            if src
                .iter()
                .fold(0, |acc, &b| acc | ESCAPE_LETTER[usize::from(b)])
                == 0
            {
                dst.get_mut(..src.len())?.copy_from_slice(src);
                return Some(src.len());
            }
            for &b in src {
                let letter = ESCAPE_LETTER[usize::from(b)];
                let d = dst.get_mut(p..p + 2)?;
                if letter == 0 {
                    d[0] = b;
                    p += 1;
                } else {
                    d[0] = b'\\';
                    d[1] = letter;
                    p += 2;
                }
            }
        }
        Carry::Copy => {
            for &b in src {
                match ATTENTION[usize::from(b)] {
                    1 => return None,
                    2 if is_name => return None,
                    _ => {}
                }
            }
            dst.get_mut(..src.len())?.copy_from_slice(src);
            p = src.len();
        }
        Carry::Verbatim => {
            // Check, then copy in one go: relayed frames take this path. The common
            // case (no backslash) is settled by one branch-free pass.
            let seen = src
                .iter()
                .fold(0, |acc, &b| acc | ATTENTION_BITS[usize::from(b)]);
            if seen & LINE_BREAK != 0 || (is_name && seen & COLON != 0) {
                return None;
            }
            if seen & BACKSLASH != 0 && !crate::escape::escapes_valid(src) {
                return None;
            }
            dst.get_mut(..src.len())?.copy_from_slice(src);
            p = src.len();
        }
        Carry::Unescape => {
            let mut i = 0;
            while let Some(&b) = src.get(i) {
                let mut out = b;
                match ATTENTION[usize::from(b)] {
                    0 => {}
                    3 => {
                        let plain = unescape_byte(*src.get(i + 1)?)?;
                        if plain == b'\n' || plain == b'\r' || (is_name && plain == b':') {
                            return None;
                        }
                        out = plain;
                        i += 1;
                    }
                    2 if !is_name => {}
                    _ => return None,
                }
                *dst.get_mut(p)? = out;
                p += 1;
                i += 1;
            }
        }
    }
    Some(p)
}

/// The one-pass encoder. `None` on anything unusual (too little room, an invalid frame):
/// the exact path then measures and names the error, so both paths agree on errors.
///
/// With `optimistic`, plain headers bound for an escaping target are copied as they are
/// and the written header block is checked once afterwards: if its line feeds and colons
/// are exactly the ones written between parts and it has no CR or backslash, no part
/// needed escaping. That replaces a table lookup per header byte with a SIMD count per
/// 16 bytes; when the check fails (`None`), the caller encodes again, escaping.
fn encode_fast(
    frame: &Frame<'_>,
    opts: EncodeOptions,
    out: &mut [u8],
    optimistic: bool,
) -> Option<usize> {
    let command = frame.command;
    if !frame.body.is_empty() && !command.allows_body() {
        return None;
    }
    let source_escaped = matches!(frame.form, HeaderForm::Escaped);
    let target_escapes = opts.version.escapes_headers() && command.escapes_headers();
    let mode = match (source_escaped, target_escapes) {
        (false, true) => Carry::Escape,
        (false, false) => Carry::Copy,
        (true, true) => Carry::Verbatim,
        (true, false) => Carry::Unescape,
    };
    let cmd = command.as_bytes();
    let head = out.get_mut(..cmd.len() + 1)?;
    head[..cmd.len()].copy_from_slice(cmd);
    head[cmd.len()] = b'\n';
    let mut p = head.len();
    let mut has_length = false;
    let optimistic = optimistic && mode == Carry::Escape;
    for h in frame.headers {
        // Empty names and names starting with NUL are errors; the exact path says so.
        if h.name.first().is_none_or(|&b| b == 0) {
            return None;
        }
        let dst = out.get_mut(p..)?;
        let (n, v);
        if optimistic {
            n = copy_part(h.name, dst)?;
            *dst.get_mut(n)? = b':';
            v = copy_part(h.value, dst.get_mut(n + 1..)?)?;
        } else {
            n = carry(h.name, dst, mode, true)?;
            *dst.get_mut(n)? = b':';
            v = carry(h.value, dst.get_mut(n + 1..)?, mode, false)?;
        }
        *dst.get_mut(n + 1 + v)? = b'\n';
        if !has_length && h.name == b"content-length" {
            has_length = true;
            if HeaderValue::new(h.value, source_escaped).parse_usize() != Some(frame.body.len()) {
                return None;
            }
        }
        p += n + 1 + v + 1;
    }
    if optimistic {
        let written = census(&out[cmd.len() + 1..p]);
        let separators = u32::try_from(frame.headers.len()).ok()?;
        if written
            != (Census {
                line_feeds: separators,
                colons: separators,
                odd: false,
            })
        {
            return None;
        }
    }
    let body = frame.body;
    if !has_length && !body.is_empty() && (opts.add_content_length || memchr(0, body).is_some()) {
        let (digits, start) = decimal(body.len());
        let digits = &digits[start..];
        let line = out.get_mut(p..p + 16 + digits.len())?;
        line[..15].copy_from_slice(b"content-length:");
        line[15..15 + digits.len()].copy_from_slice(digits);
        line[15 + digits.len()] = b'\n';
        p += line.len();
    }
    let tail = out.get_mut(p..p + body.len() + 2)?;
    tail[0] = b'\n';
    tail[1..1 + body.len()].copy_from_slice(body);
    tail[1 + body.len()] = 0;
    Some(p + body.len() + 2)
}

/// Copies `src` to the start of `dst`, returning its length, or `None` if it does not fit.
/// Header parts are short: fixed-size overlapping copies of the first and last bytes
/// compile to a few moves, where `copy_from_slice` of a variable length calls `memcpy`.
#[inline]
fn copy_part(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    let n = src.len();
    let dst = dst.get_mut(..n)?;
    macro_rules! ends {
        ($w:literal) => {{
            *dst.first_chunk_mut::<$w>()? = *src.first_chunk::<$w>()?;
            *dst.last_chunk_mut::<$w>()? = *src.last_chunk::<$w>()?;
        }};
    }
    match n {
        0 => {}
        1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => ends!(4),
        8..=15 => ends!(8),
        16..=32 => ends!(16),
        _ => dst.copy_from_slice(src),
    }
    Some(n)
}

/// What [`census`] counts in a written header block.
#[derive(Debug, PartialEq, Eq)]
struct Census {
    line_feeds: u32,
    colons: u32,
    /// Any CR or backslash.
    odd: bool,
}

/// Counts line feeds and colons in `block` and looks for CRs and backslashes, 16 bytes
/// at a time.
fn census(block: &[u8]) -> Census {
    let (lf, colon) = (u8x16::splat(b'\n'), u8x16::splat(b':'));
    let (cr, backslash) = (u8x16::splat(b'\r'), u8x16::splat(b'\\'));
    let mut count = Census {
        line_feeds: 0,
        colons: 0,
        odd: false,
    };
    let mut add = |bytes: [u8; 16]| {
        let v = u8x16::new(bytes);
        count.line_feeds += v.simd_eq(lf).to_bitmask().count_ones();
        count.colons += v.simd_eq(colon).to_bitmask().count_ones();
        count.odd |= (v.simd_eq(cr) | v.simd_eq(backslash)).to_bitmask() != 0;
    };
    let mut chunks = block.chunks_exact(16);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(chunk);
        add(bytes);
    }
    let mut tail = [0u8; 16];
    copy_part(chunks.remainder(), &mut tail);
    add(tail);
    count
}

/// Writes `frame` to a blocking `embedded_io` writer, returning the bytes written. The frame
/// goes out in many small writes; give it a buffered writer (or [`encode`] into a slice).
pub fn write<W: embedded_io::Write>(
    frame: &Frame<'_>,
    options: impl Into<EncodeOptions>,
    w: &mut W,
) -> Result<usize, WriteError<W::Error>> {
    let plan = plan(frame, options.into())?;
    emit!(frame, plan, |chunk| w
        .write_all(chunk)
        .map_err(WriteError::Io)?);
    Ok(plan.len)
}

/// Writes `frame` to an async `embedded_io_async` writer, returning the bytes written.
/// Like [`write()`], prefer a buffered writer.
pub async fn write_async<W: embedded_io_async::Write>(
    frame: &Frame<'_>,
    options: impl Into<EncodeOptions>,
    w: &mut W,
) -> Result<usize, WriteError<W::Error>> {
    let plan = plan(frame, options.into())?;
    emit!(frame, plan, |chunk| w
        .write_all(chunk)
        .await
        .map_err(WriteError::Io)?);
    Ok(plan.len)
}

/// Validates `frame` for `opts` and measures it.
fn plan(frame: &Frame<'_>, opts: EncodeOptions) -> Result<Plan, EncodeError> {
    let command = frame.command;
    if !frame.body.is_empty() && !command.allows_body() {
        return Err(EncodeError::BodyNotAllowed(command));
    }
    let source_escaped = matches!(frame.form, HeaderForm::Escaped);
    let target_escapes = opts.version.escapes_headers() && command.escapes_headers();

    let mut len = command.as_bytes().len() + 1;
    for (index, h) in frame.headers.iter().enumerate() {
        if h.name.is_empty() {
            return Err(EncodeError::EmptyHeaderName { index });
        }
        let unencodable = |part| EncodeError::Unencodable { index, part };
        // A line starting with NUL ends the headers and the frame (the decoder accepts
        // the spec examples that omit the blank line), so no name may start with one.
        if h.name[0] == 0 {
            return Err(unencodable(HeaderPart::Name));
        }
        len += 2 + match (source_escaped, target_escapes) {
            (false, true) => escaped_len(h.name) + escaped_len(h.value),
            (false, false) => {
                if memchr3(b':', b'\n', b'\r', h.name).is_some() {
                    return Err(unencodable(HeaderPart::Name));
                }
                if memchr2_nl(h.value) {
                    return Err(unencodable(HeaderPart::Value));
                }
                h.name.len() + h.value.len()
            }
            (true, _) => {
                // A raw `:` in an escaped name would move the separator; raw line breaks
                // or bad escapes would break the framing.
                if memchr3(b':', b'\n', b'\r', h.name).is_some()
                    || memchr2_nl(h.value)
                    || !escapes_valid(h.name)
                    || !escapes_valid(h.value)
                {
                    return Err(EncodeError::InvalidEscape { index });
                }
                if target_escapes {
                    h.name.len() + h.value.len()
                } else {
                    if has_escape_of(h.name, b"cnr") {
                        return Err(unencodable(HeaderPart::Name));
                    }
                    if has_escape_of(h.value, b"nr") {
                        return Err(unencodable(HeaderPart::Value));
                    }
                    HeaderValue::new(h.name, true).unescaped_len()
                        + HeaderValue::new(h.value, true).unescaped_len()
                }
            }
        };
    }

    let content_length = match frame.header(b"content-length") {
        Some(v) => {
            if v.parse_usize() != Some(frame.body.len()) {
                return Err(EncodeError::ContentLengthMismatch);
            }
            None
        }
        None if frame.body.is_empty() => None,
        None if opts.add_content_length || memchr(0, frame.body).is_some() => {
            let d = decimal(frame.body.len());
            len += b"content-length:\n".len() + (d.0.len() - d.1);
            Some(d)
        }
        None => None,
    };
    len += 1 + frame.body.len() + 1;
    Ok(Plan {
        len,
        source_escaped,
        target_escapes,
        content_length,
    })
}

fn memchr2_nl(b: &[u8]) -> bool {
    memchr::memchr2(b'\n', b'\r', b).is_some()
}

fn escaped_len(plain: &[u8]) -> usize {
    crate::escape::escaped_len(plain)
}

/// Whether an (assumed valid) escaped string holds an escape with one of `letters`.
fn has_escape_of(raw: &[u8], letters: &[u8]) -> bool {
    let mut rest = raw;
    while let Some(i) = memchr(b'\\', rest) {
        match rest.get(i + 1) {
            Some(l) if letters.contains(l) => return true,
            _ => rest = rest.get(i + 2..).unwrap_or(&[]),
        }
    }
    false
}

/// `n` in ASCII decimal, right-aligned: the digits are `buf[start..]`.
fn decimal(mut n: usize) -> ([u8; 20], usize) {
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return (buf, start);
        }
    }
}

/// Splits plain bytes at the bytes that need escaping.
#[inline]
fn next_special(plain: &[u8]) -> Option<usize> {
    plain.iter().position(|&b| escape_of(b).is_some())
}

/// Emits the frame's bytes as a sequence of chunks; `$put` is a block run for each chunk
/// bound to `$c` (it may `.await` and `?`, as this expands inline).
macro_rules! emit {
    ($frame:expr, $plan:expr, |$c:ident| $put:expr) => {{
        let frame = $frame;
        let plan = &$plan;
        macro_rules! put {
            ($bytes:expr) => {{
                let $c: &[u8] = $bytes;
                $put;
            }};
        }
        // Escapes plain bytes piecewise.
        macro_rules! put_escaped {
            ($plain:expr) => {{
                let mut rest: &[u8] = $plain;
                while let Some(i) = next_special(rest) {
                    if i > 0 {
                        put!(&rest[..i]);
                    }
                    put!(escape_of(rest[i]).map_or(&b""[..], |e| &e[..]));
                    rest = &rest[i + 1..];
                }
                if !rest.is_empty() {
                    put!(rest);
                }
            }};
        }
        // Unescapes escaped bytes piecewise.
        macro_rules! put_unescaped {
            ($raw:expr) => {{
                let mut rest: &[u8] = $raw;
                while let Some(i) = memchr(b'\\', rest) {
                    if i > 0 {
                        put!(&rest[..i]);
                    }
                    let letter = rest.get(i + 1).copied().unwrap_or(b'\\');
                    put!(byte_slice(unescape_byte(letter).unwrap_or(b'\\')));
                    rest = rest.get(i + 2..).unwrap_or(&[]);
                }
                if !rest.is_empty() {
                    put!(rest);
                }
            }};
        }
        put!(frame.command.as_bytes());
        put!(b"\n");
        for h in frame.headers {
            match (plan.source_escaped, plan.target_escapes) {
                (false, true) => {
                    put_escaped!(h.name);
                    put!(b":");
                    put_escaped!(h.value);
                }
                (true, false) => {
                    put_unescaped!(h.name);
                    put!(b":");
                    put_unescaped!(h.value);
                }
                _ => {
                    put!(h.name);
                    put!(b":");
                    put!(h.value);
                }
            }
            put!(b"\n");
        }
        if plan.content_length.is_some() {
            put!(b"content-length:");
            put!(plan.digits());
            put!(b"\n");
        }
        put!(b"\n");
        if !frame.body.is_empty() {
            put!(frame.body);
        }
        put!(b"\0");
    }};
}
use emit;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, Header};

    fn enc(frame: &Frame<'_>, opts: EncodeOptions) -> Result<([u8; 256], usize), EncodeError> {
        let mut out = [0u8; 256];
        let n = encode(frame, opts, &mut out)?;
        assert_eq!(encoded_len(frame, opts), Ok(n));
        Ok((out, n))
    }

    #[test]
    fn escapes_plain_headers_and_adds_content_length() {
        let h = [Header::new(b"a:b", b"x\ny\\")];
        let f = Frame::new(Command::Send, &h, b"hi");
        let (out, n) = enc(&f, Version::V1_2.into()).unwrap();
        assert_eq!(
            &out[..n],
            b"SEND\na\\cb:x\\ny\\\\\ncontent-length:2\n\nhi\0"
        );
        let (out, n) = enc(&f, EncodeOptions::passthrough(Version::V1_2)).unwrap();
        assert_eq!(&out[..n], b"SEND\na\\cb:x\\ny\\\\\n\nhi\0");
    }

    #[test]
    fn refuses_what_cannot_be_framed() {
        let h = [Header::new(b"login", b"a\nb")];
        let f = Frame::new(Command::Connect, &h, b"");
        assert_eq!(
            enc(&f, Version::V1_2.into()).unwrap_err(),
            EncodeError::Unencodable {
                index: 0,
                part: HeaderPart::Value
            }
        );
        let f = Frame::new(Command::Subscribe, &[], b"x");
        assert_eq!(
            enc(&f, Version::V1_2.into()).unwrap_err(),
            EncodeError::BodyNotAllowed(Command::Subscribe)
        );
        let f = Frame::new(Command::Send, &[], b"x");
        assert_eq!(
            encode(&f, Version::V1_2, &mut [0u8; 4]),
            Err(EncodeError::BufferTooSmall { needed: 25 })
        );
    }

    #[test]
    fn nul_in_body_forces_content_length() {
        let f = Frame::new(Command::Send, &[], b"a\0b");
        let (out, n) = enc(&f, EncodeOptions::passthrough(Version::V1_0)).unwrap();
        assert_eq!(&out[..n], b"SEND\ncontent-length:3\n\na\0b\0");
    }
}
