//! The live monitor: once a second it merges the metric shards, evaluates the
//! `abort_on_fail` thresholds and shows progress (an indicatif line on a terminal, a
//! plain line every ~5 s on standard error otherwise).

use crate::engine::Shared;
use crate::summary::{evaluate, Summary};
use is_terminal::IsTerminal;
use powertune_core::LatencyHistogram;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The figures the progress line shows.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub elapsed: Duration,
    pub total: Duration,
    pub vus: u64,
    pub reqs: u64,
    pub rps: f64,
    pub p95_ms: f64,
    pub errors: u64,
}

impl Live {
    pub fn line(&self) -> String {
        format!(
            "{}/{}  VUs {}  {:.0} req/s  p95 {:.1}ms  errors {}  ({} requests)",
            powertune_core::duration::format(Duration::from_secs(self.elapsed.as_secs())),
            powertune_core::duration::format(self.total),
            self.vus,
            self.rps,
            self.p95_ms,
            self.errors,
            self.reqs
        )
    }
}

pub(crate) async fn monitor(
    shared: Arc<Shared>,
    show: bool,
    mut done: watch::Receiver<bool>,
    t0: Instant,
) {
    let total = shared.plan.total_duration();
    let tty = show && std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(total.as_millis().max(1) as u64);
        b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:20.cyan/blue} {msg}") {
            b.set_style(style);
        }
        b
    });
    let aborting = shared.plan.thresholds.iter().any(|t| t.abort_on_fail);
    let mut last_plain = Instant::now();
    let mut last_reqs = 0u64;
    let mut last_t = t0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            r = done.wait_for(|v| *v) => { let _ = r.map(|_| ()); break; }
        }
        shared
            .vus_series
            .lock()
            .sample(shared.vus.load(Ordering::Relaxed));
        if !(show || aborting) {
            continue;
        }
        let snap = shared.reg.snapshot();
        let now = Instant::now();
        if aborting {
            let s = Summary::build(
                &shared.plan,
                &snap,
                now - t0,
                &chrono::Utc::now(),
                "",
                0,
                &[],
                None,
            );
            let el = now - t0;
            for (t, r) in shared
                .plan
                .thresholds
                .iter()
                .zip(evaluate(&s, &shared.plan.thresholds))
            {
                let due = t.delay_abort_eval.is_none_or(|d| el >= d);
                if t.abort_on_fail && due && !r.ok {
                    shared.abort(format!(
                        "threshold {}: {} failed (observed {}) with abort_on_fail",
                        r.metric,
                        r.expr,
                        r.observed.map_or("n/a".into(), |v| format!("{v:.3}"))
                    ));
                }
            }
        }
        if !show {
            continue;
        }
        let mut h = LatencyHistogram::new();
        let mut reqs = 0;
        let mut errors = 0;
        for s in &snap.series {
            reqs += s.reqs;
            errors += s.failed;
            if let Some(x) = s.duration.count().gt(&0).then(|| s.duration.histogram()) {
                let _ = h.merge(&x);
            }
        }
        let dt = (now - last_t).as_secs_f64().max(1e-3);
        let live = Live {
            elapsed: now - t0,
            total,
            vus: shared.vus.load(Ordering::Relaxed),
            reqs,
            rps: (reqs - last_reqs.min(reqs)) as f64 / dt,
            p95_ms: h.percentile_ms(95.0),
            errors,
        };
        last_reqs = reqs;
        last_t = now;
        match &bar {
            Some(b) => {
                b.set_position(live.elapsed.as_millis().min(total.as_millis()) as u64);
                b.set_message(live.line());
            }
            None => {
                if now - last_plain >= Duration::from_secs(5) {
                    last_plain = now;
                    eprintln!("powertune load: {}", live.line());
                }
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}
