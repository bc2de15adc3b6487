//! One step: an HTTP request (with its checks and extractions), a think time, an
//! ActionCable subscription or a raw WebSocket exchange.

use super::context::Ctx;
use super::file::{StatusList, StepFile};
use super::model::{Body, CableStep, Check, CheckKind, Hold, HttpStep, Step, Think, WsStep};
use crate::template::Template;
use powertune_core::config_file::ConfigError;
use powertune_core::EndpointType;
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;

fn parse_think(cx: &Ctx<'_>, t: &str, key: &str) -> Result<Think, ConfigError> {
    if let Some((a, b)) = t.split_once("..") {
        let (a, b) = (cx.dur(a, key)?, cx.dur(b, key)?);
        if b < a {
            return Err(cx.error(
                key,
                format!("the range `{t}` goes backwards, e.g. \"1s..3s\""),
            ));
        }
        Ok(Think::Range(a, b))
    } else {
        Ok(Think::Fixed(cx.dur(t, key)?))
    }
}

/// A template written at `key`.
fn template(cx: &Ctx<'_>, text: &str, key: &str) -> Result<Template, ConfigError> {
    Template::parse(text).map_err(|e| cx.error(key, e))
}

fn headers_tpl(
    cx: &Ctx<'_>,
    h: &BTreeMap<String, String>,
    key: &str,
) -> Result<Vec<(String, Template)>, ConfigError> {
    h.iter()
        .map(|(k, v)| {
            header_value(cx, k, v, key)?;
            Ok((k.clone(), template(cx, v, key)?))
        })
        .collect()
}

/// A header value as written in the file: no CR, LF or other control character
/// (they would end the header and let the value write headers of its own).
fn header_value(cx: &Ctx<'_>, name: &str, v: &str, key: &str) -> Result<(), ConfigError> {
    if crate::template::safe_header_value(v) {
        return Ok(());
    }
    Err(cx.error(
        key,
        format!(
            "the value of `{name}` holds a CR, LF or other control character, which would inject headers; write it on one line, e.g. {name} = \"Bearer abc\""
        ),
    ))
}

