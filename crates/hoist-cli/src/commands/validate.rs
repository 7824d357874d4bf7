use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalOpts;

#[derive(Debug, Args)]
pub struct ValidateArgs {}

pub fn run(_args: ValidateArgs, _g: &GlobalOpts) -> miette::Result<ExitCode> {
    Err(miette::miette!("`hoist validate` is not implemented yet"))
}
