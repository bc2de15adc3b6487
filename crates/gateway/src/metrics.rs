//! What the gateway measures, the `/status` snapshot it serves and the Prometheus text
//! of `/metrics`. Memory is bounded: one series per (provider, credential, model) up to
//! [`MAX_SERIES`], histograms are HDR.

use parking_lot::Mutex;
use powertune_core::LatencyHistogram;

pub use crate::snapshot::{
    CredentialStatus, Percentiles, ProviderLatency, SeriesStatus, StatusSnapshot,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Series beyond this count are folded into model `"_other"`.
pub const MAX_SERIES: usize = 1000;

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
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition (version 0.0.4) of a snapshot.
pub fn prometheus(s: &StatusSnapshot) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# HELP powertune_gateway_calls_total Client calls answered."
    );
    let _ = writeln!(o, "# TYPE powertune_gateway_calls_total counter");
    let _ = writeln!(o, "powertune_gateway_calls_total {}", s.calls);
    let _ = writeln!(
        o,
        "# HELP powertune_gateway_retries_calls_total Client calls by retries needed."
    );
    let _ = writeln!(o, "# TYPE powertune_gateway_retries_calls_total counter");
    for (i, n) in s.retries_by_depth.iter().enumerate() {
        let _ = writeln!(
            o,
            "powertune_gateway_retries_calls_total{{retries=\"{i}\"}} {n}"
        );
    }
    let _ = writeln!(o, "# HELP powertune_gateway_all_open_rejections_total Calls answered 503 because every candidate breaker was open.");
    let _ = writeln!(
        o,
        "# TYPE powertune_gateway_all_open_rejections_total counter"
    );
    let _ = writeln!(
        o,
        "powertune_gateway_all_open_rejections_total {}",
        s.rejected_all_open
    );
    let _ = writeln!(
        o,
        "# HELP powertune_gateway_overhead_ms The gateway's own time per call."
    );
    let _ = writeln!(o, "# TYPE powertune_gateway_overhead_ms summary");
    for (q, v) in [("0.5", s.overhead_ms.p50), ("0.99", s.overhead_ms.p99)] {
        let _ = writeln!(o, "powertune_gateway_overhead_ms{{quantile=\"{q}\"}} {v}");
    }
    let _ = writeln!(
        o,
        "powertune_gateway_overhead_ms_count {}",
        s.overhead_ms.count
    );
    let _ = writeln!(o, "# HELP powertune_gateway_breaker_state Breaker state per credential: 0 closed, 1 half-open, 2 open or rate-limited, 3 disabled.");
    let _ = writeln!(o, "# TYPE powertune_gateway_breaker_state gauge");
    for c in &s.credentials {
        let g = match c.state.as_str() {
            "closed" => 0,
            "half_open" => 1,
            "disabled" => 3,
            _ => 2,
        };
        let _ = writeln!(
            o,
            "powertune_gateway_breaker_state{{provider=\"{}\",credential=\"{}\"}} {g}",
            esc(&c.provider),
            esc(&c.credential)
        );
    }
    let _ = writeln!(
        o,
        "# HELP powertune_gateway_breaker_transitions_total Breaker state changes per credential."
    );
    let _ = writeln!(
        o,
        "# TYPE powertune_gateway_breaker_transitions_total counter"
    );
    for c in &s.credentials {
        let _ = writeln!(
            o,
            "powertune_gateway_breaker_transitions_total{{provider=\"{}\",credential=\"{}\"}} {}",
            esc(&c.provider),
            esc(&c.credential),
            c.transitions
        );
    }
    let _ = writeln!(
        o,
        "# HELP powertune_gateway_requests_total Upstream calls by outcome."
    );
    let _ = writeln!(o, "# TYPE powertune_gateway_requests_total counter");
    for r in &s.series {
        for (outcome, n) in &r.requests {
            let _ = writeln!(
                o,
                "powertune_gateway_requests_total{{provider=\"{}\",credential=\"{}\",model=\"{}\",outcome=\"{}\"}} {n}",
                esc(&r.provider), esc(&r.credential), esc(&r.model), esc(outcome)
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP powertune_gateway_tokens_total Tokens by direction."
    );
    let _ = writeln!(o, "# TYPE powertune_gateway_tokens_total counter");
    for r in &s.series {
        for (dir, n) in [("input", r.tokens_in), ("output", r.tokens_out)] {
            let _ = writeln!(
                o,
                "powertune_gateway_tokens_total{{provider=\"{}\",credential=\"{}\",model=\"{}\",direction=\"{dir}\"}} {n}",
                esc(&r.provider), esc(&r.credential), esc(&r.model)
            );
        }
    }
    for (name, help, pick) in [
        ("latency_ms", "Upstream round trip of successful calls.", 0),
        ("ttft_ms", "Time to first token of successful streams.", 1),
        ("per_output_token_ms", "Round trip per output token.", 2),
    ] {
        let _ = writeln!(o, "# HELP powertune_gateway_{name} {help}");
        let _ = writeln!(o, "# TYPE powertune_gateway_{name} summary");
        for r in &s.series {
            let p = match pick {
                0 => &r.latency_ms,
                1 => &r.ttft_ms,
                _ => &r.per_token_ms,
            };
            let labels = format!(
                "provider=\"{}\",credential=\"{}\",model=\"{}\"",
                esc(&r.provider),
                esc(&r.credential),
                esc(&r.model)
            );
            for (q, v) in [("0.5", p.p50), ("0.95", p.p95), ("0.99", p.p99)] {
                let _ = writeln!(
                    o,
                    "powertune_gateway_{name}{{{labels},quantile=\"{q}\"}} {v}"
                );
            }
            let _ = writeln!(o, "powertune_gateway_{name}_count{{{labels}}} {}", p.count);
        }
    }
    o
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
        let text = prometheus(&s);
        assert!(text.contains("powertune_gateway_requests_total{provider=\"openai\",credential=\"a\",model=\"gpt\",outcome=\"ok\"} 1"), "{text}");
        let text = serde_json::to_string(&s).unwrap();
        let back: StatusSnapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        assert_eq!(back.providers[0].histogram.count(), 1);
    }
}
