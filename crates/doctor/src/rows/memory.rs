//! Row 3: "Backend OOM-kill" ↔ "Memory leak in long-running process".
//!
//! Symptom: an OOM kill counted during the run (cgroup `memory.events`), or the
//! backend's memory (process RSS, cgroup `memory.current`, or
//! `process_resident_memory_bytes`) up by at least [`GROWTH_PCT`] of its first sample
//! over the run. Cause: the growth has not levelled off — over the last third of the
//! run memory still rose at least [`PLATEAU_SHARE`] of the run's average rate. Memory
//! that rose and then levelled off is size (more threads, caches warming), not a leak.

use super::pct;
use crate::collect::Collected;
use crate::memory::MemorySeries;
use crate::model::{Check, Row, Status};

const SYMPTOM: &str = "Backend OOM-kill (memory growing)";
const CAUSE: &str = "Memory leak in long-running process";
const ACTION: &str =
    "Restart backend with scripts/reload-backend.sh; profile with derailed_benchmarks";
/// Growth over the run, in percent of the first sample, that counts as growing
/// (a powertune default).
pub const GROWTH_PCT: f64 = 5.0;
/// The last third's rate, as a share of the whole run's, below which growth levelled
/// off (a powertune default).
pub const PLATEAU_SHARE: f64 = 0.5;

pub fn row(c: &Collected) -> Row {
    let (symptom, cause, signals) = match c.memory.metrics() {
        Some(series) => {
            let (s, k) = judge_series(series);
            let signals = series.iter().map(describe).collect();
            (s, k, signals)
        }
        None => {
            let why = c
                .memory
                .missing("memory (pid, cgroup or metrics)")
                .unwrap_or_default();
            (
                Check::not_measured(SYMPTOM, why.clone()),
                Check::not_measured(CAUSE, why),
                Vec::new(),
            )
        }
    };
    Row {
        id: "memory".into(),
        symptom,
        causes: vec![cause],
        first_action: ACTION.into(),
        signals,
    }
}

fn describe(s: &MemorySeries) -> String {
    let shown: Vec<String> = s.samples.iter().map(|(_, v)| value(s, *v)).collect();
    format!("{}: {}", s.source, shown.join(" → "))
}

fn value(s: &MemorySeries, v: f64) -> String {
    if s.unit == "bytes" {
        powertune_core::units::bytes(v.max(0.0) as u64)
    } else {
        pct(100.0 * v)
    }
}

/// Growth of one series: (percent over the run, per-minute rate over the run,
/// per-minute rate over the last third).
fn growth(s: &MemorySeries) -> Option<(f64, f64, f64)> {
    let n = s.samples.len();
    if n < 3 {
        return None;
    }
    let (t0, v0) = s.samples[0];
    let (t1, v1) = s.samples[n - 1];
    let (tm, vm) = s.samples[(2 * (n - 1)) / 3];
    if v0 <= 0.0 || t1 <= t0 {
        return None;
    }
    let per_min = |dv: f64, dt: f64| if dt > 0.0 { 60.0 * dv / dt } else { 0.0 };
    Some((
        100.0 * (v1 - v0) / v0,
        per_min(v1 - v0, t1 - t0),
        per_min(v1 - vm, t1 - tm),
    ))
}

/// The symptom and cause over every sampled series; the one that grew most decides.
pub fn judge_series(series: &[MemorySeries]) -> (Check, Check) {
    const SRC: &str = "memory sampled over the run";
    let oom: f64 = series.iter().filter_map(|s| s.oom_kills).sum();
    let grown: Vec<(&MemorySeries, (f64, f64, f64))> = series
        .iter()
        .filter_map(|s| growth(s).map(|g| (s, g)))
        .collect();
    if grown.is_empty() && oom == 0.0 {
        let why = "fewer than 3 memory samples (the sources stopped answering)";
        return (
            Check::not_measured(SYMPTOM, why),
            Check::not_measured(CAUSE, why),
        );
    }
    let worst = grown
        .iter()
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
        .copied();
    let Some((s, (pct_up, rate, last_rate))) = worst else {
        let f = format!("{oom} OOM kills during the run");
        return (
            Check::new(
                SYMPTOM,
                Status::Confirmed,
                f,
                "cgroup memory.events oom_kill",
            ),
            Check::not_measured(CAUSE, "no memory samples to tell growth from size"),
        );
    };
    let first = s.samples[0].1;
    let last = s.samples[s.samples.len() - 1].1;
    let mut figure = format!(
        "{} {} → {} ({:+.1}% over the run)",
        s.source,
        value(s, first),
        value(s, last),
        pct_up
    );
    if oom > 0.0 {
        figure.push_str(&format!("; {oom} OOM kills"));
    }
    let observed = pct_up >= GROWTH_PCT || oom > 0.0;
    let symptom = Check::new(
        SYMPTOM,
        if observed {
            Status::Confirmed
        } else {
            Status::RuledOut
        },
        format!("{figure}; growing means ≥ {}", pct(GROWTH_PCT)),
        SRC,
    );
    let cause = if !observed {
        Check::new(CAUSE, Status::RuledOut, "memory not growing", SRC)
    } else if rate > 0.0 && last_rate >= PLATEAU_SHARE * rate {
        Check::new(
            CAUSE,
            Status::Confirmed,
            format!(
                "still rising in the last third of the run ({} per minute vs {} on average): not levelling off",
                value(s, last_rate.abs()),
                value(s, rate.abs())
            ),
            SRC,
        )
    } else {
        Check::new(
            CAUSE,
            Status::RuledOut,
            format!(
                "rose then levelled off (last third {} per minute vs {} on average): size, not a leak",
                value(s, last_rate.max(0.0)),
                value(s, rate.abs())
            ),
            SRC,
        )
    };
    (symptom, cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> MemorySeries {
        MemorySeries {
            source: "pid 1".into(),
            unit: "bytes".into(),
            samples: values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, *v))
                .collect(),
            oom_kills: None,
        }
    }

    #[test]
    fn steady_growth_is_a_leak() {
        let (s, c) = judge_series(&[series(&[100.0, 110.0, 120.0, 130.0, 140.0, 150.0, 160.0])]);
        assert_eq!(s.status, Status::Confirmed);
        assert_eq!(c.status, Status::Confirmed, "{}", c.figure);
    }

    #[test]
    fn growth_that_levels_off_is_size() {
        let (s, c) = judge_series(&[series(&[100.0, 140.0, 160.0, 161.0, 161.0, 161.0, 161.0])]);
        assert_eq!(s.status, Status::Confirmed);
        assert_eq!(c.status, Status::RuledOut, "{}", c.figure);
        assert!(c.figure.contains("levelled off"));
    }

    #[test]
    fn flat_memory_rules_both_out_and_too_few_samples_measure_nothing() {
        let (s, c) = judge_series(&[series(&[100.0, 101.0, 100.0, 102.0])]);
        assert_eq!((s.status, c.status), (Status::RuledOut, Status::RuledOut));
        let (s, _) = judge_series(&[series(&[100.0, 200.0])]);
        assert_eq!(s.status, Status::NotMeasured);
    }

    #[test]
    fn an_oom_kill_is_the_symptom_whatever_the_trend() {
        let mut m = series(&[100.0, 100.0, 100.0]);
        m.oom_kills = Some(1.0);
        let (s, _) = judge_series(&[m]);
        assert_eq!(s.status, Status::Confirmed);
    }
}
