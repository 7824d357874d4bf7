//! Reloading the project while `hoist up` runs: services appear, disappear,
//! change or break, and each case is told apart so the engine touches only
//! what changed. A broken service is reported with located errors and set
//! aside; it is not removed (what runs keeps running), and every other service
//! goes on.
//!
//! "Changed" compares fingerprints from one load to the next: a hash of the
//! service's rendered objects (with a placeholder image tag, so only config
//! counts) and a hash of its `image:` section (and its base service's).
//! Changes to image *inputs* are the classifier's business
//! ([`crate::classify`]), not the reload's.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use hoist_config::{ConfigErrors, InvalidService, Project, RenderedObject, Service, SetOverride};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::inputs::render_inputs;

/// How a service changed between two loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceChange {
    pub name: String,
    /// Its rendered objects differ: re-apply.
    pub render: bool,
    /// Its `image:` section (or its base service's) differs: rebuild.
    pub image: bool,
}

/// The result of one (re)load.
#[derive(Debug)]
pub struct ReloadOutcome {
    /// The project with its valid services only (`hoist_config::render` works on it).
    pub project: Arc<Project>,
    /// Enabled services that are new (all of them on the first load), sorted.
    pub added: Vec<String>,
    /// Services that were enabled and are gone or disabled now (not the invalid ones).
    pub removed: Vec<String>,
    /// Enabled services present before and now whose output or image changed.
    pub changed: Vec<ServiceChange>,
    /// Broken services, each with located errors. They are neither added nor
    /// removed: what runs of them keeps running until they are fixed.
    pub invalid: Vec<InvalidService>,
    /// Services rendered by this load; the others' render inputs had not
    /// changed since their last render, so it was reused.
    pub rendered: Vec<String>,
}

