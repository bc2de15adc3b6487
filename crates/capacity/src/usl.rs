//! The Universal Scalability Law (Gunther): throughput at concurrency N is
//! `X(N) = λN / (1 + σ(N−1) + κN(N−1))`, where σ is contention (a serialised
//! fraction: a lock, one hot row, one single-threaded Redis), κ is coherency (the
//! pairwise cost of keeping workers in step) and λ the throughput of one unit of
//! concurrency.
//!
//! [`fit`] finds σ, κ and λ by non-linear least squares (Levenberg–Marquardt, on the
//! residuals `X_observed − X(N)`, from σ = 0.1, κ = 0.01 and λ = the largest X/N), as
//! the usual USL libraries do, and refuses — with the reason — when the points
//! cannot support a fit: fewer than [`MIN_POINTS`], a value that is not a positive
//! finite number, no convergence, or parameters with no physical meaning.
//!
//! Arrival-rate steps give throughput and latency; their concurrency is Little's
//! law, `N = X × R` ([`Measurement::from_rate_and_latency`]).

use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
use nalgebra::{storage::Owned, DVector, Dyn, OMatrix, Vector3, U3};
use serde::{Deserialize, Serialize};

/// Fewer points than this leave three parameters underdetermined in practice.
pub const MIN_POINTS: usize = 6;

/// One step's mean concurrency and throughput.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Measurement {
    /// Mean requests in flight (N).
    pub concurrency: f64,
    /// Completed requests per second (X).
    pub throughput: f64,
}

impl Measurement {
    /// A step measured as a completion rate and a mean latency: N = X × R.
    pub fn from_rate_and_latency(throughput: f64, mean_latency_s: f64) -> Measurement {
        Measurement {
            concurrency: throughput * mean_latency_s,
            throughput,
        }
    }
}

/// Why a fit was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitRefused {
    #[error("{0} steady steps measured; the USL fit needs at least {MIN_POINTS}")]
    TooFewPoints(usize),
    #[error("step {0} has no positive, finite concurrency and throughput")]
    BadPoint(usize),
    #[error("the points span too little concurrency to separate contention from coherency (largest N / smallest N = {0:.2})")]
    NarrowRange(f64),
    #[error("the fit did not converge")]
    NoConvergence,
    #[error("the fit gives σ = {sigma:.4}, κ = {kappa:.6}: outside 0 ≤ σ < 1, κ ≥ 0, so the points do not follow the law")]
    Unphysical { sigma: f64, kappa: f64 },
}

/// Which term limits scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// σ > κ: queueing on a shared resource flattens throughput.
    Contention,
    /// κ ≥ σ > 0 or κ > 0 dominant: crosstalk makes throughput fall past a peak.
    Coherency,
    /// σ = κ = 0 (within rounding): throughput grows linearly over the range.
    Linear,
}

/// A fitted law.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Usl {
    pub sigma: f64,
    pub kappa: f64,
    pub lambda: f64,
    /// Coefficient of determination of the fit over the points (1 is perfect).
    pub r_squared: f64,
    pub points: usize,
}

impl Usl {
    /// Throughput the law predicts at concurrency `n`.
    pub fn throughput(&self, n: f64) -> f64 {
        self.lambda * n / self.denominator(n)
    }

    /// Mean latency in seconds the law predicts at concurrency `n`.
    pub fn latency_s(&self, n: f64) -> f64 {
        self.denominator(n) / self.lambda
    }

    fn denominator(&self, n: f64) -> f64 {
        1.0 + self.sigma * (n - 1.0) + self.kappa * n * (n - 1.0)
    }

    /// The concurrency of peak throughput, `√((1 − σ)/κ)`; `None` when κ is zero
    /// (throughput then rises towards λ/σ without a peak).
    pub fn peak_concurrency(&self) -> Option<f64> {
        (self.kappa > 0.0).then(|| ((1.0 - self.sigma) / self.kappa).sqrt())
    }

    /// The highest throughput the law allows: X at the peak, or the ceiling λ/σ when
    /// there is no peak; `None` when neither exists (a linear law).
    pub fn peak_throughput(&self) -> Option<f64> {
        match self.peak_concurrency() {
            Some(n) => Some(self.throughput(n)),
            None => (self.sigma > 0.0).then(|| self.lambda / self.sigma),
        }
    }

    pub fn regime(&self) -> Regime {
        const ZERO: f64 = 1e-9;
        if self.sigma <= ZERO && self.kappa <= ZERO {
            Regime::Linear
        } else if self.sigma > self.kappa {
            Regime::Contention
        } else {
            Regime::Coherency
        }
    }
}

