use super::*;
use powertune_core::EndpointType;
use std::time::Duration;

const GOOD: &str = r#"
[thresholds]
http_req_duration = ["p(95)<2000", "p(99)<5000"]
http_req_failed = { threshold = "rate<0.01", abort_on_fail = true, delay_abort_eval = "10s" }

[scenarios.auth_burst]
endpoint_type = "Authentication"
users = 50
duration = "5m"
ramp_up = "1m"

[[scenarios.auth_burst.steps]]
name = "login"
method = "POST"
url = "/api/v1/auth/login"
json = { email = "u{{n}}@example.com", password = "demo" }
extract = { token = "/token" }
checks = { status = 200, json = { "/ok" = true }, duration_below = "500ms" }

[[scenarios.auth_burst.steps]]
sleep = "1s..2s"

[scenarios.rate]
endpoint_type = "read_crud"
executor = "constant-arrival-rate"
rate = 100
duration = "10s"
pre_allocated_vus = 5
max_vus = 20
start_time = "1s"

[[scenarios.rate.steps]]
url = "/x"
"#;

#[test]
fn reads_the_runbook_shorthand_as_stages() {
    let p = Plan::from_toml_str(GOOD, "good.toml").unwrap();
    assert_eq!(p.scenarios.len(), 2);
    let s = &p.scenarios[0];
    assert_eq!(s.name, "auth_burst");
    assert_eq!(
        s.executor,
        Executor::RampingVus {
            start_vus: 0,
            stages: vec![
                Stage {
                    duration: Duration::from_secs(60),
                    target: 50.0
                },
                Stage {
                    duration: Duration::from_secs(300),
                    target: 50.0
                },
                Stage {
                    duration: Duration::from_secs(60),
                    target: 0.0
                },
            ]
        }
    );
    assert_eq!(s.checks().len(), 3);
    assert_eq!(p.thresholds.len(), 3);
    assert!(p.thresholds.iter().any(|t| t.abort_on_fail));
    assert_eq!(p.n_series, 2);
    assert_eq!(p.total_duration(), Duration::from_secs(420));
}

#[test]
fn scales_time() {
    let mut p = Plan::from_toml_str(GOOD, "good.toml").unwrap();
    p.scale_time(0.1);
    assert_eq!(p.scenarios[0].executor.duration(), Duration::from_secs(42));
    assert_eq!(p.scenarios[1].start_time, Duration::from_millis(100));
}

fn err(text: &str) -> String {
    Plan::from_toml_str(text, "f.toml").unwrap_err().to_string()
}

const ONE: &str = "[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n";