impl ReloadOutcome {
    /// True when nothing needs doing.
    pub fn is_noop(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// The outcome without the project, as plain data (for `-o json` events and logs).
    pub fn summary(&self) -> ReloadSummary {
        ReloadSummary {
            added: self.added.clone(),
            removed: self.removed.clone(),
            changed: self.changed.clone(),
            invalid: self
                .invalid
                .iter()
                .map(|i| InvalidSummary {
                    name: i.name.clone(),
                    dir: i.dir.clone(),
                    errors: i
                        .errors
                        .iter()
                        .map(|e| match &e.help {
                            Some(h) => format!("{e} ({h})"),
                            None => e.to_string(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The directories of the invalid services, and what they read from elsewhere (a
    /// layer source not built yet), for [`crate::Classifier::new`]: a change there may be
    /// their fix.
    pub fn invalid_dirs(&self) -> Vec<PathBuf> {
        (self.invalid.iter())
            .flat_map(|i| std::iter::once(&i.dir).chain(&i.inputs))
            .cloned()
            .collect()
    }
}

/// [`ReloadOutcome`] as plain serialisable data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<ServiceChange>,
    pub invalid: Vec<InvalidSummary>,
}

/// One invalid service: each error as `file:line:col: message (hint)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidSummary {
    pub name: String,
    pub dir: PathBuf,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    render: String,
    image: String,
}

/// Loads the project again and again, remembering what was there.
pub struct Reloader {
    root: PathBuf,
    overrides: Vec<SetOverride>,
    /// Enabled services of the last load (invalid ones keep their last fingerprint).
    known: BTreeMap<String, Fingerprint>,
    /// Every valid service's last render: (hash of its render inputs, render fingerprint).
    renders: BTreeMap<String, (String, String)>,
}

impl Reloader {
    /// `root`: the directory holding hoist.yaml. `overrides`: `--set` values.
    pub fn new(root: impl Into<PathBuf>, overrides: Vec<SetOverride>) -> Reloader {
        Reloader {
            root: root.into(),
            overrides,
            known: BTreeMap::new(),
            renders: BTreeMap::new(),
        }
    }

    /// Loads the project and compares it with the last load. Fails (and keeps
    /// the last state) only on project-level problems: hoist.yaml or the
    /// settings file unreadable, or the settings file naming unknown services.
    pub fn reload(&mut self) -> Result<ReloadOutcome, ConfigErrors> {
        let started = std::time::Instant::now();
        // Render only services whose render inputs changed since their last render.
        let inputs: RefCell<BTreeMap<String, String>> = RefCell::default();
        let molds: RefCell<Option<String>> = RefCell::default();
        let reuse = |p: &Project, svc: &Service| {
            let h = render_inputs(p, svc, &mut molds.borrow_mut());
            let same = self.renders.get(&svc.name).is_some_and(|(i, _)| *i == h);
            inputs.borrow_mut().insert(svc.name.clone(), h);
            same
        };
        let partial = Project::load_partial_reusing(&self.root, &self.overrides, &reuse)?;
        if !partial.project_errors.is_empty() {
            return Err(ConfigErrors(partial.project_errors));
        }
        let inputs = inputs.into_inner();
        let project = partial.project;
        let mut renders = BTreeMap::new();
        for svc in &project.services {
            let fp = match partial.rendered.get(&svc.name) {
                Some(objs) => render_fingerprint(objs),
                None => match self.renders.get(&svc.name) {
                    Some((_, fp)) if partial.reused.contains(&svc.name) => fp.clone(),
                    _ => continue,
                },
            };
            if let Some(h) = inputs.get(&svc.name) {
                renders.insert(svc.name.clone(), (h.clone(), fp));
            }
        }
        let image_fp = image_fingerprints(&project);
        let mut now: BTreeMap<String, Fingerprint> = BTreeMap::new();
        for svc in project.enabled_services() {
            now.insert(
                svc.name.clone(),
                Fingerprint {
                    render: renders
                        .get(&svc.name)
                        .map(|(_, fp)| fp.clone())
                        .unwrap_or_default(),
                    image: image_fp.get(&svc.name).cloned().unwrap_or_default(),
                },
            );
        }
        let rendered: Vec<String> = partial.rendered.keys().cloned().collect();
        self.renders = renders;
        let invalid_names: BTreeSet<&str> =
            partial.invalid.iter().map(|i| i.name.as_str()).collect();
        let added = now
            .keys()
            .filter(|n| !self.known.contains_key(*n))
            .cloned()
            .collect();
        let removed = self
            .known
            .keys()
            .filter(|n| !now.contains_key(*n) && !invalid_names.contains(n.as_str()))
            .cloned()
            .collect();
        let changed = now
            .iter()
            .filter_map(|(name, fp)| {
                let old = self.known.get(name)?;
                let c = ServiceChange {
                    name: name.clone(),
                    render: old.render != fp.render,
                    image: old.image != fp.image,
                };
                (c.render || c.image).then_some(c)
            })
            .collect();
        // Invalid services keep their last good fingerprint, so a fix that
        // restores the old content is no change.
        for name in &invalid_names {
            if let Some(old) = self.known.get(*name) {
                now.entry(name.to_string()).or_insert_with(|| old.clone());
            }
        }
        self.known = now;
        let outcome = ReloadOutcome {
            project: Arc::new(project),
            added,
            removed,
            changed,
            invalid: partial.invalid,
            rendered,
        };
        tracing::debug!(
            added = ?outcome.added,
            removed = ?outcome.removed,
            changed = outcome.changed.len(),
            invalid = outcome.invalid.len(),
            rendered = outcome.rendered.len(),
            elapsed = ?started.elapsed(),
            "project reloaded"
        );
        Ok(outcome)
    }
}

fn render_fingerprint(objects: &[RenderedObject]) -> String {
    let mut h = Sha256::new();
    for o in objects {
        h.update(serde_json::to_vec(&o.object).unwrap_or_default());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// A hash of each service's `image:` section, chained through base services.
fn image_fingerprints(project: &Project) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for svc in &project.services {
        let mut h = Sha256::new();
        let mut cur = Some(svc);
        let mut seen = BTreeSet::new();
        while let Some(s) = cur {
            if !seen.insert(s.name.as_str()) {
                break;
            }
            h.update(serde_json::to_vec(&s.spec.image).unwrap_or_default());
            h.update([0]);
            cur = project.base_service(s);
        }
        out.insert(svc.name.clone(), hex::encode(h.finalize()));
    }
    out
}
