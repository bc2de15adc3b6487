//! `frontend bundle` on real Vite builds of the fixture app (built by npm + Vite
//! during the test run, see `fixture/mod.rs`).

// Test code: helpers outside #[test] functions may unwrap, panic and print.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod fixture;

use powertune_core::{Targets, Verdict};
use powertune_frontend::bundle::{self, BundleOptions};
use powertune_frontend::BundleBaseline;

fn options(dist: &std::path::Path) -> BundleOptions {
    BundleOptions::new(dist)
}

#[test]
fn lazy_routes_pass_and_sizes_match_nodes_zlib() {
    let b = fixture::builds();
    let i = bundle::inspect(&options(&b.lazy), &Targets::default()).unwrap();
    let m = &i.metrics;
    assert_eq!(m.manifest, ".vite/manifest.json");
    for f in &i.findings {
        assert_eq!(f.verdict, Verdict::Pass, "{f:?}");
    }
    let routes: Vec<(&str, &str)> = m
        .routes
        .iter()
        .map(|r| (r.route.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        routes,
        vec![
            ("src/features/orders", "lazy"),
            ("src/features/reports", "lazy"),
            ("src/features/settings", "lazy")
        ]
    );
    // The first load is the entry chunk and its CSS; the features are lazy.
    let initial: Vec<&str> = m.initial_chunks().map(|c| c.kind.as_str()).collect();
    assert_eq!(initial.len(), 2, "{:?}", m.chunks);
    assert!(m
        .lazy_chunks()
        .any(|c| c.dynamic_entry && c.key == "src/features/orders/index.tsx"));
    assert!(m
        .lazy_chunks()
        .any(|c| c.kind == "css" && c.file.contains("orders")));

    // Every size against Node's zlib (gzip -9, Brotli 11), computed apart.
    let files: Vec<_> = m.chunks.iter().map(|c| b.lazy.join(&c.file)).collect();
    let node = fixture::node_sizes(&files);
    for (c, (gz, br)) in m.chunks.iter().zip(node) {
        let raw = std::fs::metadata(b.lazy.join(&c.file)).unwrap().len();
        assert_eq!(c.sizes.raw, raw, "{}", c.file);
        let close = |a: u64, b: u64| (a as f64 - b as f64).abs() <= (b as f64 * 0.02).max(8.0);
        assert!(
            close(c.sizes.gzip, gz),
            "{}: gzip {} vs node {gz}",
            c.file,
            c.sizes.gzip
        );
        assert!(
            close(c.sizes.brotli, br),
            "{}: brotli {} vs node {br}",
            c.file,
            c.sizes.brotli
        );
    }
    let sum: u64 = m.initial_chunks().map(|c| c.sizes.gzip).sum();
    assert_eq!(m.initial.gzip, sum);
    assert!(
        m.initial.gzip > 50 * 1024 && m.initial.gzip < 300 * 1024,
        "{}",
        m.initial.gzip
    );
}

#[test]
fn a_statically_imported_route_is_flagged_with_its_chain_from_the_legacy_manifest() {
    let b = fixture::builds();
    let i = bundle::inspect(&options(&b.static_), &Targets::default()).unwrap();
    assert_eq!(i.metrics.manifest, "manifest.json");
    let reports = i
        .metrics
        .routes
        .iter()
        .find(|r| r.route == "src/features/reports")
        .unwrap();
    assert_eq!(reports.status, "initial");
    assert_eq!(
        reports.chain,
        vec![
            "index.html",
            "src/main-static.tsx",
            "src/shell/header.tsx",
            "src/features/reports/index.tsx"
        ]
    );
    let f = i
        .findings
        .iter()
        .find(|f| f.check == "lazy_route" && f.subject == "src/features/reports")
        .unwrap();
    assert_eq!(f.verdict, Verdict::Warn);
    assert!(f.action.contains("React.lazy()") && f.action.contains("src/shell/header.tsx"));
    let others: Vec<Verdict> = i
        .findings
        .iter()
        .filter(|f| f.check == "lazy_route" && f.subject != "src/features/reports")
        .map(|f| f.verdict)
        .collect();
    assert_eq!(others, vec![Verdict::Pass, Verdict::Pass]);
}

#[test]
fn a_large_eager_dependency_is_over_budget_and_the_baseline_names_it() {
    let b = fixture::builds();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("main-bundle.json");
    let before = bundle::inspect(&options(&b.lazy), &Targets::default()).unwrap();
    BundleBaseline::save(&before.metrics, &saved).unwrap();

    let mut o = options(&b.heavy);
    o.baseline = Some((saved.clone(), BundleBaseline::load(&saved).unwrap()));
    let i = bundle::inspect(&o, &Targets::default()).unwrap();
    let size = &i.findings[0];
    assert_eq!(size.check, "initial_bundle_gzip");
    assert_eq!(size.verdict, Verdict::Fail, "{size:?}");
    assert!(i.metrics.initial.gzip > 300 * 1024);
    assert_eq!(
        i.report().unwrap().exit_code(),
        powertune_core::ExitCode::Failed
    );
    // The sourcemap names the modules of the entry chunk: ECharts among them.
    let entry = i.metrics.initial_chunks().find(|c| c.entry).unwrap();
    assert!(entry.modules_total > 100, "{}", entry.modules_total);
    assert!(
        entry
            .modules
            .iter()
            .any(|m| m.starts_with("node_modules/echarts/")),
        "{:?}",
        entry.modules
    );

    let c = i.metrics.baseline.as_ref().unwrap();
    assert_eq!(c.initial_before, before.metrics.initial);
    let grown = &c.chunks[0];
    assert_eq!(
        (grown.id.as_str(), grown.change.as_str()),
        ("index.html", "changed")
    );
    assert!(grown.delta_gzip > 250 * 1024, "{grown:?}");
    assert_eq!(
        c.delta_gzip,
        i.metrics.initial.gzip as i64 - before.metrics.initial.gzip as i64
    );
    let growth = i
        .findings
        .iter()
        .find(|f| f.check == "initial_bundle_growth")
        .unwrap();
    assert_eq!(growth.verdict, Verdict::Warn);

    // The budget is a target: raising it passes the same build.
    let mut t = Targets::default();
    t.frontend.bundle_gzip_kb = 1000.0;
    let i = bundle::inspect(&options(&b.heavy), &t).unwrap();
    assert_eq!(i.findings[0].verdict, Verdict::Pass);
}

#[test]
fn a_build_without_manifest_says_how_to_enable_it() {
    let b = fixture::builds();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(b.lazy.join("index.html"), dir.path().join("index.html")).unwrap();
    let e = bundle::inspect(&BundleOptions::new(dir.path()), &Targets::default()).unwrap_err();
    assert!(e.to_string().contains("build: { manifest: true }"), "{e}");
}

#[test]
fn the_metrics_match_their_schema() {
    let b = fixture::builds();
    let i = bundle::inspect(&options(&b.static_), &Targets::default()).unwrap();
    powertune_test_support::schema::check::<powertune_frontend::BundleMetrics>(
        "frontend-bundle.v1",
        &i.report().unwrap().metrics,
    );
}
