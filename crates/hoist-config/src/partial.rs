//! Partial loading for long-running sessions (`hoist up`): the services that
//! load, check and render are kept; a broken one is set aside with its errors,
//! so one bad `service.yaml` never stops the others.
//!
//! [`Project::load_partial`] returns a [`PartialProject`] whose `project` holds
//! only the valid services (so [`crate::render()`] works on it) and whose
//! `invalid` lists each broken service directory with located errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, ErrorKind};
use crate::overlay::SetOverride;
use crate::project::{Project, SERVICE_FILE, Service, discover_service_dirs};
use crate::render::{RenderedObject, render_service_dry};

/// A service directory that is set aside, and why.
#[derive(Debug, Clone)]
pub struct InvalidService {
    pub dir: PathBuf,
    /// The name from its service.yaml when it can be read, else the directory's name.
    pub name: String,
    /// Located errors (file:line:column, field, hint).
    pub errors: Vec<ConfigError>,
    /// What it reads from elsewhere, when its service.yaml could be read: layer and sync
    /// sources, the Docker build context and Dockerfile, `k8s:` files, and where those
    /// that are symlinks point (dangling ones too). A fix may come from any of them (a
    /// build output made later), so a watcher watches them with the directory.
    pub inputs: Vec<PathBuf>,
}

/// The result of [`Project::load_partial`].
#[derive(Debug)]
pub struct PartialProject {
    /// The valid services only; `render` and `validate` work on it.
    pub project: Project,
    /// Broken services, sorted by directory.
    pub invalid: Vec<InvalidService>,
    /// Problems that belong to no single service (an invalid discovery glob, the
    /// settings file naming an unknown service). `render` fails while there are any.
    pub project_errors: Vec<ConfigError>,
    /// Each valid service's objects rendered with a placeholder image tag
    /// (`validate`), for comparing one load with the next (not the reused ones).
    pub rendered: BTreeMap<String, Vec<RenderedObject>>,
    /// Valid services not rendered because the caller said their inputs did not
    /// change since a render that succeeded (see [`Project::load_partial_reusing`]).
    pub reused: BTreeSet<String>,
}

impl Project {
    /// Loads the project in `root`, setting aside services that fail to load,
    /// fail a check or fail to render (and services whose image is built on one
    /// of those). Fails only when hoist.yaml or the settings file is unreadable.
    pub fn load_partial(
        root: &Path,
        overrides: &[SetOverride],
    ) -> Result<PartialProject, ConfigError> {
        Self::load_partial_reusing(root, overrides, &|_, _| false)
    }

