//! One Prometheus text-exposition writer (format 0.0.4), on the `prometheus-client`
//! crate's encoder, for every service that serves `/metrics`.
//!
//! Services keep their own counters and build an [`Exposition`] from a snapshot at
//! scrape time. Names follow Prometheus conventions: base units (`_seconds`,
//! `_bytes`), and counters are given without `_total`, which the encoder appends
//! (`counter("gateway_requests", …)` is exposed as `gateway_requests_total`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Label pairs of one sample.
pub type Labels = Vec<(String, String)>;

#[derive(Debug, Clone)]
enum Sample {
    Value(f64),
    Histogram {
        sum: f64,
        count: u64,
        /// Cumulative counts per upper bound, ascending, without `+Inf`.
        buckets: Vec<(f64, u64)>,
    },
}

#[derive(Debug, Clone)]
struct Family {
    name: String,
    help: String,
    kind: MetricType,
    samples: Vec<(Labels, Sample)>,
}

/// Metric families built at scrape time; [`Exposition::render`] writes the text.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    families: Vec<Family>,
}

/// Adds samples to one family.
pub struct FamilyWriter<'a> {
    family: &'a mut Family,
}

impl FamilyWriter<'_> {
    /// One sample with these labels.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.family
            .samples
            .push((owned(labels), Sample::Value(value)));
        self
    }

    /// One histogram sample: `buckets` are cumulative counts per upper bound in
    /// seconds (or the family's base unit), ascending; `+Inf` is added from `count`.
    pub fn histogram(
        &mut self,
        labels: &[(&str, &str)],
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    ) -> &mut Self {
        self.family.samples.push((
            owned(labels),
            Sample::Histogram {
                sum,
                count,
                buckets,
            },
        ));
        self
    }
}

fn owned(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    fn family(&mut self, name: &str, help: &str, kind: MetricType) -> FamilyWriter<'_> {
        self.families.push(Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            samples: Vec::new(),
        });
        let last = self.families.len() - 1;
        FamilyWriter {
            family: &mut self.families[last],
        }
    }

    /// A counter family (exposed as `NAME_total`).
    pub fn counter(&mut self, name: &str, help: &str) -> FamilyWriter<'_> {
        self.family(name, help, MetricType::Counter)
    }

    /// A gauge family.
    pub fn gauge(&mut self, name: &str, help: &str) -> FamilyWriter<'_> {
        self.family(name, help, MetricType::Gauge)
    }

    /// A histogram family (`NAME_bucket`, `NAME_sum`, `NAME_count`).
    pub fn histogram(&mut self, name: &str, help: &str) -> FamilyWriter<'_> {
        self.family(name, help, MetricType::Histogram)
    }

    /// The text exposition.
    pub fn render(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error leaves what was written.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let mut metric = encoder.encode_descriptor(&f.name, &f.help, None, f.kind)?;
            for (labels, sample) in &f.samples {
                let mut m = metric.encode_family(labels)?;
                match (sample, f.kind) {
                    (Sample::Value(v), MetricType::Counter) => {
                        ConstCounter::new(*v).encode(m)?;
                    }
                    (Sample::Value(v), _) => {
                        ConstGauge::new(*v).encode(m)?;
                    }
                    (
                        Sample::Histogram {
                            sum,
                            count,
                            buckets,
                        },
                        _,
                    ) => {
                        // The encoder takes per-bucket counts and adds `+Inf` from
                        // `count`; ours are cumulative.
                        let mut prev = 0;
                        let per: Vec<(f64, u64)> = buckets
                            .iter()
                            .map(|(le, c)| {
                                let n = c.saturating_sub(prev);
                                prev = *c;
                                (*le, n)
                            })
                            .collect();
                        m.encode_histogram::<Labels>(*sum, *count, &per, None::<&HashMap<_, _>>)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_follow_the_format() {
        let mut e = Exposition::new();
        e.counter("gateway_requests", "Requests received")
            .sample(&[("route", "latency")], 3.0)
            .sample(&[("route", "batch")], 1.0);
        e.gauge("gateway_breakers_open", "Breakers open")
            .sample(&[], 0.0);
        e.histogram("gateway_overhead_seconds", "Gateway time per call")
            .histogram(&[], 0.5, 4, vec![(0.001, 1), (0.01, 3)]);
        let text = e.render();
        assert!(
            text.contains("# TYPE gateway_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains("gateway_requests_total{route=\"latency\"} 3"),
            "{text}"
        );
        assert!(text.contains("gateway_breakers_open 0"), "{text}");
        assert!(
            text.contains("gateway_overhead_seconds_bucket{le=\"0.01\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("gateway_overhead_seconds_bucket{le=\"+Inf\"} 4"),
            "{text}"
        );
        assert!(text.contains("gateway_overhead_seconds_count 4"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::new();
        e.gauge("x", "x").sample(&[("model", "a\"b\\c\nd")], 1.0);
        let text = e.render();
        assert!(text.contains(r#"x{model="a\"b\\c\nd"} 1"#), "{text}");
    }
}
