//! One upstream broker connection on tokio: the thin driver around relay-core's sans-IO
//! [`Upstream`] state machine.
//!
//! The state machine decides everything about the connection: which `--relay` address
//! to try and when (backoff with jitter between rounds, no delay between the addresses
//! of a round), the CONNECT frame with the relay credentials, heart-beats negotiated
//! with the broker, the CONNECTED and read timeouts, DISCONNECT. This driver only moves
//! bytes and time: it opens the TCP (and TLS) transport the machine names, feeds it what
//! the broker sends, writes what it wants written, sleeps until its next deadline, and
//! writes the frames the relay forwards while the machine says it is connected.
//!
//! One task per connection (per client session in per-session mode, one per instance
//! for the system or shared connection, which reconnect for as long as they live).
//!
//! Invariants: nothing but CONNECT is written before the broker's CONNECTED (forwarded
//! frames wait in the channel, in order); the sink sees `connected`/`lost` in the order
//! the machine reports them, and `closed` exactly once, last.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use stomp_relay_codec::{Decoded, Decoder, EncodeOptions, Header, Limits, Status};
use stomp_relay_core::upstream::{
    Credentials, Inbound as CoreInbound, LossReason, Upstream as Machine, UpstreamConfig,
    UpstreamEvent,
};
use stomp_relay_core::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use crate::config::RelayAddr;
use crate::frame::OwnedFrame;

/// A byte stream to the broker (plain TCP or TLS over TCP), with its TCP socket at hand
/// for the options set per read.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {
    fn tcp(&self) -> &TcpStream;
}
impl Io for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}
impl Io for tokio_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// ACKs what the broker sent at once instead of after the kernel's delayed-ACK timer.
/// Brokers write with Nagle's algorithm on (ActiveMQ's `tcpNoDelay` is false by
/// default), so each MESSAGE written while an earlier one is unacknowledged waits for
/// our ACK. On a shared subscriber connection, which carries every delivery of the
/// instance and almost nothing back, that wait capped a windowed fan-out (issue 16:
/// 1.6 of 2 cores busy; with this, 1.8 and about 12% more deliveries/s). Linux clears
/// the flag again on its own, so it is set after every read.
fn ack_promptly(stream: &dyn Io) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket2::SockRef::from(stream.tcp()).set_tcp_quickack(true);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = stream;
}

/// Most headers accepted in one frame from the broker.
const MAX_HEADERS: usize = 128;
/// Control frames (CONNECT with credentials, DISCONNECT) fit this buffer.
const CONTROL_FRAME: usize = 4096;

fn epoch() -> std::time::Instant {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// The core's clock: milliseconds since the first use in this process.
fn now() -> Instant {
    Instant::from_millis(epoch().elapsed().as_millis() as u64)
}

fn to_tokio(at: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(epoch() + Duration::from_millis(at.as_millis()))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(to_tokio(at)).await,
        None => std::future::pending().await,
    }
}

/// Where to connect: the addresses in failover order and the TLS configuration.
pub struct Target {
    addrs: Vec<RelayAddr>,
    tls: Option<Arc<ClientConfig>>,
    /// Bound on opening one transport (TCP connect plus TLS handshake).
    timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addrs", &self.addrs)
            .finish()
    }
}

impl Target {
    /// A target over `addrs` (non-empty); `tls` is needed when any address uses TLS.
    pub fn new(addrs: Vec<RelayAddr>, tls: Option<Arc<ClientConfig>>, timeout: Duration) -> Self {
        Target {
            addrs,
            tls,
            timeout,
        }
    }

    /// How many addresses there are.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether there is no address.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// A target with only address `i` (same TLS settings and timeout).
    pub fn only(&self, i: usize) -> Target {
        Target {
            addrs: vec![self.addrs[i % self.addrs.len()].clone()],
            tls: self.tls.clone(),
            timeout: self.timeout,
        }
    }

    /// `stomp://host:port` of address `i`.
    pub fn describe(&self, i: usize) -> String {
        let a = &self.addrs[i % self.addrs.len()];
        let scheme = if a.tls { "stomps" } else { "stomp" };
        format!("{scheme}://{}:{}", a.host, a.port)
    }

