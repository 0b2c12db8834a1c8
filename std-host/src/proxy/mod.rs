//! HTTP proxies to back ends in any language (Centrifugo's proxies with STOMP
//! semantics): the connect proxy allows or denies CONNECT and names the user, the
//! subscribe proxy allows or denies SUBSCRIBE and may answer it once
//! (`@SubscribeMapping`), the application proxy handles SENDs to application
//! destinations (`@MessageMapping` with `@SendTo` / `@SendToUser`). The JSON is in
//! [`protocol`]; docs/proxies.md is the reference for back end authors.
//!
//! What this module owns: one pooled HTTP client (keep-alive; HTTP/2 where a TLS back
//! end offers it by ALPN), the per-instance bound on calls in flight, the call timeout
//! (waiting for a slot included), one retry of a refused connection for the idempotent
//! connect and subscribe calls (never for application SENDs), a circuit breaker per back
//! end, and the metrics. The session task decides what an answer means for its client.
//!
//! Invariant: every call ends within the timeout with an answer or a [`ProxyError`]; a
//! slow or dead back end costs the clients it serves an ERROR, never a stalled server.

pub mod breaker;
pub mod protocol;

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use serde::Serialize;
use stomp_relay_core::pattern::{self, Captures, Separator};
use tokio::sync::Semaphore;

use crate::config::proxy::ProxyConfig;
use breaker::Breaker;

/// Largest answer read from a back end.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// Which proxy a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Connect,
    /// The subscribe route at this index.
    Subscribe(usize),
    /// The application route at this index.
    App(usize),
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Connect => "connect",
            Target::Subscribe(_) => "subscribe",
            Target::App(_) => "app",
        }
    }

    /// Whether a call may be repeated without the back end acting twice.
    fn idempotent(self) -> bool {
        !matches!(self, Target::App(_))
    }
}

/// Why a call did not produce an answer the session can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The back end said no (its `error.message`).
    Denied(String),
    /// No answer within the timeout.
    Timeout(Duration),
    /// The circuit is open after repeated failures.
    CircuitOpen,
    /// An HTTP status other than 2xx.
    Status(u16),
    /// The back end could not be reached or the connection failed.
    Transport(String),
    /// The answer is not the JSON the protocol asks for.
    Answer(String),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Denied(m) => f.write_str(m),
            ProxyError::Timeout(d) => {
                write!(f, "Back end did not answer within {} ms", d.as_millis())
            }
            ProxyError::CircuitOpen => {
                f.write_str("Back end unavailable (failing; calls paused for a while)")
            }
            ProxyError::Status(s) => write!(f, "Back end failed (HTTP {s})"),
            ProxyError::Transport(e) => write!(f, "Back end unreachable: {e}"),
            ProxyError::Answer(e) => write!(f, "Back end answer not understood: {e}"),
        }
    }
}

impl std::error::Error for ProxyError {}

impl ProxyError {
    fn outcome(&self) -> &'static str {
        match self {
            ProxyError::Denied(_) => "denied",
            ProxyError::Timeout(_) => "timeout",
            ProxyError::CircuitOpen => "circuit_open",
            ProxyError::Status(_) => "http_error",
            ProxyError::Transport(_) => "unreachable",
            ProxyError::Answer(_) => "bad_answer",
        }
    }

    /// Whether this counts against the back end's health (a refusal or a 4xx is the
    /// back end working as meant).
    fn is_failure(&self) -> bool {
        match self {
            ProxyError::Denied(_) | ProxyError::CircuitOpen => false,
            ProxyError::Status(s) => *s >= 500,
            _ => true,
        }
    }
}

/// Why the proxies could not be set up at startup.
#[derive(Debug)]
pub enum SetupError {
    /// A back end URL that does not parse.
    Url { url: String, reason: String },
    /// The HTTP client could not be built (no TLS roots, for instance).
    Client(reqwest::Error),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Url { url, reason } => write!(f, "proxy URL `{url}`: {reason}"),
            SetupError::Client(e) => write!(f, "proxy HTTP client: {e}"),
        }
    }
}

impl std::error::Error for SetupError {}

type ProxyLabel = [(&'static str, &'static str); 1];
type OutcomeLabels = [(&'static str, &'static str); 2];

