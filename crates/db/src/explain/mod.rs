//! `powertune db explain`: one statement's plan against the runbook's red flags.
//!
//! The same pipeline as `db`: [`request`] checks what to explain before any
//! connection, [`collect`] runs the EXPLAIN in a rolled-back transaction (the only
//! I/O), [`snapshot`] parses its JSON into plain structs, [`judge`] flags the red
//! flags and turns them into findings, [`render`] draws the plan tree and builds the
//! typed metrics. [`inspect`] runs them in that order.

pub mod collect;
pub mod judge;
pub mod render;
pub mod request;
pub mod snapshot;
pub mod sql;

pub use collect::{run, script};
pub use judge::{analyze, filter_columns, findings, in_list_len, PlanFlag, PlanThresholds};
pub use render::{render_tree, ExplainMetrics};
pub use request::{ExplainRequest, RawExplain};
pub use snapshot::{parse_plan_text, parse_plan_value, PlanDoc, PlanNode, MAX_DEPTH};

use crate::config::RawDbConfig;
use crate::error::DbError;
use powertune_core::{Inspection, Targets};
use std::time::Duration;

/// The largest saved plan `--plan` reads (64 MiB); the read stops there.
pub const MAX_PLAN_BYTES: u64 = 64 * 1024 * 1024;

/// A saved plan file's text, at most [`MAX_PLAN_BYTES`] (a device or FIFO such as
/// `/dev/zero` is refused once past it, not read forever).
pub fn read_plan_file(path: &std::path::Path) -> Result<String, DbError> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| DbError::Config(format!("cannot read --plan {shown}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_PLAN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DbError::Config(format!("cannot read --plan {shown}: {e}")))?;
    if bytes.len() as u64 > MAX_PLAN_BYTES {
        return Err(DbError::Config(format!(
            "--plan {shown} is larger than the 64 MiB a saved plan may be"
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        DbError::Config(format!(
            "--plan {shown} is not UTF-8 text (expected EXPLAIN (FORMAT JSON) output)"
        ))
    })
}

/// The longest statement_timeout an EXPLAIN may be given (an hour).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where the plan comes from.
#[derive(Debug, Clone)]
pub enum ExplainOptions {
    /// A saved EXPLAIN (FORMAT JSON) output, as PostgreSQL or psql printed it;
    /// `origin` names it in errors (e.g. `--plan plan.json`).
    Saved { text: String, origin: String },
    /// EXPLAIN one statement on the server, with `timeout` as its `statement_timeout`.
    Run {
        connection: RawDbConfig,
        request: RawExplain,
        timeout: Duration,
    },
}

/// What [`ExplainOptions::validate`] checked, ready to run.
#[derive(Debug, Clone)]
pub enum ValidExplain {
    Saved {
        text: String,
        origin: String,
    },
    Run {
        connection: Box<crate::config::DbConfig>,
        request: ExplainRequest,
        timeout: Duration,
    },
}

impl ExplainOptions {
    /// Checks the statement, then the connection settings. No I/O.
    pub fn validate(&self) -> Result<ValidExplain, DbError> {
        Ok(match self {
            ExplainOptions::Saved { text, origin } => ValidExplain::Saved {
                text: text.clone(),
                origin: origin.clone(),
            },
            ExplainOptions::Run {
                connection,
                request,
                timeout,
            } => {
                let request = request.validate()?;
                if timeout.is_zero() || *timeout > MAX_TIMEOUT {
                    return Err(DbError::Config(format!(
                        "--timeout {} must be above 0 and at most 1h (e.g. --timeout 10s)",
                        powertune_core::duration::format(*timeout)
                    )));
                }
                ValidExplain::Run {
                    connection: Box::new(connection.validate()?),
                    request,
                    timeout: *timeout,
                }
            }
        })
    }
}

/// `db explain`: the plan (run or saved), its red flags as findings, the plan tree as
/// the terminal text.
pub async fn inspect(
    options: &ExplainOptions,
    targets: &Targets,
) -> Result<Inspection<ExplainMetrics>, DbError> {
    let (text, doc) = match options.validate()? {
        ValidExplain::Saved { text, origin } => {
            let doc =
                parse_plan_text(&text).map_err(|e| DbError::Parse(format!("{origin}: {e}")))?;
            (text, doc)
        }
        ValidExplain::Run {
            connection,
            request,
            timeout,
        } => {
            let text = run(&connection, &request, timeout).await?;
            let doc = parse_plan_text(&text)?;
            (text, doc)
        }
    };
    let flags = analyze(&doc, &PlanThresholds::from_targets(targets));
    let found = findings(&doc, &flags, targets);
    let tree = render_tree(&doc, &flags);
    Ok(Inspection::new(
        "db explain",
        found,
        ExplainMetrics::new(&doc, &flags, &text),
        tree,
    ))
}
