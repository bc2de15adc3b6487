//! `frontend lcp` in Debian's Chromium against the fixture app's builds, served from
//! loopback by a server that can delay the hero image.

// Test code: helpers outside #[test] functions may unwrap, panic and print.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod fixture;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use powertune_core::{Targets, Verdict};
use powertune_frontend::lcp::{self, LcpOptions, Throttle};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone)]
struct Site {
    dir: PathBuf,
    hero_delay: Duration,
}

async fn serve(State(site): State<Site>, req: Request) -> Response {
    let path = req.uri().path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    if path.contains("..") {
        return (axum::http::StatusCode::BAD_REQUEST, "bad path").into_response();
    }
    if path == "hero.svg" {
        tokio::time::sleep(site.hero_delay).await;
    }
    let Ok(body) = tokio::fs::read(site.dir.join(path)).await else {
        return (axum::http::StatusCode::NOT_FOUND, "not found").into_response();
    };
    let ty = match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    ([(axum::http::header::CONTENT_TYPE, ty)], body).into_response()
}

/// Serves `dir` on 127.0.0.1:0; returns its URL.
async fn site(dir: PathBuf, hero_delay: Duration) -> String {
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(Site { dir, hero_delay });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_hero_and_a_late_banner_are_flagged() {
    let b = fixture::builds();
    let url = site(b.lcp.clone(), Duration::from_millis(3000)).await;
    let mut o = LcpOptions::new(&url);
    o.runs = 2;
    let i = lcp::inspect(&o, &Targets::default(), &lcp::Hooks::none())
        .await
        .unwrap();
    let m = &i.metrics;
    assert_eq!(m.runs.len(), 2);
    assert!(m.browser.contains("Chrome/"), "{}", m.browser);
    for r in &m.runs {
        assert!(r.settled, "{r:?}");
        let l = r.lcp_ms.unwrap();
        assert!((3000.0..20_000.0).contains(&l), "LCP {l}");
        assert!(
            r.lcp_element.as_deref().unwrap().contains("hero.svg"),
            "{r:?}"
        );
        // The banner comes 1.2 s after the script runs, well after first paint.
        let s = r.shifts.first().unwrap();
        assert!(s.start_ms > r.fcp_ms.unwrap(), "{r:?}");
        assert!(r.cls > 0.05, "{r:?}");
    }
    let by = |c: &str| i.findings.iter().find(|f| f.check == c).unwrap();
    assert_eq!(by("lcp").verdict, Verdict::Fail);
    assert_eq!(by("layout_shift").verdict, Verdict::Fail);
    let ev = &by("layout_shift").evidence;
    // Each shift is named with its time and the element Chromium says moved.
    assert!(
        ev.contains("shifts: 0.") && ev.contains(" at ") && ev.contains(" ("),
        "{ev}"
    );
    powertune_test_support::schema::check::<powertune_frontend::LcpMetrics>(
        "frontend-lcp.v1",
        &i.report().unwrap().metrics,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_app_on_loopback_passes_and_mobile_throttling_slows_it() {
    let b = fixture::builds();
    let url = site(b.lazy.clone(), Duration::ZERO).await;
    let mut o = LcpOptions::new(&url);
    o.runs = 2;
    let i = lcp::inspect(&o, &Targets::default(), &lcp::Hooks::none())
        .await
        .unwrap();
    // The spread may warn on a busy machine; LCP and layout shift pass.
    for f in i.findings.iter().filter(|f| f.check != "lcp_spread") {
        assert_eq!(f.verdict, Verdict::Pass, "{f:?}");
    }
    let fast = i.metrics.lcp.as_ref().unwrap().median;
    assert!(fast < 2500.0, "{fast}");

    o.runs = 1;
    o.throttle = Throttle::Mobile;
    let i = lcp::inspect(&o, &Targets::default(), &lcp::Hooks::none())
        .await
        .unwrap();
    assert_eq!(i.metrics.throttle, "mobile");
    let slow = i.metrics.lcp.as_ref().unwrap().median;
    // Two round trips (page, then its script) at 562.5 ms of latency each.
    assert!(
        slow > 2.0 * lcp::MOBILE_LATENCY_MS,
        "throttled LCP {slow} (unthrottled {fast})"
    );
}

#[tokio::test]
async fn no_chromium_is_one_line_saying_how_to_install_it() {
    let mut o = LcpOptions::new("http://127.0.0.1:9/");
    o.chromium = Some(PathBuf::from("/nonexistent/chromium"));
    let e = lcp::inspect(&o, &Targets::default(), &lcp::Hooks::none())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("apt-get install chromium") && !e.contains('\n'),
        "{e}"
    );
}