fn duration_histogram() -> Histogram {
    // 0.5 ms .. about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The proxies' metrics, registered with the server's.
#[derive(Clone)]
pub struct ProxyMetrics {
    calls: Family<OutcomeLabels, Counter>,
    duration: Family<ProxyLabel, Histogram, fn() -> Histogram>,
    open: Family<ProxyLabel, Gauge>,
}

impl ProxyMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &mut Registry) -> ProxyMetrics {
        let m = ProxyMetrics {
            calls: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            open: Family::default(),
        };
        registry.register(
            "proxy_calls",
            "Calls to the HTTP proxies' back ends, by proxy and outcome",
            m.calls.clone(),
        );
        registry.register(
            "proxy_call_duration_seconds",
            "Time from a proxy call's start to its answer or error, by proxy",
            m.duration.clone(),
        );
        registry.register(
            "proxy_circuits_open",
            "Back ends whose circuit is open now (calls fail at once), by proxy",
            m.open.clone(),
        );
        m
    }

    /// Calls to `proxy` (connect, subscribe, app) that ended with `outcome`.
    pub fn calls(&self, proxy: &'static str, outcome: &'static str) -> u64 {
        self.calls
            .get_or_create(&[("proxy", proxy), ("outcome", outcome)])
            .get()
    }
}

/// A back end endpoint and its circuit.
struct Endpoint {
    url: reqwest::Url,
    breaker: Mutex<Breaker>,
}

/// A destination pattern served by an endpoint.
struct Route {
    pattern: String,
    endpoint: Endpoint,
}

/// The configured proxies, shared by every session.
pub struct Proxies {
    client: reqwest::Client,
    slots: Semaphore,
    timeout: Duration,
    connect: Option<Endpoint>,
    subscribe: Vec<Route>,
    app: Vec<Route>,
    /// The configuration they came from.
    pub config: ProxyConfig,
    metrics: ProxyMetrics,
}

impl fmt::Debug for Proxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxies")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A pattern match: the route's index and the variables it captured.
pub type Matched = (usize, Vec<(String, String)>);

fn find(routes: &[Route], destination: &[u8]) -> Option<Matched> {
    routes.iter().enumerate().find_map(|(i, r)| {
        let mut caps = Captures::new();
        pattern::capture(
            r.pattern.as_bytes(),
            destination,
            Separator::Slash,
            &mut caps,
        )
        .then(|| {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (i, caps.iter().map(|(n, v)| (text(n), text(v))).collect())
        })
    })
}

