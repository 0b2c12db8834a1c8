//! Limits on what abusive clients can cost: concurrent connections per IP address, the
//! per-session SEND token bucket, and the HTTP/WebSocket listener's slow-loris guard (a
//! new connection must finish its TLS handshake and send its whole HTTP request head
//! within the header read timeout, at most [`MAX_REQUEST_HEAD`] bytes).
//!
//! The listener that applies these lives in [`crate::listen`]. Invariant: connections
//! still in their handshake are bounded by [`MAX_PENDING`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
