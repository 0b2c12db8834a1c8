//! `stomp-load`: the project's load tool for STOMP servers (stomp-relay and its peers).
//!
//! Three scenarios, each bounded in connections and time and limited to loopback targets:
//! - `fanout`: one publisher -> N subscribers on one destination, over WebSocket or TCP;
//!   `--rate 0` measures the maximum sustained deliveries/s with no loss, `--rate R`
//!   publishes R deliveries/s and reports latency percentiles.
//! - `idle`: K sessions that CONNECT + SUBSCRIBE and sit idle; reports the server's RSS
//!   per session.
//! - `scale`: up to 100 000 WebSocket sessions from several 127.x sources: RSS per
//!   session, connect rate, idle CPU with heart-beats, broadcast time to all, and
//!   deliveries/s with CPU per delivery as the audience grows.
//!
//! Each run prints one markdown table row (or `key=value` pairs with `--format kv`, for
//! scripts such as scripts/bench.sh). Exit code 1 when a run fails or loses messages,
//! 2 for a bad command line.
#![forbid(unsafe_code)]

mod client;
mod fanout;
mod idle;
mod procfs;
mod scale;
mod wire;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use client::{Login, Target};
use fanout::{FanoutPlan, FanoutReport, Pace};
use idle::{IdlePlan, IdleReport};
use scale::{ScalePlan, ScaleReport};

#[derive(Parser, Debug)]
#[command(
    name = "stomp-load",
    version,
    about = "Load generator for STOMP servers (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// 1 publisher -> N subscribers on one destination: max rate or latency at a rate.
    Fanout(FanoutArgs),
    /// K idle sessions (CONNECT + one SUBSCRIBE each): server RSS per session.
    Idle(IdleArgs),
    /// Many sessions on one server: memory, connect rate, idle CPU, broadcast time.
    Scale(ScaleArgs),
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Name of the system under test, the first column of the output row.
    #[arg(long, default_value = "server")]
    label: String,
    /// STOMP login (omitted when not given).
    #[arg(long)]
    login: Option<String>,
    /// STOMP passcode (omitted when not given).
    #[arg(long)]
    passcode: Option<String>,
    /// CONNECT `host` header (RabbitMQ reads it as the virtual host).
    #[arg(long, default_value = "/")]
    vhost: String,
    /// Time limit for opening one connection and for each receipt, in seconds.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Output: a markdown table row, or key=value pairs for scripts.
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    format: Format,
    /// Worker threads of the tool's runtime (the server runs on the same machine).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Markdown,
    Kv,
}

#[derive(Args, Debug)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Publisher URL: ws://HOST:PORT/PATH or stomp://HOST:PORT (loopback only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: Target,
    /// Subscriber URLs, comma-separated or repeated; subscribers are spread round-robin.
    /// Defaults to --url.
    #[arg(long = "sub-url", value_delimiter = ',')]
    sub_urls: Vec<Target>,
    /// Number of subscribers.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Destination every subscriber subscribes to and the publisher sends to.
    #[arg(long, default_value = "/topic/bench")]
    destination: String,
    /// Body size in bytes (at least 32: sequence number and send time).
    #[arg(long, default_value_t = 256)]
    body_size: usize,
    /// Measured duration in seconds (after warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Deliveries per second (messages/s x subscribers) for a latency run; 0 = find the
    /// maximum sustained rate.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Max mode: messages in flight (published, not yet at every subscriber).
    #[arg(long, default_value_t = 64)]
    window: u64,
    /// Max mode: frames written per flush.
    #[arg(long, default_value_t = 16)]
    batch: u64,
    /// Seconds to wait for the last deliveries (and the stall limit in max mode).
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// Count, mid-run, the established TCP connections to this local port held by this
    /// tool and the --server-pid processes (e.g. 61613: the broker connections of
    /// clients directly on the broker, or of relay instances).
    #[arg(long)]
    count_port: Option<u16>,
    /// Pids of the server processes (comma-separated) whose CPU time is reported.
    #[arg(long = "server-pid", value_delimiter = ',')]
    server_pids: Vec<u32>,
    /// Process name (comm) of the server whose CPU time is reported, e.g. beam.smp.
    #[arg(long, conflicts_with = "server_pids")]
    server_name: Option<String>,
}

