//! Local sessions: accepting device connections into a fixed slot, the STOMP rules the
//! edge node applies to them, and the rejector that answers connection `N+1` with
//! ERROR `Too many sessions`.
//!
//! Invariants: a session sends nothing but ERROR before its CONNECTED; every protocol
//! error is an ERROR frame with a `message` header (and the offending frame's
//! `receipt-id`) followed by close; a session's subscriptions are released when it ends,
//! however it ends; nothing one device does can block or close another session.

use embassy_futures::select::{select, Either};
use embassy_net::tcp::{TcpReader, TcpSocket, TcpWriter};
use embassy_net::Stack;
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_time::{with_deadline, with_timeout, Duration, Instant, Timer};
use embedded_io_async::Write as _;
use stomp_relay_codec::{
    encode, Command, Decoded, Decoder, EncodeOptions, Frame, Header, HeaderForm, HeaderValue,
    Limits, Status, Version,
};

use stomp_relay_core::dialect::Dialect;
use stomp_relay_core::relay::relay_frame;
use stomp_relay_core::session::{CloseReason, ProtocolError, Versions, ERROR_MESSAGE_MAX};

use crate::edge::{
    Edge, Inner, RejectResources, SessionResources, MAX_DESTINATION, MAX_HEADERS, MAX_SUB_ID,
};
use crate::negotiate::{self, fmt_u32, HeartBeats};
use crate::Config;

/// The ERROR frame a connection beyond the `N` slots receives before it is closed.
pub const TOO_MANY_SESSIONS: &[u8] = b"ERROR\nmessage:Too many sessions\ncontent-type:text/plain\ncontent-length:17\n\nToo many sessions\0";

/// The ERROR `message` for a device that cannot keep up with its MESSAGEs.
pub const SLOW_CONSUMER: &str = "Slow consumer: outbound queue overflowed";

/// What the read side decided after a frame.
enum Flow {
    Continue,
    Close,
}

