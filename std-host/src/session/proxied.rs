//! SUBSCRIBEs and SENDs a back end decides on (the subscribe and application proxies,
//! crate::proxy): the call starts when the frame is routed, the session keeps
//! delivering while it runs but reads no further frames (so the client's order is
//! kept), and its answer is carried out here: the SUBSCRIBE forwarded (after the
//! back end's first MESSAGE to this subscriber) or refused with ERROR, the SEND's
//! publishes and replies sent, and only then the frame's RECEIPT.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use stomp_relay_codec::{Command, Frame};
use stomp_relay_core::pattern::{self, Captures, Separator};
use stomp_relay_core::session::CloseReason;
use stomp_relay_core::Route;

use super::open::{header_ok, json_headers};
use super::{str_of, Driver};
use crate::app::PublishError;
use crate::config::proxy::AppErrors;
use crate::frame::{OwnedFrame, SERVER_MESSAGE_HEADERS};
use crate::outbound::{Delivery, ToClient};
use crate::proxy::protocol::{
    AppRequest, AppResult, Body, Message, SubscribeRequest, SubscribeResult,
};
use crate::proxy::{ProxyError, Target};

/// A proxy call in flight, owned by the session.
pub(super) type Pending = Pin<Box<dyn Future<Output = Done> + Send>>;

/// Waits for the call in flight and clears it; never resolves when there is none.
pub(super) async fn wait(proxy: &mut Option<Box<super::ProxyState>>) -> Done {
    match proxy.as_mut().and_then(|p| p.pending.as_mut()) {
        Some(call) => {
            let done = call.await;
            if let Some(p) = proxy.as_mut() {
                p.pending = None;
            }
            done
        }
        None => std::future::pending().await,
    }
}

/// A finished call and what to do with its answer.
pub(super) enum Done {
    Subscribe {
        /// The SUBSCRIBE for the broker, sent once allowed (`None` for an application
        /// destination: the reply is all it gets, as with `@SubscribeMapping`).
        forward: Option<OwnedFrame>,
        subscription: String,
        destination: String,
        receipt: Option<Vec<u8>>,
        result: Result<SubscribeResult, ProxyError>,
    },
    App {
        destination: String,
        receipt: Option<Vec<u8>>,
        result: Result<AppResult, ProxyError>,
    },
}

/// A back end's headers fit for a MESSAGE (server-owned ones dropped).
fn message_headers(m: &Message) -> Result<Vec<(&str, &str)>, ProxyError> {
    let mut out = Vec::with_capacity(m.headers.len());
    for (n, v) in &m.headers {
        if !header_ok(n, v) {
            return Err(ProxyError::Answer(format!("header `{n}` is not allowed")));
        }
        if !SERVER_MESSAGE_HEADERS.contains(&n.as_str()) {
            out.push((n.as_str(), v.as_str()));
        }
    }
    Ok(out)
}

/// Whether a handler registered through the embedding API takes `dest`.
fn hosted<'a>(mut patterns: impl Iterator<Item = &'a str>, dest: &[u8]) -> bool {
    patterns.any(|p| {
        let mut caps = Captures::new();
        pattern::capture(p.as_bytes(), dest, Separator::Slash, &mut caps)
    })
}

fn answer_error(e: PublishError) -> ProxyError {
    ProxyError::Answer(e.to_string())
}

impl Driver {
    /// The proxy route for a frame relay-core routed, when a back end decides on it
    /// (host handlers registered through the embedding API come first).
    pub(super) fn proxy_target(
        &self,
        route: &Route<'_, '_>,
        subscribe: bool,
        dest: &[u8],
    ) -> Option<(Target, Vec<(String, String)>)> {
        let p = self.shared.proxies.as_ref()?;
        let m = &self.shared;
        match (route, subscribe) {
            (Route::Broker(_), true) => p
                .subscribe_route(dest)
                .map(|(i, v)| (Target::Subscribe(i), v)),
            (Route::App(to), true) => {
                if hosted(m.subscribe_mappings.iter().map(|x| x.pattern.as_str()), to) {
                    return None;
                }
                p.subscribe_route(to)
                    .map(|(i, v)| (Target::Subscribe(i), v))
            }
            (Route::App(to), false) => {
                if hosted(m.message_mappings.iter().map(|x| x.pattern.as_str()), to) {
                    return None;
                }
                p.app_route(to).map(|(i, v)| (Target::App(i), v))
            }
            _ => None,
        }
    }

