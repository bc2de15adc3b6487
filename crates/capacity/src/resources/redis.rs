//! A Redis server (`--redis`), read through `powertune redis`'s inspection entry
//! (INFO only: no SLOWLOG beyond one entry, no key scan): memory against
//! `maxmemory`, blocked clients, evictions and rejected connections as errors, and
//! commands per second from `total_commands_processed`.

use super::{Ident, Kind, Sample, SampleFuture, Source};
use powertune_core::Targets;
use powertune_redis::{ConnOptions, RedisOptions, RedisUrl};
use std::time::{Duration, Instant};

pub struct Redis {
    options: RedisOptions,
    targets: Targets,
    last_commands: Option<(Instant, u64)>,
}

impl Redis {
    /// Checks the URL; nothing connects yet.
    pub fn new(url: &str) -> Result<Redis, String> {
        let url = RedisUrl::parse(url).map_err(|e| format!("--redis: {e}"))?;
        Ok(Redis {
            options: RedisOptions {
                conn: ConnOptions {
                    url,
                    timeout: Duration::from_secs(2),
                },
                slowlog: 1,
                baseline: None,
                scan: None,
            },
            targets: Targets::default(),
            last_commands: None,
        })
    }
}

impl Source for Redis {
    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async move {
            let Ok(i) = powertune_redis::inspect(&self.options, &self.targets).await else {
                return Vec::new();
            };
            let info = &i.metrics.info;
            let now = Instant::now();
            let ops = self.last_commands.and_then(|(t, n)| {
                let dt = now.duration_since(t).as_secs_f64();
                (dt > 0.0).then(|| info.total_commands_processed.saturating_sub(n) as f64 / dt)
            });
            self.last_commands = Some((now, info.total_commands_processed));
            let memory =
                (info.maxmemory > 0).then(|| info.used_memory as f64 / info.maxmemory as f64);
            vec![(
                Ident {
                    resource: format!("Redis {}", self.options.conn.url.redacted),
                    kind: Kind::Redis,
                    source: self.options.conn.url.redacted.clone(),
                    saturation_word: "blocked clients",
                    unit: "",
                },
                Sample {
                    utilisation: memory,
                    saturation: Some(info.blocked_clients as f64),
                    errors: Some((info.evicted_keys + info.rejected_connections) as f64),
                    used: ops,
                    capacity: None,
                    latency_ms: None,
                },
            )]
        })
    }
}
