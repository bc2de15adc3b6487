//! Streamed LLM steps against the provider simulator (`powertune_provider_sim`,
//! in-process on loopback) with known distributions: what the load engine measures
//! agrees with what the simulator was told to do and with what it counted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use powertune_core::{Targets, Verdict};
use powertune_load::snapshot::LlmSummary;
use powertune_load::{run, Plan, RunOptions, Summary};
use powertune_provider_sim::{ProviderSim, SimConfig, SimHandle};
use std::time::Duration;

async fn sim(toml: &str) -> SimHandle {
    let cfg = SimConfig::from_toml("sim.toml", toml).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ProviderSim::start(cfg, l).await.unwrap()
}

async fn go(toml: &str, url: &str) -> Summary {
    let plan = Plan::from_toml_str(toml, "llm.toml").unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        run(&RunOptions::new(plan, url.to_string())),
    )
    .await
    .expect("run finished within 60 s")
    .unwrap()
}

/// A shared-iterations plan of one LLM step.
fn plan(dialect: &str, url: &str, vus: u32, iterations: u32, json: &str, extra: &str) -> String {
    format!(
        r#"
[scenarios.chat]
endpoint_type = "ai_llm"
executor = "shared-iterations"
vus = {vus}
iterations = {iterations}
max_duration = "50s"
[[scenarios.chat.steps]]
name = "chat"
method = "POST"
url = "{url}"
llm = "{dialect}"
headers = {{ Authorization = "Bearer sk-test-key-{{{{__VU}}}}-0000000000", x-api-key = "sk-test-key-{{{{__VU}}}}-0000000000", anthropic-version = "2023-06-01" }}
json = {json}
{extra}
"#
    )
}

const OPENAI_STREAM: &str = r#"{ model = "m", stream = true, stream_options = { include_usage = true }, messages = [{ role = "user", content = "hello there" }] }"#;

fn llm(s: &Summary) -> &LlmSummary {
    s.llm.as_ref().expect("the run has LLM figures")
}

