//! Errors of the database engine, split the way collectors fail: the input was wrong
//! (`Config`), the server could not be reached or refused us (`Connect`), a query
//! failed (`Query`), or an answer could not be understood (`Parse`). Every message
//! is already redacted: no password ever appears in one.

use powertune_core::redact::Secrets;

/// What went wrong, in one line that names the input and an example of a right one.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Config(String),
    #[error("cannot connect to PostgreSQL at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("query `{what}` failed on {url}: {reason}")]
    Query {
        what: String,
        url: String,
        reason: String,
    },
    #[error("{0}")]
    Parse(String),
}

/// A tokio-postgres error on one line: its kind, the server's message (severity,
/// text, SQLSTATE) or the I/O cause. `secrets` are replaced by `***`.
pub fn describe(e: &tokio_postgres::Error, secrets: &Secrets) -> String {
    let mut text = if let Some(db) = e.as_db_error() {
        format!(
            "{} {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        )
    } else {
        let mut s = e.to_string();
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            let cs = c.to_string();
            if !s.contains(&cs) {
                s.push_str(": ");
                s.push_str(&cs);
            }
            cause = c.source();
        }
        s
    };
    if let Some(db) = e.as_db_error() {
        if let Some(hint) = db.hint() {
            text.push_str(&format!(" hint: {hint}"));
        }
    }
    secrets.scrub(&text.replace('\n', " "))
}
