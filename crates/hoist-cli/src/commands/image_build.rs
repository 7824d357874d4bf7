//! `hoist image build [SERVICE…]`: builds services' images from the project model
//! (the `image:` section of service.yaml) and pushes them, or puts them in the local store.

use std::collections::BTreeSet;
use std::process::ExitCode;

use clap::Args;
use hoist_config::{ImageSource, Project, Service};
use hoist_oci::build::{BuildOptions, build_and_push, build_to_store};
use hoist_oci::dockerfile::{DockerfileSpec, build_and_push_dockerfile};
use hoist_oci::{LocalStore, Reference, block_on, block_on_interruptible};
use miette::{IntoDiagnostic, miette};
use serde::Serialize;

use super::image::{RegistryOpts, TransferOpts};
use super::project::{self, SetArgs};
use crate::cli::GlobalOpts;
use crate::output::OutputFormat;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Services to build (default: every enabled service with an `image:` section).
    pub services: Vec<String>,
    /// Tag for every image (default: a tag derived from the image's inputs, `h-<hash>`).
    #[arg(long)]
    pub tag: Option<String>,
    /// Put the images in the local store (what the embedded cluster runs) instead of pushing.
    #[arg(long)]
    pub store: bool,
    #[command(flatten)]
    pub set: SetArgs,
    #[command(flatten)]
    pub reg: RegistryOpts,
    #[command(flatten)]
    pub transfer: TransferOpts,
}

#[derive(Debug, Serialize)]
struct Built {
    service: String,
    reference: String,
    digest: String,
    /// Bytes sent to the registry (0 for the local store).
    uploaded_bytes: u64,
    destination: &'static str,
}

pub fn run(a: BuildArgs, g: &GlobalOpts) -> miette::Result<ExitCode> {
    let project = project::load(g, &a.set)?;
    let problems = project.validate();
    if !problems.is_empty() {
        return Err(hoist_config::ConfigErrors(problems).into());
    }
    let refs = hoist_config::render::image_refs(&project, a.tag.as_deref())
        .map_err(hoist_config::ConfigErrors)?;
    let order = build_order(&project, &a.services)?;
    let client = a.reg.transfer_client(&a.transfer)?;
    let opts = BuildOptions {
        platform: a.reg.platform()?,
        ..Default::default()
    };
    let store = if a.store {
        Some(LocalStore::open_default().into_diagnostic()?)
    } else {
        None
    };
    let mut results = Vec::new();
    for svc in order {
        let target = refs.get(&svc.name).ok_or_else(|| {
            miette!(
                help = "set `registry:` in hoist.yaml (or your settings file), e.g. `registry: localhost:5000`",
                "service `{}` has no image reference: the project names no registry",
                svc.name
            )
        })?;
        let target_ref = Reference::parse(target).into_diagnostic()?;
        let image = svc.image().expect("build_order keeps services with images");
        let built = match image.source() {
            ImageSource::Layers => {
                let spec =
                    hoist_engine::image::build_spec(&project, svc, &refs).into_diagnostic()?;
                match &store {
                    Some(store) => {
                        if project.base_service(svc).is_some() {
                            return Err(miette!(
                                help = "build without --store to push both images to the registry",
                                "service `{}` is based on another service's image; building such chains into the local store is not supported yet",
                                svc.name
                            ));
                        }
                        let img = block_on_interruptible(
                            &format!("building {}", svc.name),
                            build_to_store(&client, &spec, store, &target_ref, &opts),
                        )
                        .into_diagnostic()?;
                        Built {
                            service: svc.name.clone(),
                            reference: target.clone(),
                            digest: img.manifest_digest.to_string(),
                            uploaded_bytes: 0,
                            destination: "store",
                        }
                    }
                    None => {
                        let rep = block_on_interruptible(
                            &format!("building {}", svc.name),
                            build_and_push(&client, &spec, &target_ref, &opts),
                        )
                        .into_diagnostic()?;
                        Built {
                            service: svc.name.clone(),
                            reference: target.clone(),
                            digest: rep.digest.to_string(),
                            uploaded_bytes: rep.transfer.upload_bytes,
                            destination: "registry",
                        }
                    }
                }
            }
            ImageSource::Dockerfile => {
                let spec = DockerfileSpec {
                    context: svc.path(image.context.as_deref().unwrap_or(".")),
                    dockerfile: image.dockerfile.as_deref().map(|d| svc.path(d)),
                    build_args: image.args.clone(),
                    target: image.target.clone(),
                };
                match &store {
                    // Built into a temporary layout, then into the store: no registry.
                    Some(store) => Built {
                        service: svc.name.clone(),
                        reference: target.clone(),
                        digest: block_on(hoist_oci::dockerfile::build_into_store(
                            &spec,
                            store,
                            &target_ref,
                        ))
                        .into_diagnostic()?
                        .to_string(),
                        uploaded_bytes: 0,
                        destination: "store",
                    },
                    None => {
                        let rep = block_on(build_and_push_dockerfile(&client, &spec, &target_ref))
                            .into_diagnostic()?;
                        Built {
                            service: svc.name.clone(),
                            reference: target.clone(),
                            digest: rep.digest.to_string(),
                            uploaded_bytes: rep.transfer.upload_bytes,
                            destination: "registry",
                        }
                    }
                }
            }
        };
        if a.reg.output != OutputFormat::Json {
            println!(
                "{:<16} {}@{} ({})",
                built.service,
                built.reference,
                built.digest,
                match built.destination {
                    "store" => "local store".to_string(),
                    _ => format!("{} bytes uploaded", built.uploaded_bytes),
                }
            );
        }
        results.push(built);
    }
    client.set_progress(None);
    if a.reg.output == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).into_diagnostic()?
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The services to build, bases before the services built on them.
fn build_order<'p>(project: &'p Project, wanted: &[String]) -> miette::Result<Vec<&'p Service>> {
    let mut selected: Vec<&Service> = Vec::new();
    if wanted.is_empty() {
        selected.extend(project.enabled_services().filter(|s| s.image().is_some()));
    } else {
        for name in wanted {
            let svc = project.service(name).ok_or_else(|| {
                let known: Vec<&str> = project.services.iter().map(|s| s.name.as_str()).collect();
                miette!(
                    help = format!("services in this project: {}", known.join(", ")),
                    "no service named `{name}`"
                )
            })?;
            if svc.image().is_none() {
                return Err(miette!(
                    help = "add an `image:` section to its service.yaml",
                    "service `{name}` has no `image:` section, so there is nothing to build"
                ));
            }
            selected.push(svc);
        }
    }
    // A base service must be built first (its image is the base), even if not asked for.
    let mut order: Vec<&Service> = Vec::new();
    let mut placed = BTreeSet::new();
    for svc in selected {
        let mut chain = vec![svc];
        let mut cur = svc;
        while let Some(base) = project.base_service(cur) {
            if chain.iter().any(|s| s.name == base.name) {
                break; // a cycle; `validate` has already reported it
            }
            chain.push(base);
            cur = base;
        }
        for s in chain.into_iter().rev() {
            if placed.insert(s.name.clone()) {
                order.push(s);
            }
        }
    }
    Ok(order)
}
