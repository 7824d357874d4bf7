//! Building a service's image and delivering it where the cluster can run it:
//! straight into the embedded cluster's local store, or pushed to a registry (the
//! project's, or one the cluster advertises per KEP-1755).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hoist_config::{ImageSource, Project, Service};
use hoist_kube::{ClusterTarget, Locality};
use hoist_oci::build::{BuildOptions, BuildSpec, build_and_push, build_to_store};
use hoist_oci::dockerfile::{self, DockerfileSpec, build_and_push_dockerfile};
use hoist_oci::{LayerSpec, LocalStore, Reference, RegistryClient};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use crate::error::EngineError;

/// Where built images go.
#[derive(Clone, Debug)]
pub enum Delivery {
    /// The embedded cluster's kubelet reads this store: no registry involved.
    Store(LocalStore),
    /// Push to this registry host (the image references already name it).
    Registry(String),
}

impl Delivery {
    pub fn describe(&self) -> String {
        match self {
            Delivery::Store(s) => format!("local store {}", s.layout().root().display()),
            Delivery::Registry(r) => format!("registry {r}"),
        }
    }
}

/// Chooses the delivery for `target`, and says which registry the cluster advertises
/// when that is where images go: a non-embedded cluster, and a project naming none.
/// The caller makes it the project's registry, so rendered image references name it.
pub async fn choose_delivery(
    target: &ClusterTarget,
    client: &kube::Client,
    project: &Project,
) -> Result<(Delivery, Option<String>), EngineError> {
    if target.locality == Locality::Embedded {
        return Ok((Delivery::Store(LocalStore::open_default()?), None));
    }
    if let Some(r) = project.registry() {
        return Ok((Delivery::Registry(r.to_string()), None));
    }
    match advertised_registry(client).await {
        Some(host) => {
            tracing::info!(%host, "using the registry the cluster advertises (KEP-1755)");
            Ok((Delivery::Registry(host.clone()), Some(host)))
        }
        None => Err(EngineError::NoRegistry {
            context: target.context.clone(),
        }),
    }
}

/// `host` of `localRegistryHosting.v1` in ConfigMap `kube-public/local-registry-hosting`.
pub async fn advertised_registry(client: &kube::Client) -> Option<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
    let cm = api.get_opt("local-registry-hosting").await.ok()??;
    parse_local_registry_hosting(cm.data?.get("localRegistryHosting.v1")?)
}

/// The `host` field of a `localRegistryHosting.v1` document (YAML).
pub fn parse_local_registry_hosting(doc: &str) -> Option<String> {
    let v: serde_json::Value = serde_norway::from_str(doc).ok()?;
    v["host"]
        .as_str()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(String::from)
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub reference: String,
    pub digest: String,
    /// Bytes sent to the registry (0 into the local store).
    pub uploaded_bytes: u64,
    /// The image was there already under its content tag: nothing was built.
    pub already_there: bool,
}

