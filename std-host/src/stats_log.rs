//! The periodic stats line at info, as Spring's `WebSocketMessageBrokerStats` logs one
//! every 30 minutes: sessions (current, total, closed abnormally by cause), frames in
//! and out by command, and the broker (mode, availability, upstream connections,
//! subscriptions). `--stats-interval` sets the period; zero turns it off.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use stomp_relay_codec::Command;

use crate::broker::Broker;
use crate::config::BrokerKind;
use crate::metrics::Metrics;

/// What the stats line reads: the counters, the broker and which kind it is, and the
/// shutdown signal that ends the logging.
pub(crate) struct StatsSource {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) kind: BrokerKind,
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
}

/// The line, e.g. `sessions[2 current, 5 total, 1 closed abnormally (heartbeat_timeout
/// 1)], frames in[CONNECT 5, SEND 12], frames out[CONNECTED 5, MESSAGE 40],
/// broker[relay, available, 1 upstream connection, 3 subscriptions]`.
pub(crate) fn line(source: &StatsSource) -> String {
    let m = &source.metrics;
    let mut s = String::new();
    let closes: Vec<_> = m
        .closed_abnormally_counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    let abnormal: u64 = closes.iter().map(|(_, n)| n).sum();
    let _ = write!(
        s,
        "sessions[{} current, {} total, {abnormal} closed abnormally",
        m.sessions_current.get(),
        m.sessions_total.get()
    );
    if !closes.is_empty() {
        let causes: Vec<String> = closes
            .iter()
            .map(|(c, n)| format!("{} {n}", c.as_str()))
            .collect();
        let _ = write!(s, " ({})", causes.join(", "));
    }
    s.push(']');
    for (label, server, count) in [
        (
            "frames in",
            false,
            &(|c| m.frames_in_total(c)) as &dyn Fn(Command) -> u64,
        ),
        ("frames out", true, &|c| m.frames_out_total(c)),
    ] {
        let parts: Vec<String> = Command::ALL
            .iter()
            .filter(|c| c.is_server() == server)
            .map(|&c| (c, count(c)))
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| format!("{} {n}", c.as_str()))
            .collect();
        let _ = write!(s, ", {label}[{}]", parts.join(", "));
    }
    let b = source.broker.stats();
    let mode = match source.kind {
        BrokerKind::Simple => "simple",
        BrokerKind::Relay => "relay",
    };
    let _ = write!(
        s,
        ", broker[{mode}, {}, {} upstream connection{}, {} subscriptions]",
        if b.available {
            "available"
        } else {
            "unavailable"
        },
        b.relay_sessions,
        if b.relay_sessions == 1 { "" } else { "s" },
        b.subscriptions
    );
    s
}

/// Logs [`line`] every `every` until shutdown.
pub(crate) async fn run(source: StatsSource, every: Duration) {
    let mut stop = source.shutdown.clone();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = crate::state::stopped(&mut stop) => return,
            _ = tick.tick() => tracing::info!("stats: {}", line(&source)),
        }
    }
}
