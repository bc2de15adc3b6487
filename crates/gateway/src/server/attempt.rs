//! One upstream attempt on a (provider, credential): send, wait for the answer (or
//! the first decoded chunk of a stream) within the timeouts, and classify a failure.

use super::endpoint::{Endpoint, Op};
use super::gateway::Gateway;
use super::live::Live;
use crate::breaker::StateName;
use crate::config::{ProviderKind, Target};
use crate::events::{millis, CallLog};
use crate::metrics::{CallRecord, Outcome};
use crate::upstream::{PlainResponse, SendError};
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use futures_util::{Stream, StreamExt};
use powertune_core::redact::Secrets;
use powertune_dialect::{
    parse_provider_response, peek_provider_response, provider_error_message, ApiError, Chunk,
    DecodeError, ErrorKind, StreamDecoder, Usage,
};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Largest provider response body read for a non-streaming call.
pub(super) const MAX_UPSTREAM_BODY: usize = 16 << 20;

/// Why an upstream attempt failed, before it is classified.
#[derive(Debug)]
pub(super) enum Failure {
    Connect(String),
    Timeout(&'static str),
    Status { status: u16, message: String },
    Decode(DecodeError),
}

impl Failure {
    pub(super) fn outcome(&self) -> Outcome {
        match self {
            Failure::Connect(_) => Outcome::ConnectError,
            Failure::Timeout(_) => Outcome::Timeout,
            Failure::Status { status: 429, .. } => Outcome::RateLimited,
            Failure::Status {
                status: 401 | 403, ..
            } => Outcome::AuthFailed,
            Failure::Status { status, .. } if *status >= 500 || *status == 408 => {
                Outcome::ServerError
            }
            Failure::Status { .. } => Outcome::ClientError,
            Failure::Decode(_) => Outcome::StreamError,
        }
    }

    /// Worth another attempt (on this or another credential)?
    pub(super) fn retryable(&self) -> bool {
        !matches!(self.outcome(), Outcome::ClientError)
    }

    /// The failure in the client's error shape. Provider text (error messages, body
    /// and connection errors) is scrubbed of `secrets` (every configured key) and of
    /// anything that looks like a credential (`Bearer …`, `sk-…`, `sk-ant-…`,
    /// `key=…`), by core's one redaction policy.
    pub(super) fn api_error(&self, provider: &str, secrets: &Secrets) -> ApiError {
        let mut e = self.raw_api_error(provider);
        e.message = secrets.scrub(&e.message);
        e
    }

    fn raw_api_error(&self, provider: &str) -> ApiError {
        match self {
            Failure::Connect(m) => ApiError::new(
                ErrorKind::Upstream,
                format!("cannot reach provider {provider}: {m}"),
            ),
            Failure::Timeout(what) => ApiError::new(
                ErrorKind::Timeout,
                format!("provider {provider} timed out ({what})"),
            ),
            Failure::Status {
                status, message, ..
            } => {
                let kind = match status {
                    429 => ErrorKind::RateLimited,
                    401 | 403 => ErrorKind::Upstream,
                    404 => ErrorKind::NotFound,
                    s if *s >= 500 || *s == 408 => ErrorKind::Upstream,
                    _ => ErrorKind::InvalidRequest,
                };
                ApiError::new(
                    kind,
                    format!("provider {provider} answered {status}: {message}"),
                )
            }
            Failure::Decode(e) => ApiError::new(
                match e {
                    DecodeError::Provider {
                        overloaded: true, ..
                    } => ErrorKind::Overloaded,
                    _ => ErrorKind::Upstream,
                },
                e.to_string(),
            ),
        }
    }
}

/// Owns one admitted call on (provider, credential): records its outcome on the
/// breaker and in the metrics exactly once; dropped unfinished = the client hung up.
pub(super) struct CallGuard {
    pub(super) gw: Arc<Gateway>,
    pub(super) live: Arc<Live>,
    pub(super) targets: Arc<[Target]>,
    pub(super) target: usize,
    pub(super) cred: usize,
    pub(super) started: Instant,
    pub(super) ttft: Option<Duration>,
    pub(super) usage: Usage,
    pub(super) retry_after: Option<Duration>,
    pub(super) done: bool,
    /// The client call's access-log line, when this attempt ends the call (a
    /// stream's); written as the guard finishes.
    pub(super) log: CallLog,
    /// Tokens reserved on the credential's tpm; the calling client key (its tpm).
    pub(super) reserved: u64,
    pub(super) client: Option<usize>,
    /// Tokens this attempt's admission reserved on the client's shared tpm (`[shared]`).
    pub(super) client_reserved: u64,
    /// Who pays for the call (`[pricing]`): this attempt's cost is added to it.
    pub(super) bill: Option<Arc<crate::pricing::Bill>>,
    /// This attempt's span ([`CallGuard::start_span`]).
    pub(super) span: crate::telemetry::AttemptSpan,
}

impl CallGuard {
    /// The guard of an attempt starting now on (`targets[target]`, `cred`).
    pub(super) fn new(
        gw: &Arc<Gateway>,
        live: &Arc<Live>,
        targets: &Arc<[Target]>,
        target: usize,
        cred: usize,
    ) -> CallGuard {
        CallGuard {
            gw: gw.clone(),
            live: live.clone(),
            targets: targets.clone(),
            target,
            cred,
            started: Instant::now(),
            ttft: None,
            usage: Usage::default(),
            retry_after: None,
            done: false,
            log: CallLog::none(),
            reserved: 0,
            client: None,
            client_reserved: 0,
            bill: None,
            span: Default::default(),
        }
    }

