//! Seeded random streams for simulated latencies and error injection: SplitMix64,
//! small and reproducible (the same seed gives the same sequence of draws).

use crate::config::Latency;
use std::time::Duration;

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A draw from `l`: `median · e^(spread · Z)`, capped at `max`.
    pub fn latency(&mut self, l: &Latency) -> Duration {
        if l.spread == 0.0 || l.median.is_zero() {
            return l.median.min(l.max);
        }
        let secs = l.median.as_secs_f64() * (l.spread * self.normal()).exp();
        Duration::from_secs_f64(secs.clamp(0.0, l.max.as_secs_f64()))
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws() {
        let mut a = SplitMix::new(7);
        let mut b = SplitMix::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn lognormal_median_and_cap() {
        let l = Latency {
            median: Duration::from_millis(100),
            spread: 0.5,
            max: Duration::from_millis(300),
        };
        let mut r = SplitMix::new(3);
        let mut v: Vec<Duration> = (0..10_001).map(|_| r.latency(&l)).collect();
        v.sort();
        let med = v[5000].as_secs_f64() * 1000.0;
        assert!((90.0..110.0).contains(&med), "median {med}");
        assert!(v.iter().all(|d| *d <= Duration::from_millis(300)));
        assert!(v[0] < Duration::from_millis(60));
    }

    #[test]
    fn fixed_latency_is_exact() {
        let mut r = SplitMix::new(1);
        assert_eq!(
            r.latency(&Latency::fixed(Duration::from_millis(50))),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn chance_matches_rate() {
        let mut r = SplitMix::new(11);
        let hits = (0..100_000).filter(|_| r.chance(0.02)).count();
        assert!((1700..2300).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| r.chance(0.0)));
    }
}
