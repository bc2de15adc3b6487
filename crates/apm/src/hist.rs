//! A compact latency histogram for the rolling window: HDR, microseconds, 2
//! significant digits, 32-bit counts (about 13 KiB each, fixed), so that one per
//! route per window bucket stays affordable. Values are clamped to [1 µs, 1 h].

use hdrhistogram::Histogram;

const MAX_US: u64 = 3_600_000_000;

#[derive(Debug, Clone)]
pub struct Hist {
    h: Option<Histogram<u32>>,
}

impl Default for Hist {
    fn default() -> Self {
        Hist::new()
    }
}

impl Hist {
    pub fn new() -> Hist {
        // Constant, valid bounds: construction cannot fail; `None` keeps the
        // library free of panics all the same (an empty histogram records nothing).
        Hist {
            h: Histogram::new_with_bounds(1, MAX_US, 2).ok(),
        }
    }

    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        if let Some(h) = &mut self.h {
            h.saturating_record((ns / 1000).clamp(1, MAX_US));
        }
    }

    pub fn merge(&mut self, other: &Hist) {
        if let (Some(a), Some(b)) = (&mut self.h, &other.h) {
            // Same bounds on both sides: adding cannot go out of range.
            let _ = a.add(b);
        }
    }

    pub fn count(&self) -> u64 {
        self.h.as_ref().map_or(0, |h| h.len())
    }

    /// The `q`-th percentile (0..100) in milliseconds.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        match &self.h {
            Some(h) if !h.is_empty() => h.value_at_quantile(q / 100.0) as f64 / 1000.0,
            _ => 0.0,
        }
    }

    pub fn max_ms(&self) -> f64 {
        match &self.h {
            Some(h) if !h.is_empty() => h.max() as f64 / 1000.0,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_merge() {
        let mut a = Hist::new();
        for i in 1..=100u64 {
            a.record_ns(i * 1_000_000);
        }
        let mut b = Hist::new();
        b.record_ns(5_000_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 101);
        let p95 = a.percentile_ms(95.0);
        assert!((94.0..=97.0).contains(&p95), "{p95}");
        assert!(a.max_ms() >= 4990.0);
    }
}
