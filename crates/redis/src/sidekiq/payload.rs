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

/// Largest inflated `error_backtrace` read (a hostile entry stays bounded).
const MAX_BACKTRACE_BYTES: u64 = 256 * 1024;

/// The first line of a failed job's `error_backtrace`: Sidekiq 6+ stores it
/// compressed (JSON array → zlib deflate → base64 with line breaks), older versions
/// as a plain JSON array. None when absent or unreadable.
pub fn backtrace_first_line(job: &serde_json::Value) -> Option<String> {
    use base64::Engine as _;
    use std::io::Read as _;
    let lines = match job.get("error_backtrace")? {
        serde_json::Value::Array(a) => a.clone(),
        serde_json::Value::String(b64) => {
            let clean: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let deflated = base64::engine::general_purpose::STANDARD
                .decode(clean)
                .ok()?;
            let mut json = Vec::new();
            flate2::read::ZlibDecoder::new(deflated.as_slice())
                .take(MAX_BACKTRACE_BYTES)
                .read_to_end(&mut json)
                .ok()?;
            serde_json::from_slice::<Vec<serde_json::Value>>(&json).ok()?
        }
        _ => return None,
    };
    let first = lines.first()?.as_str()?;
    Some(powertune_core::report::truncate(
        &powertune_core::redact::text(first),
        200,
    ))
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
    fn backtraces_are_read_compressed_or_plain() {
        use base64::Engine as _;
        use std::io::Write as _;
        let lines = r#"["app/jobs/sync_job.rb:12:in `perform'","lib/x.rb:1"]"#;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(lines.as_bytes()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap());
        // Ruby's Base64.encode64 breaks lines every 60 characters.
        let wrapped: String = b64
            .as_bytes()
            .chunks(60)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let job = serde_json::json!({ "error_backtrace": wrapped });
        assert_eq!(
            backtrace_first_line(&job).as_deref(),
            Some("app/jobs/sync_job.rb:12:in `perform'")
        );
        let plain = serde_json::json!({ "error_backtrace": ["a.rb:1", "b.rb:2"] });
        assert_eq!(backtrace_first_line(&plain).as_deref(), Some("a.rb:1"));
        assert_eq!(
            backtrace_first_line(&serde_json::json!({"error_backtrace": "!!"})),
            None
        );
        assert_eq!(backtrace_first_line(&serde_json::json!({})), None);
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
}
