//! Frame rewriting between the client-facing and the broker's destination forms, on top
//! of relay-core's pure [`Dialect`] mapping.
//!
//! Only `destination` (and, for Artemis, a `destination-type` routing header) changes;
//! `content-length` and custom headers pass through untouched because ActiveMQ decides
//! between a BytesMessage and a TextMessage on `content-length` alone.

use stomp_relay_core::dialect::Routing;
use stomp_relay_core::Dialect;

use bytes::Bytes;

use crate::broker::BrokerError;
use crate::frame::OwnedFrame;
use crate::users::announce;

/// `client_dest` in the broker's form.
pub fn to_broker(dialect: Dialect, client_dest: &[u8]) -> Vec<u8> {
    // The mapped form is at most "/topic/" plus the destination.
    let mut buf = vec![0u8; client_dest.len() + 16];
    match dialect.to_broker(client_dest, &mut buf) {
        Ok(out) => out.to_vec(),
        Err(_) => client_dest.to_vec(),
    }
}

/// A broker destination in the client's form (the pure reverse; exact subscriptions
/// restore the client's own spelling from their subscription instead).
pub fn to_client(dialect: Dialect, broker_dest: &[u8], prefixes: &[String]) -> Vec<u8> {
    let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    let mut buf = vec![0u8; broker_dest.len() + 16];
    match dialect.to_client(broker_dest, &prefixes, &mut buf) {
        Ok(out) => out.to_vec(),
        Err(_) => broker_dest.to_vec(),
    }
}

/// Rewrites a client's SEND or SUBSCRIBE for the broker: maps `destination` and adds
/// the dialect's routing header. Returns the client destination and its routing; a
/// frame without a destination, or one naming a destination the servers use among
/// themselves ([`check_reserved`]), is refused.
pub fn outbound(
    dialect: Dialect,
    frame: &mut OwnedFrame,
) -> Result<(Vec<u8>, Routing), BrokerError> {
    let dest = frame.header("destination").ok_or_else(|| {
        BrokerError::Rejected(format!(
            "{} frame has no destination header",
            frame.command.as_str()
        ))
    })?;
    check_reserved(dialect, dest)?;
    Ok(own(dialect, frame).expect("destination checked above"))
}

/// [`outbound`] for the server's own frames (the user registry's, the upstream
/// subscriptions of shared mode): no reservation check; `None` without a destination.
pub fn own(dialect: Dialect, frame: &mut OwnedFrame) -> Option<(Vec<u8>, Routing)> {
    let slot = frame
        .headers
        .iter_mut()
        .find(|(n, _)| &n[..] == b"destination")?;
    let client = std::mem::take(&mut slot.1);
    slot.1 = to_broker(dialect, &client).into();
    let routing = dialect.routing(&client);
    if let Some(h) = dialect.routing_header(routing) {
        if frame.header("destination-type").is_none() {
            frame.push_header(h.name, h.value);
        }
    }
    Some((client.to_vec(), routing))
}

/// Refuses a client destination that reaches, on the broker, the destination the
/// instances announce their users on ([`announce::DESTINATION`]): a client sending
/// there could claim another user's messages, one subscribing could list the users.
pub fn check_reserved(dialect: Dialect, client_dest: &[u8]) -> Result<(), BrokerError> {
    let reserved = to_broker(dialect, announce::DESTINATION.as_bytes());
    if to_broker(dialect, client_dest) == reserved {
        return Err(BrokerError::Rejected(format!(
            "{} is reserved for the servers' user registry",
            String::from_utf8_lossy(client_dest)
        )));
    }
    Ok(())
}

/// Sets (or adds) header `name` to `value`, keeping its position.
pub fn set_header(frame: &mut OwnedFrame, name: &str, value: impl Into<Vec<u8>>) {
    let value = Bytes::from(value.into());
    match frame
        .headers
        .iter_mut()
        .find(|(n, _)| &n[..] == name.as_bytes())
    {
        Some(slot) => slot.1 = value,
        None => frame
            .headers
            .push((Bytes::copy_from_slice(name.as_bytes()), value)),
    }
}

/// Removes every header called `name`.
pub fn remove_header(frame: &mut OwnedFrame, name: &str) {
    frame.headers.retain(|(n, _)| &n[..] != name.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use stomp_relay_codec::Command;

    #[test]
    fn send_keeps_content_length_and_custom_headers() {
        let mut f = OwnedFrame::new(Command::Send)
            .with_header("destination", "/sub/chat/room1")
            .with_header("x-custom", "a:b")
            .with_body(&b"hi"[..]);
        let (client, routing) = outbound(Dialect::ActiveMq, &mut f).unwrap();
        assert_eq!(client, b"/sub/chat/room1");
        assert_eq!(routing, Routing::Broadcast);
        assert_eq!(f.header("destination"), Some(&b"/topic/sub.chat.room1"[..]));
        assert_eq!(f.header("x-custom"), Some(&b"a:b"[..]));
        assert_eq!(f.header("content-length"), None);
        assert_eq!(f.headers.len(), 2);
    }

    #[test]
    fn queues_stay_queues_and_artemis_gets_routing_type() {
        let mut f = OwnedFrame::new(Command::Subscribe).with_header("destination", "/queue/work");
        let (_, routing) = outbound(Dialect::RabbitMq, &mut f).unwrap();
        assert_eq!(routing, Routing::Queue);
        assert_eq!(f.header("destination"), Some(&b"/queue/work"[..]));
        let mut f = OwnedFrame::new(Command::Send).with_header("destination", "/sub/x");
        outbound(Dialect::Artemis, &mut f).unwrap();
        assert_eq!(f.header("destination-type"), Some(&b"MULTICAST"[..]));
        let e = outbound(Dialect::ActiveMq, &mut OwnedFrame::new(Command::Send)).unwrap_err();
        assert_eq!(e.to_string(), "SEND frame has no destination header");
    }

    /// No spelling of the registry's destination gets through, in any dialect; its
    /// neighbours do.
    #[test]
    fn the_user_registry_destination_is_refused_to_clients() {
        for d in Dialect::ALL {
            let dest = "/topic/stomp-relay.user-registry";
            let mut f = OwnedFrame::new(Command::Send).with_header("destination", dest);
            let e = outbound(d, &mut f).unwrap_err();
            assert!(e.to_string().contains(dest), "{d:?}: {e}");
            let mut f = OwnedFrame::new(Command::Send)
                .with_header("destination", "/topic/stomp-relay.user-registry2");
            assert!(outbound(d, &mut f).is_ok(), "{d:?}");
        }
        // RabbitMQ reads `/` in a routing key as `.`.
        let mut f = OwnedFrame::new(Command::Subscribe)
            .with_header("destination", "/topic/stomp-relay/user-registry");
        assert!(outbound(Dialect::RabbitMq, &mut f).is_err());
        assert!(check_reserved(Dialect::ActiveMq, b"/topic/stomp-relay/user-registry").is_ok());
    }

    #[test]
    fn reverse_mapping_uses_configured_prefixes() {
        let prefixes = vec!["/sub/".to_string(), "/topic/".to_string()];
        assert_eq!(
            to_client(Dialect::RabbitMq, b"/topic/sub.chat.room1", &prefixes),
            b"/sub/chat/room1"
        );
        assert_eq!(
            to_client(Dialect::ActiveMq, b"/queue/work", &prefixes),
            b"/queue/work"
        );
    }
}
