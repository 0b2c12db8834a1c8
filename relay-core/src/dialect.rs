//! Broker dialects: how client-facing broker destinations map onto what each
//! external broker understands, and back.
//!
//! The one scheme (for [`Dialect::ActiveMq`] and [`Dialect::RabbitMq`]):
//!
//! | client destination | to the broker | why |
//! |---|---|---|
//! | `/sub/chat/room1` (a non-native broker prefix) | `/topic/sub.chat.room1` | ActiveMQ would make `/sub/...` a queue (one receiver per message); RabbitMQ refuses it |
//! | `/sub/chat/*`, `/sub/**` (subscription patterns) | `/topic/sub.chat.*`, `/topic/sub.>` (ActiveMQ) / `/topic/sub.#` (RabbitMQ) | each broker's wildcard syntax |
//! | `/topic/chat/room1` | unchanged (ActiveMQ), `/topic/chat.room1` (RabbitMQ: no `/` inside a routing key) | |
//! | `/queue/x`, `/temp-queue/x`, RabbitMQ's `/exchange/..` `/amq/queue/..` | unchanged | already native |
//!
//! The key of a mapped prefix is the prefix without its slashes, dotted (`/sub/` ->
//! `sub`, `/app/sub/` -> `app.sub`), then every `/` of the rest becomes `.`; a literal
//! `.` or `%` inside a segment is written `%2E` / `%25`, so the mapping is injective:
//! `/sub/chat.room1` -> `/topic/sub.chat%2Eroom1`, never the `/topic/sub.chat.room1` of
//! `/sub/chat/room1` (simple mode keeps those two apart, so the relay must too).
//! [`Dialect::to_client`] reverses it exactly: `/topic/sub.chat%2Eroom1` ->
//! `/sub/chat.room1`.
//!
//! [`Dialect::Artemis`] keeps destinations as they are and instead marks the routing
//! type with a `destination-type` header ([`Dialect::routing_header`]);
//! [`Dialect::Generic`] passes everything through untouched.

use crate::codec::Header;
use crate::cursor::{BufferTooSmall, Cursor};

/// An external broker's destination dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Dialect {
    /// ActiveMQ Classic: only `/topic/` broadcasts; everything else becomes a queue.
    ActiveMq,
    /// RabbitMQ: `/topic/<dotted key>`, `/exchange/`, `/queue/`, `/amq/queue/`; refuses others.
    RabbitMq,
    /// ActiveMQ Artemis: routing type from the `destination-type` header.
    Artemis,
    /// Pass destinations through unchanged.
    #[default]
    Generic,
}

impl Dialect {
    /// Every dialect, in the order configuration lists them.
    pub const ALL: [Dialect; 4] = [
        Dialect::ActiveMq,
        Dialect::RabbitMq,
        Dialect::Artemis,
        Dialect::Generic,
    ];
}

/// Whether a destination broadcasts (every subscriber gets each message) or is a
/// queue (each message reaches one subscriber).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Routing {
    /// Every subscriber receives every message.
    Broadcast,
    /// Each message goes to one subscriber.
    Queue,
}

/// Why a destination could not be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DialectError {
    /// The mapped destination did not fit the caller's buffer.
    TooLong,
}

impl core::fmt::Display for DialectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DialectError::TooLong => f.write_str("Destination too long for the broker"),
        }
    }
}

impl From<BufferTooSmall> for DialectError {
    fn from(_: BufferTooSmall) -> Self {
        DialectError::TooLong
    }
}

/// The name a dialect is given on the command line is not one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnknownDialect;

impl core::fmt::Display for UnknownDialect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("unknown dialect (expected activemq, rabbitmq, artemis or generic)")
    }
}

impl core::str::FromStr for Dialect {
    type Err = UnknownDialect;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "activemq" => Ok(Dialect::ActiveMq),
            "rabbitmq" => Ok(Dialect::RabbitMq),
            "artemis" => Ok(Dialect::Artemis),
            "generic" => Ok(Dialect::Generic),
            _ => Err(UnknownDialect),
        }
    }
}

impl core::fmt::Display for Dialect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

const ACTIVEMQ_NATIVE: &[&str] = &["/topic/", "/queue/", "/temp-topic/", "/temp-queue/"];
const RABBITMQ_NATIVE: &[&str] = &[
    "/topic/",
    "/queue/",
    "/exchange/",
    "/amq/queue/",
    "/temp-queue/",
    "/reply-queue/",
];
const QUEUE_PREFIXES: &[&str] = &["/queue/", "/temp-queue/", "/amq/queue/", "/reply-queue/"];

