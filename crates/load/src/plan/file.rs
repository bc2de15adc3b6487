//! The scenario file as written: serde structs read with `deny_unknown_fields`,
//! before any validation.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanFile {
    #[serde(default)]
    pub(super) options: OptionsFile,
    #[serde(default)]
    pub(super) thresholds: BTreeMap<String, Spanned<ThresholdList>>,
    #[serde(default)]
    pub(super) scenarios: BTreeMap<String, Spanned<ScenarioFile>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct OptionsFile {
    pub(super) base_url: Option<String>,
    pub(super) http: Option<String>,
    pub(super) connect_timeout: Option<String>,
    pub(super) request_timeout: Option<String>,
    #[serde(default)]
    pub(super) no_vu_connection_reuse: bool,
    pub(super) ca_cert: Option<String>,
    #[serde(default)]
    pub(super) insecure_skip_tls_verify: bool,
    #[serde(default)]
    pub(super) trace: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum ThresholdList {
    One(ThresholdItem),
    Many(Vec<ThresholdItem>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum ThresholdItem {
    Text(String),
    Full(ThresholdFull),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ThresholdFull {
    pub(super) threshold: String,
    #[serde(default)]
    pub(super) abort_on_fail: bool,
    pub(super) delay_abort_eval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScenarioFile {
    pub(super) endpoint_type: String,
    pub(super) description: Option<String>,
    pub(super) executor: Option<String>,
    pub(super) users: Option<u32>,
    pub(super) duration: Option<String>,
    pub(super) ramp_up: Option<String>,
    pub(super) ramp_down: Option<String>,
    pub(super) vus: Option<u32>,
    pub(super) start_vus: Option<u32>,
    pub(super) stages: Option<Vec<StageFile>>,
    pub(super) iterations: Option<u64>,
    pub(super) max_duration: Option<String>,
    pub(super) rate: Option<f64>,
    pub(super) start_rate: Option<f64>,
    pub(super) time_unit: Option<String>,
    pub(super) pre_allocated_vus: Option<u32>,
    pub(super) max_vus: Option<u32>,
    pub(super) max_backlog: Option<u64>,
    pub(super) start_time: Option<String>,
    pub(super) graceful_stop: Option<String>,
    #[serde(default)]
    pub(super) tags: BTreeMap<String, String>,
    pub(super) data: Option<DataFile>,
    #[serde(default)]
    pub(super) setup: Vec<Spanned<StepFile>>,
    #[serde(default)]
    pub(super) steps: Vec<Spanned<StepFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StageFile {
    pub(super) duration: String,
    pub(super) target: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DataFile {
    pub(super) file: String,
    pub(super) mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StepFile {
    pub(super) name: Option<String>,
    pub(super) method: Option<String>,
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    pub(super) json: Option<toml::Value>,
    pub(super) body: Option<String>,
    #[serde(default)]
    pub(super) extract: BTreeMap<String, String>,
    pub(super) checks: Option<ChecksFile>,
    pub(super) endpoint_type: Option<String>,
    /// A streamed LLM answer in this dialect (`crate::llm`).
    pub(super) llm: Option<String>,
    pub(super) stall_timeout: Option<String>,
    pub(super) sleep: Option<String>,
    pub(super) cable: Option<CableFile>,
    pub(super) ws: Option<WsFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChecksFile {
    pub(super) status: Option<StatusList>,
    pub(super) body_contains: Option<String>,
    #[serde(default)]
    pub(super) json: BTreeMap<String, toml::Value>,
    pub(super) duration_below: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum StatusList {
    One(u16),
    Many(Vec<u16>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CableFile {
    pub(super) url: Option<String>,
    pub(super) channel: Option<String>,
    pub(super) hold: Option<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WsFile {
    pub(super) url: String,
    pub(super) subprotocol: Option<String>,
    #[serde(default)]
    pub(super) send: Vec<String>,
    pub(super) expect: Option<String>,
    pub(super) timeout: Option<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
}
