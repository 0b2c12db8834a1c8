//! The one upstream session: connect with backoff, CONNECT with the relay credentials,
//! restore subscriptions, forward the store-and-forward ring in order, fan MESSAGEs out
//! to local subscribers, heart-beats both ways.
//!
//! Invariants: every SEND goes upstream with a `receipt` carrying its ring sequence
//! number and leaves the ring only when that RECEIPT arrives, so an outage loses nothing
//! the ring still holds and delivery stays in order (at-least-once: a SEND written just
//! before a loss may arrive twice); after every (re)connect each destination with local
//! subscribers is subscribed exactly once; local sessions never notice the upstream
//! going away except that MESSAGEs pause.

use embassy_futures::select::select;
use embassy_net::tcp::{TcpReader, TcpSocket, TcpWriter};
use embassy_net::Stack;
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_time::{with_timeout, Duration, Instant, Timer};
use embedded_io_async::Write as _;
use stomp_relay_codec::{
    encode, Command, DecodeError, Decoded, Decoder, EncodeOptions, Frame, Header, Limit, Limits,
    Status, Version,
};

use crate::edge::{Edge, Inner, UpstreamResources, MAX_HEADERS};
use crate::negotiate::{self, fmt_u32, HeartBeats};
use crate::subs::{Action, MAX_SUB_ID};
use crate::Config;

