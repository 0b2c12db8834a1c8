//! Client transactions as the server checks them: BEGIN opens a name once, SEND, ACK and
//! NACK naming it must find it open, COMMIT and ABORT close it. A refusal is a
//! [`BrokerError::Rejected`] whose text names the command (never the id: a client may
//! put anything in it), so the session answers ERROR and closes.
//!
//! The simple broker holds a transaction's frames here until COMMIT (dropped on ABORT
//! or when the session ends), bounded in bytes per session; the shared relay only
//! tracks the names, as the broker holds the frames.

use std::collections::HashMap;

use stomp_relay_codec::Command;

use crate::broker::BrokerError;

/// A session's open transactions and what each holds.
#[derive(Debug)]
pub(crate) struct Transactions<T> {
    open: HashMap<String, Vec<T>>,
    held_bytes: usize,
    limit: usize,
}

fn not_begun(command: Command) -> BrokerError {
    BrokerError::Rejected(format!(
        "{} names a transaction this session has not begun",
        command.as_str()
    ))
}

impl<T> Transactions<T> {
    /// No transaction open; at most `limit` bytes held over all of them.
    pub(crate) fn new(limit: usize) -> Self {
        Transactions {
            open: HashMap::new(),
            held_bytes: 0,
            limit,
        }
    }

    /// BEGIN `tx`.
    pub(crate) fn begin(&mut self, tx: &str) -> Result<(), BrokerError> {
        if self.open.contains_key(tx) {
            return Err(BrokerError::Rejected(
                "BEGIN names a transaction that is already open".into(),
            ));
        }
        self.open.insert(tx.to_owned(), Vec::new());
        Ok(())
    }

    /// A `command` (SEND, ACK, NACK) inside `tx`: checked, and `item` (of `size` bytes)
    /// held until COMMIT when given.
    pub(crate) fn hold(
        &mut self,
        command: Command,
        tx: &str,
        item: Option<(T, usize)>,
    ) -> Result<(), BrokerError> {
        let held = self.open.get_mut(tx).ok_or_else(|| not_begun(command))?;
        if let Some((item, size)) = item {
            if self.held_bytes + size > self.limit {
                return Err(BrokerError::Rejected(format!(
                    "Transaction too large: more than {} bytes held until COMMIT",
                    self.limit
                )));
            }
            self.held_bytes += size;
            held.push(item);
        }
        Ok(())
    }

    /// COMMIT `tx`: what it held, in order.
    pub(crate) fn commit(
        &mut self,
        tx: &str,
        size: impl Fn(&T) -> usize,
    ) -> Result<Vec<T>, BrokerError> {
        let held = self
            .open
            .remove(tx)
            .ok_or_else(|| not_begun(Command::Commit))?;
        self.held_bytes -= held.iter().map(&size).sum::<usize>();
        Ok(held)
    }

    /// ABORT `tx`: what it held is dropped.
    pub(crate) fn abort(
        &mut self,
        tx: &str,
        size: impl Fn(&T) -> usize,
    ) -> Result<(), BrokerError> {
        self.commit(tx, size)
            .map(drop)
            .map_err(|_| not_begun(Command::Abort))
    }

    /// The names still open (a session ending with them).
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.open.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(e: BrokerError) -> String {
        e.to_string()
    }

    #[test]
    fn held_until_commit_dropped_on_abort_and_bounded() {
        let mut t: Transactions<&str> = Transactions::new(10);
        t.begin("t1").unwrap();
        assert!(text(t.begin("t1").unwrap_err()).contains("already open"));
        t.hold(Command::Send, "t1", Some(("a", 4))).unwrap();
        t.hold(Command::Ack, "t1", None).unwrap();
        t.hold(Command::Send, "t1", Some(("b", 4))).unwrap();
        let e = t.hold(Command::Send, "t1", Some(("c", 4))).unwrap_err();
        assert!(text(e).contains("more than 10 bytes"));
        assert_eq!(t.commit("t1", |_| 4).unwrap(), ["a", "b"]);
        // The bound is free again after the COMMIT.
        t.begin("t2").unwrap();
        t.hold(Command::Send, "t2", Some(("d", 8))).unwrap();
        t.abort("t2", |_| 8).unwrap();
        for (cmd, e) in [
            (
                Command::Commit,
                t.commit("t2", |_| 0).map(drop).unwrap_err(),
            ),
            (Command::Abort, t.abort("nope", |_| 0).unwrap_err()),
            (
                Command::Send,
                t.hold(Command::Send, "nope", None).unwrap_err(),
            ),
        ] {
            assert_eq!(
                text(e),
                format!(
                    "{} names a transaction this session has not begun",
                    cmd.as_str()
                )
            );
        }
        assert_eq!(t.names().count(), 0);
    }
}
