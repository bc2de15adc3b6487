//! The text section of `queues history`: the span, gaps, totals, and per queue its
//! latency, the periods over the target and the drain estimate.

use crate::history::{stamp, HistoryMetrics};
use powertune_core::report::table;
use powertune_core::units;

pub fn render(m: &HistoryMetrics) -> String {
    let t = &m.totals;
    let mut out = format!(
        "History of {} from {} to {} ({}): {} samples holding {} readings, {} gap(s) totalling {}\n",
        m.source,
        stamp(m.from),
        stamp(m.to),
        units::seconds(m.span_s),
        m.samples,
        m.readings,
        m.gaps_total,
        units::seconds(m.gap_s)
    );
    if m.dropped_tail_bytes > 0 {
        out.push_str(&format!(
            "An interrupted last write ({}) was ignored.\n",
            units::bytes(m.dropped_tail_bytes)
        ));
    }
    out.push_str(&format!(
        "Processed {} ({}), failed {} ({}), retry set {} → {}, dead set {} → {}\n\n",
        t.processed,
        units::rate(t.processed_per_s),
        t.failed,
        t.failed_pct
            .map(units::percent)
            .unwrap_or_else(|| "-".into()),
        t.retry_first,
        t.retry_last,
        t.dead_first,
        t.dead_last
    ));
    let mut rows = vec![vec![
        "queue".to_string(),
        "mean latency".into(),
        "peak".into(),
        "over target".into(),
        "periods".into(),
        "peak depth".into(),
        "depth now".into(),
        "drains in".into(),
    ]];
    for q in &m.queues {
        rows.push(vec![
            q.name.clone(),
            units::seconds(q.latency_mean_s),
            units::seconds(q.latency_peak_s),
            units::seconds(q.over_target_s),
            q.violations_total.to_string(),
            q.depth_peak.to_string(),
            q.depth_last.to_string(),
            match q.drain.drain_s {
                Some(d) => units::seconds(d),
                None => format!(
                    "not draining (+{}/s)",
                    units::count((q.drain.net_per_s * 100.0).round() / 100.0)
                ),
            },
        ]);
    }
    out.push_str(&table(&rows));
    for q in m.queues.iter().filter(|q| !q.violations.is_empty()) {
        out.push_str(&format!(
            "\n`{}` over {} of latency:\n",
            q.name,
            units::seconds(m.latency_target_s)
        ));
        for p in q.violations.iter().take(10) {
            out.push_str(&format!(
                "  {} → {} ({}), peak {}\n",
                stamp(p.from),
                stamp(p.to),
                units::seconds(p.duration_s),
                units::seconds(p.peak)
            ));
        }
        if q.violations_total > 10 {
            out.push_str(&format!("  … {} more\n", q.violations_total - 10));
        }
    }
    for g in m.gaps.iter().take(10) {
        out.push_str(&format!(
            "gap {} → {} ({}): {}\n",
            stamp(g.from),
            stamp(g.to),
            units::seconds(g.to - g.from),
            g.reason
        ));
    }
    out
}
