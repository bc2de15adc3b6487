//! Judges of `powertune queues`: pure functions from a [`SidekiqSnapshot`] (or a
//! `--watch` [`WatchDelta`]) and the runbook's worker targets to findings. Each check
//! also says when it found nothing (a `PASS` line), so a report shows what was looked at.

use super::snapshot::{JobMetric, ProcessInfo, QueueInfo, SidekiqSnapshot, WatchDelta};
use crate::units::{human_secs, zero};
use powertune_core::targets::WorkerTargets;
use powertune_core::{Finding, Quantity, Value, Verdict};

const AREA: &str = "queues";
/// Dead jobs younger than this count as dying now.
const RECENT_DEAD_S: f64 = 86_400.0;

/// Every check of `powertune queues` over one snapshot (the `--watch` trend is
/// [`judge_trend`]). Per process, its checks stay together in the report.
pub fn judge(s: &SidekiqSnapshot, t: &WorkerTargets) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(unserved_queues(s));
    out.extend(queue_backlog(s, t));
    out.extend(queue_latency(s, t));
    out.extend(processes(s));
    for p in &s.processes {
        out.extend(concurrency(p, t));
        out.extend(heartbeat(p, s.now, t));
        out.extend(long_running_jobs(p, s.now, t));
    }
    out.extend(capacity(s));
    out.push(retry_depth(s, t));
    out.push(dead(s));
    out.push(failed_rate(s, t));
    out.extend(job_duration(s, t));
    out
}

/// Seconds as a figure; a negative age (clock skew) reads as 0.
fn secs(v: f64) -> Quantity {
    Quantity::seconds(v.max(0.0))
}

/// Queues that some live, non-quiet process polls (a quiet process fetches nothing).
fn served(s: &SidekiqSnapshot) -> std::collections::BTreeSet<&str> {
    s.processes
        .iter()
        .filter(|p| !p.quiet)
        .flat_map(|p| p.queues.iter().map(String::as_str))
        .collect()
}

/// Whether jobs in `q` wait because no process polls it (not for want of threads).
/// False without live processes: [`processes`] reports that.
fn is_unserved(
    s: &SidekiqSnapshot,
    served: &std::collections::BTreeSet<&str>,
    q: &QueueInfo,
) -> bool {
    !s.processes.is_empty() && !served.contains(q.name.as_str())
}

/// What to do about a queue's backlog or latency: a queue nobody polls needs a
/// process that polls it, not more threads.
fn backlog_action(unserved: bool, name: &str, otherwise: &str) -> String {
    if unserved {
        format!("No process serves queue `{name}`: add it to a process's queues (sidekiq.yml :queues: or -q {name}); more concurrency does not help")
    } else {
        otherwise.to_string()
    }
}

/// Queues holding jobs that no live, non-quiet process polls: FAIL each (they wait
/// forever). Nothing without live processes ([`processes`] says that) or when every
/// queue with jobs is served.
pub fn unserved_queues(s: &SidekiqSnapshot) -> Vec<Finding> {
    let served = served(s);
    let quiet = s.processes.iter().filter(|p| p.quiet).count();
    s.queues
        .iter()
        .filter(|q| q.size > 0 && is_unserved(s, &served, q))
        .map(|q| {
            let mut listed: Vec<&str> = served.iter().copied().collect();
            listed.truncate(20);
            Finding::new(AREA, "unserved_queue", format!("queue {}", q.name), Verdict::Fail)
                .observed(Value::of(Quantity::count(q.size as f64)).note("enqueued, no process polls it"))
                .target("polled by at least one process")
                .evidence(format!(
                    "{} live processes ({quiet} quiet) poll: {}; oldest job {} waited {}",
                    s.processes.len(),
                    if listed.is_empty() { "nothing".to_string() } else { listed.join(", ") },
                    q.oldest_class.as_deref().unwrap_or("?"),
                    human_secs(q.latency_s)
                ))
                .action(format!(
                    "No process serves queue `{}`: add it to a process's queues (sidekiq.yml :queues: or -q {}), or move its jobs to a served queue",
                    q.name, q.name
                ))
        })
        .collect()
}

