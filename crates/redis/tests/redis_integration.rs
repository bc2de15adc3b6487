//! The Redis engine against real servers: the shared test Redis (one database per test,
//! via TestRedis) and private `redis-server`s for the cases that change server
//! configuration. Sidekiq 6 data is written by the real Sidekiq (Ruby), 7.x and 8.x
//! data by fixtures of their payloads.

use powertune_core::{Finding, Targets, Verdict};
use powertune_redis::conn::{Conn, RedisUrl};
use powertune_redis::info::{self, InfoJudgeInput};
use powertune_redis::keys::{self, ScanOptions};
use powertune_redis::{sidekiq, slowlog, RedisError};
use powertune_test_support::redis_db::{PrivateRedis, TestRedis};
use redis::AsyncCommands;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

async fn open(url: &str) -> Conn {
    Conn::open(&RedisUrl::parse(url).unwrap(), TIMEOUT)
        .await
        .unwrap()
}

fn find<'a>(f: &'a [Finding], check: &str) -> Vec<&'a Finding> {
    f.iter().filter(|x| x.check == check).collect()
}

fn verdict(f: &[Finding], check: &str) -> Verdict {
    let v = find(f, check);
    assert_eq!(v.len(), 1, "one {check} finding expected: {f:#?}");
    v[0].verdict
}

async fn cfg(con: &mut redis::aio::MultiplexedConnection, k: &str, v: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(k)
        .arg(v)
        .query_async(con)
        .await
        .unwrap();
}

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

