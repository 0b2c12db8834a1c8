//! [`Secret`]: a string that must never be printed (passcodes, JWT secrets, tokens, keys).
//!
//! Invariant: neither `Debug` nor any other formatting trait shows the value; `Debug`
//! prints `Secret(***)`, and there is deliberately no `Display`. The value is read with
//! [`Secret::expose`] (or through `Deref<Target = str>`) exactly where it is used, so a
//! `tracing::debug!(?config)` or a `{:?}` of any struct holding one leaks nothing.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::Deserialize;

/// A secret string whose `Debug` output is `Secret(***)`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (a CONNECT header, a
    /// constant-time comparison, a key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Deref for Secret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

/// For clap: flags and environment variables parse straight into a `Secret`, so the
/// parsed command line's `Debug` hides them too.
impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::from("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(Secret(***))");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(&*s, "hunter2");
    }
}
