//! `powertune completions SHELL` and `powertune man`: shell completion scripts
//! (clap_complete) and roff man pages (clap_mangen), both generated from the same
//! clap definition the binary parses with, so they never drift from it.

use anyhow::Context as _;
use powertune_core::ExitCode;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The shell to write a completion script for.
    #[arg(value_enum, value_name = "SHELL")]
    shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write powertune.1 and one page per subcommand (powertune-db.1, powertune-db-explain.1, ...)
    /// into DIR (created if missing) instead of powertune.1 on standard output.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Writes the completion script for `args.shell` to standard output.
pub fn completions(args: Args, mut cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "powertune", &mut out);
    std::io::stdout()
        .lock()
        .write_all(&out)
        .context("cannot write the completion script to standard output")?;
    Ok(ExitCode::Passed)
}

/// Writes the man page to standard output, or every page into `--out DIR`.
pub fn man(args: ManArgs, cmd: clap::Command) -> anyhow::Result<ExitCode> {
    match args.out {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .context("cannot render the man page")?;
            std::io::stdout()
                .lock()
                .write_all(&out)
                .context("cannot write the man page to standard output")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("--out {}: cannot create the directory", dir.display()))?;
            let mut written = 0usize;
            write_pages(cmd, &dir, &mut written)?;
            let mut so = std::io::stdout().lock();
            writeln!(so, "{written} man pages written to {}", dir.display())?;
        }
    }
    Ok(ExitCode::Passed)
}

/// One page for `cmd` and, recursively, one per subcommand, named after the command
/// path joined with `-` (clap_mangen's convention, `man powertune-db-explain`).
fn write_pages(cmd: clap::Command, dir: &Path, written: &mut usize) -> anyhow::Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .context("cannot render the man page")?;
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir, written)?;
    }
    Ok(())
}
