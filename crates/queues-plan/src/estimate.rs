//! Arrival rate and run time per queue from a series of samples.
//!
//! Sidekiq counts processed jobs for all queues together (`stat:processed`), so per
//! queue the estimate rests on Little's law: the mean number of jobs running from a
//! queue (busy threads, from the processes' work hashes) is its served rate × its mean
//! run time. With one total rate X and busy threads Bᵢ per queue, queues whose run time
//! is given (`--service-time`) get λᵢ = Bᵢ / Sᵢ; the others share one run time
//! S = ΣB / (X − Σ given λ), i.e. λᵢ = Bᵢ / S. A queue's arrival rate is its served
//! rate plus the growth of its depth over the window.

use powertune_redis::sidekiq::history::{counter_growth, Sample};
use serde::Serialize;
use std::collections::BTreeMap;

/// Run times per queue, seconds, with where each comes from (`given`, `apm`).
pub type RunTimes = BTreeMap<String, (f64, &'static str)>;

/// One queue's load over the window.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct QueueLoad {
    pub name: String,
    /// Jobs entering the queue per second.
    pub arrival_per_s: f64,
    /// Jobs processors took from it per second.
    pub served_per_s: f64,
    /// Mean run time, seconds; None when no job of any queue was seen running.
    pub service_s: Option<f64>,
    /// Mean busy threads on its jobs.
    pub busy: f64,
    /// Depth change per second over the window (positive = growing).
    pub depth_change_per_s: f64,
    pub depth_last: u64,
    pub latency_last_s: f64,
    /// Where the run time comes from: `given` (--service-time), `apm` (an APM report)
    /// or `shared` (busy threads ÷ processed rate).
    pub service_from: String,
}

/// The load of every queue over a window of samples.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Load {
    /// Where the samples come from: `live window` or `history FILE`.
    pub source: String,
    /// From the first sample to the last, seconds.
    pub window_s: f64,
    pub samples: u64,
    pub processed_per_s: f64,
    pub failed_per_s: f64,
    /// Mean busy threads and threads over all processes.
    pub busy: f64,
    pub concurrency: f64,
    pub queues: Vec<QueueLoad>,
}

/// Estimates each queue's load from `samples` (in time order). `given` holds run
/// times per queue with where each comes from (`given`, `apm`). None with fewer than
/// two samples or no time between them.
pub fn estimate(samples: &[Sample], given: &BTreeMap<String, f64>) -> Option<Load> {
    let given = given
        .iter()
        .map(|(q, s)| (q.clone(), (*s, "given")))
        .collect();
    estimate_over(samples, &given, "live window")
}

