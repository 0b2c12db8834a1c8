//! Finding header lines: where each ends and where its first colon is.
//!
//! The fast path classifies 64 bytes at once ([`Block`]: SSE2 on x86-64, NEON on
//! aarch64, portable code elsewhere, through `wide`, so this crate stays free of
//! `unsafe`) into one bit per byte for line feeds, colons and the bytes whose meaning
//! depends on where they are (CR, backslash, NUL). [`Lines::run`] walks those bits and
//! stores every plain `name:value` line directly: a few bit operations a line instead of
//! a `memchr` call for its line feed plus a scalar walk to its colon, which was most of
//! the decode time of a typical frame (measured with `cargo bench -p stomp-relay-codec`).
//! Any other line (one that does not end inside a block, comes near a limit, holds a CR,
//! backslash or NUL, lacks a name or colon, or is over the header count) goes to the
//! exact path, [`Lines::next`], which alone decides errors and `Partial`, so both paths
//! give the same verdicts; a unit test in `decode.rs` checks that on generated input.
//!
//! Invariants: bit `i` of each mask describes `buf[base + i]`; bytes past the end of the
//! buffer read as [`PAD`], which is in no class, so a mask never reports a byte that is
//! not there; a [`Lines`] cursor has cleared every bit before the line it will read next.

use memchr::memchr;
use wide::u8x16;

use crate::error::limit;
use crate::header::parse_decimal;
use crate::{DecodeError, Header, Limit, Limits};

/// Bytes classified at once.
const WIDTH: usize = 64;

/// What the bytes after the end of the buffer read as: in no class.
const PAD: u8 = b' ';

/// Class masks of the [`WIDTH`] bytes from `base`.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// Buffer offset of bit 0.
    base: usize,
    /// Line feeds.
    lf: u64,
    /// Colons.
    colon: u64,
    /// Carriage returns, backslashes and NULs: bytes whose meaning depends on where
    /// they are, which only the exact path and block check may judge.
    special: u64,
}

impl Block {
    /// Classifies `buf[base..base + WIDTH]`, reading missing bytes as [`PAD`].
    #[inline(always)]
    fn at(buf: &[u8], base: usize) -> Block {
        let rest = buf.get(base..).unwrap_or(&[]);
        let (lf, colon, special) = match rest.first_chunk::<WIDTH>() {
            Some(chunk) => classify(chunk),
            None => {
                let mut padded = [PAD; WIDTH];
                padded[..rest.len()].copy_from_slice(rest);
                classify(&padded)
            }
        };
        Block {
            base,
            lf,
            colon,
            special,
        }
    }

    /// Clears the block's bits up to and including offset `i`.
    #[inline]
    fn consume(&mut self, i: usize) {
        let spent = bits_through(i);
        self.lf &= !spent;
        self.colon &= !spent;
        self.special &= !spent;
    }

    /// Whether the block reaches the end of `buf` (so a missing line feed may just not
    /// be buffered yet).
    #[inline]
    fn reaches_end(&self, buf: &[u8]) -> bool {
        self.base + WIDTH >= buf.len()
    }
}

/// Bits `0..=i` set (`i` < 64), without a branch.
#[inline]
const fn bits_through(i: usize) -> u64 {
    u64::MAX >> (63 - i)
}

#[inline]
fn classify(chunk: &[u8; WIDTH]) -> (u64, u64, u64) {
    let (lf_byte, colon_byte) = (u8x16::splat(b'\n'), u8x16::splat(b':'));
    let (cr_byte, backslash_byte) = (u8x16::splat(b'\r'), u8x16::splat(b'\\'));
    let nul_byte = u8x16::splat(0);
    let (mut lf, mut colon, mut special) = (0u64, 0u64, 0u64);
    for (i, lane) in chunk.chunks_exact(16).enumerate() {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(lane);
        let v = u8x16::new(bytes);
        let shift = 16 * i;
        lf |= u64::from(v.simd_eq(lf_byte).to_bitmask()) << shift;
        colon |= u64::from(v.simd_eq(colon_byte).to_bitmask()) << shift;
        let either = v.simd_eq(cr_byte) | v.simd_eq(backslash_byte) | v.simd_eq(nul_byte);
        special |= u64::from(either.to_bitmask()) << shift;
    }
    (lf, colon, special)
}

