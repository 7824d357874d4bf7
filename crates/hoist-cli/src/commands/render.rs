use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalOpts;

#[derive(Debug, Args)]
pub struct RenderArgs {}

pub fn run(_args: RenderArgs, _g: &GlobalOpts) -> miette::Result<ExitCode> {
    Err(miette::miette!("`hoist render` is not implemented yet"))
}
