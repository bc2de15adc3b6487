//! Row 2: "Sidekiq retry set growing" ↔ "Failing job class".
//!
//! Symptom: the retry set's size change over the run (`powertune queues --watch`'s
//! `retry_change`). Cause: one job class holding at least [`DOMINANT_SHARE`] of the
//! sampled retry set (Sidekiq's `wrapped` or `class`); the top error classes are the
//! evidence. Retries spread over many classes point at a shared dependency instead.

use super::pct;
use crate::collect::Collected;
use crate::model::{Check, Row, Status};
use powertune_core::Targets;
use powertune_redis::sidekiq::snapshot::RetryStats;

const SYMPTOM: &str = "Sidekiq retry set growing";
const CAUSE: &str = "Failing job class";
const ACTION: &str = "Inspect Sidekiq::RetrySet; investigate top retried job";
/// A class holding this share of the sampled retry set is "the" failing class.
pub const DOMINANT_SHARE: f64 = 0.5;

pub fn row(c: &Collected, _t: &Targets) -> Row {
    let Some(m) = c.queues.metrics() else {
        let why = c.queues.missing("queues").unwrap_or_default();
        return Row {
            id: "retry_set".into(),
            symptom: Check::not_measured(SYMPTOM, why.clone()),
            causes: vec![Check::not_measured(CAUSE, why)],
            first_action: ACTION.into(),
            signals: Vec::new(),
        };
    };
    let retry = &m.sidekiq.retry;
    let symptom = match &m.watch {
        Some(w) => Check::new(
            SYMPTOM,
            if w.retry_change > 0 {
                Status::Confirmed
            } else {
                Status::RuledOut
            },
            format!(
                "retry set {:+} jobs over the {}s run (now {})",
                w.retry_change,
                powertune_core::units::trim(c.window_s, 1),
                retry.size
            ),
            "queues --watch retry_change (ZCARD retry)",
        ),
        None => Check::not_measured(SYMPTOM, "queues: the watch gave no trend"),
    };
    let mut signals = Vec::new();
    if !retry.top_errors.is_empty() {
        signals.push(format!("top error classes: {}", listed(&retry.top_errors)));
    }
    if !retry.top_classes.is_empty() {
        signals.push(format!(
            "top retried job classes: {}",
            listed(&retry.top_classes)
        ));
    }
    if let Some(w) = &m.watch {
        signals.push(format!(
            "failed {}/s, processed {}/s during the run",
            powertune_core::units::trim(w.failed_per_s, 2),
            powertune_core::units::trim(w.processed_per_s, 2)
        ));
    }
    Row {
        id: "retry_set".into(),
        symptom,
        causes: vec![failing_class(retry)],
        first_action: ACTION.into(),
        signals,
    }
}

fn listed(v: &[(String, u64)]) -> String {
    v.iter()
        .take(5)
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether one class dominates the sampled retry set.
pub fn failing_class(r: &RetryStats) -> Check {
    const SRC: &str = "queues retry set sample (class, error_class)";
    if r.sampled == 0 {
        return Check::new(CAUSE, Status::RuledOut, "retry set empty", SRC);
    }
    let Some((class, n)) = r.top_classes.first() else {
        return Check::new(CAUSE, Status::RuledOut, "no job class in the sample", SRC);
    };
    let share = *n as f64 / r.sampled as f64;
    let errors = r
        .top_errors
        .iter()
        .take(3)
        .map(|(e, k)| format!("{e} ×{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    if share >= DOMINANT_SHARE {
        Check::new(
            CAUSE,
            Status::Confirmed,
            format!(
                "{class} holds {n} of {} sampled retries ({}); errors: {errors}",
                r.sampled,
                pct(100.0 * share)
            ),
            SRC,
        )
    } else {
        Check::new(
            CAUSE,
            Status::RuledOut,
            format!(
                "retries spread over {} classes (largest {class}, {}): a shared dependency (DB, Redis, provider) rather than one class; errors: {errors}",
                r.top_classes.len(),
                pct(100.0 * share)
            ),
            SRC,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(classes: &[(&str, u64)]) -> RetryStats {
        RetryStats {
            size: classes.iter().map(|c| c.1).sum(),
            sampled: classes.iter().map(|c| c.1).sum(),
            top_classes: classes.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            top_errors: vec![("Net::ReadTimeout".into(), 3)],
            ..Default::default()
        }
    }

    #[test]
    fn one_class_holding_half_the_retries_is_the_failing_class() {
        let c = failing_class(&stats(&[("MissionJob", 6), ("MailJob", 4)]));
        assert_eq!(c.status, Status::Confirmed);
        assert!(
            c.figure.contains("MissionJob holds 6 of 10"),
            "{}",
            c.figure
        );
        assert!(c.figure.contains("Net::ReadTimeout"));
    }

    #[test]
    fn retries_spread_over_classes_rule_it_out() {
        let c = failing_class(&stats(&[("A", 3), ("B", 3), ("C", 3)]));
        assert_eq!(c.status, Status::RuledOut);
        assert!(c.figure.contains("shared dependency"));
        assert_eq!(failing_class(&stats(&[])).status, Status::RuledOut);
    }
}
