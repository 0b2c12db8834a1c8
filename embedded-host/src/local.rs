//! Local sessions: accepting device connections into a fixed slot, driving each
//! device's relay-core [`Session`] (handshake, versions, heart-beats, receipts, ERROR),
//! acting on what it accepts (SENDs into the store-and-forward ring, subscriptions into
//! the shared fan-out table), and the rejector that answers connection `N+1` with
//! ERROR `Too many sessions`.
//!
//! Every STOMP rule is relay-core's; this module only moves bytes and time: decoded
//! frames into [`Session::handle_frame`], the deadline of [`Session::poll_timeout`] onto
//! the socket read, and [`Session::poll_transmit`]'s frames into the slot's queue.
//!
//! Invariants: a session's subscriptions are released when it ends, however it ends;
//! an ERROR gets out even past a full queue; nothing one device does can block or
//! close another session.

use embassy_futures::select::{select, Either};
use embassy_net::tcp::{TcpReader, TcpSocket, TcpWriter};
use embassy_net::Stack;
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_time::{with_deadline, with_timeout, Duration, Timer};
use embedded_io_async::Write as _;
use stomp_relay_codec::{
    encode, Command, Decoded, Decoder, EncodeOptions, Frame, Header, Limits, Status, Version,
};

use stomp_relay_core::dialect::Dialect;
use stomp_relay_core::relay::relay_frame;
use stomp_relay_core::session::{CloseReason, Event, SessionConfig, SessionId, Versions};
use stomp_relay_core::time::Instant as CoreInstant;

use crate::edge::{DeviceSession, Edge, Inner, RejectResources, SessionResources, MAX_HEADERS};
use crate::Config;

/// The ERROR frame a connection beyond the `N` slots receives before it is closed.
pub const TOO_MANY_SESSIONS: &[u8] = b"ERROR\nmessage:Too many sessions\ncontent-type:text/plain\ncontent-length:17\n\nToo many sessions\0";

/// The ERROR `message` for a device that cannot keep up with its MESSAGEs.
pub const SLOW_CONSUMER: &str = "Slow consumer: outbound queue overflowed";

const NO_TRANSACTIONS: &str = "Transactions are not supported by the edge node";

/// relay-core's clock reading for now.
fn now() -> CoreInstant {
    CoreInstant::from_millis(embassy_time::Instant::now().as_millis())
}

/// What the read side decided after a frame.
enum Flow {
    Continue,
    Close,
}

