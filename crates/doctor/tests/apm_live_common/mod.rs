//! A live `apm serve` started in-process on loopback port 0, and Rails-shaped traces
//! posted to it over OTLP/HTTP (JSON), as OpenTelemetry's Rails instrumentation sends
//! them: a SERVER span per request (`http.route`, status) and, under it, an
//! ActiveSupport cache read (`cache_read.active_support` with `key` and `hit`).
#![allow(dead_code)]

use powertune_apm::server::{self, ServeConfig};
use powertune_apm::{Engine, EngineConfig};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct LiveApm {
    pub url: String,
    running: server::Running,
    client: reqwest::Client,
    next_trace: u64,
}

/// One request of a batch.
#[derive(Clone, Copy)]
pub struct Request {
    pub route: &'static str,
    pub duration_ms: u64,
    pub status: i64,
    /// A cache read under the request: `Some(hit)`.
    pub cache_hit: Option<bool>,
}

impl LiveApm {
    /// A receiver with the default engine settings for the default targets.
    pub async fn start() -> LiveApm {
        let engine = Engine::new(EngineConfig::defaults(&powertune_core::Targets::default()));
        let running = server::start(ServeConfig::new("127.0.0.1:0".parse().unwrap()), engine)
            .await
            .unwrap();
        LiveApm {
            url: format!("http://{}", running.http_addr),
            running,
            client: reqwest::Client::new(),
            next_trace: 1,
        }
    }

    /// Posts `n` copies of `r` (one trace each, ending now) in one OTLP/JSON batch.
    pub async fn send(&mut self, n: u32, r: Request) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mut spans = Vec::new();
        for _ in 0..n {
            let trace = format!("{:032x}", 0xdead_0000_0000u64 + self.next_trace);
            self.next_trace += 1;
            let start = now - r.duration_ms * 1_000_000;
            let (method, _) = r.route.split_once(' ').unwrap();
            spans.push(span(
                &trace,
                "0000000000000001",
                "",
                r.route,
                2,
                start,
                now,
                vec![
                    attr("http.request.method", json!({"stringValue": method})),
                    attr(
                        "http.route",
                        json!({"stringValue": r.route.split_once(' ').unwrap().1}),
                    ),
                    attr(
                        "http.response.status_code",
                        json!({"intValue": r.status.to_string()}),
                    ),
                ],
            ));
            if let Some(hit) = r.cache_hit {
                spans.push(span(
                    &trace,
                    "0000000000000002",
                    "0000000000000001",
                    "cache_read.active_support",
                    1,
                    start + 1_000_000,
                    start + 2_000_000,
                    vec![
                        attr(
                            "key",
                            json!({"stringValue": format!("user_profile:{}", self.next_trace % 7)}),
                        ),
                        attr("hit", json!({"boolValue": hit})),
                    ],
                ));
            }
        }
        let body = json!({"resourceSpans": [{
            "resource": {"attributes": [attr("service.name", json!({"stringValue": "powernode-backend"}))]},
            "scopeSpans": [{"scope": {"name": "opentelemetry-ruby"}, "spans": spans}]
        }]});
        let resp = self
            .client
            .post(format!("{}/v1/traces", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }

    pub fn stop(self) {
        self.running.stop();
    }
}

fn attr(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: &str,
    id: &str,
    parent: &str,
    name: &str,
    kind: i32,
    start: u64,
    end: u64,
    attributes: Vec<Value>,
) -> Value {
    json!({
        "traceId": trace, "spanId": id, "parentSpanId": parent, "name": name, "kind": kind,
        "startTimeUnixNano": start.to_string(), "endTimeUnixNano": end.to_string(),
        "attributes": attributes, "status": {}
    })
}
