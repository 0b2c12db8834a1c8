//! Harness for the security tests: the real server on ephemeral loopback ports. The
//! client is the workspace's one test client (`stomp-relay-test-client`): WebSocket or
//! raw TCP, each optionally over TLS, from a chosen loopback source address, with
//! chosen handshake headers.
#![allow(dead_code)]

#[path = "../common/config.rs"]
mod config_file;

// Not every test binary uses both.
#[allow(unused_imports)]
pub use config_file::test_config as config;
#[allow(unused_imports)]
pub use stomp_relay_test_client::tokio::{tcp_from, Client, Io, WsOpts};
#[allow(unused_imports)]
pub use stomp_relay_test_client::{frame_bytes, Event, Frame, WAIT};

use std::net::SocketAddr;

use stomp_relay::Config;

pub struct Running {
    pub http: SocketAddr,
    pub tcp: SocketAddr,
    pub publisher: stomp_relay::Publisher,
    pub shutdown: stomp_relay::ShutdownHandle,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

pub async fn start(config: Config) -> Running {
    let server = stomp_relay::Server::builder(config)
        .bind()
        .await
        .expect("bind");
    let r = Running {
        http: server.local_addr(),
        tcp: server.tcp_addr().expect("tcp listener"),
        publisher: server.publisher(),
        shutdown: server.shutdown_handle(),
    };
    tokio::spawn(server.run());
    r
}

/// Publishes `body` to `dest` through the server's publisher.
pub fn publish(r: &Running, dest: &str, body: &str) {
    r.publisher
        .publish(dest, &[], body.as_bytes().to_vec())
        .expect("publish");
}
