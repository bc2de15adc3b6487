//! Job run times from a `powertune apm report` JSON report, per queue.
//!
//! The APM report keys jobs by class (`metrics.jobs[]`: `class`, `count`, `avg_ms`);
//! Sidekiq's samples say which classes run from which queue (the processes' work
//! hashes, `classes` per queue). A class belongs to the queue it was seen running
//! from most; a queue's run time is the count-weighted mean of its classes'. Classes
//! never seen running in the samples (jobs shorter than the sampling interval are
//! often missed) are not mapped and are listed.

use powertune_redis::sidekiq::history::Sample;
use serde::Serialize;
use std::collections::BTreeMap;

/// One job class of an APM report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRuntime {
    pub class: String,
    pub count: u64,
    pub avg_s: f64,
}

/// Per queue run times from APM data.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApmTimes {
    pub per_queue: BTreeMap<String, f64>,
    /// Classes with no queue (never seen running in the samples).
    pub unmapped: Vec<String>,
}

/// The job classes of an APM report (the whole report JSON, or its `metrics`).
pub fn jobs_of(report: &serde_json::Value) -> Result<Vec<JobRuntime>, String> {
    if let Some(c) = report.get("command").and_then(|c| c.as_str()) {
        if c != "apm report" {
            return Err(format!(
                "it is a `{c}` report; give the JSON of `powertune apm report --json FILE`"
            ));
        }
    }
    let m = report.get("metrics").unwrap_or(report);
    let jobs = m.get("jobs").and_then(|j| j.as_array()).ok_or(
        "it has no `metrics.jobs` list: give the JSON of `powertune apm report --json FILE`",
    )?;
    Ok(jobs
        .iter()
        .filter_map(|j| {
            Some(JobRuntime {
                class: j.get("class")?.as_str()?.to_string(),
                count: j.get("count")?.as_u64()?,
                avg_s: j.get("avg_ms")?.as_f64()? / 1000.0,
            })
        })
        .filter(|j| j.count > 0 && j.avg_s > 0.0)
        .collect())
}

/// Run time per queue for the `jobs`, mapped to queues by the classes the samples saw.
pub fn service_times(samples: &[Sample], jobs: &[JobRuntime]) -> ApmTimes {
    // class → queue → busy threads summed over samples
    let mut seen: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    for s in samples {
        for q in &s.queues {
            for (c, b) in &q.classes {
                *seen.entry(c).or_default().entry(&q.name).or_insert(0.0) += b * s.n.max(1) as f64;
            }
        }
    }
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut unmapped = Vec::new();
    for j in jobs {
        let queue = seen.get(j.class.as_str()).and_then(|qs| {
            qs.iter()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(q, _)| q.to_string())
        });
        match queue {
            Some(q) => {
                let e = sums.entry(q).or_insert((0.0, 0.0));
                e.0 += j.count as f64 * j.avg_s;
                e.1 += j.count as f64;
            }
            None => unmapped.push(j.class.clone()),
        }
    }
    ApmTimes {
        per_queue: sums
            .into_iter()
            .filter(|(_, (_, n))| *n > 0.0)
            .map(|(q, (t, n))| (q, t / n))
            .collect(),
        unmapped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use powertune_redis::sidekiq::history::QueueSample;

    #[test]
    fn classes_map_to_the_queue_they_run_from_and_weigh_by_count() {
        let q = |name: &str, classes: &[(&str, f64)]| QueueSample {
            name: name.into(),
            depth: 0,
            latency_s: 0.0,
            busy: 0.0,
            depth_max: None,
            latency_max_s: None,
            classes: classes.iter().map(|(c, b)| (c.to_string(), *b)).collect(),
        };
        let s = Sample {
            at: 0.0,
            n: 1,
            queues: vec![
                q("ai", &[("Ai::Job", 3.0)]),
                q("default", &[("Mail", 1.0), ("Ping", 1.0)]),
            ],
            processes: vec![],
            processed: 0,
            failed: 0,
            retry: 0,
            dead: 0,
        };
        let report = serde_json::json!({"command": "apm report", "metrics": {"jobs": [
            {"class": "Ai::Job", "count": 10, "avg_ms": 12000.0},
            {"class": "Mail", "count": 30, "avg_ms": 200.0},
            {"class": "Ping", "count": 10, "avg_ms": 1000.0},
            {"class": "Never", "count": 5, "avg_ms": 10.0}
        ]}});
        let jobs = jobs_of(&report).unwrap();
        let t = service_times(&[s], &jobs);
        assert!((t.per_queue["ai"] - 12.0).abs() < 1e-9);
        // (30 × 0.2 + 10 × 1.0) / 40
        assert!((t.per_queue["default"] - 0.4).abs() < 1e-9);
        assert_eq!(t.unmapped, vec!["Never".to_string()]);
        let e = jobs_of(&serde_json::json!({"command": "db", "metrics": {}})).unwrap_err();
        assert!(e.contains("`db` report"), "{e}");
    }
}
