//! One `[scenarios.NAME]` table: its executor (with the runbook's users/ramp_up
//! shorthand), data file and steps.

use super::context::{dur, opt_dur, Ctx};
use super::file::{DataFile, ScenarioFile, StageFile};
use super::model::{DataMode, DataSet, Executor, Scenario, Stage, Step};
use super::step::step;
use powertune_core::EndpointType;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn stages(v: &[StageFile]) -> Result<Vec<Stage>, String> {
    if v.is_empty() {
        return Err(
            "`stages` is empty (expected e.g. [{ duration = \"1m\", target = 50 }])".into(),
        );
    }
    v.iter()
        .map(|s| {
            if !(s.target.is_finite() && s.target >= 0.0) {
                return Err(format!("stage target {} must be 0 or more", s.target));
            }
            Ok(Stage {
                duration: dur(&s.duration, "stages.duration")?,
                target: s.target,
            })
        })
        .collect()
}

pub(super) fn scenario(cx: &mut Ctx<'_>, name: &str, f: &ScenarioFile) -> Result<Scenario, String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err("scenario names use letters, digits, `_` and `-` (e.g. auth_burst)".into());
    }
    let endpoint_type: EndpointType = f.endpoint_type.parse()?;
    let shorthand = f.users.is_some();
    let executor_name = match (&f.executor, shorthand) {
        (Some(e), _) => e.as_str(),
        (None, true) => "ramping-vus",
        (None, false) => {
            return Err("no `executor` (expected e.g. executor = \"constant-vus\", or the runbook shorthand users/duration/ramp_up)".into())
        }
    };
    // Which optional fields each executor takes; anything else set is an error.
    let set: Vec<(&str, bool)> = vec![
        ("users", f.users.is_some()),
        ("duration", f.duration.is_some()),
        ("ramp_up", f.ramp_up.is_some()),
        ("ramp_down", f.ramp_down.is_some()),
        ("vus", f.vus.is_some()),
        ("start_vus", f.start_vus.is_some()),
        ("stages", f.stages.is_some()),
        ("iterations", f.iterations.is_some()),
        ("max_duration", f.max_duration.is_some()),
        ("rate", f.rate.is_some()),
        ("start_rate", f.start_rate.is_some()),
        ("time_unit", f.time_unit.is_some()),
        ("pre_allocated_vus", f.pre_allocated_vus.is_some()),
        ("max_vus", f.max_vus.is_some()),
        ("max_backlog", f.max_backlog.is_some()),
    ];
    let allowed: &[&str] = match executor_name {
        "ramping-vus" if shorthand => &["users", "duration", "ramp_up", "ramp_down"],
        "constant-vus" => &["vus", "duration"],
        "ramping-vus" => &["start_vus", "stages"],
        "constant-arrival-rate" => &[
            "rate",
            "time_unit",
            "duration",
            "pre_allocated_vus",
            "max_vus",
            "max_backlog",
        ],
        "ramping-arrival-rate" => &[
            "start_rate",
            "time_unit",
            "stages",
            "pre_allocated_vus",
            "max_vus",
            "max_backlog",
        ],
        "per-vu-iterations" | "shared-iterations" => &["vus", "iterations", "max_duration"],
        other => {
            return Err(format!(
                "unknown executor `{other}` (expected constant-vus, ramping-vus, constant-arrival-rate, ramping-arrival-rate, per-vu-iterations or shared-iterations)"
            ))
        }
    };
    if let Some((bad, _)) = set.iter().find(|(k, on)| *on && !allowed.contains(k)) {
        return Err(format!(
            "`{bad}` does not apply to executor {executor_name}{} (it takes: {})",
            if shorthand { " (users shorthand)" } else { "" },
            allowed.join(", ")
        ));
    }
    let need_dur = |v: &Option<String>, what: &str| -> Result<Duration, String> {
        match v {
            Some(t) => dur(t, what),
            None => Err(format!("`{what}` is required for {executor_name}")),
        }
    };
    let time_unit = opt_dur(&f.time_unit, "time_unit", Duration::from_secs(1))?;
    if time_unit.is_zero() {
        return Err("`time_unit` must be above 0 (e.g. \"1s\")".into());
    }
    let executor = match executor_name {
        "ramping-vus" if shorthand => {
            let users = f.users.unwrap_or(0);
            let hold = need_dur(&f.duration, "duration")?;
            let up = opt_dur(&f.ramp_up, "ramp_up", Duration::ZERO)?;
            let down = opt_dur(&f.ramp_down, "ramp_down", up)?;
            let mut st = Vec::new();
            if !up.is_zero() {
                st.push(Stage {
                    duration: up,
                    target: users as f64,
                });
            }
            st.push(Stage {
                duration: hold,
                target: users as f64,
            });
            if !down.is_zero() {
                st.push(Stage {
                    duration: down,
                    target: 0.0,
                });
            }
            Executor::RampingVus {
                start_vus: if up.is_zero() { users } else { 0 },
                stages: st,
            }
        }
        "constant-vus" => Executor::ConstantVus {
            vus: f.vus.unwrap_or(1),
            duration: need_dur(&f.duration, "duration")?,
        },
        "ramping-vus" => Executor::RampingVus {
            start_vus: f.start_vus.unwrap_or(0),
            stages: stages(f.stages.as_deref().unwrap_or(&[]))?,
        },
        "constant-arrival-rate" => {
            let rate = f
                .rate
                .ok_or("`rate` is required for constant-arrival-rate (e.g. rate = 100)")?;
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("`rate` = {rate} must be above 0"));
            }
            let pre = f.pre_allocated_vus.unwrap_or(1).max(1);
            let max = f.max_vus.unwrap_or(pre);
            if max < pre {
                return Err(format!(
                    "`max_vus` = {max} is below pre_allocated_vus = {pre}"
                ));
            }
            Executor::ConstantArrivalRate {
                rate,
                time_unit,
                duration: need_dur(&f.duration, "duration")?,
                pre_allocated_vus: pre,
                max_vus: max,
                max_backlog: f
                    .max_backlog
                    .unwrap_or_else(|| backlog_default(rate, time_unit)),
            }
        }
        "ramping-arrival-rate" => {
            let pre = f.pre_allocated_vus.unwrap_or(1).max(1);
            let max = f.max_vus.unwrap_or(pre);
            if max < pre {
                return Err(format!(
                    "`max_vus` = {max} is below pre_allocated_vus = {pre}"
                ));
            }
            let st = stages(f.stages.as_deref().unwrap_or(&[]))?;
            let peak = st
                .iter()
                .map(|s| s.target)
                .fold(f.start_rate.unwrap_or(0.0), f64::max);
            Executor::RampingArrivalRate {
                start_rate: f.start_rate.unwrap_or(0.0),
                time_unit,
                stages: st,
                pre_allocated_vus: pre,
                max_vus: max,
                max_backlog: f
                    .max_backlog
                    .unwrap_or_else(|| backlog_default(peak, time_unit)),
            }
        }
        "per-vu-iterations" | "shared-iterations" => {
            let vus = f.vus.unwrap_or(1);
            let iterations = f.iterations.unwrap_or(1);
            let max_duration = opt_dur(&f.max_duration, "max_duration", Duration::from_secs(600))?;
            if executor_name == "per-vu-iterations" {
                Executor::PerVuIterations {
                    vus,
                    iterations,
                    max_duration,
                }
            } else {
                Executor::SharedIterations {
                    vus,
                    iterations,
                    max_duration,
                }
            }
        }
        _ => return Err(format!("unknown executor `{executor_name}`")),
    };
    if executor.max_vus() == 0 {
        return Err(format!(
            "{} runs no VUs (expected vus/users above 0)",
            executor.name()
        ));
    }
    if executor.max_vus() > 1_000_000 {
        return Err(format!(
            "{} VUs is more than this engine allows (1,000,000)",
            executor.max_vus()
        ));
    }
    let data = match &f.data {
        None => None,
        Some(d) => Some(load_data(cx, d)?),
    };
    let mut setup = Vec::new();
    for s in &f.setup {
        setup.push(step(cx, s, endpoint_type).map_err(|m| format!("setup step: {m}"))?);
    }
    let mut steps = Vec::new();
    for s in &f.steps {
        steps.push(step(cx, s, endpoint_type)?);
    }
    if steps.is_empty() {
        return Err("no `steps` (expected at least one [[scenarios.NAME.steps]])".into());
    }
    if steps.iter().all(|s| matches!(s, Step::Think(_))) {
        return Err("its steps only sleep (expected an HTTP, cable or ws step)".into());
    }
    Ok(Scenario {
        name: name.to_string(),
        description: f.description.clone().unwrap_or_default(),
        endpoint_type,
        executor,
        start_time: opt_dur(&f.start_time, "start_time", Duration::ZERO)?,
        graceful_stop: opt_dur(&f.graceful_stop, "graceful_stop", Duration::from_secs(30))?,
        tags: f.tags.clone(),
        data,
        setup,
        steps,
    })
}

