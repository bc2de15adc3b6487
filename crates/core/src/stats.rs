//! Whether a change between two runs is real: tests on the stored latency histograms.
//!
//! - [`mann_whitney`]: the Mann–Whitney U test (Wilcoxon rank-sum) on two HDR
//!   histograms, with mid-ranks for the values that share a bucket and the tie
//!   correction of the variance, normal approximation (the samples are thousands of
//!   requests). It asks "does a request of B tend to take longer than one of A?", which
//!   is the question of a latency regression; it is robust to the long tails latency
//!   has, where a t-test is not, and unlike Kolmogorov–Smirnov it does not flag a
//!   change of shape with the same typical latency.
//! - [`quantile_change`]: the change of one quantile (median, p95) with a bootstrap
//!   confidence interval, resampling each histogram's buckets (a multinomial draw over
//!   the recorded buckets, so the cost is the number of buckets, not of requests).
//!
//! Limits: requests within one run are not independent (a slow database slows every
//! request for a while), so p-values from one run per side are optimistic; pooling
//! several runs per side and looking at the run-to-run spread is the remedy, and the
//! compare report says so. Bucket resolution is the histogram's (3 significant
//! digits), so changes below 0.1 % are invisible.

use crate::histogram::LatencyHistogram;
use rand::SeedableRng;
use rand_distr::{Binomial, Distribution};
use statrs::distribution::{ContinuousCDF, Normal};

/// The result of a Mann–Whitney U test of A against B.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftTest {
    pub n_a: u64,
    pub n_b: u64,
    /// U of sample B: the number of (a, b) pairs where b > a, ties counted half.
    pub u_b: f64,
    /// The standardised statistic (continuity-corrected); positive when B is slower.
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// P(B > A) + ½·P(B = A): 0.5 means no tendency, above 0.5 B tends to be slower.
    pub prob_b_slower: f64,
}

/// (value in µs, count) of each recorded bucket, in increasing value.
fn buckets(h: &LatencyHistogram) -> Vec<(u64, u64)> {
    h.inner()
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// The Mann–Whitney U test; `None` when either histogram is empty.
pub fn mann_whitney(a: &LatencyHistogram, b: &LatencyHistogram) -> Option<ShiftTest> {
    let (n_a, n_b) = (a.count(), b.count());
    if n_a == 0 || n_b == 0 {
        return None;
    }
    let (ba, bb) = (buckets(a), buckets(b));
    let (mut i, mut j) = (0, 0);
    let mut below = 0f64; // values ranked so far
    let mut rank_sum_b = 0f64;
    let mut ties = 0f64; // Σ (t³ − t)
    while i < ba.len() || j < bb.len() {
        let va = ba.get(i).map_or(u64::MAX, |x| x.0);
        let vb = bb.get(j).map_or(u64::MAX, |x| x.0);
        let v = va.min(vb);
        let ca = if va == v { ba[i].1 as f64 } else { 0.0 };
        let cb = if vb == v { bb[j].1 as f64 } else { 0.0 };
        let t = ca + cb;
        let mid_rank = below + (t + 1.0) / 2.0;
        rank_sum_b += cb * mid_rank;
        ties += t * t * t - t;
        below += t;
        if va == v {
            i += 1;
        }
        if vb == v {
            j += 1;
        }
    }
    let (na, nb) = (n_a as f64, n_b as f64);
    let n = na + nb;
    let u_b = rank_sum_b - nb * (nb + 1.0) / 2.0;
    let mean = na * nb / 2.0;
    let var = na * nb / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    let (z, p_value) = if var <= 0.0 {
        // Every value in one bucket: nothing to tell apart.
        (0.0, 1.0)
    } else {
        let d = u_b - mean;
        let corrected = (d.abs() - 0.5).max(0.0).copysign(d);
        let z = corrected / var.sqrt();
        (z, 2.0 * (1.0 - standard_normal().cdf(z.abs())))
    };
    Some(ShiftTest {
        n_a,
        n_b,
        u_b,
        z,
        p_value: p_value.clamp(0.0, 1.0),
        prob_b_slower: u_b / (na * nb),
    })
}

#[allow(clippy::expect_used)]
fn standard_normal() -> Normal {
    // Mean 0 and deviation 1 are valid parameters.
    Normal::new(0.0, 1.0).expect("standard normal")
}

/// The change of quantile `q` from A to B, with a bootstrap confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantileChange {
    pub q: f64,
    pub before_ms: f64,
    pub after_ms: f64,
    /// after − before.
    pub delta_ms: f64,
    /// The interval that holds the true change with probability `level`.
    pub low_ms: f64,
    pub high_ms: f64,
    pub level: f64,
}

