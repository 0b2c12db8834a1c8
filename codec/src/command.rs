//! STOMP commands: every client and server command of STOMP 1.2, `STOMP` kept apart
//! from `CONNECT` so a relay can forward it as sent, but treated alike by [`Command::is_connect`].

/// A STOMP frame command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Command {
    /// `CONNECT` (client).
    Connect,
    /// `STOMP` (client), the 1.2 alias of `CONNECT`.
    Stomp,
    /// `CONNECTED` (server).
    Connected,
    /// `SEND` (client).
    Send,
    /// `SUBSCRIBE` (client).
    Subscribe,
    /// `UNSUBSCRIBE` (client).
    Unsubscribe,
    /// `ACK` (client).
    Ack,
    /// `NACK` (client).
    Nack,
    /// `BEGIN` (client).
    Begin,
    /// `COMMIT` (client).
    Commit,
    /// `ABORT` (client).
    Abort,
    /// `DISCONNECT` (client).
    Disconnect,
    /// `MESSAGE` (server).
    Message,
    /// `RECEIPT` (server).
    Receipt,
    /// `ERROR` (server).
    Error,
}

impl Command {
    /// Every command.
    pub const ALL: [Command; 15] = [
        Command::Connect,
        Command::Stomp,
        Command::Connected,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];

    /// The command as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Connected => "CONNECTED",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// The command as wire bytes.
    pub const fn as_bytes(self) -> &'static [u8] {
        self.as_str().as_bytes()
    }

    /// Parses a command line (without its EOL). Unknown commands give `None`.
    #[inline]
    pub fn parse(line: &[u8]) -> Option<Command> {
        // Length and first byte pick the only candidate (every command differs in one of
        // them), so at most one comparison runs, against a constant of the length just
        // matched, which compiles to a couple of word compares instead of a `memcmp` call.
        macro_rules! candidate {
            ($text:literal, $command:ident) => {
                (line == $text).then_some(Command::$command)
            };
        }
        match (line.len(), line.first()?) {
            (3, b'A') => candidate!(b"ACK", Ack),
            (4, b'S') => candidate!(b"SEND", Send),
            (4, b'N') => candidate!(b"NACK", Nack),
            (5, b'S') => candidate!(b"STOMP", Stomp),
            (5, b'B') => candidate!(b"BEGIN", Begin),
            (5, b'A') => candidate!(b"ABORT", Abort),
            (5, b'E') => candidate!(b"ERROR", Error),
            (6, b'C') => candidate!(b"COMMIT", Commit),
            (7, b'C') => candidate!(b"CONNECT", Connect),
            (7, b'M') => candidate!(b"MESSAGE", Message),
            (7, b'R') => candidate!(b"RECEIPT", Receipt),
            (9, b'C') => candidate!(b"CONNECTED", Connected),
            (9, b'S') => candidate!(b"SUBSCRIBE", Subscribe),
            (10, b'D') => candidate!(b"DISCONNECT", Disconnect),
            (11, b'U') => candidate!(b"UNSUBSCRIBE", Unsubscribe),
            _ => None,
        }
    }

    /// A frame only servers send: CONNECTED, MESSAGE, RECEIPT, ERROR.
    pub const fn is_server(self) -> bool {
        matches!(
            self,
            Command::Connected | Command::Message | Command::Receipt | Command::Error
        )
    }

    /// `CONNECT` or its alias `STOMP`.
    pub const fn is_connect(self) -> bool {
        matches!(self, Command::Connect | Command::Stomp)
    }

    /// Only SEND, MESSAGE and ERROR may carry a body.
    pub const fn allows_body(self) -> bool {
        matches!(self, Command::Send | Command::Message | Command::Error)
    }

    /// CONNECT, STOMP and CONNECTED never escape headers (so 1.0 peers can read them).
    pub const fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

impl core::fmt::Display for Command {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_send_four_commands_clients_the_rest() {
        let server = Command::ALL.iter().copied().filter(|c| c.is_server());
        assert!(server.eq([
            Command::Connected,
            Command::Message,
            Command::Receipt,
            Command::Error
        ]));
    }

    #[test]
    fn every_command_parses_and_near_misses_do_not() {
        for c in Command::ALL {
            assert_eq!(Command::parse(c.as_bytes()), Some(c));
            let name = c.as_bytes();
            // Same length and first byte, one other byte: the candidate must be checked.
            let mut changed = [0u8; 16];
            changed[..name.len()].copy_from_slice(name);
            changed[name.len() - 1] ^= 0x20;
            assert_eq!(Command::parse(&changed[..name.len()]), None, "{c:?}");
            assert_eq!(Command::parse(&name[..name.len() - 1]), None, "{c:?}");
        }
        for junk in [
            &b""[..],
            b"A",
            b"send",
            b"SENDS",
            b"CONNECTEDX",
            b"UNSUBSCRIBEX",
        ] {
            assert_eq!(Command::parse(junk), None);
        }
    }
}
