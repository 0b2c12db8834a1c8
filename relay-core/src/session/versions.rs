//! The STOMP versions a side speaks, as a bit set: `accept-version` parsing, the
//! highest common version, and the list an ERROR names when there is none.

use crate::codec::Version;

/// A set of STOMP versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Versions(u8);

fn bit(v: Version) -> u8 {
    match v {
        Version::V1_0 => 1,
        Version::V1_1 => 2,
        Version::V1_2 => 4,
    }
}

impl Versions {
    /// 1.0, 1.1 and 1.2.
    pub const ALL: Versions = Versions(7);
    /// No version.
    pub const NONE: Versions = Versions(0);

    /// This set less `v`.
    pub fn without(self, v: Version) -> Versions {
        Versions(self.0 & !bit(v))
    }

    /// Just `v`.
    pub fn only(v: Version) -> Versions {
        Versions(bit(v))
    }

    /// `self` plus `v`.
    pub fn with(self, v: Version) -> Versions {
        Versions(self.0 | bit(v))
    }

    /// Whether `v` is in the set.
    pub fn contains(self, v: Version) -> bool {
        self.0 & bit(v) != 0
    }

    /// The versions in both sets.
    pub fn intersect(self, other: Versions) -> Versions {
        Versions(self.0 & other.0)
    }

    /// The highest version in the set.
    pub fn highest(self) -> Option<Version> {
        Version::ALL
            .iter()
            .rev()
            .copied()
            .find(|&v| self.contains(v))
    }

    /// Parses an `accept-version` value (`1.0,1.1,1.2`); unknown tokens are ignored.
    pub fn parse_accept(value: &[u8]) -> Versions {
        value
            .split(|&b| b == b',')
            .filter_map(|t| Version::parse(t.trim_ascii()))
            .fold(Versions::NONE, Versions::with)
    }
}

impl core::fmt::Display for Versions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        for v in Version::ALL.iter().filter(|&&v| self.contains(v)) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(v.as_str())?;
        }
        Ok(())
    }
}