impl Dialect {
    /// The dialect of the broker whose CONNECTED carried this `server` header
    /// (`ActiveMQ/5.17.2`, `RabbitMQ/3.10.8`, `ActiveMQ-Artemis/2.31.2 ...`), or `None`
    /// for a broker it does not know.
    pub fn from_server(server: &[u8]) -> Option<Dialect> {
        let name = server.split(|&b| b == b'/').next().unwrap_or(server);
        match name {
            b"ActiveMQ" => Some(Dialect::ActiveMq),
            b"RabbitMQ" => Some(Dialect::RabbitMq),
            b"ActiveMQ-Artemis" | b"Apache ActiveMQ Artemis" => Some(Dialect::Artemis),
            _ => None,
        }
    }

    /// The command-line name: `activemq`, `rabbitmq`, `artemis`, `generic`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Dialect::ActiveMq => "activemq",
            Dialect::RabbitMq => "rabbitmq",
            Dialect::Artemis => "artemis",
            Dialect::Generic => "generic",
        }
    }

    fn native(self) -> &'static [&'static str] {
        match self {
            Dialect::ActiveMq => ACTIVEMQ_NATIVE,
            Dialect::RabbitMq => RABBITMQ_NATIVE,
            Dialect::Artemis | Dialect::Generic => &[],
        }
    }

    /// How a client destination routes once mapped: queue prefixes are queues,
    /// everything else broadcasts.
    pub fn routing(self, client_dest: &[u8]) -> Routing {
        if QUEUE_PREFIXES
            .iter()
            .any(|p| client_dest.starts_with(p.as_bytes()))
        {
            Routing::Queue
        } else {
            Routing::Broadcast
        }
    }

    /// The extra header the broker needs to honour [`Dialect::routing`] (Artemis only).
    pub fn routing_header(self, routing: Routing) -> Option<Header<'static>> {
        match (self, routing) {
            (Dialect::Artemis, Routing::Broadcast) => {
                Some(Header::new(b"destination-type", b"MULTICAST"))
            }
            (Dialect::Artemis, Routing::Queue) => {
                Some(Header::new(b"destination-type", b"ANYCAST"))
            }
            _ => None,
        }
    }

    fn multi_wildcard(self) -> &'static [u8] {
        match self {
            Dialect::RabbitMq => b"#",
            _ => b">",
        }
    }

    /// Maps a client destination (or subscription pattern) to the broker's form,
    /// written into `out`. Pure: the same input always gives the same output.
    pub fn to_broker<'o>(
        self,
        client_dest: &[u8],
        out: &'o mut [u8],
    ) -> Result<&'o [u8], DialectError> {
        let mut c = Cursor::new(out);
        match self {
            Dialect::Generic | Dialect::Artemis => {
                c.push(client_dest);
            }
            Dialect::ActiveMq | Dialect::RabbitMq => {
                let native = self
                    .native()
                    .iter()
                    .find(|p| client_dest.starts_with(p.as_bytes()));
                match native {
                    Some(&"/topic/") => {
                        c.push(b"/topic/");
                        self.push_key(&mut c, &client_dest[7..], self == Dialect::RabbitMq);
                    }
                    Some(_) => {
                        c.push(client_dest);
                    }
                    None => {
                        c.push(b"/topic/");
                        let rest = client_dest.strip_prefix(b"/").unwrap_or(client_dest);
                        self.push_mapped_key(&mut c, rest);
                    }
                }
            }
        }
        Ok(c.finish()?)
    }

    /// Writes the key of a mapped (non-native) destination: segments joined with `.`,
    /// `**` as the broker's multi-level wildcard, `.` and `%` inside a segment escaped.
    fn push_mapped_key(self, c: &mut Cursor<'_>, key: &[u8]) {
        for (i, seg) in key.split(|&b| b == b'/').enumerate() {
            if i > 0 {
                c.push_byte(b'.');
            }
            if seg == b"**" {
                c.push(self.multi_wildcard());
                continue;
            }
            for &b in seg {
                match b {
                    b'.' => c.push(b"%2E"),
                    b'%' => c.push(b"%25"),
                    _ => c.push_byte(b),
                };
            }
        }
    }

    /// Writes a routing key: `**` segments become the broker's multi-level wildcard
    /// and, when `dot`, every `/` becomes `.`.
    fn push_key(self, c: &mut Cursor<'_>, key: &[u8], dot: bool) {
        let sep: &[u8] = if dot { b"." } else { b"/" };
        let mut first = true;
        for seg in key.split(|&b| b == b'/' || (dot && b == b'.')) {
            if !first {
                c.push(sep);
            }
            first = false;
            if seg == b"**" {
                c.push(self.multi_wildcard());
            } else {
                c.push(seg);
            }
        }
    }

    /// Maps a broker destination (a MESSAGE's `destination`) back to the client's
    /// form, given the client-facing broker prefixes that [`Dialect::to_broker`] mapped.
    pub fn to_client<'o>(
        self,
        broker_dest: &[u8],
        broker_prefixes: &[&str],
        out: &'o mut [u8],
    ) -> Result<&'o [u8], DialectError> {
        let mut c = Cursor::new(out);
        if matches!(self, Dialect::ActiveMq | Dialect::RabbitMq) {
            if let Some(key) = broker_dest.strip_prefix(b"/topic/") {
                for prefix in broker_prefixes {
                    if self.native().contains(prefix) {
                        continue;
                    }
                    let name = prefix.trim_matches('/').as_bytes();
                    if name.is_empty() || !key_starts_with(key, name) {
                        continue;
                    }
                    let rest = key.get(name.len() + 1..).unwrap_or(b"");
                    c.push_byte(b'/');
                    push_slashed(&mut c, name);
                    c.push_byte(b'/');
                    push_slashed(&mut c, rest);
                    return Ok(c.finish()?);
                }
            }
        }
        c.push(broker_dest);
        Ok(c.finish()?)
    }
}

