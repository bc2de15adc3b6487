//! `powertune gateway` against hostile clients and stops, the real binary on loopback:
//! a slowloris holding 1,100 connections, 20,000 made-up model names (memory), and
//! SIGTERM / a second signal while a stream is in flight.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use powertune_test_support::providers::{Behavior, FakeProvider};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_powertune");

struct Served {
    child: Child,
    addr: String,
    /// Lines of standard error after the "listening" line, read by a thread.
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits (at most `within`) for the process to exit; its exit code.
    fn exit_within(&mut self, within: Duration) -> Option<i32> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the gateway did not exit within {within:?}");
    }

    /// Standard error lines written so far.
    fn stderr_lines(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// `powertune gateway --config FILE --listen 127.0.0.1:0`, its address read from the
/// "listening" line.
fn serve(dir: &std::path::Path, provider_url: &str, extra: &str) -> Served {
    let p = dir.join("gateway.toml");
    std::fs::write(
        &p,
        format!(
            r#"
[retry]
max_retries = 0
{extra}
[[providers]]
name = "openai"
kind = "openai"
base_url = "{provider_url}/v1"
  [[providers.credentials]]
  name = "primary"
  api_key_env = "GW_TEST_KEY"
[models.fast]
targets = ["openai:gpt-4o-mini"]
"#
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["gateway", "--config"])
        .arg(&p)
        .args(["--listen", "127.0.0.1:0"])
        .env("GW_TEST_KEY", "sk-cli-test")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut before = Vec::new();
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no listening line: {before:?}"
        );
        if line.contains("listening on") {
            break line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("http://"))
                .unwrap()
                .to_string();
        }
        before.push(line);
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Served {
        child,
        addr,
        stderr: rx,
    }
}

/// A keep-alive HTTP/1.1 connection that sends requests one after another and reads
/// each response by its Content-Length.
struct Conn {
    s: BufReader<TcpStream>,
    addr: String,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            s: BufReader::new(s),
            addr: addr.to_string(),
        }
    }

    fn request(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        // one write: pieces would wait on Nagle and the delayed ACK
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.s.get_mut().write_all(req.as_bytes()).unwrap();
        let mut status = String::new();
        self.s.read_line(&mut status).unwrap();
        let code = status.split(' ').nth(1).unwrap().parse().unwrap();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            self.s.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut b = vec![0; len];
        self.s.read_exact(&mut b).unwrap();
        (code, String::from_utf8_lossy(&b).into_owned())
    }
}

