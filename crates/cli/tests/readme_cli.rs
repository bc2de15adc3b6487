//! The README's and docs' examples run as written from a fresh clone: every command in
//! a code block of README.md or docs/*.md that names a file of the repository names
//! one that exists, and the cheap, offline ones (`--help`, `--version`,
//! `completions`, `man`, `targets`, `apm analyze FILE`, `report FILE`, `target
//! --print-config`, ...) run, one code block at a time in a scratch directory, and
//! end with 0 (passed) or 99 (a finding failed), never 1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_powertune");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// One command line from a document.
#[derive(Debug)]
struct Example {
    doc: String,
    line: usize,
    block: usize,
    words: Vec<String>,
    /// The line the document shows right after the command when it is an error
    /// (`powertune: ...`): the command must print exactly that and exit 1.
    error: Option<String>,
}

/// Fence languages of blocks that show output or files, never commands.
const OUTPUT_BLOCKS: &[&str] = &["text", "json", "yaml", "toml", "ini", "log"];

/// Programs whose lines in a code block are commands (not output, not config).
const PROGRAMS: &[&str] = &[
    "powertune",
    "cargo",
    "docker",
    "bash",
    "sh",
    "python3",
    "systemctl",
    "install",
];

/// The words of a shell line: quotes grouped, a trailing `# comment` dropped.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                started = true;
            }
            None if c == '#' && !started => break,
            None if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            None => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(cur);
    }
    out
}

fn examples() -> Vec<Example> {
    let root = repo();
    let mut docs = vec![root.join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    let mut out = Vec::new();
    let mut block = 0;
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = doc.strip_prefix(&root).unwrap().display().to_string();
        let mut inside = false;
        // Output and file blocks (```text, ```json, ...) hold no commands; in a block
        // that prompts with `$ `, only the prompted lines are commands.
        let mut commands = false;
        let mut prompted = false;
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if let Some(info) = line.trim_start().strip_prefix("```") {
                inside = !inside;
                block += 1;
                if inside {
                    commands = !OUTPUT_BLOCKS.contains(&info.trim());
                    let end = lines[i + 1..]
                        .iter()
                        .position(|l| l.trim_start().starts_with("```"))
                        .map_or(lines.len(), |n| i + 1 + n);
                    prompted = lines[i + 1..end]
                        .iter()
                        .any(|l| l.trim_start().starts_with("$ "));
                }
                continue;
            }
            if !inside || !commands {
                continue;
            }
            let line = line.trim();
            let line = match line.strip_prefix("$ ") {
                Some(rest) => rest,
                None if prompted => continue,
                None => line,
            };
            let mut w = words(line);
            // The command ends where the shell would start another or redirect it.
            if let Some(end) = w
                .iter()
                .position(|x| matches!(x.as_str(), ">" | ">>" | "|" | "&&" | "||" | ";" | "&"))
            {
                w.truncate(end);
            }
            let Some(first) = w.first() else { continue };
            if PROGRAMS.contains(&first.as_str()) || first.starts_with("scripts/") {
                let error = lines
                    .get(i + 1)
                    .filter(|next| next.starts_with("powertune: "))
                    .map(|next| next.to_string());
                out.push(Example {
                    doc: name.clone(),
                    line: i + 1,
                    block,
                    words: w,
                    error,
                });
            }
        }
    }
    out
}

/// Top-level entries of the repository a word may name.
const TOP: &[&str] = &[
    "examples/",
    "crates/",
    "docs/",
    "deploy/",
    "scripts/",
    "Dockerfile",
    "Cargo.toml",
    "README.md",
];

/// The repository file a word names, if it names one (`--config=examples/x.toml` too).
fn repo_path(word: &str) -> Option<&str> {
    let w = word.rsplit('=').next().unwrap_or(word);
    let w = w.trim_end_matches([',', ';', ')', ':']);
    TOP.iter()
        .any(|t| w == t.trim_end_matches('/') || w.starts_with(t))
        .then_some(w)
        .filter(|w| !w.contains(['*', '$', '<', '{']))
}

