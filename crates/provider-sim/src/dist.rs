//! Distributions of TTFT, inter-token latency and output length: a fixed value, a
//! uniform range (`400ms..1.2s`) or a lognormal given by its median and 99th
//! percentile (`p50=500ms,p99=2s`). One text syntax for flags, `sim.toml` and
//! `POST /control`.

use rand::Rng;
use rand_distr::{Distribution, LogNormal};
use std::fmt;
use std::time::Duration;

/// z of the 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_347_874_040_841;

/// A lognormal sample is capped at this many times its p99, so one draw cannot
/// stall a stream for hours.
pub const LOGNORMAL_CAP: f64 = 10.0;

/// A distribution of non-negative numbers (seconds or tokens).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    Fixed(f64),
    Uniform { low: f64, high: f64 },
    LogNormal { p50: f64, p99: f64 },
}

impl Dist {
    /// Parses `V`, `LOW..HIGH` or `p50=V,p99=V`, reading each value with `value`.
    pub fn parse(text: &str, value: impl Fn(&str) -> Result<f64, String>) -> Result<Dist, String> {
        let t = text.trim();
        if let Some((low, high)) = t.split_once("..") {
            let (low, high) = (value(low.trim())?, value(high.trim())?);
            if high < low {
                return Err(format!(
                    "range `{t}` ends below its start, e.g. 400ms..1.2s"
                ));
            }
            return Ok(Dist::Uniform { low, high });
        }
        if t.starts_with("p50") {
            let mut p50 = None;
            let mut p99 = None;
            for part in t.split(',') {
                match part.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                    Some(("p50", v)) => p50 = Some(value(v)?),
                    Some(("p99", v)) => p99 = Some(value(v)?),
                    _ => return Err(format!("`{t}` is not p50=V,p99=V, e.g. p50=500ms,p99=2s")),
                }
            }
            let (Some(p50), Some(p99)) = (p50, p99) else {
                return Err(format!(
                    "`{t}` needs both p50 and p99, e.g. p50=500ms,p99=2s"
                ));
            };
            if p50 <= 0.0 || p99 < p50 {
                return Err(format!(
                    "`{t}`: a lognormal needs 0 < p50 <= p99, e.g. p50=500ms,p99=2s"
                ));
            }
            return Ok(Dist::LogNormal { p50, p99 });
        }
        Ok(Dist::Fixed(value(t)?))
    }

    /// A duration distribution: `400ms`, `400ms..1.2s`, `p50=500ms,p99=2s`, each
    /// value at most `max`.
    pub fn durations(text: &str, max: Duration) -> Result<Dist, String> {
        Dist::parse(text, |v| {
            let d = powertune_core::duration::parse(v)?;
            if d > max {
                return Err(format!(
                    "{v} is longer than the {} allowed",
                    powertune_core::duration::format(max)
                ));
            }
            Ok(d.as_secs_f64())
        })
    }

    /// A token-count distribution: `200`, `100..400`, `p50=200,p99=800`, each value
    /// from 1 to `max`.
    pub fn tokens(text: &str, max: u64) -> Result<Dist, String> {
        Dist::parse(text, |v| match v.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n as f64),
            _ => Err(format!(
                "`{v}` is not a token count from 1 to {max}, e.g. 200"
            )),
        })
    }

    /// The median.
    pub fn median(&self) -> f64 {
        match *self {
            Dist::Fixed(v) => v,
            Dist::Uniform { low, high } => (low + high) / 2.0,
            Dist::LogNormal { p50, .. } => p50,
        }
    }

    /// One draw.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        match *self {
            Dist::Fixed(v) => v,
            Dist::Uniform { low, high } => {
                if high > low {
                    rng.random_range(low..=high)
                } else {
                    low
                }
            }
            Dist::LogNormal { p50, p99 } => {
                let sigma = (p99 / p50).ln() / Z99;
                match LogNormal::new(p50.ln(), sigma) {
                    Ok(d) => d.sample(rng).min(p99 * LOGNORMAL_CAP),
                    Err(_) => p50,
                }
            }
        }
    }

    /// One draw as a duration (seconds scaled by `scale`).
    pub fn duration(&self, rng: &mut impl Rng, scale: f64) -> Duration {
        Duration::from_secs_f64((self.sample(rng) * scale).max(0.0))
    }

    /// One draw as a token count (at least 1).
    pub fn count(&self, rng: &mut impl Rng) -> u64 {
        (self.sample(rng).round() as u64).max(1)
    }

    /// Written back in the syntax it is read in, values through `show`.
    pub fn show(&self, show: impl Fn(f64) -> String) -> String {
        match *self {
            Dist::Fixed(v) => show(v),
            Dist::Uniform { low, high } => format!("{}..{}", show(low), show(high)),
            Dist::LogNormal { p50, p99 } => format!("p50={},p99={}", show(p50), show(p99)),
        }
    }

    /// Durations written as `400ms`, `1.2s`.
    pub fn show_secs(&self) -> String {
        self.show(|s| {
            let ms = s * 1000.0;
            if ms < 1000.0 {
                format!("{}ms", trim(ms))
            } else {
                format!("{}s", trim(s))
            }
        })
    }

    /// Counts written as integers.
    pub fn show_count(&self) -> String {
        self.show(|n| format!("{}", n.round() as u64))
    }
}

