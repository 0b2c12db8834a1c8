//! Heart-beat negotiation as the STOMP spec states it: parsing `cx,cy` and choosing
//! each direction's interval from both sides' wishes.

use core::time::Duration;

use crate::cursor::Cursor;

fn parse_u32(b: &[u8]) -> Option<u32> {
    let b = b.trim_ascii();
    if b.is_empty() || b.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in b {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    u32::try_from(n).ok()
}

/// Parses a `heart-beat` value `cx,cy`.
pub fn parse_heart_beat(v: &[u8]) -> Option<(u32, u32)> {
    let comma = v.iter().position(|&b| b == b',')?;
    Some((parse_u32(&v[..comma])?, parse_u32(&v[comma + 1..])?))
}

/// The heart-beat intervals both sides agreed on, per the STOMP spec: a side sends
/// every `max(its own, what the other wants)` when both are non-zero.
/// Returns `(we send every, we expect every)` from our `(sx, sy)` and their `(cx, cy)`.
pub fn negotiate_heart_beat(
    ours: (u32, u32),
    theirs: (u32, u32),
) -> (Option<Duration>, Option<Duration>) {
    let dir =
        |a: u32, b: u32| (a != 0 && b != 0).then(|| Duration::from_millis(u64::from(a.max(b))));
    (dir(ours.0, theirs.1), dir(theirs.0, ours.1))
}

/// How long we stay quiet before sending a heart-beat for a negotiated send interval:
/// four fifths of it. A peer may check at exactly the interval whether anything
/// arrived since its last check (ActiveMQ's inactivity monitor does, with its default
/// grace multiplier of 1), so a heart-beat sent at the interval plus timer lateness
/// can miss a check window and lose the connection.
pub fn heart_beat_after(interval: Duration) -> Duration {
    interval - interval / 5
}

/// Room for any `heart-beat` value: two `u32`s in decimal and the comma.
pub(crate) const HEART_BEAT_VALUE_MAX: usize = 24;

/// Writes the `heart-beat` value `cx,cy` for `hb` into `buf`; CONNECT and CONNECTED
/// both send it.
pub(crate) fn format_heart_beat(hb: (u32, u32), buf: &mut [u8; HEART_BEAT_VALUE_MAX]) -> &[u8] {
    let mut c = Cursor::new(buf);
    c.push_u64(hb.0.into())
        .push_byte(b',')
        .push_u64(hb.1.into());
    c.finish_truncated()
}