/// Where one line starts and ends and what the decoder needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line {
    /// End of the text (EOL excluded), absolute.
    pub end: usize,
    /// Start of the next line, absolute.
    pub next: usize,
    /// Offset of the first `:` in the text, or [`NO_COLON`].
    pub colon: usize,
}

/// [`Line::colon`] of a line without one.
pub(crate) const NO_COLON: usize = usize::MAX;

/// Walks the lines of a header block, one [`Block`] at a time.
pub(crate) struct Lines {
    block: Block,
    /// No line ending inside `block` can reach a limit, so the fast path need not check.
    clear_of_limits: bool,
    /// Some line was read by the exact path, so the caller must run its exact
    /// header-block check (the run leaves every line holding a CR or backslash to it).
    needs_check: bool,
}

impl Lines {
    /// A cursor for the lines after the command line, which ends with the line feed at
    /// `lf`; returns it with the command line's line feed (or `None`, when the first
    /// line feed is not within `max_command_line` bytes).
    #[inline]
    pub fn start(buf: &[u8], max_command_line: usize, limits: &Limits) -> (Lines, Option<usize>) {
        let mut lines = Lines {
            block: Block::at(buf, 0),
            clear_of_limits: false,
            needs_check: false,
        };
        lines.clear_of_limits = Self::clear_of_limits(&lines.block, limits);
        let lf = lines.block.lf.trailing_zeros() as usize;
        if lf >= max_command_line {
            return (lines, None);
        }
        lines.block.consume(lf);
        (lines, Some(lf))
    }

    /// Whether the caller must run its exact header-block check.
    #[inline]
    pub fn needs_check(&self) -> bool {
        self.needs_check
    }

    /// Stores the plain header lines from `*pos` on, advancing `*pos` and `*count`.
    /// Returns `true` after consuming the blank line that ends the headers; returns
    /// `false` at the first line it leaves to [`Lines::next`]: one whose line feed is
    /// not in a block clear of the limits, whose text holds a CR, backslash or NUL
    /// (escapes, the frame's NUL), that lacks a colon or a name, that would overflow
    /// `storage`, or a first `content-length` that is not a number. Parses the first
    /// `content-length` into `content_length`.
    #[inline]
    pub fn run<'b>(
        &mut self,
        buf: &'b [u8],
        pos: &mut usize,
        storage: &mut [Header<'b>],
        count: &mut usize,
        content_length: &mut Option<usize>,
        limits: &Limits,
    ) -> bool {
        // Locals, not fields, so the loop keeps them in registers.
        let (mut at, mut n, mut length) = (*pos, *count, *content_length);
        let (mut block, mut clear) = (self.block, self.clear_of_limits);
        let blank = loop {
            if block.lf == 0 {
                if block.reaches_end(buf) {
                    break false;
                }
                block = Block::at(buf, at);
                clear = Self::clear_of_limits(&block, limits);
                if block.lf == 0 {
                    break false;
                }
            }
            if !clear {
                break false;
            }
            let i = block.lf.trailing_zeros() as usize;
            let mut end = block.base + i;
            // Bits before `at` are spent, so these are the text's (and the CR's).
            let odd = block.special & ((1u64 << i) - 1);
            if odd != 0 {
                // Only a CR ending the line is plain.
                if odd != 1 << (i - 1) || buf[end - 1] != b'\r' {
                    break false;
                }
                end -= 1;
            }
            let next = block.base + i + 1;
            if end == at {
                block.consume(i);
                at = next;
                break true;
            }
            let colon_at = block.base + block.colon.trailing_zeros() as usize;
            if colon_at >= end || colon_at == at || n == storage.len() {
                break false;
            }
            let (name, value) = (&buf[at..colon_at], &buf[colon_at + 1..end]);
            if length.is_none() && name == b"content-length" {
                match parse_decimal(value) {
                    Some(len) => length = Some(len),
                    None => break false,
                }
            }
            storage[n] = Header { name, value };
            n += 1;
            block.consume(i);
            at = next;
        };
        (*pos, *count, *content_length) = (at, n, length);
        (self.block, self.clear_of_limits) = (block, clear);
        blank
    }

