//! The analysis engine: assembles spans into traces inside a bounded window,
//! analyses each finished trace (breakdown, detectors) and keeps rolling statistics
//! in time buckets. Pure computation: the caller passes the clock (`now_ns`), so the
//! same engine serves the receiver (monotonic clock) and offline files (constant).
//!
//! Memory is bounded by configuration: open spans ≤ `max_spans`, open traces ≤
//! `max_open_traces`, spans per trace ≤ `max_spans_per_trace`, statistics keys per
//! bucket ≤ `max_keys` (the rest fold into `(other)`), `buckets` buckets, and
//! `examples_per_route` example traces of ≤ `example_max_spans` spans per route.

use crate::config::EngineConfig;
use crate::hist::Hist;
use crate::model::{trace_hex, Kind, SpanClass, SpanLink, SpanRec, MAX_LINKS};
use crate::normalize::text_glob;
use crate::summary::*;
use powertune_core::EndpointType;
use std::collections::{HashMap, VecDeque};

/// Key used when a statistics map is full.
pub const OTHER: &str = "(other)";
/// Route of spans that ran under no request or job span.
pub const NO_ENTRY: &str = "(no entry span)";

/// A fast hasher for ids and small integers (multiply-rotate), seeded per process
/// so that colliding ids cannot be prepared in advance. SipHash, the default, was a
/// tenth of the receiver's instructions.
#[derive(Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    #[inline]
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
}

/// Builds [`IdHasher`]s from one random seed per process.
#[derive(Clone, Copy)]
pub struct IdHash(u64);

impl Default for IdHash {
    fn default() -> Self {
        use std::hash::BuildHasher;
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        IdHash(*SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u64)))
    }
}

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0)
    }
}

type IdMap<K, V> = HashMap<K, V, IdHash>;

struct OpenTrace {
    spans: Vec<SpanRec>,
    root_seen: bool,
    first_ns: u64,
    last_ns: u64,
}

/// Example trace ids of failed requests/jobs/calls kept per statistics key.
pub const ERROR_EXAMPLES: usize = 3;

#[derive(Default, Clone)]
struct LatAgg {
    hist: Hist,
    count: u64,
    errors: u64,
    sum_ms: f64,
    /// The latest failing traces (at most [`ERROR_EXAMPLES`], oldest first).
    error_traces: Vec<u128>,
}

impl LatAgg {
    fn record(&mut self, ns: u64, error: bool, trace: u128) {
        self.hist.record_ns(ns);
        self.count += 1;
        self.sum_ms += ns as f64 / 1e6;
        if error {
            self.errors += 1;
            self.note_error(trace);
        }
    }

    fn note_error(&mut self, trace: u128) {
        if self.error_traces.contains(&trace) {
            return;
        }
        if self.error_traces.len() >= ERROR_EXAMPLES {
            self.error_traces.remove(0);
        }
        self.error_traces.push(trace);
    }

    fn merge(&mut self, o: &LatAgg) {
        self.hist.merge(&o.hist);
        self.count += o.count;
        self.errors += o.errors;
        self.sum_ms += o.sum_ms;
        for &t in &o.error_traces {
            self.note_error(t);
        }
    }

    fn latency(&self) -> Latency {
        Latency {
            count: self.count,
            errors: self.errors,
            p50_ms: self.hist.percentile_ms(50.0),
            p95_ms: self.hist.percentile_ms(95.0),
            p99_ms: self.hist.percentile_ms(99.0),
            max_ms: self.hist.max_ms(),
            avg_ms: if self.count == 0 {
                0.0
            } else {
                self.sum_ms / self.count as f64
            },
            error_traces: self
                .error_traces
                .iter()
                .rev()
                .map(|&t| trace_hex(t))
                .collect(),
        }
    }
}

#[derive(Clone)]
struct RouteAgg {
    endpoint_type: EndpointType,
    lat: LatAgg,
    bd: Breakdown,
}

impl Default for RouteAgg {
    fn default() -> Self {
        RouteAgg {
            endpoint_type: EndpointType::ReadCrud,
            lat: LatAgg::default(),
            bd: Breakdown::default(),
        }
    }
}

