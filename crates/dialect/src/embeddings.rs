//! Embeddings: the OpenAI front (`POST /v1/embeddings`) and two provider formats,
//! OpenAI-compatible (`POST {base_url}/embeddings`, Azure OpenAI too) and Ollama
//! (`POST /api/embed`). An OpenAI-compatible provider gets the client's body with the
//! model replaced and its answer goes back as it came; an Ollama answer is rendered
//! as OpenAI's `list` of `embedding`s, in floats or in base64 (little-endian f32,
//! what OpenAI sends for `encoding_format: "base64"`).

use crate::error::{garbage, ApiError, DecodeError, ErrorKind};
use crate::ProviderKind;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// How the client wants the vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    Base64,
}

/// A parsed `/v1/embeddings` request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRequest {
    pub model: String,
    /// The texts, or `None` when the input is token arrays (which only an
    /// OpenAI-compatible provider takes).
    pub texts: Option<Vec<String>>,
    pub encoding: Encoding,
    pub dimensions: Option<u64>,
    /// The body as sent, for an OpenAI-compatible provider.
    raw: Map<String, Value>,
}

/// The most inputs one request may carry (OpenAI's own limit).
pub const MAX_INPUTS: usize = 2048;

/// Reads an OpenAI embeddings request: `model`, `input` (a string, strings, tokens
/// or token arrays), optional `encoding_format` and `dimensions`.
pub fn parse_embedding_request(body: &[u8]) -> Result<EmbeddingRequest, ApiError> {
    let raw: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("the body is not a JSON object: {e}")))?;
    let model = match raw.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(ApiError::bad("model: required, a non-empty string")),
    };
    let texts = match raw.get("input") {
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(ApiError::bad("input: must not be an empty array"))
        }
        Some(Value::Array(a)) if a.len() > MAX_INPUTS => {
            return Err(ApiError::bad(format!(
                "input: at most {MAX_INPUTS} items (got {})",
                a.len()
            )))
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Some(
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        Some(Value::Array(a))
            if a.iter().all(|v| {
                v.is_u64()
                    || v.as_array()
                        .is_some_and(|t| !t.is_empty() && t.iter().all(Value::is_u64))
            }) =>
        {
            None
        }
        _ => {
            return Err(ApiError::bad(
                "input: a string, an array of strings, or token arrays",
            ))
        }
    };
    let encoding = match raw.get("encoding_format") {
        None | Some(Value::Null) => Encoding::Float,
        Some(Value::String(s)) if s == "float" => Encoding::Float,
        Some(Value::String(s)) if s == "base64" => Encoding::Base64,
        _ => return Err(ApiError::bad("encoding_format: \"float\" or \"base64\"")),
    };
    let dimensions = match raw.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Some(n),
            _ => return Err(ApiError::bad("dimensions: a positive integer")),
        },
    };
    Ok(EmbeddingRequest {
        model,
        texts,
        encoding,
        dimensions,
        raw,
    })
}

/// The path (after the provider's base URL) of its embeddings endpoint; `None` for
/// a provider without one (Anthropic).
pub fn embeddings_path(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::OpenAi => Some("/embeddings"),
        ProviderKind::Ollama => Some("/api/embed"),
        ProviderKind::Anthropic => None,
    }
}

/// The body to send to a provider of `kind` for model `model`.
pub fn provider_embedding_request(
    kind: ProviderKind,
    req: &EmbeddingRequest,
    model: &str,
) -> Result<Vec<u8>, ApiError> {
    let v = match kind {
        ProviderKind::OpenAi => {
            let mut raw = req.raw.clone();
            raw.insert("model".into(), Value::String(model.to_string()));
            Value::Object(raw)
        }
        ProviderKind::Ollama => {
            let Some(texts) = &req.texts else {
                return Err(ApiError::bad(
                    "input: token arrays can go only to an OpenAI-compatible provider; send text",
                ));
            };
            let mut v = json!({"model": model, "input": texts});
            if let Some(d) = req.dimensions {
                v["dimensions"] = json!(d);
            }
            v
        }
        ProviderKind::Anthropic => {
            return Err(ApiError::new(
                ErrorKind::InvalidRequest,
                "anthropic has no embeddings endpoint",
            ))
        }
    };
    serde_json::to_vec(&v).map_err(|e| ApiError::bad(e.to_string()))
}

/// A provider's embeddings answer: as it came (OpenAI-compatible), or rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingAnswer {
    /// The body for the client, in OpenAI's shape.
    pub body: Vec<u8>,
    pub prompt_tokens: u64,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

#[derive(Deserialize)]
struct OpenAiPeek {
    data: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
}

#[derive(Deserialize)]
struct OllamaEmbed {
    embeddings: Vec<Vec<f32>>,
    #[serde(default)]
    prompt_eval_count: u64,
}

