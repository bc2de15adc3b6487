//! Installed and operated like a tool: clap's "did you mean" on the one error line,
//! completion scripts and man pages from the binary, the systemd units in
//! `deploy/systemd/` (verified by systemd-analyze, started the way their ExecStart
//! says), the Grafana dashboards in `deploy/grafana/` (every metric they query is one a
//! running gateway or target exports, and every family exported is on a dashboard),
//! service logs through `RUST_LOG`, and the Dockerfile's build context.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::served::{Listens, Served, Start};
use common::{one_line_error, stdout};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_powertune");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn has(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Keys the example gateway config names, with values that are never sent anywhere.
const FAKE_KEYS: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "sk-test-not-a-key"),
    ("ANTHROPIC_API_KEY", "sk-ant-test-not-a-key"),
];

fn example(name: &str) -> String {
    repo().join("examples").join(name).display().to_string()
}

/// `GET path` over HTTP/1.1 on loopback; the body.
fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

#[test]
fn a_missing_argument_is_named_on_the_one_error_line() {
    let out = run(&["investigate", "endpoint"]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line_error(&out);
    assert!(line.contains("not provided: <ROUTE>"), "{line}");
    assert!(line.contains("(see powertune --help)"), "{line}");
}

#[test]
fn mistyped_commands_flags_and_values_get_clap_suggestions() {
    for (args, tip) in [
        (&["lod"][..], "did you mean 'load'?"),
        (
            &["db", "--ur", "postgres://127.0.0.1:1/x"][..],
            "did you mean '--url'?",
        ),
        (&["completions", "bsh"][..], "did you mean 'bash'?"),
        (&["apm", "serv"][..], "did you mean 'serve'?"),
    ] {
        let line = one_line_error(&run(args));
        assert!(line.contains(tip), "{args:?}: {line}");
        assert!(line.contains("(see powertune --help)"), "{line}");
    }
    // Nothing close: no suggestion is made up.
    let line = one_line_error(&run(&["zzzzzz"]));
    assert!(!line.contains("did you mean"), "{line}");
}

#[test]
fn bash_completion_completes_commands_and_flags() {
    let o = run(&["completions", "bash"]);
    assert!(o.status.success());
    if !has("bash") {
        eprintln!("bash not installed: completion script not exercised");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("powertune.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    let complete = |words: &str, cword: usize| {
        let o = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _powertune powertune; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", common::stderr(&o));
        stdout(&o).lines().map(str::to_string).collect::<Vec<_>>()
    };
    let words = complete("powertune lo", 1);
    assert!(words.iter().any(|w| w == "load"), "{words:?}");
    let words = complete("powertune db --u", 2);
    assert!(words.iter().any(|w| w == "--url"), "{words:?}");
}

#[test]
fn zsh_fish_elvish_and_powershell_scripts_name_every_command() {
    let help = stdout(&run(&["--help"]));
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A command's line, not the wrapped rest of a description.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.contains(&"gateway") && commands.contains(&"man"));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let o = run(&["completions", shell]);
        assert!(o.status.success(), "{shell}");
        let script = stdout(&o);
        for c in &commands {
            assert!(script.contains(c), "{shell} script lacks {c}");
        }
    }
}

#[test]
fn man_page_on_stdout_and_one_page_per_command_in_a_dir() {
    let page = stdout(&run(&["man"]));
    assert!(page.contains(".TH powertune 1"), "{page}");
    assert!(page.contains("powertune\\-gateway(1)") || page.contains("gateway"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let o = run(&["man", "--out", out.to_str().unwrap()]);
    assert!(o.status.success());
    for name in [
        "powertune.1",
        "powertune-db.1",
        "powertune-db-explain.1",
        "powertune-apm-serve.1",
        "powertune-gateway.1",
        "powertune-gateway-status.1",
    ] {
        let text = std::fs::read_to_string(out.join(name)).unwrap();
        assert!(text.starts_with(".ie"), "{name}");
    }
    let explain = std::fs::read_to_string(out.join("powertune-db-explain.1")).unwrap();
    assert!(explain.contains("\\-\\-plan"), "{explain}");
    assert!(stdout(&o).contains("man pages written to"));
    // A path that cannot be a directory: one line, exit 1.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let line = one_line_error(&run(&["man", "--out", file.to_str().unwrap()]));
    assert!(line.contains("--out"), "{line}");
}

/// `deploy/systemd/NAME`: its lines.
fn unit(name: &str) -> String {
    std::fs::read_to_string(repo().join("deploy/systemd").join(name)).unwrap()
}

fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    line.split_whitespace().map(str::to_string).collect()
}

const UNITS: &[&str] = &[
    "powertune-gateway.service",
    "powertune-apm.service",
    "powertune-monitor.service",
];

#[test]
fn systemd_units_verify_and_are_hardened() {
    for name in UNITS {
        let text = unit(name);
        for key in [
            "DynamicUser=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=\n",
            "SystemCallFilter=@system-service",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "MemoryDenyWriteExecute=yes",
        ] {
            assert!(text.contains(key), "{name} lacks {key:?}");
        }
        assert_eq!(exec_start(&text)[0], "/usr/local/bin/powertune", "{name}");
    }
    assert!(unit("powertune-gateway.service").contains("ExecReload=/bin/kill -HUP $MAINPID"));
    if !has("systemd-analyze") {
        eprintln!("systemd-analyze not installed: units not verified");
        return;
    }
    // verify needs ExecStart's binary to exist, and man: pages to resolve.
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man");
    assert!(run(&["man", "--out", man.join("man1").to_str().unwrap()])
        .status
        .success());
    for name in UNITS {
        let mut text = unit(name).replace("/usr/local/bin/powertune", BIN);
        if !has("man") {
            text = text
                .lines()
                .filter(|l| !l.starts_with("Documentation=man:"))
                .collect::<Vec<_>>()
                .join("\n");
        }
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let o = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .env("MANPATH", &man)
            .output()
            .unwrap();
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{name}: {}",
            common::stderr(&o)
        );
        // The exposure score systemd computes from the hardening options (0 best, 10 worst).
        let o = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&path)
            .output()
            .unwrap();
        let all = format!("{}{}", stdout(&o), common::stderr(&o));
        if let Some(score) = all
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse::<f64>().ok())
        {
            assert!(score <= 2.0, "{name}: exposure {score}: {all}");
        } else {
            eprintln!("{name}: this systemd-analyze has no offline security score");
        }
    }
}

