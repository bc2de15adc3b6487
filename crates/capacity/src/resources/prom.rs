//! Pools read from a Prometheus text endpoint (`--metrics`): each [`PoolPattern`]
//! names the gauges of one pool (size, in use or free, waiting, an error counter);
//! every pattern whose size gauge the endpoint exposes is reported. Samples with
//! several label sets (one per process or pool) are added up.

use super::{Ident, Kind, Sample, SampleFuture, Source};
use std::collections::BTreeMap;
use std::time::Duration;

/// Largest scrape read.
pub const MAX_SCRAPE_BYTES: usize = 8 * 1024 * 1024;

/// The gauges of one pool, by exact metric name (the first name present wins).
#[derive(Debug, Clone, Copy)]
pub struct PoolPattern {
    pub resource: &'static str,
    pub kind: Kind,
    pub size: &'static [&'static str],
    /// Slots in use; when absent, size − free.
    pub in_use: &'static [&'static str],
    pub free: &'static [&'static str],
    /// Work queued for a slot.
    pub waiting: &'static [&'static str],
    /// A cumulative error counter (checkout timeouts).
    pub errors: &'static [&'static str],
}

/// The built-in patterns: the embedded target, Rails' ActiveRecord pool as exported
/// by yabeda-activerecord and prometheus_exporter, and Puma's thread pool as exported
/// by yabeda-puma and prometheus_exporter.
pub const PATTERNS: &[PoolPattern] = &[
    PoolPattern {
        resource: "DB pool",
        kind: Kind::DbPool,
        size: &[
            "powertune_target_db_pool_size",
            "activerecord_connection_pool_size",
            "ruby_active_record_connection_pool_size",
            "active_record_connection_pool_size",
        ],
        in_use: &[
            "powertune_target_db_pool_in_use",
            "activerecord_connection_pool_busy",
            "ruby_active_record_connection_pool_busy",
            "active_record_connection_pool_busy",
        ],
        free: &[],
        waiting: &[
            "powertune_target_db_pool_waiting",
            "activerecord_connection_pool_waiting",
            "ruby_active_record_connection_pool_waiting",
            "active_record_connection_pool_waiting",
        ],
        errors: &["powertune_target_db_pool_timeouts_total"],
    },
    PoolPattern {
        resource: "CPU worker threads",
        kind: Kind::Cpu,
        size: &["powertune_target_cpu_workers"],
        in_use: &["powertune_target_cpu_busy"],
        free: &[],
        waiting: &["powertune_target_cpu_waiting"],
        errors: &[],
    },
    PoolPattern {
        resource: "Puma threads",
        kind: Kind::Cpu,
        size: &["puma_max_threads", "ruby_puma_max_threads"],
        in_use: &["puma_running_threads", "ruby_puma_running_threads"],
        free: &[
            "puma_pool_capacity",
            "puma_thread_pool_capacity",
            "ruby_puma_thread_pool_capacity",
        ],
        waiting: &[
            "puma_backlog",
            "puma_request_backlog",
            "ruby_puma_request_backlog",
        ],
        errors: &[],
    },
    PoolPattern {
        resource: "Redis pool",
        kind: Kind::Redis,
        size: &["powertune_target_redis_pool_size"],
        in_use: &["powertune_target_redis_pool_in_use"],
        free: &[],
        waiting: &["powertune_target_redis_pool_waiting"],
        errors: &["powertune_target_redis_pool_timeouts_total"],
    },
];

/// Metric name → sum over its label sets.
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let mut out = BTreeMap::new();
    let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else {
        return out;
    };
    for s in scrape.samples {
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        if v.is_finite() {
            *out.entry(s.metric).or_insert(0.0) += v;
        }
    }
    out
}

fn first(m: &BTreeMap<String, f64>, names: &[&str]) -> Option<f64> {
    names.iter().find_map(|n| m.get(*n).copied())
}

