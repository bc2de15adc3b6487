//! A split run as a user runs it: `powertune load --segment i/4` as four processes
//! against the embedded target, then `powertune merge` of their reports — totals
//! against the target's own count, rates, exact quantiles, thresholds judged on the
//! whole, and every refusal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{one_line_error, stderr, stdout};
use powertune_core::LatencyHistogram;
use std::path::{Path, PathBuf};
use std::process::Output;

async fn powertune(args: &[&str]) -> Output {
    common::powertune_within(args, 90).await
}

async fn target() -> powertune_target::RunningTarget {
    powertune_target::start(
        powertune_target::TargetConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn write_plan(dir: &Path, executor: &str, thresholds: &str) -> PathBuf {
    let p = dir.join("plan.toml");
    std::fs::write(
        &p,
        format!(
            "[thresholds]\n{thresholds}\n[scenarios.health]\nendpoint_type = \"read_crud\"\n{executor}\n[[scenarios.health.steps]]\nurl = \"/health\"\n"
        ),
    )
    .unwrap();
    p
}

/// Runs the four segments of `plan` at once (one process each, one common start);
/// returns the part files and the processes' outputs.
async fn four_parts(dir: &Path, plan: &Path, base: &str) -> (Vec<PathBuf>, Vec<Output>) {
    let start = (chrono::Utc::now() + chrono::Duration::milliseconds(1500))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let files: Vec<PathBuf> = (1..=4).map(|i| dir.join(format!("part{i}.json"))).collect();
    let runs: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let seg = format!("{}/4", i + 1);
            let (plan, f, start) = (plan.to_path_buf(), f.clone(), start.clone());
            let base = base.to_string();
            tokio::spawn(async move {
                powertune(&[
                    "load",
                    plan.to_str().unwrap(),
                    "--base-url",
                    &base,
                    "--segment",
                    &seg,
                    "--start-at",
                    &start,
                    "--json",
                    f.to_str().unwrap(),
                    "-q",
                ])
                .await
            })
        })
        .collect();
    let mut outs = Vec::new();
    for r in runs {
        outs.push(r.await.unwrap());
    }
    (files, outs)
}

