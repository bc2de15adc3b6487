//! Per-key quotas: exactly the expected 429s, with each API's rate-limit headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;

const FAST: &str = "[defaults]\nttft = \"0ms\"\nitl = \"0ms\"\noutput_tokens = 10\n";

#[tokio::test]
async fn n_rpm_gives_exactly_the_429s_beyond_n_with_openai_headers() {
    let s = sim(&format!("{FAST}[quota]\nrpm = 5\n")).await;
    let c = client();
    let key = "sk-quota-test-00000001";
    let mut statuses = Vec::new();
    for i in 0..8 {
        let r = post(
            &c,
            &s.url(),
            "/v1/chat/completions",
            key,
            &chat("m", i % 2 == 0),
        )
        .await;
        statuses.push(r.status);
        let h = &r.headers;
        assert_eq!(h["x-ratelimit-limit-requests"], "5");
        if r.status == 200 {
            assert_eq!(
                h["x-ratelimit-remaining-requests"],
                (4 - i).to_string().as_str()
            );
            assert!(h.get("retry-after").is_none());
        } else {
            assert_eq!(h["x-ratelimit-remaining-requests"], "0");
            let ms: u64 = h["retry-after-ms"].to_str().unwrap().parse().unwrap();
            assert!(ms > 50_000 && ms <= 60_000, "{ms}");
            assert_eq!(h["retry-after"], "60");
            assert!(h["x-ratelimit-reset-requests"]
                .to_str()
                .unwrap()
                .ends_with('s'));
            let v: Value = serde_json::from_str(&r.raw).unwrap();
            assert_eq!(v["error"]["type"], "rate_limit_error");
            assert_eq!(v["error"]["code"], "rate_limit_exceeded");
            assert!(!r.raw.contains(key), "the key is never echoed whole");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    // another key has its own minute
    let r = post(
        &c,
        &s.url(),
        "/v1/chat/completions",
        "sk-quota-test-00000002",
        &chat("m", false),
    )
    .await;
    assert_eq!(r.status, 200);
    let st = s.stats();
    let k1 = st.get("sk-…0001", "m").unwrap();
    assert_eq!(
        (k1.calls, k1.completed, k1.rate_limited_requests),
        (8, 5, 3)
    );
    assert_eq!(st.totals.rate_limited(), 3);
}

#[tokio::test]
async fn anthropic_gets_its_own_headers_and_tpm_counts_tokens() {
    // 10 output + 4 input tokens a call: 3 calls fit in 45 tokens, the 4th does not
    let s = sim(&format!(
        "{FAST}[[keys]]\nkey = \"team-a-secret-key\"\nname = \"team-a\"\ntpm = 45\n"
    ))
    .await;
    let c = client();
    let h = [
        ("x-api-key", "team-a-secret-key"),
        ("anthropic-version", "2023-06-01"),
    ];
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = post_with(&c, &s.url(), "/v1/messages", &h, &chat("claude-x", true)).await;
        statuses.push(r.status);
        assert_eq!(r.headers["anthropic-ratelimit-tokens-limit"], "45");
        let reset = r.headers["anthropic-ratelimit-tokens-reset"]
            .to_str()
            .unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(reset).is_ok(),
            "{reset}"
        );
        if r.status == 429 {
            assert_eq!(r.headers["anthropic-ratelimit-tokens-remaining"], "3");
            assert_eq!(r.headers["retry-after"], "60");
            let v: Value = serde_json::from_str(&r.raw).unwrap();
            assert_eq!(v["error"]["type"], "rate_limit_error");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let st = s.stats();
    assert_eq!(st.get("team-a", "claude-x").unwrap().rate_limited_tokens, 2);
}

#[tokio::test]
async fn the_quota_minute_starts_over_scaled_by_time_scale() {
    // a minute of 0.6 s
    let s = sim(&format!("time_scale = 0.01\n{FAST}[quota]\nrpm = 2\n")).await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            post(&c, &s.url(), "/api/chat", "k", &chat("m", false))
                .await
                .status,
        );
    }
    assert_eq!(statuses, [200, 200, 429]);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(
        post(&c, &s.url(), "/api/chat", "k", &chat("m", false))
            .await
            .status,
        200
    );
}
