//! `powertune report FILE.json...`: an earlier `--json` report of any command shown
//! again and rendered as HTML, JUnit XML or Markdown, without measuring anything.

use super::Context;
use anyhow::{bail, Context as _};
use powertune_core::report::SCHEMA;
use powertune_core::{ExitCode, Report};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Reports written earlier with --json, by any command. Several make one JUnit
    /// file with a testsuite each; the other outputs take one.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,

    #[command(flatten)]
    output: crate::args::Output,
}

/// Reads one JSON report, refusing files over the report size limit before reading
/// them and anything that is not a `powertune.report/v2` document.
pub fn read(path: &Path) -> anyhow::Result<Report> {
    let shown = path.display();
    let text = powertune_core::baseline::read_limited(path)
        .map_err(|why| anyhow::anyhow!("cannot read report {shown}: {why}"))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{shown} is not JSON"))?;
    match value.get("schema").and_then(|s| s.as_str()) {
        Some(SCHEMA) => {}
        Some(other) => bail!("{shown} is a `{other}` document, not a {SCHEMA} report"),
        None => bail!("{shown} is not a powertune report (no `schema` field)"),
    }
    serde_json::from_value(value).with_context(|| format!("{shown} is not a valid {SCHEMA} report"))
}

pub fn run(_ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let o = &args.output;
    let reports: Vec<Report> = args
        .files
        .iter()
        .map(|p| read(p))
        .collect::<anyhow::Result<_>>()?;
    if let [one] = reports.as_slice() {
        return super::emit(one, "", o);
    }
    if o.json.is_some() || o.html.is_some() || o.markdown.is_some() {
        bail!(
            "--json, --html and --markdown take one report ({} given); --junit takes several",
            reports.len()
        );
    }
    let style = powertune_core::report::Style::detect();
    for (path, r) in args.files.iter().zip(&reports) {
        println!(
            "{}: {}",
            path.display(),
            powertune_core::report::render_verdict_line(r, style).trim_end()
        );
    }
    if let Some(path) = &o.junit {
        let all: Vec<&Report> = reports.iter().collect();
        std::fs::write(path, powertune_core::ci::junit(&all))
            .with_context(|| format!("cannot write JUnit XML to {}", path.display()))?;
    }
    Ok(reports
        .iter()
        .map(Report::exit_code)
        .max_by_key(|c| *c as i32)
        .unwrap_or(ExitCode::Passed))
}
