//! Execution segments, with k6's semantics: a run is split into the consecutive parts
//! `(r0, r1], (r1, r2], …` of a sequence `0 = r0 < r1 < … < rn = 1`, and each process
//! runs one part knowing only the sequence and its own index — no coordinator.
//!
//! Values are exact rationals (`1/3` never loses a VU). The split stripes over the
//! least common denominator (LCD) of the segments' lengths: positions `0 … LCD−1` are
//! handed out, biggest segment first, each to the first segment that is "due" (has
//! taken fewer than its share of the positions so far), so each segment's positions
//! are spread evenly. A segment then owns every global index whose position
//! (`index mod LCD`) it was handed. Integers (VUs, iterations) scale to the number
//! of owned indices below them, so the segments of one sequence always add up to the
//! whole and a segment's share only grows as the whole grows; arrival-rate executors
//! start only the arrivals whose global index they own, at their global times.

use crate::plan::{Executor, Plan, Scenario};
use num_rational::Ratio;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

type R = Ratio<u64>;

/// The largest least common denominator of a sequence's segment lengths (the striping
/// table has one entry per position).
pub const MAX_LCD: u64 = 100_000;
/// The most segments a sequence may have.
pub const MAX_SEGMENTS: usize = 10_000;

/// Bad `--segment` / `--segment-sequence` text or a plan that cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SegmentError(pub String);

fn err<T>(s: String) -> Result<T, SegmentError> {
    Err(SegmentError(s))
}

/// One value of a segment or sequence: `1/4`, `0.25`, `25%`, `0`, `1`.
fn value(text: &str) -> Result<R, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "`{t}` is not a fraction, decimal or percentage between 0 and 1 (e.g. 1/4, 0.25, 25%)"
        )
    };
    let v = if let Some(p) = t.strip_suffix('%') {
        decimal(p.trim()).ok_or_else(bad)? / R::from_integer(100)
    } else if let Some((a, b)) = t.split_once('/') {
        let a: u64 = a.trim().parse().map_err(|_| bad())?;
        let b: u64 = b.trim().parse().map_err(|_| bad())?;
        if b == 0 {
            return Err(bad());
        }
        R::new(a, b)
    } else {
        decimal(t).ok_or_else(bad)?
    };
    if v > R::from_integer(1) {
        return Err(bad());
    }
    Ok(v)
}

/// `0.25` → 1/4 (at most 9 decimals).
fn decimal(t: &str) -> Option<R> {
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if (int.is_empty() && frac.is_empty()) || frac.len() > 9 {
        return None;
    }
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return None;
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let scale = 10u64.pow(frac.len() as u32);
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    Some(R::new(int.checked_mul(scale)?.checked_add(frac)?, scale))
}