impl<M: RawMutex, const N: usize, const QUEUE: usize, const STORE: usize, const FRAME: usize>
    Edge<M, N, QUEUE, STORE, FRAME>
{
    /// Keeps the upstream session up forever, reconnecting with exponential backoff and
    /// jitter between [`Config::reconnect_min`] and [`Config::reconnect_max`].
    pub async fn run_upstream<const RX: usize, const TX: usize, const F: usize>(
        &self,
        stack: Stack<'_>,
        config: &Config<'_>,
        res: &mut UpstreamResources<RX, TX, F>,
    ) -> ! {
        let mut backoff = config.reconnect_min;
        let mut rng = config.seed | 1;
        loop {
            let reached = self.upstream_once(stack, config, res).await;
            self.with(|i| {
                i.upstream_up = false;
                i.subs.upstream_lost();
                i.store.rewind();
            });
            if reached {
                backoff = config.reconnect_min;
            }
            // xorshift64: jitter so that many edge nodes do not reconnect in lockstep.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let quarter = backoff.as_millis() / 4;
            let jitter = if quarter > 0 { rng % quarter } else { 0 };
            let delay = backoff + Duration::from_millis(jitter);
            info!(
                "upstream: lost or unreachable, retrying in {} ms",
                delay.as_millis()
            );
            Timer::after(delay).await;
            backoff = (backoff * 2).min(config.reconnect_max);
        }
    }

    /// One upstream connection, start to end. `true` if it reached CONNECTED.
    async fn upstream_once<const RX: usize, const TX: usize, const F: usize>(
        &self,
        stack: Stack<'_>,
        config: &Config<'_>,
        res: &mut UpstreamResources<RX, TX, F>,
    ) -> bool {
        let UpstreamResources { rx, tx, frame, out } = res;
        let mut socket = TcpSocket::new(stack, rx, tx);
        let reached =
            match with_timeout(config.connect_timeout, socket.connect(config.upstream)).await {
                Ok(Ok(())) => self.upstream_session(&mut socket, config, frame, out).await,
                _ => false,
            };
        socket.abort();
        let _ = with_timeout(Duration::from_millis(100), socket.flush()).await;
        reached
    }

    async fn upstream_session(
        &self,
        socket: &mut TcpSocket<'_>,
        config: &Config<'_>,
        buf: &mut [u8],
        out: &mut [u8],
    ) -> bool {
        let ms = |d: Duration| d.as_millis().min(u32::MAX as u64) as u32;
        let (mut a, mut b) = ([0u8; 10], [0u8; 10]);
        let send = fmt_u32(ms(config.upstream_heartbeat.0), &mut a);
        let recv = fmt_u32(ms(config.upstream_heartbeat.1), &mut b);
        let mut hb = [0u8; 21];
        hb[..send.len()].copy_from_slice(send);
        hb[send.len()] = b',';
        hb[send.len() + 1..send.len() + 1 + recv.len()].copy_from_slice(recv);
        let headers = [
            Header::new(b"accept-version", b"1.2"),
            Header::new(b"host", config.upstream_host.as_bytes()),
            Header::new(b"login", config.upstream_login.as_bytes()),
            Header::new(b"passcode", config.upstream_passcode.as_bytes()),
            Header::new(b"heart-beat", &hb[..send.len() + 1 + recv.len()]),
        ];
        let Ok(n) = encode(
            &Frame::new(Command::Connect, &headers, b""),
            Version::V1_2,
            out,
        ) else {
            warn!("upstream: CONNECT does not fit the frame buffer");
            return false;
        };
        if socket.write_all(&out[..n]).await.is_err() || socket.flush().await.is_err() {
            return false;
        }

        let limits = Limits {
            max_frame_size: buf.len(),
            max_headers: MAX_HEADERS,
            max_header_line: buf.len(),
            max_body: buf.len(),
        };
        let decoder = Decoder::with_limits(Version::V1_2, limits);
        let mut filled = 0;
        let theirs = match with_timeout(config.connect_timeout, async {
            loop {
                // Decoded in a plain function so the header storage is not kept in the
                // future across the read below.
                match connected_step(&decoder, &buf[..filled]) {
                    Step::Answer(result, n) => {
                        buf.copy_within(n..filled, 0);
                        filled -= n;
                        return result;
                    }
                    Step::Skip(n) => {
                        buf.copy_within(n..filled, 0);
                        filled -= n;
                        continue;
                    }
                    Step::More => {}
                    Step::Invalid => return Err(()),
                }
                match socket.read(&mut buf[filled..]).await {
                    Ok(0) | Err(_) => return Err(()),
                    Ok(n) => filled += n,
                }
            }
        })
        .await
        {
            Ok(Ok(theirs)) => theirs,
            _ => return false,
        };
        let heart_beats = HeartBeats::negotiate(config.upstream_heartbeat, theirs);
        self.with(|i| {
            i.upstream_up = true;
            i.stats.upstream_connects += 1;
        });
        info!("upstream: connected");
        self.upstream_wake.signal(());

        let (mut reader, mut writer) = socket.split();
        select(
            self.upstream_read(&mut reader, config, decoder, buf, filled, heart_beats),
            self.upstream_write(&mut writer, out, heart_beats),
        )
        .await;
        true
    }

    async fn upstream_read(
        &self,
        reader: &mut TcpReader<'_>,
        config: &Config<'_>,
        decoder: Decoder,
        buf: &mut [u8],
        mut filled: usize,
        heart_beats: HeartBeats,
    ) {
        // Skipping the rest of a frame too large for `buf` (up to its NUL).
        let mut skipping = false;
        loop {
            let mut start = 0;
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
                    Ok(Status::Complete((Decoded::HeartBeat, n))) => start += n,
                    Ok(Status::Complete((Decoded::Frame(f), n))) => {
                        start += n;
                        match f.command {
                            Command::Message => self.fan_out(&f),
                            Command::Receipt => {
                                if let Some(seq) =
                                    f.receipt_id().and_then(|v| negotiate::parse_seq(v.raw()))
                                {
                                    self.with(|i| {
                                        let acked = i.store.ack_through(seq);
                                        i.stats.forwarded += acked;
                                    });
                                }
                            }
                            Command::Error => {
                                warn!(
                                    "upstream ERROR: {}",
                                    f.message()
                                        .and_then(|m| m.as_str())
                                        .unwrap_or("(no message)")
                                );
                                return;
                            }
                            _ => {}
                        }
                    }
                    Ok(Status::Partial) => break,
                    Err(DecodeError::LimitExceeded {
                        limit: Limit::FrameSize | Limit::BodySize,
                        ..
                    }) => {
                        warn!("upstream: frame larger than the receive buffer skipped");
                        self.with(|i| i.stats.oversize_upstream += 1);
                        skipping = true;
                    }
                    Err(_) => {
                        warn!("upstream: undecodable frame, reconnecting");
                        return;
                    }
                }
            }
            buf.copy_within(start..filled, 0);
            filled -= start;

            let read = reader.read(&mut buf[filled..]);
            let n = match heart_beats.read_deadline(config.heartbeat_grace) {
                Some(d) => match with_timeout(d, read).await {
                    Ok(r) => r,
                    Err(_) => {
                        warn!("upstream: heart-beat missed, reconnecting");
                        return;
                    }
                },
                None => read.await,
            };
            match n {
                Ok(0) | Err(_) => return,
                Ok(n) => filled += n,
            }
        }
    }

    /// Copies an upstream MESSAGE to every local subscription of its route.
    fn fan_out(&self, frame: &Frame<'_>) {
        let Some(sub) = frame.subscription() else {
            return;
        };
        let mut kept = [Header::EMPTY; MAX_HEADERS + 1];
        let mut k = 0;
        for h in frame
            .headers
            .iter()
            .filter(|h| h.name != b"subscription" && h.name != b"ack")
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
            let Some(route) = subs.route_of(sub.raw()) else {
                return;
            };
            for (session, id) in subs.subscribers(route) {
                let mut escaped = [0u8; 2 * MAX_SUB_ID];
                let mut headers = kept;
                headers[k] = Header::new(b"subscription", escape(id, &mut escaped));
                let copy = Frame {
                    command: Command::Message,
                    headers: &headers[..k + 1],
                    body: frame.body,
                    form: frame.form,
                };
                let slot = &mut slots[session];
                if slot.queue_frame(
                    scratch,
                    stats,
                    &copy,
                    EncodeOptions::passthrough(slot.version),
                ) {
                    stats.delivered += 1;
                }
                self.session_wake[session].signal(());
            }
        });
    }

    async fn upstream_write(
        &self,
        writer: &mut TcpWriter<'_>,
        out: &mut [u8],
        heart_beats: HeartBeats,
    ) {
        let mut last_write = Instant::now();
        loop {
            let mut wrote = false;
            // Subscription changes first, so a device's SEND right after its SUBSCRIBE
            // cannot overtake it upstream.
            while let Some(n) = self.with(|i| take_action(i, out)) {
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
            if wrote {
                if writer.flush().await.is_err() {
                    return;
                }
                last_write = Instant::now();
                continue;
            }
            match heart_beats.send_every {
                Some(every) => {
                    let due = last_write + every;
                    if Instant::now() >= due {
                        if writer.write_all(b"\n").await.is_err() || writer.flush().await.is_err() {
                            return;
                        }
                        last_write = Instant::now();
                        continue;
                    }
                    let _ = with_timeout(due - Instant::now(), self.upstream_wake.wait()).await;
                }
                None => self.upstream_wake.wait().await,
            }
        }
    }
}

