//! Model checks that need the whole project: names, duplicates, molds and
//! their parameters, dependencies and cycles, referenced files, tools.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{ConfigError, ErrorKind, did_you_mean};
use crate::external;
use crate::files;
use crate::names::dns1123_label_problem;
use crate::project::{Project, Service, suggest_service};

/// Values every service gets without declaring them in a mold.
const BUILTIN_VALUES: &[&str] = &["name", "image", "env", "ports", "debug_port"];

/// Returns all problems, and the names of services that have one (so a dry-run
/// render does not repeat them).
pub fn check(p: &Project) -> (Vec<ConfigError>, BTreeSet<String>) {
    let mut out = Vec::new();
    let mut broken = BTreeSet::new();
    let mut note = |svc: &Service, errs: Vec<ConfigError>, out: &mut Vec<ConfigError>| {
        if !errs.is_empty() {
            broken.insert(svc.name.clone());
            out.extend(errs);
        }
    };
    for svc in &p.services {
        let mut errs = Vec::new();
        check_name(svc, &mut errs);
        check_mold(p, svc, &mut errs);
        check_dependencies(p, svc, &mut errs);
        check_image(p, svc, &mut errs);
        check_escape_hatches(svc, &mut errs);
        note(svc, errs, &mut out);
    }
    let dup = duplicates(p);
    for (svc, e) in dup {
        note(svc, vec![e], &mut out);
    }
    out.extend(cycles(p));
    out.extend(check_settings(p));
    out.extend(check_project_lists(p));
    out.extend(check_registries(p));
    (out, broken)
}

/// `registry:` in hoist.yaml and in the settings file: where images are pushed.
fn check_registries(p: &Project) -> Vec<ConfigError> {
    let hoist_yaml = p.config.registry.as_deref().map(|r| (r, &p.manifest));
    let settings = (p.overlay.settings.registry.as_deref()).zip(p.settings_source.as_ref());
    let mut out = Vec::new();
    for (registry, src) in hoist_yaml.into_iter().chain(settings) {
        let why = if registry.contains("://") {
            Some("it has a URL scheme".to_string())
        } else {
            // The registry must make a valid start of the names images get there.
            let name = crate::project::repository_in(Some(registry), "x");
            crate::names::image_reference_problem(&name)
        };
        if let Some(why) = why {
            out.push(
                ConfigError::new(
                    ErrorKind::WrongType,
                    format!("registry `{registry}` is not HOST[:PORT][/PREFIX]: {why}"),
                )
                .at(src.locate(&["registry"], "here"))
                .help("e.g. `localhost:5000` or `registry.example.com/team`"),
            );
        }
    }
    out
}

/// `image_paths:` and `tests:` in hoist.yaml.
fn check_project_lists(p: &Project) -> Vec<ConfigError> {
    let mut out = Vec::new();
    let src = &p.manifest;
    for (i, ip) in p.config.image_paths.iter().enumerate() {
        let idx = i.to_string();
        if let Err(why) = ip.segments() {
            out.push(
                ConfigError::new(
                    ErrorKind::WrongType,
                    format!("image_paths item {}: path `{}`: {why}", i + 1, ip.path),
                )
                .at(src.locate(&["image_paths", &idx, "path"], "invalid path"))
                .help(
                    "write a dot-separated field path such as `spec.image` or `spec.steps[].image`",
                ),
            );
        }
        if ip.kind.trim().is_empty() {
            out.push(
                ConfigError::new(
                    ErrorKind::MissingField,
                    format!("image_paths item {}: `kind` is empty", i + 1),
                )
                .at(src.locate(&["image_paths", &idx, "kind"], "empty kind")),
            );
        }
    }
    let mut names = BTreeSet::new();
    for (i, t) in p.config.tests.iter().enumerate() {
        let idx = i.to_string();
        if t.name.trim().is_empty() {
            out.push(
                ConfigError::new(
                    ErrorKind::MissingField,
                    format!("tests item {}: `name` is empty", i + 1),
                )
                .at(src.locate(&["tests", &idx, "name"], "empty name")),
            );
        } else if !names.insert(t.name.as_str()) {
            out.push(
                ConfigError::new(
                    ErrorKind::DuplicateName,
                    format!("two tests are named `{}`", t.name),
                )
                .at(src.locate(&["tests", &idx, "name"], "second definition"))
                .help("give each test step its own name"),
            );
        }
        if t.run.trim().is_empty() {
            out.push(
                ConfigError::new(
                    ErrorKind::MissingField,
                    format!("test `{}`: `run` is empty", t.name),
                )
                .at(src.locate(&["tests", &idx, "run"], "empty command"))
                .help("`run:` is a shell command, run with `sh -c` in the project root"),
            );
        }
        if let Err(why) = t.timeout() {
            out.push(
                ConfigError::new(
                    ErrorKind::WrongType,
                    format!("test `{}`: timeout {why}", t.name),
                )
                .at(src.locate(&["tests", &idx, "timeout"], "invalid duration")),
            );
        }
    }
    out
}

