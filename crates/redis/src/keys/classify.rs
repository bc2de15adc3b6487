//! How one key is classified while scanning: its prefix group, its cache type (the
//! first cache-type pattern that matches) and whether its value looks compressed.

use powertune_core::targets::{CacheType, CacheTypes};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

/// The prefix group of a key: its first `depth` ':'-separated segments (never the
/// whole key) followed by ":*"; keys without ':' are "(no prefix)"; Sidekiq's own
/// keys (`queues`, `queue:*`, `retry`, ...) are "(sidekiq)".
pub fn prefix_of(key: &str, depth: usize) -> String {
    if is_sidekiq_key(key) {
        return SIDEKIQ_GROUP.to_string();
    }
    let segs: Vec<&str> = key.split(':').collect();
    let n = depth.min(segs.len().saturating_sub(1));
    if n == 0 {
        return "(no prefix)".to_string();
    }
    let mut p = segs[..n].join(":");
    p.push_str(":*");
    p
}

/// [`prefix_of`] into a reused buffer (no allocation per key).
pub(super) fn prefix_into(key: &str, depth: usize, buf: &mut String) {
    buf.clear();
    if is_sidekiq_key(key) {
        buf.push_str(SIDEKIQ_GROUP);
        return;
    }
    let mut end = None;
    for (seen, (i, _)) in key.match_indices(':').enumerate() {
        if seen + 1 > depth {
            break;
        }
        end = Some(i);
    }
    match end {
        None => buf.push_str("(no prefix)"),
        Some(e) => {
            buf.push_str(&key[..e]);
            buf.push_str(":*");
        }
    }
}

/// Whether a stored value is compressed: Rails' cache entry with its compressed flag, or
/// a zlib stream header in the first bytes.
pub fn looks_compressed(head: &[u8]) -> bool {
    // Rails 7.1+ cache coder: "\x00\x11" signature, then a type byte whose high bit
    // (0x80) flags a compressed payload.
    if head.len() >= 3 && head[0] == 0x00 && head[1] == 0x11 {
        return head[2] & 0x80 != 0;
    }
    // Older formats (Marshal of an Entry) hold the zlib stream itself: 0x78 then a
    // level byte that makes a valid zlib header (0x5e is left out: "x^" is text).
    head.windows(2)
        .any(|w| w[0] == 0x78 && matches!(w[1], 0x01 | 0x9c | 0xda))
}

pub(super) fn is_sidekiq_prefix(p: &str) -> bool {
    p == SIDEKIQ_GROUP
}

/// The prefix group of Sidekiq's own keys (they are meant to persist).
pub const SIDEKIQ_GROUP: &str = "(sidekiq)";

fn is_sidekiq_key(key: &str) -> bool {
    matches!(
        key,
        "queues" | "processes" | "retry" | "dead" | "schedule" | "stat:processed" | "stat:failed"
    ) || key.starts_with("queue:")
}

/// The cache types in matching order ("default" last), shared with fetch tasks.
pub(super) struct CacheSel {
    pub(super) types: CacheTypes,
    /// Values read so far per type for the compression check.
    pub(super) checked: Vec<AtomicU64>,
    pub(super) limit: u64,
}

impl CacheSel {
    pub(super) fn new(types: &BTreeMap<String, CacheType>, limit: u64) -> CacheSel {
        let types = CacheTypes::new(types);
        let checked = (0..types.len()).map(|_| AtomicU64::new(0)).collect();
        CacheSel {
            types,
            checked,
            limit,
        }
    }

    /// The first cache type whose pattern matches.
    pub(super) fn of(&self, key: &str) -> Option<usize> {
        self.types.index_of(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            prefix_of("cache:user_profile:42", 2),
            "cache:user_profile:*"
        );
        assert_eq!(prefix_of("session:42", 2), "session:*");
        assert_eq!(prefix_of("plain", 2), "(no prefix)");
        assert_eq!(prefix_of("a:b:c:d", 1), "a:*");
        assert_eq!(prefix_of("queue:default", 2), SIDEKIQ_GROUP);
        let mut buf = String::new();
        for (k, d) in [
            ("cache:user_profile:42", 2),
            ("session:42", 2),
            ("plain", 2),
            ("a:b:c:d", 1),
            ("a:b:c:d", 3),
            ("queue:x", 2),
            ("a::b", 2),
        ] {
            prefix_into(k, d, &mut buf);
            assert_eq!(buf, prefix_of(k, d), "{k} {d}");
        }
    }

    #[test]
    fn compression_markers() {
        assert!(looks_compressed(&[0x04, 0x08, 0x78, 0x9c, 0x01]));
        assert!(!looks_compressed(b"{\"name\":\"x^y\"}"));
        assert!(looks_compressed(&[0x00, 0x11, 0x81, 0x00, 0x78]));
        assert!(!looks_compressed(&[0x00, 0x11, 0x01, 0x00, 0x78, 0x9c]));
    }
}
