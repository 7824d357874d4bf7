use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalOpts;

#[derive(Debug, Args)]
pub struct InitArgs {}

pub fn run(_args: InitArgs, _g: &GlobalOpts) -> miette::Result<ExitCode> {
    Err(miette::miette!("`hoist init` is not implemented yet"))
}
