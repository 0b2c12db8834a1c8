//! `stomp-relay-edge`: the edge node on a Linux host, for development.
//!
//! Runs the library's edge node on embassy-executor's std platform with embassy-net on a
//! TAP device (see `scripts/edge-netns.sh`, which creates the TAP inside a network
//! namespace and wires it to the host, where the upstream broker runs). The network
//! stack is smoltcp in this process; the TAP only carries its Ethernet frames.

use std::net::{Ipv4Addr, SocketAddrV4};

use clap::Parser;
use embassy_executor::Spawner;
use embassy_net::{IpEndpoint, Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_time::Duration;
use static_cell::StaticCell;
use stomp_relay_edge::{Config, Dialect, Edge, EdgeResources};

/// 8 local sessions, 4 KiB outbound queue each, 16 KiB store-and-forward ring, 4 KiB frames.
type HostEdge = Edge<NoopRawMutex, 8, 4096, 16384, 4096>;
type HostResources = EdgeResources<8, 2048, 2048, 4096, 4096, 4096>;

/// Relay local STOMP devices on a TAP network to an upstream broker.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// TAP interface to attach to (must exist, e.g. created by scripts/edge-netns.sh).
    #[arg(long, default_value = "tap-edge")]
    tap: String,
    /// The edge node's own address on the TAP network, CIDR form.
    #[arg(long, default_value = "192.168.69.2/24")]
    address: String,
    /// Default gateway on the TAP network.
    #[arg(long)]
    gateway: Option<Ipv4Addr>,
    /// Upstream broker, IPv4:port (reachable over the TAP network); repeat the flag
    /// for failover addresses, tried in order.
    #[arg(long, default_value = "192.168.69.1:61613")]
    upstream: Vec<SocketAddrV4>,
    /// TCP port local devices connect to.
    #[arg(long, default_value_t = 61613)]
    port: u16,
    /// Upstream login.
    #[arg(long, default_value = "guest")]
    login: String,
    /// Upstream passcode.
    #[arg(long, default_value = "guest")]
    passcode: String,
    /// Upstream virtual host.
    #[arg(long, default_value = "/")]
    vhost: String,
    /// Broker dialect for destinations: activemq, rabbitmq, artemis or generic.
    #[arg(long, default_value = "generic", value_parser = parse_dialect)]
    dialect: Dialect,
    /// Heart-beat interval in milliseconds, both directions and both sides (0: off).
    #[arg(long, default_value_t = 10_000)]
    heartbeat_ms: u64,
}

fn parse_dialect(s: &str) -> Result<Dialect, String> {
    s.parse().map_err(|_| {
        format!(
            "unknown dialect `{}` (activemq, rabbitmq, artemis, generic)",
            s
        )
    })
}

fn parse_cidr(s: &str) -> Option<Ipv4Cidr> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some(Ipv4Cidr::new(ip, len))
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn edge_task(
    edge: &'static HostEdge,
    stack: Stack<'static>,
    config: &'static Config<'static>,
    resources: &'static mut HostResources,
) -> ! {
    edge.run(stack, config, resources).await
}

#[embassy_executor::task]
async fn stats_task(edge: &'static HostEdge) -> ! {
    loop {
        embassy_time::Timer::after_secs(30).await;
        log::info!("{}", edge.summary());
    }
}

static EDGE: StaticCell<HostEdge> = StaticCell::new();
static RESOURCES: StaticCell<HostResources> = StaticCell::new();
static STACK: StaticCell<StackResources<12>> = StaticCell::new();
static CONFIG: StaticCell<Config<'static>> = StaticCell::new();

fn setup(spawner: Spawner) -> Result<(), String> {
    let args = Args::parse();
    let address = parse_cidr(&args.address).ok_or_else(|| {
        format!(
            "--address: `{}` is not an IPv4 CIDR like 192.168.69.2/24",
            args.address
        )
    })?;
    // Linux interface names are at most 15 bytes (IFNAMSIZ - 1); the TAP driver would
    // panic on a longer one.
    if args.tap.is_empty() || args.tap.len() > 15 || args.tap.contains(['/', ' ', '\0']) {
        return Err(format!(
            "--tap: `{}` is not a valid interface name (1-15 bytes, no '/' or spaces)",
            args.tap
        ));
    }
    let device = TunTapDevice::new(&args.tap)
        .map_err(|e| format!("--tap: cannot open `{}`: {}", args.tap, e))?;
    let net_config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address,
        gateway: args.gateway,
        dns_servers: Default::default(),
    });
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let (stack, runner) =
        embassy_net::new(device, net_config, STACK.init(StackResources::new()), seed);

    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let upstreams: Vec<IpEndpoint> = args
        .upstream
        .iter()
        .map(|a| IpEndpoint::new((*a.ip()).into(), a.port()))
        .collect();
    let mut config = Config::new(Box::leak(upstreams.into_boxed_slice()));
    config.listen_port = args.port;
    config.upstream_login = leak(args.login);
    config.upstream_passcode = leak(args.passcode);
    config.upstream_host = leak(args.vhost);
    config.dialect = args.dialect;
    let hb = Duration::from_millis(args.heartbeat_ms);
    config.local_heartbeat = (hb, hb);
    config.upstream_heartbeat = (hb, hb);
    config.seed = seed;
    let config = CONFIG.init(config);

    log::info!(
        "edge node on {} ({}), devices on port {}, upstream {:?}",
        args.tap,
        args.address,
        args.port,
        args.upstream
    );
    let edge: &'static HostEdge = EDGE.init(HostEdge::new());
    let spawn_err = |e| format!("cannot spawn task: {:?}", e);
    spawner.spawn(net_task(runner).map_err(spawn_err)?);
    spawner.spawn(
        edge_task(edge, stack, config, RESOURCES.init(HostResources::new())).map_err(spawn_err)?,
    );
    spawner.spawn(stats_task(edge).map_err(spawn_err)?);
    Ok(())
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = setup(spawner) {
        eprintln!("error: {}", e);
        std::process::exit(2);
    }
}