/// Queues holding more than `backlog_enqueued` jobs: WARN each.
pub fn queue_backlog(s: &SidekiqSnapshot, t: &WorkerTargets) -> Vec<Finding> {
    let target = Value::le(Quantity::count(t.backlog_enqueued as f64)).note("per queue");
    let backlog: Vec<&QueueInfo> = s
        .queues
        .iter()
        .filter(|q| q.size > t.backlog_enqueued)
        .collect();
    if backlog.is_empty() {
        let largest = s.queues.iter().map(|q| q.size).max().unwrap_or(0);
        return vec![Finding::new(
            AREA,
            "queue_backlog",
            format!("{} queues", s.queues.len()),
            Verdict::Pass,
        )
        .observed(Value::of(Quantity::count(largest as f64)).note("largest"))
        .target(target)];
    }
    let served = served(s);
    backlog
        .iter()
        .map(|q| {
            Finding::new(AREA, "queue_backlog", format!("queue {}", q.name), Verdict::Warn)
                .observed(Value::of(Quantity::count(q.size as f64)).note("enqueued"))
                .target(target.clone())
                .evidence(format!("oldest job {} waited {}", q.oldest_class.as_deref().unwrap_or("?"), human_secs(q.latency_s)))
                .action(backlog_action(is_unserved(s, &served, q), &q.name, "Investigate the backlog: check which queue is backed up and its latency, inspect the retry/failed sets for systemic errors, then bump WORKER_CONCURRENCY or add a worker instance"))
        })
        .collect()
}

/// Queue latency (the oldest job's wait): WARN at `queue_latency_s`, FAIL past
/// `drain_minutes`.
pub fn queue_latency(s: &SidekiqSnapshot, t: &WorkerTargets) -> Vec<Finding> {
    let fail_s = t.drain_minutes * 60.0;
    let target = Value::lt(secs(t.queue_latency_s));
    let slow: Vec<&QueueInfo> = s
        .queues
        .iter()
        .filter(|q| q.latency_s >= t.queue_latency_s)
        .collect();
    if slow.is_empty() {
        let max = s.queues.iter().map(|q| q.latency_s).fold(0.0, f64::max);
        return vec![Finding::new(
            AREA,
            "queue_latency",
            format!("{} queues", s.queues.len()),
            Verdict::Pass,
        )
        .observed(Value::of(secs(max)).note("max"))
        .target(target)];
    }
    let served = served(s);
    slow.iter()
        .map(|q| {
            let v = if q.latency_s > fail_s {
                Verdict::Fail
            } else {
                Verdict::Warn
            };
            Finding::new(AREA, "queue_latency", format!("queue {}", q.name), v)
                .observed(secs(q.latency_s))
                .target(target.clone())
                .limit(secs(fail_s))
                .evidence(format!("{} enqueued; oldest job {}", q.size, q.oldest_class.as_deref().unwrap_or("?")))
                .action(backlog_action(is_unserved(s, &served, q), &q.name, "Capacity issue → bump WORKER_CONCURRENCY or add a worker instance; slow job → profile it and split it or put its slow path under a circuit breaker"))
        })
        .collect()
}

/// No live process: FAIL while jobs wait, WARN otherwise (None when one is alive).
pub fn processes(s: &SidekiqSnapshot) -> Option<Finding> {
    if !s.processes.is_empty() {
        return None;
    }
    let enqueued = s.enqueued();
    Some(
        Finding::new(AREA, "processes", "live Sidekiq processes", if enqueued > 0 { Verdict::Fail } else { Verdict::Warn })
            .observed(Value::of(Quantity::count(0.0)).note(format!("{enqueued} jobs enqueued")))
            .target(Value::ge(Quantity::count(1.0)).note("with a fresh heartbeat"))
            .action("Start the worker service (systemctl status powernode-worker@default) and check its log for boot errors"),
    )
}

/// A process's concurrency outside `concurrency_min..=concurrency_max`: WARN. The
/// target is the bound it crossed, the other one noted.
pub fn concurrency(p: &ProcessInfo, t: &WorkerTargets) -> Option<Finding> {
    let c = p.concurrency;
    let (min, max) = (t.concurrency_min, t.concurrency_max);
    let target = if c < min as u64 {
        Value::ge(Quantity::count(min as f64)).note(format!("at most {max}"))
    } else {
        Value::le(Quantity::count(max as f64)).note(format!("at least {min}"))
    };
    (c < min as u64 || c > max as u64).then(|| {
        Finding::new(AREA, "concurrency", format!("process {}", p.identity), Verdict::Warn)
            .observed(Quantity::count(c as f64))
            .target(target)
            .action("Set WORKER_CONCURRENCY on the systemd unit: default 5, 10-25 for AI-heavy workloads; add a worker instance beyond 25")
    })
}

