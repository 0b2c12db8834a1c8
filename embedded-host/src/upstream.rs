//! The one upstream session, driven by relay-core's [`Upstream`] state machine
//! (CONNECT with the relay credentials, CONNECTED wait, heart-beats, failover across
//! the configured addresses, backoff with jitter): this module opens the TCP
//! connections it asks for, restores subscriptions, forwards the store-and-forward ring
//! in order and fans MESSAGEs out to local subscribers.
//!
//! Invariants: nothing but CONNECT goes up before the broker's CONNECTED; every SEND
//! goes upstream with a `receipt` carrying its ring sequence number and leaves the ring
//! only when that RECEIPT arrives, so an outage loses nothing the ring still holds and
//! delivery stays in order (at-least-once: a SEND written just before a loss may arrive
//! twice); after every (re)connect each destination with local subscribers is
//! subscribed exactly once, before any stored SEND is flushed; local sessions never
//! notice the upstream going away except that MESSAGEs pause.

use core::cell::RefCell;

use embassy_futures::select::select;
use embassy_net::tcp::{TcpReader, TcpSocket, TcpWriter};
use embassy_net::Stack;
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_time::{with_timeout, Duration, Instant, Timer};
use embedded_io_async::Write as _;
use stomp_relay_codec::{
    encode, Command, DecodeError, Decoded, Decoder, EncodeOptions, Frame, Header, HeaderForm,
    Limit, Limits, Status, Version,
};
use stomp_relay_core::dialect::Dialect;
use stomp_relay_core::relay::relay_frame;
use stomp_relay_core::time::Instant as CoreInstant;
use stomp_relay_core::upstream::{
    Backoff, Credentials, Inbound, Upstream, UpstreamConfig, UpstreamEvent,
};

use crate::edge::{Edge, Inner, UpstreamResources, MAX_DESTINATION, MAX_HEADERS, MAX_SUB_ID};
use crate::ring::QueueFull;
use crate::Config;
use stomp_relay_core::fanout::Action;

fn now() -> CoreInstant {
    CoreInstant::from_millis(Instant::now().as_millis())
}

fn core_duration(d: Duration) -> core::time::Duration {
    core::time::Duration::from_millis(d.as_millis())
}

/// The embassy instant of a relay-core deadline.
fn embassy_instant(t: CoreInstant) -> Instant {
    Instant::from_millis(t.as_millis())
}

fn millis(d: Duration) -> u32 {
    d.as_millis().min(u32::MAX as u64) as u32
}

