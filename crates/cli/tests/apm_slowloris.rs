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

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SLOW_CLIENTS: usize = 1_100;

/// Kills the child it holds, whatever happens in the test.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `powertune ARGS` with an open-files soft limit of 1024 and returns it
/// with the first line of `stream` (stderr for apm, stdout for the target).
fn spawn(args: &str, from_stdout: bool) -> (Server, String) {
    let cmd = format!(
        "ulimit -Sn 1024 && exec '{}' {args}",
        env!("CARGO_BIN_EXE_powertune")
    );
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null());
    if from_stdout {
        c.stdout(Stdio::piped()).stderr(Stdio::null());
    } else {
        c.stdout(Stdio::null()).stderr(Stdio::piped());
    }
    let mut child = c.spawn().unwrap();
    let stream: Box<dyn std::io::Read + Send> = if from_stdout {
        Box::new(child.stdout.take().unwrap())
    } else {
        Box::new(child.stderr.take().unwrap())
    };
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    // Keep reading, so that later lines never meet a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    (Server(child), first)
}

/// `IP:PORT` after the first `http://` in `line`.
fn addr_in(line: &str) -> String {
    line.split("http://")
        .nth(1)
        .and_then(|r| r.split(['/', ' ']).next())
        .unwrap_or_else(|| panic!("no address in: {line}"))
        .trim()
        .to_string()
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

/// 1,100 connections that send a request head one byte every 300 ms and never
/// finish it. Returns how many are connected now and a stop flag.
fn slowloris(addr: &str, stop: Arc<tokio::sync::Notify>) -> Arc<AtomicUsize> {
    let connected = Arc::new(AtomicUsize::new(0));
    for _ in 0..SLOW_CLIENTS {
        let addr = addr.to_string();
        let connected = Arc::clone(&connected);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(&addr).await else {
                return;
            };
            connected.fetch_add(1, Ordering::Relaxed);
            let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
            let mut k = 0usize;
            // At most 100 bytes (30 s); the test ends long before.
            while k < 100 {
                let byte = head.get(k).copied().unwrap_or(b'a');
                if s.write_all(&[byte]).await.is_err() {
                    break;
                }
                k += 1;
                tokio::select! {
                    _ = stop.notified() => break,
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
            }
            connected.fetch_sub(1, Ordering::Relaxed);
        });
    }
    connected
}

/// Runs the slowloris against `addr` and checks `path` answers in under 1 s, five
/// times over two seconds, while every slow connection is open.
async fn health_under_slowloris(addr: &str, path: &str) -> Vec<Duration> {
    let stop = Arc::new(tokio::sync::Notify::new());
    let connected = slowloris(addr, Arc::clone(&stop));
    let deadline = Instant::now() + Duration::from_secs(20);
    while connected.load(Ordering::Relaxed) < SLOW_CLIENTS {
        assert!(
            Instant::now() < deadline,
            "only {} slow clients connected",
            connected.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
        connected.load(Ordering::Relaxed),
        SLOW_CLIENTS,
        "the slow connections were still open during the checks"
    );
    stop.notify_waiters();
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
    let args = format!(
        "apm serve --listen 127.0.0.1:0 --config '{}'",
        cfg.display()
    );
    let (_server, first) = spawn(&args, false);
    let addr = addr_in(&first);
    let closed = slow_head_is_closed(&addr).await;
    drop(_server);
    // With the default header timeout (10 s) the slow heads stay open all along.
    let (_server, first) = spawn("apm serve --listen 127.0.0.1:0", false);
    let addr = addr_in(&first);
    let times = health_under_slowloris(&addr, "/healthz").await;
    eprintln!("apm serve: half-sent head closed after {closed:?}; /healthz under 1,100 slow connections: {times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_answers_health_under_slowloris() {
    let (_server, first) = spawn("target --listen 127.0.0.1:0 --header-read-timeout 2s", true);
    let addr = addr_in(&first);
    let closed = slow_head_is_closed(&addr).await;
    drop(_server);
    let (_server, first) = spawn("target --listen 127.0.0.1:0", true);
    let addr = addr_in(&first);
    let times = health_under_slowloris(&addr, "/health").await;
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
