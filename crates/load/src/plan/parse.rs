//! The top of a scenario file: options, scenarios (in [`super::scenario`]) and
//! thresholds, validated into a [`Plan`].

use super::context::{Ctx, PlanError};
use super::file::{PlanFile, ThresholdItem, ThresholdList};
use super::model::{unmatched_tag, HttpVersion, Options, Plan};
use super::scenario::scenario;
use crate::catalogue::validate_threshold;
use powertune_core::config_file::Source;
use powertune_core::threshold::Threshold;
use std::path::{Path, PathBuf};
use std::time::Duration;

impl Plan {
    /// Reads and validates a scenario file. CSV data files are read relative to it.
    pub fn from_path(path: &Path) -> Result<Plan, PlanError> {
        let source = Source::read(path).map_err(|mut e| {
            e.message = format!(
                "{}; expected a TOML scenario file, e.g. examples/runbook.toml",
                e.message
            );
            e
        })?;
        Plan::parse(&source, path.parent().map(Path::to_path_buf))
    }

    /// Validates a scenario file held in memory; CSV paths are relative to the
    /// working directory.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Plan, PlanError> {
        Plan::parse(&Source::new(source, text), None)
    }

    /// The two passes: the file as written ([`super::file`], unknown keys and wrong
    /// types refused by `Source::deserialize`), then each part validated at its key.
    pub(super) fn parse(source: &Source, dir: Option<PathBuf>) -> Result<Plan, PlanError> {
        let mut cx = Ctx {
            source,
            dir,
            n_series: 0,
            n_checks: 0,
        };
        let file: PlanFile = source.deserialize().map_err(duration_example)?;
        let options = Options {
            base_url: file.options.base_url.clone(),
            http: match file.options.http.as_deref() {
                None | Some("auto") => HttpVersion::Auto,
                Some("1.1") | Some("http1") => HttpVersion::Http1,
                Some("2") | Some("h2") | Some("h2c") | Some("http2") => HttpVersion::Http2,
                Some(other) => {
                    return Err(cx.error(
                        "options.http",
                        format!(
                            "`{other}` is not an HTTP version, e.g. \"auto\", \"1.1\" or \"2\""
                        ),
                    ))
                }
            },
            connect_timeout: cx.positive(
                cx.opt_dur(
                    &file.options.connect_timeout,
                    "options.connect_timeout",
                    Duration::from_secs(10),
                )?,
                "options.connect_timeout",
                "connect_timeout = \"10s\"",
            )?,
            request_timeout: cx.positive(
                cx.opt_dur(
                    &file.options.request_timeout,
                    "options.request_timeout",
                    Duration::from_secs(60),
                )?,
                "options.request_timeout",
                "request_timeout = \"60s\"",
            )?,
            no_vu_connection_reuse: file.options.no_vu_connection_reuse,
            ca_cert: file.options.ca_cert.as_ref().map(|c| match &cx.dir {
                Some(dir) if Path::new(c).is_relative() => dir.join(c),
                _ => PathBuf::from(c),
            }),
            insecure_skip_tls_verify: file.options.insecure_skip_tls_verify,
            trace: file.options.trace,
        };
        if file.scenarios.is_empty() {
            return Err(cx.error(
                "scenarios",
                "none in the file, e.g. a [scenarios.login] table with endpoint_type, an executor and [[scenarios.login.steps]]",
            ));
        }
        let mut scenarios = Vec::new();
        for (name, sc) in &file.scenarios {
            scenarios.push(scenario(&mut cx, name, sc.get_ref())?);
        }
        // Scenarios run in file order of their start time; keep names stable.
        scenarios.sort_by(|a, b| {
            let oa = file.scenarios.get(&a.name).map_or(0, |s| s.span().start);
            let ob = file.scenarios.get(&b.name).map_or(0, |s| s.span().start);
            oa.cmp(&ob)
        });
        let mut thresholds = Vec::new();
        for (metric, list) in &file.thresholds {
            // Metric selectors may hold dots (`{url:/a.json}`): place errors by span.
            let at = Some(list.span().start);
            let key = format!("thresholds.{metric}");
            let items: Vec<&ThresholdItem> = match list.get_ref() {
                ThresholdList::One(i) => vec![i],
                ThresholdList::Many(v) => v.iter().collect(),
            };
            for item in items {
                let (expr, abort, delay) = match item {
                    ThresholdItem::Text(t) => (t.as_str(), false, None),
                    ThresholdItem::Full(f) => (
                        f.threshold.as_str(),
                        f.abort_on_fail,
                        f.delay_abort_eval.as_ref(),
                    ),
                };
                let mut t = Threshold::parse(metric, expr)
                    .map_err(|e| cx.error_at(at, &key, e.to_string()))?;
                t.abort_on_fail = abort;
                if let Some(d) = delay {
                    t.delay_abort_eval = Some(
                        powertune_core::duration::parse(d)
                            .map_err(|e| cx.error_at(at, &format!("{key}.delay_abort_eval"), e))?,
                    );
                }
                validate_threshold(&t).map_err(|m| cx.error_at(at, &key, m))?;
                if let Some(why) = unmatched_tag(&scenarios, &t) {
                    return Err(cx.error_at(at, &key, why));
                }
                thresholds.push(t);
            }
        }
        Ok(Plan {
            source: source.path.clone(),
            options,
            scenarios,
            thresholds,
            n_series: cx.n_series,
            n_checks: cx.n_checks,
            segment: crate::segment::Share::whole(),
        })
    }
}

/// Keys whose values are durations: strings with a unit.
const DURATION_KEYS: &[&str] = &[
    "connect_timeout",
    "request_timeout",
    "delay_abort_eval",
    "duration",
    "ramp_up",
    "ramp_down",
    "max_duration",
    "time_unit",
    "start_time",
    "graceful_stop",
    "sleep",
    "hold",
    "timeout",
    "duration_below",
];

/// A duration written as a bare number gets the right spelling as its example.
fn duration_example(mut e: PlanError) -> PlanError {
    let last = e.key.rsplit('.').next().unwrap_or("");
    let last = last.split('[').next().unwrap_or(last);
    if DURATION_KEYS.contains(&last) && e.message.starts_with("invalid type") {
        e.message
            .push_str(", e.g. \"30s\" (durations are strings with a unit)");
    }
    e
}
