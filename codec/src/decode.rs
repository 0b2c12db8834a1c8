//! Incremental, zero-copy frame decoding.
//!
//! [`Decoder::decode`] looks at the start of the caller's receive buffer and reports one
//! of: a heart-beat, a complete frame and how many bytes it used, `Partial` (read more
//! and call again with the grown buffer), or an error. Nothing is kept between calls, so
//! a host may split the stream anywhere. Each call re-parses the buffered prefix; the
//! limits bound that work and the buffer a host must keep.
//!
//! Invariants: every limit is enforced on partial input too (a prefix that cannot
//! become a frame within the limits is an error immediately); decoded header bytes of an
//! escaping frame contain only valid escapes and no CR/LF; the verdict (frame, error or
//! `Partial`) never depends on where the stream was split, since a prefix is only refused
//! with the error the whole input would get; nothing here panics on any input.

use memchr::{memchr, memchr2};

use crate::error::limit;
use crate::escape::unescape_byte;
use crate::header::parse_decimal;
use crate::scan::{Lines, NO_COLON};
use crate::{Command, DecodeError, Frame, Header, HeaderForm, Limit, Limits, Version};

/// Outcome of a decode step that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Status<T> {
    /// A complete item.
    Complete(T),
    /// The buffer ends before the item does: read more bytes and call again.
    Partial,
}

impl<T> Status<T> {
    /// The complete item, if any.
    pub fn complete(self) -> Option<T> {
        match self {
            Status::Complete(t) => Some(t),
            Status::Partial => None,
        }
    }

    /// Whether more bytes are needed.
    pub const fn is_partial(&self) -> bool {
        matches!(self, Status::Partial)
    }
}

/// What a complete decode step found at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Decoded<'a> {
    /// A frame.
    Frame(Frame<'a>),
    /// One heart-beat: exactly one EOL (`\n`, consumed length 1, or `\r\n`, length 2).
    /// A run of EOLs (including the optional EOLs after a frame's NUL) comes back as
    /// successive heart-beats, one per call.
    HeartBeat,
}

impl<'a> Decoded<'a> {
    /// The frame, if this is one.
    pub fn frame(self) -> Option<Frame<'a>> {
        match self {
            Decoded::Frame(f) => Some(f),
            Decoded::HeartBeat => None,
        }
    }
}

/// A frame decoder for one protocol version with its limits. Cheap to copy; holds no state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Decoder {
    /// Version whose escaping rules apply (the negotiated one; use 1.2 before CONNECT,
    /// whose headers are never escaped anyway).
    pub version: Version,
    /// Size limits.
    pub limits: Limits,
}

impl Decoder {
    /// A decoder with [`Limits::DEFAULT`].
    pub const fn new(version: Version) -> Self {
        Decoder {
            version,
            limits: Limits::DEFAULT,
        }
    }

    /// A decoder with the given limits.
    pub const fn with_limits(version: Version, limits: Limits) -> Self {
        Decoder { version, limits }
    }

