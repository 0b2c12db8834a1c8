//! The scale scenario: as many WebSocket sessions as one server holds, and what broadcast
//! costs as the audience grows (issue 15's figures).
//!
//! One run, in order:
//! 1. opens `sessions` sessions (CONNECT with server heart-beats + SUBSCRIBE to
//!    `{prefix}.all`), spread over several 127.x source addresses so the client side is
//!    not limited to one ephemeral port range; reports the connect rate and the server's
//!    RSS per session;
//! 2. idles for `idle` and reports the server's CPU use meanwhile (heart-beats only);
//! 3. broadcasts one message to every session `broadcasts` times and reports the time
//!    from the SEND to the last delivery;
//! 4. for each tier T (100, 1 000, ...): publishes to `{prefix}.T`, which the first T
//!    sessions also subscribe to, as fast as the window allows for `tier_duration`, and
//!    reports deliveries/s and server CPU per delivery.
//!
//! Every session's receiving half runs on its own task and only counts MESSAGE frames
//! and stamps the latest arrival (atomics), so a delivery costs the tool one decode.
//! Invariant: a tier's figures count only deliveries of that tier's messages (the
//! counter is reset between phases and every phase drains before the next starts).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stomp_relay_codec::Command;
use tokio::sync::Semaphore;

use crate::client::{self, Buffers, ClientError, ConnectOptions, Login, Target, Tx};
use crate::idle::{check_fd_limits, join_opened};
use crate::procfs::{self, ProcSample};
use crate::wire;

#[derive(Debug, Clone)]
pub struct ScalePlan {
    pub target: Target,
    pub sessions: usize,
    /// Local addresses the sessions are spread over, round robin.
    pub sources: Vec<IpAddr>,
    pub login: Login,
    pub server_pid: u32,
    pub concurrency: usize,
    pub connect_timeout: Duration,
    /// Server-to-client heart-beat interval asked for in CONNECT (0 = none).
    pub heartbeat_ms: u64,
    pub settle: Duration,
    pub idle: Duration,
    pub broadcasts: usize,
    /// Audience sizes of the sustained phase; those above `sessions` are skipped.
    pub tiers: Vec<usize>,
    pub tier_duration: Duration,
    /// Messages in flight (published, not yet delivered to the whole tier).
    pub window: u64,
    /// Destination prefix, e.g. `/topic/scale`.
    pub prefix: String,
}

#[derive(Debug)]
pub struct TierReport {
    pub subscribers: usize,
    pub deliveries: u64,
    pub lost: u64,
    pub elapsed: Duration,
    pub server_cpu: Duration,
}

impl TierReport {
    pub fn per_second(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn cpu_us_per_delivery(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.deliveries.max(1) as f64
    }
}

#[derive(Debug)]
pub struct ScaleReport {
    pub sessions: usize,
    pub sources: usize,
    pub before: ProcSample,
    pub after: ProcSample,
    pub open_time: Duration,
    /// Server CPU time over the idle phase, as a share of one core.
    pub idle_cpu_share: f64,
    /// Time from SEND to the last of `sessions` deliveries, per broadcast.
    pub broadcast: Vec<Duration>,
    /// Deliveries that never arrived over all broadcasts.
    pub broadcast_lost: u64,
    pub tiers: Vec<TierReport>,
}

impl ScaleReport {
    pub fn kib_per_session(&self) -> f64 {
        (self.after.rss_kib as f64 - self.before.rss_kib as f64) / self.sessions.max(1) as f64
    }

    pub fn sessions_per_second(&self) -> f64 {
        self.sessions as f64 / self.open_time.as_secs_f64().max(1e-9)
    }

    /// The median broadcast time.
    pub fn broadcast_median(&self) -> Option<Duration> {
        let mut v = self.broadcast.clone();
        v.sort();
        v.get(v.len() / 2).copied()
    }
}

/// Shared by every receiving task.
#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    /// Nanoseconds after `Counters::epoch` of the latest delivery.
    last_arrival_ns: AtomicU64,
}

