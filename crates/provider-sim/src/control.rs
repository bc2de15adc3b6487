//! `POST /control`: changes latencies, lengths, faults, quota and the time scale
//! while the simulator runs; `GET /control` shows what is in force. A change is
//! checked whole before any of it applies.

use crate::config::{
    bounded_duration, check_per_minute, check_time_scale, Faults, Flap, ModelSpec, MAX_DURATION,
    MAX_OUTPUT_TOKENS,
};
use crate::dist::Dist;
use crate::script::{Script, MAX_QUEUED};
use crate::{Live, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// A change (every field optional). Latency fields apply to `model`, or, without
/// one, to the defaults and every named model.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub model: Option<String>,
    pub ttft: Option<String>,
    pub itl: Option<String>,
    pub output_tokens: Option<Count>,
    pub time_scale: Option<f64>,
    pub faults: Option<FaultsChange>,
    pub quota: Option<QuotaChange>,
    /// The standing script: what every request gets unless a queued script is left
    /// (`{}` removes it).
    pub script: Option<Script>,
    /// Scripts for the next requests, one each, queued after those already queued.
    pub next: Option<Vec<Script>>,
    /// Zero every `/stats` counter.
    #[serde(default)]
    pub reset_stats: bool,
}

/// A token count or distribution: `200` or `"100..400"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Count {
    Number(u64),
    Text(String),
}

/// Fault fields: `sim.toml`'s `[faults]`, and what `POST /control` changes of them
/// (`flap_down = "0s"` stops flapping).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsChange {
    pub error_rate: Option<f64>,
    pub error_status: Option<u16>,
    pub overload_rate: Option<f64>,
    pub stall_first_rate: Option<f64>,
    pub stall_first: Option<String>,
    pub stall_mid_rate: Option<f64>,
    pub stall_mid: Option<String>,
    pub drop_rate: Option<f64>,
    pub malformed_rate: Option<f64>,
    pub mid_stream_error_rate: Option<f64>,
    /// Content chunks before the mid-stream error; `0` or absent: halfway through.
    pub mid_stream_error_after: Option<u64>,
    pub flap_down: Option<String>,
    pub flap_every: Option<String>,
}

/// The default per-key quota; `0` removes a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaChange {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

fn apply_model(spec: &mut ModelSpec, c: &Control) -> Result<(), String> {
    if let Some(t) = &c.ttft {
        spec.ttft = Dist::durations(t, MAX_DURATION).map_err(|e| format!("ttft: {e}"))?;
    }
    if let Some(t) = &c.itl {
        spec.itl = Dist::durations(t, MAX_DURATION).map_err(|e| format!("itl: {e}"))?;
    }
    if let Some(n) = &c.output_tokens {
        let text = match n {
            Count::Number(n) => n.to_string(),
            Count::Text(t) => t.clone(),
        };
        spec.output_tokens =
            Dist::tokens(&text, MAX_OUTPUT_TOKENS).map_err(|e| format!("output_tokens: {e}"))?;
    }
    Ok(())
}

/// Applies the fault fields of `f` to `n` and checks the result; an error names
/// its key (`faults.drop_rate`) and says why. `sim.toml`'s `[faults]` is read
/// through this too, onto the defaults.
pub(crate) fn apply_faults(n: &mut Faults, f: &FaultsChange) -> Result<(), (String, String)> {
    let key = |name: &str| format!("faults.{name}");
    let dur = |name: &str, v: &str| bounded_duration(v).map_err(|e| (key(name), e));
    for (slot, v) in [
        (&mut n.error_rate, f.error_rate),
        (&mut n.overload_rate, f.overload_rate),
        (&mut n.stall_first_rate, f.stall_first_rate),
        (&mut n.stall_mid_rate, f.stall_mid_rate),
        (&mut n.drop_rate, f.drop_rate),
        (&mut n.malformed_rate, f.malformed_rate),
        (&mut n.mid_stream_error_rate, f.mid_stream_error_rate),
    ] {
        if let Some(v) = v {
            *slot = v;
        }
    }
    if let Some(s) = f.error_status {
        n.error_status = s;
    }
    if let Some(a) = f.mid_stream_error_after {
        n.mid_stream_error_after = (a > 0).then_some(a);
    }
    if let Some(d) = &f.stall_first {
        n.stall_first = dur("stall_first", d)?;
    }
    if let Some(d) = &f.stall_mid {
        n.stall_mid = dur("stall_mid", d)?;
    }
    if f.flap_down.is_some() || f.flap_every.is_some() {
        let down = match (&f.flap_down, n.flap) {
            (Some(d), _) => dur("flap_down", d)?,
            (None, Some(old)) => old.down,
            (None, None) => return Err((key("flap_every"), NEEDS_BOTH.into())),
        };
        let every = match (&f.flap_every, n.flap) {
            (Some(d), _) => dur("flap_every", d)?,
            (None, Some(old)) => old.every,
            (None, None) if down.is_zero() => Duration::ZERO,
            (None, None) => return Err((key("flap_down"), NEEDS_BOTH.into())),
        };
        n.flap = (!down.is_zero()).then_some(Flap { down, every });
    }
    n.check(key)
}

const NEEDS_BOTH: &str =
    "flapping needs both flap_down and flap_every, e.g. flap_down = \"5s\", flap_every = \"30s\"";

