//! Text renderings: the route table of `apm analyze` / `apm report` and the
//! slow-endpoint view of `apm endpoint` (breakdown, detections, span trees).

use crate::summary::{EndpointDetail, Summary};
use powertune_core::report::{table, truncate};

fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}s", v / 1000.0)
    } else {
        format!("{v:.1}ms")
    }
}

/// Routes with their percentiles and breakdown shares, slowest P95 first.
pub fn routes_table(s: &Summary, limit: usize) -> String {
    let mut out = format!(
        "spans {} received, {} rejected; traces {} analysed ({} open)\n\n",
        s.ingest.spans_received,
        s.ingest.spans_rejected,
        s.ingest.traces_analyzed,
        s.ingest.open_traces
    );
    if s.routes.is_empty() {
        out.push_str("no requests in the window\n");
        return out;
    }
    let mut routes: Vec<_> = s.routes.iter().collect();
    routes.sort_by(|a, b| b.latency.p95_ms.total_cmp(&a.latency.p95_ms));
    let mut rows = vec![[
        "route", "type", "count", "err", "p50", "p95", "p99", "db", "http", "app",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for r in routes.iter().take(limit) {
        let (d, h, a) = r.breakdown.shares();
        rows.push(vec![
            truncate(&r.route, 50),
            r.endpoint_type.key().to_string(),
            r.latency.count.to_string(),
            r.latency.errors.to_string(),
            ms(r.latency.p50_ms),
            ms(r.latency.p95_ms),
            ms(r.latency.p99_ms),
            format!("{d:.0}%"),
            format!("{h:.0}%"),
            format!("{a:.0}%"),
        ]);
    }
    out.push_str(&table(&rows));
    if routes.len() > limit {
        out.push_str(&format!("… and {} more routes\n", routes.len() - limit));
    }
    out
}

/// The slow-endpoint procedure for one route.
pub fn endpoint(d: &EndpointDetail) -> String {
    let r = &d.route;
    let l = &r.latency;
    let (db, http, app) = r.breakdown.shares();
    let n = l.count.max(1) as f64;
    let mut out = format!(
        "{}  ({})\n  requests {}  errors {}  p50 {}  p95 {}  p99 {}  max {}\n\
         breakdown (mean per request): DB {} ({db:.0}%)  outgoing HTTP/provider {} ({http:.0}%)  app {} ({app:.0}%)\n\
         look first at: {}\n",
        r.route,
        r.endpoint_type.title(),
        l.count,
        l.errors,
        ms(l.p50_ms),
        ms(l.p95_ms),
        ms(l.p99_ms),
        ms(l.max_ms),
        ms(r.breakdown.db_ms / n),
        ms(r.breakdown.http_ms / n),
        ms(r.breakdown.app_ms / n),
        r.breakdown.dominant(),
    );
    if !d.detections.is_empty() {
        out.push_str("\ndetections:\n");
        for x in &d.detections {
            out.push_str(&format!(
                "  {:<20} {}× max {}  {}  (trace {})\n",
                x.kind.key(),
                x.occurrences,
                ms(x.max_ms),
                truncate(&x.subject, 90),
                x.example_trace
            ));
        }
    }
    for ex in &d.slowest {
        out.push_str(&format!(
            "\ntrace {}  {}  (DB {}, HTTP {}, app {})\n",
            ex.trace_id,
            ms(ex.duration_ms),
            ms(ex.breakdown.db_ms),
            ms(ex.breakdown.http_ms),
            ms(ex.breakdown.app_ms)
        ));
        for s in &ex.spans {
            let indent = "  ".repeat(s.depth as usize + 1);
            out.push_str(&format!(
                "{indent}{:>9} +{:<9} {} [{}] {}{}\n",
                ms(s.duration_ms),
                ms(s.offset_ms),
                truncate(&s.name, 60),
                s.category,
                truncate(&s.detail, 90),
                if s.error { "  ERROR" } else { "" }
            ));
        }
        if ex.truncated > 0 {
            out.push_str(&format!("  … {} more spans\n", ex.truncated));
        }
    }
    out
}
