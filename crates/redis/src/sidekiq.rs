//! Sidekiq 6, 7 and 8 as stored in Redis: the `queues` set and `queue:NAME` lists, the
//! `schedule`/`retry`/`dead` sorted sets, `stat:*` counters and daily keys, the
//! `processes` set with each process hash and its `:work` hash, and Sidekiq 7+'s
//! `j|...` per-minute metrics hashes.
//!
//! The collector needs two pipelined round trips whatever the number of jobs (and of
//! queues): it never loads a whole list or sorted set. Latency is read as Sidekiq
//! does, from the job at index -1 (the oldest). Timestamps are float seconds (6.x,
//! 7.x) or integer milliseconds (8.x), detected per value.

use crate::conn::{as_array, as_bytes, as_int, as_string, server_error, Conn};
use crate::error::Error;
use crate::{human_bytes, human_secs};
use powertune_core::report::{table, truncate};
use powertune_core::targets::WorkerTargets;
use powertune_core::{Finding, Verdict};
use redis::Value;
use serde::Serialize;
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

/// One queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueInfo {
    pub name: String,
    pub size: u64,
    /// now − enqueued_at of the oldest job, seconds (0 when empty).
    pub latency_s: f64,
    /// Class of the oldest job (ActiveJob's `wrapped` class when present).
    pub oldest_class: Option<String>,
}

/// A job a process is running now (from its `:work` hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunningJob {
    pub queue: String,
    pub class: String,
    pub jid: String,
    /// Unix seconds it started.
    pub run_at: f64,
}

/// One live Sidekiq process (its heartbeat hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessInfo {
    pub identity: String,
    pub hostname: String,
    pub pid: i64,
    pub tag: String,
    pub version: String,
    pub concurrency: u64,
    pub busy: u64,
    /// Unix seconds of the last heartbeat.
    pub beat: f64,
    pub quiet: bool,
    pub rss_kb: u64,
    pub queues: Vec<String>,
    /// Queue weights the process publishes (7.x+); empty on 6.x.
    pub weights: BTreeMap<String, u64>,
    pub running: Vec<RunningJob>,
}

/// What a bounded sample of the retry set shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RetryStats {
    pub size: u64,
    pub sampled: u64,
    /// retry_count → jobs (in the sample).
    pub depth: BTreeMap<u64, u64>,
    pub top_classes: Vec<(String, u64)>,
    pub top_errors: Vec<(String, u64)>,
}

/// A dead job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadJob {
    pub class: String,
    pub error_class: String,
    pub error_message: String,
    /// Unix seconds it failed for good (the sorted-set score).
    pub died_at: f64,
}

/// Processed and failed counts of one UTC day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayStat {
    pub date: String,
    pub processed: u64,
    pub failed: u64,
}

/// Per-class totals of Sidekiq 7+'s `j|` metrics over the window read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobMetric {
    pub class: String,
    pub processed: u64,
    pub failed: u64,
    pub total_ms: u64,
}

impl JobMetric {
    /// Average duration of successful runs (Sidekiq does not time failed ones).
    pub fn avg_s(&self) -> Option<f64> {
        let ok = self.processed.saturating_sub(self.failed);
        (ok > 0).then(|| self.total_ms as f64 / ok as f64 / 1000.0)
    }
}

/// Everything `queues` reads, at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SidekiqSnapshot {
    /// Unix seconds when it was read.
    pub now: f64,
    pub queues: Vec<QueueInfo>,
    /// Queues in the `queues` set beyond `max_queues` (not inspected).
    pub queues_not_read: u64,
    pub processes: Vec<ProcessInfo>,
    /// Members of `processes` whose hash has expired (Sidekiq prunes them).
    pub dead_process_entries: u64,
    pub processed: u64,
    pub failed: u64,
    pub scheduled_size: u64,
    pub retry: RetryStats,
    pub dead_size: u64,
    pub dead_newest: Vec<DeadJob>,
    pub days: Vec<DayStat>,
    /// None when no `j|` metrics keys exist (6.x records none).
    pub metrics: Option<Vec<JobMetric>>,
    pub metrics_minutes: u32,
    /// Round trips the collector needed.
    pub round_trips: u32,
}

