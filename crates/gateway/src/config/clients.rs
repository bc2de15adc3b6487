//! `[[clients]]`: the gateway's own virtual keys. Each is stored as the SHA-256 of
//! the key (hex, `key_sha256`) or read from an environment variable (`key_env`,
//! hashed at load); the gateway keeps only the hash. A client may be limited to some
//! route classes and model names, to a rate of requests per minute and to tokens per
//! minute.

use super::{ConfigError, Source};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::net::SocketAddr;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub name: String,
    /// The key's SHA-256 in hex (`printf %s "$KEY" | sha256sum`).
    pub key_sha256: Option<String>,
    /// Or: the environment variable holding the key itself.
    pub key_env: Option<String>,
    /// Route classes this client may use (absent: any).
    pub routes: Option<Vec<String>>,
    /// Names this client may send as `model` (absent: any).
    pub models: Option<Vec<String>>,
    pub rpm: Option<u32>,
    /// Tokens (input + output) per minute, charged as each call ends.
    pub tpm: Option<u64>,
}

/// One virtual key: a name (for logs and metrics; never the key) and what it may do.
#[derive(Clone, PartialEq, Eq)]
pub struct Client {
    pub name: String,
    /// SHA-256 of the key.
    pub hash: [u8; 32],
    pub routes: Option<BTreeSet<String>>,
    pub models: Option<BTreeSet<String>>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("routes", &self.routes)
            .field("models", &self.models)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 of a presented key.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Checks `[[clients]]`: unique names and keys, a key given one way, known route
/// classes and model names.
pub(super) fn validate(
    raw: Vec<RawClient>,
    src: &Source,
    env: &dyn Fn(&str) -> Option<String>,
    routes: &BTreeSet<&str>,
    models: &BTreeSet<&str>,
) -> Result<Vec<Client>, ConfigError> {
    let mut out: Vec<Client> = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        let key = format!("clients[{i}]");
        if c.name.is_empty() || out.iter().any(|d| d.name == c.name) {
            return Err(src.error(
                &format!("{key}.name"),
                format!(
                    "must be non-empty and unique (got {:?}), e.g. name = \"billing-app\"",
                    c.name
                ),
            ));
        }
        let hash = match (&c.key_sha256, &c.key_env) {
            (Some(h), None) => {
                let mut out = [0u8; 32];
                hex::decode_to_slice(h.trim(), &mut out).map_err(|_| {
                    src.error(
                        &format!("{key}.key_sha256"),
                        "must be 64 hex digits, the SHA-256 of the key, e.g. from printf %s \"$KEY\" | sha256sum",
                    )
                })?;
                out
            }
            (None, Some(var)) => match env(var) {
                Some(v) if !v.trim().is_empty() => key_hash(v.trim()),
                _ => {
                    return Err(src.error(
                        &format!("{key}.key_env"),
                        format!("environment variable {var} is not set or empty; export it, e.g. export {var}=$(openssl rand -hex 24)"),
                    ))
                }
            },
            _ => {
                return Err(src.error(
                    &key,
                    "needs exactly one of key_sha256 (the key's SHA-256 in hex) or key_env (a variable holding the key), e.g. key_env = \"GATEWAY_KEY_BILLING\"",
                ))
            }
        };
        if let Some(other) = out.iter().find(|d| d.hash == hash) {
            return Err(src.error(
                &format!("{key}.name"),
                format!(
                    "client {:?} has the same key as client {:?}; give each client its own key",
                    c.name, other.name
                ),
            ));
        }
        if c.rpm == Some(0) {
            return Err(src.error(
                &format!("{key}.rpm"),
                "must be at least 1 or left out for no limit (got 0), e.g. rpm = 600",
            ));
        }
        if c.tpm == Some(0) {
            return Err(src.error(
                &format!("{key}.tpm"),
                "must be at least 1 or left out for no limit (got 0), e.g. tpm = 200000",
            ));
        }
        if let Some(rs) = &c.routes {
            if let Some(r) = rs.iter().find(|r| !routes.contains(r.as_str())) {
                return Err(src.error(
                    &format!("{key}.routes"),
                    format!("unknown route class {r:?}; declare it under [routes]"),
                ));
            }
        }
        if let Some(ms) = &c.models {
            // a model alias, a route class used as a model, or "provider:model"
            if let Some(m) = ms.iter().find(|m| {
                !models.contains(m.as_str()) && !routes.contains(m.as_str()) && !m.contains(':')
            }) {
                return Err(src.error(
                    &format!("{key}.models"),
                    format!("unknown model {m:?}; name a [models] alias, a route class or \"provider:model\""),
                ));
            }
        }
        out.push(Client {
            name: c.name,
            hash,
            routes: c.routes.map(|v| v.into_iter().collect()),
            models: c.models.map(|v| v.into_iter().collect()),
            rpm: c.rpm,
            tpm: c.tpm,
        });
    }
    Ok(out)
}

/// A gateway that listens beyond loopback serves whoever reaches it with the
/// provider keys it holds: refused without client keys unless the operator says so.
pub fn check_exposure(
    listen: SocketAddr,
    clients: &[Client],
    allow_unauthenticated: bool,
) -> Result<(), String> {
    if listen.ip().to_canonical().is_loopback() || !clients.is_empty() || allow_unauthenticated {
        return Ok(());
    }
    Err(format!(
        "listen {listen} is reachable beyond loopback and no [[clients]] keys are configured, so anyone who reaches it spends the provider keys; add [[clients]] (docs/gateway.md, \"Client keys\") or pass --allow-unauthenticated"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_sha256() {
        // printf %s abc | sha256sum
        assert_eq!(
            hex::encode(key_hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn exposure_needs_keys_or_the_flag() {
        let beyond: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let v6: SocketAddr = "[::1]:4000".parse().unwrap();
        let client = Client {
            name: "a".into(),
            hash: key_hash("k"),
            routes: None,
            models: None,
            rpm: None,
            tpm: None,
        };
        assert!(check_exposure(local, &[], false).is_ok());
        assert!(check_exposure(v6, &[], false).is_ok());
        let e = check_exposure(beyond, &[], false).unwrap_err();
        assert!(e.contains("--allow-unauthenticated"), "{e}");
        assert!(check_exposure(beyond, &[], true).is_ok());
        assert!(check_exposure(beyond, &[client], false).is_ok());
    }
}
