//! `stomp-relay` flags that relay through the real brokers `scripts/brokers.sh up`
//! starts, for the tests that run the binary against them.

/// Relay mode through the RabbitMQ that `scripts/brokers.sh up` starts (STOMP on
/// 127.0.0.1:61623, guest/guest).
pub const RABBITMQ_RELAY: &[&str] = &[
    "--broker",
    "relay",
    "--relay",
    "stomp://127.0.0.1:61623",
    "--dialect",
    "rabbitmq",
    "--virtual-host",
    "/",
    "--relay-login",
    "guest",
    "--relay-passcode",
    "guest",
    "--system-login",
    "guest",
    "--system-passcode",
    "guest",
];

/// ActiveMQ's plain STOMP address.
const ACTIVEMQ_STOMP: &str = "stomp://127.0.0.1:61613";

/// Relay mode through the ActiveMQ that `scripts/brokers.sh up` starts (STOMP on
/// 127.0.0.1:61613, admin/admin).
pub const ACTIVEMQ_RELAY: &[&str] = &[
    "--broker",
    "relay",
    "--relay",
    ACTIVEMQ_STOMP,
    "--dialect",
    "activemq",
    "--relay-login",
    "admin",
    "--relay-passcode",
    "admin",
    "--system-login",
    "admin",
    "--system-passcode",
    "admin",
];

/// [`ACTIVEMQ_RELAY`] with another `--relay` address, e.g. ActiveMQ's `stomps://` port.
pub fn activemq_relay_at(url: &str) -> Vec<&str> {
    ACTIVEMQ_RELAY
        .iter()
        .map(|&arg| if arg == ACTIVEMQ_STOMP { url } else { arg })
        .collect()
}
