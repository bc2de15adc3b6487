//! `powertune capacity` end to end against the embedded target (`--demo`) with a
//! bottleneck planted each time: the DB pool, the CPU worker threads, the Redis
//! pool (on the test Redis). For each, the run names it, and with the bottleneck
//! removed the knee moves up. An absurd start rate is reported as the generator's
//! limit, never the target's. Steps are short (1–2 s) so the file stays within about
//! two minutes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod capacity_common;
mod common;

use capacity_common::{ceiling, knee_rate, limiter, metrics, run, write};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_powertune");

/// One dashboard request per arrival (after a login per VU): 35 ms median of pool
/// time each, so a pool of N slots serves about N / 0.037 requests a second.
const DASHBOARD: &str = r#"
[capacity]
start = 30
factor = 2.0
step = "1500ms"
warmup = "500ms"
refine = 1
max_rate = 1000

[scenarios.dashboard]
endpoint_type = "Analytics / reporting"
users = 10
duration = "1m"

[[scenarios.dashboard.setup]]
name = "login"
method = "POST"
url = "/api/v1/auth/login"
endpoint_type = "Authentication"
json = { email = "cap{{__VU}}@example.com", password = "demo" }
extract = { token = "/token" }

[[scenarios.dashboard.steps]]
name = "dashboard"
method = "GET"
url = "/api/v1/ai/monitoring/dashboard"
headers = { Authorization = "Bearer {{token}}" }
"#;

/// One cache read per arrival (Read-heavy CRUD: 300 ms maximum).
const CACHE: &str = r#"
[capacity]
start = 40
factor = 2.0
step = "1500ms"
warmup = "500ms"
refine = 1
max_rate = 700

[scenarios.cache]
endpoint_type = "Read-heavy CRUD"
users = 10
duration = "1m"

[[scenarios.cache.steps]]
name = "cache"
method = "GET"
url = "/api/v1/cache/user-{{__ITER}}"
"#;

#[test]
fn the_db_pool_is_named_and_a_bigger_pool_moves_the_knee_up() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write(dir.path(), "dash.toml", DASHBOARD);
    let (small, text) = run(dir.path(), "small", &[&plan, "--demo", "--pool-size", "4"]);
    let (resource, evidence) = limiter(&small);
    assert_eq!(resource, "DB pool", "{text}");
    assert!(evidence.contains("/4 in use"), "{evidence}");
    assert!(evidence.contains("waiting"), "{evidence}");
    assert!(
        text.contains("DB pool saturation → bump pool size or add PgBouncer"),
        "{text}"
    );
    let knee_small = knee_rate(&small).unwrap();
    let (big, _) = run(dir.path(), "big", &[&plan, "--demo", "--pool-size", "16"]);
    assert!(
        ceiling(&big) > knee_small * 1.5,
        "pool 16: {} vs pool 4: {knee_small}",
        ceiling(&big)
    );
    powertune_test_support::schema::check::<powertune_capacity::CapacityMetrics>(
        "capacity.v1",
        metrics(&small),
    );
}

#[test]
fn cpu_worker_threads_are_named_and_without_cpu_work_the_knee_moves_up() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write(dir.path(), "dash.toml", DASHBOARD);
    let cpu = write(
        dir.path(),
        "cpu.toml",
        "cpu_workers = 1\n[routes.dashboard]\ncpu = \"8ms\"\n",
    );
    let (busy, text) = run(
        dir.path(),
        "cpu",
        &[
            &plan,
            "--demo",
            "--target-config",
            &cpu,
            "--pool-size",
            "16",
        ],
    );
    let (resource, evidence) = limiter(&busy);
    assert_eq!(resource, "CPU worker threads", "{text}");
    assert!(evidence.contains("1/1 in use"), "{evidence}");
    assert!(
        text.contains("scale backend / worker horizontally"),
        "{text}"
    );
    let knee = knee_rate(&busy).unwrap();
    let idle = write(dir.path(), "idle.toml", "cpu_workers = 1\n");
    let (free, _) = run(
        dir.path(),
        "nocpu",
        &[
            &plan,
            "--demo",
            "--target-config",
            &idle,
            "--pool-size",
            "16",
        ],
    );
    assert!(ceiling(&free) > knee * 1.5, "{} vs {knee}", ceiling(&free));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_redis_pool_is_named_and_a_bigger_pool_moves_the_knee_up() {
    let redis = powertune_test_support::redis_db::TestRedis::reserve().await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write(dir.path(), "cache.toml", CACHE);
    let conf = |pool: u32| {
        format!(
            "[redis]\nurl = \"{}\"\npool_size = {pool}\nhold = {{ median = \"10ms\", spread = 0.2 }}\n",
            redis.url
        )
    };
    let small_conf = write(dir.path(), "r2.toml", &conf(2));
    let d = dir.path().to_path_buf();
    let url = redis.url.clone();
    let (small, text) = tokio::task::spawn_blocking(move || {
        run(
            &d,
            "r2",
            &[
                &plan,
                "--demo",
                "--target-config",
                &small_conf,
                "--redis",
                &url,
            ],
        )
    })
    .await
    .unwrap();
    let (resource, evidence) = limiter(&small);
    assert_eq!(resource, "Redis pool", "{text}");
    assert!(evidence.contains("/2 in use"), "{evidence}");
    assert!(
        text.contains("Redis saturation → bump maxmemory or split Sidekiq DBs"),
        "{text}"
    );
    // The Redis server itself was sampled through `powertune redis`'s entry.
    let steps = metrics(&small)["steps"].as_array().unwrap();
    assert!(steps[0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["resource"]
            .as_str()
            .unwrap()
            .starts_with("Redis redis://")));
    let knee = knee_rate(&small).unwrap();
    let big_conf = write(dir.path(), "r16.toml", &conf(16));
    let plan = dir.path().join("cache.toml").to_str().unwrap().to_string();
    let d = dir.path().to_path_buf();
    let (big, _) = tokio::task::spawn_blocking(move || {
        run(&d, "r16", &[&plan, "--demo", "--target-config", &big_conf])
    })
    .await
    .unwrap();
    assert!(ceiling(&big) > knee * 1.5, "{} vs {knee}", ceiling(&big));
    redis.release().await;
}

