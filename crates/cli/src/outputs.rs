//! Every file a command will write (`--json`, `--out json=FILE`, `--save-baseline`,
//! `--html`, `--junit`, `--markdown`) is checked for writability before the command
//! starts, so a long run never ends with "cannot write" and nothing saved.

use clap::ArgMatches;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

/// Argument ids that name an output file, with the flag shown in errors.
const OUTPUT_ARGS: &[(&str, &str)] = &[
    ("json", "--json"),
    ("save_baseline", "--save-baseline"),
    ("html", "--html"),
    ("junit", "--junit"),
    ("markdown", "--markdown"),
];

/// Checks every output path given anywhere on the command line (the subcommand and
/// its subcommands); the error is one line naming the flag, the path and why.
pub fn check_writable(matches: &ArgMatches) -> Result<(), String> {
    let mut m = matches;
    loop {
        for (id, flag) in OUTPUT_ARGS {
            if let Ok(Some(paths)) = m.try_get_many::<PathBuf>(id) {
                for p in paths {
                    check(p, flag)?;
                }
            }
        }
        if let Ok(Some(outs)) = m.try_get_many::<String>("out") {
            for o in outs {
                if let Some(p) = o.strip_prefix("json=") {
                    check(Path::new(p), "--out json=")?;
                }
            }
        }
        match m.subcommand() {
            Some((_, sub)) => m = sub,
            None => return Ok(()),
        }
    }
}

/// Whether `path` can be written: an existing file is opened for appending (nothing
/// changes), a new one is created and removed again.
fn check(path: &Path, flag: &str) -> Result<(), String> {
    if path == Path::new("-") || path.as_os_str().is_empty() {
        return Ok(());
    }
    let shown = path.display();
    if path.is_dir() {
        return Err(format!("cannot write {flag} {shown}: it is a directory"));
    }
    if path.exists() {
        return OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot write {flag} {shown}: {e}"));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(format!(
            "cannot write {flag} {shown}: directory {} does not exist",
            parent.display()
        ));
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot write {flag} {shown}: {e}"))?;
    std::fs::remove_file(path).map_err(|e| format!("cannot write {flag} {shown}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_missing_parents_are_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check(dir.path(), "--json")
            .unwrap_err()
            .contains("is a directory"));
        let missing = dir.path().join("nope/run.json");
        assert!(check(&missing, "--json")
            .unwrap_err()
            .contains("does not exist"));
        let fresh = dir.path().join("run.json");
        check(&fresh, "--json").unwrap();
        assert!(!fresh.exists(), "the check left a file behind");
        std::fs::write(&fresh, "keep").unwrap();
        check(&fresh, "--json").unwrap();
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "keep");
        assert!(check(Path::new("-"), "--json").is_ok());
    }
}
