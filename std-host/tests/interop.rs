//! Interop with real STOMP clients: `@stomp/stompjs` (Node, over WebSocket) and
//! `stomp.py` (Python, over plain TCP) against the real `stomp-relay` binary, on the
//! simple broker and, in relay mode, through the real RabbitMQ and ActiveMQ that
//! `scripts/brokers.sh up` starts.
//!
//! Each test starts its own server process on ephemeral loopback ports and runs one
//! scenario script from `tests/interop/` (see its README.md); a failing script fails the
//! test with the script's output and the server's log. Missing client dependencies are a
//! loud failure naming the install command, never a silent pass: `.ci/run` installs them.
//! Every child process is bounded in time and killed when its test ends.

mod common;

use common::broker::{ACTIVEMQ_RELAY, RABBITMQ_RELAY};
use common::clients::{
    python, require_clients, run_scenario, run_scenario_with, with_mode, Server,
};

fn stompjs(scenario: &str, server_args: &[&str]) {
    require_clients();
    let server = Server::start(server_args);
    run_scenario(&server, "node", "stompjs.mjs", scenario);
}

fn raw_ws(scenario: &str, server_args: &[&str]) {
    require_clients();
    let server = Server::start(server_args);
    run_scenario(&server, "node", "raw-ws.mjs", scenario);
}

fn stomppy(scenario: &str, server_args: &[&str]) {
    require_clients();
    let server = Server::start(server_args);
    run_scenario(&server, &python(), "stomppy.py", scenario);
}

/// Short server heart-beats so a few seconds of idling cover many intervals.
const FAST_HEARTBEAT: &[&str] = &["--heartbeat", "200,200"];

#[test]
fn stompjs_connects_with_each_stomp_version_and_exchanges_messages() {
    stompjs("versions", &[]);
}

#[test]
fn stompjs_receipts_arrive_once_each_in_order() {
    stompjs("receipts", &[]);
}

#[test]
fn stompjs_heartbeats_keep_an_idle_session_alive() {
    stompjs("heartbeats", FAST_HEARTBEAT);
}

#[test]
fn stompjs_binary_with_nul_and_korean_bodies_arrive_intact() {
    stompjs("bodies", &[]);
}

#[test]
fn stompjs_burst_of_200_arrives_in_order() {
    stompjs("burst", &[]);
}

#[test]
fn stompjs_60_concurrent_subscribers_all_receive_each_broadcast() {
    stompjs("fanout", &[]);
}

#[test]
fn stompjs_send_to_app_prefix_reaches_broker_subscribers() {
    stompjs("app-route", &[]);
}

#[test]
fn stompjs_user_destination_reaches_only_that_users_sessions() {
    stompjs("user-dest", &[]);
}

#[test]
fn stompjs_and_stomp_py_talk_to_each_other() {
    stompjs("cross-python", &[]);
}

#[test]
fn raw_websocket_frames_split_and_batched_across_messages() {
    raw_ws("split-batch", &[]);
}

#[test]
fn raw_websocket_without_subprotocol_negotiates_by_accept_version() {
    raw_ws("no-subprotocol", &[]);
}

#[test]
fn raw_websocket_frame_over_64k_after_reassembly_gets_error_then_close() {
    raw_ws("oversize", &[]);
}

#[test]
fn raw_websocket_malformed_frames_get_error_then_close() {
    raw_ws("malformed", &[]);
}

#[test]
fn raw_websocket_silent_client_is_disconnected_beating_one_is_not() {
    raw_ws("heartbeat-enforced", FAST_HEARTBEAT);
}

#[test]
fn raw_websocket_slow_consumer_is_closed_while_others_keep_receiving() {
    raw_ws(
        "slow-consumer",
        &["--send-buffer", "256KiB", "--send-time-limit", "1s"],
    );
}

#[test]
fn stomp_py_connects_with_each_stomp_version_over_tcp() {
    stomppy("versions", &[]);
}

#[test]
fn stomp_py_heartbeats_keep_an_idle_tcp_session_alive() {
    stomppy("heartbeats", FAST_HEARTBEAT);
}

