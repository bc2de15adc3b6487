//! `powertune verify --baseline DIR --window D`: the runbook's Verification checklist
//! as one verdict; after a rollback it answers "did the previous baseline restore".

use super::doctor::{options, SystemsArgs};
use super::{block_on, Context};
use crate::args::{self, positive_duration_at_most};
use anyhow::anyhow;
use powertune_core::ExitCode;
use powertune_doctor::options::MAX_TIMEOUT;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A directory written by `powertune baseline save DIR`.
    #[arg(long, value_name = "DIR")]
    baseline: PathBuf,
    /// The window judged: APM history, the queue watch (one full peak window).
    #[arg(long, default_value = "15m", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_TIMEOUT))]
    window: Duration,
    #[command(flatten)]
    systems: SystemsArgs,
    #[command(flatten)]
    journal: JournalArgs,
    #[command(flatten)]
    output: args::Output,
}

/// `--journal FILE --note TEXT --category failure_mode`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct JournalArgs {
    /// Append the verdict (with --note and --category) to this run history.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// What was changed or rolled back, kept with the verdict.
    #[arg(long, value_name = "TEXT", requires = "journal")]
    pub note: Option<String>,
    /// failure_mode, improvement, observation or rollback.
    #[arg(long, value_name = "CATEGORY", requires = "journal")]
    pub category: Option<String>,
}

impl JournalArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        powertune_doctor::journal::check(
            self.note.as_deref().unwrap_or(""),
            self.category.as_deref().unwrap_or(""),
        )
        .map_err(|e| anyhow!(e))
    }

    /// Appends the report's verdict when --journal is given.
    pub fn append(&self, report: &powertune_core::Report) -> anyhow::Result<()> {
        if let Some(path) = &self.journal {
            let e = powertune_doctor::journal::entry(
                report,
                self.note.as_deref().unwrap_or(""),
                self.category.as_deref().unwrap_or(""),
            );
            powertune_doctor::journal::append(path, &e).map_err(|e| anyhow!(e))?;
        }
        Ok(())
    }
}

pub fn run(ctx: &Context, a: Args) -> anyhow::Result<ExitCode> {
    a.journal.check()?;
    let timeout = (a.window + Duration::from_secs(60)).min(MAX_TIMEOUT);
    let (mut o, targets) = options(ctx, &a.systems, timeout, a.window)?;
    o.apm_window = a.window;
    let secrets = o.systems.clone();
    let inspection = block_on(powertune_doctor::verify::verify(&a.baseline, &o, &targets))?
        .map_err(|e| anyhow!(secrets.redact(&e)))?;
    let report = inspection
        .report()
        .map_err(|e| anyhow!("cannot build the report: {e}"))?;
    a.journal.append(&report)?;
    super::emit(&report, &inspection.text, &a.output)
}