fn ruby_sidekiq(url: &str) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/ruby/sidekiq6_fixture.rb"
    );
    let out = std::process::Command::new("ruby")
        .arg(script)
        .env("REDIS_URL", url)
        .output()
        .expect("ruby with ruby-sidekiq (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn sidekiq6_written_by_real_sidekiq_matches_its_own_api() {
    let db = TestRedis::reserve().await;
    let api = ruby_sidekiq(&db.url);
    let mut conn = open(&db.url).await;
    let s = sidekiq::collect(&mut conn, &sidekiq::Options::default())
        .await
        .unwrap();
    assert_eq!(s.round_trips, 2);
    let api_queues = api["queues"].as_array().unwrap();
    assert_eq!(s.queues.len(), api_queues.len());
    for q in api_queues {
        let mine = s
            .queues
            .iter()
            .find(|m| m.name == q["name"].as_str().unwrap())
            .unwrap();
        assert_eq!(mine.size, q["size"].as_u64().unwrap(), "{}", mine.name);
        let lat = q["latency"].as_f64().unwrap();
        assert!(
            (mine.latency_s - lat).abs() < 3.0,
            "{}: {} vs Sidekiq {}",
            mine.name,
            mine.latency_s,
            lat
        );
    }
    let st = &api["stats"];
    assert_eq!(s.processed, st["processed"].as_u64().unwrap());
    assert_eq!(s.failed, st["failed"].as_u64().unwrap());
    assert_eq!(s.scheduled_size, st["scheduled_size"].as_u64().unwrap());
    assert_eq!(s.retry.size, st["retry_size"].as_u64().unwrap());
    assert_eq!(s.retry.size, api["retry_set_size"].as_u64().unwrap());
    assert_eq!(s.dead_size, st["dead_size"].as_u64().unwrap());
    assert_eq!(s.enqueued(), st["enqueued"].as_u64().unwrap());
    assert_eq!(
        s.processes.len() as u64,
        st["processes_size"].as_u64().unwrap()
    );
    assert_eq!(s.busy(), st["workers_size"].as_u64().unwrap());
    let p = &api["processes"][0];
    assert_eq!(s.processes[0].identity, p["identity"].as_str().unwrap());
    assert_eq!(
        s.processes[0].concurrency,
        p["concurrency"].as_u64().unwrap()
    );
    assert_eq!(s.processes[0].busy, p["busy"].as_u64().unwrap());
    assert_eq!(s.processes[0].queues, vec!["critical", "standard", "low"]);
    assert_eq!(s.processes[0].version, "");
    // What the fixture planted.
    assert_eq!(
        s.queues
            .iter()
            .find(|q| q.name == "low")
            .unwrap()
            .oldest_class
            .as_deref(),
        Some("ReportJob")
    );
    assert_eq!(s.retry.depth.get(&3), Some(&1));
    assert_eq!(s.retry.depth.get(&0), Some(&2));
    assert_eq!(s.retry.top_classes[0], ("FlakyJob".to_string(), 2));
    assert_eq!(s.retry.top_errors[0], ("ArgumentError".to_string(), 3));
    assert_eq!(s.dead_newest.len(), 2);
    assert_eq!(s.dead_newest[0].class, "DoomedJob");
    let running = &s.processes[0].running;
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].class, "LongRunningJob");
    assert!((s.now - running[0].run_at - 90.0).abs() < 5.0);
    let today = s.days.iter().find(|d| d.processed > 0).unwrap();
    assert_eq!((today.processed, today.failed), (200, 5));
    assert!(s.metrics.is_none());

    let t = Targets::default();
    let f = sidekiq::judge(&s, &t.worker);
    assert_eq!(
        find(&f, "queue_backlog")
            .iter()
            .map(|x| (x.subject.as_str(), x.verdict))
            .collect::<Vec<_>>(),
        vec![("queue bulk", Verdict::Warn)]
    );
    assert_eq!(
        find(&f, "queue_latency")
            .iter()
            .map(|x| (x.subject.as_str(), x.verdict))
            .collect::<Vec<_>>(),
        vec![("queue slow", Verdict::Warn)]
    );
    assert_eq!(verdict(&f, "retry_depth"), Verdict::Warn);
    assert_eq!(verdict(&f, "long_running_job"), Verdict::Warn);
    assert_eq!(verdict(&f, "failed_rate"), Verdict::Fail);
    assert_eq!(verdict(&f, "dead"), Verdict::Warn);
    assert_eq!(verdict(&f, "job_duration"), Verdict::Pass);
    assert!(find(&f, "concurrency").is_empty());
    let text = sidekiq::render(&s, &t.worker);
    assert!(text.contains("critical") && text.contains("50%"), "{text}");
    db.release().await;
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn write_fixture(con: &mut redis::aio::MultiplexedConnection, version: &str, ms: bool) {
    let t = now();
    let ts = |secs_ago: f64| -> serde_json::Value {
        if ms {
            serde_json::json!(((t - secs_ago) * 1000.0) as u64)
        } else {
            serde_json::json!(t - secs_ago)
        }
    };
    let wrapper = if ms {
        "Sidekiq::ActiveJob::Wrapper"
    } else {
        "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper"
    };
    // Oldest at the tail (index -1): LPUSH newest last.
    let oldest = serde_json::json!({"class": wrapper, "wrapped": "MailerJob", "queue": "critical", "args": [], "jid": "a1", "created_at": ts(95.0), "enqueued_at": ts(90.0)});
    let newer = serde_json::json!({"class": "PingJob", "queue": "critical", "args": [], "jid": "a2", "created_at": ts(1.0), "enqueued_at": ts(1.0)});
    let _: () = con
        .sadd("queues", &["critical", "standard", "low"])
        .await
        .unwrap();
    let _: () = con
        .lpush("queue:critical", oldest.to_string())
        .await
        .unwrap();
    let _: () = con
        .lpush("queue:critical", newer.to_string())
        .await
        .unwrap();
    let only_created = serde_json::json!({"class": "NoEnqJob", "queue": "low", "args": [], "jid": "a3", "created_at": ts(30.0)});
    let _: () = con
        .lpush("queue:low", only_created.to_string())
        .await
        .unwrap();
    let retry = serde_json::json!({"class": "HardJob", "queue": "standard", "args": [], "jid": "r1", "retry": true, "retry_count": 4, "error_class": "Net::ReadTimeout", "failed_at": ts(600.0)});
    let _: () = con
        .zadd("retry", retry.to_string(), t + 60.0)
        .await
        .unwrap();
    let _: () = con.set("stat:processed", 1000).await.unwrap();
    let _: () = con.set("stat:failed", 3).await.unwrap();
    let id = format!("worker-1:{}:abcdef", if ms { 8 } else { 7 });
    let info = serde_json::json!({"hostname": "worker-1", "pid": 42, "tag": "app", "concurrency": 30, "queues": ["critical", "standard", "low"],
        "weights": [{"critical": 3, "standard": 2, "low": 1}], "version": version, "identity": id, "started_at": t - 3600.0});
    let _: () = con.sadd("processes", &id).await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&id)
        .arg("info")
        .arg(info.to_string())
        .arg("busy")
        .arg(2)
        .arg("beat")
        .arg(t - 2.0)
        .arg("quiet")
        .arg("false")
        .arg("rss")
        .arg(204800)
        .query_async(con)
        .await
        .unwrap();
    let payload = serde_json::json!({"class": wrapper, "wrapped": "ImportJob", "jid": "w1", "queue": "standard"}).to_string();
    let work = serde_json::json!({"queue": "standard", "payload": payload, "run_at": if ms { serde_json::json!(((t - 45.0) * 1000.0) as u64) } else { serde_json::json!((t - 45.0) as u64) }});
    let _: () = con
        .hset(format!("{id}:work"), "tid-1", work.to_string())
        .await
        .unwrap();
    let utc = chrono::Utc::now();
    use chrono::Timelike;
    let key = if ms {
        format!("j|{}|{}:{}", utc.format("%y%m%d"), utc.hour(), utc.minute())
    } else {
        format!("j|{}|{}:{}", utc.format("%Y%m%d"), utc.hour(), utc.minute())
    };
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("ImportJob|ms")
        .arg(60_000)
        .arg("ImportJob|p")
        .arg(10)
        .arg("ImportJob|f")
        .arg(0)
        .arg("PingJob|ms")
        .arg(50)
        .arg("PingJob|p")
        .arg(5)
        .arg("PingJob|f")
        .arg(1)
        .query_async(con)
        .await
        .unwrap();
}

