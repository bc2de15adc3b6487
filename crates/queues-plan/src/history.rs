//! `powertune queues history`: a recorded history judged against the runbook's worker
//! targets: each queue's latency and depth over time with the periods its latency was
//! over the target, throughput, the failed rate (per [`FAILED_WINDOW_S`] window),
//! retry-set growth, gaps and drain-time estimates; series for the charts, at most
//! `points` buckets. Pure functions over the file's records.

use powertune_core::finding::{Finding, Value, Verdict};
use powertune_core::targets::WorkerTargets;
use powertune_core::units::{self, Quantity};
use powertune_redis::sidekiq::history::downsample::{merge, mergeable};
use powertune_redis::sidekiq::history::{counter_growth, Gap, History, Record, Sample};
use serde::Serialize;

/// The window the failed rate is judged over.
pub const FAILED_WINDOW_S: f64 = 300.0;
/// The window the drain estimate reads the depth trend over.
pub const DRAIN_WINDOW_S: f64 = 300.0;
/// The narrowest chart bucket: Sidekiq adds to its counters at each process heartbeat
/// (every few seconds), so narrower buckets show throughput in steps.
pub const MIN_BUCKET_S: f64 = 10.0;
/// Periods and gaps listed per kind at most (the rest are counted).
pub const MAX_LISTED: usize = 100;

/// A stretch of time over a target.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Period {
    pub from: f64,
    pub to: f64,
    pub duration_s: f64,
    /// The highest value in it (latency seconds, or failed percent).
    pub peak: f64,
}

/// How long a queue takes to empty at its last trend.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Drain {
    /// Depth change per second over the last [`DRAIN_WINDOW_S`] (negative = draining).
    pub net_per_s: f64,
    /// Seconds until empty at that rate; 0 when empty; None when not draining.
    pub drain_s: Option<f64>,
}

/// One queue over the history.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct QueueHistory {
    pub name: String,
    pub latency_mean_s: f64,
    pub latency_peak_s: f64,
    pub depth_peak: u64,
    pub depth_last: u64,
    pub latency_last_s: f64,
    /// Time covered by samples whose latency peak was over the target.
    pub over_target_s: f64,
    pub violations: Vec<Period>,
    pub violations_total: u64,
    pub drain: Drain,
}

/// Counters over the whole history.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Totals {
    pub processed: u64,
    pub failed: u64,
    /// failed ÷ processed, percent; None when nothing was processed.
    pub failed_pct: Option<f64>,
    pub processed_per_s: f64,
    pub retry_first: u64,
    pub retry_last: u64,
    pub retry_growth_per_h: f64,
    pub dead_first: u64,
    pub dead_last: u64,
}

/// A queue's chart lines.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct QueueSeries {
    pub name: String,
    pub depth: Vec<Option<f64>>,
    pub latency_s: Vec<Option<f64>>,
    pub latency_max_s: Vec<Option<f64>>,
}

/// The chart data: one value per bucket (None where no sample fell).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SeriesSet {
    pub bucket_s: f64,
    /// Unix seconds of each bucket's end.
    pub at: Vec<f64>,
    pub processed_per_s: Vec<Option<f64>>,
    pub failed_pct: Vec<Option<f64>>,
    pub retry: Vec<Option<f64>>,
    pub busy: Vec<Option<f64>>,
    pub concurrency: Vec<Option<f64>>,
    pub queues: Vec<QueueSeries>,
}

/// The `metrics` of a `queues history` report.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct HistoryMetrics {
    pub file: String,
    /// The Redis recorded (redacted, from the file's header).
    pub source: String,
    pub interval_s: f64,
    pub from: f64,
    pub to: f64,
    pub span_s: f64,
    pub samples: u64,
    /// Readings the samples hold (more than `samples` once downsampled).
    pub readings: u64,
    pub dropped_tail_bytes: u64,
    pub latency_target_s: f64,
    pub failed_target_pct: f64,
    pub drain_target_s: f64,
    pub gaps: Vec<Gap>,
    pub gaps_total: u64,
    pub gap_s: f64,
    pub totals: Totals,
    pub failed_violations: Vec<Period>,
    pub failed_violations_total: u64,
    pub queues: Vec<QueueHistory>,
    pub series: SeriesSet,
}