/// Builds `svc`'s image as `reference` and delivers it.
pub async fn build_and_deliver(
    project: &Project,
    svc: &Service,
    refs: &BTreeMap<String, String>,
    reference: &str,
    delivery: &Delivery,
    client: &RegistryClient,
    opts: &BuildOptions,
) -> Result<Delivered, EngineError> {
    let image = svc
        .image()
        .ok_or_else(|| EngineError::Other(format!("service `{}` has no image", svc.name)))?;
    let target = Reference::parse(reference)?;
    // A content tag names the image's inputs: an image under it is this build's. In the
    // store that is a lookup, so any image; in a registry one HEAD spares a Dockerfile
    // build (layers are cheap to build and push only what the registry lacks).
    let worth_asking =
        matches!(delivery, Delivery::Store(_)) || image.source() == ImageSource::Dockerfile;
    if opts.content_tag
        && worth_asking
        && let Some(digest) = already_there(delivery, client, &target).await?
    {
        tracing::info!(%reference, %digest, "already there: not building");
        return Ok(Delivered {
            reference: reference.to_string(),
            digest,
            uploaded_bytes: 0,
            already_there: true,
        });
    }
    match (image.source(), delivery) {
        (ImageSource::Layers, Delivery::Store(store)) => {
            let mut spec = build_spec(project, svc, refs)?;
            if let Some(base) = project.base_service(svc) {
                spec.base = base_in_store(store, &spec.base, &svc.name, &base.name)?;
            }
            let digest = build_into_store(client, &spec, store, &target, opts).await?;
            Ok(Delivered {
                reference: reference.to_string(),
                digest,
                uploaded_bytes: 0,
                already_there: false,
            })
        }
        (ImageSource::Layers, Delivery::Registry(_)) => {
            let spec = build_spec(project, svc, refs)?;
            let rep = build_and_push(client, &spec, &target, opts).await?;
            Ok(Delivered {
                reference: reference.to_string(),
                digest: rep.digest.to_string(),
                uploaded_bytes: rep.transfer.upload_bytes,
                already_there: false,
            })
        }
        (ImageSource::Dockerfile, _) => {
            let spec = DockerfileSpec {
                context: svc.path(image.context.as_deref().unwrap_or(".")),
                dockerfile: image.dockerfile.as_deref().map(|d| svc.path(d)),
                build_args: image.args.clone(),
                target: image.target.clone(),
                // Asked for: the builder builds for it. Otherwise the builder's default.
                platform: opts.require_platform.then(|| opts.platform.clone()),
            };
            let (digest, uploaded_bytes) = match delivery {
                // Straight from the builder's output into the store: no registry.
                Delivery::Store(store) => {
                    let digest =
                        dockerfile::build_into_store(client, &spec, store, &target).await?;
                    (digest.to_string(), 0)
                }
                Delivery::Registry(_) => {
                    let rep = build_and_push_dockerfile(client, &spec, &target).await?;
                    (rep.digest.to_string(), rep.transfer.upload_bytes)
                }
            };
            Ok(Delivered {
                reference: reference.to_string(),
                digest,
                uploaded_bytes,
                already_there: false,
            })
        }
    }
}

/// The base service's image, built into `store` before this one, as the layout location
/// `oci:STORE:REFERENCE` (the store names images by their full reference).
fn base_in_store(
    store: &LocalStore,
    base_ref: &str,
    service: &str,
    base: &str,
) -> Result<String, EngineError> {
    let r = Reference::parse(base_ref)?;
    if let Err(e) = store.resolve(&r) {
        return Err(EngineError::Other(format!(
            "service `{service}` is built on service `{base}`'s image, which is not in the \
             local store ({e}); build it first: hoist image build {base} --store"
        )));
    }
    let dir = store.layout().root();
    let dir = dir.to_str().filter(|d| !d.contains(':')).ok_or_else(|| {
        EngineError::Other(format!(
            "service `{service}` is built on service `{base}`'s image from the local store \
             {}, whose path cannot be named as an OCI layout base (it holds a ':' or is not \
             UTF-8); set HOIST_CACHE_DIR to a plain path",
            dir.display()
        ))
    })?;
    Ok(format!("oci:{dir}:{r}"))
}

/// The digest of `target` where it is delivered, if it is there.
async fn already_there(
    delivery: &Delivery,
    client: &RegistryClient,
    target: &Reference,
) -> Result<Option<String>, EngineError> {
    Ok(match delivery {
        Delivery::Store(store) => store
            .resolve(target)
            .ok()
            .map(|img| img.manifest_digest.to_string()),
        Delivery::Registry(_) => client.manifest_digest(target).await?.map(|d| d.to_string()),
    })
}

/// Build into the store: new layers are written in its blob directory and land there by
/// link; base layers stream in. index.json is locked by the layout itself.
async fn build_into_store(
    client: &RegistryClient,
    spec: &BuildSpec,
    store: &LocalStore,
    name: &Reference,
    opts: &BuildOptions,
) -> Result<String, EngineError> {
    let img = build_to_store(client, spec, store, name, opts).await?;
    Ok(img.manifest_digest.to_string())
}