/// A process whose last heartbeat is older than `heartbeat_stale_s`: WARN.
pub fn heartbeat(p: &ProcessInfo, now: f64, t: &WorkerTargets) -> Option<Finding> {
    let age = now - p.beat;
    (age > t.heartbeat_stale_s).then(|| {
        Finding::new(AREA, "heartbeat", format!("process {}", p.identity), Verdict::Warn)
            .observed(Value::of(secs(age)).note("since the last beat"))
            .target(Value::le(secs(t.heartbeat_stale_s)))
            .action("The process stopped beating: check it is alive (OOM-kill, stuck thread) and restart it")
    })
}

/// Jobs a process has been running for longer than `job_slow_s`: WARN each.
pub fn long_running_jobs(p: &ProcessInfo, now: f64, t: &WorkerTargets) -> Vec<Finding> {
    p.running
        .iter()
        .filter(|j| now - j.run_at > t.job_slow_s)
        .map(|j| {
            Finding::new(AREA, "long_running_job", format!("{} ({})", j.class, j.jid), Verdict::Warn)
                .observed(Value::of(secs(now - j.run_at)).note("running"))
                .target(Value::le(secs(t.job_slow_s)))
                .evidence(format!("queue {} on {}", j.queue, p.identity))
                .action("Profile the job; bring the long path under a circuit breaker or split it into smaller jobs")
        })
        .collect()
}

/// Every thread busy while jobs wait: WARN (None without a live process).
pub fn capacity(s: &SidekiqSnapshot) -> Option<Finding> {
    if s.processes.is_empty() {
        return None;
    }
    // Jobs in queues nobody polls do not need more threads (see `unserved_queue`).
    let served = served(s);
    let enqueued: u64 = s
        .queues
        .iter()
        .filter(|q| served.contains(q.name.as_str()))
        .map(|q| q.size)
        .sum();
    let (busy, cap) = (s.busy(), s.concurrency());
    let util = if cap == 0 {
        0.0
    } else {
        busy as f64 * 100.0 / cap as f64
    };
    let saturated = cap > 0 && busy >= cap && enqueued > 0;
    Some(
        Finding::new(
            AREA,
            "capacity",
            "busy / concurrency",
            if saturated {
                Verdict::Warn
            } else {
                Verdict::Pass
            },
        )
        .observed(Value::of(Quantity::percent(util)).note("threads busy"))
        .target(Value::lt(Quantity::percent(100.0)).note("while jobs wait"))
        .evidence(format!(
            "{busy} of {cap} threads busy, {enqueued} enqueued, {} processes",
            s.processes.len()
        ))
        .action("Capacity issue → bump WORKER_CONCURRENCY or add a worker instance"),
    )
}

