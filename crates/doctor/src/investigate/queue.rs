//! `powertune investigate queue NAME`: the runbook's "Procedure — investigate a queue
//! backlog".
//!
//! 1. which queues are backed up, and their latency (`queues`);
//! 2. the retry and dead sets for systemic errors: top error classes with counts, a
//!    sample message and backtrace line;
//! 3. capacity issue: the processes polling the queue busy at their concurrency;
//! 4. slow job: job runtimes from the APM's job spans (`apm report`);
//! 5. external provider stalling: breakers, quota, provider faults (`gateway status`);
//! 6. the queue back to steady state within 15 minutes: watched (`queues --watch`)
//!    until it is, or `max_wait` passes, or the caller stops it.

use super::model::{Capacity, QueueMetrics, QueuePoint, Step, WaitOutcome};
use super::{findings, render, InvestigateError};
use crate::collect::{inspect_apm, inspect_gateway, redis_conn, run, Outcome};
use crate::model::SystemStatus;
use powertune_apm::snapshot::Summary;
use powertune_core::targets::Systems;
use powertune_core::{units, Inspection, Targets};
use powertune_gateway::StatusMetrics;
use powertune_redis::sidekiq::inspect::{MAX_WATCH, MIN_WATCH};
use powertune_redis::sidekiq::{
    inspect_watching, Options as QueueRead, QueuesMetrics, QueuesOptions, Reconnect,
    SidekiqSnapshot, WatchDelta, WatchOptions,
};
use std::future::Future;
use std::time::Duration;

/// Readings of the watch kept, at most (older ones are thinned evenly).
pub const MAX_POINTS: usize = 1000;
/// Busy threads as a share of concurrency from which the processes polling the queue
/// are saturated (a capacity issue when the queue is backed up).
pub const SATURATED_PCT: f64 = 90.0;
/// One error class holding at least this share of the sampled retry set is systemic.
pub const SYSTEMIC_PCT: f64 = 50.0;

/// What `investigate queue` is asked.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    pub systems: Systems,
    pub queue: String,
    /// The APM history read for job runtimes.
    pub apm_window: Duration,
    /// The bound on steps 1-5 (the reads).
    pub timeout: Duration,
    /// How long step 6 may watch; None skips it (`--no-wait`).
    pub max_wait: Option<Duration>,
    /// Time between two readings of the watch.
    pub every: Duration,
}

impl QueueOptions {
    /// Defaults: watch up to the runbook's drain time (15 min) every 5 s; 60 s bound
    /// on the reads; 15 min of APM history.
    pub fn new(systems: Systems, queue: &str, t: &Targets) -> QueueOptions {
        QueueOptions {
            systems,
            queue: queue.trim().to_string(),
            apm_window: Duration::from_secs(15 * 60),
            timeout: Duration::from_secs(60),
            max_wait: Some(Duration::from_secs_f64(t.worker.drain_minutes * 60.0)),
            every: Duration::from_secs(5),
        }
    }

    /// Checks the name and the bounds. No I/O.
    pub fn validate(&self) -> Result<(), String> {
        let f = powertune_core::duration::format;
        if self.queue.is_empty()
            || self.queue.len() > 200
            || self
                .queue
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "queue `{}` is not a Sidekiq queue name (e.g. powertune investigate queue default)",
                self.queue
            ));
        }
        super::check_timeout(self.timeout)?;
        if self.every < MIN_WATCH || self.every > MAX_WATCH {
            return Err(format!(
                "--every {} must be at least {} and at most {} (e.g. --every 5s)",
                f(self.every),
                f(MIN_WATCH),
                f(MAX_WATCH)
            ));
        }
        if self
            .max_wait
            .is_some_and(|w| w.is_zero() || w > Duration::from_secs(24 * 3600))
        {
            return Err("--max-wait must be above 0 and at most 24h (e.g. --max-wait 15m)".into());
        }
        if self.apm_window.is_zero() {
            return Err("--apm-window must be above 0 (e.g. --apm-window 15m)".into());
        }
        Ok(())
    }
}

