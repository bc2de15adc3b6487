//! Client keys (`[[clients]]`): who is calling, and whether they may make this call.
//! A key comes as `Authorization: Bearer KEY` (OpenAI's and Ollama's clients) or
//! `x-api-key: KEY` (Anthropic's); the gateway compares its SHA-256 with the
//! configured hashes, so it never holds a client key in memory longer than the call.

use super::gateway::Gateway;
use super::live::Live;
use super::response::error_response;
use crate::breaker::RpmLimiter;
use crate::budget::Verdict;
use crate::config::{key_hash, Client, Config};
use crate::config::{Fallback, Target};
use crate::pricing::Bill;
use crate::quota::TokenBucket;
use crate::shared::{ClientKeys, ClientLimits};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::response::Response;
use parking_lot::Mutex;
use powertune_dialect::Front;
use powertune_dialect::{ApiError, ErrorKind};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Why a call was refused before anything went upstream (a `/metrics` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Refusal {
    MissingKey,
    WrongKey,
    Forbidden,
    RateLimited,
}

impl Refusal {
    pub(crate) const ALL: [Refusal; 4] = [
        Refusal::MissingKey,
        Refusal::WrongKey,
        Refusal::Forbidden,
        Refusal::RateLimited,
    ];
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::MissingKey => "missing_key",
            Refusal::WrongKey => "wrong_key",
            Refusal::Forbidden => "forbidden",
            Refusal::RateLimited => "rate_limited",
        }
    }
}

/// A client's rpm limiter, kept across reloads while its name and rpm stay.
pub(super) type ClientLimiter = std::sync::Arc<Mutex<RpmLimiter>>;

/// A client's tpm bucket, kept across reloads while its name and tpm stay.
pub(super) type ClientTokens = std::sync::Arc<Mutex<TokenBucket>>;

/// Per client of `cfg`: its tpm bucket (an unchanged client keeps the one of `old`).
pub(super) fn client_buckets(
    cfg: &Config,
    old: Option<&Live>,
    now: Instant,
) -> Vec<Option<ClientTokens>> {
    cfg.clients
        .iter()
        .map(|c| {
            let tpm = c.tpm?;
            let kept = old.and_then(|o| {
                let i = o
                    .cfg
                    .clients
                    .iter()
                    .position(|d| d.name == c.name && d.tpm == c.tpm)?;
                o.client_tpm.get(i)?.clone()
            });
            Some(kept.unwrap_or_else(|| Arc::new(Mutex::new(TokenBucket::new(tpm, now)))))
        })
        .collect()
}

/// A call whose client's rpm and tpm its shared admission decides: the client's
/// `/metrics` count is taken once, when decided (dropped undecided: admitted, as a call
/// that passed the client's checks and went no further).
pub(super) struct ClientGate {
    gw: Arc<Gateway>,
    live: Arc<Live>,
    pub(super) client: usize,
    open: bool,
}

impl ClientGate {
    pub(super) fn new(gw: &Arc<Gateway>, live: &Arc<Live>, client: usize) -> ClientGate {
        ClientGate {
            gw: gw.clone(),
            live: live.clone(),
            client,
            open: true,
        }
    }

    /// Not decided yet.
    pub(super) fn open(&self) -> bool {
        self.open
    }

    /// Decided: admitted (`None`) or refused.
    pub(super) fn decide(&mut self, refused: Option<Refusal>) {
        if std::mem::take(&mut self.open) {
            let name = &self.live.cfg.clients[self.client].name;
            self.gw.metrics.record_client(name, refused);
        }
    }
}

impl Drop for ClientGate {
    fn drop(&mut self) {
        self.decide(None);
    }
}

/// The key a caller presented, if any.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Some((scheme, key)) = v.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty() {
                return Some(key.trim());
            }
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

