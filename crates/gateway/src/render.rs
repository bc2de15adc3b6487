//! The terminal section of `powertune gateway status`, shown above the findings.

use crate::snapshot::StatusSnapshot;
use powertune_core::report::{table, Style};

/// The terminal section of `powertune gateway status`: calls, overhead and retries,
/// then a table of credentials and one of series; `style` bolds the headers.
pub fn render(s: &StatusSnapshot, style: Style) -> String {
    let mut out = format!(
        "{} calls in {:.0}s; gateway overhead p50 {:.3}ms p99 {:.3}ms; retries by depth {:?}; {} answered 503 (all open)\n\n",
        s.calls, s.uptime_s, s.overhead_ms.p50, s.overhead_ms.p99, s.retries_by_depth, s.rejected_all_open
    );
    let mut rows = vec![[
        "provider",
        "credential",
        "state",
        "weight",
        "rpm",
        "fails",
        "trips",
    ]
    .iter()
    .map(|x| style.bold(x))
    .collect::<Vec<_>>()];
    for c in &s.credentials {
        let state = match c.open_for_s {
            Some(secs) => format!("{} ({secs:.0}s)", c.state),
            None => c.state.clone(),
        };
        rows.push(vec![
            c.provider.clone(),
            c.credential.clone(),
            state,
            c.weight.to_string(),
            c.rpm.map_or("-".into(), |r| r.to_string()),
            c.consecutive_failures.to_string(),
            c.trips.to_string(),
        ]);
    }
    out.push_str(&table(&rows));
    if !s.series.is_empty() {
        out.push('\n');
        let mut rows = vec![[
            "provider/credential",
            "model",
            "ok",
            "failed",
            "p50 ms",
            "p95 ms",
            "ttft p95",
            "tokens in/out",
        ]
        .iter()
        .map(|x| style.bold(x))
        .collect::<Vec<_>>()];
        for r in &s.series {
            let ok = r.requests.get("ok").copied().unwrap_or(0);
            let failed: u64 = r
                .requests
                .iter()
                .filter(|(k, _)| k.as_str() != "ok")
                .map(|(_, v)| v)
                .sum();
            rows.push(vec![
                format!("{}/{}", r.provider, r.credential),
                r.model.clone(),
                ok.to_string(),
                failed.to_string(),
                format!("{:.1}", r.latency_ms.p50),
                format!("{:.1}", r.latency_ms.p95),
                format!("{:.1}", r.ttft_ms.p95),
                format!("{}/{}", r.tokens_in, r.tokens_out),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}
