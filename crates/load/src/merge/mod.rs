//! `powertune merge`: the parts of one split run (one `powertune load --segment`
//! report per segment) as one run. The merge is exact where the parts carry the data:
//! HDR histograms are added (the merged quantiles are those of the union of every
//! request), counters are added, rates are recomputed over the common wall-clock
//! window (the first part's start to the last part's end), checks are added per
//! check; the time series are aligned by wall clock ([`timeline`]). The plan's
//! thresholds are then evaluated again on the merged summary, and the runbook's
//! targets and a baseline are judged on it like any load run.

mod timeline;

use crate::snapshot::{HttpSummary, ScenarioSummary, Summary, TrendSummary, VusSummary};
use crate::thresholds::evaluate;
use powertune_core::threshold::Threshold;
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeMap;

/// One part as read from its file.
#[derive(Debug, Clone)]
pub struct Part {
    /// Where it came from (shown in refusals and the merge's identity).
    pub name: String,
    /// The powertune version that wrote the report.
    pub version: String,
    pub summary: Summary,
}

impl Part {
    /// Reads a `powertune load --segment … --json FILE` report (size-capped like a
    /// baseline).
    pub fn read(path: &std::path::Path) -> Result<Part, MergeError> {
        let name = path.display().to_string();
        let text = powertune_core::baseline::read_limited(path).map_err(|e| {
            MergeError(format!(
                "{name}: cannot read: {e}; expected a report from `powertune load --segment … --json FILE`"
            ))
        })?;
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("powertune_version")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        let summary =
            Summary::from_report_json(&text).map_err(|e| MergeError(format!("{name}: {e}")))?;
        Ok(Part {
            name,
            version,
            summary,
        })
    }
}

/// Why parts cannot be merged: one line naming the files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MergeError(pub String);

/// One part as the merged report lists it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct PartInfo {
    pub file: String,
    /// k6's `from:to`.
    pub segment: String,
    pub started_at: String,
    pub duration_s: f64,
    pub reqs: u64,
    pub iterations: u64,
}

/// What was merged.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct MergeInfo {
    /// The segment sequence every part shares.
    pub sequence: String,
    pub plan_hash: String,
    /// In sequence order.
    pub parts: Vec<PartInfo>,
    /// Segments of the sequence no part ran (only with `--allow-partial`).
    pub missing: Vec<String>,
}

fn refuse<T>(s: String) -> Result<T, MergeError> {
    Err(MergeError(s))
}

