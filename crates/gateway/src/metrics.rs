//! What the gateway measures, the `/status` snapshot it serves and the `/metrics`
//! exposition (written by `powertune_core::prometheus`). Memory is bounded by the
//! configuration, never by what clients send: one series per (provider, credential,
//! model) where the model is one an alias sends to that provider; any other model a
//! client names (a literal `"provider:model"`) counts under [`UNKNOWN_MODEL`]. Label
//! values are cut to [`MAX_LABEL_CHARS`], the series count is capped at
//! [`MAX_SERIES`] as a last guard, histograms are HDR.

use crate::server::Refusal;
use parking_lot::Mutex;
use powertune_core::prometheus::Exposition;
use powertune_core::LatencyHistogram;

pub use crate::snapshot::{
    CredentialStatus, Percentiles, ProviderLatency, SeriesStatus, StatusSnapshot,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// Series beyond this count are folded into model `"_other"`.
pub const MAX_SERIES: usize = 1000;

/// The model label of calls whose model no configured alias sends to that provider.
pub const UNKNOWN_MODEL: &str = "unknown";

/// Longest label value (provider, credential or model name) in `/metrics` and
/// `/status`, in characters; longer ones are cut and end in `…`.
pub const MAX_LABEL_CHARS: usize = 128;

/// `s` cut to [`MAX_LABEL_CHARS`] characters (the last one `…`).
pub fn label(s: &str) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(MAX_LABEL_CHARS - 1) {
        Some((i, _)) if s[i..].chars().nth(1).is_some() => {
            std::borrow::Cow::Owned(format!("{}…", &s[..i]))
        }
        _ => std::borrow::Cow::Borrowed(s),
    }
}

/// How a call to a provider ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    ClientError,
    RateLimited,
    AuthFailed,
    ServerError,
    ConnectError,
    Timeout,
    StreamError,
    ClientClosed,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Ok,
        Outcome::ClientError,
        Outcome::RateLimited,
        Outcome::AuthFailed,
        Outcome::ServerError,
        Outcome::ConnectError,
        Outcome::Timeout,
        Outcome::StreamError,
        Outcome::ClientClosed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientError => "client_error",
            Outcome::RateLimited => "rate_limited",
            Outcome::AuthFailed => "auth_failed",
            Outcome::ServerError => "server_error",
            Outcome::ConnectError => "connect_error",
            Outcome::Timeout => "timeout",
            Outcome::StreamError => "stream_error",
            Outcome::ClientClosed => "client_closed",
        }
    }
}

#[derive(Debug, Default)]
struct Series {
    /// Calls by outcome, indexed by `Outcome as usize`.
    outcomes: [u64; 9],
    total: LatencyHistogram,
    ttft: LatencyHistogram,
    per_token: LatencyHistogram,
    tokens_in: u64,
    tokens_out: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// provider → credential → model → series (looked up by `&str`: no allocation per
    /// call once a series exists).
    series: BTreeMap<String, BTreeMap<String, BTreeMap<String, Series>>>,
    series_count: usize,
    providers: BTreeMap<String, LatencyHistogram>,
    /// Calls by number of retries (index 0..=2).
    retries: [u64; 3],
    overhead: LatencyHistogram,
    calls: u64,
    rejected_all_open: u64,
    /// Calls refused for a missing or unknown client key, by [`Refusal`].
    refusals: [u64; 4],
    /// Per client key name (from the config): calls admitted, and refused by [`Refusal`].
    clients: BTreeMap<String, ClientCounts>,
}

#[derive(Debug, Default)]
struct ClientCounts {
    admitted: u64,
    refused: [u64; 4],
}

/// Thread-safe measurement store.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// One upstream call's measurement.
#[derive(Debug, Clone)]
pub struct CallRecord<'a> {
    pub provider: &'a str,
    pub credential: &'a str,
    pub model: &'a str,
    pub outcome: Outcome,
    pub total: Duration,
    pub ttft: Option<Duration>,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

