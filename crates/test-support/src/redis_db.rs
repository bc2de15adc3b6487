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
