//! Text renderings: the route table of `apm analyze` / `apm report` and the
//! slow-endpoint view of `apm endpoint` (breakdown, detections, span trees).

use crate::snapshot::{EndpointDetail, Summary};
use powertune_core::report::{table, truncate};
use powertune_core::units::{self, ms};

/// A share of time, to the whole percent: `70%`.
fn share(pct: f64) -> String {
    units::percent(pct.round())
}

/// What the configured bounds cut, when they cut anything: spans dropped past
/// `max_spans_per_trace`, traces analysed early, keys folded into `(other)`.
fn bounds_line(i: &crate::snapshot::IngestStats) -> Option<String> {
    let mut parts = Vec::new();
    if i.spans_dropped > 0 {
        parts.push(format!(
            "{} span(s) dropped past window.max_spans_per_trace",
            i.spans_dropped
        ));
    }
    if i.traces_forced > 0 {
        parts.push(format!(
            "{} trace(s) analysed early (window.max_spans / max_open_traces)",
            i.traces_forced
        ));
    }
    if i.keys_overflowed > 0 {
        parts.push(format!(
            "{} entries folded into {} (window.max_keys)",
            i.keys_overflowed,
            crate::engine::OTHER
        ));
    }
    if parts.is_empty() {
        None
    } else {
        Some(format!("bounds: {}\n\n", parts.join("; ")))
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
    if let Some(line) = bounds_line(&s.ingest) {
        out.push_str(&line);
    }
    out.push_str(&cache_table(&s.cache));
    out.push_str(&providers_table(s));
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
            share(d),
            share(h),
            share(a),
        ]);
    }
    out.push_str(&table(&rows));
    if routes.len() > limit {
        out.push_str(&format!("… and {} more routes\n", routes.len() - limit));
    }
    out
}

/// Provider calls per provider/model: P95, time to first chunk, tokens, retries,
/// how many went through the gateway; empty without provider calls.
pub fn providers_table(s: &Summary) -> String {
    if s.providers.is_empty() {
        return String::new();
    }
    let mut rows = vec![[
        "provider/model",
        "calls",
        "err",
        "p50",
        "p95",
        "ttft p95",
        "tokens in/out",
        "retries",
        "via gateway",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for p in &s.providers {
        let l = &p.latency;
        rows.push(vec![
            truncate(&p.key, 50),
            l.count.to_string(),
            l.errors.to_string(),
            ms(l.p50_ms),
            ms(l.p95_ms),
            p.ttft
                .as_ref()
                .map_or_else(|| "-".to_string(), |t| ms(t.p95_ms)),
            format!("{}/{}", p.input_tokens, p.output_tokens),
            p.retries.to_string(),
            p.via_gateway.to_string(),
        ]);
    }
    let mut out = table(&rows);
    out.push('\n');
    out
}

/// Cache hit rates per cache type (from cache spans), with the types too thin to
/// judge named; empty when the window has no cache spans.
pub fn cache_table(c: &crate::snapshot::CacheSummary) -> String {
    use crate::snapshot::hit_rate_pct;
    if c.lookups == 0 {
        return String::new();
    }
    let mut rows = vec![["cache type", "hits", "lookups", "hit rate", "keys"]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
    for t in &c.types {
        rows.push(vec![
            t.cache_type.clone(),
            t.hits.to_string(),
            t.lookups.to_string(),
            units::percent(hit_rate_pct(t.hits, t.lookups)),
            truncate(&t.pattern, 40),
        ]);
    }
    rows.push(vec![
        "(overall)".to_string(),
        c.hits.to_string(),
        c.lookups.to_string(),
        units::percent(hit_rate_pct(c.hits, c.lookups)),
        String::new(),
    ]);
    let mut out = table(&rows);
    let thin = crate::judge::not_judged(c);
    if !thin.is_empty() {
        out.push_str(&format!(
            "not judged (fewer than {} lookups, cache.min_lookups): {}\n",
            c.min_lookups,
            thin.join(", ")
        ));
    }
    out.push('\n');
    out
}

fn span_line(out: &mut String, s: &crate::snapshot::SpanNode, extra_depth: u32) {
    let indent = "  ".repeat((s.depth + extra_depth) as usize + 1);
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

/// The slow-endpoint procedure for one route.
pub fn endpoint(d: &EndpointDetail) -> String {
    let r = &d.route;
    let l = &r.latency;
    let (db, http, app) = r.breakdown.shares();
    let n = l.count.max(1) as f64;
    let mut out = format!(
        "{}  ({})\n  requests {}  errors {}  p50 {}  p95 {}  p99 {}  max {}\n\
         breakdown (mean per request): DB {} ({})  outgoing HTTP/provider {} ({})  app {} ({})\n\
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
        share(db),
        ms(r.breakdown.http_ms / n),
        share(http),
        ms(r.breakdown.app_ms / n),
        share(app),
        r.breakdown.dominant(),
    );
    if !l.error_traces.is_empty() {
        out.push_str(&format!(
            "failing traces (latest): {}\n",
            l.error_traces.join(", ")
        ));
    }
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
    if !d.linked_jobs.is_empty() {
        out.push_str("\njobs enqueued by this route (span links):\n");
        for j in &d.linked_jobs {
            out.push_str(&format!(
                "  {:<40} {}×  errors {}  avg {}  p95 {}  max {}\n",
                truncate(&j.class, 40),
                j.latency.count,
                j.latency.errors,
                ms(j.latency.avg_ms),
                ms(j.latency.p95_ms),
                ms(j.latency.max_ms)
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
            span_line(&mut out, s, 0);
            for l in ex.linked.iter().filter(|l| l.from_span_id == s.span_id) {
                let indent = "  ".repeat(s.depth as usize + 2);
                out.push_str(&format!(
                    "{indent}↳ linked job trace {}  {}  {}{}\n",
                    l.trace_id,
                    truncate(&l.class, 60),
                    ms(l.duration_ms),
                    if l.error { "  ERROR" } else { "" }
                ));
                for j in &l.spans {
                    span_line(&mut out, j, s.depth + 2);
                }
                if l.truncated > 0 {
                    out.push_str(&format!("{indent}  … {} more spans\n", l.truncated));
                }
            }
        }
        if ex.truncated > 0 {
            out.push_str(&format!("  … {} more spans\n", ex.truncated));
        }
    }
    out
}
