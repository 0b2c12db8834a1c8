//! The edge node's run-time configuration: addresses, credentials, heart-beats and
//! timings. Sizes that decide memory (sessions, buffers, ring) are const generics on
//! [`crate::Edge`] and [`crate::SessionResources`], so they are fixed at build time.

use embassy_net::IpEndpoint;
use embassy_time::Duration;
use stomp_relay_core::dialect::Dialect;

/// Edge node configuration. [`Config::new`] fills every field with the documented default
/// except the upstream address, which has none.
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    /// TCP port local devices connect to. Default 61613.
    pub listen_port: u16,
    /// Upstream brokers (ActiveMQ, RabbitMQ or a stomp-relay server) in failover order:
    /// the first that answers is used, the next is tried when it goes away. No default.
    pub upstreams: &'a [IpEndpoint],
    /// `login` sent in the upstream CONNECT. Default `guest`.
    pub upstream_login: &'a str,
    /// `passcode` sent in the upstream CONNECT. Default `guest`.
    pub upstream_passcode: &'a str,
    /// `host` (virtual host) sent in the upstream CONNECT. Default `/`.
    pub upstream_host: &'a str,
    /// How device destinations map onto the broker's (relay-core's dialects): with
    /// `ActiveMq` or `RabbitMq` a device's `/sub/chat/room1` becomes the broadcast
    /// `/topic/sub.chat.room1`; MESSAGEs reach devices under the destination they
    /// subscribed to. Default `Generic` (unchanged).
    pub dialect: Dialect,
    /// Heart-beats offered upstream, `(send, receive)`. Default 10 s, 10 s.
    pub upstream_heartbeat: (Duration, Duration),
    /// Heart-beats the edge offers to local devices, `(send, receive)`. Default 10 s, 10 s.
    pub local_heartbeat: (Duration, Duration),
    /// A peer silent for this many negotiated receive intervals is considered gone
    /// (Spring's factor). Default 3.
    pub heartbeat_grace: u32,
    /// Base reconnect delay after every address failed once; doubles per failed round
    /// (relay-core's equal-jitter backoff waits between half and all of it). Default 500 ms.
    pub reconnect_min: Duration,
    /// Ceiling of the reconnect delay. Default 30 s.
    pub reconnect_max: Duration,
    /// How long to wait for a TCP connect, and then for the upstream's CONNECTED. Default 5 s.
    pub connect_timeout: Duration,
    /// How long a local session may hold its outbound queue full before it is closed as
    /// a slow consumer, and how long closing waits to flush. Default 5 s.
    pub write_timeout: Duration,
    /// `server` header in CONNECTED frames sent to devices. Default `stomp-relay-edge`.
    pub server_name: &'static str,
    /// Seed for reconnect jitter (use a hardware RNG value on a device). Default 1.
    pub seed: u64,
}

impl<'a> Config<'a> {
    /// The defaults documented on each field, relaying to `upstreams`.
    pub const fn new(upstreams: &'a [IpEndpoint]) -> Self {
        Config {
            listen_port: 61613,
            upstreams,
            upstream_login: "guest",
            upstream_passcode: "guest",
            upstream_host: "/",
            dialect: Dialect::Generic,
            upstream_heartbeat: (Duration::from_secs(10), Duration::from_secs(10)),
            local_heartbeat: (Duration::from_secs(10), Duration::from_secs(10)),
            heartbeat_grace: 3,
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            server_name: "stomp-relay-edge",
            seed: 1,
        }
    }
}