fn check_name(svc: &Service, out: &mut Vec<ConfigError>) {
    if let Some(why) = dns1123_label_problem(&svc.name) {
        out.push(
            ConfigError::new(
                ErrorKind::InvalidName,
                format!(
                    "service name `{}` is not a valid Kubernetes name: {why}",
                    svc.name
                ),
            )
            .at(svc.locate(&["name"], "invalid name"))
            .help(format!(
                "use a DNS-1123 label such as `{}`",
                suggest_dns_name(&svc.name)
            )),
        );
    }
}

fn suggest_dns_name(name: &str) -> String {
    let s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let s = s.trim_matches('-');
    let s = if s.is_empty() { "my-service" } else { s };
    s.chars().take(63).collect()
}

fn duplicates(p: &Project) -> Vec<(&Service, ConfigError)> {
    let mut by_name: BTreeMap<&str, Vec<&Service>> = BTreeMap::new();
    for s in &p.services {
        by_name.entry(&s.name).or_default().push(s);
    }
    let mut out = Vec::new();
    for (name, list) in by_name {
        let Some((first, rest)) = list.split_first() else {
            continue;
        };
        for dup in rest {
            let e = ConfigError::new(
                ErrorKind::DuplicateName,
                format!(
                    "service name `{name}` is used twice: in {} and in {}",
                    first.source.path.display(),
                    dup.source.path.display()
                ),
            )
            .at(dup.locate(&["name"], "second definition"))
            .help("service names must be unique within a project")
            .related(
                ConfigError::new(
                    ErrorKind::DuplicateName,
                    format!("`{name}` first defined here"),
                )
                .at(first.locate(&["name"], "first definition")),
            );
            out.push((*dup, e));
        }
    }
    out
}

