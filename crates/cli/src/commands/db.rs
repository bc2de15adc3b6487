//! `powertune db`: the runbook's Database section against a real PostgreSQL
//! (`db`), the EXPLAIN analyzer (`db explain`) and the pool monitor (`db watch`).

use super::{block_on, emit, Context};
use anyhow::{anyhow, Context as _};
use powertune_core::{ExitCode, Report};
use powertune_db::{explain, DbOptions, ExplainOptions, RawDbConfig, WatchOptions};
use std::path::{Path, PathBuf};
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
    /// EXPLAIN (ANALYZE, BUFFERS) one statement in a rolled-back transaction, or
    /// analyze a saved plan (--plan), and flag the runbook's red flags.
    Explain(ExplainArgs),
    /// Sample connections on an interval; alert when fewer than database.pool_free_min remain.
    Watch(WatchArgs),
}

/// How to reach PostgreSQL.
#[derive(clap::Args, Debug)]
struct Conn {
    /// PostgreSQL URL, e.g. postgres://app@db.internal:5432/app_production (a password
    /// in it is never printed). Default: $DATABASE_URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    url: Option<String>,
    /// statement_timeout of every query.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    statement_timeout: String,
    /// lock_timeout of every query.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    lock_timeout: String,
    /// How long to wait for the server to accept the connection.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    connect_timeout: String,
}

impl Conn {
    /// The settings as given; checked by the engine's `validate`.
    fn raw(&self) -> anyhow::Result<RawDbConfig> {
        let url = self.url.as_deref().ok_or_else(|| {
            anyhow!(
                "--url is required (or DATABASE_URL), e.g. --url {}",
                powertune_db::config::URL_EXAMPLE
            )
        })?;
        Ok(RawDbConfig {
            url: url.to_string(),
            statement_timeout: self.statement_timeout.clone(),
            lock_timeout: self.lock_timeout.clone(),
            connect_timeout: self.connect_timeout.clone(),
        })
    }
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    conn: Conn,
    /// The application's connection pool size, judged against the runbook's 25-50.
    #[arg(long, value_name = "N")]
    pool_size: Option<u32>,
    /// How many statements to list by total and by mean time.
    #[arg(long, default_value_t = 10, value_name = "N")]
    top: usize,
    /// Queries active longer than this are stuck (default: database.stuck_query_s, 5m).
    #[arg(long, value_name = "DURATION")]
    stuck_after: Option<String>,
    /// Sessions idle in a transaction longer than this are flagged.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    idle_in_transaction_after: String,
    /// Also write the report as JSON to FILE (`-` for standard output only).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
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
    /// Allow INSERT/UPDATE/DELETE/MERGE: executed then rolled back, locking rows meanwhile.
    #[arg(long)]
    allow_writes: bool,
    /// statement_timeout of the explained statement.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    timeout: String,
    /// Also write the report as JSON to FILE (`-` for standard output only).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct WatchArgs {
    #[command(flatten)]
    conn: Conn,
    /// Time between samples.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    interval: String,
    /// Stop after N samples (default: until Ctrl-C).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    match args.sub {
        Some(Sub::Explain(a)) => run_explain(ctx, a),
        Some(Sub::Watch(a)) => run_watch(ctx, a),
        None => run_check(ctx, args.check),
    }
}

fn duration_flag(flag: &str, text: &str) -> anyhow::Result<Duration> {
    powertune_core::duration::parse(text).map_err(|e| anyhow!("{flag}: {e}"))
}

/// Shows an inspection the one way every command does.
fn emit_inspection(
    report: Result<Report, serde_json::Error>,
    text: &str,
    json: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let report = report.map_err(|e| anyhow!("cannot build the report: {e}"))?;
    emit(&report, text, json)
}

fn run_check(ctx: &Context, a: CheckArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let stuck_after = a
        .stuck_after
        .as_deref()
        .map(|s| duration_flag("--stuck-after", s))
        .transpose()?;
    let idle_in_transaction_after =
        duration_flag("--idle-in-transaction-after", &a.idle_in_transaction_after)?;
    let options = DbOptions {
        connection: a.conn.raw()?,
        top: a.top,
        pool_size: a.pool_size,
        stuck_after,
        idle_in_transaction_after,
    };
    options.validate()?;
    let inspection = block_on(powertune_db::inspect(&options, &targets))??;
    emit_inspection(inspection.report(), &inspection.text, a.json.as_deref())
}

fn run_explain(ctx: &Context, a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let options = match &a.plan {
        Some(path) => ExplainOptions::Saved {
            text: std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --plan {}", path.display()))?,
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
                },
                timeout: duration_flag("--timeout", &a.timeout)?,
                connection: a.conn.raw()?,
            }
        }
    };
    options.validate()?;
    let inspection = block_on(explain::inspect(&options, &targets))??;
    emit_inspection(inspection.report(), &inspection.text, a.json.as_deref())
}

fn run_watch(ctx: &Context, a: WatchArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let options = WatchOptions {
        interval: duration_flag("--interval", &a.interval)?,
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
