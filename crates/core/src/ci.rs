//! Reports for CI: JUnit XML (one `testsuite` per command run, one `testcase` per
//! finding) and a compact Markdown summary (for a pull-request comment or GitHub's
//! `$GITHUB_STEP_SUMMARY`).
//!
//! JUnit mapping, as GitLab, Jenkins and GitHub's JUnit actions read it: the test's
//! identity is `classname` (`area.check`) + `name` (the subject). A FAIL is a
//! `<failure>` whose message gives observed, target and limit and whose text holds the
//! evidence and the runbook's action; a WARN passes, with the warning in the case's
//! `<system-out>`, so CI stays green on warnings as the exit code does.

use crate::finding::{Finding, Verdict};
use crate::report::Report;
use quick_xml::escape::escape;

fn target_text(f: &Finding) -> String {
    match &f.limit {
        Some(l) => format!("{} (max {l})", f.target),
        None => f.target.to_string(),
    }
}

/// One JUnit XML document holding one `testsuite` per report.
pub fn junit(reports: &[&Report]) -> String {
    let tests: usize = reports.iter().map(|r| r.findings.len()).sum();
    let failures: usize = reports.iter().map(|r| r.count(Verdict::Fail)).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"powertune\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">\n"
    ));
    for r in reports {
        out.push_str(&format!(
            "  <testsuite name=\"powertune {}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\" timestamp=\"{}\">\n",
            escape(r.command.as_str()),
            r.findings.len(),
            r.count(Verdict::Fail),
            escape(r.generated_at.as_str()),
        ));
        out.push_str(&format!(
            "    <properties>\n      <property name=\"powertune_version\" value=\"{}\"/>\n      <property name=\"verdict\" value=\"{}\"/>\n{}    </properties>\n",
            escape(r.powertune_version.as_str()),
            r.verdict.label(),
            if r.interrupted {
                "      <property name=\"interrupted\" value=\"true\"/>\n"
            } else {
                ""
            }
        ));
        for f in &r.findings {
            let classname = format!("{}.{}", f.area, f.check);
            out.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
                escape(classname.as_str()),
                escape(f.subject.as_str())
            ));
            let detail = format!(
                "observed {}, target {}{}{}",
                f.observed,
                target_text(f),
                if f.evidence.is_empty() {
                    String::new()
                } else {
                    format!("\nevidence: {}", f.evidence)
                },
                if f.action.is_empty() {
                    String::new()
                } else {
                    format!("\naction: {}", f.action)
                },
            );
            match f.verdict {
                Verdict::Pass => out.push_str("/>\n"),
                Verdict::Warn => out.push_str(&format!(
                    ">\n      <system-out>WARN: {}</system-out>\n    </testcase>\n",
                    escape(detail.as_str())
                )),
                Verdict::Fail => {
                    let message = format!("observed {}, target {}", f.observed, target_text(f));
                    out.push_str(&format!(
                        ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>\n",
                        escape(message.as_str()),
                        escape(f.check.as_str()),
                        escape(detail.as_str())
                    ));
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A compact Markdown summary: the verdict, the findings that did not pass (worst
/// first) with their actions, and the count of those that did.
pub fn markdown(report: &Report) -> String {
    let icon = match report.verdict {
        Verdict::Pass => "✅",
        Verdict::Warn => "⚠️",
        Verdict::Fail => "❌",
    };
    let mut out = format!(
        "### {icon} powertune {}: {} ({} pass, {} warn, {} fail){}\n\n",
        report.command,
        report.verdict.label(),
        report.count(Verdict::Pass),
        report.count(Verdict::Warn),
        report.count(Verdict::Fail),
        if report.interrupted {
            ", interrupted: figures cover only what was measured until the signal"
        } else {
            ""
        }
    );
    let mut shown: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.verdict != Verdict::Pass)
        .collect();
    shown.sort_by_key(|f| std::cmp::Reverse(f.verdict));
    if !shown.is_empty() {
        out.push_str("| verdict | check | subject | observed | target |\n|---|---|---|---|---|\n");
        for f in &shown {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                f.verdict.label(),
                cell(&f.check),
                cell(&f.subject),
                cell(&f.observed.to_string()),
                cell(&target_text(f))
            ));
        }
        let actions: Vec<&&Finding> = shown.iter().filter(|f| !f.action.is_empty()).collect();
        if !actions.is_empty() {
            out.push_str("\n**Actions**\n\n");
            for f in actions.iter().take(10) {
                out.push_str(&format!(
                    "- **{}** ({}): {}\n",
                    cell(&f.check),
                    cell(&f.subject),
                    cell(&f.action)
                ));
            }
        }
    }
    let passed = report.count(Verdict::Pass);
    if passed > 0 {
        out.push_str(&format!("\n{passed} checks passed.\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Quantity;
    use crate::Value;

    fn sample() -> Report {
        Report::new(
            "load",
            vec![
                Finding::new("load", "api_latency_p95", "Authentication", Verdict::Fail)
                    .observed(Quantity::ms(212.0))
                    .target(Value::lt(Quantity::ms(100.0)))
                    .limit(Quantity::ms(200.0))
                    .evidence("p95 of 1,200 requests <fast & slow>")
                    .action("Check the DB pool | add an index"),
                Finding::new("load", "error_rate", "all requests", Verdict::Warn)
                    .observed(Quantity::percent(0.5))
                    .target(Value::lt(Quantity::percent(0.1))),
                Finding::new("load", "load_p95", "all requests", Verdict::Pass),
            ],
            serde_json::Value::Null,
        )
    }

    #[test]
    fn an_interrupted_run_says_so_in_both_forms() {
        let mut r = sample();
        assert!(!markdown(&r).contains("interrupted"));
        assert!(!junit(&[&r]).contains("interrupted"));
        r.mark_interrupted();
        assert!(markdown(&r).lines().next().unwrap().contains("interrupted"));
        assert!(junit(&[&r]).contains("<property name=\"interrupted\" value=\"true\"/>"));
    }

    #[test]
    fn junit_maps_fail_to_failure_and_warn_to_system_out() {
        let x = junit(&[&sample()]);
        assert!(
            x.contains("<testsuites name=\"powertune\" tests=\"3\" failures=\"1\""),
            "{x}"
        );
        assert!(
            x.contains("<testsuite name=\"powertune load\" tests=\"3\" failures=\"1\""),
            "{x}"
        );
        assert!(
            x.contains("classname=\"load.api_latency_p95\" name=\"Authentication\""),
            "{x}"
        );
        assert!(
            x.contains("<failure message=\"observed 212ms, target &lt; 100ms (max 200ms)\" type=\"api_latency_p95\">"),
            "{x}"
        );
        assert!(x.contains("&lt;fast &amp; slow&gt;"), "{x}");
        assert!(x.contains("<system-out>WARN: observed 0.5%"), "{x}");
        assert!(
            x.contains("classname=\"load.load_p95\" name=\"all requests\" time=\"0\"/>"),
            "{x}"
        );
    }

    #[test]
    fn junit_is_well_formed_xml() {
        let x = junit(&[&sample(), &sample()]);
        let mut reader = quick_xml::Reader::from_str(&x);
        let mut depth = 0i32;
        loop {
            match reader.read_event().unwrap() {
                quick_xml::events::Event::Start(_) => depth += 1,
                quick_xml::events::Event::End(_) => depth -= 1,
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(depth, 0);
    }

    #[test]
    fn markdown_lists_what_did_not_pass_with_actions() {
        let m = markdown(&sample());
        assert!(
            m.starts_with("### ❌ powertune load: FAIL (1 pass, 1 warn, 1 fail)"),
            "{m}"
        );
        let fail = m.find("| FAIL | api_latency_p95").unwrap();
        let warn = m.find("| WARN | error_rate").unwrap();
        assert!(fail < warn, "{m}");
        assert!(m.contains("Check the DB pool \\| add an index"), "{m}");
        assert!(m.contains("1 checks passed."), "{m}");
    }
}
