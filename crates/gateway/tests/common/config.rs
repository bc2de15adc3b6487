//! A gateway config built in code and written as the TOML a user would write.

/// One `[[providers]]` entry and its credentials.
#[derive(Debug, Clone)]
struct Provider {
    name: String,
    kind: String,
    base_url: String,
    credentials: Vec<Credential>,
}

#[derive(Debug, Clone)]
struct Credential {
    name: String,
    key_env: String,
    weight: Option<u32>,
    rpm: Option<u32>,
}

/// Builds a gateway config; [`ConfigBuilder::toml`] writes it.
#[derive(Debug, Clone, Default)]
pub struct ConfigBuilder {
    /// `[timeouts]` keys and their TOML values.
    timeouts: Vec<(&'static str, String)>,
    /// `[retry]` keys and their TOML values.
    retry: Vec<(&'static str, String)>,
    raw: String,
    providers: Vec<Provider>,
    models: Vec<(String, Vec<String>)>,
    routes: Vec<(String, Vec<String>)>,
    rules: Vec<(String, String)>,
}

fn set<V>(list: &mut Vec<(&'static str, V)>, key: &'static str, value: V) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some(e) => e.1 = value,
        None => list.push((key, value)),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

impl ConfigBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// `[timeouts] key = "duration"` (`connect`, `first_token`, `idle`, `request`).
    pub fn timeout(mut self, key: &'static str, duration: &str) -> Self {
        set(&mut self.timeouts, key, format!("{duration:?}"));
        self
    }

    /// `[retry] max_retries = n`.
    pub fn retries(mut self, n: u32) -> Self {
        set(&mut self.retry, "max_retries", n.to_string());
        self
    }

    /// `[retry] key = "duration"` (`base`, `max`).
    pub fn backoff(mut self, key: &'static str, duration: &str) -> Self {
        set(&mut self.retry, key, format!("{duration:?}"));
        self
    }

    /// TOML written as given, after `[retry]` (e.g. a `[breaker]` table).
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push_str(toml);
        self
    }

    /// A provider without credentials (add them with [`ConfigBuilder::credential`]).
    pub fn provider(mut self, name: &str, kind: &str, base_url: &str) -> Self {
        self.providers.push(Provider {
            name: name.into(),
            kind: kind.into(),
            base_url: base_url.into(),
            credentials: Vec::new(),
        });
        self
    }

    /// A credential of the last provider, its key in environment variable `key_env`.
    pub fn credential(self, name: &str, key_env: &str) -> Self {
        self.weighted(name, key_env, None, None)
    }

    /// A credential of the last provider with a weight and an rpm limit.
    pub fn weighted(
        mut self,
        name: &str,
        key_env: &str,
        weight: Option<u32>,
        rpm: Option<u32>,
    ) -> Self {
        let p = self
            .providers
            .last_mut()
            .expect("a credential needs a provider first");
        p.credentials.push(Credential {
            name: name.into(),
            key_env: key_env.into(),
            weight,
            rpm,
        });
        self
    }

    /// `[models.alias] targets = [...]`.
    pub fn model(mut self, alias: &str, targets: &[&str]) -> Self {
        self.models.push((alias.into(), strings(targets)));
        self
    }

    /// `[routes] class = [...]`.
    pub fn route(mut self, class: &str, models: &[&str]) -> Self {
        self.routes.push((class.into(), strings(models)));
        self
    }

    /// `[[rules]] model_prefix = ..., route = ...`.
    pub fn rule(mut self, model_prefix: &str, route: &str) -> Self {
        self.rules.push((model_prefix.into(), route.into()));
        self
    }

    /// Every provider's base URL with `from` replaced by `to`.
    pub fn moved(mut self, from: &str, to: &str) -> Self {
        for p in &mut self.providers {
            p.base_url = p.base_url.replace(from, to);
        }
        self
    }

    pub fn toml(&self) -> String {
        let mut o = String::new();
        if !self.timeouts.is_empty() {
            o.push_str("[timeouts]\n");
            for (k, v) in &self.timeouts {
                o.push_str(&format!("{k} = {v}\n"));
            }
        }
        if !self.retry.is_empty() {
            o.push_str("[retry]\n");
            for (k, v) in &self.retry {
                o.push_str(&format!("{k} = {v}\n"));
            }
        }
        o.push_str(&self.raw);
        for p in &self.providers {
            o.push_str(&format!(
                "[[providers]]\nname = {:?}\nkind = {:?}\nbase_url = {:?}\n",
                p.name, p.kind, p.base_url
            ));
            for c in &p.credentials {
                o.push_str(&format!(
                    "  [[providers.credentials]]\n  name = {:?}\n  api_key_env = {:?}\n",
                    c.name, c.key_env
                ));
                if let Some(w) = c.weight {
                    o.push_str(&format!("  weight = {w}\n"));
                }
                if let Some(r) = c.rpm {
                    o.push_str(&format!("  rpm = {r}\n"));
                }
            }
        }
        for (alias, targets) in &self.models {
            o.push_str(&format!("[models.{alias}]\ntargets = {}\n", array(targets)));
        }
        if !self.routes.is_empty() {
            o.push_str("[routes]\n");
            for (class, models) in &self.routes {
                o.push_str(&format!("{class} = {}\n", array(models)));
            }
        }
        for (prefix, route) in &self.rules {
            o.push_str(&format!(
                "[[rules]]\nmodel_prefix = {prefix:?}\nroute = {route:?}\n"
            ));
        }
        o
    }
}

/// Three providers at `url`, one of each kind (`oai` with key FAKE_KEY_1, `ant` with
/// FAKE_KEY_2, `oll` without a key), model `fast` = `oai:gpt-fast`, short retries.
pub fn three_kinds(url: &str) -> ConfigBuilder {
    ConfigBuilder::new()
        .timeout("connect", "2s")
        .timeout("first_token", "5s")
        .timeout("idle", "5s")
        .timeout("request", "20s")
        .backoff("base", "1ms")
        .backoff("max", "50ms")
        .provider("oai", "openai", &format!("{url}/v1"))
        .credential("main", "FAKE_KEY_1")
        .provider("ant", "anthropic", url)
        .credential("main", "FAKE_KEY_2")
        .provider("oll", "ollama", url)
        .model("fast", &["oai:gpt-fast"])
}
