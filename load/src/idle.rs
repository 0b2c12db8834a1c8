//! The idle-sessions scenario: K sessions that CONNECT, SUBSCRIBE once and then sit
//! idle, and what they cost the server in resident memory.
//!
//! The server's `VmRSS` is read before the first session and after the last one has its
//! RECEIPT (plus a settle pause), so the delta covers connection, session and
//! subscription state. Invariant: the tool raises its own open-files limit first and
//! refuses to start when the server's limit cannot hold K sessions, so a run never ends
//! with a wall of EMFILE errors mistaken for server failures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::client::{self, Login, Rx, Target, Tx};
use crate::procfs::{self, ProcSample};

#[derive(Debug, Clone)]
pub struct IdlePlan {
    pub targets: Vec<Target>,
    pub sessions: usize,
    /// `{n}` is replaced by the session number.
    pub destination: String,
    pub login: Login,
    pub server_pid: u32,
    pub concurrency: usize,
    pub connect_timeout: Duration,
    pub settle: Duration,
    /// How long to hold the sessions after measuring (to watch the server by hand).
    pub hold: Duration,
}

#[derive(Debug)]
pub struct IdleReport {
    pub sessions: usize,
    pub before: ProcSample,
    pub after: ProcSample,
    pub open_time: Duration,
}

impl IdleReport {
    pub fn kib_per_session(&self) -> f64 {
        (self.after.rss_kib as f64 - self.before.rss_kib as f64) / self.sessions.max(1) as f64
    }
}

/// Raises this process's soft open-files limit to its hard limit; returns the new soft
/// limit.
pub fn raise_fd_limit() -> Result<u64, String> {
    rlimit::increase_nofile_limit(u64::MAX).map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))
}

/// Raises this process's limit and refuses a run neither this process nor the server
/// (`server_pid`) has the open-files limit for.
pub fn check_fd_limits(sessions: usize, server_pid: u32) -> Result<(), String> {
    let own = raise_fd_limit()?;
    if own < sessions as u64 + 64 {
        return Err(format!(
            "--sessions {sessions}: this process may open only {own} files (raise the hard limit)"
        ));
    }
    if let Some(limit) = procfs::open_files_limit(server_pid) {
        if limit < sessions as u64 + 16 {
            return Err(format!(
                "--sessions {sessions}: the server (pid {server_pid}) may open only {limit} \
                 files; start it with a higher `ulimit -n`"
            ));
        }
    }
    Ok(())
}

/// Awaits every session-opening task; all opened, or the count that failed and the
/// first error.
pub async fn join_opened<T>(
    opening: Vec<tokio::task::JoinHandle<Result<T, String>>>,
) -> Result<Vec<T>, String> {
    let total = opening.len();
    let mut held = Vec::with_capacity(total);
    let mut first_error = None;
    for o in opening {
        match o.await.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(c) => held.push(c),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(format!(
            "{} of {total} sessions failed to open; first: {e}",
            total - held.len()
        )),
        None => Ok(held),
    }
}

pub async fn run(plan: IdlePlan) -> Result<IdleReport, String> {
    check_fd_limits(plan.sessions, plan.server_pid)?;
    tokio::time::sleep(plan.settle).await;
    let before = procfs::sample(plan.server_pid)?;

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let mut opening = Vec::with_capacity(plan.sessions);
    for n in 0..plan.sessions {
        let target = plan.targets[n % plan.targets.len()].clone();
        let login = plan.login.clone();
        let dest = plan.destination.replace("{n}", &n.to_string());
        let gate = gate.clone();
        let within = plan.connect_timeout;
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let (mut tx, mut rx) = client::connect(&target, &login, within)
                .await
                .map_err(|e| format!("session {n} on {target}: {e}"))?;
            client::subscribe(&mut tx, &mut rx, "0", &dest, within)
                .await
                .map_err(|e| format!("session {n} SUBSCRIBE {dest}: {e}"))?;
            Ok::<(Tx, Rx), String>((tx, rx))
        }));
    }
    let held = join_opened(opening).await?;
    let open_time = started.elapsed();
    tokio::time::sleep(plan.settle).await;
    let after = procfs::sample(plan.server_pid)?;
    tokio::time::sleep(plan.hold).await;
    // Closing 10k sockets at once is fine for the kernel; the server sees EOFs.
    drop(held);
    Ok(IdleReport {
        sessions: plan.sessions,
        before,
        after,
        open_time,
    })
}
