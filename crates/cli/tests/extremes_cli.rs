//! No input makes any command panic: every command and subcommand, every option that
//! takes a value, given extreme values (zero, negative, huge, NaN, empty, overlong,
//! malformed URLs, an oversized file), and every targets-file key given extreme
//! numbers. A command may refuse (exit 1), fail (99), pass (0) or be stopped by the
//! test after a short while (servers, long runs); it may never exit 101, print a
//! panic or a backtrace, or write more than one error line.
//!
//! The commands come from `powertune --help` itself, so a new command without a base
//! invocation here fails the test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_powertune");

/// How long one invocation may run before the test stops it (servers never end).
const RUN_FOR: Duration = Duration::from_millis(1500);

/// How long an invocation given an unusable file may take to refuse it: it ends by
/// itself within milliseconds when it refuses, so only one reading without end
/// reaches this, and a machine busy with other builds does not.
const MUST_END_WITHIN: Duration = Duration::from_secs(15);

/// Values every option is tried with.
const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "1e20",
    "18446744073709551616",
    "999999999999h",
    "NaN",
    "",
    "1/0s",
    "http://u:pw@[::1",
    "postgres//user:pw@127.0.0.1:1/db",
];

fn help(path: &[&str]) -> String {
    let o = Command::new(BIN)
        .args(path)
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Subcommand names under a `Commands:` heading (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line.starts_with("Commands:") {
            inside = true;
            continue;
        }
        if inside {
            if !line.starts_with("  ") {
                break;
            }
            let t = line.trim_start();
            if line.len() - t.len() == 2 {
                if let Some(name) = t.split_whitespace().next() {
                    if name != "help" {
                        out.push(name.to_string());
                    }
                }
            }
        }
    }
    out
}

/// Long options that take a value, from a help text.
fn valued_options(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            let t = l.trim_start();
            let t = t
                .strip_prefix("-")
                .map_or(t, |_| t.split_once(", ").map_or(t, |(_, rest)| rest));
            let (flag, rest) = t.split_once(' ')?;
            (flag.starts_with("--") && rest.starts_with('<')).then(|| flag.to_string())
        })
        .collect()
}

struct Fixtures {
    dir: tempfile::TempDir,
    http: String,
    pg: String,
    redis: String,
}