fn check_mold(p: &Project, svc: &Service, out: &mut Vec<ConfigError>) {
    let Some(mold_name) = svc.spec.mold.as_deref() else {
        if !svc.spec.values.is_empty() {
            out.push(
                ConfigError::new(
                    ErrorKind::MissingMold,
                    format!("service `{}` sets `values` but uses no mold", svc.name),
                )
                .at(svc.locate(&["values"], "values without a mold"))
                .help("add `mold: <name>` (a directory under the molds directory)"),
            );
        }
        return;
    };
    let Some(mold) = p.molds.get(mold_name) else {
        let molds_dir = p.root.join(&p.config.molds);
        if molds_dir.join(mold_name).is_dir() {
            return; // it exists but failed to load: that is already a load problem
        }
        let available: Vec<String> = std::fs::read_dir(&molds_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("mold.yaml").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let help =
            did_you_mean(mold_name, available.iter().map(String::as_str)).unwrap_or_else(|| {
                if available.is_empty() {
                    format!("no molds exist in {}", molds_dir.display())
                } else {
                    format!("available molds: {}", available.join(", "))
                }
            });
        out.push(
            ConfigError::new(
                ErrorKind::MissingMold,
                format!(
                    "service `{}` uses mold `{mold_name}`, but {} does not exist",
                    svc.name,
                    molds_dir.join(mold_name).join("mold.yaml").display()
                ),
            )
            .at(svc.locate(&["mold"], "unknown mold"))
            .help(help),
        );
        return;
    };
    let at = |param: &str| {
        if param == "mold" || !svc.spec.values.contains_key(param) {
            Some(svc.locate(&["mold"], "this mold"))
        } else {
            Some(svc.locate(&["values", param], "here"))
        }
    };
    // `image` is filled in at render time for services that have an image.
    let mut values = svc.values.clone();
    if let Some(name) = svc.image_name() {
        values
            .entry("image")
            .or_insert_with(|| serde_json::Value::String(name.to_string()));
    }
    out.extend(mold.check_values(&values, &svc.name, &at));
    let known: Vec<&str> = mold
        .schema
        .parameters
        .iter()
        .map(|p| p.name.as_str())
        .chain(BUILTIN_VALUES.iter().copied())
        .collect();
    for key in svc.spec.values.keys() {
        if !known.contains(&key.as_str()) {
            let help = did_you_mean(key, known.iter().copied())
                .unwrap_or_else(|| format!("mold `{mold_name}` takes: {}", known.join(", ")));
            out.push(
                ConfigError::new(
                    ErrorKind::UnknownParameter,
                    format!("mold `{mold_name}` has no parameter `{key}`"),
                )
                .at(svc.locate(&["values", key], "unknown parameter"))
                .help(help),
            );
        }
    }
}

fn check_dependencies(p: &Project, svc: &Service, out: &mut Vec<ConfigError>) {
    for (i, dep) in svc.spec.depends_on.iter().enumerate() {
        if p.service(dep).is_none() && !p.tolerated.contains(dep) {
            out.push(
                ConfigError::new(
                    ErrorKind::UnknownDependency,
                    format!(
                        "service `{}` depends on `{dep}`, which does not exist",
                        svc.name
                    ),
                )
                .at(svc.locate_item(&["depends_on"], i, dep, "unknown service"))
                .help_opt(suggest_service(p, dep)),
            );
        }
    }
}

/// Every dependency cycle, each printed once as `a → b → c → a`.
fn cycles(p: &Project) -> Vec<ConfigError> {
    let graph: BTreeMap<&str, Vec<&str>> = p
        .services
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.spec.depends_on.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let mut seen_cycles: BTreeSet<Vec<&str>> = BTreeSet::new();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for &start in graph.keys() {
        let mut path: Vec<&str> = Vec::new();
        dfs(start, &graph, &mut path, &mut done, &mut seen_cycles);
    }
    for cycle in seen_cycles {
        let first = cycle[0];
        let next = cycle.get(1).copied().unwrap_or(first);
        let Some(svc) = p.service(first) else {
            continue;
        };
        let idx = svc
            .spec
            .depends_on
            .iter()
            .position(|d| d == next)
            .unwrap_or(0);
        let shown: Vec<&str> = cycle.iter().copied().chain([first]).collect();
        out.push(
            ConfigError::new(
                ErrorKind::Cycle,
                format!("dependency cycle: {}", shown.join(" → ")),
            )
            .at(svc.locate_item(&["depends_on"], idx, next, "starts the cycle"))
            .help("remove one of these `depends_on` entries"),
        );
    }
    out
}

fn dfs<'a>(
    node: &'a str,
    graph: &BTreeMap<&'a str, Vec<&'a str>>,
    path: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
    cycles: &mut BTreeSet<Vec<&'a str>>,
) {
    if let Some(pos) = path.iter().position(|n| *n == node) {
        let mut cycle = path[pos..].to_vec();
        // Canonical rotation (smallest name first) so each cycle is reported once.
        let min = cycle
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| **n)
            .map_or(0, |(i, _)| i);
        cycle.rotate_left(min);
        cycles.insert(cycle);
        return;
    }
    if done.contains(node) {
        return;
    }
    path.push(node);
    for next in graph.get(node).into_iter().flatten() {
        if graph.contains_key(next) {
            dfs(next, graph, path, done, cycles);
        }
    }
    path.pop();
    done.insert(node);
}

fn missing_file(svc: &Service, key: &[&str], what: &str, path: &std::path::Path) -> ConfigError {
    // Shown without `.` components (`svc/./data` is `svc/data`); `..` stays, as a symlinked
    // directory gives it another meaning.
    let path: std::path::PathBuf = path.components().collect();
    ConfigError::new(
        ErrorKind::MissingFile,
        format!(
            "service `{}`: {what} {} does not exist",
            svc.name,
            path.display()
        ),
    )
    .at(svc.locate(key, "missing"))
    .help("paths are relative to the service directory")
}

