//! One step: a warm-up run at the step's rate (not measured), then the measured run
//! while every resource source is sampled; repeated (up to `extend` times) while
//! its latency still trends. The load engine is called through its one entry,
//! `powertune_load::inspect`.

use crate::error::CapacityError;
use crate::mix::Mix;
use crate::model::{EndpointRow, StepRecord};
use crate::resources::{self, Kind, Source};
use crate::steady::{self, Steadiness};
use powertune_core::{Targets, Verdict};
use powertune_load::{RunOptions, Summary};
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A step's corrected p95 more than this above its send→response p95 (and more
/// than that p95 itself) means requests waited in the generator before being sent.
pub const GENERATOR_LAG_MS: f64 = 50.0;

/// Arrivals dropped beyond this share of those offered, with no target resource
/// saturated, mean the generator could not offer the load.
pub const DROPPED_SHARE: f64 = 0.1;

/// What every step shares.
pub struct StepContext<'a> {
    pub mix: &'a Mix,
    pub base_url: &'a str,
    pub env: &'a HashMap<String, String>,
    pub targets: &'a Targets,
    pub warmup: Duration,
    pub length: Duration,
    pub extend: u32,
    pub interval: Duration,
    pub stop: Option<CancellationToken>,
    pub halt: Option<CancellationToken>,
}

impl StepContext<'_> {
    fn options(&self, rate: f64, length: Duration) -> RunOptions {
        let graceful = length.min(Duration::from_secs(10));
        let mut o = RunOptions::new(self.mix.plan_at(rate, length, graceful), self.base_url);
        o.env = self.env.clone();
        o.stop = self.stop.clone();
        o.halt = self.halt.clone();
        o
    }

    fn load_error(rate: f64, e: powertune_load::LoadError) -> CapacityError {
        CapacityError::Load {
            rate: powertune_core::units::trim(rate, 1),
            source: e,
        }
    }

    /// Runs the step at `rate` (arrivals per second), sampling `sources`.
    pub async fn run(
        &self,
        number: usize,
        rate: f64,
        refinement: bool,
        sources: &mut [Box<dyn Source>],
    ) -> Result<StepRecord, CapacityError> {
        if !self.warmup.is_zero() {
            powertune_load::inspect(&self.options(rate, self.warmup), self.targets)
                .await
                .map_err(|e| Self::load_error(rate, e))?;
        }
        let mut extensions = 0;
        loop {
            let (summary, samples, detail) = self.measure(rate, sources).await?;
            let points: Vec<(f64, f64)> = summary
                .timeline
                .as_ref()
                .map(|t| {
                    t.run
                        .iter()
                        .filter(|p| p.t_s < self.length.as_secs_f64())
                        .filter_map(|p| p.latency.as_ref().map(|l| (p.t_s, l.p95)))
                        .collect()
                })
                .unwrap_or_default();
            let steadiness = steady::judge(&points, 0.0, steady::TOLERANCE);
            let interrupted = summary.interrupted;
            if matches!(steadiness, Steadiness::Trending { .. })
                && extensions < self.extend
                && !interrupted
            {
                extensions += 1;
                continue;
            }
            let mut record = record(number, rate, refinement, self, &summary, samples);
            record.steadiness = steadiness;
            record.extensions = extensions;
            record.statements = detail.statements;
            return Ok(record);
        }
    }

    async fn measure(
        &self,
        rate: f64,
        sources: &mut [Box<dyn Source>],
    ) -> Result<(Summary, Vec<resources::Reading>, resources::StepDetail), CapacityError> {
        let stop_sampling = CancellationToken::new();
        let opts = self.options(rate, self.length);
        let run = async {
            let r = powertune_load::inspect(&opts, self.targets).await;
            stop_sampling.cancel();
            r
        };
        // Each run starts its VUs (and their setup requests) at once: the first
        // quarter of the step (at most 2 s) is left out of the resource samples.
        let skip = (self.length / 4).min(Duration::from_secs(2));
        let sample = async {
            let skipped = tokio::time::Instant::now() + skip;
            // The load counts its errors over the whole step; so do the resources.
            let anchors = resources::error_anchors(sources).await;
            tokio::select! {
                _ = tokio::time::sleep_until(skipped) => {}
                _ = stop_sampling.cancelled() => {}
            }
            for s in sources.iter_mut() {
                s.begin().await;
            }
            let samples =
                resources::sample_until(sources, self.interval, stop_sampling.clone()).await;
            let mut detail = resources::StepDetail::default();
            for s in sources.iter_mut() {
                let d = s.end().await;
                detail.parts.extend(d.parts);
                detail.statements.extend(d.statements);
            }
            (samples, detail, anchors)
        };
        let (result, (samples, detail, anchors)) = tokio::join!(run, sample);
        let inspection = result.map_err(|e| Self::load_error(rate, e))?;
        let mut readings: Vec<resources::Reading> = samples
            .iter()
            .map(|(id, s)| resources::fold(id, s, anchors.get(id).copied()))
            .collect();
        resources::attach(&mut readings, &detail);
        Ok((inspection.metrics.summary, readings, detail))
    }
}