/// Retried jobs at `retry_depth_max` or deeper (in the sample read): WARN.
pub fn retry_depth(s: &SidekiqSnapshot, t: &WorkerTargets) -> Finding {
    let deep: u64 = s
        .retry
        .depth
        .iter()
        .filter(|(d, _)| **d >= t.retry_depth_max as u64)
        .map(|(_, n)| n)
        .sum();
    let observed = Value::of(Quantity::count(deep as f64));
    let observed = if s.retry.sampled < s.retry.size {
        observed.note(format!("sample of {} of {}", s.retry.sampled, s.retry.size))
    } else {
        observed
    };
    Finding::new(
        AREA,
        "retry_depth",
        "retry set",
        if deep > 0 {
            Verdict::Warn
        } else {
            Verdict::Pass
        },
    )
    .observed(observed)
    .target(zero().note(format!("jobs at retry_count >= {}", t.retry_depth_max)))
    .evidence(format!(
        "{} in retry; top classes: {}",
        s.retry.size,
        s.retry
            .top_classes
            .iter()
            .map(|(c, n)| format!("{c} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .action("Inspect Sidekiq::RetrySet; investigate the top retried job class")
}

/// Jobs that died in the last 24 hours (among the newest read): WARN.
pub fn dead(s: &SidekiqSnapshot) -> Finding {
    let recent_dead = s
        .dead_newest
        .iter()
        .filter(|d| s.now - d.died_at < RECENT_DEAD_S)
        .count();
    let newest = s
        .dead_newest
        .first()
        .map(|d| {
            format!(
                "; newest: {} {}: {}",
                d.class, d.error_class, d.error_message
            )
        })
        .unwrap_or_default();
    Finding::new(AREA, "dead", "dead set", if recent_dead > 0 { Verdict::Warn } else { Verdict::Pass })
        .observed(Value::of(Quantity::count(recent_dead as f64)).note("died in the last 24h"))
        .target(zero().note("jobs dying"))
        .evidence(format!("{} dead; {recent_dead} of the newest {} died in the last 24h{newest}", s.dead_size, s.dead_newest.len()))
        .action("Inspect the dead jobs' error classes for systemic errors; fix the cause, then retry them from the dashboard")
}

/// failed / processed over the daily stats read (else since the stats were reset):
/// FAIL past `failed_rate_pct`.
pub fn failed_rate(s: &SidekiqSnapshot, t: &WorkerTargets) -> Finding {
    let (p, f, window) = if s.days.iter().any(|d| d.processed > 0) {
        let p: u64 = s.days.iter().map(|d| d.processed).sum();
        let f: u64 = s.days.iter().map(|d| d.failed).sum();
        (
            p,
            f,
            format!("last {} day(s) with daily stats", s.days.len()),
        )
    } else {
        (
            s.processed,
            s.failed,
            "since the stats were reset".to_string(),
        )
    };
    let target = Value::lt(Quantity::percent(t.failed_rate_pct));
    if p == 0 {
        return Finding::new(AREA, "failed_rate", "failed / processed", Verdict::Pass)
            .observed(Value::of(Quantity::count(0.0)).note(format!("jobs processed {window}")))
            .target(target);
    }
    let rate = f as f64 * 100.0 / p as f64;
    Finding::new(AREA, "failed_rate", "failed / processed", Verdict::lower_is_better(rate, t.failed_rate_pct, None))
        .observed(Value::of(Quantity::percent(rate)).note(window))
        .target(target)
        .evidence(format!("{f} failed of {p} processed"))
        .action("Inspect the retry and dead sets for the failing job class and its error class; fix or put the failing provider behind a breaker")
}

/// Average job durations from Sidekiq 7+'s metrics: WARN per class at `job_avg_s` or
/// slower; a PASS naming why when none are recorded.
pub fn job_duration(s: &SidekiqSnapshot, t: &WorkerTargets) -> Vec<Finding> {
    let target = Value::lt(secs(t.job_avg_s)).note("average");
    let Some(m) = &s.metrics else {
        return vec![
            Finding::new(AREA, "job_duration", "average job time", Verdict::Pass)
                .observed(match s.version() {
                    Some(v) if v.starts_with('6') || v.starts_with('5') => format!(
                        "not recorded: Sidekiq {v} does not record job durations (7.0+ does)"
                    ),
                    _ => format!(
                        "no j| metrics in the last {} minutes (Sidekiq 6.x does not record them)",
                        s.metrics_minutes
                    ),
                })
                .target(target),
        ];
    };
    let slow: Vec<&JobMetric> = m
        .iter()
        .filter(|j| j.avg_s().is_some_and(|a| a >= t.job_avg_s))
        .collect();
    if slow.is_empty() {
        let worst = m
            .iter()
            .filter_map(|j| j.avg_s().map(|a| (a, j.class.as_str())))
            .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a });
        return vec![Finding::new(
            AREA,
            "job_duration",
            format!("{} job classes", m.len()),
            Verdict::Pass,
        )
        .observed(Value::of(secs(worst.0)).note("slowest average"))
        .target(target)
        .evidence(format!(
            "slowest class {} over the last {} min",
            worst.1, s.metrics_minutes
        ))];
    }
    slow.iter()
        .map(|j| {
            Finding::new(AREA, "job_duration", j.class.clone(), Verdict::Warn)
                .observed(Value::of(secs(j.avg_s().unwrap_or(0.0))).note(format!("average over {} runs", j.processed - j.failed)))
                .target(target.clone())
                .action("Profile the job; bring the long path under a circuit breaker or split it into smaller jobs")
        })
        .collect()
}

/// Judges the retry set's change over a `--watch` ("Sidekiq retry set growing").
pub fn judge_trend(d: &WatchDelta) -> Finding {
    let verdict = if d.retry_change > 0 {
        Verdict::Warn
    } else {
        Verdict::Pass
    };
    Finding::new("queues", "retry_trend", "retry set over the watch", verdict)
        .observed(Value::of(Quantity::count(d.retry_change as f64)).note("jobs, change"))
        .target(Value::le(Quantity::count(0.0)).note("not growing"))
        .action("Sidekiq retry set growing → failing job class: inspect Sidekiq::RetrySet and investigate the top retried job")
}

/// How the `--watch` connection fared: FAIL when Redis went away and the report holds
/// only what the watch saw before (`lost` says when and why), WARN when it went away
/// and came back (`reconnects` times), nothing when it held.
pub fn watch_connection(url: &str, reconnects: u32, lost: Option<&str>) -> Option<Finding> {
    if let Some(why) = lost {
        return Some(
            Finding::new(AREA, "watch_connection", format!("Redis at {url}"), Verdict::Fail)
                .observed("lost")
                .target("connected for the whole watch")
                .evidence(format!(
                    "the watch lost Redis: {why}; this report shows the last snapshot read and the watch up to its last sample"
                ))
                .action("Check that Redis is up and reachable from here (redis-cli -u URL PING, its log, maxclients, timeout), then run powertune queues again"),
        );
    }
    (reconnects > 0).then(|| {
        Finding::new(AREA, "watch_connection", format!("Redis at {url}"), Verdict::Warn)
            .observed(Value::of(Quantity::count(f64::from(reconnects))).note("reconnects"))
            .target(Value::le(Quantity::count(0.0)).note("reconnects"))
            .evidence("Redis went away during the watch and came back; the rates of the interval across the gap are averaged over it")
            .action("Check Redis's log for restarts or failovers and the network between here and Redis")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidekiq::snapshot::{DayStat, DeadJob, RetryStats, RunningJob};
    use crate::test_util::note;
    use std::collections::BTreeMap;

    fn snap() -> SidekiqSnapshot {
        SidekiqSnapshot {
            now: 1_700_000_100.0,
            queues: vec![QueueInfo {
                name: "default".into(),
                size: 3,
                latency_s: 5.0,
                oldest_class: Some("A".into()),
            }],
            queues_not_read: 0,
            processes: vec![ProcessInfo {
                identity: "h:1:abc".into(),
                hostname: "h".into(),
                pid: 1,
                tag: String::new(),
                version: "6.4.1".into(),
                concurrency: 10,
                busy: 2,
                beat: 1_700_000_095.0,
                quiet: false,
                rss_kb: 1000,
                queues: vec!["default".into()],
                weights: BTreeMap::new(),
                running: vec![],
            }],
            dead_process_entries: 0,
            processed: 1000,
            failed: 5,
            scheduled_size: 0,
            retry: RetryStats::default(),
            dead_size: 0,
            dead_newest: vec![],
            days: vec![],
            metrics: None,
            metrics_minutes: 60,
            round_trips: 2,
        }
    }

    fn verdicts(f: &[Finding], check: &str) -> Vec<Verdict> {
        f.iter()
            .filter(|x| x.check == check)
            .map(|x| x.verdict)
            .collect()
    }

    #[test]
    fn a_queue_no_process_polls_is_its_own_finding_not_a_capacity_one() {
        let mut s = snap();
        s.queues.push(QueueInfo {
            name: "bulk".into(),
            size: 1500,
            latency_s: 1200.0,
            oldest_class: Some("BulkJob".into()),
        });
        s.processes[0].busy = 10;
        let t = WorkerTargets::default();
        let f = judge(&s, &t);
        let unserved: Vec<&Finding> = f.iter().filter(|x| x.check == "unserved_queue").collect();
        assert_eq!(unserved.len(), 1, "{f:#?}");
        assert_eq!(unserved[0].subject, "queue bulk");
        assert_eq!(unserved[0].verdict, Verdict::Fail);
        assert!(unserved[0]
            .action
            .contains("No process serves queue `bulk`: add it to a process's queues"));
        for check in ["queue_backlog", "queue_latency"] {
            let x = f
                .iter()
                .find(|x| x.check == check && x.subject == "queue bulk")
                .unwrap();
            assert!(
                !x.action.contains("WORKER_CONCURRENCY"),
                "{check}: {}",
                x.action
            );
            assert!(
                x.action.contains("No process serves queue `bulk`"),
                "{}",
                x.action
            );
        }
        // All threads busy, but the only waiting jobs beyond `default` are unserved:
        // default's 3 jobs still make it saturated, bulk's 1500 are not counted.
        let cap = f.iter().find(|x| x.check == "capacity").unwrap();
        assert!(cap.evidence.contains("3 enqueued"), "{}", cap.evidence);
        // A quiet process serves nothing.
        s.queues[0].size = 0;
        s.processes[0].quiet = true;
        let f = judge(&s, &t);
        assert_eq!(f.iter().filter(|x| x.check == "unserved_queue").count(), 1);
        assert_eq!(verdicts(&f, "capacity"), vec![Verdict::Pass]);
        // Served: no such finding; no live process: `processes` says it instead.
        s.processes[0].quiet = false;
        s.processes[0].queues.push("bulk".into());
        assert!(judge(&s, &t).iter().all(|x| x.check != "unserved_queue"));
        s.processes.clear();
        let f = judge(&s, &t);
        assert!(f.iter().all(|x| x.check != "unserved_queue"));
        assert_eq!(verdicts(&f, "processes"), vec![Verdict::Fail]);
    }

    #[test]
    fn the_watch_connection_is_judged() {
        assert!(watch_connection("redis://h:6379/0", 0, None).is_none());
        let w = watch_connection("redis://h:6379/0", 2, None).unwrap();
        assert_eq!(w.verdict, Verdict::Warn);
        let l = watch_connection("redis://h:6379/0", 1, Some("lost 3s into the watch")).unwrap();
        assert_eq!(l.verdict, Verdict::Fail);
        assert!(
            l.evidence.contains("the watch lost Redis: lost 3s"),
            "{}",
            l.evidence
        );
    }

    #[test]
    fn healthy_passes() {
        let f = judge(&snap(), &WorkerTargets::default());
        assert!(f.iter().all(|x| x.verdict == Verdict::Pass), "{f:#?}");
    }

    #[test]
    fn problems_are_found() {
        let mut s = snap();
        s.queues[0].size = 5000;
        s.queues[0].latency_s = 1200.0;
        s.processes[0].concurrency = 50;
        s.processes[0].beat = s.now - 120.0;
        s.processes[0].running.push(RunningJob {
            queue: "default".into(),
            class: "Slow".into(),
            jid: "j".into(),
            run_at: s.now - 90.0,
        });
        s.failed = 50;
        s.retry.depth.insert(4, 2);
        s.retry.size = 2;
        s.metrics = Some(vec![JobMetric {
            class: "Slow".into(),
            processed: 10,
            failed: 0,
            total_ms: 100_000,
        }]);
        let f = judge(&s, &WorkerTargets::default());
        assert_eq!(verdicts(&f, "queue_backlog"), vec![Verdict::Warn]);
        assert_eq!(verdicts(&f, "queue_latency"), vec![Verdict::Fail]);
        assert_eq!(verdicts(&f, "concurrency"), vec![Verdict::Warn]);
        assert_eq!(verdicts(&f, "heartbeat"), vec![Verdict::Warn]);
        assert_eq!(verdicts(&f, "long_running_job"), vec![Verdict::Warn]);
        assert_eq!(verdicts(&f, "failed_rate"), vec![Verdict::Fail]);
        assert_eq!(verdicts(&f, "retry_depth"), vec![Verdict::Warn]);
        assert_eq!(verdicts(&f, "job_duration"), vec![Verdict::Warn]);
        s.processes.clear();
        let f = judge(&s, &WorkerTargets::default());
        assert_eq!(verdicts(&f, "processes"), vec![Verdict::Fail]);
    }

    #[test]
    fn a_growing_retry_set_warns_and_a_steady_one_passes() {
        let mut d = WatchDelta {
            rows: vec![],
            processed_per_s: 0.0,
            failed_per_s: 0.0,
            enqueued_per_s: 0.0,
            retry_change: 4,
        };
        let f = judge_trend(&d);
        assert_eq!(f.verdict, Verdict::Warn);
        assert_eq!(f.observed.quantity(), Some(Quantity::count(4.0)));
        assert_eq!(
            f.target,
            Value::le(Quantity::count(0.0)).note("not growing")
        );
        d.retry_change = 0;
        assert_eq!(judge_trend(&d).verdict, Verdict::Pass);
    }

    #[test]
    fn backlog_and_latency_pass_with_the_largest_and_fail_past_the_drain_window() {
        let t = WorkerTargets::default();
        let mut s = snap();
        let f = queue_backlog(&s, &t);
        assert_eq!(f[0].verdict, Verdict::Pass);
        assert_eq!(f[0].observed.quantity(), Some(Quantity::count(3.0)));
        assert_eq!(note(&f[0].observed), "largest");
        s.queues[0].size = t.backlog_enqueued + 500;
        let f = queue_backlog(&s, &t);
        assert_eq!(f[0].verdict, Verdict::Warn);
        assert_eq!(
            f[0].observed,
            Value::of(Quantity::count((t.backlog_enqueued + 500) as f64)).note("enqueued")
        );
        assert_eq!(
            f[0].target.quantity(),
            Some(Quantity::count(t.backlog_enqueued as f64))
        );
        let f = queue_latency(&s, &t);
        assert_eq!(f[0].verdict, Verdict::Pass);
        s.queues[0].latency_s = t.queue_latency_s;
        assert_eq!(queue_latency(&s, &t)[0].verdict, Verdict::Warn);
        s.queues[0].latency_s = t.drain_minutes * 60.0 + 1.0;
        let f = queue_latency(&s, &t);
        assert_eq!(
            (f[0].subject.as_str(), f[0].verdict),
            ("queue default", Verdict::Fail)
        );
        assert_eq!(
            f[0].observed.quantity(),
            Some(Quantity::seconds(t.drain_minutes * 60.0 + 1.0))
        );
        assert_eq!(f[0].target, Value::lt(Quantity::seconds(t.queue_latency_s)));
        assert_eq!(
            f[0].limit.as_ref().and_then(Value::quantity),
            Some(Quantity::seconds(t.drain_minutes * 60.0))
        );
    }

    #[test]
    fn no_process_fails_only_while_jobs_wait() {
        let mut s = snap();
        assert!(processes(&s).is_none());
        assert!(capacity(&s).is_some());
        s.processes.clear();
        let f = processes(&s).unwrap();
        assert_eq!(f.verdict, Verdict::Fail);
        assert_eq!(f.observed.quantity(), Some(Quantity::count(0.0)));
        assert_eq!(note(&f.observed), "3 jobs enqueued");
        assert!(capacity(&s).is_none());
        s.queues[0].size = 0;
        assert_eq!(processes(&s).unwrap().verdict, Verdict::Warn);
    }

    #[test]
    fn process_checks_concurrency_heartbeat_and_long_jobs() {
        let t = WorkerTargets::default();
        let s = snap();
        let mut p = s.processes[0].clone();
        assert!(concurrency(&p, &t).is_none());
        assert!(heartbeat(&p, s.now, &t).is_none());
        assert!(long_running_jobs(&p, s.now, &t).is_empty());
        p.concurrency = 1;
        let f = concurrency(&p, &t).unwrap();
        assert_eq!(f.observed.quantity(), Some(Quantity::count(1.0)));
        assert_eq!(
            f.target,
            Value::ge(Quantity::count(t.concurrency_min as f64))
                .note(format!("at most {}", t.concurrency_max))
        );
        p.concurrency = 50;
        let f = concurrency(&p, &t).unwrap();
        assert_eq!(
            f.target.quantity(),
            Some(Quantity::count(t.concurrency_max as f64))
        );
        p.beat = s.now - t.heartbeat_stale_s - 1.0;
        let f = heartbeat(&p, s.now, &t).unwrap();
        assert_eq!(f.verdict, Verdict::Warn);
        assert_eq!(
            f.observed.quantity(),
            Some(Quantity::seconds(t.heartbeat_stale_s + 1.0))
        );
        p.running.push(RunningJob {
            queue: "default".into(),
            class: "Quick".into(),
            jid: "q".into(),
            run_at: s.now - 1.0,
        });
        assert!(long_running_jobs(&p, s.now, &t).is_empty());
        p.running[0].run_at = s.now - t.job_slow_s - 1.0;
        let f = long_running_jobs(&p, s.now, &t);
        assert_eq!(f[0].subject, "Quick (q)");
        assert_eq!(
            f[0].observed.quantity(),
            Some(Quantity::seconds(t.job_slow_s + 1.0))
        );
        assert_eq!(f[0].evidence, "queue default on h:1:abc");
    }

    #[test]
    fn capacity_warns_when_every_thread_is_busy_and_jobs_wait() {
        let mut s = snap();
        assert_eq!(capacity(&s).unwrap().verdict, Verdict::Pass);
        s.processes[0].busy = 10;
        let f = capacity(&s).unwrap();
        assert_eq!(f.verdict, Verdict::Warn);
        assert_eq!(f.observed.quantity(), Some(Quantity::percent(100.0)));
        assert_eq!(f.evidence, "10 of 10 threads busy, 3 enqueued, 1 processes");
        s.queues[0].size = 0;
        assert_eq!(capacity(&s).unwrap().verdict, Verdict::Pass);
    }

    #[test]
    fn retry_depth_names_the_sample_and_dead_counts_the_last_day() {
        let t = WorkerTargets::default();
        let mut s = snap();
        s.retry.size = 10;
        s.retry.sampled = 4;
        s.retry.depth.insert(1, 4);
        let f = retry_depth(&s, &t);
        assert_eq!(f.verdict, Verdict::Pass);
        assert_eq!(f.observed.quantity(), Some(Quantity::count(0.0)));
        assert_eq!(note(&f.observed), "sample of 4 of 10");
        assert_eq!(dead(&s).verdict, Verdict::Pass);
        s.dead_size = 2;
        s.dead_newest = vec![DeadJob {
            class: "Old".into(),
            error_class: "E".into(),
            error_message: "m".into(),
            died_at: s.now - 2.0 * RECENT_DEAD_S,
        }];
        assert_eq!(dead(&s).verdict, Verdict::Pass);
        s.dead_newest[0].died_at = s.now - 60.0;
        let f = dead(&s);
        assert_eq!(f.verdict, Verdict::Warn);
        assert_eq!(f.observed.quantity(), Some(Quantity::count(1.0)));
        assert_eq!(
            f.evidence,
            "2 dead; 1 of the newest 1 died in the last 24h; newest: Old E: m"
        );
    }

    #[test]
    fn failed_rate_prefers_daily_stats_over_the_totals() {
        let t = WorkerTargets::default();
        let mut s = snap();
        s.processed = 0;
        s.failed = 0;
        let f = failed_rate(&s, &t);
        assert_eq!(f.observed.quantity(), Some(Quantity::count(0.0)));
        assert_eq!(
            note(&f.observed),
            "jobs processed since the stats were reset"
        );
        s.processed = 1000;
        s.failed = 500;
        s.days = vec![DayStat {
            date: "2026-01-01".into(),
            processed: 1000,
            failed: 1,
        }];
        let f = failed_rate(&s, &t);
        assert_eq!(f.verdict, Verdict::Pass);
        assert_eq!(f.observed.quantity(), Some(Quantity::percent(0.1)));
        assert_eq!(note(&f.observed), "last 1 day(s) with daily stats");
        assert_eq!(f.target, Value::lt(Quantity::percent(t.failed_rate_pct)));
        assert_eq!(f.evidence, "1 failed of 1000 processed");
    }

    #[test]
    fn job_duration_says_why_nothing_is_recorded_and_names_the_slowest() {
        let t = WorkerTargets::default();
        let mut s = snap();
        let f = job_duration(&s, &t);
        assert!(
            f[0].observed.contains("Sidekiq 6.4.1 does not record"),
            "{}",
            f[0].observed
        );
        s.processes[0].version = "7.3.0".into();
        assert!(job_duration(&s, &t)[0]
            .observed
            .text()
            .starts_with("no j| metrics"));
        s.metrics = Some(vec![JobMetric {
            class: "Fast".into(),
            processed: 4,
            failed: 0,
            total_ms: 2000,
        }]);
        let f = job_duration(&s, &t);
        assert_eq!(f[0].verdict, Verdict::Pass);
        assert_eq!(f[0].observed.quantity(), Some(Quantity::seconds(0.5)));
        assert_eq!(f[0].evidence, "slowest class Fast over the last 60 min");
        assert_eq!(
            f[0].target,
            Value::lt(Quantity::seconds(t.job_avg_s)).note("average")
        );
    }
}
