//! Carrying out a [`Route`](stomp_relay_core::Route) relay-core chose: frames for the
//! broker backend, application destinations (the host's `@MessageMapping` and
//! `@SubscribeMapping` handlers, then relay-core's application routes) and SENDs to
//! another user's sessions.

use std::sync::Arc;

use bytes::Bytes;
use stomp_relay_codec::{Command, Frame};
use stomp_relay_core::pattern::{self, Captures, Separator};
use stomp_relay_core::router::AppRoute;
use stomp_relay_core::session::CloseReason;
use stomp_relay_core::Router;

use super::{str_of, Driver};
use crate::app::AppMessage;
use crate::broker::BrokerError;
use crate::frame::OwnedFrame;
use crate::outbound::{Delivery, ToClient};
use crate::state::Shared;

impl Driver {
    pub(super) fn forward(&mut self, frame: OwnedFrame) {
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        // A forwarding backend carries the frame's receipt along with it.
        if let Err(e) = b.forward(frame) {
            self.session.close_with_error(close_reason(&e), e);
        }
    }

    /// Frames this server handles itself get their receipt here, also when the broker
    /// backend forwards receipts for everything else.
    pub(super) fn local_receipt(&mut self, f: &Frame<'_>) {
        if self.shared.broker.forwards_receipts() {
            if let Some(r) = f.receipt() {
                let r: Vec<u8> = r.bytes().collect();
                self.session.queue_receipt(&r);
            }
        }
    }

    fn publish(&mut self, shared: &Shared, frame: OwnedFrame) -> bool {
        match shared.broker.publish(frame) {
            Ok(()) => true,
            Err(e) => {
                self.session.close_with_error(close_reason(&e), e);
                false
            }
        }
    }

    fn app_message(&self, dest: &[u8], caps: &Captures<'_, '_>, f: &Frame<'_>) -> AppMessage {
        AppMessage {
            destination: str_of(dest),
            vars: caps.iter().map(|(n, v)| (str_of(n), str_of(v))).collect(),
            frame: OwnedFrame::from_frame(f),
            user: self.user.clone(),
            session_id: self.sid(),
        }
    }

    /// A SEND to an application destination: the first matching message handler, else
    /// relay-core's application routes (by default `/pub/x` to `/sub/x`).
    pub(super) fn app_send(
        &mut self,
        shared: &Arc<Shared>,
        router: &Router<'_>,
        dest: &[u8],
        f: &Frame<'_>,
        src: &Bytes,
    ) {
        for m in &shared.message_mappings {
            let mut caps = Captures::new();
            if pattern::capture(m.pattern.as_bytes(), dest, Separator::Slash, &mut caps) {
                let msg = self.app_message(dest, &caps, f);
                let publisher = shared.publisher();
                for reply in (m.handler)(&msg) {
                    if let Err(e) = publisher.send_reply(&reply) {
                        tracing::warn!(error = %e, destination = %msg.destination, "handler reply not sent");
                    }
                }
                return;
            }
        }
        let mut out = vec![0u8; dest.len() + 256];
        match router.route_app(dest, &mut out) {
            Ok(AppRoute::Forward(to)) => {
                let mut frame = OwnedFrame::from_frame_in(f, src);
                strip_client_only(&mut frame);
                set_destination(&mut frame, to);
                self.publish(shared, frame);
            }
            Ok(AppRoute::Handler { .. }) | Ok(AppRoute::Unrouted) => {
                tracing::debug!(destination = %str_of(dest), "no handler for application destination");
            }
            Err(e) => self.session.close_with_error(CloseReason::Rejected, e),
        }
    }

    /// A SUBSCRIBE to an application destination: the first matching subscribe handler
    /// answers it with one MESSAGE, to this subscription only.
    pub(super) fn app_subscribe(&mut self, shared: &Shared, id: &str, dest: &[u8], f: &Frame<'_>) {
        for m in &shared.subscribe_mappings {
            let mut caps = Captures::new();
            if !pattern::capture(m.pattern.as_bytes(), dest, Separator::Slash, &mut caps) {
                continue;
            }
            let msg = self.app_message(dest, &caps, f);
            if let Some(p) = (m.handler)(&msg) {
                let mut frame =
                    OwnedFrame::new(Command::Message).with_header("destination", &msg.destination);
                for (n, v) in &p.headers {
                    frame.push_header(n, v);
                }
                frame.body = p.body;
                let _ = self.client.send(ToClient::Message(Delivery {
                    subscription: id.into(),
                    message_id: format!("{}-sub", self.sid()).into(),
                    message: Arc::new(frame.into()),
                }));
            }
            return;
        }
    }

    /// A SEND to `/user/<user>/<target>`: one copy to each of the user's sessions'
    /// resolved destination, on any instance (the copies share the body and headers).
    pub(super) fn send_to_user(
        &mut self,
        shared: &Shared,
        router: &Router<'_>,
        user: &[u8],
        target: &[u8],
        f: &Frame<'_>,
        src: &Bytes,
    ) {
        let sessions = shared.publish.users.sessions(&str_of(user));
        if sessions.is_empty() {
            shared.publish.unresolved.inc();
            tracing::debug!(user = %str_of(user), "no session of the user on any instance; message dropped");
            return;
        }
        let mut frame = OwnedFrame::from_frame_in(f, src);
        strip_client_only(&mut frame);
        for other in sessions {
            let mut out = [0u8; 1024];
            if let Ok(resolved) = router.user_target(target, other, &mut out) {
                let mut copy = frame.clone();
                set_destination(&mut copy, resolved);
                if !self.publish(shared, copy) {
                    return;
                }
            }
        }
    }
}

/// A frame the backend refused is the client's error (counted as a protocol error);
/// a backend that is down or gone is the broker's.
fn close_reason(e: &BrokerError) -> CloseReason {
    match e {
        BrokerError::Rejected(_) => CloseReason::Rejected,
        BrokerError::Unavailable | BrokerError::ConnectionClosed => CloseReason::BrokerClosed,
    }
}

/// Replaces (or adds) the `destination` header.
pub(super) fn set_destination(frame: &mut OwnedFrame, dest: &[u8]) {
    match frame
        .headers
        .iter_mut()
        .find(|(n, _)| &n[..] == b"destination")
    {
        Some((_, v)) => *v = Bytes::copy_from_slice(dest),
        None => frame.push_header("destination", dest),
    }
}

/// Drops headers that only mean something between the client and this server
/// (`receipt`, `transaction`) before a message is republished on the client's behalf.
fn strip_client_only(frame: &mut OwnedFrame) {
    frame
        .headers
        .retain(|(n, _)| &n[..] != b"receipt" && &n[..] != b"transaction");
}
