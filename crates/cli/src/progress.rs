//! The live progress of a load run on standard error: an indicatif line refreshed
//! each second on a terminal, otherwise a plain line every ~5 s. The engine hands the
//! figures to [`LoadProgress::callback`]; this module only shows them.

use is_terminal::IsTerminal;
use powertune_core::units;
use powertune_load::{Progress, ProgressFn};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The progress line's text.
pub fn line(p: &Progress) -> String {
    format!(
        "{}/{}  VUs {}  rate {}  p95 {}  errors {}  ({} requests)",
        units::duration(Duration::from_secs(p.elapsed.as_secs())),
        units::duration(p.total),
        p.vus,
        units::rate(p.rps),
        units::ms(p.p95_ms),
        p.errors,
        p.reqs
    )
}

/// Where the progress goes: a bar on a terminal, plain lines otherwise.
pub struct LoadProgress {
    bar: Option<indicatif::ProgressBar>,
    last_plain: Mutex<Instant>,
}

impl LoadProgress {
    /// A renderer for a run of about `total`.
    pub fn new(total: Duration) -> Arc<LoadProgress> {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total.as_millis().max(1) as u64);
            b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:20.cyan/blue} {msg}") {
                b.set_style(style);
            }
            b
        });
        Arc::new(LoadProgress {
            bar,
            last_plain: Mutex::new(Instant::now()),
        })
    }

    fn show(&self, p: &Progress) {
        match &self.bar {
            Some(b) => {
                b.set_position(p.elapsed.as_millis().min(p.total.as_millis()) as u64);
                b.set_message(line(p));
            }
            None => {
                let Ok(mut last) = self.last_plain.lock() else {
                    return;
                };
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = Instant::now();
                    eprintln!("powertune load: {}", line(p));
                }
            }
        }
    }

    /// The callback to put in the run's options.
    pub fn callback(self: &Arc<Self>) -> ProgressFn {
        let me = self.clone();
        Arc::new(move |p: &Progress| me.show(p))
    }

    /// Clears the bar (the summary follows).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_every_figure() {
        let p = Progress {
            elapsed: Duration::from_millis(61_900),
            total: Duration::from_secs(300),
            vus: 12,
            reqs: 4321,
            rps: 99.6,
            p95_ms: 12.34,
            errors: 3,
        };
        let l = line(&p);
        assert!(
            l.contains("VUs 12  rate 99.6/s  p95 12.34ms  errors 3  (4321 requests)"),
            "{l}"
        );
        assert!(l.starts_with("1m01s/5m00s  "), "{l}");
    }
}
