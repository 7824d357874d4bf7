//! What a batch of changed files means for each service: copy the files into
//! the running containers (**Sync**), build a new image (**Rebuild**), or
//! re-render and re-apply (**Rerender**), or nothing.
//!
//! Rules, per service (paths are the service's own, resolved like hoist-config does):
//! - config inputs (its service.yaml, `k8s:` files and globs, the kustomize
//!   directory and the local directories its kustomizations reference, the helm
//!   chart and values files, its mold's directory) → Rerender;
//! - a file matching a `live_update.sync` rule → Sync (container path, deletes,
//!   the `run` steps whose triggers match);
//! - an image input not covered by sync (a layer's `from` after include/exclude,
//!   or the Dockerfile and its build context) → Rebuild, naming the file; an image
//!   built on this service's image (`image.base: <service>`) is rebuilt too.
//!
//! The strongest wins: Rebuild (which re-renders with the new image) > Rerender >
//! Sync. Project-level files (hoist.yaml, the settings file, the molds
//! directory, a service directory appearing or going, the directory of an
//! invalid service) ask for a project reload (see [`crate::reload`]).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use hoist_config::files::rel_slash;
use hoist_config::{ImageSource, Project, SERVICE_FILE};
use hoist_fileset::FileSet;
use serde::Serialize;

use crate::watcher::Batch;

/// What to do for one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Sync,
    Rerender,
    Rebuild,
}

/// One file to copy into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncCopy {
    pub local: PathBuf,
    /// Absolute path in the container.
    pub container: String,
}

/// Why a service needs a new image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RebuildReason {
    /// Copied into the image by layer `layer` (0-based) and not covered by a sync rule.
    LayerInput { file: PathBuf, layer: usize },
    /// A layer's source (or a directory above it) was deleted.
    LayerSourceRemoved { file: PathBuf, layer: usize },
    /// The Dockerfile changed.
    Dockerfile { file: PathBuf },
    /// A file of the Dockerfile's build context changed.
    BuildContext { file: PathBuf },
    /// The image is built on another service's image, whose inputs changed.
    BaseImage { service: String, file: PathBuf },
    /// A synced input changed, and the image is the base of `service`, which is rebuilt:
    /// the image itself must be built too (sync changes the container, not the image).
    BaseOf { service: String, file: PathBuf },
    /// The watcher lost events (kernel queue overflow): everything may have changed.
    Rescan,
}

impl std::fmt::Display for RebuildReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RebuildReason::LayerInput { file, layer } => write!(
                f,
                "{} is copied into the image (layer {}) and no sync rule covers it",
                file.display(),
                layer + 1
            ),
            RebuildReason::LayerSourceRemoved { file, layer } => write!(
                f,
                "{} was removed and holds the source of layer {}",
                file.display(),
                layer + 1
            ),
            RebuildReason::Dockerfile { file } => {
                write!(f, "the Dockerfile {} changed", file.display())
            }
            RebuildReason::BuildContext { file } => write!(
                f,
                "{} is in the Docker build context and no sync rule covers it",
                file.display()
            ),
            RebuildReason::BaseImage { service, file } => write!(
                f,
                "the image is built on service `{service}`'s image, whose input {} changed",
                file.display()
            ),
            RebuildReason::BaseOf { service, file } => write!(
                f,
                "{} changed, and the image is the base of service `{service}`, which is rebuilt",
                file.display()
            ),
            RebuildReason::Rescan => f.write_str("file events were lost; rebuilding to be safe"),
        }
    }
}

/// The plan for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePlan {
    pub action: Action,
    /// Files to copy in (Sync; with Rerender they still need copying after the rollout).
    pub copies: Vec<SyncCopy>,
    /// Container paths to delete (a directory: recursively).
    pub deletes: Vec<String>,
    /// Indices into `live_update.run` of the steps whose triggers match.
    pub runs: Vec<usize>,
    /// Restart the container after syncing (`live_update.restart`).
    pub restart: bool,
    pub rebuild: Vec<RebuildReason>,
    /// Config files of this service that changed.
    pub rerender: Vec<PathBuf>,
}

/// The plan for one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Per service with something to do, by name.
    pub services: BTreeMap<String, ServicePlan>,
    /// Project-level files that changed: reload the project (and act on its outcome).
    pub reload: Vec<PathBuf>,
    /// Files that matter to no service.
    pub ignored: Vec<PathBuf>,
}

