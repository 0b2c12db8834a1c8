//! Fuzz target `session`: arbitrary bytes and timeouts into two client sessions that
//! share a router and a simple broker, driven the way a host drives them (decode,
//! handle_frame, route, publish, build MESSAGE frames, poll_transmit, timers).
//!
//! Input layout: a sequence of steps; each step's first byte picks the action
//! (feed the next 1..=64 bytes to session 0 or 1, or advance the clock), so the fuzzer
//! controls frame boundaries, interleaving and timing. Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stomp_relay_core::broker::{message_frame, FixedStore, SimpleBroker};
use stomp_relay_core::codec::{Command, Decoded, Decoder, EncodeOptions, Header, Status};
use stomp_relay_core::router::{AppRoute, Router, RouterConfig};
use stomp_relay_core::session::{
    CloseReason, Event, Session, SessionConfig, SessionId, MAX_CONTROL_FRAME,
};
use stomp_relay_core::{Instant, Route};

const BUF: usize = 4096;

struct Client {
    session: Session<4>,
    rbuf: [u8; BUF],
    len: usize,
}

fn drive(
    c: &mut Client,
    sid: SessionId,
    now: Instant,
    router: &Router<'_>,
    broker: &mut SimpleBroker<FixedStore<16, 64>>,
) {
    let mut out = [0u8; MAX_CONTROL_FRAME];
    loop {
        let mut headers = [Header::EMPTY; 16];
        let data = &c.rbuf[..c.len];
        let step = Decoder::new(c.session.version()).decode(data, &mut headers);
        let used = match step {
            Ok(Status::Partial) => break,
            Err(e) => {
                c.session.handle_decode_error(now, &e);
                c.len = 0;
                break;
            }
            Ok(Status::Complete((Decoded::HeartBeat, n))) => {
                c.session.handle_heartbeat(now);
                n
            }
            Ok(Status::Complete((Decoded::Frame(f), n))) => {
                let mut dest = [0u8; 256];
                let mut dlen = None;
                let mut sub_id = [0u8; 64];
                let mut kind = 0u8;
                let mut id_len = 0;
                match c.session.handle_frame(now, &f) {
                    Ok(Some(Event::Send { destination })) if destination.len() <= 256 => {
                        dest[..destination.len()].copy_from_slice(destination);
                        dlen = Some(destination.len());
                        kind = 1;
                    }
                    Ok(Some(Event::Subscribe {
                        id, destination, ..
                    })) if destination.len() <= 256 => {
                        dest[..destination.len()].copy_from_slice(destination);
                        dlen = Some(destination.len());
                        sub_id[..id.len()].copy_from_slice(id);
                        id_len = id.len();
                        kind = 2;
                    }
                    Ok(Some(Event::Unsubscribe { id })) => {
                        sub_id[..id.len()].copy_from_slice(id);
                        id_len = id.len();
                        kind = 3;
                    }
                    _ => {}
                }
                let d = dlen.map(|l| &dest[..l]);
                match (kind, d) {
                    (1, Some(d)) => publish(&mut c.session, sid, now, router, broker, d, &f),
                    (2, Some(d)) => {
                        let mut resolved = [0u8; 128];
                        match router.dispatch(Command::Subscribe, Some(d), sid, &mut resolved) {
                            Route::Broker(r) | Route::App(r) => {
                                if let Err(e) = broker.subscribe(sid, &sub_id[..id_len], r) {
                                    c.session.close_with_error(CloseReason::Rejected, e);
                                }
                            }
                            Route::Reject(e) => {
                                c.session.close_with_error(CloseReason::Rejected, e)
                            }
                            _ => {}
                        }
                    }
                    (3, _) => {
                        broker.unsubscribe(sid, &sub_id[..id_len]);
                    }
                    _ => {}
                }
                n
            }
        };
        c.rbuf.copy_within(used..c.len, 0);
        c.len -= used;
        if c.session.is_closing() {
            break;
        }
    }
    while let Ok(Some(_)) = c.session.poll_transmit(now, &mut out) {}
    if c.session.is_closed() {
        broker.remove_session(sid);
    }
}

fn publish(
    session: &mut Session<4>,
    sid: SessionId,
    now: Instant,
    router: &Router<'_>,
    broker: &mut SimpleBroker<FixedStore<16, 64>>,
    dest: &[u8],
    f: &stomp_relay_core::codec::Frame<'_>,
) {
    let mut fwd = [0u8; 256];
    let mut resolved = [0u8; 256];
    let target: &[u8] = match router.dispatch(Command::Send, Some(dest), sid, &mut resolved) {
        Route::Broker(d) => d,
        Route::App(d) => match router.route_app(d, &mut fwd) {
            Ok(AppRoute::Forward(t)) => t,
            _ => return,
        },
        Route::User { target, .. } => match router.user_target(target, sid, &mut fwd) {
            Ok(t) => t,
            Err(e) => return session.close_with_error(CloseReason::Rejected, e),
        },
        Route::Reject(e) => return session.close_with_error(CloseReason::Rejected, e),
        _ => return,
    };
    let mut deliveries = [(0u64, [0u8; 64], 0usize); 16];
    let mut k = 0;
    broker.publish(target, |d| {
        if k < deliveries.len() {
            deliveries[k].0 = d.message_id;
            deliveries[k].1[..d.subscription.len()].copy_from_slice(d.subscription);
            deliveries[k].2 = d.subscription.len();
            k += 1;
        }
    });
    for (id, sub, len) in &deliveries[..k] {
        let mut scratch = [0u8; 1024];
        let mut headers = [Header::EMPTY; 24];
        if let Ok(m) = message_frame(
            f,
            target,
            &sub[..*len],
            *id,
            true,
            &mut scratch,
            &mut headers,
        ) {
            let mut out = [0u8; BUF * 2];
            let _ = stomp_relay_core::codec::encode(
                &m,
                EncodeOptions::passthrough(session.version()),
                &mut out,
            );
        }
    }
    session.handle_transmitted(now);
}

fuzz_target!(|data: &[u8]| {
    let router = Router::new(RouterConfig::default());
    let mut broker = SimpleBroker::new(FixedStore::<16, 64>::new());
    let mut clients = [0u128, 1].map(|i| Client {
        session: Session::new(SessionId::new(i), SessionConfig::default(), Instant::ZERO),
        rbuf: [0; BUF],
        len: 0,
    });
    let mut now = 0u64;
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        if op >= 240 {
            now += u64::from(op - 239) * 2_500;
            let t = Instant::from_millis(now);
            for (i, c) in clients.iter_mut().enumerate() {
                if c.session.poll_timeout().is_some_and(|d| d <= t) {
                    c.session.handle_timeout(t);
                    // A handled deadline never stays due: a host loop would spin.
                    assert!(c.session.poll_timeout().is_none_or(|d| d > t));
                }
                drive(c, SessionId::new(i as u128), t, &router, &mut broker);
            }
            continue;
        }
        let which = usize::from(op & 1);
        let n = usize::from(op >> 2) % 64 + 1;
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        let c = &mut clients[which];
        let room = BUF - c.len;
        let take = chunk.len().min(room);
        c.rbuf[c.len..c.len + take].copy_from_slice(&chunk[..take]);
        c.len += take;
        let t = Instant::from_millis(now);
        c.session.handle_received(t);
        drive(c, SessionId::new(which as u128), t, &router, &mut broker);
    }
});
