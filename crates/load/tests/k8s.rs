//! The `--k8s-job` manifest: every document validates against the Kubernetes v1.33
//! schema of its kind (strict: unknown fields fail; fixtures in `fixtures/k8s/`), the
//! Job is an Indexed Job of N pods, and the segments the pods run add up to the plan.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use powertune_load::k8s::{manifest, JobSpec};
use powertune_load::plan::Executor;
use powertune_load::segment::{parse_sequence, Share};
use powertune_load::Plan;
use serde::Deserialize;
use std::path::Path;

const PLAN: &str = "[scenarios.browse]\nendpoint_type = \"read_crud\"\nexecutor = \"constant-vus\"\nvus = 10\nduration = \"30s\"\n[[scenarios.browse.steps]]\nurl = \"/health\"\n[scenarios.burst]\nendpoint_type = \"auth\"\nexecutor = \"constant-arrival-rate\"\nrate = 1000\nduration = \"30s\"\npre_allocated_vus = 20\nmax_vus = 50\n[[scenarios.burst.steps]]\nurl = \"/health\"\n[scenarios.batch]\nendpoint_type = \"read_crud\"\nexecutor = \"shared-iterations\"\nvus = 7\niterations = 1001\n[[scenarios.batch.steps]]\nurl = \"/health\"\n";

fn spec(n: u32) -> JobSpec {
    JobSpec {
        name: "powertune-plan".into(),
        image: "registry.example/powertune:0.2".into(),
        segments: n,
        files: vec![("plan.toml".into(), PLAN.into())],
        plan_file: "plan.toml".into(),
        targets: Some("[api]\n".into()),
        base_url: "http://app.default.svc:8080".into(),
        start_at: "2026-12-05T10:00:00Z".into(),
        extra_args: vec!["--time-scale".into(), "0.5".into()],
        results_size: "1Gi".into(),
    }
}

fn docs(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .collect()
}

fn validator(kind: &str) -> jsonschema::Validator {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/k8s/{kind}-v1.33.json"));
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn check(doc: &serde_json::Value) {
    let kind = doc["kind"].as_str().unwrap().to_ascii_lowercase();
    let errors: Vec<String> = validator(&kind)
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{kind}: {errors:#?}");
}

#[test]
fn every_document_is_a_valid_kubernetes_object() {
    let d = docs(&manifest(&spec(4)).unwrap());
    let kinds: Vec<&str> = d.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ConfigMap", "PersistentVolumeClaim", "Job", "Job"]);
    d.iter().for_each(check);
    assert_eq!(d[0]["data"]["plan.toml"], PLAN);
    assert_eq!(d[0]["data"]["powertune.toml"], "[api]\n");
    let job = &d[2]["spec"];
    assert_eq!(job["completionMode"], "Indexed");
    assert_eq!(job["completions"], 4);
    assert_eq!(job["parallelism"], 4);
    assert_eq!(job["template"]["spec"]["securityContext"]["fsGroup"], 65532);
    let args: Vec<&str> = job["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--segment-index", "$(JOB_COMPLETION_INDEX)"]),
        "{args:?}"
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--start-at", "2026-12-05T10:00:00Z"]),
        "{args:?}"
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--json", "/results/part-$(JOB_COMPLETION_INDEX).json"]),
        "{args:?}"
    );
    assert!(
        args.windows(2).any(|w| w == ["--time-scale", "0.5"]),
        "{args:?}"
    );
    // The merge Job waits suspended and reads the N parts.
    let merge = &d[3]["spec"];
    assert_eq!(merge["suspend"], true);
    let margs = merge["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    assert_eq!(margs[0], "merge");
    assert!(margs.iter().any(|a| a == "/results/part-3.json"));
    assert!(!margs.iter().any(|a| a == "/results/part-4.json"));
}

#[test]
fn the_schema_catches_a_broken_job() {
    // The check can fail: a misspelt field and a wrong type are refused.
    let mut d = docs(&manifest(&spec(2)).unwrap());
    d[2]["spec"]["completionMod"] = "Indexed".into();
    assert!(!validator("job").is_valid(&d[2]));
    let mut d = docs(&manifest(&spec(2)).unwrap());
    d[2]["spec"]["parallelism"] = "two".into();
    assert!(!validator("job").is_valid(&d[2]));
}

/// `--name value` from a pod's arguments.
fn arg<'a>(args: &'a [serde_json::Value], name: &str) -> &'a str {
    let i = args.iter().position(|a| a == name).unwrap();
    args[i + 1].as_str().unwrap()
}

#[test]
fn the_pods_segments_add_up_to_the_plan() {
    for n in [1u32, 2, 3, 4, 5, 7] {
        let d = docs(&manifest(&spec(n)).unwrap());
        let args = d[2]["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .clone();
        let seq = arg(&args, "--segment-sequence");
        let whole = Plan::from_toml_str(PLAN, "plan.toml").unwrap();
        let (mut vus, mut max_vus, mut iterations, mut arrivals) = (0u32, 0u32, 0u64, 0u64);
        // Each pod k gets JOB_COMPLETION_INDEX = k.
        for k in 0..n {
            let index: usize = arg(&args, "--segment-index")
                .replace("$(JOB_COMPLETION_INDEX)", &k.to_string())
                .parse()
                .unwrap();
            let mut p = whole.clone();
            p.split(Share::new(parse_sequence(seq).unwrap(), index).unwrap())
                .unwrap();
            for sc in &p.scenarios {
                match &sc.executor {
                    Executor::ConstantVus { vus: v, .. } => vus += v,
                    Executor::ConstantArrivalRate { max_vus: m, .. } => {
                        max_vus += m;
                        arrivals += (0..30_000u64).filter(|i| p.segment.owns(*i)).count() as u64;
                    }
                    Executor::SharedIterations { iterations: i, .. } => iterations += i,
                    _ => {}
                }
            }
        }
        assert_eq!(
            (vus, max_vus, iterations, arrivals),
            (10, 50, 1001, 30_000),
            "{n} pods"
        );
    }
}

#[test]
fn names_and_limits() {
    let mut s = spec(2);
    s.files.push(("big.csv".into(), "x".repeat(1_000_001)));
    let e = manifest(&s).unwrap_err().to_string();
    assert!(
        e.starts_with("--k8s-job: the plan and its data files are"),
        "{e}"
    );
    assert_eq!(
        powertune_load::k8s::dns_label("Powertune_My Plan!"),
        "powertune-my-plan"
    );
    assert_eq!(powertune_load::k8s::equal_sequence(4), "0,1/4,1/2,3/4,1");
}
