//! The edge node as every board of this crate runs it: the sizes (4 local sessions,
//! 1 KiB buffers), the static memory they live in, the configuration and the two tasks
//! that do not depend on the board. Boards add their network driver's task.
//!
//! Invariant: every buffer here is a `static`, counted in `.data`/`.bss` by the size
//! report (`scripts/edge-qemu.sh size`); nothing is allocated at run time.

use embassy_executor::{SpawnError, Spawner};
use embassy_net::{IpEndpoint, Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_time::{Duration, Timer};
use static_cell::{ConstStaticCell, StaticCell};
use stomp_relay_edge::{Config, Dialect, Edge, EdgeResources};

/// Local device sessions.
pub const SESSIONS: usize = 4;
/// 1 KiB outbound queue per session, a 4 KiB store-and-forward ring, 1 KiB frames.
pub type NodeEdge = Edge<NoopRawMutex, SESSIONS, 1024, 4096, 1024>;
/// 1 KiB TCP receive and transmit buffers per session and for the upstream.
pub type NodeResources = EdgeResources<SESSIONS, 1024, 1024, 1024, 1024, 1024>;
/// embassy-net sockets: the sessions, the `Too many sessions` rejector, the upstream.
pub const SOCKETS: usize = SESSIONS + 2;

/// Where the node sits on the network and which broker it relays to.
#[derive(Clone, Copy)]
pub struct NodeConfig {
    /// The node's own address.
    pub address: Ipv4Cidr,
    /// Default gateway, if the broker is not on the local segment.
    pub gateway: Option<Ipv4Address>,
    /// The upstream broker's STOMP endpoint.
    pub upstream: IpEndpoint,
    /// Upstream login, passcode and virtual host.
    pub login: &'static str,
    /// See `login`.
    pub passcode: &'static str,
    /// See `login`.
    pub vhost: &'static str,
    /// How destinations are spelled for the broker.
    pub dialect: Dialect,
    /// Heart-beat period toward devices and the broker, both directions.
    pub heartbeat: Duration,
}

impl NodeConfig {
    /// embassy-net's static IPv4 configuration for this node.
    pub fn net_config(&self) -> embassy_net::Config {
        embassy_net::Config::ipv4_static(StaticConfigV4 {
            address: self.address,
            gateway: self.gateway,
            dns_servers: Default::default(),
        })
    }
}

// Const-initialised in place: `StaticCell::init(value)` would build these 10-20 KiB
// values on the stack first and copy them, and the stack would have to be that deep.
// The edge node's initial value is not all zeros (a string pointer, an enum), so it sits
// in `.data` and its image costs 12 KiB of flash: less than the 12 KiB of stack that
// building it at run time takes (measured with the stack paint, src/stack.rs).
static EDGE: ConstStaticCell<NodeEdge> = ConstStaticCell::new(NodeEdge::new());
static RESOURCES: ConstStaticCell<NodeResources> = ConstStaticCell::new(NodeResources::new());
static SOCKET_RESOURCES: ConstStaticCell<StackResources<SOCKETS>> =
    ConstStaticCell::new(StackResources::new());
static UPSTREAMS: StaticCell<[IpEndpoint; 1]> = StaticCell::new();
static CONFIG: StaticCell<Config<'static>> = StaticCell::new();

/// The socket table for `embassy_net::new`. Call once.
pub fn socket_resources() -> &'static mut StackResources<SOCKETS> {
    SOCKET_RESOURCES.take()
}

/// Spawns the edge node and its stats line on `stack`. `seed` varies the reconnect
/// jitter between nodes; `stats` is called every `stats_every` to log the board's stats
/// line (`Edge::summary` plus what the board knows: frame counters, stack depth). Call
/// once (the statics are taken).
pub fn spawn(
    spawner: Spawner,
    stack: Stack<'static>,
    node: &NodeConfig,
    seed: u64,
    stats_every: Duration,
    stats: fn(&'static NodeEdge),
) -> Result<(), SpawnError> {
    let mut config = Config::new(UPSTREAMS.init([node.upstream]));
    config.upstream_login = node.login;
    config.upstream_passcode = node.passcode;
    config.upstream_host = node.vhost;
    config.dialect = node.dialect;
    config.local_heartbeat = (node.heartbeat, node.heartbeat);
    config.upstream_heartbeat = (node.heartbeat, node.heartbeat);
    config.seed = seed;
    let config = CONFIG.init(config);
    let edge: &'static NodeEdge = EDGE.take();
    spawner.spawn(edge_task(edge, stack, config, RESOURCES.take())?);
    spawner.spawn(stats_task(edge, stats_every, stats)?);
    Ok(())
}

#[embassy_executor::task]
async fn edge_task(
    edge: &'static NodeEdge,
    stack: Stack<'static>,
    config: &'static Config<'static>,
    resources: &'static mut NodeResources,
) -> ! {
    edge.run(stack, config, resources).await
}

#[embassy_executor::task]
async fn stats_task(edge: &'static NodeEdge, every: Duration, board: fn(&'static NodeEdge)) -> ! {
    loop {
        Timer::after(every).await;
        board(edge);
    }
}
