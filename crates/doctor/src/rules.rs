//! Prometheus alerting rules over `powertune monitor`'s metrics: the runbook's
//! "alert at" lines with the numbers in force, each Troubleshooting symptom, failing
//! checks, systems that stopped answering and a monitor that stopped running.

use powertune_core::Targets;
use std::fmt::Write;

/// One alerting rule.
struct Rule {
    alert: &'static str,
    expr: String,
    for_: &'static str,
    severity: &'static str,
    summary: String,
    runbook: &'static str,
}

fn num(v: f64) -> String {
    powertune_core::units::trim(v, 3)
}

fn rules(t: &Targets, interval_s: f64) -> Vec<Rule> {
    // The unit is part of the selector: a check may report another unit when its
    // figure cannot be a share (Redis memory without maxmemory is in bytes).
    let observed = |area: &str, check: &str, unit: &str| {
        format!("powertune_check_observed{{area=\"{area}\",check=\"{check}\",unit=\"{unit}\"}}")
    };
    vec![
        Rule {
            alert: "PowertuneSymptomObserved",
            expr: "powertune_doctor_symptom == 1".into(),
            for_: "0m",
            severity: "critical",
            summary: "{{ $labels.symptom }} (Troubleshooting row {{ $labels.row }})".into(),
            runbook: "Troubleshooting",
        },
        Rule {
            alert: "PowertuneCheckFailing",
            expr: "powertune_check_verdict == 2".into(),
            for_: "0m",
            severity: "critical",
            summary: "{{ $labels.area }}/{{ $labels.check }} {{ $labels.subject }} is past its maximum".into(),
            runbook: "Key Performance Targets",
        },
        Rule {
            alert: "PowertuneCheckWarning",
            expr: "powertune_check_verdict == 1".into(),
            for_: "15m",
            severity: "warning",
            summary: "{{ $labels.area }}/{{ $labels.check }} {{ $labels.subject }} is past its target".into(),
            runbook: "Key Performance Targets",
        },
        Rule {
            alert: "PowertuneRedisMemoryHigh",
            expr: format!("{} > {}", observed("redis", "memory", "percent"), num(t.redis.memory_pct_max)),
            for_: "5m",
            severity: "warning",
            summary: format!("Redis used_memory above {}% of maxmemory", num(t.redis.memory_pct_max)),
            runbook: "Redis Tuning",
        },
        Rule {
            alert: "PowertuneCacheHitRateLow",
            expr: format!(
                "{} < {} or {} < {}",
                observed("redis", "hit_rate", "percent"),
                num(t.redis.hit_rate_pct_min),
                observed("apm", "cache_hit_rate", "percent"),
                num(t.redis.hit_rate_pct_min)
            ),
            for_: "10m",
            severity: "warning",
            summary: format!("Overall cache hit rate below {}%", num(t.redis.hit_rate_pct_min)),
            runbook: "Cache Hit-Rate Monitoring",
        },
        Rule {
            alert: "PowertuneCacheTypeHitRateLow",
            expr: format!(
                "{} < {}",
                observed("apm", "cache_type_hit_rate", "percent"),
                num(t.redis.type_hit_rate_pct_min)
            ),
            for_: "10m",
            severity: "warning",
            summary: format!(
                "Cache type {{{{ $labels.subject }}}} hit rate below {}%",
                num(t.redis.type_hit_rate_pct_min)
            ),
            runbook: "Cache Hit-Rate Monitoring",
        },
        Rule {
            alert: "PowertuneQueueLatencyHigh",
            expr: format!("{} > {}", observed("queues", "queue_latency", "seconds"), num(t.worker.queue_latency_s)),
            for_: "5m",
            severity: "warning",
            summary: format!(
                "Sidekiq {{{{ $labels.subject }}}} latency above {}s",
                num(t.worker.queue_latency_s)
            ),
            runbook: "Worker / Background Jobs",
        },
        Rule {
            alert: "PowertuneBreakersOpen",
            expr: format!(
                "{} >= {}",
                observed("gateway", "breakers_open", "count"),
                t.ai.breakers_open_max
            ),
            for_: "0m",
            severity: "critical",
            summary: format!("{} or more provider circuit breakers open", t.ai.breakers_open_max),
            runbook: "AI Provider Calls",
        },
        Rule {
            alert: "PowertuneProviderP95Doubled",
            expr: format!(
                "powertune_check_observed{{area=\"gateway\",check=\"provider_p95_vs_baseline\",unit=\"ratio\"}} >= {}",
                num(t.ai.provider_p95_ratio_max)
            ),
            for_: "5m",
            severity: "warning",
            summary: format!(
                "Provider {{{{ $labels.subject }}}} P95 at {}× its baseline or more",
                num(t.ai.provider_p95_ratio_max)
            ),
            runbook: "AI Provider Calls",
        },
        Rule {
            alert: "PowertuneSystemNotMeasured",
            expr: "powertune_system_up == 0".into(),
            for_: "5m",
            severity: "warning",
            summary: "powertune monitor cannot measure {{ $labels.system }}".into(),
            runbook: "Verification",
        },
        Rule {
            alert: "PowertuneMonitorStale",
            expr: format!(
                "time() - powertune_monitor_last_run_timestamp_seconds > {}",
                num(3.0 * interval_s)
            ),
            for_: "0m",
            severity: "warning",
            summary: "powertune monitor has not completed a run for three intervals".into(),
            runbook: "Verification",
        },
    ]
}

/// The rules file (Prometheus 2.x/3.x YAML) for a monitor running every `interval_s`.
pub fn prometheus_rules(t: &Targets, interval_s: f64) -> String {
    let mut out = String::from(
        "# Alerting rules over `powertune monitor`'s /metrics (docs/monitor.md).\n# Generated by `powertune targets --prometheus-rules` from the targets in force.\ngroups:\n  - name: powertune\n    rules:\n",
    );
    for r in rules(t, interval_s) {
        let _ = write!(
            out,
            "      - alert: {}\n        expr: '{}'\n        for: {}\n        labels:\n          severity: {}\n        annotations:\n          summary: '{}'\n          runbook_section: '{}'\n",
            r.alert,
            r.expr.replace('\'', "''"),
            r.for_,
            r.severity,
            r.summary.replace('\'', "''"),
            r.runbook
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_carry_the_targets_in_force() {
        let mut t = Targets::default();
        t.redis.memory_pct_max = 75.0;
        let y = prometheus_rules(&t, 60.0);
        assert!(
            y.contains(
                "powertune_check_observed{area=\"redis\",check=\"memory\",unit=\"percent\"} > 75'"
            ),
            "{y}"
        );
        assert!(y.contains("> 180'"));
        assert!(y.contains("PowertuneSymptomObserved"));
        assert_eq!(y.matches("- alert:").count(), 11);
    }
}