fn show(r: R) -> String {
    if *r.denom() == 1 {
        r.numer().to_string()
    } else {
        format!("{}/{}", r.numer(), r.denom())
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// What one process runs: its segment of a sequence, and the striping table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The sequence's points, `0` first and `1` last.
    points: Vec<R>,
    /// This process's segment: `(points[index], points[index + 1]]`.
    index: usize,
    lcd: u64,
    /// The positions in `0 … lcd−1` this segment owns, ascending.
    offsets: Vec<u64>,
    /// The whole (unsplit) plan's hash, kept by [`Plan::split`].
    whole_hash: Option<String>,
}

impl Default for Share {
    fn default() -> Share {
        Share::whole()
    }
}

impl Share {
    /// The whole run (no split): owns every index.
    pub fn whole() -> Share {
        Share {
            points: vec![R::from_integer(0), R::from_integer(1)],
            index: 0,
            lcd: 1,
            offsets: vec![0],
            whole_hash: None,
        }
    }

    /// Reads `--segment` and `--segment-sequence`. `segment` is `i/n` (the i-th of n
    /// equal parts, 1-based; the sequence defaults to `0,1/n,…,1`) or k6's `from:to`
    /// (`1/4:1/2`, `25%:50%`, `0.25:0.5`; the sequence defaults to `0,from,to,1`).
    /// `sequence` is k6's `r0,r1,…,rn` from 0 to 1 and must hold `from` and `to` as
    /// consecutive points.
    pub fn parse(segment: &str, sequence: Option<&str>) -> Result<Share, SegmentError> {
        let (from, to, default_seq) = match segment.split_once(':') {
            Some((a, b)) => {
                let from = value(a).map_err(|e| SegmentError(format!("--segment {e}")))?;
                let to = value(b).map_err(|e| SegmentError(format!("--segment {e}")))?;
                let mut seq = vec![R::from_integer(0), from, to, R::from_integer(1)];
                seq.dedup();
                (from, to, seq)
            }
            None => {
                let parsed = segment.split_once('/').and_then(|(i, n)| {
                    Some((i.trim().parse::<u64>().ok()?, n.trim().parse::<u64>().ok()?))
                });
                let Some((i, n)) = parsed.filter(|(i, n)| *i >= 1 && i <= n) else {
                    return err(format!(
                        "--segment `{segment}` is neither i/n (the i-th of n equal parts, 1 ≤ i ≤ n, e.g. 2/4) nor from:to (e.g. 1/4:1/2)"
                    ));
                };
                if n as usize > MAX_SEGMENTS {
                    return err(format!(
                        "--segment `{segment}`: at most {MAX_SEGMENTS} segments"
                    ));
                }
                let seq = (0..=n).map(|k| R::new(k, n)).collect();
                (R::new(i - 1, n), R::new(i, n), seq)
            }
        };
        if from >= to {
            return err(format!(
                "--segment `{segment}`: the start must be below the end (e.g. 1/4:1/2)"
            ));
        }
        let points = match sequence {
            Some(s) => parse_sequence(s)?,
            None => default_seq,
        };
        let Some(index) = points.windows(2).position(|w| w[0] == from && w[1] == to) else {
            return err(format!(
                "--segment {}:{} is not one of the segments of --segment-sequence {} (each segment is two neighbouring points of the sequence)",
                show(from),
                show(to),
                join(&points)
            ));
        };
        Share::new(points, index)
    }

    /// Segment `index` (0-based) of the sequence `points`.
    pub fn new(points: Vec<R>, index: usize) -> Result<Share, SegmentError> {
        let lens: Vec<R> = points.windows(2).map(|w| w[1] - w[0]).collect();
        if index >= lens.len() {
            return err(format!(
                "segment index {index} is past the sequence's {} segments",
                lens.len()
            ));
        }
        let mut lcd: u64 = 1;
        for l in &lens {
            let d = *l.denom();
            lcd = (lcd / gcd(lcd, d)).saturating_mul(d);
            if lcd > MAX_LCD {
                return err(format!(
                    "--segment-sequence {}: its segments' common denominator exceeds {MAX_LCD}; use simpler fractions (e.g. 0,1/3,2/3,1)",
                    join(&points)
                ));
            }
        }
        let shares: Vec<u64> = lens.iter().map(|l| l.numer() * (lcd / l.denom())).collect();
        let mut order: Vec<usize> = (0..shares.len()).collect();
        order.sort_by(|a, b| shares[*b].cmp(&shares[*a]).then(a.cmp(b)));
        if (shares.len() as u128) * u128::from(lcd) > 50_000_000 {
            return err(format!(
                "--segment-sequence {}: {} segments over a common denominator of {lcd} is too many to stripe; use fewer segments or simpler fractions",
                join(&points),
                shares.len()
            ));
        }
        let mut taken = vec![0u64; shares.len()];
        let mut offsets = Vec::new();
        for pos in 0..lcd {
            // Some segment is always due: the counts sum to `pos`, the shares to `lcd`.
            let due = order.iter().copied().find(|&s| {
                u128::from(taken[s]) * u128::from(lcd) <= u128::from(pos) * u128::from(shares[s])
            });
            if let Some(s) = due {
                taken[s] += 1;
                if s == index {
                    offsets.push(pos);
                }
            }
        }
        Ok(Share {
            points,
            index,
            lcd,
            offsets,
            whole_hash: None,
        })
    }

    /// Every segment of this share's sequence, in order.
    pub fn siblings(&self) -> Result<Vec<Share>, SegmentError> {
        (0..self.count())
            .map(|i| Share::new(self.points.clone(), i))
            .collect()
    }

    /// No split: the whole run.
    pub fn is_whole(&self) -> bool {
        self.points.len() == 2
    }

    /// 0-based position of the segment in its sequence.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Segments in the sequence.
    pub fn count(&self) -> usize {
        self.points.len() - 1
    }

    /// The segment as k6 writes it: `1/4:1/2`.
    pub fn segment_text(&self) -> String {
        format!(
            "{}:{}",
            show(self.points[self.index]),
            show(self.points[self.index + 1])
        )
    }

    /// The sequence as k6 writes it: `0,1/4,1/2,3/4,1`.
    pub fn sequence_text(&self) -> String {
        join(&self.points)
    }

    /// The segment's length (its share of the run), as a float.
    pub fn fraction(&self) -> f64 {
        let l = self.points[self.index + 1] - self.points[self.index];
        *l.numer() as f64 / *l.denom() as f64
    }

    /// This segment's part of an integer total: the owned indices below `v`. The
    /// parts of all segments of a sequence sum to `v`.
    pub fn scale(&self, v: u64) -> u64 {
        let per = self.offsets.len() as u64;
        let rem = v % self.lcd;
        (v / self.lcd) * per + self.offsets.partition_point(|&o| o < rem) as u64
    }

    /// Whether global index `k` (an arrival, a VU) is this segment's.
    pub fn owns(&self, k: u64) -> bool {
        self.offsets.binary_search(&(k % self.lcd)).is_ok()
    }

    /// The global index of this segment's `j`-th owned index (its VUs' ids across the
    /// whole run, k6's `idInTest`).
    pub fn nth(&self, j: u64) -> u64 {
        let per = self.offsets.len().max(1) as u64;
        let off = self.offsets.get((j % per) as usize).copied().unwrap_or(0);
        (j / per) * self.lcd + off
    }

    /// The identity written into the run's JSON.
    pub fn info(&self, plan_hash: &str) -> SegmentInfo {
        SegmentInfo {
            segment: self.segment_text(),
            sequence: self.sequence_text(),
            index: self.index as u64,
            count: self.count() as u64,
            plan_hash: plan_hash.to_string(),
            start_at: None,
        }
    }
}

/// k6's `r0,r1,…,rn`: strictly increasing from 0 to 1.
pub fn parse_sequence(text: &str) -> Result<Vec<R>, SegmentError> {
    let mut points = Vec::new();
    for v in text.split(',') {
        points.push(value(v).map_err(|e| SegmentError(format!("--segment-sequence {e}")))?);
    }
    let example = "e.g. 0,1/4,1/2,3/4,1";
    if points.len() < 2
        || points.first() != Some(&R::from_integer(0))
        || points.last() != Some(&R::from_integer(1))
    {
        return err(format!(
            "--segment-sequence `{text}` must run from 0 to 1 ({example})"
        ));
    }
    if points.windows(2).any(|w| w[0] >= w[1]) {
        return err(format!(
            "--segment-sequence `{text}` must increase strictly, with no gap or overlap ({example})"
        ));
    }
    if points.len() - 1 > MAX_SEGMENTS {
        return err(format!(
            "--segment-sequence `{text}`: at most {MAX_SEGMENTS} segments"
        ));
    }
    Ok(points)
}

fn join(points: &[R]) -> String {
    points
        .iter()
        .map(|p| show(*p))
        .collect::<Vec<_>>()
        .join(",")
}

/// A part's identity in its JSON summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct SegmentInfo {
    /// k6's `from:to`, e.g. `1/4:1/2`.
    pub segment: String,
    /// k6's `r0,r1,…,rn`, e.g. `0,1/4,1/2,3/4,1`.
    pub sequence: String,
    /// 0-based position of the segment in the sequence.
    pub index: u64,
    /// Segments in the sequence.
    pub count: u64,
    /// The plan's hash (as in the summary's `plan_hash`).
    pub plan_hash: String,
    /// The common start time (`--start-at`, RFC 3339), when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
}

