//! Reconnect delays: exponential backoff with full jitter.
//!
//! After a failed round over every `--relay` address the connection task sleeps
//! `delay(attempt)`: a uniformly random duration in `[initial/2, min(max, initial *
//! 2^attempt)]`. The jitter keeps many instances that lost the same broker from all
//! reconnecting in the same millisecond when it comes back; the cap bounds how long a
//! recovered broker waits to be noticed.

use std::time::Duration;

/// Reconnect delay policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay scale of the first retry.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        let floor = (self.initial / 2).min(ceiling);
        let span = (ceiling - floor).as_millis() as u64;
        floor + Duration::from_millis(fastrand::u64(0..=span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_stays_within_bounds() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for attempt in 0..40 {
            let ceiling = Duration::from_millis(100 * (1u64 << attempt.min(20))).min(b.max);
            for _ in 0..50 {
                let d = b.delay(attempt);
                assert!(d >= Duration::from_millis(50), "{attempt}: {d:?}");
                assert!(d <= ceiling, "{attempt}: {d:?} > {ceiling:?}");
            }
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let b = Backoff::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            seen.insert(b.delay(5));
        }
        assert!(seen.len() > 10, "delays are not spread: {seen:?}");
    }
}
