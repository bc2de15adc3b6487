//! The `powertune` binary: parses, validates, calls one engine, renders.
//! Exit codes are decided in [`exit`] only.

mod commands;
mod exit;

use clap::{Parser, Subcommand};

/// powertune: the performance-tuning runbook as one binary. Every figure it measures
/// is judged against the runbook's targets (`powertune targets` lists them).
#[derive(Parser, Debug)]
#[command(name = "powertune", version, about, long_about = None)]
struct Cli {
    /// Targets file overriding the runbook's defaults (default: ./powertune.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    targets: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the runbook's targets in force and where each value came from.
    Targets(commands::targets::Args),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => exit::clap_error(e),
    };
    let ctx = commands::Context {
        targets_path: cli.targets.clone(),
    };
    let result = match cli.command {
        Command::Targets(a) => commands::targets::run(&ctx, a),
    };
    exit::finish(result)
}
