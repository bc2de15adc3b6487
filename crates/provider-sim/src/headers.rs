//! Rate-limit headers in each API's own form: OpenAI's `x-ratelimit-*` with
//! duration-string resets (also used for Ollama, which has none of its own) and
//! Anthropic's `anthropic-ratelimit-*` with RFC 3339 resets; `retry-after` (and
//! OpenAI's `retry-after-ms`) on a 429.

use crate::quota::QuotaState;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use powertune_dialect::Front;
use std::time::Duration;

/// A reset as OpenAI writes it: `12ms`, `1.5s`, `6m0s`.
pub fn openai_reset(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    let show = |s: f64| {
        let t = format!("{s:.3}");
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if secs < 60.0 {
        return format!("{}s", show(secs));
    }
    let m = (secs / 60.0).floor();
    format!("{}m{}s", m as u64, show(secs - m * 60.0))
}

fn put(h: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

/// The rate-limit headers of an answer under `q` (nothing when no quota is set);
/// `retry` adds the retry-after headers of a 429.
pub fn rate_limit(front: Front, q: &QuotaState, retry: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    match front {
        Front::OpenAi | Front::Ollama => {
            let reset = openai_reset(q.reset_in);
            if let Some(l) = q.quota.rpm {
                put(&mut h, "x-ratelimit-limit-requests", l.to_string());
                put(
                    &mut h,
                    "x-ratelimit-remaining-requests",
                    q.remaining_requests.to_string(),
                );
                put(&mut h, "x-ratelimit-reset-requests", reset.clone());
            }
            if let Some(l) = q.quota.tpm {
                put(&mut h, "x-ratelimit-limit-tokens", l.to_string());
                put(
                    &mut h,
                    "x-ratelimit-remaining-tokens",
                    q.remaining_tokens.to_string(),
                );
                put(&mut h, "x-ratelimit-reset-tokens", reset);
            }
            if retry {
                put(
                    &mut h,
                    "retry-after-ms",
                    q.reset_in.as_millis().max(1).to_string(),
                );
            }
        }
        Front::Anthropic => {
            let at =
                chrono::Utc::now() + chrono::Duration::from_std(q.reset_in).unwrap_or_default();
            let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            if let Some(l) = q.quota.rpm {
                put(&mut h, "anthropic-ratelimit-requests-limit", l.to_string());
                put(
                    &mut h,
                    "anthropic-ratelimit-requests-remaining",
                    q.remaining_requests.to_string(),
                );
                put(&mut h, "anthropic-ratelimit-requests-reset", at.clone());
            }
            if let Some(l) = q.quota.tpm {
                put(&mut h, "anthropic-ratelimit-tokens-limit", l.to_string());
                put(
                    &mut h,
                    "anthropic-ratelimit-tokens-remaining",
                    q.remaining_tokens.to_string(),
                );
                put(&mut h, "anthropic-ratelimit-tokens-reset", at);
            }
        }
    }
    if retry {
        let secs = q.reset_in.as_millis().div_ceil(1000).max(1);
        put(&mut h, "retry-after", secs.to_string());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Quota;

    #[test]
    fn resets_read_as_openai_writes_them() {
        assert_eq!(openai_reset(Duration::from_millis(12)), "12ms");
        assert_eq!(openai_reset(Duration::from_millis(1500)), "1.5s");
        assert_eq!(openai_reset(Duration::from_secs(360)), "6m0s");
    }

    #[test]
    fn each_api_gets_its_headers() {
        let q = QuotaState {
            quota: Quota {
                rpm: Some(10),
                tpm: None,
            },
            remaining_requests: 0,
            remaining_tokens: u64::MAX,
            reset_in: Duration::from_millis(2500),
        };
        let o = rate_limit(Front::OpenAi, &q, true);
        assert_eq!(o["x-ratelimit-limit-requests"], "10");
        assert_eq!(o["x-ratelimit-remaining-requests"], "0");
        assert_eq!(o["x-ratelimit-reset-requests"], "2.5s");
        assert_eq!(o["retry-after"], "3");
        assert_eq!(o["retry-after-ms"], "2500");
        assert!(o.get("x-ratelimit-limit-tokens").is_none());
        let a = rate_limit(Front::Anthropic, &q, true);
        assert_eq!(a["anthropic-ratelimit-requests-limit"], "10");
        assert!(a["anthropic-ratelimit-requests-reset"]
            .to_str()
            .unwrap()
            .ends_with('Z'));
        assert_eq!(a["retry-after"], "3");
        assert!(a.get("retry-after-ms").is_none());
    }
}
