//! The listeners' accept side. [`HttpListener`] is the `axum::serve` listener: one
//! accept task takes connections, refuses those over the per-IP limit at once, and reads
//! each new connection's TLS handshake and HTTP request head in its own task (the
//! slow-loris guard of [`crate::abuse`]), so a slow client never delays others. Only
//! connections that completed both reach axum, with the head bytes replayed.
//! [`run_tcp_session`] runs one `--tcp-listen` connection, plain or TLS.
//!
//! Invariant: an [`IpGuard`] lives exactly as long as its connection (it rides inside
//! [`Conn`], through a WebSocket upgrade), so the per-IP count cannot leak.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;

use crate::abuse::{IpGuard, MAX_PENDING, MAX_REQUEST_HEAD};
use crate::state::Shared;
use crate::tls::TlsTransport;
use crate::transport::TcpTransport;

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

/// Runs one accepted `--tcp-listen` connection: plain, or TLS when configured.
pub(crate) async fn run_tcp_session(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let handshake = crate::auth::Handshake {
        remote: Some(peer),
        ..Default::default()
    };
    let Some(acceptor) = shared.security.tls.clone() else {
        crate::session::run(TcpTransport::new(stream), shared, None, handshake).await;
        return;
    };
    let _ = stream.set_nodelay(true);
    let timeout = shared.security.config.header_read_timeout;
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => crate::session::run(TlsTransport::new(tls), shared, None, handshake).await,
        Ok(Err(e)) => tracing::debug!(error = %e, "tcp: TLS handshake failed"),
        Err(_) => tracing::debug!("tcp: TLS handshake timed out"),
    }
}
