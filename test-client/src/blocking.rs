//! A kernel TCP socket whose reads block the calling thread: for tests that run the
//! server under test on another thread (an embassy executor, say) and drive the client
//! with a plain `block_on`.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::client::{Recv, Transport};

/// A client on a blocking kernel socket.
pub type Client = crate::Client<Blocking>;

/// A connected [`TcpStream`]; each read waits with the socket's own read timeout.
pub struct Blocking(TcpStream);

impl Transport for Blocking {
    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.0
            .write_all(bytes)
            .and_then(|()| self.0.flush())
            .is_ok()
    }

    async fn recv(&mut self, buf: &mut Vec<u8>, wait: Duration) -> Recv {
        // A zero timeout means "block forever" to the kernel.
        if self
            .0
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .is_err()
        {
            return Recv::Closed(None);
        }
        let mut chunk = [0u8; 4096];
        match self.0.read(&mut chunk) {
            Ok(0) => Recv::Closed(None),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                Recv::Data
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Recv::TimedOut
            }
            Err(_) => Recv::Closed(None),
        }
    }
}

impl Client {
    /// A connection to `addr` (`host:port`).
    ///
    /// # Panics
    /// When the connection fails.
    pub fn tcp_blocking(addr: &str) -> Client {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        crate::Client::new(Blocking(s))
    }
}
