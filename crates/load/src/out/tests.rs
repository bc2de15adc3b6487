use super::*;
use crate::metrics::Shard;
use crate::plan::Plan;

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
    let plan = Plan::from_toml_str(
        "[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/x\"\n",
        "p.toml",
    )
    .unwrap();
    let mut shard = Shard::new(plan.n_series, 1, plan.n_checks);
    shard.series[0].reqs = 10;
    shard.series[0].failed = 1;
    shard.series[0].duration.record(Duration::from_millis(250));
    shard.scenarios[0].iterations = 10;
    let s = crate::snapshot::one_scenario(&plan, &shard, Duration::from_secs(1));
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
        samples: v.clone(),
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
