//! `hoist deploy [SERVICE…]`: render, server-side apply, prune what is no longer
//! rendered, wait for readiness. Images are not built here: they must exist.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use hoist_config::{RenderOptions, render};
use hoist_kube::readiness::{WaitTarget, wait_ready};
use hoist_kube::{ApplySet, ClusterTarget, Desired, PruneScope};
use miette::IntoDiagnostic;

use super::project::{SetArgs, load};
use crate::cli::GlobalOpts;
use crate::output::OutputFormat;

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Services to deploy (default: every enabled service; objects of services no
    /// longer rendered are pruned). With names, only those services are pruned.
    pub services: Vec<String>,
    /// Kubeconfig context to use (overrides the project's `cluster:` setting).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace (default `<project>-<developer>`).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub namespace: Option<String>,
    /// Image tag for every image (default: a tag derived from the image's content).
    #[arg(long)]
    pub tag: Option<String>,
    /// Seconds to wait for readiness; on expiry each object not ready is explained.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
    /// Apply and prune only; do not wait for readiness.
    #[arg(long)]
    pub no_wait: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub format: OutputFormat,
    #[command(flatten)]
    pub set: SetArgs,
}

pub fn run(args: DeployArgs, g: &GlobalOpts) -> miette::Result<ExitCode> {
    let project = load(g, &args.set)?;
    let objects = render(
        &project,
        &RenderOptions {
            services: args.services.clone(),
            tag: args.tag.clone(),
        },
    )?;
    let opts =
        super::session::target_options(&project, args.context.clone(), args.namespace.clone());
    let target = ClusterTarget::from_options(&opts).into_diagnostic()?;
    let prune = if args.services.is_empty() {
        PruneScope::All
    } else {
        PruneScope::Services(args.services.clone())
    };
    let desired: Vec<Desired> = objects
        .into_iter()
        .map(|o| Desired {
            service: o.service,
            object: o.object,
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    let (report, readiness) = rt.block_on(async {
        let client = target.client().await.into_diagnostic()?;
        let mut set = ApplySet::new(client.clone(), &target);
        let report = set.apply(desired, prune).await.into_diagnostic()?;
        let readiness = if args.no_wait {
            None
        } else {
            let targets: Vec<WaitTarget> = report.applied.iter().map(WaitTarget::from).collect();
            Some(wait_ready(&client, &targets, Duration::from_secs(args.timeout)).await)
        };
        Ok::<_, miette::Report>((report, readiness))
    })?;

    let not_ready = match &readiness {
        Some(Err(r)) => Some(r),
        _ => None,
    };
    match args.format.document() {
        Some(format) => {
            let key = |k: &hoist_kube::ObjectKey| serde_json::json!({"apiVersion": k.api_version(), "kind": k.kind, "namespace": k.namespace, "name": k.name});
            let doc = serde_json::json!({
                "context": target.context,
                "namespace": target.namespace,
                "applied": report.applied.iter().map(|a| {
                    let mut v = key(&a.key);
                    v["service"] = a.service.clone().into();
                    v["resourceVersion"] = a.resource_version.clone().into();
                    v
                }).collect::<Vec<_>>(),
                "pruned": report.pruned.iter().map(key).collect::<Vec<_>>(),
                "ready": readiness.as_ref().map(|r| r.is_ok()),
                "notReady": not_ready.map(|r| r.objects.iter().map(|o| serde_json::json!({
                    "object": key(&o.key), "reason": o.reason, "failed": o.failed,
                    "conditions": o.conditions, "events": o.events, "containers": o.containers,
                })).collect::<Vec<_>>()),
            });
            format.print(&doc)?;
        }
        None => {
            for a in &report.applied {
                outln!("applied {} ({})", a.key, a.service);
            }
            for k in &report.pruned {
                outln!("pruned  {k}");
            }
            match &readiness {
                None => outln!(
                    "{} object(s) applied to context {}, namespace {} (not waiting for readiness)",
                    report.applied.len(),
                    target.context,
                    target.namespace
                ),
                Some(Ok(())) => outln!(
                    "{} object(s) applied and ready in context {}, namespace {}",
                    report.applied.len(),
                    target.context,
                    target.namespace
                ),
                Some(Err(r)) => eprint!("not ready after {}s:\n{r}", args.timeout),
            }
        }
    }
    Ok(if not_ready.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
