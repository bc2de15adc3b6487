//! Runs a Python script of the tests (the official SDK clients) with the `python3` on
//! PATH — scripts/test.sh puts its virtual environment, with `anthropic`, `ollama` and
//! `openai` installed, first — bounded in time, and reads one JSON value per line of
//! its standard output.

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The SDKs have 20 s timeouts of their own; the script is given up after this.
pub const LIMIT: Duration = Duration::from_secs(90);

/// Runs `python3 SCRIPT ARGS…` (off the async runtime), fails the test when it does
/// not end with success within [`LIMIT`], and returns its output lines as JSON.
pub async fn json_lines(script: &str, args: Vec<String>) -> Vec<Value> {
    let script = script.to_string();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("python3")
            .arg(&script)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs (scripts/test.sh installs anthropic, ollama and openai)");
        let end = Instant::now() + LIMIT;
        while child.try_wait().unwrap().is_none() && Instant::now() < end {
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
        "SDK script failed (pip install anthropic ollama openai):\n{stdout}\n{stderr}"
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}
