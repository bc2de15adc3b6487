//! Reading the window: buckets merged over a time range into the snapshot
//! ([`Summary`]) and one route's detail ([`EndpointDetail`]).

use super::aggregate::Bucket;
use super::Engine;
use crate::model::trace_hex;
use crate::snapshot::*;

impl Engine {
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
            for (k, v) in &b.caches {
                m.caches.entry(k.clone()).or_default().merge(v);
            }
            for (k, v) in &b.detections {
                match m.detections.get_mut(k) {
                    Some(a) => a.absorb(v),
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
                latency: v.lat.latency(),
                via_gateway: v.gateway,
                input_tokens: v.input_tokens,
                output_tokens: v.output_tokens,
                retries: v.retries,
                ttft: v.ttft.as_ref().map(|h| Ttft {
                    count: v.ttft_count,
                    p50_ms: h.percentile_ms(50.0),
                    p95_ms: h.percentile_ms(95.0),
                }),
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
        let mut cache = CacheSummary {
            min_lookups: self.cfg.cache_min_lookups,
            ..CacheSummary::default()
        };
        for (k, v) in &m.caches {
            cache.hits += v.hits;
            cache.lookups += v.lookups;
            cache.types.push(CacheTypeSummary {
                cache_type: k.clone(),
                pattern: self.cfg.cache_types.pattern(k).to_string(),
                hits: v.hits,
                lookups: v.lookups,
            });
        }
        cache.types.sort_by(|a, b| a.cache_type.cmp(&b.cache_type));
        Summary {
            schema: SUMMARY_SCHEMA.to_string(),
            cache,
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