impl QuantileChange {
    /// The change relative to before (0.21 = +21 %); 0 when before is 0.
    pub fn relative(&self) -> f64 {
        if self.before_ms > 0.0 {
            self.delta_ms / self.before_ms
        } else {
            0.0
        }
    }

    /// Whether the interval leaves out "no change".
    pub fn excludes_zero(&self) -> bool {
        self.low_ms > 0.0 || self.high_ms < 0.0
    }
}

/// The quantile `q` (0..=1) of bucket counts, in ms.
fn quantile_ms(b: &[(u64, u64)], counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return b[i].0 as f64 / 1000.0;
        }
    }
    b.last().map_or(0.0, |x| x.0 as f64 / 1000.0)
}

/// One multinomial resample of `b`'s counts (same total), by conditional binomials.
fn resample(b: &[(u64, u64)], total: u64, rng: &mut rand::rngs::StdRng) -> Vec<u64> {
    let mut left_n = total;
    let mut left_mass = total as f64;
    b.iter()
        .map(|&(_, c)| {
            if left_n == 0 || left_mass <= 0.0 {
                return 0;
            }
            let p = (c as f64 / left_mass).clamp(0.0, 1.0);
            let k = Binomial::new(left_n, p).map_or(0, |d| d.sample(rng));
            left_n -= k;
            left_mass -= c as f64;
            k
        })
        .collect()
}

/// The change of quantile `q` with a `level` (e.g. 0.95) percentile-bootstrap interval
/// from `resamples` resamples; deterministic for one `seed`. `None` when either
/// histogram is empty.
pub fn quantile_change(
    a: &LatencyHistogram,
    b: &LatencyHistogram,
    q: f64,
    level: f64,
    resamples: usize,
    seed: u64,
) -> Option<QuantileChange> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (ba, bb) = (buckets(a), buckets(b));
    let ca: Vec<u64> = ba.iter().map(|x| x.1).collect();
    let cb: Vec<u64> = bb.iter().map(|x| x.1).collect();
    let before_ms = quantile_ms(&ba, &ca, q);
    let after_ms = quantile_ms(&bb, &cb, q);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut deltas: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let ra = resample(&ba, a.count(), &mut rng);
            let rb = resample(&bb, b.count(), &mut rng);
            quantile_ms(&bb, &rb, q) - quantile_ms(&ba, &ra, q)
        })
        .collect();
    deltas.sort_by(f64::total_cmp);
    let tail = (1.0 - level.clamp(0.0, 1.0)) / 2.0;
    let at = |p: f64| {
        let i = ((p * (deltas.len() - 1) as f64).round() as usize).min(deltas.len() - 1);
        deltas[i]
    };
    Some(QuantileChange {
        q,
        before_ms,
        after_ms,
        delta_ms: after_ms - before_ms,
        low_ms: at(tail),
        high_ms: at(1.0 - tail),
        level,
    })
}

/// One-sided two-proportion z-test on (requests, errors) counts: the p-value of "the
/// error rate of `after` is above that of `before`". `None` when either side has no
/// requests.
pub fn rate_increase_p_value(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let (n1, e1) = (before.0 as f64, before.1 as f64);
    let (n2, e2) = (after.0 as f64, after.1 as f64);
    if n1 == 0.0 || n2 == 0.0 {
        return None;
    }
    let pooled = (e1 + e2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        return Some(if e2 / n2 > e1 / n1 { 0.0 } else { 1.0 });
    }
    let z = (e2 / n2 - e1 / n1) / se;
    let normal = Normal::new(0.0, 1.0).ok()?;
    Some(1.0 - normal.cdf(z))
}

/// The level below which a p-value counts as significant.
pub const ALPHA: f64 = 0.01;

/// The smallest relative change of p95 called a change, even when significant: with
/// tens of thousands of requests a 1 % drift is "significant" and means nothing.
pub const MIN_EFFECT: f64 = 0.05;

/// Which way latency moved, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Slower,
    Faster,
    NoSignificantChange,
}

/// Before against after, each side one or several runs pooled.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The rank test on the pooled runs.
    pub test: ShiftTest,
    pub median: QuantileChange,
    pub p95: QuantileChange,
    /// Run-to-run spread of p95 on each side: (max − min) / median of the runs' p95s;
    /// `None` with a single run.
    pub spread_before: Option<f64>,
    pub spread_after: Option<f64>,
    pub direction: Direction,
}

/// The p95 of each run, in ms, and their relative spread.
fn spread(runs: &[&LatencyHistogram]) -> Option<f64> {
    if runs.len() < 2 {
        return None;
    }
    let mut p: Vec<f64> = runs.iter().map(|h| h.percentile_ms(95.0)).collect();
    p.sort_by(f64::total_cmp);
    let mid = p[p.len() / 2];
    let (lo, hi) = (p[0], p[p.len() - 1]);
    (mid > 0.0).then(|| (hi - lo) / mid)
}

