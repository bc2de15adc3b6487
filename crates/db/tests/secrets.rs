//! `powertune db` never shows a password that the server keeps in a query text:
//! `pg_stat_statements` records utility statements such as `ALTER ROLE … PASSWORD '…'`
//! with their literals, and `pg_stat_activity` shows them while they run.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use powertune_core::Targets;
use powertune_db::{DbOptions, RawDbConfig};
use powertune_test_support::pg::{TestDb, TestRole};

const SECRET: &str = "hunter2-in-sql";

#[tokio::test]
async fn role_passwords_in_statement_texts_are_masked() {
    let db = TestDb::create("pt_db_secrets").await;
    let role = TestRole::create("pt_db_secret_role", &[]).await;
    let c = db.client().await;
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .unwrap();
    c.batch_execute(&format!(
        "ALTER ROLE \"{}\" WITH PASSWORD '{SECRET}'",
        role.name
    ))
    .await
    .unwrap();
    let mut o = DbOptions::new(RawDbConfig::new(&db.url));
    o.top = 1000;
    let i = powertune_db::inspect(&o, &Targets::default())
        .await
        .unwrap();
    let report = serde_json::to_string(&i.report().unwrap()).unwrap();
    let shown = format!("{report}{}", i.text);
    assert!(!shown.contains(SECRET), "the password is shown");
    assert!(
        shown.contains("PASSWORD '***'"),
        "the ALTER ROLE statement should be listed, masked: {report}"
    );
    drop(c);
    db.drop_now().await;
    role.drop_now().await;
}
