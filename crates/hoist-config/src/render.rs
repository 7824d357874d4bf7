//! Rendering: the Kubernetes objects a project produces, in a deterministic
//! order with image references filled in.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{ConfigError, ConfigErrors, ErrorKind};
use crate::external;
use crate::files;
use crate::project::{Project, Service, suggest_service};
use crate::yaml::{SourceFile, parse_documents};

/// The label every rendered object carries: which service produced it.
pub const SERVICE_LABEL: &str = "hoist.dev/service";

#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Services to render; empty: every enabled service.
    pub services: Vec<String>,
    /// Image tag for every image; `None`: a content-derived tag per image.
    pub tag: Option<String>,
}

/// One rendered Kubernetes object and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct RenderedObject {
    pub service: String,
    /// The template, YAML file or directory that produced it.
    pub source: PathBuf,
    pub object: Value,
}

impl RenderedObject {
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or("")
    }
    pub fn namespace(&self) -> &str {
        self.object["metadata"]["namespace"].as_str().unwrap_or("")
    }
}

/// Where a kind goes in the output: Namespace, CRD, ServiceAccount, ConfigMap,
/// Secret, Service, workloads, then everything else.
pub fn kind_rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        "ServiceAccount" => 2,
        "ConfigMap" => 3,
        "Secret" => 4,
        "Service" => 5,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "CronJob" | "Pod" => 6,
        _ => 7,
    }
}