fn backlog_default(rate: f64, time_unit: Duration) -> u64 {
    // One second of arrivals, at least 1.
    let per_sec = rate / time_unit.as_secs_f64().max(1e-9);
    (per_sec.ceil() as u64).clamp(1, 100_000)
}

fn load_data(cx: &Ctx<'_>, d: &DataFile) -> Result<DataSet, String> {
    let mode = match d.mode.as_deref() {
        None | Some("per_vu") | Some("per-vu") => DataMode::PerVu,
        Some("per_iteration") | Some("per-iteration") => DataMode::PerIteration,
        Some(o) => {
            return Err(format!(
                "data.mode = `{o}` (expected \"per_vu\" or \"per_iteration\")"
            ))
        }
    };
    let p = match &cx.dir {
        Some(dir) if Path::new(&d.file).is_relative() => dir.join(&d.file),
        _ => PathBuf::from(&d.file),
    };
    let mut rdr = csv::Reader::from_path(&p).map_err(|e| {
        format!(
            "cannot read data file {}: {e} (expected a CSV file with a header row)",
            p.display()
        )
    })?;
    let columns: Vec<String> = rdr
        .headers()
        .map_err(|e| format!("data file {}: {e}", p.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for r in rdr.records() {
        let r = r.map_err(|e| format!("data file {}: {e}", p.display()))?;
        rows.push(r.iter().map(str::to_string).collect());
        if rows.len() > 1_000_000 {
            return Err(format!("data file {} has over 1,000,000 rows", p.display()));
        }
    }
    if rows.is_empty() {
        return Err(format!(
            "data file {} has no rows under its header",
            p.display()
        ));
    }
    Ok(DataSet {
        path: p.display().to_string(),
        columns,
        rows,
        mode,
    })
}
