//! One configuration generation with everything derived from it once, and how a
//! new generation is built from the old one on reload.

use super::auth::{ClientLimiter, ClientTokens};
use super::endpoint::Endpoints;
use crate::breaker::{Breaker, RpmLimiter, WeightedPicker};
use crate::config::{Config, ProviderKind, Target};
use crate::metrics::UNKNOWN_MODEL;
use crate::quota::{HeaderState, TokenBucket};
use crate::shared::{ClientKeys, ClientLimits, CredKeys, Limits};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderName, HeaderValue};
use parking_lot::Mutex;
use powertune_core::redact::Secrets;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tokio::time::Instant;

/// Breaker and rpm limiter of one (provider, credential). Shared by every config
/// generation in which the pair is unchanged, so a reload keeps its state and calls
/// still in flight from before the reload land on the same breaker.
pub(super) struct CredState {
    pub(super) breaker: Breaker,
    pub(super) limiter: Option<RpmLimiter>,
    /// `[shared]`: when `breaker` last took the shared state (a wait older than
    /// `shared.cache` is asked again rather than trusted).
    pub(super) synced: Option<Instant>,
    /// `[shared]`: the shared rpm limit said no calls before this.
    pub(super) shared_wait: Option<Instant>,
    /// The credential's tpm bucket, if it has a tpm (docs/gateway.md "Token quotas").
    pub(super) tpm: Option<TokenBucket>,
    /// What the provider's rate-limit headers last said.
    pub(super) told: HeaderState,
}

pub(super) type Slot = Arc<Mutex<CredState>>;

pub(super) struct Selector {
    pub(super) picker: Mutex<WeightedPicker>,
    pub(super) creds: Vec<Slot>,
}

/// One configuration generation, with everything derived from it once (so the hot
/// path formats no URLs, header values or names). A call keeps the generation it
/// started with until it ends.
pub(super) struct Live {
    pub(super) cfg: Arc<Config>,
    pub(super) generation: u64,
    pub(super) selectors: Vec<Selector>,
    /// Every provider's chat and embeddings endpoints, parsed once.
    pub(super) endpoints: Endpoints,
    /// Per provider: `x-powertune-provider`; per credential: `x-powertune-credential`
    /// and the auth header (marked sensitive).
    pub(super) provider_hv: Vec<HeaderValue>,
    pub(super) cred_hv: Vec<Vec<HeaderValue>>,
    pub(super) auth: Vec<Vec<Option<(HeaderName, HeaderValue)>>>,
    /// Route class → targets; model alias → targets.
    pub(super) classes: BTreeMap<String, Arc<[Target]>>,
    pub(super) aliases: BTreeMap<String, Arc<[Target]>>,
    /// Per provider: the model names some alias sends to it. Only these become
    /// metric series; any other model a client names counts under `unknown`.
    pub(super) known_models: Vec<BTreeSet<String>>,
    /// Every configured API key, scrubbed (with core's secret patterns) from any
    /// provider text relayed to a client.
    pub(super) secrets: Secrets,
    /// SHA-256 of each client key → its index in `cfg.clients`.
    pub(super) clients: HashMap<[u8; 32], usize>,
    /// Per client: its rpm limiter, if it has an rpm.
    pub(super) client_limiters: Vec<Option<ClientLimiter>>,
    /// Per client: its tpm bucket, if it has a tpm.
    pub(super) client_tpm: Vec<Option<ClientTokens>>,
    /// `[shared]`: per provider, per credential, its Redis keys and the limits sent
    /// with each script call (empty without `[shared]`).
    pub(super) shared: Vec<Vec<(CredKeys, Limits)>>,
    /// `[shared]`: per client, its Redis keys and limits when it has an rpm or a tpm
    /// (empty without `[shared]`).
    pub(super) client_shared: Vec<Option<(ClientKeys, ClientLimits)>>,
    /// The latency-routed ranges of the alias and class target lists.
    pub(super) latency_segments: crate::routing::Segments,
}