/// `powertune investigate queue`. `progress` gets one line per watch reading (the
/// CLI prints them on standard error); `stop` ends the watch early (Ctrl-C): the
/// report then says the wait was interrupted.
pub async fn investigate_queue<P, X>(
    o: &QueueOptions,
    t: &Targets,
    progress: P,
    stop: X,
) -> Result<Inspection<QueueMetrics>, InvestigateError>
where
    P: Fn(&str),
    X: Future<Output = ()>,
{
    o.validate().map_err(InvestigateError::Input)?;
    let s = &o.systems;
    let deadline = tokio::time::Instant::now() + o.timeout;
    let bound = |name: &'static str| (name, deadline, o.timeout, s);
    let (queues, apm, gateway) = tokio::join!(
        run(bound("queues"), s.get("queues"), |url| read_queues(url, t)),
        run(bound("apm"), s.get("apm"), |url| inspect_apm(
            url,
            o.apm_window,
            t
        )),
        run(bound("gateway"), s.get("gateway"), |url| inspect_gateway(
            url, None, t
        )),
    );
    let ((q_status, queues), (a_status, apm), (g_status, gateway)) = (queues, apm, gateway);
    let snap = queues.metrics().map(|m| &m.sidekiq);
    let start = snap.map(|sn| point_of(sn, &o.queue));
    let capacity = snap.map(|sn| capacity(sn, &o.queue));
    let mut steps = vec![
        step_backlog(&queues, &o.queue, t),
        step_errors(&queues),
        step_capacity(snap, &queues, &o.queue, t),
        step_slow_job(&apm, snap, &o.queue, t),
        step_provider(&gateway),
    ];
    let (wait, watch) = match (o.max_wait, snap, start.as_ref()) {
        (None, _, _) => (WaitOutcome::Skipped, Vec::new()),
        (Some(_), None, _) | (Some(_), _, None) => (WaitOutcome::NotMeasured, Vec::new()),
        (Some(_), Some(_), Some(p)) if steady(p, t) => (WaitOutcome::Steady, Vec::new()),
        (Some(max), Some(_), Some(_)) => {
            let url = s.get("queues").unwrap_or_default();
            progress(&format!(
                "watching queue {} until it is back to steady state (at most {}, every {})",
                o.queue,
                powertune_core::duration::format(max),
                powertune_core::duration::format(o.every)
            ));
            watch_queue(url, o, max, t, &progress, stop)
                .await
                .unwrap_or_else(|why| {
                    progress(&format!("the watch stopped: {}", s.redact(&why)));
                    (WaitOutcome::NotMeasured, Vec::new())
                })
        }
    };
    steps.push(step_steady(o, wait, start.as_ref(), &watch, &queues));
    let systems: Vec<SystemStatus> = vec![q_status, a_status, g_status];
    let backed_up = snap
        .map(|sn| {
            sn.queues
                .iter()
                .filter(|q| backed_up(q.size, q.latency_s, t))
                .map(|q| (q.name.clone(), q.size, q.latency_s))
                .collect()
        })
        .unwrap_or_default();
    let metrics = QueueMetrics {
        queue: o.queue.clone(),
        systems: systems.clone(),
        start,
        backed_up,
        capacity,
        max_wait_s: o.max_wait.map_or(0.0, |d| d.as_secs_f64()),
        wait,
        watch,
        steps,
    };
    let found = findings(&metrics.steps, &systems);
    let text = render::queue(&metrics);
    Ok(Inspection::new("investigate queue", found, metrics, text))
}

fn queues_options(url: &str, watch: Option<WatchOptions>) -> Result<QueuesOptions, String> {
    Ok(QueuesOptions {
        conn: redis_conn(url)?,
        read: QueueRead::default(),
        watch,
    })
}

async fn read_queues(url: &str, t: &Targets) -> Result<Outcome<QueuesMetrics>, String> {
    let o = queues_options(url, None)?;
    let i = powertune_redis::sidekiq::inspect(&o, t)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Outcome::Measured {
        findings: i.findings,
        metrics: i.metrics,
    })
}

/// Past the latency target or the backlog threshold.
fn backed_up(size: u64, latency_s: f64, t: &Targets) -> bool {
    latency_s >= t.worker.queue_latency_s || size > t.worker.backlog_enqueued
}

