//! Ingest benchmark for `powertune apm` (driven by scripts/bench/apm-ingest.sh).
//!
//! `apm_ingest inprocess SECONDS` — one thread decodes OTLP protobuf batches and feeds
//! the analysis engine (everything on: trace assembly, breakdown, detectors, rolling
//! histograms); prints spans/s and the process RSS.
//! `apm_ingest serve ADDR SECONDS SAMPLE_SECS` — the receiver alone, on ONE thread
//! (HTTP, decoding and analysis share it): prints `listening http://ADDR`, then every
//! SAMPLE_SECS a line `sample t=.. spans=.. cpu_s=.. rss_kib=..` (its own CPU time from
//! /proc/self/stat, spans from its own /api/summary), and a final `receiver ...` line
//! when SECONDS have passed or on SIGTERM/SIGINT. `APM_RETAIN=3m` shortens the
//! statistics window (default 15m).
//! `apm_ingest send URL SECONDS CONNECTIONS RATE [MAX_BATCHES]` — posts protobuf
//! batches to a receiver (RATE spans/s in total, 0 = as fast as accepted), at most
//! MAX_BATCHES batches; prints the accepted spans/s and the refused batches.
//! `apm_ingest serve-load SECONDS CONNECTIONS RATE` — both in one process (the
//! session-1 figure; kept for comparison).
//! Batches: 50 traces × 10 spans (a request with 6 SQL spans of which 5 are an N+1,
//! an outgoing HTTP call, a provider call, an internal span), over 40 routes.
// A benchmark/demo program, not library code: it may unwrap, panic and print.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use powertune_apm::{Engine, EngineConfig};
use prost::Message;
use std::time::{Duration, Instant};

fn kv(k: &str, v: String) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    }
}

const SPANS_PER_BATCH: u64 = 500;