/// Read-side state of one connection.
struct Conn {
    version: Option<Version>,
    heart_beats: HeartBeats,
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
        loop {
            let mut socket = TcpSocket::new(stack, &mut res.rx, &mut res.tx);
            if socket.accept(config.listen_port).await.is_err() {
                Timer::after_millis(100).await;
                continue;
            }
            self.with(|i| {
                let s = &mut i.slots[slot];
                s.busy = true;
                s.overflowed = false;
                s.version = Version::V1_2;
                s.heart_beat = None;
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
                s.busy = false;
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
        let mut conn = Conn {
            version: None,
            heart_beats: HeartBeats::NONE,
        };
        // The writer only learns the heart-beat interval after CONNECT; it re-reads it
        // from the slot on every wake-up, so the reader publishes it there.
        select(
            self.read_side(&mut reader, config, slot, buf, &mut conn),
            self.write_side(&mut writer, config, slot),
        )
        .await;
        // Whatever is queued (an ERROR, a RECEIPT for DISCONNECT) still goes out.
        let _ = with_timeout(config.write_timeout, self.drain(&mut writer, slot)).await;
    }

    async fn read_side(
        &self,
        reader: &mut TcpReader<'_>,
        config: &Config<'_>,
        slot: usize,
        buf: &mut [u8],
        conn: &mut Conn,
    ) {
        let mut filled = 0;
        // CONNECT must complete within `connect_timeout` of the accept, however slowly
        // its bytes trickle in.
        let connect_deadline = Instant::now() + config.connect_timeout;
        let limits = Limits {
            max_frame_size: buf.len(),
            max_headers: MAX_HEADERS,
            max_header_line: buf.len(),
            max_body: buf.len(),
        };
        loop {
            let mut start = 0;
            loop {
                let decoder = Decoder::with_limits(conn.version.unwrap_or(Version::V1_2), limits);
                let mut headers = [Header::EMPTY; MAX_HEADERS];
                match decoder.decode(&buf[start..filled], &mut headers) {
                    Ok(Status::Complete((Decoded::HeartBeat, n))) => start += n,
                    Ok(Status::Complete((Decoded::Frame(frame), n))) => {
                        start += n;
                        if let Flow::Close = self.on_frame(config, slot, conn, &frame) {
                            return;
                        }
                    }
                    Ok(Status::Partial) => break,
                    Err(e) => {
                        self.with(|i| {
                            push_error(
                                i,
                                slot,
                                conn.version,
                                format_args!("Invalid frame: {}", e),
                                None,
                            )
                        });
                        return;
                    }
                }
            }
            buf.copy_within(start..filled, 0);
            filled -= start;

            let deadline = match conn.version {
                None => Some(connect_deadline),
                Some(_) => conn
                    .heart_beats
                    .read_deadline(config.heartbeat_grace)
                    .map(|d| Instant::now() + d),
            };
            let read = reader.read(&mut buf[filled..]);
            let n = match deadline {
                Some(d) => match with_deadline(d, read).await {
                    Ok(r) => r,
                    Err(_) => {
                        let reason = match conn.version {
                            None => CloseReason::ConnectTimeout,
                            Some(_) => CloseReason::HeartbeatTimeout,
                        };
                        self.with(|i| push_error(i, slot, conn.version, reason, None));
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
        let mut last_write = Instant::now();
        loop {
            let (pending, overflowed, hb) = self.with(|i| {
                let s = &i.slots[slot];
                (!s.queue.is_empty(), s.overflowed, s.heart_beat)
            });
            if overflowed {
                warn!("session {}: outbound queue overflowed, closing", slot);
                self.with(|i| {
                    let version = i.slots[slot].version;
                    push_error(i, slot, Some(version), SLOW_CONSUMER, None);
                    // Nothing more is queued behind the ERROR.
                    i.slots[slot].overflowed = true;
                });
                return;
            }
            if pending {
                match with_timeout(config.write_timeout, self.drain(writer, slot)).await {
                    Ok(true) => last_write = Instant::now(),
                    _ => return,
                }
                continue;
            }
            match hb {
                Some(every) => {
                    let due = last_write + every;
                    if Instant::now() >= due {
                        if writer.write_all(b"\n").await.is_err() || writer.flush().await.is_err() {
                            return;
                        }
                        last_write = Instant::now();
                        continue;
                    }
                    let _ =
                        with_timeout(due - Instant::now(), self.session_wake[slot].wait()).await;
                }
                None => self.session_wake[slot].wait().await,
            }
        }
    }

    /// Applies one frame from a local device.
    fn on_frame(
        &self,
        config: &Config<'_>,
        slot: usize,
        conn: &mut Conn,
        frame: &Frame<'_>,
    ) -> Flow {
        let mut receipt_buf = [0u8; 64];
        let receipt = frame.receipt().and_then(|v| plain(v, &mut receipt_buf));
        let flow = self.with(|i| {
            let Some(version) = conn.version else {
                return self.on_connect(i, config, slot, conn, frame);
            };
            match frame.command {
                Command::Connect | Command::Stomp => {
                    push_error(
                        i,
                        slot,
                        Some(version),
                        ProtocolError::AlreadyConnected,
                        receipt,
                    );
                    Flow::Close
                }
                Command::Send => self.on_send(i, slot, version, config.dialect, frame, receipt),
                Command::Subscribe => self.on_subscribe(i, slot, version, frame, receipt),
                Command::Unsubscribe => {
                    let mut id_buf = [0u8; MAX_SUB_ID];
                    let id = frame
                        .id()
                        .or_else(|| frame.destination())
                        .and_then(|v| plain(v, &mut id_buf));
                    let Some(id) = id else {
                        push_error(
                            i,
                            slot,
                            Some(version),
                            ProtocolError::MissingHeader(Command::Unsubscribe, "id"),
                            receipt,
                        );
                        return Flow::Close;
                    };
                    match i.subs.unsubscribe(slot, id) {
                        Ok(_) => {
                            self.upstream_wake.signal(());
                            push_receipt(i, slot, version, receipt)
                        }
                        Err(e) => {
                            push_error(i, slot, Some(version), e.message(), receipt);
                            Flow::Close
                        }
                    }
                }
                // The upstream subscription is `ack:auto`: acknowledgements end here.
                Command::Ack | Command::Nack => push_receipt(i, slot, version, receipt),
                Command::Begin | Command::Commit | Command::Abort => {
                    push_error(
                        i,
                        slot,
                        Some(version),
                        "Transactions are not supported by the edge node",
                        receipt,
                    );
                    Flow::Close
                }
                Command::Disconnect => {
                    push_receipt(i, slot, version, receipt);
                    Flow::Close
                }
                other => {
                    push_error(
                        i,
                        slot,
                        Some(version),
                        ProtocolError::ServerCommand(other),
                        receipt,
                    );
                    Flow::Close
                }
            }
        });
        if matches!(flow, Flow::Continue) {
            self.session_wake[slot].signal(());
        }
        flow
    }

    fn on_connect(
        &self,
        i: &mut Inner<N, QUEUE, STORE, FRAME>,
        config: &Config<'_>,
        slot: usize,
        conn: &mut Conn,
        frame: &Frame<'_>,
    ) -> Flow {
        if !matches!(frame.command, Command::Connect | Command::Stomp) {
            push_error(
                i,
                slot,
                None,
                ProtocolError::NotConnected(frame.command),
                None,
            );
            return Flow::Close;
        }
        let Some(version) = negotiate::version(frame.header(b"accept-version").map(|v| v.raw()))
        else {
            // As the core session does: the versions spoken, as the spec's example.
            let mut listed = heapless::String::<16>::new();
            let _ = core::fmt::write(&mut listed, format_args!("{}", Versions::ALL));
            push_error_with(
                i,
                slot,
                None,
                ProtocolError::UnsupportedVersion(Versions::ALL),
                None,
                Some(Header::new(b"version", listed.as_bytes())),
            );
            return Flow::Close;
        };
        let Some(theirs) = negotiate::heart_beat(frame.header(b"heart-beat").map(|v| v.raw()))
        else {
            push_error(
                i,
                slot,
                None,
                ProtocolError::InvalidHeader("heart-beat"),
                None,
            );
            return Flow::Close;
        };
        let heart_beats = if version == Version::V1_0 {
            HeartBeats::NONE
        } else {
            HeartBeats::negotiate(config.local_heartbeat, theirs)
        };
        conn.version = Some(version);
        conn.heart_beats = heart_beats;
        i.slots[slot].version = version;
        i.slots[slot].heart_beat = heart_beats.beat_after();

        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u32).unwrap_or(0);
        let (mut a, mut b) = ([0u8; 10], [0u8; 10]);
        let send = fmt_u32(ms(heart_beats.send_every), &mut a);
        let expect = fmt_u32(ms(heart_beats.expect_every), &mut b);
        let mut hb = [0u8; 21];
        hb[..send.len()].copy_from_slice(send);
        hb[send.len()] = b',';
        hb[send.len() + 1..send.len() + 1 + expect.len()].copy_from_slice(expect);
        let hb = &hb[..send.len() + 1 + expect.len()];
        let headers = [
            Header::new(b"version", version.as_str().as_bytes()),
            Header::new(b"heart-beat", hb),
            Header::new(b"server", config.server_name.as_bytes()),
        ];
        // STOMP 1.0 knows neither `version` nor `heart-beat`.
        let headers = if version == Version::V1_0 {
            &headers[2..]
        } else {
            &headers[..]
        };
        i.queue_frame(
            slot,
            &Frame::new(Command::Connected, headers, b""),
            EncodeOptions::new(version),
        );
        debug!("session {}: connected", slot);
        Flow::Continue
    }

    fn on_send(
        &self,
        i: &mut Inner<N, QUEUE, STORE, FRAME>,
        slot: usize,
        version: Version,
        dialect: Dialect,
        frame: &Frame<'_>,
        receipt: Option<&[u8]>,
    ) -> Flow {
        if frame.destination().is_none() {
            push_error(
                i,
                slot,
                Some(version),
                ProtocolError::MissingHeader(Command::Send, "destination"),
                receipt,
            );
            return Flow::Close;
        }
        if frame.transaction().is_some() {
            push_error(
                i,
                slot,
                Some(version),
                "Transactions are not supported by the edge node",
                receipt,
            );
            return Flow::Close;
        }
        // The device's receipt is answered here; the upstream copy gets the edge node's own.
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
                &mut i.scratch,
            )
            .ok(),
            // relay-core maps the destination to the broker's form.
            _ => {
                let mut dest_buf = [0u8; 2 * MAX_DESTINATION];
                frame
                    .destination()
                    .and_then(|d| plain(d, &mut dest_buf))
                    .and_then(|dest| {
                        relay_frame(
                            &upstream,
                            Some(dest),
                            dialect,
                            Version::V1_2,
                            &mut i.scratch,
                        )
                        .ok()
                    })
            }
        };
        let Some(n) = encoded else {
            push_error(
                i,
                slot,
                Some(version),
                "Frame too large to forward",
                receipt,
            );
            return Flow::Close;
        };
        // Stored without the command line; the upstream writer puts it back with a receipt.
        match i.store.push(&i.scratch[b"SEND\n".len()..n]) {
            Ok(evicted) => {
                i.stats.stored += 1;
                if evicted > 0 {
                    warn!("store-and-forward ring full: dropped {} oldest", evicted);
                }
            }
            Err(_) => {
                push_error(
                    i,
                    slot,
                    Some(version),
                    "Frame too large for the store-and-forward ring",
                    receipt,
                );
                return Flow::Close;
            }
        }
        self.upstream_wake.signal(());
        push_receipt(i, slot, version, receipt)
    }

    fn on_subscribe(
        &self,
        i: &mut Inner<N, QUEUE, STORE, FRAME>,
        slot: usize,
        version: Version,
        frame: &Frame<'_>,
        receipt: Option<&[u8]>,
    ) -> Flow {
        let mut dest_buf = [0u8; MAX_DESTINATION];
        let mut id_buf = [0u8; MAX_SUB_ID];
        let Some(destination) = frame.destination() else {
            push_error(
                i,
                slot,
                Some(version),
                ProtocolError::MissingHeader(Command::Subscribe, "destination"),
                receipt,
            );
            return Flow::Close;
        };
        let Some(destination) = plain(destination, &mut dest_buf) else {
            push_error(
                i,
                slot,
                Some(version),
                ProtocolError::HeaderTooLong("destination", MAX_DESTINATION),
                receipt,
            );
            return Flow::Close;
        };
        // STOMP 1.0 makes the id optional; the destination then names the subscription.
        let id = match frame.id() {
            Some(v) => plain(v, &mut id_buf),
            None if version == Version::V1_0 => Some(destination),
            None => {
                push_error(
                    i,
                    slot,
                    Some(version),
                    ProtocolError::MissingHeader(Command::Subscribe, "id"),
                    receipt,
                );
                return Flow::Close;
            }
        };
        let Some(id) = id else {
            push_error(
                i,
                slot,
                Some(version),
                ProtocolError::HeaderTooLong("id", MAX_SUB_ID),
                receipt,
            );
            return Flow::Close;
        };
        match i.subs.subscribe(slot, id, destination) {
            Ok(_) => {
                self.upstream_wake.signal(());
                push_receipt(i, slot, version, receipt)
            }
            Err(e) => {
                push_error(i, slot, Some(version), e.message(), receipt);
                Flow::Close
            }
        }
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
        self.with(|i| i.slots.iter().all(|s| s.busy))
    }
}

/// A `fmt::Write` that keeps what fits and drops the rest.
struct Truncate<'a, const L: usize>(&'a mut heapless::String<L>);

impl<const L: usize> core::fmt::Write for Truncate<'_, L> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            if self.0.push(c).is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// The unescaped bytes of `v` (or `None` if they do not fit `buf`).
pub(crate) fn plain<'o>(v: HeaderValue<'o>, buf: &'o mut [u8]) -> Option<&'o [u8]> {
    if let Some(p) = v.as_plain() {
        return Some(p);
    }
    v.copy_unescaped(buf).ok()
}

fn push_receipt<const N: usize, const Q: usize, const S: usize, const F: usize>(
    i: &mut Inner<N, Q, S, F>,
    slot: usize,
    version: Version,
    receipt: Option<&[u8]>,
) -> Flow {
    if let Some(r) = receipt {
        let headers = [Header::new(b"receipt-id", r)];
        i.queue_frame(
            slot,
            &Frame::new(Command::Receipt, &headers, b""),
            EncodeOptions::new(version),
        );
    }
    Flow::Continue
}

fn push_error<const N: usize, const Q: usize, const S: usize, const F: usize>(
    i: &mut Inner<N, Q, S, F>,
    slot: usize,
    version: Option<Version>,
    message: impl core::fmt::Display,
    receipt: Option<&[u8]>,
) -> Flow {
    push_error_with(i, slot, version, message, receipt, None)
}

/// [`push_error`] with one more header.
fn push_error_with<const N: usize, const Q: usize, const S: usize, const F: usize>(
    i: &mut Inner<N, Q, S, F>,
    slot: usize,
    version: Option<Version>,
    message: impl core::fmt::Display,
    receipt: Option<&[u8]>,
    extra: Option<Header<'_>>,
) -> Flow {
    // relay-core's ERROR texts, cut at its limit like the core session does.
    let mut text = heapless::String::<ERROR_MESSAGE_MAX>::new();
    let _ = core::fmt::write(&mut Truncate(&mut text), format_args!("{}", message));
    let message = text.as_str();
    warn!("session {}: ERROR {}", slot, message);
    let mut headers = [
        Header::new(b"message", message.as_bytes()),
        Header::new(b"content-type", b"text/plain"),
        Header::EMPTY,
        Header::EMPTY,
    ];
    let mut n = 2;
    for h in [receipt.map(|r| Header::new(b"receipt-id", r)), extra]
        .into_iter()
        .flatten()
    {
        headers[n] = h;
        n += 1;
    }
    let frame = Frame {
        command: Command::Error,
        headers: &headers[..n],
        body: message.as_bytes(),
        form: HeaderForm::Plain,
    };
    // An ERROR must get out even past a full queue: make room by dropping what waits.
    let version = version.unwrap_or(Version::V1_2);
    if !i.queue_frame(slot, &frame, EncodeOptions::new(version)) {
        i.slots[slot].queue.clear();
        i.slots[slot].overflowed = false;
        i.queue_frame(slot, &frame, EncodeOptions::new(version));
    }
    Flow::Close
}
