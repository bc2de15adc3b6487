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

mod common;

use common::served::{Listens, Served, Slowloris, Start};
use powertune_provider_sim::{ProviderSim, Script};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What the provider simulator answers in these tests.
const HELLO: &str = "Hello from the fake provider";

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
    let config = p.display().to_string();
    Served::start(Start {
        args: &["gateway", "--config", &config, "--listen", "127.0.0.1:0"],
        env: &[("GW_TEST_KEY", "sk-cli-test")],
        listens: Listens::OnStderr,
        open_files: None,
    })
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
    let fake = ProviderSim::instant(Script::text(HELLO)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gw = serve(
        dir.path(),
        &fake.url(),
        "[server]\nheader_read_timeout = \"3s\"\n",
    );
    let addr = gw.addr.clone();
    // 1,100 connections, each sending its request head one byte every 300 ms
    let slow = Slowloris::start(&addr, 1100, Duration::from_millis(300), 49);
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
    let held = slow.join().await;
    for h in held.iter().flatten() {
        assert!(*h < Duration::from_secs(8), "held {h:?}");
    }
    let cut = held.iter().filter(|h| h.is_some()).count();
    assert_eq!(cut, 1100, "every slow connection was closed by the gateway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_made_up_model_names_keep_metrics_and_memory_small() {
    let fake = ProviderSim::instant(Script::text(HELLO)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gw = serve(dir.path(), &fake.url(), "");
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
    let before = gw.memory_kib().0;
    let started = Instant::now();
    send(20_000, "random").await.unwrap();
    let took = started.elapsed();
    let after = gw.memory_kib().0;
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
    let fake = ProviderSim::instant(Script::text(HELLO)).await.unwrap();
    // eight words, 250 ms apart: a stream of about 2 s
    fake.set_script(Script {
        chunk_delay: Some("250ms".into()),
        text: Some("one two three four five six seven eight".into()),
        ..Script::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut gw = serve(
        dir.path(),
        &fake.url(),
        "[server]\ndrain_timeout = \"20s\"\n",
    );
    let addr = gw.addr.clone();
    let completed = fake.stats().totals.streams_finished;
    let (rest, code, lines) = tokio::task::spawn_blocking(move || {
        let (mut s, mut got) = start_stream(&addr);
        gw.signal("-TERM");
        assert!(
            refused_within(&addr),
            "new connections still accepted after SIGTERM"
        );
        s.read_to_string(&mut got).unwrap();
        let code = gw.exit_within(Duration::from_secs(20));
        let lines = gw.lines();
        (got, code, lines)
    })
    .await
    .unwrap();
    // the stream finished whole, after the signal
    assert!(rest.contains("eight"), "{rest}");
    assert!(rest.contains("data: [DONE]"), "{rest}");
    assert_eq!(fake.stats().totals.streams_finished, completed + 1);
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
    let fake = ProviderSim::instant(Script::text(HELLO)).await.unwrap();
    // a stream that stalls after its first chunk (the provider holds it 30 s)
    fake.set_script(Script {
        stall_after: Some(1),
        text: Some("one two three".into()),
        ..Script::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut gw = serve(
        dir.path(),
        &fake.url(),
        "[server]\ndrain_timeout = \"60s\"\n",
    );
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
        (code, t.elapsed(), gw.lines())
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
