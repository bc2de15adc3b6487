//! `powertune redis` against real servers: the INFO, SLOWLOG and key-scan checks and
//! the `redis` / `redis keys` entries, on the shared test Redis (one database per test,
//! via TestRedis) and on private `redis-server`s for the cases that change server
//! configuration.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{cfg, conn_options, find, open, verdict};
use powertune_core::{Targets, Verdict};
use powertune_redis::info::{self, InfoJudgeInput};
use powertune_redis::keys::{self, ScanOptions};
use powertune_redis::slowlog;
use powertune_test_support::redis_db::{PrivateRedis, TestRedis};
use redis::AsyncCommands;
use std::time::Duration;

#[tokio::test]
async fn info_checks_on_a_private_server_planted_and_absent() {
    let srv = PrivateRedis::start(&[]).await;
    let url = format!("{}/0", srv.url);
    let mut raw = srv.connection(0).await;
    let t = Targets::default();
    let mut conn = open(&url).await;

    // Absent: maxmemory generous, noeviction, no Sidekiq keys, no evictions.
    cfg(&mut raw, "maxmemory", "200mb").await;
    let s = info::collect(&mut conn).await.unwrap();
    assert_eq!(s.maxmemory, 200 * 1024 * 1024);
    assert!(s.maxclients.is_some());
    let f = info::judge(&s, &t.redis, &InfoJudgeInput::default());
    for check in [
        "memory",
        "clients",
        "eviction_policy",
        "evicted_keys",
        "rejected_connections",
    ] {
        assert_eq!(verdict(&f, check), Verdict::Pass, "{check}: {f:#?}");
    }

    // No maxmemory at all is its own finding.
    cfg(&mut raw, "maxmemory", "0").await;
    let f = info::judge(
        &info::collect(&mut conn).await.unwrap(),
        &t.redis,
        &InfoJudgeInput::default(),
    );
    assert_eq!(verdict(&f, "memory"), Verdict::Warn);

    // Planted: 3 MB of data, maxmemory just above used memory → over 80%.
    let blob = vec![b'x'; 3 * 1024 * 1024];
    let _: () = raw.set("blob", blob.as_slice()).await.unwrap();
    let used = info::collect(&mut conn).await.unwrap().used_memory;
    cfg(&mut raw, "maxmemory", &(used * 110 / 100).to_string()).await;
    let f = info::judge(
        &info::collect(&mut conn).await.unwrap(),
        &t.redis,
        &InfoJudgeInput::default(),
    );
    assert_eq!(verdict(&f, "memory"), Verdict::Fail, "{f:#?}");

    // An evicting policy on a database holding Sidekiq keys fails; evictions show.
    // volatile-lru evicts only keys with a TTL, so the `queues` key stays.
    cfg(&mut raw, "maxmemory", "0").await;
    let _: () = raw.sadd("queues", "default").await.unwrap();
    cfg(&mut raw, "maxmemory-policy", "volatile-lru").await;
    for i in 0..8 {
        let _: () = raw
            .set_ex(format!("filler:{i}"), blob.as_slice(), 600)
            .await
            .unwrap();
    }
    let used = info::collect(&mut conn).await.unwrap().used_memory;
    cfg(&mut raw, "maxmemory", &(used * 70 / 100).to_string()).await;
    let _: Result<(), _> = raw.set_ex::<_, _, ()>("trigger", 1, 600).await;
    let s = info::collect(&mut conn).await.unwrap();
    assert!(s.sidekiq_keys);
    assert!(
        s.evicted_keys > 0,
        "volatile-lru under a low maxmemory evicts"
    );
    let f = info::judge(&s, &t.redis, &InfoJudgeInput::default());
    assert_eq!(verdict(&f, "eviction_policy"), Verdict::Fail);
    assert_eq!(verdict(&f, "evicted_keys"), Verdict::Warn);
    cfg(&mut raw, "maxmemory-policy", "noeviction").await;
    let f = info::judge(
        &info::collect(&mut conn).await.unwrap(),
        &t.redis,
        &InfoJudgeInput::default(),
    );
    assert_eq!(verdict(&f, "eviction_policy"), Verdict::Pass);

    // Hit rate: 1 hit, 9 misses.
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut raw)
        .await
        .unwrap();
    cfg(&mut raw, "maxmemory", "0").await;
    let _: () = raw.set("present", 1).await.unwrap();
    let _: Option<String> = raw.get("present").await.unwrap();
    for i in 0..9 {
        let _: Option<String> = raw.get(format!("absent:{i}")).await.unwrap();
    }
    let s = info::collect(&mut conn).await.unwrap();
    assert_eq!((s.keyspace_hits, s.keyspace_misses), (1, 9));
    let f = info::judge(&s, &t.redis, &InfoJudgeInput::default());
    assert_eq!(verdict(&f, "hit_rate"), Verdict::Warn);
}

