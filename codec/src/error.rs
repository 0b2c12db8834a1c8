//! Codec errors. Every variant has a `Display` text fit to send as a STOMP ERROR
//! frame's `message` header (short, one line, no colon-free guarantees needed: the
//! encoder escapes it).

use crate::{Command, Limit};

/// Why bytes could not be decoded as a STOMP frame. After any of these the stream is
/// out of sync: a host sends an ERROR frame and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DecodeError {
    /// A configured limit was exceeded; `max` is the limit's value.
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// Its configured value (or the header storage capacity for [`Limit::HeaderCount`]).
        max: usize,
    },
    /// The command line is not a STOMP command.
    InvalidCommand,
    /// A `\r` not followed by `\n` outside a body.
    LoneCarriageReturn,
    /// A header line without a `:`.
    MissingColon,
    /// A header line starting with `:`.
    EmptyHeaderName,
    /// A `\` escape other than `\r \n \c \\` (or a trailing `\`) in a 1.1/1.2 header.
    InvalidEscape,
    /// The `content-length` value is not a decimal number that fits.
    InvalidContentLength,
    /// The `content-length` bytes of body are not followed by NUL.
    MissingNulAfterBody,
    /// A body on a command other than SEND, MESSAGE and ERROR.
    BodyNotAllowed(Command),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::LimitExceeded { limit, max } => {
                write!(f, "{} limit of {} {} exceeded", limit, max, limit.unit())
            }
            DecodeError::InvalidCommand => f.write_str("invalid command"),
            DecodeError::LoneCarriageReturn => {
                f.write_str("carriage return not followed by line feed")
            }
            DecodeError::MissingColon => f.write_str("header line without colon"),
            DecodeError::EmptyHeaderName => f.write_str("empty header name"),
            DecodeError::InvalidEscape => f.write_str("invalid escape sequence in header"),
            DecodeError::InvalidContentLength => f.write_str("invalid content-length header"),
            DecodeError::MissingNulAfterBody => {
                f.write_str("body not terminated by NUL after content-length bytes")
            }
            DecodeError::BodyNotAllowed(c) => write!(f, "{} frames must not have a body", c),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

/// Which part of a header could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HeaderPart {
    /// The header name.
    Name,
    /// The header value.
    Value,
}

/// Why a frame could not be encoded. Nothing has been written to a slice when this is
/// returned; a writer may have received nothing (validation runs before any write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EncodeError {
    /// The output slice is too short; `needed` is the full encoded length.
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
    },
    /// A body on a command other than SEND, MESSAGE and ERROR.
    BodyNotAllowed(Command),
    /// A header at `index` cannot be written in this version/command without escaping,
    /// e.g. a line feed in a CONNECT header value or a `:` in a 1.0 header name.
    Unencodable {
        /// Position of the header in the frame.
        index: usize,
        /// Name or value.
        part: HeaderPart,
    },
    /// A header at `index` has an empty name.
    EmptyHeaderName {
        /// Position of the header in the frame.
        index: usize,
    },
    /// An [`crate::HeaderForm::Escaped`] header at `index` holds an invalid escape or a raw line break.
    InvalidEscape {
        /// Position of the header in the frame.
        index: usize,
    },
    /// The frame's first `content-length` header does not state the body's length.
    ContentLengthMismatch,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EncodeError::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: frame needs {} bytes", needed)
            }
            EncodeError::BodyNotAllowed(c) => write!(f, "{} frames must not have a body", c),
            EncodeError::Unencodable { index, part } => write!(
                f,
                "header {} {} contains bytes this version cannot encode",
                index,
                match part {
                    HeaderPart::Name => "name",
                    HeaderPart::Value => "value",
                }
            ),
            EncodeError::EmptyHeaderName { index } => {
                write!(f, "header {} has an empty name", index)
            }
            EncodeError::InvalidEscape { index } => {
                write!(f, "header {} holds an invalid escape sequence", index)
            }
            EncodeError::ContentLengthMismatch => {
                f.write_str("content-length header does not match the body length")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}

/// Error of [`crate::write`] / [`crate::write_async`]: the frame was invalid, or the writer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WriteError<E> {
    /// The frame cannot be encoded (checked before anything is written).
    Encode(EncodeError),
    /// The writer returned an error.
    Io(E),
}

impl<E: core::fmt::Debug> core::fmt::Display for WriteError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WriteError::Encode(e) => core::fmt::Display::fmt(e, f),
            WriteError::Io(e) => write!(f, "write failed: {:?}", e),
        }
    }
}

#[cfg(feature = "std")]
impl<E: core::fmt::Debug> std::error::Error for WriteError<E> {}

impl<E> From<EncodeError> for WriteError<E> {
    fn from(e: EncodeError) -> Self {
        WriteError::Encode(e)
    }
}

/// The error for exceeding `limit`, whose value is `max`.
pub(crate) const fn limit(limit: Limit, max: usize) -> DecodeError {
    DecodeError::LimitExceeded { limit, max }
}
