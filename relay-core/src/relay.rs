//! Rewriting frames between a client and an external broker, for every relay layout
//! (per-session, system session, shared): a client frame for the broker
//! ([`relay_frame`]: destination mapped by the [`Dialect`], Artemis routing header
//! added, everything else, `content-length` included, untouched) and a broker MESSAGE
//! for the client ([`message_to_client`]). The connection itself is
//! [`crate::upstream::Upstream`]; the shared layout's subscriptions are
//! [`crate::fanout::Fanout`].
//!
//! Invariants: every rewritten frame keeps the client's header order and bytes except
//! the destination; a frame that does not fit is an error, never a truncated frame;
//! nothing here allocates.

use crate::codec::{Command, EncodeError, EncodeOptions, Frame, Header, HeaderForm, Version};
use crate::cursor::{push_escaped, BufferTooSmall, Cursor};
use crate::dialect::{Dialect, DialectError};

/// The ERROR `message` for client frames while the broker is unavailable.
pub const BROKER_NOT_AVAILABLE: &str = "Broker not available.";

/// Why a client frame could not be relayed. `Display` is the ERROR `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayError {
    /// The destination could not be mapped.
    Dialect(DialectError),
    /// The rewritten frame could not be encoded (or did not fit `out`).
    Encode(EncodeError),
    /// Header storage or scratch space too small.
    BufferTooSmall,
}

impl core::fmt::Display for RelayError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RelayError::Dialect(e) => e.fmt(f),
            RelayError::Encode(e) => e.fmt(f),
            RelayError::BufferTooSmall => f.write_str("Frame too large to relay"),
        }
    }
}

impl From<DialectError> for RelayError {
    fn from(e: DialectError) -> Self {
        RelayError::Dialect(e)
    }
}

impl From<EncodeError> for RelayError {
    fn from(e: EncodeError) -> Self {
        RelayError::Encode(e)
    }
}

impl From<BufferTooSmall> for RelayError {
    fn from(_: BufferTooSmall) -> Self {
        RelayError::BufferTooSmall
    }
}

/// `frame` with its `destination` value replaced by the plain `destination` (escaped
/// into `scratch` when the frame's headers are escaped) and `extra` appended; header
/// order and all other bytes are kept. `headers` must hold the frame's headers plus 1.
pub fn with_destination<'a>(
    frame: &Frame<'a>,
    destination: &[u8],
    extra: Option<Header<'static>>,
    scratch: &'a mut [u8],
    headers: &'a mut [Header<'a>],
) -> Result<Frame<'a>, BufferTooSmall> {
    let escaped = frame.form == HeaderForm::Escaped;
    let mut c = Cursor::new(scratch);
    if escaped {
        push_escaped(&mut c, destination);
    } else {
        c.push(destination);
    }
    let dest: &'a [u8] = c.finish()?;
    let mut n = 0;
    let mut replaced = false;
    for h in frame.headers {
        let slot = headers.get_mut(n).ok_or(BufferTooSmall)?;
        let is_dest =
            !replaced && crate::codec::HeaderValue::new(h.name, escaped).eq_bytes(b"destination");
        *slot = if is_dest {
            Header::new(h.name, dest)
        } else {
            *h
        };
        replaced |= is_dest;
        n += 1;
    }
    if !replaced {
        *headers.get_mut(n).ok_or(BufferTooSmall)? = Header::new(b"destination", dest);
        n += 1;
    }
    if let Some(x) = extra {
        *headers.get_mut(n).ok_or(BufferTooSmall)? = x;
        n += 1;
    }
    let headers: &'a [Header<'a>] = headers;
    Ok(Frame {
        command: frame.command,
        headers: &headers[..n],
        body: frame.body,
        form: frame.form,
    })
}

/// Encodes a client frame for the broker into `out`: SEND and SUBSCRIBE get their
/// client destination `client_dest` (plain; already resolved for user destinations)
/// mapped by `dialect`; other frames pass through as they are. Encoded for the
/// broker's `version` without adding `content-length`. Mapped destinations are limited
/// to 512 bytes and frames to 72 headers (longer: an error, never a truncated frame).
pub fn relay_frame(
    frame: &Frame<'_>,
    client_dest: Option<&[u8]>,
    dialect: Dialect,
    version: Version,
    out: &mut [u8],
) -> Result<usize, RelayError> {
    let opts = EncodeOptions::passthrough(version);
    let Some(client_dest) =
        client_dest.filter(|_| matches!(frame.command, Command::Send | Command::Subscribe))
    else {
        return Ok(crate::codec::encode(frame, opts, out)?);
    };
    let mut mapped = [0u8; 512];
    let broker_dest = dialect.to_broker(client_dest, &mut mapped)?;
    let extra = dialect.routing_header(dialect.routing(client_dest));
    let mut scratch = [0u8; 1024];
    let mut headers = [Header::EMPTY; 72];
    let f = with_destination(frame, broker_dest, extra, &mut scratch, &mut headers)?;
    Ok(crate::codec::encode(&f, opts, out)?)
}

