//! `verify`'s error-rate item end to end: `baseline save` reads a live `apm serve`
//! (in-process, fed Rails request spans over OTLP/HTTP), then `verify` reads another
//! receiver over the window. The same error rate → PASS; a significant rise (the
//! one-sided two-proportion z-test of `powertune_core::stats`) → FAIL on that item.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod apm_live_common;
mod common;

use apm_live_common::{LiveApm, Request};
use powertune_core::Verdict;
use powertune_doctor::verify;

const ROUTE: &str = "POST /api/v1/missions";

/// A receiver that saw `ok` good requests and `errors` answered 500.
async fn apm_with(ok: u32, errors: u32) -> LiveApm {
    let mut apm = LiveApm::start().await;
    let r = |status| Request {
        route: ROUTE,
        duration_ms: 40,
        status,
        cache_hit: None,
    };
    apm.send(ok, r(201)).await;
    apm.send(errors, r(500)).await;
    apm
}

fn error_item(i: &powertune_core::Inspection<verify::VerifyMetrics>) -> &powertune_core::Finding {
    i.findings.iter().find(|f| f.check == "error_rate").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_on_a_significant_error_rise_and_passes_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("before");
    // the baseline: 4 errors in 400 requests (1%)
    let before = apm_with(396, 4).await;
    let m = verify::save(
        &base,
        &common::options(&[("apm", &before.url)]),
        &common::targets(),
    )
    .await
    .unwrap();
    assert_eq!(m.reports, ["apm.json"]);
    before.stop();

    // unchanged: 5 errors in 400 requests, no significant rise
    let same = apm_with(395, 5).await;
    let i = verify::verify(
        &base,
        &common::options(&[("apm", &same.url)]),
        &common::targets(),
    )
    .await
    .unwrap();
    let f = error_item(&i);
    assert_eq!(f.verdict, Verdict::Pass, "{f:#?}");
    assert!(
        f.evidence
            .contains("5 errors of 400 requests now, 4 of 400 in the baseline"),
        "{}",
        f.evidence
    );
    same.stop();

    // planted: 40 errors in 400 requests (10%), far past chance
    let worse = apm_with(360, 40).await;
    let i = verify::verify(
        &base,
        &common::options(&[("apm", &worse.url)]),
        &common::targets(),
    )
    .await
    .unwrap();
    let f = error_item(&i);
    assert_eq!(f.verdict, Verdict::Fail, "{f:#?}");
    assert!(f.evidence.contains("z-test p = 0.0000"), "{}", f.evidence);
    assert!(f.action.contains("--journal"), "{}", f.action);
    assert_eq!(i.report().unwrap().verdict, Verdict::Fail);
    assert!(i.text.contains("FAIL error_rate"), "{}", i.text);
    worse.stop();
}
