//! Open-loop load for `scripts/bench/gateway-overhead.sh`: POSTs a chat request at a
//! fixed rate for a fixed time, latency measured from each request's scheduled start
//! (no coordinated omission), and prints one JSON line.
//!
//!   openloop URL RATE SECONDS [MAX_IN_FLIGHT]      (OPENLOOP_STREAM=1 for streaming)
// A benchmark/demo program, not library code: it may unwrap, panic and print.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use powertune_core::LatencyHistogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: openloop URL RATE SECONDS [MAX_IN_FLIGHT]");
        std::process::exit(1);
    }
    let url = args[1].clone();
    let rate: f64 = args[2]
        .parse::<f64>()
        .unwrap_or(100.0)
        .clamp(1.0, 100_000.0);
    let secs: f64 = args[3].parse::<f64>().unwrap_or(10.0).clamp(1.0, 3600.0);
    let max_in_flight: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2000);
    // OPENLOOP_STREAM=1: streaming requests (the whole stream is read)
    let body: &'static str = if std::env::var("OPENLOOP_STREAM").is_ok_and(|v| v == "1") {
        r#"{"model":"fast","stream":true,"messages":[{"role":"user","content":"say hello"}]}"#
    } else {
        r#"{"model":"fast","messages":[{"role":"user","content":"say hello"}]}"#
    };
    // a proxy that insists on a key (LiteLLM's master key)
    let bearer = std::env::var("OPENLOOP_BEARER").unwrap_or_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"));
    let hist = Arc::new(parking_lot::Mutex::new(LatencyHistogram::new()));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut skipped = 0u64;
    let period = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * secs) as u64;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + period * i as u32;
        tokio::time::sleep_until(due).await;
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            skipped += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let auth = format!("Bearer {bearer}");
        let (c, u, h, okc, errc, inf) = (
            client.clone(),
            url.clone(),
            hist.clone(),
            ok.clone(),
            errors.clone(),
            in_flight.clone(),
        );
        tasks.spawn(async move {
            let r = c
                .post(&u)
                .header("content-type", "application/json")
                .header("authorization", auth)
                .body(body)
                .send()
                .await;
            let good = match r {
                Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
                Err(_) => false,
            };
            let took = tokio::time::Instant::now().saturating_duration_since(due);
            if good {
                okc.fetch_add(1, Ordering::Relaxed);
                h.lock().record(took);
            } else {
                errc.fetch_add(1, Ordering::Relaxed);
            }
            inf.fetch_sub(1, Ordering::Relaxed);
        });
        while tasks.try_join_next().is_some() {}
    }
    let drain_until = tokio::time::Instant::now() + Duration::from_secs(6);
    while !tasks.is_empty() && tokio::time::Instant::now() < drain_until {
        let _ = tokio::time::timeout(Duration::from_millis(100), tasks.join_next()).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let h = hist.lock();
    println!(
        "{{\"rate\":{rate},\"seconds\":{secs},\"ok\":{},\"errors\":{},\"skipped\":{skipped},\"achieved_rps\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
        ok.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        ok.load(Ordering::Relaxed) as f64 / elapsed,
        h.percentile_ms(50.0),
        h.percentile_ms(99.0),
        h.max_ms()
    );
}
