use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use hoist_config::{RenderOptions, RenderedObject, render, to_json, to_yaml};
use miette::IntoDiagnostic;

use super::project::{SetArgs, load};
use crate::cli::GlobalOpts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum RenderFormat {
    #[default]
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Services to render (default: every enabled service).
    pub services: Vec<String>,
    /// Write one file per service into DIR instead of printing.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub format: RenderFormat,
    /// Image tag for every image (default: a tag derived from the image's content).
    #[arg(long)]
    pub tag: Option<String>,
    #[command(flatten)]
    pub set: SetArgs,
}

pub fn run(args: RenderArgs, g: &GlobalOpts) -> miette::Result<ExitCode> {
    let project = load(g, &args.set)?;
    let opts = RenderOptions {
        services: args.services.clone(),
        tag: args.tag.clone(),
    };
    let objects = render(&project, &opts)?;
    let format = |objs: &[RenderedObject]| match args.format {
        RenderFormat::Yaml => to_yaml(objs),
        RenderFormat::Json => to_json(objs),
    };
    match &args.out {
        None => out!("{}", format(&objects)),
        Some(dir) => {
            std::fs::create_dir_all(dir).into_diagnostic()?;
            let ext = match args.format {
                RenderFormat::Yaml => "yaml",
                RenderFormat::Json => "json",
            };
            let mut names: Vec<&str> = objects.iter().map(|o| o.service.as_str()).collect();
            names.dedup();
            names.sort();
            names.dedup();
            for name in &names {
                let mine: Vec<RenderedObject> = objects
                    .iter()
                    .filter(|o| o.service == *name)
                    .cloned()
                    .collect();
                let path = dir.join(format!("{name}.{ext}"));
                std::fs::write(&path, format(&mine))
                    .into_diagnostic()
                    .map_err(|e| e.wrap_err(format!("cannot write {}", path.display())))?;
            }
            eprintln!(
                "wrote {} objects for {} services to {}",
                objects.len(),
                names.len(),
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