#[tokio::test]
async fn slowlog_entries_planted_and_absent() {
    let srv = PrivateRedis::start(&["--slowlog-log-slower-than", "5000"]).await;
    let mut raw = srv.connection(0).await;
    let t = Targets::default();
    let mut conn = open(&format!("{}/0", srv.url)).await;
    let s = slowlog::collect(&mut conn, 10).await.unwrap();
    assert!(s.entries.is_empty());
    assert_eq!(s.log_slower_than_us, Some(5000));
    assert_eq!(slowlog::judge(&s, &t.redis)[0].verdict, Verdict::Pass);

    let _: () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg("0.03")
        .query_async(&mut raw)
        .await
        .unwrap();
    let s = slowlog::collect(&mut conn, 10).await.unwrap();
    assert_eq!(s.entries.len(), 1);
    assert_eq!(s.entries[0].command_line(), "DEBUG SLEEP 0.03");
    assert!(s.entries[0].duration_us >= 30_000);
    let f = slowlog::judge(&s, &t.redis);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].verdict, Verdict::Warn);
    assert!(slowlog::render(&s).contains("DEBUG SLEEP 0.03"));
}

#[tokio::test]
async fn key_scan_finds_large_keys_no_ttl_prefixes_and_cache_type_problems() {
    let db = TestRedis::reserve().await;
    let mut raw = db.connection().await;
    let big = vec![b'a'; 2 * 1024 * 1024];
    let _: () = raw.set("blob:report", big.as_slice()).await.unwrap();
    for i in 0..40 {
        let _: () = raw.set(format!("legacy:item:{i}"), "v").await.unwrap();
        let _: () = raw
            .set_ex(format!("cache:user_session:{i}"), "s", 900)
            .await
            .unwrap();
    }
    for i in 0..5 {
        let _: () = raw
            .set_ex(format!("cache:user_session:long:{i}"), "s", 7200)
            .await
            .unwrap();
    }
    // user_profile is configured compress: true: 3 compressed (zlib), 2 plain.
    let zlib = [0x78u8, 0x9c, 0x01, 0x02, 0x03];
    for i in 0..3 {
        let _: () = raw
            .set_ex(format!("cache:user_profile:{i}"), &zlib[..], 600)
            .await
            .unwrap();
    }
    for i in 3..5 {
        let _: () = raw
            .set_ex(format!("cache:user_profile:{i}"), "{\"plain\":true}", 600)
            .await
            .unwrap();
    }
    let t = Targets::default();
    let mut conn = open(&db.url).await;
    let mut o = ScanOptions::new(&t.redis, &t.cache);
    o.count = 20;
    let calls = std::sync::atomic::AtomicU64::new(0);
    let s = keys::collect(&mut conn, &o, &|_, _| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .await
    .unwrap();
    assert!(calls.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert_eq!(s.scanned, 1 + 40 + 45 + 5);
    assert_eq!(s.dbsize, s.scanned);
    assert!(!s.sampled);
    assert_eq!(s.top[0].key, "blob:report");
    assert!(s.top[0].size > 2_000_000);
    assert_eq!(s.top[0].elements, Some(2 * 1024 * 1024));
    assert_eq!(s.large_keys, 1);
    assert_eq!(s.prefixes["legacy:item:*"].no_ttl_keys, 40);
    assert_eq!(s.prefixes["cache:user_session:*"].keys, 45);
    let us = &s.cache_types["user_session"];
    assert_eq!((us.keys, us.no_ttl, us.ttl_too_long), (45, 0, 5));
    let up = &s.cache_types["user_profile"];
    assert_eq!((up.keys, up.compression_checked, up.compressed), (5, 5, 3));

    let f = keys::judge(&s, &t.redis);
    assert_eq!(
        find(&f, "large_key")
            .iter()
            .map(|x| (x.subject.as_str(), x.verdict))
            .collect::<Vec<_>>(),
        vec![("blob:report", Verdict::Warn)]
    );
    let no_ttl: Vec<_> = find(&f, "no_ttl")
        .iter()
        .map(|x| x.subject.clone())
        .collect();
    assert!(
        no_ttl.contains(&"prefix legacy:item:*".to_string()),
        "{no_ttl:?}"
    );
    assert!(no_ttl.contains(&"prefix blob:*".to_string()), "{no_ttl:?}");
    let ttl: Vec<_> = find(&f, "cache_ttl")
        .iter()
        .map(|x| (x.subject.clone(), x.verdict))
        .collect();
    assert!(
        ttl.iter()
            .any(|(s, v)| s.starts_with("cache type user_session") && *v == Verdict::Warn),
        "{ttl:?}"
    );
    assert!(
        ttl.iter()
            .any(|(s, v)| s.starts_with("cache type user_profile") && *v == Verdict::Pass),
        "{ttl:?}"
    );
    let comp: Vec<_> = find(&f, "cache_compression")
        .iter()
        .map(|x| (x.subject.clone(), x.verdict))
        .collect();
    assert!(
        comp.iter()
            .any(|(s, v)| s.starts_with("cache type user_profile") && *v == Verdict::Warn),
        "{comp:?}"
    );
    assert!(keys::render(&s).contains("legacy:item:*"));

    // --sample stops early and extrapolates.
    let mut o2 = o.clone();
    o2.sample = Some(10);
    o2.count = 5;
    let s2 = keys::collect(&mut conn, &o2, &|_, _| {}).await.unwrap();
    assert_eq!(s2.scanned, 10);
    assert!(s2.sampled);
    assert!((s2.extrapolation() - 9.1).abs() < 0.01);

    // --rate throttles: 91 keys at 300 keys/s take at least ~0.25 s.
    let mut o3 = o.clone();
    o3.rate = Some(300);
    o3.count = 10;
    let started = std::time::Instant::now();
    keys::collect(&mut conn, &o3, &|_, _| {}).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    db.release().await;
}

#[tokio::test]
async fn key_scan_absent_problems_pass() {
    let db = TestRedis::reserve().await;
    let mut raw = db.connection().await;
    for i in 0..30 {
        let _: () = raw
            .set_ex(format!("cache:user_session:{i}"), "s", 600)
            .await
            .unwrap();
    }
    let t = Targets::default();
    let mut conn = open(&db.url).await;
    let s = keys::collect(&mut conn, &ScanOptions::new(&t.redis, &t.cache), &|_, _| {})
        .await
        .unwrap();
    let f = keys::judge(&s, &t.redis);
    assert!(f.iter().all(|x| x.verdict == Verdict::Pass), "{f:#?}");
    db.release().await;
}

#[tokio::test]
async fn managed_redis_without_memory_and_config_commands_still_works() {
    let srv = PrivateRedis::start(&[
        "--rename-command",
        "MEMORY",
        "",
        "--rename-command",
        "CONFIG",
        "",
    ])
    .await;
    let mut raw = srv.connection(0).await;
    let _: () = raw.rpush("list:a", &[1, 2, 3, 4, 5]).await.unwrap();
    let _: () = raw.set("str:a", "hello").await.unwrap();
    let t = Targets::default();
    let mut conn = open(&format!("{}/0", srv.url)).await;
    let s = keys::collect(&mut conn, &ScanOptions::new(&t.redis, &t.cache), &|_, _| {})
        .await
        .unwrap();
    assert!(s.memory_unavailable.is_some());
    let list = s.top.iter().find(|k| k.key == "list:a").unwrap();
    assert_eq!((list.size, list.elements), (5, Some(5)));
    assert!(keys::render(&s).contains("element counts"));
    // CONFIG disabled: INFO still gives maxclients (Redis 7); the slowlog threshold is
    // unknown and the snapshot says why.
    let i = info::collect(&mut conn).await.unwrap();
    assert!(i.maxclients.is_some());
    let sl = slowlog::collect(&mut conn, 10).await.unwrap();
    assert_eq!(sl.log_slower_than_us, None);
    assert!(sl.config_unavailable.is_some());
}

#[tokio::test]
async fn the_redis_and_keys_entries_judge_and_render_every_stage() {
    let db = TestRedis::reserve().await;
    let mut raw = db.connection().await;
    for i in 0..12 {
        let _: () = raw.set(format!("legacy:item:{i}"), "v").await.unwrap();
    }
    let t = Targets::default();
    let mut scan = ScanOptions::new(&t.redis, &t.cache);
    scan.count = 5;
    let opts = powertune_redis::RedisOptions {
        conn: conn_options(&db.url),
        slowlog: 10,
        baseline: None,
        scan: Some(scan.clone()),
    };
    let calls = std::sync::atomic::AtomicU64::new(0);
    let i = powertune_redis::inspect_with(&opts, &t, &|_, _| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .await
    .unwrap();
    assert!(calls.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert_eq!(i.command, "redis");
    for check in ["memory", "ops_per_sec", "slowlog", "large_key"] {
        assert!(
            !find(&i.findings, check).is_empty(),
            "{check}: {:#?}",
            i.findings
        );
    }
    assert_eq!(
        find(&i.findings, "no_ttl")[0].subject,
        "prefix legacy:item:*"
    );
    assert_eq!(i.metrics.scan.as_ref().unwrap().scanned, 12);
    assert!(
        i.text.starts_with("Redis ")
            && i.text.contains("SLOWLOG")
            && i.text.contains("Scanned 12 of 12 keys"),
        "{}",
        i.text
    );
    let report = i.report().unwrap();
    powertune_test_support::schema::check::<powertune_redis::RedisMetrics>(
        "redis.v1",
        &report.metrics,
    );
    assert_eq!(report.metrics["scan"]["scanned"], 12);
    assert!(report.metrics["info"]["used_memory"].as_u64().unwrap() > 0);
    assert!(report.metrics["slowlog"]["entries"].is_array());

    let no_scan = powertune_redis::RedisOptions { scan: None, ..opts };
    let i = powertune_redis::inspect(&no_scan, &t).await.unwrap();
    assert!(i.metrics.scan.is_none() && find(&i.findings, "large_key").is_empty());
    let metrics = i.report().unwrap().metrics;
    assert!(metrics["scan"].is_null());
    powertune_test_support::schema::check::<powertune_redis::RedisMetrics>("redis.v1", &metrics);

    let k = keys::inspect(
        &keys::KeysOptions {
            conn: conn_options(&db.url),
            scan,
        },
        &t,
    )
    .await
    .unwrap();
    assert_eq!(k.command, "redis keys");
    assert_eq!(k.metrics.scan.scanned, 12);
    powertune_test_support::schema::check::<keys::KeysMetrics>(
        "redis-keys.v1",
        &k.report().unwrap().metrics,
    );
    assert!(k.text.starts_with("Scanned 12 of 12 keys"), "{}", k.text);
    db.release().await;
}