impl Gateway {
    /// The calling client (its index in `[[clients]]`), `None` when no client keys
    /// are configured; a missing or unknown key is a 401.
    pub(super) fn authenticate(
        &self,
        live: &Live,
        headers: &HeaderMap,
    ) -> Result<Option<usize>, (Refusal, ApiError)> {
        if live.cfg.clients.is_empty() {
            return Ok(None);
        }
        let Some(key) = presented_key(headers) else {
            return Err((
                Refusal::MissingKey,
                ApiError::new(
                    ErrorKind::Authentication,
                    "no client key: this gateway needs one, sent as Authorization: Bearer KEY or x-api-key: KEY",
                ),
            ));
        };
        match live.clients.get(&key_hash(key)) {
            Some(i) => Ok(Some(*i)),
            None => Err((
                Refusal::WrongKey,
                ApiError::new(
                    ErrorKind::Authentication,
                    "the client key is not one this gateway knows",
                ),
            )),
        }
    }

    /// May `client` call `model` by route class `class`? Then its own rpm and tpm:
    /// on this replica (its rpm is taken; over either, the wait until a call may go),
    /// or, under `[shared]` while Redis answers, left to the call's shared admission
    /// (`Ok(true)`: deferred).
    pub(super) fn permit(
        &self,
        live: &Live,
        client: usize,
        model: &str,
        class: Option<&str>,
    ) -> Result<bool, (Refusal, ApiError, Option<Duration>)> {
        let c = &live.cfg.clients[client];
        permitted(c, model, class).map_err(|e| (Refusal::Forbidden, e, None))?;
        if self.client_shared(live, client).is_some() {
            return Ok(true);
        }
        self.client_limits(live, client, true).map(|()| false)
    }

    /// The keys and limits of `client` in Redis, when it has an rpm or tpm and this
    /// replica is on shared state now.
    pub(super) fn client_shared<'a>(
        &self,
        live: &'a Live,
        client: usize,
    ) -> Option<&'a (ClientKeys, ClientLimits)> {
        if !self.shared.as_ref().is_some_and(|s| s.is_shared()) {
            return None;
        }
        live.client_shared.get(client)?.as_ref()
    }

    /// The client's rpm and tpm on this replica: with `check`, over either is the
    /// refusal; else (a call that goes anyway) its rpm is only taken.
    pub(super) fn client_limits(
        &self,
        live: &Live,
        client: usize,
        check: bool,
    ) -> Result<(), (Refusal, ApiError, Option<Duration>)> {
        let c = &live.cfg.clients[client];
        // tokens are charged as calls end: a call goes while the bucket is not empty
        if let Some(b) = live.client_tpm[client].as_ref().filter(|_| check) {
            let now = self.clock.now();
            if let Some(at) = b.lock().check(now, 1) {
                return Err(over_limit(c, true, at.saturating_duration_since(now)));
            }
        }
        if let Some(l) = &live.client_limiters[client] {
            let now = self.clock.now();
            let mut l = l.lock();
            if let Some(at) = l.check(now).filter(|_| check) {
                return Err(over_limit(c, false, at.saturating_duration_since(now)));
            }
            l.take(now);
        }
        Ok(())
    }

    /// A call of `client` ended having used `tokens`: charged to its tpm bucket.
    pub(super) fn charge_client(&self, live: &Live, client: Option<usize>, tokens: u64) {
        let Some(b) = client.and_then(|c| live.client_tpm.get(c)?.as_ref()) else {
            return;
        };
        b.lock().take(self.clock.now(), tokens);
    }
}

/// The refusal of a client over its tpm (`tokens`) or rpm for `wait`.
pub(super) fn over_limit(
    c: &Client,
    tokens: bool,
    wait: Duration,
) -> (Refusal, ApiError, Option<Duration>) {
    let limit = match tokens {
        true => format!("{} tokens", c.tpm.unwrap_or(0)),
        false => format!("{} requests", c.rpm.unwrap_or(0)),
    };
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    (
        Refusal::RateLimited,
        ApiError::new(
            ErrorKind::RateLimited,
            format!(
                "client {:?} is over its limit of {limit} per minute; retry in {secs}s",
                c.name
            ),
        ),
        Some(wait),
    )
}

