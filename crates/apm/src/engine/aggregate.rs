//! Rolling statistics: what one time bucket holds per route, endpoint type, job
//! class, provider, detection and linked job, and how buckets merge into a window.

use crate::model::trace_hex;
use crate::snapshot::{Breakdown, DetectionKind, Latency};
use powertune_core::histogram::CompactHistogram;
use powertune_core::EndpointType;
use std::collections::HashMap;

/// Example trace ids of failed requests/jobs/calls kept per statistics key.
pub const ERROR_EXAMPLES: usize = 3;

#[derive(Clone)]
pub(super) struct LatAgg {
    pub(super) hist: CompactHistogram,
    pub(super) count: u64,
    pub(super) errors: u64,
    pub(super) sum_ms: f64,
    /// The latest failing traces (at most [`ERROR_EXAMPLES`], oldest first).
    pub(super) error_traces: Vec<u128>,
}

impl Default for LatAgg {
    fn default() -> Self {
        LatAgg {
            hist: CompactHistogram::compact(),
            count: 0,
            errors: 0,
            sum_ms: 0.0,
            error_traces: Vec::new(),
        }
    }
}

impl LatAgg {
    pub(super) fn record(&mut self, ns: u64, error: bool, trace: u128) {
        self.hist.record_nanos(ns);
        self.count += 1;
        self.sum_ms += ns as f64 / 1e6;
        if error {
            self.errors += 1;
            self.note_error(trace);
        }
    }

    pub(super) fn note_error(&mut self, trace: u128) {
        if self.error_traces.contains(&trace) {
            return;
        }
        if self.error_traces.len() >= ERROR_EXAMPLES {
            self.error_traces.remove(0);
        }
        self.error_traces.push(trace);
    }

    pub(super) fn merge(&mut self, o: &LatAgg) {
        // Same bounds on both sides: adding cannot go out of range.
        let _ = self.hist.merge(&o.hist);
        self.count += o.count;
        self.errors += o.errors;
        self.sum_ms += o.sum_ms;
        for &t in &o.error_traces {
            self.note_error(t);
        }
    }

    pub(super) fn latency(&self) -> Latency {
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
pub(super) struct RouteAgg {
    pub(super) endpoint_type: EndpointType,
    pub(super) lat: LatAgg,
    pub(super) bd: Breakdown,
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
pub(super) struct JobAgg {
    pub(super) lat: LatAgg,
    pub(super) slow: u64,
    pub(super) example: Option<(f64, u128)>,
}

/// One provider/model's calls: latency, and what GenAI attributes tell.
#[derive(Default, Clone)]
pub(super) struct ProviderAgg {
    pub(super) lat: LatAgg,
    pub(super) gateway: u64,
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
    pub(super) retries: u64,
    /// Time to first chunk, made on the first call that reports one.
    pub(super) ttft: Option<CompactHistogram>,
    pub(super) ttft_count: u64,
}

impl ProviderAgg {
    pub(super) fn merge(&mut self, o: &ProviderAgg) {
        self.lat.merge(&o.lat);
        self.gateway += o.gateway;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.retries += o.retries;
        self.ttft_count += o.ttft_count;
        if let Some(h) = &o.ttft {
            let mine = self.ttft.get_or_insert_with(CompactHistogram::compact);
            // Same bounds on both sides: adding cannot go out of range.
            let _ = mine.merge(h);
        }
    }

    pub(super) fn record_ttft(&mut self, ms: f64) {
        let h = self.ttft.get_or_insert_with(CompactHistogram::compact);
        h.record_nanos((ms * 1e6) as u64);
        self.ttft_count += 1;
    }
}

#[derive(Clone)]
pub(super) struct DetAgg {
    pub(super) occurrences: u64,
    pub(super) spans: u64,
    pub(super) max_ms: f64,
    pub(super) total_ms: f64,
    pub(super) saved_ms: f64,
    pub(super) example: u128,
}

impl DetAgg {
    /// Adds another aggregate of the same detection; the example follows the maximum.
    pub(super) fn absorb(&mut self, d: &DetAgg) {
        self.occurrences += d.occurrences;
        self.spans += d.spans;
        self.total_ms += d.total_ms;
        self.saved_ms += d.saved_ms;
        if d.max_ms > self.max_ms {
            self.max_ms = d.max_ms;
            self.example = d.example;
        }
    }
}

pub(super) type DetKey = (DetectionKind, String, String);

#[derive(Default)]
pub(super) struct Bucket {
    pub(super) index: u64,
    pub(super) routes: HashMap<String, RouteAgg>,
    pub(super) types: HashMap<EndpointType, LatAgg>,
    pub(super) jobs: HashMap<String, JobAgg>,
    pub(super) providers: HashMap<String, ProviderAgg>,
    pub(super) detections: HashMap<DetKey, DetAgg>,
    /// Jobs tied by a span link to the request that enqueued them: (route, class).
    pub(super) linked: HashMap<(String, String), LatAgg>,
    /// Cache lookups per cache type (one key per configured type, at most).
    pub(super) caches: HashMap<String, CacheAgg>,
}

#[derive(Default, Clone, Copy)]
pub(super) struct CacheAgg {
    pub(super) hits: u64,
    pub(super) lookups: u64,
}

impl CacheAgg {
    pub(super) fn merge(&mut self, o: &CacheAgg) {
        self.hits += o.hits;
        self.lookups += o.lookups;
    }
}

/// The entry for `key`, or the shared `other` entry once the map holds `cap` keys.
pub(super) fn slot<'a, K, V: Default>(
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