#[tokio::test]
async fn sidekiq7_and_8_payload_fixtures() {
    for (version, ms) in [("7.3.10", false), ("8.1.7", true)] {
        let db = TestRedis::reserve().await;
        let mut raw = db.connection().await;
        write_fixture(&mut raw, version, ms).await;
        let mut conn = open(&db.url).await;
        let s = sidekiq::collect(&mut conn, &sidekiq::Options::default())
            .await
            .unwrap();
        let crit = s.queues.iter().find(|q| q.name == "critical").unwrap();
        assert!(
            (crit.latency_s - 90.0).abs() < 3.0,
            "{version}: {}",
            crit.latency_s
        );
        assert_eq!(crit.oldest_class.as_deref(), Some("MailerJob"));
        let low = s.queues.iter().find(|q| q.name == "low").unwrap();
        assert!(
            (low.latency_s - 30.0).abs() < 3.0,
            "{version}: created_at fallback {}",
            low.latency_s
        );
        assert_eq!(s.processes[0].version, version);
        assert_eq!(s.processes[0].weights.get("critical"), Some(&3));
        assert_eq!(s.processes[0].running[0].class, "ImportJob");
        assert!(
            (s.now - s.processes[0].running[0].run_at - 45.0).abs() < 3.0,
            "{version}"
        );
        let m = s.metrics.as_ref().unwrap();
        let import = m.iter().find(|j| j.class == "ImportJob").unwrap();
        assert_eq!(import.avg_s(), Some(6.0));
        assert_eq!(s.retry.depth.get(&4), Some(&1));
        let t = Targets::default();
        let f = sidekiq::judge(&s, &t.worker);
        assert_eq!(verdict(&f, "concurrency"), Verdict::Warn, "{version}");
        assert_eq!(verdict(&f, "job_duration"), Verdict::Warn, "{version}");
        assert_eq!(find(&f, "queue_latency")[0].verdict, Verdict::Warn);
        assert_eq!(verdict(&f, "long_running_job"), Verdict::Warn);
        assert_eq!(verdict(&f, "failed_rate"), Verdict::Pass);
        let text = sidekiq::render(&s, &t.worker);
        assert!(text.contains("published by the processes"), "{text}");
        db.release().await;
    }
}

#[tokio::test]
async fn queues_needs_two_round_trips_whatever_the_queue_count() {
    let db = TestRedis::reserve().await;
    let mut raw = db.connection().await;
    for q in 0..100 {
        let _: () = raw.sadd("queues", format!("q{q}")).await.unwrap();
        let jobs: Vec<String> = (0..20)
            .map(|j| {
                serde_json::json!({"class": "J", "jid": format!("{q}-{j}"), "enqueued_at": now()})
                    .to_string()
            })
            .collect();
        let _: () = raw.lpush(format!("queue:q{q}"), jobs).await.unwrap();
    }
    let mut conn = open(&db.url).await;
    let a = sidekiq::sample(&mut conn, 10_000).await.unwrap();
    let s = sidekiq::collect(&mut conn, &sidekiq::Options::default())
        .await
        .unwrap();
    assert_eq!(s.round_trips, 2);
    assert_eq!(s.queues.len(), 100);
    assert_eq!(s.enqueued(), 2000);
    // A worker drains 10 jobs from q0 and processes them.
    let _: Vec<String> = redis::cmd("RPOP")
        .arg("queue:q0")
        .arg(10)
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: () = raw.incr("stat:processed", 10).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = sidekiq::sample(&mut conn, 10_000).await.unwrap();
    let d = sidekiq::delta(&a, &b);
    let q0 = d.rows.iter().find(|r| r.queue == "q0").unwrap();
    assert_eq!(q0.size, 10);
    assert!(q0.net_per_s < 0.0 && q0.eta_s.is_some());
    assert!(d.processed_per_s > 0.0);
    db.release().await;
}

