//! [`DevLoopInput`]: everything the dev loop reacts to, as one async stream.
//! It owns the watcher, the project reloader and the classifier, and turns each
//! batch of file changes into an [`Update`]: the per-service plan and, when
//! config changed, the reload outcome (added / removed / changed / invalid).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hoist_watch::{DevLoopInput, WatchOptions};
//! let (mut input, first) =
//!     DevLoopInput::start(std::path::Path::new("."), vec![], WatchOptions::default()).await?;
//! // deploy first.added …
//! while let Some(update) = input.next().await {
//!     let update = update?; // a WatchError is not fatal: show it and go on
//!     if let Some(Ok(reload)) = &update.reload { /* added, removed, changed, invalid */ }
//!     for (service, plan) in &update.plan.services { /* sync / rebuild / rerender */ }
//! }
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

use hoist_config::{ConfigErrors, Project, SetOverride};

use crate::classify::{Classifier, Plan};
use crate::error::WatchError;
use crate::reload::{ReloadOutcome, Reloader};
use crate::watcher::{Batch, WatchOptions, Watcher};

/// What one batch of file changes means.
#[derive(Debug)]
pub struct Update {
    /// The files, as the watcher reported them.
    pub batch: Batch,
    /// Per-service actions, classified against the project as it is after the
    /// reload (if any). Services just added by the reload are left out: they
    /// are deployed whole.
    pub plan: Plan,
    /// Present when config changed: the reload's outcome, or the project-level
    /// errors that stopped it (the previous project stays in force).
    pub reload: Option<Result<ReloadOutcome, ConfigErrors>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Watch(#[from] WatchError),
}

/// The dev loop's input: file batches merged with project reloads.
pub struct DevLoopInput {
    watcher: Watcher,
    reloader: Option<Reloader>,
    classifier: Classifier,
    project: Arc<Project>,
    /// Protected paths given by the caller (config inputs are added to them).
    protected: Vec<std::path::PathBuf>,
}

impl DevLoopInput {
    /// Loads the project at `root` (the directory holding hoist.yaml) and starts
    /// watching it. Returns the first load's outcome (every enabled service in
    /// `added`, broken ones in `invalid`).
    pub async fn start(
        root: &Path,
        overrides: Vec<SetOverride>,
        opts: WatchOptions,
    ) -> Result<(DevLoopInput, ReloadOutcome), StartError> {
        let root = root.to_path_buf();
        let protected = opts.protected.clone();
        let (reloader, outcome, classifier, watcher) = tokio::task::spawn_blocking(move || {
            let mut reloader = Reloader::new(&root, overrides);
            let outcome = reloader.reload()?;
            let classifier = Classifier::new(&outcome.project, &outcome.invalid_dirs());
            let mut opts = opts;
            opts.protected.extend(classifier.protected_paths());
            let watcher = Watcher::start(&outcome.project.root, opts)?;
            Ok::<_, StartError>((reloader, outcome, classifier, watcher))
        })
        .await
        .map_err(|e| WatchError::Io {
            path: Default::default(),
            source: std::io::Error::other(e),
        })??;
        let project = outcome.project.clone();
        Ok((
            DevLoopInput {
                watcher,
                reloader: Some(reloader),
                classifier,
                project,
                protected,
            },
            outcome,
        ))
    }

    /// The project in force (valid services only).
    pub fn project(&self) -> &Arc<Project> {
        &self.project
    }

    pub fn watcher(&self) -> &Watcher {
        &self.watcher
    }

    /// The next update; `None` when watching has stopped. Batches that mean
    /// nothing to any service and no config are skipped.
    pub async fn next(&mut self) -> Option<Result<Update, WatchError>> {
        loop {
            let batch = match self.watcher.next().await? {
                Ok(b) => b,
                Err(e) => return Some(Err(e)),
            };
            let plan = self.classifier.classify(&batch);
            if !plan.needs_reload() {
                if plan.services.is_empty() {
                    tracing::trace!(ignored = plan.ignored.len(), "batch means nothing");
                    continue;
                }
                return Some(Ok(Update {
                    batch,
                    plan,
                    reload: None,
                }));
            }
            let reload = self.reload().await;
            let plan = match &reload {
                Ok(o) => {
                    let mut plan = self.classifier.classify(&batch);
                    plan.services.retain(|name, _| !o.added.contains(name));
                    plan
                }
                Err(_) => plan,
            };
            return Some(Ok(Update {
                batch,
                plan,
                reload: Some(reload),
            }));
        }
    }

    /// Reloads off the async threads (rendering may run kustomize or helm).
    async fn reload(&mut self) -> Result<ReloadOutcome, ConfigErrors> {
        let mut reloader = self
            .reloader
            .take()
            .expect("the reloader is always put back");
        let (reloader, result) = tokio::task::spawn_blocking(move || {
            let r = reloader.reload();
            (reloader, r)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.reloader = Some(reloader);
        if let Ok(o) = &result {
            self.project = o.project.clone();
            self.classifier = Classifier::new(&o.project, &o.invalid_dirs());
            let mut protected = self.protected.clone();
            protected.extend(self.classifier.protected_paths());
            self.watcher.set_protected(protected);
        }
        result
    }
}
