//! `powertune report` and the report files every command writes (`--html`,
//! `--junit`, `--markdown`), as a CI job and a person use them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{one_line_error, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn powertune(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_powertune"));
    c.args(args)
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_STEP_SUMMARY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn traces() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../apm/tests/fixtures/powernode.jsonl")
        .display()
        .to_string()
}

/// A failing apm report written with --json, in `dir`.
fn failing_report(dir: &Path) -> String {
    let path = dir.join("apm.json").display().to_string();
    let o = powertune(&["apm", "analyze", &traces(), "--json", &path], &[]);
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));
    path
}

/// Counts the elements named `name` in an XML document, failing on malformed XML.
fn xml_count(xml: &str, name: &[u8]) -> usize {
    let mut r = quick_xml::Reader::from_str(xml);
    let mut n = 0;
    loop {
        match r.read_event().unwrap() {
            quick_xml::events::Event::Eof => return n,
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)
                if e.name().as_ref() == name =>
            {
                n += 1
            }
            _ => {}
        }
    }
}

#[test]
fn a_saved_report_becomes_html_junit_and_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let json = failing_report(dir.path());
    let html = dir.path().join("apm.html");
    let xml = dir.path().join("apm.xml");
    let md = dir.path().join("apm.md");
    let o = powertune(
        &[
            "report",
            &json,
            "--html",
            html.to_str().unwrap(),
            "--junit",
            xml.to_str().unwrap(),
            "--markdown",
            md.to_str().unwrap(),
        ],
        &[],
    );
    // The saved report's own verdict decides the exit code.
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("FAIL:"), "{out}");
    assert_eq!(
        out.trim_end().lines().last().unwrap(),
        format!("report: {}", html.display())
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("FAIL"));
    let junit = std::fs::read_to_string(&xml).unwrap();
    assert_eq!(xml_count(&junit, b"testsuite"), 1);
    assert!(xml_count(&junit, b"failure") >= 1, "{junit}");
    let summary = std::fs::read_to_string(&md).unwrap();
    assert!(summary.contains("FAIL"), "{summary}");

    // The same files straight from a command that measured.
    let url = common::ok_server();
    let html2 = dir.path().join("load.html");
    let xml2 = dir.path().join("load.xml");
    let o = powertune(
        &[
            "load",
            "--url",
            &url,
            "--vus",
            "1",
            "--duration",
            "1s",
            "-q",
            "--html",
            html2.to_str().unwrap(),
            "--junit",
            xml2.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&html2).unwrap().contains("PASS"));
    assert!(xml_count(&std::fs::read_to_string(&xml2).unwrap(), b"testcase") >= 1);
    assert!(stdout(&o)
        .trim_end()
        .ends_with(&format!("report: {}", html2.display())));
}

#[test]
fn markdown_without_a_file_appends_to_the_github_step_summary() {
    let dir = tempfile::tempdir().unwrap();
    let json = failing_report(dir.path());
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "# earlier step\n").unwrap();
    let s = summary.to_str().unwrap();
    let o = powertune(
        &["report", &json, "--markdown"],
        &[("GITHUB_STEP_SUMMARY", s)],
    );
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.starts_with("# earlier step\n"), "{text}");
    assert!(text.contains("FAIL"), "{text}");

    let o = powertune(&["report", &json, "--markdown"], &[]);
    let e = one_line_error(&o);
    assert!(e.contains("GITHUB_STEP_SUMMARY"), "{e}");
}

#[test]
fn several_reports_make_one_junit_file_with_a_suite_each() {
    let dir = tempfile::tempdir().unwrap();
    let a = failing_report(dir.path());
    let b = dir.path().join("copy.json");
    std::fs::copy(&a, &b).unwrap();
    let xml = dir.path().join("all.xml");
    let b = b.to_str().unwrap();
    let o = powertune(&["report", &a, b, "--junit", xml.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));
    assert_eq!(
        xml_count(&std::fs::read_to_string(&xml).unwrap(), b"testsuite"),
        2
    );
    let o = powertune(&["report", &a, b, "--html", "x.html"], &[]);
    assert!(one_line_error(&o).contains("take one report"));
}

#[test]
fn what_is_not_a_report_is_refused_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str, text: &str| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let cases = [
        (p("text.json", "not json"), "is not JSON"),
        (
            p("other.json", r#"{"schema":"k6.summary"}"#),
            "not a powertune.report/v2",
        ),
        (p("none.json", r#"{"a":1}"#), "no `schema` field"),
        (
            p("bad.json", r#"{"schema":"powertune.report/v2"}"#),
            "not a valid powertune.report/v2",
        ),
        (PathBuf::from("/dev/zero"), "larger than"),
        (dir.path().join("missing.json"), "cannot read report"),
    ];
    for (path, says) in cases {
        let o = powertune(&["report", path.to_str().unwrap()], &[]);
        let e = one_line_error(&o);
        assert!(e.contains(says), "{}: {e}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inspector_report_opens_in_chromium_without_errors() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("apm-analyze.html");
    let tmp = tempfile::tempdir().unwrap();
    let json = failing_report(tmp.path());
    let o = powertune(&["report", &json, "--html", html.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));
    let opened = powertune_test_support::browser::open(
        &html,
        "document.querySelectorAll('#findings tr').length",
        &dir.join("apm-analyze.png"),
    )
    .await
    .unwrap();
    assert!(opened.console.is_empty(), "{:?}", opened.console);
    assert!(opened.exceptions.is_empty(), "{:?}", opened.exceptions);
    assert!(opened.requests.is_empty(), "{:?}", opened.requests);
    assert!(opened.text.contains("FAIL"), "{}", opened.text);
    assert!(opened.text.contains("Action:"), "{}", opened.text);
    assert!(opened.probe.as_u64().unwrap() > 5, "{}", opened.probe);
}