impl<M: RawMutex, const N: usize, const QUEUE: usize, const STORE: usize, const FRAME: usize>
    Edge<M, N, QUEUE, STORE, FRAME>
{
    /// Keeps the upstream session up forever: relay-core's [`Upstream`] decides when and
    /// where to connect (backoff with jitter between [`Config::reconnect_min`] and
    /// [`Config::reconnect_max`], rotating through [`Config::upstreams`]).
    pub async fn run_upstream<const RX: usize, const TX: usize, const F: usize>(
        &self,
        stack: Stack<'_>,
        config: &Config<'_>,
        res: &mut UpstreamResources<RX, TX, F>,
    ) -> ! {
        let up = RefCell::new(Upstream::new(
            UpstreamConfig {
                heart_beat: (
                    millis(config.upstream_heartbeat.0),
                    millis(config.upstream_heartbeat.1),
                ),
                read_timeout_factor: config.heartbeat_grace,
                connected_timeout: core_duration(config.connect_timeout),
                reconnect: Some(Backoff {
                    initial: core_duration(config.reconnect_min),
                    max: core_duration(config.reconnect_max),
                }),
                addresses: config.upstreams.len().max(1),
                jitter_seed: config.seed,
            },
            now(),
        ));
        let creds = Credentials {
            login: Some(config.upstream_login),
            passcode: Some(config.upstream_passcode),
            virtual_host: Some(config.upstream_host),
            client_id: None,
        };
        let UpstreamResources { rx, tx, frame, out } = res;
        loop {
            let address = loop {
                let next = up.borrow_mut().poll_connect(now());
                if let Some(a) = next {
                    break a;
                }
                let deadline = up.borrow().poll_timeout();
                match deadline {
                    Some(t) => Timer::at(embassy_instant(t)).await,
                    None => Timer::after_millis(100).await,
                }
            };
            let Some(&endpoint) = config.upstreams.get(address) else {
                // No address configured: nothing to connect to, ever.
                Timer::after_secs(3600).await;
                continue;
            };
            let mut socket = TcpSocket::new(stack, &mut rx[..], &mut tx[..]);
            if let Ok(Ok(())) = with_timeout(config.connect_timeout, socket.connect(endpoint)).await
            {
                up.borrow_mut().on_transport_connected(now());
                let (mut reader, mut writer) = socket.split();
                select(
                    self.upstream_read(&mut reader, &up, config, frame),
                    self.upstream_write(&mut writer, &up, &creds, config.dialect, out),
                )
                .await;
            }
            socket.abort();
            let _ = with_timeout(Duration::from_millis(100), socket.flush()).await;
            drop(socket);
            up.borrow_mut().handle_transport_closed(now());
            while let Some(event) = up.borrow_mut().poll_event() {
                if let UpstreamEvent::Lost(reason) = event {
                    warn!("upstream lost: {}", reason);
                }
            }
            self.with(|i| {
                i.upstream_up = false;
                i.subs.upstream_lost();
                i.store.rewind();
            });
        }
    }

    /// Reads broker frames until the state machine gives up on the transport or it
    /// closes.
    async fn upstream_read(
        &self,
        reader: &mut TcpReader<'_>,
        up: &RefCell<Upstream>,
        config: &Config<'_>,
        buf: &mut [u8],
    ) {
        let limits = Limits {
            max_frame_size: buf.len(),
            max_headers: MAX_HEADERS,
            max_header_line: buf.len(),
            max_body: buf.len(),
        };
        let decoder = Decoder::with_limits(Version::V1_2, limits);
        let mut filled = 0;
        // Skipping the rest of a frame too large for `buf` (up to its NUL).
        let mut skipping = false;
        // The MESSAGE at the start of `buf` was already delivered to this many of its
        // local subscribers (it is decoded again after waiting for a full queue).
        let mut resume = 0;
        // When the wait for a full queue began, per session waited on: the limit is
        // `write_timeout` in total, however often the queue drains a little.
        let mut waiting: Option<(usize, Instant)> = None;
        loop {
            let mut start = 0;
            let mut blocked = None;
            while start < filled {
                if skipping {
                    match buf[start..filled].iter().position(|&b| b == 0) {
                        Some(p) => {
                            start += p + 1;
                            skipping = false;
                        }
                        None => start = filled,
                    }
                    continue;
                }
                let mut headers = [Header::EMPTY; MAX_HEADERS];
                match decoder.decode(&buf[start..filled], &mut headers) {
                    Ok(Status::Complete((Decoded::HeartBeat, n))) => {
                        start += n;
                        up.borrow_mut().handle_heartbeat(now());
                    }
                    Ok(Status::Complete((Decoded::Frame(f), n))) => {
                        let inbound = up.borrow_mut().handle_frame(now(), &f);
                        match inbound {
                            Some(Inbound::Connected(_)) => {
                                self.with(|i| {
                                    i.upstream_up = true;
                                    i.stats.upstream_connects += 1;
                                });
                                info!("upstream: connected");
                                self.upstream_wake.signal(());
                            }
                            Some(Inbound::Message(m)) => {
                                if let Some(at) = self.fan_out(&m, resume) {
                                    // A subscriber's queue is full: wait for it below,
                                    // with this frame still at `start`.
                                    blocked = Some(at);
                                    break;
                                }
                                resume = 0;
                            }
                            Some(Inbound::Receipt(r)) => {
                                let seq = r.receipt_id().and_then(|v| parse_seq(v.raw()));
                                if let Some(seq) = seq {
                                    self.with(|i| {
                                        let acked = i.store.ack_through(seq);
                                        i.stats.forwarded += acked;
                                    });
                                }
                            }
                            Some(Inbound::Error(e)) => {
                                warn!(
                                    "upstream ERROR: {}",
                                    e.message()
                                        .and_then(|m| m.as_str())
                                        .unwrap_or("(no message)")
                                );
                            }
                            None => {}
                        }
                        start += n;
                    }
                    Ok(Status::Partial) => break,
                    Err(DecodeError::LimitExceeded {
                        limit: Limit::FrameSize | Limit::BodySize,
                        ..
                    }) => {
                        warn!("upstream: frame larger than the receive buffer skipped");
                        self.with(|i| i.stats.oversize_upstream += 1);
                        up.borrow_mut().handle_received(now());
                        skipping = true;
                    }
                    Err(_) => {
                        warn!("upstream: undecodable frame");
                        up.borrow_mut().handle_decode_error(now());
                    }
                }
                if up.borrow().should_close_transport() {
                    self.upstream_wake.signal(());
                    return;
                }
            }
            buf.copy_within(start..filled, 0);
            filled -= start;
            if let Some((index, session)) = blocked {
                // Backpressure: the upstream waits (its TCP window closes) while a slow
                // device drains, up to `write_timeout`; then that device is dropped as a
                // slow consumer and the others get the message.
                let deadline = match waiting {
                    Some((s, d)) if s == session => d,
                    _ => Instant::now() + config.write_timeout,
                };
                waiting = Some((session, deadline));
                self.session_wake[session].signal(());
                let drained =
                    embassy_time::with_deadline(deadline, self.space_wake[session].wait()).await;
                resume = match drained {
                    Ok(()) => index,
                    Err(_) => {
                        self.with(|i| i.mark_slow_consumer(session));
                        self.session_wake[session].signal(());
                        waiting = None;
                        index + 1
                    }
                };
                continue;
            }
            waiting = None;
            match reader.read(&mut buf[filled..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    filled += n;
                    up.borrow_mut().handle_received(now());
                }
            }
        }
    }

    /// Copies an upstream MESSAGE to the local subscriptions of its route, starting
    /// with the `skip`-th. Stops at the first whose queue has no room and returns its
    /// index and session, so the caller can wait for it and resume there.
    fn fan_out(&self, frame: &Frame<'_>, skip: usize) -> Option<(usize, usize)> {
        let sub = frame.subscription()?;
        // The broker's headers except those that are per receiver; `destination` is
        // put back below in the client's own spelling (the route's).
        let mut kept = [Header::EMPTY; MAX_HEADERS + 2];
        let mut k = 0;
        for h in frame
            .headers
            .iter()
            .filter(|h| !matches!(h.name, b"subscription" | b"ack" | b"destination"))
        {
            kept[k] = *h;
            k += 1;
        }
        self.with(|i| {
            let Inner {
                slots,
                subs,
                scratch,
                stats,
                ..
            } = i;
            let route = subs.route_of(sub.raw())?;
            let mut dest_buf = [0u8; 2 * MAX_DESTINATION];
            let destination = match frame.form {
                HeaderForm::Escaped => escape(subs.destination(route), &mut dest_buf),
                HeaderForm::Plain => subs.destination(route),
            };
            let mut base = kept;
            base[k] = Header::new(b"destination", destination);
            let k = k + 1;
            for (index, (session, id)) in subs.store().subscribers(route).enumerate().skip(skip) {
                let mut escaped = [0u8; 2 * MAX_SUB_ID];
                let mut headers = base;
                let id = match frame.form {
                    HeaderForm::Escaped => escape(id, &mut escaped),
                    HeaderForm::Plain => id,
                };
                headers[k] = Header::new(b"subscription", id);
                let copy = Frame {
                    command: Command::Message,
                    headers: &headers[..k + 1],
                    body: frame.body,
                    form: frame.form,
                };
                let slot = &mut slots[session];
                match slot.try_queue(scratch, &copy, EncodeOptions::passthrough(slot.version())) {
                    Ok(()) => stats.delivered += 1,
                    Err(QueueFull) if !slot.queue.is_empty() => return Some((index, session)),
                    // Does not fit even an empty queue (or cannot be encoded for the
                    // device's version): the device cannot get what it subscribed to.
                    Err(QueueFull) => slot.mark_slow_consumer(stats),
                }
                self.session_wake[session].signal(());
            }
            None
        })
    }

    /// Writes what the state machine wants (CONNECT, heart-beats), then, once
    /// connected, subscription changes and the store-and-forward ring; runs the timers.
    async fn upstream_write(
        &self,
        writer: &mut TcpWriter<'_>,
        up: &RefCell<Upstream>,
        creds: &Credentials<'_>,
        dialect: Dialect,
        out: &mut [u8],
    ) {
        loop {
            let mut wrote = false;
            loop {
                let control = up.borrow_mut().poll_transmit(now(), creds, out);
                match control {
                    Ok(Some(n)) => {
                        if writer.write_all(&out[..n]).await.is_err() {
                            return;
                        }
                        wrote = true;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        warn!("upstream: CONNECT does not fit the frame buffer");
                        return;
                    }
                }
            }
            if up.borrow().is_connected() {
                // Subscription changes first, so a device's SEND right after its
                // SUBSCRIBE cannot overtake it upstream.
                while let Some(n) = self.with(|i| take_action(i, out, dialect)) {
                    if writer.write_all(&out[..n]).await.is_err() {
                        return;
                    }
                    wrote = true;
                }
                loop {
                    let next = self.with(|i| {
                        let (seq, rec) = i.store.next_unsent(out)?;
                        let len = rec.len();
                        i.store.mark_sent(seq);
                        Some((seq, len))
                    });
                    let Some((seq, len)) = next else {
                        break;
                    };
                    let mut digits = [0u8; 10];
                    let seq = fmt_u32(seq, &mut digits);
                    let parts: [&[u8]; 4] = [b"SEND\nreceipt:", seq, b"\n", &out[..len]];
                    for part in parts {
                        if writer.write_all(part).await.is_err() {
                            return;
                        }
                    }
                    wrote = true;
                }
            }
            if wrote {
                if writer.flush().await.is_err() {
                    return;
                }
                up.borrow_mut().handle_transmitted(now());
                continue;
            }
            if up.borrow().should_close_transport() {
                return;
            }
            let deadline = up.borrow().poll_timeout();
            match deadline {
                Some(t) => {
                    let _ =
                        embassy_time::with_deadline(embassy_instant(t), self.upstream_wake.wait())
                            .await;
                }
                None => self.upstream_wake.wait().await,
            }
            up.borrow_mut().handle_timeout(now());
            if up.borrow().should_close_transport() {
                return;
            }
        }
    }
}

