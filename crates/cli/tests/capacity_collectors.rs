//! `powertune capacity` with the engines' collectors: `--db` (real PostgreSQL),
//! `--queues` (Sidekiq's data in the real Redis) and `--gateway` (a real gateway in
//! front of the provider simulator with an RPM quota). The provider quota is planted
//! as the bottleneck: the target's streamed LLM route behind the gateway, the
//! simulator allowing few requests a minute; `capacity` names the provider quota
//! with its 429s and the runbook's action, and with the quota raised the knee moves
//! up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod capacity_common;
mod common;

use capacity_common::{ceiling, write};
use serde_json::Value;
use std::path::Path;

/// The simulator's time scale: its quota minute lasts 3 s, its latencies are 20×
/// shorter.
const SIM_TIME_SCALE: f64 = 0.05;

/// One streamed agent run per arrival (after a login per VU).
const LLM: &str = r#"
[capacity]
start = 4
factor = 2.0
step = "2s"
warmup = "1s"
refine = 1
max_rate = 64

[scenarios.llm]
endpoint_type = "AI orchestration (LLM call)"
users = 10
duration = "1m"

[[scenarios.llm.setup]]
name = "login"
method = "POST"
url = "/api/v1/auth/login"
endpoint_type = "Authentication"
json = { email = "q{{__VU}}@example.com", password = "demo" }
extract = { token = "/token" }

[[scenarios.llm.steps]]
name = "execute (streamed)"
method = "POST"
url = "/api/v1/ai/agents/42/execute"
llm = "openai"
headers = { Authorization = "Bearer {{token}}" }
json = { input = "summarise the retry set", stream = true }
"#;

/// The provider simulator with `rpm` requests per (scaled) minute per key, behind a
/// gateway; both stop when dropped.
struct LlmPath {
    sim: powertune_provider_sim::SimHandle,
    url: String,
    stop: powertune_gateway::server::Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl LlmPath {
    async fn start(rpm: u64) -> LlmPath {
        let config = powertune_provider_sim::SimConfig {
            time_scale: SIM_TIME_SCALE,
            quota: powertune_provider_sim::Quota {
                rpm: Some(rpm),
                tpm: None,
            },
            ..Default::default()
        };
        let l = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let sim = powertune_provider_sim::ProviderSim::start(config, l)
            .await
            .unwrap();
        let toml = format!(
            "[[providers]]\nname = \"sim\"\nkind = \"openai\"\nbase_url = \"{}/v1\"\n[models.agent]\ntargets = [\"sim:gpt-4o-mini\"]\n",
            sim.url()
        );
        let cfg = powertune_gateway::Config::from_toml(&toml, "test gateway", &|_| None)
            .unwrap()
            .config;
        let g = powertune_gateway::Gateway::new(
            cfg,
            std::sync::Arc::new(powertune_gateway::TokioClock),
        )
        .unwrap();
        let listener = powertune_gateway::Gateway::bind(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = powertune_gateway::server::Shutdown::default();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let _ = g.serve(listener, s).await;
        });
        LlmPath {
            sim,
            url,
            stop,
            task,
        }
    }

    async fn close(self) {
        self.stop.graceful.cancel();
        let _ = self.task.await;
        self.sim.shutdown().await;
    }
}

/// [`capacity_common::run`] off the runtime (the test's gateway and simulator keep
/// serving meanwhile).
async fn capacity(dir: &Path, name: &str, args: &[&str]) -> (Value, String) {
    let (dir, name) = (dir.to_path_buf(), name.to_string());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        capacity_common::run(&dir, &name, &args)
    })
    .await
    .unwrap()
}

async fn run_llm(dir: &Path, name: &str, rpm: u64) -> (Value, String) {
    let path = LlmPath::start(rpm).await;
    let plan = write(dir, "llm.toml", LLM);
    let target = write(
        dir,
        &format!("{name}-target.toml"),
        &format!("[llm]\nbase_url = \"{}/v1\"\nmodel = \"agent\"\n", path.url),
    );
    let r = capacity(
        dir,
        name,
        &[
            &plan,
            "--demo",
            "--target-config",
            &target,
            "--gateway",
            &path.url,
        ],
    )
    .await;
    path.close().await;
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn the_provider_quota_is_named_and_a_higher_quota_moves_the_knee_up() {
    let dir = tempfile::tempdir().unwrap();
    // 30 requests per 3 s window: 10 streamed runs a second.
    let (low, text) = run_llm(dir.path(), "low", 30).await;
    let m = &low["metrics"];
    let l = &m["limiter"];
    assert_eq!(l["kind"], "provider_quota", "{text}");
    let evidence = l["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("rate-limited (429) or refused"),
        "{evidence}"
    );
    assert!(
        text.contains("Provider quota → register additional credentials or upgrade vendor tier"),
        "{text}"
    );
    let knee = m["knee_rate"].as_f64().unwrap();
    // No 429 below the quota (8/s is 24 a window); by 32/s (over three times it)
    // the fixed window is always exceeded.
    assert!(knee > 8.0 && knee <= 32.0, "{knee}\n{text}");
    // The steps below the quota saw no 429s: the gateway was sampled, not crossed.
    let first = &m["steps"][0]["resources"];
    let gw = first
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "provider_quota")
        .unwrap();
    assert_eq!(gw["crossed"], false, "{gw}");
    assert!(
        gw["figures"].as_str().unwrap().contains("provider P95"),
        "{gw}"
    );
    powertune_test_support::schema::check::<powertune_capacity::CapacityMetrics>("capacity.v1", m);

    // Ten times the quota: the knee moves beyond the old one.
    let (high, text) = run_llm(dir.path(), "high", 300).await;
    assert!(
        ceiling(&high) >= knee * 2.0,
        "{} vs {knee}\n{text}",
        ceiling(&high)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn db_queues_and_the_demo_gateway_are_sampled_every_step() {
    let db = powertune_test_support::pg::TestDb::create("cap_cli").await;
    db.client()
        .await
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .unwrap();
    let redis = powertune_test_support::redis_db::TestRedis::reserve().await;
    common::sidekiq6_fixture(&redis.url);
    let dir = tempfile::tempdir().unwrap();
    let (r, text) = capacity(
        dir.path(),
        "collectors",
        &[
            "--demo",
            "--start",
            "50",
            "--factor",
            "2",
            "--step",
            "3s",
            "--warmup",
            "500ms",
            "--max-steps",
            "2",
            "--db",
            &db.url,
            "--queues",
            &redis.url,
        ],
    )
    .await;
    let m = &r["metrics"];
    for s in m["steps"].as_array().unwrap() {
        let kinds: Vec<&str> = s["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["kind"].as_str().unwrap())
            .collect();
        for k in ["database", "workers", "provider_quota"] {
            assert!(kinds.contains(&k), "{k} missing in {kinds:?}\n{text}");
        }
        let pg = s["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["kind"] == "database")
            .unwrap();
        assert!(pg["samples"].as_u64().unwrap() >= 1, "{pg}");
        assert!(
            pg["figures"].as_str().unwrap().contains("connections"),
            "{pg}"
        );
    }
    redis.release().await;
    db.drop_now().await;
}
