//! One back end's circuit breaker, a pure state machine on caller-given instants:
//! closed (calls go through) until `failures` calls in a row failed, then open (calls
//! fail at once, so a dead back end costs clients no timeout and the back end no load)
//! for `cooldown`, then half-open: one trial call goes through; its success closes the
//! circuit, its failure opens it for another cooldown.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A trial call is in flight; others fail at once.
    Trial,
}

/// See the module doc.
#[derive(Debug)]
pub struct Breaker {
    state: State,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    /// A closed breaker; `threshold` 0 never opens.
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            state: State::Closed { failures: 0 },
            threshold,
            cooldown,
        }
    }

    /// Whether a call may start at `now` (when open and the cooldown is over, this call
    /// is the trial).
    pub fn admit(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { until } if now >= until => {
                self.state = State::Trial;
                true
            }
            State::Open { .. } | State::Trial => false,
        }
    }

    /// The back end answered (any answer it meant, allow or deny).
    pub fn success(&mut self) {
        self.state = State::Closed { failures: 0 };
    }

    /// The call failed (timeout, transport error, 5xx, unreadable answer).
    pub fn failure(&mut self, now: Instant) {
        self.state = match self.state {
            State::Closed { failures } if self.threshold == 0 || failures + 1 < self.threshold => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            _ => State::Open {
                until: now + self.cooldown,
            },
        };
    }

    /// A call admitted at `now` ended without an outcome (its client went away): when it
    /// was the trial, the next call is.
    pub fn abandoned(&mut self, now: Instant) {
        if self.state == State::Trial {
            self.state = State::Open { until: now };
        }
    }

    /// Whether calls are failing at once now.
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_recovers_through_one_trial() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            assert!(b.admit(t0));
            b.failure(t0);
        }
        assert!(!b.is_open());
        assert!(b.admit(t0));
        b.failure(t0);
        assert!(b.is_open());
        assert!(!b.admit(t0 + Duration::from_secs(9)));
        // The cooldown is over: exactly one trial goes through.
        let t1 = t0 + Duration::from_secs(10);
        assert!(b.admit(t1));
        assert!(!b.admit(t1));
        b.failure(t1);
        assert!(!b.admit(t1 + Duration::from_secs(9)));
        let t2 = t1 + Duration::from_secs(10);
        assert!(b.admit(t2));
        b.success();
        assert!(!b.is_open());
        assert!(b.admit(t2));
    }

    #[test]
    fn an_abandoned_trial_lets_the_next_call_try() {
        let t = Instant::now();
        let mut b = Breaker::new(1, Duration::from_secs(5));
        b.failure(t);
        let t1 = t + Duration::from_secs(5);
        assert!(b.admit(t1));
        b.abandoned(t1);
        assert!(b.admit(t1));
    }

    #[test]
    fn a_success_resets_the_count() {
        let t = Instant::now();
        let mut b = Breaker::new(2, Duration::from_secs(1));
        b.failure(t);
        b.success();
        b.failure(t);
        assert!(!b.is_open());
    }

    #[test]
    fn zero_threshold_never_opens() {
        let t = Instant::now();
        let mut b = Breaker::new(0, Duration::from_secs(1));
        for _ in 0..100 {
            b.failure(t);
        }
        assert!(b.admit(t));
    }
}