/// Reads a provider's embeddings answer for the client who asked `req` of `alias`
/// (the model name the client sent, which an Ollama answer is rendered with).
pub fn parse_provider_embeddings(
    kind: ProviderKind,
    body: &[u8],
    req: &EmbeddingRequest,
) -> Result<EmbeddingAnswer, DecodeError> {
    match kind {
        ProviderKind::OpenAi => {
            let peek: OpenAiPeek = serde_json::from_slice(body)
                .map_err(|e| garbage(kind, format!("not an embeddings list: {e}")))?;
            let _ = peek.data;
            Ok(EmbeddingAnswer {
                body: body.to_vec(),
                prompt_tokens: peek.usage.map_or(0, |u| u.prompt_tokens),
            })
        }
        ProviderKind::Ollama => {
            let e: OllamaEmbed = serde_json::from_slice(body)
                .map_err(|e| garbage(kind, format!("not an /api/embed answer: {e}")))?;
            let data: Vec<Value> = e
                .embeddings
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let embedding = match req.encoding {
                        Encoding::Float => json!(v),
                        Encoding::Base64 => {
                            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                            json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                        }
                    };
                    json!({"object": "embedding", "index": i, "embedding": embedding})
                })
                .collect();
            let v = json!({
                "object": "list",
                "data": data,
                "model": req.model,
                "usage": {"prompt_tokens": e.prompt_eval_count, "total_tokens": e.prompt_eval_count},
            });
            Ok(EmbeddingAnswer {
                body: serde_json::to_vec(&v).map_err(|e| garbage(kind, e.to_string()))?,
                prompt_tokens: e.prompt_eval_count,
            })
        }
        ProviderKind::Anthropic => Err(garbage(kind, "anthropic has no embeddings endpoint")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_openai_input_form_is_read() {
        let r = parse_embedding_request(br#"{"model":"e","input":"hi"}"#).unwrap();
        assert_eq!(r.texts, Some(vec!["hi".to_string()]));
        assert_eq!(r.encoding, Encoding::Float);
        let r = parse_embedding_request(
            br#"{"model":"e","input":["a","b"],"encoding_format":"base64","dimensions":8}"#,
        )
        .unwrap();
        assert_eq!(r.texts.as_ref().map(Vec::len), Some(2));
        assert_eq!((r.encoding, r.dimensions), (Encoding::Base64, Some(8)));
        let r = parse_embedding_request(br#"{"model":"e","input":[[1,2],[3]]}"#).unwrap();
        assert_eq!(r.texts, None);
        let r = parse_embedding_request(br#"{"model":"e","input":[1,2,3]}"#).unwrap();
        assert_eq!(r.texts, None);
        for bad in [
            r#"{"input":"x"}"#,
            r#"{"model":"e"}"#,
            r#"{"model":"e","input":[]}"#,
            r#"{"model":"e","input":[1,"a"]}"#,
            r#"{"model":"e","input":"x","encoding_format":"hex"}"#,
            r#"{"model":"e","input":"x","dimensions":0}"#,
        ] {
            let e = parse_embedding_request(bad.as_bytes()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn an_openai_provider_gets_the_body_with_its_model_and_answers_through() {
        let r = parse_embedding_request(br#"{"model":"embed","input":["a"],"user":"u1"}"#).unwrap();
        let b =
            provider_embedding_request(ProviderKind::OpenAi, &r, "text-embedding-3-small").unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["model"], "text-embedding-3-small");
        assert_eq!(v["user"], "u1");
        let answer = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":3,"total_tokens":3}}"#;
        let a = parse_provider_embeddings(ProviderKind::OpenAi, answer, &r).unwrap();
        assert_eq!(a.body, answer.to_vec());
        assert_eq!(a.prompt_tokens, 3);
        assert!(parse_provider_embeddings(ProviderKind::OpenAi, b"{}", &r).is_err());
    }

    #[test]
    fn an_ollama_answer_is_rendered_in_floats_or_base64() {
        let r = parse_embedding_request(br#"{"model":"embed","input":["a","b"],"dimensions":2}"#)
            .unwrap();
        let b = provider_embedding_request(ProviderKind::Ollama, &r, "nomic-embed-text").unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            v,
            json!({"model": "nomic-embed-text", "input": ["a", "b"], "dimensions": 2})
        );
        let answer = br#"{"model":"nomic-embed-text","embeddings":[[0.5,-1.0],[0.25,2.0]],"prompt_eval_count":4}"#;
        let a = parse_provider_embeddings(ProviderKind::Ollama, answer, &r).unwrap();
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "embed");
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][1]["embedding"], json!([0.25, 2.0]));
        assert_eq!(v["usage"]["prompt_tokens"], 4);
        assert_eq!(a.prompt_tokens, 4);

        let r =
            parse_embedding_request(br#"{"model":"embed","input":"a","encoding_format":"base64"}"#)
                .unwrap();
        let a =
            parse_provider_embeddings(ProviderKind::Ollama, br#"{"embeddings":[[1.0,-2.5]]}"#, &r)
                .unwrap();
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let floats: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(floats, [1.0, -2.5]);

        let tokens = parse_embedding_request(br#"{"model":"e","input":[[1,2]]}"#).unwrap();
        assert!(provider_embedding_request(ProviderKind::Ollama, &tokens, "m").is_err());
        assert!(embeddings_path(ProviderKind::Anthropic).is_none());
    }
}
