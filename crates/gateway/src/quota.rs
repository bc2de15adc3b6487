//! Token quotas and the providers' rate-limit headers.
//!
//! - [`estimate`]: what a call reserves before it is sent (its prompt's bytes / 4 plus
//!   its `max_tokens`, or [`DEFAULT_MAX_TOKENS`]).
//! - [`TokenBucket`]: a credential's (or a client key's) `tpm`: a bucket of `tpm`
//!   tokens refilled at `tpm` per minute. A call takes its estimate when it is sent and
//!   gives back what it did not use when it ends ([`TokenBucket::settle`]).
//! - [`RateHeaders`] / [`HeaderState`]: what the provider's last answer said about the
//!   credential's own quota (`x-ratelimit-*`, `anthropic-ratelimit-*`): a credential
//!   near its limit is picked last, one at zero not before its reset.
//!
//! Pure state: the caller passes `now`.

use crate::snapshot::CredentialStatus;
use powertune_core::prometheus::Exposition;
use serde::Deserialize;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Bytes of request body counted as one prompt token in the estimate.
pub const BYTES_PER_TOKEN: u64 = 4;
/// Output tokens reserved for a request that names no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 1024;
/// A credential whose provider says it has less than this share of its request or
/// token limit left is picked only when no other is available.
pub const NEAR_LIMIT: f64 = 0.1;

/// The token estimate of a request `body` (the client's JSON as received): its bytes
/// divided by [`BYTES_PER_TOKEN`], rounded up, plus its output limit (`max_tokens`,
/// `max_completion_tokens` or Ollama's `options.num_predict`), else
/// [`DEFAULT_MAX_TOKENS`]. `output` is false for embeddings (no output tokens).
pub fn estimate(body: &[u8], output: bool) -> u64 {
    let prompt = (body.len() as u64).div_ceil(BYTES_PER_TOKEN);
    if !output {
        return prompt.max(1);
    }
    prompt + max_tokens(body).unwrap_or(DEFAULT_MAX_TOKENS)
}

#[derive(Deserialize)]
struct Limits {
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    options: Option<OllamaOptions>,
}

#[derive(Deserialize)]
struct OllamaOptions {
    num_predict: Option<i64>,
}

/// The output limit a request names, if any.
fn max_tokens(body: &[u8]) -> Option<u64> {
    let l: Limits = serde_json::from_slice(body).ok()?;
    l.max_completion_tokens.or(l.max_tokens).or_else(|| {
        l.options
            .and_then(|o| o.num_predict)
            .and_then(|n| u64::try_from(n).ok())
    })
}

/// `tpm` tokens per minute: a bucket holding at most `tpm`, refilled continuously at
/// `tpm / 60` per second. A call is let through when the bucket holds its estimate (or
/// is full, for an estimate larger than the whole bucket); correction may leave it
/// below zero, and the next calls wait for the refill.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tpm: u64,
    level: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(tpm: u64, now: Instant) -> TokenBucket {
        TokenBucket {
            tpm,
            level: tpm as f64,
            at: now,
        }
    }

    pub fn tpm(&self) -> u64 {
        self.tpm
    }

    fn rate_per_sec(&self) -> f64 {
        self.tpm as f64 / 60.0
    }

    fn level_at(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        (self.level + dt * self.rate_per_sec()).min(self.tpm as f64)
    }

    fn update(&mut self, now: Instant) {
        if now > self.at {
            self.level = self.level_at(now);
            self.at = now;
        }
    }

    /// `None` if a call of `tokens` may go now, else when it may.
    pub fn check(&self, now: Instant, tokens: u64) -> Option<Instant> {
        let need = tokens.min(self.tpm) as f64;
        let level = self.level_at(now);
        if level >= need {
            return None;
        }
        let secs = (need - level) / self.rate_per_sec().max(f64::MIN_POSITIVE);
        Some(now + Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(60)))
    }

    /// Takes `tokens` at `now` (after [`TokenBucket::check`] said yes).
    pub fn take(&mut self, now: Instant, tokens: u64) {
        self.update(now);
        self.level -= tokens as f64;
    }

    /// A call that reserved `reserved` ended having used `used`: the difference goes
    /// back (or, when it used more, is taken too).
    pub fn settle(&mut self, now: Instant, reserved: u64, used: u64) {
        self.update(now);
        self.level = (self.level + reserved as f64 - used as f64).min(self.tpm as f64);
    }

    /// Tokens available now (0 when in debt).
    pub fn remaining(&self, now: Instant) -> u64 {
        self.level_at(now).max(0.0).floor() as u64
    }

    /// Takes the level another replica's shared bucket reports.
    pub fn adopt(&mut self, now: Instant, remaining: u64) {
        self.level = remaining.min(self.tpm) as f64;
        self.at = now;
    }
}

