//! Decoding Sidekiq's replies into the snapshot's parts: pure functions over the
//! values the collector's pipelines returned, so each is tested over hand-built replies.
//! An `Err` is the reason the data is not Sidekiq's.

use super::payload::{backtrace_first_line, job_class, parse_work, timestamp_secs};
use super::snapshot::{
    DayStat, DeadJob, ErrorSample, JobMetric, ProcessInfo, QueueInfo, RetryStats,
};
use crate::conn::{as_array, as_bytes, as_int, as_string, server_error};
use powertune_core::report::truncate;
use redis::Value;
use std::collections::{BTreeMap, HashMap};

/// Classes and error classes listed in the retry summary.
const RETRY_TOP: usize = 5;
/// Characters of a dead job's error message kept.
const DEAD_MESSAGE_CHARS: usize = 120;

fn top(counts: HashMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

pub fn type_ok(v: Option<&Value>, want: &str) -> Result<(), String> {
    match v.and_then(as_string) {
        Some(t) if t == "none" || t == want => Ok(()),
        Some(t) => Err(t),
        None => Ok(()),
    }
}

/// One queue from its LLEN and the LINDEX -1 (oldest job) replies.
pub fn queue(q: &str, len: &Value, oldest: &Value, now: f64) -> Result<QueueInfo, String> {
    if let Some(e) = server_error(len) {
        return Err(format!(
            "queue:{q} is not a list ({e}): this database is not Sidekiq's"
        ));
    }
    let size = as_int(len).unwrap_or(0).max(0) as u64;
    let (latency_s, oldest_class) = match as_bytes(oldest) {
        None => (0.0, None),
        Some(b) => {
            let job: serde_json::Value = serde_json::from_slice(b).map_err(|e| {
                format!("the oldest entry of queue:{q} is not a Sidekiq job (not JSON: {e})")
            })?;
            if !job.is_object() {
                return Err(format!(
                    "the oldest entry of queue:{q} is not a Sidekiq job (JSON but not an object)"
                ));
            }
            let at = job
                .get("enqueued_at")
                .or_else(|| job.get("created_at"))
                .and_then(timestamp_secs);
            (at.map_or(0.0, |t| now - t), Some(job_class(&job)))
        }
    };
    Ok(QueueInfo {
        name: q.to_string(),
        size,
        latency_s,
        oldest_class,
    })
}

/// One process from its HMGET (info, busy, beat, quiet, rss) and its `:work` (7.x+)
/// and `:workers` (6.x) hashes; None when its hash has expired.
pub fn process(
    id: &str,
    fields: &Value,
    work7: &Value,
    work6: &Value,
    now: f64,
) -> Result<Option<ProcessInfo>, String> {
    let f = as_array(fields).unwrap_or(&[]);
    let Some(info_raw) = f.first().and_then(as_string) else {
        return Ok(None);
    };
    let info: serde_json::Value = serde_json::from_str(&info_raw)
        .map_err(|e| format!("process {id}: `info` is not JSON ({e})"))?;
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
    for work in [work7, work6] {
        running.extend(parse_work(work, now));
    }
    let beat = num(f.get(2))
        .map(|b| if b > 1e11 { b / 1000.0 } else { b })
        .unwrap_or(0.0);
    Ok(Some(ProcessInfo {
        identity: id.to_string(),
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
    }))
}

/// What the ZRANGE of the retry set shows: the depth distribution, top classes and
/// top error classes of the jobs read.
pub fn retry_sample(raw: &Value, size: u64) -> RetryStats {
    let mut retry = RetryStats {
        size,
        ..Default::default()
    };
    let mut classes = HashMap::new();
    let mut errors = HashMap::new();
    let mut samples: HashMap<String, ErrorSample> = HashMap::new();
    for item in as_array(raw).unwrap_or(&[]) {
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
        let sample = samples.entry(err.clone()).or_default();
        if sample.backtrace.is_none() {
            // The first job of the class, or the first one with a backtrace.
            let message = job
                .get("error_message")
                .and_then(|m| m.as_str())
                .unwrap_or("");
            *sample = ErrorSample {
                error_class: err.clone(),
                job_class: job_class(&job),
                message: truncate(
                    &powertune_core::redact::text(&truncate(message, DEAD_MESSAGE_CHARS * 4)),
                    DEAD_MESSAGE_CHARS,
                ),
                backtrace: backtrace_first_line(&job),
            };
        }
        *errors.entry(err).or_insert(0) += 1;
    }
    retry.top_classes = top(classes, RETRY_TOP);
    retry.top_errors = top(errors, RETRY_TOP);
    retry.error_samples = retry
        .top_errors
        .iter()
        .filter_map(|(e, _)| samples.remove(e))
        .collect();

    retry
}

/// The newest dead jobs from ZREVRANGE ... WITHSCORES (member, score pairs).
pub fn dead_newest(raw: &Value) -> Vec<DeadJob> {
    let mut dead_newest = Vec::new();
    let dead_items: Vec<Value> = match raw {
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
            // Masked before it is cut (a cut URL could hide its `@` from the policy),
            // from a bounded prefix (the policy's regexes never see a huge message).
            error_message: truncate(
                &powertune_core::redact::text(&truncate(
                    &str_of("error_message"),
                    DEAD_MESSAGE_CHARS * 4,
                )),
                DEAD_MESSAGE_CHARS,
            ),
            died_at: score
                .map(|s| if s > 1e11 { s / 1000.0 } else { s })
                .unwrap_or(0.0),
        });
    }

    dead_newest
}

