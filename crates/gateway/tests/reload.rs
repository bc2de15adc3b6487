//! Config reload: kept breakers, re-enabled credentials, refused files.
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
use serde_json::{json, Value};
use std::time::Duration;

/// Providers `oai` (two keys), `keep` and `change` (whose key is `change_key`), all
/// at `u`, with `extra` TOML after `[retry]`.
fn reload_config(u: &str, change_key: &str, extra: &str) -> String {
    let u = format!("{u}/v1");
    ConfigBuilder::new()
        .backoff("base", "1ms")
        .backoff("max", "20ms")
        .raw(extra)
        .provider("oai", "openai", &u)
        .credential("one", "FAKE_KEY_1")
        .credential("two", "FAKE_KEY_2")
        .provider("keep", "openai", &u)
        .credential("main", "FAKE_KEY_1")
        .provider("change", "openai", &u)
        .credential("main", change_key)
        .toml()
}

async fn state_of(c: &reqwest::Client, url: &str) -> (u64, Vec<String>) {
    let s = status_of(c, url).await;
    (
        s.config_generation,
        s.credentials
            .iter()
            .map(|c| format!("{}/{}={}", c.provider, c.credential, c.state))
            .collect(),
    )
}

async fn chat_status(c: &reqwest::Client, url: &str, model: &str) -> u16 {
    chat(c, url, "openai", model, false).await.status().as_u16()
}

#[tokio::test]
async fn config_reload_reenables_keeps_unchanged_breakers_and_refuses_bad_files() {
    let fake = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, reload_config(&fake.url(), "FAKE_KEY_1", "")).unwrap();
    let r = rig_file(&file).await;
    let c = http();

    // a 401 disables oai/one (the retry succeeds on oai/two)
    fake.push(Script::status(401)).unwrap();
    assert_eq!(chat_status(&c, &r.url, "oai:m").await, 200);
    // five 500s open keep/main and change/main (3 attempts, then 2 more and the breaker is open)
    for model in ["keep:m", "change:m"] {
        for _ in 0..5 {
            fake.push(Script::status(500)).unwrap();
        }
        assert_eq!(chat_status(&c, &r.url, model).await, 502);
        assert_eq!(chat_status(&c, &r.url, model).await, 502);
        assert_eq!(chat_status(&c, &r.url, model).await, 503, "{model} is open");
    }
    let before = fake.calls();
    assert_eq!(before, 12);
    let (generation, states) = state_of(&c, &r.url).await;
    assert_eq!(generation, 1);
    assert_eq!(
        states,
        [
            "oai/one=disabled",
            "oai/two=closed",
            "keep/main=open",
            "change/main=open"
        ]
    );

    // a bad file is refused with its key named; the old config keeps serving
    std::fs::write(
        &file,
        reload_config(
            &fake.url(),
            "FAKE_KEY_1",
            "[breaker]\nfailure_treshold = 3\n",
        ),
    )
    .unwrap();
    let resp = c
        .post(format!("{}/admin/reload", r.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["reloaded"], false);
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("failure_treshold") && err.contains("gateway.toml"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
    let (generation, states) = state_of(&c, &r.url).await;
    assert_eq!(generation, 1);
    assert_eq!(states[0], "oai/one=disabled");
    assert_eq!(chat_status(&c, &r.url, "oai:m").await, 200);

    // a good file: change/main's key changed (starts closed), the rest kept, oai/one re-enabled
    std::fs::write(&file, reload_config(&fake.url(), "FAKE_KEY_2", "")).unwrap();
    let resp = c
        .post(format!("{}/admin/reload", r.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"reloaded": true, "generation": 2, "kept": 3, "fresh": 1, "reenabled": 1, "removed": 0})
    );
    let (generation, states) = state_of(&c, &r.url).await;
    assert_eq!(generation, 2);
    assert_eq!(
        states,
        [
            "oai/one=closed",
            "oai/two=closed",
            "keep/main=open",
            "change/main=closed"
        ]
    );
    // the kept breaker still refuses without calling upstream; the changed one serves
    let n = fake.calls();
    assert_eq!(chat_status(&c, &r.url, "keep:m").await, 503);
    assert_eq!(fake.calls(), n);
    assert_eq!(chat_status(&c, &r.url, "change:m").await, 200);
    assert!(fake.calls_with_key("sk-two") > 0);
    // both oai credentials serve again
    let k1 = fake.calls_with_key("sk-one");
    for _ in 0..4 {
        assert_eq!(chat_status(&c, &r.url, "oai:m").await, 200);
    }
    assert!(fake.calls_with_key("sk-one") - k1 >= 2);
    // the kept breaker's recovery time was not reset by the reload
    r.clock.advance(Duration::from_secs(121));
    assert_eq!(chat_status(&c, &r.url, "keep:m").await, 200);
}
