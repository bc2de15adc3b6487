//! The snapshot as tables (queues, processes, retries, dead, stats, metrics) and the
//! live view of `--watch`.

use super::snapshot::{JobMetric, SidekiqSnapshot, WatchDelta};
use super::weights::{poll_first, weights_in_force};
use crate::units::{human_bytes, human_secs};
use powertune_core::report::{table, truncate};
use powertune_core::targets::WorkerTargets;
use std::collections::BTreeMap;

/// The snapshot as tables: queues, processes, retries, dead, stats, metrics.
pub fn render(s: &SidekiqSnapshot, t: &WorkerTargets) -> String {
    let (weights, source) = weights_in_force(s, t);
    let names: Vec<String> = s.queues.iter().map(|q| q.name.clone()).collect();
    // Queues a process polls, in its order; with no process, every queue.
    let order: Vec<String> = match s.processes.first() {
        Some(p) => p.queues.clone(),
        None => names.clone(),
    };
    let probs: BTreeMap<String, f64> = poll_first(&order, &weights).into_iter().collect();
    let mut out = String::new();
    let mut rows = vec![vec![
        "queue".to_string(),
        "size".into(),
        "latency".into(),
        "weight".into(),
        "polled first".into(),
        "oldest job".into(),
    ]];
    for q in &s.queues {
        rows.push(vec![
            q.name.clone(),
            q.size.to_string(),
            human_secs(q.latency_s),
            weights
                .get(&q.name)
                .map(|w| w.to_string())
                .unwrap_or_else(|| "-".into()),
            probs
                .get(&q.name)
                .map(|p| format!("{:.0}%", p * 100.0))
                .unwrap_or_else(|| "not polled".into()),
            q.oldest_class.clone().unwrap_or_default(),
        ]);
    }
    out.push_str(&format!(
        "Queues ({} enqueued, {} scheduled; weights: {source})\n",
        s.enqueued(),
        s.scheduled_size
    ));
    out.push_str(&table(&rows));
    if s.queues_not_read > 0 {
        out.push_str(&format!("({} more queues not read)\n", s.queues_not_read));
    }
    out.push('\n');
    let mut rows = vec![vec![
        "process".to_string(),
        "version".into(),
        "busy".into(),
        "concurrency".into(),
        "beat".into(),
        "rss".into(),
        "queues".into(),
    ]];
    for p in &s.processes {
        rows.push(vec![
            truncate(&p.identity, 40),
            p.version.clone(),
            p.busy.to_string(),
            p.concurrency.to_string(),
            format!(
                "{} ago{}",
                human_secs(s.now - p.beat),
                if p.quiet { " (quiet)" } else { "" }
            ),
            human_bytes(p.rss_kb * 1024),
            p.queues.join(","),
        ]);
    }
    out.push_str(&format!(
        "Processes ({}, {}/{} busy)\n",
        s.processes.len(),
        s.busy(),
        s.concurrency()
    ));
    out.push_str(&table(&rows));
    out.push('\n');
    out.push_str(&format!(
        "Retries: {} (retry_count distribution{}: {})\n",
        s.retry.size,
        if s.retry.sampled < s.retry.size {
            format!(" from a sample of {}", s.retry.sampled)
        } else {
            String::new()
        },
        s.retry
            .depth
            .iter()
            .map(|(d, n)| format!("{d}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    for (c, n) in &s.retry.top_classes {
        out.push_str(&format!("  class {c} ×{n}\n"));
    }
    for (c, n) in &s.retry.top_errors {
        out.push_str(&format!("  error {c} ×{n}\n"));
    }
    out.push_str(&format!("Dead: {}\n", s.dead_size));
    for d in &s.dead_newest {
        out.push_str(&format!(
            "  {} {}: {}\n",
            d.class, d.error_class, d.error_message
        ));
    }
    out.push_str(&format!(
        "Stats: processed {}, failed {}\n",
        s.processed, s.failed
    ));
    for d in &s.days {
        out.push_str(&format!(
            "  {} processed {} failed {}\n",
            d.date, d.processed, d.failed
        ));
    }
    if let Some(m) = &s.metrics {
        let mut rows = vec![vec![
            "job class".to_string(),
            "runs".into(),
            "failed".into(),
            "avg".into(),
        ]];
        let mut sorted: Vec<&JobMetric> = m.iter().collect();
        sorted.sort_by_key(|b| std::cmp::Reverse(b.total_ms));
        for j in sorted.iter().take(15) {
            rows.push(vec![
                j.class.clone(),
                j.processed.to_string(),
                j.failed.to_string(),
                j.avg_s().map(human_secs).unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&format!("\nJob metrics (last {} min)\n", s.metrics_minutes));
        out.push_str(&table(&rows));
    }
    out
}

/// The live view as text.
pub fn render_delta(d: &WatchDelta) -> String {
    let mut rows = vec![vec![
        "queue".to_string(),
        "size".into(),
        "latency".into(),
        "net/s".into(),
        "drain ETA".into(),
    ]];
    for r in &d.rows {
        rows.push(vec![
            r.queue.clone(),
            r.size.to_string(),
            human_secs(r.latency_s),
            format!("{:+.1}", r.net_per_s),
            r.eta_s.map(human_secs).unwrap_or_else(|| "-".into()),
        ]);
    }
    format!(
        "processed {:.1}/s  failed {:.1}/s  enqueued {:.1}/s  retry set {:+}\n{}",
        d.processed_per_s,
        d.failed_per_s,
        d.enqueued_per_s,
        d.retry_change,
        table(&rows)
    )
}

/// One `--watch` interval as printed: the seconds since the watch began, then the
/// live view.
pub fn render_tick(elapsed_s: f64, d: &WatchDelta) -> String {
    format!("t+{elapsed_s:.0}s\n{}", render_delta(d))
}
