//! `powertune redis`: the runbook's "Redis Tuning" and "Caching Strategy" checks
//! (INFO, SLOWLOG, a key scan with cache types) against a real Redis; `redis keys` is
//! the full key scan.

use super::{block_on, emit_inspection, Context};
use crate::args;
use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressStyle};
use is_terminal::IsTerminal;
use powertune_core::ExitCode;
use powertune_redis::baseline::Baseline;
use powertune_redis::conn::{ConnOptions, RedisUrl};
use powertune_redis::keys::{self, KeysOptions, ScanOptions};
use powertune_redis::RedisOptions;
use std::time::Duration;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    sub: Option<Sub>,
    #[command(flatten)]
    check: CheckArgs,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Scan every key: biggest keys by memory, keys without TTL by prefix, memory and
    /// key count per prefix, cache types.
    Keys(KeysArgs),
}

/// How to reach Redis.
#[derive(clap::Args, Debug)]
pub struct ConnArgs {
    /// Redis URL with the database index, e.g. redis://cache:6379/0, or with TLS
    /// rediss://USER:PASSWORD@cache:6380/0 (an ACL user; a password in it is never
    /// printed). Default: $REDIS_URL.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    pub url: Option<String>,
    /// With rediss://: trust only this CA (PEM) for the server's certificate instead
    /// of the system's CAs.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// With rediss://: encrypt but do not check the server's certificate (as the
    /// URL fragment #insecure).
    #[arg(long, conflicts_with = "tls_ca")]
    pub tls_insecure: bool,
    /// How long to wait for the connection and for each reply.
    #[arg(long, default_value = "5s", value_name = "DURATION",
          value_parser = args::positive_duration)]
    pub timeout: Duration,
}

impl ConnArgs {
    pub fn validate(&self) -> anyhow::Result<ConnOptions> {
        let url = self.url.as_deref().ok_or_else(|| {
            anyhow!("--url is required (or REDIS_URL), e.g. --url redis://127.0.0.1:6379/0")
        })?;
        Ok(ConnOptions {
            url: RedisUrl::parse(url)?.with_tls(self.tls_ca.as_deref(), self.tls_insecure)?,
            timeout: self.timeout,
        })
    }
}

/// How to scan keys.
#[derive(clap::Args, Debug)]
struct ScanArgs {
    /// SCAN's COUNT hint: keys per SCAN call.
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    count: u32,
    /// Only keys matching this glob (SCAN MATCH), e.g. 'cache:*'.
    #[arg(long, value_name = "GLOB")]
    pattern: Option<String>,
    /// At most this many keys per second (spares a production server), e.g. 5000/s.
    #[arg(long, value_name = "RATE", value_parser = args::rate)]
    rate: Option<f64>,
    /// Biggest keys to list.
    #[arg(long, default_value_t = 20, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    top: u32,
    /// Key segments (split on ':') that make a prefix group.
    #[arg(long, default_value_t = 2, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=8))]
    prefix_depth: u32,
    /// Prefix groups kept; the rest are folded into "(other)".
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_prefixes: u32,
}

impl ScanArgs {
    fn options(
        &self,
        t: &powertune_core::Targets,
        sample: Option<u64>,
    ) -> anyhow::Result<ScanOptions> {
        let mut o = ScanOptions::new(&t.redis, &t.cache);
        o.count = self.count;
        o.pattern = self.pattern.clone();
        // Whole keys per second, at least one: `args::rate` is above zero and at most
        // 10,000,000/s, so the rounded-up value fits.
        o.rate = self.rate.map(|r| r.ceil() as u32);
        o.top = self.top as usize;
        o.prefix_depth = self.prefix_depth as usize;
        o.max_prefixes = self.max_prefixes as usize;
        o.sample = sample;
        o.validate()?;
        Ok(o)
    }
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    output: args::Output,
    // instantaneous_ops_per_sec is judged against the baseline's (> 2× is the alert).
    #[command(flatten)]
    baseline: args::Baseline,
    /// SLOWLOG entries to read.
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=128))]
    slowlog: u32,
    /// Keys the summary scan looks at before extrapolating (`redis keys` scans all).
    #[arg(long, default_value_t = 100_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    sample: u64,
    /// Skip the key scan.
    #[arg(long)]
    no_scan: bool,
    #[command(flatten)]
    scan: ScanArgs,
}

#[derive(clap::Args, Debug)]
struct KeysArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    output: args::Output,
    /// Stop after N keys and extrapolate (default: scan every key).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    sample: Option<u64>,
    #[command(flatten)]
    scan: ScanArgs,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    match args.sub {
        Some(Sub::Keys(k)) => keys(ctx, k),
        None => check(ctx, args.check),
    }
}

fn check(ctx: &Context, a: CheckArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let conn = a.conn.validate()?;
    let scan = (!a.no_scan)
        .then(|| a.scan.options(&targets, Some(a.sample)))
        .transpose()?;
    let baseline = a
        .baseline
        .baseline
        .as_deref()
        .map(Baseline::load)
        .transpose()?;
    let opts = RedisOptions {
        conn,
        slowlog: a.slowlog,
        baseline,
        scan,
    };
    opts.validate()?;
    let bar = ScanBar::new(opts.scan.is_some());
    let inspection = block_on(powertune_redis::inspect_with(
        &opts,
        &targets,
        &|n, total| bar.update(n, total),
    ));
    bar.finish();
    let inspection = inspection??;
    if let Some(path) = &a.baseline.save_baseline {
        let info = &inspection.metrics.info;
        info.baseline(&opts.conn.url.redacted).save(path)?;
        eprintln!(
            "baseline saved to {} ({:.0} ops/s)",
            path.display(),
            info.instantaneous_ops_per_sec
        );
    }
    emit_inspection(&inspection, &a.output)
}

fn keys(ctx: &Context, a: KeysArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let opts = KeysOptions {
        conn: a.conn.validate()?,
        scan: a.scan.options(&targets, a.sample)?,
    };
    let bar = ScanBar::new(true);
    let inspection = block_on(keys::inspect_with(&opts, &targets, &|n, total| {
        bar.update(n, total)
    }));
    bar.finish();
    let inspection = inspection??;
    emit_inspection(&inspection, &a.output)
}

/// The key scan's progress bar: drawn on standard error, only when it is a terminal
/// (and only when a scan runs).
struct ScanBar {
    bar: Option<ProgressBar>,
}

impl ScanBar {
    fn new(scanning: bool) -> ScanBar {
        if !scanning || !std::io::stderr().is_terminal() {
            return ScanBar { bar: None };
        }
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} scanning keys {pos}/{len} [{bar:30}] {per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        ScanBar { bar: Some(bar) }
    }

    /// Records `scanned` of `total` keys.
    fn update(&self, scanned: u64, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total.max(scanned));
            b.set_position(scanned);
        }
    }

    /// Removes the bar.
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