/// A unit's ExecStart as a loopback test run: the binary built here, examples/ for
/// /etc/powertune/, port 0 for every address.
fn test_command(unit_name: &str) -> Vec<String> {
    let mut args: Vec<String> = exec_start(&unit(unit_name))
        .into_iter()
        .skip(1)
        .map(|a| {
            let a = a.replace(
                "/etc/powertune/",
                &format!("{}/", example("").trim_end_matches('/')),
            );
            match a.rsplit_once(':') {
                Some((host, port)) if host == "127.0.0.1" && port.parse::<u16>().is_ok() => {
                    "127.0.0.1:0".to_string()
                }
                _ => a,
            }
        })
        .collect();
    if args[0] == "gateway" {
        args.extend(["--listen".to_string(), "127.0.0.1:0".to_string()]);
    }
    args
}

#[test]
fn each_unit_starts_reloads_and_stops_as_its_execstart_says() {
    // gateway: SIGHUP (ExecReload) re-reads the file and keeps serving; SIGTERM drains, exit 0.
    let args = test_command("powertune-gateway.service");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut gw = Served::start(Start {
        args: &argv,
        env: FAKE_KEYS,
        listens: Listens::OnStderr,
        open_files: None,
    });
    assert!(get(&gw.addr, "/metrics").contains("powertune_gateway_calls_total"));
    gw.signal("-HUP");
    let mut reloaded = Vec::new();
    for _ in 0..100 {
        reloaded.extend(gw.lines());
        if reloaded.iter().any(|l| l.contains("reload (SIGHUP)")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let line = reloaded.iter().find(|l| l.contains("reload (SIGHUP)"));
    assert!(line.is_some_and(|l| !l.contains("refused")), "{reloaded:?}");
    assert!(get(&gw.addr, "/metrics").contains("powertune_gateway_calls_total"));
    gw.signal("-TERM");
    assert_eq!(gw.exit_within(Duration::from_secs(20)), Some(0));

    let args = test_command("powertune-apm.service");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut apm = Served::start(Start {
        args: &argv,
        env: &[],
        listens: Listens::OnStderr,
        open_files: None,
    });
    assert!(get(&apm.addr, "/api/summary").starts_with('{'));
    apm.signal("-TERM");
    assert_eq!(apm.exit_within(Duration::from_secs(20)), Some(0));
}

#[test]
fn service_logs_follow_rust_log_and_can_be_json() {
    let config = example("gateway.toml");
    let mut env = FAKE_KEYS.to_vec();
    env.extend([("RUST_LOG", "info"), ("POWERTUNE_LOG_FORMAT", "json")]);
    let mut gw = Served::start(Start {
        args: &["gateway", "--config", &config, "--listen", "127.0.0.1:0"],
        env: &env,
        listens: Listens::OnStderr,
        open_files: None,
    });
    gw.signal("-TERM");
    assert_eq!(gw.exit_within(Duration::from_secs(20)), Some(0));
    std::thread::sleep(Duration::from_millis(100));
    let lines = gw.lines();
    let stopped = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "stopped")
        .unwrap_or_else(|| panic!("no JSON `stopped` event: {lines:?}"));
    assert_eq!(stopped["level"], "INFO");
    assert_eq!(stopped["service"], "gateway");
    assert_eq!(stopped["exit_code"], 0);
    assert!(stopped["timestamp"].is_string());

    // A filter tracing cannot parse, or an unknown format: one line naming the variable.
    for (k, v) in [
        ("RUST_LOG", "powertune=loudest"),
        ("POWERTUNE_LOG_FORMAT", "xml"),
    ] {
        let o = Command::new(BIN)
            .args(["gateway", "--config", &config, "--listen", "127.0.0.1:0"])
            .envs(FAKE_KEYS.iter().copied())
            .env(k, v)
            .output()
            .unwrap();
        let line = one_line_error(&o);
        assert!(line.contains(k), "{line}");
    }
}

/// Every series name a `/metrics` body exposes or can expose: sample names, plus the
/// names a family without samples would have (`_bucket`/`_sum`/`_count` for histograms).
fn exported(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            match kind {
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                "counter" if !name.ends_with("_total") => {
                    names.insert(format!("{name}_total"));
                }
                _ => {
                    names.insert(name.to_string());
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            names.insert(name.to_string());
        }
    }
    names
}

/// Metric names in a dashboard's queries (`expr` and variable queries).
fn queried(dashboard: &serde_json::Value) -> BTreeSet<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if let ("expr" | "query" | "definition", serde_json::Value::String(s)) =
                        (k.as_str(), v)
                    {
                        out.push(s.clone());
                    }
                    walk(v, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(dashboard, &mut exprs);
    let mut names = BTreeSet::new();
    for e in exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("powertune_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    names
}

/// The family of a series name (`x_bucket` → `x`, `x_total` → `x`).
fn family(name: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count", "_total"] {
        if let Some(f) = name.strip_suffix(suffix) {
            return f;
        }
    }
    name
}

fn check_dashboard(file: &str, body: &str) {
    let path = repo().join("deploy/grafana").join(file);
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(dashboard["uid"].is_string() && dashboard["panels"].as_array().unwrap().len() >= 5);
    let exported = exported(body);
    let queried = queried(&dashboard);
    assert!(!queried.is_empty(), "{file}");
    let unknown: Vec<_> = queried.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "{file} queries metrics nobody exports: {unknown:?}"
    );
    let families: BTreeSet<&str> = exported.iter().map(|n| family(n)).collect();
    let shown: BTreeSet<&str> = queried.iter().map(|n| family(n)).collect();
    let missing: Vec<_> = families.difference(&shown).collect();
    assert!(missing.is_empty(), "{file} shows none of: {missing:?}");
}

