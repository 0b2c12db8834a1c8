//! One upstream STOMP connection on tokio: TCP (and TLS) connect across the `--relay`
//! addresses, the CONNECT/CONNECTED handshake, then a reader task and a writer task.
//!
//! The writer owns the write half: it batches queued frames into one write, and sends a
//! heart-beat EOL whenever nothing was written for the negotiated interval. The reader
//! owns the read half: it decodes frames into [`OwnedFrame`]s for an [`Inbound`] sink and
//! declares the connection dead when the broker stays silent for three of its
//! heart-beat intervals. Heart-beats with the broker are thus independent of the client
//! side: a client sending only locally handled frames never lets the broker time out.
//!
//! Invariant: the sink's [`Inbound::closed`] is called exactly once, after its last
//! [`Inbound::frame`], and says whether the close was asked for ([`Upstream::disconnect`]
//! or the sink returning [`Flow::Stop`]) or the connection was lost.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stomp_relay_codec::{
    Command, Decoded, Decoder, EncodeOptions, Header, Limits, Status, Version,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use crate::config::RelayAddr;
use crate::frame::OwnedFrame;

/// Any byte stream to the broker (plain TCP or TLS over TCP).
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Most headers accepted in one frame from the broker.
const MAX_HEADERS: usize = 128;
/// How long a requested DISCONNECT may take before the connection is dropped anyway.
const DISCONNECT_GRACE: Duration = Duration::from_secs(5);

/// Where and how to connect: the addresses in failover order and the TLS configuration.
pub struct Target {
    addrs: Vec<RelayAddr>,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
    /// Index of the address that answered last; the next attempt starts there.
    preferred: AtomicUsize,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addrs", &self.addrs)
            .field("preferred", &self.preferred)
            .finish()
    }
}

/// A completed handshake: the broker answered CONNECTED.
pub struct Handshake {
    stream: Box<dyn Io>,
    leftover: Vec<u8>,
    /// The negotiated STOMP version.
    pub version: Version,
    /// Our heart-beat period towards the broker, if any.
    pub send_every: Option<Duration>,
    /// The longest the broker may stay silent, if it heart-beats at all.
    pub read_timeout: Option<Duration>,
    /// Index into the address list of the broker that answered.
    pub addr_index: usize,
    /// The broker's `server` header.
    pub server: Option<String>,
}

impl Target {
    /// A target over `addrs` (non-empty); `tls` is needed when any address uses TLS.
    pub fn new(addrs: Vec<RelayAddr>, tls: Option<Arc<ClientConfig>>, timeout: Duration) -> Self {
        Target {
            addrs,
            tls,
            timeout,
            preferred: AtomicUsize::new(0),
        }
    }

    /// The address index tried first.
    pub fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }

    /// `host:port` of address `i`.
    pub fn describe(&self, i: usize) -> String {
        let a = &self.addrs[i % self.addrs.len()];
        format!(
            "{}://{}:{}",
            if a.tls { "stomps" } else { "stomp" },
            a.host,
            a.port
        )
    }

    /// Tries every address once, starting with the preferred one, and returns the
    /// first completed handshake. The error lists why each address failed.
    pub async fn connect(
        &self,
        connect: &OwnedFrame,
        heartbeat: (u32, u32),
    ) -> Result<Handshake, String> {
        let start = self.preferred();
        let mut errors = Vec::new();
        for k in 0..self.addrs.len() {
            let i = (start + k) % self.addrs.len();
            match tokio::time::timeout(self.timeout, self.connect_one(i, connect, heartbeat)).await
            {
                Ok(Ok(h)) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(h);
                }
                Ok(Err(e)) => errors.push(format!("{}: {e}", self.describe(i))),
                Err(_) => errors.push(format!(
                    "{}: no CONNECTED within {:?}",
                    self.describe(i),
                    self.timeout
                )),
            }
        }
        Err(errors.join("; "))
    }

    async fn connect_one(
        &self,
        i: usize,
        connect: &OwnedFrame,
        heartbeat: (u32, u32),
    ) -> Result<Handshake, String> {
        let addr = &self.addrs[i];
        let tcp = TcpStream::connect((addr.host.as_str(), addr.port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let mut stream: Box<dyn Io> = if addr.tls {
            let config = self.tls.clone().ok_or("TLS is not configured")?;
            let name = rustls_pki_types::ServerName::try_from(addr.host.clone())
                .map_err(|e| format!("server name: {e}"))?;
            Box::new(
                TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?,
            )
        } else {
            Box::new(tcp)
        };

        let mut out = Vec::new();
        // CONNECT and CONNECTED are never escaped, in any version.
        connect
            .encode_into(EncodeOptions::passthrough(Version::V1_0), &mut out)
            .map_err(|e| format!("CONNECT: {e}"))?;
        stream.write_all(&out).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;

        let decoder = Decoder::with_limits(Version::V1_0, Limits::DEFAULT);
        let mut buf = Vec::with_capacity(4096);
        loop {
            let mut hs = [Header::EMPTY; MAX_HEADERS];
            match decoder.decode(&buf, &mut hs) {
                Ok(Status::Complete((Decoded::HeartBeat, n))) => {
                    buf.drain(..n);
                    continue;
                }
                Ok(Status::Complete((Decoded::Frame(f), n))) => {
                    let reply = OwnedFrame::from_frame(&f);
                    buf.drain(..n);
                    return match reply.command {
                        Command::Connected => Ok(handshake(stream, buf, &reply, heartbeat, i)),
                        Command::Error => Err(format!(
                            "broker refused CONNECT: {}",
                            reply
                                .header_str("message")
                                .unwrap_or("ERROR without message")
                        )),
                        other => Err(format!("expected CONNECTED, got {}", other.as_str())),
                    };
                }
                Ok(Status::Partial) => {}
                Err(e) => return Err(format!("bad reply to CONNECT: {e}")),
            }
            let n = stream.read_buf(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed before CONNECTED".into());
            }
        }
    }
}

fn handshake(
    stream: Box<dyn Io>,
    leftover: Vec<u8>,
    reply: &OwnedFrame,
    (cx, cy): (u32, u32),
    i: usize,
) -> Handshake {
    let version = reply
        .header("version")
        .and_then(Version::parse)
        .unwrap_or(Version::V1_0);
    let (sx, sy) = reply
        .header_str("heart-beat")
        .and_then(|v| v.split_once(','))
        .and_then(|(a, b)| Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?)))
        .unwrap_or((0, 0));
    let every = |ours: u32, theirs: u32| {
        (ours > 0 && theirs > 0).then(|| Duration::from_millis(u64::from(ours.max(theirs))))
    };
    Handshake {
        stream,
        leftover,
        version,
        send_every: every(cx, sy),
        // Three missed beats: network jitter and a busy broker must not kill a session.
        read_timeout: every(cy, sx).map(|d| d * 3),
        addr_index: i,
        server: reply.header_str("server").map(str::to_owned),
    }
}