#[test]
fn an_absurd_start_rate_is_the_generators_limit_not_the_targets() {
    let dir = tempfile::tempdir().unwrap();
    let (r, text) = run(
        dir.path(),
        "absurd",
        &[
            "--demo",
            "--start",
            "200000",
            "--step",
            "1s",
            "--warmup",
            "0s",
            "--max-steps",
            "1",
            // A pool this large never fills within the step, so what limits the
            // step is the generator, not the target.
            "--pool-size",
            "10000",
        ],
    );
    let m = metrics(&r);
    assert_eq!(m["stop"], "generator_saturated", "{text}");
    assert_eq!(m["limiter"]["kind"], "generator", "{text}");
    assert!(text.contains("the load generator saturated"), "{text}");
}

#[test]
fn the_demo_names_its_25_slot_pool_and_verify_retests_at_the_projection() {
    let dir = tempfile::tempdir().unwrap();
    let (r, text) = run(
        dir.path(),
        "demo",
        &[
            "--demo", "--start", "200", "--factor", "2", "--step", "2s", "--warmup", "1s",
            "--refine", "1",
        ],
    );
    let (resource, evidence) = limiter(&r);
    assert_eq!(resource, "DB pool", "{text}");
    assert!(evidence.contains("/25 in use"), "{evidence}");
    assert!(text.contains("limiting resource: DB pool"), "{text}");
    // Re-test: the same target, baseline 100/s × 2 is far below the knee.
    let previous = dir.path().join("demo.json");
    let (v, vtext) = run(
        dir.path(),
        "verify",
        &[
            "--demo",
            "--verify",
            previous.to_str().unwrap(),
            "--baseline-rate",
            "100",
            "--growth",
            "2",
            "--step",
            "2s",
            "--warmup",
            "1s",
        ],
    );
    let ver = &metrics(&v)["verification"];
    assert_eq!(ver["projected"], 200.0, "{vtext}");
    assert_eq!(ver["moved_beyond_projection"], true, "{vtext}");
    assert_eq!(metrics(&v)["steps"].as_array().unwrap().len(), 2, "{vtext}");
    assert!(vtext.contains("re-test against"), "{vtext}");
}

#[test]
fn bad_schedules_and_sources_are_one_line_errors() {
    for args in [
        vec!["--demo", "--factor", "1"],
        vec!["--demo", "--step", "soon"],
        vec!["--demo", "--pid", "0"],
        vec!["--demo", "--metrics", "ftp://x/metrics"],
        vec!["--demo", "--cgroup", "/nonexistent/cgroup"],
        vec!["--base-url", "http://127.0.0.1:1"],
    ] {
        let o = Command::new(BIN)
            .arg("capacity")
            .args(&args)
            .output()
            .unwrap();
        common::one_line_error(&o);
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = write(
        dir.path(),
        "bad.toml",
        "[capacity]\nstart = 10\nfactr = 2\n",
    );
    let o = Command::new(BIN)
        .args(["capacity", &plan, "--demo"])
        .output()
        .unwrap();
    let e = common::one_line_error(&o);
    assert!(e.contains("bad.toml:3:"), "{e}");
}
