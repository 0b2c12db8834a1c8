//! The edge node's shared state ([`Edge`]) and its statistics, plus the static buffers
//! the application provides ([`EdgeResources`]) and the one future that runs it all.
//!
//! Invariants: all shared state sits behind one blocking mutex and is touched only in
//! short synchronous sections, never across an `.await`; a session slot is `busy` from
//! the moment its socket accepted until that socket is closed again, so the rejector
//! listens exactly while every slot is busy; nothing here allocates.

use core::cell::RefCell;

use embassy_futures::join::{join, join_array};
use embassy_net::Stack;
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::signal::Signal;
use stomp_relay_codec::{encode, EncodeOptions, Frame, Version};

use crate::ring::{ByteQueue, QueueFull, StoreRing};
use crate::Config;
use stomp_relay_core::fanout::{Fanout, InlineStore};
use stomp_relay_core::session::{HostTable, Session};

/// Subscriptions one local session may hold.
pub const SUBS_PER_SESSION: usize = 8;
/// Distinct destinations subscribed upstream at once.
pub const ROUTES: usize = 16;
/// Longest destination a local SUBSCRIBE may name.
pub const MAX_DESTINATION: usize = 64;
/// Longest local subscription id.
pub const MAX_SUB_ID: usize = 32;

/// The shared upstream session's table: every local subscription mapped onto one
/// reference-counted upstream subscription per destination (relay-core's, over inline
/// storage; the std server runs the same table over the heap).
pub type SubTable<const N: usize> =
    Fanout<InlineStore<N, SUBS_PER_SESSION, ROUTES, MAX_DESTINATION, MAX_SUB_ID>>;
/// A device's STOMP session: relay-core's, sized for a microcontroller. Subscriptions
/// live in the edge's shared fan-out table ([`HostTable`]); 76 bytes of receipt queue
/// (ids up to 37 bytes, a UUID); 64 bytes to unescape a destination and id; 64 bytes
/// of ERROR text; no user names (devices do not authenticate to the edge node).
pub type DeviceSession = Session<0, HostTable, 76, 64, 64, 0>;
/// Most headers in one frame the edge node decodes.
pub const MAX_HEADERS: usize = 24;

/// Counters an application can read with [`Edge::stats`] (e.g. to export them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Local SENDs accepted into the store-and-forward ring.
    pub stored: u32,
    /// Local SENDs the upstream acknowledged (RECEIPT received).
    pub forwarded: u32,
    /// Local SENDs evicted from the full store-and-forward ring before delivery.
    pub dropped: u32,
    /// Upstream MESSAGE copies queued to local subscribers.
    pub delivered: u32,
    /// Connections refused with `Too many sessions`.
    pub rejected_sessions: u32,
    /// Local sessions closed because their outbound queue overflowed.
    pub slow_consumers: u32,
    /// Upstream connections that reached CONNECTED.
    pub upstream_connects: u32,
    /// Upstream frames skipped because they did not fit the receive buffer.
    pub oversize_upstream: u32,
}

/// A snapshot for a log line, from [`Edge::summary`]; displays as
/// `sessions=1 upstream=up stored=3 forwarded=3 dropped=0 delivered=7 rejected=0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Local sessions connected.
    pub sessions: usize,
    /// Whether the upstream session is CONNECTED.
    pub upstream_up: bool,
    /// The counters.
    pub stats: Stats,
}

impl core::fmt::Display for Summary {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = &self.stats;
        write!(
            f,
            "sessions={} upstream={} stored={} forwarded={} dropped={} delivered={} rejected={}",
            self.sessions,
            if self.upstream_up { "up" } else { "down" },
            s.stored,
            s.forwarded,
            s.dropped,
            s.delivered,
            s.rejected_sessions
        )
    }
}

/// Per-slot state of one local session.
pub(crate) struct Slot<const QUEUE: usize> {
    /// The device's STOMP session, from the accept until its socket is closed again
    /// (the slot is busy meanwhile).
    pub session: Option<DeviceSession>,
    /// Set when a frame for this session did not fit its queue; the session is closed.
    pub overflowed: bool,
    pub queue: ByteQueue<QUEUE>,
}

pub(crate) struct Inner<const N: usize, const QUEUE: usize, const STORE: usize, const FRAME: usize>
{
    pub slots: [Slot<QUEUE>; N],
    pub subs: SubTable<N>,
    pub store: StoreRing<STORE>,
    /// Encoding space for frames built inside the lock (fan-out copies, replies).
    pub scratch: [u8; FRAME],
    pub upstream_up: bool,
    pub stats: Stats,
}

/// The shared state of an edge node with `N` local sessions.
///
/// - `M`: the raw mutex guarding it (`NoopRawMutex` when every edge future runs on one
///   executor, `CriticalSectionRawMutex` otherwise).
/// - `N`: local session slots.
/// - `QUEUE`: bytes of each session's outbound queue (upstream MESSAGEs and replies
///   waiting for the TCP transmit buffer).
/// - `STORE`: bytes of the store-and-forward ring for SENDs bound upstream.
/// - `FRAME`: largest frame the edge node encodes (and the size of its scratch space).
pub struct Edge<
    M: RawMutex,
    const N: usize,
    const QUEUE: usize,
    const STORE: usize,
    const FRAME: usize,