    /// Decodes the heart-beat or frame at the start of `buf`, storing headers in `headers`.
    ///
    /// On `Complete((item, n))` the caller drops `n` bytes (a frame's count includes its
    /// NUL but not the EOLs that may follow; those are heart-beats). Header storage shorter
    /// than the frame's header count gives [`DecodeError::LimitExceeded`] with
    /// [`Limit::HeaderCount`] and the storage length as `max`.
    pub fn decode<'h, 'b: 'h>(
        &self,
        buf: &'b [u8],
        headers: &'h mut [Header<'b>],
    ) -> Result<Status<(Decoded<'h>, usize)>, DecodeError> {
        self.decode_with::<true>(buf, headers)
    }

    /// [`Decoder::decode`], with the header fast path on or (in tests, to check it
    /// against the exact path) off.
    #[inline]
    fn decode_with<'h, 'b: 'h, const FAST: bool>(
        &self,
        buf: &'b [u8],
        headers: &'h mut [Header<'b>],
    ) -> Result<Status<(Decoded<'h>, usize)>, DecodeError> {
        match buf.first() {
            None => return Ok(Status::Partial),
            Some(b'\n') => return Ok(Status::Complete((Decoded::HeartBeat, 1))),
            Some(b'\r') => {
                return match buf.get(1) {
                    None => Ok(Status::Partial),
                    Some(b'\n') => Ok(Status::Complete((Decoded::HeartBeat, 2))),
                    Some(_) => Err(DecodeError::LoneCarriageReturn),
                }
            }
            Some(_) => {}
        }
        match self.frame::<FAST>(buf, headers)? {
            Some((frame, n)) => Ok(Status::Complete((Decoded::Frame(frame), n))),
            None => Ok(Status::Partial),
        }
    }

    fn frame<'h, 'b: 'h, const FAST: bool>(
        &self,
        buf: &'b [u8],
        storage: &'h mut [Header<'b>],
    ) -> Result<Option<(Frame<'h>, usize)>, DecodeError> {
        let limits = &self.limits;
        let partial = || {
            // Still incomplete, so the frame is at least one byte longer than what is here.
            if buf.len() >= limits.max_frame_size {
                Err(limit(Limit::FrameSize, limits.max_frame_size))
            } else {
                Ok(None)
            }
        };

        // The command line is at most the longest command plus CRLF; looking no further
        // (and never past the frame limit) keeps the verdict on garbage split-independent.
        let head = &buf[..buf.len().min(MAX_COMMAND_LINE).min(limits.max_frame_size)];
        let (mut lines, lf) = Lines::start(buf, head.len(), limits);
        let Some(lf) = lf else {
            // Garbage is refused as soon as it cannot start a command, not after a full line.
            let pending = head.strip_suffix(b"\r").unwrap_or(head);
            if let Some(e) = command_line_error(pending) {
                return Err(e);
            }
            return partial();
        };
        let cmd_line = head[..lf].strip_suffix(b"\r").unwrap_or(&head[..lf]);
        let command = Command::parse(cmd_line)
            .ok_or_else(|| command_line_error(cmd_line).unwrap_or(DecodeError::InvalidCommand))?;
        let mut pos = lf + 1;
        if pos >= limits.max_frame_size {
            return Err(limit(Limit::FrameSize, limits.max_frame_size));
        }
        let escaped = self.version.escapes_headers() && command.escapes_headers();
        let cap = storage.len().min(limits.max_headers);

        let mut count = 0;
        let mut content_length = None;
        let mut blank_line_omitted = false;
        let run_storage = &mut storage[..cap];
        loop {
            if FAST
                && lines.run(
                    buf,
                    &mut pos,
                    run_storage,
                    &mut count,
                    &mut content_length,
                    limits,
                )
            {
                break;
            }
            // The line the run left, read exactly. The spec's own DISCONNECT and RECEIPT
            // examples end the headers with the NUL and no blank line; accept that when
            // no body is announced.
            if buf.get(pos) == Some(&0) && content_length.unwrap_or(0) == 0 {
                blank_line_omitted = true;
                break;
            }
            let Some(line) = lines.next(buf, pos, limits)? else {
                return partial();
            };
            let text = &buf[pos..line.end];
            pos = line.next;
            if text.is_empty() {
                break;
            }
            let colon = match line.colon {
                NO_COLON => return Err(DecodeError::MissingColon),
                0 => return Err(DecodeError::EmptyHeaderName),
                c => c,
            };
            if count == cap {
                return Err(limit(Limit::HeaderCount, cap));
            }
            let (name, value) = (&text[..colon], &text[colon + 1..]);
            if content_length.is_none() && name == b"content-length" {
                content_length =
                    Some(parse_decimal(value).ok_or(DecodeError::InvalidContentLength)?);
            }
            run_storage[count] = Header { name, value };
            count += 1;
        }

        if lines.needs_check() {
            check_block(&buf[lf + 1..pos], escaped)?;
        }
        let body_start = pos;
        if body_start >= limits.max_frame_size {
            return Err(limit(Limit::FrameSize, limits.max_frame_size));
        }
        // Most body bytes this frame may still have, under both limits.
        let room = limits.max_frame_size - body_start - 1;
        let avail = &buf[body_start..];
        let body = match content_length {
            _ if blank_line_omitted => &avail[..0],
            Some(n) => {
                if n > limits.max_body {
                    return Err(limit(Limit::BodySize, limits.max_body));
                }
                if n > room {
                    return Err(limit(Limit::FrameSize, limits.max_frame_size));
                }
                if n > 0 && !command.allows_body() {
                    return Err(DecodeError::BodyNotAllowed(command));
                }
                match avail.get(n) {
                    None => return Ok(None),
                    Some(0) => &avail[..n],
                    Some(_) => return Err(DecodeError::MissingNulAfterBody),
                }
            }
            None => {
                if !command.allows_body() && avail.first().is_some_and(|&b| b != 0) {
                    return Err(DecodeError::BodyNotAllowed(command));
                }
                let cap = room.min(limits.max_body);
                let window = &avail[..avail.len().min(cap.saturating_add(1))];
                match memchr(0, window) {
                    Some(i) => &avail[..i],
                    None if avail.len() > cap => {
                        return Err(if cap == limits.max_body {
                            limit(Limit::BodySize, limits.max_body)
                        } else {
                            limit(Limit::FrameSize, limits.max_frame_size)
                        });
                    }
                    None => return Ok(None),
                }
            }
        };

        let storage: &'h [Header<'b>] = storage;
        let frame = Frame {
            command,
            headers: &storage[..count],
            body,
            form: if escaped {
                HeaderForm::Escaped
            } else {
                HeaderForm::Plain
            },
        };
        Ok(Some((frame, body_start + body.len() + 1)))
    }
}

