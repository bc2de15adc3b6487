//! The judge: pure functions from the measured steps to the knee, the limiting
//! resource, the headroom, the USL fit, the verdict and the findings.

use crate::knee::{self, Knee, KneeReason, StepOutcome};
use crate::model::{Headroom, Limiter, StepRecord, StopReason, UslResult};
use crate::resources::{Kind, Reading};
use crate::usl::{self, Measurement};
use powertune_core::finding::Value;
use powertune_core::{units, Finding, Quantity, Verdict};

const AREA: &str = "capacity";

/// Step indices (into `steps`, the run order) sorted by offered rate.
pub fn by_rate(steps: &[StepRecord]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..steps.len()).collect();
    idx.sort_by(|a, b| steps[*a].offered.total_cmp(&steps[*b].offered));
    idx
}

/// The knee over the steps in offered order, with its indices mapped back to the
/// run order.
pub fn find_knee(steps: &[StepRecord]) -> Option<Knee> {
    let order = by_rate(steps);
    let outcomes: Vec<StepOutcome> = order
        .iter()
        .map(|&i| {
            let s = &steps[i];
            let mut violations = s.violations.clone();
            if s.generator_limited {
                violations.push("the load generator saturated".into());
            }
            StepOutcome {
                offered: s.offered,
                achieved: s.achieved,
                latency_ms: s.p95_ms,
                violations,
            }
        })
        .collect();
    let k = knee::knee(&outcomes)?;
    Some(Knee {
        step: order[k.step],
        reason: k.reason,
        last_good: k.last_good.map(|g| order[g]),
    })
}