/// Runs of consecutive items that `over` picks, as periods; `span` gives an item's
/// (from, to, value). Items separated by a gap (`broken`) end a run.
fn periods<T>(
    items: &[T],
    span: impl Fn(&T) -> (f64, f64, f64),
    over: impl Fn(&T) -> bool,
    broken: impl Fn(usize) -> bool,
) -> Vec<Period> {
    let mut out: Vec<Period> = Vec::new();
    let mut open = false;
    for (i, it) in items.iter().enumerate() {
        if !over(it) {
            open = false;
            continue;
        }
        let (from, to, v) = span(it);
        match out.last_mut() {
            Some(p) if open && !broken(i) => {
                p.to = to;
                p.duration_s = p.to - p.from;
                p.peak = p.peak.max(v);
            }
            _ => out.push(Period {
                from,
                to,
                duration_s: to - from,
                peak: v,
            }),
        }
        open = true;
    }
    out
}

/// The samples of `h` with, for each, the time it covers starting (the previous
/// sample's time, or its own after a gap) and whether a gap precedes it.
fn spans(h: &History) -> Vec<(&Sample, f64, bool)> {
    let mut out = Vec::new();
    let mut prev: Option<f64> = None;
    let mut gap = false;
    for r in &h.records {
        match r {
            Record::Gap(_) => gap = true,
            Record::Sample(s) => {
                let start = match prev {
                    Some(p) if !gap => p,
                    _ => s.at,
                };
                out.push((s, start, gap || prev.is_none()));
                prev = Some(s.at);
                gap = false;
            }
        }
    }
    out
}

/// Buckets of at most `points` equal spans over the samples, none narrower than
/// twice `interval` (the recording's, so that jitter leaves no bucket empty) or
/// [`MIN_BUCKET_S`], merged; None where a bucket has no sample (a gap).
fn buckets(
    samples: &[&Sample],
    (from, to): (f64, f64),
    points: usize,
    interval: f64,
) -> (f64, Vec<f64>, Vec<Option<Sample>>) {
    let points = points.max(1);
    let width = ((to - from) / points as f64)
        .max(2.0 * interval)
        .max(MIN_BUCKET_S);
    let n = (((to - from) / width).ceil() as usize).clamp(1, points);
    let mut out: Vec<Option<Sample>> = vec![None; n];
    for s in samples {
        let i = (((s.at - from) / width).ceil() as usize)
            .saturating_sub(1)
            .min(n - 1);
        out[i] = Some(match out[i].take() {
            Some(a) if mergeable(&a, s) => merge(&a, s),
            // A counter reset inside a bucket: keep the later sample.
            _ => (*s).clone(),
        });
    }
    let at = (1..=n).map(|i| from + width * i as f64).collect();
    (width, at, out)
}

