//! Client request bodies of the three front APIs into the canonical [`ChatRequest`].

use crate::canonical::*;
use crate::error::ApiError;
use crate::tool_calls::message_tool_calls;
use serde_json::{json, Value};

/// Text of a message `content`: a string, or an array of parts of which the text
/// parts are joined.
fn content_text(v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    out.push_str(t);
                } else if let Some(s) = p.as_str() {
                    out.push_str(s);
                }
            }
            Ok(out)
        }
        _ => Err(ApiError::bad(
            "message content must be a string or an array of text parts, e.g. \"content\": \"Hello\"",
        )),
    }
}

fn opt_u64(v: &Value, k: &str) -> Result<Option<u64>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_u64().map(Some).ok_or_else(|| {
            ApiError::bad(format!("{k} must be a positive integer, e.g. \"{k}\": 256"))
        }),
    }
}

fn opt_f64(v: &Value, k: &str) -> Result<Option<f64>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_f64()
            .map(Some)
            .ok_or_else(|| ApiError::bad(format!("{k} must be a number, e.g. \"{k}\": 0.7"))),
    }
}

fn stop_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// The media type of base64 image data, told from its first characters (PNG, JPEG,
/// GIF, WebP), for formats that send the data without one (Ollama).
fn sniff_media_type(data: &str) -> Option<String> {
    const MAGIC: [(&str, &str); 4] = [
        ("iVBORw0KGgo", "image/png"),
        ("/9j/", "image/jpeg"),
        ("R0lGOD", "image/gif"),
        ("UklGR", "image/webp"),
    ];
    let d = data.trim_start();
    MAGIC
        .iter()
        .find(|(m, _)| d.starts_with(m))
        .map(|(_, t)| (*t).to_string())
}

/// An image given as a URL: `data:image/png;base64,...` becomes inline data, an
/// `http(s)://` URL stays a URL. `what` names the field in errors.
fn image_from_url(url: &str, what: &str) -> Result<Image, ApiError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').unwrap_or((rest, ""));
        let Some(media_type) = meta.strip_suffix(";base64") else {
            return Err(ApiError::bad(format!(
                "{what} is a data URL that is not base64, e.g. \"data:image/png;base64,iVBORw0KGgo...\""
            )));
        };
        if data.is_empty() {
            return Err(ApiError::bad(format!(
                "{what} is a data URL without data, e.g. \"data:image/png;base64,iVBORw0KGgo...\""
            )));
        }
        let media_type = match media_type {
            "" => sniff_media_type(data),
            "image/jpg" => Some("image/jpeg".to_string()), // a common misspelling
            t => Some(t.to_string()),
        };
        return Ok(Image::Base64 {
            media_type,
            data: data.to_string(),
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(Image::Url(url.to_string()));
    }
    let shown: String = url.chars().take(40).collect();
    Err(ApiError::bad(format!(
        "{what} {shown:?} is neither an http(s) URL nor a base64 data URL, e.g. \"https://example.com/cat.png\" or \"data:image/png;base64,iVBORw0KGgo...\""
    )))
}