    async fn open(&self, i: usize) -> Result<Box<dyn Io>, OpenError> {
        let addr = &self.addrs[i % self.addrs.len()];
        let open = async {
            let tcp = TcpStream::connect((addr.host.as_str(), addr.port))
                .await
                .map_err(OpenError::Connect)?;
            let _ = tcp.set_nodelay(true);
            if !addr.tls {
                return Ok(Box::new(tcp) as Box<dyn Io>);
            }
            let config = self.tls.clone().ok_or(OpenError::NoTls)?;
            let name = rustls_pki_types::ServerName::try_from(addr.host.clone())
                .map_err(|e| OpenError::ServerName(e.to_string()))?;
            let tls = TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(OpenError::Tls)?;
            Ok(Box::new(tls) as Box<dyn Io>)
        };
        match tokio::time::timeout(self.timeout, open).await {
            Ok(r) => r,
            Err(_) => Err(OpenError::Timeout(self.timeout)),
        }
    }
}

/// Why a transport to a broker address did not open.
#[derive(Debug)]
pub enum OpenError {
    /// TCP connect failed.
    Connect(std::io::Error),
    /// A `stomps://` address without a TLS configuration.
    NoTls,
    /// The host is not a valid TLS server name.
    ServerName(String),
    /// The TLS handshake failed.
    Tls(std::io::Error),
    /// Not open within the connect timeout.
    Timeout(Duration),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Connect(e) => write!(f, "{e}"),
            OpenError::NoTls => f.write_str("TLS is not configured"),
            OpenError::ServerName(e) => write!(f, "server name: {e}"),
            OpenError::Tls(e) => write!(f, "TLS: {e}"),
            OpenError::Timeout(d) => write!(f, "not open within {d:?}"),
        }
    }
}

impl std::error::Error for OpenError {}

/// What one connection needs besides its target.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `login` of the upstream CONNECT.
    pub login: String,
    /// `passcode` of the upstream CONNECT.
    pub passcode: crate::secret::Secret,
    /// `host` of the upstream CONNECT, if any.
    pub virtual_host: Option<String>,
    /// `client-id` of the upstream CONNECT, if any (the client's own, per session).
    pub client_id: Option<String>,
    /// The state machine's settings (heart-beats, timeouts, reconnect).
    pub config: UpstreamConfig,
    /// Largest frame accepted from the broker.
    pub max_frame_size: usize,
    /// Hides the relay's credentials in broker ERRORs before any sink sees them.
    pub redact: super::redact::Redactor,
    /// Told which broker answered each CONNECTED.
    pub dialect: std::sync::Arc<super::dialect::DialectChoice>,
}

/// What the reader does after handing a frame to the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Disconnect this connection for good.
    Stop,
}

/// Receives what happens on one connection (runs on its task; must not block).
pub trait Inbound: Send + 'static {
    /// The broker answered CONNECTED (again, after a reconnect).
    /// `index` is the address's position in the target, `addr` its description.
    fn connected(&mut self, _upstream: &Upstream, _index: usize, _addr: &str) {}
    /// A frame from the broker: MESSAGE, RECEIPT or ERROR.
    fn frame(&mut self, frame: OwnedFrame) -> Flow;
    /// The connection was lost (or ended on request: [`LossReason::Disconnected`]);
    /// a reconnecting connection may come back with `connected`.
    fn lost(&mut self, _why: LossReason, _detail: &str) {}
    /// The connection is over for good; called once, last.
    fn closed(&mut self) {}
}

struct Control {
    stop: AtomicBool,
    notify: Notify,
    dead: AtomicBool,
}

struct Handle {
    tx: mpsc::UnboundedSender<OwnedFrame>,
    control: Arc<Control>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The last handle gone: leave politely.
        self.control.stop.store(true, Ordering::Release);
        self.control.notify.notify_one();
    }
}

/// The sending side of a running connection. Dropping every clone disconnects it.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Handle>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Upstream {
    /// Queues a frame for the broker (written once connected, in order); `Err` gives
    /// it back once the connection is over for good.
    pub fn send(&self, frame: OwnedFrame) -> Result<(), OwnedFrame> {
        if self.is_closed() {
            return Err(frame);
        }
        self.inner.tx.send(frame).map_err(|e| e.0)
    }

    /// Sends DISCONNECT after what is queued and ends the connection for good.
    pub fn disconnect(&self) {
        self.inner.control.stop.store(true, Ordering::Release);
        self.inner.control.notify.notify_one();
    }

    /// Whether the connection is over (or ending) for good.
    pub fn is_closed(&self) -> bool {
        self.inner.control.dead.load(Ordering::Acquire)
            || self.inner.control.stop.load(Ordering::Acquire)
    }
}

