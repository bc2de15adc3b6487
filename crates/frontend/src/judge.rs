//! Judges: pure functions from what was measured to findings. [`bundle`] lists every
//! check of `frontend bundle`, [`lcp`] those of `frontend lcp`.

use crate::lcp::LcpMetrics;
use crate::snapshot::{BundleMetrics, Route};
use powertune_core::units::{self, Quantity};
use powertune_core::{Finding, Value, Verdict};

const AREA: &str = "frontend";

/// The runbook's troubleshooting action for a ballooned bundle.
pub const BUNDLE_ACTION: &str = "run the bundle visualiser (npm run build && npx vite-bundle-visualizer); lazy-load the new feature with React.lazy()";

/// Initial-load growth against the baseline above this share of the baseline warns.
pub const GROWTH_WARN_PCT: f64 = 5.0;

/// A spread (max − min) of LCP across runs above this share of the median warns...
pub const SPREAD_WARN_PCT: f64 = 25.0;
/// ...when it is also wider than this (a 40 ms page varying by 20 ms is not news).
pub const SPREAD_WARN_MIN_MS: f64 = 250.0;

/// Every check of `frontend bundle`.
pub fn bundle(m: &BundleMetrics) -> Vec<Finding> {
    let mut out = vec![initial_size(m)];
    out.extend(routes(m));
    out.extend(growth(m));
    out
}

fn initial_size(m: &BundleMetrics) -> Finding {
    let verdict = Verdict::lower_is_better(m.initial.gzip as f64, m.budget_gzip as f64, None);
    let top: Vec<String> = m
        .initial_chunks()
        .take(3)
        .map(|c| {
            let share = 100.0 * c.sizes.gzip as f64 / m.initial.gzip.max(1) as f64;
            format!(
                "{} {} ({})",
                c.file,
                units::bytes(c.sizes.gzip),
                units::percent(share.round())
            )
        })
        .collect();
    let f = Finding::new(AREA, "initial_bundle_gzip", "initial load", verdict)
        .observed(Quantity::bytes(m.initial.gzip))
        .target(Value::lt(Quantity::bytes(m.budget_gzip)))
        .evidence(format!(
            "{} first-load files: {} raw, {} gzip, {} brotli; largest: {}; lazy chunks {} gzip",
            m.initial_chunks().count(),
            units::bytes(m.initial.raw),
            units::bytes(m.initial.gzip),
            units::bytes(m.initial.brotli),
            top.join(", "),
            units::bytes(m.lazy.gzip)
        ));
    if verdict == Verdict::Pass {
        f
    } else {
        f.action(BUNDLE_ACTION)
    }
}

fn routes(m: &BundleMetrics) -> Vec<Finding> {
    if m.routes.is_empty() {
        return vec![Finding::new(AREA, "lazy_route", "routes", Verdict::Warn)
            .observed("not checked")
            .target("every feature behind React.lazy()")
            .evidence(format!(
                "no file or directory under {} matches {}",
                m.root,
                m.route_globs.join(", ")
            ))
            .action("name the route modules with --routes, e.g. --routes 'src/features/*'")];
    }
    m.routes.iter().map(route).collect()
}

fn route(r: &Route) -> Finding {
    let target = "only a dynamic import";
    match r.status.as_str() {
        "lazy" => Finding::new(AREA, "lazy_route", &r.route, Verdict::Pass)
            .observed("lazy")
            .target(target)
            .evidence(format!(
                "own chunk {}",
                r.chunk.as_deref().unwrap_or("(none)")
            )),
        "initial" => {
            let importer = r
                .chain
                .len()
                .checked_sub(2)
                .and_then(|i| r.chain.get(i))
                .cloned()
                .unwrap_or_default();
            Finding::new(AREA, "lazy_route", &r.route, Verdict::Warn)
                .observed("in the first load")
                .target(target)
                .evidence(format!("static import chain: {}", r.chain.join(" → ")))
                .action(format!(
                    "React.lazy() the feature: load it with lazy(() => import(...)) in the router and remove the static import in {importer}"
                ))
        }
        _ => Finding::new(AREA, "lazy_route", &r.route, Verdict::Warn)
            .observed("not in the build")
            .target(target)
            .evidence("no chunk holds it and no entry imports it")
            .action("check that the route is wired into the router, or narrow --routes"),
    }
}

