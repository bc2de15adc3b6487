//! The runbook's Verification checklist as one verdict (`powertune verify`), against
//! a directory of reports saved by `powertune baseline save DIR` (the same
//! inspections doctor runs, one report per system).
//!
//! Items, each PASS / FAIL with its figures (WARN when not measurable — never a pass):
//! APM P95 per endpoint type within target over the window; queue latency within the
//! SLO; the retry set not growing over the window; no stuck or blocked queries; the
//! error rate not significantly up against the baseline.

use crate::collect::{collect, Collected};
use crate::options::DoctorOptions;
use powertune_apm::snapshot::Summary;
use powertune_core::{Finding, Inspection, Report, Targets, Value, Verdict};
use serde::Serialize;
use std::path::Path;

/// The name of the file listing what a baseline directory holds.
pub const MANIFEST: &str = "baseline.json";
const AREA: &str = "verify";

/// What `baseline save` wrote.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Manifest {
    pub schema: String,
    pub saved_at: String,
    /// One report file per measured system (`queues.json`, `apm.json`, ...).
    pub reports: Vec<String>,
    /// Systems configured but not measured, with the reason.
    pub not_measured: Vec<String>,
}

/// Runs every configured inspection and writes one report per measured system and
/// the manifest into `dir` (created if missing).
pub async fn save(dir: &Path, o: &DoctorOptions, t: &Targets) -> Result<Manifest, String> {
    o.validate()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let c = collect(o, t).await;
    let mut reports = Vec::new();
    let mut write =
        |name: &str, command: &str, findings: &[Finding], metrics: serde_json::Value| {
            let r = Report::new(command, findings.to_vec(), metrics);
            let file = format!("{name}.json");
            r.write_json(&dir.join(&file))
                .map_err(|e| format!("{}: {e}", dir.join(&file).display()))?;
            reports.push(file);
            Ok::<(), String>(())
        };
    let json = |v: Result<serde_json::Value, serde_json::Error>| v.map_err(|e| e.to_string());
    if let Some(m) = c.db.metrics() {
        write("db", "db", c.db.findings(), json(serde_json::to_value(m))?)?;
    }
    if let Some(m) = c.redis.metrics() {
        write(
            "redis",
            "redis",
            c.redis.findings(),
            json(serde_json::to_value(&m.end))?,
        )?;
    }
    if let Some(m) = c.queues.metrics() {
        write(
            "queues",
            "queues",
            c.queues.findings(),
            json(serde_json::to_value(m))?,
        )?;
    }
    if let Some(m) = c.gateway.metrics() {
        write(
            "gateway",
            "gateway status",
            c.gateway.findings(),
            json(serde_json::to_value(m))?,
        )?;
        powertune_gateway::baseline::Baseline::from_snapshot(m)
            .save(
                &dir.join("gateway-baseline.json"),
                "powertune baseline save",
            )
            .map_err(|e| e.to_string())?;
    }
    if let Some(m) = c.apm.metrics() {
        write(
            "apm",
            "apm report",
            c.apm.findings(),
            json(serde_json::to_value(m))?,
        )?;
    }
    if let Some(m) = c.frontend.metrics() {
        write(
            "frontend",
            "frontend bundle",
            c.frontend.findings(),
            json(serde_json::to_value(m))?,
        )?;
    }
    let manifest = Manifest {
        schema: "powertune.baseline-dir/v1".into(),
        saved_at: chrono_now(),
        reports,
        not_measured: c
            .systems
            .iter()
            .filter(|s| s.state == crate::SystemState::NotMeasured)
            .map(|s| format!("{}: {}", s.name, s.reason))
            .collect(),
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(MANIFEST), text + "\n")
        .map_err(|e| format!("{}: {e}", dir.join(MANIFEST).display()))?;
    Ok(manifest)
}

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The metrics payload of `powertune verify`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct VerifyMetrics {
    pub baseline_dir: String,
    pub baseline_saved_at: String,
    pub window_s: f64,
    pub systems: Vec<crate::SystemStatus>,
}

