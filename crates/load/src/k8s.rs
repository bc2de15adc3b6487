//! `powertune load … --k8s-job N --image IMAGE`: the Kubernetes manifest that runs a
//! plan as N execution segments, one pod each, and merges them. Four documents:
//!
//! 1. a ConfigMap holding the plan file, its CSV data files and the targets file;
//! 2. a PersistentVolumeClaim (ReadWriteMany) the parts are written to;
//! 3. a `batch/v1` Job with `completionMode: Indexed`, `completions = parallelism = N`:
//!    pod k runs `powertune load --segment-sequence 0,1/N,…,1 --segment-index k` (k
//!    from `JOB_COMPLETION_INDEX`) with one `--start-at` for all, writing
//!    `/results/part-k.json`;
//! 4. a suspended Job that runs `powertune merge` over the N parts once resumed
//!    (after the first Job completes), writing `/results/merged.json` and
//!    `merged.html`; its exit code is the run's verdict (0, 99).
//!
//! The documents are typed structs serialised with serde to YAML, not text templates.

use serde::Serialize;
use std::collections::BTreeMap;

/// The most a ConfigMap may hold (Kubernetes' limit is 1 MiB for the whole object).
pub const MAX_CONFIGMAP_BYTES: usize = 1_000_000;

/// What the manifest is made of.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The Job's name (DNS-1123 label); the other objects are named after it.
    pub name: String,
    pub image: String,
    /// Segments (pods).
    pub segments: u32,
    /// File name → contents: the plan (first) and its data files, placed side by side
    /// in `/etc/powertune`.
    pub files: Vec<(String, String)>,
    /// The plan's file name among `files`.
    pub plan_file: String,
    /// The targets file (`powertune.toml`), if one is in force.
    pub targets: Option<String>,
    pub base_url: String,
    /// The common start (RFC 3339).
    pub start_at: String,
    /// Further `powertune load` flags every pod gets (e.g. `--time-scale 0.1`).
    pub extra_args: Vec<String>,
    /// The results volume's size request (e.g. `1Gi`).
    pub results_size: String,
}

/// Why no manifest could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--k8s-job: {0}")]
pub struct K8sError(pub String);

