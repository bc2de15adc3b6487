//! The procedure: steps upward from the start rate until the first SLO violation,
//! saturation, the generator's limit, a rate/time/step limit or a signal; then
//! refinement steps between the last good rate and the knee; then the judge.

use crate::config::Schedule;
use crate::error::CapacityError;
use crate::judge;
use crate::knee::{Knee, KneeReason};
use crate::mix::Mix;
use crate::model::{CapacityMetrics, StepRecord, StopReason, SCHEMA};
use crate::resources::{self, procfs, prom, ResourceOptions, Source};
use crate::step::StepContext;
use crate::verify::{self, Previous};
use powertune_core::{Inspection, Targets};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Called before and after every step.
pub type ProgressFn = Arc<dyn Fn(&Event) + Send + Sync>;

/// What the progress callback is told.
#[derive(Debug, Clone)]
pub enum Event {
    Starting {
        number: usize,
        rate: f64,
        refinement: bool,
    },
    Done(Box<StepRecord>),
}

/// Everything a capacity run takes.
#[derive(Clone)]
pub struct CapacityOptions {
    pub mix: Mix,
    pub base_url: String,
    pub env: HashMap<String, String>,
    pub schedule: Schedule,
    pub resources: ResourceOptions,
    /// `--verify`: the earlier report; the steps are then the projected load and the
    /// old knee only.
    pub verify: Option<Previous>,
    pub progress: Option<ProgressFn>,
    pub stop: Option<CancellationToken>,
    pub halt: Option<CancellationToken>,
}

/// Opens every configured source (files and URLs checked; nothing connects yet).
pub fn sources(o: &ResourceOptions) -> Result<Vec<Box<dyn Source>>, CapacityError> {
    let mut out: Vec<Box<dyn Source>> = Vec::new();
    if o.generator {
        out.push(Box::new(procfs::Generator::new(o.exclude_threads.clone())));
    }
    if let Some(prefix) = &o.exclude_threads {
        out.push(Box::new(procfs::TargetThreads::new(prefix.clone())));
    }
    for m in &o.metrics {
        out.push(Box::new(
            prom::Metrics::new(m).map_err(CapacityError::Source)?,
        ));
    }
    for p in &o.pids {
        out.push(Box::new(
            procfs::Process::new(*p).map_err(CapacityError::Source)?,
        ));
    }
    for c in &o.cgroups {
        out.push(Box::new(
            procfs::Cgroup::new(c.clone()).map_err(CapacityError::Source)?,
        ));
    }
    for r in &o.redis {
        out.push(Box::new(
            resources::redis::Redis::new(r).map_err(CapacityError::Source)?,
        ));
    }
    for d in &o.db {
        out.push(Box::new(
            resources::postgres::Postgres::new(d, o.interval).map_err(CapacityError::Source)?,
        ));
    }
    for q in &o.queues {
        out.push(Box::new(
            resources::sidekiq::Sidekiq::new(q).map_err(CapacityError::Source)?,
        ));
    }
    for g in &o.gateways {
        out.push(Box::new(
            resources::gateway::Gateway::new(g).map_err(CapacityError::Source)?,
        ));
    }
    Ok(out)
}