#[test]
fn grafana_dashboards_query_exactly_what_the_gateway_and_target_export() {
    let config = example("gateway.toml");
    let gw = Served::start(Start {
        args: &["gateway", "--config", &config, "--listen", "127.0.0.1:0"],
        env: FAKE_KEYS,
        listens: Listens::OnStderr,
        open_files: None,
    });
    check_dashboard("powertune-gateway.json", &get(&gw.addr, "/metrics"));

    let target = Served::start(Start {
        args: &["target", "--listen", "127.0.0.1:0"],
        env: &[],
        listens: Listens::OnStdout,
        open_files: None,
    });
    // Traffic first, so the labelled families carry samples too.
    get(&target.addr, "/health");
    check_dashboard("powertune-target.json", &get(&target.addr, "/metrics"));
}

#[test]
fn the_docker_build_context_keeps_every_file_the_build_reads() {
    let root = repo();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(dockerfile.contains("cargo build --release --locked -p powertune"));
    assert!(dockerfile.contains("COPY --from=build /out/powertune /usr/local/bin/powertune"));
    assert!(dockerfile.contains("target/release/powertune /out/powertune"));
    let last_user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap();
    assert!(!last_user.starts_with("root") && !last_user.starts_with('0'));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/powertune\"]"));

    let ignore: Vec<String> = std::fs::read_to_string(root.join(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let ignored = |rel: &str| {
        ignore.iter().any(|p| {
            if let Some(ext) = p.strip_prefix("**/*") {
                rel.ends_with(ext)
            } else {
                assert!(!p.contains('*'), "extend this matcher for {p}");
                rel == p || rel.starts_with(&format!("{p}/"))
            }
        })
    };
    assert!(ignored("target/debug/powertune") && ignored(".git/HEAD"));
    // Files pulled in at compile time: include_str!/include_bytes! in the crates' sources.
    let mut pulled = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for part in text.split("include_").skip(1) {
                        let Some(arg) = part
                            .strip_prefix("str!(\"")
                            .or_else(|| part.strip_prefix("bytes!(\""))
                        else {
                            continue;
                        };
                        let rel = arg.split('"').next().unwrap();
                        let abs = p.parent().unwrap().join(rel).canonicalize().unwrap();
                        let rel = abs
                            .strip_prefix(root.canonicalize().unwrap())
                            .unwrap()
                            .display()
                            .to_string();
                        pulled.push(rel);
                    }
                }
            }
        }
    }
    assert!(
        pulled.iter().any(|p| p == "examples/runbook.toml"),
        "{pulled:?}"
    );
    for rel in &pulled {
        assert!(
            !ignored(rel),
            ".dockerignore leaves out {rel}, which the build reads"
        );
    }
}
