//! Setting values that are text on the command line and in files: durations, byte
//! sizes, and why one could not be read ([`ValueError`], whose `Display` quotes the
//! value and says what was expected, behind the flag or key the caller names).

use std::fmt;
use std::time::Duration;

/// A setting value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// The value as given.
    pub value: String,
    /// What is wrong with it, e.g. `expected a duration like 500ms, 10s or 2m`.
    pub expected: String,
}

impl ValueError {
    /// `value` is wrong for the reason `expected`.
    pub fn new(value: &str, expected: impl Into<String>) -> Self {
        ValueError {
            value: value.to_owned(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.value, self.expected)
    }
}

impl std::error::Error for ValueError {}

/// Parses a duration: `500ms`, `10s`, `2m`, or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000)
    } else {
        (t, 1)
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| ValueError::new(s, "expected a duration like 500ms, 10s or 2m"))?;
    Ok(Duration::from_millis(n.saturating_mul(mult)))
}

/// Parses a byte size: `65536`, `64KiB`, `512KiB`, `1MiB` (also `K`/`KB`/`M`/`MB` as binary units).
pub fn parse_size(s: &str) -> Result<usize, ValueError> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (num, mult) = [
        ("kib", 1024),
        ("kb", 1024),
        ("k", 1024),
        ("mib", 1 << 20),
        ("mb", 1 << 20),
        ("m", 1 << 20),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suf, m)| lower.strip_suffix(suf).map(|n| (n.to_string(), *m)))
    .unwrap_or((lower.clone(), 1));
    let n: usize = num
        .trim()
        .parse()
        .map_err(|_| ValueError::new(s, "expected a size like 65536, 64KiB or 1MiB"))?;
    Ok(n.saturating_mul(mult))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(
            parse_size("lots").unwrap_err().to_string(),
            "`lots`: expected a size like 65536, 64KiB or 1MiB"
        );
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_millis(7));
        assert!(parse_duration("soon").is_err());
    }
}
