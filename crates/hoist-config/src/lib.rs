//! Project model: hoist.yaml, service manifests, molds, settings overlay, render.
//!
//! - [`Project::discover`] / [`Project::discover_with`] (with `--set` overrides)
//!   finds `hoist.yaml` by walking up and loads every service with its values
//!   resolved through the overlay (see [`overlay`]).
//! - [`Project::validate`] returns every problem as a located [`ConfigError`].
//! - [`render()`] produces the Kubernetes objects in a deterministic order.
//! - For image builds: [`Service::image`] (the `image:` section),
//!   [`layer_entries`] (exactly the entries a layer writes, after include/exclude),
//!   [`image_refs`] / [`Project::image_ref`] (the references `render` uses),
//!   [`Project::base_service`] (an image built on another service's image).
//!
//! ```no_run
//! use hoist_config::{Project, RenderOptions, render};
//! let project = Project::discover(std::path::Path::new(".")).unwrap();
//! for problem in project.validate() {
//!     eprintln!("{problem}");
//! }
//! let objects = render(&project, &RenderOptions::default()).unwrap();
//! print!("{}", hoist_config::to_yaml(&objects));
//! ```

mod checks;
pub mod error;
pub mod external;
pub mod files;
pub mod manifest;
pub mod mold;
pub mod names;
pub mod overlay;
pub mod partial;
pub mod project;
pub mod render;
pub mod scaffold;
pub mod tag;
pub mod yaml;

pub use error::{ConfigError, ConfigErrors, ErrorKind, Location};
pub use files::{LayerEntriesError, layer_entries};
pub use manifest::{
    HelmSpec, ImagePath, ImageSource, ImageSpec, LayerSpec, LiveUpdate, PortSpec, ProjectFile,
    RunRule, ServiceFile, SyncRule, TestStep, parse_duration,
};
pub use mold::{Mold, MoldFile, ParamType, Parameter};
pub use overlay::{SetOverride, SettingsFile, SettingsOverlay, merge};
pub use partial::{InvalidService, PartialProject};
pub use project::{PROJECT_FILE, Project, SERVICE_FILE, Service, find_root};
pub use render::{
    RenderOptions, RenderedObject, SERVICE_LABEL, image_refs, render, to_json, to_yaml,
};
pub use tag::content_tags;
