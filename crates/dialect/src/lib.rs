//! The chat dialects of LLM APIs: OpenAI (`/v1/chat/completions`), Anthropic
//! (`/v1/messages`) and Ollama (`/api/chat`), each as a front (what clients send and
//! receive) and as a provider (what is sent upstream and read back), streaming
//! included. Pure functions, no I/O.
//!
//! Everything goes through the [`canonical`] types: a front request is parsed into a
//! [`ChatRequest`], rendered for a provider, and the provider's answer (whole or as a
//! stream of [`Chunk`]s) is rendered or encoded for the front. When both sides speak
//! the same format, [`passthrough`] forwards the bodies without building a DOM.

pub mod canonical;
pub mod embeddings;
pub mod error;
pub mod front;
pub mod passthrough;
pub mod provider;
mod time;
mod tool_calls;

pub use canonical::{
    ChatRequest, ChatResponse, Chunk, Finish, Front, Image, Message, ProviderKind, ToolCall,
    ToolChoice, ToolDef, Usage,
};
pub use embeddings::{
    embeddings_path, parse_embedding_request, parse_provider_embeddings,
    provider_embedding_request, EmbeddingAnswer, EmbeddingRequest, Encoding,
};
pub use error::{ApiError, DecodeError, ErrorKind};
pub use front::encode::StreamEncoder;
pub use front::models::render_models;
pub use front::parse::parse_request;
pub use front::render::render_response;
pub use passthrough::{peek_provider_response, peek_request, same_format, Peeked, RawRequest};
pub use provider::decode::StreamDecoder;
pub use provider::request::{
    check_images, check_request, has_provider_limits, provider_path, provider_request,
};
pub use provider::response::{parse_provider_response, provider_error_message};
pub use provider::wire::ChunkSink;