/// Runs the procedure and judges it.
pub async fn inspect(
    opts: &CapacityOptions,
    targets: &Targets,
) -> Result<Inspection<CapacityMetrics>, CapacityError> {
    let mut sources = sources(&opts.resources)?;
    let started_at = chrono::Utc::now().to_rfc3339();
    let started = Instant::now();
    let sch = &opts.schedule;
    let cx = StepContext {
        mix: &opts.mix,
        base_url: &opts.base_url,
        env: &opts.env,
        targets,
        warmup: sch.warmup,
        length: sch.step,
        extend: sch.extend,
        interval: opts.resources.interval,
        stop: opts.stop.clone(),
        halt: opts.halt.clone(),
    };
    let cancelled = || opts.stop.as_ref().is_some_and(|t| t.is_cancelled());
    let mut steps: Vec<StepRecord> = Vec::new();
    let mut stop = StopReason::MaxSteps;
    let rates: Vec<f64> = match &opts.verify {
        Some(prev) => verify::rates(prev, sch),
        None => Vec::new(),
    };
    if opts.verify.is_some() {
        for r in rates {
            if cancelled() {
                stop = StopReason::Interrupted;
                break;
            }
            let rec = run_step(opts, &cx, &mut sources, steps.len() + 1, r, false).await?;
            report(opts, &rec);
            steps.push(rec);
        }
    } else {
        let mut rate = sch.start;
        loop {
            if cancelled() {
                stop = StopReason::Interrupted;
                break;
            }
            if steps.len() as u32 >= sch.max_steps {
                stop = StopReason::MaxSteps;
                break;
            }
            if started.elapsed() + step_time(sch) > sch.max_time && !steps.is_empty() {
                stop = StopReason::MaxTime;
                break;
            }
            if sch.max_rate.is_some_and(|m| rate > m * (1.0 + 1e-9)) {
                stop = StopReason::MaxRate;
                break;
            }
            let rec = run_step(opts, &cx, &mut sources, steps.len() + 1, rate, false).await?;
            report(opts, &rec);
            let interrupted = cancelled();
            steps.push(rec);
            if interrupted {
                stop = StopReason::Interrupted;
                break;
            }
            if let Some(k) = judge::find_knee(&steps) {
                stop = knee_stop(&steps, &k);
                break;
            }
            let next = sch.next(rate);
            rate = match sch.max_rate {
                // The last step lands on the maximum itself.
                Some(m) if rate < m && next > m => m,
                _ => next,
            };
        }
        // Refinement: halve the gap between the last good rate and the knee.
        if matches!(stop, StopReason::SloViolation | StopReason::Saturation) {
            for _ in 0..sch.refine {
                let Some(k) = judge::find_knee(&steps) else {
                    break;
                };
                let Some(good) = k.last_good else { break };
                let (lo, hi) = (steps[good].offered, steps[k.step].offered);
                if hi - lo < 0.02 * hi
                    || cancelled()
                    || steps.len() as u32 >= sch.max_steps
                    || started.elapsed() + step_time(sch) > sch.max_time
                {
                    break;
                }
                let rec = run_step(
                    opts,
                    &cx,
                    &mut sources,
                    steps.len() + 1,
                    (lo + hi) / 2.0,
                    true,
                )
                .await?;
                report(opts, &rec);
                steps.push(rec);
            }
            if cancelled() {
                stop = StopReason::Interrupted;
            }
        }
    }
    let knee = if opts.verify.is_some() {
        None
    } else {
        judge::find_knee(&steps)
    };
    if let Some(k) = &knee {
        if !matches!(stop, StopReason::Interrupted) {
            stop = knee_stop(&steps, k);
        }
    }
    let not_measured = resources::unmeasured(&opts.resources);
    let limiter = knee
        .as_ref()
        .map(|k| judge::limiter(&steps, k, &not_measured));
    let headroom = judge::headroom(&steps, knee.as_ref(), sch.baseline(), sch.growth_factor);
    let usl = judge::usl_fit(&steps);
    let mut findings = judge::findings(&steps, &stop, &headroom, limiter.as_ref(), &usl);
    let verification = opts
        .verify
        .as_ref()
        .map(|p| verify::judge(p, &steps, sch, targets));
    if let Some(v) = &verification {
        findings.insert(0, verify::finding(v));
    }
    let interrupted = matches!(stop, StopReason::Interrupted);
    let mut metrics = CapacityMetrics {
        schema: SCHEMA.into(),
        source: opts.mix.source().to_string(),
        base_url: powertune_core::redact::url(&opts.base_url),
        started_at,
        duration_s: started.elapsed().as_secs_f64(),
        mix: opts.mix.shares.clone(),
        left_out: opts
            .mix
            .left_out
            .iter()
            .map(|(n, w)| format!("{n}: {w}"))
            .collect(),
        warmup_s: sch.warmup.as_secs_f64(),
        step_s: sch.step.as_secs_f64(),
        knee_rate: knee.as_ref().map(|k| steps[k.step].offered),
        steps,
        stop,
        knee,
        limiter,
        headroom,
        usl,
        verification,
        verdict: String::new(),
        interrupted,
    };
    metrics.verdict = crate::render::verdict(&metrics);
    let text = crate::render::text(&metrics);
    Ok(Inspection::new("capacity", findings, metrics, text))
}

async fn run_step(
    opts: &CapacityOptions,
    cx: &StepContext<'_>,
    sources: &mut [Box<dyn Source>],
    number: usize,
    rate: f64,
    refinement: bool,
) -> Result<StepRecord, CapacityError> {
    if let Some(p) = &opts.progress {
        p(&Event::Starting {
            number,
            rate,
            refinement,
        });
    }
    cx.run(number, rate, refinement, sources).await
}

fn report(opts: &CapacityOptions, rec: &StepRecord) {
    if let Some(p) = &opts.progress {
        p(&Event::Done(Box::new(rec.clone())));
    }
}

/// A step's wall time: warm-up plus measurement.
fn step_time(s: &Schedule) -> Duration {
    s.warmup + s.step
}

fn knee_stop(steps: &[StepRecord], k: &Knee) -> StopReason {
    if steps[k.step].generator_limited {
        return StopReason::GeneratorSaturated;
    }
    match k.reason {
        KneeReason::SloViolation { .. } => StopReason::SloViolation,
        KneeReason::Saturation { .. } => StopReason::Saturation,
    }
}