impl Metrics {
    pub fn record_call(&self, r: &CallRecord<'_>) {
        let (provider, credential, model) =
            (label(r.provider), label(r.credential), label(r.model));
        let r = &CallRecord {
            provider: &provider,
            credential: &credential,
            model: &model,
            ..r.clone()
        };
        let mut guard = self.inner.lock();
        let g = &mut *guard;
        if !g.series.contains_key(r.provider) {
            g.series.insert(r.provider.to_string(), BTreeMap::new());
        }
        let Some(creds) = g.series.get_mut(r.provider) else {
            return;
        };
        if !creds.contains_key(r.credential) {
            creds.insert(r.credential.to_string(), BTreeMap::new());
        }
        let Some(models) = creds.get_mut(r.credential) else {
            return;
        };
        let model = if models.contains_key(r.model) {
            r.model
        } else if g.series_count >= MAX_SERIES {
            "_other"
        } else {
            r.model
        };
        if !models.contains_key(model) {
            models.insert(model.to_string(), Series::default());
            g.series_count += 1;
        }
        let Some(s) = models.get_mut(model) else {
            return;
        };
        s.outcomes[r.outcome as usize] += 1;
        s.tokens_in += r.tokens_in;
        s.tokens_out += r.tokens_out;
        if r.outcome == Outcome::Ok {
            s.total.record(r.total);
            if let Some(t) = r.ttft {
                s.ttft.record(t);
            }
            if r.tokens_out > 0 {
                s.per_token
                    .record(r.total / r.tokens_out.min(u32::MAX as u64) as u32);
            }
            match g.providers.get_mut(r.provider) {
                Some(h) => h.record(r.total),
                None => {
                    let mut h = LatencyHistogram::default();
                    h.record(r.total);
                    g.providers.insert(r.provider.to_string(), h);
                }
            }
        }
    }

    /// One client call finished after `retries` retries; `overhead` is the gateway's
    /// own time (total minus waiting on providers and backoff).
    pub fn record_client_call(&self, retries: u32, overhead: Duration) {
        let mut g = self.inner.lock();
        g.calls += 1;
        let i = (retries as usize).min(2);
        g.retries[i] += 1;
        g.overhead.record(overhead);
    }

    /// A call refused before any client was known (missing or unknown key).
    pub(crate) fn record_refusal(&self, why: Refusal) {
        self.inner.lock().refusals[why as usize] += 1;
    }

    /// A call of client `name` (a configured key's name), admitted or refused.
    pub(crate) fn record_client(&self, name: &str, refused: Option<Refusal>) {
        let mut g = self.inner.lock();
        if !g.clients.contains_key(name) {
            g.clients.insert(name.to_string(), ClientCounts::default());
        }
        if let Some(c) = g.clients.get_mut(name) {
            match refused {
                None => c.admitted += 1,
                Some(why) => c.refused[why as usize] += 1,
            }
        }
    }

    pub fn record_all_open(&self) {
        self.inner.lock().rejected_all_open += 1;
    }

    /// The `/status` snapshot, with the credentials' breaker states supplied by the caller.
    pub fn snapshot(&self, uptime_s: f64, credentials: Vec<CredentialStatus>) -> StatusSnapshot {
        let g = self.inner.lock();
        let series = g
            .series
            .iter()
            .flat_map(|(p, creds)| {
                creds
                    .iter()
                    .flat_map(move |(c, models)| models.iter().map(move |(m, s)| (p, c, m, s)))
            })
            .map(|(p, c, m, s)| SeriesStatus {
                provider: p.clone(),
                credential: c.clone(),
                model: m.clone(),
                requests: Outcome::ALL
                    .iter()
                    .filter(|o| s.outcomes[**o as usize] > 0)
                    .map(|o| (o.as_str().to_string(), s.outcomes[*o as usize]))
                    .collect(),
                latency_ms: Percentiles::of(&s.total),
                ttft_ms: Percentiles::of(&s.ttft),
                per_token_ms: Percentiles::of(&s.per_token),
                tokens_in: s.tokens_in,
                tokens_out: s.tokens_out,
            })
            .collect();
        let providers = g
            .providers
            .iter()
            .map(|(name, h)| ProviderLatency {
                provider: name.clone(),
                latency_ms: Percentiles::of(h),
                histogram: h.clone(),
            })
            .collect();
        StatusSnapshot {
            version: 1,
            uptime_s,
            config_generation: 0,
            calls: g.calls,
            retries_by_depth: g.retries.to_vec(),
            rejected_all_open: g.rejected_all_open,
            overhead_ms: Percentiles::of(&g.overhead),
            credentials,
            providers,
            series,
            shared: None,
            cost: None,
        }
    }
}