/// Compares `before` with `after` (each one or more runs, pooled); `None` when a
/// side measured nothing.
pub fn compare(before: &[&LatencyHistogram], after: &[&LatencyHistogram]) -> Option<Comparison> {
    let pool = |runs: &[&LatencyHistogram]| -> Option<LatencyHistogram> {
        let mut all = LatencyHistogram::new();
        for h in runs {
            all.merge(h).ok()?;
        }
        (!all.is_empty()).then_some(all)
    };
    let (a, b) = (pool(before)?, pool(after)?);
    let test = mann_whitney(&a, &b)?;
    let median = quantile_change(&a, &b, 0.5, 0.95, 400, 0x5eed)?;
    let p95 = quantile_change(&a, &b, 0.95, 0.95, 400, 0x5eed + 1)?;
    let (spread_before, spread_after) = (spread(before), spread(after));
    let noise = MIN_EFFECT
        .max(spread_before.unwrap_or(0.0))
        .max(spread_after.unwrap_or(0.0));
    let real = test.p_value < ALPHA && p95.excludes_zero() && p95.relative().abs() >= noise;
    let direction = match (real, p95.delta_ms > 0.0) {
        (false, _) => Direction::NoSignificantChange,
        (true, true) => Direction::Slower,
        (true, false) => Direction::Faster,
    };
    Some(Comparison {
        test,
        median,
        p95,
        spread_before,
        spread_after,
        direction,
    })
}

impl Comparison {
    /// The noise a change must exceed: [`MIN_EFFECT`] or the larger run-to-run spread.
    pub fn noise(&self) -> f64 {
        MIN_EFFECT
            .max(self.spread_before.unwrap_or(0.0))
            .max(self.spread_after.unwrap_or(0.0))
    }