/// Analyses `h` (read from `file`) against `t`, with charts of at most `points` buckets.
pub fn analyse(h: &History, file: &str, t: &WorkerTargets, points: usize) -> HistoryMetrics {
    let sp = spans(h);
    let samples: Vec<&Sample> = sp.iter().map(|x| x.0).collect();
    let from = h
        .records
        .iter()
        .map(|r| match r {
            Record::Sample(s) => s.at,
            Record::Gap(g) => g.from,
        })
        .reduce(f64::min)
        .unwrap_or(h.header.created);
    let to = h
        .records
        .iter()
        .map(Record::end)
        .reduce(f64::max)
        .unwrap_or(from);
    let gaps: Vec<Gap> = h
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Gap(g) => Some(g.clone()),
            Record::Sample(_) => None,
        })
        .collect();
    let gap_s: f64 = gaps.iter().map(|g| (g.to - g.from).max(0.0)).sum();
    let processed = counter_growth(samples.iter().map(|s| s.processed));
    let failed = counter_growth(samples.iter().map(|s| s.failed));
    let first = samples.first();
    let last = samples.last();
    let (r0, r1) = (
        first.map(|s| s.retry).unwrap_or(0),
        last.map(|s| s.retry).unwrap_or(0),
    );
    let (t0, t1) = (
        first.map(|s| s.at).unwrap_or(from),
        last.map(|s| s.at).unwrap_or(to),
    );
    let totals = Totals {
        processed,
        failed,
        failed_pct: (processed > 0).then(|| failed as f64 * 100.0 / processed as f64),
        // Counters are cumulative: the jobs of a gap are counted, so the rate is
        // over the whole span from the first sample to the last.
        processed_per_s: if t1 > t0 {
            processed as f64 / (t1 - t0)
        } else {
            0.0
        },
        retry_first: r0,
        retry_last: r1,
        retry_growth_per_h: if t1 > t0 {
            (r1 as f64 - r0 as f64) * 3600.0 / (t1 - t0)
        } else {
            0.0
        },
        dead_first: first.map(|s| s.dead).unwrap_or(0),
        dead_last: last.map(|s| s.dead).unwrap_or(0),
    };
    let failed_all = failed_windows(&sp, t.failed_rate_pct);
    let mut names: Vec<String> = Vec::new();
    for s in &samples {
        for q in &s.queues {
            if !names.contains(&q.name) {
                names.push(q.name.clone());
            }
        }
    }
    names.sort();
    let queues = names
        .iter()
        .map(|n| queue_history(n, &sp, t.queue_latency_s))
        .collect();
    let series = series(&samples, (from, to), points, h.header.interval_s, &names);
    HistoryMetrics {
        file: file.to_string(),
        source: h.header.source.clone(),
        interval_s: h.header.interval_s,
        from,
        to,
        span_s: to - from,
        samples: samples.len() as u64,
        readings: samples.iter().map(|s| s.n.max(1) as u64).sum(),
        dropped_tail_bytes: h.dropped_tail,
        latency_target_s: t.queue_latency_s,
        failed_target_pct: t.failed_rate_pct,
        drain_target_s: t.drain_minutes * 60.0,
        gaps_total: gaps.len() as u64,
        gaps: gaps.into_iter().take(MAX_LISTED).collect(),
        gap_s,
        totals,
        failed_violations_total: failed_all.len() as u64,
        failed_violations: failed_all.into_iter().take(MAX_LISTED).collect(),
        queues,
        series,
    }
}

