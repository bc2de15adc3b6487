//! The upstream request for a provider of each kind, refusing (as a 400) what the
//! provider cannot carry.

use crate::canonical::*;
use crate::error::ApiError;
use serde_json::{json, Value};

/// The path a provider of `kind` serves chat on, appended to its base URL.
pub fn provider_path(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "/chat/completions",
        ProviderKind::Anthropic => "/v1/messages",
        ProviderKind::Ollama => "/api/chat",
    }
}

/// Why `img` on a message of `role` cannot go to a provider of `kind` (None: it can).
fn image_problem(kind: ProviderKind, role: &str, img: &Image) -> Option<String> {
    let media_type = match img {
        Image::Base64 { media_type, .. } => Some(media_type.as_deref()),
        Image::Url(_) => None,
    };
    match kind {
        ProviderKind::OpenAi if role != "user" => Some(format!(
            "OpenAI chat completions take images on user messages only, and this is a{} {role} message",
            if role.starts_with(['a', 'e', 'i', 'o', 'u']) { "n" } else { "" }
        )),
        ProviderKind::Anthropic if role == "assistant" => Some(
            "Anthropic messages take images from the user and in tool results only, and this is an assistant message"
                .into(),
        ),
        ProviderKind::OpenAi | ProviderKind::Anthropic => match media_type {
            Some(None) => Some(
                "its media type is unknown (the data is not PNG, JPEG, GIF or WebP) and the provider needs one; send it as data:image/png;base64,..."
                    .into(),
            ),
            Some(Some(t))
                if kind == ProviderKind::Anthropic
                    && !matches!(t, "image/jpeg" | "image/png" | "image/gif" | "image/webp") =>
            {
                Some(format!(
                    "Anthropic takes image/jpeg, image/png, image/gif or image/webp, not {t:?}"
                ))
            }
            _ => None,
        },
        ProviderKind::Ollama => matches!(img, Image::Url(_)).then(|| {
            "Ollama takes images as base64 data only, not URLs; send the image inline, e.g. data:image/png;base64,iVBORw0KGgo..."
                .into()
        }),
    }
}

/// Every image of `req` that a provider of `kind` can carry, or a 400 naming the
/// first one it cannot (message index in the client's array, image number, why).
pub fn check_images(kind: ProviderKind, req: &ChatRequest) -> Result<(), ApiError> {
    for m in &req.messages {
        for (k, img) in m.images.iter().enumerate() {
            if let Some(why) = image_problem(kind, &m.role, img) {
                return Err(ApiError::bad(format!(
                    "messages[{}]: image {k} cannot be sent to the {} provider: {why}",
                    m.index,
                    kind.as_str()
                )));
            }
        }
    }
    Ok(())
}

/// Everything in `req` that a provider of `kind` cannot carry, as a 400: its images
/// ([`check_images`]) and a forced tool call for Ollama, which has no `tool_choice`.
pub fn check_request(kind: ProviderKind, req: &ChatRequest) -> Result<(), ApiError> {
    check_images(kind, req)?;
    if kind == ProviderKind::Ollama && !req.tools.is_empty() {
        let forced = match &req.tool_choice {
            Some(ToolChoice::Required) => Some("\"required\"".to_string()),
            Some(ToolChoice::Tool(name)) => Some(format!("{name:?}")),
            _ => None,
        };
        if let Some(what) = forced {
            return Err(ApiError::bad(format!(
                "tool_choice {what} cannot be sent to the ollama provider: Ollama has no tool_choice and cannot be made to call a tool; use \"auto\", or route the model to an OpenAI or Anthropic target"
            )));
        }
    }
    Ok(())
}

/// True when `req` holds something only some providers can carry (images, a forced
/// tool call): the targets are then checked with [`check_request`] before picking.
pub fn has_provider_limits(req: &ChatRequest) -> bool {
    req.messages.iter().any(|m| !m.images.is_empty())
        || matches!(
            req.tool_choice,
            Some(ToolChoice::Required | ToolChoice::Tool(_))
        )
}

/// `data:` URL of inline image data (OpenAI's way of sending it).
fn data_url(media_type: &str, data: &str) -> String {
    let mut s = String::with_capacity(data.len() + media_type.len() + 13);
    s.push_str("data:");
    s.push_str(media_type);
    s.push_str(";base64,");
    s.push_str(data);
    s
}

/// Anthropic `image` block.
fn anthropic_image(img: &Image) -> Value {
    match img {
        Image::Base64 { media_type, data } => json!({"type": "image", "source": {
            "type": "base64", "media_type": media_type.as_deref().unwrap_or("image/png"), "data": data}}),
        Image::Url(u) => json!({"type": "image", "source": {"type": "url", "url": u}}),
    }
}

