//! The test Redis: `POWERTUNE_TEST_REDIS` (set by `scripts/test.sh`, 64 databases).
//! Each test takes a database index of its own and flushes it when done.

/// Default used when the variable is unset: the instance `scripts/test.sh` starts.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:56379";

pub fn base_url() -> String {
    std::env::var("POWERTUNE_TEST_REDIS").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// A Redis database index reserved for one test; the URL selects it.
pub struct TestRedis {
    pub db: u32,
    pub url: String,
}

impl TestRedis {
    /// Reserves a free database index (1..63) with `SET NX` on a lock key in db 0, and
    /// flushes it. The lock expires after 10 minutes in case a test dies.
    pub async fn reserve() -> TestRedis {
        let base = base_url();
        let client = redis::Client::open(format!("{base}/0"))
            .unwrap_or_else(|e| panic!("bad POWERTUNE_TEST_REDIS {base}: {e}"));
        let mut con = client.get_multiplexed_async_connection().await.unwrap_or_else(|e| {
            panic!("cannot reach the test Redis at {base}: {e} (run scripts/test.sh, which starts it)")
        });
        for db in 1..64u32 {
            let got: Option<String> = redis::cmd("SET")
                .arg(format!("powertune:test-lock:{db}"))
                .arg(std::process::id())
                .arg("NX")
                .arg("EX")
                .arg(600)
                .query_async(&mut con)
                .await
                .unwrap_or(None);
            if got.is_some() {
                let url = format!("{base}/{db}");
                let c = redis::Client::open(url.clone()).unwrap_or_else(|e| panic!("{url}: {e}"));
                let mut dbcon = c
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap_or_else(|e| panic!("{url}: {e}"));
                let _: () = redis::cmd("FLUSHDB")
                    .query_async(&mut dbcon)
                    .await
                    .unwrap_or_else(|e| panic!("FLUSHDB {url}: {e}"));
                return TestRedis { db, url };
            }
        }
        panic!("all 63 test Redis databases are in use; is a stale test run holding them?")
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", self.url))
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.url))
    }

    /// Flushes the database and frees the index.
    pub async fn release(self) {
        let mut con = self.connection().await;
        let _: Result<(), _> = redis::cmd("FLUSHDB").query_async(&mut con).await;
        let _: Result<(), _> = redis::cmd("SELECT").arg(0).query_async(&mut con).await;
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(format!("powertune:test-lock:{}", self.db))
            .query_async(&mut con)
            .await;
    }
}

/// A private `redis-server` on a free loopback port, for tests that change server
/// configuration (maxmemory, policies, renamed commands) and must not disturb the
/// shared test Redis. Killed when dropped.
pub struct PrivateRedis {
    pub port: u16,
    /// `redis://127.0.0.1:PORT` (append `/DB`).
    pub url: String,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl PrivateRedis {
    /// Starts `redis-server` with persistence off, DEBUG allowed from loopback, plus
    /// `extra` arguments (e.g. `["--rename-command", "MEMORY", ""]`); waits (at most
    /// 10 s) until it answers PING.
    pub async fn start(extra: &[&str]) -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"));
        let dir = std::env::temp_dir().join(crate::unique_name("powertune_redis"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--enable-debug-command", "local", "--dir"])
            .arg(&dir)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server (apt-get install redis-server): {e}")
            });
        let me = PrivateRedis {
            port,
            url: format!("redis://127.0.0.1:{port}"),
            child,
            dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(c) = redis::Client::open(format!("{}/0", me.url)) {
                if let Ok(mut con) = c.get_multiplexed_async_connection().await {
                    let pong: Result<String, _> = redis::cmd("PING").query_async(&mut con).await;
                    if pong.is_ok() {
                        return me;
                    }
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "private redis-server on port {port} did not start within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn connection(&self, db: u32) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("{}/{db}", self.url))
            .unwrap_or_else(|e| panic!("{}: {e}", self.url))
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.url))
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
