//! The server: listeners (HTTP/WebSocket and plain TCP), the HTTP endpoints, the
//! shared state every session task reads, and graceful shutdown.
//!
//! One tokio task per client connection runs [`crate::session::run`]. Shutdown is a
//! broadcast: the accept loops stop, every session sends ERROR `Server shutting down`
//! and closes with 1001, the broker backend gets to DISCONNECT upstream, and
//! [`Server::run`] returns once everything finished or the shutdown timeout passed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;

use crate::app::{
    Authenticator, MessageHandler, PublishCtx, Publisher, RouterSetup, SubscribeHandler,
};
use crate::broker::Broker;
use crate::config::{BrokerKind, Config};
use crate::metrics::Metrics;
use crate::simple::SimpleBrokerBackend;
use crate::state::{Mapping, Shared};

/// Builds a [`Server`]: configuration, broker backend, handlers.
pub struct ServerBuilder {
    config: Config,
    broker: Option<Arc<dyn Broker>>,
    message_mappings: Vec<Mapping<MessageHandler>>,
    subscribe_mappings: Vec<Mapping<SubscribeHandler>>,
    authenticator: Option<Authenticator>,
    routes: Vec<RoutesFn>,
}

type RoutesFn = Box<dyn FnOnce(Publisher) -> axum::Router + Send>;

impl ServerBuilder {
    /// Serves extra HTTP routes next to the endpoints (`/ws`), `/healthz`, `/readyz` and `/metrics`: an
    /// application page, a REST endpoint that publishes. `make` gets the server's
    /// [`Publisher`] once the broker exists.
    pub fn http_routes<F>(mut self, make: F) -> Self
    where
        F: FnOnce(Publisher) -> axum::Router + Send + 'static,
    {
        self.routes.push(Box::new(make));
        self
    }

    /// Uses this broker backend instead of the one `config.broker` names (the relay
    /// backend plugs in here).
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Registers an `@MessageMapping` handler for SENDs to application destinations
    /// matching `pattern` (e.g. `/pub/chat/{room}`). Handlers are tried in order; a SEND
    /// no handler matches takes the default route (`/pub/x` to the first broker prefix, `/sub/x`).
    pub fn message_mapping<F>(mut self, pattern: &str, handler: F) -> Self
    where
        F: Fn(&crate::app::AppMessage) -> Vec<crate::app::Reply> + Send + Sync + 'static,
    {
        self.message_mappings.push(Mapping {
            pattern: pattern.to_string(),
            handler: Arc::new(handler),
        });
        self
    }

    /// Registers an `@SubscribeMapping` handler: a SUBSCRIBE to a matching application
    /// destination gets the returned payload once, as a MESSAGE on that subscription.
    pub fn subscribe_mapping<F>(mut self, pattern: &str, handler: F) -> Self
    where
        F: Fn(&crate::app::AppMessage) -> Option<crate::app::Payload> + Send + Sync + 'static,
    {
        self.subscribe_mappings.push(Mapping {
            pattern: pattern.to_string(),
            handler: Arc::new(handler),
        });
        self
    }

    /// Authenticates CONNECTs (default: the user is the CONNECT's `login` header, if any).
    pub fn authenticator<F>(mut self, f: F) -> Self
    where
        F: Fn(&crate::frame::OwnedFrame) -> Result<Option<String>, String> + Send + Sync + 'static,
    {
        self.authenticator = Some(Arc::new(f));
        self
    }