impl Default for Decoder {
    /// A STOMP 1.2 decoder with default limits.
    fn default() -> Self {
        Decoder::new(Version::V1_2)
    }
}

/// Longest command line: `UNSUBSCRIBE` and CRLF.
const MAX_COMMAND_LINE: usize = 13;

/// The error for a command line (complete, or the part buffered so far) that is not a
/// command, or `None` if it may still become one. Judged only on the text before the
/// first CR, so a prefix and the complete line always get the same verdict.
fn command_line_error(text: &[u8]) -> Option<DecodeError> {
    let before_cr = memchr(b'\r', text).unwrap_or(text.len());
    if !Command::ALL
        .iter()
        .any(|c| c.as_bytes().starts_with(&text[..before_cr]))
    {
        return Some(DecodeError::InvalidCommand);
    }
    (before_cr < text.len()).then_some(DecodeError::LoneCarriageReturn)
}

/// Checks a complete header block (command line to blank line, EOLs included): every CR
/// must end a line, and in escaping frames every `\` must start a defined escape (a `\`
/// before the separating colon or the EOL is invalid too, as neither is an escape letter).
#[inline]
fn check_block(block: &[u8], escaped: bool) -> Result<(), DecodeError> {
    let mut i = 0;
    while let Some(j) = memchr2(b'\r', b'\\', &block[i..]) {
        let at = i + j;
        let next = block.get(at + 1).copied();
        if block[at] == b'\r' {
            if next != Some(b'\n') {
                return Err(DecodeError::LoneCarriageReturn);
            }
            i = at + 2;
        } else if !escaped {
            i = at + 1;
        } else if next.is_some_and(|l| unescape_byte(l).is_some()) {
            i = at + 2;
        } else {
            return Err(DecodeError::InvalidEscape);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{format, string::String, vec, vec::Vec};

    fn decode_one(version: Version, wire: &[u8]) -> Result<Status<(usize, usize)>, DecodeError> {
        let mut h = [Header::EMPTY; 8];
        Decoder::new(version).decode(wire, &mut h).map(|s| match s {
            Status::Complete((Decoded::Frame(f), n)) => Status::Complete((f.headers.len(), n)),
            Status::Complete((Decoded::HeartBeat, n)) => Status::Complete((usize::MAX, n)),
            Status::Partial => Status::Partial,
        })
    }

    #[test]
    fn heart_beats_are_one_eol_each() {
        assert_eq!(
            decode_one(Version::V1_2, b"\n\n"),
            Ok(Status::Complete((usize::MAX, 1)))
        );
        assert_eq!(
            decode_one(Version::V1_2, b"\r\nX"),
            Ok(Status::Complete((usize::MAX, 2)))
        );
        assert_eq!(decode_one(Version::V1_2, b"\r"), Ok(Status::Partial));
        assert_eq!(
            decode_one(Version::V1_2, b"\rX"),
            Err(DecodeError::LoneCarriageReturn)
        );
    }

    #[test]
    fn escapes_are_checked_only_where_they_apply() {
        let bad = b"SEND\ndestination:/a\\tb\n\n\0";
        assert_eq!(
            decode_one(Version::V1_2, bad),
            Err(DecodeError::InvalidEscape)
        );
        assert_eq!(
            decode_one(Version::V1_0, bad),
            Ok(Status::Complete((1, bad.len())))
        );
        let connect = b"CONNECT\nlogin:a\\tb\n\n\0";
        assert_eq!(
            decode_one(Version::V1_2, connect),
            Ok(Status::Complete((1, connect.len())))
        );
    }

    #[test]
    fn header_storage_capacity_is_a_header_count_limit() {
        let mut h = [Header::EMPTY; 1];
        let err = Decoder::new(Version::V1_2).decode(b"SEND\na:1\nb:2\n\n\0", &mut h);
        assert_eq!(err, Err(limit(Limit::HeaderCount, 1)));
    }
    /// Pieces of header lines, some around the 64-byte block width.
    fn piece() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            prop::sample::select(vec![
                &b"destination:/topic/chat.general"[..],
                b"content-length:3",
                b"content-length:0",
                b"content-length:x",
                b"k",
                b":",
                b"\r",
                b"\0",
                b"\\",
                b"\\c",
                b"\\t",
                b"\n",
            ])
            .prop_map(|s| s.to_vec()),
            (1usize..90).prop_map(|n| vec![b'x'; n]),
            any::<u8>().prop_map(|b| vec![b]),
        ]
    }

    /// STOMP-looking frames: a command, lines of pieces, a blank line, a body, a NUL,
    /// heart-beats; any part may be missing or wrong.
    fn wire() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let command = prop::sample::select(vec![
            &b"SEND\n"[..],
            b"MESSAGE\n",
            b"CONNECT\r\n",
            b"RECEIPT\n",
            b"SE",
        ]);
        let eol = prop::sample::select(vec![&b"\n"[..], b"\r\n", b"", b"\0"]);
        let line = (prop::collection::vec(piece(), 0..4), eol.clone())
            .prop_map(|(p, e)| [p.concat(), e.to_vec()].concat());
        let frame = (
            command,
            prop::collection::vec(line, 0..8),
            eol,
            prop::sample::select(vec![&b""[..], b"abc", b"a\0c"]),
            prop::sample::select(vec![&b"\0"[..], b"\0\n", b""]),
        )
            .prop_map(|(c, lines, blank, body, end)| {
                [
                    c.to_vec(),
                    lines.concat(),
                    blank.to_vec(),
                    body.to_vec(),
                    end.to_vec(),
                ]
                .concat()
            });
        prop::collection::vec(frame, 1..4).prop_map(|f| f.concat())
    }

    /// Every item (or the verdict that ends the stream) decoding `wire` gives.
    fn items<const FAST: bool>(d: &Decoder, mut wire: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while !wire.is_empty() {
            let mut h = [Header::EMPTY; 12];
            match d.decode_with::<FAST>(wire, &mut h) {
                Ok(Status::Complete((item, used))) => {
                    out.push(format!("{item:?} {used}"));
                    wire = &wire[used..];
                }
                other => {
                    out.push(format!("{other:?}"));
                    break;
                }
            }
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        #[test]
        fn the_fast_path_gives_the_exact_paths_verdicts(
            wire in wire(),
            limits in proptest::sample::select(vec![
                Limits::DEFAULT,
                Limits { max_frame_size: 48, max_headers: 3, max_header_line: 16, max_body: 8 },
                Limits { max_frame_size: 130, max_headers: 5, max_header_line: 64, max_body: 64 },
                Limits { max_frame_size: 200, max_headers: 64, max_header_line: 63, max_body: 200 },
            ]),
        ) {
            for v in Version::ALL {
                let d = Decoder::with_limits(v, limits);
                proptest::prop_assert_eq!(items::<true>(&d, &wire), items::<false>(&d, &wire));
            }
        }
    }
}
