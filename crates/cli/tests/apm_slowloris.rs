//! No client can block the servers: `powertune apm serve` and `powertune target`, as
//! real processes started with an open-files soft limit of 1024 (a common default),
//! keep answering their health route in under a second while 1,100 slowloris
//! connections each send a header byte every 300 ms; and a connection that never
//! finishes its request head is closed at the header read timeout.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::served::{Listens, Served, Slowloris, Start};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SLOW_CLIENTS: usize = 1_100;

/// `powertune ARGS` started with an open-files soft limit of 1024.
fn spawn(args: &[&str], listens: Listens) -> Served {
    Served::start(Start {
        args,
        env: &[],
        listens,
        open_files: Some(1024),
    })
}

/// One GET on a fresh connection; the time to the status line and the status.
async fn timed_get(addr: &str, path: &str) -> (Duration, String) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = s.read(&mut buf[got..]).await.unwrap();
        assert!(n > 0, "closed before a status line");
        got += n;
    }
    (t.elapsed(), String::from_utf8_lossy(&buf[..12]).to_string())
}

/// Runs the slowloris against `addr` and checks `path` answers in under 1 s, five
/// times over two seconds, while every slow connection is open.
async fn health_under_slowloris(addr: &str, path: &str) -> Vec<Duration> {
    // At most 100 bytes each (30 s); the test ends long before.
    let slow = Slowloris::start(addr, SLOW_CLIENTS, Duration::from_millis(300), 100);
    slow.all_connected(Duration::from_secs(20)).await;
    // Let every slow connection be accepted and start its head.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut times = Vec::new();
    for _ in 0..5 {
        let (took, status) = tokio::time::timeout(Duration::from_secs(5), timed_get(addr, path))
            .await
            .unwrap_or_else(|_| panic!("{path} did not answer within 5 s under slowloris"));
        assert_eq!(status, "HTTP/1.1 200", "{path}");
        times.push(took);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(
        slow.connected(),
        SLOW_CLIENTS,
        "the slow connections were still open during the checks"
    );
    slow.finish().await;
    for t in &times {
        assert!(*t < Duration::from_secs(1), "{path} took {t:?}: {times:?}");
    }
    times
}

/// A connection that sends part of a head and stops is closed by the server at the
/// header read timeout (here 2 s).
async fn slow_head_is_closed(addr: &str) -> Duration {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    let took = t.elapsed();
    match r {
        Ok(Ok(_)) | Ok(Err(_)) => {}
        Err(_) => panic!("a half-sent head kept its connection for 10 s"),
    }
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apm_serve_answers_health_under_slowloris() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("apm.toml");
    std::fs::write(&cfg, "[server]\nheader_read_timeout = \"2s\"\n").unwrap();
    let cfg = cfg.display().to_string();
    let server = spawn(
        &["apm", "serve", "--listen", "127.0.0.1:0", "--config", &cfg],
        Listens::OnStderr,
    );
    let closed = slow_head_is_closed(&server.addr).await;
    drop(server);
    // With the default header timeout (10 s) the slow heads stay open all along.
    let server = spawn(
        &["apm", "serve", "--listen", "127.0.0.1:0"],
        Listens::OnStderr,
    );
    let times = health_under_slowloris(&server.addr, "/healthz").await;
    eprintln!("apm serve: half-sent head closed after {closed:?}; /healthz under 1,100 slow connections: {times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_answers_health_under_slowloris() {
    let server = spawn(
        &[
            "target",
            "--listen",
            "127.0.0.1:0",
            "--header-read-timeout",
            "2s",
        ],
        Listens::OnStdout,
    );
    let closed = slow_head_is_closed(&server.addr).await;
    drop(server);
    let server = spawn(&["target", "--listen", "127.0.0.1:0"], Listens::OnStdout);
    let times = health_under_slowloris(&server.addr, "/health").await;
    eprintln!("target: half-sent head closed after {closed:?}; /health under 1,100 slow connections: {times:?}");
}

#[test]
fn bad_limits_are_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("apm.toml");
    std::fs::write(&cfg, "[server]\nmax_connections = 0\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "apm".into(),
                "serve".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--config".into(),
                cfg.display().to_string(),
            ],
            "apm.toml:2:1: server.max_connections",
        ),
        (
            vec![
                "target".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--max-connections".into(),
                "0".into(),
            ],
            "--max-connections",
        ),
        (
            vec![
                "target".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--header-read-timeout".into(),
                "0s".into(),
            ],
            "--header-read-timeout",
        ),
    ];
    for (args, needle) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_powertune"))
            .current_dir(std::env::temp_dir())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// SIGTERM while a request is half sent: `apm serve` stops accepting, lets the
/// request finish and answer, then exits 0; the target stops with 0 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_apm_serve_and_stops_the_target_with_0() {
    let mut server = spawn(
        &["apm", "serve", "--listen", "127.0.0.1:0"],
        Listens::OnStderr,
    );
    let body = br#"{"resourceSpans":[]}"#;
    let mut s = TcpStream::connect(&server.addr).await.unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are refused while the request in flight is drained.
    assert!(TcpStream::connect(&server.addr).await.is_err());
    s.write_all(&body[5..]).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(server.exit_within(Duration::from_secs(10)), Some(0));

    let mut target = spawn(&["target", "--listen", "127.0.0.1:0"], Listens::OnStdout);
    target.signal("-TERM");
    assert_eq!(target.exit_within(Duration::from_secs(10)), Some(0));
}
