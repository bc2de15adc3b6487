use super::*;
use crate::metrics::Shard;
use crate::plan::Plan;
use crate::segment::Share;
use crate::snapshot::Collected;
use powertune_core::LatencyHistogram;
use std::time::Duration;

fn plan(thresholds: &str) -> Plan {
    Plan::from_toml_str(
        &format!("[thresholds]\n{thresholds}\n[scenarios.x]\nendpoint_type = \"auth\"\nexecutor = \"constant-vus\"\nvus = 8\nduration = \"1s\"\n[[scenarios.x.steps]]\nurl = \"/\"\n"),
        "p.toml",
    )
    .unwrap()
}

/// Segment `i` (1-based) of `n` of `plan`, having measured `lat_ms`, started
/// `offset_ms` after a fixed time and lasting 10 s.
fn part(plan: &Plan, i: usize, n: usize, lat_ms: &[u64], offset_ms: i64) -> Part {
    let mut p = plan.clone();
    p.split(Share::parse(&format!("{i}/{n}"), None).unwrap())
        .unwrap();
    let mut shard = Shard::new(p.n_series, p.scenarios.len(), p.n_checks);
    for ms in lat_ms {
        let s = &mut shard.series[0];
        s.reqs += 1;
        s.duration.record(Duration::from_millis(*ms));
        s.raw.record(Duration::from_millis(*ms));
        shard.scenarios[0].iterations += 1;
    }
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut s = Summary::build(Collected {
        plan: &p,
        shard: &shard,
        elapsed: Duration::from_secs(10),
        started_at: t0 + chrono::Duration::milliseconds(offset_ms),
        base_url: "http://x/",
        vus_max: 2,
        scenario_vus_max: &[2],
        vus: None,
        aborted: None,
    });
    s.thresholds = evaluate(&s, &p.thresholds);
    Part {
        name: format!("part{i}.json"),
        version: "0.1.0".into(),
        summary: s,
    }
}

fn lats(n: u64, ms: u64) -> Vec<u64> {
    (0..n).map(|k| ms + k % 7).collect()
}

#[test]
fn merged_quantiles_equal_the_unions() {
    let p = plan("");
    let sets = [lats(100, 5), lats(50, 40), lats(10, 900), lats(1, 3)];
    let parts: Vec<Part> = sets
        .iter()
        .enumerate()
        .map(|(i, l)| part(&p, i + 1, 4, l, i as i64 * 250))
        .collect();
    let (m, info) = merge(&parts, false).unwrap();
    let mut union = LatencyHistogram::new();
    for l in &sets {
        for ms in l {
            union.record(Duration::from_millis(*ms));
        }
    }
    for q in [50.0, 90.0, 95.0, 99.0, 99.9, 100.0] {
        assert_eq!(
            m.http.duration.histogram.percentile_ms(q),
            union.percentile_ms(q),
            "p{q}"
        );
    }
    assert_eq!(m.http.duration.stats, union.stats());
    assert_eq!(m.http.reqs, 161);
    assert_eq!(m.scenarios[0].steps[0].http.reqs, 161);
    assert_eq!(m.endpoint_types[0].http.reqs, 161);
    assert_eq!(m.iterations, 161);
    // The common window: the first start to the last end (750 ms + 10 s).
    assert!((m.duration_s - 10.75).abs() < 1e-9, "{}", m.duration_s);
    assert!((m.http.rate - 161.0 / 10.75).abs() < 1e-9);
    assert_eq!(m.started_at, "2026-12-05T10:00:00.000Z");
    assert!(m.segment.is_none());
    assert_eq!(info.parts.len(), 4);
    assert_eq!(info.sequence, "0,1/4,1/2,3/4,1");
    assert!(info.missing.is_empty());
}

#[test]
fn thresholds_are_judged_on_the_whole() {
    // Each part has 100 requests: count<150 passes on each, fails on the whole;
    // count>150 the converse.
    let p = plan("http_reqs = [\"count<150\", \"count>150\"]");
    let parts: Vec<Part> = (1..=2).map(|i| part(&p, i, 2, &lats(100, 5), 0)).collect();
    for part in &parts {
        let oks: Vec<bool> = part.summary.thresholds.iter().map(|t| t.ok).collect();
        assert_eq!(oks, [true, false]);
    }
    let (m, _) = merge(&parts, false).unwrap();
    let oks: Vec<bool> = m.thresholds.iter().map(|t| t.ok).collect();
    assert_eq!(oks, [false, true]);
    assert_eq!(m.thresholds[0].observed, Some(200.0));
    // A latency threshold the other way round: a part with 10 slow requests of 110
    // fails p(95)<500 alone, while the whole (10 slow of 206) passes.
    let p = plan("http_req_duration = [\"p(95)<500\"]");
    let mut a = lats(100, 5);
    a.extend(lats(10, 900));
    let b = lats(96, 5);
    let parts = vec![part(&p, 1, 2, &a, 0), part(&p, 2, 2, &b, 0)];
    assert!(!parts[0].summary.thresholds[0].ok);
    assert!(parts[1].summary.thresholds[0].ok);
    let (m, _) = merge(&parts, false).unwrap();
    assert!(m.thresholds[0].ok, "{:?}", m.thresholds[0]);
}

#[test]
fn refusals_say_what_and_where() {
    let p = plan("");
    let e = |parts: &[Part]| merge(parts, false).unwrap_err().0;
    let a = part(&p, 1, 2, &[5], 0);
    let b = part(&p, 2, 2, &[5], 0);
    // Another plan.
    let other = part(&plan("http_reqs = [\"count>1\"]"), 2, 2, &[5], 0);
    assert!(e(&[a.clone(), other])
        .starts_with("part1.json and part2.json ran different plans (plan hash sha256:"));
    // Overlap.
    let mut dup = a.clone();
    dup.name = "again.json".into();
    assert_eq!(
        e(&[a.clone(), dup]),
        "overlapping segments: part1.json and again.json both ran segment 0:1/2 of 0,1/2,1"
    );
    // Another split of the same plan.
    let third = part(&p, 2, 3, &[5], 0);
    assert!(e(&[a.clone(), third])
        .contains("were split differently (--segment-sequence 0,1/2,1 vs 0,1/3,2/3,1)"));
    // Missing.
    assert_eq!(
        e(std::slice::from_ref(&a)),
        "missing segment 1/2:1 of 0,1/2,1 (1 of 2 parts given); give every part, or --allow-partial to merge what is there"
    );
    let (m, info) = merge(std::slice::from_ref(&a), true).unwrap();
    assert_eq!(info.missing, ["1/2:1"]);
    assert_eq!(m.http.reqs, 1);
    let i = inspect_merge(
        std::slice::from_ref(&a),
        true,
        None,
        &powertune_core::Targets::default(),
    )
    .unwrap();
    assert_eq!(i.findings[0].check, "segments_missing");
    assert_eq!(i.findings[0].verdict, powertune_core::Verdict::Warn);
    // Versions.
    let mut newer = b.clone();
    newer.version = "0.2.0".into();
    assert_eq!(
        e(&[a.clone(), newer]),
        "part2.json was written by powertune 0.2.0, part1.json by 0.1.0; merge parts written by one powertune version"
    );
    // A whole run.
    let mut whole = b.clone();
    whole.summary.segment = None;
    assert!(e(&[a, whole]).starts_with("part2.json is a whole run, not a segment"));
    assert!(merge(&[], false)
        .unwrap_err()
        .0
        .starts_with("no parts to merge"));
}