/// Starts the task driving one connection.
pub fn spawn(target: Arc<Target>, settings: Settings, sink: impl Inbound) -> Upstream {
    let (tx, rx) = mpsc::unbounded_channel();
    let control = Arc::new(Control {
        stop: AtomicBool::new(false),
        notify: Notify::new(),
        dead: AtomicBool::new(false),
    });
    let inner = Arc::new(Handle {
        tx,
        control: control.clone(),
    });
    let driver = Driver {
        machine: Machine::new(settings.config, now()),
        target,
        settings,
        rx,
        control,
        // Weak: the driver must not keep its own connection alive.
        handle: Arc::downgrade(&inner),
        sink,
        detail: String::new(),
    };
    tokio::spawn(driver.run());
    Upstream { inner }
}

struct Driver<S> {
    machine: Machine,
    target: Arc<Target>,
    settings: Settings,
    rx: mpsc::UnboundedReceiver<OwnedFrame>,
    control: Arc<Control>,
    handle: Weak<Handle>,
    sink: S,
    /// The last transport problem, for logs.
    detail: String,
}

impl<S: Inbound> Driver<S> {
    async fn run(mut self) {
        loop {
            self.check_stop();
            if self.machine.is_closed() {
                break;
            }
            if let Some(i) = self.machine.poll_connect(now()) {
                match self.target.open(i).await {
                    Ok(stream) => {
                        self.machine.on_transport_connected(now());
                        self.transport(stream, i).await;
                    }
                    Err(e) => self.detail = format!("{}: {e}", self.target.describe(i)),
                }
                self.machine.handle_transport_closed(now());
                self.events(i);
                continue;
            }
            let wake = self.machine.poll_timeout();
            tokio::select! {
                _ = sleep_until(wake) => self.machine.handle_timeout(now()),
                _ = self.control.notify.notified() => {}
            }
        }
        self.control.dead.store(true, Ordering::Release);
        self.sink.closed();
    }

    fn check_stop(&mut self) {
        if self.control.stop.load(Ordering::Acquire) {
            self.machine.disconnect();
        }
    }

    /// Reports the machine's availability changes to the sink.
    fn events(&mut self, addr: usize) {
        while let Some(e) = self.machine.poll_event() {
            match e {
                UpstreamEvent::Connected => {
                    let desc = self.target.describe(addr);
                    // Before the sink hears of it: frames it sends use the dialect.
                    self.settings
                        .dialect
                        .broker_connected(self.machine.broker_dialect(), &desc);
                    if let Some(inner) = self.handle.upgrade() {
                        self.sink.connected(&Upstream { inner }, addr, &desc);
                    }
                }
                UpstreamEvent::Lost(why) => {
                    let detail = std::mem::take(&mut self.detail);
                    self.sink.lost(why, &detail);
                }
            }
        }
    }

