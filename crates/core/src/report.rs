//! Reports: findings plus command-specific metrics, rendered for a terminal or as
//! versioned JSON (schema in `docs/schema/report.v2.json`), and the exit code.

use crate::finding::{Finding, Verdict};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The schema identifier written into every JSON report.
pub const SCHEMA: &str = "powertune.report/v2";

/// Exit codes, decided in one place: 0 passed (warnings allowed), 99 a target or
/// threshold failed (k6's convention), 105 the run was interrupted by a signal before
/// it finished (k6's code for an external abort; the partial report is still written),
/// 1 bad input or an unreachable system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Passed = 0,
    BadInput = 1,
    Failed = 99,
    Interrupted = 105,
}

/// What a command measured and what the runbook says about it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Report {
    pub schema: String,
    /// The command that produced it (`load`, `db`, `redis`, ...).
    pub command: String,
    pub powertune_version: String,
    /// RFC 3339 time the report was made.
    pub generated_at: String,
    /// The worst verdict of all findings (`pass` when there are none).
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    /// Command-specific measurements (documented per command in docs/).
    #[serde(default)]
    pub metrics: serde_json::Value,
    /// Present and true when a signal stopped the run before it finished: the
    /// figures cover only what was measured until then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

impl Report {
    pub fn new(command: &str, findings: Vec<Finding>, metrics: serde_json::Value) -> Report {
        let verdict = findings
            .iter()
            .map(|f| f.verdict)
            .max()
            .unwrap_or(Verdict::Pass);
        Report {
            schema: SCHEMA.to_string(),
            command: command.to_string(),
            powertune_version: env!("CARGO_PKG_VERSION").to_string(),
            generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            verdict,
            findings,
            metrics,
            interrupted: false,
        }
    }

    /// Marks the report as cut short by a signal (see [`ExitCode::Interrupted`]).
    pub fn mark_interrupted(&mut self) {
        self.interrupted = true;
    }

    /// 105 for an interrupted run (whatever it measured), else 99 when any finding
    /// failed, else 0.
    pub fn exit_code(&self) -> ExitCode {
        if self.interrupted {
            ExitCode::Interrupted
        } else if self.verdict == Verdict::Fail {
            ExitCode::Failed
        } else {
            ExitCode::Passed
        }
    }

    pub fn count(&self, v: Verdict) -> usize {
        self.findings.iter().filter(|f| f.verdict == v).count()
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// Writes the JSON report to `path`, or standard output for `-`.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let json = self.to_json().map_err(std::io::Error::other)?;
        if path == Path::new("-") {
            let mut out = std::io::stdout().lock();
            out.write_all(json.as_bytes())?;
            out.write_all(b"\n")
        } else {
            std::fs::write(path, json + "\n")
        }
    }
}

