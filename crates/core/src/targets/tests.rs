use super::*;
use std::path::Path;

#[test]
fn defaults_are_the_runbook_tables() {
    let t = Targets::default();
    assert_eq!(
        t.api.band(EndpointType::Authentication),
        Band::new(100.0, 200.0)
    );
    assert_eq!(
        t.api.band(EndpointType::AiLlm),
        Band::new(30_000.0, 60_000.0)
    );
    assert_eq!(t.api.band(EndpointType::Webhook), Band::new(250.0, 500.0));
    assert_eq!((t.database.pool_min, t.database.pool_max), (25, 50));
    assert_eq!(t.database.max_query_ms, 100.0);
    assert_eq!(t.worker.queue_latency_s, 60.0);
    assert_eq!(t.worker.weights.get("critical"), Some(&3));
    assert_eq!(t.ai.failure_threshold, 5);
    assert_eq!(t.ai.recovery_timeout_s, 120.0);
    assert_eq!(t.load.p95_ms, 2000.0);
    assert_eq!(t.load.throughput_ratio_min, 0.8);
    assert_eq!(t.redis.large_key_bytes, 1_048_576);
    assert_eq!(t.cache["user_session"].ttl_s, 900);
    assert!(!t.cache["user_session"].compress);
    assert!(t.cache["ai_pricing"].compress);
    assert!(t.validate().is_ok());
    let entries = t.entries();
    assert!(entries.iter().all(|e| e.source.starts_with("default (")));
    let own = |k: &str| entries.iter().find(|e| e.key == k).unwrap().source.clone();
    assert_eq!(own("database.max_query_ms"), "default (runbook)");
    assert_eq!(own("database.hot_table_rows"), "default (powertune)");
    assert_eq!(own("cache.user_session.pattern"), "default (powertune)");
    assert_eq!(own("cache.user_session.ttl_s"), "default (runbook)");
}

#[test]
fn overrides_keep_the_other_defaults_and_say_where_from() {
    let text = "[api.authentication]\ntarget_ms = 80\n\n[database]\npool_max = 40\n";
    let t = Targets::from_toml_str(text, "powertune.toml").unwrap();
    assert_eq!(t.api.authentication, Band::new(80.0, 200.0));
    assert_eq!(t.database.pool_max, 40);
    assert_eq!(t.database.pool_min, 25);
    let e = t.entries();
    let auth = e
        .iter()
        .find(|e| e.key == "api.authentication.target_ms")
        .unwrap();
    assert_eq!(auth.source, "powertune.toml:2");
    let pool = e.iter().find(|e| e.key == "database.pool_min").unwrap();
    assert_eq!(pool.source, "default (runbook)");
}

#[test]
fn unknown_keys_name_line_and_column() {
    let text = "[database]\npool_min = 25\n  pool_size = 30\n";
    let err = Targets::from_toml_str(text, "powertune.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("powertune.toml:3:3: unknown key `pool_size` in [database]"),
        "{err}"
    );
    let err = Targets::from_toml_str("[dtabase]\n", "p.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("p.toml:1:2: unknown key `dtabase` at the top level"),
        "{err}"
    );
}