    /// One line: `slower: p95 +38ms (+21%), significant (p < 0.001)` or
    /// `no significant change: p95 +1.2ms (+0.8%), p = 0.31`.
    pub fn words(&self) -> String {
        let sign = |v: f64| if v >= 0.0 { "+" } else { "" };
        let change = format!(
            "p95 {}{} ({}{})",
            sign(self.p95.delta_ms),
            crate::units::ms(self.p95.delta_ms),
            sign(self.p95.relative()),
            crate::units::fraction(self.p95.relative())
        );
        let p = if self.test.p_value < 0.001 {
            "p < 0.001".to_string()
        } else {
            format!("p = {}", crate::units::trim(self.test.p_value, 3))
        };
        match self.direction {
            Direction::Slower => format!("slower: {change}, significant ({p})"),
            Direction::Faster => format!("faster: {change}, significant ({p})"),
            Direction::NoSignificantChange => {
                let why = if self.test.p_value >= ALPHA || !self.p95.excludes_zero() {
                    p
                } else {
                    format!(
                        "{p} but within the ±{} noise margin",
                        crate::units::fraction(self.noise())
                    )
                };
                format!("no significant change: {change}, {why}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_error_rise_over_few_requests_is_not_significant() {
        let p = rate_increase_p_value((1000, 10), (100, 2)).unwrap();
        assert!(p > ALPHA, "{p}");
        let p = rate_increase_p_value((1000, 10), (1000, 60)).unwrap();
        assert!(p < 1e-6, "{p}");
        assert!(rate_increase_p_value((0, 0), (10, 1)).is_none());
        assert_eq!(rate_increase_p_value((100, 0), (100, 0)), Some(1.0));
    }
    use rand::Rng;
    use rand_distr::LogNormal;

    /// `n` latencies around `median_ms` with a long right tail, times `factor`.
    fn run(n: usize, median_ms: f64, factor: f64, seed: u64) -> LatencyHistogram {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let d = LogNormal::new((median_ms * 1000.0).ln(), 0.5).unwrap();
        let mut h = LatencyHistogram::new();
        for _ in 0..n {
            let us: f64 = d.sample(&mut rng) * factor;
            h.record_micros(us as u64);
        }
        h
    }

    #[test]
    fn two_runs_of_the_same_distribution_are_not_told_apart() {
        let mut significant = 0;
        for seed in 0..20 {
            let a = run(20_000, 80.0, 1.0, seed);
            let b = run(20_000, 80.0, 1.0, 1000 + seed);
            let t = mann_whitney(&a, &b).unwrap();
            if t.p_value < 0.01 {
                significant += 1;
            }
            assert!((t.prob_b_slower - 0.5).abs() < 0.02, "{t:?}");
        }
        // At the 1 % level, 20 true-null tests flag at most a couple.
        assert!(
            significant <= 2,
            "{significant} of 20 null comparisons flagged"
        );
    }

    #[test]
    fn a_planted_slowdown_is_found_and_its_size_bracketed() {
        let a = run(20_000, 80.0, 1.0, 1);
        let b = run(20_000, 80.0, 1.2, 2);
        let t = mann_whitney(&a, &b).unwrap();
        assert!(t.p_value < 1e-6 && t.z > 0.0, "{t:?}");
        assert!(t.prob_b_slower > 0.55, "{t:?}");
        // Reversed, the sign flips.
        let r = mann_whitney(&b, &a).unwrap();
        assert!(r.z < 0.0 && r.prob_b_slower < 0.45, "{r:?}");

        let c = quantile_change(&a, &b, 0.5, 0.95, 300, 7).unwrap();
        // The true median change is +16 ms (80 → 96).
        assert!(c.excludes_zero(), "{c:?}");
        assert!(c.low_ms < 16.0 && c.high_ms > 16.0, "{c:?}");
        assert!((c.relative() - 0.2).abs() < 0.05, "{c:?}");
        let p95 = quantile_change(&a, &b, 0.95, 0.95, 300, 7).unwrap();
        assert!(p95.excludes_zero() && p95.delta_ms > 0.0, "{p95:?}");
    }

    #[test]
    fn the_same_run_twice_has_an_interval_around_zero() {
        let a = run(10_000, 50.0, 1.0, 3);
        let b = run(10_000, 50.0, 1.0, 4);
        for q in [0.5, 0.95] {
            let c = quantile_change(&a, &b, q, 0.95, 300, 9).unwrap();
            assert!(!c.excludes_zero() || c.relative().abs() < 0.03, "{c:?}");
            assert!(c.low_ms <= c.high_ms);
        }
    }

    #[test]
    fn the_words_for_a_slowdown_and_for_two_runs_of_the_same_plan() {
        let a = run(20_000, 80.0, 1.0, 11);
        let b = run(20_000, 80.0, 1.25, 12);
        let c = compare(&[&a], &[&b]).unwrap();
        assert_eq!(c.direction, Direction::Slower);
        let w = c.words();
        assert!(
            w.starts_with("slower: p95 +") && w.ends_with("significant (p < 0.001)"),
            "{w}"
        );

        let same = run(20_000, 80.0, 1.0, 13);
        let c = compare(&[&a], &[&same]).unwrap();
        assert_eq!(c.direction, Direction::NoSignificantChange, "{}", c.words());
        assert!(
            c.words().starts_with("no significant change: p95 "),
            "{}",
            c.words()
        );

        let faster = compare(&[&b], &[&a]).unwrap();
        assert_eq!(faster.direction, Direction::Faster);
    }

    #[test]
    fn a_change_within_the_run_to_run_spread_is_not_called_a_change() {
        // Before: runs whose p95 differ by about 20 % from each other.
        let before = [run(5_000, 80.0, 1.0, 21), run(5_000, 80.0, 1.2, 22)];
        // After: 10 % slower than the first run, inside the spread.
        let after = [run(5_000, 80.0, 1.1, 23), run(5_000, 80.0, 1.1, 24)];
        let c = compare(&[&before[0], &before[1]], &[&after[0], &after[1]]).unwrap();
        assert!(c.spread_before.unwrap() > 0.1, "{c:?}");
        assert_eq!(c.direction, Direction::NoSignificantChange, "{}", c.words());
        assert!(compare(&[&LatencyHistogram::new()], &[&after[0]]).is_none());
    }

    #[test]
    fn ties_and_empty_inputs() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        assert!(mann_whitney(&a, &b).is_none());
        assert!(quantile_change(&a, &b, 0.5, 0.95, 10, 1).is_none());
        for _ in 0..100 {
            a.record_micros(5_000);
            b.record_micros(5_000);
        }
        let t = mann_whitney(&a, &b).unwrap();
        assert_eq!(t.p_value, 1.0);
        assert_eq!(t.prob_b_slower, 0.5);
        // A handful of requests per side still gives a finite answer.
        let mut c = LatencyHistogram::new();
        c.record_micros(rand::rng().random_range(1..10));
        assert!(mann_whitney(&a, &c).unwrap().p_value.is_finite());
    }

    #[test]
    fn the_u_statistic_matches_a_direct_count_on_small_samples() {
        let xs = [3_000u64, 5_000, 5_000, 9_000];
        let ys = [4_000u64, 5_000, 10_000];
        let (mut a, mut b) = (LatencyHistogram::new(), LatencyHistogram::new());
        xs.iter().for_each(|&v| a.record_micros(v));
        ys.iter().for_each(|&v| b.record_micros(v));
        let direct: f64 = ys
            .iter()
            .flat_map(|y| xs.iter().map(move |x| (x, y)))
            .map(|(x, y)| match y.cmp(x) {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            })
            .sum();
        assert_eq!(mann_whitney(&a, &b).unwrap().u_b, direct);
    }
}
