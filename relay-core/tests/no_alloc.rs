//! Proves the core allocates nothing: a counting global allocator watches a full
//! client exchange (CONNECT, SUBSCRIBE, SEND routed through the router and fanned out
//! by the simple broker into MESSAGE frames, RECEIPTs, heart-beats, UNSUBSCRIBE,
//! DISCONNECT) and an upstream relay exchange (CONNECT, CONNECTED, a relayed frame,
//! shared subscriptions in the fan-out table, MESSAGE mapped back, failover) on this
//! thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use stomp_relay_core::broker::{message_frame, FixedStore, SimpleBroker};
use stomp_relay_core::codec::{Decoded, Decoder, EncodeOptions, Header, Status};
use stomp_relay_core::fanout::{Action, Fanout, InlineStore};
use stomp_relay_core::relay::{message_to_client, relay_frame};
use stomp_relay_core::router::{AppRoute, Destination, Router, RouterConfig};
use stomp_relay_core::session::{Event, Session, SessionConfig, SessionId, MAX_CONTROL_FRAME};
use stomp_relay_core::upstream::{Credentials, Upstream, UpstreamConfig};
use stomp_relay_core::{Dialect, Instant};

struct Counting;

// Per thread, so tests running in parallel cannot count each other's allocations.
thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    if WATCHING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
    }
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// Feeds `wire` to the session as a client would send it, routing and publishing
/// through the broker; returns how many bytes of output (session frames and MESSAGEs)
/// were produced.
fn client_exchange(wire: &[u8]) -> (usize, usize) {
    let router = Router::new(RouterConfig::default());
    let mut broker: SimpleBroker<FixedStore<8>> = SimpleBroker::new(FixedStore::new());
    let mut s: Session<8> = Session::new(SessionId::new(1), SessionConfig::default(), t(0));
    let mut out = [0u8; MAX_CONTROL_FRAME];
    let mut msg_out = [0u8; 4096];
    let (mut frames_out, mut messages) = (0, 0);
    let mut rest = wire;
    let mut now = 0;
    while !rest.is_empty() {
        now += 1000;
        let mut hs = [Header::EMPTY; 32];
        let Status::Complete((item, n)) = Decoder::new(s.version()).decode(rest, &mut hs).unwrap()
        else {
            panic!("partial")
        };
        match item {
            Decoded::HeartBeat => s.handle_heartbeat(t(now)),
            // A no_std host copies what it needs out of the event (which borrows the
            // session) before calling the session again.
            Decoded::Frame(f) => match s.handle_frame(t(now), &f).unwrap() {
                Some(Event::Subscribe {
                    id, destination, ..
                }) => {
                    let mut resolved = [0u8; 128];
                    let d = match router.classify(destination).unwrap() {
                        Destination::User(rest) => router
                            .user_subscription(rest, SessionId::new(1), &mut resolved)
                            .unwrap(),
                        _ => destination,
                    };
                    broker.subscribe(SessionId::new(1), id, d).unwrap();
                }
                Some(Event::Unsubscribe { id }) => {
                    assert!(broker.unsubscribe(SessionId::new(1), id));
                }
                Some(Event::Send { destination }) => {
                    let mut dest_copy = [0u8; 128];
                    dest_copy[..destination.len()].copy_from_slice(destination);
                    let destination = &dest_copy[..destination.len()];
                    let mut fwd = [0u8; 128];
                    let target = match router.classify(destination).unwrap() {
                        Destination::App(d) => match router.route_app(d, &mut fwd).unwrap() {
                            AppRoute::Forward(to) => to,
                            _ => panic!("unrouted"),
                        },
                        Destination::Broker(d) => d,
                        Destination::User(_) => panic!("not in this script"),
                    };
                    let mut deliveries = [(SessionId::new(0), [0u8; 16], 0usize, 0u64); 4];
                    let mut k = 0;
                    broker.publish(target, |d| {
                        deliveries[k].0 = d.session;
                        deliveries[k].1[..d.subscription.len()].copy_from_slice(d.subscription);
                        deliveries[k].2 = d.subscription.len();
                        deliveries[k].3 = d.message_id;
                        k += 1;
                    });
                    for (_, sub, len, id) in &deliveries[..k] {
                        let mut scratch = [0u8; 256];
                        let mut mh = [Header::EMPTY; 40];
                        let m = message_frame(
                            &f,
                            target,
                            &sub[..*len],
                            *id,
                            false,
                            &mut scratch,
                            &mut mh,
                        )
                        .unwrap();
                        let n = stomp_relay_core::codec::encode(
                            &m,
                            EncodeOptions::passthrough(s.version()),
                            &mut msg_out,
                        )
                        .unwrap();
                        assert!(n > 0);
                        s.handle_transmitted(t(now));
                        messages += 1;
                    }
                }
                _ => {}
            },
        }
        rest = &rest[n..];
        s.handle_timeout(t(now));
        while let Some(n) = s.poll_transmit(t(now), &mut out).unwrap() {
            assert!(n > 0);
            frames_out += 1;
        }
    }
    // Idle: heart-beats go out.
    s.handle_timeout(t(now + 10_000));
    while s
        .poll_transmit(t(now + 10_000), &mut out)
        .unwrap()
        .is_some()
    {
        frames_out += 1;
    }
    assert!(s.is_closed());
    (frames_out, messages)
}