impl<M: RawMutex, const N: usize, const QUEUE: usize, const STORE: usize, const FRAME: usize>
    Edge<M, N, QUEUE, STORE, FRAME>
{
    /// Serves local session slot `slot` forever: accept, serve, release, accept again.
    pub async fn run_session<const RX: usize, const TX: usize, const F: usize>(
        &self,
        stack: Stack<'_>,
        config: &Config<'_>,
        slot: usize,
        res: &mut SessionResources<RX, TX, F>,
    ) -> ! {
        let session_config = SessionConfig {
            heart_beat: (ms(config.local_heartbeat.0), ms(config.local_heartbeat.1)),
            read_timeout_factor: config.heartbeat_grace,
            versions: Versions::ALL,
            subprotocol: None,
            server: Some(config.server_name),
            connect_timeout: Some(core::time::Duration::from_millis(
                config.connect_timeout.as_millis(),
            )),
            local_receipts: true,
            defer_connected: false,
        };
        loop {
            let mut socket = TcpSocket::new(stack, &mut res.rx, &mut res.tx);
            if socket.accept(config.listen_port).await.is_err() {
                Timer::after_millis(100).await;
                continue;
            }
            self.with(|i| {
                let s = &mut i.slots[slot];
                s.session = Some(DeviceSession::new(
                    SessionId::new(slot as u128),
                    session_config,
                    now(),
                ));
                s.overflowed = false;
                s.queue.clear();
            });
            self.slots_changed.signal(());
            self.session_wake[slot].reset();
            debug!("session {}: accepted", slot);

            self.serve(&mut socket, config, slot, &mut res.frame).await;

            self.with(|i| i.subs.remove_session(slot));
            self.upstream_wake.signal(());
            // A fan-out waiting for this session's queue must not wait for nothing.
            self.space_wake[slot].signal(());
            socket.close();
            let _ = with_timeout(config.write_timeout, socket.flush()).await;
            socket.abort();
            let _ = with_timeout(Duration::from_millis(100), socket.flush()).await;
            drop(socket);
            self.with(|i| {
                let s = &mut i.slots[slot];
                s.session = None;
                s.queue.clear();
            });
            self.slots_changed.signal(());
            debug!("session {}: closed", slot);
        }
    }

    async fn serve(
        &self,
        socket: &mut TcpSocket<'_>,
        config: &Config<'_>,
        slot: usize,
        buf: &mut [u8],
    ) {
        let (mut reader, mut writer) = socket.split();
        select(
            self.read_side(&mut reader, config, slot, buf),
            self.write_side(&mut writer, config, slot),
        )
        .await;
        // Whatever is queued (an ERROR, a RECEIPT for DISCONNECT) still goes out.
        let _ = with_timeout(config.write_timeout, self.drain(&mut writer, slot)).await;
    }

    /// Runs `f` on session `slot` and its shared state, then moves what the session has
    /// to send into the slot's queue and wakes the writer. `Close` once it is closing.
    fn session_step(
        &self,
        slot: usize,
        f: impl FnOnce(&mut DeviceSession, &mut Inner<N, QUEUE, STORE, FRAME>),
    ) -> Flow {
        let closing = self.with(|i| {
            // Out of its slot for the call, so `f` can use the rest of the shared state
            // beside it; nothing in `f` reads this slot's session.
            let Some(mut session) = i.slots[slot].session.take() else {
                return true;
            };
            f(&mut session, i);
            i.transmit(slot, &mut session);
            let closing = session.is_closing();
            i.slots[slot].session = Some(session);
            closing
        });
        self.session_wake[slot].signal(());
        if closing {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    async fn read_side(
        &self,
        reader: &mut TcpReader<'_>,
        config: &Config<'_>,
        slot: usize,
        buf: &mut [u8],
    ) {
        let mut filled = 0;
        let limits = Limits {
            max_frame_size: buf.len(),
            max_headers: MAX_HEADERS,
            max_header_line: buf.len(),
            max_body: buf.len(),
        };
        loop {
            let mut start = 0;
            loop {
                let version = self.with(|i| i.slots[slot].version());
                let mut headers = [Header::EMPTY; MAX_HEADERS];
                let step = match Decoder::with_limits(version, limits)
                    .decode(&buf[start..filled], &mut headers)
                {
                    Ok(Status::Complete((Decoded::HeartBeat, n))) => {
                        start += n;
                        continue;
                    }
                    Ok(Status::Complete((Decoded::Frame(frame), n))) => {
                        start += n;
                        self.on_frame(config.dialect, slot, &frame)
                    }
                    Ok(Status::Partial) => break,
                    Err(e) => self.session_step(slot, |s, _| s.handle_decode_error(now(), &e)),
                };
                if let Flow::Close = step {
                    return;
                }
            }
            buf.copy_within(start..filled, 0);
            filled -= start;

            // The session's next deadline: CONNECT due, the device's silence, or our
            // own heart-beat.
            let deadline = self.with(|i| i.slots[slot].session.as_ref()?.poll_timeout());
            let read = reader.read(&mut buf[filled..]);
            let n = match deadline {
                Some(d) => {
                    let d = embassy_time::Instant::from_millis(d.as_millis());
                    match with_deadline(d, read).await {
                        Ok(r) => r,
                        Err(_) => {
                            if let Flow::Close =
                                self.session_step(slot, |s, _| s.handle_timeout(now()))
                            {
                                return;
                            }
                            continue;
                        }
                    }
                }
                None => read.await,
            };
            match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    filled += n;
                    self.with(|i| {
                        if let Some(s) = i.slots[slot].session.as_mut() {
                            s.handle_received(now());
                        }
                    });
                }
            }
        }
    }

    /// Copies queued bytes into the socket until the queue is empty.
    async fn drain(&self, writer: &mut TcpWriter<'_>, slot: usize) -> bool {
        loop {
            if self.with(|i| i.slots[slot].queue.is_empty()) {
                return writer.flush().await.is_ok();
            }
            let r = writer
                .write_with(|tx| {
                    let n = self.with(|i| i.slots[slot].queue.drain_into(tx));
                    (n, ())
                })
                .await;
            self.space_wake[slot].signal(());
            if r.is_err() {
                return false;
            }
        }
    }

    async fn write_side(&self, writer: &mut TcpWriter<'_>, config: &Config<'_>, slot: usize) {
        loop {
            let (pending, overflowed) = self.with(|i| {
                let s = &i.slots[slot];
                (!s.queue.is_empty(), s.overflowed)
            });
            if overflowed {
                warn!("session {}: outbound queue overflowed, closing", slot);
                self.session_step(slot, |s, _| {
                    s.close_with_error(CloseReason::Rejected, SLOW_CONSUMER)
                });
                return;
            }
            if !pending {
                // Heart-beats are queued by the read side, whose deadline is the session's.
                self.session_wake[slot].wait().await;
                continue;
            }
            if !matches!(
                with_timeout(config.write_timeout, self.drain(writer, slot)).await,
                Ok(true)
            ) {
                return;
            }
            self.with(|i| {
                if let Some(s) = i.slots[slot].session.as_mut() {
                    s.handle_transmitted(now());
                }
            });
        }
    }

    /// Hands one frame from a local device to its session and acts on what it accepted.
    fn on_frame(&self, dialect: Dialect, slot: usize, frame: &Frame<'_>) -> Flow {
        let flow = self.session_step(slot, |session, i| {
            // A refusal: the session's ERROR (with the frame's receipt-id), then close.
            let refusal = match session.handle_frame(now(), frame) {
                Ok(Some(Event::Connect(_))) => {
                    debug!("session {}: connected", slot);
                    None
                }
                Ok(Some(Event::Send { destination })) if frame.transaction().is_none() => {
                    i.store_send(dialect, frame, destination).err()
                }
                Ok(Some(Event::Send { .. }))
                | Ok(Some(Event::Begin { .. }))
                | Ok(Some(Event::Commit { .. }))
                | Ok(Some(Event::Abort { .. })) => Some(NO_TRANSACTIONS),
                Ok(Some(Event::Subscribe {
                    id, destination, ..
                })) => i
                    .subs
                    .subscribe(slot, id, destination)
                    .err()
                    .map(|e| e.message()),
                Ok(Some(Event::Unsubscribe { id })) => {
                    i.subs.unsubscribe(slot, id).err().map(|e| e.message())
                }
                // The upstream subscription is `ack:auto`: acknowledgements end here.
                Ok(Some(Event::Ack { .. } | Event::Nack { .. } | Event::Disconnect))
                | Ok(None)
                | Err(_) => None,
            };
            if let Some(message) = refusal {
                session.close_with_error(CloseReason::Rejected, message);
            }
        });
        // The ring or the subscription table may have changed.
        self.upstream_wake.signal(());
        flow
    }

    /// Answers connections beyond the `N` slots with ERROR `Too many sessions`. It
    /// listens only while every slot is busy, so it never takes a connection a free slot
    /// could have served.
    pub async fn run_rejector(
        &self,
        stack: Stack<'_>,
        config: &Config<'_>,
        res: &mut RejectResources,
    ) -> ! {
        loop {
            while !self.all_busy() {
                self.slots_changed.wait().await;
            }
            let mut socket = TcpSocket::new(stack, &mut res.rx, &mut res.tx);
            let accepted = select(socket.accept(config.listen_port), async {
                while self.all_busy() {
                    self.slots_changed.wait().await;
                }
            })
            .await;
            match accepted {
                Either::First(Ok(())) => {
                    self.with(|i| i.stats.rejected_sessions += 1);
                    info!("rejected a connection: too many sessions");
                    let _ = with_timeout(config.write_timeout, async {
                        socket.write_all(TOO_MANY_SESSIONS).await?;
                        socket.flush().await
                    })
                    .await;
                    socket.close();
                    // Read what the device still sends (its CONNECT) until it closes, so
                    // the ERROR is not cut short by a reset.
                    let mut sink = [0u8; 32];
                    let _ = with_timeout(Duration::from_secs(1), async {
                        while let Ok(n) = socket.read(&mut sink).await {
                            if n == 0 {
                                break;
                            }
                        }
                    })
                    .await;
                    socket.abort();
                    let _ = with_timeout(Duration::from_millis(100), socket.flush()).await;
                }
                Either::First(Err(_)) => Timer::after_millis(100).await,
                Either::Second(()) => socket.abort(),
            }
        }
    }

    fn all_busy(&self) -> bool {
        self.with(|i| i.slots.iter().all(|s| s.is_busy()))
    }
}

