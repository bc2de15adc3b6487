//! Tool calls inside streams: every provider kind decoded and re-encoded for every front.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use powertune_dialect::*;
use serde_json::{json, Value};

/// A provider stream of `kind`: optional text, then get_weather {"city":"Oslo"}
/// (arguments in fragments where the API streams them) and get_time {"tz":"CET"}.
fn provider_tool_stream(kind: ProviderKind, with_text: bool) -> String {
    let text = "Let me check \"both\".";
    match kind {
        ProviderKind::OpenAi => {
            let mut s = String::new();
            let mut chunk = |delta: Value, finish: Value| {
                s.push_str(&format!(
                    "data: {}\n\n",
                    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                ));
            };
            chunk(
                json!({"role": "assistant", "content": if with_text { Value::from(text) } else { Value::Null }}),
                Value::Null,
            );
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                Value::Null,
            );
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                Value::Null,
            );
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"Oslo\"}"}}]}),
                Value::Null,
            );
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_B", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":\"CET\"}"}}]}),
                Value::Null,
            );
            chunk(json!({}), json!("tool_calls"));
            s.push_str("data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":9}}\n\ndata: [DONE]\n\n");
            s
        }
        ProviderKind::Anthropic => {
            let mut s = String::new();
            let mut ev = |v: Value| {
                s.push_str(&format!(
                    "event: {}\ndata: {v}\n\n",
                    v["type"].as_str().unwrap()
                ));
            };
            ev(
                json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "m", "usage": {"input_tokens": 5, "output_tokens": 1}}}),
            );
            let mut b = 0;
            if with_text {
                ev(
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                );
                ev(json!({"type": "ping"}));
                ev(
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
                );
                ev(json!({"type": "content_block_stop", "index": 0}));
                b = 1;
            }
            ev(
                json!({"type": "content_block_start", "index": b, "content_block": {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}}),
            );
            for p in ["", "{\"city\":", " \"Oslo\"}"] {
                ev(
                    json!({"type": "content_block_delta", "index": b, "delta": {"type": "input_json_delta", "partial_json": p}}),
                );
            }
            ev(json!({"type": "content_block_stop", "index": b}));
            ev(
                json!({"type": "content_block_start", "index": b + 1, "content_block": {"type": "tool_use", "id": "toolu_B", "name": "get_time", "input": {}}}),
            );
            ev(
                json!({"type": "content_block_delta", "index": b + 1, "delta": {"type": "input_json_delta", "partial_json": "{\"tz\":\"CET\"}"}}),
            );
            ev(json!({"type": "content_block_stop", "index": b + 1}));
            ev(
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
            );
            ev(json!({"type": "message_stop"}));
            s
        }
        ProviderKind::Ollama => {
            let mut s = String::new();
            if with_text {
                s.push_str(&format!("{}\n", json!({"model": "m", "message": {"role": "assistant", "content": text}, "done": false})));
            }
            s.push_str(&format!(
                "{}\n",
                json!({"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
                {"function": {"name": "get_time", "arguments": {"tz": "CET"}}}]}, "done": false})
            ));
            s.push_str(&format!(
                "{}\n",
                json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true,
                "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 9})
            ));
            s
        }
    }
}

/// Decodes `upstream` (fed in 5-byte reads) and encodes it for `front`, as the relay
/// does: `start`, `chunk_into` for every piece, `finish` on `Done`.
fn relay(kind: ProviderKind, front: Front, upstream: &str) -> String {
    let mut d = StreamDecoder::new(kind);
    let mut e = StreamEncoder::new(front, "id-1".into(), "m".into(), true);
    let mut chunks = Vec::new();
    for part in upstream.as_bytes().chunks(5) {
        chunks.extend(d.feed(part).unwrap());
    }
    chunks.extend(d.end().unwrap());
    let mut out = e.start(d.input_tokens());
    let mut done = 0;
    for c in chunks {
        match c {
            Chunk::Done { finish, usage } => {
                out.push_str(&e.finish(&finish, usage, 1));
                done += 1;
            }
            other => e.chunk_into(&mut out, &other),
        }
    }
    assert_eq!(done, 1, "{kind:?} → {front:?}: one Done");
    out
}

