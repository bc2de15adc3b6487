//! A real Prometheus for the live-output tests: the Debian package's binary, started
//! with its remote-write receiver on a free loopback port and a temporary storage
//! folder, killed on drop; [`query`] reads series back through its HTTP API.

use std::time::Duration;

const PROMETHEUS: &str = "/usr/bin/prometheus";

pub struct Prometheus {
    child: std::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn prometheus() -> Prometheus {
    assert!(
        std::path::Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: run scripts/test.sh (it installs the Debian package prometheus)"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let p = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{}/-/ready", p.url)).send().await {
            if r.status().is_success() {
                return p;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("prometheus did not become ready at {}", p.url);
}

pub async fn query(base: &str, q: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = reqwest::Client::new()
        .get(url::Url::parse_with_params(&format!("{base}/api/v1/query"), &[("query", q)]).unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"].as_array().unwrap().clone()
}