/// The pools a scrape shows, sampled.
pub fn pools(m: &BTreeMap<String, f64>, source: &str) -> Vec<(Ident, Sample)> {
    PATTERNS
        .iter()
        .filter_map(|p| {
            let size = first(m, p.size)?;
            let in_use = first(m, p.in_use).or_else(|| first(m, p.free).map(|f| size - f));
            let waiting = first(m, p.waiting);
            Some((
                Ident {
                    resource: p.resource.to_string(),
                    kind: p.kind,
                    source: source.to_string(),
                    saturation_word: "waiting",
                    unit: "",
                },
                Sample {
                    utilisation: in_use.filter(|_| size > 0.0).map(|u| (u / size).min(1.0)),
                    saturation: waiting,
                    errors: first(m, p.errors),
                    used: in_use,
                    capacity: Some(size),
                    latency_ms: None,
                },
            ))
        })
        .collect()
}

/// One `--metrics` endpoint.
pub struct Metrics {
    url: String,
    shown: String,
    client: reqwest::Client,
}

impl Metrics {
    /// Checks the URL; nothing is fetched yet.
    pub fn new(url: &str) -> Result<Metrics, String> {
        let shown = powertune_core::redact::url(url);
        let parsed = url::Url::parse(url).map_err(|e| {
            format!("--metrics {shown}: {e} (expected e.g. http://127.0.0.1:9394/metrics)")
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "--metrics {shown}: not an http(s) URL (expected e.g. http://127.0.0.1:9394/metrics)"
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| format!("--metrics: cannot set up the HTTP client: {e}"))?;
        Ok(Metrics {
            url: url.to_string(),
            shown,
            client,
        })
    }

    /// The page's text; None when it cannot be read (status, size, encoding).
    pub async fn fetch(&self) -> Option<String> {
        let mut resp = self.client.get(&self.url).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            if body.len() + chunk.len() > MAX_SCRAPE_BYTES {
                return None;
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).ok()
    }
}

impl Source for Metrics {
    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async move {
            match self.fetch().await {
                Some(text) => pools(&parse(&text), &self.shown),
                None => Vec::new(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_targets_pools_and_rails_exporters_are_recognised() {
        let text = "# TYPE powertune_target_db_pool_size gauge\npowertune_target_db_pool_size 25\npowertune_target_db_pool_in_use 25\npowertune_target_db_pool_waiting 31\n# TYPE powertune_target_db_pool_timeouts_total counter\npowertune_target_db_pool_timeouts_total 2\n# TYPE ruby_puma_max_threads gauge\nruby_puma_max_threads{phase=\"0\"} 5\nruby_puma_max_threads{phase=\"1\"} 5\nruby_puma_thread_pool_capacity{phase=\"0\"} 0\nruby_puma_thread_pool_capacity{phase=\"1\"} 1\nruby_puma_request_backlog 3\n";
        let p = pools(&parse(text), "m");
        assert_eq!(p.len(), 2);
        let db = &p[0];
        assert_eq!(db.0.kind, Kind::DbPool);
        assert_eq!(db.1.utilisation, Some(1.0));
        assert_eq!(db.1.saturation, Some(31.0));
        assert_eq!(db.1.errors, Some(2.0));
        let puma = &p[1];
        assert_eq!(puma.0.resource, "Puma threads");
        assert_eq!(puma.1.used, Some(9.0));
        assert_eq!(puma.1.capacity, Some(10.0));
        assert!(pools(&parse("garbage {"), "m").is_empty());
    }

    #[test]
    fn a_bad_url_is_refused_before_any_fetch() {
        assert!(Metrics::new("ftp://x/metrics").is_err());
        assert!(Metrics::new("not a url").is_err());
        let e = Metrics::new("http://u:secret@[::1/metrics")
            .err()
            .unwrap_or_default();
        assert!(!e.contains("secret"), "{e}");
    }
}
