//! The official Python SDKs (`anthropic`, `ollama`, `openai` from PyPI; scripts/test.sh
//! installs them) complete JSON and streaming calls against the simulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_anthropic_ollama_and_openai_sdks_talk_to_the_simulator() {
    // quota per key: each SDK has its own key; the third openai call is a 429
    let s = common::sim(
        "[defaults]\nttft = \"5ms\"\nitl = \"1ms\"\noutput_tokens = 9\n[models.claude-sim]\n[models.gpt-sim]\n[models.llama-sim]\n[quota]\nrpm = 2\n",
    )
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/clients.py");
    let url = s.url();
    let calls: Vec<Value> =
        powertune_test_support::python::json_lines(script, vec![url, "9".to_string()]).await;
    let stdout = format!("{calls:?}");
    assert_eq!(calls.len(), 7, "{stdout}");
    for sdk in ["anthropic", "ollama", "openai"] {
        for stream in [false, true] {
            assert!(
                calls
                    .iter()
                    .any(|c| c["sdk"] == sdk && c["stream"] == stream),
                "{sdk} {stream}"
            );
        }
    }
    assert_eq!(calls[6]["status"], 429);
    let st = s.stats();
    assert_eq!(st.totals.completed, 6);
    assert_eq!(st.totals.output_tokens, 54);
    assert_eq!(st.totals.rate_limited_requests, 1);
    assert_eq!(st.get("sk-…0001", "claude-sim").unwrap().completed, 2);
}