/// Steady state: latency within target, depth within the backlog threshold and not
/// growing.
fn steady(p: &QueuePoint, t: &Targets) -> bool {
    !backed_up(p.size, p.latency_s, t) && p.net_per_s <= 0.0
}

fn point_of(s: &SidekiqSnapshot, queue: &str) -> QueuePoint {
    let q = s.queues.iter().find(|q| q.name == queue);
    QueuePoint {
        at_s: 0.0,
        size: q.map_or(0, |q| q.size),
        latency_s: q.map_or(0.0, |q| q.latency_s),
        net_per_s: 0.0,
        eta_s: None,
    }
}

/// The processes that poll the queue (all of them when none lists its queues).
fn capacity(s: &SidekiqSnapshot, queue: &str) -> Capacity {
    let polling: Vec<_> = s
        .processes
        .iter()
        .filter(|p| p.queues.is_empty() || p.queues.iter().any(|q| q == queue))
        .collect();
    Capacity {
        processes: polling.len() as u64,
        busy: polling.iter().map(|p| p.busy).sum(),
        concurrency: polling.iter().map(|p| p.concurrency).sum(),
    }
}

/// Watches the queue through `queues --watch` until it is steady, `max` passes or
/// `stop` resolves.
async fn watch_queue<P, X>(
    url: &str,
    o: &QueueOptions,
    max: Duration,
    t: &Targets,
    progress: &P,
    stop: X,
) -> Result<(WaitOutcome, Vec<QueuePoint>), String>
where
    P: Fn(&str),
    X: Future<Output = ()>,
{
    let opts = queues_options(
        url,
        Some(WatchOptions {
            every: o.every,
            ticks: None,
            reconnect: Reconnect::default(),
        }),
    )?;
    let settled = tokio::sync::Notify::new();
    let outcome = std::cell::Cell::new(WaitOutcome::TimedOut);
    let mut points: Vec<QueuePoint> = Vec::new();
    let on_tick = |at_s: f64, d: &WatchDelta| {
        let p = match d.rows.iter().find(|r| r.queue == o.queue) {
            Some(r) => QueuePoint {
                at_s,
                size: r.size,
                latency_s: r.latency_s,
                net_per_s: r.net_per_s,
                eta_s: r.eta_s,
            },
            None => QueuePoint {
                at_s,
                size: 0,
                latency_s: 0.0,
                net_per_s: 0.0,
                eta_s: None,
            },
        };
        progress(&progress_line(&o.queue, &p, d));
        let done = steady(&p, t);
        if points.len() >= MAX_POINTS {
            let mut i = 0;
            points.retain(|_| {
                i += 1;
                i % 2 == 1
            });
        }
        points.push(p);
        if done {
            outcome.set(WaitOutcome::Steady);
            settled.notify_one();
        }
    };
    let stopper = async {
        tokio::select! {
            _ = settled.notified() => {}
            _ = tokio::time::sleep(max) => {}
            _ = stop => outcome.set(WaitOutcome::Interrupted),
        }
    };
    inspect_watching(&opts, t, on_tick, stopper)
        .await
        .map_err(|e| e.to_string())?;
    Ok((outcome.get(), points))
}

fn progress_line(queue: &str, p: &QueuePoint, d: &WatchDelta) -> String {
    let eta = match p.eta_s {
        Some(e) => format!("drains in ~{}", units::seconds(e)),
        None if p.size == 0 => "empty".to_string(),
        None => "not draining".to_string(),
    };
    format!(
        "{} queue {queue}: {} enqueued, latency {}, {:+.1}/s net, {:.1} processed/s, {eta}",
        units::seconds(p.at_s),
        p.size,
        units::seconds(p.latency_s),
        p.net_per_s,
        d.processed_per_s
    )
}

fn missing<M>(o: &Outcome<M>, key: &str) -> String {
    o.missing(key).unwrap_or_default()
}