impl Plan {
    /// True when the project must be reloaded before acting (config changed).
    pub fn needs_reload(&self) -> bool {
        !self.reload.is_empty()
            || self
                .services
                .values()
                .any(|p| p.action == Action::Rerender || !p.rerender.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.reload.is_empty()
    }
}

struct LayerRule {
    from: PathBuf,
    /// Where `from` points when it is a symlink: the build copies the target, and changes
    /// arrive as events under the target's path.
    target: Option<PathBuf>,
    /// The same rules the image build applies (hoist-fileset), ignore files included.
    files: FileSet,
}

struct SyncRuleAbs {
    from: PathBuf,
    /// Where `from` points when it is a symlink (changes arrive under this path).
    target: Option<PathBuf>,
    to: String,
}

struct DockerRule {
    dockerfile: PathBuf,
    context: PathBuf,
    /// Where `context` points when it is a symlink.
    context_target: Option<PathBuf>,
    /// What the builder sends and the content tag hashes (the `.dockerignore` rules).
    files: FileSet,
    /// The ignore files the builder may read (`<Dockerfile>.dockerignore`, the context's
    /// `.dockerignore`), existing or not: a change to one changes [`DockerRule::files`].
    ignore_files: Vec<PathBuf>,
}

struct ServiceRules {
    name: String,
    dir: PathBuf,
    enabled: bool,
    manifest: PathBuf,
    /// Files and directories whose change means re-render.
    config: Vec<PathBuf>,
    k8s_globs: GlobSet,
    layers: Vec<LayerRule>,
    docker: Option<DockerRule>,
    sync: Vec<SyncRuleAbs>,
    runs: Vec<FileSet>,
    restart: bool,
    base: Option<String>,
}

/// Classifies batches against one loaded project. Build a new one after each reload.
pub struct Classifier {
    root: PathBuf,
    project_files: Vec<PathBuf>,
    molds_dir: PathBuf,
    discovery: GlobSet,
    services: Vec<ServiceRules>,
    invalid_dirs: Vec<PathBuf>,
}

impl Classifier {
    /// `invalid_dirs`: directories of services set aside as invalid (any change
    /// in them asks for a reload, so a fix is picked up).
    pub fn new(project: &Project, invalid_dirs: &[PathBuf]) -> Classifier {
        let root = normalize(&project.root);
        let mut discovery = GlobSetBuilder::new();
        for g in &project.config.services {
            let pat = g.trim_start_matches("./").trim_end_matches('/');
            if let Ok(glob) = GlobBuilder::new(pat).literal_separator(true).build() {
                discovery.add(glob);
            }
        }
        let molds_dir = root.join(&project.config.molds);
        let services = project
            .services
            .iter()
            .map(|svc| service_rules(svc, &molds_dir))
            .collect();
        Classifier {
            project_files: vec![
                root.join(hoist_config::PROJECT_FILE),
                normalize(&root.join(&project.config.settings_file)),
            ],
            root,
            molds_dir,
            discovery: discovery.build().unwrap_or_else(|_| GlobSet::empty()),
            services,
            invalid_dirs: invalid_dirs.iter().map(|d| normalize(d)).collect(),
        }
    }

    /// Every path whose change is a config change (part of [`Classifier::protected_paths`]).
    pub fn config_inputs(&self) -> Vec<PathBuf> {
        let mut v = self.project_files.clone();
        v.push(self.molds_dir.clone());
        for s in &self.services {
            v.push(s.manifest.clone());
            v.extend(s.config.iter().cloned());
        }
        v.extend(self.invalid_dirs.iter().cloned());
        v.sort();
        v.dedup();
        v
    }

    /// What ignore files must not hide: [`Classifier::config_inputs`] plus every
    /// declared layer and sync source and Docker build context inside the
    /// project (pass to [`crate::WatchOptions::protected`] /
    /// [`crate::Watcher::set_protected`]).
    pub fn protected_paths(&self) -> Vec<PathBuf> {
        let mut v = self.config_inputs();
        for s in &self.services {
            v.extend(s.layers.iter().map(|l| l.from.clone()));
            v.extend(s.sync.iter().map(|r| r.from.clone()));
            if let Some(d) = &s.docker {
                v.push(d.dockerfile.clone());
                v.push(d.context.clone());
            }
        }
        v.retain(|p| p.starts_with(&self.root));
        v.sort();
        v.dedup();
        v
    }

