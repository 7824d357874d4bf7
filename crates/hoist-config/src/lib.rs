//! Project model: hoist.yaml, service manifests, molds, settings overlay, render.
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
pub mod project;
pub mod render;
pub mod scaffold;
pub mod tag;
pub mod yaml;

pub use error::{ConfigError, ConfigErrors, ErrorKind, Location};
pub use files::{LayerFile, layer_files};
pub use manifest::{
    HelmSpec, ImageSource, ImageSpec, LayerSpec, LiveUpdate, PortSpec, ProjectFile, RunRule,
    ServiceFile, SyncRule,
};
pub use mold::{Mold, MoldFile, ParamType, Parameter};
pub use overlay::{SetOverride, SettingsFile, SettingsOverlay, merge};
pub use project::{PROJECT_FILE, Project, SERVICE_FILE, Service, find_root};
pub use render::{RenderOptions, RenderedObject, SERVICE_LABEL, render, to_json, to_yaml};
pub use tag::content_tags;