> {
    pub(crate) inner: Mutex<M, RefCell<Inner<N, QUEUE, STORE, FRAME>>>,
    pub(crate) session_wake: [Signal<M, ()>; N],
    /// Signalled when a session's queue drained (or the session ended): fan-out waits
    /// on it when a queue is full.
    pub(crate) space_wake: [Signal<M, ()>; N],
    pub(crate) upstream_wake: Signal<M, ()>,
    pub(crate) slots_changed: Signal<M, ()>,
}

impl<M: RawMutex, const N: usize, const QUEUE: usize, const STORE: usize, const FRAME: usize>
    Edge<M, N, QUEUE, STORE, FRAME>
{
    /// A fresh edge node (const, so it can live in a `static`).
    pub const fn new() -> Self {
        Edge {
            inner: Mutex::new(RefCell::new(Inner {
                slots: [const {
                    Slot {
                        session: None,
                        overflowed: false,
                        queue: ByteQueue::new(),
                    }
                }; N],
                subs: Fanout::new(InlineStore::new(), "edge-"),
                store: StoreRing::new(),
                scratch: [0; FRAME],
                upstream_up: false,
                stats: Stats {
                    stored: 0,
                    forwarded: 0,
                    dropped: 0,
                    delivered: 0,
                    rejected_sessions: 0,
                    slow_consumers: 0,
                    upstream_connects: 0,
                    oversize_upstream: 0,
                },
            })),
            session_wake: [const { Signal::new() }; N],
            space_wake: [const { Signal::new() }; N],
            upstream_wake: Signal::new(),
            slots_changed: Signal::new(),
        }
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Inner<N, QUEUE, STORE, FRAME>) -> R) -> R {
        self.inner.lock(|cell| f(&mut cell.borrow_mut()))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.with(|i| {
            let mut s = i.stats;
            s.dropped = i.store.dropped();
            s
        })
    }

    /// Sessions, upstream state and counters at one instant, for a log line.
    pub fn summary(&self) -> Summary {
        Summary {
            sessions: self.active_sessions(),
            upstream_up: self.upstream_connected(),
            stats: self.stats(),
        }
    }

    /// Whether the upstream session is currently CONNECTED.
    pub fn upstream_connected(&self) -> bool {
        self.with(|i| i.upstream_up)
    }

    /// Local sessions currently connected (TCP accepted and not yet closed).
    pub fn active_sessions(&self) -> usize {
        self.with(|i| i.slots.iter().filter(|s| s.is_busy()).count())
    }

    /// SENDs waiting in the store-and-forward ring (sent-but-unacknowledged included).
    pub fn stored_len(&self) -> usize {
        self.with(|i| i.store.len())
    }

    /// Distinct destinations subscribed (or to be subscribed) upstream.
    pub fn upstream_subscriptions(&self) -> usize {
        self.with(|i| i.subs.route_count())
    }

    /// Runs the whole edge node: `N` local session slots, the `Too many sessions`
    /// rejector and the upstream session. Never returns.
    pub async fn run<const RX: usize, const TX: usize, const URX: usize, const UTX: usize>(
        &self,
        stack: Stack<'_>,
        config: &Config<'_>,
        resources: &mut EdgeResources<N, RX, TX, FRAME, URX, UTX>,
    ) -> ! {
        let EdgeResources {
            sessions,
            rejector,
            upstream,
        } = resources;
        let mut slots = sessions.iter_mut();
        let locals: [_; N] = core::array::from_fn(|slot| {
            let res = slots.next();
            async move {
                if let Some(res) = res {
                    self.run_session(stack, config, slot, res).await;
                }
            }
        });
        join(
            join_array(locals),
            join(
                self.run_rejector(stack, config, rejector),
                self.run_upstream(stack, config, upstream),
            ),
        )
        .await;
        // Every branch loops forever; reaching here means `N` was 0 and both others ended,
        // which they cannot.
        loop {
            embassy_time::Timer::after_secs(3600).await;
        }
    }
}

impl<M: RawMutex, const N: usize, const QUEUE: usize, const STORE: usize, const FRAME: usize>
    Default for Edge<M, N, QUEUE, STORE, FRAME>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const QUEUE: usize, const STORE: usize, const FRAME: usize>
    Inner<N, QUEUE, STORE, FRAME>
{
    /// Marks session `slot` for closing as a slow consumer.
    pub fn mark_slow_consumer(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        if s.is_busy() {
            s.mark_slow_consumer(&mut self.stats);
        }
    }
}

impl<const QUEUE: usize> Slot<QUEUE> {
    /// Whether a device holds this slot.
    pub fn is_busy(&self) -> bool {
        self.session.is_some()
    }