    /// Like [`Project::load_partial`], but a service for which `reuse` returns
    /// true is not rendered (rendering may run kustomize or helm): the caller
    /// knows its render inputs are unchanged since one that succeeded. It is
    /// still checked, and listed in `reused` instead of `rendered`.
    pub fn load_partial_reusing(
        root: &Path,
        overrides: &[SetOverride],
        reuse: &dyn Fn(&Project, &Service) -> bool,
    ) -> Result<PartialProject, ConfigError> {
        let mut project = Project::load_with(root, overrides)?;
        let mut scratch = Vec::new();
        let dirs = discover_service_dirs(
            &project.root,
            &project.config.services,
            &project.manifest,
            &mut scratch,
        );
        let mut invalid: BTreeMap<PathBuf, InvalidService> = BTreeMap::new();
        let mut project_errors = Vec::new();

        for e in std::mem::take(&mut project.problems) {
            match owners(&project, &dirs, &e) {
                Some(owned) => owned
                    .into_iter()
                    .for_each(|d| note(&mut invalid, &project, d, e.clone())),
                None => project_errors.push(e),
            }
        }
        for d in &dirs {
            if !project.services.iter().any(|s| &s.dir == d) && !invalid.contains_key(d) {
                let file = d.join(SERVICE_FILE);
                let e = ConfigError::new(
                    ErrorKind::Io,
                    format!("{} could not be loaded", file.display()),
                );
                note(&mut invalid, &project, d.clone(), e);
            }
        }

        let mut rendered = BTreeMap::new();
        let mut reused = BTreeSet::new();
        // Each round sets aside at least one service or ends, so this terminates;
        // a cascade (base image of an invalid service) takes one round per level.
        loop {
            set_aside(&mut project, &invalid);
            let (errors, _) = crate::checks::check(&project);
            let mut bad: BTreeMap<PathBuf, Vec<ConfigError>> = BTreeMap::new();
            let mut round_project_errors = Vec::new();
            for e in errors {
                match owners(&project, &dirs, &e) {
                    Some(owned) => owned
                        .into_iter()
                        .for_each(|d| bad.entry(d).or_default().push(e.clone())),
                    None => round_project_errors.push(e),
                }
            }
            for svc in &project.services {
                let Some(base) = svc.image().and_then(|i| i.base.as_deref()) else {
                    continue;
                };
                if project.tolerated.contains(base) {
                    bad.entry(svc.dir.clone()).or_default().push(
                        ConfigError::new(
                            ErrorKind::InvalidImage,
                            format!(
                                "service `{}`: its image is built on service `{base}`, which is invalid",
                                svc.name
                            ),
                        )
                        .at(svc.locate(&["image", "base"], "invalid base service"))
                        .help(format!("fix service `{base}` first")),
                    );
                }
            }
            if bad.is_empty() {
                for svc in &project.services {
                    if rendered.contains_key(&svc.name) || reused.contains(&svc.name) {
                        continue;
                    }
                    if reuse(&project, svc) {
                        reused.insert(svc.name.clone());
                        continue;
                    }
                    match render_service_dry(&project, svc) {
                        Ok(objs) => {
                            rendered.insert(svc.name.clone(), objs);
                        }
                        Err(errs) => bad.entry(svc.dir.clone()).or_default().extend(errs),
                    }
                }
            }
            if bad.is_empty() {
                project_errors.extend(round_project_errors);
                break;
            }
            // Only directories of services still in the project make progress;
            // anything else (an error pointing into an already invalid service's
            // directory) is kept as a project error so the loop always ends.
            let (live, stale): (Vec<_>, Vec<_>) = bad
                .into_iter()
                .partition(|(d, _)| project.services.iter().any(|s| &s.dir == d));
            if live.is_empty() {
                project_errors.extend(round_project_errors);
                project_errors.extend(stale.into_iter().flat_map(|(_, errs)| errs));
                break;
            }
            for (d, errs) in live {
                for e in errs {
                    note(&mut invalid, &project, d.clone(), e);
                }
            }
            rendered.retain(|name, _| project.services.iter().any(|s| &s.name == name));
        }
        set_aside(&mut project, &invalid);
        rendered.retain(|name, _| project.services.iter().any(|s| &s.name == name));
        reused.retain(|name| project.services.iter().any(|s| &s.name == name));

        let mut seen = BTreeSet::new();
        project_errors.retain(|e| seen.insert(e.to_string()));
        Ok(PartialProject {
            project,
            invalid: invalid.into_values().collect(),
            project_errors,
            rendered,
            reused,
        })
    }
}

/// Removes the invalid services from the project and tolerates their names.
fn set_aside(project: &mut Project, invalid: &BTreeMap<PathBuf, InvalidService>) {
    project.services.retain(|s| !invalid.contains_key(&s.dir));
    for i in invalid.values() {
        project.tolerated.insert(i.name.clone());
        if let Some(base) = i.dir.file_name() {
            project
                .tolerated
                .insert(base.to_string_lossy().into_owned());
        }
    }
}

fn note(
    invalid: &mut BTreeMap<PathBuf, InvalidService>,
    project: &Project,
    dir: PathBuf,
    e: ConfigError,
) {
    let entry = invalid
        .entry(dir.clone())
        .or_insert_with(|| InvalidService {
            name: service_name(project, &dir),
            inputs: (project.services.iter().find(|s| s.dir == dir))
                .map(declared_inputs)
                .unwrap_or_default(),
            dir,
            errors: Vec::new(),
        });
    if !entry.errors.iter().any(|x| x.to_string() == e.to_string()) {
        entry.errors.push(e);
    }
}

/// See [`InvalidService::inputs`].
fn declared_inputs(svc: &Service) -> Vec<PathBuf> {
    let spec = &svc.spec;
    let mut paths: Vec<PathBuf> = Vec::new();
    if let Some(img) = svc.image() {
        paths.extend(img.layers.iter().map(|l| svc.path(&l.from)));
        if img.dockerfile.is_some() {
            paths.push(svc.path(img.context.as_deref().unwrap_or(".")));
            paths.extend(img.dockerfile.as_deref().map(|d| svc.path(d)));
        }
    }
    if let Some(lu) = &spec.live_update {
        paths.extend(lu.sync.iter().map(|r| svc.path(&r.from)));
    }
    paths.extend(
        spec.k8s
            .iter()
            .filter(|k| !k.contains('*'))
            .map(|k| svc.path(k)),
    );
    let targets: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| {
            let to = std::fs::read_link(p).ok()?;
            Some(p.parent()?.join(to))
        })
        .collect();
    // Joined as written (`svc/../x`): a watcher resolves `.` and `..` lexically.
    paths.extend(targets);
    paths.sort();
    paths.dedup();
    paths
}

