//! `frontend lcp URL`: cold loads in headless Chromium, driven over the DevTools
//! protocol with chromiumoxide (async on tokio, typed bindings for every CDP domain,
//! and `Page::execute` for any command; it drives the system's Chromium, nothing is
//! downloaded).
//!
//! Each run starts a new browser with a fresh profile directory and the HTTP cache
//! disabled, installs a buffered `PerformanceObserver` for `largest-contentful-paint`,
//! `layout-shift`, `paint` and `resource` entries before the page's own scripts run,
//! navigates, and waits until the page is settled: `load` has fired, no request has
//! been in flight and no entry has arrived for the quiet period (Lighthouse's 1 s),
//! or the run's timeout passed. No
//! input is sent (input ends LCP and marks later shifts as expected).

use crate::error::FrontendError;
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::emulation::{
    SetCpuThrottlingRateParams, SetDeviceMetricsOverrideParams,
};
#[allow(deprecated)]
use chromiumoxide::cdp::browser_protocol::network::EmulateNetworkConditionsParams;
use chromiumoxide::cdp::browser_protocol::network::{
    EnableParams, EventLoadingFailed, EventLoadingFinished, EventRequestWillBeSent,
    SetCacheDisabledParams,
};
use chromiumoxide::cdp::browser_protocol::page::AddScriptToEvaluateOnNewDocumentParams;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Network and CPU throttling applied to every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Throttle {
    /// The machine's own network and CPU.
    #[default]
    None,
    /// Lighthouse's mobile preset, request-level as its `devtools` method: RTT 150 ms
    /// × 3.75 = 562.5 ms latency, 1638.4 Kbps × 0.9 = 1474.56 Kbps down, 750 Kbps ×
    /// 0.9 = 675 Kbps up, CPU slowed 4×, a 412×823 viewport at DPR 1.75.
    Mobile,
}

impl Throttle {
    pub fn name(self) -> &'static str {
        match self {
            Throttle::None => "none",
            Throttle::Mobile => "mobile",
        }
    }
}

/// Lighthouse mobile: request latency in ms.
pub const MOBILE_LATENCY_MS: f64 = 150.0 * 3.75;
/// Lighthouse mobile: download throughput in Kbps (1 Kbps = 1024 bit/s, as Lighthouse).
pub const MOBILE_DOWN_KBPS: f64 = 1638.4 * 0.9;
/// Lighthouse mobile: upload throughput in Kbps.
pub const MOBILE_UP_KBPS: f64 = 750.0 * 0.9;
/// Lighthouse mobile: CPU slowdown multiplier.
pub const MOBILE_CPU_SLOWDOWN: f64 = 4.0;
/// Lighthouse mobile: viewport and device pixel ratio.
pub const MOBILE_VIEWPORT: (i64, i64, f64) = (412, 823, 1.75);
/// The window of an unthrottled run (Lighthouse's desktop screen).
pub const DESKTOP_VIEWPORT: (u32, u32) = (1350, 940);

/// Runs allowed at most.
pub const MAX_RUNS: u32 = 50;

/// What to load and how.
#[derive(Debug, Clone)]
pub struct LcpOptions {
    pub url: String,
    pub runs: u32,
    pub throttle: Throttle,
    /// The longest one run may take, launch to settled.
    pub timeout: Duration,
    /// How long the page must stay quiet after `load` to count as settled.
    pub quiet: Duration,
    /// The Chromium binary; default `$POWERTUNE_CHROMIUM`, else `chromium`,
    /// `chromium-browser`, `google-chrome` on `PATH`.
    pub chromium: Option<PathBuf>,
}

impl LcpOptions {
    pub fn new(url: impl Into<String>) -> LcpOptions {
        LcpOptions {
            url: url.into(),
            runs: 5,
            throttle: Throttle::None,
            timeout: Duration::from_secs(45),
            quiet: Duration::from_secs(1),
            chromium: None,
        }
    }

    /// Checks the options before any browser starts.
    pub fn validate(&self) -> Result<(), FrontendError> {
        let scheme_ok = self.url.starts_with("http://") || self.url.starts_with("https://");
        if !scheme_ok {
            return Err(FrontendError::Input(format!(
                "URL {}: give an http:// or https:// address, e.g. http://127.0.0.1:5173/",
                powertune_core::redact::url(&self.url)
            )));
        }
        if self.runs == 0 || self.runs > MAX_RUNS {
            return Err(FrontendError::Input(format!(
                "--runs {}: give 1 to {MAX_RUNS} (5 is a stable median)",
                self.runs
            )));
        }
        Ok(())
    }
}

