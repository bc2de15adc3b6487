//! Scenario files (`powertune load FILE`): `powertune_load::Plan::from_toml_str`,
//! the TOML pass and the validation of every scenario, step and threshold.

use powertune_load::Plan;
use proptest::prelude::*;

const TARGET: &str = "scenario_toml";

static TOKENS: &[&[u8]] = &[
    b"[scenarios.x]\n",
    b"[[scenarios.x.steps]]\n",
    b"[[scenarios.auth_burst.steps]]\nurl = \"/y\"\n",
    b"[thresholds]\n",
    b"[options]\n",
    b"users = ",
    b"duration = ",
    b"ramp_up = ",
    b"rate = ",
    b"executor = \"ramping-arrival-rate\"\n",
    b"executor = \"constant-vus\"\n",
    b"stages = [{ duration = \"1s\", target = 5 }]\n",
    b"sleep = \"1s..0s\"\n",
    b"\"0s\"",
    b"\"1ns\"",
    b"\"18446744073709551615s\"",
    b"\"1e308ms\"",
    b"\"-1s\"",
    b"\"p(95)<\"",
    b"{{",
    b"}}",
    b"{{__VU}}",
    b"= [",
    b"= {",
    b"'''",
    b"\"\"\"",
];

pub fn check(input: &[u8]) {
    let text = super::text(input);
    if let Err(e) = Plan::from_toml_str(&text, "fuzz.toml") {
        let msg = e.to_string();
        assert!(msg.contains("fuzz.toml"), "the error names no file: {msg}");
        assert!(!msg.contains('\n') || msg.lines().count() < 50, "{msg}");
    }
}

#[test]
fn corpus_replays_cleanly() {
    super::replay(TARGET, 5, check);
}

proptest! {
    #![proptest_config(powertune_fuzz::config(6000))]

    #[test]
    fn mutated_corpus_never_panics(input in powertune_fuzz::mutated(super::seeds(TARGET), TOKENS)) {
        check(&input);
    }

    /// A valid scenario whose numbers and durations are any value.
    #[test]
    fn any_numbers_are_accepted_or_refused_cleanly(
        users in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), any::<f64>().prop_map(|f| format!("{f:?}")), Just("18446744073709551616".to_string())],
        duration in prop_oneof!["[0-9]{1,25}(ns|us|ms|s|m|h|d)", "[0-9]{1,3}\\.[0-9]{1,3}[smh]", "\\PC{0,6}"],
        ramp in "[0-9]{1,22}(ms|s|m|h)",
        rate in any::<f64>(),
        vus in any::<i64>(),
        sleep in "[0-9]{1,20}(ms|s)(\\.\\.[0-9]{1,20}(ms|s))?",
    ) {
        let text = format!(
            "[thresholds]\nhttp_req_duration = \"p(95)<{rate:?}\"\n\
             [scenarios.a]\nendpoint_type = \"auth\"\nusers = {users}\nduration = \"{duration}\"\nramp_up = \"{ramp}\"\n\
             [[scenarios.a.steps]]\nurl = \"/x\"\n[[scenarios.a.steps]]\nsleep = \"{sleep}\"\n\
             [scenarios.b]\nendpoint_type = \"read_crud\"\nexecutor = \"constant-arrival-rate\"\nrate = {rate:?}\n\
             duration = \"{ramp}\"\npre_allocated_vus = {vus}\nmax_vus = {vus}\n[[scenarios.b.steps]]\nurl = \"/y\"\n"
        );
        check(text.as_bytes());
    }
}
