//! A client session relayed through a per-session upstream to a scripted fake broker
//! (fine here: this crate is sans-IO; real brokers are tested by the hosts).
//!
//! Checks what a client and the broker observe end to end: the broker sees the relay's
//! credentials (never the client's), mapped destinations and the client's receipt
//! requests; the client sees CONNECTED only after the broker's, the broker's RECEIPT,
//! MESSAGEs on its own destination, and `Connection to broker closed.` when the broker
//! sends ERROR.

use stomp_relay_core::codec::{Decoded, Decoder, EncodeOptions, Header, Status, Version};
use stomp_relay_core::relay::{message_to_client, ClientRelay, Forward, BROKER_CLOSED};
use stomp_relay_core::router::{Destination, Router, RouterConfig};
use stomp_relay_core::session::{
    CloseReason, Event, Session, SessionConfig, SessionId, MAX_CONTROL_FRAME,
};
use stomp_relay_core::upstream::{Credentials, Inbound, UpstreamConfig, UpstreamEvent};
use stomp_relay_core::{Dialect, Instant};

const CREDS: Credentials<'static> = Credentials {
    login: Some("relay"),
    passcode: Some("relay-secret"),
    virtual_host: Some("prod"),
    client_id: None,
};
const PREFIXES: &[&str] = &["/sub/", "/topic/", "/queue/"];

/// Everything both peers saw, as text.
#[derive(Default)]
struct Wire {
    to_broker: Vec<String>,
    to_client: Vec<String>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Host {
    session: Session<8>,
    relay: ClientRelay,
    held: Vec<u8>,
    wire: Wire,
}

impl Host {
    fn flush(&mut self, now: Instant) {
        let mut out = [0u8; MAX_CONTROL_FRAME];
        while let Some(n) = self
            .relay
            .upstream()
            .poll_transmit(now, &CREDS, &mut out)
            .unwrap()
        {
            self.wire.to_broker.push(text(&out[..n]));
        }
        while let Some(n) = self.session.poll_transmit(now, &mut out).unwrap() {
            self.wire.to_client.push(text(&out[..n]));
        }
    }

    fn client_sends(&mut self, now: Instant, wire: &[u8]) {
        let mut hs = [Header::EMPTY; 16];
        let Status::Complete((Decoded::Frame(f), _)) = Decoder::new(self.session.version())
            .decode(wire, &mut hs)
            .unwrap()
        else {
            panic!("bad script frame")
        };
        let router = Router::new(RouterConfig::default());
        let ev = self.session.handle_frame(now, &f).unwrap();
        let mut dest = [0u8; 128];
        let d = match ev {
            Some(Event::Send { destination }) | Some(Event::Subscribe { destination, .. }) => {
                dest[..destination.len()].copy_from_slice(destination);
                Some(&dest[..destination.len()])
            }
            Some(Event::Connect(_)) => {
                self.relay.upstream().poll_connect(now).unwrap();
                self.relay.upstream().on_transport_connected(now);
                None
            }
            _ => None,
        };
        let broker_bound = match d {
            Some(d) => matches!(router.classify(d).unwrap(), Destination::Broker(_)),
            None => !f.command.is_connect(),
        };
        if broker_bound {
            let mut out = [0u8; 1024];
            match self
                .relay
                .forward(now, &f, d, Dialect::RabbitMq, &mut out)
                .unwrap()
            {
                Forward::Write(n) => self.wire.to_broker.push(text(&out[..n])),
                Forward::Hold(n) => self.held.extend_from_slice(&out[..n]),
            }
        } else if !f.command.is_connect() {
            // Handled here: answer the receipt ourselves, keep the broker session alive.
            if let Some(r) = f.receipt() {
                let r: Vec<u8> = r.bytes().collect();
                self.session.queue_receipt(&r);
            }
            self.relay.on_local_frame(now);
        }
        self.flush(now);
    }

