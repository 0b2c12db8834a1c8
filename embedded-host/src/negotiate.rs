//! Protocol negotiation the edge node does with each peer: the STOMP version from a
//! CONNECT's `accept-version`, and heart-beat intervals from both sides' `heart-beat`.
//!
//! The rules themselves are relay-core's ([`Versions`], [`parse_heart_beat`],
//! [`negotiate_heart_beat`], [`heart_beat_after`]); this module adapts them to header
//! options and embassy durations. Nothing here allocates or panics on input.

use embassy_time::Duration;
use stomp_relay_codec::Version;
use stomp_relay_core::session::{
    heart_beat_after, negotiate_heart_beat, parse_heart_beat, Versions,
};

/// The highest version in an `accept-version` value (absent: 1.0, as the spec says), or
/// `None` when nothing offered is supported.
pub fn version(accept_version: Option<&[u8]>) -> Option<Version> {
    match accept_version {
        None => Some(Version::V1_0),
        Some(list) => Versions::parse_accept(list).highest(),
    }
}

/// Parses a `heart-beat` header, `"<send ms>,<receive ms>"`; absent means `0,0`.
pub fn heart_beat(value: Option<&[u8]>) -> Option<(u32, u32)> {
    match value {
        None => Some((0, 0)),
        Some(v) => parse_heart_beat(v),
    }
}

/// Intervals agreed for one connection: how often this side must send something and
/// how often it may expect something from the peer (`None`: no heart-beat that way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartBeats {
    /// This side sends a heart-beat after this much write silence.
    pub send_every: Option<Duration>,
    /// The peer promised to send something at least this often.
    pub expect_every: Option<Duration>,
}

impl HeartBeats {
    /// No heart-beats either way.
    pub const NONE: HeartBeats = HeartBeats {
        send_every: None,
        expect_every: None,
    };

    /// The spec's rule: each direction runs at the larger of what the sender can do and
    /// what the receiver wants, and only when both are non-zero.
    pub fn negotiate(ours: (Duration, Duration), theirs: (u32, u32)) -> HeartBeats {
        let ms = |d: Duration| d.as_millis().min(u32::MAX as u64) as u32;
        let (send, expect) = negotiate_heart_beat((ms(ours.0), ms(ours.1)), theirs);
        let embassy = |d: core::time::Duration| Duration::from_millis(d.as_millis() as u64);
        HeartBeats {
            send_every: send.map(embassy),
            expect_every: expect.map(embassy),
        }
    }

    /// How long the edge stays quiet toward the peer before it sends a heart-beat:
    /// relay-core's rule (somewhat less than [`HeartBeats::send_every`]), so a peer that
    /// checks at exactly the interval never finds a window without one.
    pub fn beat_after(&self) -> Option<Duration> {
        self.send_every.map(|d| {
            let every = core::time::Duration::from_micros(d.as_micros());
            Duration::from_micros(heart_beat_after(every).as_micros() as u64)
        })
    }

    /// How long a read may stay silent before the peer counts as gone.
    pub fn read_deadline(&self, grace: u32) -> Option<Duration> {
        self.expect_every.map(|d| d * grace.max(1))
    }
}

/// Parses a decimal `u32` (a receipt id the edge node issued).
pub fn parse_seq(digits: &[u8]) -> Option<u32> {
    parse_u32(digits)
}

fn parse_u32(digits: &[u8]) -> Option<u32> {
    let digits = digits.trim_ascii();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        if d.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add((d - b'0') as u32)
        } else {
            None
        }
    })
}

/// Formats `v` in decimal into `buf`, returning the digits.
pub fn fmt_u32(v: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(version(None), Some(Version::V1_0));
        assert_eq!(version(Some(b"1.0,1.1,1.2")), Some(Version::V1_2));
        assert_eq!(version(Some(b"1.1")), Some(Version::V1_1));
        assert_eq!(version(Some(b"2.0,3.1")), None);
    }

    #[test]
    fn heart_beats() {
        assert_eq!(heart_beat(None), Some((0, 0)));
        assert_eq!(heart_beat(Some(b"1000,0")), Some((1000, 0)));
        assert_eq!(heart_beat(Some(b"x,1")), None);
        assert_eq!(heart_beat(Some(b"99999999999,1")), None);
        let ours = (Duration::from_millis(10_000), Duration::from_millis(5_000));
        let hb = HeartBeats::negotiate(ours, (1_000, 20_000));
        assert_eq!(hb.send_every, Some(Duration::from_millis(20_000)));
        assert_eq!(hb.expect_every, Some(Duration::from_millis(5_000)));
        assert_eq!(hb.read_deadline(3), Some(Duration::from_millis(15_000)));
        assert_eq!(hb.beat_after(), Some(Duration::from_millis(16_000)));
        assert_eq!(HeartBeats::NONE.beat_after(), None);
        assert_eq!(HeartBeats::negotiate(ours, (0, 0)), HeartBeats::NONE);
    }

    #[test]
    fn numbers() {
        let mut b = [0u8; 10];
        assert_eq!(fmt_u32(0, &mut b), b"0");
        assert_eq!(fmt_u32(u32::MAX, &mut b), b"4294967295");
        assert_eq!(parse_seq(b"42"), Some(42));
    }
}
