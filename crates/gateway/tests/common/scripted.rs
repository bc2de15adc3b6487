//! A loopback OpenAI-compatible provider that answers from a script: queued answers
//! (status and headers) first, then 200 with a short completion. It records when
//! each request arrived.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

#[derive(Default)]
struct Script {
    answers: VecDeque<(u16, Vec<(&'static str, String)>)>,
    arrivals: Vec<Instant>,
}

pub struct ScriptedProvider {
    /// Base URL (`http://127.0.0.1:PORT`); the chat path is `/v1/chat/completions`.
    pub url: String,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedProvider {
    pub async fn start() -> ScriptedProvider {
        let script: Arc<Mutex<Script>> = Arc::default();
        let s = script.clone();
        let app = axum::Router::new().fallback(move || {
            let s = s.clone();
            async move {
                let answer = {
                    let mut g = s.lock().unwrap();
                    g.arrivals.push(Instant::now());
                    g.answers.pop_front()
                };
                match answer {
                    Some((status, headers)) => {
                        let mut r = (
                            StatusCode::from_u16(status).unwrap(),
                            axum::Json(json!({"error": {"message": "scripted", "type": "x"}})),
                        )
                            .into_response();
                        for (k, v) in headers {
                            r.headers_mut().insert(
                                HeaderName::from_static(k),
                                HeaderValue::from_str(&v).unwrap(),
                            );
                        }
                        r
                    }
                    None => axum::Json(json!({
                        "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                        "model": "m",
                        "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "hi"}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1}
                    }))
                    .into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ScriptedProvider { url, script, task }
    }

    /// The next request is answered `status` with `headers`.
    pub fn push(&self, status: u16, headers: &[(&'static str, &str)]) {
        let h = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        self.script.lock().unwrap().answers.push_back((status, h));
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.script.lock().unwrap().arrivals.clone()
    }
}