    /// The line starting at `start` (the previous line's `next`), found by the exact
    /// path: `None` if its line feed is not buffered yet, an error if it breaks a line
    /// or frame limit (the frame limit also when the next line would start at it).
    /// The caller must then run its exact header-block check.
    pub fn next(
        &mut self,
        buf: &[u8],
        start: usize,
        limits: &Limits,
    ) -> Result<Option<Line>, DecodeError> {
        self.needs_check = true;
        let line = scan_line(buf, start, limits.max_header_line, limits.max_frame_size)?;
        if let Some(line) = line {
            // Same verdict as a prefix ending inside this line gets (a frame that is
            // incomplete at the limit), so the result never depends on the split.
            if line.next >= limits.max_frame_size {
                return Err(limit(Limit::FrameSize, limits.max_frame_size));
            }
            // Keep the block in step: its bits up to this line's line feed are spent.
            match line.next - self.block.base {
                n if n <= WIDTH => self.block.consume(n - 1),
                _ => self.block.lf = 0,
            }
        }
        Ok(line)
    }

    fn clear_of_limits(block: &Block, limits: &Limits) -> bool {
        // A line ending inside the block is under WIDTH bytes long, and the line after
        // it starts before the frame limit.
        limits.max_header_line >= WIDTH && block.base + WIDTH < limits.max_frame_size
    }
}

/// The exact path: finds the line starting at `start` with `memchr`, `None` if its EOL
/// is not buffered yet, and judges the line and frame limits.
fn scan_line(
    buf: &[u8],
    start: usize,
    max_line: usize,
    max_frame: usize,
) -> Result<Option<Line>, DecodeError> {
    // Never look further than a line may be long (+2 for the EOL), so a flood of bytes
    // without a line feed costs O(limit), not O(buffer); nor past the frame limit, so a
    // line crossing it gets the verdict a prefix ending there would get.
    let end = buf
        .len()
        .min(start.saturating_add(max_line).saturating_add(2))
        .min(max_frame);
    let window = buf.get(start..end).unwrap_or(&[]);
    match memchr(b'\n', window) {
        Some(i) => {
            let text_len = if i > 0 && window[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            if text_len > max_line {
                return Err(limit(Limit::HeaderLine, max_line));
            }
            let colon = window[..text_len]
                .iter()
                .position(|&b| b == b':')
                .unwrap_or(NO_COLON);
            Ok(Some(Line {
                end: start + text_len,
                next: start + i + 1,
                colon,
            }))
        }
        None => {
            let pending = window.len() - usize::from(window.last() == Some(&b'\r'));
            if pending > max_line {
                return Err(limit(Limit::HeaderLine, max_line));
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(buf: &[u8], base: usize, class: &[u8]) -> u64 {
        (0..WIDTH)
            .filter(|i| buf.get(base + i).is_some_and(|b| class.contains(b)))
            .fold(0, |m, i| m | 1 << i)
    }

    #[test]
    fn masks_match_a_byte_by_byte_classification() {
        let text: &[u8] = b"SEND\ndestination:/a\\cb\r\nx:1:2\n\n\x00body\nwith:colons\\\r\n";
        let mut buf = [0u8; 200];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = text[i % text.len()];
        }
        for len in [0, 1, 17, 63, 64, 65, 130, 200] {
            for base in [0, 1, 5, 63, 64, 100, 199, 200, 250] {
                let buf = &buf[..len];
                let b = Block::at(buf, base);
                assert_eq!(b.lf, scalar(buf, base, b"\n"), "lf len {len} base {base}");
                assert_eq!(
                    b.colon,
                    scalar(buf, base, b":"),
                    "colon len {len} base {base}"
                );
                assert_eq!(
                    b.special,
                    scalar(buf, base, b"\r\\\0"),
                    "special {len} {base}"
                );
                assert_eq!(b.reaches_end(buf), base + WIDTH >= len);
            }
        }
    }

    #[test]
    fn bits_through_covers_the_whole_word() {
        assert_eq!(bits_through(0), 1);
        assert_eq!(bits_through(2), 0b111);
        assert_eq!(bits_through(63), u64::MAX);
    }
}
