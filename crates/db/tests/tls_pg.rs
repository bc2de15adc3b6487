//! TLS to a real PostgreSQL started for the test with certificates made in the
//! test: libpq's sslmode meanings (verify-full, verify-ca, require, prefer, disable),
//! a clear line for a wrong host or CA, client-certificate authentication, and the
//! same settings as a keyword string and as PG* variables.
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
use powertune_db::collect::connect;
use powertune_db::conninfo::PgEnv;
use powertune_db::{DbOptions, RawDbConfig};
use powertune_test_support::tls::TlsPostgres;

/// Connects with `raw` and returns (TLS in use, the session's user), or the error line.
async fn session(raw: RawDbConfig) -> Result<(bool, String), String> {
    let cfg = raw.validate().map_err(|e| e.to_string())?;
    let s = connect(&cfg).await.map_err(|e| e.to_string())?;
    let row = s
        .client
        .query_one(
            "SELECT ssl, current_user::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    Ok((row.get(0), row.get(1)))
}

async fn with_url(url: String) -> Result<(bool, String), String> {
    session(RawDbConfig::new(&url)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sslmodes_against_a_tls_server() {
    let pg = tokio::task::spawn_blocking(|| TlsPostgres::start(&["localhost"]))
        .await
        .unwrap();
    let ca = pg.pki.ca.display().to_string();
    let other = pg.pki.other_ca.display().to_string();

    // verify-full: the right CA and the host the certificate names.
    let full = format!("sslmode=verify-full&sslrootcert={ca}");
    assert_eq!(
        with_url(pg.url("localhost", "postgres", &full)).await,
        Ok((true, "postgres".into()))
    );

    // verify-full to a host the certificate does not name: one clear line.
    let e = with_url(pg.url("127.0.0.1", "postgres", &full))
        .await
        .unwrap_err();
    assert!(
        e.contains("cannot connect to PostgreSQL at postgres://postgres@127.0.0.1")
            && e.contains(
                "TLS (sslmode=verify-full): the server's certificate does not name the host"
            ),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");

    // A CA that did not sign the server's certificate.
    let e = with_url(pg.url(
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    ))
    .await
    .unwrap_err();
    assert!(
        e.contains(&format!(
            "the server's certificate is not signed by a CA in sslrootcert={other}"
        )),
        "{e}"
    );

    // verify-ca checks the chain, not the name.
    let verify_ca = format!("sslmode=verify-ca&sslrootcert={ca}");
    assert_eq!(
        with_url(pg.url("127.0.0.1", "postgres", &verify_ca)).await,
        Ok((true, "postgres".into()))
    );
    let e = with_url(pg.url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-ca&sslrootcert={other}"),
    ))
    .await
    .unwrap_err();
    assert!(e.contains("not signed by a CA"), "{e}");

    // require encrypts without checking; with an explicit root certificate it checks
    // the chain (libpq's rule).
    assert_eq!(
        with_url(pg.url("127.0.0.1", "postgres", "sslmode=require")).await,
        Ok((true, "postgres".into()))
    );
    let e = with_url(pg.url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=require&sslrootcert={other}"),
    ))
    .await
    .unwrap_err();
    assert!(
        e.contains("TLS (sslmode=require)") && e.contains("not signed"),
        "{e}"
    );

    // prefer (the default) takes TLS when offered; disable is refused by this server.
    assert_eq!(
        with_url(pg.url("127.0.0.1", "postgres", "application_name=x")).await,
        Ok((true, "postgres".into()))
    );
    let e = with_url(pg.url("127.0.0.1", "postgres", "sslmode=disable"))
        .await
        .unwrap_err();
    assert!(e.contains("no encryption"), "{e}");

    // Client certificate: the cert-authenticated user needs it.
    let user = pg.cert_user.clone();
    let e = with_url(pg.url("localhost", &user, &full))
        .await
        .unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    let with_cert = format!(
        "{full}&sslcert={}&sslkey={}",
        pg.pki.client_cert.display(),
        pg.pki.client_key.display()
    );
    assert_eq!(
        with_url(pg.url("localhost", &user, &with_cert)).await,
        Ok((true, user.clone()))
    );

    // The same as a libpq keyword string, and as PG* variables alone.
    let kv = format!(
        "host=localhost port={} user={user} dbname=postgres sslmode=verify-full sslrootcert='{ca}' sslcert='{}' sslkey='{}'",
        pg.port,
        pg.pki.client_cert.display(),
        pg.pki.client_key.display()
    );
    assert_eq!(
        session(RawDbConfig::new(&kv)).await,
        Ok((true, user.clone()))
    );
    let port = pg.port.to_string();
    let mut raw = RawDbConfig::new("");
    *raw.env = PgEnv::from_lookup(|k| match k {
        "PGHOST" => Some("localhost".into()),
        "PGPORT" => Some(port.clone()),
        "PGUSER" => Some("postgres".into()),
        "PGDATABASE" => Some("postgres".into()),
        "PGSSLMODE" => Some("verify-full".into()),
        "PGSSLROOTCERT" => Some(ca.clone()),
        _ => None,
    });
    assert_eq!(session(raw.clone()).await, Ok((true, "postgres".into())));
    raw.env.sslrootcert = Some(other.clone());
    assert!(session(raw).await.unwrap_err().contains("not signed"));

    // The whole inspection runs over TLS.
    let opts = DbOptions::new(RawDbConfig::new(&pg.url("localhost", "postgres", &full)));
    let ins = powertune_db::inspect(&opts, &Targets::default())
        .await
        .unwrap();
    assert!(
        ins.findings.iter().any(|f| f.check == "connections"),
        "{:?}",
        ins.findings
    );
}