    /// Runs one transport until the machine or the broker ends it.
    async fn transport(&mut self, mut stream: Box<dyn Io>, addr: usize) {
        let creds_login = self.settings.login.clone();
        let creds_pass = self.settings.passcode.clone();
        let creds_host = self.settings.virtual_host.clone();
        let creds_client_id = self.settings.client_id.clone();
        let creds = Credentials {
            login: Some(&creds_login),
            passcode: Some(creds_pass.expose()),
            virtual_host: creds_host.as_deref(),
            client_id: creds_client_id.as_deref(),
        };
        let limits = Limits {
            max_frame_size: self.settings.max_frame_size,
            max_headers: MAX_HEADERS,
            max_header_line: 64 * 1024,
            max_body: self.settings.max_frame_size,
        };
        let mut rbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut ctl = [0u8; CONTROL_FRAME];
        let mut pending: VecDeque<OwnedFrame> = VecDeque::new();
        loop {
            // Everything forwarded so far goes out before a requested DISCONNECT.
            let stopping = self.control.stop.load(Ordering::Acquire);
            // What the machine itself sends (CONNECT, heart-beat, DISCONNECT) and, once
            // connected, everything forwarded meanwhile, batched into one write.
            out.clear();
            if self.machine.is_connected() {
                let opts = EncodeOptions::passthrough(self.machine.version());
                while let Some(f) = pending.pop_front() {
                    encode(&f, opts, &mut out);
                }
                while out.len() < 256 * 1024 {
                    match self.rx.try_recv() {
                        Ok(f) => encode(&f, opts, &mut out),
                        Err(_) => break,
                    }
                }
                if !out.is_empty() {
                    self.machine.handle_transmitted(now());
                }
            }
            if stopping {
                self.machine.disconnect();
            }
            loop {
                match self.machine.poll_transmit(now(), &creds, &mut ctl) {
                    Ok(Some(n)) => out.extend_from_slice(&ctl[..n]),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "relay: control frame does not fit");
                        self.machine.disconnect();
                        break;
                    }
                }
            }
            if !out.is_empty() {
                if let Err(e) = write(&mut stream, &out).await {
                    self.detail = format!("{}: write: {e}", self.target.describe(addr));
                    return;
                }
            }
            self.events(addr);
            if self.machine.should_close_transport() || self.machine.is_closed() {
                let _ = stream.shutdown().await;
                return;
            }
            if rbuf.capacity() - rbuf.len() < 4096 {
                rbuf.reserve(16 * 1024);
            }
            let connected = self.machine.is_connected();
            let wake = self.machine.poll_timeout();
            tokio::select! {
                r = stream.read_buf(&mut rbuf) => match r {
                    Ok(0) => {
                        self.detail = format!("{}: broker closed the connection", self.target.describe(addr));
                        return;
                    }
                    Ok(_) => {
                        ack_promptly(&*stream);
                        if self.feed(&mut rbuf, limits) == Flow::Stop {
                            self.machine.disconnect();
                        }
                    }
                    Err(e) => {
                        self.detail = format!("{}: {e}", self.target.describe(addr));
                        return;
                    }
                },
                f = self.rx.recv(), if connected => match f {
                    Some(f) => pending.push_back(f),
                    None => self.machine.disconnect(),
                },
                _ = sleep_until(wake) => self.machine.handle_timeout(now()),
                _ = self.control.notify.notified() => {}
            }
        }
    }

    /// Hands every complete frame in `buf` to the machine and the sink.
    fn feed(&mut self, buf: &mut Vec<u8>, limits: Limits) -> Flow {
        let decoder = Decoder::with_limits(self.machine.version(), limits);
        let mut used = 0;
        let mut flow = Flow::Continue;
        self.machine.handle_received(now());
        loop {
            let mut hs = [Header::EMPTY; MAX_HEADERS];
            match decoder.decode(&buf[used..], &mut hs) {
                Ok(Status::Complete((Decoded::HeartBeat, n))) => {
                    used += n;
                    self.machine.handle_heartbeat(now());
                }
                Ok(Status::Complete((Decoded::Frame(f), n))) => {
                    let raw = &buf[used..used + n];
                    used += n;
                    match self.machine.handle_frame(now(), &f) {
                        Some(CoreInbound::Message(f)) | Some(CoreInbound::Receipt(f)) => {
                            // One allocation per frame, not one per header: this runs
                            // for every MESSAGE of every per-session connection.
                            let f = OwnedFrame::from_frame_copied(&f, raw);
                            if self.sink.frame(f) == Flow::Stop {
                                flow = Flow::Stop;
                            }
                        }
                        Some(CoreInbound::Error(f)) => {
                            let mut f = OwnedFrame::from_frame(&f);
                            self.settings.redact.error(&mut f);
                            if self.sink.frame(f) == Flow::Stop {
                                flow = Flow::Stop;
                            }
                        }
                        Some(CoreInbound::Connected(_)) | None => {}
                    }
                }
                Ok(Status::Partial) => break,
                Err(e) => {
                    self.detail = format!("bad frame from broker: {e}");
                    self.machine.handle_decode_error(now());
                    used = buf.len();
                    break;
                }
            }
        }
        buf.drain(..used);
        flow
    }
}

fn encode(f: &OwnedFrame, opts: EncodeOptions, out: &mut Vec<u8>) {
    if let Err(e) = f.encode_into(opts, out) {
        tracing::warn!(error = %e, "relay: dropped a frame the codec cannot encode");
    }
}

async fn write(wr: &mut Box<dyn Io>, out: &[u8]) -> std::io::Result<()> {
    wr.write_all(out).await?;
    wr.flush().await
}
