//! A PostgreSQL server (`--db`), in the USE method's terms:
//!
//! - **utilisation**: client connections against the usable `max_connections`
//!   (less `superuser_reserved_connections`);
//! - **saturation**: backends of the URL's database waiting for a heavyweight lock
//!   (`wait_event_type = 'Lock'`), and the share of its active backends' samples in
//!   each wait event type;
//! - per step, the `pg_stat_statements` delta: the heaviest statements by time spent
//!   within the step.
//!
//! At each step's start and end the server is read through `powertune db`'s
//! inspection entry (`max_connections`, the statements); during the step its
//! `pg_stat_activity` reader (the one `db` and `db watch` use, one round trip on one
//! held connection) runs every [`WAIT_INTERVAL`] — several times a second — in a task
//! of its own, so a slow reply never delays the other sources.

use super::{
    BeginFuture, EndFuture, Ident, Kind, Part, Sample, SampleFuture, Source, StepDetail,
    StepStatement,
};
use powertune_core::Targets;
use powertune_db::snapshot::StatementsState;
use powertune_db::{DbOptions, RawDbConfig};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Time between `pg_stat_activity` samples within a step.
pub const WAIT_INTERVAL: Duration = Duration::from_millis(200);
/// Statements listed per step.
pub const TOP_STATEMENTS: usize = 5;
/// Statements read at each step boundary (the heaviest by total time).
pub const READ_STATEMENTS: usize = powertune_db::inspect::MAX_TOP;
/// A statement's text is cut to this many characters.
const QUERY_CHARS: usize = 200;

/// Wait event types that are not work waiting for the server: an active backend
/// reading from its client, or a background process idling.
const NOT_SATURATION: &[&str] = &["Client", "Activity"];

/// What the sampling task has seen since it was last drained.
#[derive(Debug, Default)]
struct Window {
    polls: u32,
    connections: f64,
    connections_max: f64,
    lock_waits: f64,
}

/// What it has seen over the whole step: active backends' samples by wait event
/// type.
#[derive(Debug, Default)]
struct StepWaits {
    active: u64,
    by_type: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct Shared {
    window: Window,
    step: StepWaits,
}

type Totals = HashMap<(i64, String), (i64, f64, String)>;

pub struct Postgres {
    options: DbOptions,
    redacted: String,
    targets: Targets,
    usable: Option<f64>,
    /// The URL's database: wait events are counted for its backends only.
    database: Option<String>,
    /// Statements at the step's start, and whether that was every statement.
    start: Option<(Totals, bool)>,
    shared: Arc<Mutex<Shared>>,
    poller: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    interval: Duration,
}

impl Postgres {
    /// Checks the URL; nothing connects yet. `interval` is the resource sample
    /// interval: the wait sampler runs at [`WAIT_INTERVAL`] or faster.
    pub fn new(url: &str, interval: Duration) -> Result<Postgres, String> {
        let mut options = DbOptions::new(RawDbConfig::new(url));
        options.top = READ_STATEMENTS;
        let cfg = options.validate().map_err(|e| format!("--db: {e}"))?;
        Ok(Postgres {
            redacted: cfg.redacted_url.clone(),
            options,
            targets: Targets::default(),
            usable: None,
            database: None,
            start: None,
            shared: Arc::default(),
            poller: None,
            interval: WAIT_INTERVAL.min(interval),
        })
    }

    fn ident(&self) -> Ident {
        Ident {
            resource: format!("PostgreSQL {}", self.redacted),
            kind: Kind::Database,
            source: self.redacted.clone(),
            saturation_word: "lock waits",
            unit: "connections",
        }
    }

