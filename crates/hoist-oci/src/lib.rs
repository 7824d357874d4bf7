//! Container images without a daemon: references, manifests, deterministic layers,
//! a registry client that pushes only what is missing, copies, and a local image store.
//!
//! Entry points:
//! - [`build_and_push`] (a [`BuildSpec`]: base + layers + config changes → registry), and
//!   [`build::build_to_store`] (the same into the [`LocalStore`], no registry needed);
//! - [`copy()`] between registries and OCI layout directories ([`Location`]);
//! - [`LocalStore`]: `open`/`open_default`, `pull`, `put_image`, `resolve`, `blob_path`;
//! - [`dockerfile::build_and_push_dockerfile`] for `dockerfile:` services;
//! - [`RegistryClient`] for everything lower level. Call [`client::install_crypto_provider`]
//!   once at start-up (the client does it too): rustls uses `ring` only.

pub mod auth;
pub mod build;
pub mod client;
pub mod copy;
pub mod digest;
pub mod dockerfile;
pub mod error;
pub mod layer;
pub mod layout;
pub mod manifest;
pub mod reference;
pub mod store;
pub mod verified_body;

pub use build::{BuildOptions, BuildSpec, PushReport, build_and_push};
pub use client::{ClientOptions, RegistryClient};
pub use copy::{CopyOptions, CopyReport, Location, copy};
pub use digest::Digest;
pub use error::{Error, Result};
pub use indicatif;
pub use layer::{BuiltLayer, LayerBuilder, LayerSpec};
pub use layout::OciLayout;
pub use manifest::{Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform, RawManifest};
pub use reference::Reference;
pub use store::{LocalStore, ResolvedImage};

/// Run a future to completion on a fresh multi-threaded runtime (for synchronous callers
/// such as CLI commands).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}