fn check_image(p: &Project, svc: &Service, out: &mut Vec<ConfigError>) {
    let Some(img) = svc.image() else { return };
    if let Some(name) = &img.name
        && let Some(why) = crate::names::repository_problem(name)
    {
        out.push(
            ConfigError::new(
                ErrorKind::InvalidName,
                format!(
                    "service `{}`: image name `{name}` is not a valid repository: {why}",
                    svc.name
                ),
            )
            .at(svc.locate(&["image", "name"], "invalid image name"))
            .help("e.g. `shop/api`; the registry and tag are added by hoist"),
        );
    }
    if let Some(df) = &img.dockerfile {
        let layered = img.base.is_some()
            || !img.layers.is_empty()
            || img.entrypoint.is_some()
            || img.cmd.is_some()
            || img.workdir.is_some()
            || img.user.is_some()
            || !img.env.is_empty();
        if layered {
            out.push(
                ConfigError::new(
                    ErrorKind::InvalidImage,
                    format!(
                        "service `{}`: `image` has both `dockerfile` and layered-image fields",
                        svc.name
                    ),
                )
                .at(svc.locate(&["image", "dockerfile"], "dockerfile here"))
                .help("use either `dockerfile:` (+ context, args, target) or `base:` + `layers:` (+ entrypoint, cmd, env, workdir, user)"),
            );
        }
        let path = svc.path(df);
        if !path.is_file() {
            out.push(missing_file(
                svc,
                &["image", "dockerfile"],
                "Dockerfile",
                &path,
            ));
        }
        let ctx = svc.path(img.context.as_deref().unwrap_or("."));
        if !ctx.is_dir() {
            out.push(missing_file(
                svc,
                &["image", "context"],
                "build context",
                &ctx,
            ));
        } else {
            // What the content tag walks: a bad `.dockerignore` line or a FIFO fails it.
            let key = img.context_key();
            let walked = hoist_fileset::FileSet::for_docker_context(&ctx, &path)
                .map_err(|e| e.to_string())
                .and_then(|set| hoist_fileset::entries(&ctx, &set).map_err(|e| e.to_string()));
            if let Err(e) = walked {
                out.push(
                    ConfigError::new(
                        ErrorKind::InvalidImage,
                        format!("service `{}`: build context: {e}", svc.name),
                    )
                    .at(svc.locate(&["image", key], "read from here")),
                );
            }
        }
    } else if img.context.is_some() || !img.args.is_empty() || img.target.is_some() {
        out.push(
            ConfigError::new(
                ErrorKind::InvalidImage,
                format!(
                    "service `{}`: `context`, `args` and `target` need `dockerfile`",
                    svc.name
                ),
            )
            .at(svc.locate(&["image"], "here"))
            .help("add `dockerfile: Dockerfile`, or remove them for a layered image"),
        );
    }
    // `oci:DIR` names a layout for `hoist image append` and `copy`; a service's image is
    // tagged by its inputs, and a directory that changes in place would not retag it.
    if let Some(base) = img.base.as_deref()
        && base.starts_with("oci:")
    {
        out.push(
            ConfigError::new(
                ErrorKind::InvalidImage,
                format!(
                    "service `{}`: image base `{base}` is an OCI layout; a service builds on a registry image or another service",
                    svc.name
                ),
            )
            .at(svc.locate(&["image", "base"], "here"))
            .help("push the layout first (`hoist image copy oci:DIR REGISTRY/NAME:TAG`), then name that reference"),
        );
    } else if let Some(base) = img.base.as_deref()
        && base != "scratch"
        && p.service(base).is_none()
        && !p.tolerated.contains(base)
        && let Some(why) = crate::names::image_reference_problem(base)
    {
        out.push(
            ConfigError::new(
                ErrorKind::InvalidImage,
                format!(
                    "service `{}`: image base `{base}` is neither `scratch`, a service of this project, nor an image reference: {why}",
                    svc.name
                ),
            )
            .at(svc.locate(&["image", "base"], "here"))
            .help("e.g. `busybox:1.36`, `registry.example.com/team/base:v2`, or a service's name"),
        );
    } else if let Some(base) = img.base.as_deref()
        && !base.contains(['/', ':', '@'])
        && p.service(base).is_none()
        && !p.tolerated.contains(base)
        && let Some(hint) = one_letter_from_a_service(p, base)
    {
        // A bare word close to a service's name is a typo far more often than a Docker
        // Hub image; one that is meant says so with a tag or its full name.
        out.push(
            ConfigError::new(
                ErrorKind::InvalidImage,
                format!(
                    "service `{}`: image base `{base}` is no service of this project ({hint}); \
                     as written it would be Docker Hub's `docker.io/library/{base}`",
                    svc.name
                ),
            )
            .at(svc.locate(&["image", "base"], "here"))
            .help(format!(
                "name the service, or write a Docker Hub image with its tag or full name (`{base}:latest`, `docker.io/library/{base}`)"
            )),
        );
    }
    if let Some(w) = img.workdir.as_deref()
        && let Some(why) = crate::names::workdir_problem(w)
    {
        out.push(
            ConfigError::new(
                ErrorKind::InvalidImage,
                format!("service `{}`: image workdir `{w}` {why}", svc.name),
            )
            .at(svc.locate(&["image", "workdir"], "here"))
            .help(format!("workdir: /{w}")),
        );
    }
    for k in img.env.keys() {
        if let Some(why) = crate::names::env_name_problem(k) {
            out.push(
                ConfigError::new(
                    ErrorKind::InvalidImage,
                    format!(
                        "service `{}`: image env name {k:?} cannot be a variable name: it {why}",
                        svc.name
                    ),
                )
                .at(svc.locate(&["image", "env", k], "here")),
            );
        }
    }
    // Images built on other services' images must not go round in a circle.
    let mut chain = vec![svc.name.as_str()];
    let mut cur = svc;
    while let Some(base) = p.base_service(cur) {
        if base.name == svc.name {
            chain.push(&base.name);
            out.push(
                ConfigError::new(
                    ErrorKind::Cycle,
                    format!("image base cycle: {}", chain.join(" → ")),
                )
                .at(svc.locate(&["image", "base"], "here"))
                .help("one of these images must start from `scratch` or a registry image"),
            );
            break;
        }
        if chain.contains(&base.name.as_str()) {
            break; // a cycle not through `svc`: reported for its own members
        }
        chain.push(&base.name);
        cur = base;
    }
    for (i, layer) in img.layers.iter().enumerate() {
        let idx = i.to_string();
        // The same rule as the layer builder's: no `..` anywhere in a destination.
        if std::path::Path::new(&layer.to)
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            out.push(
                ConfigError::new(
                    ErrorKind::InvalidImage,
                    format!(
                        "service `{}`: layer destination `{}` escapes the image root (`..` is not allowed)",
                        svc.name, layer.to
                    ),
                )
                .at(svc.locate(&["image", "layers", &idx, "to"], "here"))
                .help("a destination is a path inside the image, e.g. /app"),
            );
        }
        let from = svc.path(&layer.from);
        // Followed like the build follows it: a link to nothing is no source.
        if let Err(e) = hoist_fileset::source_metadata(&from) {
            let what = match e {
                hoist_fileset::WalkError::Dangling { target, .. } => {
                    format!("layer source (a symlink to {})", target.display())
                }
                _ => "layer source".to_string(),
            };
            out.push(missing_file(
                svc,
                &["image", "layers", &idx, "from"],
                &what,
                &from,
            ));
            continue;
        }
        // The source's ignore files are read by the build too: a bad line fails it.
        if let Err(e) = hoist_fileset::FileSet::for_dir(&from, &[], &[]) {
            out.push(
                ConfigError::new(
                    ErrorKind::WrongType,
                    format!(
                        "service `{}`: invalid glob {:?} in {}: {}",
                        svc.name, e.pattern, e.origin, e.reason
                    ),
                )
                .at(svc.locate(&["image", "layers", &idx, "from"], "read from here")),
            );
        }
        // What the build and the content tag walk: a FIFO, socket or device in the source
        // (taken by the rules) would fail both.
        if let Err(files::LayerEntriesError::Walk(e)) = files::layer_entries(&svc.dir, layer) {
            out.push(
                ConfigError::new(
                    ErrorKind::InvalidImage,
                    format!("service `{}`: layer source: {e}", svc.name),
                )
                .at(svc.locate(&["image", "layers", &idx, "from"], "read from here")),
            );
        }
        let none: &[String] = &[];
        for (key, include, exclude) in [
            ("include", &layer.include[..], none),
            ("exclude", none, &layer.exclude[..]),
        ] {
            if let Err(e) = hoist_fileset::FileSet::for_patterns(include, exclude) {
                out.push(
                    ConfigError::new(
                        ErrorKind::WrongType,
                        format!(
                            "service `{}`: invalid glob {:?} in `{key}`: {}",
                            svc.name, e.pattern, e.reason
                        ),
                    )
                    .at(svc.locate(&["image", "layers", &idx, key], "here")),
                );
            }
        }
    }
}

