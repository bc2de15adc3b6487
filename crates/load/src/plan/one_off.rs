//! `powertune load --url`: a one-scenario plan for a single URL.

use super::context::PlanError;
use super::model::{Executor, Plan};
use powertune_core::EndpointType;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct OneOff {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub vus: u32,
    pub duration: Duration,
    /// Requests per second: an open-model (constant-arrival-rate) run when set.
    pub rate: Option<f64>,
    pub endpoint_type: EndpointType,
}

impl Plan {
    /// A one-scenario plan for a single URL (the `ab`/`hey`/`oha` habit).
    pub fn one_off(o: &OneOff) -> Result<Plan, PlanError> {
        let mut toml_text = String::new();
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        toml_text.push_str("[scenarios.oneoff]\n");
        toml_text.push_str(&format!("endpoint_type = {}\n", q(o.endpoint_type.key())));
        match o.rate {
            Some(r) => {
                let vus = o.vus.max(1);
                toml_text.push_str(&format!(
                    "executor = \"constant-arrival-rate\"\nrate = {r}\nduration = {}\npre_allocated_vus = {vus}\nmax_vus = {}\n",
                    q(&powertune_core::duration::format(o.duration)),
                    vus.max(((r * 2.0).ceil() as u32).min(10_000)).max(vus)
                ));
            }
            None => toml_text.push_str(&format!(
                "executor = \"constant-vus\"\nvus = {}\nduration = {}\n",
                o.vus,
                q(&powertune_core::duration::format(o.duration))
            )),
        }
        toml_text
            .push_str("graceful_stop = \"5s\"\n[[scenarios.oneoff.steps]]\nname = \"request\"\n");
        toml_text.push_str(&format!("method = {}\nurl = {}\n", q(&o.method), q(&o.url)));
        if let Some(b) = &o.body {
            toml_text.push_str(&format!("body = {}\n", q(b)));
        }
        if !o.headers.is_empty() {
            toml_text.push_str("[scenarios.oneoff.steps.headers]\n");
            for (k, v) in &o.headers {
                toml_text.push_str(&format!("{} = {}\n", q(k), q(v)));
            }
        }
        // Errors name the flag the value came from, not the generated file.
        let mut plan = Plan::from_toml_str(&toml_text, "--url").map_err(|e| {
            let flag = match e.key.rsplit('.').next() {
                Some("method") => "--method",
                Some("headers") => "--header",
                Some("body") => "--body",
                _ => "--url",
            };
            PlanError {
                path: flag.to_string(),
                line: 0,
                column: 0,
                key: String::new(),
                message: e.message,
            }
        })?;
        // Duration formatting rounds sub-second parts; keep the exact value.
        if let Some(s) = plan.scenarios.first_mut() {
            match &mut s.executor {
                Executor::ConstantVus { duration, .. }
                | Executor::ConstantArrivalRate { duration, .. } => *duration = o.duration,
                _ => {}
            }
        }
        Ok(plan)
    }
}
