//! ActionCable over WebSocket (`/cable`, subprotocol `actioncable-v1-json`).
//!
//! Wire facts followed (Rails ActionCable): the server sends `{"type":"welcome"}` on
//! connect and `{"type":"ping","message":<unix seconds>}` every 3 s; a client sends
//! `{"command":"subscribe","identifier":"{\"channel\":\"MonitoringChannel\"}"}` and
//! gets `{"identifier":<same string>,"type":"confirm_subscription"}` or
//! `"reject_subscription"`; broadcasts arrive as `{"identifier":...,"message":{...}}`;
//! `unsubscribe` is not answered; a refused connection gets
//! `{"type":"disconnect","reason":"unauthorized","reconnect":false}` and a server
//! going away sends `{"type":"disconnect","reason":"server_restart","reconnect":true}`.

use crate::monitoring::monitoring_snapshot;
use crate::state::{unix_now, Shared};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// The ActionCable subprotocol.
pub const PROTOCOL: &str = "actioncable-v1-json";

/// A client that does not take a message within this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct Command {
    command: String,
    #[serde(default)]
    identifier: String,
    #[serde(default)]
    data: Option<String>,
}

/// Counts the connection and its subscriptions while it lives.
struct ConnGuard {
    s: Arc<Shared>,
    subs: i64,
}

impl ConnGuard {
    fn new(s: Arc<Shared>) -> Self {
        s.cable_connections.fetch_add(1, Ordering::Relaxed);
        s.cable_connections_total.fetch_add(1, Ordering::Relaxed);
        ConnGuard { s, subs: 0 }
    }

