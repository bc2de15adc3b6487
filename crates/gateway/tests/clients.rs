//! Safe to run as a service: client keys (401 in each API's shape, route and model
//! limits, rpm), the access log (a line per call, per breaker transition, per
//! credential disabled or enabled; no secret in any), and `/metrics` read by a
//! Prometheus text parser.
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

use common::*;
use powertune_gateway::config::key_hash;
use powertune_gateway::{Config, EventLog, Gateway};
use powertune_provider_sim::{ProviderSim, SimConfig, SimHandle};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WEB_KEY: &str = "pt-web-3f9a1c77e0b24d51";
const BATCH_KEY: &str = "pt-batch-8d02e6b1a9c4f713";
const PROMPT: &str = "say hello please";

async fn sim() -> SimHandle {
    let cfg = SimConfig::from_toml(
        "sim.toml",
        "[defaults]\nttft = \"1ms..2ms\"\nitl = \"0ms..1ms\"\noutput_tokens = \"3..6\"\n",
    )
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ProviderSim::start(cfg, l).await.unwrap()
}

/// Three providers on `url`, two route classes, and two client keys: `web` (by hash,
/// latency only) and `batch` (from the environment, batch only, 3 rpm).
fn config(url: &str, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
[timeouts]
connect = "2s"
first_token = "5s"
idle = "5s"
request = "20s"
[retry]
base = "1ms"
max = "5ms"
[[providers]]
name = "oai"
kind = "openai"
base_url = "{url}/v1"
  [[providers.credentials]]
  name = "main"
  api_key_env = "FAKE_KEY_1"
[[providers]]
name = "ant"
kind = "anthropic"
base_url = "{url}"
  [[providers.credentials]]
  name = "main"
  api_key_env = "FAKE_KEY_2"
[[providers]]
name = "oll"
kind = "ollama"
base_url = "{url}"
[models.fast]
targets = ["oai:gpt-4o-mini"]
[models.cheap]
targets = ["oll:llama3"]
[routes]
latency = ["fast"]
batch = ["cheap"]
[[clients]]
name = "web"
key_sha256 = "{web}"
routes = ["latency"]
[[clients]]
name = "batch-jobs"
key_env = "BATCH_CLIENT_KEY"
routes = ["batch"]
rpm = 3
{extra}"#,
        web = hex(&key_hash(WEB_KEY)),
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn env_with_clients(k: &str) -> Option<String> {
    match k {
        "BATCH_CLIENT_KEY" => Some(BATCH_KEY.into()),
        _ => env(k),
    }
}

/// An in-memory access log the test reads back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self, gw: &Gateway) -> String {
        assert!(gw.flush_event_log(Duration::from_secs(5)));
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
    fn lines(&self, gw: &Gateway) -> Vec<Value> {
        self.text(gw)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

struct Served {
    url: String,
    gw: Arc<Gateway>,
    log: Captured,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(toml: &str) -> Served {
    let cfg = Config::from_toml(toml, "test.toml", &env_with_clients)
        .unwrap()
        .config;
    let gw = Gateway::new(cfg, Arc::new(powertune_gateway::TokioClock)).unwrap();
    let log = Captured::default();
    gw.set_event_log(EventLog::new(Box::new(log.clone()), 1024).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let g = gw.clone();
    let task = tokio::spawn(async move {
        let _ = g.serve(listener, Default::default()).await;
    });
    Served { url, gw, log, task }
}

/// The status of one call.
async fn code(
    c: &reqwest::Client,
    url: &str,
    front: &str,
    model: &str,
    key: Option<(&str, &str)>,
) -> u16 {
    call(c, url, front, model, key).await.status().as_u16()
}

async fn call(
    c: &reqwest::Client,
    url: &str,
    front: &str,
    model: &str,
    key: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut req = c
        .post(format!("{url}{}", path(front)))
        .json(&body(front, model, false));
    if let Some((header, value)) = key {
        req = req.header(header, value);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_each_apis_own_401_and_a_right_one_goes_through() {
    let sim = sim().await;
    let s = serve(&config(&sim.url(), "")).await;
    let c = http();
    let bearer = format!("Bearer {WEB_KEY}");
    let wrong = "Bearer pt-web-not-the-key-0000";
    for (front, key) in [
        ("openai", None),
        ("anthropic", None),
        ("ollama", None),
        ("openai", Some(("authorization", wrong))),
        ("anthropic", Some(("x-api-key", "pt-web-not-the-key-0000"))),
        ("ollama", Some(("authorization", wrong))),
    ] {
        let resp = call(&c, &s.url, front, "latency", key).await;
        assert_eq!(resp.status(), 401, "{front} {key:?}");
        let text = resp.text().await.unwrap();
        assert!(!text.contains("not-the-key"), "the key is echoed: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        match front {
            "openai" => {
                assert_eq!(v["error"]["type"], "authentication_error", "{v}");
                assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
            }
            "anthropic" => {
                assert_eq!(v["type"], "error", "{v}");
                assert_eq!(v["error"]["type"], "authentication_error", "{v}");
            }
            _ => assert!(v["error"].as_str().unwrap().contains("key"), "{v}"),
        }
    }
    assert_eq!(sim.stats().totals.calls, 0, "nothing went upstream");
    // the right key, as each client sends it
    assert_eq!(
        code(
            &c,
            &s.url,
            "openai",
            "latency",
            Some(("authorization", &bearer))
        )
        .await,
        200
    );
    assert_eq!(
        code(
            &c,
            &s.url,
            "anthropic",
            "latency",
            Some(("x-api-key", WEB_KEY))
        )
        .await,
        200
    );
    let batch = format!("Bearer {BATCH_KEY}");
    assert_eq!(
        code(
            &c,
            &s.url,
            "ollama",
            "batch",
            Some(("authorization", &batch))
        )
        .await,
        200
    );
    // health and metrics stay open for probes and scrapers
    let h = c.get(format!("{}/health", s.url)).send().await.unwrap();
    assert_eq!(h.status(), 200);
}

#[tokio::test]
async fn a_key_limited_to_one_route_class_cannot_use_another_and_its_rpm_holds() {
    let sim = sim().await;
    let s = serve(&config(&sim.url(), "")).await;
    let c = http();
    let web = format!("Bearer {WEB_KEY}");
    // by the class as the model, by the route header, and by an alias outside any class
    let resp = call(&c, &s.url, "openai", "batch", Some(("authorization", &web))).await;
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "permission_error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may not use route class \"batch\""),
        "{v}"
    );
    let resp = c
        .post(format!("{}/v1/messages", s.url))
        .header("x-api-key", WEB_KEY)
        .header("x-powertune-route", "batch")
        .json(&body("anthropic", "fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "permission_error", "{v}");
    assert_eq!(
        code(&c, &s.url, "openai", "fast", Some(("authorization", &web))).await,
        403
    );
    assert_eq!(sim.stats().totals.calls, 0);

    // batch-jobs: 3 rpm; the 4th call within the minute is the client's 429
    let batch = format!("Bearer {BATCH_KEY}");
    for i in 0..3 {
        assert_eq!(
            code(
                &c,
                &s.url,
                "openai",
                "batch",
                Some(("authorization", &batch))
            )
            .await,
            200,
            "call {i}"
        );
    }
    let resp = call(
        &c,
        &s.url,
        "openai",
        "batch",
        Some(("authorization", &batch)),
    )
    .await;
    assert_eq!(resp.status(), 429);
    let ra: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&ra), "{ra}");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert_eq!(sim.stats().totals.calls, 3);
}

#[tokio::test]
async fn the_access_log_has_a_line_per_call_and_no_secret() {
    let sim = sim().await;
    let s = serve(&config(&sim.url(), "")).await;
    let c = http();
    let web = format!("Bearer {WEB_KEY}");
    assert_eq!(
        code(
            &c,
            &s.url,
            "openai",
            "latency",
            Some(("authorization", &web))
        )
        .await,
        200
    );
    // a stream: its line is written when it ends, with its tokens and TTFT
    let resp = c
        .post(format!("{}/v1/chat/completions", s.url))
        .header("authorization", &web)
        .json(&body("openai", "latency", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let streamed = resp.text().await.unwrap();
    assert!(streamed.contains("[DONE]"));
    assert_eq!(
        code(
            &c,
            &s.url,
            "openai",
            "latency",
            Some(("authorization", "Bearer nope-123"))
        )
        .await,
        401
    );
    assert_eq!(
        code(&c, &s.url, "openai", "batch", Some(("authorization", &web))).await,
        403
    );

    let text = s.log.text(&s.gw);
    for secret in [
        WEB_KEY, BATCH_KEY, "sk-one", "sk-two", "nope-123", PROMPT, "be brief",
    ] {
        assert!(!text.contains(secret), "{secret:?} in the log:\n{text}");
    }
    let lines = s.log.lines(&s.gw);
    let calls: Vec<&Value> = lines.iter().filter(|l| l["event"] == "call").collect();
    assert_eq!(calls.len(), 4, "{text}");
    let ok = calls[0];
    assert_eq!(ok["client"], "web");
    assert_eq!(ok["route"], "latency");
    assert_eq!(ok["model"], "latency");
    assert_eq!(ok["provider"], "oai");
    assert_eq!(ok["credential"], "main");
    assert_eq!(ok["attempts"], 1);
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["outcome"], "ok");
    assert!(ok["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(ok["tokens_out"].as_u64().unwrap() >= 3, "{ok}");
    assert!(ok["time"].as_str().unwrap().ends_with('Z'));
    let stream = calls[1];
    assert_eq!(stream["status"], 200);
    assert!(stream["ttft_ms"].as_f64().unwrap() > 0.0, "{stream}");
    assert!(stream["tokens_out"].as_u64().unwrap() >= 3, "{stream}");
    assert_eq!(calls[2]["status"], 401);
    assert_eq!(calls[2]["client"], Value::Null);
    assert_eq!(calls[2]["provider"], Value::Null);
    assert_eq!(calls[3]["status"], 403);
    assert_eq!(calls[3]["client"], "web");
    assert_eq!(calls[3]["attempts"], 0);
}

#[tokio::test]
async fn breaker_transitions_and_a_disabled_credential_each_get_a_line() {
    let fake = provider().await;
    fake.set_script(Script::status(500)).unwrap();
    let toml = three_kinds(&fake.url())
        .retries(0)
        .raw("[breaker]\nfailure_threshold = 2\nrecovery = \"50ms\"\n")
        .toml();
    let s = serve(&toml).await;
    let c = http();
    for _ in 0..2 {
        assert_eq!(code(&c, &s.url, "openai", "fast", None).await, 502);
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    fake.set_script(hello()).unwrap();
    assert_eq!(code(&c, &s.url, "openai", "fast", None).await, 200);
    // a 401 disables the credential; a reload enables it again
    fake.set_script(Script::status(401)).unwrap();
    assert_eq!(code(&c, &s.url, "openai", "fast", None).await, 502);
    let cfg = Config::from_toml(&toml, "test.toml", &env).unwrap().config;
    assert_eq!(s.gw.reload(cfg).reenabled, 1);

    let lines = s.log.lines(&s.gw);
    let events: Vec<(String, String, String, String)> = lines
        .iter()
        .filter(|l| l["event"] != "call")
        .map(|l| {
            assert_eq!(l["provider"], "oai", "{l}");
            assert_eq!(l["credential"], "main", "{l}");
            (
                l["event"].as_str().unwrap().into(),
                l["from"].as_str().unwrap().into(),
                l["to"].as_str().unwrap().into(),
                l["cause"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("breaker", "closed", "open", "server_error"),
        ("breaker", "open", "half_open", "probe"),
        ("breaker", "half_open", "closed", "ok"),
        ("credential_disabled", "closed", "disabled", "auth_failed"),
        ("credential_enabled", "disabled", "closed", "reload"),
    ]
    .map(|(a, b, c, d)| (a.into(), b.into(), c.into(), d.into()));
    assert_eq!(events, want);
    let opened = lines.iter().find(|l| l["to"] == "open").unwrap();
    assert_eq!(opened["consecutive_failures"], 2);
    assert_eq!(lines.iter().filter(|l| l["event"] == "call").count(), 4);
}

type Scrape = prometheus_parse::Scrape;

async fn scrape(c: &reqwest::Client, url: &str) -> Scrape {
    let text = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn samples<'a>(s: &'a Scrape, name: &str) -> Vec<&'a prometheus_parse::Sample> {
    s.samples.iter().filter(|x| x.metric == name).collect()
}

fn value(v: &prometheus_parse::Value) -> f64 {
    match v {
        prometheus_parse::Value::Counter(x)
        | prometheus_parse::Value::Gauge(x)
        | prometheus_parse::Value::Untyped(x) => *x,
        other => panic!("not a number: {other:?}"),
    }
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_histograms_aggregate() {
    let sim = sim().await;
    let s = serve(&config(&sim.url(), "")).await;
    let c = http();
    let web = format!("Bearer {WEB_KEY}");
    let batch = format!("Bearer {BATCH_KEY}");
    for _ in 0..3 {
        assert_eq!(
            code(
                &c,
                &s.url,
                "openai",
                "latency",
                Some(("authorization", &web))
            )
            .await,
            200
        );
    }
    assert_eq!(
        code(
            &c,
            &s.url,
            "ollama",
            "batch",
            Some(("authorization", &batch))
        )
        .await,
        200
    );
    assert_eq!(
        code(&c, &s.url, "openai", "batch", Some(("authorization", &web))).await,
        403
    );
    assert_eq!(code(&c, &s.url, "openai", "latency", None).await, 401);

    let m = scrape(&c, &s.url).await;
    let info = samples(&m, "powertune_gateway_build_info");
    assert_eq!(info.len(), 1);
    assert_eq!(
        info[0].labels.get("version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(value(&info[0].value), 1.0);

    // breaker state: one series per state, exactly one of them 1, per credential
    let states = samples(&m, "powertune_gateway_breaker_state");
    let creds: std::collections::BTreeSet<(String, String)> = states
        .iter()
        .map(|x| {
            (
                x.labels.get("provider").unwrap().to_string(),
                x.labels.get("credential").unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(creds.len(), 3, "{creds:?}");
    for (p, cr) in &creds {
        let mine: Vec<_> = states
            .iter()
            .filter(|x| {
                x.labels.get("provider") == Some(p) && x.labels.get("credential") == Some(cr)
            })
            .collect();
        assert_eq!(mine.len(), 5);
        assert_eq!(mine.iter().map(|x| value(&x.value)).sum::<f64>(), 1.0);
        let closed = mine
            .iter()
            .find(|x| x.labels.get("state") == Some("closed"))
            .unwrap();
        assert_eq!(value(&closed.value), 1.0);
    }

    // latency histograms: buckets are cumulative, +Inf = _count, and the counts of
    // every series add up to the successful upstream calls
    let hist = samples(&m, "powertune_gateway_latency_seconds");
    assert_eq!(
        hist.len(),
        2,
        "one per (provider, credential, model) with data"
    );
    let mut total = 0.0;
    for h in &hist {
        let prometheus_parse::Value::Histogram(buckets) = &h.value else {
            panic!("{h:?}")
        };
        assert!(buckets
            .windows(2)
            .all(|w| w[0].count <= w[1].count && w[0].less_than < w[1].less_than));
        let inf = buckets.last().unwrap();
        assert!(inf.less_than.is_infinite());
        let count = samples(&m, "powertune_gateway_latency_seconds_count")
            .into_iter()
            .find(|x| x.labels.get("model") == h.labels.get("model"))
            .unwrap();
        assert_eq!(inf.count, value(&count.value));
        total += inf.count;
    }
    assert_eq!(total, 4.0);
    // no invented zeros: nothing streamed, so no time-to-first-token series
    assert!(samples(&m, "powertune_gateway_ttft_seconds").is_empty());
    let oai_tokens = samples(&m, "powertune_gateway_tokens_total");
    assert!(
        oai_tokens.iter().all(|x| value(&x.value) > 0.0),
        "{oai_tokens:?}"
    );

    // per client: admitted and refused; unknown callers by reason
    let clients = samples(&m, "powertune_gateway_client_calls_total");
    let get = |client: &str, result: &str| {
        clients
            .iter()
            .find(|x| {
                x.labels.get("client") == Some(client) && x.labels.get("result") == Some(result)
            })
            .map(|x| value(&x.value))
    };
    assert_eq!(get("web", "admitted"), Some(3.0));
    assert_eq!(get("web", "forbidden"), Some(1.0));
    assert_eq!(get("batch-jobs", "admitted"), Some(1.0));
    assert_eq!(get("batch-jobs", "forbidden"), None);
    let refused = samples(&m, "powertune_gateway_auth_refusals_total");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].labels.get("reason"), Some("missing_key"));
    let dropped = samples(&m, "powertune_gateway_log_lines_dropped_total");
    assert_eq!(value(&dropped[0].value), 0.0);
    // every family is in seconds, not milliseconds
    assert!(m.samples.iter().all(|x| !x.metric.contains("_ms")));
    let _ = json!(null);
}

#[test]
fn a_config_with_a_bad_client_names_the_key() {
    for (extra, key) in [
        ("[[clients]]\nname = \"x\"\n", "clients[2]"),
        (
            "[[clients]]\nname = \"x\"\nkey_sha256 = \"abc\"\n",
            "clients[2].key_sha256",
        ),
        (
            "[[clients]]\nname = \"x\"\nkey_env = \"UNSET_ANYWHERE\"\n",
            "clients[2].key_env",
        ),
        (
            "[[clients]]\nname = \"web\"\nkey_env = \"FAKE_KEY_1\"\n",
            "clients[2].name",
        ),
        (
            "[[clients]]\nname = \"x\"\nkey_env = \"BATCH_CLIENT_KEY\"\n",
            "clients[2].name",
        ),
        (
            "[[clients]]\nname = \"x\"\nkey_env = \"FAKE_KEY_1\"\nroutes = [\"nope\"]\n",
            "clients[2].routes",
        ),
        (
            "[[clients]]\nname = \"x\"\nkey_env = \"FAKE_KEY_1\"\nmodels = [\"nope\"]\n",
            "clients[2].models",
        ),
        (
            "[[clients]]\nname = \"x\"\nkey_env = \"FAKE_KEY_1\"\nrpm = 0\n",
            "clients[2].rpm",
        ),
    ] {
        let e = Config::from_toml(
            &config("http://127.0.0.1:9", extra),
            "g.toml",
            &env_with_clients,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(&format!(": {key}:")), "{key}: {e}");
        assert!(!e.contains(BATCH_KEY) && !e.contains("sk-one"), "{e}");
    }
}