/// Parses `127.0.0.1-127.0.0.8` (inclusive, last octet) or a comma list into addresses.
pub fn parse_sources(spec: &str) -> Result<Vec<IpAddr>, String> {
    let bad = |why: &str| format!("--sources `{spec}`: {why}");
    if let Some((a, b)) = spec.split_once('-') {
        let a: std::net::Ipv4Addr = a.trim().parse().map_err(|_| bad("bad first address"))?;
        let b: std::net::Ipv4Addr = b.trim().parse().map_err(|_| bad("bad last address"))?;
        let (oa, ob) = (a.octets(), b.octets());
        if oa[..3] != ob[..3] || oa[3] > ob[3] {
            return Err(bad("a range differs only in the last octet, low to high"));
        }
        let out: Vec<IpAddr> = (oa[3]..=ob[3])
            .map(|o| IpAddr::from([oa[0], oa[1], oa[2], o]))
            .collect();
        if out.iter().any(|ip| !ip.is_loopback()) {
            return Err(bad("only loopback sources (127.x)"));
        }
        return Ok(out);
    }
    let out: Vec<IpAddr> = spec
        .split(',')
        .map(|s| s.trim().parse().map_err(|_| bad("not an IP address")))
        .collect::<Result<_, _>>()?;
    if out.is_empty() || out.iter().any(|ip: &IpAddr| !ip.is_loopback()) {
        return Err(bad("only loopback sources (127.x, ::1)"));
    }
    Ok(out)
}

pub async fn run(plan: ScalePlan) -> Result<ScaleReport, String> {
    check_fd_limits(plan.sessions, plan.server_pid)?;
    let epoch = Instant::now();
    let counters = Arc::new(Counters::default());
    tokio::time::sleep(plan.settle).await;
    let before = procfs::sample(plan.server_pid)?;

    let started = Instant::now();
    let held = open_sessions(&plan, epoch, &counters).await?;
    let open_time = started.elapsed();
    tokio::time::sleep(plan.settle).await;
    let after = procfs::sample(plan.server_pid)?;

    let cpu0 = procfs::cpu_time(plan.server_pid)?;
    tokio::time::sleep(plan.idle).await;
    let cpu1 = procfs::cpu_time(plan.server_pid)?;
    let idle_cpu_share = (cpu1 - cpu0).as_secs_f64() / plan.idle.as_secs_f64().max(1e-9);

    let (mut ptx, mut prx) = client::connect(&plan.target, &plan.login, plan.connect_timeout)
        .await
        .map_err(|e| format!("publisher: {e}"))?;
    // The publisher's own receiving half only has to drain what the server sends it.
    tokio::spawn(async move { while prx.recv_batch(|_| Ok(())).await.is_ok() {} });

    let all = format!("{}.all", plan.prefix);
    let mut broadcast = Vec::new();
    let mut broadcast_lost = 0;
    for _ in 0..plan.broadcasts {
        counters.delivered.store(0, Ordering::SeqCst);
        let sent_at = epoch.elapsed();
        send(&mut ptx, &all, 1).await?;
        let got = drain(&counters, plan.sessions as u64, Duration::from_secs(10)).await;
        broadcast_lost += plan.sessions as u64 - got;
        let last = Duration::from_nanos(counters.last_arrival_ns.load(Ordering::SeqCst));
        broadcast.push(last.saturating_sub(sent_at));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut tiers = Vec::new();
    for &t in plan.tiers.iter().filter(|&&t| t <= plan.sessions) {
        let dest = if t == plan.sessions {
            all.clone()
        } else {
            format!("{}.{t}", plan.prefix)
        };
        tiers.push(sustain(&plan, &counters, &mut ptx, &dest, t).await?);
    }
    ptx.close().await;
    drop(held);
    Ok(ScaleReport {
        sessions: plan.sessions,
        sources: plan.sources.len(),
        before,
        after,
        open_time,
        idle_cpu_share,
        broadcast,
        broadcast_lost,
        tiers,
    })
}

/// Opens every session with its subscriptions and starts its counting task; returns the
/// sending halves, which hold the sessions open.
async fn open_sessions(
    plan: &ScalePlan,
    epoch: Instant,
    counters: &Arc<Counters>,
) -> Result<Vec<Tx>, String> {
    let gate = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let mut opening = Vec::with_capacity(plan.sessions);
    for n in 0..plan.sessions {
        let target = plan.target.clone();
        let login = plan.login.clone();
        let opts = ConnectOptions {
            source: plan.sources.get(n % plan.sources.len().max(1)).copied(),
            heart_beat: format!("0,{}", plan.heartbeat_ms),
            buffers: Buffers::Lean,
        };
        let mut dests = vec![format!("{}.all", plan.prefix)];
        dests.extend(
            plan.tiers
                .iter()
                .filter(|&&t| n < t && t < plan.sessions)
                .map(|t| format!("{}.{t}", plan.prefix)),
        );
        let gate = gate.clone();
        let within = plan.connect_timeout;
        let counters = counters.clone();
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let (mut tx, mut rx) = client::connect_with(&target, &login, within, &opts)
                .await
                .map_err(|e| format!("session {n} on {target}: {e}"))?;
            for (i, d) in dests.iter().enumerate() {
                client::subscribe(&mut tx, &mut rx, &i.to_string(), d, within)
                    .await
                    .map_err(|e| format!("session {n} SUBSCRIBE {d}: {e}"))?;
            }
            tokio::spawn(async move {
                let count = |f: &stomp_relay_codec::Frame<'_>| {
                    if f.command == Command::Message {
                        counters.delivered.fetch_add(1, Ordering::Relaxed);
                        let at = epoch.elapsed().as_nanos() as u64;
                        counters.last_arrival_ns.fetch_max(at, Ordering::Relaxed);
                    }
                    Ok::<(), ClientError>(())
                };
                while rx.recv_batch(count).await.is_ok() {}
            });
            Ok::<Tx, String>(tx)
        }));
    }
    join_opened(opening).await
}