/// The service's name: as loaded, else read leniently from its service.yaml,
/// else the directory name.
fn service_name(project: &Project, dir: &Path) -> String {
    if let Some(s) = project.services.iter().find(|s| s.dir == dir) {
        return s.name.clone();
    }
    crate::project::service_name_in(dir)
}

/// The service directories a problem belongs to: the one holding the file it
/// points at, or every service using the mold it points into; `None` for a
/// project-level problem.
fn owners(project: &Project, dirs: &[PathBuf], e: &ConfigError) -> Option<Vec<PathBuf>> {
    let file = match &e.location {
        Some(l) => l.file.clone(),
        // Unlocated load errors name the file in the message ("cannot read <path>: …").
        None => {
            let hit = dirs.iter().find(|d| {
                e.message
                    .contains(&d.join(SERVICE_FILE).display().to_string())
            });
            if let Some(d) = hit {
                return Some(vec![d.clone()]);
            }
            let by_name = project
                .services
                .iter()
                .find(|s| e.message.contains(&format!("service `{}`", s.name)));
            return by_name.map(|s| vec![s.dir.clone()]);
        }
    };
    let owner = dirs
        .iter()
        .filter(|d| file.starts_with(d))
        .max_by_key(|d| d.components().count());
    if let Some(d) = owner {
        return Some(vec![d.clone()]);
    }
    let molds = project.root.join(&project.config.molds);
    if let Ok(rest) = file.strip_prefix(&molds)
        && let Some(mold) = rest.components().next()
    {
        let mold = mold.as_os_str().to_string_lossy();
        let users: Vec<PathBuf> = project
            .services
            .iter()
            .filter(|s| s.spec.mold.as_deref() == Some(&*mold))
            .map(|s| s.dir.clone())
            .collect();
        return (!users.is_empty()).then_some(users);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn project(root: &Path) {
        write(root, "hoist.yaml", "name: p\n");
        write(
            root,
            "molds/m/mold.yaml",
            "parameters:\n  - {name: port, default: 80}\n",
        );
        write(
            root,
            "molds/m/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"{{ name }}\"}\ndata: {port: \"{{ port }}\"}\n",
        );
        for n in ["a", "b", "c"] {
            write(
                root,
                &format!("services/{n}/service.yaml"),
                &format!("name: {n}\nmold: m\n"),
            );
        }
    }

    fn names(p: &PartialProject) -> Vec<&str> {
        p.project.services.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn a_valid_project_loads_whole_with_renders() {
        let tmp = tempfile::tempdir().unwrap();
        project(tmp.path());
        let p = Project::load_partial(tmp.path(), &[]).unwrap();
        assert_eq!(names(&p), ["a", "b", "c"]);
        assert!(p.invalid.is_empty() && p.project_errors.is_empty());
        assert_eq!(p.rendered["b"][0].name(), "b");
        crate::render(&p.project, &Default::default()).unwrap();
    }

    #[test]
    fn a_broken_service_yaml_is_set_aside_with_its_location() {
        let tmp = tempfile::tempdir().unwrap();
        project(tmp.path());
        write(
            tmp.path(),
            "services/b/service.yaml",
            "name: b\nmold: [oops\n",
        );
        // a depends on the broken b: still valid (b is known, only broken).
        write(
            tmp.path(),
            "services/a/service.yaml",
            "name: a\nmold: m\ndepends_on: [b]\n",
        );
        let p = Project::load_partial(tmp.path(), &[]).unwrap();
        assert_eq!(names(&p), ["a", "c"]);
        assert_eq!(p.invalid.len(), 1);
        let bad = &p.invalid[0];
        assert_eq!(bad.name, "b");
        assert_eq!(bad.dir, tmp.path().join("services/b"));
        let loc = bad.errors[0].location.as_ref().expect("located");
        assert_eq!(loc.file, tmp.path().join("services/b/service.yaml"));
        assert_eq!(loc.line, 2);
        // render works on what is left.
        let objs = crate::render(&p.project, &Default::default()).unwrap();
        assert_eq!(objs.len(), 2);
    }

    #[test]
    fn check_and_render_failures_are_per_service() {
        let tmp = tempfile::tempdir().unwrap();
        project(tmp.path());
        // Unknown mold parameter (a check) and a k8s file that is not YAML (a render error).
        write(
            tmp.path(),
            "services/a/service.yaml",
            "name: a\nmold: m\nvalues: {prot: 1}\n",
        );
        write(
            tmp.path(),
            "services/c/service.yaml",
            "name: c\nk8s: [x.yaml]\n",
        );
        write(tmp.path(), "services/c/x.yaml", "kind: [\n");
        let p = Project::load_partial(tmp.path(), &[]).unwrap();
        assert_eq!(names(&p), ["b"]);
        let by: BTreeMap<&str, &InvalidService> =
            p.invalid.iter().map(|i| (i.name.as_str(), i)).collect();
        assert_eq!(by["a"].errors[0].kind, ErrorKind::UnknownParameter);
        assert_eq!(
            by["a"].errors[0].help.as_deref(),
            Some("did you mean `port`?")
        );
        assert_eq!(by["c"].errors[0].kind, ErrorKind::Syntax);
    }

    #[test]
    fn images_built_on_an_invalid_service_are_set_aside_too() {
        let tmp = tempfile::tempdir().unwrap();
        project(tmp.path());
        write(tmp.path(), "services/a/bin", "x");
        write(
            tmp.path(),
            "services/a/service.yaml",
            "name: a\nimage: {base: scratch, layers: [{from: nope, to: /x}]}\n",
        );
        write(
            tmp.path(),
            "services/b/service.yaml",
            "name: b\nimage: {base: a, layers: [{from: service.yaml, to: /s}]}\n",
        );
        let p = Project::load_partial(tmp.path(), &[]).unwrap();
        assert_eq!(names(&p), ["c"]);
        let b = p.invalid.iter().find(|i| i.name == "b").unwrap();
        assert!(
            b.errors[0].message.contains("built on service `a`"),
            "{b:?}"
        );
    }

    #[test]
    fn a_broken_mold_fails_only_its_users_and_settings_may_name_invalid_services() {
        let tmp = tempfile::tempdir().unwrap();
        project(tmp.path());
        write(tmp.path(), "molds/n/mold.yaml", "parameters: [\n");
        write(tmp.path(), "services/b/service.yaml", "name: b\nmold: n\n");
        write(tmp.path(), "hoist-settings.yaml", "disabled: [b]\n");
        let p = Project::load_partial(tmp.path(), &[]).unwrap();
        assert_eq!(names(&p), ["a", "c"]);
        assert_eq!(p.invalid[0].name, "b");
        assert!(p.project_errors.is_empty(), "{:?}", p.project_errors);
        crate::render(&p.project, &Default::default()).unwrap();
        // A settings entry naming a service that exists nowhere stays a project error.
        write(tmp.path(), "hoist-settings.yaml", "disabled: [zz]\n");
        let p = Project::load_partial(tmp.path(), &[]).unwrap();
        assert_eq!(p.project_errors[0].kind, ErrorKind::UnknownService);
    }

    #[test]
    fn an_invalid_discovery_glob_is_a_project_error_and_duplicates_keep_the_first() {
        let tmp = tempfile::tempdir().unwrap();
        project(tmp.path());
        write(
            tmp.path(),
            "hoist.yaml",
            "name: p\nservices: [\"services/*\", \"x/[\"]\n",
        );
        write(tmp.path(), "services/d/service.yaml", "name: a\nmold: m\n");
        let p = Project::load_partial(tmp.path(), &[]).unwrap();
        assert_eq!(p.project_errors.len(), 1);
        assert_eq!(p.project_errors[0].kind, ErrorKind::WrongType);
        assert_eq!(names(&p), ["a", "b", "c"]);
        assert_eq!(p.project.services[0].dir, tmp.path().join("services/a"));
        assert_eq!(p.invalid[0].dir, tmp.path().join("services/d"));
        assert_eq!(p.invalid[0].errors[0].kind, ErrorKind::DuplicateName);
    }

    #[test]
    fn reused_services_are_checked_but_not_rendered() {
        let tmp = tempfile::tempdir().unwrap();
        project(tmp.path());
        let p = Project::load_partial_reusing(tmp.path(), &[], &|_, s| s.name != "b").unwrap();
        assert_eq!(p.rendered.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(p.reused.iter().collect::<Vec<_>>(), ["a", "c"]);
        // A reused service that now fails a check is still set aside.
        write(
            tmp.path(),
            "services/c/service.yaml",
            "name: c\nmold: nope\n",
        );
        let p = Project::load_partial_reusing(tmp.path(), &[], &|_, _| true).unwrap();
        assert_eq!(names(&p), ["a", "b"]);
        assert_eq!(p.invalid[0].errors[0].kind, ErrorKind::MissingMold);
        assert!(p.rendered.is_empty());
    }
}
