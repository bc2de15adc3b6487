//! Reading Sidekiq's JSON payloads: timestamps in seconds or milliseconds, the job
//! class a person knows, and the running jobs of a process's work hash.

use super::snapshot::RunningJob;
use crate::conn::{as_array, as_string};
use redis::Value;

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

/// The jobs of a `:work` (7.x+) or `:workers` (6.x) hash: thread id → JSON with
/// `queue`, `payload` (a JSON string) and `run_at`.
pub fn parse_work(work: &Value, now: f64) -> Vec<RunningJob> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
