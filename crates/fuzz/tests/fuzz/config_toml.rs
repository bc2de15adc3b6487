//! Configuration files: the gateway's (`gateway serve --config`), the targets file
//! (`powertune.toml`, `--targets`) and the APM receiver's settings (`apm serve
//! --config`). Every input goes to all three.

use powertune_apm::ApmConfig;
use powertune_core::Targets;
use powertune_gateway::Config;
use proptest::prelude::*;

const TARGET: &str = "config_toml";

static TOKENS: &[&[u8]] = &[
    b"[[providers]]\nname = \"p\"\nkind = \"anthropic\"\nbase_url = \"http://127.0.0.1:1\"\n",
    b"[[providers.credentials]]\nname = \"c\"\napi_key_env = \"K1\"\n",
    b"[models.m]\ntargets = [\"openai:x\"]\n",
    b"[routes]\n",
    b"[[rules]]\n",
    b"[breaker]\n",
    b"[timeouts]\n",
    b"[retry]\n",
    b"[window]\n",
    b"[database]\n",
    b"[api.read_crud]\n",
    b"[worker.weights]\n",
    b"[cache.x]\n",
    b"[[endpoint_types]]\nmatch = \"**\"\ntype = \"x\"\n",
    b"base_url = \"\"",
    b"api_key_env = \"NOPE\"",
    b"\"openai:\"",
    b"\":\"",
    b"\"0s\"",
    b"\"99999999999999999999d\"",
    b"= nan",
    b"= -inf",
    b"= 0",
    b"= []",
    b"= {}",
];

fn env(k: &str) -> Option<String> {
    match k {
        "K1" => Some("sk-one".into()),
        "K2" => Some("sk-two".into()),
        _ => None,
    }
}

pub fn check(input: &[u8]) {
    let text = super::text(input);
    match Config::from_toml(&text, "gateway.toml", &env) {
        Ok(loaded) => {
            let shown = format!("{:?}", loaded.config);
            assert!(
                !shown.contains("sk-one") && !shown.contains("sk-two"),
                "a key shows: {shown}"
            );
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("gateway.toml"), "{msg}");
            assert!(
                !msg.contains("sk-one") && !msg.contains("sk-two"),
                "a key shows: {msg}"
            );
        }
    }
    let targets = match Targets::from_toml_str(&text, "powertune.toml") {
        Ok(t) => t,
        Err(e) => {
            assert!(e.to_string().contains("powertune.toml"), "{e}");
            Targets::default()
        }
    };
    match ApmConfig::parse(&text, "apm.toml") {
        Ok((raw, src)) => {
            if let Err(e) = raw.validate(&src, &targets) {
                assert!(e.to_string().contains("apm.toml"), "{e}");
            }
        }
        Err(e) => assert!(e.to_string().contains("apm.toml"), "{e}"),
    }
}

#[test]
fn corpus_replays_cleanly() {
    super::replay(TARGET, 6, check);
}

proptest! {
    #![proptest_config(powertune_fuzz::config(1200))]

    #[test]
    fn mutated_corpus_never_panics(input in powertune_fuzz::mutated(super::seeds(TARGET), TOKENS)) {
        check(&input);
    }

    /// Every numeric and duration key of the three files set to any value.
    #[test]
    fn any_values_are_accepted_or_refused_cleanly(
        n in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), any::<f64>().prop_map(|f| format!("{f:?}")), Just("18446744073709551616".to_string())],
        d in prop_oneof!["[0-9]{1,25}(ns|ms|s|m|h|d)", "\\PC{0,6}"],
    ) {
        let text = format!(
            "listen = \"127.0.0.1:0\"\n[[providers]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1/\"\n\
             [[providers.credentials]]\nname = \"a\"\napi_key_env = \"K1\"\nweight = {n}\nrpm = {n}\n\
             [models.fast]\ntargets = [\"openai:gpt-4o-mini\"]\n[routes]\nlatency = [\"fast\"]\n\
             [breaker]\nfailure_threshold = {n}\nrecovery = \"{d}\"\n[timeouts]\nconnect = \"{d}\"\nrequest = \"{d}\"\n[retry]\nmax_retries = {n}\n"
        );
        check(text.as_bytes());
        let apm = format!(
            "[window]\nretain = \"{d}\"\nbuckets = {n}\nmax_spans = {n}\nmax_keys = {n}\nlinger = \"{d}\"\n\
             [n_plus_one]\nmin_count = {n}\nmin_total_ms = {n}\n[consecutive_queries]\nmin_saved_ratio = {n}\n"
        );
        check(apm.as_bytes());
        let targets = format!(
            "[api.read_crud]\ntarget_ms = {n}\nmax_ms = {n}\n[database]\npool_min = {n}\nmax_query_ms = {n}\n\
             [worker]\nqueue_latency_s = {n}\n[worker.weights]\nq = {n}\n"
        );
        check(targets.as_bytes());
    }
}