impl Fixtures {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn fixtures() -> Fixtures {
    let dir = tempfile::tempdir().unwrap();
    let http = common::ok_server();
    let pg = std::env::var("POWERTUNE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into());
    let redis =
        std::env::var("POWERTUNE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:56379".into());
    let f = Fixtures {
        dir,
        http,
        pg,
        redis: format!("{}/63", redis.trim_end_matches('/')),
    };
    // An oversized input: 80 MiB of zeros, sparse on disk.
    let big = std::fs::File::create(f.path("big.bin")).unwrap();
    big.set_len(80 * 1024 * 1024).unwrap();
    let traces =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../apm/tests/fixtures/powernode.jsonl");
    std::fs::copy(traces, f.path("traces.jsonl")).unwrap();
    std::fs::write(
        f.path("gateway.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\n[[providers]]\nname = \"local\"\nkind = \"ollama\"\n\
             base_url = \"{}\"\n[models.fast]\ntargets = [\"local:llama3.1\"]\n",
            f.http
        ),
    )
    .unwrap();
    // Two load reports for compare.
    for name in ["a.json", "b.json"] {
        let o = Command::new(BIN)
            .args(["load", "--url", &f.http, "--vus", "1", "--duration", "1s"])
            .args(["--json", &f.path(name), "-q"])
            .output()
            .unwrap();
        assert!(
            Path::new(&f.path(name)).exists(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // One segment of two, for merge.
    Command::new(BIN)
        .args(["load", "--url", &f.http, "--vus", "2", "--duration", "1s"])
        .args(["--segment", "1/2", "--json", &f.path("part.json"), "-q"])
        .output()
        .unwrap();
    // A systems baseline for verify, and an empty run history for journal.
    Command::new(BIN)
        .args([
            "baseline",
            "save",
            &f.path("before"),
            "--redis",
            &f.redis,
            "--window",
            "1s",
        ])
        .output()
        .unwrap();
    std::fs::write(f.path("runs.jsonl"), "").unwrap();
    f
}

/// The invocation each command path starts from: valid, short, loopback only.
fn bases(f: &Fixtures) -> BTreeMap<&'static str, Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut m = BTreeMap::new();
    m.insert("targets", s(&["targets"]));
    m.insert("demo", s(&["demo", "--time-scale", "0.01"]));
    m.insert(
        "capacity",
        s(&[
            "capacity",
            "--demo",
            "--step",
            "1s",
            "--warmup",
            "0s",
            "--max-steps",
            "1",
            "-q",
        ]),
    );
    m.insert(
        "load",
        s(&[
            "load",
            "--url",
            &f.http,
            "--vus",
            "1",
            "--duration",
            "1s",
            "-q",
        ]),
    );
    m.insert(
        "compare",
        s(&["compare", &f.path("a.json"), &f.path("b.json")]),
    );
    m.insert("report", s(&["report", &f.path("a.json")]));
    m.insert(
        "merge",
        s(&["merge", &f.path("part.json"), "--allow-partial"]),
    );
    m.insert(
        "doctor",
        s(&[
            "doctor",
            "--redis",
            &f.redis,
            "--window",
            "1s",
            "--timeout",
            "5s",
        ]),
    );
    m.insert(
        "monitor",
        s(&[
            "monitor",
            "--redis",
            &f.redis,
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "2s",
            "--timeout",
            "2s",
            "--window",
            "1s",
            "--runs",
            "1",
        ]),
    );
    m.insert(
        "baseline",
        s(&[
            "baseline",
            "save",
            &f.path("before"),
            "--redis",
            &f.redis,
            "--window",
            "1s",
        ]),
    );
    m.insert(
        "baseline save",
        s(&[
            "baseline",
            "save",
            &f.path("before"),
            "--redis",
            &f.redis,
            "--window",
            "1s",
        ]),
    );
    m.insert(
        "verify",
        s(&[
            "verify",
            "--baseline",
            &f.path("before"),
            "--redis",
            &f.redis,
            "--window",
            "1s",
        ]),
    );
    m.insert("journal", s(&["journal", &f.path("runs.jsonl")]));
    let investigate = s(&[
        "investigate",
        "endpoint",
        "GET /x",
        "--apm",
        &f.http,
        "--timeout",
        "5s",
    ]);
    m.insert("investigate", investigate.clone());
    m.insert("investigate endpoint", investigate);
    m.insert(
        "investigate queue",
        s(&[
            "investigate",
            "queue",
            "default",
            "--queues",
            &f.redis,
            "--max-wait",
            "1s",
            "--every",
            "200ms",
        ]),
    );
    m.insert("redis", s(&["redis", "--url", &f.redis]));
    m.insert("redis keys", s(&["redis", "keys", "--url", &f.redis]));
    m.insert("queues", s(&["queues", "--url", &f.redis]));
    m.insert(
        "queues plan",
        s(&[
            "queues",
            "plan",
            "--url",
            &f.redis,
            "--window",
            "1s",
            "--horizon",
            "10m",
        ]),
    );
    m.insert(
        "queues record",
        s(&[
            "queues",
            "record",
            "--url",
            &f.redis,
            "--interval",
            "100ms",
            "--samples",
            "2",
            "--out",
            &f.path("q.history"),
        ]),
    );
    m.insert(
        "queues history",
        s(&["queues", "history", &f.path("q.history")]),
    );
    m.insert("apm", s(&["apm", "analyze", &f.path("traces.jsonl")]));
    m.insert("apm serve", s(&["apm", "serve", "--listen", "127.0.0.1:0"]));
    m.insert(
        "apm report",
        s(&["apm", "report", "--url", "http://127.0.0.1:1"]),
    );
    m.insert(
        "apm endpoint",
        s(&["apm", "endpoint", "GET /x", "--url", "http://127.0.0.1:1"]),
    );
    m.insert(
        "apm analyze",
        s(&["apm", "analyze", &f.path("traces.jsonl")]),
    );
    m.insert("target", s(&["target", "--listen", "127.0.0.1:0"]));
    m.insert(
        "provider-sim",
        s(&["provider-sim", "--listen", "127.0.0.1:0"]),
    );
    m.insert("db", s(&["db", "--url", &f.pg]));
    m.insert(
        "db explain",
        s(&["db", "explain", "--url", &f.pg, "SELECT 1"]),
    );
    m.insert(
        "db watch",
        s(&[
            "db",
            "watch",
            "--url",
            &f.pg,
            "--interval",
            "1s",
            "--count",
            "1",
        ]),
    );
    m.insert(
        "gateway",
        s(&["gateway", "--config", &f.path("gateway.toml")]),
    );
    m.insert(
        "gateway status",
        s(&["gateway", "status", "--url", "http://127.0.0.1:1"]),
    );
    m.insert("completions", s(&["completions", "bash"]));
    m.insert("man", s(&["man"]));
    let dist = f.path("dist");
    m.insert("frontend", s(&["frontend", "bundle", &dist]));
    m.insert("frontend bundle", s(&["frontend", "bundle", &dist]));
    m.insert(
        "frontend lcp",
        s(&[
            "frontend",
            "lcp",
            "http://127.0.0.1:1/",
            "--runs",
            "1",
            "--timeout",
            "5s",
        ]),
    );
    m
}

/// Options whose value is a file: tried with missing, oversized and directory paths
/// instead of [`EXTREMES`].
fn file_option(flag: &str) -> bool {
    matches!(
        flag,
        "--targets" | "--config" | "--plan" | "--baseline" | "--ca-cert"
    )
}

/// Options that write: tried only by outputs_cli.rs.
fn output_option(flag: &str) -> bool {
    matches!(
        flag,
        "--json" | "--out" | "--save-baseline" | "--html" | "--junit" | "--markdown"
    )
}

/// `base` with `flag value` set (replacing the base's own value of `flag`).
fn with(base: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut args = Vec::with_capacity(base.len() + 2);
    let mut i = 0;
    while i < base.len() {
        if base[i] == flag {
            i += 2;
            continue;
        }
        args.push(base[i].clone());
        i += 1;
    }
    args.push(flag.to_string());
    args.push(value.to_string());
    args
}

struct Outcome {
    args: Vec<String>,
    code: Option<i32>,
    stderr: String,
}

/// Runs `args`, stopping it after `limit`.
fn run(args: Vec<String>, dir: &Path, limit: Duration) -> Outcome {
    let mut child = Command::new(BIN)
        .args(&args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.by_ref().take(64 * 1024).read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Outcome {
        args,
        code,
        stderr: reader.join().unwrap_or_default(),
    }
}

/// Runs every invocation on a few threads and returns the ones that broke a promise.
/// Values no command can use as a file: a command given one must end by itself
/// (refusing it), not be stopped by the test, or it is reading without end.
fn unusable_file(arg: &str, dir: &Path) -> bool {
    arg == "/dev/zero"
        || arg.ends_with("big.bin")
        || arg.ends_with("missing.toml")
        || Path::new(arg) == dir
}

fn walk(invocations: Vec<Vec<String>>, dir: &Path) -> Vec<String> {
    let queue = Arc::new(Mutex::new(VecDeque::from(invocations)));
    let broken = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let queue = Arc::clone(&queue);
            let broken = Arc::clone(&broken);
            let dir = dir.to_path_buf();
            std::thread::spawn(move || loop {
                let Some(args) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                let must_end = args.iter().any(|a| unusable_file(a, &dir));
                let limit = if must_end { MUST_END_WITHIN } else { RUN_FOR };
                let o = run(args, &dir, limit);
                if must_end && o.code.is_none() {
                    broken.lock().unwrap().push(format!(
                        "powertune {:?} → still running after {limit:?}: an unusable file was not refused",
                        o.args
                    ));
                    continue;
                }
                let panicked = o.code == Some(101)
                    || o.stderr.contains("panicked")
                    || o.stderr.contains("stack backtrace");
                let many_errors = o.code == Some(1)
                    && o.stderr
                        .lines()
                        .filter(|l| l.starts_with("powertune: "))
                        .count()
                        > 1;
                if panicked || many_errors {
                    broken.lock().unwrap().push(format!(
                        "powertune {:?} → exit {:?}: {}",
                        o.args,
                        o.code,
                        o.stderr.lines().take(3).collect::<Vec<_>>().join(" | ")
                    ));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let v = broken.lock().unwrap().clone();
    v
}

#[test]
fn every_option_of_every_command_survives_extreme_values() {
    let f = fixtures();
    let bases = bases(&f);
    // Every command path the binary offers has a base invocation.
    let mut paths: Vec<Vec<String>> = Vec::new();
    for top in subcommands(&help(&[])) {
        paths.push(vec![top.clone()]);
        for sub in subcommands(&help(&[&top])) {
            paths.push(vec![top.clone(), sub]);
        }
    }
    let missing: Vec<String> = paths
        .iter()
        .map(|p| p.join(" "))
        .filter(|p| !bases.contains_key(p.as_str()))
        .collect();
    assert!(missing.is_empty(), "no base invocation for: {missing:?}");

    let file_values = [
        "/dev/zero".to_string(),
        f.path("big.bin"),
        f.path("missing.toml"),
        f.dir.path().display().to_string(),
        "/dev/null".to_string(),
    ];
    let mut invocations = Vec::new();
    for path in &paths {
        let key = path.join(" ");
        let base = &bases[key.as_str()];
        let words: Vec<&str> = path.iter().map(String::as_str).collect();
        for flag in valued_options(&help(&words)) {
            if output_option(&flag) {
                continue;
            }
            if file_option(&flag) {
                for v in &file_values {
                    invocations.push(with(base, &flag, v));
                }
            } else {
                for v in EXTREMES {
                    invocations.push(with(base, &flag, v));
                }
            }
        }
    }
    // Positional files: an oversized and an empty one.
    for (cmd, file) in [("compare", 1), ("apm analyze", 2), ("report", 1)] {
        for v in [
            f.path("big.bin"),
            "/dev/zero".to_string(),
            "/dev/null".to_string(),
        ] {
            let mut args = bases[cmd].clone();
            args[file] = v;
            invocations.push(args);
        }
    }
    let n = invocations.len();
    assert!(n > 300, "only {n} invocations: is the help parsing broken?");
    let broken = walk(invocations, f.dir.path());
    assert!(
        broken.is_empty(),
        "{} of {n} invocations broke a promise:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn every_targets_key_survives_extreme_numbers() {
    let f = fixtures();
    let o = Command::new(BIN)
        .args(["targets", "--json"])
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let keys: Vec<String> = rows
        .iter()
        .filter(|r| {
            r["value"]
                .as_str()
                .is_some_and(|v| v.parse::<f64>().is_ok())
        })
        .filter_map(|r| r["key"].as_str().map(str::to_string))
        .collect();
    assert!(keys.len() > 40, "{keys:?}");
    let values = [
        "1e20",
        "-1",
        "0",
        "nan",
        "inf",
        "1e-300",
        "18446744073709551616",
    ];
    let mut invocations = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        for (j, value) in values.iter().enumerate() {
            let file: PathBuf = f.dir.path().join(format!("t{i}-{j}.toml"));
            std::fs::write(&file, format!("{key} = {value}\n")).unwrap();
            let file = file.display().to_string();
            invocations.push(vec!["targets".into(), "--targets".into(), file.clone()]);
            invocations.push(vec![
                "apm".into(),
                "analyze".into(),
                f.path("traces.jsonl"),
                "--targets".into(),
                file.clone(),
            ]);
            invocations.push(vec![
                "db".into(),
                "--url".into(),
                f.pg.clone(),
                "--targets".into(),
                file.clone(),
            ]);
            invocations.push(vec![
                "queues".into(),
                "--url".into(),
                f.redis.clone(),
                "--targets".into(),
                file,
            ]);
        }
    }
    let n = invocations.len();
    let broken = walk(invocations, f.dir.path());
    assert!(
        broken.is_empty(),
        "{} of {n} invocations broke a promise:\n{}",
        broken.len(),
        broken.join("\n")
    );
}
