use super::*;
use crate::lcp::{LcpRun, Shift, Spread};
use crate::sizes::Sizes;
use crate::snapshot::{Chunk, ChunkDelta, Comparison};

fn chunk(file: &str, initial: bool, gzip: u64) -> Chunk {
    Chunk {
        id: file.into(),
        kind: "js".into(),
        key: file.into(),
        file: file.into(),
        initial,
        entry: initial,
        dynamic_entry: !initial,
        sizes: Sizes {
            raw: gzip * 3,
            gzip,
            brotli: gzip * 9 / 10,
        },
        modules: vec![],
        modules_total: 0,
    }
}

fn metrics(initial_gzip: u64) -> BundleMetrics {
    let chunks = vec![
        chunk("assets/index.js", true, initial_gzip),
        chunk("assets/orders.js", false, 500),
    ];
    let sum = |i: bool| {
        chunks
            .iter()
            .filter(|c| c.initial == i)
            .map(|c| c.sizes)
            .sum()
    };
    BundleMetrics {
        dist: "dist".into(),
        manifest: ".vite/manifest.json".into(),
        root: ".".into(),
        budget_gzip: 300 * 1024,
        initial: sum(true),
        initial_js: sum(true),
        initial_css: Sizes::default(),
        lazy: sum(false),
        chunks,
        route_globs: vec!["src/features/*".into()],
        routes: vec![
            Route {
                route: "src/features/orders".into(),
                status: "lazy".into(),
                chunk: Some("assets/orders.js".into()),
                chain: vec![],
            },
            Route {
                route: "src/features/reports".into(),
                status: "initial".into(),
                chunk: None,
                chain: vec![
                    "index.html".into(),
                    "src/main.tsx".into(),
                    "src/shell/header.tsx".into(),
                    "src/features/reports/index.tsx".into(),
                ],
            },
        ],
        baseline: None,
    }
}

#[test]
fn the_budget_fails_above_300_kib_and_names_the_largest_chunks() {
    let f = bundle(&metrics(100 * 1024));
    assert_eq!(f[0].verdict, Verdict::Pass);
    let f = bundle(&metrics(301 * 1024));
    assert_eq!(f[0].verdict, Verdict::Fail);
    assert!(
        f[0].evidence.contains("assets/index.js"),
        "{}",
        f[0].evidence
    );
    assert!(f[0].action.contains("vite-bundle-visualizer"));
}

#[test]
fn a_route_in_the_first_load_names_its_chain_and_the_import_to_remove() {
    let f = bundle(&metrics(1000));
    assert_eq!(f[1].verdict, Verdict::Pass);
    assert_eq!(f[2].verdict, Verdict::Warn);
    assert!(f[2]
        .evidence
        .contains("src/main.tsx → src/shell/header.tsx → src/features/reports/index.tsx"));
    assert!(f[2].action.contains("React.lazy()") && f[2].action.contains("src/shell/header.tsx"));
}

#[test]
fn no_route_found_is_not_a_pass() {
    let mut m = metrics(1000);
    m.routes.clear();
    let f = bundle(&m);
    assert_eq!(f[1].verdict, Verdict::Warn);
    assert!(f[1].evidence.contains("src/features/*"));
}

#[test]
fn growth_past_five_percent_or_a_new_first_load_chunk_warns() {
    let mut m = metrics(1100);
    let base = |after: u64, chunks: Vec<ChunkDelta>| Comparison {
        baseline_file: "b.json".into(),
        saved_at: "2026-01-01T00:00:00Z".into(),
        initial_before: Sizes {
            raw: 3000,
            gzip: 1000,
            brotli: 900,
        },
        initial_after: Sizes {
            raw: 3300,
            gzip: after,
            brotli: 990,
        },
        delta_gzip: after as i64 - 1000,
        delta_brotli: 90,
        delta_raw: 300,
        chunks,
    };
    m.baseline = Some(base(1040, vec![]));
    assert_eq!(bundle(&m).last().unwrap().verdict, Verdict::Pass);
    m.baseline = Some(base(1100, vec![]));
    assert_eq!(bundle(&m).last().unwrap().verdict, Verdict::Warn);
    m.baseline = Some(base(
        1010,
        vec![ChunkDelta {
            id: "assets/chart.js".into(),
            change: "added".into(),
            initial: true,
            before_gzip: 0,
            after_gzip: 10,
            delta_gzip: 10,
        }],
    ));
    let f = bundle(&m);
    let g = f.last().unwrap();
    assert_eq!(g.verdict, Verdict::Warn);
    assert!(
        g.evidence
            .contains("new in the first load: assets/chart.js"),
        "{}",
        g.evidence
    );
}

fn run(lcp: f64, shifts: Vec<Shift>) -> LcpRun {
    LcpRun {
        lcp_ms: Some(lcp),
        lcp_element: Some("img[src=hero.svg]".into()),
        fcp_ms: Some(100.0),
        load_ms: Some(lcp),
        cls: crate::lcp::cls(&shifts),
        shifts,
        settled: true,
        wall_ms: 1.0,
    }
}

fn lcp_metrics(runs: Vec<LcpRun>) -> LcpMetrics {
    let l: Vec<f64> = runs.iter().filter_map(|r| r.lcp_ms).collect();
    let c: Vec<f64> = runs.iter().map(|r| r.cls).collect();
    LcpMetrics {
        url: "http://127.0.0.1/".into(),
        browser: "Chrome/1".into(),
        throttle: "none".into(),
        lcp_target_ms: 2500.0,
        cls_max: 0.01,
        lcp: Spread::of(&l),
        cls: Spread::of(&c),
        runs,
    }
}

#[test]
fn lcp_cls_and_spread_are_judged() {
    let ok = lcp_metrics(vec![
        run(800.0, vec![]),
        run(820.0, vec![]),
        run(810.0, vec![]),
    ]);
    let f = lcp(&ok, 2500.0, 0.01);
    assert!(f.iter().all(|f| f.verdict == Verdict::Pass), "{f:?}");
    let shift = || {
        vec![Shift {
            start_ms: 1300.0,
            value: 0.3,
            sources: vec!["h1".into()],
        }]
    };
    let bad = lcp_metrics(vec![
        run(3100.0, shift()),
        run(3000.0, shift()),
        run(6000.0, shift()),
    ]);
    let f = lcp(&bad, 2500.0, 0.01);
    assert_eq!(f[0].verdict, Verdict::Fail);
    assert!(f[0].evidence.contains("img[src=hero.svg]"));
    assert_eq!(f[1].check, "lcp_spread");
    assert_eq!(f[1].verdict, Verdict::Warn);
    assert_eq!(f[2].check, "layout_shift");
    assert_eq!(f[2].verdict, Verdict::Fail);
    assert!(f[2].evidence.contains("0.3 at"), "{}", f[2].evidence);
}