/// The step written at `at` (`scenarios.login.steps[0]`).
pub(super) fn step(
    cx: &mut Ctx<'_>,
    s: &Spanned<StepFile>,
    scen_type: EndpointType,
    at: &str,
) -> Result<Step, ConfigError> {
    let f = s.get_ref();
    let key = |k: &str| format!("{at}.{k}");
    let kinds = [
        f.url.is_some(),
        f.sleep.is_some(),
        f.cable.is_some(),
        f.ws.is_some(),
    ];
    let n = kinds.iter().filter(|k| **k).count();
    if n != 1 {
        return Err(cx.error_at(
            Some(s.span().start),
            at,
            format!("has {n} of `url` (HTTP), `sleep`, `cable` and `ws`; a step takes exactly one, e.g. url = \"/health\""),
        ));
    }
    let http_only = f.method.is_some()
        || f.endpoint_type.is_some()
        || !f.headers.is_empty()
        || f.json.is_some()
        || f.body.is_some()
        || !f.extract.is_empty()
        || f.llm.is_some()
        || f.stall_timeout.is_some();
    if let Some(t) = &f.sleep {
        if http_only || f.checks.is_some() || f.name.is_some() {
            return Err(cx.error(
                &key("sleep"),
                "a `sleep` step takes nothing else, e.g. sleep = \"1s..3s\" alone",
            ));
        }
        return parse_think(cx, t, &key("sleep")).map(Step::Think);
    }
    if let Some(c) = &f.cable {
        if http_only || f.checks.is_some() {
            return Err(cx.error(
                &key("cable"),
                "a `cable` step takes url, channel, hold and headers inside `cable`, e.g. cable = { channel = \"MonitoringChannel\", hold = \"30s\" }",
            ));
        }
        let hold = match c.hold.as_deref() {
            None | Some("stage") => Hold::Stage,
            Some(d) => Hold::For(cx.dur(d, &key("cable.hold"))?),
        };
        return Ok(Step::Cable(CableStep {
            url: template(cx, c.url.as_deref().unwrap_or("/cable"), &key("cable.url"))?,
            channel: c
                .channel
                .clone()
                .unwrap_or_else(|| "MonitoringChannel".into()),
            hold,
            headers: headers_tpl(cx, &c.headers, &key("cable.headers"))?,
        }));
    }
    if let Some(w) = &f.ws {
        if http_only || f.checks.is_some() {
            return Err(cx.error(
                &key("ws"),
                "a `ws` step takes url, subprotocol, send, expect, timeout and headers inside `ws`, e.g. ws = { url = \"/ws\", send = [\"ping\"], expect = \"pong\" }",
            ));
        }
        let name = f
            .name
            .clone()
            .unwrap_or_else(|| powertune_core::redact::text(&w.url));
        let check = w.expect.as_ref().map(|e| {
            let c = Check {
                id: cx.n_checks,
                label: format!("{name}: receives `{e}`"),
                kind: CheckKind::BodyContains(e.clone()),
            };
            cx.n_checks += 1;
            c
        });
        return Ok(Step::Ws(WsStep {
            name,
            url: template(cx, &w.url, &key("ws.url"))?,
            subprotocol: w.subprotocol.clone(),
            send: w
                .send
                .iter()
                .map(|t| template(cx, t, &key("ws.send")))
                .collect::<Result<_, _>>()?,
            expect: w.expect.clone(),
            timeout: cx.positive(
                cx.opt_dur(&w.timeout, &key("ws.timeout"), Duration::from_secs(10))?,
                &key("ws.timeout"),
                "timeout = \"10s\"",
            )?,
            headers: headers_tpl(cx, &w.headers, &key("ws.headers"))?,
            check,
        }));
    }
    // HTTP
    let url = f.url.clone().unwrap_or_default();
    let method_text = f
        .method
        .clone()
        .unwrap_or_else(|| "GET".into())
        .to_ascii_uppercase();
    let method = hyper::Method::from_bytes(method_text.as_bytes()).map_err(|_| {
        cx.error(
            &key("method"),
            format!("`{method_text}` is not an HTTP method, e.g. GET or POST"),
        )
    })?;
    // Shown in the summary, the JSON and check labels: a password in the URL is masked.
    let name = f
        .name
        .clone()
        .unwrap_or_else(|| format!("{method} {}", powertune_core::redact::text(&url)));
    let mut headers = Vec::new();
    for (k, v) in &f.headers {
        let hn = hyper::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            cx.error(
                &key("headers"),
                format!("`{k}` is not a header name, e.g. Authorization"),
            )
        })?;
        header_value(cx, k, v, &key("headers"))?;
        headers.push((hn, template(cx, v, &key("headers"))?));
    }
    let body = match (&f.json, &f.body) {
        (Some(_), Some(_)) => return Err(cx.error(
            &key("body"),
            "a step takes `json` or `body`, not both, e.g. json = { email = \"a@example.com\" }",
        )),
        (Some(j), None) => {
            Body::Json(serde_json::to_value(j).map_err(|e| cx.error(&key("json"), e.to_string()))?)
        }
        (None, Some(b)) => Body::Text(template(cx, b, &key("body"))?),
        (None, None) => Body::None,
    };
    let mut extract = Vec::new();
    for (var, ptr) in &f.extract {
        if !(ptr.is_empty() || ptr.starts_with('/')) {
            return Err(cx.error(
                &key("extract"),
                format!("`{var}` = `{ptr}` is not a JSON pointer, e.g. {var} = \"/token\" or \"/data/0/id\""),
            ));
        }
        extract.push((var.clone(), ptr.clone()));
    }
    let mut checks = Vec::new();
    let mut add = |cx: &mut Ctx<'_>, label: String, kind: CheckKind| {
        checks.push(Check {
            id: cx.n_checks,
            label,
            kind,
        });
        cx.n_checks += 1;
    };
    if let Some(c) = &f.checks {
        if let Some(st) = &c.status {
            let v = match st {
                StatusList::One(s) => vec![*s],
                StatusList::Many(v) => v.clone(),
            };
            let shown: Vec<String> = v.iter().map(u16::to_string).collect();
            add(
                cx,
                format!("{name}: status {}", shown.join("|")),
                CheckKind::Status(v),
            );
        }
        if let Some(b) = &c.body_contains {
            add(
                cx,
                format!("{name}: body contains `{b}`"),
                CheckKind::BodyContains(b.clone()),
            );
        }
        for (ptr, val) in &c.json {
            if !(ptr.is_empty() || ptr.starts_with('/')) {
                return Err(cx.error(
                    &key("checks.json"),
                    format!("`{ptr}` is not a JSON pointer, e.g. \"/status\""),
                ));
            }
            let jv = serde_json::to_value(val)
                .map_err(|e| cx.error(&key("checks.json"), e.to_string()))?;
            add(
                cx,
                format!("{name}: {ptr} == {jv}"),
                CheckKind::JsonEquals(ptr.clone(), jv),
            );
        }
        if let Some(d) = &c.duration_below {
            let d = cx.dur(d, &key("checks.duration_below"))?;
            add(
                cx,
                format!("{name}: duration < {}", powertune_core::units::duration(d)),
                CheckKind::DurationBelow(d),
            );
        }
    }
    let llm = llm_step(cx, f, &key)?;
    let series = cx.n_series;
    cx.n_series += 1;
    Ok(Step::Http(HttpStep {
        series,
        name,
        method,
        url: template(cx, &url, &key("url"))?,
        url_text: url.clone(),
        endpoint_type: match &f.endpoint_type {
            Some(t) => t
                .parse()
                .map_err(|e: String| cx.error(&key("endpoint_type"), e))?,
            // an LLM call is judged on the runbook's LLM-call row
            None if llm.is_some() => EndpointType::AiLlm,
            None => scen_type,
        },
        headers,
        body,
        extract,
        checks,
        llm,
    }))
}

/// `llm = "openai"` and its `stall_timeout`.
fn llm_step(
    cx: &Ctx<'_>,
    f: &StepFile,
    key: &dyn Fn(&str) -> String,
) -> Result<Option<crate::llm::LlmStep>, ConfigError> {
    let Some(name) = &f.llm else {
        if f.stall_timeout.is_some() {
            return Err(cx.error(
                &key("stall_timeout"),
                "`stall_timeout` applies to LLM steps only; add llm = \"openai\" (or anthropic, ollama)",
            ));
        }
        return Ok(None);
    };
    let dialect = crate::llm::LlmStep::dialect(name).ok_or_else(|| {
        cx.error(
            &key("llm"),
            format!("`{name}` is not an LLM dialect (expected openai, anthropic or ollama, e.g. llm = \"openai\")"),
        )
    })?;
    if f.body.is_some() {
        return Err(cx.error(
            &key("body"),
            "an LLM step sends its request as `json` (the stream flag is read from it), e.g. json = { model = \"gpt-4o-mini\", stream = true, messages = [{ role = \"user\", content = \"hi\" }] }",
        ));
    }
    let k = key("stall_timeout");
    let stall_timeout = cx.positive(
        cx.opt_dur(&f.stall_timeout, &k, crate::llm::DEFAULT_STALL)?,
        &k,
        "stall_timeout = \"30s\"",
    )?;
    Ok(Some(crate::llm::LlmStep {
        dialect,
        stall_timeout,
    }))
}
