//! Images, tools and tool choice carried between the formats.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use powertune_dialect::*;
use serde_json::{json, Value};

fn b64(media_type: Option<&str>, data: &str) -> Image {
    Image::Base64 {
        media_type: media_type.map(String::from),
        data: data.into(),
    }
}

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==";
const JPEG: &str = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAEBAQ==";

fn images_of(r: &ChatRequest) -> Vec<(usize, Image)> {
    r.messages
        .iter()
        .flat_map(|m| m.images.iter().map(|i| (m.index, i.clone())))
        .collect()
}

#[test]
fn images_parse_from_each_front_into_the_canonical_message() {
    let openai = json!({"model": "m", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [
            {"type": "text", "text": "what are these?"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}"), "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]});
    let r = parse_request(Front::OpenAi, openai.to_string().as_bytes()).unwrap();
    assert_eq!(r.messages[0].content, "what are these?");
    assert_eq!(
        images_of(&r),
        vec![
            (1, b64(Some("image/png"), PNG)),
            (1, Image::Url("https://example.com/cat.jpg".into()))
        ]
    );
    let anthropic = json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": JPEG}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/dog.png"}},
            {"type": "text", "text": "compare"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "zoom", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "text", "text": "zoomed"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]}]});
    let r = parse_request(Front::Anthropic, anthropic.to_string().as_bytes()).unwrap();
    assert_eq!(r.messages.len(), 3);
    assert_eq!(r.messages[2].role, "tool");
    assert_eq!(r.messages[2].content, "zoomed");
    assert_eq!(
        images_of(&r),
        vec![
            (0, b64(Some("image/jpeg"), JPEG)),
            (0, Image::Url("https://example.com/dog.png".into())),
            (2, b64(Some("image/png"), PNG)),
        ]
    );
    let ollama = json!({"model": "m", "messages": [
        {"role": "user", "content": "what is this?", "images": [PNG, JPEG, "AAAA"]}]});
    let r = parse_request(Front::Ollama, ollama.to_string().as_bytes()).unwrap();
    assert_eq!(
        images_of(&r),
        vec![
            (0, b64(Some("image/png"), PNG)),
            (0, b64(Some("image/jpeg"), JPEG)),
            (0, b64(None, "AAAA")),
        ]
    );
    let r = parse_request(
        Front::OpenAi,
        json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": format!("data:image/jpg;base64,{JPEG}")}},
            {"type": "image_url", "image_url": {"url": format!("data:;base64,{PNG}")}}]}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        images_of(&r),
        vec![
            (0, b64(Some("image/jpeg"), JPEG)),
            (0, b64(Some("image/png"), PNG)),
        ]
    );
    // malformed images are the client's 400, naming the field
    for (front, body, needle) in [
        (
            Front::OpenAi,
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}]}),
            "messages[0].content[0].image_url.url is a data URL that is not base64",
        ),
        (
            Front::OpenAi,
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}),
            "neither an http(s) URL",
        ),
        (
            Front::Anthropic,
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}),
            "messages[0].content[0].source.type \"file\"",
        ),
        (
            Front::Ollama,
            json!({"model": "m", "messages": [{"role": "user", "content": "x", "images": [1]}]}),
            "messages[0].images[0] must be a base64 string",
        ),
        (
            Front::Ollama,
            json!({"model": "m", "messages": [{"role": "system", "content": "x", "images": [PNG]}]}),
            "messages[0] is a system message with an image",
        ),
    ] {
        let e = parse_request(front, body.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e.message.contains(needle), "{front:?}: {}", e.message);
    }
}

