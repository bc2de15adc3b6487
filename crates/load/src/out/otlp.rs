//! OTLP metrics over HTTP (`--out otlp=URL`): an `ExportMetricsServiceRequest`
//! (protobuf, `Content-Type: application/x-protobuf`) POSTed to `/v1/metrics`.
//!
//! Every figure is cumulative since the run's start (`start_time_unix_nano` is the
//! start, `time_unix_nano` the moment sampled), the OTLP exporters' default
//! temporality. Latency is an explicit-bucket histogram with the fixed bounds
//! [`BOUNDS_S`] (seconds): every receiver takes it (Prometheus turns it into a
//! classic `_bucket{le}` histogram without any feature flag), the bounds are the same
//! in every segment, so the buckets of several load machines add up, and the bounds
//! include the runbook's latency targets, so a bucket answers "how many requests met
//! the target" exactly.
//!
//! Metric names are those of remote write without the `_total` suffix (receivers that
//! translate to Prometheus names add it to monotonic sums): see docs/scale-out.md.
//! A 429, 502, 503 or 504 answer (OTLP/HTTP's retryable ones) is retried once after
//! 200 ms; a partial success that rejected data points counts as a failed push.

use super::{by_endpoint_type, Batch};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use powertune_core::LatencyHistogram;
use std::collections::BTreeMap;

/// The path OTLP/HTTP receivers serve metrics on, added to a URL given without one.
pub const DEFAULT_PATH: &str = "/v1/metrics";

/// The latency histogram's upper bounds, in seconds: OpenTelemetry's HTTP semantic
/// conventions' advice (5 ms … 10 s) with the runbook's latency targets added
/// (150 ms, 200 ms, 300 ms, 2 s) and finer steps below 5 ms for fast endpoints.
pub const BOUNDS_S: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0, 2.0,
    2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
];

