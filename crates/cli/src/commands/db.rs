//! `powertune db`: the runbook's Database section against a real PostgreSQL
//! (`db`), the EXPLAIN analyzer (`db explain`) and the pool monitor (`db watch`).

use super::{block_on, emit, Context};
use anyhow::{anyhow, Context as _};
use powertune_core::report::{table, truncate};
use powertune_core::{ExitCode, Report};
use powertune_db::collect::CollectOptions;
use powertune_db::judge::{count_connections, one_line};
use powertune_db::plan::{self, PlanThresholds};
use powertune_db::snapshot::StatementsState;
use powertune_db::{explain, watch, DbSnapshot, RawDbConfig};
use std::path::PathBuf;

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
    fn config(&self) -> anyhow::Result<powertune_db::DbConfig> {
        let url = self.url.as_deref().ok_or_else(|| {
            anyhow!(
                "--url is required (or DATABASE_URL), e.g. --url {}",
                powertune_db::config::URL_EXAMPLE
            )
        })?;
        let raw = RawDbConfig {
            url: url.to_string(),
            statement_timeout: self.statement_timeout.clone(),
            lock_timeout: self.lock_timeout.clone(),
            connect_timeout: self.connect_timeout.clone(),
        };
        Ok(raw.validate()?)
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

fn run_check(ctx: &Context, a: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut targets = ctx.targets()?;
    if let Some(s) = &a.stuck_after {
        let d = powertune_core::duration::parse(s).map_err(|e| anyhow!("--stuck-after: {e}"))?;
        targets.database.stuck_query_s = d.as_secs_f64().max(0.001);
    }
    if a.top == 0 || a.top > 1000 {
        return Err(anyhow!(
            "--top {} must be between 1 and 1000 (e.g. --top 20)",
            a.top
        ));
    }
    let cfg = a.conn.config()?;
    let opts = CollectOptions {
        top: a.top,
        slow_mean_ms: targets.database.max_query_ms,
        pool_size: a.pool_size,
    };
    let snap = block_on(powertune_db::collect::collect(&cfg, &opts))??;
    let findings = powertune_db::judge::judge(&snap, &targets);
    let report = Report::new("db", findings, metrics(&snap));
    emit(&report, &details(&snap, a.top), a.json.as_deref())
}

fn metrics(s: &DbSnapshot) -> serde_json::Value {
    let conns = count_connections(&s.server, &s.sessions, true);
    serde_json::json!({
        "server": s.server,
        "round_trips": s.round_trips,
        "tables": s.tables.len(),
        "indexes": s.indexes.len(),
        "foreign_keys": s.foreign_keys.len(),
        "connections": conns,
        "pg_stat_statements": s.statements,
    })
}

fn details(s: &DbSnapshot, top: usize) -> String {
    let c = count_connections(&s.server, &s.sessions, true);
    let mut out = format!(
        "{} · database {} · role {}{} · {} queries\nconnections: {} used, {} free of {} (active {}, idle {}, idle in transaction {})\n",
        s.server.version.split(" on ").next().unwrap_or(&s.server.version),
        s.server.database,
        s.server.user,
        if s.server.read_all_stats { " (sees all stats)" } else { " (no pg_read_all_stats)" },
        s.round_trips,
        c.total,
        c.free,
        c.usable,
        c.active,
        c.idle,
        c.idle_in_transaction
    );
    if let StatementsState::Available {
        statements,
        total_statements,
        ..
    } = &s.statements
    {
        let mut sorted = statements.clone();
        for (title, by_mean) in [("total", false), ("mean", true)] {
            if by_mean {
                sorted.sort_by(|a, b| b.mean_ms.total_cmp(&a.mean_ms));
            } else {
                sorted.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
            }
            let mut rows = vec![["total ms", "calls", "mean ms", "rows", "hit %", "query"]
                .map(String::from)
                .to_vec()];
            for st in sorted.iter().take(top) {
                rows.push(vec![
                    format!("{:.0}", st.total_ms),
                    st.calls.to_string(),
                    format!("{:.1}", st.mean_ms),
                    st.rows.to_string(),
                    format!("{:.1}", st.hit_pct()),
                    truncate(&one_line(&st.query), 70),
                ]);
            }
            out.push_str(&format!(
                "\ntop statements by {title} time ({total_statements} in pg_stat_statements)\n"
            ));
            out.push_str(&table(&rows));
        }
    }
    out
}

fn run_explain(ctx: &Context, a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let text = match &a.plan {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --plan {}", path.display()))?,
        None => {
            let sql = a.sql.clone().ok_or_else(|| {
                anyhow!("give a statement (e.g. powertune db explain --url URL \"SELECT * FROM orders WHERE account_id = $1\" --param 42) or --plan FILE")
            })?;
            let req = explain::RawExplain {
                sql,
                params: a.params.clone(),
                settings: a.settings.clone(),
                no_analyze: a.no_analyze,
                allow_writes: a.allow_writes,
            }
            .validate()?;
            let timeout = powertune_core::duration::parse(&a.timeout)
                .map_err(|e| anyhow!("--timeout: {e}"))?;
            let cfg = a.conn.config()?;
            block_on(explain::run(&cfg, &req, timeout))??
        }
    };
    let doc = match &a.plan {
        Some(path) => {
            plan::parse_plan_text(&text).with_context(|| format!("--plan {}", path.display()))?
        }
        None => plan::parse_plan_text(&text)?,
    };
    let flags = plan::analyze(&doc, &PlanThresholds::from_targets(&targets));
    let findings = plan::findings(&doc, &flags, &targets);
    let report = Report::new(
        "db explain",
        findings,
        serde_json::json!({
            "execution_ms": doc.execution_ms,
            "planning_ms": doc.planning_ms,
            "flags": flags,
            "plan": serde_json::from_str::<serde_json::Value>(&text).unwrap_or(serde_json::Value::Null),
        }),
    );
    emit(&report, &plan::render_tree(&doc, &flags), a.json.as_deref())
}

fn run_watch(ctx: &Context, a: WatchArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let interval =
        powertune_core::duration::parse(&a.interval).map_err(|e| anyhow!("--interval: {e}"))?;
    if interval < std::time::Duration::from_millis(100) {
        return Err(anyhow!(
            "--interval {} is too short (at least 100ms, e.g. 30s)",
            a.interval
        ));
    }
    if a.count == Some(0) {
        return Err(anyhow!("--count must be at least 1 (e.g. --count 10)"));
    }
    let cfg = a.conn.config()?;
    let free_min = targets.database.pool_free_min;
    let alerts = block_on(async move {
        let session = powertune_db::collect::connect(&cfg).await?;
        let session = std::sync::Arc::new(tokio::sync::Mutex::new(session));
        watch::run(
            interval,
            a.count,
            free_min,
            || {
                let s = session.clone();
                async move { watch::sample(&mut *s.lock().await).await }
            },
            |line, alert| {
                println!("{line}");
                if let Some(al) = alert {
                    println!("{al}");
                }
            },
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await
    })??;
    Ok(if alerts > 0 {
        ExitCode::Failed
    } else {
        ExitCode::Passed
    })
}