impl Live {
    /// The metrics label for `t`'s model: its name when an alias sends it there,
    /// else [`UNKNOWN_MODEL`].
    pub(super) fn model_label<'a>(&self, t: &'a Target) -> &'a str {
        if self.known_models[t.provider].contains(t.model.as_str()) {
            &t.model
        } else {
            UNKNOWN_MODEL
        }
    }
}

/// What an accepted reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadSummary {
    pub reloaded: bool,
    /// The new config generation (1 at start).
    pub generation: u64,
    /// (provider, credential) pairs unchanged: breaker state kept.
    pub kept: usize,
    /// New or changed pairs: breaker starts closed.
    pub fresh: usize,
    /// Pairs that were disabled (401/403) and are usable again.
    pub reenabled: usize,
    /// Pairs (by provider and credential name) no longer in the config.
    pub removed: usize,
    /// Deprecation lines of the file read (shown apart from the summary line).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The (provider, credential) pairs re-enabled, for the access log.
    #[serde(skip)]
    pub reenabled_credentials: Vec<(String, String)>,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "config generation {}: {} credentials kept their breaker state, {} new or changed start closed, {} re-enabled, {} removed",
            self.generation, self.kept, self.fresh, self.reenabled, self.removed
        )
    }
}

/// Builds a config generation; with `old`, unchanged (provider, credential) pairs
/// share their breaker slot with it.
pub(super) fn build_live(
    cfg: Config,
    generation: u64,
    old: Option<&Live>,
    now: Instant,
) -> Result<(Live, ReloadSummary), String> {
    let mut summary = ReloadSummary {
        generation,
        ..Default::default()
    };
    let mut selectors = Vec::new();
    let endpoints = Endpoints::build(&cfg.providers, cfg.models.values().flatten())?;
    let mut provider_hv = Vec::new();
    let mut cred_hv = Vec::new();
    let mut auth = Vec::new();
    let mut secrets = Secrets::new();
    for p in &cfg.providers {
        provider_hv
            .push(HeaderValue::from_str(&p.name).map_err(|e| format!("provider {}: {e}", p.name))?);
        let old_p = old.and_then(|o| {
            o.cfg
                .providers
                .iter()
                .position(|q| {
                    q.name == p.name
                        && q.kind == p.kind
                        && q.base_url == p.base_url
                        && q.azure_api_version == p.azure_api_version
                })
                .map(|pi| (o, pi))
        });
        let mut slots = Vec::new();
        let mut hvs = Vec::new();
        let mut auths = Vec::new();
        for c in &p.credentials {
            hvs.push(
                HeaderValue::from_str(&c.name)
                    .map_err(|e| format!("credential {}: {e}", c.name))?,
            );
            auths.push(match &c.key {
                None => None,
                Some(k) => {
                    secrets.add(k.expose());
                    let (name, value) = match p.kind {
                        _ if p.azure_api_version.is_some() => (
                            HeaderName::from_static("api-key"),
                            HeaderValue::from_str(k.expose()),
                        ),
                        ProviderKind::Anthropic => (
                            HeaderName::from_static("x-api-key"),
                            HeaderValue::from_str(k.expose()),
                        ),
                        _ => (
                            AUTHORIZATION,
                            HeaderValue::from_str(&format!("Bearer {}", k.expose())),
                        ),
                    };
                    // the error text never carries the key
                    let mut value = value.map_err(|_| {
                        format!(
                            "the API key of credential {} is not a valid header value",
                            c.name
                        )
                    })?;
                    value.set_sensitive(true);
                    Some((name, value))
                }
            });
            let reuse = old_p.and_then(|(o, pi)| {
                o.cfg.providers[pi]
                    .credentials
                    .iter()
                    .position(|d| d.name == c.name && d.key == c.key)
                    .map(|ci| {
                        (
                            o.cfg.providers[pi].credentials[ci].rate(),
                            o.selectors[pi].creds[ci].clone(),
                        )
                    })
            });
            let slot = match reuse {
                Some((old_rate, slot)) => {
                    {
                        let mut st = slot.lock();
                        st.breaker.set_config(cfg.breaker.clone());
                        if st.breaker.reenable() {
                            summary.reenabled += 1;
                            summary
                                .reenabled_credentials
                                .push((p.name.clone(), c.name.clone()));
                        }
                        if old_rate != c.rate() {
                            st.limiter = c.rate().map(|(r, b)| RpmLimiter::with_burst(r, b));
                        }
                        if st.tpm.as_ref().map(TokenBucket::tpm) != c.tpm {
                            st.tpm = c.tpm.map(|t| TokenBucket::new(t, now));
                        }
                    }
                    summary.kept += 1;
                    slot
                }
                None => {
                    if old.is_some() {
                        summary.fresh += 1;
                    }
                    Arc::new(Mutex::new(CredState {
                        breaker: Breaker::new(cfg.breaker.clone(), now),
                        limiter: c.rate().map(|(r, b)| RpmLimiter::with_burst(r, b)),
                        synced: None,
                        shared_wait: None,
                        tpm: c.tpm.map(|t| TokenBucket::new(t, now)),
                        told: HeaderState::default(),
                    }))
                }
            };
            slots.push(slot);
        }
        selectors.push(Selector {
            picker: Mutex::new(WeightedPicker::default()),
            creds: slots,
        });
        cred_hv.push(hvs);
        auth.push(auths);
    }
    if let Some(o) = old {
        summary.removed = o
            .cfg
            .providers
            .iter()
            .flat_map(|p| p.credentials.iter().map(move |c| (p, c)))
            .filter(|(p, c)| {
                !cfg.providers
                    .iter()
                    .any(|q| q.name == p.name && q.credentials.iter().any(|d| d.name == c.name))
            })
            .count();
    }
    let mut classes = BTreeMap::new();
    for class in cfg.routes.keys() {
        if let Some(t) = cfg.route_targets(class) {
            classes.insert(class.clone(), Arc::from(t));
        }
    }
    let aliases: BTreeMap<String, Arc<[Target]>> = cfg
        .models
        .iter()
        .map(|(a, t)| (a.clone(), Arc::from(t.clone())))
        .collect();
    let clients = cfg
        .clients
        .iter()
        .enumerate()
        .map(|(i, c)| (c.hash, i))
        .collect();
    let client_limiters = cfg
        .clients
        .iter()
        .map(|c| {
            let rpm = c.rpm?;
            // an unchanged client (same name and rpm) keeps its limiter
            let kept = old.and_then(|o| {
                let i = o
                    .cfg
                    .clients
                    .iter()
                    .position(|d| d.name == c.name && d.rpm == c.rpm)?;
                o.client_limiters[i].clone()
            });
            // a minute's worth at once, refilled at rpm per minute
            Some(kept.unwrap_or_else(|| Arc::new(Mutex::new(RpmLimiter::with_burst(rpm, rpm)))))
        })
        .collect();
    let client_tpm = super::auth::client_buckets(&cfg, old, now);
    let shared = match &cfg.shared {
        None => Vec::new(),
        Some(sh) => cfg
            .providers
            .iter()
            .map(|p| {
                p.credentials
                    .iter()
                    .map(|c| {
                        (
                            CredKeys::new(&sh.key_prefix, &p.name, &c.name),
                            Limits::new(&cfg.breaker, c.rate(), c.tpm),
                        )
                    })
                    .collect()
            })
            .collect(),
    };
    let client_shared = match &cfg.shared {
        None => Vec::new(),
        Some(sh) => cfg
            .clients
            .iter()
            .map(|c| {
                let l = ClientLimits::new(c.rpm, c.tpm)?;
                Some((ClientKeys::new(&sh.key_prefix, &c.name), l))
            })
            .collect(),
    };
    let latency_segments = crate::routing::all_segments(&cfg, &classes, &aliases);
    let mut known_models = vec![BTreeSet::new(); cfg.providers.len()];
    for t in cfg.models.values().flatten() {
        known_models[t.provider].insert(t.model.clone());
    }
    Ok((
        Live {
            cfg: Arc::new(cfg),
            generation,
            selectors,
            endpoints,
            provider_hv,
            cred_hv,
            auth,
            classes,
            aliases,
            known_models,
            secrets,
            clients,
            client_limiters,
            client_tpm,
            shared,
            client_shared,
            latency_segments,
        },
        summary,
    ))
}
