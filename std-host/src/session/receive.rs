//! The session's inbound side: reassembly of frames across WebSocket messages or TCP
//! reads, decoding (bounded by the max frame size: the decoder rejects a prefix that
//! cannot fit, and the session answers ERROR), the core session's verdict on each
//! frame, relay-core's [`Router::dispatch`](stomp_relay_core::Router::dispatch) on
//! where it goes, and the authorization guard in between.
//!
//! Invariant: a received byte is copied at most once on its way to a broker backend.
//! With nothing buffered (the usual case) frames are decoded straight out of the
//! received chunk and their bodies are slices of it; only bytes of a frame split
//! across chunks are copied, into the reassembly buffer.

use bytes::Bytes;
use stomp_relay_codec::{
    Command, DecodeError, Decoded, Decoder, EncodeOptions, Frame, Header, Limit, Limits, Status,
};
use stomp_relay_core::session::{CloseReason, Event};
use stomp_relay_core::{Instant, Route};

use super::clock::now;
use super::{str_of, Driver, Next};
use crate::auth::{Op, Refusal};
use crate::frame::OwnedFrame;
use crate::metrics::CloseCause;

/// Longest destination a SUBSCRIBE to `/user/...` may resolve to.
const RESOLVED_MAX: usize = 1024;

pub(super) fn decoder_limits(max_frame: usize) -> Limits {
    Limits {
        max_frame_size: max_frame,
        max_headers: 64,
        max_header_line: 8 * 1024.min(max_frame),
        max_body: max_frame,
    }
}

impl Driver {
    fn decoder(&self) -> Decoder {
        Decoder::with_limits(
            self.session.version(),
            decoder_limits(self.shared.config.limits.max_frame_size),
        )
    }

    /// Handles every complete frame in the reassembly buffer followed by `bytes`.
    pub(super) fn receive(&mut self, bytes: Bytes) -> Next {
        let now = now();
        if !bytes.is_empty() {
            self.session.handle_received(now);
        }
        let src = if self.rbuf.is_empty() {
            bytes
        } else {
            self.rbuf.extend_from_slice(&bytes);
            let mut hs = [Header::EMPTY; 64];
            if let Ok(Status::Partial) = self.decoder().decode(&self.rbuf, &mut hs) {
                self.check_progress(false);
                return Next::Continue;
            }
            self.rbuf.split().freeze()
        };
        let mut consumed = 0;
        let mut next = Next::Continue;
        while !self.session.is_closing() && !self.proxy_pending() && consumed < src.len() {
            let mut hs = [Header::EMPTY; 64];
            match self.decoder().decode(&src[consumed..], &mut hs) {
                Ok(Status::Partial) => break,
                Ok(Status::Complete((Decoded::HeartBeat, n))) => {
                    consumed += n;
                    self.shared.metrics.heartbeats_in.inc();
                    self.session.handle_heartbeat(now);
                    if let Some(b) = self.broker.as_mut() {
                        b.client_activity();
                    }
                }
                Ok(Status::Complete((Decoded::Frame(f), n))) => {
                    consumed += n;
                    self.got_first_frame = true;
                    self.shared.metrics.frame_in(f.command);
                    if let Next::Connect(c) = self.frame(now, &f, &src) {
                        next = Next::Connect(c);
                        break;
                    }
                }
                Err(e) => {
                    self.decode_cause = Some(match e {
                        DecodeError::LimitExceeded {
                            limit: Limit::FrameSize | Limit::BodySize,
                            ..
                        } => CloseCause::FrameTooLarge,
                        _ => CloseCause::ProtocolError,
                    });
                    self.session.handle_decode_error(now, &e);
                    consumed = src.len();
                }
            }
        }
        if self.rbuf.capacity() > 16 * 1024 {
            // A large frame passed: give the memory back so idle sessions stay small.
            self.rbuf = Default::default();
        }
        self.rbuf.extend_from_slice(&src[consumed..]);
        self.check_progress(consumed > 0);
        next
    }

    /// Slow-loris inside a session: a started frame must finish in time (auth/mod.rs).
    fn check_progress(&mut self, progressed: bool) {
        if let Err(msg) = self.guard.frame_progress(progressed, !self.rbuf.is_empty()) {
            self.session
                .close_with_error(CloseReason::ProtocolError, msg);
        }
    }

