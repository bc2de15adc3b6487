use super::*;
use crate::metrics::Shard;
use crate::plan::Plan;

/// One second of a one-step `auth` scenario: `reqs` requests (and iterations),
/// `failed` of them failed, latencies `ms`.
fn auth_run(reqs: u64, failed: u64, ms: &[u64]) -> crate::snapshot::Summary {
    let plan = Plan::from_toml_str(
        "[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/x\"\n",
        "p.toml",
    )
    .unwrap();
    let mut shard = Shard::new(plan.n_series, 1, plan.n_checks);
    shard.series[0].reqs = reqs;
    shard.series[0].failed = failed;
    for m in ms {
        shard.series[0].duration.record(Duration::from_millis(*m));
    }
    shard.scenarios[0].iterations = reqs;
    crate::snapshot::one_scenario(&plan, &shard, Duration::from_secs(1))
}

#[test]
fn sinks_are_read_and_bad_ones_named() {
    assert_eq!(
        Sink::parse("prometheus-rw=http://127.0.0.1:9090/api/v1/write")
            .unwrap()
            .kind(),
        "prometheus-rw"
    );
    let e = Sink::parse("influx=http://x").unwrap_err();
    assert!(e.contains("--out `influx` is not supported"), "{e}");
    let e = Sink::parse("prometheus-rw=ftp://x").unwrap_err();
    assert!(e.contains("scheme ftp"), "{e}");
    let e = Sink::parse("prometheus-rw").unwrap_err();
    assert!(e.contains("is not KIND=TARGET"), "{e}");
}

#[test]
fn samples_are_labelled_per_scenario_endpoint_type_and_segment() {
    let s = auth_run(10, 1, &[250]);
    let v = samples(&s, &[3], 3, "1/4:1/2");
    let get = |name: &str| v.iter().find(|x| x.name == name).unwrap();
    assert_eq!(get("k6_http_reqs_total").value, 10.0);
    assert_eq!(get("k6_http_req_failed_rate").value, 0.1);
    assert_eq!(get("powertune_http_req_failures_total").value, 1.0);
    assert!((get("k6_http_req_duration_max").value - 0.25).abs() < 0.001);
    assert_eq!(
        get("k6_http_reqs_total").labels,
        [
            ("endpoint_type", "authentication".to_string()),
            ("scenario", "a".to_string()),
            ("segment", "1/4:1/2".to_string())
        ]
    );
    let whole = v
        .iter()
        .find(|x| x.name == "k6_vus" && x.labels.len() == 1)
        .unwrap();
    assert_eq!(whole.value, 3.0);
    // The request: __name__ and the labels sorted, one sample each, snappy-framed body
    // that decodes back.
    let b = Batch {
        at_ms: 1_700_000_000_000,
        start_ms: 1_699_999_999_000,
        live: Arc::new(Live {
            summary: s,
            scenario_vus: vec![3],
            vus: 3,
            segment: "1/4:1/2".into(),
        }),
    };
    let req = prometheus_rw::request(&b);
    assert_eq!(req.timeseries.len(), v.len());
    let names: Vec<&str> = req.timeseries[0]
        .labels
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(names, ["__name__", "endpoint_type", "scenario", "segment"]);
    let body = prometheus_rw::body(&b).unwrap();
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let back: prometheus_rw::WriteRequest = prost::Message::decode(raw.as_slice()).unwrap();
    assert_eq!(back, req);
}

#[test]
fn otlp_urls_get_the_default_path_only_when_they_have_none() {
    let u = |t: &str| match Sink::parse(t).unwrap() {
        Sink::Otlp(u) => u.to_string(),
        s => panic!("{s:?}"),
    };
    assert_eq!(
        u("otlp=http://127.0.0.1:4318"),
        "http://127.0.0.1:4318/v1/metrics"
    );
    assert_eq!(
        u("otlp=http://127.0.0.1:4318/"),
        "http://127.0.0.1:4318/v1/metrics"
    );
    assert_eq!(
        u("otlp=http://127.0.0.1:9090/api/v1/otlp/v1/metrics"),
        "http://127.0.0.1:9090/api/v1/otlp/v1/metrics"
    );
    let e = Sink::parse("otlp=grpc://x:4317").unwrap_err();
    assert!(e.contains("--out otlp: scheme grpc"), "{e}");
}

#[test]
fn latencies_fall_in_the_bucket_whose_upper_bound_they_reach() {
    let mut h = powertune_core::LatencyHistogram::new();
    for us in [500, 1_000, 150_000, 151_000, 70_000_000] {
        h.record_micros(us);
    }
    let c = otlp::bucket_counts(&h, &[0.001, 0.15, 60.0]);
    // (..1ms] (1ms..150ms] (150ms..60s] (60s..)
    assert_eq!(c, [2, 1, 1, 1]);
    assert_eq!(otlp::bucket_counts(&Default::default(), &[0.1]), [0, 0]);
}

#[test]
fn otlp_request_is_cumulative_labelled_and_decodes_back() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, AggregationTemporality};
    let s = auth_run(3, 1, &[20, 120, 400]);
    let b = Batch {
        at_ms: 1_700_000_001_000,
        start_ms: 1_700_000_000_000,
        live: Arc::new(Live {
            summary: s,
            scenario_vus: vec![2],
            vus: 2,
            segment: "0:1".into(),
        }),
    };
    let req = otlp::request(&b);
    let back: ExportMetricsServiceRequest =
        prost::Message::decode(prost::Message::encode_to_vec(&req).as_slice()).unwrap();
    assert_eq!(back, req);
    let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
    let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "k6_http_reqs",
            "powertune_http_req_failures",
            "k6_http_req_failed_rate",
            "k6_iterations",
            "k6_dropped_iterations",
            "k6_vus",
            "k6_http_req_duration"
        ]
    );
    let Some(Data::Sum(reqs)) = &metrics[0].data else {
        panic!("{:?}", metrics[0])
    };
    assert!(reqs.is_monotonic);
    assert_eq!(
        reqs.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let p = &reqs.data_points[0];
    assert_eq!(p.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(p.time_unix_nano, 1_700_000_001_000_000_000);
    let keys: Vec<&str> = p.attributes.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["endpoint_type", "scenario", "segment"]);
    let Some(Data::Gauge(vus)) = &metrics[5].data else {
        panic!()
    };
    assert_eq!(vus.data_points.len(), 2, "per scenario and the process");
    let Some(Data::Histogram(h)) = &metrics[6].data else {
        panic!()
    };
    let d = &h.data_points[0];
    assert_eq!(d.count, 3);
    assert_eq!(d.bucket_counts.iter().sum::<u64>(), 3);
    assert_eq!(d.bucket_counts.len(), otlp::BOUNDS_S.len() + 1);
    let over_300ms: u64 = otlp::BOUNDS_S
        .iter()
        .zip(&d.bucket_counts)
        .filter(|(b, _)| **b > 0.3)
        .map(|(_, c)| c)
        .sum::<u64>()
        + d.bucket_counts.last().unwrap();
    assert_eq!(over_300ms, 1);
    assert!((d.max.unwrap() - 0.4).abs() < 0.001, "{:?}", d.max);
    assert!((d.sum.unwrap() - 0.54).abs() < 0.01, "{:?}", d.sum);
}
