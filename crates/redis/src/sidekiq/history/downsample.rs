//! Downsampling: consecutive samples merged into one coarser sample, so a history
//! file stays within its size bound without dropping what it recorded.
//!
//! A merged sample holds `n` readings: depth, latency and busy threads are their
//! means (weighted by each side's `n`), `depth_max` and `latency_max_s` their peaks;
//! counters (processed, failed) and set sizes (retry, dead) are the last reading's,
//! so counter growth over merged samples is unchanged. Two samples are never merged
//! across a gap, nor when a counter went down between them (Redis lost its data):
//! the growth before the reset would be lost.

use super::file::Record;
use super::sample::{ProcessSample, QueueSample, Sample};
use std::collections::BTreeMap;

/// Whether `a` then `b` may become one sample.
pub fn mergeable(a: &Sample, b: &Sample) -> bool {
    b.processed >= a.processed && b.failed >= a.failed && b.at >= a.at
}

/// `a` then `b` as one sample of `a.n + b.n` readings, stamped at `b.at`.
pub fn merge(a: &Sample, b: &Sample) -> Sample {
    let (wa, wb) = (a.n.max(1) as f64, b.n.max(1) as f64);
    let mean = |x: f64, y: f64| (x * wa + y * wb) / (wa + wb);
    let mut names: Vec<&str> = a.queues.iter().map(|q| q.name.as_str()).collect();
    for q in &b.queues {
        if !names.contains(&q.name.as_str()) {
            names.push(&q.name);
        }
    }
    let queues = names
        .into_iter()
        .map(|name| {
            let qa = a.queues.iter().find(|q| q.name == name);
            let qb = b.queues.iter().find(|q| q.name == name);
            let get =
                |q: Option<&QueueSample>, f: &dyn Fn(&QueueSample) -> f64| q.map(f).unwrap_or(0.0);
            let mut classes: BTreeMap<String, f64> = BTreeMap::new();
            for (q, w) in [(qa, wa), (qb, wb)] {
                for (c, v) in q.map(|q| &q.classes).into_iter().flatten() {
                    *classes.entry(c.clone()).or_insert(0.0) += v * w / (wa + wb);
                }
            }
            QueueSample {
                name: name.to_string(),
                depth: mean(get(qa, &|q| q.depth as f64), get(qb, &|q| q.depth as f64)).round()
                    as u64,
                latency_s: mean(get(qa, &|q| q.latency_s), get(qb, &|q| q.latency_s)),
                busy: mean(get(qa, &|q| q.busy), get(qb, &|q| q.busy)),
                depth_max: Some(
                    qa.map(QueueSample::depth_peak)
                        .unwrap_or(0)
                        .max(qb.map(QueueSample::depth_peak).unwrap_or(0)),
                ),
                latency_max_s: Some(
                    get(qa, &QueueSample::latency_peak_s)
                        .max(get(qb, &QueueSample::latency_peak_s)),
                ),
                classes,
            }
        })
        .collect();
    let mut processes: Vec<ProcessSample> = Vec::new();
    for p in a.processes.iter().chain(&b.processes) {
        if processes.iter().any(|x| x.identity == p.identity) {
            continue;
        }
        let busy_of = |s: &Sample| {
            s.processes
                .iter()
                .find(|x| x.identity == p.identity)
                .map(|x| x.busy)
                .unwrap_or(0.0)
        };
        // The latest description of the process (b's when it still ran).
        let latest = b
            .processes
            .iter()
            .find(|x| x.identity == p.identity)
            .unwrap_or(p);
        processes.push(ProcessSample {
            busy: mean(busy_of(a), busy_of(b)),
            ..latest.clone()
        });
    }
    Sample {
        at: b.at,
        n: a.n.max(1) + b.n.max(1),
        queues,
        processes,
        processed: b.processed,
        failed: b.failed,
        retry: b.retry,
        dead: b.dead,
    }
}