fn ms(d: Duration) -> u32 {
    d.as_millis().min(u64::from(u32::MAX)) as u32
}

impl<const N: usize, const QUEUE: usize, const STORE: usize, const FRAME: usize>
    Inner<N, QUEUE, STORE, FRAME>
{
    /// Moves what `session` has to send (CONNECTED, RECEIPTs, ERROR, heart-beats) into
    /// slot `slot`'s queue, in order. A control frame that does not fit marks the slot a
    /// slow consumer, except the ERROR, which makes room by dropping what waits.
    fn transmit(&mut self, slot: usize, session: &mut DeviceSession) {
        let s = &mut self.slots[slot];
        while let Ok(Some(n)) = session.poll_transmit(now(), &mut self.scratch) {
            if s.queue.push(&[&self.scratch[..n]]).is_ok() {
                continue;
            }
            if session.is_closed() {
                // That was the ERROR: it must get out, and nothing is queued behind it.
                s.queue.clear();
                let _ = s.queue.push(&[&self.scratch[..n]]);
                s.overflowed = true;
            } else {
                s.mark_slow_consumer(&mut self.stats);
            }
        }
    }

    /// Puts a device's accepted SEND into the store-and-forward ring, in the broker's
    /// destination form. Its `receipt` stays here (the session answers it); the
    /// upstream copy gets the edge node's own.
    fn store_send(
        &mut self,
        dialect: Dialect,
        frame: &Frame<'_>,
        destination: &[u8],
    ) -> Result<(), &'static str> {
        let mut kept = [Header::EMPTY; MAX_HEADERS];
        let mut k = 0;
        for h in frame.headers.iter().filter(|h| h.name != b"receipt") {
            kept[k] = *h;
            k += 1;
        }
        let upstream = Frame {
            command: Command::Send,
            headers: &kept[..k],
            body: frame.body,
            form: frame.form,
        };
        let encoded = match dialect {
            Dialect::Generic => encode(
                &upstream,
                EncodeOptions::passthrough(Version::V1_2),
                &mut self.scratch,
            )
            .ok(),
            // relay-core maps the destination to the broker's form.
            _ => relay_frame(
                &upstream,
                Some(destination),
                dialect,
                Version::V1_2,
                &mut self.scratch,
            )
            .ok(),
        };
        let n = encoded.ok_or("Frame too large to forward")?;
        // Stored without the command line; the upstream writer puts it back with a receipt.
        let evicted = self
            .store
            .push(&self.scratch[b"SEND\n".len()..n])
            .map_err(|_| "Frame too large for the store-and-forward ring")?;
        self.stats.stored += 1;
        if evicted > 0 {
            warn!("store-and-forward ring full: dropped {} oldest", evicted);
        }
        Ok(())
    }
}