async fn send(tx: &mut Tx, dest: &str, count: u64) -> Result<(), String> {
    let frame = wire::encode(Command::Send, &[("destination", dest)], &[b'x'; 64])
        .map_err(|e| e.to_string())?;
    for _ in 0..count {
        tx.feed(&frame)
            .await
            .map_err(|e| format!("publisher: {e}"))?;
    }
    tx.flush().await.map_err(|e| format!("publisher: {e}"))
}

/// Waits until `want` deliveries were counted or nothing arrived for `stall`; returns the
/// count.
async fn drain(counters: &Counters, want: u64, stall: Duration) -> u64 {
    let mut last = (counters.delivered.load(Ordering::SeqCst), Instant::now());
    loop {
        let got = counters.delivered.load(Ordering::SeqCst);
        if got >= want {
            return got;
        }
        if got != last.0 {
            last = (got, Instant::now());
        } else if last.1.elapsed() >= stall {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One tier: publish to `dest` (heard by `subs` sessions) for the tier duration, never
/// more than the window ahead of the deliveries.
async fn sustain(
    plan: &ScalePlan,
    counters: &Counters,
    ptx: &mut Tx,
    dest: &str,
    subs: usize,
) -> Result<TierReport, String> {
    counters.delivered.store(0, Ordering::SeqCst);
    let subs_u = subs as u64;
    let window = plan.window.max(1);
    let batch = window.div_ceil(4).max(1);
    let cpu0 = procfs::cpu_time(plan.server_pid)?;
    let started = Instant::now();
    let mut published = 0u64;
    while started.elapsed() < plan.tier_duration {
        let in_flight =
            published.saturating_sub(counters.delivered.load(Ordering::Relaxed) / subs_u);
        if in_flight + batch <= window {
            send(ptx, dest, batch).await?;
            published += batch;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let got = drain(counters, published * subs_u, Duration::from_secs(10)).await;
    let elapsed = started.elapsed();
    let cpu1 = procfs::cpu_time(plan.server_pid)?;
    Ok(TierReport {
        subscribers: subs,
        deliveries: got,
        lost: (published * subs_u).saturating_sub(got),
        elapsed,
        server_cpu: cpu1 - cpu0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_as_ranges_and_lists_of_loopback_addresses() {
        let r = parse_sources("127.0.0.1-127.0.0.4").unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[3], IpAddr::from([127, 0, 0, 4]));
        assert_eq!(parse_sources("127.0.0.9,::1").unwrap().len(), 2);
        for bad in [
            "10.0.0.1-10.0.0.3",
            "127.0.0.5-127.0.0.1",
            "127.0.0.1-127.0.1.2",
            "x",
            "8.8.8.8",
        ] {
            let e = parse_sources(bad).unwrap_err();
            assert!(e.starts_with("--sources"), "{bad}: {e}");
        }
    }
}