/// The CONNECT frame for the broker: `login`/`passcode` of the relay, the virtual host
/// (if any), our heart-beats, plus `extra` headers (e.g. the client's `client-id`).
pub fn connect_frame(
    login: &str,
    passcode: &str,
    virtual_host: Option<&str>,
    heartbeat: (u32, u32),
    extra: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
) -> OwnedFrame {
    let mut f = OwnedFrame::new(Command::Connect)
        .with_header("accept-version", "1.0,1.1,1.2")
        .with_header("login", login)
        .with_header("passcode", passcode)
        .with_header("heart-beat", format!("{},{}", heartbeat.0, heartbeat.1));
    if let Some(h) = virtual_host {
        f.push_header("host", h);
    }
    for (n, v) in extra {
        f.headers.push((n, v));
    }
    f
}

/// What the reader does after handing a frame to the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Close the connection (counts as requested).
    Stop,
}

/// Why an upstream connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// We asked for it (DISCONNECT or the sink stopping).
    Requested,
    /// The broker went away, timed out or sent garbage; the text says which.
    Lost(String),
}

/// Receives what the broker sends on one connection (runs on the reader task).
pub trait Inbound: Send + 'static {
    /// A frame from the broker (MESSAGE, RECEIPT, ERROR).
    fn frame(&mut self, frame: OwnedFrame) -> Flow;
    /// The connection ended; called once, last.
    fn closed(&mut self, why: Closed);
}

enum Out {
    Frame(OwnedFrame),
    Disconnect(Option<String>),
}

struct State {
    requested: AtomicBool,
    dead: AtomicBool,
    notify: Notify,
}