    /// Binds the listeners. The server does not accept connections until [`Server::run`].
    pub async fn bind(self) -> io::Result<Server> {
        let config = self.config;
        let users = Arc::new(crate::users::Users::new());
        let (broker, registry): (Arc<dyn Broker>, _) = match (self.broker, config.broker) {
            (Some(b), _) => (b, None),
            (None, BrokerKind::Simple) => (Arc::new(SimpleBrokerBackend::new()) as _, None),
            (None, BrokerKind::Relay) => {
                let opts = crate::relay::RelayOptions::from_config(&config);
                let relay = crate::relay::start(opts, users.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
                (relay.broker, Some(relay.registry))
            }
        };
        let web = crate::web::Observer::new();
        let broker = web.wrap(broker);
        let http = TcpListener::bind(config.listen).await.map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.listen))
        })?;
        let tcp = match config.tcp_listen {
            Some(a) => Some(TcpListener::bind(a).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen on {a} (--tcp-listen): {e}"),
                )
            })?),
            None => None,
        };
        let security = crate::auth::Security::build(&config.security, config.listen)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let metrics = Metrics::new();
        let publish = Arc::new(PublishCtx {
            broker: broker.clone(),
            users,
            unresolved: metrics.user_messages_unresolved.clone(),
            routes: RouterSetup::new(&config),
        });
        let proxies = crate::proxy::Proxies::new(&config.proxy, metrics.proxy.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            .map(Arc::new);
        let shared = Arc::new(Shared {
            proxies,
            connections: Arc::new(Semaphore::new(
                config.limits.max_connections.min(Semaphore::MAX_PERMITS),
            )),
            config,
            broker,
            metrics,
            publish,
            message_mappings: self.message_mappings,
            subscribe_mappings: self.subscribe_mappings,
            authenticator: self.authenticator,
            shutdown: shutdown_rx,
            web,
            security,
        });
        let routes = self
            .routes
            .into_iter()
            .fold(None, |acc: Option<axum::Router>, make| {
                let r = make(shared.publisher());
                Some(match acc {
                    Some(a) => a.merge(r),
                    None => r,
                })
            });
        Ok(Server {
            shared,
            registry,
            http,
            tcp,
            shutdown_tx,
            tracker: TaskTracker::new(),
            routes,
        })
    }
}

/// A bound server. [`Server::run`] serves until shut down.
pub struct Server {
    shared: Arc<Shared>,
    /// Relay mode's user registry connection, told to say goodbye at shutdown.
    registry: Option<Arc<crate::relay::user_registry::Registry>>,
    http: TcpListener,
    tcp: Option<TcpListener>,
    shutdown_tx: watch::Sender<bool>,
    tracker: TaskTracker,
    routes: Option<axum::Router>,
}

/// Triggers graceful shutdown of a running [`Server`]. Cheap to clone.
#[derive(Clone)]
pub struct ShutdownHandle {
    tx: watch::Sender<bool>,
}

impl ShutdownHandle {
    /// Starts graceful shutdown.
    pub fn shutdown(&self) {
        let _ = self.tx.send(true);
    }
}

impl Server {
    /// A builder over `config`.
    pub fn builder(config: Config) -> ServerBuilder {
        ServerBuilder {
            config,
            broker: None,
            message_mappings: Vec::new(),
            subscribe_mappings: Vec::new(),
            authenticator: None,
            routes: Vec::new(),
        }
    }