fn batch(seq: u64) -> Vec<u8> {
    let mut spans = Vec::with_capacity(SPANS_PER_BATCH as usize);
    let base = 1_700_000_000_000_000_000u64;
    for t in 0..50u64 {
        let tid = ((seq * 50 + t + 1) as u128).to_be_bytes().to_vec();
        let route = format!("/api/v1/things{}/:id", (seq + t) % 40);
        let mut sp =
            |id: u64, parent: u64, kind: i32, name: &str, s: u64, e: u64, attrs: Vec<KeyValue>| {
                spans.push(Span {
                    trace_id: tid.clone(),
                    span_id: id.to_be_bytes().to_vec(),
                    parent_span_id: if parent == 0 {
                        vec![]
                    } else {
                        parent.to_be_bytes().to_vec()
                    },
                    name: name.into(),
                    kind,
                    start_time_unix_nano: base + s * 1_000_000,
                    end_time_unix_nano: base + e * 1_000_000,
                    attributes: attrs,
                    ..Default::default()
                })
            };
        sp(
            1,
            0,
            2,
            "GET",
            0,
            120,
            vec![
                kv("http.request.method", "GET".into()),
                kv("http.route", route.clone()),
            ],
        );
        sp(2, 1, 1, "ThingsController#show", 1, 110, vec![]);
        sp(
            3,
            2,
            3,
            "SELECT",
            2,
            6,
            vec![
                kv("db.system.name", "postgresql".into()),
                kv(
                    "db.query.text",
                    format!("SELECT * FROM things WHERE id = {t}"),
                ),
            ],
        );
        for k in 0..5u64 {
            sp(
                4 + k,
                2,
                3,
                "SELECT",
                10 + k * 12,
                20 + k * 12,
                vec![
                    kv("db.system.name", "postgresql".into()),
                    kv(
                        "db.query.text",
                        format!("SELECT * FROM parts WHERE thing_id = {k}"),
                    ),
                ],
            );
        }
        sp(
            9,
            2,
            3,
            "GET",
            70,
            90,
            vec![
                kv("http.request.method", "GET".into()),
                kv("server.address", "vault.internal".into()),
            ],
        );
        sp(
            10,
            2,
            3,
            "chat",
            90,
            105,
            vec![
                kv("gen_ai.provider.name", "openai".into()),
                kv("gen_ai.request.model", "gpt-4o-mini".into()),
            ],
        );
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// A batch encoded once, with the byte offsets of every trace id in it, so that the
/// sender makes a batch of new traces with one copy and 500 × 16-byte patches: the
/// sender stays cheap and the receiver is what is measured.
struct Template {
    bytes: Vec<u8>,
    /// (offset of a trace id, trace index within the batch)
    ids: Vec<(usize, u64)>,
}

impl Template {
    fn new() -> Template {
        let bytes = batch(0);
        let mut ids = Vec::new();
        for t in 0..50u64 {
            // trace_id is field 1 of Span, 16 bytes: tag 0x0a, length 0x10.
            let mut pat = vec![0x0a, 0x10];
            pat.extend_from_slice(&((t + 1) as u128).to_be_bytes());
            let mut from = 0;
            while let Some(p) = bytes[from..].windows(pat.len()).position(|w| w == pat) {
                ids.push((from + p + 2, t));
                from += p + pat.len();
            }
        }
        Template { bytes, ids }
    }

    fn batch(&self, seq: u64) -> Vec<u8> {
        let mut b = self.bytes.clone();
        for &(at, t) in &self.ids {
            b[at..at + 16].copy_from_slice(&((seq * 50 + t + 1) as u128).to_be_bytes());
        }
        b
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn inprocess(seconds: u64) {
    let mut engine = Engine::new(EngineConfig::defaults(&powertune_core::Targets::default()));
    // Pre-encode a ring of batches so encoding is not measured; ids stay unique per
    // round because the engine analyses each trace once its root arrived.
    let ring: Vec<Vec<u8>> = (0..64).map(batch).collect();
    let start = Instant::now();
    let mut spans = 0u64;
    let mut i = 0usize;
    let mut next_report = Duration::from_secs(10);
    while start.elapsed() < Duration::from_secs(seconds) {
        // The receiver's protobuf path: read in place (crate::wire).
        let (mut s, mut bad) = (Vec::new(), Vec::new());
        let _ = powertune_apm::wire::read_request(&ring[i % ring.len()], &mut s, &mut bad);
        spans += s.len() as u64;
        let now = start.elapsed().as_nanos() as u64;
        engine.ingest(s, now);
        // Every batch holds complete traces; analyse them as the receiver would.
        engine.flush_rooted(now);
        i += 1;
        if start.elapsed() >= next_report {
            println!(
                "t={:>4}s spans={spans} rss_kib={}",
                next_report.as_secs(),
                rss_kib()
            );
            next_report += Duration::from_secs(10);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let s = engine.summary(start.elapsed().as_nanos() as u64, None);
    println!(
        "inprocess: {spans} spans in {secs:.1}s = {:.0} spans/s on one thread; traces analysed {}; rss {} KiB; routes {}",
        spans as f64 / secs,
        s.ingest.traces_analyzed,
        rss_kib(),
        s.routes.len()
    );
}

fn serve_load(seconds: u64, conns: u64, rate: u64) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(_) => return,
        };
        rt.block_on(async move {
            let cfg = powertune_apm::server::ServeConfig::new(([127, 0, 0, 1], 0).into());
            let engine = Engine::new(EngineConfig::defaults(&powertune_core::Targets::default()));
            match powertune_apm::server::start(cfg, engine).await {
                Ok(run) => {
                    let _ = tx.send(run.http_addr);
                    run.wait().await;
                }
                Err(e) => eprintln!("{e}"),
            }
        });
    });
    let Ok(addr) = rx.recv() else { return };
    let url = format!("http://{addr}");
    let sampler = std::thread::spawn(move || {
        for k in 1..=seconds / 10 {
            std::thread::sleep(Duration::from_secs(10));
            println!(
                "t={:>4}s rss_kib={} (receiver + load generator)",
                k * 10,
                rss_kib()
            );
        }
    });
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        rt.block_on(http(url.clone(), seconds, conns, rate));
        rt.block_on(async {
            if let Ok(r) = reqwest::get(format!("{url}/api/summary")).await {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    println!("receiver ingest: {}", v["ingest"]);
                }
            }
        });
    }
    let _ = sampler.join();
    println!("rss at end: {} KiB", rss_kib());
}

/// User + system CPU seconds of this process.
fn cpu_s() -> f64 {
    // Fields 14 and 15 of /proc/self/stat, after the `(comm)` field.
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let u: u64 = f.get(11)?.parse().ok()?;
            let k: u64 = f.get(12)?.parse().ok()?;
            Some(u + k)
        })
        .unwrap_or(0);
    ticks as f64 / 100.0
}