fn step_backlog(queues: &Outcome<QueuesMetrics>, queue: &str, t: &Targets) -> Step {
    let step = Step::new(
        1,
        "backlog",
        "Which queue is backed up, and what's the latency?",
    )
    .source("queues (Sidekiq's Redis)");
    let Some(m) = queues.metrics() else {
        return step.not_measured(missing(queues, "queues"));
    };
    let s = &m.sidekiq;
    let others: Vec<String> = s
        .queues
        .iter()
        .filter(|q| q.name != queue && backed_up(q.size, q.latency_s, t))
        .map(|q| {
            format!(
                "also backed up: {} ({} enqueued, latency {})",
                q.name,
                q.size,
                units::seconds(q.latency_s)
            )
        })
        .collect();
    let target = format!(
        "target latency < {}, backlog ≤ {} enqueued",
        units::seconds(t.worker.queue_latency_s),
        t.worker.backlog_enqueued
    );
    let Some(q) = s.queues.iter().find(|q| q.name == queue) else {
        let known: Vec<&str> = s.queues.iter().map(|q| q.name.as_str()).take(10).collect();
        return step
            .ruled_out(format!(
                "queue {queue} is empty: not in Sidekiq's queues set (queues there: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
            .details(others);
    };
    let figure = format!(
        "queue {}: {} enqueued, latency {} (oldest {}); {target}",
        q.name,
        q.size,
        units::seconds(q.latency_s),
        q.oldest_class.as_deref().unwrap_or("-")
    );
    if backed_up(q.size, q.latency_s, t) {
        step.confirmed(
            format!("backed up — {figure}"),
            "Find why: systemic errors (step 2), capacity (step 3), a slow job (step 4) or a stalling provider (step 5)",
        )
        .details(others)
    } else {
        step.ruled_out(format!("not backed up — {figure}"))
            .details(others)
    }
}

fn step_errors(queues: &Outcome<QueuesMetrics>) -> Step {
    let step = Step::new(
        2,
        "errors",
        "Inspect the retry / dead sets for systemic errors",
    )
    .source("queues: retry set sample, newest dead jobs");
    let Some(m) = queues.metrics() else {
        return step.not_measured(missing(queues, "queues"));
    };
    let s = &m.sidekiq;
    let r = &s.retry;
    let mut details: Vec<String> = Vec::new();
    for (class, n) in &r.top_errors {
        let mut line = format!("retry: {class} × {n}");
        if let Some(x) = r.error_samples.iter().find(|x| &x.error_class == class) {
            line.push_str(&format!(" (e.g. {}: \"{}\"", x.job_class, x.message));
            if let Some(b) = &x.backtrace {
                line.push_str(&format!(" at {b}"));
            }
            line.push(')');
        }
        details.push(line);
    }
    let mut dead: Vec<(String, u64)> = Vec::new();
    for d in &s.dead_newest {
        match dead.iter_mut().find(|(c, _)| c == &d.error_class) {
            Some(e) => e.1 += 1,
            None => dead.push((d.error_class.clone(), 1)),
        }
    }
    dead.sort_by_key(|d| std::cmp::Reverse(d.1));
    for (class, n) in dead.iter().take(5) {
        details.push(format!(
            "dead (newest {}): {class} × {n}",
            s.dead_newest.len()
        ));
    }
    let sizes = format!("retry set {}, dead set {}", r.size, s.dead_size);
    let top = r.top_errors.first();
    match top {
        Some((class, n))
            if r.sampled > 0 && 100.0 * *n as f64 / r.sampled as f64 >= SYSTEMIC_PCT =>
        {
            step.confirmed(
                format!(
                    "systemic: {class} in {n} of {} sampled retries ({}); {sizes}",
                    r.sampled,
                    units::percent(100.0 * *n as f64 / r.sampled as f64)
                ),
                "Inspect Sidekiq::RetrySet; investigate the top retried job",
            )
            .details(details)
        }
        Some(_) => step
            .ruled_out(format!(
                "errors spread over {} classes, none systemic; {sizes}",
                r.top_errors.len()
            ))
            .details(details),
        None => step
            .ruled_out(format!("no retries; {sizes}"))
            .details(details),
    }
}

fn step_capacity(
    snap: Option<&SidekiqSnapshot>,
    queues: &Outcome<QueuesMetrics>,
    queue: &str,
    t: &Targets,
) -> Step {
    let step = Step::new(
        3,
        "capacity",
        "Capacity issue → bump WORKER_CONCURRENCY or add a worker instance",
    )
    .source("queues: processes hash (busy, concurrency, queues)");
    let Some(s) = snap else {
        return step.not_measured(missing(queues, "queues"));
    };
    let c = capacity(s, queue);
    let p = point_of(s, queue);
    let backlog = backed_up(p.size, p.latency_s, t);
    if c.processes == 0 {
        return if p.size > 0 {
            step.confirmed(
                format!("no live Sidekiq process polls queue {queue} ({} processes alive)", s.processes.len()),
                "Start a worker that polls the queue (its sidekiq.yml :queues), or add the queue to a running one",
            )
        } else {
            step.ruled_out(format!(
                "no live Sidekiq process polls queue {queue}, and it is empty"
            ))
        };
    }
    let pct = if c.concurrency == 0 {
        100.0
    } else {
        100.0 * c.busy as f64 / c.concurrency as f64
    };
    let figure = format!(
        "busy {} of concurrency {} ({}) over {} process(es) polling {queue}",
        c.busy,
        c.concurrency,
        units::percent(pct),
        c.processes
    );
    if pct >= SATURATED_PCT && backlog {
        step.confirmed(
            format!("capacity issue: {figure}, with the queue backed up"),
            "Bump WORKER_CONCURRENCY or add a worker instance (powertune queues plan sizes it)",
        )
    } else if pct >= SATURATED_PCT {
        step.ruled_out(format!("saturated but not backed up: {figure}"))
    } else {
        step.ruled_out(format!("threads free: {figure}"))
    }
}

/// The job classes known to run on the queue: its oldest job, and the jobs running
/// from it now.
fn queue_classes(s: &SidekiqSnapshot, queue: &str) -> Vec<String> {
    let mut out: Vec<String> = s
        .processes
        .iter()
        .flat_map(|p| p.running.iter())
        .filter(|r| r.queue == queue)
        .map(|r| r.class.clone())
        .collect();
    if let Some(c) = s
        .queues
        .iter()
        .find(|q| q.name == queue)
        .and_then(|q| q.oldest_class.clone())
    {
        out.push(c);
    }
    out.sort();
    out.dedup();
    out
}

fn step_slow_job(
    apm: &Outcome<Summary>,
    snap: Option<&SidekiqSnapshot>,
    queue: &str,
    t: &Targets,
) -> Step {
    let step = Step::new(
        4,
        "slow_job",
        "Slow job → profile the job; circuit-break the long path or split it",
    )
    .source("apm report: job spans");
    let Some(sum) = apm.metrics() else {
        return step.not_measured(missing(apm, "apm"));
    };
    if sum.jobs.is_empty() {
        return step.not_measured("apm: no job spans in its window");
    }
    let classes = snap.map(|s| queue_classes(s, queue)).unwrap_or_default();
    let on_queue: Vec<_> = sum
        .jobs
        .iter()
        .filter(|j| classes.contains(&j.class))
        .collect();
    let (jobs, scope) = if on_queue.is_empty() {
        (
            sum.jobs.iter().collect::<Vec<_>>(),
            "every job class (none known to run on the queue)".to_string(),
        )
    } else {
        (on_queue, format!("the classes on {queue}"))
    };
    let avg_max = t.worker.job_avg_s * 1000.0;
    let slow_ms = t.worker.job_slow_s * 1000.0;
    let lines: Vec<String> = jobs
        .iter()
        .map(|j| {
            format!(
                "{}: {} runs, avg {}, P95 {}, {} slower than {}",
                j.class,
                j.latency.count,
                units::ms(j.latency.avg_ms),
                units::ms(j.latency.p95_ms),
                j.slow,
                units::seconds(t.worker.job_slow_s)
            )
        })
        .collect();
    let slow: Vec<&str> = jobs
        .iter()
        .filter(|j| j.latency.avg_ms >= avg_max || j.latency.p95_ms >= slow_ms || j.slow > 0)
        .map(|j| j.class.as_str())
        .collect();
    if slow.is_empty() {
        step.ruled_out(format!(
            "jobs fast: every one of {scope} averages under {}",
            units::seconds(t.worker.job_avg_s)
        ))
        .details(lines)
    } else {
        step.confirmed(
            format!(
                "slow job: {} (target average < {})",
                slow.join(", "),
                units::seconds(t.worker.job_avg_s)
            ),
            "Profile the job; bring the long path under a circuit breaker or split it into smaller jobs",
        )
        .details(lines)
    }
}

fn step_provider(gateway: &Outcome<StatusMetrics>) -> Step {
    let step = Step::new(
        5,
        "provider",
        "External provider stalling → check provider status; fail fast via the breaker",
    )
    .source("gateway status");
    let Some(g) = gateway.metrics() else {
        return step.not_measured(missing(gateway, "gateway"));
    };
    let state = super::gateway::read(g);
    if state.problems.is_empty() {
        step.ruled_out("providers answer: breakers closed, no quota answers, no provider faults")
            .details(state.details)
    } else {
        step.confirmed(
            state.problems.join("; "),
            "Check the provider's status page; consider failing fast via the breaker",
        )
        .details(state.details)
    }
}

fn step_steady(
    o: &QueueOptions,
    wait: WaitOutcome,
    start: Option<&QueuePoint>,
    watch: &[QueuePoint],
    queues: &Outcome<QueuesMetrics>,
) -> Step {
    let step = Step::new(
        6,
        "steady_state",
        "Verify the queue depth returns to steady state within 15 minutes",
    )
    .source("queues --watch");
    let last = watch.last().or(start);
    let figure = last
        .map(|p| {
            format!(
                "{} enqueued, latency {}",
                p.size,
                units::seconds(p.latency_s)
            )
        })
        .unwrap_or_default();
    let waited = watch.last().map_or(0.0, |p| p.at_s);
    let details: Vec<String> = watch
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(|p| {
            format!(
                "{}: {} enqueued, {:+.1}/s{}",
                units::seconds(p.at_s),
                p.size,
                p.net_per_s,
                p.eta_s
                    .map(|e| format!(", drains in ~{}", units::seconds(e)))
                    .unwrap_or_default()
            )
        })
        .collect();
    match wait {
        WaitOutcome::Skipped => step.not_measured(format!("--no-wait: not watched (now {figure})")),
        WaitOutcome::NotMeasured => step.not_measured(
            queues.missing("queues").unwrap_or_else(|| "the watch lost Sidekiq's Redis".into()),
        ),
        WaitOutcome::Steady if watch.is_empty() => {
            step.ruled_out(format!("at steady state already: {figure}"))
        }
        WaitOutcome::Steady => step
            .ruled_out(format!("back to steady state after {}: {figure}", units::seconds(waited)))
            .details(details),
        WaitOutcome::Interrupted => step
            .not_measured(format!("interrupted after {} (now {figure})", units::seconds(waited)))
            .details(details),
        WaitOutcome::TimedOut => step
            .confirmed(
                format!(
                    "still backed up after {} (--max-wait {}): {figure}",
                    units::seconds(waited),
                    o.max_wait.map(powertune_core::duration::format).unwrap_or_default()
                ),
                "The fix did not drain the queue: revisit steps 3-5 (capacity, slow job, provider) or roll back the change",
            )
            .details(details),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bounds_are_checked() {
        let t = Targets::default();
        let mut o = QueueOptions::new(Systems::default(), "default", &t);
        assert!(o.validate().is_ok());
        assert_eq!(o.max_wait, Some(Duration::from_secs(900)));
        o.every = Duration::from_millis(10);
        assert!(o.validate().unwrap_err().starts_with("--every"));
        let o = QueueOptions::new(Systems::default(), "a b", &t);
        assert!(o
            .validate()
            .unwrap_err()
            .contains("not a Sidekiq queue name"));
    }

    #[test]
    fn steady_means_within_target_and_not_growing() {
        let t = Targets::default();
        let p = |size, latency_s, net_per_s| QueuePoint {
            at_s: 0.0,
            size,
            latency_s,
            net_per_s,
            eta_s: None,
        };
        assert!(steady(&p(10, 5.0, 0.0), &t));
        assert!(!steady(&p(10, 5.0, 2.0), &t));
        assert!(!steady(&p(10, 61.0, -1.0), &t));
        assert!(!steady(&p(5000, 1.0, -1.0), &t));
    }
}