/// `sha256:` and the hex digest of the validated plan as this version of powertune
/// reads it: options (without the base URL and the CA file's path, which may differ
/// per machine), scenarios with their steps and data, and thresholds. The segment
/// itself is left out, and a split plan gives the hash of the whole plan it was split
/// from, so every part of one split run has the same hash.
pub fn plan_hash(plan: &Plan) -> String {
    if let Some(h) = &plan.segment.whole_hash {
        return h.clone();
    }
    let mut options = plan.options.clone();
    options.base_url = None;
    options.ca_cert = None;
    // Trace headers change no figure: traced and untraced parts merge.
    options.trace = false;
    // A data file's rows count, not where this machine keeps it.
    let mut scenarios = plan.scenarios.clone();
    for d in scenarios.iter_mut().filter_map(|s| s.data.as_mut()) {
        d.path.clear();
    }
    let canonical = format!("{options:?}\n{scenarios:?}\n{:?}", plan.thresholds);
    let digest = Sha256::digest(canonical.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// What a scenario's executor runs in one segment, as plain integers (the sums the
/// property tests check, and what `--k8s-job` shows per pod).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Work {
    /// VUs (closed executors: started; ramping-vus: at the start; open ones: the most).
    pub vus: u64,
    /// Pre-allocated VUs of an open executor.
    pub pre_allocated_vus: u64,
    /// Iterations of shared-iterations, or per-vu-iterations' VUs × iterations.
    pub iterations: u64,
}

/// The split figures of one executor for `share`.
pub fn work(e: &Executor, share: &Share) -> Work {
    match e {
        Executor::ConstantVus { vus, .. } => Work {
            vus: share.scale(u64::from(*vus)),
            ..Work::default()
        },
        Executor::RampingVus { start_vus, .. } => Work {
            vus: share.scale(u64::from(*start_vus)),
            ..Work::default()
        },
        Executor::PerVuIterations {
            vus, iterations, ..
        } => {
            let v = share.scale(u64::from(*vus));
            Work {
                vus: v,
                iterations: v.saturating_mul(*iterations),
                ..Work::default()
            }
        }
        Executor::SharedIterations {
            vus, iterations, ..
        } => Work {
            vus: share.scale(u64::from(*vus)),
            iterations: share.scale(*iterations),
            ..Work::default()
        },
        Executor::ConstantArrivalRate {
            pre_allocated_vus,
            max_vus,
            ..
        }
        | Executor::RampingArrivalRate {
            pre_allocated_vus,
            max_vus,
            ..
        } => Work {
            vus: share.scale(u64::from(*max_vus)),
            pre_allocated_vus: share.scale(u64::from(*pre_allocated_vus)),
            iterations: 0,
        },
    }
}

impl Plan {
    /// Splits the plan for `share`: closed executors get their part of the VUs (and of
    /// shared-iterations' iterations), open executors their part of the VU pool (they
    /// keep the whole rate and start only the arrivals they own), ramping-vus keeps its
    /// stages and runs its part of the whole target at every moment. Refused when a
    /// segment would own work but no VU to do it.
    pub fn split(&mut self, share: Share) -> Result<(), SegmentError> {
        let mut share = share;
        share.whole_hash = Some(plan_hash(self));
        if share.is_whole() {
            self.segment = share;
            return Ok(());
        }
        let siblings = share.siblings()?;
        for sc in &mut self.scenarios {
            check_split(sc, &siblings)?;
            let w = work(&sc.executor, &share);
            let u32_of = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
            match &mut sc.executor {
                Executor::ConstantVus { vus, .. } | Executor::PerVuIterations { vus, .. } => {
                    *vus = u32_of(w.vus)
                }
                Executor::SharedIterations {
                    vus, iterations, ..
                } => {
                    *vus = u32_of(w.vus);
                    *iterations = w.iterations;
                }
                Executor::RampingVus { .. } => {}
                Executor::ConstantArrivalRate {
                    pre_allocated_vus,
                    max_vus,
                    ..
                }
                | Executor::RampingArrivalRate {
                    pre_allocated_vus,
                    max_vus,
                    ..
                } => {
                    *pre_allocated_vus = u32_of(w.pre_allocated_vus);
                    *max_vus = u32_of(w.vus);
                }
            }
        }
        self.segment = share;
        Ok(())
    }
}

/// Refuses a split that would leave some segment with work but no VU.
fn check_split(sc: &Scenario, siblings: &[Share]) -> Result<(), SegmentError> {
    let n = siblings.len();
    for s in siblings {
        let w = work(&sc.executor, s);
        let (starved, what, field) = match &sc.executor {
            Executor::SharedIterations { .. } => {
                (w.iterations > 0 && w.vus == 0, "iterations", "vus")
            }
            Executor::ConstantArrivalRate { rate, .. } => {
                (*rate > 0.0 && w.vus == 0, "arrivals", "max_vus")
            }
            Executor::RampingArrivalRate { .. } => (w.vus == 0, "arrivals", "max_vus"),
            _ => (false, "", ""),
        };
        if starved {
            return err(format!(
                "scenario `{}`: split into {n} segments, segment {} would get {what} but no VU; give {field} at least {n} (one VU per segment)",
                sc.name,
                s.segment_text()
            ));
        }
    }
    Ok(())
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}", self.segment_text(), self.sequence_text())
    }
}

#[cfg(test)]
mod tests;