/// The change applied to a copy of `live`.
fn changed(live: &Live, c: &Control) -> Result<Live, String> {
    let mut next = live.clone();
    match &c.model {
        Some(m) => {
            let Some(spec) = next.models.get_mut(m) else {
                return Err(format!(
                    "model: `{m}` is not one of the configured models ({}); leave model out to change the defaults",
                    live.models.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            };
            apply_model(spec, c)?;
        }
        None => {
            apply_model(&mut next.defaults, c)?;
            for spec in next.models.values_mut() {
                apply_model(spec, c)?;
            }
        }
    }
    if let Some(t) = c.time_scale {
        next.time_scale = check_time_scale(t).map_err(|e| format!("time_scale: {e}"))?;
    }
    if let Some(q) = c.quota {
        let limit = |name: &str, v: u64| match v {
            0 => Ok(None),
            v => check_per_minute(v)
                .map(Some)
                .map_err(|e| format!("quota.{name}: {e}")),
        };
        if let Some(v) = q.rpm {
            next.quota.rpm = limit("rpm", v)?;
        }
        if let Some(v) = q.tpm {
            next.quota.tpm = limit("tpm", v)?;
        }
    }
    if let Some(f) = &c.faults {
        apply_faults(&mut next.faults, f).map_err(|(k, why)| format!("{k}: {why}"))?;
    }
    if let Some(sc) = &c.script {
        next.script = if *sc == Script::default() {
            None
        } else {
            Some(Arc::new(sc.check().map_err(|e| format!("script.{e}"))?))
        };
    }
    Ok(next)
}

/// Applies `c` to the running simulator, all or nothing.
pub(crate) fn apply(state: &State, c: &Control) -> Result<(), String> {
    let queued = match &c.next {
        None => Vec::new(),
        Some(v) => v
            .iter()
            .enumerate()
            .map(|(i, sc)| {
                sc.check()
                    .map(Arc::new)
                    .map_err(|e| format!("next[{i}].{e}"))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut live = state.live.write();
    let next = changed(&live, c)?;
    let mut q = state.next.lock();
    if q.len() + queued.len() > MAX_QUEUED {
        return Err(format!(
            "next: {} scripts queued and {} more is over {MAX_QUEUED}",
            q.len(),
            queued.len()
        ));
    }
    q.extend(queued);
    drop(q);
    *live = Arc::new(next);
    drop(live);
    if c.reset_stats {
        state.stats.reset();
    }
    Ok(())
}

fn model_json(m: &ModelSpec) -> Value {
    json!({"ttft": m.ttft.show_secs(), "itl": m.itl.show_secs(), "output_tokens": m.output_tokens.show_count()})
}

/// What `GET /control` shows (and `POST /control` answers).
pub(crate) fn settings(live: &Live, queued: usize) -> Value {
    let f = &live.faults;
    let d = powertune_core::duration::format;
    json!({
        "time_scale": live.time_scale,
        "defaults": model_json(&live.defaults),
        "models": live.models.iter().map(|(k, m)| (k.clone(), model_json(m))).collect::<serde_json::Map<_, _>>(),
        "quota": {"rpm": live.quota.rpm, "tpm": live.quota.tpm},
        "faults": {
            "error_rate": f.error_rate, "error_status": f.error_status,
            "overload_rate": f.overload_rate,
            "stall_first_rate": f.stall_first_rate, "stall_first": d(f.stall_first),
            "stall_mid_rate": f.stall_mid_rate, "stall_mid": d(f.stall_mid),
            "drop_rate": f.drop_rate, "malformed_rate": f.malformed_rate,
            "mid_stream_error_rate": f.mid_stream_error_rate,
            "mid_stream_error_after": f.mid_stream_error_after,
            "flap_down": f.flap.map(|x| d(x.down)), "flap_every": f.flap.map(|x| d(x.every)),
        },
        "script": live.script.as_ref().map(|s| &s.source),
        "queued_scripts": queued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;

    fn live() -> Live {
        let c = SimConfig::from_toml("t", "[models.a]\nitl = \"5ms\"\n").unwrap();
        Live {
            time_scale: 1.0,
            defaults: c.defaults,
            models: c.models,
            faults: c.faults,
            quota: c.quota,
            script: None,
        }
    }

    #[test]
    fn a_change_applies_whole_or_not_at_all() {
        let l = live();
        let c: Control = serde_json::from_value(
            json!({"ttft": "100ms", "faults": {"drop_rate": 0.5}, "quota": {"rpm": 10}}),
        )
        .unwrap();
        let n = changed(&l, &c).unwrap();
        assert_eq!(n.defaults.ttft, Dist::Fixed(0.1));
        assert_eq!(n.models["a"].ttft, Dist::Fixed(0.1));
        assert_eq!(n.models["a"].itl, Dist::Fixed(0.005));
        assert_eq!(n.faults.drop_rate, 0.5);
        assert_eq!(n.quota.rpm, Some(10));
        let bad: Control =
            serde_json::from_value(json!({"faults": {"drop_rate": 0.6, "error_rate": 0.6}}))
                .unwrap();
        assert!(changed(&l, &bad).unwrap_err().contains("add up"));
        let unknown: Control =
            serde_json::from_value(json!({"model": "zz", "ttft": "1s"})).unwrap();
        assert!(changed(&l, &unknown)
            .unwrap_err()
            .contains("not one of the configured models (a)"));
        let flap: Control =
            serde_json::from_value(json!({"faults": {"flap_down": "1s", "flap_every": "4s"}}))
                .unwrap();
        let n = changed(&l, &flap).unwrap();
        assert!(n.faults.flap.is_some());
        let off: Control = serde_json::from_value(json!({"faults": {"flap_down": "0s"}})).unwrap();
        assert!(changed(&n, &off).unwrap().faults.flap.is_none());
        assert_eq!(settings(&n, 0)["faults"]["flap_every"], "4s");
    }
}