#[derive(Args, Debug)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// Server URLs, comma-separated; sessions are spread round-robin.
    #[arg(long, value_delimiter = ',', default_value = "ws://127.0.0.1:8080/ws")]
    url: Vec<Target>,
    /// Number of idle sessions.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Destination of each session's SUBSCRIBE; `{n}` becomes the session number.
    #[arg(long, default_value = "/topic/idle")]
    destination: String,
    /// Pid of the server whose RSS is measured [default: the process listening on the
    /// first --url's port].
    #[arg(long, conflicts_with = "server_name")]
    server_pid: Option<u32>,
    /// Process name (comm) of the server, e.g. stomp-relay, beam.smp, java.
    #[arg(long)]
    server_name: Option<String>,
    /// Sessions being opened at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Pause before each RSS reading, in seconds.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Seconds to keep the sessions open after measuring.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
}

#[derive(Args, Debug)]
struct ScaleArgs {
    #[command(flatten)]
    common: Common,
    /// Server URL (ws://HOST:PORT/PATH, loopback).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: Target,
    /// Number of sessions held at once.
    #[arg(long, default_value_t = 100_000)]
    sessions: usize,
    /// Source addresses, `127.0.0.1-127.0.0.8` or a comma list; each gives the tool its own
    /// ephemeral port range (about 28 000 ports).
    #[arg(long, default_value = "127.0.0.1-127.0.0.8")]
    sources: String,
    /// Pid of the server [default: the process listening on --url's port].
    #[arg(long)]
    server_pid: Option<u32>,
    /// Sessions being opened at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Server heart-beat interval each session asks for, in ms (0 = none).
    #[arg(long, default_value_t = 10_000)]
    heartbeat_ms: u64,
    /// Pause before each RSS reading, in seconds.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Idle phase (CPU with heart-beats only), in seconds.
    #[arg(long, default_value_t = 20.0)]
    idle: f64,
    /// Broadcasts to every session, each timed to its last delivery.
    #[arg(long, default_value_t = 5)]
    broadcasts: usize,
    /// Audience sizes of the sustained phase, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000,100000")]
    tiers: Vec<usize>,
    /// Seconds per tier.
    #[arg(long, default_value_t = 5.0)]
    tier_duration: f64,
    /// Messages in flight in the sustained phase.
    #[arg(long, default_value_t = 64)]
    window: u64,
    /// Destination prefix (`.all` and `.<tier>` are appended).
    #[arg(long, default_value = "/topic/scale")]
    prefix: String,
}

fn seconds(flag: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| format!("{flag}: `{v}` is not a duration in seconds"))
}

