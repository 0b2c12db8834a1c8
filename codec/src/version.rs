//! STOMP protocol versions and the per-version rules that differ between them.

/// A STOMP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Version {
    /// STOMP 1.0: no header escaping, `\n` only EOLs in practice.
    V1_0,
    /// STOMP 1.1: header escaping (`\n \c \\`), heart-beats, NACK.
    V1_1,
    /// STOMP 1.2: adds `\r` escaping and `\r\n` EOLs.
    V1_2,
}

impl Version {
    /// All versions, lowest first.
    pub const ALL: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    /// The `version`/`accept-version` token, e.g. `"1.2"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// Parses a version token (`1.0`, `1.1`, `1.2`).
    pub fn parse(token: &[u8]) -> Option<Version> {
        match token {
            b"1.0" => Some(Version::V1_0),
            b"1.1" => Some(Version::V1_1),
            b"1.2" => Some(Version::V1_2),
            _ => None,
        }
    }

    /// The WebSocket subprotocol naming this version, e.g. `"v12.stomp"`.
    pub const fn subprotocol(self) -> &'static str {
        match self {
            Version::V1_0 => "v10.stomp",
            Version::V1_1 => "v11.stomp",
            Version::V1_2 => "v12.stomp",
        }
    }

    /// Parses a WebSocket subprotocol name (`v10.stomp`, `v11.stomp`, `v12.stomp`).
    pub fn from_subprotocol(name: &[u8]) -> Option<Version> {
        match name {
            b"v10.stomp" => Some(Version::V1_0),
            b"v11.stomp" => Some(Version::V1_1),
            b"v12.stomp" => Some(Version::V1_2),
            _ => None,
        }
    }

    /// Whether header names and values are escaped in this version (1.1 and later),
    /// not counting the CONNECT/STOMP/CONNECTED exception (see [`crate::Command::escapes_headers`]).
    pub const fn escapes_headers(self) -> bool {
        !matches!(self, Version::V1_0)
    }
}

impl core::fmt::Display for Version {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}