/// What a client of `front` reads from `out`: text, calls (id, name, arguments
/// object) and the finish reason; checks the event grammar on the way (Anthropic
/// block indices: consecutive from 0, deltas and stops name the open block).
fn client_view(front: Front, out: &str) -> (String, Vec<(String, String, Value)>, String) {
    let mut text = String::new();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = String::new();
    match front {
        Front::OpenAi => {
            assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
            let mut by_index: Vec<usize> = Vec::new();
            for l in out.lines().filter_map(|l| l.strip_prefix("data: ")) {
                if l == "[DONE]" {
                    continue;
                }
                let v: Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["object"], "chat.completion.chunk");
                let Some(ch) = v["choices"].get(0) else {
                    continue;
                };
                if let Some(t) = ch["delta"]["content"].as_str() {
                    text.push_str(t);
                }
                for tc in ch["delta"]["tool_calls"].as_array().into_iter().flatten() {
                    let i = tc["index"].as_u64().unwrap() as usize;
                    if let Some(id) = tc["id"].as_str() {
                        assert_eq!(tc["type"], "function", "{l}");
                        assert!(!by_index.contains(&i), "call {i} started twice: {out}");
                        by_index.push(i);
                        calls.push((
                            id.into(),
                            tc["function"]["name"].as_str().unwrap().into(),
                            String::new(),
                        ));
                    }
                    let k = by_index
                        .iter()
                        .position(|x| *x == i)
                        .expect("arguments before the call's start");
                    calls[k]
                        .2
                        .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
                }
                if let Some(f) = ch["finish_reason"].as_str() {
                    finish = f.into();
                }
            }
        }
        Front::Anthropic => {
            let mut next = 0u64;
            let mut open: Option<(u64, bool)> = None; // (index, is tool)
            let mut names = Vec::new();
            for l in out.lines().filter_map(|l| l.strip_prefix("data: ")) {
                let v: Value = serde_json::from_str(l).unwrap();
                let ty = v["type"].as_str().unwrap().to_string();
                names.push(ty.clone());
                match ty.as_str() {
                    "content_block_start" => {
                        assert!(open.is_none(), "a block opened inside another: {out}");
                        assert_eq!(v["index"], next, "block indices run 0, 1, ..: {out}");
                        let cb = &v["content_block"];
                        let tool = cb["type"] == "tool_use";
                        if tool {
                            assert_eq!(cb["input"], json!({}));
                            calls.push((
                                cb["id"].as_str().unwrap().into(),
                                cb["name"].as_str().unwrap().into(),
                                String::new(),
                            ));
                        }
                        open = Some((next, tool));
                        next += 1;
                    }
                    "content_block_delta" => {
                        let (i, tool) = open.expect("delta outside a block");
                        assert_eq!(v["index"], i, "delta names the open block: {out}");
                        if tool {
                            assert_eq!(v["delta"]["type"], "input_json_delta");
                            calls
                                .last_mut()
                                .unwrap()
                                .2
                                .push_str(v["delta"]["partial_json"].as_str().unwrap());
                        } else {
                            assert_eq!(v["delta"]["type"], "text_delta");
                            text.push_str(v["delta"]["text"].as_str().unwrap());
                        }
                    }
                    "content_block_stop" => {
                        assert_eq!(
                            Some(v["index"].as_u64().unwrap()),
                            open.map(|o| o.0),
                            "{out}"
                        );
                        open = None;
                    }
                    "message_delta" => {
                        assert!(open.is_none(), "message_delta with a block open: {out}");
                        finish = v["delta"]["stop_reason"].as_str().unwrap().into();
                    }
                    _ => {}
                }
            }
            assert_eq!(names.first().map(String::as_str), Some("message_start"));
            assert_eq!(names.last().map(String::as_str), Some("message_stop"));
            if let Some(i) = names.iter().position(|n| n == "ping") {
                assert_eq!(
                    names[i - 1],
                    "content_block_start",
                    "ping after the first block start"
                );
            }
        }
        Front::Ollama => {
            let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
            for (n, l) in lines.iter().enumerate() {
                let v: Value = serde_json::from_str(l).unwrap();
                text.push_str(v["message"]["content"].as_str().unwrap());
                for tc in v["message"]["tool_calls"].as_array().into_iter().flatten() {
                    assert!(tc["function"]["arguments"].is_object(), "{l}");
                    calls.push((
                        String::new(),
                        tc["function"]["name"].as_str().unwrap().into(),
                        tc["function"]["arguments"].to_string(),
                    ));
                }
                assert_eq!(v["done"] == true, n == lines.len() - 1, "{out}");
                if v["done"] == true {
                    finish = v["done_reason"].as_str().unwrap().into();
                    assert_eq!(v["eval_count"], 9);
                }
            }
        }
    }
    let calls = calls
        .into_iter()
        .map(|(id, name, args)| {
            (
                id,
                name,
                serde_json::from_str(&args).unwrap_or_else(|e| panic!("{args:?}: {e}")),
            )
        })
        .collect();
    (text, calls, finish)
}

