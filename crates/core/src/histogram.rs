//! Latency histograms: HDR, microsecond resolution, mergeable, fixed memory whatever
//! the number of samples.
//!
//! One wrapper in two sizes: [`LatencyHistogram`] (64-bit counts, 3 significant
//! digits, about 40 KiB) for run-level figures, and [`CompactHistogram`] (32-bit
//! counts, 2 significant digits, about 13 KiB) where many live at once, such as one
//! per route per time bucket of a rolling window.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::{Counter, Histogram};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Highest trackable value: one hour in microseconds. Longer samples are clamped.
pub const MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram in microseconds; `C` is the width of its counts.
#[derive(Clone, Debug)]
pub struct LatencyHistogram<C: Counter = u64> {
    h: Histogram<C>,
}

/// The small histogram: 32-bit counts, 2 significant digits.
pub type CompactHistogram = LatencyHistogram<u32>;

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    #[error("histogram is not valid base64: {0}")]
    Base64(String),
    #[error("histogram could not be decoded: {0}")]
    Decode(String),
    #[error("histograms could not be merged: {0}")]
    Merge(String),
}

impl LatencyHistogram<u64> {
    /// 1 µs .. 1 h at 3 significant digits.
    pub fn new() -> Self {
        Self::with_digits(3)
    }
}

impl LatencyHistogram<u32> {
    /// 1 µs .. 1 h at 2 significant digits.
    pub fn compact() -> Self {
        Self::with_digits(2)
    }
}

impl<C: Counter> LatencyHistogram<C> {
    #[allow(clippy::expect_used)]
    fn with_digits(digits: u8) -> Self {
        // The bounds and precisions used are constants inside hdrhistogram's
        // documented limits, so this cannot fail.
        let h =
            Histogram::new_with_bounds(1, MAX_MICROS, digits).expect("constant histogram bounds");
        LatencyHistogram { h }
    }

    /// Records one duration (clamped to [1 µs, 1 h]).
    #[inline]
    pub fn record(&mut self, d: Duration) {
        self.record_micros(d.as_micros().min(MAX_MICROS as u128) as u64);
    }

    #[inline]
    pub fn record_micros(&mut self, us: u64) {
        let v = us.clamp(1, MAX_MICROS);
        // In range by construction; saturating keeps the hot path free of error handling.
        self.h.saturating_record(v);
    }

    /// Records one duration in nanoseconds (truncated to microseconds, clamped).
    #[inline]
    pub fn record_nanos(&mut self, ns: u64) {
        self.record_micros(ns / 1000);
    }

    pub fn merge(&mut self, other: &LatencyHistogram<C>) -> Result<(), HistogramError> {
        self.h
            .add(&other.h)
            .map_err(|e| HistogramError::Merge(format!("{e:?}")))
    }

    pub fn reset(&mut self) {
        self.h.reset();
    }

    pub fn count(&self) -> u64 {
        self.h.len()
    }

    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    /// Percentile in milliseconds (`q` in 0..=100); 0 when empty.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.h.is_empty() {
            return 0.0;
        }
        self.h.value_at_percentile(q.clamp(0.0, 100.0)) as f64 / 1000.0
    }

    pub fn mean_ms(&self) -> f64 {
        if self.h.is_empty() {
            0.0
        } else {
            self.h.mean() / 1000.0
        }
    }

    pub fn min_ms(&self) -> f64 {
        if self.h.is_empty() {
            0.0
        } else {
            self.h.min() as f64 / 1000.0
        }
    }

    pub fn max_ms(&self) -> f64 {
        if self.h.is_empty() {
            0.0
        } else {
            self.h.max() as f64 / 1000.0
        }
    }

    pub fn stdev_ms(&self) -> f64 {
        if self.h.is_empty() {
            0.0
        } else {
            self.h.stdev() / 1000.0
        }
    }

    /// The usual summary statistics in milliseconds.
    pub fn stats(&self) -> TrendStats {
        TrendStats {
            count: self.count(),
            avg: self.mean_ms(),
            min: self.min_ms(),
            med: self.percentile_ms(50.0),
            p90: self.percentile_ms(90.0),
            p95: self.percentile_ms(95.0),
            p99: self.percentile_ms(99.0),
            max: self.max_ms(),
        }
    }

    /// HdrHistogram V2 + DEFLATE, base64: the same bytes any HdrHistogram library reads.
    pub fn to_base64(&self) -> Result<String, HistogramError> {
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.h, &mut buf)
            .map_err(|e| HistogramError::Decode(format!("{e:?}")))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(buf))
    }

    /// Access to the underlying histogram for callers that need more.
    pub fn inner(&self) -> &Histogram<C> {
        &self.h
    }
}

impl LatencyHistogram<u64> {
    pub fn from_base64(s: &str) -> Result<Self, HistogramError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| HistogramError::Base64(e.to_string()))?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| HistogramError::Decode(format!("{e:?}")))?;
        let mut out = LatencyHistogram::new();
        out.h
            .add(&h)
            .map_err(|e| HistogramError::Merge(format!("{e:?}")))?;
        Ok(out)
    }
}

/// Summary statistics of a trend metric, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TrendStats {
    pub count: u64,
    pub avg: f64,
    pub min: f64,
    pub med: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl<C: Counter> Serialize for LatencyHistogram<C> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b64 = self.to_base64().map_err(serde::ser::Error::custom)?;
        s.serialize_str(&b64)
    }
}

impl<'de> Deserialize<'de> for LatencyHistogram {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LatencyHistogram::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_three_digits() {
        let mut h = LatencyHistogram::new();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 1000);
        let p95 = h.percentile_ms(95.0);
        assert!((p95 - 950.0).abs() < 1.0, "{p95}");
        assert!((h.mean_ms() - 500.5).abs() < 1.0);
        assert!((h.min_ms() - 1.0).abs() < 0.01);
    }

    #[test]
    fn round_trips_through_base64_and_merges() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        a.record(Duration::from_millis(10));
        b.record(Duration::from_millis(30));
        let b2 = LatencyHistogram::from_base64(&b.to_base64().unwrap()).unwrap();
        a.merge(&b2).unwrap();
        assert_eq!(a.count(), 2);
        assert!((a.max_ms() - 30.0).abs() < 0.1);
        assert!(LatencyHistogram::from_base64("not base64!").is_err());
        let json = serde_json::to_string(&a).unwrap();
        let back: LatencyHistogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back.count(), 2);
    }

    #[test]
    fn the_compact_size_records_nanoseconds_and_merges() {
        let mut a = CompactHistogram::compact();
        for i in 1..=100u64 {
            a.record_nanos(i * 1_000_000);
        }
        let mut b = CompactHistogram::compact();
        b.record_nanos(5_000_000_000);
        a.merge(&b).unwrap();
        assert_eq!(a.count(), 101);
        let p95 = a.percentile_ms(95.0);
        assert!((94.0..=97.0).contains(&p95), "{p95}");
        assert!(a.max_ms() >= 4990.0);
        let mut z = CompactHistogram::compact();
        z.record_nanos(0);
        assert_eq!(z.count(), 1);
        assert!((z.min_ms() - 0.001).abs() < 1e-9);
    }

    #[test]
    fn clamps_out_of_range_values() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_secs(10_000));
        h.record(Duration::ZERO);
        assert_eq!(h.count(), 2);
        assert!(h.max_ms() <= MAX_MICROS as f64 / 1000.0 * 1.001);
    }
}