#[test]
fn images_render_for_each_provider_kind() {
    let r = parse_request(
        Front::Ollama,
        json!({"model": "m", "messages": [{"role": "user", "content": "what is this?", "images": [PNG]}]}).to_string().as_bytes(),
    )
    .unwrap();
    let (_, b) = provider_request(ProviderKind::OpenAi, &r, "gpt").unwrap();
    assert_eq!(
        b["messages"][0]["content"],
        json!([{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}])
    );
    let (_, b) = provider_request(ProviderKind::Anthropic, &r, "claude").unwrap();
    assert_eq!(
        b["messages"][0]["content"],
        json!([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}, {"type": "text", "text": "what is this?"}])
    );
    let (_, b) = provider_request(ProviderKind::Ollama, &r, "llava").unwrap();
    assert_eq!(
        b["messages"][0],
        json!({"role": "user", "content": "what is this?", "images": [PNG]})
    );

    // OpenAI data URL → Ollama base64; a URL → Anthropic url source
    let r = parse_request(
        Front::OpenAi,
        json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": format!("data:image/jpeg;base64,{JPEG}")}}]}]}).to_string().as_bytes(),
    )
    .unwrap();
    let (_, b) = provider_request(ProviderKind::Ollama, &r, "llava").unwrap();
    assert_eq!(b["messages"][0]["images"], json!([JPEG]));
    assert_eq!(b["messages"][0]["content"], "");
    let r = parse_request(
        Front::OpenAi,
        json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "cat?"}, {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]}).to_string().as_bytes(),
    )
    .unwrap();
    let (_, b) = provider_request(ProviderKind::Anthropic, &r, "claude").unwrap();
    assert_eq!(
        b["messages"][0]["content"][0],
        json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}})
    );
    // Anthropic URL source → OpenAI image_url; tool_result images stay in the result
    let r = parse_request(
        Front::Anthropic,
        json!({"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://example.com/d.png"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "zoom", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]}]}).to_string().as_bytes(),
    )
    .unwrap();
    let (_, b) = provider_request(ProviderKind::Anthropic, &r, "claude").unwrap();
    assert_eq!(
        b["messages"][2]["content"][0]["content"],
        json!([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}])
    );
    // OpenAI tool messages take no images: a 400 naming the client's message
    let e = provider_request(ProviderKind::OpenAi, &r, "gpt").unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert!(e.message.contains("messages[2]: image 0 cannot be sent to the openai provider: OpenAI chat completions take images on user messages only"), "{}", e.message);
}

