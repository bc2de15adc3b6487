//! `powertune journal FILE`: the run history `--journal FILE` appends to.

use super::Context;
use anyhow::anyhow;
use powertune_core::ExitCode;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A journal written by `verify`, `load` or `capacity --journal FILE`.
    file: PathBuf,
    /// Print the entries as JSON lines instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(_ctx: &Context, a: Args) -> anyhow::Result<ExitCode> {
    let entries = powertune_doctor::journal::read(&a.file).map_err(|e| anyhow!(e))?;
    let mut out = std::io::stdout().lock();
    if a.json {
        for e in &entries {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        }
    } else {
        write!(out, "{}", powertune_doctor::journal::render(&entries))?;
    }
    Ok(ExitCode::Passed)
}
