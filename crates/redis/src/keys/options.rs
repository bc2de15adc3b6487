//! What to scan and how gently: the options of the key scan, checked before any
//! connection opens.

use crate::error::RedisError;
use powertune_core::targets::{CacheType, RedisTargets};
use std::collections::BTreeMap;

/// What to scan and how gently.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// SCAN's COUNT hint (keys per SCAN call).
    pub count: u32,
    /// Only keys matching this glob (SCAN MATCH).
    pub pattern: Option<String>,
    /// Keys per second at most (None = as fast as the server answers).
    pub rate: Option<u32>,
    /// Stop after this many keys and extrapolate with DBSIZE.
    pub sample: Option<u64>,
    /// Biggest keys kept.
    pub top: usize,
    /// Prefix groups kept; the rest fold into "(other)".
    pub max_prefixes: usize,
    /// Key segments (split on ':') that make a prefix.
    pub prefix_depth: usize,
    /// Keys of a cache type whose value is read (first bytes) to check compression.
    pub compression_sample: u64,
    /// Cache types to check (name → type).
    pub cache_types: BTreeMap<String, CacheType>,
    /// Keys over this many bytes are "large".
    pub large_key_bytes: u64,
}

impl ScanOptions {
    pub fn new(t: &RedisTargets, cache: &BTreeMap<String, CacheType>) -> ScanOptions {
        ScanOptions {
            count: 1000,
            pattern: None,
            rate: None,
            sample: None,
            top: 20,
            max_prefixes: 1000,
            prefix_depth: 2,
            compression_sample: 200,
            cache_types: cache.clone(),
            large_key_bytes: t.large_key_bytes,
        }
    }

    /// Checks the options before any connection opens.
    pub fn validate(&self) -> Result<(), RedisError> {
        let bad = |input: &str, reason: &str, example: &str| {
            Err(RedisError::Input {
                input: input.to_string(),
                reason: reason.to_string(),
                example: example.to_string(),
            })
        };
        if self.count == 0 || self.count > 100_000 {
            return bad(
                &format!("--count {}", self.count),
                "must be 1..=100000",
                "--count 1000",
            );
        }
        if self.rate == Some(0) {
            return bad("--rate 0", "must be at least 1 key/s", "--rate 5000");
        }
        if self.sample == Some(0) {
            return bad("--sample 0", "must be at least 1 key", "--sample 100000");
        }
        if self.top == 0 || self.top > 10_000 {
            return bad(
                &format!("--top {}", self.top),
                "must be 1..=10000",
                "--top 20",
            );
        }
        if self.max_prefixes == 0 || self.max_prefixes > 100_000 {
            return bad(
                &format!("--max-prefixes {}", self.max_prefixes),
                "must be 1..=100000",
                "--max-prefixes 1000",
            );
        }
        if self.prefix_depth == 0 || self.prefix_depth > 8 {
            return bad(
                &format!("--prefix-depth {}", self.prefix_depth),
                "must be 1..=8",
                "--prefix-depth 2",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_validated() {
        let t = powertune_core::Targets::default();
        let mut o = ScanOptions::new(&t.redis, &t.cache);
        assert!(o.validate().is_ok());
        o.rate = Some(0);
        assert!(o.validate().unwrap_err().to_string().contains("--rate"));
    }
}