#[derive(Default, Clone)]
struct JobAgg {
    lat: LatAgg,
    slow: u64,
    example: Option<(f64, u128)>,
}

#[derive(Clone)]
struct DetAgg {
    occurrences: u64,
    spans: u64,
    max_ms: f64,
    total_ms: f64,
    saved_ms: f64,
    example: u128,
}

type DetKey = (DetectionKind, String, String);

#[derive(Default)]
struct Bucket {
    index: u64,
    routes: HashMap<String, RouteAgg>,
    types: HashMap<EndpointType, LatAgg>,
    jobs: HashMap<String, JobAgg>,
    providers: HashMap<String, LatAgg>,
    detections: HashMap<DetKey, DetAgg>,
    /// Jobs tied by a span link to the request that enqueued them: (route, class).
    linked: HashMap<(String, String), LatAgg>,
}

struct StoredExample {
    at_ns: u64,
    example: TraceExample,
}

/// What the analysis of one trace produced, before it goes into a bucket.
#[derive(Default)]
struct TraceResult {
    requests: Vec<(String, EndpointType, u64, bool, Breakdown)>,
    jobs: Vec<(String, u64, bool)>,
    providers: Vec<(String, u64, bool)>,
    detections: Vec<(DetKey, DetAgg)>,
    examples: Vec<(String, usize, Breakdown)>,
    /// Job entries with span links: (entry index, class, duration, error).
    linked_jobs: Vec<(usize, String, u64, bool)>,
    /// PRODUCER spans (enqueues) under a request: (span id, route).
    producers: Vec<(u64, String)>,
    /// The route of the trace's first request, for links to any of its spans.
    first_route: Option<String>,
}

/// Where a linked span came from: the request that enqueued a job.
#[derive(Clone)]
struct LinkSource {
    route: String,
    trace_id: u128,
}

/// A bounded map from span ids (enqueue spans) and trace ids (request traces) to
/// their request's route, oldest entries forgotten first.
#[derive(Default)]
struct LinkIndex {
    by_span: IdMap<u64, LinkSource>,
    by_trace: IdMap<u128, LinkSource>,
    order: VecDeque<(bool, u128)>,
}

impl LinkIndex {
    fn insert_span(&mut self, span: u64, src: LinkSource, cap: usize) {
        if self.by_span.insert(span, src).is_none() {
            self.order.push_back((true, u128::from(span)));
        }
        self.trim(cap);
    }

    fn insert_trace(&mut self, trace: u128, src: LinkSource, cap: usize) {
        if self.by_trace.insert(trace, src).is_none() {
            self.order.push_back((false, trace));
        }
        self.trim(cap);
    }

    fn trim(&mut self, cap: usize) {
        while self.order.len() > cap {
            match self.order.pop_front() {
                Some((true, k)) => {
                    self.by_span.remove(&(k as u64));
                }
                Some((false, k)) => {
                    self.by_trace.remove(&k);
                }
                None => break,
            }
        }
    }

    /// The request a link points into: the enqueue span itself, else its trace.
    fn resolve(&self, l: &SpanLink) -> Option<&LinkSource> {
        self.by_span
            .get(&l.span_id)
            .filter(|s| s.trace_id == l.trace_id)
            .or_else(|| self.by_trace.get(&l.trace_id))
    }
}

/// Linked job traces kept per example trace, at most.
pub const LINKED_PER_EXAMPLE: usize = 3;

pub struct Engine {
    cfg: EngineConfig,
    open: IdMap<u128, OpenTrace>,
    arrival: VecDeque<u128>,
    open_spans: usize,
    buckets: VecDeque<Bucket>,
    examples: HashMap<String, Vec<StoredExample>>,
    stats: IngestStats,
    /// Route → endpoint type, remembered (the rules are globs); cleared when it
    /// holds `4 × max_keys` routes.
    types: HashMap<String, EndpointType>,
    /// Recently analysed requests, for span links from jobs (≤ `max_open_traces`
    /// span ids and trace ids together).
    links: LinkIndex,
}