    /// What the project reads from outside its directory: config inputs, layer and sync
    /// sources and Docker build inputs given as `../…`, and where the symlinks among
    /// them point when that is outside (pass to [`crate::Watcher::set_outside`]).
    pub fn outside_paths(&self) -> Vec<PathBuf> {
        let mut v = self.config_inputs();
        for s in &self.services {
            for (from, target) in s.sources() {
                v.push(from.clone());
                v.extend(target.cloned());
            }
            if let Some(d) = &s.docker {
                v.push(d.dockerfile.clone());
                v.extend(d.ignore_files.iter().cloned());
            }
        }
        v.retain(|p| !p.starts_with(&self.root));
        v.sort();
        v.dedup();
        v
    }

    /// A declared source that is (or was) a symlink and now points elsewhere, or became
    /// or stopped being a link: the rules hold the old target, so the project is reloaded.
    fn is_relinked(&self, path: &Path) -> bool {
        let mut sources = self.services.iter().flat_map(|s| s.sources());
        sources.any(|(from, target)| from == path && link_target(from).as_ref() != target)
    }

    /// A `.dockerignore`/`.hoistignore` at the top of a layer source, or an ignore file of
    /// a Docker build context: the rules this classifier holds for it are stale, so the project is reloaded (a reload
    /// that changes nothing else touches nothing else) and a new classifier built.
    fn is_layer_ignore_file(&self, path: &Path) -> bool {
        let docker = self.services.iter().filter_map(|s| s.docker.as_ref());
        if docker.flat_map(|d| &d.ignore_files).any(|f| f == path) {
            return true;
        }
        let named = (path.file_name().and_then(|n| n.to_str()))
            .is_some_and(|n| hoist_fileset::IGNORE_FILES.contains(&n));
        named
            && path.parent().is_some_and(|dir| {
                let layers = self.services.iter().flat_map(|s| &s.layers);
                layers
                    .flat_map(|l| std::iter::once(&l.from).chain(&l.target))
                    .any(|from| from == dir)
            })
    }

    pub fn classify(&self, batch: &Batch) -> Plan {
        let mut plan = Plan::default();
        let mut work: BTreeMap<usize, Work> = BTreeMap::new();
        let files = batch
            .changed
            .iter()
            .map(|p| (p, false))
            .chain(batch.deleted.iter().map(|p| (p, true)));
        for (path, deleted) in files {
            let path = normalize(path);
            let mut used = false;
            if self.is_project_level(&path, deleted)
                || self.is_layer_ignore_file(&path)
                || self.is_relinked(&path)
            {
                plan.reload.push(path.clone());
                used = true;
            }
            for (i, svc) in self.services.iter().enumerate() {
                // The service itself is gone: the reload removes it.
                if deleted && svc.dir.starts_with(&path) {
                    continue;
                }
                if self.apply(svc, &path, deleted, work.entry(i).or_default()) {
                    used = true;
                }
            }
            if !used {
                plan.ignored.push(path);
            }
        }
        if batch.rescan {
            plan.reload.push(self.root.clone());
            for i in 0..self.services.len() {
                work.entry(i)
                    .or_default()
                    .rebuild
                    .push(RebuildReason::Rescan);
            }
        }
        self.propagate_bases(&mut work);
        for (i, w) in work {
            let svc = &self.services[i];
            if !svc.enabled {
                if !w.rerender.is_empty() {
                    plan.reload.extend(w.rerender);
                }
                continue;
            }
            if let Some(p) = w.into_plan(svc) {
                plan.services.insert(svc.name.clone(), p);
            }
        }
        plan.reload.sort();
        plan.reload.dedup();
        plan
    }

    fn is_project_level(&self, path: &Path, deleted: bool) -> bool {
        if self.project_files.iter().any(|f| f == path) || path.starts_with(&self.molds_dir) {
            return true;
        }
        if self.invalid_dirs.iter().any(|d| path.starts_with(d)) {
            return true;
        }
        // A service directory appearing (its service.yaml) or going away.
        if path.file_name().is_some_and(|n| n == SERVICE_FILE)
            && let Some(dir) = path.parent()
            && dir.starts_with(&self.root)
            && self.discovery.is_match(rel_slash(dir, &self.root))
            && !self.services.iter().any(|s| s.dir == dir)
        {
            return true;
        }
        deleted
            && self
                .services
                .iter()
                .any(|s| s.dir.starts_with(path) || s.manifest == path)
    }

