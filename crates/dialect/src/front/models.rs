//! The model list each API serves: OpenAI's and Anthropic's `GET /v1/models`,
//! Ollama's `GET /api/tags`.

use crate::canonical::Front;
use crate::time::{now_secs, rfc3339_now};
use serde_json::{json, Value};

/// The list of `ids` in the API's own shape; `owner` is OpenAI's `owned_by`.
pub fn render_models(front: Front, ids: &[&str], owner: &str) -> Value {
    match front {
        Front::OpenAi => {
            let created = now_secs();
            json!({
                "object": "list",
                "data": ids.iter().map(|id| json!({
                    "id": id, "object": "model", "created": created, "owned_by": owner,
                })).collect::<Vec<_>>(),
            })
        }
        Front::Anthropic => {
            let at = rfc3339_now();
            json!({
                "data": ids.iter().map(|id| json!({
                    "type": "model", "id": id, "display_name": id, "created_at": at,
                })).collect::<Vec<_>>(),
                "has_more": false,
                "first_id": ids.first(),
                "last_id": ids.last(),
            })
        }
        Front::Ollama => {
            let at = rfc3339_now();
            json!({
                "models": ids.iter().map(|id| json!({
                    "name": id, "model": id, "modified_at": at, "size": 0, "digest": "",
                    "details": {"format": "", "family": "", "parameter_size": "", "quantization_level": ""},
                })).collect::<Vec<_>>(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_lists_the_models_in_its_shape() {
        let ids = ["a", "b"];
        let o = render_models(Front::OpenAi, &ids, "me");
        assert_eq!(o["object"], "list");
        assert_eq!(o["data"][1]["id"], "b");
        assert_eq!(o["data"][0]["owned_by"], "me");
        let a = render_models(Front::Anthropic, &ids, "me");
        assert_eq!(a["data"][0]["type"], "model");
        assert_eq!(
            (a["first_id"].as_str(), a["last_id"].as_str()),
            (Some("a"), Some("b"))
        );
        assert_eq!(a["has_more"], false);
        let l = render_models(Front::Ollama, &ids, "me");
        assert_eq!(l["models"][1]["name"], "b");
        assert_eq!(
            render_models(Front::Anthropic, &[], "me")["first_id"],
            Value::Null
        );
    }
}
