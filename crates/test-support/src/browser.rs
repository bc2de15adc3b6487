//! Opens a generated HTML report in headless Chromium (Debian's `chromium`, installed
//! by `scripts/test.sh`) over the DevTools protocol and reports what a person would
//! see go wrong: console errors, uncaught exceptions, requests that leave the page,
//! and what the page's charts drew. A screenshot is written for a person to look at.

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::network::EventRequestWillBeSent;
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::page::ScreenshotParams;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where Debian installs Chromium; `POWERTUNE_CHROMIUM` overrides it.
pub fn chromium() -> Result<PathBuf, String> {
    let path = std::env::var_os("POWERTUNE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "no Chromium at {} (scripts/test.sh installs Debian's chromium; \
             POWERTUNE_CHROMIUM names another)",
            path.display()
        ))
    }
}

/// What opening a page showed.
#[derive(Debug, Default, Clone)]
pub struct Opened {
    /// `console.error` and `console.warn` messages.
    pub console: Vec<String>,
    /// Uncaught exceptions.
    pub exceptions: Vec<String>,
    /// URLs requested other than the page itself (a self-contained page has none).
    pub requests: Vec<String>,
    /// The page's visible text.
    pub text: String,
    /// The value of `probe` (a JavaScript expression) once the page had loaded.
    pub probe: serde_json::Value,
}

/// Opens `html` (a file), waits for it to load and settle, evaluates `probe`, and
/// writes a full-page PNG screenshot to `screenshot`.
pub async fn open(html: &Path, probe: &str, screenshot: &Path) -> Result<Opened, String> {
    let err = |what: &str| {
        let what = what.to_string();
        move |e: chromiumoxide::error::CdpError| format!("{what}: {e}")
    };
    let profile = tempdir()?;
    let config = BrowserConfig::builder()
        .chrome_executable(chromium()?)
        .no_sandbox()
        .new_headless_mode()
        .user_data_dir(&profile)
        .window_size(1280, 900)
        .launch_timeout(Duration::from_secs(60))
        .request_timeout(Duration::from_secs(60))
        .arg("--disable-gpu")
        .arg("--disable-dev-shm-usage")
        .build()?;
    let (mut browser, mut handler) = Browser::launch(config)
        .await
        .map_err(err("launch chromium"))?;
    let driver = tokio::spawn(async move { while handler.next().await.is_some() {} });

    let result = async {
        let page = browser
            .new_page("about:blank")
            .await
            .map_err(err("new page"))?;
        let seen = Arc::new(Mutex::new(Opened::default()));
        let url = format!(
            "file://{}",
            html.canonicalize().map_err(|e| e.to_string())?.display()
        );

        let mut requests = page
            .event_listener::<EventRequestWillBeSent>()
            .await
            .map_err(err("listen for requests"))?;
        let mut console = page
            .event_listener::<EventConsoleApiCalled>()
            .await
            .map_err(err("listen to the console"))?;
        let mut exceptions = page
            .event_listener::<EventExceptionThrown>()
            .await
            .map_err(err("listen for exceptions"))?;
        let (s1, s2, s3) = (Arc::clone(&seen), Arc::clone(&seen), Arc::clone(&seen));
        let own = url.clone();
        let listeners = [
            tokio::spawn(async move {
                while let Some(e) = requests.next().await {
                    let u = e.request.url.clone();
                    if u != own && !u.starts_with("data:") && u != "about:blank" {
                        lock(&s1).requests.push(u);
                    }
                }
            }),
            tokio::spawn(async move {
                while let Some(e) = console.next().await {
                    if matches!(
                        e.r#type,
                        ConsoleApiCalledType::Error
                            | ConsoleApiCalledType::Warning
                            | ConsoleApiCalledType::Assert
                    ) {
                        let args: Vec<String> = e
                            .args
                            .iter()
                            .map(|a| {
                                a.value
                                    .as_ref()
                                    .map(|v| v.to_string())
                                    .or_else(|| a.description.clone())
                                    .unwrap_or_default()
                            })
                            .collect();
                        lock(&s2).console.push(args.join(" "));
                    }
                }
            }),
            tokio::spawn(async move {
                while let Some(e) = exceptions.next().await {
                    let d = &e.exception_details;
                    let text = d
                        .exception
                        .as_ref()
                        .and_then(|x| x.description.clone())
                        .unwrap_or_else(|| d.text.clone());
                    lock(&s3).exceptions.push(text);
                }
            }),
        ];

        page.goto(url.as_str())
            .await
            .map_err(err("open the page"))?;
        page.wait_for_navigation()
            .await
            .map_err(err("wait for the page"))?;
        // Charts draw on load; give late errors a moment to arrive.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let text: String = page
            .evaluate("document.body.innerText")
            .await
            .map_err(err("read the text"))?
            .into_value()
            .map_err(|e| format!("read the text: {e}"))?;
        let probe: serde_json::Value = page
            .evaluate(probe)
            .await
            .map_err(err("evaluate the probe"))?
            .into_value()
            .map_err(|e| format!("evaluate the probe: {e}"))?;
        if let Some(dir) = screenshot.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        page.save_screenshot(
            ScreenshotParams::builder()
                .format(CaptureScreenshotFormat::Png)
                .full_page(true)
                .build(),
            screenshot,
        )
        .await
        .map_err(err("take the screenshot"))?;
        for l in listeners {
            l.abort();
        }
        let mut opened = lock(&seen).clone();
        opened.text = text;
        opened.probe = probe;
        Ok::<Opened, String>(opened)
    }
    .await;

    let _ = browser.close().await;
    let _ = browser.wait().await;
    driver.abort();
    let _ = std::fs::remove_dir_all(&profile);
    result
}

fn lock(m: &Mutex<Opened>) -> std::sync::MutexGuard<'_, Opened> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fresh profile directory, so parallel tests never share one.
fn tempdir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "powertune-chromium-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}