/// One decode step while waiting for CONNECTED.
enum Step {
    /// CONNECTED (the broker's heart-beat) or a refusal, and the bytes it used.
    Answer(Result<(u32, u32), ()>, usize),
    /// A heart-beat to skip.
    Skip(usize),
    More,
    Invalid,
}

fn connected_step(decoder: &Decoder, buf: &[u8]) -> Step {
    let mut headers = [Header::EMPTY; MAX_HEADERS];
    match decoder.decode(buf, &mut headers) {
        Ok(Status::Complete((Decoded::Frame(f), n))) => {
            let result = match f.command {
                Command::Connected => {
                    negotiate::heart_beat(f.header(b"heart-beat").map(|v| v.raw())).ok_or(())
                }
                _ => {
                    warn!(
                        "upstream refused CONNECT: {}",
                        f.message()
                            .and_then(|m| m.as_str())
                            .unwrap_or("(no message)")
                    );
                    Err(())
                }
            };
            Step::Answer(result, n)
        }
        Ok(Status::Complete((Decoded::HeartBeat, n))) => Step::Skip(n),
        Ok(Status::Partial) => Step::More,
        Err(_) => Step::Invalid,
    }
}

/// Takes the next SUBSCRIBE/UNSUBSCRIBE the upstream needs, encoded into `out`.
fn take_action<const N: usize, const Q: usize, const S: usize, const F: usize>(
    i: &mut Inner<N, Q, S, F>,
    out: &mut [u8],
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
                    Header::new(b"id", &id),
                    Header::new(b"ack", b"auto"),
                ];
                (
                    slot,
                    encode(
                        &Frame::new(Command::Subscribe, &headers, b""),
                        Version::V1_2,
                        out,
                    ),
                )
            }
            Action::Unsubscribe { slot, id } => {
                let headers = [Header::new(b"id", &id)];
                (
                    slot,
                    encode(
                        &Frame::new(Command::Unsubscribe, &headers, b""),
                        Version::V1_2,
                        out,
                    ),
                )
            }
        };
        // Marked done now: if the write fails the connection is gone and the table is
        // reset by `upstream_lost` anyway.
        i.subs.action_done(slot);
        match encoded {
            Ok(n) => return Some(n),
            // Cannot happen with the table's length limits and a sane FRAME; skip it
            // rather than loop on it.
            Err(_) => continue,
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
