//! `powertune frontend` end to end on the fixture app's real Vite builds: exit codes
//! (0 pass, 99 over budget, 1 bad input as one line), `--save-baseline` then
//! `--baseline` with per-chunk deltas in `--markdown`, `--json` and `--html`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;
#[path = "../../frontend/tests/fixture/mod.rs"]
mod fixture;

use common::{one_line_error, stdout};
use std::process::{Command, Output};

fn powertune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run powertune")
}

fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[test]
fn lazy_build_passes_then_a_heavy_one_fails_with_deltas_in_markdown() {
    let b = fixture::builds();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("main-bundle.json");
    let out = powertune(&[
        "frontend",
        "bundle",
        &s(&b.lazy),
        "--save-baseline",
        &s(&base),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("First load, largest first:"), "{text}");
    assert!(text.contains("Lazy chunks (4 files"), "{text}");
    assert!(base.is_file());

    let md = dir.path().join("pr.md");
    let json = dir.path().join("r.json");
    let html = dir.path().join("r.html");
    let out = powertune(&[
        "frontend",
        "bundle",
        &s(&b.heavy),
        "--routes",
        "src/features/*",
        "--baseline",
        &s(&base),
        "--markdown",
        &s(&md),
        "--json",
        &s(&json),
        "--html",
        &s(&html),
    ]);
    assert_eq!(out.status.code(), Some(99), "{}", stdout(&out));
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.contains("initial_bundle_gzip"), "{md}");
    assert!(md.contains("| `index.html` | changed | yes |"), "{md}");
    assert!(md.contains("**Initial load**"), "{md}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["command"], "frontend bundle");
    assert_eq!(r["verdict"], "fail");
    assert!(r["metrics"]["baseline"]["delta_gzip"].as_i64().unwrap() > 250 * 1024);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Against baseline") && page.contains("node_modules/react/"));
}

#[test]
fn a_static_route_is_named_with_its_chain_and_exits_zero() {
    let b = fixture::builds();
    let out = powertune(&["frontend", "bundle", &s(&b.static_)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("src/features/reports"), "{text}");
    assert!(
        text.contains("index.html → src/main-static.tsx → src/shell/header.tsx"),
        "{text}"
    );
}

#[test]
fn bad_input_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let e = one_line_error(&powertune(&["frontend", "bundle", &s(dir.path())]));
    assert!(e.contains("build: { manifest: true }"), "{e}");
    let e = one_line_error(&powertune(&["frontend", "bundle", "/nonexistent/dist"]));
    assert!(e.contains("not a directory"), "{e}");
    let e = one_line_error(&powertune(&[
        "frontend",
        "lcp",
        "http://127.0.0.1:1/",
        "--chromium",
        "/nonexistent/chromium",
    ]));
    assert!(e.contains("apt-get install chromium"), "{e}");
    let e = one_line_error(&powertune(&["frontend", "lcp", "ftp://x/"]));
    assert!(e.contains("http://"), "{e}");
}
