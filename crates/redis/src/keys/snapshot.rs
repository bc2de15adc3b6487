//! What a key scan found: the biggest keys, per-prefix and per-cache-type totals.

use powertune_core::targets::CacheType;
use serde::Serialize;
use std::collections::BTreeMap;

/// One key of the top-K.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
pub struct KeyInfo {
    /// Bytes (MEMORY USAGE), or the element count when MEMORY is unavailable (bytes
    /// for strings).
    pub size: u64,
    pub key: String,
    pub key_type: String,
    /// Elements (STRLEN bytes for strings, LLEN/HLEN/SCARD/ZCARD/XLEN otherwise).
    pub elements: Option<u64>,
    /// Remaining TTL in ms; None = no TTL.
    pub ttl_ms: Option<i64>,
}

/// Per-prefix totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PrefixStats {
    pub keys: u64,
    pub bytes: u64,
    pub no_ttl_keys: u64,
    pub no_ttl_bytes: u64,
}

/// Per-cache-type totals and problems.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CacheTypeStats {
    pub keys: u64,
    pub bytes: u64,
    pub no_ttl: u64,
    /// Keys whose remaining TTL exceeds the configured TTL.
    pub ttl_too_long: u64,
    pub max_ttl_ms: i64,
    /// Values read to check compression, and how many were compressed.
    pub compression_checked: u64,
    pub compressed: u64,
    pub example_no_ttl: Option<String>,
    pub example_ttl_too_long: Option<String>,
    pub example_compression: Option<String>,
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ScanSnapshot {
    pub db: u32,
    pub dbsize: u64,
    pub scanned: u64,
    /// True when `--sample` stopped the scan early (figures are extrapolated).
    pub sampled: bool,
    pub pattern: Option<String>,
    /// MEMORY USAGE unavailable: sizes are element counts (bytes for strings).
    pub memory_unavailable: Option<String>,
    pub total_bytes: u64,
    pub no_ttl_keys: u64,
    pub no_ttl_bytes: u64,
    /// Biggest keys, biggest first.
    pub top: Vec<KeyInfo>,
    /// Keys over `large_key_bytes` (counted; the biggest are in `top`).
    pub large_keys: u64,
    pub large_key_bytes: u64,
    pub prefixes: BTreeMap<String, PrefixStats>,
    pub cache_types: BTreeMap<String, CacheTypeStats>,
    pub cache_config: BTreeMap<String, CacheType>,
    pub elapsed_s: f64,
    pub round_trips: u64,
}

impl ScanSnapshot {
    /// Factor to scale sampled counts to the whole database.
    pub fn extrapolation(&self) -> f64 {
        if self.sampled && self.scanned > 0 && self.pattern.is_none() {
            self.dbsize as f64 / self.scanned as f64
        } else {
            1.0
        }
    }
}
