//! STOMP frames as the load tool writes and reads them.
//!
//! Outgoing frames are built once into owned bytes (the publisher reuses the header
//! block and only rewrites the body). Incoming frames are decoded in place from the
//! receive buffer: [`next_frame`] returns a frame borrowing the buffer and how many
//! bytes it used, or `None` while the frame is incomplete. Heart-beat EOLs between
//! frames are skipped. Invariant: a decoded frame's body is exactly `content-length`
//! bytes when the header is present, else the bytes up to the first NUL.

use std::fmt;

/// A frame decoded from the receive buffer.
#[derive(Debug, Clone, Copy)]
pub struct InFrame<'a> {
    /// The command line, e.g. `MESSAGE`.
    pub command: &'a [u8],
    /// The raw header block (lines `name:value`, LF or CRLF separated).
    headers: &'a [u8],
    /// The body.
    pub body: &'a [u8],
}

impl<'a> InFrame<'a> {
    /// The first value of header `name`, still in wire form (the tool only reads
    /// headers it knows carry no escapes: `receipt-id`, `message`, `version`).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        header_in(self.headers, name.as_bytes())
    }

    /// `header(name)` as text, for error reports.
    pub fn header_text(&self, name: &str) -> String {
        self.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    /// Whether the command is `cmd`.
    pub fn is(&self, cmd: &str) -> bool {
        self.command == cmd.as_bytes()
    }
}

fn header_in<'a>(block: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    block.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        (&line[..colon] == name).then(|| &line[colon + 1..])
    })
}

/// Why the bytes a peer sent are not a STOMP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// `content-length` is not a decimal number.
    BadContentLength,
    /// The frame declared a length but the byte after the body is not NUL.
    MissingNul,
    /// A frame grew past the limit without completing.
    TooLarge(usize),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadContentLength => f.write_str("content-length is not a number"),
            WireError::MissingNul => f.write_str("frame body not terminated by NUL"),
            WireError::TooLarge(n) => write!(f, "incomplete frame larger than {n} bytes"),
        }
    }
}

impl std::error::Error for WireError {}

/// Largest frame the tool accepts (the server's own limit is 64 KiB).
pub const MAX_FRAME: usize = 1 << 20;

/// Decodes the next frame in `buf`. `Ok(None)`: more bytes needed (the caller keeps
/// `buf` and appends). `Ok(Some((frame, used)))`: `used` bytes, including leading
/// heart-beat EOLs and the trailing NUL, belong to this frame.
pub fn next_frame(buf: &[u8]) -> Result<Option<(InFrame<'_>, usize)>, WireError> {
    let start = buf
        .iter()
        .position(|&b| b != b'\n' && b != b'\r')
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    let Some(cmd_end) = find(b'\n', rest) else {
        return too_large_or_partial(rest);
    };
    let command = rest[..cmd_end]
        .strip_suffix(b"\r")
        .unwrap_or(&rest[..cmd_end]);
    // The header block ends at the first empty line.
    let mut pos = cmd_end + 1;
    let headers_start = pos;
    let headers_end;
    loop {
        let Some(eol) = find(b'\n', &rest[pos..]) else {
            return too_large_or_partial(rest);
        };
        let line = &rest[pos..pos + eol];
        if line.is_empty() || line == b"\r" {
            headers_end = pos;
            pos += eol + 1;
            break;
        }
        pos += eol + 1;
    }
    let headers = &rest[headers_start..headers_end];
    let body_start = pos;
    let body_end = match header_in(headers, b"content-length") {
        Some(v) => {
            let len: usize = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or(WireError::BadContentLength)?;
            if rest.len() < body_start + len + 1 {
                return too_large_or_partial(rest);
            }
            if rest[body_start + len] != 0 {
                return Err(WireError::MissingNul);
            }
            body_start + len
        }
        None => match find(0, &rest[body_start..]) {
            Some(n) => body_start + n,
            None => return too_large_or_partial(rest),
        },
    };
    let frame = InFrame {
        command,
        headers,
        body: &rest[body_start..body_end],
    };
    Ok(Some((frame, start + body_end + 1)))
}

fn find(byte: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == byte)
}

fn too_large_or_partial<T>(rest: &[u8]) -> Result<Option<T>, WireError> {
    if rest.len() > MAX_FRAME {
        Err(WireError::TooLarge(MAX_FRAME))
    } else {
        Ok(None)
    }
}

/// Encodes a client frame. Header values here are the tool's own (destinations,
/// credentials, ids): they must not contain `\n`, `:` in names, or `\r`.
pub fn encode(command: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + body.len() + headers.len() * 32);
    out.extend_from_slice(command.as_bytes());
    out.push(b'\n');
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_frames_with_and_without_content_length_and_heartbeats() {
        let mut buf = b"\n\r\n".to_vec();
        buf.extend(encode(
            "MESSAGE",
            &[("destination", "/topic/a"), ("content-length", "3")],
            b"a\0b",
        ));
        buf.extend(b"RECEIPT\r\nreceipt-id:7\r\n\r\n\0");
        let (f, used) = next_frame(&buf).unwrap().unwrap();
        assert!(f.is("MESSAGE"));
        assert_eq!(f.body, b"a\0b");
        assert_eq!(f.header("destination"), Some(&b"/topic/a"[..]));
        let (g, used2) = next_frame(&buf[used..]).unwrap().unwrap();
        assert!(g.is("RECEIPT"));
        assert_eq!(g.header("receipt-id"), Some(&b"7"[..]));
        assert_eq!(used + used2, buf.len());
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let whole = encode("MESSAGE", &[("content-length", "4")], b"abcd");
        for cut in 0..whole.len() {
            assert!(next_frame(&whole[..cut]).unwrap().is_none(), "cut {cut}");
        }
        assert!(next_frame(&whole).unwrap().is_some());
    }

    #[test]
    fn bad_content_length_is_an_error() {
        let bad = b"MESSAGE\ncontent-length:x\n\nab\0";
        assert_eq!(next_frame(bad).unwrap_err(), WireError::BadContentLength);
        let bad = b"MESSAGE\ncontent-length:1\n\nab\0";
        assert_eq!(next_frame(bad).unwrap_err(), WireError::MissingNul);
    }
}