#[test]
fn tool_calls_stream_from_every_provider_kind_to_every_front() {
    for kind in [
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
        ProviderKind::Ollama,
    ] {
        for front in [Front::OpenAi, Front::Anthropic, Front::Ollama] {
            for with_text in [true, false] {
                let out = relay(kind, front, &provider_tool_stream(kind, with_text));
                let (text, calls, finish) = client_view(front, &out);
                let what = format!("{kind:?} → {front:?} (text: {with_text}):\n{out}");
                assert_eq!(
                    text,
                    if with_text {
                        "Let me check \"both\"."
                    } else {
                        ""
                    },
                    "{what}"
                );
                assert_eq!(calls.len(), 2, "{what}");
                assert_eq!(
                    (calls[0].1.as_str(), &calls[0].2),
                    ("get_weather", &json!({"city": "Oslo"})),
                    "{what}"
                );
                assert_eq!(
                    (calls[1].1.as_str(), &calls[1].2),
                    ("get_time", &json!({"tz": "CET"})),
                    "{what}"
                );
                match (kind, front) {
                    (_, Front::Ollama) => {}
                    (ProviderKind::OpenAi, _) => assert_eq!(
                        (calls[0].0.as_str(), calls[1].0.as_str()),
                        ("call_A", "call_B")
                    ),
                    (ProviderKind::Anthropic, _) => assert_eq!(
                        (calls[0].0.as_str(), calls[1].0.as_str()),
                        ("toolu_A", "toolu_B")
                    ),
                    (ProviderKind::Ollama, _) => {
                        assert!(
                            calls[0].0.starts_with("call_") && calls[0].0.len() > 8,
                            "{what}"
                        );
                        assert_ne!(calls[0].0, calls[1].0, "made-up ids are unique");
                    }
                }
                let want = match front {
                    Front::OpenAi => "tool_calls",
                    Front::Anthropic => "tool_use",
                    Front::Ollama => "stop",
                };
                assert_eq!(finish, want, "{what}");
            }
        }
    }
}

/// `[index, block type]` of every Anthropic `content_block_start` in `out`.
fn block_starts(out: &str) -> Vec<Value> {
    out.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "content_block_start")
        .map(|v| json!([v["index"], v["content_block"]["type"]]))
        .collect()
}

#[test]
fn anthropic_front_numbers_text_then_tool_blocks_and_tool_blocks_alone_from_zero() {
    let out = relay(
        ProviderKind::OpenAi,
        Front::Anthropic,
        &provider_tool_stream(ProviderKind::OpenAi, true),
    );
    let starts = block_starts(&out);
    assert_eq!(
        starts,
        vec![
            json!([0, "text"]),
            json!([1, "tool_use"]),
            json!([2, "tool_use"])
        ]
    );
    let out = relay(
        ProviderKind::Ollama,
        Front::Anthropic,
        &provider_tool_stream(ProviderKind::Ollama, false),
    );
    let starts = block_starts(&out);
    assert_eq!(starts, vec![json!([0, "tool_use"]), json!([1, "tool_use"])]);
    // a stream with nothing in it still has its one (empty) text block
    let mut e = StreamEncoder::new(Front::Anthropic, "id".into(), "m".into(), true);
    let s = format!(
        "{}{}",
        e.start(1),
        e.finish(&Finish::Stop, Usage::default(), 0)
    );
    assert!(
        s.contains("\"index\":0,\"content_block\":{\"type\":\"text\""),
        "{s}"
    );
    assert!(s.contains("content_block_stop\",\"index\":0"), "{s}");
}

#[test]
fn block_and_call_numbers_past_nine_are_written_whole() {
    // twelve calls: Anthropic blocks 10 and 11 carry their own index
    let mut e = StreamEncoder::new(Front::Anthropic, "id".into(), "m".into(), true);
    let mut out = e.start(0);
    for i in 0..12 {
        e.chunk_into(
            &mut out,
            &Chunk::ToolStart {
                index: i,
                id: format!("t{i}"),
                name: "f".into(),
            },
        );
        e.chunk_into(
            &mut out,
            &Chunk::ToolArgs {
                index: i,
                json: format!("{{\"n\":{i}}}"),
            },
        );
    }
    out.push_str(&e.finish(&Finish::ToolUse, Usage::default(), 0));
    let (_, calls, finish) = client_view(Front::Anthropic, &out);
    assert_eq!(calls.len(), 12);
    assert_eq!(calls[11].2, json!({"n": 11}));
    assert_eq!(finish, "tool_use");
}

