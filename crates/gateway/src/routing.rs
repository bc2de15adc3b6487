//! `routing = "latency"` per model alias: its targets are tried fastest first, by a
//! decaying estimate of each target's recent P95.
//!
//! Each (provider, model) target keeps a histogram of its latencies (the time to the
//! first token of a stream, the whole round trip of a JSON answer; a timed-out attempt
//! counts its time too) in [`BUCKETS`] buckets growing by 25%. Before each sample is
//! added, every count is multiplied by `exp(-Δt / τ)` with τ = [`DECAY`] (30 s): a
//! sample weighs half after about 21 s, a tenth after 69 s. The P95 is the upper bound
//! of the bucket where the decayed counts reach 95%. A target with less than
//! [`MIN_WEIGHT`] of decayed weight (never measured, or idle for a while) has no
//! estimate and is tried first, so it gets measured again.

use crate::config::{Config, Target};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Latency buckets: the first ends at 1 ms, each next one 25% later (the last ends
/// near 36 s; longer samples count in it).
pub const BUCKETS: usize = 48;
/// τ of the exponential decay.
pub const DECAY: Duration = Duration::from_secs(30);
/// Decayed weight below which a target has no estimate.
pub const MIN_WEIGHT: f64 = 0.5;

fn upper_bound(i: usize) -> Duration {
    Duration::from_secs_f64(0.001 * 1.25f64.powi(i as i32))
}

fn bucket_of(d: Duration) -> usize {
    let ms = d.as_secs_f64() * 1000.0;
    if ms <= 1.0 {
        return 0;
    }
    ((ms.ln() / 1.25f64.ln() - 1e-6).ceil() as usize).min(BUCKETS - 1)
}

/// One target's decaying latency histogram.
#[derive(Debug, Clone)]
pub struct Estimate {
    counts: [f64; BUCKETS],
    at: Instant,
}

impl Estimate {
    pub fn new(now: Instant) -> Estimate {
        Estimate {
            counts: [0.0; BUCKETS],
            at: now,
        }
    }

    fn factor(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        (-dt / DECAY.as_secs_f64()).exp()
    }

    pub fn observe(&mut self, now: Instant, d: Duration) {
        let f = self.factor(now);
        for c in &mut self.counts {
            *c *= f;
        }
        self.at = self.at.max(now);
        self.counts[bucket_of(d)] += 1.0;
    }

    /// The decayed P95 at `now`; `None` under [`MIN_WEIGHT`].
    pub fn p95(&self, now: Instant) -> Option<Duration> {
        let total: f64 = self.counts.iter().sum();
        if total * self.factor(now) < MIN_WEIGHT {
            return None;
        }
        let mut acc = 0.0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= 0.95 * total {
                return Some(upper_bound(i));
            }
        }
        Some(upper_bound(BUCKETS - 1))
    }
}

/// Every target's estimate, by provider name and model (kept across reloads).
#[derive(Debug, Default)]
pub struct LatencyTable {
    map: Mutex<HashMap<String, HashMap<String, Estimate>>>,
}

impl LatencyTable {
    pub fn observe(&self, provider: &str, model: &str, now: Instant, d: Duration) {
        let mut m = self.map.lock();
        let models = match m.get_mut(provider) {
            Some(x) => x,
            None => m.entry(provider.to_string()).or_default(),
        };
        match models.get_mut(model) {
            Some(e) => e.observe(now, d),
            None => {
                let mut e = Estimate::new(now);
                e.observe(now, d);
                models.insert(model.to_string(), e);
            }
        }
    }

    pub fn p95(&self, provider: &str, model: &str, now: Instant) -> Option<Duration> {
        self.map.lock().get(provider)?.get(model)?.p95(now)
    }

    /// The order to try `n` targets in: each range of `segments` (the targets of one
    /// latency-routed alias) sorted by `p95_of(index)`, unmeasured first, ties in
    /// configured order; the rest keep their place.
    pub fn order(
        n: usize,
        segments: &[Range<usize>],
        p95_of: impl Fn(usize) -> Option<Duration>,
    ) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        for r in segments {
            let r = r.start.min(n)..r.end.min(n);
            order[r].sort_by_key(|&i| p95_of(i).map_or((0, Duration::ZERO), |d| (1, d)));
        }
        order
    }
}