impl Gateway {
    /// The budget admission hook (`[budgets]`): under every limit the call goes as
    /// resolved; over one with a fallback it goes to the fallback's targets (route
    /// class or alias); else the 429 in the client's shape, `Retry-After` until the
    /// period ends. With a price table, also the call's bill.
    pub(super) async fn admit_budget<'a>(
        &self,
        live: &'a Live,
        front: Front,
        client: Option<usize>,
        model: &str,
        (targets, class): (Arc<[Target]>, Option<&'a str>),
    ) -> Result<(Arc<[Target]>, Option<&'a str>, Option<Arc<Bill>>), Response> {
        let cfg = &live.cfg;
        if !cfg.pricing.configured {
            return Ok((targets, class, None));
        }
        let who = client.map(|c| cfg.clients[c].name.as_str());
        let alias = live.aliases.contains_key(model).then(|| model.to_string());
        let now = crate::budget::unix_now();
        let (targets, class, alias, budgets) =
            match self.budgets.verdict(cfg, class, who, now).await {
                Verdict::Go(b) => (targets, class, alias, b),
                Verdict::Refuse(over) => {
                    let ra = Some(over.retry_after(now));
                    return Err(error_response(front, &over.error(cfg), ra));
                }
                Verdict::Fallback { to, .. } => {
                    let (t, c, a) = match &to {
                        Fallback::Route(r) => match live.classes.get_key_value(r.as_str()) {
                            Some((k, t)) => (t.clone(), Some(k.as_str()), None),
                            None => (targets, class, alias),
                        },
                        Fallback::Alias(a) => match live.aliases.get(a) {
                            Some(t) => (t.clone(), None, Some(a.clone())),
                            None => (targets, class, alias),
                        },
                    };
                    // the spend still counts toward the client's budget
                    let b = crate::budget::applicable(cfg, c, who);
                    (t, c, a, b)
                }
            };
        let bill = Bill::new(
            class.map(str::to_string),
            alias,
            who.map(str::to_string),
            budgets,
        );
        Ok((targets, class, Some(Arc::new(bill))))
    }
}

/// The client's `routes` and `models` lists against the call.
fn permitted(c: &Client, model: &str, class: Option<&str>) -> Result<(), ApiError> {
    let deny = |m: String| Err(ApiError::new(ErrorKind::PermissionDenied, m));
    if let Some(routes) = &c.routes {
        match class {
            Some(r) if routes.contains(r) => {}
            Some(r) => {
                return deny(format!(
                    "client {:?} may not use route class {r:?}; it may use [{}]",
                    c.name,
                    join(routes)
                ))
            }
            None => {
                return deny(format!(
                    "client {:?} may only call through route classes [{}]; name one as the model or in x-powertune-route",
                    c.name,
                    join(routes)
                ))
            }
        }
    }
    if let Some(models) = &c.models {
        if !models.contains(model) {
            let model = crate::metrics::label(model);
            return deny(format!(
                "client {:?} may not call model {model:?}; it may call [{}]",
                c.name,
                join(models)
            ));
        }
    }
    Ok(())
}

fn join(s: &std::collections::BTreeSet<String>) -> String {
    s.iter().cloned().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_key_comes_as_bearer_or_x_api_key() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented_key(&h), None);
        h.insert("x-api-key", HeaderValue::from_static(" k2 "));
        assert_eq!(presented_key(&h), Some("k2"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer k1"));
        assert_eq!(presented_key(&h), Some("k1"));
    }

    #[test]
    fn routes_and_models_limit_a_client() {
        let c = Client {
            name: "batch-jobs".into(),
            hash: key_hash("k"),
            routes: Some(["batch".to_string()].into()),
            models: None,
            rpm: None,
            tpm: None,
        };
        assert!(permitted(&c, "batch", Some("batch")).is_ok());
        let e = permitted(&c, "latency", Some("latency")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert!(
            e.message.contains("route class \"latency\""),
            "{}",
            e.message
        );
        assert!(permitted(&c, "fast", None).is_err());
        let c = Client {
            routes: None,
            models: Some(["fast".to_string()].into()),
            ..c
        };
        assert!(permitted(&c, "fast", None).is_ok());
        assert!(permitted(&c, "openai:gpt-4o", None).is_err());
    }
}
