//! `powertune apm serve` under hostile input, as a real process: its memory stays
//! bounded by configuration (read from /proc/PID/status), and what the bounds cut
//! is counted in the summary. 50,000 distinct routes, 1 MiB strings where routes,
//! names and attribute values go, and one trace of 100,000 spans whose root comes
//! last (the root is never evicted: the request stays in the report).
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

use common::served::{Listens, Served, Start};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn serve() -> Served {
    Served::start(Start {
        args: &["apm", "serve", "--listen", "127.0.0.1:0"],
        env: &[],
        listens: Listens::OnStderr,
        open_files: None,
    })
}

/// One HTTP/1.1 exchange; the status code and body.
fn exchange(addr: &str, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).to_string();
    let code = resp
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {resp}"));
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body.to_string())
}

/// Posts an OTLP/JSON body, retrying while the receiver is over capacity (503).
fn post(addr: &str, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let head = "POST /v1/traces HTTP/1.1\r\nContent-Type: application/json";
        let (code, resp) = exchange(addr, head, body.as_bytes());
        if code == 200 {
            return;
        }
        assert!(code == 503 && Instant::now() < deadline, "{code}: {resp}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn summary(addr: &str) -> serde_json::Value {
    let (code, body) = exchange(addr, "GET /api/summary HTTP/1.1", b"");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// One span as OTLP/JSON.
fn span(trace: u128, id: u64, parent: u64, kind: u8, name: &str, attrs: &[(&str, &str)]) -> String {
    let parent = if parent == 0 {
        String::new()
    } else {
        format!("{parent:016x}")
    };
    let attrs: Vec<String> = attrs
        .iter()
        .map(|(k, v)| format!(r#"{{"key":"{k}","value":{{"stringValue":"{v}"}}}}"#))
        .collect();
    format!(
        r#"{{"traceId":"{trace:032x}","spanId":"{id:016x}","parentSpanId":"{parent}","name":"{name}","kind":{kind},"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000050000000","attributes":[{}]}}"#,
        attrs.join(",")
    )
}

fn request(spans: &[String]) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

fn routes(s: &serde_json::Value) -> &Vec<serde_json::Value> {
    s["routes"].as_array().unwrap()
}

fn count_of(s: &serde_json::Value, route: &str) -> Option<u64> {
    routes(s)
        .iter()
        .find(|r| r["route"] == route)
        .and_then(|r| r["count"].as_u64())
}

/// How far above the idle receiver's RSS each hostile input may take it: what the
/// default bounds hold (statistics keys, examples, the window's open spans) plus the
/// allocator keeping freed request buffers. Without the bounds each input below
/// retains several hundred MiB.
const GROWTH_BOUND_KIB: u64 = 160 * 1024;

#[test]
fn hostile_inputs_keep_apm_serve_memory_bounded() {
    let server = serve();
    let addr = server.addr.clone();
    // Warm up (one small batch and a summary), then the idle figure.
    post(
        &addr,
        &request(&[span(1, 1, 0, 2, "GET /warm", &[("http.route", "/warm")])]),
    );
    summary(&addr);
    let (idle, _) = server.memory_kib();
    let mut figures = vec![format!("idle: VmRSS {idle} KiB")];

    // 1. One trace of 100,000 spans whose root arrives last, 1,000 spans per batch.
    let trace = 0x3000_0000u128;
    for b in 0..100u64 {
        let spans: Vec<String> = (0..1000u64)
            .map(|k| {
                span(
                    trace,
                    2 + b * 1000 + k,
                    1,
                    3,
                    "SELECT",
                    &[
                        ("db.system.name", "postgresql"),
                        ("db.query.text", "SELECT * FROM t WHERE id = 1"),
                    ],
                )
            })
            .collect();
        post(&addr, &request(&spans));
    }
    post(
        &addr,
        &request(&[span(
            trace,
            1,
            0,
            2,
            "GET /api/v1/big",
            &[
                ("http.request.method", "GET"),
                ("http.route", "/api/v1/big"),
            ],
        )]),
    );
    let s = summary(&addr);
    let (rss, hwm) = server.memory_kib();
    figures.push(format!(
        "a 100,000-span trace, root last: VmRSS {rss} KiB, VmHWM {hwm} KiB"
    ));
    assert_eq!(count_of(&s, "GET /api/v1/big"), Some(1), "{}", s["ingest"]);
    assert!(s["ingest"]["spans_dropped"].as_u64().unwrap() >= 95_000);
    assert!(rss < idle + GROWTH_BOUND_KIB, "{figures:?}");

    // 2. 1 MiB strings: a distinct 1 MiB route and span name on every request, a
    //    1 MiB statement and a 1 MiB attribute nobody reads on its child; three
    //    requests (9 MiB) per batch, 96 requests in all.
    for b in 0..32u64 {
        let spans: Vec<String> = (0..3u64)
            .flat_map(|k| {
                let n = b * 3 + k;
                let fill = char::from(b'a' + (n % 26) as u8).to_string().repeat(MIB);
                let route = format!("/big/{n}/{fill}");
                let trace = 0x2000_0000 + u128::from(n);
                [
                    span(
                        trace,
                        1,
                        0,
                        2,
                        &route,
                        &[("http.request.method", "GET"), ("http.route", &route)],
                    ),
                    span(
                        trace,
                        2,
                        1,
                        3,
                        "SELECT",
                        &[
                            ("db.system.name", "postgresql"),
                            ("db.query.text", &format!("SELECT '{fill}' FROM t")),
                            ("user.blob", &fill),
                        ],
                    ),
                ]
            })
            .collect();
        post(&addr, &request(&spans));
    }
    let s = summary(&addr);
    let (rss, hwm) = server.memory_kib();
    figures.push(format!(
        "96 requests with 1 MiB route, name, statement and attribute: VmRSS {rss} KiB, VmHWM {hwm} KiB"
    ));
    assert!(rss < idle + GROWTH_BOUND_KIB, "{figures:?}");
    for r in routes(&s) {
        let name = r["route"].as_str().unwrap();
        assert!(name.len() <= 256, "a route of {} bytes", name.len());
    }

    // 3. 50,000 distinct routes, 1,000 requests per batch.
    for b in 0..50u64 {
        let spans: Vec<String> = (0..1000u64)
            .map(|k| {
                let n = b * 1000 + k;
                let route = format!("/r/x{n}y");
                span(
                    0x1000_0000 + u128::from(n),
                    1,
                    0,
                    2,
                    "GET",
                    &[("http.request.method", "GET"), ("http.route", &route)],
                )
            })
            .collect();
        post(&addr, &request(&spans));
    }
    let s = summary(&addr);
    let (rss, hwm) = server.memory_kib();
    figures.push(format!(
        "50,000 distinct routes: VmRSS {rss} KiB, VmHWM {hwm} KiB"
    ));
    let total: u64 = routes(&s).iter().filter_map(|r| r["count"].as_u64()).sum();
    assert_eq!(
        total,
        50_000 + 1 + 1 + 96,
        "every request counted: {}",
        s["ingest"]
    );
    assert!(count_of(&s, "(other)").unwrap() >= 50_000 - 2 * 200);
    assert!(routes(&s).len() <= 2 * 201, "{}", routes(&s).len());
    assert!(s["ingest"]["keys_overflowed"].as_u64().unwrap() >= 49_000);
    assert!(rss < idle + GROWTH_BOUND_KIB, "{figures:?}");

    eprintln!("apm serve memory: {}", figures.join("; "));
}
