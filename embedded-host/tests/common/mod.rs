//! Test plumbing: two embassy-net stacks joined back to back in memory (with optional
//! packet loss) and a simulated upstream broker. Devices are the workspace's one test
//! client (`stomp-relay-test-client` over embassy-net).
//!
//! The simulated upstream is a scripted in-memory peer speaking real STOMP over real
//! TCP through the stacks: CONNECT/CONNECTED, SUBSCRIBE/UNSUBSCRIBE, SEND with RECEIPT,
//! MESSAGE fan-out, and an outage switch that aborts its connections and refuses new
//! ones. A test-side observer subscription stands in for an upstream subscriber.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::string::String;
use std::vec::Vec;

use embassy_futures::join::{join, join3, join_array};
use embassy_futures::select::{select, Either};
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_net_driver_channel as ch;
use embassy_net_driver_channel::driver::{HardwareAddress, LinkState};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::signal::Signal;
use embassy_time::{with_timeout, Duration, Timer};
use embedded_io_async::Write as _;
use stomp_relay_codec::Command;
#[allow(unused_imports)]
pub use stomp_relay_test_client::embassy::Client;
pub use stomp_relay_test_client::{frame_bytes, Frame, FrameReader};

pub const MTU: usize = 1500;
pub const EDGE_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
pub const PEER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
pub const UPSTREAM_PORT: u16 = 61700;
pub const EDGE_PORT: u16 = 61613;

fn leak<T>(t: T) -> &'static mut T {
    Box::leak(Box::new(t))
}

fn stack_config(ip: Ipv4Address) -> embassy_net::Config {
    embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(ip, 24),
        gateway: None,
        dns_servers: Default::default(),
    })
}

/// Two stacks (`edge` at 10.0.0.1, `peer` at 10.0.0.2) and the future that runs them and
/// carries packets between them, dropping every `drop_every`-th packet if set.
pub fn network(
    drop_every: Option<u32>,
) -> (Stack<'static>, Stack<'static>, impl Future<Output = ()>) {
    let (ra, da) = ch::new(leak(ch::State::<MTU, 8, 8>::new()), HardwareAddress::Ip);
    let (rb, db) = ch::new(leak(ch::State::<MTU, 8, 8>::new()), HardwareAddress::Ip);
    let (edge, mut edge_runner) = embassy_net::new(
        da,
        stack_config(EDGE_IP),
        leak(StackResources::<16>::new()),
        1,
    );
    let (peer, mut peer_runner) = embassy_net::new(
        db,
        stack_config(PEER_IP),
        leak(StackResources::<16>::new()),
        2,
    );
    let counter = leak(Cell::new(0u32));
    let bg = async move {
        let (sa, rxa, txa) = ra.split();
        let (sb, rxb, txb) = rb.split();
        sa.set_link_state(LinkState::Up);
        sb.set_link_state(LinkState::Up);
        let counter = &*counter;
        let forward = |tx: &'static mut ch::TxRunner<'static, MTU>,
                       rx: &'static mut ch::RxRunner<'static, MTU>| async move {
            loop {
                let pkt = tx.tx_buf().await;
                let n = counter.get() + 1;
                counter.set(n);
                if drop_every.is_some_and(|k| n.is_multiple_of(k)) {
                    tx.tx_done();
                    continue;
                }
                let dst = rx.rx_buf().await;
                let len = pkt.len();
                dst[..len].copy_from_slice(pkt);
                rx.rx_done(len);
                tx.tx_done();
            }
        };
        let txa = leak(txa);
        let txb = leak(txb);
        let rxa = leak(rxa);
        let rxb = leak(rxb);
        join(
            join(edge_runner.run(), peer_runner.run()),
            join(forward(txa, rxb), forward(txb, rxa)),
        )
        .await;
    };
    (edge, peer, bg)
}

/// One frame the simulated upstream received by SEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub destination: String,
    pub body: String,
}

