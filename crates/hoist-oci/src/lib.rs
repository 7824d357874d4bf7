//! Container images without a daemon: references, manifests, deterministic layers,
//! a registry client that pushes only what is missing, copies, and a local image store.

pub mod digest;
pub mod error;
pub mod layer;
pub mod manifest;
pub mod reference;

pub use digest::Digest;
pub use error::{Error, Result};
pub use layer::{Layer, LayerBuilder, LayerSpec};
pub use manifest::{Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform, RawManifest};
pub use reference::Reference;
pub mod auth;
pub mod client;
pub use client::{ClientOptions, RegistryClient};
pub mod layout;
pub mod store;
pub use layout::OciLayout;
pub use store::{LocalStore, ResolvedImage};
pub mod build;
pub use build::{BuildOptions, BuildSpec, PushReport, build_and_push};
pub mod copy;
pub use copy::{CopyOptions, CopyReport, Location, copy};
pub mod dockerfile;

/// Run a future to completion on a fresh multi-threaded runtime (for synchronous callers
/// such as CLI commands).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}
pub use indicatif;
