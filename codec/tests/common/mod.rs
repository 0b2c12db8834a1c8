//! Helpers shared by the codec's integration tests: decode to owned values so results
//! from different buffers and versions can be compared.

#![allow(dead_code)]

use stomp_relay_codec::{Command, DecodeError, Decoded, Decoder, Frame, Header, Status};

/// A decoded item with headers unescaped and copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    HeartBeat,
    Frame(Owned),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub command: Command,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Owned {
    pub fn of(frame: &Frame<'_>) -> Owned {
        Owned {
            command: frame.command,
            headers: frame
                .header_pairs()
                .map(|(n, v)| (n.bytes().collect(), v.bytes().collect()))
                .collect(),
            body: frame.body.to_vec(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }
}

/// Decodes one item from the start of `buf`.
pub fn decode_item(decoder: &Decoder, buf: &[u8]) -> Result<Status<(Item, usize)>, DecodeError> {
    let mut storage = [Header::EMPTY; 128];
    Ok(match decoder.decode(buf, &mut storage)? {
        Status::Complete((Decoded::Frame(f), n)) => {
            Status::Complete((Item::Frame(Owned::of(&f)), n))
        }
        Status::Complete((Decoded::HeartBeat, n)) => Status::Complete((Item::HeartBeat, n)),
        Status::Partial => Status::Partial,
    })
}

/// Decodes a whole stream delivered in chunks of `chunk` bytes, as a host would: append
/// each chunk to a buffer, decode until Partial, drop consumed bytes.
pub fn decode_stream(
    decoder: &Decoder,
    wire: &[u8],
    chunk: usize,
) -> Result<(Vec<Item>, usize), DecodeError> {
    let mut buf = Vec::new();
    let mut items = Vec::new();
    for piece in wire.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        while let Status::Complete((item, n)) = decode_item(decoder, &buf)? {
            assert!(n > 0 && n <= buf.len(), "consumed {n} of {}", buf.len());
            items.push(item);
            buf.drain(..n);
        }
    }
    Ok((items, buf.len()))
}