impl SidekiqSnapshot {
    pub fn enqueued(&self) -> u64 {
        self.queues.iter().map(|q| q.size).sum()
    }
    pub fn busy(&self) -> u64 {
        self.processes.iter().map(|p| p.busy).sum()
    }
    pub fn concurrency(&self) -> u64 {
        self.processes.iter().map(|p| p.concurrency).sum()
    }
    /// The Sidekiq version the processes report, if any.
    pub fn version(&self) -> Option<&str> {
        self.processes
            .iter()
            .map(|p| p.version.as_str())
            .find(|v| !v.is_empty())
    }
}

/// A JSON timestamp as unix seconds: floats are seconds (6.x/7.x); integers are
/// milliseconds (8.x) unless too small to be (then seconds).
pub fn timestamp_secs(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => n.as_f64(),
        serde_json::Value::Number(n) => {
            let x = n.as_f64()?;
            Some(if x > 1e11 { x / 1000.0 } else { x })
        }
        serde_json::Value::String(s) => {
            s.parse::<f64>()
                .ok()
                .map(|x| if x > 1e11 { x / 1000.0 } else { x })
        }
        _ => None,
    }
}

/// The class a person knows: ActiveJob's `wrapped` class when present.
pub fn job_class(job: &serde_json::Value) -> String {
    job.get("wrapped")
        .and_then(|w| w.as_str())
        .or_else(|| job.get("class").and_then(|c| c.as_str()))
        .unwrap_or("?")
        .to_string()
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
pub async fn collect(conn: &mut Conn, opts: &Options) -> Result<SidekiqSnapshot, Error> {
    let url = conn.url.redacted.clone();
    let not_sidekiq = |reason: String| Error::NotSidekiq {
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

/// The jobs of a `:work` (7.x+) or `:workers` (6.x) hash: thread id → JSON with
/// `queue`, `payload` (a JSON string) and `run_at`.
fn parse_work(work: &Value, now: f64) -> Vec<RunningJob> {
    let values: Vec<String> = match work {
        Value::Map(m) => m.iter().filter_map(|(_, v)| as_string(v)).collect(),
        other => as_array(other)
            .unwrap_or(&[])
            .chunks(2)
            .filter_map(|c| c.get(1).and_then(as_string))
            .collect(),
    };
    values
        .iter()
        .filter_map(|raw| serde_json::from_str::<serde_json::Value>(raw).ok())
        .map(|entry| {
            let payload: serde_json::Value = match entry.get("payload") {
                Some(serde_json::Value::String(p)) => serde_json::from_str(p).unwrap_or_default(),
                Some(other) => other.clone(),
                None => serde_json::Value::Null,
            };
            RunningJob {
                queue: entry
                    .get("queue")
                    .and_then(|q| q.as_str())
                    .unwrap_or("")
                    .to_string(),
                class: job_class(&payload),
                jid: payload
                    .get("jid")
                    .and_then(|j| j.as_str())
                    .unwrap_or("")
                    .to_string(),
                run_at: entry.get("run_at").and_then(timestamp_secs).unwrap_or(now),
            }
        })
        .collect()
}

/// The probability that each queue is polled first, from weights (Sidekiq shuffles a
/// list holding each queue max(weight, 1) times; all-zero weights mean strict order).
pub fn poll_first(order: &[String], weights: &BTreeMap<String, u64>) -> Vec<(String, f64)> {
    if order.is_empty() {
        return Vec::new();
    }
    let ws: Vec<u64> = order
        .iter()
        .map(|q| weights.get(q).copied().unwrap_or(0))
        .collect();
    if ws.iter().all(|&w| w == 0) && !weights.is_empty() {
        return order
            .iter()
            .enumerate()
            .map(|(i, q)| (q.clone(), if i == 0 { 1.0 } else { 0.0 }))
            .collect();
    }
    let eff: Vec<f64> = ws.iter().map(|&w| w.max(1) as f64).collect();
    let total: f64 = eff.iter().sum();
    order
        .iter()
        .zip(eff)
        .map(|(q, w)| (q.clone(), w / total))
        .collect()
}

/// The weights in force: published by the processes (7.x+), else the targets'
/// `worker.weights` (what `sidekiq.yml` should say), else none.
pub fn weights_in_force(
    s: &SidekiqSnapshot,
    t: &WorkerTargets,
) -> (BTreeMap<String, u64>, &'static str) {
    let mut w = BTreeMap::new();
    for p in &s.processes {
        for (k, v) in &p.weights {
            w.entry(k.clone()).or_insert(*v);
        }
    }
    if !w.is_empty() {
        return (w, "published by the processes");
    }
    (
        t.weights
            .iter()
            .map(|(k, v)| (k.clone(), *v as u64))
            .collect(),
        "worker.weights of the targets (this Sidekiq does not publish weights)",
    )
}

const AREA: &str = "queues";

/// Judges a snapshot against the runbook's worker targets.
pub fn judge(s: &SidekiqSnapshot, t: &WorkerTargets) -> Vec<Finding> {
    let mut out = Vec::new();
    // Backlog and latency per queue.
    let backlog: Vec<&QueueInfo> = s
        .queues
        .iter()
        .filter(|q| q.size > t.backlog_enqueued)
        .collect();
    for q in &backlog {
        out.push(
            Finding::new(AREA, "queue_backlog", format!("queue {}", q.name), Verdict::Warn)
                .observed(format!("{} enqueued", q.size))
                .target(format!("<= {}", t.backlog_enqueued))
                .evidence(format!("oldest job {} waited {}", q.oldest_class.as_deref().unwrap_or("?"), human_secs(q.latency_s)))
                .action("Investigate the backlog: check which queue is backed up and its latency, inspect the retry/failed sets for systemic errors, then bump WORKER_CONCURRENCY or add a worker instance"),
        );
    }
    if backlog.is_empty() {
        out.push(
            Finding::new(
                AREA,
                "queue_backlog",
                format!("{} queues", s.queues.len()),
                Verdict::Pass,
            )
            .observed(format!(
                "largest {}",
                s.queues.iter().map(|q| q.size).max().unwrap_or(0)
            ))
            .target(format!("<= {} per queue", t.backlog_enqueued)),
        );
    }
    let fail_s = t.drain_minutes * 60.0;
    let slow: Vec<&QueueInfo> = s
        .queues
        .iter()
        .filter(|q| q.latency_s >= t.queue_latency_s)
        .collect();
    for q in &slow {
        let v = if q.latency_s > fail_s {
            Verdict::Fail
        } else {
            Verdict::Warn
        };
        out.push(
            Finding::new(AREA, "queue_latency", format!("queue {}", q.name), v)
                .observed(human_secs(q.latency_s))
                .target(format!("< {}s", t.queue_latency_s))
                .limit(format!("{}min to return to steady state", t.drain_minutes))
                .evidence(format!("{} enqueued; oldest job {}", q.size, q.oldest_class.as_deref().unwrap_or("?")))
                .action("Capacity issue → bump WORKER_CONCURRENCY or add a worker instance; slow job → profile it and split it or put its slow path under a circuit breaker"),
        );
    }
    if slow.is_empty() {
        out.push(
            Finding::new(
                AREA,
                "queue_latency",
                format!("{} queues", s.queues.len()),
                Verdict::Pass,
            )
            .observed(format!(
                "max {}",
                human_secs(s.queues.iter().map(|q| q.latency_s).fold(0.0, f64::max))
            ))
            .target(format!("< {}s", t.queue_latency_s)),
        );
    }
    // Processes.
    let enqueued = s.enqueued();
    if s.processes.is_empty() {
        out.push(
            Finding::new(AREA, "processes", "live Sidekiq processes", if enqueued > 0 { Verdict::Fail } else { Verdict::Warn })
                .observed(format!("none ({enqueued} jobs enqueued)"))
                .target(">= 1 with a fresh heartbeat")
                .action("Start the worker service (systemctl status powernode-worker@default) and check its log for boot errors"),
        );
    }
    for p in &s.processes {
        let c = p.concurrency;
        if c < t.concurrency_min as u64 || c > t.concurrency_max as u64 {
            out.push(
                Finding::new(AREA, "concurrency", format!("process {}", p.identity), Verdict::Warn)
                    .observed(c.to_string())
                    .target(format!("{}-{}", t.concurrency_min, t.concurrency_max))
                    .action("Set WORKER_CONCURRENCY on the systemd unit: default 5, 10-25 for AI-heavy workloads; add a worker instance beyond 25"),
            );
        }
        let age = s.now - p.beat;
        if age > t.heartbeat_stale_s {
            out.push(
                Finding::new(AREA, "heartbeat", format!("process {}", p.identity), Verdict::Warn)
                    .observed(format!("last beat {} ago", human_secs(age)))
                    .target(format!("< {}s", t.heartbeat_stale_s))
                    .action("The process stopped beating: check it is alive (OOM-kill, stuck thread) and restart it"),
            );
        }
        for j in &p.running {
            let ran = s.now - j.run_at;
            if ran > t.job_slow_s {
                out.push(
                    Finding::new(AREA, "long_running_job", format!("{} ({})", j.class, j.jid), Verdict::Warn)
                        .observed(format!("running {}", human_secs(ran)))
                        .target(format!("< {}s", t.job_slow_s))
                        .evidence(format!("queue {} on {}", j.queue, p.identity))
                        .action("Profile the job; bring the long path under a circuit breaker or split it into smaller jobs"),
                );
            }
        }
    }
    if !s.processes.is_empty() {
        let (busy, cap) = (s.busy(), s.concurrency());
        let util = if cap == 0 {
            0.0
        } else {
            busy as f64 * 100.0 / cap as f64
        };
        let saturated = cap > 0 && busy >= cap && enqueued > 0;
        out.push(
            Finding::new(
                AREA,
                "capacity",
                "busy / concurrency",
                if saturated {
                    Verdict::Warn
                } else {
                    Verdict::Pass
                },
            )
            .observed(format!(
                "{busy}/{cap} busy ({util:.0}%), {enqueued} enqueued, {} processes",
                s.processes.len()
            ))
            .target("spare threads while jobs wait")
            .action("Capacity issue → bump WORKER_CONCURRENCY or add a worker instance"),
        );
    }
    // Retries.
    let deep: u64 = s
        .retry
        .depth
        .iter()
        .filter(|(d, _)| **d >= t.retry_depth_max as u64)
        .map(|(_, n)| n)
        .sum();
    let sampled_note = if s.retry.sampled < s.retry.size {
        format!(" (sample of {} of {})", s.retry.sampled, s.retry.size)
    } else {
        String::new()
    };
    out.push(
        Finding::new(
            AREA,
            "retry_depth",
            "retry set",
            if deep > 0 {
                Verdict::Warn
            } else {
                Verdict::Pass
            },
        )
        .observed(format!(
            "{deep} jobs at retry_count >= {}{sampled_note}",
            t.retry_depth_max
        ))
        .target(format!("retry_count < {}", t.retry_depth_max))
        .evidence(format!(
            "{} in retry; top classes: {}",
            s.retry.size,
            s.retry
                .top_classes
                .iter()
                .map(|(c, n)| format!("{c} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .action("Inspect Sidekiq::RetrySet; investigate the top retried job class"),
    );
    let recent_dead = s
        .dead_newest
        .iter()
        .filter(|d| s.now - d.died_at < 86_400.0)
        .count();
    out.push(
        Finding::new(AREA, "dead", "dead set", if recent_dead > 0 { Verdict::Warn } else { Verdict::Pass })
            .observed(format!("{} dead, {} in the last 24h (of the newest {})", s.dead_size, recent_dead, s.dead_newest.len()))
            .target("no job dying")
            .evidence(s.dead_newest.first().map(|d| format!("newest: {} {}: {}", d.class, d.error_class, d.error_message)).unwrap_or_default())
            .action("Inspect the dead jobs' error classes for systemic errors; fix the cause, then retry them from the dashboard"),
    );
    // Failed rate.
    let (p, f, window) = if s.days.iter().any(|d| d.processed > 0) {
        let p: u64 = s.days.iter().map(|d| d.processed).sum();
        let f: u64 = s.days.iter().map(|d| d.failed).sum();
        (
            p,
            f,
            format!("last {} day(s) with daily stats", s.days.len()),
        )
    } else {
        (
            s.processed,
            s.failed,
            "since the stats were reset".to_string(),
        )
    };
    if p == 0 {
        out.push(
            Finding::new(AREA, "failed_rate", "failed / processed", Verdict::Pass)
                .observed(format!("no jobs processed ({window})"))
                .target(format!("< {}%", t.failed_rate_pct)),
        );
    } else {
        let rate = f as f64 * 100.0 / p as f64;
        out.push(
            Finding::new(AREA, "failed_rate", "failed / processed", Verdict::lower_is_better(rate, t.failed_rate_pct, None))
                .observed(format!("{rate:.2}% ({f} of {p}, {window})"))
                .target(format!("< {}%", t.failed_rate_pct))
                .action("Inspect the retry and dead sets for the failing job class and its error class; fix or put the failing provider behind a breaker"),
        );
    }
    // Job durations.
    match &s.metrics {
        None => out.push(
            Finding::new(AREA, "job_duration", "average job time", Verdict::Pass)
                .observed(match s.version() {
                    Some(v) if v.starts_with('6') || v.starts_with('5') => format!(
                        "not recorded: Sidekiq {v} does not record job durations (7.0+ does)"
                    ),
                    _ => format!(
                        "no j| metrics in the last {} minutes (Sidekiq 6.x does not record them)",
                        s.metrics_minutes
                    ),
                })
                .target(format!("< {}s avg", t.job_avg_s)),
        ),
        Some(m) => {
            let slow: Vec<&JobMetric> = m
                .iter()
                .filter(|j| j.avg_s().is_some_and(|a| a >= t.job_avg_s))
                .collect();
            for j in &slow {
                out.push(
                    Finding::new(AREA, "job_duration", j.class.clone(), Verdict::Warn)
                        .observed(format!("{:.2}s avg over {} runs", j.avg_s().unwrap_or(0.0), j.processed - j.failed))
                        .target(format!("< {}s avg", t.job_avg_s))
                        .action("Profile the job; bring the long path under a circuit breaker or split it into smaller jobs"),
                );
            }
            if slow.is_empty() {
                let worst = m
                    .iter()
                    .filter_map(|j| j.avg_s().map(|a| (a, j.class.as_str())))
                    .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a });
                out.push(
                    Finding::new(
                        AREA,
                        "job_duration",
                        format!("{} job classes", m.len()),
                        Verdict::Pass,
                    )
                    .observed(format!(
                        "slowest {} {:.2}s avg (last {} min)",
                        worst.1, worst.0, s.metrics_minutes
                    ))
                    .target(format!("< {}s avg", t.job_avg_s)),
                );
            }
        }
    }
    out
}

/// The snapshot as tables: queues, processes, retries, dead, stats, metrics.
pub fn render(s: &SidekiqSnapshot, t: &WorkerTargets) -> String {
    let (weights, source) = weights_in_force(s, t);
    let names: Vec<String> = s.queues.iter().map(|q| q.name.clone()).collect();
    // Queues a process polls, in its order; with no process, every queue.
    let order: Vec<String> = match s.processes.first() {
        Some(p) => p.queues.clone(),
        None => names.clone(),
    };
    let probs: BTreeMap<String, f64> = poll_first(&order, &weights).into_iter().collect();
    let mut out = String::new();
    let mut rows = vec![vec![
        "queue".to_string(),
        "size".into(),
        "latency".into(),
        "weight".into(),
        "polled first".into(),
        "oldest job".into(),
    ]];
    for q in &s.queues {
        rows.push(vec![
            q.name.clone(),
            q.size.to_string(),
            human_secs(q.latency_s),
            weights
                .get(&q.name)
                .map(|w| w.to_string())
                .unwrap_or_else(|| "-".into()),
            probs
                .get(&q.name)
                .map(|p| format!("{:.0}%", p * 100.0))
                .unwrap_or_else(|| "not polled".into()),
            q.oldest_class.clone().unwrap_or_default(),
        ]);
    }
    out.push_str(&format!(
        "Queues ({} enqueued, {} scheduled; weights: {source})\n",
        s.enqueued(),
        s.scheduled_size
    ));
    out.push_str(&table(&rows));
    if s.queues_not_read > 0 {
        out.push_str(&format!("({} more queues not read)\n", s.queues_not_read));
    }
    out.push('\n');
    let mut rows = vec![vec![
        "process".to_string(),
        "version".into(),
        "busy".into(),
        "concurrency".into(),
        "beat".into(),
        "rss".into(),
        "queues".into(),
    ]];
    for p in &s.processes {
        rows.push(vec![
            truncate(&p.identity, 40),
            p.version.clone(),
            p.busy.to_string(),
            p.concurrency.to_string(),
            format!(
                "{} ago{}",
                human_secs(s.now - p.beat),
                if p.quiet { " (quiet)" } else { "" }
            ),
            human_bytes(p.rss_kb * 1024),
            p.queues.join(","),
        ]);
    }
    out.push_str(&format!(
        "Processes ({}, {}/{} busy)\n",
        s.processes.len(),
        s.busy(),
        s.concurrency()
    ));
    out.push_str(&table(&rows));
    out.push('\n');
    out.push_str(&format!(
        "Retries: {} (retry_count distribution{}: {})\n",
        s.retry.size,
        if s.retry.sampled < s.retry.size {
            format!(" from a sample of {}", s.retry.sampled)
        } else {
            String::new()
        },
        s.retry
            .depth
            .iter()
            .map(|(d, n)| format!("{d}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    for (c, n) in &s.retry.top_classes {
        out.push_str(&format!("  class {c} ×{n}\n"));
    }
    for (c, n) in &s.retry.top_errors {
        out.push_str(&format!("  error {c} ×{n}\n"));
    }
    out.push_str(&format!("Dead: {}\n", s.dead_size));
    for d in &s.dead_newest {
        out.push_str(&format!(
            "  {} {}: {}\n",
            d.class, d.error_class, d.error_message
        ));
    }
    out.push_str(&format!(
        "Stats: processed {}, failed {}\n",
        s.processed, s.failed
    ));
    for d in &s.days {
        out.push_str(&format!(
            "  {} processed {} failed {}\n",
            d.date, d.processed, d.failed
        ));
    }
    if let Some(m) = &s.metrics {
        let mut rows = vec![vec![
            "job class".to_string(),
            "runs".into(),
            "failed".into(),
            "avg".into(),
        ]];
        let mut sorted: Vec<&JobMetric> = m.iter().collect();
        sorted.sort_by_key(|b| std::cmp::Reverse(b.total_ms));
        for j in sorted.iter().take(15) {
            rows.push(vec![
                j.class.clone(),
                j.processed.to_string(),
                j.failed.to_string(),
                j.avg_s()
                    .map(|a| format!("{a:.2}s"))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&format!("\nJob metrics (last {} min)\n", s.metrics_minutes));
        out.push_str(&table(&rows));
    }
    out
}

/// A light reading for `--watch`: queue depths and latencies, counters, retry size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchSample {
    pub at: f64,
    pub queues: Vec<QueueInfo>,
    pub processed: u64,
    pub failed: u64,
    pub retry_size: u64,
}

/// Reads a [`WatchSample`] in two round trips.
pub async fn sample(conn: &mut Conn, max_queues: usize) -> Result<WatchSample, Error> {
    let opts = Options {
        retry_sample: 1,
        dead_newest: 1,
        days: 1,
        metrics_minutes: 0,
        max_queues,
    };
    let s = collect(conn, &opts).await?;
    Ok(WatchSample {
        at: s.now,
        queues: s.queues,
        processed: s.processed,
        failed: s.failed,
        retry_size: s.retry.size,
    })
}

/// One row of the live view: per queue depth, latency, net rate and drain ETA.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchRow {
    pub queue: String,
    pub size: u64,
    pub latency_s: f64,
    /// Change of depth per second (negative = draining).
    pub net_per_s: f64,
    /// Seconds until empty at the current drain rate (None when not draining).
    pub eta_s: Option<f64>,
}

/// Rates between two samples: per-queue rows, processed/s, failed/s, enqueued/s,
/// retry-set change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchDelta {
    pub rows: Vec<WatchRow>,
    pub processed_per_s: f64,
    pub failed_per_s: f64,
    /// Jobs entering the queues per second (processed/s + depth change/s).
    pub enqueued_per_s: f64,
    pub retry_change: i64,
}

/// Compares two samples (pure).
pub fn delta(prev: &WatchSample, cur: &WatchSample) -> WatchDelta {
    let dt = (cur.at - prev.at).max(1e-3);
    let before: HashMap<&str, u64> = prev
        .queues
        .iter()
        .map(|q| (q.name.as_str(), q.size))
        .collect();
    let rows: Vec<WatchRow> = cur
        .queues
        .iter()
        .map(|q| {
            let net =
                (q.size as f64 - before.get(q.name.as_str()).copied().unwrap_or(0) as f64) / dt;
            WatchRow {
                queue: q.name.clone(),
                size: q.size,
                latency_s: q.latency_s,
                net_per_s: net,
                eta_s: (net < 0.0).then(|| q.size as f64 / -net),
            }
        })
        .collect();
    let depth_before: u64 = prev.queues.iter().map(|q| q.size).sum();
    let depth_now: u64 = cur.queues.iter().map(|q| q.size).sum();
    let processed_per_s = cur.processed.saturating_sub(prev.processed) as f64 / dt;
    WatchDelta {
        rows,
        processed_per_s,
        failed_per_s: cur.failed.saturating_sub(prev.failed) as f64 / dt,
        enqueued_per_s: (processed_per_s + (depth_now as f64 - depth_before as f64) / dt).max(0.0),
        retry_change: cur.retry_size as i64 - prev.retry_size as i64,
    }
}

/// The live view as text.
pub fn render_delta(d: &WatchDelta) -> String {
    let mut rows = vec![vec![
        "queue".to_string(),
        "size".into(),
        "latency".into(),
        "net/s".into(),
        "drain ETA".into(),
    ]];
    for r in &d.rows {
        rows.push(vec![
            r.queue.clone(),
            r.size.to_string(),
            human_secs(r.latency_s),
            format!("{:+.1}", r.net_per_s),
            r.eta_s.map(human_secs).unwrap_or_else(|| "-".into()),
        ]);
    }
    format!(
        "processed {:.1}/s  failed {:.1}/s  enqueued {:.1}/s  retry set {:+}\n{}",
        d.processed_per_s,
        d.failed_per_s,
        d.enqueued_per_s,
        d.retry_change,
        table(&rows)
    )
}

/// Judges the retry set's change over a `--watch` ("Sidekiq retry set growing").
pub fn judge_trend(d: &WatchDelta) -> Finding {
    let verdict = if d.retry_change > 0 {
        Verdict::Warn
    } else {
        Verdict::Pass
    };
    Finding::new("queues", "retry_trend", "retry set over the watch", verdict)
        .observed(format!("{:+} jobs", d.retry_change))
        .target("not growing")
        .action("Sidekiq retry set growing → failing job class: inspect Sidekiq::RetrySet and investigate the top retried job")
}

#[cfg(test)]
mod trend_tests {
    use super::*;

    #[test]
    fn a_growing_retry_set_warns_and_a_steady_one_passes() {
        let mut d = WatchDelta {
            rows: vec![],
            processed_per_s: 0.0,
            failed_per_s: 0.0,
            enqueued_per_s: 0.0,
            retry_change: 4,
        };
        let f = judge_trend(&d);
        assert_eq!(f.verdict, Verdict::Warn);
        assert_eq!(f.observed, "+4 jobs");
        d.retry_change = 0;
        assert_eq!(judge_trend(&d).verdict, Verdict::Pass);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> SidekiqSnapshot {
        SidekiqSnapshot {
            now: 1_700_000_100.0,
            queues: vec![QueueInfo {
                name: "default".into(),
                size: 3,
                latency_s: 5.0,
                oldest_class: Some("A".into()),
            }],
            queues_not_read: 0,
            processes: vec![ProcessInfo {
                identity: "h:1:abc".into(),
                hostname: "h".into(),
                pid: 1,
                tag: String::new(),
                version: "6.4.1".into(),
                concurrency: 10,
                busy: 2,
                beat: 1_700_000_095.0,
                quiet: false,
                rss_kb: 1000,
                queues: vec!["default".into()],
                weights: BTreeMap::new(),
                running: vec![],
            }],
            dead_process_entries: 0,
            processed: 1000,
            failed: 5,
            scheduled_size: 0,
            retry: RetryStats::default(),
            dead_size: 0,
            dead_newest: vec![],
            days: vec![],
            metrics: None,
            metrics_minutes: 60,
            round_trips: 2,
        }
    }

    fn verdicts(f: &[Finding], check: &str) -> Vec<Verdict> {
        f.iter()
            .filter(|x| x.check == check)
            .map(|x| x.verdict)
            .collect()
    }

    #[test]
    fn timestamps_in_seconds_or_ms() {
        assert_eq!(
            timestamp_secs(&serde_json::json!(1_700_000_000.5)),
            Some(1_700_000_000.5)
        );
        assert_eq!(
            timestamp_secs(&serde_json::json!(1_700_000_000_500u64)),
            Some(1_700_000_000.5)
        );
        assert_eq!(
            timestamp_secs(&serde_json::json!(1_700_000_000u64)),
            Some(1_700_000_000.0)
        );
        assert_eq!(
            job_class(
                &serde_json::json!({"class": "Sidekiq::ActiveJob::Wrapper", "wrapped": "MyJob"})
            ),
            "MyJob"
        );
    }

    #[test]
    fn healthy_passes() {
        let f = judge(&snap(), &WorkerTargets::default());
        assert!(f.iter().all(|x| x.verdict == Verdict::Pass), "{f:#?}");
    }

    #[test]
    fn problems_are_found() {
        let mut s = snap();
        s.queues[0].size = 5000;
        s.queues[0].latency_s = 1200.0;
        s.processes[0].concurrency = 50;
        s.processes[0].beat = s.now - 120.0;
        s.processes[0].running.push(RunningJob {
            queue: "default".into(),
            class: "Slow".into(),
            jid: "j".into(),
            run_at: s.now - 90.0,
        });
        s.failed = 50;
        s.retry.depth.insert(4, 2);
        s.retry.size = 2;
        s.metrics = Some(vec![JobMetric {
            class: "Slow".into(),
            processed: 10,
            failed: 0,
            total_ms: 100_000,
        }]);
        let f = judge(&s, &WorkerTargets::default());
        assert_eq!(verdicts(&f, "queue_backlog"), vec![Verdict::Warn]);
        assert_eq!(verdicts(&f, "queue_latency"), vec![Verdict::Fail]);
        assert_eq!(verdicts(&f, "concurrency"), vec![Verdict::Warn]);
        assert_eq!(verdicts(&f, "heartbeat"), vec![Verdict::Warn]);
        assert_eq!(verdicts(&f, "long_running_job"), vec![Verdict::Warn]);
        assert_eq!(verdicts(&f, "failed_rate"), vec![Verdict::Fail]);
        assert_eq!(verdicts(&f, "retry_depth"), vec![Verdict::Warn]);
        assert_eq!(verdicts(&f, "job_duration"), vec![Verdict::Warn]);
        s.processes.clear();
        let f = judge(&s, &WorkerTargets::default());
        assert_eq!(verdicts(&f, "processes"), vec![Verdict::Fail]);
    }

    #[test]
    fn poll_first_probabilities() {
        let order: Vec<String> = ["critical", "standard", "low"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let w: BTreeMap<String, u64> = [("critical", 3), ("standard", 2), ("low", 1)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let p = poll_first(&order, &w);
        assert!((p[0].1 - 0.5).abs() < 1e-9 && (p[2].1 - 1.0 / 6.0).abs() < 1e-9);
        let zero: BTreeMap<String, u64> = order.iter().map(|k| (k.clone(), 0)).collect();
        assert_eq!(poll_first(&order, &zero)[0].1, 1.0);
    }

    #[test]
    fn watch_delta_rates() {
        let mk = |at: f64, size: u64, processed: u64| WatchSample {
            at,
            queues: vec![QueueInfo {
                name: "q".into(),
                size,
                latency_s: 0.0,
                oldest_class: None,
            }],
            processed,
            failed: 0,
            retry_size: 0,
        };
        let d = delta(&mk(0.0, 100, 0), &mk(10.0, 50, 60));
        assert_eq!(d.rows[0].net_per_s, -5.0);
        assert_eq!(d.rows[0].eta_s, Some(10.0));
        assert_eq!(d.processed_per_s, 6.0);
        assert!((d.enqueued_per_s - 1.0).abs() < 1e-9);
    }
}