/// The counts of `h` (microseconds) in the buckets of `bounds_s` (seconds, rising):
/// `bounds_s.len() + 1` counts, bucket `i` holding the values in
/// `(bounds_s[i-1], bounds_s[i]]`, the last one the values above every bound. A value
/// is placed by the lowest value of its HDR bucket (3 significant digits), so a value
/// recorded exactly at a bound counts in that bound's bucket.
pub fn bucket_counts(h: &LatencyHistogram, bounds_s: &[f64]) -> Vec<u64> {
    let bounds_us: Vec<u64> = bounds_s.iter().map(|b| (b * 1e6).round() as u64).collect();
    let mut counts = vec![0u64; bounds_s.len() + 1];
    let inner = h.inner();
    for v in inner.iter_recorded() {
        let low = inner.lowest_equivalent(v.value_iterated_to());
        let i = bounds_us.partition_point(|b| *b < low);
        if let Some(c) = counts.get_mut(i) {
            *c += v.count_at_value();
        }
    }
    counts
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// The data points of one batch, grouped by metric.
struct Points {
    start_ns: u64,
    at_ns: u64,
    numbers: BTreeMap<&'static str, Vec<NumberDataPoint>>,
    histograms: Vec<HistogramDataPoint>,
}

impl Points {
    fn number(&mut self, name: &'static str, attrs: &[KeyValue], v: number_data_point::Value) {
        self.numbers.entry(name).or_default().push(NumberDataPoint {
            attributes: attrs.to_vec(),
            start_time_unix_nano: self.start_ns,
            time_unix_nano: self.at_ns,
            value: Some(v),
            ..Default::default()
        });
    }
}

/// A number metric's kind: a cumulative monotonic sum or a gauge.
enum Kind {
    Counter,
    Gauge,
}

/// (name, unit, description, kind) of every number metric, in the order sent.
const NUMBERS: &[(&str, &str, &str, Kind)] = &[
    (
        "k6_http_reqs",
        "{request}",
        "HTTP requests since the start",
        Kind::Counter,
    ),
    (
        "powertune_http_req_failures",
        "{request}",
        "failed HTTP requests (errors and statuses outside 200-399) since the start",
        Kind::Counter,
    ),
    (
        "k6_http_req_failed_rate",
        "1",
        "failed HTTP requests / HTTP requests since the start",
        Kind::Gauge,
    ),
    (
        "k6_iterations",
        "{iteration}",
        "iterations since the start",
        Kind::Counter,
    ),
    (
        "k6_dropped_iterations",
        "{iteration}",
        "iterations an arrival-rate executor could not start",
        Kind::Counter,
    ),
    ("k6_vus", "{vu}", "VUs running", Kind::Gauge),
];

/// The latency histogram's name.
pub const DURATION: &str = "k6_http_req_duration";

fn nanos(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

/// The batch as an OTLP export request: one resource (`service.name` powertune), one
/// scope (`powertune-load`), every metric's points labelled `scenario`,
/// `endpoint_type` (HTTP figures) and `segment`.
pub fn request(b: &Batch) -> ExportMetricsServiceRequest {
    use number_data_point::Value::{AsDouble, AsInt};
    let l = &b.live;
    let mut p = Points {
        start_ns: nanos(b.start_ms),
        at_ns: nanos(b.at_ms),
        numbers: BTreeMap::new(),
        histograms: Vec::new(),
    };
    let seg = text("segment", &l.segment);
    let int = |n: u64| AsInt(i64::try_from(n).unwrap_or(i64::MAX));
    for (i, sc) in l.summary.scenarios.iter().enumerate() {
        for (t, h) in &by_endpoint_type(sc) {
            let attrs = [
                text("endpoint_type", t),
                text("scenario", &sc.name),
                seg.clone(),
            ];
            p.number("k6_http_reqs", &attrs, int(h.reqs));
            p.number("powertune_http_req_failures", &attrs, int(h.failed));
            p.number("k6_http_req_failed_rate", &attrs, AsDouble(h.failed_rate()));
            let d = &h.duration;
            let has = h.reqs > 0 && d.stats.count > 0;
            p.histograms.push(HistogramDataPoint {
                attributes: attrs.to_vec(),
                start_time_unix_nano: p.start_ns,
                time_unix_nano: p.at_ns,
                count: d.stats.count,
                sum: Some(d.stats.avg * d.stats.count as f64 / 1000.0),
                bucket_counts: bucket_counts(&d.histogram, BOUNDS_S),
                explicit_bounds: BOUNDS_S.to_vec(),
                min: has.then(|| d.stats.min / 1000.0),
                max: has.then(|| d.stats.max / 1000.0),
                ..Default::default()
            });
        }
        let attrs = [text("scenario", &sc.name), seg.clone()];
        p.number("k6_iterations", &attrs, int(sc.iterations));
        p.number("k6_dropped_iterations", &attrs, int(sc.dropped_iterations));
        let vus = l.scenario_vus.get(i).copied().unwrap_or(0);
        p.number("k6_vus", &attrs, int(vus));
    }
    p.number("k6_vus", std::slice::from_ref(&seg), int(l.vus));

    let cumulative = AggregationTemporality::Cumulative as i32;
    let mut metrics: Vec<Metric> = Vec::new();
    for (name, unit, description, kind) in NUMBERS {
        let Some(data_points) = p.numbers.remove(name) else {
            continue;
        };
        let data = match kind {
            Kind::Counter => metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: cumulative,
                is_monotonic: true,
            }),
            Kind::Gauge => metric::Data::Gauge(Gauge { data_points }),
        };
        metrics.push(Metric {
            name: (*name).to_string(),
            unit: (*unit).to_string(),
            description: (*description).to_string(),
            data: Some(data),
            ..Default::default()
        });
    }
    if !p.histograms.is_empty() {
        metrics.push(Metric {
            name: DURATION.to_string(),
            unit: "s".to_string(),
            description:
                "HTTP request latency from the scheduled start (coordinated-omission corrected)"
                    .to_string(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: p.histograms,
                aggregation_temporality: cumulative,
            })),
            ..Default::default()
        });
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "powertune"),
                    text("service.version", env!("CARGO_PKG_VERSION")),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "powertune-load".to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub(super) async fn push(
    client: &reqwest::Client,
    url: &url::Url,
    b: &Batch,
) -> Result<(), String> {
    let body = prost::Message::encode_to_vec(&request(b));
    let headers = [("Content-Type", "application/x-protobuf")];
    let answer = super::post(client, url, &headers, body, |s| {
        matches!(s.as_u16(), 429 | 502 | 503 | 504)
    })
    .await?;
    let resp: ExportMetricsServiceResponse =
        prost::Message::decode(answer.as_slice()).unwrap_or_default();
    match resp.partial_success {
        Some(p) if p.rejected_data_points > 0 => Err(format!(
            "{} rejected {} data point(s): {}",
            powertune_core::redact::url(url.as_str()),
            p.rejected_data_points,
            powertune_core::redact::text(&p.error_message)
        )),
        _ => Ok(()),
    }
}
