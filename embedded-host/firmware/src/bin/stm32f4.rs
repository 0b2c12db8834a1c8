//! Edge node firmware for a real board: ST's NUCLEO-F429ZI (STM32F429ZI at 180 MHz,
//! LAN8742A PHY on RMII), with embassy-stm32's Ethernet, RNG and time driver.
//!
//! CI builds it (`scripts/edge-qemu.sh board`) but no board is attached there; how to
//! flash it is in docs/edge.md. The node takes 192.168.1.50/24 and relays to a broker at
//! 192.168.1.10:61613: change `NODE` for your network.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_net::{IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr, Runner};
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rng::Rng;
use embassy_stm32::time::Hertz;
use embassy_stm32::{bind_interrupts, eth, rng};
use embassy_time::Duration;
use static_cell::ConstStaticCell;
use stomp_relay_edge::Dialect;
use stomp_relay_firmware::node::{self, NodeConfig, NodeEdge};

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    HASH_RNG => rng::InterruptHandler<RNG>;
});

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

const NODE: NodeConfig = NodeConfig {
    address: Ipv4Cidr::new(Ipv4Address::new(192, 168, 1, 50), 24),
    gateway: Some(Ipv4Address::new(192, 168, 1, 1)),
    upstream: IpEndpoint::new(IpAddress::v4(192, 168, 1, 10), 61613),
    login: "guest",
    passcode: "guest",
    vhost: "/",
    dialect: Dialect::Generic,
    heartbeat: Duration::from_secs(10),
};

/// A locally administered address; a product derives it from the chip's unique ID.
const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];

static PACKETS: ConstStaticCell<PacketQueue<4, 4>> = ConstStaticCell::new(PacketQueue::new());

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Device>) -> ! {
    runner.run().await
}

fn stats(edge: &'static NodeEdge) {
    log::info!("stats: {}", edge.summary());
}

fn clocks() -> embassy_stm32::Config {
    use embassy_stm32::rcc::*;
    let mut config = embassy_stm32::Config::default();
    // The NUCLEO's ST-LINK feeds an 8 MHz clock to HSE; 8 / 4 * 180 / 2 = 180 MHz.
    config.rcc.hse = Some(Hse {
        freq: Hertz(8_000_000),
        mode: HseMode::Bypass,
    });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL180,
        divp: Some(PllPDiv::DIV2),
        divq: Some(PllQDiv::DIV8),
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    config
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_stm32::init(clocks());
    let mut rng = Rng::new(p.RNG, Irqs);
    let mut seed = [0; 8];
    rng.fill_bytes(&mut seed);
    let seed = u64::from_le_bytes(seed);

    // NUCLEO-F429ZI RMII wiring (UM1974): REF_CLK PA1, CRS_DV PA7, RXD0 PC4, RXD1 PC5,
    // TXD0 PG13, TXD1 PB13, TX_EN PG11, MDIO PA2, MDC PC1.
    let device = Ethernet::new(
        PACKETS.take(),
        p.ETH,
        Irqs,
        p.PA1,
        p.PA7,
        p.PC4,
        p.PC5,
        p.PG13,
        p.PB13,
        p.PG11,
        MAC,
        p.ETH_SMA,
        p.PA2,
        p.PC1,
    );
    let (stack, runner) =
        embassy_net::new(device, NODE.net_config(), node::socket_resources(), seed);
    // Spawning only fails when a task is spawned twice, which main does not do.
    if let Ok(task) = net_task(runner) {
        spawner.spawn(task);
        let _ = node::spawn(spawner, stack, &NODE, seed, Duration::from_secs(30), stats);
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // No console on this build: a debugger attached with probe-rs sees where it stopped.
    cortex_m::asm::udf()
}
