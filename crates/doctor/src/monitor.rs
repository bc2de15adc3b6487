//! `powertune monitor`: doctor's inspections on an interval, one run after the other
//! (never overlapping: the next starts an interval after the previous one started, or
//! at once when it ran longer), the latest figures and verdicts on `/metrics`, and a
//! webhook message each time a check changes verdict.

use crate::model::{DoctorMetrics, Status, SystemState};
use crate::options::DoctorOptions;
use powertune_core::prometheus::Exposition;
use powertune_core::{Finding, Inspection, Targets, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// The shortest interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// How long a webhook post may take.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the monitor runs.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    pub doctor: DoctorOptions,
    pub interval: Duration,
    /// Where verdict changes are posted (Slack-compatible JSON with `text`).
    pub webhook: Option<String>,
    /// Stop after this many runs (None: until cancelled).
    pub runs: Option<u64>,
}

impl MonitorOptions {
    /// Checks the options: the run's bound must fit in the interval.
    pub fn validate(&self) -> Result<(), String> {
        self.doctor.validate()?;
        let f = powertune_core::duration::format;
        if self.interval < MIN_INTERVAL || self.interval > MAX_INTERVAL {
            return Err(format!(
                "--interval {} must be between {} and {} (e.g. --interval 1m)",
                f(self.interval),
                f(MIN_INTERVAL),
                f(MAX_INTERVAL)
            ));
        }
        if self.doctor.timeout > self.interval {
            return Err(format!(
                "--timeout {} must be at most --interval {}: runs never overlap (e.g. --interval 1m --timeout 45s)",
                f(self.doctor.timeout),
                f(self.interval)
            ));
        }
        self.webhook_url().map(|_| ())
    }

    /// The webhook, checked.
    pub fn webhook_url(&self) -> Result<Option<url::Url>, String> {
        let Some(w) = &self.webhook else {
            return Ok(None);
        };
        let shown = powertune_core::redact::url(w);
        let u = url::Url::parse(w).map_err(|e| {
            format!(
                "--webhook {shown}: {e} (e.g. --webhook https://hooks.slack.com/services/T0/B0/X)"
            )
        })?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!(
                "--webhook {shown}: must be an http:// or https:// URL"
            ));
        }
        Ok(Some(u))
    }
}

/// One check's verdict change, as posted to the webhook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Slack's message text.
    pub text: String,
    pub area: String,
    pub check: String,
    pub subject: String,
    /// `pass`, `warn`, `fail`, or `new` for a check not seen before.
    pub from: String,
    pub to: String,
    pub observed: String,
    pub evidence: String,
    pub action: String,
}

/// The latest run, as `/metrics` shows it.
#[derive(Debug, Default)]
pub struct State {
    runs: u64,
    last_run_unix: f64,
    last_duration_s: f64,
    webhook_failures: u64,
    latest: Option<(Vec<Finding>, DoctorMetrics)>,
    verdicts: BTreeMap<(String, String, String), Verdict>,
}

/// Shared between the loop and the `/metrics` handler.
pub type Shared = Arc<Mutex<State>>;

fn verdict_value(v: Verdict) -> f64 {
    match v {
        Verdict::Pass => 0.0,
        Verdict::Warn => 1.0,
        Verdict::Fail => 2.0,
    }
}

fn status_value(s: Status) -> f64 {
    match s {
        Status::Confirmed => 1.0,
        Status::RuledOut => 0.0,
        Status::NotMeasured => -1.0,
    }
}

/// The Prometheus exposition of the latest run (docs/monitor.md lists every series).
pub fn exposition(state: &State) -> String {
    let mut e = Exposition::new();
    e.counter("powertune_monitor_runs", "Doctor runs completed.")
        .sample(&[], state.runs as f64);
    e.gauge(
        "powertune_monitor_last_run_timestamp_seconds",
        "When the latest run ended (Unix time).",
    )
    .sample(&[], state.last_run_unix);
    e.gauge(
        "powertune_monitor_last_run_duration_seconds",
        "How long the latest run took.",
    )
    .sample(&[], state.last_duration_s);
    e.counter(
        "powertune_monitor_webhook_failures",
        "Webhook posts that failed.",
    )
    .sample(&[], state.webhook_failures as f64);
    let Some((findings, m)) = &state.latest else {
        return e.render();
    };
    {
        let mut w = e.gauge(
            "powertune_check_verdict",
            "Verdict of each check of the latest run: 0 pass, 1 warn, 2 fail.",
        );
        for f in findings.iter().chain(m.inspection_findings.iter()) {
            w.sample(
                &[
                    ("area", &f.area),
                    ("check", &f.check),
                    ("subject", &f.subject),
                ],
                verdict_value(f.verdict),
            );
        }
    }
    {
        let mut w = e.gauge(
            "powertune_check_observed",
            "The observed figure of each check, where it is a number, in the unit named.",
        );
        for f in findings.iter().chain(m.inspection_findings.iter()) {
            if let Some(q) = f.observed.quantity() {
                let unit = format!("{:?}", q.unit).to_lowercase();
                w.sample(
                    &[
                        ("area", &f.area),
                        ("check", &f.check),
                        ("subject", &f.subject),
                        ("unit", &unit),
                    ],
                    q.value,
                );
            }
        }
    }
    {
        let mut w = e.gauge(
            "powertune_doctor_symptom",
            "Each Troubleshooting row's symptom: 1 observed, 0 not observed, -1 not measured.",
        );
        for r in &m.rows {
            w.sample(
                &[("row", &r.id), ("symptom", &r.symptom.name)],
                status_value(r.symptom.status),
            );
        }
    }
    {
        let mut w = e.gauge(
            "powertune_doctor_cause",
            "Each Troubleshooting row's likely cause: 1 confirmed, 0 ruled out, -1 not measurable.",
        );
        for r in &m.rows {
            for c in &r.causes {
                w.sample(
                    &[("row", &r.id), ("cause", &c.name)],
                    status_value(c.status),
                );
            }
        }
    }
    {
        let mut w = e.gauge(
            "powertune_system_up",
            "Each configured system: 1 measured in the latest run, 0 not measured.",
        );
        for s in &m.systems {
            let v = match s.state {
                SystemState::NotConfigured => continue,
                SystemState::Measured => 1.0,
                SystemState::NotMeasured => 0.0,
            };
            w.sample(&[("system", &s.name)], v);
        }
    }
    e.render()
}

