//! The session's outbound side: its own frames (CONNECTED, RECEIPT, ERROR, heart-beats)
//! and broker deliveries from the bounded [`crate::outbound`] queue, encoded into one
//! [`crate::batch::WriteBatch`] and written together, each write bounded by the send time limit (a client
//! that stalls it is closed with 4500).
//!
//! Invariant: nothing but the session's own frames goes out before CONNECTED, and
//! nothing after the session started closing, except the close itself.

use stomp_relay_codec::{Command, EncodeOptions, Header, Version};
use stomp_relay_core::session::{AckMode, CloseReason, MAX_CONTROL_FRAME};

use super::clock::now;
use super::close::HostClose;
use super::Driver;
use crate::close;
use crate::metrics::CloseCause;
use crate::outbound::{Delivery, OutboundRx, ToClient};
use crate::transport::Transport;

/// At most this many queued items go out in one write batch.
const BATCH_ITEMS: usize = 256;

impl Driver {
    /// Moves the session's own frames (CONNECTED, RECEIPT, ERROR, heart-beats) to the batch.
    pub(super) fn collect_transmits(&mut self) {
        let now = now();
        loop {
            let mut buf = [0u8; MAX_CONTROL_FRAME];
            match self.session.poll_transmit(now, &mut buf) {
                Ok(Some(n)) => {
                    let mut unit = buf[..n].to_vec();
                    if let Some(p) = self.proxy.as_mut() {
                        if !p.connected_extra.is_empty() && unit.starts_with(b"CONNECTED\n") {
                            add_headers(&mut unit, &std::mem::take(&mut p.connected_extra));
                        }
                    }
                    self.count_out(&unit);
                    self.units.push(&unit);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "session frame did not fit its buffer");
                    self.host_close = Some(HostClose {
                        code: close::INTERNAL_ERROR,
                        cause: Some(CloseCause::ProtocolError),
                    });
                    break;
                }
            }
        }
    }

    fn count_out(&self, unit: &[u8]) {
        let m = &self.shared.metrics;
        if unit == b"\n" {
            m.heartbeats_out.inc();
        } else {
            let end = unit.iter().position(|&b| b == b'\n').unwrap_or(unit.len());
            if let Some(c) = Command::parse(&unit[..end]) {
                m.frame_out(c);
            }
        }
    }

    /// Takes `first` and whatever else is queued (bounded) into the batch.
    pub(super) fn deliver(&mut self, first: ToClient, rx: &mut OutboundRx) {
        let mut item = Some(first);
        let mut n = 0;
        while let Some(it) = item.take() {
            rx.done(&it);
            self.encode_item(it);
            n += 1;
            if n >= BATCH_ITEMS || self.host_close.is_some() || self.session.is_closing() {
                break;
            }
            item = rx.try_recv();
        }
        if !self.units.is_empty() {
            self.session.handle_transmitted(now());
        }
    }

    pub(super) fn encode_item(&mut self, item: ToClient) {
        if !self.session.is_connected() || self.session.is_closing() {
            if let ToClient::Close {
                message: None,
                code,
            } = item
            {
                self.host_close = Some(HostClose {
                    code,
                    cause: Some(CloseCause::SendBufferLimit),
                });
            }
            return;
        }
        let version = self.session.version();
        match item {
            ToClient::Message(d) => {
                let mut units = std::mem::take(&mut self.units);
                if units.push_with(|out| self.encode_delivery(&d, version, out)) {
                    self.shared.metrics.frame_out(Command::Message);
                }
                self.units = units;
            }
            ToClient::Frame(f) => {
                let mut refused = None;
                let encoded = self.units.push_with(|out| {
                    out.reserve(f.weight() + 16);
                    f.encode_into(EncodeOptions::passthrough(version), out)
                        .map_err(|e| refused = Some(e))
                        .is_ok()
                });
                if encoded {
                    self.shared.metrics.frame_out(f.command);
                    if f.command == Command::Error {
                        self.session.close(CloseReason::BrokerClosed);
                    }
                } else if let Some(e) = refused {
                    tracing::warn!(error = %e, "frame for client not encodable");
                }
            }
            ToClient::HeartBeat => {
                self.shared.metrics.heartbeats_out.inc();
                self.units.push(b"\n");
            }
            ToClient::Close {
                message: Some(m),
                code: _,
            } => {
                self.session.close_with_error(CloseReason::BrokerClosed, m);
            }
            ToClient::Close {
                message: None,
                code,
            } => {
                self.shared.metrics.deliveries_dropped.inc();
                self.host_close = Some(HostClose {
                    code,
                    cause: Some(CloseCause::SendBufferLimit),
                });
            }
        }
    }

    /// Appends one MESSAGE to `out`: subscription, message-id (unless the shared part has
    /// it), ack, the destination (shown as the user destination for this session's user
    /// queues), then the message's shared part, encoded once for every subscriber
    /// ([`crate::outbound::SharedMessage`]). False when the codec refuses it.
    fn encode_delivery(&self, d: &Delivery, version: Version, out: &mut Vec<u8>) -> bool {
        let msg = &d.message;
        // Sized only for this session's user queues (their names end in its id), so
        // the other deliveries do not pay for zeroing it.
        let mut user_dest = Vec::new();
        let routes = self.shared.routes();
        let mut hs = [Header::EMPTY; 4];
        let mut k = 0;
        hs[k] = Header::new(b"subscription", d.subscription.as_bytes());
        k += 1;
        if !msg.has_shared_id() {
            hs[k] = Header::new(b"message-id", d.message_id.as_bytes());
            k += 1;
        }
        if version == Version::V1_2
            && self
                .session
                .subscription(d.subscription.as_bytes())
                .is_some_and(|m| m != AckMode::Auto)
        {
            hs[k] = Header::new(b"ack", d.message_id.as_bytes());
            k += 1;
        }
        if let Some(v) = msg.header("destination") {
            // A user queue of this session is shown as the user destination the client
            // subscribed to (`/queue/x-user42` -> `/user/queue/x`).
            let shown = if v.ends_with(&self.session.id().to_hex()) {
                user_dest.resize(1024, 0);
                routes
                    .router()
                    .user_delivery(v, self.session.id(), &mut user_dest)
                    .unwrap_or(v)
            } else {
                v
            };
            hs[k] = Header::new(b"destination", shown);
            k += 1;
        }
        msg.encode_with(&hs[..k], version, out).is_some()
    }

    /// Writes the batch, bounded by the send time limit.
    pub(super) async fn write<T: Transport>(&mut self, t: &mut T) -> Result<(), CloseCause> {
        let bytes = self.units.bytes().len();
        let limit = self.shared.config.limits.send_time_limit;
        match tokio::time::timeout(limit, t.send(&mut self.units)).await {
            Ok(Ok(())) => {
                self.shared.metrics.bytes_out.inc_by(bytes as u64);
                Ok(())
            }
            Ok(Err(_)) => {
                self.units.clear();
                self.session.handle_transport_closed();
                Err(CloseCause::TransportError)
            }
            Err(_) => {
                self.units.clear();
                tracing::info!(session = %self.sid(), "send time limit exceeded, closing");
                Err(CloseCause::SendTimeLimit)
            }
        }
    }
}

/// Adds header lines to an encoded body-less frame (CONNECTED: its headers are never
/// escaped, and the connect proxy's were checked to need no escaping).
fn add_headers(unit: &mut Vec<u8>, headers: &[(String, String)]) {
    if !unit.ends_with(b"\n\n\0") {
        return;
    }
    unit.truncate(unit.len() - 2);
    for (n, v) in headers {
        unit.extend_from_slice(n.as_bytes());
        unit.push(b':');
        unit.extend_from_slice(v.as_bytes());
        unit.push(b'\n');
    }
    unit.extend_from_slice(b"\n\0");
}
