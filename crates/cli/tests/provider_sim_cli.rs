//! `powertune provider-sim` as a real process: it serves, counts what it served,
//! drains on SIGTERM, and refuses bad configuration with one line.
// Test code: helpers outside #[test] functions may unwrap, panic and print.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::one_line_error;
use common::served::{Listens, Served, Start};
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

/// One HTTP/1.1 request on its own connection; the whole response.
fn http(addr: &str, method: &str, path: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-cli-test-key-0001\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serves_streams_counts_and_drains_on_sigterm() {
    let mut sim = Served::start(Start {
        args: &[
            "provider-sim",
            "--listen",
            "127.0.0.1:0",
            "--ttft",
            "5ms",
            "--itl",
            "1ms..2ms",
            "--output-tokens",
            "12",
            "--rpm",
            "2",
            "--seed",
            "9",
        ],
        env: &[],
        listens: Listens::OnStdout,
        open_files: None,
    });
    let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let r = http(&sim.addr, "POST", "/v1/chat/completions", body);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("x-ratelimit-limit-requests: 2"), "{r}");
    assert!(r.contains("\"completion_tokens\":12"), "{r}");
    assert!(r.contains("data: [DONE]"), "{r}");
    let _ = http(&sim.addr, "POST", "/v1/chat/completions", body);
    let r = http(&sim.addr, "POST", "/v1/chat/completions", body);
    assert!(r.starts_with("HTTP/1.1 429"), "{r}");
    assert!(r.contains("retry-after-ms: "), "{r}");
    let stats = http(&sim.addr, "GET", "/stats", "");
    assert!(stats.contains("\"rate_limited_requests\":1"), "{stats}");
    // the key is never shown whole
    assert!(
        stats.contains("sk-…0001") && !stats.contains("sk-cli-test-key-0001"),
        "{stats}"
    );
    sim.signal("-TERM");
    assert_eq!(sim.exit_within(Duration::from_secs(10)), Some(0));
    let lines = sim.lines().join("\n");
    assert!(
        lines.contains("stopped; 3 calls, 2 completed, 24 output tokens, 1 rate-limited (429)"),
        "{lines}"
    );
}

#[test]
fn bad_configuration_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.toml");
    std::fs::write(&path, "[defaults]\nttft = \"2s..1s\"\n").unwrap();
    let bin = env!("CARGO_BIN_EXE_powertune");
    let o = Command::new(bin)
        .args(["provider-sim", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let e = one_line_error(&o);
    assert!(
        e.contains("sim.toml:2:1: defaults.ttft: range `2s..1s` ends below its start"),
        "{e}"
    );
    let o = Command::new(bin)
        .args(["provider-sim", "--listen", "127.0.0.1:0", "--itl", "fast"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let o = Command::new(bin)
        .args(["provider-sim", "--listen", "10.1.2.3:0"])
        .output()
        .unwrap();
    assert!(one_line_error(&o).contains("not a loopback address"));
}