/// A broker MESSAGE rewritten for the client: its destination mapped back with
/// `dialect` (or replaced by `client_dest` when the host knows the subscription's own
/// spelling). `scratch` holds the destination (2 x its length suffices).
pub fn message_to_client<'a>(
    message: &Frame<'a>,
    client_dest: Option<&[u8]>,
    dialect: Dialect,
    broker_prefixes: &[&str],
    scratch: &'a mut [u8],
    headers: &'a mut [Header<'a>],
) -> Result<Frame<'a>, RelayError> {
    let mut mapped = [0u8; 512];
    let dest: &[u8] = match client_dest {
        Some(d) => d,
        None => {
            let mut raw = [0u8; 512];
            let broker_dest = match message.destination() {
                Some(v) => v
                    .copy_unescaped(&mut raw)
                    .map_err(|_| RelayError::BufferTooSmall)?,
                None => b"",
            };
            dialect.to_client(broker_dest, broker_prefixes, &mut mapped)?
        }
    };
    Ok(with_destination(message, dest, None, scratch, headers)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decoded, Decoder, Limits, Status};
    use std::string::String;

    fn text(b: &[u8]) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn messages_map_back_to_the_client_destination() {
        let wire = b"MESSAGE\nsubscription:0\ndestination:/topic/sub.chat.room1\nmessage-id:m-1\ncontent-length:2\nx-k:v\n\nhi\0";
        let mut hs = [Header::EMPTY; 16];
        let Status::Complete((Decoded::Frame(m), _)) =
            Decoder::with_limits(Version::V1_2, Limits::DEFAULT)
                .decode(wire, &mut hs)
                .unwrap()
        else {
            panic!()
        };
        let mut scratch = [0u8; 256];
        let mut headers = [Header::EMPTY; 17];
        let prefixes = ["/sub/", "/topic/", "/queue/"];
        let f = message_to_client(
            &m,
            None,
            Dialect::ActiveMq,
            &prefixes,
            &mut scratch,
            &mut headers,
        )
        .unwrap();
        let mut out = [0u8; 256];
        let n =
            crate::codec::encode(&f, EncodeOptions::passthrough(Version::V1_2), &mut out).unwrap();
        assert_eq!(
            text(&out[..n]),
            "MESSAGE\nsubscription:0\ndestination:/sub/chat/room1\nmessage-id:m-1\ncontent-length:2\nx-k:v\n\nhi\0"
        );
        // The host's own spelling wins when it knows the subscription.
        let mut scratch = [0u8; 256];
        let mut headers = [Header::EMPTY; 17];
        let f = message_to_client(
            &m,
            Some(b"/sub/chat.room1"),
            Dialect::ActiveMq,
            &prefixes,
            &mut scratch,
            &mut headers,
        )
        .unwrap();
        assert!(f.destination().unwrap() == "/sub/chat.room1");
    }

    #[test]
    fn artemis_gets_a_routing_header_and_escaped_destinations_stay_escaped() {
        let h = [Header::new(b"destination", b"/queue/a\\cb")];
        let f = Frame {
            command: Command::Send,
            headers: &h,
            body: b"",
            form: HeaderForm::Escaped,
        };
        let mut out = [0u8; 256];
        let n = relay_frame(
            &f,
            Some(b"/queue/a:b"),
            Dialect::Artemis,
            Version::V1_2,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            text(&out[..n]),
            "SEND\ndestination:/queue/a\\cb\ndestination-type:ANYCAST\n\n\0"
        );
        // Non-destination frames pass through untouched.
        let h = [Header::new(b"id", b"7"), Header::new(b"receipt", b"x")];
        let n = relay_frame(
            &Frame::new(Command::Unsubscribe, &h, b""),
            None,
            Dialect::RabbitMq,
            Version::V1_2,
            &mut out,
        )
        .unwrap();
        assert_eq!(text(&out[..n]), "UNSUBSCRIBE\nid:7\nreceipt:x\n\n\0");
    }
}
