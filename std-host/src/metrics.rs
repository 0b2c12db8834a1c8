//! Server metrics in Prometheus/OpenMetrics text form (`GET /metrics`).
//!
//! Spring's `WebSocketMessageBrokerStats` and more: sessions current/total, sessions
//! closed abnormally by cause, frames in/out by command, bytes in/out, subscriptions,
//! relay sessions and broker availability. Hot-path counters (one per frame) are
//! resolved once into fixed arrays so counting costs one atomic add, never a label
//! lookup. Broker figures are read from [`crate::broker::Broker::stats`] at scrape time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use stomp_relay_codec::Command;

use crate::broker::BrokerStats;

/// Why a session ended other than by the client's DISCONNECT or a clean close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// A STOMP protocol error (malformed frame, frame before CONNECT, ...).
    ProtocolError,
    /// A frame over the max frame size.
    FrameTooLarge,
    /// No heart-beat or frame from the client within the negotiated read interval.
    HeartbeatTimeout,
    /// The outbound send buffer filled up.
    SendBufferLimit,
    /// One write stayed blocked longer than the send time limit.
    SendTimeLimit,
    /// No first frame within the time-to-first-frame limit.
    NoFirstFrame,
    /// The socket failed or closed without DISCONNECT.
    TransportError,
    /// A SockJS client stopped polling and never came back (the disconnect delay).
    ClientGone,
    /// The broker refused the session or its upstream connection was lost.
    BrokerError,
    /// The server shut down.
    Shutdown,
}

impl CloseCause {
    /// Every cause.
    pub const ALL: [CloseCause; 10] = [
        CloseCause::ProtocolError,
        CloseCause::FrameTooLarge,
        CloseCause::HeartbeatTimeout,
        CloseCause::SendBufferLimit,
        CloseCause::SendTimeLimit,
        CloseCause::NoFirstFrame,
        CloseCause::TransportError,
        CloseCause::ClientGone,
        CloseCause::BrokerError,
        CloseCause::Shutdown,
    ];

    /// The `cause` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseCause::ProtocolError => "protocol_error",
            CloseCause::FrameTooLarge => "frame_too_large",
            CloseCause::HeartbeatTimeout => "heartbeat_timeout",
            CloseCause::SendBufferLimit => "send_buffer_limit",
            CloseCause::SendTimeLimit => "send_time_limit",
            CloseCause::NoFirstFrame => "no_first_frame",
            CloseCause::TransportError => "transport_error",
            CloseCause::ClientGone => "client_gone",
            CloseCause::BrokerError => "broker_error",
            CloseCause::Shutdown => "shutdown",
        }
    }
}

type Labels = [(&'static str, &'static str); 1];

/// All server metrics. Cheap to share (`Arc<Metrics>`).
pub struct Metrics {
    registry: Registry,
    /// Sessions open now.
    pub sessions_current: Gauge,
    /// Sessions opened since start.
    pub sessions_total: Counter,
    /// Connections refused by the max-connections limit.
    pub connections_refused: Counter,
    closed: Vec<Counter>,
    frames_in: Vec<Counter>,
    frames_out: Vec<Counter>,
    /// Heart-beats received.
    pub heartbeats_in: Counter,
    /// Heart-beats sent.
    pub heartbeats_out: Counter,
    /// Bytes received from clients.
    pub bytes_in: Counter,
    /// Bytes sent to clients.
    pub bytes_out: Counter,
    /// Messages dropped because a subscriber's send buffer was full.
    pub deliveries_dropped: Counter,
    /// Messages to a user with no session on any instance.
    pub user_messages_unresolved: Counter,
    /// The HTTP proxies' calls.
    pub proxy: crate::proxy::ProxyMetrics,
    subscriptions: Gauge,
    relay_sessions: Gauge,
    broker_available: Gauge,
    /// The latest abnormal closes (unix milliseconds, cause), newest last, for the dashboard.
    recent_closes: Mutex<VecDeque<(u64, CloseCause)>>,
}

/// How many abnormal closes [`Metrics::recent_closes`] remembers.
pub const RECENT_CLOSES: usize = 50;

fn command_index(c: Command) -> usize {
    Command::ALL.iter().position(|x| *x == c).unwrap_or(0)
}

