//! The embassy-net transport: a device's TCP socket on an embassy-net stack.

use std::time::Duration;

use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, Stack};
use embassy_time::with_timeout;
use embedded_io_async::Write as _;

use crate::client::{Recv, Transport};

/// embedded-host's test client: a STOMP device (or any client) on an embassy-net stack.
pub type Client = crate::Client<Socket>;

/// An open embassy-net TCP socket (its buffers leaked: tests are short-lived).
pub struct Socket(TcpSocket<'static>);

impl Transport for Socket {
    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.0.write_all(bytes).await.is_ok() && self.0.flush().await.is_ok()
    }

    async fn recv(&mut self, buf: &mut Vec<u8>, wait: Duration) -> Recv {
        let mut chunk = [0u8; 2048];
        let wait =
            embassy_time::Duration::from_micros(wait.as_micros().min(u64::MAX as u128 / 2) as u64);
        match with_timeout(wait, self.0.read(&mut chunk)).await {
            Err(_) => Recv::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => Recv::Closed(None),
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                Recv::Data
            }
        }
    }
}

impl Client {
    /// A connection to `to` with an 8 KiB receive window.
    pub async fn open(stack: Stack<'static>, to: IpEndpoint) -> Client {
        Client::open_with_window(stack, to, 8192).await
    }

    /// A connection whose receive buffer (TCP window) is `rx` bytes.
    ///
    /// # Panics
    /// When the connection fails.
    pub async fn open_with_window(stack: Stack<'static>, to: IpEndpoint, rx: usize) -> Client {
        let rx = Box::leak(vec![0u8; rx].into_boxed_slice());
        let tx = Box::leak(vec![0u8; 8192].into_boxed_slice());
        let mut socket = TcpSocket::new(stack, rx, tx);
        socket.connect(to).await.expect("tcp connect");
        crate::Client::new(Socket(socket))
    }

    /// A connection through CONNECT/CONNECTED.
    pub async fn connected(stack: Stack<'static>, to: IpEndpoint) -> Client {
        let mut c = Client::open(stack, to).await;
        c.expect_connected(&[]).await;
        c
    }

    /// Resets the connection (RST), as a device losing power would.
    pub fn abort(&mut self) {
        self.transport().0.abort();
    }
}