fn relay_exchange() -> usize {
    let creds = Credentials {
        login: Some("relay"),
        passcode: Some("relay"),
        virtual_host: Some("/"),
        client_id: None,
    };
    let mut r = Upstream::new(UpstreamConfig::default(), t(0));
    let mut out = [0u8; 1024];
    let mut written = 0;
    r.poll_connect(t(0)).unwrap();
    r.on_transport_connected(t(0));
    while let Some(n) = r.poll_transmit(t(0), &creds, &mut out).unwrap() {
        written += n;
    }
    let h = [
        Header::new(b"destination", b"/sub/chat/room1"),
        Header::new(b"id", b"0"),
    ];
    let sub =
        stomp_relay_core::codec::Frame::new(stomp_relay_core::codec::Command::Subscribe, &h, b"");
    written += relay_frame(
        &sub,
        Some(b"/sub/chat/room1"),
        Dialect::ActiveMq,
        r.version(),
        &mut out,
    )
    .unwrap();
    let mut hs = [Header::EMPTY; 16];
    let Status::Complete((Decoded::Frame(connected), _)) =
        Decoder::new(stomp_relay_core::codec::Version::V1_2)
            .decode(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0", &mut hs)
            .unwrap()
    else {
        panic!()
    };
    r.handle_frame(t(2), &connected);
    assert!(r.is_connected());
    let mut hs = [Header::EMPTY; 16];
    let Status::Complete((Decoded::Frame(msg), _)) =
        Decoder::new(stomp_relay_core::codec::Version::V1_2)
            .decode(
                b"MESSAGE\nsubscription:0\ndestination:/topic/sub.chat.room1\nmessage-id:1\n\nhi\0",
                &mut hs,
            )
            .unwrap()
    else {
        panic!()
    };
    let mut scratch = [0u8; 256];
    let mut mh = [Header::EMPTY; 17];
    let m = message_to_client(
        &msg,
        None,
        Dialect::ActiveMq,
        &["/sub/", "/topic/"],
        &mut scratch,
        &mut mh,
    )
    .unwrap();
    written += stomp_relay_core::codec::encode(
        &m,
        EncodeOptions::passthrough(stomp_relay_core::codec::Version::V1_2),
        &mut out,
    )
    .unwrap();

    let mut shared = Fanout::new(InlineStore::<4, 4, 8>::new(), "s");
    shared.subscribe(0, b"a", b"/sub/a").unwrap();
    shared.subscribe(1, b"a", b"/sub/a").unwrap();
    let Some(Action::Subscribe {
        slot,
        id,
        destination,
    }) = shared.next_action()
    else {
        panic!("no upstream SUBSCRIBE")
    };
    let h = [
        Header::new(b"destination", destination),
        Header::new(b"id", id.as_bytes()),
        Header::new(b"ack", b"auto"),
    ];
    let sub =
        stomp_relay_core::codec::Frame::new(stomp_relay_core::codec::Command::Subscribe, &h, b"");
    written += relay_frame(
        &sub,
        Some(destination),
        Dialect::RabbitMq,
        r.version(),
        &mut out,
    )
    .unwrap();
    shared.action_done(slot);
    let route = shared.route_of(id.as_bytes()).unwrap();
    assert_eq!(shared.store().subscribers(route).count(), 2);
    shared.remove_session(0);
    shared.remove_session(1);
    assert!(matches!(
        shared.next_action(),
        Some(Action::Unsubscribe { .. })
    ));

    let mut sys = Upstream::new(
        UpstreamConfig {
            addresses: 2,
            ..UpstreamConfig::default()
        },
        t(0),
    );
    for _ in 0..6 {
        let d = sys.poll_timeout().unwrap();
        sys.poll_connect(d).unwrap();
        sys.handle_transport_closed(d);
        while sys.poll_event().is_some() {}
    }
    written
}

#[test]
fn a_full_session_exchange_allocates_nothing() {
    let wire: &[u8] = b"CONNECT\naccept-version:1.1,1.2\nheart-beat:10000,10000\nlogin:a\n\n\0\
SUBSCRIBE\nid:0\ndestination:/sub/chat/room1\nreceipt:r-sub\n\n\0\
SUBSCRIBE\nid:1\ndestination:/topic/**\n\n\0\
SUBSCRIBE\nid:2\ndestination:/user/queue/reply\n\n\0\
\n\
SEND\ndestination:/pub/chat/room1\ncontent-type:text/plain\nx-k:v\nreceipt:r-send\n\nhello\0\
SEND\ndestination:/topic/news\ncontent-length:3\n\na\0b\0\
UNSUBSCRIBE\nid:0\nreceipt:r-unsub\n\n\0\
DISCONNECT\nreceipt:bye\n\n\0";

    WATCHING.with(|w| w.set(true));
    let (frames, messages) = client_exchange(wire);
    let relayed = relay_exchange();
    WATCHING.with(|w| w.set(false));

    assert_eq!(allocs(), 0, "the core allocated");
    // CONNECTED, 3 RECEIPTs before DISCONNECT's, its RECEIPT: the exchange really ran.
    assert_eq!(frames, 5);
    assert_eq!(
        messages, 2,
        "/sub/chat/room1 and /topic/** for one SEND each"
    );
    assert!(relayed > 100);
}

#[test]
fn the_counter_sees_allocations() {
    // Guard against a counter that can never fail.
    WATCHING.with(|w| w.set(true));
    let before = allocs();
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(16));
    drop(v);
    let after = allocs();
    WATCHING.with(|w| w.set(false));
    assert!(after > before);
}
