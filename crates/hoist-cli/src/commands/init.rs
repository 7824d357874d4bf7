use std::process::ExitCode;

use clap::Args;

use super::project::start_dir;
use crate::cli::GlobalOpts;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The built-in mold to start from.
    #[arg(long, default_value = "web", value_parser = clap::builder::PossibleValuesParser::new(hoist_config::scaffold::MOLDS))]
    pub mold: String,
}

pub fn run(args: InitArgs, g: &GlobalOpts) -> miette::Result<ExitCode> {
    let dir = start_dir(g);
    std::fs::create_dir_all(&dir)
        .map_err(|e| miette::miette!("cannot create {}: {e}", dir.display()))?;
    let done = hoist_config::scaffold::init(&dir, &args.mold)?;
    for p in &done.created {
        outln!("created {}", p.display());
    }
    if done.gitignore_updated {
        outln!(
            "added hoist-settings.yaml to {}",
            dir.join(".gitignore").display()
        );
    }
    outln!("next: hoist render   (or hoist validate, hoist services)");
    Ok(ExitCode::SUCCESS)
}
