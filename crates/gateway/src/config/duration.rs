//! Duration settings of `gateway.toml`: strings with a unit (`request = "10m"`); the
//! older keys of bare numbers (`request_s = 600`, `base_ms = 250`) still work, each
//! with a deprecation line naming the key that replaces it.

use powertune_core::config_file::{ConfigError, DurationField, Source};
use std::time::Duration;

/// One duration setting: its key, the deprecated key of bare numbers it replaces, and
/// how many seconds one unit of that older key is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Setting {
    /// Dotted key (`timeouts.request`).
    pub key: &'static str,
    /// The deprecated key (`timeouts.request_s`).
    pub old: &'static str,
    /// Seconds per unit of the deprecated key: 1 for `_s` keys, 0.001 for `_ms` keys.
    pub old_unit: f64,
    /// The default, also the example in messages.
    pub default: Duration,
}

impl Setting {
    /// A setting whose deprecated key held seconds; `default` in seconds.
    pub const fn secs(key: &'static str, old: &'static str, default: u64) -> Setting {
        Setting {
            key,
            old,
            old_unit: 1.0,
            default: Duration::from_secs(default),
        }
    }

    /// A setting whose deprecated key held milliseconds; `default` in milliseconds.
    pub const fn millis(key: &'static str, old: &'static str, default: u64) -> Setting {
        Setting {
            key,
            old,
            old_unit: 0.001,
            default: Duration::from_millis(default),
        }
    }

    /// The last part of the key (`request` of `timeouts.request`).
    fn leaf(&self) -> &'static str {
        self.key.rsplit('.').next().unwrap_or(self.key)
    }

    /// `request = "10m"`: how a right line reads, with the default.
    pub(super) fn example(&self) -> String {
        example(self.leaf(), self.default)
    }

    /// The duration written under the key or its deprecated predecessor, with the
    /// key it was written under; `None` when neither is written.
    pub(super) fn read(
        &self,
        src: &Source,
        new: Option<&DurationField>,
        old: Option<&DurationField>,
    ) -> Result<Option<(Duration, &'static str)>, ConfigError> {
        match (new, old) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(src.error(
                self.old,
                format!(
                    "{} replaces this key; keep only {}, e.g. {}",
                    self.key,
                    self.key,
                    self.example()
                ),
            )),
            (Some(DurationField::Number(n)), None) => Err(src.error(
                self.key,
                format!(
                    "{n} has no unit; write the duration as a string, e.g. {}",
                    self.example()
                ),
            )),
            (Some(f), None) => Ok(Some((f.resolve(src, self.key, 1.0)?, self.key))),
            (None, Some(f)) => {
                let d = match f {
                    DurationField::Text(_) => f.resolve(src, self.old, self.old_unit)?,
                    DurationField::Number(n) => self.legacy(src, *n)?,
                };
                src.warn(
                    self.old,
                    format!("deprecated; write {}", example(self.leaf(), d)),
                );
                Ok(Some((d, self.old)))
            }
        }
    }

    /// A bare number of the deprecated key, in its unit.
    fn legacy(&self, src: &Source, n: f64) -> Result<Duration, ConfigError> {
        let secs = n * self.old_unit;
        if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
            return Err(src.error(
                self.old,
                format!("{n} is not a usable duration, e.g. {}", self.example()),
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// [`Setting::read`], then the default when not written; the value must be above
    /// zero and at most a day.
    pub(super) fn positive(
        &self,
        src: &Source,
        new: Option<&DurationField>,
        old: Option<&DurationField>,
    ) -> Result<Duration, ConfigError> {
        let Some((d, key)) = self.read(src, new, old)? else {
            return Ok(self.default);
        };
        if d.is_zero() || d > Duration::from_secs(86_400) {
            return Err(src.error(
                key,
                format!(
                    "must be above 0 and at most 24h (got {}), e.g. {}",
                    powertune_core::duration::format(d),
                    self.example()
                ),
            ));
        }
        Ok(d)
    }
}

/// `key = "2m"`.
fn example(leaf: &str, d: Duration) -> String {
    format!("{leaf} = \"{}\"", powertune_core::duration::format(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECOVERY: Setting = Setting::secs("breaker.recovery", "breaker.recovery_timeout_s", 120);

    fn text(t: &str) -> DurationField {
        DurationField::Text(t.into())
    }

    #[test]
    fn strings_are_read_and_absent_keys_take_the_default() {
        let src = Source::new("g.toml", "[breaker]\nrecovery = \"90s\"\n");
        let got = RECOVERY.positive(&src, Some(&text("90s")), None).unwrap();
        assert_eq!(got, Duration::from_secs(90));
        assert_eq!(
            RECOVERY.positive(&src, None, None).unwrap(),
            RECOVERY.default
        );
        assert!(src.warnings().is_empty());
    }

    #[test]
    fn the_old_key_works_with_one_deprecation_line_naming_the_new_key() {
        let src = Source::new("g.toml", "[breaker]\nrecovery_timeout_s = 0.5\n");
        let got = RECOVERY
            .positive(&src, None, Some(&DurationField::Number(0.5)))
            .unwrap();
        assert_eq!(got, Duration::from_millis(500));
        assert_eq!(
            src.warnings(),
            ["g.toml:2: breaker.recovery_timeout_s: deprecated; write recovery = \"500ms\""]
        );
    }

    #[test]
    fn bare_numbers_under_the_new_key_and_both_keys_are_refused_at_their_place() {
        let src = Source::new("g.toml", "[breaker]\nrecovery = 120\n");
        let e = RECOVERY
            .positive(&src, Some(&DurationField::Number(120.0)), None)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "g.toml:2:1: breaker.recovery: 120 has no unit; write the duration as a string, e.g. recovery = \"2m\""
        );
        let src = Source::new(
            "g.toml",
            "[breaker]\nrecovery = \"1m\"\nrecovery_timeout_s = 60\n",
        );
        let e = RECOVERY
            .read(&src, Some(&text("1m")), Some(&DurationField::Number(60.0)))
            .unwrap_err();
        assert_eq!(e.key, "breaker.recovery_timeout_s");
        assert_eq!(e.line, 3);
    }

    #[test]
    fn out_of_range_values_name_the_key_written() {
        let src = Source::new("g.toml", "[breaker]\nrecovery_timeout_s = 0\n");
        let e = RECOVERY
            .positive(&src, None, Some(&DurationField::Number(0.0)))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("g.toml:2:1: breaker.recovery_timeout_s: must be above 0"),
            "{e}"
        );
        let src = Source::new("g.toml", "[breaker]\nrecovery = \"2d\"\n");
        let e = RECOVERY
            .positive(&src, Some(&text("2d")), None)
            .unwrap_err();
        assert!(e.to_string().contains("at most 24h (got 48h)"), "{e}");
        let e = RECOVERY
            .positive(&src, None, Some(&DurationField::Number(-1.0)))
            .unwrap_err();
        assert!(e.to_string().contains("not a usable duration"), "{e}");
    }
}
