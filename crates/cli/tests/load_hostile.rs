//! `powertune load` against hostile servers and hostile input, as a user runs it: a
//! run that measured nothing fails, credentials in `--url` are sent as Basic
//! authentication and never shown, CR/LF in `-H` is refused, extreme numbers get one
//! line, thresholds on tags matching nothing are refused, and `--vus`/`--duration`/
//! `--rate` override a scenario file's executors.
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

use common::{one_line_error, stderr, stdout};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn powertune(args: &[&str]) -> Output {
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_powertune"))
            .args(args)
            .env("NO_COLOR", "1")
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("powertune finished within 60 s")
    .unwrap()
}

/// A loopback HTTP/1.1 server that keeps every request head it reads and answers
/// `200 ok` at once, or never answers when `silent`.
struct Recorder {
    addr: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start(silent: bool) -> Recorder {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let h = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let h = h.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head: Vec<u8> = buf.drain(..end).collect();
                        h.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&head).into_owned());
                        if silent {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Recorder { addr, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_off_run_against_a_server_that_never_answers_fails() {
    let srv = Recorder::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let url = format!("http://{}/never", srv.addr);
    let t0 = Instant::now();
    let o = powertune(&[
        "load",
        "--url",
        &url,
        "--vus",
        "2",
        "--duration",
        "1s",
        "-q",
        "--json",
        json.to_str().unwrap(),
    ])
    .await;
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(99), "{out} {}", stderr(&o));
    // 1 s run + the one-off's 5 s graceful stop, not the 60 s request timeout.
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert!(out.contains("nothing_completed"), "{out}");
    assert!(out.contains("scenario_completed_nothing"), "{out}");
    assert!(out.contains("interrupted 2"), "{out}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["verdict"], "fail");
    assert_eq!(r["metrics"]["http"]["errors"]["interrupted"], 2, "{r}");
    assert_eq!(r["metrics"]["http"]["failed"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_url_are_sent_as_basic_auth_and_never_shown() {
    let srv = Recorder::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let url = format!("http://alice:s3cr%40t-pw@{}/x", srv.addr);
    let o = powertune(&[
        "load",
        "--url",
        &url,
        "--vus",
        "1",
        "--duration",
        "300ms",
        "--json",
        json.to_str().unwrap(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{} {}", stdout(&o), stderr(&o));
    let heads = srv.heads();
    assert!(!heads.is_empty());
    // base64("alice:s3cr@t-pw")
    for h in &heads {
        assert!(
            h.contains("\r\nauthorization: Basic YWxpY2U6czNjckB0LXB3\r\n"),
            "{h}"
        );
    }
    let shown = format!(
        "{}{}{}",
        stdout(&o),
        stderr(&o),
        std::fs::read_to_string(&json).unwrap()
    );
    assert!(!shown.contains("s3cr"), "{shown}");
    assert!(shown.contains("alice:***@"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cr_lf_in_a_header_flag_is_refused_and_nothing_is_sent() {
    let srv = Recorder::start(false).await;
    let url = format!("http://{}/x", srv.addr);
    for h in ["X-A: ok\r\nX-Injected: yes", "X-A: ok\nX-Injected: yes"] {
        let e =
            one_line_error(&powertune(&["load", "--url", &url, "--duration", "1s", "-H", h]).await);
        assert!(e.contains("-H `X-A`") && e.contains("CR, LF"), "{e}");
    }
    assert!(srv.heads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_numbers_on_the_command_line_get_one_line() {
    let url = "http://127.0.0.1:9/x";
    for (flag, value) in [
        ("--vus", "0"),
        ("--vus", "-1"),
        ("--vus", "1e20"),
        ("--vus", "18446744073709551615"),
        ("--duration", "0s"),
        ("--duration", "999999999h"),
        ("--duration", "18446744073709551615s"),
        ("--rate", "0"),
        ("--rate", "-5"),
        ("--rate", "1e20"),
        ("--rate", "NaN"),
        ("--time-scale", "0"),
        ("--time-scale", "1e20"),
    ] {
        let arg = format!("{flag}={value}");
        let o = powertune(&["load", "--url", url, &arg, "-q"]).await;
        let e = one_line_error(&o);
        assert!(e.contains(flag), "{arg}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_flag_on_a_tag_matching_nothing_is_refused() {
    let o = powertune(&[
        "load",
        "--url",
        "http://127.0.0.1:9/x",
        "--threshold",
        "http_req_duration{scenario:nosuch}: p(95)<200",
    ])
    .await;
    let e = one_line_error(&o);
    assert!(
        e.contains("--threshold") && e.contains("scenario:nosuch") && e.contains("matches nothing"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vus_duration_and_rate_override_a_files_executors() {
    let srv = Recorder::start(false).await;
    let base = format!("http://{}", srv.addr);
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("long.toml");
    std::fs::write(
        &plan,
        "[scenarios.a]\nendpoint_type = \"read_crud\"\nexecutor = \"ramping-vus\"\nstages = [{ duration = \"10m\", target = 1 }]\n[[scenarios.a.steps]]\nurl = \"/a\"\n[scenarios.b]\nendpoint_type = \"read_crud\"\nexecutor = \"per-vu-iterations\"\nvus = 1\niterations = 1000000\nstart_time = \"5m\"\n[[scenarios.b.steps]]\nurl = \"/b\"\n",
    )
    .unwrap();
    let json = dir.path().join("r.json");
    let t0 = Instant::now();
    let o = powertune(&[
        "load",
        plan.to_str().unwrap(),
        "--base-url",
        &base,
        "--vus",
        "3",
        "--duration",
        "1s",
        "--json",
        json.to_str().unwrap(),
    ])
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{} {err}", stdout(&o));
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert!(
        err.contains("--vus and --duration replace the executors of the 2 scenario(s)"),
        "{err}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for sc in r["metrics"]["scenarios"].as_array().unwrap() {
        assert_eq!(sc["executor"], "constant-vus", "{sc}");
        assert_eq!(sc["vus_max"], 3, "{sc}");
        assert!(sc["iterations"].as_u64().unwrap() > 0, "{sc}");
    }
    assert!(r["metrics"]["duration_s"].as_f64().unwrap() < 5.0);

    // --rate: an open model at that rate.
    let o = powertune(&[
        "load",
        plan.to_str().unwrap(),
        "--base-url",
        &base,
        "--rate",
        "20",
        "--duration",
        "1s",
        "--json",
        json.to_str().unwrap(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{} {}", stdout(&o), stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for sc in r["metrics"]["scenarios"].as_array().unwrap() {
        assert_eq!(sc["executor"], "constant-arrival-rate", "{sc}");
        let n = sc["iterations"].as_u64().unwrap();
        assert!((10..=30).contains(&n), "{sc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_off_request_flags_with_a_scenario_file_get_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("p.toml");
    std::fs::write(
        &plan,
        "[scenarios.a]\nendpoint_type = \"read_crud\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/a\"\n",
    )
    .unwrap();
    let p = plan.to_str().unwrap();
    for (args, flag) in [
        (vec!["-H", "X-A: b"], "-H/--header"),
        (vec!["--method", "POST"], "--method"),
        (vec!["--body", "x"], "--body"),
        (vec!["--endpoint-type", "authentication"], "--endpoint-type"),
    ] {
        let mut all = vec!["load", p, "--base-url", "http://127.0.0.1:9"];
        all.extend(args);
        let e = one_line_error(&powertune(&all).await);
        assert!(
            e.contains(flag) && e.contains("one-off --url run") && e.contains("p.toml"),
            "{e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_file_that_is_a_device_or_too_large_is_refused_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.csv");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(257 * 1024 * 1024)
        .unwrap();
    for (file, says) in [
        ("/dev/zero".to_string(), "not a regular file"),
        (big.display().to_string(), "over the 256.0 MiB"),
    ] {
        let plan = dir.path().join("p.toml");
        std::fs::write(
            &plan,
            format!(
                "[scenarios.a]\nendpoint_type = \"read_crud\"\nusers = 1\nduration = \"1s\"\n\
                 data = {{ file = \"{file}\", mode = \"per_vu\" }}\n\
                 [[scenarios.a.steps]]\nurl = \"/a\"\n"
            ),
        )
        .unwrap();
        let o = powertune(&[
            "load",
            plan.to_str().unwrap(),
            "--base-url",
            "http://127.0.0.1:9",
        ])
        .await;
        let e = one_line_error(&o);
        assert!(
            e.contains("scenarios.a.data.file") && e.contains(says),
            "{e}"
        );
    }
}
