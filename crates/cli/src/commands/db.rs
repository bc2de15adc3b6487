//! `powertune db`: the runbook's Database section against a real PostgreSQL
//! (`db`), the EXPLAIN analyzer (`db explain`) and the pool monitor (`db watch`).

use super::{block_on, emit_inspection, Context};
use crate::args::{self, duration_at_least, positive_duration_at_most};
use anyhow::anyhow;
use powertune_core::ExitCode;
use powertune_db::conninfo::PgEnv;
use powertune_db::inspect::{MAX_AGE, MAX_POOL_SIZE, MAX_TOP};
use powertune_db::watch::{MAX_INTERVAL, MIN_INTERVAL};
use powertune_db::{explain, DbOptions, ExplainOptions, RawDbConfig, WatchOptions};
use std::path::PathBuf;
use std::time::Duration;

/// The session timeouts the engine accepts: above zero, at most an hour.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

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
    /// EXPLAIN (ANALYZE, BUFFERS) one statement in a rolled-back transaction, or
    /// analyze a saved plan (--plan), and flag the runbook's red flags.
    Explain(ExplainArgs),
    /// Sample connections on an interval; alert when fewer than database.pool_free_min remain.
    Watch(WatchArgs),
}

/// How to reach PostgreSQL.
#[derive(clap::Args, Debug)]
struct Conn {
    /// PostgreSQL URL, e.g. postgres://app@db.internal:5432/app_production, or libpq's
    /// "host=... dbname=..." (a password in it is never printed). TLS as libpq:
    /// ?sslmode=disable|prefer|require|verify-ca|verify-full&sslrootcert=FILE|system
    /// &sslcert=FILE&sslkey=FILE. PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and
    /// PGSSLMODE/PGSSLROOTCERT/PGSSLCERT/PGSSLKEY fill what it leaves out.
    /// Default: $DATABASE_URL, else the PG* variables alone.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    url: Option<String>,
    /// statement_timeout of every query.
    #[arg(long, default_value = "5s", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_TIMEOUT))]
    statement_timeout: Duration,
    /// lock_timeout of every query.
    #[arg(long, default_value = "1s", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_TIMEOUT))]
    lock_timeout: Duration,
    /// How long to wait for the server to accept the connection.
    #[arg(long, default_value = "5s", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_TIMEOUT))]
    connect_timeout: Duration,
}

/// `db watch --interval`: at least 100ms, at most 1h.
fn watch_interval(s: &str) -> Result<Duration, String> {
    let d = duration_at_least(MIN_INTERVAL)(s)?;
    args::duration_at_most(MAX_INTERVAL)(s)?;
    Ok(d)
}

/// A duration as the engine's settings take it, exactly.
fn setting(d: Duration) -> String {
    format!("{}ns", d.as_nanos())
}

impl Conn {
    /// The settings as given; checked by the engine's `validate`.
    fn raw(&self) -> anyhow::Result<RawDbConfig> {
        let env = PgEnv::from_lookup(|k| std::env::var(k).ok());
        if self.url.is_none() && env.host.is_none() {
            return Err(anyhow!(
                "--url is required (or DATABASE_URL, or PGHOST), e.g. --url {}",
                powertune_db::config::URL_EXAMPLE
            ));
        }
        Ok(RawDbConfig {
            url: self.url.clone().unwrap_or_default(),
            statement_timeout: setting(self.statement_timeout),
            lock_timeout: setting(self.lock_timeout),
            connect_timeout: setting(self.connect_timeout),
            env: Box::new(env),
        })
    }
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    conn: Conn,
    /// The application's connection pool size, judged against the runbook's 25-50.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_POOL_SIZE as i64))]
    pool_size: Option<u32>,
    /// How many statements to list by total and by mean time.
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_TOP as i64))]
    top: u32,
    /// Queries active longer than this are stuck (default: database.stuck_query_s, 5m;
    /// above 0, at most 1d).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration_at_most(MAX_AGE))]
    stuck_after: Option<Duration>,
    /// Sessions idle in a transaction longer than this are flagged (above 0, at most 1d).
    #[arg(long, default_value = "1s", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_AGE))]
    idle_in_transaction_after: Duration,
    /// --baseline: the Space section shows each relation's growth since that run;
    /// --save-baseline: keep this run's relation sizes for a later --baseline.
    #[command(flatten)]
    baseline: args::Baseline,
    #[command(flatten)]
    output: args::Output,
}

