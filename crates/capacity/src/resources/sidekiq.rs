//! Sidekiq (`--queues`, the Redis database Sidekiq uses), read through `powertune
//! queues`' inspection entry with the smallest reads it allows (one retry job, no
//! dead jobs, one day of stats, no per-minute metrics):
//!
//! - **utilisation**: busy threads against the live processes' concurrency (from
//!   each process hash);
//! - **saturation**: jobs enqueued, every queue together;
//! - the longest **queue latency** (now − the oldest job's `enqueued_at`);
//! - **errors**: the `stat:failed` counter's increase (shown, not judged: failed jobs
//!   are the application's).

use super::{Ident, Kind, Sample, SampleFuture, Source};
use powertune_core::Targets;
use powertune_redis::sidekiq::{Options, QueuesOptions};
use powertune_redis::{ConnOptions, RedisUrl};
use std::time::Duration;

pub struct Sidekiq {
    options: QueuesOptions,
    targets: Targets,
}

impl Sidekiq {
    /// Checks the URL; nothing connects yet.
    pub fn new(url: &str) -> Result<Sidekiq, String> {
        let url = RedisUrl::parse(url).map_err(|e| format!("--queues: {e}"))?;
        let options = QueuesOptions {
            conn: ConnOptions {
                url,
                timeout: Duration::from_secs(2),
            },
            read: Options {
                retry_sample: 1,
                dead_newest: 0,
                days: 1,
                metrics_minutes: 0,
                ..Options::default()
            },
            watch: None,
        };
        options.validate().map_err(|e| format!("--queues: {e}"))?;
        Ok(Sidekiq {
            options,
            targets: Targets::default(),
        })
    }
}

impl Source for Sidekiq {
    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async move {
            let Ok(i) = powertune_redis::sidekiq::inspect(&self.options, &self.targets).await
            else {
                return Vec::new();
            };
            let s = &i.metrics.sidekiq;
            let concurrency: u64 = s.processes.iter().map(|p| p.concurrency).sum();
            let busy: u64 = s.processes.iter().map(|p| p.busy).sum();
            let enqueued: u64 = s.queues.iter().map(|q| q.size).sum();
            let latency = s.queues.iter().map(|q| q.latency_s).fold(0.0_f64, f64::max);
            let url = &self.options.conn.url.redacted;
            vec![(
                Ident {
                    resource: format!("Sidekiq {url}"),
                    kind: Kind::Workers,
                    source: url.clone(),
                    saturation_word: "enqueued",
                    unit: "busy",
                },
                Sample {
                    utilisation: (concurrency > 0).then(|| busy as f64 / concurrency as f64),
                    saturation: Some(enqueued as f64),
                    errors: Some(s.failed as f64),
                    used: (concurrency > 0).then_some(busy as f64),
                    capacity: (concurrency > 0).then_some(concurrency as f64),
                    latency_ms: Some(latency * 1000.0),
                },
            )]
        })
    }
}
