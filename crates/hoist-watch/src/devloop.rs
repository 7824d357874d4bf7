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

use crate::classify::{Action, Classifier, Plan};
use crate::error::WatchError;
use crate::reload::{ReloadOutcome, Reloader};
use crate::watcher::{Batch, WatchOptions, Watcher};

/// What one batch of file changes means.
#[derive(Debug)]
pub struct Update {
    /// The files, as the watcher reported them.
    pub batch: Batch,
    /// Per-service actions, classified against the project as it is after the
    /// reload (if any). Services just added by the reload are left out (they
    /// are deployed whole); `Rerender` is left only for services the reload
    /// lists as changed, and one whose config edit changed nothing rendered
    /// keeps just its `Sync` part.
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
    /// A reload under way (kept across a cancelled `next`).
    in_flight: Option<InFlight>,
    /// A reload's update, held until the watcher has the watches the new project asks
    /// for (kept across a cancelled `next`).
    settling: Option<Settling>,
}

struct Settling {
    update: Update,
    done: tokio::sync::oneshot::Receiver<()>,
}

type ReloadJob = tokio::task::JoinHandle<(Reloader, Result<ReloadOutcome, ConfigErrors>)>;

struct InFlight {
    batch: Batch,
    /// The plan against the project before the reload (used if it fails).
    plan: Plan,
    handle: ReloadJob,
}

impl DevLoopInput {
    /// Starts watching the project found at or above `root` (like git), then
    /// loads it, so that no edit made while it loads is missed. Returns the
    /// first load's outcome (every enabled service in `added`, broken ones in
    /// `invalid`).
    pub async fn start(
        root: &Path,
        overrides: Vec<SetOverride>,
        opts: WatchOptions,
    ) -> Result<(DevLoopInput, ReloadOutcome), StartError> {
        let start = root.to_path_buf();
        let protected = opts.protected.clone();
        let (reloader, outcome, classifier, watcher) = tokio::task::spawn_blocking(move || {
            let root = hoist_config::find_root(&start).map_err(ConfigErrors::from)?;
            let watcher = Watcher::start(&root, opts)?;
            let mut reloader = Reloader::new(&root, overrides);
            let outcome = reloader.reload()?;
            let classifier = Classifier::new(&outcome.project, &outcome.invalid_dirs());
            Ok::<_, StartError>((reloader, outcome, classifier, watcher))
        })
        .await
        .map_err(|e| WatchError::Io {
            path: Default::default(),
            source: std::io::Error::other(e),
        })??;
        let mut all = protected.clone();
        all.extend(classifier.protected_paths());
        watcher.set_protected(all);
        watcher.set_outside(classifier.outside_paths());
        // Edits made once this returns are seen, outside the project too.
        watcher.settled().await;
        let project = outcome.project.clone();
        Ok((
            DevLoopInput {
                watcher,
                reloader: Some(reloader),
                classifier,
                project,
                protected,
                in_flight: None,
                settling: None,
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
    ///
    /// Cancel-safe (usable in `tokio::select!`): a reload under way when the
    /// future is dropped is picked up by the next call, with its batch.
    pub async fn next(&mut self) -> Option<Result<Update, WatchError>> {
        loop {
            if let Some(s) = self.settling.as_mut() {
                // Once this returns, an edit under a newly declared source is seen; the
                // consumer acts on the update after that, so no edit falls between.
                let _ = (&mut s.done).await;
                return self.settling.take().map(|s| Ok(s.update));
            }
            if let Some(flight) = self.in_flight.as_mut() {
                // Awaiting `&mut handle` leaves it in place if this future is dropped.
                let joined = (&mut flight.handle).await;
                let flight = self.in_flight.take()?;
                let (reloader, reload) =
                    joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                self.reloader = Some(reloader);
                let plan = match &reload {
                    Ok(o) => {
                        self.adopt(o);
                        let plan = self.classifier.classify(&flight.batch);
                        settle(plan, Some(o), &o.project)
                    }
                    // The old project stays in force: only live updates go ahead.
                    Err(_) => settle(flight.plan, None, &self.project),
                };
                let adopted = reload.is_ok();
                let update = Update {
                    batch: flight.batch,
                    plan,
                    reload: Some(reload),
                };
                if !adopted {
                    return Some(Ok(update));
                }
                let done = self.watcher.barrier();
                self.settling = Some(Settling { update, done });
                continue;
            }
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
            // Reload off the async threads (rendering may run kustomize or helm).
            // No await between taking the reloader and parking the handle.
            let mut reloader = self.reloader.take()?;
            let handle = tokio::task::spawn_blocking(move || {
                let r = reloader.reload();
                (reloader, r)
            });
            self.in_flight = Some(InFlight {
                batch,
                plan,
                handle,
            });
        }
    }

    /// Makes a successful reload the project in force.
    fn adopt(&mut self, o: &ReloadOutcome) {
        self.project = o.project.clone();
        self.classifier = Classifier::new(&o.project, &o.invalid_dirs());
        let mut protected = self.protected.clone();
        protected.extend(self.classifier.protected_paths());
        self.watcher.set_protected(protected);
        self.watcher.set_outside(self.classifier.outside_paths());
    }
}

/// A plan after its reload: services just added are left out (they are
/// deployed whole), and a service whose config files changed but whose output
/// did not (a comment, `depends_on`), or whose reload failed, keeps only its
/// live update, if any.
fn settle(mut plan: Plan, reload: Option<&ReloadOutcome>, project: &Project) -> Plan {
    plan.services.retain(|name, p| {
        if reload.is_some_and(|o| o.added.contains(name)) {
            return false;
        }
        let changed = reload.is_some_and(|o| o.changed.iter().any(|c| &c.name == name));
        if p.action != Action::Rerender || changed {
            return true;
        }
        if p.copies.is_empty() && p.deletes.is_empty() {
            return false;
        }
        p.action = Action::Sync;
        p.restart = project
            .service(name)
            .and_then(|s| s.spec.live_update.as_ref())
            .is_some_and(|l| l.restart);
        true
    });
    plan
}
