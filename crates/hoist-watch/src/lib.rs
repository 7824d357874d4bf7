//! File watching for the dev loop (`hoist up`).
//!
//! - [`Watcher`]: debounced inotify batches of changed and deleted paths,
//!   honouring `.gitignore`/`.dockerignore`/`.hoistignore` and skipping `.git`,
//!   `target/` and `node_modules/` (no watches are spent on ignored trees).

pub mod classify;
pub mod error;
pub mod ignore_rules;
pub mod reload;
pub mod watcher;

pub use classify::{Action, Classifier, Plan, RebuildReason, ServicePlan, SyncCopy};
pub use error::WatchError;
pub use ignore_rules::{DEFAULT_IGNORES, IGNORE_FILES};
pub use reload::{ReloadOutcome, Reloader, ServiceChange};
pub use watcher::{Batch, WatchOptions, Watcher};
