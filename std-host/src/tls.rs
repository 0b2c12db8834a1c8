//! TLS for the client listeners (`wss://` on the HTTP/WebSocket listener, STOMP over TLS
//! on `--tcp-listen`) with rustls, from PEM files.
//!
//! ring is the one crypto provider, named explicitly as the relay's client side does
//! (see `relay/tls.rs`), so the build never depends on rustls picking a default. The
//! handshake of a plain-TCP STOMP connection runs inside its session task, bounded by the
//! header read timeout, so a client that never finishes it costs one task until then and
//! never blocks the accept loop.

use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::load_error::LoadError;
use crate::transport::{Chunk, Transport, WriteBatch};

/// A TLS acceptor for the certificate chain and key in these PEM files. Errors name the
/// file (never key bytes).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, LoadError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| LoadError::content("--tls-cert", cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| LoadError::content("--tls-cert", cert, e))?;
    if certs.is_empty() {
        return Err(LoadError::content(
            "--tls-cert",
            cert,
            "no PEM certificate in the file",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        LoadError::content(
            "--tls-key",
            key,
            format_args!("no usable PEM private key ({e})"),
        )
    })?;
    let combination = |e: rustls::Error| LoadError::Combination {
        flags: "--tls-cert/--tls-key",
        problem: e.to_string(),
    };
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(combination)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(combination)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// STOMP over TLS over TCP.
pub struct TlsTransport {
    // Unbuffered: a write batch is already one buffer (rustls frames it into records).
    io: TlsStream<TcpStream>,
    buf: BytesMut,
}

impl TlsTransport {
    /// Wraps an accepted TLS stream.
    pub fn new(tls: TlsStream<TcpStream>) -> Self {
        TlsTransport {
            io: tls,
            buf: BytesMut::new(),
        }
    }
}

impl Transport for TlsTransport {
    async fn recv(&mut self) -> io::Result<Chunk> {
        self.buf.reserve(4096);
        let n = self.io.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Ok(Chunk::Closed);
        }
        Ok(Chunk::Data(self.buf.split().freeze()))
    }

    async fn send(&mut self, batch: &mut WriteBatch) -> io::Result<()> {
        let written = self.io.write_all(batch.bytes()).await;
        batch.clear();
        written?;
        self.io.flush().await
    }

    async fn close(&mut self, _code: u16, _reason: &str) {
        let _ = self.io.flush().await;
        // close_notify, then drain briefly so unread input does not turn into an RST
        // that destroys the ERROR frame in flight.
        let _ = self.io.shutdown().await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            let mut sink = [0u8; 1024];
            while let Ok(n) = self.io.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }

    fn kind(&self) -> &'static str {
        "tls"
    }
}