/// Upper bounds, in seconds, of the upstream round-trip and time-to-first-token
/// buckets of `/metrics`.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Upper bounds, in seconds, of the per-output-token buckets.
pub const PER_TOKEN_BUCKETS: [f64; 10] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
/// Upper bounds, in seconds, of the gateway-overhead buckets.
pub const OVERHEAD_BUCKETS: [f64; 10] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

/// A histogram in seconds as the exposition takes it: (sum, count, cumulative count
/// per upper bound). The sum is the HDR mean times the count.
fn seconds_buckets(h: &LatencyHistogram, bounds: &[f64]) -> (f64, u64, Vec<(f64, u64)>) {
    let mut per = vec![0u64; bounds.len()];
    let inner = h.inner();
    for v in inner.iter_recorded() {
        // the lowest value of the HDR bucket, so a sample on a bound counts within it
        let secs = inner.lowest_equivalent(v.value_iterated_to()) as f64 / 1e6;
        if let Some(i) = bounds.iter().position(|b| secs <= *b) {
            per[i] += v.count_at_value();
        }
    }
    let mut total = 0;
    let cumulative = bounds
        .iter()
        .zip(per)
        .map(|(b, n)| {
            total += n;
            (*b, total)
        })
        .collect();
    let count = h.count();
    (h.mean_ms() * count as f64 / 1000.0, count, cumulative)
}

/// The states of the breaker-state gauge, one series each (1 for the state a
/// credential is in, 0 for the others).
pub const BREAKER_STATES: [&str; 5] = ["closed", "half_open", "open", "rate_limited", "disabled"];

