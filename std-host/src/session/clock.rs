//! relay-core's [`Instant`] on tokio time: milliseconds since the first session of the
//! process, so the core never reads a clock and tests can pause tokio's.

use std::sync::OnceLock;
use std::time::Duration;

use stomp_relay_core::Instant;

fn epoch() -> tokio::time::Instant {
    static EPOCH: OnceLock<tokio::time::Instant> = OnceLock::new();
    *EPOCH.get_or_init(tokio::time::Instant::now)
}

pub(super) fn now() -> Instant {
    Instant::from_millis(epoch().elapsed().as_millis() as u64)
}

fn to_tokio(at: Instant) -> tokio::time::Instant {
    epoch() + Duration::from_millis(at.as_millis())
}

/// Sleeps until the session's next deadline, or forever when it has none.
pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(to_tokio(at)).await,
        None => std::future::pending().await,
    }
}
