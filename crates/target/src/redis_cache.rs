//! `GET /api/v1/cache/{key}`: a read-through cache on a real Redis server behind a
//! bounded connection pool (deadpool-redis). Each request takes a pooled connection
//! (waiting up to `redis.pool_timeout`, then 503), reads the key, writes it with a
//! TTL on a miss, and keeps the connection for its drawn `redis.hold` time (a slow
//! command or a large value), so with `redis.pool_size` connections the pool
//! saturates at about `pool_size / hold` requests a second: Redis as a plantable
//! bottleneck. Without `redis.url` the route answers 503.

use crate::config::Latency;
use crate::error::TargetError;
use crate::handlers::{ApiError, AppState};
use crate::rng::SplitMix;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use deadpool_redis::redis::AsyncCommands;
use parking_lot::Mutex;
use powertune_core::config_file::Source;
use powertune_core::duration::serde_human;
use powertune_core::prometheus::Exposition;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Longest key accepted in the path.
pub const MAX_KEY: usize = 64;

/// The `[redis]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://HOST:PORT/DB` of the cache; none: the cache route answers 503.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long a request waits for a pooled connection before it fails with 503.
    #[serde(with = "serde_human")]
    pub pool_timeout: Duration,
    /// How long a request keeps its connection (log-normal, like the routes' `db`).
    pub hold: Latency,
    /// TTL of the keys written on a miss.
    #[serde(with = "serde_human")]
    pub ttl: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            pool_size: 8,
            pool_timeout: Duration::from_secs(5),
            hold: Latency::lognormal(2, 0.3),
            ttl: Duration::from_secs(60),
        }
    }
}

impl RedisConfig {
    /// Checks the table; errors at the key's place in `src`.
    pub fn validate_in(&self, src: &Source) -> Result<(), TargetError> {
        let invalid = |key: &str, value: String, reason: &str, example: &str| {
            Err(TargetError::Config(src.error(
                &format!("redis.{key}"),
                format!("{value} {reason}, e.g. {example}"),
            )))
        };
        if let Some(url) = &self.url {
            if deadpool_redis::redis::Client::open(url.as_str()).is_err() {
                return invalid(
                    "url",
                    powertune_core::redact::url(url),
                    "is not a Redis URL",
                    "url = \"redis://127.0.0.1:6379/0\"",
                );
            }
        }
        if !(1..=10_000).contains(&self.pool_size) {
            return invalid(
                "pool_size",
                self.pool_size.to_string(),
                "must be between 1 and 10000",
                "pool_size = 8",
            );
        }
        if self.pool_timeout.is_zero() || self.pool_timeout > Duration::from_secs(600) {
            return invalid(
                "pool_timeout",
                format!("{:?}", self.pool_timeout),
                "must be above 0 and at most 10m",
                "pool_timeout = \"5s\"",
            );
        }
        if !(0.0..=3.0).contains(&self.hold.spread) || self.hold.median > Duration::from_secs(60) {
            return invalid(
                "hold",
                format!("{:?}", self.hold),
                "needs a median of at most 60s and a spread between 0.0 and 3.0",
                "hold = { median = \"2ms\", spread = 0.3 }",
            );
        }
        if self.ttl < Duration::from_secs(1) || self.ttl > Duration::from_secs(86_400) {
            return invalid(
                "ttl",
                format!("{:?}", self.ttl),
                "must be between 1s and 1d",
                "ttl = \"60s\"",
            );
        }
        Ok(())
    }
}

/// The pool and its counters.
pub struct RedisCache {
    pool: deadpool_redis::Pool,
    size: usize,
    timeout: Duration,
    hold: Latency,
    ttl_s: u64,
    rng: Mutex<SplitMix>,
    timeouts: AtomicU64,
    errors: AtomicU64,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("size", &self.size)
            .finish()
    }
}