    /// Starts the call for a frame [`Driver::proxy_target`] chose. `forward` is the
    /// SUBSCRIBE for the broker when the destination is one; `receipt` the RECEIPT this
    /// server owes once the back end answered.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_proxy(
        &mut self,
        target: Target,
        vars: Vec<(String, String)>,
        destination: &[u8],
        subscription: Option<String>,
        forward: Option<OwnedFrame>,
        f: &Frame<'_>,
        src: &Bytes,
        receipt: Option<Vec<u8>>,
    ) {
        let Some(proxies) = self.shared.proxies.clone() else {
            return;
        };
        let frame = OwnedFrame::from_frame_in(f, src);
        let headers = json_headers(&frame, |n| {
            matches!(
                n,
                "receipt" | "transaction" | "content-length" | "destination"
            )
        });
        let session = self.sid().to_string();
        let user = self.user.clone();
        let destination = str_of(destination);
        let vars = vars.into_iter().collect();
        let Some(state) = self.proxy.as_mut() else {
            return;
        };
        state.pending = Some(match (target, subscription) {
            (Target::Subscribe(_), Some(subscription)) => {
                let request = SubscribeRequest {
                    session,
                    user,
                    destination,
                    subscription,
                    vars,
                    headers,
                };
                Box::pin(async move {
                    let result = proxies.call(target, &request).await;
                    Done::Subscribe {
                        forward,
                        subscription: request.subscription,
                        destination: request.destination,
                        receipt,
                        result,
                    }
                })
            }
            _ => {
                let request = AppRequest {
                    session,
                    user,
                    destination,
                    vars,
                    headers,
                    body: Body::of(&frame.body),
                };
                Box::pin(async move {
                    let result = proxies.call(target, &request).await;
                    Done::App {
                        destination: request.destination,
                        receipt,
                        result,
                    }
                })
            }
        });
    }

    /// Carries out a finished call's answer.
    pub(super) fn proxy_done(&mut self, done: Done) {
        match done {
            Done::Subscribe {
                forward,
                subscription,
                destination,
                receipt,
                result,
            } => match result.and_then(|r| self.subscribe_reply(&subscription, &destination, r)) {
                Ok(()) => {
                    if let Some(frame) = forward {
                        self.forward(frame);
                    }
                    self.owed_receipt(receipt);
                }
                Err(e) => {
                    tracing::info!(session = %self.sid(), %destination, reason = %e, "SUBSCRIBE refused by the subscribe proxy");
                    self.session.close_with_error(CloseReason::Rejected, e);
                }
            },
            Done::App {
                destination,
                receipt,
                result,
            } => match result.and_then(|r| self.app_answer(r)) {
                Ok(()) => self.owed_receipt(receipt),
                Err(e) => {
                    tracing::info!(session = %self.sid(), %destination, reason = %e, "application proxy failed");
                    match self.shared.config.proxy.app_errors {
                        AppErrors::Error => self.session.close_with_error(CloseReason::Rejected, e),
                        AppErrors::UserQueue => {
                            self.error_to_user_queue(&destination, &e);
                            self.owed_receipt(receipt);
                        }
                    }
                }
            },
        }
    }

    fn owed_receipt(&mut self, receipt: Option<Vec<u8>>) {
        if let Some(r) = receipt {
            self.session.queue_receipt(&r);
        }
    }

    /// The subscribe proxy's first MESSAGE, to this subscription only.
    fn subscribe_reply(
        &mut self,
        subscription: &str,
        destination: &str,
        r: SubscribeResult,
    ) -> Result<(), ProxyError> {
        let Some(reply) = r.reply else {
            return Ok(());
        };
        let mut frame = OwnedFrame::new(Command::Message).with_header("destination", destination);
        for (n, v) in message_headers(&reply)? {
            frame.push_header(n, v);
        }
        frame.body = reply.body_bytes()?;
        // Encoded now, not queued: it goes out before the RECEIPT that follows it.
        self.encode_item(ToClient::Message(Delivery {
            subscription: subscription.into(),
            message_id: format!("{}-sub", self.sid()).into(),
            message: Arc::new(frame.into()),
        }));
        Ok(())
    }

    /// The application proxy's publishes (`@SendTo`) and replies (`@SendToUser`),
    /// through the broker backend, so in relay mode they reach every instance.
    fn app_answer(&mut self, r: AppResult) -> Result<(), ProxyError> {
        let publisher = self.shared.publisher();
        for m in &r.publish {
            let body = m.body_bytes()?;
            publisher
                .publish(m.destination()?, &message_headers(m)?, body)
                .map_err(answer_error)?;
        }
        for m in &r.reply {
            let body = m.body_bytes()?;
            let headers = message_headers(m)?;
            match (&self.user, m.session_only) {
                (Some(user), false) => {
                    publisher
                        .send_to_user(user, m.destination()?, &headers, body)
                        .map_err(answer_error)?;
                }
                _ => publisher
                    .send_to_session(self.sid(), m.destination()?, &headers, body)
                    .map_err(answer_error)?,
            }
        }
        Ok(())
    }

    /// `--app-proxy-errors user-queue`: the error as a MESSAGE on this session's
    /// `/user/queue/errors`, with the destination it was about.
    fn error_to_user_queue(&mut self, about: &str, e: &ProxyError) {
        let publisher = self.shared.publisher();
        let message = e.to_string();
        let headers = [
            ("message", message.as_str()),
            ("about-destination", about),
            ("content-type", "text/plain;charset=utf-8"),
        ];
        let sent =
            publisher.send_to_session(self.sid(), "/queue/errors", &headers, message.clone());
        if let Err(err) = sent {
            tracing::warn!(error = %err, "application proxy error not delivered to /user/queue/errors");
        }
    }
}