/// The latency-routed ranges of `list` (the targets of a route class or an alias):
/// for each of `aliases` (the class's aliases in order, or the alias itself) that
/// has `routing = "latency"`, the run of `list` its targets occupy, when they
/// occupy one contiguous run (a target shared with an earlier alias breaks it: then
/// that alias keeps its order in this list).
pub fn segments(cfg: &Config, list: &[Target], aliases: &[String]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for a in aliases.iter().filter(|a| cfg.latency_routed.contains(*a)) {
        let mut at: Vec<usize> = cfg
            .models
            .get(a)
            .into_iter()
            .flatten()
            .filter_map(|t| list.iter().position(|x| x == t))
            .collect();
        at.sort_unstable();
        at.dedup();
        if let (Some(&lo), Some(&hi)) = (at.first(), at.last()) {
            if hi - lo + 1 == at.len() && at.len() > 1 {
                out.push(lo..hi + 1);
            }
        }
    }
    out
}

/// Per target list of a config generation (by the address of its shared slice, as
/// held in `Live`'s aliases and classes): its latency-routed ranges.
pub type Segments = HashMap<usize, Vec<Range<usize>>>;

/// The [`Segments`] of every route class's and alias's target list.
pub fn all_segments(
    cfg: &Config,
    classes: &BTreeMap<String, Arc<[Target]>>,
    aliases: &BTreeMap<String, Arc<[Target]>>,
) -> Segments {
    let mut out = Segments::new();
    if cfg.latency_routed.is_empty() {
        return out;
    }
    for (class, list) in classes {
        let names = cfg.routes.get(class).map_or(&[][..], |v| v.as_slice());
        let s = segments(cfg, list, names);
        if !s.is_empty() {
            out.insert(list_id(list), s);
        }
    }
    for (alias, list) in aliases {
        let s = segments(cfg, list, std::slice::from_ref(alias));
        if !s.is_empty() {
            out.insert(list_id(list), s);
        }
    }
    out
}

/// The address a target list is known by in [`Segments`].
pub fn list_id(list: &[Target]) -> usize {
    list.as_ptr() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_by_a_quarter() {
        assert_eq!(bucket_of(Duration::from_micros(500)), 0);
        assert_eq!(bucket_of(Duration::from_millis(1)), 0);
        assert_eq!(bucket_of(Duration::from_micros(1250)), 1);
        assert_eq!(bucket_of(Duration::from_micros(1251)), 2);
        assert_eq!(bucket_of(Duration::from_secs(3600)), BUCKETS - 1);
        for i in 0..BUCKETS {
            assert_eq!(bucket_of(upper_bound(i)), i, "{i}");
        }
    }

    #[test]
    fn p95_of_a_mix_and_its_decay() {
        let now = Instant::now();
        let mut e = Estimate::new(now);
        assert_eq!(e.p95(now), None);
        for _ in 0..95 {
            e.observe(now, Duration::from_millis(10));
        }
        for _ in 0..5 {
            e.observe(now, Duration::from_millis(500));
        }
        let p = e.p95(now).unwrap();
        assert_eq!(p, upper_bound(bucket_of(Duration::from_millis(10))));
        // six more slow ones: now more than 5% are slow
        for _ in 0..6 {
            e.observe(now, Duration::from_millis(500));
        }
        let p = e.p95(now).unwrap();
        assert_eq!(p, upper_bound(bucket_of(Duration::from_millis(500))));
        // old samples fade: 2 min later (e^-4) twenty fresh fast ones dominate
        let later = now + Duration::from_secs(120);
        for _ in 0..20 {
            e.observe(later, Duration::from_millis(10));
        }
        assert_eq!(
            e.p95(later).unwrap(),
            upper_bound(bucket_of(Duration::from_millis(10)))
        );
        // idle: no estimate once the weight has decayed under MIN_WEIGHT
        let idle = later + Duration::from_secs(90);
        assert!(e.p95(idle).is_some());
        assert_eq!(e.p95(later + Duration::from_secs(30 * 7)), None);
    }

    #[test]
    fn order_sorts_segments_unmeasured_first() {
        let p = |i: usize| match i {
            0 => Some(Duration::from_millis(300)),
            1 => Some(Duration::from_millis(20)),
            2 => None,
            3 => Some(Duration::from_millis(5)),
            _ => Some(Duration::from_millis(1)),
        };
        let one = std::iter::once(0..3).collect::<Vec<_>>();
        assert_eq!(LatencyTable::order(5, &one, p), vec![2, 1, 0, 3, 4]);
        assert_eq!(LatencyTable::order(5, &[], p), vec![0, 1, 2, 3, 4]);
        assert_eq!(
            LatencyTable::order(5, &[0..2, 3..5], p),
            vec![1, 0, 2, 4, 3]
        );
    }
}