fn check_escape_hatches(svc: &Service, out: &mut Vec<ConfigError>) {
    for (i, pattern) in svc.spec.k8s.iter().enumerate() {
        match files::expand(&svc.dir, pattern) {
            Ok(list) if list.is_empty() => out.push(
                ConfigError::new(
                    ErrorKind::MissingFile,
                    format!(
                        "service `{}`: k8s glob `{pattern}` matches no files",
                        svc.name
                    ),
                )
                .at(svc.locate_item(&["k8s"], i, pattern, "matches nothing"))
                .help("globs are relative to the service directory"),
            ),
            Ok(list) => {
                for f in list.iter().filter(|f| !f.is_file()) {
                    out.push(missing_file(svc, &["k8s", &i.to_string()], "k8s file", f));
                }
            }
            Err(e) => out.push(
                ConfigError::new(
                    ErrorKind::WrongType,
                    format!("service `{}`: invalid k8s glob `{pattern}`: {e}", svc.name),
                )
                .at(svc.locate_item(&["k8s"], i, pattern, "here")),
            ),
        }
    }
    if let Some(k) = &svc.spec.kustomize {
        let dir = svc.path(k);
        if !dir.is_dir() {
            out.push(missing_file(
                svc,
                &["kustomize"],
                "kustomize directory",
                &dir,
            ));
        } else if let Err(e) = external::kustomize_tool(&svc.name) {
            out.push(e.at(svc.locate(&["kustomize"], "needs kustomize")));
        }
    }
    if let Some(h) = &svc.spec.helm {
        let chart = svc.path(&h.chart);
        if !chart.is_dir() {
            out.push(missing_file(svc, &["helm", "chart"], "helm chart", &chart));
        }
        for (i, f) in h.values_files.iter().enumerate() {
            let path = svc.path(f);
            if !path.is_file() {
                let idx = i.to_string();
                out.push(missing_file(
                    svc,
                    &["helm", "values_files", &idx],
                    "helm values file",
                    &path,
                ));
            }
        }
        if let Err(e) = external::helm_tool(&svc.name) {
            out.push(e.at(svc.locate(&["helm"], "needs helm")));
        }
    }
}