/// [`estimate`] with run times with their origin and the samples' `source`. Rates
/// come from counter growth over the whole span, gaps between samples included: the
/// counters are cumulative, so the jobs of a gap are counted (but for those done
/// between the last sample before a counter reset and the reset).
pub fn estimate_over(samples: &[Sample], given: &RunTimes, source: &str) -> Option<Load> {
    let (first, last) = (samples.first()?, samples.last()?);
    let window = last.at - first.at;
    if samples.len() < 2 || window <= 0.0 {
        return None;
    }
    let weight: f64 = samples.iter().map(|s| s.n.max(1) as f64).sum();
    let avg = |f: &dyn Fn(&Sample) -> f64| -> f64 {
        samples
            .iter()
            .map(|s| f(s) * s.n.max(1) as f64)
            .sum::<f64>()
            / weight
    };
    let processed = counter_growth(samples.iter().map(|s| s.processed)) as f64 / window;
    let failed = counter_growth(samples.iter().map(|s| s.failed)) as f64 / window;
    let mut names: Vec<String> = Vec::new();
    for s in samples {
        for q in &s.queues {
            if !names.contains(&q.name) {
                names.push(q.name.clone());
            }
        }
        for p in &s.processes {
            for q in &p.queues {
                if !names.contains(q) {
                    names.push(q.clone());
                }
            }
        }
    }
    names.sort();
    let find = |s: &Sample, name: &str| s.queues.iter().find(|q| q.name == name).cloned();
    let busy: Vec<f64> = names
        .iter()
        .map(|n| avg(&|s| find(s, n).map(|q| q.busy).unwrap_or(0.0)))
        .collect();
    let known: f64 = names
        .iter()
        .zip(&busy)
        .filter_map(|(n, b)| given.get(n).filter(|s| s.0 > 0.0).map(|s| b / s.0))
        .sum();
    let rest_busy: f64 = names
        .iter()
        .zip(&busy)
        .filter(|(n, _)| !given.contains_key(*n))
        .map(|(_, b)| b)
        .sum();
    let rest_rate = (processed - known).max(0.0);
    let shared = (rest_busy > 0.0 && rest_rate > 0.0).then(|| rest_busy / rest_rate);
    let queues = names
        .iter()
        .zip(&busy)
        .map(|(n, &b)| {
            let (service, from) = match given.get(n).filter(|s| s.0 > 0.0) {
                Some(&(s, from)) => (Some(s), from),
                None => (shared, "shared"),
            };
            let served = service.map(|s| b / s).unwrap_or(0.0);
            let d0 = find(first, n).map(|q| q.depth).unwrap_or(0) as f64;
            let lastq = find(last, n);
            let d1 = lastq.as_ref().map(|q| q.depth).unwrap_or(0) as f64;
            let change = (d1 - d0) / window;
            QueueLoad {
                name: n.clone(),
                arrival_per_s: (served + change).max(0.0),
                served_per_s: served,
                service_s: service,
                busy: b,
                depth_change_per_s: change,
                depth_last: d1 as u64,
                latency_last_s: lastq.map(|q| q.latency_s).unwrap_or(0.0),
                service_from: from.to_string(),
            }
        })
        .collect();
    Some(Load {
        source: source.to_string(),
        window_s: window,
        samples: samples.len() as u64,
        processed_per_s: processed,
        failed_per_s: failed,
        busy: avg(&|s| s.busy()),
        concurrency: avg(&|s| s.concurrency() as f64),
        queues,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use powertune_redis::sidekiq::history::{ProcessSample, QueueSample};

    fn sample(at: f64, processed: u64, qs: &[(&str, u64, f64)]) -> Sample {
        Sample {
            at,
            n: 1,
            queues: qs
                .iter()
                .map(|(n, d, b)| QueueSample {
                    name: n.to_string(),
                    depth: *d,
                    latency_s: 0.0,
                    busy: *b,
                    depth_max: None,
                    latency_max_s: None,
                    classes: BTreeMap::new(),
                })
                .collect(),
            processes: vec![ProcessSample {
                identity: "w1".into(),
                concurrency: 10,
                busy: qs.iter().map(|q| q.2).sum(),
                queues: qs.iter().map(|q| q.0.to_string()).collect(),
                weights: BTreeMap::new(),
            }],
            processed,
            failed: 0,
            retry: 0,
            dead: 0,
        }
    }

    #[test]
    fn little_splits_the_total_rate_by_busy_threads() {
        // 10 jobs/s in all; 6 threads busy on a, 2 on b; b grows by 1 job/s.
        let s = vec![
            sample(0.0, 0, &[("a", 0, 6.0), ("b", 0, 2.0)]),
            sample(10.0, 100, &[("a", 0, 6.0), ("b", 10, 2.0)]),
        ];
        let l = estimate(&s, &BTreeMap::new()).unwrap();
        let (a, b) = (&l.queues[0], &l.queues[1]);
        assert!((l.processed_per_s - 10.0).abs() < 1e-9);
        assert!((a.service_s.unwrap() - 0.8).abs() < 1e-9);
        assert!((a.served_per_s - 7.5).abs() < 1e-9 && (b.served_per_s - 2.5).abs() < 1e-9);
        assert!((b.arrival_per_s - 3.5).abs() < 1e-9);
        // b's run time given as 2 s: b serves 1/s, a the other 9/s at 6/9 s each.
        let given: BTreeMap<String, f64> = [("b".to_string(), 2.0)].into_iter().collect();
        let l = estimate(&s, &given).unwrap();
        assert!((l.queues[1].served_per_s - 1.0).abs() < 1e-9);
        assert!((l.queues[0].service_s.unwrap() - 6.0 / 9.0).abs() < 1e-9);
        assert!(estimate(&s[..1], &BTreeMap::new()).is_none());
    }
}
