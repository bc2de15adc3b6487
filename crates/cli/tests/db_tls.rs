//! `powertune db` over TLS as a user runs it, against a PostgreSQL started for the
//! test with certificates made in the test: `--url ...?sslmode=verify-full`, the PG*
//! variables alone, and a wrong CA as one line with exit 1.
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
use powertune_test_support::tls::TlsPostgres;
use std::process::{Command, Output};

const PG_VARS: [&str; 9] = [
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
];

fn powertune(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_powertune"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .current_dir(std::env::temp_dir());
    for v in PG_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn db_over_tls_by_url_and_by_pg_variables() {
    let pg = TlsPostgres::start(&["localhost"]);
    let ca = pg.pki.ca.display().to_string();
    let url = pg.url(
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let out = powertune(&["db", "--url", &url, "--json", "-"], &[]);
    assert_ne!(out.status.code(), Some(1), "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["command"], "db", "{report}");

    let env = [
        ("PGHOST", "localhost".to_string()),
        ("PGPORT", pg.port.to_string()),
        ("PGUSER", "postgres".to_string()),
        ("PGDATABASE", "postgres".to_string()),
        ("PGSSLMODE", "verify-full".to_string()),
        ("PGSSLROOTCERT", ca.clone()),
    ];
    let out = powertune(&["db", "--json", "-"], &env);
    assert_ne!(out.status.code(), Some(1), "{out:?}");

    let other = pg.pki.other_ca.display().to_string();
    let wrong = pg.url(
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    );
    let e = one_line_error(&powertune(&["db", "--url", &wrong], &[]));
    assert!(
        e.contains(&format!("is not signed by a CA in sslrootcert={other}")),
        "{e}"
    );
    let wrong_host = pg.url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let e = one_line_error(&powertune(&["db", "--url", &wrong_host], &[]));
    assert!(e.contains("does not name the host"), "{e}");
}