impl State {
    fn kill(&self) {
        self.dead.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// The sending side of a running upstream connection. Dropping every clone sends
/// DISCONNECT and closes the connection.
#[derive(Clone)]
pub struct Upstream {
    tx: mpsc::UnboundedSender<Out>,
    state: Arc<State>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Upstream {
    /// Queues a frame for the broker; `Err` gives it back once the connection is gone.
    pub fn send(&self, frame: OwnedFrame) -> Result<(), OwnedFrame> {
        if self.is_closed() {
            return Err(frame);
        }
        self.tx.send(Out::Frame(frame)).map_err(|e| match e.0 {
            Out::Frame(f) => f,
            Out::Disconnect(_) => unreachable!("sent a frame"),
        })
    }

    /// Sends DISCONNECT (with `receipt`, if any) after everything queued, then closes.
    pub fn disconnect(&self, receipt: Option<String>) {
        self.state.requested.store(true, Ordering::Release);
        let _ = self.tx.send(Out::Disconnect(receipt));
    }

    /// Whether the connection has ended (or is ending).
    pub fn is_closed(&self) -> bool {
        self.state.dead.load(Ordering::Acquire) || self.tx.is_closed()
    }
}

/// Starts the reader and writer tasks of a completed handshake.
pub fn spawn(h: Handshake, max_frame_size: usize, sink: impl Inbound) -> Upstream {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(State {
        requested: AtomicBool::new(false),
        dead: AtomicBool::new(false),
        notify: Notify::new(),
    });
    let (rd, wr) = tokio::io::split(h.stream);
    tokio::spawn(write_loop(wr, rx, h.version, h.send_every, state.clone()));
    let limits = Limits {
        max_frame_size,
        max_headers: MAX_HEADERS,
        max_header_line: 64 * 1024,
        max_body: max_frame_size,
    };
    tokio::spawn(read_loop(
        rd,
        h.leftover,
        Decoder::with_limits(h.version, limits),
        h.read_timeout,
        state.clone(),
        sink,
    ));
    Upstream { tx, state }
}

async fn write_loop(
    mut wr: tokio::io::WriteHalf<Box<dyn Io>>,
    mut rx: mpsc::UnboundedReceiver<Out>,
    version: Version,
    send_every: Option<Duration>,
    state: Arc<State>,
) {
    let opts = EncodeOptions::passthrough(version);
    let mut buf = Vec::with_capacity(8192);
    let beat = send_every.unwrap_or(Duration::from_secs(3600));
    let mut disconnect = None;
    'outer: loop {
        buf.clear();
        let first = tokio::select! {
            item = rx.recv() => item,
            _ = tokio::time::sleep(beat) => {
                if send_every.is_some() {
                    buf.push(b'\n');
                }
                if wr.write_all(&buf).await.is_err() { break; }
                continue;
            }
            _ = dead(&state) => break,
        };
        let Some(mut item) = first else {
            // Every handle dropped: leave politely.
            disconnect = Some(None);
            break;
        };
        // Batch whatever else is queued into the same write.
        loop {
            match item {
                Out::Frame(f) => {
                    if let Err(e) = f.encode_into(opts, &mut buf) {
                        tracing::warn!(error = %e, "relay: dropped a frame the codec cannot encode");
                    }
                }
                Out::Disconnect(r) => {
                    disconnect = Some(r);
                    break;
                }
            }
            if buf.len() >= 256 * 1024 {
                break;
            }
            match rx.try_recv() {
                Ok(next) => item = next,
                Err(_) => break,
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            break 'outer;
        }
        if disconnect.is_some() {
            break;
        }
    }
    if let Some(receipt) = disconnect {
        state.requested.store(true, Ordering::Release);
        let mut f = OwnedFrame::new(Command::Disconnect);
        if let Some(r) = receipt {
            f.push_header("receipt", r);
        }
        buf.clear();
        if f.encode_into(opts, &mut buf).is_ok() {
            let _ = tokio::time::timeout(DISCONNECT_GRACE, async {
                let _ = wr.write_all(&buf).await;
                let _ = wr.flush().await;
                // The broker answers RECEIPT and closes; the reader sees that.
                dead(&state).await;
            })
            .await;
        }
    }
    let _ = wr.shutdown().await;
    state.kill();
}

async fn read_loop(
    mut rd: tokio::io::ReadHalf<Box<dyn Io>>,
    mut buf: Vec<u8>,
    decoder: Decoder,
    read_timeout: Option<Duration>,
    state: Arc<State>,
    mut sink: impl Inbound,
) {
    let why = loop {
        // Hand over every complete frame already buffered.
        let mut used = 0;
        let mut stop = None;
        loop {
            let mut hs = [Header::EMPTY; MAX_HEADERS];
            match decoder.decode(&buf[used..], &mut hs) {
                Ok(Status::Complete((Decoded::HeartBeat, n))) => used += n,
                Ok(Status::Complete((Decoded::Frame(f), n))) => {
                    let frame = OwnedFrame::from_frame(&f);
                    used += n;
                    if sink.frame(frame) == Flow::Stop {
                        stop = Some(Closed::Requested);
                        break;
                    }
                }
                Ok(Status::Partial) => break,
                Err(e) => {
                    stop = Some(Closed::Lost(format!("bad frame from broker: {e}")));
                    break;
                }
            }
        }
        buf.drain(..used);
        if let Some(why) = stop {
            break why;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let limit = if state.requested.load(Ordering::Acquire) {
            Some(DISCONNECT_GRACE)
        } else {
            read_timeout
        };
        let read = async {
            tokio::select! {
                r = rd.read_buf(&mut buf) => Some(r),
                _ = dead(&state) => None,
            }
        };
        let r = match limit {
            Some(t) => match tokio::time::timeout(t, read).await {
                Ok(r) => r,
                Err(_) => break Closed::Lost(format!("no data from the broker for {t:?}")),
            },
            None => read.await,
        };
        match r {
            None => break Closed::Requested,
            Some(Ok(0)) => break Closed::Lost("broker closed the connection".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => break Closed::Lost(e.to_string()),
        }
    };
    let why = if state.requested.load(Ordering::Acquire) {
        Closed::Requested
    } else {
        why
    };
    if why == Closed::Requested {
        state.requested.store(true, Ordering::Release);
    }
    state.kill();
    sink.closed(why);
}

/// Resolves once the connection is dead (registered before the check, so a kill between
/// the check and the wait is not missed).
async fn dead(state: &State) {
    loop {
        let notified = state.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if state.dead.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}