    pub(super) fn finish(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        let now = self.gw.clock.now();
        let t = &self.targets[self.target];
        let clean;
        let (from, to, consecutive) = {
            let mut st = self.live.selectors[t.provider].creds[self.cred].lock();
            let b = &mut st.breaker;
            let from = b.phase();
            clean = from == StateName::Closed && b.consecutive_failures() == 0;
            match outcome {
                Outcome::Ok => b.on_success(now),
                Outcome::ServerError
                | Outcome::ConnectError
                | Outcome::Timeout
                | Outcome::StreamError => b.on_failure(now),
                Outcome::RateLimited => b.on_rate_limited(now, self.retry_after),
                Outcome::AuthFailed => b.on_auth_failure(),
                Outcome::ClientError | Outcome::ClientClosed => b.on_neutral(),
            }
            (from, b.phase(), b.consecutive_failures())
        };
        self.gw.log_transition(
            &self.live,
            (t.provider, self.cred),
            from,
            to,
            consecutive,
            outcome.as_str(),
        );
        let (refund, client_refund) = self.settle_tokens(now, outcome);
        self.note_latency(now, outcome);
        let b = &self.live.cfg.breaker;
        let out_for = self
            .retry_after
            .unwrap_or(b.rate_limit_default)
            .min(b.retry_after_max);
        self.gw.shared_report(
            &self.live,
            (t.provider, self.cred),
            outcome,
            out_for,
            clean,
            (refund, self.client.map(|c| (c, client_refund))),
        );
        let p = &self.live.cfg.providers[t.provider];
        self.gw.metrics.record_call(&CallRecord {
            provider: &p.name,
            credential: &p.credentials[self.cred].name,
            model: self.live.model_label(t),
            outcome,
            total: self.started.elapsed(),
            ttft: self.ttft,
            tokens_in: self.usage.input,
            tokens_out: self.usage.output,
        });
        if let Some(bill) = &self.bill {
            let (cfg, cred) = (&self.live.cfg, &p.credentials[self.cred].name);
            let usage = (self.usage.input, self.usage.output);
            let model = self.live.model_label(t);
            crate::budget::settle(
                &self.gw.costs,
                &self.gw.budgets,
                cfg,
                bill,
                t,
                cred,
                model,
                usage,
            );
            let cost = bill.cost_usd();
            self.span.note_cost(cost);
            self.log.with(|l| l.cost_usd = cost);
        }
        let (ttft, usage) = (self.ttft, self.usage);
        self.span.finish(outcome, usage, ttft, self.retry_after);
        self.log.with(|l| {
            l.outcome = Some(outcome.as_str());
            l.ttft_ms = ttft.map(millis);
            l.tokens_in = Some(usage.input);
            l.tokens_out = Some(usage.output);
        });
        // written now, not when the relay lets go of the guard
        drop(self.log.hand_off());
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.finish(Outcome::ClientClosed);
    }
}

/// The wait a provider asked for: `retry-after-ms` (OpenAI's), else `retry-after` in
/// seconds or as an HTTP-date (RFC 9110; a date in the past is no wait). Any length
/// is read here; the breaker cuts it to `breaker.retry_after_max`.
pub(super) fn retry_after(ms: Option<&str>, secs: Option<&str>) -> Option<Duration> {
    retry_after_at(ms, secs, std::time::SystemTime::now())
}

/// [`retry_after`] with the wall-clock time `now` an HTTP-date is measured from.
pub(super) fn retry_after_at(
    ms: Option<&str>,
    secs: Option<&str>,
    now: std::time::SystemTime,
) -> Option<Duration> {
    let seconds = |n: f64| {
        (n.is_finite() && n >= 0.0)
            .then(|| Duration::try_from_secs_f64(n.min(1e12)).ok())
            .flatten()
    };
    if let Some(ms) = ms.and_then(|s| s.trim().parse::<f64>().ok()) {
        return seconds(ms / 1000.0);
    }
    let secs = secs?.trim();
    if let Ok(n) = secs.parse::<f64>() {
        return seconds(n);
    }
    let at = httpdate::parse_http_date(secs).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An upstream body as a stream of data; an error item is the reason it broke off.
pub(super) type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// A provider's response from either upstream client (the plain HTTP/1.1 client for
/// http://, reqwest with rustls for https://).
pub(super) enum UpResponse {
    Plain(PlainResponse),
    Reqwest(reqwest::Response),
}

impl UpResponse {
    pub(super) fn status(&self) -> u16 {
        match self {
            UpResponse::Plain(r) => r.status,
            UpResponse::Reqwest(r) => r.status().as_u16(),
        }
    }

    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            UpResponse::Plain(r) => {
                retry_after(r.retry_after_ms.as_deref(), r.retry_after.as_deref())
            }
            UpResponse::Reqwest(r) => {
                let h = r.headers();
                let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
                retry_after(get("retry-after-ms"), get("retry-after"))
            }
        }
    }

