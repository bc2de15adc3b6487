//! One `[scenarios.NAME]` table: its executor (with the runbook's users/ramp_up
//! shorthand), data file and steps.

use super::context::{Ctx, MAX_BACKLOG, MAX_RATE_PER_S};
use super::file::{DataFile, ScenarioFile, StageFile};
use super::model::{DataMode, DataSet, Executor, Scenario, Stage, Step};
use super::step::step;
use powertune_core::config_file::ConfigError;
use powertune_core::EndpointType;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest CSV data file a scenario may name (it is held in memory for the run).
pub const MAX_DATA_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// The `stages` of the scenario at `at`.
/// `max_target`: the most VUs (ramping-vus) or iterations per time unit
/// (ramping-arrival-rate) a stage may reach.
fn stages(
    cx: &Ctx<'_>,
    at: &str,
    v: &[StageFile],
    max_target: f64,
) -> Result<Vec<Stage>, ConfigError> {
    if v.is_empty() {
        return Err(cx.error(
            &format!("{at}.stages"),
            "is empty, e.g. stages = [{ duration = \"1m\", target = 50 }]",
        ));
    }
    let out = v
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if !(s.target.is_finite() && s.target >= 0.0 && s.target <= max_target) {
                return Err(cx.error(
                    &format!("{at}.stages[{i}].target"),
                    format!(
                        "{} must be 0 or more and at most {max_target}, e.g. target = 50",
                        s.target
                    ),
                ));
            }
            Ok(Stage {
                duration: cx.dur(&s.duration, &format!("{at}.stages[{i}].duration"))?,
                target: s.target,
            })
        })
        .collect::<Result<Vec<Stage>, ConfigError>>()?;
    if out.iter().all(|s| s.duration.is_zero()) {
        return Err(cx.error(
            &format!("{at}.stages"),
            "last 0s in all, e.g. stages = [{ duration = \"1m\", target = 50 }]",
        ));
    }
    Ok(out)
}

/// The most VUs one scenario may run.
const MAX_VUS: u32 = 1_000_000;

/// The executors and the optional fields each takes (the runbook's `users` shorthand
/// is a ramping-vus).
const SHORTHAND_FIELDS: &[&str] = &["users", "duration", "ramp_up", "ramp_down"];

fn fields_of(executor: &str) -> Option<&'static [&'static str]> {
    Some(match executor {
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
        _ => return None,
    })
}

