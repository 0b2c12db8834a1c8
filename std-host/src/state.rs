//! The state every connection task shares: the configuration, the broker backend, the
//! application routes and handlers, metrics, security, the dashboard's observer and the
//! shutdown signal. [`Shared`] is built once by [`crate::Server`] and only read after;
//! its counters (session ids, the connection limit) are atomic.

use std::sync::Arc;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::app::{
    Authenticator, MessageHandler, PublishCtx, Publisher, RouterSetup, SubscribeHandler,
};
use crate::broker::Broker;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbound::SessionId;

/// A registered application route: pattern and handler.
pub(crate) struct Mapping<H> {
    pub(crate) pattern: String,
    pub(crate) handler: H,
}

/// Everything a session task needs, shared.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) publish: Arc<PublishCtx>,
    pub(crate) message_mappings: Vec<Mapping<MessageHandler>>,
    pub(crate) subscribe_mappings: Vec<Mapping<SubscribeHandler>>,
    pub(crate) authenticator: Option<Authenticator>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) web: Arc<crate::web::observer::Observer>,
    pub(crate) security: crate::auth::Security,
    pub(crate) connections: Arc<Semaphore>,
    /// The HTTP proxies to back ends, when configured.
    pub(crate) proxies: Option<Arc<crate::proxy::Proxies>>,
}

impl Shared {
    /// A new session's id: 128 bits from the operating system's CSPRNG. They name the
    /// session's user queues on a broker other instances share, so they must be
    /// unique across instances and restarts and not guessable (as Spring's UUIDs).
    /// `None` only when the OS has no randomness to give: the connection is then
    /// refused rather than given a guessable id.
    pub(crate) fn new_session_id() -> Option<SessionId> {
        let mut bytes = [0u8; 16];
        match getrandom::fill(&mut bytes) {
            Ok(()) => Some(SessionId::new(u128::from_le_bytes(bytes))),
            Err(e) => {
                tracing::error!(error = %e, "no OS randomness for a session id; connection refused");
                None
            }
        }
    }

    pub(crate) fn routes(&self) -> &RouterSetup {
        &self.publish.routes
    }

    pub(crate) fn publisher(&self) -> Publisher {
        Publisher::new(self.publish.clone())
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(crate) fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if self.is_shutting_down() {
            return None;
        }
        match self.connections.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                self.metrics.connections_refused.inc();
                None
            }
        }
    }
}

/// Resolves once shutdown has been requested (or the sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
