//! The configured distributions, measured by a plain client: TTFT and inter-token
//! medians of many streamed calls within 5% of the configured medians.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_ttft_and_itl_medians_are_the_configured_ones() {
    let s = sim(r#"
seed = 11
[models.uniform]
ttft = "200ms..400ms"
itl = "20ms..45ms"
output_tokens = 20
[models.lognormal]
ttft = "p50=300ms,p99=600ms"
itl = "p50=30ms,p99=60ms"
output_tokens = 20
"#)
    .await;
    let c = client();
    for (model, ttft_p50, itl_p50) in [("uniform", 0.300, 0.0325), ("lognormal", 0.300, 0.030)] {
        // 10 clients, each 15 calls one after another on its kept-alive connection
        // (few at once: the medians measure the simulator, not a crowded scheduler)
        let (clients, each) = (10, 15);
        let calls = (clients * each) as u64;
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (c, url) = (c.clone(), s.url());
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..each {
                    got.push(post(&c, &url, "/v1/chat/completions", "k", &chat(model, true)).await);
                }
                got
            }));
        }
        let mut ttft = Vec::new();
        let mut itl = Vec::new();
        for t in tasks {
            for r in t.await.unwrap() {
                let times = r.content_times();
                assert_eq!(times.len(), 20);
                ttft.push(times[0].as_secs_f64());
                itl.extend(times.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()));
            }
        }
        let (t, i) = (median(ttft), median(itl));
        println!("{model}: ttft p50 {t:.4}s (configured {ttft_p50}s), itl p50 {i:.4}s (configured {itl_p50}s)");
        assert!((t / ttft_p50 - 1.0).abs() < 0.05, "{model}: ttft p50 {t}");
        assert!((i / itl_p50 - 1.0).abs() < 0.05, "{model}: itl p50 {i}");
        let st = s.stats();
        assert_eq!(st.get("***", model).unwrap().output_tokens, 20 * calls);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_scale_shortens_every_latency() {
    let s =
        sim("time_scale = 0.1\n[defaults]\nttft = \"1s\"\nitl = \"100ms\"\noutput_tokens = 5\n")
            .await;
    let r = post(
        &client(),
        &s.url(),
        "/v1/chat/completions",
        "k",
        &chat("m", true),
    )
    .await;
    let t = r.content_times();
    assert!(
        t[0].as_secs_f64() >= 0.1 && t[0].as_secs_f64() < 0.5,
        "{t:?}"
    );
    assert!(
        t[4].as_secs_f64() >= 0.14 && t[4].as_secs_f64() < 0.9,
        "{t:?}"
    );
}
