//! `hoist image build [SERVICE…]`: builds services' images from the project model
//! (the `image:` section of service.yaml) and pushes them, or puts them in the local store.

use std::collections::BTreeSet;
use std::process::ExitCode;

use clap::Args;
use hoist_config::{Project, Service};
use hoist_engine::image::{Delivery, build_and_deliver};
use hoist_oci::build::BuildOptions;
use hoist_oci::{LocalStore, Reference};
use miette::{IntoDiagnostic, miette};
use serde::Serialize;

use super::image::{RegistryOpts, TransferOpts};
use super::project::{self, SetArgs};
use crate::cli::GlobalOpts;

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

/// One service in the `-o json` report: built, or failed with why.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Outcome {
    Built(Built),
    Failed {
        service: String,
        reference: String,
        error: String,
    },
}

#[derive(Debug, Serialize)]
struct Built {
    service: String,
    reference: String,
    digest: String,
    /// Bytes sent to the registry (0 for the local store).
    uploaded_bytes: u64,
    destination: &'static str,
    /// The image was there already under its content tag (Dockerfile services): not built.
    already_there: bool,
}

pub fn run(a: BuildArgs, g: &GlobalOpts) -> miette::Result<ExitCode> {
    let project = project::load(g, &a.set)?;
    let problems = project.validate();
    if !problems.is_empty() {
        return Err(hoist_config::ConfigErrors(problems).into());
    }
    let opts = BuildOptions {
        platform: a.reg.platform()?,
        require_platform: a.reg.platform_asked(),
        // `--tag` names whatever is built now; a content tag names the inputs.
        content_tag: a.tag.is_none(),
        ..BuildOptions::default()
    };
    // The default platform written out is the default: the tag `render` and `up` compute.
    let asked = (opts.require_platform && opts.platform != hoist_oci::Platform::linux_amd64())
        .then(|| opts.platform.to_string());
    let refs = hoist_config::render::image_refs(&project, a.tag.as_deref(), asked.as_deref())
        .map_err(hoist_config::ConfigErrors)?;
    let order = build_order(&project, &a.services)?;
    let client = a.reg.transfer_client(&a.transfer)?;
    let store = if a.store {
        Some(LocalStore::open_default().into_diagnostic()?)
    } else {
        None
    };
    if order.is_empty() {
        match a.reg.output.document() {
            Some(doc) => doc.print(&Vec::<Outcome>::new())?,
            None => outln!("no service has an `image:` section; nothing to build"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if store.is_none() {
        // Before anything is built: no image of the project goes to Docker Hub by default.
        let mut to_hub = Vec::new();
        for svc in &order {
            let Some(r) = refs.get(&svc.name) else {
                continue;
            };
            let r = Reference::parse(r).into_diagnostic()?;
            if implicit_docker_hub(&project, svc, &r) {
                to_hub.push((svc.name.clone(), r));
            }
        }
        if !to_hub.is_empty() {
            let names: Vec<String> = to_hub.iter().map(|(n, r)| format!("`{n}` ({r})")).collect();
            // A script reading `-o json` gets every service's outcome, as for any failure:
            // nothing was built.
            if let Some(doc) = a.reg.output.document() {
                let outcomes: Vec<Outcome> = (order.iter())
                    .filter_map(|svc| {
                        let reference = refs.get(&svc.name)?.clone();
                        let error = match to_hub.iter().find(|(n, _)| *n == svc.name) {
                            Some((_, r)) => format!(
                                "not built: the project names no registry, so {r} would be \
                                 pushed to Docker Hub; {NO_HUB_HELP}"
                            ),
                            None => format!(
                                "not built: the build was refused, as {} would be pushed to \
                                 Docker Hub",
                                names.join(", ")
                            ),
                        };
                        Some(Outcome::Failed {
                            service: svc.name.clone(),
                            reference,
                            error,
                        })
                    })
                    .collect();
                doc.print(&outcomes)?;
            }
            return Err(miette!(
                help = NO_HUB_HELP,
                "the project names no registry, so these images would be pushed to Docker Hub: {}",
                names.join(", ")
            ));
        }
    }
    let mut results = Vec::new();
    // A failed service does not stop the others, except those built on it: the report
    // (`-o json` above all) says what was built and what failed.
    let mut failed: Vec<(String, miette::Report)> = Vec::new();
    for svc in order {
        let target = refs.get(&svc.name).ok_or_else(|| {
            miette!(
                help = "set `registry:` in hoist.yaml (or your settings file), e.g. `registry: localhost:5000`",
                "service `{}` has no image reference: the project names no registry",
                svc.name
            )
        })?;
        let fail = |error: String, report: miette::Report| {
            let outcome = Outcome::Failed {
                service: svc.name.clone(),
                reference: target.clone(),
                error,
            };
            (outcome, (svc.name.clone(), report))
        };
        if let Some(base) = failed_base(&project, svc, &failed) {
            let why = format!("not built: its base, service `{base}`, failed");
            let (outcome, f) = fail(why.clone(), miette!("{why}"));
            results.push(outcome);
            failed.push(f);
            continue;
        }
        let target_ref = Reference::parse(target).into_diagnostic()?;
        let delivery = match &store {
            Some(store) => Delivery::Store(store.clone()),
            None => Delivery::Registry(target_ref.registry.clone()),
        };
        // Ctrl-C drops the build, whose layer builds remove their temp files.
        let delivered = super::interruptible(&format!("building {}", svc.name), async {
            Ok(build_and_deliver(&project, svc, &refs, target, &delivery, &client, &opts).await)
        })?;
        let delivered = match delivered {
            Ok(d) => d,
            Err(e) => {
                let (outcome, f) = fail(e.to_string(), miette::Report::from_err(e));
                results.push(outcome);
                failed.push(f);
                continue;
            }
        };
        let built = Built {
            service: svc.name.clone(),
            reference: delivered.reference,
            digest: delivered.digest,
            uploaded_bytes: delivered.uploaded_bytes,
            destination: if store.is_some() { "store" } else { "registry" },
            already_there: delivered.already_there,
        };
        if a.reg.output.document().is_none() {
            outln!(
                "{:<16} {}@{} ({})",
                built.service,
                built.reference,
                built.digest,
                match built.destination {
                    _ if built.already_there => "already there".to_string(),
                    "store" => "local store".to_string(),
                    _ => format!(
                        "{} uploaded",
                        crate::output::human_bytes(built.uploaded_bytes)
                    ),
                }
            );
        }
        results.push(Outcome::Built(built));
    }
    client.set_progress(None);
    if let Some(doc) = a.reg.output.document() {
        doc.print(&results)?;
    }
    let mut failed = failed.into_iter();
    match failed.next() {
        None => Ok(ExitCode::SUCCESS),
        Some((name, report)) => {
            let others: Vec<String> = failed.map(|(n, _)| format!("`{n}`")).collect();
            let report = report.wrap_err(format!("building service `{name}`"));
            Err(if others.is_empty() {
                report
            } else {
                report.wrap_err(format!(
                    "{} services failed: `{name}`, {}",
                    others.len() + 1,
                    others.join(", ")
                ))
            })
        }
    }
}

/// `svc`'s base service, if it failed. (Further down needs no walk: [`build_order`] puts
/// a whole base chain first, and a service skipped for its base is a failure too.)
fn failed_base<'p>(
    project: &'p Project,
    svc: &Service,
    failed: &[(String, miette::Report)],
) -> Option<&'p str> {
    let base = project.base_service(svc)?;
    failed
        .iter()
        .any(|(n, _)| *n == base.name)
        .then_some(base.name.as_str())
}

/// The ways out of [`implicit_docker_hub`]'s refusal.
const NO_HUB_HELP: &str = "set `registry:` in hoist.yaml or your settings file (e.g. \
     `registry: localhost:5000`), build into the local store with --store, or write \
     `docker.io/` in an image's name to push it to Docker Hub on purpose";

/// With no `registry:`, a bare image name (`myorg/app`) means Docker Hub, as it does for
/// Docker. Publishing dev images there is never what a project without a registry meant,
/// so it is refused unless the name says `docker.io/` itself.
fn implicit_docker_hub(project: &Project, svc: &Service, target: &Reference) -> bool {
    let name = svc.image_name().unwrap_or_default();
    let explicit = ["docker.io/", "index.docker.io/", "registry-1.docker.io/"]
        .iter()
        .any(|p| name.starts_with(p));
    project.registry().is_none() && !explicit && target.registry == "docker.io"
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