/// Checks that `parts` are the segments of one split run and merges them. Without
/// `allow_partial` every segment of the sequence must be there.
pub fn merge(parts: &[Part], allow_partial: bool) -> Result<(Summary, MergeInfo), MergeError> {
    let Some(first) = parts.first() else {
        return refuse(
            "no parts to merge (give the --json reports of `powertune load --segment`)".into(),
        );
    };
    let mut placed: Vec<(u64, &Part)> = Vec::new();
    for p in parts {
        if p.version != first.version {
            return refuse(format!(
                "{} was written by powertune {}, {} by {}; merge parts written by one powertune version",
                p.name, p.version, first.name, first.version
            ));
        }
        let Some(seg) = &p.summary.segment else {
            return refuse(format!(
                "{} is a whole run, not a segment (no --segment); merge takes the parts of one split run",
                p.name
            ));
        };
        let Some(first_seg) = &first.summary.segment else {
            return refuse(format!("{} is a whole run, not a segment (no --segment); merge takes the parts of one split run", first.name));
        };
        if p.summary.plan_hash != first.summary.plan_hash {
            return refuse(format!(
                "{} and {} ran different plans (plan hash {} vs {}); merge the parts of one split run",
                first.name,
                p.name,
                short(&first.summary.plan_hash),
                short(&p.summary.plan_hash)
            ));
        }
        if seg.sequence != first_seg.sequence {
            return refuse(format!(
                "{} and {} were split differently (--segment-sequence {} vs {}); their segments may overlap",
                first.name, p.name, first_seg.sequence, seg.sequence
            ));
        }
        if let Some((_, other)) = placed.iter().find(|(i, _)| *i == seg.index) {
            return refuse(format!(
                "overlapping segments: {} and {} both ran segment {} of {}",
                other.name, p.name, seg.segment, seg.sequence
            ));
        }
        placed.push((seg.index, p));
    }
    placed.sort_by_key(|(i, _)| *i);
    let seq_text = first
        .summary
        .segment
        .as_ref()
        .map(|s| s.sequence.clone())
        .unwrap_or_default();
    let points = crate::segment::parse_sequence(&seq_text)
        .map_err(|e| MergeError(format!("{}: {e}", first.name)))?;
    let missing: Vec<String> = points
        .windows(2)
        .enumerate()
        .filter(|(i, _)| !placed.iter().any(|(k, _)| *k == *i as u64))
        .map(|(_, w)| {
            let show = |r: &num_rational::Ratio<u64>| {
                if *r.denom() == 1 {
                    r.numer().to_string()
                } else {
                    format!("{}/{}", r.numer(), r.denom())
                }
            };
            format!("{}:{}", show(&w[0]), show(&w[1]))
        })
        .collect();
    if !missing.is_empty() && !allow_partial {
        return refuse(format!(
            "missing segment{} {} of {} ({} of {} parts given); give every part, or --allow-partial to merge what is there",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            seq_text,
            placed.len(),
            points.len() - 1
        ));
    }
    let summaries: Vec<&Summary> = placed.iter().map(|(_, p)| &p.summary).collect();
    let merged = merge_summaries(&summaries).map_err(MergeError)?;
    let info = MergeInfo {
        sequence: seq_text,
        plan_hash: first.summary.plan_hash.clone(),
        parts: placed
            .iter()
            .map(|(_, p)| PartInfo {
                file: p.name.clone(),
                segment: p
                    .summary
                    .segment
                    .as_ref()
                    .map(|s| s.segment.clone())
                    .unwrap_or_default(),
                started_at: p.summary.started_at.clone(),
                duration_s: p.summary.duration_s,
                reqs: p.summary.http.reqs,
                iterations: p.summary.iterations,
            })
            .collect(),
        missing,
    };
    Ok((merged, info))
}

fn short(hash: &str) -> &str {
    hash.get(..19).unwrap_or(hash)
}

fn start_of(s: &Summary) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(&s.started_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("started_at `{}` is not RFC 3339: {e}", s.started_at))
}

/// The summaries of concurrent parts as one summary over their common wall-clock
/// window, thresholds evaluated again on it.
pub fn merge_summaries(parts: &[&Summary]) -> Result<Summary, String> {
    let Some(first) = parts.first() else {
        return Err("no parts to merge".into());
    };
    let mut starts = Vec::new();
    for p in parts {
        starts.push(start_of(p)?);
    }
    let start = starts
        .iter()
        .min()
        .copied()
        .unwrap_or_else(chrono::Utc::now);
    let offset = |i: usize| {
        starts.get(i).map_or(0.0, |t| {
            (*t - start).num_microseconds().unwrap_or(0) as f64 / 1e6
        })
    };
    let window = parts
        .iter()
        .enumerate()
        .map(|(i, p)| offset(i) + p.duration_s)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let mut m = (*first).clone();
    for p in &parts[1..] {
        add_summary(&mut m, p)?;
    }
    m.started_at = start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    m.duration_s = window;
    m.segment = None;
    let placed: Vec<timeline::Placed<'_>> = parts
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.timeline.as_ref().map(|t| timeline::Placed {
                offset_s: offset(i),
                timeline: t,
            })
        })
        .collect();
    m.timeline = if placed.len() == parts.len() {
        timeline::merge(&placed)
    } else {
        None
    };
    m.vus = merge_vus(parts, &offset);
    m.vus_max = m
        .vus
        .as_ref()
        .map_or_else(|| parts.iter().map(|p| p.vus_max).sum(), |v| v.max);
    rerate(&mut m, window);
    m.finish_totals();
    let thresholds = thresholds_of(first)?;
    m.thresholds = evaluate(&m, &thresholds);
    Ok(m)
}

