//! A `#![no_std]` host binary that links and exercises the no_std crates, so the build
//! fails if any of them (or their dependencies) pulls `std` or `alloc`. Running it checks
//! the calls really work: exit status 0 means every check passed, otherwise the status
//! names the first failed check.
#![no_std]
#![no_main]

use stomp_relay_codec::{encode, Decoded, Decoder, Frame, Header, Status, Version};

// libc supplies the C runtime start-up (which calls `main`) and memcpy/memset.
#[link(name = "c")]
unsafe extern "C" {}

/// The host target's precompiled libcore is built to unwind and refers to this symbol;
/// with `panic = "abort"` nothing ever calls it. (Targets built for abort, such as the
/// embedded ones, do not need it.)
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

fn codec_round_trip() -> Result<(), i32> {
    let wire = b"\nMESSAGE\ndestination:/topic/a\\cb\nmessage-id:1\nsubscription:0\n\nhello\0";
    let decoder = Decoder::new(Version::V1_2);
    let mut headers = [Header::EMPTY; 8];
    let Ok(Status::Complete((Decoded::HeartBeat, 1))) = decoder.decode(wire, &mut headers) else {
        return Err(1);
    };
    let Ok(Status::Complete((Decoded::Frame(frame), used))) =
        decoder.decode(&wire[1..], &mut headers)
    else {
        return Err(2);
    };
    if used != wire.len() - 1 || frame.body != b"hello" {
        return Err(3);
    }
    if !frame
        .destination()
        .is_some_and(|d| d.eq_bytes(b"/topic/a:b"))
    {
        return Err(4);
    }
    let mut out = [0u8; 128];
    let Ok(n) = encode(
        &frame,
        stomp_relay_codec::EncodeOptions::passthrough(Version::V1_2),
        &mut out,
    ) else {
        return Err(5);
    };
    if out[..n] != wire[1..] {
        return Err(6);
    }
    let h = [Header::new(b"destination", b"/queue/x")];
    let send = Frame::new(stomp_relay_codec::Command::Send, &h, b"bin\0ary");
    match encode(&send, Version::V1_2, &mut out) {
        Ok(n) if out[..n].starts_with(b"SEND\ndestination:/queue/x\ncontent-length:7\n") => Ok(()),
        _ => Err(7),
    }
}

/// The C entry point called by the C runtime.
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: core::ffi::c_int, _argv: *const *const u8) -> core::ffi::c_int {
    match codec_round_trip()
        .and_then(|()| core_session())
        .and_then(|()| edge_state())
    {
        Ok(()) => 0,
        Err(code) => code,
    }
}

/// relay-core: a session, the router and the simple broker through one exchange
/// (error codes 100 and up).
fn core_session() -> Result<(), i32> {
    use stomp_relay_core::broker::{FixedStore, SimpleBroker};
    use stomp_relay_core::router::{AppRoute, Destination, Router, RouterConfig};
    use stomp_relay_core::session::{Event, Session, SessionConfig, SessionId};
    use stomp_relay_core::{Dialect, Instant};

    let t = Instant::from_millis;
    let mut s: Session<4> = Session::new(SessionId::new(1), SessionConfig::default(), t(0));
    let mut out = [0u8; 512];
    let h = [
        Header::new(b"accept-version", b"1.2"),
        Header::new(b"heart-beat", b"0,0"),
    ];
    let connect = Frame::new(stomp_relay_codec::Command::Connect, &h, b"");
    if !matches!(s.handle_frame(t(0), &connect), Ok(Some(Event::Connect(_)))) {
        return Err(100);
    }
    match s.poll_transmit(t(0), &mut out) {
        Ok(Some(n)) if out[..n].starts_with(b"CONNECTED\nversion:1.2\n") => {}
        _ => return Err(101),
    }
    let mut broker: SimpleBroker<FixedStore<4>> = SimpleBroker::new(FixedStore::new());
    let h = [
        Header::new(b"destination", b"/sub/chat/*"),
        Header::new(b"id", b"0"),
    ];
    let sub = Frame::new(stomp_relay_codec::Command::Subscribe, &h, b"");
    match s.handle_frame(t(1), &sub) {
        Ok(Some(Event::Subscribe {
            id, destination, ..
        })) => {
            if broker
                .subscribe(SessionId::new(1), id, destination)
                .is_err()
            {
                return Err(102);
            }
        }
        _ => return Err(103),
    }
    let router = Router::new(RouterConfig::default());
    let mut fwd = [0u8; 64];
    let Ok(Destination::App(app)) = router.classify(b"/pub/chat/room1") else {
        return Err(104);
    };
    let Ok(AppRoute::Forward(target)) = router.route_app(app, &mut fwd) else {
        return Err(105);
    };
    if broker.publish(target, |_| {}) != 1 {
        return Err(106);
    }
    let mut mapped = [0u8; 64];
    match Dialect::RabbitMq.to_broker(target, &mut mapped) {
        Ok(m) if m == b"/topic/sub.chat.room1" => Ok(()),
        _ => Err(107),
    }
}

/// stomp-relay-edge: the shared state, the store-and-forward ring and the subscription
/// table, without a network stack (error codes 200 and up).
fn edge_state() -> Result<(), i32> {
    use embassy_sync::blocking_mutex::raw::NoopRawMutex;
    use stomp_relay_core::fanout::{Action, Fanout, InlineStore};
    use stomp_relay_edge::ring::StoreRing;
    use stomp_relay_edge::Edge;

    let edge: Edge<NoopRawMutex, 4, 1024, 4096, 1024> = Edge::new();
    if edge.active_sessions() != 0 || edge.upstream_connected() || edge.stats().dropped != 0 {
        return Err(200);
    }
    // 8 bytes per record in a 32-byte ring: the fifth push evicts the first.
    let mut ring = StoreRing::<32>::new();
    for m in [b"msg-00", b"msg-01", b"msg-02", b"msg-03", b"msg-04"] {
        if ring.push(m).is_err() {
            return Err(201);
        }
    }
    let mut out = [0u8; 32];
    match ring.next_unsent(&mut out) {
        Some((1, rec)) if rec == b"msg-01" && ring.dropped() == 1 => {}
        _ => return Err(202),
    }
    let mut subs = Fanout::new(InlineStore::<2, 2, 2>::new(), "edge-");
    if subs.subscribe(0, b"a", b"/topic/x").is_err()
        || subs.subscribe(1, b"b", b"/topic/x").is_err()
    {
        return Err(203);
    }
    match subs.next_action() {
        Some(Action::Subscribe { destination, .. }) if destination == b"/topic/x" => Ok(()),
        _ => Err(204),
    }
}

/// Makes the `defmt` build use the codec's `defmt::Format` impls (so they must exist),
/// without needing a global logger: the function is only type-checked and linked away.
#[cfg(feature = "defmt")]
pub fn assert_defmt_format() {
    fn is_format<T: defmt::Format>() {}
    is_format::<stomp_relay_codec::Frame<'static>>();
    is_format::<stomp_relay_codec::Decoded<'static>>();
    is_format::<stomp_relay_codec::Status<(stomp_relay_codec::Decoded<'static>, usize)>>();
    is_format::<stomp_relay_codec::DecodeError>();
    is_format::<stomp_relay_codec::EncodeError>();
    is_format::<stomp_relay_codec::HeaderValue<'static>>();
}
