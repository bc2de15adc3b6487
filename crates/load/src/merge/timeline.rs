//! The parts' time series on one wall-clock grid: each part's points are moved by
//! the part's start offset onto the coarsest part's interval, and points that fall
//! in one slot are combined as concurrent (counts and the VU gauge added; latency
//! percentiles the larger of the parts': an upper bound, since a point keeps
//! percentiles, not its histogram). The run-wide figures of the merge are exact; only
//! these per-interval percentiles are bounds.

use crate::timeline::{fold, EndpointLine, Latency, Point, ScenarioLine, TimelineSummary, CAP};
use std::collections::BTreeMap;

/// One part's timeline and how many seconds after the merged run's start it began.
pub(crate) struct Placed<'a> {
    pub offset_s: f64,
    pub timeline: &'a TimelineSummary,
}

/// The parts' timelines on one grid; `None` when no part has a timeline.
pub(crate) fn merge(parts: &[Placed<'_>]) -> Option<TimelineSummary> {
    let interval = parts
        .iter()
        .map(|p| p.timeline.interval_s)
        .fold(0.0f64, f64::max);
    if parts.is_empty() || interval <= 0.0 {
        return None;
    }
    let mut run = Grid::default();
    let mut scenarios: Vec<(ScenarioLine, Grid)> = Vec::new();
    let mut types: BTreeMap<powertune_core::EndpointType, Grid> = BTreeMap::new();
    for p in parts {
        let t = p.timeline;
        let place = |g: &mut Grid, pts: &[Point]| {
            g.add(&coarsen(pts, t.interval_s, interval), p.offset_s, interval)
        };
        place(&mut run, &t.run);
        for (i, sc) in t.scenarios.iter().enumerate() {
            if scenarios.len() <= i {
                scenarios.push((
                    ScenarioLine {
                        name: sc.name.clone(),
                        start_s: None,
                        end_s: None,
                        points: Vec::new(),
                    },
                    Grid::default(),
                ));
            }
            if let Some((line, g)) = scenarios.get_mut(i) {
                let shift = |v: Option<f64>| v.map(|v| v + p.offset_s);
                line.start_s = min_opt(line.start_s, shift(sc.start_s));
                line.end_s = max_opt(line.end_s, shift(sc.end_s));
                place(g, &sc.points);
            }
        }
        for e in &t.endpoint_types {
            place(types.entry(e.endpoint_type).or_default(), &e.points);
        }
    }
    // Every line is folded as often as the longest needs, so they share one interval.
    let mut folds = 0u32;
    let longest = std::iter::once(&run)
        .chain(scenarios.iter().map(|(_, g)| g))
        .chain(types.values())
        .map(Grid::len)
        .max()
        .unwrap_or(0);
    while (longest >> folds) > CAP {
        folds += 1;
    }
    let interval_s = interval * f64::from(1u32 << folds.min(30));
    Some(TimelineSummary {
        interval_s,
        run: run.points(folds, interval),
        scenarios: scenarios
            .into_iter()
            .map(|(mut l, g)| {
                l.points = g.points(folds, interval);
                l
            })
            .collect(),
        endpoint_types: types
            .into_iter()
            .map(|(endpoint_type, g)| EndpointLine {
                endpoint_type,
                points: g.points(folds, interval),
            })
            .collect(),
    })
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `points` (of `from` seconds each) folded pairwise up to `to` seconds each.
fn coarsen(points: &[Point], from: f64, to: f64) -> Vec<Point> {
    let mut pts = points.to_vec();
    let mut at = from.max(1e-9);
    while at * 1.5 < to {
        pts = fold(&pts);
        at *= 2.0;
    }
    pts
}

/// Points of several parts by slot (`interval` seconds from the merged start).
#[derive(Default)]
struct Grid {
    slots: BTreeMap<u64, Point>,
}

impl Grid {
    fn add(&mut self, points: &[Point], offset_s: f64, interval: f64) {
        for p in points {
            let slot = ((p.t_s + offset_s) / interval).round().max(0.0) as u64;
            match self.slots.get_mut(&slot) {
                Some(q) => *q = beside(q, p),
                None => {
                    self.slots.insert(slot, p.clone());
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.slots.keys().next_back().map_or(0, |k| {
            usize::try_from(*k).unwrap_or(usize::MAX).saturating_add(1)
        })
    }

    /// The dense line, empty slots as zero points, folded `folds` times.
    fn points(self, folds: u32, interval: f64) -> Vec<Point> {
        let mut slots: BTreeMap<u64, Point> = BTreeMap::new();
        for (k, p) in self.slots {
            let key = k >> folds;
            match slots.get_mut(&key) {
                Some(q) => *q = q.fold(&p),
                None => {
                    slots.insert(key, p);
                }
            }
        }
        let width = interval * f64::from(1u32 << folds.min(30));
        let n = slots.keys().next_back().map_or(0, |k| k + 1);
        (0..n)
            .map(|k| {
                let mut p = slots.remove(&k).unwrap_or_else(|| Point {
                    secs: width,
                    ..Point::default()
                });
                p.t_s = k as f64 * width;
                p
            })
            .collect()
    }
}

/// Two concurrent points (two parts over the same interval) as one.
fn beside(a: &Point, b: &Point) -> Point {
    let add = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (None, None) => None,
        (x, y) => Some(x.unwrap_or(0) + y.unwrap_or(0)),
    };
    let mut errors = a.errors;
    errors.add(&b.errors);
    Point {
        t_s: a.t_s,
        secs: a.secs.max(b.secs),
        reqs: a.reqs + b.reqs,
        failed: a.failed + b.failed,
        errors,
        latency: Latency::upper(a.latency, b.latency),
        latency_raw: Latency::upper(a.latency_raw, b.latency_raw),
        vus: add(a.vus, b.vus),
        iterations: add(a.iterations, b.iterations),
        dropped_iterations: add(a.dropped_iterations, b.dropped_iterations),
        data_sent: add(a.data_sent, b.data_sent),
        data_received: add(a.data_received, b.data_received),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(t: f64, reqs: u64, vus: u64) -> Point {
        Point {
            t_s: t,
            secs: 1.0,
            reqs,
            vus: Some(vus),
            ..Point::default()
        }
    }

    fn tl(points: Vec<Point>) -> TimelineSummary {
        TimelineSummary {
            interval_s: 1.0,
            run: points,
            scenarios: Vec::new(),
            endpoint_types: Vec::new(),
        }
    }

    #[test]
    fn parts_are_aligned_by_wall_clock_and_added() {
        let a = tl(vec![pt(0.0, 10, 2), pt(1.0, 10, 2), pt(2.0, 10, 2)]);
        let b = tl(vec![pt(0.0, 5, 1), pt(1.0, 5, 1)]);
        // b started 1 s after a.
        let m = merge(&[
            Placed {
                offset_s: 0.0,
                timeline: &a,
            },
            Placed {
                offset_s: 1.0,
                timeline: &b,
            },
        ])
        .unwrap();
        let reqs: Vec<u64> = m.run.iter().map(|p| p.reqs).collect();
        let vus: Vec<Option<u64>> = m.run.iter().map(|p| p.vus).collect();
        assert_eq!(reqs, [10, 15, 15]);
        assert_eq!(vus, [Some(2), Some(3), Some(3)]);
        assert_eq!(
            m.run.iter().map(|p| p.reqs).sum::<u64>(),
            40,
            "nothing lost"
        );
    }

    #[test]
    fn long_merges_stay_within_the_cap() {
        let a = tl((0..CAP).map(|i| pt(i as f64, 1, 1)).collect());
        let m = merge(&[
            Placed {
                offset_s: 0.0,
                timeline: &a,
            },
            Placed {
                offset_s: 300.0,
                timeline: &a,
            },
        ])
        .unwrap();
        assert!(m.run.len() <= CAP, "{}", m.run.len());
        assert_eq!(m.interval_s, 2.0);
        assert_eq!(m.run.iter().map(|p| p.reqs).sum::<u64>(), 2 * CAP as u64);
    }
}