/// The resource to blame at the knee: among those that crossed at the knee step,
/// the one that crossed at the lowest offered rate (ties: the larger saturation).
/// The generator is never blamed on the target: when it crossed, it is named as
/// itself. Nothing crossed: "not explained", with what was not measured.
pub fn limiter(steps: &[StepRecord], knee: &Knee, not_measured: &[String]) -> Limiter {
    let k = &steps[knee.step];
    let broke = match &knee.reason {
        KneeReason::SloViolation { violations } => violations.join("; "),
        KneeReason::Saturation { achieved_fraction } => format!(
            "achieved {} of {} arrivals/s offered ({})",
            units::trim(k.achieved, 1),
            units::trim(k.offered, 1),
            units::percent(achieved_fraction * 100.0)
        ),
    };
    let at = format!("at {} arrivals/s", units::trim(k.offered, 1));
    if k.generator_limited {
        let note = k.generator_note.clone().unwrap_or_default();
        return Limiter {
            resource: "load generator".into(),
            kind: Some(Kind::Generator),
            evidence: format!("{note} {at}; {broke}"),
            action: Kind::Generator.action().into(),
            first_crossed_step: Some(k.number),
            not_measured: Vec::new(),
        };
    }
    let order = by_rate(steps);
    let first_crossed = |r: &Reading| -> Option<usize> {
        order
            .iter()
            .map(|&i| &steps[i])
            .take_while(|s| s.offered <= k.offered)
            .find(|s| {
                s.resources
                    .iter()
                    .any(|x| x.resource == r.resource && x.source == r.source && x.crossed)
            })
            .map(|s| s.number)
    };
    let mut candidates: Vec<(&Reading, usize, f64)> = k
        .resources
        .iter()
        .filter(|r| r.crossed && r.kind != Kind::Generator)
        .filter_map(|r| {
            let first = first_crossed(r)?;
            let rank = steps
                .iter()
                .find(|s| s.number == first)
                .map_or(0.0, |s| s.offered);
            Some((r, first, rank))
        })
        .collect();
    candidates.sort_by(|a, b| {
        a.2.total_cmp(&b.2).then(
            b.0.saturation_mean
                .unwrap_or(0.0)
                .total_cmp(&a.0.saturation_mean.unwrap_or(0.0)),
        )
    });
    match candidates.first() {
        Some((r, first, _)) => Limiter {
            resource: r.resource.clone(),
            kind: Some(r.kind),
            evidence: format!("{}: {} {at}; {broke}{}", r.resource, r.figures, also(k, r)),
            action: r.kind.action().into(),
            first_crossed_step: Some(*first),
            not_measured: Vec::new(),
        },
        None => Limiter {
            resource: "not explained".into(),
            kind: None,
            evidence: format!(
                "no sampled resource was saturated {at} ({}); {broke}",
                if k.resources.is_empty() {
                    "none was sampled".to_string()
                } else {
                    k.resources
                        .iter()
                        .map(|r| format!("{}: {}", r.resource, r.figures))
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            ),
            action: "Measure what was not measured (below) and re-run; never size for a guess"
                .into(),
            first_crossed_step: None,
            not_measured: not_measured.to_vec(),
        },
    }
}

/// What else the knee step shows beside the named resource: the other resources
/// that crossed, and the heaviest statement within the step (`--db`).
fn also(k: &StepRecord, named: &Reading) -> String {
    let mut out = String::new();
    let others: Vec<String> = k
        .resources
        .iter()
        .filter(|r| r.crossed && r.kind != Kind::Generator && r.resource != named.resource)
        .map(|r| format!("{}: {}", r.resource, r.figures))
        .collect();
    if !others.is_empty() {
        out.push_str(&format!("; also saturated: {}", others.join("; ")));
    }
    if let Some(st) = k.statements.first() {
        out.push_str(&format!(
            "; heaviest statement in the step: {} calls, {} total ({} mean): {}",
            st.calls,
            units::ms(st.total_ms),
            units::ms(st.mean_ms),
            st.query
        ));
    }
    out
}

/// The highest step within every target (below the knee when there is one).
pub fn max_sustainable(steps: &[StepRecord], knee: Option<&Knee>) -> Option<f64> {
    let limit = knee.map(|k| steps[k.step].offered).unwrap_or(f64::INFINITY);
    steps
        .iter()
        .filter(|s| s.offered < limit && s.violations.is_empty() && !s.generator_limited)
        .filter(|s| s.offered <= 0.0 || s.achieved / s.offered >= knee::SATURATED)
        .map(|s| s.offered)
        .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
}

pub fn headroom(steps: &[StepRecord], knee: Option<&Knee>, baseline: f64, growth: f64) -> Headroom {
    let projected = baseline * growth;
    let max = max_sustainable(steps, knee);
    let ratio = max.map(|m| m / projected);
    Headroom {
        baseline,
        growth,
        projected,
        max_sustainable: max,
        ratio,
        enough: ratio.is_some_and(|r| r >= 1.0),
        lower_bound: knee.is_none(),
    }
}

/// The USL fit over the steps that the generator could offer and whose latency was
/// not still trending (steps too short to tell are kept).
pub fn usl_fit(steps: &[StepRecord]) -> UslResult {
    let order = by_rate(steps);
    let points: Vec<Measurement> = order
        .iter()
        .map(|&i| &steps[i])
        .filter(|s| {
            !matches!(s.steadiness, crate::steady::Steadiness::Trending { .. })
                && !s.generator_limited
                && s.achieved_rps > 0.0
        })
        .map(|s| Measurement::from_rate_and_latency(s.achieved_rps, s.mean_ms / 1000.0))
        .collect();
    match usl::fit(&points) {
        Ok(f) => UslResult {
            regime: Some(f.regime()),
            peak_concurrency: f.peak_concurrency(),
            peak_throughput: f.peak_throughput(),
            fit: Some(f),
            refused: None,
            points,
        },
        Err(why) => UslResult {
            fit: None,
            regime: None,
            peak_concurrency: None,
            peak_throughput: None,
            refused: Some(why.to_string()),
            points,
        },
    }
}

/// The findings: the headroom against the projected load, the limiting resource,
/// a generator that saturated, unsteady steps, and the USL fit.
pub fn findings(
    steps: &[StepRecord],
    stop: &StopReason,
    headroom: &Headroom,
    limiter: Option<&Limiter>,
    usl: &UslResult,
) -> Vec<Finding> {
    let mut out = vec![headroom_finding(headroom, stop)];
    out.extend(limiter.map(limiter_finding));
    out.extend(unsteady(steps));
    out.push(usl_finding(usl));
    out
}

fn headroom_finding(h: &Headroom, stop: &StopReason) -> Finding {
    let (verdict, action) = match (h.max_sustainable, h.enough) {
        (_, true) => (Verdict::Pass, String::new()),
        (_, false) if h.lower_bound && !matches!(stop, StopReason::Interrupted) => (
            Verdict::Warn,
            "Raise --max-rate or --max-time: no knee was reached before the run stopped".into(),
        ),
        _ => (
            Verdict::Fail,
            "Plan capacity for the limiting resource (its action below), then re-test with --verify"
                .into(),
        ),
    };
    let observed = match h.max_sustainable {
        Some(m) => Value::of(Quantity::per_second(m)).note(if h.lower_bound {
            "at least (no knee reached)"
        } else {
            "last step within every target"
        }),
        None => Value::from("no step within every target"),
    };
    Finding::new(
        AREA,
        "headroom",
        "max sustainable rate vs projected load",
        verdict,
    )
    .observed(observed)
    .target(Value::ge(Quantity::per_second(h.projected)))
    .evidence(format!(
        "baseline {}/s × growth {} = {}/s projected; {}",
        units::trim(h.baseline, 1),
        units::trim(h.growth, 2),
        units::trim(h.projected, 1),
        match h.ratio {
            Some(r) => format!("headroom {}× the projection", units::trim(r, 2)),
            None => "no headroom measured".into(),
        }
    ))
    .action(action)
}

/// Warn: the resource to plan for (whether its knee is too close is the headroom's
/// verdict).
fn limiter_finding(l: &Limiter) -> Finding {
    let verdict = Verdict::Warn;
    let mut evidence = l.evidence.clone();
    if !l.not_measured.is_empty() {
        evidence.push_str(&format!("; not measured: {}", l.not_measured.join(", ")));
    }
    Finding::new(AREA, "limiting_resource", "at the knee", verdict)
        .observed(Value::from(l.resource.as_str()))
        .target(Value::from("no resource saturated"))
        .evidence(evidence)
        .action(l.action.clone())
}

fn unsteady(steps: &[StepRecord]) -> Option<Finding> {
    let bad: Vec<String> = steps
        .iter()
        .filter(|s| matches!(s.steadiness, crate::steady::Steadiness::Trending { .. }))
        .map(|s| format!("step {} ({}/s)", s.number, units::trim(s.offered, 1)))
        .collect();
    if bad.is_empty() {
        return None;
    }
    Some(
        Finding::new(AREA, "unsteady_steps", "steps", Verdict::Warn)
            .observed(Quantity::count(bad.len() as f64))
            .target(Value::from("latency settled in every step"))
            .evidence(format!(
                "latency still trended after extension: {}",
                bad.join(", ")
            ))
            .action("Lengthen --step (or --warmup) so each step settles"),
    )
}

fn usl_finding(u: &UslResult) -> Finding {
    match (&u.fit, &u.refused) {
        (Some(f), _) => Finding::new(AREA, "usl_fit", "Universal Scalability Law", Verdict::Pass)
            .observed(Value::from(format!(
                "σ {} κ {} R² {}",
                units::trim(f.sigma, 4),
                units::trim(f.kappa, 6),
                units::trim(f.r_squared, 3)
            )))
            .evidence(match u.peak_throughput {
                Some(x) => format!(
                    "predicted peak {} req/s{} over {} steady steps",
                    units::trim(x, 1),
                    u.peak_concurrency
                        .map(|n| format!(" at {} in flight", units::trim(n, 1)))
                        .unwrap_or_default(),
                    f.points
                ),
                None => format!("no peak within the law (linear) over {} steps", f.points),
            }),
        (None, why) => Finding::new(AREA, "usl_fit", "Universal Scalability Law", Verdict::Pass)
            .observed(Value::from("not fitted"))
            .evidence(why.clone().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StepRecord;
    use crate::resources::{fold, Ident, Sample};
    use crate::steady::Steadiness;

    fn step(
        n: usize,
        offered: f64,
        achieved: f64,
        p95: f64,
        viol: &[&str],
        pool: (f64, f64),
    ) -> StepRecord {
        let id = Ident {
            resource: "DB pool".into(),
            kind: Kind::DbPool,
            source: "m".into(),
            saturation_word: "waiting",
            unit: "",
        };
        let s = Sample {
            utilisation: Some(pool.0 / 25.0),
            saturation: Some(pool.1),
            errors: Some(0.0),
            used: Some(pool.0),
            capacity: Some(25.0),
            latency_ms: None,
        };
        StepRecord {
            number: n,
            refinement: false,
            offered,
            achieved,
            offered_rps: offered,
            achieved_rps: achieved,
            measured_s: 10.0,
            requests: (achieved * 10.0) as u64,
            failed: 0,
            error_rate_pct: 0.0,
            mean_ms: p95 / 2.0,
            p50_ms: p95 / 2.0,
            p95_ms: p95,
            p99_ms: p95 * 1.2,
            p95_raw_ms: p95,
            in_flight: achieved * p95 / 2000.0,
            dropped_iterations: 0,
            endpoint_types: Vec::new(),
            violations: viol.iter().map(|v| v.to_string()).collect(),
            steadiness: Steadiness::Steady { change: 0.0 },
            extensions: 0,
            resources: vec![fold(&id, &[s, s], None)],
            statements: Vec::new(),
            generator_limited: false,
            generator_note: None,
        }
    }

    #[test]
    fn the_pool_that_filled_first_is_named_with_its_figures() {
        let steps = vec![
            step(1, 100.0, 100.0, 20.0, &[], (5.0, 0.0)),
            step(2, 200.0, 199.0, 30.0, &[], (12.0, 0.0)),
            step(
                3,
                400.0,
                380.0,
                400.0,
                &["Authentication P95 400 ms > 200 ms maximum"],
                (25.0, 31.0),
            ),
        ];
        let k = find_knee(&steps).unwrap();
        assert_eq!(k.step, 2);
        let l = limiter(&steps, &k, &[]);
        assert_eq!(l.resource, "DB pool");
        assert!(l.evidence.contains("25/25 in use"), "{}", l.evidence);
        assert!(l.evidence.contains("31 waiting"), "{}", l.evidence);
        assert!(l.evidence.contains("Authentication P95"), "{}", l.evidence);
        assert!(l.action.contains("PgBouncer"));
        let h = headroom(&steps, Some(&k), 50.0, 2.5);
        assert_eq!(h.max_sustainable, Some(200.0));
        assert!(h.enough);
    }

    #[test]
    fn nothing_crossed_is_not_explained_and_lists_the_gaps() {
        let steps = vec![
            step(1, 100.0, 100.0, 20.0, &[], (5.0, 0.0)),
            step(
                2,
                200.0,
                190.0,
                900.0,
                &["Analytics / reporting P95 900 ms > 1 s"],
                (6.0, 0.0),
            ),
        ];
        let k = find_knee(&steps).unwrap();
        let l = limiter(&steps, &k, &["Redis (--redis)".into()]);
        assert_eq!(l.resource, "not explained");
        assert_eq!(l.kind, None);
        assert_eq!(l.not_measured, vec!["Redis (--redis)".to_string()]);
    }

    #[test]
    fn a_generator_limited_knee_is_never_blamed_on_the_target() {
        let mut steps = vec![step(1, 50_000.0, 3_000.0, 900.0, &[], (25.0, 40.0))];
        steps[0].generator_limited = true;
        steps[0].generator_note = Some("generator CPU 2/2 in use".into());
        let k = find_knee(&steps).unwrap();
        let l = limiter(&steps, &k, &[]);
        assert_eq!(l.kind, Some(Kind::Generator));
        assert_eq!(max_sustainable(&steps, Some(&k)), None);
    }

    #[test]
    fn refinement_steps_are_judged_in_rate_order() {
        let steps = vec![
            step(1, 100.0, 100.0, 20.0, &[], (5.0, 0.0)),
            step(2, 400.0, 300.0, 800.0, &["x"], (25.0, 9.0)),
            step(3, 250.0, 249.0, 40.0, &[], (20.0, 0.0)),
            step(4, 325.0, 320.0, 500.0, &["y"], (25.0, 3.0)),
        ];
        let k = find_knee(&steps).unwrap();
        assert_eq!(k.step, 3, "the refinement at 325/s is the knee");
        assert_eq!(k.last_good, Some(2));
        assert_eq!(max_sustainable(&steps, Some(&k)), Some(250.0));
    }
}