/// The deterministic object order: kind rank, (kind for the rest), name, then tie-breakers.
pub fn object_order(a: &RenderedObject, b: &RenderedObject) -> Ordering {
    let (ra, rb) = (kind_rank(a.kind()), kind_rank(b.kind()));
    ra.cmp(&rb)
        .then_with(|| {
            if ra == 7 {
                a.kind().cmp(b.kind())
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| a.name().cmp(b.name()))
        .then_with(|| a.namespace().cmp(b.namespace()))
        .then_with(|| a.kind().cmp(b.kind()))
        .then_with(|| a.service.cmp(&b.service))
}

/// Renders the project. Fails with every problem found (invalid project,
/// template errors, missing tools) rather than the first.
pub fn render(
    project: &Project,
    opts: &RenderOptions,
) -> Result<Vec<RenderedObject>, ConfigErrors> {
    let mut errors: Vec<ConfigError> = project.load_problems().to_vec();
    errors.extend(crate::checks::check(project).0);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let started = std::time::Instant::now();
    let selected = select(project, &opts.services)?;
    let skipped: Vec<&str> = project
        .services
        .iter()
        .filter(|s| !s.enabled && opts.services.is_empty())
        .map(|s| s.name.as_str())
        .collect();
    if !skipped.is_empty() {
        tracing::info!(services = ?skipped, "skipping disabled services");
    }
    let refs = image_refs(project, opts.tag.as_deref(), None).map_err(ConfigErrors)?;
    tracing::debug!(images = refs.len(), elapsed = ?started.elapsed(), "image references resolved");
    let mut objects = Vec::new();
    for svc in selected {
        match render_service(project, svc, &refs) {
            Ok(objs) => objects.extend(objs),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    objects.sort_by(object_order);
    tracing::debug!(objects = objects.len(), elapsed = ?started.elapsed(), "rendered");
    Ok(objects)
}

fn select<'p>(project: &'p Project, names: &[String]) -> Result<Vec<&'p Service>, ConfigErrors> {
    if names.is_empty() {
        return Ok(project.enabled_services().collect());
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for n in names {
        match project.service(n) {
            Some(s) => {
                if !out.iter().any(|o: &&Service| o.name == s.name) {
                    out.push(s);
                }
            }
            None => errors.push(
                ConfigError::new(
                    ErrorKind::UnknownService,
                    format!("no service named `{n}` in this project"),
                )
                .help_opt(suggest_service(project, n)),
            ),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// service name → full image reference, for every service with an image:
/// `<registry>/<name>:<tag>` with `tag`, else with its content-derived tag (which holds
/// `platform` when one was asked for, see [`crate::content_tags`]).
/// The images and deploy steps use this so they agree with `render`.
pub fn image_refs(
    project: &Project,
    tag: Option<&str>,
    platform: Option<&str>,
) -> Result<BTreeMap<String, String>, Vec<ConfigError>> {
    if let Some(why) = tag.and_then(crate::names::tag_problem) {
        return Err(vec![
            ConfigError::new(ErrorKind::InvalidImage, format!("--tag: {why}"))
                .help("e.g. --tag dev or --tag v1.2.3"),
        ]);
    }
    if let Some(t) = tag {
        duplicate_names(project, t)?;
    }
    refs_with(project, tag, platform)
}

/// [`image_refs`] without the duplicate check (a dry run's placeholder tag).
fn refs_with(
    project: &Project,
    tag: Option<&str>,
    platform: Option<&str>,
) -> Result<BTreeMap<String, String>, Vec<ConfigError>> {
    let tags = match tag {
        Some(t) => project
            .services
            .iter()
            .filter(|s| s.image().is_some())
            .map(|s| (s.name.clone(), t.to_string()))
            .collect(),
        None => crate::tag::content_tags(project, platform)?,
    };
    Ok(project
        .services
        .iter()
        .filter_map(|s| {
            let t = tags.get(&s.name)?;
            Some((s.name.clone(), project.image_ref(s, t)?))
        })
        .collect())
}

/// With one `--tag` for all, two services with the same image name would push to one
/// reference, the second overwriting the first (content tags differ when inputs do).
fn duplicate_names(project: &Project, tag: &str) -> Result<(), Vec<ConfigError>> {
    let mut seen: BTreeMap<String, &Service> = BTreeMap::new();
    let mut errors = Vec::new();
    for s in &project.services {
        let Some(repo) = project.image_repository(s) else {
            continue;
        };
        match seen.get(&repo) {
            Some(first) => errors.push(
                ConfigError::new(
                    ErrorKind::InvalidImage,
                    format!(
                        "services `{}` and `{}` both name their image `{repo}`: with --tag \
                         {tag} one would overwrite the other",
                        first.name, s.name
                    ),
                )
                .at(s.locate(&["image", "name"], "here"))
                .help("give one of them its own `image.name`, or leave out --tag (content tags tell them apart)"),
            ),
            None => {
                seen.insert(repo, s);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Renders one service with a placeholder tag (no hashing): `validate` uses it
/// to find template and YAML errors.
pub(crate) fn render_service_dry(
    project: &Project,
    svc: &Service,
) -> Result<Vec<RenderedObject>, Vec<ConfigError>> {
    let refs = refs_with(project, Some("validate"), None)?;
    render_service(project, svc, &refs)
}

fn render_service(
    project: &Project,
    svc: &Service,
    refs: &BTreeMap<String, String>,
) -> Result<Vec<RenderedObject>, Vec<ConfigError>> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    let mut push = |source: &Path, text: &str, what: &str, errors: &mut Vec<ConfigError>| {
        match parse_documents(text) {
            Ok(docs) => {
                for (i, doc) in docs.into_iter().enumerate() {
                    match check_object(&doc) {
                        Ok(()) => objects.push(RenderedObject {
                            service: svc.name.clone(),
                            source: source.to_path_buf(),
                            object: doc,
                        }),
                        Err(why) => errors.push(ConfigError::new(
                            ErrorKind::InvalidObject,
                            format!(
                                "service `{}`: document {} of {what} {} is not a Kubernetes object: {why}",
                                svc.name,
                                i + 1,
                                source.display()
                            ),
                        )),
                    }
                }
            }
            Err(e) => {
                let mut err = SourceFile::new(source, text).yaml_error(&e);
                err.message = format!("{what} is not valid YAML: {}", err.message);
                errors.push(err);
            }
        }
    };

    if let Some(mold) = svc.spec.mold.as_deref().and_then(|m| project.molds.get(m)) {
        let ctx = template_context(project, svc, refs);
        match project.templates.render(mold, &ctx) {
            Ok(rendered) => {
                for (path, text) in rendered {
                    push(&path, &text, "the output of template", &mut errors);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    for pattern in &svc.spec.k8s {
        match files::expand(&svc.dir, pattern) {
            Ok(list) => {
                for f in list {
                    match SourceFile::read(&f) {
                        Ok(src) => push(&f, &src.text, "k8s file", &mut errors),
                        Err(e) => errors.push(e),
                    }
                }
            }
            Err(e) => errors.push(ConfigError::new(
                ErrorKind::MissingFile,
                format!("service `{}`: {e}", svc.name),
            )),
        }
    }
    if let Some(k) = &svc.spec.kustomize {
        let dir = svc.path(k);
        match external::kustomize(&svc.name, &dir) {
            Ok(text) => push(&dir, &text, "kustomize output for", &mut errors),
            Err(e) => errors.push(e),
        }
    }
    if let Some(h) = &svc.spec.helm {
        match external::helm_template(&svc.name, &svc.dir, h) {
            Ok(text) => push(
                &svc.path(&h.chart),
                &text,
                "helm template output for",
                &mut errors,
            ),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let by_repo = image_lookup(project, refs);
    for o in &mut objects {
        fill_images(&mut o.object, &by_repo);
        for ip in &project.config.image_paths {
            if o.object["kind"].as_str() == Some(ip.kind.as_str())
                && let Ok(segments) = ip.segments()
            {
                fill_path(&mut o.object, &segments, &by_repo);
            }
        }
        add_label(&mut o.object, &svc.name);
    }
    Ok(objects)
}

/// What a mold template sees: the merged values, plus `image` (the full
/// reference, unless set explicitly), `service` (the manifest) and `project`.
fn template_context(project: &Project, svc: &Service, refs: &BTreeMap<String, String>) -> Value {
    let mut ctx = svc.values.clone();
    if !svc.image_overridden
        && let Some(r) = refs.get(&svc.name)
    {
        ctx.insert("image".into(), Value::String(r.clone()));
    }
    ctx.insert(
        "service".into(),
        serde_json::to_value(&svc.spec).unwrap_or_default(),
    );
    let mut p = Map::new();
    p.insert("name".into(), Value::String(project.config.name.clone()));
    if let Some(r) = project.registry() {
        p.insert("registry".into(), Value::String(r.to_string()));
    }
    ctx.insert("project".into(), Value::Object(p));
    Value::Object(ctx)
}

fn check_object(doc: &Value) -> Result<(), &'static str> {
    let Some(m) = doc.as_object() else {
        return Err("it is not a mapping");
    };
    if !m.get("apiVersion").is_some_and(Value::is_string) {
        return Err("`apiVersion` is missing");
    }
    if !m.get("kind").is_some_and(Value::is_string) {
        return Err("`kind` is missing");
    }
    let meta = m.get("metadata");
    if !meta.is_some_and(|m| m["name"].is_string() || m["generateName"].is_string()) {
        return Err("`metadata.name` is missing");
    }
    Ok(())
}

/// image repository (bare name and with registry) → full reference.
fn image_lookup(project: &Project, refs: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for svc in &project.services {
        let (Some(r), Some(name)) = (refs.get(&svc.name), svc.image_name()) else {
            continue;
        };
        m.insert(name.to_string(), r.clone());
        if let Some(repo) = project.image_repository(svc) {
            m.insert(repo, r.clone());
        }
    }
    m
}

/// The repository part of an image reference (without tag or digest).
fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// Replaces container images that name a service's image with its full reference.
fn fill_images(v: &mut Value, by_repo: &BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if matches!(
                    k.as_str(),
                    "containers" | "initContainers" | "ephemeralContainers"
                ) && let Value::Array(list) = child
                {
                    for c in list {
                        if let Some(Value::String(img)) = c.get_mut("image")
                            && let Some(r) = by_repo.get(repository(img))
                        {
                            *img = r.clone();
                        }
                        // Env values that name a service's image (e.g. a sidecar
                        // launcher's `WORKER_IMAGE: shop/worker`) get the built reference.
                        if let Some(Value::Array(env)) = c.get_mut("env") {
                            for e in env {
                                if let Some(Value::String(val)) = e.get_mut("value")
                                    && let Some(r) = by_repo.get(repository(val))
                                {
                                    *val = r.clone();
                                }
                            }
                        }
                    }
                } else {
                    fill_images(child, by_repo);
                }
            }
        }
        Value::Array(list) => list.iter_mut().for_each(|c| fill_images(c, by_repo)),
        _ => {}
    }
}

/// Replaces the image reference at a configured field path (`image_paths:`).
fn fill_path(v: &mut Value, segments: &[(&str, bool)], by_repo: &BTreeMap<String, String>) {
    let Some(((field, each), rest)) = segments.split_first() else {
        if let Value::String(img) = v
            && let Some(r) = by_repo.get(repository(img))
        {
            *img = r.clone();
        }
        return;
    };
    let Some(child) = v.get_mut(*field) else {
        return;
    };
    if *each {
        if let Value::Array(items) = child {
            for item in items {
                fill_path(item, rest, by_repo);
            }
        }
    } else {
        fill_path(child, rest, by_repo);
    }
}

fn add_label(obj: &mut Value, service: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let labels = meta
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if labels.is_null() {
        *labels = Value::Object(Map::new());
    }
    if let Some(l) = labels.as_object_mut() {
        l.insert(SERVICE_LABEL.into(), Value::String(service.to_string()));
    }
}

/// Objects as a YAML stream (`---` between documents).
pub fn to_yaml(objects: &[RenderedObject]) -> String {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&o.object).unwrap_or_default());
    }
    out
}

/// Objects as one JSON `v1/List`.
pub fn to_json(objects: &[RenderedObject]) -> String {
    let list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": objects.iter().map(|o| o.object.clone()).collect::<Vec<_>>(),
    });
    let mut s = serde_json::to_string_pretty(&list).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(service: &str, kind: &str, name: &str) -> RenderedObject {
        RenderedObject {
            service: service.into(),
            source: PathBuf::new(),
            object: json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}),
        }
    }

    #[test]
    fn objects_sort_by_kind_rank_then_name() {
        let mut v = vec![
            obj("a", "Deployment", "b"),
            obj("a", "Ingress", "a"),
            obj("a", "Service", "z"),
            obj("a", "Deployment", "a"),
            obj("a", "StatefulSet", "aa"),
            obj("a", "ConfigMap", "c"),
            obj("a", "Namespace", "ns"),
            obj("a", "CustomResourceDefinition", "crd"),
            obj("a", "HorizontalPodAutoscaler", "a"),
            obj("a", "Secret", "s"),
            obj("a", "ServiceAccount", "sa"),
        ];
        v.sort_by(object_order);
        let got: Vec<String> = v
            .iter()
            .map(|o| format!("{}/{}", o.kind(), o.name()))
            .collect();
        assert_eq!(
            got,
            [
                "Namespace/ns",
                "CustomResourceDefinition/crd",
                "ServiceAccount/sa",
                "ConfigMap/c",
                "Secret/s",
                "Service/z",
                "Deployment/a",
                "StatefulSet/aa",
                "Deployment/b",
                "HorizontalPodAutoscaler/a",
                "Ingress/a",
            ]
        );
    }

    #[test]
    fn image_repository_strips_tag_and_digest_not_port() {
        assert_eq!(repository("shop/api"), "shop/api");
        assert_eq!(repository("shop/api:dev"), "shop/api");
        assert_eq!(
            repository("localhost:5000/shop/api"),
            "localhost:5000/shop/api"
        );
        assert_eq!(
            repository("localhost:5000/api:1@sha256:ab"),
            "localhost:5000/api"
        );
    }

    #[test]
    fn fill_images_only_in_container_lists() {
        let mut by = BTreeMap::new();
        by.insert("api".to_string(), "reg/api:h-1".to_string());
        let mut v = json!({"spec": {"template": {"spec": {
            "initContainers": [{"name": "i", "image": "api:dev"}],
            "containers": [{"name": "c", "image": "api"}, {"name": "o", "image": "busybox:1.36"}]}}},
            "metadata": {"annotations": {"image": "api"}}});
        fill_images(&mut v, &by);
        assert_eq!(
            v["spec"]["template"]["spec"]["initContainers"][0]["image"],
            "reg/api:h-1"
        );
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][0]["image"],
            "reg/api:h-1"
        );
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][1]["image"],
            "busybox:1.36"
        );
        assert_eq!(v["metadata"]["annotations"]["image"], "api");
    }
}