#[test]
fn images_a_provider_cannot_carry_are_a_400_in_the_clients_shape() {
    // Ollama takes base64 only
    let r = parse_request(
        Front::OpenAi,
        json!({"model": "m", "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]}).to_string().as_bytes(),
    )
    .unwrap();
    let e = provider_request(ProviderKind::Ollama, &r, "llava").unwrap_err();
    assert_eq!(e.message, "messages[3]: image 0 cannot be sent to the ollama provider: Ollama takes images as base64 data only, not URLs; send the image inline, e.g. data:image/png;base64,iVBORw0KGgo...");
    assert_eq!(
        e.body(Front::OpenAi)["error"]["type"],
        "invalid_request_error"
    );
    assert_eq!(
        e.body(Front::Anthropic)["error"]["type"],
        "invalid_request_error"
    );
    assert!(e.kind.status() == 400);
    // the same request is fine for OpenAI and Anthropic
    assert!(provider_request(ProviderKind::OpenAi, &r, "g").is_ok());
    assert!(provider_request(ProviderKind::Anthropic, &r, "c").is_ok());

    // an Ollama assistant message with an image; data of unknown type
    let r = parse_request(
        Front::Ollama,
        json!({"model": "m", "messages": [
            {"role": "user", "content": "x", "images": ["AAAA"]},
            {"role": "assistant", "content": "y", "images": [PNG]}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let e = provider_request(ProviderKind::Anthropic, &r, "c").unwrap_err();
    assert!(e.message.starts_with("messages[0]: image 0 cannot be sent to the anthropic provider: its media type is unknown"), "{}", e.message);
    let mut r2 = r.clone();
    r2.messages[0].images.clear();
    let e = provider_request(ProviderKind::OpenAi, &r2, "g").unwrap_err();
    assert!(
        e.message
            .starts_with("messages[1]: image 0 cannot be sent to the openai provider"),
        "{}",
        e.message
    );
    let e = provider_request(ProviderKind::Anthropic, &r2, "c").unwrap_err();
    assert!(
        e.message.contains("this is an assistant message"),
        "{}",
        e.message
    );
    assert!(provider_request(ProviderKind::Ollama, &r, "llava").is_ok());
    // a media type Anthropic does not take
    let r = parse_request(
        Front::OpenAi,
        json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let e = provider_request(ProviderKind::Anthropic, &r, "c").unwrap_err();
    assert!(e.message.contains("not \"image/bmp\""), "{}", e.message);
}

#[test]
fn the_fast_path_keeps_images_and_tools_and_the_full_parser_reads_them() {
    let body = json!({"model": "fast", "stream": true, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "see"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}]}],
        "tools": [{"type": "function", "function": {"name": "zoom", "parameters": {"type": "object"}}}]})
    .to_string();
    // same format: the raw body goes upstream with only the model replaced
    let raw = peek_request(Front::OpenAi, body.as_bytes()).unwrap();
    let up: Value =
        serde_json::from_slice(&raw.upstream_body(ProviderKind::OpenAi, "gpt")).unwrap();
    let orig: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(up["messages"], orig["messages"]);
    assert_eq!(up["tools"], orig["tools"]);
    // another format: the full parser (which the relay uses then) carries both
    let r = parse_request(Front::OpenAi, body.as_bytes()).unwrap();
    let (_, b) = provider_request(ProviderKind::Anthropic, &r, "claude").unwrap();
    assert_eq!(b["messages"][0]["content"][0]["source"]["data"], PNG);
    assert_eq!(b["tools"][0]["name"], "zoom");
    let (_, b) = provider_request(ProviderKind::Ollama, &r, "llava").unwrap();
    assert_eq!(b["messages"][0]["images"][0], PNG);
    assert_eq!(b["tools"][0]["function"]["name"], "zoom");
}

#[test]
fn tool_choice_and_parallel_calls_translate_between_formats() {
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let openai = |tc: Value, parallel: Option<bool>| {
        let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": tools, "tool_choice": tc});
        if let Some(p) = parallel {
            v["parallel_tool_calls"] = json!(p);
        }
        parse_request(Front::OpenAi, v.to_string().as_bytes()).unwrap()
    };
    let to = |kind, r: &ChatRequest| provider_request(kind, r, "x").unwrap().1;
    // OpenAI client → Anthropic provider
    let r = openai(json!("required"), Some(false));
    assert_eq!(r.tool_choice, Some(ToolChoice::Required));
    assert_eq!(
        to(ProviderKind::Anthropic, &r)["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    let r = openai(
        json!({"type": "function", "function": {"name": "get_weather"}}),
        None,
    );
    assert_eq!(
        to(ProviderKind::Anthropic, &r)["tool_choice"],
        json!({"type": "tool", "name": "get_weather"})
    );
    let r = openai(json!("none"), None);
    assert_eq!(
        to(ProviderKind::Anthropic, &r)["tool_choice"],
        json!({"type": "none"})
    );
    // "none" to Ollama: the tools are not offered at all
    assert!(to(ProviderKind::Ollama, &r).get("tools").is_none());
    let r = openai(json!("auto"), Some(true));
    assert!(to(ProviderKind::Ollama, &r)["tools"].is_array());
    assert!(check_request(ProviderKind::Ollama, &r).is_ok());
    // a forced call cannot go to Ollama: a 400 that says why
    let r = openai(json!("required"), None);
    assert!(!has_provider_limits(&openai(json!("auto"), None)));
    assert!(has_provider_limits(&r));
    let e = check_request(ProviderKind::Ollama, &r).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert!(
        e.message
            .contains("tool_choice \"required\" cannot be sent to the ollama provider"),
        "{}",
        e.message
    );
    assert!(provider_request(ProviderKind::Ollama, &r, "x").is_err());
    assert!(check_request(ProviderKind::Anthropic, &r).is_ok());
    // Anthropic client → OpenAI provider
    let a = json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true}});
    let r = parse_request(Front::Anthropic, a.to_string().as_bytes()).unwrap();
    let b = to(ProviderKind::OpenAi, &r);
    assert_eq!(
        b["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(b["parallel_tool_calls"], json!(false));
    let a = json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}], "tool_choice": {"type": "any"}});
    let r = parse_request(Front::Anthropic, a.to_string().as_bytes()).unwrap();
    assert_eq!(
        to(ProviderKind::OpenAi, &r)["tool_choice"],
        json!("required")
    );
    // no tools: no tool_choice upstream (providers refuse one without tools)
    let v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "auto"});
    let r = parse_request(Front::OpenAi, v.to_string().as_bytes()).unwrap();
    assert!(to(ProviderKind::OpenAi, &r).get("tool_choice").is_none());
    assert!(to(ProviderKind::Anthropic, &r).get("tool_choice").is_none());
    // malformed choices are the client's 400, with an example of a right one
    for (front, body) in [
        (
            Front::OpenAi,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "sometimes"}),
        ),
        (
            Front::Anthropic,
            json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": "tool"}}),
        ),
    ] {
        let e = parse_request(front, body.to_string().as_bytes()).unwrap_err();
        assert!(
            e.message.starts_with("tool_choice ") && e.message.contains("get_weather"),
            "{}",
            e.message
        );
    }
}
