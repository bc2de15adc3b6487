//! One step: an HTTP request (with its checks and extractions), a think time, an
//! ActionCable subscription or a raw WebSocket exchange.

use super::context::{dur, opt_dur, Ctx};
use super::file::{StatusList, StepFile};
use super::model::{Body, CableStep, Check, CheckKind, Hold, HttpStep, Step, Think, WsStep};
use crate::template::Template;
use powertune_core::EndpointType;
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;

fn parse_think(t: &str) -> Result<Think, String> {
    if let Some((a, b)) = t.split_once("..") {
        let (a, b) = (dur(a, "sleep")?, dur(b, "sleep")?);
        if b < a {
            return Err(format!(
                "sleep range `{t}` goes backwards (expected e.g. \"1s..3s\")"
            ));
        }
        Ok(Think::Range(a, b))
    } else {
        Ok(Think::Fixed(dur(t, "sleep")?))
    }
}

fn headers_tpl(h: &BTreeMap<String, String>) -> Result<Vec<(String, Template)>, String> {
    h.iter()
        .map(|(k, v)| Ok((k.clone(), Template::parse(v)?)))
        .collect()
}

pub(super) fn step(
    cx: &mut Ctx<'_>,
    s: &Spanned<StepFile>,
    scen_type: EndpointType,
) -> Result<Step, String> {
    let f = s.get_ref();
    let kinds = [
        f.url.is_some(),
        f.sleep.is_some(),
        f.cable.is_some(),
        f.ws.is_some(),
    ];
    let n = kinds.iter().filter(|k| **k).count();
    if n != 1 {
        return Err(format!(
            "step at line {} must have exactly one of `url` (HTTP), `sleep`, `cable` or `ws`",
            powertune_core::targets::line_col(cx.text, s.span().start).0
        ));
    }
    let http_only = f.method.is_some()
        || f.endpoint_type.is_some()
        || !f.headers.is_empty()
        || f.json.is_some()
        || f.body.is_some()
        || !f.extract.is_empty();
    if let Some(t) = &f.sleep {
        if http_only || f.checks.is_some() || f.name.is_some() {
            return Err("a `sleep` step takes nothing else".into());
        }
        return parse_think(t).map(Step::Think);
    }
    if let Some(c) = &f.cable {
        if http_only || f.checks.is_some() {
            return Err(
                "a `cable` step takes url, channel, hold and headers inside `cable`".into(),
            );
        }
        let hold = match c.hold.as_deref() {
            None | Some("stage") => Hold::Stage,
            Some(d) => Hold::For(dur(d, "cable.hold")?),
        };
        return Ok(Step::Cable(CableStep {
            url: Template::parse(c.url.as_deref().unwrap_or("/cable"))?,
            channel: c
                .channel
                .clone()
                .unwrap_or_else(|| "MonitoringChannel".into()),
            hold,
            headers: headers_tpl(&c.headers)?,
        }));
    }
    if let Some(w) = &f.ws {
        if http_only || f.checks.is_some() {
            return Err(
                "a `ws` step takes url, subprotocol, send, expect, timeout and headers inside `ws`"
                    .into(),
            );
        }
        let name = f.name.clone().unwrap_or_else(|| w.url.clone());
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
            url: Template::parse(&w.url)?,
            subprotocol: w.subprotocol.clone(),
            send: w
                .send
                .iter()
                .map(|t| Template::parse(t))
                .collect::<Result<_, _>>()?,
            expect: w.expect.clone(),
            timeout: opt_dur(&w.timeout, "ws.timeout", Duration::from_secs(10))?,
            headers: headers_tpl(&w.headers)?,
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
    let method = hyper::Method::from_bytes(method_text.as_bytes())
        .map_err(|_| format!("bad method `{method_text}` (expected e.g. GET or POST)"))?;
    let name = f.name.clone().unwrap_or_else(|| format!("{method} {url}"));
    let mut headers = Vec::new();
    for (k, v) in &f.headers {
        let hn = hyper::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("bad header name `{k}` (expected e.g. Authorization)"))?;
        headers.push((hn, Template::parse(v)?));
    }
    let body = match (&f.json, &f.body) {
        (Some(_), Some(_)) => return Err("a step takes `json` or `body`, not both".into()),
        (Some(j), None) => Body::Json(serde_json::to_value(j).map_err(|e| format!("`json`: {e}"))?),
        (None, Some(b)) => Body::Text(Template::parse(b)?),
        (None, None) => Body::None,
    };
    let mut extract = Vec::new();
    for (var, ptr) in &f.extract {
        if !(ptr.is_empty() || ptr.starts_with('/')) {
            return Err(format!(
                "extract `{var}` = `{ptr}` is not a JSON pointer (expected e.g. \"/token\" or \"/data/0/id\")"
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
                return Err(format!(
                    "checks.json key `{ptr}` is not a JSON pointer (expected e.g. \"/status\")"
                ));
            }
            let jv = serde_json::to_value(val).map_err(|e| format!("checks.json: {e}"))?;
            add(
                cx,
                format!("{name}: {ptr} == {jv}"),
                CheckKind::JsonEquals(ptr.clone(), jv),
            );
        }
        if let Some(d) = &c.duration_below {
            let d = dur(d, "checks.duration_below")?;
            add(
                cx,
                format!("{name}: duration < {}", powertune_core::duration::format(d)),
                CheckKind::DurationBelow(d),
            );
        }
    }
    let series = cx.n_series;
    cx.n_series += 1;
    Ok(Step::Http(HttpStep {
        series,
        name,
        method,
        url: Template::parse(&url)?,
        url_text: url.clone(),
        endpoint_type: match &f.endpoint_type {
            Some(t) => t.parse()?,
            None => scen_type,
        },
        headers,
        body,
        extract,
        checks,
    }))
}
