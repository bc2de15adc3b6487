//! Output files: every path a command will write is checked before the command
//! starts (nothing is measured for a report that cannot be saved), and a write that
//! fails at the end keeps the printed report and a failed run's exit code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{one_line_error, stderr, stdout};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn powertune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn traces() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../apm/tests/fixtures/powernode.jsonl")
        .display()
        .to_string()
}

/// A loopback listener that counts the connections made to it.
fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    let n = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&n);
    std::thread::spawn(move || {
        for s in l.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut s) = s {
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b);
            }
        }
    });
    (url, n)
}

#[test]
fn unwritable_output_paths_are_refused_before_the_run_starts() {
    let dir = tempfile::tempdir().unwrap();
    let missing: PathBuf = dir.path().join("no/such/dir/run.json");
    let missing = missing.to_str().unwrap();
    let (url, connections) = counting_listener();
    let t = Instant::now();
    let o = powertune(&[
        "load",
        "--url",
        &url,
        "--vus",
        "1",
        "--duration",
        "30s",
        "--json",
        missing,
    ]);
    let e = one_line_error(&o);
    assert!(e.contains("--json") && e.contains("does not exist"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(20), "the run started");
    assert_eq!(connections.load(Ordering::SeqCst), 0, "a request was sent");

    let dir_path = dir.path().to_str().unwrap();
    for args in [
        vec!["apm", "analyze", &traces(), "--save-baseline", dir_path],
        vec!["apm", "analyze", &traces(), "--json", missing],
        vec!["load", "--url", &url, "--out", &format!("json={missing}")],
    ] {
        let o = powertune(&args);
        let e = one_line_error(&o);
        assert!(e.contains("cannot write"), "{args:?}: {e}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0);
    // The check leaves nothing behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_failed_write_keeps_the_report_and_the_fail_exit_code() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let o = powertune(&["apm", "analyze", &traces(), "--json", "/dev/full"]);
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));
    assert!(stdout(&o).contains("FAIL:"), "{}", stdout(&o));
    let e = stderr(&o);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.contains("cannot write JSON report to /dev/full"), "{e}");
}