/// The upstream request: path appended to the base URL, and the JSON body, or a 400
/// (in [`ApiError`]) when the request holds something a provider of `kind` cannot
/// carry (an image URL for Ollama, an image on an assistant message, a forced tool
/// call for Ollama): nothing is ever dropped silently.
pub fn provider_request(
    kind: ProviderKind,
    req: &ChatRequest,
    model: &str,
) -> Result<(&'static str, Value), ApiError> {
    check_request(kind, req)?;
    Ok(render_provider_request(kind, req, model))
}

/// Renders a request whose images `kind` can carry (see [`check_images`]).
fn render_provider_request(
    kind: ProviderKind,
    req: &ChatRequest,
    model: &str,
) -> (&'static str, Value) {
    match kind {
        ProviderKind::OpenAi => {
            let mut msgs = Vec::new();
            if let Some(s) = &req.system {
                msgs.push(json!({"role": "system", "content": s}));
            }
            for m in &req.messages {
                let mut v = openai_message(m, false);
                if !m.images.is_empty() {
                    let mut parts = Vec::with_capacity(m.images.len() + 1);
                    if !m.content.is_empty() {
                        parts.push(json!({"type": "text", "text": m.content}));
                    }
                    for img in &m.images {
                        let url = match img {
                            Image::Base64 { media_type, data } => {
                                data_url(media_type.as_deref().unwrap_or("image/png"), data)
                            }
                            Image::Url(u) => u.clone(),
                        };
                        parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                    }
                    v["content"] = Value::Array(parts);
                }
                msgs.push(v);
            }
            let mut b = json!({"model": model, "messages": msgs, "stream": req.stream});
            if !req.tools.is_empty() {
                b["tools"] = openai_tools(&req.tools);
                if let Some(tc) = &req.tool_choice {
                    b["tool_choice"] = match tc {
                        ToolChoice::Auto => json!("auto"),
                        ToolChoice::None => json!("none"),
                        ToolChoice::Required => json!("required"),
                        ToolChoice::Tool(name) => {
                            json!({"type": "function", "function": {"name": name}})
                        }
                    };
                }
                if let Some(p) = req.parallel_tool_calls {
                    b["parallel_tool_calls"] = json!(p);
                }
            }
            if req.stream {
                b["stream_options"] = json!({"include_usage": true});
            }
            if let Some(n) = req.max_tokens {
                b["max_tokens"] = json!(n);
            }
            if let Some(t) = req.temperature {
                b["temperature"] = json!(t);
            }
            if let Some(t) = req.top_p {
                b["top_p"] = json!(t);
            }
            if !req.stop.is_empty() {
                b["stop"] = json!(req.stop);
            }
            ("/chat/completions", b)
        }
        ProviderKind::Anthropic => {
            let mut msgs: Vec<Value> = Vec::new();
            for m in &req.messages {
                match m.role.as_str() {
                    "tool" => {
                        let content = if m.images.is_empty() {
                            json!(m.content)
                        } else {
                            let mut parts = Vec::with_capacity(m.images.len() + 1);
                            if !m.content.is_empty() {
                                parts.push(json!({"type": "text", "text": m.content}));
                            }
                            parts.extend(m.images.iter().map(anthropic_image));
                            Value::Array(parts)
                        };
                        let block = json!({"type": "tool_result",
                            "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                            "content": content});
                        // consecutive results go in one user message (roles alternate)
                        match msgs.last_mut() {
                            Some(last)
                                if last["role"] == "user"
                                    && last["content"][0]["type"] == "tool_result" =>
                            {
                                if let Some(a) = last["content"].as_array_mut() {
                                    a.push(block);
                                }
                            }
                            _ => msgs.push(json!({"role": "user", "content": [block]})),
                        }
                    }
                    "assistant" if !m.tool_calls.is_empty() => {
                        let mut blocks = Vec::new();
                        if !m.content.is_empty() {
                            blocks.push(json!({"type": "text", "text": m.content}));
                        }
                        for c in &m.tool_calls {
                            blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}));
                        }
                        msgs.push(json!({"role": "assistant", "content": blocks}));
                    }
                    _ if !m.images.is_empty() => {
                        // images first, as Anthropic's guide recommends, then the text
                        let mut blocks: Vec<Value> = m.images.iter().map(anthropic_image).collect();
                        if !m.content.is_empty() {
                            blocks.push(json!({"type": "text", "text": m.content}));
                        }
                        msgs.push(json!({"role": m.role, "content": blocks}));
                    }
                    _ => msgs.push(json!({"role": m.role, "content": m.content})),
                }
            }
            let mut b = json!({"model": model, "messages": msgs,
                "max_tokens": req.max_tokens.unwrap_or(1024), "stream": req.stream});
            if !req.tools.is_empty() {
                b["tools"] = Value::Array(
                    req.tools
                        .iter()
                        .map(|t| {
                            let mut v = json!({"name": t.name, "input_schema": t.parameters});
                            if let Some(d) = &t.description {
                                v["description"] = json!(d);
                            }
                            v
                        })
                        .collect(),
                );
                if req.tool_choice.is_some() || req.parallel_tool_calls == Some(false) {
                    let mut c = match req.tool_choice.as_ref().unwrap_or(&ToolChoice::Auto) {
                        ToolChoice::Auto => json!({"type": "auto"}),
                        ToolChoice::None => json!({"type": "none"}),
                        ToolChoice::Required => json!({"type": "any"}),
                        ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
                    };
                    if req.parallel_tool_calls == Some(false)
                        && req.tool_choice != Some(ToolChoice::None)
                    {
                        c["disable_parallel_tool_use"] = json!(true);
                    }
                    b["tool_choice"] = c;
                }
            }
            if let Some(s) = &req.system {
                b["system"] = json!(s);
            }
            if let Some(t) = req.temperature {
                b["temperature"] = json!(t);
            }
            if let Some(t) = req.top_p {
                b["top_p"] = json!(t);
            }
            if !req.stop.is_empty() {
                b["stop_sequences"] = json!(req.stop);
            }
            ("/v1/messages", b)
        }
        ProviderKind::Ollama => {
            let mut msgs = Vec::new();
            if let Some(s) = &req.system {
                msgs.push(json!({"role": "system", "content": s}));
            }
            for m in &req.messages {
                let mut v = openai_message(m, true);
                if !m.images.is_empty() {
                    v["images"] = m
                        .images
                        .iter()
                        .filter_map(|img| match img {
                            Image::Base64 { data, .. } => Some(json!(data)),
                            Image::Url(_) => None, // refused by check_images
                        })
                        .collect();
                }
                msgs.push(v);
            }
            let mut opts = serde_json::Map::new();
            if let Some(n) = req.max_tokens {
                opts.insert("num_predict".into(), json!(n));
            }
            if let Some(t) = req.temperature {
                opts.insert("temperature".into(), json!(t));
            }
            if let Some(t) = req.top_p {
                opts.insert("top_p".into(), json!(t));
            }
            if !req.stop.is_empty() {
                opts.insert("stop".into(), json!(req.stop));
            }
            let mut b = json!({"model": model, "messages": msgs, "stream": req.stream});
            // no tool_choice in Ollama's API: "none" is honoured by not offering the
            // tools; a forced call cannot be sent (see `check_request`)
            if !req.tools.is_empty() && req.tool_choice != Some(ToolChoice::None) {
                b["tools"] = openai_tools(&req.tools);
            }
            if !opts.is_empty() {
                b["options"] = Value::Object(opts);
            }
            ("/api/chat", b)
        }
    }
}