/// One layout shift (entries with recent input are left out, as web-vitals does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shift {
    /// When it happened, ms after navigation start.
    pub start_ms: f64,
    pub value: f64,
    /// The elements that moved.
    pub sources: Vec<String>,
}

/// One cold load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LcpRun {
    /// The last largest-contentful-paint entry's time, ms after navigation start.
    pub lcp_ms: Option<f64>,
    /// The LCP element (`img[src=hero.svg]`, `h1`).
    pub lcp_element: Option<String>,
    pub fcp_ms: Option<f64>,
    pub load_ms: Option<f64>,
    /// CLS: the largest session window (entries < 1 s apart, window < 5 s) of shifts.
    pub cls: f64,
    pub shifts: Vec<Shift>,
    /// False when the timeout came before the page settled (figures so far kept).
    pub settled: bool,
    /// Wall time of the run, launch included.
    pub wall_ms: f64,
}

/// Median and range of one figure across runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The median (mean of the middle two for an even count) and range.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// The payload of `frontend lcp` (schema `docs/schema/frontend-lcp.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LcpMetrics {
    /// The page, redacted.
    pub url: String,
    /// Chromium's product string (`Chrome/156.0.8078.114`).
    pub browser: String,
    /// `none` or `mobile`.
    pub throttle: String,
    pub lcp_target_ms: f64,
    pub cls_max: f64,
    pub runs: Vec<LcpRun>,
    pub lcp: Option<Spread>,
    pub cls: Option<Spread>,
}

impl LcpMetrics {
    /// ` (mobile throttling)` or nothing.
    pub fn throttle_note(&self) -> String {
        if self.throttle == "none" {
            String::new()
        } else {
            format!(" ({} throttling)", self.throttle)
        }
    }
}

/// CLS as web-vitals computes it: shifts grouped into session windows (next shift
/// < 1 s after the previous and < 5 s after the window's first), the largest sum.
pub fn cls(shifts: &[Shift]) -> f64 {
    let mut sorted: Vec<&Shift> = shifts.iter().collect();
    sorted.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    let (mut best, mut sum) = (0.0f64, 0.0f64);
    let (mut first, mut prev) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for s in sorted {
        if s.start_ms - prev < 1000.0 && s.start_ms - first < 5000.0 {
            sum += s.value;
        } else {
            sum = s.value;
            first = s.start_ms;
        }
        prev = s.start_ms;
        best = best.max(sum);
    }
    best
}

/// Installed before the page's scripts: records entries into `window.__powertune`.
const OBSERVER: &str = r#"(() => {
  const s = { lcp: null, element: null, fcp: null, shifts: [], last: 0 };
  Object.defineProperty(window, '__powertune', { value: s });
  const describe = (n) => {
    if (!n || !n.tagName) return null;
    let d = n.tagName.toLowerCase();
    if (n.id) d += '#' + n.id;
    const src = n.currentSrc || n.src;
    if (src) d += '[src=' + String(src).split('/').pop() + ']';
    return d;
  };
  const observe = (type, f) => {
    try {
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) f(e);
        s.last = performance.now();
      }).observe({ type, buffered: true });
    } catch (_) {}
  };
  observe('largest-contentful-paint', (e) => { s.lcp = e.startTime; s.element = describe(e.element); });
  observe('layout-shift', (e) => {
    if (!e.hadRecentInput) s.shifts.push({ start: e.startTime, value: e.value,
      sources: (e.sources || []).map((x) => describe(x.node)).filter(Boolean) });
  });
  observe('paint', (e) => { if (e.name === 'first-contentful-paint') s.fcp = e.startTime; });
  observe('resource', () => {});
})();"#;

/// Read on every poll.
const PROBE: &str = r#"JSON.stringify({
  s: window.__powertune || null,
  ready: document.readyState,
  href: location.href,
  now: performance.now(),
  load: (performance.getEntriesByType('navigation')[0] || {}).loadEventEnd || 0
})"#;

#[derive(Debug, Deserialize)]
struct Probe {
    s: Option<Seen>,
    ready: String,
    href: String,
    now: f64,
    load: f64,
}

#[derive(Debug, Deserialize)]
struct Seen {
    lcp: Option<f64>,
    element: Option<String>,
    fcp: Option<f64>,
    shifts: Vec<RawShift>,
    last: f64,
}

#[derive(Debug, Deserialize)]
struct RawShift {
    start: f64,
    value: f64,
    sources: Vec<String>,
}

