//! Time as a value: the host owns the clock and passes [`Instant`]s in.
//!
//! An [`Instant`] is milliseconds since an arbitrary epoch chosen by the host (process
//! start, boot, `embassy_time::Instant::as_millis`). The core only compares and adds
//! instants, so any monotonic source works; arithmetic saturates instead of wrapping,
//! so a host that starts its clock at zero can never make a deadline jump backwards.

use core::time::Duration;

/// A point in time, in milliseconds since a host-chosen epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(u64);

impl Instant {
    /// The epoch itself.
    pub const ZERO: Instant = Instant(0);

    /// An instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Instant {
        Instant(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at the far future.
    pub fn saturating_add(self, d: Duration) -> Instant {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(ms))
    }

    /// The time from `earlier` to `self`, or zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl core::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl core::fmt::Display for Instant {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// The earlier of two optional deadlines (`None` means "never").
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addition_saturates_instead_of_wrapping() {
        let far = Instant::from_millis(u64::MAX - 5);
        assert_eq!(
            far + Duration::from_millis(10),
            Instant::from_millis(u64::MAX)
        );
        assert_eq!(
            Instant::ZERO + Duration::from_secs(3),
            Instant::from_millis(3000)
        );
    }

    #[test]
    fn duration_since_a_later_instant_is_zero() {
        let a = Instant::from_millis(100);
        let b = Instant::from_millis(250);
        assert_eq!(b.saturating_duration_since(a), Duration::from_millis(150));
        assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
    }

    #[test]
    fn earliest_treats_none_as_never() {
        let a = Some(Instant::from_millis(5));
        let b = Some(Instant::from_millis(3));
        assert_eq!(earliest(a, b), b);
        assert_eq!(earliest(a, None), a);
        assert_eq!(earliest(None, None), None);
    }
}
