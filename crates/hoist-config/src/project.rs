//! The project model: `hoist.yaml`, its services, molds and the developer
//! overlay, loaded into one [`Project`] with every service's values resolved.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use globset::GlobBuilder;
use serde_json::{Map, Value};

use crate::error::{ConfigError, ErrorKind, Location, did_you_mean};
use crate::manifest::{ImageSpec, ProjectFile, ServiceFile};
use crate::mold::{Mold, Templates};
use crate::overlay::{SetOverride, SettingsFile, SettingsOverlay, merge};
use crate::yaml::SourceFile;

/// The project file name looked for when walking up from the start directory.
pub const PROJECT_FILE: &str = "hoist.yaml";
/// The manifest in each service directory.
pub const SERVICE_FILE: &str = "service.yaml";

/// A loaded project. Problems found while loading (a broken service.yaml, a
/// missing mold) do not stop loading; they are reported by [`Project::validate`]
/// and make `render` fail.
#[derive(Debug, Clone)]
pub struct Project {
    /// Directory holding `hoist.yaml`.
    pub root: PathBuf,
    pub manifest: SourceFile,
    pub config: ProjectFile,
    /// The developer settings file, when it exists.
    pub settings_source: Option<SourceFile>,
    pub overlay: SettingsOverlay,
    /// Services that loaded, sorted by name.
    pub services: Vec<Service>,
    pub molds: BTreeMap<String, Mold>,
    pub(crate) templates: Templates,
    pub(crate) problems: Vec<ConfigError>,
    /// Names of services that did not load, or were set aside as invalid by
    /// [`Project::load_partial`]:
    /// naming them (in `depends_on`, the settings file) is not an error.
    pub(crate) tolerated: BTreeSet<String>,
}

/// One service with its values resolved through every layer.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// The service directory (relative paths in the manifest are relative to it).
    pub dir: PathBuf,
    pub source: SourceFile,
    /// The manifest as written.
    pub spec: ServiceFile,
    /// Mold parameters after merging all layers (without the computed `image`).
    pub values: Map<String, Value>,
    /// Whether `image` was set explicitly in service.yaml values, settings or --set.
    pub image_overridden: bool,
    /// After the settings file's `enabled`/`disabled` lists.
    pub enabled: bool,
}

impl Service {
    /// A path from the manifest, resolved against the service directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn image(&self) -> Option<&ImageSpec> {
        self.spec.image.as_ref()
    }

    /// Repository name without registry: `image.name` or the service name.
    pub fn image_name(&self) -> Option<&str> {
        self.spec
            .image
            .as_ref()
            .map(|i| i.name.as_deref().unwrap_or(&self.name))
    }

    /// The location of a key path in this service's manifest.
    pub fn locate(&self, path: &[&str], label: &str) -> Location {
        self.source.locate(path, label)
    }

    /// The location of one item of a list in this service's manifest.
    pub fn locate_item(&self, path: &[&str], index: usize, item: &str, label: &str) -> Location {
        self.source.locate_item(path, index, item, label)
    }
}

impl Project {
    /// Finds the project by walking up from `start` (like git) and loads it.
    pub fn discover(start: &Path) -> Result<Project, ConfigError> {
        Self::discover_with(start, &[])
    }

    /// Like [`Project::discover`], with `--set` overrides on top of everything.
    pub fn discover_with(start: &Path, overrides: &[SetOverride]) -> Result<Project, ConfigError> {
        let root = find_root(start)?;
        Self::load_with(&root, overrides)
    }

    /// Loads the project whose `hoist.yaml` is in `root`.
    pub fn load(root: &Path) -> Result<Project, ConfigError> {
        Self::load_with(root, &[])
    }