    /// Feeds one decoded frame (borrowed from `src`) to the session, asks relay-core
    /// where it goes and sends it there.
    fn frame(&mut self, now: Instant, f: &Frame<'_>, src: &Bytes) -> Next {
        // CONNECT is copied whole before the session borrows it: the authenticator and
        // the broker backend get the frame as the client sent it.
        let connect = f.command.is_connect().then(|| OwnedFrame::from_frame(f));
        let (dest, sub_id) = match self.session.handle_frame(now, f) {
            Ok(Some(Event::Subscribe {
                id, destination, ..
            })) => (Some(destination.to_vec()), Some(str_of(id))),
            Ok(Some(Event::Send { destination })) => (Some(destination.to_vec()), None),
            Ok(Some(_)) => (None, None),
            Ok(None) | Err(_) => return Next::Continue,
        };
        let op = match f.command {
            Command::Send => Some(Op::Send),
            Command::Subscribe => Some(Op::Subscribe),
            _ => None,
        };
        if let (Some(op), Some(d)) = (op, &dest) {
            if !self.permitted(op, d, f) {
                return Next::Continue;
            }
        }
        let shared = self.shared.clone();
        let routes = shared.routes();
        let router = routes.router();
        let mut resolved = [0u8; RESOLVED_MAX];
        let route = router.dispatch(f.command, dest.as_deref(), self.session.id(), &mut resolved);
        let proxied = dest
            .as_deref()
            .and_then(|d| self.proxy_target(&route, sub_id.is_some(), d));
        if let (Some((target, vars)), Some(d)) = (proxied, dest.as_deref()) {
            // The RECEIPT (this server's, or the broker's with the forwarded SUBSCRIBE)
            // waits for the back end's answer.
            self.session.withdraw_receipt();
            let ours = route.handled_here() || !shared.broker.forwards_receipts();
            let receipt = f.receipt().filter(|_| ours).map(|r| r.bytes().collect());
            let forward = match route {
                Route::Broker(to) => {
                    let mut frame = OwnedFrame::from_frame_in(f, src);
                    if d != to {
                        super::route::set_destination(&mut frame, to);
                    }
                    Some(frame)
                }
                _ => None,
            };
            self.start_proxy(target, vars, d, sub_id, forward, f, src, receipt);
            return Next::Continue;
        }
        if route.handled_here() {
            self.local_receipt(f);
        }
        match route {
            Route::Open => {
                if let Some(c) = connect {
                    return Next::Connect(c);
                }
            }
            Route::Broker(to) => {
                let mut frame = OwnedFrame::from_frame_in(f, src);
                if dest.as_deref() != Some(to) {
                    super::route::set_destination(&mut frame, to);
                }
                self.forward(frame);
            }
            Route::Forward => self.forward(OwnedFrame::from_frame_in(f, src)),
            Route::App(to) => match sub_id {
                Some(id) => self.app_subscribe(&shared, &id, to, f),
                None => self.app_send(&shared, &router, to, f, src),
            },
            Route::User { user, target } => {
                self.send_to_user(&shared, &router, user, target, f, src)
            }
            Route::Close => {
                if let Some(b) = self.broker.take() {
                    let receipt = f.receipt().map(|r| str_of(&r.bytes().collect::<Vec<u8>>()));
                    let forwarded = shared.broker.forwards_receipts();
                    b.close(if forwarded { receipt } else { None });
                }
            }
            Route::Reject(e) => self.session.close_with_error(CloseReason::Rejected, e),
        }
        Next::Continue
    }

    /// Authorization rules, SEND rate and subscription limits (auth/mod.rs). A refusal
    /// either closes the session with ERROR or, for a SEND when so configured, answers
    /// ERROR and keeps it open.
    fn permitted(&mut self, op: Op, dest: &[u8], f: &Frame<'_>) -> bool {
        let subs = self.session.subscription_count();
        match self.guard.check(&self.shared.security, op, dest, subs) {
            Ok(()) => true,
            Err(Refusal::Close(msg)) => {
                self.session.close_with_error(CloseReason::Rejected, msg);
                false
            }
            Err(Refusal::Error(msg)) => {
                // The ERROR answers the frame's receipt; no RECEIPT may follow it.
                self.session.withdraw_receipt();
                let mut err = OwnedFrame::new(Command::Error).with_header("message", &msg);
                if let Some(r) = f.receipt() {
                    err.push_header("receipt-id", r.bytes().collect::<Vec<u8>>());
                }
                let opts = EncodeOptions::passthrough(self.session.version());
                if self
                    .units
                    .push_with(|out| err.encode_into(opts, out).is_ok())
                {
                    self.shared.metrics.frame_out(Command::Error);
                }
                false
            }
        }
    }
}