/// The Chromium to drive, or one line saying how to install it.
pub fn find_chromium(given: Option<&PathBuf>) -> Result<PathBuf, FrontendError> {
    if let Some(p) = given
        .cloned()
        .or_else(|| std::env::var_os("POWERTUNE_CHROMIUM").map(PathBuf::from))
    {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(FrontendError::NoBrowser(format!(
                "no Chromium at {}: install it (Debian: apt-get install chromium) or name the binary with --chromium PATH",
                p.display()
            )))
        };
    }
    let names = ["chromium", "chromium-browser", "google-chrome"];
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(FrontendError::NoBrowser(
        "no Chromium found (looked for chromium, chromium-browser, google-chrome on PATH): install it (Debian: apt-get install chromium) or name the binary with --chromium PATH"
            .into(),
    ))
}

/// What the caller hears and says between runs: `progress(done, total)` after each
/// run; no further run starts once `stop()` is true (the report then covers the runs
/// done).
pub struct Hooks<'a> {
    pub progress: &'a (dyn Fn(u32, u32) + Sync),
    pub stop: &'a (dyn Fn() -> bool + Sync),
}

impl Hooks<'static> {
    /// No progress, never stopped.
    pub fn none() -> Hooks<'static> {
        Hooks {
            progress: &|_, _| {},
            stop: &|| false,
        }
    }
}

/// Runs the cold loads.
pub async fn measure(
    opts: &LcpOptions,
    lcp_target_ms: f64,
    cls_max: f64,
    hooks: &Hooks<'_>,
) -> Result<LcpMetrics, FrontendError> {
    opts.validate()?;
    let chromium = find_chromium(opts.chromium.as_ref())?;
    let mut runs = Vec::new();
    let mut browser_name = String::new();
    for i in 0..opts.runs {
        if (hooks.stop)() {
            break;
        }
        let (run, product) = tokio::time::timeout(
            opts.timeout + Duration::from_secs(30),
            one_run(opts, &chromium),
        )
        .await
        .map_err(|_| {
            FrontendError::Browser(format!(
                "run {}: Chromium did not answer within 30s past --timeout",
                i + 1
            ))
        })??;
        browser_name = product;
        runs.push(run);
        (hooks.progress)(i + 1, opts.runs);
    }
    let lcps: Vec<f64> = runs.iter().filter_map(|r| r.lcp_ms).collect();
    let clss: Vec<f64> = runs.iter().map(|r| r.cls).collect();
    Ok(LcpMetrics {
        url: powertune_core::redact::url(&opts.url),
        browser: browser_name,
        throttle: opts.throttle.name().into(),
        lcp_target_ms,
        cls_max,
        lcp: Spread::of(&lcps),
        cls: Spread::of(&clss),
        runs,
    })
}

/// Measures and judges: the one entry of `frontend lcp`.
pub async fn inspect(
    opts: &LcpOptions,
    targets: &powertune_core::Targets,
    hooks: &Hooks<'_>,
) -> Result<powertune_core::Inspection<LcpMetrics>, FrontendError> {
    let (target, cls_max) = (targets.frontend.lcp_ms, targets.frontend.cls_max);
    let m = measure(opts, target, cls_max, hooks).await?;
    let findings = crate::judge::lcp(&m, target, cls_max);
    let text = crate::render::lcp(&m);
    Ok(powertune_core::Inspection::new(
        "frontend lcp",
        findings,
        m,
        text,
    ))
}

fn cdp(what: &'static str) -> impl Fn(chromiumoxide::error::CdpError) -> FrontendError {
    move |e| FrontendError::Browser(format!("{what}: {e}"))
}

async fn one_run(opts: &LcpOptions, chromium: &PathBuf) -> Result<(LcpRun, String), FrontendError> {
    let started = Instant::now();
    let profile = tempfile::Builder::new()
        .prefix("powertune-lcp-")
        .tempdir()
        .map_err(|e| FrontendError::Browser(format!("cannot make a profile directory: {e}")))?;
    let (w, h) = DESKTOP_VIEWPORT;
    let config = BrowserConfig::builder()
        .chrome_executable(chromium)
        .no_sandbox()
        .new_headless_mode()
        .user_data_dir(profile.path())
        .window_size(w, h)
        .launch_timeout(Duration::from_secs(60))
        .request_timeout(opts.timeout)
        .arg("--disable-gpu")
        .arg("--disable-dev-shm-usage")
        .arg("--disable-background-networking")
        .arg("--no-first-run")
        .build()
        .map_err(FrontendError::Browser)?;
    let (mut browser, mut handler) = Browser::launch(config).await.map_err(|e| {
        FrontendError::NoBrowser(format!(
            "cannot start Chromium at {}: {e} (Debian: apt-get install chromium)",
            chromium.display()
        ))
    })?;
    let driver = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let result = drive(&browser, opts, started).await;
    let _ = browser.close().await;
    let _ = browser.wait().await;
    driver.abort();
    drop(profile);
    result
}