/// The plan's thresholds as the part evaluated them.
fn thresholds_of(s: &Summary) -> Result<Vec<Threshold>, String> {
    s.thresholds
        .iter()
        .map(|t| {
            let mut th = Threshold::parse(&t.metric, &t.expr)
                .map_err(|e| format!("threshold `{} {}`: {e}", t.metric, t.expr))?;
            th.abort_on_fail = t.abort_on_fail;
            Ok(th)
        })
        .collect()
}

fn add_trend(a: &mut TrendSummary, b: &TrendSummary) -> Result<(), String> {
    let mut h = a.histogram.clone();
    h.merge(&b.histogram)
        .map_err(|e| format!("cannot merge histograms: {e}"))?;
    *a = TrendSummary::from_hist(h);
    Ok(())
}

fn add_summary(m: &mut Summary, p: &Summary) -> Result<(), String> {
    if m.scenarios.len() != p.scenarios.len() {
        return Err("the parts have different scenarios".into());
    }
    m.http.merge(&p.http);
    m.checks_passed += p.checks_passed;
    m.checks_failed += p.checks_failed;
    m.interrupted |= p.interrupted;
    m.aborted = match (m.aborted.take(), &p.aborted) {
        (Some(a), Some(b)) if a != *b => Some(format!("{a}; {b}")),
        (a, b) => a.or_else(|| b.clone()),
    };
    for (a, b) in m.scenarios.iter_mut().zip(&p.scenarios) {
        add_scenario(a, b)?;
    }
    Ok(())
}

fn add_scenario(a: &mut ScenarioSummary, b: &ScenarioSummary) -> Result<(), String> {
    if a.name != b.name || a.steps.len() != b.steps.len() || a.checks.len() != b.checks.len() {
        return Err(format!("scenario `{}` differs between the parts", a.name));
    }
    a.vus_max += b.vus_max;
    a.iterations += b.iterations;
    a.dropped_iterations += b.dropped_iterations;
    add_trend(&mut a.iteration_duration, &b.iteration_duration)?;
    a.data_sent += b.data_sent;
    a.data_received += b.data_received;
    a.http.merge(&b.http);
    let (pa, pb) = (&mut a.phases, &b.phases);
    add_trend(&mut pa.blocked, &pb.blocked)?;
    add_trend(&mut pa.connecting, &pb.connecting)?;
    add_trend(&mut pa.tls_handshaking, &pb.tls_handshaking)?;
    add_trend(&mut pa.sending, &pb.sending)?;
    add_trend(&mut pa.waiting, &pb.waiting)?;
    add_trend(&mut pa.receiving, &pb.receiving)?;
    for (x, y) in a.steps.iter_mut().zip(&b.steps) {
        x.http.merge(&y.http);
    }
    for (x, y) in a.checks.iter_mut().zip(&b.checks) {
        x.passes += y.passes;
        x.fails += y.fails;
    }
    match (&mut a.ws, &b.ws) {
        (Some(x), Some(y)) => {
            x.sessions += y.sessions;
            x.errors += y.errors;
            x.msgs_received += y.msgs_received;
            x.msgs_sent += y.msgs_sent;
            x.broadcasts += y.broadcasts;
            add_trend(&mut x.connecting, &y.connecting)?;
            add_trend(&mut x.subscribe_duration, &y.subscribe_duration)?;
            add_trend(&mut x.session_duration, &y.session_duration)?;
        }
        (None, Some(y)) => a.ws = Some(y.clone()),
        _ => {}
    }
    Ok(())
}

/// Every rate of the summary recomputed over `secs`.
fn rerate(m: &mut Summary, secs: f64) {
    let r = |h: &mut HttpSummary| h.rate = h.reqs as f64 / secs;
    r(&mut m.http);
    for sc in &mut m.scenarios {
        r(&mut sc.http);
        sc.iteration_rate = sc.iterations as f64 / secs;
        for st in &mut sc.steps {
            r(&mut st.http);
        }
    }
}