/// The least-squares problem: residuals `X_i − X(N_i)` over (σ, κ, λ).
struct Problem<'a> {
    points: &'a [Measurement],
    p: Vector3<f64>,
}

impl LeastSquaresProblem<f64, Dyn, U3> for Problem<'_> {
    type ResidualStorage = Owned<f64, Dyn>;
    type JacobianStorage = Owned<f64, Dyn, U3>;
    type ParameterStorage = Owned<f64, U3>;

    fn set_params(&mut self, p: &Vector3<f64>) {
        self.p.copy_from(p);
    }

    fn params(&self) -> Vector3<f64> {
        self.p
    }

    fn residuals(&self) -> Option<DVector<f64>> {
        let (s, k, l) = (self.p[0], self.p[1], self.p[2]);
        Some(DVector::from_iterator(
            self.points.len(),
            self.points.iter().map(|m| {
                let n = m.concurrency;
                m.throughput - l * n / (1.0 + s * (n - 1.0) + k * n * (n - 1.0))
            }),
        ))
    }

    fn jacobian(&self) -> Option<OMatrix<f64, Dyn, U3>> {
        let (s, k, l) = (self.p[0], self.p[1], self.p[2]);
        let mut j = OMatrix::<f64, Dyn, U3>::zeros(self.points.len());
        for (i, m) in self.points.iter().enumerate() {
            let n = m.concurrency;
            let d = 1.0 + s * (n - 1.0) + k * n * (n - 1.0);
            // r = X − λN/d: ∂r/∂σ = λN(N−1)/d², ∂r/∂κ = λN²(N−1)/d², ∂r/∂λ = −N/d.
            j[(i, 0)] = l * n * (n - 1.0) / (d * d);
            j[(i, 1)] = l * n * n * (n - 1.0) / (d * d);
            j[(i, 2)] = -n / d;
        }
        Some(j)
    }
}

