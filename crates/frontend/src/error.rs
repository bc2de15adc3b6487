//! Errors of the frontend engine: bad input (a missing build, manifest or flag
//! value), or a browser that could not be started or driven.

#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// A path, file or value given by the user; the message names it.
    #[error("{0}")]
    Input(String),
    /// Chromium is not installed where it was looked for.
    #[error("{0}")]
    NoBrowser(String),
    /// The browser started but a DevTools command or the page failed.
    #[error("{0}")]
    Browser(String),
}