impl Metrics {
    /// The `/metrics` exposition: counters, the breaker state of `credentials` (the
    /// live config's) and latency histograms in seconds. Names follow Prometheus
    /// conventions (`_total` counters, `_seconds` histograms).
    pub fn exposition(&self, credentials: &[CredentialStatus]) -> Exposition {
        let g = self.inner.lock();
        let mut e = Exposition::new();
        e.gauge(
            "powertune_gateway_build_info",
            "The running gateway's version (always 1).",
        )
        .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        e.counter("powertune_gateway_calls", "Client calls answered.")
            .sample(&[], g.calls as f64);
        let mut w = e.counter(
            "powertune_gateway_auth_refusals",
            "Calls refused 401 for a missing or unknown client key.",
        );
        for why in [Refusal::MissingKey, Refusal::WrongKey] {
            let n = g.refusals[why as usize];
            if n > 0 {
                w.sample(&[("reason", why.as_str())], n as f64);
            }
        }
        let mut w = e.counter(
            "powertune_gateway_client_calls",
            "Calls per client key name: admitted, or refused (forbidden route or model, over its rpm or tpm).",
        );
        for (name, c) in &g.clients {
            if c.admitted > 0 {
                w.sample(
                    &[("client", name), ("result", "admitted")],
                    c.admitted as f64,
                );
            }
            for why in Refusal::ALL {
                let n = c.refused[why as usize];
                if n > 0 {
                    w.sample(&[("client", name), ("result", why.as_str())], n as f64);
                }
            }
        }
        let mut w = e.counter(
            "powertune_gateway_retries_calls",
            "Client calls by retries needed.",
        );
        for (i, n) in g.retries.iter().enumerate() {
            w.sample(&[("retries", &i.to_string())], *n as f64);
        }
        e.counter(
            "powertune_gateway_all_open_rejections",
            "Calls answered 503 at once, nothing sent upstream, because every candidate credential was open, rate-limited or disabled.",
        )
        .sample(&[], g.rejected_all_open as f64);
        let (sum, count, buckets) = seconds_buckets(&g.overhead, &OVERHEAD_BUCKETS);
        e.histogram(
            "powertune_gateway_overhead_seconds",
            "The gateway's own time per call.",
        )
        .histogram(&[], sum, count, buckets);
        let mut w = e.gauge(
            "powertune_gateway_breaker_state",
            "Breaker state per credential: 1 for the state it is in, 0 for the others.",
        );
        for c in credentials {
            for state in BREAKER_STATES {
                let labels = [
                    ("provider", c.provider.as_str()),
                    ("credential", &c.credential),
                    ("state", state),
                ];
                w.sample(&labels, if c.state == state { 1.0 } else { 0.0 });
            }
        }
        let mut w = e.counter(
            "powertune_gateway_breaker_transitions",
            "Breaker state changes per credential.",
        );
        for c in credentials {
            let labels = [
                ("provider", c.provider.as_str()),
                ("credential", &c.credential),
            ];
            w.sample(&labels, c.transitions as f64);
        }
        let series: Vec<(&str, &str, &str, &Series)> = g
            .series
            .iter()
            .flat_map(|(p, creds)| {
                creds.iter().flat_map(move |(c, models)| {
                    models
                        .iter()
                        .map(move |(m, s)| (p.as_str(), c.as_str(), m.as_str(), s))
                })
            })
            .collect();
        let mut w = e.counter("powertune_gateway_requests", "Upstream calls by outcome.");
        for (p, c, m, s) in &series {
            for o in Outcome::ALL {
                let n = s.outcomes[o as usize];
                if n > 0 {
                    let labels = [
                        ("provider", *p),
                        ("credential", *c),
                        ("model", *m),
                        ("outcome", o.as_str()),
                    ];
                    w.sample(&labels, n as f64);
                }
            }
        }
        let mut w = e.counter("powertune_gateway_tokens", "Tokens by direction.");
        for (p, c, m, s) in &series {
            for (dir, n) in [("input", s.tokens_in), ("output", s.tokens_out)] {
                let labels = [
                    ("provider", *p),
                    ("credential", *c),
                    ("model", *m),
                    ("direction", dir),
                ];
                w.sample(&labels, n as f64);
            }
        }
        type Pick = fn(&Series) -> &LatencyHistogram;
        let histograms: [(&str, &str, Pick, &[f64]); 3] = [
            (
                "powertune_gateway_latency_seconds",
                "Upstream round trip of successful calls.",
                |s| &s.total,
                &LATENCY_BUCKETS,
            ),
            (
                "powertune_gateway_ttft_seconds",
                "Time to first token of successful streams.",
                |s| &s.ttft,
                &LATENCY_BUCKETS,
            ),
            (
                "powertune_gateway_per_output_token_seconds",
                "Round trip per output token.",
                |s| &s.per_token,
                &PER_TOKEN_BUCKETS,
            ),
        ];
        for (name, help, pick, bounds) in histograms {
            let mut w = e.histogram(name, help);
            for (p, c, m, s) in &series {
                if pick(s).count() == 0 {
                    continue; // no observations: no series, rather than invented zeros
                }
                let (sum, count, buckets) = seconds_buckets(pick(s), bounds);
                w.histogram(
                    &[("provider", *p), ("credential", *c), ("model", *m)],
                    sum,
                    count,
                    buckets,
                );
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_renders() {
        let m = Metrics::default();
        m.record_call(&CallRecord {
            provider: "openai",
            credential: "a",
            model: "gpt",
            outcome: Outcome::Ok,
            total: Duration::from_millis(40),
            ttft: Some(Duration::from_millis(10)),
            tokens_in: 3,
            tokens_out: 4,
        });
        m.record_client_call(1, Duration::from_micros(200));
        let s = m.snapshot(1.0, vec![]);
        assert_eq!(s.retries_by_depth, vec![0, 1, 0]);
        assert_eq!(s.series[0].requests["ok"], 1);
        assert!((s.providers[0].latency_ms.p95 - 40.0).abs() < 1.0);
        let text = serde_json::to_string(&s).unwrap();
        let back: StatusSnapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        assert_eq!(back.providers[0].histogram.count(), 1);
    }

    #[test]
    fn the_exposition_has_total_counters_and_histograms_in_seconds() {
        let m = Metrics::default();
        for (ms, outcome) in [(40, Outcome::Ok), (700, Outcome::Ok), (5, Outcome::Timeout)] {
            m.record_call(&CallRecord {
                provider: "openai",
                credential: "a",
                model: "gpt",
                outcome,
                total: Duration::from_millis(ms),
                ttft: Some(Duration::from_millis(10)),
                tokens_in: 3,
                tokens_out: 4,
            });
        }
        m.record_client_call(1, Duration::from_micros(200));
        let creds = [CredentialStatus {
            provider: "openai".into(),
            credential: "a".into(),
            state: "half_open".into(),
            open_for_s: None,
            open_until: None,
            retry_after_s: None,
            retry_after_capped: None,
            consecutive_failures: 0,
            trips: 1,
            transitions: 2,
            weight: 1,
            rpm: None,
            ..Default::default()
        }];
        let text = m.exposition(&creds).render();
        for line in [
            "# TYPE powertune_gateway_calls_total counter",
            "powertune_gateway_calls_total 1.0",
            "powertune_gateway_retries_calls_total{retries=\"1\"} 1.0",
            "powertune_gateway_all_open_rejections_total 0.0",
            "# TYPE powertune_gateway_overhead_seconds histogram",
            "powertune_gateway_overhead_seconds_bucket{le=\"0.0001\"} 0",
            "powertune_gateway_overhead_seconds_bucket{le=\"0.00025\"} 1",
            "powertune_gateway_overhead_seconds_count 1",
            "powertune_gateway_breaker_state{provider=\"openai\",credential=\"a\",state=\"half_open\"} 1.0",
            "powertune_gateway_breaker_state{provider=\"openai\",credential=\"a\",state=\"closed\"} 0.0",
            "powertune_gateway_build_info{version=\"0.1.0\"} 1.0",
            "powertune_gateway_breaker_transitions_total{provider=\"openai\",credential=\"a\"} 2.0",
            "powertune_gateway_requests_total{provider=\"openai\",credential=\"a\",model=\"gpt\",outcome=\"ok\"} 2.0",
            "powertune_gateway_requests_total{provider=\"openai\",credential=\"a\",model=\"gpt\",outcome=\"timeout\"} 1.0",
            "powertune_gateway_tokens_total{provider=\"openai\",credential=\"a\",model=\"gpt\",direction=\"output\"} 12.0",
            "# TYPE powertune_gateway_latency_seconds histogram",
            "powertune_gateway_latency_seconds_bucket{provider=\"openai\",credential=\"a\",model=\"gpt\",le=\"0.025\"} 0",
            "powertune_gateway_latency_seconds_bucket{provider=\"openai\",credential=\"a\",model=\"gpt\",le=\"0.05\"} 1",
            "powertune_gateway_latency_seconds_bucket{provider=\"openai\",credential=\"a\",model=\"gpt\",le=\"1\"} 2",
            "powertune_gateway_latency_seconds_bucket{provider=\"openai\",credential=\"a\",model=\"gpt\",le=\"+Inf\"} 2",
            "powertune_gateway_latency_seconds_count{provider=\"openai\",credential=\"a\",model=\"gpt\"} 2",
            "powertune_gateway_ttft_seconds_bucket{provider=\"openai\",credential=\"a\",model=\"gpt\",le=\"0.01\"} 2",
            "powertune_gateway_per_output_token_seconds_bucket{provider=\"openai\",credential=\"a\",model=\"gpt\",le=\"0.01\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        let sum = text
            .lines()
            .find_map(|l| l.strip_prefix("powertune_gateway_latency_seconds_sum{provider=\"openai\",credential=\"a\",model=\"gpt\"} "))
            .unwrap();
        let sum: f64 = sum.parse().unwrap();
        assert!((sum - 0.74).abs() < 0.001, "{sum}");
        assert!(!text.contains("_ms"), "{text}");
    }
}