/// Takes the next SUBSCRIBE/UNSUBSCRIBE the upstream needs, encoded into `out`.
fn take_action<const N: usize, const Q: usize, const S: usize, const F: usize>(
    i: &mut Inner<N, Q, S, F>,
    out: &mut [u8],
    dialect: Dialect,
) -> Option<usize> {
    loop {
        let (slot, encoded) = match i.subs.next_action()? {
            Action::Subscribe {
                slot,
                id,
                destination,
            } => {
                let headers = [
                    Header::new(b"destination", destination),
                    Header::new(b"id", id.as_bytes()),
                    Header::new(b"ack", b"auto"),
                ];
                let frame = Frame::new(Command::Subscribe, &headers, b"");
                let encoded = match dialect {
                    Dialect::Generic => encode(&frame, Version::V1_2, out).ok(),
                    _ => relay_frame(&frame, Some(destination), dialect, Version::V1_2, out).ok(),
                };
                (slot, encoded)
            }
            Action::Unsubscribe { slot, id } => {
                let headers = [Header::new(b"id", id.as_bytes())];
                (
                    slot,
                    encode(
                        &Frame::new(Command::Unsubscribe, &headers, b""),
                        Version::V1_2,
                        out,
                    )
                    .ok(),
                )
            }
        };
        // Marked done now: if the write fails the connection is gone and the table is
        // reset by `upstream_lost` anyway.
        i.subs.action_done(slot);
        match encoded {
            Some(n) => return Some(n),
            // Cannot happen with the table's length limits and a sane FRAME; skip it
            // rather than loop on it.
            None => continue,
        }
    }
}