impl Metrics {
    /// A fresh registry with every metric registered (at zero).
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("stomp");
        let sessions_current = Gauge::default();
        registry.register(
            "sessions_current",
            "Client sessions (WebSocket and TCP) open now",
            sessions_current.clone(),
        );
        let sessions_total = Counter::default();
        registry.register(
            "sessions",
            "Client sessions opened since start",
            sessions_total.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections refused by the max-connections limit",
            connections_refused.clone(),
        );
        let closed_family = Family::<Labels, Counter>::default();
        registry.register(
            "sessions_closed_abnormally",
            "Sessions closed other than by DISCONNECT or a clean close, by cause",
            closed_family.clone(),
        );
        let closed = CloseCause::ALL
            .iter()
            .map(|c| {
                closed_family
                    .get_or_create(&[("cause", c.as_str())])
                    .clone()
            })
            .collect();
        let frames_in_family = Family::<Labels, Counter>::default();
        registry.register(
            "frames_in",
            "STOMP frames received from clients, by command",
            frames_in_family.clone(),
        );
        let frames_out_family = Family::<Labels, Counter>::default();
        registry.register(
            "frames_out",
            "STOMP frames sent to clients, by command",
            frames_out_family.clone(),
        );
        let per_cmd = |f: &Family<Labels, Counter>| {
            Command::ALL
                .iter()
                .map(|c| f.get_or_create(&[("command", c.as_str())]).clone())
                .collect::<Vec<_>>()
        };
        let frames_in = per_cmd(&frames_in_family);
        let frames_out = per_cmd(&frames_out_family);
        let heartbeats_in = Counter::default();
        registry.register(
            "heartbeats_in",
            "Heart-beats received from clients",
            heartbeats_in.clone(),
        );
        let heartbeats_out = Counter::default();
        registry.register(
            "heartbeats_out",
            "Heart-beats sent to clients",
            heartbeats_out.clone(),
        );
        let bytes_in = Counter::default();
        registry.register(
            "bytes_in",
            "Bytes of STOMP received from clients",
            bytes_in.clone(),
        );
        let bytes_out = Counter::default();
        registry.register(
            "bytes_out",
            "Bytes of STOMP sent to clients",
            bytes_out.clone(),
        );
        let deliveries_dropped = Counter::default();
        registry.register(
            "deliveries_dropped",
            "Messages not delivered because the subscriber's send buffer was full",
            deliveries_dropped.clone(),
        );
        let user_messages_unresolved = Counter::default();
        registry.register(
            "user_messages_unresolved",
            "Messages to a user destination dropped because the user had no session on any instance",
            user_messages_unresolved.clone(),
        );
        let proxy = crate::proxy::ProxyMetrics::register(&mut registry);
        let subscriptions = Gauge::default();
        registry.register(
            "subscriptions",
            "Subscriptions held by the broker",
            subscriptions.clone(),
        );
        let relay_sessions = Gauge::default();
        registry.register(
            "relay_sessions",
            "Upstream broker connections open (relay mode)",
            relay_sessions.clone(),
        );
        let broker_available = Gauge::default();
        registry.register(
            "broker_available",
            "1 when the broker is available, else 0",
            broker_available.clone(),
        );
        Arc::new(Metrics {
            registry,
            sessions_current,
            sessions_total,
            connections_refused,
            closed,
            frames_in,
            frames_out,
            heartbeats_in,
            heartbeats_out,
            bytes_in,
            bytes_out,
            deliveries_dropped,
            user_messages_unresolved,
            proxy,
            subscriptions,
            relay_sessions,
            broker_available,
            recent_closes: Mutex::new(VecDeque::with_capacity(RECENT_CLOSES)),
        })
    }

    /// Counts a session closed abnormally.
    pub fn closed_abnormally(&self, cause: CloseCause) {
        let i = CloseCause::ALL
            .iter()
            .position(|c| *c == cause)
            .unwrap_or(0);
        self.closed[i].inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut recent = self.recent_closes.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_CLOSES {
            recent.pop_front();
        }
        recent.push_back((now, cause));
    }

    /// The latest abnormal closes (unix milliseconds, cause), oldest first.
    pub fn recent_closes(&self) -> Vec<(u64, CloseCause)> {
        let recent = self.recent_closes.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().copied().collect()
    }

    /// Sessions closed abnormally since start, by cause.
    pub fn closed_abnormally_counts(&self) -> Vec<(CloseCause, u64)> {
        CloseCause::ALL
            .iter()
            .zip(&self.closed)
            .map(|(c, n)| (*c, n.get()))
            .collect()
    }

    /// Frames of `command` received from clients since start.
    pub fn frames_in_total(&self, command: Command) -> u64 {
        self.frames_in[command_index(command)].get()
    }

    /// Frames of `command` sent to clients since start.
    pub fn frames_out_total(&self, command: Command) -> u64 {
        self.frames_out[command_index(command)].get()
    }

    /// Counts a frame received.
    #[inline]
    pub fn frame_in(&self, c: Command) {
        self.frames_in[command_index(c)].inc();
    }

    /// Counts a frame sent.
    #[inline]
    pub fn frame_out(&self, c: Command) {
        self.frames_out[command_index(c)].inc();
    }

    /// The text exposition, with broker figures from `stats`.
    pub fn render(&self, stats: BrokerStats) -> String {
        self.subscriptions.set(stats.subscriptions as i64);
        self.relay_sessions.set(stats.relay_sessions as i64);
        self.broker_available.set(i64::from(stats.available));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::new();
        m.frame_in(Command::Send);
        m.frame_out(Command::Message);
        m.frame_out(Command::Message);
        m.closed_abnormally(CloseCause::SendBufferLimit);
        let text = m.render(BrokerStats {
            available: true,
            relay_sessions: 0,
            subscriptions: 3,
        });
        assert!(
            text.contains("stomp_frames_in_total{command=\"SEND\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("stomp_frames_out_total{command=\"MESSAGE\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("stomp_sessions_closed_abnormally_total{cause=\"send_buffer_limit\"} 1")
        );
        assert!(text.contains("stomp_subscriptions 3"), "{text}");
        assert!(text.contains("stomp_broker_available 1"), "{text}");
    }
}
