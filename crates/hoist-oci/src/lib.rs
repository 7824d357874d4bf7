//! Container images without a daemon: references, manifests, deterministic layers,
//! a registry client that pushes only what is missing, copies, and a local image store.
//!
//! Entry points:
//! - [`build_and_push`] (a [`BuildSpec`]: base + layers + config changes → registry), and
//!   [`build::build_to_store`] / [`build::build_to_layout`] (the same into the
//!   [`LocalStore`] or an OCI layout, no registry needed; the base may be a layout too);
//! - [`copy()`] between registries and OCI layout directories ([`Location`]); into a
//!   user's layout, Docker-typed manifests get OCI media types ([`convert`]);
//! - [`LocalStore`]: `open`/`open_default`, `pull`, `put_image`, `resolve`, `blob_path`;
//! - [`dockerfile::build_and_push_dockerfile`] for `dockerfile:` services;
//! - [`RegistryClient`] for everything lower level. Call [`client::install_crypto_provider`]
//!   once at start-up (the client does it too): rustls uses `ring` only.

pub mod auth;
pub mod blob_locations;
pub mod build;
pub mod client;
pub mod convert;
pub mod copy;
pub mod digest;
pub mod dockerfile;
pub mod error;
pub mod layer;
pub mod layout;
mod lost_blobs;
pub mod manifest;
pub mod progress;
pub mod reference;
pub mod stop_signal;
pub mod store;
pub mod stored_blob;
pub mod temp_lock;
mod tls;
pub mod verified_body;
mod watch;

pub use build::{BuildOptions, BuildSpec, PushReport, build_and_push};
pub use client::{ClientOptions, RegistryClient};
pub use copy::{CopyOptions, CopyReport, Location, copy};
pub use digest::Digest;
pub use error::{CorruptFate, Error, Result};
pub use indicatif;
pub use layer::{BuiltLayer, LayerBuilder, LayerSpec};
pub use layout::OciLayout;
pub use manifest::{Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform, RawManifest};
pub use reference::Reference;
pub use stop_signal::{StopSignal, StopSignals};
pub use store::{LocalStore, Pulled, ResolvedImage};

/// Every result of `tasks` (in completion order), or the first error. After an error the
/// other tasks are aborted and, like blocking tasks that cannot be, waited for: nothing
/// they started (a temp file, a transfer) outlives the call. `what` names the tasks in the
/// error for one that panicked.
pub(crate) async fn join_all<T: 'static>(
    mut tasks: tokio::task::JoinSet<Result<T>>,
    what: &str,
) -> Result<Vec<T>> {
    let mut done = Vec::new();
    let mut failed = None;
    while let Some(r) = tasks.join_next().await {
        let e = match r {
            Ok(Ok(v)) => {
                done.push(v);
                continue;
            }
            Err(e) if e.is_cancelled() => continue,
            Ok(Err(e)) => e,
            Err(e) => Error::Invalid(format!("{what} task failed: {e}")),
        };
        if failed.is_none() {
            tasks.abort_all();
            failed = Some(e);
        }
    }
    failed.map_or(Ok(done), Err)
}

/// Run a future to completion on a fresh multi-threaded runtime (for synchronous callers
/// such as CLI commands).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// [`block_on`] for work that Ctrl-C or SIGTERM may stop: on either, `f` is dropped, which
/// cancels its layer builds and blob transfers (they remove their temp files before the
/// runtime is gone), and the result is [`Error::Cancelled`] naming `what` ("copying A to
/// B") and the signal. Without this, the signal would end the process at once and leave
/// partly written files behind. Every command that writes blobs runs through it.
pub fn block_on_interruptible<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    block_on(async {
        let mut stop = StopSignals::install().map_err(|e| Error::Io {
            context: "installing the SIGINT/SIGTERM handler".into(),
            source: e,
        })?;
        tokio::select! {
            r = f => r,
            by = stop.recv() => Err(Error::Cancelled { what: what.into(), by: Some(by) }),
        }
    })
}
