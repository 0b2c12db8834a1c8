//! The layers a setting comes from and the one rule that merges them: a flag (or its
//! `STOMP_RELAY_*` variable, which clap folds into the flag) over the config file's key
//! over the built-in default.
//!
//! Each flag struct ([`super::Cli`], [`super::security::SecurityArgs`],
//! [`super::proxy::ProxyArgs`]) is also its own file table, so a setting is declared
//! once. [`Layers`] holds the two parsed copies and hands out each value as a [`Given`]
//! that remembers where it came from, so every error names the flag or key to fix.

use std::fmt;

use serde::{Deserialize, Deserializer};

use super::ConfigError;

/// The flags and the file, both parsed into the same struct `T`.
pub(crate) struct Layers<T> {
    flags: T,
    file: T,
    /// The file table `T` is read from, with its dot (`security.`), or empty for the
    /// top level.
    table: &'static str,
}

impl<T> Layers<T> {
    pub(crate) fn new(flags: T, file: T, table: &'static str) -> Self {
        Layers { flags, file, table }
    }

    /// The setting `key` (its flag name without `--`), from the flags if given there,
    /// else from the file. Takes it out of both layers.
    pub(crate) fn pick<V>(
        &mut self,
        key: &'static str,
        field: impl Fn(&mut T) -> &mut Option<V>,
    ) -> Option<Given<V>> {
        let flag = field(&mut self.flags).take();
        let file = field(&mut self.file).take();
        match (flag, file) {
            (Some(value), _) => Some(Given {
                value,
                name: format!("--{key}"),
            }),
            (None, Some(value)) => Some(Given {
                value,
                name: format!("config key `{}{key}`", self.table),
            }),
            (None, None) => None,
        }
    }

    /// The value of `key` if either layer sets it, for settings with nothing to check.
    pub(crate) fn value<V>(
        &mut self,
        key: &'static str,
        field: impl Fn(&mut T) -> &mut Option<V>,
    ) -> Option<V> {
        self.pick(key, field).map(|g| g.value)
    }
}

/// A setting's value and the name of what set it (`--listen` or
/// ``config key `listen` ``).
pub(crate) struct Given<V> {
    pub(crate) value: V,
    name: String,
}

impl<V> Given<V> {
    /// The same setting with its value changed by `f`.
    pub(crate) fn map<U>(self, f: impl FnOnce(V) -> U) -> Given<U> {
        Given {
            value: f(self.value),
            name: self.name,
        }
    }

    /// An error about this setting.
    pub(crate) fn invalid(&self, msg: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            name: self.name.clone(),
            msg: msg.to_string(),
        }
    }

    /// The value read by `parse`, whose error is reported against this setting.
    pub(crate) fn parse<U, E: fmt::Display>(
        self,
        parse: impl FnOnce(V) -> Result<U, E>,
    ) -> Result<U, ConfigError> {
        let name = self.name;
        parse(self.value).map_err(|e| ConfigError::Invalid {
            name,
            msg: e.to_string(),
        })
    }
}

impl Given<String> {
    /// The value as a duration that is more than zero (a timeout, a heart-beat period).
    pub(crate) fn positive_duration(&self) -> Result<std::time::Duration, ConfigError> {
        let d = super::parse_duration(&self.value).map_err(|m| self.invalid(m))?;
        if d.is_zero() {
            return Err(self.invalid("must be more than 0"));
        }
        Ok(d)
    }
}

/// A file value that is a list on the command line: an array, or one string split at
/// commas like the flag's value.
pub(crate) fn one_or_many<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Option::<OneOrMany>::deserialize(d)?.map(|v| match v {
        OneOrMany::One(s) => s.split(',').map(|p| p.trim().to_string()).collect(),
        OneOrMany::Many(v) => v,
    }))
}

/// A file value that is text on the command line (a duration, a size) but may be
/// written as a bare number in the file (`max-frame-size = 1024`).
pub(crate) fn num_or_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(u64),
        Str(String),
    }
    Ok(Option::<NumOrStr>::deserialize(d)?.map(|v| match v {
        NumOrStr::Num(n) => n.to_string(),
        NumOrStr::Str(s) => s,
    }))
}

/// A listen address in the file, with the flag's wording when it is not one.
pub(crate) fn socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<std::net::SocketAddr>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| {
            s.parse().map_err(|_| {
                serde::de::Error::custom(format!("`{s}` is not an address like 127.0.0.1:8080"))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct T {
        a: Option<u32>,
    }

    #[test]
    fn flag_wins_and_each_source_is_named() {
        let mut l = Layers::new(T { a: Some(1) }, T { a: Some(2) }, "security.");
        let g = l.pick("a", |t| &mut t.a).unwrap();
        assert_eq!((g.value, g.name.as_str()), (1, "--a"));
        let mut l = Layers::new(T::default(), T { a: Some(2) }, "security.");
        let g = l.pick("a", |t| &mut t.a).unwrap();
        assert_eq!((g.value, g.name.as_str()), (2, "config key `security.a`"));
        let mut l = Layers::new(T::default(), T::default(), "");
        assert!(l.pick("a", |t| &mut t.a).is_none());
    }
}