async fn drive(
    browser: &Browser,
    opts: &LcpOptions,
    started: Instant,
) -> Result<(LcpRun, String), FrontendError> {
    let product = browser
        .version()
        .await
        .map(|v| v.product)
        .map_err(cdp("read the browser version"))?;
    let page = browser
        .new_page("about:blank")
        .await
        .map_err(cdp("open a page"))?;
    page.execute(EnableParams::default())
        .await
        .map_err(cdp("enable the network domain"))?;
    page.execute(SetCacheDisabledParams::new(true))
        .await
        .map_err(cdp("disable the cache"))?;
    if opts.throttle == Throttle::Mobile {
        let bytes = |kbps: f64| kbps * 1024.0 / 8.0;
        // Lighthouse's devtools throttling sends this command; its successor
        // (emulateNetworkConditionsByRule) is experimental.
        #[allow(deprecated)]
        let conditions = EmulateNetworkConditionsParams::new(
            false,
            MOBILE_LATENCY_MS,
            bytes(MOBILE_DOWN_KBPS),
            bytes(MOBILE_UP_KBPS),
        );
        page.execute(conditions)
            .await
            .map_err(cdp("throttle the network"))?;
        page.execute(SetCpuThrottlingRateParams::new(MOBILE_CPU_SLOWDOWN))
            .await
            .map_err(cdp("throttle the CPU"))?;
        let (w, h, dpr) = MOBILE_VIEWPORT;
        page.execute(SetDeviceMetricsOverrideParams::new(w, h, dpr, true))
            .await
            .map_err(cdp("emulate the mobile screen"))?;
    }
    page.execute(AddScriptToEvaluateOnNewDocumentParams::new(OBSERVER))
        .await
        .map_err(cdp("install the observer"))?;
    let net = Arc::new(Mutex::new(Network {
        in_flight: BTreeSet::new(),
        ended_early: BTreeSet::new(),
        last: Instant::now(),
    }));
    let mut sent = page
        .event_listener::<EventRequestWillBeSent>()
        .await
        .map_err(cdp("watch requests"))?;
    let mut finished = page
        .event_listener::<EventLoadingFinished>()
        .await
        .map_err(cdp("watch requests"))?;
    let mut failed = page
        .event_listener::<EventLoadingFailed>()
        .await
        .map_err(cdp("watch requests"))?;
    let (n1, n2, n3) = (Arc::clone(&net), Arc::clone(&net), Arc::clone(&net));
    let watchers = [
        tokio::spawn(async move {
            while let Some(e) = sent.next().await {
                lock(&n1).start(e.request_id.inner());
            }
        }),
        tokio::spawn(async move {
            while let Some(e) = finished.next().await {
                lock(&n2).end(e.request_id.inner());
            }
        }),
        tokio::spawn(async move {
            while let Some(e) = failed.next().await {
                lock(&n3).end(e.request_id.inner());
            }
        }),
    ];
    let result = settle(&page, opts, started, &net).await;
    for w in watchers {
        w.abort();
    }
    result.map(|run| (run, product))
}

/// Requests in flight and when that last changed.
struct Network {
    in_flight: BTreeSet<String>,
    /// Ends seen before their start: the three event streams are read by separate
    /// tasks, so a request's end can be handled first. Each entry waits for its start.
    ended_early: BTreeSet<String>,
    last: Instant,
}

impl Network {
    fn start(&mut self, id: &str) {
        if !self.ended_early.remove(id) {
            self.in_flight.insert(id.to_string());
        }
        self.last = Instant::now();
    }
    fn end(&mut self, id: &str) {
        if !self.in_flight.remove(id) {
            self.ended_early.insert(id.to_string());
        }
        self.last = Instant::now();
    }
    /// Quiet for `d`: nothing in flight and nothing changed for that long.
    fn quiet_for(&self, d: Duration) -> bool {
        self.in_flight.is_empty() && self.last.elapsed() >= d
    }
}

