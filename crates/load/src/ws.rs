//! WebSocket steps: ActionCable sessions (welcome → subscribe → confirm_subscription,
//! pings, broadcasts) and raw send/expect exchanges, over tokio-tungstenite on the
//! engine's own TCP/TLS streams (so `wss://` works too).

use crate::http::{connect, ClientShared};
use crate::net::{Origin, Stream};
use futures_util::{SinkExt, StreamExt};
use powertune_core::redact;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// The ActionCable subprotocol.
pub const CABLE_PROTOCOL: &str = "actioncable-v1-json";

/// What one WebSocket session did; recorded once when it ends.
#[derive(Debug, Default, Clone)]
pub struct WsOutcome {
    pub connecting: Option<Duration>,
    pub subscribe: Option<Duration>,
    pub session: Duration,
    pub msgs_received: u64,
    pub msgs_sent: u64,
    pub broadcasts: u64,
    /// Set when the session failed (connect, refused subscription, protocol).
    pub error: Option<String>,
    /// For raw steps: whether the expected text arrived.
    pub expected_seen: bool,
}

type WsStream = tokio_tungstenite::WebSocketStream<Stream>;

async fn open(
    shared: &ClientShared,
    url: &url::Url,
    protocol: Option<&str>,
    headers: &[(String, String)],
) -> Result<WsStream, String> {
    let origin = Origin::from_url(url)?;
    let (stream, _, _, _) = connect(&origin, shared, false).await.map_err(|(_, m)| m)?;
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad WebSocket URL {}: {e}", redact::url(url.as_str())))?;
    if let Some(p) = protocol {
        let v = HeaderValue::from_str(p).map_err(|e| format!("bad subprotocol `{p}`: {e}"))?;
        req.headers_mut().insert("Sec-WebSocket-Protocol", v);
    }
    for (k, v) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| format!("bad header `{k}`: {e}"))?;
        let val = HeaderValue::from_str(v).map_err(|e| format!("bad header `{k}`: {e}"))?;
        req.headers_mut().insert(name, val);
    }
    let (ws, _resp) = tokio::time::timeout(
        shared.connect_timeout,
        tokio_tungstenite::client_async(req, stream),
    )
    .await
    .map_err(|_| {
        format!(
            "WebSocket handshake with {} timed out",
            redact::url(url.as_str())
        )
    })?
    .map_err(|e| {
        format!(
            "WebSocket handshake with {}: {e}",
            redact::url(url.as_str())
        )
    })?;
    Ok(ws)
}

/// Reads the next text message within `timeout`, counting it.
async fn next_text(
    ws: &mut WsStream,
    out: &mut WsOutcome,
    timeout: Duration,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err("timed out waiting for a message".into()),
            Ok(None) => return Err("the server closed the connection".into()),
            Ok(Some(Err(e))) => return Err(format!("WebSocket error: {e}")),
            Ok(Some(Ok(Message::Text(t)))) => {
                out.msgs_received += 1;
                return Ok(t.to_string());
            }
            Ok(Some(Ok(Message::Binary(b)))) => {
                out.msgs_received += 1;
                return Ok(String::from_utf8_lossy(&b).into_owned());
            }
            Ok(Some(Ok(Message::Close(_)))) => {
                return Err("the server closed the connection".into())
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn message_type(text: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()?
        .get("type")?
        .as_str()
        .map(str::to_string)
}

/// One ActionCable session: connect, welcome, subscribe to `channel`, then count
/// pings and broadcasts until `hold` completes, then close.
pub async fn cable_session(
    shared: &ClientShared,
    url: &url::Url,
    headers: &[(String, String)],
    channel: &str,
    hold: impl Future<Output = ()>,
) -> WsOutcome {
    let mut out = WsOutcome::default();
    let t0 = Instant::now();
    let mut ws = match open(shared, url, Some(CABLE_PROTOCOL), headers).await {
        Ok(ws) => ws,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    out.connecting = Some(t0.elapsed());
    let wait = shared.connect_timeout.max(Duration::from_secs(5));
    // welcome
    loop {
        match next_text(&mut ws, &mut out, wait).await {
            Ok(t) if message_type(&t).as_deref() == Some("welcome") => break,
            Ok(t) if message_type(&t).as_deref() == Some("disconnect") => {
                out.error = Some(format!("refused: {t}"));
                out.session = t0.elapsed();
                return out;
            }
            Ok(_) => {}
            Err(e) => {
                out.error = Some(format!("no welcome: {e}"));
                out.session = t0.elapsed();
                return out;
            }
        }
    }
    let identifier = serde_json::json!({ "channel": channel }).to_string();
    let subscribe =
        serde_json::json!({"command": "subscribe", "identifier": identifier}).to_string();
    let ts = Instant::now();
    if let Err(e) = ws.send(Message::text(subscribe)).await {
        out.error = Some(format!("cannot subscribe: {e}"));
        out.session = t0.elapsed();
        return out;
    }
    out.msgs_sent += 1;
    loop {
        match next_text(&mut ws, &mut out, wait).await {
            Ok(t) => match message_type(&t).as_deref() {
                Some("confirm_subscription") => break,
                Some("reject_subscription") => {
                    out.error = Some(format!("subscription to {channel} rejected"));
                    out.session = t0.elapsed();
                    return out;
                }
                _ => {}
            },
            Err(e) => {
                out.error = Some(format!("no confirm_subscription: {e}"));
                out.session = t0.elapsed();
                return out;
            }
        }
    }
    out.subscribe = Some(ts.elapsed());
    tokio::pin!(hold);
    loop {
        tokio::select! {
            _ = &mut hold => break,
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    out.msgs_received += 1;
                    if !t.contains("\"ping\"") && t.contains("\"message\"") {
                        out.broadcasts += 1;
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    out.error = Some("the server closed the subscription early".into());
                    break;
                }
                Some(Err(e)) => {
                    out.error = Some(format!("WebSocket error: {e}"));
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    out.session = t0.elapsed();
    out
}

/// A raw exchange: connect, send each message, wait for one containing `expect`.
pub async fn raw_session(
    shared: &ClientShared,
    url: &url::Url,
    protocol: Option<&str>,
    headers: &[(String, String)],
    send: &[String],
    expect: Option<&str>,
    timeout: Duration,
) -> WsOutcome {
    let mut out = WsOutcome::default();
    let t0 = Instant::now();
    let mut ws = match open(shared, url, protocol, headers).await {
        Ok(ws) => ws,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    out.connecting = Some(t0.elapsed());
    for m in send {
        if let Err(e) = ws.send(Message::text(m.clone())).await {
            out.error = Some(format!("send failed: {e}"));
            out.session = t0.elapsed();
            return out;
        }
        out.msgs_sent += 1;
    }
    if let Some(want) = expect {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match next_text(&mut ws, &mut out, deadline - Instant::now()).await {
                Ok(t) if t.contains(want) => {
                    out.expected_seen = true;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    out.session = t0.elapsed();
    out
}
