//! Opening a session: the CONNECT authenticated (a host authenticator, else the
//! configured methods in auth/), the broker backend's session opened within
//! [`OPEN_TIMEOUT`], then CONNECTED, or an ERROR naming why not.

use std::time::Duration;

use stomp_relay_core::session::CloseReason;

use super::clock::now;
use super::Driver;
use crate::broker::SessionInfo;
use crate::frame::OwnedFrame;

/// How long CONNECT may wait for the broker backend to open the session.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

impl Driver {
    /// Authenticates the CONNECT, opens the broker session and accepts (CONNECTED) or
    /// refuses (ERROR) it.
    pub(super) async fn open(&mut self, connect: OwnedFrame) {
        let shared = self.shared.clone();
        let user = match &shared.authenticator {
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
}
