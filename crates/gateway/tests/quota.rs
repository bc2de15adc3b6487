//! Token quotas (`tpm` per credential and per client key) and the providers'
//! rate-limit headers, against the provider simulator. The gateway's clock is frozen
//! where the arithmetic is checked exactly (no refill between steps).
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod quota_support;

use powertune_gateway::breaker::Clock;
use powertune_gateway::quota::estimate;
use powertune_gateway::TokioClock;
use powertune_provider_sim::stats::Counts;
use powertune_provider_sim::SimHandle;
use quota_support::{control, http, Rig, HEAD};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A clock that does not move: token buckets never refill.
struct Frozen(tokio::time::Instant);

impl Clock for Frozen {
    fn now(&self) -> tokio::time::Instant {
        self.0
    }
}

const KEY_A: &str = "sk-quota-test-key-aaaa";
const KEY_B: &str = "sk-quota-test-key-bbbb";

async fn sim(extra: &str) -> SimHandle {
    quota_support::sim(&format!(
        "[defaults]\nttft = \"0ms..1ms\"\nitl = \"0ms..1ms\"\noutput_tokens = 4\n\
         [[keys]]\nkey = \"{KEY_A}\"\nname = \"a\"\n{extra}\n\
         [[keys]]\nkey = \"{KEY_B}\"\nname = \"b\"\n"
    ))
    .await
}

/// One provider with credentials `a` and `b` (their extra keys; `b` left out when
/// `None`), no retries.
fn config(sim: &str, a: &str, b: Option<&str>, extra: &str) -> String {
    let b = match b {
        Some(b) => {
            format!("[[providers.credentials]]\n  name = \"b\"\n  api_key_env = \"KEY_B\"\n  {b}")
        }
        None => String::new(),
    };
    format!(
        r#"{HEAD}[[providers]]
name = "oai"
kind = "openai"
base_url = "{sim}/v1"
  [[providers.credentials]]
  name = "a"
  api_key_env = "KEY_A"
  {a}
  {b}
[models.fast]
targets = ["oai:fast-model"]
[models.slow]
targets = ["oai:slow-model"]
{extra}
"#
    )
}

async fn rig(toml: &str, clock: Arc<dyn Clock>) -> Rig {
    let env = |k: &str| match k {
        "KEY_A" => Some(KEY_A.to_string()),
        "KEY_B" => Some(KEY_B.to_string()),
        "CLIENT_KEY" => Some("client-key-0123456789".to_string()),
        _ => None,
    };
    quota_support::rig(toml, clock, &env).await
}