#[test]
fn every_repository_file_an_example_names_exists() {
    let root = repo();
    let all = examples();
    assert!(all.len() > 20, "{} commands found", all.len());
    let mut missing = Vec::new();
    for e in &all {
        for w in &e.words {
            if let Some(p) = repo_path(w) {
                if !root.join(p).exists() {
                    missing.push(format!("{}:{}: {p}", e.doc, e.line));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "examples name files that do not exist:\n{}",
        missing.join("\n")
    );
}

/// `powertune` commands that read only local files and answer at once.
fn cheap(words: &[String]) -> bool {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    if w[0] != "powertune" || w.len() < 2 {
        return false;
    }
    if w.iter()
        .any(|x| x.contains("...") || *x == "-" || x.starts_with('<'))
    {
        return false;
    }
    if w.contains(&"--help") || w.contains(&"--version") || w.contains(&"--print-config") {
        return true;
    }
    matches!(
        (w[1], w.get(2).copied()),
        ("targets", _) | ("completions", _) | ("man", _) | ("apm", Some("analyze")) | ("report", _)
    )
}

/// Options whose value is a file the command writes.
const WRITES: &[&str] = &[
    "--json",
    "--html",
    "--junit",
    "--markdown",
    "--out",
    "--save-baseline",
];

#[test]
fn the_cheap_examples_run_as_written() {
    let root = repo();
    let mut ran = 0;
    let mut failures = Vec::new();
    let mut scratch: Option<(usize, tempfile::TempDir)> = None;
    for e in examples()
        .into_iter()
        .filter(|e| cheap(&e.words) || (e.words[0] == "powertune" && e.error.is_some()))
    {
        // One scratch directory per code block: a block's later commands read what
        // its earlier ones wrote (`apm analyze ... --json a.json`, then `report a.json`).
        if scratch.as_ref().map(|(b, _)| *b) != Some(e.block) {
            scratch = Some((e.block, tempfile::tempdir().unwrap()));
        }
        let dir = scratch.as_ref().unwrap().1.path().to_path_buf();
        let mut args = Vec::new();
        let mut runnable = true;
        for (i, w) in e.words.iter().enumerate().skip(1) {
            let written = i > 1 && WRITES.contains(&e.words[i - 1].as_str());
            if let Some(p) = repo_path(w).filter(|_| !written) {
                args.push(root.join(p).display().to_string());
            } else if !written
                && !w.starts_with('-')
                && w.rsplit_once('.')
                    .is_some_and(|(_, ext)| matches!(ext, "json" | "jsonl" | "toml" | "csv" | "gz"))
                && !dir.join(w).exists()
            {
                // A file of the reader's own (`run.json`): not runnable here.
                runnable = false;
                break;
            } else {
                args.push(w.clone());
            }
        }
        if !runnable {
            continue;
        }
        let o = run_bounded(&args, &dir);
        ran += 1;
        if let Some(expected) = &e.error {
            let got = String::from_utf8_lossy(&o.stderr).trim_end().to_string();
            if o.status.code() != Some(1) || got != *expected {
                failures.push(format!(
                    "{}:{}: powertune {} → {:?}: {got:?}, the document shows {expected:?}",
                    e.doc,
                    e.line,
                    e.words[1..].join(" "),
                    o.status.code(),
                ));
            }
        } else if !matches!(o.status.code(), Some(0 | 99)) {
            failures.push(format!(
                "{}:{}: powertune {} → {:?}: {}",
                e.doc,
                e.line,
                e.words[1..].join(" "),
                o.status.code(),
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
    }
    assert!(ran >= 5, "only {ran} cheap examples found");
    assert!(
        failures.is_empty(),
        "examples that do not run:\n{}",
        failures.join("\n")
    );
}

/// Runs the binary in `dir`, stopping it after 30 s (an example that starts a server
/// by mistake must not hang the suite).
fn run_bounded(args: &[String], dir: &Path) -> std::process::Output {
    let child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_STEP_SUMMARY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    match rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(o) => o,
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            rx.recv().unwrap()
        }
    }
}

#[test]
fn the_words_of_a_line_are_split_like_a_shell_does() {
    assert_eq!(
        words(r#"powertune apm analyze f.jsonl --endpoint "GET /x"   # a comment"#),
        [
            "powertune",
            "apm",
            "analyze",
            "f.jsonl",
            "--endpoint",
            "GET /x"
        ]
    );
    assert_eq!(words("a '' b"), ["a", "", "b"]);
    assert_eq!(
        repo_path("--config=examples/apm.toml"),
        Some("examples/apm.toml")
    );
    assert_eq!(repo_path("gateway.toml"), None);
    assert_eq!(repo_path("crates/*/src"), None);
}