/// Processed and failed per day from the MGET of `stat:processed:DATE` /
/// `stat:failed:DATE` pairs; days without either are left out.
pub fn days(raw: &Value, dates: &[chrono::NaiveDate]) -> Vec<DayStat> {
    let vals = as_array(raw).unwrap_or(&[]);
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

    days
}

/// Per-class totals of the `j|` metrics hashes read; None when none holds a metric.
pub fn metrics(hashes: &[Value]) -> Option<Vec<JobMetric>> {
    let mut agg: BTreeMap<String, JobMetric> = BTreeMap::new();
    let mut any_metrics = false;
    for h in hashes {
        let pairs: Vec<(String, u64)> = match h {
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
            // Saturating: counters come from Redis, whatever their size.
            match metric {
                "ms" => e.total_ms = e.total_ms.saturating_add(v),
                "p" => e.processed = e.processed.saturating_add(v),
                "f" => e.failed = e.failed.saturating_add(v),
                _ => {}
            }
        }
    }
    any_metrics.then(|| agg.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn arr(v: Vec<Value>) -> Value {
        Value::Array(v)
    }

    #[test]
    fn a_queue_reads_its_size_and_oldest_job_or_says_why_it_is_not_sidekiqs() {
        let job = r#"{"class":"ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper","wrapped":"MailerJob","enqueued_at":1700000000.0}"#;
        let q = queue("mail", &Value::Int(3), &bulk(job), 1_700_000_090.0).unwrap();
        assert_eq!((q.size, q.latency_s), (3, 90.0));
        assert_eq!(q.oldest_class.as_deref(), Some("MailerJob"));
        let empty = queue("idle", &Value::Int(0), &Value::Nil, 1.0).unwrap();
        assert_eq!(
            (empty.size, empty.latency_s, empty.oldest_class),
            (0, 0.0, None)
        );
        let e = queue("x", &Value::Int(1), &bulk("not json"), 1.0).unwrap_err();
        assert!(e.contains("not a Sidekiq job (not JSON"), "{e}");
        let e = queue("x", &Value::Int(1), &bulk("[1]"), 1.0).unwrap_err();
        assert!(e.contains("JSON but not an object"), "{e}");
    }

    #[test]
    fn a_process_reads_its_heartbeat_weights_and_running_jobs() {
        let info = r#"{"hostname":"w1","pid":7,"tag":"app","concurrency":10,"version":"8.0.1","queues":["a","b","a"],"weights":[{"a":3,"b":1}]}"#;
        let fields = arr(vec![
            bulk(info),
            bulk("2"),
            bulk("1700000000500"),
            bulk("true"),
            bulk("2048"),
        ]);
        let work = arr(vec![
            bulk("tid"),
            bulk(
                r#"{"queue":"a","payload":"{\"class\":\"ImportJob\",\"jid\":\"j1\"}","run_at":1699999990}"#,
            ),
        ]);
        let p = process("w1:7:x", &fields, &work, &Value::Nil, 1_700_000_010.0)
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.busy, p.beat, p.quiet, p.rss_kb),
            (2, 1_700_000_000.5, true, 2048)
        );
        assert_eq!(p.queues, vec!["a", "b"]);
        assert_eq!(p.weights.get("a"), Some(&3));
        assert_eq!(p.running[0].class, "ImportJob");
        assert!(process(
            "gone",
            &arr(vec![Value::Nil]),
            &Value::Nil,
            &Value::Nil,
            0.0
        )
        .unwrap()
        .is_none());
        let e = process("bad", &arr(vec![bulk("{")]), &Value::Nil, &Value::Nil, 0.0).unwrap_err();
        assert!(e.starts_with("process bad: `info` is not JSON"), "{e}");
    }

    #[test]
    fn the_retry_sample_counts_depths_classes_and_errors() {
        let raw = arr(vec![
            bulk(r#"{"class":"A","retry_count":3,"error_class":"Timeout"}"#),
            bulk(r#"{"class":"A","retry_count":0,"error_class":"Timeout"}"#),
            bulk(r#"{"class":"B"}"#),
            bulk("not json"),
        ]);
        let r = retry_sample(&raw, 40);
        assert_eq!((r.size, r.sampled), (40, 3));
        assert_eq!(r.depth.get(&0), Some(&2));
        assert_eq!(
            r.top_classes,
            vec![("A".to_string(), 2), ("B".to_string(), 1)]
        );
        assert_eq!(r.top_errors[0], ("Timeout".to_string(), 2));
    }

    #[test]
    fn dead_jobs_read_member_score_pairs_in_seconds_or_ms() {
        let raw = arr(vec![
            bulk(r#"{"class":"Doomed","error_class":"E","error_message":"boom"}"#),
            bulk("1700000000000"),
            bulk(r#"{"class":"Older"}"#),
            Value::Double(1_600_000_000.0),
        ]);
        let d = dead_newest(&raw);
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].class.as_str(), d[0].died_at),
            ("Doomed", 1_700_000_000.0)
        );
        assert_eq!(d[0].error_message, "boom");
        assert_eq!(d[1].died_at, 1_600_000_000.0);
    }

    #[test]
    fn dead_job_messages_lose_their_secrets() {
        let raw = arr(vec![
            bulk(
                r#"{"class":"Sync","error_class":"PG::ConnectionBad","error_message":"could not connect to postgres://app:hunter2@db/app (host=db password=hunter2)"}"#,
            ),
            bulk("1700000000"),
        ]);
        let d = dead_newest(&raw);
        assert!(
            !d[0].error_message.contains("hunter2"),
            "{}",
            d[0].error_message
        );
        assert!(
            d[0].error_message.contains("postgres://app:***@db/app"),
            "{}",
            d[0].error_message
        );
    }

    #[test]
    fn days_keep_only_dates_with_stats() {
        let dates: Vec<chrono::NaiveDate> = ["2026-01-02", "2026-01-01"]
            .iter()
            .map(|d| d.parse().unwrap())
            .collect();
        let raw = arr(vec![bulk("10"), bulk("1"), Value::Nil, Value::Nil]);
        let d = days(&raw, &dates);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].date.as_str(), d[0].processed, d[0].failed),
            ("2026-01-02", 10, 1)
        );
    }

    #[test]
    fn metrics_sum_per_class_or_are_none_without_any() {
        assert!(metrics(&[Value::Nil, arr(vec![])]).is_none());
        let h = arr(vec![
            bulk("ImportJob|ms"),
            bulk("6000"),
            bulk("ImportJob|p"),
            bulk("3"),
            bulk("ImportJob|f"),
            bulk("1"),
        ]);
        let m = metrics(&[h.clone(), h]).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].processed, m[0].failed, m[0].total_ms), (6, 2, 12_000));
        assert_eq!(m[0].avg_s(), Some(3.0));
    }

    #[test]
    fn key_types_other_than_sidekiqs_are_refused() {
        assert!(type_ok(Some(&Value::SimpleString("set".into())), "set").is_ok());
        assert!(type_ok(Some(&Value::SimpleString("none".into())), "set").is_ok());
        assert_eq!(
            type_ok(Some(&Value::SimpleString("string".into())), "set"),
            Err("string".to_string())
        );
    }
}
