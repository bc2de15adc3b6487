//! The analysis of one finished trace: the layer breakdown of each entry span and
//! the detectors (slow requests, jobs, queries, missions and agents; N+1 and
//! consecutive queries among siblings), as plain results the engine then stores.

use super::aggregate::{DetAgg, DetKey};
use super::hash::IdMap;
use crate::config::EngineConfig;
use crate::model::{Kind, SpanClass, SpanRec};
use crate::normalize::text_glob;
use crate::snapshot::{Breakdown, DetectionKind};
use powertune_core::EndpointType;
use std::collections::HashMap;

/// Route of spans that ran under no request or job span.
pub const NO_ENTRY: &str = "(no entry span)";

/// What the analysis of one trace produced, before it goes into a bucket.
#[derive(Default)]
pub(super) struct TraceResult {
    pub(super) requests: Vec<(String, EndpointType, u64, bool, Breakdown)>,
    pub(super) jobs: Vec<(String, u64, bool)>,
    pub(super) providers: Vec<ProviderCall>,
    pub(super) detections: Vec<(DetKey, DetAgg)>,
    pub(super) examples: Vec<(String, usize, Breakdown)>,
    /// Job entries with span links: (entry index, class, duration, error).
    pub(super) linked_jobs: Vec<(usize, String, u64, bool)>,
    /// PRODUCER spans (enqueues) under a request: (span id, route).
    pub(super) producers: Vec<(u64, String)>,
    /// The route of the trace's first request, for links to any of its spans.
    pub(super) first_route: Option<String>,
    /// Cache lookups: (cache type, hit).
    pub(super) caches: Vec<(String, bool)>,
}

/// One provider call (a provider span under no other provider span; provider spans
/// under it are its attempts).
pub(super) struct ProviderCall {
    pub(super) key: String,
    pub(super) ns: u64,
    pub(super) error: bool,
    pub(super) gateway: bool,
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
    pub(super) ttft_ms: Option<f64>,
    pub(super) retries: u64,
}

/// The call `i` (a provider span): its attempts are the provider spans right
/// under it; retries are what the span reports, else its only attempt's, else the
/// attempts beyond the first; tokens are the span's own, else the attempts' sum; the
/// time to the first chunk is the span's own, else its only attempt's.
fn provider_call(spans: &[SpanRec], children: &[Vec<usize>], i: usize) -> Option<ProviderCall> {
    let SpanClass::Provider {
        provider,
        model,
        gateway,
        input_tokens,
        output_tokens,
        ttft_ms,
        retries,
    } = &spans[i].class
    else {
        return None;
    };
    let attempts: Vec<&SpanClass> = children[i]
        .iter()
        .map(|&c| &spans[c].class)
        .filter(|c| matches!(c, SpanClass::Provider { .. }))
        .collect();
    let sum =
        |f: fn(&SpanClass) -> Option<u64>| -> u64 { attempts.iter().filter_map(|c| f(c)).sum() };
    let tokens_in = |c: &SpanClass| match c {
        SpanClass::Provider { input_tokens, .. } => *input_tokens,
        _ => None,
    };
    let tokens_out = |c: &SpanClass| match c {
        SpanClass::Provider { output_tokens, .. } => *output_tokens,
        _ => None,
    };
    let via = |c: &&SpanClass| matches!(c, SpanClass::Provider { gateway: true, .. });
    let only = match attempts.as_slice() {
        [SpanClass::Provider {
            ttft_ms, retries, ..
        }] => Some((*ttft_ms, *retries)),
        _ => None,
    };
    Some(ProviderCall {
        key: format!("{provider}/{model}"),
        ns: spans[i].duration_ns(),
        error: spans[i].error,
        gateway: *gateway || attempts.iter().any(via),
        input_tokens: input_tokens.unwrap_or_else(|| sum(tokens_in)),
        output_tokens: output_tokens.unwrap_or_else(|| sum(tokens_out)),
        // One attempt (an application's client span over the gateway's call span):
        // the attempt's first chunk and retries are the call's.
        ttft_ms: ttft_ms.or(only.and_then(|(t, _)| t)),
        retries: retries
            .or(only.and_then(|(_, r)| r))
            .unwrap_or_else(|| attempts.len().saturating_sub(1) as u64),
    })
}

