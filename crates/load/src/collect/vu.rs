//! One virtual user: its connection and variables, and how it runs each kind of step
//! (HTTP request with checks and extractions, think time, cable or WebSocket session),
//! recording every outcome into the run's metric shards.

use super::state::{stopped, Shared};
use crate::http::{Origin, Request, VuClient};
use crate::metrics::{ErrorKind, RequestSample};
use crate::plan::{Body, CheckKind, DataMode, Hold, HttpStep, Step, Think};
use crate::template::{render_json, safe_header_value, Template};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// One virtual user: its connection and variables.
pub(crate) struct Vu {
    shared: Arc<Shared>,
    scen: usize,
    id: u64,
    pub client: VuClient,
    vars: HashMap<String, String>,
    iter: u64,
}

impl Vu {
    pub fn new(shared: Arc<Shared>, scen: usize, id: u64) -> Vu {
        let client = VuClient::new(shared.client.clone());
        let mut vars = HashMap::new();
        vars.insert("__VU".to_string(), (id + 1).to_string());
        if let Some(d) = shared
            .plan
            .scenarios
            .get(scen)
            .and_then(|s| s.data.as_ref())
        {
            if d.mode == DataMode::PerVu {
                let row = &d.rows[(id as usize) % d.rows.len()];
                for (c, v) in d.columns.iter().zip(row) {
                    vars.insert(c.clone(), v.clone());
                }
            }
        }
        Vu {
            shared,
            scen,
            id,
            client,
            vars,
            iter: 0,
        }
    }

    pub async fn run_setup(&mut self, stop: &watch::Receiver<bool>) {
        let shared = self.shared.clone();
        let Some(sc) = shared.plan.scenarios.get(self.scen) else {
            return;
        };
        for step in &sc.setup {
            self.step(step, Duration::ZERO, stop).await;
        }
    }

    pub async fn iteration(&mut self, lag: Duration, stop: &watch::Receiver<bool>) {
        let shared = self.shared.clone();
        let Some(sc) = shared.plan.scenarios.get(self.scen) else {
            return;
        };
        self.vars
            .insert("__ITER".to_string(), self.iter.to_string());
        if let Some(d) = &sc.data {
            if d.mode == DataMode::PerIteration {
                let n = (self.id.wrapping_mul(7919).wrapping_add(self.iter)) as usize;
                let row = &d.rows[n % d.rows.len()];
                for (c, v) in d.columns.iter().zip(row) {
                    self.vars.insert(c.clone(), v.clone());
                }
            }
        }
        self.iter += 1;
        let t0 = Instant::now();
        for step in &sc.steps {
            self.step(step, lag, stop).await;
        }
        let el = t0.elapsed();
        if shared.plan.options.no_vu_connection_reuse {
            self.client.close();
        }
        shared.reg.scenario(self.scen, |m| {
            m.iterations += 1;
            m.iteration_duration.record(el);
        });
    }

    async fn step(&mut self, step: &Step, lag: Duration, stop: &watch::Receiver<bool>) {
        match step {
            // Boxed: a sleeping VU then holds a small future, not the request's.
            Step::Http(h) => Box::pin(self.http(h, lag)).await,
            Step::Think(t) => {
                let d = match *t {
                    Think::Fixed(d) => d,
                    Think::Range(a, b) => {
                        let span = (b - a).as_micros() as u64;
                        a + Duration::from_micros(if span == 0 {
                            0
                        } else {
                            rand::random::<u64>() % span
                        })
                    }
                };
                if self.shared.plan.options.no_vu_connection_reuse {
                    // No connection is held while the VU sleeps.
                    self.client.close();
                } else {
                    self.client.idle();
                }
                tokio::time::sleep(d).await;
            }
            Step::Cable(c) => {
                let Some(url) = self.ws_url(&c.url) else {
                    self.record_ws_without_url();
                    return;
                };
                let headers = self.render_headers(&c.headers);
                let mut stop_rx = stop.clone();
                let hold = async move {
                    match c.hold {
                        Hold::Stage => stopped(&mut stop_rx).await,
                        Hold::For(d) => {
                            tokio::select! {
                                _ = tokio::time::sleep(d) => {}
                                _ = stopped(&mut stop_rx) => {}
                            }
                        }
                    }
                };
                let out = Box::pin(crate::ws::cable_session(
                    &self.shared.client,
                    &url,
                    &headers,
                    &c.channel,
                    hold,
                ))
                .await;
                self.record_ws(&out);
            }
            Step::Ws(w) => {
                let Some(url) = self.ws_url(&w.url) else {
                    self.record_ws_without_url();
                    return;
                };
                let headers = self.render_headers(&w.headers);
                let env = &self.shared.env;
                let send: Vec<String> = w.send.iter().map(|t| t.render(&self.vars, env)).collect();
                let out = Box::pin(crate::ws::raw_session(
                    &self.shared.client,
                    &url,
                    w.subprotocol.as_deref(),
                    &headers,
                    &send,
                    w.expect.as_deref(),
                    w.timeout,
                ))
                .await;
                if let Some(c) = &w.check {
                    self.shared.reg.record_check(c.id, out.expected_seen);
                }
                self.record_ws(&out);
            }
        }
    }