/// Terminal styling: colour only when writing to a terminal.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn detect() -> Style {
        use is_terminal::IsTerminal;
        Style {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    pub fn plain() -> Style {
        Style { color: false }
    }

    pub fn verdict(&self, v: Verdict) -> String {
        if !self.color {
            return v.label().to_string();
        }
        let code = match v {
            Verdict::Pass => "32",
            Verdict::Warn => "33",
            Verdict::Fail => "31;1",
        };
        format!("\x1b[{code}m{}\x1b[0m", v.label())
    }

    pub fn bold(&self, s: &str) -> String {
        if self.color {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    pub fn dim(&self, s: &str) -> String {
        if self.color {
            format!("\x1b[2m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// Pads `s` to `w` characters (by char count, so `✓` and `µ` line up).
pub fn pad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n >= w {
        s.to_string()
    } else {
        format!("{s}{}", " ".repeat(w - n))
    }
}

/// A plain text table: the first row is the header; columns sized to content.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(visible_len(c));
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            let last = i + 1 == r.len();
            line.push_str(c);
            if !last {
                line.push_str(&" ".repeat(widths[i].saturating_sub(visible_len(c)) + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Character count ignoring ANSI colour sequences.
pub fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_esc = false;
    for c in s.chars() {
        if in_esc {
            if c == 'm' {
                in_esc = false;
            }
        } else if c == '\x1b' {
            in_esc = true;
        } else {
            n += 1;
        }
    }
    n
}

/// Renders findings as a table, worst first, with the actions below.
pub fn render_findings(findings: &[Finding], style: Style) -> String {
    if findings.is_empty() {
        return "no findings\n".to_string();
    }
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.verdict));
    let mut rows = vec![vec![
        "verdict".to_string(),
        "check".to_string(),
        "subject".to_string(),
        "observed".to_string(),
        "target".to_string(),
    ]];
    for f in &sorted {
        let target = match &f.limit {
            Some(l) => format!("{} (max {l})", f.target),
            None => f.target.to_string(),
        };
        rows.push(vec![
            style.verdict(f.verdict),
            f.check.clone(),
            truncate(&f.subject, 48),
            f.observed.to_string(),
            target,
        ]);
    }
    let mut out = table(&rows);
    let notes: Vec<&&Finding> = sorted
        .iter()
        .filter(|f| f.verdict != Verdict::Pass && (!f.action.is_empty() || !f.evidence.is_empty()))
        .collect();
    if !notes.is_empty() {
        out.push('\n');
        for f in notes {
            out.push_str(&format!(
                "{} {} — {}\n",
                style.verdict(f.verdict),
                f.check,
                truncate(&f.subject, 80)
            ));
            if !f.evidence.is_empty() {
                out.push_str(&format!("    evidence: {}\n", f.evidence));
            }
            if !f.action.is_empty() {
                out.push_str(&format!("    action:   {}\n", f.action));
            }
        }
    }
    out
}

/// Shortens `s` to `max` characters with an ellipsis.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The closing line: counts per verdict and the overall verdict.
pub fn render_verdict_line(report: &Report, style: Style) -> String {
    format!(
        "{}: {} pass, {} warn, {} fail\n",
        style.verdict(report.verdict),
        report.count(Verdict::Pass),
        report.count(Verdict::Warn),
        report.count(Verdict::Fail)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report::new(
            "db",
            vec![
                Finding::new("db", "slow_query", "SELECT 1", Verdict::Warn)
                    .observed(crate::Quantity::ms(120.0))
                    .target(crate::Value::lt(crate::Quantity::ms(100.0)))
                    .limit(crate::Quantity::ms(500.0))
                    .action("Run EXPLAIN ANALYZE"),
                Finding::new("db", "fk_without_index", "orders.account_id", Verdict::Pass),
            ],
            serde_json::json!({"tables": 2}),
        )
    }

    #[test]
    fn verdict_and_exit_code_follow_the_worst_finding() {
        let r = sample();
        assert_eq!(r.verdict, Verdict::Warn);
        assert_eq!(r.exit_code(), ExitCode::Passed);
        let mut r2 = r.clone();
        r2.findings
            .push(Finding::new("db", "x", "y", Verdict::Fail));
        let r2 = Report::new("db", r2.findings, serde_json::Value::Null);
        assert_eq!(r2.exit_code(), ExitCode::Failed);
        assert_eq!(ExitCode::Failed as i32, 99);
    }

    #[test]
    fn renders_worst_first_with_actions() {
        let text = render_findings(&sample().findings, Style::plain());
        let warn = text.find("WARN").unwrap();
        let pass = text.find("PASS").unwrap();
        assert!(warn < pass);
        assert!(text.contains("action:   Run EXPLAIN ANALYZE"));
        assert!(text.contains("< 100ms (max 500ms)"));
    }

    #[test]
    fn json_matches_the_checked_in_schema() {
        let schema_text = include_str!("../../../docs/schema/report.v2.json");
        let schema: serde_json::Value = serde_json::from_str(schema_text).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let value: serde_json::Value = serde_json::from_str(&sample().to_json().unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        let mut bad = value.clone();
        bad["findings"][0]["verdict"] = serde_json::json!("maybe");
        assert!(!validator.is_valid(&bad));
    }
}