#[test]
fn wrong_types_and_bad_values_are_rejected() {
    let err = Targets::from_toml_str("[load]\np95_ms = \"fast\"\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("t.toml:2:1: `load.p95_ms` must be a number"),
        "{err}"
    );
    let err = Targets::from_toml_str("[api.read_crud]\nmax_ms = 100\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("t.toml:2:1: `api.read_crud.max_ms`"),
        "{err}"
    );
    let err = Targets::from_toml_str("[load\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("t.toml:1:"), "{err}");
}

#[test]
fn new_cache_types_and_weights_are_allowed() {
    let text = "[cache.feature_flags]\nttl_s = 60\ncompress = false\npattern = \"flags:*\"\n[worker.weights]\nai = 4\n";
    let t = Targets::from_toml_str(text, "t.toml").unwrap();
    assert_eq!(t.cache["feature_flags"].ttl_s, 60);
    assert_eq!(t.worker.weights["ai"], 4);
    let err = Targets::from_toml_str("[cache.x]\nttl_s = 60\n", "t.toml").unwrap_err();
    assert!(err.to_string().contains("compress"), "{err}");
}

#[test]
fn values_no_command_can_use_are_refused_at_their_line() {
    for (text, want) in [
        (
            "[database]\nstuck_query_s = 1e20\n",
            "t.toml:2:1: `database.stuck_query_s`: is longer than",
        ),
        (
            "[database]\nstuck_query_s = 0\n",
            "t.toml:2:1: `database.stuck_query_s`: must be a time above 0",
        ),
        (
            "[database]\nstuck_query_s = -5\n",
            "t.toml:2:1: `database.stuck_query_s`: must be a time above 0",
        ),
        (
            "[database]\nstuck_query_s = nan\n",
            "t.toml:2:1: `database.stuck_query_s`: must be a time above 0",
        ),
        (
            "[database]\nstuck_query_s = inf\n",
            "t.toml:2:1: `database.stuck_query_s`: must be a time above 0",
        ),
        (
            "[worker]\nheartbeat_stale_s = 1e300\n",
            "t.toml:2:1: `worker.heartbeat_stale_s`",
        ),
        (
            "[worker]\njob_slow_s = 0.0\n",
            "t.toml:2:1: `worker.job_slow_s`",
        ),
        (
            "[worker]\ndrain_minutes = 0.5\n",
            "t.toml:2:1: `worker.drain_minutes`: 0.5 min is below",
        ),
        (
            "[worker]\nbacklog_enqueued = 0\n",
            "t.toml:2:1: `worker.backlog_enqueued`: must be at least 1",
        ),
        (
            "[worker.weights]\nbulk = 0\n",
            "t.toml:2:1: `worker.weights.bulk`: must be at least 1",
        ),
        (
            "[redis]\nslowlog_ms = -1\n",
            "t.toml:2:1: `redis.slowlog_ms`",
        ),
        (
            "[redis]\nops_ratio_max = 1e300\n",
            "t.toml:2:1: `redis.ops_ratio_max`",
        ),
        (
            "[database]\nslow_query_ms = 1e300\nmax_query_ms = 1e299\n",
            "t.toml:3:1: `database.max_query_ms`",
        ),
        (
            "[cache.x]\nttl_s = 0\ncompress = false\npattern = \"x\"\n",
            "t.toml:1:8: `cache.x.ttl_s`",
        ),
        ("[apm]\njob_slow_ms = 0\n", "t.toml:2:1: `apm.job_slow_ms`"),
        (
            "[ai]\nrequest_timeout_s = 1e19\n",
            "t.toml:2:1: `ai.request_timeout_s`",
        ),
    ] {
        let err = Targets::from_toml_str(text, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(want), "{text:?}: {err}");
    }
}

#[test]
fn errors_never_show_a_secret_the_file_holds() {
    for text in [
        "[cache.x]\nttl_s = \"redis://:hunter2@h\"\ncompress = true\npattern = \"x\"\n",
        "[worker.weights]\nx = \"postgres://u:hunter2@db/app\"\n",
        "[database]\nstuck_query_s = \"host=db password=hunter2\"\n",
        "[database]\npassword = \"hunter2\"\n",
        "password = hunter2\n",
        "[database]\nurl = \"postgres://u:hunter2@h/db\n",
    ] {
        let err = Targets::from_toml_str(text, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{text:?}: {err}");
        assert!(err.starts_with("t.toml:"), "{err}");
    }
    let err = Targets::from_toml_str(
        "[cache.x]\nttl_s = \"redis://:hunter2@h\"\ncompress = true\npattern = \"x\"\n",
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("t.toml:1:8: `cache.x`"), "{err}");
    assert!(err.contains("redis://:***@h"), "{err}");
}

#[test]
fn endless_or_huge_files_are_refused_without_reading_them_whole() {
    let err = Targets::load(Some(Path::new("/dev/zero")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than the 4.0 MiB"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "# x\n".repeat(2 * 1024 * 1024)).unwrap();
    let err = Targets::load(Some(&big)).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "cannot read targets file {}: larger",
            big.display()
        )),
        "{err}"
    );
}

#[test]
fn line_col_counts_from_one() {
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
    assert_eq!(line_col("", 0), (1, 1));
}

#[test]
fn systems_are_read_beside_the_targets_and_errors_name_their_place() {
    let text = "[database]\npool_max = 40\n\n[systems]\nredis = \"redis://cache:6379/0\"\ngateway = \"http://gw:4000\"\n";
    let t = Targets::from_toml_str(text, "powertune.toml").unwrap();
    assert_eq!(t.database.pool_max, 40);
    assert_eq!(t.systems.get("redis"), Some("redis://cache:6379/0"));
    assert!(!t.systems.is_configured("db"));
    let e = t.entries();
    let r = e.iter().find(|e| e.key == "systems.redis").unwrap();
    assert_eq!(r.source, "powertune.toml:5");

    let bad = "[systems]\nredis = \"redis://cache:6379/0\"\n  db = \"mysql://db/app\"\n";
    let err = Targets::from_toml_str(bad, "powertune.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("powertune.toml:3:3: systems.db: must be a postgres:// URL"),
        "{err}"
    );
    let bad = "[systems]\ndbs = \"postgres://db/app\"\n";
    let err = Targets::from_toml_str(bad, "powertune.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("powertune.toml:2:1: systems.dbs: unknown key"),
        "{err}"
    );
    let bad = "systems = 3\n";
    let err = Targets::from_toml_str(bad, "powertune.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be a table"), "{err}");
}

#[test]
fn a_password_in_systems_never_reaches_an_error_or_a_listing() {
    let bad = "[systems]\nredis = \"http://user:sekrit99@cache\"\n";
    let err = Targets::from_toml_str(bad, "powertune.toml")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("sekrit99"), "{err}");
    let ok = "[systems]\ndb = \"postgres://app:sekrit99@db/app\"\n";
    let t = Targets::from_toml_str(ok, "powertune.toml").unwrap();
    assert!(t.entries().iter().all(|e| !e.value.contains("sekrit99")));
}