/// The step's figures, judged.
fn record(
    number: usize,
    rate: f64,
    refinement: bool,
    cx: &StepContext<'_>,
    s: &Summary,
    resources: Vec<resources::Reading>,
) -> StepRecord {
    let secs = cx.length.as_secs_f64().max(1e-9);
    let d = &s.http.duration.stats;
    let raw = &s.http.duration_raw.stats;
    let mut violations = Vec::new();
    let endpoint_types: Vec<EndpointRow> = s
        .endpoint_types
        .iter()
        .filter(|e| e.http.duration.stats.count > 0)
        .map(|e| {
            let band = cx.targets.api.band(e.endpoint_type);
            let st = &e.http.duration.stats;
            let v = Verdict::lower_is_better(st.p95, band.target_ms, Some(band.max_ms));
            if v == Verdict::Fail {
                violations.push(format!(
                    "{} P95 {} > {} maximum",
                    e.title,
                    powertune_core::units::ms(st.p95),
                    powertune_core::units::ms(band.max_ms)
                ));
            }
            EndpointRow {
                endpoint_type: e.title.clone(),
                requests: e.http.reqs,
                failed: e.http.failed,
                p50_ms: st.med,
                p95_ms: st.p95,
                p99_ms: st.p99,
                target_ms: band.target_ms,
                max_ms: band.max_ms,
                verdict: v.label().to_lowercase(),
            }
        })
        .collect();
    let error_rate_pct = s.http.failed_rate() * 100.0;
    if s.http.reqs > 0 && error_rate_pct >= cx.targets.load.error_rate_pct {
        violations.push(format!(
            "error rate {} ≥ {} ({} of {} requests failed)",
            powertune_core::units::percent(error_rate_pct),
            powertune_core::units::percent(cx.targets.load.error_rate_pct),
            s.http.failed,
            s.http.reqs
        ));
    }
    for t in s.thresholds.iter().filter(|t| !t.ok) {
        violations.push(format!("plan threshold {}: {} broken", t.metric, t.expr));
    }
    let achieved_rps = s.http.reqs as f64 / secs;
    let achieved = s.iterations as f64 / secs;
    let generator = resources
        .iter()
        .find(|r| r.kind == Kind::Generator && r.crossed);
    let lag = d.p95 - raw.p95;
    let offered_n = rate * secs;
    let target_saturated = resources
        .iter()
        .any(|r| r.kind != Kind::Generator && r.crossed);
    let generator_note = match generator {
        Some(g) => Some(format!("generator CPU {}", g.figures)),
        None if s.dropped_iterations as f64 > DROPPED_SHARE * offered_n && !target_saturated => {
            Some(format!(
                "{} of {} arrivals dropped (every VU busy) while no sampled target resource was saturated: the generator could not offer the load",
                s.dropped_iterations,
                powertune_core::units::trim(offered_n, 0)
            ))
        }
        None if s.http.reqs > 0 && lag > GENERATOR_LAG_MS && lag > raw.p95 => Some(format!(
            "requests waited {} (p95) in the generator before being sent; send→response p95 was {}",
            powertune_core::units::ms(lag),
            powertune_core::units::ms(raw.p95)
        )),
        None => None,
    };
    StepRecord {
        number,
        refinement,
        offered: rate,
        achieved,
        offered_rps: rate * cx.mix.requests_per_arrival(),
        achieved_rps,
        measured_s: secs,
        requests: s.http.reqs,
        failed: s.http.failed,
        error_rate_pct,
        mean_ms: d.avg,
        p50_ms: d.med,
        p95_ms: d.p95,
        p99_ms: d.p99,
        p95_raw_ms: raw.p95,
        in_flight: achieved_rps * d.avg / 1000.0,
        dropped_iterations: s.dropped_iterations,
        endpoint_types,
        violations,
        steadiness: Steadiness::TooShort { points: 0 },
        extensions: 0,
        resources,
        statements: Vec::new(),
        generator_limited: generator_note.is_some(),
        generator_note,
    }
}