/// Time of `entry` spent in DB spans, in outgoing HTTP/provider spans (DB wins
/// where both overlap) and in neither (application code), over the entry's own
/// interval: the three add up to its duration exactly.
pub fn breakdown(entry: &SpanRec, parts: &[&SpanRec]) -> Breakdown {
    let (s0, e0) = (entry.start_ns, entry.end_ns);
    // events: (time, layer 0=db 1=http, +1/-1)
    let mut ev: Vec<(u64, usize, i32)> = Vec::with_capacity(parts.len() * 2);
    for p in parts {
        let layer = match p.class {
            SpanClass::Db { .. } => 0,
            SpanClass::Http { .. } | SpanClass::Provider { .. } => 1,
            _ => continue,
        };
        let (s, e) = (p.start_ns.max(s0), p.end_ns.min(e0));
        if s < e {
            ev.push((s, layer, 1));
            ev.push((e, layer, -1));
        }
    }
    ev.sort_unstable();
    let mut depth = [0i32; 2];
    let mut acc = [0u64; 3];
    let mut t = s0;
    for (at, layer, d) in ev {
        let slice = at.saturating_sub(t);
        let l = if depth[0] > 0 {
            0
        } else if depth[1] > 0 {
            1
        } else {
            2
        };
        acc[l] += slice;
        t = at.max(t);
        depth[layer] += d;
    }
    acc[2] += e0.saturating_sub(t);
    Breakdown {
        db_ms: acc[0] as f64 / 1e6,
        http_ms: acc[1] as f64 / 1e6,
        app_ms: acc[2] as f64 / 1e6,
    }
}

fn matches_any(globs: &[String], name: &str) -> bool {
    globs.iter().any(|g| text_glob(g, name))
}

fn is_sql_query(s: &SpanRec) -> bool {
    matches!(
        s.class,
        SpanClass::Db {
            sql: true,
            cached: false,
            ..
        }
    )
}

fn statement(s: &SpanRec) -> &str {
    match &s.class {
        SpanClass::Db { statement, .. } => statement,
        _ => "",
    }
}