    /// Loads the project in `root` with `--set` overrides. Fails only when
    /// hoist.yaml or the settings file cannot be read or parsed; everything else
    /// is collected (see [`Project::validate`]).
    pub fn load_with(root: &Path, overrides: &[SetOverride]) -> Result<Project, ConfigError> {
        let root = root.to_path_buf();
        let manifest = SourceFile::read(&root.join(PROJECT_FILE))?;
        let config: ProjectFile = manifest.parse()?;
        let mut problems = Vec::new();

        let settings_path = root.join(&config.settings_file);
        let (settings_source, settings) = if settings_path.is_file() {
            let src = SourceFile::read(&settings_path)?;
            let s: SettingsFile = src.parse()?;
            (Some(src), s)
        } else {
            (None, SettingsFile::default())
        };
        let overlay = SettingsOverlay {
            settings,
            overrides: overrides.to_vec(),
        };

        let mut services = Vec::new();
        let mut tolerated = BTreeSet::new();
        for dir in discover_service_dirs(&root, &config.services, &manifest, &mut problems) {
            let file = dir.join(SERVICE_FILE);
            match SourceFile::read(&file).and_then(|src| {
                let spec: ServiceFile = src.parse()?;
                Ok((src, spec))
            }) {
                Ok((source, spec)) => services.push(Service {
                    name: spec.name.clone(),
                    dir,
                    source,
                    spec,
                    values: Map::new(),
                    image_overridden: false,
                    enabled: true,
                }),
                Err(e) => {
                    problems.push(e);
                    // Its parse error is the one to report: the others naming it (in
                    // `depends_on`, `base:`) are not wrong.
                    tolerated.insert(service_name_in(&dir));
                    tolerated.extend(dir.file_name().map(|n| n.to_string_lossy().into_owned()));
                }
            }
        }
        services.sort_by(|a, b| a.name.cmp(&b.name).then(a.dir.cmp(&b.dir)));

        let molds_dir = root.join(&config.molds);
        let available = list_dirs(&molds_dir);
        let mut molds = BTreeMap::new();
        for svc in &services {
            let Some(name) = svc.spec.mold.as_deref() else {
                continue;
            };
            if molds.contains_key(name) {
                continue;
            }
            if !available.iter().any(|a| a == name) {
                continue; // reported per service by validate
            }
            match Mold::load(&molds_dir, name) {
                Ok(m) => {
                    molds.insert(name.to_string(), m);
                }
                Err(e) => problems.push(e),
            }
        }
        let (templates, template_errors) = Templates::compile(molds.values());
        problems.extend(template_errors);

        let mut project = Project {
            root,
            manifest,
            config,
            settings_source,
            overlay,
            services,
            molds,
            templates,
            problems,
            tolerated,
        };
        project.resolve_values();
        project.resolve_enabled();
        Ok(project)
    }

    /// Merges every service's values: mold defaults < hoist.yaml values <
    /// built-ins (name, env, ports) < service.yaml values < settings < --set.
    fn resolve_values(&mut self) {
        for svc in &mut self.services {
            let mut values = svc
                .spec
                .mold
                .as_deref()
                .and_then(|m| self.molds.get(m))
                .map(Mold::defaults)
                .unwrap_or_default();
            merge(&mut values, &self.config.values);
            values.insert("name".into(), Value::String(svc.name.clone()));
            values.insert(
                "env".into(),
                serde_json::to_value(&svc.spec.env).unwrap_or_default(),
            );
            values.insert(
                "ports".into(),
                serde_json::to_value(&svc.spec.ports).unwrap_or_default(),
            );
            if let Some(d) = svc.spec.debug_port {
                values.insert("debug_port".into(), Value::from(d));
            }
            let mut above = svc.spec.values.clone();
            self.overlay.apply(&svc.name, &mut above);
            svc.image_overridden =
                above.contains_key("image") || self.overlay.settings.values.contains_key("image");
            merge(&mut values, &svc.spec.values);
            self.overlay.apply(&svc.name, &mut values);
            svc.values = values;
        }
    }