    /// The STOMP version frames to this slot's device are encoded (and its frames
    /// decoded) with.
    pub fn version(&self) -> Version {
        self.session.as_ref().map_or(Version::V1_2, |s| s.version())
    }

    /// Marks this slot's session for closing as a slow consumer, counted once.
    pub fn mark_slow_consumer(&mut self, stats: &mut Stats) {
        if !self.overflowed {
            self.overflowed = true;
            stats.slow_consumers += 1;
        }
    }

    /// Encodes `frame` and queues it if it fits; nothing changes otherwise.
    pub fn try_queue(
        &mut self,
        scratch: &mut [u8],
        frame: &Frame<'_>,
        options: EncodeOptions,
    ) -> Result<(), QueueFull> {
        if self.overflowed {
            // Closing anyway: swallow, so fan-out does not wait on a dead session.
            return Ok(());
        }
        let n = encode(frame, options, scratch).map_err(|_| QueueFull)?;
        self.queue.push(&[&scratch[..n]])
    }
}

/// Socket and frame buffers of one local session slot.
pub struct SessionResources<const RX: usize, const TX: usize, const FRAME: usize> {
    pub(crate) rx: [u8; RX],
    pub(crate) tx: [u8; TX],
    pub(crate) frame: [u8; FRAME],
}

impl<const RX: usize, const TX: usize, const FRAME: usize> SessionResources<RX, TX, FRAME> {
    /// Zeroed buffers (const, for a `static`).
    pub const fn new() -> Self {
        SessionResources {
            rx: [0; RX],
            tx: [0; TX],
            frame: [0; FRAME],
        }
    }
}

impl<const RX: usize, const TX: usize, const FRAME: usize> Default
    for SessionResources<RX, TX, FRAME>
{
    fn default() -> Self {
        Self::new()
    }
}

/// Socket buffers of the rejector (it only ever writes one short ERROR frame).
pub struct RejectResources {
    pub(crate) rx: [u8; 128],
    pub(crate) tx: [u8; 128],
}

impl RejectResources {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        RejectResources {
            rx: [0; 128],
            tx: [0; 128],
        }
    }
}

impl Default for RejectResources {
    fn default() -> Self {
        Self::new()
    }
}

/// Socket, receive and transmit buffers of the upstream session.
pub struct UpstreamResources<const RX: usize, const TX: usize, const FRAME: usize> {
    pub(crate) rx: [u8; RX],
    pub(crate) tx: [u8; TX],
    pub(crate) frame: [u8; FRAME],
    pub(crate) out: [u8; FRAME],
}

impl<const RX: usize, const TX: usize, const FRAME: usize> UpstreamResources<RX, TX, FRAME> {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        UpstreamResources {
            rx: [0; RX],
            tx: [0; TX],
            frame: [0; FRAME],
            out: [0; FRAME],
        }
    }
}

impl<const RX: usize, const TX: usize, const FRAME: usize> Default
    for UpstreamResources<RX, TX, FRAME>
{
    fn default() -> Self {
        Self::new()
    }
}

/// Every buffer an edge node with `N` sessions needs: per-session TCP `RX`/`TX` buffers
/// and a `FRAME`-byte receive buffer, the rejector's, and the upstream's (`URX`/`UTX`).
pub struct EdgeResources<
    const N: usize,
    const RX: usize,
    const TX: usize,
    const FRAME: usize,
    const URX: usize,
    const UTX: usize,
> {
    /// Local session slots.
    pub sessions: [SessionResources<RX, TX, FRAME>; N],
    /// The `Too many sessions` rejector.
    pub rejector: RejectResources,
    /// The upstream session.
    pub upstream: UpstreamResources<URX, UTX, FRAME>,
}

impl<
        const N: usize,
        const RX: usize,
        const TX: usize,
        const FRAME: usize,
        const URX: usize,
        const UTX: usize,
    > EdgeResources<N, RX, TX, FRAME, URX, UTX>
{
    /// Zeroed buffers (const, for a `static`).
    pub const fn new() -> Self {
        EdgeResources {
            sessions: [const { SessionResources::new() }; N],
            rejector: RejectResources::new(),
            upstream: UpstreamResources::new(),
        }
    }
}

impl<
        const N: usize,
        const RX: usize,
        const TX: usize,
        const FRAME: usize,
        const URX: usize,
        const UTX: usize,
    > Default for EdgeResources<N, RX, TX, FRAME, URX, UTX>
{
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::{Stats, Summary};
    use std::string::ToString;

    #[test]
    fn summary_reads_as_one_log_line() {
        let summary = Summary {
            sessions: 2,
            upstream_up: false,
            stats: Stats {
                stored: 5,
                forwarded: 3,
                dropped: 1,
                delivered: 9,
                rejected_sessions: 4,
                ..Stats::default()
            },
        };
        assert_eq!(
            summary.to_string(),
            "sessions=2 upstream=down stored=5 forwarded=3 dropped=1 delivered=9 rejected=4"
        );
    }
}
