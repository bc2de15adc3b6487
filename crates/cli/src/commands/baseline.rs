//! `powertune baseline save DIR`: one report per configured system, for a later
//! `powertune verify --baseline DIR`.

use super::doctor::{options, SystemsArgs};
use super::{block_on, Context};
use crate::args::positive_duration_at_most;
use anyhow::anyhow;
use powertune_core::ExitCode;
use powertune_doctor::options::MAX_TIMEOUT;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    sub: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Inspect every configured system ([systems]) and save one report each in DIR.
    Save(SaveArgs),
}

#[derive(clap::Args, Debug)]
struct SaveArgs {
    /// The directory to write (created if missing).
    dir: PathBuf,
    #[command(flatten)]
    systems: SystemsArgs,
    /// How long the trends are observed (the retry set, memory).
    #[arg(long, default_value = "10s", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_TIMEOUT))]
    window: Duration,
    /// The bound on the whole capture.
    #[arg(long, default_value = "60s", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_TIMEOUT))]
    timeout: Duration,
}

pub fn run(ctx: &Context, a: Args) -> anyhow::Result<ExitCode> {
    let Sub::Save(a) = a.sub;
    let (o, targets) = options(ctx, &a.systems, a.timeout, a.window)?;
    let secrets = o.systems.clone();
    let m = block_on(powertune_doctor::verify::save(&a.dir, &o, &targets))?
        .map_err(|e| anyhow!(secrets.redact(&e)))?;
    if m.reports.is_empty() {
        return Err(anyhow!(
            "{}: no system was measured, nothing saved ({})",
            a.dir.display(),
            if m.not_measured.is_empty() {
                "configure [systems] or give --db, --queues, ...".to_string()
            } else {
                secrets.redact(&m.not_measured.join("; "))
            }
        ));
    }
    println!("saved {} to {}", m.reports.join(", "), a.dir.display());
    for n in &m.not_measured {
        println!("not measured: {}", secrets.redact(n));
    }
    Ok(ExitCode::Passed)
}
