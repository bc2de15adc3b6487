//! `powertune redis` and `powertune queues` over `rediss://` as a user runs them,
//! against a TLS-only Redis with an ACL user started for the test: `--tls-ca`,
//! `--tls-insecure`, and a wrong CA as one line with exit 1.
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

use common::{one_line_error, stdout};
use powertune_test_support::tls::TlsRedis;
use std::process::{Command, Output};

fn powertune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(args)
        .env_remove("REDIS_URL")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn redis_and_queues_over_tls() {
    let r = TlsRedis::start(&["localhost"]);
    let url = r.url("localhost");
    let ca = r.pki.ca.display().to_string();
    let out = powertune(&["redis", "--url", &url, "--tls-ca", &ca, "--json", "-"]);
    assert_ne!(out.status.code(), Some(1), "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["command"], "redis", "{report}");

    let ip = r.url("127.0.0.1");
    let out = powertune(&["redis", "--url", &ip, "--tls-insecure", "--json", "-"]);
    assert_ne!(out.status.code(), Some(1), "{out:?}");

    let other = r.pki.other_ca.display().to_string();
    let e = one_line_error(&powertune(&["redis", "--url", &url, "--tls-ca", &other]));
    assert!(
        e.contains(&format!("not signed by a CA in --tls-ca {other}")),
        "{e}"
    );
    assert!(!e.contains(&r.acl_password), "{e}");

    // queues shares the connection: over TLS it reaches the (empty) database and
    // says so; with the wrong CA it fails at the handshake.
    let e = one_line_error(&powertune(&["queues", "--url", &url, "--tls-ca", &ca]));
    assert!(!e.contains("TLS"), "{e}");
    let e = one_line_error(&powertune(&["queues", "--url", &url, "--tls-ca", &other]));
    assert!(e.contains("not signed by a CA"), "{e}");
    let e = one_line_error(&powertune(&[
        "redis",
        "--url",
        "redis://127.0.0.1:1/0",
        "--tls-insecure",
    ]));
    assert!(e.contains("needs a TLS URL (rediss://)"), "{e}");
}