/// Analyses one finished trace.
pub(super) fn analyze_trace(
    cfg: &EngineConfig,
    types: &mut HashMap<String, EndpointType>,
    spans: &[SpanRec],
) -> TraceResult {
    let mut r = TraceResult::default();
    let n = spans.len();
    if n == 0 {
        return r;
    }
    let trace_id = spans[0].trace_id;
    let index: IdMap<u64, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let parent: Vec<Option<usize>> = spans
        .iter()
        .map(|s| {
            if s.parent_id == 0 {
                None
            } else {
                index
                    .get(&s.parent_id)
                    .copied()
                    .filter(|&p| spans[p].span_id != s.span_id)
            }
        })
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            children[*p].push(i);
        }
    }
    // Nearest entry (request/job) ancestor-or-self; a bounded walk (cycles in
    // hostile input stop after 256 steps).
    let entry: Vec<Option<usize>> = (0..n)
        .map(|i| {
            let mut cur = Some(i);
            for _ in 0..256 {
                match cur {
                    Some(c) if spans[c].is_entry() => return Some(c),
                    Some(c) => cur = parent[c],
                    None => return None,
                }
            }
            None
        })
        .collect();
    let label = |e: Option<usize>| -> String {
        match e.map(|e| &spans[e].class) {
            Some(SpanClass::Server { route, .. }) => route.clone(),
            Some(SpanClass::Job { class, .. }) => format!("job {class}"),
            _ => NO_ENTRY.to_string(),
        }
    };
    let mut owned: IdMap<usize, Vec<&SpanRec>> = IdMap::default();
    for i in 0..n {
        if let Some(e) = entry[i] {
            if e != i {
                owned.entry(e).or_default().push(&spans[i]);
            }
        }
    }
    let det = |kind,
               route: String,
               subject: String,
               spans_n: u64,
               max_ms: f64,
               total_ms: f64,
               saved_ms: f64| {
        (
            (kind, route, subject),
            DetAgg {
                occurrences: 1,
                spans: spans_n,
                max_ms,
                total_ms,
                saved_ms,
                example: trace_id,
            },
        )
    };
    for (i, s) in spans.iter().enumerate() {
        let ms = s.duration_ms();
        match &s.class {
            SpanClass::Server { route, .. } => {
                let parts = owned.get(&i).map(Vec::as_slice).unwrap_or(&[]);
                let bd = breakdown(s, parts);
                let ty = match types.get(route) {
                    Some(t) => *t,
                    None => {
                        if types.len() >= cfg.max_keys.saturating_mul(4) {
                            types.clear();
                        }
                        let t = cfg.classifier.classify(route);
                        types.insert(route.clone(), t);
                        t
                    }
                };
                r.requests
                    .push((route.clone(), ty, s.duration_ns(), s.error, bd));
                if r.first_route.is_none() {
                    r.first_route = Some(route.clone());
                }
                r.examples.push((route.clone(), i, bd));
                if ms > cfg.slow_request_ms && ty != EndpointType::AiLlm {
                    r.detections.push(det(
                        DetectionKind::SlowRequest,
                        route.clone(),
                        route.clone(),
                        1,
                        ms,
                        ms,
                        0.0,
                    ));
                }
            }
            SpanClass::Job { class, .. } => {
                r.jobs.push((class.clone(), s.duration_ns(), s.error));
                if !s.links.is_empty() {
                    r.linked_jobs
                        .push((i, class.clone(), s.duration_ns(), s.error));
                }
                if ms > cfg.job_slow_ms {
                    r.detections.push(det(
                        DetectionKind::SlowJob,
                        format!("job {class}"),
                        class.clone(),
                        1,
                        ms,
                        ms,
                        0.0,
                    ));
                }
            }
            SpanClass::Provider { .. } => {
                let attempt =
                    parent[i].is_some_and(|p| matches!(spans[p].class, SpanClass::Provider { .. }));
                if !attempt {
                    r.providers.extend(provider_call(spans, &children, i));
                }
            }
            SpanClass::Cache { key, hit } => {
                r.caches.push((cfg.cache_types.of(key).to_string(), *hit));
            }
            SpanClass::Db { .. } if is_sql_query(s) && ms > cfg.max_query_ms => {
                r.detections.push(det(
                    DetectionKind::SlowQuery,
                    label(entry[i]),
                    statement(s).to_string(),
                    1,
                    ms,
                    ms,
                    0.0,
                ));
            }
            _ => {}
        }
        if s.kind == Kind::Producer {
            if let Some(SpanClass::Server { route, .. }) = entry[i].map(|e| &spans[e].class) {
                r.producers.push((s.span_id, route.clone()));
            }
        }
        if matches_any(&cfg.mission_spans, &s.name) && ms > cfg.mission_slow_ms {
            r.detections.push(det(
                DetectionKind::SlowMission,
                label(entry[i]),
                s.name.clone(),
                1,
                ms,
                ms,
                0.0,
            ));
        } else if matches_any(&cfg.agent_spans, &s.name) && ms > cfg.agent_slow_ms {
            r.detections.push(det(
                DetectionKind::SlowAgent,
                label(entry[i]),
                s.name.clone(),
                1,
                ms,
                ms,
                0.0,
            ));
        }
    }
    // N+1 and consecutive queries: siblings under one parent.
    for (p, kids) in children.iter().enumerate() {
        if kids.len() < 2 {
            continue;
        }
        let route = label(entry[p]);
        let mut groups: HashMap<&str, (u64, f64)> = HashMap::new();
        for &k in kids {
            if is_sql_query(&spans[k]) {
                let g = groups.entry(statement(&spans[k])).or_default();
                g.0 += 1;
                g.1 += spans[k].duration_ms();
            }
        }
        for (stmt, (count, total)) in groups {
            if count >= u64::from(cfg.n_plus_one_min_count) && total >= cfg.n_plus_one_min_total_ms
            {
                r.detections.push(det(
                    DetectionKind::NPlusOne,
                    route.clone(),
                    stmt.to_string(),
                    count,
                    total,
                    total,
                    0.0,
                ));
            }
        }
        let mut ordered: Vec<usize> = kids.clone();
        ordered.sort_by_key(|&k| spans[k].start_ns);
        let mut run: Vec<usize> = Vec::new();
        for &k in &ordered {
            let s = &spans[k];
            let qualifies = matches!(
                s.class,
                SpanClass::Db {
                    sql: true,
                    cached: false,
                    select: true,
                    ..
                }
            ) && s.duration_ms() >= cfg.consecutive_min_span_ms;
            if !qualifies {
                consecutive(cfg, spans, &run, &route, &mut r, trace_id);
                run.clear();
                continue;
            }
            if run.last().is_some_and(|&l| s.start_ns < spans[l].end_ns) {
                consecutive(cfg, spans, &run, &route, &mut r, trace_id);
                run.clear();
            }
            run.push(k);
        }
        consecutive(cfg, spans, &run, &route, &mut r, trace_id);
    }
    r
}