/// Records a run and returns the changes of verdict since the previous one (every
/// check of the first run is a change from `new` only when it is not a pass).
pub fn record(state: &mut State, i: &Inspection<DoctorMetrics>, took: Duration) -> Vec<Change> {
    state.runs += 1;
    state.last_run_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    state.last_duration_s = took.as_secs_f64();
    let mut changes = Vec::new();
    let mut seen = BTreeMap::new();
    for f in i.findings.iter() {
        let key = (f.area.clone(), f.check.clone(), f.subject.clone());
        let before = state.verdicts.get(&key).copied();
        let changed = match before {
            Some(b) => b != f.verdict,
            None => f.verdict != Verdict::Pass,
        };
        if changed {
            changes.push(change(f, before));
        }
        seen.insert(key, f.verdict);
    }
    state.verdicts = seen;
    state.latest = Some((i.findings.clone(), i.metrics.clone()));
    changes
}

fn change(f: &Finding, before: Option<Verdict>) -> Change {
    let from = before.map_or("new".to_string(), |v| v.label().to_lowercase());
    let to = f.verdict.label().to_lowercase();
    let mut text = format!(
        "powertune monitor: {} {}/{} {}: {} → {} (observed {})",
        match f.verdict {
            Verdict::Pass => "resolved",
            Verdict::Warn => "warning",
            Verdict::Fail => "FAILING",
        },
        f.area,
        f.check,
        f.subject,
        from.to_uppercase(),
        to.to_uppercase(),
        f.observed
    );
    if !f.action.is_empty() && f.verdict != Verdict::Pass {
        text.push_str(&format!(". First action: {}", f.action));
    }
    Change {
        text,
        area: f.area.clone(),
        check: f.check.clone(),
        subject: f.subject.clone(),
        from,
        to,
        observed: f.observed.to_string(),
        evidence: f.evidence.clone(),
        action: f.action.clone(),
    }
}

/// What the loop tells its caller after each run.
pub type OnRun<'a> = &'a (dyn Fn(&Inspection<DoctorMetrics>, &[Change]) + Send + Sync);

/// Runs doctor every `interval` until `stop` is cancelled (or `runs` are done),
/// recording each run in `state` and posting its verdict changes to the webhook.
pub async fn run(
    o: &MonitorOptions,
    targets: &Targets,
    state: Shared,
    stop: CancellationToken,
    on_run: OnRun<'_>,
) -> Result<(), String> {
    o.validate()?;
    let webhook = o.webhook_url()?;
    let client = reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    let mut tick = tokio::time::interval(o.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut done = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return Ok(()),
        }
        let started = std::time::Instant::now();
        let i = tokio::select! {
            r = crate::inspect(&o.doctor, targets) => r.map_err(|e| e.to_string())?,
            _ = stop.cancelled() => return Ok(()),
        };
        let changes = {
            let mut s = state
                .lock()
                .map_err(|_| "monitor state poisoned".to_string())?;
            record(&mut s, &i, started.elapsed())
        };
        if let Some(url) = &webhook {
            let mut failed = 0;
            for c in &changes {
                let ok = client
                    .post(url.clone())
                    .json(c)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                if !ok {
                    failed += 1;
                }
            }
            if failed > 0 {
                if let Ok(mut s) = state.lock() {
                    s.webhook_failures += failed;
                }
            }
        }
        on_run(&i, &changes);
        done += 1;
        if o.runs.is_some_and(|n| done >= n) {
            return Ok(());
        }
    }
}

/// The `/metrics` router over `state`.
pub fn router(state: Shared) -> axum::Router {
    use axum::http::header;
    use axum::routing::get;
    axum::Router::new().route(
        "/metrics",
        get(move || {
            let state = state.clone();
            async move {
                let body = match state.lock() {
                    Ok(s) => exposition(&s),
                    Err(_) => String::new(),
                };
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    )
}

/// Serves `/metrics` over `state` through the one accept loop until `graceful` (then
/// drains; `hard` ends the drain).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Shared,
    graceful: CancellationToken,
    hard: CancellationToken,
) -> powertune_serve::Outcome {
    powertune_serve::Server::new(powertune_serve::Limits::default())
        .run(
            listener,
            router(state),
            powertune_serve::Shutdown { graceful, hard },
        )
        .await
}
