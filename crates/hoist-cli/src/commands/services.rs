use std::process::ExitCode;

use clap::Args;
use hoist_config::{ImageSource, Project, Service};

use super::project::{SetArgs, load};
use crate::cli::GlobalOpts;
use crate::output::OutputFormat;

#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// `text` (a table) or `json`.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub format: OutputFormat,
    #[command(flatten)]
    pub set: SetArgs,
}

fn image_source(svc: &Service) -> String {
    match svc.image() {
        None => "-".into(),
        Some(img) => match img.source() {
            ImageSource::Layers => format!("layers on {}", img.base_or_scratch()),
            ImageSource::Dockerfile => {
                format!(
                    "dockerfile {}",
                    img.dockerfile.as_deref().unwrap_or_default()
                )
            }
        },
    }
}

fn as_json(p: &Project, svc: &Service) -> serde_json::Value {
    serde_json::json!({
        "name": svc.name,
        "dir": svc.dir,
        "enabled": svc.enabled,
        "mold": svc.spec.mold,
        "image": svc.image().map(|img| serde_json::json!({
            "source": img.source(),
            "repository": p.image_repository(svc),
            "base": img.base,
            "dockerfile": img.dockerfile,
        })),
        "depends_on": svc.spec.depends_on,
        "ports": svc.spec.ports,
        "k8s": svc.spec.k8s,
        "kustomize": svc.spec.kustomize,
        "helm": svc.spec.helm.as_ref().map(|h| &h.chart),
    })
}

pub fn run(args: ServicesArgs, g: &GlobalOpts) -> miette::Result<ExitCode> {
    let project = load(g, &args.set)?;
    if let Some(doc) = args.format.document() {
        let list: Vec<_> = project
            .services
            .iter()
            .map(|s| as_json(&project, s))
            .collect();
        doc.print(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 5]> = project
        .services
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                if s.enabled { "yes" } else { "no" }.into(),
                s.spec.mold.clone().unwrap_or_else(|| "-".into()),
                image_source(s),
                if s.spec.depends_on.is_empty() {
                    "-".into()
                } else {
                    s.spec.depends_on.join(",")
                },
            ]
        })
        .collect();
    let header = ["NAME", "ENABLED", "MOLD", "IMAGE", "DEPENDS ON"].map(String::from);
    let mut widths = [0usize; 5];
    for r in std::iter::once(&header).chain(&rows) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        outln!("{}", line.join("  ").trim_end());
    }
    for p in project.load_problems() {
        eprintln!("warning: {p}");
    }
    Ok(ExitCode::SUCCESS)
}