fn check_settings(p: &Project) -> Vec<ConfigError> {
    let mut out = Vec::new();
    let s = &p.overlay.settings;
    let unknown = |name: &str| p.service(name).is_none() && !p.tolerated.contains(name);
    if let Some(src) = &p.settings_source {
        let mut refs: Vec<(Vec<String>, &str)> = Vec::new();
        for (i, n) in s.enabled.iter().enumerate() {
            refs.push((vec!["enabled".into(), i.to_string()], n));
        }
        for (i, n) in s.disabled.iter().enumerate() {
            refs.push((vec!["disabled".into(), i.to_string()], n));
        }
        for n in s.services.keys() {
            refs.push((vec!["services".into(), n.clone()], n));
        }
        for (path, name) in refs {
            if unknown(name) {
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                let location = match path.as_slice() {
                    [list @ ("enabled" | "disabled"), i] => {
                        src.locate_item(&[list], i.parse().unwrap_or(0), name, "unknown service")
                    }
                    _ => src.locate(&path, "unknown service"),
                };
                out.push(
                    ConfigError::new(
                        ErrorKind::UnknownService,
                        format!("the settings file names service `{name}`, which does not exist"),
                    )
                    .at(location)
                    .help_opt(suggest_service(p, name)),
                );
            }
        }
        for (name, v) in &s.services {
            if !v.is_object() && !v.is_null() {
                out.push(
                    ConfigError::new(
                        ErrorKind::WrongType,
                        format!("settings for service `{name}` must be a map of values"),
                    )
                    .at(src.locate(&["services", name], "not a map")),
                );
            }
        }
    }
    for o in &p.overlay.overrides {
        if let Some(name) = &o.service
            && unknown(name)
        {
            out.push(
                ConfigError::new(
                    ErrorKind::UnknownService,
                    format!("--set names service `{name}`, which does not exist"),
                )
                .help_opt(suggest_service(p, name)),
            );
        }
    }
    out
}

/// "did you mean `api`?" when `base` is one edit (or a swap of neighbours) from a service's
/// name: a typo. Further off it may well be an image (`postgis` beside a `postgres`).
fn one_letter_from_a_service(p: &Project, base: &str) -> Option<String> {
    p.services
        .iter()
        .find(|s| strsim::damerau_levenshtein(base, &s.name) == 1)
        .map(|s| format!("did you mean `{}`?", s.name))
}
