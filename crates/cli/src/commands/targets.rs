//! `powertune targets`: the runbook's targets in force and where each came from.

use super::Context;
use powertune_core::report::{table, Style};
use powertune_core::ExitCode;
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the targets as JSON on standard output instead of the table (a flag here,
    /// not `--json FILE`: the listing is not a report).
    #[arg(long, conflicts_with = "prometheus_rules")]
    json: bool,
    /// Print Prometheus alerting rules over `powertune monitor`'s metrics (the targets
    /// in force) instead of the table; for a rule_files entry (docs/monitor.md).
    #[arg(long)]
    prometheus_rules: bool,
    /// With --prometheus-rules: the monitor's --interval, for the staleness alert.
    #[arg(long, default_value = "1m", value_name = "DURATION", requires = "prometheus_rules",
          value_parser = crate::args::positive_duration_at_most(powertune_doctor::monitor::MAX_INTERVAL))]
    interval: std::time::Duration,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let entries = targets.entries();
    let mut out = std::io::stdout().lock();
    if args.prometheus_rules {
        let rules =
            powertune_doctor::rules::prometheus_rules(&targets, args.interval.as_secs_f64());
        write!(out, "{rules}")?;
        return Ok(ExitCode::Passed);
    }
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&entries)?)?;
        return Ok(ExitCode::Passed);
    }
    let style = Style::detect();
    let mut rows = vec![vec![
        "key".to_string(),
        "value".to_string(),
        "source".to_string(),
    ]];
    for e in &entries {
        let source = if e.source.starts_with("default") {
            style.dim(&e.source)
        } else {
            style.bold(&e.source)
        };
        rows.push(vec![e.key.clone(), e.value.clone(), source]);
    }
    write!(out, "{}", table(&rows))?;
    Ok(ExitCode::Passed)
}