#[test]
fn errors_name_file_line_column_and_key() {
    // FILE:LINE:COL: KEY: WHY, as every configuration error reads.
    let e = err("[scenarios.a]\nendpoint_type = \"auth\"\nuserz = 3\n");
    assert!(
        e.starts_with("f.toml:3:1: scenarios.a.userz: unknown field `userz`"),
        "{e}"
    );
    let e = err("[scenarios.a]\nendpoint_type = \"graphql\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/\"\n");
    assert!(
        e.starts_with("f.toml:2:1: scenarios.a.endpoint_type: unknown endpoint type `graphql`"),
        "{e}"
    );
    let e = err("[scenarios.a]\nendpoint_type = \"auth\"\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\nrate = 5\n[[scenarios.a.steps]]\nurl = \"/\"\n");
    assert!(
        e.starts_with("f.toml:6:1: scenarios.a.rate: does not apply to executor constant-vus; it takes vus, duration"),
        "{e}"
    );
    let e = err("[thresholds]\nhttp_req_duration = \"p(95)<abc\"\n[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/\"\n");
    assert!(
        e.starts_with("f.toml:2:21: thresholds.http_req_duration: bad threshold"),
        "{e}"
    );
    assert!(e.contains("column 7"), "{e}");
    let e = err("[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"5\"\n[[scenarios.a.steps]]\nurl = \"/\"\n");
    assert!(
        e.starts_with("f.toml:4:1: scenarios.a.duration: duration `5` has no unit"),
        "{e}"
    );
    // Durations are strings; a bare number never was one, and the error says how.
    let e = err("[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = 30\n[[scenarios.a.steps]]\nurl = \"/\"\n");
    assert!(
        e.starts_with("f.toml:4:12: scenarios.a.duration: invalid type"),
        "{e}"
    );
    assert!(
        e.ends_with("e.g. \"30s\" (durations are strings with a unit)"),
        "{e}"
    );
    let e = err(&format!("{ONE}[[scenarios.a.steps]]\nurl = \"/\"\n[[scenarios.a.steps]]\nurl = \"/\"\nsleep = \"1s\"\n"));
    assert!(e.starts_with("f.toml:7:"), "{e}");
    assert!(e.contains(": scenarios.a.steps[1]: has 2 of"), "{e}");
    assert!(e.contains("exactly one, e.g. url = \"/health\""), "{e}");
    assert_eq!(
        err(""),
        "f.toml: scenarios: none in the file, e.g. a [scenarios.login] table with endpoint_type, an executor and [[scenarios.login.steps]]"
    );
    let e = err("[thresholds]\nhttp_req_waiting = \"p(95)<1\"\n\"http_req_waiting{name:x}\" = \"p(95)<1\"\n[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/\"\n");
    assert!(e.starts_with("f.toml:3:"), "{e}");
    assert!(e.contains(": thresholds.http_req_waiting{name:x}: "), "{e}");
    assert!(e.contains("per scenario"), "{e}");
}

