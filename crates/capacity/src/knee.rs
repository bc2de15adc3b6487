//! Where a graduated load test stopped scaling.
//!
//! [`knee`] is the runbook's rule: the first step that broke a target (a latency
//! target of an endpoint type, the error rate, a plan threshold) or saturated —
//! achieved rate below [`SATURATED`] of the offered rate while latency climbed over
//! the step before. The last step before it is the maximum sustainable rate.
//!
//! [`kneedle`] is the model-free view of the same curve: the point of maximum
//! curvature of throughput against offered load (Satopää et al., "Finding a
//! 'Kneedle' in a Haystack", 2011), reported beside the rule's knee; with the few
//! points of a step test it is sensitive, so it never decides the verdict.

use serde::{Deserialize, Serialize};

/// Achieved below this fraction of offered is saturation (when latency climbs too).
pub const SATURATED: f64 = 0.9;

/// What a step measured, as the knee rule reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepOutcome {
    /// Requests per second offered (the arrival rate).
    pub offered: f64,
    /// Requests per second completed.
    pub achieved: f64,
    /// The latency the knee rule watches (e.g. the p95 of all requests), ms.
    pub latency_ms: f64,
    /// Each target or threshold the step broke, in words.
    pub violations: Vec<String>,
}

/// Why the knee is where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum KneeReason {
    /// The step broke these targets.
    SloViolation { violations: Vec<String> },
    /// The step completed only this fraction of what was offered while latency rose.
    Saturation { achieved_fraction: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Knee {
    /// Index of the first step that broke a target or saturated.
    pub step: usize,
    pub reason: KneeReason,
    /// Index of the last step within every target (the maximum sustainable rate);
    /// `None` when the first step already broke one.
    pub last_good: Option<usize>,
}

/// The first violating or saturated step, if any.
pub fn knee(steps: &[StepOutcome]) -> Option<Knee> {
    for (i, s) in steps.iter().enumerate() {
        let last_good = i.checked_sub(1);
        if !s.violations.is_empty() {
            return Some(Knee {
                step: i,
                reason: KneeReason::SloViolation {
                    violations: s.violations.clone(),
                },
                last_good,
            });
        }
        let fraction = if s.offered > 0.0 {
            s.achieved / s.offered
        } else {
            1.0
        };
        let climbing = i == 0 || s.latency_ms > steps[i - 1].latency_ms;
        if fraction < SATURATED && climbing {
            return Some(Knee {
                step: i,
                reason: KneeReason::Saturation {
                    achieved_fraction: fraction,
                },
                last_good,
            });
        }
    }
    None
}

/// The index of the knee of a concave, increasing curve `y(x)` (`x` strictly
/// increasing), with sensitivity `s` (1.0 is the paper's suggestion); `None` when the
/// curve has no knee (it never flattens) or fewer than three points.
pub fn kneedle(x: &[f64], y: &[f64], s: f64) -> Option<usize> {
    let n = x.len();
    if n < 3 || y.len() != n || x.windows(2).any(|w| w[1] <= w[0]) {
        return None;
    }
    let norm = |v: &[f64]| -> Option<Vec<f64>> {
        let lo = v.iter().copied().fold(f64::MAX, f64::min);
        let hi = v.iter().copied().fold(f64::MIN, f64::max);
        (hi > lo).then(|| v.iter().map(|a| (a - lo) / (hi - lo)).collect())
    };
    let (xn, yn) = (norm(x)?, norm(y)?);
    let diff: Vec<f64> = yn.iter().zip(&xn).map(|(a, b)| a - b).collect();
    let step = 1.0 / (n - 1) as f64;
    let is_max =
        |i: usize| (i == 0 || diff[i] >= diff[i - 1]) && (i + 1 == n || diff[i] >= diff[i + 1]);
    let mut candidate: Option<(usize, f64)> = None;
    for (i, &d) in diff.iter().enumerate() {
        if let Some((k, threshold)) = candidate {
            if d < threshold {
                return Some(k);
            }
        }
        if i + 1 < n && is_max(i) && d > 0.0 {
            candidate = Some((i, d - s * step));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: f64, achieved: f64, latency_ms: f64, violations: &[&str]) -> StepOutcome {
        StepOutcome {
            offered,
            achieved,
            latency_ms,
            violations: violations.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_first_violating_step_is_the_knee_and_the_one_before_is_sustainable() {
        let steps = [
            step(50.0, 50.0, 20.0, &[]),
            step(100.0, 100.0, 25.0, &[]),
            step(150.0, 149.0, 120.0, &[]),
            step(
                200.0,
                198.0,
                240.0,
                &["Authentication P95 240ms > 200ms maximum"],
            ),
            step(
                250.0,
                180.0,
                900.0,
                &["Authentication P95 900ms > 200ms maximum"],
            ),
        ];
        let k = knee(&steps).unwrap();
        assert_eq!(k.step, 3);
        assert_eq!(k.last_good, Some(2));
        assert!(
            matches!(k.reason, KneeReason::SloViolation { ref violations } if violations.len() == 1)
        );
    }

    #[test]
    fn saturation_without_a_broken_target_is_a_knee_too() {
        let steps = [
            step(100.0, 100.0, 10.0, &[]),
            step(200.0, 199.0, 12.0, &[]),
            step(400.0, 300.0, 40.0, &[]),
        ];
        let k = knee(&steps).unwrap();
        assert_eq!(k.step, 2);
        match k.reason {
            KneeReason::Saturation { achieved_fraction } => {
                assert!((achieved_fraction - 0.75).abs() < 1e-9)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_short_fall_with_latency_not_climbing_is_not_saturation() {
        // The generator fell behind on one step but latency did not rise: not the
        // target's knee (the generator's own saturation is judged apart).
        let steps = [step(100.0, 100.0, 30.0, &[]), step(200.0, 170.0, 25.0, &[])];
        assert_eq!(knee(&steps), None);
        assert_eq!(knee(&[]), None);
    }

    #[test]
    fn kneedle_finds_where_throughput_stops_rising() {
        let offered = [50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 400.0];
        let achieved = [50.0, 100.0, 150.0, 195.0, 205.0, 208.0, 209.0, 209.0];
        assert_eq!(kneedle(&offered, &achieved, 1.0), Some(3));
        // A straight line has no knee.
        assert_eq!(kneedle(&offered, &offered, 1.0), None);
        assert_eq!(kneedle(&offered[..2], &achieved[..2], 1.0), None);
    }
}
