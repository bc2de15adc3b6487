//! The key scan's progress bar: drawn on standard error, only when it is a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use is_terminal::IsTerminal;

/// A bar that follows [`crate::scan::collect`]'s progress callback, or nothing when
/// standard error is not a terminal.
pub struct ScanBar {
    bar: Option<ProgressBar>,
}

impl ScanBar {
    pub fn new() -> ScanBar {
        if !std::io::stderr().is_terminal() {
            return ScanBar { bar: None };
        }
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} scanning keys {pos}/{len} [{bar:30}] {per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        ScanBar { bar: Some(bar) }
    }

    /// Records `scanned` of `total` keys.
    pub fn update(&self, scanned: u64, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total.max(scanned));
            b.set_position(scanned);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Default for ScanBar {
    fn default() -> Self {
        Self::new()
    }
}