    /// Reads the server through `powertune db`'s entry: the usable connections and
    /// the statements' totals.
    async fn read(&mut self) -> Option<(Totals, bool)> {
        let i = powertune_db::inspect(&self.options, &self.targets)
            .await
            .ok()?;
        let c = &i.metrics.connections;
        self.usable = Some(c.usable as f64);
        self.database = Some(i.metrics.server.database.clone());
        match &i.metrics.pg_stat_statements {
            StatementsState::Available {
                statements,
                total_statements,
                ..
            } => {
                let all = *total_statements as usize <= statements.len();
                let totals = statements
                    .iter()
                    .map(|s| {
                        (
                            (s.queryid, s.user.clone()),
                            (s.calls, s.total_ms, s.query.clone()),
                        )
                    })
                    .collect();
                Some((totals, all))
            }
            _ => Some((Totals::new(), false)),
        }
    }

    fn stop_poller(&mut self) {
        if let Some((stop, task)) = self.poller.take() {
            stop.cancel();
            task.abort();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_poller();
    }
}

/// The statements' work between two readings, heaviest first. A statement missing
/// from the start counts from zero only when the start listed every statement (it
/// is new); otherwise it is left out (its start is unknown).
pub fn delta(start: &Totals, start_complete: bool, end: &Totals, top: usize) -> Vec<StepStatement> {
    let mut out: Vec<StepStatement> = end
        .iter()
        .filter_map(|(key, (calls, total, query))| {
            let (c0, t0) = match start.get(key) {
                Some((c, t, _)) => (*c, *t),
                None if start_complete => (0, 0.0),
                None => return None,
            };
            let calls = calls - c0;
            let total_ms = total - t0;
            (calls > 0 && total_ms > 0.0).then(|| StepStatement {
                queryid: key.0,
                query: query.chars().take(QUERY_CHARS).collect(),
                calls,
                total_ms,
                mean_ms: total_ms / calls as f64,
            })
        })
        .collect();
    out.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    out.truncate(top);
    out
}

/// One `pg_stat_activity` sample into the shared figures: every client connection
/// counts against `max_connections`; waits are those of `database`'s backends.
fn record(
    shared: &Mutex<Shared>,
    sessions: &[powertune_db::snapshot::Session],
    database: Option<&str>,
) {
    let Ok(mut g) = shared.lock() else { return };
    let n = sessions.len() as f64;
    let mut locks = 0.0;
    for s in sessions.iter().filter(|s| {
        s.state.as_deref() == Some("active")
            && (database.is_none() || s.database.as_deref() == database)
    }) {
        g.step.active += 1;
        let Some(t) = s.wait_event_type.as_deref() else {
            continue;
        };
        if NOT_SATURATION.contains(&t) {
            continue;
        }
        if t == "Lock" {
            locks += 1.0;
        }
        *g.step.by_type.entry(t.to_string()).or_insert(0) += 1;
    }
    let w = &mut g.window;
    w.polls += 1;
    w.connections += n;
    w.connections_max = w.connections_max.max(n);
    w.lock_waits += locks;
}

impl Source for Postgres {
    fn begin(&mut self) -> BeginFuture<'_> {
        Box::pin(async move {
            self.stop_poller();
            if let Ok(mut g) = self.shared.lock() {
                *g = Shared::default();
            }
            self.start = self.read().await;
            let Ok(cfg) = self.options.connection.validate() else {
                return;
            };
            let stop = CancellationToken::new();
            let (shared, every, token) = (self.shared.clone(), self.interval, stop.clone());
            let database = self.database.clone();
            let task = tokio::spawn(async move {
                let Ok(mut session) = powertune_db::collect::connect(&cfg).await else {
                    return;
                };
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = token.cancelled() => return,
                    }
                    match powertune_db::collect::read_sessions(&mut session).await {
                        Ok(s) => record(&shared, &s, database.as_deref()),
                        Err(_) => return,
                    }
                }
            });
            self.poller = Some((stop, task));
        })
    }

    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async move {
            let w = match self.shared.lock() {
                Ok(mut g) => std::mem::take(&mut g.window),
                Err(_) => return Vec::new(),
            };
            if w.polls == 0 {
                return Vec::new();
            }
            let polls = w.polls as f64;
            let mean = w.connections / polls;
            vec![(
                self.ident(),
                Sample {
                    utilisation: self.usable.filter(|u| *u > 0.0).map(|u| mean / u),
                    saturation: Some(w.lock_waits / polls),
                    errors: None,
                    used: Some(w.connections_max),
                    capacity: self.usable,
                    latency_ms: None,
                },
            )]
        })
    }

    fn end(&mut self) -> EndFuture<'_> {
        Box::pin(async move {
            self.stop_poller();
            let waits = match self.shared.lock() {
                Ok(mut g) => std::mem::take(&mut g.step),
                Err(_) => StepWaits::default(),
            };
            let mut detail = StepDetail::default();
            if waits.active > 0 {
                let mut parts: Vec<Part> = waits
                    .by_type
                    .iter()
                    .map(|(name, n)| Part {
                        name: name.clone(),
                        share: *n as f64 / waits.active as f64,
                    })
                    .collect();
                parts.sort_by(|a, b| b.share.total_cmp(&a.share));
                detail.parts.push((self.ident().resource, parts));
            }
            if let (Some((start, complete)), Some((end, _))) =
                (self.start.take(), self.read().await)
            {
                detail.statements = delta(&start, complete, &end, TOP_STATEMENTS);
            }
            detail
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(rows: &[(i64, i64, f64)]) -> Totals {
        rows.iter()
            .map(|(id, c, t)| ((*id, "app".to_string()), (*c, *t, format!("q{id}"))))
            .collect()
    }

    #[test]
    fn the_delta_ranks_the_step_s_work_and_skips_unknown_starts() {
        let start = totals(&[(1, 10, 100.0), (2, 5, 900.0)]);
        let end = totals(&[(1, 110, 2100.0), (2, 6, 950.0), (3, 4, 400.0)]);
        let d = delta(&start, true, &end, 5);
        assert_eq!(
            d.iter().map(|s| s.queryid).collect::<Vec<_>>(),
            vec![1, 3, 2]
        );
        assert_eq!(d[0].calls, 100);
        assert_eq!(d[0].total_ms, 2000.0);
        assert_eq!(d[0].mean_ms, 20.0);
        // The start was not complete: statement 3's start is unknown.
        let d = delta(&start, false, &end, 5);
        assert_eq!(d.iter().map(|s| s.queryid).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(delta(&start, true, &end, 1).len(), 1);
        // Nothing ran: nothing listed.
        assert!(delta(&end, true, &end, 5).is_empty());
    }

    #[test]
    fn active_lock_waits_of_the_database_count_and_client_reads_do_not() {
        let shared = Mutex::new(Shared::default());
        let s = |state: &str, wait: Option<&str>| powertune_db::snapshot::Session {
            pid: 1,
            database: Some("app".into()),
            user: None,
            application: String::new(),
            client_addr: None,
            state: Some(state.into()),
            query: None,
            query_age_s: None,
            state_age_s: None,
            xact_age_s: None,
            wait_event_type: wait.map(String::from),
            wait_event: None,
            blocked_by: Vec::new(),
        };
        let mut other = s("active", Some("Lock"));
        other.database = Some("other".into());
        record(
            &shared,
            &[
                other,
                s("active", Some("Lock")),
                s("active", Some("Lock")),
                s("active", Some("LWLock")),
                s("active", None),
                s("active", Some("Client")),
                s("idle", Some("Client")),
            ],
            Some("app"),
        );
        let g = shared.lock().unwrap();
        assert_eq!(g.window.connections, 7.0);
        assert_eq!(g.window.lock_waits, 2.0);
        assert_eq!(g.step.active, 5);
        assert_eq!(g.step.by_type.get("Lock"), Some(&2));
        assert_eq!(g.step.by_type.get("LWLock"), Some(&1));
        assert_eq!(g.step.by_type.get("Client"), None);
    }
}