fn growth(m: &BundleMetrics) -> Option<Finding> {
    let c = m.baseline.as_ref()?;
    let before = c.initial_before.gzip;
    let pct = if before == 0 {
        0.0
    } else {
        100.0 * c.delta_gzip as f64 / before as f64
    };
    let entered: Vec<&str> = c
        .chunks
        .iter()
        .filter(|d| d.initial && (d.change == "added" || d.before_gzip == 0))
        .map(|d| d.id.as_str())
        .collect();
    let verdict = if pct > GROWTH_WARN_PCT || !entered.is_empty() {
        Verdict::Warn
    } else {
        Verdict::Pass
    };
    let top: Vec<String> = c
        .chunks
        .iter()
        .take(5)
        .map(|d| format!("{} {} ({})", d.id, signed(d.delta_gzip), d.change))
        .collect();
    let mut evidence = format!(
        "initial gzip {} → {} ({}); saved {}",
        units::bytes(before),
        units::bytes(c.initial_after.gzip),
        signed(c.delta_gzip),
        c.saved_at
    );
    if !top.is_empty() {
        evidence.push_str(&format!("; largest changes: {}", top.join(", ")));
    }
    if !entered.is_empty() {
        evidence.push_str(&format!("; new in the first load: {}", entered.join(", ")));
    }
    let f = Finding::new(
        AREA,
        "initial_bundle_growth",
        "initial load vs baseline",
        verdict,
    )
    .observed(Quantity::percent(pct))
    .target(Value::le(Quantity::percent(GROWTH_WARN_PCT)).note("growth, no new first-load chunk"))
    .evidence(evidence);
    Some(if verdict == Verdict::Pass {
        f
    } else {
        f.action(BUNDLE_ACTION)
    })
}

/// `+1.2 KiB` / `-340 B`.
pub fn signed(d: i64) -> String {
    let sign = if d < 0 { "-" } else { "+" };
    format!("{sign}{}", units::bytes(d.unsigned_abs()))
}

/// Every check of `frontend lcp`.
pub fn lcp(m: &LcpMetrics, lcp_target_ms: f64, cls_max: f64) -> Vec<Finding> {
    let runs = m.runs.len();
    let mut out = Vec::new();
    let Some(s) = &m.lcp else {
        out.push(
            Finding::new(AREA, "lcp", &m.url, Verdict::Warn)
                .observed("not measured")
                .target(Value::lt(Quantity::ms(lcp_target_ms)))
                .evidence(format!(
                    "no largest-contentful-paint entry in {runs} runs (a page with no text or image paints none)"
                )),
        );
        return out;
    };
    let verdict = Verdict::lower_is_better(s.median, lcp_target_ms, None);
    let elements: Vec<&str> = m
        .runs
        .iter()
        .filter_map(|r| r.lcp_element.as_deref())
        .collect();
    let f = Finding::new(AREA, "lcp", &m.url, verdict)
        .observed(Quantity::ms(s.median))
        .target(Value::lt(Quantity::ms(lcp_target_ms)))
        .evidence(format!(
            "median of {runs} cold loads{}; min {}, max {}; element {}",
            m.throttle_note(),
            units::ms(s.min),
            units::ms(s.max),
            elements.first().copied().unwrap_or("(unknown)")
        ));
    out.push(if verdict == Verdict::Pass {
        f
    } else {
        f.action("find the LCP element (the evidence names it): preload it or serve it smaller and sooner (compress, cache, CDN), and cut the JS that runs before it")
    });
    if runs >= 2 {
        let pct = if s.median > 0.0 {
            100.0 * (s.max - s.min) / s.median
        } else {
            0.0
        };
        let v = if pct > SPREAD_WARN_PCT && s.max - s.min > SPREAD_WARN_MIN_MS {
            Verdict::Warn
        } else {
            Verdict::Pass
        };
        let f = Finding::new(AREA, "lcp_spread", &m.url, v)
            .observed(Quantity::percent(pct))
            .target(
                Value::le(Quantity::percent(SPREAD_WARN_PCT))
                    .note("(max − min) / median, or < 250ms"),
            )
            .evidence(format!(
                "LCP per run: {}",
                m.runs
                    .iter()
                    .map(|r| r.lcp_ms.map_or("-".to_string(), units::ms))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        out.push(if v == Verdict::Pass {
            f
        } else {
            f.action("the runs disagree: run more (--runs 5 or more) on a quiet machine and gate on the median")
        });
    }
    let cls = m.cls.as_ref().map_or(0.0, |c| c.median);
    let verdict = if cls <= cls_max {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    let shifts: Vec<String> = m
        .runs
        .iter()
        .flat_map(|r| r.shifts.iter())
        .take(5)
        .map(|s| {
            format!(
                "{} at {}{}",
                units::trim(s.value, 4),
                units::ms(s.start_ms),
                s.sources
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    let f = Finding::new(AREA, "layout_shift", &m.url, verdict)
        .observed(Quantity::count(cls))
        .target(Value::le(Quantity::count(cls_max)).note("CLS, no shift after first paint"))
        .evidence(if shifts.is_empty() {
            format!("no layout-shift entry in {runs} runs")
        } else {
            format!("median CLS of {runs} runs; shifts: {}", shifts.join(", "))
        });
    out.push(if verdict == Verdict::Pass {
        f
    } else {
        f.action("reserve space for late content (width/height on images, fixed slots for banners and ads) so nothing moves after first paint")
    });
    out
}

#[cfg(test)]
mod tests;