    /// Records what `path` means for `svc`; false when it means nothing to it.
    fn apply(&self, svc: &ServiceRules, path: &Path, deleted: bool, w: &mut Work) -> bool {
        if svc.manifest == path || self.is_config(svc, path, deleted) {
            w.rerender.push(path.to_path_buf());
            return true;
        }
        let image = image_input(svc, path, deleted);
        // A path under a rule's source is synced (whether or not the source
        // existed when the project loaded); the source itself deleted is not a
        // sync (emptying the container directory would hide a broken build).
        let synced = svc.sync.iter().find_map(|r| {
            let mut roots = std::iter::once(&r.from).chain(&r.target);
            let root = roots.find(|root| path.starts_with(root) && !(deleted && path == *root))?;
            Some((r, root))
        });
        if let Some((rule, root)) = synced {
            let rel = rel_slash(path, root);
            let container = if path == root {
                rule.to.clone()
            } else {
                join_container(&rule.to, &rel)
            };
            if deleted {
                w.deletes.push(container);
            } else {
                w.copies.push(SyncCopy {
                    local: path.to_path_buf(),
                    container,
                });
            }
            // Triggers are written against the declared source, not its link target.
            let declared = if path == root {
                rule.from.clone()
            } else {
                rule.from.join(&rel)
            };
            w.synced_rel.push(rel_slash(&declared, &svc.dir));
            if image.is_some() {
                w.image_files.push(path.to_path_buf());
            }
            return true;
        }
        match image {
            Some(reason) => {
                w.image_files.push(path.to_path_buf());
                w.rebuild.push(reason);
                true
            }
            None => false,
        }
    }

    fn is_config(&self, svc: &ServiceRules, path: &Path, deleted: bool) -> bool {
        if svc
            .config
            .iter()
            .any(|c| path.starts_with(c) || (deleted && c.starts_with(path)))
        {
            return true;
        }
        path.starts_with(&svc.dir) && svc.k8s_globs.is_match(rel_slash(path, &svc.dir))
    }