#[test]
fn interleaved_calls_keep_their_arguments_and_ollama_holding_is_bounded() {
    // a provider that sends call 1 before call 0's last fragment
    let pieces = [
        Chunk::ToolStart {
            index: 0,
            id: "a".into(),
            name: "f".into(),
        },
        Chunk::ToolArgs {
            index: 0,
            json: "{\"x\":".into(),
        },
        Chunk::ToolStart {
            index: 1,
            id: "b".into(),
            name: "g".into(),
        },
        Chunk::ToolArgs {
            index: 1,
            json: "{\"y\":2}".into(),
        },
        Chunk::ToolArgs {
            index: 0,
            json: "1}".into(),
        },
    ];
    let mut e = StreamEncoder::new(Front::Anthropic, "id".into(), "m".into(), true);
    let mut out = e.start(0);
    for c in &pieces {
        e.chunk_into(&mut out, c);
    }
    out.push_str(&e.finish(&Finish::ToolUse, Usage::default(), 0));
    let late = out
        .lines()
        .filter(|l| l.contains("\"partial_json\":\"1}\""))
        .collect::<Vec<_>>();
    assert_eq!(late.len(), 1, "{out}");
    assert!(
        late[0].contains("\"index\":0"),
        "the late fragment names call 0's block: {out}"
    );
    let mut e = StreamEncoder::new(Front::Ollama, "id".into(), "m".into(), true);
    let mut out = String::new();
    for c in &pieces {
        e.chunk_into(&mut out, c);
    }
    out.push_str(&e.finish(&Finish::ToolUse, Usage::default(), 0));
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        v["message"]["tool_calls"][0]["function"]["arguments"],
        json!({"x": 1})
    );
    assert_eq!(
        v["message"]["tool_calls"][1]["function"]["arguments"],
        json!({"y": 2})
    );
    // more arguments than the Ollama encoder holds: the stream ends in an error line
    let mut e = StreamEncoder::new(Front::Ollama, "id".into(), "m".into(), true);
    let mut out = String::new();
    e.chunk_into(
        &mut out,
        &Chunk::ToolStart {
            index: 0,
            id: "a".into(),
            name: "f".into(),
        },
    );
    let big = "x".repeat(1 << 20);
    for _ in 0..5 {
        e.chunk_into(
            &mut out,
            &Chunk::ToolArgs {
                index: 0,
                json: big.clone(),
            },
        );
    }
    assert!(out.is_empty());
    let end = e.finish(&Finish::ToolUse, Usage::default(), 0);
    let v: Value = serde_json::from_str(end.trim()).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("tool call arguments passed"),
        "{end}"
    );
}

#[test]
fn openai_tool_chunks_are_written_without_json_trees_and_escape() {
    let mut e = StreamEncoder::new(Front::OpenAi, "id".into(), "m".into(), false);
    let mut s = String::new();
    e.chunk_into(
        &mut s,
        &Chunk::ToolStart {
            index: 0,
            id: "c\"1".into(),
            name: "f".into(),
        },
    );
    e.chunk_into(
        &mut s,
        &Chunk::ToolArgs {
            index: 0,
            json: "{\"a\":\"x\\ny\"}".into(),
        },
    );
    let pieces: Vec<Value> = s
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(pieces.len(), 3, "{s}"); // role chunk, start, arguments
    assert_eq!(
        pieces[1]["choices"][0]["delta"]["tool_calls"][0]["id"],
        "c\"1"
    );
    assert_eq!(
        pieces[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
        ""
    );
    assert_eq!(
        pieces[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
        "{\"a\":\"x\\ny\"}"
    );
    assert!(pieces[2]["choices"][0]["finish_reason"].is_null());
}

#[test]
fn decoders_refuse_runaway_or_orphan_tool_pieces() {
    let mut d = StreamDecoder::new(ProviderKind::OpenAi);
    let e = d
        .feed(b"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":100000,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n")
        .unwrap_err();
    assert!(e.to_string().contains("tool call index 100000"), "{e}");
    let mut d = StreamDecoder::new(ProviderKind::Anthropic);
    let e = d
        .feed(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n")
        .unwrap_err();
    assert!(e.to_string().contains("content block 3"), "{e}");
    // an Ollama answer that only calls a tool ends as a tool-use stop
    let mut d = StreamDecoder::new(ProviderKind::Ollama);
    let got = d
        .feed(provider_tool_stream(ProviderKind::Ollama, false).as_bytes())
        .unwrap();
    assert!(
        matches!(
            got.last(),
            Some(Chunk::Done {
                finish: Finish::ToolUse,
                ..
            })
        ),
        "{got:?}"
    );
}