impl Proxies {
    /// Builds the client and endpoints; `None` when no proxy is configured.
    pub fn new(config: &ProxyConfig, metrics: ProxyMetrics) -> Result<Option<Proxies>, SetupError> {
        if !config.any() {
            return Ok(None);
        }
        let endpoint = |url: &str| -> Result<Endpoint, SetupError> {
            Ok(Endpoint {
                url: reqwest::Url::parse(url).map_err(|e| SetupError::Url {
                    url: url.to_owned(),
                    reason: e.to_string(),
                })?,
                breaker: Mutex::new(Breaker::new(
                    config.breaker_failures,
                    config.breaker_cooldown,
                )),
            })
        };
        let routes = |list: &[crate::config::proxy::ProxyRoute]| -> Result<Vec<Route>, SetupError> {
            list.iter()
                .map(|r| {
                    Ok(Route {
                        pattern: r.pattern.clone(),
                        endpoint: endpoint(&r.url)?,
                    })
                })
                .collect()
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("stomp-relay/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(SetupError::Client)?;
        Ok(Some(Proxies {
            client,
            slots: Semaphore::new(config.concurrency),
            timeout: config.timeout,
            connect: config.connect.as_deref().map(endpoint).transpose()?,
            subscribe: routes(&config.subscribe)?,
            app: routes(&config.app)?,
            config: config.clone(),
            metrics,
        }))
    }

    /// Whether CONNECT goes to a back end.
    pub fn has_connect(&self) -> bool {
        self.connect.is_some()
    }

    /// The subscribe route for a client destination.
    pub fn subscribe_route(&self, destination: &[u8]) -> Option<Matched> {
        find(&self.subscribe, destination)
    }

    /// The application route for an application destination.
    pub fn app_route(&self, destination: &[u8]) -> Option<Matched> {
        find(&self.app, destination)
    }

    fn endpoint(&self, t: Target) -> Option<&Endpoint> {
        match t {
            Target::Connect => self.connect.as_ref(),
            Target::Subscribe(i) => self.subscribe.get(i).map(|r| &r.endpoint),
            Target::App(i) => self.app.get(i).map(|r| &r.endpoint),
        }
    }

    /// POSTs `request` to `target`'s back end and reads its answer's `result`.
    pub async fn call<Req: Serialize, Res: DeserializeOwned>(
        &self,
        target: Target,
        request: &Req,
    ) -> Result<Res, ProxyError> {
        let Some(ep) = self.endpoint(target) else {
            return Err(ProxyError::Answer("no such proxy route".into()));
        };
        let start = Instant::now();
        let label = target.label();
        let admitted = ep
            .breaker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(start);
        let result = if admitted {
            let mut guard = Abandon { ep, done: false };
            let r = tokio::time::timeout(self.timeout, self.exchange(ep, target, request))
                .await
                .unwrap_or(Err(ProxyError::Timeout(self.timeout)));
            guard.done = true;
            let mut b = ep.breaker.lock().unwrap_or_else(|p| p.into_inner());
            let was_open = b.is_open();
            match &r {
                Err(e) if e.is_failure() => b.failure(Instant::now()),
                _ => b.success(),
            }
            match (was_open, b.is_open()) {
                (false, true) => {
                    tracing::warn!(proxy = label, url = %ep.url, "back end failing: circuit opened");
                    self.metrics.open.get_or_create(&[("proxy", label)]).inc();
                }
                (true, false) => {
                    tracing::info!(proxy = label, url = %ep.url, "back end answering again: circuit closed");
                    self.metrics.open.get_or_create(&[("proxy", label)]).dec();
                }
                _ => {}
            }
            r
        } else {
            Err(ProxyError::CircuitOpen)
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.metrics
            .calls
            .get_or_create(&[("proxy", label), ("outcome", outcome)])
            .inc();
        self.metrics
            .duration
            .get_or_create(&[("proxy", label)])
            .observe(start.elapsed().as_secs_f64());
        if let Err(e) = &result {
            if e.is_failure() {
                tracing::info!(proxy = label, url = %ep.url, error = %e, "proxy call failed");
            }
        }
        result
    }

    async fn exchange<Req: Serialize, Res: DeserializeOwned>(
        &self,
        ep: &Endpoint,
        target: Target,
        request: &Req,
    ) -> Result<Res, ProxyError> {
        let body = serde_json::to_vec(request).map_err(|e| ProxyError::Answer(e.to_string()))?;
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| ProxyError::Transport("shutting down".into()))?;
        let mut retried = false;
        let response = loop {
            let sent = self
                .client
                .post(ep.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::ACCEPT, "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) => break r,
                // Nothing reached the back end: safe to try once more where idempotent.
                Err(e) if e.is_connect() && target.idempotent() && !retried => retried = true,
                Err(e) => return Err(ProxyError::Transport(root_cause(&e))),
            }
        };
        let status = response.status();
        if !status.is_success() {
            return Err(ProxyError::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER as u64)
        {
            return Err(ProxyError::Answer(format!(
                "larger than {MAX_ANSWER} bytes"
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ProxyError::Transport(root_cause(&e)))?;
        if bytes.len() > MAX_ANSWER {
            return Err(ProxyError::Answer(format!(
                "larger than {MAX_ANSWER} bytes"
            )));
        }
        serde_json::from_slice::<protocol::Answer<Res>>(&bytes)
            .map_err(|e| ProxyError::Answer(e.to_string()))?
            .into_result()
    }
}

/// Marks the breaker's trial as abandoned when a call's future is dropped unfinished.
struct Abandon<'a> {
    ep: &'a Endpoint,
    done: bool,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut b = self.ep.breaker.lock().unwrap_or_else(|p| p.into_inner());
            b.abandoned(Instant::now());
        }
    }
}

/// reqwest's error chain, innermost last, in one line (`connection refused` and the like).
fn root_cause(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}
