//! Destination patterns: Ant-style `*`, `**` and `{name}` captures over segments.
//!
//! A destination is split into segments at the [`Separator`] bytes; a pattern segment
//! is either `**` (zero or more whole segments), `{name}` (exactly one non-empty
//! segment, captured; only in [`capture`]), or a glob where `*` matches any run of
//! bytes inside one segment (`*` alone is "any one segment", `chat.*` a name prefix).
//!
//! Invariants: matching never allocates, never recurses and runs in O(pattern x
//! destination) time even for hostile patterns such as `/**/**/**/x` (the classic
//! last-star backtracking algorithm, applied once over segments and once over bytes),
//! so client-supplied subscription patterns cannot stall a broker.

/// Which bytes split a destination into segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Separator {
    /// `/` only: `/topic/chat.room1` has the segments `topic` and `chat.room1`.
    #[default]
    Slash,
    /// `/` and `.` (RabbitMQ style): `/topic/chat.room1` has `topic`, `chat`, `room1`.
    Dot,
}

impl Separator {
    fn is_sep(self, b: u8) -> bool {
        b == b'/' || (self == Separator::Dot && b == b'.')
    }
}

/// At most this many `{name}` variables are captured by one match.
pub const MAX_CAPTURES: usize = 8;

/// Variables captured by [`capture`]: `(name, value)` pairs borrowed from the pattern
/// and the destination.
#[derive(Debug, Clone, Copy)]
pub struct Captures<'p, 'd> {
    items: [(&'p [u8], &'d [u8]); MAX_CAPTURES],
    len: usize,
}

impl Default for Captures<'_, '_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'p, 'd> Captures<'p, 'd> {
    /// No captures.
    pub const fn new() -> Self {
        Captures {
            items: [(b"", b""); MAX_CAPTURES],
            len: 0,
        }
    }

    /// The value captured for `name`, if any.
    pub fn get(&self, name: &str) -> Option<&'d [u8]> {
        self.iter()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// `(name, value)` pairs in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&'p [u8], &'d [u8])> + '_ {
        self.items[..self.len].iter().copied()
    }

    /// Number of captured variables.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, name: &'p [u8], value: &'d [u8]) -> bool {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = (name, value);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// Whether `s` contains pattern syntax (`*`), i.e. is not an exact destination.
pub fn is_pattern(s: &[u8]) -> bool {
    s.contains(&b'*')
}

/// Whether `dest` matches the wildcard `pattern` (`*`, `**`; braces are literal).
pub fn matches(pattern: &[u8], dest: &[u8], sep: Separator) -> bool {
    match_segments(pattern, dest, sep, None)
}

/// Whether `dest` matches the route `pattern` (`*`, `**`, `{name}`), filling `caps`
/// with the variables. `caps` is cleared first; on a failed match its content is
/// unspecified. More than [`MAX_CAPTURES`] variables never match.
pub fn capture<'p, 'd>(
    pattern: &'p [u8],
    dest: &'d [u8],
    sep: Separator,
    caps: &mut Captures<'p, 'd>,
) -> bool {
    caps.clear();
    match_segments(pattern, dest, sep, Some(caps))
}

/// The segment starting at `pos` and the start of the next one (`None`: last segment).
fn segment(s: &[u8], pos: usize, sep: Separator) -> (&[u8], Option<usize>) {
    let rest = &s[pos..];
    match rest.iter().position(|&b| sep.is_sep(b)) {
        Some(i) => (&rest[..i], Some(pos + i + 1)),
        None => (rest, None),
    }
}

fn match_segments<'p, 'd>(
    p: &'p [u8],
    d: &'d [u8],
    sep: Separator,
    mut caps: Option<&mut Captures<'p, 'd>>,
) -> bool {
    let mut pi = Some(0usize);
    let mut di = Some(0usize);
    // Last `**` seen: (pattern position after it, destination position it resumes at,
    // captures recorded before it).
    let mut star: Option<(Option<usize>, Option<usize>, usize)> = None;
    loop {
        if let Some(pp) = pi {
            let (ps, pnext) = segment(p, pp, sep);
            if ps == b"**" {
                let mark = caps.as_ref().map_or(0, |c| c.len);
                star = Some((pnext, di, mark));
                pi = pnext;
                continue;
            }
            if let Some(dp) = di {
                let (ds, dnext) = segment(d, dp, sep);
                if segment_matches(ps, ds, caps.as_deref_mut()) {
                    pi = pnext;
                    di = dnext;
                    continue;
                }
            }
        } else if di.is_none() {
            return true;
        }
        // Mismatch: let the last `**` swallow one more segment, or fail.
        let Some((sp, Some(sd), mark)) = star else {
            return false;
        };
        let (_, sdnext) = segment(d, sd, sep);
        star = Some((sp, sdnext, mark));
        if let Some(c) = caps.as_deref_mut() {
            c.len = mark;
        }
        pi = sp;
        di = sdnext;
    }
}