fn queue_history(name: &str, sp: &[(&Sample, f64, bool)], target: f64) -> QueueHistory {
    let q = |s: &Sample| s.queues.iter().find(|q| q.name == name).cloned();
    let lat_peak = |s: &Sample| q(s).map(|q| q.latency_peak_s()).unwrap_or(0.0);
    let all = periods(
        sp,
        |(s, start, _)| (*start, s.at, lat_peak(s)),
        |(s, _, _)| lat_peak(s) > target,
        |i| sp[i].2,
    );
    let over: f64 = sp
        .iter()
        .filter(|(s, _, _)| lat_peak(s) > target)
        .map(|(s, start, _)| s.at - start)
        .sum();
    let weight: f64 = sp
        .iter()
        .map(|(s, _, _)| s.n.max(1) as f64)
        .sum::<f64>()
        .max(1.0);
    let mean = sp
        .iter()
        .map(|(s, _, _)| q(s).map(|q| q.latency_s).unwrap_or(0.0) * s.n.max(1) as f64)
        .sum::<f64>()
        / weight;
    let last = sp.last().map(|x| x.0);
    let lastq = last.and_then(q);
    let depth_last = lastq.as_ref().map(|q| q.depth).unwrap_or(0);
    // The depth trend over the last window (not across a gap).
    let drain = match last {
        Some(l) => {
            let mut base = l;
            for (s, _, gap) in sp.iter().rev() {
                if l.at - s.at > DRAIN_WINDOW_S {
                    break;
                }
                base = s;
                if *gap {
                    break;
                }
            }
            let d0 = q(base).map(|q| q.depth).unwrap_or(0) as f64;
            let dt = l.at - base.at;
            let net = if dt > 0.0 {
                (depth_last as f64 - d0) / dt
            } else {
                0.0
            };
            Drain {
                net_per_s: net,
                drain_s: if depth_last == 0 {
                    Some(0.0)
                } else if net < 0.0 {
                    Some(depth_last as f64 / -net)
                } else {
                    None
                },
            }
        }
        None => Drain {
            net_per_s: 0.0,
            drain_s: Some(0.0),
        },
    };
    QueueHistory {
        name: name.to_string(),
        latency_mean_s: mean,
        latency_peak_s: sp.iter().map(|(s, _, _)| lat_peak(s)).fold(0.0, f64::max),
        depth_peak: sp
            .iter()
            .filter_map(|(s, _, _)| q(s).map(|q| q.depth_peak()))
            .max()
            .unwrap_or(0),
        depth_last,
        latency_last_s: lastq.map(|q| q.latency_s).unwrap_or(0.0),
        over_target_s: over,
        violations_total: all.len() as u64,
        violations: all.into_iter().take(MAX_LISTED).collect(),
        drain,
    }
}

/// Failed ÷ processed per window of [`FAILED_WINDOW_S`] (windows end at a gap);
/// the windows over `target_pct`, joined into periods.
fn failed_windows(sp: &[(&Sample, f64, bool)], target_pct: f64) -> Vec<Period> {
    // (from, to, failed %, whether a gap precedes it)
    let mut windows: Vec<(f64, f64, f64, bool)> = Vec::new();
    let mut start = 0;
    while start + 1 < sp.len() {
        let mut j = start;
        while j + 1 < sp.len() && !sp[j + 1].2 && sp[j + 1].0.at - sp[start].0.at <= FAILED_WINDOW_S
        {
            j += 1;
        }
        if j == start {
            if sp[start + 1].2 {
                start += 1;
                continue;
            }
            // The next sample is further than the window: the window is the two.
            j = start + 1;
        }
        let part = &sp[start..=j];
        let p = counter_growth(part.iter().map(|x| x.0.processed));
        let f = counter_growth(part.iter().map(|x| x.0.failed));
        if p > 0 {
            windows.push((
                sp[start].0.at,
                sp[j].0.at,
                f as f64 * 100.0 / p as f64,
                sp[start].2,
            ));
        }
        // The next window starts at this one's last sample.
        start = j;
    }
    periods(
        &windows,
        |w| (w.0, w.1, w.2),
        |w| w.2 > target_pct,
        |k| windows[k].3,
    )
}

fn series(
    samples: &[&Sample],
    span: (f64, f64),
    points: usize,
    interval: f64,
    names: &[String],
) -> SeriesSet {
    let (width, at, b) = buckets(samples, span, points, interval);
    let mut prev: Option<&Sample> = None;
    let mut processed = Vec::with_capacity(b.len());
    let mut failed = Vec::with_capacity(b.len());
    for s in &b {
        match (prev, s) {
            (Some(p), Some(s)) if mergeable(p, s) && s.at > p.at => {
                let dp = (s.processed - p.processed) as f64;
                processed.push(Some(dp / (s.at - p.at)));
                failed.push((dp > 0.0).then(|| (s.failed - p.failed) as f64 * 100.0 / dp));
            }
            _ => {
                processed.push(None);
                failed.push(None);
            }
        }
        if s.is_some() {
            prev = s.as_ref();
        }
    }
    let col = |f: &dyn Fn(&Sample) -> f64| -> Vec<Option<f64>> {
        b.iter().map(|s| s.as_ref().map(f)).collect()
    };
    let queues = names
        .iter()
        .map(|n| {
            let qf = |f: &dyn Fn(&powertune_redis::sidekiq::history::QueueSample) -> f64| {
                col(&|s: &Sample| s.queues.iter().find(|q| &q.name == n).map(f).unwrap_or(0.0))
            };
            QueueSeries {
                name: n.clone(),
                depth: qf(&|q| q.depth as f64),
                latency_s: qf(&|q| q.latency_s),
                latency_max_s: qf(&|q| q.latency_peak_s()),
            }
        })
        .collect();
    SeriesSet {
        bucket_s: width,
        at,
        processed_per_s: processed,
        failed_pct: failed,
        retry: col(&|s| s.retry as f64),
        busy: col(&|s| s.busy()),
        concurrency: col(&|s| s.concurrency() as f64),
        queues,
    }
}