/// Fits the law to `points` (see the module's description for when it refuses).
pub fn fit(points: &[Measurement]) -> Result<Usl, FitRefused> {
    if points.len() < MIN_POINTS {
        return Err(FitRefused::TooFewPoints(points.len()));
    }
    for (i, m) in points.iter().enumerate() {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if !ok(m.concurrency) || !ok(m.throughput) {
            return Err(FitRefused::BadPoint(i + 1));
        }
    }
    let lo = points
        .iter()
        .map(|m| m.concurrency)
        .fold(f64::MAX, f64::min);
    let hi = points.iter().map(|m| m.concurrency).fold(0.0, f64::max);
    if hi / lo < 2.0 {
        return Err(FitRefused::NarrowRange(hi / lo));
    }
    let lambda0 = points
        .iter()
        .map(|m| m.throughput / m.concurrency)
        .fold(0.0, f64::max);
    let problem = Problem {
        points,
        p: Vector3::new(0.1, 0.01, lambda0),
    };
    let (solved, report) = LevenbergMarquardt::new().minimize(problem);
    if !report.termination.was_successful() {
        return Err(FitRefused::NoConvergence);
    }
    let (sigma, kappa, lambda) = (solved.p[0], solved.p[1], solved.p[2]);
    // Rounding can leave a parameter a hair below zero on a linear law.
    const TOLERANCE: f64 = 1e-6;
    if !(-TOLERANCE..1.0).contains(&sigma) || kappa < -TOLERANCE || lambda <= 0.0 {
        return Err(FitRefused::Unphysical { sigma, kappa });
    }
    let mut usl = Usl {
        sigma: sigma.max(0.0),
        kappa: kappa.max(0.0),
        lambda,
        r_squared: 0.0,
        points: points.len(),
    };
    let mean = points.iter().map(|m| m.throughput).sum::<f64>() / points.len() as f64;
    let total: f64 = points.iter().map(|m| (m.throughput - mean).powi(2)).sum();
    let residual: f64 = points
        .iter()
        .map(|m| (m.throughput - usl.throughput(m.concurrency)).powi(2))
        .sum();
    usl.r_squared = if total > 0.0 {
        1.0 - residual / total
    } else {
        1.0
    };
    Ok(usl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn law(sigma: f64, kappa: f64, lambda: f64) -> Usl {
        Usl {
            sigma,
            kappa,
            lambda,
            r_squared: 1.0,
            points: 0,
        }
    }

    /// Points of a known law at `ns`, each throughput off by `noise[i]` (a fraction).
    fn points(u: &Usl, ns: &[f64], noise: &[f64]) -> Vec<Measurement> {
        ns.iter()
            .zip(noise.iter().cycle())
            .map(|(&n, e)| Measurement {
                concurrency: n,
                throughput: u.throughput(n) * (1.0 + e),
            })
            .collect()
    }

    fn within(got: f64, want: f64, frac: f64) -> bool {
        (got - want).abs() <= want.abs() * frac
    }

    #[test]
    fn a_known_law_is_recovered_within_five_percent() {
        let truth = law(0.03, 0.0002, 90.0);
        let ns = [1.0, 4.0, 8.0, 16.0, 32.0, 48.0, 64.0, 96.0];
        // ±1% noise, alternating, as a real step table has.
        let got = fit(&points(&truth, &ns, &[0.01, -0.01, 0.005, -0.005])).unwrap();
        assert!(within(got.sigma, 0.03, 0.05), "{got:?}");
        assert!(within(got.kappa, 0.0002, 0.05), "{got:?}");
        assert!(within(got.lambda, 90.0, 0.05), "{got:?}");
        assert!(got.r_squared > 0.99, "{got:?}");
        assert_eq!(got.regime(), Regime::Contention);
        let peak = got.peak_concurrency().unwrap();
        assert!(
            within(peak, ((1.0f64 - 0.03) / 0.0002).sqrt(), 0.05),
            "{peak}"
        );
    }

    #[test]
    fn the_usl_readme_example_fits_to_its_published_parameters() {
        // codahale/usl's README: σ ≈ 0.0277, κ ≈ 0.000104, λ ≈ 90.0, peak ≈ 1884 at N ≈ 96.
        let pts: Vec<Measurement> = [
            (1.0, 65.0),
            (18.0, 996.0),
            (36.0, 1652.0),
            (72.0, 1853.0),
            (108.0, 1829.0),
            (144.0, 1775.0),
            (216.0, 1702.0),
        ]
        .iter()
        .map(|&(n, x)| Measurement {
            concurrency: n,
            throughput: x,
        })
        .collect();
        let got = fit(&pts).unwrap();
        assert!(within(got.sigma, 0.0277, 0.05), "{got:?}");
        assert!(within(got.kappa, 0.000104, 0.05), "{got:?}");
        assert!(within(got.lambda, 90.0, 0.05), "{got:?}");
        assert!(
            within(got.peak_throughput().unwrap(), 1884.0, 0.02),
            "{got:?}"
        );
        assert!(
            within(got.peak_concurrency().unwrap(), 96.0, 0.05),
            "{got:?}"
        );
    }

    #[test]
    fn a_ceiling_without_retrograde_has_no_peak_but_a_limit() {
        let truth = law(0.1, 0.0, 50.0);
        let got = fit(&points(&truth, &[1.0, 2.0, 5.0, 10.0, 20.0, 40.0], &[0.0])).unwrap();
        assert!(got.kappa < 1e-5, "{got:?}");
        assert!(
            within(got.peak_throughput().unwrap(), 500.0, 0.05),
            "{got:?}"
        );
    }

    #[test]
    fn points_that_cannot_support_a_fit_are_refused_with_the_reason() {
        let truth = law(0.05, 0.001, 10.0);
        let five = points(&truth, &[1.0, 2.0, 4.0, 8.0, 16.0], &[0.0]);
        assert_eq!(fit(&five), Err(FitRefused::TooFewPoints(5)));
        let mut bad = points(&truth, &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0], &[0.0]);
        bad[3].throughput = f64::NAN;
        assert_eq!(fit(&bad), Err(FitRefused::BadPoint(4)));
        let narrow = points(&truth, &[10.0, 11.0, 12.0, 13.0, 14.0, 15.0], &[0.0]);
        assert!(matches!(fit(&narrow), Err(FitRefused::NarrowRange(_))));
        // Throughput that rises faster than linearly has no USL reading.
        let superlinear: Vec<Measurement> = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
            .iter()
            .map(|&n: &f64| Measurement {
                concurrency: n,
                throughput: n * n,
            })
            .collect();
        assert!(
            matches!(
                fit(&superlinear),
                Err(FitRefused::Unphysical { .. } | FitRefused::NoConvergence)
            ),
            "{:?}",
            fit(&superlinear)
        );
    }

    #[test]
    fn littles_law_turns_rate_and_latency_into_concurrency() {
        let m = Measurement::from_rate_and_latency(200.0, 0.05);
        assert!((m.concurrency - 10.0).abs() < 1e-12);
        let u = law(0.02, 0.0005, 30.0);
        let n = 12.0;
        assert!(
            (u.throughput(n) * u.latency_s(n) - n).abs() < 1e-9,
            "X·R = N"
        );
    }
}
