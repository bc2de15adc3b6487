//! The collector: runs a plan's scenarios (the only stage that does I/O, through
//! [`crate::http`], [`crate::h1`] and [`crate::ws`]) and hands back the merged
//! metrics as a [`Summary`] with its thresholds evaluated.

pub(crate) mod executor;
mod monitor;
pub(crate) mod state;
mod vu;

use crate::http::{ClientShared, Origin, TlsTrust};
use crate::options::{LoadError, RunOptions};
use crate::snapshot::{Collected, Summary};
use crate::thresholds::evaluate;
use powertune_core::redact;
use state::Shared;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Runs `opts.plan` against `opts.base_url` and returns the summary. The base URL is
/// checked and its host must accept a TCP connection before any VU starts.
pub async fn run(opts: &RunOptions) -> Result<Summary, LoadError> {
    let plan = &opts.plan;
    let base = url::Url::parse(&opts.base_url).map_err(|e| LoadError::BadUrl {
        url: redact::url(&opts.base_url),
        reason: e.to_string(),
    })?;
    let shown = redact::url(base.as_str());
    let origin = Origin::from_url(&base).map_err(|reason| LoadError::BadUrl {
        url: shown.clone(),
        reason,
    })?;
    let client = ClientShared::new(
        plan.options.http,
        plan.options.connect_timeout,
        plan.options.request_timeout,
        &TlsTrust {
            ca_cert: plan.options.ca_cert.clone(),
            insecure: plan.options.insecure_skip_tls_verify,
        },
    )
    .map_err(LoadError::Setup)?;
    crate::net::reachable(&origin, plan.options.connect_timeout)
        .await
        .map_err(|reason| LoadError::Unreachable {
            url: shown.clone(),
            reason,
        })?;
    let shared = Arc::new(Shared::new(
        plan.clone(),
        origin,
        base,
        opts.env.clone(),
        client,
    ));
    let signals = tokio::spawn(watch_signals(
        shared.clone(),
        opts.stop.clone(),
        opts.halt.clone(),
    ));
    if let Some(at) = opts.start_at {
        if !wait_until(at, opts.stop.as_ref()).await {
            return Err(LoadError::Interrupted);
        }
    }
    let started_at = chrono::Utc::now();
    let t0 = Instant::now();
    let mut scenarios = JoinSet::new();
    for i in 0..plan.scenarios.len() {
        scenarios.spawn(executor::run_scenario(shared.clone(), i, t0));
    }
    let (done_tx, done_rx) = watch::channel(false);
    let outputs = opts
        .outputs
        .clone()
        .map(|o| tokio::spawn(crate::out::run(o, shared.clone(), done_rx.clone(), t0)));
    let monitor = tokio::spawn(monitor::monitor(
        shared.clone(),
        opts.progress.clone(),
        done_rx,
        t0,
    ));
    while scenarios.join_next().await.is_some() {}
    let _ = done_tx.send(true);
    let _ = monitor.await;
    if let Some(o) = outputs {
        let _ = o.await;
    }
    signals.abort();
    let elapsed = t0.elapsed();
    let snap = shared.reg.snapshot();
    let scen_vus: Vec<u64> = shared
        .scen_vus_max
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let vus = shared.vus_series.lock().clone();
    let aborted = shared.abort_reason();
    let mut summary = Summary::build(Collected {
        plan,
        shard: &snap,
        elapsed,
        started_at,
        base_url: &shown,
        vus_max: shared.vus_max.load(Ordering::Relaxed),
        scenario_vus_max: &scen_vus,
        vus: Some(&vus),
        aborted: aborted.as_deref(),
    });
    summary.interrupted = shared.was_interrupted();
    summary.timeline = Some(
        shared
            .timeline
            .lock()
            .summary(plan, &shared.spans.lock().clone()),
    );
    summary.thresholds = evaluate(&summary, &plan.thresholds);
    if let (Some(seg), Some(at)) = (summary.segment.as_mut(), opts.start_at) {
        seg.start_at = Some(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    Ok(summary)
}

/// Sleeps until the wall-clock time `at` (at once when it is past); false when `stop`
/// was cancelled first.
async fn wait_until(at: chrono::DateTime<chrono::Utc>, stop: Option<&CancellationToken>) -> bool {
    let Ok(wait) = (at - chrono::Utc::now()).to_std() else {
        return true;
    };
    match stop {
        Some(s) => tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = s.cancelled() => false,
        },
        None => {
            tokio::time::sleep(wait).await;
            true
        }
    }
}

/// Turns the caller's stop tokens into the run's stages: the first ends every
/// schedule (graceful stops apply), the second stops every VU at once.
async fn watch_signals(
    shared: Arc<Shared>,
    stop: Option<CancellationToken>,
    halt: Option<CancellationToken>,
) {
    if let Some(s) = &stop {
        s.cancelled().await;
        shared.interrupt();
    }
    match &halt {
        Some(h) => {
            h.cancelled().await;
            shared.halt();
        }
        None => std::future::pending::<()>().await,
    }
}