fn body(model: &str, max_tokens: u64, stream: bool) -> Vec<u8> {
    let mut v = json!({"model": model, "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "hello there"}]});
    if stream {
        v["stream"] = json!(true);
        v["stream_options"] = json!({"include_usage": true});
    }
    serde_json::to_vec(&v).unwrap()
}

async fn send(c: &reqwest::Client, r: &Rig, b: &[u8], key: Option<&str>) -> (u16, String) {
    let mut rb = c
        .post(format!("{}/v1/chat/completions", r.url))
        .header("content-type", "application/json")
        .body(b.to_vec());
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// (tokens remaining, tokens used) of credential `name` in /status.
fn tokens(r: &Rig, name: &str) -> (u64, u64) {
    let s = r.gw.status();
    let c = s.credentials.iter().find(|c| c.credential == name).unwrap();
    (c.tokens_remaining.unwrap(), c.tokens_used.unwrap())
}

/// `f` of every series of key `key` (all models), summed.
fn sum(s: &SimHandle, key: &str, f: fn(&Counts) -> u64) -> u64 {
    let st = s.stats();
    st.series
        .iter()
        .filter(|x| x.key == key)
        .map(|x| f(&x.counts))
        .sum()
}

/// (calls, input + output tokens) the simulator served to key `key`.
fn served(s: &SimHandle, key: &str) -> (u64, u64) {
    (
        sum(s, key, |c| c.calls),
        sum(s, key, |c| c.input_tokens + c.output_tokens),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservation_and_correction_are_exact_and_a_full_credential_is_passed_over() {
    let s = sim("[models.\"slow-model\"]\nttft = \"1500ms\"").await;
    let toml = config(&s.url(), "tpm = 200", Some("tpm = 100000"), "");
    let r = rig(&toml, Arc::new(Frozen(tokio::time::Instant::now()))).await;
    let c = http();
    assert_eq!(tokens(&r, "a"), (200, 0));

    // a slow stream on a (weights are equal: the first pick is a) reserves its
    // estimate: the body's bytes / 4 plus max_tokens
    let slow = body("slow", 150, true);
    let est_slow = estimate(&slow, true);
    assert_eq!(est_slow, (slow.len() as u64).div_ceil(4) + 150);
    let (c2, r2, slow2) = (c.clone(), r.url.clone(), slow.clone());
    let stream = tokio::spawn(async move {
        c2.post(format!("{r2}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(slow2)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokens(&r, "a").0 == 200 {
        assert!(Instant::now() < deadline, "the stream did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(tokens(&r, "a"), (200 - est_slow, est_slow));

    // a has fewer tokens left than a fast call's estimate: every fast call goes to b,
    // and b's bucket is corrected to the real usage after each JSON answer
    let fast = body("fast", 4, false);
    let est_fast = estimate(&fast, true);
    assert!(200 - est_slow < est_fast, "{est_slow} {est_fast}");
    for _ in 0..3 {
        assert_eq!(send(&c, &r, &fast, None).await.0, 200);
    }
    let (b_calls, b_used) = served(&s, "b");
    assert_eq!(b_calls, 3);
    assert!(b_used > 0);
    assert_eq!(tokens(&r, "b"), (100_000 - b_used, b_used));

    // the stream ends: a keeps only what it used
    let text = stream.await.unwrap();
    assert!(text.contains("[DONE]"), "{text}");
    let (a_calls, a_used) = served(&s, "a");
    assert_eq!(a_calls, 1);
    assert!(a_used < est_slow);
    assert_eq!(tokens(&r, "a"), (200 - a_used, a_used));

    // a failed call gives back its whole reservation
    let before = (tokens(&r, "a").0, tokens(&r, "b").0);
    c.post(format!("{}/control", s.url()))
        .json(&json!({"next": [{"status": 500}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(send(&c, &r, &fast, None).await.0, 502);
    assert_eq!((tokens(&r, "a").0, tokens(&r, "b").0), before);

    // /metrics: one sample per credential with a tpm
    let m = r.gw.metrics_text();
    let line = format!(
        "powertune_gateway_credential_tokens_remaining{{provider=\"oai\",credential=\"a\"}} {}",
        200 - a_used
    );
    assert!(m.contains(&line), "{m}");
    assert!(
        m.contains("powertune_gateway_credential_tpm{provider=\"oai\",credential=\"b\"} 100000")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_every_credential_s_tpm_the_call_is_refused_like_rpm() {
    let s = sim("").await;
    let toml = config(&s.url(), "tpm = 40", Some("tpm = 40"), "");
    let r = rig(&toml, Arc::new(Frozen(tokio::time::Instant::now()))).await;
    let c = http();
    // a reservation larger than what is left: each credential takes calls while
    // their estimate fits (real use is corrected after each)
    let fast = body("fast", 4, false);
    let est = estimate(&fast, true);
    let mut ok = 0;
    let mut last = (0, String::new());
    for _ in 0..20 {
        last = send(&c, &r, &fast, None).await;
        if last.0 != 200 {
            break;
        }
        ok += 1;
    }
    // each call used input + 4 tokens; both buckets ran below the estimate
    let (calls, used) = served(&s, "a");
    let (calls_b, used_b) = served(&s, "b");
    assert_eq!(calls + calls_b, ok);
    assert!(
        40 - used < est && 40 - used_b < est,
        "{used} {used_b} {est}"
    );
    assert_eq!(last.0, 503, "{}", last.1);
    assert!(last.1.contains("open or rate-limited"), "{}", last.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_key_over_its_tpm_gets_its_429() {
    let s = sim("").await;
    let clients = r#"
[[clients]]
name = "team"
key_env = "CLIENT_KEY"
tpm = 8
"#;
    let toml = config(&s.url(), "", Some(""), clients);
    let r = rig(&toml, Arc::new(Frozen(tokio::time::Instant::now()))).await;
    let c = http();
    let key = Some("client-key-0123456789");
    // "hello there" is 3 input tokens, the answer 4: 7 per call, charged as it ends
    let fast = body("fast", 4, false);
    assert_eq!(send(&c, &r, &fast, key).await.0, 200);
    // 1 token left: still admitted
    assert_eq!(send(&c, &r, &fast, key).await.0, 200);
    let (status, text) = send(&c, &r, &fast, key).await;
    assert_eq!(status, 429, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error", "{text}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("over its limit of 8 tokens per minute"),
        "{text}"
    );
    assert_eq!(s.stats().totals.calls, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_headers_steer_calls_away_before_any_429() {
    // a has 3 requests a minute; the minute is 2 s (time_scale 1/30)
    let s = sim("rpm = 3").await;
    control(&s, json!({"time_scale": 1.0 / 30.0})).await;
    let toml = config(&s.url(), "", Some(""), "");
    let r = rig(&toml, Arc::new(TokioClock)).await;
    let c = http();
    let fast = body("fast", 4, false);
    for _ in 0..12 {
        assert_eq!(send(&c, &r, &fast, None).await.0, 200);
    }
    let a_calls = sum(&s, "a", |c| c.calls);
    let a_429 = sum(&s, "a", |c| c.rate_limited_requests);
    assert_eq!(a_429, 0, "{:?}", s.stats());
    // a's window may have started over once during the run
    assert!((3..=6).contains(&a_calls), "{:?}", s.stats());
    let st = r.gw.status();
    let ca = st.credentials.iter().find(|c| c.credential == "a").unwrap();
    assert!(ca.provider_remaining_requests.is_some(), "{ca:?}");
    let cb = st.credentials.iter().find(|c| c.credential == "b").unwrap();
    assert_eq!(
        cb.provider_remaining_requests, None,
        "b has no quota, no headers"
    );

    // after the reset, a takes calls again; still no 429
    tokio::time::sleep(Duration::from_millis(2200)).await;
    for _ in 0..4 {
        assert_eq!(send(&c, &r, &fast, None).await.0, 200);
    }
    let a_after = sum(&s, "a", |c| c.calls);
    let a_429 = sum(&s, "a", |c| c.rate_limited_requests);
    assert!(a_after > a_calls, "{:?}", s.stats());
    assert_eq!(a_429, 0, "{:?}", s.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_is_held_across_two_replicas_through_redis() {
    let redis = powertune_test_support::redis_db::TestRedis::reserve().await;
    let s = sim("").await;
    let shared = format!(
        "[shared]\nredis_url = \"{}\"\nkey_prefix = \"t-tpm\"\n",
        redis.url
    );
    let toml = config(&s.url(), "tpm = 60", None, &shared);
    let (a, b) = (
        rig(&toml, Arc::new(TokioClock)).await,
        rig(&toml, Arc::new(TokioClock)).await,
    );
    for r in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.gw.status().shared.map(|s| s.mode).as_deref() != Some("shared") {
            assert!(Instant::now() < deadline, "not shared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let c = http();
    let fast = body("fast", 4, false);
    let est = estimate(&fast, true);
    let mut got = Vec::new();
    for i in 0..16 {
        let r = if i % 2 == 0 { &a } else { &b };
        got.push(send(&c, r, &fast, None).await.0);
    }
    let ok = got.iter().filter(|s| **s == 200).count() as u64;
    let (calls, used) = served(&s, "a");
    assert_eq!(calls, ok, "{got:?}");
    // one bucket of 60 for both: calls go while it holds an estimate; alone, each
    // replica would have let as many through as both did together
    let per_call = used / ok;
    assert!(ok >= (60 - est) / per_call, "{got:?}");
    assert!(ok <= (60 - est) / per_call + 3, "{got:?} {used} {est}");
    assert!(got.iter().all(|s| *s == 200 || *s == 503), "{got:?}");
    // the replicas' mirrors show the shared bucket, not 60 minus their own calls
    for r in [&a, &b] {
        assert!(tokens(r, "a").0 < est, "{:?}", r.gw.status().credentials);
    }
    // the bucket's key expires on its own (a minute untouched is a full bucket)
    let mut con = redis.connection().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg("t-tpm:{oai/a}:tpm")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!((1..=61_000).contains(&ttl), "{ttl}");
    redis.release().await;
}