async fn own_spans(client: &reqwest::Client, url: &str) -> u64 {
    match client.get(format!("{url}/api/summary")).send().await {
        Ok(r) => r
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["ingest"]["spans_received"].as_u64())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

fn serve(addr: std::net::SocketAddr, seconds: u64, sample: u64) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return eprintln!("{e}"),
    };
    rt.block_on(async move {
        let cfg = powertune_apm::server::ServeConfig::new(addr);
        let mut ec = EngineConfig::defaults(&powertune_core::Targets::default());
        // APM_RETAIN=3m: a shorter statistics window than the default 15m, so that a
        // soak shorter than 15 minutes reaches the steady state (same 15 buckets).
        if let Ok(r) = std::env::var("APM_RETAIN") {
            match powertune_core::duration::parse(&r) {
                Ok(d) if d.as_secs() >= u64::from(ec.buckets) => {
                    ec.bucket_ns = d.as_nanos() as u64 / u64::from(ec.buckets);
                }
                _ => {
                    return eprintln!("APM_RETAIN={r}: expected a duration of 15s or more, like 3m")
                }
            }
        }
        println!(
            "window {} s in {} buckets",
            ec.bucket_ns * u64::from(ec.buckets) / 1_000_000_000,
            ec.buckets
        );
        let engine = Engine::new(ec);
        let run = match powertune_apm::server::start(cfg, engine).await {
            Ok(r) => r,
            Err(e) => return eprintln!("{e}"),
        };
        let url = format!("http://{}", run.http_addr);
        println!("listening {url}");
        let client = reqwest::Client::new();
        let start = Instant::now();
        let (cpu0, rss0) = (cpu_s(), rss_kib());
        println!("sample t=0 spans=0 cpu_s=0.00 rss_kib={rss0}");
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => return eprintln!("{e}"),
            };
        let mut tick = tokio::time::interval(Duration::from_secs(sample.max(1)));
        tick.tick().await;
        let end = tokio::time::sleep(Duration::from_secs(seconds));
        tokio::pin!(end);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let spans = own_spans(&client, &url).await;
                    println!(
                        "sample t={} spans={spans} cpu_s={:.2} rss_kib={}",
                        start.elapsed().as_secs(),
                        cpu_s() - cpu0,
                        rss_kib()
                    );
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = &mut end => break,
            }
        }
        let spans = own_spans(&client, &url).await;
        let cpu = cpu_s() - cpu0;
        println!(
            "receiver spans={spans} cpu_s={cpu:.2} spans_per_cpu_s={:.0} rss_kib={} wall_s={:.1}",
            spans as f64 / cpu.max(0.01),
            rss_kib(),
            start.elapsed().as_secs_f64()
        );
        run.stop();
    });
}

async fn http(url: String, seconds: u64, conns: u64, rate: u64) {
    send(url, seconds, conns, rate, u64::MAX).await
}

async fn send(url: String, seconds: u64, conns: u64, rate: u64, max_batches: u64) {
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let client = reqwest::Client::new();
    let target = format!("{}/v1/traces", url.trim_end_matches('/'));
    let tpl = std::sync::Arc::new(Template::new());
    if tpl.ids.len() != SPANS_PER_BATCH as usize {
        eprintln!(
            "template: found {} trace ids, expected {SPANS_PER_BATCH}",
            tpl.ids.len()
        );
        return;
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let client = client.clone();
        let target = target.clone();
        let sent = sent.clone();
        let tpl = tpl.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut busy, mut seq) = (0u64, 0u64, c * 1_000_000);
            // Per-connection pacing: RATE/conns spans per second.
            let per_batch = if rate == 0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(SPANS_PER_BATCH as f64 * conns as f64 / rate as f64)
            };
            let mut next = Instant::now();
            while start.elapsed() < Duration::from_secs(seconds)
                && sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < max_batches
            {
                seq += 1;
                let body = tpl.batch(seq);
                match client
                    .post(&target)
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => ok += 1,
                    Ok(r) if r.status().as_u16() == 503 => busy += 1,
                    _ => busy += 1,
                }
                if !per_batch.is_zero() {
                    next += per_batch;
                    tokio::time::sleep_until(next.into()).await;
                }
            }
            (ok, busy)
        }));
    }
    let (mut ok, mut busy) = (0, 0);
    for t in tasks {
        if let Ok((o, b)) = t.await {
            ok += o;
            busy += b;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "http: {} spans accepted in {secs:.1}s = {:.0} spans/s; {busy} batches refused (503) or failed",
        ok * SPANS_PER_BATCH,
        (ok * SPANS_PER_BATCH) as f64 / secs
    );
    // What the receiver says it received (after analysing what it holds).
    println!(
        "receiver_spans={}",
        own_spans(&client, url.trim_end_matches('/')).await
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, d: u64| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    match args.get(1).map(String::as_str) {
        Some("inprocess") => inprocess(num(2, 10).min(3600)),
        Some("http") => {
            let url = args
                .get(2)
                .cloned()
                .unwrap_or_else(|| "http://127.0.0.1:4318".into());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(http(url, num(3, 10).min(3600), num(4, 4).max(1), num(5, 0)));
            }
        }
        Some("serve") => {
            let addr = args
                .get(2)
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| ([127, 0, 0, 1], 4318).into());
            serve(addr, num(3, 60).min(3600), num(4, 10))
        }
        Some("send") => {
            let url = args
                .get(2)
                .cloned()
                .unwrap_or_else(|| "http://127.0.0.1:4318".into());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(send(
                    url,
                    num(3, 10).min(3600),
                    num(4, 4).max(1),
                    num(5, 0),
                    num(6, u64::MAX),
                ));
            }
        }
        Some("serve-load") => serve_load(num(2, 10).min(3600), num(3, 4).max(1), num(4, 0)),
        _ => eprintln!(
            "usage: apm_ingest inprocess SECONDS | serve ADDR SECONDS SAMPLE_SECS | send URL SECONDS CONNECTIONS RATE [MAX_BATCHES] | serve-load SECONDS CONNECTIONS RATE | http URL SECONDS CONNECTIONS RATE"
        ),
    }
}
