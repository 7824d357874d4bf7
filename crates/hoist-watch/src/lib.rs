//! File watching for the dev loop (`hoist up`).
//!
//! - [`Watcher`]: debounced inotify batches of changed and deleted paths,
//!   honouring `.gitignore`/`.dockerignore`/`.hoistignore` and skipping `.git`,
//!   `target/` and `node_modules/` (no watches are spent on ignored trees).
//! - [`Classifier`]: what a batch means per service — [`Action::Sync`] (with
//!   container paths, deletes and matching `run` steps), [`Action::Rebuild`]
//!   (naming the image input), [`Action::Rerender`] — or a project reload.
//! - [`Reloader`]: re-loads the project tolerating broken services, and tells
//!   added / removed / changed (by render and image fingerprints) / invalid.
//! - [`DevLoopInput`]: the three together as one async stream of [`Update`]s.

pub mod classify;
pub mod devloop;
pub mod error;
pub mod ignore_rules;
pub mod reload;
pub mod watcher;

pub use classify::{Action, Classifier, Plan, RebuildReason, ServicePlan, SyncCopy};
pub use devloop::{DevLoopInput, StartError, Update};
pub use error::WatchError;
pub use ignore_rules::{DEFAULT_IGNORES, IGNORE_FILES};
pub use reload::{ReloadOutcome, Reloader, ServiceChange};
pub use watcher::{Batch, WatchOptions, Watcher};