/// The parts' `vus` series added slot by slot on one wall-clock grid (each part's
/// points are the largest sample of their interval, so the sum is an upper bound of
/// the VUs that ran at once); `None` unless every part has one on one interval.
fn merge_vus(parts: &[&Summary], offset: &dyn Fn(usize) -> f64) -> Option<VusSummary> {
    let all: Vec<&VusSummary> = parts.iter().filter_map(|p| p.vus.as_ref()).collect();
    let interval = all.first()?.interval_s;
    if all.len() != parts.len()
        || interval <= 0.0
        || all.iter().any(|v| (v.interval_s - interval).abs() > 1e-9)
    {
        return None;
    }
    let mut slots: BTreeMap<u64, u64> = BTreeMap::new();
    for (i, v) in all.iter().enumerate() {
        let shift = (offset(i) / interval).round().max(0.0) as u64;
        for (k, n) in v.series.iter().enumerate() {
            *slots.entry(k as u64 + shift).or_insert(0) += n;
        }
    }
    let len = slots.keys().next_back().map_or(0, |k| k + 1);
    let mut series: Vec<u64> = (0..len)
        .map(|k| slots.get(&k).copied().unwrap_or(0))
        .collect();
    let mut interval_s = interval;
    while series.len() > crate::timeline::CAP {
        series = series
            .chunks(2)
            .map(|c| c.iter().copied().max().unwrap_or(0))
            .collect();
        interval_s *= 2.0;
    }
    Some(VusSummary {
        min: series.iter().copied().min().unwrap_or(0),
        max: series.iter().copied().max().unwrap_or(0),
        current: all.iter().map(|v| v.current).sum(),
        interval_s,
        series,
    })
}

/// The metrics payload of `powertune merge --json`: a load summary (schema
/// `powertune.load-summary/v1`, so a merged report reads back as a load report, e.g. a
/// baseline) and what was merged.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(title = "powertune merge v1", extend("additionalProperties" = false))]
pub struct MergeMetrics {
    #[serde(flatten)]
    pub load: crate::LoadMetrics,
    pub merge: MergeInfo,
}

/// Merges the parts and judges the whole like one load run: the plan's thresholds,
/// the runbook's targets and, when given, the baseline. The text is the load text of
/// the merged run, led by one line per part.
pub fn inspect_merge(
    parts: &[Part],
    allow_partial: bool,
    baseline: Option<&Summary>,
    targets: &powertune_core::Targets,
) -> Result<powertune_core::Inspection<MergeMetrics>, MergeError> {
    let (summary, info) = merge(parts, allow_partial)?;
    let mut run = crate::judge_run(summary, baseline, targets);
    if let Some(f) = segments_missing(&info) {
        run.findings.insert(0, f);
    }
    let mut text = format!("merged {} part(s) of {}\n", info.parts.len(), info.sequence);
    for p in &info.parts {
        text.push_str(&format!(
            "  {:<12} {:<24} {} reqs, {} iterations, started {}\n",
            p.segment, p.file, p.reqs, p.iterations, p.started_at
        ));
    }
    if !info.missing.is_empty() {
        text.push_str(&format!(
            "  missing: {} (--allow-partial: the figures cover only the parts given)\n",
            info.missing.join(", ")
        ));
    }
    text.push('\n');
    text.push_str(&run.text);
    Ok(powertune_core::Inspection::new(
        "merge",
        run.findings,
        MergeMetrics {
            load: run.metrics,
            merge: info,
        },
        text,
    ))
}

/// A merge with segments missing (`--allow-partial`) judges only part of the load:
/// a warning naming them.
fn segments_missing(info: &MergeInfo) -> Option<powertune_core::Finding> {
    if info.missing.is_empty() {
        return None;
    }
    Some(
        powertune_core::Finding::new(
            "load",
            "segments_missing",
            "merge",
            powertune_core::Verdict::Warn,
        )
        .observed(format!("{} missing", info.missing.len()))
        .target("every segment of the sequence")
        .evidence(format!("missing {} of {}", info.missing.join(", "), info.sequence))
        .action("run the missing segments again and merge every part: the figures cover only the parts given"),
    )
}

#[cfg(test)]
mod tests;
