//! Limits on what abusive clients can cost: concurrent connections per IP address, the
//! per-session SEND token bucket, and the HTTP/WebSocket listener's slow-loris guard (a
//! new connection must finish its TLS handshake and send its whole HTTP request head
//! within the header read timeout, at most [`MAX_REQUEST_HEAD`] bytes).
//!
//! [`HttpListener`] is the `axum::serve` listener: one accept task takes connections,
//! refuses those over the per-IP limit at once, and reads each new connection's
//! handshake and request head in its own task, so a slow client never delays others.
//! Only connections that completed both reach axum, with the head bytes replayed.
//!
//! Invariants: an [`IpGuard`] lives exactly as long as its connection (it rides inside
//! the connection's IO object, through a WebSocket upgrade), so the per-IP count cannot
//! leak; connections still in their handshake are bounded by [`MAX_PENDING`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;

use crate::server::Shared;

/// Largest HTTP request head accepted on the WebSocket listener.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Most connections in their TLS handshake / request head at once; more are dropped.
pub const MAX_PENDING: usize = 4096;

type Counts = Mutex<HashMap<IpAddr, usize>>;

/// Concurrent connections per IP address.
#[derive(Debug)]
pub struct IpLimiter {
    max: usize,
    counts: Arc<Counts>,
}

/// One admitted connection's place in the per-IP count; released on drop.
#[derive(Debug)]
pub struct IpGuard {
    counts: Option<Arc<Counts>>,
    ip: IpAddr,
}

impl IpLimiter {
    /// `max` connections per IP; 0 for unlimited.
    pub fn new(max: usize) -> IpLimiter {
        IpLimiter {
            max,
            counts: Arc::default(),
        }
    }

    /// A guard when `ip` is under its limit.
    pub fn admit(&self, ip: IpAddr) -> Option<IpGuard> {
        if self.max == 0 {
            return Some(IpGuard { counts: None, ip });
        }
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpGuard {
            counts: Some(self.counts.clone()),
            ip,
        })
    }

    /// Connections currently counted for `ip`.
    pub fn current(&self, ip: IpAddr) -> usize {
        let m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        if let Some(c) = &self.counts {
            let mut m = c.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst` (at least 1).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes one token at `now`; `false` when empty.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection that passed the listener's checks: its request head (replayed first),
/// the stream, and its per-IP guard.
pub struct Conn {
    head: Bytes,
    io: Io,
    _guard: IpGuard,
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.remaining());
            buf.put_slice(&self.head[..n]);
            self.head.advance(n);
            if self.head.is_empty() {
                // Free the head buffer now: the connection may stay open for hours.
                self.head = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The HTTP/WebSocket listener handed to `axum::serve` (see the module doc).
pub struct HttpListener {
    rx: mpsc::Receiver<(Conn, SocketAddr)>,
    local: SocketAddr,
}

impl HttpListener {
    /// Starts accepting on `listener`; stops when this value is dropped.
    pub(crate) fn new(listener: TcpListener, shared: Arc<Shared>) -> HttpListener {
        let local = listener.local_addr().unwrap_or(shared.config.listen);
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(accept_loop(listener, tx, shared));
        HttpListener { rx, local }
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task only ends after this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    listener: TcpListener,
    tx: mpsc::Sender<(Conn, SocketAddr)>,
    shared: Arc<Shared>,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING));
    loop {
        let (stream, peer) = tokio::select! {
            _ = tx.closed() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let sec = &shared.security;
        let Some(guard) = sec.ip_limiter.admit(peer.ip()) else {
            shared.metrics.connections_refused.inc();
            tracing::debug!(%peer, "connection refused: per-IP limit");
            continue;
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            shared.metrics.connections_refused.inc();
            continue;
        };
        let tx = tx.clone();
        let tls = sec.tls.clone();
        let timeout = sec.config.header_read_timeout;
        tokio::spawn(async move {
            let ready = tokio::time::timeout(timeout, prepare(stream, tls)).await;
            drop(permit);
            match ready {
                Ok(Ok((io, head))) => {
                    let conn = Conn {
                        head,
                        io,
                        _guard: guard,
                    };
                    let _ = tx.send((conn, peer)).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "connection dropped before its request")
                }
                Err(_) => tracing::debug!(%peer, "connection dropped: request head too slow"),
            }
        });
    }
}

/// TLS handshake (when configured) and the whole request head.
async fn prepare(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> io::Result<(Io, Bytes)> {
    let _ = stream.set_nodelay(true);
    let mut io = match tls {
        Some(a) => Io::Tls(Box::new(a.accept(stream).await?)),
        None => Io::Plain(stream),
    };
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = match &mut io {
            Io::Plain(s) => s.read(&mut chunk).await?,
            Io::Tls(s) => s.read(&mut chunk).await?,
        };
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if head[from..].windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok((io, Bytes::from(head)));
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn per_ip_counts_release_on_drop() {
        let l = IpLimiter::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let a = l.admit(ip).unwrap();
        let _b = l.admit(ip).unwrap();
        assert!(l.admit(ip).is_none());
        assert!(l.admit(other).is_some());
        drop(a);
        assert_eq!(l.current(ip), 1);
        assert!(l.admit(ip).is_some());
        assert!(IpLimiter::new(0).admit(ip).is_some());
    }

    #[test]
    fn bucket_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(100)));
        assert!(b.take(t0 + Duration::from_secs(10)));
    }
}