fn segment_matches<'p, 'd>(
    ps: &'p [u8],
    ds: &'d [u8],
    caps: Option<&mut Captures<'p, 'd>>,
) -> bool {
    if let Some(caps) = caps {
        if ps.len() >= 2 && ps[0] == b'{' && ps[ps.len() - 1] == b'}' {
            return !ds.is_empty() && caps.push(&ps[1..ps.len() - 1], ds);
        }
    }
    glob(ps, ds)
}

/// Byte glob inside one segment: `*` matches any run of bytes.
fn glob(p: &[u8], d: &[u8]) -> bool {
    let (mut pi, mut di) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while di < d.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi + 1, di));
            pi += 1;
        } else if pi < p.len() && p[pi] == d[di] {
            pi += 1;
            di += 1;
        } else if let Some((sp, sd)) = star {
            star = Some((sp, sd + 1));
            pi = sp;
            di = sd + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Separator = Separator::Slash;
    const D: Separator = Separator::Dot;

    #[test]
    fn wildcard_table() {
        let table: &[(&str, &str, Separator, bool)] = &[
            ("/topic/a", "/topic/a", S, true),
            ("/topic/a", "/topic/b", S, false),
            ("/topic/a", "/topic/a/b", S, false),
            ("/topic/*", "/topic/a", S, true),
            ("/topic/*", "/topic/a/b", S, false),
            ("/topic/*", "/topic", S, false),
            ("/topic/**", "/topic", S, true),
            ("/topic/**", "/topic/a/b/c", S, true),
            ("/topic/**/c", "/topic/a/b/c", S, true),
            ("/topic/**/c", "/topic/c", S, true),
            ("/topic/**/c", "/topic/a/b/d", S, false),
            ("/**", "/anything/at/all", S, true),
            ("/topic/chat.*", "/topic/chat.room1", S, true),
            ("/topic/chat.*", "/topic/chat/room1", S, false),
            ("/topic/chat.*", "/topic/chat.room1", D, true),
            ("/topic/chat.*", "/topic/chat.room1.x", D, false),
            ("/topic/chat.**", "/topic/chat.room1.x", D, true),
            ("/topic/*.log", "/topic/app.log", S, true),
            ("/topic/a*c", "/topic/abbbc", S, true),
            ("/topic/a*c", "/topic/abbbd", S, false),
            ("/topic/{x}", "/topic/{x}", S, true),
            ("/topic/{x}", "/topic/y", S, false),
        ];
        for &(p, d, sep, want) in table {
            assert_eq!(
                matches(p.as_bytes(), d.as_bytes(), sep),
                want,
                "{p} vs {d} ({sep:?})"
            );
        }
    }

    #[test]
    fn captures_variables_by_name() {
        let mut caps = Captures::new();
        assert!(capture(
            b"/pub/chat/{room}/{user}",
            b"/pub/chat/r1/bob",
            S,
            &mut caps
        ));
        assert_eq!(caps.get("room"), Some(&b"r1"[..]));
        assert_eq!(caps.get("user"), Some(&b"bob"[..]));
        assert_eq!(caps.get("nope"), None);
        assert_eq!(caps.len(), 2);

        assert!(capture(b"/pub/chat.{room}", b"/pub/chat.r2", D, &mut caps));
        assert_eq!(caps.get("room"), Some(&b"r2"[..]));

        // A variable matches exactly one non-empty segment.
        assert!(!capture(b"/pub/{room}", b"/pub/a/b", S, &mut caps));
        assert!(!capture(b"/pub/{room}", b"/pub/", S, &mut caps));
    }

    #[test]
    fn captures_after_double_star_are_reset_on_backtrack() {
        let mut caps = Captures::new();
        assert!(capture(b"/pub/**/{last}", b"/pub/a/b/c", S, &mut caps));
        assert_eq!(caps.len(), 1);
        assert_eq!(caps.get("last"), Some(&b"c"[..]));
    }

    #[test]
    fn too_many_variables_never_match() {
        let mut caps = Captures::new();
        assert!(!capture(
            b"/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}",
            b"/1/2/3/4/5/6/7/8/9",
            S,
            &mut caps
        ));
        assert!(capture(
            b"/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}",
            b"/1/2/3/4/5/6/7/8",
            S,
            &mut caps
        ));
    }

    #[test]
    fn hostile_patterns_finish_quickly() {
        // Exponential with naive backtracking; linear-ish here.
        let mut p = [0u8; 3 * 200 + 2];
        for i in 0..200 {
            p[3 * i..3 * i + 3].copy_from_slice(b"/**");
        }
        p[600..].copy_from_slice(b"/x");
        let mut d = [b'/'; 4000];
        for (i, b) in d.iter_mut().enumerate() {
            if i % 2 == 1 {
                *b = b'a';
            }
        }
        assert!(!matches(&p, &d, S));
        assert!(!glob(b"*a*a*a*a*a*a*a*a*a*b", &[b'a'; 5000]));
    }

    #[test]
    fn is_pattern_detects_wildcards() {
        assert!(is_pattern(b"/topic/*"));
        assert!(!is_pattern(b"/topic/a"));
    }
}