    /// The bound HTTP/WebSocket address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.shared.config.listen)
    }

    /// The bound plain-TCP STOMP address, if enabled.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A publisher for application messages (usable before and while running).
    pub fn publisher(&self) -> Publisher {
        self.shared.publisher()
    }

    /// A handle that starts graceful shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            tx: self.shutdown_tx.clone(),
        }
    }

    /// Serves until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> io::Result<()> {
        let handle = self.shutdown_handle();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received, shutting down");
            handle.shutdown();
        });
        self.run().await
    }

    /// Serves until [`ShutdownHandle::shutdown`], then shuts down gracefully: stop
    /// accepting, close every session (ERROR `Server shutting down`, close 1001), let the
    /// broker DISCONNECT upstream, all within the configured shutdown timeout.
    pub async fn run(self) -> io::Result<()> {
        let Server {
            shared,
            registry,
            http,
            tcp,
            shutdown_tx,
            tracker,
            routes,
        } = self;
        let mut stop = shared.shutdown.clone();
        tracing::info!(
            listen = %http.local_addr()?,
            tcp = ?tcp.as_ref().and_then(|l| l.local_addr().ok()),
            broker = ?shared.config.broker,
            endpoints = ?shared.config.endpoints,
            sockjs = shared.config.sockjs.is_some(),
            "stomp-relay listening"
        );
        if !shared.config.stats_interval.is_zero() {
            let source = crate::stats_log::StatsSource {
                metrics: shared.metrics.clone(),
                broker: shared.broker.clone(),
                kind: shared.config.broker,
                shutdown: shared.shutdown.clone(),
            };
            tokio::spawn(crate::stats_log::run(source, shared.config.stats_interval));
        }

        let endpoints = crate::endpoint::Endpoints::new(shared.clone(), tracker.clone());
        let app = axum::Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .merge(crate::web::routes(crate::web::WebState {
                config: shared.config.clone(),
                broker: shared.broker.clone(),
                metrics: shared.metrics.clone(),
                publish: shared.publish.clone(),
                observer: shared.web.clone(),
                origins: shared.security.origins().clone(),
                shutdown: shared.shutdown.clone(),
            }))
            .with_state(AppState {
                shared: shared.clone(),
            })
            .merge(crate::endpoint::routes(endpoints.clone()));
        let app = match shared.config.sockjs {
            Some(cfg) => app.merge(crate::sockjs::routes(endpoints, cfg)),
            None => app,
        };
        let app = match routes {
            Some(r) => app.merge(r),
            None => app,
        };
        let mut http_stop = stop.clone();
        let http_shared = shared.clone();
        let http_task = tokio::spawn(async move {
            // Per-IP limit, TLS and the request-head timeout (abuse.rs); it also sets
            // TCP_NODELAY so small STOMP frames never wait for Nagle + delayed ACK.
            let http = crate::listen::HttpListener::new(http, http_shared);
            axum::serve(
                http,
                app.into_make_service_with_connect_info::<crate::endpoint::PeerAddr>(),
            )
            .with_graceful_shutdown(async move { crate::state::stopped(&mut http_stop).await })
            .await
        });

        if let Some(tcp) = tcp {
            let shared = shared.clone();
            let tracker2 = tracker.clone();
            let mut tcp_stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = crate::state::stopped(&mut tcp_stop) => break,
                        accepted = tcp.accept() => match accepted {
                            Ok((stream, peer)) => {
                                let Some(ip) = shared.security.ip_limiter.admit(peer.ip()) else {
                                    shared.metrics.connections_refused.inc();
                                    continue;
                                };
                                let Some(permit) = shared.admit() else {
                                    drop(stream);
                                    continue;
                                };
                                tracing::debug!(%peer, "tcp connection");
                                let shared = shared.clone();
                                tracker2.spawn(async move {
                                    // Plain or TLS (tls.rs).
                                    crate::listen::run_tcp_session(stream, peer, shared).await;
                                    drop((permit, ip));
                                });
                            }
                            Err(e) => {
                                // EMFILE and friends: back off instead of spinning.
                                tracing::warn!(error = %e, "tcp accept failed");
                                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
            });
        }

        crate::state::stopped(&mut stop).await;
        let deadline = tokio::time::Instant::now() + shared.config.limits.shutdown_timeout;
        tracing::info!("shutting down: closing sessions");
        tracker.close();
        if tokio::time::timeout_at(deadline, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("sessions still open at the shutdown timeout");
        }
        if let Some(r) = &registry {
            if tokio::time::timeout_at(deadline, r.stop()).await.is_err() {
                tracing::warn!("user registry connection did not close in time");
            }
        }
        if tokio::time::timeout_at(deadline, shared.broker.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("broker shutdown did not finish in time");
        }
        let _ = tokio::time::timeout_at(deadline, http_task).await;
        drop(shutdown_tx);
        tracing::info!("stopped");
        Ok(())
    }
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<AppState>) -> Response {
    let stats = st.shared.broker.stats();
    if st.shared.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if stats.available {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "broker not available\n").into_response()
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    let body = st.shared.metrics.render(st.shared.broker.stats());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