#[test]
fn errors_point_at_the_key_inside_steps_and_stages() {
    let e = err(&format!(
        "{ONE}[[scenarios.a.steps]]\nurl = \"/\"\nmethod = \"GE T\"\n"
    ));
    assert!(
        e.starts_with("f.toml:7:1: scenarios.a.steps[0].method: `GE T` is not an HTTP method, e.g. GET or POST"),
        "{e}"
    );
    let e = err(&format!(
        "{ONE}[[scenarios.a.steps]]\nurl = \"/\"\nchecks = {{ duration_below = \"soon\" }}\n"
    ));
    assert!(
        e.contains(": scenarios.a.steps[0].checks.duration_below: bad duration `soon`"),
        "{e}"
    );
    assert!(e.starts_with("f.toml:7:"), "{e}");
    let e = err("[scenarios.r]\nendpoint_type = \"auth\"\nexecutor = \"ramping-vus\"\nstages = [{ duration = \"1s\", target = 5 }, { duration = \"1s\", target = -1 }]\n[[scenarios.r.steps]]\nurl = \"/\"\n");
    assert!(
        e.starts_with("f.toml:4:")
            && e.contains(": scenarios.r.stages[1].target: -1 must be 0 or more and at most 1000000, e.g. target = 50"),
        "{e}"
    );
    // A key that is not written is placed at the nearest one that is.
    let e = err("[scenarios.a]\nendpoint_type = \"auth\"\nexecutor = \"constant-arrival-rate\"\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/\"\n");
    assert!(
        e.starts_with("f.toml:1:")
            && e.contains(
                ": scenarios.a.rate: is required for constant-arrival-rate, e.g. rate = 100"
            ),
        "{e}"
    );
    let e = err("[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n");
    assert!(
        e.contains(": scenarios.a.steps: missing, e.g. a [[scenarios.a.steps]] table"),
        "{e}"
    );
    let e = err(&format!(
        "[options]\nhttp = \"3\"\n{ONE}[[scenarios.a.steps]]\nurl = \"/\"\n"
    ));
    assert!(
        e.starts_with("f.toml:2:1: options.http: `3` is not an HTTP version"),
        "{e}"
    );
    // A file that cannot be read names itself and a right example.
    let e = Plan::from_path(std::path::Path::new("/nonexistent/plan.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("/nonexistent/plan.toml: cannot read"), "{e}");
    assert!(e.ends_with("e.g. examples/runbook.toml"), "{e}");
}

#[test]
fn connection_and_tls_options() {
    let body = "[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/\"\n";
    let p = Plan::from_toml_str(body, "f.toml").unwrap();
    assert!(!p.options.no_vu_connection_reuse && !p.options.insecure_skip_tls_verify);
    assert_eq!(p.options.ca_cert, None);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("plan.toml");
    std::fs::write(
            &f,
            format!("[options]\nno_vu_connection_reuse = true\nca_cert = \"ca.pem\"\ninsecure_skip_tls_verify = true\n{body}"),
        )
        .unwrap();
    let p = Plan::from_path(&f).unwrap();
    assert!(p.options.no_vu_connection_reuse && p.options.insecure_skip_tls_verify);
    // Relative to the scenario file, like CSV data files.
    assert_eq!(p.options.ca_cert, Some(dir.path().join("ca.pem")));
    let e = err(&format!(
        "[options]\nno_vu_connection_reuse = \"yes\"\n{body}"
    ));
    assert!(e.starts_with("f.toml:2:"), "{e}");
}

#[test]
fn one_off_builds_open_and_closed_plans() {
    let mut o = OneOff {
        url: "/health".into(),
        method: "GET".into(),
        headers: vec![("X-A".into(), "b \"q\"".into())],
        body: None,
        vus: 3,
        duration: Duration::from_millis(1500),
        rate: None,
        endpoint_type: EndpointType::ReadCrud,
    };
    let p = Plan::one_off(&o).unwrap();
    assert_eq!(
        p.scenarios[0].executor,
        Executor::ConstantVus {
            vus: 3,
            duration: Duration::from_millis(1500)
        }
    );
    o.rate = Some(50.0);
    let p = Plan::one_off(&o).unwrap();
    assert_eq!(p.scenarios[0].executor.name(), "constant-arrival-rate");
    // Errors name the flag, not the plan generated from the flags.
    o.method = "GE T".into();
    let e = Plan::one_off(&o).unwrap_err().to_string();
    assert_eq!(
        e,
        "--method: `GE T` is not an HTTP method, e.g. GET or POST"
    );
}

#[test]
fn lists_the_variables_its_templates_use() {
    let p = Plan::from_toml_str(
        r#"
[scenarios.a]
endpoint_type = "auth"
users = 1
duration = "1s"
[[scenarios.a.setup]]
url = "/{{TENANT}}/login"
json = { user = "{{USER}}", n = [1, "x{{N}}"] }
[[scenarios.a.steps]]
url = "/items"
headers = { Authorization = "Bearer {{token}}" }
body = "{{BODY}}"
[[scenarios.a.steps]]
ws = { url = "/ws/{{ROOM}}", send = ["hi {{NAME}}"] }
[[scenarios.a.steps]]
cable = { url = "/cable?t={{CABLE}}" }
"#,
        "v.toml",
    )
    .unwrap();
    let v: Vec<String> = p.variables().into_iter().collect();
    assert_eq!(
        v,
        ["BODY", "CABLE", "N", "NAME", "ROOM", "TENANT", "USER", "token"]
    );
}

#[test]
fn the_shipped_example_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/runbook.toml");
    let p = Plan::from_path(&path).unwrap();
    assert!(!p.scenarios.is_empty());
}

/// A scenario table with `body` as its executor keys, and one step.
fn scen(body: &str) -> String {
    format!("[scenarios.x]\nendpoint_type = \"read_crud\"\n{body}\n[[scenarios.x.steps]]\nurl = \"/\"\n")
}

#[test]
fn extreme_numbers_are_refused_at_their_key_and_never_panic() {
    let cases: &[(&str, &str)] = &[
        ("executor = \"constant-vus\"\nvus = 0\nduration = \"1s\"", "scenarios.x.vus"),
        ("executor = \"constant-vus\"\nvus = -1\nduration = \"1s\"", "scenarios.x.vus"),
        ("executor = \"constant-vus\"\nvus = 1e20\nduration = \"1s\"", "scenarios.x.vus"),
        ("executor = \"constant-vus\"\nvus = 18446744073709551615\nduration = \"1s\"", "scenarios.x"),
        ("executor = \"constant-vus\"\nvus = 2000000\nduration = \"1s\"", "scenarios.x.vus"),
        ("executor = \"constant-vus\"\nvus = 1\nduration = \"0s\"", "scenarios.x.duration"),
        ("executor = \"constant-vus\"\nvus = 1\nduration = \"-1s\"", "scenarios.x.duration"),
        ("executor = \"constant-vus\"\nvus = 1\nduration = \"999999999h\"", "scenarios.x.duration"),
        ("executor = \"constant-vus\"\nvus = 1\nduration = \"18446744073709551615s\"", "scenarios.x.duration"),
        ("executor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\ngraceful_stop = \"999999999h\"", "scenarios.x.graceful_stop"),
        ("executor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\nstart_time = \"999999999h\"", "scenarios.x.start_time"),
        ("users = 0\nduration = \"1s\"", "scenarios.x.users"),
        ("users = 5\nduration = \"0s\"", "scenarios.x.duration"),
        ("users = 5\nduration = \"1s\"\nramp_up = \"999999999h\"", "scenarios.x.ramp_up"),
        ("executor = \"constant-arrival-rate\"\nrate = 0\nduration = \"1s\"", "scenarios.x.rate"),
        ("executor = \"constant-arrival-rate\"\nrate = -5\nduration = \"1s\"", "scenarios.x.rate"),
        ("executor = \"constant-arrival-rate\"\nrate = 1e20\nduration = \"1s\"", "scenarios.x.rate"),
        ("executor = \"constant-arrival-rate\"\nrate = nan\nduration = \"1s\"", "scenarios.x.rate"),
        ("executor = \"constant-arrival-rate\"\nrate = inf\nduration = \"1s\"", "scenarios.x.rate"),
        ("executor = \"constant-arrival-rate\"\nrate = 10\nduration = \"0s\"", "scenarios.x.duration"),
        ("executor = \"constant-arrival-rate\"\nrate = 10\nduration = \"1s\"\ntime_unit = \"0s\"", "scenarios.x.time_unit"),
        ("executor = \"constant-arrival-rate\"\nrate = 10\nduration = \"1s\"\nmax_backlog = -1", "scenarios.x.max_backlog"),
        ("executor = \"constant-arrival-rate\"\nrate = 10\nduration = \"1s\"\nmax_backlog = 9223372036854775807", "scenarios.x.max_backlog"),
        ("executor = \"constant-arrival-rate\"\nrate = 10\nduration = \"1s\"\nmax_vus = 4294967296", "scenarios.x.max_vus"),
        ("executor = \"ramping-arrival-rate\"\nstart_rate = 1e20\nstages = [{ duration = \"1s\", target = 5 }]", "scenarios.x.start_rate"),
        ("executor = \"ramping-arrival-rate\"\nstages = [{ duration = \"1s\", target = 1e20 }]", "scenarios.x.stages[0].target"),
        ("executor = \"ramping-arrival-rate\"\nstages = [{ duration = \"0s\", target = 5 }]", "scenarios.x.stages"),
        ("executor = \"ramping-vus\"\nstages = [{ duration = \"1s\", target = 1e20 }]", "scenarios.x.stages[0].target"),
        ("executor = \"ramping-vus\"\nstages = [{ duration = \"999999999h\", target = 5 }]", "scenarios.x.stages[0].duration"),
        ("executor = \"per-vu-iterations\"\niterations = 0", "scenarios.x.iterations"),
        ("executor = \"shared-iterations\"\niterations = -3", "scenarios.x.iterations"),
        ("executor = \"shared-iterations\"\niterations = 5\nmax_duration = \"0s\"", "scenarios.x.max_duration"),
    ];
    for (body, key) in cases {
        let text = scen(body);
        let e = err(&text);
        assert!(e.starts_with("f.toml:"), "{body}: {e}");
        let (line, col) = {
            let mut it = e.split(':').skip(1);
            (it.next().unwrap(), it.next().unwrap())
        };
        assert!(
            line.parse::<u32>().unwrap() > 0 && col.parse::<u32>().unwrap() > 0,
            "{body}: {e}"
        );
        assert!(
            e.contains(&format!(" {key}")),
            "{body}: expected {key}: {e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
    // The run's options too.
    for (opt, key) in [
        ("connect_timeout = \"0s\"", "options.connect_timeout"),
        ("request_timeout = \"0s\"", "options.request_timeout"),
        (
            "request_timeout = \"999999999h\"",
            "options.request_timeout",
        ),
    ] {
        let e = err(&format!(
            "[options]\n{opt}\n{}",
            scen("users = 1\nduration = \"1s\"")
        ));
        assert!(e.starts_with("f.toml:2:"), "{e}");
        assert!(e.contains(key), "{e}");
    }
    // Within the bounds, the longest plan scales and sums without overflow.
    let mut p = Plan::from_toml_str(
        &scen("executor = \"ramping-vus\"\nstart_vus = 1\nstages = [{ duration = \"30d\", target = 5 }, { duration = \"30d\", target = 5 }]"),
        "f.toml",
    )
    .unwrap();
    p.scale_time(1000.0);
    p.scale_time(f64::MAX);
    assert_eq!(p.total_duration(), Duration::MAX);
    p.override_executors(Some(1_000_000), Some(Duration::MAX), Some(1e7));
    assert_eq!(p.scenarios[0].executor.max_vus(), 1_000_000);
}

#[test]
fn a_threshold_on_a_tag_matching_nothing_is_refused_from_a_file_and_a_flag() {
    let body = "[[scenarios.login.steps]]\nname = \"post\"\nmethod = \"POST\"\nurl = \"/login\"\n";
    let head =
        "[scenarios.login]\nendpoint_type = \"authentication\"\nusers = 1\nduration = \"1s\"\n";
    for (tagged, what) in [
        ("http_req_duration{scenario:nosuch}", "scenario:nosuch"),
        ("http_req_duration{name:nosuch}", "name:nosuch"),
        ("http_req_duration{method:DELETE}", "method:DELETE"),
        ("http_req_duration{url:/nosuch}", "url:/nosuch"),
        (
            "http_req_duration{endpoint_type:read_crud}",
            "endpoint_type:read_crud",
        ),
    ] {
        let e = err(&format!(
            "[thresholds]\n\"{tagged}\" = \"p(95)<1\"\n{head}{body}"
        ));
        assert!(e.starts_with("f.toml:2:"), "{e}");
        assert!(e.contains(what) && e.contains("matches nothing"), "{e}");
        let mut plan = Plan::from_toml_str(&format!("{head}{body}"), "f.toml").unwrap();
        let flag = powertune_core::threshold::Threshold::parse(tagged, "p(95)<1").unwrap();
        let e = plan.add_threshold(flag).unwrap_err();
        assert!(e.contains(what) && e.contains("matches nothing"), "{e}");
    }
    // Tags that match are kept.
    let mut plan = Plan::from_toml_str(&format!("{head}{body}"), "f.toml").unwrap();
    for ok in [
        "http_req_duration{scenario:login}",
        "http_req_duration{name:post}",
        "http_req_duration{method:post}",
        "http_req_duration{url:/login}",
        "http_req_duration{endpoint_type:authentication}",
    ] {
        let t = powertune_core::threshold::Threshold::parse(ok, "p(95)<1").unwrap();
        plan.add_threshold(t).unwrap();
    }
}