/// `key` is `name` (slashes read as dots) followed by `.` or the end.
fn key_starts_with(key: &[u8], name: &[u8]) -> bool {
    key.len() >= name.len()
        && key
            .iter()
            .zip(name)
            .all(|(&k, &n)| k == n || (n == b'/' && k == b'.'))
        && matches!(key.get(name.len()), None | Some(b'.'))
}

/// The reverse of [`Dialect::push_mapped_key`]: `.` -> `/`, `%2E` -> `.`, `%25` -> `%`.
fn push_slashed(c: &mut Cursor<'_>, s: &[u8]) {
    let mut i = 0;
    while i < s.len() {
        match (s[i], s.get(i + 1..i + 3)) {
            (b'%', Some(b"2E")) => {
                c.push_byte(b'.');
                i += 3;
            }
            (b'%', Some(b"25")) => {
                c.push_byte(b'%');
                i += 3;
            }
            (b'.', _) => {
                c.push_byte(b'/');
                i += 1;
            }
            (b, _) => {
                c.push_byte(b);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIXES: &[&str] = &["/sub/", "/topic/", "/queue/", "/app/sub/"];

    fn out(d: Dialect, dest: &str) -> [u8; 128] {
        let mut buf = [0u8; 128];
        let n = d.to_broker(dest.as_bytes(), &mut buf).unwrap().len();
        buf[n..].fill(0);
        buf
    }

    fn s(buf: &[u8; 128]) -> &str {
        core::str::from_utf8(&buf[..buf.iter().position(|&b| b == 0).unwrap_or(128)]).unwrap()
    }

    #[test]
    fn outbound_table() {
        use Dialect::*;
        let table: &[(Dialect, &str, &str)] = &[
            (ActiveMq, "/sub/chat/room1", "/topic/sub.chat.room1"),
            (ActiveMq, "/sub/chat.room1", "/topic/sub.chat%2Eroom1"),
            (RabbitMq, "/sub/x/a.b", "/topic/sub.x.a%2Eb"),
            (RabbitMq, "/sub/x/a/b", "/topic/sub.x.a.b"),
            (ActiveMq, "/sub/100%/x", "/topic/sub.100%25.x"),
            (ActiveMq, "/sub/chat/*", "/topic/sub.chat.*"),
            (ActiveMq, "/sub/**", "/topic/sub.>"),
            (ActiveMq, "/app/sub/x", "/topic/app.sub.x"),
            (ActiveMq, "/topic/chat/room1", "/topic/chat/room1"),
            (ActiveMq, "/topic/chat.**", "/topic/chat.**"),
            (ActiveMq, "/queue/work", "/queue/work"),
            (ActiveMq, "/queue/x-user42", "/queue/x-user42"),
            (ActiveMq, "/temp-queue/r", "/temp-queue/r"),
            (RabbitMq, "/sub/chat/room1", "/topic/sub.chat.room1"),
            (RabbitMq, "/sub/**", "/topic/sub.#"),
            (RabbitMq, "/topic/chat/room1", "/topic/chat.room1"),
            (RabbitMq, "/topic/chat.**", "/topic/chat.#"),
            (RabbitMq, "/queue/work", "/queue/work"),
            (
                RabbitMq,
                "/exchange/amq.topic/a.b",
                "/exchange/amq.topic/a.b",
            ),
            (RabbitMq, "/amq/queue/q", "/amq/queue/q"),
            (Artemis, "/sub/chat/room1", "/sub/chat/room1"),
            (Generic, "/sub/chat/room1", "/sub/chat/room1"),
        ];
        for &(d, client, broker) in table {
            assert_eq!(s(&out(d, client)), broker, "{d} {client}");
        }
    }

    #[test]
    fn inbound_table() {
        use Dialect::*;
        let table: &[(Dialect, &str, &str)] = &[
            (ActiveMq, "/topic/sub.chat.room1", "/sub/chat/room1"),
            (ActiveMq, "/topic/app.sub.x", "/app/sub/x"),
            (ActiveMq, "/topic/sub", "/sub/"),
            (ActiveMq, "/topic/subway.x", "/topic/subway.x"),
            (ActiveMq, "/topic/chat/room1", "/topic/chat/room1"),
            (ActiveMq, "/queue/work", "/queue/work"),
            (RabbitMq, "/topic/sub.chat.room1", "/sub/chat/room1"),
            (RabbitMq, "/topic/chat.room1", "/topic/chat.room1"),
            (Artemis, "/sub/chat/room1", "/sub/chat/room1"),
            (Generic, "/topic/sub.chat", "/topic/sub.chat"),
        ];
        for &(d, broker, client) in table {
            let mut buf = [0u8; 128];
            let got = d.to_client(broker.as_bytes(), PREFIXES, &mut buf).unwrap();
            assert_eq!(core::str::from_utf8(got).unwrap(), client, "{d} {broker}");
        }
    }

    #[test]
    fn round_trip_for_slash_separated_destinations() {
        for d in [
            Dialect::ActiveMq,
            Dialect::RabbitMq,
            Dialect::Artemis,
            Dialect::Generic,
        ] {
            for client in [
                "/sub/chat/room1",
                "/sub/a",
                "/queue/work",
                "/app/sub/deep/er",
            ] {
                let mut b1 = [0u8; 128];
                let mapped = d.to_broker(client.as_bytes(), &mut b1).unwrap();
                let mut b2 = [0u8; 128];
                let back = d.to_client(mapped, PREFIXES, &mut b2).unwrap();
                assert_eq!(back, client.as_bytes(), "{d} {client}");
            }
        }
    }

    #[test]
    fn routing_and_artemis_header() {
        assert_eq!(Dialect::ActiveMq.routing(b"/queue/x"), Routing::Queue);
        assert_eq!(Dialect::ActiveMq.routing(b"/sub/x"), Routing::Broadcast);
        assert_eq!(
            Dialect::Artemis.routing_header(Routing::Broadcast),
            Some(Header::new(b"destination-type", b"MULTICAST"))
        );
        assert_eq!(Dialect::RabbitMq.routing_header(Routing::Queue), None);
    }

    #[test]
    fn parse_names_and_overflow() {
        for d in [
            Dialect::ActiveMq,
            Dialect::RabbitMq,
            Dialect::Artemis,
            Dialect::Generic,
        ] {
            assert_eq!(d.as_str().parse::<Dialect>(), Ok(d));
        }
        assert_eq!("kafka".parse::<Dialect>(), Err(UnknownDialect));
        let mut tiny = [0u8; 8];
        assert_eq!(
            Dialect::ActiveMq.to_broker(b"/sub/chat/room1", &mut tiny),
            Err(DialectError::TooLong)
        );
    }

    #[test]
    fn brokers_are_known_by_their_server_header() {
        // As the brokers `scripts/brokers.sh` starts send it, and Artemis 2.x.
        assert_eq!(
            Dialect::from_server(b"ActiveMQ/5.17.2"),
            Some(Dialect::ActiveMq)
        );
        assert_eq!(
            Dialect::from_server(b"RabbitMQ/3.10.8"),
            Some(Dialect::RabbitMq)
        );
        assert_eq!(
            Dialect::from_server(b"ActiveMQ-Artemis/2.31.2 ActiveMQ Artemis Messaging Engine"),
            Some(Dialect::Artemis)
        );
        for other in [&b"Apollo/1.7"[..], b"", b"activemq/5", b"ActiveMQ5.17"] {
            assert_eq!(Dialect::from_server(other), None, "{other:?}");
        }
    }
}
