//! Which dialect the relay speaks: the one `--dialect` names, or, when it names none,
//! the one the broker's CONNECTED `server` header names (relay-core's
//! `Dialect::from_server`: ActiveMQ, RabbitMQ, Artemis), `generic` until a broker
//! answered or for a broker that names none of them.
//!
//! The dialect decides destinations on the broker, so it is logged at info whenever
//! it is settled or changes (a failover to another kind of broker), and a configured
//! dialect that contradicts the broker is warned about.

use std::sync::atomic::{AtomicU8, Ordering};

use stomp_relay_core::Dialect;

/// The relay's dialect, shared by every upstream connection of one relay.
#[derive(Debug)]
pub struct DialectChoice {
    configured: Option<Dialect>,
    /// 0: no broker answered yet; else 1 + index in `Dialect::ALL`.
    detected: AtomicU8,
}

const NONE_YET: u8 = 0;

fn code(d: Dialect) -> u8 {
    1 + Dialect::ALL.iter().position(|&x| x == d).unwrap_or(0) as u8
}

impl DialectChoice {
    /// `configured`: the `--dialect` value, `None` to detect.
    pub fn new(configured: Option<Dialect>) -> Self {
        DialectChoice {
            configured,
            detected: AtomicU8::new(NONE_YET),
        }
    }

    /// The dialect to use now.
    pub fn get(&self) -> Dialect {
        self.configured
            .unwrap_or_else(|| self.detected().unwrap_or(Dialect::Generic))
    }

    fn detected(&self) -> Option<Dialect> {
        match self.detected.load(Ordering::Acquire) {
            NONE_YET => None,
            n => Dialect::ALL.get(usize::from(n - 1)).copied(),
        }
    }

    /// The broker at `addr` answered CONNECTED; `named` is the dialect its `server`
    /// header names, if any.
    pub fn broker_connected(&self, named: Option<Dialect>, addr: &str) {
        let seen = named.unwrap_or(Dialect::Generic);
        let before = self.detected.swap(code(seen), Ordering::AcqRel);
        if before == code(seen) {
            return;
        }
        match (self.configured, named) {
            (None, Some(d)) => {
                tracing::info!(broker = addr, dialect = %d, "relay: dialect detected from the broker's CONNECTED server header")
            }
            (None, None) => tracing::warn!(
                broker = addr,
                "relay: the broker's CONNECTED names no known broker (ActiveMQ, RabbitMQ, Artemis); using dialect generic (set --dialect to choose)"
            ),
            (Some(c), Some(d)) if c != d => tracing::warn!(
                broker = addr,
                configured = %c,
                broker_is = %d,
                "relay: --dialect does not match the broker; destinations may not route as intended"
            ),
            (Some(c), _) => tracing::info!(broker = addr, dialect = %c, "relay: using the configured dialect"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_wins_detected_follows_the_broker() {
        let fixed = DialectChoice::new(Some(Dialect::RabbitMq));
        fixed.broker_connected(Some(Dialect::ActiveMq), "a");
        assert_eq!(fixed.get(), Dialect::RabbitMq);

        let auto = DialectChoice::new(None);
        assert_eq!(
            auto.get(),
            Dialect::Generic,
            "generic until a broker answered"
        );
        auto.broker_connected(Some(Dialect::ActiveMq), "a");
        assert_eq!(auto.get(), Dialect::ActiveMq);
        // A failover to a broker of another kind switches with it.
        auto.broker_connected(Some(Dialect::Artemis), "b");
        assert_eq!(auto.get(), Dialect::Artemis);
        auto.broker_connected(None, "c");
        assert_eq!(auto.get(), Dialect::Generic);
    }
}
