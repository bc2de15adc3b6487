//! The collector: Sidekiq 6, 7 and 8 as stored in Redis, read in two pipelined round
//! trips whatever the number of jobs (and of queues): it never loads a whole list or
//! sorted set. Latency is read as Sidekiq does, from the job at index -1 (the oldest).

use super::payload::{job_class, parse_work, timestamp_secs};
use super::snapshot::*;
use crate::conn::{as_array, as_bytes, as_int, as_string, server_error, Conn};
use crate::error::RedisError;
use powertune_core::report::truncate;
use redis::Value;
use std::collections::{BTreeMap, HashMap};

/// How much of the retry and dead sets, the daily stats and the metrics to read.
#[derive(Debug, Clone)]
pub struct Options {
    /// Jobs read from the retry set for the depth distribution and top classes.
    pub retry_sample: usize,
    /// Newest dead jobs shown.
    pub dead_newest: usize,
    /// Days of `stat:processed:DATE` read.
    pub days: u32,
    /// Minutes of `j|` metrics read.
    pub metrics_minutes: u32,
    /// At most this many queues are read (the rest are counted, not inspected).
    pub max_queues: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            retry_sample: 1000,
            dead_newest: 5,
            days: 7,
            metrics_minutes: 60,
            max_queues: 10_000,
        }
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn top(counts: HashMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

fn type_ok(v: Option<&Value>, want: &str) -> Result<(), String> {
    match v.and_then(as_string) {
        Some(t) if t == "none" || t == want => Ok(()),
        Some(t) => Err(t),
        None => Ok(()),
    }
}

/// Reads the Sidekiq data of the selected database.
pub async fn collect(conn: &mut Conn, opts: &Options) -> Result<SidekiqSnapshot, RedisError> {
    let url = conn.url.redacted.clone();
    let not_sidekiq = |reason: String| RedisError::NotSidekiq {
        url: url.clone(),
        reason,
    };
    // Round trip 1: the sets and counters.
    let mut p = redis::pipe();
    p.cmd("TYPE").arg("queues");
    p.cmd("TYPE").arg("processes");
    p.cmd("TYPE").arg("retry");
    p.cmd("TYPE").arg("dead");
    p.cmd("TYPE").arg("schedule");
    p.cmd("SMEMBERS").arg("queues");
    p.cmd("SMEMBERS").arg("processes");
    p.cmd("GET").arg("stat:processed");
    p.cmd("GET").arg("stat:failed");
    p.cmd("ZCARD").arg("schedule");
    p.cmd("ZCARD").arg("retry");
    p.cmd("ZCARD").arg("dead");
    let r = conn
        .pipe(
            &mut p,
            "SMEMBERS queues/processes, GET stat:*, ZCARD retry/dead/schedule",
        )
        .await?;
    for (i, (key, want)) in [
        ("queues", "set"),
        ("processes", "set"),
        ("retry", "zset"),
        ("dead", "zset"),
        ("schedule", "zset"),
    ]
    .iter()
    .enumerate()
    {
        type_ok(r.get(i), want).map_err(|got| {
            not_sidekiq(format!(
                "key `{key}` is a {got}, Sidekiq keeps a {want} there: this database is not Sidekiq's (example: the database index of Sidekiq's REDIS_URL, e.g. redis://jobs:6379/1)"
            ))
        })?;
    }
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(as_array)
            .map(|a| a.iter().filter_map(as_string).collect())
            .unwrap_or_default()
    };
    let mut queue_names = strings(r.get(5));
    queue_names.sort();
    let mut identities = strings(r.get(6));
    identities.sort();
    let counter = |v: Option<&Value>| v.and_then(as_int).map(|i| i.max(0) as u64);
    let processed = counter(r.get(7));
    let failed = counter(r.get(8));
    let scheduled_size = counter(r.get(9)).unwrap_or(0);
    let retry_size = counter(r.get(10)).unwrap_or(0);
    let dead_size = counter(r.get(11)).unwrap_or(0);
    if queue_names.is_empty()
        && identities.is_empty()
        && processed.is_none()
        && failed.is_none()
        && scheduled_size + retry_size + dead_size == 0
    {
        return Err(not_sidekiq(format!(
            "database {} holds no Sidekiq data (no `queues` set, no `processes`, no `stat:processed`, empty retry/dead/schedule sets); point --url at Sidekiq's database, e.g. redis://jobs:6379/1",
            conn.url.db
        )));
    }
    let queues_not_read = queue_names.len().saturating_sub(opts.max_queues) as u64;
    queue_names.truncate(opts.max_queues);

    // Round trip 2: per queue, per process, the samples, the daily stats, the metrics.
    let now = now_secs();
    let today = chrono::Utc::now().date_naive();
    let mut p = redis::pipe();
    for q in &queue_names {
        p.cmd("LLEN").arg(format!("queue:{q}"));
        p.cmd("LINDEX").arg(format!("queue:{q}")).arg(-1);
    }
    for id in &identities {
        p.cmd("HMGET")
            .arg(id)
            .arg("info")
            .arg("busy")
            .arg("beat")
            .arg("quiet")
            .arg("rss");
        p.cmd("HGETALL").arg(format!("{id}:work"));
        p.cmd("HGETALL").arg(format!("{id}:workers"));
    }
    p.cmd("ZRANGE")
        .arg("retry")
        .arg(0)
        .arg(opts.retry_sample.max(1) as i64 - 1);
    p.cmd("ZREVRANGE")
        .arg("dead")
        .arg(0)
        .arg(opts.dead_newest.max(1) as i64 - 1)
        .arg("WITHSCORES");
    let dates: Vec<chrono::NaiveDate> = (0..opts.days.max(1))
        .filter_map(|d| today.checked_sub_days(chrono::Days::new(d as u64)))
        .collect();
    let mut mget = redis::cmd("MGET");
    for d in &dates {
        mget.arg(format!("stat:processed:{}", d.format("%Y-%m-%d")));
        mget.arg(format!("stat:failed:{}", d.format("%Y-%m-%d")));
    }
    p.add_command(mget);
    let start = chrono::Utc::now();
    let mut metric_keys = Vec::new();
    for m in 0..opts.metrics_minutes {
        let t = start - chrono::Duration::minutes(m as i64);
        use chrono::Timelike;
        let hm = format!("{}:{}", t.hour(), t.minute());
        // 7.x: j|YYYYMMDD|H:M ; 8.x: j|YYMMDD|H:M
        metric_keys.push(format!("j|{}|{hm}", t.format("%Y%m%d")));
        metric_keys.push(format!("j|{}|{hm}", t.format("%y%m%d")));
    }
    for k in &metric_keys {
        p.cmd("HGETALL").arg(k);
    }
    let r = conn
        .pipe(
            &mut p,
            "LLEN/LINDEX queue:*, HMGET processes, ZRANGE retry, MGET stat:*:DATE",
        )
        .await?;
    let mut it = r.iter();
    let mut next = || it.next().cloned().unwrap_or(Value::Nil);

    let mut queues = Vec::new();
    for q in &queue_names {
        let len = next();
        let oldest = next();
        if let Some(e) = server_error(&len) {
            return Err(not_sidekiq(format!(
                "queue:{q} is not a list ({e}): this database is not Sidekiq's"
            )));
        }
        let size = as_int(&len).unwrap_or(0).max(0) as u64;
        let (latency_s, oldest_class) = match as_bytes(&oldest) {
            None => (0.0, None),
            Some(b) => {
                let job: serde_json::Value = serde_json::from_slice(b).map_err(|e| {
                    not_sidekiq(format!(
                        "the oldest entry of queue:{q} is not a Sidekiq job (not JSON: {e})"
                    ))
                })?;
                if !job.is_object() {
                    return Err(not_sidekiq(format!("the oldest entry of queue:{q} is not a Sidekiq job (JSON but not an object)")));
                }
                let at = job
                    .get("enqueued_at")
                    .or_else(|| job.get("created_at"))
                    .and_then(timestamp_secs);
                (at.map_or(0.0, |t| now - t), Some(job_class(&job)))
            }
        };
        queues.push(QueueInfo {
            name: q.clone(),
            size,
            latency_s,
            oldest_class,
        });
    }

    let mut processes = Vec::new();
    let mut dead_process_entries = 0;
    for id in &identities {
        let fields = next();
        let work7 = next();
        let work6 = next();
        let f = as_array(&fields).unwrap_or(&[]);
        let Some(info_raw) = f.first().and_then(as_string) else {
            dead_process_entries += 1;
            continue;
        };
        let info: serde_json::Value = serde_json::from_str(&info_raw)
            .map_err(|e| not_sidekiq(format!("process {id}: `info` is not JSON ({e})")))?;
        let s = |k: &str| {
            info.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let num = |v: Option<&Value>| v.and_then(as_string).and_then(|s| s.parse::<f64>().ok());
        let mut weights = BTreeMap::new();
        if let Some(ws) = info.get("weights") {
            let maps: Vec<&serde_json::Value> = match ws {
                serde_json::Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for m in maps {
                if let Some(o) = m.as_object() {
                    for (k, v) in o {
                        *weights.entry(k.clone()).or_insert(0) += v.as_u64().unwrap_or(0);
                    }
                }
            }
        }
        let mut running = Vec::new();
        for work in [&work7, &work6] {
            running.extend(parse_work(work, now));
        }
        let beat = num(f.get(2))
            .map(|b| if b > 1e11 { b / 1000.0 } else { b })
            .unwrap_or(0.0);
        processes.push(ProcessInfo {
            identity: id.clone(),
            hostname: s("hostname"),
            pid: info.get("pid").and_then(|p| p.as_i64()).unwrap_or(0),
            tag: s("tag"),
            version: s("version"),
            concurrency: info
                .get("concurrency")
                .and_then(|c| c.as_u64())
                .unwrap_or(0),
            busy: num(f.get(1)).unwrap_or(0.0) as u64,
            beat,
            quiet: f.get(3).and_then(as_string).is_some_and(|q| q == "true"),
            rss_kb: num(f.get(4)).unwrap_or(0.0) as u64,
            queues: info
                .get("queues")
                .and_then(|q| q.as_array())
                .map(|a| {
                    let mut seen = Vec::new();
                    for q in a.iter().filter_map(|q| q.as_str()) {
                        if !seen.iter().any(|s: &String| s == q) {
                            seen.push(q.to_string());
                        }
                    }
                    seen
                })
                .unwrap_or_default(),
            weights,
            running,
        });
    }

    // Retry sample.
    let retry_raw = next();
    let mut retry = RetryStats {
        size: retry_size,
        ..Default::default()
    };
    let mut classes = HashMap::new();
    let mut errors = HashMap::new();
    for item in as_array(&retry_raw).unwrap_or(&[]) {
        let Some(b) = as_bytes(item) else { continue };
        let Ok(job) = serde_json::from_slice::<serde_json::Value>(b) else {
            continue;
        };
        retry.sampled += 1;
        let count = job.get("retry_count").and_then(|c| c.as_u64()).unwrap_or(0);
        *retry.depth.entry(count).or_insert(0) += 1;
        *classes.entry(job_class(&job)).or_insert(0) += 1;
        let err = job
            .get("error_class")
            .and_then(|e| e.as_str())
            .unwrap_or("?")
            .to_string();
        *errors.entry(err).or_insert(0) += 1;
    }
    retry.top_classes = top(classes, 5);
    retry.top_errors = top(errors, 5);

    // Newest dead jobs (member, score pairs).
    let dead_raw = next();
    let mut dead_newest = Vec::new();
    let dead_items: Vec<Value> = match &dead_raw {
        Value::Map(m) => m.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect(),
        other => as_array(other).map(|a| a.to_vec()).unwrap_or_default(),
    };
    for pair in dead_items.chunks(2) {
        let Some(b) = pair.first().and_then(as_bytes) else {
            continue;
        };
        let Ok(job) = serde_json::from_slice::<serde_json::Value>(b) else {
            continue;
        };
        let score = pair.get(1).and_then(|s| match s {
            Value::Double(d) => Some(*d),
            other => as_string(other).and_then(|s| s.parse::<f64>().ok()),
        });
        let str_of = |k: &str| {
            job.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        dead_newest.push(DeadJob {
            class: job_class(&job),
            error_class: str_of("error_class"),
            error_message: truncate(&str_of("error_message"), 120),
            died_at: score
                .map(|s| if s > 1e11 { s / 1000.0 } else { s })
                .unwrap_or(0.0),
        });
    }

    // Daily stats.
    let daily = next();
    let vals = as_array(&daily).unwrap_or(&[]);
    let mut days = Vec::new();
    for (i, d) in dates.iter().enumerate() {
        let pv = vals.get(2 * i).and_then(as_int);
        let fv = vals.get(2 * i + 1).and_then(as_int);
        if pv.is_some() || fv.is_some() {
            days.push(DayStat {
                date: d.format("%Y-%m-%d").to_string(),
                processed: pv.unwrap_or(0).max(0) as u64,
                failed: fv.unwrap_or(0).max(0) as u64,
            });
        }
    }

    // Metrics.
    let mut agg: BTreeMap<String, JobMetric> = BTreeMap::new();
    let mut any_metrics = false;
    for _ in &metric_keys {
        let h = next();
        let pairs: Vec<(String, u64)> = match &h {
            Value::Map(m) => m
                .iter()
                .filter_map(|(k, v)| Some((as_string(k)?, as_int(v)?.max(0) as u64)))
                .collect(),
            other => as_array(other)
                .unwrap_or(&[])
                .chunks(2)
                .filter_map(|c| Some((as_string(c.first()?)?, as_int(c.get(1)?)?.max(0) as u64)))
                .collect(),
        };
        for (field, v) in pairs {
            let Some((class, metric)) = field.rsplit_once('|') else {
                continue;
            };
            any_metrics = true;
            let e = agg.entry(class.to_string()).or_insert_with(|| JobMetric {
                class: class.to_string(),
                processed: 0,
                failed: 0,
                total_ms: 0,
            });
            match metric {
                "ms" => e.total_ms += v,
                "p" => e.processed += v,
                "f" => e.failed += v,
                _ => {}
            }
        }
    }
    Ok(SidekiqSnapshot {
        now,
        queues,
        queues_not_read,
        processes,
        dead_process_entries,
        processed: processed.unwrap_or(0),
        failed: failed.unwrap_or(0),
        scheduled_size,
        retry,
        dead_size,
        dead_newest,
        days,
        metrics: any_metrics.then(|| agg.into_values().collect()),
        metrics_minutes: opts.metrics_minutes,
        round_trips: 2,
    })
}
