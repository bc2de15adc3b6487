//! Whether a load step had settled: after its warm-up, the per-interval latency (or
//! any figure) should hold level. A step whose figure is still climbing or falling is
//! extended or marked unsteady, never read as a steady point of the curve.
//!
//! The rule: an ordinary least-squares line through the measured points; the step is
//! **trending** when that line moves by more than `tolerance` of the points' mean over
//! the window *and* the slope is distinguishable from zero (|t| > 2 on the slope's
//! standard error), so one noisy interval does not make a trend and a slow drift
//! that stays within the tolerance is accepted.

use serde::{Deserialize, Serialize};

/// Fewer points than this are too short to tell a trend from noise.
pub const MIN_POINTS: usize = 5;

/// The default tolerance: a 20% move over the window.
pub const TOLERANCE: f64 = 0.2;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Steadiness {
    Steady {
        /// The fitted line's move over the window, as a fraction of the mean.
        change: f64,
    },
    Trending {
        change: f64,
        /// The slope's t statistic.
        t: f64,
    },
    /// Fewer than [`MIN_POINTS`] points after the warm-up.
    TooShort { points: usize },
}

impl Steadiness {
    pub fn is_steady(&self) -> bool {
        matches!(self, Steadiness::Steady { .. })
    }
}

/// Judges `(seconds, value)` points, dropping those before `warmup_s`.
pub fn judge(points: &[(f64, f64)], warmup_s: f64, tolerance: f64) -> Steadiness {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(t, v)| *t >= warmup_s && t.is_finite() && v.is_finite())
        .collect();
    let n = pts.len();
    if n < MIN_POINTS {
        return Steadiness::TooShort { points: n };
    }
    let nf = n as f64;
    let mt = pts.iter().map(|p| p.0).sum::<f64>() / nf;
    let mv = pts.iter().map(|p| p.1).sum::<f64>() / nf;
    let stt: f64 = pts.iter().map(|p| (p.0 - mt).powi(2)).sum();
    if stt == 0.0 {
        return Steadiness::TooShort { points: 1 };
    }
    let slope = pts.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum::<f64>() / stt;
    let span = pts[n - 1].0 - pts[0].0;
    let change = if mv.abs() > f64::EPSILON {
        slope * span / mv.abs()
    } else {
        0.0
    };
    let sse: f64 = pts
        .iter()
        .map(|p| (p.1 - (mv + slope * (p.0 - mt))).powi(2))
        .sum();
    let se = (sse / (nf - 2.0) / stt).sqrt();
    let t = if se > 0.0 {
        slope / se
    } else if slope == 0.0 {
        0.0
    } else {
        f64::INFINITY.copysign(slope)
    };
    if change.abs() > tolerance && t.abs() > 2.0 {
        Steadiness::Trending { change, t }
    } else {
        Steadiness::Steady { change }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One point a second for `secs`, `f(t)` plus a small alternating wobble.
    fn series(secs: usize, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..secs)
            .map(|i| {
                let t = i as f64;
                let wobble = if i % 2 == 0 { 1.02 } else { 0.98 };
                (t, f(t) * wobble)
            })
            .collect()
    }

    #[test]
    fn a_level_step_is_steady_after_a_slow_warm_up() {
        // Cold caches: slow for 5 s, then level at 20 ms.
        let s = series(30, |t| if t < 5.0 { 200.0 } else { 20.0 });
        assert!(!judge(&s, 0.0, TOLERANCE).is_steady(), "warm-up included");
        assert!(
            judge(&s, 5.0, TOLERANCE).is_steady(),
            "{:?}",
            judge(&s, 5.0, TOLERANCE)
        );
    }

    #[test]
    fn a_queue_building_up_is_trending() {
        // Offered above capacity: latency grows without bound.
        let s = series(30, |t| 20.0 + 10.0 * t);
        match judge(&s, 5.0, TOLERANCE) {
            Steadiness::Trending { change, t } => {
                assert!(change > 1.0, "{change}");
                assert!(t > 2.0, "{t}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn noise_and_a_drift_within_tolerance_are_steady() {
        let noisy: Vec<(f64, f64)> = (0..20)
            .map(|i| (i as f64, if i % 3 == 0 { 40.0 } else { 20.0 }))
            .collect();
        assert!(judge(&noisy, 0.0, TOLERANCE).is_steady());
        let drift = series(20, |t| 100.0 + 0.5 * t);
        assert!(judge(&drift, 0.0, TOLERANCE).is_steady());
    }

    #[test]
    fn too_few_points_after_the_warm_up_say_so() {
        let s = series(8, |_| 10.0);
        assert_eq!(
            judge(&s, 5.0, TOLERANCE),
            Steadiness::TooShort { points: 3 }
        );
    }
}