/// Sentry's "consecutive DB queries": sequential SELECTs under one parent where the
/// later ones do not depend on earlier results (no WHERE clause), so they could run
/// together; reported when the time saved is large enough.
fn consecutive(
    cfg: &EngineConfig,
    spans: &[SpanRec],
    run: &[usize],
    route: &str,
    r: &mut TraceResult,
    trace_id: u128,
) {
    if run.len() < 2
        || run
            .iter()
            .any(|&k| spans[k].duration_ms() < cfg.consecutive_min_span_ms)
    {
        return;
    }
    let independent: Vec<usize> = run[1..]
        .iter()
        .copied()
        .filter(|&k| {
            !matches!(
                spans[k].class,
                SpanClass::Db {
                    has_where: true,
                    ..
                }
            )
        })
        .collect();
    if independent.is_empty() {
        return;
    }
    let total: f64 = run.iter().map(|&k| spans[k].duration_ms()).sum();
    let max_indep = independent
        .iter()
        .map(|&k| spans[k].duration_ms())
        .fold(0.0, f64::max);
    let sum_dep: f64 = run
        .iter()
        .filter(|k| !independent.contains(k))
        .map(|&k| spans[k].duration_ms())
        .sum();
    let saved = total - max_indep.max(sum_dep);
    if saved >= cfg.consecutive_min_saved_ms && saved / total >= cfg.consecutive_min_ratio {
        let subject = run
            .iter()
            .map(|&k| statement(&spans[k]))
            .collect::<Vec<_>>()
            .join("; ");
        r.detections.push((
            (
                DetectionKind::ConsecutiveQueries,
                route.to_string(),
                powertune_core::report::truncate(&subject, 300),
            ),
            DetAgg {
                occurrences: 1,
                spans: run.len() as u64,
                max_ms: total,
                total_ms: total,
                saved_ms: saved,
                example: trace_id,
            },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SpanLink;
    use powertune_core::Targets;

    const MS: u64 = 1_000_000;
    const TRACE: u128 = 0xabc;

    /// One trace's spans, built by hand; times in ms from the trace start.
    #[derive(Default)]
    struct Trace {
        spans: Vec<SpanRec>,
    }

    impl Trace {
        fn span(
            &mut self,
            parent: u64,
            kind: Kind,
            class: SpanClass,
            name: &str,
            at: (u64, u64),
        ) -> u64 {
            let id = self.spans.len() as u64 + 1;
            self.spans.push(SpanRec {
                trace_id: TRACE,
                span_id: id,
                parent_id: parent,
                name: name.to_string(),
                kind,
                start_ns: at.0 * MS,
                end_ns: at.1 * MS,
                error: false,
                class,
                remote_parent: false,
                links: vec![],
                sql_sample: None,
            });
            id
        }

        fn request(&mut self, route: &str, at: (u64, u64)) -> u64 {
            let class = SpanClass::Server {
                route: route.to_string(),
                status: Some(200),
            };
            self.span(0, Kind::Server, class, route, at)
        }

        fn query(&mut self, parent: u64, statement: &str, has_where: bool, at: (u64, u64)) -> u64 {
            let class = SpanClass::Db {
                system: "postgresql".into(),
                statement: statement.into(),
                sql: true,
                select: true,
                has_where,
                cached: false,
            };
            self.span(parent, Kind::Client, class, "SELECT", at)
        }

        fn http(&mut self, parent: u64, at: (u64, u64)) -> u64 {
            let class = SpanClass::Http {
                method: "GET".into(),
                host: "api.example.com".into(),
            };
            self.span(parent, Kind::Client, class, "GET", at)
        }

        fn job(&mut self, class: &str, at: (u64, u64)) -> u64 {
            let c = SpanClass::Job {
                class: class.into(),
                queue: "default".into(),
            };
            self.span(0, Kind::Consumer, c, class, at)
        }

        fn last(&mut self) -> &mut SpanRec {
            let n = self.spans.len() - 1;
            &mut self.spans[n]
        }

        fn analyze(&self) -> TraceResult {
            let cfg = EngineConfig::defaults(&Targets::default());
            analyze_trace(&cfg, &mut HashMap::new(), &self.spans)
        }
    }

    fn kinds(r: &TraceResult, kind: DetectionKind) -> Vec<&(DetKey, DetAgg)> {
        r.detections.iter().filter(|d| d.0 .0 == kind).collect()
    }

    #[test]
    fn an_empty_trace_gives_nothing() {
        let r = Trace::default().analyze();
        assert!(r.requests.is_empty() && r.detections.is_empty() && r.first_route.is_none());
    }

    #[test]
    fn a_request_records_its_route_type_duration_and_breakdown() {
        let mut t = Trace::default();
        let root = t.request("GET /api/v1/posts", (0, 100));
        t.query(root, "SELECT * FROM posts WHERE id = ?", true, (10, 40));
        t.http(root, (50, 70));
        let r = t.analyze();
        assert_eq!(r.requests.len(), 1);
        let (route, ty, ns, err, bd) = &r.requests[0];
        assert_eq!(route, "GET /api/v1/posts");
        assert_eq!(*ty, EndpointType::ReadCrud);
        assert_eq!(*ns, 100 * MS);
        assert!(!err);
        assert_eq!((bd.db_ms, bd.http_ms, bd.app_ms), (30.0, 20.0, 50.0));
        assert_eq!(r.first_route.as_deref(), Some("GET /api/v1/posts"));
        assert_eq!(r.examples.len(), 1);
        assert!(r.detections.is_empty(), "a fast request detects nothing");
    }

    #[test]
    fn breakdown_gives_overlap_to_the_database_and_clips_to_the_entry() {
        let mut t = Trace::default();
        let root = t.request("GET /x", (0, 100));
        t.query(root, "SELECT 1", false, (10, 50));
        t.http(root, (30, 80));
        // Outside the entry's interval: only its inside part counts.
        t.http(root, (90, 150));
        let spans: Vec<&SpanRec> = t.spans[1..].iter().collect();
        let bd = breakdown(&t.spans[0], &spans);
        assert_eq!((bd.db_ms, bd.http_ms, bd.app_ms), (40.0, 40.0, 20.0));
        assert_eq!(bd.total_ms(), 100.0);
    }

    /// A request running the same query `n` times, `len` ms each, one every `every` ms.
    fn repeated(n: u64, len: u64, every: u64) -> Trace {
        let mut t = Trace::default();
        let root = t.request("GET /api/v1/posts", (0, 200));
        for k in 0..n {
            let at = 10 + k * every;
            t.query(
                root,
                "SELECT * FROM users WHERE id = ?",
                true,
                (at, at + len),
            );
        }
        t
    }

    #[test]
    fn n_plus_one_needs_enough_repeats_and_time() {
        let r = repeated(5, 10, 12).analyze();
        let hits = kinds(&r, DetectionKind::NPlusOne);
        assert_eq!(hits.len(), 1);
        let ((_, route, subject), d) = hits[0];
        assert_eq!(route, "GET /api/v1/posts");
        assert_eq!(subject, "SELECT * FROM users WHERE id = ?");
        assert_eq!((d.spans, d.total_ms, d.example), (5, 50.0, TRACE));
        // Four repeats, or five that together stay under the total: quiet.
        for t in [repeated(4, 20, 20), repeated(5, 9, 12)] {
            assert!(kinds(&t.analyze(), DetectionKind::NPlusOne).is_empty());
        }
    }

    #[test]
    fn cached_queries_are_not_counted_as_n_plus_one() {
        let mut t = repeated(6, 10, 12);
        for s in &mut t.spans {
            if let SpanClass::Db { cached, .. } = &mut s.class {
                *cached = true;
            }
        }
        assert!(kinds(&t.analyze(), DetectionKind::NPlusOne).is_empty());
    }

    #[test]
    fn slow_requests_slow_queries_and_their_labels() {
        let mut t = Trace::default();
        let root = t.request("GET /api/v1/posts", (0, 1500));
        t.query(root, "SELECT * FROM posts WHERE x = ?", true, (10, 260));
        // A query under no entry span is labelled as such.
        t.query(0, "SELECT * FROM orphans WHERE y = ?", true, (0, 150));
        let r = t.analyze();
        let slow = kinds(&r, DetectionKind::SlowRequest);
        assert_eq!(slow.len(), 1);
        assert_eq!(slow[0].1.max_ms, 1500.0);
        let q = kinds(&r, DetectionKind::SlowQuery);
        let labels: Vec<&str> = q.iter().map(|d| d.0 .1.as_str()).collect();
        assert_eq!(labels, ["GET /api/v1/posts", NO_ENTRY]);
    }

    #[test]
    fn llm_routes_are_not_slow_requests() {
        let mut t = Trace::default();
        t.request("POST /api/v1/ai/agents/:id/execute", (0, 5000));
        let r = t.analyze();
        assert_eq!(r.requests[0].1, EndpointType::AiLlm);
        assert!(kinds(&r, DetectionKind::SlowRequest).is_empty());
    }

    #[test]
    fn consecutive_independent_selects_are_reported_with_the_time_saved() {
        let mut t = Trace::default();
        let root = t.request("GET /dashboard", (0, 400));
        t.query(root, "SELECT count(*) FROM a", false, (0, 100));
        t.query(root, "SELECT count(*) FROM b", false, (100, 200));
        t.query(root, "SELECT count(*) FROM c", false, (200, 300));
        let r = t.analyze();
        let c = kinds(&r, DetectionKind::ConsecutiveQueries);
        assert_eq!(c.len(), 1);
        let ((_, route, subject), d) = c[0];
        assert_eq!(route, "GET /dashboard");
        assert!(subject.starts_with("SELECT count(*) FROM a; SELECT count(*) FROM b"));
        assert_eq!((d.spans, d.total_ms, d.saved_ms), (3, 300.0, 200.0));
    }

    #[test]
    fn dependent_or_overlapping_selects_are_not_consecutive() {
        // Every later query filters (depends on earlier results).
        let mut t = Trace::default();
        let root = t.request("GET /dashboard", (0, 400));
        t.query(root, "SELECT a", false, (0, 100));
        t.query(root, "SELECT b WHERE x = ?", true, (100, 200));
        t.query(root, "SELECT c WHERE y = ?", true, (200, 300));
        assert!(kinds(&t.analyze(), DetectionKind::ConsecutiveQueries).is_empty());
        // Already running together: each overlaps the previous one.
        let mut t = Trace::default();
        let root = t.request("GET /dashboard", (0, 400));
        t.query(root, "SELECT a", false, (0, 150));
        t.query(root, "SELECT b", false, (100, 250));
        t.query(root, "SELECT c", false, (200, 350));
        assert!(kinds(&t.analyze(), DetectionKind::ConsecutiveQueries).is_empty());
    }

    #[test]
    fn jobs_and_their_links_and_enqueues_under_a_request() {
        let mut t = Trace::default();
        let job = t.job("SyncJob", (0, 31_000));
        t.last().links.push(SpanLink {
            trace_id: 7,
            span_id: 9,
        });
        t.query(job, "SELECT 1", false, (0, 150));
        let r = t.analyze();
        assert_eq!(r.jobs, vec![("SyncJob".to_string(), 31_000 * MS, false)]);
        assert_eq!(r.linked_jobs.len(), 1);
        assert_eq!(r.linked_jobs[0].0, 0, "the entry index of the job span");
        let slow = kinds(&r, DetectionKind::SlowJob);
        assert_eq!(slow[0].0 .1, "job SyncJob");
        assert_eq!(kinds(&r, DetectionKind::SlowQuery)[0].0 .1, "job SyncJob");

        let mut t = Trace::default();
        let root = t.request("POST /api/v1/orders", (0, 100));
        let class = SpanClass::Enqueue {
            class: "SyncJob".into(),
            queue: "default".into(),
        };
        let enqueue = t.span(root, Kind::Producer, class, "SyncJob send", (10, 12));
        let r = t.analyze();
        assert_eq!(
            r.producers,
            vec![(enqueue, "POST /api/v1/orders".to_string())]
        );
        assert!(r.linked_jobs.is_empty());
    }

    #[test]
    fn missions_and_agents_match_their_span_names() {
        let mut t = Trace::default();
        let root = t.job("MissionJob", (0, 100_000));
        t.span(
            root,
            Kind::Internal,
            SpanClass::Other,
            "ai.mission.run",
            (0, 61_000),
        );
        t.span(
            root,
            Kind::Internal,
            SpanClass::Other,
            "ai.agent.execution",
            (0, 31_000),
        );
        t.span(
            root,
            Kind::Internal,
            SpanClass::Other,
            "ai.agent.execution",
            (0, 29_000),
        );
        let r = t.analyze();
        assert_eq!(kinds(&r, DetectionKind::SlowMission).len(), 1);
        let agents = kinds(&r, DetectionKind::SlowAgent);
        assert_eq!(agents.len(), 1);
        assert_eq!(agents[0].0 .1, "job MissionJob");
    }

    #[test]
    fn parent_cycles_end_and_self_parents_are_ignored() {
        let mut t = Trace::default();
        let a = t.span(2, Kind::Internal, SpanClass::Other, "a", (0, 10));
        t.span(a, Kind::Internal, SpanClass::Other, "b", (0, 10));
        t.query(3, "SELECT x WHERE y = ?", true, (0, 150));
        let r = t.analyze();
        assert_eq!(kinds(&r, DetectionKind::SlowQuery)[0].0 .1, NO_ENTRY);
    }
}