fn chat_body(model: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_holding_1100_connections_does_not_block_health() {
    let fake = FakeProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = serve(
        dir.path(),
        &fake.url,
        "[server]\nheader_read_timeout = \"3s\"\n",
    );
    let addr = gw.addr.clone();
    // 1,100 connections, each sending its request head one byte every 300 ms
    let stop = tokio_util::sync::CancellationToken::new();
    let mut slow = Vec::new();
    for _ in 0..1100 {
        let addr = addr.clone();
        let stop = stop.clone();
        slow.push(tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            let started = Instant::now();
            for b in head.iter() {
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
                if s.write_all(&[*b]).await.is_err() {
                    // the server closed it
                    return Some(started.elapsed());
                }
            }
            // the whole (never ending) head was sent; see whether the server closes it
            let mut buf = [0u8; 512];
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
            Some(started.elapsed())
        }));
    }
    // let them all connect and start trickling
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for round in 0..3 {
        let a = addr.clone();
        let (took, status, body) = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let mut c = Conn::open(&a);
            let (status, body) = c.request("GET", "/health", "");
            (t.elapsed(), status, body)
        })
        .await
        .unwrap();
        assert_eq!((status, body.as_str()), (200, "ok\n"), "round {round}");
        assert!(
            took < Duration::from_secs(1),
            "/health took {took:?} with 1,100 slow connections open (round {round})"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // the slow connections are cut by the header read timeout (3 s), not held forever
    let mut cut = 0;
    for t in slow {
        if let Some(held) = t.await.unwrap() {
            assert!(held < Duration::from_secs(8), "held {held:?}");
            cut += 1;
        }
    }
    stop.cancel();
    assert_eq!(cut, 1100, "every slow connection was closed by the gateway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_made_up_model_names_keep_metrics_and_memory_small() {
    let fake = FakeProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = serve(dir.path(), &fake.url, "");
    let addr = gw.addr.clone();
    let send = |n: usize, tag: &'static str| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    let addr = addr.clone();
                    std::thread::spawn(move || {
                        let mut c = Conn::open(&addr);
                        let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (w as u64) ^ tag.len() as u64;
                        for i in 0..n / 4 {
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            let model = format!("openai:{tag}-{w}-{i}-{seed:016x}");
                            let (status, body) = c.request(
                                "POST",
                                "/v1/chat/completions",
                                &chat_body(&model, false),
                            );
                            assert_eq!(status, 200, "{body}");
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
        })
    };
    // warm up: pools, allocator arenas, the one "unknown" series
    send(400, "warm").await.unwrap();
    let before = gw.rss_kib();
    let started = Instant::now();
    send(20_000, "random").await.unwrap();
    let took = started.elapsed();
    let after = gw.rss_kib();
    let a = addr.clone();
    let metrics =
        tokio::task::spawn_blocking(move || Conn::open(&a).request("GET", "/metrics", ""))
            .await
            .unwrap()
            .1;
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("powertune_gateway_requests_total{"))
        .count();
    println!(
        "RSS before {before} KiB, after 20,000 made-up model names {after} KiB (+{} KiB) in {took:?}; /metrics {} bytes, {series} request series",
        after.saturating_sub(before),
        metrics.len()
    );
    assert!(
        !metrics.contains("random-"),
        "client model names became series"
    );
    let unknown_ok: f64 = metrics
        .lines()
        .find_map(|l| l.split_once(r#"model="unknown",outcome="ok"} "#))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or_else(|| panic!("no unknown series in {metrics}"));
    assert_eq!(unknown_ok, 20_400.0);
    assert!(series <= 10, "{series} series");
    assert!(
        metrics.len() < 64 << 10,
        "/metrics is {} bytes",
        metrics.len()
    );
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

/// Sends a streamed chat call on a new connection and returns it once the first
/// content chunk has arrived (the stream is committed).
fn start_stream(addr: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = chat_body("fast", true);
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.contains("\"content\"") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    (s, got)
}

/// Polls (at most 5 s) until a new connection to `addr` is refused.
fn refused_within(addr: &str) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_stream_refuses_new_connections_and_exits_0() {
    let fake = FakeProvider::start().await;
    // eight words, 250 ms apart: a stream of about 2 s
    fake.set(Behavior {
        chunk_delay: Duration::from_millis(250),
        text: "one two three four five six seven eight".into(),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut gw = serve(dir.path(), &fake.url, "[server]\ndrain_timeout = \"20s\"\n");
    let addr = gw.addr.clone();
    let completed = fake.completed_streams();
    let (rest, code, lines) = tokio::task::spawn_blocking(move || {
        let (mut s, mut got) = start_stream(&addr);
        gw.signal("-TERM");
        assert!(
            refused_within(&addr),
            "new connections still accepted after SIGTERM"
        );
        s.read_to_string(&mut got).unwrap();
        let code = gw.exit_within(Duration::from_secs(20));
        let lines = gw.stderr_lines();
        (got, code, lines)
    })
    .await
    .unwrap();
    // the stream finished whole, after the signal
    assert!(rest.contains("eight"), "{rest}");
    assert!(rest.contains("data: [DONE]"), "{rest}");
    assert_eq!(fake.completed_streams(), completed + 1);
    assert_eq!(code, Some(0), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stopping the gateway gracefully")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_too_and_a_second_signal_stops_at_once() {
    let fake = FakeProvider::start().await;
    // a stream that stalls after its first chunk (the provider holds it 30 s)
    fake.set(Behavior {
        stall_after: Some(1),
        text: "one two three".into(),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut gw = serve(dir.path(), &fake.url, "[server]\ndrain_timeout = \"60s\"\n");
    let addr = gw.addr.clone();
    let (code, took, lines) = tokio::task::spawn_blocking(move || {
        let (_s, _) = start_stream(&addr);
        gw.signal("-INT");
        assert!(
            refused_within(&addr),
            "new connections still accepted after SIGINT"
        );
        // still draining: the stalled stream holds it open
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            gw.child.try_wait().unwrap().is_none(),
            "stopped before the drain"
        );
        let t = Instant::now();
        gw.signal("-TERM");
        let code = gw.exit_within(Duration::from_secs(10));
        (code, t.elapsed(), gw.stderr_lines())
    })
    .await
    .unwrap();
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} after the second signal"
    );
    assert_eq!(code, Some(105), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("connections were cut")),
        "{lines:?}"
    );
}