/// Reads the baseline directory's manifest (size-capped).
pub fn read_manifest(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join(MANIFEST);
    let text = powertune_core::baseline::read_limited(&path).map_err(|e| {
        format!(
            "--baseline {}: {e} (save one with powertune baseline save DIR)",
            dir.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The APM summary saved in the baseline directory, when there is one.
fn baseline_apm(dir: &Path) -> Result<Option<Summary>, String> {
    let path = dir.join("apm.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = powertune_core::baseline::read_limited(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let r: Report = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_value(r.metrics)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `powertune verify`: the checklist over the window against the baseline in `dir`.
pub async fn verify(
    dir: &Path,
    o: &DoctorOptions,
    t: &Targets,
) -> Result<Inspection<VerifyMetrics>, String> {
    o.validate()?;
    let manifest = read_manifest(dir)?;
    let base_apm = baseline_apm(dir)?;
    let c = collect(o, t).await;
    let findings = checklist(&c, base_apm.as_ref());
    let metrics = VerifyMetrics {
        baseline_dir: dir.display().to_string(),
        baseline_saved_at: manifest.saved_at,
        window_s: c.window_s,
        systems: c.systems.clone(),
    };
    let text = findings
        .iter()
        .map(|f| {
            format!(
                "  {:<4} {:<14} {}: {}",
                f.verdict.label(),
                f.check,
                f.subject,
                f.evidence
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Inspection::new(
        "verify",
        findings,
        metrics,
        format!("Verification checklist\n{text}\n"),
    ))
}

/// Every item of the checklist.
pub fn checklist(c: &Collected, base_apm: Option<&Summary>) -> Vec<Finding> {
    let mut out = vec![
        from_findings(c.apm.findings(), c.apm.missing("apm"), "apm_p95", "APM P95 per endpoint type within target", &["api_latency_p95"], "Investigate the slow endpoint type (powertune apm endpoint); roll back if the change caused it"),
        from_findings(c.queues.findings(), c.queues.missing("queues"), "queue_latency", "queue latency within SLO", &["queue_latency"], "Investigate the queue backlog (powertune queues --watch); roll back if the change caused it"),
        retry(c),
        from_findings(c.db.findings(), c.db.missing("db"), "stuck_queries", "no stuck queries (pg_stat_activity state = 'active')", &["stuck_query", "blocked_query"], "Find why the query runs so long (powertune db explain); cancel it if it should not run"),
        error_rate(c, base_apm),
    ];
    if !c
        .systems
        .iter()
        .any(|s| s.state == crate::SystemState::Measured)
    {
        out.push(
            crate::rows::nothing_measured(&[])
                .evidence("no system was measured: nothing was verified"),
        );
    }
    out
}

fn not_measured(check: &str, subject: &str, why: String) -> Finding {
    Finding::new(AREA, check, subject, Verdict::Warn)
        .observed(Value::Text("not measured".into()))
        .target(Value::Text("measured and within target".into()))
        .evidence(why)
        .action("Configure the system in [systems] and run verify again: an item not measured is not verified")
}

/// An item passing when every engine finding of `checks` passes.
fn from_findings(
    findings: &[Finding],
    missing: Option<String>,
    check: &str,
    subject: &str,
    checks: &[&str],
    action: &str,
) -> Finding {
    if let Some(why) = missing {
        return not_measured(check, subject, why);
    }
    let relevant: Vec<&Finding> = findings
        .iter()
        .filter(|f| checks.contains(&f.check.as_str()))
        .collect();
    let bad: Vec<String> = relevant
        .iter()
        .filter(|f| f.verdict != Verdict::Pass)
        .map(|f| format!("{} {} (target {})", f.subject, f.observed, f.target))
        .collect();
    if bad.is_empty() {
        let ev = if relevant.is_empty() {
            "none found".to_string()
        } else {
            format!("{} within target", relevant.len())
        };
        Finding::new(AREA, check, subject, Verdict::Pass)
            .observed(Value::Text("within target".into()))
            .target(Value::Text("within target".into()))
            .evidence(ev)
    } else {
        Finding::new(AREA, check, subject, Verdict::Fail)
            .observed(Value::Text(format!("{} past target", bad.len())))
            .target(Value::Text("within target".into()))
            .evidence(bad.join("; "))
            .action(action)
    }
}

fn retry(c: &Collected) -> Finding {
    const SUBJECT: &str = "retry set not growing";
    let Some(m) = c.queues.metrics() else {
        return not_measured(
            "retry_set",
            SUBJECT,
            c.queues.missing("queues").unwrap_or_default(),
        );
    };
    let Some(w) = &m.watch else {
        return not_measured(
            "retry_set",
            SUBJECT,
            "queues: the watch gave no trend".into(),
        );
    };
    let v = if w.retry_change > 0 {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    let mut f = Finding::new(AREA, "retry_set", SUBJECT, v)
        .observed(
            Value::of(powertune_core::units::Quantity::count(
                w.retry_change as f64,
            ))
            .note("change"),
        )
        .target(Value::le(powertune_core::units::Quantity::count(0.0)))
        .evidence(format!(
            "retry set {:+} over {}s (now {})",
            w.retry_change,
            powertune_core::units::trim(c.window_s, 1),
            m.sidekiq.retry.size
        ));
    if v == Verdict::Fail {
        f = f.action("Inspect Sidekiq::RetrySet; investigate top retried job; roll back if the change caused it");
    }
    f
}

/// Requests and errors over every route.
fn totals(s: &Summary) -> (u64, u64) {
    s.routes.iter().fold((0, 0), |(n, e), r| {
        (n + r.latency.count, e + r.latency.errors)
    })
}

fn error_rate(c: &Collected, base: Option<&Summary>) -> Finding {
    const SUBJECT: &str = "error rate not up against the baseline";
    let Some(now) = c.apm.metrics() else {
        return not_measured(
            "error_rate",
            SUBJECT,
            c.apm.missing("apm").unwrap_or_default(),
        );
    };
    let Some(base) = base else {
        return not_measured(
            "error_rate",
            SUBJECT,
            "the baseline directory holds no apm.json".into(),
        );
    };
    let (b, a) = (totals(base), totals(now));
    let rate = |(n, e): (u64, u64)| {
        if n == 0 {
            0.0
        } else {
            100.0 * e as f64 / n as f64
        }
    };
    let Some(p) = powertune_core::stats::rate_increase_p_value(b, a) else {
        return not_measured(
            "error_rate",
            SUBJECT,
            "no requests in the baseline or in the window".into(),
        );
    };
    let (rb, ra) = (rate(b), rate(a));
    let relative = if rb > 0.0 {
        (ra - rb) / rb
    } else if ra > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    let up = p < powertune_core::stats::ALPHA && relative >= powertune_core::stats::MIN_EFFECT;
    let mut f = Finding::new(AREA, "error_rate", SUBJECT, if up { Verdict::Fail } else { Verdict::Pass })
        .observed(powertune_core::units::Quantity::percent(ra))
        .target(Value::le(powertune_core::units::Quantity::percent(rb)).note("baseline, unless not significant"))
        .evidence(format!(
            "{} errors of {} requests now, {} of {} in the baseline; one-sided two-proportion z-test p = {:.4} (significant below {}, and at least +{}% relative)",
            a.1, a.0, b.1, b.0, p,
            powertune_core::stats::ALPHA,
            powertune_core::units::trim(100.0 * powertune_core::stats::MIN_EFFECT, 0)
        ));
    if up {
        f = f.action("New error spike: find the failing route (powertune apm report) and roll back the change; capture the failure mode (--journal)");
    }
    f
}
