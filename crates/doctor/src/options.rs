//! What `powertune doctor` is asked to do, checked before any connection opens.

use powertune_core::targets::Systems;
use std::time::Duration;

/// The shortest and longest `--timeout`.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(2);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// The shortest `--window` (three samples at the shortest sampling interval).
pub const MIN_WINDOW: Duration = Duration::from_millis(600);
/// Samples taken over the window for the trends (retry set, memory).
pub const SAMPLES: u32 = 6;

/// Everything doctor needs.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    pub systems: Systems,
    /// The bound on the whole run: an inspection still running then is "not measured".
    pub timeout: Duration,
    /// How long the trends (retry set growth, memory growth, Redis hit rate) are
    /// observed; shorter than `timeout`.
    pub window: Duration,
    /// The window `apm report` summarises (the receiver's own history).
    pub apm_window: Duration,
}

impl DoctorOptions {
    /// Defaults: 60 s bound, 10 s window, 15 min of APM history.
    pub fn new(systems: Systems) -> DoctorOptions {
        DoctorOptions {
            systems,
            timeout: Duration::from_secs(60),
            window: Duration::from_secs(10),
            apm_window: Duration::from_secs(15 * 60),
        }
    }

    /// Checks the bounds. No I/O.
    pub fn validate(&self) -> Result<(), String> {
        let f = powertune_core::duration::format;
        if self.timeout < MIN_TIMEOUT || self.timeout > MAX_TIMEOUT {
            return Err(format!(
                "--timeout {} must be between {} and {} (e.g. --timeout 60s)",
                f(self.timeout),
                f(MIN_TIMEOUT),
                f(MAX_TIMEOUT)
            ));
        }
        if self.window < MIN_WINDOW || self.window >= self.timeout {
            return Err(format!(
                "--window {} must be at least {} and shorter than --timeout {} (e.g. --window 10s)",
                f(self.window),
                f(MIN_WINDOW),
                f(self.timeout)
            ));
        }
        if self.apm_window.is_zero() {
            return Err("--apm-window must be above 0 (e.g. --apm-window 15m)".to_string());
        }
        Ok(())
    }

    /// Time between two trend samples.
    pub fn every(&self) -> Duration {
        self.window / SAMPLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let mut o = DoctorOptions::new(Systems::default());
        assert!(o.validate().is_ok());
        o.window = Duration::from_secs(60);
        assert!(o.validate().unwrap_err().contains("shorter than --timeout"));
        o.window = Duration::from_millis(100);
        assert!(o.validate().is_err());
        o.window = Duration::from_secs(1);
        o.timeout = Duration::from_millis(500);
        assert!(o.validate().unwrap_err().starts_with("--timeout"));
        assert_eq!(
            DoctorOptions::new(Systems::default()).every(),
            Duration::from_millis(1666) + Duration::from_nanos(666_666)
        );
    }
}
