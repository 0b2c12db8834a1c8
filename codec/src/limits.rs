//! Decoder limits: the bounds that keep a host from buffering or storing without end.
//!
//! Every limit is checked against what is buffered so far, so a partial frame that can
//! no longer fit is rejected as soon as that is known, not when it completes.

/// Which limit was exceeded, carried by [`crate::DecodeError::LimitExceeded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Limit {
    /// [`Limits::max_frame_size`]: bytes from the command's first byte to the closing NUL.
    FrameSize,
    /// [`Limits::max_headers`] (or the capacity of the caller's header storage, if smaller).
    HeaderCount,
    /// [`Limits::max_header_line`]: bytes of the command line or one header line, EOL excluded.
    HeaderLine,
    /// [`Limits::max_body`]: body bytes.
    BodySize,
}

impl Limit {
    /// A short name, as used in error messages (`"frame size"`).
    pub const fn name(self) -> &'static str {
        match self {
            Limit::FrameSize => "frame size",
            Limit::HeaderCount => "header count",
            Limit::HeaderLine => "header line length",
            Limit::BodySize => "body size",
        }
    }

    /// The unit the limit counts (`"bytes"` or `"headers"`).
    pub const fn unit(self) -> &'static str {
        match self {
            Limit::HeaderCount => "headers",
            _ => "bytes",
        }
    }
}

impl core::fmt::Display for Limit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Configurable decoder limits. [`Limits::DEFAULT`] suits a server facing untrusted clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Limits {
    /// Largest frame, command line to closing NUL inclusive (default 64 KiB).
    pub max_frame_size: usize,
    /// Most headers in one frame (default 64).
    pub max_headers: usize,
    /// Longest command or header line without its EOL (default 8 KiB).
    pub max_header_line: usize,
    /// Largest body (default 64 KiB).
    pub max_body: usize,
}

impl Limits {
    /// The defaults: 64 KiB frame, 64 headers, 8 KiB header line, 64 KiB body.
    pub const DEFAULT: Limits = Limits {
        max_frame_size: 64 * 1024,
        max_headers: 64,
        max_header_line: 8 * 1024,
        max_body: 64 * 1024,
    };

    /// No limits at all (bounded only by the header storage); for trusted input such as tests.
    pub const UNLIMITED: Limits = Limits {
        max_frame_size: usize::MAX,
        max_headers: usize::MAX,
        max_header_line: usize::MAX,
        max_body: usize::MAX,
    };

    /// The configured maximum for `limit`.
    pub const fn get(&self, limit: Limit) -> usize {
        match limit {
            Limit::FrameSize => self.max_frame_size,
            Limit::HeaderCount => self.max_headers,
            Limit::HeaderLine => self.max_header_line,
            Limit::BodySize => self.max_body,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
