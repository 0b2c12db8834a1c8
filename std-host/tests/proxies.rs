//! The HTTP proxies (issue 14) end to end: the real `stomp-relay` binary, a real back
//! end in another language (`tests/interop/backend.mjs`, Node + express, locked by
//! package-lock.json) and real `@stomp/stompjs` clients (`tests/interop/proxy.mjs`).
//! The application proxy also runs across two instances relaying to the real ActiveMQ
//! and RabbitMQ, in both relay modes, so `@SendTo` and `@SendToUser` answers are seen
//! to reach every instance.

mod common;

use common::broker::{ACTIVEMQ_RELAY, RABBITMQ_RELAY};
use common::clients::{interop_dir, require_clients, run_scenario_with, with_mode, Server};
use common::process::{spawn_logged, text, KillOnDrop, Log};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// The connect scenario's rules: the back end's `role` claim opens the admin topic.
const ADMIN_RULES: &str = "allow subscribe /topic/admin.** if claim role contains admin;deny subscribe /topic/admin.**;allow any /**";

/// The Node back end, killed when dropped.
struct Backend {
    _child: KillOnDrop,
    port: u16,
    log: Log,
}

impl Backend {
    fn start() -> Backend {
        let (child, log) = spawn_logged(
            Command::new("node")
                .arg(interop_dir().join("backend.mjs"))
                .env("BACKEND_ADDR", "127.0.0.1:0")
                .env("BACKEND_SLOW_MS", "3000"),
        )
        .expect("run node backend.mjs");
        let child = KillOnDrop(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = text(&log);
            if let Some(port) = out
                .lines()
                .find_map(|l| l.strip_prefix("listening "))
                .and_then(|p| p.trim().parse().ok())
            {
                return Backend {
                    _child: child,
                    port,
                    log,
                };
            }
            assert!(
                Instant::now() < deadline,
                "backend.mjs did not start within 15 s:\n{out}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Runs `scenario` of proxy.mjs against `server` (and `second`, when given).
fn scenario(
    backend: &Backend,
    server: &Server,
    second: Option<&Server>,
    env: &[(&str, String)],
    name: &str,
) {
    let mut extra: Vec<(&str, String)> = env.to_vec();
    if let Some(two) = second {
        extra.push(("INTEROP_WS_URL_2", format!("ws://{}/ws", two.ws)));
    }
    let run =
        std::panic::catch_unwind(|| run_scenario_with(server, &extra, "node", "proxy.mjs", name));
    if let Err(e) = run {
        eprintln!("--- backend.mjs log ---\n{}", text(&backend.log));
        std::panic::resume_unwind(e);
    }
}

#[test]
fn connect_proxy_allows_denies_names_the_user_and_grants_claims_for_rules() {
    require_clients();
    let backend = Backend::start();
    let connect = backend.url("/connect");
    let server = Server::start(&["--connect-proxy", &connect, "--rule", ADMIN_RULES]);
    // A passcode in CONNECT must not reach the back end (it refuses when it does).
    let env = [("INTEROP_PASSCODE", "secret-pw".to_owned())];
    scenario(&backend, &server, None, &env, "connect");
}

#[test]
fn subscribe_proxy_refuses_and_sends_a_first_message_before_the_receipt() {
    require_clients();
    let backend = Backend::start();
    let url = backend.url("/subscribe");
    // The first route captures {room}; the second takes every other destination.
    let init = format!("/app/init/{{room}}={url}");
    let server = Server::start(&[
        "--app-prefix",
        "/app/",
        "--subscribe-proxy",
        &init,
        "--subscribe-proxy",
        &url,
    ]);
    scenario(&backend, &server, None, &[], "subscribe");
}

#[test]
fn app_proxy_failures_reach_only_their_own_clients() {
    require_clients();
    let backend = Backend::start();
    let app = format!("/app/**={}", backend.url("/app"));
    let server = Server::start(&[
        "--app-prefix",
        "/app/",
        "--app-proxy",
        &app,
        "--proxy-timeout",
        "500ms",
    ]);
    scenario(&backend, &server, None, &[], "failures");
}

#[test]
fn app_proxy_circuit_opens_after_repeated_failures_for_that_route_only() {
    require_clients();
    let backend = Backend::start();
    let fail = format!("/app/fail={}", backend.url("/app"));
    let rest = format!("/app/**={}", backend.url("/app"));
    let server = Server::start(&[
        "--app-prefix",
        "/app/",
        "--app-proxy",
        &fail,
        "--app-proxy",
        &rest,
        "--proxy-breaker-failures",
        "2",
        "--proxy-breaker-cooldown",
        "60s",
    ]);
    let env = [
        ("BACKEND_STATS_URL", backend.url("/stats")),
        ("METRICS_URL", format!("http://{}/metrics", server.ws)),
    ];
    scenario(&backend, &server, None, &env, "breaker");
}

#[test]
fn app_proxy_errors_can_go_to_the_user_error_queue() {
    require_clients();
    let backend = Backend::start();
    let app = backend.url("/app");
    let server = Server::start(&[
        "--app-prefix",
        "/app/",
        "--app-proxy",
        &app,
        "--app-proxy-errors",
        "user-queue",
    ]);
    scenario(&backend, &server, None, &[], "user-queue-errors");
}

#[test]
fn app_proxy_send_to_and_send_to_user_in_simple_mode() {
    require_clients();
    let backend = Backend::start();
    let app = backend.url("/app");
    let server = Server::start(&["--app-prefix", "/app/", "--app-proxy", &app]);
    scenario(&backend, &server, None, &[], "app");
}

#[test]
fn app_proxy_send_to_and_send_to_user_across_two_relay_instances() {
    require_clients();
    let backend = Backend::start();
    let app = backend.url("/app");
    for broker in [ACTIVEMQ_RELAY, RABBITMQ_RELAY] {
        for mode in ["per-session", "shared"] {
            let mut args = with_mode(broker, mode);
            args.extend(["--app-prefix", "/app/", "--app-proxy", &app]);
            let one = Server::start(&args);
            let two = Server::start(&args);
            let env = [("STATS_URL", format!("http://{}/api/stats", one.ws))];
            scenario(&backend, &one, Some(&two), &env, "app");
        }
    }
}

#[test]
fn connect_and_subscribe_proxies_in_both_relay_modes_on_both_brokers() {
    require_clients();
    let backend = Backend::start();
    let (connect, subscribe) = (backend.url("/connect"), backend.url("/subscribe"));
    let init = format!("/app/init/{{room}}={subscribe}");
    let env = [("INTEROP_PASSCODE", "secret-pw".to_owned())];
    for broker in [ACTIVEMQ_RELAY, RABBITMQ_RELAY] {
        for mode in ["per-session", "shared"] {
            let mut args = with_mode(broker, mode);
            args.extend([
                "--app-prefix",
                "/app/",
                "--connect-proxy",
                &connect,
                "--subscribe-proxy",
                &init,
                "--subscribe-proxy",
                &subscribe,
                "--rule",
                ADMIN_RULES,
            ]);
            let server = Server::start(&args);
            scenario(&backend, &server, None, &env, "connect");
            scenario(&backend, &server, None, &env, "subscribe");
        }
    }
}