#[test]
fn stomp_py_binary_and_korean_bodies_arrive_intact() {
    stomppy("bodies", &[]);
}

#[test]
fn stomp_py_burst_of_200_arrives_in_order() {
    stomppy("burst", &[]);
}

#[test]
fn raw_tcp_malformed_frames_get_error_then_close() {
    stomppy("malformed", &[]);
}

/// Scenarios that must behave the same whether the server's broker is the embedded one or
/// an external broker it relays to.
const RELAYED: &[(&str, &str, &str)] = &[
    ("node", "stompjs.mjs", "versions"),
    ("node", "stompjs.mjs", "receipts"),
    ("node", "stompjs.mjs", "bodies"),
    ("node", "stompjs.mjs", "burst"),
    ("node", "stompjs.mjs", "fanout"),
    ("node", "stompjs.mjs", "app-route"),
    ("node", "stompjs.mjs", "cross-python"),
    ("node", "raw-ws.mjs", "split-batch"),
    ("python", "stomppy.py", "versions"),
    ("python", "stomppy.py", "bodies"),
];

fn relayed(server_args: &[&str]) {
    require_clients();
    let server = Server::start(server_args);
    for (program, script, scenario) in RELAYED {
        let program = if *program == "python" {
            python()
        } else {
            (*program).to_owned()
        };
        run_scenario(&server, &program, script, scenario);
    }
}

#[test]
fn relay_rabbitmq_per_session_real_clients() {
    relayed(&with_mode(RABBITMQ_RELAY, "per-session"));
}

#[test]
fn relay_rabbitmq_shared_real_clients() {
    relayed(&with_mode(RABBITMQ_RELAY, "shared"));
}

#[test]
fn relay_activemq_per_session_real_clients() {
    relayed(&with_mode(ACTIVEMQ_RELAY, "per-session"));
}

#[test]
fn relay_activemq_shared_real_clients() {
    relayed(&with_mode(ACTIVEMQ_RELAY, "shared"));
}

/// The SockJS transports sockjs-client offers, as `sockjs.mjs` names them.
const SOCKJS_TRANSPORTS: [&str; 4] = ["websocket", "xhr-streaming", "xhr-polling", "eventsource"];

/// Spring's `addEndpoint("/ws-stomp").withSockJS()`, next to a plain `/ws`.
const SOCKJS_ARGS: &[&str] = &["--endpoint", "/ws,/ws-stomp", "--sockjs"];

#[test]
fn sockjs_client_over_each_transport_talks_to_a_websocket_client() {
    require_clients();
    let server = Server::start(SOCKJS_ARGS);
    for transport in SOCKJS_TRANSPORTS {
        run_scenario(&server, "node", "sockjs.mjs", transport);
    }
}

#[test]
fn sockjs_client_on_one_instance_reaches_a_websocket_client_on_another_through_activemq() {
    require_clients();
    for mode in ["per-session", "shared"] {
        let mut args = with_mode(ACTIVEMQ_RELAY, mode);
        args.extend(SOCKJS_ARGS);
        let one = Server::start(&args);
        let two = Server::start(&args);
        let other = [("INTEROP_WS_URL_2", format!("ws://{}/ws", two.ws))];
        for transport in SOCKJS_TRANSPORTS {
            run_scenario_with(&one, &other, "node", "sockjs.mjs", transport);
        }
    }
}

/// Issue 13.1 with the real client: alice has a session on each of two instances
/// sharing the broker; a SEND to `/user/alice/...` from the first reaches both, in
/// both relay modes on both brokers.
#[test]
fn stompjs_user_destination_reaches_the_users_sessions_on_every_instance() {
    require_clients();
    for broker in [ACTIVEMQ_RELAY, RABBITMQ_RELAY] {
        for mode in ["per-session", "shared"] {
            let args = with_mode(broker, mode);
            let one = Server::start(&args);
            let two = Server::start(&args);
            let other = [("INTEROP_WS_URL_2", format!("ws://{}/ws", two.ws))];
            run_scenario_with(&one, &other, "node", "stompjs.mjs", "user-dest");
        }
    }
}
