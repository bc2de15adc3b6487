//! The collector: Sidekiq 6, 7 and 8 as stored in Redis, read in two pipelined round
//! trips whatever the number of jobs (and of queues): it never loads a whole list or
//! sorted set. Latency is read as Sidekiq does, from the job at index -1 (the oldest).

use super::decode;
use super::snapshot::SidekiqSnapshot;
use crate::conn::{as_array, as_int, as_string, Conn};
use crate::error::RedisError;
use redis::Value;

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
        decode::type_ok(r.get(i), want).map_err(|got| {
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
    let mut it = r.into_iter();
    let mut next = || it.next().unwrap_or(Value::Nil);

    let mut queues = Vec::with_capacity(queue_names.len());
    for q in &queue_names {
        let (len, oldest) = (next(), next());
        queues.push(decode::queue(q, &len, &oldest, now).map_err(not_sidekiq)?);
    }
    let mut processes = Vec::new();
    let mut dead_process_entries = 0;
    for id in &identities {
        let (fields, work7, work6) = (next(), next(), next());
        match decode::process(id, &fields, &work7, &work6, now).map_err(not_sidekiq)? {
            Some(p) => processes.push(p),
            None => dead_process_entries += 1,
        }
    }
    let retry = decode::retry_sample(&next(), retry_size);
    let dead_newest = decode::dead_newest(&next());
    let days = decode::days(&next(), &dates);
    let hashes: Vec<Value> = metric_keys.iter().map(|_| next()).collect();
    let metrics = decode::metrics(&hashes);
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
        metrics,
        metrics_minutes: opts.metrics_minutes,
        round_trips: 2,
    })
}
