//! The real-client harness: the `stomp-relay` binary on ephemeral loopback ports
//! ([`Server`]) and one scenario script of `tests/interop/` run against it
//! ([`run_scenario`]), for interop.rs and proxies.rs. A failing script fails the test
//! with the script's output and the server's log; missing client dependencies are a
//! loud failure naming the install command. Every child is bounded in time.

use super::process::{free_port, spawn_logged, spawn_relay, text, KillOnDrop, Log};
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

pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

pub fn python() -> String {
    std::env::var("INTEROP_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Checks once that node, the npm packages and stomp.py are installed; every test calls
/// it and fails with the same message when they are not.
pub fn require_clients() {
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
pub struct Server {
    /// Held only so the process dies with the `Server`.
    _child: KillOnDrop,
    pub ws: SocketAddr,
    pub tcp: SocketAddr,
    pub log: Log,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
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

    pub fn env(&self) -> Vec<(&'static str, String)> {
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
pub fn run_scenario(server: &Server, program: &str, script: &str, scenario: &str) {
    run_scenario_with(server, &[], program, script, scenario)
}

/// [`run_scenario`] with more environment (a second instance's addresses).
pub fn run_scenario_with(
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

/// Relay flags for `broker` in relay mode `mode`.
pub fn with_mode(broker: &[&'static str], mode: &'static str) -> Vec<&'static str> {
    let mut args = broker.to_vec();
    args.extend(["--relay-mode", mode]);
    args
}
