//! Helpers shared by the Redis engine's integration tests: connecting, finding
//! findings, setting server configuration, and Sidekiq 7/8 payload fixtures.
#![allow(dead_code)]

use powertune_core::{Finding, Verdict};
use powertune_redis::conn::{Conn, RedisUrl};
use redis::AsyncCommands;
use std::time::Duration;

pub const TIMEOUT: Duration = Duration::from_secs(5);

pub async fn open(url: &str) -> Conn {
    Conn::open(&RedisUrl::parse(url).unwrap(), TIMEOUT)
        .await
        .unwrap()
}

pub fn find<'a>(f: &'a [Finding], check: &str) -> Vec<&'a Finding> {
    f.iter().filter(|x| x.check == check).collect()
}

pub fn verdict(f: &[Finding], check: &str) -> Verdict {
    let v = find(f, check);
    assert_eq!(v.len(), 1, "one {check} finding expected: {f:#?}");
    v[0].verdict
}

pub async fn cfg(con: &mut redis::aio::MultiplexedConnection, k: &str, v: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(k)
        .arg(v)
        .query_async(con)
        .await
        .unwrap();
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

pub async fn write_fixture(con: &mut redis::aio::MultiplexedConnection, version: &str, ms: bool) {
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

pub fn conn_options(url: &str) -> powertune_redis::ConnOptions {
    powertune_redis::ConnOptions {
        url: RedisUrl::parse(url).unwrap(),
        timeout: TIMEOUT,
    }
}
