//! Zero-allocation STOMP 1.0/1.1/1.2 frame codec.
//!
//! Decoding borrows from the caller's buffer and stores headers in caller-provided
//! storage (the httparse shape); encoding writes into a caller buffer or an
//! `embedded_io` writer. Nothing here allocates, reads a clock or panics on input.
//!
//! ```
//! use stomp_relay_codec::{Decoded, Decoder, Header, Status, Version};
//!
//! let wire = b"MESSAGE\ndestination:/topic/a\nmessage-id:1\nsubscription:0\n\nhi\0\n";
//! let mut headers = [Header::EMPTY; 16];
//! let Status::Complete((Decoded::Frame(frame), used)) =
//!     Decoder::new(Version::V1_2).decode(wire, &mut headers).unwrap()
//! else {
//!     panic!("expected a frame")
//! };
//! assert_eq!(used, wire.len() - 1); // the trailing EOL is the next heart-beat
//! assert!(frame.destination().unwrap() == "/topic/a");
//! assert_eq!(frame.body, b"hi");
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "std"))]
extern crate std;

mod command;
mod decode;
mod encode;
mod error;
mod escape;
mod frame;
mod header;
mod limits;
mod scan;
mod version;

pub use command::Command;
pub use decode::{Decoded, Decoder, Status};
pub use encode::{encode, encoded_len, write, write_async, EncodeOptions};
pub use error::{DecodeError, EncodeError, HeaderPart, WriteError};
pub use frame::{Frame, Header, HeaderForm};
pub use header::{BufferTooSmall, HeaderPairs, HeaderValue, Unescaped};
pub use limits::{Limit, Limits};
pub use version::Version;
