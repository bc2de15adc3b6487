//! `rediss://` against a real Redis started for the test with TLS only and an ACL
//! user, certificates made in the test: the right CA and host connect, a wrong host or
//! CA is one clear line, `--tls-insecure` skips the check, and the inspection runs
//! over it.
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
use powertune_redis::conn::{Conn, RedisUrl};
use powertune_redis::{ConnOptions, RedisOptions};
use powertune_test_support::tls::TlsRedis;
use std::path::Path;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

async fn open(url: &str, ca: Option<&Path>, insecure: bool) -> Result<Conn, String> {
    let u = RedisUrl::parse(url)
        .and_then(|u| u.with_tls(ca, insecure))
        .map_err(|e| e.to_string())?;
    Conn::open(&u, TIMEOUT).await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn rediss_with_a_ca_an_acl_user_and_insecure() {
    let r = tokio::task::spawn_blocking(|| TlsRedis::start(&["localhost"]))
        .await
        .unwrap();
    let ca = r.pki.ca.clone();

    // The right CA and host, as the ACL user.
    let mut c = open(&r.url("localhost"), Some(&ca), false).await.unwrap();
    let who: String = c
        .query(redis::cmd("ACL").arg("WHOAMI").clone(), "ACL WHOAMI")
        .await
        .unwrap();
    assert_eq!(who, r.acl_user);

    // A host the certificate does not name.
    let e = open(&r.url("127.0.0.1"), Some(&ca), false)
        .await
        .err()
        .unwrap();
    assert!(
        e.contains("TLS: the server's certificate does not name the host"),
        "{e}"
    );
    assert!(!e.contains(&r.acl_password) && e.contains("***"), "{e}");

    // A CA that did not sign it; the system's CAs did not either.
    let e = open(&r.url("localhost"), Some(&r.pki.other_ca), false)
        .await
        .err()
        .unwrap();
    assert!(
        e.contains(&format!(
            "not signed by a CA in --tls-ca {}",
            r.pki.other_ca.display()
        )),
        "{e}"
    );
    let e = open(&r.url("localhost"), None, false).await.err().unwrap();
    assert!(e.contains("not signed by a CA in the system's CAs"), "{e}");

    // Insecure: encrypted, not checked (flag or URL fragment).
    open(&r.url("127.0.0.1"), None, true).await.unwrap();
    open(&format!("{}#insecure", r.url("127.0.0.1")), None, false)
        .await
        .unwrap();

    // A wrong ACL password is refused without showing it.
    let bad = format!("rediss://{}:wrong-pw@localhost:{}/0", r.acl_user, r.port);
    let e = open(&bad, Some(&ca), false).await.err().unwrap();
    assert!(!e.contains("wrong-pw"), "{e}");

    // The inspection runs over TLS.
    let opts = RedisOptions {
        conn: ConnOptions {
            url: RedisUrl::parse(&r.url("localhost"))
                .unwrap()
                .with_tls(Some(&ca), false)
                .unwrap(),
            timeout: TIMEOUT,
        },
        slowlog: 10,
        baseline: None,
        scan: None,
    };
    let ins = powertune_redis::inspect(&opts, &Targets::default())
        .await
        .unwrap();
    assert!(!ins.findings.is_empty());
}