impl RedisCache {
    /// The pool of a validated config (no connection opens until a request needs
    /// one); `None` without a URL.
    pub fn new(c: &RedisConfig, seed: u64) -> Option<RedisCache> {
        let url = c.url.as_ref()?;
        let pool = deadpool_redis::Config::from_url(url.as_str())
            .builder()
            .ok()?
            .max_size(c.pool_size)
            .wait_timeout(Some(c.pool_timeout))
            .create_timeout(Some(c.pool_timeout))
            .runtime(deadpool_redis::Runtime::Tokio1)
            .build()
            .ok()?;
        Some(RedisCache {
            pool,
            size: c.pool_size,
            timeout: c.pool_timeout,
            hold: c.hold,
            ttl_s: c.ttl.as_secs().max(1),
            rng: Mutex::new(SplitMix::new(seed ^ 0x4000)),
            timeouts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    /// Size, connections in use, requests waiting, timeouts, Redis errors.
    pub fn stats(&self) -> (usize, usize, usize, u64, u64) {
        let st = self.pool.status();
        (
            self.size,
            st.size.saturating_sub(st.available),
            st.waiting,
            self.timeouts.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// The pool's gauges in `/metrics` (only when a URL is configured).
pub fn metrics(cache: Option<&RedisCache>, e: &mut Exposition) {
    let Some(c) = cache else { return };
    let (size, in_use, waiting, timeouts, errors) = c.stats();
    for (name, help, v) in [
        (
            "powertune_target_redis_pool_size",
            "Connections in the Redis pool (redis.pool_size).",
            size as f64,
        ),
        (
            "powertune_target_redis_pool_in_use",
            "Redis connections held by requests now.",
            in_use as f64,
        ),
        (
            "powertune_target_redis_pool_waiting",
            "Requests waiting for a Redis connection now.",
            waiting as f64,
        ),
    ] {
        e.gauge(name, help).sample(&[], v);
    }
    e.counter(
        "powertune_target_redis_pool_timeouts",
        "Requests that waited redis.pool_timeout for a connection and were answered 503.",
    )
    .sample(&[], timeouts as f64);
    e.counter(
        "powertune_target_redis_errors",
        "Cache requests answered 502 because Redis failed.",
    )
    .sample(&[], errors as f64);
}

/// `GET /api/v1/cache/{key}`.
pub async fn cache(
    State(s): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Some(c) = s.redis.as_ref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Redis configured (set redis.url in the target config file)",
        ));
    };
    if key.is_empty()
        || key.len() > MAX_KEY
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the key must be 1 to {MAX_KEY} of A-Z a-z 0-9 - _, e.g. /api/v1/cache/user-42"
            ),
        ));
    }
    let mut conn = match c.pool.get().await {
        Ok(conn) => conn,
        Err(deadpool_redis::PoolError::Timeout(_)) => {
            c.timeouts.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "could not obtain a Redis connection within {:.3} seconds (pool of {} exhausted)",
                    c.timeout.as_secs_f64(),
                    c.size
                ),
            ));
        }
        Err(_) => return Err(redis_failed(c)),
    };
    let full = format!("powertune:target:cache:{key}");
    let read_from = std::time::SystemTime::now();
    let got: Option<String> = conn.get(&full).await.map_err(|_| redis_failed(c))?;
    let hit = got.is_some();
    // The read as Rails' `cache_read.active_support` notification reaches
    // OpenTelemetry: `key`, `store`, `hit`.
    s.telemetry.child(
        "cache_read.active_support",
        opentelemetry::trace::SpanKind::Internal,
        read_from,
        vec![
            opentelemetry::KeyValue::new("key", full.clone()),
            opentelemetry::KeyValue::new("store", "ActiveSupport::Cache::RedisCacheStore"),
            opentelemetry::KeyValue::new("hit", hit),
        ],
    );
    let value = match got {
        Some(v) => v,
        None => {
            let v = format!("cached value of {key}");
            let _: () = conn
                .set_ex(&full, &v, c.ttl_s)
                .await
                .map_err(|_| redis_failed(c))?;
            v
        }
    };
    let hold = c.rng.lock().latency(&c.hold);
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    drop(conn);
    Ok(Json(json!({"key": key, "hit": hit, "value": value})))
}

fn redis_failed(c: &RedisCache) -> ApiError {
    c.errors.fetch_add(1, Ordering::Relaxed);
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "the cache's Redis failed or is unreachable",
    )
}