#[tokio::test]
async fn not_sidekiq_data_unreachable_servers_and_wrong_databases_are_clear_errors() {
    let db = TestRedis::reserve().await;
    let mut raw = db.connection().await;
    let mut conn = open(&db.url).await;
    let e = sidekiq::collect(&mut conn, &sidekiq::Options::default())
        .await
        .unwrap_err();
    assert!(
        matches!(e, RedisError::NotSidekiq { .. }) && e.to_string().contains("no Sidekiq data"),
        "{e}"
    );
    let _: () = raw.set("queues", "oops").await.unwrap();
    let e = sidekiq::collect(&mut conn, &sidekiq::Options::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("`queues` is a string"), "{e}");
    let _: () = raw.del("queues").await.unwrap();
    let _: () = raw.sadd("queues", "x").await.unwrap();
    let _: () = raw.lpush("queue:x", "not json").await.unwrap();
    let e = sidekiq::collect(&mut conn, &sidekiq::Options::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a Sidekiq job"), "{e}");
    db.release().await;

    // Wrong database index (the test server has 64).
    let base = powertune_test_support::redis_db::base_url();
    let e = Conn::open(&RedisUrl::parse(&format!("{base}/99")).unwrap(), TIMEOUT)
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("database 99 does not exist"), "{e}");

    // Unreachable: a port nobody listens on; the password never shows.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = Conn::open(
        &RedisUrl::parse(&format!("redis://:hunter2@127.0.0.1:{port}/0")).unwrap(),
        TIMEOUT,
    )
    .await
    .err()
    .unwrap();
    let msg = e.to_string();
    assert!(
        matches!(e, RedisError::Connect { .. })
            && msg.contains(&port.to_string())
            && !msg.contains("hunter2"),
        "{msg}"
    );
}

fn conn_options(url: &str) -> powertune_redis::ConnOptions {
    powertune_redis::ConnOptions {
        url: RedisUrl::parse(url).unwrap(),
        timeout: TIMEOUT,
    }
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
    assert_eq!(report.metrics["scan"]["scanned"], 12);
    assert!(report.metrics["info"]["used_memory"].as_u64().unwrap() > 0);
    assert!(report.metrics["slowlog"]["entries"].is_array());

    let no_scan = powertune_redis::RedisOptions { scan: None, ..opts };
    let i = powertune_redis::inspect(&no_scan, &t).await.unwrap();
    assert!(i.metrics.scan.is_none() && find(&i.findings, "large_key").is_empty());
    assert!(i.report().unwrap().metrics["scan"].is_null());

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
    assert!(k.text.starts_with("Scanned 12 of 12 keys"), "{}", k.text);
    db.release().await;
}

#[tokio::test]
async fn the_queues_entry_watches_then_judges_the_full_snapshot() {
    let db = TestRedis::reserve().await;
    let mut raw = db.connection().await;
    write_fixture(&mut raw, "7.3.10", false).await;
    let t = Targets::default();
    let opts = sidekiq::QueuesOptions {
        conn: conn_options(&db.url),
        read: sidekiq::Options::default(),
        watch: Some(sidekiq::WatchOptions {
            every: Duration::from_millis(100),
            ticks: Some(2),
        }),
    };
    let mut ticks = Vec::new();
    let i = sidekiq::inspect_watching(
        &opts,
        &t,
        |elapsed, d| ticks.push((elapsed, d.rows.len())),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(ticks.len(), 2);
    assert!(
        ticks.iter().all(|(e, rows)| *e > 0.0 && *rows == 3),
        "{ticks:?}"
    );
    assert_eq!(i.command, "queues");
    assert_eq!(i.metrics.watch.as_ref().unwrap().retry_change, 0);
    assert_eq!(verdict(&i.findings, "retry_trend"), Verdict::Pass);
    assert_eq!(verdict(&i.findings, "concurrency"), Verdict::Warn);
    assert!(i.text.contains("published by the processes"), "{}", i.text);
    let report = i.report().unwrap();
    assert_eq!(report.metrics["sidekiq"]["processed"], 1000);

    let once = sidekiq::QueuesOptions {
        watch: None,
        ..opts
    };
    let i = sidekiq::inspect(&once, &t).await.unwrap();
    assert!(i.metrics.watch.is_none() && find(&i.findings, "retry_trend").is_empty());
    assert!(i.report().unwrap().metrics["watch"].is_null());
    db.release().await;
}
