//! The official Python SDKs (`anthropic`, `ollama`, `openai` from PyPI; scripts/test.sh
//! installs them) complete JSON and streaming calls against the simulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_anthropic_ollama_and_openai_sdks_talk_to_the_simulator() {
    // quota per key: each SDK has its own key; the third openai call is a 429
    let s = common::sim(
        "[defaults]\nttft = \"5ms\"\nitl = \"1ms\"\noutput_tokens = 9\n[models.claude-sim]\n[models.gpt-sim]\n[models.llama-sim]\n[quota]\nrpm = 2\n",
    )
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/clients.py");
    let url = s.url();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new("python3")
            .args([script, &url, "9"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs (scripts/test.sh installs anthropic, ollama and openai)");
        let end = std::time::Instant::now() + Duration::from_secs(90);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK script failed:\n{stdout}\n{stderr}"
    );
    let calls: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