#[derive(clap::Args, Debug)]
struct ExplainArgs {
    #[command(flatten)]
    conn: Conn,
    /// The statement, with $1, $2, ... placeholders.
    #[arg(value_name = "SQL", conflicts_with = "plan")]
    sql: Option<String>,
    /// A value for the next placeholder ($1 first); repeat for $2, $3, ...
    #[arg(long = "param", value_name = "VALUE")]
    params: Vec<String>,
    /// A setting for this EXPLAIN only (SET LOCAL), e.g. --set work_mem=64MB.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    settings: Vec<String>,
    /// Analyze a saved EXPLAIN (FORMAT JSON) output instead of running one.
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    /// Plan only: EXPLAIN without ANALYZE (nothing is executed).
    #[arg(long)]
    no_analyze: bool,
    /// Allow statements that write or lock rows (INSERT/UPDATE/DELETE/MERGE, also in a
    /// CTE; SELECT ... FOR UPDATE/SHARE; SELECT ... INTO): executed then rolled back,
    /// locking rows meanwhile. Without it they are refused before anything runs.
    #[arg(long)]
    allow_writes: bool,
    /// statement_timeout of the explained statement (at most 1h).
    #[arg(long, default_value = "10s", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_TIMEOUT))]
    timeout: Duration,
    #[command(flatten)]
    output: args::Output,
}

#[derive(clap::Args, Debug)]
struct WatchArgs {
    #[command(flatten)]
    conn: Conn,
    /// Time between samples (100ms to 1h).
    #[arg(long, default_value = "30s", value_name = "DURATION",
          value_parser = watch_interval)]
    interval: Duration,
    /// Stop after N samples (default: until Ctrl-C).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    match args.sub {
        Some(Sub::Explain(a)) => run_explain(ctx, a),
        Some(Sub::Watch(a)) => run_watch(ctx, a),
        None => run_check(ctx, args.check),
    }
}

fn run_check(ctx: &Context, a: CheckArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let options = DbOptions {
        connection: a.conn.raw()?,
        top: a.top as usize,
        pool_size: a.pool_size,
        stuck_after: a.stuck_after,
        idle_in_transaction_after: a.idle_in_transaction_after,
        baseline: a.baseline.baseline.clone(),
        save_baseline: a.baseline.save_baseline.clone(),
    };
    options.validate()?;
    let inspection = block_on(powertune_db::inspect(&options, &targets))??;
    emit_inspection(&inspection, &a.output)
}

fn run_explain(ctx: &Context, a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let options = match &a.plan {
        Some(path) => ExplainOptions::Saved {
            text: explain::read_plan_file(path)?,
            origin: format!("--plan {}", path.display()),
        },
        None => {
            let sql = a.sql.clone().ok_or_else(|| {
                anyhow!("give a statement (e.g. powertune db explain --url URL \"SELECT * FROM orders WHERE account_id = $1\" --param 42) or --plan FILE")
            })?;
            ExplainOptions::Run {
                request: explain::RawExplain {
                    sql,
                    params: a.params.clone(),
                    settings: a.settings.clone(),
                    no_analyze: a.no_analyze,
                    allow_writes: a.allow_writes,
                    generic: false,
                },
                timeout: a.timeout,
                connection: a.conn.raw()?,
            }
        }
    };
    options.validate()?;
    let inspection = block_on(explain::inspect(&options, &targets))??;
    emit_inspection(&inspection, &a.output)
}

fn run_watch(ctx: &Context, a: WatchArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let options = WatchOptions {
        interval: a.interval,
        count: a.count,
        connection: a.conn.raw()?,
    };
    options.validate()?;
    let alerts = block_on(powertune_db::watch(
        &options,
        &targets,
        |line, alert| {
            println!("{line}");
            if let Some(al) = alert {
                println!("{al}");
            }
        },
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    ))??;
    Ok(if alerts > 0 {
        ExitCode::Failed
    } else {
        ExitCode::Passed
    })
}