/// The daemonless build of one service: its layers on its base.
pub fn build_spec(
    project: &Project,
    svc: &Service,
    refs: &BTreeMap<String, String>,
) -> Result<BuildSpec, EngineError> {
    let image = svc
        .image()
        .ok_or_else(|| EngineError::Other(format!("service `{}` has no image", svc.name)))?;
    let base = match project.base_service(svc) {
        Some(b) => refs.get(&b.name).cloned().ok_or_else(|| {
            EngineError::Other(format!(
                "service `{}`'s base `{}` has no image reference",
                svc.name, b.name
            ))
        })?,
        None => image.base_or_scratch().to_string(),
    };
    Ok(BuildSpec {
        base,
        layers: image
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerSpec {
                from: absolute(&svc.dir, &l.from),
                to: l.to.clone(),
                include: l.include.clone(),
                exclude: l.exclude.clone(),
                origin: Some(layer_origin(svc, i, &l.from)),
            })
            .collect(),
        entrypoint: image.entrypoint.clone(),
        cmd: image.cmd.clone(),
        env: image.env.clone().into_iter().collect(),
        workdir: image.workdir.clone(),
        user: image.user.clone(),
        labels: image.labels.clone(),
    })
}

/// Where layer `i` of `svc` is declared, for the layer's warnings: the service, the
/// layer's `from:` as written, and its file:line.
fn layer_origin(svc: &Service, i: usize, from: &str) -> String {
    let at = svc.locate(&["image", "layers", &i.to_string(), "from"], "");
    format!(
        "service `{}`, layer from {from} ({}:{})",
        svc.name,
        at.file.display(),
        at.line
    )
}

/// `p` from service.yaml, relative to `dir`, without `.` components (so messages about it
/// read `svc/data`, not `svc/./data`); `..` stays (a symlink gives it another meaning).
fn absolute(dir: &Path, p: &str) -> PathBuf {
    // (`join` takes an absolute `p` as it is.)
    dir.join(p).components().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `image build` and `up` build through `build_spec`: each layer carries where it is
    /// declared, which its warnings name.
    #[test]
    fn layers_say_where_they_are_declared() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let svc_dir = root.join("services/web");
        std::fs::create_dir_all(svc_dir.join("dist")).unwrap();
        std::fs::write(
            root.join("hoist.yaml"),
            "name: p\nservices: [\"services/*\"]\n",
        )
        .unwrap();
        std::fs::write(
            svc_dir.join("service.yaml"),
            "name: web\nimage:\n  base: scratch\n  layers:\n    - from: ./dist\n      to: /a\n    - from: dist\n      to: /b\n",
        )
        .unwrap();
        let project = Project::load(root).unwrap();
        let svc = project.service("web").unwrap();
        let spec = build_spec(&project, svc, &BTreeMap::new()).unwrap();
        let manifest = svc.source.path.display();
        let origins: Vec<_> = spec
            .layers
            .iter()
            .map(|l| l.origin.clone().unwrap())
            .collect();
        assert_eq!(
            origins,
            [
                format!("service `web`, layer from ./dist ({manifest}:5)"),
                format!("service `web`, layer from dist ({manifest}:7)"),
            ]
        );
    }

    #[test]
    fn kep_1755_host_is_read() {
        let doc = "host: \"localhost:5001\"\nhelp: \"https://kind.sigs.k8s.io/docs/user/local-registry/\"\n";
        assert_eq!(
            parse_local_registry_hosting(doc).as_deref(),
            Some("localhost:5001")
        );
        assert_eq!(parse_local_registry_hosting("help: x\n"), None);
        assert_eq!(parse_local_registry_hosting("host: ''\n"), None);
        assert_eq!(parse_local_registry_hosting(": : :"), None);
    }
}
