//! Collect: the only I/O of `apm report`, `apm endpoint` and `apm analyze`. The
//! running receiver's summary API ([`receiver`]), an OTLP/JSON export on disk
//! ([`file`]) and the saved provider baseline ([`baseline`]).

pub mod baseline;
pub mod file;
pub mod receiver;