/// Images among the content parts `parts` (OpenAI `image_url`, Anthropic `image`);
/// `at` names the array in errors (`messages[2].content`).
fn part_images(parts: Option<&Value>, at: &str) -> Result<Vec<Image>, ApiError> {
    let mut out = Vec::new();
    for (j, p) in parts
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match p.get("type").and_then(Value::as_str) {
            Some("image_url") => {
                let what = format!("{at}[{j}].image_url.url");
                let url = p
                    .get("image_url")
                    .and_then(|u| u.get("url").or(Some(u)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ApiError::bad(format!(
                            "{what} is missing, e.g. {{\"type\": \"image_url\", \"image_url\": {{\"url\": \"https://example.com/cat.png\"}}}}"
                        ))
                    })?;
                out.push(image_from_url(url, &what)?);
            }
            Some("image") => {
                let src = p.get("source").unwrap_or(&Value::Null);
                let field = |k: &str| src.get(k).and_then(Value::as_str);
                match field("type") {
                    Some("base64") => {
                        let data = field("data").filter(|d| !d.is_empty()).ok_or_else(|| {
                            ApiError::bad(format!(
                                "{at}[{j}].source.data is missing, e.g. {{\"type\": \"base64\", \"media_type\": \"image/png\", \"data\": \"iVBORw0KGgo...\"}}"
                            ))
                        })?;
                        out.push(Image::Base64 {
                            media_type: field("media_type")
                                .map(String::from)
                                .or_else(|| sniff_media_type(data)),
                            data: data.to_string(),
                        });
                    }
                    Some("url") => {
                        let what = format!("{at}[{j}].source.url");
                        let url = field("url").ok_or_else(|| {
                            ApiError::bad(format!(
                                "{what} is missing, e.g. {{\"type\": \"url\", \"url\": \"https://example.com/cat.png\"}}"
                            ))
                        })?;
                        out.push(image_from_url(url, &what)?);
                    }
                    other => {
                        return Err(ApiError::bad(format!(
                            "{at}[{j}].source.type {} is not \"base64\" or \"url\", e.g. {{\"type\": \"base64\", \"media_type\": \"image/png\", \"data\": \"iVBORw0KGgo...\"}}",
                            other.map_or_else(|| "(missing)".to_string(), |t| format!("{t:?}"))
                        )))
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Ollama's `images: ["<base64>", ...]` on message `i`.
fn ollama_images(m: &Value, i: usize) -> Result<Vec<Image>, ApiError> {
    let mut out = Vec::new();
    let Some(v) = m.get("images").filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let arr = v.as_array().ok_or_else(|| {
        ApiError::bad(format!(
            "messages[{i}].images must be an array of base64 strings, e.g. \"images\": [\"iVBORw0KGgo...\"]"
        ))
    })?;
    for (j, x) in arr.iter().enumerate() {
        let what = format!("messages[{i}].images[{j}]");
        let d = x.as_str().filter(|d| !d.is_empty()).ok_or_else(|| {
            ApiError::bad(format!(
                "{what} must be a base64 string, e.g. \"images\": [\"iVBORw0KGgo...\"]"
            ))
        })?;
        out.push(if d.starts_with("data:") || d.starts_with("http") {
            image_from_url(d, &what)?
        } else {
            Image::Base64 {
                media_type: sniff_media_type(d),
                data: d.to_string(),
            }
        });
    }
    Ok(out)
}

/// Splits `[{role, content}]` into the system text and user/assistant/tool messages
/// (Anthropic `tool_result` blocks in a user message become `tool` messages). Images
/// (content parts, Ollama `images`) ride on their message.
fn split_messages(arr: &[Value]) -> Result<(Option<String>, Vec<Message>), ApiError> {
    let mut system: Vec<String> = Vec::new();
    let mut messages = Vec::new();
    for (i, m) in arr.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
            ApiError::bad(format!(
                "messages[{i}].role is missing, e.g. {{\"role\": \"user\", \"content\": \"Hi\"}}"
            ))
        })?;
        let text = content_text(m.get("content").unwrap_or(&Value::Null))?;
        let at = format!("messages[{i}].content");
        let mut images = part_images(m.get("content"), &at)?;
        images.extend(ollama_images(m, i)?);
        match role {
            "system" | "developer" => {
                if !images.is_empty() {
                    return Err(ApiError::bad(format!(
                        "messages[{i}] is a {role} message with an image; put images in a user message, e.g. {{\"role\": \"user\", \"content\": [{{\"type\": \"image_url\", \"image_url\": {{\"url\": \"https://example.com/cat.png\"}}}}]}}"
                    )));
                }
                system.push(text)
            }
            "user" => {
                let mut rest_text = true;
                for (j, b) in m
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    if b.get("type").and_then(Value::as_str) == Some("tool_result") {
                        rest_text = false;
                        messages.push(Message {
                            role: "tool".into(),
                            content: content_text(b.get("content").unwrap_or(&Value::Null))?,
                            tool_call_id: b
                                .get("tool_use_id")
                                .and_then(Value::as_str)
                                .map(String::from),
                            images: part_images(b.get("content"), &format!("{at}[{j}].content"))?,
                            index: i,
                            ..Default::default()
                        });
                    }
                }
                if rest_text || !text.is_empty() || !images.is_empty() {
                    messages.push(Message {
                        role: "user".into(),
                        content: text,
                        images,
                        index: i,
                        ..Default::default()
                    });
                }
            }
            "assistant" => messages.push(Message {
                role: "assistant".into(),
                content: text,
                tool_calls: message_tool_calls(m, i),
                tool_call_id: None,
                images,
                index: i,
            }),
            "tool" => messages.push(Message {
                role: "tool".into(),
                content: text,
                tool_call_id: m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .map(String::from),
                images,
                index: i,
                ..Default::default()
            }),
            other => {
                return Err(ApiError::bad(format!(
                    "messages[{i}].role {other:?} is not system, user, assistant or tool"
                )))
            }
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n"));
    Ok((system, messages))
}

/// `tools` in OpenAI/Ollama (`{"type": "function", "function": {...}}`) or Anthropic
/// (`{"name", "description", "input_schema"}`) shape.
fn parse_tools(v: &Value) -> Vec<ToolDef> {
    v.get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let f = t.get("function").unwrap_or(t);
            Some(ToolDef {
                name: f.get("name")?.as_str()?.to_string(),
                description: f
                    .get("description")
                    .and_then(Value::as_str)
                    .map(String::from),
                parameters: f
                    .get("parameters")
                    .or_else(|| f.get("input_schema"))
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"})),
            })
        })
        .collect()
}

/// `tool_choice` (and the parallel-calls switch) in the client's shape.
fn parse_tool_choice(
    front: Front,
    v: &Value,
) -> Result<(Option<ToolChoice>, Option<bool>), ApiError> {
    let Some(tc) = v.get("tool_choice").filter(|t| !t.is_null()) else {
        return Ok((None, v.get("parallel_tool_calls").and_then(Value::as_bool)));
    };
    match front {
        Front::OpenAi => {
            let choice = match tc {
                Value::String(s) if s == "auto" => ToolChoice::Auto,
                Value::String(s) if s == "none" => ToolChoice::None,
                Value::String(s) if s == "required" => ToolChoice::Required,
                _ => match tc.pointer("/function/name").and_then(Value::as_str) {
                    Some(name) => ToolChoice::Tool(name.to_string()),
                    None => {
                        return Err(ApiError::bad(format!(
                            "tool_choice {tc} is not one of \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": \"get_weather\"}}}}"
                        )))
                    }
                },
            };
            Ok((
                Some(choice),
                v.get("parallel_tool_calls").and_then(Value::as_bool),
            ))
        }
        Front::Anthropic => {
            let choice = match (
                tc.get("type").and_then(Value::as_str),
                tc.get("name").and_then(Value::as_str),
            ) {
                (Some("auto"), _) => ToolChoice::Auto,
                (Some("none"), _) => ToolChoice::None,
                (Some("any"), _) => ToolChoice::Required,
                (Some("tool"), Some(name)) => ToolChoice::Tool(name.to_string()),
                _ => {
                    return Err(ApiError::bad(format!(
                        "tool_choice {tc} is not {{\"type\": \"auto\"|\"any\"|\"none\"}} or {{\"type\": \"tool\", \"name\": \"get_weather\"}}"
                    )))
                }
            };
            let parallel = tc
                .get("disable_parallel_tool_use")
                .and_then(Value::as_bool)
                .map(|d| !d);
            Ok((Some(choice), parallel))
        }
        // Ollama's API has no tool_choice: the field is ignored, as Ollama does
        Front::Ollama => Ok((None, None)),
    }
}

/// Parses a client request body for `front`.
pub fn parse_request(front: Front, body: &[u8]) -> Result<ChatRequest, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(format!(
            "request body is not JSON ({e}), e.g. {{\"model\": \"fast\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hi\"}}]}}"
        ))
    })?;
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad("\"model\" is missing, e.g. \"model\": \"fast\""))?
        .to_string();
    let arr = v.get("messages").and_then(Value::as_array).ok_or_else(|| {
        ApiError::bad(
            "\"messages\" must be an array, e.g. [{\"role\": \"user\", \"content\": \"Hi\"}]",
        )
    })?;
    let (mut system, messages) = split_messages(arr)?;
    let (tool_choice, parallel_tool_calls) = parse_tool_choice(front, &v)?;
    if messages.is_empty() {
        return Err(ApiError::bad(
            "\"messages\" needs at least one user message, e.g. [{\"role\": \"user\", \"content\": \"Hi\"}]",
        ));
    }
    match front {
        Front::OpenAi => Ok(ChatRequest {
            model,
            system,
            messages,
            max_tokens: match opt_u64(&v, "max_completion_tokens")? {
                Some(n) => Some(n),
                None => opt_u64(&v, "max_tokens")?,
            },
            temperature: opt_f64(&v, "temperature")?,
            top_p: opt_f64(&v, "top_p")?,
            stop: stop_list(v.get("stop")),
            stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage: v
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            tools: parse_tools(&v),
            tool_choice,
            parallel_tool_calls,
        }),
        Front::Anthropic => {
            if let Some(s) = v.get("system") {
                let t = content_text(s)?;
                if !t.is_empty() {
                    system = Some(match system {
                        Some(prev) => format!("{t}\n{prev}"),
                        None => t,
                    });
                }
            }
            let max_tokens = opt_u64(&v, "max_tokens")?.ok_or_else(|| {
                ApiError::bad(
                    "max_tokens is required by the Messages API, e.g. \"max_tokens\": 1024",
                )
            })?;
            Ok(ChatRequest {
                model,
                system,
                messages,
                max_tokens: Some(max_tokens),
                temperature: opt_f64(&v, "temperature")?,
                top_p: opt_f64(&v, "top_p")?,
                stop: stop_list(v.get("stop_sequences")),
                stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
                include_usage: true,
                tools: parse_tools(&v),
                tool_choice,
                parallel_tool_calls,
            })
        }
        Front::Ollama => {
            let opts = v.get("options").cloned().unwrap_or(Value::Null);
            Ok(ChatRequest {
                model,
                system,
                messages,
                max_tokens: opt_u64(&opts, "num_predict")?,
                temperature: opt_f64(&opts, "temperature")?,
                top_p: opt_f64(&opts, "top_p")?,
                stop: stop_list(opts.get("stop")),
                // Ollama streams unless told not to
                stream: v.get("stream").and_then(Value::as_bool).unwrap_or(true),
                include_usage: true,
                tools: parse_tools(&v),
                tool_choice,
                parallel_tool_calls,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_front_needs_max_tokens_and_ollama_streams_by_default() {
        let e = parse_request(
            Front::Anthropic,
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("max_tokens"));
        let r = parse_request(
            Front::Ollama,
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        assert!(r.stream);
    }
}
