//! One error type for the crate: every variant says what failed and, where it helps, what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "runc was not found (looked for {looked:?}); install runc (apt-get install runc) or set HOIST_RUNC to its path"
    )]
    RuncMissing { looked: String },
    #[error(
        "running containers needs root (uid 0), this process runs as uid {uid}; run hoist with sudo (e.g. `sudo -E hoist cluster up`)"
    )]
    NotRoot { uid: u32 },
    #[error("runc {args} failed (exit {code:?}): {stderr}")]
    Runc {
        args: String,
        code: Option<i32>,
        stderr: String,
    },
    #[error("image {image}: {reason}")]
    Image { image: String, reason: String },
    #[error("layer {layer}: {reason}")]
    Layer { layer: String, reason: String },
    #[error("container spec for {container:?}: {reason}")]
    Spec { container: String, reason: String },
    #[error("container {id:?} is not known to runc (root {root})")]
    NoSuchContainer { id: String, root: PathBuf },
    #[error("network namespace {name:?}: {reason}")]
    Netns { name: String, reason: String },
    #[error("the pod IP pool {pool} is exhausted ({used} addresses in use)")]
    IpPoolExhausted { pool: String, used: usize },
    #[error("timed out after {secs:.1}s waiting for {what}")]
    Timeout { what: String, secs: f64 },
    #[error(transparent)]
    Oci(#[from] hoist_oci::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a human context to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: f().into(),
            source,
        })
    }
}