    /// Applies the settings file's `enabled` (plus what those depend on) and `disabled`.
    fn resolve_enabled(&mut self) {
        let s = &self.overlay.settings;
        let by_name: BTreeMap<&str, &Service> =
            self.services.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<&str> = s.enabled.iter().map(String::as_str).collect();
        while let Some(n) = stack.pop() {
            if wanted.insert(n.to_string())
                && let Some(svc) = by_name.get(n)
            {
                stack.extend(svc.spec.depends_on.iter().map(String::as_str));
            }
        }
        let enabled: Vec<bool> = self
            .services
            .iter()
            .map(|svc| {
                let on = if s.enabled.is_empty() {
                    svc.spec.enabled
                } else {
                    wanted.contains(&svc.name)
                };
                on && !s.disabled.contains(&svc.name)
            })
            .collect();
        for (svc, on) in self.services.iter_mut().zip(enabled) {
            svc.enabled = on;
        }
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The service whose image `svc`'s image is built on (`image.base: <service>`).
    pub fn base_service(&self, svc: &Service) -> Option<&Service> {
        let base = svc.image()?.base.as_deref()?;
        self.service(base).filter(|b| b.image().is_some())
    }

    pub fn enabled_services(&self) -> impl Iterator<Item = &Service> {
        self.services.iter().filter(|s| s.enabled)
    }

    /// The registry images go to: the settings file's, else hoist.yaml's.
    pub fn registry(&self) -> Option<&str> {
        self.overlay
            .settings
            .registry
            .as_deref()
            .or(self.config.registry.as_deref())
    }

    /// The cluster choice: the settings file's, else hoist.yaml's.
    pub fn cluster(&self) -> &str {
        self.overlay
            .settings
            .cluster
            .as_deref()
            .unwrap_or(&self.config.cluster)
    }

    /// `<registry>/<name>` for a service with an image.
    pub fn image_repository(&self, svc: &Service) -> Option<String> {
        Some(repository_in(self.registry(), svc.image_name()?))
    }

    /// `<registry>/<name>:<tag>` for a service with an image.
    pub fn image_ref(&self, svc: &Service, tag: &str) -> Option<String> {
        self.image_repository(svc).map(|r| format!("{r}:{tag}"))
    }

    /// Problems found while loading (unparseable service manifests, broken molds).
    pub fn load_problems(&self) -> &[ConfigError] {
        &self.problems
    }

    /// Every problem in the project: load problems, model checks and a dry-run
    /// render of each service. Empty means `render` will work (barring tools failing).
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut out = self.problems.clone();
        let (static_errors, broken) = crate::checks::check(self);
        out.extend(static_errors);
        for svc in &self.services {
            if broken.contains(&svc.name) {
                continue;
            }
            if let Err(e) = crate::render::render_service_dry(self, svc) {
                out.extend(e);
            }
        }
        // A broken template fails every service using it: report it once.
        let mut seen = BTreeSet::new();
        out.retain(|e| seen.insert(e.to_string()));
        out
    }
}

/// How images are named: `name` in `registry` (its trailing `/` dropped), or bare.
pub fn repository_in(registry: Option<&str>, name: &str) -> String {
    match registry {
        Some(r) => format!("{}/{name}", r.trim_end_matches('/')),
        None => name.to_string(),
    }
}

/// Walks up from `start` to the first directory containing `hoist.yaml`.
pub fn find_root(start: &Path) -> Result<PathBuf, ConfigError> {
    let start_abs = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
    let mut dir = Some(start_abs.as_path());
    while let Some(d) = dir {
        if d.join(PROJECT_FILE).is_file() {
            return Ok(d.to_path_buf());
        }
        dir = d.parent();
    }
    Err(ConfigError::new(
        ErrorKind::NoProject,
        format!(
            "no {PROJECT_FILE} found in {} or any parent directory",
            start_abs.display()
        ),
    )
    .help("run `hoist init` to create a project, or pass -C DIR to point at one"))
}

fn list_dirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Directories under `root` matching the discovery globs that hold a service.yaml.
pub(crate) fn discover_service_dirs(
    root: &Path,
    globs: &[String],
    manifest: &SourceFile,
    problems: &mut Vec<ConfigError>,
) -> Vec<PathBuf> {
    let mut found = BTreeSet::new();
    for (i, pattern) in globs.iter().enumerate() {
        let pat = pattern.trim_start_matches("./").trim_end_matches('/');
        let matcher = match GlobBuilder::new(pat).literal_separator(true).build() {
            Ok(g) => g.compile_matcher(),
            Err(e) => {
                let idx = i.to_string();
                problems.push(
                    ConfigError::new(
                        ErrorKind::WrongType,
                        format!("invalid service glob `{pattern}`: {e}"),
                    )
                    .at(manifest.locate(&["services", &idx], "invalid glob")),
                );
                continue;
            }
        };
        let depth = if pat.contains("**") {
            usize::MAX
        } else {
            pat.split('/').count()
        };
        let mut stack = vec![(root.to_path_buf(), 0usize)];
        while let Some((dir, d)) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name();
                let name = name.to_string_lossy();
                if !p.is_dir()
                    || name.starts_with('.')
                    || name == "target"
                    || name == "node_modules"
                {
                    continue;
                }
                let rel = crate::files::rel_slash(&p, root);
                if matcher.is_match(&rel) && p.join(SERVICE_FILE).is_file() {
                    found.insert(p.clone());
                }
                if d + 1 < depth {
                    stack.push((p, d + 1));
                }
            }
        }
    }
    found.into_iter().collect()
}

/// The `name:` a service.yaml gives, read leniently (it may not load), else its
/// directory's name.
pub(crate) fn service_name_in(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(SERVICE_FILE))
        .ok()
        .and_then(|t| serde_norway::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_string))
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
}

