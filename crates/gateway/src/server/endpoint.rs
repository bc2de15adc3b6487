//! Where a call goes: the URL of a provider's chat or embeddings endpoint, parsed
//! once per config generation (and, for an http:// provider, the origin the plain
//! client takes). Azure OpenAI names the deployment in the path and the API version
//! in the query, so its endpoints are per (provider, deployment).

use crate::config::{Provider, Target};
use crate::upstream::Origin;
use powertune_dialect::{embeddings_path, provider_path};
use std::borrow::Cow;
use std::collections::HashMap;

/// Which API of a provider a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Op {
    Chat,
    Embeddings,
}

/// One endpoint: its URL, and for plain-HTTP providers its origin.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    pub(super) url: reqwest::Url,
    pub(super) plain: Option<Origin>,
}

impl Endpoint {
    fn new(url: reqwest::Url) -> Result<Endpoint, String> {
        let plain = if url.scheme() == "http" {
            Some(Origin::new(&url)?)
        } else {
            None
        };
        Ok(Endpoint { url, plain })
    }
}

/// Every endpoint of a config generation.
#[derive(Debug, Default)]
pub(super) struct Endpoints {
    /// Per provider (not Azure): chat, and embeddings where the kind has them.
    chat: Vec<Option<Endpoint>>,
    embed: Vec<Option<Endpoint>>,
    /// Azure: per (provider, deployment) an alias sends to.
    deployments: HashMap<(usize, Op), HashMap<String, Endpoint>>,
    /// Azure: per provider, its base URL and `api-version`.
    azure: Vec<Option<(String, String)>>,
}

/// An Azure OpenAI deployment's URL:
/// `{base}/openai/deployments/{deployment}/chat/completions?api-version=V`.
fn azure_url(base: &str, version: &str, deployment: &str, op: Op) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(base).map_err(|e| e.to_string())?;
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|()| format!("{base} cannot take a path"))?;
        path.pop_if_empty()
            .extend(["openai", "deployments", deployment]);
        match op {
            Op::Chat => path.extend(["chat", "completions"]),
            Op::Embeddings => path.extend(["embeddings"]),
        };
    }
    url.query_pairs_mut().append_pair("api-version", version);
    Ok(url)
}

impl Endpoints {
    /// The endpoints of `providers`; `targets` are the (provider, model) pairs some
    /// alias names, whose Azure URLs are built now rather than per call.
    pub(super) fn build<'a>(
        providers: &[Provider],
        targets: impl Iterator<Item = &'a Target>,
    ) -> Result<Endpoints, String> {
        let mut e = Endpoints::default();
        for p in providers {
            let err = |m: String| format!("provider {}: {m}", p.name);
            let url = |path: &str| {
                reqwest::Url::parse(&format!("{}{path}", p.base_url))
                    .map_err(|x| err(x.to_string()))
                    .and_then(|u| Endpoint::new(u).map_err(err))
            };
            match &p.azure_api_version {
                Some(v) => {
                    e.chat.push(None);
                    e.embed.push(None);
                    e.azure.push(Some((p.base_url.clone(), v.clone())));
                }
                None => {
                    e.chat.push(Some(url(provider_path(p.kind))?));
                    e.embed.push(embeddings_path(p.kind).map(url).transpose()?);
                    e.azure.push(None);
                }
            }
        }
        for t in targets {
            if let Some((base, v)) = &e.azure[t.provider] {
                for op in [Op::Chat, Op::Embeddings] {
                    let ep = Endpoint::new(azure_url(base, v, &t.model, op)?)?;
                    e.deployments
                        .entry((t.provider, op))
                        .or_default()
                        .insert(t.model.clone(), ep);
                }
            }
        }
        Ok(e)
    }

    /// Where `op` for `t` goes; `None` when the provider has no such endpoint.
    pub(super) fn get(&self, t: &Target, op: Op) -> Option<Cow<'_, Endpoint>> {
        match &self.azure[t.provider] {
            None => match op {
                Op::Chat => self.chat[t.provider].as_ref().map(Cow::Borrowed),
                Op::Embeddings => self.embed[t.provider].as_ref().map(Cow::Borrowed),
            },
            Some((base, v)) => match self
                .deployments
                .get(&(t.provider, op))
                .and_then(|d| d.get(t.model.as_str()))
            {
                Some(ep) => Some(Cow::Borrowed(ep)),
                // a deployment no alias names ("azure:name" sent as the model)
                None => azure_url(base, v, &t.model, op)
                    .and_then(Endpoint::new)
                    .ok()
                    .map(Cow::Owned),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_urls_name_the_deployment_and_the_api_version() {
        let u = azure_url(
            "https://res.openai.azure.com/",
            "2024-10-21",
            "gpt-4o mini",
            Op::Chat,
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "https://res.openai.azure.com/openai/deployments/gpt-4o%20mini/chat/completions?api-version=2024-10-21"
        );
        let u = azure_url("http://127.0.0.1:9", "v1", "emb", Op::Embeddings).unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:9/openai/deployments/emb/embeddings?api-version=v1"
        );
    }
}