/// `powertune merge PARTS… EXTRA…`.
async fn merge(parts: &[PathBuf], extra: &[&str]) -> Output {
    let mut args = vec!["merge"];
    args.extend(strs(parts));
    args.extend(extra);
    powertune(&args).await
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn strs(v: &[PathBuf]) -> Vec<&str> {
    v.iter().map(|p| p.to_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_merge_to_the_targets_count_with_exact_quantiles() {
    let t = target().await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        dir.path(),
        "executor = \"shared-iterations\"\nvus = 8\niterations = 403\nmax_duration = \"60s\"",
        "http_req_failed = [\"rate<0.01\"]",
    );
    let (parts, outs) = four_parts(dir.path(), &plan, &t.base_url()).await;
    for o in &outs {
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(o), stderr(o));
    }
    let merged = dir.path().join("all.json");
    let html = dir.path().join("all.html");
    let o = merge(
        &parts,
        &[
            "--json",
            merged.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("merged 4 part(s) of 0,1/4,1/2,3/4,1"), "{out}");
    let m = json(&merged);
    assert_eq!(m["command"], "merge");
    let reqs = m["metrics"]["http"]["reqs"].as_u64().unwrap();
    // Every iteration once: the segments' iterations add up to the plan's 403, and the
    // target counted exactly the requests the parts did.
    assert_eq!(reqs, 403);
    assert_eq!(t.stats().total, 403);
    let per_part: Vec<u64> = parts
        .iter()
        .map(|p| json(p)["metrics"]["http"]["reqs"].as_u64().unwrap())
        .collect();
    assert_eq!(per_part, [101, 101, 101, 100]);
    let plan_hash = m["metrics"]["merge"]["plan_hash"].as_str().unwrap();
    for p in &parts {
        let j = json(p);
        assert_eq!(j["metrics"]["plan_hash"], plan_hash);
        assert!(j["metrics"]["segment"]["start_at"].is_string());
    }
    // The merged quantiles are those of the union of the parts' histograms.
    let mut union = LatencyHistogram::new();
    for p in &parts {
        let h = json(p)["metrics"]["http"]["duration"]["histogram"]
            .as_str()
            .unwrap()
            .to_string();
        union
            .merge(&LatencyHistogram::from_base64(&h).unwrap())
            .unwrap();
    }
    let d = &m["metrics"]["http"]["duration"];
    for (key, q) in [("med", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0)] {
        assert_eq!(
            d[key].as_f64().unwrap(),
            union.percentile_ms(q),
            "{key}: {d}"
        );
    }
    assert_eq!(d["max"].as_f64().unwrap(), union.max_ms());
    assert!(std::fs::read_to_string(&html).unwrap().contains("<html"));
    powertune_test_support::schema::check::<powertune_load::merge::MergeMetrics>(
        "merge.v1",
        &m["metrics"],
    );
    // A single process of the same plan makes the same count.
    let single = dir.path().join("single.json");
    let o = powertune(&[
        "load",
        plan.to_str().unwrap(),
        "--base-url",
        &t.base_url(),
        "--json",
        single.to_str().unwrap(),
        "-q",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&single)["metrics"]["http"]["reqs"], 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_split_four_ways_holds_the_planned_rate_in_sum() {
    let t = target().await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        dir.path(),
        "executor = \"constant-arrival-rate\"\nrate = 1000\nduration = \"4s\"\npre_allocated_vus = 40\nmax_vus = 200",
        "",
    );
    let (parts, outs) = four_parts(dir.path(), &plan, &t.base_url()).await;
    for o in &outs {
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(o), stderr(o));
    }
    let merged = dir.path().join("all.json");
    let o = merge(&parts, &["--json", merged.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let m = &json(&merged)["metrics"];
    let iterations = m["iterations"].as_u64().unwrap();
    let dropped = m["dropped_iterations"].as_u64().unwrap();
    // 4 s at 1,000/s is 4,000 arrivals, each started by exactly one segment.
    assert_eq!(iterations + dropped, 4000, "{iterations} + {dropped}");
    assert_eq!(t.stats().total, iterations);
    // The rate over the common window: within 2 % of 1,000/s.
    let rate = m["http"]["rate"].as_f64().unwrap();
    let window = m["duration_s"].as_f64().unwrap();
    let scheduled = iterations as f64 / 4.0;
    assert!(
        (scheduled - 1000.0).abs() <= 20.0,
        "{scheduled}/s over the schedule ({rate}/s over {window} s)"
    );
    assert!(
        (rate - 1000.0).abs() <= 0.02 * 1000.0 || window > 4.0,
        "{rate} over {window}"
    );
    let per: Vec<u64> = parts
        .iter()
        .map(|p| {
            json(p)["metrics"]["iterations"].as_u64().unwrap()
                + json(p)["metrics"]["dropped_iterations"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(per, [1000, 1000, 1000, 1000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_are_judged_on_the_whole_not_the_parts() {
    let t = target().await;
    let dir = tempfile::tempdir().unwrap();
    // 100 requests per part: count<150 passes on each part and fails on the 400.
    let plan = write_plan(
        dir.path(),
        "executor = \"shared-iterations\"\nvus = 4\niterations = 400\nmax_duration = \"60s\"",
        "http_reqs = [\"count<150\"]",
    );
    let (parts, outs) = four_parts(dir.path(), &plan, &t.base_url()).await;
    for o in &outs {
        assert_eq!(
            o.status.code(),
            Some(0),
            "a part passes: {}{}",
            stdout(o),
            stderr(o)
        );
    }
    let o = merge(&parts, &[]).await;
    assert_eq!(o.status.code(), Some(99), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("✗ http_reqs: count<150"),
        "{}",
        stdout(&o)
    );
    // The converse: count>150 fails on each part and passes on the whole.
    let sub = dir.path().join("converse");
    std::fs::create_dir(&sub).unwrap();
    let plan = write_plan(
        &sub,
        "executor = \"shared-iterations\"\nvus = 4\niterations = 400\nmax_duration = \"60s\"",
        "http_reqs = [\"count>150\"]",
    );
    let (parts, outs) = four_parts(&sub, &plan, &t.base_url()).await;
    for o in &outs {
        assert_eq!(
            o.status.code(),
            Some(99),
            "a part fails: {}{}",
            stdout(o),
            stderr(o)
        );
    }
    let o = merge(&parts, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_that_do_not_make_one_run_are_refused_in_one_line() {
    let t = target().await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        dir.path(),
        "executor = \"shared-iterations\"\nvus = 4\niterations = 40\nmax_duration = \"60s\"",
        "",
    );
    let (parts, outs) = four_parts(dir.path(), &plan, &t.base_url()).await;
    for o in &outs {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    }
    let p = strs(&parts);
    // Missing.
    let e = one_line_error(&powertune(&["merge", p[0], p[1], p[2]]).await);
    assert!(
        e.contains("missing segment 3/4:1 of 0,1/4,1/2,3/4,1 (3 of 4 parts given)"),
        "{e}"
    );
    let o = powertune(&["merge", p[0], p[1], p[2], "--allow-partial"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("missing: 3/4:1"), "{}", stdout(&o));
    // Overlapping: one part twice.
    let copy = dir.path().join("copy.json");
    std::fs::copy(p[1], &copy).unwrap();
    let e = one_line_error(
        &powertune(&["merge", p[0], p[1], copy.to_str().unwrap(), p[2], p[3]]).await,
    );
    assert!(
        e.contains("overlapping segments:") && e.contains("both ran segment 1/4:1/2"),
        "{e}"
    );
    // Another plan.
    let sub = dir.path().join("other");
    std::fs::create_dir(&sub).unwrap();
    let other = write_plan(
        &sub,
        "executor = \"shared-iterations\"\nvus = 4\niterations = 41\nmax_duration = \"60s\"",
        "",
    );
    let odd = sub.join("odd.json");
    let o = powertune(&[
        "load",
        other.to_str().unwrap(),
        "--base-url",
        &t.base_url(),
        "--segment",
        "4/4",
        "--json",
        odd.to_str().unwrap(),
        "-q",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let e = one_line_error(&powertune(&["merge", p[0], p[1], p[2], odd.to_str().unwrap()]).await);
    assert!(e.contains("ran different plans (plan hash sha256:"), "{e}");
    // Another powertune version.
    let mut v = json(&parts[3]);
    v["powertune_version"] = "9.9.9".into();
    let newer = dir.path().join("newer.json");
    std::fs::write(&newer, v.to_string()).unwrap();
    let e = one_line_error(&powertune(&["merge", p[0], p[1], p[2], newer.to_str().unwrap()]).await);
    assert!(e.contains("was written by powertune 9.9.9"), "{e}");
    // Not a load report.
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    let e = one_line_error(&powertune(&["merge", junk.to_str().unwrap()]).await);
    assert!(e.contains("junk.json: not a powertune load report"), "{e}");
}
