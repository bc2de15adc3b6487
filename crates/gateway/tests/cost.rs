//! Prices and cost: each call's cost from its real usage (exact, in nano-dollars),
//! in the access log, `/status` and `/metrics` per route class, alias, credential and
//! client key name; unpriced models have no cost (null) and are named; a price file
//! is re-read on reload.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod cost_support;

use cost_support::*;
use powertune_gateway::Config;
use serde_json::Value;

/// The cost the log line says, checked against its own tokens at gpt-4o-mini's price.
fn exact_cost(line: &Value) -> u64 {
    let (tin, tout) = (
        line["tokens_in"].as_u64().unwrap(),
        line["tokens_out"].as_u64().unwrap(),
    );
    assert!(tin > 0 && tout > 0, "{line}");
    let want = mini_nano(tin, tout);
    let got = line["cost_usd"].as_f64().unwrap();
    assert!(
        (got - want as f64 / 1e9).abs() < 1e-15,
        "cost_usd {got} for {tin} in / {tout} out, want {want} n$: {line}"
    );
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_costs_its_usage_in_the_log_status_and_metrics() {
    let sim = sim().await;
    let s = serve(&config(&sim.url(), PRICING, "")).await;
    let c = http();
    // the same prompt in each API: system "be brief" + "say hello please" = 24
    // characters, 6 tokens in the simulator's count; five words out
    for (front, model, stream) in [
        ("openai", "latency", false),
        ("openai", "latency", true),
        ("anthropic", "fast", true),
        ("anthropic", "batch", false),
        ("ollama", "bulk", false),
    ] {
        let (st, text) = status_and_body(call(&c, &s.url, front, model, stream).await).await;
        assert_eq!(st, 200, "{front} {model}: {text}");
    }
    let lines = s.calls();
    assert_eq!(lines.len(), 5);
    let costs: Vec<u64> = lines[..4].iter().map(exact_cost).collect();
    // 6 × 150,000 p$ + 5 × 600,000 p$ = 3,900 n$ = $0.0000039 a call
    assert_eq!(costs, vec![3_900; 4]);
    // the Ollama model has no price: no cost (null, not 0)
    assert_eq!(lines[4]["cost_usd"], Value::Null, "{}", lines[4]);
    assert!(lines[4]["tokens_out"].as_u64().unwrap() > 0);

    let st = s.gw.status();
    let cost = st.cost.expect("a price table: /status has cost");
    assert_eq!(cost.total_nano_usd, 15_600);
    assert_eq!(cost.total_usd, 0.0000156);
    assert_eq!(cost.unpriced, vec!["oll:llama3".to_string()]);
    assert_eq!(cost.unpriced_attempts, 1);
    assert_eq!(cost.by_route["latency"], 0.0000078);
    assert_eq!(cost.by_route["batch"], 0.0000039);
    assert!(!cost.by_route.contains_key("bulk"), "{:?}", cost.by_route);
    // by the alias: named by the client (fast) or found through the route class
    assert_eq!(cost.by_alias["fast"], 0.0000156);
    assert_eq!(cost.by_credential["oai/main"], 0.0000156);
    // the client by its configured name, never its key
    assert_eq!(cost.by_client["web"], 0.0000156);
    let json = serde_json::to_string(&cost).unwrap();
    assert!(!json.contains(WEB_KEY), "{json}");

    let m = scrape(&c, &s.url).await;
    let series: Vec<_> = m
        .samples
        .iter()
        .filter(|x| x.metric == "powertune_gateway_cost_usd_total")
        .collect();
    let total: f64 = series.iter().map(|x| value(&x.value)).sum();
    assert!((total - 0.0000156).abs() < 1e-15, "{total}");
    let latency = series
        .iter()
        .find(|x| x.labels.get("route") == Some("latency"))
        .unwrap();
    assert!((value(&latency.value) - 0.0000078).abs() < 1e-15);
    for (k, v) in [
        ("alias", "fast"),
        ("provider", "oai"),
        ("credential", "main"),
        ("model", "gpt-4o-mini"),
        ("client", "web"),
    ] {
        assert_eq!(latency.labels.get(k), Some(v), "{k}");
    }
    let unpriced = m
        .samples
        .iter()
        .find(|x| x.metric == "powertune_gateway_unpriced_attempts_total")
        .unwrap();
    assert_eq!(value(&unpriced.value), 1.0);
}

#[tokio::test]
async fn without_a_price_table_there_is_no_cost_anywhere() {
    let sim = sim().await;
    let s = serve(&config(&sim.url(), "", "")).await;
    let c = http();
    let (st, _) = status_and_body(call(&c, &s.url, "openai", "fast", false).await).await;
    assert_eq!(st, 200);
    assert_eq!(s.calls()[0]["cost_usd"], Value::Null);
    assert!(s.gw.status().cost.is_none());
    let m = scrape(&c, &s.url).await;
    assert!(!m
        .samples
        .iter()
        .any(|x| x.metric.contains("cost_usd") || x.metric.contains("unpriced")));
}

/// Writes `prices` into the price file, then `POST /admin/reload`.
async fn reload_with(
    c: &reqwest::Client,
    url: &str,
    file: &std::path::Path,
    prices: &str,
) -> reqwest::Response {
    std::fs::write(file, prices).unwrap();
    c.post(format!("{url}/admin/reload")).send().await.unwrap()
}

#[tokio::test]
async fn a_price_file_is_read_again_on_reload() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.toml");
    std::fs::write(
        &prices,
        "\"oai:gpt-4o-mini\" = { input_per_mtok = 0.15, output_per_mtok = 0.60 }\n",
    )
    .unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "pricing_file = \"prices.toml\"\n{}",
            config(&sim.url(), "", "")
        ),
    )
    .unwrap();
    let s = serve_config(Config::load_with(&file, &|_| None).unwrap().config).await;
    s.gw.set_config_source(file.clone(), std::sync::Arc::new(|_: &str| None));
    let c = http();
    assert_eq!(
        call(&c, &s.url, "openai", "fast", false).await.status(),
        200
    );
    // ten times the price, and a price for the Ollama model
    let r = reload_with(
        &c,
        &s.url,
        &prices,
        "\"oai:gpt-4o-mini\" = { input_per_mtok = 1.5, output_per_mtok = 6 }\n\"oll:llama3\" = { input_per_mtok = 0, output_per_mtok = 0.000001 }\n",
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(
        call(&c, &s.url, "openai", "fast", false).await.status(),
        200
    );
    assert_eq!(
        call(&c, &s.url, "ollama", "cheap", false).await.status(),
        200
    );
    let lines = s.calls();
    let usd = |i: usize| lines[i]["cost_usd"].as_f64().unwrap();
    assert_eq!(usd(0), 0.0000039);
    assert_eq!(usd(1), 0.000039);
    // $0.000001 per million output tokens × 5 = 5 p$: rounds to 0 n$, a real zero
    assert_eq!(usd(2), 0.0);
    let cost = s.gw.status().cost.unwrap();
    assert!(cost.unpriced.is_empty(), "{:?}", cost.unpriced);
    assert_eq!(cost.total_nano_usd, 3_900 + 39_000);
    // a broken price file is refused with its place; the prices stay
    let r = reload_with(
        &c,
        &s.url,
        &prices,
        "\"oai:gpt-4o-mini\" = { input_per_mtok = -1, output_per_mtok = 6 }\n",
    )
    .await;
    assert_eq!(r.status(), 422);
    let e = r.text().await.unwrap();
    assert!(
        e.contains("prices.toml:1:") && e.contains("input_per_mtok"),
        "{e}"
    );
}