/// What one provider answer's rate-limit headers said (absent headers: `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit_requests: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub reset_requests: Option<Duration>,
    pub limit_tokens: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub reset_tokens: Option<Duration>,
}

impl RateHeaders {
    /// Reads OpenAI's (`x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets
    /// as durations like `6m0s`, `1s`, `120ms`) and Anthropic's
    /// (`anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`, resets as RFC
    /// 3339 times, measured from `now`) headers through `get`. `None` when the answer
    /// has none of them.
    pub fn read<'a>(get: impl Fn(&str) -> Option<&'a str>, now: SystemTime) -> Option<Self> {
        let num = |n: &str| get(n).and_then(|v| v.trim().parse::<u64>().ok());
        let dur = |n: &str| get(n).and_then(openai_duration);
        let at = |n: &str| {
            get(n)
                .and_then(|v| humantime::parse_rfc3339_weak(v.trim()).ok())
                .map(|t| t.duration_since(now).unwrap_or(Duration::ZERO))
        };
        let h = RateHeaders {
            limit_requests: num("x-ratelimit-limit-requests")
                .or_else(|| num("anthropic-ratelimit-requests-limit")),
            remaining_requests: num("x-ratelimit-remaining-requests")
                .or_else(|| num("anthropic-ratelimit-requests-remaining")),
            reset_requests: dur("x-ratelimit-reset-requests")
                .or_else(|| at("anthropic-ratelimit-requests-reset")),
            limit_tokens: num("x-ratelimit-limit-tokens")
                .or_else(|| num("anthropic-ratelimit-tokens-limit")),
            remaining_tokens: num("x-ratelimit-remaining-tokens")
                .or_else(|| num("anthropic-ratelimit-tokens-remaining")),
            reset_tokens: dur("x-ratelimit-reset-tokens")
                .or_else(|| at("anthropic-ratelimit-tokens-reset")),
        };
        (h != RateHeaders::default()).then_some(h)
    }
}

/// OpenAI's reset durations: `1s`, `120ms`, `6m0s`, `1h2m3.5s`, `5.572s`.
pub fn openai_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[u..];
        total += value * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// One limit (requests or tokens) as the provider last told it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Told {
    limit: Option<u64>,
    remaining: u64,
    /// When the provider's window resets (unknown: the told state holds until the
    /// next answer).
    reset: Option<Instant>,
}

impl Told {
    fn from(
        limit: Option<u64>,
        remaining: Option<u64>,
        reset: Option<Duration>,
        now: Instant,
    ) -> Option<Told> {
        Some(Told {
            limit,
            remaining: remaining?,
            reset: reset.map(|d| now + d),
        })
    }

    /// Still describes the provider's window at `now` (not past its reset).
    fn current(&self, now: Instant) -> bool {
        self.reset.is_none_or(|r| now < r)
    }

    fn near(&self, need: u64) -> bool {
        let share = self
            .limit
            .filter(|l| *l > 0)
            .is_some_and(|l| (self.remaining as f64) < NEAR_LIMIT * l as f64);
        share || self.remaining < need
    }
}

/// A credential's quota as its provider's headers tell it, with the requests sent
/// since counted down locally.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HeaderState {
    requests: Option<Told>,
    tokens: Option<Told>,
}

/// What the headers say about sending one more call now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// Nothing against it.
    Go,
    /// Near its limit: use only when nothing else is available.
    Last,
    /// At zero: not before this.
    Wait(Instant),
}

impl HeaderState {
    /// Takes an answer's headers (a header absent from this answer keeps what the
    /// earlier ones said).
    pub fn update(&mut self, h: &RateHeaders, now: Instant) {
        if let Some(t) = Told::from(
            h.limit_requests,
            h.remaining_requests,
            h.reset_requests,
            now,
        ) {
            self.requests = Some(t);
        }
        if let Some(t) = Told::from(h.limit_tokens, h.remaining_tokens, h.reset_tokens, now) {
            self.tokens = Some(t);
        }
    }