    /// A WebSocket upgrade's headers; with `--trace` a `traceparent` of its own unless
    /// the step sets one.
    fn render_headers(&self, h: &[(String, Template)]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = h
            .iter()
            .map(|(k, t)| (k.clone(), t.render(&self.vars, &self.shared.env)))
            .collect();
        if self.shared.plan.options.trace
            && !out
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(crate::trace::HEADER))
        {
            let ctx = crate::trace::TraceContext::random();
            out.push((crate::trace::HEADER.to_string(), ctx.header()));
        }
        out
    }

    fn ws_url(&self, t: &Template) -> Option<url::Url> {
        let text = t.render(&self.vars, &self.shared.env);
        if text.contains("://") {
            return url::Url::parse(&text).ok();
        }
        let mut u = self.shared.base.clone();
        let scheme = if u.scheme() == "https" { "wss" } else { "ws" };
        u.set_scheme(scheme).ok()?;
        let (path, query) = match text.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (text.clone(), None),
        };
        u.set_path(&format!("{}{}", self.shared.base_path, path));
        u.set_query(query.as_deref());
        Some(u)
    }

    /// A session whose URL did not render to a valid one: counted, and failed.
    fn record_ws_without_url(&self) {
        self.shared.reg.scenario(self.scen, |m| {
            m.ws_sessions += 1;
            m.ws_errors += 1;
        });
    }

    fn record_ws(&self, out: &crate::ws::WsOutcome) {
        self.shared.reg.scenario(self.scen, |m| {
            m.ws_sessions += 1;
            if out.error.is_some() {
                m.ws_errors += 1;
            }
            if let Some(c) = out.connecting {
                m.ws_connecting.record(c);
            }
            if let Some(s) = out.subscribe {
                m.ws_subscribe.record(s);
            }
            if out.connecting.is_some() {
                m.ws_session.record(out.session);
            }
            m.ws_msgs_received += out.msgs_received;
            m.ws_msgs_sent += out.msgs_sent;
            m.ws_broadcasts += out.broadcasts;
        });
    }

    async fn http(&mut self, h: &HttpStep, lag: Duration) {
        let shared: &Shared = &self.shared;
        let env = &shared.env;
        let text = h.url.render(&self.vars, env);
        let parsed;
        let mut auth = shared.base_auth.clone();
        let (origin, path): (&Origin, String) =
            if text.starts_with("http://") || text.starts_with("https://") {
                match url::Url::parse(&text)
                    .map_err(|e| e.to_string())
                    .and_then(|u| Origin::from_url(&u).map(|o| (o, u)))
                {
                    Ok((o, u)) => {
                        parsed = o;
                        auth = crate::http::basic_auth(&u);
                        let mut p = u.path().to_string();
                        if let Some(q) = u.query() {
                            p.push('?');
                            p.push_str(q);
                        }
                        (&parsed, p)
                    }
                    Err(_) => {
                        shared.reg.record_request(&RequestSample {
                            scenario: self.scen,
                            series: h.series,
                            status: None,
                            error: Some(ErrorKind::Protocol),
                            failed: true,
                            timings: Default::default(),
                            lag,
                            sent: 0,
                            received: 0,
                            proto: None,
                            trace: None,
                        });
                        return;
                    }
                }
            } else if text.starts_with('/') {
                (&shared.origin, format!("{}{}", shared.base_path, text))
            } else {
                (&shared.origin, format!("{}/{}", shared.base_path, text))
            };
        let mut headers: Vec<(hyper::header::HeaderName, String)> = h
            .headers
            .iter()
            .map(|(k, t)| (k.clone(), t.render(&self.vars, env)))
            .collect();
        // User info in the URL is sent as Basic authentication (as curl and k6 do),
        // unless the step sets its own Authorization header.
        if let Some(a) = auth {
            if !headers
                .iter()
                .any(|(k, _)| *k == hyper::header::AUTHORIZATION)
            {
                headers.push((hyper::header::AUTHORIZATION, a));
            }
        }
        // --trace: a traceparent of its own, unless the step sets one (then the request
        // is not among the traced ones).
        let traceparent = hyper::header::HeaderName::from_static(crate::trace::HEADER);
        let trace = (shared.plan.options.trace && !headers.iter().any(|(k, _)| *k == traceparent))
            .then(crate::trace::TraceContext::random);
        if let Some(ctx) = trace {
            headers.push((traceparent, ctx.header()));
        }
        // A variable (a CSV cell, --env, a value extracted from a response) may hold
        // CR or LF: such a request is never sent (it would smuggle headers or a second
        // request), it is counted as a failed request of kind `invalid`.
        if headers.iter().any(|(_, v)| !safe_header_value(v)) || !safe_target(&path) {
            shared.reg.record_request(&RequestSample {
                scenario: self.scen,
                series: h.series,
                status: None,
                error: Some(ErrorKind::Invalid),
                failed: true,
                timings: Default::default(),
                lag,
                sent: 0,
                received: 0,
                proto: None,
                trace: None,
            });
            for c in &h.checks {
                shared.reg.record_check(c.id, false);
            }
            return;
        }
        let mut streams = h.llm.is_some_and(|l| l.streams(None));
        let (body, ct) = match &h.body {
            Body::None => (Bytes::new(), None),
            Body::Json(v) => {
                let j = render_json(v, &self.vars, env);
                streams = h.llm.is_some_and(|l| l.streams(Some(&j)));
                (
                    Bytes::from(serde_json::to_vec(&j).unwrap_or_default()),
                    Some("application/json"),
                )
            }
            Body::Text(t) => (Bytes::from(t.render(&self.vars, env)), None),
        };
        let mut probe = h
            .llm
            .map(|l| crate::llm::Probe::new(&shared.reg, h.series, l, streams));
        let keep_body = !h.extract.is_empty()
            || h.checks.iter().any(|c| {
                matches!(
                    c.kind,
                    CheckKind::BodyContains(_) | CheckKind::JsonEquals(..)
                )
            });
        // Dropped unfinished (the scenario's graceful stop ran out, or the run was
        // stopped at once), the guard counts the request as interrupted.
        let mut in_flight = InFlight {
            shared,
            scenario: self.scen,
            series: h.series,
            lag,
            armed: true,
        };
        let resp = self
            .client
            .send(Request {
                method: h.method.clone(),
                origin,
                path: &path,
                headers: &headers,
                body,
                content_type: ct,
                keep_body,
                llm: probe.as_mut(),
            })
            .await;
        in_flight.armed = false;
        // a streamed answer that broke after its 2xx status failed too
        let llm_failed = probe.as_ref().is_some_and(|p| p.failed());
        if let Some(p) = probe {
            p.record();
        }
        let failed = llm_failed || resp.error.is_some() || !matches!(resp.status, Some(200..=399));
        shared.reg.record_request(&RequestSample {
            scenario: self.scen,
            series: h.series,
            status: resp.status,
            error: resp.error.as_ref().map(|e| e.0),
            failed,
            timings: resp.timings,
            lag,
            sent: resp.sent,
            received: resp.received,
            proto: resp.proto,
            trace,
        });
        let json = if keep_body && resp.status.is_some() {
            serde_json::from_slice::<serde_json::Value>(&resp.body).ok()
        } else {
            None
        };
        for c in &h.checks {
            let ok = match &c.kind {
                CheckKind::Status(list) => resp.status.is_some_and(|s| list.contains(&s)),
                CheckKind::BodyContains(t) => {
                    resp.status.is_some() && memfind(&resp.body, t.as_bytes())
                }
                CheckKind::JsonEquals(ptr, want) => json
                    .as_ref()
                    .and_then(|j| j.pointer(ptr))
                    .is_some_and(|v| v == want),
                CheckKind::DurationBelow(d) => resp.status.is_some() && resp.timings.duration < *d,
            };
            shared.reg.record_check(c.id, ok);
        }
        if let Some(j) = &json {
            for (var, ptr) in &h.extract {
                if let Some(v) = j.pointer(ptr) {
                    let s = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    self.vars.insert(var.clone(), s);
                }
            }
        }
    }
}

/// A request in flight: counted as interrupted if its future is dropped before the
/// response is recorded.
struct InFlight<'a> {
    shared: &'a Shared,
    scenario: usize,
    series: usize,
    lag: Duration,
    armed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.reg.record_request(&RequestSample {
                scenario: self.scenario,
                series: self.series,
                status: None,
                error: Some(ErrorKind::Interrupted),
                failed: true,
                timings: Default::default(),
                lag: self.lag,
                sent: 0,
                received: 0,
                proto: None,
                trace: None,
            });
        }
    }
}

/// A request target that may be written on the wire: no whitespace or control
/// character (they would end the request line).
fn safe_target(p: &str) -> bool {
    !p.bytes().any(|b| b <= 0x20 || b == 0x7f)
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}
