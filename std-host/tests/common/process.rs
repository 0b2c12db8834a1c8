//! Child processes in tests (the real `stomp-relay` binary, node and python scenario
//! scripts): loopback ports for them, and their output collected on threads into one
//! bounded log that failure messages quote.
//!
//! Invariant: a piped child's output is always being read, so a chatty child never
//! blocks on a full pipe; at most `LOG_LIMIT` bytes of it are kept.

use std::ffi::OsStr;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Output kept for failure messages, per log.
pub const LOG_LIMIT: usize = 64 * 1024;

/// A child's collected output, shared with the threads that read its pipes.
pub type Log = Arc<Mutex<Vec<u8>>>;

/// Collects a child's output from a pipe on a thread, keeping at most `LOG_LIMIT` bytes.
pub fn drain(mut pipe: impl Read + Send + 'static, into: Log) {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut out = into.lock().unwrap_or_else(|e| e.into_inner());
            let room = LOG_LIMIT.saturating_sub(out.len());
            out.extend_from_slice(&buf[..n.min(room)]);
        }
    });
}

/// What `log` holds so far, as text.
pub fn text(log: &Log) -> String {
    String::from_utf8_lossy(&log.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// A port the OS just handed out on loopback. Another process could take it before the
/// child binds it; callers retry with fresh ports when that happens.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral loopback port")
        .port()
}

/// Spawns `cmd` with stdin closed and stdout and stderr both drained into one new log.
pub fn spawn_logged(cmd: &mut Command) -> std::io::Result<(Child, Log)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let log = Log::default();
    drain(child.stdout.take().expect("stdout"), log.clone());
    drain(child.stderr.take().expect("stderr"), log.clone());
    Ok((child, log))
}

/// The real `stomp-relay` binary with `RUST_LOG=info`, output drained into a log.
pub fn spawn_relay<S: AsRef<OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> std::io::Result<(Child, Log)> {
    spawn_logged(
        Command::new(env!("CARGO_BIN_EXE_stomp-relay"))
            .args(args)
            .env("RUST_LOG", "info"),
    )
}

/// The WebSocket/HTTP address in the server's startup log line
/// (`... listen=127.0.0.1:40123 tcp=Some(127.0.0.1:40124) ...`), if `line` is that line.
pub fn logged_listen_addr(line: &str) -> Option<&str> {
    line.split("listen=").nth(1)?.split_whitespace().next()
}

/// The STOMP-over-TCP address in the server's startup log line, if `line` is that line
/// and the TCP listener is on.
pub fn logged_tcp_addr(line: &str) -> Option<&str> {
    line.split("tcp=Some(").nth(1)?.split(')').next()
}

/// Asks `child` to stop with SIGTERM and reaps it, or kills it when it has not exited
/// within `grace`. For children that shut down gracefully, and for those with processes
/// of their own: nginx's master stops its workers on TERM, while SIGKILL leaves them
/// orphaned and still listening. The shell's builtin `kill`: no procps needed.
pub fn terminate(child: &mut Child, grace: Duration) {
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A child that is killed and reaped when dropped, so a failing test leaves no process
/// behind.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
