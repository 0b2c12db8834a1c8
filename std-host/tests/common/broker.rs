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

/// Relay mode through the ActiveMQ that `scripts/brokers.sh up` starts (STOMP on
/// 127.0.0.1:61613, admin/admin).
pub const ACTIVEMQ_RELAY: &[&str] = &[
    "--broker",
    "relay",
    "--relay",
    "stomp://127.0.0.1:61613",
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