/// Suggests a known service for a misspelt one.
pub(crate) fn suggest_service(project: &Project, wrong: &str) -> Option<String> {
    did_you_mean(wrong, project.services.iter().map(|s| s.name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn discovery_walks_up_and_finds_services_by_glob() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(
            root,
            "hoist.yaml",
            "name: p\nservices: [services/*, extra/**/svc]\n",
        );
        write(root, "services/a/service.yaml", "name: a\n");
        write(root, "services/b/service.yaml", "name: b\n");
        write(root, "services/notaservice/readme.md", "");
        write(root, "extra/deep/er/svc/service.yaml", "name: deep\n");
        write(root, "other/x/service.yaml", "name: x\n");
        let start = root.join("services/a");
        assert_eq!(find_root(&start).unwrap(), root);
        let p = Project::discover(&start).unwrap();
        let names: Vec<&str> = p.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "deep"]);
        assert!(p.validate().is_empty(), "{:?}", p.validate());
        let err = find_root(Path::new("/")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NoProject);
    }

    #[test]
    fn values_follow_the_precedence_table() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(
            root,
            "hoist.yaml",
            "name: p\nvalues: {a: hoist, b: hoist, c: hoist, d: hoist, nested: {x: 1, y: 1}}\n",
        );
        write(
            root,
            "molds/m/mold.yaml",
            "parameters:\n  - {name: a, default: mold}\n  - {name: b, default: mold}\n  - {name: c, default: mold}\n  - {name: d, default: mold}\n  - {name: e, default: mold}\n  - {name: nested}\n",
        );
        write(
            root,
            "services/s/service.yaml",
            "name: s\nmold: m\nvalues: {b: service, c: service, d: service, nested: {y: 2}}\n",
        );
        write(
            root,
            "hoist-settings.yaml",
            "values: {c: settings}\nservices: {s: {d: settings-s}}\n",
        );
        let sets = [
            "services.s.a=set".parse().unwrap(),
            "e=null".parse().unwrap(),
        ];
        let p = Project::load_with(root, &sets).unwrap();
        let v = &p.services[0].values;
        assert_eq!(v["a"], "set");
        assert_eq!(v["b"], "service");
        assert_eq!(v["c"], "settings");
        assert_eq!(v["d"], "settings-s");
        assert!(!v.contains_key("e"), "null deletes");
        assert_eq!(v["nested"], serde_json::json!({"x": 1, "y": 2}));
        assert_eq!(v["name"], "s");
    }

    #[test]
    fn readme_overlay_example() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "hoist.yaml", "name: p\n");
        write(
            root,
            "molds/web/mold.yaml",
            "parameters:\n  - {name: replicas, default: 1}\n  - {name: log_level, default: info}\n  - {name: resources}\n",
        );
        write(
            root,
            "services/web/service.yaml",
            "name: web\nmold: web\nvalues: {replicas: 1, resources: {cpu: 100m, memory: 64Mi}}\n",
        );
        write(
            root,
            "hoist-settings.yaml",
            "values: {log_level: debug}\nservices:\n  web: {replicas: 2, resources: {memory: null}}\n",
        );
        let p = Project::load_with(root, &["services.web.replicas=3".parse().unwrap()]).unwrap();
        let v = &p.services[0].values;
        assert_eq!(v["replicas"], 3);
        assert_eq!(v["log_level"], "debug");
        assert_eq!(v["resources"], serde_json::json!({"cpu": "100m"}));
    }

    #[test]
    fn enabled_and_disabled_lists() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "hoist.yaml", "name: p\n");
        write(
            root,
            "services/a/service.yaml",
            "name: a\ndepends_on: [b]\n",
        );
        write(root, "services/b/service.yaml", "name: b\n");
        write(root, "services/c/service.yaml", "name: c\n");
        write(root, "services/d/service.yaml", "name: d\nenabled: false\n");
        let on =
            |p: &Project| -> Vec<String> { p.enabled_services().map(|s| s.name.clone()).collect() };
        assert_eq!(on(&Project::load(root).unwrap()), ["a", "b", "c"]);
        write(root, "hoist-settings.yaml", "enabled: [a, d]\n");
        assert_eq!(on(&Project::load(root).unwrap()), ["a", "b", "d"]);
        write(root, "hoist-settings.yaml", "disabled: [c]\n");
        assert_eq!(on(&Project::load(root).unwrap()), ["a", "b"]);
    }
}
