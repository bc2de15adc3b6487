//! The client side: what a client sends (parse), and what it gets back, whole
//! (render) or streamed (encode).

pub mod encode;
pub mod models;
pub mod parse;
pub mod render;