    pub(super) fn into_stream(self) -> ByteStream {
        match self {
            UpResponse::Reqwest(r) => Box::pin(
                r.bytes_stream()
                    .map(|c| c.map_err(|e| format!("the stream broke: {}", short_err(&e)))),
            ),
            UpResponse::Plain(r) => Box::pin(r.body),
        }
    }
}

/// A reqwest error without its URL's query (and never a key: keys are headers).
pub(super) fn short_err(e: &reqwest::Error) -> String {
    let mut s = if e.is_connect() {
        "connection failed".to_string()
    } else if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_body() || e.is_decode() {
        "the response body broke off".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(c) = src {
        if depth == 2 {
            break;
        }
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
        depth += 1;
    }
    s
}

/// What a successful attempt produced.
pub(super) enum Success {
    Full(powertune_dialect::ChatResponse),
    /// A same-format response passed through as it came (usage, model and finish
    /// reason read from it).
    Raw {
        body: Bytes,
        peeked: powertune_dialect::Peeked,
    },
    Stream {
        upstream: ByteStream,
        dec: StreamDecoder,
        first: Vec<Chunk>,
        /// The provider's error right after `first` (same read).
        broken: Option<Failure>,
    },
}

impl Gateway {
    /// Sends a request to `ep` of (provider, credential): the plain HTTP/1.1 client
    /// ([`crate::upstream`]) for http:// providers, reqwest (rustls) for https.
    pub(super) async fn send(
        &self,
        live: &Live,
        ep: &Endpoint,
        provider: usize,
        cred: usize,
        body: Vec<u8>,
    ) -> Result<UpResponse, SendError> {
        let anthropic = live.cfg.providers[provider].kind == ProviderKind::Anthropic;
        let auth = &live.auth[provider][cred];
        let traceparent = crate::telemetry::traceparent();
        if let Some(origin) = &ep.plain {
            let mut h: [(&[u8], &[u8]); 4] = [(b"content-type", b"application/json"); 4];
            let mut n = 1;
            if anthropic {
                h[n] = (b"anthropic-version", b"2023-06-01");
                n += 1;
            }
            if let Some((name, value)) = auth {
                h[n] = (name.as_str().as_bytes(), value.as_bytes());
                n += 1;
            }
            if let Some(tp) = &traceparent {
                h[n] = (b"traceparent", tp.as_bytes());
                n += 1;
            }
            return self
                .plain
                .post(origin, &h[..n], &body)
                .await
                .map(UpResponse::Plain);
        }
        let mut rb = self
            .http
            .post(ep.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        if anthropic {
            rb = rb.header("anthropic-version", HeaderValue::from_static("2023-06-01"));
        }
        if let Some((name, value)) = auth {
            rb = rb.header(name.clone(), value.clone());
        }
        if let Some(tp) = traceparent {
            rb = rb.header("traceparent", tp.as_str());
        }
        match rb.send().await {
            Ok(r) => Ok(UpResponse::Reqwest(r)),
            Err(e) if e.is_timeout() => Err(SendError::ConnectTimeout),
            Err(e) => Err(SendError::Failed(short_err(&e))),
        }
    }

    /// One attempt on (target, credential): until the full response (non-streaming) or
    /// until the first decoded chunk (streaming). `pass` = the body is in the client's
    /// own format and the response passes through.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn attempt(
        &self,
        live: &Live,
        t: &Target,
        cred: usize,
        body: Vec<u8>,
        stream: bool,
        pass: bool,
        deadline: Instant,
    ) -> Result<Success, (Failure, Option<Duration>)> {
        let kind = live.cfg.providers[t.provider].kind;
        let now = Instant::now();
        let remaining = deadline.saturating_duration_since(now);
        let first_wait = if stream {
            self.cfg_first_token(live).min(remaining)
        } else {
            remaining
        };
        let what = if stream && first_wait < remaining {
            "time to first token"
        } else {
            "request timeout"
        };
        let first_deadline = now + first_wait;
        let resp = self
            .send_checked(live, t, Op::Chat, cred, body, first_deadline, what)
            .await?;
        if !stream {
            let body = read_whole(resp, deadline, kind).await?;
            if pass {
                return peek_provider_response(kind, &body)
                    .map(|peeked| Success::Raw { body, peeked })
                    .map_err(|e| (Failure::Decode(e), None));
            }
            return parse_provider_response(kind, &body, &t.model)
                .map(Success::Full)
                .map_err(|e| (Failure::Decode(e), None));
        }
        let mut upstream: ByteStream = resp.into_stream();
        let mut dec = StreamDecoder::new(kind);
        let mut first = Vec::new();
        loop {
            match tokio::time::timeout_at(first_deadline, upstream.next()).await {
                Err(_) => return Err((Failure::Timeout(what), None)),
                Ok(Some(Ok(b))) => {
                    let fed = dec.feed_into(&b, &mut first);
                    match fed {
                        Err(e) if first.is_empty() => return Err((Failure::Decode(e), None)),
                        Ok(()) if first.is_empty() => continue,
                        // content decoded: the stream is committed, a provider error
                        // after it goes to the client after that content
                        _ => {
                            return Ok(Success::Stream {
                                upstream,
                                dec,
                                first,
                                broken: fed.err().map(Failure::Decode),
                            })
                        }
                    }
                }
                Ok(Some(Err(message))) => {
                    return Err((
                        Failure::Decode(DecodeError::Provider {
                            provider: kind.as_str(),
                            message,
                            overloaded: false,
                        }),
                        None,
                    ))
                }
                Ok(None) => match dec.end() {
                    Ok(first) if !first.is_empty() => {
                        return Ok(Success::Stream {
                            upstream,
                            dec,
                            first,
                            broken: None,
                        })
                    }
                    Ok(_) => {
                        return Err((
                            Failure::Decode(DecodeError::Provider {
                                provider: kind.as_str(),
                                message: "the stream ended without content".into(),
                                overloaded: false,
                            }),
                            None,
                        ))
                    }
                    Err(e) => return Err((Failure::Decode(e), None)),
                },
            }
        }
    }

    /// Sends `body` to `op` of (target, credential) and waits for the answer's head
    /// until `until` (`what` names that limit in a timeout); a non-2xx answer is a
    /// [`Failure::Status`] with the provider's message and `Retry-After`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send_checked(
        &self,
        live: &Live,
        t: &Target,
        op: Op,
        cred: usize,
        body: Vec<u8>,
        until: Instant,
        what: &'static str,
    ) -> Result<UpResponse, (Failure, Option<Duration>)> {
        let Some(ep) = live.endpoints.get(t, op) else {
            return Err((
                Failure::Connect("the provider has no endpoint for this call".into()),
                None,
            ));
        };
        let send = self.send(live, &ep, t.provider, cred, body);
        let resp = match tokio::time::timeout_at(until, send).await {
            Err(_) => return Err((Failure::Timeout(what), None)),
            Ok(Err(SendError::ConnectTimeout)) => {
                return Err((Failure::Timeout("connect timeout"), None))
            }
            Ok(Err(SendError::Failed(m))) => return Err((Failure::Connect(m), None)),
            Ok(Ok(r)) => r,
        };
        self.note_rate_headers(live, (t.provider, cred), &resp);
        let status = resp.status();
        if !(200..300).contains(&status) {
            let ra = resp.retry_after();
            let body = tokio::time::timeout_at(until, read_limited(resp, 64 << 10))
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default();
            let message =
                provider_error_message(&body).unwrap_or_else(|| "(no error message)".into());
            return Err((Failure::Status { status, message }, ra));
        }
        Ok(resp)
    }

    pub(super) fn cfg_first_token(&self, live: &Live) -> Duration {
        live.cfg.timeouts.first_token
    }
}

