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