fn slot<'a, K, V: Default>(
    map: &'a mut HashMap<K, V>,
    key: K,
    other: K,
    cap: usize,
    overflow: &mut u64,
) -> &'a mut V
where
    K: std::hash::Hash + Eq,
{
    if map.len() >= cap && !map.contains_key(&key) {
        *overflow += 1;
        return map.entry(other).or_default();
    }
    map.entry(key).or_default()
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        Engine {
            cfg,
            open: IdMap::default(),
            arrival: VecDeque::new(),
            open_spans: 0,
            buckets: VecDeque::new(),
            examples: HashMap::new(),
            stats: IngestStats::default(),
            types: HashMap::new(),
            links: LinkIndex::default(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Counts spans refused at decoding (partial success).
    pub fn note_rejected(&mut self, n: u64) {
        self.stats.spans_rejected += n;
    }

    /// Counts a body that could not be decoded at all.
    pub fn note_malformed(&mut self) {
        self.stats.bodies_malformed += 1;
    }

    /// Adds spans to their traces; traces past the window's bounds are analysed early.
    pub fn ingest(&mut self, spans: Vec<SpanRec>, now_ns: u64) {
        for s in spans {
            self.stats.spans_received += 1;
            let t = match self.open.get_mut(&s.trace_id) {
                Some(t) => t,
                None => {
                    self.arrival.push_back(s.trace_id);
                    self.open.entry(s.trace_id).or_insert(OpenTrace {
                        spans: Vec::with_capacity(16),
                        root_seen: false,
                        first_ns: now_ns,
                        last_ns: now_ns,
                    })
                }
            };
            if t.spans.len() >= self.cfg.max_spans_per_trace {
                self.stats.spans_dropped += 1;
                continue;
            }
            t.root_seen |= s.parent_id == 0;
            t.last_ns = now_ns;
            t.spans.push(s);
            self.open_spans += 1;
        }
        while self.open_spans > self.cfg.max_spans || self.open.len() > self.cfg.max_open_traces {
            let Some(id) = self.arrival.pop_front() else {
                break;
            };
            if self.open.contains_key(&id) {
                self.stats.traces_forced += 1;
                self.finalize(id, now_ns);
            }
        }
        if self.arrival.len() > 2 * self.cfg.max_open_traces + 1024 {
            let open = &self.open;
            self.arrival.retain(|id| open.contains_key(id));
        }
    }

    /// Analyses traces whose root arrived `linger` ago, and traces older than
    /// `max_trace_age` whatever they hold.
    pub fn tick(&mut self, now_ns: u64) {
        let linger = self.cfg.linger_ns;
        let age = self.cfg.max_trace_age_ns;
        let due: Vec<u128> = self
            .open
            .iter()
            .filter(|(_, t)| {
                (t.root_seen && now_ns.saturating_sub(t.last_ns) >= linger)
                    || now_ns.saturating_sub(t.first_ns) >= age
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.finalize(id, now_ns);
        }
    }

    /// Analyses every trace whose root has arrived (before answering a query).
    pub fn flush_rooted(&mut self, now_ns: u64) {
        let due: Vec<u128> = self
            .open
            .iter()
            .filter(|(_, t)| t.root_seen)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.finalize(id, now_ns);
        }
    }

    /// Analyses everything still open (end of an offline file).
    pub fn flush_all(&mut self, now_ns: u64) {
        let due: Vec<u128> = self.open.keys().copied().collect();
        for id in due {
            self.finalize(id, now_ns);
        }
        self.arrival.clear();
    }

    fn finalize(&mut self, id: u128, now_ns: u64) {
        let Some(t) = self.open.remove(&id) else {
            return;
        };
        // A job linked to a request whose trace is still open (its root arrived):
        // that request is analysed first so that the job can be tied to it. One level
        // only, so the work stays bounded.
        let linked: Vec<u128> = t
            .spans
            .iter()
            .filter(|s| s.is_entry())
            .flat_map(|s| s.links.iter())
            .map(|l| l.trace_id)
            .filter(|&l| l != id)
            .take(MAX_LINKS)
            .collect();
        for l in linked {
            if self.open.get(&l).is_some_and(|o| o.root_seen) {
                if let Some(o) = self.open.remove(&l) {
                    self.finalize_trace(o, now_ns);
                }
            }
        }
        self.finalize_trace(t, now_ns);
    }

    fn finalize_trace(&mut self, t: OpenTrace, now_ns: u64) {
        self.open_spans = self.open_spans.saturating_sub(t.spans.len());
        self.stats.traces_analyzed += 1;
        if !t.root_seen {
            self.stats.traces_without_root += 1;
        }
        let result = analyze_trace(&self.cfg, &mut self.types, &t.spans);
        self.store(result, &t.spans, now_ns);
    }

    fn bucket(&mut self, now_ns: u64) -> &mut Bucket {
        let idx = now_ns / self.cfg.bucket_ns.max(1);
        if self.buckets.back().map(|b| b.index) != Some(idx) {
            self.buckets.push_back(Bucket {
                index: idx,
                ..Bucket::default()
            });
        }
        let keep = u64::from(self.cfg.buckets);
        while self.buckets.front().is_some_and(|b| b.index + keep <= idx) {
            self.buckets.pop_front();
        }
        // Just pushed when missing, so `back_mut` is there; the fallback never runs.
        if self.buckets.is_empty() {
            self.buckets.push_back(Bucket::default());
        }
        let n = self.buckets.len() - 1;
        &mut self.buckets[n]
    }

    fn store(&mut self, r: TraceResult, spans: &[SpanRec], now_ns: u64) {
        let cap = self.cfg.max_keys;
        let mut overflow = 0u64;
        let tid = spans.first().map_or(0, |s| s.trace_id);
        let b = self.bucket(now_ns);
        for (route, ty, ns, err, bd) in &r.requests {
            let a = slot(
                &mut b.routes,
                route.clone(),
                OTHER.to_string(),
                cap,
                &mut overflow,
            );
            a.endpoint_type = *ty;
            a.lat.record(*ns, *err, tid);
            a.bd.db_ms += bd.db_ms;
            a.bd.http_ms += bd.http_ms;
            a.bd.app_ms += bd.app_ms;
            b.types.entry(*ty).or_default().record(*ns, *err, tid);
        }
        for (class, ns, err) in &r.jobs {
            let a = slot(
                &mut b.jobs,
                class.clone(),
                OTHER.to_string(),
                cap,
                &mut overflow,
            );
            a.lat.record(*ns, *err, tid);
        }
        for (key, ns, err) in &r.providers {
            slot(
                &mut b.providers,
                key.clone(),
                OTHER.to_string(),
                cap,
                &mut overflow,
            )
            .record(*ns, *err, tid);
        }
        for (key, d) in r.detections {
            if key.0 == DetectionKind::SlowJob {
                if let Some(j) = b.jobs.get_mut(&key.2) {
                    j.slow += 1;
                    if j.example.is_none_or(|(ms, _)| d.max_ms > ms) {
                        j.example = Some((d.max_ms, d.example));
                    }
                }
            }
            let full = b.detections.len() >= cap * 4;
            match b.detections.get_mut(&key) {
                Some(a) => {
                    a.occurrences += d.occurrences;
                    a.spans += d.spans;
                    a.total_ms += d.total_ms;
                    a.saved_ms += d.saved_ms;
                    if d.max_ms > a.max_ms {
                        a.max_ms = d.max_ms;
                        a.example = d.example;
                    }
                }
                None if full => overflow += 1,
                None => {
                    b.detections.insert(key, d);
                }
            }
        }
        self.stats.keys_overflowed += overflow;
        for (route, entry_idx, bd) in r.examples {
            self.keep_example(route, spans, entry_idx, bd, now_ns);
        }
        // Span links: remember this trace's requests and enqueues; tie linked jobs to
        // the request that enqueued them.
        let link_cap = self.cfg.max_open_traces;
        if let Some(route) = r.first_route {
            self.links.insert_trace(
                tid,
                LinkSource {
                    route,
                    trace_id: tid,
                },
                link_cap,
            );
        }
        for (span, route) in r.producers {
            self.links.insert_span(
                span,
                LinkSource {
                    route,
                    trace_id: tid,
                },
                link_cap,
            );
        }
        for (entry, class, ns, err) in r.linked_jobs {
            let Some(src) = spans[entry]
                .links
                .iter()
                .find_map(|l| self.links.resolve(l).map(|s| (s.clone(), *l)))
            else {
                continue;
            };
            let (src, link) = src;
            self.stats.jobs_linked += 1;
            let mut overflow = 0u64;
            let b = self.bucket(now_ns);
            slot(
                &mut b.linked,
                (src.route.clone(), class.clone()),
                (OTHER.to_string(), OTHER.to_string()),
                cap,
                &mut overflow,
            )
            .record(ns, err, tid);
            self.stats.keys_overflowed += overflow;
            self.attach_linked(&src.route, link, spans, entry, &class);
        }
    }

    /// Puts a linked job trace under the example trace of the request that
    /// enqueued it, if that request is one of the route's kept examples.
    fn attach_linked(
        &mut self,
        route: &str,
        link: SpanLink,
        spans: &[SpanRec],
        entry: usize,
        class: &str,
    ) {
        let max = self.cfg.example_max_spans;
        let Some(list) = self.examples.get_mut(route) else {
            return;
        };
        let hex = trace_hex(link.trace_id);
        let Some(ex) = list.iter_mut().find(|e| e.example.trace_id == hex) else {
            return;
        };
        let ex = &mut ex.example;
        if ex.linked.len() >= LINKED_PER_EXAMPLE {
            return;
        }
        let span_hex = format!("{:016x}", link.span_id);
        let from = if ex.spans.iter().any(|n| n.span_id == span_hex) {
            span_hex
        } else {
            ex.spans
                .first()
                .map(|n| n.span_id.clone())
                .unwrap_or_default()
        };
        let job = build_example(spans, entry, Breakdown::default(), max);
        ex.linked.push(LinkedTrace {
            from_span_id: from,
            trace_id: job.trace_id,
            class: class.to_string(),
            duration_ms: job.duration_ms,
            error: spans[entry].error,
            spans: job.spans,
            truncated: job.truncated,
        });
    }

    fn keep_example(
        &mut self,
        route: String,
        spans: &[SpanRec],
        entry: usize,
        bd: Breakdown,
        now_ns: u64,
    ) {
        let retain = self
            .cfg
            .bucket_ns
            .saturating_mul(u64::from(self.cfg.buckets));
        let k = self.cfg.examples_per_route;
        let dur = spans[entry].duration_ms();
        if !self.examples.contains_key(&route) && self.examples.len() >= self.cfg.max_keys {
            return;
        }
        let list = self.examples.entry(route).or_default();
        list.retain(|e| now_ns.saturating_sub(e.at_ns) < retain);
        if list.len() >= k && list.iter().all(|e| e.example.duration_ms >= dur) {
            return;
        }
        let example = build_example(spans, entry, bd, self.cfg.example_max_spans);
        list.push(StoredExample {
            at_ns: now_ns,
            example,
        });
        list.sort_by(|a, b| b.example.duration_ms.total_cmp(&a.example.duration_ms));
        list.truncate(k);
    }

    fn merged(&self, now_ns: u64, window_ns: Option<u64>) -> Bucket {
        let bns = self.cfg.bucket_ns.max(1);
        let from = window_ns.map(|w| now_ns.saturating_sub(w) / bns);
        let mut m = Bucket::default();
        for b in self
            .buckets
            .iter()
            .filter(|b| from.is_none_or(|f| b.index >= f))
        {
            for (k, v) in &b.routes {
                let a = m.routes.entry(k.clone()).or_default();
                a.endpoint_type = v.endpoint_type;
                a.lat.merge(&v.lat);
                a.bd.db_ms += v.bd.db_ms;
                a.bd.http_ms += v.bd.http_ms;
                a.bd.app_ms += v.bd.app_ms;
            }
            for (k, v) in &b.types {
                m.types.entry(*k).or_default().merge(v);
            }
            for (k, v) in &b.jobs {
                let a = m.jobs.entry(k.clone()).or_default();
                a.lat.merge(&v.lat);
                a.slow += v.slow;
                if let Some((ms, id)) = v.example {
                    if a.example.is_none_or(|(m0, _)| ms > m0) {
                        a.example = Some((ms, id));
                    }
                }
            }
            for (k, v) in &b.providers {
                m.providers.entry(k.clone()).or_default().merge(v);
            }
            for (k, v) in &b.linked {
                m.linked.entry(k.clone()).or_default().merge(v);
            }
            for (k, v) in &b.detections {
                match m.detections.get_mut(k) {
                    Some(a) => {
                        a.occurrences += v.occurrences;
                        a.spans += v.spans;
                        a.total_ms += v.total_ms;
                        a.saved_ms += v.saved_ms;
                        if v.max_ms > a.max_ms {
                            a.max_ms = v.max_ms;
                            a.example = v.example;
                        }
                    }
                    None => {
                        m.detections.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        m
    }

    fn examples_for(&self, route: &str, now_ns: u64, window_ns: Option<u64>) -> Vec<&TraceExample> {
        self.examples
            .get(route)
            .map(|l| {
                l.iter()
                    .filter(|e| window_ns.is_none_or(|w| now_ns.saturating_sub(e.at_ns) <= w))
                    .map(|e| &e.example)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The window's contents (`window_ns` = `None`: everything retained).
    pub fn summary(&self, now_ns: u64, window_ns: Option<u64>) -> Summary {
        let m = self.merged(now_ns, window_ns);
        let mut stats = self.stats.clone();
        stats.open_traces = self.open.len() as u64;
        stats.open_spans = self.open_spans as u64;
        let mut routes: Vec<RouteSummary> = m
            .routes
            .iter()
            .map(|(k, v)| RouteSummary {
                route: k.clone(),
                endpoint_type: v.endpoint_type,
                latency: v.lat.latency(),
                breakdown: v.bd,
                slowest: self
                    .examples_for(k, now_ns, window_ns)
                    .iter()
                    .map(|e| TraceRef {
                        trace_id: e.trace_id.clone(),
                        duration_ms: e.duration_ms,
                    })
                    .collect(),
            })
            .collect();
        routes.sort_by(|a, b| a.route.cmp(&b.route));
        let mut types: Vec<TypeSummary> = m
            .types
            .iter()
            .map(|(k, v)| TypeSummary {
                endpoint_type: *k,
                latency: v.latency(),
            })
            .collect();
        types.sort_by_key(|t| t.endpoint_type);
        let mut jobs: Vec<JobSummary> = m
            .jobs
            .iter()
            .map(|(k, v)| JobSummary {
                class: k.clone(),
                latency: v.lat.latency(),
                slow: v.slow,
                example_trace: v.example.map(|(_, id)| trace_hex(id)),
            })
            .collect();
        jobs.sort_by(|a, b| a.class.cmp(&b.class));
        let mut providers: Vec<ProviderSummary> = m
            .providers
            .iter()
            .map(|(k, v)| ProviderSummary {
                key: k.clone(),
                latency: v.latency(),
            })
            .collect();
        providers.sort_by(|a, b| a.key.cmp(&b.key));
        let mut linked_jobs: Vec<LinkedJobs> = m
            .linked
            .iter()
            .map(|((route, class), v)| LinkedJobs {
                route: route.clone(),
                class: class.clone(),
                latency: v.latency(),
            })
            .collect();
        linked_jobs.sort_by(|a, b| (&a.route, &a.class).cmp(&(&b.route, &b.class)));
        let mut detections: Vec<Detection> = m
            .detections
            .into_iter()
            .map(|((kind, route, subject), d)| Detection {
                kind,
                route,
                subject,
                occurrences: d.occurrences,
                spans: d.spans,
                max_ms: d.max_ms,
                total_ms: d.total_ms,
                saved_ms: d.saved_ms,
                example_trace: trace_hex(d.example),
            })
            .collect();
        detections
            .sort_by(|a, b| (a.kind, &a.route, &a.subject).cmp(&(b.kind, &b.route, &b.subject)));
        Summary {
            schema: SUMMARY_SCHEMA.to_string(),
            window_s: window_ns.map(|w| w as f64 / 1e9),
            ingest: stats,
            types,
            routes,
            jobs,
            providers,
            detections,
            linked_jobs,
        }
    }

    /// One route's statistics, detections and slowest traces; `None` if unknown.
    pub fn endpoint(
        &self,
        route: &str,
        now_ns: u64,
        window_ns: Option<u64>,
    ) -> Option<EndpointDetail> {
        let s = self.summary(now_ns, window_ns);
        let r = s.routes.into_iter().find(|r| r.route == route)?;
        Some(EndpointDetail {
            detections: s
                .detections
                .into_iter()
                .filter(|d| d.route == route)
                .collect(),
            linked_jobs: s
                .linked_jobs
                .into_iter()
                .filter(|l| l.route == route)
                .collect(),
            slowest: self
                .examples_for(route, now_ns, window_ns)
                .into_iter()
                .cloned()
                .collect(),
            route: r,
        })
    }
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
fn analyze_trace(
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
            SpanClass::Provider { provider, model } => {
                r.providers
                    .push((format!("{provider}/{model}"), s.duration_ns(), s.error));
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

fn category(c: &SpanClass) -> (&'static str, String) {
    match c {
        SpanClass::Server { route, status } => (
            "server",
            match status {
                Some(s) => format!("{route} → {s}"),
                None => route.clone(),
            },
        ),
        SpanClass::Db {
            system,
            statement,
            cached,
            ..
        } => (
            "db",
            format!(
                "{system}{} {statement}",
                if *cached { " (cached)" } else { "" }
            ),
        ),
        SpanClass::Http { method, host } => ("http", format!("{method} {host}")),
        SpanClass::Provider { provider, model } => ("provider", format!("{provider}/{model}")),
        SpanClass::Job { class, queue } => ("job", format!("{class} on {queue}")),
        SpanClass::Enqueue { class, queue } => ("enqueue", format!("{class} to {queue}")),
        SpanClass::Other => ("other", String::new()),
    }
}

fn build_example(spans: &[SpanRec], entry: usize, bd: Breakdown, max: usize) -> TraceExample {
    let index: IdMap<u64, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let mut children: IdMap<usize, Vec<usize>> = IdMap::default();
    for (i, s) in spans.iter().enumerate() {
        if let Some(&p) = index.get(&s.parent_id) {
            if p != i {
                children.entry(p).or_default().push(i);
            }
        }
    }
    for v in children.values_mut() {
        v.sort_by_key(|&k| spans[k].start_ns);
    }
    let root = &spans[entry];
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![(entry, 0u32)];
    let mut seen = std::collections::HashSet::new();
    while let Some((i, depth)) = stack.pop() {
        if !seen.insert(i) || depth > 64 {
            continue;
        }
        total += 1;
        if out.len() < max {
            let s = &spans[i];
            let (cat, detail) = category(&s.class);
            out.push(SpanNode {
                depth,
                span_id: format!("{:016x}", s.span_id),
                parent_id: format!("{:016x}", s.parent_id),
                name: s.name.clone(),
                category: cat.to_string(),
                detail,
                offset_ms: s.start_ns.saturating_sub(root.start_ns) as f64 / 1e6,
                duration_ms: s.duration_ms(),
                error: s.error,
            });
        }
        if let Some(k) = children.get(&i) {
            for &c in k.iter().rev() {
                stack.push((c, depth + 1));
            }
        }
    }
    TraceExample {
        trace_id: trace_hex(root.trace_id),
        duration_ms: root.duration_ms(),
        breakdown: bd,
        truncated: total.saturating_sub(out.len() as u64),
        spans: out,
        linked: Vec::new(),
    }
}
