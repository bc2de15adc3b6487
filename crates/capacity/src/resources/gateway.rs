//! A powertune gateway (`--gateway`; `--demo` samples its own), read through
//! `powertune gateway status`' inspection entry (`GET /status`):
//!
//! - **utilisation**: credentials out (breaker open, rate-limited or half-open)
//!   against all credentials;
//! - **errors**: upstream 429s plus calls refused at once because every credential
//!   was out (`rejected_all_open`) — the provider quota's signal;
//! - the providers' **P95** over the calls made within the step (the cumulative
//!   histograms less those at the step's start).

use super::{BeginFuture, Ident, Kind, Sample, SampleFuture, Source};
use powertune_core::{LatencyHistogram, Targets};
use powertune_gateway::{StatusOptions, StatusSnapshot};

/// Breaker states of a credential that cannot take a call now.
const OUT: &[&str] = &["open", "rate_limited", "half_open"];

pub struct Gateway {
    options: StatusOptions,
    redacted: String,
    targets: Targets,
    /// The providers' latency at the step's start.
    start: Option<LatencyHistogram>,
}

impl Gateway {
    /// Checks the URL; nothing connects yet.
    pub fn new(url: &str) -> Result<Gateway, String> {
        let redacted = powertune_core::redact::url(url);
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(format!(
                "--gateway {redacted}: not an http(s) URL (e.g. --gateway http://127.0.0.1:4000)"
            ))
            }
        }
        Ok(Gateway {
            options: StatusOptions::new(url.trim_end_matches('/')),
            redacted,
            targets: Targets::default(),
            start: None,
        })
    }

    async fn status(&self) -> Option<StatusSnapshot> {
        powertune_gateway::inspect(&self.options, &self.targets)
            .await
            .ok()
            .map(|i| i.metrics)
    }
}

/// Every provider's latency histogram, merged.
fn latency(s: &StatusSnapshot) -> LatencyHistogram {
    let mut h = LatencyHistogram::new();
    for p in &s.providers {
        let _ = h.merge(&p.histogram);
    }
    h
}

/// P95 (ms) of the calls recorded in `now` but not in `start`.
pub fn p95_since(start: Option<&LatencyHistogram>, now: &LatencyHistogram) -> Option<f64> {
    let mut d = now.inner().clone();
    if let Some(s) = start {
        d.subtract(s.inner()).ok()?;
    }
    (!d.is_empty()).then(|| d.value_at_quantile(0.95) as f64 / 1000.0)
}

/// Upstream 429s and calls refused because every credential was out, so far.
pub fn quota_errors(s: &StatusSnapshot) -> u64 {
    let limited: u64 = s
        .series
        .iter()
        .filter_map(|x| x.requests.get("rate_limited"))
        .sum();
    limited + s.rejected_all_open
}

impl Source for Gateway {
    fn begin(&mut self) -> BeginFuture<'_> {
        Box::pin(async move {
            self.start = self.status().await.map(|s| latency(&s));
        })
    }

    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async move {
            let Some(s) = self.status().await else {
                return Vec::new();
            };
            let total = s.credentials.len();
            let out = s
                .credentials
                .iter()
                .filter(|c| OUT.contains(&c.state.as_str()))
                .count();
            vec![(
                Ident {
                    resource: format!("provider quota (gateway {})", self.redacted),
                    kind: Kind::ProviderQuota,
                    source: self.redacted.clone(),
                    saturation_word: "waiting",
                    unit: "credentials out",
                },
                Sample {
                    utilisation: (total > 0).then(|| out as f64 / total as f64),
                    saturation: None,
                    errors: Some(quota_errors(&s) as f64),
                    used: (total > 0).then_some(out as f64),
                    capacity: (total > 0).then_some(total as f64),
                    latency_ms: p95_since(self.start.as_ref(), &latency(&s)),
                },
            )]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_step_s_p95_leaves_out_the_calls_before_it() {
        let mut start = LatencyHistogram::new();
        for _ in 0..100 {
            start.record(Duration::from_millis(2000));
        }
        let mut now = start.clone();
        for _ in 0..100 {
            now.record(Duration::from_millis(100));
        }
        let p = p95_since(Some(&start), &now).unwrap();
        assert!((99.0..=101.0).contains(&p), "{p}");
        assert!(p95_since(None, &now).unwrap() > 1900.0);
        assert_eq!(p95_since(Some(&now), &now), None);
    }

    #[test]
    fn only_http_urls_are_gateways() {
        assert!(Gateway::new("http://127.0.0.1:4000/").is_ok());
        let e = Gateway::new("redis://u:secret@h:1").err().unwrap();
        assert!(e.contains("not an http(s) URL"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
}