fn lock(m: &Mutex<Network>) -> std::sync::MutexGuard<'_, Network> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Navigates and polls until settled or the timeout.
async fn settle(
    page: &chromiumoxide::Page,
    opts: &LcpOptions,
    started: Instant,
    net: &Mutex<Network>,
) -> Result<LcpRun, FrontendError> {
    // Navigates without waiting on the navigation (a throttled load may outlast the
    // command timeout); the polls below wait for the page instead.
    let go = format!(
        "location.href = {}",
        serde_json::to_string(&opts.url).map_err(|e| FrontendError::Browser(e.to_string()))?
    );
    page.evaluate(go.as_str())
        .await
        .map_err(cdp("load the page"))?;
    let quiet = opts.quiet.as_secs_f64() * 1000.0;
    let mut last: Option<Probe> = None;
    let mut settled = false;
    while started.elapsed() < opts.timeout {
        // While the navigation commits the old document may be gone: try again.
        let text: Option<String> = match page.evaluate(PROBE).await {
            Ok(v) => v.into_value().ok(),
            Err(_) => None,
        };
        let Some(p) = text.and_then(|t| serde_json::from_str::<Probe>(&t).ok()) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if p.href == "about:blank" {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let calm_since = p.load.max(p.s.as_ref().map_or(0.0, |s| s.last));
        let done = p.ready == "complete"
            && p.load > 0.0
            && p.now - calm_since >= quiet
            && lock(net).quiet_for(opts.quiet);
        last = Some(p);
        if done {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = last.ok_or_else(|| {
        FrontendError::Browser(format!(
            "{}: no answer from the page within the timeout",
            powertune_core::redact::url(&opts.url)
        ))
    })?;
    let seen = p.s.unwrap_or(Seen {
        lcp: None,
        element: None,
        fcp: None,
        shifts: Vec::new(),
        last: 0.0,
    });
    let shifts: Vec<Shift> = seen
        .shifts
        .into_iter()
        .map(|s| Shift {
            start_ms: s.start,
            value: s.value,
            sources: s.sources,
        })
        .collect();
    Ok(LcpRun {
        lcp_ms: seen.lcp,
        lcp_element: seen.element,
        fcp_ms: seen.fcp,
        load_ms: (p.load > 0.0).then_some(p.load),
        cls: cls(&shifts),
        shifts,
        settled,
        wall_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_handled_before_its_start_leaves_nothing_in_flight() {
        let mut n = Network {
            in_flight: BTreeSet::new(),
            ended_early: BTreeSet::new(),
            last: Instant::now(),
        };
        n.end("7");
        n.start("7");
        n.start("8");
        assert_eq!(n.in_flight.len(), 1);
        n.end("8");
        assert!(n.in_flight.is_empty() && n.ended_early.is_empty());
        assert!(n.quiet_for(Duration::ZERO));
    }

    fn s(start_ms: f64, value: f64) -> Shift {
        Shift {
            start_ms,
            value,
            sources: Vec::new(),
        }
    }

    #[test]
    fn cls_is_the_largest_session_window() {
        assert_eq!(cls(&[]), 0.0);
        // 0.1 + 0.2 in one window (< 1 s apart); 0.25 alone 3 s later.
        let v = cls(&[s(100.0, 0.1), s(900.0, 0.2), s(3900.0, 0.25)]);
        assert!((v - 0.3).abs() < 1e-9, "{v}");
        // A window ends 5 s after its first shift even with shifts < 1 s apart.
        let chain: Vec<Shift> = (0..12).map(|i| s(i as f64 * 600.0, 0.1)).collect();
        let v = cls(&chain);
        assert!((v - 0.9).abs() < 1e-9, "{v}");
    }

    #[test]
    fn median_and_range() {
        let sp = Spread::of(&[300.0, 100.0, 200.0]).unwrap();
        assert_eq!((sp.median, sp.min, sp.max), (200.0, 100.0, 300.0));
        assert_eq!(Spread::of(&[1.0, 3.0]).unwrap().median, 2.0);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn bad_urls_and_run_counts_are_refused_before_any_browser_starts() {
        let mut o = LcpOptions::new("ftp://x/");
        assert!(o.validate().unwrap_err().to_string().contains("http://"));
        o.url = "http://127.0.0.1:1/".into();
        o.runs = 0;
        assert!(o.validate().unwrap_err().to_string().contains("--runs 0"));
    }

    #[test]
    fn a_missing_chromium_says_how_to_install_it() {
        let e = find_chromium(Some(&PathBuf::from("/nonexistent/chromium"))).unwrap_err();
        assert!(e.to_string().contains("apt-get install chromium"), "{e}");
    }
}