/// `value` escaped for a STOMP 1.1/1.2 header.
fn escape<'o>(value: &[u8], out: &'o mut [u8]) -> &'o [u8] {
    let mut n = 0;
    for &b in value {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b':' => b"\\c",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => core::slice::from_ref(&b),
        };
        if n + esc.len() > out.len() {
            break;
        }
        out[n..n + esc.len()].copy_from_slice(esc);
        n += esc.len();
    }
    &out[..n]
}

/// Parses a decimal `u32` (a receipt id the edge node issued).
fn parse_seq(digits: &[u8]) -> Option<u32> {
    let digits = digits.trim_ascii();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        if d.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add((d - b'0') as u32)
        } else {
            None
        }
    })
}

/// Formats `v` in decimal into `buf`, returning the digits.
fn fmt_u32(v: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_sequence_numbers() {
        let mut b = [0u8; 10];
        assert_eq!(fmt_u32(0, &mut b), b"0");
        assert_eq!(fmt_u32(u32::MAX, &mut b), b"4294967295");
        assert_eq!(parse_seq(b"42"), Some(42));
        assert_eq!(parse_seq(b" 7 "), Some(7));
        assert_eq!(parse_seq(b"4294967296"), None);
        assert_eq!(parse_seq(b"x1"), None);
        assert_eq!(parse_seq(b""), None);
    }
}