struct Sub {
    conn: usize,
    id: String,
    destination: String,
}

const CONNS: usize = 3;

/// The simulated upstream broker.
pub struct SimUpstream {
    online: Cell<bool>,
    kill: [Signal<NoopRawMutex, ()>; CONNS],
    wake: [Signal<NoopRawMutex, ()>; CONNS],
    outbox: [RefCell<Vec<u8>>; CONNS],
    subs: RefCell<Vec<Sub>>,
    next_id: Cell<u64>,
    /// Every SEND received, in arrival order (duplicates included).
    pub received: RefCell<Vec<Received>>,
    /// What an upstream subscriber on `observe` receives.
    pub observed: RefCell<Vec<Received>>,
    pub observe: RefCell<Option<String>>,
    pub connects: Cell<u32>,
    pub subscribes: RefCell<Vec<String>>,
}

impl SimUpstream {
    pub fn new() -> &'static SimUpstream {
        leak(SimUpstream {
            online: Cell::new(true),
            kill: [const { Signal::new() }; CONNS],
            wake: [const { Signal::new() }; CONNS],
            outbox: [const { RefCell::new(Vec::new()) }; CONNS],
            subs: RefCell::new(Vec::new()),
            next_id: Cell::new(0),
            received: RefCell::new(Vec::new()),
            observed: RefCell::new(Vec::new()),
            observe: RefCell::new(None),
            connects: Cell::new(0),
            subscribes: RefCell::new(Vec::new()),
        })
    }

    /// Runs the broker on `stack`, port [`UPSTREAM_PORT`].
    pub async fn run(&'static self, stack: Stack<'static>) {
        let conns: [_; CONNS] = core::array::from_fn(|i| self.serve_slot(stack, i));
        join_array(conns).await;
    }

    /// Takes the broker down (every connection aborted, new ones refused) or up again.
    pub fn set_online(&self, online: bool) {
        self.online.set(online);
        if !online {
            for k in &self.kill {
                k.signal(());
            }
        }
    }

    /// Upstream subscriptions currently standing on `destination`.
    pub fn subs_count(&self, destination: &str) -> usize {
        self.subs
            .borrow()
            .iter()
            .filter(|s| s.destination == destination)
            .count()
    }

    /// Publishes a MESSAGE as if another upstream client sent it.
    pub fn publish(&self, destination: &str, body: &str) {
        self.route(destination, body, &[]);
    }

    fn route(&self, destination: &str, body: &str, extra: &[(String, String)]) {
        if self.observe.borrow().as_deref() == Some(destination) {
            self.observed.borrow_mut().push(Received {
                destination: destination.into(),
                body: body.into(),
            });
        }
        for sub in self
            .subs
            .borrow()
            .iter()
            .filter(|s| s.destination == destination)
        {
            let id = self.next_id.get() + 1;
            self.next_id.set(id);
            let mid = format!("sim-{}", id);
            let mut headers: Vec<(&str, &str)> = vec![
                ("destination", destination),
                ("subscription", &sub.id),
                ("message-id", &mid),
            ];
            for (n, v) in extra {
                headers.push((n, v));
            }
            let bytes = frame_bytes("MESSAGE", &headers, body.as_bytes());
            self.outbox[sub.conn].borrow_mut().extend_from_slice(&bytes);
            self.wake[sub.conn].signal(());
        }
    }

    async fn serve_slot(&'static self, stack: Stack<'static>, conn: usize) {
        let rx = leak([0u8; 8192]);
        let tx = leak([0u8; 8192]);
        loop {
            while !self.online.get() {
                Timer::after_millis(20).await;
            }
            let mut socket = TcpSocket::new(stack, &mut rx[..], &mut tx[..]);
            self.kill[conn].reset();
            let accepted = select(socket.accept(UPSTREAM_PORT), async {
                while self.online.get() {
                    Timer::after_millis(20).await;
                }
            })
            .await;
            if !matches!(accepted, Either::First(Ok(()))) {
                socket.abort();
                continue;
            }
            self.outbox[conn].borrow_mut().clear();
            let _ = select(self.serve_conn(&mut socket, conn), self.kill[conn].wait()).await;
            self.subs.borrow_mut().retain(|s| s.conn != conn);
            socket.abort();
            let _ = with_timeout(Duration::from_millis(50), socket.flush()).await;
        }
    }

    async fn serve_conn(&self, socket: &mut TcpSocket<'_>, conn: usize) {
        let (mut r, mut w) = socket.split();
        let reader = async {
            let mut frames = FrameReader::default();
            loop {
                while let Some(f) = frames.next_frame() {
                    self.on_frame(conn, f);
                    self.wake[conn].signal(());
                }
                let mut buf = [0u8; 2048];
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => frames.push(&buf[..n]),
                }
            }
        };
        let writer = async {
            loop {
                let out = std::mem::take(&mut *self.outbox[conn].borrow_mut());
                if out.is_empty() {
                    self.wake[conn].wait().await;
                    continue;
                }
                if w.write_all(&out).await.is_err() || w.flush().await.is_err() {
                    return;
                }
            }
        };
        select(reader, writer).await;
    }

    fn reply(&self, conn: usize, command: Command, headers: &[(&str, &str)]) {
        let bytes = frame_bytes(command.as_str(), headers, b"");
        self.outbox[conn].borrow_mut().extend_from_slice(&bytes);
    }

    fn on_frame(&self, conn: usize, f: Frame) {
        match f.command {
            Command::Connect | Command::Stomp => {
                self.connects.set(self.connects.get() + 1);
                assert_eq!(
                    f.header("login"),
                    Some("relay-user"),
                    "edge sends the relay credentials"
                );
                self.reply(
                    conn,
                    Command::Connected,
                    &[("version", "1.2"), ("heart-beat", "0,0")],
                );
            }
            Command::Subscribe => {
                let destination = f.header("destination").unwrap_or_default().to_string();
                self.subscribes.borrow_mut().push(destination.clone());
                self.subs.borrow_mut().push(Sub {
                    conn,
                    id: f.header("id").unwrap_or_default().to_string(),
                    destination,
                });
            }
            Command::Unsubscribe => {
                let id = f.header("id").unwrap_or_default();
                self.subs
                    .borrow_mut()
                    .retain(|s| !(s.conn == conn && s.id == id));
            }
            Command::Send => {
                let destination = f.header("destination").unwrap_or_default().to_string();
                let body = f.body_str().to_string();
                self.received.borrow_mut().push(Received {
                    destination: destination.clone(),
                    body: body.clone(),
                });
                let extra: Vec<(String, String)> = f
                    .headers
                    .iter()
                    .filter(|(n, _)| {
                        !matches!(n.as_str(), "destination" | "receipt" | "content-length")
                    })
                    .cloned()
                    .collect();
                self.route(&destination, &body, &extra);
            }
            _ => {}
        }
        if let Some(r) = f.header("receipt") {
            let r = r.to_string();
            self.reply(conn, Command::Receipt, &[("receipt-id", &r)]);
        }
    }
}

/// Runs `body` with `background` alongside, failing the test after `limit`.
pub fn run_test<B: Future<Output = ()>, G: Future>(limit: Duration, background: G, body: B) {
    futures_executor::block_on(async {
        match select(background, with_timeout(limit, body)).await {
            Either::First(_) => panic!("background ended"),
            Either::Second(r) => r.expect("test timed out"),
        }
    });
}

/// Waits until `cond` holds, polling every 10 ms, up to `limit`.
pub async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    if with_timeout(limit, async {
        while !cond() {
            Timer::after_millis(10).await;
        }
    })
    .await
    .is_err()
    {
        panic!("timed out waiting for {}", what);
    }
}

pub async fn join3_unit<A: Future, B: Future, C: Future>(a: A, b: B, c: C) {
    join3(a, b, c).await;
}