    /// Images built on a service whose image inputs changed are rebuilt too.
    fn propagate_bases(&self, work: &mut BTreeMap<usize, Work>) {
        // (service, its base service), by index.
        let pairs: Vec<(usize, usize)> = (self.services.iter().enumerate())
            .filter_map(|(i, svc)| {
                let base = svc.base.as_ref()?;
                Some((i, self.services.iter().position(|s| &s.name == base)?))
            })
            .collect();
        // Chains are short; a fixed number of rounds also ends base cycles.
        for _ in 0..self.services.len().min(16) {
            let mut grew = false;
            for &(i, bi) in &pairs {
                let base = &self.services[bi].name;
                let Some(file) = work.get(&bi).and_then(|w| w.image_files.first().cloned()) else {
                    continue;
                };
                let w = work.entry(i).or_default();
                if w.rebuild
                    .iter()
                    .any(|r| matches!(r, RebuildReason::BaseImage { .. }))
                {
                    continue;
                }
                w.rebuild.push(RebuildReason::BaseImage {
                    service: base.clone(),
                    file: file.clone(),
                });
                w.image_files.push(file);
                grew = true;
            }
            if !grew {
                break;
            }
        }
        // A base whose changed inputs were only synced (into its container, not its image)
        // is built too: the images built on it take its image under its new inputs' tag.
        for &(i, bi) in &pairs {
            let svc = &self.services[i];
            if !svc.enabled {
                continue;
            }
            let rebuilt = work.get(&i).is_some_and(|w| {
                w.rebuild
                    .iter()
                    .any(|r| matches!(r, RebuildReason::BaseImage { .. }))
            });
            let Some(bw) = work.get_mut(&bi) else {
                continue;
            };
            if rebuilt
                && bw.rebuild.is_empty()
                && let Some(file) = bw.image_files.first().cloned()
            {
                bw.rebuild.push(RebuildReason::BaseOf {
                    service: svc.name.clone(),
                    file,
                });
            }
        }
    }
}

#[derive(Default)]
struct Work {
    copies: Vec<SyncCopy>,
    deletes: Vec<String>,
    /// Synced paths relative to the service directory (for run triggers).
    synced_rel: Vec<String>,
    rebuild: Vec<RebuildReason>,
    rerender: Vec<PathBuf>,
    /// Changed image inputs, synced or not (for images built on this one).
    image_files: Vec<PathBuf>,
}

impl Work {
    fn into_plan(self, svc: &ServiceRules) -> Option<ServicePlan> {
        let action = if !self.rebuild.is_empty() {
            Action::Rebuild
        } else if !self.rerender.is_empty() {
            Action::Rerender
        } else if !self.copies.is_empty() || !self.deletes.is_empty() {
            Action::Sync
        } else {
            return None;
        };
        let runs = if self.synced_rel.is_empty() {
            Vec::new()
        } else {
            svc.runs
                .iter()
                .enumerate()
                .filter(|(_, t)| self.synced_rel.iter().any(|r| t.includes(r)))
                .map(|(i, _)| i)
                .collect()
        };
        Some(ServicePlan {
            action,
            restart: svc.restart && action == Action::Sync,
            copies: self.copies,
            deletes: self.deletes,
            runs,
            rebuild: self.rebuild,
            rerender: self.rerender,
        })
    }
}

/// Why `path` is an input of `svc`'s image, if it is.
fn image_input(svc: &ServiceRules, path: &Path, deleted: bool) -> Option<RebuildReason> {
    for (i, l) in svc.layers.iter().enumerate() {
        // The source, and what it points to if it is a symlink.
        for from in std::iter::once(&l.from).chain(&l.target) {
            if deleted && from.starts_with(path) {
                return Some(RebuildReason::LayerSourceRemoved {
                    file: path.to_path_buf(),
                    layer: i,
                });
            }
            // Under the source: it is a directory (even if it did not exist at load).
            let under = path != from && path.starts_with(from);
            let rel = if under {
                rel_slash(path, from)
            } else if path == from {
                // A single file is matched by the name it has in the image.
                l.from.file_name()?.to_string_lossy().into_owned()
            } else {
                continue;
            };
            // A deleted path under the source may have been a directory holding included
            // files.
            let included = l.files.includes(&rel) || (deleted && under);
            if included && !l.files.excludes(&rel) {
                return Some(RebuildReason::LayerInput {
                    file: path.to_path_buf(),
                    layer: i,
                });
            }
        }
    }
    if let Some(d) = &svc.docker {
        if path == d.dockerfile {
            return Some(RebuildReason::Dockerfile {
                file: path.to_path_buf(),
            });
        }
        for context in std::iter::once(&d.context).chain(&d.context_target) {
            if !path.starts_with(context) {
                continue;
            }
            // What the builder leaves out (`.dockerignore`, and `.git`) cannot change the
            // image, and the content tag does not hash it: no rebuild. A deleted path that
            // is excluded may have been a directory holding a file a `!` took back.
            let rel = rel_slash(path, context);
            let sent =
                path == context || !d.files.excludes(&rel) || (deleted && d.files.has_take_backs());
            if sent {
                return Some(RebuildReason::BuildContext {
                    file: path.to_path_buf(),
                });
            }
        }
    }
    None
}

fn service_rules(svc: &hoist_config::Service, molds_dir: &Path) -> ServiceRules {
    let dir = normalize(&svc.dir);
    let at = |rel: &str| normalize(&dir.join(rel));
    let spec = &svc.spec;
    let mut config = Vec::new();
    let mut k8s_globs = GlobSetBuilder::new();
    for pattern in &spec.k8s {
        if pattern.contains(['*', '?', '[', '{']) {
            if let Ok(g) = GlobBuilder::new(pattern.trim_start_matches("./"))
                .literal_separator(true)
                .build()
            {
                k8s_globs.add(g);
            }
        } else {
            config.push(at(pattern));
        }
    }
    if let Some(k) = &spec.kustomize {
        config.extend(kustomize_inputs(&at(k)));
    }
    if let Some(h) = &spec.helm {
        config.push(at(&h.chart));
        config.extend(h.values_files.iter().map(|f| at(f)));
    }
    if let Some(m) = &spec.mold {
        config.push(molds_dir.join(m));
    }
    let mut layers = Vec::new();
    let mut docker = None;
    if let Some(img) = svc.image() {
        match img.source() {
            ImageSource::Layers => {
                for l in &img.layers {
                    let from = at(&l.from);
                    // A bad ignore file (validate reports it) makes every file an input,
                    // so that fixing it triggers a build.
                    let files = FileSet::for_dir(&from, &l.include, &l.exclude).unwrap_or_default();
                    let target = link_target(&from);
                    layers.push(LayerRule {
                        from,
                        target,
                        files,
                    });
                }
            }
            ImageSource::Dockerfile => {
                let context = at(img.context.as_deref().unwrap_or("."));
                let dockerfile = at(img.dockerfile.as_deref().unwrap_or("Dockerfile"));
                let context_target = link_target(&context);
                // A bad ignore file (validate reports it) leaves out only `.git`, so that
                // fixing it triggers a build.
                let files = FileSet::for_docker_context(&context, &dockerfile)
                    .unwrap_or_else(|_| git_only());
                let mut ignore_files =
                    hoist_fileset::docker_ignore_candidates(&context, &dockerfile);
                ignore_files.extend(context_target.as_ref().map(|t| t.join(".dockerignore")));
                docker = Some(DockerRule {
                    dockerfile,
                    context_target,
                    context,
                    files,
                    ignore_files,
                });
            }
        }
    }
    let lu = spec.live_update.clone().unwrap_or_default();
    let sync = lu
        .sync
        .iter()
        .map(|r| {
            let from = at(&r.from);
            SyncRuleAbs {
                target: link_target(&from),
                from,
                to: r.to.clone(),
            }
        })
        .collect();
    ServiceRules {
        name: svc.name.clone(),
        manifest: normalize(&svc.source.path),
        dir,
        enabled: svc.enabled,
        config,
        k8s_globs: k8s_globs.build().unwrap_or_else(|_| GlobSet::empty()),
        layers,
        docker,
        sync,
        runs: (lu.run.iter())
            .map(|r| FileSet::for_patterns(&r.trigger, &[]).unwrap_or_else(|_| never()))
            .collect(),
        restart: lu.restart,
        base: img_base(svc),
    }
}

impl ServiceRules {
    /// Every declared source a symlink may stand for (layer and sync sources, the Docker
    /// build context), with where it points.
    fn sources(&self) -> impl Iterator<Item = (&PathBuf, Option<&PathBuf>)> {
        let layers = self.layers.iter().map(|l| (&l.from, l.target.as_ref()));
        let sync = self.sync.iter().map(|r| (&r.from, r.target.as_ref()));
        let docker = (self.docker.iter()).map(|d| (&d.context, d.context_target.as_ref()));
        layers.chain(sync).chain(docker)
    }
}

fn img_base(svc: &hoist_config::Service) -> Option<String> {
    svc.image().and_then(|i| i.base.clone())
}

/// The rules of a Docker context whose ignore file is invalid: everything but `.git`.
fn git_only() -> FileSet {
    FileSet::for_patterns(&[], &[".git".to_string()]).expect("a literal pattern")
}

/// For trigger patterns, checked when the project loaded (an invalid one makes the
/// service invalid, so it never gets here): a set that takes nothing.
fn never() -> FileSet {
    FileSet::for_patterns(&["\u{0}never".to_string()], &[]).expect("a literal pattern")
}

/// The kustomize directory and the local directories and files its
/// kustomizations reference (`resources`, `bases`, `components`, patches…),
/// followed transitively: an overlay's `../../base` is an input too.
pub(crate) fn kustomize_inputs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if out.len() > 256 {
            break;
        }
        let Some(text) = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
            .iter()
            .find_map(|n| std::fs::read_to_string(d.join(n)).ok())
        else {
            continue;
        };
        let Ok(doc) = serde_norway::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let mut refs = Vec::new();
        collect_strings(&doc, &mut refs);
        for r in refs {
            if r.contains("://") || r.contains('\n') || r.is_empty() {
                continue;
            }
            let p = normalize(&d.join(&r));
            if out.iter().any(|o| p.starts_with(o)) {
                continue;
            }
            if p.is_dir() {
                out.push(p.clone());
                stack.push(p);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out
}

/// Every string value in a YAML document (candidates for local paths).
fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// `to` + `/` + `rel`, without doubled slashes.
fn join_container(to: &str, rel: &str) -> String {
    format!("{}/{rel}", to.trim_end_matches('/'))
}

/// Where the symlink `path` leads (through chains of links), lexically normalised like
/// every path here; `None` if it is no symlink.
fn link_target(path: &Path) -> Option<PathBuf> {
    let mut at = path.to_path_buf();
    // As many links as the kernel follows before it gives up (ELOOP).
    for _ in 0..40 {
        let Ok(to) = std::fs::read_link(&at) else {
            break;
        };
        at = normalize(&at.parent().unwrap_or(Path::new("/")).join(to));
    }
    (at != path).then_some(at)
}

/// Resolves `.` and `..` lexically (paths in the project need not exist).
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_and_join() {
        assert_eq!(
            normalize(Path::new("/a/./b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(join_container("/www/", "a/b.html"), "/www/a/b.html");
        assert_eq!(join_container("/", "x"), "/x");
    }
}