/// A whole answer body (up to [`MAX_UPSTREAM_BODY`]) by `deadline`.
pub(super) async fn read_whole(
    resp: UpResponse,
    deadline: Instant,
    kind: ProviderKind,
) -> Result<Bytes, (Failure, Option<Duration>)> {
    match tokio::time::timeout_at(deadline, read_limited(resp, MAX_UPSTREAM_BODY)).await {
        Err(_) => Err((Failure::Timeout("request timeout"), None)),
        Ok(Err(e)) => Err((
            Failure::Decode(DecodeError::Provider {
                provider: kind.as_str(),
                message: e,
                overloaded: false,
            }),
            None,
        )),
        Ok(Ok(b)) => Ok(b),
    }
}

pub(super) async fn read_limited(resp: UpResponse, limit: usize) -> Result<Bytes, String> {
    let too_large = || format!("the response body is larger than {limit} bytes");
    let resp = match resp {
        UpResponse::Plain(r) => {
            if r.content_length.is_some_and(|n| n > limit as u64) {
                return Err(too_large());
            }
            let mut body = r.body;
            let mut out: Vec<u8> = Vec::with_capacity(r.content_length.unwrap_or(0) as usize);
            while let Some(piece) = std::future::poll_fn(|cx| body.poll_data(cx)).await {
                let piece = piece.map_err(|e| format!("the response body broke off: {e}"))?;
                if out.len() + piece.len() > limit {
                    return Err(too_large());
                }
                if out.is_empty() {
                    out = piece;
                } else {
                    out.extend_from_slice(&piece);
                }
            }
            return Ok(Bytes::from(out));
        }
        UpResponse::Reqwest(r) => r,
    };
    if resp.content_length().is_some_and(|n| n as usize <= limit) {
        // one read of a body whose size is known and allowed
        return resp
            .bytes()
            .await
            .map_err(|e| format!("the response body broke off: {}", short_err(&e)));
    }
    let mut s = resp.bytes_stream();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        let c = c.map_err(|e| format!("the response body broke off: {}", short_err(&e)))?;
        if out.len() + c.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&c);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_prefers_milliseconds_and_refuses_nonsense() {
        let ms = |n: u64| Some(Duration::from_millis(n));
        assert_eq!(retry_after(Some("150"), Some("30")), ms(150));
        assert_eq!(
            retry_after(Some(" 2.5 "), None),
            Some(Duration::from_micros(2500))
        );
        assert_eq!(retry_after(None, Some("30")), ms(30_000));
        assert_eq!(retry_after(Some("soon"), Some("1")), ms(1000));
        assert_eq!(retry_after(Some("-1"), Some("1")), None);
        assert_eq!(retry_after(None, Some("NaN")), None);
        assert_eq!(retry_after(None, Some("tomorrow")), None);
        assert_eq!(retry_after(None, None), None);
    }

    #[test]
    fn long_retry_after_values_are_read_in_seconds_and_as_http_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 UTC
        let s = |n: u64| Some(Duration::from_secs(n));
        // a day and more in seconds is read whole (the breaker caps it)
        assert_eq!(retry_after_at(None, Some("86400"), now), s(86_400));
        assert_eq!(retry_after_at(None, Some("172800"), now), s(172_800));
        assert_eq!(
            retry_after_at(None, Some("1e300"), now),
            s(1_000_000_000_000)
        );
        // HTTP-date, in all three forms RFC 9110 accepts
        assert_eq!(
            retry_after_at(None, Some("Wed, 21 Oct 2015 09:28:00 GMT"), now),
            s(7200)
        );
        assert_eq!(
            retry_after_at(None, Some("Thursday, 22-Oct-15 07:28:00 GMT"), now),
            s(86_400)
        );
        assert_eq!(
            retry_after_at(None, Some("Wed Oct 21 07:29:00 2015"), now),
            s(60)
        );
        // a date already past: usable now
        assert_eq!(
            retry_after_at(None, Some("Wed, 21 Oct 2015 07:00:00 GMT"), now),
            s(0)
        );
    }
}
