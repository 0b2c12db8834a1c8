//! Opening a session: the CONNECT authenticated (a host authenticator, else the
//! configured methods in auth/), the broker backend's session opened within
//! [`OPEN_TIMEOUT`], then CONNECTED, or an ERROR naming why not. With a connect
//! proxy, the back end is asked after authentication and before the broker session
//! opens: it may rename the user, add claims and CONNECTED headers, or refuse.

use std::time::Duration;

use stomp_relay_core::session::CloseReason;

use super::clock::now;
use super::Driver;
use crate::broker::SessionInfo;
use crate::frame::OwnedFrame;
use crate::proxy::protocol::{ConnectRequest, ConnectResult, Headers};
use crate::proxy::{Proxies, ProxyError, Target};

/// How long CONNECT may wait for the broker backend to open the session.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

impl Driver {
    /// Authenticates the CONNECT, opens the broker session and accepts (CONNECTED) or
    /// refuses (ERROR) it.
    pub(super) async fn open(&mut self, connect: OwnedFrame) {
        let shared = self.shared.clone();
        let mut user = match &shared.authenticator {
            Some(auth) => match auth(&connect) {
                Ok(u) => u,
                Err(why) => {
                    self.session.close_with_error(CloseReason::Rejected, why);
                    return;
                }
            },
            // The configured methods (JWT, users file, anonymous): auth/mod.rs.
            None => match self.guard.authenticate(&shared.security, &connect).await {
                Ok(u) => u,
                Err(why) => {
                    tracing::info!(session = %self.sid(), reason = %why, "authentication failed");
                    self.session
                        .close_with_error(CloseReason::Rejected, crate::auth::AUTH_FAILED);
                    return;
                }
            },
        };
        if let Some(p) = shared.proxies.as_ref().filter(|p| p.has_connect()) {
            match self.ask_connect_proxy(p, &connect, user.as_deref()).await {
                Ok(r) => {
                    if let Some(u) = r.user.filter(|u| !u.is_empty()) {
                        user = Some(u);
                    }
                    self.guard.grant(user.clone(), r.claims);
                    if let Some(p) = self.proxy.as_mut() {
                        p.connected_extra = r.headers.into_iter().collect();
                    }
                }
                Err(e) => {
                    tracing::info!(session = %self.sid(), reason = %e, "connect proxy refused the session");
                    self.session.close_with_error(CloseReason::Rejected, e);
                    return;
                }
            }
        }
        if let Some(u) = &user {
            if !self.session.set_user(u.as_bytes()) {
                self.session
                    .close_with_error(CloseReason::Rejected, "Invalid user name");
                return;
            }
        }
        let info = SessionInfo {
            id: self.sid(),
            user: user.clone(),
            transport: self.transport,
            connect,
        };
        let opened = tokio::time::timeout(
            OPEN_TIMEOUT,
            shared.broker.open_session(info, self.client.clone()),
        )
        .await;
        match opened {
            Ok(Ok(b)) => {
                self.broker = Some(b);
                if let Some(u) = user {
                    shared.publish.users.add(&u, self.sid());
                    self.user = Some(u);
                }
                self.session.accept(now());
            }
            Ok(Err(e)) => self.session.close_with_error(CloseReason::BrokerClosed, e),
            Err(_) => self
                .session
                .close_with_error(CloseReason::BrokerClosed, "Broker not available."),
        }
    }

    /// The connect proxy's verdict on `connect` (authenticated as `user`).
    async fn ask_connect_proxy(
        &mut self,
        proxies: &Proxies,
        connect: &OwnedFrame,
        user: Option<&str>,
    ) -> Result<ConnectResult, ProxyError> {
        // The headers log lines redact are the ones withheld unless configured.
        let secret = |n: &str| {
            !proxies.config.connect_passcode
                && crate::auth::SECRET_HEADERS
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(n))
        };
        let (remote, http_headers) = match self.proxy.as_mut() {
            Some(p) => (p.remote.take(), std::mem::take(&mut p.http_headers)),
            None => (None, Vec::new()),
        };
        let request = ConnectRequest {
            session: self.sid().to_string(),
            transport: self.transport,
            remote_addr: remote.map(|a| a.to_string()),
            headers: json_headers(connect, secret),
            http_headers: http_headers.into_iter().collect(),
            user,
            claims: self.guard.claims(),
        };
        let result: ConnectResult = proxies.call(Target::Connect, &request).await?;
        for (n, v) in &result.headers {
            if !header_ok(n, v) || CONNECTED_OWN.contains(&n.as_str()) {
                return Err(ProxyError::Answer(format!(
                    "CONNECTED header `{n}` is not allowed"
                )));
            }
        }
        Ok(result)
    }
}

/// CONNECTED headers the server sets itself; a back end cannot replace them.
const CONNECTED_OWN: [&str; 5] = ["version", "heart-beat", "session", "server", "user-name"];

/// A header a back end may set: a name without `:` or line breaks, a value without
/// line breaks (either would break the frame for clients that do not escape).
pub(super) fn header_ok(name: &str, value: &str) -> bool {
    !name.is_empty() && !name.contains([':', '\n', '\r']) && !value.contains(['\n', '\r'])
}

/// A frame's headers as the proxies' JSON object (first value wins, as STOMP reads
/// them), without those `skip` names.
pub(super) fn json_headers(frame: &OwnedFrame, skip: impl Fn(&str) -> bool) -> Headers {
    let mut out = Headers::new();
    for (n, v) in &frame.headers {
        let n = String::from_utf8_lossy(n);
        if !skip(&n) {
            out.entry(n.into_owned())
                .or_insert_with(|| String::from_utf8_lossy(v).into_owned());
        }
    }
    out
}