fn within(measured: f64, configured: f64, share: f64, what: &str) {
    let err = (measured - configured).abs() / configured;
    assert!(
        err <= share,
        "{what}: measured {measured:.2} vs configured {configured:.2} ({:.1}% off, at most {:.0}%)",
        err * 100.0,
        share * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttft_and_itl_agree_with_the_configured_distributions() {
    // uniform draws: TTFT p50 400ms p99 439.2ms; ITL p50 100ms p99 109.8ms
    let sim = sim("seed = 3\n[defaults]\nttft = \"360ms..440ms\"\nitl = \"90ms..110ms\"\noutput_tokens = 12\n").await;
    let s = go(
        &plan("openai", "/v1/chat/completions", 20, 60, OPENAI_STREAM, ""),
        &sim.url(),
    )
    .await;
    let stats = sim.stats().totals;
    let l = llm(&s);
    eprintln!("{}", s.render_text());
    assert_eq!(s.http.failed, 0, "{:?}", s.http.errors);
    assert_eq!((l.responses, l.streamed, l.completed), (60, 60, 60));
    assert_eq!(stats.calls, 60);
    // tokens: the stream's usage, equal to the simulator's count
    assert_eq!(l.output_tokens, stats.output_tokens);
    assert_eq!(l.output_tokens, 60 * 12);
    assert_eq!((l.tokens_from_usage, l.tokens_from_chunks), (60, 0));
    assert_eq!(l.input_tokens, stats.input_tokens);
    assert_eq!(l.ttft.stats.count, 60);
    assert_eq!(l.itl.stats.count, 60 * 11);
    within(l.ttft.stats.med, 400.0, 0.05, "TTFT p50");
    within(l.ttft.stats.p99, 439.2, 0.10, "TTFT p99");
    within(l.itl.stats.med, 100.0, 0.05, "ITL p50");
    within(l.itl.stats.p99, 109.8, 0.10, "ITL p99");
    // TPOT ≈ the mean ITL; end to end ≈ TTFT + 11 gaps; tokens/s = 12 / e2e
    within(l.tpot.stats.med, 100.0, 0.05, "TPOT p50");
    within(l.e2e.stats.med, 1500.0, 0.05, "end-to-end p50");
    within(l.tokens_per_s.stats.med, 12.0 / 1.5, 0.05, "tokens/s p50");
    // the runbook's LLM-call row judges the end-to-end duration: 1.5 s < 30 s
    let r = s.to_report(&Targets::default(), None);
    let row = r
        .findings
        .iter()
        .find(|f| f.check == "api_latency_p95" && f.subject == "AI orchestration (LLM call)")
        .expect("the LLM-call row");
    assert_eq!(row.verdict, Verdict::Pass);
    assert!(row.evidence.contains("TTFT p50"), "{}", row.evidence);
    let p95 = r.findings.iter().find(|f| f.check == "load_p95");
    assert!(p95.is_none(), "LLM calls are not judged on the API's P95");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_dialect_counts_tokens_the_simulator_counted() {
    let sim = sim(
        "seed = 5\n[defaults]\nttft = \"5ms\"\nitl = \"1ms..3ms\"\noutput_tokens = \"10..40\"\n",
    )
    .await;
    let cases = [
        ("openai", "/v1/chat/completions", OPENAI_STREAM, 1, 0),
        // no include_usage: the stream carries no counts, chunks are counted
        (
            "openai",
            "/v1/chat/completions",
            r#"{ model = "m", stream = true, messages = [{ role = "user", content = "hi" }] }"#,
            0,
            1,
        ),
        (
            "anthropic",
            "/v1/messages",
            r#"{ model = "claude-x", max_tokens = 100, stream = true, messages = [{ role = "user", content = "hi" }] }"#,
            1,
            0,
        ),
        (
            "ollama",
            "/api/chat",
            r#"{ model = "llama3", messages = [{ role = "user", content = "hi" }] }"#,
            1,
            0,
        ),
        // whole answers: tokens from `usage`
        (
            "openai",
            "/v1/chat/completions",
            r#"{ model = "m", messages = [{ role = "user", content = "hi" }] }"#,
            1,
            0,
        ),
        (
            "ollama",
            "/api/chat",
            r#"{ model = "llama3", stream = false, messages = [{ role = "user", content = "hi" }] }"#,
            1,
            0,
        ),
    ];
    for (i, (dialect, url, json, usage, chunks)) in cases.into_iter().enumerate() {
        sim.control(&powertune_provider_sim::Control {
            reset_stats: true,
            ..Default::default()
        })
        .unwrap();
        let s = go(&plan(dialect, url, 4, 20, json, ""), &sim.url()).await;
        let stats = sim.stats().totals;
        let l = llm(&s);
        let case = format!("case {i} ({dialect} {json})");
        assert_eq!(s.http.failed, 0, "{case}: {:?}", s.http.errors);
        assert_eq!(l.responses, 20, "{case}");
        assert_eq!(l.completed, 20, "{case}");
        assert_eq!(l.output_tokens, stats.output_tokens, "{case}");
        assert!(l.output_tokens >= 200, "{case}: {}", l.output_tokens);
        assert_eq!(
            (l.tokens_from_usage, l.tokens_from_chunks),
            (20 * usage, 20 * chunks),
            "{case}"
        );
        assert_eq!(l.streamed > 0, stats.streamed > 0, "{case}");
        assert_eq!(l.streamed, stats.streamed, "{case}");
        if l.streamed > 0 {
            assert_eq!(l.ttft.stats.count, 20, "{case}");
        } else {
            assert_eq!(l.ttft.stats.count, 0, "{case}");
            assert_eq!(l.e2e.stats.count, 20, "{case}");
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpm_quota_yields_exactly_the_simulators_429s() {
    let sim = sim("seed = 1\n[defaults]\nttft = \"2ms\"\nitl = \"1ms\"\noutput_tokens = 5\n[quota]\nrpm = 7\n").await;
    // one key for every VU: the quota is per key
    let toml =
        plan("openai", "/v1/chat/completions", 5, 30, OPENAI_STREAM, "").replace("{{__VU}}", "1");
    let s = go(&toml, &sim.url()).await;
    let stats = sim.stats().totals;
    assert_eq!(stats.rate_limited_requests, 23);
    assert_eq!(s.http.status.get("429").copied(), Some(23));
    assert_eq!(s.http.status.get("200").copied(), Some(7));
    assert_eq!(s.http.failed, stats.rate_limited_requests);
    assert_eq!(s.http.errors.status, 23);
    // a 429 is no answer: no LLM figures, no stream error
    let l = llm(&s);
    assert_eq!((l.responses, l.stream_errors.total()), (7, 0));
    assert_eq!(l.output_tokens, stats.output_tokens);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_script_shows_up_as_its_error_kind() {
    let sim =
        sim("seed = 9\n[defaults]\nttft = \"5ms\"\nitl = \"2ms\"\noutput_tokens = 10\n").await;
    let anthropic = r#"{ model = "claude-x", max_tokens = 100, stream = true, messages = [{ role = "user", content = "hi" }] }"#;
    let ollama = r#"{ model = "llama3", messages = [{ role = "user", content = "hi" }] }"#;
    // (fault, dialect, url, body): each in another dialect
    let cases: [(&str, &str, &str, &str); 9] = [
        (
            r#"{"drop_rate": 1.0}"#,
            "anthropic",
            "/v1/messages",
            anthropic,
        ),
        (r#"{"malformed_rate": 1.0}"#, "ollama", "/api/chat", ollama),
        (
            r#"{"stall_mid_rate": 1.0, "stall_mid": "3s"}"#,
            "openai",
            "/v1/chat/completions",
            OPENAI_STREAM,
        ),
        (
            r#"{"stall_first_rate": 1.0, "stall_first": "3s"}"#,
            "anthropic",
            "/v1/messages",
            anthropic,
        ),
        (
            r#"{"error_rate": 1.0, "error_status": 502}"#,
            "ollama",
            "/api/chat",
            ollama,
        ),
        (
            r#"{"overload_rate": 1.0}"#,
            "anthropic",
            "/v1/messages",
            anthropic,
        ),
        // the provider's own error event after 3 content chunks, in each dialect
        (
            r#"{"mid_stream_error_rate": 1.0, "mid_stream_error_after": 3}"#,
            "openai",
            "/v1/chat/completions",
            OPENAI_STREAM,
        ),
        (
            r#"{"mid_stream_error_rate": 1.0, "mid_stream_error_after": 3}"#,
            "anthropic",
            "/v1/messages",
            anthropic,
        ),
        (
            r#"{"mid_stream_error_rate": 1.0, "mid_stream_error_after": 3}"#,
            "ollama",
            "/api/chat",
            ollama,
        ),
    ];
    let none = r#"{"drop_rate": 0.0, "malformed_rate": 0.0, "stall_mid_rate": 0.0, "stall_first_rate": 0.0, "error_rate": 0.0, "overload_rate": 0.0, "mid_stream_error_rate": 0.0}"#;
    for (i, (fault, dialect, url, json)) in cases.into_iter().enumerate() {
        let c: powertune_provider_sim::Control =
            serde_json::from_str(&format!(r#"{{"reset_stats": true, "faults": {none}}}"#)).unwrap();
        sim.control(&c).unwrap();
        let c: powertune_provider_sim::Control =
            serde_json::from_str(&format!(r#"{{"faults": {fault}}}"#)).unwrap();
        sim.control(&c).unwrap();
        let s = go(
            &plan(dialect, url, 2, 4, json, "stall_timeout = \"500ms\""),
            &sim.url(),
        )
        .await;
        let stats = sim.stats().totals;
        let f = &stats.faults;
        let l = s.llm.clone().unwrap_or_default();
        let e = l.stream_errors;
        let case = format!("case {i} ({fault} on {dialect})");
        assert_eq!(s.http.reqs, 4, "{case}");
        assert_eq!(s.http.failed, 4, "{case}: every request failed");
        match i {
            0 => {
                assert_eq!(f.dropped, 4, "{case}");
                assert_eq!((e.dropped, e.total()), (4, 4), "{case}: {e:?}");
            }
            1 => {
                assert_eq!(f.malformed, 4, "{case}");
                assert_eq!((e.malformed, e.total()), (4, 4), "{case}: {e:?}");
                // the chunks before the bad one were timed
                assert_eq!(l.ttft.stats.count, 4, "{case}");
            }
            2 => {
                assert_eq!(f.stall_mid, 4, "{case}");
                assert_eq!((e.stall, e.total()), (4, 4), "{case}: {e:?}");
                assert_eq!(s.http.errors.timeout, 4, "{case}");
                assert_eq!(
                    l.ttft.stats.count, 4,
                    "{case}: tokens came before the stall"
                );
            }
            3 => {
                assert_eq!(f.stall_first, 4, "{case}");
                assert_eq!((e.stall, e.total()), (4, 4), "{case}: {e:?}");
                assert_eq!(l.ttft.stats.count, 0, "{case}: no token came");
            }
            4 => {
                assert_eq!(f.server_error, 4, "{case}");
                assert_eq!(s.http.status.get("502").copied(), Some(4), "{case}");
                assert_eq!(e.total(), 0, "{case}: an error status is no broken stream");
            }
            5 => {
                assert_eq!(f.overloaded, 4, "{case}");
                assert_eq!(s.http.status.get("529").copied(), Some(4), "{case}");
                assert_eq!(e.total(), 0, "{case}");
            }
            _ => {
                assert_eq!(f.mid_stream_error, 4, "{case}");
                assert_eq!(s.http.status.get("200").copied(), Some(4), "{case}");
                assert_eq!((e.provider, e.total()), (4, 4), "{case}: {e:?}");
                // the three chunks before the error were timed
                assert_eq!(l.ttft.stats.count, 4, "{case}");
                assert_eq!(l.itl.stats.count, 4 * 2, "{case}");
            }
        }
    }
    // the judge names the kinds
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_metrics_take_thresholds_with_tags() {
    let sim =
        sim("seed = 2\n[defaults]\nttft = \"20ms\"\nitl = \"2ms\"\noutput_tokens = 8\n").await;
    let extra = "";
    let mut toml = plan("openai", "/v1/chat/completions", 2, 6, OPENAI_STREAM, extra);
    toml = format!(
        "[thresholds]\n\"llm_ttft{{name:chat}}\" = \"p(95)<2000\"\nllm_tokens_per_s = \"med>1\"\nllm_output_tokens = \"count==48\"\nllm_stream_errors = \"count<1\"\nllm_itl = \"max<1\"\n{toml}"
    );
    let s = go(&toml, &sim.url()).await;
    let by: Vec<(&str, bool)> = s
        .thresholds
        .iter()
        .map(|t| (t.metric.as_str(), t.ok))
        .collect();
    assert_eq!(
        by,
        [
            ("llm_itl", false),
            ("llm_output_tokens", true),
            ("llm_stream_errors", true),
            ("llm_tokens_per_s", true),
            ("llm_ttft{name:chat}", true)
        ]
    );
    let t = s
        .thresholds
        .iter()
        .find(|t| t.metric == "llm_tokens_per_s")
        .unwrap();
    assert!(
        t.observed_value().to_string().ends_with("/s"),
        "{}",
        t.observed_value()
    );
    let text = s.render_text();
    assert!(text.contains("chat · llm_ttft"), "{text}");
    assert!(text.contains("llm_output_tokens 48"), "{text}");
    sim.shutdown().await;
}