pub(super) fn scenario(
    cx: &mut Ctx<'_>,
    name: &str,
    f: &ScenarioFile,
) -> Result<Scenario, ConfigError> {
    let at = format!("scenarios.{name}");
    let key = |k: &str| format!("{at}.{k}");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(cx.error(
            &at,
            "a scenario name uses letters, digits, `_` and `-`, e.g. [scenarios.auth_burst]",
        ));
    }
    let endpoint_type: EndpointType = f
        .endpoint_type
        .parse()
        .map_err(|e: String| cx.error(&key("endpoint_type"), e))?;
    let shorthand = f.users.is_some();
    let executor_name = match (&f.executor, shorthand) {
        (Some(e), _) => e.as_str(),
        (None, true) => "ramping-vus",
        (None, false) => {
            return Err(cx.error(
                &key("executor"),
                "missing, e.g. executor = \"constant-vus\" with vus and duration, or the runbook shorthand users/duration/ramp_up",
            ))
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
    let allowed: &[&str] = match (executor_name, shorthand) {
        ("ramping-vus", true) => SHORTHAND_FIELDS,
        (other, _) => fields_of(other).ok_or_else(|| {
            cx.error(
                &key("executor"),
                format!("unknown executor `{other}`, e.g. constant-vus, ramping-vus, constant-arrival-rate, ramping-arrival-rate, per-vu-iterations or shared-iterations"),
            )
        })?,
    };
    if let Some((bad, _)) = set.iter().find(|(k, on)| *on && !allowed.contains(k)) {
        return Err(cx.error(
            &key(bad),
            format!(
                "does not apply to executor {executor_name}{}; it takes {}",
                if shorthand { " (users shorthand)" } else { "" },
                allowed.join(", ")
            ),
        ));
    }
    let need_dur = |v: &Option<String>, what: &str| -> Result<Duration, ConfigError> {
        match v {
            Some(t) => cx.dur(t, &key(what)),
            None => Err(cx.error(
                &key(what),
                format!("is required for {executor_name}, e.g. {what} = \"5m\""),
            )),
        }
    };
    let time_unit = cx.opt_dur(&f.time_unit, &key("time_unit"), Duration::from_secs(1))?;
    if time_unit.is_zero() {
        return Err(cx.error(&key("time_unit"), "must be above 0, e.g. \"1s\""));
    }
    let executor = match executor_name {
        "ramping-vus" if shorthand => {
            let users = f.users.unwrap_or(0);
            let hold = need_dur(&f.duration, "duration")?;
            cx.positive(hold, &key("duration"), "duration = \"5m\"")?;
            let up = cx.opt_dur(&f.ramp_up, &key("ramp_up"), Duration::ZERO)?;
            let down = cx.opt_dur(&f.ramp_down, &key("ramp_down"), up)?;
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
            duration: cx.positive(
                need_dur(&f.duration, "duration")?,
                &key("duration"),
                "duration = \"5m\"",
            )?,
        },
        "ramping-vus" => Executor::RampingVus {
            start_vus: f.start_vus.unwrap_or(0),
            stages: stages(cx, &at, f.stages.as_deref().unwrap_or(&[]), MAX_VUS as f64)?,
        },
        "constant-arrival-rate" => {
            let rate = f.rate.ok_or_else(|| {
                cx.error(
                    &key("rate"),
                    "is required for constant-arrival-rate, e.g. rate = 100",
                )
            })?;
            let max_rate = MAX_RATE_PER_S * time_unit.as_secs_f64();
            if !(rate.is_finite() && rate > 0.0 && rate <= max_rate) {
                return Err(cx.error(
                    &key("rate"),
                    format!(
                        "{rate} must be above 0 and at most {max_rate} per {}, e.g. rate = 100",
                        powertune_core::duration::format(time_unit)
                    ),
                ));
            }
            let pre = f.pre_allocated_vus.unwrap_or(1).max(1);
            let max = max_vus(cx, &at, f, pre)?;
            Executor::ConstantArrivalRate {
                rate,
                time_unit,
                duration: cx.positive(
                    need_dur(&f.duration, "duration")?,
                    &key("duration"),
                    "duration = \"5m\"",
                )?,
                pre_allocated_vus: pre,
                max_vus: max,
                max_backlog: backlog(cx, &at, f)?
                    .unwrap_or_else(|| backlog_default(rate, time_unit)),
            }
        }
        "ramping-arrival-rate" => {
            let pre = f.pre_allocated_vus.unwrap_or(1).max(1);
            let max = max_vus(cx, &at, f, pre)?;
            let max_rate = MAX_RATE_PER_S * time_unit.as_secs_f64();
            let st = stages(cx, &at, f.stages.as_deref().unwrap_or(&[]), max_rate)?;
            let start_rate = f.start_rate.unwrap_or(0.0);
            if !(start_rate.is_finite() && (0.0..=max_rate).contains(&start_rate)) {
                return Err(cx.error(
                    &key("start_rate"),
                    format!("{start_rate} must be 0 or more and at most {max_rate}, e.g. start_rate = 10"),
                ));
            }
            let peak = st
                .iter()
                .map(|s| s.target)
                .fold(f.start_rate.unwrap_or(0.0), f64::max);
            Executor::RampingArrivalRate {
                start_rate,
                time_unit,
                stages: st,
                pre_allocated_vus: pre,
                max_vus: max,
                max_backlog: backlog(cx, &at, f)?
                    .unwrap_or_else(|| backlog_default(peak, time_unit)),
            }
        }
        "per-vu-iterations" | "shared-iterations" => {
            let vus = f.vus.unwrap_or(1);
            let iterations = f.iterations.unwrap_or(1);
            if iterations == 0 {
                return Err(cx.error(&key("iterations"), "must be above 0, e.g. iterations = 100"));
            }
            let max_duration = cx.opt_dur(
                &f.max_duration,
                &key("max_duration"),
                Duration::from_secs(600),
            )?;
            cx.positive(max_duration, &key("max_duration"), "max_duration = \"10m\"")?;
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
        other => {
            return Err(cx.error(
                &key("executor"),
                format!("unknown executor `{other}`, e.g. constant-vus"),
            ))
        }
    };
    let vus_key = key(if shorthand { "users" } else { "vus" });
    if executor.max_vus() == 0 {
        return Err(cx.error(
            &vus_key,
            format!("{} runs no VUs, e.g. vus = 10", executor.name()),
        ));
    }
    if executor.max_vus() > MAX_VUS {
        return Err(cx.error(
            &vus_key,
            format!(
                "{} VUs is more than this engine allows, e.g. at most {MAX_VUS}",
                executor.max_vus()
            ),
        ));
    }
    let data = match &f.data {
        None => None,
        Some(d) => Some(load_data(cx, &at, d)?),
    };
    let mut setup = Vec::new();
    for (i, s) in f.setup.iter().enumerate() {
        setup.push(step(cx, s, endpoint_type, &format!("{at}.setup[{i}]"))?);
    }
    let mut steps = Vec::new();
    for (i, s) in f.steps.iter().enumerate() {
        steps.push(step(cx, s, endpoint_type, &format!("{at}.steps[{i}]"))?);
    }
    if steps.is_empty() {
        return Err(cx.error(
            &key("steps"),
            format!("missing, e.g. a [[{at}.steps]] table with url = \"/health\""),
        ));
    }
    if steps.iter().all(|s| matches!(s, Step::Think(_))) {
        return Err(cx.error(
            &key("steps"),
            "only sleep, e.g. add a step with url = \"/health\" (or cable, or ws)",
        ));
    }
    Ok(Scenario {
        name: name.to_string(),
        description: f.description.clone().unwrap_or_default(),
        endpoint_type,
        executor,
        start_time: cx.opt_dur(&f.start_time, &key("start_time"), Duration::ZERO)?,
        graceful_stop: cx.opt_dur(
            &f.graceful_stop,
            &key("graceful_stop"),
            Duration::from_secs(30),
        )?,
        tags: f.tags.clone(),
        data,
        setup,
        steps,
    })
}

/// `max_backlog` as written: at most [`MAX_BACKLOG`] (0 drops at once, as k6 does).
fn backlog(cx: &Ctx<'_>, at: &str, f: &ScenarioFile) -> Result<Option<u64>, ConfigError> {
    match f.max_backlog {
        Some(b) if b > MAX_BACKLOG => Err(cx.error(
            &format!("{at}.max_backlog"),
            format!("{b} is more than {MAX_BACKLOG}, e.g. max_backlog = 1000 (0 drops at once)"),
        )),
        b => Ok(b),
    }
}

fn backlog_default(rate: f64, time_unit: Duration) -> u64 {
    // One second of arrivals, at least 1.
    let per_sec = rate / time_unit.as_secs_f64().max(1e-9);
    (per_sec.ceil() as u64).clamp(1, 100_000)
}

/// `max_vus` of an arrival-rate executor: at least its pre-allocated VUs.
fn max_vus(cx: &Ctx<'_>, at: &str, f: &ScenarioFile, pre: u32) -> Result<u32, ConfigError> {
    let max = f.max_vus.unwrap_or(pre);
    if max < pre {
        return Err(cx.error(
            &format!("{at}.max_vus"),
            format!("{max} is below pre_allocated_vus = {pre}, e.g. max_vus = {pre}"),
        ));
    }
    Ok(max)
}

fn load_data(cx: &Ctx<'_>, at: &str, d: &DataFile) -> Result<DataSet, ConfigError> {
    let mode = match d.mode.as_deref() {
        None | Some("per_vu") | Some("per-vu") => DataMode::PerVu,
        Some("per_iteration") | Some("per-iteration") => DataMode::PerIteration,
        Some(o) => {
            return Err(cx.error(
                &format!("{at}.data.mode"),
                format!("`{o}` is not a data mode, e.g. \"per_vu\" or \"per_iteration\""),
            ))
        }
    };
    let file_key = format!("{at}.data.file");
    let bad = |why: String| cx.error(&file_key, why);
    let p = match &cx.dir {
        Some(dir) if Path::new(&d.file).is_relative() => dir.join(&d.file),
        _ => PathBuf::from(&d.file),
    };
    // A data file is held in memory for the run: only regular files, and at most
    // MAX_DATA_FILE_BYTES (a device such as /dev/zero would never end).
    match std::fs::metadata(&p) {
        Ok(m) if !m.is_file() => {
            return Err(bad(format!(
                "{} is not a regular file, e.g. users.csv",
                p.display()
            )))
        }
        Ok(m) if m.len() > MAX_DATA_FILE_BYTES => {
            return Err(bad(format!(
                "{} is {}, over the {} a data file may be, e.g. split it per scenario",
                p.display(),
                powertune_core::units::bytes(m.len()),
                powertune_core::units::bytes(MAX_DATA_FILE_BYTES)
            )))
        }
        _ => {}
    }
    let mut rdr = csv::Reader::from_path(&p).map_err(|e| {
        bad(format!(
            "cannot read {}: {e}, e.g. a CSV file with a header row",
            p.display()
        ))
    })?;
    let columns: Vec<String> = rdr
        .headers()
        .map_err(|e| bad(format!("{}: {e}", p.display())))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for r in rdr.records() {
        let r = r.map_err(|e| bad(format!("{}: {e}", p.display())))?;
        rows.push(r.iter().map(str::to_string).collect());
        if rows.len() > 1_000_000 {
            return Err(bad(format!(
                "{} has over 1,000,000 rows, e.g. split it per scenario",
                p.display()
            )));
        }
    }
    if rows.is_empty() {
        return Err(bad(format!(
            "{} has no rows under its header, e.g. email,password then one row per user",
            p.display()
        )));
    }
    Ok(DataSet {
        path: p.display().to_string(),
        columns,
        rows,
        mode,
    })
}