    fn broker_sends(&mut self, now: Instant, wire: &[u8]) {
        let mut hs = [Header::EMPTY; 16];
        let Status::Complete((Decoded::Frame(f), _)) =
            Decoder::new(Version::V1_2).decode(wire, &mut hs).unwrap()
        else {
            panic!("bad script frame")
        };
        let mut out = [0u8; 1024];
        match self.relay.upstream().handle_frame(now, &f) {
            Some(Inbound::Connected(_)) => {
                self.session.accept(now);
                if !self.held.is_empty() {
                    self.wire.to_broker.push(text(&self.held));
                    self.held.clear();
                    self.relay.on_flushed(now);
                }
            }
            Some(Inbound::Message(m)) => {
                let mut scratch = [0u8; 256];
                let mut headers = [Header::EMPTY; 17];
                let c = message_to_client(
                    &m,
                    None,
                    Dialect::RabbitMq,
                    PREFIXES,
                    &mut scratch,
                    &mut headers,
                )
                .unwrap();
                let n = stomp_relay_core::codec::encode(
                    &c,
                    EncodeOptions::passthrough(self.session.version()),
                    &mut out,
                )
                .unwrap();
                self.wire.to_client.push(text(&out[..n]));
                self.session.handle_transmitted(now);
            }
            Some(Inbound::Receipt(r)) => {
                let n = stomp_relay_core::codec::encode(
                    &r,
                    EncodeOptions::passthrough(self.session.version()),
                    &mut out,
                )
                .unwrap();
                self.wire.to_client.push(text(&out[..n]));
                self.session.handle_transmitted(now);
            }
            Some(Inbound::Error(_)) | None => {}
        }
        while let Some(e) = self.relay.upstream().poll_event() {
            if let UpstreamEvent::Lost(_) = e {
                self.session
                    .close_with_error(CloseReason::BrokerClosed, BROKER_CLOSED);
            }
        }
        self.flush(now);
    }
}

#[test]
fn per_session_relay_end_to_end_with_a_scripted_broker() {
    let t = Instant::from_millis;
    let mut h = Host {
        session: Session::new(
            SessionId(1),
            SessionConfig {
                defer_connected: true,
                local_receipts: false,
                ..SessionConfig::default()
            },
            t(0),
        ),
        relay: ClientRelay::new(UpstreamConfig::default(), 16 * 1024, t(0)),
        held: Vec::new(),
        wire: Wire::default(),
    };

    h.client_sends(
        t(1),
        b"CONNECT\naccept-version:1.2\nlogin:browser\npasscode:browser-pw\nhost:evil\n\n\0",
    );
    assert_eq!(
        h.wire.to_broker,
        ["CONNECT\naccept-version:1.1,1.2\nheart-beat:10000,10000\nhost:prod\nlogin:relay\npasscode:relay-secret\n\n\0"]
    );
    assert!(
        h.wire.to_client.is_empty(),
        "no CONNECTED before the broker's"
    );

    // A pipelining client: SUBSCRIBE before CONNECTED is held, then flushed in order.
    h.client_sends(
        t(2),
        b"SUBSCRIBE\nid:0\ndestination:/sub/chat/room1\nreceipt:r-1\n\n\0",
    );
    assert_eq!(h.wire.to_broker.len(), 1);
    h.broker_sends(
        t(3),
        b"CONNECTED\nversion:1.2\nheart-beat:0,0\nserver:fake\n\n\0",
    );
    assert!(h.wire.to_client[0].starts_with("CONNECTED\nversion:1.2\n"));
    assert_eq!(
        h.wire.to_broker[1],
        "SUBSCRIBE\nid:0\ndestination:/topic/sub.chat.room1\nreceipt:r-1\n\n\0"
    );

    h.broker_sends(t(4), b"RECEIPT\nreceipt-id:r-1\n\n\0");
    assert_eq!(h.wire.to_client[1], "RECEIPT\nreceipt-id:r-1\n\n\0");

    // An application destination is handled locally; the receipt comes from us.
    h.client_sends(t(5), b"SEND\ndestination:/pub/hello\nreceipt:r-2\n\nhi\0");
    assert_eq!(h.wire.to_broker.len(), 2, "nothing relayed");
    assert_eq!(h.wire.to_client[2], "RECEIPT\nreceipt-id:r-2\n\n\0");

    // Broker-bound SEND keeps content-length and custom headers byte for byte.
    h.client_sends(
        t(6),
        b"SEND\ndestination:/sub/chat/room1\ncontent-length:2\nx-trace:7\n\nyo\0",
    );
    assert_eq!(
        h.wire.to_broker[2],
        "SEND\ndestination:/topic/sub.chat.room1\ncontent-length:2\nx-trace:7\n\nyo\0"
    );

    h.broker_sends(
        t(7),
        b"MESSAGE\nsubscription:0\ndestination:/topic/sub.chat.room1\nmessage-id:T_1\ncontent-length:2\nx-trace:7\n\nyo\0",
    );
    assert_eq!(
        h.wire.to_client[3],
        "MESSAGE\nsubscription:0\ndestination:/sub/chat/room1\nmessage-id:T_1\ncontent-length:2\nx-trace:7\n\nyo\0"
    );

    h.broker_sends(t(8), b"ERROR\nmessage:queue deleted\n\n\0");
    assert_eq!(
        h.wire.to_client[4],
        "ERROR\nmessage:Connection to broker closed.\n\n\0"
    );
    assert!(h.session.is_closed());
    assert_eq!(h.session.close_reason(), Some(CloseReason::BrokerClosed));
    assert!(h.relay.upstream().should_close_transport());
    for f in &h.wire.to_broker {
        assert!(
            !f.contains("browser"),
            "client credentials reached the broker: {f}"
        );
    }
}