/// A message in OpenAI shape (`ollama`: Ollama's variant, arguments as an object and
/// no call ids).
pub(crate) fn openai_message(m: &Message, ollama: bool) -> Value {
    let mut v = json!({"role": m.role, "content": m.content});
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| {
                if ollama {
                    json!({"function": {"name": c.name, "arguments": c.arguments}})
                } else {
                    json!({"id": c.id, "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments.to_string()}})
                }
            })
            .collect();
    }
    if let (Some(id), false) = (&m.tool_call_id, ollama) {
        v["tool_call_id"] = json!(id);
    }
    v
}

fn openai_tools(tools: &[ToolDef]) -> Value {
    tools
        .iter()
        .map(|t| {
            let mut f = json!({"name": t.name, "parameters": t.parameters});
            if let Some(d) = &t.description {
                f["description"] = json!(d);
            }
            json!({"type": "function", "function": f})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::parse::parse_request;

    #[test]
    fn openai_request_round_trips_to_anthropic_shape() {
        let body = br#"{"model":"fast","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":5,"stop":"END","stream":true,"stream_options":{"include_usage":true}}"#;
        let r = parse_request(Front::OpenAi, body).unwrap();
        assert_eq!(r.system.as_deref(), Some("be brief"));
        assert_eq!(r.messages[0].content, "hi");
        assert!(r.stream && r.include_usage);
        let (path, b) = provider_request(ProviderKind::Anthropic, &r, "claude-x").unwrap();
        assert_eq!(path, "/v1/messages");
        assert_eq!(b["system"], "be brief");
        assert_eq!(b["stop_sequences"][0], "END");
        assert_eq!(b["max_tokens"], 5);
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
    }
}