    /// One more call was sent: one request fewer left until the next answer says.
    pub fn sent(&mut self, now: Instant) {
        if let Some(r) = self.requests.as_mut().filter(|r| r.current(now)) {
            r.remaining = r.remaining.saturating_sub(1);
        }
    }

    /// Whether a call of `tokens` (estimated) should go to this credential now.
    pub fn steer(&self, now: Instant, tokens: u64) -> Steer {
        let cur = |t: &Option<Told>| t.filter(|t| t.current(now));
        let (req, tok) = (cur(&self.requests), cur(&self.tokens));
        for t in [req, tok].into_iter().flatten() {
            if t.remaining == 0 {
                if let Some(r) = t.reset {
                    return Steer::Wait(r);
                }
            }
        }
        if req.is_some_and(|t| t.near(1)) || tok.is_some_and(|t| t.near(tokens)) {
            return Steer::Last;
        }
        Steer::Go
    }

    /// (remaining requests, remaining tokens) as last told, while current.
    pub fn remaining(&self, now: Instant) -> (Option<u64>, Option<u64>) {
        let r = |t: &Option<Told>| t.filter(|t| t.current(now)).map(|t| t.remaining);
        (r(&self.requests), r(&self.tokens))
    }
}

/// The `/metrics` families of token quotas and the providers' headers: one sample
/// per credential that has the value (no invented zeros).
pub fn gauges(e: &mut Exposition, creds: &[CredentialStatus]) {
    type Get = fn(&CredentialStatus) -> Option<u64>;
    let families: [(&str, &str, Get); 5] = [
        (
            "powertune_gateway_credential_tpm",
            "The credential's configured tokens-per-minute limit.",
            |c| c.tpm,
        ),
        (
            "powertune_gateway_credential_tokens_remaining",
            "Tokens in the credential's tpm bucket now (reservations of calls in flight taken).",
            |c| c.tokens_remaining,
        ),
        (
            "powertune_gateway_credential_tokens_used",
            "Tokens of the credential's tpm not yet refilled (tpm minus remaining).",
            |c| c.tokens_used,
        ),
        (
            "powertune_gateway_provider_remaining_requests",
            "Requests left as the provider's rate-limit headers last said, until their reset.",
            |c| c.provider_remaining_requests,
        ),
        (
            "powertune_gateway_provider_remaining_tokens",
            "Tokens left as the provider's rate-limit headers last said, until their reset.",
            |c| c.provider_remaining_tokens,
        ),
    ];
    for (name, help, get) in families {
        let mut w = e.gauge(name, help);
        for c in creds {
            if let Some(v) = get(c) {
                w.sample(
                    &[("provider", &c.provider), ("credential", &c.credential)],
                    v as f64,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_is_bytes_over_four_plus_max_tokens() {
        let b = br#"{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(b.len(), 74);
        assert_eq!(estimate(b, true), 19 + 100);
        let b = br#"{"model":"m","max_completion_tokens":7,"max_tokens":100}"#;
        assert_eq!(estimate(b, true), 14 + 7);
        let b = br#"{"model":"m","options":{"num_predict":50}}"#;
        assert_eq!(estimate(b, true), 11 + 50);
        let b = br#"{"model":"m"}"#;
        assert_eq!(estimate(b, true), 4 + DEFAULT_MAX_TOKENS);
        assert_eq!(estimate(b, false), 4);
        assert_eq!(estimate(b"not json", true), 2 + DEFAULT_MAX_TOKENS);
    }

    #[test]
    fn bucket_reserves_and_settles_exactly() {
        let now = Instant::now();
        let mut b = TokenBucket::new(1000, now);
        assert_eq!(b.check(now, 300), None);
        b.take(now, 300);
        assert_eq!(b.remaining(now), 700);
        // used 120 of the 300 reserved: 180 back
        b.settle(now, 300, 120);
        assert_eq!(b.remaining(now), 880);
        // used more than reserved: the rest is taken too
        b.take(now, 100);
        b.settle(now, 100, 400);
        assert_eq!(b.remaining(now), 480);
        // a failed call gives everything back
        b.take(now, 500);
        b.settle(now, 500, 0);
        assert_eq!(b.remaining(now), 480);
        // refills at tpm/60 per second, never above tpm
        assert_eq!(b.remaining(now + Duration::from_secs(6)), 580);
        assert_eq!(b.remaining(now + Duration::from_secs(600)), 1000);
    }

    #[test]
    fn bucket_waits_for_the_refill() {
        let now = Instant::now();
        let mut b = TokenBucket::new(600, now); // 10 tokens a second
        b.take(now, 600);
        assert_eq!(b.check(now, 50), Some(now + Duration::from_secs(5)));
        assert_eq!(b.check(now + Duration::from_secs(5), 50), None);
        // larger than the bucket: waits for a full bucket, then goes
        assert_eq!(b.check(now, 5000), Some(now + Duration::from_secs(60)));
        // in debt after a correction
        let mut b = TokenBucket::new(600, now);
        b.take(now, 100);
        b.settle(now, 100, 700);
        assert_eq!(b.remaining(now), 0);
        assert_eq!(b.check(now, 10), Some(now + Duration::from_secs(11)));
    }

    #[test]
    fn openai_durations() {
        let ms = |n: u64| Some(Duration::from_millis(n));
        assert_eq!(openai_duration("1s"), ms(1000));
        assert_eq!(openai_duration("120ms"), ms(120));
        assert_eq!(openai_duration("6m0s"), ms(360_000));
        assert_eq!(openai_duration("1h2m3.5s"), ms(3_723_500));
        assert_eq!(openai_duration("5.572s"), ms(5572));
        assert_eq!(openai_duration(""), None);
        assert_eq!(openai_duration("soon"), None);
        assert_eq!(openai_duration("5"), None);
        assert_eq!(openai_duration("5x"), None);
    }

    #[test]
    fn headers_of_both_apis() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_796_440_128); // 2026-12-05T03:08:48Z
        let openai = [
            ("x-ratelimit-limit-requests", "3"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "5.572s"),
            ("x-ratelimit-remaining-tokens", "8900"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ];
        let get = |n: &str| openai.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        let h = RateHeaders::read(get, now).unwrap();
        assert_eq!(h.limit_requests, Some(3));
        assert_eq!(h.remaining_requests, Some(0));
        assert_eq!(h.reset_requests, Some(Duration::from_millis(5572)));
        assert_eq!(h.remaining_tokens, Some(8900));
        assert_eq!(h.reset_tokens, Some(Duration::from_secs(360)));
        let anthropic = [
            ("anthropic-ratelimit-requests-limit", "3"),
            ("anthropic-ratelimit-requests-remaining", "1"),
            ("anthropic-ratelimit-requests-reset", "2026-12-05T03:08:53Z"),
        ];
        let get = |n: &str| anthropic.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        let h = RateHeaders::read(get, now).unwrap();
        assert_eq!(h.remaining_requests, Some(1));
        assert_eq!(h.reset_requests, Some(Duration::from_secs(5)));
        assert_eq!(h.remaining_tokens, None);
        assert_eq!(RateHeaders::read(|_| None, now), None);
    }

    #[test]
    fn steering_waits_at_zero_and_puts_near_last() {
        let now = Instant::now();
        let mut s = HeaderState::default();
        assert_eq!(s.steer(now, 10), Steer::Go);
        let h = RateHeaders {
            limit_requests: Some(100),
            remaining_requests: Some(50),
            reset_requests: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        s.update(&h, now);
        assert_eq!(s.steer(now, 10), Steer::Go);
        // under 10% of the limit: last
        s.update(
            &RateHeaders {
                remaining_requests: Some(9),
                ..h
            },
            now,
        );
        assert_eq!(s.steer(now, 10), Steer::Last);
        // one left; sending it leaves zero: wait for the reset
        s.update(
            &RateHeaders {
                remaining_requests: Some(1),
                ..h
            },
            now,
        );
        s.sent(now);
        assert_eq!(s.steer(now, 10), Steer::Wait(now + Duration::from_secs(2)));
        assert_eq!(s.remaining(now), (Some(0), None));
        // past the reset the told state no longer holds
        let later = now + Duration::from_secs(2);
        assert_eq!(s.steer(later, 10), Steer::Go);
        assert_eq!(s.remaining(later), (None, None));
        // fewer tokens left than the call's estimate: last
        let mut s = HeaderState::default();
        s.update(
            &RateHeaders {
                remaining_tokens: Some(500),
                reset_tokens: Some(Duration::from_secs(1)),
                ..Default::default()
            },
            now,
        );
        assert_eq!(s.steer(now, 400), Steer::Go);
        assert_eq!(s.steer(now, 600), Steer::Last);
    }
}
