//! The analysis engine: assembles spans into traces inside a bounded window,
//! analyses each finished trace (breakdown, detectors) and keeps rolling statistics
//! in time buckets. Pure computation: the caller passes the clock (`now_ns`), so the
//! same engine serves the receiver (monotonic clock) and offline files (constant).
//!
//! Memory is bounded by configuration: open spans ≤ `max_spans`, open traces ≤
//! `max_open_traces`, spans per trace ≤ `max_spans_per_trace` (the first root span
//! always kept), strings per span clipped ([`crate::model::MAX_NAME_LEN`] and
//! its siblings), statistics keys per
//! bucket ≤ `max_keys` (the rest fold into `(other)`), `buckets` buckets, and
//! `examples_per_route` example traces of ≤ `example_max_spans` spans per route.

mod aggregate;
mod example;
mod hash;
mod links;
mod query;
mod trace;

pub use aggregate::ERROR_EXAMPLES;
pub use hash::{IdHash, IdHasher};
pub use trace::{breakdown, NO_ENTRY};

use crate::config::EngineConfig;
use crate::model::{trace_hex, SpanLink, SpanRec, MAX_LINKS};
use crate::snapshot::*;
use aggregate::{slot, Bucket};
use example::build_example;
use hash::IdMap;
use links::{LinkIndex, LinkSource};
use powertune_core::EndpointType;
use std::collections::{HashMap, VecDeque};
use trace::{analyze_trace, TraceResult};

/// Key used when a statistics map is full.
pub const OTHER: &str = "(other)";

struct OpenTrace {
    spans: Vec<SpanRec>,
    root_seen: bool,
    first_ns: u64,
    last_ns: u64,
}

struct StoredExample {
    at_ns: u64,
    example: TraceExample,
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
            // A span whose parent is in another process roots this service's part.
            let root = s.parent_id == 0 || s.remote_parent;
            if t.spans.len() >= self.cfg.max_spans_per_trace {
                // The span limit never evicts the root: the trace's first root takes
                // the place of the latest non-root span, so the request stays in
                // the report however many spans came before it.
                let replace = if root && !t.root_seen {
                    t.spans.iter().rposition(|x| x.parent_id != 0)
                } else {
                    None
                };
                self.stats.spans_dropped += 1;
                let Some(i) = replace else {
                    continue;
                };
                t.spans[i] = s;
                t.root_seen = true;
                t.last_ns = now_ns;
                continue;
            }
            t.root_seen |= root;
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
        for c in &r.providers {
            let a = slot(
                &mut b.providers,
                c.key.clone(),
                OTHER.to_string(),
                cap,
                &mut overflow,
            );
            a.lat.record(c.ns, c.error, tid);
            a.gateway += u64::from(c.gateway);
            a.input_tokens += c.input_tokens;
            a.output_tokens += c.output_tokens;
            a.retries += c.retries;
            if let Some(ms) = c.ttft_ms {
                a.record_ttft(ms);
            }
        }
        for (ty, hit) in &r.caches {
            let c = b.caches.entry(ty.clone()).or_default();
            c.lookups += 1;
            c.hits += u64::from(*hit);
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
                Some(a) => a.absorb(&d),
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
}
