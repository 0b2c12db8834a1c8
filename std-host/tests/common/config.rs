//! The server config every in-process test starts from. Shared by `common` and
//! `security_common` (which includes this file by path).

use stomp_relay::Config;

/// Ephemeral loopback ports for WebSocket and TCP; server heart-beats off unless a test
/// asks for them.
pub fn test_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        tcp_listen: Some("127.0.0.1:0".parse().unwrap()),
        heartbeat: stomp_relay::config::HeartBeat {
            send_ms: 0,
            recv_ms: 0,
        },
        ..Config::default()
    }
}
