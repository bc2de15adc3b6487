//! The provider side: what the gateway sends upstream (request) and reads back,
//! whole (response) or streamed (decode).

pub mod decode;
pub mod request;
pub mod response;
pub mod wire;