const CONFIG_DIR: &str = "/etc/powertune";
const RESULTS_DIR: &str = "/results";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: String,
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigMap {
    api_version: &'static str,
    kind: &'static str,
    metadata: Meta,
    data: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Claim {
    api_version: &'static str,
    kind: &'static str,
    metadata: Meta,
    spec: ClaimSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClaimSpec {
    access_modes: Vec<&'static str>,
    resources: Resources,
}

#[derive(Serialize)]
struct Resources {
    requests: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Job {
    api_version: &'static str,
    kind: &'static str,
    metadata: Meta,
    spec: JobSpecK8s,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobSpecK8s {
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_mode: Option<&'static str>,
    completions: u32,
    parallelism: u32,
    /// A failed segment is not run again: its load would land after the others'.
    backoff_limit: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    suspend: bool,
    template: PodTemplate,
}

#[derive(Serialize)]
struct PodTemplate {
    metadata: Meta,
    spec: PodSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    restart_policy: &'static str,
    security_context: PodSecurity,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
}

/// The image runs as distroless' `nonroot` (uid and gid 65532); `fsGroup` makes the
/// results volume writable by it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSecurity {
    run_as_non_root: bool,
    fs_group: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: &'static str,
    image: String,
    args: Vec<String>,
    volume_mounts: Vec<Mount>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Mount {
    name: &'static str,
    mount_path: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    read_only: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    config_map: Option<ConfigMapRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    persistent_volume_claim: Option<ClaimRef>,
}

#[derive(Serialize)]
struct ConfigMapRef {
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClaimRef {
    claim_name: String,
}

/// A DNS-1123 label from `text`: lower case, `a-z0-9-`, at most 52 characters (so
/// the suffixes and Kubernetes' pod-name suffixes still fit 63).
pub fn dns_label(text: &str) -> String {
    let mut s: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(52);
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "powertune".into()
    } else {
        s
    }
}

/// The sequence `0,1/n,…,1`.
pub fn equal_sequence(n: u32) -> String {
    let mut v = vec!["0".to_string()];
    v.extend((1..n).map(|k| {
        let r = num_rational::Ratio::new(k, n);
        format!("{}/{}", r.numer(), r.denom())
    }));
    v.push("1".into());
    v.join(",")
}

/// The `powertune load` arguments of the pod with completion index `index` (the
/// Job passes `$(JOB_COMPLETION_INDEX)`, which Kubernetes expands from the pod's
/// environment).
pub fn pod_args(spec: &JobSpec, index: &str) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "load".into(),
        format!("{CONFIG_DIR}/{}", spec.plan_file),
        "--base-url".into(),
        spec.base_url.clone(),
        "--segment-sequence".into(),
        equal_sequence(spec.segments),
        "--segment-index".into(),
        index.into(),
        "--start-at".into(),
        spec.start_at.clone(),
        "--quiet".into(),
        "--json".into(),
        format!("{RESULTS_DIR}/part-{index}.json"),
    ];
    if spec.targets.is_some() {
        a.extend(["--targets".into(), format!("{CONFIG_DIR}/powertune.toml")]);
    }
    a.extend(spec.extra_args.iter().cloned());
    a
}

/// The `powertune merge` arguments of the final Job.
pub fn merge_args(spec: &JobSpec) -> Vec<String> {
    let mut a: Vec<String> = vec!["merge".into()];
    a.extend((0..spec.segments).map(|k| format!("{RESULTS_DIR}/part-{k}.json")));
    if spec.targets.is_some() {
        a.extend(["--targets".into(), format!("{CONFIG_DIR}/powertune.toml")]);
    }
    a.extend([
        "--json".into(),
        format!("{RESULTS_DIR}/merged.json"),
        "--html".into(),
        format!("{RESULTS_DIR}/merged.html"),
    ]);
    a
}

/// The manifest as YAML documents separated by `---`.
pub fn manifest(spec: &JobSpec) -> Result<String, K8sError> {
    if spec.segments == 0 {
        return Err(K8sError("N must be at least 1, e.g. --k8s-job 4".into()));
    }
    let mut data: BTreeMap<String, String> = BTreeMap::new();
    for (name, text) in &spec.files {
        data.insert(name.clone(), text.clone());
    }
    if let Some(t) = &spec.targets {
        data.insert("powertune.toml".into(), t.clone());
    }
    let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_CONFIGMAP_BYTES {
        return Err(K8sError(format!(
            "the plan and its data files are {size} bytes, over the {MAX_CONFIGMAP_BYTES} a ConfigMap may hold; shrink the data files"
        )));
    }
    let labels = |role: &str| -> BTreeMap<String, String> {
        [
            ("app.kubernetes.io/name", "powertune".to_string()),
            ("app.kubernetes.io/component", role.to_string()),
            ("powertune.dev/run", spec.name.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    let meta = |name: String, role: &str| Meta {
        name,
        labels: labels(role),
    };
    let config_name = format!("{}-plan", spec.name);
    let claim_name = format!("{}-results", spec.name);
    let volumes = || {
        vec![
            Volume {
                name: "plan",
                config_map: Some(ConfigMapRef {
                    name: config_name.clone(),
                }),
                persistent_volume_claim: None,
            },
            Volume {
                name: "results",
                config_map: None,
                persistent_volume_claim: Some(ClaimRef {
                    claim_name: claim_name.clone(),
                }),
            },
        ]
    };
    let mounts = || {
        vec![
            Mount {
                name: "plan",
                mount_path: CONFIG_DIR,
                read_only: true,
            },
            Mount {
                name: "results",
                mount_path: RESULTS_DIR,
                read_only: false,
            },
        ]
    };
    let job = |name: String, role: &str, indexed: bool, args: Vec<String>| Job {
        api_version: "batch/v1",
        kind: "Job",
        metadata: meta(name.clone(), role),
        spec: JobSpecK8s {
            completion_mode: indexed.then_some("Indexed"),
            completions: if indexed { spec.segments } else { 1 },
            parallelism: if indexed { spec.segments } else { 1 },
            backoff_limit: 0,
            suspend: !indexed,
            template: PodTemplate {
                metadata: meta(name, role),
                spec: PodSpec {
                    restart_policy: "Never",
                    security_context: PodSecurity {
                        run_as_non_root: true,
                        fs_group: 65532,
                    },
                    containers: vec![Container {
                        name: "powertune",
                        image: spec.image.clone(),
                        args,
                        volume_mounts: mounts(),
                    }],
                    volumes: volumes(),
                },
            },
        },
    };
    let docs = [
        to_yaml(&ConfigMap {
            api_version: "v1",
            kind: "ConfigMap",
            metadata: meta(config_name.clone(), "plan"),
            data,
        })?,
        to_yaml(&Claim {
            api_version: "v1",
            kind: "PersistentVolumeClaim",
            metadata: meta(claim_name.clone(), "results"),
            spec: ClaimSpec {
                access_modes: vec!["ReadWriteMany"],
                resources: Resources {
                    requests: [("storage", spec.results_size.clone())]
                        .into_iter()
                        .collect(),
                },
            },
        })?,
        to_yaml(&job(
            spec.name.clone(),
            "segments",
            true,
            pod_args(spec, "$(JOB_COMPLETION_INDEX)"),
        ))?,
        to_yaml(&job(
            format!("{}-merge", spec.name),
            "merge",
            false,
            merge_args(spec),
        ))?,
    ];
    Ok(docs.join("---\n"))
}

fn to_yaml<T: Serialize>(v: &T) -> Result<String, K8sError> {
    serde_yaml::to_string(v).map_err(|e| K8sError(format!("cannot write YAML: {e}")))
}
