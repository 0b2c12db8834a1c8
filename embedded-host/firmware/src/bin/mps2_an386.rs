//! Edge node firmware for ARM's MPS2 board with the AN386 image (Cortex-M4F, 25 MHz),
//! as QEMU's `mps2-an386` emulates it: LAN9118 Ethernet at 0x4020_0000 on IRQ 13,
//! UART0 at 0x4000_4000 for the log, SysTick for time.
//!
//! The network settings are the ones `scripts/edge-qemu.sh` wires up (with scripts/edge-netns.sh): the node at
//! 192.168.69.2/24 on the TAP, the broker reached at 192.168.69.1:61613 (a bridge to
//! ActiveMQ on the host's loopback), devices on port 61613.
#![no_std]
#![no_main]

use core::fmt::Write;

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;
use cortex_m_rt::exception;
use embassy_executor::Spawner;
use embassy_net::{IpEndpoint, Ipv4Address, Ipv4Cidr, Runner};
use embassy_time::Duration;
use static_cell::ConstStaticCell;
use stomp_relay_edge::Dialect;
use stomp_relay_firmware::lan9118::{self, Lan9118};
use stomp_relay_firmware::node::{self, NodeConfig, NodeEdge};
use stomp_relay_firmware::uart::{Uart, UartLogger};
use stomp_relay_firmware::{stack, systick};

const CORE_HZ: u32 = 25_000_000;
const UART0: usize = 0x4000_4000;
const ETHERNET: usize = 0x4020_0000;
const ETHERNET_IRQ: u16 = 13;

const NODE: NodeConfig = NodeConfig {
    address: Ipv4Cidr::new(Ipv4Address::new(192, 168, 69, 2), 24),
    gateway: None,
    upstream: IpEndpoint::new(embassy_net::IpAddress::v4(192, 168, 69, 1), 61613),
    login: "admin",
    passcode: "admin",
    vhost: "/",
    dialect: Dialect::ActiveMq,
    heartbeat: Duration::from_secs(10),
};

// SAFETY: UART0 of the AN386 image; the logger and the panic handler are its only users.
const UART: Uart = unsafe { Uart::new(UART0) };
static LOGGER: UartLogger = UartLogger::new(UART, log::LevelFilter::Info);
static ETH_BUFFERS: ConstStaticCell<lan9118::Buffers> =
    ConstStaticCell::new(lan9118::Buffers::new());

#[derive(Clone, Copy)]
struct Irq(u16);

// SAFETY: 13 is the AN386's Ethernet interrupt, a valid external interrupt number.
unsafe impl InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Lan9118<'static>>) -> ! {
    runner.run().await
}

fn stats(edge: &NodeEdge) {
    let eth = lan9118::counters();
    log::info!(
        "stats: {} eth_rx={} eth_rx_dropped={} eth_tx={} stack_used={} stack_reserve={}",
        edge.summary(),
        eth.rx,
        eth.rx_dropped,
        eth.tx,
        stack::high_water(),
        stack::reserve()
    );
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    UART.enable(16);
    LOGGER.install();
    log::info!(
        "stomp-relay-edge firmware on mps2-an386 ({} MHz Cortex-M4F)",
        CORE_HZ / 1_000_000
    );
    if let Err(e) = start(spawner) {
        log::error!("startup failed: {}", e);
    }
}

fn start(spawner: Spawner) -> Result<(), &'static str> {
    let core = cortex_m::Peripherals::take().ok_or("core peripherals already taken")?;
    systick::start(core.SYST, CORE_HZ);
    // SAFETY: the AN386 maps the LAN9220 at ETHERNET; nothing else drives it.
    let eth = match unsafe { Lan9118::new(ETHERNET, ETH_BUFFERS.take()) } {
        Ok(eth) => eth,
        Err(e) => {
            log::error!("ethernet: {}", e);
            return Err("no network");
        }
    };
    let mac = eth.mac();
    log::info!(
        "ethernet: LAN9118 id {:#010x}, mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        eth.id(),
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    );
    let seed = u64::from(eth.free_run()) << 32
        | u64::from(u32::from_le_bytes([mac[2], mac[3], mac[4], mac[5]]));
    let (stack, runner) = embassy_net::new(eth, NODE.net_config(), node::socket_resources(), seed);
    // SAFETY: the handler (DefaultHandler below) only touches the LAN9118's INT_STS and
    // a waker; unmasking cannot break a critical section since none is held here.
    unsafe { NVIC::unmask(Irq(ETHERNET_IRQ)) };
    spawner.spawn(net_task(runner).map_err(|_| "cannot spawn the network task")?);
    node::spawn(spawner, stack, &NODE, seed, Duration::from_secs(5), stats)
        .map_err(|_| "cannot spawn the edge node")?;
    log::info!(
        "edge node up: {} devices on port 61613, upstream {}",
        node::SESSIONS,
        NODE.upstream
    );
    Ok(())
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == ETHERNET_IRQ as i16 {
        // SAFETY: the same register block `start` created the driver on.
        unsafe { lan9118::on_interrupt(ETHERNET) };
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut uart = UART;
    let _ = writeln!(uart, "PANIC: {}", info);
    loop {
        cortex_m::asm::wfi();
    }
}