/// Merges pairs of neighbouring samples among the oldest half of the samples in
/// `records` (never across a gap record). Returns how many pairs were merged.
pub fn halve_oldest(records: &mut Vec<Record>) -> usize {
    let budget = records
        .iter()
        .filter(|r| matches!(r, Record::Sample(_)))
        .count()
        / 2;
    let mut out: Vec<Record> = Vec::with_capacity(records.len());
    let (mut merged, mut seen) = (0, 0);
    // Whether the last record out is a sample not yet merged in this pass.
    let mut open = false;
    for r in records.drain(..) {
        let Record::Sample(b) = &r else {
            open = false;
            out.push(r);
            continue;
        };
        seen += 1;
        if open && seen <= budget {
            if let Some(Record::Sample(a)) = out.last_mut() {
                if mergeable(a, b) {
                    *a = merge(a, b);
                    merged += 1;
                    open = false;
                    continue;
                }
            }
        }
        open = true;
        out.push(r);
    }
    *records = out;
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidekiq::history::file::Gap;

    pub(crate) fn sample(at: f64, processed: u64, depth: u64, latency: f64) -> Sample {
        Sample {
            at,
            n: 1,
            queues: vec![QueueSample {
                name: "default".into(),
                depth,
                latency_s: latency,
                busy: 2.0,
                depth_max: None,
                latency_max_s: None,
                classes: [("HardJob".to_string(), 2.0)].into_iter().collect(),
            }],
            processes: vec![ProcessSample {
                identity: "host:1:abc".into(),
                concurrency: 5,
                busy: 2.0,
                queues: vec!["default".into()],
                weights: BTreeMap::new(),
            }],
            processed,
            failed: 0,
            retry: 0,
            dead: 0,
        }
    }

    #[test]
    fn a_merge_keeps_means_peaks_and_the_last_counters() {
        let m = merge(&sample(10.0, 5, 10, 1.0), &sample(20.0, 9, 30, 3.0));
        assert_eq!(m.n, 2);
        assert_eq!(m.at, 20.0);
        assert_eq!(m.processed, 9);
        let q = &m.queues[0];
        assert_eq!(q.depth, 20);
        assert_eq!(q.depth_peak(), 30);
        assert!((q.latency_s - 2.0).abs() < 1e-9 && (q.latency_peak_s() - 3.0).abs() < 1e-9);
        assert!((q.classes["HardJob"] - 2.0).abs() < 1e-9);
        // Weighted by n: a 2-reading sample counts twice.
        let m3 = merge(&m, &sample(30.0, 10, 50, 0.0));
        assert_eq!(m3.n, 3);
        assert_eq!(m3.queues[0].depth, 30);
        assert_eq!(m3.queues[0].depth_peak(), 50);
        assert!((m3.queues[0].latency_peak_s() - 3.0).abs() < 1e-9);
    }

    #[test]
    fn the_oldest_half_is_merged_in_pairs_but_not_across_gaps_or_resets() {
        let mut r: Vec<Record> = (0..8)
            .map(|i| Record::Sample(sample(i as f64 * 10.0, i * 10, i, 0.0)))
            .collect();
        assert_eq!(halve_oldest(&mut r), 2);
        let ns: Vec<u32> = r
            .iter()
            .filter_map(|r| match r {
                Record::Sample(s) => Some(s.n),
                _ => None,
            })
            .collect();
        assert_eq!(ns, vec![2, 2, 1, 1, 1, 1]);
        // Readings are kept: Σn is unchanged.
        assert_eq!(ns.iter().sum::<u32>(), 8);
        let mut r = vec![
            Record::Sample(sample(0.0, 0, 0, 0.0)),
            Record::Gap(Gap {
                from: 0.0,
                to: 100.0,
                reason: "down".into(),
            }),
        ];
        r.extend(
            [5, 1, 2, 3, 4, 5, 6, 7]
                .into_iter()
                .enumerate()
                .map(|(i, c)| Record::Sample(sample(100.0 + 10.0 * i as f64, c, 0, 0.0))),
        );
        // 0|gap|100: not across the gap; 100→110: the counter went down; 110+120 merge.
        assert_eq!(halve_oldest(&mut r), 1);
        assert_eq!(r.len(), 9);
        assert!(matches!(&r[3], Record::Sample(s) if s.n == 2 && s.processed == 2));
    }
}