impl Common {
    fn login(&self) -> Login {
        Login {
            login: self.login.clone(),
            passcode: self.passcode.clone(),
            vhost: self.vhost.clone(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.scenario {
        Scenario::Fanout(a) => a.common.threads,
        Scenario::Idle(a) => a.common.threads,
        Scenario::Scale(a) => a.common.threads,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stomp-load: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(async {
        match cli.scenario {
            Scenario::Fanout(a) => fanout_cmd(a).await,
            Scenario::Idle(a) => idle_cmd(a).await,
            Scenario::Scale(a) => scale_cmd(a).await,
        }
    });
    // Sockets of a failed run may still be open; do not wait for their tasks.
    rt.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("stomp-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn fanout_cmd(a: FanoutArgs) -> Result<bool, String> {
    let subscriber_targets = if a.sub_urls.is_empty() {
        vec![a.url.clone()]
    } else {
        a.sub_urls.clone()
    };
    let pace = if a.rate == 0 {
        Pace::Max {
            window: a.window,
            batch: a.batch,
        }
    } else {
        Pace::Rate {
            deliveries_per_sec: a.rate,
        }
    };
    let plan = FanoutPlan {
        publisher: a.url.clone(),
        subscriber_targets,
        subscribers: a.subscribers,
        destination: a.destination.clone(),
        login: a.common.login(),
        body_size: a.body_size,
        duration: seconds("--duration", a.duration)?,
        pace,
        connect_timeout: seconds("--connect-timeout", a.common.connect_timeout)?,
        drain_timeout: seconds("--drain-timeout", a.drain_timeout)?,
        count_port: a.count_port,
        server_pids: match &a.server_name {
            Some(name) => vec![procfs::find_by_name(name, Some(a.url.addr.port()))?],
            None => a.server_pids.clone(),
        },
    };
    let report = fanout::run(plan.clone()).await?;
    println!("{}", fanout_row(&a, &plan, &report));
    for e in report.errors.iter().take(5) {
        eprintln!("stomp-load: {e}");
    }
    Ok(report.lost == 0 && report.out_of_order == 0 && report.errors.is_empty())
}

fn fanout_row(a: &FanoutArgs, plan: &FanoutPlan, r: &FanoutReport) -> String {
    let transport = if plan.publisher.websocket {
        "ws"
    } else {
        "tcp"
    };
    let hosts = plan.subscriber_targets.len();
    let mode = match plan.pace {
        Pace::Max { .. } => "max".to_string(),
        Pace::Rate { deliveries_per_sec } => format!("{deliveries_per_sec}/s"),
    };
    let p = |q: f64| r.latency_us.value_at_quantile(q) as f64 / 1000.0;
    match a.common.format {
        Format::Kv => {
            let mut s = format!(
                "scenario=fanout label={:?} transport={transport} mode={mode} subscribers={} \
                 targets={hosts} body={} published={} delivered={} lost={} out_of_order={} \
                 seconds={:.3} deliveries_per_s={:.0}",
                a.common.label,
                r.subscribers,
                plan.body_size,
                r.published,
                r.delivered,
                r.lost,
                r.out_of_order,
                r.elapsed.as_secs_f64(),
                r.deliveries_per_sec()
            );
            if matches!(plan.pace, Pace::Rate { .. }) {
                s += &format!(
                    " p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
                    p(0.5),
                    p(0.99),
                    r.latency_us.max() as f64 / 1000.0
                );
            }
            if let Some(c) = r.port_connections {
                s += &format!(" port_connections={c}");
            }
            if let (Some(cpu), Some(per)) = (r.server_cpu, r.server_cpu_us_per_delivery()) {
                s += &format!(
                    " server_cpu_s={:.2} server_cpu_us_per_delivery={per:.3}",
                    cpu.as_secs_f64()
                );
            }
            if !r.server_rss_kib.is_empty() {
                let rss: Vec<String> = r.server_rss_kib.iter().map(u64::to_string).collect();
                s += &format!(" server_rss_kib={}", rss.join(","));
            }
            s += &format!(" tool_cpu_s={:.2}", r.tool_cpu.as_secs_f64());
            s
        }
        Format::Markdown => {
            let figure = match plan.pace {
                Pace::Max { .. } => format!("{:.0} deliveries/s", r.deliveries_per_sec()),
                Pace::Rate { .. } => format!(
                    "p50 {:.2} ms, p99 {:.2} ms (max {:.2} ms)",
                    p(0.5),
                    p(0.99),
                    r.latency_us.max() as f64 / 1000.0
                ),
            };
            let mut conns = r
                .port_connections
                .map(|c| format!(", {c} broker connections"))
                .unwrap_or_default();
            if let Some(per) = r.server_cpu_us_per_delivery() {
                conns += &format!(", server CPU {per:.2} us/delivery");
            }
            format!(
                "| {} | fan-out 1->{} ({transport}, {hosts} target(s)), {} B, {mode} | {figure} | \
                 {} lost, {} out of order, {} deliveries in {:.1} s{conns} |",
                a.common.label,
                r.subscribers,
                plan.body_size,
                r.lost,
                r.out_of_order,
                r.delivered,
                r.elapsed.as_secs_f64()
            )
        }
    }
}

async fn idle_cmd(a: IdleArgs) -> Result<bool, String> {
    let server_pid = match (a.server_pid, &a.server_name) {
        (Some(pid), _) => pid,
        (None, Some(name)) => procfs::find_by_name(name, a.url.first().map(|t| t.addr.port()))?,
        (None, None) => match a.url.first() {
            Some(t) => procfs::listener_of(t.addr.port())?,
            None => return Err("idle: --url needs at least one URL".into()),
        },
    };
    let plan = IdlePlan {
        targets: a.url.clone(),
        sessions: a.sessions,
        destination: a.destination.clone(),
        login: a.common.login(),
        server_pid,
        concurrency: a.concurrency,
        connect_timeout: seconds("--connect-timeout", a.common.connect_timeout)?,
        settle: seconds("--settle", a.settle)?,
        hold: seconds("--hold", a.hold)?,
    };
    let r = idle::run(plan).await?;
    println!("{}", idle_row(&a, &r));
    Ok(true)
}

fn idle_row(a: &IdleArgs, r: &IdleReport) -> String {
    match a.common.format {
        Format::Kv => format!(
            "scenario=idle label={:?} sessions={} rss_before_kib={} rss_after_kib={} \
             kib_per_session={:.2} threads_before={} threads_after={} open_seconds={:.2}",
            a.common.label,
            r.sessions,
            r.before.rss_kib,
            r.after.rss_kib,
            r.kib_per_session(),
            r.before.threads,
            r.after.threads,
            r.open_time.as_secs_f64()
        ),
        Format::Markdown => format!(
            "| {} | {} idle sessions (CONNECT + SUBSCRIBE) | {:.1} KiB RSS per session | \
             RSS {} -> {} KiB, threads {} -> {}, opened in {:.1} s |",
            a.common.label,
            r.sessions,
            r.kib_per_session(),
            r.before.rss_kib,
            r.after.rss_kib,
            r.before.threads,
            r.after.threads,
            r.open_time.as_secs_f64()
        ),
    }
}

async fn scale_cmd(a: ScaleArgs) -> Result<bool, String> {
    if !a.url.websocket {
        return Err(format!(
            "--url {}: scale runs over WebSocket (ws://)",
            a.url
        ));
    }
    if a.tiers.contains(&0) {
        return Err("--tiers: an audience of 0 subscribers measures nothing".into());
    }
    let server_pid = match a.server_pid {
        Some(pid) => pid,
        None => procfs::listener_of(a.url.addr.port())?,
    };
    let plan = ScalePlan {
        target: a.url.clone(),
        sessions: a.sessions,
        sources: scale::parse_sources(&a.sources)?,
        login: a.common.login(),
        server_pid,
        concurrency: a.concurrency,
        connect_timeout: seconds("--connect-timeout", a.common.connect_timeout)?,
        heartbeat_ms: a.heartbeat_ms,
        settle: seconds("--settle", a.settle)?,
        idle: seconds("--idle", a.idle)?,
        broadcasts: a.broadcasts,
        tiers: a.tiers.clone(),
        tier_duration: seconds("--tier-duration", a.tier_duration)?,
        window: a.window,
        prefix: a.prefix.clone(),
    };
    let r = scale::run(plan).await?;
    for row in scale_rows(&a, &r) {
        println!("{row}");
    }
    Ok(r.broadcast_lost == 0 && r.tiers.iter().all(|t| t.lost == 0))
}

fn scale_rows(a: &ScaleArgs, r: &ScaleReport) -> Vec<String> {
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    let all: Vec<String> = r
        .broadcast
        .iter()
        .map(|d| format!("{:.1}", ms(Some(*d))))
        .collect();
    let base = r.tiers.first().map(|t| t.cpu_us_per_delivery());
    let mut rows = vec![match a.common.format {
        Format::Kv => format!(
            "scenario=scale label={:?} sessions={} sources={} kib_per_session={:.2} \
             sessions_per_second={:.0} idle_cpu_percent={:.1} heartbeat_ms={} \
             broadcast_ms_median={:.1} broadcast_ms={} broadcast_lost={}",
            a.common.label,
            r.sessions,
            r.sources,
            r.kib_per_session(),
            r.sessions_per_second(),
            r.idle_cpu_share * 100.0,
            a.heartbeat_ms,
            ms(r.broadcast_median()),
            all.join(","),
            r.broadcast_lost
        ),
        Format::Markdown => format!(
            "| {} | {} sessions from {} sources | {:.2} KiB RSS per session | {:.0} sessions/s | \
             idle CPU {:.1}% (heart-beats every {} ms) | broadcast to all: median {:.1} ms \
             (runs: {} ms){} |",
            a.common.label,
            r.sessions,
            r.sources,
            r.kib_per_session(),
            r.sessions_per_second(),
            r.idle_cpu_share * 100.0,
            a.heartbeat_ms,
            ms(r.broadcast_median()),
            all.join(", "),
            if r.broadcast_lost == 0 {
                String::new()
            } else {
                format!(", {} undelivered", r.broadcast_lost)
            }
        ),
    }];
    for t in &r.tiers {
        let vs = base.map_or(f64::NAN, |b| t.cpu_us_per_delivery() / b);
        rows.push(match a.common.format {
            Format::Kv => format!(
                "scenario=scale-tier label={:?} subscribers={} deliveries_per_second={:.0} \
                 server_cpu_us_per_delivery={:.3} vs_first_tier={vs:.2} lost={}",
                a.common.label,
                t.subscribers,
                t.per_second(),
                t.cpu_us_per_delivery(),
                t.lost
            ),
            Format::Markdown => format!(
                "| {} | {} subscribers | {:.1} k deliveries/s | {:.3} us server CPU per delivery \
                 | {vs:.2}x the first tier | {} lost |",
                a.common.label,
                t.subscribers,
                t.per_second() / 1e3,
                t.cpu_us_per_delivery(),
                t.lost
            ),
        });
    }
    rows
}
