//! The test PostgreSQL: `POWERTUNE_TEST_PG` (set by `scripts/test.sh`), a superuser URL.

use tokio_postgres::NoTls;

/// Default used when the variable is unset: the instance `scripts/test.sh` starts.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:55432/postgres";

/// The admin URL of the test server.
pub fn admin_url() -> String {
    std::env::var("POWERTUNE_TEST_PG").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// Connects to `url`, panicking with a message that says how to start the server.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| {
        panic!("cannot reach the test PostgreSQL at {url}: {e} (run scripts/test.sh, which starts it)")
    });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A database created for one test and dropped when `drop_now` is called (or left for
/// the next `scripts/test.sh` run if the test panicked first).
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// Creates a fresh, empty database.
    pub async fn create(prefix: &str) -> TestDb {
        let name = crate::unique_name(prefix).to_lowercase();
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let url = with_database(&admin_url(), &name);
        TestDb { name, url }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// Drops the database, ending any session still connected to it.
    pub async fn drop_now(self) {
        let admin = connect(&admin_url()).await;
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

/// `url` with its database path replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host_part = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

/// `url` with its user replaced by `user` (no password: the test server trusts loopback).
pub fn with_user(url: &str, user: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let host_start = rest.find('@').map_or(0, |i| i + 1);
    format!("{}{user}@{}", &url[..scheme_end], &rest[host_start..])
}

/// A login role created for one test (cluster-wide, so uniquely named) and dropped by
/// `drop_now`. `grants` are role names granted to it (e.g. `pg_read_all_stats`).
pub struct TestRole {
    pub name: String,
}

impl TestRole {
    pub async fn create(prefix: &str, grants: &[&str]) -> TestRole {
        let name = crate::unique_name(prefix).to_lowercase();
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!("CREATE ROLE \"{name}\" LOGIN"))
            .await
            .unwrap_or_else(|e| panic!("CREATE ROLE {name}: {e}"));
        for g in grants {
            admin
                .batch_execute(&format!("GRANT {g} TO \"{name}\""))
                .await
                .unwrap_or_else(|e| panic!("GRANT {g} TO {name}: {e}"));
        }
        TestRole { name }
    }

    /// Drops the role (its sessions must be gone: drop the databases it used first).
    pub async fn drop_now(self) {
        let admin = connect(&admin_url()).await;
        let _ = admin
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{}\"", self.name))
            .await;
    }
}
