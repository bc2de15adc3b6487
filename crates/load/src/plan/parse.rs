//! The top of a scenario file: options, scenarios (in [`super::scenario`]) and
//! thresholds, validated into a [`Plan`].

use super::context::{dur, opt_dur, Ctx, PlanError};
use super::file::{PlanFile, ThresholdItem, ThresholdList};
use super::model::{HttpVersion, Options, Plan};
use super::scenario::scenario;
use crate::catalogue::validate_threshold;
use powertune_core::threshold::Threshold;
use std::path::{Path, PathBuf};
use std::time::Duration;

impl Plan {
    /// Reads and validates a scenario file. CSV data files are read relative to it.
    pub fn from_path(path: &Path) -> Result<Plan, PlanError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::Read {
            path: shown.clone(),
            reason: format!("{e} (expected a TOML scenario file, e.g. examples/runbook.toml)"),
        })?;
        Plan::parse(&text, &shown, path.parent().map(Path::to_path_buf))
    }

    /// Validates a scenario file held in memory; CSV paths are relative to the
    /// working directory.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Plan, PlanError> {
        Plan::parse(text, source, None)
    }

    fn parse(text: &str, path: &str, dir: Option<PathBuf>) -> Result<Plan, PlanError> {
        let mut cx = Ctx {
            text,
            path,
            dir,
            n_series: 0,
            n_checks: 0,
        };
        let file: PlanFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            cx.at(offset, e.message().trim().to_string())
        })?;
        let options = Options {
            base_url: file.options.base_url.clone(),
            http: match file.options.http.as_deref() {
                None | Some("auto") => HttpVersion::Auto,
                Some("1.1") | Some("http1") => HttpVersion::Http1,
                Some("2") | Some("h2") | Some("h2c") | Some("http2") => HttpVersion::Http2,
                Some(other) => {
                    return Err(PlanError::Invalid {
                        path: path.to_string(),
                        message: format!(
                            "options.http = `{other}` (expected \"auto\", \"1.1\" or \"2\")"
                        ),
                    })
                }
            },
            connect_timeout: opt_dur(
                &file.options.connect_timeout,
                "options.connect_timeout",
                Duration::from_secs(10),
            )
            .map_err(|m| PlanError::Invalid {
                path: path.to_string(),
                message: m,
            })?,
            request_timeout: opt_dur(
                &file.options.request_timeout,
                "options.request_timeout",
                Duration::from_secs(60),
            )
            .map_err(|m| PlanError::Invalid {
                path: path.to_string(),
                message: m,
            })?,
            no_vu_connection_reuse: file.options.no_vu_connection_reuse,
            ca_cert: file.options.ca_cert.as_ref().map(|c| match &cx.dir {
                Some(dir) if Path::new(c).is_relative() => dir.join(c),
                _ => PathBuf::from(c),
            }),
            insecure_skip_tls_verify: file.options.insecure_skip_tls_verify,
        };
        if file.scenarios.is_empty() {
            return Err(PlanError::Invalid {
                path: path.to_string(),
                message: "no scenarios (expected at least one [scenarios.NAME] table)".into(),
            });
        }
        let mut scenarios = Vec::new();
        for (name, sc) in &file.scenarios {
            let offset = sc.span().start;
            let s = scenario(&mut cx, name, sc.get_ref())
                .map_err(|m| cx.at(offset, format!("scenario `{name}`: {m}")))?;
            scenarios.push(s);
        }
        // Scenarios run in file order of their start time; keep names stable.
        scenarios.sort_by(|a, b| {
            let oa = file.scenarios.get(&a.name).map_or(0, |s| s.span().start);
            let ob = file.scenarios.get(&b.name).map_or(0, |s| s.span().start);
            oa.cmp(&ob)
        });
        let mut thresholds = Vec::new();
        for (metric, list) in &file.thresholds {
            let offset = list.span().start;
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
                    .map_err(|e| cx.at(offset, format!("threshold on `{metric}`: {e}")))?;
                t.abort_on_fail = abort;
                if let Some(d) = delay {
                    t.delay_abort_eval =
                        Some(dur(d, "delay_abort_eval").map_err(|m| cx.at(offset, m))?);
                }
                validate_threshold(&t).map_err(|m| cx.at(offset, m))?;
                if let Some((k, v)) = t
                    .metric
                    .tags
                    .iter()
                    .find(|(k, v)| k == "scenario" && !file.scenarios.contains_key(v))
                {
                    return Err(cx.at(
                        offset,
                        format!(
                            "threshold `{}` names {k}:{v}, which is not a scenario here",
                            t.metric
                        ),
                    ));
                }
                thresholds.push(t);
            }
        }
        Ok(Plan {
            source: path.to_string(),
            options,
            scenarios,
            thresholds,
            n_series: cx.n_series,
            n_checks: cx.n_checks,
        })
    }
}
