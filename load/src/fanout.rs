//! The fan-out scenario: one publisher, N subscribers on one destination.
//!
//! Every measured message carries its sequence number and send time in the first 32
//! body bytes (two 16-digit hex numbers; the rest is padding up to `--body-size`).
//! Subscribers check that sequence numbers arrive in order without gaps and record the
//! latency (receive time minus send time, one clock: publisher and subscribers live in
//! this process).
//!
//! Invariants:
//! - A run starts measuring only after every subscriber has received a warm-up message
//!   (sequence `u64::MAX`), so subscriptions that are active late (a relay subscribing
//!   upstream after its RECEIPT) are not counted as loss.
//! - In `max` mode the publisher is never more than `window` messages ahead of the
//!   slowest subscriber: the measured rate is what the server sustains with bounded
//!   queues, not what it can buffer. A run that stalls (a message never reaches some
//!   subscriber) ends with the loss reported, never a hang.
//! - Loss is counted exactly: published x subscribers minus messages received.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{watch, Notify, Semaphore};

use crate::client::{self, Buffers, ConnectOptions, Login, Rx, Target, Tx};
use crate::procfs;
use stomp_relay_codec::Command;

use crate::wire;

/// How the publisher paces itself.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// As fast as the slowest subscriber keeps up, `window` messages in flight at most,
    /// written in batches of up to `batch` frames per flush.
    Max { window: u64, batch: u64 },
    /// A fixed delivery rate (messages/s x subscribers), one flush per message.
    Rate { deliveries_per_sec: u64 },
}

/// Everything a fan-out run needs.
#[derive(Debug, Clone)]
pub struct FanoutPlan {
    pub publisher: Target,
    /// Subscribers are spread round-robin over these.
    pub subscriber_targets: Vec<Target>,
    pub subscribers: usize,
    pub destination: String,
    pub login: Login,
    pub body_size: usize,
    pub duration: Duration,
    pub pace: Pace,
    pub connect_timeout: Duration,
    /// How long to wait for stragglers after the last publish, and the longest the
    /// publisher waits for window room before declaring a stall.
    pub drain_timeout: Duration,
    /// Sample mid-run the established TCP connections to this port held by this tool
    /// and `server_pids` (broker connections).
    pub count_port: Option<u16>,
    /// Server processes whose CPU time over the measured interval is reported.
    pub server_pids: Vec<u32>,
}

/// What a fan-out run measured.
#[derive(Debug)]
pub struct FanoutReport {
    pub published: u64,
    pub subscribers: usize,
    pub delivered: u64,
    pub lost: u64,
    pub out_of_order: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    pub port_connections: Option<usize>,
    /// CPU time the server processes used while measuring (None without `server_pids`).
    pub server_cpu: Option<Duration>,
    /// CPU time this tool used while measuring.
    pub tool_cpu: Duration,
    /// Resident memory of each server process (in `server_pids` order) at the end of the
    /// measured interval, KiB: shows a relay's queues stayed bounded under the load.
    pub server_rss_kib: Vec<u64>,
    pub errors: Vec<String>,
}

impl FanoutReport {
    pub fn deliveries_per_sec(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Server CPU per delivery, in microseconds: a figure that stays meaningful when
    /// other work shares the machine.
    pub fn server_cpu_us_per_delivery(&self) -> Option<f64> {
        self.server_cpu
            .map(|c| c.as_secs_f64() * 1e6 / self.delivered.max(1) as f64)
    }
}

fn cpu_of(pids: &[u32]) -> Result<Duration, String> {
    pids.iter().map(|&p| procfs::cpu_time(p)).sum()
}

const WARMUP_SEQ: u64 = u64::MAX;
const STAMP_LEN: usize = 32;

/// Shared progress between subscribers and the publisher.
struct Progress {
    subscribers: u32,
    /// `slots[seq % len]`: how many subscribers have `seq`; reset when all have it.
    slots: Vec<AtomicU32>,
    /// Every message below this has reached every subscriber.
    watermark: AtomicU64,
    advanced: Notify,
    ready: AtomicUsize,
    all_ready: Notify,
}

impl Progress {
    fn delivered(&self, seq: u64) {
        let slot = &self.slots[(seq % self.slots.len() as u64) as usize];
        if slot.fetch_add(1, Ordering::AcqRel) + 1 == self.subscribers {
            slot.store(0, Ordering::Release);
            self.watermark.fetch_max(seq + 1, Ordering::AcqRel);
            self.advanced.notify_one();
        }
    }

    fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
struct SubStats {
    received: u64,
    out_of_order: u64,
    latency_us: Histogram<u64>,
    error: Option<String>,
}

fn new_histogram() -> Histogram<u64> {
    // 1 us .. 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

fn hex16(n: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out[..16].iter_mut().enumerate() {
        *b = DIGITS[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
}

fn parse_hex16(s: &[u8]) -> Option<u64> {
    if s.len() < 16 {
        return None;
    }
    s[..16].iter().try_fold(0u64, |acc, &c| {
        let d = (c as char).to_digit(16)?;
        Some(acc << 4 | d as u64)
    })
}

/// Builds SEND frames: a fixed prefix and a body whose stamp is rewritten per message.
struct SendFrames {
    frame: Vec<u8>,
    body_at: usize,
}

impl SendFrames {
    fn new(destination: &str, body_size: usize) -> Result<Self, String> {
        let body = vec![b'x'; body_size];
        let len = body_size.to_string();
        let frame = wire::encode(
            Command::Send,
            &[
                ("destination", destination),
                ("content-type", "text/plain"),
                ("content-length", &len),
            ],
            &body,
        )
        .map_err(|e| format!("--destination {destination}: {e}"))?;
        let body_at = frame.len() - 1 - body_size;
        Ok(SendFrames { frame, body_at })
    }

    fn stamp(&mut self, seq: u64, sent_ns: u64) -> &[u8] {
        let at = self.body_at;
        hex16(seq, &mut self.frame[at..at + 16]);
        hex16(sent_ns, &mut self.frame[at + 16..at + 32]);
        &self.frame
    }
}

/// Runs one fan-out measurement.
pub async fn run(plan: FanoutPlan) -> Result<FanoutReport, String> {
    if plan.subscribers == 0 || plan.subscriber_targets.is_empty() {
        return Err("--subscribers must be at least 1".into());
    }
    if plan.body_size < STAMP_LEN {
        return Err(format!(
            "--body-size must be at least {STAMP_LEN} (sequence + timestamp)"
        ));
    }
    let window = match plan.pace {
        Pace::Max { window, .. } => window.max(1),
        Pace::Rate { .. } => 1 << 16,
    };
    let progress = Arc::new(Progress {
        subscribers: plan.subscribers as u32,
        slots: (0..window.next_power_of_two())
            .map(|_| AtomicU32::new(0))
            .collect(),
        watermark: AtomicU64::new(0),
        advanced: Notify::new(),
        ready: AtomicUsize::new(0),
        all_ready: Notify::new(),
    });
    let base = Instant::now();
    let latency = matches!(plan.pace, Pace::Rate { .. });

    // Connect and subscribe everyone, a bounded number at a time.
    let gate = Arc::new(Semaphore::new(64));
    let mut connecting = Vec::with_capacity(plan.subscribers);
    for i in 0..plan.subscribers {
        let target = plan.subscriber_targets[i % plan.subscriber_targets.len()].clone();
        let login = plan.login.clone();
        let dest = plan.destination.clone();
        let gate = gate.clone();
        let within = plan.connect_timeout;
        let opts = ConnectOptions {
            buffers: if latency {
                Buffers::Latency
            } else {
                Buffers::Throughput
            },
            ..ConnectOptions::default()
        };
        connecting.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let (mut tx, mut rx) = client::connect_with(&target, &login, within, &opts)
                .await
                .map_err(|e| format!("subscriber {i} on {target}: {e}"))?;
            client::subscribe(&mut tx, &mut rx, &i.to_string(), &dest, within)
                .await
                .map_err(|e| format!("subscriber {i} SUBSCRIBE {dest} on {target}: {e}"))?;
            Ok::<_, String>((tx, rx))
        }));
    }
    let mut conns = Vec::with_capacity(plan.subscribers);
    for c in connecting {
        conns.push(c.await.map_err(|e| e.to_string())??);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut subs = Vec::with_capacity(conns.len());
    for (tx, rx) in conns {
        subs.push(tokio::spawn(subscriber(
            tx,
            rx,
            progress.clone(),
            stop_rx.clone(),
            latency,
            base,
        )));
    }

    let (mut ptx, mut prx) = client::connect(&plan.publisher, &plan.login, plan.connect_timeout)
        .await
        .map_err(|e| format!("publisher on {}: {e}", plan.publisher))?;
    // The publisher's own ERRORs (a refused SEND) end the run with the server's reason.
    let (perr_tx, mut perr_rx) = watch::channel(None::<String>);
    let publisher_reader = tokio::spawn(async move {
        loop {
            if let Err(e) = prx.recv_batch(|_| Ok(())).await {
                let _ = perr_tx.send(Some(format!("publisher connection: {e}")));
                return;
            }
        }
    });

    let mut frames = SendFrames::new(&plan.destination, plan.body_size)?;
    let outcome = async {
        warm_up(&mut ptx, &mut frames, &progress, plan.subscribers, base).await?;
        let conns_sample = plan.count_port.map(|port| {
            let half = plan.duration / 2;
            // The tool's own connections (clients straight on the broker) and the
            // servers' (a relay's upstream connections).
            let mut pids = plan.server_pids.clone();
            pids.push(std::process::id());
            tokio::spawn(async move {
                tokio::time::sleep(half).await;
                procfs::established_to_port(port, &pids)
            })
        });
        let cpu_before = (
            cpu_of(&plan.server_pids)?,
            procfs::cpu_time(std::process::id())?,
        );
        let start = Instant::now();
        let published = match plan.pace {
            Pace::Max { batch, .. } => {
                publish_max(
                    &mut ptx,
                    &mut frames,
                    &progress,
                    &plan,
                    window,
                    batch.max(1),
                    base,
                )
                .await?
            }
            Pace::Rate { deliveries_per_sec } => {
                publish_rate(&mut ptx, &mut frames, &plan, deliveries_per_sec, base).await?
            }
        };
        // Drain: wait until every subscriber has every message, or give up and count.
        let deadline = tokio::time::Instant::now() + plan.drain_timeout;
        while progress.watermark() < published {
            if tokio::time::timeout_at(deadline, progress.advanced.notified())
                .await
                .is_err()
            {
                break;
            }
        }
        let elapsed = start.elapsed();
        let server_cpu = cpu_of(&plan.server_pids)?.saturating_sub(cpu_before.0);
        let tool_cpu = procfs::cpu_time(std::process::id())?.saturating_sub(cpu_before.1);
        let server_rss = plan
            .server_pids
            .iter()
            .map(|&p| procfs::sample(p).map(|s| s.rss_kib))
            .collect::<Result<Vec<_>, _>>()?;
        let port_connections = match conns_sample {
            Some(h) => Some(h.await.map_err(|e| e.to_string())?),
            None => None,
        };
        Ok::<_, String>((
            published,
            elapsed,
            port_connections,
            server_cpu,
            tool_cpu,
            server_rss,
        ))
    };
    let result = tokio::select! {
        r = outcome => r,
        _ = perr_rx.changed() => Err(perr_rx.borrow().clone().unwrap_or_default()),
    };
    let _ = stop_tx.send(true);
    publisher_reader.abort();
    ptx.close().await;

    let mut report = FanoutReport {
        published: 0,
        subscribers: plan.subscribers,
        delivered: 0,
        lost: 0,
        out_of_order: 0,
        elapsed: Duration::ZERO,
        latency_us: new_histogram(),
        port_connections: None,
        server_cpu: None,
        tool_cpu: Duration::ZERO,
        server_rss_kib: Vec::new(),
        errors: Vec::new(),
    };
    for s in subs {
        let s = s.await.map_err(|e| e.to_string())?;
        report.delivered += s.received;
        report.out_of_order += s.out_of_order;
        report
            .latency_us
            .add(&s.latency_us)
            .map_err(|e| e.to_string())?;
        if let Some(e) = s.error {
            report.errors.push(e);
        }
    }
    let (published, elapsed, port_connections, server_cpu, tool_cpu, server_rss) = result?;
    report.server_cpu = (!plan.server_pids.is_empty()).then_some(server_cpu);
    report.tool_cpu = tool_cpu;
    report.server_rss_kib = server_rss;
    report.published = published;
    report.elapsed = elapsed;
    report.port_connections = port_connections;
    report.lost = (published * plan.subscribers as u64).saturating_sub(report.delivered);
    Ok(report)
}

async fn warm_up(
    tx: &mut Tx,
    frames: &mut SendFrames,
    progress: &Progress,
    subscribers: usize,
    base: Instant,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while progress.ready.load(Ordering::Acquire) < subscribers {
        if Instant::now() > deadline {
            return Err(format!(
                "warm-up: only {} of {subscribers} subscribers received a message within 20 s \
                 (does the destination broadcast on this server?)",
                progress.ready.load(Ordering::Acquire)
            ));
        }
        let frame = frames.stamp(WARMUP_SEQ, base.elapsed().as_nanos() as u64);
        tx.send(frame)
            .await
            .map_err(|e| format!("publisher: {e}"))?;
        let _ =
            tokio::time::timeout(Duration::from_millis(50), progress.all_ready.notified()).await;
    }
    // Let the last warm-up copies drain so they do not queue ahead of measured ones.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

async fn publish_max(
    tx: &mut Tx,
    frames: &mut SendFrames,
    progress: &Progress,
    plan: &FanoutPlan,
    window: u64,
    batch: u64,
    base: Instant,
) -> Result<u64, String> {
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed() < plan.duration {
        let in_flight = seq - progress.watermark();
        if in_flight >= window {
            let wait = progress.advanced.notified();
            if seq - progress.watermark() >= window
                && tokio::time::timeout(plan.drain_timeout, wait)
                    .await
                    .is_err()
            {
                return Err(format!(
                    "stalled: message {} did not reach every subscriber within {:?}",
                    progress.watermark(),
                    plan.drain_timeout
                ));
            }
            continue;
        }
        for _ in 0..(window - in_flight).min(batch) {
            let frame = frames.stamp(seq, base.elapsed().as_nanos() as u64);
            tx.feed(frame)
                .await
                .map_err(|e| format!("publisher: {e}"))?;
            seq += 1;
        }
        tx.flush().await.map_err(|e| format!("publisher: {e}"))?;
    }
    Ok(seq)
}

async fn publish_rate(
    tx: &mut Tx,
    frames: &mut SendFrames,
    plan: &FanoutPlan,
    deliveries_per_sec: u64,
    base: Instant,
) -> Result<u64, String> {
    let msgs_per_sec = deliveries_per_sec as f64 / plan.subscribers as f64;
    if msgs_per_sec <= 0.0 {
        return Err("--rate must be positive".into());
    }
    let period = Duration::from_secs_f64(1.0 / msgs_per_sec).max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = Instant::now();
    let mut seq = 0u64;
    loop {
        ticks.tick().await;
        let elapsed = start.elapsed();
        if elapsed >= plan.duration {
            break;
        }
        let due = (elapsed.as_secs_f64() * msgs_per_sec) as u64 + 1;
        while seq < due {
            // The stamp is the moment of writing, so publisher timer jitter is not
            // counted as server latency.
            let frame = frames.stamp(seq, base.elapsed().as_nanos() as u64);
            tx.send(frame)
                .await
                .map_err(|e| format!("publisher: {e}"))?;
            seq += 1;
        }
    }
    Ok(seq)
}

async fn subscriber(
    mut tx: Tx,
    mut rx: Rx,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
    latency: bool,
    base: Instant,
) -> SubStats {
    let mut stats = SubStats {
        received: 0,
        out_of_order: 0,
        latency_us: new_histogram(),
        error: None,
    };
    let mut warm = false;
    let mut expected = 0u64;
    loop {
        let batch = rx.recv_batch(|f| {
            if f.command != Command::Message {
                return Ok(());
            }
            let (Some(seq), Some(sent)) =
                (parse_hex16(f.body), f.body.get(16..).and_then(parse_hex16))
            else {
                return Ok(()); // not ours (another run's leftovers)
            };
            if seq == WARMUP_SEQ {
                if !warm {
                    warm = true;
                    if progress.ready.fetch_add(1, Ordering::AcqRel) + 1
                        == progress.subscribers as usize
                    {
                        progress.all_ready.notify_one();
                    }
                }
                return Ok(());
            }
            if seq != expected {
                stats.out_of_order += 1;
            }
            expected = seq + 1;
            stats.received += 1;
            if latency {
                let now = base.elapsed().as_nanos() as u64;
                let us = now.saturating_sub(sent) / 1000;
                stats.latency_us.saturating_record(us.max(1));
            }
            progress.delivered(seq);
            Ok(())
        });
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = batch => if let Err(e) = r {
                if !*stop.borrow() {
                    stats.error = Some(e.to_string());
                }
                break;
            }
        }
    }
    tx.close().await;
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_through_the_body() {
        let mut f = SendFrames::new("/topic/bench", 256).unwrap();
        let frame = f.stamp(42, 0xdead_beef).to_vec();
        let mut h = [stomp_relay_codec::Header::EMPTY; wire::MAX_HEADERS];
        let (decoded, used) = wire::next_frame(&frame, &mut h).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(decoded.body.len(), 256);
        assert_eq!(parse_hex16(decoded.body), Some(42));
        assert_eq!(parse_hex16(&decoded.body[16..]), Some(0xdead_beef));
        assert_eq!(parse_hex16(b"xxxxxxxxxxxxxxxx"), None);
    }

    #[test]
    fn watermark_advances_only_when_every_subscriber_has_the_message() {
        let p = Progress {
            subscribers: 3,
            slots: (0..4).map(|_| AtomicU32::new(0)).collect(),
            watermark: AtomicU64::new(0),
            advanced: Notify::new(),
            ready: AtomicUsize::new(0),
            all_ready: Notify::new(),
        };
        p.delivered(0);
        p.delivered(0);
        assert_eq!(p.watermark(), 0);
        p.delivered(0);
        assert_eq!(p.watermark(), 1);
        for _ in 0..3 {
            p.delivered(1);
        }
        assert_eq!(p.watermark(), 2);
        // The slot is reusable after completing.
        for _ in 0..3 {
            p.delivered(4);
        }
        assert_eq!(p.watermark(), 5);
    }
}
