//! Terminal text (no colour) and the Markdown tables of `frontend`.

use crate::judge::signed;
use crate::lcp::LcpMetrics;
use crate::snapshot::{BundleMetrics, Chunk};
use powertune_core::report::{table, truncate};
use powertune_core::units;

/// Chunks listed per group in the terminal and Markdown (all are in the JSON).
pub const MAX_LISTED: usize = 15;

fn modules_cell(c: &Chunk) -> String {
    let shown: Vec<&str> = c.modules.iter().take(3).map(String::as_str).collect();
    let more = c.modules_total.saturating_sub(shown.len());
    let mut s = shown.join(", ");
    if more > 0 {
        s.push_str(&format!(" +{more} more"));
    }
    truncate(&s, 70)
}

fn chunk_rows<'a>(chunks: impl Iterator<Item = &'a Chunk>) -> Vec<Vec<String>> {
    chunks
        .take(MAX_LISTED)
        .map(|c| {
            vec![
                c.file.clone(),
                units::bytes(c.sizes.raw),
                units::bytes(c.sizes.gzip),
                units::bytes(c.sizes.brotli),
                modules_cell(c),
            ]
        })
        .collect()
}

fn header() -> Vec<String> {
    ["file", "raw", "gzip", "brotli", "modules"]
        .map(String::from)
        .to_vec()
}

/// The terminal section of `frontend bundle`.
pub fn bundle(m: &BundleMetrics) -> String {
    let mut out = format!(
        "Vite build {} (manifest {})\ninitial load: {} gzip ({} raw, {} brotli) of {} budget; JS {} gzip, CSS {} gzip\n\n",
        m.dist,
        m.manifest,
        units::bytes(m.initial.gzip),
        units::bytes(m.initial.raw),
        units::bytes(m.initial.brotli),
        units::bytes(m.budget_gzip),
        units::bytes(m.initial_js.gzip),
        units::bytes(m.initial_css.gzip),
    );
    let mut rows = vec![header()];
    rows.extend(chunk_rows(m.initial_chunks()));
    out.push_str("First load, largest first:\n");
    out.push_str(&table(&rows));
    let lazy: Vec<&Chunk> = m.lazy_chunks().collect();
    if !lazy.is_empty() {
        out.push_str(&format!(
            "\nLazy chunks ({} files, {} gzip), loaded on navigation:\n",
            lazy.len(),
            units::bytes(m.lazy.gzip)
        ));
        let mut rows = vec![header()];
        rows.extend(chunk_rows(lazy.into_iter()));
        out.push_str(&table(&rows));
    }
    if let Some(c) = &m.baseline {
        out.push_str(&format!(
            "\nAgainst baseline {} (saved {}): initial gzip {} → {} ({})\n",
            c.baseline_file,
            c.saved_at,
            units::bytes(c.initial_before.gzip),
            units::bytes(c.initial_after.gzip),
            signed(c.delta_gzip)
        ));
        if !c.chunks.is_empty() {
            let mut rows = vec![
                ["chunk", "change", "first load", "before", "after", "delta"]
                    .map(String::from)
                    .to_vec(),
            ];
            rows.extend(c.chunks.iter().take(MAX_LISTED).map(|d| {
                vec![
                    d.id.clone(),
                    d.change.clone(),
                    if d.initial { "yes" } else { "no" }.into(),
                    units::bytes(d.before_gzip),
                    units::bytes(d.after_gzip),
                    signed(d.delta_gzip),
                ]
            }));
            out.push_str(&table(&rows));
        }
    }
    out
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Markdown added under the report summary (for a pull-request comment): the first
/// load's chunks and, with a baseline, the per-chunk deltas.
pub fn bundle_markdown(m: &BundleMetrics) -> String {
    let mut out = format!(
        "\n**Initial load** {} gzip · {} brotli · {} raw (budget {} gzip)\n\n",
        units::bytes(m.initial.gzip),
        units::bytes(m.initial.brotli),
        units::bytes(m.initial.raw),
        units::bytes(m.budget_gzip)
    );
    if let Some(c) = &m.baseline {
        out.push_str(&format!(
            "Against the baseline: {} → {} gzip (**{}**)\n\n",
            units::bytes(c.initial_before.gzip),
            units::bytes(c.initial_after.gzip),
            signed(c.delta_gzip)
        ));
        if !c.chunks.is_empty() {
            out.push_str("| chunk | change | first load | before | after | delta |\n|---|---|---|---:|---:|---:|\n");
            for d in c.chunks.iter().take(MAX_LISTED) {
                out.push_str(&format!(
                    "| `{}` | {} | {} | {} | {} | {} |\n",
                    md_cell(&d.id),
                    d.change,
                    if d.initial { "yes" } else { "no" },
                    units::bytes(d.before_gzip),
                    units::bytes(d.after_gzip),
                    signed(d.delta_gzip)
                ));
            }
            out.push('\n');
        }
    }
    out.push_str("| first-load file | gzip | brotli | raw |\n|---|---:|---:|---:|\n");
    for c in m.initial_chunks().take(MAX_LISTED) {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            md_cell(&c.file),
            units::bytes(c.sizes.gzip),
            units::bytes(c.sizes.brotli),
            units::bytes(c.sizes.raw)
        ));
    }
    out
}

/// The terminal section of `frontend lcp`.
pub fn lcp(m: &LcpMetrics) -> String {
    let mut out = format!(
        "{} cold loads of {} in {}{}\n",
        m.runs.len(),
        m.url,
        m.browser,
        m.throttle_note()
    );
    let mut rows = vec![["run", "LCP", "element", "FCP", "load", "CLS", "settled"]
        .map(String::from)
        .to_vec()];
    let ms = |v: Option<f64>| v.map_or("-".to_string(), units::ms);
    for (i, r) in m.runs.iter().enumerate() {
        rows.push(vec![
            (i + 1).to_string(),
            ms(r.lcp_ms),
            r.lcp_element.clone().unwrap_or_else(|| "-".into()),
            ms(r.fcp_ms),
            ms(r.load_ms),
            units::trim(r.cls, 4),
            if r.settled { "yes" } else { "timeout" }.into(),
        ]);
    }
    out.push_str(&table(&rows));
    if let Some(s) = &m.lcp {
        out.push_str(&format!(
            "LCP median {} (min {}, max {})",
            units::ms(s.median),
            units::ms(s.min),
            units::ms(s.max)
        ));
    }
    if let Some(s) = &m.cls {
        out.push_str(&format!(
            "; CLS median {} (min {}, max {})",
            units::trim(s.median, 4),
            units::trim(s.min, 4),
            units::trim(s.max, 4)
        ));
    }
    out.push('\n');
    out
}
