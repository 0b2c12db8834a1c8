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
use common::process::{free_port, spawn_logged, spawn_relay, text, KillOnDrop, Log};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// Longest one scenario script may run; the scripts' own deadline is 60 s.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest the server may take to accept connections (and reach its broker) after spawning.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn python() -> String {
    std::env::var("INTEROP_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Checks once that node, the npm packages and stomp.py are installed; every test calls
/// it and fails with the same message when they are not.
fn require_clients() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECK.get_or_init(|| {
        let dir = interop_dir();
        let mut missing = Vec::new();
        match Command::new("node").arg("--version").output() {
            Ok(o) if o.status.success() => {}
            _ => missing.push("`node` (Node 20) is not on PATH".to_owned()),
        }
        for pkg in ["@stomp/stompjs", "ws"] {
            if !dir.join("node_modules").join(pkg).join("package.json").is_file() {
                missing.push(format!(
                    "npm package {pkg} is not installed: run `npm ci --prefix std-host/tests/interop`"
                ));
            }
        }
        match Command::new(python()).args(["-c", "import stomp"]).output() {
            Ok(o) if o.status.success() => {}
            _ => missing.push(format!(
                "`{} -c 'import stomp'` fails: run `{} -m pip install -r std-host/tests/interop/requirements.txt`",
                python(),
                python()
            )),
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("\n  "))
        }
    });
    if let Err(why) = result {
        panic!("interop clients missing (these tests never pass silently):\n  {why}");
    }
}

/// Whether `GET /readyz` on the HTTP listener answers 200.
fn ready(addr: &SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).is_ok() && status.ends_with(b" 200")
}

/// The real `stomp-relay` binary, killed when dropped.
struct Server {
    /// Held only so the process dies with the `Server`.
    _child: KillOnDrop,
    ws: SocketAddr,
    tcp: SocketAddr,
    log: Log,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut last = String::new();
        for _attempt in 0..3 {
            let ws: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let tcp: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let listen = [
                "--listen",
                &ws.to_string(),
                "--tcp-listen",
                &tcp.to_string(),
            ];
            let (mut child, log) =
                spawn_relay(listen.iter().chain(extra)).expect("spawn the stomp-relay binary");
            let deadline = Instant::now() + STARTUP_TIMEOUT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    thread::sleep(Duration::from_millis(50));
                    last = format!(
                        "stomp-relay exited with {status} at startup:\n{}",
                        text(&log)
                    );
                    break;
                }
                // Ready means accepting on both ports and, in relay mode, connected to the
                // broker: before that, Spring-style, a CONNECT gets `Broker not available.`
                if TcpStream::connect_timeout(&tcp, Duration::from_millis(200)).is_ok()
                    && ready(&ws)
                {
                    return Server {
                        _child: KillOnDrop(child),
                        ws,
                        tcp,
                        log,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "stomp-relay did not accept connections on {ws} and {tcp} within {STARTUP_TIMEOUT:?}:\n{}",
                        text(&log)
                    );
                }
                thread::sleep(Duration::from_millis(50));
            }
            // Only a lost race for the port is worth another try.
            if !last.to_lowercase().contains("in use") {
                break;
            }
        }
        panic!("{last}");
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("INTEROP_WS_URL", format!("ws://{}/ws", self.ws)),
            ("INTEROP_TCP_ADDR", self.tcp.to_string()),
            ("INTEROP_TOPIC", "/sub/".to_owned()),
            ("INTEROP_HOST", "localhost".to_owned()),
            ("INTEROP_APP_SEND", "/pub/chat/".to_owned()),
            ("INTEROP_APP_RECV", "/sub/chat/".to_owned()),
            ("INTEROP_USER_DEST", "/user/queue/reply".to_owned()),
            ("INTEROP_FANOUT", "60".to_owned()),
            ("SOCKJS_URL", format!("http://{}/ws-stomp", self.ws)),
            ("STATS_URL", format!("http://{}/api/stats", self.ws)),
        ]
    }
}

/// Runs one scenario (`program script scenario`) against `server`; panics with the
/// script's output and the server log unless it exits 0 having printed `ok <scenario>`.
fn run_scenario(server: &Server, program: &str, script: &str, scenario: &str) {
    run_scenario_with(server, &[], program, script, scenario)
}

/// [`run_scenario`] with more environment (a second instance's addresses).
fn run_scenario_with(
    server: &Server,
    extra_env: &[(&str, String)],
    program: &str,
    script: &str,
    scenario: &str,
) {
    let dir = interop_dir();
    let (mut child, out) = spawn_logged(
        Command::new(program)
            .arg(dir.join(script))
            .arg(scenario)
            .current_dir(&dir)
            .envs(server.env())
            .envs(extra_env.iter().cloned())
            .env("INTEROP_PYTHON", python()),
    )
    .unwrap_or_else(|e| panic!("cannot run {program} {script}: {e}"));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    // Let the pipe threads catch the last lines.
    thread::sleep(Duration::from_millis(50));
    let output = text(&out);
    let passed = matches!(status, Some(s) if s.success())
        && output
            .lines()
            .any(|l| l.starts_with(&format!("ok {scenario} ")));
    if !passed {
        let why = match status {
            Some(s) => format!("exited with {s}"),
            None => format!("killed after {SCRIPT_TIMEOUT:?}"),
        };
        panic!(
            "interop scenario `{program} {script} {scenario}` {why}\n--- client output ---\n{output}\n--- stomp-relay log ---\n{}",
            text(&server.log)
        );
    }
    print!("{output}");
}

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

fn with_mode(broker: &[&'static str], mode: &'static str) -> Vec<&'static str> {
    let mut args = broker.to_vec();
    args.extend(["--relay-mode", mode]);
    args
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
