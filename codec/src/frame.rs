//! Borrowed frames and headers.
//!
//! A [`Frame`] never owns bytes: header names/values and the body borrow either the
//! caller's receive buffer (decoded frames, values still in wire form) or the caller's
//! own slices (frames built for encoding, values plain). [`HeaderForm`] records which,
//! so the encoder escapes plain values and copies wire-form values verbatim.

use crate::Command;

/// One header line, `name:value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header<'a> {
    /// Header name, in the frame's [`HeaderForm`].
    pub name: &'a [u8],
    /// Header value, in the frame's [`HeaderForm`].
    pub value: &'a [u8],
}

impl<'a> Header<'a> {
    /// An empty header, to initialise caller-provided storage: `[Header::EMPTY; 32]`.
    pub const EMPTY: Header<'static> = Header {
        name: b"",
        value: b"",
    };

    /// A header from name and value bytes.
    pub const fn new(name: &'a [u8], value: &'a [u8]) -> Self {
        Header { name, value }
    }
}

/// Whether a frame's header names and values are plain bytes or still escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HeaderForm {
    /// Values are the real bytes; the encoder escapes them where the version requires.
    Plain,
    /// Values are as they were on the wire (escaped, as decoded from a 1.1/1.2 frame);
    /// readers unescape lazily, the encoder copies them verbatim when escaping applies.
    Escaped,
}

/// A STOMP frame borrowing its headers and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Frame<'a> {
    /// The command.
    pub command: Command,
    /// Headers in wire order; repeated names are kept, the first one wins on lookup.
    pub headers: &'a [Header<'a>],
    /// The body (empty when there is none). May contain NUL when sent with `content-length`.
    pub body: &'a [u8],
    /// The form of the header bytes.
    pub form: HeaderForm,
}

impl<'a> Frame<'a> {
    /// A frame with plain (unescaped) headers, as an application builds it for encoding.
    pub const fn new(command: Command, headers: &'a [Header<'a>], body: &'a [u8]) -> Self {
        Frame {
            command,
            headers,
            body,
            form: HeaderForm::Plain,
        }
    }
}