    fn add_sub(&mut self, delta: i64) {
        self.subs += delta;
        self.s
            .cable_subscriptions
            .fetch_add(delta, Ordering::Relaxed);
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.s
            .cable_subscriptions
            .fetch_sub(self.subs, Ordering::Relaxed);
        self.s.cable_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Sender {
    sink: futures_util::stream::SplitSink<WebSocket, Message>,
    s: Arc<Shared>,
}

impl Sender {
    /// Sends one text message; false when the client is gone or too slow.
    async fn text(&mut self, text: String) -> bool {
        match tokio::time::timeout(SEND_TIMEOUT, self.sink.send(Message::Text(text.into()))).await {
            Ok(Ok(())) => {
                self.s.cable_sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ =
            tokio::time::timeout(SEND_TIMEOUT, self.sink.send(Message::Close(Some(frame)))).await;
    }
}

fn channel_of(identifier: &str) -> Option<String> {
    match serde_json::from_str::<Value>(identifier) {
        Ok(Value::Object(m)) => m.get("channel").and_then(Value::as_str).map(String::from),
        _ => None,
    }
}

fn envelope(identifier: &str, message: &str) -> String {
    let id = serde_json::to_string(identifier).unwrap_or_else(|_| "\"\"".into());
    format!("{{\"identifier\":{id},\"message\":{message}}}")
}

/// One WebSocket connection, until the client leaves or the target shuts down.
pub async fn session(s: Arc<Shared>, socket: WebSocket, authorized: bool) {
    let mut guard = ConnGuard::new(s.clone());
    let (sink, mut stream) = socket.split();
    let mut tx = Sender { sink, s: s.clone() };
    if !authorized {
        tx.text(json!({"type":"disconnect","reason":"unauthorized","reconnect":false}).to_string())
            .await;
        tx.close(1008, "unauthorized").await;
        return;
    }
    if !tx.text(json!({"type":"welcome"}).to_string()).await {
        return;
    }
    let cfg = &s.settings.config.cable;
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + cfg.ping_interval,
        cfg.ping_interval,
    );
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut updates = s.updates.subscribe();
    let mut shutdown = s.shutdown.clone();
    let mut subs: Vec<String> = Vec::new();
    loop {
        if *shutdown.borrow() {
            tx.text(
                json!({"type":"disconnect","reason":"server_restart","reconnect":true}).to_string(),
            )
            .await;
            tx.close(1001, "server restart").await;
            break;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    // The target is gone without a signal: just close.
                    tx.close(1001, "server restart").await;
                    break;
                }
            }
            _ = ping.tick() => {
                if !tx.text(json!({"type":"ping","message":unix_now()}).to_string()).await {
                    break;
                }
            }
            update = updates.recv() => match update {
                Ok(payload) => {
                    let mut ok = true;
                    for id in &subs {
                        if !tx.text(envelope(id, &payload)).await {
                            ok = false;
                            break;
                        }
                    }
                    if !ok {
                        break;
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    s.cable_received.fetch_add(1, Ordering::Relaxed);
                    if !handle_command(&s, &mut tx, &mut subs, &mut guard, text.as_str()).await {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {} // binary, ping, pong: nothing to do
            },
        }
    }
}

/// Handles one client command; false when the connection should end.
async fn handle_command(
    s: &Arc<Shared>,
    tx: &mut Sender,
    subs: &mut Vec<String>,
    guard: &mut ConnGuard,
    text: &str,
) -> bool {
    let Ok(cmd) = serde_json::from_str::<Command>(text) else {
        // ActionCable logs and ignores what it cannot parse.
        return true;
    };
    let cfg = &s.settings.config.cable;
    match cmd.command.as_str() {
        "subscribe" => {
            if subs.contains(&cmd.identifier) {
                return true; // "Already subscribed": ignored, as ActionCable does
            }
            let known = channel_of(&cmd.identifier)
                .map(|ch| cfg.channels.contains(&ch))
                .unwrap_or(false);
            let reply_type = if known && subs.len() < cfg.max_subscriptions {
                subs.push(cmd.identifier.clone());
                guard.add_sub(1);
                "confirm_subscription"
            } else {
                "reject_subscription"
            };
            tx.text(json!({"identifier": cmd.identifier, "type": reply_type}).to_string())
                .await
        }
        "unsubscribe" => {
            if let Some(i) = subs.iter().position(|x| *x == cmd.identifier) {
                subs.remove(i);
                guard.add_sub(-1);
            }
            true
        }
        "message" => {
            // `perform('refresh')` on a subscribed identifier answers with a snapshot.
            let wants_refresh = cmd
                .data
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
                .and_then(|v| v.get("action").and_then(Value::as_str).map(String::from))
                .is_some_and(|a| a == "refresh");
            if wants_refresh && subs.contains(&cmd.identifier) {
                let snap = monitoring_snapshot(s, 5).to_string();
                return tx.text(envelope(&cmd.identifier, &snap)).await;
            }
            true
        }
        _ => true,
    }
}

/// Publishes a monitoring snapshot every `broadcast_interval` while anybody listens.
pub async fn broadcaster(s: Arc<Shared>) {
    let every = s.settings.config.cable.broadcast_interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = s.shutdown.clone();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        if s.cable_subscriptions.load(Ordering::Relaxed) <= 0 {
            continue;
        }
        let mut snap = monitoring_snapshot(&s, 5);
        if let Value::Object(m) = &mut snap {
            m.insert("type".into(), json!("monitoring_update"));
        }
        let payload: Arc<str> = Arc::from(snap.to_string());
        if s.updates.send(payload).is_ok() {
            s.cable_broadcasts.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_from_identifier() {
        assert_eq!(
            channel_of("{\"channel\":\"MonitoringChannel\"}").as_deref(),
            Some("MonitoringChannel")
        );
        assert_eq!(
            channel_of("{\"channel\":\"MonitoringChannel\",\"account\":7}").as_deref(),
            Some("MonitoringChannel")
        );
        assert_eq!(channel_of("MonitoringChannel"), None);
        assert_eq!(channel_of("{\"chan\":1}"), None);
    }

    #[test]
    fn envelope_quotes_identifier() {
        let e = envelope("{\"channel\":\"M\"}", "{\"a\":1}");
        let v: Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["identifier"], "{\"channel\":\"M\"}");
        assert_eq!(v["message"]["a"], 1);
    }
}