/// A number without trailing zeros (`0.5`, `12`, `1.25`).
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.show(trim))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn d(t: &str) -> Dist {
        Dist::durations(t, Duration::from_secs(600)).unwrap()
    }

    #[test]
    fn the_three_forms_parse() {
        assert_eq!(d("400ms"), Dist::Fixed(0.4));
        assert_eq!(
            d("400ms..1.2s"),
            Dist::Uniform {
                low: 0.4,
                high: 1.2
            }
        );
        assert_eq!(
            d(" p50=500ms, p99=2s "),
            Dist::LogNormal { p50: 0.5, p99: 2.0 }
        );
        assert_eq!(Dist::tokens("100..400", 1000).unwrap().median(), 250.0);
        assert_eq!(d("400ms..1.2s").show_secs(), "400ms..1.2s");
        assert_eq!(d("p50=500ms,p99=2s").show_secs(), "p50=500ms,p99=2s");
    }

    #[test]
    fn bad_forms_say_what_is_right() {
        for bad in ["1s..400ms", "p50=1s", "p50=2s,p99=1s", "fast", "400", "11m"] {
            let e = Dist::durations(bad, Duration::from_secs(600)).unwrap_err();
            assert!(e.contains("e.g.") || e.contains("longer"), "{bad}: {e}");
        }
        assert!(Dist::tokens("0", 10).is_err());
        assert!(Dist::tokens("11", 10).is_err());
    }

    #[test]
    fn lognormal_draws_have_the_given_median_and_p99() {
        let dist = d("p50=500ms,p99=2s");
        let mut rng = SmallRng::seed_from_u64(7);
        let mut v: Vec<f64> = (0..200_000).map(|_| dist.sample(&mut rng)).collect();
        v.sort_by(f64::total_cmp);
        let p50 = v[v.len() / 2];
        let p99 = v[v.len() * 99 / 100];
        assert!((p50 - 0.5).abs() < 0.01, "{p50}");
        assert!((p99 - 2.0).abs() < 0.08, "{p99}");
        assert!(v.iter().all(|&x| x <= 20.0));
    }

    #[test]
    fn uniform_draws_stay_in_range_and_center() {
        let dist = d("20ms..45ms");
        let mut rng = SmallRng::seed_from_u64(1);
        let v: Vec<f64> = (0..50_000).map(|_| dist.sample(&mut rng)).collect();
        assert!(v.iter().all(|&x| (0.02..=0.045).contains(&x)));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean - 0.0325).abs() < 0.0005, "{mean}");
    }
}
