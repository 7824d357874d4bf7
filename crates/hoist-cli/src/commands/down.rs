//! `hoist down`: delete every object hoist applied for this project and developer
//! (found by labels, so it works even if `hoist up` was killed), wait until gone.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use hoist_kube::teardown::{TeardownOptions, teardown};
use hoist_kube::{ApplySet, ClusterTarget};
use miette::IntoDiagnostic;

use super::project::{SetArgs, load};
use crate::cli::GlobalOpts;
use crate::output::OutputFormat;

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also delete the namespace (kept by default).
    #[arg(long)]
    pub delete_namespace: bool,
    /// Kubeconfig context to use (overrides the project's `cluster:` setting).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace (default `<project>-<developer>`).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub namespace: Option<String>,
    /// Give up waiting for deletion after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub timeout: u64,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub format: OutputFormat,
    #[command(flatten)]
    pub set: SetArgs,
}

pub fn run(args: DownArgs, g: &GlobalOpts) -> miette::Result<ExitCode> {
    let project = load(g, &args.set)?;
    let opts =
        super::session::target_options(&project, args.context.clone(), args.namespace.clone());
    let target = ClusterTarget::from_options(&opts).into_diagnostic()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    let report = rt
        .block_on(async {
            let client = target.client().await?;
            let mut set = ApplySet::new(client, &target);
            let opts = TeardownOptions {
                delete_namespace: args.delete_namespace,
                timeout: Duration::from_secs(args.timeout),
            };
            teardown(&mut set, &opts).await
        })
        .into_diagnostic()?;
    match args.format.document() {
        Some(format) => {
            let deleted: Vec<serde_json::Value> = report
                .deleted
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "apiVersion": k.api_version(), "kind": k.kind,
                        "namespace": k.namespace, "name": k.name,
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "context": target.context,
                "namespace": target.namespace,
                "deleted": deleted,
                "namespaceDeleted": report.namespace_deleted,
            });
            format.print(&doc)?;
        }
        None => {
            for k in &report.deleted {
                outln!("deleted {k}");
            }
            outln!(
                "{} object(s) of project {} (developer {}) removed from context {}{}",
                report.deleted.len(),
                target.project,
                target.developer,
                target.context,
                if report.namespace_deleted {
                    format!("; namespace {} deleted", target.namespace)
                } else {
                    format!("; namespace {} kept", target.namespace)
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
