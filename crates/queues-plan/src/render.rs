//! The text section of `queues plan`: the load per queue, the recommendation, the
//! predictions with the reasons a queue starves, and the connection budget.

use crate::plan::PlanMetrics;
use powertune_core::report::table;
use powertune_core::units;

fn spec(queues: &[(String, u32)], strict: bool) -> String {
    queues
        .iter()
        .map(|(q, w)| {
            if strict {
                q.clone()
            } else {
                format!("{q},{w}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renders the plan; `running_from` says where the running weights came from.
pub fn render(m: &PlanMetrics, running_from: &str) -> String {
    let l = &m.load;
    let mut out = format!(
        "Load over {} of {} ({} samples): processed {}, failed {}, busy {} of {} threads\n",
        units::seconds(l.window_s),
        l.source,
        l.samples,
        units::rate(l.processed_per_s),
        units::rate(l.failed_per_s),
        units::count((l.busy * 10.0).round() / 10.0),
        units::count(l.concurrency.round())
    );
    let mut rows = vec![vec![
        "queue".to_string(),
        "arrivals".into(),
        "run time".into(),
        "erlangs".into(),
        "threads alone".into(),
        "depth".into(),
        "latency".into(),
    ]];
    for (q, s) in l.queues.iter().zip(&m.sizing) {
        rows.push(vec![
            q.name.clone(),
            units::rate(q.arrival_per_s),
            q.service_s
                .map(units::seconds)
                .unwrap_or_else(|| "unknown".into()),
            format!("{:.2}", s.erlangs),
            s.threads
                .map(|t| t.to_string())
                .unwrap_or_else(|| "> 10000".into()),
            q.depth_last.to_string(),
            units::seconds(q.latency_last_s),
        ]);
    }
    out.push_str(&table(&rows));
    out.push_str(&format!(
        "\nRecommended (P(wait > {}) ≤ {}, at most {} busy; {}–{} threads per process):\n",
        units::seconds(m.latency_target_s),
        units::fraction(m.tail),
        units::fraction(m.utilisation_target),
        5,
        25
    ));
    for p in &m.recommended {
        out.push_str(&format!(
            "  {}: {} — {} threads → {} process(es) × {} threads\n",
            p.role,
            spec(&p.queues, p.strict),
            p.threads_needed,
            p.processes,
            p.threads_per_process
        ));
    }
    out.push_str("\nPredicted by simulating Sidekiq's fetch");
    if let Some(p) = m.predictions.first() {
        out.push_str(&format!(
            " ({} per configuration)",
            units::seconds(p.outcome.measured_s)
        ));
    }
    out.push_str(&format!(
        ":\n  running configuration: weights {running_from}\n"
    ));
    let mut rows = vec![vec![
        "config".to_string(),
        "threads".into(),
        "queue".into(),
        "mean latency".into(),
        "mean wait".into(),
        "p95 wait".into(),
        "over target".into(),
        "state".into(),
    ]];
    for p in &m.predictions {
        for q in &p.outcome.queues {
            rows.push(vec![
                p.config.clone(),
                p.threads.to_string(),
                q.name.clone(),
                units::seconds(q.mean_latency_s),
                if q.started == 0 {
                    "none started".to_string()
                } else {
                    units::seconds(q.mean_wait_s)
                },
                if q.started == 0 {
                    "-".to_string()
                } else {
                    units::seconds(q.p95_wait_s)
                },
                units::fraction(q.over_target),
                if q.starving { "STARVING" } else { "ok" }.to_string(),
            ]);
        }
    }
    out.push_str(&table(&rows));
    for p in &m.predictions {
        for e in &p.explanations {
            out.push_str(&format!("  {}: {e}\n", p.config));
        }
    }
    out.push_str("\nConnections (one per Sidekiq thread and web thread):\n");
    for p in &m.predictions {
        let b = &p.connections;
        out.push_str(&format!(
            "  {}: {} Sidekiq + {} web = {}{}\n",
            p.config,
            b.sidekiq,
            b.web,
            b.total,
            match (b.available, b.max_connections) {
                (Some(a), Some(mx)) => format!(" of {a} usable (max_connections {mx})"),
                _ => " (max_connections unknown: pass --db)".to_string(),
            }
        ));
    }
    out.push_str(
        "\nModel: Erlang C (M/M/c) sizing assumes Poisson arrivals and exponential run times; \
         heavy-tailed jobs wait longer than it says. Per-queue rates come from Little's law over \
         busy threads (see docs/queues.md).\n",
    );
    out
}
