//! The HTML page of a `powertune load` run, as a person opens it: a run of two
//! scenarios (one closed, one open) against a loopback fixture, written with `--html`
//! and opened in headless Chromium; and the same page from the saved `--json` report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{stderr, stdout};
use powertune_test_support::http::{FixtureConfig, TestServer};
use std::path::{Path, PathBuf};
use std::process::Output;

async fn powertune(args: &[&str]) -> Output {
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_powertune"))
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("GITHUB_STEP_SUMMARY")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("powertune finished within 60 s")
    .unwrap()
}

const PLAN: &str = r#"
[thresholds]
http_req_duration = ["p(95)<5"]

[scenarios.browse]
endpoint_type = "read_crud"
executor = "constant-vus"
vus = 3
duration = "2500ms"
[[scenarios.browse.steps]]
name = "list"
url = "/delay"
checks = { status = 200 }

[scenarios.login]
endpoint_type = "authentication"
executor = "constant-arrival-rate"
rate = 20
time_unit = "1s"
duration = "1500ms"
start_time = "1s"
pre_allocated_vus = 4
max_vus = 10
[[scenarios.login.steps]]
name = "login"
method = "POST"
url = "/flaky?token=abc123"
body = "x"
"#;

/// The chart data a page embeds (identical pages draw identical charts).
fn chart_data(html: &str) -> &str {
    let start = html.find(r#"id="charts-data">"#).unwrap();
    let rest = &html[start..];
    &rest[..rest.find("</script>").unwrap()]
}

fn labels(probe: &serde_json::Value, chart: &str) -> Vec<String> {
    probe[chart]["series"]
        .as_array()
        .unwrap_or_else(|| panic!("chart {chart} not drawn: {probe}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_scenario_run_draws_its_page_in_chromium() {
    let srv = TestServer::start(FixtureConfig {
        delay: std::time::Duration::from_millis(20),
        fail_every: 5,
        ..Default::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("two.toml");
    std::fs::write(&plan, PLAN).unwrap();
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let html = out_dir.join("load-run.html");
    let json = tmp.path().join("run.json");
    // A password in the base URL must not reach the page.
    let base = srv.url.replacen("http://", "http://ops:s3cretpw@", 1);
    let o = powertune(&[
        "load",
        plan.to_str().unwrap(),
        "--base-url",
        &base,
        "-q",
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(99), "{}{}", stdout(&o), stderr(&o));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("s3cretpw"), "password on the page");
    assert!(!page.contains("abc123"), "token on the page");

    // The saved report draws the same charts.
    let again = tmp.path().join("again.html");
    let o = powertune(&[
        "report",
        json.to_str().unwrap(),
        "--html",
        again.to_str().unwrap(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));
    let page2 = std::fs::read_to_string(&again).unwrap();
    assert_eq!(chart_data(&page), chart_data(&page2));

    let opened = powertune_test_support::browser::open(
        &html,
        "window.powertuneCharts",
        &out_dir.join("load-run.png"),
    )
    .await
    .unwrap();
    assert!(opened.console.is_empty(), "{:?}", opened.console);
    assert!(opened.exceptions.is_empty(), "{:?}", opened.exceptions);
    assert!(opened.requests.is_empty(), "{:?}", opened.requests);
    let p = &opened.probe;
    assert_eq!(labels(p, "rps"), ["all", "browse", "login"]);
    // An open scenario ran: the raw percentiles are drawn beside the corrected ones.
    assert_eq!(
        labels(p, "latency"),
        ["p50", "p50 raw", "p95", "p95 raw", "p99", "p99 raw"]
    );
    assert_eq!(
        labels(p, "latency-authentication"),
        ["p50", "p50 raw", "p95", "p95 raw", "p99", "p99 raw"]
    );
    assert_eq!(labels(p, "latency-read_crud"), ["p50", "p95", "p99"]);
    assert_eq!(labels(p, "vus"), ["all", "browse", "login"]);
    // Dropped iterations show only when the machine was too busy to start a VU.
    let errors = labels(p, "errors");
    assert_eq!(errors[..2], ["failed", "status ≥ 400"]);
    assert!(
        errors[2..].iter().all(|l| l == "dropped iterations"),
        "{errors:?}"
    );
    // One point a second of the 2.5 s run, plus the run's start.
    let points = p["rps"]["points"].as_u64().unwrap();
    assert!((3..=6).contains(&points), "{points}");
    // The verdict, the failed threshold and the runbook's levels.
    let text = &opened.text;
    assert!(text.contains("FAIL"), "{text}");
    assert!(text.contains("http_req_duration"), "{text}");
    assert!(text.contains("p(95)<5"), "{text}");
    assert!(text.contains("✗ FAIL"), "{text}");
    // The threshold's observed value keeps its unit, as on the terminal.
    let row = text
        .lines()
        .find(|l| l.contains("✗ FAIL") && l.contains("p(95)<5"))
        .unwrap_or_else(|| panic!("no failed threshold row: {text}"));
    assert!(row.trim_end().ends_with("ms"), "{row}");
    for want in [
        "Scenarios",
        "Endpoint types",
        "Thresholds",
        "Checks",
        "browse",
        "login",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert!(text.contains("http://ops:***@127.0.0.1"), "{text}");
    assert!(page.contains(r#""label":"Authentication target""#));
    assert!(page.contains(r#""label":"login start""#));
    assert!(page.contains(r#""label":"browse end""#));
    assert!(
        Path::new(&out_dir.join("load-run.png"))
            .metadata()
            .unwrap()
            .len()
            > 10_000
    );
}

/// A run with a streamed LLM step against the provider simulator (known output
/// length, one in four answers broken by the provider's mid-stream error): the page
/// shows the LLM figures, in Chromium.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_run_shows_its_answers_figures_in_chromium() {
    let cfg = powertune_provider_sim::SimConfig::from_toml(
        "sim.toml",
        "seed = 4\n[defaults]\nttft = \"20ms\"\nitl = \"2ms\"\noutput_tokens = 12\n",
    )
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = powertune_provider_sim::ProviderSim::start(cfg, l)
        .await
        .unwrap();
    // every fourth call: the provider's error event after three chunks
    for i in 0..16 {
        let s = if i % 4 == 3 {
            powertune_provider_sim::Script {
                error_after: Some(3),
                ..Default::default()
            }
        } else {
            powertune_provider_sim::Script::text("one two three four five six")
        };
        sim.push(s).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("llm.toml");
    std::fs::write(
        &plan,
        r#"
[scenarios.chat]
endpoint_type = "ai_llm"
executor = "shared-iterations"
vus = 1
iterations = 16
max_duration = "30s"
[[scenarios.chat.steps]]
name = "chat"
method = "POST"
url = "/v1/chat/completions"
llm = "openai"
json = { model = "m", stream = true, messages = [{ role = "user", content = "hi" }] }
"#,
    )
    .unwrap();
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let html = out_dir.join("load-llm.html");
    let o = powertune(&[
        "load",
        plan.to_str().unwrap(),
        "--base-url",
        &sim.url(),
        "-q",
        "--html",
        html.to_str().unwrap(),
    ])
    .await;
    assert!(o.status.code().is_some(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(sim.stats().totals.calls, 16, "{}{}", stdout(&o), stderr(&o));
    let opened = powertune_test_support::browser::open(
        &html,
        "window.powertuneCharts",
        &out_dir.join("load-llm.png"),
    )
    .await
    .unwrap();
    assert!(opened.console.is_empty(), "{:?}", opened.console);
    assert!(opened.exceptions.is_empty(), "{:?}", opened.exceptions);
    let text = &opened.text;
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("no {name} row: {text}"))
            .to_string()
    };
    assert!(text.contains("LLM answers (openai)"), "{text}");
    // 16 answers: 12 whole (6 chunks each: 5 gaps), 4 broken after 3 chunks (2 gaps)
    for (name, count) in [
        ("time to first token (TTFT)", "16"),
        ("inter-token latency (ITL)", "68"),
        ("time per output token (TPOT)", "12"),
        ("end to end", "12"),
        ("output tokens/s per answer", "12"),
    ] {
        let r = row(name);
        let cells: Vec<&str> = r[name.len()..]
            .split('\t')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(cells.first().copied(), Some(count), "{name}: {r}");
        assert_eq!(cells.len(), 5, "{name}: count, p50, p95, p99, max: {r}");
    }
    assert!(row("time to first token (TTFT)").contains("ms"), "{text}");
    assert!(row("output tokens/s per answer").contains("/s"), "{text}");
    // no usage in these streams (no include_usage): the chunks were counted
    assert!(
        row("output tokens").contains("84 (all counted from content chunks"),
        "{text}"
    );
    assert!(
        row("answers").contains("16 (16 streamed, 12 completed)"),
        "{text}"
    );
    assert!(
        row("stream errors")
            .contains("4 (provider error 4, malformed chunk 0, stall 0, dropped 0)"),
        "{text}"
    );
    sim.shutdown().await;
}

/// One short closed-model run of `plan` with `--json OUT`, judged with `targets`.
async fn short_run(base: &str, plan: &Path, targets: &Path, json: &Path) {
    let o = powertune(&[
        "--targets",
        targets.to_str().unwrap(),
        "load",
        plan.to_str().unwrap(),
        "--base-url",
        base,
        "-q",
        "--json",
        json.to_str().unwrap(),
    ])
    .await;
    assert!(
        matches!(o.status.code(), Some(0 | 99)),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compare_page_draws_both_runs_over_one_another() {
    let srv = TestServer::start(FixtureConfig {
        delay: std::time::Duration::from_millis(5),
        ..Default::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("one.toml");
    std::fs::write(
        &plan,
        "[scenarios.browse]\nendpoint_type = \"authentication\"\nexecutor = \"constant-vus\"\nvus = 2\nduration = \"2s\"\n[[scenarios.browse.steps]]\nurl = \"/delay\"\n",
    )
    .unwrap();
    // Targets of the user's own: the page draws these, not the runbook's defaults.
    let targets = tmp.path().join("targets.toml");
    std::fs::write(
        &targets,
        "[api.authentication]\ntarget_ms = 123\nmax_ms = 456\n",
    )
    .unwrap();
    let (a, b) = (tmp.path().join("a.json"), tmp.path().join("b.json"));
    short_run(&srv.url, &plan, &targets, &a).await;
    short_run(&srv.url, &plan, &targets, &b).await;

    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let run_page = tmp.path().join("a.html");
    let o = powertune(&[
        "report",
        a.to_str().unwrap(),
        "--html",
        run_page.to_str().unwrap(),
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(&run_page).unwrap();
    assert!(
        page.contains(r#"{"label":"Authentication target","value":123.0}"#),
        "the --targets band is drawn"
    );
    assert!(page.contains(r#"{"label":"Authentication max","value":456.0}"#));

    let html = out_dir.join("compare.html");
    let o = powertune(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ])
    .await;
    assert!(matches!(o.status.code(), Some(0 | 99)), "{}", stderr(&o));
    let opened = powertune_test_support::browser::open(
        &html,
        "window.powertuneCharts",
        &out_dir.join("compare.png"),
    )
    .await
    .unwrap();
    assert!(opened.console.is_empty(), "{:?}", opened.console);
    assert!(opened.exceptions.is_empty(), "{:?}", opened.exceptions);
    assert!(opened.requests.is_empty(), "{:?}", opened.requests);
    let p = &opened.probe;
    assert_eq!(labels(p, "rps"), ["baseline req/s", "current req/s"]);
    assert_eq!(
        labels(p, "latency"),
        ["baseline p50", "current p50", "baseline p95", "current p95"]
    );
    assert_eq!(
        labels(p, "errors"),
        ["baseline failed/s", "current failed/s"]
    );
    let points = p["rps"]["points"].as_u64().unwrap();
    assert!((3..=5).contains(&points), "{points}");
    let text = &opened.text;
    assert!(
        text.contains(&format!("{} against {}", b.display(), a.display())),
        "{text}"
    );
    for want in [
        "Did latency change?",
        "all requests",
        "Authentication",
        "Headline metrics",
        "http_reqs rate",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
}
