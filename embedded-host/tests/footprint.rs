//! Memory budget: the whole static state of an edge node with N=4 sessions and 1 KiB
//! frame buffers must stay under 32 KiB. Printed so the table in docs/edge.md can be checked.

mod common;

use std::mem::size_of;
use std::mem::size_of_val;

use embassy_net::{IpEndpoint, StackResources};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use stomp_relay_edge::{Config, Edge, EdgeResources};

const N: usize = 4;
const FRAME: usize = 1024;
/// 4 sessions, 1 KiB outbound queue each, 4 KiB store-and-forward ring, 1 KiB frames.
type BudgetEdge = Edge<NoopRawMutex, N, 1024, 4096, FRAME>;
/// TCP buffers: 512 B receive / 512 B transmit per session and upstream (frames up to
/// the 1 KiB frame buffer still pass; the TCP window only paces them).
type BudgetResources = EdgeResources<N, 512, 512, FRAME, 512, 512>;
/// N session sockets + rejector + upstream.
type BudgetStack = StackResources<{ N + 2 }>;

#[test]
fn static_state_for_four_sessions_fits_32_kib() {
    let (stack, _peer, _net) = common::network(None);
    let edge = BudgetEdge::new();
    let mut res = BudgetResources::new();
    let upstreams = [IpEndpoint::new(common::PEER_IP.into(), 61613)];
    let config = Config::new(&upstreams);
    let run = edge.run(stack, &config, &mut res);
    let future = size_of_val(&run);
    drop(run);
    let EdgeResources {
        sessions,
        rejector,
        upstream,
    } = &mut res;
    let session = size_of_val(&edge.run_session(stack, &config, 0, &mut sessions[0]));
    let rejector = size_of_val(&edge.run_rejector(stack, &config, rejector));
    let upstream = size_of_val(&edge.run_upstream(stack, &config, upstream));
    println!(
        "  (futures: session {} B each, rejector {} B, upstream {} B)",
        session, rejector, upstream
    );

    let shared = size_of::<BudgetEdge>();
    let buffers = size_of::<BudgetResources>();
    let sockets = size_of::<BudgetStack>();
    let total = shared + buffers + future + sockets;
    println!("edge footprint, N={} sessions, {} B frames:", N, FRAME);
    println!(
        "  Edge (shared state, queues, ring)   {:>6} B (of which each device's Session {} B)",
        shared,
        size_of::<stomp_relay_edge::DeviceSession>()
    );
    println!("  EdgeResources (TCP + frame buffers) {:>6} B", buffers);
    println!("  run() future (task state)           {:>6} B", future);
    println!(
        "  embassy-net StackResources<{}>       {:>6} B",
        N + 2,
        sockets
    );
    println!("  total                               {:>6} B", total);
    assert!(
        total < 32 * 1024,
        "static state {} B exceeds the 32 KiB budget",
        total
    );
}