/// The findings of a history: per queue latency periods and drain, the failed rate,
/// the retry set's growth.
pub fn judge(m: &HistoryMetrics, t: &WorkerTargets) -> Vec<Finding> {
    let mut out: Vec<Finding> = m.queues.iter().map(|q| latency(q, m, t)).collect();
    out.extend(
        m.queues
            .iter()
            .filter(|q| q.depth_last > 0)
            .map(|q| drain(q, m, t)),
    );
    out.push(failed(m, t));
    out.push(retry(m));
    out
}

/// Unix seconds as `2026-12-05 07:34:38Z` (empty when out of range).
pub fn stamp(at: f64) -> String {
    chrono::DateTime::from_timestamp(at as i64, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn when(p: &Period) -> String {
    format!("{} for {}", stamp(p.from), units::seconds(p.duration_s))
}

/// Over the target for longer than the drain time at once fails; shorter excursions
/// warn (a backlog must return to steady state within the drain time).
fn latency(q: &QueueHistory, m: &HistoryMetrics, t: &WorkerTargets) -> Finding {
    let longest = q
        .violations
        .iter()
        .map(|p| p.duration_s)
        .fold(0.0, f64::max);
    let v = if q.violations.is_empty() {
        Verdict::Pass
    } else if longest > m.drain_target_s {
        Verdict::Fail
    } else {
        Verdict::Warn
    };
    let listed: Vec<String> = q.violations.iter().take(3).map(when).collect();
    Finding::new("queues", "history_latency", q.name.clone(), v)
        .observed(Value::of(Quantity::seconds(q.latency_peak_s)).note("peak"))
        .target(Value::lt(Quantity::seconds(t.queue_latency_s)))
        .evidence(if q.violations_total == 0 {
            format!(
                "mean {} over {}; never over the target",
                units::seconds(q.latency_mean_s),
                units::seconds(m.span_s)
            )
        } else {
            format!(
                "over the target {} time(s) for {} in all (longest {}): {}{}; mean {}",
                q.violations_total,
                units::seconds(q.over_target_s),
                units::seconds(longest),
                listed.join(", "),
                if q.violations_total > 3 { ", …" } else { "" },
                units::seconds(q.latency_mean_s)
            )
        })
        .action(if v == Verdict::Pass {
            String::new()
        } else {
            format!(
                "capacity issue: bump WORKER_CONCURRENCY or add an instance (`powertune queues plan --history {}` sizes it), then verify the queue returns to steady state within {}",
                m.file,
                units::seconds(m.drain_target_s)
            )
        })
}

fn drain(q: &QueueHistory, m: &HistoryMetrics, t: &WorkerTargets) -> Finding {
    let v = match q.drain.drain_s {
        Some(d) if d <= m.drain_target_s => Verdict::Pass,
        Some(_) => Verdict::Warn,
        None if q.depth_last >= t.backlog_enqueued => Verdict::Fail,
        None => Verdict::Warn,
    };
    let observed = match q.drain.drain_s {
        Some(d) => Value::of(Quantity::seconds(d)).note("estimated"),
        None => Value::of(Quantity::per_second(q.drain.net_per_s)).note("not draining"),
    };
    Finding::new("queues", "history_drain", q.name.clone(), v)
        .observed(observed)
        .target(Value::le(Quantity::seconds(m.drain_target_s)))
        .evidence(format!(
            "{} jobs at the end; depth changing {}/s over the last {}",
            q.depth_last,
            units::count((q.drain.net_per_s * 100.0).round() / 100.0),
            units::seconds(DRAIN_WINDOW_S)
        ))
        .action(if v == Verdict::Pass {
            String::new()
        } else {
            "the queue is not returning to steady state: bump concurrency or add an instance"
                .to_string()
        })
}

fn failed(m: &HistoryMetrics, t: &WorkerTargets) -> Finding {
    let pct = m.totals.failed_pct;
    let v = match pct {
        Some(p) if p >= t.failed_rate_pct => Verdict::Fail,
        Some(_) if m.failed_violations_total > 0 => Verdict::Warn,
        _ => Verdict::Pass,
    };
    let listed: Vec<String> = m.failed_violations.iter().take(3).map(when).collect();
    Finding::new("queues", "history_failed_rate", "all queues", v)
        .observed(match pct {
            Some(p) => Value::of(Quantity::percent(p)),
            None => Value::of(Quantity::percent(0.0)).note("nothing processed"),
        })
        .target(Value::lt(Quantity::percent(t.failed_rate_pct)))
        .evidence(format!(
            "{} failed of {} processed; {} window(s) of {} over the target{}{}",
            m.totals.failed,
            m.totals.processed,
            m.failed_violations_total,
            units::seconds(FAILED_WINDOW_S),
            if listed.is_empty() { "" } else { ": " },
            listed.join(", ")
        ))
        .action(if v == Verdict::Pass {
            String::new()
        } else {
            "read the retry set's top error classes (`powertune queues`) and fix the failing job or its dependency".to_string()
        })
}

fn retry(m: &HistoryMetrics) -> Finding {
    let tt = &m.totals;
    let v = if tt.retry_last > tt.retry_first {
        Verdict::Warn
    } else {
        Verdict::Pass
    };
    Finding::new("queues", "history_retry_growth", "retry set", v)
        .observed(Value::of(Quantity::count(tt.retry_growth_per_h)).note("per hour"))
        .target(Value::le(Quantity::count(0.0)))
        .evidence(format!(
            "retry set {} → {} jobs, dead set {} → {}",
            tt.retry_first, tt.retry_last, tt.dead_first, tt.dead_last
        ))
        .action(if v == Verdict::Pass {
            String::new()
        } else {
            "retries accumulate faster than they succeed: read the top error classes in the retry set".to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: f64) -> Sample {
        Sample {
            at: t,
            n: 1,
            queues: vec![],
            processes: vec![],
            processed: t as u64,
            failed: 0,
            retry: 0,
            dead: 0,
        }
    }

    #[test]
    fn buckets_are_never_narrower_than_the_interval_allows() {
        // Every 10 s with jitter: no empty bucket, Σn kept.
        let s: Vec<Sample> = (0..100)
            .map(|i| at(i as f64 * 10.0 + if i % 2 == 0 { 0.9 } else { -0.9 }))
            .collect();
        let r: Vec<&Sample> = s.iter().collect();
        let (w, x, b) = buckets(&r, (r[0].at, r[99].at), 500, 10.0);
        assert!(w >= 20.0);
        assert_eq!(x.len(), b.len());
        assert!(b.iter().all(Option::is_some));
        assert_eq!(b.iter().flatten().map(|s| s.n).sum::<u32>(), 100);
        // Few points: wide buckets.
        let (w, _, b) = buckets(&r, (r[0].at, r[99].at), 10, 10.0);
        assert!(w > 90.0 && b.len() == 10);
    }
}
